/* kvgarbage: send malformed and truncated messages to a kvnode and check
 * that each one gets a well-formed error reply and that the node keeps
 * answering.  Prints TAP-like lines; exits 1 on the first failure.
 * Usage: kvgarbage ENDPOINT [RANDOM_COUNT] */
#include "kv_err.h"
#include "kv_mp.h"
#include "kv_proto.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static void *s_sock;
static int s_failed;

/* Send frames (NULL-terminated lists of buffers with lengths). */
static void s_send(int n, const void **bufs, const size_t *lens)
{
    for (int i = 0; i < n; i++)
        zmq_send(s_sock, bufs[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0);
}

/* Receive one reply message (delimiter and one frame); returns the status
 * of its first reply, or -1 if none came or it is malformed.  Every reply
 * of the frame must be whole, with a MessagePack body; their count goes
 * to s_nreplies. */
static int s_nreplies;
static int s_reply(int timeout_ms)
{
    zmq_pollitem_t it = {s_sock, 0, ZMQ_POLLIN, 0};
    s_nreplies = 0;
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return -1;
    zmq_msg_t f[2];
    int n = 0, more = 1, status = -1;
    bool extra = false;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, s_sock, 0);
        more = zmq_msg_more(&m);
        if (n < 2) {
            zmq_msg_init(&f[n]);
            zmq_msg_move(&f[n++], &m);
        } else
            extra = true;
        zmq_msg_close(&m);
    }
    if (n == 2 && !extra && zmq_msg_size(&f[0]) == 0) {
        const uint8_t *frame = zmq_msg_data(&f[1]), *body;
        size_t len = zmq_msg_size(&f[1]), off = 0;
        kv_hdr_t h;
        char why[128];
        int rc, first = -1;
        while ((rc = kv_frame_next(frame, len, &off, &h, &body, why, sizeof why)) == KV_OK
               && kv_mp_valid(body, h.body_len)) {
            if (s_nreplies++ == 0)
                first = h.status;
        }
        if (rc == -1 && s_nreplies > 0)
            status = first;
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
    return status;
}

/* A request frame in buf: header h (its body length set to blen unless
 * lie >= 0) then body.  Returns its size. */
static size_t s_frame(uint8_t *buf, const uint8_t *h, const void *body, size_t blen, long lie)
{
    memcpy(buf, h, KV_HDR_SIZE);
    kv_put32(buf + 48, lie >= 0 ? (uint32_t) lie : (uint32_t) blen);
    memcpy(buf + KV_HDR_SIZE, body, blen);
    return KV_HDR_SIZE + blen;
}

/* Send "" and one request frame: header h and body. */
static void s_send_req(const uint8_t *h, const void *body, size_t blen)
{
    static uint8_t buf[KV_HDR_SIZE + 4096];
    size_t n = s_frame(buf, h, body, blen, -1);
    const void *b[] = {"", buf};
    size_t l[] = {0, n};
    s_send(2, b, l);
}

static void s_hdr(uint8_t *out, int op, int version)
{
    kv_hdr_t h = {.op = (uint8_t) op, .reqid = 7};
    kv_hdr_encode(&h, out);
    out[2] = (uint8_t) version;
}

static void s_expect(const char *name, int want)
{
    int got = s_reply(5000);
    bool ok = want < 0 ? got > 0 : got == want;
    printf("%s - %s (status %d)\n", ok ? "ok" : "not ok", name, got);
    if (!ok)
        s_failed = 1;
}

