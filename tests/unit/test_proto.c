/*
 * test_proto.c - unit tests for the protobuf codec (proto/codec.c,
 * contract in proto/mc_proto.h, schema in proto/mcpcore.proto).
 *
 * Every message kind goes through a real segment: mc_proto_send() from
 * one worker handle, mc_recv() + mc_proto_unpack() in another, and every
 * field is compared.  Instances are "utproto-<pid>-<n>"; /dev/shm is
 * cleaned in the fini hook and by a guardian child if the test dies.
 */
#define _GNU_SOURCE

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mc_config.h"
#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_proto.h"
#include "mc_ring.h"
#include "mc_seg.h"
#include "ut.h"

#ifndef MC_SOURCE_DIR
#error "MC_SOURCE_DIR must be defined to the repository root"
#endif

/* ------------------------------------------------------------------ */
/* Scaffolding (each test file carries its own copy)                   */

#define UT_TAG "proto"


/* ------------------------------------------------------------------ */
/* Fixture: a segment, a sender in STATE, receivers in ROUTER and MONITOR */

#define TX MC_WORKER_STATE
#define RX MC_WORKER_ROUTER
#define RY MC_WORKER_MONITOR
#define BIT(s) (1ull << (s))

static char err[512];
static struct mc_config cfg;
static struct mc_layout lay;
static struct mc_seg sup, tx, rx, ry;

static void attach_worker(struct mc_seg *s, unsigned slot)
{
	ut_worker(s, cfg.instance, slot);
}

static void up(void)
{
	pid_t swept;
	int rc;

	ut_guard_start(UT_TAG);
	rc = mc_config_load(MC_SOURCE_DIR "/config/test.toml", &cfg, err, sizeof(err));
	cr_assert_eq(rc, 0, "config/test.toml: %s", err);
	ut_instance(cfg.instance, sizeof(cfg.instance));
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), 0, "%s", err);
	rc = mc_seg_create(&sup, &cfg, &lay, &swept, err, sizeof(err));
	cr_assert_eq(rc, 0, "create: %d %s", rc, err);
	ck_pr_store_32(&sup.hdr->sh_state, MC_SEG_READY);
	attach_worker(&tx, TX);
	attach_worker(&rx, RX);
	attach_worker(&ry, RY);
}

static void down(void)
{
	if (tx.base)
		mc_seg_detach(&tx);
	if (rx.base)
		mc_seg_detach(&rx);
	if (ry.base)
		mc_seg_detach(&ry);
	if (sup.base)
		mc_seg_destroy(&sup);
	ut_fini();
}

/*
 * Send `msg` from TX to RX, receive it, check the frame against the
 * message, decode it and let go of the frame.  Returns the decoded copy.
 */
static ProtobufCMessage *round_trip(const ProtobufCMessage *msg, uint16_t kind)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *want = malloc(len + 1);
	ProtobufCMessage *out;
	struct mc_msg m;
	int rc;

	cr_assert_not_null(want);
	cr_assert_eq(protobuf_c_message_pack(msg, want), len);
	rc = mc_proto_send(&tx, msg, BIT(RX));
	cr_assert_eq(rc, 0, "mc_proto_send of kind %u: %d", kind, rc);
	rc = mc_recv(&rx, &m);
	cr_assert_eq(rc, 0, "nothing received: %d", rc);
	cr_assert_eq(m.frame->f_kind, kind, "frame kind %u, expected %u", m.frame->f_kind, kind);
	cr_assert_eq(m.frame->f_len, len, "frame holds %u bytes, message packs to %zu",
	    m.frame->f_len, len);
	cr_assert_eq(m.frame->f_src, TX);
	cr_assert_eq(memcmp(m.frame->f_data, want, len), 0, "frame bytes differ from the packing");
	out = mc_proto_unpack(m.frame);
	cr_assert_not_null(out, "a frame of kind %u did not decode", kind);
	cr_assert_eq(out->descriptor, mc_proto_descriptor(kind));
	mc_frame_release(&rx, &m);
	cr_assert_eq(mc_frame_pool_used(&tx, TX), 0);
	cr_assert_eq(mc_recv(&rx, &m), -EAGAIN);
	free(want);
	return out;
}

/* Frame of `kind` with arbitrary bytes, received by RX (still held). */
static void raw_frame(uint16_t kind, const void *bytes, uint32_t len, struct mc_msg *m)
{
	int e;
	struct mc_frame *f = mc_frame_alloc(&tx, len, kind, &e);

	cr_assert_not_null(f, "alloc: %d", e);
	memcpy(f->f_data, bytes, len);
	cr_assert_eq(mc_frame_send(&tx, f, BIT(RX)), 0);
	cr_assert_eq(mc_recv(&rx, m), 0);
	cr_assert_eq(m->frame->f_kind, kind);
}

