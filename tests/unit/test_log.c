/*
 * test_log.c - unit tests for the JSON-lines logger (shm/log.c, contract
 * in shm/mc_log.h).
 *
 * stderr is captured with a pipe (dup2 over fd 2) drained by a reader
 * thread, so lines of any size and from any number of writers can be
 * collected; every line is parsed back with jansson.
 */
#define _GNU_SOURCE

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mc_log.h"

/* ------------------------------------------------------------------ */
/* Capture of fd 2                                                     */

struct capture {
	int rfd, saved;
	pthread_t reader;
	char *buf;
	size_t len, cap;
};

static void *cap_reader(void *arg)
{
	struct capture *c = arg;

	for (;;) {
		ssize_t n;

		if (c->cap - c->len < 65536) {
			c->cap = c->cap * 2 + 65536;
			c->buf = realloc(c->buf, c->cap + 1);
			if (c->buf == NULL)
				abort();
		}
		n = read(c->rfd, c->buf + c->len, c->cap - c->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		c->len += (size_t)n;
	}
	return NULL;
}

/* Point fd 2 at a fresh pipe (no reader yet: fork writers now, if any). */
static void cap_redirect(struct capture *c)
{
	int p[2];

	memset(c, 0, sizeof(*c));
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	fflush(stderr);
	c->saved = dup(STDERR_FILENO);
	cr_assert_geq(c->saved, 0);
	cr_assert_eq(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
	close(p[1]);
	c->rfd = p[0];
}

/*
 * Start draining the pipe.  Kept apart from cap_redirect because forking
 * while the reader thread allocates can leave the child's allocator
 * locked (seen under ASan).
 */
static void cap_read(struct capture *c)
{
	cr_assert_eq(pthread_create(&c->reader, NULL, cap_reader, c), 0);
}

static void cap_start(struct capture *c)
{
	cap_redirect(c);
	cap_read(c);
}

/* Restore stderr and collect everything written meanwhile (NUL-terminated). */
static char *cap_stop(struct capture *c, size_t *len)
{
	dup2(c->saved, STDERR_FILENO);
	close(c->saved);
	pthread_join(c->reader, NULL);
	close(c->rfd);
	if (c->buf == NULL)
		c->buf = calloc(1, 1);
	c->buf[c->len] = '\0';
	if (len)
		*len = c->len;
	return c->buf;
}

/* Split captured text into lines (the '\n' is required and removed). */
static int split_lines(char *text, size_t len, char ***out)
{
	int n = 0, cap = 16;
	char **lines = malloc(sizeof(char *) * (size_t)cap);
	char *p = text, *end = text + len;

	cr_assert_not_null(lines);
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));

		cr_assert_not_null(nl, "last line not terminated by a newline: '%s'", p);
		*nl = '\0';
		if (n == cap) {
			cap *= 2;
			lines = realloc(lines, sizeof(char *) * (size_t)cap);
			cr_assert_not_null(lines);
		}
		lines[n++] = p;
		p = nl + 1;
	}
	*out = lines;
	return n;
}

static json_t *parse(const char *line)
{
	json_error_t jerr;
	json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);

	cr_assert_not_null(j, "not JSON (%s): '%s'", jerr.text, line);
	cr_assert(json_is_object(j), "not an object: '%s'", line);
	return j;
}

static const char *jstr(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	cr_assert(json_is_string(v), "\"%s\" missing or not a string", key);
	return json_string_value(v);
}

/* Run `fn` with stderr captured; return its lines, parsed. */
static int logged(void (*fn)(void), json_t ***out, char **raw)
{
	struct capture c;
	size_t len;
	char *text, **lines;
	int n;
	json_t **objs;

	cap_start(&c);
	fn();
	text = cap_stop(&c, &len);
	if (raw)
		*raw = strdup(text);
	n = split_lines(text, len, &lines);
	objs = calloc((size_t)n + 1, sizeof(*objs));
	for (int i = 0; i < n; i++)
		objs[i] = parse(lines[i]);
	free(lines);
	free(text);
	*out = objs;
	return n;
}

static void free_objs(json_t **objs, int n)
{
	for (int i = 0; i < n; i++)
		json_decref(objs[i]);
	free(objs);
}

static void clean_env(void)
{
	unsetenv("MCPCORE_LOG_LEVEL");
}

TestSuite(log, .init = clean_env, .timeout = 60);

/* ------------------------------------------------------------------ */

static void log_one(void)
{
	mc_log_init("tester", "info");
	mc_log(MC_LOG_INFO, "thing_happened", "{s:s, s:i, s:s}", "message", "it happened",
	    "count", 42, "correlation_id", "abc-123");
}

