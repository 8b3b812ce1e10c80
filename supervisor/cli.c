/*
 * cli.c - `mcpcore layout`, `mcpcore status` and `mcpcore ping`.
 *
 * The JSON forms are a stable interface (documented in README.md):
 *   layout: {"instance", "total", "regions": [{"name","offset","size","writer"}], ...}
 *   status: {"instance", "supervisor": {"pid", ...},
 *            "workers": [{"name","pid","state","restarts","heartbeat_age_ms", ...}],
 *            "clients": [...], "rings": [...], "pools": [...]}
 * Fields may be added; none is renamed or removed.
 */
#include "mc_cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mc_cli_metrics.h"
#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_persist.h"
#include "mc_proto.h"
#include "mc_ring.h"
#include "mc_seg.h"
#include "mc_state.h"
#include "mc_status.h"
#include "mc_util.h"

static void mc_cli_print_json(json_t *doc)
{
	char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (text != NULL) {
		puts(text);
		free(text);
	}
	json_decref(doc);
}

static void mc_cli_size(uint64_t bytes, char *buf, size_t len)
{
	if (bytes >= (1ULL << 30) && bytes % (1ULL << 30) == 0)
		snprintf(buf, len, "%llu GiB", (unsigned long long)(bytes >> 30));
	else if (bytes >= (1ULL << 30))
		snprintf(buf, len, "%.2f GiB", (double)bytes / (double)(1ULL << 30));
	else if (bytes >= (1ULL << 20))
		snprintf(buf, len, "%.1f MiB", (double)bytes / (double)(1ULL << 20));
	else
		snprintf(buf, len, "%.1f KiB", (double)bytes / 1024.0);
}

int mc_cli_layout(const struct mc_config *cfg, bool json)
{
	char err[MC_CONFIG_ERR_MAX + 256], sz[32];
	struct mc_layout lay;
	json_t *regions;

	if (mc_layout_compute(cfg, &lay, err, sizeof(err)) != 0) {
		fprintf(stderr, "mcpcore: %s\n", err);
		return MC_CONFIG_EX;
	}
	if (json) {
		regions = json_array();
		for (int i = 0; i < MC_NREGIONS; i++)
			json_array_append_new(regions, json_pack("{s:s, s:I, s:I, s:s}",
			    "name", lay.region[i].name, "offset", (json_int_t)lay.region[i].offset,
			    "size", (json_int_t)lay.region[i].size, "writer", lay.region[i].writer));
		mc_cli_print_json(json_pack("{s:s, s:s, s:I, s:o, s:{s:i, s:i, s:i, s:i, s:I}}",
		    "instance", cfg->instance, "config", cfg->source, "total", (json_int_t)lay.total,
		    "regions", regions, "control", "slots", (int)lay.nslots, "rings", (int)lay.nrings,
		    "ring_entries", (int)lay.ring_entries, "journal_entries", (int)lay.journal_entries,
		    "frame_pool_size", (json_int_t)lay.pool_size));
		return 0;
	}
	printf("instance %s (%s)\n", cfg->instance, cfg->source);
	printf("%-24s %16s %16s  %s\n", "REGION", "OFFSET", "SIZE", "WRITER");
	for (int i = 0; i < MC_NREGIONS; i++) {
		mc_cli_size(lay.region[i].size, sz, sizeof(sz));
		printf("%-24s %16llu %16s  %s\n", lay.region[i].name,
		    (unsigned long long)lay.region[i].offset, sz, lay.region[i].writer);
	}
	mc_cli_size(lay.total, sz, sizeof(sz));
	printf("%-24s %16s %16s  (%llu bytes)\n", "total", "", sz, (unsigned long long)lay.total);
	mc_cli_size(lay.pool_size, sz, sizeof(sz));
	printf("\n%u slots, %u rings of %u entries, frame pools of %s\n", lay.nslots, lay.nrings,
	    lay.ring_entries, sz);
	return 0;
}

static json_t *mc_cli_state_doc(const struct mc_seg *seg);

static json_t *mc_cli_age(uint64_t now, uint64_t then)
{
	return then == 0 ? json_null() : json_integer((json_int_t)((now > then ? now - then : 0) / 1000000));
}

