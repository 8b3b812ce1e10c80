/*
 * mcpmsg.c - the monitor's view of the MCP traffic: the router sends it a
 * copy of every MCPMessage record (workers/router/mc_router.h: one per
 * JSON-RPC message, sent when it was answered), and this turns them into
 * metrics in the monitor's own block:
 *
 *   mcp_messages_total{direction, type}   messages in (by method) and the
 *                                         answers out (type "response",
 *                                         "error", "accepted" or "stream",
 *                                         the record's "reply")
 *   mcp_errors_total{outcome}             answers that were not "ok"
 *                                         ("error -32602", "http 404", ...)
 *   mcp_request_seconds                   arrival to answer, the record's
 *                                         latency_ns
 *
 * Label values come from the wire, so they are bounded here: a method
 * outside MC_MON_METHODS counts as "other", an outcome that does not look
 * like "error <code>" or "http <status>" as "other", and past
 * MC_MON_OUTCOMES distinct outcomes new ones count as "other" too.
 */
#include "mc_monitor.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_log.h"
#include "mc_proto.h"

static const char *const mc_mon_methods[MC_MON_METHODS] = {
	"initialize", "notifications/initialized", "ping", "tools/list", "tools/call",
	"logging/setLevel", "notifications/cancelled", "notifications/progress",
	"resources/list", "resources/templates/list", "resources/read", "resources/subscribe",
	"resources/unsubscribe", "prompts/list", "prompts/get", "completion/complete",
	"response", "error", "accepted", "stream", "other",
};

void mc_mon_mcp_init(struct mc_mon_mcp *mm, struct mc_seg *seg)
{
	memset(mm, 0, sizeof(*mm));
	mm->seg = seg;
	mc_metrics_histogram(seg, "mcp_request_seconds",
	    "MCP requests from parse to answer, in the protocol worker", NULL, &mm->latency);
}

static unsigned mc_mon_method(const char *type)
{
	for (unsigned i = 0; i < MC_MON_METHODS - 1; i++)
		if (strcmp(type, mc_mon_methods[i]) == 0)
			return i;
	return MC_MON_METHODS - 1;      /* other */
}

static struct mc_counter mc_mon_type_counter(struct mc_mon_mcp *mm, bool in, unsigned t)
{
	struct mc_counter *c = &mm->types[in][t];

	if (!mm->types_tried[in][t]) {
		mm->types_tried[in][t] = true;
		mc_metrics_counter(mm->seg, "mcp_messages_total",
		    "MCP messages by direction (in: requests and notifications, by method; out: "
		    "responses)", (const char *const[]){ "direction", in ? "in" : "out", "type",
		    mc_mon_methods[t], NULL }, c);
	}
	return *c;
}

/* "error -32602" / "http 404" stay as they are; anything else is "other". */
static void mc_mon_outcome_label(const char *o, char *buf, size_t len)
{
	int code;
	char rest;

	if ((sscanf(o, "error %d%c", &code, &rest) == 1 && code >= -99999 && code <= 99999) ||
	    (sscanf(o, "http %d%c", &code, &rest) == 1 && code >= 100 && code <= 599))
		snprintf(buf, len, "%s", o);
	else
		snprintf(buf, len, "other");
}

static void mc_mon_count_error(struct mc_mon_mcp *mm, const char *outcome)
{
	char label[32];
	unsigned i;

	mc_mon_outcome_label(outcome, label, sizeof(label));
	for (i = 0; i < mm->noutcomes; i++)
		if (strcmp(mm->outcome[i], label) == 0)
			break;
	if (i == mm->noutcomes) {
		if (strcmp(label, "other") == 0 || mm->noutcomes == MC_MON_OUTCOMES - 1)
			i = MC_MON_OUTCOMES - 1;        /* kept for "other" */
		else
			mm->noutcomes++;
		if (mm->outcome[i][0] == '\0') {
			snprintf(mm->outcome[i], sizeof(mm->outcome[i]), "%s",
			    i == MC_MON_OUTCOMES - 1 ? "other" : label);
			mc_metrics_counter(mm->seg, "mcp_errors_total",
			    "MCP responses that were not a success, by outcome",
			    (const char *const[]){ "outcome", mm->outcome[i], NULL }, &mm->errors[i]);
		}
	}
	mc_counter_add(mm->errors[i], 1);
}

