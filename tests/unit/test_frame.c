/*
 * test_frame.c - unit tests for frames (shm/frame.c, contract in
 * shm/mc_frame.h): pools, holder bits, send / receive / forward /
 * release, back-pressure, duplicate suppression and crash recovery.
 *
 * The test process creates the segment (it is the supervisor).  Worker
 * slots are taken by extra handles in the test process or by forked
 * children; children report through their exit status.  Instances are
 * "utframe-<pid>-<n>"; /dev/shm is cleaned in the fini hook and by a
 * guardian child if the test process dies.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mc_config.h"
#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_ring.h"
#include "mc_seg.h"
#include "ut.h"

#ifndef MC_SOURCE_DIR
#error "MC_SOURCE_DIR must be defined to the repository root"
#endif

/* ------------------------------------------------------------------ */
/* Scaffolding (each test file carries its own copy)                   */

#define UT_TAG "frame"


static void kill_and_reap(pid_t c)
{
	int st;

	kill(c, SIGKILL);
	st = ut_wait(c);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child %d did not die by SIGKILL", c);
}

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

#define P  MC_WORKER_STATE          /* producer */
#define M  MC_WORKER_PERSISTENCE    /* middle / forwarder */
#define Y  MC_WORKER_MONITOR
#define X  MC_WORKER_ROUTER
#define Z  MC_WORKER_PROTOCOL
#define BIT(s) (1ull << (s))

static char err[512];
static struct mc_config cfg;
static struct mc_layout lay;
static struct mc_seg sup;

static void up(void)
{
	ut_seg_create(&sup, &cfg, &lay);
}

static void down(void)
{
	mc_seg_destroy(&sup);
}

static void worker(struct mc_seg *s, unsigned slot)
{
	ut_worker(s, cfg.instance, slot);
}

static void client(struct mc_seg *s, const char *label)
{
	int rc = mc_seg_attach(s, cfg.instance, false, err, sizeof(err));

	cr_assert_eq(rc, 0, "attach: %d %s", rc, err);
	rc = mc_seg_claim_client(s, label, err, sizeof(err));
	cr_assert_eq(rc, 0, "claim client: %d %s", rc, err);
}

static void child_worker(struct mc_seg *s, unsigned slot)
{
	ut_child_worker(s, cfg.instance, slot);
}

static uint32_t ring_of(unsigned src, unsigned dst)
{
	int r = mc_ring_index(&sup, src, dst);

	cr_assert_geq(r, 0, "no ring %u -> %u", src, dst);
	return (uint32_t)r;
}

static void fill(uint8_t *p, uint32_t len, uint64_t tag)
{
	uint32_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t w = ut_mix64(tag * 0x100000001b3ull + i);

		memcpy(p + i, &w, 8);
	}
	if (i < len) {
		uint64_t w = ut_mix64(tag * 0x100000001b3ull + i);

		memcpy(p + i, &w, len - i);
	}
}

static bool payload_ok(const uint8_t *p, uint32_t len, uint64_t tag)
{
	uint32_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t w = ut_mix64(tag * 0x100000001b3ull + i);

		if (memcmp(p + i, &w, 8) != 0)
			return false;
	}
	if (i < len) {
		uint64_t w = ut_mix64(tag * 0x100000001b3ull + i);

		return memcmp(p + i, &w, len - i) == 0;
	}
	return true;
}

/* Allocate, fill with `tag` (also stored in f_user) and return the frame. */
static struct mc_frame *make(struct mc_seg *s, uint32_t len, uint16_t kind, uint32_t tag)
{
	int e = 12345;
	struct mc_frame *f = mc_frame_alloc(s, len, kind, &e);

	cr_assert_not_null(f, "alloc of %u bytes: %d", len, e);
	cr_assert_eq(e, 0);
	cr_assert_eq(f->f_len, len);
	cr_assert_eq(f->f_kind, kind);
	cr_assert_eq(f->f_src, (unsigned)s->slot);
	cr_assert_geq(f->f_size, MC_FRAME_HDR_SIZE + len);
	cr_assert_eq(f->f_size % MC_FRAME_ALIGN, 0, "block of %u bytes", f->f_size);
	cr_assert_eq((uint64_t)((uint8_t *)f - s->base) % MC_FRAME_ALIGN, 0, "block misaligned");
	cr_assert_neq(f->f_seq, 0);
	f->f_user = tag;
	fill(f->f_data, len, tag);
	return f;
}

static uint64_t send_tagged(struct mc_seg *s, uint64_t mask, uint32_t len, uint32_t tag)
{
	struct mc_frame *f = make(s, len, 7, tag);
	uint64_t seq = f->f_seq;
	int rc = mc_frame_send(s, f, mask);

	cr_assert_eq(rc, 0, "send tag %u to %#llx: %d", tag, (unsigned long long)mask, rc);
	return seq;
}

/* Receive one frame now (in-process receivers: the frame is queued). */
static void recv_tagged(struct mc_seg *s, struct mc_msg *m, uint32_t tag, unsigned from)
{
	int rc = mc_recv(s, m);

	cr_assert_eq(rc, 0, "slot %d: recv (expecting tag %u): %d", s->slot, tag, rc);
	cr_assert_eq(m->frame->f_user, tag, "slot %d got tag %u, expected %u", s->slot,
	    m->frame->f_user, tag);
	cr_assert_eq(m->src, from, "ring source %u, expected %u", m->src, from);
	cr_assert_eq(m->desc.d_seq, m->frame->f_seq);
	cr_assert_neq(m->frame->f_holders & s->bit, 0, "received frame without our holder bit");
	cr_assert(payload_ok(m->frame->f_data, m->frame->f_len, tag), "payload of tag %u corrupt",
	    tag);
}

static void recv_none(struct mc_seg *s)
{
	struct mc_msg m;
	int rc = mc_recv(s, &m);

	cr_assert_eq(rc, -EAGAIN, "slot %d: expected nothing, got rc %d (tag %u)", s->slot, rc,
	    rc == 0 ? m.frame->f_user : 0);
}

/* In a child: receive one frame, waiting for it up to 30 s. */
static int child_recv(struct mc_seg *s, struct mc_msg *m)
{
	uint64_t until = now_ns() + 30ull * 1000000000ull;
	int rc;

	while ((rc = mc_recv(s, m)) == -EAGAIN && now_ns() < until)
		mc_ring_wait(s, 50000, 100 * 1000000ull);
	return rc;
}

static void ut_init(void)
{
	ut_guard_start(UT_TAG);
}

TestSuite(frame, .init = ut_init, .fini = ut_fini, .timeout = 150);

/* ------------------------------------------------------------------ */
/* Send, receive, release                                              */

