/*
 * workers/router/route.c - the router's rules: which lane a frame takes,
 * where a frame of a kind goes, and the subscriber table (mc_router.h).
 * No I/O and no frames in flight here, so the unit tests drive it alone.
 */
#include "mc_router.h"

#include <errno.h>
#include <string.h>

#include <ck_pr.h>

_Static_assert(sizeof(struct mc_route_table) <= 4096, "the table fits a page of core.routing");

struct mc_route_table *mc_route_table(const struct mc_seg *seg)
{
	return (struct mc_route_table *)(seg->base +
	    seg->hdr->sh_regions[MC_REGION_CORE_ROUTING].rg_offset);
}

void mc_route_table_open(struct mc_seg *seg)
{
	struct mc_route_table *t = mc_route_table(seg);

	if (ck_pr_load_64(&t->rt_magic) == MC_ROUTE_TABLE_MAGIC)
		return;         /* a restart: the subscribers stay */
	memset(t, 0, sizeof(*t));
	ck_pr_fence_store();
	ck_pr_store_64(&t->rt_magic, MC_ROUTE_TABLE_MAGIC);
}

unsigned mc_route_lane(const struct mc_frame *f)
{
	if (f->f_kind == MC_FK_STATE_REQUEST)
		return MC_LANE_TOOL - 1;        /* one FIFO for every sender's writes */
	if (f->f_user >= MC_LANE_CONTROL && f->f_user <= MC_LANE_BULK)
		return f->f_user - 1;
	return f->f_kind == MC_FK_CONTROL ? MC_LANE_CONTROL - 1 : MC_LANE_BULK - 1;
}

uint64_t mc_route_dests(uint16_t kind, uint64_t subs)
{
	switch (kind) {
	case MC_FK_STATE_REQUEST:
		return 1ULL << MC_WORKER_STATE;
	case MC_FK_MCP:
		return (1ULL << MC_WORKER_PERSISTENCE) | (1ULL << MC_WORKER_MONITOR) | subs;
	case MC_FK_TRAINING_DATA:
	case MC_FK_LEARNING_MODEL:
		return 1ULL << MC_WORKER_PERSISTENCE;
	case MC_FK_LEARNING_DATA:
		return subs;
	default:
		return 0;
	}
}

int mc_route_subscribe(struct mc_seg *seg, unsigned slot, uint32_t gen, bool on)
{
	struct mc_route_table *t = mc_route_table(seg);
	uint64_t mask;

	if (slot < MC_SLOT_FIRST_CLIENT || slot >= MC_MAX_SLOTS ||
	    slot >= seg->hdr->sh_nslots)
		return -EINVAL;
	mask = ck_pr_load_64(&t->rt_subscribers);
	if (on) {
		ck_pr_store_32(&t->rt_sub_gen[slot], gen);
		ck_pr_fence_store();    /* the generation before the bit that makes it count */
		mask |= 1ULL << slot;
	} else {
		mask &= ~(1ULL << slot);
	}
	ck_pr_store_64(&t->rt_subscribers, mask);
	return 0;
}

uint64_t mc_route_live_subscribers(struct mc_seg *seg, bool prune)
{
	struct mc_route_table *t = mc_route_table(seg);
	uint64_t subs = ck_pr_load_64(&t->rt_subscribers), live = 0;

	for (uint64_t m = subs; m; m &= m - 1) {
		unsigned s = (unsigned)__builtin_ctzll(m);
		const struct mc_slot *sl = &seg->slots[s];

		if (ck_pr_load_32(&sl->sl_state) == MC_SLOT_ATTACHED &&
		    ck_pr_load_32(&sl->sl_generation) == ck_pr_load_32(&t->rt_sub_gen[s]))
			live |= 1ULL << s;
	}
	if (prune && live != subs)
		ck_pr_store_64(&t->rt_subscribers, live);
	return live;
}
