/*
 * _mcpcore.c - the CPython extension behind the `mcpcore` package.
 *
 * A thin, checked layer over the segment library (mcshm): attach to an
 * instance's segment, read its header, region, slot and ring tables, claim
 * a client slot, send frames and receive them.  All ring and frame logic
 * stays in the C library; this file validates arguments, turns error codes
 * into Python exceptions and manages lifetimes.  The public API (protobuf
 * messages, ring names, ping) is mcpcore/__init__.py.
 *
 * Lifetimes.  A Segment owns one mapping (struct mc_seg) at whatever
 * address mmap gave this process.  Segment.region(i) returns a Region that
 * exports base+offset as a buffer, zero-copy: a memoryview or numpy array
 * over it points straight into shared memory.  Every live export holds the
 * Region, which holds the Segment, and is counted: close() refuses with
 * BufferError while any is alive, because munmap under a live memoryview
 * would turn its next access into a segfault.
 *
 * Threads.  mc_seg calls are not thread-safe (mc_frame.h: one thread at a
 * time per struct mc_seg), so each Segment has a lock that every method
 * holds while it touches the mapping.  Data is snapshotted under the lock
 * and Python objects are built after it is released: building objects can
 * run a garbage collection, and a finaliser could call back into us.  The
 * GIL is dropped whenever we wait (for the lock, for frames, for slot
 * recovery).  recv() waits in slices of at most 50 ms, letting go of the
 * lock between slices so other threads can send, and runs pending signal
 * handlers between them so Ctrl-C interrupts a wait.
 *
 * Processes.  A claimed slot belongs to the process that claimed it.  A
 * forked child inherits the mapping (region views keep working) but never
 * sends, receives or releases on the parent's slot; it may claim its own.
 * A process that dies holding a slot is reaped by the supervisor.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_log.h"
#include "mc_proto.h"
#include "mc_ring.h"
#include "mc_seg.h"
#include "mc_util.h"
#include "mc_py.h"

#define MC_PY_SPIN_NS     20000ULL        /* spin before sleeping: a futex wake costs ~35 us */
#define MC_PY_SLICE_NS    50000000ULL     /* longest wait between signal checks */
#define MC_PY_NAP_MIN_NS  20000ULL        /* see mc_py_wait */
#define MC_PY_NAP_MAX_NS  1000000ULL
PyObject *mc_py_Error, *mc_py_NoSegmentError, *mc_py_AbiError, *mc_py_NotRunningError,
    *mc_py_NoSlotError, *mc_py_FullError, *mc_py_PeerGoneError;

#define MC_PY_LABEL_MAX   15              /* sl_label is 16 bytes with the NUL */
#define MC_PY_NAME_MAX    16              /* sl_name */


typedef struct {
	PyObject_HEAD
	McSegment *owner;               /* strong reference */
	Py_ssize_t exports;
	uint64_t offset;
	uint64_t size;
	int index;
	char name[sizeof(((struct mc_region *)0)->rg_name) + 1];
} McRegion;

static PyTypeObject McRegion_Type;

static inline uint64_t mc_py_min(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* ---------------------------------------------------------------------- */
/* errors                                                                  */

/*
 * Raise the exception for a negative error of mc_seg_* / mc_frame_*, with
 * the library's own message when it wrote one.  errno values go in as
 * OSError(errno, text) so that e.errno works; our MC_E_* codes are not
 * errno values and go in as the text alone.
 */
PyObject *mc_py_raise(int rc, const char *msg)
{
	PyObject *type = mc_py_Error, *args;

	if (msg == NULL || *msg == '\0')
		msg = mc_strerror(rc);
	switch (-rc) {
	case MC_E_NOSEG:    type = mc_py_NoSegmentError; break;
	case MC_E_ABI:      type = mc_py_AbiError; break;
	case MC_E_NOTREADY: type = mc_py_NotRunningError; break;
	case MC_E_NOSLOT:   type = mc_py_NoSlotError; break;
	case EACCES:
	case EPERM:         type = PyExc_PermissionError; break;
	default:            break;
	}
	if (-rc > 0 && -rc < MC_E_NOSEG)
		args = Py_BuildValue("(is)", -rc, msg);
	else
		args = Py_BuildValue("(s)", msg);
	if (args != NULL) {
		PyErr_SetObject(type, args);
		Py_DECREF(args);
	}
	return NULL;
}

/* A str from a fixed-size field of the segment: bounded, and never failing
 * on bytes that are not UTF-8 (another process wrote them). */
static PyObject *mc_py_str(const char *s, size_t max)
{
	return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strnlen(s, max), "replace");
}

/* ---------------------------------------------------------------------- */
/* the per-Segment lock                                                    */

static void mc_py_lock(McSegment *self)
{
	if (PyThread_acquire_lock(self->lock, NOWAIT_LOCK))
		return;
	/* the holder may be waiting for frames with the GIL dropped, or may
	 * need the GIL to finish: wait without it */
	Py_BEGIN_ALLOW_THREADS
	PyThread_acquire_lock(self->lock, WAIT_LOCK);
	Py_END_ALLOW_THREADS
}

void mc_py_unlock(McSegment *self)
{
	PyThread_release_lock(self->lock);
}

/* Lock and check the segment is still mapped: 0, or -1 with ValueError. */
int mc_py_enter(McSegment *self)
{
	mc_py_lock(self);
	if (self->attached)
		return 0;
	mc_py_unlock(self);
	PyErr_Format(PyExc_ValueError, "the Segment of instance '%s' is closed", self->instance);
	return -1;
}

/* Do we (this process) hold the claimed slot? */
static bool mc_py_has_slot(const McSegment *self)
{
	return self->seg.slot >= 0 && self->owner_pid == getpid();
}

/* mc_py_enter, and we must hold a client slot: 0, or -1 with mcpcore.Error. */
int mc_py_enter_slot(McSegment *self)
{
	if (mc_py_enter(self))
		return -1;
	if (mc_py_has_slot(self))
		return 0;
	if (self->seg.readonly)
		PyErr_Format(mc_py_Error, "the segment of instance '%s' is attached read-only "
		    "(readonly=True): it cannot claim a slot, send or receive", self->instance);
	else if (self->seg.slot >= 0)
		PyErr_Format(mc_py_Error, "slot %d was claimed by process %d, not this one "
		    "(a forked child): claim a slot first", self->seg.slot, (int)self->owner_pid);
	else
		PyErr_Format(mc_py_Error, "claim a slot first (Segment.claim): sending and "
		    "receiving need a client slot of instance '%s'", self->instance);
	mc_py_unlock(self);
	return -1;
}

