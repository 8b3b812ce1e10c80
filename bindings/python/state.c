/*
 * state.c - the _mcpcore part for the state manager: lock-free reads of
 * the table in shared memory (mc_state.h).  Writes go through the state
 * worker as frames and live in the package (mcpcore/__init__.py).
 *
 *   state_get(seg, ns, key) -> (value, version, mtime_ns, expires_ns) | None
 *   state_scan(seg, ns, prefix) -> [(key, value, version), ...]
 *   state_stats(seg) -> dict
 *
 * ns, key and prefix are bytes-like or str (UTF-8).  A read needs no slot
 * and works on a read-only attach.  The GIL is released during the lookup.
 */
#include "mc_py.h"

#include <errno.h>
#include <stdlib.h>

#include "mc_state.h"

/* bytes-like or str -> pointer/length (str as UTF-8). */
static int mc_py_bytes_arg(PyObject *o, const char *what, Py_buffer *view, const void **p,
    Py_ssize_t *n)
{
	if (PyUnicode_Check(o)) {
		*p = PyUnicode_AsUTF8AndSize(o, n);
		view->obj = NULL;
		return *p ? 0 : -1;
	}
	if (PyObject_GetBuffer(o, view, PyBUF_SIMPLE) < 0) {
		PyErr_Format(PyExc_TypeError, "%s must be bytes-like or str, not %s", what,
		    Py_TYPE(o)->tp_name);
		return -1;
	}
	*p = view->buf;
	*n = view->len;
	return 0;
}

static void mc_py_bytes_done(Py_buffer *view)
{
	if (view->obj != NULL)
		PyBuffer_Release(view);
}

static PyObject *mc_py_state_error(int rc, const char *what)
{
	if (rc == -ENODEV)
		return PyErr_Format(mc_py_NotRunningError, "the state table is not set up yet "
		    "(the state worker has not started)");
	if (rc == -EINVAL)
		return PyErr_Format(PyExc_ValueError, "%s: namespace and key must be 1..max_key_size "
		    "bytes", what);
	return mc_py_raise(rc, NULL);
}

static PyObject *mc_py_state_get(PyObject *mod, PyObject *args)
{
	PyObject *sego, *nso, *keyo, *ret = NULL;
	Py_buffer nsv = { 0 }, keyv = { 0 };
	const void *ns = NULL, *key = NULL;
	Py_ssize_t nslen = 0, klen = 0;
	struct mc_state_value v;
	McSegment *seg;
	size_t cap;
	char *buf = NULL;
	int rc;

	(void)mod;
	if (!PyArg_ParseTuple(args, "O!OO:state_get", &McSegment_Type, &sego, &nso, &keyo))
		return NULL;
	seg = (McSegment *)sego;
	if (mc_py_bytes_arg(nso, "namespace", &nsv, &ns, &nslen) < 0)
		return NULL;
	if (mc_py_bytes_arg(keyo, "key", &keyv, &key, &klen) < 0)
		goto out;
	if (mc_py_enter(seg))
		goto out;
	cap = seg->seg.hdr->sh_config.state_max_value_size;
	buf = malloc(cap ? cap : 1);
	if (buf == NULL) {
		mc_py_unlock(seg);
		PyErr_NoMemory();
		goto out;
	}
	Py_BEGIN_ALLOW_THREADS
	rc = mc_state_get(&seg->seg, ns, (size_t)nslen, key, (size_t)klen, buf, cap, &v);
	Py_END_ALLOW_THREADS
	mc_py_unlock(seg);
	if (rc == -ENOENT)
		ret = Py_NewRef(Py_None);
	else if (rc < 0)
		mc_py_state_error(rc, "state_get");
	else
		ret = Py_BuildValue("(y#KKK)", buf, (Py_ssize_t)v.len, (unsigned long long)v.version,
		    (unsigned long long)v.mtime, (unsigned long long)v.expires);
out:
	free(buf);
	mc_py_bytes_done(&keyv);
	mc_py_bytes_done(&nsv);
	return ret;
}

struct mc_py_scan {
	PyObject *list;
	int failed;
};

