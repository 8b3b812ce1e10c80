/*
 * control.c - the persistence control block in storage.history: readers
 * for every process (durable sequence numbers, waiting for them, status
 * JSON) and the worker's text writer (contract in mc_persist.h).
 *
 * This file links into everything that wants to know what is durable (the
 * CLI, the Python extension, benchmarks, test helpers), so it depends on
 * the segment library and jansson only: no RocksDB, no allocator choice.
 */
#include "mc_persist.h"

#include <ck_pr.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mc_util.h"

_Static_assert(sizeof(struct mc_persist_ctl) <= 4096,
    "the control block must fit the smallest region (4096 bytes)");

struct mc_persist_ctl *mc_persist_ctl(const struct mc_seg *seg)
{
	const struct mc_region *rg;

	if (seg == NULL || seg->hdr == NULL)
		return NULL;
	rg = &seg->hdr->sh_regions[MC_REGION_STORAGE_HISTORY];
	if (rg->rg_size < sizeof(struct mc_persist_ctl) || rg->rg_offset > seg->size ||
	    seg->size - rg->rg_offset < sizeof(struct mc_persist_ctl))
		return NULL;
	return (struct mc_persist_ctl *)(seg->base + rg->rg_offset);
}

uint64_t mc_persist_durable_seq(const struct mc_seg *seg, unsigned slot)
{
	struct mc_persist_ctl *ctl = mc_persist_ctl(seg);
	uint64_t v;

	if (ctl == NULL || slot >= MC_MAX_SLOTS)
		return 0;
	v = ck_pr_load_64(&ctl->pc_durable[slot]);
	ck_pr_fence_acquire();
	return v;
}

/* Has the supervisor given up on the worker (failed/stopped)? */
static bool mc_persist_gone(const struct mc_seg *seg)
{
	uint32_t st = ck_pr_load_32(&seg->slots[MC_WORKER_PERSISTENCE].sl_state);

	return st == MC_SLOT_FAILED || st == MC_SLOT_STOPPED;
}

int mc_persist_wait_durable(const struct mc_seg *seg, unsigned slot, uint64_t seq,
    uint64_t timeout_ns)
{
	uint64_t start, nap = 0;
	unsigned spins = 0;

	if (mc_persist_ctl(seg) == NULL || slot >= MC_MAX_SLOTS)
		return -EINVAL;
	start = mc_now_ns();
	for (;;) {
		uint64_t now;

		if (mc_persist_durable_seq(seg, slot) >= seq)
			return 0;
		now = mc_now_ns();
		if (now - start >= timeout_ns)
			return -ETIMEDOUT;
		/*
		 * A batch is written every few hundred microseconds under load:
		 * spin for the first ~20 us (cheap, and the answer is often that
		 * close), then sleep, growing the nap so an idle wait costs
		 * nothing while a busy one adds at most ~1 ms of latency.
		 */
		if (spins < 2000 && now - start < 20000) {
			spins++;
			ck_pr_stall();
			continue;
		}
		if ((spins++ & 63) == 0 && mc_persist_gone(seg))
			return -EPIPE;
		nap = nap == 0 ? 20000 : (nap * 2 > 1000000 ? 1000000 : nap * 2);
		if (nap > timeout_ns - (now - start))
			nap = timeout_ns - (now - start);
		nanosleep(&(struct timespec){ .tv_sec = 0, .tv_nsec = (long)nap }, NULL);
	}
}

