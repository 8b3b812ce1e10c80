/*
 * seg.c - create, sweep, attach and claim the shared-memory segment
 * (protocol and ownership in mc_seg.h).
 */
#include "mc_seg.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "mc_frame.h"
#include "mc_log.h"
#include "mc_metrics.h"
#include "mc_ring.h"
#include "mc_util.h"

#define MC_SHM_DIR "/dev/shm"

_Static_assert(sizeof(struct mc_slot) <= MC_SLOT_SIZE, "mc_slot outgrew MC_SLOT_SIZE");
_Static_assert(sizeof(struct mc_seg_hdr) <= MC_SEG_HDR_SIZE, "header outgrew MC_SEG_HDR_SIZE");

static const char *const mc_state_names[] = {
	"free", "starting", "running", "backoff", "failed", "stopped", "attached", "reaping",
};

const char *mc_slot_state_name(uint32_t state)
{
	return state < MC_ARRAY_LEN(mc_state_names) ? mc_state_names[state] : "unknown";
}

const char *mc_strerror(int err)
{
	switch (-err) {
	case MC_E_NOSEG:    return "no segment for this instance";
	case MC_E_ABI:      return "segment ABI version mismatch";
	case MC_E_RUNNING:  return "instance already running";
	case MC_E_SHMSPACE: return "/dev/shm too small";
	case MC_E_NOTREADY: return "instance not running";
	case MC_E_NOSLOT:   return "no free client slot";
	default:            return strerror(-err);
	}
}

void mc_seg_name(const char *instance, char *buf, size_t len)
{
	snprintf(buf, len, "/mcpcore.%s", instance);
}

uint64_t mc_proc_start_time(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	char state;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* comm may contain spaces and ')': fields resume after the last ')' */
	p = strrchr(buf, ')');
	if (p == NULL || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u"
	    " %*d %*d %*d %*d %*d %*d %llu", &state, &start) != 2)
		return 0;
	return (state == 'Z' || state == 'X') ? 0 : start;
}

static bool mc_pid_alive(pid_t pid, uint64_t start)
{
	if (pid <= 0)
		return false;
	if (start != 0)
		return mc_proc_start_time(pid) == start;
	return kill(pid, 0) == 0 || errno == EPERM;
}

bool mc_seg_supervisor_alive(const struct mc_seg *seg)
{
	return mc_pid_alive(ck_pr_load_int(&seg->hdr->sh_supervisor_pid),
	    ck_pr_load_64(&seg->hdr->sh_supervisor_start));
}

/* Point the handle's shortcuts into the mapped segment. */
static void mc_seg_bind(struct mc_seg *seg)
{
	seg->hdr = (struct mc_seg_hdr *)seg->base;
	seg->slots = (struct mc_slot *)(seg->base + seg->hdr->sh_slots_off);
	seg->ringmap = (const int16_t *)(seg->base + seg->hdr->sh_ringmap_off);
	seg->rings = (struct mc_ring *)(seg->base + seg->hdr->sh_ringdir_off);
	seg->slot = -1;
	seg->bit = 0;
	seg->alloc_pos = UINT64_MAX;
}

/* Pid recorded in an old segment's header, or 0 (for the sweep message). */
static pid_t mc_seg_old_pid(int fd, off_t size)
{
	struct mc_seg_hdr *h;
	pid_t pid = 0;

	if (size < (off_t)sizeof(*h))
		return 0;
	h = mmap(NULL, sizeof(*h), PROT_READ, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED)
		return 0;
	if (h->sh_magic == MC_SEG_MAGIC)
		pid = h->sh_supervisor_pid;
	munmap(h, sizeof(*h));
	return pid;
}

/*
 * Open the instance's shm object and take its lock.  Loops because the
 * object may be swept or replaced between open and lock: we only keep a
 * lock on the object the name currently points at.
 */
