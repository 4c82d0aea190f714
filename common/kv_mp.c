/* kv_mp: bounds-checked MessagePack reading and the bins map. */
#include "kv_mp.h"
#include "kv_err.h"
#include "kv_proto.h"
#include <assert.h>
#include <stdio.h>
#include <string.h>

static inline size_t s_left(const kv_mp_t *r) { return (size_t) (r->end - r->p); }

kv_mp_type_t kv_mp_type(const kv_mp_t *r)
{
    if (kv_mp_eof(r))
        return KV_MP_BAD;
    uint8_t c = r->p[0];
    if (c <= 0x7f || c >= 0xe0)
        return KV_MP_INT;
    if (c <= 0x8f)
        return KV_MP_MAP;
    if (c <= 0x9f)
        return KV_MP_ARRAY;
    if (c <= 0xbf)
        return KV_MP_STR;
    switch (c) {
    case 0xc0: return KV_MP_NIL;
    case 0xc2: case 0xc3: return KV_MP_BOOL;
    case 0xc4: case 0xc5: case 0xc6: return KV_MP_BIN;
    case 0xca: case 0xcb: return KV_MP_FLOAT;
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: return KV_MP_INT;
    case 0xd9: case 0xda: case 0xdb: return KV_MP_STR;
    case 0xdc: case 0xdd: return KV_MP_ARRAY;
    case 0xde: case 0xdf: return KV_MP_MAP;
    default: return KV_MP_BAD; /* 0xc1 (never used) and ext types */
    }
}

static uint64_t s_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int kv_mp_read_nil(kv_mp_t *r)
{
    if (kv_mp_type(r) != KV_MP_NIL)
        return -1;
    r->p++;
    return 0;
}

int kv_mp_read_bool(kv_mp_t *r, bool *v)
{
    if (kv_mp_type(r) != KV_MP_BOOL)
        return -1;
    *v = r->p[0] == 0xc3;
    r->p++;
    return 0;
}

int kv_mp_read_int(kv_mp_t *r, int64_t *v)
{
    if (kv_mp_type(r) != KV_MP_INT)
        return -1;
    uint8_t c = r->p[0];
    if (c <= 0x7f) { *v = c; r->p++; return 0; }
    if (c >= 0xe0) { *v = (int8_t) c; r->p++; return 0; }
    int n = 1 << ((c - 0xcc) & 3);  /* 0xcc..0xcf and 0xd0..0xd3: 1,2,4,8 bytes */
    if (s_left(r) < (size_t) n + 1)
        return -1;
    uint64_t u = s_be(r->p + 1, n);
    if (c <= 0xcf) {
        if (u > INT64_MAX)
            return -1;
        *v = (int64_t) u;
    } else {
        int shift = 64 - 8 * n;  /* sign-extend */
        *v = shift ? (int64_t) (u << shift) >> shift : (int64_t) u;
    }
    r->p += n + 1;
    return 0;
}

int kv_mp_read_float(kv_mp_t *r, double *v)
{
    if (kv_mp_type(r) != KV_MP_FLOAT)
        return -1;
    if (r->p[0] == 0xca) {
        if (s_left(r) < 5)
            return -1;
        uint32_t u = (uint32_t) s_be(r->p + 1, 4);
        float f;
        memcpy(&f, &u, 4);
        *v = f;
        r->p += 5;
    } else {
        if (s_left(r) < 9)
            return -1;
        uint64_t u = s_be(r->p + 1, 8);
        memcpy(v, &u, 8);
        r->p += 9;
    }
    return 0;
}

/* Read a length prefix of 0 (fix), 1, 2 or 4 bytes, then check the payload fits. */
static int s_read_len(kv_mp_t *r, int prefix, uint32_t fixlen, const uint8_t **data, uint32_t *len)
{
    if (s_left(r) < (size_t) prefix + 1)
        return -1;
    uint32_t n = prefix ? (uint32_t) s_be(r->p + 1, prefix) : fixlen;
    if (s_left(r) - 1 - prefix < n)
        return -1;
    *data = r->p + 1 + prefix;
    *len = n;
    r->p += 1 + prefix + n;
    return 0;
}

