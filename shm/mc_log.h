/*
 * mc_log.h - structured JSON-lines logging for every mcpcore C process.
 *
 * One line per event on stderr:
 *   {"time":"2026-11-25T04:03:10.123456Z","level":"info",
 *    "component":"supervisor","pid":123,"event":"worker_started",
 *    "worker":"state", ...details...}
 * Details are given as a jansson json_pack() format and arguments, so
 * values are typed and escaped by the library, not by hand:
 *   mc_log(MC_LOG_INFO, "worker_exit", "{s:s, s:i}", "worker", name,
 *          "status", st);
 * A detail key "message" is the human sentence; "correlation_id" links
 * the lines about one message across processes.
 *
 * The line is assembled in memory and written with one write(2), so lines
 * from different processes sharing stderr never interleave (< PIPE_BUF is
 * not required for a regular file or tty, but one syscall per line keeps
 * them whole in practice).
 *
 * Level: mc_log_init() takes the configured level; the MCPCORE_LOG_LEVEL
 * environment variable overrides it.  Thread-safe for concurrent callers;
 * async-signal-unsafe (allocates).
 */
#ifndef MC_LOG_H
#define MC_LOG_H

#include <jansson.h>   /* json_int_t for "I" details */

enum mc_log_level { MC_LOG_DEBUG, MC_LOG_INFO, MC_LOG_WARN, MC_LOG_ERROR };

/* Set the component name ("supervisor", "state", ...) and level name
 * ("debug".."error"; NULL or unknown = info).  Call once per process. */
void mc_log_init(const char *component, const char *level);

/* Parse a level name; returns -1 when unknown. */
int mc_log_level_parse(const char *name);

/* Would a line at this level be written? (skip building costly details) */
int mc_log_enabled(enum mc_log_level level);

void mc_log(enum mc_log_level level, const char *event, const char *fmt, ...);

#define mc_log_debug(ev, ...) \
	do { if (mc_log_enabled(MC_LOG_DEBUG)) mc_log(MC_LOG_DEBUG, ev, __VA_ARGS__); } while (0)
#define mc_log_info(ev, ...)  mc_log(MC_LOG_INFO, ev, __VA_ARGS__)
#define mc_log_warn(ev, ...)  mc_log(MC_LOG_WARN, ev, __VA_ARGS__)
#define mc_log_error(ev, ...) mc_log(MC_LOG_ERROR, ev, __VA_ARGS__)

#endif /* MC_LOG_H */
