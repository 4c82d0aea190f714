/* session: kvquery's connection and how it reports a failed request. */
#include "kvquery.h"
#include "kv_err.h"
#include "kv_util.h"
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int kq_connect(kq_t *q)
{
    char why[512];
    if (q->direct && !q->cmap && !(q->cmap = kv_cmap_new(q->endpoint, q->timeout_ms, why, sizeof why))) {
        kv_warn("--direct: %s", why);
        return EXIT_ERROR;
    }
    if (q->client)
        return EXIT_OK;
    q->client = kv_client_new(q->endpoint, why, sizeof why);
    if (!q->client) {
        kv_warn("%s", why);
        return EXIT_ERROR;
    }
    return EXIT_OK;
}

#define WRONG_NODE_RETRIES 5 /* waiting 20, 40, 80, 160, 320 ms */

static bool s_record_op(int op)
{
    return op == KV_OP_GET || op == KV_OP_EXISTS || op == KV_OP_PUT || op == KV_OP_DELETE || op == KV_OP_TOUCH ||
           op == KV_OP_OPERATE;
}

int kq_call(kq_t *q, const char *what, kv_req_t *req, kv_reply_t *rep)
{
    int rc = kq_connect(q);
    if (rc != EXIT_OK)
        return rc;
    char why[512];
    for (int attempt = 0;; attempt++) {
        kv_client_t *c = q->client;
        if (q->direct && s_record_op(req->hdr.op)) {
            int idx = kv_cmap_master(q->cmap, req->hdr.pid);
            if (idx < 0) {
                kv_warn("%s: partition %u has no master in table version %u", what, req->hdr.pid,
                        kv_cmap_table(q->cmap)->version);
                return EXIT_ERROR;
            }
            if (!(c = kv_cmap_client(q->cmap, idx, why, sizeof why))) {
                kv_warn("%s: %s", what, why);
                return EXIT_ERROR;
            }
        }
        if (kv_client_call(c, req, rep, q->timeout_ms) != 0) {
            kv_warn("%s: %s", what, kv_client_error(c));
            return EXIT_ERROR;
        }
        if (rep->hdr.status != KV_ERR_WRONG_NODE || attempt == WRONG_NODE_RETRIES)
            return EXIT_OK;
        kv_reply_close(rep);
        usleep(20000u << attempt);
        if (q->direct && kv_cmap_refresh(q->cmap, why, sizeof why) != 0) {
            kv_warn("%s: %s", what, why);
            return EXIT_ERROR;
        }
    }
}

int kq_report(const char *what, kv_reply_t *rep)
{
    char detail[512];
    const char *name = kv_err_name(rep->hdr.status);
    kv_reply_error(rep, detail, sizeof detail);
    if (*detail && strcmp(detail, name) != 0)
        kv_warn("%s: %s: %s", what, name, detail);
    else
        kv_warn("%s: %s", what, name);
    return kv_err_is_negative(rep->hdr.status) ? EXIT_NEGATIVE : EXIT_ERROR;
}

