/*
 * main.c - the `mcpcore` binary: supervisor (`run`), operator commands
 * (`layout`, `status`, `ping`) and the worker entry the supervisor execs
 * (`worker`).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mc_cli.h"
#include "mc_cli_persist.h"
#include "mc_config.h"
#include "mc_jemalloc.h"
#include "mc_supervisor.h"
#include "mc_worker.h"

#define MC_EX_USAGE 64

static const char mc_usage[] =
"usage: mcpcore COMMAND [OPTIONS]\n"
"\n"
"Commands:\n"
"  run      start the runtime: create the segment and supervise the workers\n"
"  layout   print the segment's region table for a config (creates nothing)\n"
"  status   show a running instance: supervisor, workers, rings, pools\n"
"  ping     round-trip a ping frame through each worker\n"
"  checkpoint  ask the persistence worker for a RocksDB checkpoint now\n"
"  restore  put a checkpoint back as the store (instance stopped)\n"
"  dump     print a column family of the store as JSON lines (protobuf decoded)\n"
"  state    read and write the state manager (get, put, cas, del, incr, scan, check)\n"
"\n"
"Run `mcpcore COMMAND --help` for a command's options.\n"
"Config: --config PATH, else $MCPCORE_CONFIG, else ./config/mcpcore.toml,\n"
"else config/mcpcore.toml next to the source tree the binary was built in.\n";

struct mc_cmd_help {
	const char *name;
	const char *text;
};

static const struct mc_cmd_help mc_helps[] = {
	{ "run", "usage: mcpcore run [--config PATH] [--instance NAME]\n"
	  "Create /dev/shm/mcpcore.<instance>, start the protocol, router, state, monitor\n"
	  "and persistence workers and keep them alive. JSON log lines go to stderr.\n"
	  "SIGTERM or SIGINT stops everything and removes the segment (exit 0).\n"
	  "Exit 78: configuration error. Exit 1: could not start (e.g. already running).\n" },
	{ "layout", "usage: mcpcore layout [--config PATH] [--json]\n"
	  "Print the 11 regions (name, offset, size, writer) and the total. Creates nothing.\n" },
	{ "status", "usage: mcpcore status [--config PATH] [--instance NAME] [--json] [--watch]\n"
	  "Attach read-only to a running instance and show the supervisor, each worker\n"
	  "(pid, state, restarts, heartbeat age), client slots, ring depths and frame pools.\n"
	  "--watch refreshes every second. Exit 1 if the instance is not running.\n" },
	{ "ping", "usage: mcpcore ping [WORKER] [--config PATH] [--instance NAME] [--count N] [--json]\n"
	  "Take a client slot and send ping frames to every worker (or just WORKER),\n"
	  "printing each answer's pid, generation and round-trip time.\n" },
};

static int mc_help(const char *cmd, FILE *out)
{
	for (size_t i = 0; i < sizeof(mc_helps) / sizeof(mc_helps[0]); i++)
		if (strcmp(mc_helps[i].name, cmd) == 0) {
			fputs(mc_helps[i].text, out);
			return 0;
		}
	fputs(mc_usage, out);
	return 0;
}

/* Directory of the source tree this binary was built from (for the default config). */
#ifndef MC_SOURCE_DIR
#define MC_SOURCE_DIR "."
#endif

static const char *mc_default_config(void)
{
	static const char *const candidates[] = { "config/mcpcore.toml",
	    MC_SOURCE_DIR "/config/mcpcore.toml" };
	const char *env = getenv("MCPCORE_CONFIG");

	if (env != NULL && *env != '\0')
		return env;
	for (size_t i = 0; i < 2; i++)
		if (access(candidates[i], F_OK) == 0)
			return candidates[i];
	return candidates[0];   /* let the loader report it missing */
}

static bool mc_instance_valid(const char *s)
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

struct mc_opts {
	const char *config;
	const char *instance;
	const char *arg;        /* positional (ping WORKER) */
	bool json;
	bool watch;
	int count;
};

