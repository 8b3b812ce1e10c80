/*
 * jsonload.c - JSON text as a jansson document, for the front door's
 * requests (contract in mc_protocol.h: mc_json_load).
 *
 * Why not json_loadb: jansson 2.14's decoder reads its input one byte at a
 * time through a stream layer (a call, a UTF-8 check and a position update
 * per byte), copies every token into a growable buffer and decodes strings
 * in a second pass.  On the 120-byte tools/call of `mcpcore-bench mcp`
 * that came to 18% of the protocol worker's time, ~1.9 us per request.
 * yajl's parser (libyajl, Debian) scans the same text with table lookups
 * and hands each value to the callbacks here, which build the tree with
 * jansson's own constructors: the caller gets an ordinary json_t, in
 * 0.75 us (9 900 instructions against json_loadb's 23 600).
 *
 * What is accepted is what json_loadb(JSON_REJECT_DUPLICATES |
 * JSON_DECODE_ANY) accepts, no more and no less, and the tree is the same
 * (tests/unit/test_jsonload.c compares the two, on a corpus and on
 * mutated requests).  yajl alone is laxer; what closes the gap:
 *   - one pass over the text before yajl (mc_jl_scan): strict UTF-8 (no
 *     overlong forms, no encoded surrogates, nothing past U+10FFFF; yajl's
 *     own check is off), \u escapes (no \u0000, no unpaired surrogate:
 *     yajl would encode or replace them), and raw control characters
 *     (yajl skips \v and \f as whitespace, JSON does not).  A backslash is
 *     only legal inside a string, where it always starts an escape, so
 *     reading "\" and the next byte as a pair finds every escape of a
 *     valid text without knowing where its strings are;
 *   - numbers reach us as text (yajl_number) and are converted as jansson
 *     does: no '.', 'e' or 'E' makes an integer, refused outside int64
 *     (yajl's own integer parser refuses INT64_MIN); anything else is a
 *     real from strtod, refused when it overflows, 0 when it underflows;
 *   - depth: jansson counts every value, scalars too, and refuses one
 *     nested deeper than JSON_PARSER_MAX_DEPTH (2048): the same count here;
 *   - duplicate keys: a member set without growing its object replaced one.
 * Two rare inputs go to jansson itself: a text with a NUL byte (jansson
 * drops a NUL that directly follows a number or a literal, so "1\0" reads
 * as 1: not worth copying, and no client sends one), and a number strtod
 * does not read whole (a locale whose decimal point is not '.', which
 * jansson works around; the runtime never sets one).
 *
 * The tree is built in place: a container joins its parent as it opens,
 * so on any error, out of memory included, freeing the root frees all.
 * Single-threaded use per call; the parser lives for one call.
 */
#include "mc_protocol.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#define MC_JL_FLAGS     (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)
#define MC_JL_MAX_DEPTH JSON_PARSER_MAX_DEPTH   /* the installed jansson's limit */
#define MC_JL_STACK     32                      /* open containers kept without the heap */

_Static_assert(sizeof(json_int_t) == sizeof(long long), "jansson built with long long integers");

/* A refusal: where, which json_error_code, and a sentence. */
struct mc_jl_fault {
	size_t pos;
	enum json_error_code code;
	const char *why;
};

struct mc_jl_ctx {
	const char *text;               /* the input: keys pointing into it need no copy */
	size_t len;
	yajl_handle h;                  /* for the offset of a refusal */
	json_t *root;                   /* owned until handed out */
	json_t **stack;                 /* open containers, innermost last (borrowed) */
	size_t depth, cap;
	json_t *inline_stack[MC_JL_STACK];
	const char *key;                /* the key of the member to come, when an object is open */
	size_t key_len;
	char *kbuf;                     /* a copy of a key yajl decoded (it reuses its buffer) */
	size_t kcap;
	size_t root_end;                /* the offset just past the root value */
	bool at_end;                    /* in yajl_complete_parse: offsets count in its " " */
	struct mc_jl_fault fault;       /* set when a callback refuses */
	bool to_jansson;                /* a number strtod would not read: jansson decides */
};

/* ---- errors --------------------------------------------------------------- */

/* What json_loadb leaves in err when it accepts: no line, no text, the
 * position at the end (the code byte is left as it was). */
static void mc_jl_clear(json_error_t *err, size_t len)
{
	if (err == NULL)
		return;
	err->line = -1;
	err->column = -1;
	err->position = len > INT_MAX ? INT_MAX : (int)len;
	memcpy(err->source, "<buffer>", sizeof("<buffer>"));
	err->text[0] = '\0';
}

