/*
 * mc_state_writer.h - the only writer of the state table (mc_state.h):
 * applies operations, allocates value space, keeps the change-feed list,
 * expires entries, and repairs whatever a crash interrupted.
 *
 * Called only by the state worker process, from one thread.
 *
 * CRASH SAFETY
 * Every change to the table is one "commit": the entry's complete new
 * contents, the block to free and the counters' new values are written to
 * the intent record first (mc_state.h), then applied.  A block is taken
 * from a free list or the arena top only after the intent says which and
 * what the list looked like.  So whatever instruction the worker dies at,
 * mc_state_writer_open() in its successor either finishes the commit
 * (COMMITTING) or gives the block back (ALLOCATING, FILLING); nothing is
 * leaked, nothing half-written stays visible, no lock stays held (there are
 * none: readers use sequence locks and the intent).
 *
 * Request frames are applied op by op; the intent also records how many
 * ops of the current frame are done and each op's result, so a frame
 * replayed after a crash (at-least-once delivery, mc_ring.h) resumes after
 * its last applied op instead of applying an INCR twice.
 *
 * CHANGE FEED
 * A changed entry is marked dirty and its index appended to a list in the
 * worker's control block (region core.state), once while it stays dirty.
 * The worker sends the entries' current contents, oldest first, to the
 * persistence worker and subscribers, then clears the marks.  Writes that
 * come faster than the feed is consumed coalesce (the feed carries each
 * key's latest state, which is what a restore needs), so the feed never
 * holds up writers and never loses a key's last change.  A deleted entry
 * keeps its key bytes until its DELETE has been sent.
 */
#ifndef MC_STATE_WRITER_H
#define MC_STATE_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mc_seg.h"
#include "mc_state.h"
#include "state.pb-c.h"

#define MC_STATE_CTL_MAGIC  0x314c544354534d43ULL   /* "CMSTCTL1" */
#define MC_STATE_MAX_OPS    1024u                   /* ops per request frame */

struct mc_state_op_result {
	uint32_t status;        /* Mcpcore__StateResult__Status */
	uint32_t pad;
	uint64_t version;
};

/* The worker's own control block, at the start of region core.state. */
struct mc_state_ctl {
	uint64_t sc_magic;
	uint64_t sc_feed_cap;                   /* entries of sc_feed */
	uint64_t sc_feed_head;                  /* next position to send */
	uint64_t sc_feed_tail;                  /* next position to fill */
	uint64_t sc_subscribers;                /* slots that asked for the feed */
	uint64_t sc_sweep_cursor;               /* TTL sweep position */
	uint64_t sc_applied[MC_MAX_SLOTS];      /* per sender: last frame seq fully applied */
	/* the frame being applied */
	uint32_t sc_cur_src;
	uint32_t sc_cur_done;                   /* ops applied */
	uint64_t sc_cur_seq;
	struct mc_state_op_result sc_cur_res[MC_STATE_MAX_OPS];
	uint32_t sc_feed[];                     /* entry indexes, ring of sc_feed_cap */
};

struct mc_state_writer {
	struct mc_seg *seg;
	struct mc_state_table *t;
	struct mc_state_entry *entries;
	uint8_t *arena;
	uint64_t mask;
	struct mc_state_ctl *ctl;
	uint64_t max_key, max_value;
};

/*
 * Set the table up on a fresh segment, or repair it after a crash.
 * Returns 0, or a negative errno with a message (the regions do not fit:
 * a config error the layout should have caught).
 */
int mc_state_writer_open(struct mc_seg *seg, struct mc_state_writer *w,
    char *err, size_t errlen);

/* Result of one op; `value` points at the writer's scratch (INCR) or NULL. */
struct mc_state_result {
	uint32_t status;
	uint64_t version;
	const char *error;      /* static text for non-OK */
	char number[24];        /* INCR: the new value, as text */
};

/*
 * Apply op number k (< MC_STATE_MAX_OPS) of the current frame (see
 * mc_state_frame_begin): records the op as done, with its result,
 * atomically with the change it makes.  `now` is the wall clock in ns.
 * RESTORE ops do not go to the change feed (they came from it).
 * SUBSCRIBE/UNSUBSCRIBE are the caller's business (they need the sender).
 */
void mc_state_apply(struct mc_state_writer *w, const Mcpcore__StateOp *op, uint64_t now,
    uint32_t k, struct mc_state_result *res);

/*
 * Warm the caches for ops[0..n) before applying them: a request carries up
 * to MC_STATE_MAX_OPS ops on random keys, and each op's index entry and key
 * bytes are two cache (and TLB) misses.  Prefetching them all first lets
 * the misses overlap instead of being paid one after the other.  Only a
 * hint: reads nothing it relies on, changes nothing.
 */
void mc_state_prefetch(const struct mc_state_writer *w, Mcpcore__StateOp *const *ops, size_t n);

/*
 * Frame bookkeeping (see CRASH SAFETY).  begin() returns how many ops of
 * frame (src, seq) are already applied (0 for a new frame, more when a
 * frame interrupted by a crash is replayed).  end() marks it fully applied.
 * applied() says whether (src, seq) was fully applied before.
 */
uint32_t mc_state_frame_begin(struct mc_state_writer *w, unsigned src, uint64_t seq);
void mc_state_frame_end(struct mc_state_writer *w, unsigned src, uint64_t seq);
bool mc_state_frame_applied(const struct mc_state_writer *w, unsigned src, uint64_t seq);
/* Result recorded for op k of the current frame. */
struct mc_state_op_result mc_state_frame_result(const struct mc_state_writer *w, uint32_t k);

/*
 * GET through the writer: the live value of (ns, key) at *now, the wall
 * clock in ns, read only when needed: if *now is 0 and the entry has a TTL
 * to check, it is read (mc_wall_ns) and left in *now for the caller's
 * later ops.  Returns 0 with *val (pointing into the table: valid until
 * the next change) and *version, -ENOENT when there is no live value,
 * -EINVAL for an empty or oversized namespace or key.
 */
int mc_state_writer_value(struct mc_state_writer *w, const Mcpcore__StateOp *op,
    uint64_t *now, const void **val, uint32_t *len, uint64_t *version);

/* The value of (ns, key) now, as text for INCR replies: 0 or -ENOENT. */
int mc_state_writer_number(struct mc_state_writer *w, const Mcpcore__StateOp *op,
    char *buf, size_t len);

/* Change feed: entries queued, and the entry at queue position head+i. */
uint64_t mc_state_feed_pending(const struct mc_state_writer *w);
uint32_t mc_state_feed_peek(const struct mc_state_writer *w, uint64_t i);
/* The first n queued entries were sent: clear their marks, free deleted keys. */
void mc_state_feed_sent(struct mc_state_writer *w, uint64_t n);

/* Expire up to `budget` entries' worth of the table from the sweep cursor. */
void mc_state_sweep(struct mc_state_writer *w, uint64_t now, uint64_t budget);

#endif /* MC_STATE_WRITER_H */
