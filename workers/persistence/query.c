/*
 * query.c - model lineage and training-data reads for learners (contract
 * in mc_pquery.h).
 *
 * Replies are assembled as a list of record copies with a running size,
 * so the budget check is exact before anything is serialised: a reply never
 * exceeds the frame size it will travel in.
 */
#include "mc_pquery.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_pkeys.h"

#define MC_PQ_OVERHEAD 600      /* id, status, error, cursor, framing */

struct mc_pq {
	struct mc_pstore *st;
	const Mcpcore__PersistRequest *req;
	size_t budget;                  /* bytes the records may take */
	size_t used;
	ProtobufCBinaryData *recs;
	size_t n, cap;
	uint8_t cursor[MC_PKEY_MODEL_MAX];
	size_t cursor_len;
	Mcpcore__PersistReply__Status status;
	char error[MC_PSTORE_ERR_MAX + 128];
};

static size_t mc_pq_varint_len(size_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* 1 added, 0 does not fit (budget or limit), -ENOMEM. Copies the bytes. */
static int mc_pq_add(struct mc_pq *q, const void *data, size_t len)
{
	size_t cost = 1 + mc_pq_varint_len(len) + len;

	if ((q->req->limit != 0 && q->n >= q->req->limit) || q->used + cost > q->budget)
		return 0;
	if (q->n == q->cap) {
		size_t cap = q->cap ? 2 * q->cap : 16;
		ProtobufCBinaryData *r = realloc(q->recs, cap * sizeof(*r));

		if (r == NULL)
			return -ENOMEM;
		q->recs = r;
		q->cap = cap;
	}
	q->recs[q->n].data = malloc(len ? len : 1);
	if (q->recs[q->n].data == NULL)
		return -ENOMEM;
	memcpy(q->recs[q->n].data, data, len);
	q->recs[q->n].len = len;
	q->n++;
	q->used += cost;
	return 1;
}

/* A model record, with model_data dropped unless the request wants it. */
static int mc_pq_add_model(struct mc_pq *q, const void *val, size_t vlen)
{
	Mcpcore__LearningModel *m;
	uint8_t *buf;
	size_t len;
	int rc;

	if (q->req->with_data)
		return mc_pq_add(q, val, vlen);
	m = mcpcore__learning_model__unpack(NULL, vlen, val);
	if (m == NULL)
		return mc_pq_add(q, val, vlen);   /* stored bytes are what they are */
	m->model_data.len = 0;
	len = mcpcore__learning_model__get_packed_size(m);
	buf = malloc(len ? len : 1);
	if (buf == NULL) {
		mcpcore__learning_model__free_unpacked(m, NULL);
		return -ENOMEM;
	}
	mcpcore__learning_model__pack(m, buf);
	rc = mc_pq_add(q, buf, len);
	free(buf);
	mcpcore__learning_model__free_unpacked(m, NULL);
	return rc;
}

static void mc_pq_set_cursor(struct mc_pq *q, const void *key, size_t len)
{
	if (len > sizeof(q->cursor))
		len = sizeof(q->cursor);
	memcpy(q->cursor, key, len);
	q->cursor_len = len;
}

static void mc_pq_fail(struct mc_pq *q, Mcpcore__PersistReply__Status st, const char *fmt,
    const char *arg)
{
	q->status = st;
	snprintf(q->error, sizeof(q->error), fmt, arg);
}

/* Position `it` just after the cursor, or at `start`. */
static void mc_pq_seek(rocksdb_iterator_t *it, const Mcpcore__PersistRequest *req,
    const void *start, size_t startlen)
{
	if (req->cursor.len == 0) {
		rocksdb_iter_seek(it, start, startlen);
		return;
	}
	rocksdb_iter_seek(it, (const char *)req->cursor.data, req->cursor.len);
	if (rocksdb_iter_valid(it)) {
		size_t klen;
		const char *k = rocksdb_iter_key(it, &klen);

		if (klen == req->cursor.len && memcmp(k, req->cursor.data, klen) == 0)
			rocksdb_iter_next(it);
	}
}

static int mc_pq_training(struct mc_pq *q)
{
	rocksdb_iterator_t *it = mc_pstore_iter(q->st, MC_CF_TRAINING);
	uint8_t start[8];
	size_t dlen = q->req->dataset ? strlen(q->req->dataset) : 0;
	int rc = 0;

	if (it == NULL)
		return 0;
	mc_pkey_put_be64(start, q->req->since);
	for (mc_pq_seek(it, q->req, start, sizeof(start)); rocksdb_iter_valid(it);
	    rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);

		if (dlen != 0) {
			struct mc_pb_field f;

			if (mc_pb_scan((const uint8_t *)v, vlen, 1, &f) != 1 || f.wire != 2 ||
			    f.len != dlen || memcmp(f.ptr, q->req->dataset, dlen) != 0)
				continue;
		}
		rc = mc_pq_add(q, v, vlen);
		if (rc < 0)
			break;
		if (rc == 0) {
			if (q->n == 0) {
				mc_pq_fail(q, MCPCORE__PERSIST_REPLY__STATUS__TOO_LARGE,
				    "a TrainingData record is larger than a frame can carry%s", "");
			}
			rc = 0;
			break;      /* cursor stays at the last record sent */
		}
		mc_pq_set_cursor(q, k, klen);
	}
	/* no more records: an empty cursor says so */
	if (!rocksdb_iter_valid(it))
		q->cursor_len = 0;
	rocksdb_iter_destroy(it);
	return rc;
}

