/*
 * test_ring.c - unit tests for the descriptor rings (shm/ring.c, contract
 * in shm/mc_ring.h): SPSC order across processes, full/empty edges, the
 * consumer journal and its replay after a consumer restart, doorbells,
 * and the frame totals the monitor extends from the 32-bit cursors.
 *
 * The test process creates the segment (it is the supervisor); producers
 * and consumers are worker slots claimed by forked children or by extra
 * handles in the test process.  Rings used: STATE -> ROUTER.
 * Instances are "utring-<pid>-<n>"; /dev/shm is cleaned in the fini hook
 * and by a guardian child if the test process dies.
 */
#define _GNU_SOURCE

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mc_config.h"
#include "mc_layout.h"
#include "mc_ring.h"
#include "mc_seg.h"
#include "ut.h"

#ifndef MC_SOURCE_DIR
#error "MC_SOURCE_DIR must be defined to the repository root"
#endif

/* ------------------------------------------------------------------ */
/* Scaffolding (each test file carries its own copy)                   */

#define UT_TAG "ring"


static bool ut_put(int fd, uint64_t v)
{
	return write(fd, &v, sizeof(v)) == (ssize_t)sizeof(v);
}

static bool ut_get(int fd, uint64_t *v, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	size_t got = 0;

	while (got < sizeof(*v)) {
		int n = poll(&pfd, 1, timeout_ms);
		ssize_t r;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		r = read(fd, (char *)v + got, sizeof(*v) - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return true;
}

struct chan { int pc[2], cp[2]; };

static void chan_open(struct chan *c)
{
	cr_assert_eq(pipe2(c->pc, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(c->cp, O_CLOEXEC), 0);
}

static void chan_parent(struct chan *c)
{
	close(c->pc[0]);
	close(c->cp[1]);
}

static void chan_child(struct chan *c)
{
	close(c->pc[1]);
	close(c->cp[0]);
}

static uint64_t chan_get(struct chan *c, const char *what)
{
	uint64_t v = 0;

	cr_assert(ut_get(c->cp[0], &v, 60000), "no word from the child (%s)", what);
	return v;
}

static void chan_close(struct chan *c)
{
	close(c->pc[1]);
	close(c->cp[0]);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* Fixture                                                             */

#define PROD MC_WORKER_STATE
#define CONS MC_WORKER_ROUTER

static struct mc_config cfg;
static struct mc_layout lay;
static struct mc_seg sup;
static uint32_t ring;           /* PROD -> CONS */

static void up(void)
{
	int rc;

	ut_seg_create(&sup, &cfg, &lay);
	rc = mc_ring_index(&sup, PROD, CONS);
	cr_assert_geq(rc, 0);
	ring = (uint32_t)rc;
}

static void down(void)
{
	mc_seg_destroy(&sup);
}

/* A handle on the test segment holding worker slot `slot`. */
static void worker(struct mc_seg *s, unsigned slot)
{
	ut_worker(s, cfg.instance, slot);
	cr_assert_eq(s->slot, (int)slot);
}

/* Same, in a child (no Criterion asserts there). */
static void child_worker(struct mc_seg *s, unsigned slot)
{
	ut_child_worker(s, cfg.instance, slot);
}

static struct mc_desc D(uint64_t seq)
{
	return (struct mc_desc){ .d_off = seq * 32 + 7, .d_seq = seq };
}

static void put_range(struct mc_seg *p, uint64_t from, uint64_t to)
{
	for (uint64_t i = from; i < to; i++) {
		struct mc_desc d = D(i);

		cr_assert_eq(mc_ring_put(p, ring, &d), 0, "put %llu", (unsigned long long)i);
	}
}

static void take_expect(struct mc_seg *c, uint64_t seq)
{
	struct mc_desc d;
	int rc = mc_ring_take(c, ring, &d);

	cr_assert_eq(rc, 0, "take (expecting %llu): %d", (unsigned long long)seq, rc);
	cr_assert_eq(d.d_seq, seq, "took %llu, expected %llu", (unsigned long long)d.d_seq,
	    (unsigned long long)seq);
	cr_assert_eq(d.d_off, D(seq).d_off);
}

static void ut_init(void)
{
	ut_guard_start(UT_TAG);
}

TestSuite(ring, .init = ut_init, .fini = ut_fini, .timeout = 120);

/* ------------------------------------------------------------------ */

/*
 * Two processes, one ring, millions of descriptors: strict order, nothing
 * lost, nothing duplicated.  The consumer commits at odd intervals and
 * sleeps on its doorbell when the ring runs dry.
 */
#define STREAM_N 2000000ull

static int stream_producer(struct chan *ch)
{
	struct mc_seg s;
	uint64_t v;

	child_worker(&s, PROD);
	ut_put(ch->cp[1], 1);
	UT_CHK(ut_get(ch->pc[0], &v, 60000), "go");
	uint64_t deadline = now_ns() + 100ull * 1000000000ull;

	for (uint64_t i = 1; i <= STREAM_N; i++) {
		struct mc_desc d = D(i);

		while (mc_ring_put(&s, ring, &d) == -EAGAIN) {
			mc_ring_notify(&s, CONS);
			sched_yield();
			UT_CHK(now_ns() < deadline, "producer stuck at %llu", (unsigned long long)i);
		}
		if ((i & 63) == 0)
			mc_ring_notify(&s, CONS);
	}
	mc_ring_notify(&s, CONS);
	mc_seg_detach(&s);
	return 0;
}

static int stream_consumer(struct chan *ch)
{
	struct mc_seg s;
	uint64_t expect = 1, v, deadline;
	uint32_t since_commit = 0;
	struct mc_desc d;
	int rc;

	child_worker(&s, CONS);
	ut_put(ch->cp[1], 1);
	UT_CHK(ut_get(ch->pc[0], &v, 60000), "go");
	deadline = now_ns() + 100ull * 1000000000ull;
	while (expect <= STREAM_N) {
		rc = mc_ring_take(&s, ring, &d);
		if (rc == 0) {
			UT_CHK(d.d_seq == expect, "took %llu, expected %llu (lost or reordered)",
			    (unsigned long long)d.d_seq, (unsigned long long)expect);
			UT_CHK(d.d_off == D(expect).d_off, "torn descriptor at %llu",
			    (unsigned long long)expect);
			expect++;
			if (++since_commit >= 97 + (expect & 511)) {
				mc_ring_commit(&s, ring);
				since_commit = 0;
			}
			continue;
		}
		UT_CHK(rc == -EAGAIN, "take gave %d at %llu", rc, (unsigned long long)expect);
		mc_ring_commit(&s, ring);
		since_commit = 0;
		UT_CHK(now_ns() < deadline, "consumer timed out at %llu", (unsigned long long)expect);
		mc_ring_wait(&s, 20000, 200 * 1000000ull);
	}
	mc_ring_commit(&s, ring);
	/* nothing beyond the last one: no duplicate at the tail */
	UT_CHK(mc_ring_take(&s, ring, &d) == -EAGAIN, "extra entry %llu after the stream",
	    (unsigned long long)d.d_seq);
	UT_CHK(mc_ring_depth(&s, ring) == 0, "depth %u", mc_ring_depth(&s, ring));
	UT_CHK(!mc_ring_pending(&s), "pending after the stream");
	mc_seg_detach(&s);
	return 0;
}

Test(ring, two_process_stream_in_order)
{
	struct chan pc, cc;
	pid_t p, c;

	up();
	chan_open(&cc);
	c = ut_fork();
	if (c == 0) {
		chan_child(&cc);
		_exit(stream_consumer(&cc));
	}
	chan_parent(&cc);
	chan_open(&pc);
	p = ut_fork();
	if (p == 0) {
		chan_child(&pc);
		_exit(stream_producer(&pc));
	}
	chan_parent(&pc);
	cr_assert_eq(chan_get(&cc, "consumer ready"), 1);
	cr_assert_eq(chan_get(&pc, "producer ready"), 1);
	ut_put(cc.pc[1], 1);
	ut_put(pc.pc[1], 1);
	{
		pid_t kids[2] = { p, c };

		ut_wait_group(kids, 2, "producer/consumer");
	}
	chan_close(&pc);
	chan_close(&cc);
	cr_assert_eq(mc_ring_depth(&sup, ring), 0);
	cr_assert_eq(sup.rings[ring].r_jpos, sup.rings[ring].r_ck.c_head,
	    "journal window not closed after the final commit");
	cr_assert_eq(mc_ring_frames_put(&sup, ring), STREAM_N);
	cr_assert_eq(mc_ring_frames_taken(&sup, ring), STREAM_N);
	down();
}

/* Full and empty edges, in one process with two handles. */
Test(ring, capacity_and_empty_edges)
{
	struct mc_seg p, c;
	struct mc_desc d;
	uint32_t cap;

	up();
	worker(&p, PROD);
	worker(&c, CONS);
	cap = mc_ring_capacity(&p, ring);
	cr_assert_geq(cap, MC_RING_MIN_ENTRIES - 1);
	cr_assert_eq(cap, sup.hdr->sh_ring_entries - 1, "capacity %u of %u entries", cap,
	    sup.hdr->sh_ring_entries);

	cr_assert_eq(mc_ring_take(&c, ring, &d), -EAGAIN, "take on an empty ring");
	cr_assert_not(mc_ring_pending(&c));
	cr_assert(mc_ring_has_room(&p, ring));
	cr_assert_eq(mc_ring_depth(&p, ring), 0);

	put_range(&p, 1, (uint64_t)cap + 1);
	cr_assert_eq(mc_ring_depth(&c, ring), cap);
	cr_assert_not(mc_ring_has_room(&p, ring));
	cr_assert(mc_ring_pending(&c));
	cr_assert_eq(p.rings[ring].r_full, 0);
	d = D(999999);
	cr_assert_eq(mc_ring_put(&p, ring, &d), -EAGAIN, "put beyond capacity");
	cr_assert_eq(p.rings[ring].r_full, 1, "refused put not counted");
	cr_assert_eq(mc_ring_put(&p, ring, &d), -EAGAIN);
	cr_assert_eq(p.rings[ring].r_full, 2);
	cr_assert_eq(mc_ring_depth(&c, ring), cap, "refused put changed the ring");

	/* one out makes room for exactly one in */
	take_expect(&c, 1);
	mc_ring_commit(&c, ring);
	cr_assert(mc_ring_has_room(&p, ring));
	d = D((uint64_t)cap + 1);
	cr_assert_eq(mc_ring_put(&p, ring, &d), 0);
	cr_assert_not(mc_ring_has_room(&p, ring));
	d = D(999999);
	cr_assert_eq(mc_ring_put(&p, ring, &d), -EAGAIN);

	/* drain, in order, committing within the journal limit */
	for (uint64_t i = 2; i <= (uint64_t)cap + 1; i++) {
		take_expect(&c, i);
		if (i % 500 == 0)
			mc_ring_commit(&c, ring);
	}
	mc_ring_commit(&c, ring);
	cr_assert_eq(mc_ring_take(&c, ring, &d), -EAGAIN);
	cr_assert_eq(mc_ring_depth(&c, ring), 0);
	cr_assert_not(mc_ring_pending(&c));
	/* other rings untouched */
	{
		int other = mc_ring_index(&sup, CONS, PROD);

		cr_assert_geq(other, 0);
		cr_assert_eq(mc_ring_depth(&sup, (uint32_t)other), 0);
	}
	mc_seg_detach(&p);
	mc_seg_detach(&c);
	down();
}

/* Many laps around the ring (index wrap-around) keep order. */
Test(ring, many_laps_single_process)
{
	struct mc_seg p, c;
	uint64_t next_put = 1, next_take = 1;
	uint32_t cap;

	up();
	worker(&p, PROD);
	worker(&c, CONS);
	cap = mc_ring_capacity(&p, ring);
	srand(12345);
	while (next_take <= 50ull * cap) {
		uint32_t burst = (uint32_t)rand() % (cap + 1);
		uint32_t take = (uint32_t)rand() % (sup.hdr->sh_journal_entries + 1);

		for (uint32_t i = 0; i < burst && mc_ring_has_room(&p, ring); i++) {
			struct mc_desc d = D(next_put++);

			cr_assert_eq(mc_ring_put(&p, ring, &d), 0);
		}
		for (uint32_t i = 0; i < take && next_take < next_put; i++)
			take_expect(&c, next_take++);
		mc_ring_commit(&c, ring);
		cr_assert_eq(mc_ring_depth(&c, ring), next_put - next_take);
		cr_assert_eq(mc_ring_frames_put(&c, ring), next_put - 1);
		cr_assert_eq(mc_ring_frames_taken(&p, ring), next_take - 1);
	}
	mc_seg_detach(&p);
	mc_seg_detach(&c);
	down();
}

/*
 * The 64-bit totals from the monitor's words and the 32-bit cursors, with
 * the cursors set by hand: across a wrap, at the largest gap that is still
 * exact (2^32 - 1 frames since the last advance), and what an advance
 * stores.  Only the arithmetic: no frames move.
 */
Test(ring, frame_totals_extend_the_cursors)
{
	struct mc_ring *r;

	up();
	r = &sup.rings[ring];
	cr_assert_eq(mc_ring_frames_put(&sup, ring), 0, "a new ring starts at 0");
	cr_assert_eq(mc_ring_frames_taken(&sup, ring), 0);
	cr_assert_eq(r->r_mon_put, 0);

	r->r_mon_put = (7ULL << 32) | 0xfffffff0u;
	r->r_ck.p_tail = 0x10;                  /* 0x20 puts later: wrapped */
	cr_assert_eq(mc_ring_frames_put(&sup, ring), (8ULL << 32) | 0x10);
	r->r_ck.p_tail = 0xfffffff0u;           /* nothing since */
	cr_assert_eq(mc_ring_frames_put(&sup, ring), (7ULL << 32) | 0xfffffff0u);
	r->r_ck.p_tail = 0xffffffefu;           /* 2^32 - 1 since: still exact */
	cr_assert_eq(mc_ring_frames_put(&sup, ring), ((7ULL << 32) | 0xfffffff0u) + 0xffffffffULL);

	r->r_mon_taken = 3ULL << 32;
	r->r_ck.c_head = UINT32_MAX;
	cr_assert_eq(mc_ring_frames_taken(&sup, ring), (3ULL << 32) + UINT32_MAX);

	/* the advance stores the totals; their low halves are the cursors */
	r->r_ck.p_tail = 0x10;
	mc_ring_mon_advance(&sup, ring);
	cr_assert_eq(r->r_mon_put, (8ULL << 32) | 0x10);
	cr_assert_eq(r->r_mon_taken, (3ULL << 32) + UINT32_MAX);
	r->r_ck.c_head = 5;                     /* 6 more takes: the taken side wraps */
	cr_assert_eq(mc_ring_frames_taken(&sup, ring), (4ULL << 32) + 5);
	mc_ring_mon_advance(&sup, ring);
	cr_assert_eq(r->r_mon_taken, (4ULL << 32) + 5);
	cr_assert_eq(mc_ring_frames_put(&sup, ring), (8ULL << 32) | 0x10, "the advance changed nothing");
	down();
}

/* More than journal_entries taken without a commit: -ENOBUFS, nothing lost. */
Test(ring, journal_full_gives_enobufs)
{
	struct mc_seg p, c;
	struct mc_desc d;
	uint32_t j;

	up();
	worker(&p, PROD);
	worker(&c, CONS);
	j = sup.hdr->sh_journal_entries;
	cr_assert_gt(mc_ring_capacity(&p, ring), j + 10, "ring too small for this test");
	put_range(&p, 1, (uint64_t)j + 11);
	for (uint64_t i = 1; i <= j; i++)
		take_expect(&c, i);
	cr_assert_eq(mc_ring_take(&c, ring, &d), -ENOBUFS, "took more than the journal holds");
	cr_assert_eq(mc_ring_take(&c, ring, &d), -ENOBUFS);
	cr_assert_eq(mc_ring_depth(&c, ring), 10, "ENOBUFS consumed an entry");
	mc_ring_commit(&c, ring);
	for (uint64_t i = (uint64_t)j + 1; i <= (uint64_t)j + 10; i++)
		take_expect(&c, i);
	cr_assert_eq(mc_ring_take(&c, ring, &d), -EAGAIN);
	mc_seg_detach(&p);
	mc_seg_detach(&c);
	down();
}

/* A consumer child: take `n` without committing (after committing the
 * first `commit_first`), report, then die by SIGKILL from the parent. */
static int taker_then_die(struct chan *ch, unsigned commit_first, unsigned n)
{
	struct mc_seg s;
	struct mc_desc d;
	uint64_t v;

	child_worker(&s, CONS);
	for (unsigned i = 0; i < commit_first + n; i++) {
		int rc = mc_ring_take(&s, ring, &d);

		UT_CHK(rc == 0, "take %u: %d", i, rc);
		UT_CHK(d.d_seq == i + 1, "took %llu at %u", (unsigned long long)d.d_seq, i);
		if (i + 1 == commit_first)
			mc_ring_commit(&s, ring);
	}
	ut_put(ch->cp[1], 1);
	ut_get(ch->pc[0], &v, 60000);
	for (;;)
		pause();
}

/* A consumer child: expect exactly seqs [from, to) then nothing, commit. */
static int taker_expect(unsigned from, unsigned to, bool commit)
{
	struct mc_seg s;
	struct mc_desc d;
	int rc;

	child_worker(&s, CONS);
	UT_CHK(from == to || mc_ring_pending(&s), "replay window not pending after restart");
	for (unsigned i = from; i < to; i++) {
		rc = mc_ring_take(&s, ring, &d);
		UT_CHK(rc == 0, "take of %u: %d", i, rc);
		UT_CHK(d.d_seq == i, "took %llu, expected %u", (unsigned long long)d.d_seq, i);
		UT_CHK(d.d_off == D(i).d_off, "replayed descriptor differs at %u", i);
	}
	rc = mc_ring_take(&s, ring, &d);
	UT_CHK(rc == -EAGAIN, "extra take after %u: rc %d seq %llu", to, rc,
	    (unsigned long long)d.d_seq);
	if (commit)
		mc_ring_commit(&s, ring);
	mc_seg_detach(&s);
	return 0;
}

static void kill_and_reap(pid_t c)
{
	int st;

	kill(c, SIGKILL);
	st = ut_wait(c);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child %d did not die by SIGKILL", c);
}

/*
 * Replay: a consumer takes N and dies before committing; its successor
 * (a new process claiming the slot) gets the same N again, in order,
 * then the new entries.  After a commit, a third incarnation gets nothing.
 */
Test(ring, replay_after_consumer_crash)
{
	enum { N = 10, MORE = 5 };
	struct mc_seg p;
	struct chan ch;
	pid_t a, b, c;

	up();
	worker(&p, PROD);
	put_range(&p, 1, N + 1);
	chan_open(&ch);
	a = ut_fork();
	if (a == 0) {
		chan_child(&ch);
		_exit(taker_then_die(&ch, 0, N));
	}
	chan_parent(&ch);
	cr_assert_eq(chan_get(&ch, "took N"), 1);
	cr_assert_eq(mc_ring_depth(&sup, ring), 0, "the taker did not take from the ring");
	kill_and_reap(a);
	chan_close(&ch);
	put_range(&p, N + 1, N + MORE + 1);

	b = ut_fork();
	if (b == 0)
		_exit(taker_expect(1, N + MORE + 1, true));
	ut_wait_ok(b, "successor replays then continues");

	c = ut_fork();
	if (c == 0)
		_exit(taker_expect(1, 1, false));
	ut_wait_ok(c, "after a commit nothing is replayed");
	mc_seg_detach(&p);
	down();
}

/* What was committed before the crash is not replayed; the rest is. */
Test(ring, replay_starts_at_last_commit)
{
	struct mc_seg p;
	struct chan ch;
	pid_t a, b;

	up();
	worker(&p, PROD);
	put_range(&p, 1, 13);
	chan_open(&ch);
	a = ut_fork();
	if (a == 0) {
		chan_child(&ch);
		_exit(taker_then_die(&ch, 4, 6));      /* takes 1..10, commits 1..4 */
	}
	chan_parent(&ch);
	cr_assert_eq(chan_get(&ch, "took"), 1);
	kill_and_reap(a);
	chan_close(&ch);
	b = ut_fork();
	if (b == 0)
		_exit(taker_expect(5, 13, true));
	ut_wait_ok(b, "replay from the last commit");
	mc_seg_detach(&p);
	down();
}

/* A successor that itself dies mid-replay: the next one replays again. */
Test(ring, replay_survives_repeated_crashes)
{
	struct mc_seg p;
	pid_t a, b, c;
	struct chan ch;

	up();
	worker(&p, PROD);
	put_range(&p, 1, 9);
	for (int round = 0; round < 3; round++) {
		chan_open(&ch);
		a = ut_fork();
		if (a == 0) {
			chan_child(&ch);
			/* every incarnation takes all 8 (replayed or not), commits none */
			_exit(taker_then_die(&ch, 0, 8));
		}
		chan_parent(&ch);
		cr_assert_eq(chan_get(&ch, "took"), 1, "round %d", round);
		kill_and_reap(a);
		chan_close(&ch);
	}
	b = ut_fork();
	if (b == 0)
		_exit(taker_expect(1, 9, false));       /* takes, does not commit */
	ut_wait_ok(b, "replay after three crashes");
	c = ut_fork();
	if (c == 0)
		_exit(taker_expect(1, 9, true));
	ut_wait_ok(c, "uncommitted clean exit replays too");
	mc_seg_detach(&p);
	down();
}

/* Re-attaching the inbox in the same process rewinds to the journal window. */
Test(ring, replay_via_attach_inbox)
{
	struct mc_seg p, c;
	struct mc_desc d;

	up();
	worker(&p, PROD);
	worker(&c, CONS);
	put_range(&p, 1, 8);
	for (uint64_t i = 1; i <= 5; i++)
		take_expect(&c, i);
	mc_ring_attach_inbox(&c);       /* as a restart would */
	for (uint64_t i = 1; i <= 7; i++)
		take_expect(&c, i);
	cr_assert_eq(mc_ring_take(&c, ring, &d), -EAGAIN);
	mc_ring_commit(&c, ring);
	mc_ring_attach_inbox(&c);
	cr_assert_eq(mc_ring_take(&c, ring, &d), -EAGAIN, "committed entries replayed");
	cr_assert_not(mc_ring_pending(&c));
	put_range(&p, 8, 9);
	take_expect(&c, 8);
	mc_seg_detach(&p);
	mc_seg_detach(&c);
	down();
}

/* ------------------------------------------------------------------ */
/* Doorbells                                                           */

/* Is `pid` asleep in futex(2)?  ('S' and, when readable, the syscall.) */
static bool asleep_in_futex(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	bool sleeping = false;
	long nr;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return false;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) != NULL)
		sleeping = p[1] == ' ' && p[2] == 'S';
	fclose(f);
	if (!sleeping)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return true;
	if (fscanf(f, "%ld", &nr) != 1)
		nr = SYS_futex;
	fclose(f);
	return nr == SYS_futex;
}

static void wait_until_asleep(pid_t pid)
{
	uint64_t until = now_ns() + 20ull * 1000000000ull;

	while (!asleep_in_futex(pid)) {
		struct timespec ts = { 0, 1000000 };

		cr_assert_lt(now_ns(), until, "consumer %d never went to sleep", (int)pid);
		nanosleep(&ts, NULL);
	}
}

/*
 * A consumer asleep on its doorbell (no spinning) is woken by a put and a
 * notify from another process, long before its 10 s timeout.  The put is
 * made after the consumer has slept for 1.5 s: ck_ec re-checks with short
 * timeouts during its first second, which would hide a lost wake-up.
 */
Test(ring, wait_woken_by_notify_from_other_process)
{
	struct mc_seg p;
	struct chan ch;
	pid_t c;
	uint64_t t_put, t_wake, woke;
	struct mc_desc d = D(777);

	up();
	worker(&p, PROD);
	chan_open(&ch);
	c = ut_fork();
	if (c == 0) {
		struct mc_seg s;
		struct mc_desc got;
		bool ok;

		chan_child(&ch);
		child_worker(&s, CONS);
		UT_CHK(!mc_ring_pending(&s), "pending before anything was put");
		ut_put(ch.cp[1], 1);
		ok = mc_ring_wait(&s, 0, 10ull * 1000000000ull);
		ut_put(ch.cp[1], now_ns());
		ut_put(ch.cp[1], ok);
		UT_CHK(ok, "mc_ring_wait returned false");
		UT_CHK(mc_ring_take(&s, ring, &got) == 0, "nothing to take after the wake-up");
		UT_CHK(got.d_seq == 777, "took %llu", (unsigned long long)got.d_seq);
		mc_ring_commit(&s, ring);
		mc_seg_detach(&s);
		_exit(0);
	}
	chan_parent(&ch);
	cr_assert_eq(chan_get(&ch, "ready"), 1);
	wait_until_asleep(c);
	{
		struct timespec ts = { 1, 500000000 };     /* see above: not a sync */

		nanosleep(&ts, NULL);
	}
	wait_until_asleep(c);           /* not caught in a timed re-check */
	t_put = now_ns();
	cr_assert_eq(mc_ring_put(&p, ring, &d), 0);
	mc_ring_notify(&p, CONS);
	t_wake = chan_get(&ch, "woke");
	woke = chan_get(&ch, "result");
	cr_assert_eq(woke, 1, "mc_ring_wait returned false with an entry pending");
	cr_assert_lt(t_wake - t_put, 1000000000ull, "woken %.3f s after the notify",
	    (double)(t_wake - t_put) / 1e9);
	ut_wait_ok(c, "sleeper");
	chan_close(&ch);
	mc_seg_detach(&p);
	down();
}

/* Woken promptly also when the notify comes right after it fell asleep. */
Test(ring, wait_woken_soon_after_sleeping)
{
	struct mc_seg p;
	struct chan ch;
	pid_t c;
	uint64_t t_put, t_wake;
	struct mc_desc d = D(5);

	up();
	worker(&p, PROD);
	chan_open(&ch);
	c = ut_fork();
	if (c == 0) {
		struct mc_seg s;
		bool ok;

		chan_child(&ch);
		child_worker(&s, CONS);
		ut_put(ch.cp[1], 1);
		ok = mc_ring_wait(&s, 0, 10ull * 1000000000ull);
		ut_put(ch.cp[1], now_ns());
		UT_CHK(ok, "mc_ring_wait returned false");
		mc_seg_detach(&s);
		_exit(0);
	}
	chan_parent(&ch);
	cr_assert_eq(chan_get(&ch, "ready"), 1);
	wait_until_asleep(c);
	t_put = now_ns();
	cr_assert_eq(mc_ring_put(&p, ring, &d), 0);
	mc_ring_notify(&p, CONS);
	t_wake = chan_get(&ch, "woke");
	cr_assert_lt(t_wake - t_put, 1000000000ull, "woken %.3f s after the notify",
	    (double)(t_wake - t_put) / 1e9);
	ut_wait_ok(c, "sleeper");
	chan_close(&ch);
	mc_seg_detach(&p);
	down();
}

static void on_usr1(int sig)
{
	(void)sig;
}

/*
 * A sleeper stays asleep until work comes or its time is up: a ring with
 * nothing put (what a producer's late notify, for an entry the consumer
 * already took, looks like) does not end the sleep, nor does a signal.
 * A wait that returned early here was read by its caller as "timed out"
 * (ping_pong_wakeups_are_not_lost failed so under ASan, ~1 run in 20).
 */
Test(ring, wait_ends_for_work_or_time_only)
{
	struct mc_seg p;
	struct chan ch;
	pid_t c;
	uint64_t took, woke;

	up();
	worker(&p, PROD);
	chan_open(&ch);
	c = ut_fork();
	if (c == 0) {
		struct mc_seg s;
		struct sigaction sa;
		uint64_t t0;
		bool ok;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_usr1;       /* no SA_RESTART */
		sigaction(SIGUSR1, &sa, NULL);
		chan_child(&ch);
		child_worker(&s, CONS);
		ut_put(ch.cp[1], 1);
		t0 = now_ns();
		ok = mc_ring_wait(&s, 0, 1500000000ull);
		ut_put(ch.cp[1], now_ns() - t0);
		ut_put(ch.cp[1], ok);
		mc_seg_detach(&s);
		_exit(0);
	}
	chan_parent(&ch);
	cr_assert_eq(chan_get(&ch, "ready"), 1);
	wait_until_asleep(c);
	mc_ring_notify(&p, CONS);       /* a ring, nothing put */
	{
		struct timespec ts = { 0, 200000000 };

		nanosleep(&ts, NULL);   /* asleep again by now, unless the ring ended the wait */
	}
	kill(c, SIGUSR1);
	took = chan_get(&ch, "took");
	woke = chan_get(&ch, "result");
	cr_assert_eq(woke, 0, "nothing was put, yet the wait said work is pending");
	cr_assert_geq(took, 1400000000ull, "the wait ended after %.3f s, not at its 1.5 s timeout",
	    (double)took / 1e9);
	ut_wait_ok(c, "sleeper");
	chan_close(&ch);
	mc_seg_detach(&p);
	down();
}

/*
 * A napping consumer (LAZY FRAMES AND NAPS in mc_ring.h): a lazy frame's
 * notify leaves its doorbell alone, so the nap runs to its end; any other
 * frame's notify rings it, and the nap ends at once.
 */
Test(ring, nap_is_ended_by_eager_frames_only)
{
	struct mc_seg p;
	struct chan ch;
	pid_t c;
	uint32_t bell;
	uint64_t first, t_put, t_wake;
	struct mc_desc d1 = D(1), d2 = D(2);

	up();
	worker(&p, PROD);
	chan_open(&ch);
	c = ut_fork();
	if (c == 0) {
		struct mc_seg s;
		struct mc_desc got;
		uint64_t t0;

		chan_child(&ch);
		child_worker(&s, CONS);
		ut_put(ch.cp[1], 1);
		t0 = now_ns();
		mc_ring_nap(&s, 2000000000ull);         /* only a lazy frame comes: 2 s */
		ut_put(ch.cp[1], now_ns() - t0);
		UT_CHK(s.slots[CONS].sl_napping == 0, "still flagged napping after the nap");
		/* a frame that is waiting ends a nap before it starts */
		t0 = now_ns();
		mc_ring_nap(&s, 20000000000ull);
		UT_CHK(now_ns() - t0 < 5000000000ull, "napped with a frame waiting");
		UT_CHK(mc_ring_take(&s, ring, &got) == 0 && got.d_seq == 1, "the lazy frame is not there");
		mc_ring_commit(&s, ring);
		mc_ring_nap(&s, 20000000000ull);        /* an eager one ends it */
		ut_put(ch.cp[1], now_ns());
		mc_seg_detach(&s);
		_exit(0);
	}
	chan_parent(&ch);
	cr_assert_eq(chan_get(&ch, "ready"), 1);
	wait_until_asleep(c);
	cr_assert_eq(ck_pr_load_32(&p.slots[CONS].sl_napping), 1);
	bell = ck_ec32_value(&p.slots[CONS].sl_bell);
	cr_assert_eq(mc_ring_put(&p, ring, &d1), 0);
	mc_ring_notify_lazy(&p, CONS, true);
	cr_assert_eq(ck_ec32_value(&p.slots[CONS].sl_bell), bell,
	    "a lazy frame rang a napping consumer's bell");
	first = chan_get(&ch, "first nap");
	cr_assert_geq(first, 1900000000ull, "the nap ended after %.3f s, not at its end",
	    (double)first / 1e9);
	wait_until_asleep(c);
	t_put = now_ns();
	cr_assert_eq(mc_ring_put(&p, ring, &d2), 0);
	mc_ring_notify_lazy(&p, CONS, false);
	cr_assert_neq(ck_ec32_value(&p.slots[CONS].sl_bell), bell);
	t_wake = chan_get(&ch, "woke");
	cr_assert_lt(t_wake - t_put, 10000000000ull, "an eager frame left the nap running %.3f s",
	    (double)(t_wake - t_put) / 1e9);
	ut_wait_ok(c, "napper");
	chan_close(&ch);
	mc_seg_detach(&p);
	down();
}

Test(ring, wait_times_out_with_nothing_pending)
{
	struct mc_seg c;
	uint64_t t0, dt;
	bool ok;

	up();
	worker(&c, CONS);
	t0 = now_ns();
	ok = mc_ring_wait(&c, 1000000, 300 * 1000000ull);
	dt = now_ns() - t0;
	cr_assert_not(ok, "mc_ring_wait reported work on an empty inbox");
	cr_assert_geq(dt, 250 * 1000000ull, "returned after %.3f s of a 0.3 s timeout",
	    (double)dt / 1e9);
	cr_assert_lt(dt, 5000000000ull, "returned after %.3f s of a 0.3 s timeout",
	    (double)dt / 1e9);
	/* spin only, zero timeout */
	ok = mc_ring_wait(&c, 0, 0);
	cr_assert_not(ok);
	mc_seg_detach(&c);
	down();
}

Test(ring, wait_returns_at_once_when_pending)
{
	struct mc_seg p, c;
	uint64_t t0;
	struct mc_desc d = D(1);

	up();
	worker(&p, PROD);
	worker(&c, CONS);
	cr_assert_eq(mc_ring_put(&p, ring, &d), 0);     /* no notify at all */
	t0 = now_ns();
	cr_assert(mc_ring_wait(&c, 0, 10ull * 1000000000ull));
	cr_assert_lt(now_ns() - t0, 1000000000ull);
	/* a replay window counts as pending too */
	take_expect(&c, 1);
	mc_ring_attach_inbox(&c);
	cr_assert(mc_ring_pending(&c));
	cr_assert(mc_ring_wait(&c, 0, 10ull * 1000000000ull));
	take_expect(&c, 1);
	mc_ring_commit(&c, ring);
	cr_assert_not(mc_ring_pending(&c));
	mc_seg_detach(&p);
	mc_seg_detach(&c);
	down();
}

/*
 * Ping-pong between two sleeping processes over STATE -> ROUTER and back:
 * every put is followed by mc_ring_notify and every wait sleeps at once
 * (no spinning) with a 5 s timeout.  A lost wake-up shows as a wait that
 * times out; thousands of round trips give the race a chance.
 */
#define PINGS 20000u

static int pinger(struct chan *ch, unsigned me, unsigned peer, bool first)
{
	struct mc_seg s;
	uint32_t out, in;
	uint64_t v;

	child_worker(&s, me);
	out = (uint32_t)mc_ring_index(&s, me, peer);
	in = (uint32_t)mc_ring_index(&s, peer, me);
	ut_put(ch->cp[1], 1);
	UT_CHK(ut_get(ch->pc[0], &v, 60000), "go");
	for (uint64_t i = 1; i <= PINGS; i++) {
		struct mc_desc d = D(i), got;

		if (first) {
			UT_CHK(mc_ring_put(&s, out, &d) == 0, "put %llu", (unsigned long long)i);
			mc_ring_notify(&s, peer);
		}
		while (mc_ring_take(&s, in, &got) == -EAGAIN)
			UT_CHK(mc_ring_wait(&s, 0, 5ull * 1000000000ull),
			    "round %llu: wait timed out (lost wake-up)", (unsigned long long)i);
		UT_CHK(got.d_seq == i, "round %llu: got %llu", (unsigned long long)i,
		    (unsigned long long)got.d_seq);
		mc_ring_commit(&s, in);
		if (!first) {
			UT_CHK(mc_ring_put(&s, out, &got) == 0, "echo %llu", (unsigned long long)i);
			mc_ring_notify(&s, peer);
		}
	}
	mc_seg_detach(&s);
	return 0;
}

Test(ring, ping_pong_wakeups_are_not_lost)
{
	struct chan a, b;
	pid_t kids[2];

	up();
	chan_open(&a);
	kids[0] = ut_fork();
	if (kids[0] == 0) {
		chan_child(&a);
		_exit(pinger(&a, PROD, CONS, true));
	}
	chan_parent(&a);
	chan_open(&b);
	kids[1] = ut_fork();
	if (kids[1] == 0) {
		chan_child(&b);
		_exit(pinger(&b, CONS, PROD, false));
	}
	chan_parent(&b);
	cr_assert_eq(chan_get(&a, "ping ready"), 1);
	cr_assert_eq(chan_get(&b, "pong ready"), 1);
	ut_put(a.pc[1], 1);
	ut_put(b.pc[1], 1);
	ut_wait_group(kids, 2, "ping-pong");
	chan_close(&a);
	chan_close(&b);
	down();
}
