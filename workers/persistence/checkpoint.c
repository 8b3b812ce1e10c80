/*
 * checkpoint.c - checkpoint naming, writing, pruning and offline restore
 * (contract in mc_pckpt.h).
 *
 * Invariant: nothing here deletes data it did not create.  Pruning only
 * removes directories with a checkpoint-shaped name, and restore moves the
 * current database aside instead of removing it.
 */
#define _GNU_SOURCE
#include "mc_pckpt.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mc_util.h"

int mc_pckpt_dir(const char *dbpath, char *out, size_t cap)
{
	char tmp[4096];
	size_t n;
	char *slash;

	if (snprintf(tmp, sizeof(tmp), "%s", dbpath) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	n = strlen(tmp);
	while (n > 1 && tmp[n - 1] == '/')
		tmp[--n] = '\0';
	slash = strrchr(tmp, '/');
	if (slash == NULL)
		snprintf(tmp, sizeof(tmp), ".");
	else if (slash == tmp)
		tmp[1] = '\0';
	else
		*slash = '\0';
	if (snprintf(out, cap, "%s%scheckpoints", tmp, strcmp(tmp, "/") == 0 ? "" : "/") >=
	    (int)cap)
		return -ENAMETOOLONG;
	return 0;
}

void mc_pckpt_name(uint64_t wall_ns, char *out, size_t cap)
{
	time_t secs = (time_t)(wall_ns / 1000000000ULL);
	struct tm tm;

	gmtime_r(&secs, &tm);
	snprintf(out, cap, "%04d%02d%02dT%02d%02d%02d.%06uZ", tm.tm_year + 1900, tm.tm_mon + 1,
	    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    (unsigned)((wall_ns % 1000000000ULL) / 1000));
}

bool mc_pckpt_is_name(const char *s)
{
	static const char shape[] = "ddddddddTdddddd.ddddddZ";

	if (strlen(s) != MC_PCKPT_NAME_LEN)
		return false;
	for (size_t i = 0; i < MC_PCKPT_NAME_LEN; i++)
		if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i])
			return false;
	return true;
}

int mc_pckpt_mkdirs(const char *path)
{
	char tmp[4096];

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int mc_pckpt_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path) < 0 ? -1 : 0;
	return unlink(path) < 0 ? -1 : 0;
}

int mc_pckpt_rmtree(const char *path)
{
	if (nftw(path, mc_pckpt_rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
		return -errno;
	return 0;
}

static int mc_pckpt_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted checkpoint names in dir (oldest first); *n them.  NULL + *n 0 if none. */
static char **mc_pckpt_list(const char *dir, size_t *n, int *rc)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t cap = 0;

	*n = 0;
	*rc = 0;
	if (d == NULL) {
		*rc = errno == ENOENT ? 0 : -errno;
		return NULL;
	}
	while ((e = readdir(d)) != NULL) {
		if (!mc_pckpt_is_name(e->d_name))
			continue;
		if (*n == cap) {
			char **nn = realloc(names, (cap ? 2 * cap : 16) * sizeof(*nn));

			if (nn == NULL) {
				*rc = -ENOMEM;
				break;
			}
			names = nn;
			cap = cap ? 2 * cap : 16;
		}
		names[*n] = strdup(e->d_name);
		if (names[*n] == NULL) {
			*rc = -ENOMEM;
			break;
		}
		(*n)++;
	}
	closedir(d);
	if (*n > 1)
		qsort(names, *n, sizeof(*names), mc_pckpt_cmp);
	return names;
}

/*
 * RocksDB writes a checkpoint into "<name>.tmp" and renames it when done: a
 * worker killed meanwhile leaves one behind.  Prune runs in the only thread
 * that writes checkpoints, after it wrote one, so any such directory is
 * such a leftover.
 */
static void mc_pckpt_drop_partial(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		char name[MC_PCKPT_NAME_LEN + 1], path[4096];
		size_t n = strlen(e->d_name);

		if (n != MC_PCKPT_NAME_LEN + 4 || strcmp(e->d_name + MC_PCKPT_NAME_LEN, ".tmp") != 0)
			continue;
		memcpy(name, e->d_name, MC_PCKPT_NAME_LEN);
		name[MC_PCKPT_NAME_LEN] = '\0';
		if (!mc_pckpt_is_name(name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		mc_pckpt_rmtree(path);
	}
	closedir(d);
}

int mc_pckpt_prune(const char *dir, unsigned keep)
{
	size_t n;
	int rc, removed = 0;
	char **names;

	mc_pckpt_drop_partial(dir);
	names = mc_pckpt_list(dir, &n, &rc);

	for (size_t i = 0; rc == 0 && i + keep < n; i++) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (mc_pckpt_rmtree(path) == 0)
			removed++;
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc ? rc : removed;
}

int mc_pckpt_take(struct mc_pstore *st, const char *dbpath, uint64_t wall_ns, unsigned keep,
    char *path_out, size_t cap, char *err, size_t errlen)
{
	char dir[4096], name[32];
	int rc = mc_pckpt_dir(dbpath, dir, sizeof(dir));

	if (rc) {
		snprintf(err, errlen, "checkpoint directory path too long");
		return rc;
	}
	rc = mc_pckpt_mkdirs(dir);
	if (rc) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(-rc));
		return rc;
	}
	mc_pckpt_name(wall_ns, name, sizeof(name));
	if (snprintf(path_out, cap, "%s/%s", dir, name) >= (int)cap) {
		snprintf(err, errlen, "checkpoint path too long");
		return -ENAMETOOLONG;
	}
	rc = mc_pstore_checkpoint(st, path_out, err, errlen);
	if (rc) {
		/* a half-written checkpoint must not count as one */
		mc_pckpt_rmtree(path_out);
		return rc;
	}
	if (keep > 0)
		(void)mc_pckpt_prune(dir, keep);
	return 0;
}

