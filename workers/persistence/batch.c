/*
 * batch.c - group-commit batches and dedup marks of the persistence
 * worker (contract in mc_pbatch.h).
 *
 * Hot path: a 256-byte MCPMessage costs one wire scan when taken (shape
 * and timestamp; no decode, no allocation) and one WriteBatch put at
 * commit, which copies key and value into the batch's buffer.  State
 * change batches are decoded (to check them when taken, to split them at
 * commit); they are few.
 */
#include "mc_pbatch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_log.h"
#include "mc_pkeys.h"
#include "mc_proto.h"

#define MC_PBATCH_MARKS_VERSION 1u
#define MC_PBATCH_MARKS_MAX (24u + 8u * MC_MAX_SLOTS)

static void mc_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void mc_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t mc_get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t mc_get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* magic | version | run | nslots | 0 | marks[nslots], little-endian */
size_t mc_pbatch_marks_encode(uint8_t *buf, uint64_t run, const uint64_t *marks)
{
	mc_le32(buf, MC_PBATCH_MARKS_MAGIC);
	mc_le32(buf + 4, MC_PBATCH_MARKS_VERSION);
	mc_le64(buf + 8, run);
	mc_le32(buf + 16, MC_MAX_SLOTS);
	mc_le32(buf + 20, 0);
	for (unsigned i = 0; i < MC_MAX_SLOTS; i++)
		mc_le64(buf + 24 + 8 * i, marks[i]);
	return MC_PBATCH_MARKS_MAX;
}

int mc_pbatch_marks_decode(const uint8_t *buf, size_t len, uint64_t *run, uint64_t *marks)
{
	uint32_t n;

	if (len < 24 || mc_get_le32(buf) != MC_PBATCH_MARKS_MAGIC ||
	    mc_get_le32(buf + 4) != MC_PBATCH_MARKS_VERSION)
		return -EINVAL;
	n = mc_get_le32(buf + 16);
	if (n > MC_MAX_SLOTS || len != 24 + 8 * (size_t)n)
		return -EINVAL;
	*run = mc_get_le64(buf + 8);
	memset(marks, 0, sizeof(uint64_t) * MC_MAX_SLOTS);
	for (uint32_t i = 0; i < n; i++)
		marks[i] = mc_get_le64(buf + 24 + 8 * i);
	return 0;
}

bool mc_pbatch_storable(uint16_t kind)
{
	return kind == MC_FK_MCP || kind == MC_FK_TRAINING_DATA || kind == MC_FK_LEARNING_MODEL ||
	    kind == MC_FK_STATE_CHANGES || (kind >= 30 && kind <= 39);
}

int mc_pbatch_init(struct mc_pbatch *b, uint64_t run, uint32_t cap)
{
	memset(b, 0, sizeof(*b));
	b->run = run;
	b->cap = cap ? cap : 1;
	b->items = calloc(b->cap, sizeof(*b->items));
	b->wb = rocksdb_writebatch_create();
	if (b->items == NULL || b->wb == NULL) {
		mc_pbatch_free(b);
		return -ENOMEM;
	}
	return 0;
}

void mc_pbatch_free(struct mc_pbatch *b)
{
	if (b->wb != NULL)
		rocksdb_writebatch_destroy(b->wb);
	free(b->items);
	b->wb = NULL;
	b->items = NULL;
	b->n = b->cap = 0;
}

int mc_pbatch_load_marks(struct mc_pbatch *b, struct mc_pstore *st, char *err, size_t errlen)
{
	uint64_t run = 0, marks[MC_MAX_SLOTS];
	char *val = NULL;
	size_t vlen = 0;
	int rc = mc_pstore_get(st, MC_CF_DEFAULT, MC_PSTORE_KEY_DEDUP, strlen(MC_PSTORE_KEY_DEDUP),
	    &val, &vlen, err, errlen);

	if (rc < 0)
		return rc;
	memset(b->hwm, 0, sizeof(b->hwm));
	if (rc == 1 && mc_pbatch_marks_decode((const uint8_t *)val, vlen, &run, marks) == 0 &&
	    run == b->run)
		memcpy(b->hwm, marks, sizeof(b->hwm));
	else
		rc = 0;
	for (unsigned i = 0; i < MC_MAX_SLOTS; i++)
		if (b->pend[i] < b->hwm[i])
			b->pend[i] = b->hwm[i];
	free(val);
	return rc;
}

uint32_t mc_pbatch_filter(struct mc_pbatch *b, void (*release)(void *ctx, struct mc_msg *m),
    void *ctx)
{
	uint32_t kept = 0, dropped = 0;

	b->bytes = 0;
	for (uint32_t i = 0; i < b->n; i++) {
		struct mc_pbatch_item *it = &b->items[i];

		if (it->seq <= b->hwm[it->src]) {
			if (release != NULL)
				release(ctx, &it->msg);
			dropped++;
			continue;
		}
		b->bytes += it->len;
		if (kept != i)
			b->items[kept] = *it;
		kept++;
	}
	b->n = kept;
	return dropped;
}

