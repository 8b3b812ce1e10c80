/*
 * bench_persist.c - `mcpcore-bench persist`: durable writes through the
 * real rings and the real persistence worker, against raw RocksDB single
 * puts with the same options and no sync, measured side by side.
 *
 * Records are 256-byte MCPMessages (the frame payload is exactly 256 bytes,
 * the message payload about half random and half zero bytes, so that it
 * compresses about 2:1).  Each run, on a fresh store in a temporary
 * directory:
 *
 *   mcpcore durable   the worker code (mc_persistence_main) in a forked
 *                     child holding the persistence slot of a private
 *                     segment, sync = "batch" (fdatasync per batch); a
 *                     producer in the router's slot sends the records,
 *                     keeping at most MC_BP_WINDOW of them unacknowledged
 *                     (a client with bounded outstanding writes; an
 *                     unbounded one measures only how deep the rings are),
 *                     and timestamps each record's acknowledgement: the
 *                     moment the control block's durable number covers it.
 *                     writes/s = records / (first send .. last ack).
 *   raw RocksDB       a forked child opens a fresh store with the same
 *                     options (mc_pstore_open: families, LZ4, WAL on) and
 *                     does one rocksdb_put per record, sync = false, with
 *                     the same keys and values.
 *
 * Then acknowledgement latency at a fixed offered load (10 000 writes/s,
 * the seed's target).  Every RocksDB user is a forked child: RocksDB's
 * thread pool does not survive fork, so the parent never touches it.
 */
#define _GNU_SOURCE
#include "mc_bench.h"

#include <ck_pr.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mc_frame.h"
#include "mc_log.h"
#include "mc_pckpt.h"
#include "mc_persist.h"
#include "mc_pkeys.h"
#include "mc_proto.h"
#include "mc_pstore.h"
#include "mc_util.h"
#include "mc_worker.h"

#define MC_BP_RECORD      256u          /* frame payload bytes */
#define MC_BP_WINDOW      512u          /* unacknowledged records a producer keeps */
#define MC_BP_MAX_COUNT   400000u       /* records per throughput run, at most */
#define MC_BP_RATE        10000u        /* writes/s of the latency run */
#define MC_BP_PROD        MC_WORKER_ROUTER

struct mc_bp {
	struct mc_seg *seg;             /* the benchmark's segment (created here) */
	const char *instance;
	char root[64];                  /* temporary directory of every store */
	int run;
	uint64_t *t_send, *lat;
	uint64_t n;
	uint8_t record[MC_BP_RECORD];   /* the 256 bytes, re-stamped per record */
	size_t stamp_at;                /* where the 8 random-ish bytes per record go */
	double *raw_out;                /* shared with the raw child */
};

static void mc_bp_on_term(int sig)
{
	(void)sig;
	mc_persist_stop();
}

/* An MCPMessage whose serialised form is exactly 256 bytes. */
static void mc_bp_record_init(struct mc_bp *b)
{
	Mcpcore__MCPMessage m = MCPCORE__MCPMESSAGE__INIT;
	uint8_t pl[MC_BP_RECORD];
	size_t plen = 200;

	m.timestamp = 0;        /* keyed by the time the worker takes it, like raw */
	m.message_type = "bench";
	m.payload.data = pl;
	for (;;) {
		size_t n;

		m.payload.len = plen;
		n = mcpcore__mcpmessage__get_packed_size(&m);
		if (n == MC_BP_RECORD)
			break;
		plen += MC_BP_RECORD > n ? 1 : (size_t)-1;
	}
	for (size_t i = 0; i < plen; i++)
		pl[i] = i < plen / 2 ? (uint8_t)random() : 0;
	mcpcore__mcpmessage__pack(&m, b->record);
	b->stamp_at = MC_BP_RECORD - plen;      /* the payload's first bytes */
}

/* Vary the record a little (a counter in the random half) and copy it. */
static void mc_bp_fill(struct mc_bp *b, uint8_t *dst, uint64_t i)
{
	memcpy(dst, b->record, MC_BP_RECORD);
	memcpy(dst + b->stamp_at, &i, sizeof(i));
}

/* ---- the worker ---- */

