/*
 * test_route.c - the router's rules (workers/router/route.c) and, with the
 * real router loop in a child process, its priority lanes.
 */
#define _GNU_SOURCE

#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mc_config.h"
#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_proto.h"
#include "mc_router.h"
#include "mc_seg.h"
#include "mc_worker.h"
#include "ut.h"

#ifndef MC_SOURCE_DIR
#error "MC_SOURCE_DIR must be defined to the repository root"
#endif

static char err[512];
static struct mc_config cfg;
static struct mc_layout lay;
static struct mc_seg sup;

static void up(void)
{
	ut_seg_create(&sup, &cfg, &lay);
}

static void down(void)
{
	mc_seg_destroy(&sup);
	ut_fini();
}

static void init(void)
{
	ut_guard_start("route");
	up();
}

TestSuite(route, .init = init, .fini = down);

static void attach_worker(struct mc_seg *s, unsigned slot)
{
	ut_worker(s, cfg.instance, slot);
	mc_seg_ready(s);
}

static void attach_client(struct mc_seg *s)
{
	cr_assert_eq(mc_seg_attach(s, cfg.instance, false, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(mc_seg_claim_client(s, "test", err, sizeof(err)), 0, "%s", err);
}

Test(route, lanes_follow_the_sender_or_the_kind)
{
	struct mc_frame f;

	memset(&f, 0, sizeof(f));
	f.f_kind = MC_FK_MCP;
	f.f_user = MC_LANE_AUTO;
	cr_assert_eq(mc_route_lane(&f), MC_LANE_BULK - 1, "an MCPMessage without a lane is bulk");
	f.f_user = MC_LANE_CONTROL;
	cr_assert_eq(mc_route_lane(&f), MC_LANE_CONTROL - 1);
	f.f_user = MC_LANE_TOOL;
	cr_assert_eq(mc_route_lane(&f), MC_LANE_TOOL - 1);
	f.f_user = 77;
	cr_assert_eq(mc_route_lane(&f), MC_LANE_BULK - 1, "an unknown lane is treated as AUTO");
	f.f_kind = MC_FK_CONTROL;
	f.f_user = MC_LANE_AUTO;
	cr_assert_eq(mc_route_lane(&f), MC_LANE_CONTROL - 1);
	f.f_kind = MC_FK_STATE_REQUEST;
	for (uint32_t l = 0; l <= MC_LANE_BULK; l++) {
		f.f_user = l;
		cr_assert_eq(mc_route_lane(&f), MC_LANE_TOOL - 1,
		    "state requests keep one FIFO whatever lane they ask (%u)", l);
	}
}

Test(route, destinations_by_kind)
{
	uint64_t subs = (1ULL << MC_SLOT_FIRST_CLIENT) | (1ULL << (MC_SLOT_FIRST_CLIENT + 2));
	uint64_t pers = 1ULL << MC_WORKER_PERSISTENCE, mon = 1ULL << MC_WORKER_MONITOR;

	cr_assert_eq(mc_route_dests(MC_FK_STATE_REQUEST, subs), 1ULL << MC_WORKER_STATE);
	cr_assert_eq(mc_route_dests(MC_FK_MCP, subs), pers | mon | subs);
	cr_assert_eq(mc_route_dests(MC_FK_MCP, 0), pers | mon);
	cr_assert_eq(mc_route_dests(MC_FK_TRAINING_DATA, subs), pers);
	cr_assert_eq(mc_route_dests(MC_FK_LEARNING_MODEL, subs), pers);
	cr_assert_eq(mc_route_dests(MC_FK_LEARNING_DATA, subs), subs);
	cr_assert_eq(mc_route_dests(MC_FK_RAW, subs), 0, "raw bytes have no destination");
	cr_assert_eq(mc_route_dests(MC_FK_STATE_REPLY, subs), 0, "replies go straight back");
	cr_assert_eq(mc_route_dests(63, subs), 0);
}

Test(route, subscribers_live_in_shared_memory_and_die_with_their_slot)
{
	struct mc_seg c;
	struct mc_route_table *t;
	unsigned slot;
	uint32_t gen;

	attach_client(&c);
	slot = (unsigned)c.slot;
	gen = c.generation;
	mc_route_table_open(&sup);
	t = mc_route_table(&sup);
	cr_assert_eq(t->rt_magic, MC_ROUTE_TABLE_MAGIC);
	cr_assert_eq(mc_route_subscribe(&sup, MC_WORKER_STATE, 1, true), -EINVAL,
	    "workers are not subscribers");
	cr_assert_eq(mc_route_subscribe(&sup, MC_MAX_SLOTS, 1, true), -EINVAL);
	cr_assert_eq(mc_route_subscribe(&sup, slot, gen, true), 0);
	cr_assert_eq(mc_route_live_subscribers(&sup, true), 1ULL << slot);

	/* a restarted router keeps them: opening again changes nothing */
	mc_route_table_open(&sup);
	cr_assert_eq(mc_route_live_subscribers(&sup, false), 1ULL << slot);

	/* a subscription from an earlier generation of the slot is not live,
	 * and pruning removes it from the table */
	cr_assert_eq(mc_route_subscribe(&sup, slot, gen - 1, true), 0);
	cr_assert_eq(mc_route_live_subscribers(&sup, false), 0);
	cr_assert_eq(t->rt_subscribers, 1ULL << slot, "not pruned unless asked");
	cr_assert_eq(mc_route_live_subscribers(&sup, true), 0);
	cr_assert_eq(t->rt_subscribers, 0);

	/* a client that leaves is no longer live */
	cr_assert_eq(mc_route_subscribe(&sup, slot, gen, true), 0);
	mc_seg_release_client(&c);
	cr_assert_eq(mc_route_live_subscribers(&sup, true), 0);
	mc_seg_detach(&c);
}

/* ---- the loop, in a child ------------------------------------------------ */

static pid_t start_router(void)
{
	pid_t p = ut_fork();

	if (p == 0) {
		struct mc_worker w;
		char e[512];

		memset(&w, 0, sizeof(w));
		UT_CHK(mc_seg_attach(&w.seg, cfg.instance, false, e, sizeof(e)) == 0, "%s", e);
		UT_CHK(mc_seg_claim_worker(&w.seg, MC_WORKER_ROUTER) == 0, "claim router");
		w.cfg = &w.seg.hdr->sh_config;
		w.slot = MC_WORKER_ROUTER;
		w.name = "router";
		_exit(mc_router_main(&w));
	}
	return p;
}

/* The workers an MCPMessage travels between: its sender and the two
 * destinations every copy goes to. */
struct peers {
	struct mc_seg proto, pers, mon;
};

static void peers_attach(struct peers *w)
{
	attach_worker(&w->proto, MC_WORKER_PROTOCOL);
	attach_worker(&w->pers, MC_WORKER_PERSISTENCE);
	attach_worker(&w->mon, MC_WORKER_MONITOR);
}

/* Kill the router, then let the peers go. */
static void peers_done(struct peers *w, pid_t router)
{
	kill(router, SIGKILL);
	ut_wait(router);
	mc_seg_detach(&w->proto);
	mc_seg_detach(&w->pers);
	mc_seg_detach(&w->mon);
}

/* Send an MCPMessage whose type says which it is, in lane. */
static void send_mcp(struct mc_seg *s, const char *type, uint32_t lane)
{
	Mcpcore__MCPMessage m = MCPCORE__MCPMESSAGE__INIT;

	m.message_type = (char *)type;
	m.payload.data = (uint8_t *)"{}";
	m.payload.len = 2;
	cr_assert_eq(mc_proto_send_lane(s, &m.base, 1ULL << MC_WORKER_ROUTER, lane), 0, "%s", type);
}

/* The next MCPMessage type that reaches s (within a few seconds). */
static char *recv_type(struct mc_seg *s)
{
	for (int i = 0; i < 5000; i++) {
		struct mc_msg m;
		Mcpcore__MCPMessage *msg;
		char *type;

		if (mc_recv(s, &m) != 0) {
			usleep(1000);
			continue;
		}
		msg = (Mcpcore__MCPMessage *)mc_proto_unpack(m.frame);
		cr_assert_not_null(msg);
		type = strdup(msg->message_type);
		protobuf_c_message_free_unpacked(&msg->base, NULL);
		mc_frame_release(s, &m);
		return type;
	}
	cr_assert_fail("nothing arrived");
	return NULL;
}

Test(route, control_lane_overtakes_bulk_and_copies_reach_every_destination)
{
	struct peers w;
	struct mc_seg sub;
	char name[16];
	pid_t router;

	peers_attach(&w);
	attach_client(&sub);
	/* subscribed as the router would on a SUBSCRIBE from the client */
	mc_route_table_open(&sup);
	cr_assert_eq(mc_route_subscribe(&sup, (unsigned)sub.slot, sub.generation, true), 0);
	/* queued before the router runs, so its first pass takes them all */
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "bulk%d", i);
		send_mcp(&w.proto, name, MC_LANE_BULK);
	}
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "tool%d", i);
		send_mcp(&w.proto, name, MC_LANE_TOOL);
	}
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "ctl%d", i);
		send_mcp(&w.proto, name, MC_LANE_CONTROL);
	}
	router = start_router();
	{
		struct mc_seg *dst[] = { &w.pers, &w.mon, &sub };

		for (int d = 0; d < 3; d++) {
			/* control first, then tool, then bulk; FIFO within each */
			for (int i = 0; i < 30; i++) {
				char *got = recv_type(dst[d]);
				char want[16];

				if (i < 5)
					snprintf(want, sizeof(want), "ctl%d", i);
				else if (i < 10)
					snprintf(want, sizeof(want), "tool%d", i - 5);
				else
					snprintf(want, sizeof(want), "bulk%d", i - 10);
				cr_assert_str_eq(got, want, "destination %d, message %d", d, i);
				free(got);
			}
		}
	}
	peers_done(&w, router);
	mc_seg_release_client(&sub);
	mc_seg_detach(&sub);
}

