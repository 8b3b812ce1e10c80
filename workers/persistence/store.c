/*
 * store.c - the RocksDB store of the persistence worker (contract in
 * mc_pstore.h).
 *
 * Options, and why:
 *   - WAL always on; sync per write is the caller's choice (group commit:
 *     one fdatasync per batch of frames).
 *   - 32 MiB memtables and at most 128 MiB of WAL: a restarted worker
 *     replays at most that much before it is back, which keeps restarts
 *     after kill -9 in the sub-second range.
 *   - compression from [persistence] compression for every family.
 *   - the info LOG rotates at 8 MiB, 4 files kept, and holds only FATAL
 *     lines (see mc_pstore_options: a full disk must not abort us).
 *   - flushes and compactions run on SCHED_IDLE threads (see
 *     mc_pstore_parallelism): they use the time requests leave idle.
 * The same options are written by RocksDB into its OPTIONS file, which is
 * what lets `ldb --db=DIR` open the database without being told them.
 */
#define _GNU_SOURCE     /* SCHED_IDLE */
#include "mc_pstore.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mc_pstore_names[MC_CF_COUNT] = {
	"default", "messages", "training", "models", "metrics", "state",
};

const char *mc_pstore_cf_name(int cf)
{
	return cf >= 0 && cf < MC_CF_COUNT ? mc_pstore_names[cf] : NULL;
}

int mc_pstore_cf_by_name(const char *name)
{
	for (int i = 0; i < MC_CF_COUNT; i++)
		if (name != NULL && strcmp(name, mc_pstore_names[i]) == 0)
			return i;
	return -1;
}

int mc_pstore_classify(const char *e)
{
	if (e == NULL)
		return -EIO;
	if (strstr(e, "No space left") != NULL)
		return -ENOSPC;
	if (strstr(e, "Read-only file system") != NULL)
		return -EROFS;
	if (strstr(e, "Permission denied") != NULL)
		return -EACCES;
	if (strstr(e, "lock file") != NULL || strstr(e, "/LOCK:") != NULL ||
	    strstr(e, "lock hold by current process") != NULL)
		return -EWOULDBLOCK;
	if (strstr(e, "does not exist") != NULL || strstr(e, "No such file") != NULL)
		return -ENOENT;
	if (strstr(e, "Corruption") != NULL)
		return -EUCLEAN;
	if (strstr(e, "Not implemented") != NULL || strstr(e, "not supported") != NULL)
		return -EPROTO;
	if (strncmp(e, "Invalid argument", 16) == 0)
		return -EINVAL;
	return -EIO;
}

/* Take RocksDB's error string: class it, copy it to err, free it. */
static int mc_pstore_fail(char *rerr, const char *what, char *err, size_t errlen)
{
	int rc = mc_pstore_classify(rerr);

	if (err != NULL)
		snprintf(err, errlen, "%s: %s", what, rerr ? rerr : "unknown error");
	rocksdb_free(rerr);
	return rc;
}

static int mc_pstore_compression(const char *name)
{
	if (name == NULL || strcmp(name, "lz4") == 0)
		return rocksdb_lz4_compression;
	if (strcmp(name, "zstd") == 0)
		return rocksdb_zstd_compression;
	return rocksdb_no_compression;
}

/*
 * Size RocksDB's flush and compaction pool, whose threads run as
 * SCHED_IDLE.  The pool is process-wide and its threads are started by the
 * first call, by the calling thread, whose policy they inherit: so the
 * call is made from a short-lived thread that has taken SCHED_IDLE, and
 * the caller's own policy is never touched (an unprivileged thread could
 * not come back from SCHED_IDLE: that needs CAP_SYS_NICE or RLIMIT_NICE).
 * Why: the worker already runs SCHED_BATCH at nice 10 (workers/worker.c),
 * but perf sched at half load still caught a flush thread holding a core
 * for 2-3 ms, to its next tick, while the front door's client waited on
 * that core with the other one idle.  A woken normal thread always
 * preempts a SCHED_IDLE one, and the scheduler counts a core running only
 * SCHED_IDLE threads as free.  Under a load that leaves no idle time
 * flushes fall behind, RocksDB stalls writes, the worker's rings fill and
 * back-pressure slows the front door down: nothing is lost, the load is
 * shed where it comes in.
 */
