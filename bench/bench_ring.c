/*
 * bench_ring.c - `mcpcore-bench ring`: frames across processes through
 * the real channel code (mc_frame_alloc/send, mc_recv/release) against a
 * raw ck_ring carrying slot indexes into a payload array, and against
 * Python's multiprocessing.Queue; plus one-way latency with a busy-polling
 * and with a sleeping consumer.
 *
 * A "64 B frame" is 64 bytes in shared memory per message: our 32-byte
 * frame header plus 32 bytes of payload, against a 64-byte payload slot in
 * the baseline.  Both sides of every pair do the same payload work: the
 * producer writes every payload byte, the consumer reads every payload byte
 * (a checksum), so the ratio isolates the cost of the transport.
 *
 * "Metrics on" is what the runtime does for the channel with metrics on:
 * both ends open their metrics blocks, and a third process plays the
 * monitor worker for the whole run: every 10 ms it advances the ring's
 * 64-bit frame totals and reads them (mc_ring.h, FRAME TOTALS), ten times
 * as often as the monitor advances them and a hundred times as often as it
 * computes rates.  Nothing on the frame path counts (mc_metrics.h, CHANNEL
 * FIGURES).  Not included, on or off: the worker loop's per-message work
 * (handling-time histogram, messages_handled_total), which belongs to
 * handling a message, not to moving a frame.  Every channel run also
 * checks that the ring's totals moved by exactly the frames sent.
 */
#define _GNU_SOURCE
#include "mc_bench.h"

#include <ck_pr.h>
#include <ck_ring.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mc_frame.h"
#include "mc_metrics.h"
#include "mc_proto.h"
#include "mc_ring.h"
#include "mc_util.h"

#ifndef MC_SOURCE_DIR
#define MC_SOURCE_DIR "."
#endif

#define MC_LAT_MAX 200000
#define MC_MON_PERIOD_NS 10000000ULL   /* the stand-in monitor's period: 10 ms */

enum mc_wait_mode { MC_WAIT_BUSY, MC_WAIT_SLEEP };

/* Results and start line shared by the two processes of one run. */
struct mc_run {
	volatile uint32_t consumer_ready;
	volatile uint32_t go;
	uint32_t mon_stop;      /* the stand-in monitor: stop now */
	uint32_t mon_failed;    /* it saw a total go backwards, or taken pass put */
	uint64_t mon_reads;     /* times it advanced and read the totals */
	uint64_t mon_max_gap;   /* longest time between two of its reads, ns */
	uint64_t t_start;
	uint64_t t_end;
	uint64_t checksum_seen;
	uint64_t nlat;
	uint64_t lat[MC_LAT_MAX];
};

struct mc_job {
	struct mc_seg *seg;
	struct mc_run *run;
	uint32_t size;          /* bytes per message in shared memory */
	uint32_t payload;       /* payload bytes of this pair (size, or size - frame header) */
	uint64_t count;
	uint64_t gap_ns;        /* latency runs: time between sends (0 = throughput) */
	enum mc_wait_mode wait;
	uint64_t spin_ns;       /* MC_WAIT_SLEEP: spin this long before sleeping */
	bool metrics;           /* channel pair: metrics blocks open, stand-in monitor running */
	/* raw baseline */
	ck_ring_t *ring;
	ck_ring_buffer_t *buf;
	uint8_t *slots;
	uint32_t nslots;
};

/*
 * Payload work, identical on both sides of every pair: the producer copies
 * a template and stamps word 0 with the frame's index; the consumer sums
 * every 8-byte word (so it reads every byte).  The expected total is known
 * in advance, which checks that nothing was lost, duplicated or torn.
 */
static uint64_t mc_template[128];

static void mc_template_init(void)
{
	for (int i = 0; i < 128; i++)
		mc_template[i] = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1);
}

static inline void mc_fill(uint8_t *p, uint32_t size, uint64_t v)
{
	memcpy(p, mc_template, size);
	memcpy(p, &v, sizeof(v));
}

static inline uint64_t mc_sum(const uint8_t *p, uint32_t size)
{
	uint64_t s = 0, w;

	for (uint32_t off = 0; off + 8 <= size; off += 8) {
		memcpy(&w, p + off, 8);
		s += w;
	}
	return s;
}

