/*
 * metrics.c - the _mcpcore part for metrics: register and update metrics
 * in this process's block, read any process's block (shm/mc_metrics.h).
 * The package wraps these as seg.metrics (mcpcore/metrics.py).
 *
 * Module functions (first argument: a _mcpcore.Segment):
 *   metric_register(seg, type, name, help, labels) -> handle
 *       type "counter" | "gauge" | "histogram"; labels None or a dict of
 *       str -> str.  Needs a claimed client slot (its block was reset at the
 *       claim).  Registering name + labels again returns the same metric.
 *   metric_inc(seg, handle, amount)      counter: amount >= 0 (seconds for
 *                                        *_seconds_total, else an integer)
 *   metric_set(seg, handle, value)       gauge
 *   metric_add(seg, handle, delta)       gauge
 *   metric_observe(seg, handle, value)   histogram: seconds for *_seconds,
 *                                        else a non-negative integer
 *   metrics_read(seg, slot) -> dict | None   any slot, read-only attach is fine:
 *       the block's metrics, plus the slot's channel figures derived from
 *       the ring and pool cursors (mc_metrics.h, CHANNEL FIGURES):
 *       frames_sent, frames_received (ring totals since the instance
 *       started, whoever held the slot), pool_bytes_written, and
 *       messages_handled: {kind: count} from the block's
 *       messages_handled_total counters (workers running the common loop;
 *       empty for clients)
 * A handle packs the block generation, the descriptor index, the unit and
 * the type (gen << 32 | index << 8 | unit << 4 | type).
 * After the slot is released and claimed again the block is new and old
 * handles fail with mcpcore.Error(errno.ESTALE); the package re-registers.
 *
 * Single writer: every write runs under the Segment lock (mc_py_enter_slot),
 * so threads of one process never write one block at the same time.
 */
#include "mc_py.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_hist.h"
#include "mc_layout.h"
#include "mc_metrics.h"
#include "mc_proto.h"
#include "mc_util.h"

static const char *const mc_py_metric_types[] = { NULL, "counter", "gauge", "histogram" };

static int mc_py_metric_type(const char *s)
{
	for (int t = MC_METRIC_COUNTER; t <= MC_METRIC_HISTOGRAM; t++)
		if (strcmp(s, mc_py_metric_types[t]) == 0)
			return t;
	return -1;
}

static McSegment *mc_py_seg_arg(PyObject *o)
{
	if (!PyObject_TypeCheck(o, &McSegment_Type)) {
		PyErr_Format(PyExc_TypeError, "expected a _mcpcore.Segment, not %s", Py_TYPE(o)->tp_name);
		return NULL;
	}
	return (McSegment *)o;
}

/* labels dict -> {"k", "v", ..., NULL} pointing into the dict's strings */
static int mc_py_labels(PyObject *labels, const char **out, size_t cap)
{
	PyObject *k, *v;
	Py_ssize_t pos = 0;
	size_t n = 0;

	out[0] = NULL;
	if (labels == Py_None)
		return 0;
	if (!PyDict_Check(labels)) {
		PyErr_Format(PyExc_TypeError, "labels must be a dict of str -> str, not %s",
		    Py_TYPE(labels)->tp_name);
		return -1;
	}
	while (PyDict_Next(labels, &pos, &k, &v)) {
		if (!PyUnicode_Check(k) || !PyUnicode_Check(v)) {
			PyErr_SetString(PyExc_TypeError, "labels must be a dict of str -> str");
			return -1;
		}
		if (n + 3 > cap) {
			PyErr_Format(PyExc_ValueError, "at most %u labels", MC_METRICS_LABELS);
			return -1;
		}
		out[n] = PyUnicode_AsUTF8(k);
		out[n + 1] = PyUnicode_AsUTF8(v);
		if (out[n] == NULL || out[n + 1] == NULL)
			return -1;
		n += 2;
		out[n] = NULL;
	}
	return 0;
}