static void *mc_pstore_pool_thread(void *o)
{
	(void)sched_setscheduler(0, SCHED_IDLE, &(struct sched_param){ .sched_priority = 0 });
	rocksdb_options_increase_parallelism(o, 2);
	return NULL;
}

static void mc_pstore_parallelism(rocksdb_options_t *o)
{
	pthread_t t;

	if (pthread_create(&t, NULL, mc_pstore_pool_thread, o) == 0)
		(void)pthread_join(t, NULL);
	else
		rocksdb_options_increase_parallelism(o, 2);    /* normal threads, still correct */
}

static rocksdb_options_t *mc_pstore_options(const char *compression, bool create,
    bool readonly)
{
	rocksdb_options_t *o = rocksdb_options_create();

	/* a missing database only with CREATE; missing families of an existing
	 * one always (a store of an older build gains the new ones) */
	rocksdb_options_set_create_if_missing(o, create && !readonly);
	rocksdb_options_set_create_missing_column_families(o, !readonly);
	mc_pstore_parallelism(o);
	rocksdb_options_set_compression(o, mc_pstore_compression(compression));
	rocksdb_options_set_write_buffer_size(o, 32u << 20);
	rocksdb_options_set_max_total_wal_size(o, 128u << 20);
	rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);
	rocksdb_options_set_bytes_per_sync(o, 1u << 20);
	rocksdb_options_set_max_log_file_size(o, 8u << 20);
	rocksdb_options_set_keep_log_file_num(o, 4);
	/*
	 * RocksDB's info LOG at FATAL only (its header and options at open).
	 * Debian's librocksdb keeps its assertions, and its log writer asserts
	 * on the next line after one failed append: on a full disk the error
	 * handler's own log lines would abort the process.  Everything worth
	 * knowing about the store is in the worker's JSON log instead.
	 */
	rocksdb_options_set_info_log_level(o, 4);
	return o;
}

void mc_pstore_close(struct mc_pstore *st)
{
	if (st->all != NULL) {
		for (int i = 0; i < st->nall; i++)
			if (st->all[i] != NULL)
				rocksdb_column_family_handle_destroy(st->all[i]);
		free(st->all);
	}
	if (st->db != NULL)
		rocksdb_close(st->db);
	if (st->opts != NULL)
		rocksdb_options_destroy(st->opts);
	if (st->wo_sync != NULL)
		rocksdb_writeoptions_destroy(st->wo_sync);
	if (st->wo_nosync != NULL)
		rocksdb_writeoptions_destroy(st->wo_nosync);
	if (st->ro != NULL)
		rocksdb_readoptions_destroy(st->ro);
	memset(st->cf, 0, sizeof(st->cf));
	st->all = NULL;
	st->nall = 0;
	st->db = NULL;
	st->opts = NULL;
	st->wo_sync = st->wo_nosync = NULL;
	st->ro = NULL;
}

