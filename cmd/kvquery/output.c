/* output: print records and objects as JSON Lines, a table, or raw values. */
#include "kvquery.h"
#include "kv_json.h"
#include "kv_mp.h"
#include "kv_record.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *s_compact(const json_t *v)
{
    return kv_json_dumps(v);
}

static void s_print_table_row(kq_t *q, json_t *rec)
{
    if (!q->header_done) {
        printf("%-12s %-20s %5s %10s  %s\n", "SET", "KEY", "GEN", "TTL", "BINS");
        q->header_done = true;
    }
    json_t *key = json_object_get(rec, "key");
    if (!key)
        key = json_object_get(rec, "digest");
    json_t *set = json_object_get(rec, "set"), *bv = json_object_get(rec, "bins");
    char *ks = !key ? strdup("?") : json_is_string(key) ? strdup(json_string_value(key)) : s_compact(key);
    char *ss = json_is_string(set) ? strdup(json_string_value(set)) : s_compact(set ? set : json_null());
    char *bins = bv ? s_compact(bv) : strdup("{}");
    printf("%-12s %-20s %5lld %10lld  %s\n", ss ? ss : "", ks ? ks : "",
           (long long) json_integer_value(json_object_get(rec, "gen")),
           (long long) json_integer_value(json_object_get(rec, "ttl")), bins ? bins : "");
    free(ss);
    free(ks);
    free(bins);
}

static void s_print_raw(json_t *rec)
{
    const char *name;
    json_t *val;
    json_object_foreach(json_object_get(rec, "bins"), name, val) {
        if (json_is_string(val))
            printf("%s\n", json_string_value(val));
        else {
            char *s = s_compact(val);
            printf("%s\n", s);
            free(s);
        }
    }
}

void kq_print_record(kq_t *q, const char *ns, const char *set, const kv_key_t *key, const uint8_t *map, size_t len)
{
    json_t *rec = kv_record_json(ns, set, key, map, len);
    if (q->format == FMT_TABLE)
        s_print_table_row(q, rec);
    else if (q->format == FMT_RAW)
        s_print_raw(rec);
    else
        kq_print_json(q, rec);
    json_decref(rec);
}

static void s_flatten(const char *prefix, json_t *v)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach(v, k, c) {
            char path[512];
            snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", k);
            s_flatten(path, c);
        }
    } else if (json_is_array(v) && json_array_size(v) && json_is_object(json_array_get(v, 0))) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c) {
            json_t *name = json_object_get(c, "name");
            char path[512];
            if (json_is_string(name))
                snprintf(path, sizeof path, "%s.%s", prefix, json_string_value(name));
            else
                snprintf(path, sizeof path, "%s.%zu", prefix, i);
            s_flatten(path, c);
        }
    } else {
        char *s = json_is_string(v) ? strdup(json_string_value(v)) : s_compact(v);
        printf("%-40s %s\n", prefix, s);
        free(s);
    }
}

void kq_print_json(kq_t *q, json_t *obj)
{
    if (q->format == FMT_TABLE) {
        s_flatten("", obj);
        return;
    }
    char *s = s_compact(obj);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
    }
    free(s);
}
