/*
 * bench_handle.c - `mcpcore-bench handle`: what the protocol worker's own
 * code spends on one `tools/call state_get`, without sockets.
 *
 * Over HTTP (`mcpcore-bench mcp`) the kernel's loopback TCP is most of a
 * request's time and the box's noise moves the figures by a fifth from one
 * run to the next.  Here one process runs, on one core, exactly what the
 * protocol worker runs between a request's bytes and its answer's bytes:
 * the HTTP head parse (mc_http_parse), then mc_mcp_handle (JSON-RPC
 * decode and checks, session lookup, the tool's schema, the lock-free
 * state read, the answer's JSON).  Not included: io_uring, the answer's
 * HTTP head, and the record to the router (an outbox is not attached).
 * Under callgrind the same run counts instructions, which do not move
 * with the box's load:
 *   valgrind --tool=callgrind --toggle-collect=mc_hb_ours \
 *       mcpcore-bench handle --quick --runs 1
 * gives the handler's instructions for 22 001 requests (2 001 to warm
 * up, 20 000 timed).
 *
 * Baseline, side by side in alternating runs: jansson alone on the same
 * texts - json_loadb of the request body and json_dumpb of the answer's
 * document - the least a handler built on a Debian JSON library pays for
 * reading a request and writing its answer.
 *
 * The segment is private; the bench process writes the session record and
 * the key itself (it is the only process, so it may be the state's writer)
 * and then only reads, as the protocol worker does.
 */
#include "mc_bench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_http.h"
#include "mc_protocol.h"
#include "state/mc_state_writer.h"
#include "mc_util.h"

#define MC_HB_BODY "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":" \
	"\"state_get\",\"arguments\":{\"namespace\":\"bench\",\"key\":\"k\"}}}"
#define MC_HB_VALUE "0123456789012345678901234567890123456789012345678901234567890123"

struct mc_hb {
	struct mc_mcp *mcp;
	char wire[1024];                /* the request: head and body */
	size_t wire_len, head_len;
	json_t *answer;                 /* the answer, parsed once (baseline) */
	uint64_t bad;                   /* answers that were not 200 */
};

/* Nothing of a state_get goes to the state worker: a send is a bug here. */
static int64_t mc_hb_send(void *ctx, const struct mc_state_req *r)
{
	(void)ctx;
	(void)r;
	return -EPROTO;
}

static void mc_hb_deliver(void *ctx, uint64_t token, struct mc_mcp_reply *r)
{
	(void)ctx;
	(void)token;
	mc_mcp_reply_free(r);
}

/* One PUT by the bench process as the state's writer; 0 or -1. */
static int mc_hb_put(struct mc_state_writer *w, const char *ns, const char *key,
    const char *val, size_t vlen)
{
	static uint64_t seq;
	Mcpcore__StateOp op = MCPCORE__STATE_OP__INIT;
	struct mc_state_result res;

	op.kind = MCPCORE__STATE_OP__KIND__PUT;
	op.ns.data = (uint8_t *)ns;
	op.ns.len = strlen(ns);
	op.key.data = (uint8_t *)key;
	op.key.len = strlen(key);
	op.value.data = (uint8_t *)val;
	op.value.len = vlen;
	++seq;
	mc_state_frame_begin(w, MC_WORKER_PROTOCOL, seq);
	mc_state_apply(w, &op, mc_wall_ns(), 0, &res);
	mc_state_frame_end(w, MC_WORKER_PROTOCOL, seq);
	if (res.status != MCPCORE__STATE_RESULT__STATUS__OK) {
		fprintf(stderr, "mcpcore-bench handle: cannot write %s/%s: %s\n", ns, key, res.error);
		return -1;
	}
	return 0;
}

/* Session and key in the state, the handler made, the request written. */
static int mc_hb_setup(struct mc_hb *hb, struct mc_seg *seg)
{
	static struct mc_state_writer w;        /* large: not on the stack */
	struct mc_session s = { .state = MC_SESSION_READY };
	struct mc_mcp_env env = { .seg = seg, .state_send = mc_hb_send, .deliver = mc_hb_deliver,
		.path = "/mcp", .loopback = true, .max_body = 1 << 20 };
	char err[256], rec[512];
	int n;

	if (mc_state_writer_open(seg, &w, err, sizeof(err)) != 0) {
		fprintf(stderr, "mcpcore-bench handle: %s\n", err);
		return -1;
	}
	if (mc_session_new_id(s.id) != 0)
		return -1;
	snprintf(s.version, sizeof(s.version), "2025-06-18");
	snprintf(s.client, sizeof(s.client), "mcpcore-bench");
	n = mc_session_encode(&s, rec, sizeof(rec));
	if (n < 0 || mc_hb_put(&w, MC_SESSION_NS, s.id, rec, (size_t)n) != 0 ||
	    mc_hb_put(&w, "bench", "k", MC_HB_VALUE, strlen(MC_HB_VALUE)) != 0)
		return -1;
	if (mc_tools_init() != 0 || mc_mcp_create(&hb->mcp, &env) != 0)
		return -1;
	n = snprintf(hb->wire, sizeof(hb->wire), "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"
	    "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
	    "MCP-Protocol-Version: 2025-06-18\r\nMcp-Session-Id: %s\r\nContent-Length: %zu\r\n\r\n"
	    "%s", s.id, strlen(MC_HB_BODY), MC_HB_BODY);
	hb->wire_len = (size_t)n;
	hb->head_len = hb->wire_len - strlen(MC_HB_BODY);
	return 0;
}

