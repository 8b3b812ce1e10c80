/*
 * test_persist_restore.c - unit tests for replaying the state family into
 * the state worker (workers/persistence/restore.c, protocol in
 * mc_prestore.h).
 *
 * One process plays both sides on one segment: a mapping claims the
 * persistence slot and drives mc_prestore_*, another claims the state
 * worker's slot and answers the RESTORE requests the way the state worker
 * does (one StateResult per op, echoing its id) -- or does not, to test
 * duplicates and timeouts.  Store in a mkdtemp directory; segment
 * "utprest-<pid>-<n>" on config/test.toml.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <ck_pr.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mc_config.h"
#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_pckpt.h"
#include "mc_pkeys.h"
#include "mc_prestore.h"
#include "mc_proto.h"
#include "mc_pstore.h"
#include "mc_seg.h"
#include "mc_util.h"

#ifndef MC_SOURCE_DIR
#error "MC_SOURCE_DIR must be defined to the repository root"
#endif

static struct mc_config cfg;
static struct mc_layout lay;
static struct mc_seg sup, per, sw;          /* supervisor, persistence, state worker */
static struct mc_pstore st;
static char err[512], dir[256], db[300];
static unsigned seq;

static void up(void)
{
	pid_t swept;

	cr_assert_eq(mc_config_load(MC_SOURCE_DIR "/config/test.toml", &cfg, err, sizeof(err)), 0,
	    "%s", err);
	snprintf(cfg.instance, sizeof(cfg.instance), "utprest-%d-%u", (int)getpid(), seq++);
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(mc_seg_create(&sup, &cfg, &lay, &swept, err, sizeof(err)), 0, "%s", err);
	ck_pr_store_32(&sup.hdr->sh_state, MC_SEG_READY);
	cr_assert_eq(mc_seg_attach(&per, cfg.instance, false, err, sizeof(err)), 0);
	cr_assert_eq(mc_seg_claim_worker(&per, MC_WORKER_PERSISTENCE), 0);
	cr_assert_eq(mc_seg_attach(&sw, cfg.instance, false, err, sizeof(err)), 0);
	cr_assert_eq(mc_seg_claim_worker(&sw, MC_WORKER_STATE), 0);
	snprintf(dir, sizeof(dir), "/tmp/utprest-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/db", dir);
	cr_assert_eq(mc_pstore_open(&st, db, "lz4", MC_PSTORE_CREATE, err, sizeof(err)), 0, "%s", err);
}

static void down(void)
{
	mc_pstore_close(&st);
	mc_pckpt_rmtree(dir);
	mc_seg_detach(&per);
	mc_seg_detach(&sw);
	mc_seg_destroy(&sup);
}

TestSuite(restore, .init = up, .fini = down);

/* Store a PUT of (ns, key) = value at version, expiring at `expires`. */
static void stored(const char *ns, const char *key, const char *value, uint64_t version,
    uint64_t expires)
{
	Mcpcore__StateChange c = MCPCORE__STATE_CHANGE__INIT;
	static uint8_t v[70000];
	uint8_t k[512];
	size_t n;
	int klen;
	char *rerr = NULL;

	c.seq = version;
	c.op = MCPCORE__STATE_CHANGE__OP__PUT;
	c.ns.data = (uint8_t *)ns;
	c.ns.len = strlen(ns);
	c.key.data = (uint8_t *)key;
	c.key.len = strlen(key);
	c.value.data = (uint8_t *)value;
	c.value.len = strlen(value);
	c.version = version;
	c.mtime = 1000 + version;
	c.expires_at = expires;
	n = mcpcore__state_change__pack(&c, v);
	klen = mc_pkey_state_encode(k, sizeof(k), c.ns.data, c.ns.len, c.key.data, c.key.len);
	rocksdb_put_cf(st.db, st.wo_nosync, st.cf[MC_CF_STATE], (char *)k, (size_t)klen,
	    (char *)v, n, &rerr);
	cr_assert_null(rerr);
}

struct seen {
	uint64_t ops, frames;
	uint64_t version_sum;
	char first_key[64];
	uint64_t first_expires;
};

/*
 * The state worker's side: take the requests waiting, check them, answer
 * (unless !answer).  dup: answer every result twice.
 */
