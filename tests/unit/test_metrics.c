/*
 * test_metrics.c - unit tests for the per-process metrics blocks
 * (shm/metrics.c, contract in shm/mc_metrics.h): registration rules,
 * values, the channel figures derived from ring and pool cursors (exact
 * across a 32-bit cursor wrap), carry-over and reset,
 * retirement of client blocks (release and reap), single-writer reads
 * racing a writer in another process, memory gauges, published rates and
 * the status summary.
 *
 * The test process creates a segment (it is the supervisor); worker slots
 * are taken by extra handles in this process or by forked children.
 * Instances come from ut_seg_create (ut.h), unlinked by the fixture.
 */
#define _GNU_SOURCE

#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mc_config.h"
#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_metrics.h"
#include "mc_proto.h"
#include "mc_ring.h"
#include "mc_seg.h"
#include "ut.h"
#include "mc_util.h"

#ifndef MC_SOURCE_DIR
#error "MC_SOURCE_DIR must be defined to the repository root"
#endif

static char err[512];
static struct mc_config cfg;
static struct mc_layout lay;
static struct mc_seg sup;

static void up(void)
{
	ut_seg_create(&sup, &cfg, &lay);
}

static void down(void)
{
	mc_metrics_set_memory_source(NULL);
	mc_seg_destroy(&sup);
}

/* Another handle on the segment, in the given worker slot. */
static void worker(struct mc_seg *w, unsigned slot)
{
	ut_worker(w, cfg.instance, slot);
}

TestSuite(metrics, .init = up, .fini = down);

Test(metrics, register_update_read)
{
	struct mc_seg w;
	struct mc_counter c, c2;
	struct mc_gauge g;
	struct mc_histogram h;
	struct mc_metrics_view v;
	struct mc_metric_info m;
	struct mc_hist copy;
	int i;

	worker(&w, MC_WORKER_STATE);
	cr_assert_null(w.metrics);
	cr_assert_eq(mc_metrics_counter(&w, "ops_total", "Ops", NULL, &c), -ENODEV);
	cr_assert_null(c.c);
	mc_counter_add(c, 1);                   /* a NULL handle is a no-op */
	cr_assert_eq(mc_metrics_open(&w, MC_WORKER_STATE, MC_METRICS_RESET), 0);
	cr_assert_eq(w.metrics, mc_metrics_block(&w, MC_WORKER_STATE));
	cr_assert_eq(mc_metrics_counter(&w, "ops_total", "Ops by type",
	    (const char *const[]){ "type", "tools/call", "code", "-32602", NULL }, &c), 0);
	/* same identity, labels in another order: the same value */
	cr_assert_eq(mc_metrics_counter(&w, "ops_total", "other help",
	    (const char *const[]){ "code", "-32602", "type", "tools/call", NULL }, &c2), 0);
	cr_assert_eq(c.c, c2.c);
	cr_assert_eq(mc_metrics_gauge(&w, "queue_depth", "Depth", NULL, &g), 0);
	cr_assert_eq(mc_metrics_histogram(&w, "state_access_seconds", "Access", NULL, &h), 0);
	mc_counter_add(c, 41);
	mc_counter_add(c2, 1);
	mc_gauge_set(g, 2.5);
	mc_gauge_add(g, -1);
	for (int k = 1; k <= 100; k++)
		mc_histogram_observe(h, (uint64_t)k * 1000);

	/* a reader in the supervisor's handle sees it all */
	cr_assert_eq(mc_metrics_view(&sup, MC_WORKER_STATE, &v), 0);
	cr_assert_eq(v.count, 3);
	cr_assert_eq(v.pid, getpid());
	i = mc_metrics_find(&v, "ops_total", "code=\"-32602\",type=\"tools/call\"");
	cr_assert_geq(i, 0);
	cr_assert_eq(mc_metrics_info(&v, (uint32_t)i, &m), 0);
	cr_assert_str_eq(m.help, "Ops by type");
	cr_assert_eq(m.type, MC_METRIC_COUNTER);
	cr_assert_eq(m.unit, MC_UNIT_NONE);
	cr_assert_eq(mc_metrics_read_counter(&m), 42);
	i = mc_metrics_find(&v, "queue_depth", "");
	cr_assert_eq(mc_metrics_info(&v, (uint32_t)i, &m), 0);
	cr_assert_float_eq(mc_metrics_read_gauge(&m), 1.5, 1e-12);
	i = mc_metrics_find(&v, "state_access_seconds", "");
	cr_assert_eq(mc_metrics_info(&v, (uint32_t)i, &m), 0);
	cr_assert_eq(m.unit, MC_UNIT_SECONDS, "a *_seconds name is a time");
	cr_assert_eq(mc_metrics_read_hist(&m, &copy), 100);
	cr_assert_eq(copy.h_sum, 5050 * 1000);
	cr_assert(mc_metrics_view_ok(&v));
	cr_assert_eq(mc_metrics_find(&v, "nope", ""), -ENOENT);
	mc_seg_detach(&w);
	cr_assert_null(w.metrics);
}

