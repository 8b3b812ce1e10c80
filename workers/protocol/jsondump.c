/*
 * jsondump.c - a jansson document as compact JSON text, for the front
 * door's answers (contract in mc_protocol.h: mc_json_dump).
 *
 * Why not json_dumpb: jansson 2.14's encoder guards against reference
 * loops by printing every container's address with snprintf("%p") into a
 * hashtable key, and decodes every string it writes as UTF-8 once more.
 * On the 414-byte answer to a state_get that came to a quarter of the
 * protocol worker's time per request (perf, `mcpcore-bench mcp`).  Our
 * documents are trees (built here, or by jansson's decoder, which cannot
 * make a loop) whose strings jansson already checked when they were made,
 * so that work buys nothing.  yajl's generator (libyajl, Debian) writes
 * the same text without it: the tree is walked here, and each value is
 * handed to yajl, which escapes strings and formats numbers.
 *
 * The text is what json_dumpb(doc, JSON_COMPACT) gives, byte for byte:
 * members in the object's order, the same escapes, reals with 17
 * significant digits and a ".0" when they would read as integers
 * (tests/unit/test_jsondump.c compares the two).  yajl nests at most
 * YAJL_MAX_DEPTH (128) containers; a deeper document (only a client can
 * send one, and only into an echo) is dumped by jansson instead.
 *
 * Single-threaded use per call; the generator lives for one call.
 */
#include "mc_protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

/* Where the text goes: the caller's buffer, then the heap once it outgrows it. */
struct mc_jd_out {
	char *buf;
	size_t len, cap;
	bool heap, oom;
};

static void mc_jd_print(void *ctx, const char *s, size_t n)
{
	struct mc_jd_out *o = ctx;

	if (o->oom)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = (o->len + n + 1) * 2;
		char *nb = o->heap ? realloc(o->buf, cap) : malloc(cap);

		if (nb == NULL) {
			o->oom = true;
			return;
		}
		if (!o->heap)
			memcpy(nb, o->buf, o->len);
		o->buf = nb;
		o->cap = cap;
		o->heap = true;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
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
		return yajl_gen_integer(g, (long long)json_integer_value(v));
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

/* The slow road: jansson's own encoder (documents yajl cannot nest). */
static char *mc_jd_jansson(const json_t *doc, char *buf, size_t cap, size_t *len)
{
	size_t n = json_dumpb(doc, buf, cap, JSON_COMPACT | JSON_ENCODE_ANY);
	char *out;

	if (n > 0 && n < cap) {
		buf[n] = '\0';
		*len = n;
		return buf;
	}
	out = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
	*len = out ? strlen(out) : 0;
	return out;
}

char *mc_json_dump(const json_t *doc, char *buf, size_t cap, size_t *len)
{
	struct mc_jd_out o = { .buf = buf, .cap = cap };
	yajl_gen g = yajl_gen_alloc(NULL);
	yajl_gen_status st;

	*len = 0;
	if (g == NULL)
		return NULL;
	if (cap == 0) {
		o.buf = NULL;
		o.heap = true;
	}
	yajl_gen_config(g, yajl_gen_print_callback, mc_jd_print, &o);
	st = doc ? mc_jd_value(g, doc) : yajl_gen_invalid_string;
	yajl_gen_free(g);
	if (st == yajl_gen_status_ok && !o.oom)
		mc_jd_print(&o, "", 1);         /* the NUL, counted out below */
	if (st != yajl_gen_status_ok || o.oom) {
		if (o.heap)
			free(o.buf);
		return st == yajl_max_depth_exceeded ? mc_jd_jansson(doc, buf, cap, len) : NULL;
	}
	*len = o.len - 1;
	return o.buf;
}
