/*
 * bench_cpu.c - CPU time of a server's processes, for the benchmarks that
 * drive a server from outside (contract in mc_bench.h: mc_bench_cpu_*).
 *
 * Why: on a 2-core box the load generator and the server share the cores,
 * so a rate says little about where the time went.  CPU per request, per
 * process, does: it is what a change to the server can move, and it adds
 * up to the cores the run had (what it leaves over is idle).
 *
 * Each process's user + system time is read from /proc/PID/stat, which
 * counts every thread of the process (RocksDB's pool included), in clock
 * ticks (10 ms: over a 5 s run the error is under 1 %).  A server is a
 * root process and its direct children (the supervisor and its workers;
 * nginx without a master is the root alone).
 */
#define _GNU_SOURCE
#include "mc_bench.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One process's ppid and CPU time (ns); -1 if it cannot be read. */
static int mc_bench_cpu_stat(pid_t pid, pid_t *ppid, uint64_t *ns)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	int pp;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* "pid (comm) state ppid ...": comm may hold spaces and parentheses */
	p = strrchr(buf, ')');
	if (p == NULL || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
	    &pp, &ut, &st) != 3)
		return -1;
	*ppid = pp;
	*ns = (ut + st) * (1000000000ULL / (uint64_t)sysconf(_SC_CLK_TCK));
	return 0;
}

/* The name a process goes by here: a worker's kind, else its program. */
static void mc_bench_cpu_name(pid_t pid, char *out, size_t cap)
{
	char path[64], buf[256], *arg[3] = { NULL, NULL, NULL };
	size_t n;
	FILE *f;

	snprintf(out, cap, "pid %d", (int)pid);
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	for (size_t i = 0, k = 0; i < n && k < 3; k++) {
		arg[k] = buf + i;
		i += strlen(buf + i) + 1;
	}
	if (arg[1] != NULL && arg[2] != NULL && strcmp(arg[1], "worker") == 0)
		snprintf(out, cap, "%s", arg[2]);                    /* mcpcore worker KIND */
	else if (arg[1] != NULL && strcmp(arg[1], "run") == 0)
		snprintf(out, cap, "supervisor");                    /* mcpcore run */
	else if (arg[0] != NULL && arg[0][0] != '\0')
		snprintf(out, cap, "%s", strrchr(arg[0], '/') ? strrchr(arg[0], '/') + 1 : arg[0]);
}

int mc_bench_cpu_snap(pid_t root, struct mc_bench_cpu *out)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t pp;

	memset(out, 0, sizeof(*out));
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL && out->n < MC_BENCH_CPU_PROCS) {
		pid_t pid = (pid_t)atoi(e->d_name);
		uint64_t ns;

		if (pid <= 0 || mc_bench_cpu_stat(pid, &pp, &ns) != 0 || (pid != root && pp != root))
			continue;
		out->pid[out->n] = pid;
		out->ns[out->n] = ns;
		mc_bench_cpu_name(pid, out->name[out->n], sizeof(out->name[0]));
		out->n++;
	}
	closedir(d);
	return out->n > 0 ? 0 : -1;
}

uint64_t mc_bench_cpu_used(const struct mc_bench_cpu *before, const struct mc_bench_cpu *after,
    const char *name)
{
	uint64_t sum = 0;

	/* by pid: a process that came or went during the run counts from zero
	 * or not at all (a restarted worker's first life is lost: rare, and
	 * only in runs that would be thrown away anyway) */
	for (int i = 0; i < after->n; i++) {
		uint64_t was = 0;

		if (name != NULL && strcmp(after->name[i], name) != 0)
			continue;
		for (int j = 0; j < before->n; j++)
			if (before->pid[j] == after->pid[i])
				was = before->ns[j];
		sum += after->ns[i] > was ? after->ns[i] - was : 0;
	}
	return sum;
}
