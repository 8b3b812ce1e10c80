/*
 * mc_router.h - the router worker: every frame sent to it goes on to the
 * workers and clients that need it, by kind, in priority lanes, with
 * back-pressure and no loss.
 *
 * WHAT GOES WHERE (mc_route_dests)
 *   StateRequest    -> state worker (the reply goes straight back to the
 *                      frame's producer, not through the router)
 *   MCPMessage      -> persistence (messages family), monitor, and every
 *                      subscribed learning client
 *   TrainingData,
 *   LearningModel   -> persistence
 *   LearningData    -> every subscribed learning client (none subscribed:
 *                      released, counted in route_unheard_total)
 *   Control         -> handled here: PING (answered PONG), SUBSCRIBE and
 *                      UNSUBSCRIBE (answered SUBSCRIBED)
 *   anything else   -> nobody: logged and counted as unroutable, released
 * Forwarding is zero-copy: the router adds the destinations' holder bits to
 * the frame and puts its descriptor in their rings (mc_frame_forward).
 *
 * LANES (enum mc_lane, proto/mc_proto.h; mc_route_lane)
 * The router takes up to MC_ROUTER_HOLD frames from its inbound rings into
 * three FIFO lanes, then forwards lane CONTROL first, then TOOL, then BULK.
 * A frame's lane is what its sender put in f_user, or by kind when that is
 * AUTO (Control -> CONTROL, StateRequest -> TOOL, everything else -> BULK).
 * StateRequest frames always go in TOOL: the state worker relies on seeing
 * each sender's requests in the order they were sent, and one FIFO lane
 * (taking each inbound ring in order) keeps that order.
 *
 * BACK-PRESSURE
 * A forward is all-or-nothing: when a destination's ring is full the frame
 * stays at the head of its lane (later frames of that lane wait behind it;
 * other lanes go on).  While the router holds MC_ROUTER_HOLD frames it
 * takes no more, so its inbound rings fill and their producers get -EAGAIN
 * (the protocol worker then stops taking requests off its sockets).
 * Nothing is dropped, with one exception that is logged and counted: a
 * learning client whose ring has stayed full for MC_ROUTER_SUB_TIMEOUT_NS
 * is unsubscribed, so a stuck learner cannot stall the front door.
 *
 * SUBSCRIBERS (struct mc_route_table, at the start of core.routing)
 * Written only by the router; read by anyone (Python shows it).  A bit per
 * client slot and the slot generation it was set in: a subscriber that
 * detached or died (its slot reaped or claimed again) is dropped at the
 * next forward.  The table lives in shared memory, so it survives a
 * restart of the router.
 *
 * CRASH SAFETY
 * Frames the router holds are in its journals; a restarted router takes
 * them again and forwards them again.  mc_frame_forward adds a descriptor
 * only for destinations whose holder bit is not already set, so a
 * destination still holding the frame does not get it twice; one that had
 * finished with it does (at-least-once, as for every consumer): the state
 * worker skips a StateRequest at or below the sender's last applied
 * sequence, persistence and the monitor tolerate a duplicate.
 */
#ifndef MC_ROUTER_H
#define MC_ROUTER_H

#include <stdbool.h>
#include <stdint.h>

#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_proto.h"
#include "mc_seg.h"

#define MC_ROUTER_HOLD           512        /* frames held in the lanes, at most */
#define MC_ROUTER_SUB_TIMEOUT_NS 1000000000ULL
#define MC_ROUTE_TABLE_MAGIC     0x314554554f52434dULL  /* "MCROUTE1" */

/* At the start of core.routing; owner: the router worker. */
struct mc_route_table {
	uint64_t rt_magic;
	uint64_t rt_subscribers;                /* bit per subscribed client slot */
	uint32_t rt_sub_gen[MC_MAX_SLOTS];      /* its slot generation when it subscribed */
};

/* The table in seg's core.routing region (the region is far larger). */
struct mc_route_table *mc_route_table(const struct mc_seg *seg);

/* Router only, at start: initialise the table unless it is already there
 * (a restart keeps the subscribers). */
void mc_route_table_open(struct mc_seg *seg);

/* Lane index 0..MC_LANES-1 (CONTROL, TOOL, BULK) for a frame. */
unsigned mc_route_lane(const struct mc_frame *f);

/*
 * Destinations of a frame of `kind` (not Control), as a slot mask, given
 * the live subscriber mask `subs`.  0: unroutable.
 */
uint64_t mc_route_dests(uint16_t kind, uint64_t subs);

/*
 * Router only.  Subscribe (on) or unsubscribe client slot `slot` of
 * generation `gen`.  -EINVAL for a slot that is not a client slot.
 */
int mc_route_subscribe(struct mc_seg *seg, unsigned slot, uint32_t gen, bool on);

/*
 * The subscribers still attached in the generation they subscribed in;
 * the router (only) also clears the others from the table when `prune`.
 */
uint64_t mc_route_live_subscribers(struct mc_seg *seg, bool prune);

#endif /* MC_ROUTER_H */
