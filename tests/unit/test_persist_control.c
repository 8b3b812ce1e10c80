/*
 * test_persist_control.c - unit tests for the persistence control block
 * in storage.history (workers/persistence/control.c, contract in
 * mc_persist.h): durable sequence numbers, waiting for them, the text
 * sequence lock, the status JSON.
 *
 * A real segment on config/test.toml under instance "utpctl-<pid>-<n>",
 * unlinked at the end of each test.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <ck_pr.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mc_config.h"
#include "mc_layout.h"
#include "mc_persist.h"
#include "mc_seg.h"
#include "mc_util.h"

#ifndef MC_SOURCE_DIR
#error "MC_SOURCE_DIR must be defined to the repository root"
#endif

static struct mc_config cfg;
static struct mc_layout lay;
static struct mc_seg sup, ro;
static char err[512];
static unsigned seq;

static void up(void)
{
	pid_t swept;

	cr_assert_eq(mc_config_load(MC_SOURCE_DIR "/config/test.toml", &cfg, err, sizeof(err)), 0,
	    "%s", err);
	snprintf(cfg.instance, sizeof(cfg.instance), "utpctl-%d-%u", (int)getpid(), seq++);
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(mc_seg_create(&sup, &cfg, &lay, &swept, err, sizeof(err)), 0, "%s", err);
	ck_pr_store_32(&sup.hdr->sh_state, MC_SEG_READY);
	cr_assert_eq(mc_seg_attach(&ro, cfg.instance, true, err, sizeof(err)), 0, "%s", err);
}

static void down(void)
{
	mc_seg_detach(&ro);
	mc_seg_destroy(&sup);
}

TestSuite(ctl, .init = up, .fini = down);

Test(ctl, block_is_at_the_start_of_storage_history_and_zero)
{
	struct mc_persist_ctl *c = mc_persist_ctl(&sup);

	cr_assert_not_null(c);
	cr_assert_eq((uint8_t *)c - sup.base, sup.hdr->sh_regions[MC_REGION_STORAGE_HISTORY].rg_offset);
	cr_assert_eq(c->pc_magic, 0, "all-zero is the valid initial state");
	cr_assert_eq(mc_persist_durable_seq(&sup, 6), 0);
	cr_assert_eq(mc_persist_durable_seq(&ro, 6), 0, "read-only mappings read it too");
	cr_assert_eq(mc_persist_durable_seq(&sup, MC_MAX_SLOTS), 0);
	cr_assert_null(mc_persist_ctl(NULL));
}

Test(ctl, durable_seq_is_seen_by_other_mappings)
{
	struct mc_persist_ctl *c = mc_persist_ctl(&sup);

	ck_pr_store_64(&c->pc_durable[7], 1234);
	cr_assert_eq(mc_persist_durable_seq(&ro, 7), 1234);
	cr_assert_eq(mc_persist_wait_durable(&ro, 7, 1234, 0), 0);
	cr_assert_eq(mc_persist_wait_durable(&ro, 7, 1000, 0), 0);
	cr_assert_eq(mc_persist_wait_durable(&ro, 7, 1235, 0), -ETIMEDOUT);
	cr_assert_eq(mc_persist_wait_durable(&ro, MC_MAX_SLOTS, 1, 0), -EINVAL);
}

static void *bump_later(void *arg)
{
	struct mc_persist_ctl *c = arg;

	nanosleep(&(struct timespec){ .tv_nsec = 30000000 }, NULL);
	ck_pr_store_64(&c->pc_durable[6], 10);
	return NULL;
}

Test(ctl, wait_returns_when_the_number_arrives_and_times_out_otherwise)
{
	struct mc_persist_ctl *c = mc_persist_ctl(&sup);
	pthread_t t;
	uint64_t t0 = mc_now_ns(), dt;

	cr_assert_eq(pthread_create(&t, NULL, bump_later, c), 0);
	cr_assert_eq(mc_persist_wait_durable(&ro, 6, 10, 2000000000ULL), 0);
	dt = mc_now_ns() - t0;
	cr_assert_geq(dt, 25000000ULL);
	cr_assert_lt(dt, 500000000ULL, "woke %llu ns after the store", (unsigned long long)dt);
	pthread_join(t, NULL);
	t0 = mc_now_ns();
	cr_assert_eq(mc_persist_wait_durable(&ro, 6, 11, 50000000ULL), -ETIMEDOUT);
	dt = mc_now_ns() - t0;
	cr_assert_geq(dt, 50000000ULL);
	cr_assert_lt(dt, 400000000ULL);
}

Test(ctl, wait_gives_up_when_the_worker_failed)
{
	ck_pr_store_32(&sup.slots[MC_WORKER_PERSISTENCE].sl_state, MC_SLOT_FAILED);
	cr_assert_eq(mc_persist_wait_durable(&ro, 6, 1, 5000000000ULL), -EPIPE);
}

Test(ctl, text_fields_under_the_sequence_lock)
{
	struct mc_persist_ctl *c = mc_persist_ctl(&sup);
	struct mc_persist_text t;

	mc_persist_set_text(c, "/data/rocksdb", "boom", NULL);
	cr_assert_eq(c->pc_text_seq % 2, 0);
	mc_persist_read_text(&ro, &t);
	cr_assert_str_eq(t.path, "/data/rocksdb");
	cr_assert_str_eq(t.fault_msg, "boom");
	cr_assert_str_eq(t.last_checkpoint, "");
	mc_persist_set_text(c, NULL, "", "/data/checkpoints/x");
	mc_persist_read_text(&ro, &t);
	cr_assert_str_eq(t.path, "/data/rocksdb", "NULL leaves a field alone");
	cr_assert_str_eq(t.fault_msg, "");
	cr_assert_str_eq(t.last_checkpoint, "/data/checkpoints/x");
	/* a writer that died mid-update (odd sequence): the reader still returns */
	ck_pr_store_32(&c->pc_text_seq, c->pc_text_seq + 1);
	mc_persist_read_text(&ro, &t);
	cr_assert_str_eq(t.path, "/data/rocksdb");
}

