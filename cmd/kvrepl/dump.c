/* dump: write the records of partitions of a kvnode or a cluster to
 * standard output, as a binary stream or as kvquery export's JSON Lines. */
#include "kvrepl.h"
#include "kv_json.h"
#include "kv_record.h"
#include "kv_util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One record as a JSON line, exactly as kvquery export prints it. */
static int s_jsonl(const char *ns, const char *set, const kr_rec_t *rec)
{
    json_t *j = kv_record_json(ns, set, NULL, rec->map, rec->map_len);
    char *t = kv_json_dumps(j);
    json_decref(j);
    if (!t)
        return -1;
    int rc = fputs(t, stdout) < 0 || fputc('\n', stdout) == EOF ? -1 : 0;
    free(t);
    return rc;
}

int kr_cmd_dump(kr_opts_t *o)
{
    const char *ns = o->ns ? o->ns : KR_DEFAULT_NS;
    bool binary = o->format == KR_FMT_BINARY;
    char why[1024], plist[16384];
    kr_end_t e;
    if (kr_end_open(&e, o->from, "--from", o->timeout_ms, NULL, why, sizeof why) != 0) {
        kv_warn("dump: %s", why);
        return KR_EXIT_ERROR;
    }
    kr_plist_format(&o->parts, plist, sizeof plist);
    kr_writer_t w;
    kr_info_t info = {.source = o->from, .ns = ns, .set = o->set, .partitions = plist, .tombstones = o->tombstones};
    kr_progress_t pg;
    kr_progress_init(&pg);
    int rc = KR_EXIT_OK;
    uint64_t records = 0, tombstones = 0;
    if (binary && kr_writer_begin(&w, stdout, &info) != 0) {
        kv_warn("dump: cannot write standard output: %s", strerror(errno));
        kr_writer_destroy(&w);
        kr_end_close(&e);
        return KR_EXIT_ERROR;
    }
    int from = 0, to;
    while (rc == KR_EXIT_OK && kr_plist_next(&o->parts, &from, &to)) {
        /* JSON Lines are export's: a plain scan gives the same record maps */
        kr_scan_opts_t so = {.ns = ns, .set = o->set, .pfrom = from, .pto = to, .raw = binary,
                             .any = e.kind == KR_NODE, .tombstones = o->tombstones, .timeout_ms = o->timeout_ms,
                             .streams = kr_end_streams(&e)};
        kr_scan_t *s = kr_scan_new(e.scan_c, &so);
        kr_rec_t rec;
        int got = s ? 0 : -1;
        while (s && (got = kr_scan_next(s, &rec)) == 1) {
            int wr = binary ? kr_writer_record(&w, ns, strlen(ns), &rec) : s_jsonl(ns, o->set, &rec);
            if (wr != 0) {
                kv_warn("dump: cannot write standard output: %s", strerror(errno));
                rc = KR_EXIT_ERROR;
                break;
            }
            if (rec.del)
                tombstones++;
            else
                records++;
            if (kr_progress_due(&pg))
                fprintf(stderr, "\rkvrepl: dump: %llu records, partition %u (%.0f records/s)", (unsigned long long) records,
                        kv_partition(rec.digest), (double) records / kr_progress_secs(&pg));
        }
        if (got < 0) {
            kv_warn("%sdump: partitions %d-%d of %s: %s", kr_progress_cr(&pg), from, to - 1, o->from,
                    s ? kr_scan_error(s) : kv_client_error(e.scan_c));
            rc = KR_EXIT_ERROR;
        }
        kr_scan_destroy(&s);
        from = to;
    }
    uint64_t bytes = 0;
    if (binary && rc == KR_EXIT_OK && kr_writer_end(&w) != 0) {
        kv_warn("dump: cannot write standard output: %s", strerror(errno));
        rc = KR_EXIT_ERROR;
    }
    if (binary) {
        bytes = w.off;
        kr_writer_destroy(&w);
    }
    if (!binary && fflush(stdout) != 0) {
        kv_warn("dump: cannot write standard output: %s", strerror(errno));
        rc = KR_EXIT_ERROR;
    }
    double secs = kr_progress_secs(&pg);
    fprintf(stderr, "%skvrepl: dump: %s%llu records", kr_progress_cr(&pg), rc == KR_EXIT_OK ? "" : "stopped after ",
            (unsigned long long) records);
    if (o->tombstones)
        fprintf(stderr, ", %llu tombstones", (unsigned long long) tombstones);
    if (binary)
        fprintf(stderr, " (%llu bytes)", (unsigned long long) bytes);
    fprintf(stderr, " of %d partitions from %s in %.3f s (%.0f records/s)\n", o->parts.count, o->from, secs,
            secs > 0 ? (double) records / secs : 0.0);
    kr_end_close(&e);
    return rc;
}
