/*
 * metrics.c - per-process metrics blocks: open/reset/retire, the registry,
 * memory gauges, the monitor's published rates, validated reading, and
 * the channel figures derived from ring and pool cursors (format,
 * ownership and ordering rules in mc_metrics.h).
 *
 * Invariants kept here:
 *   - only the owner (seg->metrics == the block) registers or updates;
 *     mc_metrics_retire() is the one call a non-owner (the supervisor, for
 *     a dead client) makes, and it only clears the magic and bumps mb_gen;
 *   - a descriptor is complete before mb_count covers it (release store);
 *   - a reset clears the magic, then bumps the generation, then clears the
 *     block, and stores the magic last: a reader that checks the generation
 *     before and after never keeps values read across a reset;
 *   - readers copy and bounds-check every string and offset they follow.
 */
#define _GNU_SOURCE             /* strerrorname_np */
#include "mc_metrics.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mc_proto.h"
#include "mc_ring.h"
#include "mc_util.h"

_Static_assert(sizeof(struct mc_metrics_block) <= MC_METRICS_BLOCK / 2,
    "the fixed part of a metrics block leaves too little arena");
_Static_assert(MC_METRICS_KINDS == MC_FK_COUNT, "one kind label index per frame kind");
_Static_assert(sizeof(struct mc_metric_desc) == 224, "descriptor size is part of the format");
_Static_assert(offsetof(struct mc_metrics_block, mb_rates_ns) == 64, "header is one cache line");

/* Everything after the header line: what a reset clears. */
#define MC_METRICS_BODY offsetof(struct mc_metrics_block, mb_rates_ns)

static mc_metrics_memory_fn mc_metrics_memory;

struct mc_metrics_block *mc_metrics_block(const struct mc_seg *seg, unsigned slot)
{
	return (struct mc_metrics_block *)(seg->base + seg->hdr->sh_metrics_off +
	    (uint64_t)slot * MC_METRICS_BLOCK);
}

/* ---- names and labels ------------------------------------------------ */

static bool mc_ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool mc_metrics_name_ok(const char *name, enum mc_metric_type type, const char **why)
{
	static const char *const reserved[] = { "_bucket", "_count", "_sum" };
	size_t n = name != NULL ? strlen(name) : 0;

	if (n == 0 || n >= MC_METRICS_NAME_MAX) {
		*why = "name must be 1-63 characters";
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9'))) {
			*why = "name must be snake_case: [a-z_][a-z0-9_]*";
			return false;
		}
	}
	if (strncmp(name, "__", 2) == 0 || strncmp(name, "mcpcore_", 8) == 0) {
		*why = "name must not start with '__' or 'mcpcore_' (the exposition adds mcpcore_)";
		return false;
	}
	if ((type == MC_METRIC_COUNTER) != mc_ends_with(name, "_total") ||
	    (type == MC_METRIC_COUNTER && n <= 6)) {
		*why = "counter names end in _total, and only counter names do";
		return false;
	}
	for (size_t i = 0; i < MC_ARRAY_LEN(reserved); i++)
		if (mc_ends_with(name, reserved[i])) {
			*why = "suffixes _bucket, _count and _sum are reserved for histograms";
			return false;
		}
	return true;
}

/* Prometheus label values are UTF-8; control characters are refused. */
static bool mc_utf8_ok(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;

		if (len == 0 || i + len > n || (len == 1 && (c < 0x20 || c == 0x7f)))
			return false;
		for (size_t k = 1; k < len; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
		i += len;
	}
	return true;
}

static bool mc_label_key_ok(const char *k)
{
	static const char *const reserved[] = { "worker", "le", "quantile" };
	size_t n = strlen(k);

	if (n == 0 || n > 32 || strncmp(k, "__", 2) == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') || k[i] == '_' ||
		    (i > 0 && k[i] >= '0' && k[i] <= '9')))
			return false;
	for (size_t i = 0; i < MC_ARRAY_LEN(reserved); i++)
		if (strcmp(k, reserved[i]) == 0)
			return false;
	return true;
}

