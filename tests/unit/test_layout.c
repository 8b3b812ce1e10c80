/*
 * test_layout.c - unit tests for the segment layout (shm/layout.c,
 * contract in shm/mc_layout.h).
 *
 * Pure arithmetic: no segment is created.  The default configuration
 * (the seed's values) must give the 11 regions back to back, 12 GiB in
 * total; the control structures must fit in shared.rings without
 * overlapping; the ring index must be a bijection over the pairs the
 * contract says have a ring; impossible sizes must be configuration
 * errors that name the key and the line it was set on.
 */
#define _GNU_SOURCE

#include <criterion/criterion.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_config.h"
#include "mc_layout.h"
#include "mc_ring.h"
#include "mc_seg.h"

#ifndef MC_SOURCE_DIR
#error "MC_SOURCE_DIR must be defined to the repository root"
#endif

#define KIB (1ull << 10)
#define MIB (1ull << 20)
#define GIB (1ull << 30)

static char err[MC_CONFIG_ERR_MAX];

static bool is_pow2(uint64_t v)
{
	return v != 0 && (v & (v - 1)) == 0;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static bool is_worker(unsigned s)
{
	return s >= MC_SLOT_FIRST_WORKER && s < MC_SLOT_FIRST_CLIENT;
}

/* Does the contract say a ring (src -> dst) exists? */
static bool ring_expected(unsigned nslots, unsigned src, unsigned dst)
{
	if (src >= nslots || dst >= nslots || src == dst)
		return false;
	if (src == MC_SLOT_SUPERVISOR || dst == MC_SLOT_SUPERVISOR)
		return false;
	return is_worker(src) || is_worker(dst);
}

static void load_default(struct mc_config *cfg)
{
	int rc = mc_config_load(MC_SOURCE_DIR "/config/mcpcore.toml", cfg, err, sizeof(err));

	cr_assert_eq(rc, 0, "config/mcpcore.toml does not load: %s", err);
}

/*
 * Every invariant of a successfully computed layout, for any config.
 * Asserts on failure; `what` names the configuration in messages.
 */
static void check_layout(const struct mc_config *cfg, const struct mc_layout *lay,
    const char *what)
{
	const uint64_t sizes[MC_NREGIONS] = {
		cfg->ring_buffer_size, cfg->state_cache_size, cfg->message_queue_size,
		cfg->core_protocol, cfg->core_state, cfg->core_routing,
		cfg->learning_models, cfg->learning_training, cfg->learning_features,
		cfg->storage_active_models, cfg->storage_history,
	};
	const struct mc_layout_region *rings = &lay->region[MC_REGION_SHARED_RINGS];
	const struct mc_layout_region *mq = &lay->region[MC_REGION_SHARED_MESSAGE_QUEUE];
	uint64_t off = 0, frame_block;
	unsigned clients = cfg->max_clients;

	/* regions: back to back, in enum order, sizes from the config */
	for (int i = 0; i < MC_NREGIONS; i++) {
		cr_assert_eq(lay->region[i].offset, off, "%s: region %d (%s) offset %llu, expected %llu",
		    what, i, lay->region[i].name, (unsigned long long)lay->region[i].offset,
		    (unsigned long long)off);
		cr_assert_eq(lay->region[i].size, sizes[i], "%s: region %d size", what, i);
		cr_assert_eq(lay->region[i].offset % 4096, 0, "%s: region %d not page aligned", what, i);
		off += lay->region[i].size;
	}
	cr_assert_eq(lay->total, off, "%s: total %llu != sum of regions %llu", what,
	    (unsigned long long)lay->total, (unsigned long long)off);

	/* slots and rings */
	cr_assert_eq(lay->nslots, 1 + MC_NWORKERS + clients, "%s: nslots", what);
	cr_assert_leq(lay->nslots, MC_MAX_SLOTS, "%s: nslots over MC_MAX_SLOTS", what);
	{
		unsigned pairs = 0;

		for (unsigned s = 0; s < lay->nslots; s++)
			for (unsigned d = 0; d < lay->nslots; d++)
				pairs += ring_expected(lay->nslots, s, d);
		cr_assert_eq(lay->nrings, pairs, "%s: nrings %u, contract gives %u pairs", what,
		    lay->nrings, pairs);
	}
	cr_assert(is_pow2(lay->ring_entries), "%s: ring_entries %u not a power of two", what,
	    lay->ring_entries);
	cr_assert_geq(lay->ring_entries, MC_RING_MIN_ENTRIES, "%s", what);
	cr_assert_leq(lay->ring_entries, MC_RING_MAX_ENTRIES, "%s", what);
	cr_assert(is_pow2(lay->journal_entries), "%s: journal_entries %u not a power of two", what,
	    lay->journal_entries);
	cr_assert_leq(lay->journal_entries, MC_JOURNAL_MAX, "%s", what);
	cr_assert_leq(lay->journal_entries, lay->ring_entries, "%s", what);

	/* control structures: in order, no overlap, inside shared.rings */
	cr_assert_geq(lay->slots_off, MC_SEG_HDR_SIZE, "%s: slot table overlaps the header", what);
	cr_assert_geq(lay->ringmap_off, lay->slots_off + (uint64_t)lay->nslots * MC_SLOT_SIZE,
	    "%s: ring map overlaps the slot table", what);
	cr_assert_geq(lay->ringdir_off, lay->ringmap_off +
	    (uint64_t)lay->nslots * lay->nslots * sizeof(int16_t),
	    "%s: ring directory overlaps the ring map", what);
	cr_assert_geq(lay->metrics_off, lay->ringdir_off + (uint64_t)lay->nrings * MC_RING_SIZE,
	    "%s: metrics blocks overlap the ring directory", what);
	cr_assert_eq(lay->metrics_off % 4096, 0, "%s: metrics blocks not page aligned", what);
	cr_assert_geq(lay->ringbuf_off, lay->metrics_off + (uint64_t)lay->nslots * MC_METRICS_BLOCK,
	    "%s: ring entries overlap the metrics blocks", what);
	cr_assert_geq(lay->ringbuf_off, lay->ringdir_off + (uint64_t)lay->nrings * MC_RING_SIZE,
	    "%s: ring buffers overlap the ring directory", what);
	cr_assert_geq(lay->journal_off, lay->ringbuf_off +
	    (uint64_t)lay->nrings * lay->ring_entries * MC_DESC_SIZE,
	    "%s: journals overlap the ring buffers", what);
	cr_assert_geq(lay->control_end, lay->journal_off +
	    (uint64_t)lay->nrings * lay->journal_entries * MC_DESC_SIZE,
	    "%s: control_end inside the journals", what);
	cr_assert_leq(lay->control_end, rings->offset + rings->size,
	    "%s: control structures (%llu bytes) do not fit in shared.rings (%llu)", what,
	    (unsigned long long)lay->control_end, (unsigned long long)rings->size);
	/* the structures placed there must be correctly aligned for their types */
	cr_assert_eq(lay->slots_off % _Alignof(struct mc_slot), 0, "%s: slots misaligned", what);
	cr_assert_eq(lay->ringmap_off % _Alignof(int16_t), 0, "%s", what);
	cr_assert_eq(lay->ringdir_off % _Alignof(struct mc_ring), 0, "%s: ring dir misaligned", what);
	cr_assert_eq(lay->ringbuf_off % _Alignof(struct mc_desc), 0, "%s", what);
	cr_assert_eq(lay->journal_off % _Alignof(struct mc_desc), 0, "%s", what);

	/* frame pools: one per slot but the supervisor's, in the message queue */
	frame_block = align_up(MC_FRAME_HDR_SIZE + cfg->max_message_size, MC_FRAME_ALIGN);
	cr_assert_eq(lay->max_frame, cfg->max_message_size, "%s: max_frame", what);
	cr_assert_eq(lay->pool_off, mq->offset, "%s: pool_off is not the message queue", what);
	cr_assert_eq(lay->pool_off % 4096, 0, "%s", what);
	cr_assert_eq(lay->pool_size % 4096, 0, "%s: pool_size %llu not a multiple of 4096", what,
	    (unsigned long long)lay->pool_size);
	cr_assert_geq(lay->pool_size, MC_POOL_MIN_FRAMES * frame_block,
	    "%s: pool of %llu bytes holds fewer than %u frames of %llu", what,
	    (unsigned long long)lay->pool_size, MC_POOL_MIN_FRAMES,
	    (unsigned long long)frame_block);
	cr_assert_leq(lay->pool_off + (uint64_t)(lay->nslots - 1) * lay->pool_size,
	    mq->offset + mq->size, "%s: pools overflow shared.message_queue", what);
}

/* ------------------------------------------------------------------ */

Test(layout, default_config_is_12_gib_in_seed_order)
{
	static const char *const names[MC_NREGIONS] = {
		"shared.rings", "shared.state_cache", "shared.message_queue",
		"core.protocol", "core.state", "core.routing",
		"learning.models", "learning.training", "learning.features",
		"storage.active_models", "storage.history",
	};
	static const uint64_t sizes[MC_NREGIONS] = {
		1 * GIB, 2 * GIB, 1 * GIB, 1 * GIB, 1 * GIB, 1 * GIB,
		3 * GIB / 2, 1 * GIB, GIB / 2, 1 * GIB, 1 * GIB,
	};
	struct mc_config cfg;
	struct mc_layout lay;
	uint64_t off = 0;

	mc_config_defaults(&cfg);
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(lay.total, 12884901888ull);
	for (int i = 0; i < MC_NREGIONS; i++) {
		cr_assert_not_null(lay.region[i].name);
		cr_assert_str_eq(lay.region[i].name, names[i], "region %d", i);
		cr_assert_not_null(lay.region[i].writer, "region %d has no writer", i);
		cr_assert_gt(strlen(lay.region[i].writer), 0);
		cr_assert_eq(lay.region[i].size, sizes[i], "region %s", names[i]);
		cr_assert_eq(lay.region[i].offset, off, "region %s", names[i]);
		cr_assert_eq(lay.region[i].size % 4096, 0);
		off += sizes[i];
	}
	cr_assert_eq(off, 12884901888ull);
	/* the three shared.* regions are memory.shared_memory_size */
	cr_assert_eq(lay.region[MC_REGION_SHARED_RINGS].size +
	    lay.region[MC_REGION_SHARED_STATE_CACHE].size +
	    lay.region[MC_REGION_SHARED_MESSAGE_QUEUE].size, cfg.shared_memory_size);
	check_layout(&cfg, &lay, "defaults");
	cr_assert_eq(lay.nslots, 1 + MC_NWORKERS + 16);
}

Test(layout, shipped_default_file_matches_defaults)
{
	struct mc_config file, def;
	struct mc_layout a, b;

	load_default(&file);
	mc_config_defaults(&def);
	cr_assert_eq(mc_layout_compute(&file, &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(mc_layout_compute(&def, &b, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(a.total, 12884901888ull);
	for (int i = 0; i < MC_NREGIONS; i++) {
		cr_assert_str_eq(a.region[i].name, b.region[i].name);
		cr_assert_eq(a.region[i].offset, b.region[i].offset);
		cr_assert_eq(a.region[i].size, b.region[i].size);
	}
	check_layout(&file, &a, "config/mcpcore.toml");
}

/* The configuration the test suites use must itself give a valid layout. */
Test(layout, shipped_test_config_computes)
{
	struct mc_config cfg;
	struct mc_layout lay;
	int rc = mc_config_load(MC_SOURCE_DIR "/config/test.toml", &cfg, err, sizeof(err));

	cr_assert_eq(rc, 0, "config/test.toml does not load: %s", err);
	rc = mc_layout_compute(&cfg, &lay, err, sizeof(err));
	cr_assert_eq(rc, 0, "config/test.toml gives no layout: %s", err);
	check_layout(&cfg, &lay, "config/test.toml");
}

Test(layout, worker_names_and_slots)
{
	static const char *const names[MC_NWORKERS] = {
		"state", "persistence", "monitor", "router", "protocol",
	};

	cr_assert_eq(MC_WORKER_STATE, MC_SLOT_FIRST_WORKER);
	cr_assert_eq(MC_WORKER_PROTOCOL, MC_SLOT_FIRST_CLIENT - 1);
	for (unsigned i = 0; i < MC_NWORKERS; i++) {
		unsigned slot = MC_SLOT_FIRST_WORKER + i;

		cr_assert_str_eq(mc_layout_worker_name(slot), names[i]);
		cr_assert_eq(mc_layout_worker_slot(names[i]), (int)slot);
	}
	cr_assert_null(mc_layout_worker_name(MC_SLOT_SUPERVISOR));
	cr_assert_null(mc_layout_worker_name(MC_SLOT_FIRST_CLIENT));
	cr_assert_null(mc_layout_worker_name(MC_MAX_SLOTS));
	cr_assert_null(mc_layout_worker_name(~0u));
	cr_assert_eq(mc_layout_worker_slot("supervisor"), -1);
	cr_assert_eq(mc_layout_worker_slot("State"), -1);
	cr_assert_eq(mc_layout_worker_slot("stat"), -1);
	cr_assert_eq(mc_layout_worker_slot(""), -1);
	cr_assert_eq(mc_layout_worker_slot(NULL), -1);
}

/* Bijection of the ring index onto 0..nrings-1 for one layout. */
static void check_ring_index(const struct mc_layout *lay)
{
	unsigned n = lay->nslots;
	int *owner = calloc(lay->nrings, sizeof(int));
	unsigned valid = 0;

	cr_assert_not_null(owner);
	for (unsigned i = 0; i < lay->nrings; i++)
		owner[i] = -1;
	for (unsigned s = 0; s < n; s++) {
		for (unsigned d = 0; d < n; d++) {
			int idx = mc_layout_ring_index(lay, s, d);

			if (!ring_expected(n, s, d)) {
				cr_assert_eq(idx, -1, "nslots %u: (%u -> %u) must have no ring, got %d",
				    n, s, d, idx);
				continue;
			}
			valid++;
			cr_assert(idx >= 0 && (unsigned)idx < lay->nrings,
			    "nslots %u: (%u -> %u) index %d outside 0..%u", n, s, d, idx, lay->nrings - 1);
			cr_assert_eq(owner[idx], -1, "nslots %u: index %d given to (%u -> %u) and to "
			    "(%d -> %d)", n, idx, s, d, owner[idx] / (int)n, owner[idx] % (int)n);
			owner[idx] = (int)(s * n + d);
		}
	}
	cr_assert_eq(valid, lay->nrings);
	for (unsigned i = 0; i < lay->nrings; i++)
		cr_assert_neq(owner[i], -1, "nslots %u: ring index %u is never used", n, i);
	/* slots outside the table have no ring either */
	cr_assert_eq(mc_layout_ring_index(lay, n, MC_SLOT_FIRST_WORKER), -1);
	cr_assert_eq(mc_layout_ring_index(lay, MC_SLOT_FIRST_WORKER, n), -1);
	cr_assert_eq(mc_layout_ring_index(lay, MC_SLOT_FIRST_WORKER, MC_MAX_SLOTS + 5), -1);
	cr_assert_eq(mc_layout_ring_index(lay, ~0u, MC_SLOT_FIRST_WORKER), -1);
	free(owner);
}

Test(layout, ring_index_bijection_default)
{
	struct mc_config cfg;
	struct mc_layout lay;

	mc_config_defaults(&cfg);
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), 0, "%s", err);
	check_ring_index(&lay);
	/* explicit spot checks of the rule */
	cr_assert_eq(mc_layout_ring_index(&lay, MC_SLOT_SUPERVISOR, MC_WORKER_STATE), -1);
	cr_assert_eq(mc_layout_ring_index(&lay, MC_WORKER_STATE, MC_SLOT_SUPERVISOR), -1);
	cr_assert_eq(mc_layout_ring_index(&lay, MC_WORKER_ROUTER, MC_WORKER_ROUTER), -1);
	cr_assert_eq(mc_layout_ring_index(&lay, MC_SLOT_FIRST_CLIENT, MC_SLOT_FIRST_CLIENT + 1), -1);
	cr_assert_eq(mc_layout_ring_index(&lay, MC_SLOT_FIRST_CLIENT + 3, MC_SLOT_FIRST_CLIENT), -1);
	cr_assert_geq(mc_layout_ring_index(&lay, MC_SLOT_FIRST_CLIENT, MC_WORKER_PROTOCOL), 0);
	cr_assert_geq(mc_layout_ring_index(&lay, MC_WORKER_PROTOCOL, MC_SLOT_FIRST_CLIENT), 0);
	cr_assert_geq(mc_layout_ring_index(&lay, MC_WORKER_STATE, MC_WORKER_PROTOCOL), 0);
}

/* Every legal client count, with small and large ring regions. */
Test(layout, invariants_for_every_client_count)
{
	/* 8 MiB: the smallest that holds 56 clients' metrics blocks and rings */
	static const uint64_t ring_sizes[] = { 8 * MIB, 64 * MIB, 1 * GIB };

	for (unsigned c = 1; c <= MC_MAX_SLOTS - MC_SLOT_FIRST_CLIENT; c++) {
		for (size_t r = 0; r < sizeof(ring_sizes) / sizeof(ring_sizes[0]); r++) {
			struct mc_config cfg;
			struct mc_layout lay;
			char what[64];
			int rc;

			mc_config_defaults(&cfg);
			cfg.max_clients = c;
			cfg.ring_buffer_size = ring_sizes[r];
			snprintf(what, sizeof(what), "max_clients %u, rings %llu", c,
			    (unsigned long long)ring_sizes[r]);
			rc = mc_layout_compute(&cfg, &lay, err, sizeof(err));
			cr_assert_eq(rc, 0, "%s: %s", what, err);
			check_layout(&cfg, &lay, what);
			check_ring_index(&lay);
		}
	}
}

/*
 * A ring region so small that not even MC_RING_MIN_ENTRIES fit.  The
 * error names the file, the line the key was set on, and the key.
 */
Test(layout, ring_buffer_too_small_is_config_error)
{
	static const char text[] =
	    "instance = \"t\"\n"                        /* 1 */
	    "[core]\n"                                  /* 2 */
	    "state_cache_size = 8388608\n"              /* 3 */
	    "[memory]\n"                                /* 4 */
	    "shared_memory_size = 16842752\n"           /* 5 */
	    "ring_buffer_size = 65536\n"                /* 6 */
	    "message_queue_size = 8388608\n"            /* 7 */
	    "max_message_size = 65536\n"                /* 8 */
	    "max_clients = 4\n"                         /* 9 */
	    "[state]\n"                                 /* 10 */
	    "max_value_size = 32768\n";                 /* 11 */
	struct mc_config cfg;
	struct mc_layout lay;
	int rc = mc_config_parse("t.toml", text, strlen(text), &cfg, err, sizeof(err));

	cr_assert_eq(rc, 0, "%s", err);
	memset(err, 0, sizeof(err));
	rc = mc_layout_compute(&cfg, &lay, err, sizeof(err));
	cr_assert_eq(rc, MC_CONFIG_EX, "a 64 KiB ring region was accepted");
	cr_assert(strncmp(err, "t.toml:6: memory.ring_buffer_size: ", 35) == 0,
	    "unexpected message: '%s'", err);
	cr_assert_null(strchr(err, '\n'), "message is not one line: '%s'", err);
}

/* Just below the size that fits the minimum rings fails; at it, works. */
Test(layout, ring_buffer_minimum_boundary)
{
	struct mc_config cfg;
	struct mc_layout lay;
	uint64_t lo = 4096, hi = 4 * MIB;

	mc_config_defaults(&cfg);
	cfg.max_clients = 4;
	cfg.max_message_size = 65536;
	cfg.state_max_value_size = 32768;
	cfg.ring_buffer_size = hi;
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), 0, "%s", err);
	/* bisect over page multiples for the smallest working size */
	while (hi - lo > 4096) {
		uint64_t mid = (lo + hi) / 2 / 4096 * 4096;

		cfg.ring_buffer_size = mid;
		if (mc_layout_compute(&cfg, &lay, err, sizeof(err)) == 0)
			hi = mid;
		else
			lo = mid;
	}
	cfg.ring_buffer_size = hi;
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(lay.ring_entries, MC_RING_MIN_ENTRIES, "smallest region should give the "
	    "smallest rings, got %u", lay.ring_entries);
	check_layout(&cfg, &lay, "minimal rings");
	cfg.ring_buffer_size = lo;
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), MC_CONFIG_EX);
	cr_assert_not_null(strstr(err, "memory.ring_buffer_size"), "%s", err);
}

