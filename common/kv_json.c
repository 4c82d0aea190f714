/* kv_json: MessagePack <-> JSON with tagged objects for what JSON lacks. */
#include "kv_json.h"
#include "kv_mp.h"
#include <assert.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *s_tag(const char *tag, json_t *v)
{
    json_t *o = json_object();
    json_object_set_new(o, tag, v);
    return o;
}

static json_t *s_base64(const uint8_t *b, size_t n)
{
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(cap);
    if (!s)
        return NULL;
    sodium_bin2base64(s, cap, b, n, sodium_base64_VARIANT_ORIGINAL);
    json_t *j = json_string(s);
    free(s);
    return j;
}

static bool s_is_tagged_shape(const char *key, size_t n_keys)
{
    return n_keys == 1 && key[0] == '$';
}

static json_t *s_from(kv_mp_t *r);

static json_t *s_map(kv_mp_t *r, uint32_t n)
{
    /* First pass: can this be a plain object? */
    kv_mp_t probe = *r;
    bool plain = true;
    const char *first = NULL;
    for (uint32_t i = 0; i < n && plain; i++) {
        const char *k;
        uint32_t kl;
        if (kv_mp_read_str(&probe, &k, &kl) != 0 || memchr(k, 0, kl)) {
            plain = false;
            break;
        }
        json_t *ks = json_stringn(k, kl); /* NULL if not UTF-8 */
        if (!ks)
            plain = false;
        json_decref(ks);
        if (i == 0)
            first = k;
        if (kv_mp_skip(&probe) != 0)
            return NULL;
    }
    if (plain && n == 1 && first && first[0] == '$')
        plain = false;
    kv_mp_t start = *r;
    if (plain) {
        json_t *o = json_object();
        for (uint32_t i = 0; i < n; i++) {
            const char *k;
            uint32_t kl;
            kv_mp_read_str(r, &k, &kl);
            json_t *v = s_from(r);
            if (!v) {
                json_decref(o);
                return NULL;
            }
            json_object_setn_new(o, k, kl, v);
        }
        if (json_object_size(o) == n)
            return o;
        json_decref(o); /* duplicate keys cannot be a plain object */
        *r = start;
    }
    json_t *pairs = json_array();
    for (uint32_t i = 0; i < n; i++) {
        json_t *k = s_from(r);
        json_t *v = k ? s_from(r) : NULL;
        if (!v) {
            json_decref(k);
            json_decref(pairs);
            return NULL;
        }
        json_array_append_new(pairs, json_pack("[oo]", k, v));
    }
    return s_tag("$map", pairs);
}

static json_t *s_from(kv_mp_t *r)
{
    uint32_t n;
    switch (kv_mp_type(r)) {
    case KV_MP_NIL:
        kv_mp_read_nil(r);
        return json_null();
    case KV_MP_BOOL: {
        bool b;
        kv_mp_read_bool(r, &b);
        return json_boolean(b);
    }
    case KV_MP_INT: {
        int64_t i;
        if (kv_mp_read_int(r, &i) != 0)
            return NULL;
        return json_integer((json_int_t) i);
    }
    case KV_MP_FLOAT: {
        double d;
        if (kv_mp_read_float(r, &d) != 0)
            return NULL;
        if (isnan(d))
            return s_tag("$float", json_string("NaN"));
        if (isinf(d))
            return s_tag("$float", json_string(d > 0 ? "Infinity" : "-Infinity"));
        return json_real(d);
    }
    case KV_MP_STR: {
        const char *s;
        if (kv_mp_read_str(r, &s, &n) != 0)
            return NULL;
        json_t *j = memchr(s, 0, n) ? NULL : json_stringn(s, n);
        return j ? j : s_tag("$string", s_base64((const uint8_t *) s, n));
    }
    case KV_MP_BIN: {
        const uint8_t *b;
        if (kv_mp_read_bin(r, &b, &n) != 0)
            return NULL;
        return s_tag("$bytes", s_base64(b, n));
    }
    case KV_MP_ARRAY: {
        if (kv_mp_read_array(r, &n) != 0 || n > (size_t) (r->end - r->p))
            return NULL;
        json_t *a = json_array();
        for (uint32_t i = 0; i < n; i++) {
            json_t *v = s_from(r);
            if (!v) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, v);
        }
        return a;
    }
    case KV_MP_MAP:
        if (kv_mp_read_map(r, &n) != 0 || n > (size_t) (r->end - r->p))
            return NULL;
        return s_map(r, n);
    default:
        return NULL;
    }
}

json_t *kv_json_from_mp(const uint8_t *buf, size_t len)
{
    if (!kv_mp_valid(buf, len))
        return NULL;
    kv_mp_t r = kv_mp(buf, len);
    return s_from(&r);
}