int mc_metrics_labels(const char *const *labels, char *buf, size_t len, const char **why)
{
	const char *k[MC_METRICS_LABELS], *v[MC_METRICS_LABELS];
	size_t n = 0, at = 0;
	const char *dummy;

	if (why == NULL)
		why = &dummy;
	for (; labels != NULL && labels[2 * n] != NULL; n++) {
		if (n == MC_METRICS_LABELS) {
			*why = "at most 4 labels";
			return -EINVAL;
		}
		k[n] = labels[2 * n];
		v[n] = labels[2 * n + 1];
		if (v[n] == NULL || !mc_label_key_ok(k[n])) {
			*why = "label names: [A-Za-z_][A-Za-z0-9_]*, at most 32, not worker/le/quantile";
			return -EINVAL;
		}
		if (strlen(v[n]) > 63 || !mc_utf8_ok((const unsigned char *)v[n], strlen(v[n]))) {
			*why = "label values: at most 63 bytes of UTF-8 without control characters";
			return -EINVAL;
		}
		/* insertion sort by key: the order given must not matter */
		for (size_t i = n; i > 0 && strcmp(k[i - 1], k[i]) >= 0; i--) {
			const char *tk = k[i], *tv = v[i];

			if (strcmp(k[i - 1], k[i]) == 0) {
				*why = "a label name appears twice";
				return -EINVAL;
			}
			k[i] = k[i - 1];
			v[i] = v[i - 1];
			k[i - 1] = tk;
			v[i - 1] = tv;
		}
	}
	if (len == 0)
		return -EINVAL;
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		int w = snprintf(buf + at, len - at, "%s%s=\"", i ? "," : "", k[i]);

		if (w < 0 || (size_t)w >= len - at)
			goto toolong;
		at += (size_t)w;
		for (const char *p = v[i]; *p; p++) {
			if (*p == '"' || *p == '\\') {
				if (at + 2 >= len)
					goto toolong;
				buf[at++] = '\\';
			}
			if (at + 1 >= len)
				goto toolong;
			buf[at++] = *p;
		}
		if (at + 1 >= len)
			goto toolong;
		buf[at++] = '"';
		buf[at] = '\0';
	}
	return 0;
toolong:
	*why = "labels too long (127 bytes once written out)";
	return -EINVAL;
}

/* ---- open, reset, retire ----------------------------------------------- */

static bool mc_metrics_block_valid(const struct mc_metrics_block *b)
{
	return ck_pr_load_64(&b->mb_magic) == MC_METRICS_MAGIC &&
	    b->mb_version == MC_METRICS_VERSION && b->mb_count <= MC_METRICS_MAX &&
	    b->mb_arena_used <= MC_METRICS_ARENA;
}

static void mc_metrics_reset(struct mc_metrics_block *b)
{
	ck_pr_store_64(&b->mb_magic, 0);
	ck_pr_fence_store();
	ck_pr_store_32(&b->mb_gen, b->mb_gen + 1);
	ck_pr_fence_store();
	memset((uint8_t *)b + MC_METRICS_BODY, 0, MC_METRICS_BLOCK - MC_METRICS_BODY);
	b->mb_version = MC_METRICS_VERSION;
	ck_pr_store_32(&b->mb_count, 0);
	b->mb_owners = 0;
	b->mb_arena_used = 0;
	b->mb_reset_wall_ns = mc_wall_ns();
	b->mb_tick_ns = 0;
	b->mb_pad0 = 0;
	ck_pr_fence_store();
	ck_pr_store_64(&b->mb_magic, MC_METRICS_MAGIC);
}

/* CARRY: the new owner sets its own gauges; stale ones would lie. */
static void mc_metrics_zero_gauges(struct mc_metrics_block *b)
{
	for (uint32_t i = 0; i < b->mb_count; i++) {
		const struct mc_metric_desc *d = &b->mb_desc[i];

		if (d->md_type == MC_METRIC_GAUGE &&
		    d->md_value_off >= offsetof(struct mc_metrics_block, mb_arena) &&
		    d->md_value_off + 8u <= MC_METRICS_BLOCK && d->md_value_off % 8 == 0)
			__atomic_store_n((uint64_t *)((uint8_t *)b + d->md_value_off), 0, __ATOMIC_RELAXED);
	}
}

static void mc_metrics_memory_gauges(struct mc_seg *seg, struct mc_gauge *alloc,
    struct mc_gauge *res)
{
	mc_metrics_gauge(seg, MC_METRIC_MEM_ALLOCATED,
	    "Bytes allocated by the process (jemalloc stats.allocated)", NULL, alloc);
	mc_metrics_gauge(seg, MC_METRIC_MEM_RESIDENT,
	    "Bytes of physically resident allocator pages (jemalloc stats.resident)", NULL, res);
}

