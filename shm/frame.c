/*
 * frame.c - frame pools, holder bits, send/receive/forward/release and
 * recovery (protocol in mc_frame.h).
 */
#include "mc_frame.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "mc_log.h"
#include "mc_proto.h"
#include "mc_util.h"

_Static_assert(sizeof(struct mc_frame) == MC_FRAME_HDR_SIZE, "frame header must stay 32 bytes");

#define MC_POOL_RECLAIM_BYTES (256u * 1024u)
#define MC_POOL_WINDOW (1024u * 1024u)

static inline struct mc_slot *mc_frame_slot(const struct mc_seg *seg, unsigned slot)
{
	return &seg->slots[slot];
}

static inline struct mc_frame *mc_pool_block(const struct mc_seg *seg,
    const struct mc_slot *sl, uint64_t pos)
{
	return (struct mc_frame *)(seg->base + sl->sl_pool_off + pos % sl->sl_pool_size);
}

/*
 * Is d_off a plausible frame block inside some pool?  Descriptors come
 * from other processes, so never dereference one unchecked: a bad one is
 * logged and skipped, it cannot make us read outside the segment.
 */
static struct mc_frame *mc_frame_check(const struct mc_seg *seg, const struct mc_desc *d)
{
	const struct mc_seg_hdr *h = seg->hdr;
	uint64_t pool_start, pool_end;
	struct mc_frame *f;
	uint32_t size;
	unsigned src;

	if (d->d_off < h->sh_mq_off || d->d_off % MC_FRAME_ALIGN != 0 ||
	    d->d_off + MC_FRAME_HDR_SIZE > h->sh_mq_off + h->sh_mq_size)
		return NULL;
	f = (struct mc_frame *)(seg->base + d->d_off);
	/* the frame names its pool; it must lie wholly inside that pool */
	src = f->f_src;
	if (src == 0 || src >= h->sh_nslots)
		return NULL;
	pool_start = h->sh_mq_off + (uint64_t)(src - 1) * h->sh_pool_size;
	pool_end = pool_start + h->sh_pool_size;
	size = ck_pr_load_32(&f->f_size);
	if (d->d_off < pool_start || size < MC_FRAME_ALIGN || size % MC_FRAME_ALIGN != 0 ||
	    d->d_off + size > pool_end || f->f_len > size - MC_FRAME_HDR_SIZE)
		return NULL;
	return f;
}

/* Rule 4: the frame is still the one described, and still ours to handle.
 * Holders first: while our bit is set the block cannot be reused, so the
 * sequence number read after it is stable. */
static bool mc_frame_current(const struct mc_frame *f, const struct mc_desc *d, uint64_t bit)
{
	uint64_t holders = ck_pr_load_64(&f->f_holders);

	ck_pr_fence_acquire();
	return (holders & bit) != 0 && ck_pr_load_64(&f->f_seq) == d->d_seq;
}

/* Clear `bit` with release ordering (rule 2).  A sole holder may store
 * zero: nobody else may touch f_holders while only our bit is set (rule 1). */
static void mc_frame_drop(struct mc_frame *f, uint64_t bit)
{
	ck_pr_fence_release();
	if (ck_pr_load_64(&f->f_holders) == bit)
		ck_pr_store_64(&f->f_holders, 0);
	else
		ck_pr_and_64(&f->f_holders, ~bit);
}

/* Rule 3: advance tail over blocks nobody holds. */
static void mc_pool_reclaim(struct mc_seg *seg, struct mc_slot *sl)
{
	uint64_t tail = sl->sl_pool_tail, pub = sl->sl_pool_published;
	uint64_t psize = sl->sl_pool_size, at = tail % psize;
	uint8_t *pool = seg->base + sl->sl_pool_off;

	while (tail < pub) {
		struct mc_frame *f = (struct mc_frame *)(pool + at);
		uint32_t size = f->f_size;

		if (ck_pr_load_64(&f->f_holders) != 0)
			break;
		if (MC_UNLIKELY(size < MC_FRAME_ALIGN || size % MC_FRAME_ALIGN != 0 ||
		    size > pub - tail || size > psize - at)) {
			mc_log_error("frame_pool_corrupt", "{s:s, s:I, s:i}", "message",
			    "frame pool block has an impossible size; pool stops reclaiming",
			    "position", (json_int_t)tail, "size", (int)size);
			break;
		}
		tail += size;
		at = at + size == psize ? 0 : at + size;    /* blocks end at the pool's end */
	}
	ck_pr_fence_acquire();   /* block reads before our later rewrites */
	ck_pr_store_64(&sl->sl_pool_tail, tail);
}