static pid_t mc_bp_start_worker(struct mc_bp *b, const char *db)
{
	struct mc_slot *sl = &b->seg->slots[MC_WORKER_PERSISTENCE];
	struct mc_persist_ctl *ctl = mc_persist_ctl(b->seg);
	pid_t pid;

	/* a fresh store each run: a fresh control block (the worker is not running) */
	memset(ctl, 0, sizeof(*ctl));
	snprintf(b->seg->hdr->sh_config.rocksdb_path, sizeof(b->seg->hdr->sh_config.rocksdb_path),
	    "%s", db);
	ck_pr_store_32(&sl->sl_generation, sl->sl_generation + 1);
	ck_pr_store_32(&sl->sl_state, MC_SLOT_STARTING);
	pid = fork();
	if (pid == 0) {
		struct mc_worker w;
		char err[512];

		alarm(300);
		signal(SIGTERM, mc_bp_on_term);
		memset(&w, 0, sizeof(w));
		mc_log_init("persistence", "warn");
		if (mc_seg_attach(&w.seg, b->instance, false, err, sizeof(err)) != 0 ||
		    mc_seg_claim_worker(&w.seg, MC_WORKER_PERSISTENCE) != 0)
			_exit(3);
		w.cfg = &w.seg.hdr->sh_config;
		w.slot = MC_WORKER_PERSISTENCE;
		w.name = "persistence";
		_exit(mc_persistence_main(&w));
	}
	for (int i = 0; i < 30000; i++) {
		if (ck_pr_load_32(&sl->sl_ready_gen) == ck_pr_load_32(&sl->sl_generation) &&
		    ck_pr_load_32(&ctl->pc_state) == MC_PERSIST_RUNNING)
			return pid;
		usleep(1000);
	}
	fprintf(stderr, "mcpcore-bench: the persistence worker did not start\n");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

static int mc_bp_stop_worker(pid_t pid)
{
	int status;

	kill(pid, SIGTERM);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "mcpcore-bench: persistence worker ended badly (%d)\n", status);
		return -1;
	}
	return 0;
}

/*
 * Send n records from the producer slot, at most `window` unacknowledged,
 * paced at `rate` per second (0: as fast as the window allows).  Fills
 * t_send/lat; returns the elapsed ns from the first send to the last ack.
 */
static uint64_t mc_bp_produce(struct mc_bp *b, struct mc_seg *p, uint64_t n, uint64_t window,
    uint64_t rate)
{
	uint64_t first = 0, acked = 0, sent = 0, t0 = mc_now_ns(), next = t0;
	uint64_t gap = rate ? 1000000000ULL / rate : 0;

	while (acked < n) {
		uint64_t now, durable;

		/* acknowledgements first: stamp every record the durable number now covers */
		durable = sent ? mc_persist_durable_seq(p, MC_BP_PROD) : 0;
		now = mc_now_ns();
		while (acked < sent && durable >= first + acked) {
			b->lat[acked] = now - b->t_send[acked];
			acked++;
		}
		if (sent < n && sent - acked < window && (gap == 0 || now >= next)) {
			struct mc_frame *f;
			int rc;

			f = mc_frame_alloc(p, MC_BP_RECORD, MC_FK_MCP, &rc);
			if (f != NULL) {
				mc_bp_fill(b, f->f_data, sent);
				if (sent == 0)
					first = f->f_seq;
				b->t_send[sent] = mc_now_ns();
				while ((rc = mc_frame_send(p, f, 1ULL << MC_WORKER_PERSISTENCE)) == -EAGAIN)
					ck_pr_stall();
				if (rc) {
					fprintf(stderr, "mcpcore-bench: send: %s\n", mc_strerror(rc));
					return 0;
				}
				sent++;
				next += gap;
				continue;
			}
		}
		/* waiting for acknowledgements (or the pace): a short nap, not a spin,
		 * so that the worker and RocksDB have the CPUs */
		if (sent >= n || sent - acked >= window || (gap && now < next))
			nanosleep(&(struct timespec){ .tv_nsec = 20000 }, NULL);
	}
	return mc_now_ns() - t0;
}

struct mc_bp_result {
	double rate;
	double p50_us, p99_us;
	double max_commit_us;           /* longest write + fdatasync of the run */
	uint64_t batches;
};

static int mc_bp_durable_run(struct mc_bp *b, uint64_t n, uint64_t window, uint64_t rate,
    struct mc_bp_result *out)
{
	char db[128];
	struct mc_seg p;
	char err[512];
	uint64_t dt;
	pid_t w;
	int rc;

