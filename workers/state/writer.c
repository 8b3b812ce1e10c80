/*
 * writer.c - the state table's single writer (contract in
 * mc_state_writer.h, table protocol in shm/mc_state.h).
 */
#include "mc_state_writer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_layout.h"
#include "mc_log.h"
#include "mc_util.h"

_Static_assert(sizeof(struct mc_state_ctl) <= MC_STATE_CTL_FIXED, "state control block outgrew its reserve");

#define ST_OK           MCPCORE__STATE_RESULT__STATUS__OK
#define ST_NOT_FOUND    MCPCORE__STATE_RESULT__STATUS__NOT_FOUND
#define ST_MISMATCH     MCPCORE__STATE_RESULT__STATUS__VERSION_MISMATCH
#define ST_TOO_LARGE    MCPCORE__STATE_RESULT__STATUS__TOO_LARGE
#define ST_FULL         MCPCORE__STATE_RESULT__STATUS__TABLE_FULL
#define ST_BAD          MCPCORE__STATE_RESULT__STATUS__BAD_REQUEST
#define ST_NAN          MCPCORE__STATE_RESULT__STATUS__NOT_A_NUMBER
#define ST_OVERFLOW     MCPCORE__STATE_RESULT__STATUS__OVERFLOW

#define MC_NO_FRAME     UINT32_MAX

/* --- intent record ------------------------------------------------------ */

static void mc_sw_intent_open(struct mc_state_intent *in)
{
	ck_pr_store_32(&in->in_seq, in->in_seq + 1);
	ck_pr_fence_store();
}

static void mc_sw_intent_close(struct mc_state_intent *in)
{
	ck_pr_fence_store();
	ck_pr_store_32(&in->in_seq, in->in_seq + 1);
}

static void mc_sw_phase(struct mc_state_writer *w, uint32_t phase)
{
	struct mc_state_intent *in = &w->t->st_intent;

	mc_sw_intent_open(in);
	in->in_phase = phase;
	mc_sw_intent_close(in);
}

static inline uint64_t *mc_sw_next_of(struct mc_state_writer *w, uint64_t blob)
{
	return (uint64_t *)(w->arena + blob);
}

/* --- value arena: per-class free lists, then the top ---------------------- */

static bool mc_sw_split(struct mc_state_writer *w, unsigned c);

/*
 * Take a block for `bytes`; 0 when the arena is full.  The intent says
 * which block and what the list looked like before the block is taken, so
 * a crash anywhere here or while filling it is undone by mc_sw_unalloc().
 */
static uint64_t mc_sw_alloc(struct mc_state_writer *w, uint64_t bytes, unsigned *cls)
{
	struct mc_state_table *t = w->t;
	struct mc_state_intent *in = &t->st_intent;
	unsigned c = mc_state_class(bytes);
	uint64_t size = mc_state_class_size(c), blob, next = 0;
	bool bump;

	if (c >= MC_STATE_NCLASSES)
		return 0;
	if (t->st_free[c] == 0 && t->st_arena_top + size > t->st_arena_size && !mc_sw_split(w, c))
		return 0;
	bump = t->st_free[c] == 0;
	if (bump) {
		blob = t->st_arena_top;
	} else {
		blob = t->st_free[c];
		next = *mc_sw_next_of(w, blob);
	}
	mc_sw_intent_open(in);
	in->in_blob = blob;
	in->in_class = c;
	in->in_bump = bump;
	in->in_next = next;
	in->in_free_before = t->st_arena_free;
	in->in_top_before = t->st_arena_top;
	ck_pr_fence_store();
	in->in_phase = MC_STATE_ALLOCATING;     /* last: see mc_sw_recover */
	mc_sw_intent_close(in);
	if (bump) {
		t->st_arena_top += size;
	} else {
		t->st_free[c] = next;
		t->st_arena_free -= size;
	}
	mc_sw_phase(w, MC_STATE_FILLING);
	*cls = c;
	return blob;
}

/* The largest class whose blocks fit in `bytes` (a multiple of 16, >= 16). */
static unsigned mc_sw_class_within(uint64_t bytes)
{
	unsigned c = mc_state_class(bytes);

	return mc_state_class_size(c) > bytes ? c - 1 : c;
}

static void mc_sw_free(struct mc_state_writer *w, uint64_t blob, unsigned cls);

/*
 * Push the pieces of the SPLITTING intent's block, from in_split_done on:
 * first one of the target class, then the largest classes that fit the
 * rest.  Each push is recorded, and mc_sw_free is idempotent right after
 * itself, so a crash between two stores is repaired by running this again.
 */
static void mc_sw_split_pieces(struct mc_state_writer *w)
{
	struct mc_state_intent *in = &w->t->st_intent;
	uint64_t total = mc_state_class_size(in->in_class), off = 0;

	for (uint64_t i = 0; off < total; i++) {
		unsigned cls = i == 0 ? in->in_split_target : mc_sw_class_within(total - off);

		if (i >= in->in_split_done) {
			mc_sw_free(w, in->in_blob + off, cls);
			ck_pr_fence_store();
			ck_pr_store_64(&in->in_split_done, i + 1);
		}
		off += mc_state_class_size(cls);
	}
}

