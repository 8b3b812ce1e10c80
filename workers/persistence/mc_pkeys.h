/*
 * mc_pkeys.h - how the persistence worker names what it stores: RocksDB
 * key encodings per column family.  (The protobuf wire scanner it reads
 * single fields with, mc_pb_scan, is in proto/mc_proto.h.)
 *
 * KEYS (all integers big-endian, so bytewise order = numeric order)
 *
 *   messages, training, metrics   ("time keys", 27 bytes)
 *     time ns (8) | run id (8) | producer slot (1) | frame seq (8) | kind (2)
 *     time: the record's own timestamp (MCPMessage.timestamp,
 *     TrainingData.timestamp) or, when it is 0 or the record has none
 *     (metrics), the worker's wall clock when the frame was taken.  Keys
 *     sort by time; run id (the segment's creation time) + slot + seq make
 *     them unique across restarts of the runtime, and the kind says how to
 *     decode the value.
 *
 *   models                        model id length (2) | model id | version (8)
 *     All versions of one model are adjacent, oldest first.
 *
 *   state                         namespace length (2) | namespace | key
 *
 *   default                       "mcpcore.format" -> "1"
 *                                 "mcpcore.dedup"  -> dedup marks (batch.c)
 *
 * Pure functions: any thread, no allocation.  Encoders return the key
 * length, or -ENAMETOOLONG if `cap` is too small / a part exceeds its
 * length field.  Decoders return 0 or -EINVAL for a key of the wrong shape.
 */
#ifndef MC_PKEYS_H
#define MC_PKEYS_H

#include <stddef.h>
#include <stdint.h>

#include "mc_proto.h"           /* mc_pb_scan */

#define MC_PKEY_TIME_LEN   27
#define MC_PKEY_MODEL_MAX  (2 + 65535 + 8)

struct mc_pkey_time {
	uint64_t time_ns;
	uint64_t run;
	uint8_t  slot;
	uint64_t seq;
	uint16_t kind;
};

int mc_pkey_time_encode(uint8_t *out, size_t cap, const struct mc_pkey_time *k);
int mc_pkey_time_decode(const uint8_t *key, size_t len, struct mc_pkey_time *k);

/* models: (id, version); the prefix (length + id) selects every version */
int mc_pkey_model_encode(uint8_t *out, size_t cap, const void *id, size_t idlen,
    uint64_t version);
int mc_pkey_model_prefix(uint8_t *out, size_t cap, const void *id, size_t idlen);
/* *id points into `key` (not NUL-terminated) */
int mc_pkey_model_decode(const uint8_t *key, size_t len, const uint8_t **id,
    size_t *idlen, uint64_t *version);

/* state: (namespace, key) */
int mc_pkey_state_encode(uint8_t *out, size_t cap, const void *ns, size_t nslen,
    const void *key, size_t keylen);
int mc_pkey_state_decode(const uint8_t *key, size_t len, const uint8_t **ns,
    size_t *nslen, const uint8_t **k, size_t *klen);

/* big-endian helpers (also used by the dedup marks and the tests) */
static inline void mc_pkey_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static inline uint64_t mc_pkey_get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

#endif /* MC_PKEYS_H */
