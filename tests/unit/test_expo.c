/*
 * test_expo.c - unit tests for the monitor's Prometheus exposition
 * (workers/monitor/expo.c) and its text buffer (buf.c), contract in
 * workers/monitor/mc_monitor.h: families grouped once across processes,
 * no duplicate series, values from the blocks and the ring and pool
 * cursors, histograms with cumulative
 * buckets, conflicts and reserved names left out, and `promtool check
 * metrics` (Debian's prometheus package) finding nothing to say.
 */
#define _GNU_SOURCE

#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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
static struct mc_seg sup, st, rt, cl;
static struct mc_buf out;

static void up(void)
{
	ut_seg_create(&sup, &cfg, &lay);
	ck_pr_store_32(&sup.hdr->sh_state, MC_SEG_READY);
	cr_assert_eq(mc_metrics_open(&sup, MC_SLOT_SUPERVISOR, MC_METRICS_RESET), 0);
	cr_assert_eq(mc_seg_attach(&st, cfg.instance, false, err, sizeof(err)), 0);
	cr_assert_eq(mc_seg_claim_worker(&st, MC_WORKER_STATE), 0);
	cr_assert_eq(mc_metrics_open(&st, MC_WORKER_STATE, MC_METRICS_CARRY), 0);
	cr_assert_eq(mc_seg_attach(&rt, cfg.instance, false, err, sizeof(err)), 0);
	cr_assert_eq(mc_seg_claim_worker(&rt, MC_WORKER_ROUTER), 0);
	cr_assert_eq(mc_metrics_open(&rt, MC_WORKER_ROUTER, MC_METRICS_CARRY), 0);
	cr_assert_eq(mc_seg_attach(&cl, cfg.instance, false, err, sizeof(err)), 0);
	cr_assert_eq(mc_seg_claim_client(&cl, "pytest", err, sizeof(err)), 0, "%s", err);
	mc_buf_init(&out);
}

static void down(void)
{
	mc_buf_free(&out);
	mc_seg_release_client(&cl);
	mc_seg_detach(&cl);
	mc_seg_detach(&rt);
	mc_seg_detach(&st);
	mc_seg_destroy(&sup);
}

TestSuite(expo, .init = up, .fini = down);

/* The value of the series `series` ("name{labels}"), or -1 when absent. */
static double value_of(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (strncmp(l, series, n) == 0 && l[n] == ' ')
			return strtod(l + n + 1, NULL);
	return -1;
}

/*
 * Structure checks: one HELP and one TYPE per family, before its samples;
 * the samples of a family contiguous; no series twice.
 */
static void check_structure(const char *text)
{
	char **families = calloc(4096, sizeof(char *)), **series = calloc(65536, sizeof(char *));
	size_t nf = 0, ns = 0;
	char current[128] = "";
	char *copy = strdup(text), *save = NULL;

	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[128];

		if (strncmp(line, "# HELP ", 7) == 0) {
			sscanf(line + 7, "%127s", name);
			for (size_t i = 0; i < nf; i++)
				cr_assert_str_neq(families[i], name, "family %s appears twice", name);
			families[nf++] = strdup(name);
			snprintf(current, sizeof(current), "%s", name);
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			sscanf(line + 7, "%127s", name);
			cr_assert_str_eq(name, current, "TYPE without its HELP just before");
			continue;
		}
		cr_assert_neq(line[0], '#', "unexpected comment: %s", line);
		/* a sample belongs to the current family (histograms: _bucket/_sum/_count) */
		cr_assert(strncmp(line, current, strlen(current)) == 0,
		    "sample outside its family %s: %s", current, line);
		{
			char *sp = strrchr(line, ' ');

			cr_assert_not_null(sp);
			*sp = '\0';
			for (size_t i = 0; i < ns; i++)
				cr_assert_str_neq(series[i], line, "series twice: %s", line);
			series[ns++] = strdup(line);
		}
	}
	for (size_t i = 0; i < nf; i++)
		free(families[i]);
	for (size_t i = 0; i < ns; i++)
		free(series[i]);
	free(families);
	free(series);
	free(copy);
}