/* The families to open: those on disk plus ours (not in a read-only open). */
static int mc_pstore_names_to_open(struct mc_pstore *st, bool create, bool readonly,
    char ***names_out, int *n_out, char *err, size_t errlen)
{
	size_t nexist = 0;
	char *rerr = NULL;
	char **exist = rocksdb_list_column_families(st->opts, st->path, &nexist, &rerr);
	char **names;
	int n = 0;

	if (rerr != NULL) {
		int rc = mc_pstore_classify(rerr);

		/* RocksDB hands out an (empty) array even when it fails */
		if (exist != NULL)
			rocksdb_list_column_families_destroy(exist, nexist);
		/* no CURRENT file: no database here (yet) */
		if (rc == -ENOENT && create && !readonly) {
			rocksdb_free(rerr);
			nexist = 0;
			exist = NULL;
		} else {
			if (rc == -ENOENT)
				snprintf(err, errlen, "no database at %s: %s", st->path, rerr);
			else
				snprintf(err, errlen, "cannot list column families of %s: %s",
				    st->path, rerr);
			rocksdb_free(rerr);
			return rc;
		}
	}
	names = calloc(nexist + MC_CF_COUNT, sizeof(*names));
	if (names == NULL) {
		rocksdb_list_column_families_destroy(exist, nexist);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < nexist; i++)
		names[n++] = strdup(exist[i]);
	if (!readonly)
		for (int c = 0; c < MC_CF_COUNT; c++) {
			bool have = false;

			for (int i = 0; i < n; i++)
				if (names[i] != NULL && strcmp(names[i], mc_pstore_names[c]) == 0)
					have = true;
			if (!have)
				names[n++] = strdup(mc_pstore_names[c]);
		}
	if (exist != NULL)
		rocksdb_list_column_families_destroy(exist, nexist);
	for (int i = 0; i < n; i++)
		if (names[i] == NULL) {
			for (int j = 0; j < n; j++)
				free(names[j]);
			free(names);
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	*names_out = names;
	*n_out = n;
	return 0;
}

/* Refuse a database that is not ours; mark a new one as ours. */
static int mc_pstore_check_format(struct mc_pstore *st, char *err, size_t errlen)
{
	char *val = NULL;
	size_t vlen = 0;
	int rc = mc_pstore_get(st, MC_CF_DEFAULT, MC_PSTORE_KEY_FORMAT,
	    strlen(MC_PSTORE_KEY_FORMAT), &val, &vlen, err, errlen);

	if (rc < 0)
		return rc;
	if (rc == 1) {
		bool ok = vlen == strlen(MC_PSTORE_FORMAT) &&
		    memcmp(val, MC_PSTORE_FORMAT, vlen) == 0;

		if (!ok)
			snprintf(err, errlen, "%s holds an mcpcore store of format '%.*s'; this "
			    "build writes format '" MC_PSTORE_FORMAT "' (use the mcpcore that made "
			    "it, or move the directory aside)", st->path, (int)(vlen > 32 ? 32 : vlen),
			    val);
		free(val);
		return ok ? 0 : -EPROTO;
	}
	if (st->readonly)
		return 0;
	{
		char *rerr = NULL;

		rocksdb_put_cf(st->db, st->wo_sync, st->cf[MC_CF_DEFAULT], MC_PSTORE_KEY_FORMAT,
		    strlen(MC_PSTORE_KEY_FORMAT), MC_PSTORE_FORMAT, strlen(MC_PSTORE_FORMAT), &rerr);
		if (rerr != NULL)
			return mc_pstore_fail(rerr, "cannot write the format marker", err, errlen);
	}
	return 0;
}

int mc_pstore_open(struct mc_pstore *st, const char *path, const char *compression,
    unsigned flags, char *err, size_t errlen)
{
	bool create = (flags & MC_PSTORE_CREATE) != 0, readonly = (flags & MC_PSTORE_READONLY) != 0;
	rocksdb_options_t **cfopts = NULL;
	char **names = NULL, *rerr = NULL;
	int n = 0, rc;

	memset(st, 0, sizeof(*st));
	if (snprintf(st->path, sizeof(st->path), "%s", path) >= (int)sizeof(st->path)) {
		snprintf(err, errlen, "path too long: %s", path);
		return -ENAMETOOLONG;
	}
	st->readonly = readonly;
	st->opts = mc_pstore_options(compression, create, readonly);
	st->wo_sync = rocksdb_writeoptions_create();
	st->wo_nosync = rocksdb_writeoptions_create();
	st->ro = rocksdb_readoptions_create();
	rocksdb_writeoptions_set_sync(st->wo_sync, 1);
	rocksdb_writeoptions_set_sync(st->wo_nosync, 0);
	rc = mc_pstore_names_to_open(st, create, readonly, &names, &n, err, errlen);
	if (rc)
		goto fail;
	cfopts = calloc((size_t)n, sizeof(*cfopts));
	st->all = calloc((size_t)n, sizeof(*st->all));
	if (cfopts == NULL || st->all == NULL) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < n; i++)
		cfopts[i] = st->opts;
	if (readonly)
		st->db = rocksdb_open_for_read_only_column_families(st->opts, st->path, n,
		    (const char *const *)names, (const rocksdb_options_t *const *)cfopts, st->all,
		    0, &rerr);
	else
		st->db = rocksdb_open_column_families(st->opts, st->path, n,
		    (const char *const *)names, (const rocksdb_options_t *const *)cfopts, st->all,
		    &rerr);
	if (rerr != NULL) {
		char what[4200];

		st->db = NULL;
		snprintf(what, sizeof(what), "cannot open %s", st->path);
		rc = mc_pstore_fail(rerr, what, err, errlen);
		memset(st->all, 0, (size_t)n * sizeof(*st->all));
		goto fail;
	}
	st->nall = n;
	for (int i = 0; i < n; i++) {
		int c = mc_pstore_cf_by_name(names[i]);

		if (c >= 0)
			st->cf[c] = st->all[i];
	}
	rc = mc_pstore_check_format(st, err, errlen);
	if (rc)
		goto fail;
	goto out;
fail:
	mc_pstore_close(st);
out:
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(cfopts);
	return rc;
}

