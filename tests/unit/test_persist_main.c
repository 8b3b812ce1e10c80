/*
 * test_persist_main.c - unit tests for the persistence worker's loop
 * (workers/persistence/main.c): acknowledgement only after durability,
 * exactly-once across kill -9, requests and replies, the state restore
 * before readiness, faults.
 *
 * The worker runs for real (mc_persistence_main) in a forked child that
 * claims the persistence slot of a private segment ("utpmain-<pid>-<n>" on
 * config/test.toml, rocksdb_path in a mkdtemp directory); this process
 * produces from the router's slot and plays the state worker when needed.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <ck_pr.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mc_config.h"
#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_log.h"
#include "mc_pckpt.h"
#include "mc_persist.h"
#include "mc_pkeys.h"
#include "mc_proto.h"
#include "mc_pstore.h"
#include "mc_seg.h"
#include "mc_util.h"
#include "mc_worker.h"

#ifndef MC_SOURCE_DIR
#error "MC_SOURCE_DIR must be defined to the repository root"
#endif

#define PROD MC_WORKER_ROUTER

static struct mc_config cfg;
static struct mc_layout lay;
static struct mc_seg sup, prod;
static char err[512], dir[64], db[128];
static unsigned seq;
static pid_t worker = -1;

static void on_term(int sig)
{
	(void)sig;
	mc_persist_stop();
}

static void start_worker(void)
{
	ck_pr_store_32(&sup.slots[MC_WORKER_PERSISTENCE].sl_generation,
	    sup.slots[MC_WORKER_PERSISTENCE].sl_generation + 1);
	ck_pr_store_32(&sup.slots[MC_WORKER_PERSISTENCE].sl_state, MC_SLOT_STARTING);
	worker = fork();
	cr_assert_neq(worker, -1);
	if (worker == 0) {
		struct mc_worker w;

		memset(&w, 0, sizeof(w));
		alarm(120);
		signal(SIGTERM, on_term);
		mc_log_init("persistence", "error");
		if (mc_seg_attach(&w.seg, cfg.instance, false, err, sizeof(err)) != 0 ||
		    mc_seg_claim_worker(&w.seg, MC_WORKER_PERSISTENCE) != 0)
			_exit(3);
		w.cfg = &w.seg.hdr->sh_config;
		w.slot = MC_WORKER_PERSISTENCE;
		w.name = "persistence";
		_exit(mc_persistence_main(&w));
	}
}

static bool ready(void)
{
	const struct mc_slot *sl = &sup.slots[MC_WORKER_PERSISTENCE];

	return ck_pr_load_32(&sl->sl_ready_gen) == ck_pr_load_32(&sl->sl_generation);
}

static void wait_ready(void)
{
	for (int i = 0; i < 10000 && !ready(); i++)
		usleep(1000);
	cr_assert(ready(), "the worker did not report ready");
}

static int stop_worker(int sig)
{
	int status;

	if (worker <= 0)
		return -1;
	kill(worker, sig);
	cr_assert_eq(waitpid(worker, &status, 0), worker);
	worker = -1;
	return status;
}

static void up(void)
{
	pid_t swept;

	cr_assert_eq(mc_config_load(MC_SOURCE_DIR "/config/test.toml", &cfg, err, sizeof(err)), 0,
	    "%s", err);
	snprintf(cfg.instance, sizeof(cfg.instance), "utpmain-%d-%u", (int)getpid(), seq++);
	snprintf(dir, sizeof(dir), "/tmp/utpmain-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/db", dir);
	snprintf(cfg.rocksdb_path, sizeof(cfg.rocksdb_path), "%s", db);
	cr_assert_eq(mc_layout_compute(&cfg, &lay, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(mc_seg_create(&sup, &cfg, &lay, &swept, err, sizeof(err)), 0, "%s", err);
	ck_pr_store_32(&sup.hdr->sh_state, MC_SEG_READY);
	cr_assert_eq(mc_seg_attach(&prod, cfg.instance, false, err, sizeof(err)), 0);
	cr_assert_eq(mc_seg_claim_worker(&prod, PROD), 0);
}

static void down(void)
{
	if (worker > 0)
		stop_worker(SIGKILL);
	mc_seg_detach(&prod);
	mc_seg_destroy(&sup);
	mc_pckpt_rmtree(dir);
}

TestSuite(worker, .init = up, .fini = down, .timeout = 120);

/*
 * Run fn in a forked child and wait for it.  This process never opens
 * RocksDB itself: its background thread pool would not exist in the
 * worker children forked later, and their store would wait for it forever.
 */