Test(log, one_line_with_fixed_fields_then_details)
{
	json_t **o;
	char *raw;
	int n = logged(log_one, &o, &raw);
	const char *pos[8];
	static const char *const order[] = {
		"\"time\":", "\"level\":", "\"component\":", "\"pid\":", "\"event\":",
	};

	cr_assert_eq(n, 1, "%d lines for one call: %s", n, raw);
	cr_assert_str_eq(jstr(o[0], "level"), "info");
	cr_assert_str_eq(jstr(o[0], "component"), "tester");
	cr_assert_str_eq(jstr(o[0], "event"), "thing_happened");
	cr_assert(json_is_integer(json_object_get(o[0], "pid")));
	cr_assert_eq(json_integer_value(json_object_get(o[0], "pid")), getpid());
	cr_assert_str_eq(jstr(o[0], "message"), "it happened");
	cr_assert_str_eq(jstr(o[0], "correlation_id"), "abc-123");
	cr_assert(json_is_integer(json_object_get(o[0], "count")), "count lost its type");
	cr_assert_eq(json_integer_value(json_object_get(o[0], "count")), 42);
	cr_assert_eq(json_object_size(o[0]), 8, "unexpected extra keys: %s", raw);
	/* fixed fields first, in their fixed order */
	cr_assert_eq(strncmp(raw, "{\"time\":\"", 9), 0, "line does not start with time: %s", raw);
	for (int i = 0; i < 5; i++) {
		pos[i] = strstr(raw, order[i]);
		cr_assert_not_null(pos[i], "%s missing", order[i]);
		if (i > 0)
			cr_assert_gt(pos[i], pos[i - 1], "%s out of order in %s", order[i], raw);
	}
	cr_assert_gt(strstr(raw, "\"message\":"), pos[4], "details before the fixed fields");
	free(raw);
	free_objs(o, n);
}

static void log_time(void)
{
	mc_log_init("clock", "info");
	mc_log(MC_LOG_WARN, "tick", NULL);
}

/* time: ISO 8601, UTC ("Z"), microseconds, close to now, whatever TZ says. */
Test(log, time_is_utc_iso8601_with_microseconds)
{
	json_t **o;
	int n, Y, Mo, D, h, mi, s, us;
	char z = 0;
	const char *t;
	struct tm tm;
	time_t when, now;

	setenv("TZ", "XYZ-10", 1);      /* ten hours east of UTC */
	tzset();
	n = logged(log_time, &o, NULL);
	now = time(NULL);
	cr_assert_eq(n, 1);
	t = jstr(o[0], "time");
	cr_assert_eq(strlen(t), 27, "time '%s' is not YYYY-MM-DDTHH:MM:SS.uuuuuuZ", t);
	cr_assert_eq(sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%6d%c", &Y, &Mo, &D, &h, &mi, &s, &us, &z),
	    8, "time '%s'", t);
	cr_assert_eq(z, 'Z', "time '%s' not marked UTC", t);
	cr_assert(t[4] == '-' && t[7] == '-' && t[10] == 'T' && t[13] == ':' && t[16] == ':' &&
	    t[19] == '.', "time '%s'", t);
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = Y - 1900;
	tm.tm_mon = Mo - 1;
	tm.tm_mday = D;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	when = timegm(&tm);
	cr_assert(when <= now + 5 && when >= now - 5, "time %s is %lld s away from now (UTC)", t,
	    (long long)(when - now));
	cr_assert_str_eq(jstr(o[0], "level"), "warn");
	free_objs(o, n);
}

static void log_all_levels(void)
{
	mc_log(MC_LOG_DEBUG, "ev_debug", NULL);
	mc_log(MC_LOG_INFO, "ev_info", NULL);
	mc_log(MC_LOG_WARN, "ev_warn", NULL);
	mc_log(MC_LOG_ERROR, "ev_error", NULL);
	mc_log_debug("m_debug", "{s:i}", "x", 1);
	mc_log_info("m_info", "{s:i}", "x", 1);
	mc_log_warn("m_warn", "{s:i}", "x", 1);
	mc_log_error("m_error", "{s:i}", "x", 1);
}

static const char *lvl_cfg;

static void init_then_all(void)
{
	mc_log_init("lv", lvl_cfg);
	log_all_levels();
}