uint64_t mc_frame_pool_used(struct mc_seg *seg, unsigned slot)
{
	struct mc_slot *sl = mc_frame_slot(seg, slot);

	if (seg->slot == (int)slot)
		mc_pool_reclaim(seg, sl);
	return ck_pr_load_64(&sl->sl_pool_head) - ck_pr_load_64(&sl->sl_pool_tail);
}

static void mc_block_init(struct mc_frame *f, uint32_t size, uint32_t len,
    uint64_t seq, uint16_t kind, unsigned src)
{
	f->f_size = size;
	f->f_len = len;
	f->f_holders = 0;
	f->f_seq = seq;
	f->f_kind = kind;
	f->f_src = (uint8_t)src;
	f->f_flags = 0;
	f->f_user = 0;
}

struct mc_frame *mc_frame_alloc(struct mc_seg *seg, uint32_t len, uint16_t kind, int *err)
{
	struct mc_slot *sl = seg->self;
	uint64_t need, head, free_bytes, at, psize = seg->pool_size;
	struct mc_frame *f;

	if (MC_UNLIKELY(seg->slot <= 0 || seg->readonly)) {
		*err = -EPERM;
		return NULL;
	}
	if (MC_UNLIKELY(len > seg->max_frame)) {
		*err = -EMSGSIZE;
		return NULL;
	}
	if (MC_UNLIKELY(seg->alloc_pos != UINT64_MAX)) {
		*err = -EBUSY;
		return NULL;
	}
	need = mc_align_up(MC_FRAME_HDR_SIZE + (uint64_t)len, MC_FRAME_ALIGN);
	head = sl->sl_pool_head;
	free_bytes = psize - (head - sl->sl_pool_tail);
	/*
	 * Reclaim in bulk, once per MC_POOL_RECLAIM_BYTES of allocation (or
	 * when short of room): checking the oldest header on every allocation
	 * would touch a line a consumer is using, on every frame, while one
	 * walk over a batch of released headers is sequential and prefetched.
	 */
	if (MC_UNLIKELY(head >= seg->reclaim_at || free_bytes < 2 * need)) {
		mc_pool_reclaim(seg, sl);
		free_bytes = psize - (head - sl->sl_pool_tail);
		seg->reclaim_at = head + MC_POOL_RECLAIM_BYTES;
	}
	at = seg->head_at;      /* == head % psize, kept without dividing */
	/*
	 * Blocks never wrap: at the end of the pool a padding block fills the
	 * rest.  We also wrap early, as soon as we are MC_POOL_WINDOW into the
	 * pool and its start is free again: a pool cycled through in full
	 * (tens of MiB) would make every frame a cache miss, while a small
	 * window stays in cache.  The window grows by itself when consumers
	 * hold many frames (the start is not free yet, so we go on).
	 */
	if (MC_UNLIKELY(at + need > psize ||
	    (at >= MC_POOL_WINDOW && sl->sl_pool_tail >= head - at + need))) {
		if (free_bytes < (psize - at) + need) {
			*err = -EAGAIN;
			return NULL;
		}
		mc_block_init(mc_pool_block(seg, sl, head), (uint32_t)(psize - at), 0, 0, 0,
		    (unsigned)seg->slot);
		head += psize - at;
		free_bytes -= psize - at;
		at = 0;
	}
	if (MC_UNLIKELY(free_bytes < need)) {
		*err = -EAGAIN;
		return NULL;
	}
	f = (struct mc_frame *)(seg->base + sl->sl_pool_off + at);
	mc_block_init(f, (uint32_t)need, len, sl->sl_seq + 1, kind, (unsigned)seg->slot);
	sl->sl_seq++;
	seg->alloc_pos = head;
	seg->alloc_frame = f;
	seg->head_at = at + need == psize ? 0 : at + need;
	/* the header is complete before head covers it, so recovery can walk it */
	ck_pr_fence_store();
	ck_pr_store_64(&sl->sl_pool_head, head + need);
	*err = 0;
	return f;
}

