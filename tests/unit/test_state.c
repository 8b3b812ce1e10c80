/*
 * test_state.c - unit tests for the state manager's table: the lock-free
 * readers (shm/state.c, contract in shm/mc_state.h) and the single writer
 * (workers/state/writer.c, contract in workers/state/mc_state_writer.h).
 *
 * Every test works on its own instance, "utst-<pid>-<n>", created from
 * config/test.toml (8 MiB shared.state_cache: 16384 entries, ~7 MiB of
 * arena; max_key_size 256, max_value_size 65536).  The writer runs in the
 * test process (or in forked children that play the state worker and get
 * killed); readers run in the test process and in forked children that
 * attach the segment read-only.  /dev/shm is cleaned in the fini hook and,
 * should the test process die outright, by a guardian child.  Children
 * report through their exit status and die with the test process.
 *
 * Crash recovery is tested two ways:
 *   - crash_phases: for each op kind, the test records the table before
 *     (S0) and after (S1) one real commit, then rebuilds, step by step from
 *     S0, the exact shared-memory state the writer leaves when it dies after
 *     each store of the commit protocol (mc_state.h / mc_state_writer.h),
 *     reopens the writer, and requires the table to be exactly S0 (commit
 *     point not reached) or exactly S1 (reached);
 *   - sigkill_fuzz: a forked writer applying request frames is SIGKILLed at
 *     random instants; the test process recovers, resumes the interrupted
 *     frame where mc_state_frame_begin says, and requires the table to equal
 *     a model in which every op was applied exactly once.
 */
#define _GNU_SOURCE

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mc_config.h"
#include "mc_layout.h"
#include "mc_seg.h"
#include "mc_state.h"
#include "mc_state_client.h"
#include "state/mc_state_writer.h"
#include "mc_util.h"
#include "ut.h"

#ifndef MC_SOURCE_DIR
#error "MC_SOURCE_DIR must be defined to the repository root"
#endif

/* ------------------------------------------------------------------ */
/* Scaffolding                                                         */

#define UT_TAG "st"


/* In children: report a failed check on stderr and exit 1. */
static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------------ */
/* Fixture: a segment, its table and the writer                        */

#define SRC 5                   /* the sender slot our frames come from */
#define ST(x) MCPCORE__STATE_RESULT__STATUS__##x
#define K(x)  MCPCORE__STATE_OP__KIND__##x

static char err[512];
static struct mc_config cfg;
static struct mc_layout lay;
static struct mc_seg seg;
static struct mc_state_writer w;
static struct mc_state_table *T;        /* writable view, to fabricate crashes */
static uint64_t fseq = 1000;            /* frame sequence numbers */
static uint8_t gbuf[70000];             /* mc_state_get's buffer */

static void seg_up(void)
{
	pid_t swept;
	int rc = mc_config_load(MC_SOURCE_DIR "/config/test.toml", &cfg, err, sizeof(err));

	cr_assert_eq(rc, 0, "config/test.toml: %s", err);
	ut_instance(cfg.instance, sizeof(cfg.instance));
	rc = mc_layout_compute(&cfg, &lay, err, sizeof(err));
	cr_assert_eq(rc, 0, "layout: %s", err);
	rc = mc_seg_create(&seg, &cfg, &lay, &swept, err, sizeof(err));
	cr_assert_eq(rc, 0, "mc_seg_create(%s): %d %s", cfg.instance, rc, err);
	ck_pr_store_32(&seg.hdr->sh_state, MC_SEG_READY);
}

static void writer_open(void)
{
	int rc = mc_state_writer_open(&seg, &w, err, sizeof(err));

	cr_assert_eq(rc, 0, "mc_state_writer_open: %d %s", rc, err);
	T = w.t;
}

static void table_up(void)
{
	seg_up();
	writer_open();
}

static uint8_t *region(unsigned r)
{
	return seg.base + seg.hdr->sh_regions[r].rg_offset;
}

static uint64_t region_size(unsigned r)
{
	return seg.hdr->sh_regions[r].rg_size;
}

static Mcpcore__StateOp mk(Mcpcore__StateOp__Kind kind, const void *ns, size_t nslen,
    const void *key, size_t klen, const void *val, size_t vlen)
{
	Mcpcore__StateOp op = MCPCORE__STATE_OP__INIT;

	op.kind = kind;
	op.ns.data = (uint8_t *)(uintptr_t)ns;
	op.ns.len = nslen;
	op.key.data = (uint8_t *)(uintptr_t)key;
	op.key.len = klen;
	op.value.data = (uint8_t *)(uintptr_t)val;
	op.value.len = vlen;
	return op;
}

static size_t slen(const char *s)
{
	return s ? strlen(s) : 0;
}

#define MKS(kind, ns, key, val) mk(K(kind), ns, strlen(ns), key, strlen(key), val, slen(val))

/* Apply one op as a one-op request frame; the frame's record must match. */
static struct mc_state_result apply_at(const Mcpcore__StateOp *op, uint64_t now)
{
	struct mc_state_result res;
	struct mc_state_op_result rec;
	uint64_t seq = ++fseq;

	cr_assert_eq(mc_state_frame_begin(&w, SRC, seq), 0, "a new frame has ops done");
	mc_state_apply(&w, op, now, 0, &res);
	mc_state_frame_end(&w, SRC, seq);
	cr_assert(mc_state_frame_applied(&w, SRC, seq));
	rec = mc_state_frame_result(&w, 0);
	cr_assert_eq(rec.status, res.status, "frame record %u, result %u", rec.status, res.status);
	cr_assert_eq(rec.version, res.version, "frame record version %" PRIu64 ", result %" PRIu64,
	    rec.version, res.version);
	if (res.status != ST(OK))
		cr_assert_not_null(res.error, "non-OK status %u without an error text", res.status);
	return res;
}

static struct mc_state_result apply(const Mcpcore__StateOp *op)
{
	return apply_at(op, mc_wall_ns());
}

static struct mc_state_result put_b(const void *ns, size_t nslen, const void *key, size_t klen,
    const void *val, size_t vlen)
{
	Mcpcore__StateOp op = mk(K(PUT), ns, nslen, key, klen, val, vlen);

	return apply(&op);
}

static struct mc_state_result put(const char *ns, const char *key, const char *val)
{
	return put_b(ns, strlen(ns), key, strlen(key), val, strlen(val));
}

static struct mc_state_result del(const char *ns, const char *key)
{
	Mcpcore__StateOp op = MKS(DELETE, ns, key, NULL);

	return apply(&op);
}

static struct mc_state_result incr(const char *ns, const char *key, int64_t delta)
{
	Mcpcore__StateOp op = MKS(INCR, ns, key, NULL);

	op.delta = delta;
	return apply(&op);
}

#define OK_PUT(ns, key, val) do { \
	struct mc_state_result r_ = put(ns, key, val); \
	cr_assert_eq(r_.status, ST(OK), "PUT %s/%s: status %u (%s)", ns, key, r_.status, \
	    r_.error ? r_.error : ""); \
} while (0)

static int get_b(const void *ns, size_t nslen, const void *key, size_t klen,
    struct mc_state_value *v)
{
	memset(v, 0, sizeof(*v));
	return mc_state_get(&seg, ns, nslen, key, klen, gbuf, sizeof(gbuf), v);
}

static int get(const char *ns, const char *key, struct mc_state_value *v)
{
	return get_b(ns, strlen(ns), key, strlen(key), v);
}

/* (ns, key) must read back as val (and at `version` unless 0). */
static void expect_b(const void *ns, size_t nslen, const void *key, size_t klen,
    const void *val, size_t vlen, uint64_t version)
{
	struct mc_state_value v;
	int rc = get_b(ns, nslen, key, klen, &v);

	cr_assert_eq(rc, 0, "get %.*s/%.*s: %d", (int)nslen, (const char *)ns, (int)klen,
	    (const char *)key, rc);
	cr_assert_eq(v.len, vlen, "get %.*s/%.*s: %u bytes, want %zu", (int)nslen,
	    (const char *)ns, (int)klen, (const char *)key, v.len, vlen);
	cr_assert(vlen == 0 || memcmp(gbuf, val, vlen) == 0, "get %.*s/%.*s: wrong value bytes",
	    (int)nslen, (const char *)ns, (int)klen, (const char *)key);
	if (version)
		cr_assert_eq(v.version, version, "get %.*s/%.*s: version %" PRIu64 ", want %" PRIu64,
		    (int)nslen, (const char *)ns, (int)klen, (const char *)key, v.version, version);
}

static void expect(const char *ns, const char *key, const char *val, uint64_t version)
{
	expect_b(ns, strlen(ns), key, strlen(key), val, strlen(val), version);
}

static void expect_absent(const char *ns, const char *key)
{
	struct mc_state_value v;
	int rc = get(ns, key, &v);

	cr_assert_eq(rc, -ENOENT, "get %s/%s: %d, want -ENOENT (value '%.*s')", ns, key, rc,
	    rc == 0 ? (int)v.len : 0, (const char *)gbuf);
}

static struct mc_state_stats stats(void)
{
	struct mc_state_stats st;

	cr_assert_eq(mc_state_stats(&seg, &st), 0);
	return st;
}

/* Entry index of a live (ns, key), found the way readers probe. */
static int64_t slot_of(const void *ns, size_t nslen, const void *key, size_t klen)
{
	uint64_t h = mc_state_hash(ns, nslen, key, klen);

	for (uint64_t i = h & w.mask, n = 0; n <= w.mask; i = (i + 1) & w.mask, n++) {
		const struct mc_state_entry *e = &w.entries[i];

		if (e->e_state == MC_STATE_EMPTY)
			return -1;
		if (e->e_state == MC_STATE_LIVE && e->e_hash == (uint32_t)(h >> 32) &&
		    e->e_nslen == nslen && e->e_keylen == klen &&
		    memcmp(w.arena + e->e_blob, ns, nslen) == 0 &&
		    memcmp(w.arena + e->e_blob + nslen, key, klen) == 0)
			return (int64_t)i;
	}
	return -1;
}

static int64_t slot_s(const char *ns, const char *key)
{
	return slot_of(ns, strlen(ns), key, strlen(key));
}

/*
 * The whole table is sound: mc_state_check passes; no arena byte leaked
 * (live + free + never used == the arena minus the reserved first block);
 * no intent pending and no entry lock odd; the change feed holds every
 * dirty entry (no change can be lost), and a tombstone keeps its key
 * bytes only while its DELETE waits in the feed.
 */
static void table_ok(const char *where)
{
	char rep[512];
	struct mc_state_stats st = stats();
	uint64_t pending = mc_state_feed_pending(&w);
	uint8_t *queued;
	int rc = mc_state_check(&seg, rep, sizeof(rep));

	cr_assert_eq(rc, 0, "%s: mc_state_check: %s", where, rep);
	cr_assert_eq(st.arena_live + st.arena_free + (st.arena_size - st.arena_top),
	    st.arena_size - MC_STATE_BLOCK_MIN, "%s: arena bytes leaked: live %" PRIu64 " + free %"
	    PRIu64 " + unused %" PRIu64 " != %" PRIu64, where, st.arena_live, st.arena_free,
	    st.arena_size - st.arena_top, st.arena_size - MC_STATE_BLOCK_MIN);
	cr_assert_eq(T->st_intent.in_phase, MC_STATE_IDLE, "%s: intent phase %u", where,
	    T->st_intent.in_phase);
	cr_assert_eq(T->st_intent.in_seq & 1, 0, "%s: intent lock odd", where);
	cr_assert_leq(pending, w.ctl->sc_feed_cap, "%s: feed overflow", where);
	queued = calloc(w.mask + 1, 1);
	cr_assert_not_null(queued);
	for (uint64_t p = 0; p < pending; p++)
		queued[mc_state_feed_peek(&w, p) & w.mask] = 1;
	for (uint64_t i = 0; i <= w.mask; i++) {
		const struct mc_state_entry *e = &w.entries[i];

		cr_assert_eq(e->e_seq & 1, 0, "%s: entry %" PRIu64 " lock odd", where, i);
		if (e->e_dirty)
			cr_assert(queued[i], "%s: entry %" PRIu64 " is dirty but not in the feed "
			    "(its change would never be sent)", where, i);
		if (e->e_state == MC_STATE_TOMB && e->e_blob != 0)
			cr_assert(e->e_dirty, "%s: tombstone %" PRIu64 " keeps key bytes but is not "
			    "waiting in the feed (leak)", where, i);
	}
	free(queued);
}

/* What the worker does after sending the feed: everything pending is out. */
static void feed_drain(void)
{
	mc_state_feed_sent(&w, mc_state_feed_pending(&w));
	cr_assert_eq(mc_state_feed_pending(&w), 0);
}

static void ut_init(void)
{
	ut_guard_start(UT_TAG);
}

TestSuite(state, .init = ut_init, .fini = ut_fini, .timeout = 240);

/* ------------------------------------------------------------------ */
/* Setup and geometry                                                  */

Test(state, fresh_table_geometry_and_nodev_before_writer)
{
	struct mc_state_geometry geo;
	struct mc_state_value v;
	struct mc_state_stats st;
	char rep[256];
	uint64_t sz;

	seg_up();
	cr_assert_null(mc_state_table(&seg), "table visible before the writer set it up");
	cr_assert_eq(mc_state_get(&seg, "n", 1, "k", 1, gbuf, sizeof(gbuf), &v), -ENODEV);
	cr_assert_eq(mc_state_stats(&seg, &st), -ENODEV);
	cr_assert_lt(mc_state_check(&seg, rep, sizeof(rep)), 0);

	writer_open();
	cr_assert_not_null(mc_state_table(&seg));
	sz = region_size(MC_REGION_SHARED_STATE_CACHE);
	cr_assert_eq(mc_state_geometry(&cfg, sz, &geo, err, sizeof(err)), 0, "%s", err);
	st = stats();
	cr_assert_eq(st.capacity, geo.capacity);
	cr_assert_eq(st.capacity, 16384, "test.toml: 8 MiB / 8 / 64 bytes");
	cr_assert_eq(st.arena_size, geo.arena_size);
	cr_assert_eq(st.live + st.tombstones + st.version + st.writes + st.expired, 0);
	cr_assert_eq(st.arena_live + st.arena_free, 0);
	cr_assert_eq(st.arena_top, MC_STATE_BLOCK_MIN, "offset 0 is reserved for 'no block'");
	cr_assert_eq(mc_state_feed_pending(&w), 0);
	table_ok("fresh");
	cr_assert_eq(get("n", "k", &v), -ENOENT);

	/* reopening a healthy table changes nothing */
	OK_PUT("n", "k", "v");
	st = stats();
	writer_open();
	{
		struct mc_state_stats st2 = stats();

		cr_assert_eq(memcmp(&st, &st2, sizeof(st)), 0, "reopen changed the counters");
	}
	expect("n", "k", "v", 0);
	table_ok("reopened");

	/* class arithmetic the arena relies on */
	for (uint64_t b = 1; b <= 200000; b += (b < 4096 ? 1 : 97)) {
		unsigned c = mc_state_class(b);

		cr_assert_geq(mc_state_class_size(c), b, "class %u too small for %" PRIu64, c, b);
		cr_assert_eq(mc_state_class_size(c) % MC_STATE_BLOCK_MIN, 0);
		if (c > 0)
			cr_assert_lt(mc_state_class_size(c - 1), b, "%" PRIu64 " not in its smallest class", b);
	}
}

/* ------------------------------------------------------------------ */
/* Round trips and bounds                                              */