/* Which of the 8 lines of log_all_levels() appear, as "diwe" flags. */
static void expect_levels(const char *cfg_level, const char *want)
{
	static const char *const names[] = { "debug", "info", "warn", "error" };
	json_t **o;
	int n, k = 0;

	lvl_cfg = cfg_level;
	n = logged(init_then_all, &o, NULL);
	for (int pass = 0; pass < 2; pass++)
		for (int l = 0; l < 4; l++) {
			char ev[16];

			if (want[l] == '-')
				continue;
			snprintf(ev, sizeof(ev), "%s_%s", pass ? "m" : "ev", names[l]);
			cr_assert_lt(k, n, "level %s: line %s missing", cfg_level ? cfg_level : "NULL", ev);
			cr_assert_str_eq(jstr(o[k], "event"), ev, "level %s", cfg_level ? cfg_level : "NULL");
			cr_assert_str_eq(jstr(o[k], "level"), names[l]);
			k++;
		}
	cr_assert_eq(n, k, "level %s: %d lines, expected %d", cfg_level ? cfg_level : "NULL", n, k);
	free_objs(o, n);
}

Test(log, levels_filter)
{
	expect_levels("debug", "diwe");
	expect_levels("info", "-iwe");
	expect_levels("warn", "--we");
	expect_levels("error", "---e");
	expect_levels(NULL, "-iwe");
	expect_levels("verbose", "-iwe");
	expect_levels("", "-iwe");
}

Test(log, enabled_matches_level)
{
	mc_log_init("x", "warn");
	cr_assert_not(mc_log_enabled(MC_LOG_DEBUG));
	cr_assert_not(mc_log_enabled(MC_LOG_INFO));
	cr_assert(mc_log_enabled(MC_LOG_WARN));
	cr_assert(mc_log_enabled(MC_LOG_ERROR));
	mc_log_init("x", "debug");
	cr_assert(mc_log_enabled(MC_LOG_DEBUG));
	mc_log_init("x", "error");
	cr_assert_not(mc_log_enabled(MC_LOG_WARN));
	cr_assert(mc_log_enabled(MC_LOG_ERROR));
}

Test(log, level_parse)
{
	cr_assert_eq(mc_log_level_parse("debug"), MC_LOG_DEBUG);
	cr_assert_eq(mc_log_level_parse("info"), MC_LOG_INFO);
	cr_assert_eq(mc_log_level_parse("warn"), MC_LOG_WARN);
	cr_assert_eq(mc_log_level_parse("error"), MC_LOG_ERROR);
	cr_assert_eq(mc_log_level_parse("fatal"), -1);
	cr_assert_eq(mc_log_level_parse("inf"), -1);
	cr_assert_eq(mc_log_level_parse("info "), -1);
	cr_assert_eq(mc_log_level_parse(""), -1);
	cr_assert_eq(mc_log_level_parse(NULL), -1);
}

Test(log, env_overrides_configured_level)
{
	setenv("MCPCORE_LOG_LEVEL", "debug", 1);
	expect_levels("error", "diwe");
	setenv("MCPCORE_LOG_LEVEL", "error", 1);
	expect_levels("debug", "---e");
	setenv("MCPCORE_LOG_LEVEL", "warn", 1);
	expect_levels(NULL, "--we");
	unsetenv("MCPCORE_LOG_LEVEL");
	expect_levels("warn", "--we");
}

static int evaluated;

static int side_effect(void)
{
	return ++evaluated;
}

static void debug_macro(void)
{
	mc_log_init("m", lvl_cfg);
	mc_log_debug("costly", "{s:i}", "n", side_effect());
}

/* mc_log_debug skips building its details when debug is off. */
Test(log, debug_macro_does_not_evaluate_when_disabled)
{
	json_t **o;
	int n;

	evaluated = 0;
	lvl_cfg = "info";
	n = logged(debug_macro, &o, NULL);
	cr_assert_eq(n, 0);
	cr_assert_eq(evaluated, 0, "details of a disabled debug line were built");
	free_objs(o, n);
	lvl_cfg = "debug";
	n = logged(debug_macro, &o, NULL);
	cr_assert_eq(n, 1);
	cr_assert_eq(evaluated, 1);
	cr_assert_eq(json_integer_value(json_object_get(o[0], "n")), 1);
	free_objs(o, n);
}

static const char nasty[] =
    "quote\" backslash\\ slash/ newline\n cr\r tab\t nul-less ctrl\x01\x1f del\x7f "
    "</script> \xc3\xa9t\xc3\xa9 \xe2\x9c\x93 \xf0\x9d\x84\x9e {\"json\":[1]}";
static const char nasty_event[] = "ev\"with\nnewline";

static void log_nasty(void)
{
	mc_log_init("comp\"onent", "info");
	mc_log(MC_LOG_ERROR, nasty_event, "{s:s, s:s}", "message", nasty, "key\nwith\"quote", "v");
}