Test(metrics, names_labels_and_help_are_checked)
{
	struct mc_seg w;
	void *v;
	const char *why = NULL;
	static const struct {
		enum mc_metric_type type;
		const char *name;
	} bad[] = {
		{ MC_METRIC_COUNTER, "ops" },               /* counter without _total */
		{ MC_METRIC_COUNTER, "_total" },
		{ MC_METRIC_GAUGE, "ops_total" },           /* only counters end in _total */
		{ MC_METRIC_HISTOGRAM, "lat_total" },
		{ MC_METRIC_GAUGE, "Depth" },               /* snake_case */
		{ MC_METRIC_GAUGE, "depth-now" },
		{ MC_METRIC_GAUGE, "9lives" },
		{ MC_METRIC_GAUGE, "" },
		{ MC_METRIC_GAUGE, "mcpcore_depth" },       /* the exposition adds the prefix */
		{ MC_METRIC_GAUGE, "__depth" },
		{ MC_METRIC_GAUGE, "lat_bucket" },          /* reserved suffixes */
		{ MC_METRIC_GAUGE, "lat_count" },
		{ MC_METRIC_HISTOGRAM, "lat_sum" },
		{ MC_METRIC_GAUGE, "a_name_that_is_far_too_long_for_the_registry_of_a_metrics_block_x" },
	};

	worker(&w, MC_WORKER_ROUTER);
	cr_assert_eq(mc_metrics_open(&w, MC_WORKER_ROUTER, MC_METRICS_RESET), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		cr_assert_eq(mc_metrics_register(&w, bad[i].type, bad[i].name, "help", NULL, &v, &why),
		    -EINVAL, "%s accepted", bad[i].name);
		cr_assert_not_null(why);
		cr_assert_null(v);
	}
	cr_assert_eq(mc_metrics_register(&w, 7, "x", "help", NULL, &v, NULL), -EINVAL);
	/* labels */
	cr_assert_eq(mc_metrics_register(&w, MC_METRIC_GAUGE, "g", "h",
	    (const char *const[]){ "worker", "x", NULL }, &v, &why), -EINVAL);
	cr_assert_eq(mc_metrics_register(&w, MC_METRIC_GAUGE, "g", "h",
	    (const char *const[]){ "le", "1", NULL }, &v, &why), -EINVAL);
	cr_assert_eq(mc_metrics_register(&w, MC_METRIC_GAUGE, "g", "h",
	    (const char *const[]){ "a", "1", "a", "2", NULL }, &v, &why), -EINVAL);
	cr_assert_eq(mc_metrics_register(&w, MC_METRIC_GAUGE, "g", "h",
	    (const char *const[]){ "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", NULL }, &v,
	    &why), -EINVAL);
	cr_assert_eq(mc_metrics_register(&w, MC_METRIC_GAUGE, "g", "h",
	    (const char *const[]){ "1a", "1", NULL }, &v, &why), -EINVAL);
	cr_assert_eq(mc_metrics_register(&w, MC_METRIC_GAUGE, "g", "h",
	    (const char *const[]){ "a", "bad\nvalue", NULL }, &v, &why), -EINVAL);
	cr_assert_eq(mc_metrics_register(&w, MC_METRIC_GAUGE, "g", "h",
	    (const char *const[]){ "a", "\xff\xfe", NULL }, &v, &why), -EINVAL, "not UTF-8");
	/* help */
	cr_assert_eq(mc_metrics_register(&w, MC_METRIC_GAUGE, "g", "", NULL, &v, &why), -EINVAL);
	cr_assert_eq(mc_metrics_register(&w, MC_METRIC_GAUGE, "g", NULL, NULL, &v, &why), -EINVAL);
	cr_assert_eq(mc_metrics_register(&w, MC_METRIC_GAUGE, "g", "tab\there", NULL, &v, &why),
	    -EINVAL);
	/* escaping: quotes and backslashes are written out Prometheus-style */
	cr_assert_eq(mc_metrics_register(&w, MC_METRIC_GAUGE, "g", "h",
	    (const char *const[]){ "path", "a\"b\\c", "z", "\xc3\xa9t\xc3\xa9", NULL }, &v, &why), 0);
	{
		struct mc_metrics_view view;
		struct mc_metric_info m;

		cr_assert_eq(mc_metrics_view(&sup, MC_WORKER_ROUTER, &view), 0);
		cr_assert_eq(mc_metrics_info(&view, view.count - 1, &m), 0);
		cr_assert_str_eq(m.labels, "path=\"a\\\"b\\\\c\",z=\"\xc3\xa9t\xc3\xa9\"");
	}
	/* same name, another type */
	cr_assert_eq(mc_metrics_register(&w, MC_METRIC_HISTOGRAM, "g", "h", NULL, &v, &why), -EEXIST);
	mc_seg_detach(&w);
}

