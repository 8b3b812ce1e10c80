/*
 * bench_state.c - `mcpcore-bench state`: the state manager against Redis.
 *
 * In one run: lock-free reads of the shared table from one and from two
 * processes (ops/s, p50/p99), acknowledged writes through the real state
 * worker (pipelined ops/s, and one-at-a-time ack latency p50/p99), and
 * redis-benchmark -P 16 GET and SET against Debian's redis-server on
 * loopback as the baseline.  The state worker runs its real code
 * (mc_state_main) in a forked process; the persistence slot is marked
 * stopped so the change feed is not part of this measurement (the
 * persistence benchmark measures that path).
 */
#define _GNU_SOURCE
#include "mc_bench.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mc_frame.h"
#include "mc_proto.h"
#include "mc_ring.h"
#include "mc_state.h"
#include "mc_state_client.h"
#include "mc_util.h"
#include "mc_worker.h"

#define MC_KEYS_MAX  1000000
#define MC_VLEN      64
#define MC_LAT_N     200000

struct mc_sb_shared {
	uint64_t ops[2];
	uint64_t ns[2];
	uint64_t lat[MC_LAT_N];
	uint64_t nlat;
	volatile uint32_t go;
};

static char mc_keys[MC_KEYS_MAX][16];
static uint32_t mc_nkeys = 100000;    /* --keys */
static uint32_t mc_order[1 << 20];

static int mc_sb_worker(void *arg)
{
	struct mc_seg *seg = arg;
	struct mc_worker w;

	memset(&w, 0, sizeof(w));
	mc_bench_pin(1);
	if (mc_seg_claim_worker(seg, MC_WORKER_STATE) != 0)
		return 1;
	w.seg = *seg;
	w.cfg = &seg->hdr->sh_config;
	w.slot = MC_WORKER_STATE;
	w.name = "state";
	return mc_state_main(&w);
}

/* Reads in random order over the preloaded keys; optionally timing each. */
static int mc_sb_reader(struct mc_seg *seg, struct mc_sb_shared *sh, int idx, uint64_t n,
    bool timed)
{
	char buf[256];
	struct mc_state_value v;
	uint64_t t0, miss = 0;

	t0 = mc_now_ns();
	for (uint64_t i = 0; i < n; i++) {
		const char *k = mc_keys[mc_order[(i + (uint64_t)idx * 7919) & ((1 << 20) - 1)]];
		uint64_t a = timed ? mc_now_ns() : 0;

		if (mc_state_get(seg, "bench", 5, k, strlen(k), buf, sizeof(buf), &v) != 0)
			miss++;
		if (timed && sh->nlat < MC_LAT_N)
			sh->lat[sh->nlat++] = mc_now_ns() - a;
	}
	sh->ns[idx] = mc_now_ns() - t0;
	sh->ops[idx] = n;
	if (miss) {
		fprintf(stderr, "mcpcore-bench state: %" PRIu64 " reads missed\n", miss);
		return 1;
	}
	return 0;
}

struct mc_sb_read2 {
	struct mc_seg *seg;
	struct mc_sb_shared *sh;
	uint64_t n;
	int idx;
};

static int mc_sb_reader_proc(void *arg)
{
	struct mc_sb_read2 *r = arg;

	mc_bench_pin(r->idx);
	while (!ck_pr_load_32((uint32_t *)&r->sh->go))
		ck_pr_stall();
	return mc_sb_reader(r->seg, r->sh, r->idx, r->n, false);
}

/*
 * Pipelined PUTs of `n` ops (keys cycle over the preloaded set); returns
 * ops/s.  With window 1 and batch 1 it measures one-at-a-time latency.
 */
static double mc_sb_writes(struct mc_seg *seg, uint64_t n, unsigned batch, unsigned window,
    uint64_t *lat, uint64_t *nlat)
{
	struct mc_state_batch b = { 0 };
	uint64_t sent = 0, acked = 0, t0 = mc_now_ns();
	uint64_t sent_at[64];
	unsigned head = 0, tail = 0;
	char val[MC_VLEN];

	memset(val, 'v', sizeof(val));
	mc_state_batch_init(&b);
	while (acked < n) {
		struct mc_msg m;

		while (sent < n && tail - head < window) {
			mc_state_batch_init(&b);
			for (unsigned i = 0; i < batch && sent + b.n < n; i++) {
				const char *k = mc_keys[(sent + b.n) % mc_nkeys];
				struct mc_state_req r = { .kind = MCPCORE__STATE_OP__KIND__PUT, .ns = "bench",
				    .nslen = 5, .key = k, .klen = strlen(k), .value = val, .vlen = sizeof(val) };

				if (mc_state_batch_add(seg, &b, &r) < 0)
					break;
			}
			uint64_t nb = b.n;

			if (mc_state_batch_send(seg, &b) != 0)
				break;
			sent_at[tail++ % 64] = mc_now_ns();
			sent += nb;
		}
		if (mc_recv(seg, &m) != 0) {
			ck_pr_stall();
			continue;
		}
		if (m.frame->f_kind == MC_FK_STATE_REPLY) {
			Mcpcore__StateReply *rep = (Mcpcore__StateReply *)mc_proto_unpack(m.frame);

			if (rep != NULL) {
				acked += rep->n_results;
				if (lat != NULL && *nlat < MC_LAT_N)
					lat[(*nlat)++] = mc_now_ns() - sent_at[head % 64];
				head++;
				protobuf_c_message_free_unpacked(&rep->base, NULL);
			}
		}
		mc_frame_release(seg, &m);
	}
	return (double)n * 1e9 / (double)(mc_now_ns() - t0);
}

