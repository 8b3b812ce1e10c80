/*
 * test_mcp.c - unit tests for MCP over HTTP (workers/protocol/mcp.c) with
 * a fake environment in place of the server and the state worker:
 * transport checks (path, Host/Origin, methods, Content-Type, Accept,
 * MCP-Protocol-Version, session header) with their statuses, JSON-RPC
 * errors on the wire, and initialize end to end through a parked state
 * write, its completion, failure, and the "server busy" timeout.
 * (Paths that read a stored session need a live table: the integration
 * test covers them.)
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mc_protocol.h"

static struct mc_mcp *mcp;
static int64_t next_op = 100, send_rc;
static struct mc_state_req last_req;
static char last_val[256];
static struct mc_mcp_reply delivered;
static uint64_t delivered_token;
static int ndelivered;

static int64_t fake_send(void *ctx, const struct mc_state_req *r)
{
	(void)ctx;
	if (send_rc)
		return send_rc;
	last_req = *r;
	snprintf(last_val, sizeof(last_val), "%.*s", (int)r->vlen, (const char *)r->value);
	return next_op++;
}

static void fake_deliver(void *ctx, uint64_t token, struct mc_mcp_reply *reply)
{
	(void)ctx;
	delivered = *reply;
	delivered_token = token;
	ndelivered++;
}

static void setup(void)
{
	struct mc_mcp_env env = { .seg = NULL, .state_send = fake_send, .deliver = fake_deliver,
	    .path = "/mcp", .loopback = true, .max_body = 1 << 20 };

	cr_assert_eq(mc_mcp_create(&mcp, &env), 0);
	send_rc = 0;
	ndelivered = 0;
}

static void teardown(void)
{
	mc_mcp_destroy(mcp);
}

TestSuite(mcp, .init = setup, .fini = teardown);

static struct mc_http_parser parser;
static struct mc_http_request req;
static char wire[8192];

/* Handle "METHOD PATH" with extra header lines and a body. */
static int handle(const char *method, const char *path, const char *headers, const char *body,
    struct mc_mcp_reply *r)
{
	int n = snprintf(wire, sizeof(wire), "%s %s HTTP/1.1\r\n%sContent-Length: %zu\r\n\r\n%s",
	    method, path, headers, strlen(body), body);

	mc_http_parser_init(&parser, NULL);
	cr_assert_eq(mc_http_parse(&parser, wire, (size_t)n, &req), MC_HTTP_DONE, "%s", parser.error);
	return mc_mcp_handle(mcp, &req, wire + req.head_len, strlen(body), 77, r);
}

#define OK_HEADERS "Host: 127.0.0.1:3000\r\nContent-Type: application/json\r\n" \
	"Accept: application/json, text/event-stream\r\n"

/* The JSON-RPC error code in a reply body (0 if none). */
static int rpc_code(const struct mc_mcp_reply *r)
{
	json_t *d = json_loadb(r->body ? r->body : "", r->body_len, 0, NULL);
	int code = (int)json_integer_value(json_object_get(json_object_get(d, "error"), "code"));

	json_decref(d);
	return code;
}

static void expect(const char *method, const char *path, const char *headers, const char *body,
    int status, int code)
{
	struct mc_mcp_reply r;

	cr_assert_eq(handle(method, path, headers, body, &r), 0);
	cr_assert_eq(r.status, status, "%s %s: status %d, expected %d (%.*s)", method, path,
	    r.status, status, (int)r.body_len, r.body ? r.body : "");
	cr_assert_eq(rpc_code(&r), code, "%.*s", (int)r.body_len, r.body ? r.body : "");
	mc_mcp_reply_free(&r);
}

static const char *init_body = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":"
    "{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}";