/* What the consumer's sums must add up to for `count` frames of `size`. */
static uint64_t mc_expected(uint32_t size, uint64_t count)
{
	uint64_t rest = 0;

	for (uint32_t i = 1; i < size / 8; i++)
		rest += mc_template[i];
	return count * (count - 1) / 2 + count * rest;
}

static void mc_wait_go(struct mc_run *run)
{
	while (!ck_pr_load_32((uint32_t *)&run->go))
		ck_pr_stall();
}

/* Spin until t (monotonic ns). */
static void mc_until(uint64_t t)
{
	while (mc_now_ns() < t)
		ck_pr_stall();
}

/* ---- mcpcore channel ---- */

static int mc_chan_producer(void *arg)
{
	struct mc_job *j = arg;
	struct mc_seg *seg = j->seg;
	uint64_t next;
	int err;

	mc_bench_pin(0);
	if (mc_seg_claim_worker(seg, MC_WORKER_ROUTER) != 0)
		return 1;
	if (j->metrics && mc_metrics_open(seg, MC_WORKER_ROUTER, MC_METRICS_RESET) != 0)
		return 1;
	mc_wait_go(j->run);
	next = mc_now_ns();
	j->run->t_start = next;
	for (uint64_t i = 0; i < j->count; i++) {
		struct mc_frame *f;

		if (j->gap_ns) {
			next += j->gap_ns;
			mc_until(next);
		}
		while ((f = mc_frame_alloc(seg, j->size - MC_FRAME_HDR_SIZE, MC_FK_RAW, &err)) == NULL)
			ck_pr_stall();        /* pool full: the consumer is behind */
		if (j->gap_ns) {
			uint64_t t = mc_now_ns();

			memcpy(f->f_data, &t, sizeof(t));
		} else {
			mc_fill(f->f_data, j->size - MC_FRAME_HDR_SIZE, i);
		}
		while (mc_frame_send(seg, f, 1ULL << MC_WORKER_STATE) == -EAGAIN)
			ck_pr_stall();        /* ring full */
	}
	return 0;
}

static int mc_chan_consumer(void *arg)
{
	struct mc_job *j = arg;
	struct mc_seg *seg = j->seg;
	uint64_t sum = 0, n = 0;
	struct mc_msg m;

	mc_bench_pin(1);
	if (mc_seg_claim_worker(seg, MC_WORKER_STATE) != 0)
		return 1;
	if (j->metrics && mc_metrics_open(seg, MC_WORKER_STATE, MC_METRICS_RESET) != 0)
		return 1;
	ck_pr_store_32((uint32_t *)&j->run->consumer_ready, 1);
	while (n < j->count) {
		if (mc_recv(seg, &m) != 0) {
			if (j->wait == MC_WAIT_SLEEP)
				mc_ring_wait(seg, j->spin_ns, 1000000000ULL);
			else
				ck_pr_stall();
			continue;
		}
		if (j->gap_ns) {
			uint64_t t, now = mc_now_ns();

			memcpy(&t, m.frame->f_data, sizeof(t));
			if (j->run->nlat < MC_LAT_MAX)
				j->run->lat[j->run->nlat++] = now - t;
		} else {
			sum += mc_sum(m.frame->f_data, m.frame->f_len);
		}
		mc_frame_release(seg, &m);
		n++;
	}
	j->run->t_end = mc_now_ns();
	j->run->checksum_seen = sum;
	return 0;
}

/*
 * The monitor worker's part, ten times as often as the worker does it:
 * advance the ring's 64-bit totals and read them every MC_MON_PERIOD_NS
 * (absolute deadlines, so the period does not drift) until told to stop.
 * Taken is read before put: a take never overtakes the put it follows.
 */
