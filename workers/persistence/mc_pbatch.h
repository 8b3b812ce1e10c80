/*
 * mc_pbatch.h - one group-commit batch of the persistence worker, and the
 * de-duplication marks that make replays harmless.
 *
 * A batch collects received frames, held (not released), up to `cap`.
 * mc_pbatch_commit() turns them into one RocksDB WriteBatch together with
 * the dedup marks and writes it with the WAL: either all of it is durable
 * (records *and* marks) or none of it is.  Only after that does the caller
 * release the frames, which advances the rings' consumer positions.  The
 * WriteBatch is built at commit time from the held frames (which stay
 * valid in shared memory while held), so a commit that failed can simply
 * be retried, also after the store was closed and reopened, and a frame
 * can be taken while the store is not open at all.
 *
 * DEDUP.  A frame is identified by (producer slot, f_seq) within one
 * segment lifetime ("run", the segment's sh_created_wall_ns); f_seq grows
 * strictly per slot and frames from one slot reach us in that order (one
 * SPSC ring per producer).  The marks are, per slot, the highest f_seq
 * stored in this run.  A frame at or below its slot's mark is a replay of
 * something already durable -- the worker died after the write and before
 * the release -- and is dropped.  Marks of another run mean nothing (the
 * sequence numbers restarted with the new segment) and are ignored.
 * Keys are a pure function of the frame and the time it was first taken,
 * so rewriting a record after a failed-but-partly-done write rewrites the
 * same key with the same bytes: never a second copy.
 *
 * What a frame becomes:
 *   MC_FK_MCP            messages  time key -> the MCPMessage bytes
 *   MC_FK_TRAINING_DATA  training  time key -> the TrainingData bytes
 *   MC_FK_LEARNING_MODEL models    (model_id, version) -> the bytes
 *   kinds 30..39         metrics   time key (kind in the key) -> the bytes
 *   MC_FK_STATE_CHANGES  state     per change: PUT -> (ns,key) = the
 *                                  StateChange bytes; DELETE/EXPIRE -> delete
 * A payload that is not a well-formed message of its kind (or a model
 * without model_id) is rejected: logged by the caller, not stored, and
 * the slot's mark passes over it (it is finished work).
 *
 * Threads: one thread per batch.  Errors: negative errno.
 */
#ifndef MC_PBATCH_H
#define MC_PBATCH_H

#include <rocksdb/c.h>
#include <stdbool.h>
#include <stdint.h>

#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_pstore.h"

#define MC_PBATCH_MARKS_MAGIC 0x4444434du   /* "MCDD" */

enum mc_pbatch_verdict {
	MC_PB_ADDED = 0,        /* in the batch: keep the frame until commit */
	MC_PB_DUPLICATE,        /* already durable (replay): release it */
	MC_PB_REJECTED,         /* malformed payload: release it, log `why` */
	MC_PB_NOT_STORED,       /* a kind this worker does not store */
	MC_PB_FULL,             /* the batch holds `cap` frames: commit, then add again */
};

/* One frame in the batch. */
struct mc_pbatch_item {
	struct mc_msg msg;              /* the received frame (for the release) */
	const uint8_t *data;            /* its payload, valid while held */
	uint32_t len;
	uint16_t kind;
	uint8_t src;
	uint64_t seq;
	uint64_t time_ns;               /* the record's key time, fixed when taken */
};

struct mc_pbatch {
	rocksdb_writebatch_t *wb;
	struct mc_pbatch_item *items;   /* in arrival order */
	uint32_t n, cap;
	uint64_t bytes;                 /* payload bytes in the batch */
	uint64_t run;                   /* this segment's run id */
	uint64_t hwm[MC_MAX_SLOTS];     /* durable marks (committed) */
	uint64_t pend[MC_MAX_SLOTS];    /* marks including the pending batch */
};

/* Does the worker store frames of this kind? */
bool mc_pbatch_storable(uint16_t kind);

/* 0 or -ENOMEM.  run: the segment's sh_created_wall_ns; cap: most frames
 * one batch holds (allocated once, so adding never allocates). */
int mc_pbatch_init(struct mc_pbatch *b, uint64_t run, uint32_t cap);
void mc_pbatch_free(struct mc_pbatch *b);

/*
 * Load the marks stored in `st` after an open.  Returns 1 when they belong
 * to this run, 0 when absent or of another run, or a negative class with
 * err filled.  hwm becomes the stored marks (zero for another run); pend
 * becomes max(pend, hwm), so frames already in the batch stay in it.
 */
int mc_pbatch_load_marks(struct mc_pbatch *b, struct mc_pstore *st, char *err, size_t errlen);

/*
 * After mc_pbatch_load_marks(): drop from the batch the frames the loaded
 * marks say are durable already (taken before the store was open, or
 * written by a commit that failed yet reached the disk).  Each is handed
 * to release(ctx, msg) and counted; the rest keep their order.  Returns
 * how many were dropped.
 */
uint32_t mc_pbatch_filter(struct mc_pbatch *b, void (*release)(void *ctx, struct mc_msg *m),
    void *ctx);

/*
 * Offer one received frame: m (may be NULL in tests) is remembered when
 * the verdict is MC_PB_ADDED.  now_wall: wall-clock ns, the record's time
 * when it carries none.  `why` gets the reason of a rejection.
 */
enum mc_pbatch_verdict mc_pbatch_add(struct mc_pbatch *b, const struct mc_msg *m,
    uint16_t kind, unsigned src, uint64_t seq, const uint8_t *data, uint32_t len,
    uint64_t now_wall, char *why, size_t whylen);

/*
 * Write the batch and its marks, fdatasync'ed if sync.  0: durable -- the
 * caller releases items[0..n) and calls mc_pbatch_reset().  Negative
 * class: nothing new is known to be durable; the batch is unchanged and
 * may grow and be committed again later.
 */
int mc_pbatch_commit(struct mc_pbatch *b, struct mc_pstore *st, bool sync,
    char *err, size_t errlen);

/* After a successful commit: empty the batch and adopt its marks. */
void mc_pbatch_reset(struct mc_pbatch *b);

/* The marks record (exposed for tests): encode into buf (cap >= 24 + 8 x
 * MC_MAX_SLOTS), returns its length; decode returns 0 or -EINVAL. */
size_t mc_pbatch_marks_encode(uint8_t *buf, uint64_t run, const uint64_t *marks);
int mc_pbatch_marks_decode(const uint8_t *buf, size_t len, uint64_t *run, uint64_t *marks);

#endif /* MC_PBATCH_H */
