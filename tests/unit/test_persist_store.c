/*
 * test_persist_store.c - unit tests for the RocksDB store of the
 * persistence worker (workers/persistence/store.c, contract in
 * mc_pstore.h): families, format marker, read-only opens, locks,
 * corruption, error classes, checkpoints, the background threads' policy.
 *
 * Each test works in its own mkdtemp directory under /tmp, removed after.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mc_pckpt.h"
#include "mc_pstore.h"

static char dir[256], db[300];
static char err[MC_PSTORE_ERR_MAX];

static void up(void)
{
	snprintf(dir, sizeof(dir), "/tmp/utpstore-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/db", dir);
}

static void down(void)
{
	mc_pckpt_rmtree(dir);
}

TestSuite(store, .init = up, .fini = down);

static void put(struct mc_pstore *st, int cf, const char *k, const char *v)
{
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();

	rocksdb_writebatch_put_cf(wb, st->cf[cf], k, strlen(k), v, strlen(v));
	cr_assert_eq(mc_pstore_write(st, wb, true, err, sizeof(err)), 0, "%s", err);
	rocksdb_writebatch_destroy(wb);
}

static void expect(struct mc_pstore *st, int cf, const char *k, const char *v)
{
	char *val;
	size_t vlen;
	int rc = mc_pstore_get(st, cf, k, strlen(k), &val, &vlen, err, sizeof(err));

	if (v == NULL) {
		cr_assert_eq(rc, 0, "%s should be absent", k);
		return;
	}
	cr_assert_eq(rc, 1, "%s missing (%d %s)", k, rc, err);
	cr_assert_eq(vlen, strlen(v));
	cr_assert_eq(memcmp(val, v, vlen), 0);
	free(val);
}

Test(store, family_names)
{
	cr_assert_str_eq(mc_pstore_cf_name(MC_CF_MESSAGES), "messages");
	cr_assert_str_eq(mc_pstore_cf_name(MC_CF_STATE), "state");
	cr_assert_null(mc_pstore_cf_name(MC_CF_COUNT));
	cr_assert_eq(mc_pstore_cf_by_name("models"), MC_CF_MODELS);
	cr_assert_eq(mc_pstore_cf_by_name("default"), MC_CF_DEFAULT);
	cr_assert_eq(mc_pstore_cf_by_name("nope"), -1);
	cr_assert_eq(mc_pstore_cf_by_name(NULL), -1);
}

Test(store, create_write_reopen_with_every_compression)
{
	static const char *const comp[] = { "lz4", "zstd", "none" };

	for (int i = 0; i < 3; i++) {
		struct mc_pstore st;
		char path[400];

		snprintf(path, sizeof(path), "%s/db-%s", dir, comp[i]);
		cr_assert_eq(mc_pstore_open(&st, path, comp[i], 0, err, sizeof(err)), -ENOENT,
		    "without CREATE a missing store is -ENOENT");
		cr_assert_eq(mc_pstore_open(&st, path, comp[i], MC_PSTORE_CREATE, err, sizeof(err)),
		    0, "%s: %s", comp[i], err);
		for (int c = 0; c < MC_CF_COUNT; c++)
			cr_assert_not_null(st.cf[c], "family %s not opened", mc_pstore_cf_name(c));
		put(&st, MC_CF_MESSAGES, "k", comp[i]);
		mc_pstore_close(&st);
		mc_pstore_close(&st);       /* idempotent */
		cr_assert_eq(mc_pstore_open(&st, path, comp[i], 0, err, sizeof(err)), 0, "%s", err);
		expect(&st, MC_CF_MESSAGES, "k", comp[i]);
		expect(&st, MC_CF_DEFAULT, MC_PSTORE_KEY_FORMAT, MC_PSTORE_FORMAT);
		mc_pstore_close(&st);
	}
}

