/*
 * bench_pipeline.c - `mcpcore-bench pipeline`: the MCP pipeline without
 * HTTP.  Frames are injected straight into the router's inbound ring, go
 * through the real router (mc_router_main) to the real state worker
 * (mc_state_main), and the replies come back to the injector.
 *
 * Each message is what `tools/call state_get` becomes inside the runtime:
 * one StateRequest frame with one GET op (lane TOOL), answered by one
 * StateReply frame.  The injector plays the protocol worker (it holds the
 * protocol slot) and keeps a window of messages in flight; like the
 * protocol worker's loop, each turn takes every reply waiting, then sends
 * as many new requests (not one request per reply, which would make every
 * ring index and slot line bounce between the cores once per message).
 * Side by side, in alternating runs, the same messages go straight to the
 * state worker (no router): the difference is what the router's hop costs.
 *
 * The box has two cores and three busy processes here (injector, router,
 * state): the injector is on core 0, the state worker on core 1, and the
 * router goes where the scheduler puts it.  The persistence slot is marked stopped so the change feed of
 * the preload is not part of the measurement.
 */
#define _GNU_SOURCE
#include "mc_bench.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mc_frame.h"
#include "mc_proto.h"
#include "mc_ring.h"
#include "mc_state_client.h"
#include "mc_util.h"
#include "mc_worker.h"

#define MC_PL_KEYS   10000
#define MC_PL_WINDOW 256        /* messages in flight */
#define MC_PL_LAT_N  100000

static char mc_pl_keys[MC_PL_KEYS][16];

static int mc_pl_run_worker(struct mc_seg *seg, unsigned slot, const char *name, int cpu,
    int (*main_fn)(struct mc_worker *))
{
	struct mc_worker w;

	memset(&w, 0, sizeof(w));
	mc_worker_catch_signals();      /* SIGTERM at the end: a clean exit */
	if (cpu >= 0)
		mc_bench_pin(cpu);
	if (mc_seg_claim_worker(seg, slot) != 0)
		return 1;
	w.seg = *seg;
	w.cfg = &seg->hdr->sh_config;
	w.slot = slot;
	w.name = name;
	return main_fn(&w);
}

static int mc_pl_state(void *arg)
{
	return mc_pl_run_worker(arg, MC_WORKER_STATE, "state", 1, mc_state_main);
}

static int mc_pl_router(void *arg)
{
	return mc_pl_run_worker(arg, MC_WORKER_ROUTER, "router", -1, mc_router_main);
}

/* Send one single-op request (GET, or PUT for the preload) to via. */
static int mc_pl_send(struct mc_seg *seg, unsigned via, Mcpcore__StateOp__Kind kind, uint64_t i)
{
	static struct mc_state_batch b;        /* 40 KiB: not on the stack */
	const char *k = mc_pl_keys[i % MC_PL_KEYS];
	struct mc_state_req r = { .kind = kind, .ns = "bench", .nslen = 5, .key = k,
	    .klen = strlen(k), .value = k, .vlen = kind == MCPCORE__STATE_OP__KIND__PUT ? 11 : 0 };

	mc_state_batch_init(&b);
	if (mc_state_batch_add(seg, &b, &r) < 0)
		return -EINVAL;
	return mc_state_batch_send_via(seg, &b, via);
}

/*
 * n messages through `via` with `window` in flight; msg/s.  With lat,
 * the round trip of each (window 1 gives the unloaded latency).
 */
static double mc_pl_pump(struct mc_seg *seg, unsigned via, Mcpcore__StateOp__Kind kind,
    uint64_t n, unsigned window, uint64_t *lat, uint64_t *nlat, uint64_t *bad)
{
	static struct mc_proto_arena arena;     /* replies, decoded as the protocol worker does */
	uint64_t sent = 0, done = 0, t0 = mc_now_ns(), sent_at[MC_PL_WINDOW];

	while (done < n) {
		struct mc_msg m;
		unsigned got = 0;

		while (sent < n && sent - done < window) {
			if (mc_pl_send(seg, via, kind, sent) != 0)
				break;          /* a full ring: take replies first */
			if (lat != NULL)        /* the clock only where a latency is taken */
				sent_at[sent % MC_PL_WINDOW] = mc_now_ns();
			sent++;
		}
		/* every reply waiting, then the refill: the protocol worker's turn
		 * (mc_srv_frames takes up to a batch, then the requests go out) */
		while (got < MC_PL_WINDOW && mc_recv(seg, &m) == 0) {
			got++;
			if (m.frame->f_kind == MC_FK_STATE_REPLY) {
				Mcpcore__StateReply *rep = (Mcpcore__StateReply *)
				    mc_proto_unpack_in(&arena, m.frame);

				if (rep == NULL || rep->n_results != 1 ||
				    rep->results[0]->status != MCPCORE__STATE_RESULT__STATUS__OK)
					(*bad)++;
				if (lat != NULL && *nlat < MC_PL_LAT_N)
					lat[(*nlat)++] = mc_now_ns() - sent_at[done % MC_PL_WINDOW];
				done++;
				if (rep != NULL)
					mc_proto_free_in(&arena, &rep->base);
			}
			mc_frame_release(seg, &m);
		}
		if (got == 0)
			/* sleep on the doorbell, as the protocol worker does: on a
			 * shared core a spin (even one of sched_yields, 6% slower
			 * here) takes time the router and state worker need */
			mc_ring_wait(seg, 0, 1000000);
	}
	return (double)n * 1e9 / (double)(mc_now_ns() - t0);
}

