/* kv_cmap: a smart client's cluster map (see kv_cmap.h). */
#include "kv_cmap.h"
#include "kv_err.h"
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kv_cmap {
    kv_client_t *router;
    int timeout_ms;
    kv_ptable_t table;
    uint8_t (*rows)[KV_RF_MAX];
    kv_client_t *clients[KV_NODES_MAX]; /* by node index of table */
};

kv_cmap_t *kv_cmap_new(const char *router, int timeout_ms, char *why, size_t whylen)
{
    kv_cmap_t *m = calloc(1, sizeof *m);
    if (!m || !(m->rows = calloc(KV_PARTITIONS, sizeof *m->rows))) {
        free(m);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    m->timeout_ms = timeout_ms;
    if (!(m->router = kv_client_new(router, why, whylen)) || kv_cmap_refresh(m, why, whylen) != 0) {
        kv_cmap_destroy(&m);
        return NULL;
    }
    return m;
}

void kv_cmap_destroy(kv_cmap_t **self_p)
{
    kv_cmap_t *m = *self_p;
    if (!m)
        return;
    for (int i = 0; i < KV_NODES_MAX; i++)
        kv_client_destroy(&m->clients[i]);
    kv_client_destroy(&m->router);
    free(m->rows);
    free(m);
    *self_p = NULL;
}

int kv_cmap_refresh(kv_cmap_t *m, char *why, size_t whylen)
{
    kv_req_t req;
    kv_req_init(&req, KV_OP_INFO);
    kv_req_str(&req, "what", "table", 5);
    kv_reply_t rep;
    int rc = kv_client_call(m->router, &req, &rep, m->timeout_ms);
    kv_req_destroy(&req);
    if (rc != 0) {
        snprintf(why, whylen, "cannot fetch the partition table: %s", kv_client_error(m->router));
        return -1;
    }
    kv_ptable_t *t = malloc(sizeof *t);
    kv_mp_t v = kv_mp(kv_reply_data(&rep), kv_reply_size(&rep));
    char inner[300], err[300];
    if (rep.hdr.status != KV_OK) {
        snprintf(why, whylen, "%s does not give a partition table (is it a kvroute?): %s: %s",
                 kv_client_endpoint(m->router), kv_err_name(rep.hdr.status), kv_reply_error(&rep, err, sizeof err));
        rc = -1;
    } else if (!t || kv_ptable_unpack(t, &v, inner, sizeof inner) != 0) {
        snprintf(why, whylen, "malformed partition table from %s: %s", kv_client_endpoint(m->router),
                 t ? inner : "out of memory");
        rc = -1;
    } else if (t->version == 0) {
        snprintf(why, whylen, "the cluster at %s has no partition table yet", kv_client_endpoint(m->router));
        rc = -1;
    } else {
        /* connections to nodes whose place in the table changed are dropped */
        for (int i = 0; i < KV_NODES_MAX; i++)
            if (m->clients[i] && (i >= t->n || t->nodes[i].id != m->table.nodes[i].id ||
                                  strcmp(t->nodes[i].endpoint, m->table.nodes[i].endpoint) != 0))
                kv_client_destroy(&m->clients[i]);
        m->table = *t;
        kv_ptable_rows(&m->table, m->rows);
    }
    free(t);
    kv_reply_close(&rep);
    return rc;
}

const kv_ptable_t *kv_cmap_table(const kv_cmap_t *m) { return &m->table; }

int kv_cmap_master(const kv_cmap_t *m, uint16_t pid)
{
    uint8_t i = m->rows[pid & (KV_PARTITIONS - 1)][0];
    return i == UINT8_MAX ? -1 : i;
}

kv_client_t *kv_cmap_client(kv_cmap_t *m, int idx, char *why, size_t whylen)
{
    if (idx < 0 || idx >= m->table.n) {
        snprintf(why, whylen, "no such node in table version %u", m->table.version);
        return NULL;
    }
    if (!m->clients[idx])
        m->clients[idx] = kv_client_new(m->table.nodes[idx].endpoint, why, whylen);
    return m->clients[idx];
}

void kv_cmap_test(bool verbose)
{
    (void) verbose;
    char why[512];
    /* nothing listens there: refused, with the reason */
    assert(kv_cmap_new("tcp://127.0.0.1:1", 2000, why, sizeof why) == NULL && strstr(why, "partition table"));
    assert(kv_cmap_new("nonsense", 2000, why, sizeof why) == NULL && strstr(why, "nonsense"));
}
