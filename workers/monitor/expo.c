/*
 * expo.c - the Prometheus text exposition (format 0.0.4) of a running
 * instance, read from shared memory (mc_monitor.h).
 *
 * Names follow the Prometheus conventions: prefix mcpcore_, base units
 * (seconds, bytes) in the name, counters end in _total, one HELP and one
 * TYPE line per family, every sample of a family together, no series
 * twice.  `promtool check metrics` must find nothing to say; the
 * integration test holds us to it.
 *
 * Runtime families come from the slot table, the ring directory (frame
 * totals derived from the ring cursors, mc_ring.h FRAME TOTALS) and the
 * frame pool cursors; nothing on the frame path counts for them.  Then
 * come the metrics processes registered in their blocks, grouped by name
 * across processes and told apart by the worker="<slot name>" label
 * (supervisor, state, ..., client0).  A client slot's runtime series add
 * up every client that used the slot: the cursors belong to the slot.
 *
 * Histograms are exported with cumulative `le` buckets at powers of two
 * (seconds: 2^10 ns = 1.024 us up to 2^40 ns; others: 1 to 2^40 in steps
 * of 4).  These are edges of the log-linear buckets, so each count is
 * exact: le counts samples below the bound (the bound itself, an integer
 * nanosecond, falls in the next bucket).
 */
#include "mc_monitor.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_layout.h"
#include "mc_proto.h"
#include "mc_ring.h"
#include "mc_util.h"

#define MC_EXPO_NS 1e9

/* Runtime families: a registered metric may not take one of these names.
 * frame_{received,sent}_bytes_total are retired (no longer measured) but
 * stay reserved, so an old dashboard never shows something else under them. */
static const char *const mc_expo_builtin[] = {
	"instance_info", "worker_up", "worker_restarts_total", "worker_heartbeat_age_seconds",
	"clients_attached", "frames_received_total", "frames_sent_total",
	"pool_bytes_written_total", "ring_frames_total",
	"frame_received_bytes_total", "frame_sent_bytes_total", "frame_pool_used_bytes",
	"frame_pool_size_bytes", "ring_depth", "ring_capacity", "ring_full_total",
	"region_size_bytes", "region_used_bytes",
};

static bool mc_expo_is_builtin(const char *name)
{
	for (size_t i = 0; i < MC_ARRAY_LEN(mc_expo_builtin); i++)
		if (strcmp(name, mc_expo_builtin[i]) == 0)
			return true;
	return false;
}

