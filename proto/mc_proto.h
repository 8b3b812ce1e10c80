/*
 * mc_proto.h - protobuf-c messages in frames: kinds, pack, unpack.
 *
 * A frame's payload is exactly one serialised message of mcpcore.proto;
 * f_kind says which.  mc_proto_send() serialises straight into a freshly
 * allocated frame (the bytes are written once, in shared memory) and sends
 * it; mc_proto_unpack() decodes a received frame.
 */
#ifndef MC_PROTO_H
#define MC_PROTO_H

#include <protobuf-c/protobuf-c.h>

#include "mc_frame.h"
#include "mcpcore.pb-c.h"
#include "state.pb-c.h"
#include "metrics.pb-c.h"
#include "persist.pb-c.h"
/* each module's own schema, see the ranges below */

/*
 * Frame kinds.  Numbers are forever (they are in frames in shared memory
 * and in stored records).  Ranges: 0-9 runtime (mcpcore.proto), 10-19 state
 * manager (state.proto), 20-29 persistence (persist.proto), 30-39 metrics
 * (metrics.proto), 40-49 MCP front door and router.
 */
enum mc_frame_kind {
	MC_FK_RAW = 0,            /* opaque bytes (benchmarks, tests) */
	MC_FK_CONTROL = 1,        /* Mcpcore__Control */
	MC_FK_MCP = 2,            /* Mcpcore__MCPMessage */
	MC_FK_LEARNING_DATA = 3,  /* Mcpcore__LearningData */
	MC_FK_LEARNING_MODEL = 4, /* Mcpcore__LearningModel */
	MC_FK_TRAINING_DATA = 5,  /* Mcpcore__TrainingData */
	MC_FK_STATE_REQUEST = 10, /* Mcpcore__StateRequest (state.proto) */
	MC_FK_STATE_REPLY = 11,   /* Mcpcore__StateReply */
	MC_FK_STATE_CHANGES = 12, /* Mcpcore__StateChangeBatch: the change feed */
	MC_FK_PERSIST_REQUEST = 20, /* Mcpcore__PersistRequest (persist.proto) */
	MC_FK_PERSIST_REPLY = 21,   /* Mcpcore__PersistReply */
	MC_FK_METRICS_SNAPSHOT = 30, /* Mcpcore__MetricsSnapshot (metrics.proto): monitor -> persistence */
	MC_FK_COUNT = 64
};

/*
 * Kinds nobody waits for (a bit per kind): copies of MCP messages, learning
 * and training data, metrics snapshots.  Their consumers may take them up
 * to one nap later, in batches (LAZY FRAMES in shm/mc_ring.h); every other
 * kind wakes its consumer at once.
 */
#define MC_FK_LAZY_MASK ((1ull << MC_FK_MCP) | (1ull << MC_FK_LEARNING_DATA) | \
	(1ull << MC_FK_TRAINING_DATA) | (1ull << MC_FK_METRICS_SNAPSHOT))

static inline bool mc_proto_kind_lazy(uint16_t kind)
{
	return kind < MC_FK_COUNT && ((MC_FK_LAZY_MASK >> kind) & 1);
}

/*
 * The protobuf wire scanner: fields of a serialised message read where
 * they lie, without decoding it (no allocation, no copy).  For hot paths
 * that need a field or two of every frame (the store's keys, the
 * monitor's counts).  Any thread.
 *
 * A field: its number, its wire type, and its value: wire 0 (varint) and
 * 1/5 (fixed) in u64; wire 2 (length-delimited) as ptr/len into the
 * message (an embedded message can be scanned in turn).
 */
struct mc_pb_field {
	uint32_t num;
	uint32_t wire;
	uint64_t u64;
	const uint8_t *ptr;
	size_t len;
};

/*
 * The top-level field of buf[len] that starts at *pos, which then moves
 * past it.  Returns 1 (*out filled), 0 at the end, or -EBADMSG when the
 * bytes are not well formed there (truncated varint or length, field
 * number 0, groups, unknown wire type).  Start with *pos = 0.
 */
int mc_pb_next(const uint8_t *buf, size_t len, size_t *pos, struct mc_pb_field *out);

/*
 * Walk every top-level field of buf[len] and return the last occurrence
 * of field number `field` (protobuf's rule for scalars) in *out (may be
 * NULL).  Returns 1 found, 0 absent, -EBADMSG as mc_pb_next.  A field
 * number of 0 just validates.
 */
int mc_pb_scan(const uint8_t *buf, size_t len, uint32_t field, struct mc_pb_field *out);

/* Descriptor for a kind, or NULL for RAW / unknown kinds. */
const ProtobufCMessageDescriptor *mc_proto_descriptor(uint16_t kind);

