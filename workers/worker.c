/*
 * worker.c - the loop every worker runs (contract in mc_worker.h).
 */
#define _GNU_SOURCE     /* SCHED_BATCH */
#include "mc_worker.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mc_log.h"
#include "mc_metrics.h"
#include "mc_proto.h"
#include "mc_util.h"

#define MC_WORKER_BATCH     256
#define MC_WORKER_SPIN_NS   50000ULL        /* spin before sleeping: a futex wake costs ~35 us */
#define MC_WORKER_SLEEP_NS  100000000ULL    /* longest sleep: heartbeat period */

static volatile sig_atomic_t mc_worker_stop;

/* Builtin metrics of every worker (mc_metrics.h): frame handling latency
 * and messages handled by kind here, memory on the heartbeat.  Frames and
 * bytes through the rings are not counted by anyone: the monitor derives
 * them from the ring and pool cursors.
 *
 * The handling time of a frame runs from the loop reaching for it (the
 * mc_recv that took it) to the loop being done with it (released), so one
 * clock read both ends a frame's time and starts the next one's: a read
 * costs ~20 ns, which at 2 M frames/s is 4% of a core per read. */
static struct mc_histogram mc_worker_handling;

/*
 * messages_handled_total{kind}: one counter per kind label index
 * (mc_metrics_kind_index: known kinds, raw, other), registered the first
 * time a kind is handled.  A registration that fails (registry full, no
 * block) is not retried: the handle stays NULL and counting it is a no-op.
 */
static struct mc_counter mc_worker_handled[MC_METRICS_KINDS + 1];
static bool mc_worker_handled_tried[MC_METRICS_KINDS + 1];

static void mc_worker_count_handled(struct mc_worker *w, uint16_t kind)
{
	unsigned k = mc_metrics_kind_index(kind);

	if (MC_UNLIKELY(!mc_worker_handled_tried[k])) {
		char buf[24];

		mc_worker_handled_tried[k] = true;
		if (w->seg.metrics != NULL)
			mc_metrics_counter(&w->seg, MC_METRIC_HANDLED,
			    "Messages the worker loop handled (control frames included), by frame kind",
			    (const char *const[]){ "kind", mc_metrics_kind_name(k, buf, sizeof(buf)),
			    NULL }, &mc_worker_handled[k]);
	}
	mc_counter_add(mc_worker_handled[k], 1);
}

/* A failed handler, counted by error code (a bounded label set: errnos). */
static void mc_worker_count_error(struct mc_worker *w, int rc)
{
	struct mc_counter c;
	char code[24];

	mc_metrics_counter(&w->seg, MC_METRIC_HANDLER_ERRORS,
	    "Frames whose handler failed, by error code",
	    (const char *const[]){ "code", mc_metrics_errno_label(rc, code, sizeof(code)), NULL },
	    &c);
	mc_counter_add(c, 1);
}

static void mc_worker_on_signal(int sig)
{
	(void)sig;
	mc_worker_stop = 1;
}

void mc_worker_catch_signals(void)
{
	signal(SIGTERM, mc_worker_on_signal);
	signal(SIGINT, mc_worker_on_signal);
	signal(SIGPIPE, SIG_IGN);
}

int mc_worker_stopping(void)
{
	return mc_worker_stop;
}

/*
 * batch: the store and the monitor work in batches nobody waits for (lazy
 * frames, group commits, and RocksDB's flushes and compactions, whose
 * threads inherit the policy).  SCHED_BATCH keeps their share of the CPU
 * but takes away their wake-up preemption: a group commit that wakes every
 * 10 ms waits for the running request to finish its time slice instead of
 * taking its core (perf sched showed such commits delaying the front door
 * and its clients by ~0.5 ms every ~12 ms on two cores).  They also run at
 * nice MC_WORKER_BATCH_NICE, a tenth of a normal thread's weight: with an
 * equal share the store's threads (group commit, RocksDB flush) kept a
 * core 1-3 ms at a time while a request waited on it.  Measured at half
 * load (57 k req/s, 3 runs each way, 2-core box): the front door's p99
 * went from 1.7-3.7 ms to 0.8-1.2 ms, and a full-load wrk run from 115 k
 * to 125 k req/s.  They keep
 * up in the time the request path leaves idle (~25 % of the box even at
 * full load); when they cannot, back-pressure holds the front door and
 * nothing is lost.  RocksDB's flushes and compactions go further, to
 * SCHED_IDLE (workers/persistence/store.c).
 *
 * slice: the workers a request waits for (the front door, and the router
 * and state worker for writes) take short slices (mc_worker_set_slice), so
 * when one wakes on a core where a batch thread has the CPU - a RocksDB
 * flush runs ~2 ms at a time - it gets the core after ~0.1 ms instead of
 * the default slice's ~1.4 ms.  perf sched showed such waits as the tail
 * of the front door at half load; five paired runs of it at 54 k req/s
 * gave p99 1.94 ms (median) with the default slice, 1.43 ms with 100 us.
 */
