/*
 * mc_http.h - a strict, incremental HTTP/1.1 request-head parser
 * (RFC 9110/9112) for the runtime's listeners: the monitor's /metrics
 * endpoint and the MCP front door.
 *
 * USE
 * The caller owns the bytes: it appends what arrives to one buffer and
 * calls mc_http_parse() with the whole buffer each time.  The parser
 * remembers how far it got, so total work is linear in the head size.
 *   MC_HTTP_AGAIN   the head is not complete: read more, call again with
 *                   the same buffer contents plus the new bytes (the
 *                   buffer may move between calls: only offsets are kept)
 *   MC_HTTP_DONE    *req describes the head; its strings point into the
 *                   buffer passed to that call and stay valid while the
 *                   buffer is unchanged; the body (if any) starts at
 *                   req->head_len
 *   MC_HTTP_ERROR   p->status is the status to answer (400, 413, 414,
 *                   431, 501, 505) and p->error a short reason; the
 *                   connection should be closed after answering
 * For the next request on a keep-alive connection: drop req->head_len (+
 * body) bytes from the buffer and mc_http_parser_reset().
 *
 * STRICTNESS (what is refused, with the status)
 *   400  bare LF or CR, obs-fold, whitespace before ':', empty or non-token
 *        field name, control characters in a value, malformed request line
 *        or target, '#' in the target, missing Host (HTTP/1.1) or several,
 *        malformed or conflicting Content-Length, Transfer-Encoding with
 *        Content-Length or in HTTP/1.0
 *   413  Content-Length above limits.max_body
 *   414  a request line longer than limits.max_head
 *   431  a head longer than limits.max_head, or more than
 *        limits.max_headers fields
 *   501  a transfer coding other than "chunked"
 *   505  an HTTP version other than 1.0 and 1.1
 * Leading empty lines before the request line are skipped (RFC 9112 2.2).
 * Methods are not judged here (any token parses): 405 is the handler's call.
 * Bodies are not parsed: the caller reads content_length bytes, or decodes
 * chunks when req->chunked (left to the caller that accepts bodies).
 *
 * No allocation, no global state: any thread may use its own parser.
 */
#ifndef MC_HTTP_H
#define MC_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define MC_HTTP_MAX_HEADERS 100         /* hard upper bound of limits.max_headers */

enum mc_http_result {
	MC_HTTP_ERROR = -1,
	MC_HTTP_DONE = 0,
	MC_HTTP_AGAIN = 1,
};

struct mc_http_limits {
	uint32_t max_head;              /* request line + fields + blank line, bytes */
	uint32_t max_headers;           /* fields, <= MC_HTTP_MAX_HEADERS */
	uint64_t max_body;              /* largest Content-Length accepted */
};

/* 8 KiB head, 64 fields, 1 MiB body. */
#define MC_HTTP_LIMITS_DEFAULT ((struct mc_http_limits){ 8192, 64, 1u << 20 })

struct mc_http_str {
	const char *p;
	size_t n;
};

struct mc_http_header {
	struct mc_http_str name;        /* as sent (compare case-insensitively) */
	struct mc_http_str value;       /* without surrounding whitespace */
};

struct mc_http_request {
	struct mc_http_str method;      /* "GET" */
	struct mc_http_str target;      /* as sent: "/metrics?x=1", "*", "http://h/p" */
	struct mc_http_str path;        /* "/metrics" ("*" for asterisk-form) */
	struct mc_http_str query;       /* "x=1" (n == 0 when absent) */
	struct mc_http_str host;        /* the Host field (n == 0 when absent) */
	int      version_minor;         /* HTTP/1.<minor>: 0 or 1 */
	bool     keep_alive;            /* after the version's default and Connection */
	bool     chunked;               /* Transfer-Encoding: chunked */
	int64_t  content_length;        /* -1 when absent */
	size_t   head_len;              /* bytes of the head, final CRLF included */
	uint32_t nheaders;
	struct mc_http_header headers[MC_HTTP_MAX_HEADERS];
};

struct mc_http_parser {
	struct mc_http_limits lim;
	/* results for the caller after MC_HTTP_ERROR */
	int      status;                /* HTTP status to answer */
	const char *error;              /* reason, for logs */
	/* progress: offsets into the caller's buffer */
	size_t   line_start;            /* first byte of the line being read */
	size_t   scan;                  /* bytes already searched for LF */
	bool     have_request_line;
	uint32_t method_off, method_len, target_off, target_len;
	int      version_minor;
	uint32_t nheaders, nhost, host_idx;   /* host_idx: the Host field, if nhost */
	int64_t  content_length;
	bool     chunked, conn_close, conn_keep_alive, has_te;
	struct { uint32_t no, nl, vo, vl; } hdr[MC_HTTP_MAX_HEADERS];
};

/* Prepare p for a new request (lim NULL = MC_HTTP_LIMITS_DEFAULT;
 * max_headers is capped at MC_HTTP_MAX_HEADERS). */
void mc_http_parser_init(struct mc_http_parser *p, const struct mc_http_limits *lim);

/* Same limits, next request. */
void mc_http_parser_reset(struct mc_http_parser *p);

/* Parse what buf[0, len) holds so far; see USE above. */
enum mc_http_result mc_http_parse(struct mc_http_parser *p, const char *buf, size_t len,
    struct mc_http_request *req);

/* The first field named `name` (case-insensitive), or NULL. */
const struct mc_http_str *mc_http_header(const struct mc_http_request *req, const char *name);

/* s equals the C string lit: exactly / ignoring ASCII case (ASCII letters
 * only: no mcpcore process leaves the C locale).  Inline, so that against a
 * literal the length is a constant and a length that differs settles it. */
static inline bool mc_http_eq(struct mc_http_str s, const char *lit)
{
	return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

static inline bool mc_http_caseeq(struct mc_http_str s, const char *lit)
{
	return s.n == strlen(lit) && strncasecmp(s.p, lit, s.n) == 0;
}

/* Reason phrase of a status ("Not Found"); "Unknown" for others. */
const char *mc_http_reason(int status);

#endif /* MC_HTTP_H */