/* The short-compare helper against memcmp: every length up to 40, a
 * difference at every position (the overlapping loads must see it). */
Test(state, bytes_eq_agrees_with_memcmp_at_every_length_and_position)
{
	uint8_t a[48], b[48];

	for (size_t n = 0; n <= 40; n++) {
		for (size_t i = 0; i < n; i++)
			a[i] = b[i] = (uint8_t)ut_mix64(n * 64 + i);
		cr_assert(mc_state_bytes_eq(a, b, n), "equal, length %zu", n);
		for (size_t i = 0; i < n; i++) {
			b[i] ^= 0x10;
			cr_assert_not(mc_state_bytes_eq(a, b, n), "differs at %zu of %zu", i, n);
			b[i] ^= 0x10;
		}
	}
}

Test(state, put_get_roundtrip_binary_empty_and_max)
{
	static uint8_t big[65536], bns[256], bkey[256];
	const uint8_t ns0[] = { 0x00, 0xff, 0x01 }, key0[] = { 0x00, 0x00 };
	uint8_t val0[300];
	struct mc_state_value v;
	struct mc_state_result r;
	uint64_t before;
	pid_t c;

	table_up();
	for (size_t i = 0; i < sizeof(val0); i++)
		val0[i] = (uint8_t)(i % 7 == 0 ? 0 : ut_mix64(i));
	before = mc_wall_ns();
	r = put_b(ns0, sizeof(ns0), key0, sizeof(key0), val0, sizeof(val0));
	cr_assert_eq(r.status, ST(OK));
	cr_assert_gt(r.version, 0);
	expect_b(ns0, sizeof(ns0), key0, sizeof(key0), val0, sizeof(val0), r.version);
	cr_assert_eq(get_b(ns0, sizeof(ns0), key0, sizeof(key0), &v), 0);
	cr_assert_geq(v.mtime, before);
	cr_assert_leq(v.mtime, mc_wall_ns());
	cr_assert_eq(v.expires, 0);
	/* same bytes, one shorter: different keys */
	cr_assert_eq(get_b(ns0, sizeof(ns0), key0, 1, &v), -ENOENT);
	cr_assert_eq(get_b(ns0, 2, key0, sizeof(key0), &v), -ENOENT);

	/* empty value */
	r = put_b("n", 1, "empty", 5, NULL, 0);
	cr_assert_eq(r.status, ST(OK));
	cr_assert_eq(mc_state_get(&seg, "n", 1, "empty", 5, NULL, 0, &v), 0);
	cr_assert_eq(v.len, 0);
	cr_assert_eq(v.version, r.version);

	/* the (namespace, key) split is part of the identity */
	OK_PUT("ab", "c", "one");
	OK_PUT("a", "bc", "two");
	OK_PUT("abc", "x", "three");
	OK_PUT("a", "b", "four");
	OK_PUT("a", "bcd", "five");
	expect("ab", "c", "one", 0);
	expect("a", "bc", "two", 0);
	expect("abc", "x", "three", 0);
	expect("a", "b", "four", 0);
	expect("a", "bcd", "five", 0);
	expect_absent("a", "bcx");

	/* maximum sizes */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(ut_mix64(i) >> 13);
	for (size_t i = 0; i < 256; i++) {
		bns[i] = (uint8_t)(255 - i);
		bkey[i] = (uint8_t)i;
	}
	r = put_b(bns, 256, bkey, 256, big, sizeof(big));
	cr_assert_eq(r.status, ST(OK), "max sizes: %u %s", r.status, r.error ? r.error : "");
	expect_b(bns, 256, bkey, 256, big, sizeof(big), r.version);
	/* a short buffer: -ENOSPC with the full length */
	memset(&v, 0, sizeof(v));
	cr_assert_eq(mc_state_get(&seg, bns, 256, bkey, 256, gbuf, 65535, &v), -ENOSPC);
	cr_assert_eq(v.len, 65536);
	cr_assert_eq(v.version, r.version);
	cr_assert_eq(mc_state_get(&seg, bns, 256, bkey, 256, NULL, 0, &v), -ENOSPC);
	/* a value that fits exactly */
	cr_assert_eq(mc_state_get(&seg, "n", 1, "empty", 5, gbuf, 0, &v), 0);

	/* binary overwrite of the max value with a shorter one */
	r = put_b(bns, 256, bkey, 256, val0, 17);
	cr_assert_eq(r.status, ST(OK));
	expect_b(bns, 256, bkey, 256, val0, 17, r.version);
	table_ok("roundtrip");

	/* another process, mapping the segment read-only, reads the same */
	c = ut_fork();
	if (c == 0) {
		struct mc_seg ro;
		struct mc_state_value cv;
		static uint8_t cbuf[70000];
		int rc = mc_seg_attach(&ro, cfg.instance, true, err, sizeof(err));

		UT_CHK(rc == 0, "attach: %s", err);
		rc = mc_state_get(&ro, ns0, sizeof(ns0), key0, sizeof(key0), cbuf, sizeof(cbuf), &cv);
		UT_CHK(rc == 0 && cv.len == sizeof(val0) && memcmp(cbuf, val0, sizeof(val0)) == 0,
		    "rc %d len %u", rc, cv.len);
		rc = mc_state_get(&ro, bns, 256, bkey, 256, cbuf, sizeof(cbuf), &cv);
		UT_CHK(rc == 0 && cv.len == 17 && memcmp(cbuf, val0, 17) == 0, "rc %d", rc);
		rc = mc_state_get(&ro, "a", 1, "bc", 2, cbuf, sizeof(cbuf), &cv);
		UT_CHK(rc == 0 && cv.len == 3 && memcmp(cbuf, "two", 3) == 0, "rc %d", rc);
		_exit(0);
	}
	ut_wait_ok(c, "read-only reader");
	mc_seg_destroy(&seg);
}

Test(state, bounds_bad_request_and_too_large)
{
	static uint8_t long_[300], big[65537];
	static const Mcpcore__StateOp__Kind kinds[] = { K(PUT), K(DELETE), K(CAS), K(INCR), K(RESTORE) };
	struct mc_state_stats st0, st1;
	struct mc_state_value v;
	struct mc_state_result r;
	struct mc_state_batch b;
	struct mc_state_req rq;

	table_up();
	memset(long_, 'L', sizeof(long_));
	memset(big, 'B', sizeof(big));
	OK_PUT("n", "exists", "1");
	feed_drain();
	st0 = stats();
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		Mcpcore__StateOp op;

		op = mk(kinds[i], "", 0, "k", 1, "v", 1);
		op.version = 5;
		r = apply(&op);
		cr_assert_eq(r.status, ST(BAD_REQUEST), "kind %d, empty ns: %u", kinds[i], r.status);
		op = mk(kinds[i], "n", 1, "", 0, "v", 1);
		op.version = 5;
		r = apply(&op);
		cr_assert_eq(r.status, ST(BAD_REQUEST), "kind %d, empty key: %u", kinds[i], r.status);
		op = mk(kinds[i], long_, 257, "k", 1, "v", 1);
		op.version = 5;
		r = apply(&op);
		cr_assert_eq(r.status, ST(TOO_LARGE), "kind %d, 257-byte ns: %u", kinds[i], r.status);
		op = mk(kinds[i], "n", 1, long_, 257, "v", 1);
		op.version = 5;
		r = apply(&op);
		cr_assert_eq(r.status, ST(TOO_LARGE), "kind %d, 257-byte key: %u", kinds[i], r.status);
		op = mk(kinds[i], "n", 1, long_, 300, "v", 1);
		r = apply(&op);
		cr_assert_eq(r.status, ST(TOO_LARGE));
	}
	{
		static const Mcpcore__StateOp__Kind vk[] = { K(PUT), K(CAS), K(RESTORE) };

		for (size_t i = 0; i < 3; i++) {
			Mcpcore__StateOp op = mk(vk[i], "n", 1, "exists", 6, big, sizeof(big));

			op.version = UINT64_MAX / 2;
			r = apply(&op);
			cr_assert_eq(r.status, ST(TOO_LARGE), "kind %d, 65537-byte value: %u", vk[i], r.status);
		}
	}
	{
		Mcpcore__StateOp op = MKS(PUT, "n", "k", "v");

		op.kind = (Mcpcore__StateOp__Kind)42;
		r = apply(&op);
		cr_assert_eq(r.status, ST(BAD_REQUEST), "unknown kind: %u", r.status);
	}
	/* nothing changed */
	st1 = stats();
	cr_assert_eq(memcmp(&st0, &st1, sizeof(st0)), 0, "a refused op changed the table");
	cr_assert_eq(mc_state_feed_pending(&w), 0, "a refused op went to the feed");
	expect("n", "exists", "1", 0);
	expect_absent("n", "k");

	/* exactly at the bounds is fine */
	r = put_b(long_, 256, long_, 256, big, 65536);
	cr_assert_eq(r.status, ST(OK), "at the bounds: %u", r.status);

	/* readers */
	cr_assert_eq(mc_state_get(&seg, "", 0, "k", 1, gbuf, sizeof(gbuf), &v), -EINVAL);
	cr_assert_eq(mc_state_get(&seg, "n", 1, "", 0, gbuf, sizeof(gbuf), &v), -EINVAL);
	cr_assert_eq(mc_state_get(&seg, long_, 257, "k", 1, gbuf, sizeof(gbuf), &v), -EINVAL);
	cr_assert_eq(mc_state_get(&seg, "n", 1, long_, 257, gbuf, sizeof(gbuf), &v), -EINVAL);
	cr_assert_eq(mc_state_get(&seg, long_, 256, long_, 255, gbuf, sizeof(gbuf), &v), -ENOENT);
	expect_b(long_, 256, long_, 256, big, 65536, r.version);

	/* the client side refuses the same before sending */
	memset(&b, 0, sizeof(b));
	mc_state_batch_init(&b);
	rq = (struct mc_state_req){ .kind = K(PUT), .ns = "n", .nslen = 0, .key = "k", .klen = 1 };
	cr_assert_eq(mc_state_batch_add(&seg, &b, &rq), -EINVAL);
	rq = (struct mc_state_req){ .kind = K(PUT), .ns = "n", .nslen = 1, .key = "k", .klen = 0 };
	cr_assert_eq(mc_state_batch_add(&seg, &b, &rq), -EINVAL);
	rq = (struct mc_state_req){ .kind = K(PUT), .ns = long_, .nslen = 257, .key = "k", .klen = 1 };
	cr_assert_eq(mc_state_batch_add(&seg, &b, &rq), -EMSGSIZE);
	rq = (struct mc_state_req){ .kind = K(PUT), .ns = "n", .nslen = 1, .key = long_, .klen = 257 };
	cr_assert_eq(mc_state_batch_add(&seg, &b, &rq), -EMSGSIZE);
	rq = (struct mc_state_req){ .kind = K(PUT), .ns = "n", .nslen = 1, .key = "k", .klen = 1,
	    .value = big, .vlen = 65537 };
	cr_assert_eq(mc_state_batch_add(&seg, &b, &rq), -EMSGSIZE);
	cr_assert_eq(b.n, 0);
	rq.vlen = 65536;
	cr_assert_eq(mc_state_batch_add(&seg, &b, &rq), 1);
	cr_assert_eq(b.n, 1);
	table_ok("bounds");
	mc_seg_destroy(&seg);
}

/* ------------------------------------------------------------------ */
/* Versions, CAS, INCR                                                 */

Test(state, versions_strictly_increase_across_keys_deletes_and_clock)
{
	struct mc_state_result r;
	struct mc_state_value v;
	Mcpcore__StateOp op;
	uint64_t last = 0, now, writes;
	char key[32], val[32];

	table_up();
	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "k%d", i % 17);
		snprintf(val, sizeof(val), "v%d", i);
		r = put("ver", key, val);
		cr_assert_eq(r.status, ST(OK));
		cr_assert_gt(r.version, last, "op %d: version %" PRIu64 " after %" PRIu64, i, r.version, last);
		last = r.version;
		expect("ver", key, val, r.version);
	}
	/* delete, re-put: the same key keeps moving forward */
	r = del("ver", "k3");
	cr_assert_eq(r.status, ST(OK));
	cr_assert_gt(r.version, last);
	last = r.version;
	expect_absent("ver", "k3");
	r = put("ver", "k3", "again");
	cr_assert_eq(r.status, ST(OK));
	cr_assert_gt(r.version, last, "re-put after delete went back to %" PRIu64, r.version);
	last = r.version;
	/* ... also once the tombstone is gone (fed, trimmed or reused) */
	r = del("ver", "k3");
	cr_assert_gt(r.version, last);
	last = r.version;
	feed_drain();
	r = put("ver", "k3", "third");
	cr_assert_gt(r.version, last);
	last = r.version;
	expect("ver", "k3", "third", r.version);
	/* a wall clock stepping back an hour does not make versions go back */
	op = MKS(PUT, "ver", "k5", "past");
	r = apply_at(&op, mc_wall_ns() - 3600000000000ULL);
	cr_assert_eq(r.status, ST(OK));
	cr_assert_gt(r.version, last);
	last = r.version;
	/* versions are at least the writer's clock in microseconds */
	now = mc_wall_ns() + 10000000000ULL;
	op = MKS(PUT, "ver", "k6", "future");
	r = apply_at(&op, now);
	cr_assert_geq(r.version, now / 1000);
	cr_assert_gt(r.version, last);
	last = r.version;
	r = incr("ver", "ctr", 1);
	cr_assert_gt(r.version, last);
	last = r.version;
	cr_assert_eq(stats().version, last, "st_version is the last version handed out");
	cr_assert_eq(get("ver", "ctr", &v), 0);
	cr_assert_eq(v.version, last);
	writes = stats().writes;
	r = del("ver", "nope");
	cr_assert_eq(r.status, ST(NOT_FOUND));
	cr_assert_eq(stats().writes, writes, "a NOT_FOUND delete counted as a change");
	table_ok("versions");
	mc_seg_destroy(&seg);
}

Test(state, cas_absent_right_wrong_and_after_delete)
{
	Mcpcore__StateOp op;
	struct mc_state_result r, r2;
	uint64_t v1;

	table_up();
	op = MKS(CAS, "cas", "k", "first");
	op.expected_version = 0;
	r = apply(&op);
	cr_assert_eq(r.status, ST(OK), "CAS 0 on an absent key: %u", r.status);
	v1 = r.version;
	expect("cas", "k", "first", v1);
	/* expected 0 but present */
	op = MKS(CAS, "cas", "k", "second");
	op.expected_version = 0;
	r = apply(&op);
	cr_assert_eq(r.status, ST(VERSION_MISMATCH));
	cr_assert_eq(r.version, v1, "mismatch must return the current version");
	expect("cas", "k", "first", v1);
	/* wrong version, both sides */
	op.expected_version = v1 + 1;
	r = apply(&op);
	cr_assert_eq(r.status, ST(VERSION_MISMATCH));
	cr_assert_eq(r.version, v1);
	op.expected_version = v1 - 1;
	r = apply(&op);
	cr_assert_eq(r.status, ST(VERSION_MISMATCH));
	cr_assert_eq(r.version, v1);
	expect("cas", "k", "first", v1);
	/* right version */
	op.expected_version = v1;
	r = apply(&op);
	cr_assert_eq(r.status, ST(OK));
	cr_assert_gt(r.version, v1);
	expect("cas", "k", "second", r.version);
	/* the old version does not match twice */
	r2 = apply(&op);
	cr_assert_eq(r2.status, ST(VERSION_MISMATCH));
	cr_assert_eq(r2.version, r.version);
	/* CAS on an absent key with a non-zero expectation */
	op = MKS(CAS, "cas", "absent", "x");
	op.expected_version = 7;
	r2 = apply(&op);
	cr_assert_eq(r2.status, ST(VERSION_MISMATCH));
	cr_assert_eq(r2.version, 0, "absent key: current version is 0");
	expect_absent("cas", "absent");
	/* after a delete, the key is absent: the deleted version no longer matches, 0 does */
	r2 = del("cas", "k");
	cr_assert_eq(r2.status, ST(OK));
	op = MKS(CAS, "cas", "k", "third");
	op.expected_version = r.version;
	r = apply(&op);
	cr_assert_eq(r.status, ST(VERSION_MISMATCH));
	cr_assert_eq(r.version, 0);
	op.expected_version = r2.version;
	r = apply(&op);
	cr_assert_eq(r.status, ST(VERSION_MISMATCH), "the tombstone's version matched a CAS");
	op.expected_version = 0;
	r = apply(&op);
	cr_assert_eq(r.status, ST(OK));
	cr_assert_gt(r.version, r2.version);
	expect("cas", "k", "third", r.version);
	/* CAS with a TTL sets the expiry */
	op = MKS(CAS, "cas", "t", "ttl");
	op.ttl_ms = 60000;
	{
		uint64_t now = mc_wall_ns();
		struct mc_state_value v;

		r = apply_at(&op, now);
		cr_assert_eq(r.status, ST(OK));
		cr_assert_eq(get("cas", "t", &v), 0);
		cr_assert_eq(v.expires, now + 60000ULL * 1000000ULL);
	}
	table_ok("cas");
	mc_seg_destroy(&seg);
}

