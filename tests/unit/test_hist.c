/*
 * test_hist.c - unit tests for the log-linear histograms (shm/hist.c,
 * contract in shm/mc_hist.h): bucket geometry, the documented relative
 * error bound of quantiles against exact nearest-rank percentiles of the
 * same samples (random distributions and extreme values), merge, delta and
 * the exact cumulative counts used for Prometheus `le` buckets.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mc_hist.h"

/* xorshift64*: reproducible samples without libc's rand() state */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static double rng_unit(void)
{
	return (double)(rng() >> 11) / 9007199254740992.0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest rank: the ceil(q*n)-th smallest, q = 0 -> the smallest. */
static uint64_t exact_quantile(const uint64_t *sorted, size_t n, double q)
{
	size_t rank = q <= 0 ? 1 : (size_t)ceil(q * (double)n);

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

static struct mc_hist *hist_new(void)
{
	struct mc_hist *h = calloc(1, sizeof(*h));

	cr_assert_not_null(h);
	return h;
}

static const double qs[] = { 0, 0.0001, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99,
	0.999, 0.9999, 1 };

/* Every quantile of h against the exact sample (samples sorted in place). */
static void check_bound(const struct mc_hist *h, uint64_t *s, size_t n, const char *what)
{
	qsort(s, n, sizeof(*s), cmp_u64);
	cr_assert_eq(mc_hist_count(h), n, "%s: count", what);
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		uint64_t exact = exact_quantile(s, n, qs[i]);
		double est = mc_hist_quantile(h, qs[i]);

		if (exact >= MC_HIST_LIMIT) {
			cr_assert_eq(est, (double)s[n - 1], "%s q=%g: overflowed rank must report max",
			    what, qs[i]);
			continue;
		}
		cr_assert(fabs(est - (double)exact) <= MC_HIST_REL_ERROR * (double)exact,
		    "%s q=%g: estimate %.3f vs exact %llu: relative error %.5f > %.5f", what, qs[i],
		    est, (unsigned long long)exact, fabs(est - (double)exact) / (double)exact,
		    MC_HIST_REL_ERROR);
	}
}

Test(hist, bucket_geometry_is_contiguous_and_tight)
{
	uint64_t expect = 0;

	for (uint32_t i = 0; i < MC_HIST_BUCKETS; i++) {
		uint64_t lo = mc_hist_lower(i), w = mc_hist_width(i);

		cr_assert_eq(lo, expect, "bucket %u starts at %llu, expected %llu", i,
		    (unsigned long long)lo, (unsigned long long)expect);
		cr_assert_eq(mc_hist_index(lo), i);
		cr_assert_eq(mc_hist_index(lo + w - 1), i);
		/* the width bound the error bound rests on */
		if (lo >= MC_HIST_SUB)
			cr_assert_leq((double)w / (double)lo, 1.0 / MC_HIST_SUB, "bucket %u too wide", i);
		else
			cr_assert_eq(w, 1);
		expect = lo + w;
	}
	cr_assert_eq(expect, MC_HIST_LIMIT, "buckets end at 2^40");
	cr_assert_eq(mc_hist_index(MC_HIST_LIMIT), MC_HIST_BUCKETS);
	cr_assert_eq(mc_hist_index(UINT64_MAX), MC_HIST_BUCKETS);
}

Test(hist, every_small_value_lands_in_its_bucket)
{
	for (uint64_t v = 0; v < 200000; v++) {
		uint32_t i = mc_hist_index(v);

		cr_assert_lt(i, MC_HIST_BUCKETS);
		cr_assert(v >= mc_hist_lower(i) && v < mc_hist_lower(i) + mc_hist_width(i));
	}
	for (int e = 17; e < 40; e++)
		for (int k = -3; k <= 3; k++) {
			uint64_t v = (1ULL << e) + (uint64_t)(int64_t)k;
			uint32_t i = mc_hist_index(v);

			cr_assert(v >= mc_hist_lower(i) && v < mc_hist_lower(i) + mc_hist_width(i));
		}
}

Test(hist, empty_histogram)
{
	struct mc_hist *h = hist_new();

	cr_assert_eq(mc_hist_count(h), 0);
	cr_assert_eq(mc_hist_quantile(h, 0.5), 0);
	cr_assert_eq(mc_hist_count_below(h, 1024), 0);
	free(h);
}

Test(hist, quantiles_within_the_bound_uniform_and_log_uniform)
{
	const size_t n = 100000;
	uint64_t *s = malloc(n * sizeof(*s));

	for (int dist = 0; dist < 4; dist++) {
		struct mc_hist *h = hist_new();

		for (size_t i = 0; i < n; i++) {
			switch (dist) {
			case 0:  s[i] = rng() % 1000000; break;                       /* uniform, 1 ms */
			case 1:  s[i] = (uint64_t)exp2(rng_unit() * 40); break;        /* 1 .. 2^40 */
			case 2:  s[i] = (uint64_t)(-log(1 - rng_unit()) * 50000); break; /* exponential */
			default: s[i] = 500 + rng() % 3; break;                        /* near constant */
			}
			if (s[i] >= MC_HIST_LIMIT)
				s[i] = MC_HIST_LIMIT - 1;
			mc_hist_record(h, s[i]);
		}
		check_bound(h, s, n, dist == 0 ? "uniform" : dist == 1 ? "log-uniform" :
		    dist == 2 ? "exponential" : "constant");
		free(h);
	}
	free(s);
}

Test(hist, extreme_values)
{
	static uint64_t s[] = { 0, 0, 1, 15, 16, 17, 31, 32, 33, 1023, 1024, 1025,
		(1ULL << 39) - 1, 1ULL << 39, (1ULL << 40) - 1 };
	uint64_t copy[sizeof(s) / sizeof(s[0])];
	struct mc_hist *h = hist_new();
	size_t n = sizeof(s) / sizeof(s[0]);

	for (size_t i = 0; i < n; i++)
		mc_hist_record(h, s[i]);
	memcpy(copy, s, sizeof(s));
	check_bound(h, copy, n, "edges");
	cr_assert_eq(h->h_max, (1ULL << 40) - 1);
	cr_assert_eq(h->h_overflow, 0);
	/* exact below 32: one-wide buckets */
	cr_assert_eq(mc_hist_quantile(h, 0), 0);
	free(h);
}

Test(hist, overflow_is_counted_and_reported_as_max)
{
	struct mc_hist *h = hist_new();
	uint64_t s[200];

	for (int i = 0; i < 100; i++) {
		s[i] = 1000 + (uint64_t)i;
		mc_hist_record(h, s[i]);
	}
	for (int i = 100; i < 200; i++) {
		s[i] = i == 199 ? UINT64_MAX / 4 : MC_HIST_LIMIT + (uint64_t)i;
		mc_hist_record(h, s[i]);
	}
	cr_assert_eq(h->h_overflow, 100);
	cr_assert_eq(mc_hist_count(h), 200);
	cr_assert_eq(h->h_max, UINT64_MAX / 4);
	check_bound(h, s, 200, "overflow");
	cr_assert_eq(mc_hist_quantile(h, 0.99), (double)(UINT64_MAX / 4));
	free(h);
}

Test(hist, merge_equals_the_union)
{
	struct mc_hist *a = hist_new(), *b = hist_new(), *u = hist_new();
	const size_t n = 50000;
	uint64_t *s = malloc(2 * n * sizeof(*s));

	for (size_t i = 0; i < 2 * n; i++) {
		s[i] = i < n ? rng() % 100000 : (uint64_t)exp2(10 + rng_unit() * 20);
		mc_hist_record(i < n ? a : b, s[i]);
		mc_hist_record(u, s[i]);
	}
	mc_hist_merge(a, b);
	cr_assert_eq(memcmp(a->h_bucket, u->h_bucket, sizeof(u->h_bucket)), 0);
	cr_assert_eq(a->h_sum, u->h_sum);
	cr_assert_eq(a->h_max, u->h_max);
	cr_assert_eq(a->h_overflow, u->h_overflow);
	check_bound(a, s, 2 * n, "merged");
	free(s);
	free(a);
	free(b);
	free(u);
}

Test(hist, delta_is_the_window)
{
	struct mc_hist *cur = hist_new(), *prev = hist_new(), *win = hist_new(), *d = hist_new();

	for (int i = 0; i < 1000; i++)
		mc_hist_record(cur, (uint64_t)i * 7);
	mc_hist_copy(prev, cur);
	for (int i = 0; i < 500; i++) {
		mc_hist_record(cur, 100000 + (uint64_t)i);
		mc_hist_record(win, 100000 + (uint64_t)i);
	}
	mc_hist_delta(d, cur, prev);
	cr_assert_eq(memcmp(d->h_bucket, win->h_bucket, sizeof(win->h_bucket)), 0);
	cr_assert_eq(d->h_sum, win->h_sum);
	cr_assert_eq(mc_hist_count(d), 500);
	/* a reset (a bucket shrank) makes the window the current histogram */
	mc_hist_delta(d, win, cur);
	cr_assert_eq(memcmp(d->h_bucket, win->h_bucket, sizeof(win->h_bucket)), 0);
	free(cur);
	free(prev);
	free(win);
	free(d);
}

Test(hist, count_below_powers_of_two_is_exact)
{
	struct mc_hist *h = hist_new();
	const size_t n = 20000;
	uint64_t *s = malloc(n * sizeof(*s));

	for (size_t i = 0; i < n; i++) {
		s[i] = (uint64_t)exp2(rng_unit() * 41);
		mc_hist_record(h, s[i]);
	}
	for (int e = 0; e <= 40; e++) {
		uint64_t bound = 1ULL << e, exact = 0;

		for (size_t i = 0; i < n; i++)
			exact += s[i] < bound;
		cr_assert_eq(mc_hist_count_below(h, bound), exact, "le=2^%d", e);
	}
	free(s);
	free(h);
}

Test(hist, copy_counts_what_it_copied)
{
	struct mc_hist *h = hist_new(), *c = hist_new();

	for (int i = 0; i < 300; i++)
		mc_hist_record(h, (uint64_t)i * 1000);
	mc_hist_record(h, MC_HIST_LIMIT * 2);
	cr_assert_eq(mc_hist_copy(c, h), 301);
	cr_assert_eq(memcmp(c->h_bucket, h->h_bucket, sizeof(h->h_bucket)), 0);
	cr_assert_eq(c->h_sum, h->h_sum);
	cr_assert_eq(c->h_max, h->h_max);
	free(h);
	free(c);
}
