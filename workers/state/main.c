/*
 * workers/state/main.c - the state worker: the single writer of the state
 * table (mc_state_writer.h).
 *
 * It takes StateRequest frames from its rings, applies their ops in order,
 * answers each frame with one StateReply to its sender, and sends the
 * change feed (StateChangeBatch) to the persistence worker and to clients
 * that subscribed.  Reads never come here: any process reads the table in
 * shared memory directly (mc_state_get).
 *
 * Frames come straight from their sender or forwarded by the router; either
 * way the frame's producer (f_src) is the sender: it gets the reply, and
 * (f_src, f_seq) names the frame in the writer's records.  A sender's frames
 * arrive in the order it sent them (the router keeps one FIFO lane for
 * state requests), so a frame at or below the sender's last applied seq is
 * a duplicate (a router restart replays its forwards) and is skipped.
 *
 * A request frame is finished (released, so not redelivered) only after
 * its reply is sent; the writer's records make a replay after a crash
 * resume where the dead worker stopped, so every op is applied once and
 * every frame answered at least once.  A reply that cannot be sent yet
 * (the sender's ring is full) holds up the loop until it can: the sender
 * is reading its replies or dead (then it is reaped and -EPIPE drops it).
 */
#include "mc_worker.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mc_log.h"
#include "mc_proto.h"
#include "mc_state_writer.h"
#include "mc_util.h"

#define MC_SMALL_REQ       8           /* ops a request may have to be answered
                                          without heap buffers */
#define MC_FEED_BATCH      256         /* changes per feed frame, at most */
#define MC_SWEEP_BUDGET    4096        /* entries checked for expiry per sweep */
#define MC_SWEEP_PERIOD_NS 2000000ULL  /* sweep every 2 ms: 2 Mi entries/s */
#define MC_REQ_ARENA       (64u * 1024u) /* decoded requests: ~200 small ops fit */
#define MC_VALS_KEEP       (256u * 1024u) /* GET copies: a larger buffer is not kept */
#define MC_NO_COPY         SIZE_MAX

struct mc_state_worker {
	struct mc_state_writer w;
	struct mc_proto_arena arena;    /* the request being handled, decoded */
	uint8_t *vals;                  /* GET values copied for the reply being built */
	size_t vals_cap, vals_used;
	uint64_t feed_frames, feed_drops, replies;
	uint64_t last_sweep;            /* loop clock (mc_now_ns) at the last expiry sweep */
	bool persistence_gone_logged;
};

/* One op's reply, from a fresh application or from the frame's records. */
static void mc_state_reply_one(struct mc_state_writer *sw, const Mcpcore__StateOp *op,
    uint32_t status, uint64_t version, const char *error, Mcpcore__StateResult *r,
    char *number, size_t numlen)
{
	mcpcore__state_result__init(r);
	r->id = op->id;
	r->status = (Mcpcore__StateResult__Status)status;
	r->version = version;
	if (status != MCPCORE__STATE_RESULT__STATUS__OK)
		r->error = (char *)(error ? error : "failed");
	if (status == MCPCORE__STATE_RESULT__STATUS__OK &&
	    op->kind == MCPCORE__STATE_OP__KIND__INCR &&
	    mc_state_writer_number(sw, op, number, numlen) == 0) {
		r->value.data = (uint8_t *)number;
		r->value.len = strlen(number);
	}
}

static void mc_state_subscribe(struct mc_state_writer *sw, unsigned src, bool on)
{
	uint64_t mask = sw->ctl->sc_subscribers;

	mask = on ? mask | (1ULL << src) : mask & ~(1ULL << src);
	ck_pr_store_64(&sw->ctl->sc_subscribers, mask);
}

/*
 * A GET: the value as the writer has it, after this sender's earlier
 * writes.  The reply may point at the value in the table only if nothing
 * changes the table before the reply is packed, that is when no write op
 * follows in the request (`copy` false: the common one-op GET costs no
 * copy).  Otherwise the value is copied to sw->vals at *off: the buffer
 * may move as it grows, so the caller turns offsets into pointers once
 * every op is done.  -EAGAIN when out of memory.  Not recorded for replay:
 * a GET changes nothing, so after a crash it is simply read again.
 */
