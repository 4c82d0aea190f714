/* kv_client: DEALER client with pipelining and connection monitoring. */
#include "kv_client.h"
#include "kv_err.h"
#include "kv_record.h"
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct kv_client {
    void *ctx;
    void *sock;
    void *monitor;
    char *endpoint;
    bool connected;     /* a connection was made at least once */
    bool lost;          /* a connection was lost while requests were in flight */
    bool refused;
    uint64_t next_id;
    int inflight;
    uint8_t *out;       /* requests queued, not yet sent: one frame */
    size_t out_len, out_cap;
    int out_reqs;
    zmq_msg_t frame;    /* the reply frame being read, */
    bool have_frame;
    size_t roff;        /* and where its next reply starts */
    char error[512];
};

/* A frame goes out when it holds this many requests or bytes. */
#define OUT_REQS 256
#define OUT_BYTES (256u << 10)

static uint64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

kv_client_t *kv_client_new(const char *endpoint, char *why, size_t whylen)
{
    kv_client_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->ctx = zmq_ctx_new();
    self->sock = zmq_socket(self->ctx, ZMQ_DEALER);
    self->endpoint = strdup(endpoint);
    self->next_id = 1;
    int linger = 0;
    int64_t maxmsg = 64 << 20;
    int hwm = 100000;
    zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(self->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(self->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://kv-client-monitor-%p", (void *) self);
    zmq_socket_monitor(self->sock, mon,
                       ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_DISCONNECTED);
    self->monitor = zmq_socket(self->ctx, ZMQ_PAIR);
    zmq_setsockopt(self->monitor, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(self->monitor, mon);
    if (zmq_connect(self->sock, endpoint) != 0) {
        snprintf(why, whylen, "bad endpoint '%s': %s", endpoint, zmq_strerror(errno));
        kv_client_destroy(&self);
        return NULL;
    }
    return self;
}

void kv_client_destroy(kv_client_t **self_p)
{
    kv_client_t *self = *self_p;
    if (!self)
        return;
    if (self->have_frame)
        zmq_msg_close(&self->frame);
    free(self->out);
    zmq_socket_monitor(self->sock, NULL, 0);
    zmq_close(self->monitor);
    zmq_close(self->sock);
    zmq_ctx_term(self->ctx);
    free(self->endpoint);
    free(self);
    *self_p = NULL;
}

const char *kv_client_endpoint(const kv_client_t *self) { return self->endpoint; }
const char *kv_client_error(const kv_client_t *self) { return self->error; }
int kv_client_inflight(const kv_client_t *self) { return self->inflight; }

void kv_req_init(kv_req_t *req, int op)
{
    memset(&req->hdr, 0, sizeof req->hdr);
    req->hdr.op = (uint8_t) op;
    req->nfields = 0;
    msgpack_sbuffer_init(&req->body);
    msgpack_packer_init(&req->pk, &req->body, msgpack_sbuffer_write);
}

void kv_req_destroy(kv_req_t *req)
{
    msgpack_sbuffer_destroy(&req->body);
}

msgpack_packer *kv_req_field(kv_req_t *req, const char *key)
{
    req->nfields++;
    kv_mp_pack_cstr(&req->pk, key);
    return &req->pk;
}

void kv_req_str(kv_req_t *req, const char *key, const char *val, size_t len)
{
    kv_mp_pack_strn(kv_req_field(req, key), val, len);
}

void kv_req_int(kv_req_t *req, const char *key, int64_t val)
{
    msgpack_pack_int64(kv_req_field(req, key), val);
}

int kv_req_record(kv_req_t *req, const char *ns, const char *set, const kv_key_t *key, bool sendkey)
{
    if (kv_digest(set, strlen(set), key, req->hdr.digest) != 0)
        return -1;
    req->hdr.pid = kv_partition(req->hdr.digest);
    kv_req_str(req, "ns", ns, strlen(ns));
    kv_req_str(req, "set", set, strlen(set));
    if (sendkey) {
        req->hdr.flags |= KV_F_SENDKEY;
        kv_key_pack(kv_req_field(req, "key"), key);
    }
    return 0;
}

void kv_req_scan(kv_req_t *req, const char *ns, const char *set, int pid, int pto, int max, const uint8_t *after)
{
    kv_req_init(req, KV_OP_SCAN);
    kv_req_str(req, "ns", ns, strlen(ns));
    if (set)
        kv_req_str(req, "set", set, strlen(set));
    kv_req_int(req, "pfrom", pid);
    req->hdr.pid = (uint16_t) pid;
    kv_req_int(req, "pto", pto);
    kv_req_int(req, "max", max);
    if (after) {
        msgpack_packer *pk = kv_req_field(req, "after");
        msgpack_pack_bin(pk, KV_DIGEST_SIZE);
        msgpack_pack_bin_body(pk, after, KV_DIGEST_SIZE);
    }
}

static void s_free(void *data, void *hint)
{
    (void) hint;
    free(data);
}

int kv_client_flush(kv_client_t *self)
{
    if (!self->out_len)
        return 0;
    zmq_msg_t m;
    zmq_msg_init_data(&m, self->out, self->out_len, s_free, NULL);
    int reqs = self->out_reqs;
    self->out = NULL;
    self->out_len = self->out_cap = 0;
    self->out_reqs = 0;
    if (zmq_send(self->sock, "", 0, ZMQ_SNDMORE) < 0 || zmq_msg_send(&m, self->sock, 0) < 0) {
        snprintf(self->error, sizeof self->error, "send to %s: %s (%d queued request(s) not sent)", self->endpoint,
                 zmq_strerror(errno), reqs);
        zmq_msg_close(&m);
        self->inflight -= reqs; /* no reply will come for them */
        return -1;
    }
    return 0;
}

int kv_client_send(kv_client_t *self, kv_req_t *req)
{
    req->hdr.reqid = self->next_id++;
    /* body = map header for nfields, then the packed fields */
    uint8_t mh[5];
    size_t mhl;
    if (req->nfields < 16) {
        mh[0] = (uint8_t) (0x80 | req->nfields);
        mhl = 1;
    } else {
        mh[0] = 0xde;
        mh[1] = (uint8_t) (req->nfields >> 8);
        mh[2] = (uint8_t) req->nfields;
        mhl = 3;
    }
    size_t n = mhl + req->body.size;
    if (KV_HDR_SIZE + n > KV_FRAME_MAX) { /* the server would drop the connection */
        snprintf(self->error, sizeof self->error, "%s: the request is %zu bytes, more than the %d-byte frame limit",
                 kv_err_name(KV_ERR_TOO_BIG), n, KV_FRAME_MAX);
        return -1;
    }
    if (self->out_len + KV_HDR_SIZE + n > KV_FRAME_MAX && kv_client_flush(self) != 0)
        return -1;
    if (self->out_len + KV_HDR_SIZE + n > self->out_cap) {
        size_t cap = self->out_cap ? self->out_cap : 4096;
        while (cap < self->out_len + KV_HDR_SIZE + n)
            cap *= 2;
        uint8_t *nb = realloc(self->out, cap);
        if (!nb) {
            snprintf(self->error, sizeof self->error, "out of memory");
            return -1;
        }
        self->out = nb;
        self->out_cap = cap;
    }
    uint8_t *p = self->out + self->out_len;
    req->hdr.body_len = (uint32_t) n;
    kv_hdr_encode(&req->hdr, p);
    memcpy(p + KV_HDR_SIZE, mh, mhl);
    if (req->body.size)
        memcpy(p + KV_HDR_SIZE + mhl, req->body.data, req->body.size);
    self->out_len += KV_HDR_SIZE + n;
    self->out_reqs++;
    self->inflight++;
    if (self->out_reqs >= OUT_REQS || self->out_len >= OUT_BYTES)
        return kv_client_flush(self);
    return 0;
}

/* Read one monitor event; updates connection state. */
static void s_monitor_event(kv_client_t *self)
{
    zmq_msg_t a, b;
    zmq_msg_init(&a);
    zmq_msg_init(&b);
    if (zmq_msg_recv(&a, self->monitor, ZMQ_DONTWAIT) >= 0) {
        if (zmq_msg_more(&a))
            zmq_msg_recv(&b, self->monitor, 0);
        if (zmq_msg_size(&a) >= 2) {
            uint16_t ev;
            memcpy(&ev, zmq_msg_data(&a), 2);
            if (ev == ZMQ_EVENT_CONNECTED)
                self->connected = true;
            else if (ev == ZMQ_EVENT_CONNECT_RETRIED && !self->connected)
                self->refused = true;
            else if (ev == ZMQ_EVENT_DISCONNECTED && self->inflight > 0)
                self->lost = true;
        }
    }
    zmq_msg_close(&a);
    zmq_msg_close(&b);
}

/* Drain the rest of a multipart message. */
static void s_drain(void *sock)
{
    int more;
    size_t ml = sizeof more;
    zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &ml);
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, sock, 0);
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
}

/* Receive a reply message (delimiter, one frame) into self->frame. */
static int s_read_frame(kv_client_t *self)
{
    zmq_msg_t delim;
    zmq_msg_init(&delim);
    zmq_msg_init(&self->frame);
    int rc = -1;
    if (zmq_msg_recv(&delim, self->sock, 0) < 0)
        snprintf(self->error, sizeof self->error, "receive from %s: %s", self->endpoint, zmq_strerror(errno));
    else if (zmq_msg_size(&delim) != 0 || !zmq_msg_more(&delim))
        snprintf(self->error, sizeof self->error, "malformed reply from %s: no envelope delimiter", self->endpoint);
    else if (zmq_msg_recv(&self->frame, self->sock, 0) < 0)
        snprintf(self->error, sizeof self->error, "receive from %s: %s", self->endpoint, zmq_strerror(errno));
    else if (zmq_msg_more(&self->frame))
        snprintf(self->error, sizeof self->error, "malformed reply from %s: extra frames", self->endpoint);
    else if (zmq_msg_size(&self->frame) == 0)
        snprintf(self->error, sizeof self->error, "malformed reply from %s: empty frame", self->endpoint);
    else
        rc = 0;
    s_drain(self->sock);
    zmq_msg_close(&delim);
    if (rc != 0)
        zmq_msg_close(&self->frame);
    self->have_frame = rc == 0;
    self->roff = 0;
    return rc;
}

/* The next reply of self->frame. */
static int s_next_reply(kv_client_t *self, kv_reply_t *rep)
{
    char why[128];
    const uint8_t *data = zmq_msg_data(&self->frame), *body;
    size_t len = zmq_msg_size(&self->frame);
    int rc = kv_frame_next(data, len, &self->roff, &rep->hdr, &body, why, sizeof why);
    if (rc == KV_OK && !kv_mp_valid(body, rep->hdr.body_len)) {
        snprintf(why, sizeof why, "body is not MessagePack");
        rc = KV_ERR_BAD_REQUEST;
    }
    if (rc != KV_OK) {
        snprintf(self->error, sizeof self->error, "malformed reply from %s: %s", self->endpoint, why);
        zmq_msg_close(&self->frame);
        self->have_frame = false;
        return -1;
    }
    zmq_msg_init(&rep->frame);
    zmq_msg_copy(&rep->frame, &self->frame);
    rep->off = (size_t) (body - data);
    rep->len = rep->hdr.body_len;
    if (self->roff >= len) {
        zmq_msg_close(&self->frame);
        self->have_frame = false;
    }
    if (self->inflight > 0)
        self->inflight--;
    return 0;
}

int kv_client_recv(kv_client_t *self, kv_reply_t *rep, int timeout_ms)
{
    if (kv_client_flush(self) != 0) /* what was queued goes out first */
        return -1;
    if (self->have_frame)
        return s_next_reply(self, rep);
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : s_now_ms() + (uint64_t) timeout_ms;
    for (;;) {
        zmq_pollitem_t items[] = {{self->sock, 0, ZMQ_POLLIN, 0}, {self->monitor, 0, ZMQ_POLLIN, 0}};
        uint64_t now = s_now_ms();
        long wait = deadline == UINT64_MAX ? -1 : now >= deadline ? 0 : (long) (deadline - now);
        int rc = zmq_poll(items, 2, wait);
        if (rc < 0 && errno != EINTR) {
            snprintf(self->error, sizeof self->error, "poll: %s", zmq_strerror(errno));
            return -1;
        }
        if (rc < 0) {
            snprintf(self->error, sizeof self->error, "interrupted");
            return -1;
        }
        if (items[0].revents & ZMQ_POLLIN)
            return s_read_frame(self) == 0 ? s_next_reply(self, rep) : -1;
        if (items[1].revents & ZMQ_POLLIN) {
            s_monitor_event(self);
            if (self->refused) {
                snprintf(self->error, sizeof self->error, "cannot connect to %s: connection refused",
                         self->endpoint);
                return -1;
            }
            if (self->lost) {
                snprintf(self->error, sizeof self->error,
                         "connection to %s lost with %d request(s) in flight (they may or may not have been applied)",
                         self->endpoint, self->inflight);
                return -1;
            }
            continue;
        }
        if (s_now_ms() >= deadline) {
            snprintf(self->error, sizeof self->error, "%s: no reply from %s within %d ms",
                     kv_err_name(KV_ERR_TIMEOUT), self->endpoint, timeout_ms);
            return -1;
        }
    }
}

int kv_client_call(kv_client_t *self, kv_req_t *req, kv_reply_t *rep, int timeout_ms)
{
    if (kv_client_send(self, req) != 0)
        return -1;
    for (;;) {
        if (kv_client_recv(self, rep, timeout_ms) != 0)
            return -1;
        if (rep->hdr.reqid == req->hdr.reqid)
            return 0;
        kv_reply_close(rep); /* a late reply to an earlier request */
    }
}

void kv_reply_close(kv_reply_t *rep)
{
    zmq_msg_close(&rep->frame);
}

const char *kv_reply_error(kv_reply_t *rep, char *buf, size_t len)
{
    return kv_body_error(kv_reply_data(rep), kv_reply_size(rep), buf, len);
}

const char *kv_body_error(const uint8_t *body, size_t blen, char *buf, size_t len)
{
    kv_mp_t v;
    const char *s;
    uint32_t n;
    buf[0] = '\0';
    if (kv_body_get(body, blen, "error", &v) == 0 && kv_mp_read_str(&v, &s, &n) == 0)
        snprintf(buf, len, "%.*s", (int) n, s);
    return buf;
}

int kv_body_get(const uint8_t *body, size_t len, const char *key, kv_mp_t *val)
{
    kv_mp_t r = kv_mp(body, len);
    uint32_t n;
    size_t kl = strlen(key);
    if (kv_mp_read_map(&r, &n) != 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t l;
        if (kv_mp_read_str(&r, &k, &l) != 0)
            return -1;
        if (l == kl && memcmp(k, key, kl) == 0) {
            *val = r;
            return 0;
        }
        if (kv_mp_skip(&r) != 0)
            return -1;
    }
    return -1;
}

/* Receive one whole multipart message from sock without waiting for its
 * start: keeps its first max parts in f (the rest are dropped) and
 * returns how many parts it had, or 0 if none was ready. */
int kv_recv_parts(void *sock, zmq_msg_t *f, int max)
{
    int nf = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, nf == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (nf < max) {
            zmq_msg_init(&f[nf]);
            zmq_msg_move(&f[nf], &m);
        }
        nf++;
        zmq_msg_close(&m);
    }
    return nf;
}

