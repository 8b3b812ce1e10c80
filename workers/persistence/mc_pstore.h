/*
 * mc_pstore.h - the persistence worker's RocksDB store: opening it with
 * the project's options and column families, writing batches, reading,
 * checkpoints, and turning RocksDB's error strings into error classes.
 *
 * The store is one RocksDB database (C API, rocksdb/c.h) with the column
 * families of enum mc_pstore_cf.  Values are the records' protobuf bytes
 * as they travelled in frames; keys are mc_pkeys.h's.  Every family uses
 * the configured block compression ("lz4" | "zstd" | "none").  The WAL is
 * always on; whether a write is fdatasync'ed is the caller's choice per
 * write.  The default family holds a format marker: opening a database
 * whose marker is not ours is refused (-EPROTO), so the worker never
 * writes into something it does not understand.
 *
 * A read-only open (dump, tests) takes no lock and may run while the
 * worker writes; it sees the database as of the moment it opened.
 *
 * Threads: a store handle may be used from several threads at once
 * (RocksDB is thread-safe) except open/close.  Errors: negative errno
 * classes (mc_pstore_classify) with RocksDB's own text copied into the
 * caller's buffer.
 */
#ifndef MC_PSTORE_H
#define MC_PSTORE_H

#include <rocksdb/c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MC_PSTORE_FORMAT     "1"
#define MC_PSTORE_KEY_FORMAT "mcpcore.format"
#define MC_PSTORE_KEY_DEDUP  "mcpcore.dedup"
#define MC_PSTORE_ERR_MAX    512

enum mc_pstore_cf {
	MC_CF_DEFAULT,
	MC_CF_MESSAGES,
	MC_CF_TRAINING,
	MC_CF_MODELS,
	MC_CF_METRICS,
	MC_CF_STATE,
	MC_CF_COUNT
};

/* mc_pstore_open flags */
#define MC_PSTORE_CREATE    1u   /* create the database if it does not exist */
#define MC_PSTORE_READONLY  2u   /* open read-only, no lock (dump, tests) */

struct mc_pstore {
	rocksdb_t *db;
	rocksdb_options_t *opts;
	rocksdb_column_family_handle_t *cf[MC_CF_COUNT];
	rocksdb_column_family_handle_t **all;   /* every family opened (RocksDB wants all) */
	int nall;
	rocksdb_writeoptions_t *wo_sync;
	rocksdb_writeoptions_t *wo_nosync;
	rocksdb_readoptions_t *ro;
	bool readonly;
	char path[4096];
};

/* "messages" etc.; NULL for an unknown index. */
const char *mc_pstore_cf_name(int cf);
/* Index of a family name, or -1. */
int mc_pstore_cf_by_name(const char *name);

/*
 * Open the store at `path` (absolute or relative to the cwd) with block
 * compression `compression`.  Creates missing column families (not in a
 * read-only open).  Returns 0, or a negative errno class with the reason in
 * err: -ENOENT (missing and not MC_PSTORE_CREATE), -EWOULDBLOCK (another
 * process holds it), -EUCLEAN (corruption), -EPROTO (not an mcpcore store
 * or a newer format), -ENOSPC, -EROFS, -EACCES, -EIO, -EINVAL.
 * On failure *st is closed (nothing to free).
 */
int mc_pstore_open(struct mc_pstore *st, const char *path, const char *compression,
    unsigned flags, char *err, size_t errlen);

/* Close and free everything; idempotent. */
void mc_pstore_close(struct mc_pstore *st);

/*
 * Write a batch (atomically: all of it or, after a crash, none of it).
 * sync: fdatasync the WAL before returning.  0 or a negative class.
 */
int mc_pstore_write(struct mc_pstore *st, rocksdb_writebatch_t *wb, bool sync,
    char *err, size_t errlen);

/*
 * Point read.  *val is malloc'd (free() it) and NULL when absent.
 * Returns 1 found, 0 absent, or a negative class.
 */
int mc_pstore_get(struct mc_pstore *st, int cf, const void *key, size_t klen,
    char **val, size_t *vlen, char *err, size_t errlen);

/* A new iterator over family cf (destroy with rocksdb_iter_destroy). */
rocksdb_iterator_t *mc_pstore_iter(struct mc_pstore *st, int cf);

/*
 * Write a checkpoint (hard links where possible) into `dir`, which must
 * not exist yet; the memtables are flushed first so it is self-contained.
 * 0 or a negative class.
 */
int mc_pstore_checkpoint(struct mc_pstore *st, const char *dir, char *err, size_t errlen);

/* An integer property ("rocksdb.cur-size-all-mem-tables"), or 0. */
uint64_t mc_pstore_property(struct mc_pstore *st, const char *name);

/*
 * The class of a RocksDB error string: "No space left" -ENOSPC,
 * "Read-only file system" -EROFS, "does not exist"/"No such file" -ENOENT,
 * "Permission denied" -EACCES, "lock" held -EWOULDBLOCK, "Corruption"
 * -EUCLEAN, "Invalid argument" -EINVAL, "IO error" -EIO, else -EIO.
 */
int mc_pstore_classify(const char *rocksdb_err);

#endif /* MC_PSTORE_H */
