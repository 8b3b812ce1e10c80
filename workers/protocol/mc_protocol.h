/*
 * mc_protocol.h - the protocol worker's modules: the MCP front door
 * (Streamable HTTP on io_uring, issue 4).
 *
 *   jsonrpc.c   JSON-RPC 2.0 message shape (no I/O, no state): parse and
 *               classify a POST body, build responses and errors
 *   jsonload.c  JSON text to a jansson document (the requests), strict
 *   jsondump.c  JSON text out: documents dumped, answers written as text
 *   session.c   MCP sessions: the lifecycle machine (which method may come
 *               in which state), version negotiation, the record kept in
 *               the state manager, session ids
 *   tools.c     the tools the runtime serves: their input schemas, a
 *               validator for those schemas, and the tools themselves
 *   fixtures.c  the conformance suite's fixture tools, resources, prompts
 *               and completions ([protocol] conformance_fixtures)
 *   mcp.c       one HTTP request -> one HTTP response: transport rules
 *               (headers, Host/Origin, session header, status codes) and
 *               MCP method dispatch; state writes go out asynchronously
 *               and finish when the state worker's reply comes back
 *   server.c    the io_uring TCP/HTTP server and the worker loop (frames,
 *               heartbeat), one thread
 *
 * Threads: everything runs on the worker's one thread (the mc_seg frame
 * API is single-threaded per process, mc_frame.h).
 *
 * Errors: negative errno values, or JSON-RPC error codes where a function
 * says so (MC_RPC_*); nothing here exits the process.
 */
#ifndef MC_PROTOCOL_H
#define MC_PROTOCOL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mc_http.h"
#include "mc_seg.h"
#include "mc_state_client.h"

/* ---- jsonrpc.c ------------------------------------------------------------ */

#define MC_RPC_PARSE_ERROR      (-32700)
#define MC_RPC_INVALID_REQUEST  (-32600)
#define MC_RPC_METHOD_NOT_FOUND (-32601)
#define MC_RPC_INVALID_PARAMS   (-32602)
#define MC_RPC_INTERNAL_ERROR   (-32603)
#define MC_RPC_SERVER_BUSY      (-32000)        /* implementation-defined range */

enum mc_rpc_kind {
	MC_RPC_REQUEST = 1,             /* method + id: needs a response */
	MC_RPC_NOTIFICATION,            /* method, no id */
	MC_RPC_RESPONSE,                /* id + result or error, no method */
};

struct mc_rpc_msg {
	enum mc_rpc_kind kind;
	json_t *root;                   /* owned: json_decref() when done */
	json_t *id;                     /* borrowed from root; NULL for notifications */
	const char *method;             /* borrowed; NULL for responses */
	json_t *params;                 /* borrowed; NULL when absent */
};

/*
 * Parse one POST body.  Returns 0 with *out filled (out->root owned by the
 * caller), or MC_RPC_PARSE_ERROR (not JSON, invalid UTF-8, duplicate keys)
 * or MC_RPC_INVALID_REQUEST (a batch, not an object, jsonrpc != "2.0", bad
 * id type, bad method, bad params, malformed response), with a sentence
 * saying what was wrong in err.  On error out->id is the request's id when
 * one could be read (a new reference, or NULL) for the error response.
 */
int mc_rpc_parse(const char *buf, size_t len, struct mc_rpc_msg *out, char *err, size_t errlen);

/* Response objects.  result and data are stolen; id borrowed (NULL = null). */
json_t *mc_rpc_result(json_t *id, json_t *result);
json_t *mc_rpc_error(json_t *id, int code, const char *message, json_t *data);

struct mc_jtext;

/* The start of a result answer as text, up to and including "result":
 * the caller appends the result and the closing brace.  With them it is
 * the text of mc_rpc_result(id, result), without building that document. */
void mc_rpc_result_open(struct mc_jtext *t, const json_t *id);

/* ---- jsondump.c ----------------------------------------------------------- */

/*
 * doc as compact JSON text, byte for byte what json_dumpb(JSON_COMPACT)
 * writes, at a fraction of its cost (why: jsondump.c).  Into buf[cap] when
 * it fits (a hot path's answers mostly do: no heap round trip), else into
 * a malloc'd string (always, with buf NULL and cap 0).  Any value may be
 * the root.  Returns buf, that string (free it when it is not buf), or NULL
 * when out of memory; *len is the text's length (the text is
 * NUL-terminated).  Any thread.
 */
