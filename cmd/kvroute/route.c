/* route: kvroute's membership, table proposer and client requests (see route.h). */
#include "route.h"
#include "kv_client.h"
#include "kv_err.h"
#include "kv_mp.h"
#include "kv_proto.h"
#include "kv_ptable.h"
#include "kv_util.h"
#include "migrate.h"
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define PHASE_TIMEOUT_MS 1000
#define ASK_TIMEOUT_MS 2000
#define NS_SIG_MAX 1024

/* What a request to a node was, in the top byte of its request id. */
enum { K_STATE = 1, K_PREPARE, K_ACCEPT, K_COMMIT, K_HBTO, K_BATCH };

#define BATCHES_MAX 1024     /* batches being gathered at once */
#define BATCH_TIMEOUT_MS 5000

/* A client's BATCH, split by master: its parts go out as BATCH requests of
 * the router's own; the answers are put back in the order of the keys,
 * and the reply goes to the client when every part is in (or at the
 * timeout, with TIMEOUT for the keys still missing). */
typedef struct {
    bool used;
    zmq_msg_t env[8];       /* the client's envelope */
    int n_env;
    kv_hdr_t h;             /* the client's request header */
    uint32_t n;             /* keys */
    uint8_t *part_of;       /* per key: the part (node index) it went to */
    uint32_t *pos;          /* per key: its place in its part */
    msgpack_sbuffer *res;   /* per key: its entry of the reply, once in */
    bool *have;
    uint64_t part_id[KV_NODES_MAX]; /* request id of each part, 0 = none */
    int parts_left;
    uint64_t deadline;
} batch_t;

typedef enum { N_ASKING, N_UP, N_GONE, N_REFUSED } nstate_t;
static const char *s_state_names[] = {"asking", "up", "gone", "refused"};

typedef struct {
    char endpoint[KV_ENDPOINT_MAX + 1];
    void *sock;          /* DEALER to the node */
    uint64_t id;         /* 0 until its state reply */
    nstate_t state;
    bool removed;        /* taken out with 'cluster remove' here, not yet known to the node */
    bool node_removed;   /* the node says it was removed (by any router) */
    char why[400];       /* why refused */
    uint64_t seen_ms;    /* last heartbeat or reply */
    uint64_t asked_ms;   /* when its state was asked (0 = not pending) */
    uint64_t commit_ms;  /* when it was last sent the installed table */
    uint32_t version;    /* its installed table version */
    uint64_t cluster;
    uint64_t boot;       /* its boot id: a change is a restart */
    bool recovering;     /* it restarted ranked in its table: it serves nothing until resumed */
    uint64_t resume_ms;  /* when it was told to resume (its older reports are stale) */
    uint64_t recovering_ms; /* when it was first seen recovering (0: it is not) */
} rnode_t;

typedef struct {
    uint64_t round, proposer;
} ballot_t;

struct route {
    route_config_t cfg;
    void *ctx, *sock; /* ROUTER: clients and heartbeats */
    char endpoint[KV_ENDPOINT_MAX + 1];
    uint64_t proposer;
    rnode_t nodes[KV_NODES_MAX];
    int n;
    kv_ptable_t base;              /* newest installed table known */
    char ns_sig[NS_SIG_MAX];       /* the cluster's namespaces ("" until the first node) */
    uint64_t next_req, start_ms, backoff_until;
    struct {
        bool active;
        int phase;                 /* 1 prepare, 2 accept */
        uint64_t reqid, deadline;
        uint64_t round;
        kv_ptable_t want, value;
        uint64_t acc[KV_NODES_MAX]; /* acceptor ids */
        bool granted[KV_NODES_MAX];
        int n_acc;
        bool all;                  /* quorum: all of acc (version 1) or a majority */
        ballot_t best_b;
        kv_ptable_t best;
    } p;
    msgpack_sbuffer out;
    msgpack_packer pk;
    uint8_t (*rows)[KV_RF_MAX];          /* rows of base */
    msgpack_sbuffer fwd[KV_NODES_MAX];   /* requests for each node of base, being split */
    uint64_t forwarded, unroutable;
    batch_t *batches;                    /* BATCHES_MAX */
    migrate_t *mig;                      /* the migrations of base */
    uint32_t mig_version;                /* the version mig was given */
    char lost_ids[KV_NODES_MAX * 18 + 1]; /* dead members kept for their data (last warned) */
};

static void s_batch_part(route_t *r, const kv_hdr_t *h, const uint8_t *body, size_t len);

/* ---- messages to nodes -------------------------------------------------- */

static uint64_t s_reqid(route_t *r, int kind) { return ((uint64_t) kind << 56) | (++r->next_req & 0xFFFFFFFFFFFFFFull); }

/* Send {"cmd": cmd, ...} (the caller has packed the other n-1 pairs into
 * extra) to node i. */
static void s_send(route_t *r, rnode_t *nd, uint64_t reqid, const msgpack_sbuffer *body)
{
    kv_hdr_t h = {.op = KV_OP_CLUSTER, .reqid = reqid, .body_len = (uint32_t) body->size};
    zmq_msg_t m;
    zmq_msg_init_size(&m, KV_HDR_SIZE + body->size);
    kv_hdr_encode(&h, zmq_msg_data(&m));
    memcpy((uint8_t *) zmq_msg_data(&m) + KV_HDR_SIZE, body->data, body->size);
    if (zmq_send(nd->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 || zmq_msg_send(&m, nd->sock, ZMQ_DONTWAIT) < 0)
        zmq_msg_close(&m); /* queue full: the phase times out and is retried */
}

static void s_body(msgpack_sbuffer *sb, msgpack_packer *pk, const char *cmd, int extra)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(pk, (uint32_t) (1 + extra));
    kv_mp_pack_cstr(pk, "cmd");
    kv_mp_pack_cstr(pk, cmd);
}

static void s_ask_state(route_t *r, rnode_t *nd, uint64_t now)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    s_body(&sb, &pk, "state", 0);
    s_send(r, nd, s_reqid(r, K_STATE), &sb);
    msgpack_sbuffer_destroy(&sb);
    s_body(&sb, &pk, "heartbeat-to", 2);
    kv_mp_pack_cstr(&pk, "router");
    kv_mp_pack_cstr(&pk, r->endpoint);
    kv_mp_pack_cstr(&pk, "interval_ms");
    msgpack_pack_uint32(&pk, r->cfg.hb_interval_ms);
    s_send(r, nd, s_reqid(r, K_HBTO), &sb);
    msgpack_sbuffer_destroy(&sb);
    nd->asked_ms = now ? now : 1;
}

static void s_commit_to(route_t *r, rnode_t *nd, const kv_ptable_t *t, uint64_t now)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    s_body(&sb, &pk, "commit", 1);
    kv_mp_pack_cstr(&pk, "table");
    kv_ptable_pack(t, &pk);
    s_send(r, nd, s_reqid(r, K_COMMIT), &sb);
    msgpack_sbuffer_destroy(&sb);
    nd->commit_ms = now;
}

/* Tell the node it is removed (or back): every router then leaves it out. */
static void s_set_removed(route_t *r, rnode_t *nd, bool removed)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    s_body(&sb, &pk, "set-removed", 1);
    kv_mp_pack_cstr(&pk, "removed");
    kv_mp_pack_bool(&pk, removed);
    s_send(r, nd, s_reqid(r, K_STATE), &sb); /* its reply is a state reply */
    msgpack_sbuffer_destroy(&sb);
}

static rnode_t *s_by_id(route_t *r, uint64_t id)
{
    for (int i = 0; id && i < r->n; i++)
        if (r->nodes[i].id == id)
            return &r->nodes[i];
    return NULL;
}

/* Is node id up (a callback of the migrations)? */
static bool s_up(void *arg, uint64_t id)
{
    const rnode_t *nd = s_by_id(arg, id);
    return nd && nd->state == N_UP;
}

static rnode_t *s_by_endpoint(route_t *r, const char *ep)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->nodes[i].endpoint, ep) == 0)
            return &r->nodes[i];
    return NULL;
}

/* Add a node to contact; NULL if the list is full or the endpoint bad. */
static rnode_t *s_add_node(route_t *r, const char *ep, char *why, size_t whylen)
{
    rnode_t *nd = s_by_endpoint(r, ep);
    if (nd)
        return nd;
    if (r->n == KV_NODES_MAX) {
        snprintf(why, whylen, "at most %d nodes", KV_NODES_MAX);
        return NULL;
    }
    if (!ep[0] || strlen(ep) > KV_ENDPOINT_MAX) {
        snprintf(why, whylen, "node endpoint must be 1..%d bytes", KV_ENDPOINT_MAX);
        return NULL;
    }
    void *sock = zmq_socket(r->ctx, ZMQ_DEALER);
    int linger = 0, hwm = 1000;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (zmq_connect(sock, ep) != 0) {
        snprintf(why, whylen, "cannot connect to node %s: %s", ep, zmq_strerror(errno));
        zmq_close(sock);
        return NULL;
    }
    nd = &r->nodes[r->n++];
    memset(nd, 0, sizeof *nd);
    snprintf(nd->endpoint, sizeof nd->endpoint, "%s", ep);
    nd->sock = sock;
    nd->state = N_ASKING;
    s_ask_state(r, nd, kv_mono_ms());
    return nd;
}

/* ---- namespaces -------------------------------------------------------- */

/* Canonical text of a node's "namespaces" ([[name, rf, mode], ...]),
 * sorted by name: "name rf=N mode; ...".  0 or -1. */