/* Fill err for a refusal at byte f->pos, with jansson's line (1-based) and
 * column (characters, not bytes) for whoever prints them. */
static void mc_jl_report(json_error_t *err, const char *buf, size_t len,
    const struct mc_jl_fault *f)
{
	size_t pos = f->pos < len ? f->pos : len, n;
	int line = 1, column = 0;

	if (err == NULL)
		return;
	for (size_t i = 0; buf != NULL && i < pos; i++) {
		if (buf[i] == '\n') {
			line++;
			column = 0;
		} else if (((unsigned char)buf[i] & 0xC0) != 0x80) {
			column++;
		}
	}
	err->line = line;
	err->column = column;
	err->position = pos > INT_MAX ? INT_MAX : (int)pos;
	n = strnlen(f->why, JSON_ERROR_TEXT_LENGTH - 2);   /* the last byte holds the code */
	memcpy(err->text, f->why, n);
	err->text[n] = '\0';
	err->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)f->code;
}

/* Where yajl is: the offset just past the token it delivers. */
static size_t mc_jl_offset(const struct mc_jl_ctx *c)
{
	return c->at_end ? c->len : yajl_get_bytes_consumed(c->h);
}

/* A callback's refusal: noted, and 0 to stop yajl. */
static int mc_jl_refuse(struct mc_jl_ctx *c, enum json_error_code code, const char *why)
{
	c->fault.pos = mc_jl_offset(c);
	c->fault.code = code;
	c->fault.why = why;
	return 0;
}

/* ---- the scan before yajl ------------------------------------------------- */

enum mc_jl_verdict {
	MC_JL_TO_YAJL,                  /* nothing yajl would let through wrongly */
	MC_JL_TO_JANSSON,               /* a NUL byte: jansson's own rules apply */
	MC_JL_REFUSED,
};

/* The length of the strict UTF-8 sequence at p (n bytes left), 0 if invalid. */
static size_t mc_jl_utf8(const unsigned char *p, size_t n)
{
	size_t need;
	uint32_t cp, min;

	if (p[0] >= 0xC2 && p[0] <= 0xDF) {
		need = 2, cp = p[0] & 0x1F, min = 0x80;
	} else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
		need = 3, cp = p[0] & 0x0F, min = 0x800;
	} else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
		need = 4, cp = p[0] & 0x07, min = 0x10000;
	} else {
		return 0;       /* a continuation byte, C0/C1 (always overlong), F5-FF */
	}
	if (n < need)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return need;
}

bool mc_utf8_valid(const void *s, size_t n)
{
	const unsigned char *p = s;

	for (size_t i = 0, step; i < n; i += step) {
		step = p[i] < 0x80 ? 1 : mc_jl_utf8(p + i, n - i);
		if (step == 0)
			return false;
	}
	return true;
}

/* The value of 4 hex digits at p, or -1. */
static int32_t mc_jl_hex4(const unsigned char *p)
{
	int32_t v = 0;

	for (int i = 0; i < 4; i++) {
		unsigned char c = p[i];

		if (c >= '0' && c <= '9')
			v = v << 4 | (c - '0');
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			v = v << 4 | ((c | 0x20) - 'a' + 10);
		else
			return -1;
	}
	return v;
}

/*
 * The escape at p[0] == '\\' (n bytes left): how many bytes to step over,
 * or 0 to refuse (f filled but for the position).  Malformed escapes (bad
 * hex, unknown letters, the text's end) are left to yajl, which refuses
 * them as jansson does; only what yajl would accept is judged here.
 */
static size_t mc_jl_escape(const unsigned char *p, size_t n, struct mc_jl_fault *f)
{
	int32_t hi, lo;

	if (n < 2 || p[1] != 'u')
		return n >= 2 && p[1] == '\\' ? 2 : 1;
	if (n < 6 || (hi = mc_jl_hex4(p + 2)) < 0)
		return 2;
	if (hi == 0) {
		f->code = json_error_null_character;
		f->why = "\\u0000 is not allowed in a string";
		return 0;
	}
	if (hi >= 0xDC00 && hi <= 0xDFFF) {
		f->code = json_error_invalid_syntax;
		f->why = "a low surrogate escape without a high one before it";
		return 0;
	}
	if (hi < 0xD800 || hi > 0xDBFF)
		return 6;
	if (n < 12 || p[6] != '\\' || p[7] != 'u' || (lo = mc_jl_hex4(p + 8)) < 0 ||
	    lo < 0xDC00 || lo > 0xDFFF) {
		f->code = json_error_invalid_syntax;
		f->why = "a high surrogate escape not followed by a low one";
		return 0;
	}
	return 12;
}

