/* args: parse bins, operate ops and keys given on kvquery's command line. */
#include "kvquery.h"
#include "kv_json.h"
#include "kv_mp.h"
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_pack_typed(const char *type, const char *val, msgpack_packer *pk, char *why, size_t whylen)
{
    char *end;
    if (!type || strcmp(type, "str") == 0) {
        kv_mp_pack_cstr(pk, val);
    } else if (strcmp(type, "int") == 0) {
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno || !*val || *end) {
            snprintf(why, whylen, "'%s' is not a 64-bit integer", val);
            return -1;
        }
        msgpack_pack_int64(pk, v);
    } else if (strcmp(type, "float") == 0) {
        errno = 0;
        double v = strtod(val, &end);
        if (errno == ERANGE || !*val || *end) {
            snprintf(why, whylen, "'%s' is not a number", val);
            return -1;
        }
        msgpack_pack_double(pk, v);
    } else if (strcmp(type, "bool") == 0) {
        if (strcmp(val, "true") == 0)
            msgpack_pack_true(pk);
        else if (strcmp(val, "false") == 0)
            msgpack_pack_false(pk);
        else {
            snprintf(why, whylen, "'%s' is not true or false", val);
            return -1;
        }
    } else if (strcmp(type, "bytes") == 0) {
        size_t bl;
        uint8_t *b = kv_base64_decode(val, &bl);
        if (!b) {
            snprintf(why, whylen, "'%s' is not base64", val);
            return -1;
        }
        msgpack_pack_bin(pk, bl);
        msgpack_pack_bin_body(pk, b, bl);
        free(b);
    } else if (strcmp(type, "json") == 0) {
        json_error_t jerr;
        json_t *j = json_loads(val, JSON_DECODE_ANY, &jerr);
        if (!j) {
            snprintf(why, whylen, "bad JSON at column %d: %s", jerr.column, jerr.text);
            return -1;
        }
        int rc = kv_json_to_mp(j, pk, why, whylen);
        json_decref(j);
        return rc;
    } else if (strcmp(type, "nil") == 0) {
        if (*val) {
            snprintf(why, whylen, "a nil value takes nothing after '='");
            return -1;
        }
        msgpack_pack_nil(pk);
    } else {
        snprintf(why, whylen, "unknown type '%s' (str, int, float, bool, bytes, json, nil)", type);
        return -1;
    }
    return 0;
}

/* Split "NAME[:TYPE]=VALUE"; NAME must be 1..15 bytes. */
static int s_split(const char *arg, char *name, size_t name_size, const char **type, const char **val,
                   char *typebuf, size_t typesize, char *why, size_t whylen)
{
    const char *eq = strchr(arg, '=');
    if (!eq) {
        snprintf(why, whylen, "'%s' is not BIN=VALUE", arg);
        return -1;
    }
    size_t n = (size_t) (eq - arg);
    const char *colon = memchr(arg, ':', n);
    *type = NULL;
    if (colon) {
        size_t tl = (size_t) (eq - colon - 1);
        if (tl >= typesize)
            tl = typesize - 1;
        memcpy(typebuf, colon + 1, tl);
        typebuf[tl] = '\0';
        *type = typebuf;
        n = (size_t) (colon - arg);
    }
    if (n == 0 || n > KV_BIN_NAME_MAX || n >= name_size) {
        snprintf(why, whylen, "bin name '%.*s' must be 1 to %d bytes", (int) n, arg, KV_BIN_NAME_MAX);
        return -1;
    }
    memcpy(name, arg, n);
    name[n] = '\0';
    *val = eq + 1;
    return 0;
}

int kq_parse_bin(const char *arg, char *name, size_t name_size, msgpack_packer *pk, char *why, size_t whylen)
{
    const char *type, *val;
    char typebuf[32], inner[256];
    if (s_split(arg, name, name_size, &type, &val, typebuf, sizeof typebuf, why, whylen) != 0)
        return -1;
    kv_mp_pack_cstr(pk, name);
    if (s_pack_typed(type, val, pk, inner, sizeof inner) != 0) {
        snprintf(why, whylen, "bin '%s': %s", name, inner);
        return -1;
    }
    return 0;
}

