/*
 * mc_prestore.h - restoring the state manager's table from the `state`
 * column family after a restart of the runtime.
 *
 * PROTOCOL
 * The state family holds, per (namespace, key), the last StateChange (PUT)
 * the state worker published; deletes and expiries removed their entry.
 * When the persistence worker starts in a segment whose control block
 * says "not restored" (a fresh segment: the whole runtime restarted), it
 * replays the family to the state worker as StateRequest frames (kind 10)
 * of RESTORE ops (ns, key, value, version, mtime, expires_at), each op
 * with a fresh id, and waits until a StateResult has come back (kind 11)
 * for every id.  Entries whose expires_at has passed are not replayed
 * (they would expire at once) but deleted from the family.  Only then does
 * the worker set pc_restored and report ready, so the runtime is ready
 * only with its state back.
 *
 * The state worker applies a RESTORE only when it is newer than what it
 * has, so a replay that is repeated (persistence restarted mid-restore,
 * or the state worker replayed our frames after its own crash) is
 * harmless, and results arriving twice are counted once (a bitmap of ids).
 *
 * Threads: the worker's thread.  Errors: negative errno.
 */
#ifndef MC_PRESTORE_H
#define MC_PRESTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "mc_proto.h"
#include "mc_pstore.h"
#include "mc_seg.h"

struct mc_prestore {
	rocksdb_iterator_t *it;
	bool iter_done;
	uint64_t next_id;               /* ids handed out: 1 .. next_id-1 */
	uint8_t *answered_bits;         /* bit per id */
	uint64_t bits_cap;
	uint64_t sent;                  /* ops sent */
	uint64_t answered;              /* distinct ids answered */
	uint64_t not_ok;                /* results with a status other than OK */
	uint64_t expired;               /* entries dropped because their TTL passed */
	uint8_t *pending;               /* a packed StateRequest waiting for ring room */
	size_t pending_len;
	uint64_t last_progress_ns;
	rocksdb_writebatch_t *expired_wb;
};

/* Start from the beginning of the family.  0 or -ENOMEM. */
int mc_prestore_begin(struct mc_prestore *r, struct mc_pstore *st, uint64_t now_mono);

/*
 * Send what the ring to the state worker takes (frames of at most
 * max_frame bytes) and check for completion.  Expired entries are deleted
 * from the store as they are read.  Returns 1 when every op has been
 * answered, 0
 * while in progress, -EPIPE when the state worker has failed or stopped,
 * -ETIMEDOUT when nothing came back for timeout_ns, or another negative
 * errno.  `seg` must hold the persistence slot.
 */
int mc_prestore_step(struct mc_prestore *r, struct mc_seg *seg, struct mc_pstore *st,
    uint64_t max_frame, uint64_t now_mono, uint64_t timeout_ns);

/* Account a StateReply that arrived from the state worker. */
void mc_prestore_reply(struct mc_prestore *r, const Mcpcore__StateReply *rep, uint64_t now_mono);

/* Free everything (also mid-way); idempotent. */
void mc_prestore_end(struct mc_prestore *r);

#endif /* MC_PRESTORE_H */
