/*
 * mcp.c - MCP over Streamable HTTP: one HTTP request in, one HTTP response
 * out (contract in mc_protocol.h).  The server (server.c) owns sockets and
 * bytes; this file never sees them, only a parsed head and a body.
 *
 * TRANSPORT RULES (MCP 2025-06-18 / 2025-11-25, "Transports")
 *   - Only [protocol] path is served (404 elsewhere).  POST carries one
 *     JSON-RPC message; DELETE ends a session; GET opens the session's
 *     server-to-client SSE stream (Accept must allow text/event-stream:
 *     406); it carries resource update notifications (below) and the
 *     server's keep-alive comments.  Other methods: 405 with Allow.
 *   - Host must name the listener when it is a loopback address (DNS
 *     rebinding: a foreign Host gets 403); an Origin, when sent, must be
 *     a loopback origin (or the Host itself on other listeners): 403.
 *   - POST: Content-Type application/json (415), Accept must allow
 *     application/json (406); MCP-Protocol-Version, when sent, must be a
 *     version we speak (400).
 *   - initialize creates a session; its id comes back in Mcp-Session-Id
 *     and every later message must carry it: missing -> 400, unknown or
 *     ended -> 404.
 *   - A request is answered 200 with a JSON-RPC response (errors
 *     included); a notification or a response is answered 202 with no
 *     body; a message that cannot be handled at all (not JSON, invalid
 *     JSON-RPC, lifecycle violation) is answered 400 with a JSON-RPC
 *     error object (id when one could be read, else null).
 *
 * SERVER-TO-CLIENT MESSAGES (conformance fixtures, fixtures.c)
 * A request whose handling sends notifications first (logging, progress)
 * is answered 200 text/event-stream when the client accepts it: one
 * "message" event per notification, then the response, in one body with
 * a length.  A request that asks the client something (sampling,
 * elicitation) is answered with an open SSE stream carrying the
 * notifications and the server's request (id "mcpcore-N"); the client's
 * response comes back in a later POST (answered 202), and the result then
 * goes out on the stream, which ends there.  Those calls are parked in
 * the pending list with kind MC_P_CLIENT and op 0 (state op ids are never
 * 0); past the request timeout they end with an error result.  Only
 * what the client declared at initialize is asked (session.client_caps);
 * otherwise the tool fails with isError.
 * Polling (SEP-1699, the test_reconnection fixture): the POST's stream
 * gets a priming event (id, retry, no data) and ends; the result is kept
 * in a small table (MC_MCP_RESUMES, oldest replaced) and starts the GET
 * stream whose Last-Event-ID names that event.
 * Resource subscriptions: a table of (session, uri) and a table of the
 * sessions' open GET streams (the latest per session); an update
 * (mc_mcp_resource_updated) goes out as notifications/resources/updated on
 * the GET stream of each subscribed session that has one.  Both tables
 * live in this process only: after a restart of the worker, clients
 * reconnect their GET stream and subscribe again (a subscription is not
 * part of the session record).  test://watched-resource changes once each
 * time it is subscribed to, so a subscriber sees the notification.
 *
 * ASYNCHRONOUS WRITES
 * Session changes and the write tools go to the state worker as one
 * StateOp each; the request is parked in the pending list under the op's
 * id and finished by mc_mcp_state_result (or failed with "server busy" by
 * mc_mcp_expire past the request timeout).  The pending list is a plain
 * array searched linearly: the number in flight is small (one per
 * connection at most).
 */
#include "mc_protocol.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mc_log.h"
#include "mc_util.h"

#define MC_MCP_SERVER_NAME    "mcpcore"
#define MC_MCP_SERVER_VERSION "0.1.0"
#define MC_RPC_NO_SESSION     (-32001)  /* implementation-defined: session not found */

enum mc_pending_kind { MC_P_INIT = 1, MC_P_READY, MC_P_LEVEL, MC_P_DELETE, MC_P_TOOL,
	MC_P_CLIENT };

/*
 * What a JSON-RPC message's record needs, kept from its parse to its
 * answer: the record (an MCPMessage to the router) goes out once, with the
 * outcome, when the answer does.
 */
struct mc_inrec {
	char type[48];                  /* method (cut to fit) or "response"; "" = no record */
	uint32_t lane;                  /* enum mc_lane */
	uint64_t wall_ns;               /* when it came: MCPMessage.timestamp */
	const char *body;               /* the JSON bytes: the request's while it is handled, */
	size_t len;
	char *owned;                    /* a pending entry's own copy afterwards */
};

struct mc_pending {
	uint64_t op;                    /* state op id */
	uint64_t token;                 /* the server's handle of the connection */
	uint64_t start_ns;
	enum mc_pending_kind kind;
	json_t *rpc_id;                 /* owned; NULL for notifications / DELETE */
	struct mc_session sess;         /* MC_P_INIT: the new session */
	struct mc_tool_call tool;       /* MC_P_TOOL */
	int fixture;                    /* MC_P_CLIENT: the fixture tool */
	char out_id[32];                /* MC_P_CLIENT: id of our request to the client */
	char corr[MC_CORR_LEN + 1];     /* the request's correlation id */
	char sid[MC_SESSION_ID_LEN + 1];        /* its session ("" for initialize) */
	struct mc_inrec in;             /* its record, sent with the answer */
};

#define MC_MCP_MAX_WATCHES 4096    /* subscriptions, all sessions together */
#define MC_MCP_RESUMES     64       /* results kept for a resuming GET (oldest replaced) */
#define MC_MCP_RETRY_MS    "500"    /* SSE retry: when a client should resume */

/* A result whose POST stream was ended early, kept for the GET that
 * resumes it (Last-Event-ID = event). */
struct mc_resume {
	char sid[MC_SESSION_ID_LEN + 1];
	char event[32];
	char *body;                     /* SSE bytes; NULL = free slot */
	size_t len;
};

struct mc_watch {
	char sid[MC_SESSION_ID_LEN + 1];
	char uri[256];
};

struct mc_getstream {
	char sid[MC_SESSION_ID_LEN + 1];
	uint64_t token;                 /* the server's handle of the stream */
};

struct mc_mcp {
	struct mc_mcp_env env;
	struct mc_pending *p;
	unsigned np, cap;
	uint64_t next_out;              /* ids of requests to clients */
	struct mc_watch *watch;         /* resource subscriptions */
	unsigned nwatch, watch_cap;
	struct mc_getstream *gs;        /* open GET streams, one per session */
	unsigned ngs, gs_cap;
	struct mc_resume resume[MC_MCP_RESUMES];
	uint64_t next_event;            /* ids of priming events */
	/* the message being handled: its correlation id, session and record */
	char corr[MC_CORR_LEN + 1];
	char sid[MC_SESSION_ID_LEN + 1];
	struct mc_inrec in;
	uint64_t next_corr;             /* correlation ids without an outbox (tests) */
	uint64_t start_ns;              /* when its handling began */
	uint64_t records_lost_run;      /* records refused in a row */
	struct mc_session_cache *sessions;
};

int mc_mcp_create(struct mc_mcp **out, const struct mc_mcp_env *env)
{
	struct mc_mcp *m = calloc(1, sizeof(*m));
	int rc;

	*out = NULL;
	if (m == NULL)
		return -ENOMEM;
	m->sessions = calloc(1, sizeof(*m->sessions));
	rc = m->sessions == NULL ? -ENOMEM : mc_tools_init();
	if (rc) {
		free(m->sessions);
		free(m);
		return rc;
	}
	m->env = *env;
	*out = m;
	return 0;
}