void mc_frame_abort(struct mc_seg *seg, struct mc_frame *f)
{
	if (seg->alloc_frame == NULL || seg->alloc_frame != f)
		return;
	ck_pr_store_64(&seg->self->sl_pool_head, seg->alloc_pos);
	seg->head_at = seg->alloc_pos % seg->pool_size;
	seg->alloc_pos = UINT64_MAX;
	seg->alloc_frame = NULL;
}


/* May a frame be handed to slot dst now?  Ring, peer, then room. */
static int mc_frame_route(const struct mc_seg *seg, unsigned dst, int *ring)
{
	int rc;

	*ring = mc_ring_index(seg, (unsigned)seg->slot, dst);
	if (*ring < 0)
		return -EINVAL;
	rc = mc_frame_peer_ok(seg, dst);
	if (rc)
		return rc;
	return mc_ring_has_room(seg, (uint32_t)*ring) ? 0 : -EAGAIN;
}

/* Check every destination first: a send is all or nothing. */
static int mc_frame_preflight(const struct mc_seg *seg, uint64_t dst_mask,
    int rings[MC_MAX_SLOTS])
{
	if (dst_mask == 0 || (dst_mask & seg->bit))
		return -EINVAL;
	for (uint64_t m = dst_mask; m; m &= m - 1) {
		unsigned dst = (unsigned)__builtin_ctzll(m);
		int rc = dst < MC_MAX_SLOTS ? mc_frame_route(seg, dst, &rings[dst]) : -EINVAL;

		if (rc)
			return rc;
	}
	return 0;
}

static void mc_frame_put_all(struct mc_seg *seg, const struct mc_frame *f,
    const struct mc_desc *d, uint64_t dst_mask, const int rings[MC_MAX_SLOTS])
{
	bool lazy = mc_proto_kind_lazy(f->f_kind);

	for (uint64_t m = dst_mask; m; m &= m - 1)
		(void)mc_ring_put(seg, (uint32_t)rings[__builtin_ctzll(m)], d);
	for (uint64_t m = dst_mask; m; m &= m - 1)
		mc_ring_notify_lazy(seg, (unsigned)__builtin_ctzll(m), lazy);
}

int mc_frame_peer_ok(const struct mc_seg *seg, unsigned dst)
{
	const struct mc_slot *peer = &seg->slots[dst];
	uint32_t state = ck_pr_load_32(&peer->sl_state);

	if (peer->sl_kind == MC_KIND_CLIENT ? state != MC_SLOT_ATTACHED
	    : (state == MC_SLOT_FAILED || state == MC_SLOT_STOPPED))
		return -EPIPE;
	return 0;
}

/* The frame is sent: it is published, the allocation is over. */
static void mc_frame_sent(struct mc_seg *seg)
{
	ck_pr_store_64(&seg->self->sl_pool_published, seg->self->sl_pool_head);
	seg->alloc_pos = UINT64_MAX;
	seg->alloc_frame = NULL;
}

int mc_frame_send(struct mc_seg *seg, struct mc_frame *f, uint64_t dst_mask)
{
	int rings[MC_MAX_SLOTS];
	struct mc_desc d;
	int rc;

	if (MC_UNLIKELY(f == NULL || f != seg->alloc_frame))
		return -EINVAL;
	d.d_off = (uint64_t)((uint8_t *)f - seg->base);
	d.d_seq = f->f_seq;
	if (MC_LIKELY(dst_mask != 0 && (dst_mask & (dst_mask - 1)) == 0)) {
		/* one destination: the put itself is the all-or-nothing check */
		unsigned dst = (unsigned)__builtin_ctzll(dst_mask);
		const struct mc_seg_out *out = &seg->out[dst < MC_MAX_SLOTS ? dst : 0];

		if (MC_UNLIKELY(dst >= MC_MAX_SLOTS || out->ring == NULL))
			return -EINVAL;
		rc = mc_frame_peer_ok(seg, dst);
		if (MC_UNLIKELY(rc))
			return rc;
		ck_pr_store_64(&f->f_holders, dst_mask);   /* rule 2 */
		if (MC_UNLIKELY(!ck_ring_enqueue_spsc_mc_desc(&out->ring->r_ck, out->buf, &d))) {
			/* never published: nobody else can have seen these bits */
			ck_pr_store_64(&f->f_holders, 0);
			ck_pr_store_64(&out->ring->r_full, out->ring->r_full + 1);
			return -EAGAIN;
		}
		mc_frame_sent(seg);
		mc_ring_notify_lazy(seg, dst, mc_proto_kind_lazy(f->f_kind));
		return 0;
	}
	rc = mc_frame_preflight(seg, dst_mask, rings);
	if (rc)
		return rc;
	/* rule 2: holders before the descriptor (ck_ring's put fences stores) */
	ck_pr_store_64(&f->f_holders, dst_mask);
	mc_frame_put_all(seg, f, &d, dst_mask, rings);
	mc_frame_sent(seg);
	return 0;
}

