/*
 * layout.c - region table and control-structure offsets from a config.
 *
 * Pure arithmetic shared by `mcpcore layout` (which must create nothing),
 * the supervisor (which creates the segment) and attaching processes
 * (which re-derive nothing: they read the header the supervisor wrote).
 */
#include "mc_layout.h"

#include <stdio.h>
#include <string.h>

#include "mc_state.h"
#include "mc_util.h"

static const char *const mc_worker_names[MC_NWORKERS] = {
	"state", "persistence", "monitor", "router", "protocol",
};

const char *mc_layout_worker_name(unsigned slot)
{
	if (slot < MC_SLOT_FIRST_WORKER || slot >= MC_SLOT_FIRST_CLIENT)
		return NULL;
	return mc_worker_names[slot - MC_SLOT_FIRST_WORKER];
}

int mc_layout_worker_slot(const char *name)
{
	for (unsigned i = 0; i < MC_NWORKERS; i++)
		if (name != NULL && strcmp(name, mc_worker_names[i]) == 0)
			return (int)(MC_SLOT_FIRST_WORKER + i);
	return -1;
}

static int mc_layout_is_worker(unsigned slot)
{
	return slot >= MC_SLOT_FIRST_WORKER && slot < MC_SLOT_FIRST_CLIENT;
}

/*
 * Rings are numbered source by source: a worker has one ring to every
 * other non-supervisor slot (MC_NWORKERS - 1 + clients of them), a client
 * one ring to each worker.  Within a source, destinations ascend.
 */
int mc_layout_ring_index(const struct mc_layout *lay, unsigned src, unsigned dst)
{
	unsigned clients = lay->nslots - MC_SLOT_FIRST_CLIENT;
	unsigned per_worker = MC_NWORKERS - 1 + clients;

	if (src == dst || src == MC_SLOT_SUPERVISOR || dst == MC_SLOT_SUPERVISOR ||
	    src >= lay->nslots || dst >= lay->nslots)
		return -1;
	if (mc_layout_is_worker(src))
		return (int)((src - MC_SLOT_FIRST_WORKER) * per_worker +
		    (dst < src ? dst - 1 : dst - 2));
	if (!mc_layout_is_worker(dst))
		return -1;              /* client -> client */
	return (int)(MC_NWORKERS * per_worker +
	    (src - MC_SLOT_FIRST_CLIENT) * MC_NWORKERS + (dst - MC_SLOT_FIRST_WORKER));
}

static void mc_layout_regions(const struct mc_config *cfg, struct mc_layout *lay)
{
	static const char *const names[MC_NREGIONS] = {
		"shared.rings", "shared.state_cache", "shared.message_queue",
		"core.protocol", "core.state", "core.routing",
		"learning.models", "learning.training", "learning.features",
		"storage.active_models", "storage.history",
	};
	static const char *const writers[MC_NREGIONS] = {
		"supervisor (header, slots); each ring's producer and consumer",
		"state worker",
		"each slot's process, in its own frame pool",
		"protocol worker", "state worker", "router worker",
		"learning clients", "learning clients", "learning clients",
		"persistence worker", "persistence worker",
	};
	const uint64_t sizes[MC_NREGIONS] = {
		cfg->ring_buffer_size, cfg->state_cache_size, cfg->message_queue_size,
		cfg->core_protocol, cfg->core_state, cfg->core_routing,
		cfg->learning_models, cfg->learning_training, cfg->learning_features,
		cfg->storage_active_models, cfg->storage_history,
	};
	uint64_t off = 0;

	for (int i = 0; i < MC_NREGIONS; i++) {
		lay->region[i].name = names[i];
		lay->region[i].writer = writers[i];
		lay->region[i].offset = off;
		lay->region[i].size = sizes[i];
		off += sizes[i];
	}
	lay->total = off;
}

/* Bytes one ring needs for its entries and its consumer journal. */
static uint64_t mc_layout_ring_bytes(uint64_t entries)
{
	uint64_t journal = entries < MC_JOURNAL_MAX ? entries : MC_JOURNAL_MAX;

	return (entries + journal) * MC_DESC_SIZE;
}