/* Are the 8 bytes of w all printable ASCII other than the backslash (no
 * byte below 0x20, none from 0x80)?  The classic word tests, exact once
 * no high bit is set: some byte is below n when subtracting n from every
 * byte sets a high bit that was clear, and a backslash is a zero byte
 * (below 1) of w ^ 0x5c5c...5c. */
static bool mc_jl_plain8(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
	uint64_t bs = w ^ (ones * '\\');

	return ((w | ((w - ones * 0x20) & ~w) | ((bs - ones) & ~bs)) & highs) == 0;
}

/*
 * One pass over the text for what yajl lets through and jansson does not:
 * bytes that are not strict UTF-8, \u escapes jansson refuses, and raw
 * control characters other than JSON's whitespace (tab, LF, CR; inside a
 * string even those are refused, by yajl).  Printable ASCII, the bulk of
 * any request, is stepped over 8 bytes at a time.
 */
static enum mc_jl_verdict mc_jl_scan(const unsigned char *s, size_t len, struct mc_jl_fault *f)
{
	size_t i = 0, step;

	while (i < len) {
		unsigned char c;
		uint64_t w;

		if (len - i >= sizeof(w)) {
			memcpy(&w, s + i, sizeof(w));
			if (mc_jl_plain8(w)) {
				i += sizeof(w);
				continue;
			}
		}
		c = s[i];
		if ((unsigned char)(c - 0x20) < 0x60 && c != '\\') {
			step = 1;
		} else if (c == '\\') {
			step = mc_jl_escape(s + i, len - i, f);
		} else if (c >= 0x80) {
			step = mc_jl_utf8(s + i, len - i);
			f->code = json_error_invalid_utf8;
			f->why = "invalid UTF-8";
		} else if (c == '\t' || c == '\n' || c == '\r') {
			step = 1;
		} else if (c == '\0') {
			return MC_JL_TO_JANSSON;
		} else {
			step = 0;
			f->code = json_error_invalid_syntax;
			f->why = "a control character outside JSON's whitespace";
		}
		if (step == 0) {
			f->pos = i;
			return MC_JL_REFUSED;
		}
		i += step;
	}
	return MC_JL_TO_YAJL;
}

/* ---- the tree ------------------------------------------------------------- */

/* v (a new value, NULL when out of memory) joins the open container, or is the root. */
static int mc_jl_add(struct mc_jl_ctx *c, json_t *v)
{
	json_t *top;
	size_t n;

	if (v == NULL)
		return mc_jl_refuse(c, json_error_out_of_memory, "out of memory");
	if (c->depth == 0) {
		c->root = v;
		c->root_end = mc_jl_offset(c);  /* a container's end moves it on */
		return 1;
	}
	top = c->stack[c->depth - 1];
	if (json_is_array(top)) {
		/* the _new calls take v even when they fail */
		if (json_array_append_new(top, v) != 0)
			return mc_jl_refuse(c, json_error_out_of_memory, "out of memory");
		return 1;
	}
	n = json_object_size(top);
	if (json_object_setn_new_nocheck(top, c->key, c->key_len, v) != 0)
		return mc_jl_refuse(c, json_error_out_of_memory, "out of memory");
	if (json_object_size(top) == n)
		return mc_jl_refuse(c, json_error_duplicate_key, "duplicate object key");
	return 1;
}

/* May one more value go in?  jansson counts every value, scalars included. */
static int mc_jl_deep(struct mc_jl_ctx *c)
{
	return c->depth >= MC_JL_MAX_DEPTH ?
	    mc_jl_refuse(c, json_error_stack_overflow, "maximum nesting depth reached") : 1;
}

static int mc_jl_scalar(struct mc_jl_ctx *c, json_t *v)
{
	if (!mc_jl_deep(c)) {
		json_decref(v);
		return 0;
	}
	return mc_jl_add(c, v);
}

static int mc_jl_null(void *ctx)
{
	return mc_jl_scalar(ctx, json_null());
}

static int mc_jl_bool(void *ctx, int b)
{
	return mc_jl_scalar(ctx, json_boolean(b));
}

static int mc_jl_string(void *ctx, const unsigned char *s, size_t n)
{
	return mc_jl_scalar(ctx, json_stringn_nocheck((const char *)s, n));
}