/* Copy one file and fsync it. */
static int mc_pckpt_copy(const char *from, const char *to)
{
	char buf[1 << 16];
	int in = open(from, O_RDONLY | O_CLOEXEC), out, rc = 0;
	ssize_t n;

	if (in < 0)
		return -errno;
	out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (out < 0) {
		rc = -errno;
		close(in);
		return rc;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));

			if (w < 0) {
				rc = -errno;
				goto out;
			}
			off += w;
		}
	}
	if (n < 0)
		rc = -errno;
	else if (fsync(out) < 0)
		rc = -errno;
out:
	close(in);
	if (close(out) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

static void mc_pckpt_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

int mc_pckpt_restore(const char *ckpt, const char *dbpath, char *aside, size_t asidecap,
    char *used, size_t usedcap, char *err, size_t errlen)
{
	char dir[4096], src[4096], name[32], verr[MC_PSTORE_ERR_MAX];
	struct mc_pstore probe;
	struct stat sb;
	struct dirent *e;
	DIR *d;
	int rc;

	aside[0] = '\0';
	if (strchr(ckpt, '/') == NULL) {
		rc = mc_pckpt_dir(dbpath, dir, sizeof(dir));
		if (rc || snprintf(src, sizeof(src), "%s/%s", dir, ckpt) >= (int)sizeof(src)) {
			snprintf(err, errlen, "path too long");
			return -ENAMETOOLONG;
		}
	} else if (snprintf(src, sizeof(src), "%s", ckpt) >= (int)sizeof(src)) {
		snprintf(err, errlen, "path too long");
		return -ENAMETOOLONG;
	}
	snprintf(used, usedcap, "%s", src);
	if (stat(src, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		snprintf(err, errlen, "no checkpoint directory %s", src);
		return -ENOENT;
	}
	/* it must open as an mcpcore store before we move anything */
	rc = mc_pstore_open(&probe, src, "lz4", MC_PSTORE_READONLY, verr, sizeof(verr));
	if (rc) {
		snprintf(err, errlen, "%s is not a usable mcpcore checkpoint: %s", src, verr);
		return rc;
	}
	mc_pstore_close(&probe);
	if (lstat(dbpath, &sb) == 0) {
		mc_pckpt_name(mc_wall_ns(), name, sizeof(name));
		if (snprintf(aside, asidecap, "%s.before-restore-%s", dbpath, name) >= (int)asidecap ||
		    rename(dbpath, aside) < 0) {
			rc = -errno;
			snprintf(err, errlen, "cannot move %s aside: %s", dbpath, strerror(errno));
			aside[0] = '\0';
			return rc ? rc : -ENAMETOOLONG;
		}
	}
	rc = mc_pckpt_mkdirs(dbpath);
	if (rc) {
		snprintf(err, errlen, "cannot create %s: %s", dbpath, strerror(-rc));
		return rc;
	}
	d = opendir(src);
	if (d == NULL) {
		rc = -errno;
		snprintf(err, errlen, "cannot read %s: %s", src, strerror(errno));
		return rc;
	}
	while ((e = readdir(d)) != NULL) {
		char from[4096 + 256], to[4096 + 256];

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(from, sizeof(from), "%s/%s", src, e->d_name);
		snprintf(to, sizeof(to), "%s/%s", dbpath, e->d_name);
		if (stat(from, &sb) < 0 || !S_ISREG(sb.st_mode))
			continue;
		rc = mc_pckpt_copy(from, to);
		if (rc) {
			snprintf(err, errlen, "cannot copy %s to %s: %s", from, to, strerror(-rc));
			break;
		}
	}
	closedir(d);
	mc_pckpt_fsync_dir(dbpath);
	return rc;
}
