/*
 * state_client.c - StateRequest batches and a synchronous call
 * (contract in mc_state_client.h).
 */
#include "mc_state_client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_log.h"
#include "mc_ring.h"
#include "mc_util.h"

void mc_state_batch_init(struct mc_state_batch *b)
{
	b->n = 0;
	b->bytes = 16;
	if (b->next_id == 0)
		b->next_id = 1;
}

int64_t mc_state_batch_add(const struct mc_seg *seg, struct mc_state_batch *b,
    const struct mc_state_req *r)
{
	const struct mc_config *cfg = &seg->hdr->sh_config;
	size_t sz = r->nslen + r->klen + r->vlen + 64 +
	    (r->correlation_id ? strlen(r->correlation_id) : 0);
	Mcpcore__StateOp *op;

	if (r->kind != MCPCORE__STATE_OP__KIND__SUBSCRIBE &&
	    r->kind != MCPCORE__STATE_OP__KIND__UNSUBSCRIBE && (r->nslen == 0 || r->klen == 0))
		return -EINVAL;
	if (r->nslen > cfg->state_max_key_size || r->klen > cfg->state_max_key_size ||
	    r->vlen > cfg->state_max_value_size)
		return -EMSGSIZE;
	if (b->n == MC_STATE_BATCH_MAX || (b->n > 0 && b->bytes + sz > seg->hdr->sh_max_frame))
		return -E2BIG;
	op = &b->ops[b->n];
	mcpcore__state_op__init(op);
	op->kind = r->kind;
	op->id = b->next_id++;
	op->ns.data = (uint8_t *)r->ns;
	op->ns.len = r->nslen;
	op->key.data = (uint8_t *)r->key;
	op->key.len = r->klen;
	op->value.data = (uint8_t *)r->value;
	op->value.len = r->vlen;
	op->expected_version = r->expected_version;
	op->delta = r->delta;
	op->ttl_ms = r->ttl_ms;
	if (r->correlation_id)
		op->correlation_id = (char *)r->correlation_id;
	b->ptrs[b->n++] = op;
	b->bytes += sz;
	return (int64_t)op->id;
}

int mc_state_batch_send(struct mc_seg *seg, struct mc_state_batch *b)
{
	return mc_state_batch_send_via(seg, b, MC_WORKER_STATE);
}

int mc_state_batch_send_via(struct mc_seg *seg, struct mc_state_batch *b, unsigned via)
{
	Mcpcore__StateRequest req = MCPCORE__STATE_REQUEST__INIT;
	int rc;

	if (b->n == 0)
		return 0;
	req.n_ops = b->n;
	req.ops = b->ptrs;
	rc = mc_proto_send_lane(seg, &req.base, 1ULL << via, MC_LANE_TOOL);
	if (rc == 0)
		mc_state_batch_init(b);
	return rc;
}

/* Copy the result for `id` out of a reply frame; 1 if it was there. */
static int mc_state_take_result(const struct mc_frame *f, uint64_t id, struct mc_state_res *out)
{
	Mcpcore__StateReply *rep = (Mcpcore__StateReply *)mc_proto_unpack(f);
	int found = 0;

	if (rep == NULL)
		return 0;
	for (size_t i = 0; i < rep->n_results && !found; i++) {
		const Mcpcore__StateResult *r = rep->results[i];

		if (r->id != id)
			continue;
		found = 1;
		out->status = r->status;
		out->version = r->version;
		snprintf(out->value, sizeof(out->value), "%.*s",
		    (int)(r->value.len < sizeof(out->value) ? r->value.len : sizeof(out->value) - 1),
		    (const char *)r->value.data);
		snprintf(out->error, sizeof(out->error), "%s", r->error ? r->error : "");
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return found;
}

int mc_state_call(struct mc_seg *seg, const struct mc_state_req *r, struct mc_state_res *out,
    uint64_t timeout_ns)
{
	struct mc_state_batch b = { .next_id = 0 };
	uint64_t end = mc_now_ns() + timeout_ns, id;
	int64_t added;
	int rc;

	mc_state_batch_init(&b);
	b.next_id = mc_now_ns();            /* ids unique across calls of this process */
	added = mc_state_batch_add(seg, &b, r);
	if (added < 0)
		return (int)added;
	id = (uint64_t)added;
	while ((rc = mc_state_batch_send(seg, &b)) == -EAGAIN) {
		if (mc_now_ns() >= end)
			return -ETIMEDOUT;
		mc_ring_wait(seg, 20000, 1000000);
	}
	if (rc)
		return rc;
	while (mc_now_ns() < end) {
		struct mc_msg m;

		if (mc_recv(seg, &m) != 0) {
			mc_ring_wait(seg, 20000, end - mc_now_ns());
			continue;
		}
		if (m.src == MC_WORKER_STATE && m.frame->f_kind == MC_FK_STATE_REPLY &&
		    mc_state_take_result(m.frame, id, out)) {
			mc_frame_release(seg, &m);
			return 0;
		}
		mc_log_warn("state_call_ignored_frame", "{s:i, s:i}", "src", (int)m.src, "kind",
		    (int)m.frame->f_kind);
		mc_frame_release(seg, &m);
	}
	return -ETIMEDOUT;
}