int mc_bench_pipeline(const struct mc_bench_opts *o)
{
	struct mc_config cfg;
	struct mc_seg seg;
	uint64_t n = o->quick ? 100000 : o->count, bad = 0, nlat = 0;
	double via[o->runs], direct[o->runs], ratio[o->runs];
	uint64_t *lat = calloc(MC_PL_LAT_N, sizeof(*lat));
	uint64_t p50, p99;
	pid_t state, router;
	int rc = 1;

	if (lat == NULL || mc_bench_segment(&seg, &cfg, "pipeline"))
		return 1;
	ck_pr_store_32(&seg.slots[MC_WORKER_PERSISTENCE].sl_state, MC_SLOT_STOPPED);
	for (uint32_t i = 0; i < MC_PL_KEYS; i++)
		snprintf(mc_pl_keys[i], sizeof(mc_pl_keys[i]), "key:%07u", i);
	state = mc_bench_fork(mc_pl_state, &seg);
	router = mc_bench_fork(mc_pl_router, &seg);
	if (mc_seg_claim_worker(&seg, MC_WORKER_PROTOCOL) != 0)
		goto out;
	mc_bench_pin(0);
	/* every key, through the router (the injector's writes must all go one way) */
	mc_pl_pump(&seg, MC_WORKER_ROUTER, MCPCORE__STATE_OP__KIND__PUT, MC_PL_KEYS, 64, NULL, NULL,
	    &bad);
	for (int r = 0; r < o->runs; r++) {
		/*
		 * Alternate which goes first, so drift favours neither.  Each run
		 * ends with every reply in, so the state worker still sees this
		 * sender's frames in the order they were sent, whichever way.
		 */
		if (r % 2 == 0) {
			via[r] = mc_pl_pump(&seg, MC_WORKER_ROUTER, MCPCORE__STATE_OP__KIND__GET, n,
			    MC_PL_WINDOW, NULL, NULL, &bad);
			direct[r] = mc_pl_pump(&seg, MC_WORKER_STATE, MCPCORE__STATE_OP__KIND__GET, n,
			    MC_PL_WINDOW, NULL, NULL, &bad);
		} else {
			direct[r] = mc_pl_pump(&seg, MC_WORKER_STATE, MCPCORE__STATE_OP__KIND__GET, n,
			    MC_PL_WINDOW, NULL, NULL, &bad);
			via[r] = mc_pl_pump(&seg, MC_WORKER_ROUTER, MCPCORE__STATE_OP__KIND__GET, n,
			    MC_PL_WINDOW, NULL, NULL, &bad);
		}
		ratio[r] = via[r] / direct[r];
	}
	mc_pl_pump(&seg, MC_WORKER_ROUTER, MCPCORE__STATE_OP__KIND__GET, o->quick ? 5000 : 50000, 1,
	    lat, &nlat, &bad);
	p50 = mc_bench_percentile(lat, nlat, 50);
	p99 = mc_bench_percentile(lat, nlat, 99);
	{
		double mv = mc_bench_median(via, o->runs), md = mc_bench_median(direct, o->runs);
		double mr = mc_bench_median(ratio, o->runs);

		if (o->json) {
			printf("{\"bench\":\"pipeline\",\"runs\":%d,\"messages\":%" PRIu64 ","
			    "\"via_router\":%.0f,\"direct\":%.0f,\"ratio\":%.3f,\"rtt_p50_ns\":%" PRIu64
			    ",\"rtt_p99_ns\":%" PRIu64 ",\"failed\":%" PRIu64 "}\n", o->runs, n, mv, md,
			    mr, p50, p99, bad);
		} else {
			printf("mcpcore-bench pipeline: median of %d runs, %" PRIu64 " messages each "
			    "(state_get as a StateRequest frame, %d in flight)\n", o->runs, n, MC_PL_WINDOW);
			printf("%-44s %14s\n", "", "msg/s");
			printf("%-44s %14.0f\n", "injector -> router -> state -> injector", mv);
			printf("%-44s %14.0f\n", "injector -> state -> injector (no router)", md);
			printf("%-44s %13.2fx\n", "with the router / without", mr);
			printf("round trip through the router, one in flight: p50 %" PRIu64 " ns, p99 %"
			    PRIu64 " ns\n", p50, p99);
			if (bad)
				printf("FAILED replies: %" PRIu64 "\n", bad);
		}
	}
	rc = bad ? 1 : 0;
out:
	kill(router, SIGTERM);
	kill(state, SIGTERM);
	mc_bench_join(router);
	mc_bench_join(state);
	mc_seg_destroy(&seg);
	free(lat);
	return rc;
}