Test(log, strings_are_escaped)
{
	json_t **o;
	char *raw;
	int n = logged(log_nasty, &o, &raw);
	size_t rl = strlen(raw);

	cr_assert_eq(n, 1, "escaping broke the line in %d: %s", n, raw);
	cr_assert_gt(rl, 1);
	cr_assert_eq(raw[rl - 1], '\n');
	for (size_t i = 0; i + 1 < rl; i++)
		cr_assert_geq((unsigned char)raw[i], 0x20, "raw control byte %#x at %zu in %s",
		    (unsigned char)raw[i], i, raw);
	cr_assert_str_eq(jstr(o[0], "message"), nasty);
	cr_assert_str_eq(jstr(o[0], "event"), nasty_event);
	cr_assert_str_eq(jstr(o[0], "component"), "comp\"onent");
	cr_assert_str_eq(jstr(o[0], "key\nwith\"quote"), "v");
	free(raw);
	free_objs(o, n);
}

static void log_typed(void)
{
	mc_log_init("t", "info");
	mc_log(MC_LOG_INFO, "typed", "{s:I, s:f, s:b, s:n, s:s, s:{s:[i,i]}, s:i}",
	    "big", (json_int_t)9007199254740993LL, "ratio", 1.5, "flag", 1, "nothing",
	    "empty", "", "nested", "a", 1, 2, "neg", -7);
}

Test(log, details_keep_their_types)
{
	json_t **o;
	int n = logged(log_typed, &o, NULL);
	json_t *nested, *arr;

	cr_assert_eq(n, 1);
	cr_assert(json_is_integer(json_object_get(o[0], "big")));
	cr_assert_eq(json_integer_value(json_object_get(o[0], "big")), 9007199254740993LL);
	cr_assert(json_is_real(json_object_get(o[0], "ratio")));
	cr_assert_eq(json_real_value(json_object_get(o[0], "ratio")), 1.5);
	cr_assert(json_is_true(json_object_get(o[0], "flag")));
	cr_assert(json_is_null(json_object_get(o[0], "nothing")));
	cr_assert_str_eq(jstr(o[0], "empty"), "");
	cr_assert_eq(json_integer_value(json_object_get(o[0], "neg")), -7);
	nested = json_object_get(o[0], "nested");
	cr_assert(json_is_object(nested));
	arr = json_object_get(nested, "a");
	cr_assert(json_is_array(arr) && json_array_size(arr) == 2);
	cr_assert_eq(json_integer_value(json_array_get(arr, 1)), 2);
	free_objs(o, n);
}

static void log_no_details(void)
{
	mc_log_init("bare", "info");
	mc_log(MC_LOG_INFO, "no_fmt", NULL);
	mc_log(MC_LOG_INFO, "empty_fmt", "");
	mc_log(MC_LOG_INFO, "empty_obj", "{}");
}

Test(log, no_details)
{
	json_t **o;
	int n = logged(log_no_details, &o, NULL);

	cr_assert_eq(n, 3);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(json_object_size(o[i]), 5, "line %d has %zu keys", i,
		    json_object_size(o[i]));
	cr_assert_str_eq(jstr(o[0], "event"), "no_fmt");
	cr_assert_str_eq(jstr(o[2], "event"), "empty_obj");
	free_objs(o, n);
}

static void log_big(void)
{
	size_t len = 200000;
	char *s = malloc(len + 1);

	for (size_t i = 0; i < len; i++)
		s[i] = (char)('a' + i % 26);
	s[len] = '\0';
	mc_log_init("big", "info");
	mc_log(MC_LOG_INFO, "big_line", "{s:s}", "message", s);
	mc_log(MC_LOG_INFO, "after", NULL);
	free(s);
}

/* A line far larger than a pipe buffer is still one whole line. */
Test(log, long_line_is_one_line)
{
	json_t **o;
	int n = logged(log_big, &o, NULL);

	cr_assert_eq(n, 2);
	cr_assert_eq(strlen(jstr(o[0], "message")), 200000);
	cr_assert_str_eq(jstr(o[1], "event"), "after");
	free_objs(o, n);
}

static void log_clash(void)
{
	mc_log_init("real", "info");
	mc_log(MC_LOG_WARN, "client_dead", "{s:s, s:i, s:s}", "client", "client0", "pid", 1,
	    "message", "a detail named like a fixed field");
}

/*
 * The fixed fields say who wrote the line.  A detail with the same name
 * (the supervisor's "client_dead" line passes the dead client's "pid")
 * must not silently replace them.
 */
