/*
 * state.c - the state table's geometry and its lock-free readers
 * (protocol in mc_state.h).  The writer is workers/state/writer.c.
 */
#include "mc_state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* header-only: inlined and specialised for short keys (no library call) */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "mc_layout.h"
#include "mc_util.h"

_Static_assert(sizeof(struct mc_state_entry) == 64, "state entries are one cache line");
_Static_assert(sizeof(struct mc_state_table) <= MC_STATE_HDR_SIZE, "state header too big");

int mc_state_geometry(const struct mc_config *cfg, uint64_t size,
    struct mc_state_geometry *geo, char *err, size_t errlen)
{
	uint64_t biggest = 2ULL * cfg->state_max_key_size + cfg->state_max_value_size;
	uint64_t cap;

	/* an eighth of the region indexes the rest: 64-byte entries for blocks
	 * of ~450 bytes on average fill both at about the same time */
	cap = size / 8 / sizeof(struct mc_state_entry);
	cap = cap ? mc_floor_pow2(cap) : 0;
	geo->capacity = cap;
	geo->entries_off = MC_STATE_HDR_SIZE;
	geo->arena_off = mc_align_up(geo->entries_off + cap * sizeof(struct mc_state_entry), 4096);
	geo->arena_size = size > geo->arena_off ? size - geo->arena_off : 0;
	if (cap < 64 || geo->arena_size < 4 * mc_state_class_size(mc_state_class(biggest)))
		return mc_config_error(cfg, MC_CFG_CORE_STATE_CACHE_SIZE, err, errlen,
		    "%llu bytes are too small for the state table: need room for 64 entries and "
		    "4 values of the largest size (max_value_size %u + 2 x max_key_size %u)",
		    (unsigned long long)size, cfg->state_max_value_size, cfg->state_max_key_size);
	if (cfg->core_state < MC_STATE_CTL_BYTES(cap))
		return mc_config_error(cfg, MC_CFG_REGIONS_CORE_STATE, err, errlen,
		    "%llu bytes cannot hold the state worker's control block for %llu table "
		    "entries: need %llu", (unsigned long long)cfg->core_state,
		    (unsigned long long)cap, (unsigned long long)MC_STATE_CTL_BYTES(cap));
	return 0;
}

const struct mc_state_table *mc_state_table(const struct mc_seg *seg)
{
	const struct mc_state_table *t = (const struct mc_state_table *)
	    (seg->base + seg->hdr->sh_regions[MC_REGION_SHARED_STATE_CACHE].rg_offset);

	if (ck_pr_load_64(&t->st_magic) != MC_STATE_MAGIC)
		return NULL;
	ck_pr_fence_acquire();
	return t;
}

/*
 * Always inlined into the lookup: left to itself, link-time optimisation
 * stops inlining it once it has a few callers (the writer's prefetch), and
 * a read then pays a call and loses the short-input fast paths of XXH3.
 */
static inline __attribute__((always_inline)) uint64_t mc_state_hash_inline(const void *ns,
    size_t nslen, const void *key, size_t klen)
{
	return XXH3_64bits_withSeed(key, klen, XXH3_64bits(ns, nslen));
}

uint64_t mc_state_hash(const void *ns, size_t nslen, const void *key, size_t klen)
{
	return mc_state_hash_inline(ns, nslen, key, klen);
}

unsigned mc_state_class(uint64_t bytes)
{
	unsigned p;
	uint64_t base, step;

	if (bytes <= 256)
		return bytes ? (unsigned)((bytes + 15) / 16 - 1) : 0;
	p = 63 - (unsigned)__builtin_clzll(bytes - 1);          /* base = 2^p < bytes */
	base = 1ULL << p;
	step = base / 4;
	return 16 + (p - 8) * 4 + (unsigned)((bytes - base + step - 1) / step) - 1;
}

