/*
 * jsondump.c - JSON text for the front door's answers (contract in
 * mc_protocol.h): jansson documents dumped (mc_json_dump), and answers
 * written straight as text (struct mc_jtext) where building a document
 * first would cost more than the answer.
 *
 * Why not json_dumpb: jansson 2.14's encoder guards against reference
 * loops by printing every container's address with snprintf("%p") into a
 * hashtable key, and decodes every string it writes as UTF-8 once more.
 * On the 414-byte answer to a state_get that came to a quarter of the
 * protocol worker's time per request (perf, `mcpcore-bench mcp`).  Our
 * documents are trees (built here, or by a decoder, which cannot make a
 * loop) whose strings were checked when they were made, so that work
 * buys nothing.  yajl's generator (libyajl, Debian) writes the same text
 * without it: the tree is walked here, and each value is handed to yajl,
 * which escapes strings.  Integers are formatted here: yajl_gen_integer
 * goes through snprintf("%lld"), a tenth of a dump's cost.
 *
 * The text is what json_dumpb(doc, JSON_COMPACT) gives, byte for byte:
 * members in the object's order, the same escapes, reals with 17
 * significant digits and a ".0" when they would read as integers
 * (tests/unit/test_jsondump.c compares the two).  yajl nests at most
 * YAJL_MAX_DEPTH (128) containers; a deeper value (only a client can
 * send one, and only into an echo) is dumped by jansson instead.
 *
 * The generator is made once per thread and kept (one per answer was two
 * allocations a request); its print callback appends to the text being
 * built by this thread (mc_jd_cur), which is set around every use.
 */
#include "mc_protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#include "mc_util.h"

static __thread yajl_gen mc_jd_gen;
static __thread struct mc_jtext *mc_jd_cur;

/* ---- the text ------------------------------------------------------------ */

void mc_jtext_init(struct mc_jtext *t, char *buf, size_t cap)
{
	t->buf = cap ? buf : NULL;
	t->len = 0;
	t->cap = cap;
	t->heap = cap == 0;
	t->oom = false;
}

void mc_jtext_raw(struct mc_jtext *t, const char *s, size_t n)
{
	if (t->oom)
		return;
	if (t->len + n + 1 > t->cap) {
		size_t cap = (t->len + n + 1) * 2;
		char *nb = t->heap ? realloc(t->buf, cap) : malloc(cap);

		if (nb == NULL) {
			t->oom = true;
			return;
		}
		if (!t->heap && t->len)
			memcpy(nb, t->buf, t->len);
		t->buf = nb;
		t->cap = cap;
		t->heap = true;
	}
	memcpy(t->buf + t->len, s, n);
	t->len += n;
}

/* v in decimal; returns its length */
static size_t mc_jd_itoa(int64_t v, char num[22])
{
	if (v >= 0)
		return mc_u64toa((uint64_t)v, num);
	/* the magnitude as unsigned: -INT64_MIN does not fit an int64 */
	num[0] = '-';
	return 1 + mc_u64toa(-(uint64_t)v, num + 1);
}

void mc_jtext_int(struct mc_jtext *t, int64_t v)
{
	char num[22];

	mc_jtext_raw(t, num, mc_jd_itoa(v, num));
}

char *mc_jtext_end(struct mc_jtext *t, size_t *len)
{
	*len = 0;
	mc_jtext_raw(t, "", 1);         /* the NUL, not counted in *len */
	if (t->oom) {
		mc_jtext_free(t);
		return NULL;
	}
	*len = t->len - 1;
	return t->buf;
}

void mc_jtext_free(struct mc_jtext *t)
{
	if (t->heap)
		free(t->buf);
	t->buf = NULL;
	t->len = t->cap = 0;
	t->heap = false;
}

char *mc_jtext_take(struct mc_jtext *t, size_t *len)
{
	char *text = mc_jtext_end(t, len), *out;

	if (text == NULL || t->heap)
		return text;
	out = malloc(*len + 1);
	if (out != NULL)
		memcpy(out, text, *len + 1);
	else
		*len = 0;
	return out;
}

/* ---- values through yajl ------------------------------------------------- */

static void mc_jd_print(void *ctx, const char *s, size_t n)
{
	(void)ctx;
	mc_jtext_raw(mc_jd_cur, s, n);
}

/* This thread's generator, reset to take one value into t; NULL if it
 * cannot be made. */
static yajl_gen mc_jd_begin(struct mc_jtext *t)
{
	if (mc_jd_gen == NULL) {
		mc_jd_gen = yajl_gen_alloc(NULL);
		if (mc_jd_gen == NULL)
			return NULL;
		yajl_gen_config(mc_jd_gen, yajl_gen_print_callback, mc_jd_print, NULL);
	}
	yajl_gen_reset(mc_jd_gen, NULL);
	mc_jd_cur = t;
	return mc_jd_gen;
}

