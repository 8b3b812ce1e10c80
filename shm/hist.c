/*
 * hist.c - log-linear histograms: copy, merge, quantiles (mc_hist.h).
 *
 * Recording is inline in the header; this file holds what readers do.
 * Every function here reads its inputs word by word with relaxed loads,
 * because the input may be a histogram in shared memory that its writer
 * is updating right now.
 */
#include "mc_hist.h"

#include <string.h>

_Static_assert(MC_HIST_BUCKETS == 592, "bucket count changed: update the docs and tests");

static inline uint64_t mc_hist_ld(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

uint64_t mc_hist_copy(struct mc_hist *dst, const struct mc_hist *src)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < MC_HIST_BUCKETS; i++) {
		dst->h_bucket[i] = mc_hist_ld(&src->h_bucket[i]);
		n += dst->h_bucket[i];
	}
	dst->h_overflow = mc_hist_ld(&src->h_overflow);
	dst->h_sum = mc_hist_ld(&src->h_sum);
	dst->h_max = mc_hist_ld(&src->h_max);
	dst->h_pad = 0;
	return n + dst->h_overflow;
}

uint64_t mc_hist_count(const struct mc_hist *h)
{
	uint64_t n = mc_hist_ld(&h->h_overflow);

	for (uint32_t i = 0; i < MC_HIST_BUCKETS; i++)
		n += mc_hist_ld(&h->h_bucket[i]);
	return n;
}

void mc_hist_merge(struct mc_hist *dst, const struct mc_hist *src)
{
	uint64_t m = mc_hist_ld(&src->h_max);

	for (uint32_t i = 0; i < MC_HIST_BUCKETS; i++)
		dst->h_bucket[i] += mc_hist_ld(&src->h_bucket[i]);
	dst->h_overflow += mc_hist_ld(&src->h_overflow);
	dst->h_sum += mc_hist_ld(&src->h_sum);
	if (m > dst->h_max)
		dst->h_max = m;
}

void mc_hist_delta(struct mc_hist *dst, const struct mc_hist *cur, const struct mc_hist *prev)
{
	/* a bucket that shrank means cur is not a later copy of prev (a reset):
	 * the window is then cur itself */
	for (uint32_t i = 0; i < MC_HIST_BUCKETS; i++)
		if (cur->h_bucket[i] < prev->h_bucket[i]) {
			memcpy(dst, cur, sizeof(*dst));
			return;
		}
	for (uint32_t i = 0; i < MC_HIST_BUCKETS; i++)
		dst->h_bucket[i] = cur->h_bucket[i] - prev->h_bucket[i];
	dst->h_overflow = cur->h_overflow >= prev->h_overflow ? cur->h_overflow - prev->h_overflow : 0;
	dst->h_sum = cur->h_sum - prev->h_sum;
	dst->h_max = cur->h_max;
	dst->h_pad = 0;
}

double mc_hist_quantile(const struct mc_hist *h, double q)
{
	uint64_t n = mc_hist_count(h), rank, seen = 0, max = mc_hist_ld(&h->h_max);

	if (n == 0)
		return 0;
	if (!(q > 0))                           /* also NaN */
		rank = 1;
	else if (q >= 1)
		rank = n;
	else {
		double want = q * (double)n;      /* ceil without libm */

		rank = (uint64_t)want;
		rank += (double)rank < want;
		rank = rank < 1 ? 1 : rank > n ? n : rank;
	}
	for (uint32_t i = 0; i < MC_HIST_BUCKETS; i++) {
		seen += mc_hist_ld(&h->h_bucket[i]);
		if (seen >= rank) {
			/* midpoint of the integers in [lo, lo + w): lo + (w - 1) / 2 */
			uint64_t lo = mc_hist_lower(i);
			double mid = (double)lo + (double)(mc_hist_width(i) - 1) / 2.0;

			/* the exact sample is in [lo, max], so clamping to max only
			 * brings us closer (a max lagging behind a concurrent write
			 * can be below lo: then it is ignored) */
			return max >= lo && (double)max < mid ? (double)max : mid;
		}
	}
	return (double)max;     /* the rank is among the overflowed samples */
}

uint64_t mc_hist_count_below(const struct mc_hist *h, uint64_t bound)
{
	uint32_t end = bound >= MC_HIST_LIMIT ? MC_HIST_BUCKETS : mc_hist_index(bound);
	uint64_t n = 0;

	for (uint32_t i = 0; i < end; i++)
		n += mc_hist_ld(&h->h_bucket[i]);
	return n;
}