static int mc_seg_lock(struct mc_seg *seg, pid_t *swept_pid, char *err, size_t errlen)
{
	char path[sizeof(MC_SHM_DIR) + MC_SEG_NAME_MAX];
	struct stat st, named;

	snprintf(path, sizeof(path), MC_SHM_DIR "%s", seg->name);
	*swept_pid = 0;
	for (int tries = 0; tries < 16; tries++) {
		int fd = shm_open(seg->name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

		if (fd < 0) {
			snprintf(err, errlen, "cannot open shared memory %s: %s", path, strerror(errno));
			return -errno;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			int e = errno;
			pid_t pid = fstat(fd, &st) == 0 ? mc_seg_old_pid(fd, st.st_size) : 0;

			close(fd);
			if (e != EWOULDBLOCK) {
				snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
				return -e;
			}
			snprintf(err, errlen, "instance '%s' is already running (supervisor pid %d, "
			    "segment %s); stop it first (kill -TERM %d) or pick another instance name",
			    seg->name + strlen("/mcpcore."), (int)pid, path, (int)pid);
			return -MC_E_RUNNING;
		}
		if (fstat(fd, &st) < 0 || stat(path, &named) < 0 ||
		    st.st_ino != named.st_ino || st.st_dev != named.st_dev) {
			close(fd);      /* lost a race with another start: look again */
			continue;
		}
		if (st.st_size != 0) {
			/* the lock was free, so whoever made this segment is dead */
			*swept_pid = mc_seg_old_pid(fd, st.st_size);
			if (*swept_pid == 0)
				*swept_pid = -1;
			shm_unlink(seg->name);
			close(fd);
			continue;
		}
		seg->fd = fd;
		return 0;
	}
	snprintf(err, errlen, "could not take the lock on %s: it kept changing", path);
	return -EAGAIN;
}

static int mc_seg_check_space(const struct mc_seg *seg, uint64_t need, const char *source,
    char *err, size_t errlen)
{
	struct statvfs vfs;
	uint64_t avail;

	if (fstatvfs(seg->fd, &vfs) < 0) {
		snprintf(err, errlen, "cannot stat " MC_SHM_DIR ": %s", strerror(errno));
		return -errno;
	}
	avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	if (avail >= need)
		return 0;
	snprintf(err, errlen, MC_SHM_DIR " has %llu MiB free but the segment needs %llu MiB "
	    "(the sum of the regions in %s); pages are only used when touched, but a full "
	    "/dev/shm would kill processes with SIGBUS later. Grow it (docker run --shm-size=%llum, "
	    "compose shm_size: %llum, or mount -o remount,size=%llum " MC_SHM_DIR ") or shrink "
	    "the regions in the config",
	    (unsigned long long)(avail >> 20), (unsigned long long)(need >> 20), source,
	    (unsigned long long)((need >> 20) + 64), (unsigned long long)((need >> 20) + 64),
	    (unsigned long long)((need >> 20) + 64));
	return -MC_E_SHMSPACE;
}

/* Write the header, slot table and ring directory of a fresh segment. */
static void mc_seg_init(struct mc_seg *seg, const struct mc_config *cfg,
    const struct mc_layout *lay)
{
	struct mc_seg_hdr *h = (struct mc_seg_hdr *)seg->base;
	int16_t *map;

	h->sh_abi = MC_SEG_ABI;
	h->sh_hdr_size = MC_SEG_HDR_SIZE;
	h->sh_size = lay->total;
	h->sh_created_wall_ns = mc_wall_ns();
	snprintf(h->sh_instance, sizeof(h->sh_instance), "%s", cfg->instance);
	h->sh_supervisor_pid = getpid();
	h->sh_supervisor_start = mc_proc_start_time(getpid());
	h->sh_heartbeat_ns = mc_now_ns();
	h->sh_state = MC_SEG_INIT;
	h->sh_nregions = MC_NREGIONS;
	h->sh_nslots = lay->nslots;
	h->sh_nrings = lay->nrings;
	h->sh_ring_entries = lay->ring_entries;
	h->sh_journal_entries = lay->journal_entries;
	h->sh_slots_off = lay->slots_off;
	h->sh_ringmap_off = lay->ringmap_off;
	h->sh_ringdir_off = lay->ringdir_off;
	h->sh_ringbuf_off = lay->ringbuf_off;
	h->sh_journal_off = lay->journal_off;
	h->sh_metrics_off = lay->metrics_off;
	h->sh_mq_off = lay->region[MC_REGION_SHARED_MESSAGE_QUEUE].offset;
	h->sh_mq_size = lay->region[MC_REGION_SHARED_MESSAGE_QUEUE].size;
	h->sh_pool_size = lay->pool_size;
	h->sh_max_frame = lay->max_frame;
	for (int i = 0; i < MC_NREGIONS; i++) {
		struct mc_region *rg = &h->sh_regions[i];

		snprintf(rg->rg_name, sizeof(rg->rg_name), "%s", lay->region[i].name);
		snprintf(rg->rg_writer, sizeof(rg->rg_writer), "%s", lay->region[i].writer);
		rg->rg_offset = lay->region[i].offset;
		rg->rg_size = lay->region[i].size;
	}
	h->sh_config = *cfg;
	mc_seg_bind(seg);

	for (unsigned s = 0; s < lay->nslots; s++) {
		struct mc_slot *sl = &seg->slots[s];

		if (s == MC_SLOT_SUPERVISOR) {
			sl->sl_kind = MC_KIND_SUPERVISOR;
			snprintf(sl->sl_name, sizeof(sl->sl_name), "supervisor");
			sl->sl_pid = getpid();
			sl->sl_state = MC_SLOT_RUNNING;
		} else if (s < MC_SLOT_FIRST_CLIENT) {
			sl->sl_kind = MC_KIND_WORKER;
			snprintf(sl->sl_name, sizeof(sl->sl_name), "%s", mc_layout_worker_name(s));
		} else {
			sl->sl_kind = MC_KIND_CLIENT;
			snprintf(sl->sl_name, sizeof(sl->sl_name), "client%u", (s - MC_SLOT_FIRST_CLIENT) % 100u);
		}
		if (s != MC_SLOT_SUPERVISOR) {
			sl->sl_pool_off = lay->pool_off + (uint64_t)(s - 1) * lay->pool_size;
			sl->sl_pool_size = lay->pool_size;
		}
		ck_ec32_init(&sl->sl_bell, 0);
	}
	map = (int16_t *)(seg->base + lay->ringmap_off);
	for (unsigned src = 0; src < lay->nslots; src++)
		for (unsigned dst = 0; dst < lay->nslots; dst++) {
			int idx = mc_layout_ring_index(lay, src, dst);

			map[src * lay->nslots + dst] = (int16_t)idx;
			if (idx >= 0)
				mc_ring_init(seg, (uint32_t)idx, src, dst);
		}
	/* last, with release ordering: seeing the magic means seeing all of the above */
	ck_pr_fence_store();
	ck_pr_store_64(&h->sh_magic, MC_SEG_MAGIC);
}

int mc_seg_create(struct mc_seg *seg, const struct mc_config *cfg,
    const struct mc_layout *lay, pid_t *swept_pid, char *err, size_t errlen)
{
	int rc;

	memset(seg, 0, sizeof(*seg));
	seg->fd = -1;
	seg->slot = -1;
	mc_seg_name(cfg->instance, seg->name, sizeof(seg->name));
	rc = mc_seg_lock(seg, swept_pid, err, errlen);
	if (rc)
		return rc;
	rc = mc_seg_check_space(seg, lay->total, cfg->source, err, errlen);
	if (rc)
		goto fail;
	if (fchmod(seg->fd, 0600) < 0 || ftruncate(seg->fd, (off_t)lay->total) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot size %s to %llu bytes: %s", seg->name,
		    (unsigned long long)lay->total, strerror(errno));
		goto fail;
	}
	seg->base = mmap(NULL, lay->total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
	    seg->fd, 0);
	if (seg->base == MAP_FAILED) {
		rc = -errno;
		seg->base = NULL;
		snprintf(err, errlen, "cannot map %s: %s", seg->name, strerror(errno));
		goto fail;
	}
	seg->size = lay->total;
	seg->owner = true;
	mc_seg_init(seg, cfg, lay);
	return 0;
fail:
	shm_unlink(seg->name);
	close(seg->fd);
	seg->fd = -1;
	return rc;
}