Test(ctl, names)
{
	cr_assert_str_eq(mc_persist_state_name(MC_PERSIST_RUNNING), "running");
	cr_assert_str_eq(mc_persist_state_name(MC_PERSIST_FAULT), "fault");
	cr_assert_str_eq(mc_persist_state_name(99), "unknown");
	cr_assert_str_eq(mc_persist_fault_name(MC_PFAULT_NOSPACE), "ENOSPC");
	cr_assert_str_eq(mc_persist_fault_name(MC_PFAULT_CORRUPT), "CORRUPTION");
	cr_assert_str_eq(mc_persist_fault_name(MC_PFAULT_LOCKED), "LOCKED");
	cr_assert_str_eq(mc_persist_fault_name(MC_PFAULT_NONE), "none");
}

Test(ctl, status_json_healthy_and_in_a_fault)
{
	struct mc_persist_ctl *c = mc_persist_ctl(&sup);
	json_t *j, *f;

	ck_pr_store_32(&c->pc_state, MC_PERSIST_RUNNING);
	ck_pr_store_32(&c->pc_sync, 1);
	ck_pr_store_64(&c->pc_records, 42);
	ck_pr_store_64(&c->pc_durable[6], 41);
	ck_pr_store_32(&c->pc_mem_source, 1);
	ck_pr_store_64(&c->pc_mem_allocated, 4096);
	mc_persist_set_text(c, "/d", "", NULL);
	j = mc_persist_status_json(&ro);
	cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "running");
	cr_assert_str_eq(json_string_value(json_object_get(j, "sync")), "batch");
	cr_assert_str_eq(json_string_value(json_object_get(j, "path")), "/d");
	cr_assert_eq(json_integer_value(json_object_get(j, "records")), 42);
	cr_assert(json_is_null(json_object_get(j, "fault")));
	cr_assert(json_is_null(json_object_get(j, "last_checkpoint")));
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "durable"),
	    sup.slots[6].sl_name)), 41);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "memory"), "source")),
	    "jemalloc");
	mc_persist_status_print(j);
	json_decref(j);

	ck_pr_store_32(&c->pc_state, MC_PERSIST_FAULT);
	ck_pr_store_32(&c->pc_fault, MC_PFAULT_NOSPACE);
	ck_pr_store_64(&c->pc_fault_since_ns, mc_wall_ns() - 2000000000ULL);
	ck_pr_store_64(&c->pc_fault_retries, 3);
	ck_pr_store_64(&c->pc_fault_retry_ms, 800);
	mc_persist_set_text(c, NULL, "IO error: No space left on device", NULL);
	j = mc_persist_status_json(&ro);
	f = json_object_get(j, "fault");
	cr_assert(json_is_object(f));
	cr_assert_str_eq(json_string_value(json_object_get(f, "error")), "ENOSPC");
	cr_assert_str_eq(json_string_value(json_object_get(f, "message")),
	    "IO error: No space left on device");
	cr_assert_geq(json_integer_value(json_object_get(f, "since_ms")), 1900);
	cr_assert_eq(json_integer_value(json_object_get(f, "retries")), 3);
	cr_assert_eq(json_integer_value(json_object_get(f, "retry_in_ms")), 800);
	mc_persist_status_print(j);
	mc_persist_status_print(NULL);
	json_decref(j);
}