/* A receiver in another process sees the frame; the pool frees on release. */
Test(frame, send_to_other_process)
{
	struct mc_seg p;
	struct chan ch;
	struct mc_frame *f;
	pid_t c;
	uint64_t seq;

	up();
	worker(&p, P);
	chan_open(&ch);
	c = ut_fork();
	if (c == 0) {
		struct mc_seg s;
		struct mc_msg m;
		uint64_t v;

		chan_child(&ch);
		child_worker(&s, X);
		ut_put(ch.cp[1], 1);
		UT_CHK(child_recv(&s, &m) == 0, "nothing received");
		UT_CHK(m.frame->f_len == 1000, "f_len %u", m.frame->f_len);
		UT_CHK(m.frame->f_kind == 42, "f_kind %u", m.frame->f_kind);
		UT_CHK(m.frame->f_src == P, "f_src %u", m.frame->f_src);
		UT_CHK(m.src == P, "src %u", m.src);
		UT_CHK(m.frame->f_user == 99, "f_user %u", m.frame->f_user);
		UT_CHK(m.desc.d_seq == m.frame->f_seq, "desc seq");
		UT_CHK(m.frame->f_holders == BIT(X), "holders %#llx",
		    (unsigned long long)m.frame->f_holders);
		UT_CHK(payload_ok(m.frame->f_data, 1000, 99), "payload corrupt");
		ut_put(ch.cp[1], m.frame->f_seq);
		UT_CHK(ut_get(ch.pc[0], &v, 60000), "go");
		mc_frame_release(&s, &m);
		UT_CHK(mc_recv(&s, &m) == -EAGAIN, "second frame out of nowhere");
		mc_seg_detach(&s);
		_exit(0);
	}
	chan_parent(&ch);
	cr_assert_eq(chan_get(&ch, "ready"), 1);
	f = make(&p, 1000, 42, 99);
	seq = f->f_seq;
	cr_assert_eq(mc_frame_send(&p, f, BIT(X)), 0);
	cr_assert_eq(chan_get(&ch, "received"), seq);
	cr_assert_gt(mc_frame_pool_used(&p, P), 0, "pool freed while the receiver holds it");
	cr_assert_eq(f->f_holders, BIT(X));
	ut_put(ch.pc[1], 1);
	ut_wait_ok(c, "receiver");
	chan_close(&ch);
	cr_assert_eq(f->f_holders, 0, "release did not clear the holder bit");
	cr_assert_eq(mc_frame_pool_used(&p, P), 0, "pool not reclaimed after the release");
	mc_seg_detach(&p);
	down();
}

/* One frame to three workers and a client: freed only when all let go. */
Test(frame, send_to_several_reclaims_after_last_release)
{
	struct mc_seg p, x, y, z, cl;
	struct mc_seg *rx[4] = { &x, &y, &z, &cl };
	struct mc_msg m[4];
	uint64_t mask, left;
	int order[4] = { 2, 0, 3, 1 };

	up();
	worker(&p, P);
	worker(&x, X);
	worker(&y, Y);
	worker(&z, Z);
	client(&cl, "several");
	mask = BIT(X) | BIT(Y) | BIT(Z) | cl.bit;
	send_tagged(&p, mask, 3000, 5);
	for (int i = 0; i < 4; i++) {
		recv_tagged(rx[i], &m[i], 5, P);
		cr_assert_eq(m[i].frame->f_holders, mask);
	}
	/* every receiver reads the same bytes in place */
	cr_assert_eq(m[0].frame->f_seq, m[3].frame->f_seq);
	left = mask;
	for (int k = 0; k < 4; k++) {
		int i = order[k];
		struct mc_frame *f = m[i].frame;

		cr_assert_gt(mc_frame_pool_used(&p, P), 0, "freed with %d holders left", 4 - k);
		mc_frame_release(rx[i], &m[i]);
		left &= ~rx[i]->bit;
		cr_assert_eq(f->f_holders, left, "holders %#llx after release by slot %d",
		    (unsigned long long)f->f_holders, rx[i]->slot);
	}
	cr_assert_eq(mc_frame_pool_used(&p, P), 0);
	for (int i = 0; i < 4; i++)
		recv_none(rx[i]);
	mc_seg_release_client(&cl);
	for (int i = 0; i < 4; i++)
		mc_seg_detach(rx[i]);
	mc_seg_detach(&p);
	down();
}

/* Clients and workers talk both ways. */
Test(frame, client_worker_round_trip)
{
	struct mc_seg w, cl;
	struct mc_msg m;

	up();
	worker(&w, X);
	client(&cl, "rt");
	send_tagged(&cl, BIT(X), 10, 1);
	recv_tagged(&w, &m, 1, (unsigned)cl.slot);
	cr_assert_eq(m.frame->f_src, (unsigned)cl.slot);
	mc_frame_release(&w, &m);
	cr_assert_eq(mc_frame_pool_used(&cl, (unsigned)cl.slot), 0);
	send_tagged(&w, cl.bit, 20, 2);
	recv_tagged(&cl, &m, 2, X);
	mc_frame_release(&cl, &m);
	cr_assert_eq(mc_frame_pool_used(&w, X), 0);
	mc_seg_release_client(&cl);
	mc_seg_detach(&cl);
	mc_seg_detach(&w);
	down();
}

Test(frame, alloc_errors)
{
	struct mc_seg p, none;
	struct mc_frame *f, *g;
	uint64_t max, used;
	int e;

	up();
	worker(&p, P);
	max = sup.hdr->sh_max_frame;
	cr_assert_eq(max, cfg.max_message_size);

	e = 0;
	cr_assert_null(mc_frame_alloc(&p, (uint32_t)max + 1, 0, &e));
	cr_assert_eq(e, -EMSGSIZE);
	cr_assert_null(mc_frame_alloc(&p, UINT32_MAX, 0, &e));
	cr_assert_eq(e, -EMSGSIZE);
	f = mc_frame_alloc(&p, (uint32_t)max, 0, &e);
	cr_assert_not_null(f, "max-size alloc: %d", e);
	cr_assert_eq(f->f_len, max);

	/* only one outstanding allocation */
	e = 0;
	cr_assert_null(mc_frame_alloc(&p, 8, 0, &e));
	cr_assert_eq(e, -EBUSY);
	mc_frame_abort(&p, f);
	cr_assert_eq(mc_frame_pool_used(&p, P), 0, "abort kept the space");
	g = mc_frame_alloc(&p, 8, 0, &e);
	cr_assert_not_null(g, "alloc after abort: %d", e);
	used = mc_frame_pool_used(&p, P);
	cr_assert_geq(used, MC_FRAME_HDR_SIZE + 8);
	mc_frame_abort(&p, g);
	cr_assert_eq(mc_frame_pool_used(&p, P), 0);

	/* no slot, the supervisor, read-only */
	cr_assert_eq(mc_seg_attach(&none, cfg.instance, false, err, sizeof(err)), 0);
	e = 0;
	cr_assert_null(mc_frame_alloc(&none, 8, 0, &e));
	cr_assert_eq(e, -EPERM);
	e = 0;
	cr_assert_null(mc_frame_alloc(&sup, 8, 0, &e));
	cr_assert_eq(e, -EPERM);
	mc_seg_detach(&none);
	cr_assert_eq(mc_seg_attach(&none, cfg.instance, true, err, sizeof(err)), 0);
	e = 0;
	cr_assert_null(mc_frame_alloc(&none, 8, 0, &e));
	cr_assert_eq(e, -EPERM);
	mc_seg_detach(&none);
	mc_seg_detach(&p);
	down();
}