int mc_metrics_open(struct mc_seg *seg, unsigned slot, enum mc_metrics_mode mode)
{
	struct mc_metrics_block *b;

	if (seg->readonly || seg->base == NULL)
		return -EPERM;
	if (slot >= seg->hdr->sh_nslots)
		return -EINVAL;
	b = mc_metrics_block(seg, slot);
	if (mode == MC_METRICS_RESET || !mc_metrics_block_valid(b))
		mc_metrics_reset(b);
	else
		mc_metrics_zero_gauges(b);
	b->mb_owners++;
	ck_pr_store_int(&b->mb_pid, (int)getpid());
	b->mb_open_ns = mc_now_ns();
	b->mb_tick_ns = 0;
	seg->metrics = b;
	return 0;
}

void mc_metrics_close(struct mc_seg *seg)
{
	seg->metrics = NULL;
}

void mc_metrics_retire(struct mc_seg *seg, unsigned slot)
{
	struct mc_metrics_block *b;

	if (seg->readonly || seg->base == NULL || slot >= seg->hdr->sh_nslots)
		return;
	b = mc_metrics_block(seg, slot);
	if (seg->metrics == b)
		seg->metrics = NULL;
	ck_pr_store_64(&b->mb_magic, 0);
	ck_pr_fence_store();
	ck_pr_store_32(&b->mb_gen, b->mb_gen + 1);
}

/* ---- registry ------------------------------------------------------------ */

static uint32_t mc_metrics_value_size(enum mc_metric_type type)
{
	return type == MC_METRIC_HISTOGRAM ? (uint32_t)sizeof(struct mc_hist) : 8u;
}

static bool mc_help_ok(const char *help)
{
	size_t n = help != NULL ? strlen(help) : 0;

	return n > 0 && n < MC_METRICS_HELP_MAX && mc_utf8_ok((const unsigned char *)help, n);
}

int mc_metrics_register(struct mc_seg *seg, enum mc_metric_type type, const char *name,
    const char *help, const char *const *labels, void **out, const char **why)
{
	struct mc_metrics_block *b = seg->metrics;
	char canon[MC_METRICS_LABELS_MAX];
	uint32_t n, size, help_len, value_at, help_at, end;
	struct mc_metric_desc *d;
	const char *dummy;
	int rc;

	if (why == NULL)
		why = &dummy;
	*out = NULL;
	if (b == NULL) {
		*why = "metrics are not enabled for this process (mc_metrics_open)";
		return -ENODEV;
	}
	if (type < MC_METRIC_COUNTER || type > MC_METRIC_HISTOGRAM) {
		*why = "unknown metric type";
		return -EINVAL;
	}
	if (!mc_metrics_name_ok(name, type, why))
		return -EINVAL;
	rc = mc_metrics_labels(labels, canon, sizeof(canon), why);
	if (rc)
		return rc;
	n = b->mb_count;
	for (uint32_t i = 0; i < n; i++) {
		d = &b->mb_desc[i];
		if (strcmp(d->md_name, name) != 0)
			continue;
		if (d->md_type != (uint32_t)type) {
			*why = "the name is registered with another type";
			return -EEXIST;
		}
		if (strcmp(d->md_labels, canon) == 0) {
			*out = (uint8_t *)b + d->md_value_off;
			return 0;
		}
	}
	if (!mc_help_ok(help)) {
		*why = "help must be 1-255 bytes of UTF-8 without control characters";
		return -EINVAL;
	}
	size = mc_metrics_value_size(type);
	help_len = (uint32_t)strlen(help) + 1;
	value_at = (uint32_t)mc_align_up(b->mb_arena_used, type == MC_METRIC_HISTOGRAM ? 64 : 8);
	help_at = value_at + size;
	end = (uint32_t)mc_align_up(help_at + help_len, 8);
	if (n >= MC_METRICS_MAX || end > MC_METRICS_ARENA) {
		*why = n >= MC_METRICS_MAX ? "the registry of this process is full" :
		    "the metrics arena of this process is full (too many histograms)";
		return -ENOSPC;
	}
	memset(b->mb_arena + value_at, 0, size);
	memcpy(b->mb_arena + help_at, help, help_len);
	d = &b->mb_desc[n];
	memset(d, 0, sizeof(*d));
	snprintf(d->md_name, sizeof(d->md_name), "%s", name);
	memcpy(d->md_labels, canon, sizeof(canon));
	d->md_type = (uint32_t)type;
	d->md_unit = type != MC_METRIC_GAUGE && (mc_ends_with(name, "_seconds") ||
	    mc_ends_with(name, "_seconds_total")) ? MC_UNIT_SECONDS : MC_UNIT_NONE;
	d->md_value_off = (uint32_t)offsetof(struct mc_metrics_block, mb_arena) + value_at;
	d->md_help_off = (uint32_t)offsetof(struct mc_metrics_block, mb_arena) + help_at;
	b->mb_arena_used = end;
	/* publish: a reader that sees the count sees the descriptor */
	ck_pr_fence_store();
	ck_pr_store_32(&b->mb_count, n + 1);
	*out = (uint8_t *)b + d->md_value_off;
	return 0;
}

