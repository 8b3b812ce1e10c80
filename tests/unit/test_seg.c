/*
 * test_seg.c - unit tests for the shared-memory segment (shm/seg.c,
 * contract in shm/mc_seg.h): creation, the instance lock, sweeping a dead
 * supervisor's segment, attach errors, client slots and reaping.
 *
 * Every test works on its own instances, "utseg-<pid>-<n>", created from
 * config/test.toml.  /dev/shm is cleaned in the fini hook and, should the
 * test process die outright, by a guardian child that waits for the test
 * process to go away (see ut_guard_start).  Forked children report through
 * their exit status; they die with the test process (PR_SET_PDEATHSIG).
 */
#define _GNU_SOURCE

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mc_config.h"
#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_ring.h"
#include "mc_seg.h"
#include "ut.h"

#ifndef MC_SOURCE_DIR
#error "MC_SOURCE_DIR must be defined to the repository root"
#endif

/* ------------------------------------------------------------------ */
/* Scaffolding (each test file carries its own copy)                   */

#define UT_TAG "seg"


/* In children: report a failed check on stderr and exit 1. */
/* Pipes: one u64 at a time, with a timeout so a dead peer fails the test. */
static bool ut_put(int fd, uint64_t v)
{
	return write(fd, &v, sizeof(v)) == (ssize_t)sizeof(v);
}