	snprintf(db, sizeof(db), "%s/durable-%d", b->root, b->run++);
	w = mc_bp_start_worker(b, db);
	if (w < 0)
		return -1;
	rc = mc_seg_attach(&p, b->instance, false, err, sizeof(err));
	if (rc == 0)
		rc = mc_seg_claim_worker(&p, MC_BP_PROD);
	if (rc) {
		fprintf(stderr, "mcpcore-bench: %s\n", err);
		mc_bp_stop_worker(w);
		return -1;
	}
	dt = mc_bp_produce(b, &p, n, window, rate);
	out->max_commit_us = (double)ck_pr_load_64(&mc_persist_ctl(b->seg)->pc_max_commit_ns) / 1e3;
	out->batches = ck_pr_load_64(&mc_persist_ctl(b->seg)->pc_batches);
	mc_seg_detach(&p);
	rc = mc_bp_stop_worker(w);
	mc_pckpt_rmtree(db);
	if (dt == 0 || rc)
		return -1;
	out->rate = (double)n * 1e9 / (double)dt;
	out->p50_us = (double)mc_bench_percentile(b->lat, n, 50) / 1000.0;
	out->p99_us = (double)mc_bench_percentile(b->lat, n, 99) / 1000.0;
	return 0;
}

/* ---- raw RocksDB, in a child ---- */

static struct mc_bp *mc_bp_child_b;
static uint64_t mc_bp_child_n;
static char mc_bp_child_db[128];

static int mc_bp_raw_child(void *arg)
{
	struct mc_bp *b = mc_bp_child_b;
	struct mc_pstore st;
	char err[MC_PSTORE_ERR_MAX], *rerr = NULL;
	uint8_t val[MC_BP_RECORD], key[MC_PKEY_TIME_LEN];
	uint64_t t0, run = mc_wall_ns();

	(void)arg;
	if (mc_pstore_open(&st, mc_bp_child_db, "lz4", MC_PSTORE_CREATE, err, sizeof(err)) != 0) {
		fprintf(stderr, "mcpcore-bench: %s\n", err);
		return 1;
	}
	t0 = mc_now_ns();
	for (uint64_t i = 0; i < mc_bp_child_n; i++) {
		struct mc_pkey_time k = { .time_ns = mc_wall_ns(), .run = run, .slot = MC_BP_PROD,
		    .seq = i + 1, .kind = MC_FK_MCP };

		mc_bp_fill(b, val, i);
		mc_pkey_time_encode(key, sizeof(key), &k);
		rocksdb_put_cf(st.db, st.wo_nosync, st.cf[MC_CF_MESSAGES], (const char *)key,
		    sizeof(key), (const char *)val, sizeof(val), &rerr);
		if (rerr != NULL) {
			fprintf(stderr, "mcpcore-bench: put: %s\n", rerr);
			return 1;
		}
	}
	*b->raw_out = (double)mc_bp_child_n * 1e9 / (double)(mc_now_ns() - t0);
	mc_pstore_close(&st);
	return 0;
}

static int mc_bp_raw_run(struct mc_bp *b, uint64_t n, double *rate)
{
	snprintf(mc_bp_child_db, sizeof(mc_bp_child_db), "%s/raw-%d", b->root, b->run++);
	mc_bp_child_b = b;
	mc_bp_child_n = n;
	if (mc_bench_join(mc_bench_fork(mc_bp_raw_child, NULL)) != 0)
		return -1;
	mc_pckpt_rmtree(mc_bp_child_db);
	*rate = *b->raw_out;
	return 0;
}