/*
 * Class c has no free block and the arena top is used up: cut the smallest
 * larger free block into pieces so that space freed by big values serves
 * small ones.  (Pieces are not merged back: see docs/DESIGN.md.)
 */
static bool mc_sw_split(struct mc_state_writer *w, unsigned c)
{
	struct mc_state_table *t = w->t;
	struct mc_state_intent *in = &t->st_intent;
	unsigned big = c + 1;

	while (big < MC_STATE_NCLASSES && t->st_free[big] == 0)
		big++;
	if (big >= MC_STATE_NCLASSES)
		return false;
	mc_sw_intent_open(in);
	in->in_blob = t->st_free[big];
	in->in_class = big;
	in->in_next = *mc_sw_next_of(w, in->in_blob);
	in->in_split_target = c;
	in->in_split_done = 0;
	ck_pr_fence_store();
	in->in_phase = MC_STATE_SPLITTING;      /* last: see mc_sw_recover */
	mc_sw_intent_close(in);
	t->st_free[big] = in->in_next;          /* off its list; bytes stay free */
	mc_sw_split_pieces(w);
	mc_sw_phase(w, MC_STATE_IDLE);
	return true;
}

/* Finish an interrupted split (idempotent). */
static void mc_sw_split_recover(struct mc_state_writer *w)
{
	struct mc_state_intent *in = &w->t->st_intent;

	if (w->t->st_free[in->in_class] == in->in_blob)
		w->t->st_free[in->in_class] = in->in_next;  /* the pop had not happened */
	mc_sw_split_pieces(w);
	mc_sw_phase(w, MC_STATE_IDLE);
}

/* Give back the block of an ALLOCATING/FILLING intent (idempotent). */
static void mc_sw_unalloc(struct mc_state_writer *w)
{
	struct mc_state_table *t = w->t;
	struct mc_state_intent *in = &t->st_intent;

	if (in->in_bump) {
		t->st_arena_top = in->in_top_before;
	} else {
		*mc_sw_next_of(w, in->in_blob) = in->in_next;   /* filling may have overwritten it */
		t->st_free[in->in_class] = in->in_blob;
		t->st_arena_free = in->in_free_before;
	}
	mc_sw_phase(w, MC_STATE_IDLE);
}

/* Push a block on its free list.  Idempotent right after itself: a crash
 * between the two stores, or after both, is repaired by doing it again. */
static void mc_sw_free(struct mc_state_writer *w, uint64_t blob, unsigned cls)
{
	if (w->t->st_free[cls] == blob)
		return;
	*mc_sw_next_of(w, blob) = w->t->st_free[cls];
	ck_pr_store_64(&w->t->st_free[cls], blob);
}

/* --- commits -------------------------------------------------------------- */

/* Write the committing intent into the table and the control block.
 * Idempotent: recovery calls it again for a COMMITTING intent. */
static void mc_sw_finish(struct mc_state_writer *w)
{
	struct mc_state_table *t = w->t;
	struct mc_state_intent *in = &t->st_intent;
	struct mc_state_ctl *ctl = w->ctl;

	if (in->in_has_entry) {
		struct mc_state_entry *e = &w->entries[in->in_idx];
		uint32_t seq = e->e_seq;

		if ((seq & 1) == 0)
			ck_pr_store_32(&e->e_seq, ++seq);
		ck_pr_fence_store();
		memcpy((uint8_t *)e + sizeof(e->e_seq), (uint8_t *)&in->in_entry + sizeof(e->e_seq),
		    sizeof(*e) - sizeof(e->e_seq));
		ck_pr_fence_store();
		ck_pr_store_32(&e->e_seq, seq + 1);
	}
	if (in->in_old_blob != 0)
		mc_sw_free(w, in->in_old_blob, in->in_old_class);
	ck_pr_store_64(&t->st_live, in->in_live);
	ck_pr_store_64(&t->st_tombstones, in->in_tombs);
	ck_pr_store_64(&t->st_version, in->in_version);
	ck_pr_store_64(&t->st_arena_live, in->in_arena_live);
	ck_pr_store_64(&t->st_arena_free, in->in_arena_free);
	ck_pr_store_64(&t->st_writes, in->in_writes);
	ck_pr_store_64(&t->st_expired, in->in_expired);
	if (in->in_frame_done && ctl->sc_cur_src == in->in_frame_src &&
	    ctl->sc_cur_seq == in->in_frame_seq) {
		ctl->sc_cur_res[in->in_frame_done - 1].status = in->in_res_status;
		ctl->sc_cur_res[in->in_frame_done - 1].version = in->in_res_version;
		ck_pr_fence_store();
		ck_pr_store_32(&ctl->sc_cur_done, in->in_frame_done);
	}
	mc_sw_phase(w, MC_STATE_IDLE);
}

