/* stream: kvquery commands that move many records (batch, scan, export,
 * import), each keeping several requests in flight. */
#include "kvquery.h"
#include "kv_err.h"
#include "kv_json.h"
#include "kv_mp.h"
#include "kv_record.h"
#include "kv_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

#define BATCH_CHUNK 1000
#define SCAN_STREAMS 4
#define SCAN_PAGE 1000

static bool s_progress_tty(void)
{
    return isatty(STDERR_FILENO);
}

/* ---- batch ------------------------------------------------------------ */

static char *s_chomp(char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return line;
}

/* A batch as one get per key, each to its partition's master: with
 * --direct, and through a router (which does not take BATCH).  The gets
 * of up to BATCH_CHUNK keys are all sent before any answer is read, so
 * the nodes serve them in parallel; records print in the order of the
 * keys; a key's error is reported and the others still print. */
static int s_batch_gets(kq_t *q, const char *ns, const char *set, const kv_key_t *kk, char **keys, int from,
                        int nkeys)
{
    int rc = EXIT_OK;
    char why[512];
    kv_reply_t *reps = calloc(BATCH_CHUNK, sizeof *reps);
    uint64_t *ids = calloc(BATCH_CHUNK, sizeof *ids);
    kv_client_t **via = calloc(BATCH_CHUNK, sizeof *via);
    bool *have = calloc(BATCH_CHUNK, sizeof *have);
    if (!reps || !ids || !via || !have) {
        kv_warn("batch %s/%s: out of memory", ns, set);
        rc = EXIT_ERROR;
        goto out;
    }
    for (int start = from; start < nkeys && rc != EXIT_ERROR; start += BATCH_CHUNK) {
        int n = nkeys - start < BATCH_CHUNK ? nkeys - start : BATCH_CHUNK;
        memset(have, 0, (size_t) n * sizeof *have);
        for (int i = 0; i < n; i++) { /* send them all */
            kv_req_t req;
            kv_req_init(&req, KV_OP_GET);
            if (kv_req_record(&req, ns, set, &kk[start + i], false) != 0) {
                kv_warn("batch %s/%s: set name too long", ns, set);
                kv_req_destroy(&req);
                rc = EXIT_ERROR;
                goto out;
            }
            via[i] = q->client;
            if (q->direct) {
                int idx = kv_cmap_master(q->cmap, req.hdr.pid);
                via[i] = idx < 0 ? NULL : kv_cmap_client(q->cmap, idx, why, sizeof why);
            }
            if (!via[i] || kv_client_send(via[i], &req) != 0) {
                kv_warn("batch %s/%s/%s: %s", ns, set, keys[start + i],
                        via[i] ? kv_client_error(via[i]) : "no master for its partition");
                kv_req_destroy(&req);
                rc = EXIT_ERROR;
                goto out;
            }
            ids[i] = req.hdr.reqid;
            kv_req_destroy(&req);
        }
        for (int i = 0; i < n; i++) /* then read every answer, on the connection it will come on */
            while (!have[i]) {
                kv_reply_t rep;
                if (kv_client_recv(via[i], &rep, q->timeout_ms) != 0) {
                    kv_warn("batch %s/%s: %s", ns, set, kv_client_error(via[i]));
                    rc = EXIT_ERROR;
                    goto out;
                }
                int at = -1;
                for (int j = 0; j < n && at < 0; j++)
                    if (!have[j] && via[j] == via[i] && ids[j] == rep.hdr.reqid)
                        at = j;
                if (at < 0) {
                    kv_reply_close(&rep);
                    continue;
                }
                reps[at] = rep;
                have[at] = true;
            }
        for (int i = 0; i < n; i++) {
            char what[600];
            snprintf(what, sizeof what, "batch %s/%s/%s", ns, set, keys[start + i]);
            kv_reply_t *rep = &reps[i];
            kv_reply_t again;
            if (rep->hdr.status == KV_ERR_WRONG_NODE) { /* the table moved: this key alone, with retries */
                kv_req_t req;
                kv_req_init(&req, KV_OP_GET);
                kv_req_record(&req, ns, set, &kk[start + i], false);
                int r = kq_call(q, what, &req, &again);
                kv_req_destroy(&req);
                kv_reply_close(rep);
                have[i] = false;
                if (r != EXIT_OK) {
                    rc = EXIT_ERROR;
                    continue;
                }
                rep = &again;
            }
            if (rep->hdr.status == KV_OK)
                kq_print_record(q, ns, set, &kk[start + i], kv_reply_data(rep), kv_reply_size(rep));
            else {
                kv_warn("%s: %s", what, kv_err_name(rep->hdr.status));
                if (rc == EXIT_OK)
                    rc = kv_err_is_negative(rep->hdr.status) ? EXIT_NEGATIVE : EXIT_ERROR;
            }
            kv_reply_close(rep);
            have[i] = false;
        }
    }
out:
    for (int i = 0; have && reps && i < BATCH_CHUNK; i++)
        if (have[i])
            kv_reply_close(&reps[i]);
    free(reps);
    free(ids);
    free(via);
    free(have);
    return rc;
}

