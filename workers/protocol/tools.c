/*
 * tools.c - the tools the runtime serves over MCP (contract in
 * mc_protocol.h): state_get, state_set, state_cas, state_delete,
 * state_scan and runtime_status.
 *
 * Each tool has a JSON Schema for its input (returned by tools/list), and
 * tools/call checks the arguments against that same schema object with
 * mc_schema_check, so what is advertised is what is enforced.  A call that
 * does not match (or names an unknown tool) is a protocol error (-32602);
 * a call that runs and fails (key absent, value too large, table full) is
 * a tool result with isError: true, as the MCP tools page prescribes.
 *
 * Reads (state_get, state_scan, runtime_status) are answered at once from
 * shared memory.  Writes become one StateOp for the state worker; the
 * caller sends it and calls mc_tools_finish with the result.
 *
 * The session namespace (MC_SESSION_NS) is reserved: tools may neither
 * read nor write it, so a client cannot learn or forge another client's
 * session id.  Values are strings; a stored value that is not UTF-8
 * (written by another client) is returned hex-encoded as value_hex.
 */
#include "mc_protocol.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_state.h"
#include "mc_status.h"
#include "mc_util.h"

#define MC_SCAN_LIMIT_MAX 1000

enum mc_tool_id { MC_T_GET, MC_T_SET, MC_T_CAS, MC_T_DELETE, MC_T_SCAN, MC_T_STATUS, MC_T_N };

static const struct {
	const char *name;
	const char *title;
	const char *description;
	const char *schema;             /* JSON text */
} mc_tool_defs[MC_T_N] = {
	[MC_T_GET] = { "state_get", "Read a key",
	    "Read the value of a key in the runtime's state manager (shared memory, lock-free).",
	    "{\"type\":\"object\",\"properties\":{"
	    "\"namespace\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":1024},"
	    "\"key\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":1024}},"
	    "\"required\":[\"namespace\",\"key\"],\"additionalProperties\":false}" },
	[MC_T_SET] = { "state_set", "Write a key",
	    "Set a key to a string value; returns the new version.",
	    "{\"type\":\"object\",\"properties\":{"
	    "\"namespace\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":1024},"
	    "\"key\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":1024},"
	    "\"value\":{\"type\":\"string\"},"
	    "\"ttl_ms\":{\"type\":\"integer\",\"minimum\":0}},"
	    "\"required\":[\"namespace\",\"key\",\"value\"],\"additionalProperties\":false}" },
	[MC_T_CAS] = { "state_cas", "Compare and set a key",
	    "Set a key only if its current version is expected_version (0: only if absent).",
	    "{\"type\":\"object\",\"properties\":{"
	    "\"namespace\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":1024},"
	    "\"key\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":1024},"
	    "\"expected_version\":{\"type\":\"integer\",\"minimum\":0},"
	    "\"value\":{\"type\":\"string\"},"
	    "\"ttl_ms\":{\"type\":\"integer\",\"minimum\":0}},"
	    "\"required\":[\"namespace\",\"key\",\"expected_version\",\"value\"],"
	    "\"additionalProperties\":false}" },
	[MC_T_DELETE] = { "state_delete", "Delete a key",
	    "Delete a key; an error result if it does not exist.",
	    "{\"type\":\"object\",\"properties\":{"
	    "\"namespace\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":1024},"
	    "\"key\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":1024}},"
	    "\"required\":[\"namespace\",\"key\"],\"additionalProperties\":false}" },
	[MC_T_SCAN] = { "state_scan", "List keys",
	    "List the keys of a namespace (optionally those starting with prefix), unordered.",
	    "{\"type\":\"object\",\"properties\":{"
	    "\"namespace\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":1024},"
	    "\"prefix\":{\"type\":\"string\",\"maxLength\":1024},"
	    "\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000}},"
	    "\"required\":[\"namespace\"],\"additionalProperties\":false}" },
	[MC_T_STATUS] = { "runtime_status", "Runtime status",
	    "Workers (state, restarts, heartbeat), rings (depth), pools and the state table: "
	    "what `mcpcore status --json` prints.",
	    "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}" },
};

