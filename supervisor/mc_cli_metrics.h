/*
 * mc_cli_metrics.h - the metrics part of `mcpcore status` (cli_metrics.c).
 *
 * Adds to the status document, for the supervisor, every worker and every
 * attached client, the figures of its metrics block (shm/mc_metrics.h):
 *   frames_in, frames_out                           frames through the slot's rings
 *                                                   (from the ring cursors)
 *   pool_bytes_written                              bytes of frames the slot wrote
 *   bytes_in, bytes_out                             always null (kept: fields are never
 *                                                   removed; nothing counts them any more)
 *   frames_in_per_s, frames_out_per_s               the monitor's last second (null
 *                                                   while the monitor publishes none)
 *   handled, handling_p50_us, handling_p99_us       frame handling latency
 *   handler_errors                                  failed handlers, all codes
 *   memory_allocated, memory_resident               jemalloc bytes (null without it)
 * (null when the slot has no metrics block), and a top-level "monitor":
 * {"listen", "path"} naming the Prometheus endpoint.  Fields are added,
 * never renamed (README: stable JSON forms).  Read-only; any process.
 */
#ifndef MC_CLI_METRICS_H
#define MC_CLI_METRICS_H

#include <jansson.h>

#include "mc_seg.h"

/* Add the fields above to a status document built by cli.c. */
void mc_cli_metrics_add(const struct mc_seg *seg, json_t *doc);

/* Print the metrics table of a document that went through mc_cli_metrics_add. */
void mc_cli_metrics_print(json_t *doc);

#endif /* MC_CLI_METRICS_H */
