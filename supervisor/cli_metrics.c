/*
 * cli_metrics.c - the metrics fields and table of `mcpcore status`
 * (contract in mc_cli_metrics.h).  The figures are the ones the monitor
 * serves at /metrics, read from the same blocks and cursors.  Frames come
 * from the rings (mc_metrics.h, CHANNEL FIGURES), so they are there even
 * for a slot without a metrics block; bytes_in and bytes_out are no longer
 * measured and stay null (kept: status fields are never removed), the
 * pool's published bytes are pool_bytes_written.
 */
#include "mc_cli_metrics.h"

#include <stdio.h>
#include <string.h>

#include "mc_layout.h"
#include "mc_metrics.h"

static json_t *mc_cli_real(bool have, double v)
{
	return have ? json_real(v) : json_null();
}

static json_t *mc_cli_count(bool have, uint64_t v)
{
	return have ? json_integer((json_int_t)v) : json_null();
}

static void mc_cli_metrics_slot(const struct mc_seg *seg, unsigned s, json_t *obj)
{
	struct mc_metrics_summary m;
	bool have = mc_metrics_summary(seg, s, &m) == 0;

	if (!json_is_object(obj))
		return;
	/* mc_metrics_summary fills the ring figures with or without a block */
	json_object_set_new(obj, "frames_in", mc_cli_count(true, m.frames_in));
	json_object_set_new(obj, "frames_out", mc_cli_count(true, m.frames_out));
	json_object_set_new(obj, "bytes_in", json_null());
	json_object_set_new(obj, "bytes_out", json_null());
	json_object_set_new(obj, "pool_bytes_written", mc_cli_count(true, m.pool_bytes));
	json_object_set_new(obj, "frames_in_per_s", mc_cli_real(have && m.has_rates, m.in_per_s));
	json_object_set_new(obj, "frames_out_per_s", mc_cli_real(have && m.has_rates, m.out_per_s));
	json_object_set_new(obj, "handled", mc_cli_count(have, m.handled));
	json_object_set_new(obj, "handling_p50_us", mc_cli_real(have && m.handled, m.p50_ns / 1e3));
	json_object_set_new(obj, "handling_p99_us", mc_cli_real(have && m.handled, m.p99_ns / 1e3));
	json_object_set_new(obj, "handler_errors", mc_cli_count(have, m.errors));
	json_object_set_new(obj, "memory_allocated",
	    mc_cli_count(have && m.has_memory, (uint64_t)m.memory_allocated));
	json_object_set_new(obj, "memory_resident",
	    mc_cli_count(have && m.has_memory, (uint64_t)m.memory_resident));
}

/* Each entry of a status array names its slot. */
static void mc_cli_metrics_array(const struct mc_seg *seg, json_t *arr)
{
	json_t *v;
	size_t i;

	json_array_foreach(arr, i, v) {
		json_int_t slot = json_integer_value(json_object_get(v, "slot"));

		if (slot > 0 && slot < (json_int_t)seg->hdr->sh_nslots)
			mc_cli_metrics_slot(seg, (unsigned)slot, v);
	}
}

void mc_cli_metrics_add(const struct mc_seg *seg, json_t *doc)
{
	if (!json_is_object(doc))
		return;
	mc_cli_metrics_slot(seg, MC_SLOT_SUPERVISOR, json_object_get(doc, "supervisor"));
	mc_cli_metrics_array(seg, json_object_get(doc, "workers"));
	mc_cli_metrics_array(seg, json_object_get(doc, "clients"));
	json_object_set_new(doc, "monitor", json_pack("{s:s, s:s}", "listen",
	    seg->hdr->sh_config.monitor_listen, "path", "/metrics"));
}

/* "12.3k", "4.5M": counts and rates in a narrow column; "-" for null. */
static const char *mc_cli_si(json_t *v, char *buf, size_t len)
{
	double x = json_number_value(v);

	if (!json_is_number(v))
		return "-";
	if (x >= 1e9)
		snprintf(buf, len, "%.1fG", x / 1e9);
	else if (x >= 1e6)
		snprintf(buf, len, "%.1fM", x / 1e6);
	else if (x >= 1e4)
		snprintf(buf, len, "%.1fk", x / 1e3);
	else if (json_is_integer(v))
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
	else
		snprintf(buf, len, "%.1f", x);
	return buf;
}

static const char *mc_cli_bytes(json_t *v, char *buf, size_t len)
{
	double x = json_number_value(v);

	if (!json_is_number(v))
		return "-";
	if (x >= (double)(1ULL << 30))
		snprintf(buf, len, "%.1f GiB", x / (double)(1ULL << 30));
	else if (x >= (double)(1ULL << 20))
		snprintf(buf, len, "%.1f MiB", x / (double)(1ULL << 20));
	else
		snprintf(buf, len, "%.1f KiB", x / 1024.0);
	return buf;
}

static void mc_cli_metrics_row(const char *name, json_t *v)
{
	char b[8][24];

	printf("%-12s %10s %10s %9s %9s %9s %9s %7s %10s\n", name ? name : "?",
	    mc_cli_si(json_object_get(v, "frames_in"), b[0], sizeof(b[0])),
	    mc_cli_si(json_object_get(v, "frames_out"), b[1], sizeof(b[1])),
	    mc_cli_si(json_object_get(v, "frames_in_per_s"), b[2], sizeof(b[2])),
	    mc_cli_si(json_object_get(v, "frames_out_per_s"), b[3], sizeof(b[3])),
	    mc_cli_si(json_object_get(v, "handling_p50_us"), b[4], sizeof(b[4])),
	    mc_cli_si(json_object_get(v, "handling_p99_us"), b[5], sizeof(b[5])),
	    mc_cli_si(json_object_get(v, "handler_errors"), b[6], sizeof(b[6])),
	    mc_cli_bytes(json_object_get(v, "memory_allocated"), b[7], sizeof(b[7])));
}

void mc_cli_metrics_print(json_t *doc)
{
	json_t *v;
	size_t i;

	printf("\n%-12s %10s %10s %9s %9s %9s %9s %7s %10s\n", "METRICS", "FRAMES_IN",
	    "FRAMES_OUT", "IN/S", "OUT/S", "P50_US", "P99_US", "ERRORS", "MEM_ALLOC");
	mc_cli_metrics_row("supervisor", json_object_get(doc, "supervisor"));
	json_array_foreach(json_object_get(doc, "workers"), i, v)
		mc_cli_metrics_row(json_string_value(json_object_get(v, "name")), v);
	json_array_foreach(json_object_get(doc, "clients"), i, v)
		mc_cli_metrics_row(json_string_value(json_object_get(v, "name")), v);
	printf("(frames: ring totals since the instance started; rates: the monitor's last "
	    "second; P50/P99: frame handling; Prometheus: http://%s/metrics)\n",
	    json_string_value(json_object_get(json_object_get(doc, "monitor"), "listen")));
}
