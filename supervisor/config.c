/*
 * config.c - the strict TOML-subset configuration reader (see mc_config.h).
 *
 * Debian 12 ships no C TOML library, and mcpcore only needs a small,
 * predictable subset, so the reader is hand-written.  It works in stages:
 *
 *   1. whole-buffer checks: size, NUL bytes, control characters, UTF-8;
 *   2. a line reader and a per-line tokenizer producing
 *      (dotted key path, typed value, line number) or a table header;
 *   3. a static schema table (indexed by enum mc_config_key) giving each
 *      full dotted key its type, bounds, default and struct field
 *      (offsetof + width); values are checked and stored through it;
 *   4. cross-key checks and resolution of rocksdb_path.
 *
 * Every error ends the parse with one "<file>:<line>: <key>: <message>"
 * line.  There is no global mutable state: everything lives in a
 * struct parser on the caller's stack, so any thread may call in.
 */
#define _GNU_SOURCE             /* strerror_r (GNU), strtod_l, newlocale */

#include "mc_config.h"

#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_FILE_MAX  (1u << 20)   /* a config larger than 1 MiB is a mistake */
#define CFG_KEY_MAX   128          /* full dotted key, including NUL */
#define CFG_STR_MAX   1024         /* decoded string value, including NUL */
#define CFG_TABLE_MAX 32           /* tables we remember for redefinition checks */
#define CFG_SHOW_MAX  40           /* bytes of user text quoted in a message */

#define CFG_PAGE      4096ull
#define CFG_MIB       (1ull << 20)
#define CFG_GIB       (1ull << 30)
#define CFG_TIB       (1ull << 40)
#define CFG_YEAR_S    (86400 * 365)

enum vtype { V_INT, V_FLOAT, V_BOOL, V_STRING };

/* Extra validation beyond the type (and, for integers, min/max). */
enum vcheck {
	C_NONE,
	C_SIZE,         /* region size: > 0, multiple of 4096, <= 1 TiB */
	C_UNIT,         /* float in (0, 1] */
	C_INSTANCE,     /* [A-Za-z0-9_-]{1,47} */
	C_PATH,         /* non-empty; resolved against the config's directory */
	C_CHOICE,       /* one of field.choices */
	C_LISTEN,       /* "IPv4:port" or "[IPv6]:port" */
	C_URLPATH,      /* "/" followed by [A-Za-z0-9/_.-]* */
};

struct field {
	const char *name;               /* full dotted key */
	enum vtype type;
	enum vcheck check;
	size_t off, width;              /* where in struct mc_config, and size */
	int64_t min, max;               /* integers */
	int64_t def_int;
	double def_float;
	const char *def_str;
	const char *const *choices;     /* C_CHOICE, NULL-terminated */
};

static const char *const compression_choices[] = { "lz4", "zstd", "none", NULL };
static const char *const log_level_choices[] = { "debug", "info", "warn", "error", NULL };
static const char *const sync_choices[] = { "batch", "none", NULL };

#define MEMBER(f) offsetof(struct mc_config, f), sizeof(((struct mc_config *)0)->f)

#define INT(k, n, f, d, lo, hi) [k] = { .name = n, .type = V_INT, \
	.check = C_NONE, MEMBER(f), .min = lo, .max = hi, .def_int = d }
#define SIZE(k, n, f, d) [k] = { .name = n, .type = V_INT, \
	.check = C_SIZE, MEMBER(f), .min = 1, .max = (int64_t)CFG_TIB, .def_int = d }
#define FLOAT(k, n, f, d, chk) [k] = { .name = n, .type = V_FLOAT, \
	.check = chk, MEMBER(f), .def_float = d }
#define STR(k, n, f, d, chk, ch) [k] = { .name = n, .type = V_STRING, \
	.check = chk, MEMBER(f), .def_str = d, .choices = ch }
#define BOOL(k, n, f, d) [k] = { .name = n, .type = V_BOOL, \
	.check = C_NONE, MEMBER(f), .def_int = d }

/*
 * The schema.  Indexed by enum mc_config_key, so the key for a name is its
 * index and mc_config_key_name() is a lookup; the static assert below
 * catches an enum value without an entry.
 */