static int mc_chan_monitor(void *arg)
{
	struct mc_job *j = arg;
	struct mc_seg *seg = j->seg;
	struct mc_run *run = j->run;
	int idx = mc_ring_index(seg, MC_WORKER_ROUTER, MC_WORKER_STATE);
	uint64_t next = mc_now_ns(), last = 0, prev_put = 0, prev_taken = 0;

	if (idx < 0)
		return 1;
	while (!ck_pr_load_32(&run->mon_stop)) {
		uint64_t put, taken, now;
		struct timespec ts;

		mc_ring_mon_advance(seg, (uint32_t)idx);
		taken = mc_ring_frames_taken(seg, (uint32_t)idx);
		put = mc_ring_frames_put(seg, (uint32_t)idx);
		if (taken > put || put < prev_put || taken < prev_taken)
			run->mon_failed = 1;
		prev_put = put;
		prev_taken = taken;
		now = mc_now_ns();
		if (last != 0 && now - last > run->mon_max_gap)
			run->mon_max_gap = now - last;
		last = now;
		run->mon_reads++;
		next += MC_MON_PERIOD_NS;
		if (next < now)
			next = now + MC_MON_PERIOD_NS;     /* we were descheduled: no burst */
		ts.tv_sec = (time_t)(next / 1000000000ULL);
		ts.tv_nsec = (long)(next % 1000000000ULL);
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
	return 0;
}

/* ---- raw ck_ring baseline: index of a payload slot per entry ---- */

static int mc_raw_producer(void *arg)
{
	struct mc_job *j = arg;
	uint64_t next;

	mc_bench_pin(0);
	mc_wait_go(j->run);
	next = mc_now_ns();
	j->run->t_start = next;
	for (uint64_t i = 0; i < j->count; i++) {
		/* 2x slots per ring entry: a slot is never rewritten while read */
		uintptr_t slot = i % j->nslots;
		uint8_t *p = j->slots + slot * j->size;

		if (j->gap_ns) {
			next += j->gap_ns;
			mc_until(next);
		}
		while (ck_ring_size(j->ring) >= j->ring->mask)
			ck_pr_stall();
		if (j->gap_ns) {
			uint64_t t = mc_now_ns();

			memcpy(p, &t, sizeof(t));
		} else {
			mc_fill(p, j->size, i);
		}
		while (!ck_ring_enqueue_spsc(j->ring, j->buf, (void *)slot))
			ck_pr_stall();
	}
	return 0;
}

static int mc_raw_consumer(void *arg)
{
	struct mc_job *j = arg;
	uint64_t sum = 0, n = 0;
	void *v;

	mc_bench_pin(1);
	ck_pr_store_32((uint32_t *)&j->run->consumer_ready, 1);
	while (n < j->count) {
		const uint8_t *p;

		if (!ck_ring_dequeue_spsc(j->ring, j->buf, &v)) {
			ck_pr_stall();
			continue;
		}
		p = j->slots + (uintptr_t)v * j->size;
		if (j->gap_ns) {
			uint64_t t, now = mc_now_ns();

			memcpy(&t, p, sizeof(t));
			if (j->run->nlat < MC_LAT_MAX)
				j->run->lat[j->run->nlat++] = now - t;
		} else {
			sum += mc_sum(p, j->size);
		}
		n++;
	}
	j->run->t_end = mc_now_ns();
	j->run->checksum_seen = sum;
	return 0;
}

/* One run of a producer/consumer pair (for the channel with metrics on,
 * with the stand-in monitor beside them); fills run. */
static int mc_pair(struct mc_job *j, int (*prod)(void *), int (*cons)(void *))
{
	bool chan = prod == mc_chan_producer;
	int ring = mc_ring_index(j->seg, MC_WORKER_ROUTER, MC_WORKER_STATE);
	uint64_t put0 = 0, taken0 = 0;
	pid_t pc, pp, pm = -1;
	int rc = 0;

	if (ring < 0)
		return -1;
	memset(j->run, 0, offsetof(struct mc_run, lat));
	j->payload = chan ? j->size - MC_FRAME_HDR_SIZE : j->size;
	if (chan) {
		put0 = mc_ring_frames_put(j->seg, (uint32_t)ring);
		taken0 = mc_ring_frames_taken(j->seg, (uint32_t)ring);
	}
	pc = mc_bench_fork(cons, j);
	pp = mc_bench_fork(prod, j);
	if (chan && j->metrics)
		pm = mc_bench_fork(mc_chan_monitor, j);
	while (!ck_pr_load_32((uint32_t *)&j->run->consumer_ready))
		usleep(100);
	ck_pr_store_32((uint32_t *)&j->run->go, 1);
	rc |= mc_bench_join(pp);
	rc |= mc_bench_join(pc);
	if (pm > 0) {
		ck_pr_store_32(&j->run->mon_stop, 1);
		rc |= mc_bench_join(pm);
		if (j->run->mon_failed) {
			fprintf(stderr, "mcpcore-bench: a ring total went backwards\n");
			rc = -1;
		}
	}
	if (rc == 0 && !j->gap_ns && j->run->checksum_seen != mc_expected(j->payload, j->count)) {
		fprintf(stderr, "mcpcore-bench: checksum mismatch\n");
		rc = -1;
	}
	if (rc == 0 && chan && (mc_ring_frames_put(j->seg, (uint32_t)ring) - put0 != j->count ||
	    mc_ring_frames_taken(j->seg, (uint32_t)ring) - taken0 != j->count)) {
		fprintf(stderr, "mcpcore-bench: the ring's frame totals are off\n");
		rc = -1;
	}
	return rc;
}

/* Python multiprocessing.Queue msgs/s for `size` byte messages. */
static double mc_mpqueue(uint32_t size, uint64_t count)
{
	char cmd[512];
	double rate = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/bench/mpqueue.py %u %llu", MC_SOURCE_DIR,
	    size, (unsigned long long)count);
	p = popen(cmd, "r");
	if (p == NULL)
		return 0;
	if (fscanf(p, "%lf", &rate) != 1)
		rate = 0;
	pclose(p);
	return rate;
}

