/*
 * jsonrpc.c - JSON-RPC 2.0 message shape for the MCP front door
 * (contract in mc_protocol.h).
 *
 * What a message must look like (JSON-RPC 2.0 as MCP narrows it):
 *   - one JSON object (batches are not part of MCP 2025-06-18 and later,
 *     the only versions served, so an array is an invalid request);
 *   - "jsonrpc" exactly "2.0";
 *   - a request has "method" (non-empty string) and "id" (string or
 *     integer: MCP forbids null, and fractional numbers are refused);
 *     a notification has "method" and no "id"; "params", when present, is
 *     an object (MCP never uses positional params);
 *   - a response has "id" and exactly one of "result" / "error" (an
 *     object with an integer "code" and a string "message"), no "method".
 * The decoder refuses invalid UTF-8, NUL characters and duplicate keys,
 * so no later layer sees ambiguous input.  Members beyond these are
 * ignored (MCP adds none at this level, but JSON-RPC permits extension).
 */
#include "mc_protocol.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int mc_rpc_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int mc_rpc_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return code;
}

/* A usable request id: a string, or a number that is an integer. */
static bool mc_rpc_id_ok(const json_t *id)
{
	return json_is_string(id) || json_is_integer(id);
}

static int mc_rpc_check_response(struct mc_rpc_msg *out, char *err, size_t errlen)
{
	json_t *result = json_object_get(out->root, "result");
	json_t *error = json_object_get(out->root, "error");

	if ((result == NULL) == (error == NULL))
		return mc_rpc_fail(err, errlen, MC_RPC_INVALID_REQUEST,
		    "a response must have exactly one of \"result\" and \"error\"");
	if (error != NULL && (!json_is_object(error) ||
	    !json_is_integer(json_object_get(error, "code")) ||
	    !json_is_string(json_object_get(error, "message"))))
		return mc_rpc_fail(err, errlen, MC_RPC_INVALID_REQUEST,
		    "\"error\" must be an object with an integer \"code\" and a string \"message\"");
	out->kind = MC_RPC_RESPONSE;
	return 0;
}

static int mc_rpc_classify(struct mc_rpc_msg *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(out->root, "jsonrpc");
	json_t *id = json_object_get(out->root, "id");
	json_t *method = json_object_get(out->root, "method");

	if (!json_is_string(v) || strcmp(json_string_value(v), "2.0") != 0)
		return mc_rpc_fail(err, errlen, MC_RPC_INVALID_REQUEST,
		    "\"jsonrpc\" must be the string \"2.0\"");
	if (id != NULL && !mc_rpc_id_ok(id))
		return mc_rpc_fail(err, errlen, MC_RPC_INVALID_REQUEST,
		    "\"id\" must be a string or an integer (not null, not fractional)");
	out->id = id;
	if (method == NULL) {
		if (id == NULL)
			return mc_rpc_fail(err, errlen, MC_RPC_INVALID_REQUEST,
			    "neither \"method\" nor \"id\": not a request, notification or response");
		return mc_rpc_check_response(out, err, errlen);
	}
	if (!json_is_string(method) || json_string_length(method) == 0)
		return mc_rpc_fail(err, errlen, MC_RPC_INVALID_REQUEST,
		    "\"method\" must be a non-empty string");
	if (json_object_get(out->root, "result") || json_object_get(out->root, "error"))
		return mc_rpc_fail(err, errlen, MC_RPC_INVALID_REQUEST,
		    "a request cannot carry \"result\" or \"error\"");
	out->method = json_string_value(method);
	out->params = json_object_get(out->root, "params");
	if (out->params != NULL && !json_is_object(out->params))
		return mc_rpc_fail(err, errlen, MC_RPC_INVALID_REQUEST,
		    "\"params\" must be an object");
	out->kind = id != NULL ? MC_RPC_REQUEST : MC_RPC_NOTIFICATION;
	return 0;
}

int mc_rpc_parse(const char *buf, size_t len, struct mc_rpc_msg *out, char *err, size_t errlen)
{
	json_error_t je;
	int rc;

	memset(out, 0, sizeof(*out));
	out->root = mc_json_load(buf, len, &je);
	if (out->root == NULL)
		return mc_rpc_fail(err, errlen, MC_RPC_PARSE_ERROR, "invalid JSON at byte %d: %s",
		    je.position, je.text);
	if (json_is_array(out->root)) {
		rc = mc_rpc_fail(err, errlen, MC_RPC_INVALID_REQUEST,
		    "JSON-RPC batches are not supported (MCP 2025-06-18 and later send one message per POST)");
		goto fail;
	}
	if (!json_is_object(out->root)) {
		rc = mc_rpc_fail(err, errlen, MC_RPC_INVALID_REQUEST,
		    "a JSON-RPC message must be a JSON object");
		goto fail;
	}
	rc = mc_rpc_classify(out, err, errlen);
	if (rc == 0)
		return 0;
fail:
	/* keep a readable id for the error response, drop the rest */
	{
		json_t *id = json_is_object(out->root) ? json_object_get(out->root, "id") : NULL;

		out->id = mc_rpc_id_ok(id) ? json_incref(id) : NULL;
	}
	json_decref(out->root);
	out->root = NULL;
	out->method = NULL;
	out->params = NULL;
	return rc;
}

/* Built call by call, not with json_pack: every answer goes through here,
 * and pack's format parsing and key checks cost a tenth of a microsecond
 * each time for keys that are ours. */
json_t *mc_rpc_result(json_t *id, json_t *result)
{
	json_t *doc = json_object();
	bool bad = false;

	/* the _new calls take their value even when they fail */
	bad |= json_object_set_new_nocheck(doc, "jsonrpc", json_string_nocheck("2.0")) != 0;
	bad |= json_object_set_nocheck(doc, "id", id ? id : json_null()) != 0;
	bad |= json_object_set_new_nocheck(doc, "result", result ? result : json_object()) != 0;
	if (bad) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

json_t *mc_rpc_error(json_t *id, int code, const char *message, json_t *data)
{
	json_t *e = json_pack("{s:i, s:s}", "code", code, "message", message);

	if (e != NULL && data != NULL)
		json_object_set_new(e, "data", data);
	else if (data != NULL)
		json_decref(data);
	return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(),
	    "error", e);
}

void mc_rpc_result_open(struct mc_jtext *t, const json_t *id)
{
	mc_jtext_lit(t, "{\"jsonrpc\":\"2.0\",\"id\":");
	if (id != NULL)
		mc_jtext_json(t, id);
	else
		mc_jtext_lit(t, "null");
	mc_jtext_lit(t, ",\"result\":");
}
