/*
 * test_persist_batch.c - unit tests for group-commit batches and the dedup
 * marks (workers/persistence/batch.c, contract in mc_pbatch.h): what each
 * frame kind becomes, duplicates across replays and across runs, the
 * marks riding in the same write, retry after failure, rejection.
 *
 * Frames are simulated (m = NULL, payload from the stack): the batch never
 * touches the segment.  The store lives in a mkdtemp directory.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_pbatch.h"
#include "mc_pckpt.h"
#include "mc_pkeys.h"
#include "mc_proto.h"
#include "mc_pstore.h"

#define RUN1 1111ULL
#define RUN2 2222ULL

static char dir[256], db[300];
static char err[MC_PSTORE_ERR_MAX], why[256];
static struct mc_pstore st;

static void up(void)
{
	snprintf(dir, sizeof(dir), "/tmp/utpbatch-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/db", dir);
	cr_assert_eq(mc_pstore_open(&st, db, "lz4", MC_PSTORE_CREATE, err, sizeof(err)), 0, "%s", err);
}

static void down(void)
{
	mc_pstore_close(&st);
	mc_pckpt_rmtree(dir);
}

TestSuite(batch, .init = up, .fini = down);

/* A packed MCPMessage with `ts` and a payload naming `id`. */
static size_t mcp(uint8_t *buf, uint64_t ts, uint32_t id)
{
	Mcpcore__MCPMessage m = MCPCORE__MCPMESSAGE__INIT;
	uint8_t pl[8];

	memcpy(pl, &id, sizeof(id));
	memcpy(pl + 4, "pl!!", 4);
	m.timestamp = ts;
	m.message_type = "t";
	m.payload.data = pl;
	m.payload.len = sizeof(pl);
	return mcpcore__mcpmessage__pack(&m, buf);
}

static uint64_t count(int cf)
{
	rocksdb_iterator_t *it = mc_pstore_iter(&st, cf);
	uint64_t n = 0;

	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it))
		n++;
	rocksdb_iter_destroy(it);
	return n;
}

/* Offer MCP frame (src, seq) with its own payload buffer (kept alive by caller). */
static enum mc_pbatch_verdict offer(struct mc_pbatch *b, unsigned src, uint64_t seq,
    uint8_t *buf, uint64_t ts)
{
	size_t n = mcp(buf, ts, (uint32_t)seq);

	return mc_pbatch_add(b, NULL, MC_FK_MCP, src, seq, buf, (uint32_t)n, 5000, why, sizeof(why));
}

Test(batch, storable_kinds)
{
	cr_assert(mc_pbatch_storable(MC_FK_MCP));
	cr_assert(mc_pbatch_storable(MC_FK_TRAINING_DATA));
	cr_assert(mc_pbatch_storable(MC_FK_LEARNING_MODEL));
	cr_assert(mc_pbatch_storable(MC_FK_STATE_CHANGES));
	cr_assert(mc_pbatch_storable(30));
	cr_assert(mc_pbatch_storable(39));
	cr_assert_not(mc_pbatch_storable(40));
	cr_assert_not(mc_pbatch_storable(MC_FK_CONTROL));
	cr_assert_not(mc_pbatch_storable(MC_FK_PERSIST_REQUEST));
	cr_assert_not(mc_pbatch_storable(MC_FK_STATE_REPLY));
	cr_assert_not(mc_pbatch_storable(MC_FK_LEARNING_DATA));
}

Test(batch, marks_encode_decode)
{
	uint64_t marks[MC_MAX_SLOTS] = { 0 }, back[MC_MAX_SLOTS], run;
	uint8_t buf[24 + 8 * MC_MAX_SLOTS];
	size_t n;

	marks[6] = 42;
	marks[MC_MAX_SLOTS - 1] = UINT64_MAX;
	n = mc_pbatch_marks_encode(buf, RUN1, marks);
	cr_assert_eq(n, sizeof(buf));
	cr_assert_eq(mc_pbatch_marks_decode(buf, n, &run, back), 0);
	cr_assert_eq(run, RUN1);
	cr_assert_eq(memcmp(marks, back, sizeof(marks)), 0);
	cr_assert_eq(mc_pbatch_marks_decode(buf, n - 1, &run, back), -EINVAL);
	buf[0] ^= 1;
	cr_assert_eq(mc_pbatch_marks_decode(buf, n, &run, back), -EINVAL);
}

