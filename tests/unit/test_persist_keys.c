/*
 * test_persist_keys.c - unit tests for the persistence key encodings and
 * the protobuf wire scanner (workers/persistence/keys.c, contract in
 * mc_pkeys.h).
 *
 * The encodings are what RocksDB (and `ldb`) sort by, so besides round
 * trips the tests check that bytewise order is the order readers want.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "mc_pkeys.h"
#include "mc_proto.h"

static int cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c != 0 ? c : (alen > blen) - (alen < blen);
}

Test(keys, time_round_trip_and_layout)
{
	struct mc_pkey_time k = { .time_ns = 0x0102030405060708ULL, .run = 0x1112131415161718ULL,
	    .slot = 9, .seq = 0x2122232425262728ULL, .kind = 0x3132 }, out;
	uint8_t buf[64];

	cr_assert_eq(mc_pkey_time_encode(buf, sizeof(buf), &k), MC_PKEY_TIME_LEN);
	/* big-endian fields at fixed offsets: what the README's ldb recipe decodes */
	cr_assert_eq(buf[0], 0x01);
	cr_assert_eq(buf[7], 0x08);
	cr_assert_eq(buf[8], 0x11);
	cr_assert_eq(buf[16], 9);
	cr_assert_eq(buf[17], 0x21);
	cr_assert_eq(buf[25], 0x31);
	cr_assert_eq(buf[26], 0x32);
	cr_assert_eq(mc_pkey_time_decode(buf, MC_PKEY_TIME_LEN, &out), 0);
	cr_assert_eq(out.time_ns, k.time_ns);
	cr_assert_eq(out.run, k.run);
	cr_assert_eq(out.slot, k.slot);
	cr_assert_eq(out.seq, k.seq);
	cr_assert_eq(out.kind, k.kind);
	cr_assert_eq(mc_pkey_time_decode(buf, MC_PKEY_TIME_LEN - 1, &out), -EINVAL);
	cr_assert_eq(mc_pkey_time_encode(buf, MC_PKEY_TIME_LEN - 1, &k), -ENAMETOOLONG);
}

Test(keys, time_keys_sort_by_time_then_run_slot_seq)
{
	struct mc_pkey_time ks[] = {
		{ .time_ns = 1, .run = 9, .slot = 9, .seq = 9 },
		{ .time_ns = 255, .run = 0, .slot = 0, .seq = 0 },
		{ .time_ns = 256, .run = 0, .slot = 0, .seq = 0 },
		{ .time_ns = 256, .run = 1, .slot = 0, .seq = 0 },
		{ .time_ns = 256, .run = 1, .slot = 2, .seq = 0 },
		{ .time_ns = 256, .run = 1, .slot = 2, .seq = 1 },
		{ .time_ns = 256, .run = 1, .slot = 2, .seq = 256 },
		{ .time_ns = UINT64_MAX, .run = 0, .slot = 0, .seq = 0 },
	};
	uint8_t a[MC_PKEY_TIME_LEN], b[MC_PKEY_TIME_LEN];

	for (size_t i = 0; i + 1 < sizeof(ks) / sizeof(ks[0]); i++) {
		mc_pkey_time_encode(a, sizeof(a), &ks[i]);
		mc_pkey_time_encode(b, sizeof(b), &ks[i + 1]);
		cr_assert_lt(cmp(a, sizeof(a), b, sizeof(b)), 0, "key %zu does not sort before %zu",
		    i, i + 1);
	}
}

Test(keys, a_since_prefix_seeks_to_the_first_key_at_that_time)
{
	struct mc_pkey_time before = { .time_ns = 999, .run = UINT64_MAX, .slot = 255,
	    .seq = UINT64_MAX, .kind = 0xffff }, at = { .time_ns = 1000 };
	uint8_t since[8], a[MC_PKEY_TIME_LEN], b[MC_PKEY_TIME_LEN];

	mc_pkey_put_be64(since, 1000);
	mc_pkey_time_encode(a, sizeof(a), &before);
	mc_pkey_time_encode(b, sizeof(b), &at);
	cr_assert_lt(cmp(a, sizeof(a), since, sizeof(since)), 0);
	cr_assert_leq(cmp(since, sizeof(since), b, sizeof(b)), 0);
}

