/* request: what kvnode's request loop (server.c) and its operations
 * (ops.c) share: the server's state, the request being served, and the
 * helpers that read a request's body and report a failure. */
#ifndef KVNODE_REQUEST_H
#define KVNODE_REQUEST_H

#include "kv_mp.h"
#include "server.h"
#include "store.h"

#define OPERATE_MAX_OPS 256

struct server {
    void *ctx;
    void *sock;
    char endpoint[256];
    uint64_t node_id;
    struct cluster *cluster;     /* node id, installed table, acceptor state */
    struct replica *replica;     /* writes sent to replicas, waiting for answers */
    uint64_t repl_from, repl_upto; /* the replica writes of the request being served */
    uint64_t chunk_repl_from, chunk_repl_upto; /* and of the reply frame being built */
    bool release_due;            /* a frame was held with nothing left to wait for: release after the batch */
    uint64_t started_ms;
    uint64_t last_lut;
    uint64_t now_ms;             /* wall clock, read once per batch of requests */
    kv_ns_t *ns[KV_MAX_NS];
    int n_ns;
    kv_ns_t *hint_ns; /* the namespace of the last request: prefetched into */
    uint32_t max_bins;           /* largest max-bins of any namespace */
    kv_bin_t *bins_old, *bins_new, *bins_out;
    kv_rec_t **scan_buf;
    uint64_t ops[KV_OP_MAX_];
    uint64_t errors[256];
    uint64_t bad_frames;
    uint64_t dropped, dropped_log_ms; /* records of partitions no longer held, not yet logged; when last logged */
    msgpack_packer pk;           /* packs reply bodies in place, into out */
    char why[512];
    bool defer;                  /* the request wrote to a commit-to-device namespace: */
    int defer_ns;                /* which, */
    uint64_t defer_upto;         /* and its bytes appended after the write */
    msgpack_sbuffer out;         /* the reply frame being built */
    uint32_t chunk_mask;         /* commit-to-device namespaces its writes touched, */
    uint64_t chunk_upto[KV_MAX_NS]; /* and their bytes appended after those writes */
    struct deferred *deferred;   /* reply frames waiting for a flush (group commit) */
    uint32_t n_deferred, cap_deferred;
};

typedef enum {
    F_NS, F_SET, F_KEY, F_BINS, F_TTL, F_EXISTS, F_GEN, F_GENPOL, F_OPS, F_KEYS, F_PFROM, F_PTO, F_AFTER, F_MAX, F_NOBINS, F_WHAT,
    F_RAW, F_ANY, F_VOID, F_LUT, F_DEL, F_DROP, F_SINCE, F_LWW, F_COUNT_
} field_t;

/* Body field names, indexed by field_t. */
extern const char *const srv_field_names[F_COUNT_];

/* The request being served: header, body (its known fields located in
 * one pass) and the record it addresses. */
typedef struct {
    const kv_hdr_t *h;
    const uint8_t *body;
    size_t len;
    const uint8_t *field[F_COUNT_];     /* start of each field's value, or NULL */
    const uint8_t *field_end[F_COUNT_]; /* and its end (validated by s_parse_body) */
    kv_ns_t *ns;
    const char *set;
    uint32_t set_len;
    int key_type;
    const uint8_t *key;  /* key bytes as stored (int keys: 8 bytes LE) */
    uint32_t key_len;
    uint8_t key_int[8];
    bool key_checked;    /* a key was sent and matched the digest */
    uint32_t now;        /* Unix seconds */
} req_t;

typedef int (*op_fn)(server_t *s, req_t *r);

/* Position v at a body field's value; 0 if present, -1 if absent. */
static inline int srv_field(const req_t *r, field_t f, kv_mp_t *v)
{
    if (!r->field[f])
        return -1;
    v->p = r->field[f];
    v->end = r->body + r->len;
    return 0;
}

/* Set the reason of a failure and return code (so handlers can write
 * `return srv_fail(s, KV_ERR_..., "...")`). */
int srv_fail(server_t *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Integer field: absent -> def; wrong type or out of range -> -1 with a reason. */
int srv_int_field(server_t *s, req_t *r, field_t f, int64_t min, int64_t max, int64_t def, int64_t *out);
kv_ns_t *srv_find_ns(server_t *s, const char *name, uint32_t len);

/* The operations (ops.c), one per op code. */
int op_ping(server_t *s, req_t *r);
int op_get(server_t *s, req_t *r);
int op_exists(server_t *s, req_t *r);
int op_put(server_t *s, req_t *r);
int op_delete(server_t *s, req_t *r);
int op_touch(server_t *s, req_t *r);
int op_operate(server_t *s, req_t *r);
int op_batch(server_t *s, req_t *r);
int op_scan(server_t *s, req_t *r);
int op_info(server_t *s, req_t *r);
int op_merge(server_t *s, req_t *r);

#endif
