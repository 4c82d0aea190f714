/* store: the record store of kvnode (namespaces, partitions, records,
 * expiry and memory accounting).  A namespace with storage=file is kept
 * by the file engine (disk.h); the functions here pass its calls on.
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
#include <stddef.h>
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

typedef enum { KV_STORAGE_UNSET, KV_STORAGE_MEMORY, KV_STORAGE_FILE } kv_storage_t;

typedef struct {
    char name[KV_NS_MAX + 1];
    int64_t default_ttl;      /* seconds, 0 = never */
    uint64_t max_record_size; /* bytes */
    uint64_t memory_limit;    /* bytes (for a file namespace: its index) */
    uint32_t max_bins;
    uint32_t rf;              /* replication factor in a cluster (1..KV_RF_MAX) */
    kv_storage_t storage;     /* UNSET until config_finish decides */
    bool commit_to_device;    /* file: fdatasync before acknowledging */
    uint32_t flush_ms;        /* file: longest a write stays buffered */
    uint32_t write_block;     /* file: block size, power of two */
    uint32_t defrag_lwm;      /* file: percent */
    uint64_t disk_limit;      /* file: bytes */
    bool max_record_size_set; /* given, rather than the default */
    char file_key[24];        /* the first file-only key given, if any */
} kv_ns_config_t;

typedef struct {
    kv_rec_t **slots; /* NULL = empty */
    uint16_t *tags;   /* low 16 bits of each slot's hash: most probes end
                         here, without reading a record */
    uint32_t cap;   /* power of two, or 0 */
    uint32_t count;
} kv_part_t;

struct disk;

typedef struct {
    kv_ns_config_t cfg;
    kv_part_t parts[KV_PARTITIONS]; /* storage=memory */
    struct disk *disk;              /* storage=file */
    uint64_t records;
    uint64_t memory_used;     /* records plus index slots (file: the index) */
    uint64_t expired;         /* reclaimed by the sweeper or on access */
    uint64_t tombstones;      /* file: deleted and expired entries kept */
    uint32_t sweep_pid;       /* next partition the sweeper visits */
    char why[1536];           /* why the last failed write failed, */
    int why_code;             /* and its error code (kv_err.h) */
    bool read_error;          /* the last store_get found a damaged record (why says) */
} kv_ns_t;

/* Start loading what lookups of these n digests will read (their slots,
 * then their records), so that the cache misses overlap. */
void store_prefetch(const kv_ns_t *ns, const uint8_t (*digests)[KV_DIGEST_SIZE], int n);

/* Memory a record of this data size costs (record and index slot). */
uint64_t store_rec_cost(uint32_t data_len);

/* A namespace; with storage=file its file in dir is opened (and the
 * index rebuilt).  NULL with a reason. */
kv_ns_t *store_ns_new(const kv_ns_config_t *cfg, const char *dir, char *why, size_t whylen);
/* Flushes a file namespace, then frees everything. */
void store_ns_destroy(kv_ns_t **ns_p);

/* Live record or NULL; an expired record found here is reclaimed.  For a
 * file namespace the record is a copy valid until the next store call,
 * and NULL with ns->read_error set means it is there but damaged. */
kv_rec_t *store_get(kv_ns_t *ns, const uint8_t *digest, uint32_t now);
/* Insert or replace.  Takes ownership of rec, which stays readable until
 * the next write.  0, or -1 with ns->why (the write changed nothing). */
int store_put(kv_ns_t *ns, kv_rec_t *rec);
/* Delete (a file namespace writes a tombstone with gen and lut).  1 if a
 * record was there, 0 if not, -1 with ns->why. */
int store_remove(kv_ns_t *ns, const uint8_t *digest, uint32_t gen, uint64_t lut);
/* rec (from store_get) was changed in place (touch): store the change.
 * 0, or -1 with ns->why. */
int store_rewrite(kv_ns_t *ns, kv_rec_t *rec);

/* Slot hash of a digest (SipHash under a key chosen at start). */
uint32_t store_hash(const uint8_t *digest);
/* Open addressing with backward-shift deletion: may the entry in slot j,
 * whose home slot is home, move back to the emptied slot i? */
static inline bool store_shift_back(uint32_t i, uint32_t j, uint32_t home)
{
    return (j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j));
}

/* Allocate a record with room for data_len bytes of data. */
kv_rec_t *store_rec_alloc(uint32_t data_len);
static inline uint32_t rec_data_len(const kv_rec_t *r) { return r->set_len + r->key_len + r->bins_len; }

/* Collect up to max live records of partition pid with digest > after
 * (after may be NULL), sorted by digest, into out; with tombs, the
 * tombstones of a file namespace too (records with no bins; an in-memory
 * namespace keeps none).  Returns the count; *more if the partition has
 * more after them. */
uint32_t store_scan_partition(kv_ns_t *ns, uint32_t pid, const uint8_t *after, uint32_t now, bool tombs,
                              kv_rec_t **out, uint32_t max, bool *more);
/* A file namespace's tombstone of digest: 1 with its generation and
 * last-update time, else 0 (always 0 in memory). */
int store_tomb(const kv_ns_t *ns, const uint8_t *digest, uint32_t *gen, uint64_t *lut);
/* Forget the live copy of digest without leaving a tombstone (a stale
 * copy a migration drops).  1 if there was one. */
int store_drop(kv_ns_t *ns, const uint8_t *digest);
/* Forget every live record of partition pid without tombstones (a
 * partition this node no longer holds a copy of).  Returns the count. */
uint32_t store_drop_partition(kv_ns_t *ns, uint32_t pid);
/* Reclaim expired records in the next `parts` partitions.  Returns count. */
uint32_t store_sweep(kv_ns_t *ns, uint32_t now, uint32_t parts);

void store_test(bool verbose);

#endif