/* Held frames exhaust the pool (-EAGAIN); releasing the oldest makes room. */
Test(frame, pool_exhaustion_backpressure)
{
	struct mc_seg p, x;
	struct mc_msg held[4096];
	uint32_t max, n = 0;
	struct mc_frame *f;
	int e = 0;

	up();
	worker(&p, P);
	worker(&x, X);
	max = (uint32_t)sup.hdr->sh_max_frame;
	for (;;) {
		f = mc_frame_alloc(&p, max, 0, &e);
		if (f == NULL)
			break;
		f->f_user = n;
		fill(f->f_data, max, n);
		cr_assert_eq(mc_frame_send(&p, f, BIT(X)), 0);
		recv_tagged(&x, &held[n], n, P);
		n++;
		cr_assert_lt(n, 4096u, "pool never fills");
	}
	cr_assert_eq(e, -EAGAIN, "full pool gave %d", e);
	cr_assert_geq(n, MC_POOL_MIN_FRAMES, "pool held only %u max-size frames", n);
	cr_assert_leq(mc_frame_pool_used(&p, P), sup.hdr->sh_pool_size);
	/* still full: nothing was released */
	cr_assert_null(mc_frame_alloc(&p, max, 0, &e));
	cr_assert_eq(e, -EAGAIN);
	/* a small frame may still fit in what is left, but not a big one */
	mc_frame_release(&x, &held[0]);
	f = mc_frame_alloc(&p, max, 0, &e);
	cr_assert_not_null(f, "release of the oldest frame did not make room: %d", e);
	f->f_user = 1000;
	fill(f->f_data, max, 1000);
	cr_assert_eq(mc_frame_send(&p, f, BIT(X)), 0);
	for (uint32_t i = 1; i < n; i++)
		mc_frame_release(&x, &held[i]);
	recv_tagged(&x, &held[0], 1000, P);
	mc_frame_release(&x, &held[0]);
	cr_assert_eq(mc_frame_pool_used(&p, P), 0);
	mc_seg_detach(&p);
	mc_seg_detach(&x);
	down();
}

/* Reclaim is in order: a later frame released first does not free space. */
Test(frame, reclaim_waits_for_oldest_holder)
{
	struct mc_seg p, x, y;
	struct mc_msg a, b;

	up();
	worker(&p, P);
	worker(&x, X);
	worker(&y, Y);
	send_tagged(&p, BIT(X), 100, 1);
	send_tagged(&p, BIT(Y), 100, 2);
	recv_tagged(&x, &a, 1, P);
	recv_tagged(&y, &b, 2, P);
	mc_frame_release(&y, &b);
	cr_assert_gt(mc_frame_pool_used(&p, P), 0);
	mc_frame_release(&x, &a);
	cr_assert_eq(mc_frame_pool_used(&p, P), 0);
	mc_seg_detach(&p);
	mc_seg_detach(&x);
	mc_seg_detach(&y);
	down();
}

/* ------------------------------------------------------------------ */
/* Millions of frames of random sizes through a wrapping pool          */

#define WRAP_N 2000000u

static uint32_t wrap_len(uint32_t i, uint32_t max)
{
	uint64_t h = ut_mix64(i ^ 0xabcdef);
	uint32_t r = (uint32_t)(h % 1000), v = (uint32_t)(h >> 20);

	if (r < 800)
		return v % 256;
	if (r < 998)
		return v % 4096;
	return v % (max + 1);
}

static int wrap_producer(struct chan *ch)
{
	struct mc_seg s;
	uint64_t v, until, psize;
	uint32_t max;

	child_worker(&s, P);
	max = (uint32_t)s.hdr->sh_max_frame;
	psize = s.slots[P].sl_pool_size;
	ut_put(ch->cp[1], 1);
	UT_CHK(ut_get(ch->pc[0], &v, 60000), "go");
	until = now_ns() + 120ull * 1000000000ull;
	for (uint32_t i = 0; i < WRAP_N; i++) {
		uint32_t len = wrap_len(i, max);
		struct mc_frame *f;
		int e;

		while ((f = mc_frame_alloc(&s, len, (uint16_t)(i % 7), &e)) == NULL) {
			UT_CHK(e == -EAGAIN, "alloc %u: %d", i, e);
			UT_CHK(now_ns() < until, "producer starved at %u", i);
			sched_yield();
		}
		f->f_user = i;
		fill(f->f_data, len, i);
		while ((e = mc_frame_send(&s, f, BIT(X))) == -EAGAIN) {
			UT_CHK(now_ns() < until, "ring full forever at %u", i);
			sched_yield();
		}
		UT_CHK(e == 0, "send %u: %d", i, e);
		if ((i & 1023) == 0) {
			const struct mc_slot *sl = &s.slots[P];

			UT_CHK(sl->sl_pool_tail <= sl->sl_pool_published &&
			    sl->sl_pool_published <= sl->sl_pool_head &&
			    sl->sl_pool_head - sl->sl_pool_tail <= psize,
			    "pool cursors out of order: tail %llu published %llu head %llu",
			    (unsigned long long)sl->sl_pool_tail,
			    (unsigned long long)sl->sl_pool_published,
			    (unsigned long long)sl->sl_pool_head);
		}
	}
	/* everything comes back once the consumer has let go */
	while (mc_frame_pool_used(&s, P) != 0) {
		UT_CHK(now_ns() < until, "pool never drained: %llu bytes",
		    (unsigned long long)mc_frame_pool_used(&s, P));
		sched_yield();
	}
	UT_CHK(s.slots[P].sl_pool_head > 20 * psize, "pool wrapped only %llu times",
	    (unsigned long long)(s.slots[P].sl_pool_head / psize));
	mc_seg_detach(&s);
	return 0;
}

static int wrap_consumer(struct chan *ch)
{
	struct mc_seg s;
	struct mc_msg held[16];
	uint64_t v, until, last_seq = 0, psize;
	uint32_t max, nheld = 0, batch = 1, rng = 1;
	int rc;

	child_worker(&s, X);
	max = (uint32_t)s.hdr->sh_max_frame;
	psize = s.slots[P].sl_pool_size;
	ut_put(ch->cp[1], 1);
	UT_CHK(ut_get(ch->pc[0], &v, 60000), "go");
	until = now_ns() + 120ull * 1000000000ull;
	for (uint32_t i = 0; i < WRAP_N;) {
		struct mc_msg *m = &held[nheld];

		rc = mc_recv(&s, m);
		if (rc == 0) {
			const struct mc_frame *f = m->frame;
			uint32_t len = wrap_len(i, max);

			UT_CHK(f->f_user == i, "frame %u arrived as %u", i, f->f_user);
			UT_CHK(f->f_len == len, "frame %u: f_len %u, expected %u", i, f->f_len, len);
			UT_CHK(f->f_kind == i % 7, "frame %u: kind %u", i, f->f_kind);
			UT_CHK(f->f_src == P && m->src == P, "frame %u: source", i);
			UT_CHK(last_seq == 0 || f->f_seq == last_seq + 1, "frame %u: seq %llu after %llu", i,
			    (unsigned long long)f->f_seq, (unsigned long long)last_seq);
			UT_CHK(m->desc.d_seq == f->f_seq, "frame %u: descriptor seq", i);
			{
				uint64_t at = m->desc.d_off - s.slots[P].sl_pool_off;

				UT_CHK(m->desc.d_off >= s.slots[P].sl_pool_off && at < psize,
				    "frame %u outside its pool", i);
				UT_CHK(at % MC_FRAME_ALIGN == 0 && f->f_size % MC_FRAME_ALIGN == 0,
				    "frame %u misaligned: at %llu size %u", i, (unsigned long long)at,
				    f->f_size);
				UT_CHK(at + f->f_size <= psize, "frame %u wraps the pool end", i);
			}
			UT_CHK(payload_ok(f->f_data, len, i), "frame %u (%u bytes): payload corrupt", i,
			    len);
			last_seq = f->f_seq;
			i++;
			nheld++;
		} else {
			UT_CHK(rc == -EAGAIN, "recv: %d", rc);
		}
		if (nheld == batch || (rc == -EAGAIN && nheld > 0)) {
			/* let go in a shuffled order */
			while (nheld > 0) {
				uint32_t k;

				rng = rng * 1103515245u + 12345u;
				k = (rng >> 16) % nheld;
				mc_frame_release(&s, &held[k]);
				held[k] = held[--nheld];
			}
			rng = rng * 1103515245u + 12345u;
			batch = 1 + (rng >> 16) % 16;
		}
		if (rc == -EAGAIN) {
			UT_CHK(now_ns() < until, "consumer starved at %u", i);
			mc_ring_wait(&s, 20000, 100 * 1000000ull);
		}
	}
	while (nheld > 0)
		mc_frame_release(&s, &held[--nheld]);
	{
		struct mc_msg m;

		UT_CHK(mc_recv(&s, &m) == -EAGAIN, "frame after the last one");
	}
	mc_seg_detach(&s);
	return 0;
}