static const char *map_get(size_t n, void **entries, const char *key)
{
	/* every string->string entry type has the same layout */
	for (size_t i = 0; i < n; i++) {
		Mcpcore__MCPMessage__MetadataEntry *e = entries[i];

		if (strcmp(e->key, key) == 0)
			return e->value;
	}
	return NULL;
}

TestSuite(proto, .init = up, .fini = down, .timeout = 60);

/* ------------------------------------------------------------------ */

Test(proto, kind_mapping_both_ways)
{
	static const struct {
		uint16_t kind;
		const ProtobufCMessageDescriptor *desc;
	} map[] = {
		{ MC_FK_CONTROL, &mcpcore__control__descriptor },
		{ MC_FK_MCP, &mcpcore__mcpmessage__descriptor },
		{ MC_FK_LEARNING_DATA, &mcpcore__learning_data__descriptor },
		{ MC_FK_LEARNING_MODEL, &mcpcore__learning_model__descriptor },
		{ MC_FK_TRAINING_DATA, &mcpcore__training_data__descriptor },
		{ MC_FK_STATE_REQUEST, &mcpcore__state_request__descriptor },
		{ MC_FK_STATE_REPLY, &mcpcore__state_reply__descriptor },
		{ MC_FK_STATE_CHANGES, &mcpcore__state_change_batch__descriptor },
	};
	ProtobufCMessageDescriptor copy = mcpcore__control__descriptor;

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		cr_assert_eq(mc_proto_descriptor(map[i].kind), map[i].desc, "kind %u", map[i].kind);
		cr_assert_eq(mc_proto_kind(map[i].desc), map[i].kind, "%s", map[i].desc->name);
	}
	/* kinds are sparse (a range per module); the unassigned ones have none */
	for (unsigned k = 1; k < MC_FK_COUNT; k++) {
		const ProtobufCMessageDescriptor *d = mc_proto_descriptor((uint16_t)k);

		if (d != NULL)
			cr_assert_eq(mc_proto_kind(d), (int)k, "kind %u maps back to %d", k,
			    mc_proto_kind(d));
	}
	cr_assert_null(mc_proto_descriptor(MC_FK_RAW));
	cr_assert_null(mc_proto_descriptor(MC_FK_COUNT));
	cr_assert_null(mc_proto_descriptor(999));
	cr_assert_null(mc_proto_descriptor(UINT16_MAX));
	cr_assert_eq(mc_proto_kind(NULL), -1);
	cr_assert_eq(mc_proto_kind(&mcpcore__mcpmessage__metadata_entry__descriptor), -1);
	cr_assert_eq(mc_proto_kind(&mcpcore__learning_model__performance_metrics_entry__descriptor), -1);
	cr_assert_eq(mc_proto_kind(&copy), -1, "kind found by value, not identity");
}

Test(proto, mcp_message_with_metadata)
{
	static const char payload[] =
	    "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"x\":\"\\u0000\"}}"
	    "\0binary\xff\xfe tail";
	Mcpcore__MCPMessage__MetadataEntry e[4] = {
		MCPCORE__MCPMESSAGE__METADATA_ENTRY__INIT, MCPCORE__MCPMESSAGE__METADATA_ENTRY__INIT,
		MCPCORE__MCPMESSAGE__METADATA_ENTRY__INIT, MCPCORE__MCPMESSAGE__METADATA_ENTRY__INIT,
	};
	Mcpcore__MCPMessage__MetadataEntry *ep[4] = { &e[0], &e[1], &e[2], &e[3] };
	Mcpcore__MCPMessage msg = MCPCORE__MCPMESSAGE__INIT;
	Mcpcore__MCPMessage *out;

	e[0].key = "session";         e[0].value = "s-42";
	e[1].key = "correlation_id";  e[1].value = "c0ffee-\xc3\xa9-\xe2\x9c\x93";
	e[2].key = "peer";            e[2].value = "";
	e[3].key = "quote\"key";      e[3].value = "line\nbreak";
	msg.timestamp = 1764043390123456789ull;
	msg.message_type = "tools/call";
	msg.payload.data = (uint8_t *)payload;
	msg.payload.len = sizeof(payload) - 1;
	msg.n_metadata = 4;
	msg.metadata = ep;

	out = (Mcpcore__MCPMessage *)round_trip(&msg.base, MC_FK_MCP);
	cr_assert_eq(out->timestamp, msg.timestamp);
	cr_assert_str_eq(out->message_type, "tools/call");
	cr_assert_eq(out->payload.len, msg.payload.len);
	cr_assert_eq(memcmp(out->payload.data, payload, msg.payload.len), 0);
	cr_assert_eq(out->n_metadata, 4);
	for (int i = 0; i < 4; i++) {
		const char *v = map_get(out->n_metadata, (void **)out->metadata, e[i].key);

		cr_assert_not_null(v, "metadata key %s lost", e[i].key);
		cr_assert_str_eq(v, e[i].value);
	}
	protobuf_c_message_free_unpacked(&out->base, NULL);
}

