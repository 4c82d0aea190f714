/* ops: kvnode's operations, one function per op code (the table is in
 * server.c): reads, writes with their policies, operate, batch, scan,
 * info.  Each returns a status; on success it has packed the reply body,
 * on failure srv_fail has set the reason. */
#include "request.h"
#include "disk.h"
#include "replica.h"
#include "cluster.h"
#include "kv_digest.h"
#include "kv_err.h"
#include "kv_mp.h"
#include "kv_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_REPLY_MAX (8u << 20)  /* stop filling a batch reply past this */
#define SCAN_REPLY_MAX (1u << 20)   /* and a scan page past this */

static uint32_t s_void_time(const kv_ns_t *ns, int64_t ttl, const kv_rec_t *old, uint32_t now)
{
    if (ttl == -1)
        return 0;
    if (ttl == -2 && old)
        return old->void_time;
    if (ttl > 0)
        return now + (uint32_t) ttl;
    return ns->cfg.default_ttl ? now + (uint32_t) ns->cfg.default_ttl : 0;
}

static int64_t s_ttl_left(const kv_rec_t *rec, uint32_t now)
{
    if (!rec->void_time)
        return -1;
    /* in its last second a live record still has 1 left, never 0 (which an
     * import would read as "the namespace default") */
    return rec->void_time > now ? (int64_t) rec->void_time - now : 1;
}

/* The node's clock: the wall clock, never going back.  Not one tick per
 * write: past 1000 writes a second that would run ahead of the wall clock
 * for good (seconds a minute under load); a write's time is made later
 * than the copy it replaces instead (s_lut_after). */
static uint64_t s_lut(server_t *s)
{
    if (s->now_ms > s->last_lut)
        s->last_lut = s->now_ms;
    return s->last_lut;
}

/* The last-update time of a write that replaces old (may be NULL): later
 * than this node's clock and than old's own, which another node's clock
 * may have given it (a failover to a node whose clock is behind). */
static uint64_t s_lut_after(server_t *s, const kv_rec_t *old)
{
    uint64_t lut = s_lut(s);
    if (old && lut <= old->lut)
        lut = s->last_lut = old->lut + 1;
    return lut;
}

/* ttl, exists, gen and genpol of a write; checks generation against old. */
typedef struct {
    int64_t ttl, exists, gen, genpol;
} wpolicy_t;

static int s_write_policy(server_t *s, req_t *r, wpolicy_t *p)
{
    if (srv_int_field(s, r, F_TTL, -2, KV_TTL_MAX, 0, &p->ttl) != 0
        || srv_int_field(s, r, F_EXISTS, KV_EXISTS_UPDATE, KV_EXISTS_REPLACE_ONLY, KV_EXISTS_UPDATE, &p->exists) != 0
        || srv_int_field(s, r, F_GEN, 0, UINT32_MAX, 0, &p->gen) != 0
        || srv_int_field(s, r, F_GENPOL, KV_GEN_NONE, KV_GEN_GT, KV_GEN_NONE, &p->genpol) != 0)
        return KV_ERR_BAD_REQUEST;
    return KV_OK;
}

/* A missing record has generation 0. */
static int s_check_gen(server_t *s, const wpolicy_t *p, const kv_rec_t *old)
{
    uint32_t cur = old ? old->gen : 0;
    if (p->genpol == KV_GEN_EQ && cur != (uint32_t) p->gen)
        return srv_fail(s, KV_ERR_GENERATION, "generation is %u, expected %lld", cur, (long long) p->gen);
    if (p->genpol == KV_GEN_GT && (uint32_t) p->gen <= cur)
        return srv_fail(s, KV_ERR_GENERATION, "generation is %u, %lld is not greater", cur, (long long) p->gen);
    return KV_OK;
}

/* Without a key the set cannot be checked against the digest, so a write
 * to an existing record must name the record's own set. */
static int s_check_set(server_t *s, const req_t *r, const kv_rec_t *old)
{
    if (old && !r->key_checked && (old->set_len != r->set_len || memcmp(rec_set(old), r->set, r->set_len) != 0))
        return srv_fail(s, KV_ERR_BAD_REQUEST, "set '%.*s' does not match the record's set '%.*s'", (int) r->set_len,
                        r->set, (int) old->set_len, rec_set(old));
    return KV_OK;
}

/* Build a record from bins (copying them); checks size and memory limits.
 * The caller installs it with s_install_record, after it no longer needs
 * pointers into the old record (store_put frees it). */
static int s_build_record(server_t *s, req_t *r, const kv_rec_t *old, const kv_bin_t *bins, uint32_t n,
                          uint32_t void_time, kv_rec_t **out)
{
    kv_ns_t *ns = r->ns;
    if (n > ns->cfg.max_bins)
        return srv_fail(s, KV_ERR_TOO_MANY_BINS, "record would have %u bins, limit is %u", n, ns->cfg.max_bins);
    uint64_t bins_len = kv_bins_size(bins, n);
    const uint8_t *key = r->key;
    uint32_t key_len = r->key_len;
    int key_type = r->key_type;
    if (key_type == KV_KEY_NONE && old) { /* keep a key stored earlier */
        key = rec_key(old);
        key_len = old->key_len;
        key_type = old->key_type;
    }
    uint64_t size = sizeof(kv_rec_t) + r->set_len + key_len + bins_len;
    if (size > ns->cfg.max_record_size)
        return srv_fail(s, KV_ERR_TOO_BIG, "record is %llu bytes, limit is %llu", (unsigned long long) size,
                      (unsigned long long) ns->cfg.max_record_size);
    uint32_t data_len = r->set_len + key_len + (uint32_t) bins_len;
    /* records in memory count against its limit; a file namespace's limit
     * is its index's, which the engine checks */
    uint64_t cost = store_rec_cost(data_len), old_cost = old ? store_rec_cost(rec_data_len(old)) : 0;
    if (!ns->disk && ns->memory_used - old_cost + cost > ns->cfg.memory_limit)
        return srv_fail(s, KV_ERR_NS_FULL, "namespace '%s' is at its memory limit (%llu of %llu bytes used)",
                      ns->cfg.name, (unsigned long long) ns->memory_used,
                      (unsigned long long) ns->cfg.memory_limit);
    kv_rec_t *rec = store_rec_alloc(data_len);
    if (!rec)
        return srv_fail(s, KV_ERR_NS_FULL, "out of memory");
    memcpy(rec->digest, r->h->digest, KV_DIGEST_SIZE);
    rec->gen = old ? (old->gen == UINT32_MAX ? 1 : old->gen + 1) : 1;
    rec->void_time = void_time;
    rec->lut = s_lut_after(s, old);
    rec->set_len = (uint8_t) r->set_len;
    rec->key_type = (uint8_t) key_type;
    rec->key_len = (uint16_t) key_len;
    rec->bins_len = (uint32_t) bins_len;
    rec->nbins = (uint16_t) n;
    if (r->set_len)
        memcpy(rec->data, r->set, r->set_len);
    if (key_len)
        memcpy(rec->data + r->set_len, key, key_len);
    kv_bins_write(rec->data + r->set_len + key_len, bins, n);
    *out = rec;
    return KV_OK;
}

