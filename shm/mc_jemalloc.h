/*
 * mc_jemalloc.h - memory figures from jemalloc's mallctl for the metrics
 * blocks (mc_metrics.h), for programs that are linked with jemalloc.
 *
 * Header-only on purpose: the segment library (mcshm) is also linked into
 * the Python extension, where jemalloc must not be (two allocators in one
 * process), so the library never calls jemalloc itself.  A program built
 * with MC_HAVE_JEMALLOC (the mc_alloc CMake target: the mcpcore binary and
 * mcpcore-bench) includes this header in its main() and calls
 * mc_jemalloc_install() once, before any metrics block is opened.  Without
 * MC_HAVE_JEMALLOC (e.g. the sanitizer build) install does nothing and
 * processes report no memory gauges.
 *
 * Calling mallctl also makes the program reference a jemalloc-only symbol,
 * which keeps the linker (--as-needed with LTO) from dropping libjemalloc.
 *
 * mc_jemalloc_stats() runs on the metrics tick (at most once a second),
 * never per frame: "epoch" refreshes jemalloc's cached statistics first.
 */
#ifndef MC_JEMALLOC_H
#define MC_JEMALLOC_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "mc_metrics.h"

#ifdef MC_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>

/* stats.allocated and stats.resident, bytes: 0 or -errno. */
static inline int mc_jemalloc_stats(uint64_t *allocated, uint64_t *resident)
{
	uint64_t epoch = 1;
	size_t a = 0, r = 0, len = sizeof(epoch);
	int rc;

	rc = mallctl("epoch", &epoch, &len, &epoch, sizeof(epoch));
	len = sizeof(a);
	if (rc == 0)
		rc = mallctl("stats.allocated", &a, &len, NULL, 0);
	len = sizeof(r);
	if (rc == 0)
		rc = mallctl("stats.resident", &r, &len, NULL, 0);
	if (rc != 0)
		return -rc;     /* mallctl returns an errno value */
	*allocated = a;
	*resident = r;
	return 0;
}

static inline void mc_jemalloc_install(void)
{
	mc_metrics_set_memory_source(mc_jemalloc_stats);
}
#else
static inline void mc_jemalloc_install(void)
{
}
#endif

#endif /* MC_JEMALLOC_H */
