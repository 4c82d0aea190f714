/* kv_record: records to and from their JSON Lines form (see kv_record.h). */
#include "kv_record.h"
#include "kv_client.h"
#include "kv_json.h"
#include "kv_mp.h"
#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kv_key_pack(msgpack_packer *pk, const kv_key_t *key)
{
    if (key->type == KV_KEY_INT)
        msgpack_pack_int64(pk, key->i);
    else if (key->type == KV_KEY_STRING)
        kv_mp_pack_strn(pk, (const char *) key->bytes, key->len);
    else {
        msgpack_pack_bin(pk, key->len);
        msgpack_pack_bin_body(pk, key->bytes, key->len);
    }
}

json_t *kv_key_json(const kv_key_t *key)
{
    if (key->type == KV_KEY_INT)
        return json_integer(key->i);
    /* the same JSON as the key's MessagePack form, so put, get and export agree */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    kv_key_pack(&pk, key);
    json_t *j = kv_json_from_mp((const uint8_t *) sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return j;
}

/* value of key in map as JSON, or NULL */
static json_t *s_get_json(const uint8_t *map, size_t len, const char *key)
{
    kv_mp_t v;
    if (kv_body_get(map, len, key, &v) != 0)
        return NULL;
    const uint8_t *start = v.p;
    if (kv_mp_skip(&v) != 0)
        return NULL;
    return kv_json_from_mp(start, (size_t) (v.p - start));
}

json_t *kv_record_json(const char *ns, const char *set, const kv_key_t *key, const uint8_t *map, size_t len)
{
    json_t *o = json_object();
    json_object_set_new(o, "ns", json_string(ns));
    json_t *rset = s_get_json(map, len, "set");
    json_object_set_new(o, "set", rset ? rset : json_string(set ? set : ""));
    json_t *rkey = s_get_json(map, len, "key");
    if (!rkey && key)
        rkey = kv_key_json(key);
    if (rkey)
        json_object_set_new(o, "key", rkey);
    else {
        kv_mp_t v;
        const uint8_t *d;
        uint32_t n;
        if (kv_body_get(map, len, "digest", &v) == 0 && kv_mp_read_bin(&v, &d, &n) == 0 && n == KV_DIGEST_SIZE) {
            char hex[2 * KV_DIGEST_SIZE + 1];
            kv_digest_hex(d, hex);
            json_object_set_new(o, "digest", json_string(hex));
        }
    }
    json_t *v;
    if ((v = s_get_json(map, len, "gen")))
        json_object_set_new(o, "gen", v);
    if ((v = s_get_json(map, len, "ttl")))
        json_object_set_new(o, "ttl", v);
    if ((v = s_get_json(map, len, "bins")))
        json_object_set_new(o, "bins", v);
    if ((v = s_get_json(map, len, "deleted"))) /* a write removed the last bin */
        json_object_set_new(o, "deleted", v);
    return o;
}

/* "key": a string, an integer, {"$bytes":B64} or {"$string":B64}, copied
 * into r->key_buf.  0, or -1 with a reason. */
static int s_parse_key(kv_jrecord_t *r, const json_t *jkey, char *why, size_t whylen)
{
    if (json_is_integer(jkey)) {
        r->key = (kv_key_t){.type = KV_KEY_INT, .i = json_integer_value(jkey)};
        return 0;
    }
    const uint8_t *b;
    uint32_t bl;
    int type = KV_KEY_STRING;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (json_is_string(jkey)) {
        b = (const uint8_t *) json_string_value(jkey);
        bl = json_string_length(jkey) > UINT32_MAX ? UINT32_MAX : (uint32_t) json_string_length(jkey);
    } else if (json_is_object(jkey) && json_object_size(jkey) == 1
               && (json_object_get(jkey, "$bytes") || json_object_get(jkey, "$string"))) {
        /* {"$bytes":B64} is a bytes key, {"$string":B64} a string key that is not UTF-8 */
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        kv_mp_t rd;
        bool bytes = json_object_get(jkey, "$bytes") != NULL;
        char inner[256];
        type = bytes ? KV_KEY_BYTES : KV_KEY_STRING;
        if (kv_json_to_mp(jkey, &pk, inner, sizeof inner) != 0
            || (rd = kv_mp(sb.data, sb.size),
                bytes ? kv_mp_read_bin(&rd, &b, &bl) : kv_mp_read_str(&rd, (const char **) &b, &bl)) != 0) {
            msgpack_sbuffer_destroy(&sb);
            snprintf(why, whylen, "\"key\": %s needs a base64 string", bytes ? "$bytes" : "$string");
            return -1;
        }
    } else {
        snprintf(why, whylen, "\"key\" must be a string, an integer, {\"$bytes\":BASE64} or {\"$string\":BASE64}");
        return -1;
    }
    int rc = 0;
    if (bl > KV_KEY_MAX) {
        snprintf(why, whylen, "key is longer than %d bytes", KV_KEY_MAX);
        rc = -1;
    } else {
        memcpy(r->key_buf, b, bl);
        r->key = (kv_key_t){.type = type, .bytes = r->key_buf, .len = bl};
    }
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* "bins": a non-empty object, plain or tagged, into r->bins. */
static int s_parse_bins(kv_jrecord_t *r, const json_t *jbins, char *why, size_t whylen)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, &r->bins, msgpack_sbuffer_write);
    const char *name;
    json_t *val;
    char inner[256];
    if (json_object_size(jbins) == 1 && json_object_iter_key(json_object_iter((json_t *) jbins))[0] == '$') {
        /* bins export wrote as a tagged map ({"$map":[...]}, e.g. a single
         * bin whose name starts with '$'): convert it whole; the node checks
         * the names */
        if (kv_json_bins_to_mp(jbins, &pk, inner, sizeof inner) != 0) {
            snprintf(why, whylen, "\"bins\": %s", inner);
            return -1;
        }
        return 0;
    }
    msgpack_pack_map(&pk, (uint32_t) json_object_size(jbins));
    json_object_foreach((json_t *) jbins, name, val) {
        if (strlen(name) == 0 || strlen(name) > KV_BIN_NAME_MAX) {
            snprintf(why, whylen, "bin name '%s' must be 1 to %d bytes", name, KV_BIN_NAME_MAX);
            return -1;
        }
        kv_mp_pack_cstr(&pk, name);
        if (kv_json_to_mp(val, &pk, inner, sizeof inner) != 0) {
            snprintf(why, whylen, "bin '%s': %s", name, inner);
            return -1;
        }
    }
    return 0;
}