static bool ut_get(int fd, uint64_t *v, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	size_t got = 0;

	while (got < sizeof(*v)) {
		int n = poll(&pfd, 1, timeout_ms);
		ssize_t r;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		r = read(fd, (char *)v + got, sizeof(*v) - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return true;
}

/* A child's two pipes: parent->child (pc) and child->parent (cp). */
struct chan { int pc[2], cp[2]; };

static void chan_open(struct chan *c)
{
	cr_assert_eq(pipe2(c->pc, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(c->cp, O_CLOEXEC), 0);
}

/* After fork: keep our ends.  Returns the fd to read from. */
static void chan_parent(struct chan *c)
{
	close(c->pc[0]);
	close(c->cp[1]);
}

static void chan_child(struct chan *c)
{
	close(c->pc[1]);
	close(c->cp[0]);
}

static uint64_t chan_get(struct chan *c, const char *what)
{
	uint64_t v = 0;

	cr_assert(ut_get(c->cp[0], &v, 30000), "no word from the child (%s)", what);
	return v;
}

static void chan_close(struct chan *c)
{
	close(c->pc[1]);
	close(c->cp[0]);
}

/* ------------------------------------------------------------------ */
/* Fixture                                                             */

static char err[512];

static void load_cfg(struct mc_config *cfg, struct mc_layout *lay)
{
	int rc = mc_config_load(MC_SOURCE_DIR "/config/test.toml", cfg, err, sizeof(err));

	cr_assert_eq(rc, 0, "config/test.toml: %s", err);
	ut_instance(cfg->instance, sizeof(cfg->instance));
	rc = mc_layout_compute(cfg, lay, err, sizeof(err));
	cr_assert_eq(rc, 0, "layout of config/test.toml: %s", err);
}

static void shm_path(const char *instance, char *buf, size_t len)
{
	snprintf(buf, len, "/dev/shm/mcpcore.%s", instance);
}

static void create_ok(struct mc_seg *seg, const struct mc_config *cfg,
    const struct mc_layout *lay, pid_t *swept)
{
	pid_t dummy;
	int rc = mc_seg_create(seg, cfg, lay, swept ? swept : &dummy, err, sizeof(err));

	cr_assert_eq(rc, 0, "mc_seg_create(%s): %d %s", cfg->instance, rc, err);
}

static void attach_ok(struct mc_seg *seg, const char *instance, bool ro)
{
	int rc = mc_seg_attach(seg, instance, ro, err, sizeof(err));

	cr_assert_eq(rc, 0, "mc_seg_attach(%s): %d %s", instance, rc, err);
}

/* An instance whose creator is this process, marked READY. */
static struct mc_config cfg;
static struct mc_layout lay;
static struct mc_seg sup;

static void up(void)
{
	load_cfg(&cfg, &lay);
	create_ok(&sup, &cfg, &lay, NULL);
	ck_pr_store_32(&sup.hdr->sh_state, MC_SEG_READY);
}

static void ut_init(void)
{
	ut_guard_start(UT_TAG);
}

TestSuite(seg, .init = ut_init, .fini = ut_fini, .timeout = 120);

/* ------------------------------------------------------------------ */
/* Creation                                                            */

Test(seg, create_makes_file_header_and_tables)
{
	char path[128];
	struct stat st;
	pid_t swept = 12345;
	const struct mc_seg_hdr *h;

	load_cfg(&cfg, &lay);
	create_ok(&sup, &cfg, &lay, &swept);
	cr_assert_eq(swept, 0, "nothing to sweep, yet swept_pid = %d", (int)swept);
	shm_path(cfg.instance, path, sizeof(path));
	cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", (unsigned)(st.st_mode & 07777));
	cr_assert_eq((uint64_t)st.st_size, lay.total);
	cr_assert_eq(sup.size, lay.total);
	cr_assert(sup.owner);
	cr_assert_not(sup.readonly);

	h = sup.hdr;
	cr_assert_eq(h->sh_magic, MC_SEG_MAGIC);
	cr_assert_eq(h->sh_abi, MC_SEG_ABI);
	cr_assert_eq(h->sh_hdr_size, MC_SEG_HDR_SIZE);
	cr_assert_eq(h->sh_size, lay.total);
	cr_assert_str_eq(h->sh_instance, cfg.instance);
	cr_assert_eq(h->sh_supervisor_pid, getpid());
	cr_assert_eq(h->sh_supervisor_start, mc_proc_start_time(getpid()));
	cr_assert_neq(h->sh_created_wall_ns, 0);
	cr_assert_eq(h->sh_nregions, MC_NREGIONS);
	cr_assert_eq(h->sh_nslots, lay.nslots);
	cr_assert_eq(h->sh_nrings, lay.nrings);
	cr_assert_eq(h->sh_ring_entries, lay.ring_entries);
	cr_assert_eq(h->sh_journal_entries, lay.journal_entries);
	cr_assert_eq(h->sh_slots_off, lay.slots_off);
	cr_assert_eq(h->sh_ringmap_off, lay.ringmap_off);
	cr_assert_eq(h->sh_ringdir_off, lay.ringdir_off);
	cr_assert_eq(h->sh_ringbuf_off, lay.ringbuf_off);
	cr_assert_eq(h->sh_journal_off, lay.journal_off);
	cr_assert_eq(h->sh_mq_off, lay.region[MC_REGION_SHARED_MESSAGE_QUEUE].offset);
	cr_assert_eq(h->sh_mq_size, lay.region[MC_REGION_SHARED_MESSAGE_QUEUE].size);
	cr_assert_eq(h->sh_pool_size, lay.pool_size);
	cr_assert_eq(h->sh_max_frame, lay.max_frame);
	for (int i = 0; i < MC_NREGIONS; i++) {
		cr_assert_str_eq(h->sh_regions[i].rg_name, lay.region[i].name);
		cr_assert_str_eq(h->sh_regions[i].rg_writer, lay.region[i].writer);
		cr_assert_eq(h->sh_regions[i].rg_offset, lay.region[i].offset);
		cr_assert_eq(h->sh_regions[i].rg_size, lay.region[i].size);
	}
	cr_assert_eq(memcmp(&h->sh_config, &cfg, sizeof(cfg)), 0, "config copy differs");

	/* slot table */
	cr_assert_eq(sup.slots[0].sl_kind, MC_KIND_SUPERVISOR);
	cr_assert_eq(sup.slots[0].sl_pid, getpid());
	cr_assert_eq(sup.slots[0].sl_pool_size, 0);
	for (unsigned s = 1; s < lay.nslots; s++) {
		const struct mc_slot *sl = &sup.slots[s];

		if (s < MC_SLOT_FIRST_CLIENT) {
			cr_assert_eq(sl->sl_kind, MC_KIND_WORKER, "slot %u", s);
			cr_assert_str_eq(sl->sl_name, mc_layout_worker_name(s));
		} else {
			cr_assert_eq(sl->sl_kind, MC_KIND_CLIENT, "slot %u", s);
			cr_assert_eq(sl->sl_pid, 0, "client slot %u taken at creation", s);
			cr_assert_eq(sl->sl_state, MC_SLOT_FREE);
		}
		cr_assert_eq(sl->sl_pool_size, lay.pool_size);
		cr_assert_geq(sl->sl_pool_off, lay.pool_off);
		cr_assert_eq((sl->sl_pool_off - lay.pool_off) % lay.pool_size, 0);
		cr_assert_leq(sl->sl_pool_off + sl->sl_pool_size,
		    h->sh_mq_off + h->sh_mq_size, "slot %u pool outside the queue", s);
		for (unsigned t = 1; t < s; t++)
			cr_assert_neq(sup.slots[t].sl_pool_off, sl->sl_pool_off,
			    "slots %u and %u share a pool", t, s);
		cr_assert_eq(sl->sl_pool_head, 0);
		cr_assert_eq(sl->sl_pool_tail, 0);
	}
	/* ring map and ring directory */
	for (unsigned s = 0; s < lay.nslots; s++)
		for (unsigned d = 0; d < lay.nslots; d++) {
			int idx = mc_ring_index(&sup, s, d);

			cr_assert_eq(idx, mc_layout_ring_index(&lay, s, d), "(%u,%u)", s, d);
			if (idx >= 0) {
				cr_assert_eq(sup.rings[idx].r_src, s);
				cr_assert_eq(sup.rings[idx].r_dst, d);
				cr_assert_eq(mc_ring_depth(&sup, (uint32_t)idx), 0);
				cr_assert_eq(mc_ring_capacity(&sup, (uint32_t)idx) + 1, lay.ring_entries);
			}
		}
	mc_seg_destroy(&sup);
}

/* The lock fd must not leak into exec'd workers. */
Test(seg, lock_fd_is_close_on_exec)
{
	int fl;

	up();
	cr_assert_geq(sup.fd, 0);
	fl = fcntl(sup.fd, F_GETFD);
	cr_assert_neq(fl, -1);
	cr_assert(fl & FD_CLOEXEC, "instance lock fd is inherited across exec");
	mc_seg_destroy(&sup);
}

Test(seg, second_create_refused_while_first_alive)
{
	char path[128];
	struct stat before, after;
	struct mc_seg again;
	pid_t c;

	up();
	shm_path(cfg.instance, path, sizeof(path));
	cr_assert_eq(stat(path, &before), 0);
	c = ut_fork();
	if (c == 0) {
		pid_t swept = -7;
		char e[512] = "";
		char pidtxt[32];
		int rc = mc_seg_create(&again, &cfg, &lay, &swept, e, sizeof(e));

		UT_CHK(rc == -MC_E_RUNNING, "second create gave %d (%s)", rc, e);
		snprintf(pidtxt, sizeof(pidtxt), "%d", (int)getppid());
		UT_CHK(strstr(e, pidtxt) != NULL, "message does not name supervisor pid %s: %s",
		    pidtxt, e);
		_exit(0);
	}
	ut_wait_ok(c, "second create");
	/* the refused create left the live instance alone */
	cr_assert_eq(stat(path, &after), 0, "segment file vanished after a refused create");
	cr_assert_eq(before.st_ino, after.st_ino, "segment file was replaced");
	cr_assert_eq((uint64_t)after.st_size, lay.total);
	cr_assert_eq(sup.hdr->sh_magic, MC_SEG_MAGIC);
	attach_ok(&again, cfg.instance, true);
	cr_assert_eq(again.hdr->sh_supervisor_pid, getpid());
	mc_seg_detach(&again);
	mc_seg_destroy(&sup);
}

/* Same process, second open: flock conflicts between open file descriptions. */
Test(seg, second_create_refused_same_process)
{
	struct mc_seg again;
	pid_t swept;

	up();
	cr_assert_eq(mc_seg_create(&again, &cfg, &lay, &swept, err, sizeof(err)), -MC_E_RUNNING,
	    "%s", err);
	cr_assert_eq(sup.hdr->sh_magic, MC_SEG_MAGIC);
	mc_seg_destroy(&sup);
}

/*
 * A supervisor that dies without cleaning up: the next create sweeps its
 * segment (reporting its pid), and processes still mapping the old one
 * cannot reach the new one.
 */
Test(seg, dead_creator_is_swept)
{
	char path[128];
	struct stat old_st, new_st;
	struct mc_seg old, fresh;
	struct chan ch;
	pid_t c, swept = 0;
	uint64_t v;

	load_cfg(&cfg, &lay);
	chan_open(&ch);
	c = ut_fork();
	if (c == 0) {
		struct mc_seg s;
		char e[512] = "";
		pid_t sw;
		int rc;

		chan_child(&ch);
		rc = mc_seg_create(&s, &cfg, &lay, &sw, e, sizeof(e));
		UT_CHK(rc == 0, "create in child: %d %s", rc, e);
		ck_pr_store_32(&s.hdr->sh_state, MC_SEG_READY);
		ut_put(ch.cp[1], 1);
		ut_get(ch.pc[0], &v, 30000);   /* parent has attached */
		_exit(0);                       /* no detach, no destroy */
	}
	chan_parent(&ch);
	cr_assert_eq(chan_get(&ch, "created"), 1);
	attach_ok(&old, cfg.instance, false);
	cr_assert(mc_seg_supervisor_alive(&old));
	ut_put(ch.pc[1], 1);
	ut_wait_ok(c, "dying creator");
	chan_close(&ch);

	/* the old supervisor is gone: the segment is not usable by clients */
	cr_assert_not(mc_seg_supervisor_alive(&old));
	cr_assert_eq(mc_seg_claim_client(&old, "late", err, sizeof(err)), -MC_E_NOTREADY, "%s", err);

	shm_path(cfg.instance, path, sizeof(path));
	cr_assert_eq(stat(path, &old_st), 0);
	create_ok(&fresh, &cfg, &lay, &swept);
	cr_assert_eq(swept, c, "swept_pid %d, dead creator was %d", (int)swept, (int)c);
	cr_assert_eq(stat(path, &new_st), 0);
	cr_assert_neq(old_st.st_ino, new_st.st_ino, "stale segment was reused, not swept");
	cr_assert_eq(fresh.hdr->sh_supervisor_pid, getpid());
	cr_assert_eq(fresh.hdr->sh_state, MC_SEG_INIT, "fresh segment inherited old state");

	/* scribbling through the stale mapping must not reach the new segment */
	memset(old.base + old.hdr->sh_slots_off, 0xee, 4096);
	old.hdr->sh_state = 77;
	cr_assert_eq(fresh.hdr->sh_state, MC_SEG_INIT);
	cr_assert_eq(fresh.slots[0].sl_kind, MC_KIND_SUPERVISOR);
	cr_assert_eq(fresh.slots[0].sl_pid, getpid());
	mc_seg_detach(&old);
	mc_seg_destroy(&fresh);
}

/* A supervisor that detached without destroying also leaves a stale segment. */
Test(seg, detached_creator_is_swept_by_next_create)
{
	struct mc_seg a, b;
	pid_t swept = 0;

	load_cfg(&cfg, &lay);
	create_ok(&a, &cfg, &lay, NULL);
	mc_seg_detach(&a);      /* lock released, file left behind */
	create_ok(&b, &cfg, &lay, &swept);
	cr_assert_eq(swept, getpid());
	mc_seg_destroy(&b);
	/* after destroy there is nothing to sweep */
	create_ok(&b, &cfg, &lay, &swept);
	cr_assert_eq(swept, 0);
	mc_seg_destroy(&b);
}

/* A garbage object under the instance name (no lock held) is replaced. */
Test(seg, garbage_object_is_swept)
{
	char name[MC_SEG_NAME_MAX], buf[4096];
	struct mc_seg s;
	int fd;

	load_cfg(&cfg, &lay);
	mc_seg_name(cfg.instance, name, sizeof(name));
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	cr_assert_geq(fd, 0, "%s", strerror(errno));
	memset(buf, 0x5a, sizeof(buf));
	for (int i = 0; i < 32; i++)
		cr_assert_eq(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(fd);
	create_ok(&s, &cfg, &lay, NULL);
	cr_assert_eq(s.hdr->sh_magic, MC_SEG_MAGIC);
	cr_assert_eq(s.hdr->sh_size, lay.total);
	cr_assert_eq(s.slots[MC_SLOT_FIRST_CLIENT].sl_pid, 0);
	mc_seg_destroy(&s);
}

/* /dev/shm cannot hold the segment: a clear error and nothing left behind. */
Test(seg, shm_space_checked)
{
	char path[128];
	struct mc_seg s;
	pid_t swept;
	int rc;

	load_cfg(&cfg, &lay);
	cfg.storage_history = 1ull << 46;       /* 64 TiB more */
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), 0, "%s", err);
	rc = mc_seg_create(&s, &cfg, &lay, &swept, err, sizeof(err));
	cr_assert_eq(rc, -MC_E_SHMSPACE, "create of a %llu-byte segment gave %d (%s)",
	    (unsigned long long)lay.total, rc, err);
	cr_assert_not_null(strstr(err, "/dev/shm"), "%s", err);
	shm_path(cfg.instance, path, sizeof(path));
	cr_assert_neq(access(path, F_OK), 0, "failed create left %s behind", path);
}

/* ------------------------------------------------------------------ */
/* Attach                                                              */

Test(seg, attach_missing_instance)
{
	struct mc_seg s;
	char inst[MC_INSTANCE_MAX];

	ut_instance(inst, sizeof(inst));
	cr_assert_eq(mc_seg_attach(&s, inst, false, err, sizeof(err)), -MC_E_NOSEG);
	cr_assert_gt(strlen(err), 0);
	cr_assert_eq(mc_seg_attach(&s, inst, true, err, sizeof(err)), -MC_E_NOSEG);
}

/* Write `len` bytes of `fill` as object /mcpcore.<inst>, with a header prefix. */
static void make_object(const char *inst, const void *hdr, size_t hlen, size_t len, int fill)
{
	char name[MC_SEG_NAME_MAX];
	char *buf = malloc(len);
	int fd;

	cr_assert_not_null(buf);
	memset(buf, fill, len);
	if (hdr)
		memcpy(buf, hdr, hlen);
	mc_seg_name(inst, name, sizeof(name));
	fd = shm_open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0, "%s", strerror(errno));
	cr_assert_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
	free(buf);
}

Test(seg, attach_garbage_and_foreign_abi)
{
	char inst[MC_INSTANCE_MAX];
	struct mc_seg s;
	struct mc_seg_hdr h;
	int rc;

	ut_instance(inst, sizeof(inst));

	/* random bytes */
	make_object(inst, NULL, 0, 2 * MC_SEG_HDR_SIZE, 0xa7);
	rc = mc_seg_attach(&s, inst, false, err, sizeof(err));
	cr_assert(rc == -MC_E_ABI || rc == -MC_E_NOTREADY, "garbage attach gave %d", rc);

	/* smaller than a header */
	make_object(inst, NULL, 0, 100, 0);
	rc = mc_seg_attach(&s, inst, true, err, sizeof(err));
	cr_assert(rc == -MC_E_ABI || rc == -MC_E_NOTREADY, "tiny object attach gave %d", rc);

	/* a header from another ABI version */
	memset(&h, 0, sizeof(h));
	h.sh_magic = MC_SEG_MAGIC;
	h.sh_abi = MC_SEG_ABI + 1;
	h.sh_hdr_size = MC_SEG_HDR_SIZE;
	h.sh_size = 2 * MC_SEG_HDR_SIZE;
	make_object(inst, &h, sizeof(h), 2 * MC_SEG_HDR_SIZE, 0);
	rc = mc_seg_attach(&s, inst, false, err, sizeof(err));
	cr_assert_eq(rc, -MC_E_ABI, "foreign ABI attach gave %d (%s)", rc, err);

	/* right ABI, but the size in the header does not match the object */
	h.sh_abi = MC_SEG_ABI;
	h.sh_size = 64 * MC_SEG_HDR_SIZE;
	make_object(inst, &h, sizeof(h), 2 * MC_SEG_HDR_SIZE, 0);
	rc = mc_seg_attach(&s, inst, true, err, sizeof(err));
	cr_assert(rc == -MC_E_ABI || rc == -MC_E_NOTREADY, "size mismatch attach gave %d", rc);
}

/* Find the permissions of the mapping that starts at `addr` in /proc/self/maps. */
static bool map_perms(const void *addr, char perms[5])
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	bool found = false;

	if (f == NULL)
		return false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char p[5];

		if (sscanf(line, "%lx-%lx %4s", &lo, &hi, p) == 3 && lo == (unsigned long)addr) {
			memcpy(perms, p, 5);
			found = true;
			break;
		}
	}
	fclose(f);
	return found;
}