static void in_child(void (*fn)(void))
{
	int status;
	pid_t pid = fork();

	cr_assert_neq(pid, -1);
	if (pid == 0) {
		fn();
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "helper child failed: %d", status);
}

/* Send one MCPMessage (timestamp 0: keyed by the time it is taken). */
static uint64_t send_mcp(uint32_t index)
{
	Mcpcore__MCPMessage m = MCPCORE__MCPMESSAGE__INIT;
	uint8_t pl[200];
	struct mc_frame *f;
	size_t n;
	uint64_t s;
	int rc;

	memset(pl, 0, sizeof(pl));
	memcpy(pl, &index, sizeof(index));
	m.message_type = "t";
	m.payload.data = pl;
	m.payload.len = sizeof(pl);
	n = mcpcore__mcpmessage__get_packed_size(&m);
	while ((f = mc_frame_alloc(&prod, (uint32_t)n, MC_FK_MCP, &rc)) == NULL) {
		cr_assert_eq(rc, -EAGAIN);
		usleep(100);
	}
	mcpcore__mcpmessage__pack(&m, f->f_data);
	s = f->f_seq;
	while ((rc = mc_frame_send(&prod, f, 1ULL << MC_WORKER_PERSISTENCE)) == -EAGAIN)
		usleep(100);
	cr_assert_eq(rc, 0);
	return s;
}

/* (run, slot PROD) keys in messages, read by a child: count and duplicates. */
static uint64_t scan_first, scan_last;
static uint64_t *scan_out;      /* shared: count, dups */

static void scan_child(void)
{
	struct mc_pstore st;
	rocksdb_iterator_t *it;
	uint8_t *seen = calloc(scan_last - scan_first + 1, 1);

	if (mc_pstore_open(&st, db, "lz4", MC_PSTORE_READONLY, err, sizeof(err)) != 0)
		_exit(2);
	it = mc_pstore_iter(&st, MC_CF_MESSAGES);
	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
		struct mc_pkey_time key;

		if (mc_pkey_time_decode(k, klen, &key) != 0 || key.run != sup.hdr->sh_created_wall_ns ||
		    key.slot != PROD || key.seq < scan_first || key.seq > scan_last)
			_exit(3);
		scan_out[0]++;
		if (seen[key.seq - scan_first]++)
			scan_out[1]++;
	}
	rocksdb_iter_destroy(it);
	mc_pstore_close(&st);
	free(seen);
}

static void scan(uint64_t *count, uint64_t *dups, uint64_t first, uint64_t last)
{
	scan_out = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(scan_out, MAP_FAILED);
	scan_first = first;
	scan_last = last;
	in_child(scan_child);
	*count = scan_out[0];
	*dups = scan_out[1];
	munmap(scan_out, 4096);
}

Test(worker, acknowledged_means_stored)
{
	struct mc_persist_ctl *c = mc_persist_ctl(&sup);
	uint64_t first = 0, last = 0, count, dups;

	start_worker();
	wait_ready();
	cr_assert_eq(ck_pr_load_32(&c->pc_state), MC_PERSIST_RUNNING);
	cr_assert_eq(ck_pr_load_32(&c->pc_restored), 1, "an empty state family is restored at once");
	for (uint32_t i = 0; i < 20000; i++) {
		last = send_mcp(i);
		if (i == 0)
			first = last;
	}
	cr_assert_eq(mc_persist_wait_durable(&prod, PROD, last, 30000000000ULL), 0);
	cr_assert_geq(ck_pr_load_64(&c->pc_batches), 1);
	cr_assert_eq(ck_pr_load_64(&c->pc_records), 20000);
	cr_assert_eq(WEXITSTATUS(stop_worker(SIGTERM)), 0);
	cr_assert_eq(ck_pr_load_32(&c->pc_state), MC_PERSIST_STOPPED);
	scan(&count, &dups, first, last);
	cr_assert_eq(count, 20000);
	cr_assert_eq(dups, 0);
	/* the frames were released: our pool drained */
	cr_assert_eq(mc_frame_pool_used(&prod, PROD), 0);
}

