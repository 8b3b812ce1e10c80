/*
 * mc_metrics.h - per-process metrics blocks in the segment: counters,
 * gauges and histograms that each process updates without locks or
 * syscalls, and that the monitor, `mcpcore status` and Python read.
 *
 * BLOCKS
 * Slot s owns the MC_METRICS_BLOCK (64 KiB) bytes at segment offset
 * sh_metrics_off + s * MC_METRICS_BLOCK, and the process in slot s is the
 * only writer of its block (the supervisor for slot 0).  A block is:
 *
 *   header        magic, version, generation, owner pid, registry count
 *   rates         monitor's block only: per-slot frame rates it computed
 *   registry      MC_METRICS_MAX fixed-size descriptors (name, labels,
 *                 type, offsets of value and help text)
 *   arena         the registered values and help strings, bump-allocated
 *
 * CHANNEL FIGURES (not in the blocks: nothing is counted per frame)
 * The frame layer counts nothing: even a process-local increment per
 * frame cost several percent of ring throughput.  The channel figures are
 * derived from cursors that exist anyway (mc_metrics_slot_frames):
 *   - frames per ring: the ring's own cursors, extended to 64 bits by the
 *     monitor (mc_ring.h, FRAME TOTALS); a slot's frames sent / received
 *     are the sums over its outbound / inbound rings.  A frame sent to n
 *     destinations is n puts.  Totals run from the segment's creation,
 *     across restarts of any process and across the clients that used a
 *     client slot.
 *   - bytes: the slot's frame pool cursor sl_pool_published (mc_seg.h),
 *     the bytes of frame blocks the process published, headers and
 *     padding included (not sl_pool_head, which an aborted allocation
 *     moves back).  Received bytes are not measured.
 *   - frames by kind: counted where messages are handled, by the common
 *     worker loop (workers/worker.c), into the registered counter
 *     MC_METRIC_HANDLED{kind} of the worker's block: one increment per
 *     handled message, not per frame moved.
 *
 * Nothing in a block is a pointer: descriptors hold offsets from the block
 * start, so every process can read any block wherever it mapped the segment.
 * Readers never trust a block: every offset and string is bounds-checked.
 *
 * METRICS
 * Identity is name + labels.  Names follow Prometheus rules ([a-z_][a-z0-9_]*,
 * no "mcpcore_" prefix: the monitor adds it); counters must end in "_total",
 * nothing else may; "_bucket", "_count", "_sum" suffixes and the labels
 * "worker", "le", "quantile" are reserved for the exposition.  At most
 * MC_METRICS_LABELS label pairs, given as {"key", "value", ..., NULL} and
 * stored canonically (sorted by key, escaped), so the order given does not
 * matter.  Keep label values bounded (an error code, a message type): each
 * label set is a registry entry, and a block holds MC_METRICS_MAX of them.
 * Units: a name ending in "_seconds" or "_seconds_total" is a time; its
 * counter or histogram stores integer nanoseconds (exposed in seconds).
 * Everything else is stored as given.  Counters are uint64, gauges double,
 * histograms struct mc_hist (mc_hist.h: bounded relative error 1/32).
 * Capacity: a histogram takes 4.7 KiB of the ~45 KiB arena, so a process
 * can register about nine histograms and MC_METRICS_MAX metrics in all.
 *
 * WRITING (owner only; no locks, no syscalls, no atomic read-modify-write)
 * Updates are relaxed 64-bit loads and stores to values only the owner
 * writes: a reader sees each word old or new, never torn.  Registration
 * fills a descriptor and then publishes it by storing mb_count with
 * release ordering; a reader loads mb_count with acquire ordering and
 * reads only descriptors below it.  Within one process, registration must
 * not run concurrently with itself (one registering thread, or a lock, as
 * the Python binding's Segment lock); updates of different metrics may run
 * in different threads if each metric has one writing thread.
 *
 * READING (any process, any time)
 * A reader takes a view (mc_metrics_view: generation + count) and checks it
 * again after reading (mc_metrics_view_ok); a changed generation means the
 * block was reset meanwhile and what was read is discarded.  Counters and
 * gauges are read whole.  Histograms may be slightly inconsistent between
 * buckets and sum (mc_hist.h); a copy is self-consistent.
 *
 * LIFETIME (documented in docs/DESIGN.md as well)
 *   - Workers open their block in CARRY mode: counters and histograms
 *     survive a restart (a worker restart is not a Prometheus counter reset;
 *     rates stay right), gauges are zeroed (the new process sets its own).
 *     The registry survives too, so re-registering returns the same values.
 *   - The supervisor opens slot 0 in RESET mode (a new segment anyway).
 *   - Clients (Python, `mcpcore ping`) get a fresh block when they claim a
 *     slot (RESET); a client that releases its slot retires its block, and
 *     the supervisor retires the block of a client it reaps: the monitor
 *     stops exporting it at once, and its memory is reset at the next claim.
 *
 * Errors are negative errno values; nothing here exits or aborts.
 */