/* ---------------------------------------------------------------------- */
/* argument checks                                                         */

static bool mc_py_instance_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= MC_INSTANCE_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

/* Labels show up in `mcpcore status`: short and printable. */
static bool mc_py_label_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > MC_PY_LABEL_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}

/* timeout (None = forever, else seconds >= 0) into an mc_now_ns() deadline. */
static int mc_py_deadline(PyObject *timeout, uint64_t *deadline)
{
	double t;

	if (timeout == Py_None) {
		*deadline = UINT64_MAX;
		return 0;
	}
	if (PyBool_Check(timeout) || !PyNumber_Check(timeout)) {
		PyErr_Format(PyExc_TypeError, "timeout must be None or a number of seconds, not %s",
		    Py_TYPE(timeout)->tp_name);
		return -1;
	}
	t = PyFloat_AsDouble(timeout);
	if (t == -1.0 && PyErr_Occurred())
		return -1;
	if (isnan(t) || t < 0) {
		PyErr_Format(PyExc_ValueError, "timeout must be None or >= 0 seconds, got %R", timeout);
		return -1;
	}
	if (t >= 1e9) {         /* ~31 years: forever, and no overflow below */
		*deadline = UINT64_MAX;
		return 0;
	}
	*deadline = mc_now_ns() + (uint64_t)(t * 1e9);
	return 0;
}

/* Name of a slot for messages; "slot N" when out of range. */
static void mc_py_slot_name(const McSegment *self, unsigned slot, char *buf, size_t len)
{
	if (slot < self->seg.hdr->sh_nslots)
		snprintf(buf, len, "%.*s", MC_PY_NAME_MAX, self->seg.slots[slot].sl_name);
	else
		snprintf(buf, len, "slot %u", slot);
}

/* ---------------------------------------------------------------------- */
/* Segment: attach, close                                                  */

static PyObject *Segment_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "instance", "readonly", NULL };
	char err[MC_PY_ERR_MAX] = "";
	const char *instance;
	McSegment *self;
	int readonly = 0, rc;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "s|p:Segment", kwlist, &instance, &readonly))
		return NULL;
	if (!mc_py_instance_valid(instance))
		return PyErr_Format(PyExc_ValueError, "instance '%.80s': use 1-%d characters of "
		    "[A-Za-z0-9_-]", instance, MC_INSTANCE_MAX - 1);
	self = (McSegment *)type->tp_alloc(type, 0);
	if (self == NULL)
		return NULL;
	self->seg.fd = -1;
	self->seg.slot = -1;
	snprintf(self->instance, sizeof(self->instance), "%s", instance);
	self->lock = PyThread_allocate_lock();
	if (self->lock == NULL) {
		PyErr_NoMemory();
		goto fail;
	}
	rc = mc_seg_attach(&self->seg, instance, readonly != 0, err, sizeof(err));
	if (rc) {
		mc_py_raise(rc, err);
		goto fail;
	}
	self->attached = true;
	return (PyObject *)self;
fail:
	Py_DECREF(self);
	return NULL;
}

/* Give back our client slot (only the process that claimed it may) and unmap. */
static void mc_py_detach(McSegment *self)
{
	if (!self->attached)
		return;
	if (mc_py_has_slot(self))
		mc_seg_release_client(&self->seg);
	mc_seg_detach(&self->seg);
	self->attached = false;
}

static void Segment_dealloc(McSegment *self)
{
	/* No lock: nothing else can reach an object being deallocated, and no
	 * export is alive (each holds a reference to us). */
	mc_py_detach(self);
	if (self->lock != NULL)
		PyThread_free_lock(self->lock);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Segment_close(McSegment *self, PyObject *Py_UNUSED(ignored))
{
	Py_ssize_t live;

	mc_py_lock(self);
	live = self->attached ? self->exports : 0;
	if (live == 0)
		mc_py_detach(self);
	mc_py_unlock(self);
	if (live > 0)
		return PyErr_Format(PyExc_BufferError, "cannot close the segment of instance '%s': "
		    "%zd region buffer(s) (memoryviews, numpy arrays) still point into it; "
		    "release them first (del them, or memoryview.release())", self->instance, live);
	Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------- */
/* Segment: slot                                                           */

static PyObject *Segment_claim(McSegment *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "label", NULL };
	char err[MC_PY_ERR_MAX] = "";
	const char *label = "python";
	int rc, slot;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "|s:claim", kwlist, &label))
		return NULL;
	if (!mc_py_label_valid(label))
		return PyErr_Format(PyExc_ValueError, "label '%.40s': use 1-%d printable ASCII "
		    "characters without spaces", label, MC_PY_LABEL_MAX);
	if (mc_py_enter(self))
		return NULL;
	if (self->seg.readonly) {
		mc_py_unlock(self);
		return PyErr_Format(mc_py_Error, "the segment of instance '%s' is attached read-only "
		    "(readonly=True): it cannot claim a slot, send or receive", self->instance);
	}
	if (mc_py_has_slot(self)) {
		slot = self->seg.slot;          /* already ours: claiming is idempotent */
		mc_py_unlock(self);
		return PyLong_FromLong(slot);
	}
	/* A slot inherited over fork is the parent's: forget it, never release it. */
	self->seg.slot = -1;
	self->seg.bit = 0;
	/* claiming may wait for peers' rings to drain (recovery): without the GIL */
	Py_BEGIN_ALLOW_THREADS
	rc = mc_seg_claim_client(&self->seg, label, err, sizeof(err));
	Py_END_ALLOW_THREADS
	if (rc == 0)
		self->owner_pid = getpid();
	slot = self->seg.slot;
	mc_py_unlock(self);
	if (rc)
		return mc_py_raise(rc, err);
	return PyLong_FromLong(slot);
}