int kv_mp_read_str(kv_mp_t *r, const char **s, uint32_t *len)
{
    if (kv_mp_type(r) != KV_MP_STR)
        return -1;
    uint8_t c = r->p[0];
    int prefix = c <= 0xbf ? 0 : c == 0xd9 ? 1 : c == 0xda ? 2 : 4;
    return s_read_len(r, prefix, c & 0x1f, (const uint8_t **) s, len);
}

int kv_mp_read_bin(kv_mp_t *r, const uint8_t **b, uint32_t *len)
{
    if (kv_mp_type(r) != KV_MP_BIN)
        return -1;
    uint8_t c = r->p[0];
    return s_read_len(r, c == 0xc4 ? 1 : c == 0xc5 ? 2 : 4, 0, b, len);
}

static int s_read_count(kv_mp_t *r, uint8_t fixbase, uint8_t c16, uint32_t *n)
{
    uint8_t c = r->p[0];
    if ((c & 0xf0) == fixbase) {
        *n = c & 0x0f;
        r->p++;
        return 0;
    }
    int w = c == c16 ? 2 : 4;
    if (s_left(r) < (size_t) w + 1)
        return -1;
    *n = (uint32_t) s_be(r->p + 1, w);
    r->p += w + 1;
    return 0;
}

int kv_mp_read_array(kv_mp_t *r, uint32_t *n)
{
    if (kv_mp_type(r) != KV_MP_ARRAY)
        return -1;
    return s_read_count(r, 0x90, 0xdc, n);
}

int kv_mp_read_map(kv_mp_t *r, uint32_t *n)
{
    if (kv_mp_type(r) != KV_MP_MAP)
        return -1;
    return s_read_count(r, 0x80, 0xde, n);
}

static int s_skip(kv_mp_t *r, int depth, int max_depth)
{
    const uint8_t *start = r->p;
    const uint8_t *d;
    uint32_t n;
    int64_t i;
    double f;
    bool b;
    int rc = -1;
    switch (kv_mp_type(r)) {
    case KV_MP_NIL: rc = kv_mp_read_nil(r); break;
    case KV_MP_BOOL: rc = kv_mp_read_bool(r, &b); break;
    case KV_MP_INT: rc = kv_mp_read_int(r, &i); break;
    case KV_MP_FLOAT: rc = kv_mp_read_float(r, &f); break;
    case KV_MP_STR: rc = kv_mp_read_str(r, (const char **) &d, &n); break;
    case KV_MP_BIN: rc = kv_mp_read_bin(r, &d, &n); break;
    case KV_MP_ARRAY:
    case KV_MP_MAP: {
        bool map = kv_mp_type(r) == KV_MP_MAP;
        if (depth >= max_depth)
            break;
        if ((map ? kv_mp_read_map(r, &n) : kv_mp_read_array(r, &n)) != 0)
            break;
        /* Each element takes at least one byte, so a count larger than
         * what is left is malformed; checked before looping. */
        uint64_t elems = map ? 2ull * n : n;
        if (elems > s_left(r))
            break;
        rc = 0;
        for (uint64_t k = 0; k < elems && rc == 0; k++)
            rc = s_skip(r, depth + 1, max_depth);
        break;
    }
    default: break;
    }
    if (rc != 0)
        r->p = start;
    return rc;
}

int kv_mp_skip(kv_mp_t *r)
{
    return s_skip(r, 0, KV_MP_MAX_DEPTH);
}

int kv_mp_skip_value(kv_mp_t *r)
{
    return s_skip(r, 0, KV_VALUE_MAX_DEPTH);
}