uint64_t mc_state_class_size(unsigned cls)
{
	unsigned p;

	if (cls < 16)
		return 16ULL * (cls + 1);
	p = 8 + (cls - 16) / 4;
	return (1ULL << p) + ((1ULL << p) / 4) * ((cls - 16) % 4 + 1);
}

/* Pointers a reader needs, from the table (bounds-checked once). */
struct mc_state_view {
	const struct mc_state_table *t;
	const struct mc_state_entry *entries;
	const uint8_t *arena;
	uint64_t mask;
	uint64_t arena_size;
};

static int mc_state_view_check(const struct mc_seg *seg, struct mc_state_view *v)
{
	const struct mc_region *rg = &seg->hdr->sh_regions[MC_REGION_SHARED_STATE_CACHE];

	v->t = mc_state_table(seg);
	if (v->t == NULL)
		return -ENODEV;
	/* the geometry is input from another process: check it fits the region */
	if (v->t->st_capacity == 0 || (v->t->st_capacity & (v->t->st_capacity - 1)) ||
	    v->t->st_entries_off + v->t->st_capacity * sizeof(struct mc_state_entry) >
	    rg->rg_offset + rg->rg_size || v->t->st_arena_off + v->t->st_arena_size >
	    rg->rg_offset + rg->rg_size || v->t->st_entries_off < rg->rg_offset ||
	    v->t->st_arena_off < rg->rg_offset)
		return -ENODEV;
	v->entries = (const struct mc_state_entry *)(seg->base + v->t->st_entries_off);
	v->arena = seg->base + v->t->st_arena_off;
	v->mask = v->t->st_capacity - 1;
	v->arena_size = v->t->st_arena_size;
	return 0;
}

/*
 * The geometry never changes once the worker has set the table up, so a
 * process checks it once and keeps the result with its mapping (the
 * handle is per process and, like everything on it, used by one thread).
 */
static int mc_state_view(const struct mc_seg *seg, struct mc_state_view *v)
{
	struct mc_seg *mut = (struct mc_seg *)seg;
	int rc;

	if (MC_LIKELY(seg->state_view != NULL)) {
		*v = *seg->state_view;
		return 0;
	}
	rc = mc_state_view_check(seg, v);
	if (rc == 0 && (mut->state_view = malloc(sizeof(*v))) != NULL)
		*mut->state_view = *v;
	return rc;
}

/*
 * A consistent copy of entry i.  While the entry's lock is odd, the
 * writer's intent holds its final contents (or the writer is between two
 * stores and we spin for a moment).
 */
static void mc_state_snapshot(const struct mc_state_view *v, uint64_t i,
    struct mc_state_entry *out, uint32_t *seq)
{
	const struct mc_state_entry *e = &v->entries[i];
	const struct mc_state_intent *in = &v->t->st_intent;

	for (;;) {
		uint32_t s1 = ck_pr_load_32(&e->e_seq), is;

		if (MC_LIKELY((s1 & 1) == 0)) {
			ck_pr_fence_load();
			memcpy(out, e, sizeof(*out));
			ck_pr_fence_load();
			if (ck_pr_load_32(&e->e_seq) == s1) {
				*seq = s1;
				return;
			}
			continue;
		}
		is = ck_pr_load_32(&in->in_seq);
		if ((is & 1) == 0 && ck_pr_load_32(&in->in_phase) == MC_STATE_COMMITTING &&
		    ck_pr_load_64(&in->in_idx) == i) {
			ck_pr_fence_load();
			memcpy(out, &in->in_entry, sizeof(*out));
			ck_pr_fence_load();
			if (ck_pr_load_32(&in->in_seq) == is) {
				*seq = s1;      /* validated against the entry's odd value */
				return;
			}
		}
		ck_pr_stall();
	}
}

/* Has entry i changed since the snapshot taken at `seq`? */
static bool mc_state_changed(const struct mc_state_view *v, uint64_t i, uint32_t seq)
{
	ck_pr_fence_load();
	return ck_pr_load_32(&v->entries[i].e_seq) != seq;
}

