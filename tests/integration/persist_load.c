/*
 * persist_load.c - test helper for tests/integration/test_persist.py: a
 * producer that pushes MCPMessage frames at the persistence worker and
 * records what was durably acknowledged, and a verifier that reads the
 * store back.
 *
 *   persist_load push --instance I --count N [--size B] [--progress FILE]
 *                     [--wait-s S] [--stamp]
 *     Claims a client slot and sends N frames of about B bytes (default
 *     256: an 8-byte index, then half random and half zero bytes) to the
 *     persistence worker, retrying on back-pressure (a full ring or pool
 *     is -EAGAIN; the frame stays allocated so sequence numbers stay
 *     contiguous).  Without --stamp the messages carry timestamp 0, so the
 *     worker keys them by the time it takes them: a frame stored twice
 *     would show up as two keys.  Then waits up to S seconds (default 120)
 *     for every frame to be durable.  Prints one JSON line:
 *       {"slot", "run", "first_seq", "last_seq", "sent", "acked_seq",
 *        "eagain", "elapsed_s", "supervisor_died"}
 *     --progress FILE is rewritten every 50 ms with the same object, so the
 *     test can see the acknowledged set grow.  If the supervisor dies
 *     (the whole tree killed), it stops and reports what was acknowledged.
 *
 *   persist_load verify --db DIR --run R --slot S --first F --last L [--acked A]
 *     Reads the messages family read-only and checks, for records of
 *     (run R, slot S): each seq in [F, L] at most once ("duplicates"), the
 *     payload index matching seq - F, and every seq in [F, A] present
 *     ("missing_acked").  Prints one JSON line; exit 0 when there are no
 *     duplicates, no mismatches and nothing acknowledged is missing.
 */
#define _GNU_SOURCE
#include <ck_pr.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_log.h"
#include "mc_persist.h"
#include "mc_pkeys.h"
#include "mc_proto.h"
#include "mc_pstore.h"
#include "mc_seg.h"
#include "mc_util.h"

struct opts {
	const char *instance, *db, *progress;
	uint64_t count, size, run, first, last, acked;
	unsigned slot;
	double wait_s;
	int stamp;
};

static void report(FILE *f, const struct mc_seg *seg, uint64_t first, uint64_t last,
    uint64_t sent, uint64_t acked, uint64_t eagain, double elapsed, int died)
{
	fprintf(f, "{\"slot\": %d, \"run\": %llu, \"first_seq\": %llu, \"last_seq\": %llu, "
	    "\"sent\": %llu, \"acked_seq\": %llu, \"eagain\": %llu, \"elapsed_s\": %.3f, "
	    "\"supervisor_died\": %s}\n", seg->slot,
	    (unsigned long long)seg->hdr->sh_created_wall_ns, (unsigned long long)first,
	    (unsigned long long)last, (unsigned long long)sent, (unsigned long long)acked,
	    (unsigned long long)eagain, elapsed, died ? "true" : "false");
}

static void write_progress(const char *path, const struct mc_seg *seg, uint64_t first,
    uint64_t last, uint64_t sent, uint64_t acked, uint64_t eagain, double elapsed)
{
	char tmp[4200];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL)
		return;
	report(f, seg, first, last, sent, acked, eagain, elapsed, 0);
	fclose(f);
	rename(tmp, path);
}

/* While refused (back-pressure): keep the progress file current. */
static void blocked(const struct opts *o, const struct mc_seg *seg, uint64_t first,
    uint64_t last, uint64_t sent, uint64_t eagain, uint64_t t0, uint64_t *next_report)
{
	if (o->progress == NULL || mc_now_ns() < *next_report)
		return;
	write_progress(o->progress, seg, first, last, sent,
	    mc_persist_durable_seq(seg, (unsigned)seg->slot), eagain,
	    (double)(mc_now_ns() - t0) / 1e9);
	*next_report = mc_now_ns() + 50000000ULL;
}

/* An MCPMessage of about `size` bytes whose payload starts with the index. */
static size_t build(uint8_t *buf, size_t cap, uint64_t index, size_t size, int stamp,
    uint8_t *payload)
{
	Mcpcore__MCPMessage m = MCPCORE__MCPMESSAGE__INIT;
	size_t plen = size > 24 ? size - 24 : 8;

	memcpy(payload, &index, 8);
	for (size_t i = 8; i < plen / 2; i++)
		payload[i] = (uint8_t)(random() & 0xff);
	memset(payload + plen / 2, 0, plen - plen / 2 > 0 ? plen - plen / 2 : 0);
	m.timestamp = stamp ? mc_wall_ns() : 0;
	m.message_type = "load";
	m.payload.data = payload;
	m.payload.len = plen;
	if (mcpcore__mcpmessage__get_packed_size(&m) > cap)
		return 0;
	return mcpcore__mcpmessage__pack(&m, buf);
}