void mc_jtext_str(struct mc_jtext *t, const char *s, size_t n)
{
	yajl_gen g = mc_jd_begin(t);

	if (g == NULL || yajl_gen_string(g, (const unsigned char *)s, n) != yajl_gen_status_ok)
		t->oom = true;
}

/* A real as jansson writes it: %.17g, made to read as a real ("1.0"), the
 * exponent without '+' or leading zeros ("1e22", "3e-5"). */
static yajl_gen_status mc_jd_real(yajl_gen g, double d)
{
	char num[40], *e;
	int n = snprintf(num, sizeof(num), "%.17g", d);

	if (n < 0 || (size_t)n + 2 >= sizeof(num))
		return yajl_gen_invalid_number;
	e = strchr(num, 'e');
	if (e == NULL && strspn(num, "0123456789-") == (size_t)n)
		memcpy(num + n, ".0", 3);
	if (e != NULL) {
		char *p = e + 1 + (e[1] == '-'), *q = p + (*p == '+');

		while (*q == '0' && q[1] != '\0')
			q++;
		memmove(p, q, strlen(q) + 1);
	}
	return yajl_gen_number(g, num, strlen(num));
}

static yajl_gen_status mc_jd_integer(yajl_gen g, json_int_t v)
{
	char num[22];

	return yajl_gen_number(g, num, mc_jd_itoa(v, num));
}

static yajl_gen_status mc_jd_value(yajl_gen g, const json_t *v);

static yajl_gen_status mc_jd_object(yajl_gen g, const json_t *v)
{
	yajl_gen_status st = yajl_gen_map_open(g);

	for (void *it = json_object_iter((json_t *)v); it != NULL && st == yajl_gen_status_ok;
	    it = json_object_iter_next((json_t *)v, it)) {
		st = yajl_gen_string(g, (const unsigned char *)json_object_iter_key(it),
		    json_object_iter_key_len(it));
		if (st == yajl_gen_status_ok)
			st = mc_jd_value(g, json_object_iter_value(it));
	}
	return st == yajl_gen_status_ok ? yajl_gen_map_close(g) : st;
}

static yajl_gen_status mc_jd_array(yajl_gen g, const json_t *v)
{
	yajl_gen_status st = yajl_gen_array_open(g);
	size_t n = json_array_size(v);

	for (size_t i = 0; i < n && st == yajl_gen_status_ok; i++)
		st = mc_jd_value(g, json_array_get(v, i));
	return st == yajl_gen_status_ok ? yajl_gen_array_close(g) : st;
}

/* Depth is bounded by yajl: past YAJL_MAX_DEPTH an open fails and the walk unwinds. */
static yajl_gen_status mc_jd_value(yajl_gen g, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return mc_jd_object(g, v);
	case JSON_ARRAY:
		return mc_jd_array(g, v);
	case JSON_STRING:
		return yajl_gen_string(g, (const unsigned char *)json_string_value(v),
		    json_string_length(v));
	case JSON_INTEGER:
		return mc_jd_integer(g, json_integer_value(v));
	case JSON_REAL:
		return mc_jd_real(g, json_real_value(v));
	case JSON_TRUE:
		return yajl_gen_bool(g, 1);
	case JSON_FALSE:
		return yajl_gen_bool(g, 0);
	case JSON_NULL:
		return yajl_gen_null(g);
	}
	return yajl_gen_invalid_string;
}

void mc_jtext_json(struct mc_jtext *t, const json_t *v)
{
	size_t start = t->len;
	yajl_gen g = mc_jd_begin(t);
	yajl_gen_status st;
	char *deep;

	if (g == NULL || v == NULL) {
		t->oom = true;
		return;
	}
	st = mc_jd_value(g, v);
	if (st == yajl_gen_status_ok)
		return;
	if (st != yajl_max_depth_exceeded) {
		t->oom = true;
		return;
	}
	/* the slow road for what yajl cannot nest: jansson's own encoder */
	t->len = start;
	deep = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (deep == NULL) {
		t->oom = true;
		return;
	}
	mc_jtext_raw(t, deep, strlen(deep));
	free(deep);
}

char *mc_json_dump(const json_t *doc, char *buf, size_t cap, size_t *len)
{
	struct mc_jtext t;

	mc_jtext_init(&t, buf, cap);
	mc_jtext_json(&t, doc);
	return mc_jtext_end(&t, len);
}