static void state_worker(struct seen *s, bool answer, bool dup)
{
	struct mc_msg m;

	while (mc_recv(&sw, &m) == 0) {
		Mcpcore__StateRequest *rq;
		Mcpcore__StateResult *res, **resp;
		Mcpcore__StateReply rep = MCPCORE__STATE_REPLY__INIT;

		cr_assert_eq(m.frame->f_kind, MC_FK_STATE_REQUEST);
		cr_assert_eq(m.src, MC_WORKER_PERSISTENCE);
		cr_assert_leq(m.frame->f_len, sw.hdr->sh_max_frame);
		rq = (Mcpcore__StateRequest *)mc_proto_unpack(m.frame);
		cr_assert_not_null(rq);
		s->frames++;
		res = calloc(rq->n_ops * 2, sizeof(*res));
		resp = calloc(rq->n_ops * 2, sizeof(*resp));
		for (size_t i = 0; i < rq->n_ops; i++) {
			const Mcpcore__StateOp *op = rq->ops[i];

			cr_assert_eq(op->kind, MCPCORE__STATE_OP__KIND__RESTORE);
			if (s->ops == 0) {
				snprintf(s->first_key, sizeof(s->first_key), "%.*s/%.*s", (int)op->ns.len,
				    op->ns.data, (int)op->key.len, op->key.data);
				s->first_expires = op->expires_at;
			}
			s->ops++;
			s->version_sum += op->version;
			cr_assert_eq(op->mtime, 1000 + op->version);
			for (int d = 0; d <= (dup ? 1 : 0); d++) {
				size_t j = i * 2 + (size_t)d;

				mcpcore__state_result__init(&res[j]);
				res[j].id = op->id;
				res[j].status = MCPCORE__STATE_RESULT__STATUS__OK;
				res[j].version = op->version;
				resp[rep.n_results++] = &res[j];
			}
		}
		rep.results = resp;
		if (answer)
			cr_assert_eq(mc_proto_send(&sw, &rep.base, 1ULL << MC_WORKER_PERSISTENCE), 0);
		mcpcore__state_request__free_unpacked(rq, NULL);
		free(res);
		free(resp);
		mc_frame_release(&sw, &m);
	}
}

/* The persistence side: hand StateReply frames to the restore. */
static void replies(struct mc_prestore *r)
{
	struct mc_msg m;

	while (mc_recv(&per, &m) == 0) {
		Mcpcore__StateReply *rep;

		cr_assert_eq(m.frame->f_kind, MC_FK_STATE_REPLY);
		rep = (Mcpcore__StateReply *)mc_proto_unpack(m.frame);
		cr_assert_not_null(rep);
		mc_prestore_reply(r, rep, mc_now_ns());
		mcpcore__state_reply__free_unpacked(rep, NULL);
		mc_frame_release(&per, &m);
	}
}

static int run(struct mc_prestore *r, struct seen *s, bool dup, int max_rounds)
{
	int rc = 0;

	for (int i = 0; i < max_rounds && rc == 0; i++) {
		rc = mc_prestore_step(r, &per, &st, per.hdr->sh_max_frame, mc_now_ns(),
		    30000000000ULL);
		state_worker(s, true, dup);
		replies(r);
	}
	return rc;
}

Test(restore, empty_family_is_done_at_once)
{
	struct mc_prestore r;

	cr_assert_eq(mc_prestore_begin(&r, &st, mc_now_ns()), 0);
	cr_assert_eq(mc_prestore_step(&r, &per, &st, per.hdr->sh_max_frame, mc_now_ns(), 1), 1);
	cr_assert_eq(r.sent, 0);
	mc_prestore_end(&r);
	mc_prestore_end(&r);        /* idempotent */
}

Test(restore, every_key_replayed_and_answered)
{
	struct mc_prestore r;
	struct seen s = { 0 };
	uint64_t want = 0;
	char k[32];

	for (uint64_t i = 1; i <= 3000; i++) {
		snprintf(k, sizeof(k), "key%05llu", (unsigned long long)i);
		stored(i % 3 ? "a" : "b", k, "some value", i, 0);
		want += i;
	}
	cr_assert_eq(mc_prestore_begin(&r, &st, mc_now_ns()), 0);
	cr_assert_eq(run(&r, &s, false, 1000), 1);
	cr_assert_eq(s.ops, 3000);
	cr_assert_eq(s.version_sum, want);
	cr_assert_gt(s.frames, 1, "3000 ops do not go in one frame (512 per frame at most)");
	cr_assert_eq(r.answered, 3000);
	cr_assert_eq(r.not_ok, 0);
	cr_assert_str_eq(s.first_key, "a/key00001", "the family's order: namespace, then key");
	mc_prestore_end(&r);
}

Test(restore, big_values_split_by_frame_size)
{
	struct mc_prestore r;
	struct seen s = { 0 };
	static char value[60000];

	memset(value, 'v', sizeof(value) - 1);
	for (uint64_t i = 1; i <= 12; i++) {
		char k[16];

		snprintf(k, sizeof(k), "k%02llu", (unsigned long long)i);
		stored("ns", k, value, i, 0);
	}
	cr_assert_eq(mc_prestore_begin(&r, &st, mc_now_ns()), 0);
	cr_assert_eq(run(&r, &s, false, 100), 1);
	cr_assert_eq(s.ops, 12);
	cr_assert_geq(s.frames, 3, "~720 KB of values need several %llu-byte frames",
	    (unsigned long long)per.hdr->sh_max_frame);
	mc_prestore_end(&r);
}

