/*
 * state_load.c - a load generator and checker for the state manager, used
 * by the integration tests (not installed).
 *
 *   state_load write INSTANCE NS COUNT KEYS ACKFILE
 *       PUT COUNT values into KEYS keys ("k<i % KEYS>") of namespace NS,
 *       pipelined (batches of up to 256 ops, several batches in flight),
 *       surviving restarts of the state worker; every acknowledged write is
 *       appended to ACKFILE as "key version counter" lines.  Values are
 *       self-checking: the 20-digit counter repeated 1..10 times.
 *   state_load read INSTANCE NS KEYS SECONDS
 *       read random keys as fast as possible; every value must be a clean
 *       repetition of one counter (never torn) and, per key, counters and
 *       versions never go backwards.  Prints "reads N" on success.
 *
 * Exit 0 on success, 1 on a failed check (with a message), 2 on usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mc_frame.h"
#include "mc_layout.h"
#include "mc_log.h"
#include "mc_proto.h"
#include "mc_ring.h"
#include "mc_seg.h"
#include "mc_state.h"
#include "mc_state_client.h"
#include "mc_util.h"

#define MC_INFLIGHT 8           /* batches on their way */

/* "%020llu" repeated 1 + n % 10 times. */
static size_t mc_value(uint64_t n, char *buf)
{
	size_t reps = 1 + n % 10;

	for (size_t i = 0; i < reps; i++)
		snprintf(buf + 20 * i, 21, "%020" PRIu64, n);
	return 20 * reps;
}

/* The counter a value carries, or -1 if it is not a clean repetition. */
static int64_t mc_value_check(const char *v, size_t len)
{
	char first[21];

	if (len == 0 || len % 20 != 0 || len > 200)
		return -1;
	memcpy(first, v, 20);
	first[20] = '\0';
	for (size_t i = 20; i < len; i += 20)
		if (memcmp(v + i, first, 20) != 0)
			return -1;
	return (int64_t)strtoull(first, NULL, 10);
}

struct mc_pending {
	uint64_t first_id, n;
	uint64_t counter0;
};

static int mc_write(const char *instance, const char *ns, uint64_t count, uint64_t keys,
    const char *ackfile)
{
	struct mc_seg seg;
	struct mc_state_batch b = { 0 };
	struct mc_pending inflight[MC_INFLIGHT * 4];
	unsigned nin = 0;
	char err[512], kbuf[32], vbuf[256 * 256];
	uint64_t next = 0, acked = 0, last_progress = mc_now_ns();
	FILE *ack = fopen(ackfile, "w");
	int rc;

	if (ack == NULL || mc_seg_attach(&seg, instance, false, err, sizeof(err)) ||
	    mc_seg_claim_client(&seg, "state-load", err, sizeof(err))) {
		fprintf(stderr, "state_load: %s\n", ack ? err : strerror(errno));
		return 1;
	}
	mc_state_batch_init(&b);
	while (acked < count) {
		struct mc_msg m;

		/* keep MC_INFLIGHT batches going */
		while (next < count && nin < MC_INFLIGHT) {
			uint64_t first = next;
			char *vp = vbuf;

			mc_state_batch_init(&b);
			while (next < count && b.n < MC_STATE_BATCH_MAX) {
				struct mc_state_req r = { .kind = MCPCORE__STATE_OP__KIND__PUT };
				char *kp = kbuf;

				(void)kp;
				r.ns = ns;
				r.nslen = strlen(ns);
				/* keys live in the batch's value buffer too: one area per op */
				snprintf(vp, 32, "k%" PRIu64, next % keys);
				r.key = vp;
				r.klen = strlen(vp);
				vp += 32;
				r.vlen = mc_value(next, vp);
				r.value = vp;
				vp += 224;
				if (mc_state_batch_add(&seg, &b, &r) < 0)
					break;
				next++;
			}
			rc = mc_state_batch_send(&seg, &b);
			if (rc == -EAGAIN) {
				next = first;           /* back-pressure: rebuild later */
				break;
			}
			if (rc) {
				fprintf(stderr, "state_load: send: %s\n", mc_strerror(rc));
				return 1;
			}
			inflight[nin++] = (struct mc_pending){ b.next_id - (next - first), next - first,
			    first };
		}
		if (mc_recv(&seg, &m) != 0) {
			if (mc_now_ns() - last_progress > 30000000000ULL) {
				fprintf(stderr, "state_load: no reply for 30 s (%" PRIu64 " of %" PRIu64
				    " acknowledged)\n", acked, count);
				return 1;
			}
			mc_ring_wait(&seg, 20000, 10000000);
			continue;
		}
		if (m.frame->f_kind == MC_FK_STATE_REPLY) {
			Mcpcore__StateReply *rep = (Mcpcore__StateReply *)mc_proto_unpack(m.frame);

			for (size_t i = 0; rep && i < rep->n_results; i++) {
				const Mcpcore__StateResult *res = rep->results[i];

				for (unsigned p = 0; p < nin; p++) {
					struct mc_pending *pd = &inflight[p];

					if (res->id < pd->first_id || res->id >= pd->first_id + pd->n)
						continue;
					if (res->status != MCPCORE__STATE_RESULT__STATUS__OK) {
						fprintf(stderr, "state_load: op failed: %s\n", res->error);
						return 1;
					}
					uint64_t c = pd->counter0 + (res->id - pd->first_id);

					fprintf(ack, "k%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", c % keys,
					    res->version, c);
					acked++;
					last_progress = mc_now_ns();
					if (res->id == pd->first_id + pd->n - 1)
						inflight[p] = inflight[--nin];   /* batch complete */
					break;
				}
			}
			if (rep)
				protobuf_c_message_free_unpacked(&rep->base, NULL);
		}
		mc_frame_release(&seg, &m);
	}
	fclose(ack);
	mc_seg_release_client(&seg);
	mc_seg_detach(&seg);
	printf("acked %" PRIu64 "\n", acked);
	return 0;
}

