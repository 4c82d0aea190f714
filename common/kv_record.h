/* kv_record: a record in its JSON Lines form, the one `kvquery export`
 * writes and `kvquery import` (and `kvrepl load --format jsonl`) reads:
 *
 *   {"ns":NS,"set":SET,"key":KEY,"gen":N,"ttl":N,"bins":{...}}
 *
 * with "digest" (40 hex digits) instead of "key" for a record stored
 * without its key.  KEY is a string, an integer, {"$bytes":B64}, or
 * {"$string":B64} for a string that is not valid UTF-8; bin values are
 * converted by kv_json. */
#ifndef KV_RECORD_H
#define KV_RECORD_H

#include "kv_digest.h"
#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

/* Pack the key as one MessagePack value: an integer, a string or bytes. */
void kv_key_pack(msgpack_packer *pk, const kv_key_t *key);
/* The key as JSON (the same JSON as its MessagePack form gives). */
json_t *kv_key_json(const kv_key_t *key);
/* Record JSON object (ns, set, key|digest, gen, ttl, bins, deleted) from a
 * reply's record map; ns, set and key fill in what the map lacks (set and
 * key may be NULL).  New reference. */
json_t *kv_record_json(const char *ns, const char *set, const kv_key_t *key, const uint8_t *map, size_t len);

/* One record of a JSON line, checked and converted.  Owns its memory:
 * release it with kv_jrecord_destroy. */
typedef struct {
    char set[KV_SET_MAX + 1];
    kv_key_t key;                    /* type KV_KEY_NONE when the line gives only a digest */
    uint8_t key_buf[KV_KEY_MAX + 1]; /* the bytes key.bytes points at */
    uint8_t digest[KV_DIGEST_SIZE];  /* computed from set and key, or the line's "digest" */
    bool has_ttl;                    /* the line has "ttl" (-1 to KV_TTL_MAX) */
    int64_t ttl;
    msgpack_sbuffer bins;            /* "bins" as one MessagePack map (at least one bin) */
} kv_jrecord_t;

/* Read set, key or digest, ttl and bins from the JSON object o (other
 * fields are the caller's).  0, or -1 with r released and a reason in
 * why. */
int kv_jrecord_parse(kv_jrecord_t *r, const json_t *o, char *why, size_t whylen);
void kv_jrecord_destroy(kv_jrecord_t *r);

void kv_record_test(bool verbose);

#endif