static int mc_state_get_op(struct mc_state_worker *sw, const Mcpcore__StateOp *op, uint64_t *now,
    Mcpcore__StateResult *r, bool copy, size_t *off)
{
	const void *val;
	uint32_t len;
	uint64_t version;
	int rc = mc_state_writer_value(&sw->w, op, now, &val, &len, &version);

	mcpcore__state_result__init(r);
	r->id = op->id;
	*off = MC_NO_COPY;
	if (rc) {
		r->status = rc == -ENOENT ? MCPCORE__STATE_RESULT__STATUS__NOT_FOUND :
		    MCPCORE__STATE_RESULT__STATUS__BAD_REQUEST;
		r->error = (char *)(rc == -ENOENT ? "no such key" :
		    "namespace and key must be 1..[state] max_key_size bytes");
		return 0;
	}
	r->status = MCPCORE__STATE_RESULT__STATUS__OK;
	r->version = version;
	r->value.len = len;
	if (!copy) {
		r->value.data = (uint8_t *)val;
		return 0;
	}
	if (len > sw->vals_cap - sw->vals_used) {
		size_t cap = sw->vals_cap ? sw->vals_cap : 4096;
		uint8_t *p;

		while (cap - sw->vals_used < len)
			cap *= 2;
		p = realloc(sw->vals, cap);
		if (p == NULL)
			return -EAGAIN;
		sw->vals = p;
		sw->vals_cap = cap;
	}
	memcpy(sw->vals + sw->vals_used, val, len);
	*off = sw->vals_used;
	sw->vals_used += len;
	r->value.data = NULL;       /* set from *off when the ops are done */
	return 0;
}

static int mc_state_request(struct mc_worker *wk, struct mc_msg *m)
{
	struct mc_state_worker *sw = wk->ctx;
	Mcpcore__StateRequest *req = (Mcpcore__StateRequest *)mc_proto_unpack_in(&sw->arena,
	    m->frame);
	Mcpcore__StateReply reply = MCPCORE__STATE_REPLY__INIT;
	Mcpcore__StateResult *results = NULL, **rp = NULL;
	char (*numbers)[24] = NULL;
	size_t *values = NULL;          /* GET: where in sw->vals its value was copied */
	struct {
		Mcpcore__StateResult results[MC_SMALL_REQ];
		Mcpcore__StateResult *rp[MC_SMALL_REQ];
		char numbers[MC_SMALL_REQ][24];
		size_t values[MC_SMALL_REQ];
	} small;
	uint64_t now = 0;               /* wall clock, read once, when an op needs it */
	unsigned src = m->frame->f_src;         /* the sender, also through the router */
	uint64_t seq = m->frame->f_seq;
	uint32_t done, n = 0, writes = 0;  /* ops[0, writes) end with the last that may write */
	int rc = 0;

	if (req == NULL) {
		mc_log_warn("state_bad_request", "{s:i, s:i, s:I, s:s}", "src", (int)src, "via",
		    (int)m->src, "seq", (json_int_t)seq, "message", "StateRequest frame does not parse");
		return -EBADMSG;
	}
	if (mc_state_frame_applied(&sw->w, src, seq) &&
	    !(sw->w.ctl->sc_cur_src == src && sw->w.ctl->sc_cur_seq == seq)) {
		mc_log_debug("state_duplicate", "{s:i, s:i, s:I}", "src", (int)src, "via",
		    (int)m->src, "seq", (json_int_t)seq);
		goto out;           /* answered when it was applied */
	}
	n = (uint32_t)req->n_ops;
	if (n <= MC_SMALL_REQ) {
		/* most requests are one op (an MCP tool call): no allocations */
		results = small.results;
		rp = small.rp;
		numbers = small.numbers;
		values = small.values;
	} else {
		results = calloc(n, sizeof(*results));
		rp = calloc(n, sizeof(*rp));
		numbers = calloc(n, sizeof(*numbers));
		values = calloc(n, sizeof(*values));
	}
	if (results == NULL || rp == NULL || numbers == NULL || values == NULL) {
		rc = -EAGAIN;       /* out of memory: try again later, do not lose it */
		goto out;
	}
	for (uint32_t k = 0; k < n; k++)
		if (req->ops[k]->kind != MCPCORE__STATE_OP__KIND__GET)
			writes = k + 1;
	sw->vals_used = 0;
	done = mc_state_frame_begin(&sw->w, src, seq);
	mc_state_prefetch(&sw->w, req->ops, n);
	for (uint32_t k = 0; k < n; k++) {
		const Mcpcore__StateOp *op = req->ops[k];
		struct mc_state_result res;

		values[k] = MC_NO_COPY;
		if (k >= MC_STATE_MAX_OPS) {
			mc_state_reply_one(&sw->w, op, MCPCORE__STATE_RESULT__STATUS__BAD_REQUEST, 0,
			    "more than 1024 ops in one request", &results[k], numbers[k], 24);
		} else if (op->kind == MCPCORE__STATE_OP__KIND__GET) {
			/* before the replay records: a GET is not recorded, it is read again */
			rc = mc_state_get_op(sw, op, &now, &results[k], k < writes, &values[k]);
			if (rc)
				goto out;
		} else if (k < done) {
			struct mc_state_op_result r = mc_state_frame_result(&sw->w, k);

			mc_state_reply_one(&sw->w, op, r.status, r.version, "failed (before a restart)",
			    &results[k], numbers[k], 24);
		} else if (op->kind == MCPCORE__STATE_OP__KIND__SUBSCRIBE ||
		    op->kind == MCPCORE__STATE_OP__KIND__UNSUBSCRIBE) {
			mc_state_subscribe(&sw->w, src, op->kind == MCPCORE__STATE_OP__KIND__SUBSCRIBE);
			mc_state_reply_one(&sw->w, op, 0, sw->w.t->st_version, NULL, &results[k],
			    numbers[k], 24);
		} else {
			if (now == 0)
				now = mc_wall_ns();
			mc_state_apply(&sw->w, op, now, k, &res);
			mc_state_reply_one(&sw->w, op, res.status, res.version, res.error, &results[k],
			    numbers[k], 24);
			if (op->correlation_id && *op->correlation_id)
				mc_log_debug("state_op", "{s:s, s:i, s:i, s:I}", "correlation_id",
				    op->correlation_id, "kind", (int)op->kind, "status", (int)res.status,
				    "version", (json_int_t)res.version);
		}
		rp[k] = &results[k];
	}
	for (uint32_t k = 0; k < n; k++)
		if (values[k] != MC_NO_COPY)
			results[k].value.data = sw->vals + values[k];
	mc_state_frame_end(&sw->w, src, seq);
	reply.n_results = n;
	reply.results = rp;
	rc = mc_proto_send(&wk->seg, &reply.base, 1ULL << src);
	if (rc == -EPIPE) {
		rc = 0;             /* the sender is gone: nobody to answer */
	} else if (rc == 0) {
		sw->replies++;
	}
out:
	if (sw->vals_cap > MC_VALS_KEEP) {
		/* a rare huge request: give its memory back */
		free(sw->vals);
		sw->vals = NULL;
		sw->vals_cap = 0;
	}
	if (results != small.results) {
		free(values);
		free(numbers);
		free(rp);
		free(results);
	}
	mc_proto_free_in(&sw->arena, &req->base);
	return rc;
}

