/*
 * test_state_main.c - unit tests for the state worker's request handling
 * (workers/state/main.c): what a GET answers inside a request that also
 * writes, requests beyond the small-request fast path, values with a TTL.
 *
 * The worker runs for real (mc_state_main on the common loop) in a forked
 * child that claims the state slot of a private segment ("utsmain-<pid>-<n>"
 * on config/test.toml); this process sends StateRequest frames from the
 * router's slot, as the router forwards them, and reads the replies.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <ck_pr.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mc_config.h"
#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_log.h"
#include "mc_proto.h"
#include "mc_ring.h"
#include "mc_seg.h"
#include "mc_state_client.h"
#include "mc_util.h"
#include "mc_worker.h"
#include "ut.h"

#define ME MC_WORKER_ROUTER

static struct mc_config cfg;
static struct mc_layout lay;
static struct mc_seg sup, me;
static pid_t worker = -1;

static void up(void)
{
	ut_guard_start("smain");
	ut_seg_create(&sup, &cfg, &lay);
	/* nobody takes the change feed here: the worker must not wait for it */
	ck_pr_store_32(&sup.slots[MC_WORKER_PERSISTENCE].sl_state, MC_SLOT_STOPPED);
	worker = ut_fork();
	cr_assert_neq(worker, -1);
	if (worker == 0) {
		struct mc_worker w;

		memset(&w, 0, sizeof(w));
		alarm(120);
		mc_worker_catch_signals();
		mc_log_init("state", "error");
		ut_child_worker(&w.seg, cfg.instance, MC_WORKER_STATE);
		w.cfg = &w.seg.hdr->sh_config;
		w.slot = MC_WORKER_STATE;
		w.name = "state";
		_exit(mc_state_main(&w));
	}
	ut_worker(&me, cfg.instance, ME);
}

static void down(void)
{
	if (worker > 0) {
		kill(worker, SIGTERM);
		ut_wait(worker);
		worker = -1;
	}
	mc_seg_detach(&me);
	mc_seg_destroy(&sup);
	ut_fini();
}

TestSuite(state_main, .init = up, .fini = down, .timeout = 60);

/* Send the batch and wait for its reply (decoded; free it). */
static Mcpcore__StateReply *call(struct mc_state_batch *b)
{
	uint64_t end = mc_now_ns() + 10000000000ULL;
	int rc;

	while ((rc = mc_state_batch_send(&me, b)) == -EAGAIN && mc_now_ns() < end)
		mc_ring_wait(&me, 20000, 1000000);
	cr_assert_eq(rc, 0, "send: %d", rc);
	while (mc_now_ns() < end) {
		Mcpcore__StateReply *rep;
		struct mc_msg m;

		if (mc_recv(&me, &m) != 0) {
			mc_ring_wait(&me, 20000, 1000000);
			continue;
		}
		cr_assert_eq(m.frame->f_kind, MC_FK_STATE_REPLY, "a frame of kind %u",
		    m.frame->f_kind);
		rep = (Mcpcore__StateReply *)mc_proto_unpack(m.frame);
		mc_frame_release(&me, &m);
		cr_assert_not_null(rep, "the reply does not decode");
		return rep;
	}
	cr_assert_fail("no reply within 10 s");
	return NULL;
}

static void add(struct mc_state_batch *b, Mcpcore__StateOp__Kind kind, const char *key,
    const void *value, size_t vlen, uint64_t ttl_ms)
{
	struct mc_state_req r = { .kind = kind, .ns = "t", .nslen = 1, .key = key,
	    .klen = strlen(key), .value = value, .vlen = vlen, .ttl_ms = ttl_ms, .delta = 1 };

	cr_assert_gt(mc_state_batch_add(&me, b, &r), 0, "add %s", key);
}

static void expect(const Mcpcore__StateReply *rep, size_t i, Mcpcore__StateResult__Status st,
    const void *value, size_t vlen)
{
	const Mcpcore__StateResult *r;

	cr_assert_lt(i, rep->n_results);
	r = rep->results[i];
	cr_assert_eq(r->status, st, "result %zu: status %d, expected %d (%s)", i, r->status, st,
	    r->error ? r->error : "");
	if (value == NULL)
		return;
	cr_assert_eq(r->value.len, vlen, "result %zu: %zu bytes, expected %zu", i, r->value.len,
	    vlen);
	cr_assert(vlen == 0 || memcmp(r->value.data, value, vlen) == 0, "result %zu: value", i);
}

#define OK MCPCORE__STATE_RESULT__STATUS__OK
#define NOT_FOUND MCPCORE__STATE_RESULT__STATUS__NOT_FOUND
#define GET MCPCORE__STATE_OP__KIND__GET
#define PUT MCPCORE__STATE_OP__KIND__PUT

/*
 * A GET answers the value as of its place in the request: a later write
 * of the same request (which may reuse the value's memory in the table)
 * does not show in it, an earlier one does.
 */