/* What a commit changes besides the entry. */
struct mc_sw_change {
	uint64_t old_blob;      /* to free (0 = none) */
	unsigned old_class;
	int dlive, dtombs;
	int64_t dbytes;         /* arena bytes entries point at */
	bool expired;
	uint32_t k;             /* op of the current frame, or MC_NO_FRAME */
	const struct mc_state_result *res;
};

static void mc_sw_commit(struct mc_state_writer *w, uint64_t idx,
    const struct mc_state_entry *ne, const struct mc_sw_change *ch)
{
	struct mc_state_table *t = w->t;
	struct mc_state_intent *in = &t->st_intent;

	mc_sw_intent_open(in);
	in->in_idx = idx;
	in->in_has_entry = ne != NULL;
	if (ne != NULL)
		in->in_entry = *ne;
	in->in_old_blob = ch->old_blob;
	in->in_old_class = ch->old_class;
	in->in_live = t->st_live + (uint64_t)(int64_t)ch->dlive;
	in->in_tombs = t->st_tombstones + (uint64_t)(int64_t)ch->dtombs;
	in->in_version = ne != NULL && ne->e_version > t->st_version ? ne->e_version : t->st_version;
	in->in_arena_live = t->st_arena_live + (uint64_t)ch->dbytes;
	in->in_arena_free = t->st_arena_free +
	    (ch->old_blob ? mc_state_class_size(ch->old_class) : 0);
	in->in_writes = t->st_writes + 1;
	in->in_expired = t->st_expired + (ch->expired ? 1 : 0);
	in->in_frame_done = ch->k == MC_NO_FRAME ? 0 : ch->k + 1;
	in->in_frame_src = w->ctl->sc_cur_src;
	in->in_frame_seq = w->ctl->sc_cur_seq;
	in->in_res_status = ch->res ? ch->res->status : 0;
	in->in_res_version = ch->res ? ch->res->version : 0;
	ck_pr_fence_store();
	in->in_phase = MC_STATE_COMMITTING;     /* last: see mc_sw_recover */
	mc_sw_intent_close(in);
	mc_sw_finish(w);
}

/* Record an op that changed nothing (NOT_FOUND, mismatch, ...). */
static void mc_sw_record(struct mc_state_writer *w, uint32_t k, const struct mc_state_result *res)
{
	if (k == MC_NO_FRAME)
		return;
	w->ctl->sc_cur_res[k].status = res->status;
	w->ctl->sc_cur_res[k].version = res->version;
	ck_pr_fence_store();
	ck_pr_store_32(&w->ctl->sc_cur_done, k + 1);
}

/* Queue entry idx for the change feed (once while it stays dirty). */
static void mc_sw_feed_mark(struct mc_state_writer *w, uint64_t idx)
{
	struct mc_state_ctl *ctl = w->ctl;

	if (w->entries[idx].e_dirty)
		return;
	ctl->sc_feed[ctl->sc_feed_tail % ctl->sc_feed_cap] = (uint32_t)idx;
	ck_pr_fence_store();
	ck_pr_store_64(&ctl->sc_feed_tail, ctl->sc_feed_tail + 1);
}

/* --- lookup --------------------------------------------------------------- */

static bool mc_sw_live(const struct mc_state_entry *e, uint64_t now)
{
	return e->e_state == MC_STATE_LIVE && !(e->e_expires && now >= e->e_expires);
}

/* Does entry e (LIVE, or a tombstone still holding its key) hold (ns, key)? */
static bool mc_sw_holds(const struct mc_state_writer *w, const struct mc_state_entry *e,
    const ProtobufCBinaryData *ns, const ProtobufCBinaryData *key, uint32_t tag)
{
	return e->e_blob != 0 && e->e_hash == tag && e->e_nslen == ns->len &&
	    e->e_keylen == key->len && mc_state_bytes_eq(w->arena + e->e_blob, ns->data, ns->len) &&
	    mc_state_bytes_eq(w->arena + e->e_blob + ns->len, key->data, key->len);
}

/*
 * The slot holding (ns, key) in any LIVE state (expired too), or -1 with
 * *slot set to where it would go (-1 if nowhere).  A tombstone is reusable
 * only once its deletion has been fed (no key bytes, not dirty).  *tomb
 * (if not NULL) gets a tombstone that still holds the key, or -1: the key
 * was deleted and that deletion is newer than anything a RESTORE brings.
 */
static int64_t mc_sw_find(struct mc_state_writer *w, const ProtobufCBinaryData *ns,
    const ProtobufCBinaryData *key, uint64_t h, int64_t *slot, int64_t *tomb)
{
	uint32_t tag = (uint32_t)(h >> 32);

	*slot = -1;
	if (tomb != NULL)
		*tomb = -1;
	for (uint64_t i = h & w->mask, n = 0; n <= w->mask; i = (i + 1) & w->mask, n++) {
		const struct mc_state_entry *e = &w->entries[i];

		if (e->e_state == MC_STATE_EMPTY) {
			if (*slot < 0)
				*slot = (int64_t)i;
			return -1;
		}
		if (e->e_state == MC_STATE_TOMB) {
			if (*slot < 0 && e->e_blob == 0 && !e->e_dirty)
				*slot = (int64_t)i;
			else if (tomb != NULL && mc_sw_holds(w, e, ns, key, tag))
				*tomb = (int64_t)i;
			continue;
		}
		if (mc_sw_holds(w, e, ns, key, tag))
			return (int64_t)i;
	}
	return -1;
}