/* Kind for a message descriptor, or -1. */
int mc_proto_kind(const ProtobufCMessageDescriptor *desc);

/*
 * Serialise `msg` into a new frame and send it to dst_mask.  Errors as
 * mc_frame_alloc / mc_frame_send (-EMSGSIZE, -EAGAIN, -EPIPE, -EINVAL);
 * on failure nothing stays allocated.
 */
int mc_proto_send(struct mc_seg *seg, const ProtobufCMessage *msg, uint64_t dst_mask);

/*
 * Lanes of the router (workers/router/mc_router.h), carried in a frame's
 * f_user: the router forwards what it holds lane by lane, CONTROL before
 * TOOL before BULK.  AUTO (0, every frame's default) lets the router pick
 * by kind.  State requests always travel in the TOOL lane whatever they
 * ask: one FIFO lane keeps each sender's writes in the order it sent them.
 */
enum mc_lane {
	MC_LANE_AUTO = 0,
	MC_LANE_CONTROL = 1,      /* lifecycle (initialize, ping, ...) and Control */
	MC_LANE_TOOL = 2,         /* tool calls and other requests, state requests */
	MC_LANE_BULK = 3,         /* notifications, responses, learning data */
};
#define MC_LANES 3

/* mc_proto_send with the frame's f_user set to `lane` (enum mc_lane). */
int mc_proto_send_lane(struct mc_seg *seg, const ProtobufCMessage *msg, uint64_t dst_mask,
    uint32_t lane);

/*
 * Decode a received frame as the message its kind names.  Returns NULL if
 * the kind is unknown or the bytes do not parse (a bad frame is an input
 * error, reported by the caller).  Free with protobuf_c_message_free_unpacked.
 * Hot paths decode into an arena instead (mc_proto_unpack_in).
 */
ProtobufCMessage *mc_proto_unpack(const struct mc_frame *f);

/*
 * ARENA DECODING
 * protobuf-c allocates every submessage, repeated-field array, string and
 * bytes value of a decoded message on its own, and frees them one by one:
 * a one-op StateRequest is six malloc/free pairs, which cost more than
 * parsing it.  An arena serves those parts from one buffer with a bump
 * pointer; giving a message back frees nothing part by part, and the
 * buffer is reused from its start once every message decoded into it has
 * been given back.
 *
 * Ownership: the arena owns its buffer (malloc'd at the first decode,
 * pa_size bytes; mc_proto_arena_fini frees it).  A message from
 * mc_proto_unpack_in(a, f) belongs to arena a: it stays valid until it is
 * given back with mc_proto_free_in(a, msg), which must happen exactly once
 * and never through protobuf_c_message_free_unpacked (whose default
 * allocator would free() arena memory).  Messages may be out several at a
 * time, in any order.  The decoded message never points into the frame: it
 * outlives the frame's release.
 *
 * Size: a part that does not fit in what is left of the buffer comes from
 * the heap, so a message of any size decodes (only slower), and
 * mc_proto_free_in frees those parts.  Pick pa_size for the common message
 * of the caller (a one-op request needs ~300 bytes).
 *
 * Threads: no locks; an arena is used by one thread at a time (a worker
 * keeps one for its loop).  All-zero is a valid arena of the default size.
 */
#define MC_PROTO_ARENA_DEFAULT (16u * 1024u)

struct mc_proto_arena {
	uint8_t *pa_buf;        /* NULL until the first decode (or if its malloc failed) */
	size_t   pa_size;       /* bytes of pa_buf; 0: MC_PROTO_ARENA_DEFAULT */
	size_t   pa_used;       /* bump offset into pa_buf */
	uint32_t pa_live;       /* messages decoded and not given back yet */
	uint32_t pa_heap;       /* parts of those messages that live on the heap */
};

/* An empty arena whose buffer will be `size` bytes (0: the default).
 * Allocates nothing yet. */
void mc_proto_arena_init(struct mc_proto_arena *a, size_t size);

/* Free the buffer.  Every message decoded into it must have been given back. */
void mc_proto_arena_fini(struct mc_proto_arena *a);

/* mc_proto_unpack, into arena a: NULL for an unknown kind or bytes that
 * do not parse (then nothing of it stays allocated). */
ProtobufCMessage *mc_proto_unpack_in(struct mc_proto_arena *a, const struct mc_frame *f);

/* Give back a message of mc_proto_unpack_in(a, ...) (NULL: nothing). */
void mc_proto_free_in(struct mc_proto_arena *a, ProtobufCMessage *msg);

/* The value of metadata key `key` of an MCPMessage, or NULL (borrowed). */
const char *mc_proto_meta(const Mcpcore__MCPMessage *m, const char *key);

#endif /* MC_PROTO_H */