int kq_cmd_batch(kq_t *q, int argc, char **argv)
{
    const char *ns = argv[0], *set = argv[1];
    char **keys = argv + 2;
    int nkeys = argc - 2;
    char **owned = NULL;
    if (nkeys == 0) { /* keys from stdin, one a line */
        size_t cap = 0, n = 0;
        char *line = NULL;
        size_t lcap = 0;
        while (getline(&line, &lcap, stdin) >= 0) {
            s_chomp(line);
            if (!*line)
                continue;
            if (n == cap)
                owned = realloc(owned, (cap = cap ? 2 * cap : 1024) * sizeof *owned);
            owned[n++] = strdup(line);
        }
        free(line);
        keys = owned;
        nkeys = (int) n;
    }
    int rc = EXIT_OK;
    kv_key_t *kk = calloc((size_t) nkeys + 1, sizeof *kk);
    char why[512];
    for (int i = 0; i < nkeys; i++)
        if (kq_parse_key(q, keys[i], &kk[i], why, sizeof why) != 0) {
            kv_warn("batch %s/%s: %s", ns, set, why);
            rc = EXIT_ERROR;
            goto done;
        }
    if ((rc = kq_connect(q)) != EXIT_OK)
        goto done;
    if (q->direct) {
        rc = s_batch_gets(q, ns, set, kk, keys, 0, nkeys);
        goto done;
    }
    for (int start = 0; start < nkeys;) {
        int n = nkeys - start < BATCH_CHUNK ? nkeys - start : BATCH_CHUNK;
        kv_req_t req;
        kv_req_init(&req, KV_OP_BATCH);
        kv_req_str(&req, "ns", ns, strlen(ns));
        msgpack_packer *pk = kv_req_field(&req, "keys");
        msgpack_pack_array(pk, (uint32_t) n);
        for (int i = 0; i < n; i++) {
            uint8_t d[KV_DIGEST_SIZE];
            if (kv_digest(set, strlen(set), &kk[start + i], d) != 0) {
                kv_warn("batch %s/%s: set name too long", ns, set);
                kv_req_destroy(&req);
                rc = EXIT_ERROR;
                goto done;
            }
            msgpack_pack_bin(pk, KV_DIGEST_SIZE);
            msgpack_pack_bin_body(pk, d, KV_DIGEST_SIZE);
        }
        kv_reply_t rep;
        char what[256];
        snprintf(what, sizeof what, "batch %s/%s", ns, set);
        if (kv_client_call(q->client, &req, &rep, q->timeout_ms) != 0) {
            kv_warn("%s: %s", what, kv_client_error(q->client));
            kv_req_destroy(&req);
            rc = EXIT_ERROR;
            goto done;
        }
        kv_req_destroy(&req);
        if (rep.hdr.status == KV_ERR_UNSUPPORTED && rep.hdr.table_version > 0) {
            /* a router: the keys one by one, through it */
            kv_reply_close(&rep);
            rc = s_batch_gets(q, ns, set, kk, keys, start, nkeys);
            goto done;
        }
        if (rep.hdr.status != KV_OK) {
            rc = kq_report(what, &rep);
            kv_reply_close(&rep);
            goto done;
        }
        kv_mp_t v;
        int64_t ndone = 0;
        uint32_t count;
        const uint8_t *body = kv_reply_data(&rep);
        size_t blen = kv_reply_size(&rep);
        if (kv_body_get(body, blen, "done", &v) != 0 || kv_mp_read_int(&v, &ndone) != 0 || ndone < 1 || ndone > n
            || kv_body_get(body, blen, "records", &v) != 0 || kv_mp_read_array(&v, &count) != 0
            || count != (uint32_t) ndone) {
            kv_warn("%s: malformed reply from %s", what, q->endpoint);
            kv_reply_close(&rep);
            rc = EXIT_ERROR;
            goto done;
        }
        for (uint32_t i = 0; i < count; i++) {
            const uint8_t *rs = v.p;
            kv_mp_skip(&v);
            size_t rl = (size_t) (v.p - rs);
            kv_mp_t st;
            int64_t status = KV_ERR_SERVER;
            if (kv_body_get(rs, rl, "status", &st) == 0)
                kv_mp_read_int(&st, &status);
            if (status == KV_OK)
                kq_print_record(q, ns, set, &kk[start + (int) i], rs, rl);
            else {
                kv_warn("batch %s/%s/%s: %s", ns, set, keys[start + (int) i], kv_err_name((int) status));
                if (rc == EXIT_OK)
                    rc = kv_err_is_negative((int) status) ? EXIT_NEGATIVE : EXIT_ERROR;
            }
        }
        kv_reply_close(&rep);
        start += (int) ndone;
    }
done:
    free(kk);
    for (int i = 0; owned && i < nkeys; i++)
        free(owned[i]);
    free(owned);
    return rc;
}