/* Voluntary context switches of pid so far (each is a sleep). */
static long sleeps_of(pid_t pid)
{
	char path[64], line[256];
	long n = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "voluntary_ctxt_switches: %ld", &n) == 1)
			break;
	fclose(f);
	return n;
}

/*
 * After a pass of lazy frames the router naps (1 ms) to take the next ones
 * as a batch; once nothing comes it must go back to sleeping on its
 * doorbell.  It used to nap again and again: ~1,000 wake-ups a second for
 * ever on an idle runtime.  A doorbell sleep re-checks on its own ladder
 * (100 us, x4, up to the 100 ms tick): a few dozen wake-ups at most here.
 */
Test(route, an_idle_router_sleeps_after_a_lazy_pass)
{
	struct peers w;
	pid_t router;
	long before, after;
	char *got;

	peers_attach(&w);
	router = start_router();
	send_mcp(&w.proto, "lazy", MC_LANE_BULK);   /* MCPMessage frames are lazy */
	got = recv_type(&w.pers);
	cr_assert_str_eq(got, "lazy");
	free(got);
	got = recv_type(&w.mon);
	free(got);
	usleep(200000);         /* past any nap and the first rungs of the ladder */
	before = sleeps_of(router);
	usleep(300000);
	after = sleeps_of(router);
	cr_assert_lt(after - before, 60, "an idle router woke %ld times in 300 ms",
	    after - before);
	/* and it still wakes for the next frame */
	send_mcp(&w.proto, "again", MC_LANE_BULK);
	got = recv_type(&w.pers);
	cr_assert_str_eq(got, "again");
	free(got);
	peers_done(&w, router);
}
