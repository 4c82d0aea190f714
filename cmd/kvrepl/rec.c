/* rec: one record copy (record or tombstone): checked parsing of its map,
 * which of two copies is newer, and the merge requests that move it. */
#include "kvrepl.h"
#include "kv_digest.h"
#include "kv_mp.h"
#include <assert.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

/* The fields of a record map kvrepl reads; others are skipped. */
enum { F_NS, F_DIGEST, F_DEL, F_GEN, F_LUT, F_VOID, F_SET, F_KEY, F_BINS, F_COUNT };
static const char *s_fields[F_COUNT] = {"ns", "digest", "del", "gen", "lut", "void", "set", "key", "bins"};

/* Read an unsigned integer field into *out (at most max). */
static int s_uint(kv_mp_t *v, uint64_t max, uint64_t *out)
{
    int64_t i;
    if (kv_mp_read_int(v, &i) != 0 || i < 0 || (uint64_t) i > max)
        return -1;
    *out = (uint64_t) i;
    return 0;
}

/* The key as a kv_key_t (its bytes point into the map). */
static int s_key(const uint8_t *raw, uint32_t len, kv_key_t *k)
{
    kv_mp_t v = kv_mp(raw, len);
    const char *s;
    const uint8_t *b;
    uint32_t n;
    if (kv_mp_read_int(&v, &k->i) == 0) {
        k->type = KV_KEY_INT;
        return 0;
    }
    if (kv_mp_read_str(&v, &s, &n) == 0)
        *k = (kv_key_t){.type = KV_KEY_STRING, .bytes = (const uint8_t *) s, .len = n};
    else if (kv_mp_read_bin(&v, &b, &n) == 0)
        *k = (kv_key_t){.type = KV_KEY_BYTES, .bytes = b, .len = n};
    else
        return -1;
    return n <= KV_KEY_MAX ? 0 : -1;
}

/* The value of field f at v into rec.  0, or -1 with why. */
static int s_field(kr_rec_t *rec, int f, kv_mp_t *v, char *why, size_t whylen)
{
    const uint8_t *start = v->p, *d;
    uint32_t n;
    bool b;
    switch (f) {
    case F_NS:
        if (kv_mp_read_str(v, &rec->ns, &rec->ns_len) != 0 || rec->ns_len == 0 || rec->ns_len > KV_NS_MAX)
            goto bad;
        return 0;
    case F_DIGEST:
        if (kv_mp_read_bin(v, &d, &n) != 0 || n != KV_DIGEST_SIZE)
            goto bad;
        memcpy(rec->digest, d, KV_DIGEST_SIZE);
        return 0;
    case F_DEL:
        if (kv_mp_read_bool(v, &b) != 0)
            goto bad;
        rec->del = b;
        return 0;
    case F_GEN:
        if (s_uint(v, UINT32_MAX, &rec->gen) != 0)
            goto bad;
        return 0;
    case F_LUT:
        if (s_uint(v, INT64_MAX, &rec->lut) != 0)
            goto bad;
        return 0;
    case F_VOID:
        if (s_uint(v, UINT32_MAX, &rec->voidt) != 0)
            goto bad;
        return 0;
    case F_SET:
        if (kv_mp_read_str(v, &rec->set, &rec->set_len) != 0 || rec->set_len > KV_SET_MAX
            || memchr(rec->set, '\0', rec->set_len))
            goto bad;
        return 0;
    case F_KEY: {
        kv_key_t k;
        if (kv_mp_skip(v) != 0 || s_key(start, (uint32_t) (v->p - start), &k) != 0)
            goto bad;
        rec->key = start;
        rec->key_len = (uint32_t) (v->p - start);
        return 0;
    }
    case F_BINS:
        if (kv_mp_type(v) != KV_MP_MAP || kv_mp_skip_value(v) != 0)
            goto bad;
        rec->bins = start;
        rec->bins_len = (uint32_t) (v->p - start);
        return 0;
    }
bad:
    switch (f) {
    case F_NS: snprintf(why, whylen, "field 'ns' is not a namespace name (1 to %d bytes)", KV_NS_MAX); break;
    case F_DIGEST: snprintf(why, whylen, "field 'digest' is not %d bytes", KV_DIGEST_SIZE); break;
    case F_DEL: snprintf(why, whylen, "field 'del' is not a boolean"); break;
    case F_GEN: snprintf(why, whylen, "field 'gen' is not a generation (0 to 4294967295)"); break;
    case F_LUT: snprintf(why, whylen, "field 'lut' is not a time in milliseconds"); break;
    case F_VOID: snprintf(why, whylen, "field 'void' is not a time in seconds (0 to 4294967295)"); break;
    case F_SET: snprintf(why, whylen, "field 'set' is not a set name (up to %d bytes, no NUL)", KV_SET_MAX); break;
    case F_KEY:
        snprintf(why, whylen, "field 'key' is not an integer, or a string or bytes of up to %d bytes", KV_KEY_MAX);
        break;
    default: snprintf(why, whylen, "field 'bins' is not a valid map of bins"); break;
    }
    return -1;
}