static PyObject *Segment_release(McSegment *self, PyObject *Py_UNUSED(ignored))
{
	mc_py_lock(self);
	if (self->attached && mc_py_has_slot(self))
		mc_seg_release_client(&self->seg);
	self->seg.slot = -1;
	self->seg.bit = 0;
	mc_py_unlock(self);
	Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------- */
/* Segment: tables (snapshot under the lock, build objects after)          */

struct mc_py_hdr {
	char name[MC_SEG_NAME_MAX];
	uint64_t size, created_wall_ns, heartbeat_ns, max_frame, pool_size, now;
	uint32_t abi, state, nregions, nslots, nrings, ring_entries, journal_entries;
	int32_t supervisor_pid;
	bool alive, readonly;
	int slot;
};

static PyObject *Segment_header(McSegment *self, PyObject *Py_UNUSED(ignored))
{
	static const char *const states[] = { "init", "ready", "stopping" };
	const struct mc_seg_hdr *h;
	struct mc_py_hdr s;
	PyObject *age;

	if (mc_py_enter(self))
		return NULL;
	h = self->seg.hdr;
	snprintf(s.name, sizeof(s.name), "%s", self->seg.name);
	s.size = h->sh_size;
	s.created_wall_ns = h->sh_created_wall_ns;
	s.heartbeat_ns = ck_pr_load_64(&h->sh_heartbeat_ns);
	s.max_frame = h->sh_max_frame;
	s.pool_size = h->sh_pool_size;
	s.abi = h->sh_abi;
	s.state = ck_pr_load_32(&h->sh_state);
	s.nregions = h->sh_nregions;
	s.nslots = h->sh_nslots;
	s.nrings = h->sh_nrings;
	s.ring_entries = h->sh_ring_entries;
	s.journal_entries = h->sh_journal_entries;
	s.supervisor_pid = ck_pr_load_int(&h->sh_supervisor_pid);
	s.alive = mc_seg_supervisor_alive(&self->seg);
	s.readonly = self->seg.readonly;
	s.slot = mc_py_has_slot(self) ? self->seg.slot : -1;
	s.now = mc_now_ns();
	mc_py_unlock(self);

	age = s.heartbeat_ns == 0 ? Py_NewRef(Py_None) : PyLong_FromUnsignedLongLong(
	    (s.now > s.heartbeat_ns ? s.now - s.heartbeat_ns : 0) / 1000000ULL);
	return Py_BuildValue("{s:s, s:s, s:K, s:I, s:s, s:K, s:i, s:O, s:N, s:I, s:I, s:I, s:I,"
	    " s:I, s:I, s:K, s:K, s:O, s:N}",
	    "instance", self->instance, "segment", s.name, "size", (unsigned long long)s.size,
	    "abi", s.abi, "state", s.state < 3 ? states[s.state] : "unknown",
	    "created_wall_ns", (unsigned long long)s.created_wall_ns,
	    "supervisor_pid", (int)s.supervisor_pid, "supervisor_alive", s.alive ? Py_True : Py_False,
	    "supervisor_heartbeat_age_ms", age, "nregions", s.nregions, "nslots", s.nslots,
	    "nrings", s.nrings, "ring_entries", s.ring_entries,
	    "journal_entries", s.journal_entries,
	    "max_clients", s.nslots > MC_SLOT_FIRST_CLIENT ? s.nslots - MC_SLOT_FIRST_CLIENT : 0,
	    "max_frame", (unsigned long long)s.max_frame,
	    "pool_size", (unsigned long long)s.pool_size,
	    "readonly", s.readonly ? Py_True : Py_False,
	    "slot", s.slot >= 0 ? PyLong_FromLong(s.slot) : Py_NewRef(Py_None));
}

static PyObject *Segment_regions(McSegment *self, PyObject *Py_UNUSED(ignored))
{
	struct mc_region rg[MC_NREGIONS];
	PyObject *list;
	uint32_t n;

	if (mc_py_enter(self))
		return NULL;
	n = self->seg.hdr->sh_nregions;
	if (n > MC_NREGIONS)
		n = MC_NREGIONS;        /* never trust a count read from shared memory */
	memcpy(rg, self->seg.hdr->sh_regions, n * sizeof(rg[0]));
	mc_py_unlock(self);

	list = PyList_New(n);
	if (list == NULL)
		return NULL;
	for (uint32_t i = 0; i < n; i++) {
		PyObject *t = Py_BuildValue("(NKKN)", mc_py_str(rg[i].rg_name, sizeof(rg[i].rg_name)),
		    (unsigned long long)rg[i].rg_offset, (unsigned long long)rg[i].rg_size,
		    mc_py_str(rg[i].rg_writer, sizeof(rg[i].rg_writer)));

		if (t == NULL) {
			Py_DECREF(list);
			return NULL;
		}
		PyList_SET_ITEM(list, i, t);
	}
	return list;
}

struct mc_py_slot {
	char name[MC_PY_NAME_MAX + 1];
	char label[MC_PY_NAME_MAX + 1];
	uint32_t kind, state, generation, restarts, ready_gen;
	int32_t pid, last_status;
	uint64_t heartbeat_ns;
};

/* Copy the slot table (at most MC_MAX_SLOTS entries); returns the count. */
static unsigned mc_py_snap_slots(const McSegment *self, struct mc_py_slot *out)
{
	unsigned n = self->seg.hdr->sh_nslots;

	if (n > MC_MAX_SLOTS)
		n = MC_MAX_SLOTS;
	for (unsigned s = 0; s < n; s++) {
		const struct mc_slot *sl = &self->seg.slots[s];

		snprintf(out[s].name, sizeof(out[s].name), "%.*s", MC_PY_NAME_MAX, sl->sl_name);
		snprintf(out[s].label, sizeof(out[s].label), "%.*s", MC_PY_NAME_MAX, sl->sl_label);
		out[s].kind = sl->sl_kind;
		out[s].state = ck_pr_load_32(&sl->sl_state);
		out[s].pid = ck_pr_load_int(&sl->sl_pid);
		out[s].generation = ck_pr_load_32(&sl->sl_generation);
		out[s].restarts = sl->sl_restarts;
		out[s].last_status = sl->sl_last_status;
		out[s].ready_gen = ck_pr_load_32(&sl->sl_ready_gen);
		out[s].heartbeat_ns = ck_pr_load_64(&sl->sl_heartbeat_ns);
	}
	return n;
}

static const char *mc_py_kind_name(uint32_t kind)
{
	static const char *const names[] = { "none", "supervisor", "worker", "client" };

	return kind < MC_ARRAY_LEN(names) ? names[kind] : "unknown";
}

static PyObject *Segment_slots(McSegment *self, PyObject *Py_UNUSED(ignored))
{
	struct mc_py_slot snap[MC_MAX_SLOTS];
	PyObject *list;
	uint64_t now;
	unsigned n;

	if (mc_py_enter(self))
		return NULL;
	n = mc_py_snap_slots(self, snap);
	now = mc_now_ns();
	mc_py_unlock(self);

	list = PyList_New(n);
	if (list == NULL)
		return NULL;
	for (unsigned s = 0; s < n; s++) {
		const struct mc_py_slot *sl = &snap[s];
		PyObject *age = sl->heartbeat_ns == 0 || sl->pid == 0 ? Py_NewRef(Py_None) :
		    PyLong_FromUnsignedLongLong((now > sl->heartbeat_ns ? now - sl->heartbeat_ns : 0) /
		    1000000ULL);
		PyObject *d = Py_BuildValue("{s:I, s:N, s:N, s:s, s:s, s:i, s:I, s:I, s:N, s:i, s:O}",
		    "slot", s, "name", mc_py_str(sl->name, sizeof(sl->name)),
		    "label", mc_py_str(sl->label, sizeof(sl->label)),
		    "kind", mc_py_kind_name(sl->kind), "state", mc_slot_state_name(sl->state),
		    "pid", (int)sl->pid, "generation", sl->generation, "restarts", sl->restarts,
		    "heartbeat_age_ms", age, "last_exit_status", (int)sl->last_status,
		    "ready", sl->generation != 0 && sl->ready_gen == sl->generation ? Py_True : Py_False);

		if (d == NULL) {
			Py_DECREF(list);
			return NULL;
		}
		PyList_SET_ITEM(list, s, d);
	}
	return list;
}

struct mc_py_ring {
	uint32_t src, dst, depth, capacity;
	uint64_t full;
};

static PyObject *Segment_rings(McSegment *self, PyObject *Py_UNUSED(ignored))
{
	struct mc_py_slot slots[MC_MAX_SLOTS];
	struct mc_py_ring *snap;
	PyObject *list = NULL;
	uint32_t n;
	unsigned nslots;

	if (mc_py_enter(self))
		return NULL;
	n = self->seg.hdr->sh_nrings;
	if (n > MC_MAX_SLOTS * MC_MAX_SLOTS)
		n = MC_MAX_SLOTS * MC_MAX_SLOTS;
	snap = PyMem_Malloc((n ? n : 1) * sizeof(*snap));  /* raw allocator: no GC */
	if (snap == NULL) {
		mc_py_unlock(self);
		return PyErr_NoMemory();
	}
	nslots = mc_py_snap_slots(self, slots);
	for (uint32_t i = 0; i < n; i++) {
		const struct mc_ring *r = &self->seg.rings[i];

		snap[i].src = r->r_src;
		snap[i].dst = r->r_dst;
		snap[i].depth = mc_ring_depth(&self->seg, i);
		snap[i].capacity = mc_ring_capacity(&self->seg, i);
		snap[i].full = ck_pr_load_64(&r->r_full);
	}
	mc_py_unlock(self);

	list = PyList_New(n);
	if (list == NULL)
		goto out;
	for (uint32_t i = 0; i < n; i++) {
		const struct mc_py_ring *r = &snap[i];
		char name[2 * MC_PY_NAME_MAX + 8];
		PyObject *d;

		snprintf(name, sizeof(name), "%s->%s", r->src < nslots ? slots[r->src].name : "?",
		    r->dst < nslots ? slots[r->dst].name : "?");
		d = Py_BuildValue("{s:I, s:N, s:I, s:I, s:I, s:I, s:K}", "index", i,
		    "name", mc_py_str(name, sizeof(name)), "src", r->src, "dst", r->dst,
		    "depth", r->depth, "capacity", r->capacity,
		    "full_events", (unsigned long long)r->full);
		if (d == NULL) {
			Py_CLEAR(list);
			goto out;
		}
		PyList_SET_ITEM(list, i, d);
	}
out:
	PyMem_Free(snap);
	return list;
}

static PyObject *Segment_ring_depth(McSegment *self, PyObject *arg)
{
	long idx = PyLong_AsLong(arg);
	uint32_t depth;

	if (idx == -1 && PyErr_Occurred())
		return NULL;
	if (mc_py_enter(self))
		return NULL;
	if (idx < 0 || (unsigned long)idx >= self->seg.hdr->sh_nrings) {
		uint32_t n = self->seg.hdr->sh_nrings;

		mc_py_unlock(self);
		return PyErr_Format(PyExc_ValueError, "ring index %ld out of range 0..%u", idx, n - 1);
	}
	depth = mc_ring_depth(&self->seg, (uint32_t)idx);
	mc_py_unlock(self);
	return PyLong_FromUnsignedLong(depth);
}

/* ---------------------------------------------------------------------- */
/* Segment: frames                                                         */

/*
 * Explain a failed send to `dst`.  Under the lock; the ring (src, dst)
 * exists (Segment_send checks that first).  -EAGAIN comes from
 * mc_frame_alloc (pool) or mc_frame_send (ring): `in_alloc` says which.
 */
static PyObject *mc_py_send_error(McSegment *self, int rc, unsigned dst, Py_ssize_t len,
    bool in_alloc)
{
	const struct mc_slot *sl = &self->seg.slots[self->seg.slot];
	char me[32], peer[32];
	int ring;

	mc_py_slot_name(self, (unsigned)self->seg.slot, me, sizeof(me));
	mc_py_slot_name(self, dst, peer, sizeof(peer));
	switch (rc) {
	case -EAGAIN:
		ring = mc_ring_index(&self->seg, (unsigned)self->seg.slot, dst);
		if (in_alloc || ring < 0)
			return PyErr_Format(mc_py_FullError, "the frame pool of %s is exhausted "
			    "(%llu of %llu bytes held by frames not yet released downstream): "
			    "back-pressure, retry later", me,
			    (unsigned long long)(sl->sl_pool_head - sl->sl_pool_tail),
			    (unsigned long long)sl->sl_pool_size);
		return PyErr_Format(mc_py_FullError, "ring %s->%s is full (%u frames waiting): "
		    "back-pressure, retry later", me, peer, mc_ring_depth(&self->seg, (uint32_t)ring));
	case -EPIPE:
		return PyErr_Format(mc_py_PeerGoneError, "%s (slot %u) does not accept frames: %s",
		    peer, dst, self->seg.slots[dst].sl_kind == MC_KIND_CLIENT ?
		    "no process holds that client slot" :
		    "the worker has failed or stopped (see `mcpcore status`)");
	case -EINVAL:
		return PyErr_Format(PyExc_ValueError, "no ring leads from %s to %s (slot %u): "
		    "clients exchange frames with workers only", me, peer, dst);
	case -EMSGSIZE:
		return PyErr_Format(PyExc_ValueError, "a frame payload of %zd bytes exceeds "
		    "max_message_size (%llu bytes) of instance '%s'", len,
		    (unsigned long long)self->seg.hdr->sh_max_frame, self->instance);
	case -EPERM:
		return PyErr_Format(mc_py_Error, "claim a slot first (Segment.claim)");
	default:
		return mc_py_raise(rc, NULL);
	}
}

static PyObject *Segment_send(McSegment *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "dst", "kind", "data", NULL };
	Py_buffer data = { 0 };
	PyObject *ret = NULL;
	struct mc_frame *f;
	int dst, kind, rc;
	uint64_t seq;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "iiy*:send", kwlist, &dst, &kind, &data))
		return NULL;
	if (kind < 0 || kind > UINT16_MAX) {
		PyErr_Format(PyExc_ValueError, "kind %d out of range 0..65535", kind);
		goto out;
	}
	if (mc_py_enter_slot(self))
		goto out;
	if (dst < 0 || (unsigned)dst >= self->seg.hdr->sh_nslots || dst == self->seg.slot) {
		PyErr_Format(PyExc_ValueError, "dst slot %d: must be another slot in 0..%u", dst,
		    self->seg.hdr->sh_nslots - 1);
		goto unlock;
	}
	/* errors that need no allocation first, so that a full pool does not
	 * hide them behind FullError */
	if (mc_ring_index(&self->seg, (unsigned)self->seg.slot, (unsigned)dst) < 0) {
		mc_py_send_error(self, -EINVAL, (unsigned)dst, data.len, false);
		goto unlock;
	}
	if ((uint64_t)data.len > self->seg.hdr->sh_max_frame) {
		mc_py_send_error(self, -EMSGSIZE, (unsigned)dst, data.len, false);
		goto unlock;
	}
	mc_seg_heartbeat(&self->seg);
	f = mc_frame_alloc(&self->seg, (uint32_t)data.len, (uint16_t)kind, &rc);
	if (f == NULL) {
		mc_py_send_error(self, rc, (unsigned)dst, data.len, true);
		goto unlock;
	}
	memcpy(f->f_data, data.buf, (size_t)data.len);
	seq = f->f_seq;         /* read before the frame is shared */
	rc = mc_frame_send(&self->seg, f, 1ULL << dst);
	if (rc) {
		/* all or nothing: nothing was put, so give the block back */
		mc_frame_abort(&self->seg, f);
		mc_py_send_error(self, rc, (unsigned)dst, data.len, false);
		goto unlock;
	}
	ret = PyLong_FromUnsignedLongLong(seq);
