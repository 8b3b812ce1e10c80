/*
 * mc_layout.h - where everything lives in the segment, computed from the
 * configuration alone (pure arithmetic; creates and touches nothing).
 *
 * The segment is the 11 regions of the seed layout, back to back, in the
 * order of enum mc_region_id; each size is a multiple of 4096 so every
 * region starts on a page.  The segment is exactly their sum (12 GiB on
 * the default config).
 *
 * shared.rings also carries the runtime's control structures, at its start:
 *
 *   +0                  segment header (struct mc_seg_hdr), MC_SEG_HDR_SIZE
 *   slots_off           slot table: nslots x struct mc_slot
 *   ringmap_off         nslots x nslots int16: ring index of (src,dst) or -1
 *   ringdir_off         nrings x struct mc_ring (ck_ring + journal cursor)
 *   ringbuf_off         nrings x ring_entries x struct mc_desc
 *   journal_off         nrings x journal_entries x struct mc_desc
 *   metrics_off         nslots x MC_METRICS_BLOCK: each slot's metrics block,
 *                       written only by the process in the slot (monitor issue)
 *
 * shared.message_queue is cut into one frame pool per slot that may
 * produce frames (every slot but the supervisor's), pool_size bytes each.
 *
 * Slots: 0 is the supervisor, 1..MC_NWORKERS the workers in start order,
 * then max_clients client slots (Python processes, CLI tools).  A ring
 * exists for every ordered pair of distinct non-supervisor slots where at
 * least one end is a worker (clients talk to workers, not to each other).
 */
#ifndef MC_LAYOUT_H
#define MC_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "mc_config.h"

#define MC_SEG_HDR_SIZE     (64u * 1024u)
#define MC_NREGIONS         11
#define MC_NWORKERS         5
#define MC_SLOT_SUPERVISOR  0
#define MC_SLOT_FIRST_WORKER 1
#define MC_SLOT_FIRST_CLIENT (MC_SLOT_FIRST_WORKER + MC_NWORKERS)
#define MC_MAX_SLOTS        62          /* frame holder bits fit in a u64 */
#define MC_RING_MIN_ENTRIES 64u
#define MC_RING_MAX_ENTRIES 65536u
#define MC_JOURNAL_MAX      1024u       /* frames a consumer may hold per ring */
#define MC_DESC_SIZE        16u
#define MC_POOL_MIN_FRAMES  4u          /* a pool holds >= this many max-size frames */
#define MC_SLOT_SIZE        256u        /* bytes reserved per struct mc_slot */
#define MC_RING_SIZE        384u        /* bytes reserved per struct mc_ring */
#define MC_METRICS_BLOCK    (64u * 1024u) /* per-slot metrics block */
#define MC_FRAME_HDR_SIZE   32u         /* struct mc_frame header */
#define MC_FRAME_ALIGN      64u         /* frame blocks: cache-line aligned, whole lines, so
                                           a consumer reading one frame never shares a line
                                           with the producer writing the next */

enum mc_region_id {
	MC_REGION_SHARED_RINGS,
	MC_REGION_SHARED_STATE_CACHE,
	MC_REGION_SHARED_MESSAGE_QUEUE,
	MC_REGION_CORE_PROTOCOL,
	MC_REGION_CORE_STATE,
	MC_REGION_CORE_ROUTING,
	MC_REGION_LEARNING_MODELS,
	MC_REGION_LEARNING_TRAINING,
	MC_REGION_LEARNING_FEATURES,
	MC_REGION_STORAGE_ACTIVE_MODELS,
	MC_REGION_STORAGE_HISTORY,
};

/* Worker slots, in start order (shutdown runs in reverse). */
enum mc_worker_id {
	MC_WORKER_STATE = MC_SLOT_FIRST_WORKER,
	MC_WORKER_PERSISTENCE,
	MC_WORKER_MONITOR,
	MC_WORKER_ROUTER,
	MC_WORKER_PROTOCOL,
};

struct mc_layout_region {
	const char *name;       /* "shared.rings" */
	const char *writer;     /* who writes inside it */
	uint64_t offset;
	uint64_t size;
};

struct mc_layout {
	struct mc_layout_region region[MC_NREGIONS];
	uint64_t total;                 /* segment size */

	uint32_t nslots;                /* 1 + MC_NWORKERS + max_clients */
	uint32_t nrings;
	uint32_t ring_entries;          /* per ring, power of two */
	uint32_t journal_entries;       /* per ring, power of two */

	/* segment offsets (all inside shared.rings) */
	uint64_t slots_off;
	uint64_t ringmap_off;
	uint64_t ringdir_off;
	uint64_t ringbuf_off;
	uint64_t journal_off;
	uint64_t metrics_off;           /* nslots x MC_METRICS_BLOCK */
	uint64_t control_end;           /* first unused byte of shared.rings */

	/* frame pools, inside shared.message_queue */
	uint64_t pool_off;              /* segment offset of the pool of slot 1 */
	uint64_t pool_size;             /* bytes per pool, multiple of 4096 */
	uint64_t max_frame;             /* largest payload (memory.max_message_size) */
};

/*
 * Compute the layout for `cfg`.  Returns 0, or MC_CONFIG_EX with a one-line
 * "file:line: key: message" in err when the sizes cannot hold the runtime
 * (e.g. shared.rings too small for the ring directory).
 */
int mc_layout_compute(const struct mc_config *cfg, struct mc_layout *lay,
    char *err, size_t errlen);

/* Ring index of (src, dst) under the rule above, or -1 when no such ring. */
int mc_layout_ring_index(const struct mc_layout *lay, unsigned src, unsigned dst);

/* Name of a worker slot ("state") or NULL for other slots. */
const char *mc_layout_worker_name(unsigned slot);

/* Slot of a worker name, or -1. */
int mc_layout_worker_slot(const char *name);

#endif /* MC_LAYOUT_H */
