/*
 * workers/router/main.c - the router worker's loop: take frames into the
 * lanes, forward them lane by lane, hold what cannot go yet (mc_router.h
 * has the rules; route.c decides lanes and destinations).
 *
 * One pass: take (up to MC_ROUTER_HOLD held), then forward every lane as
 * far as its head can go.  Nothing to take and nothing forwarded: yield
 * briefly (mc_router_idle) and sleep on the doorbell, for 100 ms when holding nothing, for
 * MC_ROUTER_RETRY_NS when a destination was full (a consumer freeing room
 * does not ring our doorbell, so the router looks again on its own).
 */
#include "mc_worker.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mc_log.h"
#include "mc_metrics.h"
#include "mc_proto.h"
#include "mc_ring.h"
#include "mc_router.h"
#include "mc_util.h"

#define MC_ROUTER_SPIN_NS  50000ULL
#define MC_ROUTER_SLEEP_NS 100000000ULL
#define MC_ROUTER_RETRY_NS 200000ULL

struct mc_held {
	struct mc_msg m;
	uint64_t taken_ns;
};

struct mc_lane_q {
	struct mc_held q[MC_ROUTER_HOLD];       /* FIFO; never more than HOLD in all lanes */
	unsigned head, n;
	uint64_t blocked_ns;                    /* head waiting on a full ring since; 0 = not */
};

struct mc_router {
	struct mc_worker *w;
	struct mc_lane_q lane[MC_LANES];
	unsigned held;
	bool eager;                             /* the last pass took a frame somebody waits for */
	struct mc_counter routed[MC_LANES];
	struct mc_counter unroutable, sub_dropped, dest_gone, unheard;
	struct mc_histogram hold;               /* take -> forward */
	struct mc_gauge held_gauge;
};

static const char *const mc_lane_names[MC_LANES] = { "control", "tool", "bulk" };

/* The correlation id an MCPMessage carries, for log lines ("" if none). */
static void mc_router_corr(const struct mc_frame *f, char *buf, size_t len)
{
	Mcpcore__MCPMessage *msg;
	const char *id;

	buf[0] = '\0';
	if (f->f_kind != MC_FK_MCP)
		return;
	msg = (Mcpcore__MCPMessage *)mc_proto_unpack(f);
	if (msg == NULL)
		return;
	id = mc_proto_meta(msg, "correlation_id");
	snprintf(buf, len, "%s", id != NULL ? id : "");
	protobuf_c_message_free_unpacked(&msg->base, NULL);
}

/* ---- control ------------------------------------------------------------ */

static int mc_router_control(struct mc_router *r, const struct mc_msg *m)
{
	struct mc_seg *seg = &r->w->seg;
	Mcpcore__Control *in = (Mcpcore__Control *)mc_proto_unpack(m->frame);
	Mcpcore__Control out = MCPCORE__CONTROL__INIT;
	bool on;
	int rc;

	if (in == NULL || (in->op != MCPCORE__CONTROL__OP__SUBSCRIBE &&
	    in->op != MCPCORE__CONTROL__OP__UNSUBSCRIBE)) {
		if (in != NULL)
			protobuf_c_message_free_unpacked(&in->base, NULL);
		return mc_worker_control(r->w, m);      /* PING, and the bad-frame log */
	}
	on = in->op == MCPCORE__CONTROL__OP__SUBSCRIBE;
	rc = mc_route_subscribe(seg, m->src, ck_pr_load_32(&seg->slots[m->src].sl_generation), on);
	mc_log_info(on ? "router_subscribed" : "router_unsubscribed", "{s:i, s:s}", "slot",
	    (int)m->src, "result", rc ? mc_strerror(rc) : "ok");
	out.op = MCPCORE__CONTROL__OP__SUBSCRIBED;
	out.nonce = in->nonce;
	out.sent_ns = in->sent_ns;
	out.worker = (char *)r->w->name;
	out.generation = rc == 0 && on;
	out.pid = getpid();
	protobuf_c_message_free_unpacked(&in->base, NULL);
	rc = mc_proto_send(seg, &out.base, 1ULL << m->src);
	return rc == -EPIPE ? 0 : rc;
}

/* ---- taking --------------------------------------------------------------- */

static unsigned mc_router_take(struct mc_router *r)
{
	unsigned took = 0;
	uint64_t now = mc_now_ns();     /* one clock read per pass, not per frame */

	while (r->held < MC_ROUTER_HOLD) {
		struct mc_msg m;
		struct mc_lane_q *q;

		if (mc_recv(&r->w->seg, &m) != 0)
			break;          /* nothing, or a journal full of held frames */
		took++;
		r->eager |= !mc_proto_kind_lazy(m.frame->f_kind);
		if (m.frame->f_kind == MC_FK_CONTROL) {
			int rc = mc_router_control(r, &m);

			if (rc)         /* the asker times out and asks again */
				mc_log_warn("router_control_unanswered", "{s:i, s:s}", "src",
				    (int)m.src, "error", mc_strerror(rc));
			r->w->handled++;
			mc_frame_release(&r->w->seg, &m);
			continue;
		}
		q = &r->lane[mc_route_lane(m.frame)];
		q->q[(q->head + q->n) % MC_ROUTER_HOLD] = (struct mc_held){ m, now };
		q->n++;
		r->held++;
	}
	return took;
}