int kq_parse_op(const char *arg, msgpack_packer *pk, char *why, size_t whylen)
{
    static const struct {
        const char *name;
        int code;
        int form; /* 0: no bin, 1: BIN, 2: BIN=VALUE */
    } ops[] = {
        {"read", KV_OPR_READ, 1},     {"write", KV_OPR_WRITE, 2},     {"add", KV_OPR_ADD, 2},
        {"append", KV_OPR_APPEND, 2}, {"prepend", KV_OPR_PREPEND, 2}, {"delete", KV_OPR_DELETE, 1},
        {"touch", KV_OPR_TOUCH, 0},
    };
    const char *colon = strchr(arg, ':');
    size_t n = colon ? (size_t) (colon - arg) : strlen(arg);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (strlen(ops[i].name) != n || strncmp(arg, ops[i].name, n) != 0)
            continue;
        if (ops[i].form == 0) {
            if (colon) {
                snprintf(why, whylen, "op '%s': touch takes no bin", arg);
                return -1;
            }
            msgpack_pack_array(pk, 1);
            msgpack_pack_int(pk, ops[i].code);
            return 0;
        }
        if (!colon || !colon[1]) {
            snprintf(why, whylen, "op '%s': expected %s:BIN%s", arg, ops[i].name, ops[i].form == 2 ? "=VALUE" : "");
            return -1;
        }
        const char *rest = colon + 1;
        if (ops[i].form == 1) {
            if (strlen(rest) > KV_BIN_NAME_MAX || strchr(rest, '=')) {
                snprintf(why, whylen, "op '%s': bin name must be 1 to %d bytes, with no value", arg, KV_BIN_NAME_MAX);
                return -1;
            }
            msgpack_pack_array(pk, 2);
            msgpack_pack_int(pk, ops[i].code);
            kv_mp_pack_cstr(pk, rest);
            return 0;
        }
        char name[KV_BIN_NAME_MAX + 1], typebuf[32], inner[256];
        const char *type, *val;
        if (s_split(rest, name, sizeof name, &type, &val, typebuf, sizeof typebuf, inner, sizeof inner) != 0) {
            snprintf(why, whylen, "op '%s': %s", arg, inner);
            return -1;
        }
        if (ops[i].code == KV_OPR_ADD && !type) /* a number: int unless it looks like a float */
            type = strpbrk(val, ".eEnN") ? "float" : "int";
        if ((ops[i].code == KV_OPR_APPEND || ops[i].code == KV_OPR_PREPEND) && type && strcmp(type, "str")
            && strcmp(type, "bytes")) {
            snprintf(why, whylen, "op '%s': %s takes a string or bytes", arg, ops[i].name);
            return -1;
        }
        if (ops[i].code == KV_OPR_ADD && strcmp(type, "int") && strcmp(type, "float")) {
            snprintf(why, whylen, "op '%s': add takes an int or a float", arg);
            return -1;
        }
        msgpack_pack_array(pk, 3);
        msgpack_pack_int(pk, ops[i].code);
        kv_mp_pack_cstr(pk, name);
        if (s_pack_typed(type, val, pk, inner, sizeof inner) != 0) {
            snprintf(why, whylen, "op '%s': %s", arg, inner);
            return -1;
        }
        return 0;
    }
    snprintf(why, whylen, "unknown op '%s' (read, write, add, append, prepend, delete, touch)", arg);
    return -1;
}

int kq_parse_key(const kq_t *q, const char *arg, kv_key_t *key, char *why, size_t whylen)
{
    if (q->int_key) {
        char *end;
        errno = 0;
        long long v = strtoll(arg, &end, 10);
        if (errno || !*arg || *end) {
            snprintf(why, whylen, "key '%s' is not a 64-bit integer (--int-key)", arg);
            return -1;
        }
        *key = (kv_key_t){.type = KV_KEY_INT, .i = v};
        return 0;
    }
    size_t n = strlen(arg);
    if (n > KV_KEY_MAX) {
        snprintf(why, whylen, "key is %zu bytes, limit is %d", n, KV_KEY_MAX);
        return -1;
    }
    *key = (kv_key_t){.type = KV_KEY_STRING, .bytes = (const uint8_t *) arg, .len = n};
    return 0;
}

void kq_args_test(bool verbose)
{
    (void) verbose;
    char name[16], why[256];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    const char *good[] = {"name=Alice", "age:int=42", "f:float=1.5", "ok:bool=true", "b:bytes=AAEC",
                          "j:json={\"a\":[1,2]}", "gone:nil=", "s:str=a=b", "empty="};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert(kq_parse_bin(good[i], name, sizeof name, &pk, why, sizeof why) == 0);
    assert(kq_parse_bin("s:str=a=b", name, sizeof name, &pk, why, sizeof why) == 0 && strcmp(name, "s") == 0);
    const char *bad[] = {"noequals", "=x", "age:int=4x", "f:float=", "ok:bool=yes", "b:bytes=***",
                         "j:json={", "t:what=1", "sixteen-bytes-xx=1", "gone:nil=x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = 0;
        assert(kq_parse_bin(bad[i], name, sizeof name, &pk, why, sizeof why) == -1 && why[0]);
    }
    const char *gops[] = {"read:a", "write:a=1", "write:a:int=1", "add:n=5", "add:f=0.5", "append:s=x",
                          "prepend:s=y", "delete:a", "touch"};
    for (size_t i = 0; i < sizeof gops / sizeof gops[0]; i++)
        assert(kq_parse_op(gops[i], &pk, why, sizeof why) == 0);
    const char *bops[] = {"read", "read:", "write:a", "add:n=x", "add:n:str=1", "append:s:int=1", "touch:a",
                          "jump:a", "delete:a=1"};
    for (size_t i = 0; i < sizeof bops / sizeof bops[0]; i++)
        assert(kq_parse_op(bops[i], &pk, why, sizeof why) == -1);
    kq_t q = {.int_key = true};
    kv_key_t k;
    assert(kq_parse_key(&q, "42", &k, why, sizeof why) == 0 && k.type == KV_KEY_INT && k.i == 42);
    assert(kq_parse_key(&q, "4.2", &k, why, sizeof why) == -1);
    q.int_key = false;
    assert(kq_parse_key(&q, "42", &k, why, sizeof why) == 0 && k.type == KV_KEY_STRING && k.len == 2);
    msgpack_sbuffer_destroy(&sb);
}
