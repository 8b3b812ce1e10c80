/*
 * mc_py.h - what the parts of the _mcpcore extension share.
 *
 * _mcpcore.c owns the Segment type, its lock and the exceptions.  Other
 * parts (state.c: the state manager API; metrics.c: the metrics API) add
 * module-level functions that take a Segment as first argument; the
 * package's __init__.py turns them into methods.  Every function that
 * touches the mapping runs between mc_py_enter*() and mc_py_unlock().
 */
#ifndef MC_PY_H
#define MC_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <stdbool.h>
#include <sys/types.h>

#include "mc_seg.h"

#define MC_PY_ERR_MAX 512

typedef struct {
	PyObject_HEAD
	struct mc_seg seg;
	PyThread_type_lock lock;
	bool attached;
	pid_t owner_pid;                /* process that claimed seg.slot */
	Py_ssize_t exports;             /* live region buffers */
	char instance[MC_INSTANCE_MAX];
} McSegment;

extern PyTypeObject McSegment_Type;
extern PyObject *mc_py_Error, *mc_py_NoSegmentError, *mc_py_AbiError,
    *mc_py_NotRunningError, *mc_py_NoSlotError, *mc_py_FullError, *mc_py_PeerGoneError;

/* Raise the exception for a negative mc_* error (msg: the library's text or NULL). */
PyObject *mc_py_raise(int rc, const char *msg);

/* Take the Segment's lock; 0, or -1 with ValueError if it is closed. */
int mc_py_enter(McSegment *self);
/* Same, and this process must hold a client slot (-1 with mcpcore.Error). */
int mc_py_enter_slot(McSegment *self);
void mc_py_unlock(McSegment *self);

/* Module init hooks of the other parts: 0 or -1 with an exception set. */
int mc_py_state_init(PyObject *mod);
int mc_py_metrics_init(PyObject *mod);
int mc_py_persist_init(PyObject *mod);

#endif /* MC_PY_H */