static int mc_pq_versions(struct mc_pq *q)
{
	uint8_t prefix[MC_PKEY_MODEL_MAX];
	int plen = mc_pkey_model_prefix(prefix, sizeof(prefix), q->req->model_id,
	    strlen(q->req->model_id));
	rocksdb_iterator_t *it = mc_pstore_iter(q->st, MC_CF_MODELS);
	int rc = 0;
	bool more = false;

	if (it == NULL)
		return 0;
	for (mc_pq_seek(it, q->req, prefix, (size_t)plen); rocksdb_iter_valid(it);
	    rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v;

		if (klen != (size_t)plen + 8 || memcmp(k, prefix, (size_t)plen) != 0)
			break;
		v = rocksdb_iter_value(it, &vlen);
		rc = mc_pq_add_model(q, v, vlen);
		if (rc < 0)
			break;
		if (rc == 0) {
			more = true;
			rc = 0;
			break;
		}
		mc_pq_set_cursor(q, k, klen);
	}
	if (!more)
		q->cursor_len = 0;
	if (q->n == 0 && !more && q->req->cursor.len == 0)
		mc_pq_fail(q, MCPCORE__PERSIST_REPLY__STATUS__NOT_FOUND, "no model '%s'",
		    q->req->model_id);
	else if (q->n == 0 && more)
		mc_pq_fail(q, MCPCORE__PERSIST_REPLY__STATUS__TOO_LARGE,
		    "a version of '%s' is larger than a frame can carry", q->req->model_id);
	rocksdb_iter_destroy(it);
	return rc;
}

static int mc_pq_list(struct mc_pq *q)
{
	rocksdb_iterator_t *it = mc_pstore_iter(q->st, MC_CF_MODELS);
	uint8_t last[MC_PKEY_MODEL_MAX];
	int rc = 0;
	bool more = false;

	if (it == NULL)
		return 0;
	mc_pq_seek(it, q->req, "", 0);
	while (rocksdb_iter_valid(it)) {
		size_t klen, vlen, idlen;
		const char *k = rocksdb_iter_key(it, &klen), *v;
		const uint8_t *id;
		uint64_t version;
		int plen;

		if (mc_pkey_model_decode((const uint8_t *)k, klen, &id, &idlen, &version) != 0) {
			rocksdb_iter_next(it);
			continue;
		}
		/* the latest version of this model: the last key with its prefix */
		plen = mc_pkey_model_encode(last, sizeof(last), id, idlen, UINT64_MAX);
		rocksdb_iter_seek_for_prev(it, (const char *)last, (size_t)plen);
		if (!rocksdb_iter_valid(it))
			break;
		k = rocksdb_iter_key(it, &klen);
		v = rocksdb_iter_value(it, &vlen);     /* before vlen is read */
		rc = mc_pq_add_model(q, v, vlen);
		if (rc < 0)
			break;
		if (rc == 0) {
			more = true;
			rc = 0;
			break;
		}
		mc_pq_set_cursor(q, k, klen);
		rocksdb_iter_next(it);      /* the next model's first version */
	}
	if (!more)
		q->cursor_len = 0;
	rocksdb_iter_destroy(it);
	return rc;
}

