/* session: kvquery's connection and how it reports a failed request. */
#include "kvquery.h"
#include "kv_err.h"
#include "kv_util.h"
#include <stdio.h>
#include <string.h>

int kq_connect(kq_t *q)
{
    if (q->client)
        return EXIT_OK;
    char why[512];
    q->client = kv_client_new(q->endpoint, why, sizeof why);
    if (!q->client) {
        kv_warn("%s", why);
        return EXIT_ERROR;
    }
    return EXIT_OK;
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

