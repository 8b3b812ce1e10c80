/*
 * test_http.c - unit tests for the HTTP/1.1 request-head parser
 * (workers/net/http.c, contract in workers/net/mc_http.h): what parses and
 * how, every refusal and its status, limits, keep-alive rules, pipelining,
 * and that feeding the bytes in any pieces (in a buffer that moves between
 * calls) gives exactly what parsing them at once gives.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_http.h"

static struct mc_http_request req;

/* Parse the whole of s; returns the result, p->status on error. */
static enum mc_http_result parse_lim(const char *s, size_t n, const struct mc_http_limits *lim,
    struct mc_http_parser *p)
{
	mc_http_parser_init(p, lim);
	return mc_http_parse(p, s, n, &req);
}

static enum mc_http_result parse(const char *s, struct mc_http_parser *p)
{
	return parse_lim(s, strlen(s), NULL, p);
}

/* Expect an error with this status. */
static void refuse(const char *s, int status)
{
	struct mc_http_parser p;

	cr_assert_eq(parse(s, &p), MC_HTTP_ERROR, "accepted: %s", s);
	cr_assert_eq(p.status, status, "status %d (%s), expected %d for: %s", p.status, p.error,
	    status, s);
	cr_assert_not_null(p.error);
}

static void accept_(const char *s)
{
	struct mc_http_parser p;

	cr_assert_eq(parse(s, &p), MC_HTTP_DONE, "refused (%d %s): %s", p.status,
	    p.error ? p.error : "", s);
}

static bool str_is(struct mc_http_str s, const char *lit)
{
	return mc_http_eq(s, lit);
}

Test(http, simple_get)
{
	struct mc_http_parser p;
	const char *s = "GET /metrics?x=1&y HTTP/1.1\r\nHost: localhost:9464\r\n"
	    "User-Agent: test\r\nAccept: */*\r\n\r\n";

	cr_assert_eq(parse(s, &p), MC_HTTP_DONE);
	cr_assert(str_is(req.method, "GET"));
	cr_assert(str_is(req.target, "/metrics?x=1&y"));
	cr_assert(str_is(req.path, "/metrics"));
	cr_assert(str_is(req.query, "x=1&y"));
	cr_assert(str_is(req.host, "localhost:9464"));
	cr_assert_eq(req.version_minor, 1);
	cr_assert(req.keep_alive);
	cr_assert(!req.chunked);
	cr_assert_eq(req.content_length, -1);
	cr_assert_eq(req.head_len, strlen(s));
	cr_assert_eq(req.nheaders, 3);
	cr_assert(str_is(req.headers[1].name, "User-Agent"));
	cr_assert(str_is(req.headers[1].value, "test"));
	cr_assert_not_null(mc_http_header(&req, "user-agent"));
	cr_assert(str_is(*mc_http_header(&req, "ACCEPT"), "*/*"));
	cr_assert_null(mc_http_header(&req, "cookie"));
}

Test(http, no_query_and_body_position)
{
	struct mc_http_parser p;
	const char *s = "POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";

	cr_assert_eq(parse(s, &p), MC_HTTP_DONE);
	cr_assert(str_is(req.path, "/mcp"));
	cr_assert_eq(req.query.n, 0);
	cr_assert_eq(req.content_length, 5);
	cr_assert_eq(strcmp(s + req.head_len, "hello"), 0, "the body starts at head_len");
}

Test(http, value_whitespace_is_trimmed_and_obs_text_allowed)
{
	struct mc_http_parser p;

	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost:   h \t\r\nX-Empty:\r\nX-Tab: a\tb\r\n"
	    "X-Latin: caf\xe9\r\n\r\n", &p), MC_HTTP_DONE);
	cr_assert(str_is(req.host, "h"));
	cr_assert_eq(mc_http_header(&req, "x-empty")->n, 0);
	cr_assert(str_is(*mc_http_header(&req, "x-tab"), "a\tb"));
	cr_assert(str_is(*mc_http_header(&req, "x-latin"), "caf\xe9"));
}

