/*
 * test_mcp_fixtures.c - unit tests for the conformance fixtures (workers/
 * protocol/fixtures.c): the fixture tools and what each returns, the
 * notifications logging and progress send first (and the log level that
 * silences them), the client requests of sampling and elicitation and the
 * results built from the client's answers, resources (static, binary,
 * template), prompts and completion.  The suite itself runs against a
 * runtime in tests/integration/test_mcp_conformance.py.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include "mc_protocol.h"

static json_t *j(const char *text)
{
	json_t *v = json_loads(text, 0, NULL);

	cr_assert_not_null(v, "bad test JSON: %s", text);
	return v;
}

/* Call a fixture tool by name with params text; returns mc_fixtures_call's rc. */
static int call(const char *params, int level, struct mc_fixture_call *fc)
{
	json_t *p = j(params);
	char err[256] = "";
	int rc = mc_fixtures_call(p, level, fc, err, sizeof(err));

	json_decref(p);
	return rc;
}

static const char *first_type(const json_t *result)
{
	return json_string_value(json_object_get(json_array_get(json_object_get(result, "content"),
	    0), "type"));
}

Test(mcp_fixtures, tools_have_names_descriptions_and_schemas)
{
	json_t *a = mc_fixtures_tools(), *t;
	bool seen_2020 = false;
	size_t i;

	cr_assert_geq(json_array_size(a), 13);
	json_array_foreach(a, i, t) {
		const char *name = json_string_value(json_object_get(t, "name"));
		json_t *s = json_object_get(t, "inputSchema");

		cr_assert_not_null(name);
		cr_assert(json_is_string(json_object_get(t, "description")), "%s", name);
		cr_assert_str_eq(json_string_value(json_object_get(s, "type")), "object", "%s", name);
		if (strcmp(name, "json_schema_2020_12_tool") == 0) {
			seen_2020 = true;
			cr_assert_str_eq(json_string_value(json_object_get(s, "$schema")),
			    "https://json-schema.org/draft/2020-12/schema");
			cr_assert_not_null(json_object_get(json_object_get(s, "$defs"), "address"));
			cr_assert(json_is_false(json_object_get(s, "additionalProperties")));
		}
	}
	cr_assert(seen_2020);
	json_decref(a);
}

Test(mcp_fixtures, content_tools_answer_at_once)
{
	static const struct { const char *name, *type; } cases[] = {
		{ "test_simple_text", "text" }, { "test_image_content", "image" },
		{ "test_audio_content", "audio" }, { "test_embedded_resource", "resource" },
		{ "test_multiple_content_types", "text" }, { "test_error_handling", "text" },
	};
	struct mc_fixture_call fc;
	char p[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(p, sizeof(p), "{\"name\":\"%s\",\"arguments\":{}}", cases[i].name);
		cr_assert_eq(call(p, 0, &fc), 0, "%s", cases[i].name);
		cr_assert_not_null(fc.result);
		cr_assert_null(fc.request);
		cr_assert_eq(json_array_size(fc.notes), 0);
		cr_assert_str_eq(first_type(fc.result), cases[i].type, "%s", cases[i].name);
		cr_assert_eq(json_is_true(json_object_get(fc.result, "isError")),
		    strcmp(cases[i].name, "test_error_handling") == 0, "%s", cases[i].name);
		mc_fixtures_call_done(&fc);
	}
	/* the mixed tool carries three kinds; audio says audio/wav */
	cr_assert_eq(call("{\"name\":\"test_multiple_content_types\"}", 0, &fc), 0);
	cr_assert_eq(json_array_size(json_object_get(fc.result, "content")), 3);
	mc_fixtures_call_done(&fc);
	cr_assert_eq(call("{\"name\":\"test_audio_content\"}", 0, &fc), 0);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(fc.result,
	    "content"), 0), "mimeType")), "audio/wav");
	mc_fixtures_call_done(&fc);
}

Test(mcp_fixtures, reconnection_is_deferred)
{
	struct mc_fixture_call fc;

	cr_assert_eq(call("{\"name\":\"test_reconnection\"}", 0, &fc), 0);
	cr_assert(fc.deferred);
	cr_assert_not_null(fc.result);
	mc_fixtures_call_done(&fc);
	cr_assert_eq(call("{\"name\":\"test_simple_text\"}", 0, &fc), 0);
	cr_assert_not(fc.deferred);
	mc_fixtures_call_done(&fc);
}

Test(mcp_fixtures, unknown_and_bad_calls)
{
	struct mc_fixture_call fc;

	cr_assert_eq(call("{\"name\":\"state_get\"}", 0, &fc), -ENOENT);
	cr_assert_eq(call("{\"arguments\":{}}", 0, &fc), -ENOENT);
	cr_assert_eq(call("{\"name\":\"test_simple_text\",\"arguments\":[]}", 0, &fc),
	    MC_RPC_INVALID_PARAMS);
	cr_assert_eq(call("{\"name\":\"test_sampling\",\"arguments\":{}}", 0, &fc),
	    MC_RPC_INVALID_PARAMS);
	cr_assert_eq(call("{\"name\":\"test_elicitation\",\"arguments\":{\"message\":1}}", 0, &fc),
	    MC_RPC_INVALID_PARAMS);
}