int kv_jrecord_parse(kv_jrecord_t *r, const json_t *o, char *why, size_t whylen)
{
    memset(r, 0, offsetof(kv_jrecord_t, bins));
    msgpack_sbuffer_init(&r->bins);
    json_t *jset = json_object_get(o, "set"), *jkey = json_object_get(o, "key"), *jdig = json_object_get(o, "digest");
    json_t *jttl = json_object_get(o, "ttl"), *jbins = json_object_get(o, "bins");
    if (jset && !json_is_string(jset)) {
        snprintf(why, whylen, "\"set\" must be a string");
        goto fail;
    }
    if (jset && json_string_length(jset) > KV_SET_MAX) {
        snprintf(why, whylen, "set name is longer than %d bytes", KV_SET_MAX);
        goto fail;
    }
    if (jset)
        memcpy(r->set, json_string_value(jset), json_string_length(jset) + 1);
    if (!json_is_object(jbins) || json_object_size(jbins) == 0) {
        snprintf(why, whylen, "\"bins\" must be a non-empty object");
        goto fail;
    }
    if (jkey) {
        if (s_parse_key(r, jkey, why, whylen) != 0)
            goto fail;
        if (kv_digest(r->set, strlen(r->set), &r->key, r->digest) != 0) {
            snprintf(why, whylen, "cannot compute the digest of the key");
            goto fail;
        }
    } else if (json_is_string(jdig)) {
        if (kv_digest_parse(json_string_value(jdig), r->digest) != 0) {
            snprintf(why, whylen, "\"digest\" must be 40 hex digits");
            goto fail;
        }
    } else {
        snprintf(why, whylen, "a record needs \"key\" (or \"digest\")");
        goto fail;
    }
    if (jttl) {
        if (!json_is_integer(jttl) || json_integer_value(jttl) < -1 || json_integer_value(jttl) > KV_TTL_MAX) {
            snprintf(why, whylen, "\"ttl\" must be an integer from -1 to %d", KV_TTL_MAX);
            goto fail;
        }
        r->has_ttl = true;
        r->ttl = json_integer_value(jttl);
    }
    if (s_parse_bins(r, jbins, why, whylen) != 0)
        goto fail;
    return 0;
fail:
    kv_jrecord_destroy(r);
    return -1;
}

void kv_jrecord_destroy(kv_jrecord_t *r)
{
    msgpack_sbuffer_destroy(&r->bins);
    msgpack_sbuffer_init(&r->bins);
}

