/* kv_ptable: the partition table, its rendezvous rows and its MessagePack form. */
#include "kv_ptable.h"
#include "kv_proto.h"
#include <assert.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The SipHash key of the weights: 14 characters and 2 NUL bytes.  Part of
 * the protocol: changing it moves every partition. */
static const char s_key[] = "kvstore ptable\0\0";
_Static_assert(sizeof s_key - 1 == crypto_shorthash_KEYBYTES, "ptable key is 16 bytes");

/* Weight of node id for partition pid. */
static uint64_t s_weight(uint64_t id, uint16_t pid)
{
    uint8_t msg[10], h[crypto_shorthash_BYTES];
    kv_put64(msg, id);
    kv_put16(msg + 8, pid);
    crypto_shorthash(h, msg, sizeof msg, (const uint8_t *) s_key);
    return kv_get64(h);
}

/* True if (wa, ida) ranks before (wb, idb): higher weight first, then smaller id. */
static bool s_before(uint64_t wa, uint64_t ida, uint64_t wb, uint64_t idb)
{
    return wa != wb ? wa > wb : ida < idb;
}

/* Member states, as bits of a mask. */
#define M(s) (1u << (s))
#define ROW_STATES (M(KV_PN_RANKED) | M(KV_PN_LEAVING))
#define REF_STATES (M(KV_PN_RANKED) | M(KV_PN_LEAVING) | M(KV_PN_GONE) | M(KV_PN_BACK))
#define TARGET_STATES (M(KV_PN_RANKED) | M(KV_PN_FILLING) | M(KV_PN_BACK))

const char *kv_pnstate_name(int state)
{
    static const char *const names[] = {"ranked", "filling", "gone", "back", "leaving"};
    return state >= 0 && state < KV_PN_STATES_ ? names[state] : "?";
}

/* Members whose state is in mask. */
static int s_count(const kv_ptable_t *t, unsigned mask)
{
    int n = 0;
    for (int i = 0; i < t->n; i++)
        n += (mask >> t->nodes[i].state) & 1;
    return n;
}

/* The best k (1 <= k <= members in mask) node indexes for pid among the
 * members whose state is in mask into out, best first: an insertion into
 * a sorted list of k, so each node is hashed once. */
static void s_top(const kv_ptable_t *t, uint16_t pid, unsigned mask, int *out, int k)
{
    uint64_t w[KV_NODES_MAX]; /* weights of out[0..m) */
    int m = 0;
    assert(k >= 1 && k <= t->n && t->n <= KV_NODES_MAX);
    for (int i = 0; i < t->n; i++) {
        if (!((mask >> t->nodes[i].state) & 1))
            continue;
        uint64_t wi = s_weight(t->nodes[i].id, pid), id = t->nodes[i].id;
        if (m == k && !s_before(wi, id, w[m - 1], t->nodes[out[m - 1]].id))
            continue;
        int j = m < k ? m++ : m - 1; /* a full list drops its last */
        for (; j > 0 && s_before(wi, id, w[j - 1], t->nodes[out[j - 1]].id); j--) {
            w[j] = w[j - 1];
            out[j] = out[j - 1];
        }
        w[j] = wi;
        out[j] = i;
    }
}

