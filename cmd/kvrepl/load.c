/* load: read a record stream (binary, or kvquery export's JSON Lines) on
 * standard input and apply each record with the merge op, pipelined. */
#include "kvrepl.h"
#include "kv_err.h"
#include "kv_record.h"
#include "kv_util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *unit; /* "record" (binary) or "line" (JSON Lines) */
} load_t;

/* An answer: a merge the node refused is reported with its record, and
 * the load goes on. */
static void s_answer(void *arg, uint64_t tag, const uint8_t *digest, int status, const char *detail)
{
    if (status == KV_OK)
        return;
    load_t *l = arg;
    char hex[2 * KV_DIGEST_SIZE + 1];
    kv_digest_hex(digest, hex);
    kv_warn("load: %s %llu (digest %s): %s%s%s", l->unit, (unsigned long long) tag, hex, kv_err_name(status),
            *detail ? ": " : "", detail);
}

/* The record of one JSON line (kvquery export's form) as a copy to merge:
 * the generation kept (1 if none), the expiry from "ttl" counted from
 * now (-1, 0 or none: never), lut the wall clock now.  The namespace is
 * --ns, else the line's "ns".  0, or -1 with why. */
static int s_jsonl_rec(const kr_opts_t *o, const char *line, char *ns, kv_jrecord_t *jr, msgpack_sbuffer *keybuf,
                       kr_rec_t *rec, char *why, size_t whylen)
{
    json_error_t jerr;
    json_t *j = json_loads(line, 0, &jerr);
    if (!j) {
        snprintf(why, whylen, "bad JSON at column %d: %s", jerr.column, jerr.text);
        return -1;
    }
    json_t *jns = json_object_get(j, "ns"), *jgen = json_object_get(j, "gen");
    int rc = -1;
    if (o->ns)
        snprintf(ns, KV_NS_MAX + 1, "%s", o->ns);
    else if (json_is_string(jns) && json_string_length(jns) >= 1 && json_string_length(jns) <= KV_NS_MAX)
        snprintf(ns, KV_NS_MAX + 1, "%s", json_string_value(jns));
    else {
        snprintf(why, whylen, "no \"ns\" of 1 to %d bytes (give --ns)", KV_NS_MAX);
        goto out;
    }
    if (jgen && (!json_is_integer(jgen) || json_integer_value(jgen) < 1 || json_integer_value(jgen) > UINT32_MAX)) {
        snprintf(why, whylen, "\"gen\" must be an integer from 1 to 4294967295");
        goto out;
    }
    if (kv_jrecord_parse(jr, j, why, whylen) != 0)
        goto out;
    *rec = (kr_rec_t){.gen = jgen ? (uint64_t) json_integer_value(jgen) : 1, .lut = kv_wall_ms(),
                      .voidt = jr->has_ttl && jr->ttl > 0 ? kv_wall_ms() / 1000 + (uint64_t) jr->ttl : 0,
                      .set = jr->set, .set_len = (uint32_t) strlen(jr->set),
                      .bins = (const uint8_t *) jr->bins.data, .bins_len = (uint32_t) jr->bins.size};
    memcpy(rec->digest, jr->digest, KV_DIGEST_SIZE);
    if (jr->key.type) {
        msgpack_sbuffer_clear(keybuf);
        msgpack_packer pk;
        msgpack_packer_init(&pk, keybuf, msgpack_sbuffer_write);
        kv_key_pack(&pk, &jr->key);
        rec->key = (const uint8_t *) keybuf->data;
        rec->key_len = (uint32_t) keybuf->size;
    }
    rc = 0;
out:
    json_decref(j);
    return rc;
}

/* Read JSON lines and send them.  The number of lines that could not be
 * read into *bad; 0, or -1 if the sink failed. */