struct mc_tput {
	double chan, raw, pyq;
	double vs_raw, vs_pyq;  /* medians of the per-run ratios */
	double chan_metrics;    /* the channel again with metrics on */
	double metrics_ratio;   /* median of the per-run (metrics on / off) ratios */
	uint64_t mon_reads;     /* stand-in monitor: reads over all metrics-on runs */
	uint64_t mon_max_gap;   /* and the longest time between two of them, ns */
};

/* One channel run with metrics on or off: frames/s into *rate. */
static int mc_chan_run(struct mc_job *j, bool metrics, double *rate, struct mc_tput *t)
{
	int rc;

	j->metrics = metrics;
	rc = mc_pair(j, mc_chan_producer, mc_chan_consumer);
	j->metrics = false;
	*rate = rc ? 0 : (double)j->count * 1e9 / (double)(j->run->t_end - j->run->t_start);
	if (metrics) {
		t->mon_reads += j->run->mon_reads;
		if (j->run->mon_max_gap > t->mon_max_gap)
			t->mon_max_gap = j->run->mon_max_gap;
	}
	return rc;
}

static int mc_ring_tput(const struct mc_bench_opts *o, struct mc_job *j, uint32_t size,
    struct mc_tput *out)
{
	double chan[o->runs], raw[o->runs], pyq[o->runs], vr[o->runs], vq[o->runs];
	double chm[o->runs], vm[o->runs];

	memset(out, 0, sizeof(*out));
	j->size = size;
	j->gap_ns = 0;
	j->count = o->count;
	j->wait = MC_WAIT_SLEEP;    /* the workers' real strategy: spin 50 us, then sleep */
	j->spin_ns = 50000;
	/* one untimed warm-up of each, so neither pays first-touch page faults */
	if (mc_pair(j, mc_chan_producer, mc_chan_consumer) || mc_pair(j, mc_raw_producer, mc_raw_consumer))
		return -1;
	for (int r = 0; r < o->runs; r++) {
		/* metrics off and on back to back, in alternating order, so drift
		 * of the box between runs does not favour either side */
		if (mc_chan_run(j, r % 2 != 0, r % 2 ? &chm[r] : &chan[r], out) ||
		    mc_chan_run(j, r % 2 == 0, r % 2 ? &chan[r] : &chm[r], out))
			return -1;
		vm[r] = chm[r] / chan[r];
		if (mc_pair(j, mc_raw_producer, mc_raw_consumer))
			return -1;
		raw[r] = (double)j->count * 1e9 / (double)(j->run->t_end - j->run->t_start);
		pyq[r] = mc_mpqueue(size, o->quick ? 20000 : 200000);
		vr[r] = chan[r] / raw[r];
		vq[r] = pyq[r] > 0 ? chan[r] / pyq[r] : 0;
	}
	out->metrics_ratio = mc_bench_median(vm, o->runs);
	out->chan_metrics = mc_bench_median(chm, o->runs);
	out->vs_raw = mc_bench_median(vr, o->runs);
	out->vs_pyq = mc_bench_median(vq, o->runs);
	out->chan = mc_bench_median(chan, o->runs);
	out->raw = mc_bench_median(raw, o->runs);
	out->pyq = mc_bench_median(pyq, o->runs);
	return 0;
}