Test(mcp_fixtures, logging_sends_three_messages_unless_silenced)
{
	struct mc_fixture_call fc;
	json_t *n;
	size_t i;

	cr_assert_eq(call("{\"name\":\"test_tool_with_logging\"}", mc_session_log_level("debug"),
	    &fc), 0);
	cr_assert_eq(json_array_size(fc.notes), 3);
	json_array_foreach(fc.notes, i, n) {
		cr_assert_str_eq(json_string_value(json_object_get(n, "method")),
		    "notifications/message");
		cr_assert_str_eq(json_string_value(json_object_get(json_object_get(n, "params"),
		    "level")), "info");
		cr_assert_null(json_object_get(n, "id"));
	}
	mc_fixtures_call_done(&fc);
	cr_assert_eq(call("{\"name\":\"test_tool_with_logging\"}", mc_session_log_level("error"),
	    &fc), 0);
	cr_assert_eq(json_array_size(fc.notes), 0);
	cr_assert_not_null(fc.result);
	mc_fixtures_call_done(&fc);
}

Test(mcp_fixtures, progress_follows_the_token)
{
	struct mc_fixture_call fc;

	cr_assert_eq(call("{\"name\":\"test_tool_with_progress\",\"_meta\":{\"progressToken\":\"t1\"}}",
	    0, &fc), 0);
	cr_assert_eq(json_array_size(fc.notes), 3);
	for (int i = 0; i < 3; i++) {
		json_t *p = json_object_get(json_array_get(fc.notes, (size_t)i), "params");

		cr_assert_str_eq(json_string_value(json_object_get(p, "progressToken")), "t1");
		cr_assert_eq(json_integer_value(json_object_get(p, "progress")), 50 * i);
		cr_assert_eq(json_integer_value(json_object_get(p, "total")), 100);
	}
	mc_fixtures_call_done(&fc);
	cr_assert_eq(call("{\"name\":\"test_tool_with_progress\"}", 0, &fc), 0);
	cr_assert_eq(json_array_size(fc.notes), 0);        /* no token: no progress */
	mc_fixtures_call_done(&fc);
}

Test(mcp_fixtures, sampling_round_trip)
{
	struct mc_fixture_call fc;
	json_t *resp, *res;

	cr_assert_eq(call("{\"name\":\"test_sampling\",\"arguments\":{\"prompt\":\"hi\"}}", 0, &fc), 0);
	cr_assert_null(fc.result);
	cr_assert_str_eq(json_string_value(json_object_get(fc.request, "method")),
	    "sampling/createMessage");
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(fc.request, "params"),
	    "maxTokens")), 100);
	resp = j("{\"jsonrpc\":\"2.0\",\"id\":\"mcpcore-1\",\"result\":{\"role\":\"assistant\","
	    "\"content\":{\"type\":\"text\",\"text\":\"hello\"},\"model\":\"m\"}}");
	res = mc_fixtures_finish(fc.tool, resp);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(res,
	    "content"), 0), "text")), "LLM response: hello");
	json_decref(res);
	json_decref(resp);
	/* a refusal becomes a tool error */
	resp = j("{\"jsonrpc\":\"2.0\",\"id\":\"mcpcore-1\",\"error\":{\"code\":-1,\"message\":\"no\"}}");
	res = mc_fixtures_finish(fc.tool, resp);
	cr_assert(json_is_true(json_object_get(res, "isError")));
	json_decref(res);
	json_decref(resp);
	mc_fixtures_call_done(&fc);
}

Test(mcp_fixtures, elicitation_schemas)
{
	struct mc_fixture_call fc;
	json_t *props, *resp, *res;

	cr_assert_eq(call("{\"name\":\"test_elicitation_sep1034_defaults\"}", 0, &fc), 0);
	cr_assert_str_eq(json_string_value(json_object_get(fc.request, "method")),
	    "elicitation/create");
	props = json_object_get(json_object_get(json_object_get(fc.request, "params"),
	    "requestedSchema"), "properties");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(props, "name"),
	    "default")), "John Doe");
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(props, "age"), "default")), 30);
	cr_assert_float_eq(json_real_value(json_object_get(json_object_get(props, "score"),
	    "default")), 95.5, 1e-9);
	cr_assert(json_is_true(json_object_get(json_object_get(props, "verified"), "default")));
	mc_fixtures_call_done(&fc);

	cr_assert_eq(call("{\"name\":\"test_elicitation_sep1330_enums\"}", 0, &fc), 0);
	props = json_object_get(json_object_get(json_object_get(fc.request, "params"),
	    "requestedSchema"), "properties");
	cr_assert_eq(json_object_size(props), 5);
	cr_assert_eq(json_array_size(json_object_get(json_object_get(props, "titledSingle"),
	    "oneOf")), 3);
	cr_assert_eq(json_array_size(json_object_get(json_object_get(props, "legacyEnum"),
	    "enumNames")), 3);
	mc_fixtures_call_done(&fc);

	cr_assert_eq(call("{\"name\":\"test_elicitation\",\"arguments\":{\"message\":\"who?\"}}", 0,
	    &fc), 0);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(fc.request, "params"),
	    "message")), "who?");
	resp = j("{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"result\":{\"action\":\"accept\","
	    "\"content\":{\"username\":\"u\"}}}");
	res = mc_fixtures_finish(fc.tool, resp);
	cr_assert_not_null(strstr(json_string_value(json_object_get(json_array_get(
	    json_object_get(res, "content"), 0), "text")), "action=accept"));
	json_decref(res);
	json_decref(resp);
	mc_fixtures_call_done(&fc);
}