int kr_rec_parse(kr_rec_t *rec, const uint8_t *map, size_t len, unsigned need, char *why, size_t whylen)
{
    memset(rec, 0, sizeof *rec);
    rec->map = map;
    rec->map_len = len;
    kv_mp_t v = kv_mp(map, len);
    uint32_t n;
    bool seen[F_COUNT] = {false};
    if (kv_mp_read_map(&v, &n) != 0) {
        snprintf(why, whylen, "not a MessagePack map");
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (kv_mp_read_str(&v, &k, &kl) != 0) {
            snprintf(why, whylen, "malformed MessagePack (a key of the map is not a string, or is cut short)");
            return -1;
        }
        int f = 0;
        while (f < F_COUNT && (strlen(s_fields[f]) != kl || memcmp(s_fields[f], k, kl) != 0))
            f++;
        if (f == F_COUNT) { /* a field this version does not know */
            if (kv_mp_skip(&v) != 0) {
                snprintf(why, whylen, "malformed MessagePack in field '%.*s'", (int) (kl > 32 ? 32 : kl), k);
                return -1;
            }
            continue;
        }
        if (seen[f]) {
            snprintf(why, whylen, "field '%s' appears twice", s_fields[f]);
            return -1;
        }
        seen[f] = true;
        if (s_field(rec, f, &v, why, whylen) != 0)
            return -1;
    }
    if (!kv_mp_eof(&v)) {
        snprintf(why, whylen, "%zu bytes after the map", (size_t) (v.end - v.p));
        return -1;
    }
    const char *missing = !seen[F_DIGEST] ? "digest" : !seen[F_GEN] ? "gen" : !seen[F_LUT] ? "lut"
                        : (need & KR_NEED_NS) && !seen[F_NS] ? "ns" : NULL;
    if (!missing && !rec->del)
        missing = (need & KR_NEED_VOID) && !seen[F_VOID] ? "void" : !seen[F_BINS] ? "bins" : NULL;
    if (missing) {
        snprintf(why, whylen, "missing field '%s'", missing);
        return -1;
    }
    if (rec->gen == 0) {
        snprintf(why, whylen, "field 'gen' is 0 (a generation is 1 or more)");
        return -1;
    }
    if (rec->del)
        return 0;
    if (rec->key) {
        kv_key_t k;
        uint8_t d[KV_DIGEST_SIZE];
        s_key(rec->key, rec->key_len, &k);
        if (kv_digest(rec->set ? rec->set : "", rec->set_len, &k, d) != 0
            || memcmp(d, rec->digest, KV_DIGEST_SIZE) != 0) {
            snprintf(why, whylen, "the set and key do not give the digest");
            return -1;
        }
    }
    return 0;
}

int kr_rec_cmp(const kr_rec_t *a, const kr_rec_t *b)
{
    if (a->del || b->del) {
        if (a->lut != b->lut)
            return a->lut > b->lut ? 1 : -1;
        return a->del == b->del ? 0 : a->del ? 1 : -1;
    }
    if (a->gen != b->gen)
        return a->gen > b->gen ? 1 : -1;
    if (a->lut != b->lut)
        return a->lut > b->lut ? 1 : -1;
    return 0;
}

int kr_rec_needs(const kr_rec_t *a, const kr_rec_t *b)
{
    int c = !b ? 1 : !a ? -1 : kr_rec_cmp(a, b);
    const kr_rec_t *better = c > 0 ? a : b, *worse = c > 0 ? b : a;
    if (c == 0 || (better->del && (!worse || worse->del)))
        return 0;
    return c;
}

