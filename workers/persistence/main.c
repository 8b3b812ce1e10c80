/*
 * workers/persistence/main.c - the persistence worker: every MCPMessage,
 * TrainingData, LearningModel, monitor snapshot and state change it is
 * sent, stored durably in RocksDB, acknowledged, crash-safe.
 *
 * THE LOOP (one thread; helper threads only open the store and write
 * checkpoints, so that neither can stall the heartbeat)
 *   1. take every frame that is waiting, round-robin over the inbound
 *      rings: pings are answered, requests (persist.proto) answered,
 *      storable frames go into the batch and stay held;
 *   2. when nothing more is waiting (or a ring's journal or the batch is
 *      full), commit the batch: one WriteBatch with the WAL, fdatasync'ed
 *      when [persistence] sync = "batch" (group commit: the fsync is paid
 *      once per batch, and the batch grows by itself with the load, since
 *      producers fill the rings while we sync).  A batch of lazy frames
 *      only (mc_proto_kind_lazy: nobody waits for them) waits up to
 *      [persistence] group_commit_ms for more, napping meanwhile (a frame
 *      somebody waits for ends the nap and commits the batch at once): an
 *      fdatasync costs ~100 us of CPU in a VM, and the MCP front door sends
 *      tens of thousands of message copies a second;
 *   3. once the write returned, publish the durable sequence numbers in the
 *      control block (mc_persist.h) and only then release the frames,
 *      which advances each ring's consumer position.
 * Killed anywhere, the worker loses nothing acknowledged: frames not yet
 * released are handed out again to the next incarnation (the consumer
 * journal), and the dedup marks written in the same batch as the records
 * recognise those that were stored already (mc_pbatch.h).
 *
 * FAULTS.  A store that cannot be opened or written (disk full, read-only
 * or vanished directory, corruption, another process holding it) is
 * published in the control block (mcpcore status), logged, and retried
 * with exponential backoff (100 ms doubling to 2 s), each retry reopening
 * the store (RocksDB stays read-only after a failed write until reopened).
 * Meanwhile the frames stay held: the rings and frame pools fill and
 * producers get -EAGAIN (back-pressure); nothing is acknowledged, nothing
 * is dropped.  A vanished directory is never silently recreated once a
 * store was opened in this segment.
 *
 * START.  The store is opened (created the first time); if the segment is
 * fresh (the whole runtime restarted), the state family is replayed into
 * the state worker (mc_prestore.h) before the worker reports ready, so the
 * runtime is ready only with its state back.  A store that cannot be
 * opened at start does not hold the runtime hostage: the worker reports
 * ready in the FAULT state and keeps retrying (and restores once it can).
 *
 * CHECKPOINTS every checkpoint_interval seconds and on request
 * (mc_pckpt.h), written by a helper thread while the loop goes on.
 */
#define _GNU_SOURCE
#include <ck_pr.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#ifdef MC_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "mc_log.h"
#include "mc_pbatch.h"
#include "mc_pckpt.h"
#include "mc_persist.h"
#include "mc_pquery.h"
#include "mc_prestore.h"
#include "mc_proto.h"
#include "mc_pstore.h"
#include "mc_util.h"
#include "mc_worker.h"

#define MC_P_SPIN_NS        50000ULL         /* spin before sleeping (a futex wake is ~35 us) */
#define MC_P_SLEEP_NS       100000000ULL     /* longest sleep: the heartbeat period */
#define MC_P_TICK_NS        100000000ULL
#define MC_P_MEM_NS         1000000000ULL    /* memory statistics refresh */
#define MC_P_BACKOFF_MIN_MS 100
#define MC_P_BACKOFF_MAX_MS 2000
#define MC_P_RESTORE_TIMEOUT_NS (30ULL * 1000000000ULL)  /* no answer from the state worker */
#define MC_P_TAKE_MAX       8192             /* frames per collect pass before a commit/tick */
#define MC_P_CKPT_WAITERS   64

static volatile sig_atomic_t mc_persist_stop_flag;

void mc_persist_stop(void)
{
	mc_persist_stop_flag = 1;
}

static bool mc_p_stopping(void)
{
	return mc_persist_stop_flag || mc_worker_stopping();
}

/* A reply frame waiting for room in the ring to its requester. */
struct mc_p_reply {
	unsigned dst;
	uint8_t *buf;
	size_t len;
};

/* Work handed to a helper thread: open the store, or write a checkpoint. */
struct mc_p_job {
	pthread_t tid;
	bool threaded;                  /* tid is a thread to join (else it ran inline) */
	int state;                      /* 0 idle, 1 running, 2 done (atomic) */
	int rc;
	char err[MC_PSTORE_ERR_MAX];
	char path[4096];                /* checkpoint written */
	struct mc_pstore st;            /* open: the result */
	uint64_t started_ns;
	struct mc_persist *p;
};

struct mc_persist {
	struct mc_worker *w;
	struct mc_seg *seg;
	const struct mc_config *cfg;
	struct mc_persist_ctl *ctl;
	char path[4096];                /* absolute store directory */
	bool sync;
	uint64_t max_reply;             /* bytes a reply frame may carry */

	struct mc_pstore st;
	bool open;
	int dirfd;                      /* the store directory, to notice it vanishing */
	struct mc_p_job opener;
	struct mc_pbatch b;
	uint64_t batch_since_ns;        /* when the batch's first frame came */
	bool batch_eager;               /* it holds a frame somebody waits for */
	uint64_t group_ns;              /* [persistence] group_commit_ms */
	bool stash_valid;               /* a frame taken while the batch was full */
	struct mc_msg stash;

	/* faults */
	bool faulted;
	uint64_t retry_at_ns;
	uint64_t backoff_ms;
	uint64_t fault_began_ns;

	/* start-up */
	bool ready;
	bool first_open_done;
	bool restoring;
	uint64_t restore_began_ns;
	struct mc_prestore rs;

