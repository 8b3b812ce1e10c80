/*
 * mc_pjson.h - stored records as JSON: protobuf-c reflection to jansson,
 * for `mcpcore dump` and anything else that shows records to people.
 *
 * The mapping follows protobuf's JSON mapping with the original field
 * names (as Python's MessageToDict(preserving_proto_field_name=True)),
 * except that every field is printed, defaults included, and 64-bit
 * integers are JSON numbers (strings only above 2^63-1, which jansson
 * cannot hold):
 *   bytes -> base64 string; enum -> its name (number if unknown);
 *   map<k, v> -> object (keys as strings); repeated -> array;
 *   message -> object; float/double -> number (NaN/Inf as strings).
 *
 * One record of a column family becomes
 *   {"cf": "messages", "key": {...}, "value": {...}}
 * where "key" is the decoded key (mc_pkeys.h) -- {"time", "run", "slot",
 * "seq", "kind"} / {"model_id", "version"} / {"ns", "key"} (ns and key
 * as strings when they are UTF-8, else base64 under "ns_b64"/"key_b64")
 * -- and "value" the decoded message; a value that does not decode is
 * {"undecodable": true, "bytes_b64": "..."}.
 *
 * Threads: any; results are new references (NULL only on out of memory).
 */
#ifndef MC_PJSON_H
#define MC_PJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

json_t *mc_pjson_message(const ProtobufCMessage *msg);

/* Base64 (RFC 4648, padded) of data[len] as a JSON string. */
json_t *mc_pjson_base64(const uint8_t *data, size_t len);

/* The record (cf is enum mc_pstore_cf). */
json_t *mc_pjson_record(int cf, const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen);

/* The record's time for --since filtering: the key's time (time families),
 * created_at (models), mtime (state); 0 when unknown. */
uint64_t mc_pjson_record_time(int cf, const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen);

#endif /* MC_PJSON_H */