static void mc_pending_clear(struct mc_pending *p)
{
	json_decref(p->rpc_id);
	p->rpc_id = NULL;
	free(p->in.owned);
	p->in.owned = NULL;
	mc_tools_done(&p->tool);
}

void mc_mcp_destroy(struct mc_mcp *m)
{
	if (m == NULL)
		return;
	for (unsigned i = 0; i < m->np; i++)
		mc_pending_clear(&m->p[i]);
	free(m->p);
	free(m->watch);
	free(m->gs);
	for (unsigned i = 0; i < MC_MCP_RESUMES; i++)
		free(m->resume[i].body);
	mc_tools_fini();
	free(m->sessions);
	free(m);
}

unsigned mc_mcp_inflight(const struct mc_mcp *m)
{
	unsigned n = 0;

	/* calls waiting for a client's answer are not counted: the server
	 * polls the state ring only while state ops are due */
	for (unsigned i = 0; i < m->np; i++)
		n += m->p[i].op != 0;
	return n;
}

void mc_mcp_reply_free(struct mc_mcp_reply *r)
{
	free(r->body);
	r->body = NULL;
}

/* ---- building replies ----------------------------------------------------- */

/* The body from a finished text t (dumped into a stack buffer first: one
 * exact allocation instead of a growing one and a final copy); 500 and
 * close when out of memory. */
static void mc_reply_text(struct mc_mcp_reply *r, int status, struct mc_jtext *t)
{
	r->status = status;
	r->body = mc_jtext_take(t, &r->body_len);
	r->ctype = "application/json";
	if (r->body == NULL) {
		r->status = 500;
		r->ctype = NULL;
		r->close = true;
	}
}

static void mc_reply_json(struct mc_mcp_reply *r, int status, json_t *doc)
{
	char buf[4096];
	struct mc_jtext t;

	if (doc == NULL) {
		r->status = status;
		r->body = NULL;
		r->body_len = 0;
		r->ctype = NULL;
		return;
	}
	mc_jtext_init(&t, buf, sizeof(buf));
	mc_jtext_json(&t, doc);
	json_decref(doc);
	mc_reply_text(r, status, &t);
}

/* 200 with the JSON-RPC answer carrying result (stolen; NULL when out of
 * memory: 500), written as text around it (mc_rpc_result_open). */
static void mc_reply_result(struct mc_mcp_reply *r, const json_t *id, json_t *result)
{
	char buf[4096];
	struct mc_jtext t;

	mc_jtext_init(&t, buf, sizeof(buf));
	mc_rpc_result_open(&t, id);
	if (result != NULL)
		mc_jtext_json(&t, result);
	else
		t.oom = true;
	mc_jtext_lit(&t, "}");
	json_decref(result);
	mc_reply_text(r, 200, &t);
}

static void mc_reply_rpc_error(struct mc_mcp_reply *r, int status, json_t *id, int code,
    const char *msg)
{
	mc_reply_json(r, status, mc_rpc_error(id, code, msg, NULL));
	r->rpc_error = code;
}

static void mc_reply_empty(struct mc_mcp_reply *r, int status)
{
	r->status = status;
	r->body = NULL;
	r->body_len = 0;
	r->ctype = NULL;
}

static void mc_reply_header(struct mc_mcp_reply *r, const char *name, const char *value)
{
	size_t n = strlen(r->headers);

	snprintf(r->headers + n, sizeof(r->headers) - n, "%s: %s\r\n", name, value);
}

/* ---- transport checks ----------------------------------------------------- */

/* Is host (no port) a loopback name? */
static bool mc_host_loopback(const char *h, size_t n)
{
	static const char *const names[] = { "localhost", "127.0.0.1", "[::1]", NULL };

	for (int i = 0; names[i]; i++)
		if (strlen(names[i]) == n && strncasecmp(names[i], h, n) == 0)
			return true;
	return false;
}

/* Length of the host part of "host[:port]" / "[v6]:port". */
static size_t mc_host_part(const char *h, size_t n)
{
	if (n > 0 && h[0] == '[') {
		const char *e = memchr(h, ']', n);

		return e ? (size_t)(e - h) + 1 : n;
	}
	for (size_t i = 0; i < n; i++)
		if (h[i] == ':')
			return i;
	return n;
}

/* 0, or 403 with the reason. */
static int mc_mcp_check_origin(const struct mc_mcp *m, const struct mc_http_request *req,
    const char **why)
{
	const struct mc_http_str *o = mc_http_header(req, "Origin");
	size_t hn = mc_host_part(req->host.p, req->host.n);
	const char *oh;
	size_t on;

	if (m->env.loopback && !mc_host_loopback(req->host.p, hn)) {
		*why = "Host does not name this loopback listener";
		return 403;
	}
	if (o == NULL)
		return 0;
	if (o->n > 7 && strncasecmp(o->p, "http://", 7) == 0) {
		oh = o->p + 7;
		on = o->n - 7;
	} else if (o->n > 8 && strncasecmp(o->p, "https://", 8) == 0) {
		oh = o->p + 8;
		on = o->n - 8;
	} else {
		*why = "Origin is not an http(s) origin";
		return 403;
	}
	on = mc_host_part(oh, on);
	if (mc_host_loopback(oh, on) || (!m->env.loopback && on == hn &&
	    strncasecmp(oh, req->host.p, on) == 0))
		return 0;
	*why = "Origin is not allowed";
	return 403;
}

/* Does a header's comma-separated list contain a media range accepting type? */
static bool mc_accepts(const struct mc_http_str *h, const char *type)
{
	const char *p = h->p, *end = h->p + h->n;

	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *e = comma ? comma : end, *semi;
		size_t n;

		while (p < e && (*p == ' ' || *p == '\t'))
			p++;
		semi = memchr(p, ';', (size_t)(e - p));
		n = (size_t)((semi ? semi : e) - p);
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if ((n == 3 && memcmp(p, "*/*", 3) == 0) ||
		    (n == 13 && strncasecmp(p, "application/*", 13) == 0) ||
		    (n == strlen(type) && strncasecmp(p, type, n) == 0))
			return true;
		p = e + 1;
	}
	return false;
}

static bool mc_is_json_ctype(const struct mc_http_str *h)
{
	size_t n = 16;

	if (h == NULL || h->n < n || strncasecmp(h->p, "application/json", n) != 0)
		return false;
	return h->n == n || h->p[n] == ';' || h->p[n] == ' ';
}

/* ---- pending writes ----------------------------------------------------- */

/* Room for one more pending entry: 0 or -ENOMEM. */
static int mc_mcp_reserve(struct mc_mcp *m)
{
	if (m->np == m->cap) {
		unsigned cap = m->cap ? 2 * m->cap : 16;
		struct mc_pending *np = realloc(m->p, cap * sizeof(*np));

		if (np == NULL)
			return -ENOMEM;
		m->p = np;
		m->cap = cap;
	}
	return 0;
}

/* Take the reserved entry (mc_mcp_reserve succeeded). */
static struct mc_pending *mc_mcp_take(struct mc_mcp *m, uint64_t op, uint64_t token,
    enum mc_pending_kind kind, json_t *rpc_id)
{
	struct mc_pending *p = &m->p[m->np++];

	memset(p, 0, sizeof(*p));
	p->op = op;
	p->token = token;
	p->start_ns = m->start_ns;      /* the deadline counts from the message's arrival */
	p->kind = kind;
	p->rpc_id = rpc_id ? json_incref(rpc_id) : NULL;
	memcpy(p->corr, m->corr, sizeof(p->corr));
	memcpy(p->sid, m->sid, sizeof(p->sid));
	return p;
}

