/*
 * mc_seg.h - the shared-memory segment: creation, attach, the header and
 * the slot table.
 *
 * PROTOCOL
 * One POSIX shm object "/mcpcore.<instance>" (mode 0600) holds the whole
 * layout (mc_layout.h).  The supervisor creates it, sizes it with
 * ftruncate (sparse: tmpfs allocates a page when it is first touched) and
 * initialises only the control structures; everything else starts as the
 * kernel's zero pages, and every structure is designed so that all-zero
 * is its valid empty state.
 *
 * One supervisor per instance: the supervisor holds an exclusive flock on
 * the shm object for its whole life.  The kernel drops the lock when the
 * supervisor dies, however it dies, so a later start can tell a live
 * instance (lock held: refuse) from a stale segment (lock free: sweep it,
 * i.e. unlink and create a fresh object, so that processes still mapping
 * the old one can never corrupt the new one).
 *
 * Everything in the segment is addressed by offsets from the segment base;
 * no pointer is ever stored in it, so each process may map it anywhere.
 *
 * OWNERSHIP (who writes what; everyone may read)
 *   header identity, region table, layout, config   supervisor, at creation
 *   sh_state, sh_supervisor_*, sh_heartbeat_ns      supervisor
 *   slot control line (sl_state, sl_pid, ...)       worker slots: supervisor;
 *                                                   client slots: the client
 *                                                   that claimed it (CAS on
 *                                                   sl_pid), then the
 *                                                   supervisor once it is dead
 *   slot self line (heartbeat, ready, pool cursors) the process in the slot
 *   slot doorbell                                   any producer (atomic inc)
 * sh_magic is stored last at creation, with release ordering: a process
 * that sees the magic sees a complete header.
 */
#ifndef MC_SEG_H
#define MC_SEG_H

#include <ck_ec.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mc_config.h"
#include "mc_layout.h"

#define MC_SEG_MAGIC  0x3145524f4350434dULL   /* "MCPCORE1" little-endian */
#define MC_SEG_ABI    3u      /* 2: struct mc_ring gained the monitor's totals line;
                                 3: the config gained group_commit_ms, slots sl_napping */
#define MC_SEG_NAME_MAX 64

/* Errors beyond negative errno values. */
#define MC_E_NOSEG     1001   /* no segment for this instance */
#define MC_E_ABI       1002   /* segment from another ABI version */
#define MC_E_RUNNING   1003   /* a live supervisor owns the instance */
#define MC_E_SHMSPACE  1004   /* /dev/shm cannot hold the segment */
#define MC_E_NOTREADY  1005   /* segment exists but its supervisor is gone */
#define MC_E_NOSLOT    1006   /* every client slot is taken */

enum mc_seg_state { MC_SEG_INIT = 0, MC_SEG_READY = 1, MC_SEG_STOPPING = 2 };

enum mc_slot_kind { MC_KIND_NONE = 0, MC_KIND_SUPERVISOR, MC_KIND_WORKER, MC_KIND_CLIENT };

/* Slot states.  Workers: STARTING -> RUNNING -> (BACKOFF -> STARTING)* ->
 * FAILED | STOPPED.  Clients: FREE -> ATTACHED -> (REAPING ->) FREE. */
enum mc_slot_state {
	MC_SLOT_FREE = 0,
	MC_SLOT_STARTING,
	MC_SLOT_RUNNING,
	MC_SLOT_BACKOFF,
	MC_SLOT_FAILED,
	MC_SLOT_STOPPED,
	MC_SLOT_ATTACHED,
	MC_SLOT_REAPING,
};

struct mc_region {                  /* written once, by the supervisor */
	char     rg_name[32];
	char     rg_writer[64];
	uint64_t rg_offset;
	uint64_t rg_size;
};

