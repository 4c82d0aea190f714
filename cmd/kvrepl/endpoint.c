/* endpoint: what is at an endpoint (kvnode or kvroute), and the
 * connections, scans and merges kvrepl uses there. */
#include "kvrepl.h"
#include "kv_err.h"
#include "kv_ptable.h"
#include <stdlib.h>
#include <string.h>

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

