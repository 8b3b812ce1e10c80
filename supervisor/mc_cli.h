/*
 * mc_cli.h - the operator commands of the `mcpcore` binary besides `run`.
 * Each returns the process exit status and prints to stdout/stderr.
 */
#ifndef MC_CLI_H
#define MC_CLI_H

#include <stdbool.h>

#include "mc_config.h"

/* `mcpcore layout`: the region table for cfg; creates nothing. */
int mc_cli_layout(const struct mc_config *cfg, bool json);

/* `mcpcore status`: attach read-only to `instance` and report. */
int mc_cli_status(const char *instance, bool json, bool watch);

/* `mcpcore ping`: claim a client slot, ping each worker, print RTTs. */
int mc_cli_ping(const char *instance, const char *only, int count, bool json);

/* `mcpcore state ...`: argv starts at "state"'s arguments (argv[0] = "state"). */
int mc_cli_state(int argc, char **argv);

#endif /* MC_CLI_H */