Test(frame, wraparound_random_sizes_between_processes)
{
	struct chan pc, cc;
	pid_t kids[2];

	up();
	chan_open(&cc);
	kids[1] = ut_fork();
	if (kids[1] == 0) {
		chan_child(&cc);
		_exit(wrap_consumer(&cc));
	}
	chan_parent(&cc);
	chan_open(&pc);
	kids[0] = ut_fork();
	if (kids[0] == 0) {
		chan_child(&pc);
		_exit(wrap_producer(&pc));
	}
	chan_parent(&pc);
	cr_assert_eq(chan_get(&cc, "consumer ready"), 1);
	cr_assert_eq(chan_get(&pc, "producer ready"), 1);
	ut_put(cc.pc[1], 1);
	ut_put(pc.pc[1], 1);
	ut_wait_group(kids, 2, "wrap producer/consumer");
	chan_close(&pc);
	chan_close(&cc);
	down();
}

/* ------------------------------------------------------------------ */
/* Send errors                                                         */

/* One destination ring full: -EAGAIN, nobody gets it, retry works. */
Test(frame, send_all_or_nothing_when_a_ring_is_full)
{
	struct mc_seg p, x, y;
	struct mc_frame *f, *g;
	struct mc_msg m;
	uint32_t cap, rx, ry;
	int e;

	up();
	worker(&p, P);
	worker(&x, X);
	worker(&y, Y);
	rx = ring_of(P, X);
	ry = ring_of(P, Y);
	cap = mc_ring_capacity(&p, ry);
	for (uint32_t i = 0; i < cap; i++)
		send_tagged(&p, BIT(Y), 0, i);
	cr_assert_not(mc_ring_has_room(&p, ry));

	f = make(&p, 64, 3, 50000);
	e = mc_frame_send(&p, f, BIT(X) | BIT(Y));
	cr_assert_eq(e, -EAGAIN, "send into a full ring gave %d", e);
	cr_assert_eq(mc_ring_depth(&sup, rx), 0, "X got a descriptor of a failed send");
	cr_assert_eq(mc_ring_depth(&sup, ry), cap);
	recv_none(&x);
	/* the frame stays allocated */
	cr_assert_null(mc_frame_alloc(&p, 8, 0, &e));
	cr_assert_eq(e, -EBUSY);
	/* make room in Y, then the same frame goes to both */
	recv_tagged(&y, &m, 0, P);
	mc_frame_release(&y, &m);
	cr_assert_eq(mc_frame_send(&p, f, BIT(X) | BIT(Y)), 0);
	recv_tagged(&x, &m, 50000, P);
	mc_frame_release(&x, &m);
	recv_none(&x);
	for (uint32_t i = 1; i < cap; i++) {
		recv_tagged(&y, &m, i, P);
		mc_frame_release(&y, &m);
	}
	recv_tagged(&y, &m, 50000, P);
	mc_frame_release(&y, &m);
	recv_none(&y);
	cr_assert_eq(mc_frame_pool_used(&p, P), 0);
	/* and abort after -EAGAIN gives the space back */
	for (uint32_t i = 0; i < cap; i++)
		send_tagged(&p, BIT(Y), 0, i);
	g = make(&p, 64, 3, 1);
	cr_assert_eq(mc_frame_send(&p, g, BIT(X) | BIT(Y)), -EAGAIN);
	mc_frame_abort(&p, g);
	recv_none(&x);
	for (uint32_t i = 0; i < cap; i++) {
		recv_tagged(&y, &m, i, P);
		mc_frame_release(&y, &m);
	}
	recv_none(&y);
	cr_assert_eq(mc_frame_pool_used(&p, P), 0);
	mc_seg_detach(&p);
	mc_seg_detach(&x);
	mc_seg_detach(&y);
	down();
}

Test(frame, send_epipe_to_absent_or_failed_peer)
{
	struct mc_seg p, x;
	struct mc_frame *f;
	unsigned c0 = MC_SLOT_FIRST_CLIENT;

	up();
	worker(&p, P);
	worker(&x, X);
	cr_assert_eq(sup.slots[c0].sl_state, MC_SLOT_FREE);
	f = make(&p, 16, 0, 1);
	cr_assert_eq(mc_frame_send(&p, f, BIT(c0)), -EPIPE, "send to an unattached client slot");
	cr_assert_eq(mc_frame_send(&p, f, BIT(X) | BIT(c0)), -EPIPE);
	recv_none(&x);

	ck_pr_store_32(&sup.slots[Y].sl_state, MC_SLOT_FAILED);
	cr_assert_eq(mc_frame_send(&p, f, BIT(Y)), -EPIPE, "send to a failed worker");
	cr_assert_eq(mc_frame_send(&p, f, BIT(X) | BIT(Y)), -EPIPE);
	recv_none(&x);
	ck_pr_store_32(&sup.slots[Y].sl_state, MC_SLOT_STOPPED);
	cr_assert_eq(mc_frame_send(&p, f, BIT(Y)), -EPIPE, "send to a stopped worker");
	/* a worker being restarted still queues */
	ck_pr_store_32(&sup.slots[Y].sl_state, MC_SLOT_BACKOFF);
	cr_assert_eq(mc_frame_send(&p, f, BIT(X) | BIT(Y)), 0);
	{
		struct mc_msg m;

		recv_tagged(&x, &m, 1, P);
		mc_frame_release(&x, &m);
	}
	mc_seg_detach(&p);
	mc_seg_detach(&x);
	down();
}

Test(frame, send_einval_without_a_ring)
{
	struct mc_seg p, c1, c2;
	struct mc_frame *f;

	up();
	worker(&p, P);
	client(&c1, "one");
	client(&c2, "two");
	f = make(&p, 16, 0, 1);
	cr_assert_eq(mc_frame_send(&p, f, BIT(P)), -EINVAL, "send to self");
	cr_assert_eq(mc_frame_send(&p, f, BIT(P) | BIT(X)), -EINVAL, "self among others");
	cr_assert_eq(mc_frame_send(&p, f, BIT(MC_SLOT_SUPERVISOR)), -EINVAL, "to the supervisor");
	cr_assert_eq(mc_frame_send(&p, f, BIT(lay.nslots)), -EINVAL, "to a slot that is not there");
	cr_assert_eq(mc_frame_send(&p, f, BIT(MC_MAX_SLOTS + 1)), -EINVAL);
	cr_assert_eq(mc_frame_send(&p, f, 0), -EINVAL, "to nobody");
	mc_frame_abort(&p, f);

	f = make(&c1, 16, 0, 2);
	cr_assert_eq(mc_frame_send(&c1, f, c2.bit), -EINVAL, "client to client");
	cr_assert_eq(mc_frame_send(&c1, f, c2.bit | BIT(X)), -EINVAL);
	cr_assert_eq(mc_frame_send(&c1, f, c1.bit), -EINVAL, "client to self");
	mc_frame_abort(&c1, f);
	recv_none(&c2);
	cr_assert_eq(mc_frame_pool_used(&c1, (unsigned)c1.slot), 0);
	mc_seg_release_client(&c1);
	mc_seg_release_client(&c2);
	mc_seg_detach(&c1);
	mc_seg_detach(&c2);
	mc_seg_detach(&p);
	down();
}