unlock:
	mc_py_unlock(self);
out:
	PyBuffer_Release(&data);
	return ret;
}

/* Is `ring` an inbound ring of our slot?  Under the lock; raises if not. */
static int mc_py_check_inbound(McSegment *self, int ring)
{
	char src[32], me[32];

	if (ring < 0 || (unsigned)ring >= self->seg.hdr->sh_nrings) {
		PyErr_Format(PyExc_ValueError, "ring index %d out of range 0..%u (or -1 for any)",
		    ring, self->seg.hdr->sh_nrings - 1);
		return -1;
	}
	if (self->seg.rings[ring].r_dst == self->seg.slot)
		return 0;
	mc_py_slot_name(self, self->seg.rings[ring].r_src, src, sizeof(src));
	mc_py_slot_name(self, self->seg.rings[ring].r_dst, me, sizeof(me));
	PyErr_Format(PyExc_ValueError, "ring %d (%s->%s) does not lead to this process's slot %s",
	    ring, src, me, self->seg.slots[self->seg.slot].sl_name);
	return -1;
}

/* Copy a received frame's payload out, let go of the frame, unlock. */
static PyObject *mc_py_take(McSegment *self, struct mc_msg *m)
{
	unsigned src = m->src, kind = m->frame->f_kind;
	uint64_t seq = m->desc.d_seq;
	PyObject *data;

	/* bytes are not GC-tracked: allocating them cannot run Python code */
	data = PyBytes_FromStringAndSize((const char *)m->frame->f_data, m->frame->f_len);
	/* released even on MemoryError: a frame must never stay held */
	mc_frame_release(&self->seg, m);
	mc_py_unlock(self);
	if (data == NULL)
		return NULL;
	return Py_BuildValue("(IINK)", src, kind, data, (unsigned long long)seq);
}