char *mc_json_dump(const json_t *doc, char *buf, size_t cap, size_t *len);

/*
 * JSON text built piece by piece, for answers whose shape is fixed: the
 * literal parts are copied, data goes through mc_jtext_str / _int / _json,
 * which write exactly what mc_json_dump would for that value.  The text
 * starts in the caller's buf[cap] (or on the heap with cap 0) and moves to
 * the heap when it outgrows it.  Out of memory is sticky: later calls do
 * nothing and mc_jtext_end returns NULL.  One thread per text.
 */
struct mc_jtext {
	char *buf;
	size_t len, cap;
	bool heap;                      /* buf is malloc'd (ours to free) */
	bool oom;
};

void mc_jtext_init(struct mc_jtext *t, char *buf, size_t cap);
void mc_jtext_raw(struct mc_jtext *t, const char *s, size_t n);   /* as is */
#define mc_jtext_lit(t, lit) mc_jtext_raw((t), (lit), sizeof(lit) - 1)
void mc_jtext_str(struct mc_jtext *t, const char *s, size_t n);   /* a JSON string */
void mc_jtext_int(struct mc_jtext *t, int64_t v);
void mc_jtext_json(struct mc_jtext *t, const json_t *v);          /* any value */
/* The NUL-terminated text (buf, or a malloc'd string the caller frees when
 * it is not buf) and its length; NULL when out of memory (nothing to free). */
char *mc_jtext_end(struct mc_jtext *t, size_t *len);
/* Drop a text without ending it (frees what went to the heap). */
void mc_jtext_free(struct mc_jtext *t);
/* The text as a malloc'd string whichever buffer it is in (for a reply
 * body); NULL when out of memory.  t is done with either way. */
char *mc_jtext_take(struct mc_jtext *t, size_t *len);

/* ---- jsonload.c ----------------------------------------------------------- */

/*
 * The document in buf[len]: the tree json_loadb(buf, len,
 * JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, err) gives, accepting and
 * refusing exactly the texts it does, at a fraction of its cost (why:
 * jsonload.c).  Any value may be the root; the caller owns it
 * (json_decref).  NULL when the text is refused or memory runs out, with
 * err (may be NULL) saying why: err->position is the byte offset where
 * the text went wrong (0..len), err->text a sentence (not jansson's
 * wording), json_error_code(err) jansson's code.  On success err is left
 * as json_loadb leaves it.  Any thread; no state kept.
 */
json_t *mc_json_load(const char *buf, size_t len, json_error_t *err);

/* Are s[0..n) well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF; NUL allowed)?  Exactly the bytes
 * jansson accepts in a string (json_stringn).  Any thread. */
bool mc_utf8_valid(const void *s, size_t n);

/* ---- session.c ------------------------------------------------------------ */

#define MC_SESSION_NS       "mcp.session"       /* state namespace of sessions */
#define MC_SESSION_ID_LEN   32                  /* hex characters */
/* A session record expires this long after its last change (initialize,
 * initialized, setLevel), so abandoned sessions do not pile up in the
 * state table; the client then gets 404 and initializes again, as the
 * transport prescribes. */
#define MC_SESSION_TTL_MS   (24ULL * 3600 * 1000)

enum mc_session_state {
	MC_SESSION_NONE = 0,            /* no session yet: only initialize */
	MC_SESSION_INITIALIZING = 1,    /* initialize answered; waiting for initialized */
	MC_SESSION_READY = 2,           /* operation */
};

struct mc_session {
	char id[MC_SESSION_ID_LEN + 1];
	char version[16];               /* negotiated protocol version */
	int  state;                     /* enum mc_session_state */
	int  log_level;                 /* index into mc_session_log_levels */
	char client[64];                /* clientInfo.name, for logs */
	int  client_caps;               /* MC_CLIENT_*: what the client declared at
	                                   initialize (the server asks nothing else) */
};

#define MC_CLIENT_SAMPLING    1         /* capabilities.sampling */
#define MC_CLIENT_ELICITATION 2         /* capabilities.elicitation */