Test(worker, kill9_mid_stream_loses_nothing_and_stores_nothing_twice)
{
	uint64_t first = 0, last = 0, count, dups, acked_before_kill[6];
	const uint32_t n = 60000;
	int kills = 0;

	start_worker();
	wait_ready();
	for (uint32_t i = 0; i < n; i++) {
		last = send_mcp(i);
		if (i == 0)
			first = last;
		if (i % 10000 == 9999 && kills < 5) {
			/* mid-stream: batches being written, frames held */
			acked_before_kill[kills] = mc_persist_durable_seq(&prod, PROD);
			stop_worker(SIGKILL);
			kills++;
			start_worker();
		}
	}
	cr_assert_eq(mc_persist_wait_durable(&prod, PROD, last, 60000000000ULL), 0);
	cr_assert_eq(WEXITSTATUS(stop_worker(SIGTERM)), 0);
	scan(&count, &dups, first, last);
	cr_assert_eq(dups, 0, "%llu records stored twice", (unsigned long long)dups);
	cr_assert_eq(count, n);
	for (int k = 1; k < kills; k++)
		cr_assert_geq(acked_before_kill[k], acked_before_kill[k - 1]);
	cr_assert_gt(ck_pr_load_64(&mc_persist_ctl(&sup)->pc_duplicates) +
	    ck_pr_load_64(&mc_persist_ctl(&sup)->pc_records), 0);
}

/* Send a request from PROD and wait for its reply. */
static Mcpcore__PersistReply *request(Mcpcore__PersistRequest *req)
{
	static uint64_t ids = 1;
	uint64_t end = mc_now_ns() + 30000000000ULL;
	struct mc_msg m;

	req->id = ids++;
	cr_assert_eq(mc_proto_send(&prod, &req->base, 1ULL << MC_WORKER_PERSISTENCE), 0);
	while (mc_now_ns() < end) {
		Mcpcore__PersistReply *r;

		if (mc_recv(&prod, &m) != 0) {
			usleep(500);
			continue;
		}
		r = m.frame->f_kind == MC_FK_PERSIST_REPLY ?
		    (Mcpcore__PersistReply *)mc_proto_unpack(m.frame) : NULL;
		mc_frame_release(&prod, &m);
		if (r != NULL && r->id == req->id)
			return r;
		if (r != NULL)
			mcpcore__persist_reply__free_unpacked(r, NULL);
	}
	cr_assert_fail("no reply");
	return NULL;
}