struct mc_lat {
	uint64_t p50, p99;
};

static int mc_ring_lat(const struct mc_bench_opts *o, struct mc_job *j, enum mc_wait_mode wait,
    int (*prod)(void *), int (*cons)(void *), struct mc_lat *out)
{
	double p50[o->runs], p99[o->runs];

	j->size = 64;
	j->wait = wait;
	j->spin_ns = 0;             /* sleeping: every frame finds the consumer asleep */
	j->gap_ns = wait == MC_WAIT_BUSY ? 5000 : 1000000;
	j->count = wait == MC_WAIT_BUSY ? (o->quick ? 20000 : 100000) : (o->quick ? 200 : 1000);
	for (int r = 0; r < o->runs; r++) {
		if (mc_pair(j, prod, cons))
			return -1;
		p50[r] = (double)mc_bench_percentile(j->run->lat, j->run->nlat, 50);
		p99[r] = (double)mc_bench_percentile(j->run->lat, j->run->nlat, 99);
	}
	out->p50 = (uint64_t)mc_bench_median(p50, o->runs);
	out->p99 = (uint64_t)mc_bench_median(p99, o->runs);
	return 0;
}

int mc_bench_ring(const struct mc_bench_opts *o)
{
	struct mc_config cfg;
	struct mc_seg seg;
	struct mc_job j = { 0 };
	struct mc_tput t64, t1k;
	struct mc_lat lbusy, lsleep, lraw;
	uint64_t mon_reads, mon_gap;
	int rc;

	mc_template_init();
	rc = mc_bench_segment(&seg, &cfg, "ring");
	if (rc)
		return 1;
	j.seg = &seg;
	j.run = mc_bench_shared(sizeof(struct mc_run));
	j.ring = mc_bench_shared(sizeof(ck_ring_t));
	j.buf = mc_bench_shared(seg.hdr->sh_ring_entries * sizeof(ck_ring_buffer_t));
	j.nslots = 2 * seg.hdr->sh_ring_entries;
	j.slots = mc_bench_shared((size_t)j.nslots * 1024);
	ck_ring_init(j.ring, seg.hdr->sh_ring_entries);   /* same ring size as ours */
	/* fault the baseline's memory in now, not during its timed runs */
	memset(j.slots, 0, (size_t)j.nslots * 1024);
	memset(j.buf, 0, seg.hdr->sh_ring_entries * sizeof(ck_ring_buffer_t));

	rc = mc_ring_tput(o, &j, 64, &t64) || mc_ring_tput(o, &j, 1024, &t1k) ||
	    mc_ring_lat(o, &j, MC_WAIT_BUSY, mc_chan_producer, mc_chan_consumer, &lbusy) ||
	    mc_ring_lat(o, &j, MC_WAIT_BUSY, mc_raw_producer, mc_raw_consumer, &lraw) ||
	    mc_ring_lat(o, &j, MC_WAIT_SLEEP, mc_chan_producer, mc_chan_consumer, &lsleep);
	mc_seg_destroy(&seg);
	if (rc)
		return 1;
	mon_reads = t64.mon_reads + t1k.mon_reads;
	mon_gap = t64.mon_max_gap > t1k.mon_max_gap ? t64.mon_max_gap : t1k.mon_max_gap;
	if (o->json) {
		printf("{\"bench\":\"ring\",\"runs\":%d,\"count\":%llu,"
		    "\"tput_64\":{\"mcpcore\":%.0f,\"ck_ring_slots\":%.0f,\"mp_queue\":%.0f,"
		    "\"vs_ck_ring\":%.3f,\"vs_mp_queue\":%.1f},"
		    "\"tput_1k\":{\"mcpcore\":%.0f,\"ck_ring_slots\":%.0f,\"mp_queue\":%.0f,"
		    "\"vs_ck_ring\":%.3f,\"vs_mp_queue\":%.1f},"
		    "\"metrics_on\":{\"tput_64\":%.0f,\"tput_1k\":%.0f,"
		    "\"overhead_64\":%.4f,\"overhead_1k\":%.4f,"
		    "\"monitor_reads\":%llu,\"monitor_max_gap_ms\":%.1f},"
		    "\"latency_ns\":{\"busy\":{\"p50\":%llu,\"p99\":%llu},"
		    "\"ck_ring_busy\":{\"p50\":%llu,\"p99\":%llu},"
		    "\"sleeping\":{\"p50\":%llu,\"p99\":%llu}}}\n",
		    o->runs, (unsigned long long)o->count, t64.chan, t64.raw, t64.pyq, t64.vs_raw,
		    t64.vs_pyq, t1k.chan, t1k.raw, t1k.pyq, t1k.vs_raw, t1k.vs_pyq,
		    t64.chan_metrics, t1k.chan_metrics, 1 - t64.metrics_ratio, 1 - t1k.metrics_ratio,
		    (unsigned long long)mon_reads, (double)mon_gap / 1e6,
		    (unsigned long long)lbusy.p50, (unsigned long long)lbusy.p99,
		    (unsigned long long)lraw.p50, (unsigned long long)lraw.p99,
		    (unsigned long long)lsleep.p50, (unsigned long long)lsleep.p99);
		return 0;
	}
	printf("mcpcore-bench ring: median of %d runs, %llu frames per throughput run\n"
	    "(a frame of N bytes: our 32-byte header + N-32 payload bytes; the raw ck_ring\n"
	    " baseline moves N-byte payload slots)\n",
	    o->runs, (unsigned long long)o->count);
	printf("%-34s %14s %14s %14s %9s %9s\n", "throughput (frames/s)", "mcpcore", "ck_ring slots",
	    "mp.Queue", "vs ck", "vs mpQ");
	printf("%-34s %14.0f %14.0f %14.0f %8.2fx %8.1fx\n", "64 B frames", t64.chan, t64.raw,
	    t64.pyq, t64.vs_raw, t64.vs_pyq);
	printf("%-34s %14.0f %14.0f %14.0f %8.2fx %8.1fx\n", "1 KiB frames", t1k.chan, t1k.raw,
	    t1k.pyq, t1k.vs_raw, t1k.vs_pyq);
	printf("(ratios are medians of the per-run ratios, each run measuring both sides)\n");
	printf("%-34s %14.0f %14s %14s %+8.2f%%\n", "64 B frames, metrics on", t64.chan_metrics,
	    "", "", (t64.metrics_ratio - 1) * 100);
	printf("%-34s %14.0f %14s %14s %+8.2f%%\n", "1 KiB frames, metrics on", t1k.chan_metrics,
	    "", "", (t1k.metrics_ratio - 1) * 100);
	printf("(metrics on vs off: median of the per-run ratios of back-to-back runs; on: both\n"
	    " ends' blocks open, a stand-in monitor read the ring totals %llu times, every\n"
	    " %.0f ms, longest gap %.1f ms)\n", (unsigned long long)mon_reads,
	    (double)MC_MON_PERIOD_NS / 1e6, (double)mon_gap / 1e6);
	printf("%-34s %14.2f %14.2f\n", "1 KiB frames, GB/s", t1k.chan * 1024 / 1e9,
	    t1k.raw * 1024 / 1e9);
	printf("\none-way latency, 64 B (ns)          %10s %10s\n", "p50", "p99");
	printf("%-34s %10llu %10llu\n", "mcpcore, busy-polling consumer",
	    (unsigned long long)lbusy.p50, (unsigned long long)lbusy.p99);
	printf("%-34s %10llu %10llu\n", "raw ck_ring, busy-polling consumer",
	    (unsigned long long)lraw.p50, (unsigned long long)lraw.p99);
	printf("%-34s %10llu %10llu\n", "mcpcore, sleeping consumer (futex)",
	    (unsigned long long)lsleep.p50, (unsigned long long)lsleep.p99);
	return 0;
}
