/*
 * test_snapshot.c - unit tests for the monitor's MetricsSnapshot frame
 * (workers/monitor/snapshot.c, contract in workers/monitor/mc_monitor.h):
 * what a snapshot carries (frame figures from the ring and pool cursors,
 * per-kind figures from the handled counters), decoded as the persistence
 * worker receives it,
 * and that a full ring or an absent persistence worker makes the send fail
 * at once (-EAGAIN / -EPIPE) instead of waiting.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mc_config.h"
#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_metrics.h"
#include "mc_monitor.h"
#include "mc_proto.h"
#include "mc_seg.h"
#include "ut.h"

#ifndef MC_SOURCE_DIR
#error "MC_SOURCE_DIR must be defined to the repository root"
#endif

static char err[512];
static struct mc_config cfg;
static struct mc_layout lay;
static struct mc_seg sup, mon, per, st;

static void up(void)
{
	ut_seg_create(&sup, &cfg, &lay);
	ck_pr_store_32(&sup.hdr->sh_state, MC_SEG_READY);
	cr_assert_eq(mc_seg_attach(&mon, cfg.instance, false, err, sizeof(err)), 0);
	cr_assert_eq(mc_seg_claim_worker(&mon, MC_WORKER_MONITOR), 0);
	cr_assert_eq(mc_metrics_open(&mon, MC_WORKER_MONITOR, MC_METRICS_CARRY), 0);
	cr_assert_eq(mc_seg_attach(&per, cfg.instance, false, err, sizeof(err)), 0);
	cr_assert_eq(mc_seg_claim_worker(&per, MC_WORKER_PERSISTENCE), 0);
	cr_assert_eq(mc_seg_attach(&st, cfg.instance, false, err, sizeof(err)), 0);
	cr_assert_eq(mc_seg_claim_worker(&st, MC_WORKER_STATE), 0);
	cr_assert_eq(mc_metrics_open(&st, MC_WORKER_STATE, MC_METRICS_CARRY), 0);
}

static void down(void)
{
	mc_seg_detach(&st);
	mc_seg_detach(&per);
	mc_seg_detach(&mon);
	mc_seg_destroy(&sup);
}

TestSuite(snapshot, .init = up, .fini = down);

static const Mcpcore__ProcessMetrics *process(const Mcpcore__MetricsSnapshot *s, const char *name)
{
	for (size_t i = 0; i < s->n_processes; i++)
		if (strcmp(s->processes[i]->name, name) == 0)
			return s->processes[i];
	return NULL;
}

Test(snapshot, carries_every_block)
{
	struct mc_histogram h;
	struct mc_counter c;
	struct mc_gauge g;
	struct mc_msg m;
	Mcpcore__MetricsSnapshot *snap;
	const Mcpcore__ProcessMetrics *p;
	double in[MC_MAX_SLOTS] = { 0 }, out[MC_MAX_SLOTS] = { 0 };
	int e;

	mc_metrics_histogram(&st, "state_access_seconds", "Access", NULL, &h);
	for (int i = 1; i <= 100; i++)
		mc_histogram_observe(h, (uint64_t)i * 1000000);     /* 1..100 ms */
	mc_metrics_counter(&st, "state_writes_total", "Writes",
	    (const char *const[]){ "op", "put", NULL }, &c);
	mc_counter_add(c, 9);
	mc_metrics_gauge(&st, "state_live_keys", "Keys", NULL, &g);
	mc_gauge_set(g, 17);
	/* what the worker loop counts per handled message */
	mc_metrics_counter(&st, MC_METRIC_HANDLED, "Handled",
	    (const char *const[]){ "kind", "Control", NULL }, &c);
	mc_counter_add(c, 4);
	mc_metrics_counter(&st, MC_METRIC_HANDLED, "Handled",
	    (const char *const[]){ "kind", "other", NULL }, &c);
	mc_counter_add(c, 1);
	for (int i = 0; i < 3; i++) {
		struct mc_frame *f = mc_frame_alloc(&st, 10, MC_FK_CONTROL, &e);

		cr_assert_eq(mc_frame_send(&st, f, 1ULL << MC_WORKER_ROUTER), 0);
	}
	in[MC_WORKER_STATE] = 4;
	out[MC_WORKER_STATE] = 2.5;
	mc_metrics_publish_rates(&mon, in, out, sup.hdr->sh_nslots);

	cr_assert_eq(mc_snapshot_send(&mon, 7, 2, 10), 0);
	cr_assert_eq(mc_recv(&per, &m), 0);
	cr_assert_eq(m.frame->f_kind, MC_FK_METRICS_SNAPSHOT);
	cr_assert_eq(m.src, MC_WORKER_MONITOR);
	snap = (Mcpcore__MetricsSnapshot *)mc_proto_unpack(m.frame);
	cr_assert_not_null(snap);
	cr_assert_eq(snap->seq, 7);
	cr_assert_eq(snap->skipped, 2);
	cr_assert_eq(snap->interval_seconds, 10);
	cr_assert_str_eq(snap->instance, cfg.instance);
	cr_assert_gt(snap->time_unix_ns, 1600000000ULL * 1000000000ULL);
	cr_assert_not_null(process(snap, "monitor"));
	cr_assert_null(process(snap, "router"), "no block, no entry");
	p = process(snap, "state");
	cr_assert_not_null(p);
	cr_assert_eq(p->slot, MC_WORKER_STATE);
	cr_assert_eq(p->pid, getpid());
	cr_assert_eq(p->frames_sent, 3, "from the ring cursors");
	cr_assert_eq(p->frames_received, 0);
	cr_assert_eq(p->pool_bytes_written, 3 * 64, "three 64-byte blocks (32 + 10, aligned)");
	cr_assert_float_eq(p->received_per_second, 4, 1e-12);
	cr_assert_float_eq(p->sent_per_second, 2.5, 1e-12);
	cr_assert_eq(p->n_kinds, 2, "the handled counters, by kind");
	cr_assert_str_eq(p->kinds[0]->name, "Control");
	cr_assert_eq(p->kinds[0]->kind, MC_FK_CONTROL);
	cr_assert_eq(p->kinds[0]->handled, 4);
	cr_assert_str_eq(p->kinds[1]->name, "other");
	cr_assert_eq(p->kinds[1]->kind, MC_METRICS_OTHER);
	cr_assert_eq(p->kinds[1]->handled, 1);
	cr_assert_eq(p->n_samples, 5);
	for (size_t i = 0; i < p->n_samples; i++) {
		const Mcpcore__MetricSample *s = p->samples[i];

		if (strcmp(s->name, "state_access_seconds") == 0) {
			cr_assert_eq(s->type, MCPCORE__METRIC_SAMPLE__TYPE__HISTOGRAM);
			cr_assert_eq(s->count, 100);
			cr_assert_float_eq(s->sum, 5.05, 1e-9);
			cr_assert(s->p50 >= 0.050 * (1 - MC_HIST_REL_ERROR) &&
			    s->p50 <= 0.050 * (1 + MC_HIST_REL_ERROR), "p50 %g", s->p50);
			cr_assert(s->p99 >= 0.099 * (1 - MC_HIST_REL_ERROR) &&
			    s->p99 <= 0.099 * (1 + MC_HIST_REL_ERROR), "p99 %g", s->p99);
			cr_assert_float_eq(s->max, 0.1, 1e-12);
		} else if (strcmp(s->name, MC_METRIC_HANDLED) == 0) {
			cr_assert_eq(s->type, MCPCORE__METRIC_SAMPLE__TYPE__COUNTER);
		} else if (strcmp(s->name, "state_writes_total") == 0) {
			cr_assert_eq(s->type, MCPCORE__METRIC_SAMPLE__TYPE__COUNTER);
			cr_assert_str_eq(s->labels, "op=\"put\"");
			cr_assert_eq(s->value, 9);
		} else {
			cr_assert_str_eq(s->name, "state_live_keys");
			cr_assert_eq(s->value, 17);
		}
	}
	cr_assert_eq(snap->n_rings, 1, "state->router holds 3 frames");
	cr_assert_str_eq(snap->rings[0]->src, "state");
	cr_assert_str_eq(snap->rings[0]->dst, "router");
	cr_assert_eq(snap->rings[0]->depth, 3);
	cr_assert_eq(snap->rings[0]->frames_put, 3);
	cr_assert_eq(snap->rings[0]->frames_taken, 0);
	protobuf_c_message_free_unpacked(&snap->base, NULL);
	mc_frame_release(&per, &m);
}

Test(snapshot, never_waits_for_persistence)
{
	int e, n = 0;

	/* ring full: fill monitor->persistence with frames nobody takes */
	for (;;) {
		struct mc_frame *f = mc_frame_alloc(&mon, 1, MC_FK_RAW, &e);

		cr_assert_not_null(f);
		if (mc_frame_send(&mon, f, 1ULL << MC_WORKER_PERSISTENCE) == -EAGAIN) {
			mc_frame_abort(&mon, f);
			break;
		}
		n++;
	}
	cr_assert_gt(n, 100);
	cr_assert_eq(mc_snapshot_send(&mon, 1, 0, 10), -EAGAIN);
	/* persistence failed: the peer is gone */
	ck_pr_store_32(&sup.slots[MC_WORKER_PERSISTENCE].sl_state, MC_SLOT_FAILED);
	cr_assert_eq(mc_snapshot_send(&mon, 1, 0, 10), -EPIPE);
}
