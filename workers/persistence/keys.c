/*
 * keys.c - RocksDB key encodings of the persistence worker and the
 * protobuf wire scanner (formats and contract in mc_pkeys.h).
 *
 * Invariant: every encoding is self-delimiting and big-endian, so that a
 * key's bytewise order (RocksDB's default comparator, which `ldb` uses
 * too) is the order a reader wants: by time, or by model then version.
 */
#include "mc_pkeys.h"

#include <errno.h>
#include <string.h>

static void mc_pkey_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t mc_pkey_get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

int mc_pkey_time_encode(uint8_t *out, size_t cap, const struct mc_pkey_time *k)
{
	if (cap < MC_PKEY_TIME_LEN)
		return -ENAMETOOLONG;
	mc_pkey_put_be64(out, k->time_ns);
	mc_pkey_put_be64(out + 8, k->run);
	out[16] = k->slot;
	mc_pkey_put_be64(out + 17, k->seq);
	mc_pkey_put_be16(out + 25, k->kind);
	return MC_PKEY_TIME_LEN;
}

int mc_pkey_time_decode(const uint8_t *key, size_t len, struct mc_pkey_time *k)
{
	if (len != MC_PKEY_TIME_LEN)
		return -EINVAL;
	k->time_ns = mc_pkey_get_be64(key);
	k->run = mc_pkey_get_be64(key + 8);
	k->slot = key[16];
	k->seq = mc_pkey_get_be64(key + 17);
	k->kind = mc_pkey_get_be16(key + 25);
	return 0;
}

int mc_pkey_model_prefix(uint8_t *out, size_t cap, const void *id, size_t idlen)
{
	if (idlen > UINT16_MAX || cap < 2 + idlen)
		return -ENAMETOOLONG;
	mc_pkey_put_be16(out, (uint16_t)idlen);
	memcpy(out + 2, id, idlen);
	return (int)(2 + idlen);
}

int mc_pkey_model_encode(uint8_t *out, size_t cap, const void *id, size_t idlen,
    uint64_t version)
{
	int n = mc_pkey_model_prefix(out, cap, id, idlen);

	if (n < 0 || cap < (size_t)n + 8)
		return -ENAMETOOLONG;
	mc_pkey_put_be64(out + n, version);
	return n + 8;
}

int mc_pkey_model_decode(const uint8_t *key, size_t len, const uint8_t **id,
    size_t *idlen, uint64_t *version)
{
	size_t n;

	if (len < 2 + 8)
		return -EINVAL;
	n = mc_pkey_get_be16(key);
	if (len != 2 + n + 8)
		return -EINVAL;
	*id = key + 2;
	*idlen = n;
	*version = mc_pkey_get_be64(key + 2 + n);
	return 0;
}

int mc_pkey_state_encode(uint8_t *out, size_t cap, const void *ns, size_t nslen,
    const void *key, size_t keylen)
{
	if (nslen > UINT16_MAX || cap < 2 + nslen + keylen)
		return -ENAMETOOLONG;
	mc_pkey_put_be16(out, (uint16_t)nslen);
	memcpy(out + 2, ns, nslen);
	memcpy(out + 2 + nslen, key, keylen);
	return (int)(2 + nslen + keylen);
}

int mc_pkey_state_decode(const uint8_t *key, size_t len, const uint8_t **ns,
    size_t *nslen, const uint8_t **k, size_t *klen)
{
	size_t n;

	if (len < 2)
		return -EINVAL;
	n = mc_pkey_get_be16(key);
	if (len < 2 + n)
		return -EINVAL;
	*ns = key + 2;
	*nslen = n;
	*k = key + 2 + n;
	*klen = len - 2 - n;
	return 0;
}

