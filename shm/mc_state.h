/*
 * mc_state.h - the state manager's table in shared.state_cache, and its
 * lock-free readers.
 *
 * PROTOCOL
 * A versioned key/value table: (namespace, key) -> value, with a per-key
 * version (strictly increasing: every change takes the next number of one
 * global counter, so a key deleted and written again still moves forward),
 * last-write time and optional expiry.
 *
 * Exactly one process writes it: the state worker (workers/state/), fed by
 * StateRequest frames on its rings (proto/state.proto).  Everyone else only
 * reads, straight from shared memory, without a lock, a syscall or a frame:
 *
 *   - The index is an open-addressing table of 64-byte entries (one cache
 *     line each), linear probing, capacity a power of two; live entries
 *     fill at most 7/8 of it, live entries and tombstones at most 15/16.
 *     Deleted entries become tombstones (probe chains stay intact); the
 *     writer turns tombstones no probe chain needs back into empty slots,
 *     and inserts reuse the others.
 *   - Namespace, key and value live together in one block of the value
 *     arena; an entry points at its block.  Writes are copy-on-write: the
 *     new block is complete before the entry points at it.
 *   - Each entry has a sequence lock (e_seq, odd while the writer changes
 *     the entry).  A reader copies what it needs, then checks e_seq again
 *     and retries on any change, so it never returns a torn value.  Reading
 *     a block that was freed meanwhile is harmless: every offset is bounds-
 *     checked before use, and the sequence check discards the result.
 *   - If the writer died with an entry's lock odd, a reader does not wait
 *     for the restart: the writer records the entry's complete new
 *     contents in the intent record (st_intent) before it touches the
 *     entry, and a reader finding the lock odd with a committed intent for
 *     that entry reads the intent instead.  Reads never block.
 *
 * Memory ordering: the writer's entry update is  seq++ (odd); store-store
 * fence; fields; store-store fence; seq++ (even).  A reader loads seq
 * (acquire), the fields and the block, then a load-load fence and seq
 * again.  The block's bytes are written before the entry's first seq++.
 *
 * OWNERSHIP: everything here is written by the state worker only; readers
 * in any process.  The layout (sizes, offsets) is fixed when the segment
 * is created (mc_state_geometry).
 */
#ifndef MC_STATE_H
#define MC_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mc_config.h"
#include "mc_seg.h"

#define MC_STATE_MAGIC      0x3145544154534d43ULL   /* "CMSTATE1" */
#define MC_STATE_HDR_SIZE   4096u
#define MC_STATE_NCLASSES   128
#define MC_STATE_BLOCK_MIN  16u          /* arena blocks are multiples of this */
/* The state worker's control block in region core.state: a fixed part and
 * a change-feed list of 2 x 4 bytes per table entry. */
#define MC_STATE_CTL_FIXED  (64u * 1024u)
#define MC_STATE_CTL_BYTES(capacity) (MC_STATE_CTL_FIXED + 8ULL * (capacity))

enum mc_state_slot { MC_STATE_EMPTY = 0, MC_STATE_LIVE = 1, MC_STATE_TOMB = 2 };

/* Entry flags (e_flags). */
#define MC_STATE_F_EXPIRED  0x1          /* tombstone made by the TTL sweep */

struct mc_state_entry {
	uint32_t e_seq;         /* sequence lock: odd while being written */
	uint8_t  e_state;       /* enum mc_state_slot */
	uint8_t  e_dirty;       /* writer only: queued for the change feed */
	uint8_t  e_flags;
	uint8_t  e_class;       /* arena size class of e_blob */
	uint16_t e_nslen;
	uint16_t e_keylen;
	uint32_t e_vlen;
	uint32_t e_hash;        /* high 32 bits of the key hash: cheap compare */
	uint32_t e_pad;
	uint64_t e_blob;        /* arena offset of ns|key|value (0 = none) */
	uint64_t e_version;
	uint64_t e_mtime;       /* ns since the epoch */
	uint64_t e_expires;     /* ns since the epoch, 0 = never */
	uint64_t e_pad2;
};

