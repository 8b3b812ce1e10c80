/*
 * status.c - JSON views of a segment shared by its readers (mc_status.h).
 */
#include "mc_status.h"

#include <stdio.h>

#include "mc_ring.h"

json_t *mc_status_rings(const struct mc_seg *seg)
{
	json_t *rings = json_array();

	for (uint32_t i = 0; rings != NULL && i < seg->hdr->sh_nrings; i++) {
		const struct mc_ring *r = &seg->rings[i];
		char name[48];

		snprintf(name, sizeof(name), "%s->%s", seg->slots[r->r_src].sl_name,
		    seg->slots[r->r_dst].sl_name);
		json_array_append_new(rings, json_pack("{s:s, s:i, s:i, s:i, s:i, s:I}", "name", name,
		    "src", (int)r->r_src, "dst", (int)r->r_dst, "depth", (int)mc_ring_depth(seg, i),
		    "capacity", (int)mc_ring_capacity(seg, i), "full_events", (json_int_t)r->r_full));
	}
	return rings;
}