Test(layout, message_queue_too_small_is_config_error)
{
	static const char text[] =
	    "instance = \"t\"\n"                        /* 1 */
	    "[core]\n"                                  /* 2 */
	    "state_cache_size = 8388608\n"              /* 3 */
	    "\n"                                        /* 4 */
	    "[memory]\n"                                /* 5 */
	    "shared_memory_size = 12648448\n"           /* 6 */
	    "ring_buffer_size = 4194304\n"              /* 7 */
	    "max_clients = 4\n"                         /* 8 */
	    "message_queue_size = 65536\n";             /* 9 */
	struct mc_config cfg;
	struct mc_layout lay;
	int rc = mc_config_parse("t.toml", text, strlen(text), &cfg, err, sizeof(err));

	cr_assert_eq(rc, 0, "%s", err);
	memset(err, 0, sizeof(err));
	rc = mc_layout_compute(&cfg, &lay, err, sizeof(err));
	cr_assert_eq(rc, MC_CONFIG_EX, "a 64 KiB message queue was accepted for 1 MiB frames");
	cr_assert(strncmp(err, "t.toml:9: memory.message_queue_size: ", 37) == 0,
	    "unexpected message: '%s'", err);
	cr_assert_null(strchr(err, '\n'), "message is not one line: '%s'", err);
}