static void promtool_check(const char *text)
{
	FILE *p;
	int st2;

	if (system("command -v promtool >/dev/null 2>&1") != 0)
		cr_skip_test("promtool not installed (Debian package prometheus)");
	p = popen("promtool check metrics > /tmp/utexpo-promtool.$$ 2>&1; rc=$?; "
	    "cat /tmp/utexpo-promtool.$$ >&2; rm -f /tmp/utexpo-promtool.$$; exit $rc", "w");
	cr_assert_not_null(p);
	fputs(text, p);
	st2 = pclose(p);
	cr_assert(WIFEXITED(st2) && WEXITSTATUS(st2) == 0,
	    "promtool check metrics exit %d on:\n%s", WEXITSTATUS(st2), text);
}

Test(expo, runtime_and_registered_families)
{
	struct mc_counter c;
	struct mc_gauge g;
	struct mc_histogram h, h2;
	struct mc_msg m;
	int e;

	for (int i = 0; i < 7; i++) {
		struct mc_frame *f = mc_frame_alloc(&st, 50, MC_FK_CONTROL, &e);

		cr_assert_not_null(f);
		cr_assert_eq(mc_frame_send(&st, f, 1ULL << MC_WORKER_ROUTER), 0);
	}
	for (int i = 0; i < 7; i++) {
		cr_assert_eq(mc_recv(&rt, &m), 0);
		mc_frame_release(&rt, &m);
	}
	mc_metrics_histogram(&st, "frame_handling_seconds", "Handling", NULL, &h);
	mc_metrics_histogram(&rt, "frame_handling_seconds", "Handling", NULL, &h2);
	mc_histogram_observe(h, 1500);          /* 1.5 us */
	mc_histogram_observe(h, 3000000);       /* 3 ms */
	mc_histogram_observe(h2, 100);
	mc_metrics_counter(&rt, "route_errors_total", "Routing errors",
	    (const char *const[]){ "code", "-32601", NULL }, &c);
	mc_counter_add(c, 4);
	mc_metrics_gauge(&cl, "learning_model_accuracy", "Accuracy \\ of the \"model\"",
	    (const char *const[]){ "model", "a\"b", NULL }, &g);
	mc_gauge_set(g, 0.25);
	mc_metrics_histogram(&cl, "batch_rows", "Rows per batch", NULL, &h);
	mc_histogram_observe(h, 1000);

	cr_assert_eq(mc_expo_render(&sup, &out), 0);
	check_structure(out.p);
	/* frames and bytes from the cursors: 7 frames of 32 + 50 bytes, 128 each */
	cr_assert_eq(value_of(out.p, "mcpcore_frames_sent_total{worker=\"state\"}"), 7);
	cr_assert_eq(value_of(out.p, "mcpcore_frames_received_total{worker=\"router\"}"), 7);
	cr_assert_eq(value_of(out.p, "mcpcore_frames_received_total{worker=\"state\"}"), 0);
	cr_assert_eq(value_of(out.p, "mcpcore_ring_frames_total{src=\"state\",dst=\"router\"}"), 7);
	cr_assert_eq(value_of(out.p, "mcpcore_ring_frames_total{src=\"router\",dst=\"state\"}"), 0);
	cr_assert_eq(value_of(out.p, "mcpcore_pool_bytes_written_total{worker=\"state\"}"), 7 * 128);
	cr_assert_eq(value_of(out.p, "mcpcore_pool_bytes_written_total{worker=\"router\"}"), 0);
	cr_assert_eq(value_of(out.p, "mcpcore_frames_sent_total{worker=\"client0\"}"), 0,
	    "an attached client is shown");
	cr_assert_eq(value_of(out.p, "mcpcore_frames_sent_total{worker=\"client1\"}"), -1,
	    "a free client slot that never sent is not");
	cr_assert_eq(value_of(out.p, "mcpcore_frames_sent_total{worker=\"supervisor\"}"), -1,
	    "the supervisor has no rings");
	cr_assert_null(strstr(out.p, "frame_sent_bytes_total"), "retired family");
	cr_assert_eq(value_of(out.p, "mcpcore_clients_attached"), 1);
	cr_assert_eq(value_of(out.p, "mcpcore_worker_up{worker=\"state\"}"), 0, "not RUNNING here");
	cr_assert_eq(value_of(out.p, "mcpcore_route_errors_total{worker=\"router\",code=\"-32601\"}"), 4);
	cr_assert_eq(value_of(out.p,
	    "mcpcore_learning_model_accuracy{worker=\"client0\",model=\"a\\\"b\"}"), 0.25);
	cr_assert_not_null(strstr(out.p, "# HELP mcpcore_learning_model_accuracy Accuracy \\\\ of the \"model\"\n"));
	/* histograms: cumulative, +Inf = count, sum in seconds */
	cr_assert_eq(value_of(out.p,
	    "mcpcore_frame_handling_seconds_bucket{worker=\"state\",le=\"1.024e-06\"}"), 0);
	cr_assert_eq(value_of(out.p,
	    "mcpcore_frame_handling_seconds_bucket{worker=\"state\",le=\"2.048e-06\"}"), 1);
	cr_assert_eq(value_of(out.p,
	    "mcpcore_frame_handling_seconds_bucket{worker=\"state\",le=\"0.004194304\"}"), 2);
	cr_assert_eq(value_of(out.p, "mcpcore_frame_handling_seconds_bucket{worker=\"state\",le=\"+Inf\"}"), 2);
	cr_assert_eq(value_of(out.p, "mcpcore_frame_handling_seconds_count{worker=\"state\"}"), 2);
	cr_assert_float_eq(value_of(out.p, "mcpcore_frame_handling_seconds_sum{worker=\"state\"}"),
	    0.0030015, 1e-12);
	cr_assert_eq(value_of(out.p, "mcpcore_frame_handling_seconds_count{worker=\"router\"}"), 1);
	cr_assert_eq(value_of(out.p, "mcpcore_batch_rows_bucket{worker=\"client0\",le=\"1024\"}"), 1,
	    "unitless histograms: integer powers of two");
	cr_assert_eq(value_of(out.p, "mcpcore_batch_rows_sum{worker=\"client0\"}"), 1000);
	promtool_check(out.p);
}