	/* checkpoints */
	struct mc_p_job ckpt;
	uint64_t next_ckpt_ns;
	struct { unsigned slot; uint64_t id; } waiters[MC_P_CKPT_WAITERS];
	unsigned nwaiters;

	struct mc_p_reply *replies;
	size_t nreplies, capreplies;

	uint64_t last_tick_ns, last_mem_ns;
};

/* ------------------------------------------------------------------ */
/* control block                                                        */

static void mc_p_set_state(struct mc_persist *p, enum mc_persist_state s)
{
	ck_pr_store_32(&p->ctl->pc_state, s);
}

static enum mc_persist_fault mc_p_fault_class(int rc)
{
	switch (-rc) {
	case ENOSPC:      return MC_PFAULT_NOSPACE;
	case EROFS:       return MC_PFAULT_READONLY;
	case ENOENT:      return MC_PFAULT_VANISHED;
	case EACCES:
	case EPERM:       return MC_PFAULT_PERMISSION;
	case EUCLEAN:     return MC_PFAULT_CORRUPT;
	case EPROTO:      return MC_PFAULT_INCOMPATIBLE;
	case EWOULDBLOCK: return MC_PFAULT_LOCKED;
	case EIO:         return MC_PFAULT_IO;
	default:          return MC_PFAULT_OTHER;
	}
}

/* Publish durable marks: after the write, before the frames are released. */
static void mc_p_publish(struct mc_persist *p)
{
	ck_pr_fence_store();
	for (unsigned s = 0; s < MC_MAX_SLOTS; s++)
		if (p->b.hwm[s] > ck_pr_load_64(&p->ctl->pc_durable[s]))
			ck_pr_store_64(&p->ctl->pc_durable[s], p->b.hwm[s]);
	ck_pr_store_64(&p->ctl->pc_durable_gen, p->ctl->pc_durable_gen + 1);
}

/* Memory of this worker: jemalloc's own statistics where we run on it. */
static void mc_p_memory(struct mc_persist *p)
{
	uint64_t allocated = 0, resident = 0;
	uint32_t source = 0;

#ifdef MC_HAVE_JEMALLOC
	{
		uint64_t epoch = 1;
		size_t sz = sizeof(epoch), a = 0, r = 0, asz = sizeof(a), rsz = sizeof(r);

		/* the statistics are a snapshot taken when the epoch advances */
		if (mallctl("epoch", &epoch, &sz, &epoch, sz) == 0 &&
		    mallctl("stats.allocated", &a, &asz, NULL, 0) == 0 &&
		    mallctl("stats.resident", &r, &rsz, NULL, 0) == 0) {
			allocated = a;
			resident = r;
			source = 1;
		}
	}
#endif
	if (source == 0) {
		FILE *f = fopen("/proc/self/statm", "re");
		unsigned long size = 0, rss = 0;

		if (f != NULL) {
			if (fscanf(f, "%lu %lu", &size, &rss) == 2) {
				resident = (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
				allocated = resident;
				source = 2;
			}
			fclose(f);
		}
	}
	ck_pr_store_64(&p->ctl->pc_mem_allocated, allocated);
	ck_pr_store_64(&p->ctl->pc_mem_resident, resident);
	ck_pr_store_32(&p->ctl->pc_mem_source, source);
	if (p->open)
		ck_pr_store_64(&p->ctl->pc_mem_memtables,
		    mc_pstore_property(&p->st, "rocksdb.cur-size-all-mem-tables"));
}

/* ------------------------------------------------------------------ */
/* faults                                                               */

static void mc_p_close_store(struct mc_persist *p);

/*
 * The store failed with rc: publish, log, schedule a retry.  A store that
 * RocksDB itself failed on is closed and reopened at the retry (after a
 * failed write it stays read-only until reopened); one the free-space
 * guard stopped (keep_open) only retries the write.
 */
static void mc_p_fault_ex(struct mc_persist *p, int rc, const char *what, const char *msg,
    bool keep_open)
{
	enum mc_persist_fault cls = mc_p_fault_class(rc);
	uint64_t now = mc_now_ns();

	if (!p->faulted) {
		p->faulted = true;
		p->fault_began_ns = now;
		p->backoff_ms = MC_P_BACKOFF_MIN_MS;
		ck_pr_store_64(&p->ctl->pc_fault_since_ns, mc_wall_ns());
		ck_pr_store_64(&p->ctl->pc_fault_retries, 0);
		ck_pr_store_64(&p->ctl->pc_faults_total, p->ctl->pc_faults_total + 1);
	} else {
		ck_pr_store_64(&p->ctl->pc_fault_retries, p->ctl->pc_fault_retries + 1);
		p->backoff_ms = p->backoff_ms * 2 > MC_P_BACKOFF_MAX_MS ? MC_P_BACKOFF_MAX_MS
		    : p->backoff_ms * 2;
	}
	p->retry_at_ns = now + p->backoff_ms * 1000000ULL;
	mc_persist_set_text(p->ctl, NULL, msg, NULL);
	ck_pr_store_int(&p->ctl->pc_fault_errno, -rc);
	ck_pr_store_64(&p->ctl->pc_fault_retry_ms, p->backoff_ms);
	ck_pr_store_32(&p->ctl->pc_fault, cls);
	mc_p_set_state(p, MC_PERSIST_FAULT);
	mc_log_error("store_fault", "{s:s, s:s, s:s, s:I, s:I, s:I, s:s}", "op", what,
	    "error", mc_persist_fault_name(cls), "path", p->path,
	    "held", (json_int_t)p->b.n, "retry_in_ms", (json_int_t)p->backoff_ms,
	    "retries", (json_int_t)p->ctl->pc_fault_retries, "message", msg);
	if (p->open && !keep_open)
		mc_p_close_store(p);
}

static void mc_p_fault(struct mc_persist *p, int rc, const char *what, const char *msg)
{
	mc_p_fault_ex(p, rc, what, msg, false);
}

/* Free bytes for unprivileged writers on the file system holding path. */
static uint64_t mc_p_free_bytes(const char *path)
{
	struct statvfs v;

	if (statvfs(path, &v) != 0)
		return UINT64_MAX;      /* cannot tell: let RocksDB find out */
	return (uint64_t)v.f_bavail * v.f_frsize;
}

/*
 * The free-space guard.  RocksDB must never meet ENOSPC itself if we can
 * help it: the Debian build keeps its assertions, and a writer that failed
 * once aborts the process on its next use (the info LOG first of all), so
 * a full disk would be a crash loop instead of a fault.  Before a write we
 * demand room for the batch (twice: WAL and, later, memtable flush) plus
 * the memtables already waiting to be flushed, plus 1 MiB for the
 * MANIFEST and the LOG.  0 or -ENOSPC with the sentence in msg.
 */
static int mc_p_space_for(struct mc_persist *p, uint64_t batch_bytes, char *msg, size_t len)
{
	uint64_t need = 2 * batch_bytes + (1u << 20), free_b;

	if (p->open)
		need += mc_pstore_property(&p->st, "rocksdb.cur-size-all-mem-tables");
	free_b = mc_p_free_bytes(p->path);
	if (free_b >= need)
		return 0;
	snprintf(msg, len, "No space left on device: %llu KiB free on the file system of %.300s, "
	    "the next write needs %llu KiB (batch, memtables to flush, 1 MiB reserve); "
	    "frames are held until space is freed", (unsigned long long)(free_b >> 10), p->path,
	    (unsigned long long)(need >> 10));
	return -ENOSPC;
}

static void mc_p_fault_cleared(struct mc_persist *p)
{
	if (!p->faulted)
		return;
	mc_log_info("store_recovered", "{s:s, s:I, s:I, s:I}", "path", p->path,
	    "after_ms", (json_int_t)((mc_now_ns() - p->fault_began_ns) / 1000000),
	    "retries", (json_int_t)p->ctl->pc_fault_retries, "held", (json_int_t)p->b.n);
	p->faulted = false;
	ck_pr_store_32(&p->ctl->pc_fault, MC_PFAULT_NONE);
	ck_pr_store_int(&p->ctl->pc_fault_errno, 0);
	ck_pr_store_64(&p->ctl->pc_fault_since_ns, 0);
	ck_pr_store_64(&p->ctl->pc_fault_retry_ms, 0);
	mc_persist_set_text(p->ctl, NULL, "", NULL);
}

/* ------------------------------------------------------------------ */
/* opening (in a helper thread: recovering a big WAL can take seconds)  */

/* Bytes of WAL files (*.log) in the store directory: what a reopen replays. */
static uint64_t mc_p_wal_bytes(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	uint64_t sum = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		struct stat sb;

		if (n > 4 && strcmp(e->d_name + n - 4, ".log") == 0 &&
		    fstatat(dirfd(d), e->d_name, &sb, 0) == 0)
			sum += (uint64_t)sb.st_size;
	}
	closedir(d);
	return sum;
}