Test(store, readonly_open_sees_data_while_a_writer_holds_the_lock)
{
	struct mc_pstore w, r, r2;

	cr_assert_eq(mc_pstore_open(&w, db, "lz4", MC_PSTORE_CREATE, err, sizeof(err)), 0, "%s", err);
	put(&w, MC_CF_TRAINING, "a", "1");
	cr_assert_eq(mc_pstore_open(&r, db, "lz4", MC_PSTORE_READONLY, err, sizeof(err)), 0,
	    "%s", err);
	expect(&r, MC_CF_TRAINING, "a", "1");
	/* a second writer: the lock, classed -EWOULDBLOCK */
	cr_assert_eq(mc_pstore_open(&r2, db, "lz4", 0, err, sizeof(err)), -EWOULDBLOCK, "%s", err);
	cr_assert(strstr(err, "lock") != NULL || strstr(err, "LOCK") != NULL, "%s", err);
	/* writing through a read-only handle fails cleanly */
	{
		rocksdb_writebatch_t *wb = rocksdb_writebatch_create();

		rocksdb_writebatch_put_cf(wb, r.cf[MC_CF_TRAINING], "b", 1, "2", 1);
		cr_assert_lt(mc_pstore_write(&r, wb, false, err, sizeof(err)), 0);
		rocksdb_writebatch_destroy(wb);
	}
	mc_pstore_close(&r);
	mc_pstore_close(&w);
}

Test(store, readonly_open_of_nothing_is_enoent)
{
	struct mc_pstore r;

	cr_assert_eq(mc_pstore_open(&r, db, "lz4", MC_PSTORE_READONLY | MC_PSTORE_CREATE, err,
	    sizeof(err)), -ENOENT);
	cr_assert_null(r.db);
	cr_assert_eq(access(db, F_OK), -1, "a read-only open must not create anything");
}