Test(restore, expired_entries_are_dropped_and_deleted)
{
	struct mc_prestore r;
	struct seen s = { 0 };
	uint64_t now = mc_wall_ns();
	uint8_t k[64];
	char *v;
	size_t vl;
	int klen;

	stored("ns", "gone", "x", 1, now - 1000000000ULL);
	stored("ns", "kept", "y", 2, now + 3600000000000ULL);
	stored("ns", "forever", "z", 3, 0);
	cr_assert_eq(mc_prestore_begin(&r, &st, mc_now_ns()), 0);
	cr_assert_eq(run(&r, &s, false, 100), 1);
	cr_assert_eq(s.ops, 2);
	cr_assert_eq(r.expired, 1);
	klen = mc_pkey_state_encode(k, sizeof(k), "ns", 2, "gone", 4);
	cr_assert_eq(mc_pstore_get(&st, MC_CF_STATE, k, (size_t)klen, &v, &vl, err, sizeof(err)), 0,
	    "the expired entry is deleted from the family");
	klen = mc_pkey_state_encode(k, sizeof(k), "ns", 2, "kept", 4);
	cr_assert_eq(mc_pstore_get(&st, MC_CF_STATE, k, (size_t)klen, &v, &vl, err, sizeof(err)), 1);
	free(v);
	mc_prestore_end(&r);
}

Test(restore, duplicate_answers_count_once)
{
	struct mc_prestore r;
	struct seen s = { 0 };

	for (uint64_t i = 1; i <= 10; i++) {
		char k[16];

		snprintf(k, sizeof(k), "k%llu", (unsigned long long)i);
		stored("ns", k, "v", i, 0);
	}
	cr_assert_eq(mc_prestore_begin(&r, &st, mc_now_ns()), 0);
	cr_assert_eq(run(&r, &s, true, 100), 1);
	cr_assert_eq(r.answered, 10);
	mc_prestore_end(&r);
}

Test(restore, a_silent_state_worker_times_out)
{
	struct mc_prestore r;
	struct seen s = { 0 };
	int rc = 0;

	stored("ns", "k", "v", 1, 0);
	cr_assert_eq(mc_prestore_begin(&r, &st, mc_now_ns()), 0);
	for (int i = 0; i < 200 && rc == 0; i++) {
		rc = mc_prestore_step(&r, &per, &st, per.hdr->sh_max_frame, mc_now_ns(), 50000000ULL);
		state_worker(&s, false, false);
		usleep(1000);
	}
	cr_assert_eq(rc, -ETIMEDOUT);
	cr_assert_eq(r.answered, 0);
	mc_prestore_end(&r);
}

Test(restore, a_failed_state_worker_is_epipe)
{
	struct mc_prestore r;

	stored("ns", "k", "v", 1, 0);
	ck_pr_store_32(&sup.slots[MC_WORKER_STATE].sl_state, MC_SLOT_FAILED);
	cr_assert_eq(mc_prestore_begin(&r, &st, mc_now_ns()), 0);
	cr_assert_eq(mc_prestore_step(&r, &per, &st, per.hdr->sh_max_frame, mc_now_ns(),
	    1000000000ULL), -EPIPE);
	mc_prestore_end(&r);
}

Test(restore, foreign_ids_are_ignored)
{
	struct mc_prestore r;
	Mcpcore__StateResult res = MCPCORE__STATE_RESULT__INIT, *rp = &res;
	Mcpcore__StateReply rep = MCPCORE__STATE_REPLY__INIT;

	stored("ns", "k", "v", 1, 0);
	cr_assert_eq(mc_prestore_begin(&r, &st, mc_now_ns()), 0);
	cr_assert_eq(mc_prestore_step(&r, &per, &st, per.hdr->sh_max_frame, mc_now_ns(),
	    1000000000ULL), 0);
	rep.results = &rp;
	rep.n_results = 1;
	res.id = 999999;
	mc_prestore_reply(&r, &rep, mc_now_ns());
	res.id = 0;
	mc_prestore_reply(&r, &rep, mc_now_ns());
	cr_assert_eq(r.answered, 0);
	res.id = 1;
	res.status = MCPCORE__STATE_RESULT__STATUS__TABLE_FULL;
	mc_prestore_reply(&r, &rep, mc_now_ns());
	cr_assert_eq(r.answered, 1);
	cr_assert_eq(r.not_ok, 1);
	mc_prestore_end(&r);
}