uint8_t *kv_base64_decode(const char *s, size_t *out_len)
{
    size_t sl = strlen(s);
    uint8_t *b = malloc(sl / 4 * 3 + 3);
    const char *end;
    if (!b)
        return NULL;
    if (sodium_base642bin(b, sl / 4 * 3 + 3, s, sl, NULL, out_len, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 || *end) {
        free(b);
        return NULL;
    }
    return b;
}

static int s_to(const json_t *v, msgpack_packer *pk, char *why, size_t whylen, int depth)
{
    if (depth >= KV_VALUE_MAX_DEPTH && (json_is_array(v) || json_is_object(v))) {
        snprintf(why, whylen, "lists and maps nested deeper than %d levels", KV_VALUE_MAX_DEPTH);
        return -1;
    }
    switch (json_typeof(v)) {
    case JSON_NULL: msgpack_pack_nil(pk); return 0;
    case JSON_TRUE: msgpack_pack_true(pk); return 0;
    case JSON_FALSE: msgpack_pack_false(pk); return 0;
    case JSON_INTEGER: msgpack_pack_int64(pk, json_integer_value(v)); return 0;
    case JSON_REAL: msgpack_pack_double(pk, json_real_value(v)); return 0;
    case JSON_STRING: kv_mp_pack_strn(pk, json_string_value(v), json_string_length(v)); return 0;
    case JSON_ARRAY: {
        msgpack_pack_array(pk, (uint32_t) json_array_size(v));
        for (size_t i = 0; i < json_array_size(v); i++)
            if (s_to(json_array_get(v, i), pk, why, whylen, depth + 1) != 0)
                return -1;
        return 0;
    }
    case JSON_OBJECT: break;
    }
    const char *key;
    json_t *val;
    size_t n = json_object_size(v);
    json_object_foreach((json_t *) v, key, val) {
        if (s_is_tagged_shape(key, n)) {
            if (strcmp(key, "$bytes") == 0 || strcmp(key, "$string") == 0) {
                size_t bl;
                uint8_t *b = json_is_string(val) ? kv_base64_decode(json_string_value(val), &bl) : NULL;
                if (!b) {
                    snprintf(why, whylen, "%s needs a base64 string", key);
                    return -1;
                }
                if (key[1] == 'b') {
                    msgpack_pack_bin(pk, bl);
                    msgpack_pack_bin_body(pk, b, bl);
                } else
                    kv_mp_pack_strn(pk, (const char *) b, bl);
                free(b);
                return 0;
            }
            if (strcmp(key, "$float") == 0) {
                const char *s = json_is_string(val) ? json_string_value(val) : "";
                if (strcmp(s, "NaN") == 0)
                    msgpack_pack_double(pk, NAN);
                else if (strcmp(s, "Infinity") == 0)
                    msgpack_pack_double(pk, INFINITY);
                else if (strcmp(s, "-Infinity") == 0)
                    msgpack_pack_double(pk, -INFINITY);
                else {
                    snprintf(why, whylen, "$float must be \"NaN\", \"Infinity\" or \"-Infinity\"");
                    return -1;
                }
                return 0;
            }
            if (strcmp(key, "$map") == 0) {
                if (!json_is_array(val)) {
                    snprintf(why, whylen, "$map needs an array of [key, value] pairs");
                    return -1;
                }
                msgpack_pack_map(pk, (uint32_t) json_array_size(val));
                for (size_t i = 0; i < json_array_size(val); i++) {
                    json_t *pair = json_array_get(val, i);
                    if (!json_is_array(pair) || json_array_size(pair) != 2) {
                        snprintf(why, whylen, "$map entry %zu is not a [key, value] pair", i + 1);
                        return -1;
                    }
                    if (s_to(json_array_get(pair, 0), pk, why, whylen, depth + 1) != 0
                        || s_to(json_array_get(pair, 1), pk, why, whylen, depth + 1) != 0)
                        return -1;
                }
                return 0;
            }
            snprintf(why, whylen,
                     "unknown type tag \"%s\" (a map with this single key is written "
                     "{\"$map\":[[\"%s\",VALUE]]})", key, key);
            return -1;
        }
        break;
    }
    msgpack_pack_map(pk, (uint32_t) n);
    json_object_foreach((json_t *) v, key, val) {
        kv_mp_pack_cstr(pk, key);
        if (s_to(val, pk, why, whylen, depth + 1) != 0)
            return -1;
    }
    return 0;
}

int kv_json_to_mp(const json_t *v, msgpack_packer *pk, char *why, size_t whylen)
{
    return s_to(v, pk, why, whylen, 0);
}

int kv_json_bins_to_mp(const json_t *bins, msgpack_packer *pk, char *why, size_t whylen)
{
    return s_to(bins, pk, why, whylen, -1); /* the map itself is level -1; its values level 0 */
}

typedef struct {
    char *buf;
    size_t len, cap;
} strbuf_t;

static void s_put(strbuf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb)
            return;
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void s_dump(strbuf_t *b, const json_t *v)
{
    char num[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *c;
        bool first = true;
        s_put(b, "{", 1);
        json_object_foreach((json_t *) v, k, c) {
            if (!first)
                s_put(b, ",", 1);
            first = false;
            json_t *ks = json_string(k);
            s_dump(b, ks);
            json_decref(ks);
            s_put(b, ":", 1);
            s_dump(b, c);
        }
        s_put(b, "}", 1);
        return;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *c;
        s_put(b, "[", 1);
        json_array_foreach(v, i, c) {
            if (i)
                s_put(b, ",", 1);
            s_dump(b, c);
        }
        s_put(b, "]", 1);
        return;
    }
    case JSON_REAL: {
        double d = json_real_value(v);
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(num, sizeof num, "%.*g", prec, d);
            if (strtod(num, NULL) == d)
                break;
        }
        if (!strpbrk(num, ".eEn")) /* keep it a float when read back */
            strcat(num, ".0");
        s_put(b, num, strlen(num));
        return;
    }
    default: {
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        if (s)
            s_put(b, s, strlen(s));
        free(s);
        return;
    }
    }
}

