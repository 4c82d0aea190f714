/* store: in-memory namespaces of records in per-partition hash tables. */
#include "store.h"
#include "disk.h"
#include "kv_err.h"
#include "kv_digest.h"
#include <sodium.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t store_rec_cost(uint32_t data_len)
{
    /* record header and data, allocator rounding, and the index slot and
     * tag at its maximum load factor */
    return ((sizeof(kv_rec_t) + data_len + 15) & ~15ull) + 2 * (sizeof(kv_rec_t *) + sizeof(uint16_t));
}

/* Slot position: SipHash of the digest under a key chosen at start.  A
 * client that writes by digest alone chooses the digest, so a plain slice
 * of it would let it pile records into one probe chain. */
static uint8_t s_hash_key[crypto_shorthash_KEYBYTES];
static bool s_hash_key_set;

kv_ns_t *store_ns_new(const kv_ns_config_t *cfg, const char *dir, char *why, size_t whylen)
{
    if (!s_hash_key_set) {
        randombytes_buf(s_hash_key, sizeof s_hash_key);
        s_hash_key_set = true;
    }
    kv_ns_t *ns = calloc(1, sizeof *ns);
    if (!ns) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    ns->cfg = *cfg;
    if (cfg->storage == KV_STORAGE_FILE && !(ns->disk = disk_open(ns, dir, why, whylen))) {
        free(ns);
        return NULL;
    }
    return ns;
}

void store_ns_destroy(kv_ns_t **ns_p)
{
    kv_ns_t *ns = *ns_p;
    if (!ns)
        return;
    disk_close(&ns->disk);
    for (int p = 0; p < KV_PARTITIONS; p++) {
        for (uint32_t i = 0; i < ns->parts[p].cap; i++)
            free(ns->parts[p].slots[i]);
        free(ns->parts[p].slots);
        free(ns->parts[p].tags);
    }
    free(ns);
    *ns_p = NULL;
}

kv_rec_t *store_rec_alloc(uint32_t data_len)
{
    return calloc(1, sizeof(kv_rec_t) + data_len);
}

uint32_t store_hash(const uint8_t *d)
{
    uint64_t h;
    crypto_shorthash((unsigned char *) &h, d, KV_DIGEST_SIZE, s_hash_key);
    return (uint32_t) h;
}

/* Slot holding digest (whose store_hash is h), or the empty slot where
 * it would go.  A record is read only when its slot's tag matches. */
static uint32_t s_find(const kv_part_t *p, const uint8_t *d, uint32_t h)
{
    uint32_t mask = p->cap - 1, i = h & mask;
    uint16_t tag = (uint16_t) h;
    while (p->slots[i] && (p->tags[i] != tag || memcmp(p->slots[i]->digest, d, KV_DIGEST_SIZE) != 0))
        i = (i + 1) & mask;
    return i;
}

void store_prefetch(const kv_ns_t *ns, const uint8_t (*digests)[KV_DIGEST_SIZE], int n)
{
    if (ns->disk || n > 64)
        return;
    const kv_part_t *parts[64];
    uint32_t at[64];
    for (int k = 0; k < n; k++) {
        const kv_part_t *p = parts[k] = &ns->parts[kv_partition(digests[k])];
        if (!p->cap)
            continue;
        at[k] = store_hash(digests[k]) & (p->cap - 1);
        __builtin_prefetch(&p->slots[at[k]]);
        __builtin_prefetch(&p->tags[at[k]]);
    }
    for (int k = 0; k < n; k++)
        if (parts[k]->cap && parts[k]->slots[at[k]])
            __builtin_prefetch(parts[k]->slots[at[k]]);
}

/* Home slot of the record in slot j: from its tag while the table is
 * small enough for 16 bits to hold the index. */
static inline uint32_t s_home(const kv_part_t *p, uint32_t j)
{
    uint32_t mask = p->cap - 1;
    return (p->cap <= 65536 ? p->tags[j] : store_hash(p->slots[j]->digest)) & mask;
}

