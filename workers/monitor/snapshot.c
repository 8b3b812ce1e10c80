/*
 * snapshot.c - the MetricsSnapshot frame (proto/metrics.proto) the monitor
 * sends to the persistence worker (mc_monitor.h).
 *
 * Everything is copied out of shared memory into one allocation list
 * before packing: protobuf-c reads strings at pack time, and a block may
 * be reset under us.  A block whose generation changed while it was read
 * is left out of this snapshot.  The send never waits (mc_proto_send on a
 * full ring or pool is -EAGAIN): the monitor counts a skipped snapshot and
 * tries again at the next interval.
 *
 * Frame figures come from the ring and pool cursors (mc_metrics.h,
 * CHANNEL FIGURES); the per-kind figures are the workers'
 * messages_handled_total{kind} counters, found among the block's metrics.
 */
#include "mc_monitor.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_layout.h"
#include "mc_proto.h"
#include "mc_ring.h"
#include "mc_util.h"

/* Every allocation of one snapshot, freed together. */
struct mc_snap_mem {
	void **p;
	size_t n, cap;
	bool failed;
};

static void *mc_snap_alloc(struct mc_snap_mem *mem, size_t size)
{
	void *p;

	if (mem->failed)
		return NULL;
	if (mem->n == mem->cap) {
		size_t cap = mem->cap ? mem->cap * 2 : 64;
		void **grown = realloc(mem->p, cap * sizeof(*grown));

		if (grown == NULL) {
			mem->failed = true;
			return NULL;
		}
		mem->p = grown;
		mem->cap = cap;
	}
	p = calloc(1, size ? size : 1);
	if (p == NULL) {
		mem->failed = true;
		return NULL;
	}
	mem->p[mem->n++] = p;
	return p;
}

static char *mc_snap_str(struct mc_snap_mem *mem, const char *s, size_t max)
{
	size_t n = strnlen(s, max);
	char *d = mc_snap_alloc(mem, n + 1);

	if (d != NULL)
		memcpy(d, s, n);
	return d != NULL ? d : (char *)"";
}

static void mc_snap_free(struct mc_snap_mem *mem)
{
	for (size_t i = 0; i < mem->n; i++)
		free(mem->p[i]);
	free(mem->p);
}

static Mcpcore__MetricSample *mc_snap_sample(struct mc_snap_mem *mem,
    const struct mc_metric_info *m, struct mc_hist *h)
{
	Mcpcore__MetricSample *s = mc_snap_alloc(mem, sizeof(*s));
	double div = m->unit == MC_UNIT_SECONDS ? 1e9 : 1.0;   /* ns -> s */

	if (s == NULL)
		return NULL;
	mcpcore__metric_sample__init(s);
	s->name = mc_snap_str(mem, m->name, sizeof(m->name));
	s->labels = mc_snap_str(mem, m->labels, sizeof(m->labels));
	switch (m->type) {
	case MC_METRIC_COUNTER:
		s->type = MCPCORE__METRIC_SAMPLE__TYPE__COUNTER;
		s->value = (double)mc_metrics_read_counter(m) / div;
		break;
	case MC_METRIC_GAUGE:
		s->type = MCPCORE__METRIC_SAMPLE__TYPE__GAUGE;
		s->value = mc_metrics_read_gauge(m);
		break;
	case MC_METRIC_HISTOGRAM:
		s->type = MCPCORE__METRIC_SAMPLE__TYPE__HISTOGRAM;
		s->count = mc_metrics_read_hist(m, h);
		s->sum = (double)h->h_sum / div;
		s->p50 = mc_hist_quantile(h, 0.50) / div;
		s->p90 = mc_hist_quantile(h, 0.90) / div;
		s->p99 = mc_hist_quantile(h, 0.99) / div;
		s->max = (double)h->h_max / div;
		break;
	}
	return s;
}

/* The kind a messages_handled_total label set names ("kind=\"Control\""),
 * or -1. */
static int mc_snap_kind(const char *labels)
{
	char want[48], buf[24];

	for (unsigned k = 0; k <= MC_METRICS_KINDS; k++) {
		snprintf(want, sizeof(want), "kind=\"%s\"", mc_metrics_kind_name(k, buf, sizeof(buf)));
		if (strcmp(labels, want) == 0)
			return (int)k;
	}
	return -1;
}

static Mcpcore__KindCount *mc_snap_handled(struct mc_snap_mem *mem, const struct mc_metric_info *m)
{
	Mcpcore__KindCount *kc;
	char buf[24];
	int k;

	if (m->type != MC_METRIC_COUNTER || strcmp(m->name, MC_METRIC_HANDLED) != 0)
		return NULL;
	k = mc_snap_kind(m->labels);
	if (k < 0)
		return NULL;
	kc = mc_snap_alloc(mem, sizeof(*kc));
	if (kc == NULL)
		return NULL;
	mcpcore__kind_count__init(kc);
	kc->kind = (uint32_t)k;
	kc->name = mc_snap_str(mem, mc_metrics_kind_name((unsigned)k, buf, sizeof(buf)), 32);
	kc->handled = mc_metrics_read_counter(m);
	return kc;
}