void mc_state_prefetch(const struct mc_state_writer *w, Mcpcore__StateOp *const *ops, size_t n)
{
	uint64_t home[MC_STATE_MAX_OPS];

	if (n > MC_STATE_MAX_OPS)
		n = MC_STATE_MAX_OPS;
	/* first the home slots of every key, then (they are arriving by now)
	 * the key bytes of the entries found there */
	for (size_t k = 0; k < n; k++) {
		home[k] = mc_state_hash(ops[k]->ns.data, ops[k]->ns.len, ops[k]->key.data,
		    ops[k]->key.len) & w->mask;
		__builtin_prefetch(&w->entries[home[k]], 1);
	}
	for (size_t k = 0; k < n; k++) {
		uint64_t blob = ck_pr_load_64(&w->entries[home[k]].e_blob);

		if (blob != 0 && blob < w->t->st_arena_size)
			__builtin_prefetch(w->arena + blob);
	}
}

/*
 * Would one more entry overload the index?  Live entries may fill 7/8 of
 * it; tombstones that chains still need may take it to 15/16, so an empty
 * slot always ends a probe and deleting keys always makes room for new ones.
 */
static bool mc_sw_over_load(const struct mc_state_writer *w)
{
	return (w->t->st_live + 1) * 8 > w->t->st_capacity * 7 ||
	    (w->t->st_live + w->t->st_tombstones + 1) * 16 > w->t->st_capacity * 15;
}

/*
 * Is the key-less tombstone at t needed by a probe chain: does an entry
 * after it in its cluster (up to the next empty slot) have its home at or
 * before t?  Lookups for that entry walk through t.
 */
static bool mc_sw_tomb_needed(const struct mc_state_writer *w, uint64_t t)
{
	for (uint64_t p = (t + 1) & w->mask; p != t; p = (p + 1) & w->mask) {
		const struct mc_state_entry *e = &w->entries[p];
		uint64_t home;

		if (e->e_state == MC_STATE_EMPTY)
			return false;
		if (e->e_blob == 0)
			continue;       /* a key-less tombstone: nobody looks for it */
		home = mc_state_hash(w->arena + e->e_blob, e->e_nslen,
		    w->arena + e->e_blob + e->e_nslen, e->e_keylen) & w->mask;
		if (((t - home) & w->mask) < ((p - home) & w->mask))
			return true;
	}
	return true;            /* a full table: keep it */
}

/*
 * Turn the key-less, fed tombstones of [from, from + count) that no chain
 * needs back into empty slots.  Nothing moves, so concurrent readers are
 * unaffected: a slot only becomes empty when no lookup passes through it.
 * Walks backwards, so a run of tombstones ending at an empty slot clears
 * in one pass.
 */
static void mc_sw_compact(struct mc_state_writer *w, uint64_t from, uint64_t count)
{
	for (uint64_t n = count; n-- > 0 && w->t->st_tombstones > 0;) {
		uint64_t t = (from + n) & w->mask;
		const struct mc_state_entry *e = &w->entries[t];

		if (e->e_state == MC_STATE_TOMB && e->e_blob == 0 && !e->e_dirty &&
		    !mc_sw_tomb_needed(w, t)) {
			struct mc_state_entry ne = { 0 };
			struct mc_sw_change ch = { .k = MC_NO_FRAME, .dtombs = -1 };

			mc_sw_commit(w, t, &ne, &ch);
		}
	}
}

/*
 * Versions: strictly increasing, and at least the wall clock in
 * microseconds, so they keep increasing across a restart of the whole
 * runtime too (the table starts empty and is refilled by RESTORE).
 * Microseconds, not nanoseconds: versions stay below 2^53 (until the year
 * 2255), so JSON clients (JavaScript numbers) hold them exactly.
 */
static uint64_t mc_sw_next_version(struct mc_state_writer *w, uint64_t now)
{
	uint64_t v = w->t->st_version + 1, us = now / 1000;

	return v > us ? v : us;
}

/* --- operations ----------------------------------------------------------- */

static void mc_sw_fail(struct mc_state_result *res, uint32_t status, const char *why)
{
	res->status = status;
	res->error = why;
}

/*
 * Write value into (ns, key): the common tail of PUT, CAS, INCR, RESTORE.
 * `at` is the existing slot or -1 (then `slot` is where to insert).
 */
static void mc_sw_store(struct mc_state_writer *w, const Mcpcore__StateOp *op,
    const void *value, size_t vlen, int64_t at, int64_t slot, uint64_t h,
    uint64_t version, uint64_t mtime, uint64_t expires, bool feed, uint32_t k,
    struct mc_state_result *res)
{
	struct mc_state_entry ne = { 0 };
	struct mc_sw_change ch = { .k = k, .res = res };
	uint64_t bytes = op->ns.len + op->key.len + vlen, blob, idx;
	unsigned cls;