static bool s_ping(int timeout_ms)
{
    uint8_t h[KV_HDR_SIZE];
    s_hdr(h, KV_OP_PING, KV_PROTO_VERSION);
    s_send_req(h, "\x80", 1);
    return s_reply(timeout_ms) == KV_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: kvgarbage ENDPOINT [RANDOM_COUNT]\n");
        return 2;
    }
    int nrandom = argc > 2 ? atoi(argv[2]) : 2000;
    void *ctx = zmq_ctx_new();
    s_sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(s_sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(s_sock, argv[1]) != 0) {
        fprintf(stderr, "kvgarbage: cannot connect to %s\n", argv[1]);
        return 2;
    }
    uint8_t h[KV_HDR_SIZE], bad[KV_HDR_SIZE];
    s_hdr(h, KV_OP_GET, KV_PROTO_VERSION);

    printf("%s - node answers a ping first\n", s_ping(5000) ? "ok" : "not ok");

    { const void *b[] = {"garbage"}; size_t l[] = {7}; s_send(1, b, l); s_expect("one frame, no delimiter", KV_ERR_BAD_REQUEST); }
    { const void *b[] = {""}; size_t l[] = {0}; s_send(1, b, l); s_expect("delimiter, no request frame", KV_ERR_BAD_REQUEST); }
    { const void *b[] = {"", ""}; size_t l[] = {0, 0}; s_send(2, b, l); s_expect("empty request frame", KV_ERR_BAD_REQUEST); }
    {
        uint8_t f[KV_HDR_SIZE + 1];
        size_t n = s_frame(f, h, "\x80", 1, -1);
        const void *b[] = {"", f, "extra"};
        size_t l[] = {0, n, 5};
        s_send(3, b, l);
        s_expect("extra frame after the request frame", KV_ERR_BAD_REQUEST);
    }
    for (size_t cut = 0; cut < KV_HDR_SIZE; cut += 7) {
        const void *b[] = {"", h};
        size_t l[] = {0, cut};
        char name[64];
        snprintf(name, sizeof name, "header truncated to %zu bytes", cut);
        if (cut == 0)
            continue; /* that is the empty frame above */
        s_send(2, b, l);
        s_expect(name, KV_ERR_BAD_REQUEST);
    }
    {
        uint8_t f[KV_HDR_SIZE + 1];
        size_t n = s_frame(f, h, "\x80", 1, 2);
        const void *b[] = {"", f};
        size_t l[] = {0, n};
        s_send(2, b, l);
        s_expect("body length past the end of the frame", KV_ERR_BAD_REQUEST);
        n = s_frame(f, h, "\x80", 1, 0xffffffff);
        s_send(2, b, l);
        s_expect("body length 4 GiB", KV_ERR_BAD_REQUEST);
    }
    {   /* three requests: a ping, one whose body length lies, a ping the
         * server can no longer find: two replies */
        uint8_t f[3 * (KV_HDR_SIZE + 1)], p[KV_HDR_SIZE];
        s_hdr(p, KV_OP_PING, KV_PROTO_VERSION);
        size_t n = s_frame(f, p, "\x80", 1, -1);
        n += s_frame(f + n, p, "\x80", 1, 70);
        n += s_frame(f + n, p, "\x80", 1, -1);
        const void *b[] = {"", f};
        size_t l[] = {0, n};
        s_send(2, b, l);
        int st = s_reply(5000);
        bool ok = st == KV_OK && s_nreplies == 2;
        printf("%s - a frame whose second request lies about its length: 2 replies (status %d, %d replies)\n",
               ok ? "ok" : "not ok", st, s_nreplies);
        if (!ok)
            s_failed = 1;
    }
    memcpy(bad, h, sizeof bad); bad[0] = 'X';
    s_send_req(bad, "\x80", 1); s_expect("bad magic", KV_ERR_BAD_REQUEST);
    s_hdr(bad, KV_OP_GET, 99);
    s_send_req(bad, "\x80", 1); s_expect("unknown version", KV_ERR_VERSION);
    s_hdr(bad, 200, KV_PROTO_VERSION);
    s_send_req(bad, "\x80", 1); s_expect("unknown op", KV_ERR_UNSUPPORTED);
    memcpy(bad, h, sizeof bad); kv_put16(bad + 16, 5000);
    s_send_req(bad, "\x80", 1); s_expect("partition out of range", KV_ERR_BAD_REQUEST);
    /* bodies */
    static const struct { const char *name; const char *body; size_t len; } bodies[] = {
        {"empty body", "", sizeof("") - 1},
        {"body not msgpack", "\xc1\xc1", sizeof("\xc1\xc1") - 1},
        {"body is an array", "\x90", sizeof("\x90") - 1},
        {"truncated map", "\x82\xa2ns", sizeof("\x82\xa2ns") - 1},
        {"huge declared map", "\xdf\xff\xff\xff\xff", sizeof("\xdf\xff\xff\xff\xff") - 1},
        {"huge declared string", "\x81\xa2ns\xdb\xff\xff\xff\xff", sizeof("\x81\xa2ns\xdb\xff\xff\xff\xff") - 1},
        {"ns not a string", "\x81\xa2ns\x05", sizeof("\x81\xa2ns\x05") - 1},
        {"unknown namespace", "\x81\xa2ns\xa4nope", sizeof("\x81\xa2ns\xa4nope") - 1},
        {"digest does not match key", "\x83\xa2ns\xa4test\xa3set\xa1s\xa3key\xa1k", sizeof("\x83\xa2ns\xa4test\xa3set\xa1s\xa3key\xa1k") - 1},
        {"key of wrong type", "\x82\xa2ns\xa4test\xa3key\xc3", sizeof("\x82\xa2ns\xa4test\xa3key\xc3") - 1},
        {"trailing bytes", "\x80\x80", sizeof("\x80\x80") - 1},
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        s_send_req(h, bodies[i].body, bodies[i].len);
        s_expect(bodies[i].name, -1);
    }
    /* puts with broken bins, addressed by an all-zero digest (partition 0) */
    s_hdr(bad, KV_OP_PUT, KV_PROTO_VERSION);
    static const struct { const char *name; const char *body; size_t len; } puts_[] = {
        {"put: bins not a map", "\x82\xa2ns\xa4test\xa4" "bins\x05", sizeof("\x82\xa2ns\xa4test\xa4" "bins\x05") - 1},
        {"put: bin name not a string", "\x82\xa2ns\xa4test\xa4" "bins\x81\x01\x01", sizeof("\x82\xa2ns\xa4test\xa4" "bins\x81\x01\x01") - 1},
        {"put: bin value truncated", "\x82\xa2ns\xa4test\xa4" "bins\x81\xa1" "a\xdb\x00\x00\x10\x00", sizeof("\x82\xa2ns\xa4test\xa4" "bins\x81\xa1" "a\xdb\x00\x00\x10\x00") - 1},
        {"put: deep nesting", "\x82\xa2ns\xa4test\xa4" "bins\x81\xa1" "a\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\xc0", sizeof("\x82\xa2ns\xa4test\xa4" "bins\x81\xa1" "a\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\xc0") - 1},
        {"put: ext type value", "\x82\xa2ns\xa4test\xa4" "bins\x81\xa1" "a\xd4\x01\x00", sizeof("\x82\xa2ns\xa4test\xa4" "bins\x81\xa1" "a\xd4\x01\x00") - 1},
        {"put: ttl out of range", "\x83\xa2ns\xa4test\xa3ttl\xd0\x80\xa4" "bins\x81\xa1" "a\x01", sizeof("\x83\xa2ns\xa4test\xa3ttl\xd0\x80\xa4" "bins\x81\xa1" "a\x01") - 1},
    };
    for (size_t i = 0; i < sizeof puts_ / sizeof puts_[0]; i++) {
        s_send_req(bad, puts_[i].body, puts_[i].len);
        s_expect(puts_[i].name, -1);
    }
    { /* too many frames */
        const void *b[20];
        size_t l[20];
        b[0] = "";
        l[0] = 0;
        for (int i = 1; i < 20; i++) { b[i] = h; l[i] = KV_HDR_SIZE; }
        s_send(20, b, l);
        s_expect("twenty frames", KV_ERR_BAD_REQUEST);
    }
    /* random messages: 1..3 frames of random bytes after the delimiter,
     * often a frame of 1..3 requests whose headers start out valid and are
     * then damaged; every message must get an answer */
    srand(12345);
    int answered = 0;
    for (int i = 0; i < nrandom; i++) {
        uint8_t buf[3][3 * (KV_HDR_SIZE + 40)];
        for (size_t k = 0; k < sizeof buf[2]; k++)
            buf[2][k] = (uint8_t) rand();
        const void *b[4];
        size_t l[4];
        int nf = rand() % 4 ? 1 : 2 + rand() % 2;
        b[0] = "";
        l[0] = 0;
        for (int f = 0; f < nf; f++) {
            for (size_t k = 0; k < sizeof buf[f]; k++)
                buf[f][k] = (uint8_t) rand();
            l[f + 1] = 1 + (size_t) rand() % sizeof buf[f];
            if (f == 0 && rand() % 2) {
                size_t n = 0;
                for (int q = 1 + rand() % 3; q > 0; q--) {
                    uint8_t hh[KV_HDR_SIZE];
                    size_t blen = (size_t) rand() % 40;
                    s_hdr(hh, 1 + rand() % 10, KV_PROTO_VERSION);
                    n += s_frame(buf[0] + n, hh, buf[2], blen, rand() % 4 ? -1 : rand() % 80);
                }
                buf[0][3 + (size_t) rand() % n] ^= (uint8_t) (rand() % 2 ? 0 : 1 << (rand() % 8));
                l[1] = n;
            }
            b[f + 1] = buf[f];
        }
        s_send(nf + 1, b, l);
        if (s_reply(5000) >= 0)
            answered++;
    }
    printf("%s - %d random messages, %d answered\n", answered == nrandom ? "ok" : "not ok", nrandom, answered);
    if (answered != nrandom)
        s_failed = 1;
    /* a frame over the size limit: libzmq drops the connection; the client
     * reconnects and the node still serves */
    size_t big = KV_FRAME_MAX + 1024;
    char *huge = calloc(1, big);
    memcpy(huge, h, KV_HDR_SIZE);
    kv_put32((uint8_t *) huge + 48, (uint32_t) (big - KV_HDR_SIZE));
    { const void *b[] = {"", huge}; size_t l[] = {0, big}; s_send(2, b, l); }
    free(huge);
    bool back = false;
    for (int i = 0; i < 50 && !back; i++)
        back = s_ping(200);
    printf("%s - node serves after an oversized frame\n", back ? "ok" : "not ok");
    if (!back)
        s_failed = 1;
    bool alive = s_ping(5000);
    printf("%s - node answers a ping last\n", alive ? "ok" : "not ok");
    zmq_close(s_sock);
    zmq_ctx_term(ctx);
    return s_failed || !alive ? 1 : 0;
}