#ifndef MC_METRICS_H
#define MC_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mc_hist.h"
#include "mc_layout.h"
#include "mc_seg.h"

#define MC_METRICS_MAGIC     0x3153525445434d4dULL   /* "MMCETRS1" little-endian */
#define MC_METRICS_VERSION   2u      /* 2: no channel counters in the block */
#define MC_METRICS_KINDS     64u     /* frame kinds with a name (enum mc_frame_kind) */
#define MC_METRICS_OTHER     MC_METRICS_KINDS   /* label index of kinds without one */
#define MC_METRICS_MAX       80u     /* registry entries per block */
#define MC_METRICS_NAME_MAX  64u     /* name, NUL included */
#define MC_METRICS_LABELS_MAX 128u   /* canonical label string, NUL included */
#define MC_METRICS_HELP_MAX  256u    /* help text, NUL included */
#define MC_METRICS_LABELS    4u      /* label pairs per metric */
#define MC_METRICS_TICK_NS   1000000000ULL   /* memory gauges refresh period */

enum mc_metric_type {
	MC_METRIC_COUNTER = 1,
	MC_METRIC_GAUGE = 2,
	MC_METRIC_HISTOGRAM = 3,
};

enum mc_metric_unit {
	MC_UNIT_NONE = 0,
	MC_UNIT_SECONDS = 1,            /* stored as integer nanoseconds */
};

enum mc_metrics_mode {
	MC_METRICS_RESET,               /* start from an empty block */
	MC_METRICS_CARRY,               /* keep counters, histograms and registry */
};

struct mc_metric_desc {
	char     md_name[MC_METRICS_NAME_MAX];
	char     md_labels[MC_METRICS_LABELS_MAX];  /* k="v",k2="v2": exposition-ready */
	uint32_t md_type;               /* enum mc_metric_type */
	uint32_t md_unit;               /* enum mc_metric_unit */
	uint32_t md_value_off;          /* from the block start */
	uint32_t md_help_off;           /* from the block start; NUL-terminated */
	uint32_t md_pad[4];
};

struct mc_metrics_block {
	/* header: the owner */
	uint64_t mb_magic;              /* MC_METRICS_MAGIC once initialised, stored last */
	uint32_t mb_version;
	uint32_t mb_count;              /* descriptors published (release) */
	uint32_t mb_gen;                /* +1 at every reset or retire */
	int32_t  mb_pid;                /* current owner */
	uint32_t mb_owners;             /* processes that owned it since the last reset */
	uint32_t mb_arena_used;         /* bytes of mb_arena handed out */
	uint64_t mb_reset_wall_ns;      /* when counting started (CLOCK_REALTIME) */
	uint64_t mb_open_ns;            /* when the current owner opened it (monotonic) */
	uint64_t mb_tick_ns;            /* last memory refresh (monotonic) */
	uint64_t mb_pad0;
	/* rates: written only in the monitor's block, by the monitor */
	uint64_t mb_rates_ns __attribute__((aligned(64)));   /* when computed, monotonic */
	uint64_t mb_rates_pad[7];
	double   mb_rate_in[MC_MAX_SLOTS];   /* frames received per second, by slot */
	double   mb_rate_out[MC_MAX_SLOTS];  /* frames sent per second, by slot */
	/* registry */
	struct mc_metric_desc mb_desc[MC_METRICS_MAX] __attribute__((aligned(64)));
	uint8_t  mb_arena[] __attribute__((aligned(64)));
};

#define MC_METRICS_ARENA (MC_METRICS_BLOCK - (uint32_t)offsetof(struct mc_metrics_block, mb_arena))

/* Handles to registered values (process-local; NULL inside = not
 * registered, and every update is then a no-op). */
struct mc_counter { uint64_t *c; };
struct mc_gauge { uint64_t *g; };         /* the bits of a double */
struct mc_histogram { struct mc_hist *h; };

/* ---- owner: open, register, update ------------------------------------ */

/* The block of `slot` (any process; no checks beyond the slot range). */
struct mc_metrics_block *mc_metrics_block(const struct mc_seg *seg, unsigned slot);