void kv_client_test(bool verbose)
{
    (void) verbose;
    char why[256];
    /* a bad endpoint is refused with a reason */
    assert(kv_client_new("nonsense", why, sizeof why) == NULL && strstr(why, "nonsense"));
    /* a refused connection is reported as such, quickly, not as a timeout */
    kv_client_t *c = kv_client_new("tcp://127.0.0.1:1", why, sizeof why);
    assert(c);
    kv_req_t req;
    kv_req_init(&req, KV_OP_PING);
    kv_reply_t rep;
    assert(kv_client_call(c, &req, &rep, 5000) == -1);
    assert(strstr(kv_client_error(c), "connection refused"));
    kv_req_destroy(&req);
    kv_client_destroy(&c);
    assert(c == NULL);

    /* a fake server: echo an OK reply and check framing and pipelining */
    void *ctx = zmq_ctx_new();
    void *srv = zmq_socket(ctx, ZMQ_ROUTER);
    assert(zmq_bind(srv, "tcp://127.0.0.1:*") == 0);
    char ep[256];
    size_t epl = sizeof ep;
    zmq_getsockopt(srv, ZMQ_LAST_ENDPOINT, ep, &epl);
    c = kv_client_new(ep, why, sizeof why);
    assert(c);
    kv_key_t key = {.type = KV_KEY_STRING, .bytes = (const uint8_t *) "k", .len = 1};
    for (int i = 0; i < 3; i++) {
        kv_req_init(&req, KV_OP_GET);
        assert(kv_req_record(&req, "test", "s", &key, true) == 0);
        assert(kv_client_send(c, &req) == 0);
        kv_req_destroy(&req);
    }
    assert(kv_client_inflight(c) == 3);
    assert(kv_client_flush(c) == 0);
    /* the three arrive in one frame; answer them in two reply frames, the
     * second holding two replies in reverse order */
    zmq_msg_t f[3];
    for (int j = 0; j < 3; j++) {
        zmq_msg_init(&f[j]);
        assert(zmq_msg_recv(&f[j], srv, 0) >= 0);
    }
    assert(zmq_msg_size(&f[1]) == 0 && !zmq_msg_more(&f[2]));
    const uint8_t *fd = zmq_msg_data(&f[2]), *b;
    size_t off = 0;
    kv_hdr_t hs[3];
    for (int i = 0; i < 3; i++) {
        assert(kv_frame_next(fd, zmq_msg_size(&f[2]), &off, &hs[i], &b, why, sizeof why) == KV_OK);
        assert(hs[i].flags & KV_F_SENDKEY);
        kv_mp_t v;
        const char *s;
        uint32_t n;
        assert(kv_body_get(b, hs[i].body_len, "ns", &v) == 0);
        assert(kv_mp_read_str(&v, &s, &n) == 0 && n == 4 && memcmp(s, "test", 4) == 0);
    }
    assert(kv_frame_next(fd, zmq_msg_size(&f[2]), &off, &hs[0], &b, why, sizeof why) == -1);
    const uint8_t body[] = {0x81, 0xa5, 'e', 'r', 'r', 'o', 'r', 0xa1, 'x'};
    uint8_t out[3 * (KV_HDR_SIZE + sizeof body)];
    const int order[3] = {0, 2, 1};
    for (int k = 0; k < 3; k++) {
        kv_hdr_t h = hs[order[k]];
        h.status = KV_ERR_NOT_FOUND;
        h.body_len = sizeof body;
        kv_hdr_encode(&h, out + k * (KV_HDR_SIZE + sizeof body));
        memcpy(out + k * (KV_HDR_SIZE + sizeof body) + KV_HDR_SIZE, body, sizeof body);
    }
    zmq_msg_t id2;
    zmq_msg_init(&id2);
    zmq_msg_copy(&id2, &f[0]);
    zmq_msg_send(&f[0], srv, ZMQ_SNDMORE);
    zmq_send(srv, "", 0, ZMQ_SNDMORE);
    zmq_send(srv, out, KV_HDR_SIZE + sizeof body, 0);
    zmq_msg_send(&id2, srv, ZMQ_SNDMORE);
    zmq_send(srv, "", 0, ZMQ_SNDMORE);
    zmq_send(srv, out + KV_HDR_SIZE + sizeof body, 2 * (KV_HDR_SIZE + sizeof body), 0);
    for (int j = 1; j < 3; j++)
        zmq_msg_close(&f[j]);
    for (int i = 0; i < 3; i++) {
        assert(kv_client_recv(c, &rep, 5000) == 0);
        assert(rep.hdr.reqid == hs[order[i]].reqid && rep.hdr.status == KV_ERR_NOT_FOUND);
        char e[32];
        assert(strcmp(kv_reply_error(&rep, e, sizeof e), "x") == 0);
        kv_reply_close(&rep);
    }
    assert(kv_client_inflight(c) == 0);
    /* a malformed reply (short header) is an error, not a crash */
    kv_req_init(&req, KV_OP_PING);
    assert(kv_client_send(c, &req) == 0 && kv_client_flush(c) == 0);
    kv_req_destroy(&req);
    zmq_msg_t id, rest;
    zmq_msg_init(&id);
    zmq_msg_init(&rest);
    assert(zmq_msg_recv(&id, srv, 0) >= 0);
    s_drain(srv);
    zmq_msg_send(&id, srv, ZMQ_SNDMORE);
    zmq_send(srv, "", 0, ZMQ_SNDMORE);
    zmq_send(srv, "KV", 2, 0);
    assert(kv_client_recv(c, &rep, 5000) == -1 && strstr(kv_client_error(c), "malformed"));
    /* nothing more arrives: a timeout says so */
    assert(kv_client_recv(c, &rep, 50) == -1 && strstr(kv_client_error(c), "no reply"));
    zmq_msg_close(&rest);
    kv_client_destroy(&c);
    int linger = 0;
    zmq_setsockopt(srv, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(srv);
    zmq_ctx_term(ctx);
}