char *kv_json_dumps(const json_t *v)
{
    strbuf_t b = {0};
    s_dump(&b, v);
    return b.buf;
}

/* Round-trip one JSON text through MessagePack and back; compare dumps. */
static void s_roundtrip(const char *text)
{
    json_error_t jerr;
    json_t *in = json_loads(text, JSON_DECODE_ANY, &jerr);
    assert(in);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    char why[256];
    assert(kv_json_to_mp(in, &pk, why, sizeof why) == 0);
    json_t *out = kv_json_from_mp((uint8_t *) sb.data, sb.size);
    assert(out);
    char *a = json_dumps(in, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    char *b = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    assert(strcmp(a, b) == 0);
    free(a);
    free(b);
    json_decref(in);
    json_decref(out);
    msgpack_sbuffer_destroy(&sb);
}

void kv_json_test(bool verbose)
{
    (void) verbose;
    assert(sodium_init() >= 0);
    s_roundtrip("null");
    s_roundtrip("[true,false,0,-1,9223372036854775807,-9223372036854775808]");
    s_roundtrip("[1.5,1.0,-0.0,1e300]");
    s_roundtrip("\"h\\u00e9llo\"");
    s_roundtrip("{\"$bytes\":\"AAEC/w==\"}");
    s_roundtrip("{\"$float\":\"NaN\"}");
    s_roundtrip("{\"$float\":\"-Infinity\"}");
    s_roundtrip("{\"a\":{\"b\":[1,{\"c\":null}]},\"d\":\"x\"}");
    s_roundtrip("{\"$map\":[[1,\"one\"],[2,\"two\"]]}");
    s_roundtrip("{\"$map\":[[\"$price\",5]]}");
    s_roundtrip("{\"$price\":5,\"other\":1}");  /* two keys: a plain map */

    /* shortest float text that reads back exactly; order kept */
    json_t *o = json_pack("{s:f,s:f,s:f,s:f,s:[i,s]}", "a", 29.97, "b", 0.1 + 0.2, "c", 1.0, "d", -1e300, "e", 1, "x\"y");
    char *txt = kv_json_dumps(o);
    assert(strcmp(txt, "{\"a\":29.97,\"b\":0.30000000000000004,\"c\":1.0,\"d\":-1e+300,\"e\":[1,\"x\\\"y\"]}") == 0);
    json_t *back = json_loads(txt, 0, NULL);
    assert(json_real_value(json_object_get(back, "b")) == 0.1 + 0.2);
    json_decref(back);
    free(txt);
    json_decref(o);

    /* a map whose only key starts with '$' is written tagged, not plain */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    kv_mp_pack_cstr(&pk, "$bytes");
    msgpack_pack_int(&pk, 1);
    json_t *j = kv_json_from_mp((uint8_t *) sb.data, sb.size);
    char *s = json_dumps(j, JSON_COMPACT);
    assert(strcmp(s, "{\"$map\":[[\"$bytes\",1]]}") == 0);
    free(s);
    json_decref(j);
    /* invalid UTF-8 in a string survives as $string */
    msgpack_sbuffer_clear(&sb);
    kv_mp_pack_strn(&pk, "\xff\xfe", 2);
    j = kv_json_from_mp((uint8_t *) sb.data, sb.size);
    assert(json_object_get(j, "$string"));
    json_decref(j);
    /* malformed MessagePack gives NULL */
    assert(kv_json_from_mp((const uint8_t *) "\x92\x01", 2) == NULL);
    msgpack_sbuffer_destroy(&sb);

    /* bad tags are refused with a reason */
    const char *bad[] = {"{\"$bytes\":\"***\"}", "{\"$bytes\":5}", "{\"$float\":\"inf\"}",
                         "{\"$map\":[[1]]}", "{\"$map\":1}", "{\"$what\":1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_error_t jerr;
        json_t *v = json_loads(bad[i], 0, &jerr);
        msgpack_sbuffer_init(&sb);
        char why[256] = "";
        assert(kv_json_to_mp(v, &pk, why, sizeof why) == -1 && why[0]);
        msgpack_sbuffer_destroy(&sb);
        json_decref(v);
    }
}