/* A double as Prometheus wants it: shortest text that reads back exactly. */
static const char *mc_expo_num(char *buf, size_t len, double v)
{
	if (isnan(v))
		return "NaN";
	if (isinf(v))
		return v > 0 ? "+Inf" : "-Inf";
	snprintf(buf, len, "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, len, "%.17g", v);
	return buf;
}

static void mc_expo_family(struct mc_buf *b, const char *name, const char *type,
    const char *help)
{
	mc_buf_printf(b, "# HELP mcpcore_%s ", name);
	for (const char *p = help; *p; p++) {    /* HELP escapes: \\ and \n */
		if (*p == '\\')
			mc_buf_puts(b, "\\\\");
		else if (*p == '\n')
			mc_buf_puts(b, "\\n");
		else
			mc_buf_put(b, p, 1);
	}
	mc_buf_printf(b, "\n# TYPE mcpcore_%s %s\n", name, type);
}

/* Slot name as a label value (written by the supervisor at creation). */
static const char *mc_expo_slot(const struct mc_seg *seg, unsigned s, char *buf, size_t len)
{
	snprintf(buf, len, "%.*s", (int)sizeof(seg->slots[s].sl_name), seg->slots[s].sl_name);
	return buf;
}

/* ---- runtime families ---------------------------------------------------- */

static void mc_expo_workers(const struct mc_seg *seg, struct mc_buf *b)
{
	const struct mc_seg_hdr *h = seg->hdr;
	uint64_t now = mc_now_ns();
	unsigned clients = 0;
	char name[24], num[40];

	mc_expo_family(b, "instance_info", "gauge", "The instance this endpoint reports on");
	/* not instance="": Prometheus owns that label (the scrape target) */
	mc_buf_printf(b, "mcpcore_instance_info{name=\"%.*s\",abi=\"%u\"} 1\n",
	    (int)sizeof(h->sh_instance), h->sh_instance, h->sh_abi);

	mc_expo_family(b, "worker_up", "gauge", "1 when the worker is running, else 0");
	for (unsigned s = MC_SLOT_FIRST_WORKER; s < MC_SLOT_FIRST_CLIENT; s++)
		mc_buf_printf(b, "mcpcore_worker_up{worker=\"%s\"} %d\n",
		    mc_expo_slot(seg, s, name, sizeof(name)),
		    ck_pr_load_32(&seg->slots[s].sl_state) == MC_SLOT_RUNNING);

	mc_expo_family(b, "worker_restarts_total", "counter",
	    "Restarts of the worker by the supervisor since the instance started");
	for (unsigned s = MC_SLOT_FIRST_WORKER; s < MC_SLOT_FIRST_CLIENT; s++)
		mc_buf_printf(b, "mcpcore_worker_restarts_total{worker=\"%s\"} %u\n",
		    mc_expo_slot(seg, s, name, sizeof(name)),
		    ck_pr_load_32(&seg->slots[s].sl_restarts));

	mc_expo_family(b, "worker_heartbeat_age_seconds", "gauge",
	    "Time since the worker's last heartbeat (absent while it is not running)");
	for (unsigned s = MC_SLOT_FIRST_WORKER; s < MC_SLOT_FIRST_CLIENT; s++) {
		uint64_t beat = ck_pr_load_64(&seg->slots[s].sl_heartbeat_ns);

		if (ck_pr_load_int(&seg->slots[s].sl_pid) == 0 || beat == 0)
			continue;
		mc_buf_printf(b, "mcpcore_worker_heartbeat_age_seconds{worker=\"%s\"} %s\n",
		    mc_expo_slot(seg, s, name, sizeof(name)),
		    mc_expo_num(num, sizeof(num), now > beat ? (double)(now - beat) / MC_EXPO_NS : 0));
	}

	for (unsigned s = MC_SLOT_FIRST_CLIENT; s < h->sh_nslots; s++)
		clients += ck_pr_load_32(&seg->slots[s].sl_state) == MC_SLOT_ATTACHED;
	mc_expo_family(b, "clients_attached", "gauge",
	    "Client processes (Python, CLI) holding a slot");
	mc_buf_printf(b, "mcpcore_clients_attached %u\n", clients);
}

/* Is slot s someone a ring series is worth showing for? */
static bool mc_expo_present(const struct mc_seg *seg, unsigned s)
{
	return seg->slots[s].sl_kind == MC_KIND_WORKER ||
	    ck_pr_load_32(&seg->slots[s].sl_state) == MC_SLOT_ATTACHED;
}

/*
 * Frames and bytes through the channel, from cursors only: per ring its
 * put total, per slot the sums over its outbound (sent) and inbound
 * (received) rings, and its pool cursor.  Each ring is read once, so the
 * per-slot sums agree with the ring series of the same scrape.
 */
/* One counter family with a series per slot 1..n-1 (slot 0, the supervisor,
 * has no rings and no pool), for slots with a value or a live process. */
static void mc_expo_per_slot(const struct mc_seg *seg, struct mc_buf *b, unsigned n,
    const char *family, const char *help, const uint64_t *v)
{
	char name[24];

	mc_expo_family(b, family, "counter", help);
	for (unsigned s = 1; s < n; s++)
		if (v[s] != 0 || mc_expo_present(seg, s))
			mc_buf_printf(b, "mcpcore_%s{worker=\"%s\"} %llu\n", family,
			    mc_expo_slot(seg, s, name, sizeof(name)), (unsigned long long)v[s]);
}

static void mc_expo_channels(const struct mc_seg *seg, struct mc_buf *b)
{
	const struct mc_seg_hdr *h = seg->hdr;
	uint64_t *put = calloc(h->sh_nrings ? h->sh_nrings : 1, sizeof(*put));
	uint64_t sent[MC_MAX_SLOTS] = { 0 }, received[MC_MAX_SLOTS] = { 0 }, bytes[MC_MAX_SLOTS];
	unsigned n = h->sh_nslots < MC_MAX_SLOTS ? h->sh_nslots : MC_MAX_SLOTS;
	char name[24], dst[24];

	if (put == NULL) {
		b->failed = true;
		return;
	}
	for (uint32_t i = 0; i < h->sh_nrings; i++) {
		const struct mc_ring *r = &seg->rings[i];

		put[i] = mc_ring_frames_put(seg, i);
		if (r->r_src < n)
			sent[r->r_src] += put[i];
		if (r->r_dst < n)
			received[r->r_dst] += mc_ring_frames_taken(seg, i);
	}
	for (unsigned s = 1; s < n; s++)
		bytes[s] = ck_pr_load_64(&seg->slots[s].sl_pool_published);
	mc_expo_per_slot(seg, b, n, "frames_sent_total",
	    "Frames the process put into its rings since the instance started "
	    "(a frame sent to n destinations counts n times)", sent);
	mc_expo_per_slot(seg, b, n, "frames_received_total",
	    "Frames the process took from its inbound rings since the instance started", received);
	mc_expo_per_slot(seg, b, n, "pool_bytes_written_total",
	    "Bytes of frames the process published in its frame pool, headers and padding included",
	    bytes);
	mc_expo_family(b, "ring_frames_total", "counter",
	    "Frames put into the ring from src to dst since the instance started "
	    "(ring_depth of them not taken yet)");
	for (uint32_t i = 0; i < h->sh_nrings; i++) {
		const struct mc_ring *r = &seg->rings[i];

		if (put[i] == 0 && !(mc_expo_present(seg, r->r_src) && mc_expo_present(seg, r->r_dst)))
			continue;
		mc_buf_printf(b, "mcpcore_ring_frames_total{src=\"%s\",dst=\"%s\"} %llu\n",
		    mc_expo_slot(seg, r->r_src, name, sizeof(name)),
		    mc_expo_slot(seg, r->r_dst, dst, sizeof(dst)), (unsigned long long)put[i]);
	}
	free(put);
}

static void mc_expo_memory(const struct mc_seg *seg, struct mc_buf *b)
{
	const struct mc_seg_hdr *h = seg->hdr;
	uint64_t pools = 0;
	char name[24], dst[24];

	mc_expo_family(b, "frame_pool_used_bytes", "gauge",
	    "Bytes of the process's frame pool holding frames not yet released");
	for (unsigned s = 1; s < h->sh_nslots; s++) {
		const struct mc_slot *sl = &seg->slots[s];
		/* cursors only: reclaiming is the owner's job (mc_frame.h) */
		uint64_t used = ck_pr_load_64(&sl->sl_pool_head) - ck_pr_load_64(&sl->sl_pool_tail);

		pools += used;
		if (mc_expo_present(seg, s))
			mc_buf_printf(b, "mcpcore_frame_pool_used_bytes{worker=\"%s\"} %llu\n",
			    mc_expo_slot(seg, s, name, sizeof(name)), (unsigned long long)used);
	}
	mc_expo_family(b, "frame_pool_size_bytes", "gauge", "Size of each process's frame pool");
	mc_buf_printf(b, "mcpcore_frame_pool_size_bytes %llu\n", (unsigned long long)h->sh_pool_size);

	mc_expo_family(b, "ring_depth", "gauge", "Frames waiting in the ring from src to dst");
	for (uint32_t i = 0; i < h->sh_nrings; i++) {
		const struct mc_ring *r = &seg->rings[i];
		uint32_t depth = mc_ring_depth(seg, i);

		if (depth == 0 && !(mc_expo_present(seg, r->r_src) && mc_expo_present(seg, r->r_dst)))
			continue;
		mc_buf_printf(b, "mcpcore_ring_depth{src=\"%s\",dst=\"%s\"} %u\n",
		    mc_expo_slot(seg, r->r_src, name, sizeof(name)),
		    mc_expo_slot(seg, r->r_dst, dst, sizeof(dst)), depth);
	}
	mc_expo_family(b, "ring_capacity", "gauge", "Frames a ring can hold (every ring alike)");
	mc_buf_printf(b, "mcpcore_ring_capacity %u\n", h->sh_nrings ? mc_ring_capacity(seg, 0) : 0);
	mc_expo_family(b, "ring_full_total", "counter",
	    "Sends refused because the ring from src to dst was full (back-pressure)");
	for (uint32_t i = 0; i < h->sh_nrings; i++) {
		const struct mc_ring *r = &seg->rings[i];
		uint64_t full = ck_pr_load_64(&r->r_full);

		if (full == 0 && !(mc_expo_present(seg, r->r_src) && mc_expo_present(seg, r->r_dst)))
			continue;
		mc_buf_printf(b, "mcpcore_ring_full_total{src=\"%s\",dst=\"%s\"} %llu\n",
		    mc_expo_slot(seg, r->r_src, name, sizeof(name)),
		    mc_expo_slot(seg, r->r_dst, dst, sizeof(dst)), (unsigned long long)full);
	}

	mc_expo_family(b, "region_size_bytes", "gauge", "Size of each region of the segment");
	for (int i = 0; i < MC_NREGIONS; i++)
		mc_buf_printf(b, "mcpcore_region_size_bytes{region=\"%.*s\"} %llu\n",
		    (int)sizeof(h->sh_regions[i].rg_name), h->sh_regions[i].rg_name,
		    (unsigned long long)h->sh_regions[i].rg_size);
	mc_expo_family(b, "region_used_bytes", "gauge",
	    "Bytes in use where the runtime itself knows: control structures of shared.rings, "
	    "unreleased frames of shared.message_queue (other regions' owners export their own)");
	mc_buf_printf(b, "mcpcore_region_used_bytes{region=\"%.*s\"} %llu\n",
	    (int)sizeof(h->sh_regions[MC_REGION_SHARED_RINGS].rg_name),
	    h->sh_regions[MC_REGION_SHARED_RINGS].rg_name,
	    (unsigned long long)(h->sh_metrics_off + (uint64_t)h->sh_nslots * MC_METRICS_BLOCK -
	    h->sh_regions[MC_REGION_SHARED_RINGS].rg_offset));
	mc_buf_printf(b, "mcpcore_region_used_bytes{region=\"%.*s\"} %llu\n",
	    (int)sizeof(h->sh_regions[MC_REGION_SHARED_MESSAGE_QUEUE].rg_name),
	    h->sh_regions[MC_REGION_SHARED_MESSAGE_QUEUE].rg_name, (unsigned long long)pools);
}

/* ---- registered metrics ---------------------------------------------------- */

struct mc_expo_entry {
	char     name[MC_METRICS_NAME_MAX];
	uint16_t slot;
	uint16_t idx;
};

static int mc_expo_entry_cmp(const void *a, const void *b)
{
	const struct mc_expo_entry *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c != 0)
		return c;
	if (x->slot != y->slot)
		return x->slot < y->slot ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* {worker="w"} or {worker="w",<labels>} */
static void mc_expo_labels(struct mc_buf *b, const char *worker, const char *labels,
    const char *le)
{
	mc_buf_printf(b, "{worker=\"%s\"%s%s", worker, *labels ? "," : "", labels);
	if (le != NULL)
		mc_buf_printf(b, ",le=\"%s\"", le);
	mc_buf_puts(b, "}");
}

static void mc_expo_hist(struct mc_buf *b, const struct mc_metric_info *m, const char *worker)
{
	struct mc_hist *h = malloc(sizeof(*h));
	bool secs = m->unit == MC_UNIT_SECONDS;
	double div = secs ? MC_EXPO_NS : 1.0;   /* divide: 1e-9 is not exact */
	char le[40], num[40];
	uint64_t n;

	if (h == NULL) {
		b->failed = true;
		return;
	}
	n = mc_metrics_read_hist(m, h);
	for (unsigned e = secs ? 10 : 0; e <= MC_HIST_MAX_BITS; e += secs ? 1 : 2) {
		uint64_t bound = 1ULL << e;

		snprintf(le, sizeof(le), "%.10g", (double)bound / div);
		mc_buf_printf(b, "mcpcore_%s_bucket", m->name);
		mc_expo_labels(b, worker, m->labels, le);
		mc_buf_printf(b, " %llu\n", (unsigned long long)mc_hist_count_below(h, bound));
	}
	mc_buf_printf(b, "mcpcore_%s_bucket", m->name);
	mc_expo_labels(b, worker, m->labels, "+Inf");
	mc_buf_printf(b, " %llu\n", (unsigned long long)n);
	mc_buf_printf(b, "mcpcore_%s_sum", m->name);
	mc_expo_labels(b, worker, m->labels, NULL);
	mc_buf_printf(b, " %s\n", mc_expo_num(num, sizeof(num), (double)h->h_sum / div));
	mc_buf_printf(b, "mcpcore_%s_count", m->name);
	mc_expo_labels(b, worker, m->labels, NULL);
	mc_buf_printf(b, " %llu\n", (unsigned long long)n);
	free(h);
}

static void mc_expo_sample(struct mc_buf *b, const struct mc_metric_info *m, const char *worker)
{
	char num[40];

	if (m->type == MC_METRIC_HISTOGRAM) {
		mc_expo_hist(b, m, worker);
		return;
	}
	mc_buf_printf(b, "mcpcore_%s", m->name);
	mc_expo_labels(b, worker, m->labels, NULL);
	if (m->type == MC_METRIC_GAUGE)
		mc_buf_printf(b, " %s\n", mc_expo_num(num, sizeof(num), mc_metrics_read_gauge(m)));
	else if (m->unit == MC_UNIT_SECONDS)
		mc_buf_printf(b, " %s\n", mc_expo_num(num, sizeof(num),
		    (double)mc_metrics_read_counter(m) / MC_EXPO_NS));
	else
		mc_buf_printf(b, " %llu\n", (unsigned long long)mc_metrics_read_counter(m));
}

static const char *mc_expo_type(enum mc_metric_type t)
{
	return t == MC_METRIC_COUNTER ? "counter" : t == MC_METRIC_GAUGE ? "gauge" : "histogram";
}

static void mc_expo_registered(const struct mc_seg *seg, struct mc_buf *b)
{
	struct mc_metrics_view *views = calloc(MC_MAX_SLOTS, sizeof(*views));
	struct mc_expo_entry *ent = NULL;
	bool have[MC_MAX_SLOTS] = { false };
	size_t n = 0, cap = 0;
	unsigned nslots = seg->hdr->sh_nslots;
	struct mc_metric_info *m = malloc(sizeof(*m));

	if (views == NULL || m == NULL)
		goto oom;
	for (unsigned s = 0; s < nslots && s < MC_MAX_SLOTS; s++) {
		if (mc_metrics_view(seg, s, &views[s]) != 0)
			continue;
		have[s] = true;
		for (uint32_t i = 0; i < views[s].count; i++) {
			if (mc_metrics_info(&views[s], i, m) != 0 || mc_expo_is_builtin(m->name))
				continue;
			if (n == cap) {
				struct mc_expo_entry *grown;

				cap = cap ? cap * 2 : 64;
				grown = realloc(ent, cap * sizeof(*ent));
				if (grown == NULL)
					goto oom;
				ent = grown;
			}
			memcpy(ent[n].name, m->name, sizeof(ent[n].name));
			ent[n].slot = (uint16_t)s;
			ent[n].idx = (uint16_t)i;
			n++;
		}
	}
	if (n > 1)
		qsort(ent, n, sizeof(*ent), mc_expo_entry_cmp);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		enum mc_metric_type type = 0;
		enum mc_metric_unit unit = 0;

		/* one family: the first valid entry fixes type, unit and help */
		for (; j < n && strcmp(ent[j].name, ent[i].name) == 0; j++) {
			char worker[24];

			if (!have[ent[j].slot] ||
			    mc_metrics_info(&views[ent[j].slot], ent[j].idx, m) != 0 ||
			    strcmp(m->name, ent[i].name) != 0)
				continue;
			if (type == 0) {
				type = m->type;
				unit = m->unit;
				mc_expo_family(b, m->name, mc_expo_type(type), m->help);
			}
			if (m->type != type || m->unit != unit)
				continue;       /* same name, other type in another process */
			mc_expo_sample(b, m, mc_expo_slot(seg, ent[j].slot, worker, sizeof(worker)));
		}
		i = j;
	}
	free(ent);
	free(views);
	free(m);
	return;
oom:
	b->failed = true;
	free(ent);
	free(views);
	free(m);
}

int mc_expo_render(const struct mc_seg *seg, struct mc_buf *out)
{
	mc_buf_clear(out);
	mc_expo_workers(seg, out);
	mc_expo_channels(seg, out);
	mc_expo_memory(seg, out);
	mc_expo_registered(seg, out);
	return out->failed ? -ENOMEM : 0;
}
