/*
 * restore.c - replaying the state family into the state worker at start
 * (protocol in mc_prestore.h).
 *
 * Frames are built one at a time: fill a StateRequest with RESTORE ops up
 * to the size budget, pack it, and keep the packed bytes until the ring
 * has room; so a full ring costs nothing but waiting, and no op is ever
 * sent twice by us.
 */
#include "mc_prestore.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_log.h"
#include "mc_pkeys.h"
#include "mc_util.h"

#define MC_PRESTORE_OPS_MAX 512         /* ops per request frame */
#define MC_PRESTORE_BYTES   (256u * 1024u)

int mc_prestore_begin(struct mc_prestore *r, struct mc_pstore *st, uint64_t now_mono)
{
	memset(r, 0, sizeof(*r));
	r->next_id = 1;
	r->last_progress_ns = now_mono;
	r->it = mc_pstore_iter(st, MC_CF_STATE);
	r->expired_wb = rocksdb_writebatch_create();
	if (r->it == NULL || r->expired_wb == NULL) {
		mc_prestore_end(r);
		return -ENOMEM;
	}
	rocksdb_iter_seek_to_first(r->it);
	return 0;
}

void mc_prestore_end(struct mc_prestore *r)
{
	if (r->it != NULL)
		rocksdb_iter_destroy(r->it);
	if (r->expired_wb != NULL)
		rocksdb_writebatch_destroy(r->expired_wb);
	free(r->answered_bits);
	free(r->pending);
	r->it = NULL;
	r->expired_wb = NULL;
	r->answered_bits = NULL;
	r->pending = NULL;
	r->pending_len = 0;
}

static int mc_prestore_mark_room(struct mc_prestore *r, uint64_t id)
{
	if (id < r->bits_cap)
		return 0;
	{
		uint64_t cap = r->bits_cap ? r->bits_cap : 8192;
		uint8_t *b;

		while (cap <= id)
			cap *= 2;
		b = realloc(r->answered_bits, cap / 8);
		if (b == NULL)
			return -ENOMEM;
		memset(b + r->bits_cap / 8, 0, (cap - r->bits_cap) / 8);
		r->answered_bits = b;
		r->bits_cap = cap;
	}
	return 0;
}

/* Pack the next request from the iterator into r->pending (may be empty). */
static int mc_prestore_build(struct mc_prestore *r, struct mc_pstore *st, uint64_t budget)
{
	Mcpcore__StateOp ops[MC_PRESTORE_OPS_MAX], *opp[MC_PRESTORE_OPS_MAX];
	Mcpcore__StateChange *chg[MC_PRESTORE_OPS_MAX];
	Mcpcore__StateRequest req = MCPCORE__STATE_REQUEST__INIT;
	uint64_t now_wall = mc_wall_ns();
	size_t n = 0, bytes = 16;
	int rc = 0;

	if (budget > MC_PRESTORE_BYTES)
		budget = MC_PRESTORE_BYTES;
	while (n < MC_PRESTORE_OPS_MAX && rocksdb_iter_valid(r->it)) {
		size_t klen, vlen, oplen;
		const char *k = rocksdb_iter_key(r->it, &klen);
		const char *v = rocksdb_iter_value(r->it, &vlen);
		Mcpcore__StateChange *c = mcpcore__state_change__unpack(NULL, vlen, (const uint8_t *)v);

		if (c == NULL) {
			mc_log_warn("restore_bad_record", "{s:s}", "message",
			    "a state family value is not a StateChange; skipped");
			rocksdb_iter_next(r->it);
			continue;
		}
		if (c->expires_at != 0 && c->expires_at <= now_wall) {
			rocksdb_writebatch_delete_cf(r->expired_wb, st->cf[MC_CF_STATE], k, klen);
			r->expired++;
			mcpcore__state_change__free_unpacked(c, NULL);
			rocksdb_iter_next(r->it);
			continue;
		}
		mcpcore__state_op__init(&ops[n]);
		ops[n].kind = MCPCORE__STATE_OP__KIND__RESTORE;
		ops[n].id = r->next_id;
		ops[n].ns = c->ns;
		ops[n].key = c->key;
		ops[n].value = c->value;
		ops[n].version = c->version;
		ops[n].mtime = c->mtime;
		ops[n].expires_at = c->expires_at;
		ops[n].correlation_id = c->correlation_id;
		oplen = mcpcore__state_op__get_packed_size(&ops[n]) + 6;
		if (n > 0 && bytes + oplen > budget) {
			mcpcore__state_change__free_unpacked(c, NULL);
			break;          /* the next frame starts with it */
		}
		chg[n] = c;
		opp[n] = &ops[n];
		bytes += oplen;
		r->next_id++;
		n++;
		rocksdb_iter_next(r->it);
	}
	if (!rocksdb_iter_valid(r->it))
		r->iter_done = true;
	if (n > 0) {
		req.ops = opp;
		req.n_ops = n;
		r->pending_len = mcpcore__state_request__get_packed_size(&req);
		r->pending = malloc(r->pending_len);
		if (r->pending == NULL)
			rc = -ENOMEM;
		else
			mcpcore__state_request__pack(&req, r->pending);
		r->sent += n;
		if (rc == 0)
			rc = mc_prestore_mark_room(r, r->next_id);
	}
	for (size_t i = 0; i < n; i++)
		mcpcore__state_change__free_unpacked(chg[i], NULL);
	/*
	 * Delete the expired entries now, before this thread commits anything
	 * else: a newer PUT of the same key from the change feed is either
	 * already in the store (then we did not read an expired value) or is
	 * committed after this delete, so the delete can never hide it.
	 */
	if (rocksdb_writebatch_count(r->expired_wb) > 0 && st->db != NULL) {
		char *rerr = NULL;

		rocksdb_write(st->db, st->wo_nosync, r->expired_wb, &rerr);
		rocksdb_free(rerr);
		rocksdb_writebatch_clear(r->expired_wb);
	}
	return rc;
}