/* ---- forwarding ----------------------------------------------------------- */

static void mc_router_pop(struct mc_router *r, struct mc_lane_q *q, uint64_t now)
{
	struct mc_held *h = &q->q[q->head];

	mc_histogram_observe(r->hold, now - h->taken_ns);
	r->w->handled++;
	mc_frame_release(&r->w->seg, &h->m);
	q->head = (q->head + 1) % MC_ROUTER_HOLD;
	q->n--;
	r->held--;
	q->blocked_ns = 0;
}

/* The head of lane li could not go: a destination's ring is full.  A
 * subscriber that has kept its ring full too long loses its subscription. */
static void mc_router_blocked(struct mc_router *r, struct mc_lane_q *q, uint64_t dests)
{
	struct mc_seg *seg = &r->w->seg;
	uint64_t now = mc_now_ns();

	if (q->blocked_ns == 0) {
		q->blocked_ns = now;
		return;
	}
	if (now - q->blocked_ns < MC_ROUTER_SUB_TIMEOUT_NS)
		return;
	for (uint64_t d = dests & ~((1ULL << MC_SLOT_FIRST_CLIENT) - 1); d; d &= d - 1) {
		unsigned s = (unsigned)__builtin_ctzll(d);
		const struct mc_seg_out *out = &seg->out[s];

		if (out->ring == NULL || mc_ring_has_room(seg, (uint32_t)(out->ring - seg->rings)))
			continue;
		(void)mc_route_subscribe(seg, s, 0, false);
		mc_counter_add(r->sub_dropped, 1);
		mc_log_warn("router_subscriber_dropped", "{s:i, s:s}", "slot", (int)s, "message",
		    "a learning client's ring stayed full for 1 s: unsubscribed, it no longer "
		    "gets messages (subscribe again to resume)");
	}
	q->blocked_ns = now;
}

/* Forward the head of a lane.  0 (gone on), -EAGAIN (must wait). */
static int mc_router_forward(struct mc_router *r, struct mc_lane_q *q, unsigned li, uint64_t subs,
    uint64_t now)
{
	struct mc_seg *seg = &r->w->seg;
	struct mc_held *h = &q->q[q->head];
	const struct mc_frame *f = h->m.frame;
	uint64_t dests = mc_route_dests(f->f_kind, subs);
	char corr[64];
	int rc;

	if (dests == 0 && f->f_kind == MC_FK_LEARNING_DATA) {
		/* for learners only, and none is subscribed: nobody to miss it */
		mc_counter_add(r->unheard, 1);
		mc_router_pop(r, q, now);
		return 0;
	}
	if (dests == 0) {
		mc_router_corr(f, corr, sizeof(corr));
		mc_counter_add(r->unroutable, 1);
		mc_log_warn("router_unroutable", "{s:i, s:i, s:I, s:s, s:s}", "kind", (int)f->f_kind,
		    "src", (int)f->f_src, "seq", (json_int_t)f->f_seq, "correlation_id", corr,
		    "message", "no destination takes frames of this kind: released unsent");
		mc_router_pop(r, q, now);
		return 0;
	}
	rc = mc_frame_forward(seg, &h->m, dests);
	if (rc == -EPIPE) {
		/* a destination has failed or left: go on to the others */
		uint64_t live = 0;

		for (uint64_t d = dests; d; d &= d - 1)
			if (mc_frame_peer_ok(seg, (unsigned)__builtin_ctzll(d)) == 0)
				live |= d & -d;
		mc_router_corr(f, corr, sizeof(corr));
		mc_counter_add(r->dest_gone, 1);
		mc_log_warn("router_destination_gone", "{s:i, s:I, s:I, s:s}", "kind", (int)f->f_kind,
		    "wanted", (json_int_t)dests, "live", (json_int_t)live, "correlation_id", corr);
		rc = live ? mc_frame_forward(seg, &h->m, live) : 0;
		dests = live;
	}
	if (rc == -EAGAIN) {
		mc_router_blocked(r, q, dests);
		return -EAGAIN;
	}
	if (rc != 0) {
		mc_router_corr(f, corr, sizeof(corr));
		mc_log_error("router_forward_failed", "{s:i, s:s, s:s}", "kind", (int)f->f_kind,
		    "error", mc_strerror(rc), "correlation_id", corr);
	} else if (f->f_kind == MC_FK_MCP && mc_log_enabled(MC_LOG_DEBUG)) {
		mc_router_corr(f, corr, sizeof(corr));
		mc_log_debug("router_forward", "{s:s, s:s, s:I}", "correlation_id", corr, "lane",
		    mc_lane_names[li], "dests", (json_int_t)dests);
	}
	mc_router_pop(r, q, now);
	return 0;
}