/* The live record r addresses, or NULL if there is none; SERVER if it is
 * stored but damaged (a file namespace). */
static int s_fetch(server_t *s, req_t *r, kv_rec_t **rec)
{
    *rec = store_get(r->ns, r->h->digest, r->now);
    if (!*rec && r->ns->read_error)
        return srv_fail(s, KV_ERR_SERVER, "%s", r->ns->why);
    return KV_OK;
}

/* A failed store write: NAMESPACE_FULL, or SERVER after an I/O error. */
static int s_store_fail(server_t *s, const req_t *r)
{
    return srv_fail(s, r->ns->why_code ? r->ns->why_code : KV_ERR_NS_FULL, "%s", r->ns->why);
}

static int s_install_record(server_t *s, req_t *r, kv_rec_t *rec)
{
    if (store_put(r->ns, rec) != 0) {
        free(rec);
        return s_store_fail(s, r);
    }
    replica_send(s, r->ns, rec, rec->digest, 0, 0, false);
    return KV_OK;
}

/* Delete the live record old (a file namespace keeps a tombstone one
 * generation newer). */
static int s_delete_record(server_t *s, req_t *r, const kv_rec_t *old)
{
    uint32_t gen = old->gen == UINT32_MAX ? 1 : old->gen + 1;
    uint64_t lut = s_lut_after(s, old);
    if (store_remove(r->ns, r->h->digest, gen, lut) < 0)
        return s_store_fail(s, r);
    replica_send(s, r->ns, NULL, r->h->digest, gen, lut, false);
    return KV_OK;
}

/* Split a stored record's bins.  Stored bins were validated when written,
 * so failure means corruption: answer SERVER rather than treat the record
 * as having no bins (which a merge would then write back). */
static int s_stored_bins(server_t *s, const kv_rec_t *rec, kv_bin_t *out, uint32_t *n)
{
    char why[256];
    if (kv_bins_parse(rec_bins(rec), rec->bins_len, out, s->max_bins, n, why, sizeof why) != KV_OK) {
        *n = 0;
        return srv_fail(s, KV_ERR_SERVER, "stored record is damaged: %s", why);
    }
    return KV_OK;
}

static void s_pack_meta(msgpack_packer *pk, const kv_rec_t *rec, uint32_t now)
{
    kv_mp_pack_cstr(pk, "gen");
    msgpack_pack_uint32(pk, rec->gen);
    kv_mp_pack_cstr(pk, "ttl");
    msgpack_pack_int64(pk, s_ttl_left(rec, now));
}

/* Pack a record map.  names (a MessagePack array of bin names, may be
 * NULL) filters the bins.  extra fields (e.g. status) are packed by the
 * caller right after, so it passes how many it adds. */
static void s_pack_record(server_t *s, msgpack_packer *pk, const kv_rec_t *rec, uint32_t now,
                          const kv_mp_t *names, bool nobins, bool digest, uint32_t extra)
{
    uint32_t n = 3 + (rec->set_len ? 1 : 0) + (rec->key_type ? 1 : 0) + (nobins ? 0 : 1) + (digest ? 1 : 0) + extra;
    msgpack_pack_map(pk, n);
    s_pack_meta(pk, rec, now);
    kv_mp_pack_cstr(pk, "lut");
    msgpack_pack_uint64(pk, rec->lut);
    if (rec->set_len) {
        kv_mp_pack_cstr(pk, "set");
        kv_mp_pack_strn(pk, rec_set(rec), rec->set_len);
    }
    if (rec->key_type) {
        kv_mp_pack_cstr(pk, "key");
        if (rec->key_type == KV_KEY_INT)
            msgpack_pack_int64(pk, (int64_t) kv_get64(rec_key(rec)));
        else if (rec->key_type == KV_KEY_STRING)
            kv_mp_pack_strn(pk, (const char *) rec_key(rec), rec->key_len);
        else {
            msgpack_pack_bin(pk, rec->key_len);
            msgpack_pack_bin_body(pk, rec_key(rec), rec->key_len);
        }
    }
    if (digest) {
        kv_mp_pack_cstr(pk, "digest");
        msgpack_pack_bin(pk, KV_DIGEST_SIZE);
        msgpack_pack_bin_body(pk, rec->digest, KV_DIGEST_SIZE);
    }
    if (nobins)
        return;
    kv_mp_pack_cstr(pk, "bins");
    if (!names) {
        pk->callback(pk->data, (const char *) rec_bins(rec), rec->bins_len);
        return;
    }
    uint32_t nb;
    s_stored_bins(s, rec, s->bins_old, &nb); /* a damaged record shows no bins */
    kv_mp_t it = *names;
    uint32_t want, found = 0;
    kv_mp_read_array(&it, &want);
    for (uint32_t i = 0; i < want; i++) {
        const char *name;
        uint32_t len;
        kv_mp_read_str(&it, &name, &len);
        int j = kv_bins_find(s->bins_old, nb, name, len);
        if (j >= 0 && kv_bins_find(s->bins_out, found, name, len) < 0)
            s->bins_out[found++] = s->bins_old[j];
        if (found == s->max_bins)
            break;
    }
    kv_bins_pack(pk, s->bins_out, found);
}

