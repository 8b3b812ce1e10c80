/*
 * codec.c - pack protobuf-c messages into frames and back (mc_proto.h):
 * decoding onto the heap or into a bump arena (ARENA DECODING); the wire
 * scanner hot readers use.
 */
#include "mc_proto.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "mc_util.h"

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
	/* every tool call sends one of these two: no walk of the table for them */
	if (desc == &mcpcore__state_request__descriptor)
		return MC_FK_STATE_REQUEST;
	if (desc == &mcpcore__state_reply__descriptor)
		return MC_FK_STATE_REPLY;
	for (int k = 0; desc != NULL && k < MC_FK_COUNT; k++)
		if (mc_proto_kinds[k] == desc)
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

static ProtobufCMessage *mc_proto_decode(ProtobufCAllocator *al, const struct mc_frame *f)
{
	const ProtobufCMessageDescriptor *d = mc_proto_descriptor(f->f_kind);

	if (d == NULL)
		return NULL;
	return protobuf_c_message_unpack(d, al, f->f_len, f->f_data);
}

static void *mc_heap_alloc(void *data, size_t size)
{
	(void)data;
	return malloc(size);
}

static void mc_heap_free(void *data, void *p)
{
	(void)data;
	free(p);
}

/* What protobuf-c uses for a NULL allocator: free_unpacked(msg, NULL) pairs with it. */
static ProtobufCAllocator mc_heap = { .alloc = mc_heap_alloc, .free = mc_heap_free };

ProtobufCMessage *mc_proto_unpack(const struct mc_frame *f)
{
	return mc_proto_decode(&mc_heap, f);
}

/* ---- arena decoding (ARENA DECODING in mc_proto.h) ----------------------- */

/* What malloc guarantees: protobuf-c puts any type in what it is given. */
#define MC_ARENA_ALIGN _Alignof(max_align_t)

static bool mc_arena_owns(const struct mc_proto_arena *a, const void *p)
{
	uintptr_t b = (uintptr_t)a->pa_buf;

	return a->pa_buf != NULL && (uintptr_t)p - b < a->pa_size;
}

static void *mc_arena_alloc(void *data, size_t size)
{
	struct mc_proto_arena *a = data;
	size_t at = (a->pa_used + MC_ARENA_ALIGN - 1) & ~(size_t)(MC_ARENA_ALIGN - 1);
	void *p;

	if (size == 0)
		size = 1;   /* a distinct pointer inside the buffer, never one past it */
	if (a->pa_buf != NULL && at <= a->pa_size && size <= a->pa_size - at) {
		a->pa_used = at + size;
		return a->pa_buf + at;
	}
	p = malloc(size);
	if (p != NULL)
		a->pa_heap++;
	return p;
}

/* Arena parts go back all at once (mc_proto_free_in); heap parts now. */
static void mc_arena_free(void *data, void *p)
{
	struct mc_proto_arena *a = data;

	if (p == NULL || mc_arena_owns(a, p))
		return;
	free(p);
	a->pa_heap--;
}

void mc_proto_arena_init(struct mc_proto_arena *a, size_t size)
{
	memset(a, 0, sizeof(*a));
	a->pa_size = size;
}

void mc_proto_arena_fini(struct mc_proto_arena *a)
{
	free(a->pa_buf);
	mc_proto_arena_init(a, a->pa_size);
}

ProtobufCMessage *mc_proto_unpack_in(struct mc_proto_arena *a, const struct mc_frame *f)
{
	const ProtobufCMessageDescriptor *d = mc_proto_descriptor(f->f_kind);
	ProtobufCAllocator al = { .alloc = mc_arena_alloc, .free = mc_arena_free,
	    .allocator_data = a };
	ProtobufCMessage *m;
	size_t mark;

	if (d == NULL)
		return NULL;
	if (MC_UNLIKELY(a->pa_buf == NULL)) {
		/* first use; if malloc fails every part comes from the heap, and
		 * the next decode tries again */
		if (a->pa_size == 0)
			a->pa_size = MC_PROTO_ARENA_DEFAULT;
		a->pa_buf = malloc(a->pa_size);
	}
	mark = a->pa_used;
	m = mc_proto_decode(&al, f);
	if (m == NULL) {
		/* the decoder gave its heap parts back through mc_arena_free;
		 * what it bumped since the mark belongs to nobody */
		a->pa_used = mark;
		return NULL;
	}
	a->pa_live++;
	return m;
}

void mc_proto_free_in(struct mc_proto_arena *a, ProtobufCMessage *msg)
{
	if (msg == NULL)
		return;
	if (a->pa_heap > 0) {
		/* some message out has heap parts: walk this one and free its own
		 * (arena parts are skipped); without any, the walk is not needed */
		ProtobufCAllocator al = { .alloc = mc_arena_alloc, .free = mc_arena_free,
		    .allocator_data = a };

		protobuf_c_message_free_unpacked(msg, &al);
	}
	if (a->pa_live > 0 && --a->pa_live == 0)
		a->pa_used = 0;
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