/*
 * The header is input from another process: check that everything we will
 * dereference through it lies inside the mapping before trusting it.
 */
static bool mc_seg_header_sane(const struct mc_seg_hdr *h)
{
	uint64_t size = h->sh_size, nslots = h->sh_nslots, nrings = h->sh_nrings;
	uint64_t entries = h->sh_ring_entries, jentries = h->sh_journal_entries;

	if (h->sh_hdr_size != MC_SEG_HDR_SIZE || h->sh_nregions != MC_NREGIONS ||
	    nslots < MC_SLOT_FIRST_CLIENT + 1 || nslots > MC_MAX_SLOTS || nrings == 0 ||
	    entries == 0 || (entries & (entries - 1)) || jentries == 0 ||
	    (jentries & (jentries - 1)) || jentries > entries)
		return false;
	if (h->sh_slots_off + nslots * MC_SLOT_SIZE > size ||
	    h->sh_ringmap_off + nslots * nslots * sizeof(int16_t) > size ||
	    h->sh_ringdir_off + nrings * MC_RING_SIZE > size ||
	    h->sh_ringbuf_off + nrings * entries * MC_DESC_SIZE > size ||
	    h->sh_journal_off + nrings * jentries * MC_DESC_SIZE > size ||
	    h->sh_metrics_off + nslots * MC_METRICS_BLOCK > size ||
	    h->sh_mq_off + h->sh_mq_size > size || h->sh_pool_size == 0 ||
	    h->sh_pool_size * (nslots - 1) > h->sh_mq_size)
		return false;
	for (int i = 0; i < MC_NREGIONS; i++)
		if (h->sh_regions[i].rg_offset + h->sh_regions[i].rg_size > size)
			return false;
	return true;
}