/* ---- scan and export -------------------------------------------------- */

typedef struct {
    int pfrom, pto;
    uint64_t reqid;
    bool done;
    int page_pid;                 /* the page asked for, to ask again */
    uint8_t after[KV_DIGEST_SIZE];
    bool has_after;
    int retries;                  /* WRONG_NODE / UNAVAILABLE answers in a row */
} stream_t;

static int s_scan_send(kq_t *q, const char *ns, const char *set, stream_t *st, int pid, const uint8_t *after)
{
    kv_req_t req;
    kv_req_scan(&req, ns, set, pid, st->pto, SCAN_PAGE, after);
    int rc = kv_client_send(q->client, &req);
    st->reqid = req.hdr.reqid;
    st->page_pid = pid;
    st->has_after = after != NULL;
    if (after && after != st->after)
        memcpy(st->after, after, KV_DIGEST_SIZE);
    kv_req_destroy(&req);
    return rc;
}

/* Stream every record of ns (and set) to stdout.  Pages are pulled, so the
 * node never holds more than one page per stream for a slow reader. */
static int s_scan(kq_t *q, const char *cmd, const char *ns, const char *set, bool summary)
{
    int rc = kq_connect(q);
    if (rc != EXIT_OK)
        return rc;
    char what[256];
    snprintf(what, sizeof what, "%s %s%s%s", cmd, ns, set ? "/" : "", set ? set : "");
    stream_t st[SCAN_STREAMS];
    int active = 0;
    for (int i = 0; i < SCAN_STREAMS; i++) {
        st[i] = (stream_t){.pfrom = i * KV_PARTITIONS / SCAN_STREAMS, .pto = (i + 1) * KV_PARTITIONS / SCAN_STREAMS};
        if (s_scan_send(q, ns, set, &st[i], st[i].pfrom, NULL) != 0) {
            kv_warn("%s: %s", what, kv_client_error(q->client));
            return EXIT_ERROR;
        }
        active++;
    }
    uint64_t records = 0, t0 = kv_mono_us(), last_progress = kv_mono_ms();
    bool tty = summary && s_progress_tty();
    while (active > 0) {
        kv_reply_t rep;
        if (kv_client_recv(q->client, &rep, q->timeout_ms) != 0) {
            kv_warn("%s: %s", what, kv_client_error(q->client));
            return EXIT_ERROR;
        }
        stream_t *s = NULL;
        for (int i = 0; i < SCAN_STREAMS; i++)
            if (!st[i].done && st[i].reqid == rep.hdr.reqid)
                s = &st[i];
        if (!s) {
            kv_reply_close(&rep);
            continue;
        }
        if ((rep.hdr.status == KV_ERR_WRONG_NODE || rep.hdr.status == KV_ERR_UNAVAILABLE) && s->retries < 5) {
            /* the cluster's table is changing: ask for the page again */
            kv_reply_close(&rep);
            usleep(20000u << s->retries++);
            if (s_scan_send(q, ns, set, s, s->page_pid, s->has_after ? s->after : NULL) != 0) {
                kv_warn("%s: %s", what, kv_client_error(q->client));
                return EXIT_ERROR;
            }
            continue;
        }
        if (rep.hdr.status != KV_OK) {
            rc = kq_report(what, &rep);
            kv_reply_close(&rep);
            return rc;
        }
        s->retries = 0;
        const uint8_t *body = kv_reply_data(&rep);
        size_t blen = kv_reply_size(&rep);
        kv_mp_t v, nx;
        uint32_t count;
        if (kv_body_get(body, blen, "records", &v) != 0 || kv_mp_read_array(&v, &count) != 0
            || kv_body_get(body, blen, "next", &nx) != 0) {
            kv_warn("%s: malformed reply from %s", what, q->endpoint);
            kv_reply_close(&rep);
            return EXIT_ERROR;
        }
        for (uint32_t i = 0; i < count; i++) {
            const uint8_t *rs = v.p;
            if (kv_mp_skip(&v) != 0)
                break;
            kq_print_record(q, ns, set, NULL, rs, (size_t) (v.p - rs));
            records++;
        }
        uint32_t n2;
        int64_t pid;
        const uint8_t *after;
        uint32_t al;
        if (kv_mp_read_nil(&nx) == 0) {
            s->done = true;
            active--;
        } else if (kv_mp_read_array(&nx, &n2) == 0 && (n2 == 1 || n2 == 2) && kv_mp_read_int(&nx, &pid) == 0
                   && (n2 == 1 ? (after = NULL, true)
                               : kv_mp_read_bin(&nx, &after, &al) == 0 && al == KV_DIGEST_SIZE)
                   && pid >= s->pfrom && pid < s->pto) {
            /* [pid]: the node masters no more of the range; pid's master goes on */
            if (s_scan_send(q, ns, set, s, (int) pid, after) != 0) {
                kv_warn("%s: %s", what, kv_client_error(q->client));
                kv_reply_close(&rep);
                return EXIT_ERROR;
            }
        } else {
            kv_warn("%s: malformed scan cursor from %s", what, q->endpoint);
            kv_reply_close(&rep);
            return EXIT_ERROR;
        }
        kv_reply_close(&rep);
        if (fflush(stdout) != 0 || ferror(stdout)) {
            kv_warn("%s: cannot write standard output: %s", what, strerror(errno));
            return EXIT_ERROR;
        }
        if (tty && kv_mono_ms() - last_progress >= 1000) {
            last_progress = kv_mono_ms();
            fprintf(stderr, "\rkvquery: %s: %llu records", cmd, (unsigned long long) records);
        }
    }
    if (summary) {
        double secs = (double) (kv_mono_us() - t0) / 1e6;
        fprintf(stderr, "%skvquery: %s: %llu records in %.3f s\n", tty ? "\r" : "", cmd,
                (unsigned long long) records, secs);
    }
    return EXIT_OK;
}

