/*
 * mc_ring.h - SPSC descriptor rings between slots, with a consumer journal.
 *
 * PROTOCOL
 * Ring (src -> dst) is a Concurrency Kit ck_ring of 16-byte descriptors
 * (struct mc_desc) used strictly single-producer (the process in slot src)
 * / single-consumer (the process in slot dst).  SPSC only, on purpose:
 * ck_ring's multi-producer enqueue reserves a slot with a CAS and then
 * waits for earlier producers to publish; a producer killed between the
 * two wedges the ring for everyone.  Where several processes feed one
 * consumer, each has its own ring and the consumer polls them all.
 *
 * At-least-once delivery across a consumer crash: the consumer dequeues
 * *into its journal*, an array in the segment indexed by ring position.
 * ck_ring_dequeue copies the entry and only then advances c_head, so at
 * any instant every position in [r_jpos, c_head) has a complete copy in
 * the journal.  The consumer advances r_jpos (commit) only once it has
 * finished everything it took.  A restarted consumer first replays the
 * journal window [r_jpos, c_head), then continues with the ring.  Replayed
 * entries may have been finished already: the frame layer recognises them
 * (sequence number + holder bit, mc_frame.h) and skips them.
 *
 * Memory ordering: ck_ring orders the entry copy before the p_tail store
 * (store fence) and the p_tail load before the entry read (load fence);
 * the descriptor's frame was fully written before it was put, so a
 * consumer that sees a descriptor sees its frame.
 *
 * Wake-ups: each slot has a doorbell (ck_ec32, multi-producer mode) in
 * the segment.  A consumer with nothing to do spins briefly and then
 * sleeps in FUTEX_WAIT on it; producers mc_ring_notify() after putting,
 * which is one atomic increment plus a FUTEX_WAKE only if someone sleeps.
 *
 * FRAME TOTALS
 * The ring's cursors are its frame counters: p_tail counts every put,
 * c_head every take (journal replays do not move it, so a frame taken
 * twice across a consumer crash counts once; frames the supervisor drains
 * for a dead client count as taken).  They are 32-bit and wrap, so the
 * monitor worker keeps a 64-bit extension of each in the ring's monitor
 * line: r_mon_put and r_mon_taken, whose low 32 bits are the cursor's
 * value when the monitor last looked.  It advances them (single writer;
 * one whole 64-bit store each, with release ordering, so no reader sees a
 * torn word) by t += (uint32_t)(cursor - (uint32_t)t).  Any process computes
 * the current total as t + (uint32_t)(cursor - (uint32_t)t), loading t
 * first (acquire), which is exact while fewer than 2^32 frames passed
 * through the ring since the last advance.  The monitor advances every
 * ring at least once a second (at 30 M frames/s a wrap takes 143 s); while
 * the monitor is down for longer than a wrap, totals lose multiples of
 * 2^32.  The words live in the segment: they survive a restart of either
 * end and of the monitor, and rings are never re-initialised, so the
 * totals never go backwards while the instance lives.  Counting this way
 * costs the producer and the consumer nothing.
 *
 * OWNERSHIP
 *   r_ck.p_tail, r_full              producer (process in slot r_src)
 *   r_ck.c_head, r_jpos, journal     consumer (process in slot r_dst)
 *   r_mon_put, r_mon_taken           the monitor worker (MC_WORKER_MONITOR)
 *   everything else                  supervisor, at creation
 */
#ifndef MC_RING_H
#define MC_RING_H

#include <ck_ring.h>
#include <stdbool.h>
#include <stdint.h>

#include "mc_seg.h"

struct mc_desc {
	uint64_t d_off;         /* segment offset of the frame */
	uint64_t d_seq;         /* the frame's sequence number (identity check) */
};

CK_RING_PROTOTYPE(mc_desc, mc_desc)

struct mc_ring {
	ck_ring_t r_ck;
	uint16_t  r_src;
	uint16_t  r_dst;
	uint32_t  r_journal_mask;
	uint64_t  r_buf_off;            /* entries: segment offset */
	uint64_t  r_journal_off;        /* journal: segment offset */
	uint32_t  r_jpos __attribute__((aligned(64)));   /* consumer */
	uint64_t  r_full __attribute__((aligned(64)));   /* producer: puts refused */
	/* monitor: 64-bit extensions of p_tail and c_head (FRAME TOTALS) */
	uint64_t  r_mon_put __attribute__((aligned(64)));
	uint64_t  r_mon_taken;
};

/* Process-local consumer cursor per inbound ring (not in the segment). */
struct mc_inbox {
	uint32_t rp;            /* next journal position to replay (== c_head when done) */
	uint32_t held;          /* entries taken and not yet finished */
	struct mc_ring *ring;   /* shortcuts into the segment, set on claim */
	struct mc_desc *buf;
	struct mc_desc *journal;
};

/* Initialise ring `idx` (src -> dst).  Supervisor, at creation. */
void mc_ring_init(struct mc_seg *seg, uint32_t idx, unsigned src, unsigned dst);

/*
 * Any process.  Frames put into / taken from ring idx since the segment
 * was created (FRAME TOTALS: exact while the monitor keeps up).  A total
 * read later is never smaller than one read earlier, in any process.
 */
uint64_t mc_ring_frames_put(const struct mc_seg *seg, uint32_t idx);
uint64_t mc_ring_frames_taken(const struct mc_seg *seg, uint32_t idx);

/*
 * The monitor worker only (the single writer of r_mon_*), at least once a
 * second for every ring: bring ring idx's 64-bit totals up to its cursors.
 */
