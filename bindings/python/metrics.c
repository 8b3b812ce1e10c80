/*
 * metrics.c - the _mcpcore part for metrics registration and updates.
 * Filled in by its issue; registers nothing yet.
 */
#include "mc_py.h"

int mc_py_metrics_init(PyObject *mod)
{
	(void)mod;
	return 0;
}