/*
 * The writer's intent: what it is about to do, so a restarted writer can
 * finish or undo it, and a reader can see a half-written entry's new value.
 * in_seq is a sequence lock over the whole record.
 */
enum mc_state_phase {
	MC_STATE_IDLE = 0,
	MC_STATE_ALLOCATING = 1,  /* taking in_blob from a free list / the top */
	MC_STATE_FILLING = 2,     /* writing in_blob's bytes */
	MC_STATE_COMMITTING = 3,  /* in_entry is final; writing it into slot in_idx */
	MC_STATE_SPLITTING = 4,   /* cutting free block in_blob (class in_class) into
	                             pieces for smaller classes; in_split_done pushed */
};

struct mc_state_intent {
	uint32_t in_seq;
	uint32_t in_phase;      /* enum mc_state_phase */
	uint64_t in_idx;        /* COMMITTING: entry index */
	/* ALLOCATING / FILLING: the block being taken, and how to give it back */
	uint64_t in_blob;
	uint32_t in_class;
	uint32_t in_bump;       /* from the arena top, not a free list */
	uint64_t in_next;       /* its successor on the free list */
	uint64_t in_free_before;
	uint64_t in_top_before;
	/* COMMITTING: the entry's final contents, the block to free, counters after */
	uint64_t in_old_blob;   /* 0 = none */
	uint32_t in_old_class;
	uint32_t in_has_entry;  /* 0: only counters/progress, no entry write */
	struct mc_state_entry in_entry;
	uint64_t in_live, in_tombs, in_version, in_arena_live, in_arena_free;
	uint64_t in_writes, in_expired;
	/* COMMITTING as part of a request frame: op in_frame_done-1 of (src, seq) */
	uint64_t in_frame_seq;
	uint32_t in_frame_src;
	uint32_t in_frame_done; /* 0: not a request op */
	uint32_t in_res_status;
	uint32_t in_split_target;       /* SPLITTING: class of the first piece */
	uint64_t in_res_version;
	uint64_t in_split_done;         /* SPLITTING: pieces pushed so far */
};

struct mc_state_table {
	/* geometry: written once, when the worker first initialises the table */
	uint64_t st_magic;
	uint64_t st_capacity;           /* entries, a power of two */
	uint64_t st_entries_off;        /* segment offsets */
	uint64_t st_arena_off;
	uint64_t st_arena_size;
	uint32_t st_max_key;            /* [state] max_key_size */
	uint32_t st_max_value;          /* [state] max_value_size */
	/* counters: written by the worker, read by status */
	uint64_t st_live __attribute__((aligned(64)));
	uint64_t st_tombstones;
	uint64_t st_version;            /* last version handed out */
	uint64_t st_arena_top;          /* bump pointer (arena offset) */
	uint64_t st_arena_live;         /* bytes in blocks entries point at */
	uint64_t st_arena_free;         /* bytes on the free lists */
	uint64_t st_writes;             /* changes applied */
	uint64_t st_expired;
	/* free lists per size class: arena offset of the first block, 0 = empty */
	uint64_t st_free[MC_STATE_NCLASSES] __attribute__((aligned(64)));
	struct mc_state_intent st_intent __attribute__((aligned(64)));
};

/* Where the table lives, from the config (no segment needed). */
struct mc_state_geometry {
	uint64_t capacity;
	uint64_t entries_off;           /* relative to shared.state_cache */
	uint64_t arena_off;
	uint64_t arena_size;
};

/*
 * Sizes for a state_cache region of `size` bytes: an eighth for the index,
 * the rest for the arena.  Returns 0 or MC_CONFIG_EX with "file:line: key:"
 * in err when the region is too small for the configured bounds, or when
 * region core.state cannot hold the worker's control block.
 */
int mc_state_geometry(const struct mc_config *cfg, uint64_t size,
    struct mc_state_geometry *geo, char *err, size_t errlen);

/* The table of a mapped segment, or NULL before the state worker set it up. */
const struct mc_state_table *mc_state_table(const struct mc_seg *seg);

/* Hash of (namespace, key) as the table uses it. */
uint64_t mc_state_hash(const void *ns, size_t nslen, const void *key, size_t klen);