/*
 * Wait (GIL dropped, lock held) up to slice_ns for frames.  mc_ring_wait
 * wakes for any inbound ring; when we want one ring while frames sit
 * unread in another, it returns at once and the caller would spin at
 * 100% CPU: nap instead, growing from 20 us to 1 ms.
 */
static void mc_py_wait(McSegment *self, int ring, uint64_t slice_ns, uint64_t *nap)
{
	bool woke = mc_ring_wait(&self->seg, MC_PY_SPIN_NS, slice_ns);

	if (ring < 0 || !woke || mc_ring_depth(&self->seg, (uint32_t)ring) != 0) {
		*nap = 0;
		return;
	}
	*nap = *nap == 0 ? MC_PY_NAP_MIN_NS : mc_py_min(*nap * 2, MC_PY_NAP_MAX_NS);
	if (*nap > slice_ns)
		*nap = slice_ns;
	nanosleep(&(struct timespec){ .tv_sec = 0, .tv_nsec = (long)*nap }, NULL);
}

static PyObject *Segment_recv(McSegment *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "ring", "timeout", NULL };
	PyObject *timeout = Py_None;
	uint64_t deadline, nap = 0;
	int ring = -1;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "|iO:recv", kwlist, &ring, &timeout))
		return NULL;
	if (mc_py_deadline(timeout, &deadline))
		return NULL;
	for (;;) {
		struct mc_msg m;
		uint64_t now, slice;
		int rc;

		if (mc_py_enter_slot(self))
			return NULL;
		if (ring != -1 && mc_py_check_inbound(self, ring)) {
			mc_py_unlock(self);
			return NULL;
		}
		mc_seg_heartbeat(&self->seg);
		rc = ring < 0 ? mc_recv(&self->seg, &m) : mc_recv_from(&self->seg, (uint32_t)ring, &m);
		if (rc == 0)
			return mc_py_take(self, &m);
		if (rc != -EAGAIN) {
			/* -ENOBUFS: cannot happen, we release every frame at once */
			mc_py_unlock(self);
			return mc_py_raise(rc, NULL);
		}
		now = mc_now_ns();
		if (now >= deadline) {
			mc_py_unlock(self);
			Py_RETURN_NONE;
		}
		slice = mc_py_min(deadline - now, MC_PY_SLICE_NS);
		Py_BEGIN_ALLOW_THREADS
		mc_py_wait(self, ring, slice, &nap);
		Py_END_ALLOW_THREADS
		mc_py_unlock(self);
		/* a wait is interrupted by signals but resumes: run the handlers
		 * ourselves so Ctrl-C raises KeyboardInterrupt here */
		if (PyErr_CheckSignals())
			return NULL;
	}
}