static int s_load_jsonl(const kr_opts_t *o, kr_sink_t *sink, kr_progress_t *pg, uint64_t *lines, uint64_t *bad)
{
    char *line = NULL, ns[KV_NS_MAX + 1], why[1024];
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    msgpack_sbuffer keybuf;
    msgpack_sbuffer_init(&keybuf);
    while (rc == 0 && (n = getline(&line, &cap, stdin)) >= 0) {
        ++*lines;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (!n)
            continue;
        kv_jrecord_t jr;
        kr_rec_t rec;
        if (s_jsonl_rec(o, line, ns, &jr, &keybuf, &rec, why, sizeof why) != 0) {
            kv_warn("load: line %llu: %s", (unsigned long long) *lines, why);
            ++*bad;
            continue;
        }
        kv_req_t req;
        kr_rec_merge_req(&req, ns, &rec, false);
        kv_jrecord_destroy(&jr);
        rc = kr_sink_send(sink, &req, *lines);
        if (kr_progress_due(pg))
            fprintf(stderr, "\rkvrepl: load: %llu lines (%.0f records/s)", (unsigned long long) *lines,
                    (double) kr_sink_stats(sink)->sent / kr_progress_secs(pg));
    }
    if (rc == 0 && ferror(stdin)) {
        kv_warn("load: cannot read standard input: %s", strerror(errno));
        ++*bad;
    }
    free(line);
    msgpack_sbuffer_destroy(&keybuf);
    return rc;
}

/* Read the binary stream and send its records.  *damaged set if the
 * stream is bad (reported here); 0, or -1 if the sink failed. */
static int s_load_binary(const kr_opts_t *o, kr_sink_t *sink, kr_progress_t *pg, uint64_t *records, bool *damaged)
{
    kr_reader_t r;
    char why[1024], ns[KV_NS_MAX + 1];
    int rc = 0;
    if (kr_reader_begin(&r, stdin, why, sizeof why) != 0) {
        kv_warn("load: %s", why);
        *damaged = true;
        kr_reader_destroy(&r);
        return 0;
    }
    kr_rec_t rec;
    int got;
    while (rc == 0 && (got = kr_reader_next(&r, &rec, why, sizeof why)) != 0) {
        if (got < 0) {
            kv_warn("%sload: %s", kr_progress_cr(pg), why);
            *damaged = true;
            break;
        }
        *records = r.records + r.tombstones;
        if (o->ns)
            snprintf(ns, sizeof ns, "%s", o->ns);
        else
            snprintf(ns, sizeof ns, "%.*s", (int) rec.ns_len, rec.ns);
        kv_req_t req;
        kr_rec_merge_req(&req, ns, &rec, false);
        rc = kr_sink_send(sink, &req, *records);
        if (kr_progress_due(pg))
            fprintf(stderr, "\rkvrepl: load: %llu records (%.0f records/s)", (unsigned long long) *records,
                    (double) *records / kr_progress_secs(pg));
    }
    kr_reader_destroy(&r);
    return rc;
}

int kr_cmd_load(kr_opts_t *o)
{
    char why[1024];
    kr_end_t e;
    load_t l = {.unit = o->format == KR_FMT_JSONL ? "line" : "record"};
    kr_sink_t *sink = NULL;
    if (kr_end_open(&e, o->to, "--to", o->timeout_ms, NULL, why, sizeof why) != 0
        || !(sink = kr_end_sink(&e, o->in_flight, o->timeout_ms, s_answer, &l, why, sizeof why))) {
        kv_warn("load: %s", why);
        kr_end_close(&e);
        return KR_EXIT_ERROR;
    }
    kr_progress_t pg;
    kr_progress_init(&pg);
    uint64_t read = 0, bad = 0;
    bool damaged = false;
    int rc = o->format == KR_FMT_JSONL ? s_load_jsonl(o, sink, &pg, &read, &bad)
                                       : s_load_binary(o, sink, &pg, &read, &damaged);
    if (rc == 0)
        rc = kr_sink_drain(sink);
    if (rc != 0)
        kv_warn("%sload: %s", kr_progress_cr(&pg), kr_sink_error(sink));
    const kr_sink_stats_t *st = kr_sink_stats(sink);
    double secs = kr_progress_secs(&pg);
    bool stopped = rc != 0 || damaged;
    fprintf(stderr,
            "%skvrepl: load: %s%llu %ss read, %llu applied, %llu not applied (the copy there was as new or newer, or "
            "the record had expired), %llu failed, in %.3f s (%.0f records/s)\n",
            kr_progress_cr(&pg), stopped ? "stopped: " : "", (unsigned long long) read, l.unit,
            (unsigned long long) st->applied, (unsigned long long) st->not_applied,
            (unsigned long long) (st->failed + bad), secs, secs > 0 ? (double) st->sent / secs : 0.0);
    int exit_code = stopped || st->failed || bad ? KR_EXIT_ERROR : KR_EXIT_OK;
    kr_end_close(&e);
    return exit_code;
}
