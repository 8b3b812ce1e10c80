/*
 * test_persist_json.c - unit tests for records as JSON (workers/
 * persistence/json.c, mapping in mc_pjson.h): what `mcpcore dump` prints.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mc_pjson.h"
#include "mc_pkeys.h"
#include "mc_proto.h"
#include "mc_pstore.h"

static const char *s(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static json_int_t i(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

Test(json, base64_all_paddings)
{
	static const struct { const char *in, *out; } v[] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
	};

	for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
		json_t *j = mc_pjson_base64((const uint8_t *)v[k].in, strlen(v[k].in));

		cr_assert_str_eq(json_string_value(j), v[k].out);
		json_decref(j);
	}
}

Test(json, mcp_message_with_map_and_bytes)
{
	Mcpcore__MCPMessage m = MCPCORE__MCPMESSAGE__INIT;
	Mcpcore__MCPMessage__MetadataEntry e1 = MCPCORE__MCPMESSAGE__METADATA_ENTRY__INIT, e2 = e1;
	Mcpcore__MCPMessage__MetadataEntry *ents[] = { &e1, &e2 };
	json_t *j, *md;

	m.timestamp = 18446744073709551615ULL;      /* above 2^63: a string */
	m.message_type = "tools/list";
	m.payload.data = (uint8_t *)"{}";
	m.payload.len = 2;
	e1.key = "session";
	e1.value = "s1";
	e2.key = "peer";
	e2.value = "127.0.0.1";
	m.metadata = ents;
	m.n_metadata = 2;
	j = mc_pjson_message(&m.base);
	cr_assert_str_eq(s(j, "timestamp"), "18446744073709551615");
	cr_assert_str_eq(s(j, "message_type"), "tools/list");
	cr_assert_str_eq(s(j, "payload"), "e30=");
	md = json_object_get(j, "metadata");
	cr_assert(json_is_object(md));
	cr_assert_str_eq(s(md, "session"), "s1");
	cr_assert_str_eq(s(md, "peer"), "127.0.0.1");
	json_decref(j);
}

Test(json, model_repeated_double_map_and_defaults)
{
	Mcpcore__LearningModel m = MCPCORE__LEARNING_MODEL__INIT;
	Mcpcore__LearningModel__PerformanceMetricsEntry e =
	    MCPCORE__LEARNING_MODEL__PERFORMANCE_METRICS_ENTRY__INIT, *ep = &e;
	uint64_t parents[] = { 1, 2 };
	json_t *j, *p;

	m.model_id = "net";
	m.version = 3;
	m.parent_versions = parents;
	m.n_parent_versions = 2;
	e.key = "loss";
	e.value = 0.25;
	m.performance_metrics = &ep;
	m.n_performance_metrics = 1;
	j = mc_pjson_message(&m.base);
	p = json_object_get(j, "parent_versions");
	cr_assert_eq(json_array_size(p), 2);
	cr_assert_eq(json_integer_value(json_array_get(p, 1)), 2);
	cr_assert_float_eq(json_real_value(json_object_get(json_object_get(j,
	    "performance_metrics"), "loss")), 0.25, 1e-12);
	cr_assert_eq(i(j, "created_at"), 0, "defaults are printed");
	cr_assert_str_eq(s(j, "model_data"), "");
	json_decref(j);
}

Test(json, nested_repeated_messages_enums_and_floats)
{
	Mcpcore__TrainingData td = MCPCORE__TRAINING_DATA__INIT;
	Mcpcore__LearningData ld = MCPCORE__LEARNING_DATA__INIT, *ldp = &ld;
	Mcpcore__StateChange sc = MCPCORE__STATE_CHANGE__INIT;
	float feats[] = { 1.5f, NAN };
	json_t *j, *sample;

	ld.features = feats;
	ld.n_features = 2;
	ld.label = -2.0f;
	td.samples = &ldp;
	td.n_samples = 1;
	td.dataset = "ds";
	j = mc_pjson_message(&td.base);
	sample = json_array_get(json_object_get(j, "samples"), 0);
	cr_assert(json_is_object(sample));
	cr_assert_float_eq(json_real_value(json_array_get(json_object_get(sample, "features"), 0)),
	    1.5, 1e-9);
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(sample, "features"), 1)),
	    "NaN");
	cr_assert_float_eq(json_real_value(json_object_get(sample, "label")), -2.0, 1e-9);
	json_decref(j);
	sc.op = MCPCORE__STATE_CHANGE__OP__EXPIRE;
	j = mc_pjson_message(&sc.base);
	cr_assert_str_eq(s(j, "op"), "EXPIRE");
	json_decref(j);
}

