/* sink: merge requests to one endpoint, pipelined with a bounded number
 * in flight, their answers counted. */
#include "kvrepl.h"
#include "kv_err.h"
#include "kv_mp.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RETRIES 5 /* KEY_BUSY, WRONG_NODE or UNAVAILABLE, waiting 20..320 ms */

typedef struct {
    bool used;
    uint64_t reqid;
    uint64_t tag;
    int tries;
    kv_req_t req; /* kept to send again */
} slot_t;

struct kr_sink {
    kv_client_t *c;
    int window, used, timeout_ms;
    slot_t *slots;
    kr_sink_answer_fn *answer;
    void *arg;
    kr_sink_stats_t st;
    char error[512];
};

kr_sink_t *kr_sink_new(kv_client_t *c, int window, int timeout_ms, kr_sink_answer_fn *answer, void *arg)
{
    kr_sink_t *s = calloc(1, sizeof *s);
    if (!s || !(s->slots = calloc((size_t) window, sizeof *s->slots))) {
        free(s);
        return NULL;
    }
    s->c = c;
    s->window = window;
    s->timeout_ms = timeout_ms;
    s->answer = answer;
    s->arg = arg;
    return s;
}

void kr_sink_destroy(kr_sink_t **self_p)
{
    kr_sink_t *s = *self_p;
    if (!s)
        return;
    for (int i = 0; i < s->window; i++)
        if (s->slots[i].used)
            kv_req_destroy(&s->slots[i].req);
    free(s->slots);
    free(s);
    *self_p = NULL;
}

const kr_sink_stats_t *kr_sink_stats(const kr_sink_t *s) { return &s->st; }
const char *kr_sink_error(const kr_sink_t *s) { return s->error; }
int kr_sink_inflight(const kr_sink_t *s) { return s->used; }

static int s_send_slot(kr_sink_t *s, slot_t *sl)
{
    if (kv_client_send(s->c, &sl->req) != 0) {
        snprintf(s->error, sizeof s->error, "%s", kv_client_error(s->c));
        return -1;
    }
    sl->reqid = sl->req.hdr.reqid;
    return 0;
}

static void s_free_slot(kr_sink_t *s, slot_t *sl)
{
    kv_req_destroy(&sl->req);
    sl->used = false;
    s->used--;
}

/* Receive one answer and account for it.  0, or -1 with s->error. */
static int s_collect(kr_sink_t *s)
{
    kv_reply_t rep;
    if (kv_client_recv(s->c, &rep, s->timeout_ms) != 0) {
        snprintf(s->error, sizeof s->error, "%s (%d merge(s) in flight may or may not have been applied)",
                 kv_client_error(s->c), s->used);
        return -1;
    }
    slot_t *sl = NULL;
    for (int i = 0; i < s->window && !sl; i++)
        if (s->slots[i].used && s->slots[i].reqid == rep.hdr.reqid)
            sl = &s->slots[i];
    if (!sl) { /* a late answer to a request sent again */
        kv_reply_close(&rep);
        return 0;
    }
    int st = rep.hdr.status, rc = 0;
    char detail[400];
    kv_reply_error(&rep, detail, sizeof detail);
    if ((st == KV_ERR_KEY_BUSY || st == KV_ERR_WRONG_NODE || st == KV_ERR_UNAVAILABLE) && sl->tries < RETRIES) {
        kv_reply_close(&rep);
        usleep(20000u << sl->tries++);
        return s_send_slot(s, sl);
    }
    if (st == KV_ERR_UNSUPPORTED) {
        snprintf(s->error, sizeof s->error, "%s does not serve the merge op (%s: %s): a kvnode older than this kvrepl?",
                 kv_client_endpoint(s->c), kv_err_name(st), detail);
        rc = -1;
    } else if (st == KV_OK) {
        kv_mp_t v;
        bool applied;
        if (kv_body_get(kv_reply_data(&rep), kv_reply_size(&rep), "applied", &v) != 0
            || kv_mp_read_bool(&v, &applied) != 0) {
            snprintf(s->error, sizeof s->error, "malformed merge reply from %s (no \"applied\")",
                     kv_client_endpoint(s->c));
            rc = -1;
        } else if (applied)
            s->st.applied++;
        else
            s->st.not_applied++;
    } else
        s->st.failed++;
    if (rc == 0 && s->answer)
        s->answer(s->arg, sl->tag, sl->req.hdr.digest, st, detail);
    kv_reply_close(&rep);
    s_free_slot(s, sl);
    return rc;
}

int kr_sink_send(kr_sink_t *s, kv_req_t *req, uint64_t tag)
{
    while (s->used >= s->window)
        if (s_collect(s) != 0) {
            kv_req_destroy(req);
            return -1;
        }
    slot_t *sl = s->slots;
    while (sl->used)
        sl++;
    *sl = (slot_t){.used = true, .tag = tag, .req = *req}; /* only read from now on: no packer use */
    s->used++;
    s->st.sent++;
    s->st.bytes += KV_HDR_SIZE + 1 + sl->req.body.size;
    return s_send_slot(s, sl);
}

int kr_sink_drain(kr_sink_t *s)
{
    while (s->used > 0)
        if (s_collect(s) != 0)
            return -1;
    return 0;
}