Test(batch, a_batch_is_stored_with_its_marks_in_one_write)
{
	struct mc_pbatch b;
	uint8_t bufs[10][64];
	struct mc_pbatch empty;

	cr_assert_eq(mc_pbatch_init(&b, RUN1, 16), 0);
	for (unsigned i = 0; i < 10; i++)
		cr_assert_eq(offer(&b, 6 + i % 2, 1 + i / 2, bufs[i], 0), MC_PB_ADDED);
	cr_assert_eq(b.n, 10);
	cr_assert_eq(count(MC_CF_MESSAGES), 0, "nothing is written before the commit");
	cr_assert_eq(mc_pbatch_commit(&b, &st, true, err, sizeof(err)), 0, "%s", err);
	mc_pbatch_reset(&b);
	cr_assert_eq(b.n, 0);
	cr_assert_eq(b.hwm[6], 5);
	cr_assert_eq(b.hwm[7], 5);
	cr_assert_eq(count(MC_CF_MESSAGES), 10);
	/* a new incarnation of the worker reads the marks back */
	cr_assert_eq(mc_pbatch_init(&empty, RUN1, 16), 0);
	cr_assert_eq(mc_pbatch_load_marks(&empty, &st, err, sizeof(err)), 1);
	cr_assert_eq(empty.hwm[6], 5);
	cr_assert_eq(empty.pend[7], 5);
	mc_pbatch_free(&empty);
	mc_pbatch_free(&b);
}

Test(batch, replays_of_durable_frames_are_dropped_exactly_once_stored)
{
	struct mc_pbatch b, again;
	uint8_t bufs[8][64];

	cr_assert_eq(mc_pbatch_init(&b, RUN1, 16), 0);
	for (unsigned i = 0; i < 4; i++)
		cr_assert_eq(offer(&b, 6, i + 1, bufs[i], 0), MC_PB_ADDED);
	cr_assert_eq(mc_pbatch_commit(&b, &st, true, err, sizeof(err)), 0, "%s", err);
	/* the worker dies here: written, not released.  The next one replays 1..4 */
	mc_pbatch_free(&b);
	cr_assert_eq(mc_pbatch_init(&again, RUN1, 16), 0);
	cr_assert_eq(mc_pbatch_load_marks(&again, &st, err, sizeof(err)), 1);
	for (unsigned i = 0; i < 4; i++)
		cr_assert_eq(offer(&again, 6, i + 1, bufs[i], 0), MC_PB_DUPLICATE);
	for (unsigned i = 4; i < 8; i++)
		cr_assert_eq(offer(&again, 6, i + 1, bufs[i], 0), MC_PB_ADDED);
	/* within one batch too: a seq already pending is a duplicate */
	cr_assert_eq(offer(&again, 6, 8, bufs[7], 0), MC_PB_DUPLICATE);
	cr_assert_eq(mc_pbatch_commit(&again, &st, true, err, sizeof(err)), 0, "%s", err);
	mc_pbatch_reset(&again);
	/* receipt-time keys (timestamp 0): a second copy would be a second key */
	cr_assert_eq(count(MC_CF_MESSAGES), 8);
	mc_pbatch_free(&again);
}

Test(batch, frames_taken_before_the_marks_are_filtered_after)
{
	struct mc_pbatch b, early;
	uint8_t bufs[6][64];

	cr_assert_eq(mc_pbatch_init(&b, RUN1, 16), 0);
	for (unsigned i = 0; i < 3; i++)
		offer(&b, 6, i + 1, bufs[i], 0);
	cr_assert_eq(mc_pbatch_commit(&b, &st, true, err, sizeof(err)), 0);
	mc_pbatch_free(&b);
	/* a restarted worker takes the journal replay while its store is still opening */
	cr_assert_eq(mc_pbatch_init(&early, RUN1, 16), 0);
	for (unsigned i = 0; i < 6; i++)
		cr_assert_eq(offer(&early, 6, i + 1, bufs[i], 0), MC_PB_ADDED);
	cr_assert_eq(mc_pbatch_load_marks(&early, &st, err, sizeof(err)), 1);
	cr_assert_eq(mc_pbatch_filter(&early, NULL, NULL), 3);
	cr_assert_eq(early.n, 3);
	cr_assert_eq(early.items[0].seq, 4);
	cr_assert_eq(early.items[2].seq, 6);
	cr_assert_eq(early.pend[6], 6);
	cr_assert_eq(mc_pbatch_commit(&early, &st, true, err, sizeof(err)), 0);
	mc_pbatch_reset(&early);
	cr_assert_eq(count(MC_CF_MESSAGES), 6);
	mc_pbatch_free(&early);
}

static int n_released;

static void count_release(void *ctx, struct mc_msg *m)
{
	(void)ctx;
	(void)m;
	n_released++;
}

