/*
 * ut.c - the shared test scaffolding (contract in ut.h).
 */
#define _GNU_SOURCE

#include "ut.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mc_config.h"
#include "mc_layout.h"
#include "mc_seg.h"

static char ut_tag[16] = "x";
static pid_t ut_pid;
static unsigned ut_seq;
static int ut_guard_fd = -1;
static pid_t ut_guard_pid = -1;

/* Unlink every segment of test process `pid`. */
static void ut_unlink_all(pid_t pid)
{
	char prefix[64];
	struct dirent *e;
	DIR *d = opendir("/dev/shm");

	if (d == NULL)
		return;
	snprintf(prefix, sizeof(prefix), "mcpcore.ut%s-%d-", ut_tag, (int)pid);
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
}

/* The guardian cleans /dev/shm once every holder of the pipe is gone. */
void ut_guard_start(const char *tag)
{
	int p[2];
	pid_t g;

	snprintf(ut_tag, sizeof(ut_tag), "%s", tag);
	ut_pid = getpid();
	cr_assert_eq(pipe(p), 0);
	g = fork();
	cr_assert_neq(g, -1);
	if (g == 0) {
		char c;

		setpgid(0, 0);
		for (int fd = 0; fd < 1024; fd++)
			if (fd != p[0])
				close(fd);
		for (;;) {
			ssize_t n = read(p[0], &c, 1);

			if (n == 0 || (n < 0 && errno != EINTR))
				break;
		}
		ut_unlink_all(ut_pid);
		_exit(0);
	}
	close(p[0]);
	ut_guard_fd = p[1];
	ut_guard_pid = g;
}

void ut_fini(void)
{
	ut_unlink_all(getpid());
	if (ut_guard_pid > 0) {
		kill(ut_guard_pid, SIGKILL);
		waitpid(ut_guard_pid, NULL, 0);
		close(ut_guard_fd);
		ut_guard_pid = -1;
	}
}

void ut_instance(char *buf, size_t len)
{
	snprintf(buf, len, "ut%s-%d-%u", ut_tag, (int)getpid(), ut_seq++);
}

pid_t ut_fork(void)
{
	pid_t parent = getpid(), p;

	fflush(NULL);
	p = fork();
	cr_assert_neq(p, -1, "fork: %s", strerror(errno));
	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(99);
	}
	return p;
}

int ut_wait(pid_t p)
{
	int st;
	pid_t r;

	do
		r = waitpid(p, &st, 0);
	while (r < 0 && errno == EINTR);
	cr_assert_eq(r, p, "waitpid(%d): %s", (int)p, strerror(errno));
	return st;
}

void ut_wait_ok(pid_t p, const char *what)
{
	int st = ut_wait(p);

	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: child %d %s %d", what, (int)p,
	    WIFEXITED(st) ? "exited with" : "was killed by signal",
	    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

/* Only our own children are alive besides the guardian, which outlives us. */
void ut_wait_group(pid_t *pids, int n, const char *what)
{
	int left = n;

	while (left > 0) {
		int st, i;
		pid_t r = waitpid(-1, &st, 0);

		if (r < 0 && errno == EINTR)
			continue;
		cr_assert_gt(r, 0, "waitpid: %s", strerror(errno));
		for (i = 0; i < n && pids[i] != r; i++)
			;
		if (i == n)
			continue;
		pids[i] = -1;
		left--;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			for (int k = 0; k < n; k++)
				if (pids[k] > 0) {
					kill(pids[k], SIGKILL);
					waitpid(pids[k], NULL, 0);
				}
			cr_assert_fail("%s: child %d %s %d", what, (int)r,
			    WIFEXITED(st) ? "exited with" : "was killed by signal",
			    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		}
	}
}

void ut_seg_create(struct mc_seg *sup, struct mc_config *cfg, struct mc_layout *lay)
{
	char err[512];
	pid_t swept;
	int rc = mc_config_load(MC_SOURCE_DIR "/config/test.toml", cfg, err, sizeof(err));

	cr_assert_eq(rc, 0, "config/test.toml: %s", err);
	ut_instance(cfg->instance, sizeof(cfg->instance));
	cr_assert_eq(mc_layout_compute(cfg, lay, err, sizeof(err)), 0, "%s", err);
	rc = mc_seg_create(sup, cfg, lay, &swept, err, sizeof(err));
	cr_assert_eq(rc, 0, "create %s: %d %s", cfg->instance, rc, err);
	ck_pr_store_32(&sup->hdr->sh_state, MC_SEG_READY);
}

void ut_worker(struct mc_seg *s, const char *instance, unsigned slot)
{
	char err[512];
	int rc = mc_seg_attach(s, instance, false, err, sizeof(err));

	cr_assert_eq(rc, 0, "attach: %d %s", rc, err);
	rc = mc_seg_claim_worker(s, slot);
	cr_assert_eq(rc, 0, "claim worker %u: %d", slot, rc);
}

void ut_child_worker(struct mc_seg *s, const char *instance, unsigned slot)
{
	char err[512];
	int rc = mc_seg_attach(s, instance, false, err, sizeof(err));

	UT_CHK(rc == 0, "attach: %d %s", rc, err);
	rc = mc_seg_claim_worker(s, slot);
	UT_CHK(rc == 0, "claim worker %u: %d", slot, rc);
}
