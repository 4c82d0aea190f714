/* scan: the records of a range of partitions of one endpoint, page by
 * page.  The range is split into streams, each with one page request out
 * at a time, asked for as soon as the stream's previous page starts to be
 * read; through a router, where a page stops at every change of master,
 * the streams keep every node busy.  Within a stream records come in
 * partition order, and in digest order within a partition. */
#include "kvrepl.h"
#include "kv_err.h"
#include "kv_mp.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAGE_MAX 1000
#define RETRIES 5 /* WRONG_NODE or UNAVAILABLE in a row, waiting 20..320 ms */

typedef struct {
    int pto;                       /* its range ends here */
    bool inflight;                 /* a page request is out */
    uint64_t reqid;
    int page_pid;                  /* the page asked for, to ask again */
    uint8_t after[KV_DIGEST_SIZE];
    bool has_after;
    int retries;
    kv_reply_t ready;              /* a page that came, not yet read */
    bool have_ready;
    kv_mp_t records;               /* its records */
    uint32_t count;
    int next_pid;                  /* its cursor: -1 the stream is done, */
    uint8_t next_after[KV_DIGEST_SIZE]; /* else where the next page starts */
    bool next_has_after;
} stream_t;

struct kr_scan {
    kv_client_t *c;
    kr_scan_opts_t o;
    stream_t *st;
    int n;
    kv_reply_t cur;                /* the page being read */
    bool have_cur;
    kv_mp_t it;                    /* its next record */
    uint32_t left;                 /* and how many are left */
    uint64_t now;                  /* "now" of the first page (raw) */
    uint64_t minnow;               /* the smallest "now" of the pages (raw) */
    uint64_t *pnow;                /* per partition, "now" of the first page that covered it (raw) */
    char error[512];
};

/* Ask for stream t's page of partition pid after digest after (or from
 * its start). */
static int s_send(kr_scan_t *s, stream_t *t, int pid, const uint8_t *after)
{
    kv_req_t req;
    kv_req_scan(&req, s->o.ns, s->o.set, pid, t->pto, PAGE_MAX, after);
    if (s->o.raw)
        kv_mp_pack_bool(kv_req_field(&req, "raw"), true);
    if (s->o.any)
        kv_mp_pack_bool(kv_req_field(&req, "any"), true);
    if (s->o.since)
        kv_req_int(&req, "since", (int64_t) s->o.since);
    int rc = kv_client_send(s->c, &req);
    kv_req_destroy(&req);
    if (rc != 0) {
        snprintf(s->error, sizeof s->error, "%s", kv_client_error(s->c));
        return -1;
    }
    t->reqid = req.hdr.reqid;
    t->inflight = true;
    t->page_pid = pid;
    t->has_after = after != NULL;
    if (after && after != t->after)
        memcpy(t->after, after, KV_DIGEST_SIZE);
    return 0;
}

kr_scan_t *kr_scan_new(kv_client_t *c, const kr_scan_opts_t *o)
{
    kr_scan_t *s = calloc(1, sizeof *s);
    int width = o->pto - o->pfrom, n = o->streams < 1 ? 1 : o->streams > width ? width : o->streams;
    if (!s || !(s->st = calloc((size_t) n, sizeof *s->st))
        || (o->raw && !(s->pnow = calloc(KV_PARTITIONS, sizeof *s->pnow)))) {
        if (s)
            free(s->st);
        free(s);
        return NULL;
    }
    s->c = c;
    s->o = *o;
    s->n = n;
    for (int i = 0; i < n; i++) {
        int from = o->pfrom + width * i / n;
        s->st[i].pto = o->pfrom + width * (i + 1) / n;
        if (s_send(s, &s->st[i], from, NULL) != 0) {
            kr_scan_destroy(&s);
            return NULL;
        }
    }
    return s;
}

