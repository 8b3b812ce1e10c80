/*
 * test_mcp_tools.c - unit tests for the runtime's MCP tools (workers/
 * protocol/tools.c): tools/list carries a schema per tool, the schema
 * checker refuses what the schemas forbid with a message naming the
 * property, tools/call's parameter errors (-32602), the reserved session
 * namespace, how write tools become state ops, and the results made from
 * the state worker's answers.  (Reads against a live table are covered by
 * the integration test, tests/integration/test_mcp.py.)
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include "mc_protocol.h"

static void setup(void)
{
	cr_assert_eq(mc_tools_init(), 0);
}

static void teardown(void)
{
	mc_tools_fini();
}

TestSuite(mcp_tools, .init = setup, .fini = teardown);

Test(mcp_tools, list_has_every_tool_with_a_schema)
{
	json_t *l = mc_tools_list(), *t;
	const char *want[] = { "state_get", "state_set", "state_cas", "state_delete", "state_scan",
	    "runtime_status" };
	size_t i;

	cr_assert_eq(json_array_size(json_object_get(l, "tools")), 6);
	json_array_foreach(json_object_get(l, "tools"), i, t) {
		cr_assert_str_eq(json_string_value(json_object_get(t, "name")), want[i]);
		cr_assert(json_is_string(json_object_get(t, "description")));
		cr_assert_str_eq(json_string_value(json_object_get(json_object_get(t, "inputSchema"),
		    "type")), "object");
	}
	json_decref(l);
}

static int check(const char *schema, const char *value, char *err)
{
	json_t *s = json_loads(schema, 0, NULL), *v = json_loads(value, JSON_DECODE_ANY, NULL);
	int rc;

	cr_assert_not_null(s);
	cr_assert_not_null(v);
	rc = mc_schema_check(s, v, "arguments", err, 256);
	json_decref(s);
	json_decref(v);
	return rc;
}

Test(mcp_tools, schema_checker)
{
	const char *sc = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"minLength\":1,"
	    "\"maxLength\":3},\"n\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":9}},"
	    "\"required\":[\"a\"],\"additionalProperties\":false}";
	char err[256];

	cr_assert_eq(check(sc, "{\"a\":\"x\"}", err), 0);
	cr_assert_eq(check(sc, "{\"a\":\"\xc3\xa9\xc3\xa9\xc3\xa9\",\"n\":9}", err), 0);  /* 3 code points */
	cr_assert_eq(check(sc, "[]", err), -EINVAL);
	cr_assert_str_eq(err, "arguments: expected an object");
	cr_assert_eq(check(sc, "{}", err), -EINVAL);
	cr_assert_str_eq(err, "arguments: missing required property \"a\"");
	cr_assert_eq(check(sc, "{\"a\":1}", err), -EINVAL);
	cr_assert_str_eq(err, "arguments.a: expected a string");
	cr_assert_eq(check(sc, "{\"a\":\"\"}", err), -EINVAL);
	cr_assert_eq(check(sc, "{\"a\":\"abcd\"}", err), -EINVAL);
	cr_assert_eq(check(sc, "{\"a\":\"x\",\"n\":1.5}", err), -EINVAL);
	cr_assert_str_eq(err, "arguments.n: expected an integer");
	cr_assert_eq(check(sc, "{\"a\":\"x\",\"n\":-1}", err), -EINVAL);
	cr_assert_eq(check(sc, "{\"a\":\"x\",\"n\":10}", err), -EINVAL);
	cr_assert_eq(check(sc, "{\"a\":\"x\",\"z\":1}", err), -EINVAL);
	cr_assert_str_eq(err, "arguments.z: unknown property");
}

static int start(const char *params, struct mc_tool_call *call, json_t **result, char *err)
{
	json_t *p = json_loads(params, 0, NULL);
	int rc;

	cr_assert_not_null(p);
	rc = mc_tools_start(NULL, p, call, result, err, 256);
	json_decref(p);
	return rc;
}

