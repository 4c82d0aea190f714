/* server: kvnode's request loop: receive, check framing and header,
 * locate the body's fields, dispatch to the operations (ops.c), reply. */
#include "request.h"
#include "cluster.h"
#include "disk.h"
#include "replica.h"
#include "kv_client.h"
#include "kv_digest.h"
#include "kv_err.h"
#include "kv_mp.h"
#include "kv_util.h"
#include <assert.h>
#include <inttypes.h>
#include <sched.h>
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_FRAMES 16
#define SWEEP_INTERVAL_MS 100
#define SWEEP_PARTITIONS 128        /* a full sweep every ~3.2 s */

const char *const srv_field_names[F_COUNT_] = {
    "ns", "set", "key", "bins", "ttl", "exists", "gen", "genpol", "ops", "keys", "pfrom", "pto", "after", "max", "nobins", "what",
    "raw", "any", "void", "lut", "del", "drop", "since", "lww",
};

/* ---- request helpers -------------------------------------------------- */

int srv_fail(server_t *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
    return code;
}

/* Field id of a key, or -1: dispatch on the first byte, then compare. */
static inline int s_field_id(const char *k, uint32_t kl)
{
    static const field_t by_first[][4] = {
        ['a'] = {F_AFTER, F_ANY}, ['b'] = {F_BINS}, ['d'] = {F_DEL, F_DROP}, ['e'] = {F_EXISTS},
        ['g'] = {F_GEN, F_GENPOL}, ['k'] = {F_KEY, F_KEYS}, ['l'] = {F_LUT, F_LWW}, ['m'] = {F_MAX},
        ['n'] = {F_NS, F_NOBINS}, ['o'] = {F_OPS}, ['p'] = {F_PFROM, F_PTO}, ['r'] = {F_RAW}, ['s'] = {F_SET, F_SINCE},
        ['t'] = {F_TTL}, ['v'] = {F_VOID}, ['w'] = {F_WHAT},
    };
    if (kl == 0 || (uint8_t) k[0] >= sizeof by_first / sizeof by_first[0])
        return -1;
    const field_t *c = by_first[(uint8_t) k[0]];
    for (int i = 0; i < 4; i++) {
        const char *name = srv_field_names[c[i]];
        if (i > 0 && c[i] == 0)
            break;
        if (name[0] == k[0] && strlen(name) == kl && memcmp(name, k, kl) == 0)
            return (int) c[i];
    }
    return -1;
}

/* Validate the body (one map, string keys, every value well formed, no
 * trailing bytes) and locate the fields this server knows; unknown fields
 * are skipped so newer clients can add optional ones. */
static int s_parse_body(server_t *s, req_t *r)
{
    kv_mp_t m = kv_mp(r->body, r->len);
    uint32_t n;
    if (kv_mp_read_map(&m, &n) != 0)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "body is not a MessagePack map");
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (kv_mp_read_str(&m, &k, &kl) != 0)
            return srv_fail(s, KV_ERR_BAD_REQUEST, "body: key %u is not a string", i + 1);
        const uint8_t *val = m.p;
        if (kv_mp_skip(&m) != 0)
            return srv_fail(s, KV_ERR_BAD_REQUEST, "body: malformed value for '%.*s'", (int) (kl > 32 ? 32 : kl), k);
        int f = s_field_id(k, kl);
        if (f >= 0) {
            if (r->field[f])
                return srv_fail(s, KV_ERR_BAD_REQUEST, "body: field '%s' given twice", srv_field_names[f]);
            r->field[f] = val;
            r->field_end[f] = m.p;
        }
    }
    if (!kv_mp_eof(&m))
        return srv_fail(s, KV_ERR_BAD_REQUEST, "body: trailing bytes after the map");
    return KV_OK;
}

/* Integer field: absent -> def; wrong type or out of range -> -1. */
int srv_int_field(server_t *s, req_t *r, field_t f, int64_t min, int64_t max, int64_t def, int64_t *out)
{
    kv_mp_t v;
    *out = def;
    if (srv_field(r, f, &v) != 0)
        return 0;
    if (kv_mp_read_int(&v, out) != 0 || *out < min || *out > max)
        return srv_fail(s, -1, "field '%s' must be an integer in %lld..%lld", srv_field_names[f], (long long) min,
                      (long long) max);
    return 0;
}

kv_ns_t *srv_find_ns(server_t *s, const char *name, uint32_t len)
{
    for (int i = 0; i < s->n_ns; i++)
        if (strlen(s->ns[i]->cfg.name) == len && memcmp(s->ns[i]->cfg.name, name, len) == 0)
            return s->ns[i];
    return NULL;
}

static int s_resolve_ns(server_t *s, req_t *r)
{
    kv_mp_t v;
    const char *name;
    uint32_t len;
    if (srv_field(r, F_NS, &v) != 0 || kv_mp_read_str(&v, &name, &len) != 0)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "missing namespace (field 'ns')");
    r->ns = srv_find_ns(s, name, len);
    if (r->ns)
        s->hint_ns = r->ns;
    if (!r->ns)
        return srv_fail(s, KV_ERR_NAMESPACE, "no namespace '%.*s' on this node", (int) (len > 64 ? 64 : len), name);
    return KV_OK;
}

/* Namespace, set and (optional) key of a record request; checks that the
 * key and set hash to the digest in the header. */
static int s_resolve_record(server_t *s, req_t *r)
{
    int rc = s_resolve_ns(s, r);
    if (rc != KV_OK)
        return rc;
    kv_mp_t v;
    r->set = "";
    r->set_len = 0;
    if (srv_field(r, F_SET, &v) == 0 && kv_mp_read_str(&v, &r->set, &r->set_len) != 0)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'set' must be a string");
    if (r->set_len > KV_SET_MAX)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "set name is %u bytes, limit is %d", r->set_len, KV_SET_MAX);
    if (memchr(r->set, '\0', r->set_len))
        return srv_fail(s, KV_ERR_BAD_REQUEST, "set name contains a NUL byte");
    r->key_type = KV_KEY_NONE;
    r->key_len = 0;
    if (srv_field(r, F_KEY, &v) == 0) {
        kv_key_t k = {0};
        int64_t i;
        const char *str;
        const uint8_t *bin;
        uint32_t n;
        if (kv_mp_read_int(&v, &i) == 0) {
            k.type = KV_KEY_INT;
            k.i = i;
            kv_put64(r->key_int, (uint64_t) i);
            r->key = r->key_int;
            r->key_len = 8;
        } else if (kv_mp_read_str(&v, &str, &n) == 0) {
            k = (kv_key_t){.type = KV_KEY_STRING, .bytes = (const uint8_t *) str, .len = n};
            r->key = k.bytes;
            r->key_len = n;
        } else if (kv_mp_read_bin(&v, &bin, &n) == 0) {
            k = (kv_key_t){.type = KV_KEY_BYTES, .bytes = bin, .len = n};
            r->key = bin;
            r->key_len = n;
        } else
            return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'key' must be a string, integer or bytes");
        if (k.type != KV_KEY_INT && n > KV_KEY_MAX)
            return srv_fail(s, KV_ERR_BAD_REQUEST, "key is %u bytes, limit is %d", n, KV_KEY_MAX);
        uint8_t d[KV_DIGEST_SIZE];
        if (kv_digest(r->set, r->set_len, &k, d) != 0 || memcmp(d, r->h->digest, KV_DIGEST_SIZE) != 0)
            return srv_fail(s, KV_ERR_BAD_REQUEST, "digest in header does not match set and key");
        r->key_checked = true;
        /* the key is stored only when the client asks (send-key); a merge
         * copies a record, key and all */
        r->key_type = (r->h->flags & KV_F_SENDKEY) || r->h->op == KV_OP_MERGE ? k.type : KV_KEY_NONE;
        if (r->key_type == KV_KEY_NONE)
            r->key_len = 0;
    } else if (r->h->flags & KV_F_SENDKEY)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "send-key flag set but no field 'key'");
    if (kv_partition(r->h->digest) != r->h->pid)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "partition id %u does not match the digest", r->h->pid);
    return KV_OK;
}