static PyObject *mc_py_metric_register(PyObject *mod, PyObject *args)
{
	const char *type_s, *name, *help, *why = NULL;
	const char *labels[2 * MC_METRICS_LABELS + 4];
	PyObject *seg_o, *labels_o = Py_None;
	struct mc_metrics_block *b;
	McSegment *self;
	uint32_t gen = 0, idx = 0;
	void *value = NULL;
	int type, rc;

	(void)mod;
	if (!PyArg_ParseTuple(args, "Ossz|O:metric_register", &seg_o, &type_s, &name, &help,
	    &labels_o))
		return NULL;
	self = mc_py_seg_arg(seg_o);
	if (self == NULL)
		return NULL;
	type = mc_py_metric_type(type_s);
	if (type < 0)
		return PyErr_Format(PyExc_ValueError, "metric type must be 'counter', 'gauge' or "
		    "'histogram', not %R", PyTuple_GET_ITEM(args, 1));
	/* the dict's strings stay alive: args holds the dict */
	if (mc_py_labels(labels_o, labels, MC_ARRAY_LEN(labels)) < 0)
		return NULL;
	if (mc_py_enter_slot(self))
		return NULL;
	rc = mc_metrics_register(&self->seg, (enum mc_metric_type)type, name, help, labels,
	    &value, &why);
	b = self->seg.metrics;
	if (rc == 0 && b != NULL) {
		uint32_t off = (uint32_t)((uint8_t *)value - (uint8_t *)b);

		gen = b->mb_gen;
		for (idx = 0; idx < b->mb_count && b->mb_desc[idx].md_value_off != off; idx++)
			;
	}
	mc_py_unlock(self);
	if (rc == -EINVAL)
		return PyErr_Format(PyExc_ValueError, "metric %s: %s", name, why);
	if (rc == -EEXIST)
		return PyErr_Format(PyExc_ValueError, "metric %s: %s", name, why);
	if (rc)
		return mc_py_raise(rc, why);
	return PyLong_FromUnsignedLongLong(((uint64_t)gen << 32) | ((uint64_t)idx << 8) |
	    ((uint64_t)(b != NULL && idx < MC_METRICS_MAX ? b->mb_desc[idx].md_unit & 0xf : 0) << 4) |
	    (uint64_t)type);
}

/*
 * Under the lock: the value a handle names, if it still names one of this
 * block's metrics of `type`.  NULL with an exception (and unlocked) if not.
 */
static void *mc_py_metric_value(McSegment *self, unsigned long long handle, int type)
{
	struct mc_metrics_block *b = self->seg.metrics;
	uint32_t gen = (uint32_t)(handle >> 32), idx = (uint32_t)(handle >> 8) & 0xffffff;

	if (b == NULL || b->mb_gen != gen || idx >= b->mb_count) {
		mc_py_unlock(self);
		mc_py_raise(-ESTALE, "metric handle from an earlier slot claim: register it again");
		return NULL;
	}
	if ((int)(handle & 0xf) != type || (int)b->mb_desc[idx].md_type != type ||
	    ((handle >> 4) & 0xf) != b->mb_desc[idx].md_unit) {
		mc_py_unlock(self);
		PyErr_Format(PyExc_TypeError, "the handle does not name a %s of this process",
		    mc_py_metric_types[type]);
		return NULL;
	}
	return (uint8_t *)b + b->mb_desc[idx].md_value_off;
}

/* A Python number into the stored integer: seconds -> ns, else an integer. */
static int mc_py_metric_amount(PyObject *v, bool seconds, uint64_t *out)
{
	double d;

	if (PyBool_Check(v) || !PyNumber_Check(v)) {
		PyErr_Format(PyExc_TypeError, "expected a number, not %s", Py_TYPE(v)->tp_name);
		return -1;
	}
	if (!seconds && PyLong_Check(v)) {
		unsigned long long n = PyLong_AsUnsignedLongLong(v);

		if (n == (unsigned long long)-1 && PyErr_Occurred()) {
			PyErr_Clear();
			PyErr_SetString(PyExc_ValueError, "expected an integer >= 0 (below 2**64)");
			return -1;
		}
		*out = n;
		return 0;
	}
	d = PyFloat_AsDouble(v);
	if (d == -1.0 && PyErr_Occurred())
		return -1;
	if (seconds)
		d *= 1e9;
	if (!isfinite(d) || d < 0 || d >= 18446744073709551616.0 || (!seconds && d != floor(d))) {
		PyErr_Format(PyExc_ValueError, "expected %s >= 0, got %R",
		    seconds ? "seconds" : "an integer", v);
		return -1;
	}
	*out = (uint64_t)llround(d);
	return 0;
}

static PyObject *mc_py_metric_update(PyObject *args, const char *fmt, int type, int op)
{
	unsigned long long handle;
	PyObject *seg_o, *val;
	McSegment *self;
	uint64_t amount = 0;
	double x = 0;
	void *v;

	if (!PyArg_ParseTuple(args, fmt, &seg_o, &handle, &val))
		return NULL;
	self = mc_py_seg_arg(seg_o);
	if (self == NULL)
		return NULL;
	/* convert before locking: the handle carries the unit */
	if (type == MC_METRIC_GAUGE) {
		x = PyFloat_AsDouble(val);
		if (x == -1.0 && PyErr_Occurred())
			return NULL;
	} else if (mc_py_metric_amount(val, ((handle >> 4) & 0xf) == MC_UNIT_SECONDS, &amount) < 0) {
		return NULL;
	}
	if (mc_py_enter_slot(self))
		return NULL;
	v = mc_py_metric_value(self, handle, type);
	if (v == NULL)
		return NULL;
	switch (type) {
	case MC_METRIC_COUNTER:
		mc_counter_add((struct mc_counter){ v }, amount);
		break;
	case MC_METRIC_GAUGE:
		if (op == 0)
			mc_gauge_set((struct mc_gauge){ v }, x);
		else
			mc_gauge_add((struct mc_gauge){ v }, x);
		break;
	default:
		mc_histogram_observe((struct mc_histogram){ v }, amount);
		break;
	}
	mc_py_unlock(self);
	Py_RETURN_NONE;
}