/* Index of the first node whose id is not below id (n if none). */
static int s_lower(const kv_ptable_t *t, uint64_t id)
{
    int lo = 0, hi = t->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (t->nodes[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void kv_ptable_init(kv_ptable_t *t)
{
    memset(t, 0, sizeof *t);
}

int kv_ptable_add(kv_ptable_t *t, uint64_t id, const char *endpoint)
{
    size_t len = endpoint ? strnlen(endpoint, KV_ENDPOINT_MAX + 1) : 0;
    if (t->n >= KV_NODES_MAX || id == 0 || len == 0 || len > KV_ENDPOINT_MAX)
        return -1;
    int i = s_lower(t, id);
    if (i < t->n && t->nodes[i].id == id)
        return -1;
    memmove(&t->nodes[i + 1], &t->nodes[i], (size_t) (t->n - i) * sizeof t->nodes[0]);
    t->nodes[i].id = id;
    memcpy(t->nodes[i].endpoint, endpoint, len);
    t->nodes[i].endpoint[len] = '\0';
    t->nodes[i].state = KV_PN_RANKED; /* not the state of the node that moved up */
    t->n++;
    return 0;
}

int kv_ptable_remove(kv_ptable_t *t, uint64_t id)
{
    int i = kv_ptable_find(t, id);
    if (i < 0)
        return -1;
    memmove(&t->nodes[i], &t->nodes[i + 1], (size_t) (t->n - i - 1) * sizeof t->nodes[0]);
    t->n--;
    return 0;
}

int kv_ptable_find(const kv_ptable_t *t, uint64_t id)
{
    int i = s_lower(t, id);
    return i < t->n && t->nodes[i].id == id ? i : -1;
}

/* The first min(members in mask, max) of pid's ranking among the members
 * in mask, into out; returns the count. */
static int s_top_of(const kv_ptable_t *t, uint16_t pid, unsigned mask, int *out, int max)
{
    int have = s_count(t, mask), k = have < max ? have : max;
    if (k <= 0)
        return 0;
    s_top(t, pid, mask, out, k);
    return k;
}

int kv_ptable_row(const kv_ptable_t *t, uint16_t pid, int *out, int max)
{
    return s_top_of(t, pid, ROW_STATES, out, max);
}

void kv_ptable_copies(const kv_ptable_t *t, uint16_t pid, int rf, kv_pcopies_t *c)
{
    int ref[KV_RF_MAX], target[KV_RF_MAX];
    assert(rf >= 1 && rf <= KV_RF_MAX);
    int nref = s_top_of(t, pid, REF_STATES, ref, rf), ntarget = s_top_of(t, pid, TARGET_STATES, target, rf);
    c->n = 0;
    c->master = -1;
    c->lost = false;
    if (s_top_of(t, pid, ROW_STATES, &c->master, 1) == 0)
        c->master = -1;
    for (int k = 0; k < nref; k++)
        if (kv_pn_full(t->nodes[ref[k]].state)) {
            c->nodes[c->n] = ref[k];
            c->full[c->n] = true;
            c->target[c->n++] = false;
        }
    /* no full copy in the reference (more than rf-1 lost): the master is
     * still one, if any member holds full data */
    c->lost = c->n == 0;
    if (c->n == 0 && c->master >= 0) {
        c->nodes[c->n] = c->master;
        c->full[c->n] = true;
        c->target[c->n++] = false;
    }
    for (int k = 0; k < ntarget; k++) {
        int j = 0;
        while (j < c->n && c->nodes[j] != target[k])
            j++;
        if (j == c->n) {
            c->nodes[c->n] = target[k];
            c->full[c->n++] = false;
        }
        c->target[j] = true;
    }
}

bool kv_ptable_settled(const kv_ptable_t *t)
{
    return s_count(t, M(KV_PN_RANKED)) == t->n;
}

void kv_ptable_rows(const kv_ptable_t *t, uint8_t rows[][KV_RF_MAX])
{
    int ranked = s_count(t, ROW_STATES), k = ranked < KV_RF_MAX ? ranked : KV_RF_MAX, top[KV_RF_MAX];
    for (int p = 0; p < KV_PARTITIONS; p++) {
        memset(rows[p], UINT8_MAX, KV_RF_MAX);
        if (k > 0)
            s_top(t, (uint16_t) p, ROW_STATES, top, k);
        for (int j = 0; j < k; j++)
            rows[p][j] = (uint8_t) top[j];
    }
}

bool kv_ptable_same(const kv_ptable_t *a, const kv_ptable_t *b)
{
    if (a->cluster != b->cluster || a->version != b->version || a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++)
        if (a->nodes[i].id != b->nodes[i].id || strcmp(a->nodes[i].endpoint, b->nodes[i].endpoint) != 0 ||
            a->nodes[i].state != b->nodes[i].state)
            return false;
    return true;
}

uint64_t kv_ptable_hash(const kv_ptable_t *t)
{
    /* crypto_generichash allows no output shorter than 16 bytes: take 8 of 16 */
    crypto_generichash_state st;
    uint8_t b[16], out[crypto_generichash_BYTES_MIN];
    crypto_generichash_init(&st, NULL, 0, sizeof out);
    kv_put64(b, t->cluster);
    kv_put32(b + 8, t->version);
    /* the top bit of n says the members' states follow the nodes, a byte
     * each (absent when all are ranked) */
    bool states = !kv_ptable_settled(t);
    kv_put32(b + 12, (uint32_t) t->n | (states ? 0x80000000u : 0));
    crypto_generichash_update(&st, b, 16);
    for (int i = 0; i < t->n; i++) {
        size_t len = strnlen(t->nodes[i].endpoint, KV_ENDPOINT_MAX);
        kv_put64(b, t->nodes[i].id);
        b[8] = (uint8_t) len;
        crypto_generichash_update(&st, b, 9);
        crypto_generichash_update(&st, (const uint8_t *) t->nodes[i].endpoint, len);
    }
    for (int i = 0; states && i < t->n; i++)
        crypto_generichash_update(&st, &t->nodes[i].state, 1);
    crypto_generichash_final(&st, out, sizeof out);
    return kv_get64(out);
}

static int s_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) != 0 || msgpack_pack_str_body(pk, s, n) != 0 ? -1 : 0;
}

int kv_ptable_pack(const kv_ptable_t *t, msgpack_packer *pk)
{
    if (t->n < 0 || t->n > KV_NODES_MAX)
        return -1;
    if (msgpack_pack_map(pk, 3) != 0 || s_pack_str(pk, "cluster") != 0 || msgpack_pack_uint64(pk, t->cluster) != 0
        || s_pack_str(pk, "version") != 0 || msgpack_pack_uint32(pk, t->version) != 0 || s_pack_str(pk, "nodes") != 0
        || msgpack_pack_array(pk, (size_t) t->n) != 0)
        return -1;
    for (int i = 0; i < t->n; i++)
        if (msgpack_pack_array(pk, t->nodes[i].state ? 3 : 2) != 0 || msgpack_pack_uint64(pk, t->nodes[i].id) != 0
            || s_pack_str(pk, t->nodes[i].endpoint) != 0
            || (t->nodes[i].state && msgpack_pack_uint8(pk, t->nodes[i].state) != 0))
            return -1;
    return 0;
}

/* Write a reason into why and return -1. */
__attribute__((format(printf, 3, 4))) static int s_fail(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Why a read of a `want` value at r failed (the cursor is where the value
 * starts): the buffer ends in it, or the value is another type. */
static const char *s_why(const kv_mp_t *r, kv_mp_type_t want, const char *other)
{
    return kv_mp_eof(r) || kv_mp_type(r) == want ? "is truncated" : other;
}

/* Read a non-negative integer in any encoding, including uint64 above
 * INT64_MAX (which kv_mp_read_int refuses); 0, or -1 with the cursor not
 * moved and *err saying why. */
static int s_read_uint(kv_mp_t *r, uint64_t *v, const char **err)
{
    const uint8_t *start = r->p;
    int64_t i;
    if (kv_mp_type(r) == KV_MP_INT && r->p[0] == 0xcf) {
        if (r->end - r->p < 9) {
            *err = "is truncated";
            return -1;
        }
        *v = 0;
        for (int k = 1; k <= 8; k++)
            *v = *v << 8 | r->p[k];
        r->p += 9;
        return 0;
    }
    if (kv_mp_read_int(r, &i) != 0) {
        *err = s_why(r, KV_MP_INT, "is not an unsigned integer");
        return -1;
    }
    if (i < 0) {
        r->p = start;
        *err = "is negative";
        return -1;
    }
    *v = (uint64_t) i;
    return 0;
}

/* Read the nodes array into t (which is empty); 0 or -1 with why. */
static int s_read_nodes(kv_mp_t *r, kv_ptable_t *t, char *why, size_t whylen)
{
    uint32_t count, two, len;
    const char *err, *ep;
    uint64_t id;
    if (kv_mp_read_array(r, &count) != 0)
        return s_fail(why, whylen, "table: 'nodes' %s", s_why(r, KV_MP_ARRAY, "is not an array"));
    if (count > KV_NODES_MAX)
        return s_fail(why, whylen, "table: %" PRIu32 " nodes, limit is %d", count, KV_NODES_MAX);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t no = i + 1; /* 1-based in messages */
        if (kv_mp_read_array(r, &two) != 0)
            return s_fail(why, whylen, "table: node %" PRIu32 " %s", no,
                          s_why(r, KV_MP_ARRAY, "is not an [id, endpoint] array"));
        if (two != 2 && two != 3)
            return s_fail(why, whylen,
                          "table: node %" PRIu32 " is an array of %" PRIu32 ", not [id, endpoint] or [id, endpoint, state]",
                          no, two);
        if (s_read_uint(r, &id, &err) != 0)
            return s_fail(why, whylen, "table: node %" PRIu32 ": id %s", no, err);
        if (id == 0)
            return s_fail(why, whylen, "table: node %" PRIu32 ": id is 0", no);
        if (i > 0 && id == t->nodes[i - 1].id)
            return s_fail(why, whylen, "table: node %" PRIu32 ": duplicate id %" PRIu64, no, id);
        if (i > 0 && id < t->nodes[i - 1].id)
            return s_fail(why, whylen,
                          "table: node %" PRIu32 ": id %" PRIu64 " after %" PRIu64 ": ids must be ascending", no, id,
                          t->nodes[i - 1].id);
        if (kv_mp_read_str(r, &ep, &len) != 0)
            return s_fail(why, whylen, "table: node %" PRIu32 ": endpoint %s", no,
                          s_why(r, KV_MP_STR, "is not a string"));
        if (len == 0)
            return s_fail(why, whylen, "table: node %" PRIu32 ": endpoint is empty", no);
        if (len > KV_ENDPOINT_MAX)
            return s_fail(why, whylen, "table: node %" PRIu32 ": endpoint longer than %d bytes (%" PRIu32 ")", no,
                          KV_ENDPOINT_MAX, len);
        if (memchr(ep, '\0', len))
            return s_fail(why, whylen, "table: node %" PRIu32 ": endpoint contains a NUL byte", no);
        bool filling = false;
        int64_t state = KV_PN_RANKED;
        if (two == 3 && kv_mp_read_bool(r, &filling) == 0)
            state = filling ? KV_PN_FILLING : KV_PN_RANKED;
        else if (two == 3 && kv_mp_read_int(r, &state) != 0)
            return s_fail(why, whylen, "table: node %" PRIu32 ": state %s", no,
                          s_why(r, KV_MP_INT, "is not an integer or a boolean"));
        if (state < 0 || state >= KV_PN_STATES_)
            return s_fail(why, whylen, "table: node %" PRIu32 ": state %" PRId64 " is not 0 to %d", no, state,
                          KV_PN_STATES_ - 1);
        t->nodes[i].id = id;
        memcpy(t->nodes[i].endpoint, ep, len);
        t->nodes[i].endpoint[len] = '\0';
        t->nodes[i].state = (uint8_t) state;
        t->n = (int) no;
    }
    return 0;
}

int kv_ptable_unpack(kv_ptable_t *t, kv_mp_t *v, char *why, size_t whylen)
{
    static const char *const keys[] = {"cluster", "version", "nodes"};
    bool seen[3] = {false, false, false};
    kv_ptable_t nt; /* filled, then copied to t only if valid */
    kv_mp_t r = *v;
    uint64_t cluster = 0, version = 0;
    uint32_t count, klen;
    const char *key, *err;
    kv_ptable_init(&nt);
    if (kv_mp_read_map(&r, &count) != 0)
        return s_fail(why, whylen, "table %s", s_why(&r, KV_MP_MAP, "is not a map"));
    for (uint32_t k = 0; k < count; k++) {
        if (kv_mp_read_str(&r, &key, &klen) != 0)
            return s_fail(why, whylen, "table: key %" PRIu32 " %s", k + 1, s_why(&r, KV_MP_STR, "is not a string"));
        int f = 0;
        while (f < 3 && !(strlen(keys[f]) == klen && memcmp(keys[f], key, klen) == 0))
            f++;
        if (f == 3) { /* unknown: skipped, but it must still be well formed */
            if (kv_mp_skip(&r) != 0)
                return s_fail(why, whylen, "table: key %" PRIu32 " (unknown): value is malformed or truncated", k + 1);
            continue;
        }
        if (seen[f])
            return s_fail(why, whylen, "table: key '%s' given twice", keys[f]);
        seen[f] = true;
        if (f == 0 && s_read_uint(&r, &cluster, &err) != 0)
            return s_fail(why, whylen, "table: 'cluster' %s", err);
        if (f == 1 && s_read_uint(&r, &version, &err) != 0)
            return s_fail(why, whylen, "table: 'version' %s", err);
        if (f == 1 && version > UINT32_MAX)
            return s_fail(why, whylen, "table: version %" PRIu64 " does not fit in 32 bits", version);
        if (f == 2 && s_read_nodes(&r, &nt, why, whylen) != 0)
            return -1;
    }
    for (int f = 0; f < 3; f++)
        if (!seen[f])
            return s_fail(why, whylen, "table: missing key '%s'", keys[f]);
    if (cluster == 0 && version >= 1)
        return s_fail(why, whylen, "table: cluster is 0 but version is %" PRIu64 " (a versioned table needs a cluster)",
                      version);
    nt.cluster = cluster;
    nt.version = (uint32_t) version;
    *t = nt;
    *v = r;
    return 0;
}

/* ---- self-test ---- */

static int s_unpack_copy(kv_ptable_t *t, const void *buf, size_t len, char *why, size_t whylen);

/* Index in c of node index i, or -1. */
static int s_in_copies(const kv_pcopies_t *c, int i)
{
    for (int k = 0; k < c->n; k++)
        if (c->nodes[k] == i)
            return k;
    return -1;
}

/* Copies while members change state: the reference keeps the places of
 * gone and back members, so the full copies are the ones that held the
 * data; the target is where it goes; every state round-trips. */
static void s_copies_test(msgpack_packer *pk, msgpack_sbuffer *sb)
{
    kv_ptable_t t, s, u;
    char why[200];
    kv_ptable_init(&t);
    t.cluster = 9;
    t.version = 3;
    for (uint64_t id = 1; id <= 4; id++)
        assert(kv_ptable_add(&t, id * 77, "tcp://127.0.0.1:1") == 0);
    assert(kv_ptable_settled(&t));
    s = t; /* settled: copies = the first rf of the row, all full */
    int moved = 0, lost = 0;
    for (int p = 0; p < KV_PARTITIONS; p++) {
        kv_pcopies_t c;
        int row[KV_RF_MAX];
        kv_ptable_copies(&t, (uint16_t) p, 2, &c);
        assert(kv_ptable_row(&t, (uint16_t) p, row, 2) == 2 && c.n == 2 && c.master == row[0]);
        assert(c.nodes[0] == row[0] && c.nodes[1] == row[1] && c.full[0] && c.full[1] && c.target[0] && c.target[1]);
    }
    /* node 0 leaving, 1 gone, 3 back, and a new one filling */
    u = t;
    u.nodes[0].state = KV_PN_LEAVING;
    u.nodes[1].state = KV_PN_GONE;
    u.nodes[3].state = KV_PN_BACK;
    assert(kv_ptable_add(&u, 1000, "tcp://127.0.0.1:2") == 0);
    u.nodes[kv_ptable_find(&u, 1000)].state = KV_PN_FILLING;
    assert(!kv_ptable_settled(&u));
    for (int p = 0; p < KV_PARTITIONS; p++) {
        kv_pcopies_t c;
        kv_ptable_copies(&u, (uint16_t) p, 2, &c);
        int nfull = 0;
        for (int k = 0; k < c.n; k++) {
            int st = u.nodes[c.nodes[k]].state;
            assert(!c.full[k] || kv_pn_full(st)); /* a ranked entrant is not full yet */
            assert(st != KV_PN_GONE); /* the dead get nothing */
            assert(!c.target[k] || kv_pn_target(st));
            nfull += c.full[k];
        }
        /* the full copies are the ranked and leaving members of the
         * settled table's first two (in the reference, gone and back
         * members keep their places; the filling one has none) */
        kv_pcopies_t was;
        kv_ptable_copies(&s, (uint16_t) p, 2, &was);
        int held = 0;
        for (int k = 0; k < was.n; k++) {
            int at = kv_ptable_find(&u, s.nodes[was.nodes[k]].id);
            if (at >= 0 && kv_pn_full(u.nodes[at].state)) {
                held++;
                assert(s_in_copies(&c, at) >= 0);
            }
        }
        assert(c.lost == (held == 0));
        if (held == 0)
            lost++; /* then the master is the only full copy */
        assert(nfull == (held ? held : 1));
        assert(c.master >= 0 && c.full[s_in_copies(&c, c.master)]);
        moved += c.n > nfull;
        /* two target members, neither of them gone */
        int ntarget = 0;
        for (int k = 0; k < c.n; k++)
            ntarget += c.target[k];
        assert(ntarget == 2);
    }
    assert(moved > 0);
    assert(lost > 0); /* partitions whose two copies were nodes 1 (gone) and 3 (back) */
    msgpack_sbuffer_clear(sb);
    assert(kv_ptable_pack(&u, pk) == 0);
    assert(s_unpack_copy(&t, sb->data, sb->size, why, sizeof why) == 0 && kv_ptable_same(&t, &u));
    assert(kv_ptable_hash(&t) == kv_ptable_hash(&u));
    t.nodes[0].state = KV_PN_BACK;
    assert(kv_ptable_hash(&t) != kv_ptable_hash(&u));
}

static uint64_t s_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The invariants of the struct, which a decoded table must satisfy. */
static bool s_valid(const kv_ptable_t *t)
{
    if (t->n < 0 || t->n > KV_NODES_MAX || (t->version >= 1 && t->cluster == 0))
        return false;
    for (int i = 0; i < t->n; i++) {
        size_t len = strnlen(t->nodes[i].endpoint, KV_ENDPOINT_MAX + 1);
        if (t->nodes[i].id == 0 || (i > 0 && t->nodes[i].id <= t->nodes[i - 1].id) || len == 0 || len > KV_ENDPOINT_MAX)
            return false;
    }
    return true;
}

/* Unpack len bytes from a heap copy of exactly that size (so the sanitizer
 * sees any over-read). */
static int s_unpack_copy(kv_ptable_t *t, const void *buf, size_t len, char *why, size_t whylen)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert(copy);
    if (len)
        memcpy(copy, buf, len);
    kv_mp_t r = kv_mp(copy, len);
    int rc = kv_ptable_unpack(t, &r, why, whylen);
    assert(rc == 0 ? r.p > copy && r.p <= copy + len : r.p == copy); /* past the table, or not moved */
    free(copy);
    return rc;
}