static int s_ns_sig(kv_mp_t *v, char *out, size_t cap)
{
    uint32_t n;
    if (kv_mp_read_array(v, &n) != 0 || n > 32)
        return -1;
    char items[32][80];
    for (uint32_t i = 0; i < n; i++) {
        uint32_t m, nl, ml;
        const char *name, *mode;
        int64_t rf;
        if (kv_mp_read_array(v, &m) != 0 || m != 3 || kv_mp_read_str(v, &name, &nl) != 0 || nl > KV_NS_MAX ||
            kv_mp_read_int(v, &rf) != 0 || kv_mp_read_str(v, &mode, &ml) != 0 || ml > 8)
            return -1;
        snprintf(items[i], sizeof items[i], "%.*s rf=%lld %.*s", (int) nl, name, (long long) rf, (int) ml, mode);
    }
    qsort(items, n, sizeof items[0], (int (*)(const void *, const void *)) strcmp);
    out[0] = '\0';
    for (uint32_t i = 0; i < n; i++) {
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%s", i ? "; " : "", items[i]);
    }
    return 0;
}

/* ---- the installed table ----------------------------------------------- */

static void s_log_table(const kv_ptable_t *t, const char *how)
{
    char ids[KV_NODES_MAX * 18 + 1] = "";
    for (int i = 0; i < t->n; i++) {
        size_t l = strlen(ids);
        snprintf(ids + l, sizeof ids - l, "%s%016" PRIx64, i ? "," : "", t->nodes[i].id);
    }
    kv_warn("%s table version %u (cluster %016" PRIx64 ", hash %016" PRIx64 "): nodes %s", how, t->version,
            t->cluster, kv_ptable_hash(t), ids);
}

/* A newer installed table was seen (from a node, or chosen here). */
static void s_learn(route_t *r, const kv_ptable_t *t, const char *how)
{
    if (t->version <= r->base.version)
        return;
    r->base = *t;
    kv_ptable_rows(&r->base, r->rows);
    s_log_table(t, how);

    for (int i = 0; i < t->n; i++) { /* contact every member, so it heartbeats here too */
        char why[300];
        if (!s_by_endpoint(r, t->nodes[i].endpoint) && !s_add_node(r, t->nodes[i].endpoint, why, sizeof why))
            kv_warn("node %s of the table: %s", t->nodes[i].endpoint, why);
    }
}

/* ---- proposals ----------------------------------------------------------- */

static bool s_quorum(const route_t *r)
{
    int g = 0;
    for (int i = 0; i < r->p.n_acc; i++)
        g += r->p.granted[i];
    return r->p.all ? g == r->p.n_acc : 2 * g > r->p.n_acc;
}

static void s_phase(route_t *r, int phase)
{
    uint64_t now = kv_mono_ms();
    r->p.phase = phase;
    r->p.reqid = s_reqid(r, phase == 1 ? K_PREPARE : K_ACCEPT);
    r->p.deadline = now + PHASE_TIMEOUT_MS;
    memset(r->p.granted, 0, sizeof r->p.granted);
    for (int i = 0; i < r->p.n_acc; i++) {
        rnode_t *nd = s_by_id(r, r->p.acc[i]);
        if (!nd)
            continue;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        s_body(&sb, &pk, phase == 1 ? "prepare" : "accept", phase == 1 ? 2 : 3);
        kv_mp_pack_cstr(&pk, "version");
        msgpack_pack_uint32(&pk, r->p.want.version);
        kv_mp_pack_cstr(&pk, "ballot");
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint64(&pk, r->p.round);
        msgpack_pack_uint64(&pk, r->proposer);
        if (phase == 2) {
            kv_mp_pack_cstr(&pk, "table");
            kv_ptable_pack(&r->p.value, &pk);
        }
        s_send(r, nd, r->p.reqid, &sb);
        msgpack_sbuffer_destroy(&sb);
    }
}

static void s_abort(route_t *r, const char *why)
{
    if (!r->p.active)
        return;
    kv_warn("proposal of table version %u (round %" PRIu64 ") stopped: %s", r->p.want.version, r->p.round, why);
    r->p.active = false;
    r->backoff_until = kv_mono_ms() + 50 + randombytes_uniform(250); /* two routers stop colliding */
}

static void s_propose(route_t *r, const kv_ptable_t *want)
{
    r->p.active = true;
    r->p.want = *want;
    r->p.round++;
    r->p.best_b = (ballot_t){0, 0};
    const kv_ptable_t *acc = r->base.version ? &r->base : want;
    r->p.all = r->base.version == 0;
    r->p.n_acc = acc->n;
    for (int i = 0; i < acc->n; i++)
        r->p.acc[i] = acc->nodes[i].id;
    kv_warn("proposing table version %u with %d node(s) (round %" PRIu64 ", %s of %d must grant)", want->version,
            want->n, r->p.round, r->p.all ? "all" : "a majority", acc->n);
    s_phase(r, 1);
}

/* A prepare or accept reply from node nd. */
static void s_vote(route_t *r, rnode_t *nd, const uint8_t *body, size_t len, int kind)
{
    kv_mp_t v = kv_mp(body, len);
    uint32_t n;
    bool granted = false, have_granted = false;
    ballot_t promised = {0, 0}, acc_b = {0, 0};
    kv_ptable_t *t = malloc(sizeof *t), *acc = malloc(sizeof *acc);
    char why[300];
    if (!t || !acc || kv_mp_read_map(&v, &n) != 0)
        goto out;
    kv_ptable_init(t);
    kv_ptable_init(acc);
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (kv_mp_read_str(&v, &k, &kl) != 0)
            goto out;
#define KEY(x) (kl == strlen(x) && memcmp(k, x, kl) == 0)
        int64_t a, b;
        uint32_t m;
        if (KEY("granted")) {
            if (kv_mp_read_bool(&v, &granted) != 0)
                goto out;
            have_granted = true;
        } else if (KEY("promised") || KEY("accepted_ballot")) {
            if (kv_mp_read_array(&v, &m) != 0 || m != 2 || kv_mp_read_int(&v, &a) != 0 || kv_mp_read_int(&v, &b) != 0)
                goto out;
            ballot_t *dst = KEY("promised") ? &promised : &acc_b;
            *dst = (ballot_t){(uint64_t) a, (uint64_t) b};
        } else if (KEY("table")) {
            if (kv_ptable_unpack(t, &v, why, sizeof why) != 0)
                goto out;
        } else if (KEY("accepted") && kv_mp_type(&v) != KV_MP_NIL) {
            if (kv_ptable_unpack(acc, &v, why, sizeof why) != 0)
                goto out;
        } else if (kv_mp_skip(&v) != 0)
            goto out;
#undef KEY
    }
    if (!have_granted)
        goto out;
    if (t->version > r->base.version)
        s_learn(r, t, "learned");
    if (t->version >= r->p.want.version) {
        s_abort(r, "that version is installed already");
        goto out;
    }
    int at = -1;
    for (int i = 0; i < r->p.n_acc; i++)
        if (r->p.acc[i] == nd->id)
            at = i;
    if (at < 0)
        goto out;
    if (!granted) {
        if (promised.round > r->p.round)
            r->p.round = promised.round;
        s_abort(r, "a node promised a higher ballot (another router is proposing)");
        goto out;
    }
    r->p.granted[at] = true;
    if (kind == K_PREPARE && acc_b.round &&
        (acc_b.round > r->p.best_b.round || (acc_b.round == r->p.best_b.round && acc_b.proposer > r->p.best_b.proposer)) &&
        acc->version == r->p.want.version) {
        r->p.best_b = acc_b;
        r->p.best = *acc;
    }
    if (!s_quorum(r))
        goto out;
    if (r->p.phase == 1) {
        r->p.value = r->p.best_b.round ? r->p.best : r->p.want;
        s_phase(r, 2);
    } else {
        r->p.active = false;
        kv_ptable_t chosen = r->p.value;
        s_learn(r, &chosen, "chose");
        uint64_t now = kv_mono_ms();
        for (int i = 0; i < r->n; i++)
            if (r->nodes[i].state != N_REFUSED)
                s_commit_to(r, &r->nodes[i], &chosen, now);
    }
out:
    free(t);
    free(acc);
}

/* ---- replies from nodes and heartbeats ------------------------------------ */

