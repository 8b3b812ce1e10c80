/*
 * mc_config.h - the runtime configuration: a strict TOML-subset reader.
 *
 * The supervisor (and every CLI command) reads one TOML file, checks it
 * against the schema in config.c and produces a struct mc_config.  The
 * struct is plain data (fixed-size arrays, no pointers) because the
 * supervisor copies it into the segment header: workers and Python
 * processes read the configuration from shared memory, never from the
 * file, so a file edited after start cannot make a restarted worker
 * disagree with its peers.
 *
 * Accepted TOML subset (anything else is a syntax error):
 *   - comments (# to end of line), blank lines
 *   - table headers [a] and [a.b] (bare keys), each at most once
 *   - key = value, keys bare ([A-Za-z0-9_-]) or dotted (a.b = 1)
 *   - values: integers (decimal, optional sign, '_' between digits),
 *     floats (decimal with '.' and/or exponent), booleans, basic strings
 *     "..." with the escapes \" \\ \n \t \r \uXXXX (single line)
 * Every key must be in the schema, appear once, and have the schema's
 * type; integers are range-checked.
 *
 * Errors: every failing call fills `err` with ONE line of the form
 *   "<file>:<line>: <key>: <what is wrong>"
 * (line 0 and key "-" when the error is not tied to a line, e.g. a missing
 * file), and returns MC_CONFIG_EX (78, sysexits EX_CONFIG).  The
 * supervisor prints it and exits 78; it never restarts on it.
 *
 * Who may call: any process, any thread; no global state.
 */
#ifndef MC_CONFIG_H
#define MC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MC_CONFIG_EX 78          /* exit status for configuration errors */
#define MC_CONFIG_ERR_MAX 512    /* size of an error buffer */
#define MC_CONFIG_PATH_MAX 256
#define MC_INSTANCE_MAX 48       /* including NUL; [A-Za-z0-9_-]{1,47} */

/* Key identifiers, used to find the line a key was set on. */
enum mc_config_key {
	MC_CFG_INSTANCE,
	MC_CFG_CORE_MAX_CONNECTIONS,
	MC_CFG_CORE_MESSAGE_BUFFER_SIZE,
	MC_CFG_CORE_STATE_CACHE_SIZE,
	MC_CFG_LEARNING_MODEL_UPDATE_INTERVAL,
	MC_CFG_LEARNING_BATCH_SIZE,
	MC_CFG_LEARNING_LEARNING_RATE,
	MC_CFG_MEMORY_SHARED_MEMORY_SIZE,
	MC_CFG_MEMORY_RING_BUFFER_SIZE,
	MC_CFG_MEMORY_MESSAGE_QUEUE_SIZE,
	MC_CFG_MEMORY_MAX_MESSAGE_SIZE,
	MC_CFG_MEMORY_MAX_CLIENTS,
	MC_CFG_REGIONS_CORE_PROTOCOL,
	MC_CFG_REGIONS_CORE_STATE,
	MC_CFG_REGIONS_CORE_ROUTING,
	MC_CFG_REGIONS_LEARNING_MODELS,
	MC_CFG_REGIONS_LEARNING_TRAINING,
	MC_CFG_REGIONS_LEARNING_FEATURES,
	MC_CFG_REGIONS_STORAGE_ACTIVE_MODELS,
	MC_CFG_REGIONS_STORAGE_HISTORY,
	MC_CFG_PERSISTENCE_ROCKSDB_PATH,
	MC_CFG_PERSISTENCE_CHECKPOINT_INTERVAL,
	MC_CFG_PERSISTENCE_COMPRESSION,
	MC_CFG_SUPERVISOR_RESTART_BACKOFF_MS,
	MC_CFG_SUPERVISOR_RESTART_BACKOFF_MAX_MS,
	MC_CFG_SUPERVISOR_CRASH_LOOP_RESTARTS,
	MC_CFG_SUPERVISOR_CRASH_LOOP_WINDOW_MS,
	MC_CFG_SUPERVISOR_HEARTBEAT_TIMEOUT_MS,
	MC_CFG_SUPERVISOR_SHUTDOWN_TIMEOUT_MS,
	MC_CFG_LOG_LEVEL,
	MC_CFG_STATE_MAX_KEY_SIZE,
	MC_CFG_STATE_MAX_VALUE_SIZE,
	MC_CFG_PROTOCOL_LISTEN,
	MC_CFG_PROTOCOL_PATH,
	MC_CFG_PROTOCOL_CONFORMANCE_FIXTURES,
	MC_CFG_PROTOCOL_IDLE_TIMEOUT_MS,
	MC_CFG_PROTOCOL_REQUEST_TIMEOUT_MS,
	MC_CFG_PROTOCOL_MAX_HEADER_SIZE,
	MC_CFG_MONITOR_LISTEN,
	MC_CFG_MONITOR_SNAPSHOT_INTERVAL,
	MC_CFG_PERSISTENCE_SYNC,
	MC_CFG_PERSISTENCE_CHECKPOINT_KEEP,
	MC_CFG_PERSISTENCE_BATCH_MAX,
	MC_CFG_PERSISTENCE_GROUP_COMMIT_MS,
	MC_CFG_NKEYS
};