/* Send r and park the request; NULL + *err on failure. */
static struct mc_pending *mc_mcp_park(struct mc_mcp *m, const struct mc_state_req *r,
    uint64_t token, enum mc_pending_kind kind, json_t *rpc_id, int *err)
{
	struct mc_pending *p;
	int64_t op;

	struct mc_state_req req = *r;

	*err = mc_mcp_reserve(m);
	if (*err)
		return NULL;
	req.correlation_id = m->corr;   /* into the state worker's log lines */
	op = m->env.state_send(m->env.ctx, &req);
	if (op < 0) {
		*err = (int)op;
		return NULL;
	}
	p = mc_mcp_take(m, (uint64_t)op, token, kind, rpc_id);
	if (m->in.type[0] != '\0') {
		/* the answer comes later: keep the record, with its own copy of the
		 * bytes (without memory for it, the record goes out without them) */
		p->in = m->in;
		p->in.owned = m->in.len ? malloc(m->in.len) : NULL;
		if (p->in.owned != NULL)
			memcpy(p->in.owned, m->in.body, m->in.len);
		p->in.body = p->in.owned;
		p->in.len = p->in.owned ? m->in.len : 0;
		m->in.type[0] = '\0';  /* recorded by the completion, not by mc_mcp_handle */
	}
	return p;
}

/* The state worker cannot take the op now: tell the client to retry. */
static void mc_reply_busy(struct mc_mcp_reply *r, json_t *id, int err)
{
	char msg[128];

	snprintf(msg, sizeof(msg), "server busy: the state manager cannot take the request (%s)",
	    mc_strerror(err));
	mc_reply_rpc_error(r, 503, id, MC_RPC_SERVER_BUSY, msg);
	mc_reply_header(r, "Retry-After", "1");
}

static int mc_mcp_session_write(struct mc_mcp *m, const struct mc_session *s, uint64_t token,
    enum mc_pending_kind kind, json_t *rpc_id, struct mc_mcp_reply *reply)
{
	struct mc_state_req r = { .kind = MCPCORE__STATE_OP__KIND__PUT };
	struct mc_pending *p;
	char rec[256];
	int n = mc_session_encode(s, rec, sizeof(rec)), err = 0;

	if (n < 0) {
		mc_reply_rpc_error(reply, 500, rpc_id, MC_RPC_INTERNAL_ERROR,
		    "cannot encode the session record");
		return 0;
	}
	r.ns = MC_SESSION_NS;
	r.nslen = strlen(MC_SESSION_NS);
	r.key = s->id;
	r.klen = strlen(s->id);
	r.value = rec;
	r.vlen = (size_t)n;
	r.ttl_ms = MC_SESSION_TTL_MS;
	p = mc_mcp_park(m, &r, token, kind, rpc_id, &err);
	if (p == NULL) {
		mc_reply_busy(reply, rpc_id, err);
		return 0;
	}
	p->sess = *s;
	return 1;
}

/* ---- methods -------------------------------------------------------------- */

static int mc_mcp_initialize(struct mc_mcp *m, const struct mc_rpc_msg *msg, uint64_t token,
    struct mc_mcp_reply *reply)
{
	const char *ver = NULL, *client = NULL;
	json_t *caps = NULL, *info = NULL;
	struct mc_session s;
	int rc;

	if (msg->params == NULL || json_unpack((json_t *)msg->params, "{s:s, s:o, s:o}",
	    "protocolVersion", &ver, "capabilities", &caps, "clientInfo", &info) != 0 ||
	    !json_is_object(caps) || !json_is_object(info) ||
	    json_unpack(info, "{s:s}", "name", &client) != 0) {
		mc_reply_rpc_error(reply, 200, msg->id, MC_RPC_INVALID_PARAMS,
		    "initialize needs params {protocolVersion: string, capabilities: object, "
		    "clientInfo: {name: string, version: string}}");
		return 0;
	}
	memset(&s, 0, sizeof(s));
	rc = mc_session_new_id(s.id);
	if (rc) {
		mc_reply_rpc_error(reply, 500, msg->id, MC_RPC_INTERNAL_ERROR,
		    "cannot make a session id");
		return 0;
	}
	snprintf(s.version, sizeof(s.version), "%s", mc_session_negotiate(ver));
	snprintf(s.client, sizeof(s.client), "%s", client);
	s.state = MC_SESSION_INITIALIZING;
	s.log_level = mc_session_log_level("info");
	if (json_is_object(json_object_get(caps, "sampling")))
		s.client_caps |= MC_CLIENT_SAMPLING;
	if (json_is_object(json_object_get(caps, "elicitation")))
		s.client_caps |= MC_CLIENT_ELICITATION;
	return mc_mcp_session_write(m, &s, token, MC_P_INIT, msg->id, reply);
}

static json_t *mc_mcp_init_result(const struct mc_mcp *m, const struct mc_session *s)
{
	if (m->env.fixtures)
		return json_pack("{s:s, s:{s:{s:b}, s:{}, s:{s:b, s:b}, s:{s:b}, s:{}},"
		    " s:{s:s, s:s, s:s}, s:s}",
		    "protocolVersion", s->version,
		    "capabilities", "tools", "listChanged", 0, "logging",
		    "resources", "subscribe", 1, "listChanged", 0, "prompts", "listChanged", 0,
		    "completions",
		    "serverInfo", "name", MC_MCP_SERVER_NAME, "title", "mcpcore runtime",
		    "version", MC_MCP_SERVER_VERSION,
		    "instructions", "State manager tools (state_*), runtime_status, and the "
		    "conformance suite's fixtures.");
	return json_pack("{s:s, s:{s:{s:b}, s:{}}, s:{s:s, s:s, s:s}, s:s}",
	    "protocolVersion", s->version,
	    "capabilities", "tools", "listChanged", 0, "logging",
	    "serverInfo", "name", MC_MCP_SERVER_NAME, "title", "mcpcore runtime",
	    "version", MC_MCP_SERVER_VERSION,
	    "instructions", "State manager tools (state_*) and runtime_status of an mcpcore runtime.");
}

static int mc_mcp_set_level(struct mc_mcp *m, const struct mc_rpc_msg *msg,
    struct mc_session *s, uint64_t token, struct mc_mcp_reply *reply)
{
	const char *level = NULL;
	int lv;

	if (msg->params != NULL)
		level = json_string_value(json_object_get(msg->params, "level"));
	lv = mc_session_log_level(level);
	if (lv < 0) {
		mc_reply_rpc_error(reply, 200, msg->id, MC_RPC_INVALID_PARAMS,
		    "params.level must be one of debug, info, notice, warning, error, critical, "
		    "alert, emergency");
		return 0;
	}
	s->log_level = lv;
	return mc_mcp_session_write(m, s, token, MC_P_LEVEL, msg->id, reply);
}

/* ---- records and correlation ids ------------------------------------------ */

/*
 * Every JSON-RPC message gets a correlation id when it is parsed; it is in
 * every log line about the message here, in the state op it causes, and in
 * its record, which goes to the router (and on to persistence, the monitor
 * and learning clients) once the message is answered: one MCPMessage with
 * the message's bytes and, as metadata, the answer's kind, outcome and
 * latency.  One record per message rather than one per direction: at tens
 * of thousands of messages a second the records are most of the work
 * behind the front door (router, monitor, store), and the answer's bytes
 * say nothing the request and outcome do not (a state_get's value is in
 * the state's own history).  Without an outbox (unit tests) ids still
 * count, and nothing is recorded.
 */
static void mc_mcp_new_corr(struct mc_mcp *m)
{
	if (m->env.outbox != NULL)
		mc_outbox_correlation(m->env.outbox, m->corr);
	else
		snprintf(m->corr, sizeof(m->corr), "%016llx", (unsigned long long)++m->next_corr);
}

