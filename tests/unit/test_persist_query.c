/*
 * test_persist_query.c - unit tests for the learners' reads: model lineage
 * and training data (workers/persistence/query.c, contract in
 * mc_pquery.h).
 *
 * The history used below (model "net"):
 *
 *     1 <- 2 <- 4 <- 6          6's parents: 4 and 5 (a merge)
 *      \        \  /
 *       3 <---- 5               5's parents: 3 and 4; 7 names 99 (never stored)
 *
 * plus model "other" v1, and "ne" v1 (a prefix of "net": must stay apart).
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_pckpt.h"
#include "mc_pkeys.h"
#include "mc_pquery.h"
#include "mc_pstore.h"

static char dir[256], db[300], err[MC_PSTORE_ERR_MAX];
static struct mc_pstore st;

static void put_model(const char *id, uint64_t v, const uint64_t *parents, size_t np,
    size_t datalen)
{
	Mcpcore__LearningModel m = MCPCORE__LEARNING_MODEL__INIT;
	uint8_t key[128], *buf, *data = calloc(datalen + 1, 1);
	size_t n;
	int klen;
	char *rerr = NULL;

	m.model_id = (char *)id;
	m.version = v;
	m.created_at = 1000 + v;
	m.model_data.data = data;
	m.model_data.len = datalen;
	m.parent_versions = (uint64_t *)parents;
	m.n_parent_versions = np;
	n = mcpcore__learning_model__get_packed_size(&m);
	buf = malloc(n);
	mcpcore__learning_model__pack(&m, buf);
	klen = mc_pkey_model_encode(key, sizeof(key), id, strlen(id), v);
	rocksdb_put_cf(st.db, st.wo_nosync, st.cf[MC_CF_MODELS], (char *)key, (size_t)klen,
	    (char *)buf, n, &rerr);
	cr_assert_null(rerr);
	free(buf);
	free(data);
}

static void put_training(uint64_t t, const char *dataset)
{
	Mcpcore__TrainingData td = MCPCORE__TRAINING_DATA__INIT;
	struct mc_pkey_time k = { .time_ns = t, .run = 1, .slot = 6, .seq = t };
	uint8_t key[MC_PKEY_TIME_LEN], buf[256];
	size_t n;
	char *rerr = NULL;

	td.dataset = (char *)dataset;
	td.timestamp = t;
	n = mcpcore__training_data__pack(&td, buf);
	mc_pkey_time_encode(key, sizeof(key), &k);
	rocksdb_put_cf(st.db, st.wo_nosync, st.cf[MC_CF_TRAINING], (char *)key, sizeof(key),
	    (char *)buf, n, &rerr);
	cr_assert_null(rerr);
}

static void up(void)
{
	static const uint64_t p2[] = { 1 }, p3[] = { 1 }, p4[] = { 2 }, p5[] = { 3, 4 },
	    p6[] = { 4, 5 }, p7[] = { 99, 6 };

	snprintf(dir, sizeof(dir), "/tmp/utpquery-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/db", dir);
	cr_assert_eq(mc_pstore_open(&st, db, "lz4", MC_PSTORE_CREATE, err, sizeof(err)), 0, "%s", err);
	put_model("net", 1, NULL, 0, 100);
	put_model("net", 2, p2, 1, 100);
	put_model("net", 3, p3, 1, 100);
	put_model("net", 4, p4, 1, 100);
	put_model("net", 5, p5, 2, 100);
	put_model("net", 6, p6, 2, 100);
	put_model("net", 7, p7, 2, 100);
	put_model("ne", 1, NULL, 0, 10);
	put_model("other", 1, NULL, 0, 10);
	for (uint64_t t = 1; t <= 20; t++)
		put_training(t * 100, t % 2 ? "odd" : "even");
}

static void down(void)
{
	mc_pstore_close(&st);
	mc_pckpt_rmtree(dir);
}

TestSuite(query, .init = up, .fini = down);

static Mcpcore__PersistReply *ask(Mcpcore__PersistRequest *req, size_t max)
{
	uint8_t *out;
	size_t len;
	Mcpcore__PersistReply *r;

	cr_assert_eq(mc_pquery_answer(&st, req, max, &out, &len), 0);
	cr_assert_leq(len, max, "a reply of %zu bytes does not fit a %zu-byte frame", len, max);
	r = mcpcore__persist_reply__unpack(NULL, len, out);
	free(out);
	cr_assert_not_null(r);
	cr_assert_eq(r->id, req->id);
	return r;
}

static Mcpcore__LearningModel *model(const Mcpcore__PersistReply *r, size_t i)
{
	Mcpcore__LearningModel *m = mcpcore__learning_model__unpack(NULL, r->records[i].len,
	    r->records[i].data);

	cr_assert_not_null(m);
	return m;
}

static void versions_are(const Mcpcore__PersistReply *r, const uint64_t *want, size_t n,
    const char *id)
{
	cr_assert_eq(r->n_records, n, "%zu records, want %zu", r->n_records, n);
	for (size_t i = 0; i < n; i++) {
		Mcpcore__LearningModel *m = model(r, i);

		cr_assert_str_eq(m->model_id, id);
		cr_assert_eq(m->version, want[i], "record %zu: version %llu, want %llu", i,
		    (unsigned long long)m->version, (unsigned long long)want[i]);
		mcpcore__learning_model__free_unpacked(m, NULL);
	}
}

Test(query, versions_oldest_first_and_only_that_model)
{
	Mcpcore__PersistRequest q = MCPCORE__PERSIST_REQUEST__INIT;
	static const uint64_t want[] = { 1, 2, 3, 4, 5, 6, 7 };
	Mcpcore__PersistReply *r;
	Mcpcore__LearningModel *m;

	q.op = MCPCORE__PERSIST_REQUEST__OP__MODEL_VERSIONS;
	q.id = 5;
	q.model_id = "net";
	r = ask(&q, 65536);
	cr_assert_eq(r->status, MCPCORE__PERSIST_REPLY__STATUS__OK);
	versions_are(r, want, 7, "net");
	cr_assert_eq(r->cursor.len, 0);
	m = model(r, 0);
	cr_assert_eq(m->model_data.len, 0, "lists carry no model_data unless with_data");
	mcpcore__learning_model__free_unpacked(m, NULL);
	mcpcore__persist_reply__free_unpacked(r, NULL);
	q.with_data = 1;
	r = ask(&q, 65536);
	m = model(r, 0);
	cr_assert_eq(m->model_data.len, 100);
	mcpcore__learning_model__free_unpacked(m, NULL);
	mcpcore__persist_reply__free_unpacked(r, NULL);
	q.model_id = "nope";
	r = ask(&q, 65536);
	cr_assert_eq(r->status, MCPCORE__PERSIST_REPLY__STATUS__NOT_FOUND);
	mcpcore__persist_reply__free_unpacked(r, NULL);
}

Test(query, versions_page_with_cursor_when_the_frame_is_small)
{
	Mcpcore__PersistRequest q = MCPCORE__PERSIST_REQUEST__INIT;
	uint64_t seen[16];
	size_t n = 0;
	uint8_t cur[64];

	q.op = MCPCORE__PERSIST_REQUEST__OP__MODEL_VERSIONS;
	q.model_id = "net";
	q.with_data = 1;        /* ~130 bytes each: 2 per 900-byte reply (600 are overhead) */
	for (int round = 0; round < 10; round++) {
		Mcpcore__PersistReply *r = ask(&q, 900);

		cr_assert_eq(r->status, MCPCORE__PERSIST_REPLY__STATUS__OK);
		for (size_t i = 0; i < r->n_records; i++) {
			Mcpcore__LearningModel *m = model(r, i);

			seen[n++] = m->version;
			mcpcore__learning_model__free_unpacked(m, NULL);
		}
		cr_assert_leq(r->cursor.len, sizeof(cur));
		if (r->cursor.len)
			memcpy(cur, r->cursor.data, r->cursor.len);
		q.cursor.data = cur;
		q.cursor.len = r->cursor.len;
		mcpcore__persist_reply__free_unpacked(r, NULL);
		if (q.cursor.len == 0)
			break;
	}
	cr_assert_eq(n, 7);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(seen[i], i + 1);
}

