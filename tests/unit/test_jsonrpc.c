/*
 * test_jsonrpc.c - unit tests for the JSON-RPC 2.0 shape checks of the MCP
 * front door (workers/protocol/jsonrpc.c, contract in mc_protocol.h):
 * what is a request, a notification, a response; every refusal with its
 * code (-32700 / -32600) and a message; the id kept for the error reply;
 * the response builders.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "mc_protocol.h"

static struct mc_rpc_msg msg;
static char err[256];

static int parse(const char *s)
{
	err[0] = '\0';
	return mc_rpc_parse(s, strlen(s), &msg, err, sizeof(err));
}

/* Release what a parse left: the root on success, the kept id on error. */
static void done(void)
{
	if (msg.root != NULL)
		json_decref(msg.root);
	else
		json_decref(msg.id);
	memset(&msg, 0, sizeof(msg));
}

/* Expect code; the message must mention `what`. */
static void refuse(const char *s, int code, const char *what)
{
	int rc = parse(s);

	cr_assert_eq(rc, code, "got %d (%s), expected %d for: %s", rc, err, code, s);
	cr_assert_null(msg.root);
	cr_assert(strstr(err, what) != NULL, "message \"%s\" lacks \"%s\"", err, what);
	done();
}

Test(jsonrpc, request_with_integer_and_string_id)
{
	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}"), 0, "%s", err);
	cr_assert_eq(msg.kind, MC_RPC_REQUEST);
	cr_assert_str_eq(msg.method, "ping");
	cr_assert_eq(json_integer_value(msg.id), 7);
	cr_assert_null(msg.params);
	done();
	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"id\":\"a-1\",\"method\":\"tools/list\","
	    "\"params\":{\"cursor\":\"x\"}}"), 0, "%s", err);
	cr_assert_eq(msg.kind, MC_RPC_REQUEST);
	cr_assert_str_eq(json_string_value(msg.id), "a-1");
	cr_assert(json_is_object(msg.params));
	done();
}

Test(jsonrpc, notification_and_responses)
{
	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"), 0);
	cr_assert_eq(msg.kind, MC_RPC_NOTIFICATION);
	cr_assert_null(msg.id);
	done();
	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}"), 0);
	cr_assert_eq(msg.kind, MC_RPC_RESPONSE);
	done();
	cr_assert_eq(parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-1,\"message\":\"m\"}}"), 0);
	cr_assert_eq(msg.kind, MC_RPC_RESPONSE);
	done();
}

Test(jsonrpc, parse_errors)
{
	refuse("", MC_RPC_PARSE_ERROR, "invalid JSON");
	refuse("{\"jsonrpc\":\"2.0\",", MC_RPC_PARSE_ERROR, "invalid JSON");
	refuse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"} x", MC_RPC_PARSE_ERROR, "invalid JSON");
	refuse("{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"a\"}", MC_RPC_PARSE_ERROR, "duplicate");
	refuse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\xfe\"}", MC_RPC_PARSE_ERROR, "invalid JSON");
	refuse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\\u0000b\"}", MC_RPC_PARSE_ERROR, "invalid JSON");
}

Test(jsonrpc, invalid_requests)
{
	refuse("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", MC_RPC_INVALID_REQUEST, "batch");
	refuse("[]", MC_RPC_INVALID_REQUEST, "batch");
	refuse("42", MC_RPC_INVALID_REQUEST, "object");
	refuse("\"ping\"", MC_RPC_INVALID_REQUEST, "object");
	refuse("{\"id\":1,\"method\":\"ping\"}", MC_RPC_INVALID_REQUEST, "jsonrpc");
	refuse("{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}", MC_RPC_INVALID_REQUEST, "jsonrpc");
	refuse("{\"jsonrpc\":2.0,\"id\":1,\"method\":\"ping\"}", MC_RPC_INVALID_REQUEST, "jsonrpc");
	refuse("{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}", MC_RPC_INVALID_REQUEST, "id");
	refuse("{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}", MC_RPC_INVALID_REQUEST, "id");
	refuse("{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}", MC_RPC_INVALID_REQUEST, "id");
	refuse("{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"ping\"}", MC_RPC_INVALID_REQUEST, "id");
	refuse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":5}", MC_RPC_INVALID_REQUEST, "method");
	refuse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\"}", MC_RPC_INVALID_REQUEST, "method");
	refuse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\",\"params\":[1]}", MC_RPC_INVALID_REQUEST, "params");
	refuse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\",\"params\":\"x\"}", MC_RPC_INVALID_REQUEST, "params");
	refuse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\",\"result\":{}}", MC_RPC_INVALID_REQUEST, "result");
	refuse("{\"jsonrpc\":\"2.0\"}", MC_RPC_INVALID_REQUEST, "neither");
	refuse("{\"jsonrpc\":\"2.0\",\"id\":1}", MC_RPC_INVALID_REQUEST, "exactly one");
	refuse("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":1,\"error\":{}}", MC_RPC_INVALID_REQUEST, "exactly one");
	refuse("{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":\"x\",\"message\":\"m\"}}",
	    MC_RPC_INVALID_REQUEST, "error");
}

Test(jsonrpc, error_keeps_the_id)
{
	cr_assert_eq(parse("{\"jsonrpc\":\"1.0\",\"id\":\"abc\",\"method\":\"ping\"}"),
	    MC_RPC_INVALID_REQUEST);
	cr_assert_str_eq(json_string_value(msg.id), "abc");
	done();
	cr_assert_eq(parse("{\"jsonrpc\":\"1.0\",\"id\":[1],\"method\":\"ping\"}"),
	    MC_RPC_INVALID_REQUEST);
	cr_assert_null(msg.id);     /* an unusable id is answered with null */
	done();
}

Test(jsonrpc, builders)
{
	json_t *id = json_integer(3);
	json_t *r = mc_rpc_result(id, json_pack("{s:i}", "x", 1));
	json_t *e = mc_rpc_error(NULL, MC_RPC_METHOD_NOT_FOUND, "no such method", json_string("d"));
	char *s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);

	cr_assert_str_eq(s, "{\"id\":3,\"jsonrpc\":\"2.0\",\"result\":{\"x\":1}}");
	free(s);
	s = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
	cr_assert_str_eq(s, "{\"error\":{\"code\":-32601,\"data\":\"d\",\"message\":\"no such method\"},"
	    "\"id\":null,\"jsonrpc\":\"2.0\"}");
	free(s);
	json_decref(r);
	json_decref(e);
	json_decref(id);
}