int mc_bench_persist(const struct mc_bench_opts *o)
{
	struct mc_config cfg;
	struct mc_seg seg;
	struct mc_bp b = { 0 };
	uint64_t n = o->quick ? 20000 : (o->count > MC_BP_MAX_COUNT ? MC_BP_MAX_COUNT : o->count);
	uint64_t nlat = o->quick ? 2000 : 30000;
	double durable[o->runs], raw[o->runs], ratio[o->runs], p50[o->runs], p99[o->runs];
	double l50[o->runs], l99[o->runs];
	int rc = 0;

	srandom(1);
	if (mc_bench_segment(&seg, &cfg, "persist"))
		return 1;
	b.seg = &seg;
	b.instance = seg.hdr->sh_instance;
	snprintf(b.root, sizeof(b.root), "%s/mcbench-persist-XXXXXX",
	    getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	b.raw_out = mc_bench_shared(sizeof(double));
	b.t_send = calloc(n > nlat ? n : nlat, sizeof(uint64_t));
	b.lat = calloc(n > nlat ? n : nlat, sizeof(uint64_t));
	if (mkdtemp(b.root) == NULL || b.raw_out == NULL || b.t_send == NULL || b.lat == NULL) {
		fprintf(stderr, "mcpcore-bench: cannot set up: %s\n", strerror(errno));
		mc_seg_destroy(&seg);
		return 1;
	}
	mc_bp_record_init(&b);
	for (int r = 0; r < o->runs && rc == 0; r++) {
		struct mc_bp_result d, l;

		rc = mc_bp_raw_run(&b, n, &raw[r]);
		if (rc == 0)
			rc = mc_bp_durable_run(&b, n, MC_BP_WINDOW, 0, &d);
		if (rc == 0)
			rc = mc_bp_durable_run(&b, nlat, MC_BP_WINDOW, MC_BP_RATE, &l);
		if (rc)
			break;
		durable[r] = d.rate;
		ratio[r] = d.rate / raw[r];
		p50[r] = d.p50_us;
		p99[r] = d.p99_us;
		l50[r] = l.p50_us;
		l99[r] = l.p99_us;
		if (!o->json)
			fprintf(stderr, "run %d: durable %.0f/s (ack p50 %.0f us, p99 %.0f us; %llu batches, "
			    "longest commit %.0f us), raw %.0f/s, ratio %.2f; at %u/s: p50 %.0f us, "
			    "p99 %.0f us (longest commit %.0f us)\n", r + 1, d.rate, d.p50_us, d.p99_us,
			    (unsigned long long)d.batches, d.max_commit_us, raw[r], ratio[r], MC_BP_RATE,
			    l.p50_us, l.p99_us, l.max_commit_us);
	}
	mc_pckpt_rmtree(b.root);
	mc_seg_destroy(&seg);
	free(b.t_send);
	free(b.lat);
	if (rc)
		return 1;
	if (o->json) {
		printf("{\"bench\":\"persist\",\"runs\":%d,\"records\":%llu,\"record_bytes\":%u,"
		    "\"window\":%u,\"durable_per_s\":%.0f,\"raw_nosync_per_s\":%.0f,\"ratio\":%.3f,"
		    "\"ack_us\":{\"p50\":%.0f,\"p99\":%.0f},"
		    "\"ack_us_at_rate\":{\"rate\":%u,\"p50\":%.0f,\"p99\":%.0f}}\n",
		    o->runs, (unsigned long long)n, MC_BP_RECORD, MC_BP_WINDOW,
		    mc_bench_median(durable, o->runs), mc_bench_median(raw, o->runs),
		    mc_bench_median(ratio, o->runs), mc_bench_median(p50, o->runs),
		    mc_bench_median(p99, o->runs), MC_BP_RATE, mc_bench_median(l50, o->runs),
		    mc_bench_median(l99, o->runs));
		return 0;
	}
	printf("mcpcore-bench persist: median of %d runs, %llu records of %u B (half compressible),\n"
	    "LZ4, WAL on; durable = fdatasync per batch, at most %u records unacknowledged\n",
	    o->runs, (unsigned long long)n, MC_BP_RECORD, MC_BP_WINDOW);
	printf("%-44s %12s %12s %12s\n", "", "writes/s", "ack p50 us", "ack p99 us");
	printf("%-44s %12.0f %12.0f %12.0f\n", "mcpcore durable (rings + worker + fsync)",
	    mc_bench_median(durable, o->runs), mc_bench_median(p50, o->runs),
	    mc_bench_median(p99, o->runs));
	printf("%-44s %12.0f %12s %12s\n", "raw RocksDB put, same options, no sync",
	    mc_bench_median(raw, o->runs), "-", "-");
	printf("ratio durable / raw (median of per-run ratios): %.2fx\n",
	    mc_bench_median(ratio, o->runs));
	printf("acknowledgement latency at %u writes/s: p50 %.0f us, p99 %.0f us\n", MC_BP_RATE,
	    mc_bench_median(l50, o->runs), mc_bench_median(l99, o->runs));
	return 0;
}