struct mc_slot {
	/* control line: see OWNERSHIP above */
	char     sl_name[16];           /* "state", "client3": fixed at creation */
	char     sl_label[16];          /* client slots: what the claimer calls itself */
	uint32_t sl_kind;               /* enum mc_slot_kind, at creation */
	uint32_t sl_state;              /* enum mc_slot_state */
	int32_t  sl_pid;                /* 0 = none */
	uint32_t sl_generation;         /* +1 per start/attach */
	uint32_t sl_restarts;
	int32_t  sl_last_status;        /* wait(2) status of the last exit */
	uint64_t sl_proc_start;         /* /proc/pid/stat starttime: pid reuse guard */
	uint64_t sl_started_ns;         /* monotonic */
	uint64_t sl_pool_off;           /* segment offset of this slot's frame pool */
	uint64_t sl_pool_size;          /* 0 = no pool (supervisor) */
	/* self line: written only by the process in the slot */
	uint64_t sl_heartbeat_ns __attribute__((aligned(64)));
	uint32_t sl_ready_gen;          /* = sl_generation once initialised */
	uint32_t sl_pad0;
	uint64_t sl_pool_head;          /* frame pool cursors, bytes, ever-growing */
	uint64_t sl_pool_tail;
	uint64_t sl_pool_published;
	uint64_t sl_seq;                /* last frame sequence number used */
	/* doorbell: producers increment, the slot's process sleeps on it */
	struct ck_ec32 sl_bell __attribute__((aligned(64)));
	uint32_t sl_napping;            /* slot's process: 1 while in mc_ring_nap */
};

struct mc_seg_hdr {
	uint64_t sh_magic;
	uint32_t sh_abi;
	uint32_t sh_hdr_size;
	uint64_t sh_size;               /* whole segment, bytes */
	uint64_t sh_created_wall_ns;
	char     sh_instance[MC_INSTANCE_MAX];

	int32_t  sh_supervisor_pid;
	uint32_t sh_state;              /* enum mc_seg_state */
	uint64_t sh_supervisor_start;   /* /proc starttime of the supervisor */
	uint64_t sh_heartbeat_ns __attribute__((aligned(64)));

	uint32_t sh_nregions;
	uint32_t sh_nslots;
	uint32_t sh_nrings;
	uint32_t sh_ring_entries;
	uint32_t sh_journal_entries;
	uint32_t sh_pad0;
	uint64_t sh_slots_off;
	uint64_t sh_ringmap_off;
	uint64_t sh_ringdir_off;
	uint64_t sh_ringbuf_off;
	uint64_t sh_journal_off;
	uint64_t sh_metrics_off;        /* nslots x MC_METRICS_BLOCK */
	uint64_t sh_mq_off;             /* shared.message_queue */
	uint64_t sh_mq_size;
	uint64_t sh_pool_size;
	uint64_t sh_max_frame;
	struct mc_region sh_regions[MC_NREGIONS];
	struct mc_config sh_config;
};

struct mc_inbox;                    /* process-local consumer state, mc_ring.h */
struct mc_state_view;               /* process-local view of the state table, state.c */
struct mc_metrics_block;            /* this process's metrics block, mc_metrics.h */

/* A process's handle on a mapped segment (process-local, never shared). */
struct mc_seg {
	char     name[MC_SEG_NAME_MAX];  /* "/mcpcore.default" */
	uint8_t *base;
	size_t   size;
	int      fd;
	bool     readonly;
	bool     owner;                  /* the supervisor that created it */
	struct mc_seg_hdr *hdr;
	struct mc_slot *slots;
	const int16_t *ringmap;
	struct mc_ring *rings;
	int      slot;                   /* claimed slot, -1 = none */
	uint64_t bit;                    /* 1 << slot */
	uint32_t generation;             /* of the claimed slot */
	struct mc_inbox *inbox;          /* per ring, when a slot is claimed */
	struct mc_state_view *state_view; /* validated once, then reused (state.c) */
	uint64_t *held;                  /* offsets of the frames we hold: an open- */
	uint32_t held_cap;               /* addressing set (power-of-two capacity), */
	uint32_t held_n;                 /* so a duplicate is never handed out twice */
	uint32_t *inbound;               /* ring indexes whose dst is our slot */
	uint32_t ninbound;
	uint32_t poll_next;              /* round-robin cursor over inbound */
	uint32_t poll_burst;             /* frames taken in a row from poll_next */
	bool     bells_deferred;         /* mc_ring_defer_bells: wake-ups batched */
	uint64_t bells;                  /* destinations to wake at the next ring */
	uint64_t alloc_pos;              /* head before the outstanding alloc, or UINT64_MAX */
	struct mc_frame *alloc_frame;    /* the outstanding allocation, or NULL */
	uint64_t head_at;                /* our pool head's offset in the pool */
	uint64_t reclaim_at;             /* pool head at which to reclaim next */
	/* hot-path shortcuts, derived from the header when a slot is claimed */
	struct mc_slot *self;
	uint64_t mq_off;                 /* shared.message_queue */
	uint64_t pool_size;
	uint64_t max_frame;
	struct mc_metrics_block *metrics; /* our block when counting is on, else NULL (mc_metrics.h) */
	struct mc_seg_out {              /* per destination slot: our ring to it */
		struct mc_ring *ring;    /* NULL: no ring from us to that slot */
		struct mc_desc *buf;
	} out[MC_MAX_SLOTS];
};