Test(state, incr_absent_nan_overflow_negative)
{
	static const char *const nans[] = { "abc", "12a", " 1", "1 ", "1.5", "-", "--1", "0x10",
	    "99999999999999999999", "1e3" };
	struct mc_state_result r;
	char buf[32];
	uint64_t v;

	table_up();
	r = incr("inc", "a", 5);
	cr_assert_eq(r.status, ST(OK), "INCR on an absent key: %u", r.status);
	cr_assert_str_eq(r.number, "5");
	expect("inc", "a", "5", r.version);
	r = incr("inc", "a", -12);
	cr_assert_eq(r.status, ST(OK));
	cr_assert_str_eq(r.number, "-7");
	expect("inc", "a", "-7", r.version);
	r = incr("inc", "a", 0);
	cr_assert_eq(r.status, ST(OK));
	cr_assert_str_eq(r.number, "-7");
	{
		Mcpcore__StateOp op = MKS(INCR, "inc", "a", NULL);

		cr_assert_eq(mc_state_writer_number(&w, &op, buf, sizeof(buf)), 0);
		cr_assert_str_eq(buf, "-7");
	}
	/* a number written by PUT */
	OK_PUT("inc", "b", "41");
	r = incr("inc", "b", 1);
	cr_assert_eq(r.status, ST(OK));
	cr_assert_str_eq(r.number, "42");
	OK_PUT("inc", "neg", "-100");
	r = incr("inc", "neg", 150);
	cr_assert_str_eq(r.number, "50");
	/* not numbers */
	for (size_t i = 0; i < sizeof(nans) / sizeof(nans[0]); i++) {
		uint64_t ver;

		r = put("inc", "s", nans[i]);
		ver = r.version;
		r = incr("inc", "s", 1);
		cr_assert_eq(r.status, ST(NOT_A_NUMBER), "INCR on '%s': %u", nans[i], r.status);
		cr_assert_eq(r.version, ver, "NOT_A_NUMBER must return the current version");
		expect("inc", "s", nans[i], ver);
	}
	r = put_b("inc", 3, "e", 1, NULL, 0);
	v = r.version;
	r = incr("inc", "e", 1);
	cr_assert_eq(r.status, ST(NOT_A_NUMBER), "INCR on an empty value: %u", r.status);
	expect_b("inc", 3, "e", 1, NULL, 0, v);
	/* overflow at both ends, value unchanged */
	OK_PUT("inc", "max", "9223372036854775806");
	r = incr("inc", "max", 1);
	cr_assert_eq(r.status, ST(OK));
	cr_assert_str_eq(r.number, "9223372036854775807");
	v = r.version;
	r = incr("inc", "max", 1);
	cr_assert_eq(r.status, ST(OVERFLOW));
	expect("inc", "max", "9223372036854775807", v);
	r = incr("inc", "max", INT64_MAX);
	cr_assert_eq(r.status, ST(OVERFLOW));
	r = incr("inc", "min", INT64_MIN);
	cr_assert_eq(r.status, ST(OK));
	cr_assert_str_eq(r.number, "-9223372036854775808");
	v = r.version;
	r = incr("inc", "min", -1);
	cr_assert_eq(r.status, ST(OVERFLOW));
	expect("inc", "min", "-9223372036854775808", v);
	r = incr("inc", "min", INT64_MAX);
	cr_assert_eq(r.status, ST(OK));
	cr_assert_str_eq(r.number, "-1");
	/* INCR after a delete starts from 0 again */
	cr_assert_eq(del("inc", "b").status, ST(OK));
	r = incr("inc", "b", 3);
	cr_assert_eq(r.status, ST(OK));
	cr_assert_str_eq(r.number, "3");
	expect("inc", "b", "3", r.version);
	table_ok("incr");
	mc_seg_destroy(&seg);
}

/* ------------------------------------------------------------------ */
/* Collisions                                                          */

/* Keys "<pfx><n>" of namespace ns whose home slot is home1 or home2. */
static void find_homed(const char *ns, const char *pfx, uint64_t home1, size_t n1,
    uint64_t home2, size_t n2, char (*out1)[24], char (*out2)[24])
{
	size_t got1 = 0, got2 = 0;

	for (uint64_t n = 0; got1 < n1 || got2 < n2; n++) {
		char key[24];
		int len = snprintf(key, sizeof(key), "%s%" PRIu64, pfx, n);
		uint64_t home = mc_state_hash(ns, strlen(ns), key, (size_t)len) & w.mask;

		if (home == home1 && got1 < n1)
			memcpy(out1[got1++], key, sizeof(key));
		else if (home == home2 && got2 < n2)
			memcpy(out2[got2++], key, sizeof(key));
	}
}

static int count_cb(void *ctx, const struct mc_state_item *it)
{
	(void)it;
	++*(long *)ctx;
	return 0;
}

Test(state, collisions_long_chains_wrap_delete_middle_and_reuse_tombstones)
{
	enum { N1 = 200, N2 = 100, NR = 3000 };
	static char c1[N1][24], c2[N2][24];
	char val[64], key[24];
	uint64_t home1, home2, lt;
	struct mc_state_stats st;
	long seen = 0;
	bool wrapped = false;

	table_up();
	home1 = w.mask - 60;            /* the chain runs off the end of the index */
	home2 = home1 + 7;
	find_homed("coll", "c", home1, N1, home2, N2, c1, c2);
	for (int i = 0; i < N1 || i < N2; i++) {
		if (i < N1) {
			snprintf(val, sizeof(val), "1:%.23s", c1[i]);
			OK_PUT("coll", c1[i], val);
		}
		if (i < N2) {
			snprintf(val, sizeof(val), "2:%.23s", c2[i]);
			OK_PUT("coll", c2[i], val);
		}
	}
	for (int i = 0; i < NR; i++) {
		snprintf(key, sizeof(key), "r%d", i);
		snprintf(val, sizeof(val), "r:%d", i);
		OK_PUT("rand", key, val);
	}
	st = stats();
	cr_assert_eq(st.live, N1 + N2 + NR);
	for (int i = 0; i < N1; i++) {
		snprintf(val, sizeof(val), "1:%.23s", c1[i]);
		expect("coll", c1[i], val, 0);
	}
	for (int i = 0; i < N2; i++) {
		snprintf(val, sizeof(val), "2:%.23s", c2[i]);
		expect("coll", c2[i], val, 0);
	}
	for (int i = 0; i < 100; i++)
		if (w.entries[i].e_state == MC_STATE_LIVE && w.entries[i].e_nslen == 4 &&
		    memcmp(w.arena + w.entries[i].e_blob, "coll", 4) == 0 &&
		    (mc_state_hash("coll", 4, w.arena + w.entries[i].e_blob + 4,
		    w.entries[i].e_keylen) & w.mask) == home1)
			wrapped = true;
	cr_assert(wrapped, "the collision chain did not wrap around the end of the index");
	for (int i = 0; i < NR; i++) {
		snprintf(key, sizeof(key), "r%d", i);
		snprintf(val, sizeof(val), "r:%d", i);
		expect("rand", key, val, 0);
	}
	cr_assert_eq(mc_state_scan(&seg, "coll", 4, "", 0, count_cb, &seen), N1 + N2);
	cr_assert_eq(seen, N1 + N2);
	table_ok("collisions inserted");

	/* delete every third key of both chains: later keys stay reachable */
	for (int i = 0; i < N1; i += 3)
		cr_assert_eq(del("coll", c1[i]).status, ST(OK));
	for (int i = 1; i < N2; i += 3)
		cr_assert_eq(del("coll", c2[i]).status, ST(OK));
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < N1; i++) {
			snprintf(val, sizeof(val), "1:%.23s", c1[i]);
			if (i % 3 == 0)
				expect_absent("coll", c1[i]);
			else
				expect("coll", c1[i], val, 0);
		}
		for (int i = 0; i < N2; i++) {
			snprintf(val, sizeof(val), "2:%.23s", c2[i]);
			if (i % 3 == 1)
				expect_absent("coll", c2[i]);
			else
				expect("coll", c2[i], val, 0);
		}
		table_ok(pass ? "deleted, fed" : "deleted, not fed");
		feed_drain();           /* second pass: with key-less tombstones */
	}
	st = stats();
	cr_assert_eq(st.live, N1 + N2 + NR - 67 - 33);
	cr_assert_eq(st.tombstones, 67 + 33, "tombstones inside chains cannot be trimmed");
	lt = st.live + st.tombstones;

	/* re-insert the deleted keys: they take the tombstones back */
	for (int i = 0; i < N1; i += 3) {
		snprintf(val, sizeof(val), "again:%.23s", c1[i]);
		OK_PUT("coll", c1[i], val);
	}
	st = stats();
	cr_assert_eq(st.live + st.tombstones, lt, "re-insertions took new slots instead of tombstones");
	cr_assert_eq(st.tombstones, 33);
	/* new keys of the second chain reuse its tombstones too */
	{
		static char c3[30][24], dummy[1][24];

		find_homed("coll", "d", home2, 30, UINT64_MAX, 0, c3, dummy);
		for (int i = 0; i < 30; i++) {
			snprintf(val, sizeof(val), "3:%.23s", c3[i]);
			OK_PUT("coll", c3[i], val);
			expect("coll", c3[i], val, 0);
		}
	}
	st = stats();
	cr_assert_eq(st.live + st.tombstones, lt, "new keys of a chain did not reuse its tombstones");
	cr_assert_eq(st.tombstones, 3);
	for (int i = 0; i < N1; i++) {
		snprintf(val, sizeof(val), i % 3 == 0 ? "again:%.23s" : "1:%.23s", c1[i]);
		expect("coll", c1[i], val, 0);
	}
	table_ok("reused");
	mc_seg_destroy(&seg);
}

/* ------------------------------------------------------------------ */
/* Growth to full                                                      */

static int fill_index(const char *ns, int limit)
{
	char key[24], val[24];
	int n;

	for (n = 0; n < limit; n++) {
		struct mc_state_result r;

		snprintf(key, sizeof(key), "f%d", n);
		snprintf(val, sizeof(val), "v%d", n);
		r = put(ns, key, val);
		if (r.status == ST(TABLE_FULL))
			break;
		cr_assert_eq(r.status, ST(OK), "insert %d: %u", n, r.status);
	}
	return n;
}

Test(state, index_full_at_seven_eighths_then_everything_back)
{
	struct mc_state_stats st;
	struct mc_state_result r;
	char key[24], val[24];
	int n, n2;

	table_up();
	n = fill_index("full", 100000);
	st = stats();
	cr_assert_eq((uint64_t)n, st.capacity * 7 / 8, "%d entries fit, want 7/8 of %" PRIu64, n,
	    st.capacity);
	cr_assert_eq(st.live, (uint64_t)n);
	r = put("full", "one-more", "x");
	cr_assert_eq(r.status, ST(TABLE_FULL));
	cr_assert_not_null(r.error);
	r = incr("full", "one-more", 1);
	cr_assert_eq(r.status, ST(TABLE_FULL));
	/* an existing key can still be rewritten */
	r = put("full", "f7", "rewritten");
	cr_assert_eq(r.status, ST(OK));
	table_ok("full");
	for (int i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "f%d", i);
		snprintf(val, sizeof(val), "v%d", i);
		expect("full", key, i == 7 ? "rewritten" : val, 0);
	}
	expect_absent("full", "one-more");

	/* delete everything; once fed, every tombstone is trailing: all slots empty */
	for (int i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "f%d", i);
		cr_assert_eq(del("full", key).status, ST(OK));
	}
	table_ok("all deleted");
	st = stats();
	cr_assert_eq(st.live, 0);
	cr_assert_eq(st.tombstones, (uint64_t)n);
	/* tombstones not yet fed still take room: live entries and tombstones
	 * together may fill 15/16 of the index, then TABLE_FULL */
	for (uint64_t i = 0;; i++) {
		snprintf(key, sizeof(key), "t%" PRIu64, i);
		if (put("full", key, "x").status != ST(OK)) {
			cr_assert_eq(i, st.capacity * 15 / 16 - (uint64_t)n,
			    "%" PRIu64 " inserts fit beside %d unfed tombstones", i, n);
			break;
		}
	}
	for (uint64_t i = 0; i < st.capacity * 15 / 16 - (uint64_t)n; i++) {
		snprintf(key, sizeof(key), "t%" PRIu64, i);
		cr_assert_eq(del("full", key).status, ST(OK));
	}
	feed_drain();
	st = stats();
	cr_assert_eq(st.tombstones, 0, "%" PRIu64 " tombstones left after all were fed", st.tombstones);
	cr_assert_eq(st.arena_live, 0);
	table_ok("all fed");
	n2 = fill_index("full2", 100000);
	cr_assert_eq(n2, n, "after emptying, %d fit instead of %d", n2, n);
	table_ok("refilled");
	mc_seg_destroy(&seg);
}

/*
 * A table whose live keys stay far below capacity must keep accepting new
 * keys: deleting D keys (and sending the feed) makes room for D others.
 */
Test(state, deleted_entries_make_room_for_new_keys)
{
	struct mc_state_stats st;
	char key[24];
	int n, deleted = 0, inserted;

	table_up();
	n = fill_index("churn", 100000);
	for (int i = 0; i < n; i++)
		if (i % 8 != 0) {
			snprintf(key, sizeof(key), "f%d", i);
			cr_assert_eq(del("churn", key).status, ST(OK));
			deleted++;
		}
	feed_drain();
	table_ok("churn deleted");
	st = stats();
	cr_assert_eq(st.live, (uint64_t)(n - deleted));
	for (inserted = 0; inserted < deleted; inserted++) {
		struct mc_state_result r;

		snprintf(key, sizeof(key), "new%d", inserted);
		r = put("churn", key, "x");
		if (r.status != ST(OK))
			break;
	}
	st = stats();
	cr_assert_eq(inserted, deleted, "after deleting %d of %d keys and sending the feed, only %d "
	    "new keys fit (live %" PRIu64 ", tombstones %" PRIu64 ", capacity %" PRIu64 "): key-less "
	    "tombstones are never reclaimed unless trailing, so TABLE_FULL comes with the table "
	    "mostly empty", deleted, n, inserted, st.live, st.tombstones, st.capacity);
	table_ok("churn refilled");
	mc_seg_destroy(&seg);
}