/* Read one model version; 1 found (*val malloc'd), 0 absent, <0 error. */
static int mc_pq_get_model(struct mc_pq *q, uint64_t version, bool latest, char **val,
    size_t *vlen, uint64_t *found_version)
{
	uint8_t key[MC_PKEY_MODEL_MAX];
	char err[MC_PSTORE_ERR_MAX];
	size_t idlen = strlen(q->req->model_id);
	int klen = mc_pkey_model_encode(key, sizeof(key), q->req->model_id, idlen,
	    latest ? UINT64_MAX : version);
	int rc;

	if (klen < 0)
		return 0;
	if (latest) {
		rocksdb_iterator_t *it = mc_pstore_iter(q->st, MC_CF_MODELS);
		const uint8_t *id;
		size_t kl, got_idlen;
		const char *k;

		if (it == NULL)
			return 0;
		rocksdb_iter_seek_for_prev(it, (const char *)key, (size_t)klen);
		rc = 0;
		if (rocksdb_iter_valid(it)) {
			k = rocksdb_iter_key(it, &kl);
			if (mc_pkey_model_decode((const uint8_t *)k, kl, &id, &got_idlen,
			    found_version) == 0 && got_idlen == idlen &&
			    memcmp(id, q->req->model_id, idlen) == 0) {
				const char *v = rocksdb_iter_value(it, vlen);

				*val = malloc(*vlen ? *vlen : 1);
				rc = *val == NULL ? -ENOMEM : 1;
				if (*val != NULL)
					memcpy(*val, v, *vlen);
			}
		}
		rocksdb_iter_destroy(it);
		return rc;
	}
	*found_version = version;
	rc = mc_pstore_get(q->st, MC_CF_MODELS, key, (size_t)klen, val, vlen, err, sizeof(err));
	if (rc < 0)
		mc_pq_fail(q, MCPCORE__PERSIST_REPLY__STATUS__FAILED, "%s", err);
	return rc;
}

static int mc_pq_get(struct mc_pq *q)
{
	char *val = NULL;
	size_t vlen = 0;
	uint64_t v = 0;
	int rc = mc_pq_get_model(q, q->req->version, q->req->latest, &val, &vlen, &v);

	if (rc == 0 && q->status == MCPCORE__PERSIST_REPLY__STATUS__OK) {
		q->status = MCPCORE__PERSIST_REPLY__STATUS__NOT_FOUND;
		snprintf(q->error, sizeof(q->error), "no model '%.64s'%s", q->req->model_id,
		    q->req->latest ? "" : " at that version");
	}
	if (rc == 1) {
		rc = mc_pq_add(q, val, vlen);
		if (rc == 0) {
			q->status = MCPCORE__PERSIST_REPLY__STATUS__TOO_LARGE;
			snprintf(q->error, sizeof(q->error), "model '%.64s' version %llu is %zu bytes; "
			    "a reply frame carries at most %zu", q->req->model_id,
			    (unsigned long long)v, vlen, q->budget);
		}
	}
	free(val);
	return rc == -ENOMEM ? rc : 0;  /* store errors are in the reply's status */
}

static int mc_pq_ancestors(struct mc_pq *q)
{
	uint64_t *queue = NULL, skip = 0, emitted = 0;
	size_t head = 0, tail = 0, cap = 0;
	char *val = NULL;
	size_t vlen = 0;
	uint64_t v;
	int rc = mc_pq_get_model(q, q->req->version, false, &val, &vlen, &v);

	if (rc <= 0) {
		if (rc == 0 && q->status == MCPCORE__PERSIST_REPLY__STATUS__OK)
			mc_pq_fail(q, MCPCORE__PERSIST_REPLY__STATUS__NOT_FOUND,
			    "no model '%.64s' at that version", q->req->model_id);
		return rc == -ENOMEM ? rc : 0;
	}
	if (q->req->cursor.len == 8)
		skip = mc_pkey_get_be64(q->req->cursor.data);
	/*
	 * Breadth-first over parent_versions.  `queue` doubles as the visited
	 * set: a version is queued once, so merges in the history (two parents
	 * sharing an ancestor) and even a malformed cycle terminate.
	 */
	for (;;) {
		Mcpcore__LearningModel *m = mcpcore__learning_model__unpack(NULL, vlen,
		    (const uint8_t *)val);

		if (m != NULL) {
			for (size_t i = 0; i < m->n_parent_versions; i++) {
				uint64_t p = m->parent_versions[i];
				bool seen = p == q->req->version;

				for (size_t j = 0; j < tail && !seen; j++)
					seen = queue[j] == p;
				if (seen)
					continue;
				if (tail == cap) {
					size_t ncap = cap ? 2 * cap : 64;
					uint64_t *nq = realloc(queue, ncap * sizeof(*nq));

					if (nq == NULL) {
						mcpcore__learning_model__free_unpacked(m, NULL);
						rc = -ENOMEM;
						goto out;
					}
					queue = nq;
					cap = ncap;
				}
				queue[tail++] = p;
			}
			mcpcore__learning_model__free_unpacked(m, NULL);
		}
		free(val);
		val = NULL;
		/* next ancestor that exists */
		rc = 0;
		while (head < tail && rc == 0) {
			rc = mc_pq_get_model(q, queue[head++], false, &val, &vlen, &v);
			if (rc < 0)
				goto out;
		}
		if (rc == 0)
			break;          /* walked everything */
		if (emitted++ < skip)
			continue;
		rc = mc_pq_add_model(q, val, vlen);
		if (rc < 0)
			goto out;
		if (rc == 0) {
			uint8_t cur[8];

			if (q->n == 0)
				mc_pq_fail(q, MCPCORE__PERSIST_REPLY__STATUS__TOO_LARGE,
				    "an ancestor of '%.64s' is larger than a frame can carry",
				    q->req->model_id);
			mc_pkey_put_be64(cur, emitted - 1);
			mc_pq_set_cursor(q, cur, sizeof(cur));
			rc = 0;
			goto out;
		}
	}
	q->cursor_len = 0;
out:
	free(val);
	free(queue);
	return rc;
}