/* Optional "bins" field: an array of bin names.  *names set if present. */
static int s_bin_names(server_t *s, req_t *r, kv_mp_t *names, bool *have)
{
    kv_mp_t v;
    *have = false;
    if (srv_field(r, F_BINS, &v) != 0)
        return KV_OK;
    *names = v;
    uint32_t n;
    if (kv_mp_read_array(&v, &n) != 0)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'bins' must be an array of bin names");
    for (uint32_t i = 0; i < n; i++) {
        const char *name;
        uint32_t len;
        if (kv_mp_read_str(&v, &name, &len) != 0)
            return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'bins': entry %u is not a string", i + 1);
        if (len > KV_BIN_NAME_MAX)
            return srv_fail(s, KV_ERR_BIN_NAME, "bin name '%.*s' is %u bytes, limit is %d", (int) len, name, len,
                          KV_BIN_NAME_MAX);
    }
    *have = true;
    return KV_OK;
}

static bool s_bool_field(req_t *r, field_t f)
{
    kv_mp_t v;
    bool b = false;
    if (srv_field(r, f, &v) == 0)
        kv_mp_read_bool(&v, &b);
    return b;
}

/* ---- operations ------------------------------------------------------- */

int op_ping(server_t *s, req_t *r)
{
    (void) r;
    msgpack_pack_map(&s->pk, 0);
    return KV_OK;
}

int op_get(server_t *s, req_t *r)
{
    kv_mp_t names;
    bool have;
    int rc = s_bin_names(s, r, &names, &have);
    if (rc != KV_OK)
        return rc;
    kv_rec_t *rec;
    if ((rc = s_fetch(s, r, &rec)) != KV_OK)
        return rc;
    if (!rec)
        return srv_fail(s, KV_ERR_NOT_FOUND, "not found");
    s_pack_record(s, &s->pk, rec, r->now, have ? &names : NULL, false, false, 0);
    return KV_OK;
}

int op_exists(server_t *s, req_t *r)
{
    kv_rec_t *rec;
    int rc = s_fetch(s, r, &rec);
    if (rc != KV_OK)
        return rc;
    if (!rec)
        return srv_fail(s, KV_ERR_NOT_FOUND, "not found");
    msgpack_pack_map(&s->pk, 2);
    s_pack_meta(&s->pk, rec, r->now);
    return KV_OK;
}

/* Drop bins whose value is nil (a nil write deletes the bin). */
static uint32_t s_drop_nils(kv_bin_t *bins, uint32_t n)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!(bins[i].val_len == 1 && bins[i].val[0] == 0xc0))
            bins[k++] = bins[i];
    return k;
}

int op_put(server_t *s, req_t *r)
{
    wpolicy_t p;
    int rc = s_write_policy(s, r, &p);
    if (rc != KV_OK)
        return rc;
    if (!r->field[F_BINS])
        return srv_fail(s, KV_ERR_BAD_REQUEST, "missing bins (field 'bins')");
    uint32_t nnew;
    rc = kv_bins_parse(r->field[F_BINS], (size_t) (r->field_end[F_BINS] - r->field[F_BINS]), s->bins_new, r->ns->cfg.max_bins, &nnew, s->why,
                       sizeof s->why);
    if (rc != KV_OK)
        return rc;
    kv_rec_t *old;
    if ((rc = s_fetch(s, r, &old)) != KV_OK || (rc = s_check_set(s, r, old)) != KV_OK)
        return rc;
    if (old && p.exists == KV_EXISTS_CREATE_ONLY)
        return srv_fail(s, KV_ERR_EXISTS, "record exists");
    if (!old && (p.exists == KV_EXISTS_UPDATE_ONLY || p.exists == KV_EXISTS_REPLACE_ONLY))
        return srv_fail(s, KV_ERR_NOT_FOUND, "not found");
    if ((rc = s_check_gen(s, &p, old)) != KV_OK)
        return rc;
    uint32_t n = 0;
    bool merge = old && (p.exists == KV_EXISTS_UPDATE || p.exists == KV_EXISTS_UPDATE_ONLY);
    if (merge) {
        if ((rc = s_stored_bins(s, old, s->bins_out, &n)) != KV_OK)
            return rc;
        for (uint32_t i = 0; i < nnew; i++) {
            int j = kv_bins_find(s->bins_out, n, s->bins_new[i].name, s->bins_new[i].name_len);
            if (j >= 0)
                s->bins_out[j] = s->bins_new[i];
            else
                s->bins_out[n++] = s->bins_new[i];
        }
    } else {
        memcpy(s->bins_out, s->bins_new, nnew * sizeof *s->bins_new);
        n = nnew;
    }
    n = s_drop_nils(s->bins_out, n);
    if (n == 0) {
        if (!old)
            return srv_fail(s, KV_ERR_BAD_REQUEST, "a record needs at least one bin");
        if ((rc = s_delete_record(s, r, old)) != KV_OK) /* every bin deleted: the record goes */
            return rc;
        msgpack_pack_map(&s->pk, 1);
        kv_mp_pack_cstr(&s->pk, "deleted");
        msgpack_pack_true(&s->pk);
        return KV_OK;
    }
    kv_rec_t *rec;
    rc = s_build_record(s, r, old, s->bins_out, n, s_void_time(r->ns, p.ttl, old, r->now), &rec);
    if (rc != KV_OK || (rc = s_install_record(s, r, rec)) != KV_OK)
        return rc;
    msgpack_pack_map(&s->pk, 2);
    s_pack_meta(&s->pk, rec, r->now);
    return KV_OK;
}

/* Write policy of the request and the live record it must find, with its
 * generation checked: the common start of delete and touch. */
static int s_existing_for_write(server_t *s, req_t *r, wpolicy_t *p, kv_rec_t **rec)
{
    int rc = s_write_policy(s, r, p);
    if (rc != KV_OK)
        return rc;
    if ((rc = s_fetch(s, r, rec)) != KV_OK)
        return rc;
    if (!*rec)
        return srv_fail(s, KV_ERR_NOT_FOUND, "not found");
    if ((rc = s_check_set(s, r, *rec)) != KV_OK)
        return rc;
    return s_check_gen(s, p, *rec);
}

int op_delete(server_t *s, req_t *r)
{
    wpolicy_t p;
    kv_rec_t *old;
    int rc = s_existing_for_write(s, r, &p, &old);
    if (rc != KV_OK)
        return rc;
    if ((rc = s_delete_record(s, r, old)) != KV_OK)
        return rc;
    msgpack_pack_map(&s->pk, 0);
    return KV_OK;
}

