/*
 * http.c - strict incremental HTTP/1.1 request-head parser (mc_http.h).
 *
 * The parser walks the caller's buffer line by line.  `scan` is how far
 * it has looked for the next LF and `line_start` where the current line
 * began; both are offsets, so the caller may grow (move) its buffer
 * between calls.  Each complete line is judged once, at its LF, and what
 * it yields is stored as offsets; only MC_HTTP_DONE turns offsets into
 * pointers, into the buffer of that call.
 */
#include "mc_http.h"

#include <string.h>
#include <strings.h>

/* tchar of RFC 9110 5.6.2, as a table: every header name is checked byte by
 * byte, and a strchr() per '-' showed in the protocol worker's profile. */
static const bool mc_http_tchars[256] = {
	['0' ... '9'] = true, ['a' ... 'z'] = true, ['A' ... 'Z'] = true,
	['!'] = true, ['#'] = true, ['$'] = true, ['%'] = true, ['&'] = true, ['\''] = true,
	['*'] = true, ['+'] = true, ['-'] = true, ['.'] = true, ['^'] = true, ['_'] = true,
	['`'] = true, ['|'] = true, ['~'] = true,
};

static bool mc_http_token(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!mc_http_tchars[(unsigned char)s[i]])
			return false;
	return true;
}

/* field-value characters: VCHAR, obs-text, SP, HTAB */
static bool mc_http_vchar(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static enum mc_http_result mc_http_fail(struct mc_http_parser *p, int status, const char *why)
{
	p->status = status;
	p->error = why;
	return MC_HTTP_ERROR;
}

/* mc_http_caseeq (mc_http.h) on bytes not yet made a struct mc_http_str */
static inline bool mc_caseeq(const char *s, size_t n, const char *lit)
{
	return mc_http_caseeq((struct mc_http_str){ s, n }, lit);
}

void mc_http_parser_init(struct mc_http_parser *p, const struct mc_http_limits *lim)
{
	memset(p, 0, sizeof(*p));
	p->lim = lim != NULL ? *lim : MC_HTTP_LIMITS_DEFAULT;
	if (p->lim.max_headers > MC_HTTP_MAX_HEADERS)
		p->lim.max_headers = MC_HTTP_MAX_HEADERS;
	p->content_length = -1;
}

void mc_http_parser_reset(struct mc_http_parser *p)
{
	struct mc_http_limits lim = p->lim;

	mc_http_parser_init(p, &lim);
}

/* method SP request-target SP HTTP-version */
static enum mc_http_result mc_http_request_line(struct mc_http_parser *p, const char *buf,
    size_t off, size_t n)
{
	const char *line = buf + off, *sp1, *sp2, *v;
	size_t mlen, tlen;

	sp1 = memchr(line, ' ', n);
	if (sp1 == NULL)
		return mc_http_fail(p, 400, "malformed request line");
	mlen = (size_t)(sp1 - line);
	if (!mc_http_token(line, mlen) || mlen > 32)
		return mc_http_fail(p, 400, "method is not a token");
	sp2 = memchr(sp1 + 1, ' ', n - mlen - 1);
	if (sp2 == NULL)
		return mc_http_fail(p, 400, "malformed request line");
	tlen = (size_t)(sp2 - sp1 - 1);
	if (tlen == 0)
		return mc_http_fail(p, 400, "empty request target");
	for (size_t i = 0; i < tlen; i++) {
		unsigned char c = (unsigned char)sp1[1 + i];

		if (c <= 0x20 || c >= 0x7f || c == '#')
			return mc_http_fail(p, 400, "invalid character in request target");
	}
	v = sp2 + 1;
	if ((size_t)(line + n - v) != 8 || memcmp(v, "HTTP/", 5) != 0 ||
	    v[5] < '0' || v[5] > '9' || v[6] != '.' || v[7] < '0' || v[7] > '9')
		return mc_http_fail(p, 400, "malformed HTTP version");
	if (v[5] != '1' || v[7] > '1')
		return mc_http_fail(p, 505, "HTTP version not supported");
	p->version_minor = v[7] - '0';
	p->method_off = (uint32_t)off;
	p->method_len = (uint32_t)mlen;
	p->target_off = (uint32_t)(off + mlen + 1);
	p->target_len = (uint32_t)tlen;
	/* target forms: origin ("/p"), asterisk ("*", OPTIONS only), absolute */
	if (sp1[1] == '/')
		return MC_HTTP_DONE;
	if (tlen == 1 && sp1[1] == '*')
		return mc_caseeq(line, mlen, "OPTIONS") ? MC_HTTP_DONE :
		    mc_http_fail(p, 400, "asterisk-form target outside OPTIONS");
	if ((tlen > 7 && mc_caseeq(sp1 + 1, 7, "http://")) ||
	    (tlen > 8 && mc_caseeq(sp1 + 1, 8, "https://")))
		return MC_HTTP_DONE;
	return mc_http_fail(p, 400, "request target is not origin-, absolute- or asterisk-form");
}

/* Content-Length: 1*DIGIT; repeats must agree. */
static enum mc_http_result mc_http_content_length(struct mc_http_parser *p, const char *v,
    size_t n)
{
	int64_t len = 0;

	if (n == 0 || n > 18)
		return mc_http_fail(p, 400, "invalid Content-Length");
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return mc_http_fail(p, 400, "invalid Content-Length");
		len = len * 10 + (v[i] - '0');
	}
	if (p->content_length >= 0 && p->content_length != len)
		return mc_http_fail(p, 400, "conflicting Content-Length fields");
	p->content_length = len;
	return MC_HTTP_DONE;
}

