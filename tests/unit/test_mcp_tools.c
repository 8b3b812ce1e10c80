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
#include <stdlib.h>
#include <string.h>

#include "mc_protocol.h"
#include "mc_state.h"

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

/* tools/call with params; a result given at once is parsed back into
 * *result (NULL when the call needs the state worker, or failed). */
static int start(const char *params, struct mc_tool_call *call, json_t **result, char *err)
{
	json_t *p = json_loads(params, 0, NULL);
	struct mc_jtext t;
	json_error_t je;
	size_t len;
	char *text;
	int rc;

	cr_assert_not_null(p);
	mc_jtext_init(&t, NULL, 0);
	rc = mc_tools_start(NULL, p, call, &t, err, 256);
	json_decref(p);
	text = mc_jtext_end(&t, &len);
	cr_assert_not_null(text);
	*result = NULL;
	if (rc == 0 && !call->needs_state) {
		*result = json_loadb(text, len, 0, &je);
		cr_assert_not_null(*result, "%s: %s", text, je.text);
	} else {
		cr_assert_eq(len, 0, "nothing is written unless answered at once: %s", text);
	}
	free(text);
	return rc;
}

/* The state_get result for meta/value, as text, must be the document the
 * tools used to build (jansson), dumped: same members, same order, and the
 * text content must be the structuredContent's own text. */
static void get_result_is(const struct mc_state_value *meta, const char *value,
    const char *structured)
{
	json_t *want_s = json_loads(structured, 0, NULL), *want;
	char buf[16], *got, *want_text, *s_text;
	struct mc_state_value m;
	struct mc_jtext t;
	size_t len, wlen, slen;

	cr_assert_not_null(want_s, "%s", structured);
	s_text = mc_json_dump(want_s, NULL, 0, &slen);
	want = json_pack("{s:[{s:s, s:s%}], s:O, s:b}", "content", "type", "text", "text", s_text,
	    slen, "structuredContent", want_s, "isError", 0);
	want_text = mc_json_dump(want, NULL, 0, &wlen);
	mc_jtext_init(&t, buf, sizeof(buf));    /* small: the text moves to the heap */
	if (meta != NULL) {
		m = *meta;
		m.len = (uint32_t)strlen(value);
	}
	mc_tools_get_result(&t, meta ? &m : NULL, (const uint8_t *)value);
	got = mc_jtext_end(&t, &len);
	cr_assert_not_null(got);
	cr_assert_eq(len, wlen, "got  %s\nwant %s", got, want_text);
	cr_assert_str_eq(got, want_text);
	free(got);
	free(want_text);
	free(s_text);
	json_decref(want);
	json_decref(want_s);
}

Test(mcp_tools, state_get_results_as_text)
{
	struct mc_state_value m = { .version = 1796671134651371, .mtime = 1796671134651371111,
		.expires = 0 };

	get_result_is(NULL, NULL, "{\"found\":false}");
	get_result_is(&m, "a \"q\" \\ \n\x01/\xc3\xa9",
	    "{\"found\":true,\"version\":1796671134651371,\"mtime_ns\":1796671134651371111,"
	    "\"value\":\"a \\\"q\\\" \\\\ \\n\\u0001/\\u00e9\"}");
	m.expires = 9;
	get_result_is(&m, "", "{\"found\":true,\"version\":1796671134651371,"
	    "\"mtime_ns\":1796671134651371111,\"expires_ns\":9,\"value\":\"\"}");
	/* not UTF-8 (a lone continuation byte, an overlong '/', a surrogate): hex */
	m.expires = 0;
	get_result_is(&m, "a\x80z", "{\"found\":true,\"version\":1796671134651371,"
	    "\"mtime_ns\":1796671134651371111,\"value_hex\":\"61807a\"}");
	get_result_is(&m, "\xc0\xaf", "{\"found\":true,\"version\":1796671134651371,"
	    "\"mtime_ns\":1796671134651371111,\"value_hex\":\"c0af\"}");
	get_result_is(&m, "\xed\xa0\x80", "{\"found\":true,\"version\":1796671134651371,"
	    "\"mtime_ns\":1796671134651371111,\"value_hex\":\"eda080\"}");
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