void kr_scan_destroy(kr_scan_t **self_p)
{
    kr_scan_t *s = *self_p;
    if (!s)
        return;
    if (s->have_cur)
        kv_reply_close(&s->cur);
    for (int i = 0; i < s->n; i++)
        if (s->st[i].have_ready)
            kv_reply_close(&s->st[i].ready);
    free(s->st);
    free(s->pnow);
    free(s);
    *self_p = NULL;
}

const char *kr_scan_error(const kr_scan_t *s) { return s->error; }
uint64_t kr_scan_now(const kr_scan_t *s) { return s->now; }
uint64_t kr_scan_minnow(const kr_scan_t *s) { return s->minnow; }
uint64_t kr_scan_pnow(const kr_scan_t *s, int pid) { return s->pnow && pid >= 0 && pid < KV_PARTITIONS ? s->pnow[pid] : 0; }

/* Check a page that came for stream t and keep it as t's ready page, its
 * cursor parsed.  0, or -1 with s->error. */
static int s_take(kr_scan_t *s, stream_t *t, kv_reply_t *rep)
{
    const char *ep = kv_client_endpoint(s->c);
    const uint8_t *body = kv_reply_data(rep);
    size_t blen = kv_reply_size(rep);
    kv_mp_t v, nx;
    uint32_t count, n2, al;
    int64_t pid, now = 0;
    const uint8_t *after = NULL;
    if (kv_body_get(body, blen, "records", &v) != 0 || kv_mp_read_array(&v, &count) != 0
        || kv_body_get(body, blen, "next", &nx) != 0) {
        snprintf(s->error, sizeof s->error, "malformed scan reply from %s", ep);
        return -1;
    }
    if (s->o.raw) {
        kv_mp_t nv;
        if (kv_body_get(body, blen, "now", &nv) != 0 || kv_mp_read_int(&nv, &now) != 0 || now <= 0) {
            snprintf(s->error, sizeof s->error,
                     "no raw scans there (the scan reply has no \"now\": a kvnode older than this kvrepl?)");
            return -1;
        }
        if (s->now == 0)
            s->now = (uint64_t) now;
        if (s->minnow == 0 || (uint64_t) now < s->minnow)
            s->minnow = (uint64_t) now;
    }
    t->next_pid = -1;
    if (kv_mp_read_nil(&nx) != 0) {
        /* [pid, digest] goes on after digest; [pid]: the node masters no
         * more of the range, and pid's master goes on */
        if (kv_mp_read_array(&nx, &n2) != 0 || (n2 != 1 && n2 != 2) || kv_mp_read_int(&nx, &pid) != 0
            || pid < t->page_pid || pid >= t->pto
            || (n2 == 2 && (kv_mp_read_bin(&nx, &after, &al) != 0 || al != KV_DIGEST_SIZE))) {
            snprintf(s->error, sizeof s->error, "malformed scan cursor from %s", ep);
            return -1;
        }
        t->next_pid = (int) pid;
        t->next_has_after = after != NULL;
        if (after)
            memcpy(t->next_after, after, KV_DIGEST_SIZE);
    }
    /* the partitions this page covered, wholly or in part: [page_pid, last] */
    int last = t->next_pid < 0 ? t->pto - 1 : t->next_has_after ? t->next_pid : t->next_pid - 1;
    for (int p = t->page_pid; s->pnow && p <= last; p++)
        if (!s->pnow[p])
            s->pnow[p] = (uint64_t) now;
    t->ready = *rep;
    t->have_ready = true;
    t->records = v;
    t->count = count;
    return 0;
}