Test(metrics, registry_and_arena_fill_up_cleanly)
{
	struct mc_seg w;
	struct mc_histogram h;
	struct mc_counter c;
	char name[32];
	int n = 0, rc;

	worker(&w, MC_WORKER_PROTOCOL);
	cr_assert_eq(mc_metrics_open(&w, MC_WORKER_PROTOCOL, MC_METRICS_RESET), 0);
	do {
		snprintf(name, sizeof(name), "h%d_seconds", n);
		rc = mc_metrics_histogram(&w, name, "a histogram", NULL, &h);
		n += rc == 0;
	} while (rc == 0);
	cr_assert_eq(rc, -ENOSPC);
	cr_assert_null(h.h);
	cr_assert_geq(n, 8, "room for at least 8 histograms, got %d", n);
	/* counters still fit until the registry is full */
	for (;;) {
		snprintf(name, sizeof(name), "c%d_total", n);
		rc = mc_metrics_counter(&w, name, "a counter", NULL, &c);
		if (rc)
			break;
		n++;
	}
	cr_assert_eq(rc, -ENOSPC);
	cr_assert_eq(n, MC_METRICS_MAX);
	/* everything registered is still readable */
	{
		struct mc_metrics_view v;
		struct mc_metric_info m;

		cr_assert_eq(mc_metrics_view(&sup, MC_WORKER_PROTOCOL, &v), 0);
		cr_assert_eq(v.count, MC_METRICS_MAX);
		for (uint32_t i = 0; i < v.count; i++)
			cr_assert_eq(mc_metrics_info(&v, i, &m), 0, "descriptor %u", i);
	}
	mc_seg_detach(&w);
}

/* Bytes a frame of len payload bytes takes in its pool. */
static uint64_t block(uint32_t len)
{
	return mc_align_up(MC_FRAME_HDR_SIZE + (uint64_t)len, MC_FRAME_ALIGN);
}

static int ring(unsigned src, unsigned dst)
{
	int idx = mc_ring_index(&sup, src, dst);

	cr_assert_geq(idx, 0);
	return idx;
}

