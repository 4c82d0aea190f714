/* args: partition lists, what an endpoint is (kvnode or kvroute), and
 * progress lines. */
#include "kvrepl.h"
#include "kv_err.h"
#include "kv_ptable.h"
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kv_util.h"

/* A partition id at *p (decimal, 0 to 4095); moves *p past it. */
static int s_pid(const char **p, int *out)
{
    if (!isdigit((unsigned char) **p))
        return -1;
    long v = 0;
    while (isdigit((unsigned char) **p)) {
        v = v * 10 + (**p - '0');
        if (v >= KV_PARTITIONS)
            return -1;
        (*p)++;
    }
    *out = (int) v;
    return 0;
}

int kr_plist_parse(kr_plist_t *pl, const char *s, char *why, size_t whylen)
{
    memset(pl, 0, sizeof *pl);
    const char *p = s;
    if (!*s) {
        snprintf(why, whylen, "an empty list (expected partition ids 0 to %d, e.g. 0-1023 or 5,7,100-200)",
                 KV_PARTITIONS - 1);
        return -1;
    }
    for (;;) {
        const char *item = p;
        int a, b;
        if (s_pid(&p, &a) != 0)
            goto bad;
        b = a;
        if (*p == '-') {
            p++;
            if (s_pid(&p, &b) != 0)
                goto bad;
            if (b < a) {
                snprintf(why, whylen, "'%.*s' is an empty range (its end is before its start)", (int) (p - item), item);
                return -1;
            }
        }
        if (*p && *p != ',')
            goto bad;
        for (int i = a; i <= b; i++) {
            pl->count += !pl->in[i];
            pl->in[i] = true;
        }
        if (!*p)
            return 0;
        p++;
        continue;
    bad:;
        size_t n = strcspn(item, ",");
        snprintf(why, whylen, "'%.*s' is not a partition id (0 to %d) or a range of them (A-B)", (int) n, item,
                 KV_PARTITIONS - 1);
        return -1;
    }
}

void kr_plist_all(kr_plist_t *pl)
{
    for (int i = 0; i < KV_PARTITIONS; i++)
        pl->in[i] = true;
    pl->count = KV_PARTITIONS;
}

bool kr_plist_next(const kr_plist_t *pl, int *from, int *to)
{
    int a = *from;
    while (a < KV_PARTITIONS && !pl->in[a])
        a++;
    if (a >= KV_PARTITIONS)
        return false;
    int b = a;
    while (b < KV_PARTITIONS && pl->in[b])
        b++;
    *from = a;
    *to = b;
    return true;
}

void kr_plist_format(const kr_plist_t *pl, char *out, size_t len)
{
    size_t n = 0;
    out[0] = '\0';
    int a = 0, b;
    while (kr_plist_next(pl, &a, &b) && n < len) {
        int k = b - a == 1 ? snprintf(out + n, len - n, "%s%d", n ? "," : "", a)
                           : snprintf(out + n, len - n, "%s%d-%d", n ? "," : "", a, b - 1);
        n += k > 0 ? (size_t) k : 0;
        a = b;
    }
}

int kr_probe(kv_client_t *c, int timeout_ms, kv_ptable_t *t, char *why, size_t whylen)
{
    kv_req_t req;
    kv_req_init(&req, KV_OP_INFO);
    kv_req_str(&req, "what", "table", 5);
    kv_reply_t rep;
    int rc = kv_client_call(c, &req, &rep, timeout_ms);
    kv_req_destroy(&req);
    if (rc != 0) {
        snprintf(why, whylen, "%s", kv_client_error(c));
        return -1;
    }
    char err[256];
    if (rep.hdr.status == KV_ERR_BAD_REQUEST) /* a kvnode knows no info table */
        rc = KR_NODE;
    else if (rep.hdr.status != KV_OK) {
        snprintf(why, whylen, "%s answers info table with %s: %s", kv_client_endpoint(c), kv_err_name(rep.hdr.status),
                 kv_reply_error(&rep, err, sizeof err));
        rc = -1;
    } else {
        kv_ptable_t *tt = t ? t : malloc(sizeof *tt);
        kv_mp_t v = kv_mp(kv_reply_data(&rep), kv_reply_size(&rep));
        rc = KR_ROUTER;
        if (!tt || kv_ptable_unpack(tt, &v, err, sizeof err) != 0) {
            snprintf(why, whylen, "malformed partition table from %s: %s", kv_client_endpoint(c),
                     tt ? err : "out of memory");
            rc = -1;
        }
        if (!t)
            free(tt);
    }
    kv_reply_close(&rep);
    return rc;
}