Test(mcp, transport_refusals)
{
	const char *ping = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}";

	expect("POST", "/other", OK_HEADERS, ping, 404, MC_RPC_INVALID_REQUEST);
	expect("POST", "/mcp", "Host: evil.example\r\nContent-Type: application/json\r\n"
	    "Accept: application/json\r\n", ping, 403, MC_RPC_INVALID_REQUEST);
	expect("POST", "/mcp", OK_HEADERS "Origin: http://evil.example\r\n", ping, 403,
	    MC_RPC_INVALID_REQUEST);
	expect("POST", "/mcp", OK_HEADERS "Origin: null\r\n", ping, 403, MC_RPC_INVALID_REQUEST);
	expect("GET", "/mcp", OK_HEADERS, "", 400, MC_RPC_INVALID_REQUEST);        /* no session */
	expect("GET", "/mcp", OK_HEADERS "Mcp-Session-Id: nope\r\n", "", 404, -32001);
	expect("GET", "/mcp", "Host: localhost\r\nAccept: application/json\r\n", "", 406,
	    MC_RPC_INVALID_REQUEST);
	expect("GET", "/mcp", OK_HEADERS "MCP-Protocol-Version: 1999-01-01\r\n", "", 400,
	    MC_RPC_INVALID_REQUEST);
	expect("PUT", "/mcp", OK_HEADERS, ping, 405, MC_RPC_INVALID_REQUEST);
	expect("POST", "/mcp", "Host: localhost\r\nContent-Type: text/plain\r\nAccept: */*\r\n", ping,
	    415, MC_RPC_INVALID_REQUEST);
	expect("POST", "/mcp", "Host: localhost\r\nContent-Type: application/json\r\n"
	    "Accept: text/html\r\n", ping, 406, MC_RPC_INVALID_REQUEST);
	expect("POST", "/mcp", OK_HEADERS "MCP-Protocol-Version: 1999-01-01\r\n", ping, 400,
	    MC_RPC_INVALID_REQUEST);
	expect("POST", "/mcp", OK_HEADERS, ping, 400, MC_RPC_INVALID_REQUEST);     /* no session */
	expect("POST", "/mcp", OK_HEADERS "Mcp-Session-Id: nope\r\n", ping, 404, -32001);
	expect("DELETE", "/mcp", OK_HEADERS, "", 400, MC_RPC_INVALID_REQUEST);
}

Test(mcp, json_rpc_errors_on_the_wire)
{
	expect("POST", "/mcp", OK_HEADERS, "{oops", 400, MC_RPC_PARSE_ERROR);
	expect("POST", "/mcp", OK_HEADERS, "[]", 400, MC_RPC_INVALID_REQUEST);
	expect("POST", "/mcp", OK_HEADERS, "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}", 400,
	    MC_RPC_INVALID_REQUEST);
	expect("POST", "/mcp", OK_HEADERS, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\"}",
	    200, MC_RPC_INVALID_PARAMS);
	expect("POST", "/mcp", OK_HEADERS, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\","
	    "\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{}}}", 200,
	    MC_RPC_INVALID_PARAMS);
}

Test(mcp, allowed_hosts_and_origins)
{
	struct mc_mcp_reply r;
	const char *hosts[] = { "localhost", "localhost:3000", "127.0.0.1", "[::1]:3000", NULL };

	for (int i = 0; hosts[i]; i++) {
		char h[256];

		snprintf(h, sizeof(h), "Host: %s\r\nContent-Type: application/json; charset=utf-8\r\n"
		    "Accept: application/json, text/event-stream\r\nOrigin: http://localhost:6274\r\n",
		    hosts[i]);
		cr_assert_eq(handle("POST", "/mcp", h, init_body, &r), 1, "host %s: %d", hosts[i], r.status);
		mc_mcp_expire(mcp, UINT64_MAX, 0);      /* drop the parked write */
		mc_mcp_reply_free(&delivered);
	}
}

Test(mcp, initialize_parks_a_session_write_and_answers_on_the_reply)
{
	struct mc_mcp_reply r;
	struct mc_state_res ok = { .status = MCPCORE__STATE_RESULT__STATUS__OK, .version = 5 };
	json_t *d;
	struct mc_session s;

	cr_assert_eq(handle("POST", "/mcp", OK_HEADERS, init_body, &r), 1);
	cr_assert_eq(mc_mcp_inflight(mcp), 1);
	cr_assert_eq(last_req.kind, MCPCORE__STATE_OP__KIND__PUT);
	cr_assert_eq(last_req.nslen, strlen(MC_SESSION_NS));
	cr_assert_eq(last_req.klen, MC_SESSION_ID_LEN);
	cr_assert_eq(last_req.ttl_ms, MC_SESSION_TTL_MS);
	cr_assert_eq(mc_session_decode(last_val, strlen(last_val), &s), 0);
	cr_assert_eq(s.state, MC_SESSION_INITIALIZING);
	cr_assert_str_eq(s.version, "2025-06-18");
	cr_assert_eq(mc_mcp_state_result(mcp, 999, &ok), -ENOENT);
	cr_assert_eq(ndelivered, 0);
	cr_assert_eq(mc_mcp_state_result(mcp, (uint64_t)next_op - 1, &ok), 0);
	cr_assert_eq(ndelivered, 1);
	cr_assert_eq(delivered_token, 77);
	cr_assert_eq(delivered.status, 200);
	cr_assert(strstr(delivered.headers, "Mcp-Session-Id: ") != NULL);
	d = json_loadb(delivered.body, delivered.body_len, 0, NULL);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(d, "result"),
	    "protocolVersion")), "2025-06-18");
	cr_assert(json_is_object(json_object_get(json_object_get(json_object_get(d, "result"),
	    "capabilities"), "tools")));
	json_decref(d);
	mc_mcp_reply_free(&delivered);
	cr_assert_eq(mc_mcp_inflight(mcp), 0);
}