void mc_persist_read_text(const struct mc_seg *seg, struct mc_persist_text *out)
{
	const struct mc_persist_ctl *ctl = mc_persist_ctl(seg);

	memset(out, 0, sizeof(*out));
	if (ctl == NULL)
		return;
	/*
	 * The writer is a different process that may die mid-write (sequence
	 * left odd): a bounded number of tries, then take the text as it is --
	 * possibly torn, never unterminated, good enough for a status line.
	 */
	for (int tries = 0;; tries++) {
		uint32_t s1 = ck_pr_load_32(&ctl->pc_text_seq), s2;

		if ((s1 & 1) && tries < 1000) {
			ck_pr_stall();
			continue;
		}
		ck_pr_fence_acquire();
		memcpy(out->path, ctl->pc_path, sizeof(out->path));
		memcpy(out->fault_msg, ctl->pc_fault_msg, sizeof(out->fault_msg));
		memcpy(out->last_checkpoint, ctl->pc_last_checkpoint, sizeof(out->last_checkpoint));
		ck_pr_fence_acquire();
		s2 = ck_pr_load_32(&ctl->pc_text_seq);
		if (s1 == s2 || tries >= 1000)
			break;
	}
	out->path[sizeof(out->path) - 1] = '\0';
	out->fault_msg[sizeof(out->fault_msg) - 1] = '\0';
	out->last_checkpoint[sizeof(out->last_checkpoint) - 1] = '\0';
}

void mc_persist_set_text(struct mc_persist_ctl *ctl, const char *path,
    const char *fault_msg, const char *last_checkpoint)
{
	ck_pr_store_32(&ctl->pc_text_seq, ctl->pc_text_seq + 1);     /* odd: writing */
	ck_pr_fence_store();
	if (path != NULL)
		snprintf(ctl->pc_path, sizeof(ctl->pc_path), "%s", path);
	if (fault_msg != NULL)
		snprintf(ctl->pc_fault_msg, sizeof(ctl->pc_fault_msg), "%s", fault_msg);
	if (last_checkpoint != NULL)
		snprintf(ctl->pc_last_checkpoint, sizeof(ctl->pc_last_checkpoint), "%s",
		    last_checkpoint);
	ck_pr_fence_store();
	ck_pr_store_32(&ctl->pc_text_seq, ctl->pc_text_seq + 1);     /* even: stable */
}

const char *mc_persist_state_name(uint32_t state)
{
	static const char *const names[] = {
		"down", "opening", "restoring", "running", "fault", "stopped",
	};

	return state < MC_ARRAY_LEN(names) ? names[state] : "unknown";
}

const char *mc_persist_fault_name(uint32_t fault)
{
	static const char *const names[] = {
		"none", "ENOSPC", "EROFS", "ENOENT", "EACCES", "CORRUPTION",
		"INCOMPATIBLE", "LOCKED", "EIO", "ERROR",
	};

	return fault < MC_ARRAY_LEN(names) ? names[fault] : "unknown";
}

static const char *const mc_mem_sources[] = { "none", "jemalloc", "proc" };

