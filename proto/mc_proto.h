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
 */
ProtobufCMessage *mc_proto_unpack(const struct mc_frame *f);

/* The value of metadata key `key` of an MCPMessage, or NULL (borrowed). */
const char *mc_proto_meta(const Mcpcore__MCPMessage *m, const char *key);

#endif /* MC_PROTO_H */