Test(seg, readonly_attach_maps_read_only)
{
	struct mc_seg ro, rw;
	char perms[5];
	int e;
	struct mc_frame *f;

	up();
	attach_ok(&ro, cfg.instance, true);
	attach_ok(&rw, cfg.instance, false);
	cr_assert(ro.readonly);
	cr_assert_not(ro.owner);
	cr_assert_eq(ro.size, lay.total);
	cr_assert_eq(ro.slot, -1);
	cr_assert(map_perms(ro.base, perms), "read-only mapping not in /proc/self/maps");
	cr_assert_eq(perms[0], 'r', "%s", perms);
	cr_assert_eq(perms[1], '-', "read-only attach is writable: %s", perms);
	cr_assert_eq(perms[3], 's', "not a shared mapping: %s", perms);
	cr_assert(map_perms(rw.base, perms));
	cr_assert_eq(perms[1], 'w', "%s", perms);
	/* same memory through both */
	cr_assert_eq(ro.hdr->sh_magic, MC_SEG_MAGIC);
	cr_assert_str_eq(ro.hdr->sh_instance, cfg.instance);
	rw.slots[MC_SLOT_FIRST_CLIENT].sl_restarts = 4242;
	cr_assert_eq(ro.slots[MC_SLOT_FIRST_CLIENT].sl_restarts, 4242);
	cr_assert_eq(sup.slots[MC_SLOT_FIRST_CLIENT].sl_restarts, 4242);
	/* a read-only handle cannot claim or produce */
	{
		int rc = mc_seg_claim_client(&ro, "ro", err, sizeof(err));

		cr_assert(rc == -EPERM || rc == -MC_E_NOTREADY, "read-only claim gave %d", rc);
		cr_assert_eq(ro.slot, -1);
	}
	f = mc_frame_alloc(&ro, 8, 0, &e);
	cr_assert_null(f);
	cr_assert_eq(e, -EPERM);
	mc_seg_detach(&ro);
	mc_seg_detach(&rw);
	mc_seg_destroy(&sup);
}

