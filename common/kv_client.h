/* kv_client: the asynchronous kvstore client used by every program.
 *
 * One DEALER socket to one endpoint.  kv_client_send() queues a request and
 * returns at once; kv_client_recv() returns the next reply, in whatever
 * order they come back, so many requests can be in flight (pipelining).
 * Requests queued together travel in one frame, replies likewise.
 * kv_client_call() is the synchronous form.  A socket monitor tells a
 * refused connection and a lost one apart from a slow server. */
#ifndef KV_CLIENT_H
#define KV_CLIENT_H

#include "kv_digest.h"
#include "kv_mp.h"
#include "kv_proto.h"
#include <zmq.h>

typedef struct kv_client kv_client_t;

/* A request being built: header plus the fields of the body map. */
typedef struct {
    kv_hdr_t hdr;
    uint32_t nfields;
    msgpack_sbuffer body;
    msgpack_packer pk;
} kv_req_t;

/* A reply: decoded header, and its body inside the reply frame (a
 * reference to the frame is owned; kv_reply_close drops it). */
typedef struct {
    kv_hdr_t hdr;
    zmq_msg_t frame;
    size_t off, len;
} kv_reply_t;

/* Returns NULL with a reason in why if the endpoint cannot be used. */
kv_client_t *kv_client_new(const char *endpoint, char *why, size_t whylen);
void kv_client_destroy(kv_client_t **self_p);
const char *kv_client_endpoint(const kv_client_t *self);
/* Reason for the last failure of send/recv/call. */
const char *kv_client_error(const kv_client_t *self);
/* Requests sent whose replies have not been received. */
int kv_client_inflight(const kv_client_t *self);

void kv_req_init(kv_req_t *req, int op);
void kv_req_destroy(kv_req_t *req);
/* Add a field; kv_req_field packs the key and returns the packer for the value. */
msgpack_packer *kv_req_field(kv_req_t *req, const char *key);
void kv_req_str(kv_req_t *req, const char *key, const char *val, size_t len);
void kv_req_int(kv_req_t *req, const char *key, int64_t val);
/* Address a record: computes digest and partition, adds ns, set and (when
 * sendkey) key fields.  Returns 0, or -1 if set or key is too long. */
int kv_req_record(kv_req_t *req, const char *ns, const char *set, const kv_key_t *key, bool sendkey);

/* A scan page request (op scan): partitions [pid, pto) of ns (and set,
 * if not NULL), at most max records, after the digest after in partition
 * pid (NULL: from its start); the header's partition id is pid, so a
 * router sends the page to its master.  req is initialised here. */
void kv_req_scan(kv_req_t *req, const char *ns, const char *set, int pid, int pto, int max, const uint8_t *after);

/* Queue a request for sending; assigns req->hdr.reqid.  Requests queued
 * together go out in one frame: when enough have gathered, or at the next
 * kv_client_recv or kv_client_flush.  0 or -1. */
int kv_client_send(kv_client_t *self, kv_req_t *req);
/* Send the queued requests now.  0 or -1. */
int kv_client_flush(kv_client_t *self);
/* Next reply within timeout_ms (-1 = forever).  0, or -1 on timeout,
 * connection failure or a malformed reply (see kv_client_error). */
int kv_client_recv(kv_client_t *self, kv_reply_t *rep, int timeout_ms);
/* Send and wait for that request's reply.  0 or -1. */
int kv_client_call(kv_client_t *self, kv_req_t *req, kv_reply_t *rep, int timeout_ms);
void kv_reply_close(kv_reply_t *rep);
static inline const uint8_t *kv_reply_data(kv_reply_t *rep) { return (const uint8_t *) zmq_msg_data(&rep->frame) + rep->off; }
static inline size_t kv_reply_size(kv_reply_t *rep) { return rep->len; }
/* The error text of an error reply ("" if none). Copies into buf. */
const char *kv_reply_error(kv_reply_t *rep, char *buf, size_t len);
/* The same for a reply body read from a frame. */
const char *kv_body_error(const uint8_t *body, size_t blen, char *buf, size_t len);

/* Find key in a body map; positions val at its value (val->end is the end
 * of the body).  0 if found, -1 if absent or the body is malformed. */
int kv_body_get(const uint8_t *body, size_t len, const char *key, kv_mp_t *val);

/* Receive one whole multipart message from a socket without waiting for
 * its start: its first max parts go to f (initialised; the caller closes
 * them), the rest are dropped.  Returns how many parts it had, 0 if none
 * was ready. */
int kv_recv_parts(void *sock, zmq_msg_t *f, int max);

void kv_client_test(bool verbose);

#endif
