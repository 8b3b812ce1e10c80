/*
 * mc_pckpt.h - checkpoints of the persistence store: where they go, what
 * they are called, how many are kept, and restoring one (offline).
 *
 * A checkpoint is a RocksDB checkpoint (a consistent copy of the whole
 * database, SST files hard-linked where the file system allows) written to
 *
 *     <dirname(rocksdb_path)>/checkpoints/<UTC time>      e.g.
 *     /data/checkpoints/20260125T040310.123456Z
 *
 * Names sort by time; only directories whose name has that exact shape
 * are ever pruned or listed, so nothing else under checkpoints/ is touched.
 * Each checkpoint is a complete database: `ldb --db=<checkpoint>` and
 * `mcpcore dump` read it directly.
 *
 * Restoring (mcpcore restore, with the runtime stopped): the checkpoint is
 * checked to be an mcpcore store, the current database directory is
 * renamed to <rocksdb_path>.before-restore-<UTC time> (nothing is
 * deleted), and the checkpoint's files are copied (not linked: the
 * checkpoint stays pristine) into a fresh <rocksdb_path>.
 *
 * Threads: any; the caller serialises operations on one store.
 * Errors: negative errno with a sentence in err.
 */
#ifndef MC_PCKPT_H
#define MC_PCKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mc_pstore.h"

#define MC_PCKPT_NAME_LEN 23    /* "YYYYMMDDTHHMMSS.uuuuuuZ" */

/* <dirname(dbpath)>/checkpoints; -ENAMETOOLONG if it does not fit. */
int mc_pckpt_dir(const char *dbpath, char *out, size_t cap);

/* The checkpoint name for a wall-clock time (ns since the epoch). */
void mc_pckpt_name(uint64_t wall_ns, char *out, size_t cap);

/* Is `name` shaped like a checkpoint name? */
bool mc_pckpt_is_name(const char *name);

/*
 * Write a checkpoint of `st` (whose directory is dbpath) named after
 * wall_ns, then keep only the newest `keep` checkpoints.  The directory
 * written goes to path_out.  0 or negative errno.
 */
int mc_pckpt_take(struct mc_pstore *st, const char *dbpath, uint64_t wall_ns, unsigned keep,
    char *path_out, size_t cap, char *err, size_t errlen);

/* Remove all but the newest `keep` checkpoints in dir, and the partial
 * "<name>.tmp" directories of checkpoints interrupted by a crash; returns
 * how many checkpoints were removed, or negative errno.  Call only from
 * the thread that writes checkpoints, when none is being written. */
int mc_pckpt_prune(const char *dir, unsigned keep);

/*
 * Offline restore of checkpoint `ckpt` (a path, or a bare name looked up
 * in dbpath's checkpoints directory) into dbpath.  The caller has made
 * sure no runtime uses dbpath.  `aside` receives where the previous
 * database went ("" if there was none); `used` the checkpoint path used.
 * 0 or negative errno.
 */
int mc_pckpt_restore(const char *ckpt, const char *dbpath, char *aside, size_t asidecap,
    char *used, size_t usedcap, char *err, size_t errlen);

/* mkdir -p; 0 or negative errno. */
int mc_pckpt_mkdirs(const char *path);

/* rm -r of a directory tree; 0 or negative errno. */
int mc_pckpt_rmtree(const char *path);

#endif /* MC_PCKPT_H */