Test(seg, destroy_unlinks_and_marks_stopping)
{
	char path[128];
	struct mc_seg other;

	up();
	attach_ok(&other, cfg.instance, true);
	shm_path(cfg.instance, path, sizeof(path));
	cr_assert_eq(access(path, F_OK), 0);
	mc_seg_destroy(&sup);
	cr_assert_neq(access(path, F_OK), 0, "%s still exists after destroy", path);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(ck_pr_load_32(&other.hdr->sh_state), MC_SEG_STOPPING);
	mc_seg_detach(&other);
	cr_assert_eq(mc_seg_attach(&other, cfg.instance, true, err, sizeof(err)), -MC_E_NOSEG);
}

/* ------------------------------------------------------------------ */
/* Processes                                                           */

Test(seg, proc_start_time)
{
	pid_t c;
	uint64_t me = mc_proc_start_time(getpid());
	siginfo_t si;

	cr_assert_neq(me, 0);
	cr_assert_eq(mc_proc_start_time(getpid()), me, "start time is not stable");
	cr_assert_leq(mc_proc_start_time(getppid()), me, "parent started after us");

	/* a child whose name has spaces and parentheses parses the same */
	c = ut_fork();
	if (c == 0) {
		uint64_t before = mc_proc_start_time(getpid());

		prctl(PR_SET_NAME, "a) b (c) d");
		UT_CHK(before != 0, "child start time 0");
		UT_CHK(mc_proc_start_time(getpid()) == before, "odd comm breaks parsing: %llu vs %llu",
		    (unsigned long long)mc_proc_start_time(getpid()), (unsigned long long)before);
		_exit(0);
	}
	/* zombie: still in /proc, but gone as far as the contract goes */
	memset(&si, 0, sizeof(si));
	cr_assert_eq(waitid(P_PID, (id_t)c, &si, WEXITED | WNOWAIT), 0);
	cr_assert_eq(mc_proc_start_time(c), 0, "zombie child has a start time");
	ut_wait_ok(c, "odd comm");
	cr_assert_eq(mc_proc_start_time(c), 0, "reaped child has a start time");
	cr_assert_eq(mc_proc_start_time(0), 0);
	cr_assert_eq(mc_proc_start_time(-1), 0);
}

