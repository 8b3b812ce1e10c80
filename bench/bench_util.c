/*
 * bench_util.c - segment, processes and statistics for the benchmarks.
 */
#define _GNU_SOURCE
#include "mc_bench.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>

int mc_bench_segment(struct mc_seg *seg, struct mc_config *cfg, const char *tag)
{
	return mc_bench_segment_sized(seg, cfg, tag, 64ULL << 20);
}

int mc_bench_segment_sized(struct mc_seg *seg, struct mc_config *cfg, const char *tag,
    uint64_t state_cache)
{
	char err[1024];
	struct mc_layout lay;
	pid_t swept;
	int rc;

	mc_config_defaults(cfg);
	snprintf(cfg->instance, sizeof(cfg->instance), "bench-%s-%d", tag, (int)getpid());
	snprintf(cfg->source, sizeof(cfg->source), "(mcpcore-bench)");
	cfg->max_clients = 2;
	cfg->ring_buffer_size = 64ULL << 20;
	cfg->message_queue_size = 512ULL << 20;
	cfg->state_cache_size = state_cache;
	cfg->shared_memory_size = cfg->ring_buffer_size + cfg->message_queue_size +
	    cfg->state_cache_size;
	cfg->core_protocol = cfg->core_routing = 1ULL << 20;
	cfg->core_state = 64ULL << 20;          /* the state worker's control block */
	cfg->learning_models = cfg->learning_training = cfg->learning_features = 1ULL << 20;
	cfg->storage_active_models = cfg->storage_history = 1ULL << 20;
	rc = mc_layout_compute(cfg, &lay, err, sizeof(err));
	if (rc == 0)
		rc = mc_seg_create(seg, cfg, &lay, &swept, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "mcpcore-bench: %s\n", err);
		return rc;
	}
	ck_pr_store_32(&seg->hdr->sh_state, MC_SEG_READY);
	return 0;
}

void mc_bench_pin(int cpu)
{
	cpu_set_t set;

	if (cpu >= sysconf(_SC_NPROCESSORS_ONLN))
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

pid_t mc_bench_fork(int (*fn)(void *), void *arg)
{
	pid_t pid = fork();

	if (pid == 0) {
		alarm(120);     /* a stuck pair must not spin forever */
		_exit(fn(arg));
	}
	return pid;
}

int mc_bench_join(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "mcpcore-bench: child %d failed (status %d)\n", (int)pid, status);
		return -1;
	}
	return 0;
}

static int mc_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int mc_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

double mc_bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), mc_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

uint64_t mc_bench_percentile(uint64_t *v, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), mc_cmp_u64);
	i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

void *mc_bench_shared(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int mc_bench_connect(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

int mc_bench_free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}