/* Called with the GIL held (the scan runs under it: items become objects). */
static int mc_py_scan_cb(void *ctx, const struct mc_state_item *it)
{
	struct mc_py_scan *sc = ctx;
	PyObject *t = Py_BuildValue("(y#y#K)", it->key, (Py_ssize_t)it->keylen, it->value,
	    (Py_ssize_t)it->vlen, (unsigned long long)it->meta.version);

	if (t == NULL || PyList_Append(sc->list, t) < 0) {
		Py_XDECREF(t);
		sc->failed = 1;
		return 1;
	}
	Py_DECREF(t);
	return 0;
}

static PyObject *mc_py_state_scan(PyObject *mod, PyObject *args)
{
	PyObject *sego, *nso, *prefixo;
	Py_buffer nsv = { 0 }, pv = { 0 };
	const void *ns = NULL, *prefix = NULL;
	Py_ssize_t nslen = 0, plen = 0;
	struct mc_py_scan sc = { 0 };
	McSegment *seg;
	long n;

	(void)mod;
	if (!PyArg_ParseTuple(args, "O!OO:state_scan", &McSegment_Type, &sego, &nso, &prefixo))
		return NULL;
	seg = (McSegment *)sego;
	if (mc_py_bytes_arg(nso, "namespace", &nsv, &ns, &nslen) < 0)
		return NULL;
	if (mc_py_bytes_arg(prefixo, "prefix", &pv, &prefix, &plen) < 0)
		goto fail;
	sc.list = PyList_New(0);
	if (sc.list == NULL || mc_py_enter(seg))
		goto fail;
	n = mc_state_scan(&seg->seg, ns, (size_t)nslen, prefix, (size_t)plen, mc_py_scan_cb, &sc);
	mc_py_unlock(seg);
	if (sc.failed)
		goto fail;
	if (n < 0) {
		mc_py_state_error((int)n, "state_scan");
		goto fail;
	}
	mc_py_bytes_done(&pv);
	mc_py_bytes_done(&nsv);
	return sc.list;
fail:
	Py_XDECREF(sc.list);
	mc_py_bytes_done(&pv);
	mc_py_bytes_done(&nsv);
	return NULL;
}

static PyObject *mc_py_state_stats(PyObject *mod, PyObject *args)
{
	PyObject *sego;
	struct mc_state_stats st;
	McSegment *seg;
	int rc;

	(void)mod;
	if (!PyArg_ParseTuple(args, "O!:state_stats", &McSegment_Type, &sego))
		return NULL;
	seg = (McSegment *)sego;
	if (mc_py_enter(seg))
		return NULL;
	rc = mc_state_stats(&seg->seg, &st);
	mc_py_unlock(seg);
	if (rc)
		return mc_py_state_error(rc, "state_stats");
	return Py_BuildValue("{s:K, s:K, s:K, s:K, s:K, s:K, s:K, s:K, s:K, s:K}",
	    "capacity", (unsigned long long)st.capacity, "live", (unsigned long long)st.live,
	    "tombstones", (unsigned long long)st.tombstones, "version", (unsigned long long)st.version,
	    "writes", (unsigned long long)st.writes, "expired", (unsigned long long)st.expired,
	    "arena_size", (unsigned long long)st.arena_size,
	    "arena_top", (unsigned long long)st.arena_top,
	    "arena_live", (unsigned long long)st.arena_live,
	    "arena_free", (unsigned long long)st.arena_free);
}

static PyMethodDef mc_py_state_methods[] = {
	{ "state_get", mc_py_state_get, METH_VARARGS,
	  "state_get(seg, ns, key) -> (value, version, mtime_ns, expires_ns) or None" },
	{ "state_scan", mc_py_state_scan, METH_VARARGS,
	  "state_scan(seg, ns, prefix) -> [(key, value, version), ...]" },
	{ "state_stats", mc_py_state_stats, METH_VARARGS, "state_stats(seg) -> dict" },
	{ NULL, NULL, 0, NULL },
};

int mc_py_state_init(PyObject *mod)
{
	return PyModule_AddFunctions(mod, mc_py_state_methods);
}