bool kv_mp_valid(const void *buf, size_t len)
{
    kv_mp_t r = kv_mp(buf, len);
    return kv_mp_skip(&r) == 0 && kv_mp_eof(&r);
}

int kv_bins_parse(const uint8_t *buf, size_t len, kv_bin_t *bins, uint32_t max, uint32_t *n,
                  char *why, size_t whylen)
{
    kv_mp_t r = kv_mp(buf, len);
    uint32_t count;
    *n = 0;
    if (kv_mp_read_map(&r, &count) != 0) {
        snprintf(why, whylen, "bins must be a map");
        return KV_ERR_BAD_REQUEST;
    }
    if (count > max) {
        snprintf(why, whylen, "%u bins, limit is %u", count, max);
        return KV_ERR_TOO_MANY_BINS;
    }
    for (uint32_t k = 0; k < count; k++) {
        kv_bin_t *b = &bins[k];
        if (kv_mp_read_str(&r, &b->name, &b->name_len) != 0) {
            snprintf(why, whylen, "bin %u: name is not a string", k + 1);
            return KV_ERR_BAD_REQUEST;
        }
        if (b->name_len == 0) {
            snprintf(why, whylen, "bin %u: empty bin name", k + 1);
            return KV_ERR_BAD_REQUEST;
        }
        if (b->name_len > KV_BIN_NAME_MAX) {
            snprintf(why, whylen, "bin name '%.*s' is %u bytes, limit is %d", (int) b->name_len,
                     b->name, b->name_len, KV_BIN_NAME_MAX);
            return KV_ERR_BIN_NAME;
        }
        if (memchr(b->name, '\0', b->name_len)) {
            snprintf(why, whylen, "bin %u: name contains a NUL byte", k + 1);
            return KV_ERR_BAD_REQUEST;
        }
        b->val = r.p;
        if (kv_mp_skip_value(&r) != 0) {
            snprintf(why, whylen, "bin '%.*s': malformed value, or lists and maps nested deeper than %d levels",
                     (int) b->name_len, b->name, KV_VALUE_MAX_DEPTH);
            return KV_ERR_BAD_REQUEST;
        }
        b->val_len = (uint32_t) (r.p - b->val);
        if (kv_bins_find(bins, k, b->name, b->name_len) >= 0) {
            snprintf(why, whylen, "bin '%.*s' given twice", (int) b->name_len, b->name);
            return KV_ERR_BAD_REQUEST;
        }
    }
    if (!kv_mp_eof(&r)) {
        snprintf(why, whylen, "trailing bytes after bins map");
        return KV_ERR_BAD_REQUEST;
    }
    *n = count;
    return KV_OK;
}

int kv_bins_find(const kv_bin_t *bins, uint32_t n, const char *name, uint32_t name_len)
{
    for (uint32_t i = 0; i < n; i++)
        if (bins[i].name_len == name_len && memcmp(bins[i].name, name, name_len) == 0)
            return (int) i;
    return -1;
}

void kv_bins_pack(msgpack_packer *pk, const kv_bin_t *bins, uint32_t n)
{
    msgpack_pack_map(pk, n);
    for (uint32_t i = 0; i < n; i++) {
        kv_mp_pack_strn(pk, bins[i].name, bins[i].name_len);
        pk->callback(pk->data, (const char *) bins[i].val, bins[i].val_len);
    }
}

static size_t s_map_hdr_size(uint32_t n)
{
    return n < 16 ? 1 : n < 65536 ? 3 : 5;
}

size_t kv_bins_size(const kv_bin_t *bins, uint32_t n)
{
    size_t size = s_map_hdr_size(n);
    for (uint32_t i = 0; i < n; i++)
        size += 1 + bins[i].name_len + bins[i].val_len;
    return size;
}

