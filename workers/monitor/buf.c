/*
 * buf.c - a growable text buffer for responses and expositions
 * (mc_monitor.h).  An allocation failure is sticky (b->failed) instead of
 * an error on every call, so renderers check once at the end.
 */
#include "mc_monitor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mc_buf_init(struct mc_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void mc_buf_free(struct mc_buf *b)
{
	free(b->p);
	mc_buf_init(b);
}

void mc_buf_clear(struct mc_buf *b)
{
	b->len = 0;
	b->failed = false;
}

/* Room for n more bytes and a NUL. */
static bool mc_buf_room(struct mc_buf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->failed)
		return false;
	if (b->len + n + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + n + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (p == NULL) {
		b->failed = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void mc_buf_put(struct mc_buf *b, const char *s, size_t n)
{
	if (!mc_buf_room(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void mc_buf_puts(struct mc_buf *b, const char *s)
{
	mc_buf_put(b, s, strlen(s));
}

void mc_buf_printf(struct mc_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!mc_buf_room(b, 128))
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if ((size_t)n >= b->cap - b->len) {
		if (!mc_buf_room(b, (size_t)n))
			return;
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}