json_t *mc_persist_status_json(const struct mc_seg *seg)
{
	const struct mc_persist_ctl *ctl = mc_persist_ctl(seg);
	struct mc_persist_text text;
	json_t *doc, *durable, *fault = json_null();
	uint32_t src;

	if (ctl == NULL)
		return json_pack("{s:s}", "state", "unknown");
	mc_persist_read_text(seg, &text);
	durable = json_object();
	for (unsigned s = 1; s < seg->hdr->sh_nslots && s < MC_MAX_SLOTS; s++) {
		uint64_t v = ck_pr_load_64(&ctl->pc_durable[s]);

		if (v != 0)
			json_object_set_new(durable, seg->slots[s].sl_name, json_integer((json_int_t)v));
	}
	if (ck_pr_load_32(&ctl->pc_fault) != MC_PFAULT_NONE) {
		uint64_t since = ck_pr_load_64(&ctl->pc_fault_since_ns), now = mc_wall_ns();

		fault = json_pack("{s:s, s:s, s:I, s:I, s:I}",
		    "error", mc_persist_fault_name(ck_pr_load_32(&ctl->pc_fault)),
		    "message", text.fault_msg,
		    "since_ms", (json_int_t)(now > since ? (now - since) / 1000000 : 0),
		    "retries", (json_int_t)ck_pr_load_64(&ctl->pc_fault_retries),
		    "retry_in_ms", (json_int_t)ck_pr_load_64(&ctl->pc_fault_retry_ms));
	}
	src = ck_pr_load_32(&ctl->pc_mem_source);
	doc = json_pack("{s:s, s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
	    " s:I, s:o, s:{s:s, s:I, s:I, s:I}, s:o, s:I, s:I, s:o}",
	    "state", mc_persist_state_name(ck_pr_load_32(&ctl->pc_state)),
	    "path", text.path,
	    "sync", ck_pr_load_32(&ctl->pc_sync) ? "batch" : "none",
	    "restored", ck_pr_load_32(&ctl->pc_restored) != 0,
	    "held", (json_int_t)ck_pr_load_64(&ctl->pc_held),
	    "batches", (json_int_t)ck_pr_load_64(&ctl->pc_batches),
	    "records", (json_int_t)ck_pr_load_64(&ctl->pc_records),
	    "bytes", (json_int_t)ck_pr_load_64(&ctl->pc_bytes),
	    "duplicates", (json_int_t)ck_pr_load_64(&ctl->pc_duplicates),
	    "rejected", (json_int_t)ck_pr_load_64(&ctl->pc_rejected),
	    "last_batch", (json_int_t)ck_pr_load_64(&ctl->pc_last_batch),
	    "last_commit_us", (json_int_t)(ck_pr_load_64(&ctl->pc_last_commit_ns) / 1000),
	    "max_commit_us", (json_int_t)(ck_pr_load_64(&ctl->pc_max_commit_ns) / 1000),
	    "checkpoints", (json_int_t)ck_pr_load_64(&ctl->pc_checkpoints),
	    "last_checkpoint", text.last_checkpoint[0] ? json_string(text.last_checkpoint)
	    : json_null(),
	    "memory", "source", src < MC_ARRAY_LEN(mc_mem_sources) ? mc_mem_sources[src] : "none",
	    "allocated", (json_int_t)ck_pr_load_64(&ctl->pc_mem_allocated),
	    "resident", (json_int_t)ck_pr_load_64(&ctl->pc_mem_resident),
	    "memtables", (json_int_t)ck_pr_load_64(&ctl->pc_mem_memtables),
	    "fault", fault,
	    "faults_total", (json_int_t)ck_pr_load_64(&ctl->pc_faults_total),
	    "restored_keys", (json_int_t)ck_pr_load_64(&ctl->pc_restored_keys),
	    "durable", durable);
	return doc;
}

void mc_persist_status_print(const json_t *p)
{
	const json_t *fault, *mem;

	if (p == NULL)
		return;
	fault = json_object_get(p, "fault");
	mem = json_object_get(p, "memory");
	printf("\npersistence %s  store %s  sync %s  restored %s\n",
	    json_string_value(json_object_get(p, "state")),
	    json_string_value(json_object_get(p, "path")),
	    json_string_value(json_object_get(p, "sync")),
	    json_is_true(json_object_get(p, "restored")) ? "yes" : "no");
	printf("  records %lld  batches %lld  held %lld  duplicates %lld  last commit %lld us  "
	    "memory %lld KiB (%s)\n",
	    json_integer_value(json_object_get(p, "records")),
	    json_integer_value(json_object_get(p, "batches")),
	    json_integer_value(json_object_get(p, "held")),
	    json_integer_value(json_object_get(p, "duplicates")),
	    json_integer_value(json_object_get(p, "last_commit_us")),
	    json_integer_value(json_object_get(mem, "allocated")) / 1024,
	    json_string_value(json_object_get(mem, "source")));
	if (json_is_object(fault))
		printf("  FAULT %s since %lld ms (%lld retries, next in %lld ms): %s\n",
		    json_string_value(json_object_get(fault, "error")),
		    json_integer_value(json_object_get(fault, "since_ms")),
		    json_integer_value(json_object_get(fault, "retries")),
		    json_integer_value(json_object_get(fault, "retry_in_ms")),
		    json_string_value(json_object_get(fault, "message")));
}