static unsigned mc_router_dispatch(struct mc_router *r, bool *blocked)
{
	uint64_t subs = mc_route_live_subscribers(&r->w->seg, true), now = mc_now_ns();
	unsigned sent = 0;

	*blocked = false;
	for (unsigned li = 0; li < MC_LANES; li++) {
		struct mc_lane_q *q = &r->lane[li];
		unsigned n = 0;

		while (q->n > 0) {
			if (mc_router_forward(r, q, li, subs, now) != 0) {
				*blocked = true;
				break;
			}
			n++;
		}
		mc_counter_add(r->routed[li], n);
		sent += n;
	}
	mc_gauge_set(r->held_gauge, (double)r->held);
	return sent;
}

/* ---- the loop ------------------------------------------------------------- */

/*
 * Nothing to do.  After a pass of lazy frames only (MCP message copies,
 * learning data), more are likely on their way and nobody waits for them:
 * nap and take them as a batch.  Otherwise look for work between
 * sched_yield()s for up to MC_ROUTER_SPIN_NS, then sleep on the doorbell.
 * Yielding instead of spinning matters when busy processes outnumber cores
 * (five workers and the learners on two cores here): the router's work
 * per frame is short, and the process it waits for may need this very
 * core to produce it.
 */
static void mc_router_idle(struct mc_router *r, bool nap)
{
	struct mc_seg *seg = &r->w->seg;
	uint64_t start = mc_now_ns();

	if (nap && r->held == 0) {
		mc_ring_nap(seg, MC_RING_NAP_NS);
		return;
	}
	while (mc_now_ns() - start < MC_ROUTER_SPIN_NS) {
		if (mc_ring_pending(seg))
			return;
		sched_yield();
	}
	mc_ring_wait(seg, 0, r->held ? MC_ROUTER_RETRY_NS : MC_ROUTER_SLEEP_NS);
}

static void mc_router_metrics(struct mc_router *r)
{
	struct mc_seg *seg = &r->w->seg;

	for (unsigned li = 0; li < MC_LANES; li++)
		mc_metrics_counter(seg, "routed_frames_total", "Frames the router forwarded, by lane",
		    (const char *const[]){ "lane", mc_lane_names[li], NULL }, &r->routed[li]);
	mc_metrics_counter(seg, "route_unroutable_total",
	    "Frames of a kind no destination takes (released unsent, logged)", NULL,
	    &r->unroutable);
	mc_metrics_counter(seg, "route_unheard_total",
	    "LearningData frames released because no learning client was subscribed", NULL,
	    &r->unheard);
	mc_metrics_counter(seg, "route_subscribers_dropped_total",
	    "Learning clients unsubscribed because their ring stayed full", NULL, &r->sub_dropped);
	mc_metrics_counter(seg, "route_destination_gone_total",
	    "Forwards that found a destination failed or detached", NULL, &r->dest_gone);
	mc_metrics_histogram(seg, "route_hold_seconds",
	    "Time a frame spent in the router, from taken to forwarded", NULL, &r->hold);
	mc_metrics_gauge(seg, "route_held_frames", "Frames the router holds in its lanes", NULL,
	    &r->held_gauge);
}

int mc_router_main(struct mc_worker *w)
{
	struct mc_router *r = calloc(1, sizeof(*r));
	uint64_t last_tick = 0;
	bool nap = false;       /* the last pass took lazy frames only */

	if (r == NULL) {
		mc_log_error("router_start_failed", "{s:s}", "message", "out of memory");
		return 1;
	}
	r->w = w;
	w->ctx = r;
	mc_route_table_open(&w->seg);
	mc_router_metrics(r);
	mc_seg_ready(&w->seg);
	mc_log_info("worker_ready", "{s:s, s:i}", "worker", w->name,
	    "generation", (int)w->seg.generation);
	while (!mc_worker_stopping()) {
		bool blocked;
		unsigned took;

		r->eager = false;
		took = mc_router_take(r);
		unsigned sent = mc_router_dispatch(r, &blocked);
		uint64_t now = mc_now_ns();

		if (now - last_tick >= MC_ROUTER_SLEEP_NS || (took == 0 && sent == 0)) {
			mc_seg_heartbeat(&w->seg);
			last_tick = now;
		}
		if (took == 0 && sent == 0) {
			mc_router_idle(r, nap);
			nap = false;    /* one nap per lazy pass: an idle router sleeps */
		} else {
			nap = took > 0 && !r->eager;
		}
	}
	mc_log_info("worker_stopping", "{s:s, s:I, s:I}", "worker", w->name,
	    "handled", (json_int_t)w->handled, "held", (json_int_t)r->held);
	free(r);
	return 0;
}