/* Slot pools, ring map and ring records: every index and offset we follow. */
static bool mc_seg_tables_sane(const struct mc_seg *seg)
{
	const struct mc_seg_hdr *h = seg->hdr;

	for (uint32_t s = 1; s < h->sh_nslots; s++)
		if (seg->slots[s].sl_pool_size != h->sh_pool_size ||
		    seg->slots[s].sl_pool_off != h->sh_mq_off + (s - 1) * h->sh_pool_size)
			return false;
	for (uint32_t i = 0; i < h->sh_nslots * h->sh_nslots; i++)
		if (seg->ringmap[i] < -1 || seg->ringmap[i] >= (int32_t)h->sh_nrings)
			return false;
	for (uint32_t i = 0; i < h->sh_nrings; i++) {
		const struct mc_ring *r = &seg->rings[i];

		if (r->r_src >= h->sh_nslots || r->r_dst >= h->sh_nslots ||
		    r->r_ck.size != h->sh_ring_entries || r->r_ck.mask != h->sh_ring_entries - 1 ||
		    r->r_journal_mask != h->sh_journal_entries - 1 ||
		    r->r_buf_off + (uint64_t)h->sh_ring_entries * MC_DESC_SIZE > h->sh_size ||
		    r->r_journal_off + (uint64_t)h->sh_journal_entries * MC_DESC_SIZE > h->sh_size)
			return false;
	}
	return true;
}