int op_touch(server_t *s, req_t *r)
{
    wpolicy_t p;
    kv_rec_t *rec;
    int rc = s_existing_for_write(s, r, &p, &rec);
    if (rc != KV_OK)
        return rc;
    rec->void_time = s_void_time(r->ns, p.ttl, rec, r->now);
    rec->gen = rec->gen == UINT32_MAX ? 1 : rec->gen + 1;
    rec->lut = s_lut_after(s, rec);
    if (store_rewrite(r->ns, rec) != 0)
        return s_store_fail(s, r);
    replica_send(s, r->ns, rec, rec->digest, 0, 0, false);
    msgpack_pack_map(&s->pk, 2);
    s_pack_meta(&s->pk, rec, r->now);
    return KV_OK;
}

/* Scratch buffers for values computed by operate (add, append, prepend).
 * Their total is bounded (ARENA_RECORDS times the record size limit), so
 * one request cannot make the node allocate without limit. */
#define ARENA_RECORDS 4
typedef struct {
    uint8_t *bufs[OPERATE_MAX_OPS];
    int n;
    uint64_t bytes, limit;
} arena_t;

static uint8_t *s_arena_alloc(arena_t *a, size_t n)
{
    if (a->bytes + n > a->limit)
        return NULL;
    uint8_t *b = malloc(n ? n : 1);
    if (b) {
        a->bufs[a->n++] = b;
        a->bytes += n;
    }
    return b;
}

static void s_arena_free(arena_t *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->bufs[i]);
    a->n = 0;
}

/* Pack a str or bin header for length n into out (at most 5 bytes); returns its size. */
static size_t s_strhdr(uint8_t *out, bool bin, size_t n)
{
    kv_fixbuf_t f = {out, 0, 5};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f, kv_fixbuf_write);
    if (bin)
        msgpack_pack_bin(&pk, n);
    else
        msgpack_pack_str(&pk, n);
    return f.n;
}

/* One operate step on the working bins w[0..*wn). */
static int s_apply_op(server_t *s, req_t *r, arena_t *a, int code, const char *name, uint32_t nlen,
                      const uint8_t *val, uint32_t vlen, uint32_t *wn, uint32_t wcap)
{
    kv_bin_t *w = s->bins_out;
    int j = name ? kv_bins_find(w, *wn, name, nlen) : -1;
    kv_mp_t in = val ? kv_mp(val, vlen) : kv_mp("", 0); /* delete and touch have no value */
    switch (code) {
    case KV_OPR_WRITE:
        if (vlen == 1 && val[0] == 0xc0) { /* nil deletes */
            if (j >= 0)
                w[j] = w[--*wn];
            return KV_OK;
        }
        break;
    case KV_OPR_DELETE:
        if (j >= 0)
            w[j] = w[--*wn];
        return KV_OK;
    case KV_OPR_ADD: {
        int64_t ai, bi;
        double af, bf;
        uint8_t *out = s_arena_alloc(a, 9);
        if (!out)
            return srv_fail(s, KV_ERR_TOO_BIG, "operate: the values computed by this request are too big");
        kv_fixbuf_t f = {out, 0, 9};
        msgpack_packer pk;
        msgpack_packer_init(&pk, &f, kv_fixbuf_write);
        if (kv_mp_read_int(&in, &ai) == 0) {
            bi = 0;
            if (j >= 0) {
                kv_mp_t cur = kv_mp(w[j].val, w[j].val_len);
                if (kv_mp_read_int(&cur, &bi) != 0)
                    return srv_fail(s, KV_ERR_BIN_TYPE, "add: bin '%.*s' is not an integer", (int) nlen, name);
            }
            if (__builtin_add_overflow(ai, bi, &bi))
                return srv_fail(s, KV_ERR_BAD_REQUEST, "add: integer overflow in bin '%.*s'", (int) nlen, name);
            msgpack_pack_int64(&pk, bi);
        } else if (kv_mp_read_float(&in, &af) == 0) {
            bf = 0;
            if (j >= 0) {
                kv_mp_t cur = kv_mp(w[j].val, w[j].val_len);
                if (kv_mp_read_float(&cur, &bf) != 0)
                    return srv_fail(s, KV_ERR_BIN_TYPE, "add: bin '%.*s' is not a float", (int) nlen, name);
            }
            msgpack_pack_double(&pk, af + bf);
        } else
            return srv_fail(s, KV_ERR_BAD_REQUEST, "add: value must be an integer or a float");
        val = out;
        vlen = (uint32_t) f.n;
        break;
    }
    case KV_OPR_APPEND:
    case KV_OPR_PREPEND: {
        const uint8_t *add, *cur = NULL;
        uint32_t addn, curn = 0;
        bool bin = kv_mp_type(&in) == KV_MP_BIN;
        if ((bin ? kv_mp_read_bin(&in, &add, &addn) : kv_mp_read_str(&in, (const char **) &add, &addn)) != 0)
            return srv_fail(s, KV_ERR_BAD_REQUEST, "%s: value must be a string or bytes",
                          code == KV_OPR_APPEND ? "append" : "prepend");
        if (j >= 0) {
            kv_mp_t c = kv_mp(w[j].val, w[j].val_len);
            if ((bin ? kv_mp_read_bin(&c, &cur, &curn) : kv_mp_read_str(&c, (const char **) &cur, &curn)) != 0)
                return srv_fail(s, KV_ERR_BIN_TYPE, "%s: bin '%.*s' is not %s",
                              code == KV_OPR_APPEND ? "append" : "prepend", (int) nlen, name,
                              bin ? "bytes" : "a string");
        }
        uint64_t total = (uint64_t) curn + addn;
        if (total > r->ns->cfg.max_record_size)
            return srv_fail(s, KV_ERR_TOO_BIG, "bin '%.*s' would be %llu bytes", (int) nlen, name,
                          (unsigned long long) total);
        uint8_t *out = s_arena_alloc(a, total + 5);
        if (!out)
            return srv_fail(s, KV_ERR_TOO_BIG, "operate: the values computed by this request are too big");
        size_t h = s_strhdr(out, bin, total);
        const uint8_t *first = code == KV_OPR_APPEND ? cur : add, *second = code == KV_OPR_APPEND ? add : cur;
        uint32_t fn = code == KV_OPR_APPEND ? curn : addn, sn = code == KV_OPR_APPEND ? addn : curn;
        if (fn)
            memcpy(out + h, first, fn);
        if (sn)
            memcpy(out + h + fn, second, sn);
        val = out;
        vlen = (uint32_t) (h + total);
        break;
    }
    default:
        return KV_OK;
    }
    if (j >= 0) {
        w[j].val = val;
        w[j].val_len = vlen;
    } else {
        if (*wn >= wcap)
            return srv_fail(s, KV_ERR_TOO_MANY_BINS, "record would have more than %u bins", r->ns->cfg.max_bins);
        w[*wn] = (kv_bin_t){name, nlen, val, vlen};
        ++*wn;
    }
    return KV_OK;
}