static const struct field schema[] = {
	STR(MC_CFG_INSTANCE, "instance", instance, "default", C_INSTANCE, NULL),

	INT(MC_CFG_CORE_MAX_CONNECTIONS, "core.max_connections",
	    max_connections, 10000, 1, 1000000),
	INT(MC_CFG_CORE_MESSAGE_BUFFER_SIZE, "core.message_buffer_size",
	    message_buffer_size, 1048576, 4096, (int64_t)CFG_GIB),
	SIZE(MC_CFG_CORE_STATE_CACHE_SIZE, "core.state_cache_size",
	    state_cache_size, 2147483648),

	INT(MC_CFG_LEARNING_MODEL_UPDATE_INTERVAL, "learning.model_update_interval",
	    model_update_interval, 300, 1, CFG_YEAR_S),
	INT(MC_CFG_LEARNING_BATCH_SIZE, "learning.batch_size",
	    batch_size, 1024, 1, 1 << 24),
	FLOAT(MC_CFG_LEARNING_LEARNING_RATE, "learning.learning_rate",
	    learning_rate, 0.001, C_UNIT),

	SIZE(MC_CFG_MEMORY_SHARED_MEMORY_SIZE, "memory.shared_memory_size",
	    shared_memory_size, 4294967296),
	SIZE(MC_CFG_MEMORY_RING_BUFFER_SIZE, "memory.ring_buffer_size",
	    ring_buffer_size, 1073741824),
	SIZE(MC_CFG_MEMORY_MESSAGE_QUEUE_SIZE, "memory.message_queue_size",
	    message_queue_size, 1073741824),
	INT(MC_CFG_MEMORY_MAX_MESSAGE_SIZE, "memory.max_message_size",
	    max_message_size, 1048576, 64, (int64_t)(256 * CFG_MIB)),
	INT(MC_CFG_MEMORY_MAX_CLIENTS, "memory.max_clients",
	    max_clients, 16, 1, 56),

	SIZE(MC_CFG_REGIONS_CORE_PROTOCOL, "regions.core.protocol",
	    core_protocol, 1073741824),
	SIZE(MC_CFG_REGIONS_CORE_STATE, "regions.core.state",
	    core_state, 1073741824),
	SIZE(MC_CFG_REGIONS_CORE_ROUTING, "regions.core.routing",
	    core_routing, 1073741824),
	SIZE(MC_CFG_REGIONS_LEARNING_MODELS, "regions.learning.models",
	    learning_models, 1610612736),
	SIZE(MC_CFG_REGIONS_LEARNING_TRAINING, "regions.learning.training",
	    learning_training, 1073741824),
	SIZE(MC_CFG_REGIONS_LEARNING_FEATURES, "regions.learning.features",
	    learning_features, 536870912),
	SIZE(MC_CFG_REGIONS_STORAGE_ACTIVE_MODELS, "regions.storage.active_models",
	    storage_active_models, 1073741824),
	SIZE(MC_CFG_REGIONS_STORAGE_HISTORY, "regions.storage.history",
	    storage_history, 1073741824),

	STR(MC_CFG_PERSISTENCE_ROCKSDB_PATH, "persistence.rocksdb_path",
	    rocksdb_path, "data", C_PATH, NULL),
	INT(MC_CFG_PERSISTENCE_CHECKPOINT_INTERVAL, "persistence.checkpoint_interval",
	    checkpoint_interval, 3600, 1, CFG_YEAR_S),
	STR(MC_CFG_PERSISTENCE_COMPRESSION, "persistence.compression",
	    compression, "lz4", C_CHOICE, compression_choices),

	INT(MC_CFG_SUPERVISOR_RESTART_BACKOFF_MS, "supervisor.restart_backoff_ms",
	    restart_backoff_ms, 100, 1, 60000),
	INT(MC_CFG_SUPERVISOR_RESTART_BACKOFF_MAX_MS, "supervisor.restart_backoff_max_ms",
	    restart_backoff_max_ms, 5000, 1, 600000),
	INT(MC_CFG_SUPERVISOR_CRASH_LOOP_RESTARTS, "supervisor.crash_loop_restarts",
	    crash_loop_restarts, 5, 1, 1000),
	INT(MC_CFG_SUPERVISOR_CRASH_LOOP_WINDOW_MS, "supervisor.crash_loop_window_ms",
	    crash_loop_window_ms, 10000, 1, 3600000),
	INT(MC_CFG_SUPERVISOR_HEARTBEAT_TIMEOUT_MS, "supervisor.heartbeat_timeout_ms",
	    heartbeat_timeout_ms, 5000, 100, 600000),
	INT(MC_CFG_SUPERVISOR_SHUTDOWN_TIMEOUT_MS, "supervisor.shutdown_timeout_ms",
	    shutdown_timeout_ms, 3000, 100, 60000),

	STR(MC_CFG_LOG_LEVEL, "log.level", log_level, "info", C_CHOICE, log_level_choices),

	INT(MC_CFG_STATE_MAX_KEY_SIZE, "state.max_key_size",
	    state_max_key_size, 256, 1, 4096),
	INT(MC_CFG_STATE_MAX_VALUE_SIZE, "state.max_value_size",
	    state_max_value_size, 65536, 1, (int64_t)(64 * CFG_MIB)),

	STR(MC_CFG_PROTOCOL_LISTEN, "protocol.listen", protocol_listen, "127.0.0.1:3000",
	    C_LISTEN, NULL),
	STR(MC_CFG_PROTOCOL_PATH, "protocol.path", protocol_path, "/mcp", C_URLPATH, NULL),
	BOOL(MC_CFG_PROTOCOL_CONFORMANCE_FIXTURES, "protocol.conformance_fixtures",
	    protocol_conformance_fixtures, 0),
	INT(MC_CFG_PROTOCOL_IDLE_TIMEOUT_MS, "protocol.idle_timeout_ms",
	    protocol_idle_timeout_ms, 60000, 100, 86400000),
	INT(MC_CFG_PROTOCOL_REQUEST_TIMEOUT_MS, "protocol.request_timeout_ms",
	    protocol_request_timeout_ms, 10000, 10, 3600000),
	INT(MC_CFG_PROTOCOL_MAX_HEADER_SIZE, "protocol.max_header_size",
	    protocol_max_header_size, 16384, 1024, 1048576),

	STR(MC_CFG_MONITOR_LISTEN, "monitor.listen", monitor_listen, "127.0.0.1:9464",
	    C_LISTEN, NULL),
	INT(MC_CFG_MONITOR_SNAPSHOT_INTERVAL, "monitor.snapshot_interval",
	    monitor_snapshot_interval, 10, 1, 86400),

	STR(MC_CFG_PERSISTENCE_SYNC, "persistence.sync", persistence_sync, "batch",
	    C_CHOICE, sync_choices),
	INT(MC_CFG_PERSISTENCE_CHECKPOINT_KEEP, "persistence.checkpoint_keep",
	    persistence_checkpoint_keep, 5, 1, 1000),
	INT(MC_CFG_PERSISTENCE_BATCH_MAX, "persistence.batch_max",
	    persistence_batch_max, 4096, 1, 1 << 20),
	INT(MC_CFG_PERSISTENCE_GROUP_COMMIT_MS, "persistence.group_commit_ms",
	    persistence_group_commit_ms, 10, 0, 1000),
};

_Static_assert(sizeof(schema) / sizeof(schema[0]) == MC_CFG_NKEYS,
    "every enum mc_config_key needs a schema entry");

/* A table seen so far: TOML forbids defining a table twice, whether by a
 * [header] or implicitly by dotted keys. */
struct table_def {
	char name[CFG_KEY_MAX];
	uint32_t line;
	bool header;                    /* false: created by dotted keys */
};

struct parser {
	const char *name;               /* file name for messages / path resolution */
	char *err;
	size_t errlen;
	struct mc_config *cfg;
	char prefix[CFG_KEY_MAX];       /* current table, "" before the first header */
	struct table_def tables[CFG_TABLE_MAX];
	unsigned ntables;
	locale_t c_locale;              /* created on the first float, freed at the end */
};

struct value {
	enum vtype type;
	int64_t i;
	double f;
	bool b;
	size_t len;
	char s[CFG_STR_MAX];
};

/* A cursor over one line, without its line terminator. */
struct cur {
	const char *p, *end;
};

/* ------------------------------------------------------------------ */
/* Error reporting                                                      */

__attribute__((format(printf, 6, 0)))
static int vreport(char *err, size_t errlen, const char *file, uint32_t line,
    const char *key, const char *fmt, va_list ap)
{
	char msg[MC_CONFIG_ERR_MAX];

	if (err == NULL || errlen == 0)
		return MC_CONFIG_EX;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	snprintf(err, errlen, "%s:%" PRIu32 ": %s: %s", file, line, key, msg);
	return MC_CONFIG_EX;
}

__attribute__((format(printf, 4, 5)))
static int fail(struct parser *ps, uint32_t line, const char *key,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(ps->err, ps->errlen, ps->name, line, key, fmt, ap);
	va_end(ap);
	return MC_CONFIG_EX;
}