/* ---------------------------------------------------------------------- */
/* Segment: regions as buffers                                             */

static PyObject *Segment_region(McSegment *self, PyObject *arg)
{
	long idx = PyLong_AsLong(arg);
	struct mc_region rg;
	McRegion *r;
	uint32_t n;
	size_t size;

	if (idx == -1 && PyErr_Occurred())
		return NULL;
	if (mc_py_enter(self))
		return NULL;
	n = (uint32_t)mc_py_min(self->seg.hdr->sh_nregions, MC_NREGIONS);
	if (idx < 0 || (unsigned long)idx >= n) {
		mc_py_unlock(self);
		return PyErr_Format(PyExc_ValueError, "region index %ld out of range 0..%u", idx, n - 1);
	}
	rg = self->seg.hdr->sh_regions[idx];
	size = self->seg.size;
	mc_py_unlock(self);
	/* the table comes from shared memory: never export outside the mapping */
	if (rg.rg_offset > size || rg.rg_size > size - rg.rg_offset || rg.rg_size > PY_SSIZE_T_MAX)
		return PyErr_Format(mc_py_Error, "region %ld of instance '%s' lies outside the "
		    "segment (offset %llu, size %llu, segment %zu): corrupt header", idx,
		    self->instance, (unsigned long long)rg.rg_offset,
		    (unsigned long long)rg.rg_size, size);
	r = PyObject_New(McRegion, &McRegion_Type);
	if (r == NULL)
		return NULL;
	r->owner = (McSegment *)Py_NewRef(self);
	r->exports = 0;
	r->offset = rg.rg_offset;
	r->size = rg.rg_size;
	r->index = (int)idx;
	snprintf(r->name, sizeof(r->name), "%.*s", (int)sizeof(rg.rg_name), rg.rg_name);
	return (PyObject *)r;
}

static int Region_getbuffer(McRegion *self, Py_buffer *view, int flags)
{
	McSegment *s = self->owner;

	/* under the GIL, which close() also holds while it unmaps */
	if (!s->attached) {
		PyErr_Format(PyExc_BufferError, "region %s: the Segment of instance '%s' is closed",
		    self->name, s->instance);
		view->obj = NULL;
		return -1;
	}
	if (s->seg.readonly && (flags & PyBUF_WRITABLE) == PyBUF_WRITABLE) {
		PyErr_Format(PyExc_BufferError, "region %s of instance '%s' is mapped read-only "
		    "(attached with readonly=True)", self->name, s->instance);
		view->obj = NULL;
		return -1;
	}
	if (PyBuffer_FillInfo(view, (PyObject *)self, s->seg.base + self->offset,
	    (Py_ssize_t)self->size, s->seg.readonly ? 1 : 0, flags) < 0)
		return -1;
	self->exports++;
	s->exports++;
	return 0;
}

static void Region_releasebuffer(McRegion *self, Py_buffer *view)
{
	(void)view;
	self->exports--;
	self->owner->exports--;
}

static void Region_dealloc(McRegion *self)
{
	Py_DECREF(self->owner);
	PyObject_Free(self);
}

static PyObject *Region_repr(McRegion *self)
{
	return PyUnicode_FromFormat("<mcpcore region %s of '%s': offset %llu, %llu bytes%s>",
	    self->name, self->owner->instance, (unsigned long long)self->offset,
	    (unsigned long long)self->size, self->owner->seg.readonly ? ", read-only" : "");
}

static PyObject *Region_get(McRegion *self, void *closure)
{
	switch ((intptr_t)closure) {
	case 0: return PyUnicode_FromString(self->name);
	case 1: return PyLong_FromLong(self->index);
	case 2: return PyLong_FromUnsignedLongLong(self->offset);
	case 3: return PyLong_FromUnsignedLongLong(self->size);
	case 4: return PyBool_FromLong(self->owner->seg.readonly);
	case 5: return PyLong_FromSsize_t(self->exports);
	default: return Py_NewRef((PyObject *)self->owner);
	}
}

static PyGetSetDef Region_getset[] = {
	{ "name", (getter)Region_get, NULL, "region name, e.g. 'learning.features'", (void *)0 },
	{ "index", (getter)Region_get, NULL, "position in the region table", (void *)1 },
	{ "offset", (getter)Region_get, NULL, "byte offset from the segment base", (void *)2 },
	{ "size", (getter)Region_get, NULL, "bytes", (void *)3 },
	{ "readonly", (getter)Region_get, NULL, "exported read-only", (void *)4 },
	{ "exports", (getter)Region_get, NULL, "live buffers over this region", (void *)5 },
	{ "segment", (getter)Region_get, NULL, "the Segment it belongs to", (void *)6 },
	{ NULL },
};

