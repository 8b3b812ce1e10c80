/*
 * mc_state_client.h - writing to the state manager from any process that
 * holds a slot (a worker or a client): requests in frames to the state
 * worker, answered by reply frames.  (Reads need none of this: mc_state_get
 * reads shared memory directly.)
 *
 * Pipelining: add ops to a batch, send it as one StateRequest frame, keep
 * sending more batches, and match StateReply results to ops by id as they
 * come back.  An op is acknowledged when its result arrives: from then on
 * it is in the table and survives a crash of the state worker.  Results
 * of one sender's frames come back in the order they were sent.
 *
 * Threads: one thread per struct mc_seg (as for all of mc_frame.h).
 */
#ifndef MC_STATE_CLIENT_H
#define MC_STATE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "mc_proto.h"
#include "mc_seg.h"

#define MC_STATE_BATCH_MAX 256

/* One op to send.  The bytes are referenced until the batch is sent. */
struct mc_state_req {
	Mcpcore__StateOp__Kind kind;
	const void *ns;
	size_t nslen;
	const void *key;
	size_t klen;
	const void *value;
	size_t vlen;
	uint64_t expected_version;      /* CAS (0: the key must not exist) */
	int64_t delta;                  /* INCR */
	uint64_t ttl_ms;                /* 0: never expires */
	const char *correlation_id;     /* NULL or text carried into logs */
};

struct mc_state_batch {
	Mcpcore__StateOp ops[MC_STATE_BATCH_MAX];
	Mcpcore__StateOp *ptrs[MC_STATE_BATCH_MAX];
	size_t n;
	size_t bytes;                   /* estimate of the packed size */
	uint64_t next_id;               /* ids handed out, from 1 */
};

void mc_state_batch_init(struct mc_state_batch *b);

/*
 * Add an op.  Returns its id (> 0), -E2BIG when the batch is full (send
 * it first), or -EINVAL / -EMSGSIZE for sizes beyond [state] bounds.
 */
int64_t mc_state_batch_add(const struct mc_seg *seg, struct mc_state_batch *b,
    const struct mc_state_req *r);

/*
 * Send the batch as one frame to the state worker and empty it.  -EAGAIN:
 * back-pressure (the batch is kept: try again); -EPIPE: the state worker
 * has failed; other errors as mc_frame_send.
 */
int mc_state_batch_send(struct mc_seg *seg, struct mc_state_batch *b);

/*
 * The same through slot `via` (the router: MC_WORKER_ROUTER), which
 * forwards it to the state worker; the reply still comes straight back.
 * A sender sends all its requests one way or the other, never both: the
 * state worker relies on seeing each sender's frames in order.
 */
int mc_state_batch_send_via(struct mc_seg *seg, struct mc_state_batch *b, unsigned via);

/* The result of one op, as the state worker reported it. */
struct mc_state_res {
	Mcpcore__StateResult__Status status;
	uint64_t version;
	char value[24];                 /* INCR: the new value */
	char error[128];
};

/*
 * Send one op and wait for its result (spin briefly, then sleep on the
 * doorbell).  Meant for processes that expect no other frames meanwhile
 * (the CLI): anything else that arrives is released unread and logged.
 * Returns 0 (see out->status), -ETIMEDOUT, or an error of batch_send.
 */
int mc_state_call(struct mc_seg *seg, const struct mc_state_req *r, struct mc_state_res *out,
    uint64_t timeout_ns);

#endif /* MC_STATE_CLIENT_H */