static void s_refuse(rnode_t *nd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_refuse(rnode_t *nd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(nd->why, sizeof nd->why, fmt, ap);
    va_end(ap);
    if (nd->state != N_REFUSED)
        kv_warn("node %s refused: %s", nd->endpoint, nd->why);
    nd->state = N_REFUSED;
}

/* What a node says of itself (state reply or heartbeat): check it against
 * the cluster and note it alive. */
static void s_node_says(route_t *r, rnode_t *nd, const uint8_t *body, size_t len, bool is_state)
{
    kv_mp_t v = kv_mp(body, len);
    uint32_t n;
    int64_t id = 0, version = -1, cluster = 0, boot = 0;
    bool recovering = false, removed = false;
    char sig[NS_SIG_MAX] = "";
    bool have_sig = false;
    kv_ptable_t *t = malloc(sizeof *t);
    char why[300];
    if (!t)
        return;
    kv_ptable_init(t);
    if (kv_mp_read_map(&v, &n) != 0)
        goto bad;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (kv_mp_read_str(&v, &k, &kl) != 0)
            goto bad;
#define KEY(x) (kl == strlen(x) && memcmp(k, x, kl) == 0)
        if (KEY("node")) {
            if (kv_mp_read_int(&v, &id) != 0 || id <= 0)
                goto bad;
        } else if (KEY("version")) {
            if (kv_mp_read_int(&v, &version) != 0 || version < 0 || version > UINT32_MAX)
                goto bad;
        } else if (KEY("cluster")) {
            if (kv_mp_read_int(&v, &cluster) != 0)
                goto bad;
        } else if (KEY("boot")) {
            if (kv_mp_read_int(&v, &boot) != 0)
                goto bad;
        } else if (KEY("recovering")) {
            if (kv_mp_read_bool(&v, &recovering) != 0)
                goto bad;
        } else if (KEY("removed")) {
            if (kv_mp_read_bool(&v, &removed) != 0)
                goto bad;
        } else if (KEY("namespaces")) {
            if (s_ns_sig(&v, sig, sizeof sig) != 0)
                goto bad;
            have_sig = true;
        } else if (KEY("table")) {
            if (kv_ptable_unpack(t, &v, why, sizeof why) != 0)
                goto bad;
        } else if (kv_mp_skip(&v) != 0)
            goto bad;
#undef KEY
    }
    if (id <= 0 || version < 0 || !have_sig)
        goto bad;
    rnode_t *other = s_by_id(r, (uint64_t) id);
    if (other && other != nd) {
        s_refuse(nd, "node id %016" PRIx64 " is already in use by %s", (uint64_t) id, other->endpoint);
        goto out;
    }
    nd->id = (uint64_t) id;
    nd->version = (uint32_t) version;
    nd->cluster = (uint64_t) cluster;
    /* a report older than a resume sent to it is stale */
    nd->recovering = recovering && (!nd->resume_ms || kv_mono_ms() >= nd->resume_ms + 2000);
    if (!nd->recovering)
        nd->recovering_ms = 0;
    else if (!nd->recovering_ms)
        nd->recovering_ms = kv_mono_ms();
    nd->node_removed = removed;
    if (removed)
        nd->removed = false; /* the node has it: from now on it is the one that knows */
    else if (nd->removed)
        s_set_removed(r, nd, true); /* removed here while it was away: tell it now */
    if (nd->boot && (uint64_t) boot != nd->boot) {
        kv_warn("node %016" PRIx64 " at %s restarted%s", nd->id, nd->endpoint,
                recovering ? "; it serves nothing until a newer table" : "");
        migrate_restarted(r->mig, nd->id); /* what was copied to it may be lost */
    }
    nd->boot = (uint64_t) boot;
    if (r->base.version && cluster && (uint64_t) cluster != r->base.cluster) {
        s_refuse(nd, "it belongs to cluster %016" PRIx64 ", this cluster is %016" PRIx64, (uint64_t) cluster,
                 r->base.cluster);
        goto out;
    }
    if (!r->ns_sig[0])
        snprintf(r->ns_sig, sizeof r->ns_sig, "%s", sig);
    else if (strcmp(sig, r->ns_sig) != 0) {
        s_refuse(nd, "its namespaces differ from the cluster's: it has '%s', the cluster has '%s'", sig, r->ns_sig);
        goto out;
    }
    if (is_state && t->version > r->base.version)
        s_learn(r, t, "learned");
    uint64_t now = kv_mono_ms();
    nd->seen_ms = now;
    nd->asked_ms = 0;
    if (nd->state != N_UP) {
        kv_warn("node %016" PRIx64 " at %s is up (table version %u)", nd->id, nd->endpoint, nd->version);
        nd->state = N_UP;
    }
    /* it lags: send it the installed table; it is ahead: ask for its table */
    if (nd->version < r->base.version && now >= nd->commit_ms + r->cfg.hb_interval_ms && !nd->removed)
        s_commit_to(r, nd, &r->base, now);
    else if (nd->version > r->base.version && !nd->asked_ms)
        s_ask_state(r, nd, now);
    goto out;
bad:
    s_refuse(nd, "it answered something that is not a kvnode's cluster state (is it a kvnode?)");
out:
    free(t);
}