Test(state_main, a_get_answers_the_value_at_its_place_in_the_request)
{
	static struct mc_state_batch b;
	Mcpcore__StateReply *rep;

	mc_state_batch_init(&b);
	add(&b, PUT, "k", "one", 3, 0);
	rep = call(&b);
	expect(rep, 0, OK, NULL, 0);
	protobuf_c_message_free_unpacked(&rep->base, NULL);

	mc_state_batch_init(&b);
	add(&b, GET, "k", NULL, 0, 0);                          /* copied: writes follow */
	add(&b, PUT, "k", "two!", 4, 0);
	add(&b, GET, "k", NULL, 0, 0);
	add(&b, GET, "nope", NULL, 0, 0);
	add(&b, MCPCORE__STATE_OP__KIND__INCR, "n", NULL, 0, 0);
	add(&b, GET, "n", NULL, 0, 0);                          /* last write before it */
	add(&b, GET, "k", NULL, 0, 0);
	rep = call(&b);
	cr_assert_eq(rep->n_results, 7);
	expect(rep, 0, OK, "one", 3);
	expect(rep, 1, OK, NULL, 0);
	expect(rep, 2, OK, "two!", 4);
	expect(rep, 3, NOT_FOUND, NULL, 0);
	expect(rep, 4, OK, "1", 1);
	expect(rep, 5, OK, "1", 1);
	expect(rep, 6, OK, "two!", 4);
	cr_assert_gt(rep->results[2]->version, rep->results[0]->version);
	protobuf_c_message_free_unpacked(&rep->base, NULL);
}

/* More ops than the small-request path holds, and values that outgrow
 * the worker's copy buffer several times over (it moves as it grows). */
Test(state_main, large_requests_with_large_values)
{
	static struct mc_state_batch b;
	static uint8_t val[5][40000];
	static const char *const key[5] = { "big0", "big1", "big2", "big3", "big4" };
	Mcpcore__StateReply *rep;

	for (int v = 0; v < 5; v++)
		for (size_t i = 0; i < sizeof(val[v]); i++)
			val[v][i] = (uint8_t)(ut_mix64((uint64_t)v * 100000 + i) >> 56);
	mc_state_batch_init(&b);
	for (int v = 0; v < 5; v++)         /* a batch keeps pointers to its keys */
		add(&b, PUT, key[v], val[v], sizeof(val[v]), 0);
	rep = call(&b);
	cr_assert_eq(rep->n_results, 5);
	for (int v = 0; v < 5; v++)
		expect(rep, (size_t)v, OK, NULL, 0);
	protobuf_c_message_free_unpacked(&rep->base, NULL);

	mc_state_batch_init(&b);
	for (int v = 0; v < 4; v++)                             /* 0-3: copied */
		add(&b, GET, key[v], NULL, 0, 0);
	add(&b, PUT, "big0", "x", 1, 0);                        /* 4 */
	add(&b, GET, "big0", NULL, 0, 0);                       /* 5: copied */
	add(&b, MCPCORE__STATE_OP__KIND__DELETE, "big1", NULL, 0, 0);  /* 6 */
	add(&b, GET, "big1", NULL, 0, 0);                       /* 7 */
	add(&b, GET, "big4", NULL, 0, 0);                       /* 8: in place */
	add(&b, GET, "big0", NULL, 0, 0);                       /* 9: in place */
	rep = call(&b);
	cr_assert_eq(rep->n_results, 10);
	for (int v = 0; v < 4; v++)
		expect(rep, (size_t)v, OK, val[v], sizeof(val[v]));
	expect(rep, 4, OK, NULL, 0);
	expect(rep, 5, OK, "x", 1);
	expect(rep, 6, OK, NULL, 0);
	expect(rep, 7, NOT_FOUND, NULL, 0);
	expect(rep, 8, OK, val[4], sizeof(val[4]));
	expect(rep, 9, OK, "x", 1);
	protobuf_c_message_free_unpacked(&rep->base, NULL);
}

/* A GET reads the clock only for a value with a TTL: that one must still
 * expire on time, a value without one never does. */
Test(state_main, a_value_with_a_ttl_expires_for_get)
{
	static struct mc_state_batch b;
	Mcpcore__StateReply *rep;

	mc_state_batch_init(&b);
	add(&b, PUT, "short", "s", 1, 100);
	add(&b, PUT, "forever", "f", 1, 0);
	rep = call(&b);
	expect(rep, 0, OK, NULL, 0);
	expect(rep, 1, OK, NULL, 0);
	protobuf_c_message_free_unpacked(&rep->base, NULL);

	mc_state_batch_init(&b);
	add(&b, GET, "short", NULL, 0, 0);
	add(&b, GET, "forever", NULL, 0, 0);
	rep = call(&b);
	expect(rep, 0, OK, "s", 1);
	expect(rep, 1, OK, "f", 1);
	protobuf_c_message_free_unpacked(&rep->base, NULL);

	usleep(200000);
	mc_state_batch_init(&b);
	add(&b, GET, "forever", NULL, 0, 0);
	add(&b, GET, "short", NULL, 0, 0);
	rep = call(&b);
	expect(rep, 0, OK, "f", 1);
	expect(rep, 1, NOT_FOUND, NULL, 0);
	protobuf_c_message_free_unpacked(&rep->base, NULL);

	/* asked just after the TTL, mostly before the expiry sweep gets there */
	for (int i = 0; i < 20; i++) {
		char key[16];
		uint64_t t;

		snprintf(key, sizeof(key), "blink%d", i);
		mc_state_batch_init(&b);
		add(&b, PUT, key, "b", 1, 1);
		rep = call(&b);
		expect(rep, 0, OK, NULL, 0);
		protobuf_c_message_free_unpacked(&rep->base, NULL);
		for (t = mc_now_ns(); mc_now_ns() - t < 1500000;)
			;
		mc_state_batch_init(&b);
		add(&b, GET, key, NULL, 0, 0);
		rep = call(&b);
		expect(rep, 0, NOT_FOUND, NULL, 0);
		protobuf_c_message_free_unpacked(&rep->base, NULL);
	}
}