/* Rows of small and big, where big is small plus node (the same nodes
 * otherwise): every row of big with node taken out is the start of the row
 * of small, so the top k changes only where node enters it, and a master
 * changes only to node.  Returns how many partitions changed their top k. */
static int s_check_moves(const kv_ptable_t *small, const kv_ptable_t *big, uint64_t node, int k)
{
    static uint8_t rs[KV_PARTITIONS][KV_RF_MAX], rb[KV_PARTITIONS][KV_RF_MAX];
    int ks = small->n < KV_RF_MAX ? small->n : KV_RF_MAX, kb = big->n < KV_RF_MAX ? big->n : KV_RF_MAX, moved = 0;
    assert(big->n == small->n + 1 && kv_ptable_find(small, node) < 0 && kv_ptable_find(big, node) >= 0);
    assert(k <= ks);
    kv_ptable_rows(small, rs);
    kv_ptable_rows(big, rb);
    for (int p = 0; p < KV_PARTITIONS; p++) {
        int j = 0;
        for (int b = 0; b < kb; b++)
            if (big->nodes[rb[p][b]].id != node) {
                assert(j < ks && big->nodes[rb[p][b]].id == small->nodes[rs[p][j]].id);
                j++;
            }
        bool in = false, same = true;
        for (int b = 0; b < k; b++) {
            in |= big->nodes[rb[p][b]].id == node;
            same &= big->nodes[rb[p][b]].id == small->nodes[rs[p][b]].id;
        }
        assert(in != same); /* the top k changed exactly where node is in it */
        assert(big->nodes[rb[p][0]].id == small->nodes[rs[p][0]].id || big->nodes[rb[p][0]].id == node);
        moved += !same;
    }
    return moved;
}

