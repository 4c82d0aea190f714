/* kv_json: convert bin values between MessagePack and JSON (jansson).
 *
 * JSON has no bytes, no NaN/Infinity and only string map keys, so those
 * values are written as one-key objects whose key starts with '$':
 *   {"$bytes":"BASE64"}            bytes
 *   {"$float":"NaN"|"Infinity"|"-Infinity"}
 *   {"$string":"BASE64"}           a string that is not valid UTF-8
 *   {"$map":[[K,V],...]}           a map with a non-string key, or one that
 *                                  would itself look like a tagged object
 * Everything else maps directly, so export followed by import gives back
 * exactly the same values. */
#ifndef KV_JSON_H
#define KV_JSON_H

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* MessagePack value -> new JSON value; NULL if the bytes are malformed. */
json_t *kv_json_from_mp(const uint8_t *buf, size_t len);
/* JSON value -> MessagePack into pk.  Returns 0, or -1 with a reason. */
int kv_json_to_mp(const json_t *v, msgpack_packer *pk, char *why, size_t whylen);
/* A record's bins object (plain, or tagged {"$map":...}) -> MessagePack,
 * counting nesting from the bin values, as the server does. */
int kv_json_bins_to_mp(const json_t *bins, msgpack_packer *pk, char *why, size_t whylen);

/* Decode base64 text (standard alphabet, padded); malloc'd bytes the
 * caller frees, or NULL if the text is not base64. */
uint8_t *kv_base64_decode(const char *s, size_t *len);

/* Compact JSON text of v (object order kept), with each float written in
 * the shortest form that reads back to the same double.  Caller frees. */
char *kv_json_dumps(const json_t *v);

void kv_json_test(bool verbose);

#endif