void mc_ring_mon_advance(struct mc_seg *seg, uint32_t idx);

/* Ring index for (src, dst) or -1. */
static inline int mc_ring_index(const struct mc_seg *seg, unsigned src, unsigned dst)
{
	if (src >= seg->hdr->sh_nslots || dst >= seg->hdr->sh_nslots)
		return -1;
	return seg->ringmap[src * seg->hdr->sh_nslots + dst];
}

/* Entries waiting in the ring (any process; a snapshot). */
uint32_t mc_ring_depth(const struct mc_seg *seg, uint32_t idx);

/* Entries the ring can hold. */
uint32_t mc_ring_capacity(const struct mc_seg *seg, uint32_t idx);

/*
 * Producer.  Is there room for one more entry?  Only the producer can
 * fill a ring, so a true answer stays true until the producer puts.
 */
bool mc_ring_has_room(const struct mc_seg *seg, uint32_t idx);

/* Producer.  Put one descriptor; -EAGAIN when full (counted in r_full). */
int mc_ring_put(struct mc_seg *seg, uint32_t idx, const struct mc_desc *d);

/*
 * Producer.  Wake slot `dst` if it sleeps.  Call after a batch of puts.
 * Costs one plain load unless the consumer has flagged its doorbell before
 * sleeping.  Without a store-load fence a put may race with the consumer
 * falling asleep (x86 lets our load pass our p_tail store); the consumer
 * then finds the entry on its next timed re-check, at most
 * MC_BELL_RECHECK_NS later.  A fence per message would cost more than that
 * rare delay is worth; mc_ring_notify_sync() is the fenced variant.
 */
void mc_ring_notify(struct mc_seg *seg, unsigned dst);
void mc_ring_notify_sync(struct mc_seg *seg, unsigned dst);

/*
 * LAZY FRAMES AND NAPS.  Some frames nobody waits for: copies of MCP
 * messages for the store and the monitor, learning data (the kinds of
 * mc_proto_kind_lazy).  Waking a consumer for each of them costs two
 * context switches a frame, which on a two-core box is the whole budget.
 * So a consumer that has just worked through such frames may nap
 * (mc_ring_nap): it flags sl_napping and sleeps on its doorbell for a
 * while, MC_RING_NAP_NS unless it has a reason of its own (the store
 * gathers a group commit).  While it naps, producers skip the wake-up for
 * lazy frames (mc_ring_notify_lazy); any other frame wakes it as usual.
 * So lazy frames wait at most one nap and are then taken as a batch; a
 * consumer that is not napping (idle, or one that never naps, such as a
 * Python client) is woken by every frame.  sl_napping is written only by
 * the slot's own process.
 */
#define MC_RING_NAP_NS 1000000ull

/* Producer.  mc_ring_notify, unless the frame is lazy and dst naps. */
void mc_ring_notify_lazy(struct mc_seg *seg, unsigned dst, bool lazy);

/*
 * Consumer.  Sleep until ns passed, or a frame that is not lazy was sent
 * to us, or a signal came: see LAZY FRAMES AND NAPS.  Call it when a look
 * at the rings found nothing; it returns at once if something came since.
 * Returns with sl_napping cleared and a full fence after it, so the
 * caller's next look at its rings sees every frame whose producer saw
 * the flag clear.
 */
void mc_ring_nap(struct mc_seg *seg, uint64_t ns);

#define MC_BELL_RECHECK_NS 100000u

/*
 * Producer.  Batch the wake-ups: while deferred, mc_ring_notify only notes
 * the destination, and mc_ring_ring_bells() wakes each noted one once.  A
 * process that sends many frames per turn of its loop (the protocol worker)
 * pays one futex wake per destination per turn instead of one per frame
 * whenever the consumer sleeps between frames.  It must ring before it
 * waits for anything; a bell it forgets costs the consumer at most its
 * timed re-check.  Turning deferral off rings what is pending.
 */
void mc_ring_defer_bells(struct mc_seg *seg, bool on);
void mc_ring_ring_bells(struct mc_seg *seg);

/*
 * Consumer.  Take the next descriptor: first any journal replay, then the
 * ring.  Returns 0, -EAGAIN (nothing), or -ENOBUFS (journal full: finish
 * and commit what was taken first).  The entry is recorded as held.
 */
int mc_ring_take(struct mc_seg *seg, uint32_t idx, struct mc_desc *out);

/*
 * Consumer.  Everything taken from ring idx so far is finished: advance
 * the journal window.  Called by the frame layer when held drops to 0.
 */
void mc_ring_commit(struct mc_seg *seg, uint32_t idx);

/* Consumer.  Set up replay cursors for every inbound ring (on claim). */
void mc_ring_attach_inbox(struct mc_seg *seg);

/* Consumer.  Is anything waiting in an inbound ring or its replay window? */
bool mc_ring_pending(const struct mc_seg *seg);

/*
 * Consumer.  Poll for up to spin_ns (sched_yield() between looks, so a
 * producer needing this core gets it), then sleep on the slot's doorbell
 * until something arrives or timeout_ns passes.  Returns true when work
 * is pending, false when the time passed without any.  A ring with nothing
 * pending (a producer's late notify for an entry already taken) does not
 * end the sleep, and neither does a signal: a caller that must notice one
 * (its stop flag) bounds timeout_ns.
 */
bool mc_ring_wait(struct mc_seg *seg, uint64_t spin_ns, uint64_t timeout_ns);

#endif /* MC_RING_H */