/* Fill one StateChange from table entry idx; false if it has nothing to say. */
static bool mc_state_change(struct mc_state_writer *w, uint32_t idx, Mcpcore__StateChange *c)
{
	const struct mc_state_entry *e = &w->entries[idx & w->mask];
	const uint8_t *blk;

	if (!e->e_dirty || e->e_blob == 0 || e->e_state == MC_STATE_EMPTY)
		return false;
	blk = w->arena + e->e_blob;
	mcpcore__state_change__init(c);
	c->seq = e->e_version;
	c->version = e->e_version;
	c->mtime = e->e_mtime;
	c->expires_at = e->e_expires;
	c->ns.data = (uint8_t *)blk;
	c->ns.len = e->e_nslen;
	c->key.data = (uint8_t *)blk + e->e_nslen;
	c->key.len = e->e_keylen;
	if (e->e_state == MC_STATE_LIVE) {
		c->op = MCPCORE__STATE_CHANGE__OP__PUT;
		c->value.data = (uint8_t *)blk + e->e_nslen + e->e_keylen;
		c->value.len = e->e_vlen;
	} else {
		c->op = e->e_flags & MC_STATE_F_EXPIRED ? MCPCORE__STATE_CHANGE__OP__EXPIRE :
		    MCPCORE__STATE_CHANGE__OP__DELETE;
	}
	return true;
}

/* Subscribers that can still read; forget those that left. */
static uint64_t mc_state_subscribers(struct mc_worker *wk, struct mc_state_worker *sw)
{
	uint64_t mask = sw->w.ctl->sc_subscribers, live = 0;

	for (uint64_t m = mask; m; m &= m - 1) {
		unsigned s = (unsigned)__builtin_ctzll(m);

		if (s < wk->seg.hdr->sh_nslots &&
		    ck_pr_load_32(&wk->seg.slots[s].sl_state) == MC_SLOT_ATTACHED)
			live |= 1ULL << s;
	}
	if (live != mask)
		ck_pr_store_64(&sw->w.ctl->sc_subscribers, live);
	return live;
}

/*
 * Send queued changes: to the persistence worker first (it must get them:
 * on a full ring we stop and retry later), then to each subscriber (best
 * effort: a subscriber that does not keep up misses batches, counted and
 * logged, rather than holding up persistence).
 */