/* parse one JSON text; 0 or -1 with why */
static int s_parse_text(kv_jrecord_t *r, const char *text, char *why, size_t whylen)
{
    json_t *o = json_loads(text, 0, NULL);
    assert(o);
    int rc = kv_jrecord_parse(r, o, why, whylen);
    json_decref(o);
    return rc;
}

void kv_record_test(bool verbose)
{
    (void) verbose;
    char why[256];
    kv_jrecord_t r;
    /* a string key: digest of set and key, as kvproto(7) gives it */
    assert(s_parse_text(&r, "{\"set\":\"users\",\"key\":\"alice\",\"ttl\":-1,\"bins\":{\"n\":1}}", why, sizeof why) == 0);
    char hex[2 * KV_DIGEST_SIZE + 1];
    kv_digest_hex(r.digest, hex);
    assert(strcmp(hex, "5c8f120d14688011e188f63e3608cf4c8fd31038") == 0);
    assert(r.key.type == KV_KEY_STRING && r.key.len == 5 && r.has_ttl && r.ttl == -1);
    assert(r.bins.size == 4 && memcmp(r.bins.data, "\x81\xa1n\x01", 4) == 0);
    kv_jrecord_destroy(&r);
    /* an integer key, a bytes key, a digest only */
    assert(s_parse_text(&r, "{\"set\":\"users\",\"key\":42,\"bins\":{\"n\":1}}", why, sizeof why) == 0);
    kv_digest_hex(r.digest, hex);
    assert(strcmp(hex, "eeac15389f12742168febb94cba6920e2ef4b963") == 0 && !r.has_ttl);
    kv_jrecord_destroy(&r);
    assert(s_parse_text(&r, "{\"key\":{\"$bytes\":\"AAE=\"},\"bins\":{\"n\":1}}", why, sizeof why) == 0);
    assert(r.key.type == KV_KEY_BYTES && r.key.len == 2 && r.key.bytes[1] == 1);
    kv_jrecord_destroy(&r);
    assert(s_parse_text(&r, "{\"digest\":\"5c8f120d14688011e188f63e3608cf4c8fd31038\",\"bins\":{\"n\":1}}", why,
                        sizeof why) == 0);
    assert(r.key.type == KV_KEY_NONE && r.digest[0] == 0x5c);
    kv_jrecord_destroy(&r);
    /* each fault has its reason */
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"{\"set\":1,\"key\":\"a\",\"bins\":{\"n\":1}}", "\"set\" must be a string"},
        {"{\"key\":\"a\",\"bins\":{}}", "\"bins\" must be a non-empty object"},
        {"{\"key\":[1],\"bins\":{\"n\":1}}", "\"key\" must be"},
        {"{\"key\":{\"$bytes\":\"***\"},\"bins\":{\"n\":1}}", "$bytes needs a base64 string"},
        {"{\"digest\":\"5c\",\"bins\":{\"n\":1}}", "40 hex digits"},
        {"{\"bins\":{\"n\":1}}", "needs \"key\""},
        {"{\"key\":\"a\",\"ttl\":-2,\"bins\":{\"n\":1}}", "\"ttl\" must be"},
        {"{\"key\":\"a\",\"bins\":{\"sixteen-bytes-xx\":1}}", "must be 1 to 15 bytes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        assert(s_parse_text(&r, bad[i].text, why, sizeof why) == -1 && strstr(why, bad[i].why));
    }
    /* a reply's record map -> the export line */
    json_t *m = json_loads("{\"gen\":3,\"ttl\":-1,\"lut\":1700000000000,"
                           "\"digest\":{\"$bytes\":\"MDEyMzQ1Njc4OTAxMjM0NTY3ODk=\"},\"bins\":{\"n\":1}}",
                           0, NULL);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    assert(m && kv_json_to_mp(m, &pk, why, sizeof why) == 0);
    json_decref(m);
    json_t *o = kv_record_json("test", NULL, NULL, (const uint8_t *) sb.data, sb.size);
    char *txt = kv_json_dumps(o);
    assert(strcmp(txt, "{\"ns\":\"test\",\"set\":\"\",\"digest\":\"3031323334353637383930313233343536373839\","
                       "\"gen\":3,\"ttl\":-1,\"bins\":{\"n\":1}}") == 0);
    free(txt);
    json_decref(o);
    kv_key_t k = {.type = KV_KEY_STRING, .bytes = (const uint8_t *) "bob", .len = 3};
    o = kv_record_json("test", "users", &k, (const uint8_t *) sb.data, sb.size);
    assert(strcmp(json_string_value(json_object_get(o, "key")), "bob") == 0);
    json_decref(o);
    msgpack_sbuffer_destroy(&sb);
}
