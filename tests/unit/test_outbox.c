/*
 * test_outbox.c - unit tests for the protocol worker's frames to the
 * router (workers/protocol/outbox.c, contract in mc_protocol.h): records
 * go out at once with their lane and metadata; when the router's ring or
 * our pool is full they queue and a flush sends them in order; the outbox
 * says busy above its high-water mark until it drains below the low one,
 * refuses past its bound, and says -EPIPE once the router has failed.
 *
 * This process holds both ends of a private segment ("utoutbox-<pid>-<n>"
 * on config/test.toml): the protocol slot (the outbox's) and the router
 * slot, whose ring it reads to play the router.
 */
#include <criterion/criterion.h>

#include <ck_pr.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_config.h"
#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_proto.h"
#include "mc_protocol.h"
#include "mc_seg.h"
#include "ut.h"

static struct mc_config cfg;
static struct mc_layout lay;
static struct mc_seg sup, pw, rt;
static struct mc_outbox *ob;

static void setup(void)
{
	ut_guard_start("outbox");
	ut_seg_create(&sup, &cfg, &lay);
	ut_worker(&pw, cfg.instance, MC_WORKER_PROTOCOL);
	ut_worker(&rt, cfg.instance, MC_WORKER_ROUTER);
	cr_assert_eq(mc_outbox_create(&ob, &pw, MC_WORKER_ROUTER), 0);
}

static void teardown(void)
{
	mc_outbox_destroy(ob);
	mc_seg_detach(&rt);
	mc_seg_detach(&pw);
	mc_seg_destroy(&sup);
	ut_fini();
}

TestSuite(outbox, .init = setup, .fini = teardown, .timeout = 120);

/* Record number i with a payload of `size` bytes ("<i>:" then filler). */
static int record(unsigned i, size_t size, uint32_t lane)
{
	static char payload[200000];
	char corr[MC_CORR_LEN + 1];
	struct mc_record rec = { .type = "tools/call", .payload = payload, .timestamp = 1,
		.corr = corr, .session = "", .reply = "response", .outcome = "ok",
		.latency_ns = NULL, .lane = lane };
	int n = snprintf(payload, sizeof(payload), "%u:", i);

	cr_assert_lt(size, sizeof(payload));
	memset(payload + n, 'x', size > (size_t)n ? size - (size_t)n : 0);
	rec.len = size > (size_t)n ? size : (size_t)n;
	mc_outbox_correlation(ob, corr);
	return mc_outbox_record(ob, &rec);
}

/* Take one frame as the router would: its record number, lane and metadata
 * keys checked; -1 when the ring is empty. */
static long take(void)
{
	Mcpcore__MCPMessage *msg;
	struct mc_msg m;
	long i;

	if (mc_recv(&rt, &m) != 0)
		return -1;
	cr_assert_eq(m.frame->f_kind, MC_FK_MCP);
	cr_assert_eq(m.frame->f_src, MC_WORKER_PROTOCOL);
	msg = (Mcpcore__MCPMessage *)mc_proto_unpack(m.frame);
	cr_assert_not_null(msg);
	cr_assert_str_eq(msg->message_type, "tools/call");
	/* a NULL or empty value is left out: session and latency_ns here */
	cr_assert_eq(msg->n_metadata, 3);
	cr_assert_str_eq(msg->metadata[0]->key, "correlation_id");
	cr_assert_eq(strlen(msg->metadata[0]->value), MC_CORR_LEN);
	cr_assert_str_eq(mc_proto_meta(msg, "outcome"), "ok");
	cr_assert_null(mc_proto_meta(msg, "session"));
	i = strtol((const char *)msg->payload.data, NULL, 10);
	cr_assert_eq(m.frame->f_user, (uint32_t)(i % 2 ? MC_LANE_BULK : MC_LANE_TOOL));
	protobuf_c_message_free_unpacked(&msg->base, NULL);
	mc_frame_release(&rt, &m);
	return i;
}

static uint32_t lane_of(unsigned i)
{
	return i % 2 ? MC_LANE_BULK : MC_LANE_TOOL;
}