/* --- Redis baseline ---------------------------------------------------- */

/* requests/s of `test` (get|set) with -P 16; 0 if redis is not available. */
static double mc_redis(int port, const char *test, uint64_t n)
{
	char cmd[256], line[512];
	double rps = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "redis-benchmark -h 127.0.0.1 -p %d -P 16 -n %" PRIu64
	    " -r %u -d %d -t %s --csv 2>/dev/null", port, n, mc_nkeys, MC_VLEN, test);
	p = popen(cmd, "r");
	if (p == NULL)
		return 0;
	while (fgets(line, sizeof(line), p) != NULL) {
		char name[64];

		/* "SET","123456.78",... (the header line does not parse) */
		if (sscanf(line, "\"%63[^\"]\",\"%lf\"", name, &rps) == 2)
			break;
		rps = 0;
	}
	pclose(p);
	return rps;
}

static pid_t mc_redis_start(int port)
{
	char portbuf[16];
	pid_t pid;

	snprintf(portbuf, sizeof(portbuf), "%d", port);
	pid = fork();
	if (pid == 0) {
		execlp("redis-server", "redis-server", "--port", portbuf, "--bind", "127.0.0.1",
		    "--save", "", "--appendonly", "no", "--loglevel", "warning", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100; i++) {     /* wait until it answers */
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
		    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;

		if (fd >= 0)
			close(fd);
		if (ok)
			return pid;
		usleep(20000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

int mc_bench_state(const struct mc_bench_opts *o)
{
	struct mc_config cfg;
	struct mc_seg seg;
	struct mc_sb_shared *sh = mc_bench_shared(sizeof(*sh));
	uint64_t nreads = o->quick ? 2000000 : 20000000, nwrites = o->quick ? 200000 : 4000000;
	double r1[o->runs], r2[o->runs], wr[o->runs], rg[o->runs], rs[o->runs];
	uint64_t p50r = 0, p99r = 0, p50w = 0, p99w = 0, p50wp = 0, p99wp = 0;
	uint64_t wlat[1024], nwlat = 0;
	pid_t worker, redis;
	int port = mc_bench_free_port(), rc = 1;

	/* the default config's table (2 GiB: 4 Mi entries), so load is realistic */
	if (sh == NULL || mc_bench_segment_sized(&seg, &cfg, "state", 2ULL << 30))
		return 1;
	if (o->keys) {
		if (o->keys > MC_KEYS_MAX) {
			fprintf(stderr, "mcpcore-bench state: --keys at most %d\n", MC_KEYS_MAX);
			return 64;
		}
		mc_nkeys = (uint32_t)o->keys;
	}
	/* the feed's consumer is not part of this benchmark */
	ck_pr_store_32(&seg.slots[MC_WORKER_PERSISTENCE].sl_state, MC_SLOT_STOPPED);
	for (uint32_t i = 0; i < mc_nkeys; i++)
		snprintf(mc_keys[i], sizeof(mc_keys[i]), "key:%07u", i);
	for (uint32_t i = 0, x = 2463534242u; i < (1 << 20); i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		mc_order[i] = x % mc_nkeys;
	}
	worker = mc_bench_fork(mc_sb_worker, &seg);
	if (mc_seg_claim_worker(&seg, MC_WORKER_ROUTER) != 0)
		goto out;
	mc_bench_pin(0);
	/* preload every key (and warm the worker up) */
	mc_sb_writes(&seg, mc_nkeys, 256, 8, NULL, NULL);
	redis = port ? mc_redis_start(port) : -1;
	for (int r = 0; r < o->runs; r++) {
		struct mc_sb_read2 a = { &seg, sh, nreads / 2, 0 }, bb = { &seg, sh, nreads / 2, 1 };
		pid_t pa, pb;

		/* one process */
		if (mc_sb_reader(&seg, sh, 0, nreads, false))
			goto out;
		r1[r] = (double)sh->ops[0] * 1e9 / (double)sh->ns[0];
		/* two processes, one per core */
		sh->go = 0;
		pa = mc_bench_fork(mc_sb_reader_proc, &a);
		pb = mc_bench_fork(mc_sb_reader_proc, &bb);
		usleep(10000);
		ck_pr_store_32((uint32_t *)&sh->go, 1);
		if (mc_bench_join(pa) || mc_bench_join(pb))
			goto out;
		r2[r] = (double)(sh->ops[0] + sh->ops[1]) * 1e9 /
		    (double)(sh->ns[0] > sh->ns[1] ? sh->ns[0] : sh->ns[1]);
		/* acknowledged writes, pipelined */
		wr[r] = mc_sb_writes(&seg, nwrites, 256, 8, NULL, NULL);
		rg[r] = redis > 0 ? mc_redis(port, "get", o->quick ? 200000 : 2000000) : 0;
		rs[r] = redis > 0 ? mc_redis(port, "set", o->quick ? 200000 : 2000000) : 0;
	}
	/* latencies: reads timed one by one; writes one at a time, and pipelined batches */
	sh->nlat = 0;
	mc_sb_reader(&seg, sh, 0, MC_LAT_N, true);
	p50r = mc_bench_percentile(sh->lat, sh->nlat, 50);
	p99r = mc_bench_percentile(sh->lat, sh->nlat, 99);
	sh->nlat = 0;
	mc_sb_writes(&seg, o->quick ? 2000 : 20000, 1, 1, sh->lat, &sh->nlat);
	p50w = mc_bench_percentile(sh->lat, sh->nlat, 50);
	p99w = mc_bench_percentile(sh->lat, sh->nlat, 99);
	mc_sb_writes(&seg, 256 * 1000, 256, 8, wlat, &nwlat);
	p50wp = mc_bench_percentile(wlat, nwlat, 50);
	p99wp = mc_bench_percentile(wlat, nwlat, 99);
	if (redis > 0) {
		kill(redis, SIGTERM);
		waitpid(redis, NULL, 0);
	}
	{
		double m1 = mc_bench_median(r1, o->runs), m2 = mc_bench_median(r2, o->runs);
		double mw = mc_bench_median(wr, o->runs), mg = mc_bench_median(rg, o->runs);
		double ms = mc_bench_median(rs, o->runs);

		if (o->json) {
			printf("{\"bench\":\"state\",\"runs\":%d,\"reads_1proc\":%.0f,\"reads_2proc\":%.0f,"
			    "\"read_p50_ns\":%" PRIu64 ",\"read_p99_ns\":%" PRIu64 ",\"writes_acked\":%.0f,"
			    "\"write_p50_ns\":%" PRIu64 ",\"write_p99_ns\":%" PRIu64 ","
			    "\"batch_ack_p50_ns\":%" PRIu64 ",\"batch_ack_p99_ns\":%" PRIu64 ","
			    "\"redis_get\":%.0f,\"redis_set\":%.0f}\n", o->runs, m1, m2, p50r, p99r, mw,
			    p50w, p99w, p50wp, p99wp, mg, ms);
		} else {
			printf("mcpcore-bench state: median of %d runs (%" PRIu64 " reads, %" PRIu64
			    " writes per run; %u keys, %d-byte values)\n", o->runs, nreads, nwrites,
			    mc_nkeys, MC_VLEN);
			printf("%-44s %14s %10s %10s\n", "", "ops/s", "p50 ns", "p99 ns");
			printf("%-44s %14.0f %10" PRIu64 " %10" PRIu64 "\n", "reads, 1 process (shared memory)",
			    m1, p50r, p99r);
			printf("%-44s %14.0f\n", "reads, 2 processes", m2);
			printf("%-44s %14.0f %10" PRIu64 " %10" PRIu64 "\n",
			    "acknowledged writes (256/frame, 8 in flight)", mw, p50wp, p99wp);
			printf("%-44s %14s %10" PRIu64 " %10" PRIu64 "\n", "acknowledged write, one at a time",
			    "", p50w, p99w);
			printf("%-44s %14.0f\n", "redis-benchmark -P 16 GET", mg);
			printf("%-44s %14.0f\n", "redis-benchmark -P 16 SET", ms);
			if (mg > 0 && ms > 0)
				printf("ratios: reads %.1fx Redis GET (1 process), writes %.1fx Redis SET\n",
				    m1 / mg, mw / ms);
			else
				printf("ratios: redis-server/redis-benchmark not available\n");
			printf("(batch p50/p99: time from sending a 256-op frame to its reply)\n");
		}
	}
	rc = 0;
out:
	kill(worker, SIGTERM);
	waitpid(worker, NULL, 0);
	mc_seg_destroy(&seg);
	return rc;
}
