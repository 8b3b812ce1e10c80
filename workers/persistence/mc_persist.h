/*
 * mc_persist.h - the persistence worker's public face: its control block
 * in shared memory (durable sequence numbers, state, faults, statistics)
 * and the small functions other processes use to read it.
 *
 * WHAT THE WORKER DOES (details in workers/persistence/main.c)
 * It drains its inbound rings in batches into one RocksDB WriteBatch with
 * the WAL on, writes it (fdatasync per batch when [persistence] sync =
 * "batch"), and only then publishes, per producer slot, the highest frame
 * sequence number now durable, and releases the frames (which is what
 * advances each ring's consumer position).  A frame is acknowledged, i.e.
 * will never be lost, exactly when
 *
 *     mc_persist_durable_seq(seg, producer_slot) >= frame's f_seq
 *
 * (f_seq is strictly increasing per producer slot within one segment, so
 * one number per slot describes every frame that slot ever sent here).
 * Frames of other kinds sent to the worker (pings, requests) are not
 * covered by the number.
 *
 * THE CONTROL BLOCK
 * struct mc_persist_ctl lives at the start of region storage.history
 * (the storage.* regions belong to the persistence worker).  It holds no
 * pointer, only values, so every process may map the segment anywhere.
 * All-zero is its valid initial state: "no persistence worker has run in
 * this segment yet" (durable numbers 0, state DOWN, nothing restored).
 *
 * OWNERSHIP: every field is written only by the process in slot
 * MC_WORKER_PERSISTENCE (the persistence worker, or a benchmark/test that
 * runs its code in that slot); everyone may read.  Scalars are naturally
 * aligned 32/64-bit words, stored with ck_pr_store and read with
 * ck_pr_load.  pc_durable[] values only grow within one segment, and each
 * is stored after (release ordering) the batch it describes is durable.
 * The text fields change together under pc_text_seq, a sequence lock
 * (odd while being written): read them with mc_persist_read_text().
 *
 * Errors are negative errno values; nothing here exits or allocates
 * except the JSON builder.
 */
#ifndef MC_PERSIST_H
#define MC_PERSIST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "mc_layout.h"
#include "mc_seg.h"

struct mc_worker;

#define MC_PERSIST_CTL_MAGIC   0x4c54435453524550ULL   /* "PERSTCTL" little-endian */
#define MC_PERSIST_CTL_VERSION 1u
#define MC_PERSIST_TEXT_MAX    384

/* pc_state: what the worker is doing. */
enum mc_persist_state {
	MC_PERSIST_DOWN = 0,        /* never started in this segment, or dead */
	MC_PERSIST_OPENING,         /* opening the store */
	MC_PERSIST_RESTORING,       /* replaying the state family into the state worker */
	MC_PERSIST_RUNNING,         /* storing */
	MC_PERSIST_FAULT,           /* the store failed; retrying with backoff, frames held */
	MC_PERSIST_STOPPED,         /* stopped cleanly (SIGTERM) */
};

/* pc_fault: the class of the last store error (0 when healthy). */
enum mc_persist_fault {
	MC_PFAULT_NONE = 0,
	MC_PFAULT_NOSPACE,          /* ENOSPC: disk full */
	MC_PFAULT_READONLY,         /* EROFS: read-only file system */
	MC_PFAULT_VANISHED,         /* ENOENT: the directory is gone */
	MC_PFAULT_PERMISSION,       /* EACCES/EPERM */
	MC_PFAULT_CORRUPT,          /* RocksDB reported corruption */
	MC_PFAULT_INCOMPATIBLE,     /* not an mcpcore store, or a newer format */
	MC_PFAULT_LOCKED,           /* another process has the database open */
	MC_PFAULT_IO,               /* another I/O error */
	MC_PFAULT_OTHER,
};

struct mc_persist_ctl {
	uint64_t pc_magic;              /* MC_PERSIST_CTL_MAGIC once initialised */
	uint32_t pc_version;
	uint32_t pc_state;              /* enum mc_persist_state */
	uint64_t pc_run_id;             /* the segment's sh_created_wall_ns */
	int32_t  pc_pid;                /* the worker process */
	uint32_t pc_restored;           /* 1: the state family was replayed into the
	                                   state worker for this segment */
	uint32_t pc_db_opened;          /* 1: a store was opened in this segment, so a
	                                   vanished directory is a fault, not "create" */
	uint32_t pc_sync;               /* 1: fdatasync per batch ([persistence] sync) */

	/* acknowledgement: per producer slot, the highest f_seq durably stored */
	uint64_t pc_durable[MC_MAX_SLOTS] __attribute__((aligned(64)));
	uint64_t pc_durable_gen;        /* +1 per durable batch */