static int mc_pq_pack(uint64_t id, Mcpcore__PersistReply__Status status, const char *error,
    const char *ckpt, ProtobufCBinaryData *recs, size_t n, const uint8_t *cursor,
    size_t cursor_len, uint8_t **out, size_t *outlen)
{
	Mcpcore__PersistReply r = MCPCORE__PERSIST_REPLY__INIT;

	r.id = id;
	r.status = status;
	r.error = (char *)(error ? error : "");
	r.checkpoint_path = (char *)(ckpt ? ckpt : "");
	r.records = recs;
	r.n_records = n;
	r.cursor.data = (uint8_t *)cursor;
	r.cursor.len = cursor_len;
	*outlen = mcpcore__persist_reply__get_packed_size(&r);
	*out = malloc(*outlen ? *outlen : 1);
	if (*out == NULL)
		return -ENOMEM;
	mcpcore__persist_reply__pack(&r, *out);
	return 0;
}

int mc_pquery_reply(uint64_t id, Mcpcore__PersistReply__Status status, const char *error,
    const char *checkpoint_path, uint8_t **out, size_t *outlen)
{
	return mc_pq_pack(id, status, error, checkpoint_path, NULL, 0, NULL, 0, out, outlen);
}

int mc_pquery_answer(struct mc_pstore *st, const Mcpcore__PersistRequest *req,
    size_t max_bytes, uint8_t **out, size_t *outlen)
{
	struct mc_pq q = { .st = st, .req = req,
	    .status = MCPCORE__PERSIST_REPLY__STATUS__OK };
	bool needs_model = req->op == MCPCORE__PERSIST_REQUEST__OP__MODEL_VERSIONS ||
	    req->op == MCPCORE__PERSIST_REQUEST__OP__MODEL_GET ||
	    req->op == MCPCORE__PERSIST_REQUEST__OP__MODEL_ANCESTORS;
	int rc = 0;

	q.budget = max_bytes > MC_PQ_OVERHEAD + strlen(req->model_id ? req->model_id : "") ?
	    max_bytes - MC_PQ_OVERHEAD - strlen(req->model_id ? req->model_id : "") : 0;
	if (st == NULL || st->db == NULL)
		return mc_pquery_reply(req->id, MCPCORE__PERSIST_REPLY__STATUS__UNAVAILABLE,
		    "the store is not open (see `mcpcore status`)", NULL, out, outlen);
	if (needs_model && (req->model_id == NULL || req->model_id[0] == '\0' ||
	    strlen(req->model_id) > UINT16_MAX))
		return mc_pquery_reply(req->id, MCPCORE__PERSIST_REPLY__STATUS__BAD_REQUEST,
		    "model_id is required (1..65535 bytes)", NULL, out, outlen);
	if (req->cursor.len > MC_PKEY_MODEL_MAX)
		return mc_pquery_reply(req->id, MCPCORE__PERSIST_REPLY__STATUS__BAD_REQUEST,
		    "cursor is not one this worker returned", NULL, out, outlen);
	switch (req->op) {
	case MCPCORE__PERSIST_REQUEST__OP__TRAINING:        rc = mc_pq_training(&q); break;
	case MCPCORE__PERSIST_REQUEST__OP__MODEL_LIST:      rc = mc_pq_list(&q); break;
	case MCPCORE__PERSIST_REQUEST__OP__MODEL_VERSIONS:  rc = mc_pq_versions(&q); break;
	case MCPCORE__PERSIST_REQUEST__OP__MODEL_GET:       rc = mc_pq_get(&q); break;
	case MCPCORE__PERSIST_REQUEST__OP__MODEL_ANCESTORS: rc = mc_pq_ancestors(&q); break;
	default:
		q.status = MCPCORE__PERSIST_REPLY__STATUS__BAD_REQUEST;
		snprintf(q.error, sizeof(q.error), "op %d is not a read", (int)req->op);
		break;
	}
	if (rc > 0)
		rc = 0;         /* "added" from the last record: not an error */
	if (rc == 0)
		rc = mc_pq_pack(req->id, q.status, q.error, NULL, q.recs, q.n, q.cursor,
		    q.cursor_len, out, outlen);
	for (size_t i = 0; i < q.n; i++)
		free(q.recs[i].data);
	free(q.recs);
	return rc;
}
