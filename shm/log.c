/*
 * log.c - JSON-lines logger (see mc_log.h for the line format).
 *
 * The fixed fields are written first in a fixed order so that the lines
 * are easy to grep; the caller's details are merged after them.  jansson
 * does the escaping and number formatting.
 */
#include "mc_log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *const mc_log_names[] = { "debug", "info", "warn", "error" };
static char mc_log_component[32] = "mcpcore";
static int mc_log_min = MC_LOG_INFO;

int mc_log_level_parse(const char *name)
{
	for (int i = 0; name && i < 4; i++)
		if (strcmp(name, mc_log_names[i]) == 0)
			return i;
	return -1;
}

void mc_log_init(const char *component, const char *level)
{
	const char *env = getenv("MCPCORE_LOG_LEVEL");
	int lv = mc_log_level_parse(env && *env ? env : level);

	snprintf(mc_log_component, sizeof(mc_log_component), "%s", component);
	mc_log_min = lv < 0 ? MC_LOG_INFO : lv;
}

int mc_log_enabled(enum mc_log_level level)
{
	return (int)level >= mc_log_min;
}

static void mc_log_time(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);

	snprintf(buf + n, len - n, ".%06dZ", (int)(ts.tv_nsec / 1000));
}

void mc_log(enum mc_log_level level, const char *event, const char *fmt, ...)
{
	char when[64];
	json_t *line, *details = NULL;
	json_error_t jerr;
	char *text;
	va_list ap;

	if (!mc_log_enabled(level))
		return;
	mc_log_time(when, sizeof(when));
	line = json_pack("{s:s, s:s, s:s, s:i, s:s}", "time", when,
	    "level", mc_log_names[level], "component", mc_log_component,
	    "pid", (int)getpid(), "event", event);
	if (line == NULL)
		return;
	if (fmt != NULL && *fmt != '\0') {
		va_start(ap, fmt);
		details = json_vpack_ex(&jerr, 0, fmt, ap);
		va_end(ap);
		/* the fixed fields are the line's identity: a detail cannot replace them */
		if (details != NULL)
			json_object_update_missing(line, details);
		else
			json_object_set_new(line, "log_error",
			    json_string(jerr.text));
	}
	text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (text != NULL) {
		size_t n = strlen(text);

		text[n] = '\n';   /* json_dumps leaves room: n is the NUL */
		if (write(STDERR_FILENO, text, n + 1) < 0) {
			/* nowhere left to report a failing stderr */
		}
		free(text);
	}
	json_decref(details);
	json_decref(line);
}