/*
 * Are n bytes at a and b equal?  A pure function, for lookups: keys and
 * namespaces are mostly short, and libc's memcmp is a call through the PLT
 * per part, which for a few bytes costs more than the compare.  4..16
 * bytes: two overlapping word loads each side (within bounds).
 */
static inline bool mc_state_bytes_eq(const void *pa, const void *pb, size_t n)
{
	const uint8_t *a = pa, *b = pb;
	uint64_t x, y, u, v;
	uint32_t p, q, r, t;

	if (n >= 8 && n <= 16) {
		memcpy(&x, a, 8), memcpy(&y, b, 8);
		memcpy(&u, a + n - 8, 8), memcpy(&v, b + n - 8, 8);
		return ((x ^ y) | (u ^ v)) == 0;
	}
	if (n >= 4 && n < 8) {
		memcpy(&p, a, 4), memcpy(&q, b, 4);
		memcpy(&r, a + n - 4, 4), memcpy(&t, b + n - 4, 4);
		return ((p ^ q) | (r ^ t)) == 0;
	}
	return memcmp(a, b, n) == 0;
}

/* Arena size class of a block of `bytes`, and the block size of a class. */
unsigned mc_state_class(uint64_t bytes);
uint64_t mc_state_class_size(unsigned cls);

struct mc_state_value {
	uint64_t version;
	uint64_t mtime;         /* ns since the epoch */
	uint64_t expires;       /* ns since the epoch, 0 = never */
	uint32_t len;           /* full value length (may exceed the buffer) */
};

/*
 * Any process, any time.  Look up (ns, key); copy up to `cap` bytes of the
 * value into buf.  Lock-free, never blocks; retries internally while the
 * writer changes the entry.  Expired entries are not found.
 * Returns 0 (found; out->len is the full length), -ENOSPC (found but the
 * value is longer than cap: nothing useful copied, out->len says how long),
 * -ENOENT, -EINVAL (empty or over-long namespace/key), -ENODEV (no table
 * yet: the state worker has not started).
 */
int mc_state_get(const struct mc_seg *seg, const void *ns, size_t nslen,
    const void *key, size_t klen, void *buf, size_t cap, struct mc_state_value *out);

/* One entry as scan sees it: pointers into a private copy, valid during the call. */
struct mc_state_item {
	const uint8_t *key;
	size_t keylen;
	const uint8_t *value;
	size_t vlen;
	struct mc_state_value meta;
};

/*
 * Any process.  Visit every live entry of namespace `ns` whose key starts
 * with prefix (plen may be 0), in table order (unordered).  Each item is a
 * consistent snapshot of its entry; the scan as a whole is not atomic.
 * cb returns 0 to go on, anything else to stop the scan.  Costs a walk of
 * the whole index.  Returns the number of items visited (including the one
 * whose callback stopped it), or a negative error as mc_state_get.  A key
 * deleted and written again while the scan runs may be visited twice (once
 * in each slot): callers that count should dedupe.
 */
long mc_state_scan(const struct mc_seg *seg, const void *ns, size_t nslen,
    const void *prefix, size_t plen,
    int (*cb)(void *ctx, const struct mc_state_item *it), void *ctx);

struct mc_state_stats {
	uint64_t capacity, live, tombstones, version, writes, expired;
	uint64_t arena_size, arena_top, arena_live, arena_free;
};

/* Any process.  Snapshot of the counters (not atomic as a whole). */
int mc_state_stats(const struct mc_seg *seg, struct mc_state_stats *st);

/*
 * Consistency check of the whole table, for tests and operators: every
 * live entry's block lies inside the arena, does not overlap another, is
 * not on a free list, and its key hashes to a slot whose probe chain
 * reaches it; free lists are acyclic and in bounds; counters match.  Meant
 * for a quiet table (a writer changing it meanwhile may produce false
 * alarms, never false passes).  Returns 0 if consistent, else -EUCLEAN with
 * the first problem in report.
 */
int mc_state_check(const struct mc_seg *seg, char *report, size_t len);

#endif /* MC_STATE_H */