int mc_pstore_write(struct mc_pstore *st, rocksdb_writebatch_t *wb, bool sync,
    char *err, size_t errlen)
{
	char *rerr = NULL;

	if (st->db == NULL) {
		snprintf(err, errlen, "store not open");
		return -EBADF;
	}
	rocksdb_write(st->db, sync ? st->wo_sync : st->wo_nosync, wb, &rerr);
	if (rerr != NULL)
		return mc_pstore_fail(rerr, "write failed", err, errlen);
	return 0;
}

int mc_pstore_get(struct mc_pstore *st, int cf, const void *key, size_t klen,
    char **val, size_t *vlen, char *err, size_t errlen)
{
	char *rerr = NULL;

	*val = NULL;
	*vlen = 0;
	if (st->db == NULL || cf < 0 || cf >= MC_CF_COUNT) {
		snprintf(err, errlen, "store not open");
		return -EBADF;
	}
	if (st->cf[cf] == NULL)
		return 0;       /* read-only open of a store that lacks the family */
	*val = rocksdb_get_cf(st->db, st->ro, st->cf[cf], key, klen, vlen, &rerr);
	if (rerr != NULL) {
		*val = NULL;
		return mc_pstore_fail(rerr, "read failed", err, errlen);
	}
	return *val != NULL;
}

rocksdb_iterator_t *mc_pstore_iter(struct mc_pstore *st, int cf)
{
	if (st->db == NULL || cf < 0 || cf >= MC_CF_COUNT || st->cf[cf] == NULL)
		return NULL;
	return rocksdb_create_iterator_cf(st->db, st->ro, st->cf[cf]);
}

int mc_pstore_checkpoint(struct mc_pstore *st, const char *dir, char *err, size_t errlen)
{
	char *rerr = NULL;
	rocksdb_checkpoint_t *cp;

	if (st->db == NULL) {
		snprintf(err, errlen, "store not open");
		return -EBADF;
	}
	cp = rocksdb_checkpoint_object_create(st->db, &rerr);
	if (rerr != NULL)
		return mc_pstore_fail(rerr, "checkpoint", err, errlen);
	rocksdb_checkpoint_create(cp, dir, 0, &rerr);
	rocksdb_checkpoint_object_destroy(cp);
	if (rerr != NULL)
		return mc_pstore_fail(rerr, "checkpoint", err, errlen);
	return 0;
}

uint64_t mc_pstore_property(struct mc_pstore *st, const char *name)
{
	uint64_t v = 0;

	if (st->db == NULL || rocksdb_property_int(st->db, name, &v) != 0)
		return 0;
	return v;
}
