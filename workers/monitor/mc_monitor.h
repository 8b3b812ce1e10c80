/*
 * mc_monitor.h - the parts of the monitor worker and how they meet.
 *
 * The monitor process runs two threads:
 *   - the worker thread: the common worker loop (mc_worker.h), whose tick
 *     advances every ring's 64-bit frame totals (the monitor is their only
 *     writer, mc_ring.h), computes frame rates every second (published in
 *     the monitor's own metrics block for `mcpcore status`) and sends a
 *     MetricsSnapshot frame to the persistence worker every [monitor]
 *     snapshot_interval seconds (snapshot.c).  It is the only thread that uses the mc_seg
 *     frame calls, as mc_frame.h requires.
 *   - the HTTP thread (httpd.c): an io_uring loop serving GET /metrics in
 *     the Prometheus text format (expo.c).  It only reads shared memory and
 *     writes the HTTP counters it was given, registered before it started
 *     (each metric keeps exactly one writing thread).  A scrape is answered
 *     at once, whatever the worker thread is doing (it may sleep up to
 *     100 ms on its doorbell).
 * Nothing is shared between the threads but the read-only segment and
 * the stop request.
 */
#ifndef MC_MONITOR_H
#define MC_MONITOR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mc_frame.h"
#include "mc_metrics.h"
#include "mc_seg.h"

/* ---- buf.c: a growable text buffer ------------------------------------ */

struct mc_buf {
	char  *p;
	size_t len, cap;
	bool   failed;                  /* an allocation failed: contents are incomplete */
};

void mc_buf_init(struct mc_buf *b);
void mc_buf_free(struct mc_buf *b);
void mc_buf_clear(struct mc_buf *b);
void mc_buf_put(struct mc_buf *b, const char *s, size_t n);
void mc_buf_puts(struct mc_buf *b, const char *s);
void mc_buf_printf(struct mc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- expo.c: the Prometheus text exposition (format 0.0.4) ----------- */

#define MC_EXPO_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/*
 * Render every family: runtime figures from the slot table, the rings'
 * frame totals and the pool cursors, then every metric registered in any
 * block (prefixed "mcpcore_", with a worker="<slot name>" label).  Families are grouped
 * across processes (one HELP/TYPE each); a registered name whose type
 * differs from the first process's, or that collides with a runtime family,
 * is left out.  Any thread; reads shared memory only.  0, or -ENOMEM.
 */
int mc_expo_render(const struct mc_seg *seg, struct mc_buf *out);

/* ---- httpd.c: the /metrics endpoint ------------------------------------ */

/* The counters the HTTP thread writes (registered by the worker thread
 * before mc_httpd_start). */
#define MC_HTTPD_CODES 10
struct mc_httpd_metrics {
	int                 codes[MC_HTTPD_CODES];     /* statuses counted, 0-terminated */
	struct mc_counter   responses[MC_HTTPD_CODES]; /* monitor_http_responses_total{code} */
	struct mc_gauge     connections;               /* monitor_http_connections */
	struct mc_histogram render;                    /* monitor_scrape_render_seconds */
};

struct mc_httpd;

/*
 * Start the HTTP thread on `listen` ("a.b.c.d:port" / "[v6]:port").
 * Binding happens in the thread and is retried every 2 s while it fails
 * (e.g. the port is taken), logged once per distinct error: the monitor
 * keeps running without an endpoint rather than crash-looping.
 * 0, or -errno (thread or io_uring could not start).
 */
int mc_httpd_start(struct mc_httpd **out, const struct mc_seg *seg, const char *listen,
    const struct mc_httpd_metrics *m);

/* Ask the thread to stop, join it, free everything.  NULL is fine. */
void mc_httpd_stop(struct mc_httpd *h);

/* ---- snapshot.c: the MetricsSnapshot frame -------------------------------- */

/*
 * Build a snapshot of every block and send it to the persistence worker.
 * Never waits: -EAGAIN (ring or pool full), -EPIPE (persistence failed or
 * stopped), -EMSGSIZE (larger than max_message_size), -ENOMEM.
 */
int mc_snapshot_send(struct mc_seg *seg, uint64_t seq, uint64_t skipped, uint32_t interval_s);

/* ---- mcpmsg.c: the copies of MCP messages the router sends ---------------- */

#define MC_MON_METHODS  21      /* known message types, "other" last */
#define MC_MON_OUTCOMES 16      /* distinct error outcomes, "other" last */

/* Monitor thread only (the worker loop's); metrics in the monitor's block. */
struct mc_mon_mcp {
	struct mc_seg *seg;
	struct mc_counter types[2][MC_MON_METHODS];     /* [in][type] */
	bool types_tried[2][MC_MON_METHODS];
	char outcome[MC_MON_OUTCOMES][32];
	struct mc_counter errors[MC_MON_OUTCOMES];
	unsigned noutcomes;
	struct mc_histogram latency;
};

void mc_mon_mcp_init(struct mc_mon_mcp *mm, struct mc_seg *seg);

/* Count one MCPMessage record (see mcpmsg.c).  0, or -EBADMSG when it
 * does not parse (logged). */
int mc_mon_mcp_frame(struct mc_mon_mcp *mm, const struct mc_frame *f);

#endif /* MC_MONITOR_H */