static PyBufferProcs Region_as_buffer = {
	.bf_getbuffer = (getbufferproc)Region_getbuffer,
	.bf_releasebuffer = (releasebufferproc)Region_releasebuffer,
};

static PyTypeObject McRegion_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "mcpcore._mcpcore.Region",
	.tp_basicsize = sizeof(McRegion),
	.tp_dealloc = (destructor)Region_dealloc,
	.tp_repr = (reprfunc)Region_repr,
	.tp_as_buffer = &Region_as_buffer,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "One region of a segment, exporting the buffer protocol over its bytes\n"
	    "(zero-copy: memoryview(region) points into shared memory).  Obtained from\n"
	    "Segment.region(index); keeps the Segment alive while it exists.",
	.tp_getset = Region_getset,
};

/* ---------------------------------------------------------------------- */
/* Segment: properties                                                     */

enum { MC_PY_P_NSLOTS, MC_PY_P_NRINGS, MC_PY_P_RING_ENTRIES, MC_PY_P_MAX_FRAME,
	MC_PY_P_SIZE, MC_PY_P_ADDRESS };

/* Header values written once at creation: read under the GIL, no lock. */
static PyObject *Segment_get_hdr(McSegment *self, void *closure)
{
	const struct mc_seg_hdr *h = self->seg.hdr;

	if (!self->attached)
		return PyErr_Format(PyExc_ValueError, "the Segment of instance '%s' is closed",
		    self->instance);
	switch ((intptr_t)closure) {
	case MC_PY_P_NSLOTS:       return PyLong_FromUnsignedLong(h->sh_nslots);
	case MC_PY_P_NRINGS:       return PyLong_FromUnsignedLong(h->sh_nrings);
	case MC_PY_P_RING_ENTRIES: return PyLong_FromUnsignedLong(h->sh_ring_entries);
	case MC_PY_P_MAX_FRAME:    return PyLong_FromUnsignedLongLong(h->sh_max_frame);
	case MC_PY_P_SIZE:         return PyLong_FromSize_t(self->seg.size);
	default:                   return PyLong_FromVoidPtr(self->seg.base);
	}
}

static PyObject *Segment_get_instance(McSegment *self, void *Py_UNUSED(closure))
{
	return PyUnicode_FromString(self->instance);
}

static PyObject *Segment_get_readonly(McSegment *self, void *Py_UNUSED(closure))
{
	return PyBool_FromLong(self->seg.readonly);
}

static PyObject *Segment_get_closed(McSegment *self, void *Py_UNUSED(closure))
{
	return PyBool_FromLong(!self->attached);
}

static PyObject *Segment_get_slot(McSegment *self, void *Py_UNUSED(closure))
{
	if (!self->attached || !mc_py_has_slot(self))
		Py_RETURN_NONE;
	return PyLong_FromLong(self->seg.slot);
}

static PyObject *Segment_get_exports(McSegment *self, void *Py_UNUSED(closure))
{
	return PyLong_FromSsize_t(self->exports);
}

static PyGetSetDef Segment_getset[] = {
	{ "instance", (getter)Segment_get_instance, NULL, "instance name", NULL },
	{ "readonly", (getter)Segment_get_readonly, NULL, "mapped read-only", NULL },
	{ "closed", (getter)Segment_get_closed, NULL, "unmapped by close()", NULL },
	{ "slot", (getter)Segment_get_slot, NULL, "our client slot, or None", NULL },
	{ "exports", (getter)Segment_get_exports, NULL, "live region buffers", NULL },
	{ "size", (getter)Segment_get_hdr, NULL, "segment bytes", (void *)MC_PY_P_SIZE },
	{ "address", (getter)Segment_get_hdr, NULL, "where this process mapped it",
	  (void *)MC_PY_P_ADDRESS },
	{ "nslots", (getter)Segment_get_hdr, NULL, "slots (supervisor, workers, clients)",
	  (void *)MC_PY_P_NSLOTS },
	{ "nrings", (getter)Segment_get_hdr, NULL, "rings", (void *)MC_PY_P_NRINGS },
	{ "ring_entries", (getter)Segment_get_hdr, NULL, "entries per ring",
	  (void *)MC_PY_P_RING_ENTRIES },
	{ "max_frame", (getter)Segment_get_hdr, NULL, "largest frame payload (max_message_size)",
	  (void *)MC_PY_P_MAX_FRAME },
	{ NULL },
};

#define MC_PY_KW(f) ((PyCFunction)(void (*)(void))(f))

static PyMethodDef Segment_methods[] = {
	{ "header", (PyCFunction)Segment_header, METH_NOARGS,
	  "header() -> dict: identity, supervisor, table sizes of the segment" },
	{ "regions", (PyCFunction)Segment_regions, METH_NOARGS,
	  "regions() -> [(name, offset, size, writer)] in table order" },
	{ "region", (PyCFunction)Segment_region, METH_O,
	  "region(index) -> Region exporting the region's bytes (buffer protocol, zero-copy)" },
	{ "slots", (PyCFunction)Segment_slots, METH_NOARGS,
	  "slots() -> [dict]: slot, name, label, kind, state, pid, generation, restarts,\n"
	  "heartbeat_age_ms, last_exit_status, ready" },
	{ "rings", (PyCFunction)Segment_rings, METH_NOARGS,
	  "rings() -> [dict]: index, name 'src->dst', src, dst, depth, capacity, full_events" },
	{ "ring_depth", (PyCFunction)Segment_ring_depth, METH_O,
	  "ring_depth(index) -> frames waiting in the ring now" },
	{ "claim", MC_PY_KW(Segment_claim), METH_VARARGS | METH_KEYWORDS,
	  "claim(label='python') -> slot: take a client slot (idempotent)" },
	{ "release", (PyCFunction)Segment_release, METH_NOARGS,
	  "release(): give the client slot back (frames queued to it are dropped)" },
	{ "send", MC_PY_KW(Segment_send), METH_VARARGS | METH_KEYWORDS,
	  "send(dst, kind, data) -> seq: one frame of `kind` carrying the bytes-like `data`\n"
	  "to slot `dst`.  FullError on back-pressure, PeerGoneError if dst is gone." },
	{ "recv", MC_PY_KW(Segment_recv), METH_VARARGS | METH_KEYWORDS,
	  "recv(ring=-1, timeout=None) -> (src, kind, data, seq) or None on timeout.\n"
	  "ring=-1 takes from any inbound ring; timeout None waits forever." },
	{ "close", (PyCFunction)Segment_close, METH_NOARGS,
	  "close(): release the slot and unmap; BufferError while region buffers live" },
	{ NULL },
};