static void *mc_p_open_thread(void *arg)
{
	struct mc_p_job *j = arg;
	struct mc_persist *p = j->p;
	unsigned flags = ck_pr_load_32(&p->ctl->pc_db_opened) ? 0 : MC_PSTORE_CREATE;

	j->rc = 0;
	/* recovery replays and flushes the WAL: room for it first (see the guard) */
	{
		uint64_t wal = mc_p_wal_bytes(p->path), free_b = mc_p_free_bytes(p->path);

		if (wal != 0 && free_b < wal + (1u << 20)) {
			snprintf(j->err, sizeof(j->err), "No space left on device: %llu KiB free on the "
			    "file system of %.300s; reopening needs %llu KiB to replay the WAL",
			    (unsigned long long)(free_b >> 10), p->path,
			    (unsigned long long)((wal + (1u << 20)) >> 10));
			j->rc = -ENOSPC;
			ck_pr_store_int(&j->state, 2);
			return NULL;
		}
	}
	if (flags & MC_PSTORE_CREATE) {
		j->rc = mc_pckpt_mkdirs(p->path);
		if (j->rc)
			snprintf(j->err, sizeof(j->err), "cannot create %.300s: %s", p->path,
			    strerror(-j->rc));
	}
	if (j->rc == 0)
		j->rc = mc_pstore_open(&j->st, p->path, p->cfg->compression, flags, j->err,
		    sizeof(j->err));
	ck_pr_store_int(&j->state, 2);
	return NULL;
}

static void mc_p_start_open(struct mc_persist *p)
{
	struct mc_p_job *j = &p->opener;

	memset(&j->st, 0, sizeof(j->st));
	j->p = p;
	j->err[0] = '\0';
	j->started_ns = mc_now_ns();
	ck_pr_store_int(&j->state, 1);
	if (!p->faulted)
		mc_p_set_state(p, MC_PERSIST_OPENING);
	j->threaded = pthread_create(&j->tid, NULL, mc_p_open_thread, j) == 0;
	if (!j->threaded)
		mc_p_open_thread(j);    /* no thread: inline (a slow open costs heartbeat, not data) */
}

static void mc_p_begin_restore(struct mc_persist *p);

/* The opener finished: adopt the store or fault. */
static void mc_p_release_dup(void *ctx, struct mc_msg *m)
{
	struct mc_persist *p = ctx;

	mc_frame_release(p->seg, m);
	ck_pr_store_64(&p->ctl->pc_duplicates, p->ctl->pc_duplicates + 1);
}