/* The lane a message asks the router for: lifecycle before tool calls
 * before notifications and responses. */
static uint32_t mc_mcp_lane(const struct mc_rpc_msg *msg)
{
	static const char *const control[] = { "initialize", "notifications/initialized", "ping",
		"notifications/cancelled", "logging/setLevel", NULL };

	if (msg->kind == MC_RPC_RESPONSE)
		return MC_LANE_BULK;
	for (int i = 0; control[i] != NULL; i++)
		if (strcmp(msg->method, control[i]) == 0)
			return MC_LANE_CONTROL;
	return msg->kind == MC_RPC_REQUEST ? MC_LANE_TOOL : MC_LANE_BULK;
}

static void mc_mcp_record(struct mc_mcp *m, const struct mc_record *rec)
{
	int rc;

	if (m->env.outbox == NULL)
		return;
	rc = mc_outbox_record(m->env.outbox, rec);
	if (rc == 0) {
		m->records_lost_run = 0;
		return;
	}
	/* once per run of failures (the router failed for good: every message) */
	if (m->records_lost_run++ == 0)
		mc_log_warn("mcp_record_failed", "{s:s, s:s, s:s}", "correlation_id", rec->corr,
		    "error", mc_strerror(rc), "message",
		    "the message was handled but its record did not reach the router "
		    "(logged once until records flow again)");
}

/* Note the record of the message just parsed (sent with its answer). */
static void mc_mcp_record_begin(struct mc_mcp *m, const struct mc_rpc_msg *msg, const char *body,
    size_t len)
{
	struct mc_inrec *in = &m->in;
	const char *type = msg->kind == MC_RPC_RESPONSE ? "response" : msg->method;

	mc_strbcpy(in->type, sizeof(in->type), type, strlen(type));
	in->lane = mc_mcp_lane(msg);
	in->wall_ns = mc_wall_ns();
	in->body = body;
	in->len = len;
	in->owned = NULL;
}

/*
 * The record of a message, now that its answer r goes out: the message's
 * bytes, and as metadata its correlation id, session, the answer's kind
 * ("response", "error", "accepted" or "stream"), the outcome and the
 * latency from arrival to answer.
 */
static void mc_mcp_record_answer(struct mc_mcp *m, const struct mc_inrec *in, const char *corr,
    const char *sid, uint64_t start_ns, const struct mc_mcp_reply *r)
{
	char outcome[32], took[24];
	struct mc_record rec = {
		.type = in->type, .payload = in->body, .len = in->len, .corr = corr,
		.session = sid, .outcome = outcome, .lane = in->lane, .timestamp = in->wall_ns,
		.latency_ns = took,
		.reply = r->rpc_error ? "error" : r->stream ? "stream" : r->body != NULL ?
		    "response" : "accepted",
	};

	if (in->type[0] == '\0' || corr[0] == '\0')
		return;                 /* not a JSON-RPC message (GET, DELETE, a bad body) */
	if (r->rpc_error)
		snprintf(outcome, sizeof(outcome), "error %d", r->rpc_error);
	else if (r->status >= 200 && r->status < 300)
		memcpy(outcome, "ok", 3);
	else
		snprintf(outcome, sizeof(outcome), "http %d", r->status);
	mc_u64toa(mc_now_ns() - start_ns, took);
	mc_mcp_record(m, &rec);
}

/* ---- server-to-client messages ------------------------------------------ */

/* Append one SSE "message" event carrying doc to *buf (malloc'd, *len
 * bytes).  0 or -ENOMEM. */
static int mc_sse_append(char **buf, size_t *len, const json_t *doc)
{
	char tmp[4096], *nb = NULL;
	size_t n;
	char *js = mc_json_dump(doc, tmp, sizeof(tmp), &n);

	if (js != NULL)
		nb = realloc(*buf, *len + n + 24);
	if (nb != NULL) {
		/* compact JSON has no newline, so one data line carries it */
		*len += (size_t)sprintf(nb + *len, "event: message\ndata: %s\n\n", js);
		*buf = nb;
	}
	if (js != tmp)
		free(js);
	return nb != NULL ? 0 : -ENOMEM;
}

/* The notifications, then last (if not NULL): an SSE body.  NULL on ENOMEM. */
static char *mc_sse_body(const json_t *notes, const json_t *last, size_t *len)
{
	char *buf = NULL;
	size_t i;
	json_t *n;

	*len = 0;
	json_array_foreach(notes, i, n)
		if (mc_sse_append(&buf, len, n) != 0)
			goto fail;
	if (last != NULL && mc_sse_append(&buf, len, last) != 0)
		goto fail;
	if (buf == NULL)
		buf = calloc(1, 1);     /* nothing to send is not a failure */
	return buf;
fail:
	free(buf);
	return NULL;
}

static bool mc_mcp_accepts_sse(const struct mc_http_request *req)
{
	const struct mc_http_str *a = mc_http_header(req, "Accept");

	return a != NULL && mc_accepts(a, "text/event-stream");
}

/* A fixture answered now: JSON, or SSE when it has notifications to send
 * first and the client takes a stream. */
static void mc_mcp_fixture_now(const struct mc_http_request *req, const struct mc_rpc_msg *msg,
    struct mc_fixture_call *fc, struct mc_mcp_reply *reply)
{
	json_t *resp = mc_rpc_result(msg->id, fc->result);

	fc->result = NULL;      /* stolen by mc_rpc_result */
	if (json_array_size(fc->notes) == 0 || !mc_mcp_accepts_sse(req)) {
		mc_reply_json(reply, 200, resp);
		return;
	}
	reply->status = 200;
	reply->body = mc_sse_body(fc->notes, resp, &reply->body_len);
	reply->ctype = "text/event-stream";
	json_decref(resp);
	if (reply->body == NULL) {
		reply->status = 500;
		reply->close = true;
		reply->ctype = NULL;
		return;
	}
	mc_reply_header(reply, "Cache-Control", "no-cache");
}

/* A deferred fixture (SEP-1699 polling): the POST's stream gets only a
 * priming event (an id, a retry time, no data) and ends; the result waits
 * in the resume table for the GET whose Last-Event-ID names that event. */
static void mc_mcp_fixture_defer(struct mc_mcp *m, const struct mc_rpc_msg *msg,
    const struct mc_session *s, struct mc_fixture_call *fc, struct mc_mcp_reply *reply)
{
	struct mc_resume *r = &m->resume[m->next_event % MC_MCP_RESUMES];
	json_t *resp = mc_rpc_result(msg->id, fc->result);
	char prime[96];
	int n;

	fc->result = NULL;      /* stolen by mc_rpc_result */
	free(r->body);
	memset(r, 0, sizeof(*r));
	snprintf(r->sid, sizeof(r->sid), "%s", s->id);
	snprintf(r->event, sizeof(r->event), "mcpcore-e%llu", (unsigned long long)++m->next_event);
	r->body = resp ? mc_sse_body(NULL, resp, &r->len) : NULL;
	json_decref(resp);
	n = snprintf(prime, sizeof(prime), "id: %s\nretry: " MC_MCP_RETRY_MS "\ndata: \n\n", r->event);
	reply->body = r->body ? strdup(prime) : NULL;
	if (reply->body == NULL) {
		mc_reply_busy(reply, msg->id, -ENOMEM);
		return;
	}
	reply->body_len = (size_t)n;
	reply->status = 200;
	reply->ctype = "text/event-stream";
	mc_reply_header(reply, "Cache-Control", "no-cache");
}

/* The resumed result for a GET with Last-Event-ID (moved into *body), or
 * -ENOENT. */