/* Receive one page, for whichever stream it is.  0, or -1 with s->error. */
static int s_recv(kr_scan_t *s)
{
    kv_reply_t rep;
    if (kv_client_recv(s->c, &rep, s->o.timeout_ms) != 0) {
        snprintf(s->error, sizeof s->error, "%s", kv_client_error(s->c));
        return -1;
    }
    stream_t *t = NULL;
    for (int i = 0; i < s->n && !t; i++)
        if (s->st[i].inflight && s->st[i].reqid == rep.hdr.reqid)
            t = &s->st[i];
    if (!t) { /* a late answer to something else */
        kv_reply_close(&rep);
        return 0;
    }
    t->inflight = false;
    if ((rep.hdr.status == KV_ERR_WRONG_NODE || rep.hdr.status == KV_ERR_UNAVAILABLE) && t->retries < RETRIES) {
        kv_reply_close(&rep); /* the cluster's table is changing: ask again */
        usleep(20000u << t->retries++);
        return s_send(s, t, t->page_pid, t->has_after ? t->after : NULL);
    }
    char err[400];
    if (rep.hdr.status != KV_OK) {
        snprintf(s->error, sizeof s->error, "%s: %s", kv_err_name(rep.hdr.status), kv_reply_error(&rep, err, sizeof err));
        kv_reply_close(&rep);
        return -1;
    }
    t->retries = 0;
    if (s_take(s, t, &rep) != 0) {
        kv_reply_close(&rep);
        return -1;
    }
    return 0;
}

int kr_scan_next(kr_scan_t *s, kr_rec_t *rec)
{
    for (;;) {
        while (s->have_cur && s->left > 0) {
            const uint8_t *start = s->it.p;
            s->left--;
            char why[256] = "not one MessagePack value";
            if (kv_mp_skip(&s->it) != 0
                || kr_rec_parse(rec, start, (size_t) (s->it.p - start), s->o.raw ? KR_NEED_VOID : 0, why,
                                sizeof why) != 0) {
                snprintf(s->error, sizeof s->error, "malformed record in a scan reply from %s: %s",
                         kv_client_endpoint(s->c), why);
                return -1;
            }
            if (rec->del && !s->o.tombstones)
                continue;
            return 1;
        }
        if (s->have_cur) {
            kv_reply_close(&s->cur);
            s->have_cur = false;
        }
        /* a page that came is read next, and its stream's next page asked for */
        stream_t *t = NULL;
        bool waiting = false;
        for (int i = 0; i < s->n && !t; i++) {
            if (s->st[i].have_ready)
                t = &s->st[i];
            waiting |= s->st[i].inflight;
        }
        if (t) {
            s->cur = t->ready;
            s->have_cur = true;
            s->it = t->records;
            s->left = t->count;
            t->have_ready = false;
            if (t->next_pid >= 0 && s_send(s, t, t->next_pid, t->next_has_after ? t->next_after : NULL) != 0)
                return -1;
            continue;
        }
        if (!waiting)
            return 0;
        if (s_recv(s) != 0)
            return -1;
    }
}

/* The order of an ordered scan: partition, then digest. */
static int s_order(const kr_rec_t *a, const kr_rec_t *b)
{
    int pa = kv_partition(a->digest), pb = kv_partition(b->digest);
    return pa != pb ? pa - pb : memcmp(a->digest, b->digest, KV_DIGEST_SIZE);
}

int kr_join(kr_scan_t *a, kr_scan_t *b, kr_join_fn *fn, void *arg, char *why, size_t whylen)
{
    kr_rec_t ra, rb;
    why[0] = '\0';
    int ha = kr_scan_next(a, &ra), hb = ha < 0 ? 0 : kr_scan_next(b, &rb);
    while (ha >= 0 && hb >= 0 && (ha == 1 || hb == 1)) {
        int c = ha != 1 ? 1 : hb != 1 ? -1 : s_order(&ra, &rb);
        if (fn(arg, c <= 0 ? &ra : NULL, c >= 0 ? &rb : NULL) != 0)
            return -1;
        if (c <= 0)
            ha = kr_scan_next(a, &ra);
        if (c >= 0 && ha >= 0)
            hb = kr_scan_next(b, &rb);
    }
    if (ha < 0 || hb < 0) {
        snprintf(why, whylen, "%s", kr_scan_error(ha < 0 ? a : b));
        return -1;
    }
    return 0;
}