Test(proto, learning_data_with_features)
{
	enum { NF = 5000 };
	float *feat = malloc(NF * sizeof(float));
	Mcpcore__LearningData__MetadataEntry me = MCPCORE__LEARNING_DATA__METADATA_ENTRY__INIT;
	Mcpcore__LearningData__MetadataEntry *mep = &me;
	Mcpcore__LearningData msg = MCPCORE__LEARNING_DATA__INIT;
	Mcpcore__LearningData *out;

	cr_assert_not_null(feat);
	for (int i = 0; i < NF; i++)
		feat[i] = (float)i * 0.25f - 100.0f;
	feat[0] = -0.0f;
	feat[1] = INFINITY;
	feat[2] = -INFINITY;
	feat[3] = 1e-40f;                       /* subnormal */
	feat[4] = NAN;
	me.key = "origin";
	me.value = "sensor-9";
	msg.timestamp = 99;
	msg.source = "router";
	msg.n_features = NF;
	msg.features = feat;
	msg.label = -3.5f;
	msg.n_metadata = 1;
	msg.metadata = &mep;

	out = (Mcpcore__LearningData *)round_trip(&msg.base, MC_FK_LEARNING_DATA);
	cr_assert_eq(out->timestamp, 99);
	cr_assert_str_eq(out->source, "router");
	cr_assert_eq(out->label, -3.5f);
	cr_assert_eq(out->n_features, NF);
	cr_assert_eq(memcmp(out->features, feat, NF * sizeof(float)), 0, "features differ bitwise");
	cr_assert_eq(out->n_metadata, 1);
	cr_assert_str_eq(out->metadata[0]->key, "origin");
	cr_assert_str_eq(out->metadata[0]->value, "sensor-9");
	protobuf_c_message_free_unpacked(&out->base, NULL);
	free(feat);
}

Test(proto, learning_model_with_lineage_and_metrics)
{
	uint64_t parents[] = { 1, 2, 2, UINT64_MAX, 1ull << 63 };
	Mcpcore__LearningModel__PerformanceMetricsEntry pm[3] = {
		MCPCORE__LEARNING_MODEL__PERFORMANCE_METRICS_ENTRY__INIT,
		MCPCORE__LEARNING_MODEL__PERFORMANCE_METRICS_ENTRY__INIT,
		MCPCORE__LEARNING_MODEL__PERFORMANCE_METRICS_ENTRY__INIT,
	};
	Mcpcore__LearningModel__PerformanceMetricsEntry *pmp[3] = { &pm[0], &pm[1], &pm[2] };
	Mcpcore__LearningModel msg = MCPCORE__LEARNING_MODEL__INIT;
	Mcpcore__LearningModel *out;
	size_t dlen = (size_t)(sup.hdr->sh_max_frame / 2);
	uint8_t *data = malloc(dlen);

	cr_assert_not_null(data);
	for (size_t i = 0; i < dlen; i++)
		data[i] = (uint8_t)(i * 2654435761u >> 13);
	pm[0].key = "accuracy";  pm[0].value = 0.987654321;
	pm[1].key = "loss";      pm[1].value = -1e-300;
	pm[2].key = "f1";        pm[2].value = 1.0 / 3.0;
	msg.model_id = "model/alpha";
	msg.version = UINT64_MAX;
	msg.created_at = 1764043390000000000ull;
	msg.model_data.data = data;
	msg.model_data.len = dlen;
	msg.n_performance_metrics = 3;
	msg.performance_metrics = pmp;
	msg.n_parent_versions = sizeof(parents) / sizeof(parents[0]);
	msg.parent_versions = parents;

	out = (Mcpcore__LearningModel *)round_trip(&msg.base, MC_FK_LEARNING_MODEL);
	cr_assert_str_eq(out->model_id, "model/alpha");
	cr_assert_eq(out->version, UINT64_MAX);
	cr_assert_eq(out->created_at, msg.created_at);
	cr_assert_eq(out->model_data.len, dlen);
	cr_assert_eq(memcmp(out->model_data.data, data, dlen), 0);
	cr_assert_eq(out->n_parent_versions, msg.n_parent_versions);
	for (size_t i = 0; i < msg.n_parent_versions; i++)
		cr_assert_eq(out->parent_versions[i], parents[i], "parent %zu", i);
	cr_assert_eq(out->n_performance_metrics, 3);
	for (int i = 0; i < 3; i++) {
		bool found = false;

		for (size_t k = 0; k < out->n_performance_metrics; k++)
			if (strcmp(out->performance_metrics[k]->key, pm[i].key) == 0) {
				cr_assert_eq(out->performance_metrics[k]->value, pm[i].value, "%s",
				    pm[i].key);
				found = true;
			}
		cr_assert(found, "metric %s lost", pm[i].key);
	}
	protobuf_c_message_free_unpacked(&out->base, NULL);
	free(data);
}

