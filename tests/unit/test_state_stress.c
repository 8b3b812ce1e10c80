/*
 * test_state_stress.c - torn-read stress for the state table's lock-free
 * readers (shm/state.c) against its single writer (workers/state/writer.c).
 *
 * One forked writer applies millions of PUTs (and some DELETEs, with the
 * change feed sent as the worker would, so freed blocks are reused at
 * once) to a few hundred keys, many of them sharing home slots (long probe
 * chains).  Every value checks itself: a per-key counter that only grows,
 * the key's number, its own length, then bytes derived from the counter;
 * lengths vary over many size classes, so blocks move between free lists
 * and get reused by other keys while readers may still be copying them.
 * Two forked readers, each with its own read-only mapping, do millions of
 * mc_state_get (and some mc_state_scan) calls and fail on any value that
 * is not exactly one the writer wrote, or on a key whose counter or version
 * goes backwards.  Then the table must pass mc_state_check and hold each
 * key's last value.
 *
 * Instances are "utss-<pid>-<n>" from config/test.toml; /dev/shm is cleaned
 * by the fini hook or, if the test process dies, by a guardian child.
 */
#define _GNU_SOURCE

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
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
#include <unistd.h>

#include "mc_config.h"
#include "mc_layout.h"
#include "mc_seg.h"
#include "mc_state.h"
#include "state/mc_state_writer.h"
#include "mc_util.h"
#include "ut.h"

#ifndef MC_SOURCE_DIR
#error "MC_SOURCE_DIR must be defined to the repository root"
#endif

#define UT_TAG "ss"


/* ------------------------------------------------------------------ */

#define NKEYS      320
#define NREADERS   2
#define HOMES      32              /* keys 0..HOMES*8-1 share home slots, 8 per slot */
#ifdef __SANITIZE_ADDRESS__
#define MIN_PUTS   1000000ULL
#define VMAX       800             /* 16..800 bytes: still 20 size classes */
#else
#define MIN_PUTS   3000000ULL
#define VMAX       1600
#endif
#define MIN_GETS   2500000ULL      /* per reader: 5,000,000 in all */
/* A hung run fails with a message before Criterion's timeout; the normal
 * run takes ~4 s (~15 s under ASan) on an idle 2-core box. */
#define TIME_CAP_NS 200000000000ULL

struct shared {
	uint64_t writer_ready;
	uint64_t puts, deletes;
	uint64_t readers_done;
	uint64_t last[NKEYS];           /* writer: last counter written per key */
	uint64_t deleted[NKEYS];        /* writer: the key's last op was a DELETE */
	struct {
		uint64_t gets, found, changes, scans, scanned;
	} r[NREADERS];
};

static char err[512];
static struct mc_config cfg;
static struct mc_layout lay;
static struct mc_seg seg;
static char keys[NKEYS][24];

static void seg_up(void)
{
	pid_t swept;
	int rc = mc_config_load(MC_SOURCE_DIR "/config/test.toml", &cfg, err, sizeof(err));

	cr_assert_eq(rc, 0, "config/test.toml: %s", err);
	ut_instance(cfg.instance, sizeof(cfg.instance));
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), 0, "%s", err);
	rc = mc_seg_create(&seg, &cfg, &lay, &swept, err, sizeof(err));
	cr_assert_eq(rc, 0, "mc_seg_create(%s): %d %s", cfg.instance, rc, err);
	ck_pr_store_32(&seg.hdr->sh_state, MC_SEG_READY);
}

/*
 * Key names: the first HOMES*8 come in groups of 8 that share one home
 * slot (the groups' homes 10 apart: with tombstones waiting for the feed,
 * neighbouring chains run into each other); the rest are plain.
 */
static void make_keys(uint64_t mask)
{
	unsigned n = 0;

	for (unsigned g = 0; g < HOMES; g++) {
		uint64_t home = (1000 + g * 10) & mask;
		unsigned got = 0;

		for (uint64_t c = 0; got < 8; c++) {
			char k[24];
			int len = snprintf(k, sizeof(k), "g%u-%" PRIu64, g, c);

			if ((mc_state_hash("stress", 6, k, (size_t)len) & mask) == home) {
				memcpy(keys[n++], k, sizeof(k));
				got++;
			}
		}
	}
	for (; n < NKEYS; n++)
		snprintf(keys[n], sizeof(keys[n]), "plain-%u", n);
}

