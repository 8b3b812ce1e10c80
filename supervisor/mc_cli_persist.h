/*
 * mc_cli_persist.h - the persistence commands of the `mcpcore` binary:
 *
 *   mcpcore checkpoint [--instance NAME | --config PATH] [--json] [--timeout SEC]
 *       ask the running persistence worker for a checkpoint now (a frame
 *       from a client slot); prints the directory it wrote.
 *   mcpcore restore CHECKPOINT [--config PATH] [--instance NAME]
 *       offline: refuses while the instance runs (or anything holds the
 *       store open); moves the current store aside and copies the
 *       checkpoint in.
 *   mcpcore dump --cf NAME [--since T] [--limit N] [--config PATH] [--db DIR]
 *       prints the records of a column family as JSON lines, protobuf
 *       decoded (mc_pjson.h); opens the store read-only, so it works while
 *       the runtime runs.
 *
 * Who may call: main() only.  Each returns the process exit status
 * (0 ok, 1 failed, 64 usage, 78 configuration error) and prints to
 * stdout/stderr; nothing else of the process is touched.
 */
#ifndef MC_CLI_PERSIST_H
#define MC_CLI_PERSIST_H

#include <stdbool.h>

/* Is `cmd` one of the commands above? */
bool mc_cli_persist_command(const char *cmd);

/*
 * Run command argv[0] with its options argv[1..argc-1].  default_config is
 * the config path used without --config ($MCPCORE_CONFIG etc., decided by
 * main).
 */
int mc_cli_persist_main(int argc, char **argv, const char *default_config);

/* The --help text of `cmd`, or NULL. */
const char *mc_cli_persist_help(const char *cmd);

#endif /* MC_CLI_PERSIST_H */