/* Does the snapshot's block lie inside the arena? */
static bool mc_state_block_ok(const struct mc_state_view *v, const struct mc_state_entry *e)
{
	uint64_t len = (uint64_t)e->e_nslen + e->e_keylen + e->e_vlen;

	return e->e_blob != 0 && e->e_blob < v->arena_size && len <= v->arena_size - e->e_blob;
}

static bool mc_state_expired(const struct mc_state_entry *e, uint64_t *now)
{
	if (e->e_expires == 0)
		return false;
	if (*now == 0)
		*now = mc_wall_ns();
	return *now >= e->e_expires;
}

int mc_state_get(const struct mc_seg *seg, const void *ns, size_t nslen,
    const void *key, size_t klen, void *buf, size_t cap, struct mc_state_value *out)
{
	struct mc_state_view v;
	uint64_t h, now = 0;
	uint32_t tag;
	int rc = mc_state_view(seg, &v);

	if (rc)
		return rc;
	if (nslen == 0 || klen == 0 || nslen > v.t->st_max_key || klen > v.t->st_max_key)
		return -EINVAL;
	h = mc_state_hash_inline(ns, nslen, key, klen);
	tag = (uint32_t)(h >> 32);
	for (uint64_t i = h & v.mask, n = 0; n <= v.mask; i = (i + 1) & v.mask, n++) {
		struct mc_state_entry e;
		const uint8_t *blk;
		uint32_t seq;

again:
		mc_state_snapshot(&v, i, &e, &seq);
		if (e.e_state == MC_STATE_EMPTY)
			return -ENOENT;
		if (e.e_state != MC_STATE_LIVE || e.e_hash != tag || e.e_nslen != nslen ||
		    e.e_keylen != klen)
			continue;
		if (!mc_state_block_ok(&v, &e)) {
			if (mc_state_changed(&v, i, seq))
				goto again;
			continue;       /* cannot happen with a sane writer */
		}
		blk = v.arena + e.e_blob;
		if (!mc_state_bytes_eq(blk, ns, nslen) || !mc_state_bytes_eq(blk + nslen, key, klen)) {
			if (mc_state_changed(&v, i, seq))
				goto again;
			continue;
		}
		if (buf != NULL && e.e_vlen <= cap)
			memcpy(buf, blk + nslen + klen, e.e_vlen);
		if (mc_state_changed(&v, i, seq))
			goto again;
		if (mc_state_expired(&e, &now))
			return -ENOENT;
		if (out != NULL) {
			out->version = e.e_version;
			out->mtime = e.e_mtime;
			out->expires = e.e_expires;
			out->len = e.e_vlen;
		}
		return e.e_vlen <= cap ? 0 : -ENOSPC;
	}
	return -ENOENT;
}

long mc_state_scan(const struct mc_seg *seg, const void *ns, size_t nslen,
    const void *prefix, size_t plen,
    int (*cb)(void *ctx, const struct mc_state_item *it), void *ctx)
{
	struct mc_state_view v;
	uint8_t *copy;
	long visited = 0;
	uint64_t now = 0;
	int rc = mc_state_view(seg, &v);

	if (rc)
		return rc;
	if (nslen == 0 || nslen > v.t->st_max_key || plen > v.t->st_max_key)
		return -EINVAL;
	copy = malloc((size_t)v.t->st_max_key + v.t->st_max_value);
	if (copy == NULL)
		return -ENOMEM;
	for (uint64_t i = 0; i <= v.mask; i++) {
		struct mc_state_entry e;
		struct mc_state_item it;
		const uint8_t *blk;
		uint32_t seq;

again:
		mc_state_snapshot(&v, i, &e, &seq);
		if (e.e_state != MC_STATE_LIVE || e.e_nslen != nslen || e.e_keylen < plen ||
		    e.e_keylen > v.t->st_max_key || e.e_vlen > v.t->st_max_value ||
		    !mc_state_block_ok(&v, &e))
			continue;
		blk = v.arena + e.e_blob;
		if (memcmp(blk, ns, nslen) != 0 || memcmp(blk + nslen, prefix, plen) != 0) {
			if (mc_state_changed(&v, i, seq))
				goto again;
			continue;
		}
		memcpy(copy, blk + nslen, (size_t)e.e_keylen + e.e_vlen);
		if (mc_state_changed(&v, i, seq))
			goto again;
		if (mc_state_expired(&e, &now))
			continue;
		it.key = copy;
		it.keylen = e.e_keylen;
		it.value = copy + e.e_keylen;
		it.vlen = e.e_vlen;
		it.meta.version = e.e_version;
		it.meta.mtime = e.e_mtime;
		it.meta.expires = e.e_expires;
		it.meta.len = e.e_vlen;
		visited++;
		rc = cb(ctx, &it);
		if (rc != 0)
			break;
	}
	free(copy);
	return visited;
}