int mc_metrics_counter(struct mc_seg *seg, const char *name, const char *help,
    const char *const *labels, struct mc_counter *out)
{
	void *v;
	int rc = mc_metrics_register(seg, MC_METRIC_COUNTER, name, help, labels, &v, NULL);

	out->c = v;
	return rc;
}

int mc_metrics_gauge(struct mc_seg *seg, const char *name, const char *help,
    const char *const *labels, struct mc_gauge *out)
{
	void *v;
	int rc = mc_metrics_register(seg, MC_METRIC_GAUGE, name, help, labels, &v, NULL);

	out->g = v;
	return rc;
}

int mc_metrics_histogram(struct mc_seg *seg, const char *name, const char *help,
    const char *const *labels, struct mc_histogram *out)
{
	void *v;
	int rc = mc_metrics_register(seg, MC_METRIC_HISTOGRAM, name, help, labels, &v, NULL);

	out->h = v;
	return rc;
}

/* ---- memory ---------------------------------------------------------------- */

void mc_metrics_set_memory_source(mc_metrics_memory_fn fn)
{
	mc_metrics_memory = fn;
}

void mc_metrics_tick(struct mc_seg *seg)
{
	mc_metrics_tick_at(seg, mc_now_ns());
}

void mc_metrics_tick_at(struct mc_seg *seg, uint64_t now)
{
	struct mc_metrics_block *b = seg->metrics;
	uint64_t allocated, resident;
	struct mc_gauge a, r;

	if (b == NULL || mc_metrics_memory == NULL)
		return;
	if (b->mb_tick_ns != 0 && now - b->mb_tick_ns < MC_METRICS_TICK_NS)
		return;
	b->mb_tick_ns = now;
	if (mc_metrics_memory(&allocated, &resident) != 0)
		return;
	mc_metrics_memory_gauges(seg, &a, &r);
	mc_gauge_set(a, (double)allocated);
	mc_gauge_set(r, (double)resident);
}

/* ---- the monitor's rates -------------------------------------------------- */

static void mc_store_double(double *p, double v)
{
	uint64_t bits;

	memcpy(&bits, &v, sizeof(bits));
	__atomic_store_n((uint64_t *)p, bits, __ATOMIC_RELAXED);
}

static double mc_load_double(const double *p)
{
	uint64_t bits = __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
	double v;

	memcpy(&v, &bits, sizeof(v));
	return v;
}

void mc_metrics_publish_rates(struct mc_seg *seg, const double *in, const double *out,
    unsigned nslots)
{
	struct mc_metrics_block *b = seg->metrics;

	if (b == NULL)
		return;
	for (unsigned s = 0; s < nslots && s < MC_MAX_SLOTS; s++) {
		mc_store_double(&b->mb_rate_in[s], in[s]);
		mc_store_double(&b->mb_rate_out[s], out[s]);
	}
	ck_pr_fence_store();
	ck_pr_store_64(&b->mb_rates_ns, mc_now_ns());
}

int mc_metrics_rates(const struct mc_seg *seg, unsigned slot, double *in, double *out,
    uint64_t *age_ns)
{
	struct mc_metrics_view v;
	uint64_t t, now;

	if (slot >= MC_MAX_SLOTS || mc_metrics_view(seg, MC_WORKER_MONITOR, &v) != 0)
		return -ENOENT;
	t = ck_pr_load_64(&v.b->mb_rates_ns);
	if (t == 0)
		return -ENOENT;
	ck_pr_fence_load();
	*in = mc_load_double(&v.b->mb_rate_in[slot]);
	*out = mc_load_double(&v.b->mb_rate_out[slot]);
	now = mc_now_ns();
	*age_ns = now > t ? now - t : 0;
	return mc_metrics_view_ok(&v) ? 0 : -ENOENT;
}