static int mc_mcp_resume_take(struct mc_mcp *m, const char *sid, const struct mc_http_str *last,
    char **body, size_t *len)
{
	for (unsigned i = 0; last != NULL && i < MC_MCP_RESUMES; i++) {
		struct mc_resume *r = &m->resume[i];

		if (r->body == NULL || strcmp(r->sid, sid) != 0 || !mc_http_eq(*last, r->event))
			continue;
		*body = r->body;
		*len = r->len;
		r->body = NULL;
		return 0;
	}
	return -ENOENT;
}

/* A fixture that asks the client: open the stream with the notifications
 * and our request, park the call until the client's response. */
static void mc_mcp_fixture_ask(struct mc_mcp *m, const struct mc_http_request *req,
    const struct mc_rpc_msg *msg, const struct mc_session *s, uint64_t token,
    struct mc_fixture_call *fc, struct mc_mcp_reply *reply)
{
	struct mc_pending *p;
	const char *meth = json_string_value(json_object_get(fc->request, "method"));
	int need = strcmp(meth, "sampling/createMessage") == 0 ? MC_CLIENT_SAMPLING :
	    MC_CLIENT_ELICITATION;
	char id[32];

	if (!(s->client_caps & need)) {
		/* never ask what the client did not declare: the tool fails */
		json_t *res = json_pack("{s:[{s:s, s:s+}], s:b}", "content", "type", "text", "text",
		    "the client does not support ", meth, "isError", 1);

		mc_reply_result(reply, msg->id, res);
		return;
	}
	if (!mc_mcp_accepts_sse(req) || m->env.stream_push == NULL) {
		mc_reply_rpc_error(reply, 200, msg->id, MC_RPC_INVALID_REQUEST,
		    "this tool asks the client a question: Accept must include text/event-stream");
		return;
	}
	if (mc_mcp_reserve(m) != 0) {
		mc_reply_busy(reply, msg->id, -ENOMEM);
		return;
	}
	snprintf(id, sizeof(id), "mcpcore-%llu", (unsigned long long)++m->next_out);
	json_object_set_new(fc->request, "jsonrpc", json_string("2.0"));
	json_object_set_new(fc->request, "id", json_string(id));
	reply->body = mc_sse_body(fc->notes, fc->request, &reply->body_len);
	if (reply->body == NULL) {
		mc_reply_busy(reply, msg->id, -ENOMEM);
		return;
	}
	reply->status = 200;
	reply->ctype = "text/event-stream";
	reply->stream = true;
	mc_reply_header(reply, "Cache-Control", "no-cache");
	p = mc_mcp_take(m, 0, token, MC_P_CLIENT, msg->id);
	p->fixture = fc->tool;
	p->sess = *s;
	snprintf(p->out_id, sizeof(p->out_id), "%s", id);
	mc_log_debug("mcp_client_request", "{s:s, s:s, s:s}", "correlation_id", m->corr,
	    "id", id, "method", json_string_value(json_object_get(fc->request, "method")));
}

/* Try params as a fixture tool call: 1 if it was one (reply filled). */
static int mc_mcp_fixture_call(struct mc_mcp *m, const struct mc_http_request *req,
    const struct mc_rpc_msg *msg, const struct mc_session *s, uint64_t token,
    struct mc_mcp_reply *reply)
{
	struct mc_fixture_call fc;
	char err[256];
	int rc;

	if (!m->env.fixtures)
		return 0;
	rc = mc_fixtures_call(msg->params, s->log_level, &fc, err, sizeof(err));
	if (rc == -ENOENT)
		return 0;
	if (rc == MC_RPC_INVALID_PARAMS)
		mc_reply_rpc_error(reply, 200, msg->id, rc, err);
	else if (rc != 0)
		mc_reply_busy(reply, msg->id, rc);
	else if (fc.deferred && mc_mcp_accepts_sse(req))
		mc_mcp_fixture_defer(m, msg, s, &fc, reply);
	else if (fc.result != NULL)
		mc_mcp_fixture_now(req, msg, &fc, reply);
	else
		mc_mcp_fixture_ask(m, req, msg, s, token, &fc, reply);
	if (rc == 0)
		mc_fixtures_call_done(&fc);
	return 1;
}

/* A client's response to one of our requests: finish the call it answers
 * on that call's stream.  Unknown ids are dropped (the call may have
 * timed out already). */
static void mc_mcp_client_response(struct mc_mcp *m, const struct mc_rpc_msg *msg,
    const struct mc_session *s)
{
	const char *id = json_string_value(msg->id);

	for (unsigned i = 0; id != NULL && i < m->np; i++) {
		struct mc_pending *p = &m->p[i];
		json_t *resp;
		char *body;
		size_t len;

		if (p->kind != MC_P_CLIENT || strcmp(p->out_id, id) != 0 ||
		    strcmp(p->sess.id, s->id) != 0)
			continue;
		resp = mc_rpc_result(p->rpc_id, mc_fixtures_finish(p->fixture, msg->root));
		body = resp ? mc_sse_body(NULL, resp, &len) : NULL;
		if (body == NULL || m->env.stream_push(m->env.ctx, p->token, body, len, true) != 0)
			mc_log_debug("mcp_stream_gone", "{s:s, s:s}", "correlation_id", m->corr, "id", id);
		free(body);
		json_decref(resp);
		mc_pending_clear(p);
		m->p[i] = m->p[--m->np];
		return;
	}
	mc_log_debug("mcp_unmatched_response", "{s:s}", "correlation_id", m->corr);
}

/* ---- subscriptions -------------------------------------------------------- */

static int mc_mcp_watch_find(const struct mc_mcp *m, const char *sid, const char *uri)
{
	for (unsigned i = 0; i < m->nwatch; i++)
		if (strcmp(m->watch[i].sid, sid) == 0 && strcmp(m->watch[i].uri, uri) == 0)
			return (int)i;
	return -1;
}

/* 0, or -ENOSPC (table full, or uri too long), -ENOMEM. */
static int mc_mcp_watch_add(struct mc_mcp *m, const char *sid, const char *uri)
{
	struct mc_watch *w;

	if (mc_mcp_watch_find(m, sid, uri) >= 0)
		return 0;
	if (m->nwatch >= MC_MCP_MAX_WATCHES || strlen(uri) >= sizeof(w->uri))
		return -ENOSPC;
	if (m->nwatch == m->watch_cap) {
		unsigned cap = m->watch_cap ? 2 * m->watch_cap : 16;

		w = realloc(m->watch, cap * sizeof(*w));
		if (w == NULL)
			return -ENOMEM;
		m->watch = w;
		m->watch_cap = cap;
	}
	w = &m->watch[m->nwatch++];
	snprintf(w->sid, sizeof(w->sid), "%s", sid);
	snprintf(w->uri, sizeof(w->uri), "%s", uri);
	return 0;
}

/* Forget a session's subscription to uri (NULL: all of them) and, with
 * uri NULL, its GET stream: the session ended. */
static void mc_mcp_watch_drop(struct mc_mcp *m, const char *sid, const char *uri)
{
	for (unsigned i = 0; i < m->nwatch;) {
		if (strcmp(m->watch[i].sid, sid) == 0 && (uri == NULL || strcmp(m->watch[i].uri, uri) == 0))
			m->watch[i] = m->watch[--m->nwatch];
		else
			i++;
	}
	for (unsigned i = 0; uri == NULL && i < m->ngs; i++)
		if (strcmp(m->gs[i].sid, sid) == 0) {
			m->gs[i] = m->gs[--m->ngs];
			break;
		}
}

/* A GET stream opened for sid: it replaces an older one (the spec lets a
 * server pick any one stream per message). */
