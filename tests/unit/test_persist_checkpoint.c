/*
 * test_persist_checkpoint.c - unit tests for checkpoint naming, writing,
 * pruning and offline restore (workers/persistence/checkpoint.c, contract
 * in mc_pckpt.h).  Works in a mkdtemp directory under /tmp.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mc_pckpt.h"
#include "mc_pstore.h"

static char dir[256], db[300], err[1024];

static void up(void)
{
	snprintf(dir, sizeof(dir), "/tmp/utpckpt-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/data", dir);
}

static void down(void)
{
	mc_pckpt_rmtree(dir);
}

TestSuite(ckpt, .init = up, .fini = down);

static int entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void put(struct mc_pstore *st, const char *k, const char *v)
{
	char *rerr = NULL;

	rocksdb_put_cf(st->db, st->wo_sync, st->cf[MC_CF_MESSAGES], k, strlen(k), v, strlen(v),
	    &rerr);
	cr_assert_null(rerr);
}

static int has(const char *path, const char *k)
{
	struct mc_pstore st;
	char *v;
	size_t vl;
	int rc;

	cr_assert_eq(mc_pstore_open(&st, path, "lz4", MC_PSTORE_READONLY, err, sizeof(err)), 0,
	    "%s", err);
	rc = mc_pstore_get(&st, MC_CF_MESSAGES, k, strlen(k), &v, &vl, err, sizeof(err));
	free(v);
	mc_pstore_close(&st);
	return rc == 1;
}

Test(ckpt, directory_beside_the_store)
{
	char out[256];

	cr_assert_eq(mc_pckpt_dir("/data/rocksdb", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "/data/checkpoints");
	cr_assert_eq(mc_pckpt_dir("/data/rocksdb///", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "/data/checkpoints");
	cr_assert_eq(mc_pckpt_dir("/rocksdb", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "/checkpoints");
	cr_assert_eq(mc_pckpt_dir("data", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "./checkpoints");
	cr_assert_eq(mc_pckpt_dir("/a/b", out, 5), -ENAMETOOLONG);
}

Test(ckpt, names_sort_by_time_and_are_recognised)
{
	char a[32], b[32];

	mc_pckpt_name(1769313790123456789ULL, a, sizeof(a));
	cr_assert_str_eq(a, "20260125T040310.123456Z");
	cr_assert_eq(strlen(a), MC_PCKPT_NAME_LEN);
	mc_pckpt_name(1769313790123457789ULL, b, sizeof(b));
	cr_assert_lt(strcmp(a, b), 0);
	cr_assert(mc_pckpt_is_name(a));
	cr_assert_not(mc_pckpt_is_name("20260125T040310.123456"));
	cr_assert_not(mc_pckpt_is_name("2026012xT040310.123456Z"));
	cr_assert_not(mc_pckpt_is_name("important-backup"));
	cr_assert_not(mc_pckpt_is_name(""));
}

Test(ckpt, take_keeps_the_newest_and_nothing_else_is_touched)
{
	struct mc_pstore st;
	char path[4096], ck[300], other[400];

	cr_assert_eq(mc_pstore_open(&st, db, "lz4", MC_PSTORE_CREATE, err, sizeof(err)), 0, "%s", err);
	snprintf(ck, sizeof(ck), "%s/checkpoints", dir);
	cr_assert_eq(mc_pckpt_mkdirs(ck), 0);
	snprintf(other, sizeof(other), "%s/my-own-backup", ck);
	cr_assert_eq(mkdir(other, 0755), 0);
	for (int i = 0; i < 4; i++) {
		char k[8];

		snprintf(k, sizeof(k), "k%d", i);
		put(&st, k, "v");
		cr_assert_eq(mc_pckpt_take(&st, db, 1769313790000000000ULL + (uint64_t)i * 1000000000ULL,
		    2, path, sizeof(path), err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(strncmp(path, ck, strlen(ck)), 0);
	}
	cr_assert_eq(entries(ck), 3, "two checkpoints and the foreign directory");
	cr_assert_eq(access(other, F_OK), 0);
	cr_assert(has(path, "k3"));
	mc_pstore_close(&st);
	/* a checkpoint interrupted by a crash: RocksDB's "<name>.tmp" */
	snprintf(other, sizeof(other), "%s/20260101T000000.000000Z.tmp", ck);
	cr_assert_eq(mkdir(other, 0755), 0);
	cr_assert_eq(mc_pckpt_prune(ck, 1), 1);
	cr_assert_eq(access(other, F_OK), -1, "the partial checkpoint is removed");
	cr_assert_eq(entries(ck), 2);
}