Test(proto, training_data_with_samples)
{
	enum { NS = 60, NF = 17 };
	Mcpcore__LearningData s[NS], *sp[NS];
	float feats[NS][NF];
	Mcpcore__TrainingData__MetadataEntry me = MCPCORE__TRAINING_DATA__METADATA_ENTRY__INIT;
	Mcpcore__TrainingData__MetadataEntry *mep = &me;
	Mcpcore__TrainingData msg = MCPCORE__TRAINING_DATA__INIT;
	Mcpcore__TrainingData *out;
	char src[NS][16];

	for (int i = 0; i < NS; i++) {
		mcpcore__learning_data__init(&s[i]);
		for (int f = 0; f < NF; f++)
			feats[i][f] = (float)(i * NF + f) / 7.0f;
		snprintf(src[i], sizeof(src[i]), "src-%d", i);
		s[i].timestamp = 1000 + (uint64_t)i;
		s[i].source = src[i];
		s[i].n_features = NF;
		s[i].features = feats[i];
		s[i].label = (float)(i % 2);
		sp[i] = &s[i];
	}
	me.key = "split";
	me.value = "train";
	msg.dataset = "ds-\xe6\x97\xa5\xe6\x9c\xac";
	msg.timestamp = 5;
	msg.n_samples = NS;
	msg.samples = sp;
	msg.n_metadata = 1;
	msg.metadata = &mep;

	out = (Mcpcore__TrainingData *)round_trip(&msg.base, MC_FK_TRAINING_DATA);
	cr_assert_str_eq(out->dataset, msg.dataset);
	cr_assert_eq(out->timestamp, 5);
	cr_assert_eq(out->n_samples, NS);
	for (int i = 0; i < NS; i++) {
		const Mcpcore__LearningData *o = out->samples[i];

		cr_assert_eq(o->timestamp, 1000 + (uint64_t)i);
		cr_assert_str_eq(o->source, src[i]);
		cr_assert_eq(o->label, (float)(i % 2));
		cr_assert_eq(o->n_features, NF);
		cr_assert_eq(memcmp(o->features, feats[i], sizeof(feats[i])), 0, "sample %d", i);
	}
	cr_assert_eq(out->n_metadata, 1);
	cr_assert_str_eq(out->metadata[0]->value, "train");
	protobuf_c_message_free_unpacked(&out->base, NULL);
}

Test(proto, control_ping_pong)
{
	Mcpcore__Control msg = MCPCORE__CONTROL__INIT;
	Mcpcore__Control *out;

	msg.op = MCPCORE__CONTROL__OP__PONG;
	msg.nonce = 0xdeadbeefcafef00dull;
	msg.sent_ns = 123456789;
	msg.worker = "router";
	msg.generation = 4000000000u;
	msg.pid = -12345;
	msg.handled = 1ull << 40;
	out = (Mcpcore__Control *)round_trip(&msg.base, MC_FK_CONTROL);
	cr_assert_eq(out->op, MCPCORE__CONTROL__OP__PONG);
	cr_assert_eq(out->nonce, msg.nonce);
	cr_assert_eq(out->sent_ns, msg.sent_ns);
	cr_assert_str_eq(out->worker, "router");
	cr_assert_eq(out->generation, 4000000000u);
	cr_assert_eq(out->pid, -12345);
	cr_assert_eq(out->handled, msg.handled);
	protobuf_c_message_free_unpacked(&out->base, NULL);
}