void kr_rec_merge_req(kv_req_t *req, const char *ns, const kr_rec_t *rec, bool drop)
{
    kv_req_init(req, KV_OP_MERGE);
    memcpy(req->hdr.digest, rec->digest, KV_DIGEST_SIZE);
    req->hdr.pid = kv_partition(rec->digest);
    kv_req_str(req, "ns", ns, strlen(ns));
    if (drop || rec->del)
        kv_mp_pack_bool(kv_req_field(req, drop ? "drop" : "del"), true);
    kv_req_int(req, "gen", (int64_t) rec->gen);
    kv_req_int(req, "lut", (int64_t) rec->lut);
    if (drop || rec->del)
        return;
    if (rec->set_len)
        kv_req_str(req, "set", rec->set, rec->set_len);
    if (rec->key) {
        req->hdr.flags |= KV_F_SENDKEY;
        kv_req_field(req, "key");
        msgpack_sbuffer_write(&req->body, (const char *) rec->key, rec->key_len);
    }
    kv_req_int(req, "void", (int64_t) rec->voidt);
    kv_req_field(req, "bins");
    msgpack_sbuffer_write(&req->body, (const char *) rec->bins, rec->bins_len);
}

void kr_rec_pack(msgpack_packer *pk, const char *ns, size_t ns_len, const kr_rec_t *rec)
{
    msgpack_pack_map(pk, rec->del ? 5 : 6 + (rec->set_len ? 1 : 0) + (rec->key ? 1 : 0));
    kv_mp_pack_cstr(pk, "ns");
    kv_mp_pack_strn(pk, ns, ns_len);
    kv_mp_pack_cstr(pk, "digest");
    msgpack_pack_bin(pk, KV_DIGEST_SIZE);
    msgpack_pack_bin_body(pk, rec->digest, KV_DIGEST_SIZE);
    kv_mp_pack_cstr(pk, "gen");
    msgpack_pack_uint64(pk, rec->gen);
    kv_mp_pack_cstr(pk, "lut");
    msgpack_pack_uint64(pk, rec->lut);
    if (rec->del) {
        kv_mp_pack_cstr(pk, "del");
        msgpack_pack_true(pk);
        return;
    }
    if (rec->set_len) {
        kv_mp_pack_cstr(pk, "set");
        kv_mp_pack_strn(pk, rec->set, rec->set_len);
    }
    if (rec->key) {
        kv_mp_pack_cstr(pk, "key");
        pk->callback(pk->data, (const char *) rec->key, rec->key_len);
    }
    kv_mp_pack_cstr(pk, "void");
    msgpack_pack_uint64(pk, rec->voidt);
    kv_mp_pack_cstr(pk, "bins");
    pk->callback(pk->data, (const char *) rec->bins, rec->bins_len);
}

uint64_t kr_rec_hash(const kr_rec_t *rec)
{
    uint8_t meta[24], out[8];
    kv_put64(meta, rec->gen);
    kv_put64(meta + 8, rec->lut);
    kv_put64(meta + 16, rec->voidt);
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof out);
    crypto_generichash_update(&st, rec->digest, KV_DIGEST_SIZE);
    crypto_generichash_update(&st, meta, sizeof meta);
    if (rec->bins)
        crypto_generichash_update(&st, rec->bins, rec->bins_len);
    crypto_generichash_final(&st, out, sizeof out);
    return kv_get64(out);
}

int kr_bins_parse(kr_bins_t *bl, const char *s, char *why, size_t whylen)
{
    bl->n = 0;
    for (const char *p = s;; p++) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t) (e - p) : strlen(p);
        if (len == 0 || len > KV_BIN_NAME_MAX) {
            snprintf(why, whylen, "'%.*s' is not a bin name (1 to %d bytes)", (int) (len > 40 ? 40 : len), p,
                     KV_BIN_NAME_MAX);
            return -1;
        }
        for (int i = 0; i < bl->n; i++)
            if (strlen(bl->name[i]) == len && memcmp(bl->name[i], p, len) == 0) {
                snprintf(why, whylen, "bin '%.*s' is listed twice", (int) len, p);
                return -1;
            }
        if (bl->n == KR_BINS_MAX) {
            snprintf(why, whylen, "more than %d bins", KR_BINS_MAX);
            return -1;
        }
        memcpy(bl->name[bl->n], p, len);
        bl->name[bl->n++][len] = '\0';
        if (!e)
            return 0;
        p = e;
    }
}

