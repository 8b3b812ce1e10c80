/*
 * fixtures.c - the conformance fixtures (contract in mc_protocol.h): the
 * tools, resources, prompts and completions that the official MCP
 * conformance suite (@modelcontextprotocol/conformance, "server"
 * scenarios) calls by name.  Served only with [protocol]
 * conformance_fixtures = true; no state, no I/O.
 *
 * The suite checks shapes, not bytes, so the content is small and fixed
 * (a 1x1 PNG, an 8-sample WAV, short texts).
 *
 * A fixture tool call comes out in one of two forms:
 *   - answered now: a CallToolResult, preceded by the notifications it
 *     sends while it runs (logging, progress), which mcp.c writes as SSE
 *     events before the result on the POST's response;
 *   - answered later (test_reconnection, out->deferred): mcp.c ends the
 *     POST's stream after a priming event and sends the result when the
 *     client resumes with a GET carrying Last-Event-ID;
 *   - a request to the client (sampling/createMessage, elicitation/create):
 *     mcp.c sends it on the POST's SSE stream, waits for the client's
 *     response (a later POST) and builds the result with
 *     mc_fixtures_finish.
 *
 * INVARIANTS
 *   - Every function returns new references; nothing here keeps a
 *     reference to its arguments.
 *   - Fixture names never collide with the runtime's own tools (state_*,
 *     runtime_status), so mc_fixtures_call can be tried first.
 */
#include "mc_protocol.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A 1x1 red PNG and a mono 8 kHz WAV of 8 silent samples (generated, not copied). */
#define MC_FX_PNG "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
#define MC_FX_WAV "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA=="

#define MC_FX_SCHEMA_NONE "{\"type\":\"object\",\"properties\":{}}"

enum mc_fx_tool {
	MC_FX_TEXT, MC_FX_IMAGE, MC_FX_AUDIO, MC_FX_EMBEDDED, MC_FX_MIXED, MC_FX_LOGGING,
	MC_FX_PROGRESS, MC_FX_ERROR, MC_FX_SAMPLING, MC_FX_ELICIT, MC_FX_ELICIT_DEFAULTS,
	MC_FX_ELICIT_ENUMS, MC_FX_SCHEMA2020, MC_FX_RECONNECT, MC_FX_NTOOLS
};

static const struct {
	const char *name;
	const char *description;
	const char *schema;             /* JSON text */
} mc_fx_tools[MC_FX_NTOOLS] = {
	[MC_FX_TEXT] = { "test_simple_text", "Returns a simple text content", MC_FX_SCHEMA_NONE },
	[MC_FX_IMAGE] = { "test_image_content", "Returns an image (PNG)", MC_FX_SCHEMA_NONE },
	[MC_FX_AUDIO] = { "test_audio_content", "Returns audio (WAV)", MC_FX_SCHEMA_NONE },
	[MC_FX_EMBEDDED] = { "test_embedded_resource", "Returns an embedded resource",
	    MC_FX_SCHEMA_NONE },
	[MC_FX_MIXED] = { "test_multiple_content_types", "Returns text, image and resource",
	    MC_FX_SCHEMA_NONE },
	[MC_FX_LOGGING] = { "test_tool_with_logging", "Sends three log messages while it runs",
	    MC_FX_SCHEMA_NONE },
	[MC_FX_PROGRESS] = { "test_tool_with_progress",
	    "Sends progress notifications (0, 50, 100 of 100) when given a progressToken",
	    MC_FX_SCHEMA_NONE },
	[MC_FX_ERROR] = { "test_error_handling", "Always fails (isError: true)", MC_FX_SCHEMA_NONE },
	[MC_FX_SAMPLING] = { "test_sampling", "Asks the client for an LLM completion",
	    "{\"type\":\"object\",\"properties\":{\"prompt\":{\"type\":\"string\"}},"
	    "\"required\":[\"prompt\"]}" },
	[MC_FX_ELICIT] = { "test_elicitation", "Asks the user for a username and an email",
	    "{\"type\":\"object\",\"properties\":{\"message\":{\"type\":\"string\"}},"
	    "\"required\":[\"message\"]}" },
	[MC_FX_ELICIT_DEFAULTS] = { "test_elicitation_sep1034_defaults",
	    "Elicitation with a default for every primitive type (SEP-1034)", MC_FX_SCHEMA_NONE },
	[MC_FX_ELICIT_ENUMS] = { "test_elicitation_sep1330_enums",
	    "Elicitation with the five enum schema forms (SEP-1330)", MC_FX_SCHEMA_NONE },
	[MC_FX_SCHEMA2020] = { "json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features",
	    "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"type\":\"object\","
	    "\"$defs\":{\"address\":{\"type\":\"object\",\"properties\":{"
	    "\"street\":{\"type\":\"string\"},\"city\":{\"type\":\"string\"}}}},"
	    "\"properties\":{\"name\":{\"type\":\"string\"},"
	    "\"address\":{\"$ref\":\"#/$defs/address\"}},\"additionalProperties\":false}" },
	[MC_FX_RECONNECT] = { "test_reconnection",
	    "Closes its SSE stream before the result, which comes on the resumed GET stream "
	    "(SEP-1699)", MC_FX_SCHEMA_NONE },
};

