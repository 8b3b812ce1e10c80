/*
 * ring.c - SPSC descriptor rings, consumer journal and doorbells
 * (protocol in mc_ring.h).
 */
#include "mc_ring.h"

#include <errno.h>
#include <sched.h>
#include <limits.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "mc_util.h"

_Static_assert(sizeof(struct mc_ring) <= MC_RING_SIZE, "mc_ring outgrew MC_RING_SIZE");
_Static_assert(sizeof(struct mc_desc) == MC_DESC_SIZE, "mc_desc must stay 16 bytes");

static inline struct mc_ring *mc_ring_at(const struct mc_seg *seg, uint32_t idx)
{
	return &seg->rings[idx];
}

static inline struct mc_desc *mc_ring_buf(const struct mc_seg *seg, const struct mc_ring *r)
{
	return (struct mc_desc *)(seg->base + r->r_buf_off);
}

static inline struct mc_desc *mc_ring_journal(const struct mc_seg *seg, const struct mc_ring *r)
{
	return (struct mc_desc *)(seg->base + r->r_journal_off);
}

void mc_ring_init(struct mc_seg *seg, uint32_t idx, unsigned src, unsigned dst)
{
	struct mc_seg_hdr *h = seg->hdr;
	struct mc_ring *r = mc_ring_at(seg, idx);

	ck_ring_init(&r->r_ck, h->sh_ring_entries);
	r->r_src = (uint16_t)src;
	r->r_dst = (uint16_t)dst;
	r->r_journal_mask = h->sh_journal_entries - 1;
	r->r_buf_off = h->sh_ringbuf_off + (uint64_t)idx * h->sh_ring_entries * MC_DESC_SIZE;
	r->r_journal_off = h->sh_journal_off + (uint64_t)idx * h->sh_journal_entries * MC_DESC_SIZE;
	r->r_jpos = 0;
	r->r_full = 0;
	/* ck_ring_init starts both cursors at 0: so do their extensions */
	r->r_mon_put = 0;
	r->r_mon_taken = 0;
}

/* --- frame totals: 64-bit extensions of the 32-bit cursors (mc_ring.h) --- */

/*
 * t's low 32 bits are the cursor when the monitor last looked; the cursor
 * moved (cur - low) mod 2^32 since.  t is loaded first, with acquire: the
 * monitor read a cursor value before it stored t (release), so the cursor
 * we load afterwards is at least that value and the difference cannot go
 * "negative" (which would wrap to ~2^32).
 */
static inline uint64_t mc_ring_extend(const uint64_t *t, const unsigned int *cursor)
{
	uint64_t base = ck_pr_load_64(t);
	uint32_t cur;

	ck_pr_fence_acquire();
	cur = ck_pr_load_uint(cursor);
	return base + (uint32_t)(cur - (uint32_t)base);
}

uint64_t mc_ring_frames_put(const struct mc_seg *seg, uint32_t idx)
{
	const struct mc_ring *r = mc_ring_at(seg, idx);

	return mc_ring_extend(&r->r_mon_put, &r->r_ck.p_tail);
}

uint64_t mc_ring_frames_taken(const struct mc_seg *seg, uint32_t idx)
{
	const struct mc_ring *r = mc_ring_at(seg, idx);

	return mc_ring_extend(&r->r_mon_taken, &r->r_ck.c_head);
}

void mc_ring_mon_advance(struct mc_seg *seg, uint32_t idx)
{
	struct mc_ring *r = mc_ring_at(seg, idx);
	uint64_t put = mc_ring_extend(&r->r_mon_put, &r->r_ck.p_tail);
	uint64_t taken = mc_ring_extend(&r->r_mon_taken, &r->r_ck.c_head);

	/* release: the cursor loads above come before the stores readers
	 * pair with; an unchanged word is not rewritten (no line ping-pong
	 * with readers of idle rings) */
	ck_pr_fence_release();
	if (put != r->r_mon_put)
		ck_pr_store_64(&r->r_mon_put, put);
	if (taken != r->r_mon_taken)
		ck_pr_store_64(&r->r_mon_taken, taken);
}

uint32_t mc_ring_depth(const struct mc_seg *seg, uint32_t idx)
{
	return ck_ring_size(&mc_ring_at(seg, idx)->r_ck);
}

uint32_t mc_ring_capacity(const struct mc_seg *seg, uint32_t idx)
{
	/* ck_ring keeps one slot empty to tell full from empty */
	return ck_ring_capacity(&mc_ring_at(seg, idx)->r_ck) - 1;
}

bool mc_ring_has_room(const struct mc_seg *seg, uint32_t idx)
{
	const struct mc_ring *r = mc_ring_at(seg, idx);

	return ck_ring_size(&r->r_ck) < r->r_ck.mask;
}

int mc_ring_put(struct mc_seg *seg, uint32_t idx, const struct mc_desc *d)
{
	struct mc_ring *r = mc_ring_at(seg, idx);

	if (MC_UNLIKELY(!ck_ring_enqueue_spsc_mc_desc(&r->r_ck, mc_ring_buf(seg, r),
	    (struct mc_desc *)d))) {
		ck_pr_store_64(&r->r_full, r->r_full + 1);
		return -EAGAIN;
	}
	return 0;
}

