/*
 * state.c - the _mcpcore part for the state manager (seg.state.*).
 * Filled in by its issue; registers nothing yet.
 */
#include "mc_py.h"

int mc_py_state_init(PyObject *mod)
{
	(void)mod;
	return 0;
}