Test(keys, model_round_trip_prefix_and_order)
{
	uint8_t k1[64], k2[64], k3[64], p[64];
	const uint8_t *id;
	size_t idlen;
	uint64_t v;
	int n1 = mc_pkey_model_encode(k1, sizeof(k1), "m", 1, 2);
	int n2 = mc_pkey_model_encode(k2, sizeof(k2), "m", 1, 10);
	int n3 = mc_pkey_model_encode(k3, sizeof(k3), "ma", 2, 0);
	int np = mc_pkey_model_prefix(p, sizeof(p), "m", 1);

	cr_assert_eq(n1, 2 + 1 + 8);
	cr_assert_eq(np, 3);
	/* versions of one model are adjacent and numeric-ordered; the prefix is theirs only */
	cr_assert_lt(cmp(k1, (size_t)n1, k2, (size_t)n2), 0);
	cr_assert_lt(cmp(k2, (size_t)n2, k3, (size_t)n3), 0);
	cr_assert_eq(memcmp(k1, p, (size_t)np), 0);
	cr_assert_eq(memcmp(k2, p, (size_t)np), 0);
	cr_assert_neq(memcmp(k3, p, (size_t)np), 0, "'ma' must not share the prefix of 'm'");
	cr_assert_eq(mc_pkey_model_decode(k2, (size_t)n2, &id, &idlen, &v), 0);
	cr_assert_eq(idlen, 1);
	cr_assert_eq(id[0], 'm');
	cr_assert_eq(v, 10);
	cr_assert_eq(mc_pkey_model_decode(k2, (size_t)n2 - 1, &id, &idlen, &v), -EINVAL);
	cr_assert_eq(mc_pkey_model_decode(k2, 5, &id, &idlen, &v), -EINVAL);
}

Test(keys, model_id_limits)
{
	static uint8_t big[70000], out[70000 + 16];

	cr_assert_eq(mc_pkey_model_encode(out, sizeof(out), big, 65535, 1), 65535 + 10);
	cr_assert_eq(mc_pkey_model_encode(out, sizeof(out), big, 65536, 1), -ENAMETOOLONG);
	cr_assert_eq(mc_pkey_model_encode(out, 10, "abc", 3, 1), -ENAMETOOLONG);
}

Test(keys, state_round_trip_and_namespace_boundary)
{
	uint8_t a[64], b[64];
	const uint8_t *ns, *k;
	size_t nslen, klen;
	int na = mc_pkey_state_encode(a, sizeof(a), "ab", 2, "c", 1);
	int nb = mc_pkey_state_encode(b, sizeof(b), "a", 1, "bc", 2);

	cr_assert_eq(na, 5);
	/* ("ab","c") and ("a","bc") must be different keys: the length prefix sees to it */
	cr_assert(na != nb || memcmp(a, b, (size_t)na) != 0);
	cr_assert_eq(mc_pkey_state_decode(a, (size_t)na, &ns, &nslen, &k, &klen), 0);
	cr_assert_eq(nslen, 2);
	cr_assert_eq(memcmp(ns, "ab", 2), 0);
	cr_assert_eq(klen, 1);
	cr_assert_eq(k[0], 'c');
	cr_assert_eq(mc_pkey_state_decode(a, 1, &ns, &nslen, &k, &klen), -EINVAL);
	a[1] = 10;      /* a namespace longer than the key */
	cr_assert_eq(mc_pkey_state_decode(a, (size_t)na, &ns, &nslen, &k, &klen), -EINVAL);
}