static int fill_arena(const char *ns, uint8_t *val, size_t vlen, int limit)
{
	char key[24];
	int n;

	for (n = 0; n < limit; n++) {
		struct mc_state_result r;

		snprintf(key, sizeof(key), "b%06d", n);
		memcpy(val, &n, sizeof(n));
		r = put_b(ns, strlen(ns), key, strlen(key), val, vlen);
		if (r.status == ST(TABLE_FULL))
			break;
		cr_assert_eq(r.status, ST(OK), "insert %d: %u", n, r.status);
	}
	return n;
}

Test(state, arena_full_with_large_values_and_reuse_after_delete)
{
	static uint8_t big[65536];
	struct mc_state_stats st, st2;
	uint64_t blk = mc_state_class_size(mc_state_class(3 + 7 + sizeof(big)));
	char key[24];
	int n, n2, small;

	table_up();
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)ut_mix64(i);
	n = fill_arena("big", big, sizeof(big), 100000);
	st = stats();
	cr_assert_eq((uint64_t)n, (st.arena_size - MC_STATE_BLOCK_MIN) / blk,
	    "%d values of %" PRIu64 "-byte blocks in a %" PRIu64 "-byte arena", n, blk, st.arena_size);
	cr_assert_eq(st.arena_live, (uint64_t)n * blk);
	table_ok("arena full of big values");
	/* what is left at the top still takes small values */
	small = 0;
	for (;; small++) {
		char k2[24];
		struct mc_state_result r;

		snprintf(k2, sizeof(k2), "s%d", small);
		r = put("big", k2, "small value");
		if (r.status != ST(OK))
			break;
	}
	cr_assert_gt(small, 0);
	st = stats();
	cr_assert_lt(st.arena_size - st.arena_top, 32, "arena not full: %" PRIu64 " bytes left",
	    st.arena_size - st.arena_top);
	/* copy-on-write needs room for the new block before the old is freed */
	memcpy(big, &n, sizeof(n));
	for (int i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "b%06d", i);
		memcpy(big, &i, sizeof(i));
		expect_b("big", 3, key, strlen(key), big, sizeof(big), 0);
	}
	table_ok("arena full");

	/* delete half: the blocks are freed only once the feed has gone out */
	for (int i = 0; i < n; i += 2) {
		snprintf(key, sizeof(key), "b%06d", i);
		cr_assert_eq(del("big", key).status, ST(OK));
	}
	st2 = stats();
	cr_assert_eq(st2.arena_live, st.arena_live, "deleted keys' blocks freed before their DELETE "
	    "was sent");
	cr_assert_eq(st2.arena_free, st.arena_free);
	table_ok("half deleted");
	feed_drain();
	st2 = stats();
	cr_assert_eq(st2.arena_live, st.arena_live - (uint64_t)((n + 1) / 2) * blk);
	cr_assert_eq(st2.arena_free, st.arena_free + (uint64_t)((n + 1) / 2) * blk);
	table_ok("half fed");
	/* the same number of big values fits again, from the free list */
	n2 = fill_arena("big2", big, sizeof(big), 100000);
	cr_assert_eq(n2, (n + 1) / 2, "%d big values fit again, want %d", n2, (n + 1) / 2);
	st2 = stats();
	cr_assert_eq(st2.arena_top, st.arena_top, "reuse went to the top instead of the free list");
	cr_assert_eq(st2.arena_free, st.arena_free);
	for (int i = 1; i < n; i += 2) {
		snprintf(key, sizeof(key), "b%06d", i);
		memcpy(big, &i, sizeof(i));
		expect_b("big", 3, key, strlen(key), big, sizeof(big), 0);
	}
	table_ok("refilled");
	mc_seg_destroy(&seg);
}

/*
 * Space freed by deleting large values must be usable by small ones:
 * otherwise a table that once held big values refuses a 10-byte value
 * with TABLE_FULL while megabytes of its arena are free.
 */
Test(state, arena_space_freed_by_large_values_serves_small_ones)
{
	static uint8_t big[65536];
	struct mc_state_stats st;
	char key[24];
	int n, stored = 0;

	table_up();
	n = fill_arena("big", big, sizeof(big), 100000);
	for (int i = 0;; i++) {
		snprintf(key, sizeof(key), "pad%d", i);
		if (put("pad", key, "x").status != ST(OK))
			break;
	}
	for (int i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "b%06d", i);
		cr_assert_eq(del("big", key).status, ST(OK));
	}
	feed_drain();
	table_ok("big values deleted");
	st = stats();
	cr_assert_gt(st.arena_free, 7000000);
	for (stored = 0; stored < 1000; stored++) {
		snprintf(key, sizeof(key), "small%d", stored);
		if (put("small", key, "a small value of 32 bytes.......").status != ST(OK))
			break;
	}
	cr_assert_eq(stored, 1000, "only %d small values fit with %" PRIu64 " arena bytes free "
	    "(free blocks are never split or merged across size classes)", stored, st.arena_free);
	table_ok("small values");
	mc_seg_destroy(&seg);
}

Test(state, overwrites_reclaim_arena_space)
{
	static uint8_t val[5000];
	struct mc_state_stats st0, st;
	struct mc_state_result r;

	table_up();
	for (size_t i = 0; i < sizeof(val); i++)
		val[i] = (uint8_t)i;
	r = put_b("ow", 2, "k", 1, val, 1000);
	cr_assert_eq(r.status, ST(OK));
	st0 = stats();
	for (int i = 0; i < 20000; i++) {
		size_t len = 1000;

		val[0] = (uint8_t)i;
		r = put_b("ow", 2, "k", 1, val, len);
		cr_assert_eq(r.status, ST(OK));
	}
	st = stats();
	cr_assert_eq(st.arena_live, st0.arena_live);
	cr_assert_leq(st.arena_top, st0.arena_top + mc_state_class_size(mc_state_class(1003)),
	    "20000 same-size overwrites grew the arena top by %" PRIu64, st.arena_top - st0.arena_top);
	expect_b("ow", 2, "k", 1, val, 1000, r.version);
	/* sizes cycling through many classes: bounded too */
	for (int round = 0; round < 3; round++)
		for (size_t len = 0; len <= 5000; len += 37) {
			val[0] = (uint8_t)len;
			cr_assert_eq(put_b("ow", 2, "k", 1, val, len).status, ST(OK));
		}
	{
		uint64_t top = stats().arena_top;

		for (size_t len = 0; len <= 5000; len += 37) {
			val[0] = (uint8_t)len;
			cr_assert_eq(put_b("ow", 2, "k", 1, val, len).status, ST(OK));
		}
		cr_assert_eq(stats().arena_top, top, "a repeated size cycle still takes new space");
	}
	st = stats();
	cr_assert_eq(st.arena_live, mc_state_class_size(mc_state_class(3 + 4995)));
	cr_assert_eq(st.live, 1);
	table_ok("overwrites");
	mc_seg_destroy(&seg);
}

/* ------------------------------------------------------------------ */
/* TTL                                                                 */

Test(state, ttl_lazy_expiry_sweep_and_expire_tombstone)
{
	struct mc_state_value v;
	struct mc_state_result r, r2;
	struct mc_state_stats st;
	Mcpcore__StateOp op;
	uint64_t now = mc_wall_ns(), past = now - 5000000000ULL, vlive, ver;
	int64_t i1, i3;
	long seen = 0;

	table_up();
	op = MKS(PUT, "ttl", "gone", "x");
	op.ttl_ms = 1000;
	r = apply_at(&op, past);             /* expired 4 s ago */
	cr_assert_eq(r.status, ST(OK));
	expect_absent("ttl", "gone");
	cr_assert_eq(mc_state_scan(&seg, "ttl", 3, "", 0, count_cb, &seen), 0);
	i1 = slot_s("ttl", "gone");
	cr_assert_geq(i1, 0);

	op = MKS(PUT, "ttl", "long", "y");
	op.ttl_ms = 600000;
	r = apply_at(&op, now);
	vlive = r.version;
	cr_assert_eq(get("ttl", "long", &v), 0);
	cr_assert_eq(v.expires, now + 600000ULL * 1000000ULL);

	op = MKS(PUT, "ttl", "soon", "z");
	op.ttl_ms = 1000;
	r = apply(&op);
	cr_assert_eq(get("ttl", "soon", &v), 0, "expired right away");
	i3 = slot_s("ttl", "soon");
	while (mc_wall_ns() <= v.expires)
		sleep_us(2000);
	expect_absent("ttl", "soon");
	st = stats();
	cr_assert_eq(st.live, 3, "lazy expiry: entries stay live until the sweep");
	cr_assert_eq(del("ttl", "gone").status, ST(NOT_FOUND), "DELETE of an expired key");
	feed_drain();

	/* the sweep turns both into EXPIRE tombstones, queued for the feed */
	ver = stats().version;
	mc_state_sweep(&w, mc_wall_ns(), w.mask + 1);
	st = stats();
	cr_assert_eq(st.expired, 2);
	cr_assert_eq(st.live, 1);
	cr_assert_eq(st.tombstones, 2);
	cr_assert_eq(w.entries[i1].e_state, MC_STATE_TOMB);
	cr_assert_eq(w.entries[i3].e_state, MC_STATE_TOMB);
	cr_assert(w.entries[i1].e_flags & MC_STATE_F_EXPIRED);
	cr_assert(w.entries[i3].e_flags & MC_STATE_F_EXPIRED);
	cr_assert(w.entries[i1].e_dirty && w.entries[i3].e_dirty);
	cr_assert_neq(w.entries[i1].e_blob, 0, "an EXPIRE keeps its key bytes until sent");
	cr_assert_gt(w.entries[i1].e_version, ver);
	cr_assert_gt(w.entries[i3].e_version, ver);
	cr_assert_neq(w.entries[i1].e_version, w.entries[i3].e_version);
	cr_assert_eq(mc_state_feed_pending(&w), 2);
	{
		uint32_t a = mc_state_feed_peek(&w, 0), b = mc_state_feed_peek(&w, 1);

		cr_assert((a == i1 && b == i3) || (a == i3 && b == i1), "feed holds %u, %u", a, b);
	}
	expect("ttl", "long", "y", vlive);
	table_ok("swept");
	/* a second sweep finds nothing */
	mc_state_sweep(&w, mc_wall_ns(), 2 * (w.mask + 1));
	cr_assert_eq(stats().expired, 2);
	cr_assert_eq(mc_state_feed_pending(&w), 2);
	feed_drain();
	cr_assert_eq(w.entries[i1].e_blob, 0);
	table_ok("expired fed");

	/* expired keys behave as absent for INCR and CAS */
	op = MKS(PUT, "ttl", "cnt", "41");
	op.ttl_ms = 1000;
	cr_assert_eq(apply_at(&op, past).status, ST(OK));
	r = incr("ttl", "cnt", 1);
	cr_assert_eq(r.status, ST(OK));
	cr_assert_str_eq(r.number, "1", "INCR of an expired counter continued from its old value");
	cr_assert_eq(get("ttl", "cnt", &v), 0);
	cr_assert_eq(v.expires, 0);
	op = MKS(PUT, "ttl", "cas", "old");
	op.ttl_ms = 1000;
	cr_assert_eq(apply_at(&op, past).status, ST(OK));
	op = MKS(CAS, "ttl", "cas", "new");
	op.expected_version = 0;
	r2 = apply(&op);
	cr_assert_eq(r2.status, ST(OK), "CAS 0 on an expired key: %u", r2.status);
	expect("ttl", "cas", "new", r2.version);

	/* a budget of one entry per call still gets round the whole index */
	op = MKS(PUT, "ttl", "late", "q");
	op.ttl_ms = 1000;
	cr_assert_eq(apply_at(&op, past).status, ST(OK));
	i1 = slot_s("ttl", "late");
	for (uint64_t k = 0; k <= w.mask; k++)
		mc_state_sweep(&w, mc_wall_ns(), 1);
	cr_assert_eq(w.entries[i1].e_state, MC_STATE_TOMB, "one-entry sweeps missed slot %" PRId64, i1);
	cr_assert_eq(stats().expired, 3);
	table_ok("ttl end");
	mc_seg_destroy(&seg);
}

/* ------------------------------------------------------------------ */
/* RESTORE                                                             */

static struct mc_state_result restore(const char *key, const char *val, uint64_t version,
    uint64_t mtime, uint64_t expires)
{
	Mcpcore__StateOp op = MKS(RESTORE, "rs", key, val);

	op.version = version;
	op.mtime = mtime;
	op.expires_at = expires;
	return apply(&op);
}

Test(state, restore_newer_wins_expired_ignored_versions_move_past)
{
	struct mc_state_value v;
	struct mc_state_result r;
	uint64_t now = mc_wall_ns(), far, pending;

	table_up();
	r = restore("a", "v1000", 1000, 123456789, 0);
	cr_assert_eq(r.status, ST(OK));
	cr_assert_eq(r.version, 1000);
	expect("rs", "a", "v1000", 1000);
	cr_assert_eq(get("rs", "a", &v), 0);
	cr_assert_eq(v.mtime, 123456789, "RESTORE keeps the original mtime");
	cr_assert_eq(mc_state_feed_pending(&w), 0, "RESTORE went to the change feed");
	cr_assert_eq(w.entries[slot_s("rs", "a")].e_dirty, 0);
	/* older or equal: ignored */
	r = restore("a", "v999", 999, 1, 0);
	cr_assert_eq(r.status, ST(OK));
	cr_assert_eq(r.version, 1000);
	r = restore("a", "v1000b", 1000, 1, 0);
	cr_assert_eq(r.version, 1000);
	expect("rs", "a", "v1000", 1000);
	/* newer: replaces */
	r = restore("a", "v2000", 2000, 2, 0);
	cr_assert_eq(r.version, 2000);
	expect("rs", "a", "v2000", 2000);
	/* a write since the restart wins over anything restored */
	r = put("rs", "a", "live");
	cr_assert_geq(r.version, now / 1000);
	pending = mc_state_feed_pending(&w);
	cr_assert_eq(restore("a", "stale", r.version - 1, 3, 0).version, r.version);
	expect("rs", "a", "live", r.version);
	cr_assert_eq(mc_state_feed_pending(&w), pending);
	/* expired and zero-version restores stay out */
	r = restore("exp", "x", 5000, 4, now - 1000000000ULL);
	cr_assert_eq(r.status, ST(OK));
	expect_absent("rs", "exp");
	cr_assert_lt(slot_s("rs", "exp"), 0, "an expired restore took an entry");
	restore("zero", "x", 0, 4, 0);
	expect_absent("rs", "zero");
	r = restore("ttl", "t", 6000, 5, now + 3600000000000ULL);
	expect("rs", "ttl", "t", 6000);
	cr_assert_eq(get("rs", "ttl", &v), 0);
	cr_assert_eq(v.expires, now + 3600000000000ULL);
	/* a restored version from the future: later versions move past it */
	far = mc_wall_ns() / 1000 + 1000000000000ULL;
	r = restore("far", "f", far, 6, 0);
	expect("rs", "far", "f", far);
	cr_assert_geq(stats().version, far);
	r = put("rs", "other", "o");
	cr_assert_gt(r.version, far, "a PUT after restoring version %" PRIu64 " got %" PRIu64, far,
	    r.version);
	r = put("rs", "far", "g");
	cr_assert_gt(r.version, far);
	table_ok("restore");
	mc_seg_destroy(&seg);
}