/* Errors from mc_config_load before there is a parser. */
__attribute__((format(printf, 4, 5)))
static int file_fail(const char *file, char *err, size_t errlen,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(err, errlen, file, 0, "-", fmt, ap);
	va_end(ap);
	return MC_CONFIG_EX;
}

/*
 * Copy user text into out for quoting in a message.  Control characters
 * are escaped so the message stays one line (a decoded "\n" in a string
 * value must not split it), and long text is cut at a UTF-8 boundary.
 */
static const char *show(char *out, size_t outlen, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	for (i = 0; i < n && o + 8 < outlen && i < CFG_SHOW_MAX; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch < 0x20 || ch == 0x7f) {
			out[o++] = '\\';
			if (ch == '\n') {
				out[o++] = 'n';
			} else if (ch == '\t') {
				out[o++] = 't';
			} else if (ch == '\r') {
				out[o++] = 'r';
			} else {
				out[o++] = 'x';
				out[o++] = hex[ch >> 4];
				out[o++] = hex[ch & 15];
			}
			continue;
		}
		out[o++] = (char)ch;
	}
	if (i < n) {
		/* Do not leave half a UTF-8 sequence before the ellipsis. */
		while (o > 0 && ((unsigned char)out[o - 1] & 0xc0) == 0x80)
			o--;
		if (o > 0 && ((unsigned char)out[o - 1] & 0xc0) == 0xc0)
			o--;
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

/* The rest of the line from the cursor, quoted. */
static const char *show_rest(char *out, size_t outlen, const struct cur *c)
{
	return show(out, outlen, c->p, (size_t)(c->end - c->p));
}

/* ------------------------------------------------------------------ */
/* Schema lookups                                                       */

static int lookup_key(const char *name)
{
	for (int i = 0; i < MC_CFG_NKEYS; i++)
		if (strcmp(schema[i].name, name) == 0)
			return i;
	return -1;
}

/* A table is any proper dotted prefix of a schema key. */
static bool is_table(const char *name)
{
	size_t n = strlen(name);

	for (int i = 0; i < MC_CFG_NKEYS; i++)
		if (strncmp(schema[i].name, name, n) == 0 && schema[i].name[n] == '.')
			return true;
	return false;
}

/* Last component of a dotted name. */
static const char *bare_name(const char *name)
{
	const char *dot = strrchr(name, '.');

	return dot ? dot + 1 : name;
}

/* A schema key with the same bare name, for "did you mean" hints. */
static const char *suggest_key(const char *name)
{
	const char *bare = bare_name(name);

	for (int i = 0; i < MC_CFG_NKEYS; i++)
		if (strcmp(bare_name(schema[i].name), bare) == 0)
			return schema[i].name;
	return NULL;
}

/*
 * A known table whose trailing components are `name` ([storage] ->
 * regions.storage).  Writes it to out; false if there is none.
 */
static bool suggest_table(const char *name, char *out, size_t outlen)
{
	size_t n = strlen(name);

	for (int i = 0; i < MC_CFG_NKEYS; i++) {
		const char *s = schema[i].name;

		for (const char *dot = strchr(s, '.'); dot; dot = strchr(dot + 1, '.')) {
			const char *cand = dot + 1;

			if (strncmp(cand, name, n) == 0 && cand[n] == '.') {
				snprintf(out, outlen, "%.*s", (int)(cand + n - s), s);
				return true;
			}
		}
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* Storing values                                                       */

static void store_int(struct mc_config *cfg, const struct field *f, uint64_t x)
{
	unsigned char *dst = (unsigned char *)cfg + f->off;

	/* The schema bounds keep every value within its field's width. */
	if (f->width == sizeof(uint32_t)) {
		uint32_t u = (uint32_t)x;

		memcpy(dst, &u, sizeof(u));
	} else {
		memcpy(dst, &x, sizeof(x));
	}
}

static void store_float(struct mc_config *cfg, const struct field *f, double x)
{
	memcpy((unsigned char *)cfg + f->off, &x, sizeof(x));
}

static void store_bool(struct mc_config *cfg, const struct field *f, bool x)
{
	memcpy((unsigned char *)cfg + f->off, &x, sizeof(x));
}

/* Caller has checked that len < f->width. */
static void store_str(struct mc_config *cfg, const struct field *f,
    const char *s, size_t len)
{
	char *dst = (char *)cfg + f->off;

	memcpy(dst, s, len);
	dst[len] = '\0';
}

void mc_config_defaults(struct mc_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	for (int i = 0; i < MC_CFG_NKEYS; i++) {
		const struct field *f = &schema[i];

		switch (f->type) {
		case V_INT:
			store_int(cfg, f, (uint64_t)f->def_int);
			break;
		case V_FLOAT:
			store_float(cfg, f, f->def_float);
			break;
		case V_BOOL:
			store_bool(cfg, f, f->def_int != 0);
			break;
		case V_STRING:
			store_str(cfg, f, f->def_str, strlen(f->def_str));
			break;
		}
	}
}

const char *mc_config_key_name(enum mc_config_key key)
{
	if ((int)key < 0 || key >= MC_CFG_NKEYS)
		return "-";
	return schema[key].name;
}

int mc_config_error(const struct mc_config *cfg, enum mc_config_key key,
    char *err, size_t errlen, const char *fmt, ...)
{
	uint32_t line = 0;
	va_list ap;

	if ((int)key >= 0 && key < MC_CFG_NKEYS)
		line = cfg->line[key];
	va_start(ap, fmt);
	vreport(err, errlen, cfg->source, line, mc_config_key_name(key), fmt, ap);
	va_end(ap);
	return MC_CONFIG_EX;
}

/* ------------------------------------------------------------------ */
/* Whole-buffer checks                                                  */

/* Length of the valid UTF-8 sequence at s (s[0] >= 0x80), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;               /* continuation byte, overlong C0/C1, > U+10FFFF */
	/* The second byte's range excludes overlongs, surrogates, > U+10FFFF. */
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/*
 * Reject bytes TOML never allows anywhere (not even in comments) before
 * tokenizing, so the tokenizer can treat every byte as printable text.
 */
static int scan_bytes(struct parser *ps, const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	uint32_t line = 1;

	for (size_t i = 0; i < len;) {
		unsigned char ch = s[i];
		size_t n;

		if (ch == '\n') {
			line++;
			i++;
			continue;
		}
		if (ch == '\0')
			return fail(ps, line, "-", "NUL byte in file (at byte offset %zu)", i);
		if (ch == '\r' && i + 1 < len && s[i + 1] == '\n') {
			i++;
			continue;
		}
		if (ch == '\r')
			return fail(ps, line, "-", "carriage return not followed by a newline");
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return fail(ps, line, "-", "control character 0x%02x in file", ch);
		if (ch < 0x80) {
			i++;
			continue;
		}
		n = utf8_len(s + i, len - i);
		if (n == 0)
			return fail(ps, line, "-",
			    "invalid UTF-8 (byte 0x%02x at byte offset %zu)", ch, i);
		i += n;
	}
	return 0;
}

static bool is_blank(const char *text, size_t len)
{
	/* Not strchr(" \t\r\n", ch): that would also match a NUL byte. */
	for (size_t i = 0; i < len; i++)
		if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r' &&
		    text[i] != '\n')
			return false;
	return true;
}

/* ------------------------------------------------------------------ */
/* Tokenizer                                                            */

static bool is_ws(char ch)
{
	return ch == ' ' || ch == '\t';
}

static bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static bool is_bare(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	    is_digit(ch) || ch == '_' || ch == '-';
}

static void skip_ws(struct cur *c)
{
	while (c->p < c->end && is_ws(*c->p))
		c->p++;
}

/* After optional whitespace: end of line or a comment? */
static bool at_eol(struct cur *c)
{
	skip_ws(c);
	return c->p == c->end || *c->p == '#';
}

/*
 * A key: bare parts joined by dots, whitespace allowed around the dots.
 * `what` names the construct for messages ("key" or "table name").
 */
static int parse_key(struct parser *ps, struct cur *c, uint32_t line,
    const char *what, char *out, size_t outlen)
{
	char buf[CFG_SHOW_MAX + 16];
	size_t n = 0;

	for (;;) {
		const char *start;
		size_t k;

		skip_ws(c);
		if (c->p < c->end && (*c->p == '"' || *c->p == '\''))
			return fail(ps, line, "-",
			    "quoted keys are not supported by mcpcore's TOML subset");
		start = c->p;
		while (c->p < c->end && is_bare(*c->p))
			c->p++;
		k = (size_t)(c->p - start);
		if (k == 0 && n == 0 && c->p == c->end)
			return fail(ps, line, "-", "expected a %s", what);
		if (k == 0 && n == 0)
			return fail(ps, line, "-", "expected a %s, found '%s'",
			    what, show_rest(buf, sizeof(buf), c));
		if (k == 0)
			return fail(ps, line, "-", "empty part in dotted %s '%.*s'",
			    what, (int)n, out);
		if (n + k + 2 > outlen)
			return fail(ps, line, "-", "%s too long (max %zu bytes)",
			    what, outlen - 1);
		memcpy(out + n, start, k);
		n += k;
		out[n] = '\0';
		skip_ws(c);
		if (c->p == c->end || *c->p != '.')
			return 0;
		out[n++] = '.';
		c->p++;
	}
}

/* Bytes in the character at p (the buffer was checked to be UTF-8). */
static size_t char_len(const char *p, const char *end)
{
	size_t n;

	if (((unsigned char)*p & 0x80) == 0)
		return 1;
	n = utf8_len((const unsigned char *)p, (size_t)(end - p));
	return n ? n : 1;
}

/* Append UTF-8 for code point cp (<= U+FFFF here). */
static size_t put_utf8(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	out[0] = (char)(0xe0 | (cp >> 12));
	out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[2] = (char)(0x80 | (cp & 0x3f));
	return 3;
}

static int hex_value(char ch)
{
	if (is_digit(ch))
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* The escape after a backslash; c->p is on the character after '\'. */
static int parse_escape(struct parser *ps, struct cur *c, uint32_t line,
    const char *key, char *out, size_t *outn)
{
	char buf[CFG_SHOW_MAX + 16];
	uint32_t cp = 0;
	char esc = *c->p++;

	switch (esc) {
	case '"': out[0] = '"'; *outn = 1; return 0;
	case '\\': out[0] = '\\'; *outn = 1; return 0;
	case 'n': out[0] = '\n'; *outn = 1; return 0;
	case 't': out[0] = '\t'; *outn = 1; return 0;
	case 'r': out[0] = '\r'; *outn = 1; return 0;
	case 'u':
		for (int i = 0; i < 4; i++) {
			int h = c->p < c->end ? hex_value(*c->p) : -1;

			if (h < 0)
				return fail(ps, line, key,
				    "bad escape in string: \\u needs 4 hex digits");
			cp = cp << 4 | (uint32_t)h;
			c->p++;
		}
		if (cp == 0)
			return fail(ps, line, key,
			    "bad escape in string: \\u0000 (NUL) is not allowed");
		if (cp >= 0xd800 && cp <= 0xdfff)
			return fail(ps, line, key,
			    "bad escape in string: \\u%04" PRIX32
			    " is a surrogate, not a Unicode character", cp);
		*outn = put_utf8(out, cp);
		return 0;
	default:
		/* Show the whole (possibly multi-byte) character after '\'. */
		c->p--;
		return fail(ps, line, key,
		    "bad escape '\\%s' in string (allowed: \\\" \\\\ \\n \\t \\r \\uXXXX)",
		    show(buf, sizeof(buf), c->p, char_len(c->p, c->end)));
	}
}

/* A basic string "..."; c->p is on the opening quote. */
static int parse_string(struct parser *ps, struct cur *c, uint32_t line,
    const char *key, struct value *v)
{
	size_t n = 0;

	c->p++;
	while (c->p < c->end && *c->p != '"') {
		char tmp[4];
		size_t k = 1;
		int rc;

		if (*c->p == '\\') {
			c->p++;
			if (c->p == c->end)
				break;          /* "abc\ at end of line: unterminated */
			rc = parse_escape(ps, c, line, key, tmp, &k);
			if (rc)
				return rc;
		} else {
			tmp[0] = *c->p++;
		}
		if (n + k >= sizeof(v->s))
			return fail(ps, line, key, "string too long (max %zu bytes)",
			    sizeof(v->s) - 1);
		memcpy(v->s + n, tmp, k);
		n += k;
	}
	if (c->p == c->end)
		return fail(ps, line, key, "unterminated string (missing closing '\"')");
	c->p++;
	v->s[n] = '\0';
	v->len = n;
	v->type = V_STRING;
	return 0;
}

/* digit ('_'? digit)*: TOML allows '_' only between two digits. */
static bool scan_digits(const char *t, size_t n, size_t *i)
{
	if (*i >= n || !is_digit(t[*i]))
		return false;
	while (*i < n) {
		if (is_digit(t[*i]))
			(*i)++;
		else if (t[*i] == '_' && *i + 1 < n && is_digit(t[*i + 1]))
			(*i)++;
		else
			break;
	}
	return true;
}

static int parse_int(struct parser *ps, uint32_t line, const char *key,
    const char *t, size_t n, struct value *v)
{
	char buf[CFG_SHOW_MAX + 16];
	uint64_t acc = 0;
	bool neg = t[0] == '-';

	for (size_t i = 0; i < n; i++) {
		unsigned d;

		if (!is_digit(t[i]))
			continue;       /* sign and underscores */
		d = (unsigned)(t[i] - '0');
		if (acc > (UINT64_MAX - d) / 10)
			goto range;
		acc = acc * 10 + d;
	}
	if (neg && acc > (uint64_t)INT64_MAX + 1)
		goto range;
	if (!neg && acc > (uint64_t)INT64_MAX)
		goto range;
	/* -2^63 has no positive counterpart, so negate in unsigned arithmetic. */
	v->i = neg ? (int64_t)(0 - acc) : (int64_t)acc;
	v->type = V_INT;
	return 0;
range:
	return fail(ps, line, key, "integer %s is out of the 64-bit range",
	    show(buf, sizeof(buf), t, n));
}

static int parse_float(struct parser *ps, uint32_t line, const char *key,
    const char *t, size_t n, struct value *v)
{
	char buf[CFG_SHOW_MAX + 16];
	char clean[128];
	size_t k = 0;
	char *end;
	double x;

	for (size_t i = 0; i < n; i++) {
		if (t[i] == '_')
			continue;
		if (k + 1 >= sizeof(clean))
			return fail(ps, line, key, "invalid number '%s' (too long)",
			    show(buf, sizeof(buf), t, n));
		clean[k++] = t[i];
	}
	clean[k] = '\0';
	/* strtod follows LC_NUMERIC, which a host process (e.g. Python) may have
	 * changed; the file's syntax is always '.', so parse in the C locale. */
	if (ps->c_locale == (locale_t)0) {
		ps->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
		if (ps->c_locale == (locale_t)0)
			return fail(ps, line, key, "cannot create the C locale: %s",
			    strerror_r(errno, buf, sizeof(buf)));
	}
	errno = 0;
	x = strtod_l(clean, &end, ps->c_locale);
	if (*end != '\0')
		return fail(ps, line, key, "invalid number '%s'",
		    show(buf, sizeof(buf), t, n));
	if (errno == ERANGE && isinf(x))
		return fail(ps, line, key, "float %s is out of range",
		    show(buf, sizeof(buf), t, n));
	/* Underflow (ERANGE with a tiny or zero result) is accepted: the value
	 * is the nearest double, and range checks judge it. */
	v->f = x;
	v->type = V_FLOAT;
	return 0;
}

/*
 * A decimal integer or float token (already cut at whitespace or '#'):
 *   [+-] int-part [ '.' digits ] [ [eE] [+-] digits ]
 * with no leading zeros in int-part and '_' only between digits.
 */
static int parse_number(struct parser *ps, uint32_t line, const char *key,
    const char *t, size_t n, struct value *v)
{
	static const char unsupported[] = "not supported by mcpcore's TOML subset";
	char buf[CFG_SHOW_MAX + 16];
	bool is_float = false, sign = false;
	size_t i = 0, start;

	if (t[i] == '+' || t[i] == '-') {
		sign = true;
		i++;
	}
	start = i;
	if (n - i >= 2 && t[i] == '0' && strchr("xob", t[i + 1]))
		return fail(ps, line, key,
		    "hexadecimal, octal and binary integers are %s", unsupported);
	if (!scan_digits(t, n, &i))
		goto invalid;
	if (i < n && !sign && (t[i] == '-' || t[i] == ':'))
		return fail(ps, line, key, "dates and times are %s", unsupported);
	if (t[start] == '0' && i - start > 1)
		return fail(ps, line, key, "leading zeros are not allowed in '%s'",
		    show(buf, sizeof(buf), t, n));
	if (i < n && t[i] == '.') {
		i++;
		if (!scan_digits(t, n, &i))
			goto invalid;
		is_float = true;
	}
	if (i < n && (t[i] == 'e' || t[i] == 'E')) {
		i++;
		if (i < n && (t[i] == '+' || t[i] == '-'))
			i++;
		if (!scan_digits(t, n, &i))
			goto invalid;
		is_float = true;
	}
	if (i != n)
		goto invalid;
	if (is_float)
		return parse_float(ps, line, key, t, n, v);
	return parse_int(ps, line, key, t, n, v);
invalid:
	return fail(ps, line, key, "invalid number '%s'", show(buf, sizeof(buf), t, n));
}

static bool token_is(const char *t, size_t n, const char *word)
{
	return strlen(word) == n && memcmp(t, word, n) == 0;
}

/* The value after '='; c->p is on its first character. */
static int parse_value(struct parser *ps, struct cur *c, uint32_t line,
    const char *key, struct value *v)
{
	static const char unsupported[] = "not supported by mcpcore's TOML subset";
	char buf[CFG_SHOW_MAX + 16];
	const char *t;
	size_t n;

	if (c->p == c->end || *c->p == '#')
		return fail(ps, line, key, "missing value after '='");
	switch (*c->p) {
	case '"':
		if (c->end - c->p >= 3 && c->p[1] == '"' && c->p[2] == '"')
			return fail(ps, line, key,
			    "multi-line strings (\"\"\"...\"\"\") are %s", unsupported);
		return parse_string(ps, c, line, key, v);
	case '\'':
		return fail(ps, line, key,
		    "literal strings ('...') are %s; use \"...\"", unsupported);
	case '[':
		return fail(ps, line, key, "arrays are %s", unsupported);
	case '{':
		return fail(ps, line, key, "inline tables are %s", unsupported);
	default:
		break;
	}

	t = c->p;
	while (c->p < c->end && !is_ws(*c->p) && *c->p != '#')
		c->p++;
	n = (size_t)(c->p - t);
	if (token_is(t, n, "true") || token_is(t, n, "false")) {
		v->type = V_BOOL;
		v->b = t[0] == 't';
		return 0;
	}
	if (token_is(t, n, "inf") || token_is(t, n, "+inf") || token_is(t, n, "-inf") ||
	    token_is(t, n, "nan") || token_is(t, n, "+nan") || token_is(t, n, "-nan"))
		return fail(ps, line, key, "inf and nan are %s", unsupported);
	if (is_digit(t[0]) || t[0] == '+' || t[0] == '-' || t[0] == '.')
		return parse_number(ps, line, key, t, n, v);
	return fail(ps, line, key,
	    "invalid value '%s' (strings must be in double quotes)",
	    show(buf, sizeof(buf), t, n));
}

/* ------------------------------------------------------------------ */
/* Tables                                                               */

static struct table_def *find_table(struct parser *ps, const char *name)
{
	for (unsigned i = 0; i < ps->ntables; i++)
		if (strcmp(ps->tables[i].name, name) == 0)
			return &ps->tables[i];
	return NULL;
}

static int add_table(struct parser *ps, uint32_t line, const char *key,
    const char *name, bool header)
{
	struct table_def *t;

	if (ps->ntables == CFG_TABLE_MAX)
		return fail(ps, line, key, "too many tables (max %d)", CFG_TABLE_MAX);
	t = &ps->tables[ps->ntables++];
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->line = line;
	t->header = header;
	return 0;
}

/*
 * The dotted key `rel` in the current table implicitly defines the tables
 * before its last part (in [regions], core.protocol defines regions.core).
 * TOML forbids adding to a table that a [header] defined this way, and a
 * later [header] for one of them is caught as a duplicate table.
 */
static int define_dotted_tables(struct parser *ps, uint32_t line,
    const char *rel, const char *full)
{
	size_t base = ps->prefix[0] ? strlen(ps->prefix) + 1 : 0;

	for (const char *dot = strchr(rel, '.'); dot; dot = strchr(dot + 1, '.')) {
		char name[CFG_KEY_MAX];
		struct table_def *t;

		snprintf(name, sizeof(name), "%.*s", (int)(base + (size_t)(dot - rel)), full);
		t = find_table(ps, name);
		if (t && t->header)
			return fail(ps, line, full,
			    "table [%s] was defined on line %" PRIu32
			    "; set its keys there, not with dotted keys", name, t->line);
		if (!t && add_table(ps, line, full, name, false))
			return MC_CONFIG_EX;
	}
	return 0;
}

/* "[a]" or "[a.b]"; c->p is on the '['. */
static int parse_header(struct parser *ps, struct cur *c, uint32_t line)
{
	char buf[CFG_SHOW_MAX + 16];
	char name[CFG_KEY_MAX], hint[CFG_KEY_MAX];
	struct table_def *t;
	int rc;

	c->p++;
	if (c->p < c->end && *c->p == '[')
		return fail(ps, line, "-",
		    "arrays of tables ([[...]]) are not supported by mcpcore's TOML subset");
	rc = parse_key(ps, c, line, "table name", name, sizeof(name));
	if (rc)
		return rc;
	if (c->p == c->end)
		return fail(ps, line, "-", "bad table header: missing ']'");
	if (*c->p != ']')
		return fail(ps, line, "-", "bad table header: expected ']', found '%s'",
		    show_rest(buf, sizeof(buf), c));
	c->p++;
	if (!at_eol(c))
		return fail(ps, line, name, "unexpected text after table header: '%s'",
		    show_rest(buf, sizeof(buf), c));

	if (!is_table(name)) {
		if (lookup_key(name) >= 0)
			return fail(ps, line, name,
			    "unknown table [%s] ('%s' is a key, not a table)", name, name);
		if (suggest_table(name, hint, sizeof(hint)))
			return fail(ps, line, name,
			    "unknown table [%s] (did you mean [%s]?)", name, hint);
		return fail(ps, line, name, "unknown table [%s]", name);
	}
	t = find_table(ps, name);
	if (t && t->header)
		return fail(ps, line, name,
		    "duplicate table [%s] (first defined on line %" PRIu32 ")",
		    name, t->line);
	if (t)
		return fail(ps, line, name,
		    "duplicate table [%s] (already defined by dotted keys on line %" PRIu32 ")",
		    name, t->line);
	rc = add_table(ps, line, name, name, true);
	if (rc)
		return rc;
	snprintf(ps->prefix, sizeof(ps->prefix), "%s", name);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Checking and storing one key = value                                 */

static const char *type_name(enum vtype t)
{
	switch (t) {
	case V_INT: return "integer";
	case V_FLOAT: return "float";
	case V_BOOL: return "boolean";
	case V_STRING: return "string";
	}
	return "?";
}

static int unknown_key(struct parser *ps, uint32_t line, const char *full)
{
	const char *hint;

	if (is_table(full))
		return fail(ps, line, full,
		    "'%s' is a table, not a key; set the keys inside it", full);
	hint = suggest_key(full);
	if (hint && !strchr(hint, '.'))
		return fail(ps, line, full,
		    "unknown key '%s' (did you mean %s? it must come before the first [table])",
		    full, hint);
	if (hint)
		return fail(ps, line, full, "unknown key '%s' (did you mean %s?)",
		    full, hint);
	return fail(ps, line, full, "unknown key '%s'", full);
}

static int check_int(struct parser *ps, uint32_t line, const struct field *f,
    int64_t x)
{
	if (f->check == C_SIZE) {
		if (x <= 0)
			return fail(ps, line, f->name,
			    "bad size %" PRId64 ": must be greater than 0", x);
		if ((uint64_t)x % CFG_PAGE)
			return fail(ps, line, f->name,
			    "bad size %" PRId64 ": not a multiple of 4096 (the page size)", x);
		if ((uint64_t)x > CFG_TIB)
			return fail(ps, line, f->name,
			    "bad size %" PRId64 ": larger than 1 TiB (%" PRIu64 ")",
			    x, (uint64_t)CFG_TIB);
		return 0;
	}
	if (x < f->min || x > f->max)
		return fail(ps, line, f->name,
		    "out of range: %" PRId64 " (allowed %" PRId64 "..%" PRId64 ")",
		    x, f->min, f->max);
	return 0;
}

static int check_float(struct parser *ps, uint32_t line, const struct field *f,
    double x)
{
	/* C_UNIT is the only float check; !(x > 0) also rejects a NaN. */
	if (!isfinite(x) || !(x > 0) || x > 1)
		return fail(ps, line, f->name,
		    "out of range: %g (must be > 0 and <= 1)", x);
	return 0;
}

/* "a.b.c.d:port" or "[v6]:port" with port 1..65535. */
static bool listen_valid(const char *s)
{
	char host[64];
	const char *colon;
	struct in6_addr a6;
	struct in_addr a4;
	char *end;
	long port;
	size_t n;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':')
			return false;
		n = (size_t)(close - s - 1);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return false;
		n = (size_t)(colon - s);
	}
	if (n == 0 || n >= sizeof(host))
		return false;
	memcpy(host, s[0] == '[' ? s + 1 : s, n);
	host[n] = '\0';
	if (s[0] == '[' ? inet_pton(AF_INET6, host, &a6) != 1 : inet_pton(AF_INET, host, &a4) != 1)
		return false;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	return colon[1] >= '0' && colon[1] <= '9' && *end == '\0' && errno == 0 &&
	    port >= 1 && port <= 65535;
}

static int check_string(struct parser *ps, uint32_t line, const struct field *f,
    const struct value *v)
{
	char buf[CFG_SHOW_MAX + 16];
	char list[64] = "";

	if (v->len >= f->width)
		return fail(ps, line, f->name, "string too long (%zu bytes, max %zu)",
		    v->len, f->width - 1);
	switch (f->check) {
	case C_INSTANCE:
		if (v->len == 0 || strspn(v->s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "abcdefghijklmnopqrstuvwxyz0123456789_-") != v->len)
			return fail(ps, line, f->name,
			    "invalid instance name '%s' (must be 1-%d characters of A-Z a-z 0-9 _ -)",
			    show(buf, sizeof(buf), v->s, v->len), MC_INSTANCE_MAX - 1);
		return 0;
	case C_PATH:
		if (v->len == 0)
			return fail(ps, line, f->name, "path must not be empty");
		return 0;
	case C_LISTEN:
		if (!listen_valid(v->s))
			return fail(ps, line, f->name, "invalid listen address '%s' (expected "
			    "IPv4:port or [IPv6]:port, port 1-65535, e.g. \"127.0.0.1:3000\")",
			    show(buf, sizeof(buf), v->s, v->len));
		return 0;
	case C_URLPATH:
		if (v->s[0] != '/' || strspn(v->s + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "abcdefghijklmnopqrstuvwxyz0123456789/_.-") != v->len - 1)
			return fail(ps, line, f->name, "invalid path '%s' (must start with / and "
			    "use only A-Z a-z 0-9 / _ . -)", show(buf, sizeof(buf), v->s, v->len));
		return 0;
	case C_CHOICE:
		for (const char *const *ch = f->choices; *ch; ch++) {
			if (strcmp(v->s, *ch) == 0)
				return 0;
			snprintf(list + strlen(list), sizeof(list) - strlen(list),
			    "%s%s", ch == f->choices ? "" : ", ", *ch);
		}
		return fail(ps, line, f->name, "invalid value '%s' (expected one of: %s)",
		    show(buf, sizeof(buf), v->s, v->len), list);
	default:
		return 0;
	}
}

/* Check `full = v` against the schema and store it. */
static int apply(struct parser *ps, uint32_t line, const char *rel,
    const char *full, const struct value *v)
{
	const struct field *f;
	int idx, rc;

	idx = lookup_key(full);
	if (idx < 0)
		return unknown_key(ps, line, full);
	f = &schema[idx];
	if (ps->cfg->line[idx])
		return fail(ps, line, full, "duplicate key (first set on line %" PRIu32 ")",
		    ps->cfg->line[idx]);
	rc = define_dotted_tables(ps, line, rel, full);
	if (rc)
		return rc;
	/* An integer is accepted where a float is expected: learning_rate = 1
	 * is clearly meant as 1.0 and converts exactly. */
	if (f->type != v->type && !(f->type == V_FLOAT && v->type == V_INT))
		return fail(ps, line, full, "expected %s, got %s",
		    type_name(f->type), type_name(v->type));

	switch (f->type) {
	case V_INT:
		rc = check_int(ps, line, f, v->i);
		if (rc == 0)
			store_int(ps->cfg, f, (uint64_t)v->i);
		break;
	case V_FLOAT: {
		double x = v->type == V_INT ? (double)v->i : v->f;

		rc = check_float(ps, line, f, x);
		if (rc == 0)
			store_float(ps->cfg, f, x);
		break;
	}
	case V_BOOL:
		store_bool(ps->cfg, f, v->b);
		break;
	case V_STRING:
		rc = check_string(ps, line, f, v);
		if (rc == 0)
			store_str(ps->cfg, f, v->s, v->len);
		break;
	}
	if (rc == 0)
		ps->cfg->line[idx] = line;
	return rc;
}

/* "key = value"; c->p is on the key. */
static int parse_keyval(struct parser *ps, struct cur *c, uint32_t line)
{
	char buf[CFG_SHOW_MAX + 16];
	char rel[CFG_KEY_MAX], full[CFG_KEY_MAX];
	struct value v;
	size_t plen, rlen;
	int rc;

	rc = parse_key(ps, c, line, "key", rel, sizeof(rel));
	if (rc)
		return rc;
	/* full = prefix "." rel, or rel at the top level */
	plen = strlen(ps->prefix);
	rlen = strlen(rel);
	if (plen + 1 + rlen >= sizeof(full))
		return fail(ps, line, "-", "key too long (max %zu bytes)", sizeof(full) - 1);
	if (plen) {
		memcpy(full, ps->prefix, plen);
		full[plen++] = '.';
	}
	memcpy(full + plen, rel, rlen + 1);

	if (c->p == c->end || *c->p == '#')
		return fail(ps, line, full, "missing '=' after the key");
	if (*c->p != '=')
		return fail(ps, line, full, "expected '=' after the key, found '%s'",
		    show_rest(buf, sizeof(buf), c));
	c->p++;
	skip_ws(c);
	memset(&v, 0, offsetof(struct value, s));
	rc = parse_value(ps, c, line, full, &v);
	if (rc)
		return rc;
	if (!at_eol(c))
		return fail(ps, line, full, "unexpected text after the value: '%s'",
		    show_rest(buf, sizeof(buf), c));
	return apply(ps, line, rel, full, &v);
}

static int parse_line(struct parser *ps, const char *p, const char *end,
    uint32_t line)
{
	struct cur c = { p, end };

	if (at_eol(&c))
		return 0;               /* blank or comment */
	if (*c.p == '[')
		return parse_header(ps, &c, line);
	return parse_keyval(ps, &c, line);
}

static int parse_lines(struct parser *ps, const char *text, size_t len)
{
	const char *p = text, *end = text + len;
	uint32_t line = 0;
	int rc;

	/* Editors on some systems start files with a UTF-8 byte order mark;
	 * it carries no meaning, so skip it rather than call it a syntax error. */
	if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;

		line++;
		if (le > p && le[-1] == '\r')
			le--;
		rc = parse_line(ps, p, le, line);
		if (rc)
			return rc;
		p = nl ? nl + 1 : end;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Whole-config checks                                                  */

static int check_cross(struct parser *ps)
{
	const struct mc_config *cfg = ps->cfg;
	uint64_t sum;

	if (cfg->restart_backoff_max_ms < cfg->restart_backoff_ms) {
		/* Blame the key the file actually set (the max if both were). */
		if (cfg->line[MC_CFG_SUPERVISOR_RESTART_BACKOFF_MAX_MS] ||
		    !cfg->line[MC_CFG_SUPERVISOR_RESTART_BACKOFF_MS])
			return mc_config_error(cfg, MC_CFG_SUPERVISOR_RESTART_BACKOFF_MAX_MS,
			    ps->err, ps->errlen,
			    "%" PRIu32 " is less than supervisor.restart_backoff_ms (%" PRIu32 ")",
			    cfg->restart_backoff_max_ms, cfg->restart_backoff_ms);
		return mc_config_error(cfg, MC_CFG_SUPERVISOR_RESTART_BACKOFF_MS,
		    ps->err, ps->errlen,
		    "%" PRIu32 " is greater than supervisor.restart_backoff_max_ms (%" PRIu32 ")",
		    cfg->restart_backoff_ms, cfg->restart_backoff_max_ms);
	}

	/* Each term is at most 1 TiB, so the sum cannot overflow. */
	sum = cfg->ring_buffer_size + cfg->state_cache_size + cfg->message_queue_size;
	if (cfg->shared_memory_size != sum)
		return mc_config_error(cfg, MC_CFG_MEMORY_SHARED_MEMORY_SIZE,
		    ps->err, ps->errlen,
		    "%" PRIu64 " must equal the three shared.* regions: "
		    "memory.ring_buffer_size (%" PRIu64 ") + core.state_cache_size (%" PRIu64
		    ") + memory.message_queue_size (%" PRIu64 ") = %" PRIu64,
		    cfg->shared_memory_size, cfg->ring_buffer_size,
		    cfg->state_cache_size, cfg->message_queue_size, sum);
	return 0;
}

/*
 * A relative rocksdb_path means "next to the config file", so that the
 * result does not depend on the directory the supervisor was started in
 * relative to the file.  The default ("data") is resolved the same way.
 */
static int resolve_rocksdb_path(struct parser *ps)
{
	struct mc_config *cfg = ps->cfg;
	const char *slash = strrchr(ps->name, '/');
	char out[MC_CONFIG_PATH_MAX];
	size_t dirlen, pathlen;

	if (cfg->rocksdb_path[0] == '/' || slash == NULL)
		return 0;               /* absolute, or the config is in "." */
	dirlen = (size_t)(slash - ps->name) + 1;        /* keep the '/' */
	pathlen = strlen(cfg->rocksdb_path);
	if (dirlen + pathlen >= sizeof(out))
		return mc_config_error(cfg, MC_CFG_PERSISTENCE_ROCKSDB_PATH,
		    ps->err, ps->errlen,
		    "path too long once resolved against the config's directory "
		    "(%zu bytes, max %d)", dirlen + pathlen, MC_CONFIG_PATH_MAX - 1);
	memcpy(out, ps->name, dirlen);
	memcpy(out + dirlen, cfg->rocksdb_path, pathlen + 1);
	memcpy(cfg->rocksdb_path, out, dirlen + pathlen + 1);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Entry points                                                         */

int mc_config_parse(const char *name, const char *text, size_t len,
    struct mc_config *cfg, char *err, size_t errlen)
{
	struct parser ps;
	size_t namelen;
	int rc;

	memset(&ps, 0, sizeof(ps));
	ps.name = name ? name : "-";
	ps.err = err;
	ps.errlen = errlen;
	ps.cfg = cfg;
	ps.c_locale = (locale_t)0;

	mc_config_defaults(cfg);
	namelen = strlen(ps.name);
	if (namelen >= sizeof(cfg->source)) {
		rc = fail(&ps, 0, "-", "file name too long (%zu bytes, max %zu)",
		    namelen, sizeof(cfg->source) - 1);
		goto out;
	}
	memcpy(cfg->source, ps.name, namelen + 1);

	if (text == NULL && len > 0) {
		rc = fail(&ps, 0, "-", "no text to parse");
		goto out;
	}
	if (len > CFG_FILE_MAX) {
		rc = fail(&ps, 0, "-", "file too large (%zu bytes, max %u)",
		    len, CFG_FILE_MAX);
		goto out;
	}
	if (len == 0 || is_blank(text, len)) {
		rc = fail(&ps, 0, "-", "file is empty");
		goto out;
	}
	rc = scan_bytes(&ps, text, len);
	if (rc)
		goto out;
	rc = parse_lines(&ps, text, len);
	if (rc)
		goto out;
	rc = check_cross(&ps);
	if (rc)
		goto out;
	rc = resolve_rocksdb_path(&ps);
out:
	if (ps.c_locale != (locale_t)0)
		freelocale(ps.c_locale);
	return rc;
}

int mc_config_load(const char *path, struct mc_config *cfg,
    char *err, size_t errlen)
{
	char ebuf[128];
	char *buf = NULL;
	size_t n = 0;
	struct stat st;
	int fd = -1, rc;

	if (path == NULL)
		return file_fail("-", err, errlen, "no config file given");
	/* O_NONBLOCK: a FIFO given by mistake must not hang the open; it is
	 * then rejected as not a regular file. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = file_fail(path, err, errlen, "cannot open: %s",
		    strerror_r(errno, ebuf, sizeof(ebuf)));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		rc = file_fail(path, err, errlen, "cannot stat: %s",
		    strerror_r(errno, ebuf, sizeof(ebuf)));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = file_fail(path, err, errlen, "is a directory, not a config file");
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = file_fail(path, err, errlen, "not a regular file");
		goto out;
	}
	if (st.st_size > (off_t)CFG_FILE_MAX) {
		rc = file_fail(path, err, errlen, "file too large (%jd bytes, max %u)",
		    (intmax_t)st.st_size, CFG_FILE_MAX);
		goto out;
	}
	/* Read to EOF rather than trusting st_size: the file may grow. */
	buf = malloc(CFG_FILE_MAX + 1);
	if (buf == NULL) {
		rc = file_fail(path, err, errlen, "out of memory");
		goto out;
	}
	while (n <= CFG_FILE_MAX) {
		ssize_t r = read(fd, buf + n, CFG_FILE_MAX + 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = file_fail(path, err, errlen, "cannot read: %s",
			    strerror_r(errno, ebuf, sizeof(ebuf)));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > CFG_FILE_MAX) {
		rc = file_fail(path, err, errlen, "file too large (more than %u bytes)",
		    CFG_FILE_MAX);
		goto out;
	}
	rc = mc_config_parse(path, buf, n, cfg, err, errlen);
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}
