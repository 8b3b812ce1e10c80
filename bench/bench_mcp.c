/*
 * bench_mcp.c - `mcpcore-bench mcp`: the MCP front door (protocol worker)
 * against nginx answering a fixed body, both driven by the same wrk.
 *
 * What it measures: requests/s and latency of `tools/call state_get` over
 * Streamable HTTP on keep-alive connections - the whole path of a read:
 * HTTP parsing, Host/session checks (the session record read from shared
 * memory), JSON-RPC parsing, schema check, the lock-free state read, the
 * JSON response - against the cheapest thing an HTTP server can do on the
 * same box: nginx's `return 200 '<the same body>'`.  The ratio says how
 * much of an HTTP server's speed the MCP layer keeps.
 *
 * How:
 *   - the runtime is the built `mcpcore run` (next to this program, or
 *     $MCPCORE_BIN) on a config written to a temporary directory (small
 *     regions like config/test.toml, free loopback ports, log level warn);
 *     the benchmark initializes a session (initialize, then
 *     notifications/initialized, with Mcp-Session-Id and
 *     MCP-Protocol-Version), writes one key with tools/call state_set and
 *     reads it once with state_get: that response body is what nginx will
 *     return, so both sides send the same bytes;
 *   - nginx (/usr/sbin/nginx, as the current user, config in the same
 *     directory: no daemon, no master, access log off) listens on another
 *     loopback port;
 *   - wrk (Debian's, -t1 -c100) runs bench/mcp_state_get.lua, which POSTs
 *     the same state_get request to either; one thread and one nginx
 *     worker because the box has 2 cores: one for the client, one for the
 *     server (the runtime's other workers sit idle during reads);
 *   - --runs N alternates mcpcore and nginx runs (which goes first
 *     alternates too) after a warm-up of each; reported: medians of req/s
 *     and of wrk's p50/p90/p99, and the median of the per-run ratios;
 *   - then the latency point, as many runs as above, alternating the same
 *     way: half of the lower of the two medians,
 *     offered to each server by bench_pace.c (mc_bench_pace): the same
 *     request bytes on 100 keep-alive connections, evenly spaced, open
 *     loop, latency from each request's due time to its answer (waits
 *     behind an earlier answer included, as wrk2 counts).  Debian's wrk
 *     has no fixed-rate mode, and pacing it with its delay() hook sends
 *     bursts (its timers tick in whole milliseconds) whose queueing the
 *     p99 then measures.  Reported: medians of rate achieved and of
 *     p50/p99/p99.9 for both servers, each run's p99 (a single run's tail
 *     is at the mercy of one stall of the box), and the unloaded round
 *     trip (wrk, one connection, one run).
 *   - CPU per request of every full-load run (bench_cpu.c): each server
 *     process's user + system time (the runtime's supervisor and workers,
 *     RocksDB's threads included; nginx), wrk's by rusage, and the cores
 *     the two kept busy (what is left of the box's cores was idle);
 *     medians over the runs, per process for the runtime;
 *   - --json prints one object; --quick shortens the runs (2 s, 3 runs).
 *
 * Figures compare only within one run on one box (2 vCPUs here: wrk and
 * the server share them, so neither side gets a quiet machine).
 */
#define _GNU_SOURCE
#include "mc_bench.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mc_util.h"

#define MC_BM_LUA       MC_SOURCE_DIR "/bench/mcp_state_get.lua"
#define MC_BM_WRK       "wrk"
#define MC_BM_NGINX     "/usr/sbin/nginx"
#define MC_BM_THREADS   1
#define MC_BM_CONNS     100
#define MC_BM_NS        "bench"
#define MC_BM_KEY       "k"
#define MC_BM_VALUE_LEN 64
#define MC_BM_RESP_MAX  65536
#define MC_BM_START_MS  20000           /* a server must listen within this */

/* One wrk run, as the script's done() line reports it. */
struct mc_bm_wrk {
	double rps;
	double bytes_per_req;           /* response size, headers included */
	uint64_t requests, status_errors, socket_errors;
	double p50, p90, p99, max;      /* microseconds */
	double secs;                    /* how long it ran */
	uint64_t cpu_ns;                /* wrk's own CPU time (rusage) */
};