/* A key deleted since the restart must not come back from an older RESTORE. */
Test(state, restore_does_not_resurrect_a_deleted_key)
{
	struct mc_state_result p, d, r;

	table_up();
	p = put("rs", "k", "written after the restart");
	d = del("rs", "k");
	cr_assert_eq(d.status, ST(OK));
	/* the DELETE is still in the feed: the tombstone has the key and its version */
	r = restore("k", "persisted before the restart", p.version - 1, 1, 0);
	cr_assert_eq(r.status, ST(OK));
	expect_absent("rs", "k");
	table_ok("restore after delete");
	mc_seg_destroy(&seg);
}

/* ------------------------------------------------------------------ */
/* Scan                                                                */

struct scan_ctx {
	long n;
	long stop_after;
	char keys[64][32];
	bool bad;
};

static int scan_cb(void *ctx, const struct mc_state_item *it)
{
	struct scan_ctx *s = ctx;
	struct mc_state_value v;
	int rc;

	if (s->n < 64)
		snprintf(s->keys[s->n], sizeof(s->keys[0]), "%.*s", (int)it->keylen, it->key);
	/* every item must agree with a point read (the table is quiet) */
	rc = mc_state_get(&seg, "s1", 2, it->key, it->keylen, gbuf, sizeof(gbuf), &v);
	if (it->vlen == 0 || rc != 0 || v.len != it->vlen || memcmp(gbuf, it->value, it->vlen) != 0 ||
	    v.version != it->meta.version || it->meta.len != it->vlen)
		s->bad = true;
	s->n++;
	return s->stop_after && s->n >= s->stop_after ? 7 : 0;
}

static long scan_n(const char *ns, const void *prefix, size_t plen, struct scan_ctx *s)
{
	long rc;

	memset(s, 0, sizeof(*s));
	rc = mc_state_scan(&seg, ns, strlen(ns), prefix, plen, scan_cb, s);
	cr_assert_eq(rc, s->n, "scan returned %ld after %ld items", rc, s->n);
	return rc;
}

Test(state, scan_by_namespace_and_prefix)
{
	struct scan_ctx s;
	char key[32], val[32];
	static uint8_t long_[300];
	long rc;

	table_up();
	for (int i = 1; i <= 20; i++) {
		snprintf(key, sizeof(key), "user:%d", i);
		snprintf(val, sizeof(val), "u%d", i);
		OK_PUT("s1", key, val);
	}
	for (int i = 1; i <= 5; i++) {
		snprintf(key, sizeof(key), "admin:%d", i);
		OK_PUT("s1", key, "a");
	}
	cr_assert_eq(put_b("s1", 2, "\0bin", 4, "b", 1).status, ST(OK));
	OK_PUT("s2", "user:1", "other ns");
	OK_PUT("s1x", "user:9", "longer ns");
	OK_PUT("s", "user:2", "shorter ns");

	cr_assert_eq(scan_n("s1", "user:", 5, &s), 20);
	cr_assert_not(s.bad, "a scanned item disagrees with mc_state_get");
	cr_assert_eq(scan_n("s1", "", 0, &s), 26);
	cr_assert_eq(scan_n("s1", "user:1", 6, &s), 11);
	for (long i = 0; i < s.n; i++)
		cr_assert(strncmp(s.keys[i], "user:1", 6) == 0, "%s", s.keys[i]);
	cr_assert_eq(scan_n("s1", "admin:", 6, &s), 5);
	cr_assert_eq(scan_n("s1", "\0", 1, &s), 1);
	cr_assert_eq(scan_n("s1", "user:1000000", 12, &s), 0);
	cr_assert_eq(scan_n("s1", "user:20", 7, &s), 1, "a prefix equal to the whole key");
	cr_assert_eq(scan_n("s2", "", 0, &s), 1);
	cr_assert_eq(scan_n("nothing", "", 0, &s), 0);
	/* deleted and expired entries are not visited */
	cr_assert_eq(del("s1", "user:3").status, ST(OK));
	{
		Mcpcore__StateOp op = MKS(PUT, "s1", "user:4", "expired");

		op.ttl_ms = 1;
		cr_assert_eq(apply_at(&op, mc_wall_ns() - 1000000000ULL).status, ST(OK));
	}
	cr_assert_eq(scan_n("s1", "user:", 5, &s), 18);
	for (long i = 0; i < s.n; i++)
		cr_assert(strcmp(s.keys[i], "user:3") && strcmp(s.keys[i], "user:4"), "%s", s.keys[i]);
	feed_drain();
	cr_assert_eq(scan_n("s1", "user:", 5, &s), 18);
	/* stopping early */
	memset(&s, 0, sizeof(s));
	s.stop_after = 3;
	rc = mc_state_scan(&seg, "s1", 2, "", 0, scan_cb, &s);
	cr_assert_eq(s.n, 3, "the callback ran %ld times after asking to stop at 3", s.n);
	cr_assert(rc == 3 || rc == 7, "scan stopped by the callback returned %ld", rc);
	/* bounds */
	memset(long_, 'x', sizeof(long_));
	cr_assert_eq(mc_state_scan(&seg, "", 0, "", 0, scan_cb, &s), -EINVAL);
	cr_assert_eq(mc_state_scan(&seg, long_, 257, "", 0, scan_cb, &s), -EINVAL);
	cr_assert_eq(mc_state_scan(&seg, "s1", 2, long_, 257, scan_cb, &s), -EINVAL);
	mc_seg_destroy(&seg);
}

/* ------------------------------------------------------------------ */
/* Change feed                                                         */

Test(state, change_feed_coalesces_and_keeps_deleted_keys_until_sent)
{
	struct mc_state_stats st0, st1;
	struct mc_state_result r;
	int64_t ia, ib;
	uint64_t blob, cls_size;

	table_up();
	OK_PUT("fd", "a", "1");
	ia = slot_s("fd", "a");
	OK_PUT("fd", "a", "2");
	OK_PUT("fd", "a", "3");
	OK_PUT("fd", "b", "1");
	ib = slot_s("fd", "b");
	cr_assert_eq(mc_state_feed_pending(&w), 2, "each changed key once while dirty");
	cr_assert_eq(mc_state_feed_peek(&w, 0), (uint32_t)ia, "oldest first");
	cr_assert_eq(mc_state_feed_peek(&w, 1), (uint32_t)ib);
	cr_assert(w.entries[ia].e_dirty && w.entries[ib].e_dirty);
	table_ok("queued");

	/* a deleted key keeps its bytes, coalesced into its pending entry */
	st0 = stats();
	r = del("fd", "a");
	cr_assert_eq(r.status, ST(OK));
	cr_assert_eq(mc_state_feed_pending(&w), 2, "the delete of a queued key was queued again");
	cr_assert_eq(w.entries[ia].e_state, MC_STATE_TOMB);
	blob = w.entries[ia].e_blob;
	cr_assert_neq(blob, 0);
	cr_assert_eq(memcmp(w.arena + blob, "fda", 3), 0, "the tombstone lost its key bytes");
	cr_assert_eq(w.entries[ia].e_version, r.version, "the tombstone carries the DELETE's version");
	st1 = stats();
	cr_assert_eq(st1.arena_live, st0.arena_live);
	cr_assert_eq(st1.arena_free, st0.arena_free);
	expect_absent("fd", "a");
	/* failed ops, RESTOREs: not queued */
	cr_assert_eq(del("fd", "zz").status, ST(NOT_FOUND));
	{
		Mcpcore__StateOp op = MKS(CAS, "fd", "b", "x");

		op.expected_version = 1;
		cr_assert_eq(apply(&op).status, ST(VERSION_MISMATCH));
		op = MKS(RESTORE, "fd", "restored", "x");
		op.version = 77;
		cr_assert_eq(apply(&op).status, ST(OK));
	}
	cr_assert_eq(mc_state_feed_pending(&w), 2);
	table_ok("deleted, queued");

	/* sending the first entry frees the deleted key's block */
	cls_size = mc_state_class_size(w.entries[ia].e_class);
	st0 = stats();
	mc_state_feed_sent(&w, 1);
	cr_assert_eq(mc_state_feed_pending(&w), 1);
	cr_assert_eq(mc_state_feed_peek(&w, 0), (uint32_t)ib);
	cr_assert_eq(w.entries[ia].e_blob, 0);
	cr_assert_eq(w.entries[ia].e_dirty, 0);
	st1 = stats();
	cr_assert_eq(st1.arena_live, st0.arena_live - cls_size);
	cr_assert_eq(st1.arena_free, st0.arena_free + cls_size);
	table_ok("first sent");
	/* b is still queued: changing it does not queue it again */
	OK_PUT("fd", "b", "2");
	cr_assert_eq(mc_state_feed_pending(&w), 1);
	mc_state_feed_sent(&w, 1);
	cr_assert_eq(mc_state_feed_pending(&w), 0);
	cr_assert_eq(w.entries[ib].e_dirty, 0);
	/* ... and once sent, the next change queues it again */
	OK_PUT("fd", "b", "3");
	cr_assert_eq(mc_state_feed_pending(&w), 1);
	cr_assert_eq(mc_state_feed_peek(&w, 0), (uint32_t)ib);
	feed_drain();
	table_ok("fed");

	/* trailing key-less tombstones become empty; inner ones stay */
	{
		static char hk[2][24], dummy[1][24];
		uint64_t home = 0, tb;
		int64_t s0, s1;

		for (uint64_t cand = 100; cand < w.mask; cand += 97)
			if (w.entries[cand].e_state == MC_STATE_EMPTY &&
			    w.entries[cand + 1].e_state == MC_STATE_EMPTY &&
			    w.entries[(cand + 2) & w.mask].e_state == MC_STATE_EMPTY &&
			    w.entries[cand - 1].e_state == MC_STATE_EMPTY) {
				home = cand;
				break;
			}
		cr_assert_neq(home, 0);
		find_homed("fd", "h", home, 2, UINT64_MAX, 0, hk, dummy);
		OK_PUT("fd", hk[0], "x");
		OK_PUT("fd", hk[1], "y");
		s0 = slot_s("fd", hk[0]);
		s1 = slot_s("fd", hk[1]);
		cr_assert_eq(s0, (int64_t)home);
		cr_assert_eq(s1, (int64_t)home + 1);
		feed_drain();
		tb = stats().tombstones;
		cr_assert_eq(del("fd", hk[0]).status, ST(OK));
		feed_drain();
		cr_assert_eq(w.entries[s0].e_state, MC_STATE_TOMB, "an inner tombstone was emptied: "
		    "it would cut the probe chain");
		expect("fd", hk[1], "y", 0);
		cr_assert_eq(stats().tombstones, tb + 1);
		cr_assert_eq(del("fd", hk[1]).status, ST(OK));
		feed_drain();
		cr_assert_eq(w.entries[s1].e_state, MC_STATE_EMPTY, "trailing tombstone not trimmed");
		cr_assert_eq(w.entries[s0].e_state, MC_STATE_EMPTY, "trim did not walk backwards");
		cr_assert_eq(stats().tombstones, tb);
	}
	table_ok("trimmed");
	mc_seg_destroy(&seg);
}

/* ------------------------------------------------------------------ */
/* Frame replay                                                        */

Test(state, frame_replay_applies_each_op_once)
{
	Mcpcore__StateOp ops[4];
	struct mc_state_result res;
	struct mc_state_op_result rec;
	uint32_t done;
	pid_t c;

	table_up();
	ops[0] = MKS(PUT, "fr", "p", "x");
	ops[1] = MKS(INCR, "fr", "ctr", NULL);
	ops[1].delta = 5;
	ops[2] = MKS(INCR, "fr", "ctr", NULL);
	ops[2].delta = 7;
	ops[3] = MKS(DELETE, "fr", "missing", NULL);

	cr_assert_eq(mc_state_frame_begin(&w, SRC, 100), 0);
	mc_state_apply(&w, &ops[0], mc_wall_ns(), 0, &res);
	cr_assert_eq(res.status, ST(OK));
	mc_state_apply(&w, &ops[1], mc_wall_ns(), 1, &res);
	cr_assert_eq(res.status, ST(OK));
	/* the worker dies here; its successor reopens the table */
	writer_open();
	done = mc_state_frame_begin(&w, SRC, 100);
	cr_assert_eq(done, 2, "replayed frame: %u ops done, want 2", done);
	rec = mc_state_frame_result(&w, 1);
	cr_assert_eq(rec.status, ST(OK));
	cr_assert_eq(rec.version, res.version);
	for (uint32_t k = done; k < 4; k++)
		mc_state_apply(&w, &ops[k], mc_wall_ns(), k, &res);
	cr_assert_eq(res.status, ST(NOT_FOUND));
	mc_state_frame_end(&w, SRC, 100);
	expect("fr", "ctr", "12", 0);
	cr_assert_eq(mc_state_frame_result(&w, 3).status, ST(NOT_FOUND));
	cr_assert(mc_state_frame_applied(&w, SRC, 100));
	cr_assert_not(mc_state_frame_applied(&w, SRC, 101));
	/* a finished frame delivered again: all ops done, answers from the records */
	writer_open();
	cr_assert_eq(mc_state_frame_begin(&w, SRC, 100), 4);
	cr_assert_eq(mc_state_frame_result(&w, 2).status, ST(OK));
	/* a new frame starts from 0, also from another sender with the same seq */
	cr_assert_eq(mc_state_frame_begin(&w, SRC + 1, 100), 0);
	cr_assert_eq(mc_state_frame_begin(&w, SRC, 101), 0);
	mc_state_frame_end(&w, SRC, 101);

	/* the same with a real death: a child applies 2 of 3 ops and is killed */
	c = ut_fork();
	if (c == 0) {
		struct mc_state_writer cw;
		struct mc_state_result cr_;

		UT_CHK(mc_state_writer_open(&seg, &cw, err, sizeof(err)) == 0, "%s", err);
		UT_CHK(mc_state_frame_begin(&cw, SRC, 102) == 0, "new frame");
		mc_state_apply(&cw, &ops[1], mc_wall_ns(), 0, &cr_);
		mc_state_apply(&cw, &ops[2], mc_wall_ns(), 1, &cr_);
		raise(SIGKILL);
		_exit(2);
	}
	{
		int st = ut_wait(c);

		cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child status %x", st);
	}
	writer_open();
	done = mc_state_frame_begin(&w, SRC, 102);
	cr_assert_eq(done, 2);
	mc_state_apply(&w, &ops[1], mc_wall_ns(), 2, &res);
	mc_state_frame_end(&w, SRC, 102);
	expect("fr", "ctr", "29", 0);
	table_ok("replay");
	mc_seg_destroy(&seg);
}

/* ------------------------------------------------------------------ */
/* Crash recovery, instruction by instruction                          */

struct snap {
	uint8_t *cache, *core;
	size_t cache_len, core_len;
	struct mc_state_intent intent;
};

static void snap_take(struct snap *s)
{
	s->cache_len = region_size(MC_REGION_SHARED_STATE_CACHE);
	s->core_len = region_size(MC_REGION_CORE_STATE);
	if (s->cache == NULL) {
		s->cache = malloc(s->cache_len);
		s->core = malloc(s->core_len);
		cr_assert(s->cache && s->core);
	}
	memcpy(s->cache, region(MC_REGION_SHARED_STATE_CACHE), s->cache_len);
	memcpy(s->core, region(MC_REGION_CORE_STATE), s->core_len);
	s->intent = T->st_intent;
}