/* ------------------------------------------------------------------ */
/* Forward                                                             */

Test(frame, forward_frees_after_every_holder)
{
	struct mc_seg p, m, x, y;
	struct mc_msg mm, mx, my;
	struct mc_frame *f;

	up();
	worker(&p, P);
	worker(&m, M);
	worker(&x, X);
	worker(&y, Y);
	send_tagged(&p, BIT(M), 500, 77);
	recv_tagged(&m, &mm, 77, P);
	f = mm.frame;
	cr_assert_eq(mc_frame_forward(&m, &mm, BIT(M)), -EINVAL, "forward to self");
	ck_pr_store_32(&sup.slots[Z].sl_state, MC_SLOT_FAILED);
	cr_assert_eq(mc_frame_forward(&m, &mm, BIT(X) | BIT(Z)), -EPIPE);
	recv_none(&x);
	cr_assert_eq(mc_frame_forward(&m, &mm, BIT(X) | BIT(Y)), 0);
	cr_assert_eq(f->f_holders, BIT(M) | BIT(X) | BIT(Y));
	mc_frame_release(&m, &mm);
	cr_assert_eq(f->f_holders, BIT(X) | BIT(Y));
	cr_assert_gt(mc_frame_pool_used(&p, P), 0, "freed while X and Y hold it");

	recv_tagged(&x, &mx, 77, M);             /* ring source: the forwarder */
	cr_assert_eq(mx.frame->f_src, P, "f_src must stay the producer");
	cr_assert_eq((uint8_t *)mx.frame - x.base, (uint8_t *)f - m.base,
	    "forward copied the frame");
	mc_frame_release(&x, &mx);
	cr_assert_gt(mc_frame_pool_used(&p, P), 0, "freed while Y holds it");
	recv_tagged(&y, &my, 77, M);
	mc_frame_release(&y, &my);
	cr_assert_eq(mc_frame_pool_used(&p, P), 0);
	recv_none(&x);
	recv_none(&y);
	recv_none(&m);
	mc_seg_detach(&p);
	mc_seg_detach(&m);
	mc_seg_detach(&x);
	mc_seg_detach(&y);
	down();
}

/* A forwarder in another process, receivers in two more. */
Test(frame, forward_across_processes)
{
	struct mc_seg p;
	struct chan ch[3];
	pid_t kids[3];
	const unsigned slots[3] = { M, X, Y };

	up();
	worker(&p, P);
	for (int i = 0; i < 3; i++) {
		chan_open(&ch[i]);
		kids[i] = ut_fork();
		if (kids[i] == 0) {
			struct mc_seg s;
			struct mc_msg m;
			uint64_t v;

			chan_child(&ch[i]);
			child_worker(&s, slots[i]);
			ut_put(ch[i].cp[1], 1);
			for (uint32_t n = 0; n < 1000; n++) {
				UT_CHK(child_recv(&s, &m) == 0, "frame %u never came", n);
				UT_CHK(m.frame->f_user == n, "got %u, expected %u", m.frame->f_user, n);
				UT_CHK(payload_ok(m.frame->f_data, m.frame->f_len, n), "payload %u", n);
				UT_CHK(m.frame->f_src == P, "f_src");
				UT_CHK(m.src == (i == 0 ? P : M), "ring source %u", m.src);
				if (i == 0) {
					int rc;

					while ((rc = mc_frame_forward(&s, &m, BIT(X) | BIT(Y))) == -EAGAIN)
						sched_yield();
					UT_CHK(rc == 0, "forward: %d", rc);
				}
				mc_frame_release(&s, &m);
			}
			UT_CHK(ut_get(ch[i].pc[0], &v, 60000), "done");
			UT_CHK(mc_recv(&s, &m) == -EAGAIN, "extra frame");
			mc_seg_detach(&s);
			_exit(0);
		}
		chan_parent(&ch[i]);
	}
	for (int i = 0; i < 3; i++)
		cr_assert_eq(chan_get(&ch[i], "ready"), 1);
	for (uint32_t n = 0; n < 1000; n++) {
		uint64_t until = now_ns() + 60ull * 1000000000ull;
		struct mc_frame *f;
		int e;

		while ((f = mc_frame_alloc(&p, 1 + n * 37 % 5000, 0, &e)) == NULL) {
			cr_assert_eq(e, -EAGAIN);
			cr_assert_lt(now_ns(), until, "pool never freed (frame %u)", n);
			sched_yield();
		}
		f->f_user = n;
		fill(f->f_data, f->f_len, n);
		while ((e = mc_frame_send(&p, f, BIT(M))) == -EAGAIN) {
			cr_assert_lt(now_ns(), until, "ring never drained (frame %u)", n);
			sched_yield();
		}
		cr_assert_eq(e, 0);
	}
	/* all three let go of everything: the pool drains */
	{
		uint64_t until = now_ns() + 60ull * 1000000000ull;

		while (mc_frame_pool_used(&p, P) != 0) {
			cr_assert_lt(now_ns(), until, "pool stuck at %llu bytes",
			    (unsigned long long)mc_frame_pool_used(&p, P));
			sched_yield();
		}
	}
	for (int i = 0; i < 3; i++)
		ut_put(ch[i].pc[1], 1);
	ut_wait_group(kids, 3, "forward chain");
	for (int i = 0; i < 3; i++)
		chan_close(&ch[i]);
	mc_seg_detach(&p);
	down();
}

/* ------------------------------------------------------------------ */
/* Duplicates                                                          */

static struct mc_desc desc_of(const struct mc_seg *s, const struct mc_frame *f)
{
	return (struct mc_desc){ .d_off = (uint64_t)((const uint8_t *)f - s->base),
	    .d_seq = f->f_seq };
}

/* The same descriptor delivered twice is received once. */
Test(frame, duplicate_descriptor_received_once)
{
	struct mc_seg p, x;
	struct mc_frame *f;
	struct mc_desc d;
	struct mc_msg m;

	up();
	worker(&p, P);
	worker(&x, X);
	f = make(&p, 40, 0, 9);
	d = desc_of(&p, f);
	cr_assert_eq(mc_frame_send(&p, f, BIT(X)), 0);
	cr_assert_eq(mc_ring_put(&p, ring_of(P, X), &d), 0);
	recv_tagged(&x, &m, 9, P);
	mc_frame_release(&x, &m);
	recv_none(&x);
	cr_assert_eq(mc_frame_pool_used(&p, P), 0);
	cr_assert_eq(x.rings[ring_of(P, X)].r_jpos, x.rings[ring_of(P, X)].r_ck.c_head,
	    "skipped duplicate left the journal window open");
	/* a stale descriptor of a freed frame is skipped too, later frames are not */
	cr_assert_eq(mc_ring_put(&p, ring_of(P, X), &d), 0);
	send_tagged(&p, BIT(X), 8, 10);
	recv_tagged(&x, &m, 10, P);
	mc_frame_release(&x, &m);
	recv_none(&x);
	mc_seg_detach(&p);
	mc_seg_detach(&x);
	down();
}

/*
 * "A process therefore holds a frame at most once at a time (duplicates
 * collapse)": a duplicate that arrives while the receiver still holds
 * the frame must not be handed out a second time.
 */
