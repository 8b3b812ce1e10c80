/*
 * codec.c - pack protobuf-c messages into frames and back (mc_proto.h).
 */
#include "mc_proto.h"

#include <errno.h>
#include <string.h>

static const ProtobufCMessageDescriptor *const mc_proto_kinds[MC_FK_COUNT] = {
	[MC_FK_RAW] = NULL,
	[MC_FK_CONTROL] = &mcpcore__control__descriptor,
	[MC_FK_MCP] = &mcpcore__mcpmessage__descriptor,
	[MC_FK_LEARNING_DATA] = &mcpcore__learning_data__descriptor,
	[MC_FK_LEARNING_MODEL] = &mcpcore__learning_model__descriptor,
	[MC_FK_TRAINING_DATA] = &mcpcore__training_data__descriptor,
	[MC_FK_STATE_REQUEST] = &mcpcore__state_request__descriptor,
	[MC_FK_STATE_REPLY] = &mcpcore__state_reply__descriptor,
	[MC_FK_STATE_CHANGES] = &mcpcore__state_change_batch__descriptor,
	[MC_FK_METRICS_SNAPSHOT] = &mcpcore__metrics_snapshot__descriptor,
	[MC_FK_PERSIST_REQUEST] = &mcpcore__persist_request__descriptor,
	[MC_FK_PERSIST_REPLY] = &mcpcore__persist_reply__descriptor,
};

const ProtobufCMessageDescriptor *mc_proto_descriptor(uint16_t kind)
{
	return kind < MC_FK_COUNT ? mc_proto_kinds[kind] : NULL;
}

int mc_proto_kind(const ProtobufCMessageDescriptor *desc)
{
	for (int k = 0; k < MC_FK_COUNT; k++)
		if (desc != NULL && mc_proto_kinds[k] == desc)
			return k;
	return -1;
}

int mc_proto_send(struct mc_seg *seg, const ProtobufCMessage *msg, uint64_t dst_mask)
{
	return mc_proto_send_lane(seg, msg, dst_mask, MC_LANE_AUTO);
}

int mc_proto_send_lane(struct mc_seg *seg, const ProtobufCMessage *msg, uint64_t dst_mask,
    uint32_t lane)
{
	int kind = mc_proto_kind(msg->descriptor);
	size_t len = protobuf_c_message_get_packed_size(msg);
	struct mc_frame *f;
	int rc;

	if (kind < 0)
		return -EINVAL;
	if (len > UINT32_MAX)
		return -EMSGSIZE;
	f = mc_frame_alloc(seg, (uint32_t)len, (uint16_t)kind, &rc);
	if (f == NULL)
		return rc;
	protobuf_c_message_pack(msg, f->f_data);
	f->f_user = lane;
	rc = mc_frame_send(seg, f, dst_mask);
	if (rc)
		mc_frame_abort(seg, f);
	return rc;
}

ProtobufCMessage *mc_proto_unpack(const struct mc_frame *f)
{
	const ProtobufCMessageDescriptor *d = mc_proto_descriptor(f->f_kind);

	if (d == NULL)
		return NULL;
	return protobuf_c_message_unpack(d, NULL, f->f_len, f->f_data);
}

const char *mc_proto_meta(const Mcpcore__MCPMessage *m, const char *key)
{
	for (size_t i = 0; i < m->n_metadata; i++)
		if (strcmp(m->metadata[i]->key, key) == 0)
			return m->metadata[i]->value;
	return NULL;
}

/* ---- wire scanner -------------------------------------------------------- */

/* One varint at *pos: 0 and *pos moved, or -EBADMSG (truncated, > 10 bytes). */
static int mc_pb_varint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *v)
{
	uint64_t r = 0;

	for (unsigned shift = 0; shift < 70; shift += 7) {
		uint8_t b;

		if (*pos >= len)
			return -EBADMSG;
		b = buf[(*pos)++];
		r |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			*v = r;
			return 0;
		}
	}
	return -EBADMSG;
}

int mc_pb_next(const uint8_t *buf, size_t len, size_t *pos, struct mc_pb_field *out)
{
	uint64_t tag, v = 0;

	if (*pos >= len)
		return 0;
	if (mc_pb_varint(buf, len, pos, &tag))
		return -EBADMSG;
	out->wire = (uint32_t)(tag & 7);
	out->num = (uint32_t)(tag >> 3);
	out->ptr = NULL;
	out->len = 0;
	if (out->num == 0 || tag >> 3 > 0x1fffffff)
		return -EBADMSG;
	switch (out->wire) {
	case 0:
		if (mc_pb_varint(buf, len, pos, &v))
			return -EBADMSG;
		break;
	case 1:         /* fixed64 */
	case 5: {       /* fixed32 */
		size_t w = out->wire == 1 ? 8 : 4;

		if (len - *pos < w)
			return -EBADMSG;
		for (size_t i = w; i-- > 0;)
			v = (v << 8) | buf[*pos + i];     /* little-endian */
		*pos += w;
		break;
	}
	case 2:
		if (mc_pb_varint(buf, len, pos, &v) || v > len - *pos)
			return -EBADMSG;
		out->ptr = buf + *pos;
		out->len = (size_t)v;
		*pos += out->len;
		break;
	default:
		return -EBADMSG;   /* groups (3, 4) are not proto3; 6, 7 do not exist */
	}
	out->u64 = v;
	return 1;
}

int mc_pb_scan(const uint8_t *buf, size_t len, uint32_t field, struct mc_pb_field *out)
{
	struct mc_pb_field f;
	size_t pos = 0;
	int found = 0, rc;

	while ((rc = mc_pb_next(buf, len, &pos, &f)) == 1) {
		if (field == 0 || f.num != field)
			continue;
		if (out != NULL)
			*out = f;
		found = 1;
	}
	return rc < 0 ? rc : found;
}