/* --- doorbells: ck_ec32 over a shared (not process-private) futex --- */

static int mc_bell_gettime(const struct ck_ec_ops *ops, struct timespec *out)
{
	(void)ops;
	return clock_gettime(CLOCK_MONOTONIC, out);
}

static void mc_bell_wait32(const struct ck_ec_wait_state *st, const uint32_t *addr,
    uint32_t expected, const struct timespec *deadline)
{
	(void)st;
	/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline; no
	 * FUTEX_PRIVATE_FLAG because waker and sleeper are different processes. */
	syscall(SYS_futex, addr, FUTEX_WAIT_BITSET, expected, deadline, NULL,
	    FUTEX_BITSET_MATCH_ANY);
}

static void mc_bell_wake32(const struct ck_ec_ops *ops, const uint32_t *addr)
{
	(void)ops;
	syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* The first sleep is short (see mc_ring_notify): a wake-up missed by the
 * fence-free notify is found by the predicate after MC_BELL_RECHECK_NS. */
static const struct ck_ec_ops mc_bell_ops = {
	.gettime = mc_bell_gettime,
	.wait32 = mc_bell_wait32,
	.wake32 = mc_bell_wake32,
	.initial_wait_ns = MC_BELL_RECHECK_NS,
	.wait_scale_factor = 4,
};

/* Many producers ring one doorbell: multi-producer mode. */
static const struct ck_ec_mode mc_bell_mode = {
	.ops = &mc_bell_ops,
	.single_producer = false,
};

void mc_ring_notify(struct mc_seg *seg, unsigned dst)
{
	struct ck_ec32 *bell = &seg->slots[dst].sl_bell;

	if (seg->bells_deferred) {
		seg->bells |= 1ULL << dst;
		return;
	}
	if (ck_ec32_has_waiters(bell))
		ck_ec32_inc(bell, &mc_bell_mode);
}

void mc_ring_notify_lazy(struct mc_seg *seg, unsigned dst, bool lazy)
{
	/* a napper comes back by itself within MC_RING_NAP_NS */
	if (lazy && ck_pr_load_32(&seg->slots[dst].sl_napping))
		return;
	mc_ring_notify(seg, dst);
}

void mc_ring_defer_bells(struct mc_seg *seg, bool on)
{
	if (!on)
		mc_ring_ring_bells(seg);
	seg->bells_deferred = on;
}

void mc_ring_ring_bells(struct mc_seg *seg)
{
	uint64_t b = seg->bells;

	seg->bells = 0;
	for (; b; b &= b - 1) {
		struct ck_ec32 *bell = &seg->slots[__builtin_ctzll(b)].sl_bell;

		if (ck_ec32_has_waiters(bell))
			ck_ec32_inc(bell, &mc_bell_mode);
	}
}

void mc_ring_notify_sync(struct mc_seg *seg, unsigned dst)
{
	ck_ec32_inc(&seg->slots[dst].sl_bell, &mc_bell_mode);   /* locked: a full fence */
}

/* --- consumer side --- */

void mc_ring_attach_inbox(struct mc_seg *seg)
{
	for (uint32_t i = 0; i < seg->ninbound; i++) {
		uint32_t idx = seg->inbound[i];
		struct mc_ring *r = mc_ring_at(seg, idx);
		struct mc_inbox *in = &seg->inbox[idx];

		in->ring = r;
		in->buf = mc_ring_buf(seg, r);
		in->journal = mc_ring_journal(seg, r);
		in->rp = ck_pr_load_uint(&r->r_jpos);
		in->held = 0;
	}
}

int mc_ring_take(struct mc_seg *seg, uint32_t idx, struct mc_desc *out)
{
	struct mc_inbox *in = &seg->inbox[idx];
	struct mc_ring *r = in->ring;
	unsigned int head = r->r_ck.c_head;      /* we are its only writer */
	unsigned int jmask = r->r_journal_mask;
	struct mc_desc *slot;

	if (in->held == 0 && r->r_jpos != in->rp)
		ck_pr_store_uint(&r->r_jpos, in->rp);   /* nothing outstanding */
	if (MC_UNLIKELY(in->rp != head)) {
		/* replaying what a previous incarnation took but may not have finished */
		*out = in->journal[in->rp & jmask];
		in->rp++;
		in->held++;
		return 0;
	}
	if (MC_UNLIKELY(head - r->r_jpos > jmask))
		return -ENOBUFS;
	/* ck copies the entry into the journal before it publishes c_head+1 */
	slot = &in->journal[head & jmask];
	if (!ck_ring_dequeue_spsc_mc_desc(&r->r_ck, in->buf, slot))
		return -EAGAIN;
	*out = *slot;
	in->rp = head + 1;
	in->held++;
	return 0;
}

void mc_ring_commit(struct mc_seg *seg, uint32_t idx)
{
	struct mc_inbox *in = &seg->inbox[idx];

	in->held = 0;
	/* release: the frame work before this point is done before the window moves */
	ck_pr_fence_store();
	ck_pr_store_uint(&in->ring->r_jpos, in->rp);
}

bool mc_ring_pending(const struct mc_seg *seg)
{
	for (uint32_t i = 0; i < seg->ninbound; i++) {
		const struct mc_inbox *in = &seg->inbox[seg->inbound[i]];

		if (in->rp != ck_pr_load_uint(&in->ring->r_ck.p_tail))
			return true;
	}
	return false;
}

struct mc_ring_waiter {
	const struct mc_seg *seg;
	struct timespec deadline;
};

static bool mc_ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/*
 * Called by ck_ec between futex waits.  Besides checking for work, it
 * caps ck's exponentially growing wait (2 ms, 16 ms, 128 ms, 1 s ...) at
 * our deadline: ck 0.7 does not cap an iteration by the caller's deadline,
 * so without this a sleeper could oversleep its heartbeat by ~1 s.
 */
static int mc_ring_pred(const struct ck_ec_wait_state *st, struct timespec *deadline)
{
	const struct mc_ring_waiter *w = st->data;

	if (mc_ring_pending(w->seg))
		return 1;
	if (!mc_ts_before(&st->now, &w->deadline))
		return 2;
	if (mc_ts_before(&w->deadline, deadline))
		*deadline = w->deadline;
	return 0;
}

/* A nap ends at its deadline (or on a bell: ck returns when it changes). */
static int mc_ring_nap_pred(const struct ck_ec_wait_state *st, struct timespec *deadline)
{
	const struct mc_ring_waiter *w = st->data;

	if (!mc_ts_before(&st->now, &w->deadline))
		return 2;
	*deadline = w->deadline;        /* one futex sleep to the end, not ck's ladder */
	return 0;
}

void mc_ring_nap(struct mc_seg *seg, uint64_t ns)
{
	struct mc_slot *self = &seg->slots[seg->slot];
	uint64_t end = mc_now_ns() + ns;
	struct mc_ring_waiter waiter = { .seg = seg };
	uint32_t seen;

	ck_pr_store_32(&self->sl_napping, 1);
	seen = ck_ec32_value(&self->sl_bell);
	/*
	 * The caller found nothing, but a frame may have come since, and its
	 * producer saw no sleeper to wake: if it is not lazy it must not wait
	 * out the nap, so anything pending now ends the nap before it starts.
	 * (One that comes between this look and ck flagging us as a sleeper
	 * still does; that window is a few instructions wide.)
	 */
	ck_pr_fence_memory();
	if (!mc_ring_pending(seg)) {
		waiter.deadline.tv_sec = (time_t)(end / 1000000000ULL);
		waiter.deadline.tv_nsec = (long)(end % 1000000000ULL);
		ck_ec32_wait_pred(&self->sl_bell, &mc_bell_mode, seen, mc_ring_nap_pred, &waiter,
		    &waiter.deadline);
	}
	ck_pr_store_32(&self->sl_napping, 0);
	/* store-load, our half of the handshake; the producer's notify has no
	 * fence (mc_ring_notify), so a lazy frame whose producer still saw 1 is
	 * found by our next look or, at worst, by the timed re-check of our
	 * next wait (MC_BELL_RECHECK_NS) */
	ck_pr_fence_memory();
}

bool mc_ring_wait(struct mc_seg *seg, uint64_t spin_ns, uint64_t timeout_ns)
{
	struct ck_ec32 *bell = &seg->slots[seg->slot].sl_bell;
	uint64_t start = mc_now_ns(), end;
	struct mc_ring_waiter waiter = { .seg = seg };
	uint32_t seen;

	for (unsigned n = 0;; n++) {
		if (mc_ring_pending(seg))
			return true;
		if ((n & 7) == 7 && mc_now_ns() - start >= spin_ns)
			break;
		/*
		 * Yield rather than spin: with more busy processes than cores (five
		 * workers, clients, on two here) the producer we wait for may need
		 * this core.  With nobody else to run, sched_yield returns at once
		 * and this is a spin with a syscall in it.
		 */
		sched_yield();
	}
	end = start + timeout_ns;
	waiter.deadline.tv_sec = (time_t)(end / 1000000000ULL);
	waiter.deadline.tv_nsec = (long)(end % 1000000000ULL);
	/*
	 * Snapshot the doorbell, then re-check: a put after the snapshot
	 * changes the value (or is seen by the predicate), so no wake-up is
	 * lost.  A change with nothing pending is a late ring: a producer
	 * that put, was preempted before its notify, and rang after we had
	 * taken the entry and gone back to sleep (a waiter flag left set by
	 * an earlier wait lets any notify ring).  That is no reason to stop
	 * waiting: snapshot again and sleep on, up to the same deadline.
	 */
	for (;;) {
		seen = ck_ec32_value(bell);
		if (mc_ring_pending(seg))
			return true;
		if (ck_ec32_wait_pred(bell, &mc_bell_mode, seen, mc_ring_pred, &waiter,
		    &waiter.deadline) != 0)
			return mc_ring_pending(seg);    /* work (1), the deadline (2 or -1) */
		if (mc_now_ns() >= end)
			return mc_ring_pending(seg);
	}
}