extern const char *const mc_session_versions[];     /* supported, newest first; NULL-ended */
extern const char *const mc_session_log_levels[];   /* RFC 5424 names, debug..emergency */

/* Is v (n bytes) a version we speak (and negotiate)? */
bool mc_session_version_ok(const char *v, size_t n);

/* May an MCP-Protocol-Version header carry v?  Our versions and
 * 2025-03-26, whose transport is the same for everything served here
 * (clients, and the conformance suite, send it on requests). */
bool mc_session_header_version_ok(const char *v, size_t n);

/* The version to answer initialize with: v if we speak it, else our newest. */
const char *mc_session_negotiate(const char *v);

/* Index of a log level name, or -1. */
int mc_session_log_level(const char *name);

/*
 * The lifecycle machine: may a message with `method` (a request, or a
 * notification when notification is true) be handled in `state`?
 * Returns 0, or a JSON-RPC error code with the reason in *why.
 */
int mc_session_admit(int state, const char *method, bool notification, const char **why);

/* A fresh random id (hex, MC_SESSION_ID_LEN chars + NUL). 0 or -errno. */
int mc_session_new_id(char out[MC_SESSION_ID_LEN + 1]);

/* Is this a syntactically valid id (so it may be used as a state key)? */
bool mc_session_id_ok(const char *s, size_t n);

/* The record stored under (MC_SESSION_NS, id): JSON text.  Returns the
 * length, or -ENOSPC when cap is too small. */
int mc_session_encode(const struct mc_session *s, char *buf, size_t cap);

/* Parse a stored record into *s (s->id is left as it is).  0 or -EINVAL. */
int mc_session_decode(const char *buf, size_t len, struct mc_session *s);

/*
 * Decoded session records a protocol worker has seen, by id, each with the
 * state version it was decoded from.  Every request names its session, and
 * decoding the JSON record each time was a tenth of a request's cost; the
 * lock-free state read that finds the version is still made every time,
 * so a record rewritten or deleted (by any process) is never served stale.
 * Direct-mapped: ids are random, so their first hex digits spread them.
 */
#define MC_SESSION_CACHE_SLOTS 1024     /* a power of two */
struct mc_session_cache {
	struct {
		uint64_t version;       /* 0 = empty */
		struct mc_session s;
	} e[MC_SESSION_CACHE_SLOTS];
};

/* Look a session up in the state manager: 0, -ENOENT, or an error of
 * mc_state_get.  cache: NULL, or one kept by the caller (zeroed at first). */
int mc_session_load(const struct mc_seg *seg, struct mc_session_cache *cache, const char *id,
    struct mc_session *s);

/* ---- tools.c -------------------------------------------------------------- */

/* Build the tool table (schemas).  0 or -ENOMEM. */
int mc_tools_init(void);
void mc_tools_fini(void);

/* The tools/list result ({"tools": [...]}): a new reference. */
json_t *mc_tools_list(void);

/*
 * Check `value` against a JSON Schema subset (type object/string/integer/
 * boolean, properties, required, additionalProperties false, minimum,
 * maximum, minLength, maxLength).  0, or -EINVAL with the first problem in
 * err ("arguments.key: expected a string").
 */
int mc_schema_check(const json_t *schema, const json_t *value, const char *where,
    char *err, size_t errlen);

/* What a tool call needs from the state worker, if anything. */
struct mc_tool_call {
	char name[32];
	json_t *args;                   /* owned */
	struct mc_state_req req;        /* points into args' strings */
	bool needs_state;               /* req must be sent; finish with mc_tools_finish */
};

/*
 * Start tools/call with params.  Returns 0 with either the CallToolResult
 * appended to out as JSON text (answered at once: reads, and tool errors)
 * or call->needs_state (send call->req, then mc_tools_finish with the
 * result); or MC_RPC_INVALID_PARAMS with the reason in err (unknown tool,
 * arguments not matching the schema), out untouched.  call->args is
 * released by mc_tools_done.
 */
int mc_tools_start(const struct mc_seg *seg, const json_t *params, struct mc_tool_call *call,
    struct mc_jtext *out, char *err, size_t errlen);

struct mc_state_value;

/* state_get's CallToolResult, appended to out: meta and the value's
 * meta->len bytes when found, meta NULL when not ({"found": false}).
 * A value that is not UTF-8 is given as value_hex. */