static int s_grow(kv_part_t *p)
{
    uint32_t ncap = p->cap ? p->cap * 2 : 8;
    kv_rec_t **slots = calloc(ncap, sizeof *slots);
    uint16_t *tags = malloc(ncap * sizeof *tags);
    if (!slots || !tags) {
        free(slots);
        free(tags);
        return -1;
    }
    kv_part_t old = *p;
    p->slots = slots;
    p->tags = tags;
    p->cap = ncap;
    for (uint32_t i = 0; i < old.cap; i++)
        if (old.slots[i]) {
            uint32_t h = store_hash(old.slots[i]->digest), j = s_find(p, old.slots[i]->digest, h);
            p->slots[j] = old.slots[i];
            p->tags[j] = (uint16_t) h;
        }
    free(old.slots);
    free(old.tags);
    return 0;
}

static inline kv_part_t *s_part(kv_ns_t *ns, const uint8_t *d)
{
    return &ns->parts[kv_partition(d)];
}

/* Remove the record in slot i, closing the gap (backward-shift deletion). */
static void s_delete_slot(kv_ns_t *ns, kv_part_t *p, uint32_t i)
{
    kv_rec_t *r = p->slots[i];
    ns->memory_used -= store_rec_cost(rec_data_len(r));
    ns->records--;
    p->count--;
    free(r);
    uint32_t mask = p->cap - 1, j = i;
    p->slots[i] = NULL;
    for (;;) {
        j = (j + 1) & mask;
        if (!p->slots[j])
            break;
        if (store_shift_back(i, j, s_home(p, j))) {
            p->slots[i] = p->slots[j];
            p->tags[i] = p->tags[j];
            p->slots[j] = NULL;
            i = j;
        }
    }
}

static inline bool s_expired(const kv_rec_t *r, uint32_t now)
{
    /* A record lives through the whole second of its void time, so a TTL of
     * n seconds gives at least n seconds and less than n + 1. */
    return r->void_time != 0 && r->void_time < now;
}

kv_rec_t *store_get(kv_ns_t *ns, const uint8_t *digest, uint32_t now)
{
    if (ns->disk)
        return disk_get(ns->disk, digest, now);
    kv_part_t *p = s_part(ns, digest);
    if (!p->cap)
        return NULL;
    uint32_t i = s_find(p, digest, store_hash(digest));
    kv_rec_t *r = p->slots[i];
    if (r && s_expired(r, now)) {
        s_delete_slot(ns, p, i);
        ns->expired++;
        return NULL;
    }
    return r;
}

int store_put(kv_ns_t *ns, kv_rec_t *rec)
{
    if (ns->disk)
        return disk_put(ns->disk, rec);
    kv_part_t *p = s_part(ns, rec->digest);
    if ((p->count + 1) * 4 > p->cap * 3 && s_grow(p) != 0) {
        snprintf(ns->why, sizeof ns->why, "out of memory");
        ns->why_code = KV_ERR_NS_FULL;
        return -1;
    }
    uint32_t h = store_hash(rec->digest), i = s_find(p, rec->digest, h);
    if (p->slots[i]) {
        ns->memory_used -= store_rec_cost(rec_data_len(p->slots[i]));
        free(p->slots[i]);
    } else {
        p->count++;
        ns->records++;
    }
    p->slots[i] = rec;
    p->tags[i] = (uint16_t) h;
    ns->memory_used += store_rec_cost(rec_data_len(rec));
    return 0;
}

int store_remove(kv_ns_t *ns, const uint8_t *digest, uint32_t gen, uint64_t lut)
{
    if (ns->disk)
        return disk_remove(ns->disk, digest, gen, lut);
    kv_part_t *p = s_part(ns, digest);
    if (!p->cap)
        return 0;
    uint32_t i = s_find(p, digest, store_hash(digest));
    if (!p->slots[i])
        return 0;
    s_delete_slot(ns, p, i);
    return 1;
}

int store_tomb(const kv_ns_t *ns, const uint8_t *digest, uint32_t *gen, uint64_t *lut)
{
    return ns->disk ? disk_tomb(ns->disk, digest, gen, lut) : 0;
}

int store_drop(kv_ns_t *ns, const uint8_t *digest)
{
    if (ns->disk)
        return disk_drop(ns->disk, digest);
    return store_remove(ns, digest, 0, 0);
}

int store_rewrite(kv_ns_t *ns, kv_rec_t *rec)
{
    if (!ns->disk)
        return 0; /* changed in place already */
    size_t size = sizeof *rec + rec_data_len(rec);
    kv_rec_t *copy = malloc(size);
    if (!copy) {
        snprintf(ns->why, sizeof ns->why, "out of memory");
        ns->why_code = KV_ERR_NS_FULL;
        return -1;
    }
    memcpy(copy, rec, size);
    if (disk_put(ns->disk, copy) != 0) {
        free(copy);
        return -1;
    }
    return 0;
}