Test(metrics, channel_figures_follow_the_frames)
{
	struct mc_seg p, x;
	struct mc_metrics_frames fr;
	struct mc_metrics_view v;
	struct mc_msg m;
	uint32_t sr = (uint32_t)ring(MC_WORKER_STATE, MC_WORKER_ROUTER);
	uint32_t sm = (uint32_t)ring(MC_WORKER_STATE, MC_WORKER_MONITOR);
	uint32_t rp = (uint32_t)ring(MC_WORKER_ROUTER, MC_WORKER_PROTOCOL);
	int err2;

	worker(&p, MC_WORKER_STATE);
	worker(&x, MC_WORKER_ROUTER);
	/* no metrics block needed: the cursors count */
	{
		struct mc_frame *f = mc_frame_alloc(&p, 10, MC_FK_RAW, &err2);

		cr_assert_not_null(f);
		cr_assert_eq(mc_frame_send(&p, f, 1ULL << MC_WORKER_ROUTER), 0);
		cr_assert_eq(mc_recv(&x, &m), 0);
		mc_frame_release(&x, &m);
	}
	cr_assert_eq(mc_metrics_view(&sup, MC_WORKER_STATE, &v), -ENOENT);
	cr_assert_eq(mc_ring_frames_put(&sup, sr), 1);
	cr_assert_eq(mc_ring_frames_taken(&sup, sr), 1);
	cr_assert_eq(mc_metrics_open(&p, MC_WORKER_STATE, MC_METRICS_RESET), 0);
	cr_assert_eq(mc_metrics_open(&x, MC_WORKER_ROUTER, MC_METRICS_RESET), 0);
	for (int i = 0; i < 10; i++) {
		struct mc_frame *f = mc_frame_alloc(&p, 100, MC_FK_CONTROL, &err2);

		cr_assert_not_null(f);
		cr_assert_eq(mc_frame_send(&p, f, 1ULL << MC_WORKER_ROUTER), 0);
	}
	{       /* two destinations: one put into each ring */
		struct mc_frame *f = mc_frame_alloc(&p, 7, 200, &err2);

		cr_assert_eq(mc_frame_send(&p, f, (1ULL << MC_WORKER_ROUTER) |
		    (1ULL << MC_WORKER_MONITOR)), 0);
	}
	cr_assert_eq(mc_ring_frames_put(&sup, sr), 12);
	cr_assert_eq(mc_ring_frames_taken(&sup, sr), 1, "queued, not taken yet");
	for (int i = 0; i < 11; i++) {
		cr_assert_eq(mc_recv(&x, &m), 0);
		if (i == 0)
			cr_assert_eq(mc_frame_forward(&x, &m, 1ULL << MC_WORKER_PROTOCOL), 0);
		mc_frame_release(&x, &m);
	}
	cr_assert_eq(mc_ring_frames_put(&sup, sr), 12);
	cr_assert_eq(mc_ring_frames_taken(&sup, sr), 12);
	cr_assert_eq(mc_ring_frames_put(&sup, sm), 1);
	cr_assert_eq(mc_ring_frames_taken(&sup, sm), 0);
	cr_assert_eq(mc_ring_frames_put(&sup, rp), 1, "a forward is a put");

	mc_metrics_slot_frames(&sup, MC_WORKER_STATE, &fr);
	cr_assert_eq(fr.sent, 13);
	cr_assert_eq(fr.received, 0);
	cr_assert_eq(fr.pool_bytes, block(10) + 10 * block(100) + block(7),
	    "published blocks, headers included: %llu", (unsigned long long)fr.pool_bytes);
	mc_metrics_slot_frames(&sup, MC_WORKER_ROUTER, &fr);
	cr_assert_eq(fr.sent, 1);
	cr_assert_eq(fr.received, 12);
	cr_assert_eq(fr.pool_bytes, 0, "a forward writes nothing into our pool");
	mc_metrics_slot_frames(&sup, MC_WORKER_PROTOCOL, &fr);
	cr_assert_eq(fr.received, 0, "nobody took it yet");

	/* the frame layer registers and counts nothing in the blocks */
	cr_assert_eq(mc_metrics_view(&sup, MC_WORKER_ROUTER, &v), 0);
	cr_assert_eq(v.count, 0);

	/* the monitor's advance changes the words, not the totals */
	mc_ring_mon_advance(&sup, sr);
	cr_assert_eq(sup.rings[sr].r_mon_put, 12);
	cr_assert_eq(sup.rings[sr].r_mon_taken, 12);
	cr_assert_eq(mc_ring_frames_put(&sup, sr), 12);
	cr_assert_eq(mc_ring_frames_taken(&sup, sr), 12);
	mc_seg_detach(&p);
	mc_seg_detach(&x);
}

/*
 * Ring cursors are 32-bit: start a fresh ring just below 2^32, with the
 * monitor's words saying five wraps happened already, and check that the
 * totals stay exact through the wrap, with and without advances between.
 */