void mc_tools_get_result(struct mc_jtext *out, const struct mc_state_value *meta,
    const uint8_t *value);

/* The CallToolResult for a state op's outcome (a new reference). */
json_t *mc_tools_finish(const struct mc_tool_call *call, const struct mc_state_res *res);

void mc_tools_done(struct mc_tool_call *call);

/* The runtime_status document (as `mcpcore status --json` prints). */
json_t *mc_tools_status_doc(const struct mc_seg *seg);

/* ---- fixtures.c ----------------------------------------------------------- */

/* A fixture tool call: exactly one of result / request is set. */
struct mc_fixture_call {
	int tool;                       /* fixture index, for mc_fixtures_finish */
	json_t *notes;                  /* notifications to send first (array) */
	json_t *result;                 /* CallToolResult: answered now */
	json_t *request;                /* {method, params} for the client; the
	                                   result comes from its response */
	bool deferred;                  /* result goes out on the resumed stream
	                                   (SEP-1699 polling), not the POST's */
};

/* Fixture tool definitions (an array for tools/list): a new reference. */
json_t *mc_fixtures_tools(void);

/*
 * Start a fixture tool call.  log_level is the session's (notifications/
 * message below it are left out).  0 with *out filled (release with
 * mc_fixtures_call_done); -ENOENT when params.name is no fixture tool;
 * MC_RPC_INVALID_PARAMS with the reason in err; -ENOMEM.
 */
int mc_fixtures_call(const json_t *params, int log_level, struct mc_fixture_call *out,
    char *err, size_t errlen);

/* The CallToolResult once the client answered out->request: response is
 * the client's JSON-RPC response (result or error).  A new reference. */
json_t *mc_fixtures_finish(int tool, const json_t *response);

void mc_fixtures_call_done(struct mc_fixture_call *c);

/* resources/list and resources/templates/list results (new references). */
json_t *mc_fixtures_resources(void);
json_t *mc_fixtures_templates(void);

/* resources/read of uri: 0 with *result (new), -ENOENT, -ENOMEM. */
int mc_fixtures_read(const char *uri, json_t **result);
bool mc_fixtures_resource_known(const char *uri);

/* prompts/list result; prompts/get: 0 with *result, MC_RPC_INVALID_PARAMS
 * with the reason in err, -ENOMEM. */
json_t *mc_fixtures_prompts(void);
int mc_fixtures_prompt(const json_t *params, json_t **result, char *err, size_t errlen);

/* completion/complete result for params (never fails but on ENOMEM: NULL). */
json_t *mc_fixtures_complete(const json_t *params);

/* ---- outbox.c ------------------------------------------------------------- */

/*
 * Frames to the router, in order and never dropped: sent at once when
 * there is room, else queued (heap copies) and sent by mc_outbox_flush.
 * Past a high-water mark the outbox is busy: the server stops taking
 * requests off its sockets until it drains.  One thread (the worker's).
 */
struct mc_outbox;

#define MC_CORR_LEN 16                  /* hex characters of a correlation id */

int mc_outbox_create(struct mc_outbox **out, struct mc_seg *seg, unsigned dst);
void mc_outbox_destroy(struct mc_outbox *ob);

/* Send or queue msg in lane (enum mc_lane).  0; -EMSGSIZE (larger than a
 * frame), -ENOBUFS (the queue is at its bound: answer "server busy"),
 * -ENOMEM; -EPIPE when the router has failed. */
int mc_outbox_send(struct mc_outbox *ob, const ProtobufCMessage *msg, uint32_t lane);

/* Move queued messages into frames while there is room; returns how many
 * are still queued. */
size_t mc_outbox_flush(struct mc_outbox *ob);
bool mc_outbox_busy(const struct mc_outbox *ob);
size_t mc_outbox_queued(const struct mc_outbox *ob);

/* A new correlation id: 16 hex digits, unique within the run (random
 * start, then counting). */
void mc_outbox_correlation(struct mc_outbox *ob, char out[MC_CORR_LEN + 1]);

/* One JSON-RPC message that came in, with what became of it, as an
 * MCPMessage (metadata: correlation_id, session, reply, outcome,
 * latency_ns; a NULL or "" value is left out). */
