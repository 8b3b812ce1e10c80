/*
 * mc_status.h - JSON views of a segment that more than one reader prints:
 * `mcpcore status --json` (supervisor/cli.c) and the MCP runtime_status
 * tool (workers/protocol/tools.c).  Read-only, any process, no locks: each
 * figure is read once and may be a moment old.
 */
#ifndef MC_STATUS_H
#define MC_STATUS_H

#include <jansson.h>

#include "mc_seg.h"

/* Every ring: [{name "src->dst", src, dst, depth, capacity, full_events}]
 * (a new reference; NULL only when out of memory). */
json_t *mc_status_rings(const struct mc_seg *seg);

#endif /* MC_STATUS_H */