static void mc_p_finish_open(struct mc_persist *p)
{
	struct mc_p_job *j = &p->opener;
	char err[MC_PSTORE_ERR_MAX];
	uint32_t dropped;
	int rc;

	if (j->threaded)
		pthread_join(j->tid, NULL);
	ck_pr_store_int(&j->state, 0);
	p->first_open_done = true;
	if (j->rc != 0) {
		mc_p_fault(p, j->rc, "open", j->err);
		return;
	}
	p->st = j->st;
	p->open = true;
	rc = mc_pbatch_load_marks(&p->b, &p->st, err, sizeof(err));
	if (rc < 0) {
		mc_p_fault(p, rc, "read dedup marks", err);
		return;
	}
	/*
	 * Frames taken while the store was opening were checked against no
	 * marks at all: the ones a previous incarnation had stored already
	 * (replayed from the journal) go now, released as the duplicates
	 * they are, before anything of this batch is written.
	 */
	dropped = mc_pbatch_filter(&p->b, mc_p_release_dup, p);
	if (p->dirfd >= 0)
		close(p->dirfd);
	p->dirfd = open(p->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_pr_store_32(&p->ctl->pc_db_opened, 1);
	mc_p_publish(p);
	mc_log_info("store_opened", "{s:s, s:s, s:s, s:I, s:b, s:I, s:I}", "path", p->path,
	    "compression", p->cfg->compression, "sync", p->sync ? "batch" : "none",
	    "open_ms", (json_int_t)((mc_now_ns() - j->started_ns) / 1000000),
	    "same_run_marks", rc == 1, "held", (json_int_t)p->b.n,
	    "replayed_duplicates", (json_int_t)dropped);
	mc_p_fault_cleared(p);
	mc_p_set_state(p, MC_PERSIST_RUNNING);
	if (!ck_pr_load_32(&p->ctl->pc_restored) && !p->restoring)
		mc_p_begin_restore(p);
}

static void mc_p_join_ckpt(struct mc_persist *p);

static void mc_p_close_store(struct mc_persist *p)
{
	mc_p_join_ckpt(p);
	if (p->restoring) {
		/* the restore iterates the store: start it again after the reopen */
		mc_prestore_end(&p->rs);
		p->restoring = false;
	}
	mc_pstore_close(&p->st);
	p->open = false;
	if (p->dirfd >= 0) {
		close(p->dirfd);
		p->dirfd = -1;
	}
}

/* Has the store directory been removed under us? */
static bool mc_p_vanished(struct mc_persist *p)
{
	struct stat sb;

	return p->dirfd >= 0 && fstat(p->dirfd, &sb) == 0 && sb.st_nlink == 0;
}

/* ------------------------------------------------------------------ */
/* replies                                                              */

static void mc_p_queue_reply(struct mc_persist *p, unsigned dst, uint8_t *buf, size_t len)
{
	if (p->nreplies == p->capreplies) {
		size_t cap = p->capreplies ? 2 * p->capreplies : 16;
		struct mc_p_reply *r = realloc(p->replies, cap * sizeof(*r));

		if (r == NULL) {
			free(buf);
			mc_log_error("reply_dropped", "{s:i, s:s}", "dst", (int)dst, "message",
			    "out of memory queueing a reply");
			return;
		}
		p->replies = r;
		p->capreplies = cap;
	}
	p->replies[p->nreplies++] = (struct mc_p_reply){ .dst = dst, .buf = buf, .len = len };
}

/* Send queued replies in order while the rings take them. */
static void mc_p_flush_replies(struct mc_persist *p)
{
	size_t done = 0;

	while (done < p->nreplies) {
		struct mc_p_reply *r = &p->replies[done];
		struct mc_frame *f;
		int rc;

		f = mc_frame_alloc(p->seg, (uint32_t)r->len, MC_FK_PERSIST_REPLY, &rc);
		if (f != NULL) {
			memcpy(f->f_data, r->buf, r->len);
			rc = mc_frame_send(p->seg, f, 1ULL << r->dst);
			if (rc)
				mc_frame_abort(p->seg, f);
		}
		if (rc == -EAGAIN)
			break;                  /* try again next pass */
		if (rc)
			mc_log_warn("reply_dropped", "{s:i, s:s}", "dst", (int)r->dst, "error",
			    mc_strerror(rc));
		free(r->buf);
		done++;
	}
	if (done > 0) {
		memmove(p->replies, p->replies + done, (p->nreplies - done) * sizeof(*p->replies));
		p->nreplies -= done;
	}
}

/* ------------------------------------------------------------------ */
/* checkpoints                                                          */

static void *mc_p_ckpt_thread(void *arg)
{
	struct mc_p_job *j = arg;
	struct mc_persist *p = j->p;

	j->rc = mc_pckpt_take(&p->st, p->path, mc_wall_ns(), p->cfg->persistence_checkpoint_keep,
	    j->path, sizeof(j->path), j->err, sizeof(j->err));
	ck_pr_store_int(&j->state, 2);
	return NULL;
}

static int mc_p_commit(struct mc_persist *p);

/* Reply to everyone who asked for a checkpoint. */
static void mc_p_ckpt_answer(struct mc_persist *p, Mcpcore__PersistReply__Status st,
    const char *error, const char *path)
{
	for (unsigned i = 0; i < p->nwaiters; i++) {
		uint8_t *buf;
		size_t len;

		if (mc_pquery_reply(p->waiters[i].id, st, error, path, &buf, &len) == 0)
			mc_p_queue_reply(p, p->waiters[i].slot, buf, len);
	}
	p->nwaiters = 0;
}

static void mc_p_start_ckpt(struct mc_persist *p)
{
	struct mc_p_job *j = &p->ckpt;

	char msg[MC_PSTORE_ERR_MAX];

	if (ck_pr_load_int(&j->state) != 0 || !p->open)
		return;
	/* a checkpoint flushes the memtables first: the guard applies */
	if (mc_p_space_for(p, 0, msg, sizeof(msg)) != 0) {
		mc_log_error("checkpoint_failed", "{s:s, s:s}", "path", p->path, "message", msg);
		mc_p_ckpt_answer(p, MCPCORE__PERSIST_REPLY__STATUS__FAILED, msg, "");
		return;
	}
	/* everything received before the request is in the checkpoint */
	if (p->b.n > 0 && mc_p_commit(p) != 0)
		return;
	j->p = p;
	j->err[0] = '\0';
	j->path[0] = '\0';
	j->started_ns = mc_now_ns();
	ck_pr_store_int(&j->state, 1);
	j->threaded = pthread_create(&j->tid, NULL, mc_p_ckpt_thread, j) == 0;
	if (!j->threaded)
		mc_p_ckpt_thread(j);
}

static void mc_p_finish_ckpt(struct mc_persist *p)
{
	struct mc_p_job *j = &p->ckpt;

	if (j->threaded)
		pthread_join(j->tid, NULL);
	ck_pr_store_int(&j->state, 0);
	if (j->rc == 0) {
		ck_pr_store_64(&p->ctl->pc_checkpoints, p->ctl->pc_checkpoints + 1);
		ck_pr_store_64(&p->ctl->pc_last_checkpoint_ns, mc_wall_ns());
		mc_persist_set_text(p->ctl, NULL, NULL, j->path);
		mc_log_info("checkpoint_written", "{s:s, s:I, s:i}", "path", j->path, "ms",
		    (json_int_t)((mc_now_ns() - j->started_ns) / 1000000), "keep",
		    (int)p->cfg->persistence_checkpoint_keep);
		mc_p_ckpt_answer(p, MCPCORE__PERSIST_REPLY__STATUS__OK, "", j->path);
	} else {
		mc_log_error("checkpoint_failed", "{s:s, s:s}", "path", p->path, "message", j->err);
		mc_p_ckpt_answer(p, MCPCORE__PERSIST_REPLY__STATUS__FAILED, j->err, "");
	}
}

static void mc_p_join_ckpt(struct mc_persist *p)
{
	if (ck_pr_load_int(&p->ckpt.state) == 0)
		return;
	while (ck_pr_load_int(&p->ckpt.state) != 2) {
		mc_seg_heartbeat(p->seg);
		usleep(1000);
	}
	mc_p_finish_ckpt(p);
}

/* ------------------------------------------------------------------ */
/* restore of the state worker's table                                  */

static void mc_p_begin_restore(struct mc_persist *p)
{
	int rc = mc_prestore_begin(&p->rs, &p->st, mc_now_ns());

	if (rc) {
		mc_log_error("state_restore_failed", "{s:s}", "message", strerror(-rc));
		return;
	}
	p->restoring = true;
	p->restore_began_ns = mc_now_ns();
	mc_p_set_state(p, MC_PERSIST_RESTORING);
}

static void mc_p_step_restore(struct mc_persist *p)
{
	int rc = mc_prestore_step(&p->rs, p->seg, &p->st, p->seg->hdr->sh_max_frame,
	    mc_now_ns(), MC_P_RESTORE_TIMEOUT_NS);

	if (rc == 0)
		return;
	if (rc == 1) {
		ck_pr_store_64(&p->ctl->pc_restored_keys, p->rs.answered);
		ck_pr_store_32(&p->ctl->pc_restored, 1);
		mc_log_info("state_restored", "{s:I, s:I, s:I, s:I}", "keys",
		    (json_int_t)p->rs.answered, "not_ok", (json_int_t)p->rs.not_ok,
		    "expired_dropped", (json_int_t)p->rs.expired,
		    "ms", (json_int_t)((mc_now_ns() - p->restore_began_ns) / 1000000));
	} else {
		mc_log_error("state_restore_failed", "{s:s, s:I, s:I, s:s}", "error", mc_strerror(rc),
		    "sent", (json_int_t)p->rs.sent, "answered", (json_int_t)p->rs.answered,
		    "message", rc == -ETIMEDOUT ? "the state worker stopped answering RESTORE "
		    "requests; continuing without a complete restore" :
		    "the state worker cannot take RESTORE requests; continuing without restore");
	}
	mc_prestore_end(&p->rs);
	p->restoring = false;
	mc_p_set_state(p, p->faulted ? MC_PERSIST_FAULT : MC_PERSIST_RUNNING);
}

/* ------------------------------------------------------------------ */
/* frames                                                               */

/* Answer a PING with a PONG saying who we are (as every worker does). */
static void mc_p_control(struct mc_persist *p, const struct mc_msg *m)
{
	Mcpcore__Control *in = (Mcpcore__Control *)mc_proto_unpack(m->frame);
	Mcpcore__Control out = MCPCORE__CONTROL__INIT;
	int rc;

	if (in == NULL)
		return;
	if (in->op == MCPCORE__CONTROL__OP__PING) {
		out.op = MCPCORE__CONTROL__OP__PONG;
		out.nonce = in->nonce;
		out.sent_ns = in->sent_ns;
		out.worker = (char *)p->w->name;
		out.generation = p->seg->generation;
		out.pid = getpid();
		out.handled = p->w->handled;
		rc = mc_proto_send(p->seg, &out.base, 1ULL << m->src);
		if (rc && rc != -EPIPE)
			mc_log_debug("pong_dropped", "{s:i, s:s}", "dst", (int)m->src, "error",
			    mc_strerror(rc));
	}
	protobuf_c_message_free_unpacked(&in->base, NULL);
}

static void mc_p_request(struct mc_persist *p, const struct mc_msg *m)
{
	Mcpcore__PersistRequest *req = (Mcpcore__PersistRequest *)mc_proto_unpack(m->frame);
	uint8_t *buf = NULL;
	size_t len = 0;

	if (req == NULL) {
		mc_log_warn("request_undecodable", "{s:i}", "src", (int)m->src);
		return;
	}
	if (req->op == MCPCORE__PERSIST_REQUEST__OP__CHECKPOINT) {
		if (!p->open) {
			if (mc_pquery_reply(req->id, MCPCORE__PERSIST_REPLY__STATUS__UNAVAILABLE,
			    "the store is not open (see `mcpcore status`)", NULL, &buf, &len) == 0)
				mc_p_queue_reply(p, m->src, buf, len);
		} else if (p->nwaiters == MC_P_CKPT_WAITERS) {
			if (mc_pquery_reply(req->id, MCPCORE__PERSIST_REPLY__STATUS__UNAVAILABLE,
			    "too many checkpoint requests waiting", NULL, &buf, &len) == 0)
				mc_p_queue_reply(p, m->src, buf, len);
		} else {
			p->waiters[p->nwaiters].slot = m->src;
			p->waiters[p->nwaiters].id = req->id;
			p->nwaiters++;
			mc_p_start_ckpt(p);
		}
		goto out;
	}
	/* reads see every frame received before them: commit what is pending */
	if (p->open && p->b.n > 0)
		(void)mc_p_commit(p);
	if (mc_pquery_answer(p->open ? &p->st : NULL, req, p->max_reply, &buf, &len) == 0)
		mc_p_queue_reply(p, m->src, buf, len);
out:
	mcpcore__persist_request__free_unpacked(req, NULL);
}

enum mc_p_stop { MC_P_EMPTY, MC_P_JOURNAL, MC_P_FULL, MC_P_BUDGET, MC_P_STOP };

/* Handle one taken frame; false when it could not be taken now (batch full). */
/*
 * The number a record is known by in the store and in the dedup marks.
 * A frame straight from its producer: the producer's f_seq, which is what
 * the producer waits to see durable (mc_persist_durable_seq).  A frame the
 * router forwarded: f_seq cannot serve (the router carries many producers'
 * frames, and its lanes reorder them), so its arrival number on the
 * router's ring, from 1 (the ring position, 32 bits, extended against the
 * last number taken from that ring).  A frame replayed after our crash
 * comes again at its old position, so it gets its old number and the marks
 * recognise it; nobody waits on the router's durable number.
 */
static uint64_t mc_p_number(const struct mc_persist *p, const struct mc_msg *m)
{
	uint64_t last = p->b.pend[m->src];

	if (m->frame->f_src == m->src)
		return m->desc.d_seq;
	return last + (uint64_t)(int64_t)(int32_t)(m->pos + 1 - (uint32_t)last);
}

static bool mc_p_dispatch(struct mc_persist *p, struct mc_msg *m)
{
	struct mc_frame *f = m->frame;
	char why[256];
	enum mc_pbatch_verdict v;

	switch (f->f_kind) {
	case MC_FK_CONTROL:
		mc_p_control(p, m);
		break;
	case MC_FK_PERSIST_REQUEST:
		mc_p_request(p, m);
		break;
	case MC_FK_STATE_REPLY: {
		Mcpcore__StateReply *rep = (Mcpcore__StateReply *)mc_proto_unpack(f);

		if (rep != NULL) {
			if (p->restoring)
				mc_prestore_reply(&p->rs, rep, mc_now_ns());
			protobuf_c_message_free_unpacked(&rep->base, NULL);
		}
		break;
	}
	default:
		v = mc_pbatch_add(&p->b, m, f->f_kind, m->src, mc_p_number(p, m), f->f_data,
		    f->f_len, mc_wall_ns(), why, sizeof(why));
		if (v == MC_PB_FULL)
			return false;
		p->w->handled++;
		if (v == MC_PB_ADDED) {
			if (p->b.n == 1)
				p->batch_since_ns = mc_now_ns();
			p->batch_eager |= !mc_proto_kind_lazy(f->f_kind);
			return true;    /* held until its batch is durable */
		}
		if (v == MC_PB_DUPLICATE)
			ck_pr_store_64(&p->ctl->pc_duplicates, p->ctl->pc_duplicates + 1);
		else if (v == MC_PB_REJECTED) {
			ck_pr_store_64(&p->ctl->pc_rejected, p->ctl->pc_rejected + 1);
			mc_log_warn("frame_rejected", "{s:i, s:I, s:i, s:s}", "src", (int)m->src,
			    "seq", (json_int_t)m->desc.d_seq, "kind", (int)f->f_kind, "message", why);
		} else {
			mc_log_debug("frame_ignored", "{s:i, s:i}", "src", (int)m->src, "kind",
			    (int)f->f_kind);
		}
		mc_frame_release(p->seg, m);
		return true;
	}
	p->w->handled++;
	mc_frame_release(p->seg, m);
	return true;
}

/* Take every waiting frame (bounded); returns why it stopped, *n taken. */
static enum mc_p_stop mc_p_collect(struct mc_persist *p, unsigned *n)
{
	*n = 0;
	while (*n < MC_P_TAKE_MAX) {
		struct mc_msg m;
		int rc;

		if (mc_p_stopping())
			return MC_P_STOP;
		if (p->stash_valid) {
			m = p->stash;
		} else {
			rc = mc_recv(p->seg, &m);
			if (rc == -EAGAIN)
				return MC_P_EMPTY;
			if (rc == -ENOBUFS)
				return MC_P_JOURNAL;
			if (rc)
				return MC_P_EMPTY;
		}
		if (!mc_p_dispatch(p, &m)) {
			p->stash = m;
			p->stash_valid = true;
			return MC_P_FULL;
		}
		p->stash_valid = false;
		(*n)++;
	}
	return MC_P_BUDGET;
}

/*
 * Should the batch be written now?  Yes if it holds a frame somebody waits
 * for, if collecting stopped for any reason but an empty inbox (batch or
 * journal full, budget, stop), or once its first frame has waited
 * group_commit_ms.
 */
static bool mc_p_due(const struct mc_persist *p, enum mc_p_stop why, uint64_t now)
{
	return p->batch_eager || why != MC_P_EMPTY || now - p->batch_since_ns >= p->group_ns;
}

/* Write the batch; on success publish and release.  0 or negative class. */
static int mc_p_commit(struct mc_persist *p)
{
	char err[MC_PSTORE_ERR_MAX];
	uint64_t t0 = mc_now_ns(), dt, records = p->b.n, bytes = p->b.bytes;
	int rc;

	if (!p->open)
		return -EBADF;
	rc = mc_p_space_for(p, bytes, err, sizeof(err));
	if (rc) {
		mc_p_fault_ex(p, rc, "write", err, true);
		return rc;
	}
	rc = mc_pbatch_commit(&p->b, &p->st, p->sync, err, sizeof(err));
	if (rc == 0 && mc_p_vanished(p)) {
		/* written into a directory that no longer exists: not durable */
		snprintf(err, sizeof(err), "the store directory %.300s was removed while open",
		    p->path);
		rc = -ENOENT;
	}
	if (rc != 0) {
		mc_p_fault(p, rc, "write", err);
		return rc;
	}
	dt = mc_now_ns() - t0;
	mc_p_fault_cleared(p);
	if (ck_pr_load_32(&p->ctl->pc_state) == MC_PERSIST_FAULT)
		mc_p_set_state(p, p->restoring ? MC_PERSIST_RESTORING : MC_PERSIST_RUNNING);
	mc_pbatch_reset(&p->b);
	p->batch_eager = false;
	/* counted before the durable marks (mc_p_publish fences): whoever sees
	 * a record acknowledged sees it in pc_records too */
	ck_pr_store_64(&p->ctl->pc_batches, p->ctl->pc_batches + 1);
	ck_pr_store_64(&p->ctl->pc_records, p->ctl->pc_records + records);
	ck_pr_store_64(&p->ctl->pc_bytes, p->ctl->pc_bytes + bytes);
	ck_pr_store_64(&p->ctl->pc_last_batch, records);
	ck_pr_store_64(&p->ctl->pc_last_commit_ns, dt);
	if (dt > p->ctl->pc_max_commit_ns)
		ck_pr_store_64(&p->ctl->pc_max_commit_ns, dt);
	mc_p_publish(p);
	/* durable and published: now the consumer positions may move */
	for (uint32_t i = 0; i < records; i++)
		mc_frame_release(p->seg, &p->b.items[i].msg);
	ck_pr_store_64(&p->ctl->pc_held, 0);
	return 0;
}

/* ------------------------------------------------------------------ */
/* periodic duties                                                      */

static void mc_p_tick(struct mc_persist *p, uint64_t now)
{
	mc_seg_heartbeat(p->seg);
	if (ck_pr_load_int(&p->ckpt.state) == 2)
		mc_p_finish_ckpt(p);
	if (p->open && !p->restoring && now >= p->next_ckpt_ns) {
		p->next_ckpt_ns = now + (uint64_t)p->cfg->checkpoint_interval * 1000000000ULL;
		mc_p_start_ckpt(p);
	}
	if (now - p->last_mem_ns >= MC_P_MEM_NS) {
		p->last_mem_ns = now;
		mc_p_memory(p);
	}
	ck_pr_store_64(&p->ctl->pc_held, p->b.n);
	p->last_tick_ns = now;
}

/* Where the store lives, as an absolute path (workers inherit the
 * supervisor's cwd, against which the config's relative path was made). */
static int mc_p_resolve_path(struct mc_persist *p)
{
	const char *cfgpath = p->cfg->rocksdb_path;
	char cwd[PATH_MAX];

	if (cfgpath[0] == '/') {
		snprintf(p->path, sizeof(p->path), "%s", cfgpath);
	} else {
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			return -errno;
		if (snprintf(p->path, sizeof(p->path), "%s/%s", cwd, cfgpath) >= (int)sizeof(p->path))
			return -ENAMETOOLONG;
	}
	/* tidy "a/./b" and trailing slashes without requiring the path to exist */
	for (char *s; (s = strstr(p->path, "/./")) != NULL;)
		memmove(s, s + 2, strlen(s + 2) + 1);
	for (size_t n = strlen(p->path); n > 1 && p->path[n - 1] == '/'; n--)
		p->path[n - 1] = '\0';
	{
		char real[PATH_MAX];

		if (realpath(p->path, real) != NULL)
			snprintf(p->path, sizeof(p->path), "%s", real);
	}
	return 0;
}

static int mc_p_init(struct mc_persist *p, struct mc_worker *w)
{
	struct mc_seg *seg = &w->seg;
	uint32_t cap;
	int rc;

	memset(p, 0, sizeof(*p));
	p->w = w;
	p->seg = seg;
	p->cfg = &seg->hdr->sh_config;
	p->dirfd = -1;
	p->ctl = mc_persist_ctl(seg);
	if (p->ctl == NULL) {
		mc_log_error("persistence_no_control_block", "{s:s}", "message",
		    "region storage.history is too small for the persistence control block");
		return MC_CONFIG_EX;
	}
	p->sync = strcmp(p->cfg->persistence_sync, "none") != 0;
	p->max_reply = seg->hdr->sh_max_frame;
	rc = mc_p_resolve_path(p);
	if (rc) {
		mc_log_error("persistence_path", "{s:s}", "message", strerror(-rc));
		return 1;
	}
	cap = p->cfg->persistence_batch_max ? p->cfg->persistence_batch_max : 4096;
	p->group_ns = (uint64_t)p->cfg->persistence_group_commit_ms * 1000000ULL;
	if (mc_pbatch_init(&p->b, seg->hdr->sh_created_wall_ns, cap) != 0) {
		mc_log_error("persistence_oom", "{s:s}", "message", "cannot allocate the batch");
		return 1;
	}
	/* a fresh segment has a zero block: stamp it; a restart finds it stamped */
	if (ck_pr_load_64(&p->ctl->pc_magic) != MC_PERSIST_CTL_MAGIC ||
	    p->ctl->pc_run_id != seg->hdr->sh_created_wall_ns) {
		p->ctl->pc_version = MC_PERSIST_CTL_VERSION;
		p->ctl->pc_run_id = seg->hdr->sh_created_wall_ns;
		ck_pr_fence_store();
		ck_pr_store_64(&p->ctl->pc_magic, MC_PERSIST_CTL_MAGIC);
	}
	ck_pr_store_int(&p->ctl->pc_pid, getpid());
	ck_pr_store_32(&p->ctl->pc_sync, p->sync);
	ck_pr_store_64(&p->ctl->pc_max_commit_ns, 0);
	mc_persist_set_text(p->ctl, p->path, NULL, NULL);
	p->next_ckpt_ns = mc_now_ns() + (uint64_t)p->cfg->checkpoint_interval * 1000000000ULL;
	mc_log_info("persistence_starting", "{s:s, s:s, s:s, s:i, s:i, s:b}", "path", p->path,
	    "compression", p->cfg->compression, "sync", p->sync ? "batch" : "none",
	    "batch_max", (int)cap, "checkpoint_interval_s", (int)p->cfg->checkpoint_interval,
	    "restored", ck_pr_load_32(&p->ctl->pc_restored) != 0);
	return 0;
}

static void mc_p_shutdown(struct mc_persist *p)
{
	/* the last batch: written if the store can take it, else left to the next start */
	if (p->open && p->b.n > 0)
		(void)mc_p_commit(p);
	if (ck_pr_load_int(&p->opener.state) != 0) {
		while (ck_pr_load_int(&p->opener.state) != 2)
			usleep(1000);
		if (p->opener.threaded)
			pthread_join(p->opener.tid, NULL);
		if (p->opener.rc == 0)
			mc_pstore_close(&p->opener.st);
		ck_pr_store_int(&p->opener.state, 0);
	}
	mc_p_join_ckpt(p);
	mc_p_ckpt_answer(p, MCPCORE__PERSIST_REPLY__STATUS__UNAVAILABLE, "shutting down", "");
	mc_p_flush_replies(p);
	if (p->restoring)
		mc_prestore_end(&p->rs);
	if (p->open)
		mc_p_close_store(p);
	/*
	 * Frames still in the batch were not stored: they are NOT released.
	 * We keep our holder bit on them, so the journal window does not move
	 * and the next incarnation is handed them again.
	 */
	mc_log_info("persistence_stopped", "{s:I, s:I, s:I}", "handled",
	    (json_int_t)p->w->handled, "records", (json_int_t)p->ctl->pc_records,
	    "unwritten", (json_int_t)p->b.n);
	mc_p_set_state(p, MC_PERSIST_STOPPED);
	for (size_t i = 0; i < p->nreplies; i++)
		free(p->replies[i].buf);
	free(p->replies);
	mc_pbatch_free(&p->b);
	if (p->dirfd >= 0)
		close(p->dirfd);
}

int mc_persistence_main(struct mc_worker *w)
{
	struct mc_persist *p = calloc(1, sizeof(*p));
	int rc;

	if (p == NULL)
		return 1;
	rc = mc_p_init(p, w);
	if (rc) {
		free(p);
		return rc;
	}
	mc_p_start_open(p);
	while (!mc_p_stopping()) {
		uint64_t now = mc_now_ns();
		enum mc_p_stop why;
		bool gathering;
		unsigned n;

		if (ck_pr_load_int(&p->opener.state) == 2)
			mc_p_finish_open(p);
		if (!p->open && ck_pr_load_int(&p->opener.state) == 0 && now >= p->retry_at_ns)
			mc_p_start_open(p);
		if (p->restoring)
			mc_p_step_restore(p);
		if (!p->ready && p->first_open_done && !p->restoring) {
			p->ready = true;
			mc_seg_ready(p->seg);
			mc_log_info("worker_ready", "{s:s, s:i, s:s}", "worker", w->name,
			    "generation", (int)p->seg->generation, "store",
			    p->open ? "open" : "fault (retrying)");
		}
		why = mc_p_collect(p, &n);
		now = mc_now_ns();
		gathering = p->b.n > 0 && !mc_p_due(p, why, now);
		if (p->b.n > 0 && !gathering && p->open && (!p->faulted || now >= p->retry_at_ns))
			(void)mc_p_commit(p);
		if (p->nreplies > 0)
			mc_p_flush_replies(p);
		now = mc_now_ns();
		if (now - p->last_tick_ns >= MC_P_TICK_NS || n == 0)
			mc_p_tick(p, now);
		if (why == MC_P_STOP)
			break;
		if (p->b.n > 0 || p->stash_valid || ck_pr_load_int(&p->opener.state) != 0 ||
		    p->restoring || p->nreplies > 0) {
			/* waiting on the store, the state worker or a full ring: nap
			 * (mc_ring_wait would return at once while frames sit behind a
			 * full journal) */
			if (n == 0 && gathering && !p->stash_valid && p->nreplies == 0)
				mc_ring_nap(p->seg, p->batch_since_ns + p->group_ns - now);
			else if (n == 0)
				nanosleep(&(struct timespec){ .tv_sec = 0, .tv_nsec = 1000000 }, NULL);
		} else if (n == 0 && why == MC_P_EMPTY) {
			mc_ring_wait(p->seg, MC_P_SPIN_NS, MC_P_SLEEP_NS);
		}
	}
	mc_p_shutdown(p);
	free(p);
	return 0;
}