/* What the elicitation fixtures ask for (requestedSchema, JSON text). */
static const char mc_fx_elicit_schema[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"username\":{\"type\":\"string\",\"description\":\"User's response\"},"
    "\"email\":{\"type\":\"string\",\"description\":\"User's email address\"}},"
    "\"required\":[\"username\",\"email\"]}";
static const char mc_fx_defaults_schema[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"description\":\"User name\",\"default\":\"John Doe\"},"
    "\"age\":{\"type\":\"integer\",\"description\":\"User age\",\"default\":30},"
    "\"score\":{\"type\":\"number\",\"description\":\"User score\",\"default\":95.5},"
    "\"status\":{\"type\":\"string\",\"description\":\"User status\","
    "\"enum\":[\"active\",\"inactive\",\"pending\"],\"default\":\"active\"},"
    "\"verified\":{\"type\":\"boolean\",\"description\":\"Verification status\","
    "\"default\":true}},\"required\":[]}";
static const char mc_fx_enums_schema[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"untitledSingle\":{\"type\":\"string\",\"enum\":[\"option1\",\"option2\",\"option3\"]},"
    "\"titledSingle\":{\"type\":\"string\",\"oneOf\":["
    "{\"const\":\"value1\",\"title\":\"First Option\"},"
    "{\"const\":\"value2\",\"title\":\"Second Option\"},"
    "{\"const\":\"value3\",\"title\":\"Third Option\"}]},"
    "\"legacyEnum\":{\"type\":\"string\",\"enum\":[\"opt1\",\"opt2\",\"opt3\"],"
    "\"enumNames\":[\"Option One\",\"Option Two\",\"Option Three\"]},"
    "\"untitledMulti\":{\"type\":\"array\",\"items\":{\"type\":\"string\","
    "\"enum\":[\"option1\",\"option2\",\"option3\"]}},"
    "\"titledMulti\":{\"type\":\"array\",\"items\":{\"anyOf\":["
    "{\"const\":\"value1\",\"title\":\"First Choice\"},"
    "{\"const\":\"value2\",\"title\":\"Second Choice\"},"
    "{\"const\":\"value3\",\"title\":\"Third Choice\"}]}}},\"required\":[]}";

json_t *mc_fixtures_tools(void)
{
	json_t *a = json_array();

	for (int i = 0; a != NULL && i < MC_FX_NTOOLS; i++) {
		json_t *schema = json_loads(mc_fx_tools[i].schema, 0, NULL);

		if (schema == NULL || json_array_append_new(a, json_pack("{s:s, s:s, s:o}",
		    "name", mc_fx_tools[i].name, "description", mc_fx_tools[i].description,
		    "inputSchema", schema)) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *mc_fx_text(const char *text)
{
	return json_pack("{s:s, s:s}", "type", "text", "text", text);
}

static json_t *mc_fx_content(json_t *item)
{
	return json_pack("{s:[o]}", "content", item);
}

static json_t *mc_fx_log(const char *msg)
{
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:s}}", "jsonrpc", "2.0",
	    "method", "notifications/message",
	    "params", "level", "info", "logger", "test_tool_with_logging", "data", msg);
}

static json_t *mc_fx_progress(json_t *token, int done)
{
	return json_pack("{s:s, s:s, s:{s:O, s:i, s:i}}", "jsonrpc", "2.0",
	    "method", "notifications/progress",
	    "params", "progressToken", token, "progress", done, "total", 100);
}

/* The notifications a tool sends while it runs (an array, possibly empty). */
static json_t *mc_fx_notes(int t, const json_t *params, int log_level)
{
	json_t *notes = json_array();
	json_t *meta = json_object_get(params, "_meta");
	json_t *token = json_object_get(meta, "progressToken");

	if (notes == NULL)
		return NULL;
	if (t == MC_FX_LOGGING && log_level <= mc_session_log_level("info")) {
		json_array_append_new(notes, mc_fx_log("Tool execution started"));
		json_array_append_new(notes, mc_fx_log("Tool processing data"));
		json_array_append_new(notes, mc_fx_log("Tool execution completed"));
	}
	if (t == MC_FX_PROGRESS && (json_is_string(token) || json_is_integer(token)))
		for (int done = 0; done <= 100; done += 50)
			json_array_append_new(notes, mc_fx_progress(token, done));
	return notes;
}

/* The client request a tool sends (method + params, no id yet). */
static json_t *mc_fx_request(int t, const json_t *args)
{
	const char *text = json_string_value(json_object_get(args, "prompt"));
	const char *schema = mc_fx_elicit_schema;
	const char *msg = json_string_value(json_object_get(args, "message"));

	if (t == MC_FX_SAMPLING)
		return json_pack("{s:s, s:{s:[{s:s, s:{s:s, s:s}}], s:i}}", "method",
		    "sampling/createMessage", "params", "messages", "role", "user", "content",
		    "type", "text", "text", text ? text : "", "maxTokens", 100);
	if (t == MC_FX_ELICIT_DEFAULTS) {
		schema = mc_fx_defaults_schema;
		msg = "Test client default value handling - please accept with defaults";
	} else if (t == MC_FX_ELICIT_ENUMS) {
		schema = mc_fx_enums_schema;
		msg = "Test enum schema variants - please choose";
	}
	return json_pack("{s:s, s:{s:s, s:o}}", "method", "elicitation/create", "params",
	    "message", msg ? msg : "", "requestedSchema", json_loads(schema, 0, NULL));
}

static json_t *mc_fx_result(int t)
{
	json_t *res = NULL;

	switch (t) {
	case MC_FX_TEXT:
		return mc_fx_content(mc_fx_text("This is a simple text response for testing."));
	case MC_FX_IMAGE:
		return mc_fx_content(json_pack("{s:s, s:s, s:s}", "type", "image", "data", MC_FX_PNG,
		    "mimeType", "image/png"));
	case MC_FX_AUDIO:
		return mc_fx_content(json_pack("{s:s, s:s, s:s}", "type", "audio", "data", MC_FX_WAV,
		    "mimeType", "audio/wav"));
	case MC_FX_EMBEDDED:
		return mc_fx_content(json_pack("{s:s, s:{s:s, s:s, s:s}}", "type", "resource",
		    "resource", "uri", "test://embedded-resource", "mimeType", "text/plain",
		    "text", "This is an embedded resource content."));
	case MC_FX_MIXED:
		return json_pack("{s:[o, {s:s, s:s, s:s}, {s:s, s:{s:s, s:s, s:s}}]}", "content",
		    mc_fx_text("Multiple content types test:"),
		    "type", "image", "data", MC_FX_PNG, "mimeType", "image/png",
		    "type", "resource", "resource", "uri", "test://mixed-content-resource",
		    "mimeType", "application/json", "text", "{\"test\":\"data\",\"value\":123}");
	case MC_FX_LOGGING:
		return mc_fx_content(mc_fx_text("Tool with logging executed successfully"));
	case MC_FX_PROGRESS:
		return mc_fx_content(mc_fx_text("Tool with progress executed successfully"));
	case MC_FX_RECONNECT:
		return mc_fx_content(mc_fx_text("Reconnection test completed successfully"));
	case MC_FX_ERROR:
		res = mc_fx_content(mc_fx_text("This tool intentionally returns an error for testing"));
		json_object_set_new(res, "isError", json_true());
		return res;
	default:
		return mc_fx_content(mc_fx_text("ok"));
	}
}

int mc_fixtures_call(const json_t *params, int log_level, struct mc_fixture_call *out,
    char *err, size_t errlen)
{
	const char *name = json_string_value(json_object_get(params, "name"));
	json_t *args = json_object_get(params, "arguments");
	int t;

	memset(out, 0, sizeof(*out));
	for (t = 0; name != NULL && t < MC_FX_NTOOLS; t++)
		if (strcmp(name, mc_fx_tools[t].name) == 0)
			break;
	if (name == NULL || t == MC_FX_NTOOLS)
		return -ENOENT;
	if (args != NULL && !json_is_object(args)) {
		snprintf(err, errlen, "arguments must be an object");
		return MC_RPC_INVALID_PARAMS;
	}
	if ((t == MC_FX_SAMPLING && !json_is_string(json_object_get(args, "prompt"))) ||
	    (t == MC_FX_ELICIT && !json_is_string(json_object_get(args, "message")))) {
		snprintf(err, errlen, "arguments.%s: expected a string",
		    t == MC_FX_SAMPLING ? "prompt" : "message");
		return MC_RPC_INVALID_PARAMS;
	}
	out->tool = t;
	out->deferred = t == MC_FX_RECONNECT;
	out->notes = mc_fx_notes(t, params, log_level);
	if (t == MC_FX_SAMPLING || t == MC_FX_ELICIT || t == MC_FX_ELICIT_DEFAULTS ||
	    t == MC_FX_ELICIT_ENUMS)
		out->request = mc_fx_request(t, args);
	else
		out->result = mc_fx_result(t);
	if (out->notes == NULL || (out->request == NULL && out->result == NULL)) {
		mc_fixtures_call_done(out);
		return -ENOMEM;
	}
	return 0;
}

json_t *mc_fixtures_finish(int tool, const json_t *response)
{
	const json_t *result = json_object_get(response, "result");
	char *dump = NULL;
	char buf[1024];
	json_t *res;

	if (result == NULL) {
		const char *m = json_string_value(json_object_get(json_object_get(response, "error"),
		    "message"));

		snprintf(buf, sizeof(buf), "the client refused the request: %s", m ? m : "error");
		res = mc_fx_content(mc_fx_text(buf));
		json_object_set_new(res, "isError", json_true());
		return res;
	}
	if (tool == MC_FX_SAMPLING) {
		const char *text = json_string_value(json_object_get(json_object_get(result,
		    "content"), "text"));

		snprintf(buf, sizeof(buf), "LLM response: %s", text ? text : "");
		return mc_fx_content(mc_fx_text(buf));
	}
	dump = json_dumps(json_object_get(result, "content"), JSON_COMPACT | JSON_ENCODE_ANY);
	snprintf(buf, sizeof(buf), "%s: action=%s, content=%s",
	    tool == MC_FX_ELICIT ? "User response" : "Elicitation completed",
	    json_string_value(json_object_get(result, "action")) ?
	    json_string_value(json_object_get(result, "action")) : "?", dump ? dump : "{}");
	free(dump);
	return mc_fx_content(mc_fx_text(buf));
}

void mc_fixtures_call_done(struct mc_fixture_call *c)
{
	json_decref(c->notes);
	json_decref(c->request);
	json_decref(c->result);
	c->notes = c->request = c->result = NULL;
}

/* ---- resources -------------------------------------------------------------- */

json_t *mc_fixtures_resources(void)
{
	return json_pack("{s:[{s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s}]}",
	    "resources",
	    "uri", "test://static-text", "name", "static-text",
	    "description", "A static text resource", "mimeType", "text/plain",
	    "uri", "test://static-binary", "name", "static-binary",
	    "description", "A static binary resource (PNG)", "mimeType", "image/png",
	    "uri", "test://watched-resource", "name", "watched-resource",
	    "description", "A resource clients may subscribe to", "mimeType", "text/plain");
}

json_t *mc_fixtures_templates(void)
{
	return json_pack("{s:[{s:s, s:s, s:s, s:s}]}", "resourceTemplates",
	    "uriTemplate", "test://template/{id}/data", "name", "template-data",
	    "description", "Data for an id", "mimeType", "application/json");
}

/* "test://template/{id}/data": the id, or NULL. */
static int mc_fx_template_id(const char *uri, char *id, size_t cap)
{
	static const char pre[] = "test://template/", post[] = "/data";
	size_t n = strlen(uri), pl = sizeof(pre) - 1, sl = sizeof(post) - 1;

	if (n <= pl + sl || strncmp(uri, pre, pl) != 0 || strcmp(uri + n - sl, post) != 0 ||
	    n - pl - sl >= cap || memchr(uri + pl, '/', n - pl - sl) != NULL)
		return -ENOENT;
	memcpy(id, uri + pl, n - pl - sl);
	id[n - pl - sl] = '\0';
	return 0;
}

int mc_fixtures_read(const char *uri, json_t **result)
{
	char id[128];
	json_t *c = NULL;

	*result = NULL;
	if (strcmp(uri, "test://static-text") == 0) {
		c = json_pack("{s:s, s:s, s:s}", "uri", uri, "mimeType", "text/plain",
		    "text", "This is the content of the static text resource.");
	} else if (strcmp(uri, "test://static-binary") == 0) {
		c = json_pack("{s:s, s:s, s:s}", "uri", uri, "mimeType", "image/png", "blob", MC_FX_PNG);
	} else if (strcmp(uri, "test://watched-resource") == 0) {
		c = json_pack("{s:s, s:s, s:s}", "uri", uri, "mimeType", "text/plain",
		    "text", "Watched resource content.");
	} else if (mc_fx_template_id(uri, id, sizeof(id)) == 0) {
		json_t *doc = json_pack("{s:s, s:b, s:s+}", "id", id, "templateTest", 1,
		    "data", "Data for ID: ", id);
		char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;

		json_decref(doc);
		if (text != NULL)
			c = json_pack("{s:s, s:s, s:s}", "uri", uri, "mimeType", "application/json",
			    "text", text);
		free(text);
	} else {
		return -ENOENT;
	}
	*result = c ? json_pack("{s:[o]}", "contents", c) : NULL;
	return *result ? 0 : -ENOMEM;
}

bool mc_fixtures_resource_known(const char *uri)
{
	json_t *r = NULL;
	int rc = mc_fixtures_read(uri, &r);

	json_decref(r);
	return rc == 0;
}

/* ---- prompts ---------------------------------------------------------------- */

json_t *mc_fixtures_prompts(void)
{
	return json_pack("{s:[{s:s, s:s}, {s:s, s:s, s:[{s:s, s:s, s:b}, {s:s, s:s, s:b}]},"
	    " {s:s, s:s, s:[{s:s, s:s, s:b}]}, {s:s, s:s}]}", "prompts",
	    "name", "test_simple_prompt", "description", "A simple prompt without arguments",
	    "name", "test_prompt_with_arguments", "description", "A prompt with two arguments",
	    "arguments", "name", "arg1", "description", "First test argument", "required", 1,
	    "name", "arg2", "description", "Second test argument", "required", 1,
	    "name", "test_prompt_with_embedded_resource",
	    "description", "A prompt embedding a resource",
	    "arguments", "name", "resourceUri", "description", "URI of the resource to embed",
	    "required", 1,
	    "name", "test_prompt_with_image", "description", "A prompt with an image");
}

static json_t *mc_fx_msg(json_t *content)
{
	return json_pack("{s:s, s:o}", "role", "user", "content", content);
}

int mc_fixtures_prompt(const json_t *params, json_t **result, char *err, size_t errlen)
{
	const char *name = json_string_value(json_object_get(params, "name"));
	json_t *args = json_object_get(params, "arguments");
	const char *a1 = json_string_value(json_object_get(args, "arg1"));
	const char *a2 = json_string_value(json_object_get(args, "arg2"));
	const char *uri = json_string_value(json_object_get(args, "resourceUri"));
	char buf[512];

	*result = NULL;
	if (name == NULL) {
		snprintf(err, errlen, "prompts/get needs params.name (a string)");
		return MC_RPC_INVALID_PARAMS;
	}
	if (strcmp(name, "test_simple_prompt") == 0) {
		*result = json_pack("{s:[o]}", "messages",
		    mc_fx_msg(mc_fx_text("This is a simple prompt for testing.")));
	} else if (strcmp(name, "test_prompt_with_arguments") == 0) {
		if (a1 == NULL || a2 == NULL) {
			snprintf(err, errlen, "arguments arg1 and arg2 (strings) are required");
			return MC_RPC_INVALID_PARAMS;
		}
		snprintf(buf, sizeof(buf), "Prompt with arguments: arg1='%.200s', arg2='%.200s'", a1, a2);
		*result = json_pack("{s:[o]}", "messages", mc_fx_msg(mc_fx_text(buf)));
	} else if (strcmp(name, "test_prompt_with_embedded_resource") == 0) {
		if (uri == NULL) {
			snprintf(err, errlen, "argument resourceUri (a string) is required");
			return MC_RPC_INVALID_PARAMS;
		}
		*result = json_pack("{s:[o, o]}", "messages",
		    mc_fx_msg(json_pack("{s:s, s:{s:s, s:s, s:s}}", "type", "resource", "resource",
		    "uri", uri, "mimeType", "text/plain",
		    "text", "Embedded resource content for testing.")),
		    mc_fx_msg(mc_fx_text("Please process the embedded resource above.")));
	} else if (strcmp(name, "test_prompt_with_image") == 0) {
		*result = json_pack("{s:[o, o]}", "messages",
		    mc_fx_msg(json_pack("{s:s, s:s, s:s}", "type", "image", "data", MC_FX_PNG,
		    "mimeType", "image/png")),
		    mc_fx_msg(mc_fx_text("Please analyze the image above.")));
	} else {
		snprintf(err, errlen, "unknown prompt \"%.100s\"", name);
		return MC_RPC_INVALID_PARAMS;
	}
	return *result ? 0 : -ENOMEM;
}

json_t *mc_fixtures_complete(const json_t *params)
{
	const char *value = json_string_value(json_object_get(json_object_get(params, "argument"),
	    "value"));
	static const char *const words[] = { "paris", "park", "party", "test", "testing", NULL };
	json_t *values = json_array();
	size_t n = value ? strlen(value) : 0;

	for (int i = 0; values != NULL && words[i]; i++)
		if (strncmp(words[i], value ? value : "", n) == 0)
			json_array_append_new(values, json_string(words[i]));
	return json_pack("{s:{s:o, s:I, s:b}}", "completion", "values", values,
	    "total", (json_int_t)json_array_size(values), "hasMore", 0);
}