	/* statistics (since the segment was created); a batch is counted before
	 * its durable marks are published, so an acknowledged record is counted */
	uint64_t pc_batches __attribute__((aligned(64)));
	uint64_t pc_records;            /* stored records (frames; a state batch counts 1) */
	uint64_t pc_bytes;              /* payload bytes stored */
	uint64_t pc_duplicates;         /* replayed frames dropped by the dedup marks */
	uint64_t pc_rejected;           /* frames that could not be stored (bad payload) */
	uint64_t pc_held;               /* frames taken and not yet durable, now */
	uint64_t pc_last_batch;         /* records in the last batch */
	uint64_t pc_last_commit_ns;     /* duration of the last write (+ sync) */
	uint64_t pc_max_commit_ns;      /* longest write since start of the worker */
	uint64_t pc_restored_keys;      /* state keys replayed at the last restore */
	uint64_t pc_checkpoints;        /* checkpoints written */
	uint64_t pc_last_checkpoint_ns; /* wall clock of the last one */
	uint64_t pc_mem_allocated;      /* worker heap (jemalloc stats.allocated) */
	uint64_t pc_mem_resident;       /* jemalloc stats.resident, or RSS */
	uint64_t pc_mem_memtables;      /* RocksDB rocksdb.cur-size-all-mem-tables */
	uint32_t pc_mem_source;         /* 0 none, 1 jemalloc, 2 /proc (no jemalloc) */
	uint32_t pc_pad1;

	/* faults */
	uint32_t pc_fault __attribute__((aligned(64)));  /* enum mc_persist_fault */
	int32_t  pc_fault_errno;        /* positive errno of the class */
	uint64_t pc_fault_since_ns;     /* wall clock when the current fault began, 0 = none */
	uint64_t pc_fault_retries;      /* attempts since it began */
	uint64_t pc_fault_retry_ms;     /* current backoff */
	uint64_t pc_faults_total;       /* faults since the segment was created */

	/* text, under the sequence lock */
	uint32_t pc_text_seq __attribute__((aligned(64)));
	uint32_t pc_pad2;
	char     pc_path[256];                      /* absolute store directory */
	char     pc_fault_msg[MC_PERSIST_TEXT_MAX]; /* the store's own error text */
	char     pc_last_checkpoint[256];           /* its directory */
};

/* A consistent copy of the text fields. */
struct mc_persist_text {
	char path[256];
	char fault_msg[MC_PERSIST_TEXT_MAX];
	char last_checkpoint[256];
};

/*
 * The control block of a mapped segment, or NULL when region
 * storage.history cannot hold it (never with a valid config: every region
 * is at least 4096 bytes and the block is smaller, see control.c).
 * Any process; read-only mappings may read it.
 */
struct mc_persist_ctl *mc_persist_ctl(const struct mc_seg *seg);

/*
 * Highest frame sequence number from producer slot `slot` that is durably
 * stored (0: none yet).  Any process, any time; wait-free.
 */
uint64_t mc_persist_durable_seq(const struct mc_seg *seg, unsigned slot);

/*
 * Wait until mc_persist_durable_seq(seg, slot) >= seq, polling (a short
 * spin, then sleeps growing from 20 us to 1 ms).  timeout_ns 0 = check
 * once.  Returns 0, -ETIMEDOUT, -EINVAL (slot out of range or no control
 * block), or -EPIPE when the persistence worker has failed for good
 * (supervisor gave up on it) so waiting is pointless.  Any process.
 */
int mc_persist_wait_durable(const struct mc_seg *seg, unsigned slot, uint64_t seq,
    uint64_t timeout_ns);

/* Copy the text fields consistently (sequence lock).  Any process. */
void mc_persist_read_text(const struct mc_seg *seg, struct mc_persist_text *out);

/* "running", "fault", ... / "ENOSPC", "none", ... */
const char *mc_persist_state_name(uint32_t state);
const char *mc_persist_fault_name(uint32_t fault);

/*
 * The "persistence" object of `mcpcore status --json` (a new reference;
 * NULL only when out of memory):
 *   {"state": "running", "path": "/abs/data", "sync": "batch",
 *    "restored": true, "held": 0, "batches": N, "records": N, "bytes": N,
 *    "duplicates": N, "rejected": N, "last_batch": N, "last_commit_us": N,
 *    "max_commit_us": N, "checkpoints": N, "last_checkpoint": "/abs/..." | null,
 *    "memory": {"source": "jemalloc", "allocated": N, "resident": N, "memtables": N},
 *    "fault": null | {"error": "ENOSPC", "message": "...", "since_ms": N,
 *                     "retries": N, "retry_in_ms": N},
 *    "faults_total": N, "durable": {"<slot name>": seq, ...}}
 * Any process (read-only mappings included).
 */
json_t *mc_persist_status_json(const struct mc_seg *seg);

/* Print the status text block for that object (mcpcore status). */
void mc_persist_status_print(const json_t *persistence);

/*
 * Worker side (the process in slot MC_WORKER_PERSISTENCE only).
 * mc_persist_stop() asks a running mc_persistence_main() to finish its
 * current batch and return; async-signal-safe (benchmarks and tests that
 * run the worker without mc_worker_main install it as their SIGTERM
 * handler).
 */
void mc_persist_stop(void);

/*
 * Worker side: set the text fields under the sequence lock; NULL leaves a
 * field unchanged, "" clears it.  Single writer (the slot's process).
 */
void mc_persist_set_text(struct mc_persist_ctl *ctl, const char *path,
    const char *fault_msg, const char *last_checkpoint);

#endif /* MC_PERSIST_H */