static json_t *mc_cli_status_doc(const struct mc_seg *seg)
{
	const struct mc_seg_hdr *h = seg->hdr;
	uint64_t now = mc_now_ns();
	json_t *workers = json_array(), *clients = json_array(), *rings = mc_status_rings(seg);
	json_t *pools = json_array();
	static const char *const seg_states[] = { "init", "ready", "stopping" };

	for (unsigned s = 1; s < h->sh_nslots; s++) {
		const struct mc_slot *sl = &seg->slots[s];
		int pid = ck_pr_load_int(&sl->sl_pid);

		if (sl->sl_kind == MC_KIND_WORKER)
			json_array_append_new(workers, json_pack("{s:s, s:i, s:i, s:s, s:i, s:i, s:o, s:i}",
			    "name", sl->sl_name, "slot", (int)s, "pid", pid,
			    "state", mc_slot_state_name(sl->sl_state), "restarts", (int)sl->sl_restarts,
			    "generation", (int)sl->sl_generation, "heartbeat_age_ms",
			    pid ? mc_cli_age(now, sl->sl_heartbeat_ns) : json_null(),
			    "last_exit_status", (int)sl->sl_last_status));
		else if (pid != 0)
			json_array_append_new(clients, json_pack("{s:s, s:s, s:i, s:i, s:s, s:o}",
			    "name", sl->sl_name, "label", sl->sl_label, "slot", (int)s, "pid", pid,
			    "state", mc_slot_state_name(sl->sl_state),
			    "heartbeat_age_ms", mc_cli_age(now, sl->sl_heartbeat_ns)));
		json_array_append_new(pools, json_pack("{s:s, s:i, s:I, s:I, s:I}", "name",
		    sl->sl_name, "slot", (int)s, "used", (json_int_t)(sl->sl_pool_head - sl->sl_pool_tail),
		    "size", (json_int_t)sl->sl_pool_size, "frames_sent", (json_int_t)sl->sl_seq));
	}
	return json_pack("{s:s, s:s, s:I, s:s, s:{s:i, s:b, s:o}, s:o, s:o, s:o, s:o, s:o}",
	    "instance", h->sh_instance, "segment", seg->name, "size", (json_int_t)h->sh_size,
	    "state", h->sh_state < 3 ? seg_states[h->sh_state] : "unknown",
	    "supervisor", "pid", (int)h->sh_supervisor_pid, "alive", mc_seg_supervisor_alive(seg),
	    "heartbeat_age_ms", mc_cli_age(now, h->sh_heartbeat_ns),
	    "workers", workers, "clients", clients, "rings", rings, "pools", pools,
	    "state_table", mc_cli_state_doc(seg));
}

/* The state manager's table and arena usage (null before it is set up). */
static json_t *mc_cli_state_doc(const struct mc_seg *seg)
{
	struct mc_state_stats st;

	if (mc_state_stats(seg, &st) != 0)
		return json_null();
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "capacity",
	    (json_int_t)st.capacity, "live", (json_int_t)st.live, "tombstones",
	    (json_int_t)st.tombstones, "arena_size", (json_int_t)st.arena_size, "arena_live",
	    (json_int_t)st.arena_live, "arena_free", (json_int_t)st.arena_free, "arena_unused",
	    (json_int_t)(st.arena_size - st.arena_top), "writes", (json_int_t)st.writes);
}

static void mc_cli_status_text(json_t *doc)
{
	json_t *sup = json_object_get(doc, "supervisor"), *v;
	size_t i, busy = 0;

	printf("instance %s  segment %s  state %s\n", json_string_value(json_object_get(doc, "instance")),
	    json_string_value(json_object_get(doc, "segment")),
	    json_string_value(json_object_get(doc, "state")));
	printf("supervisor pid %lld  %s  heartbeat %lld ms ago\n\n",
	    json_integer_value(json_object_get(sup, "pid")),
	    json_is_true(json_object_get(sup, "alive")) ? "alive" : "DEAD",
	    json_integer_value(json_object_get(sup, "heartbeat_age_ms")));
	printf("%-12s %8s %-9s %8s %5s %14s\n", "WORKER", "PID", "STATE", "RESTARTS", "GEN", "HEARTBEAT_MS");
	json_array_foreach(json_object_get(doc, "workers"), i, v) {
		json_t *age = json_object_get(v, "heartbeat_age_ms");
		char agebuf[24] = "-";

		if (json_is_integer(age))
			snprintf(agebuf, sizeof(agebuf), "%lld", json_integer_value(age));
		printf("%-12s %8lld %-9s %8lld %5lld %14s\n", json_string_value(json_object_get(v, "name")),
		    json_integer_value(json_object_get(v, "pid")),
		    json_string_value(json_object_get(v, "state")),
		    json_integer_value(json_object_get(v, "restarts")),
		    json_integer_value(json_object_get(v, "generation")), agebuf);
	}
	json_array_foreach(json_object_get(doc, "clients"), i, v)
		printf("%-12s %8lld %-9s (client: %s)\n", json_string_value(json_object_get(v, "name")),
		    json_integer_value(json_object_get(v, "pid")),
		    json_string_value(json_object_get(v, "state")),
		    json_string_value(json_object_get(v, "label")));
	printf("\n%-28s %8s %8s\n", "RING (non-empty)", "DEPTH", "CAPACITY");
	json_array_foreach(json_object_get(doc, "rings"), i, v) {
		if (json_integer_value(json_object_get(v, "depth")) == 0)
			continue;
		busy++;
		printf("%-28s %8lld %8lld\n", json_string_value(json_object_get(v, "name")),
		    json_integer_value(json_object_get(v, "depth")),
		    json_integer_value(json_object_get(v, "capacity")));
	}
	printf("(%zu of %zu rings non-empty)\n", busy, json_array_size(json_object_get(doc, "rings")));
	v = json_object_get(doc, "state_table");
	if (json_is_object(v))
		printf("\nstate table: %lld live, %lld tombstones of %lld entries; arena %lld bytes in "
		    "use, %lld free, %lld unused of %lld\n",
		    json_integer_value(json_object_get(v, "live")),
		    json_integer_value(json_object_get(v, "tombstones")),
		    json_integer_value(json_object_get(v, "capacity")),
		    json_integer_value(json_object_get(v, "arena_live")),
		    json_integer_value(json_object_get(v, "arena_free")),
		    json_integer_value(json_object_get(v, "arena_unused")),
		    json_integer_value(json_object_get(v, "arena_size")));
}