static int s_cmp_rec(const void *a, const void *b)
{
    return memcmp((*(kv_rec_t *const *) a)->digest, (*(kv_rec_t *const *) b)->digest, KV_DIGEST_SIZE);
}

uint32_t store_scan_partition(kv_ns_t *ns, uint32_t pid, const uint8_t *after, uint32_t now, bool tombs,
                              kv_rec_t **out, uint32_t max, bool *more)
{
    if (ns->disk)
        return disk_scan_partition(ns->disk, pid, after, now, tombs, out, max, more);
    kv_part_t *p = &ns->parts[pid];
    *more = false;
    if (!p->count || !max)
        return 0;
    kv_rec_t **all = malloc(p->count * sizeof *all);
    if (!all)
        return 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->cap; i++) {
        kv_rec_t *r = p->slots[i];
        if (r && !s_expired(r, now) && (!after || memcmp(r->digest, after, KV_DIGEST_SIZE) > 0))
            all[n++] = r;
    }
    qsort(all, n, sizeof *all, s_cmp_rec);
    if (n > max) {
        n = max;
        *more = true;
    }
    memcpy(out, all, n * sizeof *all);
    free(all);
    return n;
}

uint32_t store_drop_partition(kv_ns_t *ns, uint32_t pid)
{
    if (ns->disk)
        return disk_drop_partition(ns->disk, pid);
    kv_part_t *p = &ns->parts[pid];
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->cap; i++)
        if (p->slots[i]) {
            ns->memory_used -= store_rec_cost(rec_data_len(p->slots[i]));
            free(p->slots[i]);
            p->slots[i] = NULL;
            n++;
        }
    p->count = 0;
    ns->records -= n;
    return n;
}

uint32_t store_sweep(kv_ns_t *ns, uint32_t now, uint32_t parts)
{
    if (ns->disk)
        return disk_sweep(ns->disk, now, parts);
    uint32_t reclaimed = 0;
    for (uint32_t k = 0; k < parts; k++) {
        kv_part_t *p = &ns->parts[ns->sweep_pid];
        ns->sweep_pid = (ns->sweep_pid + 1) % KV_PARTITIONS;
        for (uint32_t i = 0; i < p->cap;) {
            if (p->slots[i] && s_expired(p->slots[i], now)) {
                s_delete_slot(ns, p, i); /* slot i may now hold a shifted record */
                reclaimed++;
            } else
                i++;
        }
    }
    ns->expired += reclaimed;
    return reclaimed;
}

static kv_rec_t *s_make(int i, uint32_t void_time)
{
    kv_key_t k = {.type = KV_KEY_INT, .i = i};
    kv_rec_t *r = store_rec_alloc(4);
    kv_digest("s", 1, &k, r->digest);
    r->set_len = 1;
    r->data[0] = 's';
    r->bins_len = 3;
    r->void_time = void_time;
    r->gen = 1;
    return r;
}