static void mc_mcp_stream_opened(struct mc_mcp *m, const char *sid, uint64_t token)
{
	struct mc_getstream *g;

	for (unsigned i = 0; i < m->ngs; i++)
		if (strcmp(m->gs[i].sid, sid) == 0) {
			m->gs[i].token = token;
			return;
		}
	if (m->ngs == m->gs_cap) {
		unsigned cap = m->gs_cap ? 2 * m->gs_cap : 16;

		g = realloc(m->gs, cap * sizeof(*g));
		if (g == NULL)
			return;         /* no notifications for it; the stream still works */
		m->gs = g;
		m->gs_cap = cap;
	}
	g = &m->gs[m->ngs++];
	snprintf(g->sid, sizeof(g->sid), "%s", sid);
	g->token = token;
}

unsigned mc_mcp_resource_updated(struct mc_mcp *m, const char *uri)
{
	json_t *note = json_pack("{s:s, s:s, s:{s:s}}", "jsonrpc", "2.0",
	    "method", "notifications/resources/updated", "params", "uri", uri);
	size_t len = 0;
	char *body = note ? mc_sse_body(NULL, note, &len) : NULL;
	unsigned sent = 0;

	for (unsigned i = 0; body != NULL && m->env.stream_push != NULL && i < m->nwatch; i++) {
		if (strcmp(m->watch[i].uri, uri) != 0)
			continue;
		for (unsigned k = 0; k < m->ngs; k++) {
			if (strcmp(m->gs[k].sid, m->watch[i].sid) != 0)
				continue;
			if (m->env.stream_push(m->env.ctx, m->gs[k].token, body, len, false) == 0)
				sent++;
			else
				m->gs[k] = m->gs[--m->ngs];     /* the stream is gone */
			break;
		}
	}
	free(body);
	json_decref(note);
	return sent;
}

/* resources/subscribe and unsubscribe of a known fixture resource. */
static void mc_mcp_subscribe(struct mc_mcp *m, const struct mc_rpc_msg *msg,
    const struct mc_session *s, const char *uri, bool on, struct mc_mcp_reply *reply)
{
	int rc = 0;

	if (!mc_fixtures_resource_known(uri)) {
		mc_reply_json(reply, 200, mc_rpc_error(msg->id, -32002, "resource not found",
		    json_pack("{s:s}", "uri", uri)));
		return;
	}
	if (on)
		rc = mc_mcp_watch_add(m, s->id, uri);
	else
		mc_mcp_watch_drop(m, s->id, uri);
	if (rc != 0) {
		mc_reply_rpc_error(reply, 200, msg->id, MC_RPC_INTERNAL_ERROR,
		    "cannot subscribe: too many subscriptions");
		return;
	}
	mc_reply_result(reply, msg->id, json_object());
	if (on && strcmp(uri, "test://watched-resource") == 0)
		mc_mcp_resource_updated(m, uri);
}

/* resources, prompts, completion: the fixtures' methods.  1 if handled. */
static int mc_mcp_fixture_method(struct mc_mcp *m, const struct mc_rpc_msg *msg,
    const struct mc_session *s, struct mc_mcp_reply *reply)
{
	const char *meth = msg->method;
	const char *uri = json_string_value(json_object_get(msg->params, "uri"));
	json_t *result = NULL;
	char err[256];
	int rc;

	if (!m->env.fixtures)
		return 0;
	if (strcmp(meth, "resources/list") == 0) {
		result = mc_fixtures_resources();
	} else if (strcmp(meth, "resources/templates/list") == 0) {
		result = mc_fixtures_templates();
	} else if (strcmp(meth, "prompts/list") == 0) {
		result = mc_fixtures_prompts();
	} else if (strcmp(meth, "completion/complete") == 0) {
		result = mc_fixtures_complete(msg->params);
	} else if (strcmp(meth, "prompts/get") == 0) {
		rc = mc_fixtures_prompt(msg->params, &result, err, sizeof(err));
		if (rc == MC_RPC_INVALID_PARAMS) {
			mc_reply_rpc_error(reply, 200, msg->id, rc, err);
			return 1;
		}
	} else if (strcmp(meth, "resources/read") == 0 || strcmp(meth, "resources/subscribe") == 0 ||
	    strcmp(meth, "resources/unsubscribe") == 0) {
		if (uri == NULL) {
			mc_reply_rpc_error(reply, 200, msg->id, MC_RPC_INVALID_PARAMS,
			    "params.uri (a string) is required");
			return 1;
		}
		if (strcmp(meth, "resources/read") != 0) {
			mc_mcp_subscribe(m, msg, s, uri, strcmp(meth, "resources/subscribe") == 0, reply);
			return 1;
		}
		if (mc_fixtures_read(uri, &result) == -ENOENT) {
			/* the resources page's code for an unknown resource */
			mc_reply_json(reply, 200, mc_rpc_error(msg->id, -32002, "resource not found",
			    json_pack("{s:s}", "uri", uri)));
			return 1;
		}
	} else {
		return 0;
	}
	if (result == NULL)
		mc_reply_rpc_error(reply, 500, msg->id, MC_RPC_INTERNAL_ERROR, "out of memory");
	else
		mc_reply_result(reply, msg->id, result);
	return 1;
}

static int mc_mcp_tools_call(struct mc_mcp *m, const struct mc_rpc_msg *msg,
    const struct mc_session *s, uint64_t token, struct mc_mcp_reply *reply)
{
	struct mc_tool_call call;
	struct mc_pending *p;
	char err[256], buf[4096];
	struct mc_jtext t;
	int rc, e = 0;

	if (msg->params == NULL) {
		mc_reply_rpc_error(reply, 200, msg->id, MC_RPC_INVALID_PARAMS,
		    "tools/call needs params {name, arguments}");
		return 0;
	}
	/* a tool answered at once appends its result to the answer's text */
	mc_jtext_init(&t, buf, sizeof(buf));
	mc_rpc_result_open(&t, msg->id);
	rc = mc_tools_start(m->env.seg, msg->params, &call, &t, err, sizeof(err));
	if (rc != 0) {
		mc_jtext_free(&t);
		mc_reply_rpc_error(reply, 200, msg->id, rc, err);
		return 0;
	}
	if (!call.needs_state) {
		mc_tools_done(&call);
		mc_jtext_lit(&t, "}");
		mc_reply_text(reply, 200, &t);
		return 0;
	}
	mc_jtext_free(&t);
	mc_log_debug("mcp_tool_call", "{s:s, s:s, s:s}", "correlation_id", m->corr, "session", s->id,
	    "tool", call.name);
	p = mc_mcp_park(m, &call.req, token, MC_P_TOOL, msg->id, &e);
	if (p == NULL) {
		if (e == -EMSGSIZE || e == -EINVAL) {
			/* refused before sending: the same outcome the worker would give */
			struct mc_state_res res = { .status = e == -EMSGSIZE ?
			    MCPCORE__STATE_RESULT__STATUS__TOO_LARGE :
			    MCPCORE__STATE_RESULT__STATUS__BAD_REQUEST };

			mc_reply_result(reply, msg->id, mc_tools_finish(&call, &res));
		} else {
			mc_reply_busy(reply, msg->id, e);
		}
		mc_tools_done(&call);
		return 0;
	}
	p->tool = call;         /* the args (and the strings req points at) move along */
	return 1;
}

/* A request in a session that the lifecycle admitted. */
static int mc_mcp_request(struct mc_mcp *m, const struct mc_http_request *req,
    const struct mc_rpc_msg *msg, struct mc_session *s, uint64_t token,
    struct mc_mcp_reply *reply)
{
	const char *meth = msg->method;