/* All-default messages pack to zero bytes: still a frame, still a message. */
Test(proto, empty_messages_of_every_kind)
{
	Mcpcore__Control c = MCPCORE__CONTROL__INIT;
	Mcpcore__MCPMessage m = MCPCORE__MCPMESSAGE__INIT;
	Mcpcore__LearningData d = MCPCORE__LEARNING_DATA__INIT;
	Mcpcore__LearningModel l = MCPCORE__LEARNING_MODEL__INIT;
	Mcpcore__TrainingData t = MCPCORE__TRAINING_DATA__INIT;
	const struct { const ProtobufCMessage *msg; uint16_t kind; } all[] = {
		{ &c.base, MC_FK_CONTROL }, { &m.base, MC_FK_MCP },
		{ &d.base, MC_FK_LEARNING_DATA }, { &l.base, MC_FK_LEARNING_MODEL },
		{ &t.base, MC_FK_TRAINING_DATA },
	};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		ProtobufCMessage *out = round_trip(all[i].msg, all[i].kind);

		protobuf_c_message_free_unpacked(out, NULL);
	}
}

/* One send, two receivers, one frame: both decode the same message. */
Test(proto, send_to_two_destinations)
{
	Mcpcore__Control msg = MCPCORE__CONTROL__INIT;
	struct mc_msg a, b;
	Mcpcore__Control *oa, *ob;

	msg.nonce = 77;
	cr_assert_eq(mc_proto_send(&tx, &msg.base, BIT(RX) | BIT(RY)), 0);
	cr_assert_eq(mc_recv(&rx, &a), 0);
	cr_assert_eq(mc_recv(&ry, &b), 0);
	oa = (Mcpcore__Control *)mc_proto_unpack(a.frame);
	ob = (Mcpcore__Control *)mc_proto_unpack(b.frame);
	cr_assert_not_null(oa);
	cr_assert_not_null(ob);
	cr_assert_eq(oa->nonce, 77);
	cr_assert_eq(ob->nonce, 77);
	mc_frame_release(&rx, &a);
	cr_assert_gt(mc_frame_pool_used(&tx, TX), 0);
	mc_frame_release(&ry, &b);
	cr_assert_eq(mc_frame_pool_used(&tx, TX), 0);
	protobuf_c_message_free_unpacked(&oa->base, NULL);
	protobuf_c_message_free_unpacked(&ob->base, NULL);
}

Test(proto, unknown_or_raw_kind_gives_null)
{
	Mcpcore__Control msg = MCPCORE__CONTROL__INIT;
	uint8_t buf[64];
	size_t len;
	struct mc_msg m;
	const uint16_t kinds[] = { MC_FK_RAW, MC_FK_COUNT, 77, UINT16_MAX };

	msg.nonce = 5;
	msg.worker = "w";
	len = protobuf_c_message_pack(&msg.base, buf);
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		raw_frame(kinds[i], buf, (uint32_t)len, &m);
		cr_assert_null(mc_proto_unpack(m.frame), "frame of kind %u decoded", kinds[i]);
		mc_frame_release(&rx, &m);
	}
}

Test(proto, truncated_or_garbage_payload_gives_null)
{
	uint64_t parents[] = { 10, 20, 30, 40 };
	uint8_t blob[300];
	Mcpcore__LearningModel lm = MCPCORE__LEARNING_MODEL__INIT;
	Mcpcore__MCPMessage mm = MCPCORE__MCPMESSAGE__INIT;
	uint8_t *buf;
	size_t len;
	struct mc_msg m;
	static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0xff, 0xff, 0xff, 0x01, 0x0a, 0x7f };
	static const uint8_t bad_wire[] = { 0x0f, 0x00 };      /* field 1, wire type 7 */

	memset(blob, 0x5c, sizeof(blob));
	lm.model_id = "m";
	lm.model_data.data = blob;
	lm.model_data.len = sizeof(blob);
	lm.n_parent_versions = 4;
	lm.parent_versions = parents;               /* last field: packed, length-delimited */
	len = protobuf_c_message_get_packed_size(&lm.base);
	buf = malloc(len);
	cr_assert_not_null(buf);
	protobuf_c_message_pack(&lm.base, buf);
	raw_frame(MC_FK_LEARNING_MODEL, buf, (uint32_t)len - 1, &m);
	cr_assert_null(mc_proto_unpack(m.frame), "a model cut short by one byte decoded");
	mc_frame_release(&rx, &m);
	raw_frame(MC_FK_LEARNING_MODEL, buf, (uint32_t)len - 20, &m);
	cr_assert_null(mc_proto_unpack(m.frame), "a model cut inside model_data decoded");
	mc_frame_release(&rx, &m);
	free(buf);

	mm.message_type = "initialize";
	mm.payload.data = blob;
	mm.payload.len = 200;
	len = protobuf_c_message_get_packed_size(&mm.base);
	buf = malloc(len);
	cr_assert_not_null(buf);
	protobuf_c_message_pack(&mm.base, buf);
	raw_frame(MC_FK_MCP, buf, (uint32_t)len - 5, &m);
	cr_assert_null(mc_proto_unpack(m.frame), "an MCP message cut inside payload decoded");
	mc_frame_release(&rx, &m);
	free(buf);

	raw_frame(MC_FK_CONTROL, garbage, sizeof(garbage), &m);
	cr_assert_null(mc_proto_unpack(m.frame), "garbage decoded as Control");
	mc_frame_release(&rx, &m);
	raw_frame(MC_FK_TRAINING_DATA, bad_wire, sizeof(bad_wire), &m);
	cr_assert_null(mc_proto_unpack(m.frame), "invalid wire type decoded");
	mc_frame_release(&rx, &m);
	cr_assert_eq(mc_frame_pool_used(&tx, TX), 0);
}

