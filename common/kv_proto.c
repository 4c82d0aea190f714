/* kv_proto: encode and decode the fixed message header. */
#include "kv_proto.h"
#include "kv_err.h"
#include <assert.h>
#include <stdio.h>
#include <string.h>

static const char *s_op_names[KV_OP_MAX_] = {
    [KV_OP_GET] = "get", [KV_OP_EXISTS] = "exists", [KV_OP_PUT] = "put",
    [KV_OP_DELETE] = "delete", [KV_OP_TOUCH] = "touch", [KV_OP_OPERATE] = "operate",
    [KV_OP_BATCH] = "batch", [KV_OP_SCAN] = "scan", [KV_OP_INFO] = "info",
    [KV_OP_PING] = "ping", [KV_OP_CLUSTER] = "cluster", [KV_OP_REPLICA] = "replica",
    [KV_OP_MERGE] = "merge",
};

const char *kv_op_name(int op)
{
    return op > 0 && op < KV_OP_MAX_ ? s_op_names[op] : NULL;
}

void kv_hdr_encode(const kv_hdr_t *h, uint8_t *out)
{
    out[0] = 'K';
    out[1] = 'V';
    out[2] = KV_PROTO_VERSION;
    out[3] = h->op;
    kv_put16(out + 4, h->flags);
    kv_put16(out + 6, h->status);
    kv_put64(out + 8, h->reqid);
    kv_put16(out + 16, h->pid);
    kv_put16(out + 18, 0);
    kv_put32(out + 20, h->table_version);
    kv_put32(out + 24, h->timeout_ms);
    memcpy(out + 28, h->digest, KV_DIGEST_SIZE);
    kv_put32(out + 48, h->body_len);
}

int kv_hdr_decode(kv_hdr_t *h, const uint8_t *buf, size_t len, char *why, size_t whylen)
{
    /* On failure only the op and request id are filled (when present), so
     * an error reply built from *h is itself a valid header. */
    memset(h, 0, sizeof *h);
    if (len >= 16)
        h->reqid = kv_get64(buf + 8);
    if (len >= 4)
        h->op = buf[3];
    if (len != KV_HDR_SIZE) {
        snprintf(why, whylen, "header is %zu bytes, expected %d", len, KV_HDR_SIZE);
        return KV_ERR_BAD_REQUEST;
    }
    if (buf[0] != 'K' || buf[1] != 'V') {
        snprintf(why, whylen, "bad magic 0x%02x%02x in header", buf[0], buf[1]);
        return KV_ERR_BAD_REQUEST;
    }
    if (buf[2] != KV_PROTO_VERSION) {
        snprintf(why, whylen, "protocol version %u not supported (this server speaks %d)", buf[2],
                 KV_PROTO_VERSION);
        return KV_ERR_VERSION;
    }
    if (kv_get16(buf + 18) != 0) {
        snprintf(why, whylen, "reserved header field is not zero");
        return KV_ERR_BAD_REQUEST;
    }
    uint16_t pid = kv_get16(buf + 16);
    if (pid >= KV_PARTITIONS) {
        snprintf(why, whylen, "partition id %u out of range 0..4095", pid);
        return KV_ERR_BAD_REQUEST;
    }
    h->flags = kv_get16(buf + 4);
    h->status = kv_get16(buf + 6);
    h->pid = pid;
    h->table_version = kv_get32(buf + 20);
    h->timeout_ms = kv_get32(buf + 24);
    memcpy(h->digest, buf + 28, KV_DIGEST_SIZE);
    h->body_len = kv_get32(buf + 48);
    return KV_OK;
}

int kv_frame_next(const uint8_t *frame, size_t len, size_t *off, kv_hdr_t *h, const uint8_t **body, char *why,
                  size_t whylen)
{
    if (*off >= len)
        return -1;
    size_t left = len - *off;
    int rc = kv_hdr_decode(h, frame + *off, left < KV_HDR_SIZE ? left : KV_HDR_SIZE, why, whylen);
    if (rc != KV_OK)
        return rc;
    if (h->body_len > left - KV_HDR_SIZE) {
        snprintf(why, whylen, "body length %u runs past the end of the frame (%zu bytes left)", h->body_len,
                 left - KV_HDR_SIZE);
        return KV_ERR_BAD_REQUEST;
    }
    *body = frame + *off + KV_HDR_SIZE;
    *off += KV_HDR_SIZE + h->body_len;
    return KV_OK;
}