int mc_seg_attach(struct mc_seg *seg, const char *instance, bool readonly,
    char *err, size_t errlen)
{
	const struct mc_seg_hdr *h;
	struct stat st;
	int rc;

	memset(seg, 0, sizeof(*seg));
	seg->slot = -1;
	seg->readonly = readonly;
	mc_seg_name(instance, seg->name, sizeof(seg->name));
	seg->fd = shm_open(seg->name, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0);
	if (seg->fd < 0) {
		rc = errno == ENOENT ? -MC_E_NOSEG : -errno;
		if (errno == ENOENT)
			snprintf(err, errlen, "no segment " MC_SHM_DIR "%s: instance '%s' is not "
			    "running (start it with `mcpcore run`)", seg->name, instance);
		else
			snprintf(err, errlen, "cannot open " MC_SHM_DIR "%s: %s%s", seg->name,
			    strerror(errno), errno == EACCES ?
			    " (it belongs to another user; run as that user)" : "");
		return rc;
	}
	if (fstat(seg->fd, &st) < 0 || st.st_size < (off_t)MC_SEG_HDR_SIZE) {
		snprintf(err, errlen, "segment " MC_SHM_DIR "%s is not initialised yet "
		    "(its supervisor is starting or died while starting)", seg->name);
		rc = -MC_E_NOTREADY;
		goto fail;
	}
	seg->base = mmap(NULL, (size_t)st.st_size, readonly ? PROT_READ : PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_NORESERVE, seg->fd, 0);
	if (seg->base == MAP_FAILED) {
		rc = -errno;
		seg->base = NULL;
		snprintf(err, errlen, "cannot map " MC_SHM_DIR "%s: %s", seg->name, strerror(errno));
		goto fail;
	}
	seg->size = (size_t)st.st_size;
	h = (const struct mc_seg_hdr *)seg->base;
	if (ck_pr_load_64(&h->sh_magic) != MC_SEG_MAGIC) {
		snprintf(err, errlen, "segment " MC_SHM_DIR "%s is not initialised yet "
		    "(its supervisor is starting or died while starting)", seg->name);
		rc = -MC_E_NOTREADY;
		goto fail;
	}
	ck_pr_fence_acquire();
	if (h->sh_abi != MC_SEG_ABI || h->sh_size != (uint64_t)st.st_size) {
		snprintf(err, errlen, "segment " MC_SHM_DIR "%s has ABI version %u and size %llu; "
		    "this build speaks ABI %u: use the mcpcore binaries that created it",
		    seg->name, h->sh_abi, (unsigned long long)h->sh_size, MC_SEG_ABI);
		rc = -MC_E_ABI;
		goto fail;
	}
	if (!mc_seg_header_sane(h)) {
		snprintf(err, errlen, "segment " MC_SHM_DIR "%s has an inconsistent header "
		    "(offsets or counts outside the segment); it was not written by a working "
		    "mcpcore supervisor", seg->name);
		rc = -MC_E_ABI;
		goto fail;
	}
	mc_seg_bind(seg);
	if (!mc_seg_tables_sane(seg)) {
		snprintf(err, errlen, "segment " MC_SHM_DIR "%s has an inconsistent slot table "
		    "or ring directory; it was not written by a working mcpcore supervisor",
		    seg->name);
		rc = -MC_E_ABI;
		goto fail;
	}
	return 0;
fail:
	mc_seg_detach(seg);
	return rc;
}

void mc_seg_detach(struct mc_seg *seg)
{
	if (seg->base != NULL)
		munmap(seg->base, seg->size);
	if (seg->fd >= 0)
		close(seg->fd);
	free(seg->inbox);
	free(seg->inbound);
	free(seg->held);
	free(seg->state_view);
	seg->state_view = NULL;
	seg->held = NULL;
	seg->held_cap = seg->held_n = 0;
	seg->base = NULL;
	seg->metrics = NULL;
	seg->fd = -1;
	seg->inbox = NULL;
	seg->inbound = NULL;
	seg->hdr = NULL;
}

void mc_seg_destroy(struct mc_seg *seg)
{
	if (seg->hdr != NULL)
		ck_pr_store_32(&seg->hdr->sh_state, MC_SEG_STOPPING);
	shm_unlink(seg->name);
	mc_seg_detach(seg);
}