Test(metrics, ring_totals_are_exact_across_a_32_bit_wrap)
{
	const uint32_t start = UINT32_MAX - 20;
	const uint64_t before = (5ULL << 32) | start;
	uint32_t sr = (uint32_t)ring(MC_WORKER_STATE, MC_WORKER_ROUTER);
	struct mc_ring *r = &sup.rings[sr];
	struct mc_metrics_frames fr;
	struct mc_seg p, x;
	struct mc_msg m;
	int err2;

	/* before anyone claims the slots (the consumer starts at r_jpos) */
	r->r_ck.c_head = r->r_ck.p_tail = r->r_ck.p_head = start;
	r->r_jpos = start;
	r->r_mon_put = r->r_mon_taken = before;
	worker(&p, MC_WORKER_STATE);
	worker(&x, MC_WORKER_ROUTER);
	cr_assert_gt(mc_ring_capacity(&sup, sr), 32);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 30; i++) {
			struct mc_frame *f = mc_frame_alloc(&p, 8, MC_FK_RAW, &err2);

			cr_assert_not_null(f);
			cr_assert_eq(mc_frame_send(&p, f, 1ULL << MC_WORKER_ROUTER), 0);
		}
		cr_assert_eq(mc_ring_frames_put(&sup, sr), before + 30 * (round + 1));
		cr_assert_eq(mc_ring_frames_taken(&sup, sr), before + 30 * round);
		for (int i = 0; i < 30; i++) {
			cr_assert_eq(mc_recv(&x, &m), 0);
			mc_frame_release(&x, &m);
		}
		cr_assert_eq(mc_ring_frames_taken(&sup, sr), before + 30 * (round + 1));
		if (round == 1)
			mc_ring_mon_advance(&sup, sr);   /* rounds 0 and 2: no advance */
	}
	cr_assert_lt(r->r_ck.p_tail, 100, "the cursor wrapped");
	mc_metrics_slot_frames(&sup, MC_WORKER_STATE, &fr);
	cr_assert_eq(fr.sent, before + 90);
	mc_metrics_slot_frames(&sup, MC_WORKER_ROUTER, &fr);
	cr_assert_eq(fr.received, before + 90);
	mc_ring_mon_advance(&sup, sr);
	cr_assert_eq(r->r_mon_put, before + 90);
	cr_assert_eq((uint32_t)r->r_mon_put, r->r_ck.p_tail);
	cr_assert_eq(r->r_mon_taken, before + 90);
	mc_seg_detach(&p);
	mc_seg_detach(&x);
}

Test(metrics, carry_over_keeps_counters_and_zeroes_gauges)
{
	struct mc_seg w;
	struct mc_counter c, c2;
	struct mc_gauge g;
	struct mc_histogram h, h2;
	struct mc_metrics_view v;
	uint32_t gen;

	worker(&w, MC_WORKER_PERSISTENCE);
	cr_assert_eq(mc_metrics_open(&w, MC_WORKER_PERSISTENCE, MC_METRICS_CARRY), 0,
	    "CARRY on an empty block resets it");
	mc_metrics_counter(&w, "acks_total", "Acks", NULL, &c);
	mc_metrics_gauge(&w, "batch", "Batch", NULL, &g);
	mc_metrics_histogram(&w, "persist_ack_seconds", "Ack", NULL, &h);
	mc_counter_add(c, 5);
	mc_gauge_set(g, 9);
	mc_histogram_observe(h, 123);
	cr_assert_eq(mc_metrics_view(&sup, MC_WORKER_PERSISTENCE, &v), 0);
	gen = v.gen;
	mc_seg_detach(&w);              /* the worker "dies" */

	worker(&w, MC_WORKER_PERSISTENCE);     /* its restart */
	cr_assert_eq(mc_metrics_open(&w, MC_WORKER_PERSISTENCE, MC_METRICS_CARRY), 0);
	cr_assert_eq(mc_metrics_counter(&w, "acks_total", "Acks", NULL, &c2), 0);
	cr_assert_eq(*c2.c, 5, "counters carry over");
	cr_assert_eq(mc_metrics_gauge(&w, "batch", "Batch", NULL, &g), 0);
	cr_assert_eq(mc_gauge_value(g), 0, "gauges restart from zero");
	cr_assert_eq(mc_metrics_histogram(&w, "persist_ack_seconds", "Ack", NULL, &h2), 0);
	cr_assert_eq(mc_hist_count(h2.h), 1);
	cr_assert_eq(mc_metrics_view(&sup, MC_WORKER_PERSISTENCE, &v), 0);
	cr_assert_eq(v.gen, gen, "carry-over is not a reset");
	cr_assert_eq(v.owners, 2);

	/* RESET starts from nothing, under a new generation */
	cr_assert_eq(mc_metrics_open(&w, MC_WORKER_PERSISTENCE, MC_METRICS_RESET), 0);
	cr_assert_eq(mc_metrics_view(&sup, MC_WORKER_PERSISTENCE, &v), 0);
	cr_assert_neq(v.gen, gen);
	cr_assert_eq(v.count, 0);
	mc_seg_detach(&w);
}

