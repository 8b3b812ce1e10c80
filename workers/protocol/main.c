/*
 * workers/protocol/main.c - the protocol worker: the MCP front door.
 *
 * It does not run the shared loop (worker.c): its one thread serves
 * Streamable HTTP on io_uring and does the worker duties itself
 * (heartbeat, pings, state replies), because the frame API is
 * single-threaded per process.  See server.c and mc_protocol.h.
 */
#include "mc_protocol.h"
#include "mc_worker.h"

int mc_protocol_main(struct mc_worker *w)
{
	return mc_protocol_serve(w);
}