static void snap_restore(const struct snap *s)
{
	memcpy(region(MC_REGION_SHARED_STATE_CACHE), s->cache, s->cache_len);
	memcpy(region(MC_REGION_CORE_STATE), s->core, s->core_len);
}

static void snap_free(struct snap *s)
{
	free(s->cache);
	free(s->core);
	s->cache = s->core = NULL;
}

static const struct mc_state_table *snap_table(const struct snap *s)
{
	return (const struct mc_state_table *)s->cache;
}

static const struct mc_state_entry *snap_entries(const struct snap *s)
{
	return (const struct mc_state_entry *)(s->cache + snap_table(s)->st_entries_off -
	    seg.hdr->sh_regions[MC_REGION_SHARED_STATE_CACHE].rg_offset);
}

static const uint8_t *snap_arena(const struct snap *s)
{
	return s->cache + snap_table(s)->st_arena_off -
	    seg.hdr->sh_regions[MC_REGION_SHARED_STATE_CACHE].rg_offset;
}

static const struct mc_state_ctl *snap_ctl(const struct snap *s)
{
	return (const struct mc_state_ctl *)s->core;
}

/* What readers see of namespace "crash", sorted by key. */
#define VIS_MAX 32
struct vis_item {
	uint8_t key[32];
	size_t klen;
	uint8_t val[600];
	size_t vlen;
	uint64_t version;
};
struct vis {
	size_t n;
	bool overflow;
	struct vis_item it[VIS_MAX];
};

static int vis_cb(void *ctx, const struct mc_state_item *it)
{
	struct vis *v = ctx;
	struct vis_item *x;

	if (v->n == VIS_MAX || it->keylen > sizeof(x->key) || it->vlen > sizeof(x->val)) {
		v->overflow = true;
		return 1;
	}
	x = &v->it[v->n++];
	memcpy(x->key, it->key, it->keylen);
	x->klen = it->keylen;
	memcpy(x->val, it->value, it->vlen);
	x->vlen = it->vlen;
	x->version = it->meta.version;
	return 0;
}