int op_operate(server_t *s, req_t *r)
{
    wpolicy_t p;
    int rc = s_write_policy(s, r, &p);
    if (rc != KV_OK)
        return rc;
    if (p.exists == KV_EXISTS_REPLACE || p.exists == KV_EXISTS_REPLACE_ONLY)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "operate takes the exists policies update, update-only and create-only");
    kv_mp_t ops;
    uint32_t nops;
    if (srv_field(r, F_OPS, &ops) != 0 || kv_mp_read_array(&ops, &nops) != 0)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "missing ops (field 'ops')");
    if (nops == 0 || nops > OPERATE_MAX_OPS)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "operate needs 1..%d ops, got %u", OPERATE_MAX_OPS, nops);
    /* First pass: validate every op before anything changes. */
    struct {
        int code;
        const char *name;
        uint32_t nlen;
        const uint8_t *val;
        uint32_t vlen;
    } op[OPERATE_MAX_OPS];
    bool writes = false, creates = false;
    for (uint32_t i = 0; i < nops; i++) {
        uint32_t n;
        int64_t code;
        if (kv_mp_read_array(&ops, &n) != 0 || n < 1 || n > 3 || kv_mp_read_int(&ops, &code) != 0
            || code < KV_OPR_READ || code > KV_OPR_TOUCH)
            return srv_fail(s, KV_ERR_BAD_REQUEST, "op %u: expected [code, bin, value] with code 1..7", i + 1);
        op[i].code = (int) code;
        op[i].name = NULL;
        op[i].nlen = 0;
        op[i].val = NULL;
        op[i].vlen = 0;
        bool needs_bin = code != KV_OPR_TOUCH;
        bool needs_val = code == KV_OPR_WRITE || code == KV_OPR_ADD || code == KV_OPR_APPEND || code == KV_OPR_PREPEND;
        if (n != 1 + (unsigned) needs_bin + (unsigned) needs_val)
            return srv_fail(s, KV_ERR_BAD_REQUEST, "op %u: wrong number of arguments", i + 1);
        if (needs_bin) {
            if (kv_mp_read_str(&ops, &op[i].name, &op[i].nlen) != 0 || op[i].nlen == 0)
                return srv_fail(s, KV_ERR_BAD_REQUEST, "op %u: bin name must be a non-empty string", i + 1);
            if (op[i].nlen > KV_BIN_NAME_MAX)
                return srv_fail(s, KV_ERR_BIN_NAME, "bin name '%.*s' is %u bytes, limit is %d", (int) op[i].nlen,
                              op[i].name, op[i].nlen, KV_BIN_NAME_MAX);
            if (memchr(op[i].name, '\0', op[i].nlen))
                return srv_fail(s, KV_ERR_BAD_REQUEST, "op %u: bin name contains a NUL byte", i + 1);
        }
        if (needs_val) {
            op[i].val = ops.p;
            if (kv_mp_skip_value(&ops) != 0)
                return srv_fail(s, KV_ERR_BAD_REQUEST,
                              "op %u: malformed value, or lists and maps nested deeper than %d levels", i + 1,
                              KV_VALUE_MAX_DEPTH);
            op[i].vlen = (uint32_t) (ops.p - op[i].val);
        }
        if (code != KV_OPR_READ)
            writes = true;
        if (needs_val && !(code == KV_OPR_WRITE && op[i].vlen == 1 && op[i].val[0] == 0xc0))
            creates = true;
    }
    kv_rec_t *old;
    if ((rc = s_fetch(s, r, &old)) != KV_OK || (rc = s_check_set(s, r, old)) != KV_OK)
        return rc;
    if (!old && !creates)
        return srv_fail(s, KV_ERR_NOT_FOUND, "not found");
    if (writes) {
        if (old && p.exists == KV_EXISTS_CREATE_ONLY)
            return srv_fail(s, KV_ERR_EXISTS, "record exists");
        if (!old && (p.exists == KV_EXISTS_UPDATE_ONLY || p.exists == KV_EXISTS_REPLACE_ONLY))
            return srv_fail(s, KV_ERR_NOT_FOUND, "not found");
        if ((rc = s_check_gen(s, &p, old)) != KV_OK)
            return rc;
    }
    uint32_t wn = 0, wcap = r->ns->cfg.max_bins;
    if (old && (rc = s_stored_bins(s, old, s->bins_out, &wn)) != KV_OK)
        return rc;
    /* reads remember the value at their point in the sequence */
    kv_bin_t *reads = s->bins_new;
    uint32_t nreads = 0;
    arena_t arena = {.n = 0, .limit = ARENA_RECORDS * r->ns->cfg.max_record_size};
    for (uint32_t i = 0; i < nops; i++) {
        if (op[i].code == KV_OPR_READ) {
            int j = kv_bins_find(s->bins_out, wn, op[i].name, op[i].nlen);
            reads[nreads++] = (kv_bin_t){op[i].name, op[i].nlen, j >= 0 ? s->bins_out[j].val : (const uint8_t *) "\xc0",
                                         j >= 0 ? s->bins_out[j].val_len : 1};
            continue;
        }
        rc = s_apply_op(s, r, &arena, op[i].code, op[i].name, op[i].nlen, op[i].val, op[i].vlen, &wn, wcap);
        if (rc != KV_OK) {
            s_arena_free(&arena);
            return rc;
        }
    }
    /* a later read of the same bin wins */
    uint32_t nr = 0;
    for (uint32_t i = 0; i < nreads; i++) {
        int j = kv_bins_find(reads, nr, reads[i].name, reads[i].name_len);
        if (j >= 0)
            reads[j] = reads[i];
        else
            reads[nr++] = reads[i];
    }
    kv_rec_t *rec = NULL;
    if (writes && wn > 0) {
        rc = s_build_record(s, r, old, s->bins_out, wn, s_void_time(r->ns, p.ttl, old, r->now), &rec);
        if (rc != KV_OK) {
            s_arena_free(&arena);
            return rc;
        }
    }
    /* Pack the reply first: reads may point into the old record, which
     * installing the new one frees. */
    bool deleted = writes && wn == 0;
    const kv_rec_t *meta = rec ? rec : old;
    msgpack_pack_map(&s->pk, deleted ? 2 : 3);
    if (deleted) {
        kv_mp_pack_cstr(&s->pk, "deleted");
        msgpack_pack_true(&s->pk);
    } else
        s_pack_meta(&s->pk, meta, r->now);
    kv_mp_pack_cstr(&s->pk, "bins");
    kv_bins_pack(&s->pk, reads, nr);
    s_arena_free(&arena);
    if (deleted)
        return s_delete_record(s, r, old);
    if (rec)
        return s_install_record(s, r, rec);
    return KV_OK;
}