/* A JSON integer's text (no '.', 'e', 'E') as strtoll reads it: -ERANGE
 * outside int64, as jansson refuses it. */
static int mc_jl_integer(const char *s, size_t n, json_int_t *out)
{
	bool neg = s[0] == '-';
	unsigned long long limit = neg ? (unsigned long long)LLONG_MAX + 1 : LLONG_MAX, v = 0;

	for (size_t i = neg; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (v > (limit - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*out = !neg ? (json_int_t)v : v > LLONG_MAX ? LLONG_MIN : -(json_int_t)v;
	return 0;
}

/* A real's text through strtod, as jansson does: 0 with *out, -ERANGE on
 * overflow (underflow is accepted: it gives 0 or a subnormal), -EINVAL
 * when strtod stops early (a foreign decimal point), -ENOMEM. */
static int mc_jl_real(const char *s, size_t n, double *out)
{
	char small[64], *t = n < sizeof(small) ? small : malloc(n + 1), *end;
	int rc = 0;

	if (t == NULL)
		return -ENOMEM;
	memcpy(t, s, n);
	t[n] = '\0';
	errno = 0;
	*out = strtod(t, &end);
	if (end != t + n)
		rc = -EINVAL;
	else if ((*out == HUGE_VAL || *out == -HUGE_VAL) && errno == ERANGE)
		rc = -ERANGE;
	if (t != small)
		free(t);
	return rc;
}

static int mc_jl_number(void *ctx, const char *s, size_t n)
{
	struct mc_jl_ctx *c = ctx;
	json_int_t i;
	double d;
	int rc;

	if (memchr(s, '.', n) == NULL && memchr(s, 'e', n) == NULL && memchr(s, 'E', n) == NULL) {
		if (mc_jl_integer(s, n, &i) == 0)
			return mc_jl_scalar(c, json_integer(i));
		return mc_jl_refuse(c, json_error_numeric_overflow,
		    s[0] == '-' ? "too big negative integer" : "too big integer");
	}
	rc = mc_jl_real(s, n, &d);
	if (rc == 0)
		return mc_jl_scalar(c, json_real(d));
	if (rc == -EINVAL) {
		c->to_jansson = true;
		return 0;
	}
	return mc_jl_refuse(c, rc == -ERANGE ? json_error_numeric_overflow : json_error_out_of_memory,
	    rc == -ERANGE ? "real number overflow" : "out of memory");
}

/* A container opens: it joins its parent now, then becomes the innermost. */
static int mc_jl_open(struct mc_jl_ctx *c, json_t *v)
{
	if (!mc_jl_scalar(c, v))
		return 0;
	if (c->depth == c->cap) {
		size_t cap = c->cap * 2;
		json_t **s = c->stack == c->inline_stack ? malloc(cap * sizeof(*s)) :
		    realloc(c->stack, cap * sizeof(*s));

		if (s == NULL)
			return mc_jl_refuse(c, json_error_out_of_memory, "out of memory");
		if (c->stack == c->inline_stack)
			memcpy(s, c->inline_stack, sizeof(c->inline_stack));
		c->stack = s;
		c->cap = cap;
	}
	c->stack[c->depth++] = v;
	return 1;
}

static int mc_jl_start_map(void *ctx)
{
	return mc_jl_open(ctx, json_object());
}

static int mc_jl_start_array(void *ctx)
{
	return mc_jl_open(ctx, json_array());
}

static int mc_jl_end(void *ctx)
{
	struct mc_jl_ctx *c = ctx;

	if (--c->depth == 0)
		c->root_end = mc_jl_offset(c);
	return 1;
}

/* The key of the next member.  yajl hands a key without escapes as a
 * pointer into the input, which lives for the whole call; a decoded one
 * sits in yajl's buffer, which the member's value (a string) may reuse
 * before it reaches us, so it is copied. */
static int mc_jl_key(void *ctx, const unsigned char *k, size_t n)
{
	struct mc_jl_ctx *c = ctx;
	uintptr_t at = (uintptr_t)k, text = (uintptr_t)c->text;

	if (at >= text && at - text <= c->len && n <= c->len - (at - text)) {
		c->key = (const char *)k;
		c->key_len = n;
		return 1;
	}
	if (n > c->kcap) {
		char *b = realloc(c->kbuf, n);

		if (b == NULL)
			return mc_jl_refuse(c, json_error_out_of_memory, "out of memory");
		c->kbuf = b;
		c->kcap = n;
	}
	if (n > 0)
		memcpy(c->kbuf, k, n);
	c->key = c->kbuf;
	c->key_len = n;
	return 1;
}

static const yajl_callbacks mc_jl_callbacks = {
	.yajl_null = mc_jl_null,
	.yajl_boolean = mc_jl_bool,
	.yajl_number = mc_jl_number,
	.yajl_string = mc_jl_string,
	.yajl_start_map = mc_jl_start_map,
	.yajl_map_key = mc_jl_key,
	.yajl_end_map = mc_jl_end,
	.yajl_start_array = mc_jl_start_array,
	.yajl_end_array = mc_jl_end,
};

/* ---- the call ------------------------------------------------------------- */

/* yajl's refusal as a fault: its message ("parse error: trailing garbage")
 * without the newline, at the offset where it stopped. */
static void mc_jl_yajl_fault(const struct mc_jl_ctx *c, char *msg, size_t cap,
    struct mc_jl_fault *f)
{
	unsigned char *s = yajl_get_error(c->h, 0, NULL, 0);

	snprintf(msg, cap, "%s", s != NULL ? (const char *)s : "invalid JSON");
	msg[strcspn(msg, "\n")] = '\0';
	if (s != NULL)
		yajl_free_error(c->h, s);
	f->pos = mc_jl_offset(c);
	f->code = c->at_end ? json_error_premature_end_of_input :
	    strstr(msg, "trailing garbage") ? json_error_end_of_input_expected :
	    json_error_invalid_syntax;
	f->why = msg;
}

/* Only whitespace may follow the root.  yajl checks that too, but lets an
 * unterminated string through ("{} \"x" passes: its lexer takes the string
 * for one that goes on in the next chunk, and the " " yajl_complete_parse
 * feeds it does not end it). */
static bool mc_jl_tail_ok(const struct mc_jl_ctx *c, struct mc_jl_fault *f)
{
	for (size_t i = c->root_end; i < c->len; i++) {
		char ch = c->text[i];

		if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
			*f = (struct mc_jl_fault){ i, json_error_end_of_input_expected,
			    "end of input expected after the value" };
			return false;
		}
	}
	return true;
}

/* The text through yajl (the scan passed it).  The document, or NULL with
 * f filled, or NULL with c->to_jansson set. */
static json_t *mc_jl_parse(struct mc_jl_ctx *c, char *msg, size_t cap, struct mc_jl_fault *f)
{
	yajl_status st;
	json_t *doc = NULL;

	c->h = yajl_alloc(&mc_jl_callbacks, NULL, c);
	if (c->h == NULL) {
		*f = (struct mc_jl_fault){ 0, json_error_out_of_memory, "out of memory" };
		return NULL;
	}
	yajl_config(c->h, yajl_dont_validate_strings, 1);       /* mc_jl_scan did, strictly */
	st = yajl_parse(c->h, (const unsigned char *)c->text, c->len);
	if (st == yajl_status_ok) {
		c->at_end = true;       /* a number at the very end comes now */
		st = yajl_complete_parse(c->h);
	}
	if (st == yajl_status_ok) {
		if (mc_jl_tail_ok(c, f)) {
			doc = c->root;
			c->root = NULL;
		}
	} else if (st == yajl_status_client_canceled) {
		*f = c->fault;
	} else {
		mc_jl_yajl_fault(c, msg, cap, f);
	}
	yajl_free(c->h);
	return doc;
}

json_t *mc_json_load(const char *buf, size_t len, json_error_t *err)
{
	struct mc_jl_ctx c = { .text = buf, .len = len, .cap = MC_JL_STACK };
	struct mc_jl_fault f = { 0, json_error_invalid_argument, "wrong arguments" };
	char msg[JSON_ERROR_TEXT_LENGTH];
	json_t *doc = NULL;

	c.stack = c.inline_stack;
	mc_jl_clear(err, len);
	if (buf == NULL)
		goto out;
	switch (mc_jl_scan((const unsigned char *)buf, len, &f)) {
	case MC_JL_TO_JANSSON:
		return json_loadb(buf, len, MC_JL_FLAGS, err);
	case MC_JL_REFUSED:
		goto out;
	case MC_JL_TO_YAJL:
		break;
	}
	doc = mc_jl_parse(&c, msg, sizeof(msg), &f);
out:
	json_decref(c.root);
	if (c.stack != c.inline_stack)
		free(c.stack);
	free(c.kbuf);
	if (c.to_jansson)
		return json_loadb(buf, len, MC_JL_FLAGS, err);
	if (doc == NULL)
		mc_jl_report(err, buf, len, &f);
	return doc;
}
