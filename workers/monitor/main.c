/*
 * workers/monitor/main.c - the monitor worker: aggregates every process's
 * metrics block, serves them to Prometheus, publishes rates for `mcpcore
 * status` and sends periodic snapshots to the persistence worker.
 *
 * Threads (see mc_monitor.h): this thread runs the common worker loop and,
 * on its tick, advances every ring's frame totals (the monitor is their
 * single writer: mc_ring.h, FRAME TOTALS), the once-a-second rate
 * computation and the snapshot every [monitor] snapshot_interval seconds;
 * the HTTP thread (httpd.c) answers scrapes at [monitor] listen.  Every
 * metric either thread writes is registered here, before the HTTP thread
 * starts.
 *
 * Snapshots never block the monitor: when the persistence worker's ring or
 * our frame pool is full (-EAGAIN), or persistence is failed/stopped
 * (-EPIPE), the snapshot is skipped and counted in
 * mcpcore_monitor_snapshots_total{result="skipped_full"|"skipped_absent"}.
 */
#include "mc_worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mc_log.h"
#include "mc_proto.h"
#include "mc_metrics.h"
#include "mc_monitor.h"
#include "mc_ring.h"
#include "mc_util.h"

#define MC_MON_RATE_NS 1000000000ULL
/*
 * Ring totals are advanced on the tick, at most this often.  Exactness
 * needs one advance per 2^32 frames of a ring (143 s at 30 M frames/s);
 * the tick runs at least every 100 ms, but also at every wake-up of an
 * idle monitor, and each advance reads every ring's cursor lines, which
 * the producers and consumers are writing: no point doing it more often.
 */
#define MC_MON_ADVANCE_NS 100000000ULL

struct mc_mon {
	struct mc_httpd *httpd;
	uint64_t rates_ns;              /* when rates were last computed */
	uint64_t advance_ns;            /* when ring totals were last advanced */
	uint64_t snapshot_ns;           /* when the last snapshot was due */
	uint64_t snapshot_every_ns;
	uint64_t seq, skipped;
	uint64_t prev_in[MC_MAX_SLOTS], prev_out[MC_MAX_SLOTS];
	bool     prev_ok;               /* prev_* hold a first reading */
	double   rate_in[MC_MAX_SLOTS], rate_out[MC_MAX_SLOTS];
	struct mc_counter snap_sent, snap_full, snap_absent, snap_failed;
	bool     snap_warned;
	struct mc_mon_mcp mcp;          /* the MCP records the router copies to us */
};

/*
 * Frames/s per slot since the previous call, published in our block.  The
 * figures are ring totals (mc_metrics_slot_frames): monotonic for the
 * instance's life, whoever holds the slot, so there is no baseline to
 * restart when a block is reset or a client slot changes hands.
 */
static void mc_mon_rates(struct mc_worker *w, struct mc_mon *mon, uint64_t now)
{
	double dt = (double)(now - mon->rates_ns) / 1e9;
	unsigned n = w->seg.hdr->sh_nslots;

	for (unsigned s = 0; s < n && s < MC_MAX_SLOTS; s++) {
		struct mc_metrics_frames fr;

		mc_metrics_slot_frames(&w->seg, s, &fr);
		mon->rate_in[s] = mon->rate_out[s] = 0;
		if (mon->prev_ok && dt > 0) {
			mon->rate_in[s] = (double)(fr.received - mon->prev_in[s]) / dt;
			mon->rate_out[s] = (double)(fr.sent - mon->prev_out[s]) / dt;
		}
		mon->prev_in[s] = fr.received;
		mon->prev_out[s] = fr.sent;
	}
	mon->prev_ok = true;
	mc_metrics_publish_rates(&w->seg, mon->rate_in, mon->rate_out, n);
	mon->rates_ns = now;
}

/* Keep every ring's 64-bit frame totals within 2^32 frames of its cursors. */
static void mc_mon_advance(struct mc_worker *w)
{
	for (uint32_t i = 0; i < w->seg.hdr->sh_nrings; i++)
		mc_ring_mon_advance(&w->seg, i);
}

static void mc_mon_snapshot(struct mc_worker *w, struct mc_mon *mon)
{
	int rc = mc_snapshot_send(&w->seg, mon->seq + 1, mon->skipped,
	    w->cfg->monitor_snapshot_interval);

	switch (rc) {
	case 0:
		mon->seq++;
		mc_counter_add(mon->snap_sent, 1);
		return;
	case -EAGAIN:
		mc_counter_add(mon->snap_full, 1);
		break;
	case -EPIPE:
		mc_counter_add(mon->snap_absent, 1);
		break;
	default:
		mc_counter_add(mon->snap_failed, 1);
		if (!mon->snap_warned)      /* a size problem repeats: say it once */
			mc_log_warn("monitor_snapshot_failed", "{s:s, s:s}", "error", mc_strerror(rc),
			    "message", "metrics snapshot not sent (raise [memory] max_message_size "
			    "if it is too large)");
		mon->snap_warned = true;
		break;
	}
	mon->skipped++;
	mc_log_debug("monitor_snapshot_skipped", "{s:s}", "error", mc_strerror(rc));
}