#define MC_WORKER_SLICE_NS 100000ULL
#define MC_WORKER_BATCH_NICE 10

static const struct {
	const char *name;
	int (*main)(struct mc_worker *);
	bool batch;
	uint64_t slice_ns;              /* 0: the scheduler's default */
} mc_workers[] = {
	{ "state", mc_state_main, false, MC_WORKER_SLICE_NS },
	{ "persistence", mc_persistence_main, true, 0 },
	{ "monitor", mc_monitor_main, true, 0 },
	{ "router", mc_router_main, false, MC_WORKER_SLICE_NS },
	{ "protocol", mc_protocol_main, false, MC_WORKER_SLICE_NS },
};

/* struct sched_attr as sched_setattr(2) takes it (SCHED_ATTR_SIZE_VER0):
 * glibc 2.36 has neither the struct nor a wrapper. */
struct mc_sched_attr {
	uint32_t size;
	uint32_t policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime;               /* the slice, for SCHED_OTHER / SCHED_BATCH */
	uint64_t deadline;
	uint64_t period;
};

int mc_worker_set_slice(uint64_t ns)
{
	struct mc_sched_attr a;

	/* the policy and nice value stay as they are */
	memset(&a, 0, sizeof(a));
	if (syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0) != 0)
		return -errno;
	a.size = sizeof(a);
	a.flags = 0;
	a.runtime = ns;
	if (syscall(SYS_sched_setattr, 0, &a, 0) != 0)
		return -errno;
	return 0;
}

/* Answer a PING from any slot with a PONG carrying who we are. */
int mc_worker_control(struct mc_worker *w, const struct mc_msg *m)
{
	Mcpcore__Control *in = (Mcpcore__Control *)mc_proto_unpack(m->frame);
	Mcpcore__Control out = MCPCORE__CONTROL__INIT;
	int rc = 0;

	if (in == NULL) {
		mc_log_warn("frame_undecodable", "{s:s, s:i}", "message",
		    "control frame does not parse; dropped", "src", (int)m->src);
		return -EBADMSG;
	}
	if (in->op == MCPCORE__CONTROL__OP__PING) {
		out.op = MCPCORE__CONTROL__OP__PONG;
		out.nonce = in->nonce;
		out.sent_ns = in->sent_ns;
		out.worker = (char *)w->name;
		out.generation = w->seg.generation;
		out.pid = getpid();
		out.handled = w->handled;
		rc = mc_proto_send(&w->seg, &out.base, 1ULL << m->src);
		if (rc == -EPIPE)
			rc = 0;     /* the pinger is gone: nobody to answer */
	}
	protobuf_c_message_free_unpacked(&in->base, NULL);
	return rc;
}

static int mc_worker_dispatch(struct mc_worker *w, struct mc_msg *m, int *kept)
{
	*kept = 0;
	if (m->frame->f_kind == MC_FK_CONTROL)
		return mc_worker_control(w, m);
	if (w->on_frame != NULL)
		return w->on_frame(w, m, kept);
	return 0;
}

/* Handle up to a batch; returns how many frames were finished.  *eager
 * is set when one of them was of a kind somebody waits for.  w->now_ns is
 * the clock when the drain ended. */
static int mc_worker_drain(struct mc_worker *w, struct mc_msg *pending, int *has_pending,
    bool *eager)
{
	uint64_t t0 = mc_now_ns(), t1;
	int done = 0;

	while (done < MC_WORKER_BATCH) {
		struct mc_msg m;
		int kept, rc;
		uint16_t kind;

		if (*has_pending) {
			m = *pending;
		} else if (mc_recv(&w->seg, &m) != 0) {
			break;
		}
		/* read before the handler: one that keeps the frame may release it */
		kind = m.frame->f_kind;
		*eager |= !mc_proto_kind_lazy(kind);
		rc = mc_worker_dispatch(w, &m, &kept);
		if (rc == -EAGAIN) {
			/* destination full: keep the frame and come back to it */
			*pending = m;
			*has_pending = 1;
			break;
		}
		*has_pending = 0;
		if (rc < 0) {
			w->failed++;
			mc_worker_count_error(w, rc);
			mc_log_warn("frame_failed", "{s:i, s:I, s:i, s:s}", "src", (int)m.src,
			    "seq", (json_int_t)m.desc.d_seq, "kind", (int)kind,
			    "error", mc_strerror(rc));
		}
		w->handled++;
		mc_worker_count_handled(w, kind);
		if (!kept)
			mc_frame_release(&w->seg, &m);
		t1 = mc_now_ns();
		mc_histogram_observe(mc_worker_handling, t1 - t0);
		t0 = t1;
		done++;
	}
	/* a frame put back (-EAGAIN) is not observed: it is handled later */
	w->now_ns = t0;
	return done;
}

