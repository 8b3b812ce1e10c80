/*
 * supervisor.c - the supervisor process (policy in mc_supervisor.h).
 *
 * One thread, one loop: signals arrive through a signalfd, and the loop
 * wakes at least every tick (100 ms) to write its heartbeat, notice worker
 * readiness and hangs, start due restarts and reap dead clients.  Every
 * lifecycle event is a JSON log line.
 */
#include "mc_supervisor.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mc_layout.h"
#include "mc_log.h"
#include "mc_metrics.h"
#include "mc_seg.h"
#include "mc_util.h"

#define MC_TICK_NS     100000000ULL
#define MC_MS          1000000ULL
#define MC_STARTING_POLL_NS 5000000ULL
#define MC_HISTORY     32              /* crash times remembered per worker */

struct mc_child {
	unsigned slot;
	const char *name;
	pid_t pid;
	uint64_t started_ns;
	uint64_t restart_due_ns;          /* BACKOFF: when to start again */
	uint32_t backoff_ms;              /* next backoff */
	uint64_t crashes[MC_HISTORY];     /* monotonic ns of recent exits */
	unsigned ncrashes;
	bool announced_ready;
};

struct mc_sup {
	const struct mc_config *cfg;
	struct mc_seg seg;
	struct mc_child child[MC_NWORKERS];
	int sigfd;
	bool stopping;
	bool ready_logged;
	uint64_t start_ns;
	struct mc_counter clients_reaped;   /* in our metrics block (slot 0) */
};

static struct mc_slot *mc_sup_slot(struct mc_sup *s, const struct mc_child *c)
{
	return &s->seg.slots[c->slot];
}

static void mc_sup_set_state(struct mc_sup *s, struct mc_child *c, uint32_t state)
{
	ck_pr_store_32(&mc_sup_slot(s, c)->sl_state, state);
}

/* "exit 3", "signal 9 (Killed)", "signal 6 (Aborted), core dumped" */
static void mc_sup_describe(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
		    WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, len, "status %d", status);
}

/* fork + exec `mcpcore worker NAME --instance I`; the child dies with us. */
static int mc_sup_spawn(struct mc_sup *s, struct mc_child *c)
{
	struct mc_slot *sl = mc_sup_slot(s, c);
	pid_t parent = getpid();
	sigset_t none;
	pid_t pid;

	ck_pr_store_32(&sl->sl_generation, sl->sl_generation + 1);
	mc_sup_set_state(s, c, MC_SLOT_STARTING);
	pid = fork();
	if (pid < 0) {
		mc_log_error("worker_spawn_failed", "{s:s, s:s}", "worker", c->name,
		    "error", strerror(errno));
		return -errno;
	}
	if (pid == 0) {
		char *argv[] = { "mcpcore", "worker", (char *)c->name, "--instance",
		    (char *)s->cfg->instance, NULL };

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);       /* the supervisor died before prctl took effect */
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	c->pid = pid;
	c->started_ns = mc_now_ns();
	c->announced_ready = false;
	sl->sl_started_ns = c->started_ns;
	sl->sl_proc_start = 0;
	ck_pr_store_64(&sl->sl_heartbeat_ns, c->started_ns);
	ck_pr_store_int(&sl->sl_pid, pid);
	mc_log_info("worker_started", "{s:s, s:i, s:i, s:i}", "worker", c->name, "child_pid",
	    (int)pid, "generation", (int)sl->sl_generation, "restarts", (int)sl->sl_restarts);
	return 0;
}

