/*
 * mc_bench.h - shared plumbing of `mcpcore-bench` subcommands: a private
 * segment, two pinned processes, statistics.
 *
 * Every benchmark measures the project's code and, in the same run, a
 * baseline, and prints medians of several runs and their ratio.  Figures
 * are only comparable within one run on one box.
 */
#ifndef MC_BENCH_H
#define MC_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mc_config.h"
#include "mc_layout.h"
#include "mc_seg.h"

struct mc_bench_opts {
	int runs;               /* repetitions; medians are reported */
	uint64_t count;         /* messages per throughput run */
	bool json;              /* machine-readable summary on stdout */
	bool quick;             /* CI smoke: small counts */
	uint64_t keys;          /* state: key space (0 = the benchmark's default) */
};

/* A private segment with small regions, created by the calling process. */
int mc_bench_segment(struct mc_seg *seg, struct mc_config *cfg, const char *tag);
/* Same, with a shared.state_cache of `state_cache` bytes (sparse: untouched
 * pages cost nothing). */
int mc_bench_segment_sized(struct mc_seg *seg, struct mc_config *cfg, const char *tag,
    uint64_t state_cache);

/* Pin the calling process to one CPU (ignored if the box has fewer). */
void mc_bench_pin(int cpu);

/* Fork a child running fn(arg); returns its pid. */
pid_t mc_bench_fork(int (*fn)(void *), void *arg);

/* Wait for a child and require exit 0; returns 0 or -1. */
int mc_bench_join(pid_t pid);

double mc_bench_median(double *v, int n);

/* Percentile p (0..100) of n samples (sorts in place). */
uint64_t mc_bench_percentile(uint64_t *v, size_t n, double p);

/* Anonymous shared memory for baselines and results. */
void *mc_bench_shared(size_t size);

/* A loopback TCP port free right now (0 if none could be found). */
int mc_bench_free_port(void);

/* A blocking TCP connection to 127.0.0.1:port: the fd, or -errno. */
int mc_bench_connect(int port);

/* CPU time of a server's processes (bench_cpu.c): a root process and its
 * direct children, each with user + system time of all its threads. */
#define MC_BENCH_CPU_PROCS 16

struct mc_bench_cpu {
	int n;
	pid_t pid[MC_BENCH_CPU_PROCS];
	char name[MC_BENCH_CPU_PROCS][24];      /* "protocol", "supervisor", "nginx" ... */
	uint64_t ns[MC_BENCH_CPU_PROCS];
};

/* Snapshot root and its children; 0, or -1 if none could be read. */
int mc_bench_cpu_snap(pid_t root, struct mc_bench_cpu *out);

/* CPU ns used between two snapshots of the same root: all its processes,
 * or only those called `name` (NULL: all). */
uint64_t mc_bench_cpu_used(const struct mc_bench_cpu *before, const struct mc_bench_cpu *after,
    const char *name);

/* What an open-loop run gave (bench_pace.c); latencies in microseconds. */
struct mc_pace_result {
	double rps;                     /* answers per second */
	uint64_t sent, answered, errors;
	double p50, p99, p999, max;
};

/*
 * Offer `rate` requests/s for `secs` seconds to 127.0.0.1:port, open loop:
 * request k (the raw bytes req[req_len], an HTTP/1.1 request) is due at
 * t0 + k / rate on connection k mod conns (keep-alive), and its latency
 * runs from that due time to its complete answer, however long it had to
 * wait for an earlier answer on its connection.  Answers must be 200s
 * with a Content-Length.  0, or a negative errno (connect, a broken
 * connection, an answer that is not a 200).
 */
int mc_bench_pace(int port, const char *req, size_t req_len, int conns, double rate,
    double secs, struct mc_pace_result *out);

int mc_bench_ring(const struct mc_bench_opts *o);
int mc_bench_persist(const struct mc_bench_opts *o);
int mc_bench_state(const struct mc_bench_opts *o);
/* Runs the built `mcpcore run`, wrk and nginx as child processes. */
int mc_bench_mcp(const struct mc_bench_opts *o);
int mc_bench_pipeline(const struct mc_bench_opts *o);
int mc_bench_handle(const struct mc_bench_opts *o);

#endif /* MC_BENCH_H */