	if (at < 0 && slot >= 0 && w->entries[slot].e_state == MC_STATE_EMPTY &&
	    mc_sw_over_load(w) && w->t->st_tombstones > 0) {
		/* tombstones take room too: clear those no probe chain needs (a
		 * walk of the whole index, only when it looks full), look again */
		mc_sw_compact(w, 0, w->t->st_capacity);
		(void)mc_sw_find(w, &op->ns, &op->key, h, &slot, NULL);
	}
	if (at < 0) {
		if (slot < 0 || (w->entries[slot].e_state == MC_STATE_EMPTY && mc_sw_over_load(w))) {
			mc_sw_fail(res, ST_FULL, "state table is full (raise core.state_cache_size)");
			mc_sw_record(w, k, res);
			return;
		}
	}
	blob = mc_sw_alloc(w, bytes, &cls);
	if (blob == 0) {
		mc_sw_fail(res, ST_FULL, "state value arena is full (raise core.state_cache_size)");
		mc_sw_record(w, k, res);
		return;
	}
	memcpy(w->arena + blob, op->ns.data, op->ns.len);
	memcpy(w->arena + blob + op->ns.len, op->key.data, op->key.len);
	if (vlen)
		memcpy(w->arena + blob + op->ns.len + op->key.len, value, vlen);
	idx = (uint64_t)(at >= 0 ? at : slot);
	ne.e_state = MC_STATE_LIVE;
	ne.e_class = (uint8_t)cls;
	ne.e_nslen = (uint16_t)op->ns.len;
	ne.e_keylen = (uint16_t)op->key.len;
	ne.e_vlen = (uint32_t)vlen;
	ne.e_hash = (uint32_t)(h >> 32);
	ne.e_blob = blob;
	ne.e_version = version;
	ne.e_mtime = mtime;
	ne.e_expires = expires;
	ne.e_dirty = w->entries[idx].e_dirty;
	ch.dbytes = (int64_t)mc_state_class_size(cls);
	if (at >= 0) {
		const struct mc_state_entry *old = &w->entries[at];

		ch.old_blob = old->e_blob;
		ch.old_class = old->e_class;
		ch.dbytes -= (int64_t)mc_state_class_size(old->e_class);
	} else {
		ch.dlive = 1;
		if (w->entries[idx].e_state == MC_STATE_TOMB)
			ch.dtombs = -1;
	}
	if (feed) {
		mc_sw_feed_mark(w, idx);
		ne.e_dirty = 1;
	}
	res->status = ST_OK;
	res->version = version;
	mc_sw_commit(w, idx, &ne, &ch);
}

static uint64_t mc_sw_expiry(uint64_t now, uint64_t ttl_ms)
{
	return ttl_ms ? now + ttl_ms * 1000000ULL : 0;
}

/* A decimal int64, strictly: optional '-', 1..19 digits, nothing else. */
static bool mc_sw_parse_i64(const uint8_t *s, size_t len, int64_t *out)
{
	char buf[24];
	char *end;
	long long v;

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (!(buf[0] == '-' || (buf[0] >= '0' && buf[0] <= '9')))
		return false;
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (errno != 0 || *end != '\0' || end == buf || (buf[0] == '-' && len == 1))
		return false;
	*out = v;
	return true;
}

static void mc_sw_incr(struct mc_state_writer *w, const Mcpcore__StateOp *op, uint64_t now,
    int64_t at, int64_t slot, uint64_t h, uint32_t k, struct mc_state_result *res)
{
	int64_t cur = 0, next;
	int n;

	if (at >= 0 && mc_sw_live(&w->entries[at], now)) {
		const struct mc_state_entry *e = &w->entries[at];

		if (!mc_sw_parse_i64(w->arena + e->e_blob + e->e_nslen + e->e_keylen, e->e_vlen,
		    &cur)) {
			mc_sw_fail(res, ST_NAN, "value is not a decimal int64");
			res->version = e->e_version;
			mc_sw_record(w, k, res);
			return;
		}
	}
	if (__builtin_add_overflow(cur, op->delta, &next)) {
		mc_sw_fail(res, ST_OVERFLOW, "increment overflows int64");
		mc_sw_record(w, k, res);
		return;
	}
	n = snprintf(res->number, sizeof(res->number), "%" PRId64, next);
	mc_sw_store(w, op, res->number, (size_t)n, at, slot, h, mc_sw_next_version(w, now), now,
	    mc_sw_expiry(now, op->ttl_ms), true, k, res);
}

static void mc_sw_delete(struct mc_state_writer *w, int64_t at, uint64_t now, uint32_t k,
    struct mc_state_result *res)
{
	struct mc_state_entry ne;
	struct mc_sw_change ch = { .k = k, .res = res, .dlive = -1, .dtombs = 1 };