Test(mcp_fixtures, resources)
{
	json_t *r = mc_fixtures_resources(), *c;

	cr_assert_geq(json_array_size(json_object_get(r, "resources")), 2);
	json_decref(r);
	r = mc_fixtures_templates();
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(r,
	    "resourceTemplates"), 0), "uriTemplate")), "test://template/{id}/data");
	json_decref(r);

	cr_assert_eq(mc_fixtures_read("test://static-text", &r), 0);
	c = json_array_get(json_object_get(r, "contents"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(c, "mimeType")), "text/plain");
	cr_assert_not_null(json_object_get(c, "text"));
	json_decref(r);
	cr_assert_eq(mc_fixtures_read("test://static-binary", &r), 0);
	cr_assert_not_null(json_object_get(json_array_get(json_object_get(r, "contents"), 0), "blob"));
	json_decref(r);
	cr_assert_eq(mc_fixtures_read("test://template/123/data", &r), 0);
	c = json_array_get(json_object_get(r, "contents"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(c, "uri")), "test://template/123/data");
	cr_assert_not_null(strstr(json_string_value(json_object_get(c, "text")), "\"id\":\"123\""));
	json_decref(r);
	cr_assert_eq(mc_fixtures_read("test://template//data", &r), -ENOENT);
	cr_assert_eq(mc_fixtures_read("test://template/1/2/data", &r), -ENOENT);
	cr_assert_eq(mc_fixtures_read("test://nope", &r), -ENOENT);
	cr_assert(mc_fixtures_resource_known("test://watched-resource"));
	cr_assert_not(mc_fixtures_resource_known("file:///etc/passwd"));
}

Test(mcp_fixtures, prompts)
{
	json_t *r = mc_fixtures_prompts(), *p;
	char err[256];

	cr_assert_eq(json_array_size(json_object_get(r, "prompts")), 4);
	json_decref(r);

	p = j("{\"name\":\"test_prompt_with_arguments\",\"arguments\":{\"arg1\":\"A\",\"arg2\":\"B\"}}");
	cr_assert_eq(mc_fixtures_prompt(p, &r, err, sizeof(err)), 0);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(json_array_get(
	    json_object_get(r, "messages"), 0), "content"), "text")),
	    "Prompt with arguments: arg1='A', arg2='B'");
	json_decref(r);
	json_decref(p);

	p = j("{\"name\":\"test_prompt_with_embedded_resource\",\"arguments\":{\"resourceUri\":\"test://x\"}}");
	cr_assert_eq(mc_fixtures_prompt(p, &r, err, sizeof(err)), 0);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(
	    json_array_get(json_object_get(r, "messages"), 0), "content"), "resource"), "uri")),
	    "test://x");
	json_decref(r);
	json_decref(p);

	p = j("{\"name\":\"test_prompt_with_image\"}");
	cr_assert_eq(mc_fixtures_prompt(p, &r, err, sizeof(err)), 0);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(json_array_get(
	    json_object_get(r, "messages"), 0), "content"), "type")), "image");
	json_decref(r);
	json_decref(p);

	p = j("{\"name\":\"test_prompt_with_arguments\",\"arguments\":{\"arg1\":\"A\"}}");
	cr_assert_eq(mc_fixtures_prompt(p, &r, err, sizeof(err)), MC_RPC_INVALID_PARAMS);
	json_decref(p);
	p = j("{\"name\":\"nope\"}");
	cr_assert_eq(mc_fixtures_prompt(p, &r, err, sizeof(err)), MC_RPC_INVALID_PARAMS);
	cr_assert_not_null(strstr(err, "nope"));
	json_decref(p);
}

Test(mcp_fixtures, completion_filters_by_prefix)
{
	json_t *p = j("{\"ref\":{\"type\":\"ref/prompt\",\"name\":\"test_prompt_with_arguments\"},"
	    "\"argument\":{\"name\":\"arg1\",\"value\":\"par\"}}");
	json_t *r = mc_fixtures_complete(p), *c = json_object_get(r, "completion");

	cr_assert_eq(json_array_size(json_object_get(c, "values")), 3);
	cr_assert_eq(json_integer_value(json_object_get(c, "total")), 3);
	cr_assert(json_is_false(json_object_get(c, "hasMore")));
	json_decref(r);
	json_decref(p);
}