int kq_cmd_scan(kq_t *q, int argc, char **argv)
{
    return s_scan(q, "scan", argv[0], argc > 1 ? argv[1] : NULL, false);
}

int kq_cmd_export(kq_t *q, int argc, char **argv)
{
    if (q->format != FMT_JSONL) {
        kv_warn("export writes JSON Lines only; drop --format");
        return EXIT_ERROR;
    }
    return s_scan(q, "export", argv[0], argc > 1 ? argv[1] : NULL, true);
}

/* ---- import ----------------------------------------------------------- */

typedef struct {
    uint64_t reqid;
    uint64_t line;
} slot_t;

/* Build a put request from one JSON line.  0, or -1 with a reason. */
static int s_import_req(kq_t *q, const char *ns, const char *text, kv_req_t *req, char *why, size_t whylen)
{
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr);
    if (!o) {
        snprintf(why, whylen, "bad JSON at column %d: %s", jerr.column, jerr.text);
        return -1;
    }
    kv_jrecord_t r;
    int rc = kv_jrecord_parse(&r, o, why, whylen);
    json_decref(o);
    if (rc != 0)
        return -1;
    kv_req_init(req, KV_OP_PUT);
    if (r.key.type)
        kv_req_record(req, ns, r.set, &r.key, !q->no_send_key);
    else {
        memcpy(req->hdr.digest, r.digest, KV_DIGEST_SIZE);
        req->hdr.pid = kv_partition(r.digest);
        kv_req_str(req, "ns", ns, strlen(ns));
        kv_req_str(req, "set", r.set, strlen(r.set));
    }
    int64_t ttl = q->ttl_set ? q->ttl : r.has_ttl ? r.ttl : 0;
    if (ttl)
        kv_req_int(req, "ttl", ttl);
    kv_req_int(req, "exists", q->exists_set ? q->exists : KV_EXISTS_REPLACE);
    kv_req_field(req, "bins");
    msgpack_sbuffer_write(&req->body, r.bins.data, r.bins.size);
    kv_jrecord_destroy(&r);
    return 0;
}