Test(batch, filter_hands_each_dropped_frame_to_release)
{
	struct mc_pbatch b;
	uint8_t bufs[4][64];

	cr_assert_eq(mc_pbatch_init(&b, RUN1, 8), 0);
	for (unsigned i = 0; i < 4; i++)
		offer(&b, 6, i + 1, bufs[i], 0);
	b.hwm[6] = 2;
	n_released = 0;
	cr_assert_eq(mc_pbatch_filter(&b, count_release, NULL), 2);
	cr_assert_eq(n_released, 2);
	cr_assert_eq(b.n, 2);
	mc_pbatch_free(&b);
}

Test(batch, marks_of_another_run_are_ignored)
{
	struct mc_pbatch b, next;
	uint8_t bufs[3][64];

	cr_assert_eq(mc_pbatch_init(&b, RUN1, 8), 0);
	for (unsigned i = 0; i < 3; i++)
		offer(&b, 6, 100 + i, bufs[i], 0);
	cr_assert_eq(mc_pbatch_commit(&b, &st, true, err, sizeof(err)), 0);
	mc_pbatch_free(&b);
	/* the runtime restarted: a new segment, sequence numbers from 1 again */
	cr_assert_eq(mc_pbatch_init(&next, RUN2, 8), 0);
	cr_assert_eq(mc_pbatch_load_marks(&next, &st, err, sizeof(err)), 0);
	cr_assert_eq(next.hwm[6], 0);
	cr_assert_eq(offer(&next, 6, 100, bufs[0], 0), MC_PB_ADDED,
	    "seq 100 of a new run is a new frame");
	cr_assert_eq(mc_pbatch_commit(&next, &st, true, err, sizeof(err)), 0);
	mc_pbatch_reset(&next);
	cr_assert_eq(count(MC_CF_MESSAGES), 4, "both runs' seq 100 are kept: the run is in the key");
	mc_pbatch_free(&next);
}