/* Encodings of a table for the tests: V_OK and V_EXTRA are valid, each of
 * the others is spoiled in one place. */
enum {
    V_OK,
    V_EXTRA,
    V_NOT_MAP,
    V_NO_CLUSTER,
    V_NO_VERSION,
    V_NO_NODES,
    V_CLUSTER_STR,
    V_VERSION_NEG,
    V_VERSION_BIG,
    V_NODES_MAP,
    V_NODE_STR,
    V_NODE_THREE,
    V_ID_STR,
    V_ID_ZERO,
    V_ID_DUP,
    V_ID_DOWN,
    V_EP_INT,
    V_EP_EMPTY,
    V_EP_LONG,
    V_EP_NUL,
    V_TOO_MANY,
    V_CLUSTER_ZERO,
    V_DUP_KEY,
    V_INT_KEY,
    V_BAD_EXTRA
};

static void s_pack_variant(msgpack_packer *pk, int v)
{
    if (v == V_NOT_MAP) {
        msgpack_pack_array(pk, 0);
        return;
    }
    msgpack_pack_map(pk, 3u - (v == V_NO_CLUSTER) - (v == V_NO_VERSION) - (v == V_NO_NODES) + (v == V_EXTRA)
                             + (v == V_DUP_KEY) + (v == V_INT_KEY) + (v == V_BAD_EXTRA));
    if (v == V_EXTRA) { /* unknown keys are skipped, whatever their value */
        kv_mp_pack_cstr(pk, "zone");
        msgpack_pack_array(pk, 2);
        msgpack_pack_map(pk, 0);
        kv_mp_pack_cstr(pk, "x");
    }
    if (v == V_INT_KEY) {
        msgpack_pack_int(pk, 1);
        msgpack_pack_nil(pk);
    }
    if (v == V_BAD_EXTRA) { /* an unknown key whose value is an ext type */
        kv_mp_pack_cstr(pk, "zone");
        msgpack_pack_ext(pk, 1, 1);
        msgpack_pack_ext_body(pk, "x", 1);
    }
    if (v != V_NO_CLUSTER) {
        kv_mp_pack_cstr(pk, "cluster");
        if (v == V_CLUSTER_STR)
            kv_mp_pack_cstr(pk, "7");
        else
            msgpack_pack_uint64(pk, v == V_CLUSTER_ZERO ? 0 : 7);
    }
    if (v != V_NO_VERSION) {
        kv_mp_pack_cstr(pk, "version");
        if (v == V_VERSION_NEG)
            msgpack_pack_int(pk, -1);
        else
            msgpack_pack_uint64(pk, v == V_VERSION_BIG ? 1ull << 32 : 3);
    }
    if (v == V_DUP_KEY) {
        kv_mp_pack_cstr(pk, "version");
        msgpack_pack_uint64(pk, 4);
    }
    if (v == V_NO_NODES)
        return;
    kv_mp_pack_cstr(pk, "nodes");
    if (v == V_NODES_MAP) {
        msgpack_pack_map(pk, 0);
        return;
    }
    int n = v == V_TOO_MANY ? KV_NODES_MAX + 1 : 3;
    msgpack_pack_array(pk, (size_t) n);
    for (int i = 0; i < n; i++) {
        bool spoil = i == 1; /* the second node carries the fault */
        if (spoil && v == V_NODE_STR) {
            kv_mp_pack_cstr(pk, "node");
            continue;
        }
        msgpack_pack_array(pk, spoil && v == V_NODE_THREE ? 3 : 2);
        if (spoil && v == V_ID_STR)
            kv_mp_pack_cstr(pk, "20");
        else
            msgpack_pack_uint64(pk, !spoil           ? 10u * (uint64_t) (i + 1)
                                    : v == V_ID_ZERO ? 0
                                    : v == V_ID_DUP  ? 10
                                    : v == V_ID_DOWN ? 5
                                                     : 20);
        if (spoil && v == V_EP_INT)
            msgpack_pack_int(pk, 1);
        else if (spoil && v == V_EP_EMPTY)
            kv_mp_pack_cstr(pk, "");
        else if (spoil && v == V_EP_LONG) {
            char ep[KV_ENDPOINT_MAX + 1];
            memset(ep, 'x', sizeof ep);
            kv_mp_pack_strn(pk, ep, sizeof ep);
        } else if (spoil && v == V_EP_NUL)
            kv_mp_pack_strn(pk, "a\0b", 3);
        else
            kv_mp_pack_cstr(pk, "tcp://10.0.0.1:7700");
        if (spoil && v == V_NODE_THREE)
            msgpack_pack_nil(pk);
    }
}