int op_batch(server_t *s, req_t *r)
{
    kv_mp_t names, keys;
    bool have;
    uint32_t n;
    int rc = s_bin_names(s, r, &names, &have);
    if (rc != KV_OK)
        return rc;
    bool nobins = s_bool_field(r, F_NOBINS);
    if (srv_field(r, F_KEYS, &keys) != 0 || kv_mp_read_array(&keys, &n) != 0)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "missing keys (field 'keys': array of digests)");
    if (n > KV_BATCH_MAX)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "%u keys in one batch, limit is %d", n, KV_BATCH_MAX);
    kv_mp_t check = keys;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *d;
        uint32_t dl;
        if (kv_mp_read_bin(&check, &d, &dl) != 0 || dl != KV_DIGEST_SIZE)
            return srv_fail(s, KV_ERR_BAD_REQUEST, "keys[%u] is not a %d-byte digest", i, KV_DIGEST_SIZE);
    }
    /* Entries go into a separate buffer so the reply can stop early (done
     * < n) when it grows past BATCH_REPLY_MAX; the client asks again for
     * the rest. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint32_t done = 0;
    for (; done < n && (done == 0 || sb.size < BATCH_REPLY_MAX); done++) {
        const uint8_t *d;
        uint32_t dl;
        kv_mp_read_bin(&keys, &d, &dl);
        if (!cluster_serves(s->cluster, kv_partition(d))) { /* in a cluster: its master answers */
            msgpack_pack_map(&pk, 1);
            kv_mp_pack_cstr(&pk, "status");
            msgpack_pack_int(&pk, KV_ERR_WRONG_NODE);
            continue;
        }
        kv_rec_t *rec = store_get(r->ns, d, r->now);
        if (!rec) { /* not found, or damaged (SERVER) */
            msgpack_pack_map(&pk, 1);
            kv_mp_pack_cstr(&pk, "status");
            msgpack_pack_int(&pk, r->ns->read_error ? KV_ERR_SERVER : KV_ERR_NOT_FOUND);
            continue;
        }
        s_pack_record(s, &pk, rec, r->now, have ? &names : NULL, nobins, true, 1);
        kv_mp_pack_cstr(&pk, "status");
        msgpack_pack_int(&pk, KV_OK);
    }
    msgpack_pack_map(&s->pk, 2);
    kv_mp_pack_cstr(&s->pk, "done");
    msgpack_pack_uint32(&s->pk, done);
    kv_mp_pack_cstr(&s->pk, "records");
    msgpack_pack_array(&s->pk, done);
    msgpack_sbuffer_write(&s->out, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return KV_OK;
}

int op_scan(server_t *s, req_t *r)
{
    int64_t pfrom, pto, max;
    kv_mp_t v;
    const uint8_t *after = NULL;
    const char *set = NULL;
    uint32_t set_len = 0, n;
    if (srv_int_field(s, r, F_PFROM, 0, KV_PARTITIONS - 1, 0, &pfrom) != 0
        || srv_int_field(s, r, F_PTO, 1, KV_PARTITIONS, KV_PARTITIONS, &pto) != 0
        || srv_int_field(s, r, F_MAX, 1, KV_SCAN_PAGE_MAX, 1000, &max) != 0)
        return KV_ERR_BAD_REQUEST;
    if (pto <= pfrom)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "empty partition range %lld..%lld", (long long) pfrom, (long long) pto);
    /* raw: metadata for copying records (absolute expiry, tombstones, the
     * clock); any: this node's own copies, whatever its table says */
    bool raw = s_bool_field(r, F_RAW), any = s_bool_field(r, F_ANY);
    int64_t since;
    if (srv_int_field(s, r, F_SINCE, 0, INT64_MAX, 0, &since) != 0)
        return KV_ERR_BAD_REQUEST;
    /* in a cluster, a page covers only partitions this node masters: it
     * starts at one, and stops before the first it does not master,
     * with next = [that partition] for the client to ask its master */
    if (!any && !cluster_serves(s->cluster, (uint16_t) pfrom))
        return srv_fail(s, KV_ERR_WRONG_NODE, "this node is not the master of partition %lld in table version %u",
                        (long long) pfrom, cluster_table(s->cluster)->version);
    if (srv_field(r, F_AFTER, &v) == 0
        && (kv_mp_read_bin(&v, &after, &n) != 0 || n != KV_DIGEST_SIZE))
        return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'after' must be a %d-byte digest", KV_DIGEST_SIZE);
    if (srv_field(r, F_SET, &v) == 0 && kv_mp_read_str(&v, &set, &set_len) != 0)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'set' must be a string");
    bool nobins = s_bool_field(r, F_NOBINS);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint32_t count = 0;
    int64_t pid = pfrom;
    const kv_rec_t *last = NULL;
    bool full = false, handoff = false;
    /* Walk partitions; within one, take records in digest order after the
     * cursor.  Records filtered out by set still advance the cursor. */
    while (pid < pto && !full) {
        if (!any && !cluster_serves(s->cluster, (uint16_t) pid)) {
            handoff = true;
            break;
        }
        bool more;
        uint32_t got =
            store_scan_partition(r->ns, (uint32_t) pid, after, r->now, raw, s->scan_buf, (uint32_t) max, &more);
        for (uint32_t i = 0; i < got; i++) {
            const kv_rec_t *rec = s->scan_buf[i];
            last = rec;
            if (rec->lut <= (uint64_t) since) /* changed before what the client has */
                continue;
            if (rec->nbins == 0) { /* a tombstone (raw only; it has no set) */
                if (set)
                    continue;
                msgpack_pack_map(&pk, 4);
                kv_mp_pack_cstr(&pk, "digest");
                msgpack_pack_bin(&pk, KV_DIGEST_SIZE);
                msgpack_pack_bin_body(&pk, rec->digest, KV_DIGEST_SIZE);
                kv_mp_pack_cstr(&pk, "gen");
                msgpack_pack_uint32(&pk, rec->gen);
                kv_mp_pack_cstr(&pk, "lut");
                msgpack_pack_uint64(&pk, rec->lut);
                kv_mp_pack_cstr(&pk, "del");
                msgpack_pack_true(&pk);
            } else if (set && (rec->set_len != set_len || memcmp(rec_set(rec), set, set_len) != 0))
                continue;
            else {
                s_pack_record(s, &pk, rec, r->now, NULL, nobins, true, raw ? 1 : 0);
                if (raw) {
                    kv_mp_pack_cstr(&pk, "void");
                    msgpack_pack_uint32(&pk, rec->void_time);
                }
            }
            if (++count >= (uint32_t) max || sb.size >= SCAN_REPLY_MAX) {
                full = true;
                break;
            }
        }
        if (!full && more) { /* the partition holds more: continue in it */
            after = last->digest;
            continue;
        }
        if (!full) {
            pid++;
            after = NULL;
        }
    }
    msgpack_pack_map(&s->pk, raw ? 3 : 2);
    if (raw) { /* a later write of this node's gets a later last-update time */
        kv_mp_pack_cstr(&s->pk, "now");
        msgpack_pack_uint64(&s->pk, s->now_ms > s->last_lut ? s->now_ms : s->last_lut);
    }
    kv_mp_pack_cstr(&s->pk, "next");
    if (full) {
        msgpack_pack_array(&s->pk, 2);
        msgpack_pack_int64(&s->pk, pid);
        msgpack_pack_bin(&s->pk, KV_DIGEST_SIZE);
        msgpack_pack_bin_body(&s->pk, last->digest, KV_DIGEST_SIZE);
    } else if (handoff) {
        msgpack_pack_array(&s->pk, 1);
        msgpack_pack_int64(&s->pk, pid);
    } else
        msgpack_pack_nil(&s->pk);
    kv_mp_pack_cstr(&s->pk, "records");
    msgpack_pack_array(&s->pk, count);
    msgpack_sbuffer_write(&s->out, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return KV_OK;
}