int mc_state_stats(const struct mc_seg *seg, struct mc_state_stats *st)
{
	struct mc_state_view v;
	int rc = mc_state_view(seg, &v);

	if (rc)
		return rc;
	st->capacity = v.t->st_capacity;
	st->live = ck_pr_load_64(&v.t->st_live);
	st->tombstones = ck_pr_load_64(&v.t->st_tombstones);
	st->version = ck_pr_load_64(&v.t->st_version);
	st->writes = ck_pr_load_64(&v.t->st_writes);
	st->expired = ck_pr_load_64(&v.t->st_expired);
	st->arena_size = v.t->st_arena_size;
	st->arena_top = ck_pr_load_64(&v.t->st_arena_top);
	st->arena_live = ck_pr_load_64(&v.t->st_arena_live);
	st->arena_free = ck_pr_load_64(&v.t->st_arena_free);
	return 0;
}

/* --- consistency check ------------------------------------------------- */

struct mc_state_span {
	uint64_t off, size;
	uint64_t what;          /* entry index, or UINT64_MAX for a free block */
};

static int mc_state_span_cmp(const void *a, const void *b)
{
	const struct mc_state_span *x = a, *y = b;

	return (x->off > y->off) - (x->off < y->off);
}

#define MC_CHECK_FAIL(...) do { snprintf(report, len, __VA_ARGS__); rc = -EUCLEAN; goto out; } while (0)

