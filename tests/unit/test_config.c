/*
 * test_config.c - unit tests for the TOML-subset configuration reader
 * (supervisor/config.c, contract in supervisor/mc_config.h).
 *
 * Most tests parse small in-memory snippets named "t.toml" so that error
 * messages can be compared exactly; others load the shipped files under
 * MC_SOURCE_DIR (the repository root, a compile definition) and every
 * file in tests/config/bad, whose first line says which line and key the
 * error must name.
 */
#define _GNU_SOURCE

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mc_config.h"

#ifndef MC_SOURCE_DIR
#error "MC_SOURCE_DIR must be defined to the repository root"
#endif

#define MIB (1ull << 20)
#define GIB (1ull << 30)

static struct mc_config cfg;
static char err[MC_CONFIG_ERR_MAX];

/* Parse `text` as "t.toml". */
static int parse(const char *text)
{
	memset(err, 0, sizeof(err));
	return mc_config_parse("t.toml", text, strlen(text), &cfg, err, sizeof(err));
}

/*
 * Parse must fail with 78 and a message starting "t.toml:<line>: <key>: "
 * that contains `what`, on one line.
 */
static void expect_fail(const char *text, unsigned line, const char *key,
    const char *what)
{
	char prefix[256];
	int rc = parse(text);

	snprintf(prefix, sizeof(prefix), "t.toml:%u: %s: ", line, key);
	cr_assert_eq(rc, MC_CONFIG_EX, "expected failure for:\n%s\n(err: %s)", text, err);
	cr_assert(strncmp(err, prefix, strlen(prefix)) == 0,
	    "expected prefix '%s', got '%s'", prefix, err);
	cr_assert(strstr(err, what) != NULL, "expected '%s' in '%s'", what, err);
	cr_assert(strchr(err, '\n') == NULL, "message is not one line: '%s'", err);
}

static void expect_ok(const char *text)
{
	int rc = parse(text);

	cr_assert_eq(rc, 0, "unexpected failure: %s\nfor:\n%s", err, text);
}

/* A scratch directory for files that must exist on disk. */
static char tmpdir[64];

static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mc_test_config.XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
	char cmd[128];

	if (tmpdir[0] == '\0')
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

static void write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
	cr_assert_eq(fwrite(data, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
}

/* ------------------------------------------------------------------ */
/* Defaults and key names                                               */

Test(defaults, seed_values)
{
	mc_config_defaults(&cfg);
	cr_assert_str_eq(cfg.source, "");
	cr_assert_str_eq(cfg.instance, "default");
	cr_assert_eq(cfg.max_connections, 10000);
	cr_assert_eq(cfg.message_buffer_size, 1048576);
	cr_assert_eq(cfg.state_cache_size, 2147483648ull);
	cr_assert_eq(cfg.model_update_interval, 300);
	cr_assert_eq(cfg.batch_size, 1024);
	cr_assert_float_eq(cfg.learning_rate, 0.001, 1e-15);
	cr_assert_eq(cfg.shared_memory_size, 4294967296ull);
	cr_assert_eq(cfg.ring_buffer_size, 1073741824ull);
	cr_assert_eq(cfg.message_queue_size, 1073741824ull);
	cr_assert_eq(cfg.max_message_size, 1048576);
	cr_assert_eq(cfg.max_clients, 16);
	cr_assert_eq(cfg.core_protocol, 1073741824ull);
	cr_assert_eq(cfg.core_state, 1073741824ull);
	cr_assert_eq(cfg.core_routing, 1073741824ull);
	cr_assert_eq(cfg.learning_models, 1610612736ull);
	cr_assert_eq(cfg.learning_training, 1073741824ull);
	cr_assert_eq(cfg.learning_features, 536870912ull);
	cr_assert_eq(cfg.storage_active_models, 1073741824ull);
	cr_assert_eq(cfg.storage_history, 1073741824ull);
	cr_assert_str_eq(cfg.rocksdb_path, "data");
	cr_assert_eq(cfg.checkpoint_interval, 3600);
	cr_assert_str_eq(cfg.compression, "lz4");
	cr_assert_eq(cfg.restart_backoff_ms, 100);
	cr_assert_eq(cfg.restart_backoff_max_ms, 5000);
	cr_assert_eq(cfg.crash_loop_restarts, 5);
	cr_assert_eq(cfg.crash_loop_window_ms, 10000);
	cr_assert_eq(cfg.heartbeat_timeout_ms, 5000);
	cr_assert_eq(cfg.shutdown_timeout_ms, 3000);
	cr_assert_str_eq(cfg.log_level, "info");
	for (int k = 0; k < MC_CFG_NKEYS; k++)
		cr_assert_eq(cfg.line[k], 0);
}

Test(defaults, regions_sum_to_12_gib)
{
	mc_config_defaults(&cfg);
	cr_assert_eq(cfg.shared_memory_size,
	    cfg.ring_buffer_size + cfg.state_cache_size + cfg.message_queue_size);
	cr_assert_eq(cfg.shared_memory_size + cfg.core_protocol + cfg.core_state +
	    cfg.core_routing + cfg.learning_models + cfg.learning_training +
	    cfg.learning_features + cfg.storage_active_models + cfg.storage_history,
	    12 * GIB);
}

Test(defaults, key_names)
{
	cr_assert_str_eq(mc_config_key_name(MC_CFG_INSTANCE), "instance");
	cr_assert_str_eq(mc_config_key_name(MC_CFG_CORE_MAX_CONNECTIONS), "core.max_connections");
	cr_assert_str_eq(mc_config_key_name(MC_CFG_MEMORY_RING_BUFFER_SIZE), "memory.ring_buffer_size");
	cr_assert_str_eq(mc_config_key_name(MC_CFG_REGIONS_STORAGE_ACTIVE_MODELS),
	    "regions.storage.active_models");
	cr_assert_str_eq(mc_config_key_name(MC_CFG_LOG_LEVEL), "log.level");
	cr_assert_str_eq(mc_config_key_name(MC_CFG_NKEYS), "-");
	for (int a = 0; a < MC_CFG_NKEYS; a++) {
		cr_assert_not_null(mc_config_key_name((enum mc_config_key)a));
		for (int b = a + 1; b < MC_CFG_NKEYS; b++)
			cr_assert_str_neq(mc_config_key_name((enum mc_config_key)a),
			    mc_config_key_name((enum mc_config_key)b));
	}
}

/*
 * Every key, set to a non-default value, lands in its own struct field and
 * records its line: checks the schema's name -> enum -> offsetof mapping
 * independently of config.c's table.
 */
#define FIELD(f) offsetof(struct mc_config, f), sizeof(((struct mc_config *)0)->f)
Test(defaults, every_key_maps_to_its_field)
{
	static const struct {
		enum mc_config_key key;
		const char *text;       /* the key's line is always line 2 */
		size_t off, size;
	} cases[] = {
		{ MC_CFG_INSTANCE, "\ninstance = \"other\"\n", FIELD(instance) },
		{ MC_CFG_CORE_MAX_CONNECTIONS, "[core]\nmax_connections = 7\n", FIELD(max_connections) },
		{ MC_CFG_CORE_MESSAGE_BUFFER_SIZE, "[core]\nmessage_buffer_size = 8192\n", FIELD(message_buffer_size) },
		{ MC_CFG_CORE_STATE_CACHE_SIZE, "[core]\nstate_cache_size = 1073741824\n"
		    "[memory]\nshared_memory_size = 3221225472\n", FIELD(state_cache_size) },
		{ MC_CFG_LEARNING_MODEL_UPDATE_INTERVAL, "[learning]\nmodel_update_interval = 60\n", FIELD(model_update_interval) },
		{ MC_CFG_LEARNING_BATCH_SIZE, "[learning]\nbatch_size = 64\n", FIELD(batch_size) },
		{ MC_CFG_LEARNING_LEARNING_RATE, "[learning]\nlearning_rate = 0.5\n", FIELD(learning_rate) },
		{ MC_CFG_MEMORY_SHARED_MEMORY_SIZE, "[memory]\nshared_memory_size = 3221225472\n"
		    "ring_buffer_size = 8192\nmessage_queue_size = 1073733632\n", FIELD(shared_memory_size) },
		{ MC_CFG_MEMORY_RING_BUFFER_SIZE, "[memory]\nring_buffer_size = 8192\n"
		    "message_queue_size = 2147475456\n", FIELD(ring_buffer_size) },
		{ MC_CFG_MEMORY_MESSAGE_QUEUE_SIZE, "[memory]\nmessage_queue_size = 8192\n"
		    "ring_buffer_size = 2147475456\n", FIELD(message_queue_size) },
		{ MC_CFG_MEMORY_MAX_MESSAGE_SIZE, "[memory]\nmax_message_size = 4096\n", FIELD(max_message_size) },
		{ MC_CFG_MEMORY_MAX_CLIENTS, "[memory]\nmax_clients = 2\n", FIELD(max_clients) },
		{ MC_CFG_REGIONS_CORE_PROTOCOL, "[regions]\ncore.protocol = 4096\n", FIELD(core_protocol) },
		{ MC_CFG_REGIONS_CORE_STATE, "[regions]\ncore.state = 4096\n", FIELD(core_state) },
		{ MC_CFG_REGIONS_CORE_ROUTING, "[regions]\ncore.routing = 4096\n", FIELD(core_routing) },
		{ MC_CFG_REGIONS_LEARNING_MODELS, "[regions.learning]\nmodels = 4096\n", FIELD(learning_models) },
		{ MC_CFG_REGIONS_LEARNING_TRAINING, "[regions.learning]\ntraining = 4096\n", FIELD(learning_training) },
		{ MC_CFG_REGIONS_LEARNING_FEATURES, "[regions]\nlearning.features = 4096\n", FIELD(learning_features) },
		{ MC_CFG_REGIONS_STORAGE_ACTIVE_MODELS, "[regions.storage]\nactive_models = 4096\n", FIELD(storage_active_models) },
		{ MC_CFG_REGIONS_STORAGE_HISTORY, "[regions]\nstorage.history = 4096\n", FIELD(storage_history) },
		{ MC_CFG_PERSISTENCE_ROCKSDB_PATH, "[persistence]\nrocksdb_path = \"db\"\n", FIELD(rocksdb_path) },
		{ MC_CFG_PERSISTENCE_CHECKPOINT_INTERVAL, "[persistence]\ncheckpoint_interval = 5\n", FIELD(checkpoint_interval) },
		{ MC_CFG_PERSISTENCE_COMPRESSION, "[persistence]\ncompression = \"zstd\"\n", FIELD(compression) },
		{ MC_CFG_SUPERVISOR_RESTART_BACKOFF_MS, "[supervisor]\nrestart_backoff_ms = 10\n", FIELD(restart_backoff_ms) },
		{ MC_CFG_SUPERVISOR_RESTART_BACKOFF_MAX_MS, "[supervisor]\nrestart_backoff_max_ms = 100\n", FIELD(restart_backoff_max_ms) },
		{ MC_CFG_SUPERVISOR_CRASH_LOOP_RESTARTS, "[supervisor]\ncrash_loop_restarts = 2\n", FIELD(crash_loop_restarts) },
		{ MC_CFG_SUPERVISOR_CRASH_LOOP_WINDOW_MS, "[supervisor]\ncrash_loop_window_ms = 2\n", FIELD(crash_loop_window_ms) },
		{ MC_CFG_SUPERVISOR_HEARTBEAT_TIMEOUT_MS, "[supervisor]\nheartbeat_timeout_ms = 200\n", FIELD(heartbeat_timeout_ms) },
		{ MC_CFG_SUPERVISOR_SHUTDOWN_TIMEOUT_MS, "[supervisor]\nshutdown_timeout_ms = 200\n", FIELD(shutdown_timeout_ms) },
		{ MC_CFG_LOG_LEVEL, "[log]\nlevel = \"debug\"\n", FIELD(log_level) },
		{ MC_CFG_STATE_MAX_KEY_SIZE, "[state]\nmax_key_size = 64\n", FIELD(state_max_key_size) },
		{ MC_CFG_STATE_MAX_VALUE_SIZE, "[state]\nmax_value_size = 1000\n", FIELD(state_max_value_size) },
		{ MC_CFG_PROTOCOL_LISTEN, "[protocol]\nlisten = \"127.0.0.1:4000\"\n", FIELD(protocol_listen) },
		{ MC_CFG_PROTOCOL_PATH, "[protocol]\npath = \"/rpc\"\n", FIELD(protocol_path) },
		{ MC_CFG_PROTOCOL_CONFORMANCE_FIXTURES, "[protocol]\nconformance_fixtures = true\n", FIELD(protocol_conformance_fixtures) },
		{ MC_CFG_PROTOCOL_IDLE_TIMEOUT_MS, "[protocol]\nidle_timeout_ms = 500\n", FIELD(protocol_idle_timeout_ms) },
		{ MC_CFG_PROTOCOL_REQUEST_TIMEOUT_MS, "[protocol]\nrequest_timeout_ms = 500\n", FIELD(protocol_request_timeout_ms) },
		{ MC_CFG_PROTOCOL_MAX_HEADER_SIZE, "[protocol]\nmax_header_size = 4096\n", FIELD(protocol_max_header_size) },
		{ MC_CFG_MONITOR_LISTEN, "[monitor]\nlisten = \"[::1]:9000\"\n", FIELD(monitor_listen) },
		{ MC_CFG_MONITOR_SNAPSHOT_INTERVAL, "[monitor]\nsnapshot_interval = 3\n", FIELD(monitor_snapshot_interval) },
		{ MC_CFG_PERSISTENCE_SYNC, "[persistence]\nsync = \"none\"\n", FIELD(persistence_sync) },
		{ MC_CFG_PERSISTENCE_CHECKPOINT_KEEP, "[persistence]\ncheckpoint_keep = 2\n", FIELD(persistence_checkpoint_keep) },
		{ MC_CFG_PERSISTENCE_BATCH_MAX, "[persistence]\nbatch_max = 16\n", FIELD(persistence_batch_max) },
		{ MC_CFG_PERSISTENCE_GROUP_COMMIT_MS, "[persistence]\ngroup_commit_ms = 0\n", FIELD(persistence_group_commit_ms) },
	};
	struct mc_config def;

	cr_assert_eq(sizeof(cases) / sizeof(cases[0]), MC_CFG_NKEYS);
	mc_config_defaults(&def);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *name = mc_config_key_name(cases[i].key);

		cr_assert_eq(cases[i].key, (enum mc_config_key)i, "cases out of enum order");
		/* Name it "x.toml": no directory, so rocksdb_path is stored as written. */
		cr_assert_eq(mc_config_parse("x.toml", cases[i].text, strlen(cases[i].text),
		    &cfg, err, sizeof(err)), 0, "%s: %s", name, err);
		cr_assert_eq(cfg.line[cases[i].key], 2, "%s: line %u", name, cfg.line[cases[i].key]);
		cr_assert(memcmp((char *)&cfg + cases[i].off, (char *)&def + cases[i].off,
		    cases[i].size) != 0, "%s did not change its field", name);
	}
}