/* ---- readers ------------------------------------------------------------ */

int mc_metrics_view(const struct mc_seg *seg, unsigned slot, struct mc_metrics_view *v)
{
	const struct mc_metrics_block *b;
	uint32_t count;

	memset(v, 0, sizeof(*v));
	if (slot >= seg->hdr->sh_nslots)
		return -ENOENT;
	b = mc_metrics_block(seg, slot);
	v->b = b;
	v->gen = ck_pr_load_32(&b->mb_gen);
	ck_pr_fence_load();
	if (ck_pr_load_64(&b->mb_magic) != MC_METRICS_MAGIC || b->mb_version != MC_METRICS_VERSION)
		return -ENOENT;
	count = ck_pr_load_32(&b->mb_count);
	ck_pr_fence_load();     /* acquire: descriptors below count are complete */
	v->count = count > MC_METRICS_MAX ? MC_METRICS_MAX : count;
	v->pid = ck_pr_load_int(&b->mb_pid);
	v->owners = b->mb_owners;
	return 0;
}

bool mc_metrics_view_ok(const struct mc_metrics_view *v)
{
	if (v->b == NULL)
		return false;
	ck_pr_fence_load();
	return ck_pr_load_32(&v->b->mb_gen) == v->gen &&
	    ck_pr_load_64(&v->b->mb_magic) == MC_METRICS_MAGIC;
}

/* Copy a NUL-terminated string of at most max bytes from the block. */
static bool mc_copy_str(char *dst, const char *src, size_t max)
{
	size_t n = strnlen(src, max);

	if (n == max)
		return false;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return true;
}

int mc_metrics_info(const struct mc_metrics_view *v, uint32_t i, struct mc_metric_info *out)
{
	const uint32_t arena = (uint32_t)offsetof(struct mc_metrics_block, mb_arena);
	struct mc_metric_desc d;
	uint32_t size;

	if (i >= v->count)
		return -EINVAL;
	memcpy(&d, &v->b->mb_desc[i], sizeof(d));
	if (d.md_type < MC_METRIC_COUNTER || d.md_type > MC_METRIC_HISTOGRAM || d.md_unit > 1)
		return -EINVAL;
	size = mc_metrics_value_size((enum mc_metric_type)d.md_type);
	if (d.md_value_off < arena || d.md_value_off % 8 != 0 ||
	    d.md_value_off > MC_METRICS_BLOCK - size ||
	    d.md_help_off < arena || d.md_help_off >= MC_METRICS_BLOCK)
		return -EINVAL;
	if (!mc_copy_str(out->name, d.md_name, sizeof(d.md_name)) ||
	    !mc_copy_str(out->labels, d.md_labels, sizeof(d.md_labels)))
		return -EINVAL;
	{
		size_t room = MC_METRICS_BLOCK - d.md_help_off;

		if (!mc_copy_str(out->help, (const char *)v->b + d.md_help_off,
		    room < MC_METRICS_HELP_MAX ? room : MC_METRICS_HELP_MAX))
			return -EINVAL;
	}
	out->type = (enum mc_metric_type)d.md_type;
	out->unit = (enum mc_metric_unit)d.md_unit;
	out->value = (const uint8_t *)v->b + d.md_value_off;
	return 0;
}

uint64_t mc_metrics_read_counter(const struct mc_metric_info *m)
{
	return __atomic_load_n((const uint64_t *)m->value, __ATOMIC_RELAXED);
}

double mc_metrics_read_gauge(const struct mc_metric_info *m)
{
	return mc_load_double((const double *)m->value);
}

uint64_t mc_metrics_read_hist(const struct mc_metric_info *m, struct mc_hist *out)
{
	return mc_hist_copy(out, (const struct mc_hist *)m->value);
}

void mc_metrics_slot_frames(const struct mc_seg *seg, unsigned slot, struct mc_metrics_frames *out)
{
	unsigned n = seg->hdr->sh_nslots;

	memset(out, 0, sizeof(*out));
	if (slot >= n)
		return;
	/* every ring has a worker at one end: a slot's rings are found by
	 * trying each peer (the ring map says -1 where there is none) */
	for (unsigned peer = 0; peer < n; peer++) {
		int o = mc_ring_index(seg, slot, peer), i = mc_ring_index(seg, peer, slot);

		if (o >= 0)
			out->sent += mc_ring_frames_put(seg, (uint32_t)o);
		if (i >= 0)
			out->received += mc_ring_frames_taken(seg, (uint32_t)i);
	}
	out->pool_bytes = ck_pr_load_64(&seg->slots[slot].sl_pool_published);
}