Test(query, get_one_version_or_the_latest)
{
	Mcpcore__PersistRequest q = MCPCORE__PERSIST_REQUEST__INIT;
	Mcpcore__PersistReply *r;
	Mcpcore__LearningModel *m;

	q.op = MCPCORE__PERSIST_REQUEST__OP__MODEL_GET;
	q.model_id = "net";
	q.version = 4;
	r = ask(&q, 65536);
	cr_assert_eq(r->n_records, 1);
	m = model(r, 0);
	cr_assert_eq(m->version, 4);
	cr_assert_eq(m->model_data.len, 100, "MODEL_GET returns the model itself");
	mcpcore__learning_model__free_unpacked(m, NULL);
	mcpcore__persist_reply__free_unpacked(r, NULL);
	q.latest = 1;
	r = ask(&q, 65536);
	m = model(r, 0);
	cr_assert_eq(m->version, 7);
	mcpcore__learning_model__free_unpacked(m, NULL);
	mcpcore__persist_reply__free_unpacked(r, NULL);
	q.model_id = "ne";          /* a prefix of "net": its own latest */
	r = ask(&q, 65536);
	m = model(r, 0);
	cr_assert_str_eq(m->model_id, "ne");
	cr_assert_eq(m->version, 1);
	mcpcore__learning_model__free_unpacked(m, NULL);
	mcpcore__persist_reply__free_unpacked(r, NULL);
	q.latest = 0;
	q.model_id = "net";
	q.version = 42;
	r = ask(&q, 65536);
	cr_assert_eq(r->status, MCPCORE__PERSIST_REPLY__STATUS__NOT_FOUND);
	mcpcore__persist_reply__free_unpacked(r, NULL);
	q.version = 4;
	r = ask(&q, 700);          /* the model does not fit a frame that small */
	cr_assert_eq(r->status, MCPCORE__PERSIST_REPLY__STATUS__TOO_LARGE);
	cr_assert(strstr(r->error, "version 4") != NULL, "%s", r->error);
	mcpcore__persist_reply__free_unpacked(r, NULL);
}