int mc_state_check(const struct mc_seg *seg, char *report, size_t len)
{
	struct mc_state_view v;
	struct mc_state_span *spans = NULL;
	uint64_t nspans = 0, live = 0, tombs = 0, live_bytes = 0, free_bytes = 0, maxspans;
	int rc = mc_state_view(seg, &v);

	if (rc) {
		snprintf(report, len, "no state table (the state worker has not initialised it)");
		return rc;
	}
	maxspans = v.t->st_capacity + v.arena_size / MC_STATE_BLOCK_MIN + 1;
	spans = malloc(maxspans * sizeof(*spans));
	if (spans == NULL) {
		snprintf(report, len, "out of memory");
		return -ENOMEM;
	}
	if (v.t->st_arena_top > v.arena_size)
		MC_CHECK_FAIL("arena top %llu beyond the arena (%llu bytes)",
		    (unsigned long long)v.t->st_arena_top, (unsigned long long)v.arena_size);
	for (uint64_t i = 0; i <= v.mask; i++) {
		struct mc_state_entry e;
		uint32_t seq;
		uint64_t home;

		mc_state_snapshot(&v, i, &e, &seq);
		if (e.e_state == MC_STATE_EMPTY)
			continue;
		if (e.e_state == MC_STATE_TOMB) {
			tombs++;
			if (e.e_blob == 0)
				continue;       /* a deletion already fed */
		} else if (e.e_state == MC_STATE_LIVE) {
			live++;
		} else {
			MC_CHECK_FAIL("entry %llu has state %u", (unsigned long long)i, e.e_state);
		}
		if (!mc_state_block_ok(&v, &e) || e.e_blob + mc_state_class_size(e.e_class) >
		    v.t->st_arena_top || mc_state_class_size(e.e_class) <
		    (uint64_t)e.e_nslen + e.e_keylen + e.e_vlen)
			MC_CHECK_FAIL("entry %llu: block %llu (class %u, %u+%u+%u bytes) is outside "
			    "the arena or too small", (unsigned long long)i,
			    (unsigned long long)e.e_blob, e.e_class, e.e_nslen, e.e_keylen, e.e_vlen);
		spans[nspans++] = (struct mc_state_span){ e.e_blob, mc_state_class_size(e.e_class), i };
		live_bytes += mc_state_class_size(e.e_class);
		if (e.e_state != MC_STATE_LIVE)
			continue;
		home = mc_state_hash(v.arena + e.e_blob, e.e_nslen, v.arena + e.e_blob + e.e_nslen,
		    e.e_keylen);
		if ((uint32_t)(home >> 32) != e.e_hash)
			MC_CHECK_FAIL("entry %llu: stored hash does not match its key",
			    (unsigned long long)i);
		for (uint64_t j = home & v.mask; j != i; j = (j + 1) & v.mask)
			if (ck_pr_load_8(&v.entries[j].e_state) == MC_STATE_EMPTY)
				MC_CHECK_FAIL("entry %llu: unreachable, empty slot %llu in its probe chain",
				    (unsigned long long)i, (unsigned long long)j);
	}
	for (unsigned c = 0; c < MC_STATE_NCLASSES; c++) {
		uint64_t steps = 0;

		for (uint64_t b = v.t->st_free[c]; b != 0; steps++) {
			if (b >= v.t->st_arena_top || mc_state_class_size(c) > v.t->st_arena_top - b ||
			    b % MC_STATE_BLOCK_MIN)
				MC_CHECK_FAIL("free list of class %u: block %llu out of bounds", c,
				    (unsigned long long)b);
			if (nspans >= maxspans || steps > maxspans)
				MC_CHECK_FAIL("free list of class %u has a cycle", c);
			spans[nspans++] = (struct mc_state_span){ b, mc_state_class_size(c), UINT64_MAX };
			free_bytes += mc_state_class_size(c);
			memcpy(&b, v.arena + b, sizeof(b));
		}
	}
	qsort(spans, nspans, sizeof(*spans), mc_state_span_cmp);
	for (uint64_t k = 1; k < nspans; k++)
		if (spans[k - 1].off + spans[k - 1].size > spans[k].off)
			MC_CHECK_FAIL("arena blocks overlap at %llu (%s and %s)",
			    (unsigned long long)spans[k].off,
			    spans[k - 1].what == UINT64_MAX ? "a free block" : "an entry's block",
			    spans[k].what == UINT64_MAX ? "a free block" : "an entry's block");
	if (live != v.t->st_live || tombs != v.t->st_tombstones)
		MC_CHECK_FAIL("counters say %llu live / %llu tombstones, the table has %llu / %llu",
		    (unsigned long long)v.t->st_live, (unsigned long long)v.t->st_tombstones,
		    (unsigned long long)live, (unsigned long long)tombs);
	if (live_bytes != v.t->st_arena_live || free_bytes != v.t->st_arena_free)
		MC_CHECK_FAIL("arena counters say %llu live / %llu free bytes, the blocks add up to "
		    "%llu / %llu", (unsigned long long)v.t->st_arena_live,
		    (unsigned long long)v.t->st_arena_free, (unsigned long long)live_bytes,
		    (unsigned long long)free_bytes);
	snprintf(report, len, "ok: %llu live, %llu tombstones, %llu bytes in use, %llu free, "
	    "%llu never used", (unsigned long long)live, (unsigned long long)tombs,
	    (unsigned long long)live_bytes, (unsigned long long)free_bytes,
	    (unsigned long long)(v.arena_size - v.t->st_arena_top));
out:
	free(spans);
	return rc;
}