Test(log, details_do_not_replace_fixed_fields)
{
	json_t **o;
	char *raw;
	int n = logged(log_clash, &o, &raw);

	cr_assert_eq(n, 1);
	cr_expect_eq(json_integer_value(json_object_get(o[0], "pid")), getpid(),
	    "the writer's pid was replaced by a detail: %s", raw);
	cr_expect_str_eq(jstr(o[0], "component"), "real");
	cr_expect_str_eq(jstr(o[0], "event"), "client_dead");
	free(raw);
	free_objs(o, n);
}

/* ------------------------------------------------------------------ */
/* Concurrent writers                                                  */

/* Several processes share one stderr pipe: every line arrives whole. */
Test(log, lines_from_processes_never_interleave)
{
	enum { NPROC = 4, LINES = 300 };
	struct capture c;
	pid_t kids[NPROC];
	size_t len;
	char *text, **lines;
	int n, count[NPROC] = { 0 };
	int go[2];

	mc_log_init("multi", "info");
	cr_assert_eq(pipe(go), 0);
	cap_redirect(&c);
	for (int k = 0; k < NPROC; k++) {
		fflush(NULL);
		kids[k] = fork();
		cr_assert_neq(kids[k], -1);
		if (kids[k] == 0) {
			char msg[3001], ch;

			prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(go[1]);
			if (read(go[0], &ch, 1) != 0)   /* EOF: all writers start together */
				_exit(2);
			for (int i = 0; i < LINES; i++) {
				size_t l = 1000 + (size_t)((i * 37 + k * 11) % 2000);

				memset(msg, 'A' + k, l);
				msg[l] = '\0';
				mc_log(MC_LOG_INFO, "burst", "{s:i, s:i, s:s}", "proc", k, "i", i,
				    "message", msg);
			}
			_exit(0);
		}
	}
	close(go[0]);
	cap_read(&c);
	close(go[1]);
	for (int k = 0; k < NPROC; k++) {
		int st;

		cr_assert_eq(waitpid(kids[k], &st, 0), kids[k]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	text = cap_stop(&c, &len);
	n = split_lines(text, len, &lines);
	cr_assert_eq(n, NPROC * LINES, "%d lines", n);
	for (int i = 0; i < n; i++) {
		json_t *j = parse(lines[i]);
		int k = (int)json_integer_value(json_object_get(j, "proc"));
		int idx = (int)json_integer_value(json_object_get(j, "i"));
		const char *m = jstr(j, "message");
		size_t want = 1000 + (size_t)((idx * 37 + k * 11) % 2000);

		cr_assert(k >= 0 && k < NPROC);
		cr_assert_eq(json_integer_value(json_object_get(j, "pid")), kids[k]);
		cr_assert_eq(strlen(m), want, "line of proc %d mangled", k);
		cr_assert_eq(strspn(m, (char[]){ (char)('A' + k), 0 }), want, "mixed bytes in a line");
		count[k]++;
		json_decref(j);
	}
	for (int k = 0; k < NPROC; k++)
		cr_assert_eq(count[k], LINES);
	free(lines);
	free(text);
}

static void *thread_logger(void *arg)
{
	int t = (int)(intptr_t)arg;
	char msg[600];

	memset(msg, 'a' + t, sizeof(msg) - 1);
	msg[sizeof(msg) - 1] = '\0';
	for (int i = 0; i < 500; i++)
		mc_log(MC_LOG_INFO, "threaded", "{s:i, s:i, s:s}", "thread", t, "i", i, "message", msg);
	return NULL;
}

Test(log, thread_safe)
{
	enum { NT = 4 };
	struct capture c;
	pthread_t th[NT];
	size_t len;
	char *text, **lines;
	int n, count[NT] = { 0 };

	mc_log_init("threads", "info");
	cap_start(&c);
	for (int t = 0; t < NT; t++)
		cr_assert_eq(pthread_create(&th[t], NULL, thread_logger, (void *)(intptr_t)t), 0);
	for (int t = 0; t < NT; t++)
		pthread_join(th[t], NULL);
	text = cap_stop(&c, &len);
	n = split_lines(text, len, &lines);
	cr_assert_eq(n, NT * 500);
	for (int i = 0; i < n; i++) {
		json_t *j = parse(lines[i]);
		int t = (int)json_integer_value(json_object_get(j, "thread"));

		cr_assert(t >= 0 && t < NT);
		cr_assert_eq(strlen(jstr(j, "message")), 599);
		cr_assert_str_eq(jstr(j, "component"), "threads");
		count[t]++;
		json_decref(j);
	}
	for (int t = 0; t < NT; t++)
		cr_assert_eq(count[t], 500);
	free(lines);
	free(text);
}