Test(query, ancestors_breadth_first_each_once)
{
	Mcpcore__PersistRequest q = MCPCORE__PERSIST_REQUEST__INIT;
	/* from 6: parents 4, 5; then 4's parent 2, 5's parent 3 (4 seen); then 1 */
	static const uint64_t from6[] = { 4, 5, 2, 3, 1 };
	static const uint64_t from7[] = { 6, 4, 5, 2, 3, 1 };       /* 99 was never stored */
	Mcpcore__PersistReply *r;

	q.op = MCPCORE__PERSIST_REQUEST__OP__MODEL_ANCESTORS;
	q.model_id = "net";
	q.version = 6;
	r = ask(&q, 65536);
	cr_assert_eq(r->status, MCPCORE__PERSIST_REPLY__STATUS__OK, "%s", r->error);
	versions_are(r, from6, 5, "net");
	mcpcore__persist_reply__free_unpacked(r, NULL);
	q.version = 7;
	r = ask(&q, 65536);
	versions_are(r, from7, 6, "net");
	mcpcore__persist_reply__free_unpacked(r, NULL);
	q.version = 1;
	r = ask(&q, 65536);
	cr_assert_eq(r->status, MCPCORE__PERSIST_REPLY__STATUS__OK);
	cr_assert_eq(r->n_records, 0, "the root has no ancestors");
	mcpcore__persist_reply__free_unpacked(r, NULL);
	q.version = 100;
	r = ask(&q, 65536);
	cr_assert_eq(r->status, MCPCORE__PERSIST_REPLY__STATUS__NOT_FOUND);
	mcpcore__persist_reply__free_unpacked(r, NULL);
}

Test(query, ancestors_page_and_limit)
{
	Mcpcore__PersistRequest q = MCPCORE__PERSIST_REQUEST__INIT;
	static const uint64_t first[] = { 4, 5 };
	Mcpcore__PersistReply *r;
	uint8_t cur[8];

	q.op = MCPCORE__PERSIST_REQUEST__OP__MODEL_ANCESTORS;
	q.model_id = "net";
	q.version = 6;
	q.limit = 2;
	r = ask(&q, 65536);
	versions_are(r, first, 2, "net");
	cr_assert_eq(r->cursor.len, 8);
	memcpy(cur, r->cursor.data, 8);
	mcpcore__persist_reply__free_unpacked(r, NULL);
	q.cursor.data = cur;
	q.cursor.len = 8;
	q.limit = 0;
	r = ask(&q, 65536);
	{
		static const uint64_t rest[] = { 2, 3, 1 };

		versions_are(r, rest, 3, "net");
	}
	mcpcore__persist_reply__free_unpacked(r, NULL);
}

Test(query, list_latest_of_every_model)
{
	Mcpcore__PersistRequest q = MCPCORE__PERSIST_REQUEST__INIT;
	Mcpcore__PersistReply *r;
	const char *ids[] = { "ne", "net", "other" };
	uint64_t vers[] = { 1, 7, 1 };

	q.op = MCPCORE__PERSIST_REQUEST__OP__MODEL_LIST;
	r = ask(&q, 65536);
	cr_assert_eq(r->n_records, 3);
	for (size_t i = 0; i < 3; i++) {
		Mcpcore__LearningModel *m = model(r, i);

		cr_assert_str_eq(m->model_id, ids[i]);
		cr_assert_eq(m->version, vers[i]);
		mcpcore__learning_model__free_unpacked(m, NULL);
	}
	mcpcore__persist_reply__free_unpacked(r, NULL);
	/* one per reply: the cursor walks the models */
	q.limit = 1;
	for (size_t i = 0; i < 3; i++) {
		uint8_t cur[64];
		Mcpcore__LearningModel *m;

		r = ask(&q, 65536);
		cr_assert_eq(r->n_records, 1);
		m = model(r, 0);
		cr_assert_str_eq(m->model_id, ids[i]);
		mcpcore__learning_model__free_unpacked(m, NULL);
		if (r->cursor.len)
			memcpy(cur, r->cursor.data, r->cursor.len);
		q.cursor.len = r->cursor.len;
		q.cursor.data = cur;
		mcpcore__persist_reply__free_unpacked(r, NULL);
		if (i < 2)
			cr_assert_gt(q.cursor.len, 0);
		else if (q.cursor.len != 0) {
			r = ask(&q, 65536);
			cr_assert_eq(r->n_records, 0);
			mcpcore__persist_reply__free_unpacked(r, NULL);
		}
	}
}