/* Check a StateChangeBatch when it is taken: it must parse, with names. */
static int mc_pbatch_state_check(const uint8_t *data, uint32_t len, char *why, size_t whylen)
{
	Mcpcore__StateChangeBatch *batch = mcpcore__state_change_batch__unpack(NULL, len, data);
	int rc = 0;

	if (batch == NULL) {
		snprintf(why, whylen, "StateChangeBatch does not parse");
		return -EBADMSG;
	}
	for (size_t i = 0; i < batch->n_changes && rc == 0; i++) {
		const Mcpcore__StateChange *c = batch->changes[i];

		if (c->ns.len == 0 || c->key.len == 0 || c->ns.len > UINT16_MAX) {
			snprintf(why, whylen, "state change %llu has an empty or oversized "
			    "namespace/key", (unsigned long long)c->seq);
			rc = -EBADMSG;
		}
	}
	mcpcore__state_change_batch__free_unpacked(batch, NULL);
	return rc;
}

/* Each change of a StateChangeBatch becomes a put or a delete in `state`. */
static int mc_pbatch_state_put(struct mc_pbatch *b, const struct mc_pstore *st,
    const uint8_t *data, uint32_t len)
{
	Mcpcore__StateChangeBatch *batch = mcpcore__state_change_batch__unpack(NULL, len, data);
	uint8_t *key = NULL, *val = NULL;
	size_t keycap = 0, valcap = 0;
	int rc = 0;

	if (batch == NULL)
		return 0;       /* checked when taken; cannot change while held */
	for (size_t i = 0; i < batch->n_changes; i++) {
		const Mcpcore__StateChange *c = batch->changes[i];
		size_t need = 2 + c->ns.len + c->key.len, vlen;
		int klen;

		if (need > keycap) {
			uint8_t *k = realloc(key, need);

			if (k == NULL) {
				rc = -ENOMEM;
				break;
			}
			key = k;
			keycap = need;
		}
		klen = mc_pkey_state_encode(key, keycap, c->ns.data, c->ns.len, c->key.data, c->key.len);
		if (klen < 0)
			continue;
		if (c->op != MCPCORE__STATE_CHANGE__OP__PUT) {
			rocksdb_writebatch_delete_cf(b->wb, st->cf[MC_CF_STATE], (const char *)key,
			    (size_t)klen);
			continue;
		}
		vlen = mcpcore__state_change__get_packed_size(c);
		if (vlen > valcap) {
			uint8_t *v = realloc(val, vlen);

			if (v == NULL) {
				rc = -ENOMEM;
				break;
			}
			val = v;
			valcap = vlen;
		}
		mcpcore__state_change__pack(c, val);
		rocksdb_writebatch_put_cf(b->wb, st->cf[MC_CF_STATE], (const char *)key,
		    (size_t)klen, (const char *)val, vlen);
	}
	free(key);
	free(val);
	mcpcore__state_change_batch__free_unpacked(batch, NULL);
	return rc;
}

/* The field of a kind's own time (a varint: ns since the epoch), 0 when
 * it has none (stored at the time it is received). */
static uint32_t mc_pbatch_time_field(uint16_t kind)
{
	switch (kind) {
	case MC_FK_MCP:
		return 1;               /* MCPMessage.timestamp */
	case MC_FK_TRAINING_DATA:
		return 2;               /* TrainingData.timestamp */
	default:
		return 0;
	}
}

