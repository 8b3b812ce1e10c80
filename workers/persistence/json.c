/*
 * json.c - protobuf-c messages and stored records as jansson JSON
 * (mapping in mc_pjson.h).
 *
 * Reflection walks the descriptor, so every message of every .proto the
 * runtime compiles (including kinds other modules add later) prints without
 * code here knowing it.
 */
#include "mc_pjson.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_pkeys.h"
#include "mc_proto.h"
#include "mc_pstore.h"

json_t *mc_pjson_base64(const uint8_t *d, size_t len)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t outlen = 4 * ((len + 2) / 3);
	char *out = malloc(outlen + 1), *p = out;
	json_t *s;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)d[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)d[i + 1] << 8;
		if (i + 2 < len)
			v |= d[i + 2];
		*p++ = tab[(v >> 18) & 63];
		*p++ = tab[(v >> 12) & 63];
		*p++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
		*p++ = i + 2 < len ? tab[v & 63] : '=';
	}
	*p = '\0';
	s = json_stringn(out, outlen);
	free(out);
	return s;
}

static json_t *mc_pjson_u64(uint64_t v)
{
	char buf[24];

	if (v <= (uint64_t)INT64_MAX)
		return json_integer((json_int_t)v);
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
	return json_string(buf);
}

static json_t *mc_pjson_double(double v)
{
	if (isnan(v))
		return json_string("NaN");
	if (isinf(v))
		return json_string(v > 0 ? "Infinity" : "-Infinity");
	return json_real(v);
}

/* One value of field f stored at p. */
static json_t *mc_pjson_value(const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return json_integer(*(const int32_t *)p);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return json_integer(*(const uint32_t *)p);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return json_integer((json_int_t)*(const int64_t *)p);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return mc_pjson_u64(*(const uint64_t *)p);
	case PROTOBUF_C_TYPE_FLOAT:
		return mc_pjson_double(*(const float *)p);
	case PROTOBUF_C_TYPE_DOUBLE:
		return mc_pjson_double(*(const double *)p);
	case PROTOBUF_C_TYPE_BOOL:
		return json_boolean(*(const protobuf_c_boolean *)p);
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
		    f->descriptor, *(const int *)p);

		return ev ? json_string(ev->name) : json_integer(*(const int *)p);
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;

		return json_string(s ? s : "");
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = p;

		return mc_pjson_base64(b->data, b->len);
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;

		return m ? mc_pjson_message(m) : json_null();
	}
	}
	return json_null();
}

static size_t mc_pjson_size(const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_ENUM:
		return 4;
	case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	}
	return 0;
}

/* A map field is a repeated message of a "...Entry" type with key and value. */
static bool mc_pjson_is_map(const ProtobufCFieldDescriptor *f)
{
	const ProtobufCMessageDescriptor *d = f->descriptor;
	size_t n;

	if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE || d == NULL)
		return false;
	n = strlen(d->name);
	return n > 5 && strcmp(d->name + n - 5, "Entry") == 0 && d->n_fields == 2 &&
	    strcmp(d->fields[0].name, "key") == 0 && strcmp(d->fields[1].name, "value") == 0;
}

static json_t *mc_pjson_map(const ProtobufCFieldDescriptor *f, ProtobufCMessage *const *ents,
    size_t n)
{
	json_t *obj = json_object();
	const ProtobufCMessageDescriptor *d = f->descriptor;

	for (size_t i = 0; i < n; i++) {
		const uint8_t *e = (const uint8_t *)ents[i];
		json_t *k = mc_pjson_value(&d->fields[0], e + d->fields[0].offset);
		json_t *v = mc_pjson_value(&d->fields[1], e + d->fields[1].offset);
		char kbuf[32];
		const char *ks = kbuf;

		if (json_is_string(k))
			ks = json_string_value(k);
		else if (json_is_integer(k))
			snprintf(kbuf, sizeof(kbuf), "%" JSON_INTEGER_FORMAT, json_integer_value(k));
		else
			snprintf(kbuf, sizeof(kbuf), "%s", json_is_true(k) ? "true" : "false");
		json_object_set_new(obj, ks, v);
		json_decref(k);
	}
	return obj;
}

json_t *mc_pjson_message(const ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	json_t *obj = json_object();

	if (obj == NULL)
		return NULL;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const uint8_t *base = (const uint8_t *)msg;

		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			const uint8_t *arr = *(const uint8_t *const *)(base + f->offset);
			json_t *a;

			if (mc_pjson_is_map(f)) {
				json_object_set_new(obj, f->name,
				    mc_pjson_map(f, (ProtobufCMessage *const *)arr, n));
				continue;
			}
			a = json_array();
			for (size_t j = 0; j < n; j++)
				json_array_append_new(a, mc_pjson_value(f, arr + j * mc_pjson_size(f)));
			json_object_set_new(obj, f->name, a);
			continue;
		}
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
				continue;
		} else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset != 0 &&
		    f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING &&
		    !*(const protobuf_c_boolean *)(base + f->quantifier_offset)) {
			continue;   /* proto2/proto3-optional field that is not set */
		}
		json_object_set_new(obj, f->name, mc_pjson_value(f, base + f->offset));
	}
	return obj;
}