/* Every failing send leaves nothing allocated: the next alloc works. */
Test(proto, failed_send_leaves_nothing_allocated)
{
	Mcpcore__Control c = MCPCORE__CONTROL__INIT;
	Mcpcore__MCPMessage big = MCPCORE__MCPMESSAGE__INIT;
	Mcpcore__MCPMessage__MetadataEntry entry = MCPCORE__MCPMESSAGE__METADATA_ENTRY__INIT;
	size_t blen = (size_t)sup.hdr->sh_max_frame + 1;
	uint8_t *blob = calloc(1, blen);
	struct mc_frame *f;
	struct mc_msg m;
	uint32_t ring, cap;
	int e;

	cr_assert_not_null(blob);
	c.nonce = 1;
	cr_assert_eq(mc_proto_send(&tx, &c.base, BIT(TX)), -EINVAL, "send to self");
	cr_assert_eq(mc_proto_send(&tx, &c.base, BIT(MC_SLOT_SUPERVISOR)), -EINVAL);
	cr_assert_eq(mc_proto_send(&tx, &c.base, 0), -EINVAL);
	cr_assert_eq(mc_frame_pool_used(&tx, TX), 0);

	big.payload.data = blob;
	big.payload.len = blen;
	cr_assert_eq(mc_proto_send(&tx, &big.base, BIT(RX)), -EMSGSIZE);
	cr_assert_eq(mc_frame_pool_used(&tx, TX), 0);

	/* a message type that is not a frame kind */
	entry.key = "k";
	entry.value = "v";
	cr_assert_eq(mc_proto_send(&tx, &entry.base, BIT(RX)), -EINVAL);

	ck_pr_store_32(&sup.slots[RY].sl_state, MC_SLOT_FAILED);
	cr_assert_eq(mc_proto_send(&tx, &c.base, BIT(RY)), -EPIPE);
	cr_assert_eq(mc_proto_send(&tx, &c.base, BIT(RX) | BIT(RY)), -EPIPE);
	ck_pr_store_32(&sup.slots[RY].sl_state, MC_SLOT_RUNNING);
	cr_assert_eq(mc_frame_pool_used(&tx, TX), 0);
	cr_assert_eq(mc_recv(&rx, &m), -EAGAIN, "a failed send reached RX");

	/* full ring: -EAGAIN, and the allocation is given back */
	ring = (uint32_t)mc_ring_index(&tx, TX, RX);
	cap = mc_ring_capacity(&tx, ring);
	for (uint32_t i = 0; i < cap; i++)
		cr_assert_eq(mc_proto_send(&tx, &c.base, BIT(RX)), 0);
	{
		uint64_t used = mc_frame_pool_used(&tx, TX);

		cr_assert_eq(mc_proto_send(&tx, &c.base, BIT(RX)), -EAGAIN);
		cr_assert_eq(mc_frame_pool_used(&tx, TX), used, "failed send kept its frame");
	}
	f = mc_frame_alloc(&tx, 8, MC_FK_RAW, &e);
	cr_assert_not_null(f, "allocation left outstanding by a failed send: %d", e);
	mc_frame_abort(&tx, f);
	for (uint32_t i = 0; i < cap; i++) {
		cr_assert_eq(mc_recv(&rx, &m), 0);
		mc_frame_release(&rx, &m);
	}
	cr_assert_eq(mc_recv(&rx, &m), -EAGAIN);
	cr_assert_eq(mc_frame_pool_used(&tx, TX), 0);
	free(blob);
}