Test(mcp, unknown_version_negotiates_our_newest)
{
	struct mc_mcp_reply r;
	struct mc_session s;

	cr_assert_eq(handle("POST", "/mcp", OK_HEADERS, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":"
	    "\"initialize\",\"params\":{\"protocolVersion\":\"2024-11-05\",\"capabilities\":{},"
	    "\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}", &r), 1);
	cr_assert_eq(mc_session_decode(last_val, strlen(last_val), &s), 0);
	cr_assert_str_eq(s.version, "2025-11-25");
	mc_mcp_expire(mcp, UINT64_MAX, 0);
	mc_mcp_reply_free(&delivered);
}

Test(mcp, busy_state_worker_and_timeout)
{
	struct mc_mcp_reply r;

	send_rc = -EAGAIN;
	expect("POST", "/mcp", OK_HEADERS, init_body, 503, MC_RPC_SERVER_BUSY);
	send_rc = 0;
	cr_assert_eq(handle("POST", "/mcp", OK_HEADERS, init_body, &r), 1);
	cr_assert_eq(mc_mcp_expire(mcp, 0, 1000000000ULL), 1);     /* not yet */
	cr_assert_eq(ndelivered, 0);
	cr_assert_eq(mc_mcp_expire(mcp, UINT64_MAX, 1000000000ULL), 0);
	cr_assert_eq(ndelivered, 1);
	cr_assert_eq(delivered.status, 503);
	cr_assert_eq(rpc_code(&delivered), MC_RPC_SERVER_BUSY);
	mc_mcp_reply_free(&delivered);
}

Test(mcp, failed_session_write_is_an_internal_error)
{
	struct mc_mcp_reply r;
	struct mc_state_res full = { .status = MCPCORE__STATE_RESULT__STATUS__TABLE_FULL };

	cr_assert_eq(handle("POST", "/mcp", OK_HEADERS, init_body, &r), 1);
	cr_assert_eq(mc_mcp_state_result(mcp, (uint64_t)next_op - 1, &full), 0);
	cr_assert_eq(delivered.status, 500);
	cr_assert_eq(rpc_code(&delivered), MC_RPC_INTERNAL_ERROR);
	mc_mcp_reply_free(&delivered);
}

/* With [protocol] conformance_fixtures the initialize result advertises
 * what the fixtures serve (resources with subscribe, prompts,
 * completions); without, it does not. */
static json_t *init_caps(bool fixtures)
{
	struct mc_mcp_env env = { .seg = NULL, .state_send = fake_send, .deliver = fake_deliver,
	    .path = "/mcp", .loopback = true, .max_body = 1 << 20, .fixtures = fixtures };
	struct mc_state_res ok = { .status = MCPCORE__STATE_RESULT__STATUS__OK, .version = 1 };
	struct mc_mcp_reply r;
	json_t *d, *caps;

	mc_mcp_destroy(mcp);
	cr_assert_eq(mc_mcp_create(&mcp, &env), 0);
	cr_assert_eq(handle("POST", "/mcp", OK_HEADERS, init_body, &r), 1);
	cr_assert_eq(mc_mcp_state_result(mcp, (uint64_t)next_op - 1, &ok), 0);
	d = json_loadb(delivered.body, delivered.body_len, 0, NULL);
	caps = json_incref(json_object_get(json_object_get(d, "result"), "capabilities"));
	json_decref(d);
	mc_mcp_reply_free(&delivered);
	return caps;
}

Test(mcp, fixtures_capabilities)
{
	json_t *on = init_caps(true), *off = init_caps(false);

	cr_assert(json_is_true(json_object_get(json_object_get(on, "resources"), "subscribe")));
	cr_assert(json_is_object(json_object_get(on, "prompts")));
	cr_assert(json_is_object(json_object_get(on, "completions")));
	cr_assert(json_is_object(json_object_get(on, "tools")));
	cr_assert_null(json_object_get(off, "resources"));
	cr_assert_null(json_object_get(off, "prompts"));
	json_decref(on);
	json_decref(off);
}

Test(mcp, resource_update_without_subscribers_sends_nothing)
{
	cr_assert_eq(mc_mcp_resource_updated(mcp, "test://watched-resource"), 0);
	cr_assert_eq(mc_mcp_inflight(mcp), 0);
}