/* Become the process of `slot`: consumer cursors for every ring into it. */
static int mc_seg_take_slot(struct mc_seg *seg, unsigned slot)
{
	uint32_t nrings = seg->hdr->sh_nrings;

	seg->slot = (int)slot;
	seg->bit = 1ULL << slot;
	seg->generation = ck_pr_load_32(&seg->slots[slot].sl_generation);
	seg->alloc_pos = UINT64_MAX;
	seg->ninbound = 0;
	free(seg->inbox);
	free(seg->inbound);
	free(seg->held);
	seg->held_cap = 64;
	seg->held_n = 0;
	seg->held = calloc(seg->held_cap, sizeof(*seg->held));
	seg->inbox = calloc(nrings, sizeof(*seg->inbox));
	seg->inbound = calloc(seg->hdr->sh_nslots, sizeof(*seg->inbound));
	if (seg->inbox == NULL || seg->inbound == NULL || seg->held == NULL)
		return -ENOMEM;
	for (unsigned src = 0; src < seg->hdr->sh_nslots; src++) {
		int idx = mc_ring_index(seg, src, slot);

		if (idx >= 0)
			seg->inbound[seg->ninbound++] = (uint32_t)idx;
	}
	mc_ring_attach_inbox(seg);
	seg->self = &seg->slots[slot];
	seg->mq_off = seg->hdr->sh_mq_off;
	seg->pool_size = seg->hdr->sh_pool_size;
	seg->max_frame = seg->hdr->sh_max_frame;
	seg->reclaim_at = 0;
	seg->alloc_frame = NULL;
	seg->head_at = seg->self->sl_pool_size ? seg->self->sl_pool_head % seg->self->sl_pool_size : 0;
	for (unsigned dst = 0; dst < MC_MAX_SLOTS; dst++) {
		int idx = mc_ring_index(seg, slot, dst);

		seg->out[dst].ring = idx >= 0 ? &seg->rings[idx] : NULL;
		seg->out[dst].buf = idx >= 0 ?
		    (struct mc_desc *)(seg->base + seg->rings[idx].r_buf_off) : NULL;
	}
	return 0;
}

void mc_seg_heartbeat(struct mc_seg *seg)
{
	mc_seg_heartbeat_at(seg, mc_now_ns());
}

void mc_seg_heartbeat_at(struct mc_seg *seg, uint64_t now)
{
	if (seg->slot >= 0)
		ck_pr_store_64(&seg->slots[seg->slot].sl_heartbeat_ns, now);
	/* every loop heartbeats: memory gauges ride along, once a second */
	mc_metrics_tick_at(seg, now);
}

void mc_seg_ready(struct mc_seg *seg)
{
	mc_seg_heartbeat(seg);
	ck_pr_fence_store();
	ck_pr_store_32(&seg->slots[seg->slot].sl_ready_gen, seg->generation);
}

/* Finish what the slot's previous process published in part; the rings
 * drain, so waiting is bounded by the consumers' progress. */
static void mc_seg_recover_pool(struct mc_seg *seg, unsigned slot)
{
	while (mc_frame_recover(seg, slot) == -EAGAIN) {
		mc_seg_heartbeat(seg);
		usleep(1000);
	}
}

int mc_seg_claim_worker(struct mc_seg *seg, unsigned slot)
{
	int rc;

	if (slot < MC_SLOT_FIRST_WORKER || slot >= MC_SLOT_FIRST_CLIENT)
		return -EINVAL;
	rc = mc_seg_take_slot(seg, slot);
	if (rc)
		return rc;
	mc_seg_heartbeat(seg);
	mc_seg_recover_pool(seg, slot);
	return 0;
}

int mc_seg_claim_client(struct mc_seg *seg, const char *label, char *err, size_t errlen)
{
	pid_t me = getpid();

	if (seg->readonly) {
		snprintf(err, errlen, "segment of instance '%s' is attached read-only; "
		    "attach read-write to take a client slot", seg->hdr->sh_instance);
		return -EPERM;
	}
	if (ck_pr_load_32(&seg->hdr->sh_state) != MC_SEG_READY || !mc_seg_supervisor_alive(seg)) {
		snprintf(err, errlen, "instance '%s' is not running (its supervisor is gone "
		    "or stopping)", seg->hdr->sh_instance);
		return -MC_E_NOTREADY;
	}
	for (unsigned s = MC_SLOT_FIRST_CLIENT; s < seg->hdr->sh_nslots; s++) {
		struct mc_slot *sl = &seg->slots[s];
		int rc;

		if (!ck_pr_cas_int(&sl->sl_pid, 0, me))
			continue;
		ck_pr_store_64(&sl->sl_proc_start, mc_proc_start_time(me));
		snprintf(sl->sl_label, sizeof(sl->sl_label), "%s", label ? label : "client");
		ck_pr_store_32(&sl->sl_generation, sl->sl_generation + 1);
		sl->sl_started_ns = mc_now_ns();
		rc = mc_seg_take_slot(seg, s);
		if (rc) {
			ck_pr_store_64(&sl->sl_proc_start, 0);
			ck_pr_store_int(&sl->sl_pid, 0);
			snprintf(err, errlen, "out of memory");
			return rc;
		}
		/* a fresh client starts a fresh metrics block (mc_metrics.h) */
		mc_metrics_open(seg, s, MC_METRICS_RESET);
		/* a fresh client must not see its predecessor's messages */
		mc_frame_drain(seg, s);
		mc_ring_attach_inbox(seg);
		mc_seg_recover_pool(seg, s);
		mc_seg_heartbeat(seg);
		ck_pr_fence_store();
		ck_pr_store_32(&sl->sl_state, MC_SLOT_ATTACHED);
		return 0;
	}
	snprintf(err, errlen, "all %u client slots of instance '%s' are taken "
	    "(raise [memory] max_clients)", seg->hdr->sh_nslots - MC_SLOT_FIRST_CLIENT,
	    seg->hdr->sh_instance);
	return -MC_E_NOSLOT;
}