Test(http, target_forms)
{
	struct mc_http_parser p;

	cr_assert_eq(parse("GET http://example.com:9464/metrics?a HTTP/1.1\r\nHost: x\r\n\r\n", &p),
	    MC_HTTP_DONE);
	cr_assert(str_is(req.path, "/metrics"));
	cr_assert(str_is(req.query, "a"));
	cr_assert_eq(parse("GET HTTPS://example.com HTTP/1.1\r\nHost: x\r\n\r\n", &p), MC_HTTP_DONE);
	cr_assert(str_is(req.path, "/"));
	cr_assert_eq(parse("GET http://example.com?q=1 HTTP/1.1\r\nHost: x\r\n\r\n", &p), MC_HTTP_DONE);
	cr_assert(str_is(req.path, "/"));
	cr_assert(str_is(req.query, "q=1"));
	cr_assert_eq(parse("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", &p), MC_HTTP_DONE);
	cr_assert(str_is(req.path, "*"));
	refuse("GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400);
	refuse("GET metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400);
	refuse("CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", 400);
	refuse("GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n", 400);
	refuse("GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400);
	refuse("GET /\x80 HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

Test(http, request_line_errors)
{
	refuse("GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400);         /* empty target */
	refuse("GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400);         /* trailing space */
	refuse("GET /\r\nHost: x\r\n\r\n", 400);                   /* no version (HTTP/0.9) */
	refuse("GET / http/1.1\r\nHost: x\r\n\r\n", 400);
	refuse("GET / HTTP/1\r\nHost: x\r\n\r\n", 400);
	refuse("GET / HTTP/1.10\r\nHost: x\r\n\r\n", 400);
	refuse("G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400);          /* method not a token */
	refuse(" GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
	refuse("GETTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
	refuse("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505);
	refuse("GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505);
	refuse("GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505);
	accept_("BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n");        /* methods are the handler's */
}

Test(http, line_endings)
{
	refuse("GET / HTTP/1.1\nHost: x\r\n\r\n", 400);            /* bare LF, request line */
	refuse("GET / HTTP/1.1\r\nHost: x\n\r\n", 400);            /* bare LF, field */
	refuse("GET / HTTP/1.1\r\nHost: x\r\n\n", 400);            /* bare LF, end */
	refuse("GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n", 400);       /* bare CR */
	refuse("GET /\r HTTP/1.1\r\nHost: x\r\n\r\n", 400);
	accept_("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");      /* leading empty lines */
}

Test(http, field_errors)
{
	refuse("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400);      /* obs-fold */
	refuse("GET / HTTP/1.1\r\nHost: x\r\n\tfolded\r\n\r\n", 400);
	refuse("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400);                 /* space before ':' */
	refuse("GET / HTTP/1.1\r\nHost: x\r\n: empty\r\n\r\n", 400);
	refuse("GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400);
	refuse("GET / HTTP/1.1\r\nHost: x\r\nX(y): 1\r\n\r\n", 400);
	refuse("GET / HTTP/1.1\r\nHost: x\r\nX: a\x01z\r\n\r\n", 400);     /* control */
	refuse("GET / HTTP/1.1\r\nHost: x\r\nX: a\x7fz\r\n\r\n", 400);     /* DEL */
	{
		static const char nul[] = "GET / HTTP/1.1\r\nHost: x\r\nX: a\0z\r\n\r\n";
		struct mc_http_parser p;

		cr_assert_eq(parse_lim(nul, sizeof(nul) - 1, NULL, &p), MC_HTTP_ERROR);
		cr_assert_eq(p.status, 400, "NUL in a value");
	}
}

/* Every byte in a field name: accepted exactly when it is a tchar
 * (RFC 9110 5.6.2), whichever end of the name it is at. */
Test(http, field_name_bytes)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";

	for (int c = 1; c < 256; c++) {
		bool tchar = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z') || strchr(extra, c) != NULL;
		char s[64];
		struct mc_http_parser p;
		enum mc_http_result rc;

		if (c == ':' || c == '\r' || c == '\n')
			continue;       /* they end the name or the line: other tests */
		snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nHost: x\r\nX%cy: 1\r\n%cZ: 2\r\n\r\n", c, c);
		rc = parse(s, &p);
		if (tchar) {
			cr_assert_eq(rc, MC_HTTP_DONE, "tchar 0x%02x refused: %s", c, p.error);
			cr_assert_eq(req.nheaders, 3);
			cr_assert_eq(req.headers[1].name.n, 3);
			cr_assert_eq((unsigned char)req.headers[1].name.p[1], c);
		} else {
			cr_assert_eq(rc, MC_HTTP_ERROR, "0x%02x accepted in a field name", c);
			cr_assert_eq(p.status, 400, "0x%02x: status %d", c, p.status);
		}
	}
}

Test(http, host_rules)
{
	struct mc_http_parser p;

	accept_("GET / HTTP/1.0\r\n\r\n");                           /* optional in 1.0 */
	cr_assert_eq(req.host.n, 0);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nA: 1\r\nhOsT: h:1\r\nB: 2\r\n\r\n", &p), MC_HTTP_DONE);
	cr_assert(str_is(req.host, "h:1"), "the Host field, whatever its case and place");
	refuse("GET / HTTP/1.1\r\n\r\n", 400);
	refuse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
	refuse("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400);
}

Test(http, keep_alive)
{
	struct mc_http_parser p;

	cr_assert_eq(parse("GET / HTTP/1.0\r\n\r\n", &p), MC_HTTP_DONE);
	cr_assert(!req.keep_alive);
	cr_assert_eq(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &p), MC_HTTP_DONE);
	cr_assert(req.keep_alive);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &p), MC_HTTP_DONE);
	cr_assert(!req.keep_alive);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade , CLOSE\r\n\r\n", &p),
	    MC_HTTP_DONE);
	cr_assert(!req.keep_alive);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: te\r\n\r\n", &p), MC_HTTP_DONE);
	cr_assert(req.keep_alive);
}

Test(http, content_length)
{
	struct mc_http_parser p;
	struct mc_http_limits lim = { 8192, 64, 100 };

	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", &p), MC_HTTP_DONE);
	cr_assert_eq(req.content_length, 0);
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n",
	    &p), MC_HTTP_DONE);
	cr_assert_eq(req.content_length, 7);
	refuse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n", 400);
	refuse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", 400);
	refuse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400);
	refuse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n", 400);
	refuse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n", 400);
	refuse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400);
	refuse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1234567890123456789\r\n\r\n", 400);
	{
		const char *s = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n";

		cr_assert_eq(parse_lim(s, strlen(s), &lim, &p), MC_HTTP_ERROR);
		cr_assert_eq(p.status, 413);
		s = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
		cr_assert_eq(parse_lim(s, strlen(s), &lim, &p), MC_HTTP_DONE);
	}
}

Test(http, transfer_encoding)
{
	struct mc_http_parser p;

	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n", &p),
	    MC_HTTP_DONE);
	cr_assert(req.chunked);
	cr_assert_eq(req.content_length, -1);
	refuse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
	refuse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
	refuse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", 501);
	refuse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400);
	refuse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
	refuse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

Test(http, size_limits)
{
	struct mc_http_limits lim = { 128, 4, 1 << 20 };
	struct mc_http_parser p;
	char buf[512];

	/* a request line longer than the head limit: 414, complete or not */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "GET /", 5);
	cr_assert_eq(parse_lim(buf, 200, &lim, &p), MC_HTTP_ERROR);
	cr_assert_eq(p.status, 414);
	snprintf(buf, sizeof(buf), "GET /%0150d HTTP/1.1\r\nHost: x\r\n\r\n", 0);
	cr_assert_eq(parse_lim(buf, strlen(buf), &lim, &p), MC_HTTP_ERROR);
	cr_assert_eq(p.status, 414);
	/* fields beyond the head limit: 431 */
	snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: x\r\nX: %0120d\r\n\r\n", 0);
	cr_assert_eq(parse_lim(buf, strlen(buf), &lim, &p), MC_HTTP_ERROR);
	cr_assert_eq(p.status, 431);
	snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: x\r\nX: %0120d", 0);
	cr_assert_eq(parse_lim(buf, strlen(buf), &lim, &p), MC_HTTP_ERROR, "incomplete and too long");
	cr_assert_eq(p.status, 431);
	/* too many fields: 431 */
	snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n");
	cr_assert_eq(parse_lim(buf, strlen(buf), &lim, &p), MC_HTTP_ERROR);
	cr_assert_eq(p.status, 431);
	snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
	cr_assert_eq(parse_lim(buf, strlen(buf), &lim, &p), MC_HTTP_DONE, "exactly the limit");
	/* exactly max_head bytes is fine */
	{
		char s[129];
		int n = snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nHost: x\r\nX: ");
		int pad = 128 - n - 4;

		memset(s + n, 'v', (size_t)pad);
		memcpy(s + n + pad, "\r\n\r\n", 4);
		cr_assert_eq(parse_lim(s, 128, &lim, &p), MC_HTTP_DONE);
		cr_assert_eq(req.head_len, 128);
	}
	/* the hard cap on max_headers */
	lim.max_headers = 1000;
	mc_http_parser_init(&p, &lim);
	cr_assert_eq(p.lim.max_headers, MC_HTTP_MAX_HEADERS);
}

Test(http, need_more_then_done)
{
	struct mc_http_parser p;
	const char *s = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

	mc_http_parser_init(&p, NULL);
	cr_assert_eq(mc_http_parse(&p, s, 0, &req), MC_HTTP_AGAIN);
	cr_assert_eq(mc_http_parse(&p, s, 10, &req), MC_HTTP_AGAIN);
	cr_assert_eq(mc_http_parse(&p, s, strlen(s) - 1, &req), MC_HTTP_AGAIN);
	cr_assert_eq(mc_http_parse(&p, s, strlen(s), &req), MC_HTTP_DONE);
}

Test(http, errors_are_sticky_until_reset)
{
	struct mc_http_parser p;
	const char *good = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

	cr_assert_eq(parse("GET / HTTP/9.9\r\n\r\n", &p), MC_HTTP_ERROR);
	cr_assert_eq(mc_http_parse(&p, good, strlen(good), &req), MC_HTTP_ERROR);
	mc_http_parser_reset(&p);
	cr_assert_eq(p.status, 0);
	cr_assert_eq(mc_http_parse(&p, good, strlen(good), &req), MC_HTTP_DONE);
}

Test(http, pipelined_requests)
{
	struct mc_http_parser p;
	const char *s = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c";
	size_t off, n = strlen(s);

	mc_http_parser_init(&p, NULL);
	cr_assert_eq(mc_http_parse(&p, s, n, &req), MC_HTTP_DONE);
	cr_assert(str_is(req.path, "/a"));
	off = req.head_len;
	mc_http_parser_reset(&p);
	cr_assert_eq(mc_http_parse(&p, s + off, n - off, &req), MC_HTTP_DONE);
	cr_assert(str_is(req.method, "HEAD"));
	cr_assert(str_is(req.path, "/b"));
	off += req.head_len;
	mc_http_parser_reset(&p);
	cr_assert_eq(mc_http_parse(&p, s + off, n - off, &req), MC_HTTP_AGAIN);
}

/*
 * Feed s in pieces (cut at every position, then byte by byte), copying the
 * bytes into a fresh buffer each time (the caller's buffer may move), and
 * compare with parsing everything at once.
 */
static void same_in_pieces(const char *s, size_t n, const struct mc_http_limits *lim)
{
	struct mc_http_parser whole, part;
	struct mc_http_request r1;
	enum mc_http_result e1, e2;

	mc_http_parser_init(&whole, lim);
	e1 = mc_http_parse(&whole, s, n, &r1);
	for (size_t cut = 0; cut <= n; cut++) {
		char *a = malloc(n + 1);

		mc_http_parser_init(&part, lim);
		memcpy(a, s, cut);
		e2 = mc_http_parse(&part, a, cut, &req);
		if (e2 == MC_HTTP_AGAIN) {
			char *b = malloc(n + 1);

			memcpy(b, s, n);
			free(a);
			a = b;
			e2 = mc_http_parse(&part, a, n, &req);
		}
		if (e1 == MC_HTTP_DONE && e2 == MC_HTTP_DONE && cut < r1.head_len) {
			cr_assert_eq(req.head_len, r1.head_len);
			cr_assert_eq(req.nheaders, r1.nheaders);
			cr_assert_eq(req.path.n, r1.path.n);
			cr_assert_eq(memcmp(req.path.p, r1.path.p, r1.path.n), 0);
			cr_assert_eq(req.path.p - a, r1.path.p - s, "views point into the last buffer");
			cr_assert_eq(req.keep_alive, r1.keep_alive);
			cr_assert_eq(req.content_length, r1.content_length);
		} else if (e1 == MC_HTTP_ERROR) {
			/* an error may show up early (a cut after the bad byte), never late */
			cr_assert(e2 == MC_HTTP_ERROR, "whole: error %d, cut at %zu: %d", whole.status,
			    cut, e2);
			cr_assert_eq(part.status, whole.status, "cut at %zu", cut);
		}
		free(a);
	}
	/* byte by byte */
	mc_http_parser_init(&part, lim);
	e2 = MC_HTTP_AGAIN;
	for (size_t i = 0; i <= n && e2 == MC_HTTP_AGAIN; i++)
		e2 = mc_http_parse(&part, s, i, &req);
	cr_assert_eq(e2, e1 == MC_HTTP_AGAIN ? MC_HTTP_AGAIN : e1);
	if (e1 == MC_HTTP_DONE)
		cr_assert_eq(req.head_len, r1.head_len);
}

Test(http, any_split_gives_the_same_result)
{
	static const char *const cases[] = {
		"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9464\r\nUser-Agent: Prometheus/2.42.0\r\n"
		"Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n"
		"Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 1\r\n\r\n",
		"\r\nPOST /mcp?s=1 HTTP/1.0\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\nX: 1\r\n\r\n",
		"GET / HTTP/3.0\r\n\r\n",
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		same_in_pieces(cases[i], strlen(cases[i]), NULL);
}

/* Random mutations of a valid request: never a crash, never a read past the
 * bytes given (ASan watches), pieces agree with the whole. */
Test(http, mutated_requests)
{
	static const char base[] = "GET /metrics?a=b HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n"
	    "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n";
	static const char alphabet[] = "\r\n :\t\x01\x7f\x80/?#GETHOST0123456789,";
	struct mc_http_limits lim = { 96, 6, 1000 };
	uint64_t x = 88172645463325252ULL;

	for (int iter = 0; iter < 300; iter++) {
		size_t n = sizeof(base) - 1;
		char *s = malloc(n);

		memcpy(s, base, n);
		for (int k = 0; k < 1 + iter % 4; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			s[x % n] = alphabet[(x >> 32) % (sizeof(alphabet) - 1)];
		}
		same_in_pieces(s, n, iter % 2 ? &lim : NULL);
		free(s);
	}
}

Test(http, helpers)
{
	struct mc_http_str s = { "Keep-Alive", 10 };

	cr_assert(mc_http_caseeq(s, "keep-alive"));
	cr_assert(!mc_http_eq(s, "keep-alive"));
	cr_assert(mc_http_eq(s, "Keep-Alive"));
	cr_assert(!mc_http_caseeq(s, "keep-aliv"));
	cr_assert_str_eq(mc_http_reason(404), "Not Found");
	cr_assert_str_eq(mc_http_reason(431), "Request Header Fields Too Large");
	cr_assert_str_eq(mc_http_reason(799), "Unknown");
}