void kv_ptable_test(bool verbose)
{
    assert(sodium_init() >= 0);
    static kv_ptable_t t, u, w; /* static: 17 KB each */
    static uint8_t rows[KV_PARTITIONS][KV_RF_MAX], rows2[KV_PARTITIONS][KV_RF_MAX];
    char ep[KV_ENDPOINT_MAX + 2], why[160];
    int out[KV_NODES_MAX];

    /* add, remove, find: sorted, unique, and every refusal */
    kv_ptable_init(&t);
    assert(t.n == 0 && t.version == 0 && t.cluster == 0);
    assert(kv_ptable_find(&t, 1) == -1 && kv_ptable_remove(&t, 1) == -1);
    assert(kv_ptable_add(&t, 30, "tcp://c:1") == 0);
    assert(kv_ptable_add(&t, 10, "tcp://a:1") == 0);
    assert(kv_ptable_add(&t, 20, "tcp://b:1") == 0);
    assert(kv_ptable_add(&t, UINT64_MAX, "tcp://z:1") == 0);
    assert(t.n == 4 && t.nodes[0].id == 10 && t.nodes[1].id == 20 && t.nodes[2].id == 30);
    assert(t.nodes[3].id == UINT64_MAX && strcmp(t.nodes[1].endpoint, "tcp://b:1") == 0);
    assert(kv_ptable_find(&t, 10) == 0 && kv_ptable_find(&t, 30) == 2 && kv_ptable_find(&t, UINT64_MAX) == 3);
    assert(kv_ptable_find(&t, 15) == -1 && kv_ptable_find(&t, 0) == -1 && kv_ptable_find(&t, 31) == -1);
    assert(kv_ptable_add(&t, 20, "tcp://dup:1") == -1);
    assert(kv_ptable_add(&t, 0, "tcp://zero:1") == -1);
    assert(kv_ptable_add(&t, 5, "") == -1 && kv_ptable_add(&t, 5, NULL) == -1);
    memset(ep, 'e', sizeof ep);
    ep[KV_ENDPOINT_MAX + 1] = '\0'; /* 256 bytes */
    assert(kv_ptable_add(&t, 5, ep) == -1);
    ep[KV_ENDPOINT_MAX] = '\0'; /* 255 bytes: the limit */
    assert(kv_ptable_add(&t, 5, ep) == 0 && strlen(t.nodes[0].endpoint) == KV_ENDPOINT_MAX);
    assert(t.n == 5 && strcmp(t.nodes[2].endpoint, "tcp://b:1") == 0);
    assert(kv_ptable_remove(&t, 20) == 0 && kv_ptable_remove(&t, 20) == -1 && kv_ptable_find(&t, 20) == -1);
    assert(kv_ptable_remove(&t, 5) == 0 && kv_ptable_remove(&t, UINT64_MAX) == 0);
    assert(t.n == 2 && t.nodes[0].id == 10 && t.nodes[1].id == 30 && strcmp(t.nodes[1].endpoint, "tcp://c:1") == 0);
    kv_ptable_init(&t);
    for (int i = 0; i < KV_NODES_MAX; i++)
        assert(kv_ptable_add(&t, 1000 - 7 * (uint64_t) i, "tcp://n:1") == 0);
    assert(kv_ptable_add(&t, 1, "tcp://full:1") == -1 && t.n == KV_NODES_MAX);
    for (int i = 1; i < t.n; i++)
        assert(t.nodes[i - 1].id < t.nodes[i].id);

    /* known answers (computed independently with a Python SipHash-2-4 and
     * hashlib.blake2b): the weights are part of the protocol */
    assert(s_weight(1, 0) == 0x9b28a090035b76b6ull);
    assert(s_weight(UINT64_MAX, 4095) == 0x57d8b23da5d28666ull);
    assert(s_before(6, 9, 5, 1) && !s_before(5, 1, 6, 9));
    assert(s_before(5, 1, 5, 2) && !s_before(5, 2, 5, 1)); /* equal weights: smaller id first */
    kv_ptable_init(&t);
    for (uint64_t id = 10; id <= 50; id += 10)
        assert(kv_ptable_add(&t, id, "tcp://n:1") == 0);
    static const struct {
        uint16_t pid;
        int row[5];
    } known[] = {{0, {4, 2, 1, 3, 0}}, {1, {0, 2, 1, 3, 4}}, {2, {1, 4, 0, 2, 3}}, {4095, {3, 1, 2, 0, 4}}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        assert(kv_ptable_row(&t, known[i].pid, out, KV_NODES_MAX) == 5);
        assert(memcmp(out, known[i].row, sizeof known[i].row) == 0);
    }
    kv_ptable_init(&t);
    t.cluster = 0x1234;
    t.version = 7;
    assert(kv_ptable_add(&t, 2, "tcp://10.0.0.2:7700") == 0 && kv_ptable_add(&t, 1, "tcp://10.0.0.1:7700") == 0);
    assert(kv_ptable_hash(&t) == 0x722a893237925619ull);
    kv_ptable_init(&u);
    assert(kv_ptable_hash(&u) == 0x61e9728ad5e13b46ull);

    /* the hash and kv_ptable_same see every field */
    u = t;
    assert(kv_ptable_same(&t, &u) && kv_ptable_hash(&t) == kv_ptable_hash(&u));
    u.cluster++;
    assert(!kv_ptable_same(&t, &u) && kv_ptable_hash(&t) != kv_ptable_hash(&u));
    u = t;
    u.version++;
    assert(!kv_ptable_same(&t, &u) && kv_ptable_hash(&t) != kv_ptable_hash(&u));
    u = t;
    u.nodes[1].endpoint[6] = 'X';
    assert(!kv_ptable_same(&t, &u) && kv_ptable_hash(&t) != kv_ptable_hash(&u));
    u = t;
    u.nodes[1].id = 3;
    assert(!kv_ptable_same(&t, &u) && kv_ptable_hash(&t) != kv_ptable_hash(&u));
    u = t;
    assert(kv_ptable_remove(&u, 2) == 0);
    assert(!kv_ptable_same(&t, &u) && kv_ptable_hash(&t) != kv_ptable_hash(&u));

    /* rows depend on the set of nodes only: another insertion order (with a
     * node added and removed on the way) gives the same rows */
    uint64_t ids[10];
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 10; i++)
        ids[i] = s_rand(&seed);
    kv_ptable_init(&t);
    kv_ptable_init(&u);
    for (int i = 0; i < 10; i++) {
        snprintf(ep, sizeof ep, "tcp://10.0.0.%d:7700", i);
        assert(kv_ptable_add(&t, ids[i], ep) == 0);
    }
    assert(kv_ptable_add(&u, 77, "tcp://gone:1") == 0);
    for (int i = 9; i >= 0; i--) {
        int k = (i * 7) % 10;
        snprintf(ep, sizeof ep, "tcp://10.0.0.%d:7700", k);
        assert(kv_ptable_add(&u, ids[k], ep) == 0);
    }
    assert(kv_ptable_remove(&u, 77) == 0);
    assert(kv_ptable_same(&t, &u) && kv_ptable_hash(&t) == kv_ptable_hash(&u));
    kv_ptable_rows(&t, rows);
    kv_ptable_rows(&u, rows2);
    assert(memcmp(rows, rows2, sizeof rows) == 0);

    /* kv_ptable_rows agrees with kv_ptable_row, for every partition and
     * sizes below, at and above KV_RF_MAX; a full row is a permutation */
    static const int sizes[] = {0, 1, 2, 5, 8, 9, KV_NODES_MAX};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int n = sizes[s], k = n < KV_RF_MAX ? n : KV_RF_MAX;
        kv_ptable_init(&t);
        for (int i = 0; i < n; i++)
            assert(kv_ptable_add(&t, s_rand(&seed) | 1, "tcp://n:1") == 0);
        kv_ptable_rows(&t, rows);
        for (int p = 0; p < KV_PARTITIONS; p++) {
            uint64_t seen = 0;
            assert(kv_ptable_row(&t, (uint16_t) p, out, KV_NODES_MAX) == n);
            for (int j = 0; j < n; j++) {
                assert(out[j] >= 0 && out[j] < n && !(seen >> out[j] & 1));
                seen |= 1ull << out[j];
                assert(j >= k || rows[p][j] == out[j]);
            }
            for (int j = k; j < KV_RF_MAX; j++)
                assert(rows[p][j] == UINT8_MAX);
            int one;
            assert(kv_ptable_row(&t, (uint16_t) p, &one, 1) == (n > 0) && (n == 0 || one == out[0]));
        }
        assert(kv_ptable_row(&t, 0, out, 0) == 0 && kv_ptable_row(&t, 0, out, -1) == 0);
    }

    /* balance: with 3 nodes each masters about a third and holds about two
     * thirds of the copies at RF 2 (bounds are more than 5 sigma wide) */
    for (int trial = 0; trial < 4; trial++) {
        int masters[3] = {0, 0, 0}, top2[3] = {0, 0, 0};
        kv_ptable_init(&t);
        for (int i = 0; i < 3; i++)
            assert(kv_ptable_add(&t, trial == 0 ? (uint64_t) i + 1 : s_rand(&seed), "tcp://n:1") == 0);
        kv_ptable_rows(&t, rows);
        for (int p = 0; p < KV_PARTITIONS; p++) {
            masters[rows[p][0]]++;
            top2[rows[p][0]]++;
            top2[rows[p][1]]++;
        }
        for (int i = 0; i < 3; i++) {
            if (verbose)
                printf("# balance %d: node %d masters %d, in top 2 of %d\n", trial, i, masters[i], top2[i]);
            assert(masters[i] >= 1200 && masters[i] <= 1530);
            assert(top2[i] >= 2500 && top2[i] <= 2960);
        }
    }

    /* minimal movement: a 4th node takes partitions only where it enters
     * the top 2 and takes about a quarter of the masters; removing a node
     * moves only partitions where it was in the top 2 */
    kv_ptable_init(&t);
    for (uint64_t id = 1; id <= 3; id++)
        assert(kv_ptable_add(&t, id, "tcp://n:1") == 0);
    u = t;
    assert(kv_ptable_add(&u, 4, "tcp://new:1") == 0);
    int moved = s_check_moves(&t, &u, 4, 2);
    kv_ptable_rows(&u, rows);
    int masters4 = 0;
    for (int p = 0; p < KV_PARTITIONS; p++)
        masters4 += rows[p][0] == kv_ptable_find(&u, 4);
    assert(masters4 >= 850 && masters4 <= 1200);
    w = u;
    assert(kv_ptable_remove(&w, 2) == 0);
    int moved2 = s_check_moves(&w, &u, 2, 2);
    if (verbose)
        printf("# 3 -> 4 nodes: top 2 changed in %d partitions, new node masters %d; removing node 2 of 4 changed %d\n",
               moved, masters4, moved2);
    /* the same at RF 8 in a cluster of 12 */
    kv_ptable_init(&t);
    for (int i = 0; i < 12; i++)
        assert(kv_ptable_add(&t, s_rand(&seed), "tcp://n:1") == 0);
    u = t;
    assert(kv_ptable_add(&u, 42, "tcp://new:1") == 0);
    moved = s_check_moves(&t, &u, 42, KV_RF_MAX);
    if (verbose)
        printf("# 12 -> 13 nodes: top %d changed in %d partitions\n", KV_RF_MAX, moved);

    /* pack and unpack: round trip, including a full table with the longest
     * endpoints and an id above INT64_MAX */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    kv_ptable_init(&t);
    t.cluster = UINT64_MAX - 1;
    t.version = UINT32_MAX;
    memset(ep, 'e', KV_ENDPOINT_MAX);
    ep[KV_ENDPOINT_MAX] = '\0';
    for (int i = 0; i < KV_NODES_MAX; i++)
        assert(kv_ptable_add(&t, i == 0 ? UINT64_MAX : (uint64_t) i * 1000003, ep) == 0);
    assert(kv_ptable_pack(&t, &pk) == 0);
    kv_ptable_init(&u);
    assert(s_unpack_copy(&u, sb.data, sb.size, why, sizeof why) == 0);
    assert(kv_ptable_same(&t, &u) && kv_ptable_hash(&t) == kv_ptable_hash(&u));
    /* a packer that runs out of room makes pack fail */
    static uint8_t fix[32 * 1024];
    for (size_t cap = 0; cap < sb.size; cap += 1 + cap / 4) {
        kv_fixbuf_t fb = {fix, 0, cap};
        msgpack_packer fpk;
        msgpack_packer_init(&fpk, &fb, kv_fixbuf_write);
        assert(kv_ptable_pack(&t, &fpk) == -1);
    }
    t.n = KV_NODES_MAX + 1;
    assert(kv_ptable_pack(&t, &pk) == -1);
    /* the empty table, and a table followed by more values (the cursor
     * moves past the table only) */
    msgpack_sbuffer_clear(&sb);
    kv_ptable_init(&t);
    assert(kv_ptable_pack(&t, &pk) == 0);
    assert(s_unpack_copy(&u, sb.data, sb.size, why, sizeof why) == 0 && kv_ptable_same(&t, &u));
    msgpack_sbuffer_clear(&sb);
    t.cluster = 9;
    t.version = 1;
    assert(kv_ptable_add(&t, 1, "tcp://a:1") == 0 && kv_ptable_add(&t, 2, "tcp://b:1") == 0);
    assert(kv_ptable_pack(&t, &pk) == 0);
    size_t tsize = sb.size;
    msgpack_pack_nil(&pk);
    kv_mp_t cur = kv_mp(sb.data, sb.size);
    assert(kv_ptable_unpack(&u, &cur, why, sizeof why) == 0 && kv_ptable_same(&t, &u));
    assert(cur.p == (const uint8_t *) sb.data + tsize && kv_mp_read_nil(&cur) == 0 && kv_mp_eof(&cur));
    /* why may be NULL when whylen is 0 */
    cur = kv_mp("\xc0", 1);
    assert(kv_ptable_unpack(&u, &cur, NULL, 0) == -1);

    /* every refusal names what and where; a refused table leaves t alone */
    static const struct {
        int v;
        const char *why;
    } bad[] = {
        {V_NOT_MAP, "table is not a map"},
        {V_NO_CLUSTER, "table: missing key 'cluster'"},
        {V_NO_VERSION, "table: missing key 'version'"},
        {V_NO_NODES, "table: missing key 'nodes'"},
        {V_CLUSTER_STR, "table: 'cluster' is not an unsigned integer"},
        {V_VERSION_NEG, "table: 'version' is negative"},
        {V_VERSION_BIG, "table: version 4294967296 does not fit in 32 bits"},
        {V_NODES_MAP, "table: 'nodes' is not an array"},
        {V_NODE_STR, "table: node 2 is not an [id, endpoint] array"},
        {V_NODE_THREE, "table: node 2: state is not an integer or a boolean"},
        {V_ID_STR, "table: node 2: id is not an unsigned integer"},
        {V_ID_ZERO, "table: node 2: id is 0"},
        {V_ID_DUP, "table: node 2: duplicate id 10"},
        {V_ID_DOWN, "table: node 2: id 5 after 10: ids must be ascending"},
        {V_EP_INT, "table: node 2: endpoint is not a string"},
        {V_EP_EMPTY, "table: node 2: endpoint is empty"},
        {V_EP_LONG, "table: node 2: endpoint longer than 255 bytes (256)"},
        {V_EP_NUL, "table: node 2: endpoint contains a NUL byte"},
        {V_TOO_MANY, "table: 65 nodes, limit is 64"},
        {V_CLUSTER_ZERO, "table: cluster is 0 but version is 3"},
        {V_DUP_KEY, "table: key 'version' given twice"},
        {V_INT_KEY, "table: key 1 is not a string"},
        {V_BAD_EXTRA, "table: key 1 (unknown): value is malformed or truncated"},
    };
    kv_ptable_init(&w);
    w.cluster = 5;
    w.version = 2;
    assert(kv_ptable_add(&w, 99, "tcp://sentinel:1") == 0);
    for (int v = V_OK; v <= V_EXTRA; v++) {
        msgpack_sbuffer_clear(&sb);
        s_pack_variant(&pk, v);
        assert(s_unpack_copy(&u, sb.data, sb.size, why, sizeof why) == 0);
        assert(u.cluster == 7 && u.version == 3 && u.n == 3 && u.nodes[2].id == 30 && s_valid(&u));
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        msgpack_sbuffer_clear(&sb);
        s_pack_variant(&pk, bad[i].v);
        u = w;
        why[0] = '\0';
        int rc = s_unpack_copy(&u, sb.data, sb.size, why, sizeof why);
        if (verbose)
            printf("# refused: %s\n", why);
        assert(rc == -1 && strstr(why, bad[i].why) && kv_ptable_same(&u, &w));
    }

    /* the cluster id is needed from version 1 on */
    kv_ptable_init(&t);
    t.version = 1;
    msgpack_sbuffer_clear(&sb);
    assert(kv_ptable_pack(&t, &pk) == 0);
    assert(s_unpack_copy(&u, sb.data, sb.size, why, sizeof why) == -1 && strstr(why, "cluster is 0 but version is 1"));

    /* truncation: every proper prefix of a valid table is refused (as
     * truncated where the cut falls inside a value) */
    msgpack_sbuffer_clear(&sb);
    s_pack_variant(&pk, V_EXTRA);
    assert(s_unpack_copy(&u, sb.data, sb.size, why, sizeof why) == 0);
    for (size_t len = 0; len < sb.size; len++) {
        u = w;
        assert(s_unpack_copy(&u, sb.data, len, why, sizeof why) == -1 && why[0] && kv_ptable_same(&u, &w));
    }
    assert(s_unpack_copy(&u, sb.data, 0, why, sizeof why) == -1 && strstr(why, "table is truncated"));
    assert(s_unpack_copy(&u, sb.data, sb.size - 3, why, sizeof why) == -1
           && strstr(why, "table: node 3: endpoint is truncated"));

    /* garbage: random bytes, random bytes after a map header, and valid
     * tables with a few bytes changed give -1 or a valid table, never a
     * crash or an over-read (run under SANITIZE=address,undefined) */
    uint8_t base[256], junk[256];
    size_t base_len = sb.size;
    assert(base_len <= sizeof base);
    memcpy(base, sb.data, base_len);
    int accepted = 0, refused = 0;
    for (int i = 0; i < 1500; i++) {
        size_t len;
        if (i < 500) {
            len = s_rand(&seed) % 64;
            for (size_t j = 0; j < len; j++)
                junk[j] = (uint8_t) s_rand(&seed);
            if (i % 2 && len > 0)
                junk[0] = 0x83; /* a map of 3 */
        } else {
            len = base_len;
            memcpy(junk, base, len);
            for (int f = 1 + (int) (s_rand(&seed) % 3); f > 0; f--)
                junk[s_rand(&seed) % len] = (uint8_t) s_rand(&seed);
        }
        u = w;
        why[0] = '\0';
        if (s_unpack_copy(&u, junk, len, why, sizeof why) == 0) {
            msgpack_sbuffer_clear(&sb);
            assert(s_valid(&u) && kv_ptable_pack(&u, &pk) == 0);
            assert(s_unpack_copy(&t, sb.data, sb.size, why, sizeof why) == 0 && kv_ptable_same(&t, &u));
            accepted++;
        } else {
            assert(why[0] && kv_ptable_same(&u, &w));
            refused++;
        }
    }
    if (verbose)
        printf("# garbage: %d accepted as valid tables, %d refused\n", accepted, refused);
    /* a filling member is in no row; the others keep their order */
    kv_ptable_init(&t);
    t.cluster = 7;
    t.version = 2;
    for (uint64_t id = 1; id <= 4; id++)
        assert(kv_ptable_add(&t, id * 1000, "tcp://127.0.0.1:1") == 0);
    u = t;
    u.nodes[2].state = KV_PN_FILLING;
    assert(!kv_ptable_same(&t, &u) && kv_ptable_hash(&t) != kv_ptable_hash(&u));
    w = u;
    kv_ptable_remove(&w, u.nodes[2].id); /* the same rows as without it */
    for (int p = 0; p < KV_PARTITIONS; p++) {
        int a[KV_RF_MAX], b[KV_RF_MAX];
        int na = kv_ptable_row(&u, (uint16_t) p, a, KV_RF_MAX), nb = kv_ptable_row(&w, (uint16_t) p, b, KV_RF_MAX);
        assert(na == 3 && nb == 3);
        for (int k = 0; k < 3; k++)
            assert(u.nodes[a[k]].id == w.nodes[b[k]].id && u.nodes[a[k]].state == KV_PN_RANKED);
    }
    static uint8_t frows[KV_PARTITIONS][KV_RF_MAX];
    kv_ptable_rows(&u, frows);
    for (int p = 0; p < KV_PARTITIONS; p++)
        assert(frows[p][0] != 2 && frows[p][1] != 2 && frows[p][2] != 2 && frows[p][3] == UINT8_MAX);
    msgpack_sbuffer_clear(&sb);
    assert(kv_ptable_pack(&u, &pk) == 0);
    assert(s_unpack_copy(&w, sb.data, sb.size, why, sizeof why) == 0 && kv_ptable_same(&w, &u) && w.nodes[2].state == KV_PN_FILLING);
    /* adding a node before a filling one: the new one is not filling, the
     * other still is */
    kv_ptable_init(&w);
    assert(kv_ptable_add(&w, 500, "tcp://127.0.0.1:2") == 0);
    w.nodes[0].state = KV_PN_FILLING;
    assert(kv_ptable_add(&w, 100, "tcp://127.0.0.1:3") == 0);
    assert(w.nodes[0].id == 100 && w.nodes[0].state == KV_PN_RANKED && w.nodes[1].id == 500 &&
           w.nodes[1].state == KV_PN_FILLING);
    /* all filling: no rows at all */
    for (int i = 0; i < u.n; i++)
        u.nodes[i].state = KV_PN_FILLING;
    int none[KV_RF_MAX];
    assert(kv_ptable_row(&u, 0, none, KV_RF_MAX) == 0);
    s_copies_test(&pk, &sb);
    msgpack_sbuffer_destroy(&sb);
    fflush(stdout);
}