/* Forget the records of the next `parts` partitions the sweeper visits
 * that this node holds no copy of in its table (a migration moved them
 * elsewhere, and the table that says so is settled). */
static void s_drop_unheld(server_t *s, kv_ns_t *ns, uint32_t parts)
{
    const kv_ptable_t *t = cluster_table(s->cluster);
    if (t->version == 0 || !kv_ptable_settled(t))
        return;
    for (uint32_t k = 0; k < parts; k++) {
        uint32_t pid = (ns->sweep_pid + k) % KV_PARTITIONS;
        if (!cluster_holds(s->cluster, (uint16_t) pid, (int) ns->cfg.rf))
            s->dropped += store_drop_partition(ns, pid);
    }
    uint64_t now = kv_mono_ms();
    if (s->dropped && now >= s->dropped_log_ms + 5000) { /* one line per 5 s at most */
        kv_warn("dropped %" PRIu64 " records of partitions this node no longer holds (table version %u)", s->dropped,
                t->version);
        s->dropped = 0;
        s->dropped_log_ms = now;
    }
}

/* ---- dispatch --------------------------------------------------------- */

#define NEEDS_NS 1      /* resolve "ns" */
#define NEEDS_RECORD 2  /* resolve ns, set, key and check the digest */

static const struct {
    op_fn fn;
    int flags;
} s_ops[KV_OP_MAX_] = {
    [KV_OP_GET] = {op_get, NEEDS_RECORD},
    [KV_OP_EXISTS] = {op_exists, NEEDS_RECORD},
    [KV_OP_PUT] = {op_put, NEEDS_RECORD},
    [KV_OP_DELETE] = {op_delete, NEEDS_RECORD},
    [KV_OP_TOUCH] = {op_touch, NEEDS_RECORD},
    [KV_OP_OPERATE] = {op_operate, NEEDS_RECORD},
    [KV_OP_BATCH] = {op_batch, NEEDS_NS},
    [KV_OP_SCAN] = {op_scan, NEEDS_NS},
    [KV_OP_INFO] = {op_info, 0},
    [KV_OP_PING] = {op_ping, 0},
    [KV_OP_CLUSTER] = {op_cluster, 0},
    [KV_OP_REPLICA] = {op_replica, NEEDS_NS},
    [KV_OP_MERGE] = {op_merge, NEEDS_RECORD},
};

static int s_dispatch(server_t *s, const kv_hdr_t *h, const uint8_t *body, size_t blen)
{
    if (!kv_op_name(h->op) || !s_ops[h->op].fn)
        return srv_fail(s, KV_ERR_UNSUPPORTED, "unknown op %u", h->op);
    if (h->flags & ~KV_F_ALL)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "unknown flags 0x%04x", h->flags & ~KV_F_ALL);
    if (h->status != 0)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "status must be 0 in a request");
    req_t r = {.h = h, .body = body, .len = blen, .now = (uint32_t) (s->now_ms / 1000)};
    int rc = s_parse_body(s, &r);
    if (rc != KV_OK)
        return rc;
    if (s_ops[h->op].flags & NEEDS_RECORD)
        rc = s_resolve_record(s, &r);
    else if (s_ops[h->op].flags & NEEDS_NS)
        rc = s_resolve_ns(s, &r);
    if (rc != KV_OK)
        return rc;
    /* a merge is applied on any node (migrations fill nodes that master
     * nothing); a master sends it on to its replicas */
    bool serves = cluster_serves(s->cluster, h->pid);
    if ((s_ops[h->op].flags & NEEDS_RECORD) && h->op != KV_OP_MERGE && !serves)
        return srv_fail(s, KV_ERR_WRONG_NODE, "this node is not the master of partition %u in table version %u",
                        h->pid, cluster_table(s->cluster)->version);
    if ((h->op == KV_OP_PUT || h->op == KV_OP_DELETE || h->op == KV_OP_TOUCH || h->op == KV_OP_OPERATE ||
         (h->op == KV_OP_MERGE && serves)) &&
        (rc = replica_admit(s, r.ns, h->digest)) != KV_OK)
        return rc;
    if (!r.ns || !r.ns->disk || !r.ns->cfg.commit_to_device)
        return s_ops[h->op].fn(s, &r);
    uint64_t before = disk_appended(r.ns->disk);
    rc = s_ops[h->op].fn(s, &r);
    s->defer_upto = disk_appended(r.ns->disk);
    s->defer = s->defer_upto != before;
    for (int i = 0; i < s->n_ns; i++)
        if (s->ns[i] == r.ns)
            s->defer_ns = i;
    return rc;
}

/* Answer one decoded request (rc: the header's decode status): its reply
 * header (rh) and body go at the end of the reply frame s->out, the body
 * packed in place. */
static void s_handle(server_t *s, kv_hdr_t *rh, int rc, const uint8_t *body, size_t blen)
{
    static const uint8_t room[KV_HDR_SIZE];
    size_t start = s->out.size;
    msgpack_sbuffer_write(&s->out, (const char *) room, sizeof room);
    s->defer = false;
    s->repl_from = s->repl_upto = 0;
    if (rc == KV_OK) {
        rc = s_dispatch(s, rh, body, blen);
        if (kv_op_name(rh->op))
            s->ops[rh->op]++;
    } else
        s->bad_frames++;
    rh->status = (uint16_t) rc;
    rh->table_version = cluster_table(s->cluster)->version;
    if (rc != KV_OK) {
        s->errors[rc & 0xff]++;
        s->out.size = start + KV_HDR_SIZE; /* drop what the op packed */
        msgpack_pack_map(&s->pk, 1);
        kv_mp_pack_cstr(&s->pk, "error");
        kv_mp_pack_cstr(&s->pk, s->why[0] ? s->why : kv_err_name(rc));
    }
    rh->body_len = (uint32_t) (s->out.size - start - KV_HDR_SIZE);
    kv_hdr_encode(rh, (uint8_t *) s->out.data + start);
}

/* Answer a frame's requests into s->out, calling emit (if not NULL) when
 * the reply frame grows past REPLY_FRAME_MAX and once at the end. */
#define REPLY_FRAME_MAX (1u << 20)
/* Start loading the index entries the next requests of a frame will look
 * up, so that their cache misses overlap instead of coming one by one (a
 * lookup was a fifth of the server's time at 50x16, perf).  The namespace
 * is a guess, the last one used: a wrong guess costs only the prefetch. */
#define PREFETCH_AHEAD 16
static void s_prefetch(server_t *s, const uint8_t *frame, size_t len, size_t off)
{
    kv_ns_t *ns = s->hint_ns;
    if (!ns)
        return;
    uint8_t digests[PREFETCH_AHEAD][KV_DIGEST_SIZE];
    int n = 0;
    kv_hdr_t h;
    const uint8_t *body;
    while (n < PREFETCH_AHEAD && kv_frame_next(frame, len, &off, &h, &body, NULL, 0) == KV_OK)
        memcpy(digests[n++], h.digest, KV_DIGEST_SIZE);
    store_prefetch(ns, digests, n);
}

static void s_handle_frame(server_t *s, const uint8_t *frame, size_t len, void (*emit)(server_t *, void *),
                           void *arg)
{
    size_t off = 0;
    int n = 0;
    for (;;) {
        if (n % PREFETCH_AHEAD == 0)
            s_prefetch(s, frame, len, off);
        kv_hdr_t rh;
        const uint8_t *body = NULL;
        s->why[0] = '\0';
        int rc = kv_frame_next(frame, len, &off, &rh, &body, s->why, sizeof s->why);
        if (rc == -1)
            break;
        if (rc == KV_OK && ++n > KV_FRAME_REQS_MAX)
            rc = srv_fail(s, KV_ERR_BAD_REQUEST, "more than %d requests in one frame", KV_FRAME_REQS_MAX);
        /* a request that cannot be read ends the frame: where the next one
         * starts is unknown */
        bool last = rc != KV_OK;
        s_handle(s, &rh, rc, body, rc == KV_OK ? rh.body_len : 0);
        if (s->defer) {
            s->chunk_mask |= 1u << s->defer_ns;
            s->chunk_upto[s->defer_ns] = s->defer_upto;
        }
        if (s->repl_upto && !(rh.flags & KV_F_COMMIT_MASTER)) { /* wait for the replicas too */
            if (!s->chunk_repl_from)
                s->chunk_repl_from = s->repl_from;
            s->chunk_repl_upto = s->repl_upto;
        }
        if (last)
            break;
        if (emit && s->out.size >= REPLY_FRAME_MAX)
            emit(s, arg);
    }
    if (emit)
        emit(s, arg);
}