static int mc_parse_opts(const char *cmd, int argc, char **argv, struct mc_opts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "instance", required_argument, NULL, 'i' },
		{ "json", no_argument, NULL, 'j' },
		{ "watch", no_argument, NULL, 'w' },
		{ "count", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	*o = (struct mc_opts){ .count = 1 };
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:i:jwn:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o->config = optarg; break;
		case 'i': o->instance = optarg; break;
		case 'j': o->json = true; break;
		case 'w': o->watch = true; break;
		case 'n': o->count = atoi(optarg); break;
		case 'h': mc_help(cmd, stdout); exit(0);
		default: mc_help(cmd, stderr); return MC_EX_USAGE;
		}
	}
	if (optind < argc && strcmp(cmd, "ping") == 0)
		o->arg = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "mcpcore %s: unexpected argument '%s'\n", cmd, argv[optind]);
		return MC_EX_USAGE;
	}
	if (o->instance != NULL && !mc_instance_valid(o->instance)) {
		fprintf(stderr, "mcpcore %s: --instance '%s': use 1-47 of [A-Za-z0-9_-]\n", cmd,
		    o->instance);
		return MC_EX_USAGE;
	}
	if (o->count < 1 || o->count > 1000000) {
		fprintf(stderr, "mcpcore %s: --count must be 1..1000000\n", cmd);
		return MC_EX_USAGE;
	}
	return 0;
}

/* Load the config (with --instance applied); prints the error line on failure. */
static int mc_load(const struct mc_opts *o, struct mc_config *cfg)
{
	char err[MC_CONFIG_ERR_MAX];

	if (mc_config_load(o->config ? o->config : mc_default_config(), cfg, err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "mcpcore: %s\n", err);
		return MC_CONFIG_EX;
	}
	if (o->instance != NULL)
		snprintf(cfg->instance, sizeof(cfg->instance), "%s", o->instance);
	return 0;
}

/* Instance for attach-only commands: --instance, else the config's. */
static int mc_instance_of(const struct mc_opts *o, struct mc_config *cfg)
{
	if (o->instance != NULL && o->config == NULL) {
		snprintf(cfg->instance, sizeof(cfg->instance), "%s", o->instance);
		return 0;
	}
	return mc_load(o, cfg);
}

int main(int argc, char **argv)
{
	static struct mc_config cfg;   /* big: keep it off the stack */
	struct mc_opts o;
	const char *cmd;
	int rc;

	mc_jemalloc_install();          /* memory gauges of the metrics blocks */

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(mc_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? MC_EX_USAGE : 0;
	}
	cmd = argv[1];
	if (strcmp(cmd, "worker") == 0)
		return mc_worker_main(argc - 1, argv + 1);
	if (mc_cli_persist_command(cmd))
		return mc_cli_persist_main(argc - 1, argv + 1, mc_default_config());
	if (strcmp(cmd, "state") == 0)
		return mc_cli_state(argc - 1, argv + 1);
	if (strcmp(cmd, "run") && strcmp(cmd, "layout") && strcmp(cmd, "status") &&
	    strcmp(cmd, "ping")) {
		fprintf(stderr, "mcpcore: unknown command '%s'\n\n%s", cmd, mc_usage);
		return MC_EX_USAGE;
	}
	rc = mc_parse_opts(cmd, argc - 1, argv + 1, &o);
	if (rc)
		return rc;
	if (strcmp(cmd, "run") == 0) {
		rc = mc_load(&o, &cfg);
		return rc ? rc : mc_supervisor_run(&cfg);
	}
	if (strcmp(cmd, "layout") == 0) {
		rc = mc_load(&o, &cfg);
		return rc ? rc : mc_cli_layout(&cfg, o.json);
	}
	mc_config_defaults(&cfg);
	rc = mc_instance_of(&o, &cfg);
	if (rc)
		return rc;
	if (strcmp(cmd, "status") == 0)
		return mc_cli_status(cfg.instance, o.json, o.watch);
	return mc_cli_ping(cfg.instance, o.arg, o.count, o.json);
}