Test(metrics, client_blocks_are_reset_at_claim_and_retired_at_release_and_reap)
{
	struct mc_seg c;
	struct mc_counter k;
	struct mc_metrics_view v, old;
	int slot, st;
	pid_t pid;

	cr_assert_eq(mc_seg_attach(&c, cfg.instance, false, err, sizeof(err)), 0);
	cr_assert_eq(mc_seg_claim_client(&c, "test", err, sizeof(err)), 0, "%s", err);
	slot = c.slot;
	cr_assert_not_null(c.metrics, "a claimed client counts its frames");
	cr_assert_eq(mc_metrics_counter(&c, "jobs_total", "Jobs", NULL, &k), 0);
	mc_counter_add(k, 3);
	cr_assert_eq(mc_metrics_view(&sup, (unsigned)slot, &old), 0);
	cr_assert_eq(old.count, 1);
	mc_seg_release_client(&c);
	cr_assert_null(c.metrics);
	cr_assert_eq(mc_metrics_view(&sup, (unsigned)slot, &v), -ENOENT, "retired on release");
	cr_assert(!mc_metrics_view_ok(&old), "a reader of the old block notices");
	/* the next claimer of the slot starts empty */
	cr_assert_eq(mc_seg_claim_client(&c, "test", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.slot, slot);
	cr_assert_eq(mc_metrics_view(&sup, (unsigned)slot, &v), 0);
	cr_assert_eq(v.count, 0);
	mc_seg_release_client(&c);
	mc_seg_detach(&c);

	/* a client that dies attached is reaped by the supervisor: block retired */
	fflush(NULL);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		struct mc_seg d;
		struct mc_counter dk;

		if (mc_seg_attach(&d, cfg.instance, false, err, sizeof(err)) != 0 ||
		    mc_seg_claim_client(&d, "doomed", err, sizeof(err)) != 0 ||
		    mc_metrics_counter(&d, "jobs_total", "Jobs", NULL, &dk) != 0)
			_exit(1);
		mc_counter_add(dk, 1);
		_exit(0);       /* dies holding the slot */
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_assert_eq(mc_metrics_view(&sup, (unsigned)slot, &v), 0, "the dead client's block");
	cr_assert_eq(v.pid, pid);
	cr_assert_eq(mc_seg_reap_clients(&sup), 1);
	cr_assert_eq(mc_metrics_view(&sup, (unsigned)slot, &v), -ENOENT, "retired by the reaper");
}

/* A writer in another process; the reader must never see values go back. */
Test(metrics, readers_race_a_writer_safely)
{
	struct mc_metrics_view v;
	struct mc_metric_info m;
	struct mc_hist *copy = malloc(sizeof(*copy));
	uint64_t last = 0, reads = 0, resets_seen = 0;
	int st, i = -1;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		struct mc_seg w;
		struct mc_counter c;
		struct mc_histogram h;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (mc_seg_attach(&w, cfg.instance, false, err, sizeof(err)) != 0 ||
		    mc_seg_claim_worker(&w, MC_WORKER_MONITOR) != 0 ||
		    mc_metrics_open(&w, MC_WORKER_MONITOR, MC_METRICS_RESET) != 0 ||
		    mc_metrics_counter(&w, "ticks_total", "Ticks", NULL, &c) != 0 ||
		    mc_metrics_histogram(&w, "tick_seconds", "Tick", NULL, &h) != 0)
			_exit(1);
		for (uint64_t n = 1; n <= 3000000; n++) {
			mc_counter_add(c, 1);
			mc_histogram_observe(h, n % 4096);
		}
		_exit(0);
	}
	while (waitpid(pid, &st, WNOHANG) == 0) {
		uint64_t now, n;

		if (mc_metrics_view(&sup, MC_WORKER_MONITOR, &v) != 0 || v.count < 2)
			continue;
		if (i < 0)
			i = mc_metrics_find(&v, "ticks_total", "");
		cr_assert_eq(mc_metrics_info(&v, (uint32_t)i, &m), 0);
		now = mc_metrics_read_counter(&m);
		cr_assert_geq(now, last, "counter went back: %llu < %llu", (unsigned long long)now,
		    (unsigned long long)last);
		last = now;
		cr_assert_eq(mc_metrics_info(&v, (uint32_t)mc_metrics_find(&v, "tick_seconds", ""),
		    &m), 0);
		n = mc_metrics_read_hist(&m, copy);
		/* the writer counts before it observes: a later counter read is ahead */
		cr_assert_eq(mc_metrics_info(&v, (uint32_t)i, &m), 0);
		cr_assert_leq(n, mc_metrics_read_counter(&m), "histogram ahead of the counter");
		resets_seen += !mc_metrics_view_ok(&v);
		reads++;
	}
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer failed");
	cr_assert_eq(mc_metrics_view(&sup, MC_WORKER_MONITOR, &v), 0);
	cr_assert_eq(mc_metrics_info(&v, (uint32_t)mc_metrics_find(&v, "ticks_total", ""), &m), 0);
	cr_assert_eq(mc_metrics_read_counter(&m), 3000000, "no increment lost");
	cr_assert_eq(mc_metrics_info(&v, (uint32_t)mc_metrics_find(&v, "tick_seconds", ""), &m), 0);
	cr_assert_eq(mc_metrics_read_hist(&m, copy), 3000000);
	cr_assert_eq(resets_seen, 0);
	cr_assert_gt(reads, 0);
	free(copy);
}

