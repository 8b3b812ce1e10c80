/*
 * mc_util.h - tiny helpers every mcpcore file uses: clocks, alignment,
 * branch hints, decimal formatting, bounded copies.  Header-only; no state.
 */
#ifndef MC_UTIL_H
#define MC_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define MC_LIKELY(x)   __builtin_expect(!!(x), 1)
#define MC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MC_CACHELINE   64
#define MC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static inline uint64_t mc_align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static inline uint64_t mc_align_down(uint64_t v, uint64_t a)
{
	return v & ~(a - 1);
}

/* Largest power of two <= v (v > 0). */
static inline uint64_t mc_floor_pow2(uint64_t v)
{
	return 1ULL << (63 - __builtin_clzll(v));
}

/* CLOCK_MONOTONIC in ns: heartbeats and latencies (same clock in every process). */
static inline uint64_t mc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* CLOCK_REALTIME in ns: timestamps meant for humans and storage. */
static inline uint64_t mc_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* v in decimal into out (NUL-terminated, at most 20 digits); returns the
 * length.  For hot paths, where snprintf's format parsing shows. */
static inline size_t mc_u64toa(uint64_t v, char out[21])
{
	char tmp[20];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	out[n] = '\0';
	return n;
}

/* s[0..n) into dst[cap] (cap > 0), cut to fit, NUL-terminated; returns
 * the length copied.  snprintf("%.*s") without its format parsing. */
static inline size_t mc_strbcpy(char *dst, size_t cap, const char *s, size_t n)
{
	if (n > cap - 1)
		n = cap - 1;
	memcpy(dst, s, n);
	dst[n] = '\0';
	return n;
}

#endif /* MC_UTIL_H */