static int push(const struct opts *o)
{
	char err[512];
	struct mc_seg seg;
	uint8_t *buf = malloc(o->size + 64), *payload = malloc(o->size + 64);
	uint64_t first = 0, last = 0, sent = 0, eagain = 0, acked = 0, t0 = mc_now_ns();
	uint64_t next_report = 0, deadline;
	int rc, died = 0;

	if (buf == NULL || payload == NULL)
		return 2;
	rc = mc_seg_attach(&seg, o->instance, false, err, sizeof(err));
	if (rc == 0)
		rc = mc_seg_claim_client(&seg, "persist-load", err, sizeof(err));
	if (rc) {
		fprintf(stderr, "persist_load: %s\n", err);
		return 2;
	}
	srandom((unsigned)getpid());
	for (uint64_t i = 0; i < o->count && !died; i++) {
		size_t len = build(buf, o->size + 64, i, o->size, o->stamp, payload);
		struct mc_frame *f;

		for (;;) {
			f = mc_frame_alloc(&seg, (uint32_t)len, MC_FK_MCP, &rc);
			if (f != NULL)
				break;
			if (rc != -EAGAIN) {
				fprintf(stderr, "persist_load: alloc: %s\n", mc_strerror(rc));
				return 2;
			}
			eagain++;
			if ((eagain & 1023) == 0 && !mc_seg_supervisor_alive(&seg)) {
				died = 1;
				break;
			}
			mc_seg_heartbeat(&seg);
			blocked(o, &seg, first, last, sent, eagain, t0, &next_report);
			usleep(200);
		}
		if (died)
			break;
		memcpy(f->f_data, buf, len);
		if (i == 0)
			first = f->f_seq;
		last = f->f_seq;
		/* keep the allocation on back-pressure: sequence numbers stay contiguous */
		while ((rc = mc_frame_send(&seg, f, 1ULL << MC_WORKER_PERSISTENCE)) != 0) {
			if (rc != -EAGAIN && rc != -EPIPE) {
				fprintf(stderr, "persist_load: send: %s\n", mc_strerror(rc));
				return 2;
			}
			eagain++;
			if ((eagain & 1023) == 0 && !mc_seg_supervisor_alive(&seg)) {
				died = 1;
				break;
			}
			mc_seg_heartbeat(&seg);
			blocked(o, &seg, first, last, sent, eagain, t0, &next_report);
			usleep(200);
		}
		if (died) {
			last = f->f_seq - 1;    /* never sent */
			mc_frame_abort(&seg, f);
			break;
		}
		sent++;
		if (o->progress && mc_now_ns() >= next_report) {
			acked = mc_persist_durable_seq(&seg, (unsigned)seg.slot);
			write_progress(o->progress, &seg, first, last, sent, acked, eagain,
			    (double)(mc_now_ns() - t0) / 1e9);
			next_report = mc_now_ns() + 50000000ULL;
			mc_seg_heartbeat(&seg);
		}
	}
	deadline = mc_now_ns() + (uint64_t)(o->wait_s * 1e9);
	while (!died && sent > 0 && mc_persist_durable_seq(&seg, (unsigned)seg.slot) < last &&
	    mc_now_ns() < deadline) {
		mc_seg_heartbeat(&seg);
		if (!mc_seg_supervisor_alive(&seg))
			died = 1;
		if (o->progress)
			write_progress(o->progress, &seg, first, last, sent,
			    mc_persist_durable_seq(&seg, (unsigned)seg.slot), eagain,
			    (double)(mc_now_ns() - t0) / 1e9);
		usleep(20000);
	}
	acked = mc_persist_durable_seq(&seg, (unsigned)seg.slot);
	if (o->progress)
		write_progress(o->progress, &seg, first, last, sent, acked, eagain,
		    (double)(mc_now_ns() - t0) / 1e9);
	report(stdout, &seg, first, last, sent, acked, eagain, (double)(mc_now_ns() - t0) / 1e9,
	    died);
	fflush(stdout);
	if (!died)
		mc_seg_release_client(&seg);
	mc_seg_detach(&seg);
	free(buf);
	free(payload);
	return 0;
}