int mc_metrics_find(const struct mc_metrics_view *v, const char *name, const char *labels)
{
	for (uint32_t i = 0; i < v->count; i++) {
		const struct mc_metric_desc *d = &v->b->mb_desc[i];

		if (strncmp(d->md_name, name, sizeof(d->md_name)) == 0 &&
		    strncmp(d->md_labels, labels, sizeof(d->md_labels)) == 0)
			return (int)i;
	}
	return -ENOENT;
}

const char *mc_metrics_errno_label(int err, char *buf, size_t len)
{
	const char *name = err < 0 ? strerrorname_np(-err) : NULL;

	if (name != NULL)
		return name;
	snprintf(buf, len, "%d", err);
	return buf;
}

unsigned mc_metrics_kind_index(unsigned kind)
{
	if (kind == MC_FK_RAW || (kind < MC_METRICS_KINDS && mc_proto_descriptor((uint16_t)kind)))
		return kind;
	return MC_METRICS_OTHER;
}

const char *mc_metrics_kind_name(unsigned kind, char *buf, size_t len)
{
	const ProtobufCMessageDescriptor *d;

	if (kind == 0)
		return "raw";
	if (kind >= MC_METRICS_OTHER)
		return "other";
	d = mc_proto_descriptor((uint16_t)kind);
	if (d != NULL)
		return d->short_name;
	snprintf(buf, len, "kind%u", kind);
	return buf;
}

static int mc_metrics_summary_once(const struct mc_seg *seg, unsigned slot,
    struct mc_metrics_summary *out)
{
	struct mc_metrics_frames fr;
	struct mc_metrics_view v;
	struct mc_metric_info m;
	uint64_t age;
	int i;

	memset(out, 0, sizeof(*out));
	mc_metrics_slot_frames(seg, slot, &fr);
	out->frames_in = fr.received;
	out->frames_out = fr.sent;
	out->pool_bytes = fr.pool_bytes;
	if (mc_metrics_view(seg, slot, &v) != 0)
		return -ENOENT;
	i = mc_metrics_find(&v, MC_METRIC_MEM_ALLOCATED, "");
	if (i >= 0 && mc_metrics_info(&v, (uint32_t)i, &m) == 0 && m.type == MC_METRIC_GAUGE) {
		out->has_memory = true;
		out->memory_allocated = mc_metrics_read_gauge(&m);
		i = mc_metrics_find(&v, MC_METRIC_MEM_RESIDENT, "");
		if (i >= 0 && mc_metrics_info(&v, (uint32_t)i, &m) == 0 && m.type == MC_METRIC_GAUGE)
			out->memory_resident = mc_metrics_read_gauge(&m);
	}
	i = mc_metrics_find(&v, MC_METRIC_FRAME_HANDLING, "");
	if (i >= 0 && mc_metrics_info(&v, (uint32_t)i, &m) == 0 && m.type == MC_METRIC_HISTOGRAM) {
		struct mc_hist h;

		out->handled = mc_metrics_read_hist(&m, &h);
		if (out->handled) {
			out->p50_ns = mc_hist_quantile(&h, 0.50);
			out->p99_ns = mc_hist_quantile(&h, 0.99);
		}
	}
	for (uint32_t k = 0; k < v.count; k++)
		if (mc_metrics_info(&v, k, &m) == 0 && m.type == MC_METRIC_COUNTER &&
		    strcmp(m.name, MC_METRIC_HANDLER_ERRORS) == 0)
			out->errors += mc_metrics_read_counter(&m);
	if (!mc_metrics_view_ok(&v))
		return -EAGAIN;
	out->has_rates = mc_metrics_rates(seg, slot, &out->in_per_s, &out->out_per_s, &age) == 0 &&
	    age < 5 * MC_METRICS_TICK_NS;
	return 0;
}

int mc_metrics_summary(const struct mc_seg *seg, unsigned slot, struct mc_metrics_summary *out)
{
	int rc = -EAGAIN;

	/* a block reset while we read it is read again, a few times at most */
	for (int tries = 0; tries < 4 && rc == -EAGAIN; tries++)
		rc = mc_metrics_summary_once(seg, slot, out);
	return rc == -EAGAIN ? -ENOENT : rc;
}