Test(ckpt, same_name_twice_fails_and_leaves_no_half_checkpoint)
{
	struct mc_pstore st;
	char path[4096];

	cr_assert_eq(mc_pstore_open(&st, db, "lz4", MC_PSTORE_CREATE, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(mc_pckpt_take(&st, db, 5000000000ULL, 5, path, sizeof(path), err,
	    sizeof(err)), 0);
	cr_assert_lt(mc_pckpt_take(&st, db, 5000000000ULL, 5, path, sizeof(path), err,
	    sizeof(err)), 0);
	mc_pstore_close(&st);
}

Test(ckpt, restore_moves_the_store_aside_and_copies_the_checkpoint)
{
	struct mc_pstore st;
	char path[4096], aside[4200], used[4200], name[64];

	cr_assert_eq(mc_pstore_open(&st, db, "lz4", MC_PSTORE_CREATE, err, sizeof(err)), 0, "%s", err);
	put(&st, "before", "1");
	cr_assert_eq(mc_pckpt_take(&st, db, 7000000000ULL, 5, path, sizeof(path), err,
	    sizeof(err)), 0);
	put(&st, "after", "2");
	mc_pstore_close(&st);
	snprintf(name, sizeof(name), "%s", strrchr(path, '/') + 1);
	cr_assert_eq(mc_pckpt_restore(name, db, aside, sizeof(aside), used, sizeof(used), err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(used, path);
	cr_assert(strstr(aside, "/data.before-restore-") != NULL, "%s", aside);
	cr_assert(has(db, "before"));
	cr_assert_not(has(db, "after"));
	cr_assert(has(aside, "after"), "the previous store is kept whole");
	cr_assert(has(path, "before"), "the checkpoint itself is untouched");
	/* the restored store opens read-write (files copied, not linked) */
	cr_assert_eq(mc_pstore_open(&st, db, "lz4", 0, err, sizeof(err)), 0, "%s", err);
	put(&st, "new", "3");
	mc_pstore_close(&st);
	cr_assert_not(has(path, "new"));
}

Test(ckpt, restore_refuses_what_is_not_a_store)
{
	char aside[4200], used[4200], junk[300];

	cr_assert_eq(mc_pckpt_restore("nope", db, aside, sizeof(aside), used, sizeof(used), err,
	    sizeof(err)), -ENOENT);
	snprintf(junk, sizeof(junk), "%s/junk", dir);
	cr_assert_eq(mkdir(junk, 0755), 0);
	cr_assert_lt(mc_pckpt_restore(junk, db, aside, sizeof(aside), used, sizeof(used), err,
	    sizeof(err)), 0);
	cr_assert(strstr(err, "not a usable mcpcore checkpoint") != NULL, "%s", err);
	cr_assert_str_eq(aside, "");
}

Test(ckpt, mkdirs_and_rmtree)
{
	char deep[400];

	snprintf(deep, sizeof(deep), "%s/a/b/c", dir);
	cr_assert_eq(mc_pckpt_mkdirs(deep), 0);
	cr_assert_eq(mc_pckpt_mkdirs(deep), 0, "idempotent");
	snprintf(deep, sizeof(deep), "%s/a", dir);
	cr_assert_eq(mc_pckpt_rmtree(deep), 0);
	cr_assert_eq(access(deep, F_OK), -1);
	cr_assert_lt(mc_pckpt_rmtree(deep), 0);
}