struct mc_record {
	const char *type;               /* method, or "response" (the client answered us) */
	const char *payload;            /* the JSON bytes */
	size_t len;
	uint64_t timestamp;             /* wall ns when it came */
	const char *corr;
	const char *session;            /* "" or NULL: none yet */
	const char *reply;              /* what answered it: "response", "error",
	                                   "accepted" (202) or "stream" (SSE) */
	const char *outcome;            /* "ok", "error -32602", "http 404", ... */
	const char *latency_ns;         /* ns from its arrival to its answer */
	uint32_t lane;
};
int mc_outbox_record(struct mc_outbox *ob, const struct mc_record *rec);

/* ---- mcp.c ---------------------------------------------------------------- */

/* A response for the server to write. */
struct mc_mcp_reply {
	int status;                     /* HTTP status */
	char *body;                     /* malloc'd, or NULL */
	size_t body_len;
	const char *ctype;              /* NULL: no Content-Type */
	char headers[256];              /* extra header lines, each ending CRLF */
	int rpc_error;                  /* the JSON-RPC error code it carries, 0 = none */
	bool close;                     /* close the connection after it */
	bool stream;                    /* an SSE stream: no Content-Length; the
	                                   connection carries nothing else and
	                                   ends when either side closes it */
};

struct mc_mcp;

/*
 * How mcp.c reaches the outside: send a state op (returns the op id > 0, or
 * -EAGAIN / another negative errno), and deliver a reply that finished
 * later (the token is what mc_mcp_handle was given).
 */
struct mc_mcp_env {
	struct mc_seg *seg;
	void *ctx;
	int64_t (*state_send)(void *ctx, const struct mc_state_req *r);
	void (*deliver)(void *ctx, uint64_t token, struct mc_mcp_reply *reply);
	/* Add SSE bytes to the stream a reply with .stream opened (token as
	 * given to mc_mcp_handle); end: the response is complete, close the
	 * stream once they are out.  0, or -ENOENT (the stream is gone),
	 * -ENOBUFS (its peer stopped reading: it was closed), -ENOMEM. */
	int (*stream_push)(void *ctx, uint64_t token, const char *data, size_t len, bool end);
	struct mc_outbox *outbox;       /* records of every message to the router;
	                                   NULL: none (unit tests) */
	bool fixtures;                  /* [protocol] conformance_fixtures */
	const char *path;               /* [protocol] path */
	bool loopback;                  /* the listener is a loopback address */
	uint64_t max_body;              /* [memory] max_message_size */
};

int mc_mcp_create(struct mc_mcp **out, const struct mc_mcp_env *env);
void mc_mcp_destroy(struct mc_mcp *m);

/*
 * Handle one complete request (head parsed, body of content_length bytes).
 * Returns 0 with *reply filled (answer now), or 1: the answer comes later
 * through env->deliver(token) (a state write is in flight).
 */
int mc_mcp_handle(struct mc_mcp *m, const struct mc_http_request *req, const char *body,
    size_t body_len, uint64_t token, struct mc_mcp_reply *reply);

/* A StateReply result arrived for op `id`; 0 if it was ours, -ENOENT. */
int mc_mcp_state_result(struct mc_mcp *m, uint64_t id, const struct mc_state_res *res);

/* Fail every call in flight for longer than timeout_ns ("server busy"; a
 * call waiting for a client's answer ends with that error on its SSE
 * stream).  Returns how many are still in flight (of both kinds). */
unsigned mc_mcp_expire(struct mc_mcp *m, uint64_t now_ns, uint64_t timeout_ns);

/* A resource changed: send notifications/resources/updated on the GET
 * stream of every session subscribed to uri (that has one open).
 * Returns how many were sent. */
unsigned mc_mcp_resource_updated(struct mc_mcp *m, const char *uri);

/* Calls waiting for the state worker (not those waiting for a client's
 * answer to a request of ours). */
unsigned mc_mcp_inflight(const struct mc_mcp *m);

/* Release a reply's body. */
void mc_mcp_reply_free(struct mc_mcp_reply *r);

/* ---- server.c ------------------------------------------------------------- */

struct mc_worker;

/* Run the front door and the worker duties until SIGTERM.  Exit status. */
int mc_protocol_serve(struct mc_worker *w);

#endif /* MC_PROTOCOL_H */