Test(keys, scan_finds_fields_of_real_messages)
{
	Mcpcore__MCPMessage m = MCPCORE__MCPMESSAGE__INIT;
	Mcpcore__LearningModel lm = MCPCORE__LEARNING_MODEL__INIT;
	uint8_t buf[512], pl[40] = "payload";
	struct mc_pb_field f;
	size_t n;

	m.timestamp = 1234567890123ULL;
	m.message_type = "tools/list";
	m.payload.data = pl;
	m.payload.len = sizeof(pl);
	n = mcpcore__mcpmessage__pack(&m, buf);
	cr_assert_eq(mc_pb_scan(buf, n, 1, &f), 1);
	cr_assert_eq(f.wire, 0);
	cr_assert_eq(f.u64, 1234567890123ULL);
	cr_assert_eq(mc_pb_scan(buf, n, 3, &f), 1);
	cr_assert_eq(f.wire, 2);
	cr_assert_eq(f.len, sizeof(pl));
	cr_assert_eq(memcmp(f.ptr, pl, sizeof(pl)), 0);
	cr_assert_eq(mc_pb_scan(buf, n, 9, &f), 0);
	cr_assert_eq(mc_pb_scan(buf, n, 0, NULL), 0, "a field number of 0 only validates");

	lm.model_id = "net";
	lm.version = 7;
	n = mcpcore__learning_model__pack(&lm, buf);
	cr_assert_eq(mc_pb_scan(buf, n, 1, &f), 1);
	cr_assert_eq(f.len, 3);
	cr_assert_eq(memcmp(f.ptr, "net", 3), 0);
	cr_assert_eq(mc_pb_scan(buf, n, 2, &f), 1);
	cr_assert_eq(f.u64, 7);
	cr_assert_eq(mc_pb_scan(buf, 0, 1, &f), 0, "an empty message has no fields");
}

Test(keys, scan_last_occurrence_wins_and_fixed_widths)
{
	/* field 1 = 5, field 1 = 300, field 2 fixed64, field 3 fixed32 */
	const uint8_t b[] = { 0x08, 0x05, 0x08, 0xac, 0x02,
	    0x11, 1, 2, 3, 4, 5, 6, 7, 8, 0x1d, 9, 0, 0, 0 };
	struct mc_pb_field f;

	cr_assert_eq(mc_pb_scan(b, sizeof(b), 1, &f), 1);
	cr_assert_eq(f.u64, 300);
	cr_assert_eq(mc_pb_scan(b, sizeof(b), 2, &f), 1);
	cr_assert_eq(f.wire, 1);
	cr_assert_eq(f.u64, 0x0807060504030201ULL);
	cr_assert_eq(mc_pb_scan(b, sizeof(b), 3, &f), 1);
	cr_assert_eq(f.u64, 9);
}

Test(keys, scan_rejects_malformed_input)
{
	const uint8_t truncated_varint[] = { 0x08, 0x80 };
	const uint8_t truncated_len[] = { 0x1a, 0x05, 'a', 'b' };
	const uint8_t field_zero[] = { 0x00, 0x01 };
	const uint8_t group[] = { 0x0b };
	const uint8_t wire7[] = { 0x0f };
	const uint8_t long_varint[] = { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0xff, 0xff, 0x01 };
	const uint8_t short_fixed[] = { 0x11, 1, 2, 3 };
	struct mc_pb_field f;

	cr_assert_eq(mc_pb_scan(truncated_varint, sizeof(truncated_varint), 1, &f), -EBADMSG);
	cr_assert_eq(mc_pb_scan(truncated_len, sizeof(truncated_len), 3, &f), -EBADMSG);
	cr_assert_eq(mc_pb_scan(field_zero, sizeof(field_zero), 1, &f), -EBADMSG);
	cr_assert_eq(mc_pb_scan(group, sizeof(group), 1, &f), -EBADMSG);
	cr_assert_eq(mc_pb_scan(wire7, sizeof(wire7), 1, &f), -EBADMSG);
	cr_assert_eq(mc_pb_scan(long_varint, sizeof(long_varint), 1, &f), -EBADMSG);
	cr_assert_eq(mc_pb_scan(short_fixed, sizeof(short_fixed), 2, &f), -EBADMSG);
}

Test(keys, be64_helpers)
{
	uint8_t b[8];

	mc_pkey_put_be64(b, 0x0123456789abcdefULL);
	cr_assert_eq(b[0], 0x01);
	cr_assert_eq(b[7], 0xef);
	cr_assert_eq(mc_pkey_get_be64(b), 0x0123456789abcdefULL);
}