static int mc_read(const char *instance, const char *ns, uint64_t keys, double seconds)
{
	struct mc_seg seg;
	char err[512], key[32], buf[256];
	int64_t *last = calloc(keys, sizeof(*last));
	uint64_t *lastv = calloc(keys, sizeof(*lastv));
	uint64_t reads = 0, found = 0, x = 88172645463325252ULL;
	uint64_t end = mc_now_ns() + (uint64_t)(seconds * 1e9);

	if (last == NULL || lastv == NULL || mc_seg_attach(&seg, instance, true, err, sizeof(err))) {
		fprintf(stderr, "state_load: %s\n", err);
		return 1;
	}
	while ((reads & 1023) || mc_now_ns() < end) {
		struct mc_state_value v;
		uint64_t k;
		int64_t c;
		int rc;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		k = x % keys;
		snprintf(key, sizeof(key), "k%" PRIu64, k);
		rc = mc_state_get(&seg, ns, strlen(ns), key, strlen(key), buf, sizeof(buf), &v);
		reads++;
		if (rc == -ENOENT)
			continue;
		if (rc) {
			fprintf(stderr, "state_load: get %s: %d\n", key, rc);
			return 1;
		}
		found++;
		c = mc_value_check(buf, v.len);
		if (c < 0) {
			fprintf(stderr, "state_load: TORN value for %s (len %u): %.*s\n", key, v.len,
			    (int)v.len, buf);
			return 1;
		}
		if (c < last[k] || v.version < lastv[k]) {
			fprintf(stderr, "state_load: %s went backwards: counter %" PRId64 " after %"
			    PRId64 ", version %" PRIu64 " after %" PRIu64 "\n", key, c, last[k],
			    v.version, lastv[k]);
			return 1;
		}
		last[k] = c;
		lastv[k] = v.version;
	}
	printf("reads %" PRIu64 " found %" PRIu64 "\n", reads, found);
	mc_seg_detach(&seg);
	return 0;
}

int main(int argc, char **argv)
{
	mc_log_init("state-load", "warn");
	if (argc == 7 && strcmp(argv[1], "write") == 0)
		return mc_write(argv[2], argv[3], strtoull(argv[4], NULL, 10),
		    strtoull(argv[5], NULL, 10), argv[6]);
	if (argc == 6 && strcmp(argv[1], "read") == 0)
		return mc_read(argv[2], argv[3], strtoull(argv[4], NULL, 10), atof(argv[5]));
	fprintf(stderr, "usage: state_load write INSTANCE NS COUNT KEYS ACKFILE\n"
	    "       state_load read INSTANCE NS KEYS SECONDS\n");
	return 2;
}