	if (strcmp(meth, "ping") == 0) {
		mc_reply_result(reply, msg->id, json_object());
		return 0;
	}
	if (strcmp(meth, "tools/list") == 0) {
		json_t *list = mc_tools_list();

		if (m->env.fixtures && list != NULL) {
			json_t *fx = mc_fixtures_tools();

			if (fx != NULL)
				json_array_extend(json_object_get(list, "tools"), fx);
			json_decref(fx);
		}
		mc_reply_result(reply, msg->id, list);
		return 0;
	}
	if (strcmp(meth, "tools/call") == 0) {
		if (msg->params != NULL && mc_mcp_fixture_call(m, req, msg, s, token, reply))
			return 0;
		return mc_mcp_tools_call(m, msg, s, token, reply);
	}
	if (mc_mcp_fixture_method(m, msg, s, reply))
		return 0;
	if (strcmp(meth, "logging/setLevel") == 0)
		return mc_mcp_set_level(m, msg, s, token, reply);
	{
		char why[160];

		snprintf(why, sizeof(why), "method not found: \"%.100s\"", meth);
		mc_reply_rpc_error(reply, 200, msg->id, MC_RPC_METHOD_NOT_FOUND, why);
	}
	return 0;
}

/* Find the session a message names: 0, or a reply is filled. */
static int mc_mcp_find_session(struct mc_mcp *m, const struct mc_http_request *req,
    json_t *rpc_id, struct mc_session *s, struct mc_mcp_reply *reply)
{
	const struct mc_http_str *h = mc_http_header(req, "Mcp-Session-Id");
	char id[MC_SESSION_ID_LEN + 1];
	int rc;

	if (h == NULL) {
		mc_reply_rpc_error(reply, 400, rpc_id, MC_RPC_INVALID_REQUEST,
		    "Mcp-Session-Id header required (send initialize first)");
		return -1;
	}
	if (!mc_session_id_ok(h->p, h->n)) {
		mc_reply_rpc_error(reply, 404, rpc_id, MC_RPC_NO_SESSION, "session not found");
		return -1;
	}
	memcpy(id, h->p, h->n);
	id[h->n] = '\0';
	rc = mc_session_load(m->env.seg, m->sessions, id, s);
	if (rc == -ENOENT) {
		mc_reply_rpc_error(reply, 404, rpc_id, MC_RPC_NO_SESSION,
		    "session not found (unknown or ended): initialize a new one");
		return -1;
	}
	if (rc) {
		mc_reply_rpc_error(reply, 500, rpc_id, MC_RPC_INTERNAL_ERROR,
		    "cannot read the session record");
		return -1;
	}
	return 0;
}

static int mc_mcp_post(struct mc_mcp *m, const struct mc_http_request *req, const char *body,
    size_t blen, uint64_t token, struct mc_mcp_reply *reply)
{
	const struct mc_http_str *accept = mc_http_header(req, "Accept");
	const struct mc_http_str *pv = mc_http_header(req, "MCP-Protocol-Version");
	struct mc_rpc_msg msg;
	struct mc_session s;
	const char *why = NULL;
	char err[256];
	int rc, code;

	if (!mc_is_json_ctype(mc_http_header(req, "Content-Type"))) {
		mc_reply_rpc_error(reply, 415, NULL, MC_RPC_INVALID_REQUEST,
		    "Content-Type must be application/json");
		return 0;
	}
	if (accept == NULL || !mc_accepts(accept, "application/json")) {
		mc_reply_rpc_error(reply, 406, NULL, MC_RPC_INVALID_REQUEST,
		    "Accept must include application/json and text/event-stream");
		return 0;
	}
	if (pv != NULL && !mc_session_header_version_ok(pv->p, pv->n)) {
		mc_reply_rpc_error(reply, 400, NULL, MC_RPC_INVALID_REQUEST,
		    "unsupported MCP-Protocol-Version (supported: 2025-11-25, 2025-06-18, 2025-03-26)");
		return 0;
	}
	code = mc_rpc_parse(body, blen, &msg, err, sizeof(err));
	if (code != 0) {
		mc_reply_rpc_error(reply, 400, msg.id, code, err);
		json_decref(msg.id);
		return 0;
	}
	mc_mcp_new_corr(m);
	{
		const struct mc_http_str *sh = mc_http_header(req, "Mcp-Session-Id");

		if (sh != NULL && mc_session_id_ok(sh->p, sh->n))
			mc_strbcpy(m->sid, sizeof(m->sid), sh->p, sh->n);
	}
	mc_mcp_record_begin(m, &msg, body, blen);
	rc = 0;
	if (msg.kind == MC_RPC_REQUEST && strcmp(msg.method, "initialize") == 0) {
		rc = mc_mcp_initialize(m, &msg, token, reply);
		goto out;
	}
	if (mc_mcp_find_session(m, req, msg.id, &s, reply) != 0)
		goto out;
	if (msg.kind == MC_RPC_RESPONSE) {
		mc_mcp_client_response(m, &msg, &s);
		mc_reply_empty(reply, 202);
		goto out;
	}
	code = mc_session_admit(s.state, msg.method, msg.kind == MC_RPC_NOTIFICATION, &why);
	if (code != 0) {
		mc_reply_rpc_error(reply, code == MC_RPC_INTERNAL_ERROR ? 500 : 400, msg.id, code, why);
		goto out;
	}
	if (msg.kind == MC_RPC_NOTIFICATION) {
		if (strcmp(msg.method, "notifications/initialized") == 0 &&
		    s.state == MC_SESSION_INITIALIZING) {
			s.state = MC_SESSION_READY;
			rc = mc_mcp_session_write(m, &s, token, MC_P_READY, NULL, reply);
			goto out;
		}
		/* cancelled, progress, roots/list_changed...: nothing of ours to act on */
		mc_reply_empty(reply, 202);
		goto out;
	}
	rc = mc_mcp_request(m, req, &msg, &s, token, reply);
out:
	json_decref(msg.root);
	return rc;
}

static int mc_mcp_get(struct mc_mcp *m, const struct mc_http_request *req, uint64_t token,
    struct mc_mcp_reply *reply)
{
	const struct mc_http_str *accept = mc_http_header(req, "Accept");
	struct mc_session s;

	if (accept == NULL || !mc_accepts(accept, "text/event-stream")) {
		mc_reply_rpc_error(reply, 406, NULL, MC_RPC_INVALID_REQUEST,
		    "GET opens an SSE stream: Accept must include text/event-stream");
		return 0;
	}
	if (mc_mcp_find_session(m, req, NULL, &s, reply) != 0)
		return 0;
	reply->status = 200;
	reply->ctype = "text/event-stream";
	reply->stream = true;
	mc_reply_header(reply, "Cache-Control", "no-cache");
	/* a resumed stream starts with what the ended one still owed */
	(void)mc_mcp_resume_take(m, s.id, mc_http_header(req, "Last-Event-ID"), &reply->body,
	    &reply->body_len);
	mc_mcp_stream_opened(m, s.id, token);
	mc_log_debug("mcp_stream_opened", "{s:s}", "correlation_id", s.id);
	return 0;
}

static int mc_mcp_delete(struct mc_mcp *m, const struct mc_http_request *req, uint64_t token,
    struct mc_mcp_reply *reply)
{
	struct mc_state_req r = { .kind = MCPCORE__STATE_OP__KIND__DELETE };
	struct mc_session s;
	struct mc_pending *p;
	int err = 0;