	if (at < 0 || !mc_sw_live(&w->entries[at], now)) {
		mc_sw_fail(res, ST_NOT_FOUND, "no such key");
		mc_sw_record(w, k, res);
		return;
	}
	/* the tombstone keeps the key bytes until its DELETE has been fed */
	ne = w->entries[at];
	ne.e_state = MC_STATE_TOMB;
	ne.e_version = mc_sw_next_version(w, now);
	ne.e_mtime = now;
	ne.e_flags = 0;
	mc_sw_feed_mark(w, (uint64_t)at);
	ne.e_dirty = 1;
	res->status = ST_OK;
	res->version = ne.e_version;
	mc_sw_commit(w, (uint64_t)at, &ne, &ch);
}

void mc_state_apply(struct mc_state_writer *w, const Mcpcore__StateOp *op, uint64_t now,
    uint32_t k, struct mc_state_result *res)
{
	int64_t at, slot, tomb;
	uint64_t h;

	memset(res, 0, sizeof(*res));
	if (op->ns.len == 0 || op->key.len == 0) {
		mc_sw_fail(res, ST_BAD, "namespace and key must not be empty");
		goto record;
	}
	if (op->ns.len > w->max_key || op->key.len > w->max_key) {
		mc_sw_fail(res, ST_TOO_LARGE, "namespace or key longer than [state] max_key_size");
		goto record;
	}
	if (op->value.len > w->max_value) {
		mc_sw_fail(res, ST_TOO_LARGE, "value longer than [state] max_value_size");
		goto record;
	}
	h = mc_state_hash(op->ns.data, op->ns.len, op->key.data, op->key.len);
	at = mc_sw_find(w, &op->ns, &op->key, h, &slot, &tomb);
	switch (op->kind) {
	case MCPCORE__STATE_OP__KIND__PUT:
		mc_sw_store(w, op, op->value.data, op->value.len, at, slot, h,
		    mc_sw_next_version(w, now), now, mc_sw_expiry(now, op->ttl_ms), true, k, res);
		return;
	case MCPCORE__STATE_OP__KIND__DELETE:
		mc_sw_delete(w, at, now, k, res);
		return;
	case MCPCORE__STATE_OP__KIND__CAS: {
		uint64_t cur = at >= 0 && mc_sw_live(&w->entries[at], now) ?
		    w->entries[at].e_version : 0;

		if (cur != op->expected_version) {
			mc_sw_fail(res, ST_MISMATCH, cur ? "version differs" : "no such key");
			res->version = cur;
			goto record;
		}
		mc_sw_store(w, op, op->value.data, op->value.len, at, slot, h,
		    mc_sw_next_version(w, now), now, mc_sw_expiry(now, op->ttl_ms), true, k, res);
		return;
	}
	case MCPCORE__STATE_OP__KIND__INCR:
		mc_sw_incr(w, op, now, at, slot, h, k, res);
		return;
	case MCPCORE__STATE_OP__KIND__RESTORE:
		/* newer data (written since the restart) wins; expired data stays out */
		if ((at >= 0 && w->entries[at].e_version >= op->version) ||
		    (at < 0 && tomb >= 0 && w->entries[tomb].e_version >= op->version) ||
		    (op->expires_at && op->expires_at <= now) || op->version == 0) {
			res->status = ST_OK;
			res->version = at >= 0 ? w->entries[at].e_version :
			    tomb >= 0 ? w->entries[tomb].e_version : op->version;
			goto record;
		}
		mc_sw_store(w, op, op->value.data, op->value.len, at, slot, h, op->version,
		    op->mtime, op->expires_at, false, k, res);
		return;
	default:
		mc_sw_fail(res, ST_BAD, "unknown operation");
		goto record;
	}
record:
	mc_sw_record(w, k, res);
}

int mc_state_writer_value(struct mc_state_writer *w, const Mcpcore__StateOp *op,
    uint64_t *now, const void **val, uint32_t *len, uint64_t *version)
{
	const struct mc_state_entry *e;
	int64_t slot, at;

	if (op->ns.len == 0 || op->key.len == 0 || op->ns.len > w->max_key ||
	    op->key.len > w->max_key)
		return -EINVAL;
	at = mc_sw_find(w, &op->ns, &op->key,
	    mc_state_hash(op->ns.data, op->ns.len, op->key.data, op->key.len), &slot, NULL);
	if (at < 0 || w->entries[at].e_state != MC_STATE_LIVE)
		return -ENOENT;
	e = &w->entries[at];
	/* only a value with a TTL needs the time (most have none) */
	if (e->e_expires != 0) {
		if (*now == 0)
			*now = mc_wall_ns();
		if (!mc_sw_live(e, *now))
			return -ENOENT;
	}
	*val = w->arena + e->e_blob + e->e_nslen + e->e_keylen;
	*len = e->e_vlen;
	*version = e->e_version;
	return 0;
}