int mc_frame_forward(struct mc_seg *seg, const struct mc_msg *m, uint64_t dst_mask)
{
	int rings[MC_MAX_SLOTS];
	uint64_t old;
	int rc = mc_frame_preflight(seg, dst_mask, rings);

	if (rc)
		return rc;
	/*
	 * We hold it, so we may add bits (rule 1).  A destination whose bit was
	 * already set has the frame queued or in hand (e.g. we are replaying a
	 * forward after a crash): putting it again would make it hold the frame
	 * twice, so only the newly set bits get a descriptor.
	 */
	old = __atomic_fetch_or(&m->frame->f_holders, dst_mask, __ATOMIC_ACQ_REL);
	mc_frame_put_all(seg, m->frame, &m->desc, dst_mask & ~old, rings);
	return 0;
}

/*
 * Recovery: is descriptor d still on its way to, or in the hands of, slot
 * dst through ring (src -> dst)?  Scans the ring from c_head to p_tail,
 * then the consumer's journal window: an entry leaves the ring only after
 * it is copied into the journal, and leaves the journal window only after
 * it was released, so reading c_head before the journal bounds cannot miss
 * it.  Only the ring's producer may call this (nothing is put meanwhile).
 */
static bool mc_frame_in_flight(const struct mc_seg *seg, int ring, const struct mc_desc *d)
{
	const struct mc_ring *r = &seg->rings[ring];
	const struct mc_desc *buf = (const struct mc_desc *)(seg->base + r->r_buf_off);
	const struct mc_desc *j = (const struct mc_desc *)(seg->base + r->r_journal_off);
	unsigned int tail = ck_pr_load_uint(&r->r_ck.p_tail);
	unsigned int head = ck_pr_load_uint(&r->r_ck.c_head), jpos;

	for (unsigned int p = head; p != tail; p++)
		if (buf[p & r->r_ck.mask].d_off == d->d_off && buf[p & r->r_ck.mask].d_seq == d->d_seq)
			return true;
	ck_pr_fence_load();
	jpos = ck_pr_load_uint(&r->r_jpos);
	head = ck_pr_load_uint(&r->r_ck.c_head);
	for (unsigned int p = jpos; p != head; p++)
		if (j[p & r->r_journal_mask].d_off == d->d_off &&
		    j[p & r->r_journal_mask].d_seq == d->d_seq)
			return true;
	return false;
}

/* A taken entry needs no more work: count it finished. */
static void mc_frame_finish(struct mc_seg *seg, uint32_t ring)
{
	if (--seg->inbox[ring].held == 0)
		mc_ring_commit(seg, ring);
}

/*
 * The set of frames this process holds (by segment offset).  Rule 4 makes
 * duplicates impossible when everyone follows the protocol; the set is the
 * receiver's own guarantee that it never hands out a frame it already
 * holds (and so never releases a block twice), whatever arrives.  Linear
 * probing, deletion by backward shift; offsets are never 0.
 */
static inline uint32_t mc_held_hash(const struct mc_seg *seg, uint64_t off)
{
	return (uint32_t)(((off >> 6) * 0x9e3779b97f4a7c15ULL) >> 32) & (seg->held_cap - 1);
}