/* Pools must hold MC_POOL_MIN_FRAMES max-size frames: exactly at the edge. */
Test(layout, message_queue_minimum_boundary)
{
	struct mc_config cfg;
	struct mc_layout lay;
	uint64_t block, pools, pool;

	mc_config_defaults(&cfg);
	cfg.max_clients = 4;
	cfg.ring_buffer_size = 4 * MIB;
	cfg.max_message_size = 100001;          /* not a multiple of anything */
	block = align_up(MC_FRAME_HDR_SIZE + cfg.max_message_size, MC_FRAME_ALIGN);
	pools = MC_NWORKERS + cfg.max_clients;  /* every slot but the supervisor */
	pool = align_up(MC_POOL_MIN_FRAMES * block, 4096);
	cfg.message_queue_size = pool * pools;
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), 0, "%s", err);
	check_layout(&cfg, &lay, "minimal pools");
	cfg.message_queue_size = pool * pools - 4096;
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), MC_CONFIG_EX,
	    "pools of less than %u frames accepted", MC_POOL_MIN_FRAMES);
	cr_assert_not_null(strstr(err, "memory.message_queue_size"), "%s", err);
}

Test(layout, max_clients_limit)
{
	static const char text[] =
	    "[memory]\n"                                /* 1 */
	    "max_clients = 56\n";                       /* 2 */
	struct mc_config cfg;
	struct mc_layout lay;
	int rc = mc_config_parse("t.toml", text, strlen(text), &cfg, err, sizeof(err));

	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), 0, "56 clients: %s", err);
	cr_assert_eq(lay.nslots, MC_MAX_SLOTS);
	check_layout(&cfg, &lay, "56 clients");

	/* past the holder-bit limit: the layout refuses, naming the key's line */
	cfg.max_clients = MC_MAX_SLOTS - MC_SLOT_FIRST_CLIENT + 1;
	memset(err, 0, sizeof(err));
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), MC_CONFIG_EX);
	cr_assert(strncmp(err, "t.toml:2: memory.max_clients: ", 30) == 0, "'%s'", err);
	cfg.max_clients = 1000;
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), MC_CONFIG_EX);
}