/* A message on a node's DEALER: replies to state, prepare, accept, commit. */
static void s_from_node(route_t *r, rnode_t *nd)
{
    for (;;) {
        zmq_msg_t f[16];
        int parts = kv_recv_parts(nd->sock, f, 16), nf = parts < 16 ? parts : 16;
        if (parts == 0)
            return;
        if (parts >= 3 && parts <= 16 && zmq_msg_size(&f[0]) != 0) {
            /* a reply to a client's request: its envelope leads, pass it on */
            for (int i = 0; i < nf; i++)
                zmq_msg_send(&f[i], r->sock, (i + 1 < nf ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
            for (int i = 0; i < nf; i++)
                zmq_msg_close(&f[i]);
            continue;
        }
        if (parts == 2 && zmq_msg_size(&f[0]) == 0) {
            const uint8_t *frame = zmq_msg_data(&f[1]), *body;
            size_t len = zmq_msg_size(&f[1]), off = 0;
            kv_hdr_t h;
            char why[200];
            while (kv_frame_next(frame, len, &off, &h, &body, why, sizeof why) == KV_OK) {
                int kind = (int) (h.reqid >> 56);
                if (kind == K_BATCH) {
                    s_batch_part(r, &h, body, h.body_len);
                    continue;
                }
                if (h.status != KV_OK) {
                    char e[300];
                    kv_body_error(body, h.body_len, e, sizeof e);
                    if (kind == K_STATE || kind == K_HBTO)
                        s_refuse(nd, "it answered %s: %s", kv_err_name(h.status), e);
                    else
                        kv_warn("node %s: %s: %s", nd->endpoint, kv_err_name(h.status), e);
                    continue;
                }
                if (kind == K_STATE)
                    s_node_says(r, nd, body, h.body_len, true);
                else if ((kind == K_PREPARE || kind == K_ACCEPT) && r->p.active && h.reqid == r->p.reqid)
                    s_vote(r, nd, body, h.body_len, kind);
            }
        } else
            s_refuse(nd, "it answered something that is not a kvstore reply (is it a kvnode?)");
        for (int i = 0; i < nf; i++)
            zmq_msg_close(&f[i]);
    }
}

/* ---- client requests ----------------------------------------------------- */

static void s_reply_error(route_t *r, kv_hdr_t *h, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void s_reply_error(route_t *r, kv_hdr_t *h, int code, const char *fmt, ...)
{
    char why[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    h->status = (uint16_t) code;
    msgpack_pack_map(&r->pk, 1);
    kv_mp_pack_cstr(&r->pk, "error");
    kv_mp_pack_cstr(&r->pk, why);
}

static void s_pack_id(msgpack_packer *pk, uint64_t id)
{
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, id);
    kv_mp_pack_cstr(pk, hex);
}

static void s_info_cluster(route_t *r)
{
    msgpack_packer *pk = &r->pk;
    const kv_ptable_t *t = &r->base;
    int masters[KV_NODES_MAX] = {0}, replicas[KV_NODES_MAX] = {0}, filling[KV_NODES_MAX] = {0}, unavailable = 0;
    int rf = 2;
    const char *p = strstr(r->ns_sig, " rf=");
    if (p && atoi(p + 4) >= 1 && atoi(p + 4) <= KV_RF_MAX)
        rf = atoi(p + 4); /* the first namespace's */
    for (int q = 0; t->version && q < KV_PARTITIONS; q++) {
        kv_pcopies_t c;
        kv_ptable_copies(t, (uint16_t) q, rf, &c);
        bool live = false;
        for (int k = 0; k < c.n; k++) {
            (c.nodes[k] == c.master ? masters : c.full[k] ? replicas : filling)[c.nodes[k]]++;
            live |= c.full[k] && s_up(r, t->nodes[c.nodes[k]].id);
        }
        unavailable += !live || c.lost;
    }
    migrate_stats_t ms;
    migrate_stats(r->mig, &ms);
    msgpack_pack_map(pk, 9);
    kv_mp_pack_cstr(pk, "settled");
    kv_mp_pack_bool(pk, kv_ptable_settled(t));
    kv_mp_pack_cstr(pk, "unavailable");
    msgpack_pack_int(pk, unavailable);
    kv_mp_pack_cstr(pk, "migrations");
    msgpack_pack_map(pk, 5);
    kv_mp_pack_cstr(pk, "remaining");
    msgpack_pack_uint32(pk, ms.remaining);
    kv_mp_pack_cstr(pk, "active");
    msgpack_pack_uint32(pk, ms.active);
    kv_mp_pack_cstr(pk, "done");
    msgpack_pack_uint64(pk, ms.done);
    kv_mp_pack_cstr(pk, "failed");
    msgpack_pack_uint64(pk, ms.failed);
    kv_mp_pack_cstr(pk, "records");
    msgpack_pack_uint64(pk, ms.records);
    kv_mp_pack_cstr(pk, "cluster");
    s_pack_id(pk, t->cluster);
    kv_mp_pack_cstr(pk, "version");
    msgpack_pack_uint32(pk, t->version);
    kv_mp_pack_cstr(pk, "router");
    kv_mp_pack_cstr(pk, r->endpoint);
    kv_mp_pack_cstr(pk, "namespaces");
    kv_mp_pack_cstr(pk, r->ns_sig);
    kv_mp_pack_cstr(pk, "proposing");
    if (r->p.active)
        msgpack_pack_uint32(pk, r->p.want.version);
    else
        msgpack_pack_nil(pk);
    kv_mp_pack_cstr(pk, "nodes");
    msgpack_pack_array(pk, (uint32_t) r->n);
    for (int i = 0; i < r->n; i++) {
        const rnode_t *nd = &r->nodes[i];
        int at = kv_ptable_find(t, nd->id);
        msgpack_pack_map(pk, nd->state == N_REFUSED ? 8 : 7);
        kv_mp_pack_cstr(pk, "id");
        s_pack_id(pk, nd->id);
        kv_mp_pack_cstr(pk, "endpoint");
        kv_mp_pack_cstr(pk, nd->endpoint);
        kv_mp_pack_cstr(pk, "state");
        kv_mp_pack_cstr(pk, nd->removed || nd->node_removed                                ? "removed"
                            : nd->state == N_UP && at >= 0 && t->nodes[at].state != KV_PN_RANKED
                                ? kv_pnstate_name(t->nodes[at].state)
                                : s_state_names[nd->state]);
        kv_mp_pack_cstr(pk, "table_version");
        msgpack_pack_uint32(pk, nd->version);
        kv_mp_pack_cstr(pk, "masters");
        msgpack_pack_int(pk, at >= 0 ? masters[at] : 0);
        kv_mp_pack_cstr(pk, "replicas");
        msgpack_pack_int(pk, at >= 0 ? replicas[at] : 0);
        kv_mp_pack_cstr(pk, "filling");
        msgpack_pack_int(pk, at >= 0 ? filling[at] : 0);
        if (nd->state == N_REFUSED) {
            kv_mp_pack_cstr(pk, "why");
            kv_mp_pack_cstr(pk, nd->why);
        }
    }
}

static void s_info_partitions(route_t *r)
{
    msgpack_packer *pk = &r->pk;
    const kv_ptable_t *t = &r->base;
    uint8_t (*rows)[KV_RF_MAX] = calloc(KV_PARTITIONS, sizeof *rows);
    int copies = t->n < KV_RF_MAX ? t->n : KV_RF_MAX;
    const char *p = strstr(r->ns_sig, " rf=");
    if (p && atoi(p + 4) < copies)
        copies = atoi(p + 4);
    if (rows && t->version)
        kv_ptable_rows(t, rows);
    msgpack_pack_map(pk, 2);
    kv_mp_pack_cstr(pk, "version");
    msgpack_pack_uint32(pk, t->version);
    kv_mp_pack_cstr(pk, "partitions");
    msgpack_pack_array(pk, t->version && rows ? KV_PARTITIONS : 0);
    for (int q = 0; t->version && rows && q < KV_PARTITIONS; q++) {
        int have = 0; /* filling members are in no row: a row may be shorter, or empty */
        while (have < copies && rows[q][have] != UINT8_MAX)
            have++;
        msgpack_pack_array(pk, (uint32_t) have);
        for (int k = 0; k < have; k++)
            s_pack_id(pk, t->nodes[rows[q][k]].id);
    }
    free(rows);
}

/* The cluster's namespaces (from the nodes' declarations): names, rf
 * and modes; returns how many (at most MIGRATE_NS_MAX). */
static int s_ns_list(const route_t *r, char names[][32], int *rfs, char modes[][16])
{
    const char *p = r->ns_sig;
    int count = 0;
    while (*p && count < MIGRATE_NS_MAX) {
        const char *end = strstr(p, "; ");
        size_t n = end ? (size_t) (end - p) : strlen(p);
        char item[128], mode[16];
        unsigned rf;
        snprintf(item, sizeof item, "%.*s", (int) (n < sizeof item ? n : sizeof item - 1), p);
        if (sscanf(item, "%31s rf=%u %15s", names[count], &rf, mode) == 3 && rf >= 1 && rf <= KV_RF_MAX) {
            rfs[count] = (int) rf;
            if (modes)
                snprintf(modes[count], sizeof modes[count], "%s", mode);
            count++;
        }
        p += n;
        if (*p)
            p += 2;
    }
    return count;
}

/* info NAME: a namespace of the cluster, as its nodes declare it (name,
 * rf, mode, nodes in the table); -1 if the cluster has none by that name. */
static int s_info_ns(route_t *r, const char *name, uint32_t len)
{
    char names[MIGRATE_NS_MAX][32], modes[MIGRATE_NS_MAX][16];
    int rfs[MIGRATE_NS_MAX], n = s_ns_list(r, names, rfs, modes);
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0) {
            msgpack_pack_map(&r->pk, 4);
            kv_mp_pack_cstr(&r->pk, "name");
            kv_mp_pack_cstr(&r->pk, names[i]);
            kv_mp_pack_cstr(&r->pk, "rf");
            msgpack_pack_uint32(&r->pk, (uint32_t) rfs[i]);
            kv_mp_pack_cstr(&r->pk, "mode");
            kv_mp_pack_cstr(&r->pk, modes[i]);
            kv_mp_pack_cstr(&r->pk, "nodes");
            msgpack_pack_int(&r->pk, r->base.n);
            return 0;
        }
    return -1;
}

static int s_parse_id(const char *s, uint32_t len, uint64_t *id)
{
    char buf[17];
    if (len != 16)
        return -1;
    memcpy(buf, s, 16);
    buf[16] = '\0';
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 16);
    if (errno || *end || v == 0)
        return -1;
    *id = v;
    return 0;
}

static void s_admin(route_t *r, kv_hdr_t *h, const uint8_t *body, size_t len)
{
    kv_mp_t v;
    const char *cmd = "", *arg = "";
    uint32_t cl = 0, al = 0;
    if (kv_body_get(body, len, "cmd", &v) == 0)
        kv_mp_read_str(&v, &cmd, &cl);
    if (cl == 9 && memcmp(cmd, "heartbeat", 9) == 0) {
        /* from a node: find it by id, else by endpoint, else learn it */
        int64_t id = 0;
        const char *ep = "";
        uint32_t el = 0;
        if (kv_body_get(body, len, "node", &v) == 0)
            kv_mp_read_int(&v, &id);
        if (kv_body_get(body, len, "endpoint", &v) == 0)
            kv_mp_read_str(&v, &ep, &el);
        rnode_t *nd = s_by_id(r, (uint64_t) id);
        char epz[KV_ENDPOINT_MAX + 1];
        snprintf(epz, sizeof epz, "%.*s", (int) (el > KV_ENDPOINT_MAX ? KV_ENDPOINT_MAX : el), ep);
        if (!nd && el)
            nd = s_by_endpoint(r, epz);
        if (!nd && el) {
            char why[300];
            if (!(nd = s_add_node(r, epz, why, sizeof why)))
                kv_warn("heartbeat from %s: %s", epz, why);
            return; /* its state reply admits it */
        }
        if (nd && el && strcmp(nd->endpoint, epz) != 0 && !s_by_endpoint(r, epz) && nd->state == N_UP &&
            kv_mono_ms() <= nd->seen_ms + 3 * (uint64_t) r->cfg.hb_interval_ms) {
            /* two processes with one id (a copied data directory?), or a
             * forged heartbeat: keep the one that is up */
            kv_warn("heartbeat from node %016" PRIx64 " at %s while it is up at %s: ignored", nd->id, epz,
                    nd->endpoint);
            return;
        }
        if (nd && el && strcmp(nd->endpoint, epz) != 0 && !s_by_endpoint(r, epz)) {
            /* the same node at a new endpoint (restarted elsewhere): follow it */
            void *sock = zmq_socket(r->ctx, ZMQ_DEALER);
            int linger = 0;
            zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
            if (sock && zmq_connect(sock, epz) == 0) {
                kv_warn("node %016" PRIx64 " moved from %s to %s", nd->id, nd->endpoint, epz);
                zmq_close(nd->sock);
                nd->sock = sock;
                snprintf(nd->endpoint, sizeof nd->endpoint, "%s", epz);
                nd->state = N_ASKING;
                s_ask_state(r, nd, kv_mono_ms());
                return;
            }
            if (sock)
                zmq_close(sock);
        }
        if (nd && nd->state != N_REFUSED && nd->id)
            s_node_says(r, nd, body, len, false);
        return;
    }
    if (kv_body_get(body, len, "arg", &v) == 0)
        kv_mp_read_str(&v, &arg, &al);
    if (cl == 3 && memcmp(cmd, "add", 3) == 0) {
        char ep[KV_ENDPOINT_MAX + 1], why[300];
        if (al == 0 || al > KV_ENDPOINT_MAX)
            return s_reply_error(r, h, KV_ERR_BAD_REQUEST, "cluster add: expected a node endpoint");
        snprintf(ep, sizeof ep, "%.*s", (int) al, arg);
        rnode_t *nd = s_by_endpoint(r, ep);
        if (nd) {
            nd->removed = false;
            s_set_removed(r, nd, false);
            if (nd->state == N_REFUSED || nd->state == N_GONE) {
                nd->state = N_ASKING;
                s_ask_state(r, nd, kv_mono_ms());
            }
        } else if (!(nd = s_add_node(r, ep, why, sizeof why)))
            return s_reply_error(r, h, KV_ERR_BAD_REQUEST, "cluster add %s: %s", ep, why);
        else
            s_set_removed(r, nd, false); /* it may have been removed by another router */
        msgpack_pack_map(&r->pk, 1);
        kv_mp_pack_cstr(&r->pk, "added");
        kv_mp_pack_cstr(&r->pk, ep);
    } else if (cl == 6 && memcmp(cmd, "remove", 6) == 0) {
        uint64_t id;
        if (s_parse_id(arg, al, &id) != 0)
            return s_reply_error(r, h, KV_ERR_BAD_REQUEST, "cluster remove: '%.*s' is not a node id (16 hex digits)",
                                 (int) (al > 32 ? 32 : al), arg);
        rnode_t *nd = s_by_id(r, id);
        if (!nd)
            return s_reply_error(r, h, KV_ERR_BAD_REQUEST, "cluster remove: no node %016" PRIx64 " in this cluster",
                                 id);
        nd->removed = true;
        s_set_removed(r, nd, true);
        kv_warn("node %016" PRIx64 " at %s removed by request", id, nd->endpoint);
        msgpack_pack_map(&r->pk, 1);
        kv_mp_pack_cstr(&r->pk, "removed");
        s_pack_id(&r->pk, id);
    } else
        s_reply_error(r, h, KV_ERR_BAD_REQUEST, "unknown cluster command '%.*s' (add ENDPOINT, remove NODE)",
                      (int) (cl > 32 ? 32 : cl), cmd);
}

/* Key k's entry is just a status. */
static void s_batch_status(batch_t *b, uint32_t k, int status)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b->res[k], msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    kv_mp_pack_cstr(&pk, "status");
    msgpack_pack_int(&pk, status);
    b->have[k] = true;
}