Test(frame, duplicate_while_held_collapses)
{
	struct mc_seg p, x;
	struct mc_frame *f;
	struct mc_desc d;
	struct mc_msg m1, m2;
	int rc;

	up();
	worker(&p, P);
	worker(&x, X);
	f = make(&p, 40, 0, 9);
	d = desc_of(&p, f);
	cr_assert_eq(mc_frame_send(&p, f, BIT(X)), 0);
	cr_assert_eq(mc_ring_put(&p, ring_of(P, X), &d), 0);
	recv_tagged(&x, &m1, 9, P);
	rc = mc_recv(&x, &m2);
	cr_expect_eq(rc, -EAGAIN, "the frame is held twice at once (second recv gave %d)", rc);
	mc_frame_release(&x, &m1);
	if (rc == 0)
		mc_frame_release(&x, &m2);
	recv_none(&x);
	mc_seg_detach(&p);
	mc_seg_detach(&x);
	down();
}

/*
 * Consequence of the above with a correct receiver (it releases every
 * message it was given): the second release of the duplicate lands on
 * whatever frame the producer has since put in the same block, and a
 * later frame for the same receiver is silently lost.
 */
Test(frame, duplicate_while_held_loses_no_later_frame)
{
	struct mc_seg p, x, y;
	struct mc_frame *f;
	struct mc_desc d;
	struct mc_msg m1, m2, my;
	uint64_t psize, pos0;
	uint32_t max;
	int rc;

	up();
	worker(&p, P);
	worker(&x, X);
	worker(&y, Y);
	psize = p.slots[P].sl_pool_size;
	max = (uint32_t)p.hdr->sh_max_frame;
	f = make(&p, 32, 0, 1);
	pos0 = (uint64_t)((uint8_t *)f - p.base);
	d = desc_of(&p, f);
	cr_assert_eq(mc_frame_send(&p, f, BIT(X)), 0);
	cr_assert_eq(mc_ring_put(&p, ring_of(P, X), &d), 0);   /* e.g. a recovery re-put */
	recv_tagged(&x, &m1, 1, P);
	rc = mc_recv(&x, &m2);
	if (rc != 0) {
		/* duplicates collapse: nothing more to check here */
		mc_frame_release(&x, &m1);
		goto out;
	}
	mc_frame_release(&x, &m1);

	/* the producer goes once around its pool, through Y */
	for (;;) {
		uint64_t at = p.slots[P].sl_pool_head % psize;
		uint64_t room = psize - at;
		uint32_t len;

		if (at == 0)
			break;
		len = room >= MC_FRAME_HDR_SIZE + (uint64_t)max ? max :
		    (uint32_t)(room - MC_FRAME_HDR_SIZE);
		send_tagged(&p, BIT(Y), len, 2);
		recv_tagged(&y, &my, 2, P);
		mc_frame_release(&y, &my);
	}
	/* the next frame for X reuses the block of the first one */
	f = make(&p, 32, 0, 3);
	cr_assert_eq((uint64_t)((uint8_t *)f - p.base), pos0, "test setup: block not reused");
	cr_assert_eq(mc_frame_send(&p, f, BIT(X)), 0);
	/* X finishes with the duplicate it was handed */
	mc_frame_release(&x, &m2);
	rc = mc_recv(&x, &m1);
	cr_expect_eq(rc, 0, "frame 3 for X was lost (recv gave %d)", rc);
	if (rc == 0) {
		cr_expect_eq(m1.frame->f_user, 3);
		mc_frame_release(&x, &m1);
	}
out:
	mc_seg_detach(&p);
	mc_seg_detach(&x);
	mc_seg_detach(&y);
	down();
}

/* ------------------------------------------------------------------ */
/* Crash recovery                                                      */

/*
 * (a) A consumer killed after taking frames: its successor in the slot
 * gets the unreleased ones again; the one it had released is not
 * redelivered.
 */
Test(frame, consumer_crash_redelivers_unreleased)
{
	struct mc_seg p;
	struct chan ch;
	pid_t a, b;
	uint64_t s1, s3, s4;

	up();
	worker(&p, P);
	s1 = send_tagged(&p, BIT(X), 100, 1);
	send_tagged(&p, BIT(X), 200, 2);
	s3 = send_tagged(&p, BIT(X), 300, 3);
	chan_open(&ch);
	a = ut_fork();
	if (a == 0) {
		struct mc_seg s;
		struct mc_msg m[3];
		uint64_t v;

		chan_child(&ch);
		child_worker(&s, X);
		for (int i = 0; i < 3; i++) {
			UT_CHK(child_recv(&s, &m[i]) == 0, "recv %d", i);
			UT_CHK(m[i].frame->f_user == (uint32_t)i + 1, "got %u", m[i].frame->f_user);
		}
		mc_frame_release(&s, &m[1]);            /* finished frame 2 only */
		ut_put(ch.cp[1], 1);
		ut_get(ch.pc[0], &v, 60000);
		for (;;)
			pause();
	}
	chan_parent(&ch);
	cr_assert_eq(chan_get(&ch, "took three"), 1);
	kill_and_reap(a);
	chan_close(&ch);
	s4 = send_tagged(&p, BIT(X), 400, 4);
	cr_assert_gt(mc_frame_pool_used(&p, P), 0);

	chan_open(&ch);
	b = ut_fork();
	if (b == 0) {
		struct mc_seg s;
		struct mc_msg m;

		chan_child(&ch);
		child_worker(&s, X);
		for (;;) {
			int rc = mc_recv(&s, &m);

			if (rc == -EAGAIN)
				break;
			UT_CHK(rc == 0, "recv: %d", rc);
			UT_CHK(payload_ok(m.frame->f_data, m.frame->f_len, m.frame->f_user),
			    "payload of %u", m.frame->f_user);
			ut_put(ch.cp[1], m.frame->f_seq);
			mc_frame_release(&s, &m);
		}
		ut_put(ch.cp[1], 0);
		mc_seg_detach(&s);
		_exit(0);
	}
	chan_parent(&ch);
	{
		uint64_t got[8];
		int n = 0;

		while (n < 8 && (got[n] = chan_get(&ch, "seq")) != 0)
			n++;
		cr_assert_eq(n, 3, "successor received %d frames, expected 1, 3 and 4", n);
		cr_assert_eq(got[0], s1);
		cr_assert_eq(got[1], s3, "released frame 2 was redelivered, or 3 lost");
		cr_assert_eq(got[2], s4);
	}
	ut_wait_ok(b, "successor");
	chan_close(&ch);
	cr_assert_eq(mc_frame_pool_used(&p, P), 0);
	mc_seg_detach(&p);
	down();
}

/* A child in slot P that allocates a frame for `mask`, sets the holders,
 * puts it to `put_mask` only, and dies. */
static void producer_dies_midway(uint64_t mask, uint64_t put_mask, uint32_t tag)
{
	pid_t c = ut_fork();

	if (c == 0) {
		struct mc_seg s;
		struct mc_frame *f;
		int e;

		child_worker(&s, P);
		f = mc_frame_alloc(&s, 500, 11, &e);
		UT_CHK(f != NULL, "alloc: %d", e);
		f->f_user = tag;
		fill(f->f_data, 500, tag);
		if (mask)
			ck_pr_store_64(&f->f_holders, mask);     /* rule 2: holders first */
		for (uint64_t m = put_mask; m; m &= m - 1) {
			struct mc_desc d = desc_of(&s, f);
			int r = mc_ring_index(&s, P, (unsigned)__builtin_ctzll(m));

			UT_CHK(r >= 0, "ring");
			UT_CHK(mc_ring_put(&s, (uint32_t)r, &d) == 0, "put");
		}
		_exit(0);       /* dies before the last put and before publishing */
	}
	ut_wait_ok(c, "dying producer");
}

/* A new process in the producer's slot; recovery happens in the claim. */
static void producer_restarts(void)
{
	pid_t c = ut_fork();

	if (c == 0) {
		struct mc_seg s;

		child_worker(&s, P);
		/* recovery is idempotent: running it again puts nothing more */
		UT_CHK(mc_frame_recover(&s, P) == 0, "recover");
		mc_seg_detach(&s);
		_exit(0);
	}
	ut_wait_ok(c, "restarted producer");
}

