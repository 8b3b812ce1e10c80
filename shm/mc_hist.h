/*
 * mc_hist.h - log-linear (HDR-style) histograms of unsigned integers with
 * a bounded relative error: O(1) recording without locks or syscalls,
 * merge, quantiles.
 *
 * BUCKETS
 * Values below 2^MC_HIST_SUB_BITS (16) each have their own bucket.  Above,
 * every power-of-two range [2^e, 2^(e+1)) is cut into 2^MC_HIST_SUB_BITS
 * equal sub-buckets of width 2^(e-4).  Values up to 2^MC_HIST_MAX_BITS - 1
 * (2^40 ns is 18.3 minutes) are bucketed; larger ones are counted in
 * h_overflow (and in h_sum and h_max, which stay exact).
 *
 * ERROR BOUND
 * A quantile is reported as the midpoint of the bucket holding the sample
 * of that rank, clamped to the largest sample seen.  The exact sample lies
 * in the same bucket, whose width is at most 2^-4 of its lower bound, so
 *     |estimate - exact| <= MC_HIST_REL_ERROR * exact,  MC_HIST_REL_ERROR = 1/32
 * for every sample below 2^40 (exact below 32, where buckets are one wide).
 * Ranks: quantile q of n samples is the ceil(q*n)-th smallest (q = 0: the
 * smallest), the "nearest rank" definition the tests compare against.
 * A quantile whose rank falls among overflowed samples is h_max.
 *
 * CONCURRENCY
 * One writer per histogram.  mc_hist_record() does plain relaxed loads and
 * stores (no lock prefix, no fences): a histogram in shared memory may be
 * read by other processes at any time, each 64-bit word is read whole, but
 * a reader may see a sample in its bucket and not yet in h_sum (or the
 * reverse).  Readers therefore compute the count from the buckets they
 * copied (mc_hist_copy), so count, buckets and quantiles of one copy always
 * agree with each other; h_sum and h_max may lag by the samples being
 * recorded at that instant.
 */
#ifndef MC_HIST_H
#define MC_HIST_H

#include <stdint.h>

#define MC_HIST_SUB_BITS   4u
#define MC_HIST_SUB        (1u << MC_HIST_SUB_BITS)
#define MC_HIST_MAX_BITS   40u
#define MC_HIST_BUCKETS    (MC_HIST_SUB * (MC_HIST_MAX_BITS - MC_HIST_SUB_BITS + 1u))  /* 592 */
#define MC_HIST_LIMIT      (1ULL << MC_HIST_MAX_BITS)   /* first value that overflows */
#define MC_HIST_REL_ERROR  (1.0 / (double)(2u << MC_HIST_SUB_BITS))                /* 1/32 */

struct mc_hist {
	uint64_t h_sum;                 /* sum of all samples (wraps after 2^64) */
	uint64_t h_max;                 /* largest sample, 0 when empty */
	uint64_t h_overflow;            /* samples >= MC_HIST_LIMIT */
	uint64_t h_pad;
	uint64_t h_bucket[MC_HIST_BUCKETS];
};

/* Bucket index of v; MC_HIST_BUCKETS when v overflows. */
static inline uint32_t mc_hist_index(uint64_t v)
{
	uint32_t e;

	if (v < MC_HIST_SUB)
		return (uint32_t)v;
	e = 63u - (uint32_t)__builtin_clzll(v);
	if (e >= MC_HIST_MAX_BITS)
		return MC_HIST_BUCKETS;
	return (e - MC_HIST_SUB_BITS + 1u) * MC_HIST_SUB +
	    (uint32_t)(v >> (e - MC_HIST_SUB_BITS)) - MC_HIST_SUB;
}

/* Smallest value of bucket i (i < MC_HIST_BUCKETS) and its width. */
static inline uint64_t mc_hist_lower(uint32_t i)
{
	uint32_t g = i / MC_HIST_SUB;

	return g == 0 ? i : (uint64_t)(MC_HIST_SUB + i % MC_HIST_SUB) << (g - 1u);
}

static inline uint64_t mc_hist_width(uint32_t i)
{
	uint32_t g = i / MC_HIST_SUB;

	return g == 0 ? 1 : 1ULL << (g - 1u);
}

/* Writer.  Record one sample: O(1), no syscall, no atomic read-modify-write. */
static inline void mc_hist_record(struct mc_hist *h, uint64_t v)
{
	uint32_t i = mc_hist_index(v);
	uint64_t *slot = i < MC_HIST_BUCKETS ? &h->h_bucket[i] : &h->h_overflow;

	__atomic_store_n(slot, __atomic_load_n(slot, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&h->h_sum, __atomic_load_n(&h->h_sum, __ATOMIC_RELAXED) + v,
	    __ATOMIC_RELAXED);
	if (v > __atomic_load_n(&h->h_max, __ATOMIC_RELAXED))
		__atomic_store_n(&h->h_max, v, __ATOMIC_RELAXED);
}

/* Any process.  Copy a (possibly shared, possibly being written) histogram
 * word by word; returns the number of samples in the copy. */
uint64_t mc_hist_copy(struct mc_hist *dst, const struct mc_hist *src);

/* Samples in h (buckets + overflow). */
uint64_t mc_hist_count(const struct mc_hist *h);

/* dst += src (bucket by bucket; max of the maxima).  Merging is exact: the
 * merged histogram is the one the union of both sample sets would give. */
void mc_hist_merge(struct mc_hist *dst, const struct mc_hist *src);

/* dst = cur - prev, for the samples recorded between two copies of the same
 * histogram (h_max is cur's: the window's own maximum is not known). */
void mc_hist_delta(struct mc_hist *dst, const struct mc_hist *cur, const struct mc_hist *prev);

/*
 * Quantile q (0..1) by the nearest-rank rule, within MC_HIST_REL_ERROR of
 * the exact sample (see ERROR BOUND).  Returns 0 for an empty histogram.
 */
double mc_hist_quantile(const struct mc_hist *h, double q);

/* Samples < bound, for bound a power of two <= MC_HIST_LIMIT (a bucket
 * edge, so the count is exact): the cumulative `le` buckets of Prometheus. */
uint64_t mc_hist_count_below(const struct mc_hist *h, uint64_t bound);

#endif /* MC_HIST_H */