enum mc_pbatch_verdict mc_pbatch_add(struct mc_pbatch *b, const struct mc_msg *m,
    uint16_t kind, unsigned src, uint64_t seq, const uint8_t *data, uint32_t len,
    uint64_t now_wall, char *why, size_t whylen)
{
	struct mc_pbatch_item *it;
	struct mc_pb_field tf;
	uint64_t t = now_wall;
	int found;

	if (!mc_pbatch_storable(kind))
		return MC_PB_NOT_STORED;
	if (src >= MC_MAX_SLOTS) {
		snprintf(why, whylen, "producer slot %u out of range", src);
		return MC_PB_REJECTED;
	}
	if (seq <= b->pend[src])
		return MC_PB_DUPLICATE;
	if (b->n == b->cap)
		return MC_PB_FULL;
	/*
	 * The top level must be a well-formed message: one scan reads all of
	 * it, and finds the record's own time on the way (a scan for field 0
	 * finds nothing: it only checks).
	 */
	found = mc_pb_scan(data, len, mc_pbatch_time_field(kind), &tf);
	if (found < 0) {
		snprintf(why, whylen, "payload of kind %u is not a protobuf message", kind);
		goto rejected;
	}
	if (found == 1 && tf.wire == 0 && tf.u64 != 0)
		t = tf.u64;
	switch (kind) {
	case MC_FK_STATE_CHANGES:
		if (mc_pbatch_state_check(data, len, why, whylen) != 0)
			goto rejected;
		break;
	case MC_FK_LEARNING_MODEL: {
		struct mc_pb_field id = { 0 }, ver = { 0 };

		if (mc_pb_scan(data, len, 1, &id) != 1 || id.wire != 2 || id.len == 0 ||
		    id.len > UINT16_MAX) {
			snprintf(why, whylen, "LearningModel without model_id (or one over 65535 bytes)");
			goto rejected;
		}
		if (mc_pb_scan(data, len, 2, &ver) == 1 && ver.wire != 0) {
			snprintf(why, whylen, "LearningModel version is not a varint");
			goto rejected;
		}
		break;
	}
	default:
		break;
	}
	it = &b->items[b->n++];
	if (m != NULL)
		it->msg = *m;
	else
		memset(&it->msg, 0, sizeof(it->msg));
	it->data = data;
	it->len = len;
	it->kind = kind;
	it->src = (uint8_t)src;
	it->seq = seq;
	it->time_ns = t;
	b->pend[src] = seq;
	b->bytes += len;
	return MC_PB_ADDED;
rejected:
	/* the mark still passes over it: a rejected frame is finished work */
	b->pend[src] = seq;
	return MC_PB_REJECTED;
}

/* Rebuild the WriteBatch from the held frames. */
static int mc_pbatch_build(struct mc_pbatch *b, const struct mc_pstore *st)
{
	uint8_t key[MC_PKEY_MODEL_MAX];

	rocksdb_writebatch_clear(b->wb);
	for (uint32_t i = 0; i < b->n; i++) {
		const struct mc_pbatch_item *it = &b->items[i];
		struct mc_pkey_time k;
		int klen, cf;

		switch (it->kind) {
		case MC_FK_STATE_CHANGES:
			if (mc_pbatch_state_put(b, st, it->data, it->len) != 0)
				return -ENOMEM;
			continue;
		case MC_FK_LEARNING_MODEL: {
			struct mc_pb_field id = { 0 }, ver = { 0 };

			(void)mc_pb_scan(it->data, it->len, 1, &id);
			(void)mc_pb_scan(it->data, it->len, 2, &ver);
			klen = mc_pkey_model_encode(key, sizeof(key), id.ptr, id.len, ver.u64);
			if (klen < 0)
				continue;       /* checked when taken */
			rocksdb_writebatch_put_cf(b->wb, st->cf[MC_CF_MODELS], (const char *)key,
			    (size_t)klen, (const char *)it->data, it->len);
			continue;
		}
		case MC_FK_MCP:
			cf = MC_CF_MESSAGES;
			break;
		case MC_FK_TRAINING_DATA:
			cf = MC_CF_TRAINING;
			break;
		default:
			cf = MC_CF_METRICS;
			break;
		}
		k.time_ns = it->time_ns;
		k.run = b->run;
		k.slot = it->src;
		k.seq = it->seq;
		k.kind = it->kind;
		klen = mc_pkey_time_encode(key, sizeof(key), &k);
		rocksdb_writebatch_put_cf(b->wb, st->cf[cf], (const char *)key, (size_t)klen,
		    (const char *)it->data, it->len);
	}
	return 0;
}

int mc_pbatch_commit(struct mc_pbatch *b, struct mc_pstore *st, bool sync,
    char *err, size_t errlen)
{
	uint8_t marks[MC_PBATCH_MARKS_MAX];
	size_t mlen;
	int rc;

	if (st->db == NULL) {
		snprintf(err, errlen, "store not open");
		return -EBADF;
	}
	rc = mc_pbatch_build(b, st);
	if (rc) {
		snprintf(err, errlen, "out of memory building the batch");
		return rc;
	}
	/* the marks ride in the same WriteBatch: records and marks are durable together */
	mlen = mc_pbatch_marks_encode(marks, b->run, b->pend);
	rocksdb_writebatch_put_cf(b->wb, st->cf[MC_CF_DEFAULT], MC_PSTORE_KEY_DEDUP,
	    strlen(MC_PSTORE_KEY_DEDUP), (const char *)marks, mlen);
	return mc_pstore_write(st, b->wb, sync, err, errlen);
}

void mc_pbatch_reset(struct mc_pbatch *b)
{
	rocksdb_writebatch_clear(b->wb);
	memcpy(b->hwm, b->pend, sizeof(b->hwm));
	b->n = 0;
	b->bytes = 0;
}