Test(worker, models_are_readable_right_after_they_are_sent_and_checkpoints_work)
{
	Mcpcore__LearningModel lm = MCPCORE__LEARNING_MODEL__INIT;
	Mcpcore__PersistRequest q = MCPCORE__PERSIST_REQUEST__INIT;
	Mcpcore__PersistReply *r;
	uint64_t parents[] = { 1 };
	struct mc_persist_text t;

	start_worker();
	wait_ready();
	lm.model_id = "net";
	lm.version = 1;
	cr_assert_eq(mc_proto_send(&prod, &lm.base, 1ULL << MC_WORKER_PERSISTENCE), 0);
	lm.version = 2;
	lm.parent_versions = parents;
	lm.n_parent_versions = 1;
	cr_assert_eq(mc_proto_send(&prod, &lm.base, 1ULL << MC_WORKER_PERSISTENCE), 0);
	/* no wait: a read sees every frame received before it */
	q.op = MCPCORE__PERSIST_REQUEST__OP__MODEL_ANCESTORS;
	q.model_id = "net";
	q.version = 2;
	r = request(&q);
	cr_assert_eq(r->status, MCPCORE__PERSIST_REPLY__STATUS__OK, "%s", r->error);
	cr_assert_eq(r->n_records, 1);
	mcpcore__persist_reply__free_unpacked(r, NULL);
	q.op = MCPCORE__PERSIST_REQUEST__OP__CHECKPOINT;
	r = request(&q);
	cr_assert_eq(r->status, MCPCORE__PERSIST_REPLY__STATUS__OK, "%s", r->error);
	cr_assert(mc_pckpt_is_name(strrchr(r->checkpoint_path, '/') + 1), "%s", r->checkpoint_path);
	cr_assert_eq(strncmp(r->checkpoint_path, dir, strlen(dir)), 0);
	mc_persist_read_text(&prod, &t);
	cr_assert_str_eq(t.last_checkpoint, r->checkpoint_path);
	cr_assert_eq(ck_pr_load_64(&mc_persist_ctl(&sup)->pc_checkpoints), 1);
	mcpcore__persist_reply__free_unpacked(r, NULL);
	/* a ping is answered like any worker's */
	{
		Mcpcore__Control ping = MCPCORE__CONTROL__INIT;
		struct mc_msg m;
		int got = 0;

		ping.op = MCPCORE__CONTROL__OP__PING;
		ping.nonce = 77;
		cr_assert_eq(mc_proto_send(&prod, &ping.base, 1ULL << MC_WORKER_PERSISTENCE), 0);
		for (int i = 0; i < 10000 && !got; i++) {
			Mcpcore__Control *pong;

			if (mc_recv(&prod, &m) != 0) {
				usleep(500);
				continue;
			}
			pong = (Mcpcore__Control *)mc_proto_unpack(m.frame);
			mc_frame_release(&prod, &m);
			cr_assert_not_null(pong);
			cr_assert_eq(pong->nonce, 77);
			cr_assert_str_eq(pong->worker, "persistence");
			protobuf_c_message_free_unpacked(&pong->base, NULL);
			got = 1;
		}
		cr_assert(got);
	}
}

/* A store left by an earlier run of the runtime: one state key. */
static void leave_state(void)
{
	Mcpcore__StateChange c = MCPCORE__STATE_CHANGE__INIT;
	struct mc_pstore st;
	uint8_t k[64], v[256];
	char *rerr = NULL;
	size_t n;
	int klen;

	if (mc_pstore_open(&st, db, "lz4", MC_PSTORE_CREATE, err, sizeof(err)) != 0)
		_exit(2);
	c.ns.data = (uint8_t *)"ns";
	c.ns.len = 2;
	c.key.data = (uint8_t *)"k";
	c.key.len = 1;
	c.value.data = (uint8_t *)"v";
	c.value.len = 1;
	c.version = 7;
	n = mcpcore__state_change__pack(&c, v);
	klen = mc_pkey_state_encode(k, sizeof(k), "ns", 2, "k", 1);
	rocksdb_put_cf(st.db, st.wo_sync, st.cf[MC_CF_STATE], (char *)k, (size_t)klen, (char *)v,
	    n, &rerr);
	if (rerr != NULL)
		_exit(3);
	mc_pstore_close(&st);
}