/* A reset under a reader is detected by the generation check. */
Test(metrics, a_reset_under_a_reader_is_detected)
{
	struct mc_seg w;
	struct mc_counter c;
	struct mc_metrics_view v;

	worker(&w, MC_WORKER_STATE);
	cr_assert_eq(mc_metrics_open(&w, MC_WORKER_STATE, MC_METRICS_RESET), 0);
	mc_metrics_counter(&w, "x_total", "X", NULL, &c);
	cr_assert_eq(mc_metrics_view(&sup, MC_WORKER_STATE, &v), 0);
	cr_assert(mc_metrics_view_ok(&v));
	cr_assert_eq(mc_metrics_open(&w, MC_WORKER_STATE, MC_METRICS_RESET), 0);
	cr_assert(!mc_metrics_view_ok(&v));
	mc_metrics_retire(&w, MC_WORKER_STATE);
	cr_assert_null(w.metrics);
	cr_assert_eq(mc_metrics_view(&sup, MC_WORKER_STATE, &v), -ENOENT);
	mc_seg_detach(&w);
}

static int fake_calls;

static int fake_memory(uint64_t *allocated, uint64_t *resident)
{
	fake_calls++;
	*allocated = 1000 * (uint64_t)fake_calls;
	*resident = 4096;
	return 0;
}

Test(metrics, memory_gauges_refresh_on_the_tick_at_most_once_a_second)
{
	struct mc_seg w;
	struct mc_metrics_summary s;

	worker(&w, MC_WORKER_ROUTER);
	cr_assert_eq(mc_metrics_open(&w, MC_WORKER_ROUTER, MC_METRICS_RESET), 0);
	mc_metrics_tick(&w);                    /* no source: nothing */
	cr_assert_eq(mc_metrics_summary(&sup, MC_WORKER_ROUTER, &s), 0);
	cr_assert(!s.has_memory);
	mc_metrics_set_memory_source(fake_memory);
	cr_assert_eq(mc_metrics_open(&w, MC_WORKER_ROUTER, MC_METRICS_RESET), 0);
	mc_metrics_tick(&w);
	mc_metrics_tick(&w);
	mc_metrics_tick(&w);
	cr_assert_eq(fake_calls, 1, "rate limited");
	cr_assert_eq(mc_metrics_summary(&sup, MC_WORKER_ROUTER, &s), 0);
	cr_assert(s.has_memory);
	cr_assert_float_eq(s.memory_allocated, 1000, 0.5);
	cr_assert_float_eq(s.memory_resident, 4096, 0.5);
	mc_seg_detach(&w);
}

