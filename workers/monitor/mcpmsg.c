/*
 * mcpmsg.c - the monitor's view of the MCP traffic: the router sends it a
 * copy of every MCPMessage record (workers/router/mc_router.h), and this
 * turns them into metrics in the monitor's own block:
 *
 *   mcp_messages_total{direction, type}   messages in (by method) and
 *                                         responses out (type "response",
 *                                         "error" or "accepted")
 *   mcp_errors_total{outcome}             responses that were not "ok"
 *                                         ("error -32602", "http 404", ...)
 *   mcp_request_seconds                   parse to answer, from the
 *                                         response's latency_ns
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
	"response", "error", "accepted", "other",
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

int mc_mon_mcp_frame(struct mc_mon_mcp *mm, const struct mc_frame *f)
{
	Mcpcore__MCPMessage *msg = (Mcpcore__MCPMessage *)mc_proto_unpack(f);
	const char *dir, *outcome, *latency;
	bool in;

	if (msg == NULL) {
		mc_log_warn("monitor_bad_message", "{s:i, s:I, s:s}", "src", (int)f->f_src, "seq",
		    (json_int_t)f->f_seq, "message", "MCPMessage frame does not parse");
		return -EBADMSG;
	}
	dir = mc_proto_meta(msg, "direction");
	outcome = mc_proto_meta(msg, "outcome");
	latency = mc_proto_meta(msg, "latency_ns");
	in = dir == NULL || strcmp(dir, "out") != 0;
	mc_counter_add(mc_mon_type_counter(mm, in, mc_mon_method(msg->message_type)), 1);
	if (!in && outcome != NULL && strcmp(outcome, "ok") != 0)
		mc_mon_count_error(mm, outcome);
	if (!in && latency != NULL) {
		char *end;
		unsigned long long ns = strtoull(latency, &end, 10);

		if (*latency != '\0' && *end == '\0')
			mc_histogram_observe(mm->latency, ns);
	}
	protobuf_c_message_free_unpacked(&msg->base, NULL);
	return 0;
}