static bool s_listed(const kr_bins_t *bl, const char *name, uint32_t len)
{
    for (int k = 0; k < bl->n; k++)
        if (strlen(bl->name[k]) == len && memcmp(bl->name[k], name, len) == 0)
            return true;
    return false;
}

uint32_t kr_rec_keep_bins(const kr_rec_t *rec, const kr_bins_t *bl, msgpack_sbuffer *sb)
{
    uint32_t kept = 0;
    msgpack_sbuffer_clear(sb);
    /* count the listed bins, then pack the map's header and copy them */
    for (int copy = 0; copy < 2; copy++) {
        if (copy) {
            msgpack_packer pk;
            msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
            msgpack_pack_map(&pk, kept);
        }
        kv_mp_t v = kv_mp(rec->bins, rec->bins_len);
        uint32_t n;
        if (kv_mp_read_map(&v, &n) != 0)
            return 0; /* can't happen: kr_rec_parse checked the map */
        for (uint32_t i = 0; i < n; i++) {
            const uint8_t *start = v.p;
            const char *name;
            uint32_t len;
            if (kv_mp_read_str(&v, &name, &len) != 0 || kv_mp_skip_value(&v) != 0)
                return 0;
            if (!s_listed(bl, name, len))
                continue;
            if (copy)
                msgpack_sbuffer_write(sb, (const char *) start, (size_t) (v.p - start));
            else
                kept++;
        }
        if (!kept)
            return 0;
    }
    return kept;
}

/* ---- self-test ------------------------------------------------------- */

/* rec's stream map into out; its length. */
static size_t s_map(uint8_t *out, size_t cap, const kr_rec_t *rec, const char *ns)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    kr_rec_pack(&pk, ns, strlen(ns), rec);
    assert(sb.size <= cap);
    memcpy(out, sb.data, sb.size);
    size_t n = sb.size;
    msgpack_sbuffer_destroy(&sb);
    return n;
}

