/*
 * persist.c - the _mcpcore part for the persistence worker (seg.persist.*):
 * what the control block in storage.history says (mc_persist.h).
 *
 *   persist_durable_seq(seg, slot) -> int
 *       highest frame sequence number of `slot` durably stored
 *   persist_wait_durable(seg, slot, seq, timeout) -> bool
 *       wait (GIL released) until it covers seq; False on timeout
 *   persist_status(seg) -> str
 *       the "persistence" object of `mcpcore status --json`, as JSON text
 *
 * Requests to the worker (checkpoints, models, training data) are frames
 * and live in the package (mcpcore/__init__.py, class Persist).  Nothing
 * here needs a client slot; everything works on a read-only attach.
 */
#include "mc_py.h"

#include <errno.h>
#include <stdlib.h>

#include "mc_persist.h"
#include "mc_proto.h"
#include "mc_util.h"

#define MC_PY_PERSIST_SLICE_NS 100000000ULL   /* re-check signals this often */

static int mc_py_persist_slot(McSegment *seg, long slot)
{
	if (slot < 0 || (unsigned long)slot >= seg->seg.hdr->sh_nslots) {
		PyErr_Format(PyExc_ValueError, "slot %ld out of range 0..%u", slot,
		    seg->seg.hdr->sh_nslots - 1);
		return -1;
	}
	return 0;
}

static PyObject *mc_py_persist_durable_seq(PyObject *mod, PyObject *args)
{
	PyObject *sego;
	McSegment *seg;
	uint64_t v;
	long slot;

	(void)mod;
	if (!PyArg_ParseTuple(args, "O!l:persist_durable_seq", &McSegment_Type, &sego, &slot))
		return NULL;
	seg = (McSegment *)sego;
	if (mc_py_enter(seg))
		return NULL;
	if (mc_py_persist_slot(seg, slot)) {
		mc_py_unlock(seg);
		return NULL;
	}
	v = mc_persist_durable_seq(&seg->seg, (unsigned)slot);
	mc_py_unlock(seg);
	return PyLong_FromUnsignedLongLong(v);
}

static PyObject *mc_py_persist_wait_durable(PyObject *mod, PyObject *args)
{
	PyObject *sego;
	McSegment *seg;
	unsigned long long want;
	double timeout;
	uint64_t end;
	long slot;

	(void)mod;
	if (!PyArg_ParseTuple(args, "O!lKd:persist_wait_durable", &McSegment_Type, &sego, &slot,
	    &want, &timeout))
		return NULL;
	if (!(timeout >= 0)) {
		PyErr_SetString(PyExc_ValueError, "timeout must be >= 0 seconds");
		return NULL;
	}
	seg = (McSegment *)sego;
	end = mc_now_ns() + (uint64_t)(timeout * 1e9);
	for (;;) {
		uint64_t now = mc_now_ns(), slice;
		int rc;

		if (mc_py_enter(seg))
			return NULL;
		if (mc_py_persist_slot(seg, slot)) {
			mc_py_unlock(seg);
			return NULL;
		}
		slice = now >= end ? 0 : (end - now < MC_PY_PERSIST_SLICE_NS ? end - now :
		    MC_PY_PERSIST_SLICE_NS);
		/* the Segment's lock keeps the mapping alive while we wait */
		Py_BEGIN_ALLOW_THREADS
		rc = mc_persist_wait_durable(&seg->seg, (unsigned)slot, want, slice);
		Py_END_ALLOW_THREADS
		mc_py_unlock(seg);
		if (rc == 0)
			Py_RETURN_TRUE;
		if (rc == -EPIPE)
			return PyErr_Format(mc_py_PeerGoneError, "the persistence worker has failed or "
			    "stopped (see `mcpcore status`): seq %llu of slot %ld will not become durable",
			    want, slot);
		if (rc != -ETIMEDOUT)
			return mc_py_raise(rc, NULL);
		if (mc_now_ns() >= end)
			Py_RETURN_FALSE;
		if (PyErr_CheckSignals())
			return NULL;
	}
}

static PyObject *mc_py_persist_status(PyObject *mod, PyObject *args)
{
	PyObject *sego, *ret;
	McSegment *seg;
	json_t *doc;
	char *text;

	(void)mod;
	if (!PyArg_ParseTuple(args, "O!:persist_status", &McSegment_Type, &sego))
		return NULL;
	seg = (McSegment *)sego;
	if (mc_py_enter(seg))
		return NULL;
	doc = mc_persist_status_json(&seg->seg);
	mc_py_unlock(seg);
	text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (text == NULL)
		return PyErr_NoMemory();
	ret = PyUnicode_FromString(text);
	free(text);
	return ret;
}

static PyMethodDef mc_py_persist_methods[] = {
	{ "persist_durable_seq", mc_py_persist_durable_seq, METH_VARARGS,
	  "persist_durable_seq(seg, slot) -> highest seq of slot durably stored" },
	{ "persist_wait_durable", mc_py_persist_wait_durable, METH_VARARGS,
	  "persist_wait_durable(seg, slot, seq, timeout) -> True, or False on timeout" },
	{ "persist_status", mc_py_persist_status, METH_VARARGS,
	  "persist_status(seg) -> JSON text of the persistence worker's status" },
	{ NULL },
};

int mc_py_persist_init(PyObject *mod)
{
	if (PyModule_AddFunctions(mod, mc_py_persist_methods) < 0 ||
	    PyModule_AddIntConstant(mod, "KIND_PERSIST_REQUEST", MC_FK_PERSIST_REQUEST) < 0 ||
	    PyModule_AddIntConstant(mod, "KIND_PERSIST_REPLY", MC_FK_PERSIST_REPLY) < 0 ||
	    PyModule_AddIntConstant(mod, "PERSISTENCE_SLOT", MC_WORKER_PERSISTENCE) < 0)
		return -1;
	return 0;
}
