/*
 * test_worker.c - unit tests for the workers' shared code (workers/worker.c,
 * contract in mc_worker.h): the scheduler slice a worker asks for is the
 * one it gets, and 0 gives the default back.  (The loop itself runs in
 * every worker's tests: test_state_main, test_route, the integration
 * suites.)
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "mc_worker.h"

/* The calling thread's slice as the kernel reports it (sched_attr.sched_runtime). */
static uint64_t slice_now(void)
{
	struct {
		uint32_t size, policy;
		uint64_t flags;
		int32_t nice;
		uint32_t priority;
		uint64_t runtime, deadline, period;
	} a;

	memset(&a, 0, sizeof(a));
	cr_assert_eq(syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0), 0);
	return a.runtime;
}

/* Custom slices for fair tasks came with Linux 6.12. */
static bool kernel_has_custom_slices(void)
{
	struct utsname u;
	int major = 0, minor = 0;

	cr_assert_eq(uname(&u), 0);
	sscanf(u.release, "%d.%d", &major, &minor);
	return major > 6 || (major == 6 && minor >= 12);
}

Test(worker, a_slice_asked_for_is_the_slice_given)
{
	uint64_t dflt = slice_now();

	cr_assert_eq(mc_worker_set_slice(200000), 0);
	if (!kernel_has_custom_slices()) {
		cr_log_warn("kernel before 6.12: the request is accepted and ignored");
		return;
	}
	cr_assert_eq(slice_now(), 200000);
	cr_assert_eq(mc_worker_set_slice(0), 0);
	cr_assert_eq(slice_now(), dflt, "0 puts the default back (%llu, was %llu)",
	    (unsigned long long)slice_now(), (unsigned long long)dflt);
	cr_assert_neq(dflt, 200000);
}