/* Called by the worker loop at least every 100 ms, and whenever it idles. */
static void mc_mon_tick(struct mc_worker *w)
{
	struct mc_mon *mon = w->ctx;
	uint64_t now = mc_now_ns();

	if (now - mon->advance_ns >= MC_MON_ADVANCE_NS) {
		mc_mon_advance(w);
		mon->advance_ns = now;
	}
	if (now - mon->rates_ns >= MC_MON_RATE_NS)
		mc_mon_rates(w, mon, now);
	if (now - mon->snapshot_ns >= mon->snapshot_every_ns) {
		mon->snapshot_ns = now;
		mc_mon_snapshot(w, mon);
	}
}

static void mc_mon_register(struct mc_worker *w, struct mc_mon *mon, struct mc_httpd_metrics *hm)
{
	static const int codes[] = { 200, 400, 404, 405, 413, 414, 431, 500, 501, 505 };
	const char *help_snap = "Metrics snapshots for the persistence worker, by outcome";
	char code[8];

	_Static_assert(MC_ARRAY_LEN(codes) <= MC_HTTPD_CODES, "room for every counted status");
	mc_metrics_counter(&w->seg, "monitor_snapshots_total", help_snap,
	    (const char *const[]){ "result", "sent", NULL }, &mon->snap_sent);
	mc_metrics_counter(&w->seg, "monitor_snapshots_total", help_snap,
	    (const char *const[]){ "result", "skipped_full", NULL }, &mon->snap_full);
	mc_metrics_counter(&w->seg, "monitor_snapshots_total", help_snap,
	    (const char *const[]){ "result", "skipped_absent", NULL }, &mon->snap_absent);
	mc_metrics_counter(&w->seg, "monitor_snapshots_total", help_snap,
	    (const char *const[]){ "result", "failed", NULL }, &mon->snap_failed);
	memset(hm, 0, sizeof(*hm));
	for (size_t i = 0; i < MC_ARRAY_LEN(codes); i++) {
		snprintf(code, sizeof(code), "%d", codes[i]);
		hm->codes[i] = codes[i];
		mc_metrics_counter(&w->seg, "monitor_http_responses_total",
		    "Responses of the /metrics endpoint, by HTTP status",
		    (const char *const[]){ "code", code, NULL }, &hm->responses[i]);
	}
	mc_metrics_gauge(&w->seg, "monitor_http_connections",
	    "Open connections to the /metrics endpoint", NULL, &hm->connections);
	mc_metrics_histogram(&w->seg, "monitor_scrape_render_seconds",
	    "Time to render one exposition of the whole instance", NULL, &hm->render);
}

/* Frames for the monitor: the router's copies of MCP records (counted);
 * anything else is not ours, and is released as handled. */
static int mc_mon_on_frame(struct mc_worker *w, struct mc_msg *m, int *kept)
{
	struct mc_mon *mon = w->ctx;

	*kept = 0;
	return m->frame->f_kind == MC_FK_MCP ? mc_mon_mcp_frame(&mon->mcp, m->frame) : 0;
}

int mc_monitor_main(struct mc_worker *w)
{
	struct mc_httpd_metrics hm;
	struct mc_mon *mon = calloc(1, sizeof(*mon));
	int rc;

	if (mon == NULL) {
		mc_log_error("monitor_start_failed", "{s:s}", "error", strerror(ENOMEM));
		return 1;
	}
	mon->rates_ns = mon->snapshot_ns = mc_now_ns();
	/* before anything else: the totals may be behind by a whole downtime */
	mc_mon_advance(w);
	mon->advance_ns = mon->rates_ns;
	mon->snapshot_every_ns = (uint64_t)w->cfg->monitor_snapshot_interval * 1000000000ULL;
	mc_mon_register(w, mon, &hm);
	rc = mc_httpd_start(&mon->httpd, &w->seg, w->cfg->monitor_listen, &hm);
	if (rc)
		/* the rest of the monitor (rates, snapshots) is still worth running */
		mc_log_error("monitor_http_unavailable", "{s:s, s:s, s:s}", "listen",
		    w->cfg->monitor_listen, "error", mc_strerror(rc), "message",
		    "cannot start the io_uring HTTP thread; /metrics is not served");
	mc_mon_mcp_init(&mon->mcp, &w->seg);
	w->ctx = mon;
	w->on_tick = mc_mon_tick;
	w->on_frame = mc_mon_on_frame;
	rc = mc_worker_run(w);
	mc_httpd_stop(mon->httpd);
	free(mon);
	return rc;
}