Test(json, records_of_each_family)
{
	Mcpcore__MCPMessage m = MCPCORE__MCPMESSAGE__INIT;
	struct mc_pkey_time k = { .time_ns = 77, .run = 5, .slot = 6, .seq = 9, .kind = MC_FK_MCP };
	uint8_t key[128], val[128], bad[2] = { 0x0f, 0 };
	json_t *r, *kk;
	size_t n;
	int klen;

	m.message_type = "x";
	n = mcpcore__mcpmessage__pack(&m, val);
	mc_pkey_time_encode(key, sizeof(key), &k);
	r = mc_pjson_record(MC_CF_MESSAGES, key, MC_PKEY_TIME_LEN, val, n);
	cr_assert_str_eq(s(r, "cf"), "messages");
	kk = json_object_get(r, "key");
	cr_assert_eq(i(kk, "time"), 77);
	cr_assert_eq(i(kk, "run"), 5);
	cr_assert_eq(i(kk, "slot"), 6);
	cr_assert_eq(i(kk, "seq"), 9);
	cr_assert_eq(i(kk, "kind"), MC_FK_MCP);
	cr_assert_str_eq(s(json_object_get(r, "value"), "message_type"), "x");
	cr_assert_eq(mc_pjson_record_time(MC_CF_MESSAGES, key, MC_PKEY_TIME_LEN, val, n), 77);
	json_decref(r);
	/* a value that does not decode is shown, not dropped */
	r = mc_pjson_record(MC_CF_MESSAGES, key, MC_PKEY_TIME_LEN, bad, 1);
	cr_assert(json_is_true(json_object_get(json_object_get(r, "value"), "undecodable")));
	json_decref(r);
	/* models: (id, version) */
	klen = mc_pkey_model_encode(key, sizeof(key), "net", 3, 4);
	r = mc_pjson_record(MC_CF_MODELS, key, (size_t)klen, val, 0);
	kk = json_object_get(r, "key");
	cr_assert_str_eq(s(kk, "model_id"), "net");
	cr_assert_eq(i(kk, "version"), 4);
	json_decref(r);
	/* state: binary names as base64 */
	klen = mc_pkey_state_encode(key, sizeof(key), "ns", 2, "\xff\x00", 2);
	r = mc_pjson_record(MC_CF_STATE, key, (size_t)klen, val, 0);
	kk = json_object_get(r, "key");
	cr_assert_str_eq(s(kk, "ns"), "ns");
	cr_assert_str_eq(s(kk, "key_b64"), "/wA=");
	json_decref(r);
	/* default: the marker */
	r = mc_pjson_record(MC_CF_DEFAULT, (const uint8_t *)"mcpcore.format", 14,
	    (const uint8_t *)"1", 1);
	cr_assert_str_eq(s(json_object_get(r, "key"), "name"), "mcpcore.format");
	cr_assert_str_eq(s(json_object_get(r, "value"), "bytes"), "1");
	json_decref(r);
}

Test(json, record_time_of_models_and_state)
{
	Mcpcore__LearningModel lm = MCPCORE__LEARNING_MODEL__INIT;
	Mcpcore__StateChange sc = MCPCORE__STATE_CHANGE__INIT;
	uint8_t v[128];
	size_t n;

	lm.model_id = "m";
	lm.created_at = 1234;
	n = mcpcore__learning_model__pack(&lm, v);
	cr_assert_eq(mc_pjson_record_time(MC_CF_MODELS, (const uint8_t *)"", 0, v, n), 1234);
	sc.mtime = 99;
	n = mcpcore__state_change__pack(&sc, v);
	cr_assert_eq(mc_pjson_record_time(MC_CF_STATE, (const uint8_t *)"", 0, v, n), 99);
	cr_assert_eq(mc_pjson_record_time(MC_CF_MESSAGES, (const uint8_t *)"x", 1, v, n), 0);
}