static void s_batch_free(batch_t *b)
{
    for (int i = 0; i < b->n_env; i++)
        zmq_msg_close(&b->env[i]);
    for (uint32_t k = 0; b->res && k < b->n; k++)
        msgpack_sbuffer_destroy(&b->res[k]);
    free(b->part_of);
    free(b->pos);
    free(b->res);
    free(b->have);
    memset(b, 0, sizeof *b);
}

/* Answer the client.  When every part is in: the entries of the keys up
 * to the first one a part left out (a node answers a large batch in
 * pieces), and done says how many, so the client asks again for the
 * rest.  At the deadline (timed_out): every key, the missing ones TIMEOUT. */
static void s_batch_reply(route_t *r, batch_t *b, bool timed_out)
{
    uint32_t done = 0;
    while (done < b->n && (b->have[done] || timed_out))
        done++;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    kv_mp_begin_message(&sb, &pk);
    msgpack_pack_map(&pk, 2);
    kv_mp_pack_cstr(&pk, "done");
    msgpack_pack_uint32(&pk, done);
    kv_mp_pack_cstr(&pk, "records");
    msgpack_pack_array(&pk, done);
    for (uint32_t k = 0; k < done; k++)
        if (b->have[k])
            msgpack_sbuffer_write(&sb, b->res[k].data, b->res[k].size);
        else {
            msgpack_pack_map(&pk, 1);
            kv_mp_pack_cstr(&pk, "status");
            msgpack_pack_int(&pk, KV_ERR_TIMEOUT);
        }
    kv_hdr_t h = b->h;
    h.status = KV_OK;
    h.table_version = r->base.version;
    h.body_len = (uint32_t) (sb.size - KV_HDR_SIZE);
    kv_hdr_encode(&h, (uint8_t *) sb.data);
    for (int i = 0; i < b->n_env; i++)
        zmq_send(r->sock, zmq_msg_data(&b->env[i]), zmq_msg_size(&b->env[i]), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(r->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(r->sock, sb.data, sb.size, ZMQ_DONTWAIT);
    msgpack_sbuffer_destroy(&sb);
    s_batch_free(b);
}

/* Split a client's BATCH by master and send the parts; 0, or -1 with the
 * error packed for the client (rh's status set). */
static int s_batch_start(route_t *r, kv_hdr_t *rh, const uint8_t *body, size_t len, zmq_msg_t *env, int d)
{
    kv_mp_t keys, chk = kv_mp(body, len);
    uint32_t n, fields;
    /* the body is copied field by field into each part: check its shape */
    bool shape = kv_mp_valid(body, len) && kv_mp_read_map(&chk, &fields) == 0;
    for (uint32_t f = 0; shape && f < fields; f++) {
        const char *k;
        uint32_t kl;
        shape = kv_mp_read_str(&chk, &k, &kl) == 0 && kv_mp_skip(&chk) == 0;
    }
    if (!shape) {
        s_reply_error(r, rh, KV_ERR_BAD_REQUEST, "body must be one MessagePack map with string keys");
        return -1;
    }
    if (kv_body_get(body, len, "keys", &keys) != 0 || kv_mp_read_array(&keys, &n) != 0 || n > KV_BATCH_MAX) {
        s_reply_error(r, rh, KV_ERR_BAD_REQUEST, "missing keys (field 'keys': array of at most %d digests)",
                      KV_BATCH_MAX);
        return -1;
    }
    if (d > 8) {
        s_reply_error(r, rh, KV_ERR_BAD_REQUEST, "envelope of %d frames is too deep for a batch", d);
        return -1;
    }
    batch_t *b = NULL;
    for (int i = 0; i < BATCHES_MAX && !b; i++)
        if (!r->batches[i].used)
            b = &r->batches[i];
    if (!b) {
        s_reply_error(r, rh, KV_ERR_KEY_BUSY, "%d batches are being gathered; try again", BATCHES_MAX);
        return -1;
    }
    b->part_of = calloc(n ? n : 1, 1);
    b->pos = calloc(n ? n : 1, sizeof *b->pos);
    b->res = calloc(n ? n : 1, sizeof *b->res);
    b->have = calloc(n ? n : 1, sizeof *b->have);
    if (!b->part_of || !b->pos || !b->res || !b->have) {
        s_batch_free(b);
        s_reply_error(r, rh, KV_ERR_SERVER, "out of memory");
        return -1;
    }
    b->used = true;
    b->n = n;
    for (uint32_t k = 0; k < n; k++)
        msgpack_sbuffer_init(&b->res[k]);
    const uint8_t *digests[KV_BATCH_MAX];
    uint32_t count[KV_NODES_MAX] = {0};
    for (uint32_t k = 0; k < n; k++) {
        uint32_t dl;
        if (kv_mp_read_bin(&keys, &digests[k], &dl) != 0 || dl != KV_DIGEST_SIZE) {
            s_batch_free(b);
            s_reply_error(r, rh, KV_ERR_BAD_REQUEST, "keys[%u] is not a %d-byte digest", k, KV_DIGEST_SIZE);
            return -1;
        }
        uint8_t m = r->rows[kv_partition(digests[k])][0];
        b->part_of[k] = m;
        if (m == UINT8_MAX) /* no master: answered at once */
            s_batch_status(b, k, KV_ERR_UNAVAILABLE);
        else
            b->pos[k] = count[m]++;
    }
    b->h = *rh;
    b->n_env = d;
    for (int i = 0; i < d; i++) {
        zmq_msg_init(&b->env[i]);
        zmq_msg_copy(&b->env[i], &env[i]);
    }
    b->deadline = kv_mono_ms() + BATCH_TIMEOUT_MS;
    /* each part: the client's body with "keys" replaced by its keys */
    for (int m = 0; m < r->base.n; m++) {
        if (!count[m])
            continue;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        kv_mp_t v = kv_mp(body, len);
        kv_mp_read_map(&v, &fields);
        msgpack_pack_map(&pk, fields);
        for (uint32_t f = 0; f < fields; f++) {
            const uint8_t *ks = v.p;
            const char *k = "";
            uint32_t kl = 0;
            kv_mp_read_str(&v, &k, &kl); /* checked by s_batch_start's shape test */
            kv_mp_skip(&v);
            if (kl == 4 && memcmp(k, "keys", 4) == 0) {
                kv_mp_pack_cstr(&pk, "keys");
                msgpack_pack_array(&pk, count[m]);
                for (uint32_t k2 = 0; k2 < n; k2++)
                    if (b->part_of[k2] == m) {
                        msgpack_pack_bin(&pk, KV_DIGEST_SIZE);
                        msgpack_pack_bin_body(&pk, digests[k2], KV_DIGEST_SIZE);
                    }
            } else
                msgpack_sbuffer_write(&sb, (const char *) ks, (size_t) (v.p - ks));
        }
        rnode_t *nd = s_by_id(r, r->base.nodes[m].id);
        b->part_id[m] = s_reqid(r, K_BATCH);
        kv_hdr_t h = {.op = KV_OP_BATCH, .reqid = b->part_id[m], .flags = rh->flags, .body_len = (uint32_t) sb.size};
        zmq_msg_t msg;
        zmq_msg_init_size(&msg, KV_HDR_SIZE + sb.size);
        kv_hdr_encode(&h, zmq_msg_data(&msg));
        memcpy((uint8_t *) zmq_msg_data(&msg) + KV_HDR_SIZE, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        if (nd && nd->state == N_UP && zmq_send(nd->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
            zmq_msg_send(&msg, nd->sock, ZMQ_DONTWAIT) >= 0)
            b->parts_left++;
        else {
            zmq_msg_close(&msg);
            b->part_id[m] = 0;
            for (uint32_t k2 = 0; k2 < n; k2++)
                if (b->part_of[k2] == m)
                    s_batch_status(b, k2, KV_ERR_UNAVAILABLE);
        }
    }
    if (!b->parts_left)
        s_batch_reply(r, b, false);
    return 0;
}

/* A node's answer to a part of a batch. */
static void s_batch_part(route_t *r, const kv_hdr_t *h, const uint8_t *body, size_t len)
{
    batch_t *b = NULL;
    int m = -1;
    for (int i = 0; i < BATCHES_MAX && !b; i++)
        if (r->batches[i].used)
            for (int j = 0; j < KV_NODES_MAX; j++)
                if (r->batches[i].part_id[j] == h->reqid) {
                    b = &r->batches[i];
                    m = j;
                    break;
                }
    if (!b)
        return; /* timed out already */
    b->part_id[m] = 0;
    b->parts_left--;
    kv_mp_t recs, dv;
    uint32_t cnt = 0;
    int64_t done = 0;
    bool ok = h->status == KV_OK && kv_body_get(body, len, "records", &recs) == 0 &&
              kv_mp_read_array(&recs, &cnt) == 0 && kv_body_get(body, len, "done", &dv) == 0 &&
              kv_mp_read_int(&dv, &done) == 0 && done == cnt;
    /* entries in the part's order; a part answered short (a large reply)
     * leaves its later keys missing: the client asks again for them */
    uint32_t i = 0;
    for (uint32_t k = 0; ok && k < b->n && i < cnt; k++)
        if (b->part_of[k] == m && !b->have[k] && b->pos[k] == i) {
            const uint8_t *st = recs.p;
            if (kv_mp_skip(&recs) != 0)
                break;
            msgpack_sbuffer_write(&b->res[k], (const char *) st, (size_t) (recs.p - st));
            b->have[k] = true;
            i++;
        }
    for (uint32_t k = 0; !ok && k < b->n; k++) /* a part that failed: its keys get its error */
        if (b->part_of[k] == m && !b->have[k])
            s_batch_status(b, k, h->status != KV_OK ? h->status : KV_ERR_SERVER);
    if (!b->parts_left)
        s_batch_reply(r, b, false);
}

/* Send each node its share of a client's requests, as one frame behind
 * the client's envelope (env[0..d-1]), so its replies come back through
 * this router with no state kept here.  Requests whose master is not up
 * are answered UNAVAILABLE into r->out. */
static void s_forward(route_t *r, zmq_msg_t *env, int d)
{
    for (int i = 0; i < r->base.n; i++) {
        msgpack_sbuffer *q = &r->fwd[i];
        if (!q->size)
            continue;
        rnode_t *nd = s_by_id(r, r->base.nodes[i].id);
        bool ok = nd && nd->state == N_UP;
        for (int k = 0; ok && k < d; k++)
            ok = zmq_send(nd->sock, zmq_msg_data(&env[k]), zmq_msg_size(&env[k]), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0;
        ok = ok && zmq_send(nd->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
             zmq_send(nd->sock, q->data, q->size, ZMQ_DONTWAIT) >= 0;
        if (ok) {
            r->forwarded++;
        } else {
            /* a DEALER takes a whole message or none of it: only the first
             * part can fail (queue full, or no connection) */
            const uint8_t *body;
            size_t off = 0;
            kv_hdr_t h;
            while (kv_frame_next((const uint8_t *) q->data, q->size, &off, &h, &body, NULL, 0) == KV_OK) {
                size_t start = r->out.size;
                static const uint8_t room[KV_HDR_SIZE];
                msgpack_sbuffer_write(&r->out, (const char *) room, sizeof room);
                kv_hdr_t rh = h;
                rh.table_version = r->base.version;
                s_reply_error(r, &rh, KV_ERR_UNAVAILABLE,
                              "the master of partition %u, node %016" PRIx64 ", is %s (table version %u)", h.pid,
                              r->base.nodes[i].id, nd ? s_state_names[nd->state] : "unknown", r->base.version);
                rh.body_len = (uint32_t) (r->out.size - start - KV_HDR_SIZE);
                kv_hdr_encode(&rh, (uint8_t *) r->out.data + start);
                r->unroutable++;
            }
        }
        msgpack_sbuffer_clear(q);
    }
}

/* One client message: answer each request of its frame. */
static void s_from_client(route_t *r)
{
    zmq_msg_t f[16];
    int parts = kv_recv_parts(r->sock, f, 16), nf = parts < 16 ? parts : 16;
    if (parts == 0)
        return;
    int d = 0;
    while (d < nf && zmq_msg_size(&f[d]) != 0)
        d++;
    if (d + 2 != parts) {
        /* not [envelope, delimiter, one frame]: answer BAD_REQUEST, as a
         * node does, to the envelope (the identity alone if no delimiter) */
        int n_env = d < nf ? d : 1;
        msgpack_sbuffer_clear(&r->out);
        static const uint8_t room[KV_HDR_SIZE];
        msgpack_sbuffer_write(&r->out, (const char *) room, sizeof room);
        kv_hdr_t rh = {.table_version = r->base.version};
        if (d + 1 < nf && zmq_msg_size(&f[d + 1]) >= 16)
            rh.reqid = kv_get64((const uint8_t *) zmq_msg_data(&f[d + 1]) + 8);
        s_reply_error(r, &rh, KV_ERR_BAD_REQUEST,
                      d == nf ? "a request needs an empty delimiter frame before its request frame"
                              : "a request is one frame after the delimiter, not %d", parts - d - 1);
        rh.body_len = (uint32_t) (r->out.size - KV_HDR_SIZE);
        kv_hdr_encode(&rh, (uint8_t *) r->out.data);
        for (int i = 0; i < n_env; i++)
            zmq_send(r->sock, zmq_msg_data(&f[i]), zmq_msg_size(&f[i]), ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send(r->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send(r->sock, r->out.data, r->out.size, ZMQ_DONTWAIT);
    } else if (d + 2 == parts) {
        msgpack_sbuffer_clear(&r->out);
        const uint8_t *frame = zmq_msg_data(&f[d + 1]), *body;
        size_t len = zmq_msg_size(&f[d + 1]), off = 0;
        kv_hdr_t h;
        char why[200];
        int rc;
        if (len == 0) { /* as a node does: an empty request frame is answered */
            static const uint8_t room[KV_HDR_SIZE];
            msgpack_sbuffer_write(&r->out, (const char *) room, sizeof room);
            kv_hdr_t rh = {.table_version = r->base.version};
            s_reply_error(r, &rh, KV_ERR_BAD_REQUEST, "empty request frame");
            rh.body_len = (uint32_t) (r->out.size - KV_HDR_SIZE);
            kv_hdr_encode(&rh, (uint8_t *) r->out.data);
        }
        while ((rc = kv_frame_next(frame, len, &off, &h, &body, why, sizeof why)) != -1) {
            size_t start = r->out.size;
            static const uint8_t room[KV_HDR_SIZE];
            msgpack_sbuffer_write(&r->out, (const char *) room, sizeof room);
            kv_hdr_t rh = h;
            rh.status = KV_OK;
            rh.table_version = r->base.version;
            bool quiet = false;
            if (rc != KV_OK)
                s_reply_error(r, &rh, rc, "%s", why);
            else if (h.op == KV_OP_PING) {
                msgpack_pack_map(&r->pk, 0);
            } else if (h.op == KV_OP_INFO) {
                kv_mp_t v;
                const char *w = "";
                uint32_t wl = 0;
                if (kv_body_get(body, h.body_len, "what", &v) == 0)
                    kv_mp_read_str(&v, &w, &wl);
                if (wl == 0 || (wl == 7 && memcmp(w, "cluster", 7) == 0))
                    s_info_cluster(r);
                else if (wl == 10 && memcmp(w, "partitions", 10) == 0)
                    s_info_partitions(r);
                else if (wl == 5 && memcmp(w, "table", 5) == 0) /* for smart clients */
                    kv_ptable_pack(&r->base, &r->pk);
                else if (s_info_ns(r, w, wl) != 0)
                    s_reply_error(r, &rh, KV_ERR_BAD_REQUEST,
                                  "unknown info '%.*s' for a router (cluster, partitions, table or a namespace name)",
                                  (int) (wl > 64 ? 64 : wl), w);
            } else if (h.op == KV_OP_CLUSTER) {
                kv_mp_t v;
                const char *c = "";
                uint32_t l = 0;
                if (kv_body_get(body, h.body_len, "cmd", &v) == 0)
                    kv_mp_read_str(&v, &c, &l);
                quiet = l == 9 && memcmp(c, "heartbeat", 9) == 0;
                s_admin(r, &rh, body, h.body_len);
            } else if (h.op == KV_OP_BATCH && r->base.version == 0)
                s_reply_error(r, &rh, KV_ERR_UNAVAILABLE, "the cluster has no partition table yet");
            else if (h.op == KV_OP_BATCH) {
                if (s_batch_start(r, &rh, body, h.body_len, f, d) == 0) {
                    r->out.size = start; /* answered when its parts are in */
                    continue;
                }
            }
            else if (!kv_op_name(h.op) || h.op == KV_OP_REPLICA)
                s_reply_error(r, &rh, KV_ERR_UNSUPPORTED, "op %u is not taken by a router", h.op);
            else if (r->base.version == 0)
                s_reply_error(r, &rh, KV_ERR_UNAVAILABLE, "the cluster has no partition table yet");
            else if (r->rows[h.pid][0] == UINT8_MAX)
                s_reply_error(r, &rh, KV_ERR_UNAVAILABLE,
                              "partition %u has no master in table version %u (every member is filling)", h.pid,
                              r->base.version);
            else {
                /* a record request: to its partition's master, unread */
                msgpack_sbuffer *q = &r->fwd[r->rows[h.pid][0]];
                msgpack_sbuffer_write(q, (const char *) body - KV_HDR_SIZE, KV_HDR_SIZE + h.body_len);
                r->out.size = start;
                continue;
            }
            if (quiet) {
                r->out.size = start; /* heartbeats are not answered */
                continue;
            }
            rh.body_len = (uint32_t) (r->out.size - start - KV_HDR_SIZE);
            kv_hdr_encode(&rh, (uint8_t *) r->out.data + start);
            if (rc != KV_OK)
                break;
        }
        s_forward(r, f, d);
        if (r->out.size) {
            for (int i = 0; i <= d; i++)
                zmq_send(r->sock, zmq_msg_data(&f[i]), zmq_msg_size(&f[i]), ZMQ_SNDMORE | ZMQ_DONTWAIT);
            zmq_send(r->sock, r->out.data, r->out.size, ZMQ_DONTWAIT);
        }
    }
    for (int i = 0; i < nf; i++)
        zmq_msg_close(&f[i]);
}

/* ---- membership -------------------------------------------------------- */

/* The smallest rf of the cluster's namespaces (the strictest for copies). */
static int s_min_rf(const route_t *r)
{
    int rf = KV_RF_MAX;
    for (const char *p = strstr(r->ns_sig, " rf="); p; p = strstr(p + 4, " rf="))
        if (atoi(p + 4) >= 1 && atoi(p + 4) < rf)
            rf = atoi(p + 4);
    return rf;
}

/* Does every partition keep a copy among these node ids?  A partition's
 * copies are the first rf of its row in the installed table; a node not
 * among them has none of its data. */
static bool s_covers(const route_t *r, const uint64_t *ids, int n)
{
    int rf = s_min_rf(r);
    for (int p = 0; p < KV_PARTITIONS; p++) {
        bool kept = false;
        for (int k = 0; k < rf && !kept && r->rows[p][k] != UINT8_MAX; k++)
            for (int j = 0; j < n && !kept; j++)
                kept = r->base.nodes[r->rows[p][k]].id == ids[j];
        if (!kept)
            return false;
    }
    return true;
}

/* Tell a restarted member of the installed table to serve again: it holds
 * the data the table says. */
static void s_resume(route_t *r, rnode_t *nd, uint64_t now)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    s_body(&sb, &pk, "resume", 1);
    kv_mp_pack_cstr(&pk, "version");
    msgpack_pack_uint32(&pk, r->base.version);
    s_send(r, nd, s_reqid(r, K_STATE), &sb);
    msgpack_sbuffer_destroy(&sb);
    nd->recovering = false;
    nd->resume_ms = now;
}

/* Partitions of t whose reference holds no full copy (for rf). */
static int s_lost(const kv_ptable_t *t, int rf)
{
    int n = 0;
    for (int p = 0; p < KV_PARTITIONS; p++) {
        kv_pcopies_t c;
        kv_ptable_copies(t, (uint16_t) p, rf, &c);
        n += c.lost;
    }
    return n;
}

/* The table membership calls for: each member of the installed table in
 * its next state, and the nodes that joined, filling (kv_ptable.h):
 *   ranked   -> gone (not up), leaving (removed), back (it restarted while
 *               the others went on: it may have missed writes)
 *   leaving  -> gone (not up), ranked (added again)
 *   filling  -> out of the table (not up, or removed)
 *   gone, back -> back (up), gone (not up, or removed)
 * A member whose copies are still needed keeps its place until the
 * migrations are done and the table is settled. */
static void s_want(route_t *r, kv_ptable_t *want, bool any_steady)
{
    kv_ptable_init(want);
    for (int i = 0; i < r->base.n; i++) {
        const kv_pnode_t *m = &r->base.nodes[i];
        const rnode_t *nd = s_by_id(r, m->id);
        bool up = nd && nd->state == N_UP, out = nd && (nd->removed || nd->node_removed);
        int st = m->state;
        if (m->state == KV_PN_RANKED)
            st = !up ? KV_PN_GONE : out ? KV_PN_LEAVING : nd->recovering && any_steady ? KV_PN_BACK : KV_PN_RANKED;
        else if (m->state == KV_PN_LEAVING)
            st = !up ? KV_PN_GONE : out ? KV_PN_LEAVING : KV_PN_RANKED;
        else if (m->state == KV_PN_FILLING)
            st = !up || out ? -1 : KV_PN_FILLING;
        else
            st = up && !out ? KV_PN_BACK : KV_PN_GONE;
        if (st >= 0 && kv_ptable_add(want, m->id, up ? nd->endpoint : m->endpoint) == 0)
            want->nodes[kv_ptable_find(want, m->id)].state = (uint8_t) st;
    }
    for (int i = 0; i < r->n; i++) {
        const rnode_t *nd = &r->nodes[i];
        if (nd->state != N_UP || nd->removed || nd->node_removed || kv_ptable_find(&r->base, nd->id) >= 0)
            continue;
        if (kv_ptable_add(want, nd->id, nd->endpoint) == 0)
            want->nodes[kv_ptable_find(want, nd->id)].state = r->base.version ? KV_PN_FILLING : KV_PN_RANKED;
    }
    /* never let a partition lose its last full copy: if more than rf-1 of
     * its copies died or restarted, the members that held full data stay
     * as they were rather than hand their partitions to members without
     * the data; a dead one's partitions are unavailable until it comes
     * back, and a restarted one is resumed: its copy is the best there is
     * (the others it shares partitions with can only have taken writes
     * that were in doubt while it was away) */
    /* (the rankings are hashed only when some member holding full data
     * would stop holding it: not at every tick) */
    bool demoted = false;
    for (int i = 0; i < want->n && !demoted; i++) {
        int at = kv_ptable_find(&r->base, want->nodes[i].id);
        demoted = !kv_pn_full(want->nodes[i].state) && at >= 0 && kv_pn_full(r->base.nodes[at].state);
    }
    int rf = s_min_rf(r);
    if (!r->base.version || !demoted || s_lost(want, rf) <= s_lost(&r->base, rf)) {
        r->lost_ids[0] = '\0';
        return;
    }
    char ids[KV_NODES_MAX * 18 + 1] = "";
    for (int i = 0; i < want->n; i++) {
        int at = kv_ptable_find(&r->base, want->nodes[i].id);
        if (!kv_pn_full(want->nodes[i].state) && at >= 0 && kv_pn_full(r->base.nodes[at].state)) {
            rnode_t *nd = s_by_id(r, want->nodes[i].id);
            want->nodes[i].state = r->base.nodes[at].state;
            if (nd && nd->state == N_UP && nd->recovering && nd->version == r->base.version)
                s_resume(r, nd, kv_mono_ms());
            size_t l = strlen(ids);
            snprintf(ids + l, sizeof ids - l, "%s%016" PRIx64, l ? "," : "", want->nodes[i].id);
        }
    }
    if (strcmp(ids, r->lost_ids) != 0) {
        kv_warn("PARTITIONS WITHOUT A LIVE COPY: more than rf-1 copies of some partitions are down or restarted; "
                "nodes %s keep their places: a dead one's partitions are unavailable until it comes back, a restarted "
                "one is resumed",
                ids);
        snprintf(r->lost_ids, sizeof r->lost_ids, "%s", ids);
    }
}

/* May node id take part in a migration of the installed table: it is up,
 * and it has installed the table (a master on an older one would not
 * send its writes to the member being filled)? */
static bool s_ready(void *arg, uint64_t id)
{
    const route_t *r = arg;
    const rnode_t *nd = s_by_id((route_t *) r, id);
    return nd && nd->state == N_UP && nd->version >= r->base.version;
}

/* Start and watch the migrations the installed table needs. */
static void s_migrations(route_t *r)
{
    if (!r->base.version || !r->ns_sig[0])
        return;
    if (r->mig_version != r->base.version) {
        char names[MIGRATE_NS_MAX][32];
        int rfs[MIGRATE_NS_MAX], n = s_ns_list(r, names, rfs, NULL);
        if (migrate_table(r->mig, &r->base, names, rfs, n) == 0)
            r->mig_version = r->base.version; /* else tried again at the next tick */
    }
    migrate_tick(r->mig, s_ready, r);
}

static void s_tick(route_t *r)
{
    uint64_t now = kv_mono_ms(), timeout = (uint64_t) r->cfg.hb_interval_ms * r->cfg.hb_misses;
    for (int i = 0; i < BATCHES_MAX; i++) /* batches whose parts are late: missing keys TIMEOUT */
        if (r->batches[i].used && now >= r->batches[i].deadline)
            s_batch_reply(r, &r->batches[i], true);
    bool settling = false;
    for (int i = 0; i < r->n; i++) {
        rnode_t *nd = &r->nodes[i];
        if (nd->state == N_UP && now > nd->seen_ms + timeout) {
            nd->state = N_GONE;
            kv_warn("node %016" PRIx64 " at %s is gone (no heartbeat for %" PRIu64 " ms)", nd->id, nd->endpoint,
                    now - nd->seen_ms);
        }
        if (nd->state == N_ASKING && nd->asked_ms && now > nd->asked_ms + ASK_TIMEOUT_MS) {
            kv_warn("node %s: no answer within %d ms (is it a running kvnode?); asking again", nd->endpoint,
                    ASK_TIMEOUT_MS);
            s_ask_state(r, nd, now);
        }
        if ((nd->state == N_GONE || nd->state == N_REFUSED) && now > nd->asked_ms + ASK_TIMEOUT_MS)
            s_ask_state(r, nd, now); /* it may come back (or be fixed) */
        settling |= nd->state == N_ASKING && now < r->start_ms + 2 * timeout;
    }
    s_migrations(r);
    if (r->p.active) {
        if (now >= r->p.deadline)
            s_abort(r, r->p.phase == 1 ? "too few nodes granted the prepare in time"
                                       : "too few nodes accepted in time");
        return;
    }
    if (settling || now < r->backoff_until)
        return;
    kv_ptable_t *want = malloc(sizeof *want);
    if (!want)
        return;
    kv_ptable_init(want);
    /* A member keeps its place; one that joins a running cluster, or
     * restarted while ranked, is added filling: it serves no partition
     * until it holds the data (migrations, kvrepl).  If every ranked
     * member that is up restarted (the whole cluster did), they are the
     * data: they stay ranked. */
    /* Steady: a ranked member heard from after the first restarted one
     * came back (its old process, if it was killed too, cannot be).
     * Unsure: quiet since then, but not yet gone. */
    uint64_t first_back = UINT64_MAX;
    for (int i = 0; i < r->n; i++)
        if (r->nodes[i].state == N_UP && r->nodes[i].recovering && r->nodes[i].recovering_ms < first_back)
            first_back = r->nodes[i].recovering_ms;
    bool any_steady = false, unsure = false, any_recovering = first_back != UINT64_MAX;
    for (int i = 0; i < r->n; i++) {
        const rnode_t *nd = &r->nodes[i];
        int at = kv_ptable_find(&r->base, nd->id);
        if (nd->state != N_UP || nd->removed || nd->node_removed || at < 0 || !kv_pn_full(r->base.nodes[at].state) ||
            nd->recovering)
            continue;
        if (!any_recovering || nd->seen_ms > first_back + r->cfg.hb_interval_ms)
            any_steady = true;
        else
            unsure = true;
    }
    /* a member restarted while others are quiet: wait until they are heard
     * from or gone, so a whole-cluster restart is not taken for the
     * restart of the first member to come back */
    if (any_recovering && unsure) {
        free(want);
        return;
    }
    /* a cluster restart: every ranked member that is up restarted, and
     * holds the current table: they are the data, resume them */
    bool cold = false;
    uint64_t back[KV_NODES_MAX];
    int nback = 0;
    for (int i = 0; !any_steady && r->base.version && i < r->n; i++) {
        rnode_t *nd = &r->nodes[i];
        int at = kv_ptable_find(&r->base, nd->id);
        if (nd->state == N_UP && !nd->removed && !nd->node_removed && at >= 0 && kv_pn_full(r->base.nodes[at].state) &&
            nd->recovering && nd->version == r->base.version)
            back[nback++] = nd->id;
    }
    /* only if they hold a copy of every partition: else the others are
     * needed, and their partitions wait for them (unavailable) */
    bool enough = nback > 0 && s_covers(r, back, nback);
    for (int i = 0; enough && i < r->n; i++) {
        rnode_t *nd = &r->nodes[i];
        int at = kv_ptable_find(&r->base, nd->id);
        if (nd->state == N_UP && !nd->removed && !nd->node_removed && at >= 0 && kv_pn_full(r->base.nodes[at].state) &&
            nd->recovering && nd->version == r->base.version) {
            s_resume(r, nd, now);
            cold = true;
        }
    }
    if (cold)
        kv_warn("every ranked member restarted: resuming the %d back, which hold a copy of every partition "
                "(table version %u)",
                nback, r->base.version);
    s_want(r, want, any_steady);
    bool same = want->n == r->base.n;
    for (int i = 0; same && i < want->n; i++)
        same = want->nodes[i].id == r->base.nodes[i].id && want->nodes[i].state == r->base.nodes[i].state &&
               strcmp(want->nodes[i].endpoint, r->base.nodes[i].endpoint) == 0;
    /* nothing changed, and every fill the table needs is done: settle it
     * (filling and back members ranked, gone and leaving ones out) */
    if (same && r->base.version && !kv_ptable_settled(&r->base) && r->mig_version == r->base.version &&
        migrate_done(r->mig)) {
        kv_ptable_init(want);
        for (int i = 0; i < r->base.n; i++)
            if (kv_pn_target(r->base.nodes[i].state))
                kv_ptable_add(want, r->base.nodes[i].id, r->base.nodes[i].endpoint);
        if (want->n > 0) { /* else every member is leaving or gone: there is nowhere to settle */
            kv_warn("every migration of table version %u is done: proposing the settled table", r->base.version);
            same = false;
        }
    }
    if (!same && want->n > 0) {
        want->version = r->base.version + 1;
        want->cluster = r->base.cluster;
        while (!want->cluster) {
            randombytes_buf(&want->cluster, sizeof want->cluster);
            want->cluster &= INT64_MAX;
        }
        s_propose(r, want);
    }
    free(want);
}

/* ---- life cycle -------------------------------------------------------- */

route_t *route_new(const route_config_t *cfg, char *why, size_t whylen)
{
    route_t *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    r->cfg = *cfg;
    kv_ptable_init(&r->base);
    migrate_config_t mc = {.kvrepl = r->cfg.kvrepl, .per_node = cfg->migrate_max, .rate = cfg->migrate_rate,
                           .chunk = 256};
    if (!(r->mig = migrate_new(&mc))) {
        snprintf(why, whylen, "out of memory");
        free(r);
        return NULL;
    }
    while (!r->proposer) {
        randombytes_buf(&r->proposer, sizeof r->proposer);
        r->proposer &= INT64_MAX;
    }
    msgpack_sbuffer_init(&r->out);
    msgpack_packer_init(&r->pk, &r->out, msgpack_sbuffer_write);
    for (int i = 0; i < KV_NODES_MAX; i++)
        msgpack_sbuffer_init(&r->fwd[i]);
    if (!(r->rows = calloc(KV_PARTITIONS, sizeof *r->rows)) || !(r->batches = calloc(BATCHES_MAX, sizeof *r->batches))) {
        free(r->rows);
        migrate_destroy(&r->mig);
        snprintf(why, whylen, "out of memory");
        free(r);
        return NULL;
    }
    r->ctx = zmq_ctx_new();
    r->sock = zmq_socket(r->ctx, ZMQ_ROUTER);
    int linger = 0, maxmsg = KV_FRAME_MAX + 4096;
    int64_t max = maxmsg;
    zmq_setsockopt(r->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(r->sock, ZMQ_MAXMSGSIZE, &max, sizeof max);
    if (zmq_bind(r->sock, cfg->listen) != 0) {
        snprintf(why, whylen, "cannot listen on %s: %s", cfg->listen, zmq_strerror(errno));
        route_destroy(&r);
        return NULL;
    }
    size_t len = sizeof r->endpoint;
    zmq_getsockopt(r->sock, ZMQ_LAST_ENDPOINT, r->endpoint, &len);
    r->start_ms = kv_mono_ms();
    for (int i = 0; i < cfg->n_nodes; i++)
        if (!s_add_node(r, cfg->nodes[i], why, whylen)) {
            route_destroy(&r);
            return NULL;
        }
    return r;
}

void route_destroy(route_t **self_p)
{
    route_t *r = *self_p;
    if (!r)
        return;
    migrate_destroy(&r->mig);
    for (int i = 0; i < r->n; i++)
        zmq_close(r->nodes[i].sock);
    if (r->sock)
        zmq_close(r->sock);
    zmq_ctx_term(r->ctx);
    msgpack_sbuffer_destroy(&r->out);
    for (int i = 0; i < KV_NODES_MAX; i++)
        msgpack_sbuffer_destroy(&r->fwd[i]);
    for (int i = 0; r->batches && i < BATCHES_MAX; i++)
        if (r->batches[i].used)
            s_batch_free(&r->batches[i]);
    free(r->batches);
    free(r->rows);
    free(r);
    *self_p = NULL;
}

const char *route_endpoint(const route_t *r) { return r->endpoint; }

void route_run(route_t *r, volatile int *stop)
{
    zmq_pollitem_t items[1 + KV_NODES_MAX];
    uint64_t next_tick = 0;
    while (!*stop) {
        items[0] = (zmq_pollitem_t){r->sock, 0, ZMQ_POLLIN, 0};
        int n = r->n;
        for (int i = 0; i < n; i++)
            items[1 + i] = (zmq_pollitem_t){r->nodes[i].sock, 0, ZMQ_POLLIN, 0};
        uint64_t now = kv_mono_ms();
        long wait = now >= next_tick ? 0 : (long) (next_tick - now);
        int rc = zmq_poll(items, 1 + n, wait);
        if (rc < 0 && errno != EINTR)
            break;
        if (rc > 0 && (items[0].revents & ZMQ_POLLIN))
            for (int k = 0; k < 1024; k++) {
                int ev = 0;
                size_t sz = sizeof ev;
                if (zmq_getsockopt(r->sock, ZMQ_EVENTS, &ev, &sz) != 0 || !(ev & ZMQ_POLLIN))
                    break;
                s_from_client(r);
            }
        for (int i = 0; rc > 0 && i < n; i++)
            if (items[1 + i].revents & ZMQ_POLLIN)
                s_from_node(r, &r->nodes[i]);
        if (kv_mono_ms() >= next_tick) {
            s_tick(r);
            next_tick = kv_mono_ms() + (r->cfg.hb_interval_ms / 3 ? r->cfg.hb_interval_ms / 3 : 1);
        }
    }
}