void server_handle_frame(server_t *s, const uint8_t *frame, size_t len)
{
    msgpack_sbuffer_clear(&s->out);
    s_handle_frame(s, frame, len, NULL, NULL);
}

void server_tick(server_t *s)
{
    s->now_ms = kv_wall_ms();
}

const uint8_t *server_reply_frame(const server_t *s, size_t *len)
{
    *len = s->out.size;
    return (const uint8_t *) s->out.data;
}

/* A reply frame held back until the writes it acknowledges are flushed:
 * its envelope and frame, sent as they are once every namespace in mask
 * has flushed up to upto[ns] (or with IN_DOUBT for its writes if a flush
 * fails). */
struct deferred {
    zmq_msg_t env[MAX_FRAMES];
    int n_env;
    zmq_msg_t frame;
    uint32_t mask;
    uint64_t upto[KV_MAX_NS];
    uint64_t repl_from, repl_upto; /* replica writes it waits for (0: none) */
};

static void s_commit_all(server_t *s);

/* The envelope of the message being answered. */
typedef struct {
    zmq_msg_t *f;
    int n_env;
} env_t;

/* Send or hold the reply frame built in s->out, with a copy of env. */
static void s_emit(server_t *s, void *arg)
{
    env_t *env = arg;
    if (!s->out.size)
        return;
    bool hold = s->chunk_mask || s->chunk_repl_upto;
    if (hold && s->n_deferred == s->cap_deferred) {
        uint32_t cap = s->cap_deferred ? 2 * s->cap_deferred : 256;
        struct deferred *nd = realloc(s->deferred, cap * sizeof *nd);
        if (nd) {
            s->deferred = nd;
            s->cap_deferred = cap;
        } else { /* no room to hold it: flush now, then answer */
            s_commit_all(s);
            s->chunk_mask = 0;
            hold = false;
        }
    }
    if (hold) {
        struct deferred *q = &s->deferred[s->n_deferred++];
        for (int i = 0; i < env->n_env; i++) {
            zmq_msg_init(&q->env[i]);
            zmq_msg_copy(&q->env[i], &env->f[i]);
        }
        q->n_env = env->n_env;
        zmq_msg_init_size(&q->frame, s->out.size);
        memcpy(zmq_msg_data(&q->frame), s->out.data, s->out.size);
        q->mask = s->chunk_mask;
        memcpy(q->upto, s->chunk_upto, sizeof q->upto);
        q->repl_from = s->chunk_repl_from;
        q->repl_upto = s->chunk_repl_upto;
        /* its replica writes may be over already (none could be sent):
         * no answer will come to wake a release */
        if (q->repl_upto && replica_done(s, q->repl_upto))
            s->release_due = true;
    } else {
        for (int i = 0; i < env->n_env; i++) {
            zmq_msg_t c;
            zmq_msg_init(&c);
            zmq_msg_copy(&c, &env->f[i]);
            zmq_msg_send(&c, s->sock, ZMQ_SNDMORE);
        }
        zmq_send(s->sock, s->out.data, s->out.size, 0);
    }
    msgpack_sbuffer_clear(&s->out);
    s->chunk_mask = 0;
    s->chunk_repl_from = s->chunk_repl_upto = 0;
}

/* A held frame whose flush or replication failed (why): its successful
 * writes become IN_DOUBT. */