void store_test(bool verbose)
{
    (void) verbose;
    kv_ns_config_t cfg = {.name = "t", .max_record_size = 1 << 20, .memory_limit = 1 << 30, .max_bins = 16};
    char why[256];
    kv_ns_t *ns = store_ns_new(&cfg, NULL, why, sizeof why);
    assert(ns);
    const int N = 20000;
    for (int i = 0; i < N; i++)
        assert(store_put(ns, s_make(i, i % 2 ? 100 : 0)) == 0);
    assert(ns->records == (uint64_t) N);
    uint64_t mem = ns->memory_used;
    assert(mem >= (uint64_t) N * (sizeof(kv_rec_t) + 4));
    /* replacing keeps the count and the accounting */
    kv_rec_t *r = s_make(8, 0);
    uint8_t d8[KV_DIGEST_SIZE];
    memcpy(d8, r->digest, sizeof d8);
    assert(store_put(ns, r) == 0 && ns->records == (uint64_t) N && ns->memory_used == mem);
    assert(store_get(ns, d8, 50) == r);
    /* every record is found, and a missing one is not */
    for (int i = 0; i < N; i++) {
        kv_rec_t *m = s_make(i, 0);
        assert(store_get(ns, m->digest, 50) != NULL);
        free(m);
    }
    kv_rec_t *missing = s_make(N + 1, 0);
    /* prefetching (a hint) reads only what exists: a present, a missing
     * and an empty-partition digest, and more than it takes */
    uint8_t pf[65][KV_DIGEST_SIZE] = {{0}};
    memcpy(pf[0], d8, KV_DIGEST_SIZE);
    memcpy(pf[1], missing->digest, KV_DIGEST_SIZE);
    kv_ns_t *empty = store_ns_new(&cfg, NULL, why, sizeof why);
    assert(empty);
    store_prefetch(empty, pf, 2);
    store_prefetch(ns, pf, 2);
    store_prefetch(ns, pf, 65);
    store_ns_destroy(&empty);
    assert(store_get(ns, missing->digest, 50) == NULL);
    assert(store_remove(ns, missing->digest, 1, 1) == 0);
    free(missing);
    /* scan of every partition sees each live record exactly once, in order */
    kv_rec_t **buf = malloc(N * sizeof *buf);
    uint64_t seen = 0;
    for (uint32_t p = 0; p < KV_PARTITIONS; p++) {
        uint8_t after[KV_DIGEST_SIZE];
        bool have = false;
        uint32_t n;
        bool more = true;
        while (more && (n = store_scan_partition(ns, p, have ? after : NULL, 50, false, buf, 2, &more)) > 0) {
            assert(kv_partition(buf[0]->digest) == p);
            if (n == 2)
                assert(memcmp(buf[0]->digest, buf[1]->digest, KV_DIGEST_SIZE) < 0);
            memcpy(after, buf[n - 1]->digest, KV_DIGEST_SIZE);
            have = true;
            seen += n;
        }
    }
    assert(seen == (uint64_t) N);
    /* at time 101 the odd records (void time 100) are expired: invisible to
     * scans, then swept; at 100 they still live through their last second */
    kv_rec_t *odd = s_make(1, 100);
    assert(store_get(ns, odd->digest, 100) != NULL);
    seen = 0;
    for (uint32_t p = 0; p < KV_PARTITIONS; p++) {
        bool more;
        seen += store_scan_partition(ns, p, NULL, 101, false, buf, N, &more);
        assert(!more);
    }
    assert(seen == (uint64_t) N / 2);
    uint32_t swept = 0;
    for (int k = 0; k < 4; k++)
        swept += store_sweep(ns, 101, KV_PARTITIONS / 4);
    assert(swept == (uint32_t) N / 2 && ns->records == (uint64_t) N / 2);
    assert(store_get(ns, odd->digest, 101) == NULL);
    free(odd);
    /* after backward-shift deletions every even record is still reachable */
    for (int i = 0; i < N; i += 2) {
        kv_rec_t *m = s_make(i, 0);
        assert(store_get(ns, m->digest, 101) != NULL);
        assert(store_remove(ns, m->digest, 1, 1) == 1);
        free(m);
    }
    assert(ns->records == 0 && ns->memory_used == 0);
    /* one partition past 65536 slots, where a slot's home no longer fits
     * in its tag: 60000 records of partition 0, half deleted, the rest
     * still found */
    enum { BIG = 60000 };
    for (uint32_t i = 0; i < BIG; i++) {
        kv_rec_t *big = store_rec_alloc(4);
        memset(big->digest, 0, KV_DIGEST_SIZE);
        memcpy(big->digest + 4, &i, sizeof i);
        big->bins_len = 3;
        big->gen = 1;
        assert(kv_partition(big->digest) == 0 && store_put(ns, big) == 0);
    }
    assert(ns->parts[0].cap > 65536 && ns->records == BIG);
    uint8_t dg[KV_DIGEST_SIZE] = {0};
    for (uint32_t i = 0; i < BIG; i += 2) {
        memcpy(dg + 4, &i, sizeof i);
        assert(store_remove(ns, dg, 1, 1) == 1);
    }
    for (uint32_t i = 0; i < BIG; i++) {
        memcpy(dg + 4, &i, sizeof i);
        assert((store_get(ns, dg, 101) != NULL) == (i % 2 == 1));
    }
    free(buf);
    store_ns_destroy(&ns);
    assert(ns == NULL);
}