/* Is copy a (generation, last-update time, tombstone or not) better than
 * copy b?  With lww, the later update, then the higher generation.
 * Otherwise, two records: the higher generation, then the later update.
 * When either is a tombstone, the later event wins, a tombstone on a tie:
 * a record created again after a delete starts its generations anew. */
static bool s_better(uint32_t agen, uint64_t alut, bool atomb, uint32_t bgen, uint64_t blut, bool btomb, bool lww)
{
    if (lww) /* last writer wins: the later update, then the higher generation */
        return alut > blut || (alut == blut && agen > bgen);
    if (atomb || btomb)
        return alut > blut || (alut == blut && atomb && !btomb);
    return agen > bgen || (agen == bgen && alut > blut);
}

static int s_merge_reply(server_t *s, bool applied)
{
    msgpack_pack_map(&s->pk, 1);
    kv_mp_pack_cstr(&s->pk, "applied");
    kv_mp_pack_bool(&s->pk, applied);
    return KV_OK;
}

int op_merge(server_t *s, req_t *r)
{
    int64_t gen, lut, vt;
    bool del = s_bool_field(r, F_DEL), drop = s_bool_field(r, F_DROP), lww = s_bool_field(r, F_LWW);
    if (srv_int_field(s, r, F_GEN, 1, UINT32_MAX, 0, &gen) != 0 ||
        srv_int_field(s, r, F_LUT, 1, INT64_MAX, 0, &lut) != 0 ||
        srv_int_field(s, r, F_VOID, 0, UINT32_MAX, 0, &vt) != 0)
        return KV_ERR_BAD_REQUEST;
    if (!gen || !lut)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "a merge needs 'gen' and 'lut'");
    if (del && drop)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "'del' and 'drop' cannot be given together");
    if ((del || drop) && (r->field[F_BINS] || r->field[F_VOID]))
        return srv_fail(s, KV_ERR_BAD_REQUEST, "a %s has no 'bins' or 'void'", del ? "tombstone" : "drop");
    if (!del && !drop && !r->field[F_BINS])
        return srv_fail(s, KV_ERR_BAD_REQUEST, "missing bins (field 'bins')");
    kv_rec_t *old;
    int rc = s_fetch(s, r, &old);
    if (rc != KV_OK)
        return rc;
    if ((uint64_t) lut > s->last_lut) /* this node's later writes come after it */
        s->last_lut = (uint64_t) lut;
    if (drop) /* a stale copy, exactly this one, goes without a tombstone */
        return s_merge_reply(s, old && old->gen == gen && old->lut == (uint64_t) lut &&
                                    store_drop(r->ns, r->h->digest) == 1);
    uint32_t ogen = 0;
    uint64_t olut = 0;
    bool otomb = !old && store_tomb(r->ns, r->h->digest, &ogen, &olut);
    if (old) {
        ogen = old->gen;
        olut = old->lut;
    }
    if ((old || otomb) && !s_better((uint32_t) gen, (uint64_t) lut, del, ogen, olut, otomb, lww))
        return s_merge_reply(s, false);
    /* a copy read before a delete this node was sent as a replica (it had
     * no copy then, so kept no tombstone) comes too late */
    if (!del && replica_deleted_after(s, r->ns, r->h->digest, (uint64_t) lut))
        return s_merge_reply(s, false);
    bool serves = cluster_serves(s->cluster, r->h->pid);
    if (del) { /* deletes the older record; with no record there is nothing to do */
        if (!old)
            return s_merge_reply(s, false);
        if (store_remove(r->ns, r->h->digest, (uint32_t) gen, (uint64_t) lut) < 0)
            return s_store_fail(s, r);
        if (serves)
            replica_send(s, r->ns, NULL, r->h->digest, (uint32_t) gen, (uint64_t) lut, lww);
        return s_merge_reply(s, true);
    }
    if (vt && (uint32_t) vt < r->now) /* expired already */
        return s_merge_reply(s, false);
    uint32_t n;
    rc = kv_bins_parse(r->field[F_BINS], (size_t) (r->field_end[F_BINS] - r->field[F_BINS]), s->bins_new,
                       r->ns->cfg.max_bins, &n, s->why, sizeof s->why);
    if (rc != KV_OK)
        return rc;
    if (n == 0)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "a record needs at least one bin");
    kv_rec_t *rec; /* the copy as it is (no key kept from the old one) */
    if ((rc = s_build_record(s, r, NULL, s->bins_new, n, (uint32_t) vt, &rec)) != KV_OK)
        return rc;
    rec->gen = (uint32_t) gen;
    rec->lut = (uint64_t) lut;
    if (store_put(r->ns, rec) != 0) {
        free(rec);
        return s_store_fail(s, r);
    }
    if (serves)
        replica_send(s, r->ns, rec, rec->digest, 0, 0, lww);
    return s_merge_reply(s, true);
}

