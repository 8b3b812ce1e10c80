/*
 * ut.h - scaffolding shared by the Criterion tests that create segments
 * and fork processes: private instance names, /dev/shm clean-up that
 * survives a crashed test process, and child process helpers.
 *
 * Instances are "ut<tag>-<pid>-<n>".  ut_guard_start(tag) (call it once,
 * from the suite's init) forks a guardian child that unlinks this test
 * process's segments as soon as every holder of its pipe is gone — that
 * is, also when the test process is killed.  ut_fini() (the suite's fini)
 * cleans up at a normal end.
 *
 * The helpers assert with Criterion: call them from a test (or a child
 * of one), not from library code.
 */
#ifndef UT_H
#define UT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

void ut_guard_start(const char *tag);
void ut_fini(void);

/* A fresh instance name for this test process. */
void ut_instance(char *buf, size_t len);

struct mc_config;
struct mc_layout;
struct mc_seg;

/*
 * What most suites start from: config/test.toml under a fresh instance
 * name (ut_instance), its layout, and the segment created by this process
 * as the supervisor would (marked READY, so clients may claim slots).
 * Destroy it with mc_seg_destroy().  Asserts on failure.
 */
void ut_seg_create(struct mc_seg *sup, struct mc_config *cfg, struct mc_layout *lay);

/* Attach to `instance` and claim worker slot `slot`, asserting both
 * (Criterion: the test process itself). */
void ut_worker(struct mc_seg *s, const char *instance, unsigned slot);

/* Same in a forked child, where Criterion's asserts do not work: a failed
 * step exits the child with status 1 (UT_CHK). */
void ut_child_worker(struct mc_seg *s, const char *instance, unsigned slot);

/* fork() for a child that dies with its parent (PR_SET_PDEATHSIG). */
pid_t ut_fork(void);

/* waitpid() that retries on EINTR; returns the wait status. */
int ut_wait(pid_t p);

/* Reap p and fail unless it exited 0. */
void ut_wait_ok(pid_t p, const char *what);

/*
 * Reap n children that work together: as soon as one fails, kill the
 * others (they would wait forever for it) and fail.
 */
void ut_wait_group(pid_t *pids, int n, const char *what);

/* splitmix64: reproducible pseudo-random test data from a counter. */
static inline uint64_t ut_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* In a forked child, where Criterion's asserts do not reach the report:
 * print what failed and exit 1 (the parent's ut_wait_ok fails the test). */
#define UT_CHK(cond, ...) do { \
	if (!(cond)) { \
		fprintf(stderr, "[child %d] %s:%d: check failed: %s: ", (int)getpid(), \
		    __FILE__, __LINE__, #cond); \
		fprintf(stderr, __VA_ARGS__); \
		fputc('\n', stderr); \
		_exit(1); \
	} \
} while (0)

#endif