static PyObject *mc_py_metric_inc(PyObject *mod, PyObject *args)
{
	(void)mod;
	return mc_py_metric_update(args, "OKO:metric_inc", MC_METRIC_COUNTER, 0);
}

static PyObject *mc_py_metric_set(PyObject *mod, PyObject *args)
{
	(void)mod;
	return mc_py_metric_update(args, "OKO:metric_set", MC_METRIC_GAUGE, 0);
}

static PyObject *mc_py_metric_add(PyObject *mod, PyObject *args)
{
	(void)mod;
	return mc_py_metric_update(args, "OKO:metric_add", MC_METRIC_GAUGE, 1);
}

static PyObject *mc_py_metric_observe(PyObject *mod, PyObject *args)
{
	(void)mod;
	return mc_py_metric_update(args, "OKO:metric_observe", MC_METRIC_HISTOGRAM, 0);
}

/* ---- reading ---------------------------------------------------------------- */

/* A reader's copy of one metric, taken under the lock. */
struct mc_py_sample {
	struct mc_metric_info info;
	double value;                   /* counter, gauge: base units */
	uint64_t count;
	double sum, p50, p90, p99, max; /* histogram: base units */
};

struct mc_py_block {
	struct mc_hist h;               /* scratch */
	int32_t pid;
	uint32_t gen, owners;
	struct mc_metrics_frames frames;
	uint32_t n;
	struct mc_py_sample s[MC_METRICS_MAX];
};

static void mc_py_read_block(const struct mc_seg *seg, unsigned slot,
    const struct mc_metrics_view *v, struct mc_py_block *out)
{
	struct mc_hist *h = &out->h;

	out->pid = v->pid;
	out->gen = v->gen;
	out->owners = v->owners;
	out->n = 0;
	mc_metrics_slot_frames(seg, slot, &out->frames);
	for (uint32_t i = 0; i < v->count; i++) {
		struct mc_py_sample *s = &out->s[out->n];
		double div;

		if (mc_metrics_info(v, i, &s->info) != 0)
			continue;
		div = s->info.unit == MC_UNIT_SECONDS ? 1e9 : 1.0;
		if (s->info.type == MC_METRIC_COUNTER) {
			s->value = (double)mc_metrics_read_counter(&s->info) / div;
		} else if (s->info.type == MC_METRIC_GAUGE) {
			s->value = mc_metrics_read_gauge(&s->info);
		} else {
			s->count = mc_metrics_read_hist(&s->info, h);
			s->sum = (double)h->h_sum / div;
			s->p50 = mc_hist_quantile(h, 0.50) / div;
			s->p90 = mc_hist_quantile(h, 0.90) / div;
			s->p99 = mc_hist_quantile(h, 0.99) / div;
			s->max = (double)h->h_max / div;
		}
		out->n++;
	}
}

/* {kind: count} of the block's messages_handled_total counters. */
static PyObject *mc_py_handled_dict(const struct mc_py_block *blk)
{
	static const char prefix[] = "kind=\"";
	const size_t plen = sizeof(prefix) - 1;
	PyObject *d = PyDict_New();

	for (uint32_t i = 0; d != NULL && i < blk->n; i++) {
		const struct mc_py_sample *s = &blk->s[i];
		const char *labels = s->info.labels;
		size_t len = strlen(labels);
		PyObject *k, *n;
		int rc;

		/* one label, kind="<name>": kind names need no escaping */
		if (s->info.type != MC_METRIC_COUNTER || strcmp(s->info.name, MC_METRIC_HANDLED) != 0 ||
		    len <= plen || strncmp(labels, prefix, plen) != 0 || labels[len - 1] != '"')
			continue;
		k = PyUnicode_FromStringAndSize(labels + plen, (Py_ssize_t)(len - plen - 1));
		n = PyLong_FromUnsignedLongLong((unsigned long long)s->value);
		rc = k != NULL && n != NULL ? PyDict_SetItem(d, k, n) : -1;
		Py_XDECREF(k);
		Py_XDECREF(n);
		if (rc < 0)
			Py_CLEAR(d);
	}
	return d;
}