/* Decide what a worker's exit means: restart after a backoff, or failed. */
static void mc_sup_on_exit(struct mc_sup *s, struct mc_child *c, int status)
{
	const struct mc_config *cfg = s->cfg;
	struct mc_slot *sl = mc_sup_slot(s, c);
	uint64_t now = mc_now_ns(), window = cfg->crash_loop_window_ms * MC_MS;
	unsigned recent = 0;
	pid_t pid = c->pid;
	char how[96];

	mc_sup_describe(status, how, sizeof(how));
	ck_pr_store_int(&sl->sl_pid, 0);
	sl->sl_last_status = status;
	c->pid = 0;
	if (s->stopping) {
		mc_sup_set_state(s, c, MC_SLOT_STOPPED);
		mc_log_info("worker_stopped", "{s:s, s:s}", "worker", c->name, "status", how);
		return;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == MC_CONFIG_EX) {
		mc_sup_set_state(s, c, MC_SLOT_FAILED);
		mc_log_error("worker_failed", "{s:s, s:s, s:s}", "worker", c->name, "status", how,
		    "message", "configuration error (exit 78); not restarting");
		return;
	}
	c->crashes[c->ncrashes++ % MC_HISTORY] = now;
	for (unsigned i = 0; i < MC_HISTORY && i < c->ncrashes; i++)
		if (now - c->crashes[i] <= window)
			recent++;
	if (recent >= cfg->crash_loop_restarts) {
		mc_sup_set_state(s, c, MC_SLOT_FAILED);
		mc_log_error("worker_failed", "{s:s, s:s, s:i, s:i, s:s}", "worker", c->name,
		    "status", how, "crashes", (int)recent, "window_ms", (int)cfg->crash_loop_window_ms,
		    "message", "crash loop; not restarting (the other workers keep running)");
		return;
	}
	/* a worker that stayed up a whole window starts the backoff afresh */
	if (now - c->started_ns >= window)
		c->backoff_ms = cfg->restart_backoff_ms;
	c->restart_due_ns = now + c->backoff_ms * MC_MS;
	mc_sup_set_state(s, c, MC_SLOT_BACKOFF);
	mc_log_warn("worker_exited", "{s:s, s:i, s:s, s:i}", "worker", c->name, "child_pid",
	    (int)pid, "status", how, "restart_in_ms", (int)c->backoff_ms);
	c->backoff_ms = c->backoff_ms * 2 > cfg->restart_backoff_max_ms ?
	    cfg->restart_backoff_max_ms : c->backoff_ms * 2;
}

static struct mc_child *mc_sup_child_by_pid(struct mc_sup *s, pid_t pid)
{
	for (int i = 0; i < MC_NWORKERS; i++)
		if (s->child[i].pid == pid)
			return &s->child[i];
	return NULL;
}

static void mc_sup_reap(struct mc_sup *s)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct mc_child *c = mc_sup_child_by_pid(s, pid);

		if (c != NULL)
			mc_sup_on_exit(s, c, status);
	}
}

/* Periodic duties: heartbeat, readiness, hangs, due restarts, clients. */
static void mc_sup_tick(struct mc_sup *s)
{
	uint64_t now = mc_now_ns();
	bool all_running = true;

	ck_pr_store_64(&s->seg.hdr->sh_heartbeat_ns, now);
	for (int i = 0; i < MC_NWORKERS; i++) {
		struct mc_child *c = &s->child[i];
		struct mc_slot *sl = mc_sup_slot(s, c);
		uint32_t state = ck_pr_load_32(&sl->sl_state);
		uint64_t beat = ck_pr_load_64(&sl->sl_heartbeat_ns);

		if (state == MC_SLOT_STARTING && c->pid &&
		    ck_pr_load_32(&sl->sl_ready_gen) == sl->sl_generation) {
			mc_sup_set_state(s, c, MC_SLOT_RUNNING);
			sl->sl_proc_start = mc_proc_start_time(c->pid);
			state = MC_SLOT_RUNNING;
			mc_log_info("worker_running", "{s:s, s:i, s:I}", "worker", c->name,
			    "child_pid", (int)c->pid,
			    "start_ms", (json_int_t)((now - c->started_ns) / MC_MS));
		}
		if ((state == MC_SLOT_RUNNING || state == MC_SLOT_STARTING) && c->pid &&
		    now > beat && now - beat > s->cfg->heartbeat_timeout_ms * MC_MS) {
			mc_log_error("worker_hung", "{s:s, s:i, s:I, s:s}", "worker", c->name,
			    "child_pid", (int)c->pid, "heartbeat_age_ms",
			    (json_int_t)((now - beat) / MC_MS), "message", "no heartbeat; killing it");
			kill(c->pid, SIGKILL);
			ck_pr_store_64(&sl->sl_heartbeat_ns, now);   /* one kill per timeout */
		}
		if (state == MC_SLOT_BACKOFF && now >= c->restart_due_ns && !s->stopping) {
			ck_pr_store_32(&sl->sl_restarts, sl->sl_restarts + 1);
			if (mc_sup_spawn(s, c) != 0) {
				c->restart_due_ns = now + c->backoff_ms * MC_MS;
				mc_sup_set_state(s, c, MC_SLOT_BACKOFF);
			}
		}
		if (state != MC_SLOT_RUNNING)
			all_running = false;
	}
	if (all_running && !s->ready_logged) {
		s->ready_logged = true;
		mc_log_info("runtime_ready", "{s:s, s:I}", "instance", s->cfg->instance,
		    "start_ms", (json_int_t)((now - s->start_ns) / MC_MS));
	}
	mc_counter_add(s->clients_reaped, (uint64_t)mc_seg_reap_clients(&s->seg));
	mc_metrics_tick(&s->seg);
}