/* One request through the parser and the handler; the answer's status. */
static int mc_hb_one(struct mc_hb *hb, struct mc_mcp_reply *r)
{
	static struct mc_http_parser p;
	static struct mc_http_request req;

	mc_http_parser_init(&p, NULL);
	if (mc_http_parse(&p, hb->wire, hb->wire_len, &req) != MC_HTTP_DONE ||
	    mc_mcp_handle(hb->mcp, &req, hb->wire + req.head_len, hb->wire_len - req.head_len, 1,
	    r) != 0)
		return -1;
	return r->status;
}

/* The answer must be a found value: checked once, before timing. */
static int mc_hb_check(struct mc_hb *hb)
{
	struct mc_mcp_reply r;
	json_error_t je;
	int status = mc_hb_one(hb, &r);

	if (status == 200 && r.body != NULL &&
	    strstr(r.body, "\"value\":\"" MC_HB_VALUE "\"") != NULL)
		hb->answer = json_loadb(r.body, r.body_len, 0, &je);
	if (hb->answer == NULL)
		fprintf(stderr, "mcpcore-bench handle: unexpected answer (status %d): %.*s\n", status,
		    (int)(r.body ? r.body_len : 0), r.body ? r.body : "");
	if (status > 0)
		mc_mcp_reply_free(&r);
	return hb->answer != NULL ? 0 : -1;
}

/* n requests through the handler; ns per request.  Not inlined, so that
 * callgrind can count it alone (--toggle-collect=mc_hb_ours). */
static __attribute__((noinline)) double mc_hb_ours(struct mc_hb *hb, uint64_t n)
{
	uint64_t t0 = mc_now_ns();

	for (uint64_t i = 0; i < n; i++) {
		struct mc_mcp_reply r;
		int status = mc_hb_one(hb, &r);

		if (status != 200)
			hb->bad++;
		if (status > 0)
			mc_mcp_reply_free(&r);
	}
	return (double)(mc_now_ns() - t0) / (double)n;
}

/* n times jansson alone: the body read, the answer written; ns per
 * request.  Not inlined, as mc_hb_ours. */
static __attribute__((noinline)) double mc_hb_jansson(struct mc_hb *hb, uint64_t n)
{
	const char *body = hb->wire + hb->head_len;
	size_t blen = hb->wire_len - hb->head_len;
	uint64_t t0 = mc_now_ns();
	char out[2048];

	for (uint64_t i = 0; i < n; i++) {
		json_error_t je;
		json_t *doc = json_loadb(body, blen, JSON_REJECT_DUPLICATES, &je);

		if (doc == NULL || json_dumpb(hb->answer, out, sizeof(out), JSON_COMPACT) == 0)
			hb->bad++;
		json_decref(doc);
	}
	return (double)(mc_now_ns() - t0) / (double)n;
}

static void mc_hb_report(const struct mc_bench_opts *o, uint64_t n, double *ours, double *base,
    double *ratio, uint64_t bad)
{
	double mo = mc_bench_median(ours, o->runs), mb = mc_bench_median(base, o->runs);
	double mr = mc_bench_median(ratio, o->runs);

	if (o->json) {
		printf("{\"bench\":\"handle\",\"runs\":%d,\"requests\":%" PRIu64 ","
		    "\"handle_ns\":%.0f,\"jansson_ns\":%.0f,\"ratio\":%.3f,\"failed\":%" PRIu64
		    "}\n", o->runs, n, mo, mb, mr, bad);
		return;
	}
	printf("mcpcore-bench handle: tools/call state_get in one process, no sockets;\n"
	    "median of %d runs, %" PRIu64 " requests each\n", o->runs, n);
	printf("%-52s %10s\n", "", "ns/req");
	printf("%-52s %10.0f\n", "HTTP head parse + mc_mcp_handle (answer's JSON)", mo);
	printf("%-52s %10.0f\n", "jansson alone: json_loadb body + json_dumpb answer", mb);
	printf("%-52s %9.2fx\n", "handler / jansson alone (median of per-run ratios)", mr);
	if (bad)
		printf("FAILED answers: %" PRIu64 "\n", bad);
}

int mc_bench_handle(const struct mc_bench_opts *o)
{
	struct mc_config cfg;
	struct mc_seg seg;
	struct mc_hb hb = { 0 };
	uint64_t n = o->quick ? 20000 : o->count / 10;
	double ours[o->runs], base[o->runs], ratio[o->runs];
	int rc = 1;

	if (mc_bench_segment(&seg, &cfg, "handle") != 0)
		return 1;
	mc_bench_pin(0);
	if (mc_hb_setup(&hb, &seg) != 0 || mc_hb_check(&hb) != 0)
		goto out;
	mc_hb_ours(&hb, n / 10 + 1);            /* warm caches and the allocator */
	for (int r = 0; r < o->runs; r++) {
		if (r % 2 == 0) {
			ours[r] = mc_hb_ours(&hb, n);
			base[r] = mc_hb_jansson(&hb, n);
		} else {
			base[r] = mc_hb_jansson(&hb, n);
			ours[r] = mc_hb_ours(&hb, n);
		}
		ratio[r] = ours[r] / base[r];
	}
	mc_hb_report(o, n, ours, base, ratio, hb.bad);
	rc = hb.bad == 0 ? 0 : 1;
out:
	json_decref(hb.answer);
	if (hb.mcp != NULL)
		mc_mcp_destroy(hb.mcp);
	mc_seg_destroy(&seg);
	return rc;
}