/*
 * Value of counter c of key k: [0,8) c, [8,12) k, [12,16) length, then
 * 8-byte words c * A + i * B.  Length 16..VMAX, from c.
 */
static size_t make_value(uint64_t c, uint32_t k, uint8_t *buf)
{
	uint32_t len = 16 + (uint32_t)(ut_mix64(c) % (VMAX - 15));

	memcpy(buf, &c, 8);
	memcpy(buf + 8, &k, 4);
	memcpy(buf + 12, &len, 4);
	for (uint32_t i = 16; i < len; i += 8) {
		uint64_t word = c * 0x9e3779b97f4a7c15ULL + i * 0xd1b54a32d192ed03ULL;

		memcpy(buf + i, &word, len - i < 8 ? len - i : 8);
	}
	return len;
}

/* 0 if buf[0..len) is a value the writer made for key k; else a reason. */
static const char *check_value(const uint8_t *buf, size_t len, uint32_t k, uint64_t *counter)
{
	uint64_t c;
	uint32_t kk, l;

	if (len < 16 || len > VMAX)
		return "length out of range";
	memcpy(&c, buf, 8);
	memcpy(&kk, buf + 8, 4);
	memcpy(&l, buf + 12, 4);
	if (kk != k)
		return "value of another key";
	if (l != len)
		return "length field differs from the entry's length";
	if (16 + ut_mix64(c) % (VMAX - 15) != len)
		return "length does not belong to the counter";
	for (uint32_t i = 16; i < len; i += 8) {
		uint64_t word = c * 0x9e3779b97f4a7c15ULL + i * 0xd1b54a32d192ed03ULL, got = 0;
		uint32_t n = len - i < 8 ? len - i : 8;

		memcpy(&got, buf + i, n);
		if (n < 8)
			word &= (1ULL << (8 * n)) - 1;  /* little-endian: the low bytes come first */
		if (got != word)
			return "torn: pattern bytes from another write";
	}
	*counter = c;
	return NULL;
}

static void writer_proc(struct shared *sh)
{
	struct mc_state_writer w;
	static uint8_t val[VMAX];
	uint64_t counter = 0, seq = 0, start = mc_now_ns();

	UT_CHK(mc_state_writer_open(&seg, &w, err, sizeof(err)) == 0, "%s", err);
	ck_pr_store_64(&sh->writer_ready, 1);
	for (uint64_t i = 0;; i++) {
		if ((i & 1023) == 0) {
			if (ck_pr_load_64(&sh->readers_done) == NREADERS && sh->puts >= MIN_PUTS)
				break;
			UT_CHK(mc_now_ns() - start < TIME_CAP_NS, "time cap: %" PRIu64 " puts, readers done %"
			    PRIu64, sh->puts, ck_pr_load_64(&sh->readers_done));
		}
		if ((i & 63) == 0) {
			if (seq)
				mc_state_frame_end(&w, 9, seq);
			mc_state_frame_begin(&w, 9, ++seq);
		}
		{
			uint32_t k = (uint32_t)(ut_mix64(i) % NKEYS);
			bool del = (ut_mix64(i ^ 0x5a5a) & 31) == 0 && sh->last[k] != 0 && !sh->deleted[k];
			Mcpcore__StateOp op = MCPCORE__STATE_OP__INIT;
			struct mc_state_result res;

			op.ns.data = (uint8_t *)"stress";
			op.ns.len = 6;
			op.key.data = (uint8_t *)keys[k];
			op.key.len = strlen(keys[k]);
			if (del) {
				op.kind = MCPCORE__STATE_OP__KIND__DELETE;
			} else {
				op.kind = MCPCORE__STATE_OP__KIND__PUT;
				op.value.data = val;
				op.value.len = make_value(++counter, k, val);
			}
			mc_state_apply(&w, &op, mc_wall_ns(), (uint32_t)(i & 63), &res);
			UT_CHK(res.status == MCPCORE__STATE_RESULT__STATUS__OK, "op %" PRIu64 ": status %u (%s)",
			    i, res.status, res.error ? res.error : "");
			if (del) {
				sh->deleted[k] = 1;
				sh->deletes++;
			} else {
				sh->deleted[k] = 0;
				sh->last[k] = counter;
				sh->puts++;
			}
		}
		/* the worker sends the feed now and then: deleted keys' blocks go back */
		if ((i & 255) == 255)
			mc_state_feed_sent(&w, mc_state_feed_pending(&w));
	}
	mc_state_frame_end(&w, 9, seq);
	mc_state_feed_sent(&w, mc_state_feed_pending(&w));
	_exit(0);
}