static int vis_item_cmp(const void *a, const void *b)
{
	const struct vis_item *x = a, *y = b;
	int c = memcmp(x->key, y->key, x->klen < y->klen ? x->klen : y->klen);

	return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

static long vis_take(const struct mc_seg *s, struct vis *v)
{
	long rc;

	memset(v, 0, sizeof(*v));
	rc = mc_state_scan(s, "crash", 5, "", 0, vis_cb, v);
	qsort(v->it, v->n, sizeof(v->it[0]), vis_item_cmp);
	return rc;
}

/* Same items; else the first difference in why. */
static bool vis_eq(const struct vis *a, const struct vis *b, char *why, size_t len)
{
	if (a->overflow || b->overflow) {
		snprintf(why, len, "too many items to compare");
		return false;
	}
	if (a->n != b->n) {
		snprintf(why, len, "%zu items, want %zu", a->n, b->n);
		return false;
	}
	for (size_t i = 0; i < a->n; i++) {
		const struct vis_item *x = &a->it[i], *y = &b->it[i];

		if (x->klen != y->klen || memcmp(x->key, y->key, x->klen) != 0) {
			snprintf(why, len, "item %zu: key %.*s, want %.*s", i, (int)x->klen, x->key,
			    (int)y->klen, y->key);
			return false;
		}
		if (x->vlen != y->vlen || memcmp(x->val, y->val, x->vlen) != 0 ||
		    x->version != y->version) {
			snprintf(why, len, "key %.*s: value '%.*s' v%" PRIu64 ", want '%.*s' v%" PRIu64,
			    (int)x->klen, x->key, (int)(x->vlen > 40 ? 40 : x->vlen), x->val, x->version,
			    (int)(y->vlen > 40 ? 40 : y->vlen), y->val, y->version);
			return false;
		}
	}
	return true;
}

/*
 * The points at which the simulated writer dies, in the order of the
 * commit protocol (mc_state.h, mc_state_writer.h CRASH SAFETY, the stores
 * of writer.c's mc_sw_alloc / mc_sw_commit / mc_sw_finish).  Crashing
 * "after step s" leaves every store of steps <= s done and none after.
 */
enum crash_step {
	CS_NONE,
	CS_ALLOC_INTENT_OPEN,     /* intent lock odd, in_blob..in_top_before written */
	CS_ALLOC_PHASE,           /* in_phase = ALLOCATING stored, lock still odd */
	CS_ALLOC_CLOSED,          /* intent closed: ALLOCATING, pop not done */
	CS_ALLOC_POP_HALF,        /* free-list head / arena top moved, st_arena_free not yet */
	CS_ALLOC_POP_DONE,        /* ALLOCATING, pop done */
	CS_FILL_PHASE,            /* in_phase = FILLING stored, intent lock odd */
	CS_FILL_CLOSED,           /* FILLING, intent closed */
	CS_FILL_HALF,             /* half the block written (its free-list link is gone) */
	CS_FILL_DONE,             /* the block complete */
	CS_FEED_MARK,             /* entry index appended to the feed, tail moved */
	CS_COMMIT_INTENT_HALF,    /* intent lock odd, in_idx and half of in_entry written */
	CS_COMMIT_PHASE,          /* all commit fields, in_phase = COMMITTING, lock odd */
	CS_COMMIT_CLOSED,         /* COMMITTING, intent closed, entry untouched */
	CS_ENTRY_ODD,             /* entry lock odd, fields untouched */
	CS_ENTRY_HALF,            /* entry lock odd, half of its fields copied */
	CS_ENTRY_COPIED,          /* entry lock odd, all fields copied */
	CS_ENTRY_EVEN,            /* entry lock even again */
	CS_FREE_LINK,             /* old block's link set to the free-list head, head not moved */
	CS_FREE_DONE,             /* old block at the head of its free list */
	CS_COUNTERS_HALF,         /* st_live, st_tombstones, st_version stored */
	CS_COUNTERS_DONE,         /* all counters stored */
	CS_FRAME_RESULT,          /* the op's result in sc_cur_res, sc_cur_done not yet */
	CS_FRAME_DONE,            /* sc_cur_done = k + 1 */
	CS_IDLE_OPEN,             /* in_phase = IDLE stored, intent lock odd */
	CS_IDLE_CLOSED,           /* complete */
	CS_NSTEPS
};

static const char *const cs_name[CS_NSTEPS] = {
	"before anything", "alloc: intent open", "alloc: phase ALLOCATING, lock odd",
	"alloc: ALLOCATING closed, pop not done", "alloc: pop half done", "alloc: pop done",
	"fill: phase FILLING, lock odd", "fill: FILLING closed", "fill: block half written",
	"fill: block written", "feed: index queued", "commit: intent half written",
	"commit: phase COMMITTING, lock odd", "commit: COMMITTING closed", "finish: entry lock odd",
	"finish: entry half copied", "finish: entry copied, lock odd", "finish: entry lock even",
	"finish: old block linked", "finish: old block on its free list",
	"finish: counters half stored", "finish: counters stored", "finish: frame result stored",
	"finish: frame done count stored", "finish: phase IDLE, lock odd", "complete",
};

struct scenario {
	const char *name;
	bool alloc;                     /* the op takes an arena block */
	int bump;                       /* 1: from the top, 0: from a free list, -1: any */
	bool invisible;                 /* readers cannot tell (feed sent, expired swept) */
	bool frame;                     /* the op is op k of frame (SRC, fseq) */
	uint64_t seq;
	uint32_t k;
	void (*setup)(struct scenario *sc);
	void (*op)(struct scenario *sc);
	uint64_t now;
	/* recorded */
	struct snap s0, s1;
	struct vis v0, v1;
};

static void apply_k(struct scenario *sc, Mcpcore__StateOp op)
{
	struct mc_state_result res;

	mc_state_apply(&w, &op, sc->now, sc->k, &res);
	cr_assert_eq(res.status, ST(OK), "%s: the op failed: %u", sc->name, res.status);
}

static void sc_put_bump_setup(struct scenario *sc)
{
	OK_PUT("crash", "a", "alpha");
	OK_PUT("crash", "b", "beta");
	feed_drain();
	sc->seq = ++fseq;
	cr_assert_eq(mc_state_frame_begin(&w, SRC, sc->seq), 0);
	apply_k(&(struct scenario){ .name = "op0", .now = sc->now, .k = 0 },
	    MKS(PUT, "crash", "a", "alpha2"));
	sc->k = 1;
}

static void sc_put_bump_op(struct scenario *sc)
{
	static char val[300];

	memset(val, 'N', sizeof(val) - 1);
	apply_k(sc, MKS(PUT, "crash", "new-key", val));
}

static void sc_overwrite_setup(struct scenario *sc)
{
	static char v[3][201], o[205];

	/* "crash"+"victimN"+200 and "crash"+"ov"+204 bytes: one size class */
	for (int i = 0; i < 3; i++) {
		memset(v[i], 'a' + i, 200);
		v[i][200] = 0;
	}
	memset(o, 'o', 204);
	o[204] = 0;
	cr_assert_eq(mc_state_class(5 + 7 + 200), mc_state_class(5 + 2 + 204));
	OK_PUT("crash", "ov", o);
	OK_PUT("crash", "victim1", v[0]);
	OK_PUT("crash", "victim2", v[1]);
	OK_PUT("crash", "victim1", "short");    /* frees a block of the class */
	OK_PUT("crash", "victim2", v[2] + 195); /* and another: a list of two */
	OK_PUT("crash", "other", "x");
	feed_drain();
	sc->seq = ++fseq;
	cr_assert_eq(mc_state_frame_begin(&w, SRC, sc->seq), 0);
	sc->k = 0;
}

static void sc_overwrite_op(struct scenario *sc)
{
	static char val[205];

	memset(val, 'Z', 204);
	apply_k(sc, MKS(PUT, "crash", "ov", val));
}

static void sc_incr_setup(struct scenario *sc)
{
	Mcpcore__StateOp op;

	OK_PUT("crash", "x", "xx");
	sc->seq = ++fseq;
	cr_assert_eq(mc_state_frame_begin(&w, SRC, sc->seq), 0);
	sc->k = 0;
	apply_k(sc, MKS(PUT, "crash", "n", "41"));
	op = MKS(INCR, "crash", "n", NULL);
	op.delta = 1;
	sc->k = 1;
	apply_k(sc, op);                        /* "n" stays dirty: not queued again */
	sc->k = 2;
}

static void sc_incr_op(struct scenario *sc)
{
	Mcpcore__StateOp op = MKS(INCR, "crash", "n", NULL);

	op.delta = 100000;
	apply_k(sc, op);
}

static void sc_delete_setup(struct scenario *sc)
{
	OK_PUT("crash", "d1", "one");
	OK_PUT("crash", "d2", "two");
	feed_drain();
	sc->seq = ++fseq;
	cr_assert_eq(mc_state_frame_begin(&w, SRC, sc->seq), 0);
	sc->k = 0;
}

static void sc_delete_op(struct scenario *sc)
{
	apply_k(sc, MKS(DELETE, "crash", "d1", NULL));
}

/* Two keys of one home slot: the first's tombstone is not trailing. */
static char sc_hk[3][24];

static void sc_homed_keys(void)
{
	static char dummy[1][24];
	uint64_t home = 0;

	for (uint64_t cand = 1000; cand < w.mask; cand += 101)
		if (w.entries[cand].e_state == MC_STATE_EMPTY &&
		    w.entries[cand + 1].e_state == MC_STATE_EMPTY &&
		    w.entries[cand + 2].e_state == MC_STATE_EMPTY) {
			home = cand;
			break;
		}
	cr_assert_neq(home, 0);
	find_homed("crash", "h", home, 3, UINT64_MAX, 0, sc_hk, dummy);
}

static void sc_feedsent_setup(struct scenario *sc)
{
	(void)sc;
	sc_homed_keys();
	OK_PUT("crash", sc_hk[0], "first");
	OK_PUT("crash", sc_hk[1], "second");
	feed_drain();
	cr_assert_eq(del("crash", sc_hk[0]).status, ST(OK));
	cr_assert_eq(mc_state_feed_pending(&w), 1);
}

static void sc_feedsent_op(struct scenario *sc)
{
	(void)sc;
	mc_state_feed_sent(&w, 1);
}

static void sc_reuse_setup(struct scenario *sc)
{
	sc_homed_keys();
	OK_PUT("crash", sc_hk[0], "first");
	OK_PUT("crash", sc_hk[1], "second");
	cr_assert_eq(del("crash", sc_hk[0]).status, ST(OK));
	feed_drain();                           /* a key-less tombstone, reusable */
	cr_assert_eq(stats().tombstones, 1);
	sc->seq = ++fseq;
	cr_assert_eq(mc_state_frame_begin(&w, SRC, sc->seq), 0);
	sc->k = 0;
}

static void sc_reuse_op(struct scenario *sc)
{
	apply_k(sc, MKS(PUT, "crash", sc_hk[2], "third"));
}

static void sc_sweep_setup(struct scenario *sc)
{
	Mcpcore__StateOp op = MKS(PUT, "crash", "ttl", "short-lived");

	op.ttl_ms = 1000;
	cr_assert_eq(apply_at(&op, sc->now - 10000000000ULL).status, ST(OK));
	OK_PUT("crash", "stays", "s");
	feed_drain();
}

static void sc_sweep_op(struct scenario *sc)
{
	mc_state_sweep(&w, sc->now, w.mask + 1);
}

/* Rebuild, from S0, the shared state of a writer that died after `upto`. */
static void simulate_crash(const struct scenario *sc, enum crash_step upto)
{
	const struct mc_state_intent *I = &sc->s1.intent;
	struct mc_state_intent *in = &T->st_intent;
	const struct mc_state_ctl *c0 = snap_ctl(&sc->s0), *c1 = snap_ctl(&sc->s1);
	struct mc_state_entry *e = &w.entries[I->in_idx];
	uint64_t size = mc_state_class_size(I->in_class);
	uint64_t blen = (uint64_t)I->in_entry.e_nslen + I->in_entry.e_keylen + I->in_entry.e_vlen;
	bool feed = c1->sc_feed_tail != c0->sc_feed_tail;

	snap_restore(&sc->s0);
	for (int s = CS_ALLOC_INTENT_OPEN; s <= (int)upto; s++) {
		if (!sc->alloc && s < CS_FEED_MARK)
			continue;
		switch ((enum crash_step)s) {
		case CS_ALLOC_INTENT_OPEN:
			in->in_seq++;
			in->in_blob = I->in_blob;
			in->in_class = I->in_class;
			in->in_bump = I->in_bump;
			in->in_next = I->in_next;
			in->in_free_before = I->in_free_before;
			in->in_top_before = I->in_top_before;
			break;
		case CS_ALLOC_PHASE:
			in->in_phase = MC_STATE_ALLOCATING;
			break;
		case CS_ALLOC_CLOSED:
			in->in_seq++;
			break;
		case CS_ALLOC_POP_HALF:
			if (I->in_bump)
				T->st_arena_top += size;
			else
				T->st_free[I->in_class] = I->in_next;
			break;
		case CS_ALLOC_POP_DONE:
			if (!I->in_bump)
				T->st_arena_free -= size;
			break;
		case CS_FILL_PHASE:
			in->in_seq++;
			in->in_phase = MC_STATE_FILLING;
			break;
		case CS_FILL_CLOSED:
			in->in_seq++;
			break;
		case CS_FILL_HALF:
			memcpy(w.arena + I->in_blob, snap_arena(&sc->s1) + I->in_blob, blen / 2 + 1);
			break;
		case CS_FILL_DONE:
			memcpy(w.arena + I->in_blob, snap_arena(&sc->s1) + I->in_blob, blen);
			break;
		case CS_FEED_MARK:
			if (feed) {
				w.ctl->sc_feed[c0->sc_feed_tail % w.ctl->sc_feed_cap] =
				    c1->sc_feed[c0->sc_feed_tail % w.ctl->sc_feed_cap];
				w.ctl->sc_feed_tail = c0->sc_feed_tail + 1;
			}
			break;
		case CS_COMMIT_INTENT_HALF:
			in->in_seq++;
			in->in_idx = I->in_idx;
			in->in_has_entry = I->in_has_entry;
			memcpy(&in->in_entry, &I->in_entry, sizeof(in->in_entry) / 2);
			break;
		case CS_COMMIT_PHASE: {
			uint32_t seq = in->in_seq, phase = in->in_phase;
			uint64_t blob = in->in_blob, next = in->in_next, fb = in->in_free_before;
			uint64_t tb = in->in_top_before;
			uint32_t cls = in->in_class, bump = in->in_bump;

			*in = *I;               /* every commit field */
			in->in_seq = seq;
			in->in_phase = phase;
			in->in_blob = blob;     /* alloc fields: untouched by a commit */
			in->in_next = next;
			in->in_free_before = fb;
			in->in_top_before = tb;
			in->in_class = cls;
			in->in_bump = bump;
			in->in_phase = MC_STATE_COMMITTING;
			break;
		}
		case CS_COMMIT_CLOSED:
			in->in_seq++;
			break;
		case CS_ENTRY_ODD:
			if (I->in_has_entry)
				e->e_seq++;
			break;
		case CS_ENTRY_HALF:
			if (I->in_has_entry)
				memcpy((uint8_t *)e + 4, (const uint8_t *)&I->in_entry + 4, 30);
			break;
		case CS_ENTRY_COPIED:
			if (I->in_has_entry)
				memcpy((uint8_t *)e + 4, (const uint8_t *)&I->in_entry + 4, 60);
			break;
		case CS_ENTRY_EVEN:
			if (I->in_has_entry)
				e->e_seq++;
			break;
		case CS_FREE_LINK:
			if (I->in_old_blob)
				memcpy(w.arena + I->in_old_blob, &T->st_free[I->in_old_class], 8);
			break;
		case CS_FREE_DONE:
			if (I->in_old_blob)
				T->st_free[I->in_old_class] = I->in_old_blob;
			break;
		case CS_COUNTERS_HALF:
			T->st_live = I->in_live;
			T->st_tombstones = I->in_tombs;
			T->st_version = I->in_version;
			break;
		case CS_COUNTERS_DONE:
			T->st_arena_live = I->in_arena_live;
			T->st_arena_free = I->in_arena_free;
			T->st_writes = I->in_writes;
			T->st_expired = I->in_expired;
			break;
		case CS_FRAME_RESULT:
			if (I->in_frame_done) {
				w.ctl->sc_cur_res[I->in_frame_done - 1].status = I->in_res_status;
				w.ctl->sc_cur_res[I->in_frame_done - 1].version = I->in_res_version;
			}
			break;
		case CS_FRAME_DONE:
			if (I->in_frame_done)
				w.ctl->sc_cur_done = I->in_frame_done;
			break;
		case CS_IDLE_OPEN:
			in->in_seq++;
			in->in_phase = MC_STATE_IDLE;
			break;
		case CS_IDLE_CLOSED:
			in->in_seq++;
			break;
		default:
			break;
		}
	}
}

/* The free list of class c as a sequence of offsets (at most max). */
static size_t free_list(const struct mc_state_table *t, const uint8_t *arena, unsigned c,
    uint64_t *out, size_t max)
{
	size_t n = 0;

	for (uint64_t b = t->st_free[c]; b != 0 && n < max; n++) {
		out[n] = b;
		memcpy(&b, arena + b, sizeof(b));
	}
	return n;
}

/* The live table equals snapshot x in every entry, counter and free list. */
static void expect_table_is(const struct snap *x, const char *what)
{
	const struct mc_state_table *b = snap_table(x);
	const struct mc_state_entry *xe = snap_entries(x);
	static uint64_t la[4096], lb[4096];

	cr_assert_eq(T->st_live, b->st_live, "%s: st_live %" PRIu64 ", want %" PRIu64, what,
	    T->st_live, b->st_live);
	cr_assert_eq(T->st_tombstones, b->st_tombstones, "%s: st_tombstones", what);
	cr_assert_eq(T->st_version, b->st_version, "%s: st_version", what);
	cr_assert_eq(T->st_arena_top, b->st_arena_top, "%s: st_arena_top %" PRIu64 ", want %" PRIu64,
	    what, T->st_arena_top, b->st_arena_top);
	cr_assert_eq(T->st_arena_live, b->st_arena_live, "%s: st_arena_live", what);
	cr_assert_eq(T->st_arena_free, b->st_arena_free, "%s: st_arena_free %" PRIu64 ", want %"
	    PRIu64, what, T->st_arena_free, b->st_arena_free);
	cr_assert_eq(T->st_writes, b->st_writes, "%s: st_writes", what);
	cr_assert_eq(T->st_expired, b->st_expired, "%s: st_expired", what);
	for (unsigned c = 0; c < MC_STATE_NCLASSES; c++) {
		size_t na = free_list(T, w.arena, c, la, 4096);
		size_t nb = free_list(b, snap_arena(x), c, lb, 4096);

		cr_assert_eq(na, nb, "%s: free list %u has %zu blocks, want %zu", what, c, na, nb);
		cr_assert_eq(memcmp(la, lb, na * sizeof(la[0])), 0, "%s: free list %u differs", what, c);
	}
	/* e_seq is only a lock counter: a commit finished twice moves it on by 2 more */
	for (uint64_t i = 0; i <= w.mask; i++)
		if (memcmp((const uint8_t *)&w.entries[i] + 4, (const uint8_t *)&xe[i] + 4,
		    sizeof(xe[i]) - 4) != 0 || (w.entries[i].e_seq & 1))
			cr_assert_fail("%s: entry %" PRIu64 " differs: state %u/%u seq %u/%u blob %" PRIu64
			    "/%" PRIu64 " version %" PRIu64 "/%" PRIu64 " dirty %u/%u", what, i,
			    w.entries[i].e_state, xe[i].e_state, w.entries[i].e_seq, xe[i].e_seq,
			    w.entries[i].e_blob, xe[i].e_blob, w.entries[i].e_version, xe[i].e_version,
			    w.entries[i].e_dirty, xe[i].e_dirty);
}

static void expect_visible(const struct vis *want, const char *what)
{
	struct vis v;
	char why[256];

	vis_take(&seg, &v);
	cr_assert(vis_eq(&v, want, why, sizeof(why)), "%s: readers see: %s", what, why);
}

static void scenario_record(struct scenario *sc)
{
	table_up();
	sc->now = mc_wall_ns();
	sc->setup(sc);
	table_ok("scenario setup");
	snap_take(&sc->s0);
	vis_take(&seg, &sc->v0);
	sc->op(sc);
	snap_take(&sc->s1);
	vis_take(&seg, &sc->v1);
	table_ok("scenario op");
	if (!sc->invisible) {
		char why[256];

		cr_assert_not(vis_eq(&sc->v0, &sc->v1, why, sizeof(why)), "%s: the op changed nothing "
		    "readers can see", sc->name);
	}
	cr_assert_eq(sc->s1.intent.in_phase, MC_STATE_IDLE);
	if (sc->alloc && sc->bump >= 0)
		cr_assert_eq(sc->s1.intent.in_bump, (uint32_t)sc->bump, "%s: the block came from %s",
		    sc->name, sc->s1.intent.in_bump ? "the top" : "a free list");
}

static void run_scenario(struct scenario *sc)
{
	char what[200];

	scenario_record(sc);
	for (int s = CS_NONE; s < CS_NSTEPS; s++) {
		bool committed = s >= CS_COMMIT_PHASE;
		const struct snap *want = committed ? &sc->s1 : &sc->s0;
		const struct mc_state_ctl *c0 = snap_ctl(&sc->s0);

		if (!sc->alloc && s > CS_NONE && s < CS_FEED_MARK)
			continue;
		snprintf(what, sizeof(what), "%s, crash after '%s'", sc->name, cs_name[s]);
		simulate_crash(sc, (enum crash_step)s);
		writer_open();                  /* the successor: recovers */
		expect_table_is(want, what);
		expect_visible(committed ? &sc->v1 : &sc->v0, what);
		if (sc->op == sc_feedsent_op) {
			/* the feed head moves after the loop: the entry is sent again, harmlessly */
			table_ok(what);
			feed_drain();
			table_ok(what);
			expect_table_is(&sc->s1, what);
			continue;
		}
		table_ok(what);
		if (committed) {
			cr_assert_eq(w.ctl->sc_feed_tail, snap_ctl(&sc->s1)->sc_feed_tail, "%s: feed", what);
		} else {
			cr_assert(w.ctl->sc_feed_tail == c0->sc_feed_tail ||
			    w.ctl->sc_feed_tail == c0->sc_feed_tail + 1, "%s: feed tail", what);
		}
		if (sc->frame) {
			uint32_t done = mc_state_frame_begin(&w, SRC, sc->seq);

			cr_assert_eq(done, committed ? sc->k + 1 : sc->k, "%s: frame has %u ops done", what,
			    done);
			if (committed) {
				struct mc_state_op_result rec = mc_state_frame_result(&w, sc->k);

				cr_assert_eq(rec.status, ST(OK), "%s", what);
				cr_assert_eq(rec.version, sc->s1.intent.in_res_version, "%s", what);
			}
		}
		if (!committed) {
			/* the op, applied again, gives exactly what it gave the first time */
			sc->op(sc);
			snprintf(what, sizeof(what), "%s, crash after '%s', op redone", sc->name, cs_name[s]);
			expect_table_is(&sc->s1, what);
			expect_visible(&sc->v1, what);
			table_ok(what);
		}
	}
	snap_free(&sc->s0);
	snap_free(&sc->s1);
	mc_seg_destroy(&seg);
}

Test(state, crash_recovery_put_new_key_from_the_top)
{
	struct scenario sc = { .name = "PUT new key (bump)", .alloc = true, .bump = 1, .frame = true,
	    .setup = sc_put_bump_setup, .op = sc_put_bump_op };

	run_scenario(&sc);
}

Test(state, crash_recovery_overwrite_from_a_free_list)
{
	struct scenario sc = { .name = "PUT overwrite (free list)", .alloc = true, .bump = 0, .frame = true,
	    .setup = sc_overwrite_setup, .op = sc_overwrite_op };

	run_scenario(&sc);
}

Test(state, crash_recovery_incr_in_a_frame)
{
	struct scenario sc = { .name = "INCR op 2", .alloc = true, .bump = 0, .frame = true,
	    .setup = sc_incr_setup, .op = sc_incr_op };

	run_scenario(&sc);
}

Test(state, crash_recovery_delete)
{
	struct scenario sc = { .name = "DELETE", .alloc = false, .frame = true,
	    .setup = sc_delete_setup, .op = sc_delete_op };

	run_scenario(&sc);
}

Test(state, crash_recovery_feed_sent_frees_key_bytes)
{
	struct scenario sc = { .name = "feed sent (free key bytes)", .alloc = false, .invisible = true,
	    .setup = sc_feedsent_setup, .op = sc_feedsent_op };

	run_scenario(&sc);
}

Test(state, crash_recovery_put_into_a_tombstone)
{
	struct scenario sc = { .name = "PUT into a tombstone", .alloc = true, .bump = -1, .frame = true,
	    .setup = sc_reuse_setup, .op = sc_reuse_op };

	run_scenario(&sc);
}

Test(state, crash_recovery_sweep_expire)
{
	struct scenario sc = { .name = "TTL sweep", .alloc = false, .invisible = true,
	    .setup = sc_sweep_setup, .op = sc_sweep_op };

	run_scenario(&sc);
}

/*
 * A reader finding an entry locked by a dead writer reads the intent: the
 * new value, at once.  Children attach read-only (a reader that tried to
 * write would fault) and run under alarm() (a reader that waited would be
 * killed).
 */
static void reader_sees(const struct vis *want, const char *key, const void *val, size_t vlen,
    uint64_t version, const char *what)
{
	pid_t c = ut_fork();

	if (c == 0) {
		struct mc_seg ro;
		struct mc_state_value v;
		struct vis got;
		char why[256];
		static uint8_t buf[1024];
		int rc;

		alarm(30);
		rc = mc_seg_attach(&ro, cfg.instance, true, err, sizeof(err));
		UT_CHK(rc == 0, "attach: %s", err);
		for (int rep = 0; rep < 1000; rep++) {
			rc = mc_state_get(&ro, "crash", 5, key, strlen(key), buf, sizeof(buf), &v);
			if (val == NULL) {
				UT_CHK(rc == -ENOENT, "%s: get %s: %d, want -ENOENT", what, key, rc);
			} else {
				UT_CHK(rc == 0, "%s: get %s: %d", what, key, rc);
				UT_CHK(v.len == vlen && memcmp(buf, val, vlen) == 0, "%s: get %s: '%.*s'", what,
				    key, (int)v.len, buf);
				UT_CHK(v.version == version, "%s: version %" PRIu64 ", want %" PRIu64, what,
				    v.version, version);
			}
		}
		vis_take(&ro, &got);
		UT_CHK(vis_eq(&got, want, why, sizeof(why)), "%s: scan: %s", what, why);
		_exit(0);
	}
	ut_wait_ok(c, what);
}

static const struct vis_item *vis_find(const struct vis *v, const char *key)
{
	for (size_t i = 0; i < v->n; i++)
		if (v->it[i].klen == strlen(key) && memcmp(v->it[i].key, key, v->it[i].klen) == 0)
			return &v->it[i];
	return NULL;
}

Test(state, readers_use_the_intent_while_a_dead_writer_holds_an_entry)
{
	static const enum crash_step odd[] = { CS_ENTRY_ODD, CS_ENTRY_HALF, CS_ENTRY_COPIED };
	struct scenario ow = { .name = "overwrite", .alloc = true, .bump = 0, .frame = true,
	    .setup = sc_overwrite_setup, .op = sc_overwrite_op };
	struct scenario dl = { .name = "delete", .alloc = false, .frame = true,
	    .setup = sc_delete_setup, .op = sc_delete_op };
	const struct vis_item *nv, *ov;
	char what[128];

	scenario_record(&ow);
	nv = vis_find(&ow.v1, "ov");
	ov = vis_find(&ow.v0, "ov");
	cr_assert(nv && ov);
	for (size_t i = 0; i < 3; i++) {
		simulate_crash(&ow, odd[i]);
		cr_assert_eq(w.entries[ow.s1.intent.in_idx].e_seq & 1, 1);
		snprintf(what, sizeof(what), "overwrite, crash after '%s'", cs_name[odd[i]]);
		reader_sees(&ow.v1, "ov", nv->val, nv->vlen, nv->version, what);
		reader_sees(&ow.v1, "other", "x", 1, vis_find(&ow.v1, "other")->version, what);
	}
	/* committed intent, entry not yet locked: readers still read the entry */
	simulate_crash(&ow, CS_COMMIT_CLOSED);
	reader_sees(&ow.v0, "ov", ov->val, ov->vlen, ov->version, "overwrite, entry not yet locked");
	/* and the successor makes it final */
	simulate_crash(&ow, CS_ENTRY_HALF);
	writer_open();
	expect_table_is(&ow.s1, "overwrite recovered");
	table_ok("overwrite recovered");
	snap_free(&ow.s0);
	snap_free(&ow.s1);
	mc_seg_destroy(&seg);

	scenario_record(&dl);
	for (size_t i = 0; i < 3; i++) {
		simulate_crash(&dl, odd[i]);
		snprintf(what, sizeof(what), "delete, crash after '%s'", cs_name[odd[i]]);
		reader_sees(&dl.v1, "d1", NULL, 0, 0, what);
		reader_sees(&dl.v1, "d2", "two", 3, vis_find(&dl.v1, "d2")->version, what);
	}
	snap_free(&dl.s0);
	snap_free(&dl.s1);
	mc_seg_destroy(&seg);
}

/* ------------------------------------------------------------------ */
/* Crash recovery under SIGKILL at random instants                     */

#define FZ_KEYS       40
#define FZ_COUNTERS   8               /* keys 0..7: INCR / DELETE only */
#define FZ_OPS        8               /* per frame */
#define FZ_SEQ0       1000000         /* frame f is (SRC, FZ_SEQ0 + f) */

struct fz_key {
	bool present;
	uint64_t version;
	uint64_t opi;                   /* op that wrote the value (PUT/CAS) */
	int64_t number;                 /* counters */
};

struct fz_model {
	struct fz_key k[FZ_KEYS];
	uint64_t frames;                /* frames applied to the model */
};

struct fz_shared {
	uint64_t frames_done;           /* frames ended ("released") by the writer */
};

static uint64_t fz_base;

static uint64_t fz_now(uint64_t opi)
{
	return fz_base + opi * 1000;
}

static size_t fz_value(uint64_t opi, uint8_t *buf)
{
	size_t len = 1 + ut_mix64(opi * 3 + 1) % 1500;

	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(ut_mix64(opi ^ (i << 40)) >> 7);
	return len;
}

static void fz_keyname(unsigned k, char *buf)
{
	snprintf(buf, 16, "fz%02u", k);
}

/* Op k of frame f, given the model before it; the model updated, the expected result out. */
static Mcpcore__StateOp fz_op(struct fz_model *m, uint64_t f, uint32_t k, uint8_t *vbuf,
    char *kbuf, uint32_t *want_status, uint64_t *want_version)
{
	uint64_t opi = f * FZ_OPS + k, r = ut_mix64(opi ^ 0xfeedULL), ver = fz_now(opi) / 1000;
	unsigned key = (unsigned)(r % FZ_KEYS), what = (unsigned)(r >> 20) % 10;
	struct fz_key *s = &m->k[key];
	Mcpcore__StateOp op;

	fz_keyname(key, kbuf);
	*want_version = 0;
	if (key < FZ_COUNTERS) {
		if (what < 2) {
			op = mk(K(DELETE), "fuzz", 4, kbuf, strlen(kbuf), NULL, 0);
			*want_status = s->present ? ST(OK) : ST(NOT_FOUND);
			if (s->present) {
				s->present = false;
				s->version = *want_version = ver;
			}
		} else {
			op = mk(K(INCR), "fuzz", 4, kbuf, strlen(kbuf), NULL, 0);
			op.delta = (int64_t)(r >> 40) % 2001 - 1000;
			s->number = (s->present ? s->number : 0) + op.delta;
			s->present = true;
			s->version = *want_version = ver;
			*want_status = ST(OK);
		}
		return op;
	}
	if (what < 5) {
		op = mk(K(PUT), "fuzz", 4, kbuf, strlen(kbuf), vbuf, fz_value(opi, vbuf));
	} else if (what < 7) {
		op = mk(K(DELETE), "fuzz", 4, kbuf, strlen(kbuf), NULL, 0);
		*want_status = s->present ? ST(OK) : ST(NOT_FOUND);
		if (s->present) {
			s->present = false;
			s->version = *want_version = ver;
		}
		return op;
	} else {
		op = mk(K(CAS), "fuzz", 4, kbuf, strlen(kbuf), vbuf, fz_value(opi, vbuf));
		op.expected_version = s->present ? s->version : 0;
		if (what == 9)
			op.expected_version += 1;       /* wrong */
		if (what == 9) {
			*want_status = ST(VERSION_MISMATCH);
			*want_version = s->present ? s->version : 0;
			return op;
		}
	}
	s->present = true;
	s->version = *want_version = ver;
	s->opi = opi;
	*want_status = ST(OK);
	return op;
}

/* Child: the state worker, applying frames from `from` on until killed. */
static void fz_writer(struct fz_model *m, struct fz_shared *sh, uint64_t from)
{
	struct mc_state_writer cw;
	static uint8_t vbuf[2048];
	char kbuf[16];

	UT_CHK(mc_state_writer_open(&seg, &cw, err, sizeof(err)) == 0, "%s", err);
	for (uint64_t f = from;; f++) {
		uint32_t done = mc_state_frame_begin(&cw, SRC, FZ_SEQ0 + f);

		UT_CHK(done == 0, "new frame %" PRIu64 " has %u ops done", f, done);
		for (uint32_t k = 0; k < FZ_OPS; k++) {
			uint32_t ws;
			uint64_t wv;
			Mcpcore__StateOp op = fz_op(m, f, k, vbuf, kbuf, &ws, &wv);
			struct mc_state_result res;

			mc_state_apply(&cw, &op, fz_now(f * FZ_OPS + k), k, &res);
			UT_CHK(res.status == ws && res.version == wv, "frame %" PRIu64 " op %u: %u v%" PRIu64
			    ", want %u v%" PRIu64, f, k, res.status, res.version, ws, wv);
		}
		mc_state_frame_end(&cw, SRC, FZ_SEQ0 + f);
		ck_pr_store_64(&sh->frames_done, f + 1);        /* the frame is released */
		if (f % 3 == 2)
			mc_state_feed_sent(&cw, mc_state_feed_pending(&cw));
	}
}

static void fz_check_model(const struct fz_model *m, const char *what)
{
	static uint8_t vbuf[2048];
	char kbuf[16], num[32];

	for (unsigned key = 0; key < FZ_KEYS; key++) {
		const struct fz_key *s = &m->k[key];
		struct mc_state_value v;
		int rc;

		fz_keyname(key, kbuf);
		rc = get("fuzz", kbuf, &v);
		if (!s->present) {
			cr_assert_eq(rc, -ENOENT, "%s: key %s: %d, want absent", what, kbuf, rc);
			continue;
		}
		cr_assert_eq(rc, 0, "%s: key %s: %d", what, kbuf, rc);
		cr_assert_eq(v.version, s->version, "%s: key %s: version %" PRIu64 ", want %" PRIu64,
		    what, kbuf, v.version, s->version);
		if (key < FZ_COUNTERS) {
			snprintf(num, sizeof(num), "%" PRId64, s->number);
			cr_assert(v.len == strlen(num) && memcmp(gbuf, num, v.len) == 0,
			    "%s: counter %s is '%.*s', want %s (an INCR applied twice or lost?)", what,
			    kbuf, (int)v.len, gbuf, num);
		} else {
			size_t len = fz_value(s->opi, vbuf);

			cr_assert(v.len == len && memcmp(gbuf, vbuf, len) == 0,
			    "%s: key %s has the wrong value", what, kbuf);
		}
	}
}

Test(state, sigkill_fuzz_recovery_and_frame_replay, .timeout = 240)
{
	struct fz_shared *sh;
	struct fz_model *m;
	static uint8_t vbuf[2048];
	char kbuf[16], what[96];
#ifdef __SANITIZE_ADDRESS__
	int iters = 50, killed_mid = 0;        /* fork is slow with ASan's shadow memory */
#else
	int iters = 120, killed_mid = 0;
#endif

	table_up();
	fz_base = mc_wall_ns();
	sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(sh, MAP_FAILED);
	m = calloc(1, sizeof(*m));
	cr_assert_not_null(m);
	for (int it = 0; it < iters; it++) {
		uint64_t start = m->frames, f, deadline;
		uint32_t done;
		pid_t c;
		int st;

		ck_pr_store_64(&sh->frames_done, start);
		c = ut_fork();
		if (c == 0)
			fz_writer(m, sh, start);        /* never returns */
		/* let it get going, then kill it at a random instant */
		deadline = mc_now_ns() + 60000000000ULL;
		while (ck_pr_load_64(&sh->frames_done) < start + 1 + (uint64_t)(it % 4)) {
			cr_assert_lt(mc_now_ns(), deadline, "the writer child makes no progress");
			if (waitpid(c, &st, WNOHANG) == c)
				cr_assert_fail("writer child died early: status %x", st);
			sched_yield();
		}
		sleep_us((long)(ut_mix64((uint64_t)it) % 1500));
		kill(c, SIGKILL);
		st = ut_wait(c);
		cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "writer child: status %x "
		    "(a failed check exits 1)", st);

		/* the successor */
		writer_open();
		f = ck_pr_load_64(&sh->frames_done);
		cr_assert_geq(f, start + 1);
		/* frames the writer released are in the model for good */
		while (m->frames < f) {
			for (uint32_t k = 0; k < FZ_OPS; k++) {
				uint32_t ws;
				uint64_t wv;

				fz_op(m, m->frames, k, vbuf, kbuf, &ws, &wv);
			}
			m->frames++;
		}
		snprintf(what, sizeof(what), "iteration %d, before resuming frame %" PRIu64, it, f);
		table_ok(what);
		/* the frame it was applying comes again: resume after its last applied op */
		done = mc_state_frame_begin(&w, SRC, FZ_SEQ0 + f);
		cr_assert_leq(done, FZ_OPS);
		if (done > 0 && done < FZ_OPS)
			killed_mid++;
		for (uint32_t k = 0; k < FZ_OPS; k++) {
			uint32_t ws;
			uint64_t wv;
			Mcpcore__StateOp op = fz_op(m, f, k, vbuf, kbuf, &ws, &wv);

			if (k < done) {
				struct mc_state_op_result rec = mc_state_frame_result(&w, k);

				cr_assert(rec.status == ws && rec.version == wv, "iteration %d: frame %" PRIu64
				    " op %u recorded %u v%" PRIu64 ", want %u v%" PRIu64, it, f, k, rec.status,
				    rec.version, ws, wv);
			} else {
				struct mc_state_result res;

				mc_state_apply(&w, &op, fz_now(f * FZ_OPS + k), k, &res);
				cr_assert(res.status == ws && res.version == wv, "iteration %d: frame %" PRIu64
				    " op %u (resumed at %u): %u v%" PRIu64 ", want %u v%" PRIu64, it, f, k,
				    done, res.status, res.version, ws, wv);
			}
		}
		mc_state_frame_end(&w, SRC, FZ_SEQ0 + f);
		m->frames = f + 1;
		snprintf(what, sizeof(what), "iteration %d, frame %" PRIu64 " resumed at op %u", it, f,
		    done);
		fz_check_model(m, what);
		table_ok(what);
		if (it % 2)
			feed_drain();
		table_ok(what);
	}
	cr_log_info("sigkill fuzz: %d kills, %d in the middle of a frame, %" PRIu64 " frames",
	    iters, killed_mid, m->frames);
	cr_assert_gt(killed_mid, 0, "no kill landed in the middle of a frame: the test did not "
	    "exercise replay");
	free(m);
	munmap(sh, 4096);
	mc_seg_destroy(&seg);
}

