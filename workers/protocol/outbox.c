/*
 * outbox.c - the protocol worker's frames to the router, in order, never
 * dropped (contract in mc_protocol.h, "outbox.c").
 *
 * A message goes straight into a frame when nothing is queued and the
 * router's ring and our pool have room.  Otherwise it is packed into a
 * heap copy at the tail of a FIFO, and mc_outbox_flush moves the FIFO
 * into frames as room appears.  Because a message never overtakes one
 * queued before it, each sender's state requests reach the state worker in
 * the order they were made, which its duplicate check relies on.
 *
 * The FIFO is bounded by MC_OUTBOX_MAX_BYTES of packed messages; above
 * MC_OUTBOX_HIGH bytes the outbox says it is busy and the server takes no
 * new requests off its sockets until it drains below MC_OUTBOX_LOW (TCP
 * back-pressure to the clients).  Only when even the bound is reached is a
 * message refused (-ENOBUFS), and the caller answers "server busy".
 */
#include "mc_protocol.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "mc_frame.h"
#include "mc_log.h"
#include "mc_util.h"

#define MC_OUTBOX_MAX_BYTES (64u << 20)
#define MC_OUTBOX_HIGH      (8u << 20)
#define MC_OUTBOX_LOW       (1u << 20)

struct mc_outmsg {
	struct mc_outmsg *next;
	uint16_t kind;
	uint32_t lane;
	uint32_t len;
	uint8_t data[];
};

struct mc_outbox {
	struct mc_seg *seg;
	unsigned dst;
	struct mc_outmsg *head, *tail;
	size_t bytes;                   /* packed bytes queued */
	size_t n;
	bool busy;
	uint64_t next_corr;
};

int mc_outbox_create(struct mc_outbox **out, struct mc_seg *seg, unsigned dst)
{
	struct mc_outbox *ob = calloc(1, sizeof(*ob));
	uint64_t base;

	if (ob == NULL)
		return -ENOMEM;
	ob->seg = seg;
	ob->dst = dst;
	/* correlation ids: a random start, so ids of different runs and of
	 * restarted workers do not collide in the logs or the message store */
	if (getrandom(&base, sizeof(base), 0) != (ssize_t)sizeof(base))
		base = mc_wall_ns() ^ ((uint64_t)seg->generation << 48);
	ob->next_corr = base;
	*out = ob;
	return 0;
}

void mc_outbox_destroy(struct mc_outbox *ob)
{
	if (ob == NULL)
		return;
	while (ob->head != NULL) {
		struct mc_outmsg *m = ob->head;

		ob->head = m->next;
		free(m);
	}
	free(ob);
}

void mc_outbox_correlation(struct mc_outbox *ob, char out[MC_CORR_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint64_t v = ob->next_corr++;

	/* by hand: one per message, and snprintf's format parsing showed */
	for (int i = 15; i >= 0; i--, v >>= 4)
		out[i] = hex[v & 15];
	out[16] = '\0';
}

/* A message into a frame now, packed from msg or copied from a queued
 * one's bytes: 0, or -EAGAIN (no room) / another error of the send.
 * len is its packed size, already known to every caller. */
static int mc_outbox_put(struct mc_outbox *ob, uint16_t kind, uint32_t len, uint32_t lane,
    const ProtobufCMessage *msg, const uint8_t *bytes)
{
	struct mc_frame *f;
	int rc;

	f = mc_frame_alloc(ob->seg, len, kind, &rc);
	if (f == NULL)
		return rc;
	if (msg != NULL)
		protobuf_c_message_pack(msg, f->f_data);
	else
		memcpy(f->f_data, bytes, len);
	f->f_user = lane;
	rc = mc_frame_send(ob->seg, f, 1ULL << ob->dst);
	if (rc)
		mc_frame_abort(ob->seg, f);
	return rc;
}

int mc_outbox_send(struct mc_outbox *ob, const ProtobufCMessage *msg, uint32_t lane)
{
	int kind = mc_proto_kind(msg->descriptor);
	size_t len = protobuf_c_message_get_packed_size(msg);
	struct mc_outmsg *m;
	int rc;

	if (kind < 0 || len > ob->seg->hdr->sh_max_frame)
		return -EMSGSIZE;
	if (ob->head == NULL) {
		rc = mc_outbox_put(ob, (uint16_t)kind, (uint32_t)len, lane, msg, NULL);
		if (rc != -EAGAIN)
			return rc;
	}
	if (ob->bytes + len > MC_OUTBOX_MAX_BYTES)
		return -ENOBUFS;
	m = malloc(sizeof(*m) + len);
	if (m == NULL)
		return -ENOMEM;
	m->next = NULL;
	m->kind = (uint16_t)kind;
	m->lane = lane;
	m->len = (uint32_t)len;
	protobuf_c_message_pack(msg, m->data);
	if (ob->tail != NULL)
		ob->tail->next = m;
	else
		ob->head = m;
	ob->tail = m;
	ob->bytes += len;
	ob->n++;
	if (!ob->busy && ob->bytes > MC_OUTBOX_HIGH) {
		ob->busy = true;
		mc_log_warn("protocol_backpressure", "{s:I, s:I, s:s}", "queued", (json_int_t)ob->n,
		    "bytes", (json_int_t)ob->bytes, "message",
		    "the router is not keeping up: new requests wait until it drains");
	}
	return 0;
}

size_t mc_outbox_flush(struct mc_outbox *ob)
{
	while (ob->head != NULL) {
		struct mc_outmsg *m = ob->head;
		int rc = mc_outbox_put(ob, m->kind, m->len, m->lane, NULL, m->data);

		if (rc == -EAGAIN)
			break;
		if (rc)
			mc_log_error("protocol_outbox_send_failed", "{s:i, s:s}", "kind", (int)m->kind,
			    "error", mc_strerror(rc));
		ob->head = m->next;
		if (ob->head == NULL)
			ob->tail = NULL;
		ob->bytes -= m->len;
		ob->n--;
		free(m);
	}
	if (ob->busy && ob->bytes < MC_OUTBOX_LOW) {
		ob->busy = false;
		mc_log_info("protocol_backpressure_end", "{s:I}", "queued", (json_int_t)ob->n);
	}
	return ob->n;
}

bool mc_outbox_busy(const struct mc_outbox *ob)
{
	return ob->busy;
}

size_t mc_outbox_queued(const struct mc_outbox *ob)
{
	return ob->n;
}

int mc_outbox_record(struct mc_outbox *ob, const struct mc_record *rec)
{
	Mcpcore__MCPMessage msg = MCPCORE__MCPMESSAGE__INIT;
	Mcpcore__MCPMessage__MetadataEntry ent[5], *ents[5];
	const char *keys[5] = { "correlation_id", "session", "reply", "outcome", "latency_ns" };
	const char *vals[5] = { rec->corr, rec->session, rec->reply, rec->outcome,
		rec->latency_ns };
	size_t n = 0;

	for (size_t i = 0; i < 5; i++) {
		if (vals[i] == NULL || vals[i][0] == '\0')
			continue;
		mcpcore__mcpmessage__metadata_entry__init(&ent[n]);
		ent[n].key = (char *)keys[i];
		ent[n].value = (char *)vals[i];
		ents[n] = &ent[n];
		n++;
	}
	msg.timestamp = rec->timestamp ? rec->timestamp : mc_wall_ns();
	msg.message_type = (char *)rec->type;
	msg.payload.data = (uint8_t *)rec->payload;
	msg.payload.len = rec->len;
	msg.n_metadata = n;
	msg.metadata = ents;
	return mc_outbox_send(ob, &msg.base, rec->lane);
}