int mc_cli_status(const char *instance, bool json, bool watch)
{
	char err[512];
	struct mc_seg seg;
	int rc = mc_seg_attach(&seg, instance, true, err, sizeof(err));

	if (rc) {
		fprintf(stderr, "mcpcore: %s\n", err);
		return 1;
	}
	do {
		json_t *doc = mc_cli_status_doc(&seg);

		/* the persistence worker's control block (workers/persistence) */
		json_object_set_new(doc, "persistence", mc_persist_status_json(&seg));
		/* every process's metrics block (shm/mc_metrics.h) */
		mc_cli_metrics_add(&seg, doc);

		if (watch)
			printf("\033[H\033[2J");
		if (json)
			mc_cli_print_json(doc);
		else {
			mc_cli_status_text(doc);
			mc_persist_status_print(json_object_get(doc, "persistence"));
			mc_cli_metrics_print(doc);
			json_decref(doc);
		}
		fflush(stdout);
		if (watch)
			sleep(1);
	} while (watch);
	mc_seg_detach(&seg);
	return 0;
}

/* Wait up to timeout_ns for the PONG answering `nonce`. */
static int mc_cli_await_pong(struct mc_seg *seg, uint64_t nonce, uint64_t timeout_ns,
    Mcpcore__Control **out)
{
	uint64_t end = mc_now_ns() + timeout_ns;
	struct mc_msg m;

	while (mc_now_ns() < end) {
		if (mc_recv(seg, &m) != 0) {
			mc_ring_wait(seg, 20000, end - mc_now_ns());
			continue;
		}
		if (m.frame->f_kind == MC_FK_CONTROL) {
			Mcpcore__Control *c = (Mcpcore__Control *)mc_proto_unpack(m.frame);

			if (c != NULL && c->op == MCPCORE__CONTROL__OP__PONG && c->nonce == nonce) {
				mc_frame_release(seg, &m);
				*out = c;
				return 0;
			}
			if (c != NULL)
				protobuf_c_message_free_unpacked(&c->base, NULL);
		}
		mc_frame_release(seg, &m);
	}
	return -ETIMEDOUT;
}

int mc_cli_ping(const char *instance, const char *only, int count, bool json)
{
	char err[512];
	struct mc_seg seg;
	int rc, failures = 0;
	json_t *results = json_array();

	rc = mc_seg_attach(&seg, instance, false, err, sizeof(err));
	if (rc == 0)
		rc = mc_seg_claim_client(&seg, "ping", err, sizeof(err));
	if (rc) {
		fprintf(stderr, "mcpcore: %s\n", err);
		json_decref(results);
		return 1;
	}
	for (unsigned w = MC_SLOT_FIRST_WORKER; w < MC_SLOT_FIRST_CLIENT; w++) {
		const char *name = mc_layout_worker_name(w);

		if (only != NULL && strcmp(only, name) != 0)
			continue;
		for (int i = 0; i < count; i++) {
			Mcpcore__Control ping = MCPCORE__CONTROL__INIT, *pong = NULL;
			uint64_t t0 = mc_now_ns(), nonce = t0 ^ ((uint64_t)w << 56);

			ping.op = MCPCORE__CONTROL__OP__PING;
			ping.nonce = nonce;
			ping.sent_ns = t0;
			rc = mc_proto_send(&seg, &ping.base, 1ULL << w);
			if (rc == 0)
				rc = mc_cli_await_pong(&seg, nonce, 2000000000ULL, &pong);
			if (rc) {
				failures++;
				json_array_append_new(results, json_pack("{s:s, s:s}", "worker", name,
				    "error", mc_strerror(rc)));
				if (!json)
					printf("%-12s error: %s\n", name, mc_strerror(rc));
				continue;
			}
			json_array_append_new(results, json_pack("{s:s, s:i, s:i, s:I, s:f}", "worker", name,
			    "pid", (int)pong->pid, "generation", (int)pong->generation,
			    "handled", (json_int_t)pong->handled, "rtt_us",
			    (double)(mc_now_ns() - t0) / 1000.0));
			if (!json)
				printf("%-12s pid %-8d gen %-4u rtt %.1f us\n", name, pong->pid,
				    pong->generation, (double)(mc_now_ns() - t0) / 1000.0);
			protobuf_c_message_free_unpacked(&pong->base, NULL);
		}
	}
	if (json)
		mc_cli_print_json(json_pack("{s:o}", "results", results));
	else
		json_decref(results);
	mc_seg_release_client(&seg);
	mc_seg_detach(&seg);
	return failures ? 1 : 0;
}