int kr_end_open(kr_end_t *e, const char *endpoint, const char *label, int timeout_ms, kv_ptable_t *t, char *why,
                size_t whylen)
{
    memset(e, 0, sizeof *e);
    e->endpoint = endpoint;
    e->label = label;
    char inner[512];
    if (!(e->scan_c = kv_client_new(endpoint, inner, sizeof inner))
        || (e->kind = kr_probe(e->scan_c, timeout_ms, t, inner, sizeof inner)) < 0) {
        snprintf(why, whylen, "%s %s: %s", label, endpoint, inner);
        kr_end_close(e);
        return -1;
    }
    return 0;
}

kr_sink_t *kr_end_sink(kr_end_t *e, int window, int timeout_ms, kr_sink_answer_fn *answer, void *arg, char *why,
                       size_t whylen)
{
    if (e->sink)
        return e->sink;
    char inner[512];
    if (!e->merge_c && !(e->merge_c = kv_client_new(e->endpoint, inner, sizeof inner))) {
        snprintf(why, whylen, "%s %s: %s", e->label, e->endpoint, inner);
        return NULL;
    }
    if (!(e->sink = kr_sink_new(e->merge_c, window, timeout_ms, answer, arg)))
        snprintf(why, whylen, "out of memory");
    return e->sink;
}

void kr_end_close(kr_end_t *e)
{
    kr_sink_destroy(&e->sink);
    kv_client_destroy(&e->merge_c);
    kv_client_destroy(&e->scan_c);
}

int kr_end_streams(const kr_end_t *e)
{
    return e->kind == KR_ROUTER ? 16 : 2;
}

kr_scan_t *kr_end_scan(kr_end_t *e, const char *ns, const char *set, int pfrom, int pto, bool tombstones,
                       bool ordered, int timeout_ms, char *why, size_t whylen)
{
    kr_scan_opts_t so = {.ns = ns, .set = set, .pfrom = pfrom, .pto = pto, .raw = true, .any = e->kind == KR_NODE,
                         .tombstones = tombstones, .timeout_ms = timeout_ms,
                         .streams = ordered ? 1 : kr_end_streams(e)};
    kr_scan_t *s = kr_scan_new(e->scan_c, &so);
    if (!s)
        snprintf(why, whylen, "%s %s: %s", e->label, e->endpoint, kv_client_error(e->scan_c));
    return s;
}

void kr_progress_init(kr_progress_t *p)
{
    p->tty = isatty(STDERR_FILENO);
    p->t0_us = kv_mono_us();
    p->last_ms = kv_mono_ms();
}

bool kr_progress_due(kr_progress_t *p)
{
    if (!p->tty || kv_mono_ms() - p->last_ms < 1000)
        return false;
    p->last_ms = kv_mono_ms();
    return true;
}

double kr_progress_secs(const kr_progress_t *p)
{
    return (double) (kv_mono_us() - p->t0_us) / 1e6;
}

const char *kr_progress_cr(const kr_progress_t *p)
{
    return p->tty ? "\r" : "";
}

void kr_args_test(bool verbose)
{
    (void) verbose;
    kr_plist_t pl;
    char why[256], out[256];
    assert(kr_plist_parse(&pl, "0-1023", why, sizeof why) == 0 && pl.count == 1024 && pl.in[1023] && !pl.in[1024]);
    assert(kr_plist_parse(&pl, "5,7,100-200,7,4095", why, sizeof why) == 0 && pl.count == 104);
    kr_plist_format(&pl, out, sizeof out);
    assert(strcmp(out, "5,7,100-200,4095") == 0);
    int a = 0, b;
    assert(kr_plist_next(&pl, &a, &b) && a == 5 && b == 6);
    a = 8;
    assert(kr_plist_next(&pl, &a, &b) && a == 100 && b == 201);
    a = 4095;
    assert(kr_plist_next(&pl, &a, &b) && a == 4095 && b == 4096);
    a = 4096;
    assert(!kr_plist_next(&pl, &a, &b));
    static const struct {
        const char *in, *why;
    } bad[] = {
        {"", "empty list"},           {"4096", "'4096' is not a partition id"}, {"5-3", "'5-3' is an empty range"},
        {"1,,2", "'' is not"},        {"x", "'x' is not"},                      {"1-", "'1-' is not"},
        {"-1", "'-1' is not"},        {"1 2", "'1 2' is not"},                  {"0-4096", "'0-4096' is not"},
        {"3,", "'' is not"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        assert(kr_plist_parse(&pl, bad[i].in, why, sizeof why) == -1);
        assert(strstr(why, bad[i].why));
    }
    kr_plist_all(&pl);
    kr_plist_format(&pl, out, sizeof out);
    assert(strcmp(out, "0-4095") == 0 && pl.count == KV_PARTITIONS);
}