/* ---- wire scanner (mc_pb_next, mc_pb_scan) --------------------------------- */

/*
 * The scanner reads a packed MCPMessage field by field, with the values
 * protobuf-c wrote (metadata entries scanned in turn), and refuses bytes
 * that are not a message at every point where one can be cut.
 */
Test(proto, wire_scanner_reads_what_protobuf_c_wrote)
{
	Mcpcore__MCPMessage msg = MCPCORE__MCPMESSAGE__INIT;
	Mcpcore__MCPMessage__MetadataEntry e[2], *ents[2] = { &e[0], &e[1] };
	uint8_t buf[512];
	struct mc_pb_field f;
	size_t len, pos = 0;
	int nmeta = 0, rc;

	mcpcore__mcpmessage__metadata_entry__init(&e[0]);
	mcpcore__mcpmessage__metadata_entry__init(&e[1]);
	e[0].key = "outcome";
	e[0].value = "error -32602";
	e[1].key = "reply";
	e[1].value = "error";
	msg.timestamp = 1795613306346135000ull;
	msg.message_type = "tools/call";
	msg.payload.data = (uint8_t *)"{\"jsonrpc\":\"2.0\"}";
	msg.payload.len = 17;
	msg.n_metadata = 2;
	msg.metadata = ents;
	len = protobuf_c_message_get_packed_size(&msg.base);
	cr_assert_leq(len, sizeof(buf));
	protobuf_c_message_pack(&msg.base, buf);

	while ((rc = mc_pb_next(buf, len, &pos, &f)) == 1) {
		if (f.num == 1) {
			cr_assert_eq(f.wire, 0);
			cr_assert_eq(f.u64, msg.timestamp);
		} else if (f.num == 2 || f.num == 3) {
			const char *want = f.num == 2 ? "tools/call" : "{\"jsonrpc\":\"2.0\"}";

			cr_assert_eq(f.wire, 2);
			cr_assert_eq(f.len, strlen(want));
			cr_assert_eq(memcmp(f.ptr, want, f.len), 0);
		} else {
			struct mc_pb_field k, v;

			cr_assert_eq(f.num, 4);
			cr_assert_eq(mc_pb_scan(f.ptr, f.len, 1, &k), 1);
			cr_assert_eq(mc_pb_scan(f.ptr, f.len, 2, &v), 1);
			cr_assert_eq(k.len, strlen(e[nmeta].key));
			cr_assert_eq(memcmp(k.ptr, e[nmeta].key, k.len), 0);
			cr_assert_eq(v.len, strlen(e[nmeta].value));
			cr_assert_eq(memcmp(v.ptr, e[nmeta].value, v.len), 0);
			nmeta++;
		}
	}
	cr_assert_eq(rc, 0, "scan ended with %d", rc);
	cr_assert_eq(pos, len);
	cr_assert_eq(nmeta, 2);
	cr_assert_eq(mc_pb_scan(buf, len, 9, &f), 0, "an absent field was found");
	cr_assert_eq(mc_pb_scan(buf, len, 0, NULL), 0, "a whole message does not validate");
	/* every cut inside the last field leaves a truncated length or value */
	for (size_t cut = len - 1; cut > len - 8; cut--)
		cr_assert_eq(mc_pb_scan(buf, cut, 0, NULL), -EBADMSG, "cut at %zu of %zu", cut, len);
	/* fixed-width values: LearningData.label is a float (wire 5) */
	{
		Mcpcore__LearningData ld = MCPCORE__LEARNING_DATA__INIT;
		float label = 0.75f;
		uint32_t bits;

		ld.label = label;
		len = protobuf_c_message_get_packed_size(&ld.base);
		protobuf_c_message_pack(&ld.base, buf);
		memcpy(&bits, &label, sizeof(bits));
		cr_assert_eq(mc_pb_scan(buf, len, 4, &f), 1);
		cr_assert_eq(f.wire, 5);
		cr_assert_eq(f.u64, bits);
		cr_assert_eq(mc_pb_scan(buf, len - 1, 0, NULL), -EBADMSG, "a cut fixed32 was read");
	}
	/* field number 0, a group, an unfinished varint */
	cr_assert_eq(mc_pb_scan((const uint8_t *)"\x00\x01", 2, 0, NULL), -EBADMSG);
	cr_assert_eq(mc_pb_scan((const uint8_t *)"\x0b", 1, 0, NULL), -EBADMSG);
	cr_assert_eq(mc_pb_scan((const uint8_t *)"\x08\xff\xff", 3, 0, NULL), -EBADMSG);
}