void kv_bins_write(uint8_t *out, const kv_bin_t *bins, uint32_t n)
{
    if (n < 16)
        *out++ = (uint8_t) (0x80 | n);
    else if (n < 65536) {
        *out++ = 0xde;
        *out++ = (uint8_t) (n >> 8);
        *out++ = (uint8_t) n;
    } else {
        *out++ = 0xdf;
        for (int k = 3; k >= 0; k--)
            *out++ = (uint8_t) (n >> (8 * k));
    }
    for (uint32_t i = 0; i < n; i++) {
        *out++ = (uint8_t) (0xa0 | bins[i].name_len); /* fixstr: names are 1..15 bytes */
        memcpy(out, bins[i].name, bins[i].name_len);
        out += bins[i].name_len;
        memcpy(out, bins[i].val, bins[i].val_len);
        out += bins[i].val_len;
    }
}

int kv_fixbuf_write(void *data, const char *buf, size_t len)
{
    kv_fixbuf_t *f = data;
    if (f->n + len > f->cap)
        return -1;
    memcpy(f->p + f->n, buf, len);
    f->n += len;
    return 0;
}

void kv_mp_pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void kv_mp_pack_bool(msgpack_packer *pk, bool v)
{
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

void kv_mp_pack_cstr(msgpack_packer *pk, const char *s)
{
    kv_mp_pack_strn(pk, s, strlen(s));
}

void kv_mp_begin_message(msgpack_sbuffer *sb, msgpack_packer *pk)
{
    static const uint8_t room[KV_HDR_SIZE];
    msgpack_sbuffer_init(sb);
    msgpack_sbuffer_write(sb, (const char *) room, sizeof room);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
}

void kv_mp_test(bool verbose)
{
    (void) verbose;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    /* one of every type, with every integer width */
    int64_t ints[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 4294967296LL, INT64_MAX,
                      -1, -32, -33, -128, -129, -32768, -32769, -2147483649LL, INT64_MIN};
    msgpack_pack_array(&pk, 7 + (uint32_t) (sizeof ints / sizeof ints[0]));
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        msgpack_pack_int64(&pk, ints[i]);
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_double(&pk, 1.5);
    msgpack_pack_float(&pk, 2.5f);
    kv_mp_pack_cstr(&pk, "hello");
    msgpack_pack_bin(&pk, 3);
    msgpack_pack_bin_body(&pk, "\0\1\2", 3);
    msgpack_pack_map(&pk, 1);
    kv_mp_pack_cstr(&pk, "k");
    msgpack_pack_array(&pk, 0);
    assert(kv_mp_valid(sb.data, sb.size));
    kv_mp_t r = kv_mp(sb.data, sb.size);
    uint32_t n;
    assert(kv_mp_read_array(&r, &n) == 0 && n == 26);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int64_t v;
        assert(kv_mp_read_int(&r, &v) == 0 && v == ints[i]);
    }
    bool b;
    double f;
    const char *s;
    const uint8_t *bin;
    assert(kv_mp_read_int(&r, &(int64_t){0}) == -1); /* wrong type leaves cursor */
    assert(kv_mp_read_nil(&r) == 0);
    assert(kv_mp_read_bool(&r, &b) == 0 && b);
    assert(kv_mp_read_float(&r, &f) == 0 && f == 1.5);
    assert(kv_mp_read_float(&r, &f) == 0 && f == 2.5);
    assert(kv_mp_read_str(&r, &s, &n) == 0 && n == 5 && memcmp(s, "hello", 5) == 0);
    assert(kv_mp_read_bin(&r, &bin, &n) == 0 && n == 3 && bin[2] == 2);
    assert(kv_mp_read_map(&r, &n) == 0 && n == 1);
    assert(kv_mp_skip(&r) == 0 && kv_mp_skip(&r) == 0 && kv_mp_eof(&r));
    /* every truncation of a valid value is rejected */
    for (size_t len = 0; len < sb.size; len++)
        assert(!kv_mp_valid(sb.data, len));
    /* a huge declared count in a tiny buffer is rejected without allocating */
    const uint8_t huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0};
    assert(!kv_mp_valid(huge, sizeof huge));
    /* uint64 above INT64_MAX, ext types and 0xc1 are refused */
    const uint8_t big[] = {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0};
    assert(!kv_mp_valid(big, sizeof big));
    const uint8_t ext[] = {0xd4, 1, 0};
    assert(!kv_mp_valid(ext, sizeof ext));
    const uint8_t never[] = {0xc1};
    assert(!kv_mp_valid(never, 1));
    /* nesting deeper than the limit is refused */
    uint8_t deep[KV_MP_MAX_DEPTH + 2];
    memset(deep, 0x91, sizeof deep);
    deep[sizeof deep - 1] = 0xc0;
    assert(!kv_mp_valid(deep, sizeof deep));
    assert(kv_mp_valid(deep + 2, sizeof deep - 2));
    /* bin values have a lower limit, leaving room for the maps and arrays
     * that wrap a record in replies */
    kv_mp_t dv = kv_mp(deep + sizeof deep - 1 - KV_VALUE_MAX_DEPTH, KV_VALUE_MAX_DEPTH + 1);
    assert(kv_mp_skip_value(&dv) == 0 && kv_mp_eof(&dv));
    dv = kv_mp(deep + sizeof deep - 2 - KV_VALUE_MAX_DEPTH, KV_VALUE_MAX_DEPTH + 2);
    assert(kv_mp_skip_value(&dv) == -1);

    /* bins: parse, find, duplicate and long names */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    kv_mp_pack_cstr(&pk, "name");
    kv_mp_pack_cstr(&pk, "Alice");
    kv_mp_pack_cstr(&pk, "age");
    msgpack_pack_int(&pk, 30);
    kv_bin_t bins[8];
    char why[128];
    assert(kv_bins_parse((uint8_t *) sb.data, sb.size, bins, 8, &n, why, sizeof why) == KV_OK && n == 2);
    assert(kv_bins_find(bins, n, "age", 3) == 1 && kv_bins_find(bins, n, "ag", 2) == -1);
    assert(kv_bins_parse((uint8_t *) sb.data, sb.size, bins, 1, &n, why, sizeof why) == KV_ERR_TOO_MANY_BINS);
    /* writing the map by hand gives the same bytes as packing it */
    uint8_t direct[64];
    assert(kv_bins_size(bins, 2) == sb.size);
    kv_bins_write(direct, bins, 2);
    assert(memcmp(direct, sb.data, sb.size) == 0);
    kv_bin_t many[20];
    for (int k = 0; k < 20; k++)
        many[k] = bins[k % 2];
    msgpack_sbuffer m2;
    msgpack_sbuffer_init(&m2);
    msgpack_packer p2;
    msgpack_packer_init(&p2, &m2, msgpack_sbuffer_write);
    kv_bins_pack(&p2, many, 20);
    uint8_t direct2[256];
    assert(kv_bins_size(many, 20) == m2.size);
    kv_bins_write(direct2, many, 20);
    assert(memcmp(direct2, m2.data, m2.size) == 0);
    msgpack_sbuffer_destroy(&m2);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    kv_mp_pack_cstr(&pk, "a");
    msgpack_pack_nil(&pk);
    kv_mp_pack_cstr(&pk, "a");
    msgpack_pack_nil(&pk);
    assert(kv_bins_parse((uint8_t *) sb.data, sb.size, bins, 8, &n, why, sizeof why) == KV_ERR_BAD_REQUEST);
    assert(strstr(why, "twice"));
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 1);
    kv_mp_pack_cstr(&pk, "sixteen-bytes-xx");
    msgpack_pack_nil(&pk);
    assert(kv_bins_parse((uint8_t *) sb.data, sb.size, bins, 8, &n, why, sizeof why) == KV_ERR_BIN_NAME);
    msgpack_sbuffer_destroy(&sb);
}