void mc_seg_release_client(struct mc_seg *seg)
{
	struct mc_slot *sl;

	if (seg->slot < MC_SLOT_FIRST_CLIENT)
		return;
	sl = &seg->slots[seg->slot];
	/* stop senders first; stragglers are drained by the supervisor's sweep */
	ck_pr_store_32(&sl->sl_state, MC_SLOT_FREE);
	mc_metrics_retire(seg, (unsigned)seg->slot);
	mc_frame_drain(seg, (unsigned)seg->slot);
	ck_pr_store_64(&sl->sl_proc_start, 0);
	ck_pr_fence_store();
	ck_pr_store_int(&sl->sl_pid, 0);
	seg->slot = -1;
	seg->bit = 0;
}

static bool mc_seg_has_inbound(const struct mc_seg *seg, unsigned slot)
{
	for (unsigned src = 1; src < seg->hdr->sh_nslots; src++) {
		int idx = mc_ring_index(seg, src, slot);

		if (idx >= 0 && (mc_ring_depth(seg, (uint32_t)idx) != 0 ||
		    seg->rings[idx].r_jpos != seg->rings[idx].r_ck.c_head))
			return true;
	}
	return false;
}

int mc_seg_reap_clients(struct mc_seg *seg)
{
	pid_t me = getpid();
	int freed = 0;

	for (unsigned s = MC_SLOT_FIRST_CLIENT; s < seg->hdr->sh_nslots; s++) {
		struct mc_slot *sl = &seg->slots[s];
		pid_t pid = ck_pr_load_int(&sl->sl_pid);

		if (pid == 0) {
			/* a free slot: drain what a sender put there after it was freed */
			if (mc_seg_has_inbound(seg, s) && ck_pr_cas_int(&sl->sl_pid, 0, me)) {
				mc_frame_drain(seg, s);
				ck_pr_store_int(&sl->sl_pid, 0);
			}
			continue;
		}
		if (pid != me) {
			if (mc_pid_alive(pid, ck_pr_load_64(&sl->sl_proc_start)) ||
			    !ck_pr_cas_int(&sl->sl_pid, pid, me))
				continue;
			mc_log_warn("client_dead", "{s:s, s:i, s:i, s:s}", "client", sl->sl_name,
			    "slot", (int)s, "client_pid", (int)pid, "message",
			    "client process died attached; reclaiming its slot and frames");
			ck_pr_store_32(&sl->sl_state, MC_SLOT_REAPING);
		}
		mc_frame_drain(seg, s);
		if (mc_frame_recover(seg, s) == -EAGAIN)
			continue;       /* a peer's ring is full; try again next tick */
		ck_pr_store_64(&sl->sl_proc_start, 0);
		/* the dead client's metrics go with it (mc_metrics.h, LIFETIME) */
		mc_metrics_retire(seg, s);
		ck_pr_store_32(&sl->sl_state, MC_SLOT_FREE);
		ck_pr_fence_store();
		ck_pr_store_int(&sl->sl_pid, 0);
		mc_log_info("client_reaped", "{s:i}", "slot", (int)s);
		freed++;
	}
	return freed;
}
