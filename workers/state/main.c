/*
 * workers/state/main.c - the state worker.
 *
 * For now it runs the common worker loop (mc_worker.h): it holds its slot,
 * keeps its heartbeat, consumes its inbound rings and answers pings.  Its
 * own job arrives with its issue.
 */
#include "mc_worker.h"

int mc_state_main(struct mc_worker *w)
{
	return mc_worker_run(w);
}