/* Connection: comma-separated tokens; we care about close / keep-alive. */
static void mc_http_connection(struct mc_http_parser *p, const char *v, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t s, e;

		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < n && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (mc_caseeq(v + s, e - s, "close"))
			p->conn_close = true;
		else if (mc_caseeq(v + s, e - s, "keep-alive"))
			p->conn_keep_alive = true;
	}
}

static enum mc_http_result mc_http_field(struct mc_http_parser *p, const char *buf,
    size_t off, size_t n)
{
	const char *line = buf + off, *colon, *v;
	size_t nlen, vlen;

	if (line[0] == ' ' || line[0] == '\t')
		return mc_http_fail(p, 400, "obsolete line folding");
	colon = memchr(line, ':', n);
	if (colon == NULL)
		return mc_http_fail(p, 400, "header line without ':'");
	nlen = (size_t)(colon - line);
	if (!mc_http_token(line, nlen))
		return mc_http_fail(p, 400, "invalid field name (or whitespace before ':')");
	v = colon + 1;
	vlen = n - nlen - 1;
	while (vlen > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	for (size_t i = 0; i < vlen; i++)
		if (!mc_http_vchar((unsigned char)v[i]))
			return mc_http_fail(p, 400, "control character in a field value");
	if (p->nheaders >= p->lim.max_headers)
		return mc_http_fail(p, 431, "too many header fields");
	p->hdr[p->nheaders].no = (uint32_t)off;
	p->hdr[p->nheaders].nl = (uint32_t)nlen;
	p->hdr[p->nheaders].vo = (uint32_t)(v - buf);
	p->hdr[p->nheaders].vl = (uint32_t)vlen;
	p->nheaders++;
	if (mc_caseeq(line, nlen, "content-length"))
		return mc_http_content_length(p, v, vlen);
	if (mc_caseeq(line, nlen, "transfer-encoding")) {
		if (p->has_te || !mc_caseeq(v, vlen, "chunked"))
			return mc_http_fail(p, 501, "transfer coding not implemented (only chunked)");
		p->has_te = true;
		p->chunked = true;
	} else if (mc_caseeq(line, nlen, "host")) {
		p->host_idx = p->nheaders - 1;
		p->nhost++;
	} else if (mc_caseeq(line, nlen, "connection")) {
		mc_http_connection(p, v, vlen);
	}
	return MC_HTTP_DONE;
}

static struct mc_http_str mc_http_at(const char *buf, uint32_t off, uint32_t len)
{
	return (struct mc_http_str){ buf + off, len };
}

/* The blank line: whole-head checks, then the request for the caller. */
static enum mc_http_result mc_http_finish(struct mc_http_parser *p, const char *buf,
    size_t head_len, struct mc_http_request *req)
{
	struct mc_http_str t;

	if (p->version_minor == 1 && p->nhost != 1)
		return mc_http_fail(p, 400, p->nhost ? "several Host fields" : "HTTP/1.1 without Host");
	if (p->nhost > 1)
		return mc_http_fail(p, 400, "several Host fields");
	if (p->has_te && (p->content_length >= 0 || p->version_minor == 0))
		return mc_http_fail(p, 400, p->version_minor == 0 ? "Transfer-Encoding in HTTP/1.0" :
		    "both Transfer-Encoding and Content-Length");
	if (p->content_length > 0 && (uint64_t)p->content_length > p->lim.max_body)
		return mc_http_fail(p, 413, "Content-Length above the limit");
	memset(req, 0, offsetof(struct mc_http_request, headers));
	req->method = mc_http_at(buf, p->method_off, p->method_len);
	req->target = t = mc_http_at(buf, p->target_off, p->target_len);
	if (t.p[0] != '/' && !(t.n == 1 && t.p[0] == '*')) {
		/* absolute-form: the path starts at the first '/' after "scheme://" */
		const char *auth = memchr(t.p, ':', t.n) + 3;
		const char *slash = memchr(auth, '/', (size_t)(t.p + t.n - auth));
		const char *q = memchr(auth, '?', (size_t)(t.p + t.n - auth));

		if (slash == NULL || (q != NULL && q < slash)) {
			t.p = "/";       /* "http://h" or "http://h?q": the path is "/" */
			t.n = 1;
			if (q != NULL)
				req->query = (struct mc_http_str){ q + 1, (size_t)(req->target.p +
				    req->target.n - q - 1) };
			req->path = t;
			goto fields;
		}
		t = (struct mc_http_str){ slash, (size_t)(t.p + t.n - slash) };
	}
	{
		const char *q = memchr(t.p, '?', t.n);

		req->path = (struct mc_http_str){ t.p, q ? (size_t)(q - t.p) : t.n };
		if (q != NULL)
			req->query = (struct mc_http_str){ q + 1, (size_t)(t.p + t.n - q - 1) };
	}
fields:
	req->version_minor = p->version_minor;
	req->content_length = p->content_length;
	req->chunked = p->chunked;
	req->keep_alive = p->version_minor == 1 ? !p->conn_close :
	    p->conn_keep_alive && !p->conn_close;
	req->head_len = head_len;
	req->nheaders = p->nheaders;
	for (uint32_t i = 0; i < p->nheaders; i++) {
		req->headers[i].name = mc_http_at(buf, p->hdr[i].no, p->hdr[i].nl);
		req->headers[i].value = mc_http_at(buf, p->hdr[i].vo, p->hdr[i].vl);
	}
	if (p->nhost == 1)
		req->host = req->headers[p->host_idx].value;
	return MC_HTTP_DONE;
}

enum mc_http_result mc_http_parse(struct mc_http_parser *p, const char *buf, size_t len,
    struct mc_http_request *req)
{
	if (p->status != 0)
		return MC_HTTP_ERROR;   /* an error is final until reset */
	for (;;) {
		const char *lf = p->scan < len ? memchr(buf + p->scan, '\n', len - p->scan) : NULL;
		size_t nl, end, off, n;
		enum mc_http_result rc;

		if (lf == NULL) {
			p->scan = len;
			if (len > p->lim.max_head)
				return p->have_request_line ?
				    mc_http_fail(p, 431, "request head too large") :
				    mc_http_fail(p, 414, "request line too long");
			return MC_HTTP_AGAIN;
		}
		nl = (size_t)(lf - buf);
		end = nl + 1;
		if (end > p->lim.max_head)
			return p->have_request_line ? mc_http_fail(p, 431, "request head too large") :
			    mc_http_fail(p, 414, "request line too long");
		if (nl == p->line_start || buf[nl - 1] != '\r')
			return mc_http_fail(p, 400, "bare LF (lines end with CRLF)");
		off = p->line_start;
		n = nl - 1 - off;
		if (memchr(buf + off, '\r', n) != NULL)
			return mc_http_fail(p, 400, "bare CR");
		p->line_start = p->scan = end;
		if (!p->have_request_line) {
			if (n == 0)
				continue;       /* empty lines before the request line */
			rc = mc_http_request_line(p, buf, off, n);
			if (rc != MC_HTTP_DONE)
				return rc;
			p->have_request_line = true;
			continue;
		}
		if (n == 0)
			return mc_http_finish(p, buf, end, req);
		rc = mc_http_field(p, buf, off, n);
		if (rc != MC_HTTP_DONE)
			return rc;
	}
}

const struct mc_http_str *mc_http_header(const struct mc_http_request *req, const char *name)
{
	size_t n = strlen(name);

	for (uint32_t i = 0; i < req->nheaders; i++)
		if (req->headers[i].name.n == n && strncasecmp(req->headers[i].name.p, name, n) == 0)
			return &req->headers[i].value;
	return NULL;
}

const char *mc_http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default:  return "Unknown";
	}
}