Test(store, foreign_families_are_opened_too)
{
	struct mc_pstore st;
	rocksdb_options_t *o = rocksdb_options_create();
	char *rerr = NULL;
	rocksdb_t *raw;
	rocksdb_column_family_handle_t *h;

	rocksdb_options_set_create_if_missing(o, 1);
	raw = rocksdb_open(o, db, &rerr);
	cr_assert_null(rerr, "%s", rerr);
	h = rocksdb_create_column_family(raw, o, "someone_elses", &rerr);
	cr_assert_null(rerr);
	rocksdb_column_family_handle_destroy(h);
	rocksdb_close(raw);
	rocksdb_options_destroy(o);
	cr_assert_eq(mc_pstore_open(&st, db, "lz4", 0, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(st.nall, MC_CF_COUNT + 1);
	mc_pstore_close(&st);
}

Test(store, other_format_is_incompatible)
{
	struct mc_pstore st;

	cr_assert_eq(mc_pstore_open(&st, db, "lz4", MC_PSTORE_CREATE, err, sizeof(err)), 0, "%s", err);
	put(&st, MC_CF_DEFAULT, MC_PSTORE_KEY_FORMAT, "99");
	mc_pstore_close(&st);
	cr_assert_eq(mc_pstore_open(&st, db, "lz4", 0, err, sizeof(err)), -EPROTO);
	cr_assert(strstr(err, "format '99'") != NULL, "%s", err);
	cr_assert_null(st.db);
	cr_assert_eq(mc_pstore_open(&st, db, "lz4", MC_PSTORE_READONLY, err, sizeof(err)), -EPROTO);
}

Test(store, corrupt_current_is_euclean)
{
	struct mc_pstore st;
	char cur[400];
	FILE *f;

	cr_assert_eq(mc_pstore_open(&st, db, "lz4", MC_PSTORE_CREATE, err, sizeof(err)), 0, "%s", err);
	mc_pstore_close(&st);
	snprintf(cur, sizeof(cur), "%s/CURRENT", db);
	f = fopen(cur, "w");
	cr_assert_not_null(f);
	fputs("garbage", f);
	fclose(f);
	cr_assert_eq(mc_pstore_open(&st, db, "lz4", MC_PSTORE_CREATE, err, sizeof(err)), -EUCLEAN,
	    "%s", err);
	cr_assert(strstr(err, "Corruption") != NULL, "%s", err);
}

Test(store, classify_rocksdb_texts)
{
	cr_assert_eq(mc_pstore_classify("IO error: No space left on device: While appending "
	    "to file: /x/000004.log: No space left on device"), -ENOSPC);
	cr_assert_eq(mc_pstore_classify("IO error: While open a file for appending: /x/1.log: "
	    "Read-only file system"), -EROFS);
	cr_assert_eq(mc_pstore_classify("IO error: While mkdir if missing: /x: Permission denied"),
	    -EACCES);
	cr_assert_eq(mc_pstore_classify("IO error: While lock file: /x/LOCK: Resource temporarily "
	    "unavailable"), -EWOULDBLOCK);
	cr_assert_eq(mc_pstore_classify("Invalid argument: /x: does not exist (create_if_missing "
	    "is false)"), -ENOENT);
	cr_assert_eq(mc_pstore_classify("IO error: No such file or directory: While opening a file "
	    "for sequentially reading: /x/CURRENT: No such file or directory"), -ENOENT);
	cr_assert_eq(mc_pstore_classify("Corruption: CURRENT file does not end with newline"),
	    -EUCLEAN);
	cr_assert_eq(mc_pstore_classify("Invalid argument: Column family not found: x"), -EINVAL);
	cr_assert_eq(mc_pstore_classify("Not implemented: Unsupported compression method"),
	    -EPROTO);
	cr_assert_eq(mc_pstore_classify("IO error: something else"), -EIO);
	cr_assert_eq(mc_pstore_classify("strange"), -EIO);
	cr_assert_eq(mc_pstore_classify(NULL), -EIO);
}

Test(store, checkpoint_is_a_readable_store)
{
	struct mc_pstore st, ck;
	char path[400];

	cr_assert_eq(mc_pstore_open(&st, db, "lz4", MC_PSTORE_CREATE, err, sizeof(err)), 0, "%s", err);
	put(&st, MC_CF_MODELS, "m", "v1");
	snprintf(path, sizeof(path), "%s/ck", dir);
	cr_assert_eq(mc_pstore_checkpoint(&st, path, err, sizeof(err)), 0, "%s", err);
	put(&st, MC_CF_MODELS, "m", "v2");
	/* the target must not exist yet */
	cr_assert_lt(mc_pstore_checkpoint(&st, path, err, sizeof(err)), 0);
	mc_pstore_close(&st);
	cr_assert_eq(mc_pstore_open(&ck, path, "lz4", MC_PSTORE_READONLY, err, sizeof(err)), 0,
	    "%s", err);
	expect(&ck, MC_CF_MODELS, "m", "v1");
	mc_pstore_close(&ck);
}

Test(store, closed_store_operations_fail)
{
	struct mc_pstore st;
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	char *v;
	size_t vl;

	memset(&st, 0, sizeof(st));
	cr_assert_eq(mc_pstore_write(&st, wb, true, err, sizeof(err)), -EBADF);
	cr_assert_eq(mc_pstore_get(&st, MC_CF_DEFAULT, "k", 1, &v, &vl, err, sizeof(err)), -EBADF);
	cr_assert_null(mc_pstore_iter(&st, MC_CF_MESSAGES));
	cr_assert_eq(mc_pstore_checkpoint(&st, "/nonexistent/x", err, sizeof(err)), -EBADF);
	cr_assert_eq(mc_pstore_property(&st, "rocksdb.cur-size-all-mem-tables"), 0);
	rocksdb_writebatch_destroy(wb);
}

Test(store, property_reports_memtables)
{
	struct mc_pstore st;

	cr_assert_eq(mc_pstore_open(&st, db, "lz4", MC_PSTORE_CREATE, err, sizeof(err)), 0, "%s", err);
	put(&st, MC_CF_MESSAGES, "k", "some value");
	cr_assert_gt(mc_pstore_property(&st, "rocksdb.cur-size-all-mem-tables"), 0);
	mc_pstore_close(&st);
}

/* The policy of each of this process's threads whose name starts with
 * "rocksdb:" (RocksDB names its pool threads so); returns how many. */
static int rocksdb_thread_policies(int *policies, int max)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)) != NULL && n < max) {
		char path[300], comm[64] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		if (fgets(comm, sizeof(comm), f) != NULL && strncmp(comm, "rocksdb:", 8) == 0)
			policies[n++] = sched_getscheduler(atoi(e->d_name));
		fclose(f);
	}
	closedir(d);
	return n;
}

/* Flushes and compactions use the time requests leave idle, and the
 * thread that opened the store keeps its own policy. */
Test(store, flush_and_compaction_threads_run_sched_idle)
{
	struct mc_pstore st;
	int pol[16], n;

	cr_assert_eq(sched_setscheduler(0, SCHED_BATCH, &(struct sched_param){ 0 }), 0);
	cr_assert_eq(mc_pstore_open(&st, db, "lz4", MC_PSTORE_CREATE, err, sizeof(err)), 0, "%s", err);
	put(&st, MC_CF_MESSAGES, "k", "v");
	n = rocksdb_thread_policies(pol, 16);
	cr_assert_geq(n, 2, "the low and high pools have threads (%d found)", n);
	for (int i = 0; i < n; i++)
		cr_assert_eq(pol[i], SCHED_IDLE, "rocksdb thread %d has policy %d", i, pol[i]);
	cr_assert_eq(sched_getscheduler(0), SCHED_BATCH, "the opener's policy is put back");
	mc_pstore_close(&st);
}