	if (mc_mcp_find_session(m, req, NULL, &s, reply) != 0)
		return 0;
	r.ns = MC_SESSION_NS;
	r.nslen = strlen(MC_SESSION_NS);
	r.key = s.id;
	r.klen = strlen(s.id);
	p = mc_mcp_park(m, &r, token, MC_P_DELETE, NULL, &err);
	if (p == NULL) {
		mc_reply_busy(reply, NULL, err);
		return 0;
	}
	p->sess = s;
	return 1;
}

int mc_mcp_handle(struct mc_mcp *m, const struct mc_http_request *req, const char *body,
    size_t body_len, uint64_t token, struct mc_mcp_reply *reply)
{
	const char *why = NULL;
	int st;

	memset(reply, 0, sizeof(*reply));
	m->corr[0] = '\0';
	m->sid[0] = '\0';
	m->in.type[0] = '\0';
	m->start_ns = mc_now_ns();
	if (!mc_http_eq(req->path, m->env.path)) {
		mc_reply_rpc_error(reply, 404, NULL, MC_RPC_INVALID_REQUEST,
		    "not found: the MCP endpoint is elsewhere");
		return 0;
	}
	st = mc_mcp_check_origin(m, req, &why);
	if (st != 0) {
		mc_reply_rpc_error(reply, st, NULL, MC_RPC_INVALID_REQUEST, why);
		return 0;
	}
	if (mc_http_eq(req->method, "POST")) {
		int rc = mc_mcp_post(m, req, body, body_len, token, reply);

		if (rc == 0)
			mc_mcp_record_answer(m, &m->in, m->corr, m->sid, m->start_ns, reply);
		return rc;
	}
	if (mc_http_eq(req->method, "DELETE"))
		return mc_mcp_delete(m, req, token, reply);
	if (mc_http_eq(req->method, "GET")) {
		const struct mc_http_str *pv = mc_http_header(req, "MCP-Protocol-Version");

		if (pv != NULL && !mc_session_header_version_ok(pv->p, pv->n)) {
			mc_reply_rpc_error(reply, 400, NULL, MC_RPC_INVALID_REQUEST,
			    "unsupported MCP-Protocol-Version (supported: 2025-11-25, 2025-06-18, 2025-03-26)");
			return 0;
		}
		return mc_mcp_get(m, req, token, reply);
	}
	mc_reply_rpc_error(reply, 405, NULL, MC_RPC_INVALID_REQUEST,
	    "method not allowed: POST a JSON-RPC message, GET the session's SSE stream, "
	    "DELETE to end the session");
	mc_reply_header(reply, "Allow", "GET, POST, DELETE");
	return 0;
}

/* ---- completions -------------------------------------------------------- */

static void mc_mcp_complete(struct mc_mcp *m, struct mc_pending *p, const struct mc_state_res *res,
    struct mc_mcp_reply *reply)
{
	bool ok = res->status == MCPCORE__STATE_RESULT__STATUS__OK;

	switch (p->kind) {
	case MC_P_INIT:
		if (!ok) {
			mc_reply_rpc_error(reply, 500, p->rpc_id, MC_RPC_INTERNAL_ERROR,
			    "cannot store the session");
			break;
		}
		mc_reply_result(reply, p->rpc_id, mc_mcp_init_result(m, &p->sess));
		mc_reply_header(reply, "Mcp-Session-Id", p->sess.id);
		mc_log_info("mcp_session_created", "{s:s, s:s, s:s, s:s}", "correlation_id", p->corr,
		    "session", p->sess.id,
		    "version", p->sess.version, "client", p->sess.client);
		break;
	case MC_P_READY:
		if (ok)
			mc_reply_empty(reply, 202);
		else
			mc_reply_rpc_error(reply, 500, NULL, MC_RPC_INTERNAL_ERROR,
			    "cannot store the session");
		break;
	case MC_P_LEVEL:
		if (ok)
			mc_reply_result(reply, p->rpc_id, json_object());
		else
			mc_reply_rpc_error(reply, 200, p->rpc_id, MC_RPC_INTERNAL_ERROR,
			    "cannot store the session");
		break;
	case MC_P_DELETE:
		if (ok) {
			mc_reply_empty(reply, 200);
			mc_mcp_watch_drop(m, p->sess.id, NULL);
			mc_log_info("mcp_session_ended", "{s:s}", "session", p->sess.id);
		} else {
			mc_reply_rpc_error(reply, 404, NULL, MC_RPC_NO_SESSION, "session not found");
		}
		break;
	case MC_P_TOOL:
		mc_reply_result(reply, p->rpc_id, mc_tools_finish(&p->tool, res));
		break;
	case MC_P_CLIENT:
		break;          /* no state op: finished by mc_mcp_client_response */
	}
}

static void mc_mcp_remove(struct mc_mcp *m, unsigned i)
{
	mc_pending_clear(&m->p[i]);
	m->p[i] = m->p[--m->np];
}

int mc_mcp_state_result(struct mc_mcp *m, uint64_t id, const struct mc_state_res *res)
{
	for (unsigned i = 0; i < m->np; i++) {
		struct mc_mcp_reply reply;

		if (m->p[i].op != id)
			continue;
		memset(&reply, 0, sizeof(reply));
		mc_mcp_complete(m, &m->p[i], res, &reply);
		mc_mcp_record_answer(m, &m->p[i].in, m->p[i].corr,
		    m->p[i].sid[0] ? m->p[i].sid : m->p[i].sess.id, m->p[i].start_ns, &reply);
		m->env.deliver(m->env.ctx, m->p[i].token, &reply);
		mc_mcp_remove(m, i);
		return 0;
	}
	return -ENOENT;
}

/* The client did not answer our request in time: end the call's stream
 * with a tool error (the request itself is not withdrawn). */
static void mc_mcp_client_timeout(struct mc_mcp *m, struct mc_pending *p)
{
	json_t *resp = mc_rpc_error(p->rpc_id, MC_RPC_SERVER_BUSY,
	    "the client did not answer the server's request within the request timeout", NULL);
	size_t len = 0;
	char *body = resp ? mc_sse_body(NULL, resp, &len) : NULL;

	if (body != NULL)
		m->env.stream_push(m->env.ctx, p->token, body, len, true);
	mc_log_warn("mcp_client_timeout", "{s:s, s:s, s:s}", "correlation_id", p->corr, "session", p->sess.id,
	    "id", p->out_id);
	free(body);
	json_decref(resp);
}

unsigned mc_mcp_expire(struct mc_mcp *m, uint64_t now_ns, uint64_t timeout_ns)
{
	for (unsigned i = 0; i < m->np;) {
		struct mc_mcp_reply reply;

		if (now_ns < m->p[i].start_ns || now_ns - m->p[i].start_ns < timeout_ns) {
			i++;
			continue;
		}
		if (m->p[i].kind == MC_P_CLIENT) {
			mc_mcp_client_timeout(m, &m->p[i]);
			mc_mcp_remove(m, i);
			continue;
		}
		memset(&reply, 0, sizeof(reply));
		mc_reply_rpc_error(&reply, 503, m->p[i].rpc_id, MC_RPC_SERVER_BUSY,
		    "server busy: the state manager did not answer within the request timeout "
		    "(the change may or may not have been applied)");
		mc_reply_header(&reply, "Retry-After", "1");
		mc_log_warn("mcp_request_timeout", "{s:s, s:I}", "correlation_id", m->p[i].corr,
		    "op", (json_int_t)m->p[i].op);
		mc_mcp_record_answer(m, &m->p[i].in, m->p[i].corr, m->p[i].sid, m->p[i].start_ns,
		    &reply);
		m->env.deliver(m->env.ctx, m->p[i].token, &reply);
		mc_mcp_remove(m, i);
	}
	return m->np;
}