static void mc_state_feed_flush(struct mc_worker *wk, struct mc_state_worker *sw)
{
	static Mcpcore__StateChange changes[MC_FEED_BATCH];
	Mcpcore__StateChange *ptrs[MC_FEED_BATCH];
	uint64_t budget = wk->seg.hdr->sh_max_frame / 2;

	while (mc_state_feed_pending(&sw->w) > 0) {
		Mcpcore__StateChangeBatch batch = MCPCORE__STATE_CHANGE_BATCH__INIT;
		uint64_t pending = mc_state_feed_pending(&sw->w), used = 0, bytes = 0, subs;
		int rc;

		while (used < pending && batch.n_changes < MC_FEED_BATCH) {
			Mcpcore__StateChange *c = &changes[batch.n_changes];

			if (mc_state_change(&sw->w, mc_state_feed_peek(&sw->w, used), c)) {
				uint64_t sz = c->ns.len + c->key.len + c->value.len + 64;

				if (batch.n_changes > 0 && bytes + sz > budget)
					break;
				bytes += sz;
				ptrs[batch.n_changes++] = c;
			}
			used++;
		}
		batch.changes = ptrs;
		if (batch.n_changes > 0) {
			rc = mc_proto_send(&wk->seg, &batch.base, 1ULL << MC_WORKER_PERSISTENCE);
			if (rc == -EAGAIN)
				return;         /* persistence is behind: keep them queued */
			if (rc == -EPIPE && !sw->persistence_gone_logged) {
				sw->persistence_gone_logged = true;
				mc_log_error("state_feed_unpersisted", "{s:s}", "message",
				    "persistence worker failed: changes are not being persisted");
			} else if (rc == 0) {
				sw->persistence_gone_logged = false;
				sw->feed_frames++;
			}
			subs = mc_state_subscribers(wk, sw);
			for (uint64_t m = subs; m; m &= m - 1) {
				unsigned s = (unsigned)__builtin_ctzll(m);

				rc = mc_proto_send(&wk->seg, &batch.base, 1ULL << s);
				if (rc != 0 && rc != -EPIPE) {
					sw->feed_drops++;
					mc_log_warn("state_feed_dropped", "{s:i, s:i, s:s}", "subscriber",
					    (int)s, "changes", (int)batch.n_changes, "message",
					    "subscriber's ring is full: it missed a feed batch");
				}
			}
		}
		mc_state_feed_sent(&sw->w, used);
	}
}

static int mc_state_on_frame(struct mc_worker *wk, struct mc_msg *m, int *kept)
{
	struct mc_state_worker *sw = wk->ctx;
	int rc;

	*kept = 0;
	if (m->frame->f_kind != MC_FK_STATE_REQUEST) {
		mc_log_warn("state_unexpected_frame", "{s:i, s:i}", "src", (int)m->src, "kind",
		    (int)m->frame->f_kind);
		return -EPROTO;
	}
	rc = mc_state_request(wk, m);
	mc_state_feed_flush(wk, sw);
	return rc;
}

/*
 * Ticks come every time the rings run dry, which under a steady load is
 * between almost every pair of requests; the expiry sweep runs at most
 * every MC_SWEEP_PERIOD_NS of them so it costs the write path nothing
 * (reads never return an expired value, whether swept or not).
 */
static void mc_state_on_tick(struct mc_worker *wk)
{
	struct mc_state_worker *sw = wk->ctx;

	/* due or not by the loop's clock: the wall clock is read for a sweep only */
	if (wk->now_ns - sw->last_sweep >= MC_SWEEP_PERIOD_NS) {
		sw->last_sweep = wk->now_ns;
		mc_state_sweep(&sw->w, mc_wall_ns(), MC_SWEEP_BUDGET);
	}
	mc_state_feed_flush(wk, sw);
}

int mc_state_main(struct mc_worker *w)
{
	struct mc_state_worker sw = { 0 };
	char err[512];
	int rc = mc_state_writer_open(&w->seg, &sw.w, err, sizeof(err));

	if (rc) {
		mc_log_error("state_open_failed", "{s:s}", "message", err);
		return MC_CONFIG_EX;
	}
	mc_proto_arena_init(&sw.arena, MC_REQ_ARENA);
	w->ctx = &sw;
	w->on_frame = mc_state_on_frame;
	w->on_tick = mc_state_on_tick;
	mc_state_feed_flush(w, &sw);
	rc = mc_worker_run(w);
	mc_proto_arena_fini(&sw.arena);
	free(sw.vals);
	return rc;
}