static json_t *mc_tool_schemas[MC_T_N];

int mc_tools_init(void)
{
	for (int i = 0; i < MC_T_N; i++) {
		if (mc_tool_schemas[i] != NULL)
			continue;
		mc_tool_schemas[i] = json_loads(mc_tool_defs[i].schema, 0, NULL);
		if (mc_tool_schemas[i] == NULL) {
			mc_tools_fini();
			return -ENOMEM;
		}
	}
	return 0;
}

void mc_tools_fini(void)
{
	for (int i = 0; i < MC_T_N; i++) {
		json_decref(mc_tool_schemas[i]);
		mc_tool_schemas[i] = NULL;
	}
}

json_t *mc_tools_list(void)
{
	json_t *tools = json_array();

	for (int i = 0; i < MC_T_N; i++)
		json_array_append_new(tools, json_pack("{s:s, s:s, s:s, s:O}", "name",
		    mc_tool_defs[i].name, "title", mc_tool_defs[i].title, "description",
		    mc_tool_defs[i].description, "inputSchema", mc_tool_schemas[i]));
	return json_pack("{s:o}", "tools", tools);
}

/* ---- schema subset -------------------------------------------------------- */

static int mc_schema_type_ok(const char *type, const json_t *v)
{
	if (strcmp(type, "object") == 0)
		return json_is_object(v);
	if (strcmp(type, "string") == 0)
		return json_is_string(v);
	if (strcmp(type, "integer") == 0)
		return json_is_integer(v);
	if (strcmp(type, "number") == 0)
		return json_is_number(v);
	if (strcmp(type, "boolean") == 0)
		return json_is_boolean(v);
	if (strcmp(type, "array") == 0)
		return json_is_array(v);
	return 0;
}