/* Milliseconds until the next thing the loop must do. */
static int mc_sup_timeout_ms(struct mc_sup *s)
{
	uint64_t now = mc_now_ns(), next = now + MC_TICK_NS;

	for (int i = 0; i < MC_NWORKERS; i++) {
		struct mc_child *c = &s->child[i];
		uint32_t state = ck_pr_load_32(&mc_sup_slot(s, c)->sl_state);

		/* a starting worker turns ready within ms: look often meanwhile */
		if (state == MC_SLOT_STARTING && now + MC_STARTING_POLL_NS < next)
			next = now + MC_STARTING_POLL_NS;
		if (state == MC_SLOT_BACKOFF &&
		    c->restart_due_ns < next)
			next = c->restart_due_ns > now ? c->restart_due_ns : now;
	}
	return (int)((next - now + MC_MS - 1) / MC_MS);
}

/* Wait for signals up to timeout; returns true if a stop was requested. */
static bool mc_sup_wait(struct mc_sup *s, int timeout_ms)
{
	struct pollfd pfd = { .fd = s->sigfd, .events = POLLIN };
	struct signalfd_siginfo si;
	bool stop = false;

	if (poll(&pfd, 1, timeout_ms) <= 0)
		return false;
	while (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGCHLD)
			mc_sup_reap(s);
		else {
			if (!s->stopping)
				mc_log_info("shutdown_requested", "{s:s}", "signal",
				    strsignal((int)si.ssi_signo));
			stop = true;
		}
	}
	return stop;
}

static bool mc_sup_any_alive(struct mc_sup *s)
{
	for (int i = 0; i < MC_NWORKERS; i++)
		if (s->child[i].pid)
			return true;
	return false;
}

/* Reverse start order, each waited for, all bounded by one deadline. */
static void mc_sup_shutdown(struct mc_sup *s)
{
	uint64_t deadline = mc_now_ns() + s->cfg->shutdown_timeout_ms * MC_MS;

	s->stopping = true;
	ck_pr_store_32(&s->seg.hdr->sh_state, MC_SEG_STOPPING);
	for (int i = 0; i < MC_NWORKERS; i++) {
		struct mc_child *c = &s->child[i];

		if (c->pid == 0)
			mc_sup_set_state(s, c, ck_pr_load_32(&mc_sup_slot(s, c)->sl_state) ==
			    MC_SLOT_FAILED ? MC_SLOT_FAILED : MC_SLOT_STOPPED);
	}
	for (int i = MC_NWORKERS - 1; i >= 0; i--) {
		struct mc_child *c = &s->child[i];

		if (c->pid == 0)
			continue;
		kill(c->pid, SIGTERM);
		while (c->pid != 0 && mc_now_ns() < deadline)
			mc_sup_wait(s, (int)((deadline - mc_now_ns()) / MC_MS) + 1);
	}
	if (mc_sup_any_alive(s)) {
		for (int i = 0; i < MC_NWORKERS; i++)
			if (s->child[i].pid) {
				mc_log_warn("worker_killed", "{s:s, s:i, s:s}", "worker",
				    s->child[i].name, "child_pid", (int)s->child[i].pid, "message",
				    "did not stop within shutdown_timeout_ms; SIGKILL");
				kill(s->child[i].pid, SIGKILL);
			}
		while (mc_sup_any_alive(s))
			mc_sup_wait(s, 100);
	}
}