/* ------------------------------------------------------------------ */
/* The shipped files                                                    */

Test(shipped, default_config)
{
	const char *path = MC_SOURCE_DIR "/config/mcpcore.toml";
	struct mc_config def;
	int rc;

	rc = mc_config_load(path, &cfg, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_str_eq(cfg.source, path);
	/* Every key is present, at its default. */
	for (int k = 0; k < MC_CFG_NKEYS; k++)
		cr_assert_neq(cfg.line[k], 0, "key %s missing from mcpcore.toml",
		    mc_config_key_name((enum mc_config_key)k));
	cr_assert_eq(cfg.line[MC_CFG_INSTANCE] < cfg.line[MC_CFG_CORE_MAX_CONNECTIONS], 1);
	mc_config_defaults(&def);
	cr_assert_str_eq(cfg.rocksdb_path, MC_SOURCE_DIR "/config/data");
	/* Compare everything else bytewise with the defaults. */
	memcpy(def.source, cfg.source, sizeof(def.source));
	memcpy(def.rocksdb_path, cfg.rocksdb_path, sizeof(def.rocksdb_path));
	memcpy(def.line, cfg.line, sizeof(def.line));
	cr_assert(memcmp(&def, &cfg, sizeof(cfg)) == 0,
	    "mcpcore.toml differs from the built-in defaults");
}

/* The container's file: the defaults but for where it listens and stores. */
Test(shipped, container_config)
{
	const char *path = MC_SOURCE_DIR "/config/container.toml";
	struct mc_config def;
	int rc;

	rc = mc_config_load(path, &cfg, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_str_eq(cfg.protocol_listen, "0.0.0.0:3000");
	cr_assert_str_eq(cfg.monitor_listen, "0.0.0.0:9464");
	cr_assert_str_eq(cfg.rocksdb_path, "/var/lib/mcpcore/data");
	mc_config_defaults(&def);
	memcpy(def.source, cfg.source, sizeof(def.source));
	memcpy(def.rocksdb_path, cfg.rocksdb_path, sizeof(def.rocksdb_path));
	memcpy(def.protocol_listen, cfg.protocol_listen, sizeof(def.protocol_listen));
	memcpy(def.monitor_listen, cfg.monitor_listen, sizeof(def.monitor_listen));
	memcpy(def.line, cfg.line, sizeof(def.line));
	cr_assert(memcmp(&def, &cfg, sizeof(cfg)) == 0,
	    "container.toml changes more than the listeners and the store path");
}

Test(shipped, test_config)
{
	const char *path = MC_SOURCE_DIR "/config/test.toml";
	int rc;

	rc = mc_config_load(path, &cfg, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_str_eq(cfg.instance, "test");
	cr_assert_eq(cfg.state_cache_size, 8 * MIB);
	cr_assert_eq(cfg.ring_buffer_size, 4 * MIB);
	cr_assert_eq(cfg.message_queue_size, 16 * MIB);
	cr_assert_eq(cfg.shared_memory_size, 28 * MIB);
	cr_assert_eq(cfg.max_message_size, 256 * 1024);
	cr_assert_eq(cfg.core_protocol, MIB);
	cr_assert_eq(cfg.core_state, MIB);
	cr_assert_eq(cfg.core_routing, MIB);
	cr_assert_eq(cfg.learning_models, MIB);
	cr_assert_eq(cfg.learning_training, MIB);
	cr_assert_eq(cfg.learning_features, MIB);
	cr_assert_eq(cfg.storage_active_models, MIB);
	cr_assert_eq(cfg.storage_history, MIB);
	cr_assert_eq(cfg.max_clients, 4);
	cr_assert_eq(cfg.restart_backoff_ms, 100);
	cr_assert_str_eq(cfg.rocksdb_path, MC_SOURCE_DIR "/config/data");
	/* Defaults where the file is silent. */
	cr_assert_eq(cfg.max_connections, 10000);
	cr_assert_eq(cfg.line[MC_CFG_CORE_MAX_CONNECTIONS], 0);
	cr_assert_str_eq(cfg.compression, "lz4");
	cr_assert_str_eq(cfg.log_level, "info");
	cr_assert_eq(cfg.line[MC_CFG_INSTANCE], 8);
}

/* ------------------------------------------------------------------ */
/* Values                                                               */

Test(values, integers)
{
	expect_ok("[core]\nmax_connections = 42\n");
	cr_assert_eq(cfg.max_connections, 42);
	expect_ok("[core]\nmax_connections = +42\n");
	cr_assert_eq(cfg.max_connections, 42);
	expect_ok("[core]\nmax_connections = 1000000\n");
	cr_assert_eq(cfg.max_connections, 1000000);
	expect_ok("[core]\nmax_connections=7\n");
	cr_assert_eq(cfg.max_connections, 7);
	expect_ok("[core]\n\tmax_connections\t=\t8\t\n");
	cr_assert_eq(cfg.max_connections, 8);
}

Test(values, underscores_in_integers)
{
	expect_ok("[core]\nmax_connections = 1_000_000\n");
	cr_assert_eq(cfg.max_connections, 1000000);
	expect_ok("[core]\nmax_connections = 1_2_3\n");
	cr_assert_eq(cfg.max_connections, 123);
	expect_ok("[memory]\nmax_message_size = 268_435_456\n");
	cr_assert_eq(cfg.max_message_size, 256 * MIB);
}

Test(values, floats)
{
	static const struct { const char *text; double want; } cases[] = {
		{ "0.5", 0.5 }, { "1e-3", 0.001 }, { "1E-3", 0.001 },
		{ "5e-1", 0.5 }, { "0.000_1", 0.0001 }, { "+0.25", 0.25 },
		{ "1.0", 1.0 }, { "2.5e-1", 0.25 }, { "1e0", 1.0 },
		{ "1", 1.0 },           /* an integer where a float is expected */
		{ "0.001", 0.001 }, { "1_0e-2", 0.1 }, { "1e+0", 1.0 },
	};
	char text[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "[learning]\nlearning_rate = %s\n", cases[i].text);
		expect_ok(text);
		cr_assert_float_eq(cfg.learning_rate, cases[i].want, 1e-15, "%s", cases[i].text);
	}
}

Test(values, booleans_parse_but_no_key_takes_one)
{
	expect_fail("[core]\nmax_connections = true\n", 2, "core.max_connections",
	    "expected integer, got boolean");
	expect_fail("instance = false\n", 1, "instance", "expected string, got boolean");
}

Test(values, strings_and_escapes)
{
	expect_ok("instance = \"a-b_C9\"\n");
	cr_assert_str_eq(cfg.instance, "a-b_C9");
	expect_ok("instance = \"x\\u0041y\"\n");
	cr_assert_str_eq(cfg.instance, "xAy");
	expect_ok("[persistence]\nrocksdb_path = \"/\\u00C9\\u00e9\\uFFFD\"\n");
	cr_assert_str_eq(cfg.rocksdb_path, "/\xc3\x89\xc3\xa9\xef\xbf\xbd");
	expect_ok("[persistence]\nrocksdb_path = \"/q\\\"b\\\\s\\tt\\nn\\rr\"\n");
	cr_assert_str_eq(cfg.rocksdb_path, "/q\"b\\s\tt\nn\rr");
	expect_ok("[persistence]\nrocksdb_path = \"/caf\\u00e9/\\u20ac/\xe2\x82\xac\"\n");
	cr_assert_str_eq(cfg.rocksdb_path, "/caf\xc3\xa9/\xe2\x82\xac/\xe2\x82\xac");
	expect_ok("[persistence]\ncompression = \"z\\u0073td\"\n");
	cr_assert_str_eq(cfg.compression, "zstd");
	expect_ok("[persistence]\nrocksdb_path = \"/a # not a comment\" # a comment\n");
	cr_assert_str_eq(cfg.rocksdb_path, "/a # not a comment");
}

Test(values, every_choice)
{
	static const char *const comp[] = { "lz4", "zstd", "none" };
	static const char *const level[] = { "debug", "info", "warn", "error" };
	char text[128];

	for (size_t i = 0; i < 3; i++) {
		snprintf(text, sizeof(text), "[persistence]\ncompression = \"%s\"\n", comp[i]);
		expect_ok(text);
		cr_assert_str_eq(cfg.compression, comp[i]);
	}
	for (size_t i = 0; i < 4; i++) {
		snprintf(text, sizeof(text), "[log]\nlevel = \"%s\"\n", level[i]);
		expect_ok(text);
		cr_assert_str_eq(cfg.log_level, level[i]);
	}
}

Test(values, integer_bounds_inclusive)
{
	expect_ok("[memory]\nmax_clients = 1\n");
	cr_assert_eq(cfg.max_clients, 1);
	expect_ok("[memory]\nmax_clients = 56\n");
	cr_assert_eq(cfg.max_clients, 56);
	expect_ok("[memory]\nmax_message_size = 64\n");
	cr_assert_eq(cfg.max_message_size, 64);
	expect_ok("[learning]\nmodel_update_interval = 31536000\nbatch_size = 16777216\n");
	cr_assert_eq(cfg.model_update_interval, 31536000);
	cr_assert_eq(cfg.batch_size, 16777216);
	expect_ok("[supervisor]\nheartbeat_timeout_ms = 100\nshutdown_timeout_ms = 60000\n"
	    "restart_backoff_ms = 60000\nrestart_backoff_max_ms = 600000\n"
	    "crash_loop_restarts = 1000\ncrash_loop_window_ms = 3600000\n");
	cr_assert_eq(cfg.restart_backoff_max_ms, 600000);
	cr_assert_eq(cfg.crash_loop_window_ms, 3600000);
	expect_ok("[core]\nmessage_buffer_size = 1073741824\n");
	cr_assert_eq(cfg.message_buffer_size, GIB);
}

Test(values, big_sizes)
{
	/* 1 TiB is the largest region. */
	expect_ok("[regions]\nstorage.history = 1_099_511_627_776\n");
	cr_assert_eq(cfg.storage_history, 1ull << 40);
	/* 4096 is the smallest, and shared_memory_size follows the sum. */
	expect_ok("[core]\nstate_cache_size = 4096\n[memory]\n"
	    "shared_memory_size = 2147487744\nring_buffer_size = 1073741824\n"
	    "message_queue_size = 1073741824\n");
	cr_assert_eq(cfg.state_cache_size, 4096);
	cr_assert_eq(cfg.shared_memory_size, 2147487744ull);
}

Test(values, line_numbers_recorded)
{
	expect_ok("# header\n\ninstance = \"x\"\n[core]\n\nmax_connections = 3\n"
	    "[regions]\ncore.state = 4096\n");
	cr_assert_eq(cfg.line[MC_CFG_INSTANCE], 3);
	cr_assert_eq(cfg.line[MC_CFG_CORE_MAX_CONNECTIONS], 6);
	cr_assert_eq(cfg.line[MC_CFG_REGIONS_CORE_STATE], 8);
	cr_assert_eq(cfg.line[MC_CFG_CORE_STATE_CACHE_SIZE], 0);
	cr_assert_str_eq(cfg.source, "t.toml");
}

/* ------------------------------------------------------------------ */
/* Layout of the file                                                   */

Test(syntax, comments_everywhere)
{
	expect_ok("# leading comment\n"
	    "   # indented comment\n"
	    "instance = \"c\" # after a value\n"
	    "[core] # after a header\n"
	    "\t# tab-indented comment\n"
	    "max_connections = 5# no space before it\n"
	    "#\n"
	    "[regions]\n"
	    "core.protocol = 4096 # ### several hashes\n"
	    "# trailing comment without newline");
	cr_assert_str_eq(cfg.instance, "c");
	cr_assert_eq(cfg.max_connections, 5);
	cr_assert_eq(cfg.core_protocol, 4096);
}

Test(syntax, comment_only_file_gives_defaults)
{
	expect_ok("# nothing but a comment\n");
	cr_assert_str_eq(cfg.instance, "default");
	cr_assert_eq(cfg.max_connections, 10000);
}

Test(syntax, blank_lines_crlf_and_no_final_newline)
{
	expect_ok("\r\n  \r\n[core]\r\nmax_connections = 9\r\n\t\r\n[log]\r\nlevel = \"warn\"");
	cr_assert_eq(cfg.max_connections, 9);
	cr_assert_str_eq(cfg.log_level, "warn");
	cr_assert_eq(cfg.line[MC_CFG_LOG_LEVEL], 7);
}

Test(syntax, byte_order_mark_skipped)
{
	expect_ok("\xef\xbb\xbfinstance = \"bom\"\n");
	cr_assert_str_eq(cfg.instance, "bom");
}

Test(syntax, whitespace_in_headers_and_keys)
{
	expect_ok("[ core ]\nmax_connections = 4\n[ regions . core ]\nprotocol = 8192\n");
	cr_assert_eq(cfg.max_connections, 4);
	cr_assert_eq(cfg.core_protocol, 8192);
	expect_ok("[regions]\ncore . state = 8192\n");
	cr_assert_eq(cfg.core_state, 8192);
}

Test(syntax, dotted_keys_in_regions)
{
	expect_ok("[regions]\ncore.protocol = 4096\nlearning.models = 8192\n"
	    "storage.active_models = 12288\ncore.routing = 16384\n");
	cr_assert_eq(cfg.core_protocol, 4096);
	cr_assert_eq(cfg.learning_models, 8192);
	cr_assert_eq(cfg.storage_active_models, 12288);
	cr_assert_eq(cfg.core_routing, 16384);
	cr_assert_eq(cfg.core_state, GIB);     /* untouched: default */
}

Test(syntax, sub_table_headers)
{
	expect_ok("[regions.core]\nprotocol = 4096\nstate = 8192\n"
	    "[regions.storage]\nhistory = 12288\n[regions]\nlearning.features = 16384\n");
	cr_assert_eq(cfg.core_protocol, 4096);
	cr_assert_eq(cfg.core_state, 8192);
	cr_assert_eq(cfg.storage_history, 12288);
	cr_assert_eq(cfg.learning_features, 16384);
}

Test(syntax, top_level_dotted_keys)
{
	expect_ok("instance = \"d\"\ncore.max_connections = 77\nregions.core.state = 4096\n"
	    "[memory]\nmax_clients = 3\n");
	cr_assert_eq(cfg.max_connections, 77);
	cr_assert_eq(cfg.core_state, 4096);
	cr_assert_eq(cfg.max_clients, 3);
	cr_assert_eq(cfg.line[MC_CFG_REGIONS_CORE_STATE], 3);
}

Test(syntax, dotted_key_into_header_table)
{
	expect_fail("[regions.core]\nprotocol = 4096\n[regions]\ncore.state = 4096\n",
	    4, "regions.core.state", "table [regions.core] was defined on line 1");
}

Test(syntax, header_for_table_made_by_dotted_keys)
{
	expect_fail("[regions]\ncore.protocol = 4096\n[regions.core]\nstate = 4096\n",
	    3, "regions.core", "already defined by dotted keys on line 2");
	expect_fail("core.max_connections = 5\n[core]\n", 2, "core",
	    "duplicate table [core]");
}

/* ------------------------------------------------------------------ */
/* File-level errors (mc_config_load)                                   */

Test(file, missing)
{
	int rc = mc_config_load("config/x.toml", &cfg, err, sizeof(err));

	cr_assert_eq(rc, MC_CONFIG_EX);
	cr_assert_str_eq(err, "config/x.toml:0: -: cannot open: No such file or directory");
}

Test(file, not_a_directory_component)
{
	int rc = mc_config_load(MC_SOURCE_DIR "/config/mcpcore.toml/x", &cfg, err, sizeof(err));

	cr_assert_eq(rc, MC_CONFIG_EX);
	cr_assert_str_eq(err, MC_SOURCE_DIR "/config/mcpcore.toml/x:0: -: cannot open: Not a directory");
}

Test(file, unreadable, .init = make_tmpdir, .fini = remove_tmpdir)
{
	char path[128];
	bool readable;
	int rc;

	snprintf(path, sizeof(path), "%s/secret.toml", tmpdir);
	write_file(path, "instance = \"x\"\n", 15);
	cr_assert_eq(chmod(path, 0), 0);
	/* Root reads anything; drop the effective uid for the open (each
	 * Criterion test runs in its own process, and the real uid stays 0 so
	 * it can be restored for the cleanup). */
	if (geteuid() == 0 && seteuid(65534) != 0)
		cr_skip_test("running as root and cannot seteuid(65534): %s", strerror(errno));
	readable = faccessat(AT_FDCWD, path, R_OK, AT_EACCESS) == 0;
	rc = readable ? 0 : mc_config_load(path, &cfg, err, sizeof(err));
	if (getuid() == 0)      /* before any assert or skip: .fini cleans up */
		cr_assert_eq(seteuid(0), 0);
	if (readable)
		cr_skip_test("file is still readable: cannot test EACCES");
	cr_assert_eq(rc, MC_CONFIG_EX);
	cr_assert(strstr(err, ":0: -: cannot open: Permission denied") != NULL, "%s", err);
}

Test(file, symlink_loop, .init = make_tmpdir, .fini = remove_tmpdir)
{
	char path[128], want[256];
	int rc;

	/* Another open() failure that works even as root. */
	snprintf(path, sizeof(path), "%s/loop.toml", tmpdir);
	cr_assert_eq(symlink(path, path), 0);
	rc = mc_config_load(path, &cfg, err, sizeof(err));
	cr_assert_eq(rc, MC_CONFIG_EX);
	snprintf(want, sizeof(want), "%s:0: -: cannot open: %s", path, strerror(ELOOP));
	cr_assert_str_eq(err, want);
}

Test(file, directory)
{
	int rc = mc_config_load(MC_SOURCE_DIR "/config", &cfg, err, sizeof(err));

	cr_assert_eq(rc, MC_CONFIG_EX);
	cr_assert_str_eq(err, MC_SOURCE_DIR "/config:0: -: is a directory, not a config file");
}

Test(file, not_regular)
{
	int rc = mc_config_load("/dev/null", &cfg, err, sizeof(err));

	cr_assert_eq(rc, MC_CONFIG_EX);
	cr_assert_str_eq(err, "/dev/null:0: -: not a regular file");
}

Test(file, empty, .init = make_tmpdir, .fini = remove_tmpdir)
{
	char path[128], want[256];
	int rc;

	snprintf(path, sizeof(path), "%s/empty.toml", tmpdir);
	write_file(path, "", 0);
	rc = mc_config_load(path, &cfg, err, sizeof(err));
	cr_assert_eq(rc, MC_CONFIG_EX);
	snprintf(want, sizeof(want), "%s:0: -: file is empty", path);
	cr_assert_str_eq(err, want);

	/* Whitespace only counts as empty too. */
	expect_fail("", 0, "-", "file is empty");
	expect_fail("  \n\t\r\n\n", 0, "-", "file is empty");
}

Test(file, oversized, .init = make_tmpdir, .fini = remove_tmpdir)
{
	size_t max = 1u << 20;
	char *big = malloc(max + 2);
	char path[128], want[256];
	int rc;

	cr_assert_not_null(big);
	/* Exactly 1 MiB of comment lines is still accepted. */
	for (size_t i = 0; i < max; i++)
		big[i] = (i % 64 == 63) ? '\n' : (i % 64 == 0 ? '#' : 'x');
	snprintf(path, sizeof(path), "%s/big.toml", tmpdir);
	write_file(path, big, max);
	rc = mc_config_load(path, &cfg, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);

	big[max] = '\n';
	write_file(path, big, max + 1);
	rc = mc_config_load(path, &cfg, err, sizeof(err));
	cr_assert_eq(rc, MC_CONFIG_EX);
	snprintf(want, sizeof(want), "%s:0: -: file too large (1048577 bytes, max 1048576)", path);
	cr_assert_str_eq(err, want);

	rc = mc_config_parse("t.toml", big, max + 1, &cfg, err, sizeof(err));
	cr_assert_eq(rc, MC_CONFIG_EX);
	cr_assert_str_eq(err, "t.toml:0: -: file too large (1048577 bytes, max 1048576)");
	free(big);
}

Test(file, load_resolves_against_file_dir, .init = make_tmpdir, .fini = remove_tmpdir)
{
	char path[128], want[256];
	int rc;

	snprintf(path, sizeof(path), "%s/my.toml", tmpdir);
	write_file(path, "[persistence]\nrocksdb_path = \"db/main\"\n", 39);
	rc = mc_config_load(path, &cfg, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);
	snprintf(want, sizeof(want), "%s/db/main", tmpdir);
	cr_assert_str_eq(cfg.rocksdb_path, want);
	cr_assert_str_eq(cfg.source, path);
	cr_assert_eq(cfg.line[MC_CFG_PERSISTENCE_ROCKSDB_PATH], 2);
}

/* ------------------------------------------------------------------ */
/* Bytes the file may not contain                                       */

Test(bytes, nul)
{
	static const char text[] = "instance = \"a\"\n# ok\n[core]\x00\n";
	int rc = mc_config_parse("t.toml", text, sizeof(text) - 1, &cfg, err, sizeof(err));

	cr_assert_eq(rc, MC_CONFIG_EX);
	cr_assert_str_eq(err, "t.toml:3: -: NUL byte in file (at byte offset 26)");
}

Test(bytes, invalid_utf8)
{
	expect_fail("# ok\n# caf\xff\n", 2, "-", "invalid UTF-8 (byte 0xff");
	expect_fail("instance = \"\xc0\x80\"\n", 1, "-", "invalid UTF-8");     /* overlong */
	expect_fail("#\n#\n# \xed\xa0\x80\n", 3, "-", "invalid UTF-8");       /* surrogate */
	expect_fail("# \xf4\x90\x80\x80\n", 1, "-", "invalid UTF-8");         /* > U+10FFFF */
	expect_fail("# \xe2\x82", 1, "-", "invalid UTF-8");                   /* truncated */
	expect_fail("# \x80\n", 1, "-", "invalid UTF-8");                     /* stray continuation */
	expect_fail("# \xe0\x80\x80\n", 1, "-", "invalid UTF-8");             /* overlong, 3 bytes */
	expect_fail("# \xf0\x80\x80\x80\n", 1, "-", "invalid UTF-8");         /* overlong, 4 bytes */
	expect_ok("# \xe0\xa0\x80 \xed\x9f\xbf \xf4\x8f\xbf\xbf\n");         /* edges that are valid */
	expect_ok("# caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n");
}

Test(bytes, control_characters)
{
	expect_fail("[core]\nmax_connections = 1\x01\n", 2, "-", "control character 0x01");
	expect_fail("# a\x7f\n", 1, "-", "control character 0x7f");
	expect_fail("[core]\rmax_connections = 1\n", 1, "-", "carriage return not followed by a newline");
}

/* ------------------------------------------------------------------ */
/* Syntax errors                                                        */

Test(syntax_errors, missing_equals)
{
	expect_fail("[core]\nmax_connections 5\n", 2, "core.max_connections",
	    "expected '=' after the key, found '5'");
	expect_fail("[core]\n\nmax_connections\n", 3, "core.max_connections",
	    "missing '=' after the key");
	expect_fail("[core]\nmax_connections # = 5\n", 2, "core.max_connections",
	    "missing '=' after the key");
	expect_fail("= 5\n", 1, "-", "expected a key, found '= 5'");
}

Test(syntax_errors, missing_value)
{
	expect_fail("[core]\nmax_connections =\n", 2, "core.max_connections",
	    "missing value after '='");
	expect_fail("[core]\nmax_connections = # none\n", 2, "core.max_connections",
	    "missing value after '='");
}

Test(syntax_errors, bad_table_header)
{
	expect_fail("[core\n", 1, "-", "bad table header: missing ']'");
	expect_fail("[\n", 1, "-", "expected a table name");
	expect_fail("\n[]\n", 2, "-", "expected a table name, found ']'");
	expect_fail("[core.]\n", 1, "-", "empty part in dotted table name 'core.'");
	expect_fail("[core x]\n", 1, "-", "bad table header: expected ']', found 'x]'");
	expect_fail("[core] x = 1\n", 1, "core", "unexpected text after table header: 'x = 1'");
	expect_fail("[\"core\"]\n", 1, "-", "quoted keys are not supported by mcpcore's TOML subset");
	expect_fail("[[core]]\n", 1, "-", "arrays of tables ([[...]]) are not supported by mcpcore's TOML subset");
}

Test(syntax_errors, bad_keys)
{
	expect_fail("\"instance\" = \"x\"\n", 1, "-",
	    "quoted keys are not supported by mcpcore's TOML subset");
	expect_fail("[regions]\ncore..state = 4096\n", 2, "-", "empty part in dotted key 'core.'");
	expect_fail("inst@nce = \"x\"\n", 1, "inst", "expected '=' after the key, found '@nce");
}

Test(syntax_errors, unterminated_string)
{
	expect_fail("\ninstance = \"abc\n", 2, "instance", "unterminated string");
	expect_fail("instance = \"abc\\\"\n", 1, "instance", "unterminated string");
	expect_fail("instance = \"abc\\", 1, "instance", "unterminated string");
	expect_fail("instance = \"", 1, "instance", "unterminated string");
}

Test(syntax_errors, bad_escapes)
{
	expect_fail("[persistence]\nrocksdb_path = \"a\\qb\"\n", 2, "persistence.rocksdb_path",
	    "bad escape '\\q' in string");
	expect_fail("[persistence]\nrocksdb_path = \"a\\x41\"\n", 2, "persistence.rocksdb_path",
	    "bad escape '\\x'");
	expect_fail("[persistence]\nrocksdb_path = \"a\\u12\"\n", 2, "persistence.rocksdb_path",
	    "\\u needs 4 hex digits");
	expect_fail("[persistence]\nrocksdb_path = \"a\\ud800\"\n", 2, "persistence.rocksdb_path",
	    "\\uD800 is a surrogate");
	expect_fail("[persistence]\nrocksdb_path = \"a\\u0000\"\n", 2, "persistence.rocksdb_path",
	    "\\u0000 (NUL) is not allowed");
	expect_fail("[persistence]\nrocksdb_path = \"a\\U0001F600\"\n", 2, "persistence.rocksdb_path",
	    "bad escape '\\U'");
	expect_fail("[persistence]\nrocksdb_path = \"a\\\xc3\xa9\"\n", 2, "persistence.rocksdb_path",
	    "bad escape '\\\xc3\xa9'");
}

Test(syntax_errors, trailing_garbage)
{
	expect_fail("[core]\nmax_connections = 1 2\n", 2, "core.max_connections",
	    "unexpected text after the value: '2'");
	expect_fail("instance = \"a\" b\n", 1, "instance", "unexpected text after the value: 'b'");
	expect_fail("instance = \"a\"\"b\"\n", 1, "instance", "unexpected text after the value");
}

Test(syntax_errors, invalid_numbers)
{
	static const char *const bad[] = {
		"1_", "1__0", "1.", ".5", "1e", "1e_5", "12abc", "--1", "+",
		"-", "1.5.5", "1,000", "1_.5", "1._5", "0x", "1e5_",
	};
	char text[128], what[128];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[core]\nmax_connections = %s\n", bad[i]);
		if (strcmp(bad[i], "0x") == 0)
			snprintf(what, sizeof(what), "not supported");
		else
			snprintf(what, sizeof(what), "invalid number '%s'", bad[i]);
		expect_fail(text, 2, "core.max_connections", what);
	}
	/* A leading '_' cannot start a number: it reads as an unquoted string. */
	expect_fail("[core]\nmax_connections = _1\n", 2, "core.max_connections",
	    "invalid value '_1'");
}

Test(syntax_errors, leading_zeros)
{
	expect_fail("[core]\nmax_connections = 0123\n", 2, "core.max_connections",
	    "leading zeros are not allowed in '0123'");
	expect_fail("[core]\nmax_connections = 00\n", 2, "core.max_connections", "leading zeros");
	expect_fail("[core]\nmax_connections = -01\n", 2, "core.max_connections", "leading zeros");
	expect_fail("[learning]\nlearning_rate = 00.5\n", 2, "learning.learning_rate", "leading zeros");
	/* a single 0 is fine (then out of range), and so is 0.5 */
	expect_fail("[core]\nmax_connections = 0\n", 2, "core.max_connections", "out of range: 0");
	expect_ok("[learning]\nlearning_rate = 0.5\n");
}

Test(syntax_errors, int64_range)
{
	expect_fail("[core]\nmax_connections = 9223372036854775808\n", 2, "core.max_connections",
	    "integer 9223372036854775808 is out of the 64-bit range");
	expect_fail("[core]\nmax_connections = -9223372036854775809\n", 2, "core.max_connections",
	    "out of the 64-bit range");
	expect_fail("[core]\nmax_connections = 99999999999999999999999\n", 2,
	    "core.max_connections", "out of the 64-bit range");
	/* The extremes themselves parse, then fail the schema's range. */
	expect_fail("[core]\nmax_connections = 9_223_372_036_854_775_807\n", 2,
	    "core.max_connections", "out of range: 9223372036854775807 (allowed 1..1000000)");
	expect_fail("[core]\nmax_connections = -9223372036854775808\n", 2,
	    "core.max_connections", "out of range: -9223372036854775808");
	expect_fail("[learning]\nlearning_rate = 1e999\n", 2, "learning.learning_rate",
	    "float 1e999 is out of range");
}

Test(syntax_errors, bare_values)
{
	expect_fail("instance = abc\n", 1, "instance",
	    "invalid value 'abc' (strings must be in double quotes)");
	expect_fail("[log]\nlevel = info\n", 2, "log.level", "invalid value 'info'");
	expect_fail("[core]\nmax_connections = TRUE\n", 2, "core.max_connections",
	    "invalid value 'TRUE'");
	expect_fail("[core]\nmax_connections = truex\n", 2, "core.max_connections",
	    "invalid value 'truex'");
}

Test(syntax_errors, unsupported_toml)
{
	expect_fail("[core]\nmax_connections = [1, 2]\n", 2, "core.max_connections",
	    "arrays are not supported by mcpcore's TOML subset");
	expect_fail("[regions]\ncore = { protocol = 4096 }\n", 2, "regions.core",
	    "inline tables are not supported by mcpcore's TOML subset");
	expect_fail("instance = \"\"\"x\"\"\"\n", 1, "instance",
	    "multi-line strings (\"\"\"...\"\"\") are not supported by mcpcore's TOML subset");
	expect_fail("instance = 'x'\n", 1, "instance",
	    "literal strings ('...') are not supported by mcpcore's TOML subset");
	expect_fail("instance = '''x'''\n", 1, "instance", "literal strings");
	expect_fail("[core]\nmax_connections = 0x10\n", 2, "core.max_connections",
	    "hexadecimal, octal and binary integers are not supported by mcpcore's TOML subset");
	expect_fail("[core]\nmax_connections = 0o17\n", 2, "core.max_connections", "not supported");
	expect_fail("[core]\nmax_connections = 0b101\n", 2, "core.max_connections", "not supported");
	expect_fail("[core]\nmax_connections = 1979-05-27\n", 2, "core.max_connections",
	    "dates and times are not supported by mcpcore's TOML subset");
	expect_fail("[core]\nmax_connections = 07:32:00\n", 2, "core.max_connections",
	    "dates and times are not supported");
	expect_fail("[learning]\nlearning_rate = inf\n", 2, "learning.learning_rate",
	    "inf and nan are not supported by mcpcore's TOML subset");
	expect_fail("[learning]\nlearning_rate = -nan\n", 2, "learning.learning_rate",
	    "inf and nan are not supported");
}

/* ------------------------------------------------------------------ */
/* Schema errors                                                        */

Test(schema, unknown_table)
{
	expect_fail("[core]\n[cache]\n", 2, "cache", "unknown table [cache]");
	expect_fail("[storage]\n", 1, "storage",
	    "unknown table [storage] (did you mean [regions.storage]?)");
	expect_fail("[core.max_connections]\n", 1, "core.max_connections",
	    "unknown table [core.max_connections] ('core.max_connections' is a key, not a table)");
	expect_fail("[instance]\n", 1, "instance", "is a key, not a table");
	expect_fail("[regions.core.x]\n", 1, "regions.core.x", "unknown table [regions.core.x]");
}

Test(schema, unknown_key)
{
	expect_fail("[memory]\nmax_connections = 5\n", 2, "memory.max_connections",
	    "unknown key 'memory.max_connections' (did you mean core.max_connections?)");
	expect_fail("[regions]\nprotocol = 4096\n", 2, "regions.protocol",
	    "unknown key 'regions.protocol' (did you mean regions.core.protocol?)");
	expect_fail("[regions.core]\nmodels = 4096\n", 2, "regions.core.models",
	    "(did you mean regions.learning.models?)");
	expect_fail("[core]\nfrobnicate = 1\n", 2, "core.frobnicate",
	    "unknown key 'core.frobnicate'");
	expect_fail("max_clients = 4\n", 1, "max_clients", "(did you mean memory.max_clients?)");
	expect_fail("x.y.z = 1\n", 1, "x.y.z", "unknown key 'x.y.z'");
}

Test(schema, unknown_key_no_hint_is_exact)
{
	parse("[core]\nfrobnicate = 1\n");
	cr_assert_str_eq(err, "t.toml:2: core.frobnicate: unknown key 'core.frobnicate'");
}

Test(schema, instance_after_a_table)
{
	expect_fail("[core]\ninstance = \"x\"\n", 2, "core.instance",
	    "(did you mean instance? it must come before the first [table])");
}

Test(schema, key_that_is_a_table)
{
	expect_fail("[regions]\ncore = 4096\n", 2, "regions.core",
	    "'regions.core' is a table, not a key");
	expect_fail("core = 1\n", 1, "core", "is a table, not a key");
}

Test(schema, duplicate_key)
{
	expect_fail("[core]\nmax_connections = 1\n\nmax_connections = 2\n", 4,
	    "core.max_connections", "duplicate key (first set on line 2)");
	expect_fail("[regions]\ncore.state = 4096\ncore.state = 4096\n", 3,
	    "regions.core.state", "duplicate key (first set on line 2)");
	expect_fail("instance = \"a\"\ninstance = \"a\"\n", 2, "instance", "duplicate key");
	/* The same key through a dotted key and a sub-table header. */
	expect_fail("regions.core.state = 4096\n[regions.storage]\nhistory = 4096\n"
	    "[regions.learning]\n[memory]\n[regions.core]\n", 6, "regions.core",
	    "already defined by dotted keys on line 1");
}

Test(schema, duplicate_table)
{
	expect_fail("[core]\nmax_connections = 1\n[memory]\n[core]\n", 4, "core",
	    "duplicate table [core] (first defined on line 1)");
	expect_fail("[regions.core]\n[regions.core]\n", 2, "regions.core", "duplicate table");
	expect_fail("[ log ]\n[log]\n", 2, "log", "duplicate table [log]");
}

Test(schema, wrong_type)
{
	expect_fail("[core]\nmax_connections = \"5\"\n", 2, "core.max_connections",
	    "expected integer, got string");
	expect_fail("instance = 5\n", 1, "instance", "expected string, got integer");
	expect_fail("[learning]\nlearning_rate = \"0.1\"\n", 2, "learning.learning_rate",
	    "expected float, got string");
	expect_fail("[core]\nmax_connections = 1.5\n", 2, "core.max_connections",
	    "expected integer, got float");
	expect_fail("[regions]\ncore.state = 4096.0\n", 2, "regions.core.state",
	    "expected integer, got float");
}

Test(schema, out_of_range)
{
	expect_fail("[core]\nmax_connections = 1000001\n", 2, "core.max_connections",
	    "out of range: 1000001 (allowed 1..1000000)");
	expect_fail("[memory]\nmax_clients = 57\n", 2, "memory.max_clients",
	    "out of range: 57 (allowed 1..56)");
	expect_fail("[memory]\nmax_clients = -1\n", 2, "memory.max_clients", "out of range: -1");
	expect_fail("[memory]\nmax_message_size = 63\n", 2, "memory.max_message_size",
	    "out of range: 63 (allowed 64..268435456)");
	expect_fail("[core]\nmessage_buffer_size = 4095\n", 2, "core.message_buffer_size",
	    "allowed 4096..1073741824");
	expect_fail("[learning]\nbatch_size = 16777217\n", 2, "learning.batch_size", "out of range");
	expect_fail("[learning]\nmodel_update_interval = 31536001\n", 2,
	    "learning.model_update_interval", "allowed 1..31536000");
	expect_fail("[persistence]\ncheckpoint_interval = 0\n", 2,
	    "persistence.checkpoint_interval", "out of range: 0");
	expect_fail("[supervisor]\nheartbeat_timeout_ms = 99\n", 2,
	    "supervisor.heartbeat_timeout_ms", "allowed 100..600000");
	expect_fail("[supervisor]\nshutdown_timeout_ms = 60001\n", 2,
	    "supervisor.shutdown_timeout_ms", "allowed 100..60000");
	expect_fail("[supervisor]\ncrash_loop_restarts = 1001\n", 2,
	    "supervisor.crash_loop_restarts", "allowed 1..1000");
	expect_fail("[supervisor]\ncrash_loop_window_ms = 3600001\n", 2,
	    "supervisor.crash_loop_window_ms", "allowed 1..3600000");
	expect_fail("[supervisor]\nrestart_backoff_ms = 60001\n", 2,
	    "supervisor.restart_backoff_ms", "allowed 1..60000");
}

Test(schema, learning_rate_range)
{
	expect_fail("[learning]\nlearning_rate = 0.0\n", 2, "learning.learning_rate",
	    "out of range: 0 (must be > 0 and <= 1)");
	expect_fail("[learning]\nlearning_rate = 0\n", 2, "learning.learning_rate", "must be > 0");
	expect_fail("[learning]\nlearning_rate = -0.1\n", 2, "learning.learning_rate", "out of range");
	expect_fail("[learning]\nlearning_rate = 1.0000001\n", 2, "learning.learning_rate",
	    "out of range");
	expect_ok("[learning]\nlearning_rate = 1e-300\n");
}

Test(schema, bad_sizes)
{
	expect_fail("[regions]\ncore.state = 4097\n", 2, "regions.core.state",
	    "bad size 4097: not a multiple of 4096");
	expect_fail("[regions]\ncore.state = 0\n", 2, "regions.core.state",
	    "bad size 0: must be greater than 0");
	expect_fail("[regions]\ncore.state = -4096\n", 2, "regions.core.state",
	    "bad size -4096: must be greater than 0");
	expect_fail("[regions]\ncore.state = 1099511631872\n", 2, "regions.core.state",
	    "bad size 1099511631872: larger than 1 TiB (1099511627776)");
	expect_fail("[core]\nstate_cache_size = 100\n", 2, "core.state_cache_size",
	    "bad size 100: not a multiple of 4096");
	expect_fail("[memory]\nring_buffer_size = 0\n", 2, "memory.ring_buffer_size", "bad size 0");
	expect_fail("[memory]\nmessage_queue_size = 4095\n", 2, "memory.message_queue_size",
	    "bad size 4095");
	expect_fail("[memory]\nshared_memory_size = 1\n", 2, "memory.shared_memory_size",
	    "bad size 1");
}

Test(schema, shared_memory_must_add_up)
{
	parse("[core]\nstate_cache_size = 8388608\n[memory]\n"
	    "shared_memory_size = 20971520\nring_buffer_size = 8388608\n"
	    "message_queue_size = 8388608\n");
	cr_assert_str_eq(err, "t.toml:4: memory.shared_memory_size: 20971520 must equal the "
	    "three shared.* regions: memory.ring_buffer_size (8388608) + "
	    "core.state_cache_size (8388608) + memory.message_queue_size (8388608) = 25165824");
	/* Not set in the file: the default is blamed, on line 0. */
	expect_fail("[memory]\nring_buffer_size = 4096\n", 0, "memory.shared_memory_size",
	    "4294967296 must equal");
}

Test(schema, restart_backoff_max_below_first)
{
	expect_fail("[supervisor]\nrestart_backoff_ms = 200\nrestart_backoff_max_ms = 100\n", 3,
	    "supervisor.restart_backoff_max_ms",
	    "100 is less than supervisor.restart_backoff_ms (200)");
	expect_fail("[supervisor]\nrestart_backoff_ms = 6000\n", 2,
	    "supervisor.restart_backoff_ms",
	    "6000 is greater than supervisor.restart_backoff_max_ms (5000)");
	expect_ok("[supervisor]\nrestart_backoff_ms = 300\nrestart_backoff_max_ms = 300\n");
}

Test(schema, instance_names)
{
	char text[128];

	expect_fail("instance = \"my instance\"\n", 1, "instance",
	    "invalid instance name 'my instance' (must be 1-47 characters of A-Z a-z 0-9 _ -)");
	expect_fail("instance = \"\"\n", 1, "instance", "invalid instance name ''");
	expect_fail("instance = \"a/b\"\n", 1, "instance", "invalid instance name");
	expect_fail("instance = \"a.b\"\n", 1, "instance", "invalid instance name");
	expect_fail("instance = \"caf\xc3\xa9\"\n", 1, "instance", "invalid instance name");
	expect_fail("instance = \"a\\nb\"\n", 1, "instance", "invalid instance name 'a\\nb'");
	/* 47 characters is the maximum. */
	snprintf(text, sizeof(text), "instance = \"%s\"\n",
	    "abcdefghij" "abcdefghij" "abcdefghij" "abcdefghij" "ABCDEF-");
	expect_ok(text);
	cr_assert_eq(strlen(cfg.instance), 47);
	snprintf(text, sizeof(text), "instance = \"%s\"\n",
	    "abcdefghij" "abcdefghij" "abcdefghij" "abcdefghij" "ABCDEF_x");
	expect_fail(text, 1, "instance", "string too long (48 bytes, max 47)");
}

Test(schema, bad_choices)
{
	expect_fail("[persistence]\ncompression = \"gzip\"\n", 2, "persistence.compression",
	    "invalid value 'gzip' (expected one of: lz4, zstd, none)");
	expect_fail("[persistence]\ncompression = \"LZ4\"\n", 2, "persistence.compression",
	    "invalid value 'LZ4'");
	expect_fail("[persistence]\ncompression = \"lz4\\n\"\n", 2, "persistence.compression",
	    "invalid value 'lz4\\n'");
	expect_fail("[persistence]\ncompression = \"snappy-compressed\"\n", 2,
	    "persistence.compression", "string too long (17 bytes, max 7)");
	expect_fail("[log]\nlevel = \"verbose\"\n", 2, "log.level",
	    "invalid value 'verbose' (expected one of: debug, info, warn, error)");
}

Test(schema, long_strings)
{
	char *text = malloc(4096);
	char path[600];

	cr_assert_not_null(text);
	memset(path, 'p', sizeof(path));
	path[0] = '/';
	/* 255 bytes fit, 256 do not. */
	snprintf(text, 4096, "[persistence]\nrocksdb_path = \"%.255s\"\n", path);
	expect_ok(text);
	cr_assert_eq(strlen(cfg.rocksdb_path), 255);
	snprintf(text, 4096, "[persistence]\nrocksdb_path = \"%.256s\"\n", path);
	expect_fail(text, 2, "persistence.rocksdb_path", "string too long (256 bytes, max 255)");
	/* Longer than the reader's string buffer. */
	memset(text, 0, 4096);
	strcpy(text, "[persistence]\nrocksdb_path = \"");
	memset(text + strlen(text), 'q', 2000);
	strcat(text, "\"\n");
	expect_fail(text, 2, "persistence.rocksdb_path", "string too long (max 1023 bytes)");
	free(text);
}

Test(schema, long_keys)
{
	char text[512];

	memset(text, 0, sizeof(text));
	memset(text, 'k', 300);
	strcat(text, " = 1\n");
	expect_fail(text, 1, "-", "key too long");
	/* Short enough alone, too long with the table's prefix. */
	memset(text, 0, sizeof(text));
	strcpy(text, "[regions.storage]\n");
	memset(text + strlen(text), 'k', 120);
	strcat(text, " = 1\n");
	expect_fail(text, 2, "-", "key too long (max 127 bytes)");
}

Test(schema, overlong_float)
{
	char text[512];

	snprintf(text, sizeof(text), "[learning]\nlearning_rate = 0.%0200d1\n", 0);
	expect_fail(text, 2, "learning.learning_rate", "(too long)");
}

/* ------------------------------------------------------------------ */
/* rocksdb_path resolution                                              */

static int parse_as(const char *name, const char *text)
{
	return mc_config_parse(name, text, strlen(text), &cfg, err, sizeof(err));
}

Test(paths, relative_resolved_against_config_dir)
{
	cr_assert_eq(parse_as("/etc/mcpcore/main.toml", "[persistence]\nrocksdb_path = \"data\"\n"), 0, "%s", err);
	cr_assert_str_eq(cfg.rocksdb_path, "/etc/mcpcore/data");
	cr_assert_eq(parse_as("conf/x/main.toml", "[persistence]\nrocksdb_path = \"a/b\"\n"), 0, "%s", err);
	cr_assert_str_eq(cfg.rocksdb_path, "conf/x/a/b");
	cr_assert_eq(parse_as("/main.toml", "[persistence]\nrocksdb_path = \"db\"\n"), 0, "%s", err);
	cr_assert_str_eq(cfg.rocksdb_path, "/db");
	cr_assert_eq(parse_as("./main.toml", "[persistence]\nrocksdb_path = \"../db\"\n"), 0, "%s", err);
	cr_assert_str_eq(cfg.rocksdb_path, "./../db");
}

Test(paths, config_in_current_directory)
{
	cr_assert_eq(parse_as("main.toml", "[persistence]\nrocksdb_path = \"data\"\n"), 0, "%s", err);
	cr_assert_str_eq(cfg.rocksdb_path, "data");
}

Test(paths, absolute_kept)
{
	cr_assert_eq(parse_as("/etc/mcpcore/main.toml",
	    "[persistence]\nrocksdb_path = \"/var/lib/mcpcore\"\n"), 0, "%s", err);
	cr_assert_str_eq(cfg.rocksdb_path, "/var/lib/mcpcore");
}

Test(paths, default_resolved_too)
{
	cr_assert_eq(parse_as("/etc/mcpcore/main.toml", "# defaults\n"), 0, "%s", err);
	cr_assert_str_eq(cfg.rocksdb_path, "/etc/mcpcore/data");
	cr_assert_eq(cfg.line[MC_CFG_PERSISTENCE_ROCKSDB_PATH], 0);
}

Test(paths, empty_rejected)
{
	expect_fail("[persistence]\nrocksdb_path = \"\"\n", 2, "persistence.rocksdb_path",
	    "path must not be empty");
}

Test(paths, resolved_too_long)
{
	char name[200], text[300], want[320];

	memset(name, 'd', sizeof(name));
	name[0] = '/';
	memcpy(name + 150, "/x.toml", 8);
	snprintf(text, sizeof(text), "[persistence]\nrocksdb_path = \"%0120d\"\n", 0);
	cr_assert_eq(parse_as(name, text), MC_CONFIG_EX);
	snprintf(want, sizeof(want), "%s:2: persistence.rocksdb_path: path too long once resolved",
	    name);
	cr_assert(strncmp(err, want, strlen(want)) == 0, "%s", err);
	cr_assert(strstr(err, "(271 bytes, max 255)") != NULL, "%s", err);
}

Test(paths, file_name_too_long)
{
	char name[300];

	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	cr_assert_eq(parse_as(name, "instance = \"x\"\n"), MC_CONFIG_EX);
	cr_assert(strstr(err, ":0: -: file name too long (299 bytes, max 255)") != NULL, "%s", err);
}

/* ------------------------------------------------------------------ */
/* mc_config_error and error buffers                                    */

Test(errors, mc_config_error_format)
{
	int rc;

	expect_ok("[core]\nmax_connections = 5\n\n[memory]\nring_buffer_size = 1073741824\n");
	rc = mc_config_error(&cfg, MC_CFG_MEMORY_RING_BUFFER_SIZE, err, sizeof(err),
	    "region shared.rings too small: %d < %s", 5, "6");
	cr_assert_eq(rc, MC_CONFIG_EX);
	cr_assert_str_eq(err, "t.toml:5: memory.ring_buffer_size: region shared.rings too small: 5 < 6");
	/* A key left at its default is reported on line 0. */
	rc = mc_config_error(&cfg, MC_CFG_REGIONS_CORE_STATE, err, sizeof(err), "no room");
	cr_assert_eq(rc, MC_CONFIG_EX);
	cr_assert_str_eq(err, "t.toml:0: regions.core.state: no room");
}

Test(errors, mc_config_error_after_load)
{
	const char *path = MC_SOURCE_DIR "/config/test.toml";
	char want[512];

	cr_assert_eq(mc_config_load(path, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(mc_config_error(&cfg, MC_CFG_MEMORY_MAX_CLIENTS, err, sizeof(err),
	    "too many"), MC_CONFIG_EX);
	snprintf(want, sizeof(want), "%s:%u: memory.max_clients: too many", path,
	    cfg.line[MC_CFG_MEMORY_MAX_CLIENTS]);
	cr_assert_str_eq(err, want);
	cr_assert_neq(cfg.line[MC_CFG_MEMORY_MAX_CLIENTS], 0);
}

Test(errors, small_and_null_buffers)
{
	char tiny[12];
	int rc;

	rc = mc_config_parse("t.toml", "x = 1\n", 6, &cfg, tiny, sizeof(tiny));
	cr_assert_eq(rc, MC_CONFIG_EX);
	cr_assert_str_eq(tiny, "t.toml:1: x");
	rc = mc_config_parse("t.toml", "x = 1\n", 6, &cfg, NULL, 0);
	cr_assert_eq(rc, MC_CONFIG_EX);
	rc = mc_config_load("/nonexistent/x.toml", &cfg, NULL, 0);
	cr_assert_eq(rc, MC_CONFIG_EX);
	mc_config_defaults(&cfg);
	rc = mc_config_error(&cfg, MC_CFG_LOG_LEVEL, NULL, 0, "x");
	cr_assert_eq(rc, MC_CONFIG_EX);
}

/* A string holding control characters is quoted escaped, on one line. */
Test(errors, control_characters_escaped_in_messages)
{
	expect_fail("[log]\nlevel = \"a\\tb\\rc\\u0001d\"\n", 2, "log.level",
	    "invalid value 'a\\tb\\rc\\x01d'");
}

/* Is s valid UTF-8?  (A cut in the middle of a character would not be.) */
static bool valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		int n = *p < 0x80 ? 0 : *p >= 0xf0 ? 3 : *p >= 0xe0 ? 2 : *p >= 0xc2 ? 1 : -1;

		if (n < 0)
			return false;
		p++;
		for (int i = 0; i < n; i++, p++)
			if ((*p & 0xc0) != 0x80)
				return false;
	}
	return true;
}

Test(errors, long_text_cut_at_character_boundary)
{
	char text[512], val[300] = "";

	/* 2-byte characters with a 1-byte shift: the cut falls inside one. */
	strcat(val, "x");
	for (int i = 0; i < 60; i++)
		strcat(val, "\xc3\xa9");
	snprintf(text, sizeof(text), "[log]\nlevel = %s\n", val);
	expect_fail(text, 2, "log.level", "...' (strings must be in double quotes)");
	cr_assert(valid_utf8(err), "message is not valid UTF-8: %s", err);
	/* 23 characters = 46 bytes fit in instance; the message shows 40. */
	val[1 + 46] = '\0';
	snprintf(text, sizeof(text), "instance = \"%s\"\n", val + 1);
	expect_fail(text, 1, "instance", "...' (must be 1-47 characters");
	cr_assert(valid_utf8(err), "message is not valid UTF-8: %s", err);
}

Test(errors, null_text)
{
	int rc = mc_config_parse("t.toml", NULL, 5, &cfg, err, sizeof(err));

	cr_assert_eq(rc, MC_CONFIG_EX);
	cr_assert_str_eq(err, "t.toml:0: -: no text to parse");
	rc = mc_config_parse("t.toml", NULL, 0, &cfg, err, sizeof(err));
	cr_assert_eq(rc, MC_CONFIG_EX);
	cr_assert_str_eq(err, "t.toml:0: -: file is empty");
}

Test(errors, long_user_text_is_shortened)
{
	char text[512];

	snprintf(text, sizeof(text), "[log]\nlevel = %s\n",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	expect_fail(text, 2, "log.level", "invalid value 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'");
}

/* ------------------------------------------------------------------ */
/* tests/config/bad: one file per error class                           */

Test(bad_files, every_file_fails_as_expected)
{
	const char *dir = MC_SOURCE_DIR "/tests/config/bad";
	struct dirent *de;
	unsigned count = 0;
	DIR *d = opendir(dir);

	cr_assert_not_null(d, "opendir %s: %s", dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		char path[512], first[256], key[128], want[768];
		unsigned line;
		size_t n = strlen(de->d_name);
		FILE *f;
		int rc;

		if (n < 5 || strcmp(de->d_name + n - 5, ".toml") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		f = fopen(path, "r");
		cr_assert_not_null(f, "%s: %s", path, strerror(errno));
		cr_assert_not_null(fgets(first, sizeof(first), f), "%s: empty", path);
		fclose(f);
		cr_assert_eq(sscanf(first, "# expect: %u: %127s", &line, key), 2,
		    "%s: bad first line '%s'", path, first);

		memset(err, 0, sizeof(err));
		rc = mc_config_load(path, &cfg, err, sizeof(err));
		cr_assert_eq(rc, MC_CONFIG_EX, "%s: loaded without error", path);
		snprintf(want, sizeof(want), "%s:%u: %s: ", path, line, key);
		cr_assert(strstr(err, want) == err, "%s:\n  want '%s...'\n  got  '%s'", de->d_name,
		    want, err);
		cr_assert(strchr(err, '\n') == NULL);
		cr_log_info("%s -> %s", de->d_name, err + strlen(dir) + 1);
		count++;
	}
	closedir(d);
	cr_assert_geq(count, 14, "only %u bad config files", count);
}

/* Listen addresses: IPv4 or bracketed IPv6, and a port 1..65535. */
Test(errors, listen_addresses)
{
	static const char *const good[] = { "127.0.0.1:1", "0.0.0.0:65535", "[::1]:3000" };
	static const char *const bad[] = { "localhost:3000", "127.0.0.1", "127.0.0.1:0",
	    "127.0.0.1:65536", "::1:3000", "[::1]3000", "1.2.3.4:x", "300.1.1.1:80", ":80" };
	char text[128];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "[monitor]\nlisten = \"%s\"\n", good[i]);
		cr_assert_eq(mc_config_parse("l.toml", text, strlen(text), &cfg, err, sizeof(err)), 0,
		    "%s rejected: %s", good[i], err);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[protocol]\nlisten = \"%s\"\n", bad[i]);
		cr_assert_eq(mc_config_parse("l.toml", text, strlen(text), &cfg, err, sizeof(err)),
		    MC_CONFIG_EX, "%s accepted", bad[i]);
		cr_assert(strstr(err, "l.toml:2: protocol.listen: invalid listen address") != NULL,
		    "%s: %s", bad[i], err);
	}
}

Test(errors, url_path)
{
	static const char text[] = "[protocol]\npath = \"mcp\"\n";

	cr_assert_eq(mc_config_parse("p.toml", text, strlen(text), &cfg, err, sizeof(err)),
	    MC_CONFIG_EX);
	cr_assert(strstr(err, "p.toml:2: protocol.path: invalid path") != NULL, "%s", err);
}