static bool mc_held_grow(struct mc_seg *seg)
{
	uint32_t old_cap = seg->held_cap;
	uint64_t *old = seg->held, *tab = calloc((size_t)old_cap * 2, sizeof(*tab));

	if (tab == NULL)
		return false;
	seg->held = tab;
	seg->held_cap = old_cap * 2;
	for (uint32_t i = 0; i < old_cap; i++) {
		uint32_t h;

		if (old[i] == 0)
			continue;
		for (h = mc_held_hash(seg, old[i]); tab[h] != 0; h = (h + 1) & (seg->held_cap - 1))
			;
		tab[h] = old[i];
	}
	free(old);
	return true;
}

/*
 * Add off; false only if it is already held (a duplicate).  Out of memory,
 * the frame is handed out unrecorded: losing the duplicate check for one
 * frame is better than dropping a message.
 */
static bool mc_held_add(struct mc_seg *seg, uint64_t off)
{
	uint32_t h;

	if (MC_UNLIKELY(2 * (seg->held_n + 1) > seg->held_cap) && !mc_held_grow(seg)) {
		for (h = mc_held_hash(seg, off); seg->held[h] != 0; h = (h + 1) & (seg->held_cap - 1))
			if (seg->held[h] == off)
				return false;
		mc_log_error("frame_held_set_full", "{s:s}", "message",
		    "out of memory for the held-frame set; frame handed out unrecorded");
		return true;
	}
	for (h = mc_held_hash(seg, off); seg->held[h] != 0; h = (h + 1) & (seg->held_cap - 1))
		if (seg->held[h] == off)
			return false;
	seg->held[h] = off;
	seg->held_n++;
	return true;
}

static void mc_held_del(struct mc_seg *seg, uint64_t off)
{
	uint32_t mask = seg->held_cap - 1, h, j;

	for (h = mc_held_hash(seg, off); seg->held[h] != off; h = (h + 1) & mask)
		if (seg->held[h] == 0)
			return;
	/* backward shift: move later members of the cluster into the hole */
	for (j = (h + 1) & mask; seg->held[j] != 0; j = (j + 1) & mask) {
		uint32_t home = mc_held_hash(seg, seg->held[j]);

		if (((j - home) & mask) >= ((j - h) & mask)) {
			seg->held[h] = seg->held[j];
			h = j;
		}
	}
	seg->held[h] = 0;
	seg->held_n--;
}

int mc_recv_from(struct mc_seg *seg, uint32_t ring, struct mc_msg *out)
{
	struct mc_desc d;
	struct mc_frame *f;
	int rc;

	for (;;) {
		rc = mc_ring_take(seg, ring, &d);
		if (rc)
			return rc;
		f = mc_frame_check(seg, &d);
		if (MC_UNLIKELY(f == NULL)) {
			mc_log_error("frame_bad_descriptor", "{s:s, s:i, s:I}", "message",
			    "descriptor points outside every frame pool; skipped",
			    "ring", (int)ring, "offset", (json_int_t)d.d_off);
			mc_frame_finish(seg, ring);
			continue;
		}
		if (!mc_frame_current(f, &d, seg->bit) || !mc_held_add(seg, d.d_off)) {
			/* a replay of finished work, or a copy of a frame we hold */
			mc_frame_finish(seg, ring);
			continue;
		}
		out->frame = f;
		out->desc = d;
		out->ring = ring;
		out->src = seg->rings[ring].r_src;
		out->pos = seg->inbox[ring].rp - 1;     /* mc_ring_take just moved past it */
		return 0;
	}
}

/*
 * Round-robin over the inbound rings, but in bursts: stay on a ring that
 * has frames for up to MC_RECV_BURST of them before moving on, so a busy
 * ring is not interleaved with probes of idle ones, and no ring starves.
 */
#define MC_RECV_BURST 64