int kq_cmd_import(kq_t *q, int argc, char **argv)
{
    (void) argc;
    const char *ns = argv[0];
    int rc = kq_connect(q);
    if (rc != EXIT_OK)
        return rc;
    int window = (int) q->in_flight;
    slot_t *slots = calloc((size_t) window, sizeof *slots);
    int used = 0;
    uint64_t lineno = 0, ok = 0, failed = 0, negative = 0, t0 = kv_mono_us(), last_progress = kv_mono_ms();
    bool tty = s_progress_tty(), stop = false, fatal = false;
    char *line = NULL;
    size_t lcap = 0;
    char why[1024];
    for (;;) {
        /* fill the window, then collect at least one reply */
        while (!stop && used < window) {
            ssize_t n = getline(&line, &lcap, stdin);
            if (n < 0) {
                stop = true;
                break;
            }
            lineno++;
            s_chomp(line);
            if (!*line)
                continue;
            kv_req_t req;
            if (s_import_req(q, ns, line, &req, why, sizeof why) != 0) {
                kv_warn("import: line %llu: %s", (unsigned long long) lineno, why);
                failed++;
                if (q->strict)
                    stop = true;
                continue;
            }
            if (req.body.size + 64 > KV_FRAME_MAX) {
                kv_warn("import: line %llu: %s: the request is %zu bytes, more than the %d-byte frame limit",
                        (unsigned long long) lineno, kv_err_name(KV_ERR_TOO_BIG), req.body.size, KV_FRAME_MAX);
                kv_req_destroy(&req);
                failed++;
                if (q->strict)
                    stop = true;
                continue;
            }
            if (kv_client_send(q->client, &req) != 0) {
                kv_warn("import: line %llu: %s", (unsigned long long) lineno, kv_client_error(q->client));
                kv_req_destroy(&req);
                stop = fatal = true;
                break;
            }
            slots[used++] = (slot_t){req.hdr.reqid, lineno};
            kv_req_destroy(&req);
        }
        if (used == 0)
            break;
        kv_reply_t rep;
        if (kv_client_recv(q->client, &rep, q->timeout_ms) != 0) {
            kv_warn("import: %s; %d record(s) in flight may or may not have been imported (last line read: %llu)",
                    kv_client_error(q->client), used, (unsigned long long) lineno);
            fatal = true;
            break;
        }
        int k = 0;
        while (k < used && slots[k].reqid != rep.hdr.reqid)
            k++;
        if (k < used) {
            if (rep.hdr.status == KV_OK)
                ok++;
            else {
                char detail[512];
                kv_reply_error(&rep, detail, sizeof detail);
                kv_warn("import: line %llu: %s%s%s", (unsigned long long) slots[k].line, kv_err_name(rep.hdr.status),
                        *detail && strcmp(detail, kv_err_name(rep.hdr.status)) ? ": " : "",
                        strcmp(detail, kv_err_name(rep.hdr.status)) ? detail : "");
                failed++;
                negative += kv_err_is_negative(rep.hdr.status);
                if (q->strict)
                    stop = true;
            }
            slots[k] = slots[--used];
        }
        kv_reply_close(&rep);
        if (tty && kv_mono_ms() - last_progress >= 1000) {
            last_progress = kv_mono_ms();
            double secs = (double) (kv_mono_us() - t0) / 1e6;
            fprintf(stderr, "\rkvquery: import: %llu records, %llu errors (%.0f records/s)", (unsigned long long) ok,
                    (unsigned long long) failed, secs > 0 ? (double) ok / secs : 0.0);
        }
    }
    free(line);
    free(slots);
    double secs = (double) (kv_mono_us() - t0) / 1e6;
    fprintf(stderr, "%skvquery: import: %llu records imported, %llu failed, in %.3f s (%.0f records/s)\n",
            tty ? "\r" : "", (unsigned long long) ok, (unsigned long long) failed, secs,
            secs > 0 ? (double) ok / secs : (double) ok);
    if (fatal || failed > negative)
        return EXIT_ERROR;
    return failed ? EXIT_NEGATIVE : EXIT_OK;
}