Test(worker, state_is_restored_before_the_worker_is_ready)
{
	struct mc_persist_ctl *ctl = mc_persist_ctl(&sup);
	struct mc_seg sw;
	int answered = 0;

	in_child(leave_state);
	/* this process plays the state worker */
	cr_assert_eq(mc_seg_attach(&sw, cfg.instance, false, err, sizeof(err)), 0);
	cr_assert_eq(mc_seg_claim_worker(&sw, MC_WORKER_STATE), 0);
	start_worker();
	for (int i = 0; i < 10000 && ck_pr_load_32(&ctl->pc_state) != MC_PERSIST_RESTORING; i++)
		usleep(1000);
	usleep(100000);
	cr_assert_not(ready(), "ready before the state came back");
	cr_assert_eq(ck_pr_load_32(&ctl->pc_state), MC_PERSIST_RESTORING, "state %u fault %u restored %u", ctl->pc_state, ctl->pc_fault, ctl->pc_restored);
	for (int i = 0; i < 10000 && !answered; i++) {
		struct mc_msg m;
		Mcpcore__StateRequest *rq;
		Mcpcore__StateResult res = MCPCORE__STATE_RESULT__INIT, *rp = &res;
		Mcpcore__StateReply rep = MCPCORE__STATE_REPLY__INIT;

		if (mc_recv(&sw, &m) != 0) {
			usleep(1000);
			continue;
		}
		rq = (Mcpcore__StateRequest *)mc_proto_unpack(m.frame);
		cr_assert_not_null(rq);
		cr_assert_eq(rq->n_ops, 1);
		cr_assert_eq(rq->ops[0]->kind, MCPCORE__STATE_OP__KIND__RESTORE);
		cr_assert_eq(rq->ops[0]->version, 7);
		res.id = rq->ops[0]->id;
		rep.results = &rp;
		rep.n_results = 1;
		cr_assert_eq(mc_proto_send(&sw, &rep.base, 1ULL << MC_WORKER_PERSISTENCE), 0);
		mcpcore__state_request__free_unpacked(rq, NULL);
		mc_frame_release(&sw, &m);
		answered = 1;
	}
	cr_assert(answered);
	wait_ready();
	cr_assert_eq(ck_pr_load_32(&ctl->pc_restored), 1);
	cr_assert_eq(ck_pr_load_64(&ctl->pc_restored_keys), 1);
	/* a restart within the same segment does not restore again */
	stop_worker(SIGKILL);
	start_worker();
	wait_ready();
	cr_assert_eq(mc_recv(&sw, &(struct mc_msg){ 0 }), -EAGAIN);
	mc_seg_detach(&sw);
}

Test(worker, a_locked_store_is_a_fault_with_backpressure_then_recovers)
{
	struct mc_persist_ctl *c = mc_persist_ctl(&sup);
	uint64_t last = 0;
	int go[2], done[2], status;
	pid_t holder;
	char ch;

	/* another process holds the store open (as a second instance would) */
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(done), 0);
	holder = fork();
	cr_assert_neq(holder, -1);
	if (holder == 0) {
		struct mc_pstore st;

		if (mc_pstore_open(&st, db, "lz4", MC_PSTORE_CREATE, err, sizeof(err)) != 0)
			_exit(2);
		(void)!write(go[1], "x", 1);
		(void)!read(done[0], &ch, 1);
		mc_pstore_close(&st);
		_exit(0);
	}
	cr_assert_eq(read(go[0], &ch, 1), 1);
	start_worker();
	wait_ready();       /* ready anyway: the fault is in the control block */
	for (int i = 0; i < 200 && ck_pr_load_32(&c->pc_fault) == MC_PFAULT_NONE; i++)
		usleep(10000);
	cr_assert_eq(ck_pr_load_32(&c->pc_fault), MC_PFAULT_LOCKED);
	cr_assert_eq(ck_pr_load_32(&c->pc_state), MC_PERSIST_FAULT);
	for (uint32_t i = 0; i < 100; i++)
		last = send_mcp(i);
	usleep(300000);
	cr_assert_eq(mc_persist_durable_seq(&prod, PROD), 0, "nothing is acknowledged in a fault");
	cr_assert_eq(ck_pr_load_64(&c->pc_held), 100);
	cr_assert_eq(write(done[1], "x", 1), 1);
	cr_assert_eq(waitpid(holder, &status, 0), holder);
	cr_assert_eq(mc_persist_wait_durable(&prod, PROD, last, 30000000000ULL), 0);
	cr_assert_eq(ck_pr_load_32(&c->pc_fault), MC_PFAULT_NONE);
	cr_assert_geq(ck_pr_load_64(&c->pc_faults_total), 1);
}