/* ------------------------------------------------------------------ */
/* Arena decoding (ARENA DECODING in mc_proto.h)                       */

/* A frame on the heap: all the decoders read of one is kind, len, data. */
static struct mc_frame *heap_frame(uint16_t kind, const void *bytes, size_t len)
{
	struct mc_frame *f = calloc(1, sizeof(*f) + len + 1);

	cr_assert_not_null(f);
	f->f_kind = kind;
	f->f_len = (uint32_t)len;
	if (len)
		memcpy(f->f_data, bytes, len);
	return f;
}

Test(proto, arena_messages_live_until_given_back_and_big_ones_spill_to_the_heap)
{
	struct mc_proto_arena a;
	Mcpcore__StateOp ops[40], *opp[40];
	Mcpcore__StateRequest req = MCPCORE__STATE_REQUEST__INIT;
	Mcpcore__MCPMessage mcp = MCPCORE__MCPMESSAGE__INIT;
	uint8_t big[2000], *buf = malloc(131072);      /* 40 ops of 2 KB */
	struct mc_frame *f1, *f2, *f3;
	ProtobufCMessage *m1, *m2;
	size_t len;

	cr_assert_not_null(buf);
	memset(big, 'v', sizeof(big));
	for (int i = 0; i < 40; i++) {
		mcpcore__state_op__init(&ops[i]);
		ops[i].kind = MCPCORE__STATE_OP__KIND__PUT;
		ops[i].id = (uint64_t)i + 1;
		ops[i].ns = (ProtobufCBinaryData){ 2, (uint8_t *)"ns" };
		ops[i].key = (ProtobufCBinaryData){ 3, (uint8_t *)"key" };
		ops[i].value = (ProtobufCBinaryData){ sizeof(big), big };
		opp[i] = &ops[i];
	}
	req.n_ops = 40;
	req.ops = opp;
	len = protobuf_c_message_pack(&req.base, buf);
	f1 = heap_frame(MC_FK_STATE_REQUEST, buf, len);         /* ~80 KB decoded */
	mcp.message_type = (char *)"ping";
	mcp.payload = (ProtobufCBinaryData){ 2, (uint8_t *)"{}" };
	len = protobuf_c_message_pack(&mcp.base, buf);
	f2 = heap_frame(MC_FK_MCP, buf, len);                   /* protobuf-c's own decoding */
	f3 = heap_frame(MC_FK_MCP, "\xff\xff", 2);              /* garbage */

	mc_proto_arena_init(&a, 4096);
	m2 = mc_proto_unpack_in(&a, f2);
	cr_assert_not_null(m2);
	cr_assert_eq(a.pa_live, 1);
	cr_assert_eq(a.pa_heap, 0, "a small message fits");
	cr_assert_not_null(a.pa_buf);
	m1 = mc_proto_unpack_in(&a, f1);
	cr_assert_not_null(m1);
	cr_assert_eq(a.pa_live, 2);
	cr_assert_gt(a.pa_heap, 30, "the big one spilled: %u parts on the heap", a.pa_heap);
	len = a.pa_used;
	cr_assert_null(mc_proto_unpack_in(&a, f3));
	cr_assert_eq(a.pa_used, len, "a refused frame leaves nothing behind");
	cr_assert_eq(a.pa_live, 2);
	/* both intact while both are out, whatever was freed in between */
	free(f1);
	free(f2);
	cr_assert_str_eq(((Mcpcore__MCPMessage *)m2)->message_type, "ping");
	for (int i = 0; i < 40; i++) {
		const Mcpcore__StateOp *op = ((Mcpcore__StateRequest *)m1)->ops[i];

		cr_assert_eq(op->id, (uint64_t)i + 1);
		cr_assert_eq(op->value.len, sizeof(big));
		cr_assert_eq(memcmp(op->value.data, big, sizeof(big)), 0);
	}
	mc_proto_free_in(&a, m1);
	cr_assert_eq(a.pa_heap, 0, "heap parts go back with their message");
	cr_assert_eq(a.pa_live, 1);
	cr_assert_neq(a.pa_used, 0, "the arena is reused only once everything is back");
	cr_assert_str_eq(((Mcpcore__MCPMessage *)m2)->message_type, "ping");
	mc_proto_free_in(&a, m2);
	cr_assert_eq(a.pa_live, 0);
	cr_assert_eq(a.pa_used, 0);
	mc_proto_free_in(&a, NULL);
	mc_proto_arena_fini(&a);
	cr_assert_null(a.pa_buf);
	free(f3);
	free(buf);
}