/*
 * A hand-built config (the struct is plain data; the file reader caps the
 * key at 56, but mc_layout_compute is also the check for configs that do
 * not come from a file) with a huge client count must be refused, not
 * wrap around the slot-count check and give a 5-slot layout.
 */
Test(layout, max_clients_huge_does_not_wrap)
{
	static const uint32_t huge[] = { UINT32_MAX, UINT32_MAX - 5, UINT32_MAX - 2, 1u << 31 };
	struct mc_config cfg;
	struct mc_layout lay;

	for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
		mc_config_defaults(&cfg);
		cfg.max_clients = huge[i];
		memset(err, 0, sizeof(err));
		cr_expect_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), MC_CONFIG_EX,
		    "max_clients %u accepted (nslots %u, nrings %u)", huge[i], lay.nslots, lay.nrings);
	}
}

/* The layout is pure arithmetic: same input, same output, no state. */
Test(layout, deterministic)
{
	struct mc_config cfg;
	struct mc_layout a, b;

	mc_config_defaults(&cfg);
	memset(&a, 0xa5, sizeof(a));
	memset(&b, 0x5a, sizeof(b));
	cr_assert_eq(mc_layout_compute(&cfg, &a, err, sizeof(err)), 0);
	cr_assert_eq(mc_layout_compute(&cfg, &b, err, sizeof(err)), 0);
	cr_assert_eq(a.total, b.total);
	cr_assert_eq(a.nrings, b.nrings);
	cr_assert_eq(a.ring_entries, b.ring_entries);
	cr_assert_eq(a.journal_off, b.journal_off);
	cr_assert_eq(a.control_end, b.control_end);
	cr_assert_eq(a.pool_size, b.pool_size);
}

/* A state value must fit in one frame with its namespace, key and framing. */
Test(layout, state_value_must_fit_a_frame)
{
	struct mc_config cfg;
	struct mc_layout lay;

	mc_config_defaults(&cfg);
	cfg.state_max_value_size = (uint32_t)cfg.max_message_size - 2 * cfg.state_max_key_size - 256;
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), 0, "%s", err);
	cfg.state_max_value_size++;
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), MC_CONFIG_EX);
	cr_assert(strstr(err, "state.max_value_size:") != NULL, "%s", err);
}