static PyObject *Segment_repr(McSegment *self)
{
	if (!self->attached)
		return PyUnicode_FromFormat("<mcpcore segment '%s' (closed)>", self->instance);
	return PyUnicode_FromFormat("<mcpcore segment '%s' at %p, %zu bytes%s>", self->instance,
	    (void *)self->seg.base, self->seg.size, self->seg.readonly ? ", read-only" : "");
}

PyTypeObject McSegment_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "mcpcore._mcpcore.Segment",
	.tp_basicsize = sizeof(McSegment),
	.tp_dealloc = (destructor)Segment_dealloc,
	.tp_repr = (reprfunc)Segment_repr,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Segment(instance, readonly=False): map /dev/shm/mcpcore.<instance>.\n"
	    "Raises NoSegmentError, AbiError, NotRunningError or PermissionError.",
	.tp_methods = Segment_methods,
	.tp_getset = Segment_getset,
	.tp_new = Segment_new,
};

/* ---------------------------------------------------------------------- */
/* module                                                                  */

static struct PyModuleDef mc_py_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "mcpcore._mcpcore",
	.m_doc = "Low-level binding of the mcpcore segment library; use the mcpcore package.",
	.m_size = -1,
};

/* Create mcpcore.<name> deriving from base and add it to the module. */
static int mc_py_add_exc(PyObject *mod, PyObject **slot, const char *name, PyObject *base,
    const char *doc)
{
	char full[64];

	snprintf(full, sizeof(full), "mcpcore.%s", name);
	*slot = PyErr_NewExceptionWithDoc(full, doc, base, NULL);
	if (*slot == NULL)
		return -1;
	return PyModule_AddObjectRef(mod, name, *slot);
}

static int mc_py_add_constants(PyObject *mod)
{
	PyObject *workers = PyTuple_New(MC_NWORKERS);

	if (workers == NULL)
		return -1;
	for (int i = 0; i < MC_NWORKERS; i++) {
		PyObject *name = PyUnicode_FromString(mc_layout_worker_name(
		    (unsigned)(MC_SLOT_FIRST_WORKER + i)));

		if (name == NULL) {
			Py_DECREF(workers);
			return -1;
		}
		PyTuple_SET_ITEM(workers, i, name);
	}
	if (PyModule_AddObject(mod, "WORKERS", workers) < 0) {
		Py_DECREF(workers);
		return -1;
	}
	if (PyModule_AddIntConstant(mod, "ABI", MC_SEG_ABI) < 0 ||
	    PyModule_AddIntConstant(mod, "FIRST_WORKER_SLOT", MC_SLOT_FIRST_WORKER) < 0 ||
	    PyModule_AddIntConstant(mod, "FIRST_CLIENT_SLOT", MC_SLOT_FIRST_CLIENT) < 0 ||
	    PyModule_AddIntConstant(mod, "KIND_RAW", MC_FK_RAW) < 0 ||
	    PyModule_AddIntConstant(mod, "KIND_CONTROL", MC_FK_CONTROL) < 0 ||
	    PyModule_AddIntConstant(mod, "KIND_MCP", MC_FK_MCP) < 0 ||
	    PyModule_AddIntConstant(mod, "KIND_LEARNING_DATA", MC_FK_LEARNING_DATA) < 0 ||
	    PyModule_AddIntConstant(mod, "KIND_LEARNING_MODEL", MC_FK_LEARNING_MODEL) < 0 ||
	    PyModule_AddIntConstant(mod, "KIND_TRAINING_DATA", MC_FK_TRAINING_DATA) < 0)
		return -1;
	return 0;
}

PyMODINIT_FUNC PyInit__mcpcore(void)
{
	PyObject *mod = NULL;

	if (PyType_Ready(&McSegment_Type) < 0 || PyType_Ready(&McRegion_Type) < 0)
		return NULL;
	mod = PyModule_Create(&mc_py_module);
	if (mod == NULL)
		return NULL;
	if (mc_py_add_exc(mod, &mc_py_Error, "Error", PyExc_OSError,
	    "Base of every mcpcore error.") < 0 ||
	    mc_py_add_exc(mod, &mc_py_NoSegmentError, "NoSegmentError", mc_py_Error,
	    "No segment exists for the instance: it is not running.") < 0 ||
	    mc_py_add_exc(mod, &mc_py_AbiError, "AbiError", mc_py_Error,
	    "The segment was made by an mcpcore of another ABI version.") < 0 ||
	    mc_py_add_exc(mod, &mc_py_NotRunningError, "NotRunningError", mc_py_Error,
	    "The segment exists but is not initialised, or its supervisor is gone.") < 0 ||
	    mc_py_add_exc(mod, &mc_py_NoSlotError, "NoSlotError", mc_py_Error,
	    "Every client slot of the instance is taken ([memory] max_clients).") < 0 ||
	    mc_py_add_exc(mod, &mc_py_FullError, "FullError", mc_py_Error,
	    "Back-pressure: the ring is full or the frame pool exhausted; retry later.") < 0 ||
	    mc_py_add_exc(mod, &mc_py_PeerGoneError, "PeerGoneError", mc_py_Error,
	    "The destination does not accept frames (failed/stopped worker, free client slot).") < 0)
		goto fail;
	if (PyModule_AddObjectRef(mod, "Segment", (PyObject *)&McSegment_Type) < 0 ||
	    PyModule_AddObjectRef(mod, "Region", (PyObject *)&McRegion_Type) < 0 ||
	    mc_py_add_constants(mod) < 0)
		goto fail;
	/* the other parts of the API register themselves (state.c, metrics.c) */
	if (mc_py_state_init(mod) < 0 || mc_py_metrics_init(mod) < 0 ||
	    mc_py_persist_init(mod) < 0)
		goto fail;
	/* the library's own log lines (rare: corrupt descriptors) name us */
	mc_log_init("python", NULL);
	return mod;
fail:
	Py_DECREF(mod);
	return NULL;
}