static int mc_layout_rings(const struct mc_config *cfg, struct mc_layout *lay,
    char *err, size_t errlen)
{
	uint64_t room, fixed, entries;
	unsigned clients = cfg->max_clients;

	lay->nslots = MC_SLOT_FIRST_CLIENT + clients;
	lay->nrings = MC_NWORKERS * (MC_NWORKERS - 1 + clients) + clients * MC_NWORKERS;
	lay->slots_off = MC_SEG_HDR_SIZE;
	lay->ringmap_off = lay->slots_off + (uint64_t)lay->nslots * MC_SLOT_SIZE;
	lay->ringdir_off = mc_align_up(lay->ringmap_off +
	    (uint64_t)lay->nslots * lay->nslots * sizeof(int16_t), MC_CACHELINE);
	fixed = mc_align_up(lay->ringdir_off + (uint64_t)lay->nrings * MC_RING_SIZE, 4096);
	/* the metrics blocks come off the top; rings share what is left */
	fixed += (uint64_t)lay->nslots * MC_METRICS_BLOCK;
	room = cfg->ring_buffer_size > fixed ? cfg->ring_buffer_size - fixed : 0;
	entries = MC_RING_MAX_ENTRIES;
	while (entries >= MC_RING_MIN_ENTRIES &&
	    lay->nrings * mc_layout_ring_bytes(entries) > room)
		entries /= 2;
	if (entries < MC_RING_MIN_ENTRIES)
		return mc_config_error(cfg, MC_CFG_MEMORY_RING_BUFFER_SIZE, err, errlen,
		    "%llu bytes cannot hold %u rings of %u entries; need at least %llu",
		    (unsigned long long)cfg->ring_buffer_size, lay->nrings,
		    MC_RING_MIN_ENTRIES, (unsigned long long)(fixed +
		    lay->nrings * mc_layout_ring_bytes(MC_RING_MIN_ENTRIES)));
	lay->ring_entries = (uint32_t)entries;
	lay->journal_entries = (uint32_t)(entries < MC_JOURNAL_MAX ? entries : MC_JOURNAL_MAX);
	lay->metrics_off = fixed - (uint64_t)lay->nslots * MC_METRICS_BLOCK;
	lay->ringbuf_off = fixed;
	lay->journal_off = lay->ringbuf_off + (uint64_t)lay->nrings * entries * MC_DESC_SIZE;
	lay->control_end = lay->journal_off +
	    (uint64_t)lay->nrings * lay->journal_entries * MC_DESC_SIZE;
	return 0;
}

static int mc_layout_pools(const struct mc_config *cfg, struct mc_layout *lay,
    char *err, size_t errlen)
{
	uint64_t block = mc_align_up(MC_FRAME_HDR_SIZE + cfg->max_message_size,
	    MC_FRAME_ALIGN);
	uint64_t need = MC_POOL_MIN_FRAMES * block;
	unsigned pools = lay->nslots - 1;

	lay->max_frame = cfg->max_message_size;
	lay->pool_off = lay->region[MC_REGION_SHARED_MESSAGE_QUEUE].offset;
	lay->pool_size = mc_align_down(cfg->message_queue_size / pools, 4096);
	if (lay->pool_size < need)
		return mc_config_error(cfg, MC_CFG_MEMORY_MESSAGE_QUEUE_SIZE, err, errlen,
		    "%llu bytes give %u frame pools of %llu bytes; each must hold %u "
		    "frames of max_message_size %llu, so at least %llu bytes are needed",
		    (unsigned long long)cfg->message_queue_size, pools,
		    (unsigned long long)lay->pool_size, MC_POOL_MIN_FRAMES,
		    (unsigned long long)cfg->max_message_size,
		    (unsigned long long)(need * pools));
	return 0;
}

int mc_layout_compute(const struct mc_config *cfg, struct mc_layout *lay,
    char *err, size_t errlen)
{
	struct mc_state_geometry state;
	int rc;

	*lay = (struct mc_layout){ 0 };
	if (cfg->max_clients > MC_MAX_SLOTS - MC_SLOT_FIRST_CLIENT)
		return mc_config_error(cfg, MC_CFG_MEMORY_MAX_CLIENTS, err, errlen,
		    "%u clients exceed the limit of %u", cfg->max_clients,
		    MC_MAX_SLOTS - MC_SLOT_FIRST_CLIENT);
	/* a state write travels in one frame: value, namespace, key and framing */
	if ((uint64_t)cfg->state_max_value_size + 2ULL * cfg->state_max_key_size + 256 >
	    cfg->max_message_size)
		return mc_config_error(cfg, MC_CFG_STATE_MAX_VALUE_SIZE, err, errlen,
		    "%u bytes (plus 2 x max_key_size %u and 256 bytes of framing) do not fit "
		    "in memory.max_message_size %llu", cfg->state_max_value_size,
		    cfg->state_max_key_size, (unsigned long long)cfg->max_message_size);
	mc_layout_regions(cfg, lay);
	rc = mc_state_geometry(cfg, cfg->state_cache_size, &state, err, errlen);
	if (rc == 0)
		rc = mc_layout_rings(cfg, lay, err, errlen);
	if (rc == 0)
		rc = mc_layout_pools(cfg, lay, err, errlen);
	return rc;
}