Test(query, training_since_limit_dataset_and_paging)
{
	Mcpcore__PersistRequest q = MCPCORE__PERSIST_REQUEST__INIT;
	Mcpcore__PersistReply *r;
	uint64_t got[32];
	size_t n = 0;
	uint8_t cur[64];

	q.op = MCPCORE__PERSIST_REQUEST__OP__TRAINING;
	q.since = 1500;
	r = ask(&q, 65536);
	cr_assert_eq(r->n_records, 6, "records at 1500..2000");
	cr_assert_eq(r->cursor.len, 0);
	mcpcore__persist_reply__free_unpacked(r, NULL);
	q.since = 0;
	q.dataset = "odd";
	q.limit = 4;
	for (int round = 0; round < 10; round++) {
		r = ask(&q, 65536);
		for (size_t i = 0; i < r->n_records; i++) {
			Mcpcore__TrainingData *t = mcpcore__training_data__unpack(NULL, r->records[i].len,
			    r->records[i].data);

			cr_assert_str_eq(t->dataset, "odd");
			got[n++] = t->timestamp;
			mcpcore__training_data__free_unpacked(t, NULL);
		}
		if (r->cursor.len)
			memcpy(cur, r->cursor.data, r->cursor.len);
		q.cursor.data = cur;
		q.cursor.len = r->cursor.len;
		mcpcore__persist_reply__free_unpacked(r, NULL);
		if (q.cursor.len == 0)
			break;
	}
	cr_assert_eq(n, 10);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(got[i], 100 * (2 * i + 1));
}

Test(query, bad_requests_and_closed_store)
{
	Mcpcore__PersistRequest q = MCPCORE__PERSIST_REQUEST__INIT;
	Mcpcore__PersistReply *r;
	uint8_t *out;
	size_t len;

	q.op = MCPCORE__PERSIST_REQUEST__OP__MODEL_GET;
	r = ask(&q, 65536);
	cr_assert_eq(r->status, MCPCORE__PERSIST_REPLY__STATUS__BAD_REQUEST, "no model_id");
	mcpcore__persist_reply__free_unpacked(r, NULL);
	q.op = MCPCORE__PERSIST_REQUEST__OP__CHECKPOINT;
	r = ask(&q, 65536);
	cr_assert_eq(r->status, MCPCORE__PERSIST_REPLY__STATUS__BAD_REQUEST, "not a read");
	mcpcore__persist_reply__free_unpacked(r, NULL);
	q.op = MCPCORE__PERSIST_REQUEST__OP__TRAINING;
	q.cursor.len = MC_PKEY_MODEL_MAX + 1;
	{
		uint8_t *huge = calloc(q.cursor.len, 1);

		q.cursor.data = huge;
		r = ask(&q, 65536);
		cr_assert_eq(r->status, MCPCORE__PERSIST_REPLY__STATUS__BAD_REQUEST, "bad cursor");
		mcpcore__persist_reply__free_unpacked(r, NULL);
		free(huge);
	}
	q.cursor.len = 0;
	cr_assert_eq(mc_pquery_answer(NULL, &q, 65536, &out, &len), 0);
	r = mcpcore__persist_reply__unpack(NULL, len, out);
	cr_assert_eq(r->status, MCPCORE__PERSIST_REPLY__STATUS__UNAVAILABLE);
	mcpcore__persist_reply__free_unpacked(r, NULL);
	free(out);
}

Test(query, plain_reply_carries_the_checkpoint_path)
{
	uint8_t *out;
	size_t len;
	Mcpcore__PersistReply *r;

	cr_assert_eq(mc_pquery_reply(9, MCPCORE__PERSIST_REPLY__STATUS__OK, "", "/x/checkpoints/y",
	    &out, &len), 0);
	r = mcpcore__persist_reply__unpack(NULL, len, out);
	cr_assert_eq(r->id, 9);
	cr_assert_str_eq(r->checkpoint_path, "/x/checkpoints/y");
	mcpcore__persist_reply__free_unpacked(r, NULL);
	free(out);
}