/* Length of a UTF-8 string in code points (what minLength counts). */
static size_t mc_utf8_len(const char *s, size_t n)
{
	size_t cps = 0;

	for (size_t i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			cps++;
	return cps;
}

static int mc_schema_object(const json_t *schema, const json_t *value, const char *where,
    char *err, size_t errlen)
{
	const json_t *props = json_object_get(schema, "properties");
	const json_t *req = json_object_get(schema, "required");
	const char *k;
	json_t *v;
	size_t i;

	json_array_foreach(req, i, v) {
		if (json_object_get(value, json_string_value(v)) == NULL) {
			snprintf(err, errlen, "%s: missing required property \"%s\"", where,
			    json_string_value(v));
			return -EINVAL;
		}
	}
	json_object_foreach((json_t *)value, k, v) {
		const json_t *sub = json_object_get(props, k);
		char path[160];
		size_t n = mc_strbcpy(path, sizeof(path), where, strlen(where));

		/* where.k, cut to fit: built by hand, it is made for every property */
		if (n + 1 < sizeof(path)) {
			path[n++] = '.';
			mc_strbcpy(path + n, sizeof(path) - n, k, strlen(k));
		}
		if (sub == NULL) {
			if (json_is_false(json_object_get(schema, "additionalProperties"))) {
				snprintf(err, errlen, "%s: unknown property", path);
				return -EINVAL;
			}
			continue;
		}
		if (mc_schema_check(sub, v, path, err, errlen) != 0)
			return -EINVAL;
	}
	return 0;
}

int mc_schema_check(const json_t *schema, const json_t *value, const char *where,
    char *err, size_t errlen)
{
	const char *type = json_string_value(json_object_get(schema, "type"));
	const json_t *lim;

	if (type != NULL && !mc_schema_type_ok(type, value)) {
		snprintf(err, errlen, "%s: expected %s %s", where,
		    strcmp(type, "object") == 0 || strcmp(type, "integer") == 0 ? "an" : "a", type);
		return -EINVAL;
	}
	if (json_is_object(value))
		return mc_schema_object(schema, value, where, err, errlen);
	if (json_is_string(value)) {
		size_t n = mc_utf8_len(json_string_value(value), json_string_length(value));

		if ((lim = json_object_get(schema, "minLength")) && n < (size_t)json_integer_value(lim)) {
			snprintf(err, errlen, "%s: shorter than %lld characters", where,
			    (long long)json_integer_value(lim));
			return -EINVAL;
		}
		if ((lim = json_object_get(schema, "maxLength")) && n > (size_t)json_integer_value(lim)) {
			snprintf(err, errlen, "%s: longer than %lld characters", where,
			    (long long)json_integer_value(lim));
			return -EINVAL;
		}
	}
	if (json_is_integer(value)) {
		json_int_t x = json_integer_value(value);

		if ((lim = json_object_get(schema, "minimum")) && x < json_integer_value(lim)) {
			snprintf(err, errlen, "%s: below the minimum %lld", where,
			    (long long)json_integer_value(lim));
			return -EINVAL;
		}
		if ((lim = json_object_get(schema, "maximum")) && x > json_integer_value(lim)) {
			snprintf(err, errlen, "%s: above the maximum %lld", where,
			    (long long)json_integer_value(lim));
			return -EINVAL;
		}
	}
	return 0;
}

/* ---- results ------------------------------------------------------------- */

/*
 * A CallToolResult, {"content": [{"type": "text", "text": text}],
 * "structuredContent": structured (if not NULL), "isError": is_error},
 * built call by call: json_pack would parse its format and check our own
 * keys on every call.  Takes text and structured, even on failure (the
 * _new calls release their value when they fail); NULL if out of memory.
 */
static json_t *mc_tool_doc(json_t *text, json_t *structured, bool is_error)
{
	json_t *r = json_object(), *arr = json_array(), *item = json_object();
	bool bad = false;

	bad |= json_object_set_new_nocheck(item, "type", json_string_nocheck("text")) != 0;
	bad |= json_object_set_new_nocheck(item, "text", text) != 0;
	bad |= json_array_append_new(arr, item) != 0;
	bad |= json_object_set_new_nocheck(r, "content", arr) != 0;
	if (structured != NULL)
		bad |= json_object_set_new_nocheck(r, "structuredContent", structured) != 0;
	bad |= json_object_set_new_nocheck(r, "isError", json_boolean(is_error)) != 0;
	if (bad) {
		json_decref(r);
		return NULL;
	}
	return r;
}

/* A CallToolResult: text content (the JSON) and structuredContent.  The
 * text is dumped into a stack buffer when it fits (most results): no heap
 * round trip for a string that lives a microsecond; and it is jansson's
 * own output, UTF-8 already, so it is not checked again. */
static json_t *mc_tool_result(json_t *structured, bool is_error)
{
	char buf[1024];
	size_t n;
	char *text = mc_json_dump(structured, buf, sizeof(buf), &n);
	json_t *r;

	r = mc_tool_doc(json_stringn_nocheck(text ? text : "{}", text ? n : 2), structured,
	    is_error);
	if (text != buf)
		free(text);
	return r;
}

static json_t *mc_tool_error(const char *fmt, const char *arg)
{
	char msg[256];

	snprintf(msg, sizeof(msg), fmt, arg);
	return mc_tool_doc(json_string(msg), NULL, true);
}

/* v[0..n) in hex: a malloc'd string of 2n characters (NUL-terminated), or NULL. */
static char *mc_tool_hex(const uint8_t *v, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char *h = malloc(2 * n + 1);

	if (h == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		h[2 * i] = digits[v[i] >> 4];
		h[2 * i + 1] = digits[v[i] & 15];
	}
	h[2 * n] = '\0';
	return h;
}

/* A value as a JSON member: "value" when UTF-8 text, else "value_hex". */
static void mc_tool_put_value(json_t *obj, const uint8_t *v, size_t n)
{
	json_t *s = json_stringn((const char *)v, n);
	char *h;

	if (s != NULL) {
		json_object_set_new(obj, "value", s);
		return;
	}
	h = mc_tool_hex(v, n);
	if (h != NULL)
		json_object_set_new(obj, "value_hex", json_stringn(h, 2 * n));
	free(h);
}

/*
 * Room for the largest value: allocated on first use and kept (the
 * protocol worker is one thread).  max_value_size may be 64 MiB, and an
 * allocation that large per call goes past the allocator's caches.
 */
static uint8_t *mc_tool_value_buf(const struct mc_seg *seg, size_t *cap)
{
	static uint8_t *buf;
	static size_t have;
	size_t want = seg->hdr->sh_config.state_max_value_size + 1;

	if (have < want) {
		uint8_t *nb = realloc(buf, want);

		if (nb == NULL)
			return NULL;
		buf = nb;
		have = want;
	}
	*cap = have;
	return buf;
}

/*
 * state_get's answer, written straight as text: it is the hot read, and
 * building a document only to dump it (twice: the text content is the
 * JSON of structuredContent) was most of a request's cost.  The bytes are
 * what mc_tool_result would give for the same document, members in the
 * same order (tests/unit/test_mcp_tools.c checks).
 */
void mc_tools_get_result(struct mc_jtext *out, const struct mc_state_value *meta,
    const uint8_t *v)
{
	char sbuf[1024];
	struct mc_jtext s;
	size_t slen;
	char *st;

	mc_jtext_init(&s, sbuf, sizeof(sbuf));
	if (meta == NULL) {
		mc_jtext_lit(&s, "{\"found\":false}");
	} else {
		mc_jtext_lit(&s, "{\"found\":true,\"version\":");
		mc_jtext_int(&s, (int64_t)meta->version);
		mc_jtext_lit(&s, ",\"mtime_ns\":");
		mc_jtext_int(&s, (int64_t)meta->mtime);
		if (meta->expires) {
			mc_jtext_lit(&s, ",\"expires_ns\":");
			mc_jtext_int(&s, (int64_t)meta->expires);
		}
		if (mc_utf8_valid(v, meta->len)) {
			mc_jtext_lit(&s, ",\"value\":");
			mc_jtext_str(&s, (const char *)v, meta->len);
		} else {
			char *h = mc_tool_hex(v, meta->len);

			mc_jtext_lit(&s, ",\"value_hex\":\"");
			if (h != NULL)
				mc_jtext_raw(&s, h, 2 * (size_t)meta->len);
			else
				s.oom = true;
			mc_jtext_lit(&s, "\"");
			free(h);
		}
		mc_jtext_lit(&s, "}");
	}
	st = mc_jtext_end(&s, &slen);
	if (st == NULL) {
		out->oom = true;
		return;
	}
	mc_jtext_lit(out, "{\"content\":[{\"type\":\"text\",\"text\":");
	mc_jtext_str(out, st, slen);
	mc_jtext_lit(out, "}],\"structuredContent\":");
	mc_jtext_raw(out, st, slen);
	mc_jtext_lit(out, ",\"isError\":false}");
	if (st != sbuf)
		free(st);
}

/* Append a result document to out (and release it). */
static void mc_tool_emit(struct mc_jtext *out, json_t *result)
{
	if (result == NULL)
		out->oom = true;
	else
		mc_jtext_json(out, result);
	json_decref(result);
}

static void mc_tool_get(const struct mc_seg *seg, const char *ns, const char *key,
    struct mc_jtext *out)
{
	struct mc_state_value meta;
	size_t cap;
	uint8_t *buf = mc_tool_value_buf(seg, &cap);
	int rc;

	if (buf == NULL) {
		mc_tool_emit(out, mc_tool_error("%s", "out of memory"));
		return;
	}
	rc = mc_state_get(seg, ns, strlen(ns), key, strlen(key), buf, cap, &meta);
	if (rc == 0 || rc == -ENOENT)
		mc_tools_get_result(out, rc == 0 ? &meta : NULL, buf);
	else
		mc_tool_emit(out, mc_tool_error("state_get failed: %s", mc_strerror(rc)));
}

struct mc_scan_ctx {
	json_t *items;
	size_t limit;
	bool truncated;
};

static int mc_tool_scan_item(void *ctx, const struct mc_state_item *it)
{
	struct mc_scan_ctx *c = ctx;
	json_t *item, *k;

	if (json_array_size(c->items) >= c->limit) {
		c->truncated = true;
		return 1;
	}
	k = json_stringn((const char *)it->key, it->keylen);
	if (k == NULL)
		return 0;       /* a binary key cannot be named back in a call: skip */
	item = json_pack("{s:o, s:I}", "key", k, "version", (json_int_t)it->meta.version);
	mc_tool_put_value(item, it->value, it->vlen);
	json_array_append_new(c->items, item);
	return 0;
}

static json_t *mc_tool_scan(const struct mc_seg *seg, const json_t *args)
{
	const char *ns = json_string_value(json_object_get(args, "namespace"));
	const char *prefix = json_string_value(json_object_get(args, "prefix"));
	json_t *lim = json_object_get(args, "limit");
	struct mc_scan_ctx c = { json_array(), lim ? (size_t)json_integer_value(lim) : 100, false };
	long rc;

	rc = mc_state_scan(seg, ns, strlen(ns), prefix ? prefix : "", prefix ? strlen(prefix) : 0,
	    mc_tool_scan_item, &c);
	if (rc < 0 && rc != -ENOENT) {
		json_decref(c.items);
		return mc_tool_error("state_scan failed: %s", mc_strerror((int)rc));
	}
	return mc_tool_result(json_pack("{s:o, s:b}", "items", c.items, "truncated", c.truncated),
	    false);
}

json_t *mc_tools_status_doc(const struct mc_seg *seg)
{
	const struct mc_seg_hdr *h = seg->hdr;
	uint64_t now = mc_now_ns();
	json_t *workers = json_array(), *rings = mc_status_rings(seg);
	struct mc_state_stats st;
	json_t *table = json_null();

	for (unsigned s = 1; s < h->sh_nslots; s++) {
		const struct mc_slot *sl = &seg->slots[s];
		uint64_t hb = sl->sl_heartbeat_ns;

		if (sl->sl_kind != MC_KIND_WORKER)
			continue;
		json_array_append_new(workers, json_pack("{s:s, s:i, s:i, s:s, s:i, s:i, s:I, s:i}",
		    "name", sl->sl_name, "slot", (int)s, "pid", (int)sl->sl_pid,
		    "state", mc_slot_state_name(sl->sl_state), "restarts", (int)sl->sl_restarts,
		    "generation", (int)sl->sl_generation, "heartbeat_age_ms",
		    (json_int_t)(hb && now > hb ? (now - hb) / 1000000 : 0),
		    "last_exit_status", (int)sl->sl_last_status));
	}
	if (mc_state_stats(seg, &st) == 0)
		table = json_pack("{s:I, s:I, s:I, s:I}", "capacity", (json_int_t)st.capacity,
		    "live", (json_int_t)st.live, "tombstones", (json_int_t)st.tombstones,
		    "writes", (json_int_t)st.writes);
	return json_pack("{s:s, s:o, s:o, s:o}", "instance", h->sh_instance, "workers", workers,
	    "rings", rings, "state_table", table);
}

/* ---- calls ---------------------------------------------------------------- */

static int mc_tool_find(const char *name)
{
	for (int i = 0; i < MC_T_N; i++)
		if (strcmp(mc_tool_defs[i].name, name) == 0)
			return i;
	return -1;
}

/* Fill call->req for a write tool from its (checked) arguments. */
static void mc_tool_prepare(int t, struct mc_tool_call *call)
{
	const json_t *a = call->args;
	struct mc_state_req *r = &call->req;
	json_t *v = json_object_get(a, "value"), *ttl = json_object_get(a, "ttl_ms");

	memset(r, 0, sizeof(*r));
	r->ns = json_string_value(json_object_get(a, "namespace"));
	r->nslen = json_string_length(json_object_get(a, "namespace"));
	r->key = json_string_value(json_object_get(a, "key"));
	r->klen = json_string_length(json_object_get(a, "key"));
	if (v != NULL) {
		r->value = json_string_value(v);
		r->vlen = json_string_length(v);
	}
	r->ttl_ms = ttl ? (uint64_t)json_integer_value(ttl) : 0;
	r->kind = t == MC_T_SET ? MCPCORE__STATE_OP__KIND__PUT :
	    t == MC_T_CAS ? MCPCORE__STATE_OP__KIND__CAS : MCPCORE__STATE_OP__KIND__DELETE;
	if (t == MC_T_CAS)
		r->expected_version = (uint64_t)json_integer_value(json_object_get(a, "expected_version"));
	call->needs_state = true;
}

int mc_tools_start(const struct mc_seg *seg, const json_t *params, struct mc_tool_call *call,
    struct mc_jtext *out, char *err, size_t errlen)
{
	const char *name = json_string_value(json_object_get(params, "name"));
	json_t *args = json_object_get(params, "arguments");
	const char *ns;
	int t;

	memset(call, 0, sizeof(*call));
	if (name == NULL) {
		snprintf(err, errlen, "params.name: expected the name of a tool (a string)");
		return MC_RPC_INVALID_PARAMS;
	}
	t = mc_tool_find(name);
	if (t < 0) {
		snprintf(err, errlen, "unknown tool \"%.64s\" (tools/list names them)", name);
		return MC_RPC_INVALID_PARAMS;
	}
	if (args != NULL && !json_is_object(args)) {
		snprintf(err, errlen, "params.arguments: expected an object");
		return MC_RPC_INVALID_PARAMS;
	}
	call->args = args ? json_incref(args) : json_object();
	mc_strbcpy(call->name, sizeof(call->name), name, strlen(name));
	if (mc_schema_check(mc_tool_schemas[t], call->args, "arguments", err, errlen) != 0) {
		mc_tools_done(call);
		return MC_RPC_INVALID_PARAMS;
	}
	ns = json_string_value(json_object_get(call->args, "namespace"));
	if (ns != NULL && strcmp(ns, MC_SESSION_NS) == 0) {
		mc_tool_emit(out, mc_tool_error("namespace \"%s\" is reserved for the runtime's sessions",
		    MC_SESSION_NS));
		return 0;
	}
	switch (t) {
	case MC_T_GET:
		mc_tool_get(seg, ns, json_string_value(json_object_get(call->args, "key")), out);
		break;
	case MC_T_SCAN:
		mc_tool_emit(out, mc_tool_scan(seg, call->args));
		break;
	case MC_T_STATUS:
		mc_tool_emit(out, mc_tool_result(mc_tools_status_doc(seg), false));
		break;
	default:
		mc_tool_prepare(t, call);
		break;
	}
	return 0;
}

json_t *mc_tools_finish(const struct mc_tool_call *call, const struct mc_state_res *res)
{
	bool cas = call->req.kind == MCPCORE__STATE_OP__KIND__CAS;

	switch (res->status) {
	case MCPCORE__STATE_RESULT__STATUS__OK:
		if (call->req.kind == MCPCORE__STATE_OP__KIND__DELETE)
			return mc_tool_result(json_pack("{s:b}", "deleted", 1), false);
		return mc_tool_result(cas ? json_pack("{s:b, s:I}", "swapped", 1, "version",
		    (json_int_t)res->version) : json_pack("{s:I}", "version", (json_int_t)res->version),
		    false);
	case MCPCORE__STATE_RESULT__STATUS__VERSION_MISMATCH:
		/* not a failure of the tool: the caller learns the current version */
		return mc_tool_result(json_pack("{s:b, s:I}", "swapped", 0, "version",
		    (json_int_t)res->version), false);
	case MCPCORE__STATE_RESULT__STATUS__NOT_FOUND:
		return mc_tool_error("%s: no such key", call->name);
	case MCPCORE__STATE_RESULT__STATUS__TOO_LARGE:
		return mc_tool_error("%s: namespace, key or value over the state manager's bounds",
		    call->name);
	case MCPCORE__STATE_RESULT__STATUS__TABLE_FULL:
		return mc_tool_error("%s: the state table is full", call->name);
	default:
		return mc_tool_error("%s: the state worker refused the request", call->name);
	}
}

void mc_tools_done(struct mc_tool_call *call)
{
	json_decref(call->args);
	call->args = NULL;
}