Test(metrics, rates_and_summary)
{
	struct mc_seg mon, w;
	struct mc_histogram h;
	struct mc_counter e;
	struct mc_metrics_summary s;
	double in[MC_MAX_SLOTS] = { 0 }, out[MC_MAX_SLOTS] = { 0 }, ri, ro;
	uint64_t age;

	worker(&w, MC_WORKER_STATE);
	cr_assert_eq(mc_metrics_open(&w, MC_WORKER_STATE, MC_METRICS_RESET), 0);
	cr_assert_eq(mc_metrics_rates(&sup, MC_WORKER_STATE, &ri, &ro, &age), -ENOENT);
	mc_metrics_histogram(&w, MC_METRIC_FRAME_HANDLING, "Handling", NULL, &h);
	for (int i = 1; i <= 1000; i++)
		mc_histogram_observe(h, (uint64_t)i * 100);
	mc_metrics_counter(&w, MC_METRIC_HANDLER_ERRORS, "Errors",
	    (const char *const[]){ "code", "EBADMSG", NULL }, &e);
	mc_counter_add(e, 2);
	mc_metrics_counter(&w, MC_METRIC_HANDLER_ERRORS, "Errors",
	    (const char *const[]){ "code", "EINVAL", NULL }, &e);
	mc_counter_add(e, 3);

	worker(&mon, MC_WORKER_MONITOR);
	cr_assert_eq(mc_metrics_open(&mon, MC_WORKER_MONITOR, MC_METRICS_RESET), 0);
	in[MC_WORKER_STATE] = 12.5;
	out[MC_WORKER_STATE] = 7;
	mc_metrics_publish_rates(&mon, in, out, sup.hdr->sh_nslots);
	cr_assert_eq(mc_metrics_rates(&sup, MC_WORKER_STATE, &ri, &ro, &age), 0);
	cr_assert_float_eq(ri, 12.5, 1e-12);
	cr_assert_float_eq(ro, 7, 1e-12);
	cr_assert_lt(age, 1000000000ULL);

	cr_assert_eq(mc_metrics_summary(&sup, MC_WORKER_STATE, &s), 0);
	cr_assert(s.has_rates);
	cr_assert_eq(s.handled, 1000);
	cr_assert_eq(s.errors, 5);
	cr_assert(s.p50_ns >= 50000 * (1 - MC_HIST_REL_ERROR) && s.p50_ns <= 50000 * (1 + MC_HIST_REL_ERROR));
	cr_assert(s.p99_ns >= 99000 * (1 - MC_HIST_REL_ERROR) && s.p99_ns <= 99000 * (1 + MC_HIST_REL_ERROR));
	cr_assert_eq(mc_metrics_summary(&sup, MC_WORKER_PROTOCOL, &s), -ENOENT);
	mc_seg_detach(&mon);
	mc_seg_detach(&w);
}

Test(metrics, label_values_for_kinds_and_errors)
{
	char buf[24];

	cr_assert_str_eq(mc_metrics_kind_name(0, buf, sizeof(buf)), "raw");
	cr_assert_str_eq(mc_metrics_kind_name(MC_FK_CONTROL, buf, sizeof(buf)), "Control");
	cr_assert_str_eq(mc_metrics_kind_name(MC_FK_METRICS_SNAPSHOT, buf, sizeof(buf)),
	    "MetricsSnapshot");
	cr_assert_str_eq(mc_metrics_kind_name(63, buf, sizeof(buf)), "kind63");
	cr_assert_str_eq(mc_metrics_kind_name(MC_METRICS_OTHER, buf, sizeof(buf)), "other");
	cr_assert_str_eq(mc_metrics_errno_label(-EBADMSG, buf, sizeof(buf)), "EBADMSG");
	cr_assert_str_eq(mc_metrics_errno_label(-1001, buf, sizeof(buf)), "-1001");
}

Test(metrics, read_only_attach_cannot_open)
{
	struct mc_seg r;

	cr_assert_eq(mc_seg_attach(&r, cfg.instance, true, err, sizeof(err)), 0);
	cr_assert_eq(mc_metrics_open(&r, MC_WORKER_STATE, MC_METRICS_RESET), -EPERM);
	cr_assert_eq(mc_metrics_open(&sup, 999, MC_METRICS_RESET), -EINVAL);
	mc_seg_detach(&r);
}