Test(seg, supervisor_alive_guards_pid_reuse)
{
	struct mc_seg cl;

	up();
	cr_assert(mc_seg_supervisor_alive(&sup));
	attach_ok(&cl, cfg.instance, false);
	cr_assert(mc_seg_supervisor_alive(&cl));
	/* same pid, other start time: a reused pid, not our supervisor */
	sup.hdr->sh_supervisor_start += 1;
	cr_assert_not(mc_seg_supervisor_alive(&cl));
	cr_assert_eq(mc_seg_claim_client(&cl, "x", err, sizeof(err)), -MC_E_NOTREADY);
	sup.hdr->sh_supervisor_start -= 1;
	/* not READY yet / stopping: no clients either */
	ck_pr_store_32(&sup.hdr->sh_state, MC_SEG_INIT);
	cr_assert_eq(mc_seg_claim_client(&cl, "x", err, sizeof(err)), -MC_E_NOTREADY);
	ck_pr_store_32(&sup.hdr->sh_state, MC_SEG_STOPPING);
	cr_assert_eq(mc_seg_claim_client(&cl, "x", err, sizeof(err)), -MC_E_NOTREADY);
	ck_pr_store_32(&sup.hdr->sh_state, MC_SEG_READY);
	cr_assert_eq(mc_seg_claim_client(&cl, "x", err, sizeof(err)), 0, "%s", err);
	mc_seg_release_client(&cl);
	mc_seg_detach(&cl);
	mc_seg_destroy(&sup);
}

/* ------------------------------------------------------------------ */
/* Client slots                                                        */