void kv_proto_test(bool verbose)
{
    (void) verbose;
    kv_hdr_t h = {.op = KV_OP_PUT, .flags = KV_F_SENDKEY, .status = 0, .reqid = 0x0102030405060708ULL,
                  .pid = 4095, .table_version = 7, .timeout_ms = 250};
    for (int i = 0; i < KV_DIGEST_SIZE; i++)
        h.digest[i] = (uint8_t) i;
    uint8_t buf[KV_HDR_SIZE];
    kv_hdr_encode(&h, buf);
    assert(buf[0] == 'K' && buf[8] == 0x08 && buf[15] == 0x01); /* little-endian id */
    kv_hdr_t d;
    char why[128];
    assert(kv_hdr_decode(&d, buf, sizeof buf, why, sizeof why) == KV_OK);
    assert(d.op == h.op && d.flags == h.flags && d.reqid == h.reqid && d.pid == 4095);
    assert(d.table_version == 7 && d.timeout_ms == 250 && memcmp(d.digest, h.digest, 20) == 0);
    /* every short length is rejected, and the request id is recovered when present */
    for (size_t n = 0; n < KV_HDR_SIZE; n++)
        assert(kv_hdr_decode(&d, buf, n, why, sizeof why) == KV_ERR_BAD_REQUEST);
    assert(kv_hdr_decode(&d, buf, 20, why, sizeof why) == KV_ERR_BAD_REQUEST && d.reqid == h.reqid);
    uint8_t bad[KV_HDR_SIZE];
    memcpy(bad, buf, sizeof bad);
    bad[2] = 9;
    assert(kv_hdr_decode(&d, bad, sizeof bad, why, sizeof why) == KV_ERR_VERSION);
    assert(strstr(why, "version 9") != NULL);
    memcpy(bad, buf, sizeof bad);
    bad[0] = 'X';
    assert(kv_hdr_decode(&d, bad, sizeof bad, why, sizeof why) == KV_ERR_BAD_REQUEST);
    memcpy(bad, buf, sizeof bad);
    kv_put16(bad + 16, 4096);
    assert(kv_hdr_decode(&d, bad, sizeof bad, why, sizeof why) == KV_ERR_BAD_REQUEST);
    assert(d.pid == 0 && d.reqid == h.reqid); /* an error reply from d is valid */
    memcpy(bad, buf, sizeof bad);
    bad[19] = 1;
    assert(kv_hdr_decode(&d, bad, sizeof bad, why, sizeof why) == KV_ERR_BAD_REQUEST);
    /* a frame of two requests, then one whose body runs past the end */
    uint8_t frame[2 * KV_HDR_SIZE + 3];
    h.body_len = 2;
    kv_hdr_encode(&h, frame);
    frame[KV_HDR_SIZE] = 0x81;
    frame[KV_HDR_SIZE + 1] = 0x80;
    h.body_len = 1;
    h.reqid = 9;
    kv_hdr_encode(&h, frame + KV_HDR_SIZE + 2);
    frame[2 * KV_HDR_SIZE + 2] = 0x80;
    size_t off = 0;
    const uint8_t *body;
    assert(kv_frame_next(frame, sizeof frame, &off, &d, &body, why, sizeof why) == KV_OK && d.body_len == 2);
    assert(body == frame + KV_HDR_SIZE);
    assert(kv_frame_next(frame, sizeof frame, &off, &d, &body, why, sizeof why) == KV_OK && d.reqid == 9);
    assert(kv_frame_next(frame, sizeof frame, &off, &d, &body, why, sizeof why) == -1);
    off = 0;
    assert(kv_frame_next(frame, sizeof frame - 1, &off, &d, &body, why, sizeof why) == KV_OK);
    assert(kv_frame_next(frame, sizeof frame - 1, &off, &d, &body, why, sizeof why) == KV_ERR_BAD_REQUEST);
    assert(d.reqid == 9 && strstr(why, "runs past"));
    off = 0;
    assert(kv_frame_next(frame, KV_HDR_SIZE + 2 + 10, &off, &d, &body, why, sizeof why) == KV_OK);
    assert(kv_frame_next(frame, KV_HDR_SIZE + 2 + 10, &off, &d, &body, why, sizeof why) == KV_ERR_BAD_REQUEST);
    assert(strcmp(kv_op_name(KV_OP_SCAN), "scan") == 0 && kv_op_name(0) == NULL && kv_op_name(99) == NULL);
}