Test(outbox, records_go_out_at_once_with_lane_and_metadata)
{
	for (unsigned i = 0; i < 10; i++)
		cr_assert_eq(record(i, 64, lane_of(i)), 0);
	cr_assert_eq(mc_outbox_queued(ob), 0, "room everywhere: nothing waits");
	for (long i = 0; i < 10; i++)
		cr_assert_eq(take(), i);
	cr_assert_eq(take(), -1);
}

Test(outbox, a_full_ring_queues_and_a_flush_keeps_the_order)
{
	unsigned sent = 0, queued;
	long next = 0, got;

	/* nobody reads: the ring (or our pool) fills, then records queue */
	while (mc_outbox_queued(ob) < 100) {
		cr_assert_eq(record(sent, 100, lane_of(sent)), 0);
		sent++;
		cr_assert_lt(sent, 1000000u, "the outbox never queued");
	}
	queued = (unsigned)mc_outbox_queued(ob);
	cr_assert_eq(mc_outbox_flush(ob), queued, "still no room: still queued");
	/* a record made while others wait goes behind them, not ahead */
	cr_assert_eq(record(sent, 100, lane_of(sent)), 0);
	sent++;
	cr_assert_eq(mc_outbox_queued(ob), queued + 1);
	while (next < (long)sent) {
		while ((got = take()) >= 0)
			cr_assert_eq(got, next++, "record %ld came as number %ld", next, got);
		mc_outbox_flush(ob);
	}
	cr_assert_eq(mc_outbox_queued(ob), 0);
	cr_assert_eq(take(), -1);
}

Test(outbox, busy_above_the_high_mark_until_below_the_low_and_refused_at_the_bound)
{
	unsigned sent = 0;
	long next = 0;
	int rc = 0;

	while (!mc_outbox_busy(ob)) {
		cr_assert_eq(record(sent, 150000, lane_of(sent)), 0);
		sent++;
	}
	/* 8 MiB queued: busy, but still taking records up to the 64 MiB bound */
	cr_assert_gt(mc_outbox_queued(ob), 8u * 1024 * 1024 / 150000 - 1);
	while (rc == 0) {
		rc = record(sent, 150000, lane_of(sent));
		if (rc == 0)
			sent++;
	}
	cr_assert_eq(rc, -ENOBUFS, "past the bound a record is refused, not dropped");
	cr_assert_gt(mc_outbox_queued(ob), 64u * 1024 * 1024 / 150000 - 2);
	/* drain: busy until fewer than 1 MiB wait */
	while (mc_outbox_busy(ob)) {
		long got = take();

		if (got >= 0)
			cr_assert_eq(got, next++);
		mc_outbox_flush(ob);
	}
	cr_assert_lt(mc_outbox_queued(ob) * 150000, 1024u * 1024 + 150000);
	while (next < (long)sent) {
		long got = take();

		if (got >= 0)
			cr_assert_eq(got, next++);
		mc_outbox_flush(ob);
	}
	cr_assert_eq(take(), -1);
}

Test(outbox, too_large_and_router_failed_are_errors)
{
	cr_assert_eq(record(0, 64, MC_LANE_TOOL), 0);
	cr_assert_eq(take(), 0);
	{
		/* larger than a frame may be (test.toml: 256 KiB) */
		static char big[300000];
		struct mc_record rec = { .type = "x", .payload = big, .len = sizeof(big),
			.corr = "0000000000000000", .lane = MC_LANE_TOOL };

		cr_assert_eq(mc_outbox_record(ob, &rec), -EMSGSIZE);
	}
	ck_pr_store_32(&sup.slots[MC_WORKER_ROUTER].sl_state, MC_SLOT_FAILED);
	cr_assert_eq(record(1, 64, MC_LANE_TOOL), -EPIPE);
	cr_assert_eq(mc_outbox_queued(ob), 0, "nothing is kept for a router that failed");
}

Test(outbox, correlation_ids_are_16_hex_digits_and_count)
{
	char a[MC_CORR_LEN + 1], b[MC_CORR_LEN + 1];

	mc_outbox_correlation(ob, a);
	mc_outbox_correlation(ob, b);
	cr_assert_eq(strlen(a), MC_CORR_LEN);
	cr_assert_eq(strspn(a, "0123456789abcdef"), MC_CORR_LEN);
	cr_assert_eq(strtoull(b, NULL, 16), strtoull(a, NULL, 16) + 1);
}