static int verify(const struct opts *o)
{
	char err[MC_PSTORE_ERR_MAX];
	struct mc_pstore st;
	rocksdb_iterator_t *it;
	uint64_t span = o->last >= o->first ? o->last - o->first + 1 : 0;
	uint8_t *seen = calloc(span ? span : 1, 1);
	uint64_t total = 0, matching = 0, dups = 0, mismatch = 0, outside = 0;
	uint64_t missing = 0, missing_acked = 0, first_missing = 0;
	int rc;

	if (seen == NULL)
		return 2;
	rc = mc_pstore_open(&st, o->db, "lz4", MC_PSTORE_READONLY, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "persist_load: %s\n", err);
		return 2;
	}
	it = mc_pstore_iter(&st, MC_CF_MESSAGES);
	for (rocksdb_iter_seek_to_first(it); it && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
		const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
		struct mc_pkey_time key;
		struct mc_pb_field pl;
		uint64_t index;

		total++;
		if (mc_pkey_time_decode(k, klen, &key) != 0 || key.run != o->run || key.slot != o->slot)
			continue;
		if (key.seq < o->first || key.seq > o->last) {
			outside++;
			continue;
		}
		matching++;
		if (seen[key.seq - o->first]++)
			dups++;
		if (mc_pb_scan(v, vlen, 3, &pl) != 1 || pl.len < 8) {
			mismatch++;
			continue;
		}
		memcpy(&index, pl.ptr, 8);
		if (index != key.seq - o->first)
			mismatch++;
	}
	if (it != NULL)
		rocksdb_iter_destroy(it);
	mc_pstore_close(&st);
	for (uint64_t i = 0; i < span; i++)
		if (!seen[i]) {
			if (missing++ == 0)
				first_missing = o->first + i;
			if (o->first + i <= o->acked)
				missing_acked++;
		}
	printf("{\"records\": %llu, \"matching\": %llu, \"duplicates\": %llu, \"mismatched\": %llu, "
	    "\"outside\": %llu, \"missing\": %llu, \"missing_acked\": %llu, \"first_missing\": %llu}\n",
	    (unsigned long long)total, (unsigned long long)matching, (unsigned long long)dups,
	    (unsigned long long)mismatch, (unsigned long long)outside, (unsigned long long)missing,
	    (unsigned long long)missing_acked, (unsigned long long)first_missing);
	free(seen);
	return dups == 0 && mismatch == 0 && missing_acked == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "instance", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 'z' },
		{ "progress", required_argument, NULL, 'p' },
		{ "wait-s", required_argument, NULL, 'w' },
		{ "stamp", no_argument, NULL, 't' },
		{ "db", required_argument, NULL, 'd' },
		{ "run", required_argument, NULL, 'r' },
		{ "slot", required_argument, NULL, 's' },
		{ "first", required_argument, NULL, 'f' },
		{ "last", required_argument, NULL, 'l' },
		{ "acked", required_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .count = 1000, .size = 256, .wait_s = 120 };
	int ch;

	if (argc < 2) {
		fprintf(stderr, "usage: persist_load push|verify [options] (see the source)\n");
		return 64;
	}
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'i': o.instance = optarg; break;
		case 'n': o.count = strtoull(optarg, NULL, 10); break;
		case 'z': o.size = strtoull(optarg, NULL, 10); break;
		case 'p': o.progress = optarg; break;
		case 'w': o.wait_s = strtod(optarg, NULL); break;
		case 't': o.stamp = 1; break;
		case 'd': o.db = optarg; break;
		case 'r': o.run = strtoull(optarg, NULL, 10); break;
		case 's': o.slot = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'f': o.first = strtoull(optarg, NULL, 10); break;
		case 'l': o.last = strtoull(optarg, NULL, 10); break;
		case 'a': o.acked = strtoull(optarg, NULL, 10); break;
		default: return 64;
		}
	}
	mc_log_init("persist_load", "warn");
	signal(SIGPIPE, SIG_IGN);
	if (strcmp(argv[1], "push") == 0 && o.instance)
		return push(&o);
	if (strcmp(argv[1], "verify") == 0 && o.db)
		return verify(&o);
	fprintf(stderr, "persist_load: push needs --instance, verify needs --db\n");
	return 64;
}