static void s_in_doubt(server_t *s, struct deferred *q, const char *reason)
{
    const uint8_t *data = zmq_msg_data(&q->frame), *body;
    size_t len = zmq_msg_size(&q->frame), off = 0;
    kv_hdr_t h;
    char why[200];
    msgpack_sbuffer out; /* not s->out: a frame may be being built there */
    msgpack_sbuffer_init(&out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    while (kv_frame_next(data, len, &off, &h, &body, why, sizeof why) == KV_OK) {
        bool write = h.op == KV_OP_PUT || h.op == KV_OP_DELETE || h.op == KV_OP_TOUCH || h.op == KV_OP_OPERATE ||
                     h.op == KV_OP_MERGE ||
                     h.op == KV_OP_REPLICA; /* a replica's answer too: the master must not count it */
        uint8_t hb[KV_HDR_SIZE];
        if (write && h.status == KV_OK) {
            msgpack_sbuffer eb;
            msgpack_sbuffer_init(&eb);
            msgpack_packer_init(&pk, &eb, msgpack_sbuffer_write);
            msgpack_pack_map(&pk, 1);
            kv_mp_pack_cstr(&pk, "error");
            kv_mp_pack_cstr(&pk, reason);
            h.status = KV_ERR_IN_DOUBT;
            h.body_len = (uint32_t) eb.size;
            s->errors[KV_ERR_IN_DOUBT]++;
            kv_hdr_encode(&h, hb);
            msgpack_sbuffer_write(&out, (const char *) hb, sizeof hb);
            msgpack_sbuffer_write(&out, eb.data, eb.size);
            msgpack_sbuffer_destroy(&eb);
        } else {
            kv_hdr_encode(&h, hb);
            msgpack_sbuffer_write(&out, (const char *) hb, sizeof hb);
            msgpack_sbuffer_write(&out, (const char *) body, h.body_len);
        }
    }
    zmq_msg_close(&q->frame);
    zmq_msg_init_size(&q->frame, out.size);
    memcpy(zmq_msg_data(&q->frame), out.data, out.size);
    msgpack_sbuffer_destroy(&out);
}

/* Send the held frames whose writes are now flushed (IN_DOUBT where a
 * flush failed); keep the rest, in order. */
static void s_release(server_t *s)
{
    uint32_t kept = 0;
    for (uint32_t k = 0; k < s->n_deferred; k++) {
        struct deferred *q = &s->deferred[k];
        bool ready = true;
        int err = 0;
        for (int i = 0; i < s->n_ns; i++)
            if (q->mask & (1u << i)) {
                const disk_t *disk = s->ns[i]->disk;
                if (disk_synced(disk) < q->upto[i]) {
                    if (disk_failed(disk))
                        err = disk_failed(disk);
                    else
                        ready = false;
                }
            }
        const char *failed = NULL;
        if (q->repl_upto && ready) {
            if (!replica_done(s, q->repl_upto))
                ready = false;
            else
                failed = replica_failed(s, q->repl_from, q->repl_upto);
        }
        if (!ready) {
            if (kept != k) { /* zmq_msg_t is moved with zmq_msg_move, never copied */
                struct deferred *to = &s->deferred[kept];
                for (int i = 0; i < q->n_env; i++) {
                    zmq_msg_init(&to->env[i]);
                    zmq_msg_move(&to->env[i], &q->env[i]);
                }
                zmq_msg_init(&to->frame);
                zmq_msg_move(&to->frame, &q->frame);
                to->n_env = q->n_env;
                to->mask = q->mask;
                memcpy(to->upto, q->upto, sizeof to->upto);
                to->repl_from = q->repl_from;
                to->repl_upto = q->repl_upto;
            }
            kept++;
            continue;
        }
        char why[300];
        if (err) {
            snprintf(why, sizeof why, "write in doubt: the flush to disk failed: %s", strerror(err));
            s_in_doubt(s, q, why);
        } else if (failed)
            s_in_doubt(s, q, failed);
        for (int i = 0; i < q->n_env; i++)
            zmq_msg_send(&q->env[i], s->sock, ZMQ_SNDMORE);
        zmq_msg_send(&q->frame, s->sock, 0);
    }
    s->n_deferred = kept;
}

/* After a batch of requests: start flushing the commit-to-device
 * namespaces that have held replies (unless a flush is running; then the
 * next starts after it, here). */
static void s_commit(server_t *s)
{
    if (!s->n_deferred)
        return;
    for (int i = 0; i < s->n_ns; i++)
        if (s->ns[i]->disk && s->ns[i]->cfg.commit_to_device)
            disk_flush(s->ns[i]->disk);
}

/* Flush everything and send every held reply (shutdown, or no room). */
static void s_commit_all(server_t *s)
{
    for (int i = 0; i < s->n_ns; i++) {
        char why[1300];
        if (s->ns[i]->disk && disk_sync(s->ns[i]->disk, why, sizeof why) != 0)
            kv_warn("namespace '%s': %s", s->ns[i]->cfg.name, why);
    }
    s_release(s);
}

/* Answer a message this server cannot read as a request frame with one
 * error reply: to its envelope (adding a delimiter if it had none). */
static void s_bad_message(server_t *s, zmq_msg_t *f, int n_env, bool add_delim, zmq_msg_t *first,
                          const char *why)
{
    kv_hdr_t rh;
    memset(&rh, 0, sizeof rh);
    if (first && zmq_msg_size(first) >= 16)
        rh.reqid = kv_get64((const uint8_t *) zmq_msg_data(first) + 8);
    snprintf(s->why, sizeof s->why, "%s", why);
    msgpack_sbuffer_clear(&s->out);
    s_handle(s, &rh, KV_ERR_BAD_REQUEST, NULL, 0); /* counts it in bad_frames */
    for (int i = 0; i < n_env; i++)
        zmq_msg_send(&f[i], s->sock, ZMQ_SNDMORE);
    if (add_delim)
        zmq_send(s->sock, "", 0, ZMQ_SNDMORE);
    zmq_send(s->sock, s->out.data, s->out.size, 0);
    msgpack_sbuffer_clear(&s->out);
}

/* Receive one multipart message (already known to be waiting), answer its
 * requests.  Returns -1 if nothing was waiting. */
static int s_serve_one(server_t *s)
{
    zmq_msg_t f[MAX_FRAMES];
    int n = 0, more = 1;
    bool overflow = false;
    while (more) {
        zmq_msg_t *m = &f[n < MAX_FRAMES ? n : MAX_FRAMES - 1];
        if (n >= MAX_FRAMES) {
            zmq_msg_close(m); /* keep the last slot as scratch */
            overflow = true;
        }
        zmq_msg_init(m);
        if (zmq_msg_recv(m, s->sock, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(m);
            for (int i = 0; i < (n < MAX_FRAMES ? n : MAX_FRAMES - 1); i++)
                zmq_msg_close(&f[i]);
            return -1;
        }
        more = zmq_msg_more(m);
        if (n < MAX_FRAMES)
            n++;
    }
    /* envelope = identity frames up to and including the empty delimiter */
    int d = -1;
    for (int i = 1; i < n; i++)
        if (zmq_msg_size(&f[i]) == 0) {
            d = i;
            break;
        }
    int sent = 0; /* frames already given to zmq_msg_send */
    if (d < 0) /* reply to the identity, adding a delimiter */
        s_bad_message(s, f, (sent = 1), true, NULL, "no empty delimiter frame before the request frame");
    else if (overflow || n - d - 1 != 1)
        s_bad_message(s, f, (sent = d + 1), false, d + 1 < n ? &f[d + 1] : NULL,
                      overflow ? "too many frames" : "expected exactly one request frame after the delimiter");
    else if (zmq_msg_size(&f[d + 1]) == 0)
        s_bad_message(s, f, (sent = d + 1), false, NULL, "empty request frame");
    else {
        env_t env = {f, d + 1};
        msgpack_sbuffer_clear(&s->out);
        s->chunk_mask = 0;
        s_handle_frame(s, zmq_msg_data(&f[d + 1]), zmq_msg_size(&f[d + 1]), s_emit, &env);
    }
    for (int i = sent; i < n; i++)
        zmq_msg_close(&f[i]);
    return 0;
}

/* Background work of the file namespaces; the milliseconds until the
 * next is due. */
static long s_disk_ticks(server_t *s)
{
    uint64_t now = kv_mono_ms();
    long wait = SWEEP_INTERVAL_MS;
    for (int i = 0; i < s->n_ns; i++)
        if (s->ns[i]->disk) {
            long w = (long) disk_tick(s->ns[i]->disk, now);
            if (w < wait)
                wait = w;
        }
    return wait;
}

void server_run(server_t *s, volatile int *stop)
{
    uint64_t next_sweep = kv_mono_ms() + SWEEP_INTERVAL_MS;
    long disk_wait = s_disk_ticks(s);
    /* the socket, then the flush-done descriptor of each file namespace */
    zmq_pollitem_t items[1 + KV_MAX_NS + KV_NODES_MAX];
    int nitems = 1, item_ns[1 + KV_MAX_NS];
    items[0] = (zmq_pollitem_t){s->sock, 0, ZMQ_POLLIN, 0};
    for (int i = 0; i < s->n_ns; i++)
        if (s->ns[i]->disk) {
            item_ns[nitems] = i;
            items[nitems++] = (zmq_pollitem_t){NULL, disk_event_fd(s->ns[i]->disk), ZMQ_POLLIN, 0};
        }
    while (!*stop) {
        uint64_t now = kv_mono_ms();
        long wait = now >= next_sweep ? 0 : (long) (next_sweep - now);
        if (disk_wait < wait)
            wait = disk_wait;
        bool expired;
        long hb_wait = cluster_tick(s, kv_mono_ms()), repl_wait = replica_tick(s, kv_mono_ms(), &expired);
        if (hb_wait < wait)
            wait = hb_wait;
        if (repl_wait < wait)
            wait = repl_wait;
        /* then the sockets to the replicas, which come and go with the table */
        int npeers = replica_poll_items(s, items + nitems, KV_NODES_MAX);
        int rc = zmq_poll(items, nitems + npeers, wait);
        if (rc < 0 && errno != EINTR)
            break;
        bool flushed = false;
        for (int i = 1; rc > 0 && i < nitems; i++)
            if (items[i].revents & ZMQ_POLLIN) {
                disk_flush_done(s->ns[item_ns[i]]->disk);
                flushed = true;
            }
        bool answered = false;
        for (int i = 0; rc > 0 && i < npeers; i++)
            if (items[nitems + i].revents & ZMQ_POLLIN) {
                replica_recv(s, i);
                answered = true;
            }
        /* held replies can go only when a flush ended or replicas answered
         * or timed out: not on every wake-up */
        if (flushed || answered || expired)
            s_release(s);
        if (rc > 0 && (items[0].revents & ZMQ_POLLIN)) {
            s->now_ms = kv_wall_ms();
            for (int k = 0; k < 4096 && s_serve_one(s) == 0; k++)
                if ((k & 63) == 63)
                    s->now_ms = kv_wall_ms();
        }
        if (s->release_due) { /* frames held with nothing left to wait for */
            s->release_due = false;
            s_release(s);
        }
        /* start the next flush only now, so it covers every write that
         * arrived while the last one ran */
        s_commit(s);
        disk_wait = s_disk_ticks(s);
        /* a write error can stop a namespace with no flush running (so no
         * flush-done event): answer its held replies IN_DOUBT now */
        for (int i = 0; s->n_deferred && i < s->n_ns; i++)
            if (s->ns[i]->disk && disk_failed(s->ns[i]->disk)) {
                s_release(s);
                break;
            }
        if (kv_mono_ms() >= next_sweep) {
            uint32_t now_s = (uint32_t) (kv_wall_ms() / 1000);
            for (int i = 0; i < s->n_ns; i++) {
                s_drop_unheld(s, s->ns[i], SWEEP_PARTITIONS);
                store_sweep(s->ns[i], now_s, SWEEP_PARTITIONS);
            }
            next_sweep = kv_mono_ms() + SWEEP_INTERVAL_MS;
        }
    }
    /* answer what has already arrived, then stop */
    s->now_ms = kv_wall_ms();
    while (s_serve_one(s) == 0)
        ;
    s_commit_all(s);
    /* replies waiting for replicas: give them the replica timeout, then
     * answer the rest IN_DOUBT (replica_tick expires them) */
    uint64_t give_up = kv_mono_ms() + REPLICA_TIMEOUT_MS;
    while (s->n_deferred) {
        zmq_pollitem_t peers[KV_NODES_MAX];
        int n = replica_poll_items(s, peers, KV_NODES_MAX);
        if (zmq_poll(peers, n, 10) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++)
            if (peers[i].revents & ZMQ_POLLIN)
                replica_recv(s, i);
        bool expired;
        replica_tick(s, kv_mono_ms() >= give_up ? UINT64_MAX - REPLICA_TIMEOUT_MS : kv_mono_ms(), &expired);
        s_release(s);
        if (kv_mono_ms() >= give_up + 100)
            break;
    }
}

server_t *server_new(const kv_ns_config_t *cfgs, int n, const char *dir, char *why, size_t whylen)
{
    snprintf(why, whylen, "out of memory");
    if (n < 1 || n > KV_MAX_NS)
        return NULL;
    server_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (!(s->cluster = cluster_new(dir, why, whylen))) {
        free(s);
        return NULL;
    }
    s->node_id = cluster_node_id(s->cluster);
    if (!(s->replica = replica_new())) {
        cluster_destroy(&s->cluster);
        free(s);
        return NULL;
    }
    s->started_ms = kv_mono_ms();
    s->now_ms = kv_wall_ms();
    s->max_bins = 1;
    for (int i = 0; i < n; i++) {
        char inner[600];
        if (!(s->ns[i] = store_ns_new(&cfgs[i], dir, inner, sizeof inner))) {
            snprintf(why, whylen, "namespace '%s': %s", cfgs[i].name, inner);
            server_destroy(&s);
            return NULL;
        }
        s->n_ns = i + 1;
        if (cfgs[i].max_bins > s->max_bins)
            s->max_bins = cfgs[i].max_bins;
    }
    snprintf(why, whylen, "out of memory");
    /* working bins: a record's bins plus every new bin of a request */
    size_t cap = 2 * (size_t) s->max_bins + OPERATE_MAX_OPS;
    s->bins_old = calloc(cap, sizeof(kv_bin_t));
    s->bins_new = calloc(cap, sizeof(kv_bin_t));
    s->bins_out = calloc(cap, sizeof(kv_bin_t));
    s->scan_buf = calloc(KV_SCAN_PAGE_MAX, sizeof(kv_rec_t *));
    msgpack_sbuffer_init(&s->out);
    msgpack_packer_init(&s->pk, &s->out, msgpack_sbuffer_write);
    if (!s->bins_old || !s->bins_new || !s->bins_out || !s->scan_buf) {
        server_destroy(&s);
        return NULL;
    }
    return s;
}

void server_destroy(server_t **self_p)
{
    server_t *s = *self_p;
    if (!s)
        return;
    if (s->sock)
        zmq_close(s->sock);
    cluster_destroy(&s->cluster); /* their sockets, before the context */
    replica_destroy(&s->replica);
    if (s->ctx)
        zmq_ctx_term(s->ctx);
    for (int i = 0; i < s->n_ns; i++)
        store_ns_destroy(&s->ns[i]);
    free(s->bins_old);
    free(s->bins_new);
    free(s->bins_out);
    free(s->scan_buf);
    for (uint32_t k = 0; k < s->n_deferred; k++) { /* not sent: drop */
        for (int i = 0; i < s->deferred[k].n_env; i++)
            zmq_msg_close(&s->deferred[k].env[i]);
        zmq_msg_close(&s->deferred[k].frame);
    }
    free(s->deferred);
    msgpack_sbuffer_destroy(&s->out);
    free(s);
    *self_p = NULL;
}

/* zmq_bind on ipc:// removes an existing socket file, even one a live
 * process is serving.  Refuse if something answers on it; a stale file
 * (connection refused) is fine to replace. */
static int s_ipc_in_use(const char *endpoint)
{
    if (strncmp(endpoint, "ipc://", 6) != 0)
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const char *path = endpoint + 6;
    if (strlen(path) >= sizeof sa.sun_path)
        return 0;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    int in_use = connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0;
    close(fd);
    return in_use;
}

int server_bind(server_t *s, const char *endpoint, char *why, size_t whylen)
{
    if (s_ipc_in_use(endpoint)) {
        snprintf(why, whylen, "cannot listen on %s: Address already in use (another process is serving it)",
                 endpoint);
        return -1;
    }
    s->ctx = zmq_ctx_new();
    /* with the loop under SCHED_BATCH, libzmq's threads run under the
     * normal policy (kvnode(1), THREADS): woken with a reply, the I/O
     * thread preempts the loop and sends it at once.  Under any other
     * policy they keep the loop's: libzmq aborts if it cannot set the one
     * asked for, as leaving SCHED_IDLE unprivileged */
    if (sched_getscheduler(0) == SCHED_BATCH)
        zmq_ctx_set(s->ctx, ZMQ_THREAD_SCHED_POLICY, SCHED_OTHER);
    s->sock = zmq_socket(s->ctx, ZMQ_ROUTER);
    int linger = 1000, hwm = 100000;
    int64_t maxmsg = KV_FRAME_MAX;
    zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(s->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_bind(s->sock, endpoint) != 0) {
        snprintf(why, whylen, "cannot listen on %s: %s", endpoint, zmq_strerror(errno));
        return -1;
    }
    size_t len = sizeof s->endpoint;
    zmq_getsockopt(s->sock, ZMQ_LAST_ENDPOINT, s->endpoint, &len);
    return 0;
}

const char *server_endpoint(const server_t *s) { return s->endpoint; }
uint64_t server_node_id(const server_t *s) { return s->node_id; }
int server_join(server_t *s, const char *router, char *why, size_t whylen) { return cluster_join(s, router, why, whylen); }

/* ---- self-test: drive server_handle_frame with real requests ---------- */

/* Answer a frame holding exactly `hdr` and `body`; the status of the one
 * reply, whose body goes to *reply. */
static int s_call_raw(server_t *s, kv_hdr_t *h, const uint8_t *body, size_t n, kv_mp_t *reply)
{
    static uint8_t frame[KV_HDR_SIZE + (1 << 16)], copy[1 << 16];
    assert(n <= sizeof frame - KV_HDR_SIZE);
    h->body_len = (uint32_t) n;
    kv_hdr_encode(h, frame);
    memcpy(frame + KV_HDR_SIZE, body, n);
    server_tick(s);
    server_handle_frame(s, frame, KV_HDR_SIZE + n);
    size_t len, off = 0;
    const uint8_t *f = server_reply_frame(s, &len), *b;
    kv_hdr_t rh;
    char why[128];
    assert(kv_frame_next(f, len, &off, &rh, &b, why, sizeof why) == KV_OK && off == len);
    assert(rh.reqid == h->reqid && rh.body_len <= sizeof copy);
    memcpy(copy, b, rh.body_len);
    *reply = kv_mp(copy, rh.body_len);
    return rh.status;
}

static int s_call(server_t *s, kv_req_t *req, kv_mp_t *reply)
{
    uint8_t body[1 << 16];
    size_t n = 0;
    /* same framing as kv_client_send: map header + fields */
    body[n++] = (uint8_t) (0x80 | req->nfields);
    if (req->body.size)
        memcpy(body + n, req->body.data, req->body.size);
    n += req->body.size;
    int rc = s_call_raw(s, &req->hdr, body, n, reply);
    kv_req_destroy(req);
    return rc;
}

/* A REPLICA request of the record image img to namespace "test". */
static int s_replica_call(server_t *s, const uint8_t *digest, const uint8_t *img, size_t len, uint32_t table_version,
                          kv_mp_t *reply)
{
    static uint8_t body[4096];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    kv_mp_pack_cstr(&pk, "ns");
    kv_mp_pack_cstr(&pk, "test");
    kv_mp_pack_cstr(&pk, "rec");
    msgpack_pack_bin(&pk, len);
    msgpack_pack_bin_body(&pk, img, len);
    assert(sb.size <= sizeof body);
    memcpy(body, sb.data, sb.size);
    kv_hdr_t h = {.op = KV_OP_REPLICA, .reqid = 900, .pid = kv_partition(digest), .table_version = table_version};
    memcpy(h.digest, digest, KV_DIGEST_SIZE);
    int rc = s_call_raw(s, &h, body, sb.size, reply);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void s_put_str(kv_req_t *req, const char *bin, const char *val)
{
    msgpack_packer *pk = kv_req_field(req, "bins");
    msgpack_pack_map(pk, 1);
    kv_mp_pack_cstr(pk, bin);
    if (val)
        kv_mp_pack_cstr(pk, val);
    else
        msgpack_pack_nil(pk);
}

/* A merge of bob: a copy (gen, lut, bins {"v": val}), a tombstone
 * (val "del") or a drop (val "drop"); returns the status, *applied set. */
static int s_merge_call(server_t *s, uint32_t gen, uint64_t lut, const char *val, bool *applied)
{
    kv_key_t k = {.type = KV_KEY_STRING, .bytes = (const uint8_t *) "bob", .len = 3};
    kv_req_t req;
    kv_mp_t rep, v;
    kv_req_init(&req, KV_OP_MERGE);
    kv_req_record(&req, "test", "users", &k, true);
    kv_req_int(&req, "gen", gen);
    kv_req_int(&req, "lut", (int64_t) lut);
    if (strncmp(val, "lww:", 4) == 0) { /* last writer wins */
        msgpack_pack_true(kv_req_field(&req, "lww"));
        val += 4;
    }
    if (strcmp(val, "del") == 0 || strcmp(val, "drop") == 0)
        msgpack_pack_true(kv_req_field(&req, val));
    else
        s_put_str(&req, "v", val);
    int rc = s_call(s, &req, &rep);
    *applied = false;
    if (rc == KV_OK)
        assert(kv_body_get(rep.p, (size_t) (rep.end - rep.p), "applied", &v) == 0 && kv_mp_read_bool(&v, applied) == 0);
    return rc;
}

/* bob's generation and bin v, or gen 0 if it is not there */
static uint32_t s_bob(server_t *s, char *val, size_t size)
{
    uint8_t d[KV_DIGEST_SIZE];
    kv_key_t k = {.type = KV_KEY_STRING, .bytes = (const uint8_t *) "bob", .len = 3};
    assert(kv_digest("users", 5, &k, d) == 0);
    const kv_rec_t *r = store_get(s->ns[0], d, (uint32_t) (kv_wall_ms() / 1000));
    if (!r)
        return 0;
    kv_mp_t m = kv_mp(rec_bins(r), r->bins_len), v;
    const char *str;
    uint32_t n;
    assert(kv_body_get(m.p, r->bins_len, "v", &v) == 0 && kv_mp_read_str(&v, &str, &n) == 0 && n < size);
    memcpy(val, str, n);
    val[n] = '\0';
    assert(r->key_type == KV_KEY_STRING); /* a merge keeps the key it is given */
    return r->gen;
}

/* merge (op 13): replace-if-better, by generation then last-update time;
 * a tombstone against a record by last-update time; drop of the exact copy */
static void s_merge_test(server_t *s)
{
    bool ap;
    char val[16];
    assert(s_merge_call(s, 3, 1000, "three", &ap) == KV_OK && ap && s_bob(s, val, sizeof val) == 3);
    assert(strcmp(val, "three") == 0);
    assert(s_merge_call(s, 2, 5000, "two", &ap) == KV_OK && !ap);   /* older generation */
    assert(s_merge_call(s, 3, 1000, "three", &ap) == KV_OK && !ap); /* the same copy */
    assert(s_merge_call(s, 3, 900, "early", &ap) == KV_OK && !ap);  /* same generation, earlier */
    assert(s_merge_call(s, 3, 1100, "later", &ap) == KV_OK && ap && s_bob(s, val, sizeof val) == 3);
    assert(strcmp(val, "later") == 0);
    assert(s_merge_call(s, 9, 1050, "del", &ap) == KV_OK && !ap); /* a delete before the last update */
    assert(s_merge_call(s, 3, 1000, "drop", &ap) == KV_OK && !ap); /* not the copy held */
    assert(s_bob(s, val, sizeof val) == 3);
    assert(s_merge_call(s, 3, 1100, "drop", &ap) == KV_OK && ap && s_bob(s, val, sizeof val) == 0);
    assert(s_merge_call(s, 5, 2000, "five", &ap) == KV_OK && ap && s_bob(s, val, sizeof val) == 5);
    assert(s_merge_call(s, 1, 2500, "del", &ap) == KV_OK && ap && s_bob(s, val, sizeof val) == 0);
    assert(s_merge_call(s, 1, 2500, "del", &ap) == KV_OK && !ap); /* nothing left to delete */
    /* last writer wins: a later update beats a higher generation */
    assert(s_merge_call(s, 7, 3000, "seven", &ap) == KV_OK && ap && s_bob(s, val, sizeof val) == 7);
    assert(s_merge_call(s, 2, 3100, "two", &ap) == KV_OK && !ap);
    assert(s_merge_call(s, 2, 2900, "lww:early", &ap) == KV_OK && !ap);
    assert(s_merge_call(s, 2, 3100, "lww:late", &ap) == KV_OK && ap && s_bob(s, val, sizeof val) == 2);
    assert(strcmp(val, "late") == 0);
    /* a delete sent as a replica write while the node had no copy: an
     * older copy merged afterwards (read before the delete) is not
     * applied, a later one is */
    {
        kv_key_t kb = {.type = KV_KEY_STRING, .bytes = (const uint8_t *) "bob", .len = 3};
        kv_req_t dr;
        kv_mp_t drep;
        assert(s_merge_call(s, 2, 3100, "drop", &ap) == KV_OK && ap && s_bob(s, val, sizeof val) == 0);
        kv_req_init(&dr, KV_OP_REPLICA);
        kv_req_record(&dr, "test", "users", &kb, false);
        msgpack_packer *dp = kv_req_field(&dr, "del");
        msgpack_pack_array(dp, 2);
        msgpack_pack_uint32(dp, 9);
        msgpack_pack_uint64(dp, 5000);
        assert(s_call(s, &dr, &drep) == KV_OK);
        assert(s_merge_call(s, 8, 4900, "stale", &ap) == KV_OK && !ap && s_bob(s, val, sizeof val) == 0);
        assert(s_merge_call(s, 1, 5100, "anew", &ap) == KV_OK && ap && s_bob(s, val, sizeof val) == 1);
    }
    /* a write replacing a copy stamped by a clock ahead of this node's
     * (another master's) still gets a later last-update time */
    {
        uint64_t ahead = kv_wall_ms() + 3600000;
        assert(s_merge_call(s, 3, ahead, "ahead", &ap) == KV_OK && ap);
        uint64_t keep = s->last_lut;
        s->last_lut = 0; /* as if the copy had come from elsewhere */
        kv_key_t kb = {.type = KV_KEY_STRING, .bytes = (const uint8_t *) "bob", .len = 3};
        kv_req_t pr;
        kv_mp_t prep;
        kv_req_init(&pr, KV_OP_PUT);
        kv_req_record(&pr, "test", "users", &kb, false);
        s_put_str(&pr, "v", "later");
        assert(s_call(s, &pr, &prep) == KV_OK);
        uint8_t d[KV_DIGEST_SIZE];
        assert(kv_digest("users", 5, &kb, d) == 0);
        assert(store_get(s->ns[0], d, (uint32_t) (kv_wall_ms() / 1000))->lut == ahead + 1);
        s->last_lut = keep > ahead + 1 ? keep : ahead + 1;
    }
    /* its own clock moved past what it merged: its next write is later */
    assert(s->last_lut >= 3100);
    kv_req_t req;
    kv_mp_t rep;
    kv_req_init(&req, KV_OP_MERGE);
    assert(s_call(s, &req, &rep) == KV_ERR_BAD_REQUEST); /* no ns, no gen */
    assert(s_merge_call(s, 0, 100, "x", &ap) == KV_ERR_BAD_REQUEST);
}

void server_test(bool verbose)
{
    (void) verbose;
    assert(sodium_init() >= 0);
    kv_ns_config_t cfg = {.name = "test", .max_record_size = 1024, .memory_limit = 1 << 20, .max_bins = 4};
    char why[256];
    server_t *s = server_new(&cfg, 1, NULL, why, sizeof why);
    assert(s);
    kv_key_t k = {.type = KV_KEY_STRING, .bytes = (const uint8_t *) "alice", .len = 5};
    kv_req_t req;
    kv_mp_t rep, v;
    int64_t i;

    /* create-only, then again: exists */
    kv_req_init(&req, KV_OP_PUT);
    kv_req_record(&req, "test", "users", &k, true);
    s_put_str(&req, "name", "Alice");
    kv_req_int(&req, "exists", KV_EXISTS_CREATE_ONLY);
    assert(s_call(s, &req, &rep) == KV_OK);
    assert(kv_body_get(rep.p, (size_t) (rep.end - rep.p), "gen", &v) == 0 && kv_mp_read_int(&v, &i) == 0 && i == 1);
    kv_req_init(&req, KV_OP_PUT);
    kv_req_record(&req, "test", "users", &k, true);
    s_put_str(&req, "name", "Bob");
    kv_req_int(&req, "exists", KV_EXISTS_CREATE_ONLY);
    assert(s_call(s, &req, &rep) == KV_ERR_EXISTS);
    /* generation check-and-set */
    kv_req_init(&req, KV_OP_PUT);
    kv_req_record(&req, "test", "users", &k, true);
    s_put_str(&req, "age", "x");
    kv_req_int(&req, "gen", 5);
    kv_req_int(&req, "genpol", KV_GEN_EQ);
    assert(s_call(s, &req, &rep) == KV_ERR_GENERATION);
    /* update merges bins; get returns both */
    kv_req_init(&req, KV_OP_PUT);
    kv_req_record(&req, "test", "users", &k, true);
    s_put_str(&req, "city", "Oslo");
    kv_req_int(&req, "gen", 1);
    kv_req_int(&req, "genpol", KV_GEN_EQ);
    assert(s_call(s, &req, &rep) == KV_OK);
    kv_req_init(&req, KV_OP_GET);
    kv_req_record(&req, "test", "users", &k, false);
    assert(s_call(s, &req, &rep) == KV_OK);
    assert(kv_body_get(rep.p, (size_t) (rep.end - rep.p), "bins", &v) == 0);
    uint32_t n;
    assert(kv_mp_read_map(&v, &n) == 0 && n == 2);
    assert(kv_body_get(rep.p, (size_t) (rep.end - rep.p), "key", &v) == 0); /* stored key */
    /* operate: append then read in one step, one generation bump */
    kv_req_init(&req, KV_OP_OPERATE);
    kv_req_record(&req, "test", "users", &k, false);
    msgpack_packer *pk = kv_req_field(&req, "ops");
    msgpack_pack_array(pk, 3);
    msgpack_pack_array(pk, 3);
    msgpack_pack_int(pk, KV_OPR_APPEND);
    kv_mp_pack_cstr(pk, "name");
    kv_mp_pack_cstr(pk, "!");
    msgpack_pack_array(pk, 3);
    msgpack_pack_int(pk, KV_OPR_ADD);
    kv_mp_pack_cstr(pk, "n");
    msgpack_pack_int(pk, 5);
    msgpack_pack_array(pk, 2);
    msgpack_pack_int(pk, KV_OPR_READ);
    kv_mp_pack_cstr(pk, "name");
    assert(s_call(s, &req, &rep) == KV_OK);
    assert(kv_body_get(rep.p, (size_t) (rep.end - rep.p), "gen", &v) == 0 && kv_mp_read_int(&v, &i) == 0 && i == 3);
    assert(kv_body_get(rep.p, (size_t) (rep.end - rep.p), "bins", &v) == 0);
    const char *str;
    assert(kv_body_get(v.p, (size_t) (v.end - v.p), "name", &v) == 0 && kv_mp_read_str(&v, &str, &n) == 0);
    assert(n == 6 && memcmp(str, "Alice!", 6) == 0);
    /* add to a string bin: incompatible type, nothing changes */
    kv_req_init(&req, KV_OP_OPERATE);
    kv_req_record(&req, "test", "users", &k, false);
    pk = kv_req_field(&req, "ops");
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 3);
    msgpack_pack_int(pk, KV_OPR_ADD);
    kv_mp_pack_cstr(pk, "name");
    msgpack_pack_int(pk, 1);
    assert(s_call(s, &req, &rep) == KV_ERR_BIN_TYPE);
    /* too big, too many bins, bin name too long, wrong digest */
    kv_req_init(&req, KV_OP_PUT);
    kv_req_record(&req, "test", "users", &k, true);
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    s_put_str(&req, "big", big);
    assert(s_call(s, &req, &rep) == KV_ERR_TOO_BIG);
    kv_req_init(&req, KV_OP_PUT);
    kv_req_record(&req, "test", "users", &k, true);
    s_put_str(&req, "a-very-long-bin-name", "x");
    assert(s_call(s, &req, &rep) == KV_ERR_BIN_NAME);
    kv_req_init(&req, KV_OP_PUT);
    kv_req_record(&req, "test", "users", &k, true);
    pk = kv_req_field(&req, "bins");
    msgpack_pack_map(pk, 3);
    for (int b = 0; b < 3; b++) {
        char nm[4] = {'b', (char) ('0' + b), 0};
        kv_mp_pack_cstr(pk, nm);
        msgpack_pack_int(pk, b);
    }
    assert(s_call(s, &req, &rep) == KV_ERR_TOO_MANY_BINS); /* 3 (city,name,n) + 3 > 4 */
    kv_req_init(&req, KV_OP_GET);
    kv_req_record(&req, "test", "users", &k, true);
    req.hdr.digest[5] ^= 1;
    assert(s_call(s, &req, &rep) == KV_ERR_BAD_REQUEST);
    /* unknown namespace, unknown op, garbage body */
    kv_req_init(&req, KV_OP_GET);
    kv_req_record(&req, "nope", "users", &k, false);
    assert(s_call(s, &req, &rep) == KV_ERR_NAMESPACE);
    kv_req_init(&req, 77);
    assert(s_call(s, &req, &rep) == KV_ERR_UNSUPPORTED);
    kv_hdr_t rh = {.op = KV_OP_GET};
    assert(s_call_raw(s, &rh, (const uint8_t *) "\xdd\xff\xff", 3, &rep) == KV_ERR_BAD_REQUEST);
    /* a frame of several requests gets one reply each, in order; a request
     * whose body runs past the frame ends it with an error */
    {
        uint8_t frame[3 * (KV_HDR_SIZE + 1)];
        for (int q = 0; q < 3; q++) {
            kv_hdr_t h = {.op = KV_OP_PING, .reqid = 100 + (uint64_t) q, .body_len = q == 2 ? 9 : 1};
            kv_hdr_encode(&h, frame + q * (KV_HDR_SIZE + 1));
            frame[q * (KV_HDR_SIZE + 1) + KV_HDR_SIZE] = 0x80;
        }
        server_handle_frame(s, frame, sizeof frame);
        size_t len, off = 0;
        const uint8_t *f = server_reply_frame(s, &len), *b;
        char w[128];
        kv_hdr_t h;
        for (int q = 0; q < 3; q++) {
            assert(kv_frame_next(f, len, &off, &h, &b, w, sizeof w) == KV_OK);
            assert(h.reqid == 100 + (uint64_t) q && h.status == (q == 2 ? KV_ERR_BAD_REQUEST : KV_OK));
        }
        assert(kv_frame_next(f, len, &off, &h, &b, w, sizeof w) == -1);
    }
    /* operate: a bin name with a NUL byte is refused (it could not be read
     * back), and so are the replace policies */
    kv_req_init(&req, KV_OP_OPERATE);
    kv_req_record(&req, "test", "users", &k, false);
    pk = kv_req_field(&req, "ops");
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 3);
    msgpack_pack_int(pk, KV_OPR_WRITE);
    kv_mp_pack_strn(pk, "a\0b", 3);
    msgpack_pack_int(pk, 1);
    assert(s_call(s, &req, &rep) == KV_ERR_BAD_REQUEST);
    kv_req_init(&req, KV_OP_OPERATE);
    kv_req_record(&req, "test", "users", &k, false);
    kv_req_int(&req, "exists", KV_EXISTS_REPLACE);
    pk = kv_req_field(&req, "ops");
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 1);
    msgpack_pack_int(pk, KV_OPR_TOUCH);
    assert(s_call(s, &req, &rep) == KV_ERR_BAD_REQUEST);
    /* the values one operate computes are bounded: 256 appends of a
     * near-limit string stop with RECORD_TOO_BIG and change nothing */
    kv_req_init(&req, KV_OP_OPERATE);
    kv_req_record(&req, "test", "users", &k, false);
    pk = kv_req_field(&req, "ops");
    msgpack_pack_array(pk, 256);
    msgpack_pack_array(pk, 3);
    msgpack_pack_int(pk, KV_OPR_WRITE);
    kv_mp_pack_cstr(pk, "s");
    char nearly[900];
    memset(nearly, 'y', sizeof nearly - 1);
    nearly[sizeof nearly - 1] = 0;
    kv_mp_pack_cstr(pk, nearly);
    for (int j = 1; j < 256; j++) {
        msgpack_pack_array(pk, 3);
        msgpack_pack_int(pk, KV_OPR_APPEND);
        kv_mp_pack_cstr(pk, "s");
        kv_mp_pack_cstr(pk, "");
    }
    assert(s_call(s, &req, &rep) == KV_ERR_TOO_BIG);
    /* a write without a key may not move an existing record to another set */
    kv_req_init(&req, KV_OP_PUT);
    kv_req_record(&req, "test", "users", &k, false); /* digest of users/alice, no key */
    kv_req_str(&req, "set", "evil", 4);
    s_put_str(&req, "x", "1");
    assert(s_call(s, &req, &rep) == KV_ERR_BAD_REQUEST); /* "set" given twice */
    kv_req_t bad;
    kv_req_init(&bad, KV_OP_PUT);
    assert(kv_digest("users", 5, &k, bad.hdr.digest) == 0);
    bad.hdr.pid = kv_partition(bad.hdr.digest);
    kv_req_str(&bad, "ns", "test", 4);
    kv_req_str(&bad, "set", "evil", 4);
    s_put_str(&bad, "x", "1");
    assert(s_call(s, &bad, &rep) == KV_ERR_BAD_REQUEST);
    kv_req_init(&bad, KV_OP_DELETE); /* nor delete or touch it under another set */
    assert(kv_digest("users", 5, &k, bad.hdr.digest) == 0);
    bad.hdr.pid = kv_partition(bad.hdr.digest);
    kv_req_str(&bad, "ns", "test", 4);
    kv_req_str(&bad, "set", "evil", 4);
    assert(s_call(s, &bad, &rep) == KV_ERR_BAD_REQUEST);
    /* replica writes: a newer image is applied, the same one again is
     * fine, an older one or a damaged one is refused with the reason */
    {
        kv_req_init(&req, KV_OP_GET);
        kv_req_record(&req, "test", "users", &k, false);
        uint8_t dg[KV_DIGEST_SIZE];
        memcpy(dg, req.hdr.digest, sizeof dg);
        kv_req_destroy(&req);
        const kv_rec_t *cur = store_get(s->ns[0], dg, (uint32_t) (kv_wall_ms() / 1000));
        assert(cur);
        size_t hl = offsetof(kv_rec_t, data), il = hl + rec_data_len(cur);
        uint8_t img[2048];
        assert(il <= sizeof img);
        memcpy(img, cur, il);
        uint32_t g0 = cur->gen;
        kv_rec_t *ih = (kv_rec_t *) img;
        for (int c = 0; c < 2; c++) { /* gen + 1: applied; then the same write again */
            ih->gen = g0 + 1;
            assert(s_replica_call(s, dg, img, il, 0, &rep) == KV_OK);
        }
        assert(store_get(s->ns[0], dg, (uint32_t) (kv_wall_ms() / 1000))->gen == g0 + 1);
        /* refused: older, a bad key, bins that are not a map, too big, and a
         * stale table; the record is unchanged */
        for (int c = 0; c < 5; c++) {
            memcpy(img, store_get(s->ns[0], dg, (uint32_t) (kv_wall_ms() / 1000)), il);
            size_t len = il;
            const char *want = NULL;
            int status = KV_ERR_BAD_REQUEST;
            uint32_t tv = 0;
            if (c == 0) {
                ih->gen = g0; /* older than what it holds */
                status = KV_ERR_GENERATION;
                want = "holds a newer copy";
            } else if (c == 1) {
                ih->key_type = KV_KEY_INT; /* an int key is 8 bytes */
                want = "bad key type or length";
                ih->gen = g0 + 2;
            } else if (c == 2) {
                img[hl + ih->set_len + ih->key_len] = 0x05; /* bins: an integer */
                want = "bins are not a map";
                ih->gen = g0 + 2;
            } else if (c == 3) {
                memset(img + il, 0xc0, 1100); /* 1100 nils more: past max-record-size 1024 */
                ih->bins_len += 1100;
                len += 1100;
                want = "max-record-size";
                ih->gen = g0 + 2;
            } else {
                ih->gen = g0 + 2;
                tv = 0;
                status = KV_OK; /* a newer write: applied (no table here, so any version is current) */
            }
            int rc = s_replica_call(s, dg, img, len, tv, &rep);
            assert(rc == status);
            char e[300];
            if (want)
                assert(strstr(kv_body_error(rep.p, (size_t) (rep.end - rep.p), e, sizeof e), want));
            if (status != KV_OK)
                assert(store_get(s->ns[0], dg, (uint32_t) (kv_wall_ms() / 1000))->gen == g0 + 1);
        }
    }
    /* delete: then not found */
    kv_req_init(&req, KV_OP_DELETE);
    kv_req_record(&req, "test", "users", &k, false);
    assert(s_call(s, &req, &rep) == KV_OK);
    kv_req_init(&req, KV_OP_EXISTS);
    kv_req_record(&req, "test", "users", &k, false);
    assert(s_call(s, &req, &rep) == KV_ERR_NOT_FOUND);
    s_merge_test(s);
    /* memory limit: fill until namespace full, then reads still work */
    int stored = 0, full = 0;
    for (int j = 0; j < 100000 && !full; j++) {
        kv_key_t kj = {.type = KV_KEY_INT, .i = j};
        kv_req_init(&req, KV_OP_PUT);
        kv_req_record(&req, "test", "fill", &kj, true);
        s_put_str(&req, "v", "0123456789012345678901234567890123456789");
        int rc = s_call(s, &req, &rep);
        if (rc == KV_OK)
            stored++;
        else {
            assert(rc == KV_ERR_NS_FULL);
            full = 1;
        }
    }
    assert(full && stored > 1000);
    kv_key_t k0 = {.type = KV_KEY_INT, .i = 0};
    kv_req_init(&req, KV_OP_GET);
    kv_req_record(&req, "test", "fill", &k0, false);
    assert(s_call(s, &req, &rep) == KV_OK);
    server_destroy(&s);
    assert(s == NULL);
}