int mc_state_writer_number(struct mc_state_writer *w, const Mcpcore__StateOp *op,
    char *buf, size_t len)
{
	int64_t slot, at;
	const struct mc_state_entry *e;

	if (op->ns.len == 0 || op->key.len == 0 || op->ns.len > w->max_key ||
	    op->key.len > w->max_key)
		return -ENOENT;
	at = mc_sw_find(w, &op->ns, &op->key,
	    mc_state_hash(op->ns.data, op->ns.len, op->key.data, op->key.len), &slot, NULL);
	if (at < 0)
		return -ENOENT;
	e = &w->entries[at];
	if (e->e_vlen >= len)
		return -ENOENT;
	memcpy(buf, w->arena + e->e_blob + e->e_nslen + e->e_keylen, e->e_vlen);
	buf[e->e_vlen] = '\0';
	return 0;
}

/* --- request frames -------------------------------------------------------- */

uint32_t mc_state_frame_begin(struct mc_state_writer *w, unsigned src, uint64_t seq)
{
	struct mc_state_ctl *ctl = w->ctl;

	if (ctl->sc_cur_src == src && ctl->sc_cur_seq == seq)
		return ck_pr_load_32(&ctl->sc_cur_done);     /* replayed after a crash */
	ck_pr_store_32(&ctl->sc_cur_done, 0);
	ck_pr_fence_store();
	ck_pr_store_64(&ctl->sc_cur_seq, seq);
	ck_pr_store_32(&ctl->sc_cur_src, src);
	return 0;
}

void mc_state_frame_end(struct mc_state_writer *w, unsigned src, uint64_t seq)
{
	ck_pr_store_64(&w->ctl->sc_applied[src], seq);
}

bool mc_state_frame_applied(const struct mc_state_writer *w, unsigned src, uint64_t seq)
{
	return seq <= w->ctl->sc_applied[src];
}

struct mc_state_op_result mc_state_frame_result(const struct mc_state_writer *w, uint32_t k)
{
	return w->ctl->sc_cur_res[k];
}

/* --- change feed ------------------------------------------------------------ */

uint64_t mc_state_feed_pending(const struct mc_state_writer *w)
{
	return w->ctl->sc_feed_tail - w->ctl->sc_feed_head;
}

uint32_t mc_state_feed_peek(const struct mc_state_writer *w, uint64_t i)
{
	return w->ctl->sc_feed[(w->ctl->sc_feed_head + i) % w->ctl->sc_feed_cap];
}

/* Make a fed, key-less tombstone empty again when that cannot cut a probe
 * chain: it is followed by an empty slot.  Then look backwards. */
static void mc_sw_trim(struct mc_state_writer *w, uint64_t idx)
{
	while (w->entries[idx].e_state == MC_STATE_TOMB && w->entries[idx].e_blob == 0 &&
	    !w->entries[idx].e_dirty &&
	    w->entries[(idx + 1) & w->mask].e_state == MC_STATE_EMPTY) {
		struct mc_state_entry ne = { 0 };
		struct mc_sw_change ch = { .k = MC_NO_FRAME, .dtombs = -1 };

		mc_sw_commit(w, idx, &ne, &ch);
		idx = (idx - 1) & w->mask;
	}
}

void mc_state_feed_sent(struct mc_state_writer *w, uint64_t n)
{
	struct mc_state_ctl *ctl = w->ctl;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t idx = mc_state_feed_peek(w, i) & w->mask;
		struct mc_state_entry *e = &w->entries[idx];

		if (e->e_state == MC_STATE_TOMB && e->e_blob != 0) {
			/* the DELETE is out: the key bytes can go */
			struct mc_state_entry ne = *e;
			struct mc_sw_change ch = { .k = MC_NO_FRAME, .old_blob = e->e_blob,
			    .old_class = e->e_class,
			    .dbytes = -(int64_t)mc_state_class_size(e->e_class) };

			ne.e_blob = 0;
			ne.e_dirty = 0;
			ne.e_nslen = ne.e_keylen = 0;
			ne.e_vlen = 0;
			mc_sw_commit(w, idx, &ne, &ch);
			mc_sw_trim(w, idx);
		} else if (e->e_dirty) {
			ck_pr_store_8(&e->e_dirty, 0);  /* readers ignore it: no lock needed */
		}
	}
	ck_pr_fence_store();
	ck_pr_store_64(&ctl->sc_feed_head, ctl->sc_feed_head + n);
}

void mc_state_sweep(struct mc_state_writer *w, uint64_t now, uint64_t budget)
{
	struct mc_state_ctl *ctl = w->ctl;

	for (uint64_t n = 0; n < budget; n++) {
		uint64_t idx = ctl->sc_sweep_cursor & w->mask;
		struct mc_state_entry *e = &w->entries[idx];

		ctl->sc_sweep_cursor = idx + 1;
		if (e->e_state == MC_STATE_LIVE && e->e_expires && now >= e->e_expires) {
			struct mc_state_entry ne = *e;
			struct mc_sw_change ch = { .k = MC_NO_FRAME, .dlive = -1, .dtombs = 1,
			    .expired = true };

			ne.e_state = MC_STATE_TOMB;
			ne.e_flags = MC_STATE_F_EXPIRED;
			ne.e_version = mc_sw_next_version(w, now);
			ne.e_mtime = now;
			mc_sw_feed_mark(w, idx);
			ne.e_dirty = 1;
			mc_sw_commit(w, idx, &ne, &ch);
		}
	}
	/* and clear the tombstones of the window no chain needs any more */
	mc_sw_compact(w, (ctl->sc_sweep_cursor - budget) & w->mask, budget);
}