static void s_pack_ns(msgpack_packer *pk, const kv_ns_t *ns)
{
    msgpack_pack_map(pk, 11 + (ns->disk ? (uint32_t) disk_stats_count() : 0));
    kv_mp_pack_cstr(pk, "name");
    kv_mp_pack_cstr(pk, ns->cfg.name);
    kv_mp_pack_cstr(pk, "storage");
    kv_mp_pack_cstr(pk, ns->disk ? "file" : "memory");
    if (ns->disk)
        disk_pack_stats(ns->disk, pk);
    kv_mp_pack_cstr(pk, "records");
    msgpack_pack_uint64(pk, ns->records);
    kv_mp_pack_cstr(pk, "memory_used");
    msgpack_pack_uint64(pk, ns->memory_used);
    kv_mp_pack_cstr(pk, "memory_limit");
    msgpack_pack_uint64(pk, ns->cfg.memory_limit);
    kv_mp_pack_cstr(pk, "expired");
    msgpack_pack_uint64(pk, ns->expired);
    kv_mp_pack_cstr(pk, "default_ttl");
    msgpack_pack_int64(pk, ns->cfg.default_ttl);
    kv_mp_pack_cstr(pk, "max_record_size");
    msgpack_pack_uint64(pk, ns->cfg.max_record_size);
    kv_mp_pack_cstr(pk, "max_bins");
    msgpack_pack_uint32(pk, ns->cfg.max_bins);
    kv_mp_pack_cstr(pk, "rf");
    msgpack_pack_uint32(pk, ns->cfg.rf);
    kv_mp_pack_cstr(pk, "mode");
    kv_mp_pack_cstr(pk, "ap");
}

int op_info(server_t *s, req_t *r)
{
    kv_mp_t v;
    const char *what = "";
    uint32_t wl = 0;
    if (srv_field(r, F_WHAT, &v) == 0 && kv_mp_read_str(&v, &what, &wl) != 0)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'what' must be a string");
#define IS(w) (wl == strlen(w) && memcmp(what, w, wl) == 0)
    bool all = wl == 0;
    kv_ns_t *one = NULL;
    if (!all && !IS("node") && !IS("namespaces") && !IS("stats")) {
        one = srv_find_ns(s, what, wl);
        if (!one)
            return srv_fail(s, KV_ERR_BAD_REQUEST,
                          "unknown info '%.*s' (node, namespaces, stats or a namespace name)", (int) (wl > 64 ? 64 : wl),
                          what);
        s_pack_ns(&s->pk, one);
        return KV_OK;
    }
    msgpack_packer *pk = &s->pk;
    msgpack_pack_map(pk, all ? 3 : 1);
    if (all || IS("node")) {
        char id[17];
        snprintf(id, sizeof id, "%016llx", (unsigned long long) s->node_id);
        kv_mp_pack_cstr(pk, "node");
        msgpack_pack_map(pk, 5);
        kv_mp_pack_cstr(pk, "id");
        kv_mp_pack_cstr(pk, id);
        kv_mp_pack_cstr(pk, "version");
        kv_mp_pack_cstr(pk, KV_VERSION);
        kv_mp_pack_cstr(pk, "endpoint");
        kv_mp_pack_cstr(pk, s->endpoint);
        kv_mp_pack_cstr(pk, "uptime_s");
        msgpack_pack_uint64(pk, (kv_mono_ms() - s->started_ms) / 1000);
        kv_mp_pack_cstr(pk, "sched");
        kv_mp_pack_cstr(pk, kv_sched_name());
    }
    if (all || IS("namespaces")) {
        kv_mp_pack_cstr(pk, "namespaces");
        msgpack_pack_array(pk, (uint32_t) s->n_ns);
        for (int i = 0; i < s->n_ns; i++)
            s_pack_ns(pk, s->ns[i]);
    }
    if (all || IS("stats")) {
        uint32_t nops = 0, nerr = 0;
        for (int i = 1; i < KV_OP_MAX_; i++)
            nops += s->ops[i] ? 1 : 0;
        for (int i = 1; i < 256; i++)
            nerr += s->errors[i] ? 1 : 0;
        kv_mp_pack_cstr(pk, "stats");
        msgpack_pack_map(pk, 3);
        kv_mp_pack_cstr(pk, "ops");
        msgpack_pack_map(pk, nops);
        for (int i = 1; i < KV_OP_MAX_; i++)
            if (s->ops[i]) {
                kv_mp_pack_cstr(pk, kv_op_name(i));
                msgpack_pack_uint64(pk, s->ops[i]);
            }
        kv_mp_pack_cstr(pk, "errors");
        msgpack_pack_map(pk, nerr);
        for (int i = 1; i < 256; i++)
            if (s->errors[i]) {
                const char *sym = kv_err_symbol(i);
                char num[16];
                snprintf(num, sizeof num, "%d", i);
                kv_mp_pack_cstr(pk, sym ? sym : num);
                msgpack_pack_uint64(pk, s->errors[i]);
            }
        kv_mp_pack_cstr(pk, "bad_frames");
        msgpack_pack_uint64(pk, s->bad_frames);
    }
#undef IS
    return KV_OK;
}
