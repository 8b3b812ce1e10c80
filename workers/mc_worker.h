/*
 * mc_worker.h - what every worker process shares: attach, claim its slot,
 * heartbeat, consume inbound rings, answer pings, sleep when idle.
 *
 * A worker is started by the supervisor as `mcpcore worker NAME
 * --instance I` (fork + exec of the same binary, so each worker starts
 * with a clean address space and maps the segment itself).  It reads its
 * configuration from the segment header, never from the file.
 *
 * The loop: take up to a batch of frames from the inbound rings; control
 * frames (ping) are answered here, every other frame goes to the worker's
 * on_frame hook; idle, it polls ~50 us (yielding the core between looks),
 * then sleeps on its doorbell for up
 * to 100 ms (heartbeat and on_tick run at least that often).  SIGTERM or
 * SIGINT ends the loop after the current batch.  Frames a previous
 * incarnation took but did not finish are handed out again first
 * (mc_ring.h), so handlers must tolerate seeing a frame twice: (f_src,
 * f_seq) identifies it.
 */
#ifndef MC_WORKER_H
#define MC_WORKER_H

#include <signal.h>
#include <stdint.h>

#include "mc_config.h"
#include "mc_frame.h"
#include "mc_seg.h"

struct mc_worker;

/*
 * A received frame that is not a control frame.  Return 0 when finished
 * with it (the runtime releases it), -EAGAIN to be called again with the
 * same frame later (back-pressure: e.g. a full destination ring), or
 * another negative errno to log it as failed and release it.  A hook that
 * keeps the frame (batching) sets *kept and releases it itself later.
 */
typedef int (*mc_worker_frame_fn)(struct mc_worker *w, struct mc_msg *m, int *kept);
typedef void (*mc_worker_tick_fn)(struct mc_worker *w);

struct mc_worker {
	struct mc_seg seg;
	const struct mc_config *cfg;    /* inside the segment header */
	unsigned slot;
	const char *name;
	uint64_t handled;               /* frames handled since start */
	uint64_t failed;                /* frames whose handler failed */
	mc_worker_frame_fn on_frame;    /* NULL: count and release */
	mc_worker_tick_fn on_tick;      /* NULL: nothing */
	uint64_t now_ns;                /* mc_now_ns() as the loop last read it: for hooks
	                                   that need "about now" (at most one frame old)
	                                   without a clock read of their own */
	void *ctx;                      /* the worker's own state */
};

/* Entry of `mcpcore worker NAME ...`: returns the process exit status. */
int mc_worker_main(int argc, char **argv);

/* The per-worker mains, in workers/<name>/main.c. */
int mc_state_main(struct mc_worker *w);
int mc_persistence_main(struct mc_worker *w);
int mc_monitor_main(struct mc_worker *w);
int mc_router_main(struct mc_worker *w);
int mc_protocol_main(struct mc_worker *w);

/* Run the loop until SIGTERM/SIGINT.  Returns the exit status. */
int mc_worker_run(struct mc_worker *w);

/*
 * Handle a control frame the way the loop does (PING -> PONG to its
 * sender; an undecodable frame is logged), for workers with a loop of
 * their own.  0 or a negative errno of the answer's send.
 */
int mc_worker_control(struct mc_worker *w, const struct mc_msg *m);

/* Has a stop been requested? (for long handlers) */
int mc_worker_stopping(void);

/* SIGTERM/SIGINT end the loop (mc_worker_stopping turns true), SIGPIPE is
 * ignored: what `mcpcore worker` sets up, for a worker main run elsewhere
 * (the benchmarks fork them). */
void mc_worker_catch_signals(void);

/*
 * Ask the scheduler for time slices of `ns` for the calling thread
 * (SCHED_OTHER / SCHED_BATCH, its share unchanged).  On Linux 6.12 and
 * later (EEVDF custom slices) a short slice gives a waking thread an early
 * deadline, so it preempts a thread that has run a long slice instead of
 * waiting for it to end; older kernels ignore the request.  ns 0 puts
 * back the scheduler's default.  0 or -errno.
 */
int mc_worker_set_slice(uint64_t ns);

#endif /* MC_WORKER_H */