int mc_prestore_step(struct mc_prestore *r, struct mc_seg *seg, struct mc_pstore *st,
    uint64_t max_frame, uint64_t now_mono, uint64_t timeout_ns)
{
	for (;;) {
		struct mc_frame *f;
		int rc;

		if (r->pending == NULL) {
			if (r->iter_done)
				break;
			rc = mc_prestore_build(r, st, max_frame > 1024 ? max_frame - 1024 : max_frame);
			if (rc)
				return rc;
			if (r->pending == NULL)
				continue;       /* only expired entries in this stretch */
		}
		f = mc_frame_alloc(seg, (uint32_t)r->pending_len, MC_FK_STATE_REQUEST, &rc);
		if (f == NULL) {
			if (rc == -EAGAIN)
				break;  /* our pool is full: the state worker is behind */
			return rc;
		}
		memcpy(f->f_data, r->pending, r->pending_len);
		rc = mc_frame_send(seg, f, 1ULL << MC_WORKER_STATE);
		if (rc) {
			mc_frame_abort(seg, f);
			if (rc == -EAGAIN)
				break;
			return rc;
		}
		free(r->pending);
		r->pending = NULL;
		r->pending_len = 0;
		r->last_progress_ns = now_mono;
	}
	if (r->iter_done && r->pending == NULL && r->answered >= r->sent)
		return 1;
	if (now_mono - r->last_progress_ns > timeout_ns)
		return -ETIMEDOUT;
	return 0;
}

void mc_prestore_reply(struct mc_prestore *r, const Mcpcore__StateReply *rep, uint64_t now_mono)
{
	for (size_t i = 0; i < rep->n_results; i++) {
		uint64_t id = rep->results[i]->id;

		if (id == 0 || id >= r->next_id || id >= r->bits_cap)
			continue;       /* not one of ours */
		if (r->answered_bits[id / 8] & (1u << (id % 8)))
			continue;       /* answered twice (a replay): count once */
		r->answered_bits[id / 8] |= (uint8_t)(1u << (id % 8));
		r->answered++;
		if (rep->results[i]->status != MCPCORE__STATE_RESULT__STATUS__OK)
			r->not_ok++;
		r->last_progress_ns = now_mono;
	}
}