/* One slot's process, or NULL when it has no (stable) metrics block. */
static Mcpcore__ProcessMetrics *mc_snap_process(struct mc_snap_mem *mem,
    const struct mc_seg *seg, unsigned slot, struct mc_hist *h, struct mc_metric_info *m)
{
	const struct mc_slot *sl = &seg->slots[slot];
	struct mc_metrics_frames fr;
	struct mc_metrics_view v;
	Mcpcore__ProcessMetrics *p;
	double rin, rout;
	uint64_t age;

	if (mc_metrics_view(seg, slot, &v) != 0)
		return NULL;
	p = mc_snap_alloc(mem, sizeof(*p));
	if (p == NULL)
		return NULL;
	mcpcore__process_metrics__init(p);
	p->name = mc_snap_str(mem, sl->sl_name, sizeof(sl->sl_name));
	p->label = mc_snap_str(mem, sl->sl_label, sizeof(sl->sl_label));
	p->slot = slot;
	p->pid = v.pid;
	p->state = (char *)mc_slot_state_name(ck_pr_load_32(&sl->sl_state));
	p->restarts = ck_pr_load_32(&sl->sl_restarts);
	mc_metrics_slot_frames(seg, slot, &fr);
	p->frames_received = fr.received;
	p->frames_sent = fr.sent;
	p->pool_bytes_written = fr.pool_bytes;
	if (mc_metrics_rates(seg, slot, &rin, &rout, &age) == 0) {
		p->received_per_second = rin;
		p->sent_per_second = rout;
	}
	p->samples = mc_snap_alloc(mem, (v.count ? v.count : 1) * sizeof(*p->samples));
	p->kinds = mc_snap_alloc(mem, (v.count ? v.count : 1) * sizeof(*p->kinds));
	for (uint32_t i = 0; p->samples != NULL && p->kinds != NULL && i < v.count; i++) {
		Mcpcore__MetricSample *s;
		Mcpcore__KindCount *kc;

		if (mc_metrics_info(&v, i, m) != 0)
			continue;
		s = mc_snap_sample(mem, m, h);
		if (s != NULL)
			p->samples[p->n_samples++] = s;
		kc = mc_snap_handled(mem, m);
		if (kc != NULL)
			p->kinds[p->n_kinds++] = kc;
	}
	return mc_metrics_view_ok(&v) ? p : NULL;
}

int mc_snapshot_send(struct mc_seg *seg, uint64_t seq, uint64_t skipped, uint32_t interval_s)
{
	Mcpcore__MetricsSnapshot snap = MCPCORE__METRICS_SNAPSHOT__INIT;
	const struct mc_seg_hdr *hdr = seg->hdr;
	struct mc_snap_mem mem = { 0 };
	struct mc_metric_info *m = mc_snap_alloc(&mem, sizeof(*m));
	struct mc_hist *h = mc_snap_alloc(&mem, sizeof(*h));
	char src[24], dst[24];
	int rc;

	snap.time_unix_ns = mc_wall_ns();
	snap.seq = seq;
	snap.instance = mc_snap_str(&mem, hdr->sh_instance, sizeof(hdr->sh_instance));
	snap.interval_seconds = interval_s;
	snap.skipped = skipped;
	snap.processes = mc_snap_alloc(&mem, hdr->sh_nslots * sizeof(*snap.processes));
	for (unsigned s = 0; snap.processes != NULL && m != NULL && h != NULL &&
	    s < hdr->sh_nslots; s++) {
		Mcpcore__ProcessMetrics *p = mc_snap_process(&mem, seg, s, h, m);

		if (p != NULL)
			snap.processes[snap.n_processes++] = p;
	}
	snap.rings = mc_snap_alloc(&mem, hdr->sh_nrings * sizeof(*snap.rings));
	for (uint32_t i = 0; snap.rings != NULL && i < hdr->sh_nrings; i++) {
		const struct mc_ring *r = &seg->rings[i];
		uint64_t put = mc_ring_frames_put(seg, i), taken = mc_ring_frames_taken(seg, i);
		uint32_t depth = mc_ring_depth(seg, i);
		Mcpcore__RingDepth *rd;

		if (depth == 0 && put == 0)
			continue;
		rd = mc_snap_alloc(&mem, sizeof(*rd));
		if (rd == NULL)
			break;
		mcpcore__ring_depth__init(rd);
		snprintf(src, sizeof(src), "%.*s", (int)sizeof(seg->slots[0].sl_name),
		    seg->slots[r->r_src].sl_name);
		snprintf(dst, sizeof(dst), "%.*s", (int)sizeof(seg->slots[0].sl_name),
		    seg->slots[r->r_dst].sl_name);
		rd->src = mc_snap_str(&mem, src, sizeof(src));
		rd->dst = mc_snap_str(&mem, dst, sizeof(dst));
		rd->depth = depth;
		rd->full_events = ck_pr_load_64(&r->r_full);
		rd->frames_put = put;
		rd->frames_taken = taken;
		snap.rings[snap.n_rings++] = rd;
	}
	if (mem.failed)
		rc = -ENOMEM;
	else
		rc = mc_proto_send(seg, &snap.base, 1ULL << MC_WORKER_PERSISTENCE);
	mc_snap_free(&mem);
	return rc;
}