Test(mcp_tools, call_parameter_errors)
{
	struct mc_tool_call call;
	json_t *result;
	char err[256];

	cr_assert_eq(start("{}", &call, &result, err), MC_RPC_INVALID_PARAMS);
	cr_assert(strstr(err, "params.name") != NULL);
	cr_assert_eq(start("{\"name\":\"nope\"}", &call, &result, err), MC_RPC_INVALID_PARAMS);
	cr_assert(strstr(err, "unknown tool") != NULL);
	cr_assert_eq(start("{\"name\":\"state_get\",\"arguments\":[]}", &call, &result, err),
	    MC_RPC_INVALID_PARAMS);
	cr_assert_eq(start("{\"name\":\"state_get\",\"arguments\":{\"namespace\":\"a\"}}", &call,
	    &result, err), MC_RPC_INVALID_PARAMS);
	cr_assert(strstr(err, "\"key\"") != NULL);
	cr_assert_eq(start("{\"name\":\"state_set\",\"arguments\":{\"namespace\":\"a\",\"key\":\"k\","
	    "\"value\":\"v\",\"ttl_ms\":-5}}", &call, &result, err), MC_RPC_INVALID_PARAMS);
	cr_assert_eq(start("{\"name\":\"runtime_status\",\"arguments\":{\"x\":1}}", &call, &result,
	    err), MC_RPC_INVALID_PARAMS);
}

Test(mcp_tools, reserved_namespace_is_a_tool_error)
{
	struct mc_tool_call call;
	json_t *result = NULL;
	char err[256];

	cr_assert_eq(start("{\"name\":\"state_get\",\"arguments\":{\"namespace\":\"mcp.session\","
	    "\"key\":\"k\"}}", &call, &result, err), 0);
	cr_assert_not_null(result);
	cr_assert(json_is_true(json_object_get(result, "isError")));
	cr_assert(!call.needs_state);
	json_decref(result);
	mc_tools_done(&call);
}

Test(mcp_tools, writes_become_state_ops)
{
	struct mc_tool_call call;
	struct mc_state_res res = { .status = MCPCORE__STATE_RESULT__STATUS__OK, .version = 42 };
	json_t *result = NULL, *r;
	char err[256];

	cr_assert_eq(start("{\"name\":\"state_cas\",\"arguments\":{\"namespace\":\"ns\",\"key\":\"k\","
	    "\"expected_version\":7,\"value\":\"v\",\"ttl_ms\":100}}", &call, &result, err), 0, "%s", err);
	cr_assert_null(result);
	cr_assert(call.needs_state);
	cr_assert_eq(call.req.kind, MCPCORE__STATE_OP__KIND__CAS);
	cr_assert_eq(call.req.nslen, 2);
	cr_assert_eq(memcmp(call.req.key, "k", 1), 0);
	cr_assert_eq(call.req.expected_version, 7);
	cr_assert_eq(call.req.ttl_ms, 100);
	r = mc_tools_finish(&call, &res);
	cr_assert(json_is_false(json_object_get(r, "isError")));
	cr_assert(json_is_true(json_object_get(json_object_get(r, "structuredContent"), "swapped")));
	json_decref(r);
	res.status = MCPCORE__STATE_RESULT__STATUS__VERSION_MISMATCH;
	r = mc_tools_finish(&call, &res);
	cr_assert(json_is_false(json_object_get(json_object_get(r, "structuredContent"), "swapped")));
	json_decref(r);
	mc_tools_done(&call);

	cr_assert_eq(start("{\"name\":\"state_delete\",\"arguments\":{\"namespace\":\"ns\",\"key\":\"k\"}}",
	    &call, &result, err), 0);
	cr_assert_eq(call.req.kind, MCPCORE__STATE_OP__KIND__DELETE);
	res.status = MCPCORE__STATE_RESULT__STATUS__NOT_FOUND;
	r = mc_tools_finish(&call, &res);
	cr_assert(json_is_true(json_object_get(r, "isError")));
	json_decref(r);
	mc_tools_done(&call);
}