/* A side of the comparison. */
struct mc_bm_side {
	const char *name;
	int port;
	double rps[100], p50[100], p90[100], p99[100], bpr;
	/* the latency point, per run (open loop, bench_pace.c) */
	double half_rps[100], half_p50[100], half_p99[100], half_p999[100];
	struct mc_bm_wrk one;           /* one connection, no pacing */
	uint64_t errors;
	/* CPU per request (us) of the full-load runs: the server's processes,
	 * wrk, and the cores both kept busy; by[] per process name */
	pid_t pid;                      /* the server's root process */
	double cpu_srv[100], cpu_wrk[100], busy[100];
	int nby;
	char by_name[MC_BENCH_CPU_PROCS][24];
	double by[MC_BENCH_CPU_PROCS][100];
};

/* ---- processes and ports -------------------------------------------------- */

/* Wait until something listens on port, or pid exits, or time is up. */
static int mc_bm_wait_listening(pid_t pid, int port)
{
	for (int ms = 0; ms < MC_BM_START_MS; ms += 20) {
		int fd = mc_bench_connect(port);

		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -ECHILD;
		usleep(20000);
	}
	return -ETIMEDOUT;
}

/* Start argv[0] with stdout and stderr to log. */
static pid_t mc_bm_spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* SIGTERM, then SIGKILL after 10 s. */
static void mc_bm_stop(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	for (int i = 0; i < 1000; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static int mc_bm_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static int mc_bm_write(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	int rc = 0;

	if (f == NULL)
		return -errno;
	if (fputs(text, f) < 0)
		rc = -EIO;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* ---- a minimal HTTP client for the set-up -------------------------------- */

/*
 * POST body to /mcp on a fresh connection (Connection: close) and read
 * the answer to EOF.  sid: the session header to send, or NULL.  Fills
 * *status, sid_out (the Mcp-Session-Id answered, "" if none; may be
 * NULL) and resp (the body, NUL-terminated).  0 or -errno.
 */
static int mc_bm_post(int port, const char *sid, const char *body, int *status,
    char sid_out[64], char *resp, size_t cap)
{
	char *buf = malloc(MC_BM_RESP_MAX), *head_end, *p;
	size_t len = 0;
	int fd, n, rc = 0;

	if (buf == NULL)
		return -ENOMEM;
	fd = mc_bench_connect(port);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	n = snprintf(buf, MC_BM_RESP_MAX, "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
	    "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
	    "MCP-Protocol-Version: 2025-06-18\r\n%s%s%sContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n%s", port, sid ? "Mcp-Session-Id: " : "", sid ? sid : "",
	    sid ? "\r\n" : "", strlen(body), body);
	if (n < 0 || n >= MC_BM_RESP_MAX || write(fd, buf, (size_t)n) != n) {
		rc = -EIO;
		goto out;
	}
	while (len < MC_BM_RESP_MAX - 1) {
		ssize_t r = read(fd, buf + len, MC_BM_RESP_MAX - 1 - len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	head_end = strstr(buf, "\r\n\r\n");
	if (head_end == NULL || sscanf(buf, "HTTP/1.1 %d", status) != 1) {
		rc = -EPROTO;
		goto out;
	}
	*head_end = '\0';
	if (sid_out != NULL) {
		sid_out[0] = '\0';
		p = strcasestr(buf, "\r\nMcp-Session-Id: ");
		if (p != NULL)
			sscanf(p + 18, "%63[0-9a-fA-F]", sid_out);
	}
	snprintf(resp, cap, "%s", head_end + 4);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

/*
 * Initialize a session and write the key; returns the state_get response
 * body in resp (what nginx will answer).  0, or -1 with a message printed.
 */
static int mc_bm_session(int port, char sid[64], char *resp, size_t cap)
{
	char body[512], value[MC_BM_VALUE_LEN + 1];
	int st = 0, rc;

	rc = mc_bm_post(port, NULL, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\","
	    "\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},"
	    "\"clientInfo\":{\"name\":\"mcpcore-bench\",\"version\":\"1\"}}}", &st, sid, resp, cap);
	if (rc || st != 200 || sid[0] == '\0') {
		fprintf(stderr, "mcpcore-bench mcp: initialize: %s, HTTP %d: %s\n",
		    rc ? mc_strerror(rc) : "no session id", st, resp);
		return -1;
	}
	rc = mc_bm_post(port, sid, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}",
	    &st, NULL, resp, cap);
	if (rc || st != 202) {
		fprintf(stderr, "mcpcore-bench mcp: notifications/initialized: HTTP %d %s\n", st, resp);
		return -1;
	}
	memset(value, 'v', MC_BM_VALUE_LEN);
	value[MC_BM_VALUE_LEN] = '\0';
	snprintf(body, sizeof(body), "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\","
	    "\"params\":{\"name\":\"state_set\",\"arguments\":{\"namespace\":\"%s\",\"key\":\"%s\","
	    "\"value\":\"%s\"}}}", MC_BM_NS, MC_BM_KEY, value);
	rc = mc_bm_post(port, sid, body, &st, NULL, resp, cap);
	if (rc || st != 200 || strstr(resp, "\"isError\":true") != NULL) {
		fprintf(stderr, "mcpcore-bench mcp: state_set: HTTP %d %s\n", st, resp);
		return -1;
	}
	/* the request the wrk script sends (bench/mcp_state_get.lua) */
	snprintf(body, sizeof(body), "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
	    "\"params\":{\"name\":\"state_get\",\"arguments\":{\"namespace\":\"%s\",\"key\":\"%s\"}}}",
	    MC_BM_NS, MC_BM_KEY);
	rc = mc_bm_post(port, sid, body, &st, NULL, resp, cap);
	if (rc || st != 200 || strstr(resp, value) == NULL) {
		fprintf(stderr, "mcpcore-bench mcp: state_get: HTTP %d %s\n", st, resp);
		return -1;
	}
	return 0;
}

/* ---- the servers ------------------------------------------------------------ */

static pid_t mc_bm_runtime(const char *dir, int port, int mport)
{
	char cfg[8192], path[512], log[512], instance[64];
	char *argv[] = { NULL, "run", "--config", path, "--instance", instance, NULL };
	char exe[512];
	const char *bin = getenv("MCPCORE_BIN");
	pid_t pid;
	int rc;

	if (bin == NULL) {
		/* the built mcpcore sits next to mcpcore-bench (<build>/bin) */
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 16);

		if (n <= 0)
			return -1;
		exe[n] = '\0';
		snprintf(strrchr(exe, '/') + 1, 16, "mcpcore");
		bin = exe;
	}
	argv[0] = (char *)bin;
	snprintf(instance, sizeof(instance), "bench-mcp-%d", (int)getpid());
	snprintf(path, sizeof(path), "%s/mcpcore.toml", dir);
	snprintf(log, sizeof(log), "%s/runtime.log", dir);
	/* config/test.toml's small regions; nothing but the front door is used */
	snprintf(cfg, sizeof(cfg),
	    "# written by mcpcore-bench mcp\n"
	    "instance = \"bench-mcp\"\n"
	    "[core]\nstate_cache_size = 8388608\n"
	    "[memory]\nshared_memory_size = 29360128\nring_buffer_size = 4194304\n"
	    "message_queue_size = 16777216\nmax_message_size = 262144\nmax_clients = 4\n"
	    "[regions]\ncore.protocol = 1048576\ncore.state = 1048576\ncore.routing = 1048576\n"
	    "learning.models = 1048576\nlearning.training = 1048576\n"
	    "learning.features = 1048576\nstorage.active_models = 1048576\n"
	    "storage.history = 1048576\n"
	    "[persistence]\nrocksdb_path = \"%s/data\"\n"
	    "[log]\nlevel = \"warn\"\n"
	    "[protocol]\nlisten = \"127.0.0.1:%d\"\n"
	    "[monitor]\nlisten = \"127.0.0.1:%d\"\n", dir, port, mport);
	if (mc_bm_write(path, cfg) != 0)
		return -1;
	pid = mc_bm_spawn(argv, log);
	if (pid < 0)
		return -1;
	rc = mc_bm_wait_listening(pid, port);
	if (rc) {
		fprintf(stderr, "mcpcore-bench mcp: %s run did not listen on %d (%s); see %s\n", bin,
		    port, mc_strerror(rc), log);
		mc_bm_stop(pid);
		return -1;
	}
	return pid;
}

/* Escape body for an nginx single-quoted string; -EINVAL when it holds a
 * '$' (nginx would read a variable). */
static int mc_bm_nginx_quote(const char *body, char *out, size_t cap)
{
	size_t j = 0;

	for (const char *p = body; *p; p++) {
		if (*p == '$')
			return -EINVAL;
		if (j + 3 >= cap)
			return -ENOSPC;
		if (*p == '\\' || *p == '\'')
			out[j++] = '\\';
		out[j++] = *p;
	}
	out[j] = '\0';
	return 0;
}

static pid_t mc_bm_nginx(const char *dir, int port, const char *body)
{
	char *conf = malloc(2 * MC_BM_RESP_MAX), *quoted = malloc(MC_BM_RESP_MAX);
	char path[512], log[512], elog[512];
	char *argv[] = { MC_BM_NGINX, "-p", (char *)dir, "-e", elog, "-c", path, NULL };
	pid_t pid = -1;
	int rc;

	snprintf(path, sizeof(path), "%s/nginx.conf", dir);
	snprintf(log, sizeof(log), "%s/nginx.out", dir);
	snprintf(elog, sizeof(elog), "%s/error.log", dir);
	if (conf == NULL || quoted == NULL || access(MC_BM_NGINX, X_OK) != 0)
		goto out;
	if (mc_bm_nginx_quote(body, quoted, MC_BM_RESP_MAX) != 0) {
		fprintf(stderr, "mcpcore-bench mcp: the state_get body cannot be an nginx string\n");
		goto out;
	}
	/*
	 * master_process off: one process serves, as the protocol worker is
	 * one thread; worker_processes 1: the box has 2 cores and wrk needs
	 * one.  keepalive_requests: wrk keeps its connections for the whole
	 * run, as it does with mcpcore (nginx's default, 1000, would make it
	 * reconnect).  Temp paths in dir: nginx would create them in
	 * /var/lib/nginx otherwise.
	 */
	snprintf(conf, 2 * MC_BM_RESP_MAX,
	    "# written by mcpcore-bench mcp\n"
	    "daemon off;\nmaster_process off;\nworker_processes 1;\n"
	    "pid %s/nginx.pid;\nerror_log %s warn;\n"
	    "events { worker_connections 4096; }\n"
	    "http {\n"
	    "  access_log off;\n  keepalive_requests 100000000;\n  keepalive_timeout 300s;\n"
	    "  client_body_temp_path %s/client_body;\n  proxy_temp_path %s/proxy;\n"
	    "  fastcgi_temp_path %s/fastcgi;\n  uwsgi_temp_path %s/uwsgi;\n"
	    "  scgi_temp_path %s/scgi;\n"
	    "  server {\n    listen 127.0.0.1:%d;\n"
	    "    location = /mcp {\n      default_type application/json;\n"
	    "      return 200 '%s';\n    }\n  }\n}\n",
	    dir, elog, dir, dir, dir, dir, dir, port, quoted);
	if (mc_bm_write(path, conf) != 0)
		goto out;
	pid = mc_bm_spawn(argv, log);
	if (pid < 0)
		goto out;
	rc = mc_bm_wait_listening(pid, port);
	if (rc) {
		fprintf(stderr, "mcpcore-bench mcp: nginx did not listen on %d (%s); see %s\n", port,
		    mc_strerror(rc), elog);
		mc_bm_stop(pid);
		pid = -1;
	}
out:
	free(conf);
	free(quoted);
	return pid;
}

/* ---- wrk ---------------------------------------------------------------------- */

static uint64_t mc_bm_tv_ns(const struct timeval *tv)
{
	return (uint64_t)tv->tv_sec * 1000000000ULL + (uint64_t)tv->tv_usec * 1000ULL;
}

/*
 * One wrk run of `secs` seconds on `conns` connections against port;
 * 0 with *out filled, or -1.
 */
static int mc_bm_wrk(int port, const char *sid, int conns, int secs, struct mc_bm_wrk *out)
{
	char cmd[1024], line[1024];
	unsigned long long req = 0, dur = 0, bytes = 0, st = 0, so = 0, p50 = 0, p90 = 0, p99 = 0,
	    mx = 0;
	bool got = false;
	struct rusage ru0, ru1;
	FILE *p;

	memset(out, 0, sizeof(*out));
	getrusage(RUSAGE_CHILDREN, &ru0);
	setenv("MC_BENCH_SESSION", sid, 1);
	setenv("MC_BENCH_NS", MC_BM_NS, 1);
	setenv("MC_BENCH_KEY", MC_BM_KEY, 1);
	snprintf(cmd, sizeof(cmd), "%s -t%d -c%d -d%ds -s %s http://127.0.0.1:%d/mcp 2>&1",
	    MC_BM_WRK, MC_BM_THREADS, conns, secs, MC_BM_LUA, port);
	p = popen(cmd, "r");
	if (p == NULL)
		return -1;
	while (fgets(line, sizeof(line), p) != NULL) {
		if (sscanf(line, "MCBENCH requests=%llu duration_us=%llu bytes=%llu status_errors=%llu "
		    "socket_errors=%llu p50_us=%llu p90_us=%llu p99_us=%llu max_us=%llu", &req, &dur,
		    &bytes, &st, &so, &p50, &p90, &p99, &mx) == 9)
			got = true;
		else if (strstr(line, "rror") != NULL || strstr(line, "unable") != NULL)
			fprintf(stderr, "mcpcore-bench mcp: wrk: %s", line);
	}
	if (pclose(p) != 0 || !got || dur == 0 || req == 0) {
		fprintf(stderr, "mcpcore-bench mcp: wrk failed: %s\n", cmd);
		return -1;
	}
	/* the shell popen ran is waited for, and it waited for wrk: both count */
	getrusage(RUSAGE_CHILDREN, &ru1);
	out->cpu_ns = mc_bm_tv_ns(&ru1.ru_utime) + mc_bm_tv_ns(&ru1.ru_stime) -
	    mc_bm_tv_ns(&ru0.ru_utime) - mc_bm_tv_ns(&ru0.ru_stime);
	out->secs = (double)dur / 1e6;
	out->requests = req;
	out->rps = (double)req * 1e6 / (double)dur;
	out->bytes_per_req = (double)bytes / (double)req;
	out->status_errors = st;
	out->socket_errors = so;
	out->p50 = (double)p50;
	out->p90 = (double)p90;
	out->p99 = (double)p99;
	out->max = (double)mx;
	return 0;
}

/* Run r's CPU per request, from snapshots around it (b: before, a: after). */
static void mc_bm_cpu(struct mc_bm_side *s, const struct mc_bench_cpu *b,
    const struct mc_bench_cpu *a, const struct mc_bm_wrk *w, int r)
{
	double n = (double)w->requests, srv = (double)mc_bench_cpu_used(b, a, NULL);

	s->cpu_srv[r] = srv / 1e3 / n;
	s->cpu_wrk[r] = (double)w->cpu_ns / 1e3 / n;
	s->busy[r] = (srv + (double)w->cpu_ns) / 1e9 / w->secs;
	for (int i = 0; i < a->n; i++) {
		int k;

		for (k = 0; k < s->nby && strcmp(s->by_name[k], a->name[i]) != 0; k++)
			;
		if (k == s->nby) {
			if (s->nby == MC_BENCH_CPU_PROCS)
				continue;
			snprintf(s->by_name[s->nby++], sizeof(s->by_name[0]), "%s", a->name[i]);
		}
		s->by[k][r] = (double)mc_bench_cpu_used(b, a, a->name[i]) / 1e3 / n;
	}
}

static int mc_bm_run(struct mc_bm_side *s, const char *sid, int secs, int r)
{
	struct mc_bench_cpu b, a;
	struct mc_bm_wrk w;
	bool cpu = mc_bench_cpu_snap(s->pid, &b) == 0;

	if (mc_bm_wrk(s->port, sid, MC_BM_CONNS, secs, &w) != 0)
		return -1;
	if (cpu && mc_bench_cpu_snap(s->pid, &a) == 0)
		mc_bm_cpu(s, &b, &a, &w, r);
	s->rps[r] = w.rps;
	s->p50[r] = w.p50;
	s->p90[r] = w.p90;
	s->p99[r] = w.p99;
	s->bpr = w.bytes_per_req;
	s->errors += w.status_errors + w.socket_errors;
	return 0;
}

static double mc_bm_med(const double *v, int n)
{
	double tmp[100];

	memcpy(tmp, v, (size_t)n * sizeof(*v));
	return mc_bench_median(tmp, n);
}

/*
 * The latency point: `rate` req/s offered in total, evenly spaced, open
 * loop (mc_bench_pace), with the request the wrk script sends, byte for
 * byte.  wrk's own pacing (its delay() hook) would send bursts: its timers
 * tick in whole milliseconds.
 */
static int mc_bm_paced(struct mc_bm_side *s, const char *sid, int secs, double rate, int r)
{
	struct mc_pace_result res;
	char req[1024], body[256];
	int n, rc;

	snprintf(body, sizeof(body), "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
	    "\"params\":{\"name\":\"state_get\",\"arguments\":{\"namespace\":\"%s\","
	    "\"key\":\"%s\"}}}", MC_BM_NS, MC_BM_KEY);
	n = snprintf(req, sizeof(req), "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
	    "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
	    "MCP-Protocol-Version: 2025-06-18\r\nMcp-Session-Id: %s\r\n"
	    "Content-Length: %zu\r\n\r\n%s", s->port, sid, strlen(body), body);
	if (n < 0 || (size_t)n >= sizeof(req))
		return -1;
	rc = mc_bench_pace(s->port, req, (size_t)n, MC_BM_CONNS, rate, secs, &res);
	if (rc != 0) {
		fprintf(stderr, "mcpcore-bench mcp: paced run against %s: %s\n", s->name,
		    mc_strerror(rc));
		return -1;
	}
	s->half_rps[r] = res.rps;
	s->half_p50[r] = res.p50;
	s->half_p99[r] = res.p99;
	s->half_p999[r] = res.p999;
	s->errors += res.errors;
	return 0;
}

/* One connection, one request at a time: the unloaded round trip. */
static int mc_bm_one(struct mc_bm_side *s, const char *sid, int secs)
{
	if (mc_bm_wrk(s->port, sid, 1, secs, &s->one) != 0)
		return -1;
	s->errors += s->one.status_errors + s->one.socket_errors;
	return 0;
}

/* ---- the benchmark ------------------------------------------------------------ */

/* The processes of s by their median CPU per request, largest first. */
static int mc_bm_by_order(const struct mc_bench_opts *o, const struct mc_bm_side *s,
    int order[MC_BENCH_CPU_PROCS], double med[MC_BENCH_CPU_PROCS])
{
	for (int i = 0; i < s->nby; i++) {
		int k = i;

		med[i] = mc_bm_med(s->by[i], o->runs);
		while (k > 0 && med[order[k - 1]] < med[i]) {
			order[k] = order[k - 1];
			k--;
		}
		order[k] = i;
	}
	return s->nby;
}

static void mc_bm_json_cpu(const struct mc_bench_opts *o, const struct mc_bm_side *s)
{
	int order[MC_BENCH_CPU_PROCS];
	double med[MC_BENCH_CPU_PROCS];
	int n = mc_bm_by_order(o, s, order, med);

	printf("\"cpu\":{\"server_us\":%.2f,\"wrk_us\":%.2f,\"cores_busy\":%.2f,\"by\":{",
	    mc_bm_med(s->cpu_srv, o->runs), mc_bm_med(s->cpu_wrk, o->runs),
	    mc_bm_med(s->busy, o->runs));
	for (int i = 0; i < n; i++)
		printf("%s\"%s\":%.2f", i ? "," : "", s->by_name[order[i]], med[order[i]]);
	printf("}},");
}

static void mc_bm_print_cpu(const struct mc_bench_opts *o, struct mc_bm_side *const sides[2])
{
	printf("CPU per request at full load, us (medians of %d runs; /proc/PID/stat of the\n"
	    "server's processes, wrk by rusage; cores busy: both together, of %ld)\n", o->runs,
	    sysconf(_SC_NPROCESSORS_ONLN));
	printf("%-34s %10s %9s %11s\n", "", "server", "wrk", "cores busy");
	for (int i = 0; i < 2 && sides[i] != NULL; i++) {
		int order[MC_BENCH_CPU_PROCS];
		double med[MC_BENCH_CPU_PROCS];
		int n = mc_bm_by_order(o, sides[i], order, med);

		printf("%-34s %10.2f %9.2f %11.2f\n", i == 0 ? "mcpcore (all processes)" : "nginx",
		    mc_bm_med(sides[i]->cpu_srv, o->runs), mc_bm_med(sides[i]->cpu_wrk, o->runs),
		    mc_bm_med(sides[i]->busy, o->runs));
		if (i != 0)
			continue;
		printf(" ");
		for (int k = 0; k < n; k++)
			printf(" %s %.2f%s", sides[i]->by_name[order[k]], med[order[k]],
			    k + 1 < n ? "," : "\n");
	}
}

static void mc_bm_json_side(const struct mc_bench_opts *o, const struct mc_bm_side *s)
{
	printf("\"%s\":{\"rps\":%.0f,\"p50_us\":%.0f,\"p90_us\":%.0f,\"p99_us\":%.0f,"
	    "\"response_bytes\":%.0f,\"errors\":%" PRIu64 ","
	    "\"half\":{\"rps\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f,\"p999_us\":%.0f},"
	    "\"one_conn\":{\"rps\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f},", s->name,
	    mc_bm_med(s->rps, o->runs), mc_bm_med(s->p50, o->runs), mc_bm_med(s->p90, o->runs),
	    mc_bm_med(s->p99, o->runs), s->bpr, s->errors, mc_bm_med(s->half_rps, o->runs),
	    mc_bm_med(s->half_p50, o->runs), mc_bm_med(s->half_p99, o->runs),
	    mc_bm_med(s->half_p999, o->runs),
	    s->one.rps, s->one.p50, s->one.p99);
	mc_bm_json_cpu(o, s);
	printf("\"name\":\"%s\"},", s->name);
}

static void mc_bm_print(const struct mc_bench_opts *o, struct mc_bm_side *m, struct mc_bm_side *n,
    bool have_nginx, const double *ratio, int secs, double half_rate, size_t body_len)
{
	double ra = have_nginx ? mc_bm_med(ratio, o->runs) : 0;
	struct mc_bm_side *sides[2] = { m, have_nginx ? n : NULL };

	if (o->json) {
		printf("{\"bench\":\"mcp\",\"runs\":%d,\"duration_s\":%d,\"threads\":%d,"
		    "\"connections\":%d,\"body_bytes\":%zu,", o->runs, secs, MC_BM_THREADS,
		    MC_BM_CONNS, body_len);
		mc_bm_json_side(o, m);
		if (have_nginx)
			mc_bm_json_side(o, n);
		else
			printf("\"nginx\":null,");
		printf("\"ratio\":%.3f,\"half_rate\":%.0f}\n", ra, half_rate);
		return;
	}
	printf("mcpcore-bench mcp: tools/call state_get over Streamable HTTP, keep-alive;\n"
	    "wrk -t%d -c%d -d%ds (bench/mcp_state_get.lua), median of %d runs; body %zu B\n",
	    MC_BM_THREADS, MC_BM_CONNS, secs, o->runs, body_len);
	printf("%-34s %10s %9s %9s %9s %8s\n", "", "req/s", "p50 us", "p90 us", "p99 us", "resp B");
	for (int i = 0; i < 2 && sides[i] != NULL; i++)
		printf("%-34s %10.0f %9.0f %9.0f %9.0f %8.0f\n",
		    i == 0 ? "mcpcore (protocol worker)" : "nginx return 200 (same body)",
		    mc_bm_med(sides[i]->rps, o->runs), mc_bm_med(sides[i]->p50, o->runs),
		    mc_bm_med(sides[i]->p90, o->runs), mc_bm_med(sides[i]->p99, o->runs),
		    sides[i]->bpr);
	if (!have_nginx) {
		printf("%-34s %10s\n", "nginx", "not available (apt-get install nginx)");
	} else {
		printf("per run, mcpcore / nginx req/s:");
		for (int r = 0; r < o->runs; r++)
			printf(" %.0f/%.0f", m->rps[r], n->rps[r]);
		printf("\nratio mcpcore / nginx (median of per-run ratios): %.2fx\n", ra);
	}
	mc_bm_print_cpu(o, sides);
	printf("latency points (half load: medians of %d runs)   %6s %9s %9s %9s\n", o->runs,
	    "req/s", "p50 us", "p99 us", "p99.9 us");
	for (int i = 0; i < 2 && sides[i] != NULL; i++)
		printf("%-7s half load, %6.0f req/s offered %10.0f %9.0f %9.0f %9.0f\n",
		    sides[i]->name, half_rate, mc_bm_med(sides[i]->half_rps, o->runs),
		    mc_bm_med(sides[i]->half_p50, o->runs), mc_bm_med(sides[i]->half_p99, o->runs),
		    mc_bm_med(sides[i]->half_p999, o->runs));
	for (int i = 0; i < 2 && sides[i] != NULL; i++)
		printf("%-7s 1 connection, unpaced            %10.0f %9.0f %9.0f\n", sides[i]->name,
		    sides[i]->one.rps, sides[i]->one.p50, sides[i]->one.p99);
	printf("per run, half-load p99 us, mcpcore%s:", have_nginx ? " / nginx" : "");
	for (int r = 0; r < o->runs; r++) {
		printf(" %.0f", m->half_p99[r]);
		if (have_nginx)
			printf("/%.0f", n->half_p99[r]);
	}
	printf("\n");
	printf("(half load: half the lower of the two medians, offered open loop on %d\n"
	    " connections, evenly spaced; latency from each request's due time to its\n"
	    " answer, waits included. 1 connection: wrk, one request at a time)\n",
	    MC_BM_CONNS);
	if (m->errors || n->errors)
		printf("WARNING: non-2xx answers or socket errors: mcpcore %" PRIu64 ", nginx %" PRIu64
		    "\n", m->errors, n->errors);
}

int mc_bench_mcp(const struct mc_bench_opts *o)
{
	char dir[] = "/tmp/mcpcore-bench-mcp.XXXXXX";
	char sid[64] = "", *resp = malloc(MC_BM_RESP_MAX);
	struct mc_bm_side m = { .name = "mcpcore" }, n = { .name = "nginx" };
	double ratio[100];
	int secs = o->quick ? 2 : 5, rc = 1;
	double half_rate = 0;
	bool have_nginx;
	pid_t rt = -1, ngx = -1;
	struct mc_bm_wrk warm;

	if (resp == NULL || mkdtemp(dir) == NULL) {
		fprintf(stderr, "mcpcore-bench mcp: cannot set up: %s\n", strerror(errno));
		free(resp);
		return 1;
	}
	if (system("command -v " MC_BM_WRK " >/dev/null 2>&1") != 0) {
		fprintf(stderr, "mcpcore-bench mcp: wrk is needed (apt-get install wrk)\n");
		goto out;
	}
	m.port = mc_bench_free_port();
	rt = mc_bm_runtime(dir, m.port, mc_bench_free_port());
	m.pid = rt;
	if (rt < 0 || mc_bm_session(m.port, sid, resp, MC_BM_RESP_MAX) != 0)
		goto out;
	n.port = mc_bench_free_port();
	ngx = mc_bm_nginx(dir, n.port, resp);
	n.pid = ngx;
	have_nginx = ngx > 0;
	if (have_nginx) {
		/* nginx must answer the same bytes the runtime does */
		char *got = malloc(MC_BM_RESP_MAX);
		int st = 0;

		if (got == NULL || mc_bm_post(n.port, sid, "{}", &st, NULL, got, MC_BM_RESP_MAX) != 0 ||
		    st != 200 || strcmp(got, resp) != 0) {
			fprintf(stderr, "mcpcore-bench mcp: nginx answers HTTP %d, not the same body\n", st);
			free(got);
			goto out;
		}
		free(got);
	}
	/* warm-up: caches, the allocator, TCP */
	if (mc_bm_wrk(m.port, sid, MC_BM_CONNS, 1, &warm) != 0 ||
	    (have_nginx && mc_bm_wrk(n.port, sid, MC_BM_CONNS, 1, &warm) != 0))
		goto out;
	for (int r = 0; r < o->runs; r++) {
		/* alternate who goes first, so drift in the box favours neither */
		struct mc_bm_side *first = (r % 2 == 0 || !have_nginx) ? &m : &n;
		struct mc_bm_side *second = first == &m ? &n : &m;

		if (mc_bm_run(first, sid, secs, r) != 0)
			goto out;
		if (have_nginx && mc_bm_run(second, sid, secs, r) != 0)
			goto out;
		ratio[r] = have_nginx && n.rps[r] > 0 ? m.rps[r] / n.rps[r] : 0;
	}
	/* the latency point: both at half the lower maximum */
	half_rate = mc_bm_med(m.rps, o->runs);
	if (have_nginx && mc_bm_med(n.rps, o->runs) < half_rate)
		half_rate = mc_bm_med(n.rps, o->runs);
	half_rate /= 2;
	for (int r = 0; half_rate > 0 && r < o->runs; r++) {
		struct mc_bm_side *first = (r % 2 == 0 || !have_nginx) ? &m : &n;
		struct mc_bm_side *second = first == &m ? &n : &m;

		if (mc_bm_paced(first, sid, secs, half_rate, r) != 0 ||
		    (have_nginx && mc_bm_paced(second, sid, secs, half_rate, r) != 0))
			goto out;
	}
	if (half_rate > 0 && (mc_bm_one(&m, sid, secs) != 0 ||
	    (have_nginx && mc_bm_one(&n, sid, secs) != 0)))
		goto out;
	mc_bm_print(o, &m, &n, have_nginx, ratio, secs, half_rate, strlen(resp));
	rc = m.errors ? 1 : 0;          /* the runtime must answer every request well */
out:
	mc_bm_stop(ngx);
	mc_bm_stop(rt);
	nftw(dir, mc_bm_rm, 16, FTW_DEPTH | FTW_PHYS);
	free(resp);
	return rc;
}