int mc_recv(struct mc_seg *seg, struct mc_msg *out)
{
	uint32_t nin = seg->ninbound, i = seg->poll_next;
	int result = -EAGAIN;

	/* indexes wrap by comparison: a division per call showed in profiles */
	if (MC_UNLIKELY(i >= nin))
		i = 0;
	if (seg->poll_burst >= MC_RECV_BURST) {
		seg->poll_burst = 0;
		i = i + 1 == nin ? 0 : i + 1;
	}
	for (uint32_t n = 0; n < nin; n++) {
		int rc = mc_recv_from(seg, seg->inbound[i], out);

		if (rc == 0) {
			if (i != seg->poll_next)
				seg->poll_burst = 0;
			seg->poll_next = i;
			seg->poll_burst++;
			return 0;
		}
		if (rc == -ENOBUFS)
			result = rc;
		i = i + 1 == nin ? 0 : i + 1;
	}
	return result;
}

void mc_frame_release(struct mc_seg *seg, struct mc_msg *m)
{
	mc_held_del(seg, m->desc.d_off);
	mc_frame_drop(m->frame, seg->bit);
	m->frame = NULL;
	mc_frame_finish(seg, m->ring);
}

int mc_frame_recover(struct mc_seg *seg, unsigned slot)
{
	struct mc_slot *sl = mc_frame_slot(seg, slot);
	uint64_t pos = sl->sl_pool_published, head = sl->sl_pool_head;

	while (pos < head) {
		struct mc_frame *f = mc_pool_block(seg, sl, pos);
		uint64_t holders = ck_pr_load_64(&f->f_holders);
		struct mc_desc d = { .d_off = (uint64_t)((uint8_t *)f - seg->base),
		    .d_seq = f->f_seq };

		if (f->f_size < MC_FRAME_ALIGN || f->f_size > head - pos)
			break;   /* cannot happen: headers precede head (see alloc) */
		if (d.d_seq != 0 && holders != 0) {
			/*
			 * Published in part.  A destination still holds its bit either
			 * because its descriptor is on the way or in its hands (leave
			 * it: rule 4 allows one copy) or because the put never happened
			 * (put it now).  Every ring is checked for room first, so a
			 * retry after -EAGAIN starts from the same state.
			 */
			uint64_t missing = 0;

			for (uint64_t m = holders; m; m &= m - 1) {
				unsigned dst = (unsigned)__builtin_ctzll(m);
				int ring = mc_ring_index(seg, slot, dst);

				if (ring < 0 || mc_frame_in_flight(seg, ring, &d))
					continue;
				if (!mc_ring_has_room(seg, (uint32_t)ring))
					return -EAGAIN;
				missing |= 1ULL << dst;
			}
			missing &= ck_pr_load_64(&f->f_holders);   /* released meanwhile: done */
			for (uint64_t m = missing; m; m &= m - 1) {
				unsigned dst = (unsigned)__builtin_ctzll(m);

				(void)mc_ring_put(seg, (uint32_t)mc_ring_index(seg, slot, dst), &d);
				mc_ring_notify(seg, dst);
			}
		}
		pos += f->f_size;
		ck_pr_store_64(&sl->sl_pool_published, pos);
	}
	ck_pr_store_64(&sl->sl_pool_published, head);
	return 0;
}

int mc_frame_drain(struct mc_seg *seg, unsigned slot)
{
	uint64_t bit = 1ULL << slot;
	int released = 0;

	for (unsigned src = 1; src < seg->hdr->sh_nslots; src++) {
		int idx = mc_ring_index(seg, src, slot);
		struct mc_ring *r;
		struct mc_desc *j, d;

		if (idx < 0)
			continue;
		r = &seg->rings[idx];
		j = (struct mc_desc *)(seg->base + r->r_journal_off);
		/* what the dead consumer took, then what is still queued */
		for (unsigned p = r->r_jpos; p != r->r_ck.c_head; p++) {
			struct mc_frame *f = mc_frame_check(seg, &j[p & r->r_journal_mask]);

			if (f && mc_frame_current(f, &j[p & r->r_journal_mask], bit)) {
				mc_frame_drop(f, bit);
				released++;
			}
		}
		while (ck_ring_dequeue_spsc_mc_desc(&r->r_ck,
		    (struct mc_desc *)(seg->base + r->r_buf_off), &d)) {
			struct mc_frame *f = mc_frame_check(seg, &d);

			if (f && mc_frame_current(f, &d, bit)) {
				mc_frame_drop(f, bit);
				released++;
			}
		}
		ck_pr_store_uint(&r->r_jpos, r->r_ck.c_head);
	}
	return released;
}