static PyObject *mc_py_sample_dict(const struct mc_py_sample *s)
{
	const struct mc_metric_info *m = &s->info;

	if (m->type == MC_METRIC_HISTOGRAM)
		return Py_BuildValue("{s:s, s:s, s:s, s:s, s:s, s:K, s:d, s:d, s:d, s:d, s:d}",
		    "name", m->name, "labels", m->labels, "type", mc_py_metric_types[m->type],
		    "help", m->help, "unit", m->unit == MC_UNIT_SECONDS ? "seconds" : "",
		    "count", (unsigned long long)s->count, "sum", s->sum, "p50", s->p50,
		    "p90", s->p90, "p99", s->p99, "max", s->max);
	return Py_BuildValue("{s:s, s:s, s:s, s:s, s:s, s:d}", "name", m->name,
	    "labels", m->labels, "type", mc_py_metric_types[m->type], "help", m->help,
	    "unit", m->unit == MC_UNIT_SECONDS ? "seconds" : "", "value", s->value);
}

static PyObject *mc_py_metrics_read(PyObject *mod, PyObject *args)
{
	struct mc_metrics_view v;
	struct mc_py_block *blk;
	PyObject *seg_o, *list = NULL, *handled = NULL, *res = NULL;
	McSegment *self;
	unsigned slot;
	bool ok = false;

	(void)mod;
	if (!PyArg_ParseTuple(args, "OI:metrics_read", &seg_o, &slot))
		return NULL;
	self = mc_py_seg_arg(seg_o);
	if (self == NULL)
		return NULL;
	blk = PyMem_Malloc(sizeof(*blk));
	if (blk == NULL)
		return PyErr_NoMemory();
	if (mc_py_enter(self)) {
		PyMem_Free(blk);
		return NULL;
	}
	if (slot >= self->seg.hdr->sh_nslots) {
		unsigned n = self->seg.hdr->sh_nslots;

		mc_py_unlock(self);
		PyMem_Free(blk);
		return PyErr_Format(PyExc_ValueError, "slot %u out of range (0..%u)", slot, n - 1);
	}
	/* a block reset while we read is read again */
	for (int tries = 0; tries < 4 && !ok; tries++) {
		if (mc_metrics_view(&self->seg, slot, &v) != 0)
			break;
		mc_py_read_block(&self->seg, slot, &v, blk);
		ok = mc_metrics_view_ok(&v);
	}
	mc_py_unlock(self);
	if (!ok) {
		PyMem_Free(blk);
		Py_RETURN_NONE;
	}
	list = PyList_New(0);
	handled = mc_py_handled_dict(blk);
	for (uint32_t i = 0; list != NULL && i < blk->n; i++) {
		PyObject *d = mc_py_sample_dict(&blk->s[i]);

		if (d == NULL || PyList_Append(list, d) < 0) {
			Py_XDECREF(d);
			Py_CLEAR(list);
			break;
		}
		Py_DECREF(d);
	}
	if (list != NULL && handled != NULL)
		res = Py_BuildValue("{s:I, s:i, s:I, s:I, s:K, s:K, s:K, s:O, s:O}", "slot", slot,
		    "pid", (int)blk->pid, "generation", blk->gen, "owners", blk->owners,
		    "frames_sent", (unsigned long long)blk->frames.sent,
		    "frames_received", (unsigned long long)blk->frames.received,
		    "pool_bytes_written", (unsigned long long)blk->frames.pool_bytes,
		    "messages_handled", handled, "metrics", list);
	Py_XDECREF(list);
	Py_XDECREF(handled);
	PyMem_Free(blk);
	return res;
}

static PyMethodDef mc_py_metrics_methods[] = {
	{ "metric_register", mc_py_metric_register, METH_VARARGS,
	  "metric_register(seg, type, name, help, labels=None) -> handle" },
	{ "metric_inc", mc_py_metric_inc, METH_VARARGS, "metric_inc(seg, handle, amount)" },
	{ "metric_set", mc_py_metric_set, METH_VARARGS, "metric_set(seg, handle, value)" },
	{ "metric_add", mc_py_metric_add, METH_VARARGS, "metric_add(seg, handle, delta)" },
	{ "metric_observe", mc_py_metric_observe, METH_VARARGS,
	  "metric_observe(seg, handle, value)" },
	{ "metrics_read", mc_py_metrics_read, METH_VARARGS,
	  "metrics_read(seg, slot) -> dict of the slot's metrics block, or None" },
	{ NULL },
};

int mc_py_metrics_init(PyObject *mod)
{
	PyObject *err = PyFloat_FromDouble(MC_HIST_REL_ERROR);
	int rc = -1;

	if (err != NULL && PyModule_AddFunctions(mod, mc_py_metrics_methods) == 0 &&
	    PyModule_AddIntConstant(mod, "KIND_METRICS_SNAPSHOT", MC_FK_METRICS_SNAPSHOT) == 0 &&
	    PyModule_AddObjectRef(mod, "METRICS_REL_ERROR", err) == 0)
		rc = 0;
	Py_XDECREF(err);
	return rc;
}