/*
 * The process in `slot`: start writing its block and set seg->metrics,
 * where its registrations go.  RESET clears the block; CARRY keeps what a
 * previous owner left (gauges are zeroed), or clears it if it is not a
 * valid block.  -EPERM: segment read-only;
 * -EINVAL: slot out of range.
 */
int mc_metrics_open(struct mc_seg *seg, unsigned slot, enum mc_metrics_mode mode);

/* Stop counting into the block (seg->metrics = NULL); the block keeps its
 * values.  Idempotent. */
void mc_metrics_close(struct mc_seg *seg);

/*
 * Owner leaving for good, or the supervisor for a dead owner: mark the block
 * empty (magic cleared, generation bumped) so readers drop it at once.  The
 * values are cleared by the next RESET.  Closes seg->metrics if it is that
 * block.
 */
void mc_metrics_retire(struct mc_seg *seg, unsigned slot);

/*
 * Owner.  Register (or find, when name + labels exist with the same type)
 * a metric.  labels: NULL or {"key", "value", ..., NULL}.  On success *out
 * points at the value in the block.  Errors: -ENODEV (seg->metrics is
 * NULL), -EINVAL (name, labels or help invalid; the reason in `why` if not
 * NULL), -EEXIST (the name exists with another type), -ENOSPC (registry or
 * arena full).
 */
int mc_metrics_register(struct mc_seg *seg, enum mc_metric_type type, const char *name,
    const char *help, const char *const *labels, void **out, const char **why);

/* Typed wrappers: on failure the handle stays NULL (updates do nothing). */
int mc_metrics_counter(struct mc_seg *seg, const char *name, const char *help,
    const char *const *labels, struct mc_counter *out);
int mc_metrics_gauge(struct mc_seg *seg, const char *name, const char *help,
    const char *const *labels, struct mc_gauge *out);
int mc_metrics_histogram(struct mc_seg *seg, const char *name, const char *help,
    const char *const *labels, struct mc_histogram *out);

