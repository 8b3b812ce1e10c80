/*
 * bench_main.c - `mcpcore-bench`: the project's benchmarks, each against
 * a baseline measured in the same run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_bench.h"
#include "mc_log.h"

static const char mc_bench_usage[] =
"usage: mcpcore-bench BENCH [--runs N] [--count N] [--quick] [--json]\n"
"\n"
"  state   state manager reads and acknowledged writes vs redis-benchmark -P 16\n"
"  pipeline  state_get frames through router and state worker and back, msg/s\n"
"  ring    frames across processes: throughput (64 B, 1 KiB) vs raw ck_ring\n"
"          and Python multiprocessing.Queue; one-way latency p50/p99\n"
"  persist durable writes through the rings and the persistence worker (fsync\n"
"          per batch) vs raw RocksDB puts without sync; ack latency p50/p99\n"
"          (--count is capped at 400000 records of 256 B)\n"
"  mcp     tools/call state_get over Streamable HTTP (wrk, keep-alive) vs nginx\n"
"          returning the same body; req/s, p50/p90/p99, and p50/p99 at half load\n"
"  handle  the protocol worker's own work on one state_get (HTTP parse and\n"
"          mc_mcp_handle, no sockets) vs jansson's load + dump of the same texts\n"
"\n"
"  --runs N    repetitions (median reported), default 5\n"
"  --count N   frames per throughput run, default 5000000\n"
"  --keys N    state: size of the key space (default 100000), also for Redis\n"
"  --quick     small counts (CI smoke run)\n"
"  --json      one JSON object on stdout\n";

int main(int argc, char **argv)
{
	struct mc_bench_opts o = { .runs = 5, .count = 5000000 };

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(mc_bench_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 64 : 0;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
			o.runs = atoi(argv[++i]);
		else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
			o.count = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--keys") == 0 && i + 1 < argc)
			o.keys = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--quick") == 0)
			o.quick = true;
		else if (strcmp(argv[i], "--json") == 0)
			o.json = true;
		else {
			fprintf(stderr, "mcpcore-bench: unknown option '%s'\n%s", argv[i], mc_bench_usage);
			return 64;
		}
	}
	if (o.quick) {
		o.runs = o.runs > 3 ? 3 : o.runs;
		o.count = o.count > 200000 ? 200000 : o.count;
	}
	if (o.runs < 1 || o.runs > 100 || o.count < 1000) {
		fprintf(stderr, "mcpcore-bench: --runs 1..100, --count >= 1000\n");
		return 64;
	}
	mc_log_init("bench", "warn");
	if (strcmp(argv[1], "ring") == 0)
		return mc_bench_ring(&o);
	if (strcmp(argv[1], "persist") == 0)
		return mc_bench_persist(&o);
	if (strcmp(argv[1], "state") == 0)
		return mc_bench_state(&o);
	if (strcmp(argv[1], "mcp") == 0)
		return mc_bench_mcp(&o);
	if (strcmp(argv[1], "pipeline") == 0)
		return mc_bench_pipeline(&o);
	if (strcmp(argv[1], "handle") == 0)
		return mc_bench_handle(&o);
	fprintf(stderr, "mcpcore-bench: unknown benchmark '%s'\n%s", argv[1], mc_bench_usage);
	return 64;
}
