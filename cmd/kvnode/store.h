/* store: the in-memory record store of kvnode (namespaces, partitions,
 * records, expiry and memory accounting).
 *
 * Each namespace has 4096 partitions; each partition is an open-addressing
 * hash table of record pointers keyed by digest.  A record is one
 * allocation: fixed metadata, then set name, user key and the bins map
 * (MessagePack, stored as validated bytes).  Single-threaded: the server
 * loop owns the store, so every operation is atomic per record. */
#ifndef KVNODE_STORE_H
#define KVNODE_STORE_H

#include "kv_proto.h"
#include <stdbool.h>
#include <stdint.h>

/* Ordered so that the header packs into 48 bytes. */
typedef struct {
    uint64_t lut;        /* last-update time, ms */
    uint32_t gen;
    uint32_t void_time;  /* Unix seconds; 0 = never expires */
    uint32_t bins_len;
    uint16_t nbins;
    uint16_t key_len;
    uint8_t set_len;
    uint8_t key_type;    /* kv_keytype_t; KV_KEY_NONE if not stored */
    uint8_t digest[KV_DIGEST_SIZE];
    uint8_t data[];      /* set | key | bins */
} kv_rec_t;
_Static_assert(sizeof(kv_rec_t) == 48, "record header should stay 48 bytes");

static inline const char *rec_set(const kv_rec_t *r) { return (const char *) r->data; }
static inline const uint8_t *rec_key(const kv_rec_t *r) { return r->data + r->set_len; }
static inline const uint8_t *rec_bins(const kv_rec_t *r) { return r->data + r->set_len + r->key_len; }

typedef struct {
    char name[KV_NS_MAX + 1];
    int64_t default_ttl;      /* seconds, 0 = never */
    uint64_t max_record_size; /* bytes */
    uint64_t memory_limit;    /* bytes */
    uint32_t max_bins;
} kv_ns_config_t;

typedef struct {
    kv_rec_t **slots; /* NULL = empty */
    uint32_t cap;   /* power of two, or 0 */
    uint32_t count;
} kv_part_t;

typedef struct {
    kv_ns_config_t cfg;
    kv_part_t parts[KV_PARTITIONS];
    uint64_t records;
    uint64_t memory_used;     /* records plus index slots */
    uint64_t expired;         /* reclaimed by the sweeper or on access */
    uint32_t sweep_pid;       /* next partition the sweeper visits */
} kv_ns_t;

/* Memory a record of this data size costs (record and index slot). */
uint64_t store_rec_cost(uint32_t data_len);

kv_ns_t *store_ns_new(const kv_ns_config_t *cfg);
void store_ns_destroy(kv_ns_t **ns_p);

/* Live record or NULL; an expired record found here is reclaimed. */
kv_rec_t *store_get(kv_ns_t *ns, const uint8_t *digest, uint32_t now);
/* Insert or replace (takes ownership of rec; frees a replaced one). */
int store_put(kv_ns_t *ns, kv_rec_t *rec);
/* Remove and free; true if a record was there. */
bool store_remove(kv_ns_t *ns, const uint8_t *digest);

/* Allocate a record with room for data_len bytes of data. */
kv_rec_t *store_rec_alloc(uint32_t data_len);
static inline uint32_t rec_data_len(const kv_rec_t *r) { return r->set_len + r->key_len + r->bins_len; }

/* Collect up to max live records of partition pid with digest > after
 * (after may be NULL), sorted by digest, into out.  Returns the count. */
uint32_t store_scan_partition(kv_ns_t *ns, uint32_t pid, const uint8_t *after, uint32_t now,
                              kv_rec_t **out, uint32_t max);
/* Reclaim expired records in the next `parts` partitions.  Returns count. */
uint32_t store_sweep(kv_ns_t *ns, uint32_t now, uint32_t parts);

void store_test(bool verbose);

#endif