/* (b) crash between the holders store and the puts */
Test(frame, producer_crash_before_puts_recovered)
{
	struct mc_seg x, y, p;
	struct mc_msg m;

	up();
	worker(&x, X);
	worker(&y, Y);
	producer_dies_midway(BIT(X) | BIT(Y), 0, 31);
	recv_none(&x);
	recv_none(&y);
	producer_restarts();
	recv_tagged(&x, &m, 31, P);
	cr_assert_eq(m.frame->f_len, 500);
	cr_assert_eq(m.frame->f_kind, 11);
	mc_frame_release(&x, &m);
	recv_none(&x);
	recv_tagged(&y, &m, 31, P);
	mc_frame_release(&y, &m);
	recv_none(&y);
	worker(&p, P);
	cr_assert_eq(mc_frame_pool_used(&p, P), 0);
	mc_seg_detach(&p);
	mc_seg_detach(&x);
	mc_seg_detach(&y);
	down();
}

/* (b2) crash after putting to some destinations: the others still get it,
 * and the one that had it already does not handle it twice. */
Test(frame, producer_crash_between_puts_recovered)
{
	struct mc_seg x, y, p;
	struct mc_msg m;

	up();
	worker(&x, X);
	worker(&y, Y);
	producer_dies_midway(BIT(X) | BIT(Y), BIT(X), 32);
	recv_tagged(&x, &m, 32, P);
	mc_frame_release(&x, &m);
	recv_none(&y);
	producer_restarts();
	recv_none(&x);          /* the re-put copy is a replay of finished work */
	recv_tagged(&y, &m, 32, P);
	mc_frame_release(&y, &m);
	recv_none(&y);
	worker(&p, P);
	cr_assert_eq(mc_frame_pool_used(&p, P), 0);
	mc_seg_detach(&p);
	mc_seg_detach(&x);
	mc_seg_detach(&y);
	down();
}

/*
 * (b3) as (b2), but X is still working on its copy when the restarted
 * producer re-puts: "rule 4 drops the copies that already arrived", so X
 * must not be handed the frame a second time while it holds it.
 */
Test(frame, producer_crash_recovery_while_consumer_holds)
{
	struct mc_seg x, y;
	struct mc_msg m, again;
	int rc;

	up();
	worker(&x, X);
	worker(&y, Y);
	producer_dies_midway(BIT(X) | BIT(Y), BIT(X), 35);
	recv_tagged(&x, &m, 35, P);             /* X is working on it ... */
	producer_restarts();                    /* ... when P comes back */
	rc = mc_recv(&x, &again);
	cr_expect_eq(rc, -EAGAIN, "X was handed frame 35 again while holding it");
	if (rc == 0)
		mc_frame_release(&x, &again);
	mc_frame_release(&x, &m);
	recv_none(&x);
	recv_tagged(&y, &m, 35, P);
	mc_frame_release(&y, &m);
	recv_none(&y);
	mc_seg_detach(&x);
	mc_seg_detach(&y);
	down();
}

/* (b1) crash after alloc, before any holder: never sent, reclaimed. */
Test(frame, producer_crash_before_holders_reclaimed)
{
	struct mc_seg x, y, p;
	struct mc_msg m;

	up();
	worker(&x, X);
	worker(&y, Y);
	producer_dies_midway(0, 0, 33);
	producer_restarts();
	recv_none(&x);
	recv_none(&y);
	worker(&p, P);
	cr_assert_eq(mc_frame_pool_used(&p, P), 0, "unsent frame never reclaimed");
	/* and the slot works normally afterwards */
	send_tagged(&p, BIT(X), 10, 34);
	recv_tagged(&x, &m, 34, P);
	mc_frame_release(&x, &m);
	cr_assert_eq(mc_frame_pool_used(&p, P), 0);
	mc_seg_detach(&p);
	mc_seg_detach(&x);
	mc_seg_detach(&y);
	down();
}

/*
 * A forwarder dies after forwarding to X but before releasing: it still
 * holds the frame, its successor replays and forwards again; every
 * destination gets it (at least once) and the pool drains in the end.
 */
Test(frame, forwarder_crash_recovered)
{
	struct mc_seg p, x, y;
	struct mc_msg m;
	struct chan ch;
	pid_t a, b;
	int xn = 0;

	up();
	worker(&p, P);
	worker(&x, X);
	worker(&y, Y);
	send_tagged(&p, BIT(M), 64, 55);
	chan_open(&ch);
	a = ut_fork();
	if (a == 0) {
		struct mc_seg s;
		uint64_t v;

		chan_child(&ch);
		child_worker(&s, M);
		UT_CHK(child_recv(&s, &m) == 0, "recv");
		UT_CHK(mc_frame_forward(&s, &m, BIT(X)) == 0, "forward");
		ut_put(ch.cp[1], 1);
		ut_get(ch.pc[0], &v, 60000);
		for (;;)
			pause();
	}
	chan_parent(&ch);
	cr_assert_eq(chan_get(&ch, "forwarded"), 1);
	kill_and_reap(a);
	chan_close(&ch);
	recv_tagged(&x, &m, 55, M);
	xn++;
	mc_frame_release(&x, &m);
	cr_assert_gt(mc_frame_pool_used(&p, P), 0, "freed while the dead forwarder holds it");

	b = ut_fork();
	if (b == 0) {
		struct mc_seg s;

		child_worker(&s, M);
		UT_CHK(mc_recv(&s, &m) == 0, "forwarder's frame not replayed");
		UT_CHK(m.frame->f_user == 55, "tag %u", m.frame->f_user);
		UT_CHK(mc_frame_forward(&s, &m, BIT(X) | BIT(Y)) == 0, "forward again");
		mc_frame_release(&s, &m);
		UT_CHK(mc_recv(&s, &m) == -EAGAIN, "extra frame");
		mc_seg_detach(&s);
		_exit(0);
	}
	ut_wait_ok(b, "second forwarder");
	while (mc_recv(&x, &m) == 0) {
		cr_assert_eq(m.frame->f_user, 55);
		xn++;
		mc_frame_release(&x, &m);
	}
	cr_assert_geq(xn, 1);
	recv_tagged(&y, &m, 55, M);
	mc_frame_release(&y, &m);
	recv_none(&y);
	cr_assert_eq(mc_frame_pool_used(&p, P), 0);
	mc_seg_detach(&p);
	mc_seg_detach(&x);
	mc_seg_detach(&y);
	down();
}

/* (c) drain lets go of everything taken by or queued to a slot. */
Test(frame, drain_releases_everything_queued_to_a_slot)
{
	struct mc_seg p, q, x, y;
	struct mc_msg m;
	int n;

	up();
	worker(&p, P);
	worker(&q, Z);
	worker(&x, X);
	worker(&y, Y);
	for (uint32_t i = 0; i < 5; i++)
		send_tagged(&p, BIT(X), 100 + i, i);
	send_tagged(&q, BIT(X), 10, 100);
	send_tagged(&p, BIT(Y) | BIT(X), 10, 200);
	/* X takes two and holds them, then "dies" */
	recv_tagged(&x, &m, 0, P);
	cr_assert_eq(mc_recv(&x, &m), 0);
	mc_seg_detach(&x);

	n = mc_frame_drain(&sup, X);
	cr_assert_eq(n, 7, "drain released %d frames, expected 7", n);
	cr_assert_eq(mc_ring_depth(&sup, ring_of(P, X)), 0);
	cr_assert_eq(mc_ring_depth(&sup, ring_of(Z, X)), 0);
	cr_assert_eq(mc_frame_pool_used(&q, Z), 0);
	cr_assert_gt(mc_frame_pool_used(&p, P), 0, "Y still holds frame 200");
	recv_tagged(&y, &m, 200, P);
	mc_frame_release(&y, &m);
	cr_assert_eq(mc_frame_pool_used(&p, P), 0);
	/* nothing left for a successor in X; a second drain finds nothing */
	cr_assert_eq(mc_frame_drain(&sup, X), 0);
	worker(&x, X);
	recv_none(&x);
	send_tagged(&p, BIT(X), 1, 300);
	recv_tagged(&x, &m, 300, P);
	mc_frame_release(&x, &m);
	mc_seg_detach(&p);
	mc_seg_detach(&q);
	mc_seg_detach(&x);
	mc_seg_detach(&y);
	down();
}