/* "/mcpcore.<instance>" into buf. */
void mc_seg_name(const char *instance, char *buf, size_t len);

/*
 * Supervisor only.  Create the segment for cfg's instance: check /dev/shm
 * capacity (MC_E_SHMSPACE, with a message saying how to grow it), take the
 * instance lock (MC_E_RUNNING with the live supervisor's pid), sweep a
 * stale segment (its dead supervisor's pid goes to *swept_pid, else 0),
 * size it, write the header, slot table and rings.  The lock lives as long
 * as seg->fd stays open (it is close-on-exec: workers do not inherit it).
 * Returns 0 or a negative error (-errno or -MC_E_*), message in err.
 */
int mc_seg_create(struct mc_seg *seg, const struct mc_config *cfg,
    const struct mc_layout *lay, pid_t *swept_pid, char *err, size_t errlen);

/*
 * Any process.  Map an existing instance's segment, read-write or
 * read-only, and check magic and ABI.  Does not claim a slot.
 * Errors: -MC_E_NOSEG, -MC_E_ABI, -EACCES (permission), other -errno.
 */
int mc_seg_attach(struct mc_seg *seg, const char *instance, bool readonly,
    char *err, size_t errlen);

/* Unmap and close (releases the instance lock for the creator). */
void mc_seg_detach(struct mc_seg *seg);

/* Supervisor: mark stopping, unlink the name, detach. */
void mc_seg_destroy(struct mc_seg *seg);

/*
 * Take a worker slot in a worker process started by the supervisor (which
 * already wrote sl_pid and sl_generation).  Sets up consumer replay of
 * anything the slot's previous incarnation took but did not finish, and
 * re-publishes frames it had published only in part.  Returns 0 or -errno.
 */
int mc_seg_claim_worker(struct mc_seg *seg, unsigned slot);

/*
 * Claim a free client slot (Python, CLI).  Needs a running supervisor
 * (-MC_E_NOTREADY) and a free slot (-MC_E_NOSLOT).  The slot is released by
 * mc_seg_release_client(), or reaped by the supervisor if the process dies.
 */
int mc_seg_claim_client(struct mc_seg *seg, const char *label,
    char *err, size_t errlen);
void mc_seg_release_client(struct mc_seg *seg);

/* Mark the claimed slot initialised (worker: RUNNING from now on). */
void mc_seg_ready(struct mc_seg *seg);

/* Refresh the claimed slot's heartbeat. */
void mc_seg_heartbeat(struct mc_seg *seg);

/* The same with the time given: `now` is a CLOCK_MONOTONIC reading
 * (mc_now_ns) the caller just took, for loops that have one anyway. */
void mc_seg_heartbeat_at(struct mc_seg *seg, uint64_t now);

/* Is the instance's supervisor alive (pid present and same start time)? */
bool mc_seg_supervisor_alive(const struct mc_seg *seg);

/*
 * Supervisor: free client slots whose process has died.  Drains what was
 * queued to them and finishes what they published in part; a slot whose
 * peers' rings are full stays REAPING and is retried on the next call.
 * Returns the number of slots freed.
 */
int mc_seg_reap_clients(struct mc_seg *seg);

/* Start time of a process (field 22 of /proc/pid/stat), 0 if it is gone
 * or a zombie.  Used with pids to survive pid reuse. */
uint64_t mc_proc_start_time(pid_t pid);

/* Slot state name ("running") for status output. */
const char *mc_slot_state_name(uint32_t state);

static inline void *mc_seg_ptr(const struct mc_seg *seg, uint64_t off)
{
	return seg->base + off;
}

/* Human-readable text for a negative error returned by mc_seg_* / mc_ring_*. */
const char *mc_strerror(int err);

#endif /* MC_SEG_H */