Test(expo, conflicts_and_reserved_names_are_left_out)
{
	struct mc_histogram h;
	struct mc_gauge g;

	mc_metrics_histogram(&st, "work_seconds", "Work", NULL, &h);
	mc_histogram_observe(h, 10);
	mc_metrics_gauge(&rt, "work_seconds", "Work, as a gauge by mistake", NULL, &g);
	mc_gauge_set(g, 1);
	mc_metrics_gauge(&rt, "ring_depth", "Collides with a runtime family", NULL, &g);
	mc_gauge_set(g, 12345);
	{
		struct mc_counter c;

		mc_metrics_counter(&rt, "ring_frames_total", "Collides too", NULL, &c);
		mc_counter_add(c, 54321);
		mc_metrics_counter(&rt, "frame_sent_bytes_total", "A retired name", NULL, &c);
		mc_counter_add(c, 54322);
	}
	cr_assert_eq(mc_expo_render(&sup, &out), 0);
	check_structure(out.p);
	cr_assert_eq(value_of(out.p, "mcpcore_work_seconds_count{worker=\"state\"}"), 1);
	cr_assert_eq(value_of(out.p, "mcpcore_work_seconds{worker=\"router\"}"), -1);
	cr_assert_null(strstr(out.p, "12345"));
	cr_assert_null(strstr(out.p, "54321"));
	cr_assert_null(strstr(out.p, "54322"), "retired runtime names stay reserved");
	promtool_check(out.p);
}

Test(expo, retired_blocks_disappear)
{
	struct mc_gauge g;

	mc_metrics_gauge(&cl, "client_only", "Client gauge", NULL, &g);
	mc_gauge_set(g, 3);
	cr_assert_eq(mc_expo_render(&sup, &out), 0);
	cr_assert_eq(value_of(out.p, "mcpcore_client_only{worker=\"client0\"}"), 3);
	mc_metrics_retire(&cl, (unsigned)cl.slot);
	cr_assert_eq(mc_expo_render(&sup, &out), 0);
	cr_assert_eq(value_of(out.p, "mcpcore_client_only{worker=\"client0\"}"), -1);
	cr_assert_null(strstr(out.p, "# HELP mcpcore_client_only "), "no family without samples");
	check_structure(out.p);
}

Test(expo, buffer_grows_and_formats)
{
	struct mc_buf b;
	char big[10000];

	mc_buf_init(&b);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	mc_buf_printf(&b, "%s|%d", big, 42);
	cr_assert_eq(b.len, sizeof(big) - 1 + 3);
	cr_assert_str_eq(b.p + sizeof(big) - 1, "|42");
	mc_buf_puts(&b, "!");
	mc_buf_put(&b, "ab", 1);
	cr_assert_str_eq(b.p + b.len - 2, "!a");
	cr_assert(!b.failed);
	mc_buf_clear(&b);
	cr_assert_eq(b.len, 0);
	mc_buf_free(&b);
	cr_assert_null(b.p);
}