/* A byte string as JSON text when it is valid UTF-8 without NULs. */
static bool mc_pjson_utf8(const uint8_t *s, size_t n)
{
	json_t *t;

	if (memchr(s, 0, n) != NULL)
		return false;
	t = json_stringn((const char *)s, n);   /* NULL when not UTF-8 */
	json_decref(t);
	return t != NULL;
}

static void mc_pjson_set_bytes(json_t *obj, const char *name, const uint8_t *s, size_t n)
{
	char b64[64];

	if (mc_pjson_utf8(s, n)) {
		json_object_set_new(obj, name, json_stringn((const char *)s, n));
		return;
	}
	snprintf(b64, sizeof(b64), "%s_b64", name);
	json_object_set_new(obj, b64, mc_pjson_base64(s, n));
}

static json_t *mc_pjson_key(int cf, const uint8_t *key, size_t klen)
{
	struct mc_pkey_time t;
	const uint8_t *a, *b;
	size_t alen, blen;
	uint64_t version;
	json_t *obj;

	switch (cf) {
	case MC_CF_MESSAGES:
	case MC_CF_TRAINING:
	case MC_CF_METRICS:
		if (mc_pkey_time_decode(key, klen, &t) == 0)
			return json_pack("{s:o, s:o, s:i, s:o, s:i}", "time", mc_pjson_u64(t.time_ns),
			    "run", mc_pjson_u64(t.run), "slot", (int)t.slot, "seq", mc_pjson_u64(t.seq),
			    "kind", (int)t.kind);
		break;
	case MC_CF_MODELS:
		if (mc_pkey_model_decode(key, klen, &a, &alen, &version) == 0) {
			obj = json_object();
			mc_pjson_set_bytes(obj, "model_id", a, alen);
			json_object_set_new(obj, "version", mc_pjson_u64(version));
			return obj;
		}
		break;
	case MC_CF_STATE:
		if (mc_pkey_state_decode(key, klen, &a, &alen, &b, &blen) == 0) {
			obj = json_object();
			mc_pjson_set_bytes(obj, "ns", a, alen);
			mc_pjson_set_bytes(obj, "key", b, blen);
			return obj;
		}
		break;
	default:
		obj = json_object();
		mc_pjson_set_bytes(obj, "name", key, klen);
		return obj;
	}
	return json_pack("{s:o}", "raw_b64", mc_pjson_base64(key, klen));
}

/* The message type a value of this family (and key) holds, or NULL. */
static const ProtobufCMessageDescriptor *mc_pjson_type(int cf, const uint8_t *key, size_t klen)
{
	struct mc_pkey_time t;

	switch (cf) {
	case MC_CF_MESSAGES:
	case MC_CF_TRAINING:
	case MC_CF_METRICS:
		if (mc_pkey_time_decode(key, klen, &t) == 0)
			return mc_proto_descriptor(t.kind);
		return cf == MC_CF_MESSAGES ? &mcpcore__mcpmessage__descriptor :
		    cf == MC_CF_TRAINING ? &mcpcore__training_data__descriptor : NULL;
	case MC_CF_MODELS:
		return &mcpcore__learning_model__descriptor;
	case MC_CF_STATE:
		return &mcpcore__state_change__descriptor;
	default:
		return NULL;
	}
}

json_t *mc_pjson_record(int cf, const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen)
{
	const ProtobufCMessageDescriptor *d = mc_pjson_type(cf, key, klen);
	ProtobufCMessage *m = d ? protobuf_c_message_unpack(d, NULL, vlen, val) : NULL;
	json_t *value;

	if (m != NULL) {
		value = mc_pjson_message(m);
		protobuf_c_message_free_unpacked(m, NULL);
	} else if (cf == MC_CF_DEFAULT) {
		value = json_object();
		mc_pjson_set_bytes(value, "bytes", val, vlen);
	} else {
		value = json_pack("{s:b, s:o}", "undecodable", 1, "bytes_b64",
		    mc_pjson_base64(val, vlen));
	}
	return json_pack("{s:s, s:o, s:o}", "cf", mc_pstore_cf_name(cf) ? mc_pstore_cf_name(cf) :
	    "?", "key", mc_pjson_key(cf, key, klen), "value", value);
}

uint64_t mc_pjson_record_time(int cf, const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen)
{
	struct mc_pkey_time t;
	struct mc_pb_field f;

	switch (cf) {
	case MC_CF_MESSAGES:
	case MC_CF_TRAINING:
	case MC_CF_METRICS:
		return mc_pkey_time_decode(key, klen, &t) == 0 ? t.time_ns : 0;
	case MC_CF_MODELS:      /* LearningModel.created_at = 3 */
		return mc_pb_scan(val, vlen, 3, &f) == 1 && f.wire == 0 ? f.u64 : 0;
	case MC_CF_STATE:       /* StateChange.mtime = 7 */
		return mc_pb_scan(val, vlen, 7, &f) == 1 && f.wire == 0 ? f.u64 : 0;
	default:
		return 0;
	}
}