/* Descriptors pointing anywhere are skipped; a good frame behind them arrives. */
Test(frame, bad_descriptors_are_skipped)
{
	struct mc_seg p, x;
	struct mc_msg m;
	const struct mc_seg_hdr *h;
	uint64_t pool, psize;
	struct mc_frame *g;
	uint32_t r;

	up();
	worker(&p, P);
	worker(&x, X);
	h = sup.hdr;
	r = ring_of(P, X);
	pool = sup.slots[P].sl_pool_off;
	psize = sup.slots[P].sl_pool_size;

	/* plausible-looking garbage inside the producer's pool, far from head */
	g = (struct mc_frame *)(sup.base + pool + psize / 2);
	g->f_size = 0xffffffe0u;                 /* absurd size */
	g->f_len = 8;
	g->f_holders = BIT(X);
	g->f_seq = 5;
	g = (struct mc_frame *)(sup.base + pool + psize / 2 + 4096);
	g->f_size = 64;
	g->f_len = 1000;                         /* longer than its block */
	g->f_holders = BIT(X);
	g->f_seq = 6;
	g = (struct mc_frame *)(sup.base + pool + psize / 2 + 8192);
	g->f_size = 0;                           /* empty block */
	g->f_holders = BIT(X);
	g->f_seq = 7;
	g = (struct mc_frame *)(sup.base + pool + psize - MC_FRAME_HDR_SIZE);
	g->f_size = 4 * MC_FRAME_HDR_SIZE;       /* runs past the end of the pool */
	g->f_len = 0;
	g->f_holders = BIT(X);
	g->f_seq = 8;
	{
		const struct mc_desc bad[] = {
			{ 0, 1 },                                        /* the header */
			{ h->sh_slots_off, 1 },
			{ h->sh_mq_off - MC_FRAME_HDR_SIZE, 1 },         /* before the queue */
			{ pool + 3, 1 },                                 /* misaligned */
			{ pool + 16, 1 },
			{ h->sh_mq_off + (uint64_t)(h->sh_nslots - 1) * h->sh_pool_size, 1 },
			{ h->sh_mq_off + h->sh_mq_size, 1 },             /* past the queue */
			{ h->sh_size, 1 },                               /* past the segment */
			{ h->sh_size + (1ull << 40), 1 },
			{ UINT64_MAX & ~(uint64_t)(MC_FRAME_HDR_SIZE - 1), 1 },
			{ UINT64_MAX, 1 },
			{ pool + psize / 2, 5 },
			{ pool + psize / 2 + 4096, 6 },
			{ pool + psize / 2 + 8192, 7 },
			{ pool + psize - MC_FRAME_HDR_SIZE, 8 },
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			cr_assert_eq(mc_ring_put(&p, r, &bad[i]), 0);
	}
	send_tagged(&p, BIT(X), 123, 4242);
	recv_tagged(&x, &m, 4242, P);
	mc_frame_release(&x, &m);
	recv_none(&x);
	cr_assert_eq(x.rings[r].r_jpos, x.rings[r].r_ck.c_head,
	    "skipped descriptors left the journal window open");
	cr_assert_eq(mc_frame_pool_used(&p, P), 0);
	/* drain copes with them as well */
	{
		const struct mc_desc bad = { UINT64_MAX & ~(uint64_t)31, 1 };

		cr_assert_eq(mc_ring_put(&p, r, &bad), 0);
		cr_assert_eq(mc_frame_drain(&sup, X), 0);
	}
	mc_seg_detach(&p);
	mc_seg_detach(&x);
	down();
}

/* More unreleased frames from one ring than its journal holds: -ENOBUFS. */
Test(frame, recv_enobufs_when_journal_full)
{
	struct mc_seg p, x;
	struct mc_msg *m;
	uint32_t j;
	int rc;

	up();
	worker(&p, P);
	worker(&x, X);
	j = sup.hdr->sh_journal_entries;
	m = calloc(j + 8, sizeof(*m));
	cr_assert_not_null(m);
	for (uint32_t i = 0; i < j + 8; i++)
		send_tagged(&p, BIT(X), 0, i);
	for (uint32_t i = 0; i < j; i++)
		recv_tagged(&x, &m[i], i, P);
	rc = mc_recv(&x, &m[j]);
	cr_assert_eq(rc, -ENOBUFS, "recv past a full journal gave %d", rc);
	for (uint32_t i = 0; i < j; i++)
		mc_frame_release(&x, &m[i]);
	for (uint32_t i = j; i < j + 8; i++) {
		recv_tagged(&x, &m[i], i, P);
		mc_frame_release(&x, &m[i]);
	}
	recv_none(&x);
	cr_assert_eq(mc_frame_pool_used(&p, P), 0);
	free(m);
	mc_seg_detach(&p);
	mc_seg_detach(&x);
	down();
}

/*
 * Several producers into one consumer: round-robin (in bursts, so no ring
 * starves while another stays busy), per-ring order kept.
 */
Test(frame, recv_round_robin_and_recv_from)
{
	enum { N = 300 };
	struct mc_seg p, q, x;
	struct mc_msg m;
	int from_p = 0, from_q = 0;
	uint32_t next_p = 0, next_q = 1000;

	up();
	worker(&p, P);
	worker(&q, Y);
	worker(&x, X);
	for (uint32_t i = 0; i < N; i++) {
		send_tagged(&p, BIT(X), 8, i);
		send_tagged(&q, BIT(X), 8, 1000 + i);
	}
	/* recv_from reads only the ring it is given */
	cr_assert_eq(mc_recv_from(&x, ring_of(Y, X), &m), 0);
	cr_assert_eq(m.src, Y);
	cr_assert_eq(m.frame->f_user, next_q++);
	mc_frame_release(&x, &m);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(mc_recv(&x, &m), 0);
		if (m.src == P) {
			cr_assert_eq(m.frame->f_user, next_p++);
			from_p++;
		} else {
			cr_assert_eq(m.src, Y);
			cr_assert_eq(m.frame->f_user, next_q++);
			from_q++;
		}
		mc_frame_release(&x, &m);
	}
	cr_assert(from_p >= N / 4 && from_q >= N / 4,
	    "one ring starved the other: %d from one, %d from the other in %d", from_p, from_q, N);
	while (mc_recv(&x, &m) == 0) {
		if (m.src == P)
			cr_assert_eq(m.frame->f_user, next_p++);
		else
			cr_assert_eq(m.frame->f_user, next_q++);
		mc_frame_release(&x, &m);
	}
	cr_assert_eq(next_p, N);
	cr_assert_eq(next_q, 1000 + N);
	mc_seg_detach(&p);
	mc_seg_detach(&q);
	mc_seg_detach(&x);
	down();
}