Test(batch, failed_commit_keeps_the_batch_and_retries_into_a_reopened_store)
{
	struct mc_pbatch b;
	uint8_t bufs[4][64];
	struct mc_pstore closed;

	cr_assert_eq(mc_pbatch_init(&b, RUN1, 8), 0);
	for (unsigned i = 0; i < 3; i++)
		offer(&b, 6, i + 1, bufs[i], 1000 + i);
	memset(&closed, 0, sizeof(closed));
	cr_assert_eq(mc_pbatch_commit(&b, &closed, true, err, sizeof(err)), -EBADF);
	cr_assert_eq(b.n, 3);
	cr_assert_eq(b.hwm[6], 0, "nothing durable, marks unchanged");
	/* more arrive meanwhile; then the store comes back */
	offer(&b, 6, 4, bufs[3], 1003);
	mc_pstore_close(&st);
	cr_assert_eq(mc_pstore_open(&st, db, "lz4", 0, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(mc_pbatch_commit(&b, &st, true, err, sizeof(err)), 0, "%s", err);
	/* committing the same batch twice rewrites the same keys: no second copy */
	cr_assert_eq(mc_pbatch_commit(&b, &st, true, err, sizeof(err)), 0, "%s", err);
	mc_pbatch_reset(&b);
	cr_assert_eq(count(MC_CF_MESSAGES), 4);
	cr_assert_eq(b.hwm[6], 4);
	mc_pbatch_free(&b);
}

Test(batch, message_time_is_the_key_time)
{
	struct mc_pbatch b;
	uint8_t b1[64], b2[64];
	rocksdb_iterator_t *it;
	struct mc_pkey_time k;
	size_t klen;
	const char *key;

	cr_assert_eq(mc_pbatch_init(&b, RUN1, 8), 0);
	offer(&b, 6, 1, b1, 77777);     /* stamped */
	offer(&b, 6, 2, b2, 0);         /* not: the time it was taken (5000 here) */
	cr_assert_eq(mc_pbatch_commit(&b, &st, false, err, sizeof(err)), 0);
	mc_pbatch_reset(&b);
	it = mc_pstore_iter(&st, MC_CF_MESSAGES);
	rocksdb_iter_seek_to_first(it);
	key = rocksdb_iter_key(it, &klen);
	cr_assert_eq(mc_pkey_time_decode((const uint8_t *)key, klen, &k), 0);
	cr_assert_eq(k.time_ns, 5000);
	cr_assert_eq(k.seq, 2);
	cr_assert_eq(k.run, RUN1);
	cr_assert_eq(k.slot, 6);
	cr_assert_eq(k.kind, MC_FK_MCP);
	rocksdb_iter_next(it);
	key = rocksdb_iter_key(it, &klen);
	mc_pkey_time_decode((const uint8_t *)key, klen, &k);
	cr_assert_eq(k.time_ns, 77777);
	rocksdb_iter_destroy(it);
	mc_pbatch_free(&b);
}

Test(batch, each_kind_goes_to_its_family)
{
	Mcpcore__TrainingData td = MCPCORE__TRAINING_DATA__INIT;
	Mcpcore__LearningModel lm = MCPCORE__LEARNING_MODEL__INIT;
	uint8_t tb[128], mb[128], xb[8] = { 0x08, 0x01 }, mcpb[64];
	struct mc_pbatch b;
	size_t tn, mn;
	char *val;
	size_t vlen;
	uint8_t key[64];
	int klen;

	td.dataset = "ds";
	td.timestamp = 9;
	tn = mcpcore__training_data__pack(&td, tb);
	lm.model_id = "net";
	lm.version = 3;
	mn = mcpcore__learning_model__pack(&lm, mb);
	cr_assert_eq(mc_pbatch_init(&b, RUN1, 8), 0);
	cr_assert_eq(offer(&b, 6, 1, mcpb, 1), MC_PB_ADDED);
	cr_assert_eq(mc_pbatch_add(&b, NULL, MC_FK_TRAINING_DATA, 6, 2, tb, (uint32_t)tn, 1, why,
	    sizeof(why)), MC_PB_ADDED);
	cr_assert_eq(mc_pbatch_add(&b, NULL, MC_FK_LEARNING_MODEL, 6, 3, mb, (uint32_t)mn, 1, why,
	    sizeof(why)), MC_PB_ADDED);
	cr_assert_eq(mc_pbatch_add(&b, NULL, 33, 3, 1, xb, 2, 1, why, sizeof(why)), MC_PB_ADDED);
	cr_assert_eq(mc_pbatch_add(&b, NULL, MC_FK_CONTROL, 6, 4, xb, 2, 1, why, sizeof(why)),
	    MC_PB_NOT_STORED);
	cr_assert_eq(mc_pbatch_commit(&b, &st, true, err, sizeof(err)), 0);
	mc_pbatch_reset(&b);
	cr_assert_eq(count(MC_CF_MESSAGES), 1);
	cr_assert_eq(count(MC_CF_TRAINING), 1);
	cr_assert_eq(count(MC_CF_METRICS), 1);
	cr_assert_eq(count(MC_CF_MODELS), 1);
	klen = mc_pkey_model_encode(key, sizeof(key), "net", 3, 3);
	cr_assert_eq(mc_pstore_get(&st, MC_CF_MODELS, key, (size_t)klen, &val, &vlen, err,
	    sizeof(err)), 1);
	cr_assert_eq(vlen, mn);
	cr_assert_eq(memcmp(val, mb, mn), 0, "values are the frame's protobuf bytes");
	free(val);
	mc_pbatch_free(&b);
}

Test(batch, state_changes_put_and_delete_in_order)
{
	Mcpcore__StateChange c[4], *cp[4];
	Mcpcore__StateChangeBatch sb = MCPCORE__STATE_CHANGE_BATCH__INIT;
	static uint8_t buf[1024];
	struct mc_pbatch b;
	uint8_t key[64];
	char *val;
	size_t n, vlen;
	int klen;

	for (int i = 0; i < 4; i++) {
		mcpcore__state_change__init(&c[i]);
		cp[i] = &c[i];
		c[i].seq = (uint64_t)i + 1;
		c[i].ns.data = (uint8_t *)"ns";
		c[i].ns.len = 2;
		c[i].key.data = (uint8_t *)(i < 3 ? "k1" : "k2");
		c[i].key.len = 2;
		c[i].value.data = (uint8_t *)"v";
		c[i].value.len = 1;
		c[i].version = (uint64_t)i + 1;
	}
	c[1].op = MCPCORE__STATE_CHANGE__OP__DELETE;    /* k1: put, delete, put again */
	sb.changes = cp;
	sb.n_changes = 4;
	n = mcpcore__state_change_batch__pack(&sb, buf);
	cr_assert_eq(mc_pbatch_init(&b, RUN1, 8), 0);
	cr_assert_eq(mc_pbatch_add(&b, NULL, MC_FK_STATE_CHANGES, 1, 1, buf, (uint32_t)n, 1, why,
	    sizeof(why)), MC_PB_ADDED);
	cr_assert_eq(mc_pbatch_commit(&b, &st, true, err, sizeof(err)), 0, "%s", err);
	mc_pbatch_reset(&b);
	cr_assert_eq(count(MC_CF_STATE), 2);
	klen = mc_pkey_state_encode(key, sizeof(key), "ns", 2, "k1", 2);
	cr_assert_eq(mc_pstore_get(&st, MC_CF_STATE, key, (size_t)klen, &val, &vlen, err,
	    sizeof(err)), 1);
	{
		Mcpcore__StateChange *got = mcpcore__state_change__unpack(NULL, vlen, (uint8_t *)val);

		cr_assert_not_null(got);
		cr_assert_eq(got->version, 3, "the last change of the key wins");
		mcpcore__state_change__free_unpacked(got, NULL);
	}
	free(val);
	/* an EXPIRE removes it */
	c[0].op = MCPCORE__STATE_CHANGE__OP__EXPIRE;
	c[0].seq = 5;
	sb.n_changes = 1;
	n = mcpcore__state_change_batch__pack(&sb, buf);
	cr_assert_eq(mc_pbatch_add(&b, NULL, MC_FK_STATE_CHANGES, 1, 2, buf, (uint32_t)n, 1, why,
	    sizeof(why)), MC_PB_ADDED);
	cr_assert_eq(mc_pbatch_commit(&b, &st, true, err, sizeof(err)), 0);
	mc_pbatch_reset(&b);
	cr_assert_eq(count(MC_CF_STATE), 1);
	mc_pbatch_free(&b);
}

Test(batch, malformed_frames_are_rejected_and_passed_over)
{
	Mcpcore__LearningModel lm = MCPCORE__LEARNING_MODEL__INIT;
	Mcpcore__StateChange c = MCPCORE__STATE_CHANGE__INIT, *cp = &c;
	Mcpcore__StateChangeBatch sb = MCPCORE__STATE_CHANGE_BATCH__INIT;
	const uint8_t junk[] = { 0x0f, 0x01 };
	uint8_t buf[128], ok[64];
	struct mc_pbatch b;
	size_t n;

	cr_assert_eq(mc_pbatch_init(&b, RUN1, 8), 0);
	cr_assert_eq(mc_pbatch_add(&b, NULL, MC_FK_MCP, 6, 1, junk, 2, 1, why, sizeof(why)),
	    MC_PB_REJECTED);
	cr_assert(strstr(why, "not a protobuf") != NULL, "%s", why);
	n = mcpcore__learning_model__pack(&lm, buf);     /* no model_id */
	cr_assert_eq(mc_pbatch_add(&b, NULL, MC_FK_LEARNING_MODEL, 6, 2, buf, (uint32_t)n, 1,
	    why, sizeof(why)), MC_PB_REJECTED);
	c.seq = 1;      /* empty namespace and key */
	sb.changes = &cp;
	sb.n_changes = 1;
	n = mcpcore__state_change_batch__pack(&sb, buf);
	cr_assert_eq(mc_pbatch_add(&b, NULL, MC_FK_STATE_CHANGES, 6, 3, buf, (uint32_t)n, 1, why,
	    sizeof(why)), MC_PB_REJECTED);
	cr_assert_eq(b.n, 0);
	cr_assert_eq(b.pend[6], 3, "rejected frames are finished work: the mark passes them");
	cr_assert_eq(mc_pbatch_add(&b, NULL, MC_FK_MCP, 99, 1, junk, 2, 1, why, sizeof(why)),
	    MC_PB_REJECTED, "slot out of range");
	cr_assert_eq(offer(&b, 6, 4, ok, 0), MC_PB_ADDED);
	mc_pbatch_free(&b);
}

Test(batch, full_batch_says_so_and_takes_nothing)
{
	struct mc_pbatch b;
	uint8_t bufs[3][64];

	cr_assert_eq(mc_pbatch_init(&b, RUN1, 2), 0);
	cr_assert_eq(offer(&b, 6, 1, bufs[0], 0), MC_PB_ADDED);
	cr_assert_eq(offer(&b, 6, 2, bufs[1], 0), MC_PB_ADDED);
	cr_assert_eq(offer(&b, 6, 3, bufs[2], 0), MC_PB_FULL);
	cr_assert_eq(b.pend[6], 2, "a refused frame leaves the marks alone");
	cr_assert_eq(mc_pbatch_commit(&b, &st, true, err, sizeof(err)), 0);
	mc_pbatch_reset(&b);
	cr_assert_eq(offer(&b, 6, 3, bufs[2], 0), MC_PB_ADDED);
	mc_pbatch_free(&b);
}