Test(seg, client_claim_until_full_then_release)
{
	unsigned nclients;
	struct mc_seg *cl;
	bool seen[MC_MAX_SLOTS] = { false };
	struct mc_seg extra;

	up();
	nclients = lay.nslots - MC_SLOT_FIRST_CLIENT;
	cr_assert_eq(nclients, cfg.max_clients);
	cl = calloc(nclients, sizeof(*cl));
	cr_assert_not_null(cl);
	for (unsigned i = 0; i < nclients; i++) {
		char label[16];
		const struct mc_slot *sl;

		attach_ok(&cl[i], cfg.instance, false);
		snprintf(label, sizeof(label), "cli%u", i);
		cr_assert_eq(mc_seg_claim_client(&cl[i], label, err, sizeof(err)), 0,
		    "claim %u: %s", i, err);
		cr_assert_geq(cl[i].slot, MC_SLOT_FIRST_CLIENT);
		cr_assert_lt((unsigned)cl[i].slot, lay.nslots);
		cr_assert_not(seen[cl[i].slot], "slot %d handed out twice", cl[i].slot);
		seen[cl[i].slot] = true;
		cr_assert_eq(cl[i].bit, 1ull << cl[i].slot);
		sl = &sup.slots[cl[i].slot];
		cr_assert_eq(sl->sl_pid, getpid());
		cr_assert_eq(sl->sl_state, MC_SLOT_ATTACHED);
		cr_assert_str_eq(sl->sl_label, label);
		cr_assert_eq(sl->sl_generation, 1);
		cr_assert_eq(cl[i].generation, 1);
		cr_assert_eq(sl->sl_proc_start, mc_proc_start_time(getpid()));
	}
	attach_ok(&extra, cfg.instance, false);
	cr_assert_eq(mc_seg_claim_client(&extra, "one-too-many", err, sizeof(err)), -MC_E_NOSLOT);
	cr_assert_gt(strlen(err), 0);
	cr_assert_eq(extra.slot, -1);

	/* release one: exactly that slot becomes claimable, with a new generation */
	{
		int freed = cl[1].slot;

		mc_seg_release_client(&cl[1]);
		cr_assert_eq(cl[1].slot, -1);
		cr_assert_eq(sup.slots[freed].sl_pid, 0);
		cr_assert_eq(sup.slots[freed].sl_state, MC_SLOT_FREE);
		cr_assert_eq(mc_seg_claim_client(&extra, "late", err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(extra.slot, freed);
		cr_assert_eq(sup.slots[freed].sl_generation, 2);
		cr_assert_str_eq(sup.slots[freed].sl_label, "late");
	}
	mc_seg_release_client(&extra);
	mc_seg_detach(&extra);
	for (unsigned i = 0; i < nclients; i++) {
		mc_seg_release_client(&cl[i]);
		mc_seg_detach(&cl[i]);
	}
	for (unsigned s = MC_SLOT_FIRST_CLIENT; s < lay.nslots; s++)
		cr_assert_eq(sup.slots[s].sl_pid, 0);
	free(cl);
	mc_seg_destroy(&sup);
}

/* Many processes race for the client slots: no slot goes to two of them. */
Test(seg, client_claim_race_between_processes)
{
	enum { NPROC = 8 };
	unsigned nclients;
	struct chan ch[NPROC];
	pid_t kids[NPROC];
	int got = 0, nos = 0;
	bool seen[MC_MAX_SLOTS] = { false };
	int gopipe[2];

	up();
	nclients = lay.nslots - MC_SLOT_FIRST_CLIENT;
	cr_assert_lt(nclients, NPROC, "test needs more processes than client slots");
	cr_assert_eq(pipe(gopipe), 0);
	for (int i = 0; i < NPROC; i++) {
		chan_open(&ch[i]);
		kids[i] = ut_fork();
		if (kids[i] == 0) {
			struct mc_seg s;
			char e[512];
			uint64_t v;
			char c;
			int rc;

			chan_child(&ch[i]);
			close(gopipe[1]);
			UT_CHK(mc_seg_attach(&s, cfg.instance, false, e, sizeof(e)) == 0, "%s", e);
			UT_CHK(read(gopipe[0], &c, 1) == 0, "go signal");   /* EOF = go */
			rc = mc_seg_claim_client(&s, "racer", e, sizeof(e));
			UT_CHK(rc == 0 || rc == -MC_E_NOSLOT, "claim gave %d: %s", rc, e);
			ut_put(ch[i].cp[1], rc == 0 ? (uint64_t)s.slot : 0);
			ut_get(ch[i].pc[0], &v, 30000);   /* hold the slot until told */
			if (rc == 0)
				mc_seg_release_client(&s);
			mc_seg_detach(&s);
			_exit(0);
		}
		chan_parent(&ch[i]);
	}
	close(gopipe[0]);
	close(gopipe[1]);       /* everyone claims at once */
	for (int i = 0; i < NPROC; i++) {
		uint64_t slot = chan_get(&ch[i], "claim result");

		if (slot == 0) {
			nos++;
			continue;
		}
		cr_assert_not(seen[slot], "slot %llu claimed by two processes",
		    (unsigned long long)slot);
		seen[slot] = true;
		cr_assert_eq(sup.slots[slot].sl_pid, kids[i], "slot %llu pid %d, claimer %d",
		    (unsigned long long)slot, sup.slots[slot].sl_pid, (int)kids[i]);
		got++;
	}
	cr_assert_eq(got, (int)nclients);
	cr_assert_eq(nos, NPROC - (int)nclients);
	for (int i = 0; i < NPROC; i++) {
		ut_put(ch[i].pc[1], 1);
		ut_wait_ok(kids[i], "racer");
		chan_close(&ch[i]);
	}
	for (unsigned s = MC_SLOT_FIRST_CLIENT; s < lay.nslots; s++)
		cr_assert_eq(sup.slots[s].sl_pid, 0, "slot %u not released", s);
	mc_seg_destroy(&sup);
}

/* Send `n` frames of `len` bytes from the worker handle w to dst_mask. */
static void send_n(struct mc_seg *w, uint64_t dst_mask, int n, uint32_t len)
{
	for (int i = 0; i < n; i++) {
		int e;
		struct mc_frame *f = mc_frame_alloc(w, len, 0, &e);

		cr_assert_not_null(f, "alloc %d: %d", i, e);
		memset(f->f_data, 0x40 + i, len);
		e = mc_frame_send(w, f, dst_mask);
		cr_assert_eq(e, 0, "send %d: %d", i, e);
	}
}

/*
 * A client dies holding a frame and with more queued to it, and having
 * published a frame of its own only in part.  Reaping frees its slot,
 * lets go of what it held and what was queued (the sender's pool drains
 * to zero), and finishes its partial publish.
 */
Test(seg, reap_dead_client)
{
	struct mc_seg w;
	struct chan ch;
	pid_t c;
	unsigned cslot;
	struct mc_msg m;
	int ring;

	up();
	attach_ok(&w, cfg.instance, false);
	cr_assert_eq(mc_seg_claim_worker(&w, MC_WORKER_STATE), 0);
	chan_open(&ch);
	c = ut_fork();
	if (c == 0) {
		struct mc_seg s;
		struct mc_msg got;
		struct mc_frame *f;
		char e[512];
		uint64_t v;
		int rc;

		chan_child(&ch);
		UT_CHK(mc_seg_attach(&s, cfg.instance, false, e, sizeof(e)) == 0, "%s", e);
		rc = mc_seg_claim_client(&s, "doomed", e, sizeof(e));
		UT_CHK(rc == 0, "claim: %d %s", rc, e);
		ut_put(ch.cp[1], (uint64_t)s.slot);
		UT_CHK(ut_get(ch.pc[0], &v, 30000), "go");
		/* take one frame and keep it */
		for (int i = 0; (rc = mc_recv(&s, &got)) == -EAGAIN && i < 1000; i++)
			mc_ring_wait(&s, 0, 10 * 1000 * 1000);
		UT_CHK(rc == 0, "recv: %d", rc);
		/* publish one frame in part: holders set, never put */
		f = mc_frame_alloc(&s, 24, 0, &rc);
		UT_CHK(f != NULL, "alloc: %d", rc);
		memcpy(f->f_data, "partial publish payload", 24);
		ck_pr_store_64(&f->f_holders, 1ull << MC_WORKER_STATE);
		ut_put(ch.cp[1], 2);
		for (;;)
			pause();        /* until SIGKILL */
	}
	chan_parent(&ch);
	cslot = (unsigned)chan_get(&ch, "claimed");
	cr_assert_geq(cslot, MC_SLOT_FIRST_CLIENT);
	cr_assert_eq(sup.slots[cslot].sl_state, MC_SLOT_ATTACHED);
	send_n(&w, 1ull << cslot, 1, 100);
	ut_put(ch.pc[1], 1);
	cr_assert_eq(chan_get(&ch, "holding"), 2);
	send_n(&w, 1ull << cslot, 3, 200);     /* queued, never received */
	cr_assert_gt(mc_frame_pool_used(&w, MC_WORKER_STATE), 0);

	/* alive: nothing to reap */
	cr_assert_eq(mc_seg_reap_clients(&sup), 0);
	cr_assert_eq(sup.slots[cslot].sl_pid, c);

	kill(c, SIGKILL);
	{
		int st = ut_wait(c);

		cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	}
	chan_close(&ch);
	cr_assert_gt(mc_frame_pool_used(&w, MC_WORKER_STATE), 0, "frames freed before the reap");
	cr_assert_eq(mc_seg_reap_clients(&sup), 1);
	cr_assert_eq(sup.slots[cslot].sl_pid, 0);
	cr_assert_eq(sup.slots[cslot].sl_state, MC_SLOT_FREE);
	cr_assert_eq(mc_frame_pool_used(&w, MC_WORKER_STATE), 0,
	    "sender's pool still holds %llu bytes after the reap",
	    (unsigned long long)mc_frame_pool_used(&w, MC_WORKER_STATE));
	ring = mc_ring_index(&sup, MC_WORKER_STATE, cslot);
	cr_assert_geq(ring, 0);
	cr_assert_eq(mc_ring_depth(&sup, (uint32_t)ring), 0);
	/* the dead client's partial publish reached the worker, once */
	cr_assert_eq(mc_recv(&w, &m), 0, "partial publish of the dead client was not finished");
	cr_assert_eq(m.src, cslot);
	cr_assert_eq(m.frame->f_len, 24);
	cr_assert_str_eq((const char *)m.frame->f_data, "partial publish payload");
	mc_frame_release(&w, &m);
	cr_assert_eq(mc_recv(&w, &m), -EAGAIN);
	/* a second reap finds nothing */
	cr_assert_eq(mc_seg_reap_clients(&sup), 0);
	/* and the slot can be claimed again, and used */
	{
		struct mc_seg again;

		attach_ok(&again, cfg.instance, false);
		cr_assert_eq(mc_seg_claim_client(&again, "next", err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(mc_recv(&again, &m), -EAGAIN, "new client sees its predecessor's frames");
		send_n(&w, again.bit, 1, 8);
		cr_assert_eq(mc_recv(&again, &m), 0);
		mc_frame_release(&again, &m);
		mc_seg_release_client(&again);
		mc_seg_detach(&again);
	}
	cr_assert_eq(mc_frame_pool_used(&w, MC_WORKER_STATE), 0);
	mc_seg_detach(&w);
	mc_seg_destroy(&sup);
}

/*
 * A sender that checked the slot before the client released it may still
 * put after the release drained the rings: the supervisor's reap drains
 * such stragglers.  Simulated by a send while attached, followed by the
 * state a release leaves (FREE, pid 0) without its drain having seen it.
 */
Test(seg, reap_drains_stragglers_of_free_slot)
{
	struct mc_seg w, cl;
	unsigned cslot;
	int ring;

	up();
	attach_ok(&w, cfg.instance, false);
	cr_assert_eq(mc_seg_claim_worker(&w, MC_WORKER_ROUTER), 0);
	attach_ok(&cl, cfg.instance, false);
	cr_assert_eq(mc_seg_claim_client(&cl, "brief", err, sizeof(err)), 0, "%s", err);
	cslot = (unsigned)cl.slot;
	send_n(&w, 1ull << cslot, 2, 64);
	ring = mc_ring_index(&w, MC_WORKER_ROUTER, cslot);
	cr_assert_geq(ring, 0);
	cr_assert_eq(mc_ring_depth(&sup, (uint32_t)ring), 2);
	/* the client goes away; the two puts landed after its drain */
	mc_seg_detach(&cl);
	ck_pr_store_32(&sup.slots[cslot].sl_state, MC_SLOT_FREE);
	ck_pr_store_64(&sup.slots[cslot].sl_proc_start, 0);
	ck_pr_store_int(&sup.slots[cslot].sl_pid, 0);
	cr_assert_gt(mc_frame_pool_used(&w, MC_WORKER_ROUTER), 0);

	mc_seg_reap_clients(&sup);
	cr_assert_eq(mc_ring_depth(&sup, (uint32_t)ring), 0, "stragglers left in the ring");
	cr_assert_eq(sup.slots[cslot].sl_pid, 0, "reap kept the free slot");
	cr_assert_eq(mc_frame_pool_used(&w, MC_WORKER_ROUTER), 0,
	    "straggler frames still held for the free slot");
	/* the next claimer of the slot starts clean */
	attach_ok(&cl, cfg.instance, false);
	cr_assert_eq(mc_seg_claim_client(&cl, "after", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq((unsigned)cl.slot, cslot);
	{
		struct mc_msg m;

		cr_assert_eq(mc_recv(&cl, &m), -EAGAIN);
	}
	mc_seg_release_client(&cl);
	mc_seg_detach(&cl);
	mc_seg_detach(&w);
	mc_seg_destroy(&sup);
}

/* Without the supervisor's help, a new claimer of the slot drains it itself. */
Test(seg, fresh_client_does_not_see_predecessor_frames)
{
	struct mc_seg w, cl;
	struct mc_msg m;
	unsigned cslot;

	up();
	attach_ok(&w, cfg.instance, false);
	cr_assert_eq(mc_seg_claim_worker(&w, MC_WORKER_MONITOR), 0);
	attach_ok(&cl, cfg.instance, false);
	cr_assert_eq(mc_seg_claim_client(&cl, "first", err, sizeof(err)), 0, "%s", err);
	cslot = (unsigned)cl.slot;
	send_n(&w, 1ull << cslot, 3, 32);
	cr_assert_eq(mc_recv(&cl, &m), 0);      /* takes one, keeps it */
	mc_seg_detach(&cl);
	ck_pr_store_32(&sup.slots[cslot].sl_state, MC_SLOT_FREE);
	ck_pr_store_64(&sup.slots[cslot].sl_proc_start, 0);
	ck_pr_store_int(&sup.slots[cslot].sl_pid, 0);

	attach_ok(&cl, cfg.instance, false);
	cr_assert_eq(mc_seg_claim_client(&cl, "second", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq((unsigned)cl.slot, cslot);
	cr_assert_eq(mc_recv(&cl, &m), -EAGAIN, "new client got its predecessor's frame");
	cr_assert_eq(mc_frame_pool_used(&w, MC_WORKER_MONITOR), 0);
	send_n(&w, 1ull << cslot, 1, 32);
	cr_assert_eq(mc_recv(&cl, &m), 0);
	mc_frame_release(&cl, &m);
	mc_seg_release_client(&cl);
	mc_seg_detach(&cl);
	mc_seg_detach(&w);
	mc_seg_destroy(&sup);
}

Test(seg, names_and_strings)
{
	char buf[MC_SEG_NAME_MAX];

	mc_seg_name("default", buf, sizeof(buf));
	cr_assert_str_eq(buf, "/mcpcore.default");
	cr_assert_str_eq(mc_slot_state_name(MC_SLOT_RUNNING), "running");
	cr_assert_str_eq(mc_slot_state_name(MC_SLOT_FREE), "free");
	cr_assert_not_null(mc_slot_state_name(9999));
	for (int e = MC_E_NOSEG; e <= MC_E_NOSLOT; e++) {
		const char *s = mc_strerror(-e);

		cr_assert_not_null(s);
		cr_assert_gt(strlen(s), 0);
		cr_assert_null(strstr(s, "Unknown error"), "%d has no text: %s", e, s);
	}
	cr_assert_str_eq(mc_strerror(-ENOENT), strerror(ENOENT));
}

/*
 * A dead client published a frame in part to a worker whose ring from the
 * client is full: the reap cannot finish it yet, so the slot stays
 * REAPING; once the worker makes room, the next reap finishes the publish
 * and frees the slot.
 */
Test(seg, reap_retries_while_peer_ring_full)
{
	struct mc_seg w;
	struct chan ch;
	struct mc_msg m;
	pid_t c;
	unsigned cslot;
	uint64_t nsent;
	int ring, got = 0, partial = 0;

	up();
	attach_ok(&w, cfg.instance, false);
	cr_assert_eq(mc_seg_claim_worker(&w, MC_WORKER_ROUTER), 0);
	chan_open(&ch);
	c = ut_fork();
	if (c == 0) {
		struct mc_seg s;
		struct mc_frame *f;
		char e[512];
		uint64_t n = 0;
		int rc;

		chan_child(&ch);
		UT_CHK(mc_seg_attach(&s, cfg.instance, false, e, sizeof(e)) == 0, "%s", e);
		UT_CHK(mc_seg_claim_client(&s, "filler", e, sizeof(e)) == 0, "%s", e);
		for (;;) {
			f = mc_frame_alloc(&s, 0, 0, &rc);
			UT_CHK(f != NULL, "alloc: %d", rc);
			f->f_user = 1;
			rc = mc_frame_send(&s, f, 1ull << MC_WORKER_ROUTER);
			if (rc == -EAGAIN)
				break;
			UT_CHK(rc == 0, "send: %d", rc);
			n++;
		}
		/* the outstanding frame: holders set, never put (dies here) */
		f->f_user = 2;
		ck_pr_store_64(&f->f_holders, 1ull << MC_WORKER_ROUTER);
		ut_put(ch.cp[1], (uint64_t)s.slot);
		ut_put(ch.cp[1], n);
		for (;;)
			pause();
	}
	chan_parent(&ch);
	cslot = (unsigned)chan_get(&ch, "slot");
	nsent = chan_get(&ch, "count");
	ring = mc_ring_index(&sup, cslot, MC_WORKER_ROUTER);
	cr_assert_geq(ring, 0);
	cr_assert_eq(nsent, mc_ring_capacity(&sup, (uint32_t)ring));
	kill(c, SIGKILL);
	ut_wait(c);
	chan_close(&ch);

	cr_assert_eq(mc_seg_reap_clients(&sup), 0, "freed a slot with an unfinished publish");
	cr_assert_eq(sup.slots[cslot].sl_state, MC_SLOT_REAPING);
	cr_assert_neq(sup.slots[cslot].sl_pid, 0, "REAPING slot claimable");
	cr_assert_neq(sup.slots[cslot].sl_pid, c);
	/* a client claim cannot take it meanwhile */
	{
		struct mc_seg others[8];
		unsigned n = lay.nslots - MC_SLOT_FIRST_CLIENT - 1;

		for (unsigned i = 0; i < n; i++) {
			attach_ok(&others[i], cfg.instance, false);
			cr_assert_eq(mc_seg_claim_client(&others[i], "o", err, sizeof(err)), 0, "%s", err);
			cr_assert_neq((unsigned)others[i].slot, cslot);
		}
		attach_ok(&others[n], cfg.instance, false);
		cr_assert_eq(mc_seg_claim_client(&others[n], "o", err, sizeof(err)), -MC_E_NOSLOT);
		for (unsigned i = 0; i <= n; i++) {
			mc_seg_release_client(&others[i]);
			mc_seg_detach(&others[i]);
		}
	}
	/* the worker makes room for one */
	cr_assert_eq(mc_recv(&w, &m), 0);
	cr_assert_eq(m.frame->f_user, 1);
	got++;
	mc_frame_release(&w, &m);
	cr_assert_eq(mc_seg_reap_clients(&sup), 1);
	cr_assert_eq(sup.slots[cslot].sl_state, MC_SLOT_FREE);
	cr_assert_eq(sup.slots[cslot].sl_pid, 0);
	while (mc_recv(&w, &m) == 0) {
		if (m.frame->f_user == 2)
			partial++;
		else
			got++;
		mc_frame_release(&w, &m);
	}
	cr_assert_eq((uint64_t)got, nsent, "worker got %d of %llu full sends", got,
	    (unsigned long long)nsent);
	cr_assert_eq(partial, 1, "partial publish delivered %d times", partial);
	mc_seg_detach(&w);
	mc_seg_destroy(&sup);
}

Test(seg, worker_ready_and_heartbeat)
{
	struct mc_seg w;
	uint64_t hb;

	up();
	sup.slots[MC_WORKER_MONITOR].sl_generation = 3;        /* as the supervisor would */
	attach_ok(&w, cfg.instance, false);
	cr_assert_eq(mc_seg_claim_worker(&w, MC_SLOT_SUPERVISOR), -EINVAL);
	cr_assert_eq(mc_seg_claim_worker(&w, MC_SLOT_FIRST_CLIENT), -EINVAL);
	cr_assert_eq(mc_seg_claim_worker(&w, MC_WORKER_MONITOR), 0);
	cr_assert_eq(w.slot, MC_WORKER_MONITOR);
	cr_assert_eq(w.bit, 1ull << MC_WORKER_MONITOR);
	cr_assert_eq(w.generation, 3);
	hb = sup.slots[MC_WORKER_MONITOR].sl_heartbeat_ns;
	cr_assert_neq(hb, 0, "claim does not beat the heart");
	cr_assert_neq(sup.slots[MC_WORKER_MONITOR].sl_ready_gen, 3);
	mc_seg_ready(&w);
	cr_assert_eq(sup.slots[MC_WORKER_MONITOR].sl_ready_gen, 3);
	mc_seg_heartbeat(&w);
	cr_assert_geq(sup.slots[MC_WORKER_MONITOR].sl_heartbeat_ns, hb);
	mc_seg_detach(&w);
	mc_seg_destroy(&sup);
}