int mc_worker_run(struct mc_worker *w)
{
	struct mc_msg pending;
	int has_pending = 0;
	uint64_t last_tick = 0;
	bool nap = false;       /* the last batch was lazy frames only */

	mc_seg_ready(&w->seg);
	mc_log_info("worker_ready", "{s:s, s:i}", "worker", w->name,
	    "generation", (int)w->seg.generation);
	while (!mc_worker_stop) {
		bool eager = false;
		int n = mc_worker_drain(w, &pending, &has_pending, &eager);
		uint64_t now = w->now_ns;       /* read as the drain ended */

		if (now - last_tick >= MC_WORKER_SLEEP_NS || n == 0) {
			mc_seg_heartbeat_at(&w->seg, now);
			if (w->on_tick != NULL)
				w->on_tick(w);
			last_tick = now;
		}
		if (n > 0) {
			nap = !eager;
		} else if (nap && !has_pending) {
			/* more lazy frames are likely on their way: take them as a
			 * batch after a nap rather than one wake-up each */
			nap = false;
			mc_ring_nap(&w->seg, MC_RING_NAP_NS);
		} else {
			mc_ring_wait(&w->seg, MC_WORKER_SPIN_NS,
			    has_pending ? 1000000ULL : MC_WORKER_SLEEP_NS);
		}
	}
	mc_log_info("worker_stopping", "{s:s, s:I, s:I}", "worker", w->name,
	    "handled", (json_int_t)w->handled, "failed", (json_int_t)w->failed);
	return 0;
}

static int mc_worker_usage(void)
{
	fprintf(stderr, "usage: mcpcore worker NAME --instance INSTANCE\n"
	    "Started by `mcpcore run`; not meant to be run by hand.\n");
	return 64;
}

/* Test hook: MCPCORE_TEST_CRASH=<worker> makes that worker die at start,
 * which is how the crash-loop tests get a worker that never stays up. */
static void mc_worker_fault(const char *name)
{
	const char *crash = getenv("MCPCORE_TEST_CRASH");

	if (crash != NULL && strcmp(crash, name) == 0) {
		mc_log_warn("test_crash", "{s:s}", "message", "MCPCORE_TEST_CRASH: aborting");
		abort();
	}
}

int mc_worker_main(int argc, char **argv)
{
	struct mc_worker w;
	const char *instance = NULL;
	char err[512];
	int slot, rc;

	if (argc != 4 || strcmp(argv[2], "--instance") != 0)
		return mc_worker_usage();
	instance = argv[3];
	slot = mc_layout_worker_slot(argv[1]);
	if (slot < 0)
		return mc_worker_usage();
	memset(&w, 0, sizeof(w));
	w.slot = (unsigned)slot;
	w.name = mc_layout_worker_name((unsigned)slot);
	mc_log_init(w.name, NULL);
	mc_worker_catch_signals();

	rc = mc_seg_attach(&w.seg, instance, false, err, sizeof(err));
	if (rc) {
		mc_log_error("attach_failed", "{s:s}", "message", err);
		return 1;
	}
	w.cfg = &w.seg.hdr->sh_config;
	mc_log_init(w.name, w.cfg->log_level);
	rc = mc_seg_claim_worker(&w.seg, w.slot);
	if (rc) {
		mc_log_error("claim_failed", "{s:s}", "message", mc_strerror(rc));
		mc_seg_detach(&w.seg);
		return 1;
	}
	mc_worker_fault(w.name);
	if (mc_workers[slot - MC_SLOT_FIRST_WORKER].batch) {
		/* before any thread is made: the worker's own threads inherit both */
		if (sched_setscheduler(0, SCHED_BATCH, &(struct sched_param){ .sched_priority = 0 }) != 0)
			mc_log_warn("sched_batch_failed", "{s:s}", "error", mc_strerror(-errno));
		if (setpriority(PRIO_PROCESS, 0, MC_WORKER_BATCH_NICE) != 0)
			mc_log_warn("nice_failed", "{s:s}", "error", mc_strerror(-errno));
	}
	if (mc_workers[slot - MC_SLOT_FIRST_WORKER].slice_ns != 0) {
		rc = mc_worker_set_slice(mc_workers[slot - MC_SLOT_FIRST_WORKER].slice_ns);
		if (rc)
			mc_log_debug("sched_slice_failed", "{s:s}", "error", mc_strerror(rc));
	}
	/* counters carry over a restart (mc_metrics.h, LIFETIME) */
	rc = mc_metrics_open(&w.seg, w.slot, MC_METRICS_CARRY);
	if (rc == 0)
		rc = mc_metrics_histogram(&w.seg, MC_METRIC_FRAME_HANDLING,
		    "Time a worker spends on one received frame: taking it, handling it, releasing it",
		    NULL, &mc_worker_handling);
	if (rc)
		mc_log_warn("metrics_unavailable", "{s:s}", "error", mc_strerror(rc));
	rc = mc_workers[slot - MC_SLOT_FIRST_WORKER].main(&w);
	mc_seg_detach(&w.seg);
	return rc;
}
