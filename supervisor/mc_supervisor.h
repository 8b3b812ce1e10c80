/*
 * mc_supervisor.h - `mcpcore run`: create the segment, start the five
 * workers, keep them alive, stop them in order.
 *
 * The supervisor touches the segment only to write the header and the
 * worker slots' control lines (and to reap dead client slots); it runs no
 * frame traffic, so a worker's crash cannot take it down.
 *
 * Restart policy per worker: a worker that exits for any reason while the
 * runtime is up is restarted after a backoff that starts at
 * [supervisor] restart_backoff_ms and doubles up to restart_backoff_max_ms;
 * the doubling resets once the worker has run for crash_loop_window_ms.
 * crash_loop_restarts exits within crash_loop_window_ms mark it FAILED
 * (logged; never restarted; the others keep running).  Exit status 78
 * (configuration error) marks it FAILED at once.  A worker whose heartbeat
 * is older than heartbeat_timeout_ms is presumed hung and SIGKILLed (and
 * then restarted like any crash).  Workers die with the supervisor
 * (PR_SET_PDEATHSIG).
 *
 * Shutdown on SIGTERM/SIGINT: workers get SIGTERM in reverse start order,
 * each waited for; whatever is left when shutdown_timeout_ms has passed
 * gets SIGKILL.  Then the segment is unlinked and run returns 0.
 */
#ifndef MC_SUPERVISOR_H
#define MC_SUPERVISOR_H

#include "mc_config.h"

/* Run until stopped.  Returns the process exit status (0 after a clean
 * shutdown, 78 for a configuration error, 1 for other start failures). */
int mc_supervisor_run(const struct mc_config *cfg);

#endif /* MC_SUPERVISOR_H */