/*
 * The parsed configuration.  Defaults (see mc_config_defaults) are the
 * seed's values; the file overrides them key by key.  Sizes are bytes.
 */
struct mc_config {
	char     source[MC_CONFIG_PATH_MAX];      /* file it came from */
	char     instance[MC_INSTANCE_MAX];       /* instance = "default" */

	/* [core] */
	uint32_t max_connections;                 /* 10000 */
	uint64_t message_buffer_size;             /* 1 MiB */
	uint64_t state_cache_size;                /* region shared.state_cache, 2 GiB */

	/* [learning] */
	uint32_t model_update_interval;           /* seconds, 300 */
	uint32_t batch_size;                      /* 1024 */
	double   learning_rate;                   /* 0.001 */

	/* [memory] */
	uint64_t shared_memory_size;              /* must equal the three shared.* regions */
	uint64_t ring_buffer_size;                /* region shared.rings, 1 GiB */
	uint64_t message_queue_size;              /* region shared.message_queue, 1 GiB */
	uint64_t max_message_size;                /* largest frame payload, 1 MiB */
	uint32_t max_clients;                     /* slots for Python/CLI clients, 16 */

	/* [regions] sizes of the per-subsystem regions */
	uint64_t core_protocol;                   /* 1 GiB */
	uint64_t core_state;                      /* 1 GiB */
	uint64_t core_routing;                    /* 1 GiB */
	uint64_t learning_models;                 /* 1.5 GiB */
	uint64_t learning_training;               /* 1 GiB */
	uint64_t learning_features;               /* 0.5 GiB */
	uint64_t storage_active_models;           /* 1 GiB */
	uint64_t storage_history;                 /* 1 GiB */

	/* [persistence] */
	char     rocksdb_path[MC_CONFIG_PATH_MAX]; /* resolved: relative paths are
	                                              taken from the config's dir */
	uint32_t checkpoint_interval;             /* seconds, 3600 */
	char     compression[8];                  /* "lz4" | "zstd" | "none" */

	/* [supervisor] */
	uint32_t restart_backoff_ms;              /* first restart delay, 100 */
	uint32_t restart_backoff_max_ms;          /* cap, 5000 */
	uint32_t crash_loop_restarts;             /* this many crashes ... 5 */
	uint32_t crash_loop_window_ms;            /* ... within this window => failed, 10000 */
	uint32_t heartbeat_timeout_ms;            /* hung worker is killed after, 5000 */
	uint32_t shutdown_timeout_ms;             /* SIGTERM grace before SIGKILL, 3000 */

	/* [log] */
	char     log_level[8];                    /* "debug"|"info"|"warn"|"error" */

	/* [state] */
	uint32_t state_max_key_size;              /* namespace and key, each, 256 */
	uint32_t state_max_value_size;            /* 65536 */

	/* [protocol] */
	char     protocol_listen[64];             /* "127.0.0.1:3000" */
	char     protocol_path[64];               /* "/mcp" */
	bool     protocol_conformance_fixtures;   /* false */
	uint32_t protocol_idle_timeout_ms;        /* 60000 */
	uint32_t protocol_request_timeout_ms;     /* 10000: then "server busy" */
	uint32_t protocol_max_header_size;        /* 16384 */

	/* [monitor] */
	char     monitor_listen[64];              /* "127.0.0.1:9464" */
	uint32_t monitor_snapshot_interval;       /* seconds, 10 */

	/* [persistence] (continued) */
	char     persistence_sync[8];             /* "batch" | "none" */
	uint32_t persistence_checkpoint_keep;     /* 5 */
	uint32_t persistence_batch_max;           /* frames per write batch, 4096 */
	uint32_t persistence_group_commit_ms;     /* lazy frames wait this long for company, 10 */

	/* Line each key was set on (0 = default used).  Indexed by
	 * enum mc_config_key; lets later checks (layout) name file:line. */
	uint32_t line[MC_CFG_NKEYS];
};

/* Fill `cfg` with the built-in defaults (the seed's values). */
void mc_config_defaults(struct mc_config *cfg);

/*
 * Read and check the file at `path`.  Returns 0, or MC_CONFIG_EX with a
 * one-line message in err[errlen].  On error *cfg is unspecified.
 */
int mc_config_load(const char *path, struct mc_config *cfg,
    char *err, size_t errlen);

/*
 * Same, from a buffer (tests); `name` is used as the file name in errors
 * and to resolve relative paths (its directory).
 */
int mc_config_parse(const char *name, const char *text, size_t len,
    struct mc_config *cfg, char *err, size_t errlen);

/* The dotted name of a key ("memory.ring_buffer_size"). */
const char *mc_config_key_name(enum mc_config_key key);

/*
 * Format a config error about `key` into err: "<source>:<line>: <key>: <msg>".
 * Used by checks that run after parsing (e.g. the layout).  Returns
 * MC_CONFIG_EX so callers can `return mc_config_error(...)`.
 */
int mc_config_error(const struct mc_config *cfg, enum mc_config_key key,
    char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#endif /* MC_CONFIG_H */