/* --- open: initialise or recover ------------------------------------------ */

static int mc_sw_geometry(struct mc_seg *seg, struct mc_state_geometry *geo,
    uint64_t *ctl_off, uint64_t *feed_cap, char *err, size_t errlen)
{
	const struct mc_config *cfg = &seg->hdr->sh_config;
	const struct mc_region *cache = &seg->hdr->sh_regions[MC_REGION_SHARED_STATE_CACHE];
	const struct mc_region *core = &seg->hdr->sh_regions[MC_REGION_CORE_STATE];
	int rc = mc_state_geometry(cfg, cache->rg_size, geo, err, errlen);  /* checks core.state too */

	if (rc)
		return -EINVAL;
	*ctl_off = core->rg_offset;
	*feed_cap = 2 * geo->capacity;  /* each entry once while dirty, plus crash repeats */
	(void)core;
	return 0;
}

/*
 * Repair what a crash interrupted (see CRASH SAFETY).  Every intent update
 * stores in_phase last, so whatever the lock's parity, in_phase names a
 * record whose fields are complete: the new one if the phase store
 * happened, else the previous one (whose fields the update does not touch).
 */
static void mc_sw_recover(struct mc_state_writer *w)
{
	struct mc_state_intent *in = &w->t->st_intent;
	static const char *const names[] = { "idle", "allocating", "filling", "committing",
	    "splitting" };
	uint32_t phase = in->in_phase;

	if ((in->in_seq & 1) != 0)
		mc_sw_intent_close(in);
	switch (phase) {
	case MC_STATE_ALLOCATING:
	case MC_STATE_FILLING:
		mc_sw_unalloc(w);
		break;
	case MC_STATE_COMMITTING:
		mc_sw_finish(w);
		break;
	case MC_STATE_SPLITTING:
		mc_sw_split_recover(w);
		break;
	default:
		return;
	}
	mc_log_warn("state_recovered", "{s:s, s:I}", "interrupted", names[phase % 5],
	    "entry", (json_int_t)in->in_idx);
}

int mc_state_writer_open(struct mc_seg *seg, struct mc_state_writer *w, char *err, size_t errlen)
{
	const struct mc_region *cache = &seg->hdr->sh_regions[MC_REGION_SHARED_STATE_CACHE];
	struct mc_state_geometry geo;
	uint64_t ctl_off, feed_cap;
	int rc = mc_sw_geometry(seg, &geo, &ctl_off, &feed_cap, err, errlen);

	if (rc)
		return rc;
	memset(w, 0, sizeof(*w));
	w->seg = seg;
	w->t = (struct mc_state_table *)(seg->base + cache->rg_offset);
	w->ctl = (struct mc_state_ctl *)(seg->base + ctl_off);
	w->max_key = seg->hdr->sh_config.state_max_key_size;
	w->max_value = seg->hdr->sh_config.state_max_value_size;
	if (w->t->st_magic != MC_STATE_MAGIC) {
		/* a fresh segment: the region is all zero, which is an empty table */
		w->t->st_capacity = geo.capacity;
		w->t->st_entries_off = cache->rg_offset + geo.entries_off;
		w->t->st_arena_off = cache->rg_offset + geo.arena_off;
		w->t->st_arena_size = geo.arena_size;
		w->t->st_max_key = (uint32_t)w->max_key;
		w->t->st_max_value = (uint32_t)w->max_value;
		w->t->st_arena_top = MC_STATE_BLOCK_MIN;   /* offset 0 means "no block" */
		w->ctl->sc_feed_cap = feed_cap;
		w->ctl->sc_cur_src = UINT32_MAX;
		w->ctl->sc_magic = MC_STATE_CTL_MAGIC;
		ck_pr_fence_store();
		ck_pr_store_64(&w->t->st_magic, MC_STATE_MAGIC);
	} else if (w->t->st_capacity != geo.capacity || w->ctl->sc_magic != MC_STATE_CTL_MAGIC ||
	    w->ctl->sc_feed_cap != feed_cap) {
		snprintf(err, errlen, "the state table in the segment does not match this build's "
		    "geometry (capacity %llu, expected %llu)", (unsigned long long)w->t->st_capacity,
		    (unsigned long long)geo.capacity);
		return -EINVAL;
	}
	w->entries = (struct mc_state_entry *)(seg->base + w->t->st_entries_off);
	w->arena = seg->base + w->t->st_arena_off;
	w->mask = w->t->st_capacity - 1;
	mc_sw_recover(w);
	return 0;
}