void kr_rec_test(bool verbose)
{
    (void) verbose;
    assert(sodium_init() >= 0);
    char why[256];
    uint8_t buf[512];
    static const uint8_t key[] = {0xa5, 'a', 'l', 'i', 'c', 'e'}, bins[] = {0x81, 0xa1, 'n', 0x01};
    kr_rec_t r = {.gen = 3, .lut = 1700000000123ull, .voidt = 0, .set = "users", .set_len = 5,
                  .key = key, .key_len = sizeof key, .bins = bins, .bins_len = sizeof bins};
    assert(kv_digest_parse("5c8f120d14688011e188f63e3608cf4c8fd31038", r.digest) == 0);
    size_t n = s_map(buf, sizeof buf, &r, "test");
    kr_rec_t p;
    assert(kr_rec_parse(&p, buf, n, KR_NEED_NS | KR_NEED_VOID, why, sizeof why) == 0);
    assert(p.gen == 3 && p.lut == r.lut && !p.del && p.set_len == 5 && p.key_len == sizeof key);
    assert(p.ns_len == 4 && memcmp(p.ns, "test", 4) == 0 && p.bins_len == sizeof bins);
    assert(kr_rec_cmp(&p, &r) == 0 && kr_rec_hash(&p) == kr_rec_hash(&r));
    /* newer: generation first, then lut */
    kr_rec_t q = r;
    q.lut--;
    assert(kr_rec_cmp(&r, &q) > 0 && kr_rec_cmp(&q, &r) < 0);
    q.gen++;
    assert(kr_rec_cmp(&r, &q) < 0 && kr_rec_hash(&q) != kr_rec_hash(&r));
    /* against a tombstone, the later lut wins, the tombstone on a tie */
    kr_rec_t t = {.del = true, .gen = 1, .lut = r.lut};
    assert(kr_rec_cmp(&t, &r) > 0 && kr_rec_cmp(&r, &t) < 0);
    t.lut--;
    assert(kr_rec_cmp(&t, &r) < 0 && kr_rec_cmp(&r, &t) > 0);
    q = t;
    assert(kr_rec_cmp(&t, &q) == 0);
    /* which side needs the other's copy */
    assert(kr_rec_needs(&r, NULL) > 0 && kr_rec_needs(NULL, &r) < 0 && kr_rec_needs(&r, &r) == 0);
    t.lut = r.lut + 1;
    assert(kr_rec_needs(&t, &r) > 0 && kr_rec_needs(&t, NULL) == 0 && kr_rec_needs(NULL, &t) == 0);
    q.lut = t.lut + 1;
    assert(kr_rec_needs(&t, &q) == 0 && kr_rec_needs(&r, &q) < 0);
    /* a key that does not give the digest */
    q = r;
    q.digest[0] ^= 1;
    n = s_map(buf, sizeof buf, &q, "test");
    assert(kr_rec_parse(&p, buf, n, 0, why, sizeof why) == -1 && strstr(why, "do not give the digest"));
    /* a tombstone needs no bins */
    q = (kr_rec_t){.del = true, .gen = 4, .lut = 5};
    memcpy(q.digest, r.digest, KV_DIGEST_SIZE);
    n = s_map(buf, sizeof buf, &q, "test");
    assert(kr_rec_parse(&p, buf, n, KR_NEED_NS | KR_NEED_VOID, why, sizeof why) == 0 && p.del && p.gen == 4);
    /* missing fields, wrong types, duplicates, trailing bytes */
    static const struct {
        const char *hex, *why;
    } bad[] = {
        {"80", "missing field 'digest'"},
        {"a3", "not a MessagePack map"},
        {"81a367656ea178", "field 'gen' is not"},
        {"82a3676" "56e01a367656e01", "appears twice"},
        {"81a664696765737401", "field 'digest' is not 20 bytes"},
        {"80c0", "bytes after the map"},
        {"81a162", "malformed MessagePack"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t bl;
        assert(sodium_hex2bin(buf, sizeof buf, bad[i].hex, strlen(bad[i].hex), NULL, &bl, NULL) == 0);
        why[0] = '\0';
        assert(kr_rec_parse(&p, buf, bl, 0, why, sizeof why) == -1 && strstr(why, bad[i].why));
    }
    /* the merge request of a record and of a drop */
    kv_req_t req;
    kr_rec_merge_req(&req, "other", &r, false);
    assert(req.hdr.op == KV_OP_MERGE && req.hdr.pid == 3932 && (req.hdr.flags & KV_F_SENDKEY) && req.nfields == 7);
    kv_req_destroy(&req);
    kr_rec_merge_req(&req, "other", &r, true);
    assert(req.nfields == 4 && !(req.hdr.flags & KV_F_SENDKEY));
    kv_req_destroy(&req);
    /* bin lists, and the bins of a record they keep */
    kr_bins_t bl;
    assert(kr_bins_parse(&bl, "a,name,b", why, sizeof why) == 0 && bl.n == 3 && strcmp(bl.name[1], "name") == 0);
    assert(kr_bins_parse(&bl, "a,,b", why, sizeof why) == -1 && strstr(why, "'' is not a bin name"));
    assert(kr_bins_parse(&bl, "a,b,a", why, sizeof why) == -1 && strstr(why, "listed twice"));
    assert(kr_bins_parse(&bl, "sixteen-bytes-xx", why, sizeof why) == -1 && strstr(why, "1 to 15 bytes"));
    assert(kr_bins_parse(&bl, "", why, sizeof why) == -1);
    static const uint8_t three[] = {0x83, 0xa1, 'a', 0x01, 0xa1, 'b', 0x92, 0x02, 0x03, 0xa1, 'c', 0xc3};
    q = r;
    q.bins = three;
    q.bins_len = sizeof three;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert(kr_bins_parse(&bl, "c,b", why, sizeof why) == 0);
    static const uint8_t bc[] = {0x82, 0xa1, 'b', 0x92, 0x02, 0x03, 0xa1, 'c', 0xc3};
    assert(kr_rec_keep_bins(&q, &bl, &sb) == 2 && sb.size == sizeof bc && memcmp(sb.data, bc, sizeof bc) == 0);
    assert(kr_bins_parse(&bl, "x", why, sizeof why) == 0 && kr_rec_keep_bins(&q, &bl, &sb) == 0);
    msgpack_sbuffer_destroy(&sb);
}