struct scan_ctx {
	const char *bad;
	uint64_t items;
};

static int scan_cb(void *ctx, const struct mc_state_item *it)
{
	struct scan_ctx *s = ctx;
	uint64_t c;
	unsigned g;

	s->items++;
	/* keys "g<g>-..." belong to index g*8.. : find the exact one */
	if (it->keylen < 2 || it->key[0] != 'g' || sscanf((const char *)it->key + 1, "%u", &g) != 1 ||
	    g >= HOMES) {
		s->bad = "scan: unexpected key";
		return 1;
	}
	for (uint32_t k = g * 8; k < g * 8 + 8; k++)
		if (strlen(keys[k]) == it->keylen && memcmp(keys[k], it->key, it->keylen) == 0) {
			const char *why = check_value(it->value, it->vlen, k, &c);

			if (why != NULL || it->meta.len != it->vlen) {
				s->bad = why ? why : "scan: meta.len differs";
				return 1;
			}
			return 0;
		}
	s->bad = "scan: key not ours";
	return 1;
}

static void reader_proc(struct shared *sh, int id)
{
	struct mc_seg ro;
	static uint8_t buf[VMAX + 64];
	static uint64_t seen[NKEYS], seen_ver[NKEYS];
	uint64_t gets = 0, found = 0, changes = 0, scans = 0, scanned = 0, x = (uint64_t)id + 1;
	uint64_t start = mc_now_ns();

	UT_CHK(mc_seg_attach(&ro, cfg.instance, true, err, sizeof(err)) == 0, "%s", err);
	while (ck_pr_load_64(&sh->writer_ready) == 0) {
		UT_CHK(mc_now_ns() - start < TIME_CAP_NS, "the writer never started");
		sched_yield();
	}
	for (;;) {
		uint32_t k;
		struct mc_state_value v;
		int rc;

		if ((gets & 4095) == 0) {
			if (gets >= MIN_GETS && ck_pr_load_64(&sh->puts) >= MIN_PUTS)
				break;
			UT_CHK(mc_now_ns() - start < TIME_CAP_NS, "time cap: %" PRIu64 " gets", gets);
		}
		x = ut_mix64(x);
		k = (uint32_t)(x % NKEYS);
		rc = mc_state_get(&ro, "stress", 6, keys[k], strlen(keys[k]), buf, sizeof(buf), &v);
		gets++;
		if (rc == 0) {
			uint64_t c;
			const char *why = check_value(buf, v.len, k, &c);

			UT_CHK(why == NULL, "reader %d, get %" PRIu64 ", key %s, len %u: %s", id, gets,
			    keys[k], v.len, why);
			UT_CHK(c >= seen[k], "reader %d: key %s went back from counter %" PRIu64 " to %" PRIu64,
			    id, keys[k], seen[k], c);
			UT_CHK(v.version >= seen_ver[k], "reader %d: key %s version went back", id, keys[k]);
			UT_CHK((c > seen[k]) == (v.version > seen_ver[k]) || seen[k] == 0,
			    "reader %d: key %s: counter %" PRIu64 "->%" PRIu64 " but version %" PRIu64
			    "->%" PRIu64 " (value and version from different writes)", id, keys[k],
			    seen[k], c, seen_ver[k], v.version);
			if (c > seen[k])
				changes++;
			seen[k] = c;
			seen_ver[k] = v.version;
			found++;
		} else {
			UT_CHK(rc == -ENOENT, "reader %d: get %s: %d", id, keys[k], rc);
			/* a deleted key comes back only with a newer version */
		}
		if ((gets & 16383) == 0) {
			struct scan_ctx s = { 0 };
			long n = mc_state_scan(&ro, "stress", 6, "g", 1, scan_cb, &s);

			UT_CHK(s.bad == NULL, "reader %d: %s", id, s.bad);
			/* not atomic: a key deleted and re-inserted further down its chain
			 * meanwhile may be visited twice, so no upper bound */
			UT_CHK(n >= 0 && (uint64_t)n == s.items, "reader %d: scan returned %ld after %" PRIu64
			    " items", id, n, s.items);
			scans++;
			scanned += s.items;
		}
	}
	sh->r[id].gets = gets;
	sh->r[id].found = found;
	sh->r[id].changes = changes;
	sh->r[id].scans = scans;
	sh->r[id].scanned = scanned;
	ck_pr_inc_64(&sh->readers_done);
	_exit(0);
}