static int mc_sup_signals(struct mc_sup *s)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	s->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return s->sigfd < 0 ? -errno : 0;
}

int mc_supervisor_run(const struct mc_config *cfg)
{
	struct mc_sup s = { .cfg = cfg, .sigfd = -1 };
	struct mc_layout lay;
	char err[MC_CONFIG_ERR_MAX + 512];
	pid_t swept = 0;
	int rc;

	s.start_ns = mc_now_ns();
	mc_log_init("supervisor", cfg->log_level);
	rc = mc_layout_compute(cfg, &lay, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "mcpcore: %s\n", err);
		return MC_CONFIG_EX;
	}
	if (mc_sup_signals(&s) < 0) {
		mc_log_error("start_failed", "{s:s}", "message", strerror(errno));
		return 1;
	}
	rc = mc_seg_create(&s.seg, cfg, &lay, &swept, err, sizeof(err));
	if (rc) {
		mc_log_error("start_failed", "{s:s, s:s}", "instance", cfg->instance, "message", err);
		fprintf(stderr, "mcpcore: %s\n", err);
		return 1;
	}
	if (swept != 0)
		mc_log_warn("stale_segment_swept", "{s:s, s:i, s:s}", "segment", s.seg.name,
		    "dead_supervisor_pid", (int)swept, "message",
		    "a previous supervisor died without cleaning up; its segment was removed");
	mc_log_info("segment_created", "{s:s, s:I, s:i, s:i, s:s}", "segment", s.seg.name,
	    "size", (json_int_t)lay.total, "slots", (int)lay.nslots, "rings", (int)lay.nrings,
	    "config", cfg->source);
	/* slot 0's metrics block: memory gauges, reaped clients (restarts are
	 * in the slot table, which the monitor exports directly) */
	if (mc_metrics_open(&s.seg, MC_SLOT_SUPERVISOR, MC_METRICS_RESET) == 0)
		mc_metrics_counter(&s.seg, "clients_reaped_total",
		    "Client processes that died attached and were reaped by the supervisor",
		    NULL, &s.clients_reaped);
	ck_pr_store_32(&s.seg.hdr->sh_state, MC_SEG_READY);

	for (int i = 0; i < MC_NWORKERS; i++) {
		s.child[i].slot = MC_SLOT_FIRST_WORKER + (unsigned)i;
		s.child[i].name = mc_layout_worker_name(s.child[i].slot);
		s.child[i].backoff_ms = cfg->restart_backoff_ms;
		if (mc_sup_spawn(&s, &s.child[i]) != 0) {
			s.child[i].restart_due_ns = mc_now_ns() + cfg->restart_backoff_ms * MC_MS;
			mc_sup_set_state(&s, &s.child[i], MC_SLOT_BACKOFF);
		}
	}
	for (;;) {
		if (mc_sup_wait(&s, mc_sup_timeout_ms(&s)))
			break;
		mc_sup_tick(&s);
	}
	mc_sup_shutdown(&s);
	mc_seg_destroy(&s.seg);
	close(s.sigfd);
	mc_log_info("supervisor_stopped", "{s:s, s:I}", "instance", cfg->instance,
	    "uptime_ms", (json_int_t)((mc_now_ns() - s.start_ns) / MC_MS));
	return 0;
}