/* A string field, NUL-terminated in buf (cut to fit: such a value
 * matches no known name, and counts as "other"). */
static const char *mc_mon_str(const struct mc_pb_field *f, char *buf, size_t cap)
{
	size_t n = f->len < cap - 1 ? f->len : cap - 1;

	memcpy(buf, f->ptr, n);
	buf[n] = '\0';
	return buf;
}

static bool mc_mon_is(const struct mc_pb_field *f, const char *s)
{
	size_t n = strlen(s);

	return f->wire == 2 && f->len == n && memcmp(f->ptr, s, n) == 0;
}

/* One metadata entry (map<string, string>: key = 1, value = 2): its key
 * and value.  0, or -EBADMSG when the entry does not parse. */
static int mc_mon_meta(const struct mc_pb_field *entry, struct mc_pb_field *k,
    struct mc_pb_field *v)
{
	struct mc_pb_field f;
	size_t pos = 0;
	int rc;

	memset(k, 0, sizeof(*k));
	memset(v, 0, sizeof(*v));
	while ((rc = mc_pb_next(entry->ptr, entry->len, &pos, &f)) == 1) {
		if (f.num == 1)
			*k = f;
		else if (f.num == 2)
			*v = f;
	}
	return rc < 0 ? rc : 0;
}

/*
 * Read where it lies (mc_pb_next): the type and three metadata values are
 * all the counts need, and a full unpack (allocating every field, the
 * payload copied) was most of the monitor's time at front-door rates.
 */
int mc_mon_mcp_frame(struct mc_mon_mcp *mm, const struct mc_frame *f)
{
	char type[48] = "", reply[16] = "", outcome[32] = "", latency[24] = "";
	struct mc_pb_field fl, k, v;
	size_t pos = 0;
	int rc;

	while ((rc = mc_pb_next(f->f_data, f->f_len, &pos, &fl)) == 1) {
		if (fl.num == 2 && fl.wire == 2) {
			mc_mon_str(&fl, type, sizeof(type));
		} else if (fl.num == 4 && fl.wire == 2) {
			if ((rc = mc_mon_meta(&fl, &k, &v)) < 0)
				break;
			if (v.wire != 2)
				continue;
			if (mc_mon_is(&k, "reply"))
				mc_mon_str(&v, reply, sizeof(reply));
			else if (mc_mon_is(&k, "outcome"))
				mc_mon_str(&v, outcome, sizeof(outcome));
			else if (mc_mon_is(&k, "latency_ns"))
				mc_mon_str(&v, latency, sizeof(latency));
		}
	}
	if (rc < 0) {
		mc_log_warn("monitor_bad_message", "{s:i, s:I, s:s}", "src", (int)f->f_src, "seq",
		    (json_int_t)f->f_seq, "message", "MCPMessage frame does not parse");
		return -EBADMSG;
	}
	mc_counter_add(mc_mon_type_counter(mm, true, mc_mon_method(type)), 1);
	if (reply[0] != '\0')
		mc_counter_add(mc_mon_type_counter(mm, false, mc_mon_method(reply)), 1);
	if (outcome[0] != '\0' && strcmp(outcome, "ok") != 0)
		mc_mon_count_error(mm, outcome);
	if (latency[0] != '\0') {
		char *end;
		unsigned long long ns = strtoull(latency, &end, 10);

		if (*end == '\0')
			mc_histogram_observe(mm->latency, ns);
	}
	return 0;
}