static void ut_init(void)
{
	ut_guard_start(UT_TAG);
}

TestSuite(state_stress, .init = ut_init, .fini = ut_fini, .timeout = 240);

Test(state_stress, readers_never_see_torn_or_older_values)
{
	struct mc_state_writer w;
	struct shared *sh;
	pid_t wr, rd[NREADERS];
	uint64_t total = 0, t0 = mc_now_ns();
	static uint8_t buf[VMAX + 64];
	char rep[512];
	int st;

	seg_up();
	cr_assert_eq(mc_state_writer_open(&seg, &w, err, sizeof(err)), 0, "%s", err);
	make_keys(w.mask);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(sh, MAP_FAILED);
	for (int i = 0; i < NREADERS; i++) {
		rd[i] = ut_fork();
		if (rd[i] == 0)
			reader_proc(sh, i);
	}
	wr = ut_fork();
	if (wr == 0)
		writer_proc(sh);
	/*
	 * A failing child exits 1: stop the others at once.  wait() cannot
	 * return the guardian (it lives as long as we do), only these three.
	 */
	for (int left = NREADERS + 1; left > 0; left--) {
		pid_t p;
		bool was_writer;

		do
			p = wait(&st);
		while (p < 0 && errno == EINTR);
		cr_assert_gt(p, 0, "wait: %s", strerror(errno));
		was_writer = p == wr;
		if (p == wr)
			wr = -1;
		for (int i = 0; i < NREADERS; i++)
			if (p == rd[i])
				rd[i] = -1;
		if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
			pid_t all[NREADERS + 1];

			all[0] = wr;
			memcpy(all + 1, rd, sizeof(rd));
			for (int i = 0; i <= NREADERS; i++)
				if (all[i] > 0) {
					kill(all[i], SIGKILL);
					waitpid(all[i], NULL, 0);
				}
			cr_assert_fail("%s %d %s %d", was_writer ? "writer" : "reader", (int)p,
			    WIFEXITED(st) ? "exited with" : "was killed by signal",
			    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		}
	}
	for (int i = 0; i < NREADERS; i++) {
		total += sh->r[i].gets;
		cr_log_info("reader %d: %" PRIu64 " gets, %" PRIu64 " found, %" PRIu64 " changes seen, %"
		    PRIu64 " scans (%" PRIu64 " items)", i, sh->r[i].gets, sh->r[i].found,
		    sh->r[i].changes, sh->r[i].scans, sh->r[i].scanned);
		/* the readers really ran against a moving table */
		cr_assert_gt(sh->r[i].changes, 10000, "reader %d saw only %" PRIu64 " changes", i,
		    sh->r[i].changes);
		cr_assert_gt(sh->r[i].found, sh->r[i].gets / 2);
		cr_assert_gt(sh->r[i].scans, 0);
	}
	cr_log_info("writer: %" PRIu64 " puts, %" PRIu64 " deletes; %.1f s", sh->puts, sh->deletes,
	    (double)(mc_now_ns() - t0) / 1e9);
	cr_assert_geq(total, NREADERS * MIN_GETS);
	cr_assert_geq(sh->puts, MIN_PUTS);

	cr_assert_eq(mc_state_check(&seg, rep, sizeof(rep)), 0, "mc_state_check: %s", rep);
	{
		struct mc_state_stats s;

		cr_assert_eq(mc_state_stats(&seg, &s), 0);
		cr_assert_eq(s.arena_live + s.arena_free + (s.arena_size - s.arena_top),
		    s.arena_size - MC_STATE_BLOCK_MIN, "arena bytes leaked");
	}
	for (uint32_t k = 0; k < NKEYS; k++) {
		struct mc_state_value v;
		uint64_t c;
		int rc = mc_state_get(&seg, "stress", 6, keys[k], strlen(keys[k]), buf, sizeof(buf), &v);

		if (sh->deleted[k] || sh->last[k] == 0) {
			cr_assert_eq(rc, -ENOENT, "key %s: %d", keys[k], rc);
			continue;
		}
		cr_assert_eq(rc, 0, "key %s: %d", keys[k], rc);
		cr_assert_null(check_value(buf, v.len, k, &c), "key %s", keys[k]);
		cr_assert_eq(c, sh->last[k], "key %s holds counter %" PRIu64 ", last written %" PRIu64,
		    keys[k], c, sh->last[k]);
	}
	munmap(sh, sizeof(*sh));
	mc_seg_destroy(&seg);
}