/*
 * A split (a free block of a big class cut into pieces when the arena top
 * is used up) interrupted after each of its stores: the writer's successor
 * ends with exactly the pieces the finished split leaves, nothing lost or
 * listed twice, and the small write that needed the split then succeeds.
 */
Test(state, crash_recovery_split_of_a_big_free_block)
{
	static uint8_t big[4000];
	uint64_t s1_free[MC_STATE_NCLASSES], s0_free[MC_STATE_NCLASSES];
	uint64_t s0_arena_free, b, next;
	unsigned bigc = mc_state_class(5 + 3 + sizeof(big)), smallc = mc_state_class(5 + 5 + 1);
	struct mc_state_intent *in;

	table_up();
	memset(big, 'b', sizeof(big));
	cr_assert_eq(put_b("split", 5, "big", 3, big, sizeof(big)).status, ST(OK));
	cr_assert_eq(del("split", "big").status, ST(OK));
	feed_drain();
	cr_assert_neq(T->st_free[bigc], 0, "the big block is on its free list");
	/* the arena top is used up (shrink the arena to it): small writes must
	 * be served by a split */
	T->st_arena_size = T->st_arena_top;
	memcpy(s0_free, T->st_free, sizeof(s0_free));
	s0_arena_free = T->st_arena_free;
	b = T->st_free[bigc];
	memcpy(&next, region(MC_REGION_SHARED_STATE_CACHE) + (T->st_arena_off -
	    seg.hdr->sh_regions[MC_REGION_SHARED_STATE_CACHE].rg_offset) + b, sizeof(next));
	/* the real thing, to learn the lists a finished split leaves */
	cr_assert_eq(put("split", "small", "x").status, ST(OK));
	cr_assert_eq(T->st_intent.in_phase, MC_STATE_IDLE);
	memcpy(s1_free, T->st_free, sizeof(s1_free));
	cr_assert_eq(s1_free[bigc], next, "the big block left its list");
	table_ok("split done");
	uint64_t pieces = T->st_intent.in_split_done;

	cr_assert_geq(pieces, 2);
	/* replay: crash after the pop and after each piece's push */
	for (uint64_t done = 0; done <= pieces; done++) {
		bool popped;

		for (int p = 0; p < 2; p++) {
			popped = p == 1;
			if (!popped && done > 0)
				continue;       /* pieces are pushed only after the pop */
			/* rebuild: undo the small put, restore S0's lists, redo the
			 * first `done` pushes exactly as the writer does them */
			cr_assert_eq(del("split", "small").status, ST(OK));
			feed_drain();
			memcpy(T->st_free, s0_free, sizeof(s0_free));
			T->st_arena_free = s0_arena_free;
			in = &T->st_intent;
			in->in_blob = b;
			in->in_class = bigc;
			in->in_next = next;
			in->in_split_target = smallc;
			in->in_split_done = 0;
			in->in_phase = MC_STATE_SPLITTING;
			if (popped)
				T->st_free[bigc] = next;
			{
				/* the first `done` pieces, pushed with their real order */
				uint64_t total = mc_state_class_size(bigc), off = 0;

				for (uint64_t i = 0; i < done; i++) {
					unsigned c = i == 0 ? smallc : mc_state_class(total - off);
					uint64_t *nxt;

					if (i > 0 && mc_state_class_size(c) > total - off)
						c--;
					nxt = (uint64_t *)(region(MC_REGION_SHARED_STATE_CACHE) +
					    (T->st_arena_off -
					    seg.hdr->sh_regions[MC_REGION_SHARED_STATE_CACHE].rg_offset) +
					    b + off);
					*nxt = T->st_free[c];
					T->st_free[c] = b + off;
					in->in_split_done = i + 1;
					off += mc_state_class_size(c);
				}
			}
			writer_open();          /* the successor recovers */
			cr_assert_eq(T->st_intent.in_phase, MC_STATE_IDLE);
			cr_assert_eq(T->st_arena_free, s0_arena_free, "free bytes changed by a split");
			table_ok("split recovered");
			cr_assert_eq(put("split", "small", "x").status, ST(OK),
			    "write after recovery (popped %d, %" PRIu64 " pieces)", popped, done);
			table_ok("split recovered, then written");
		}
	}
	mc_seg_destroy(&seg);
}