static inline void mc_counter_add(struct mc_counter c, uint64_t n)
{
	if (c.c != NULL)
		__atomic_store_n(c.c, __atomic_load_n(c.c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline void mc_gauge_set(struct mc_gauge g, double v)
{
	uint64_t bits;

	if (g.g == NULL)
		return;
	memcpy(&bits, &v, sizeof(bits));
	__atomic_store_n(g.g, bits, __ATOMIC_RELAXED);
}

static inline double mc_gauge_value(struct mc_gauge g)
{
	uint64_t bits = g.g != NULL ? __atomic_load_n(g.g, __ATOMIC_RELAXED) : 0;
	double v;

	memcpy(&v, &bits, sizeof(v));
	return v;
}

static inline void mc_gauge_add(struct mc_gauge g, double d)
{
	mc_gauge_set(g, mc_gauge_value(g) + d);
}

/* Record one sample (nanoseconds for *_seconds histograms). */
static inline void mc_histogram_observe(struct mc_histogram h, uint64_t v)
{
	if (h.h != NULL)
		mc_hist_record(h.h, v);
}

/* ---- memory gauges ---------------------------------------------------- */

/* Where memory figures come from: fills allocated/resident bytes, 0 or
 * -errno.  Installed by programs linked with jemalloc (mc_jemalloc.h); the
 * library itself never depends on an allocator. */
typedef int (*mc_metrics_memory_fn)(uint64_t *allocated, uint64_t *resident);
void mc_metrics_set_memory_source(mc_metrics_memory_fn fn);

/* Owner, on its heartbeat (mc_seg_heartbeat calls it; not per frame):
 * register and refresh the memory gauges "memory_allocated_bytes" /
 * "memory_resident_bytes", at most once per MC_METRICS_TICK_NS.  Nothing
 * when no source is installed (no gauges: absent, not 0). */
void mc_metrics_tick(struct mc_seg *seg);
/* The same at `now`, a CLOCK_MONOTONIC reading (mc_seg_heartbeat_at). */
void mc_metrics_tick_at(struct mc_seg *seg, uint64_t now);

/* ---- the monitor's published rates ----------------------------------- */

/* Monitor only, into its own block: frames/s per slot for `nslots` slots. */
void mc_metrics_publish_rates(struct mc_seg *seg, const double *in, const double *out,
    unsigned nslots);

/* Any process: the rates the monitor published for `slot` and how old they
 * are.  -ENOENT when the monitor has published none. */
int mc_metrics_rates(const struct mc_seg *seg, unsigned slot, double *in, double *out,
    uint64_t *age_ns);

/* ---- readers ----------------------------------------------------------- */

struct mc_metrics_view {
	const struct mc_metrics_block *b;
	uint32_t gen;
	uint32_t count;                 /* descriptors readable */
	int32_t  pid;
	uint32_t owners;
};

/* A reader's copy of one descriptor, validated. */
struct mc_metric_info {
	char     name[MC_METRICS_NAME_MAX];
	char     labels[MC_METRICS_LABELS_MAX];
	char     help[MC_METRICS_HELP_MAX];
	enum mc_metric_type type;
	enum mc_metric_unit unit;
	const void *value;              /* inside the block */
};

/* Start reading slot's block: 0, or -ENOENT when it holds no metrics. */
int mc_metrics_view(const struct mc_seg *seg, unsigned slot, struct mc_metrics_view *v);

/* Is what was read through v since mc_metrics_view() still valid? */
bool mc_metrics_view_ok(const struct mc_metrics_view *v);

/* Descriptor i < v->count: 0, or -EINVAL when it does not validate. */
int mc_metrics_info(const struct mc_metrics_view *v, uint32_t i, struct mc_metric_info *out);

/* Values, read whole (relaxed loads). */
uint64_t mc_metrics_read_counter(const struct mc_metric_info *m);
double mc_metrics_read_gauge(const struct mc_metric_info *m);
uint64_t mc_metrics_read_hist(const struct mc_metric_info *m, struct mc_hist *out);

/*
 * The channel figures of `slot` (CHANNEL FIGURES above), from shared
 * cursors: any process, any time, with or without a metrics block.
 * Monotonic while the instance lives.
 */
struct mc_metrics_frames {
	uint64_t sent;                  /* puts into the slot's outbound rings */
	uint64_t received;              /* takes from the slot's inbound rings */
	uint64_t pool_bytes;            /* sl_pool_published: frame blocks published */
};
void mc_metrics_slot_frames(const struct mc_seg *seg, unsigned slot, struct mc_metrics_frames *out);

/* Find name + canonical labels ("" for none) in a view: index or -ENOENT. */
int mc_metrics_find(const struct mc_metrics_view *v, const char *name, const char *labels);

/* Label value for a negative error: "EBADMSG", or the number ("-1001"). */
const char *mc_metrics_errno_label(int err, char *buf, size_t len);

/* Label value for a frame kind: "Control", "raw", "other", "kind23". */
const char *mc_metrics_kind_name(unsigned kind, char *buf, size_t len);

/* A frame kind's label index: the kind itself when it has a name (raw or
 * a known message), else MC_METRICS_OTHER, so a label set stays bounded
 * whatever kinds a peer sends. */
unsigned mc_metrics_kind_index(unsigned kind);

/* What `mcpcore status` shows per slot. */
struct mc_metrics_summary {
	uint64_t frames_in, frames_out; /* ring totals (mc_metrics_slot_frames) */
	uint64_t pool_bytes;            /* pool bytes published */
	bool     has_rates;
	double   in_per_s, out_per_s;
	bool     has_memory;
	double   memory_allocated, memory_resident;
	uint64_t handled;               /* samples of frame_handling_seconds */
	double   p50_ns, p99_ns;        /* of frame_handling_seconds (if handled) */
	uint64_t errors;                /* frame_handler_errors_total, all codes */
};

/* 0, or -ENOENT when the slot has no metrics block; frames_in, frames_out
 * and pool_bytes are filled in either case (they need no block). */
int mc_metrics_summary(const struct mc_seg *seg, unsigned slot, struct mc_metrics_summary *out);

/* Canonical label string of pairs {"k","v",...,NULL} into buf: 0 or -EINVAL. */
int mc_metrics_labels(const char *const *labels, char *buf, size_t len, const char **why);

/* Builtin metric names (registered by the common worker loop, the
 * supervisor, and mc_metrics_open). */
/* frame_handling_seconds: one sample per frame the common worker loop
 * handled, from the mc_recv that took it to its release (so the ring work
 * of a frame is in it, and one clock read per frame serves two samples). */
#define MC_METRIC_FRAME_HANDLING   "frame_handling_seconds"
#define MC_METRIC_HANDLER_ERRORS   "frame_handler_errors_total"
#define MC_METRIC_HANDLED          "messages_handled_total"   /* {kind}: worker loop */
#define MC_METRIC_MEM_ALLOCATED    "memory_allocated_bytes"
#define MC_METRIC_MEM_RESIDENT     "memory_resident_bytes"

#endif /* MC_METRICS_H */
