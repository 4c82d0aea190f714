/* cluster: node id, installed partition table, Paxos acceptor state and
 * heartbeats of one kvnode (see cluster.h). */
#include "cluster.h"
#include "kv_err.h"
#include "kv_util.h"
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define ROUTERS_MAX 8
#define STATE_MAX (64 * 1024) /* a table of 64 nodes is ~17 KiB */

typedef struct {
    uint64_t round, proposer; /* compared in this order; (0, 0) = none */
} ballot_t;

typedef struct {
    char endpoint[KV_ENDPOINT_MAX + 1];
    void *sock;          /* DEALER to the router */
    uint32_t interval_ms;
    uint64_t next_ms;
} router_t;

struct cluster {
    char dir[1024];       /* "" = nothing on disk */
    uint64_t node_id;
    kv_ptable_t table;    /* installed */
    uint8_t (*rows)[KV_RF_MAX];
    kv_pcopies_t *copies[KV_RF_MAX]; /* per rf, per partition, computed when first asked */
    bool *copies_ok[KV_RF_MAX];
    int self;             /* this node's index in table, or -1 */
    bool recovering;      /* started with a table that ranks it: serves no partition until
                             a router installs a newer one (it may have missed writes) */
    uint64_t boot;        /* random per start: routers see a restart */
    bool removed;         /* taken out of the cluster on request (kvquery cluster remove):
                             every router leaves it out until it is added again */
    uint32_t inst;        /* the version the acceptor state below is for */
    ballot_t promised, accepted_b;
    kv_ptable_t accepted; /* valid if accepted_b.round */
    router_t routers[ROUTERS_MAX];
    int n_routers;
};

static int s_cmp(ballot_t a, ballot_t b)
{
    if (a.round != b.round)
        return a.round < b.round ? -1 : 1;
    return a.proposer < b.proposer ? -1 : a.proposer > b.proposer;
}

/* ---- files ------------------------------------------------------------ */

/* Write path atomically: a temporary file, synced, renamed over it, and
 * the directory synced.  0, or -1 with errno. */
static int s_write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[1200], tmp[1210];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    const uint8_t *p = data;
    size_t left = len;
    while (left) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        p += n;
        left -= (size_t) n;
    }
    if (fdatasync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0)
        return -1;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int rc = fsync(dfd);
    close(dfd);
    return rc;
}

/* Read a whole small file; its length, 0 if it does not exist, -1 with errno. */
static ssize_t s_read_file(const char *dir, const char *name, uint8_t *buf, size_t cap)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t) n;
        if (got == cap) {
            close(fd);
            errno = EFBIG;
            return -1;
        }
    }
    close(fd);
    return (ssize_t) got;
}

static void s_pack_ballot(msgpack_packer *pk, ballot_t b)
{
    msgpack_pack_array(pk, 2);
    msgpack_pack_uint64(pk, b.round);
    msgpack_pack_uint64(pk, b.proposer);
}

static int s_read_ballot(kv_mp_t *v, ballot_t *b)
{
    uint32_t n;
    int64_t r, p;
    kv_mp_t save = *v;
    if (kv_mp_read_array(v, &n) != 0 || n != 2 || kv_mp_read_int(v, &r) != 0 || kv_mp_read_int(v, &p) != 0 ||
        r < 0 || p < 0) {
        *v = save;
        return -1;
    }
    b->round = (uint64_t) r;
    b->proposer = (uint64_t) p;
    return 0;
}

/* The acceptor state and the installed table, as one MessagePack map. */
static int s_save(cluster_t *c, char *why, size_t whylen)
{
    if (!c->dir[0])
        return 0;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    kv_mp_pack_cstr(&pk, "removed");
    kv_mp_pack_bool(&pk, c->removed);
    kv_mp_pack_cstr(&pk, "table");
    kv_ptable_pack(&c->table, &pk);
    kv_mp_pack_cstr(&pk, "inst");
    msgpack_pack_uint32(&pk, c->inst);
    kv_mp_pack_cstr(&pk, "promised");
    s_pack_ballot(&pk, c->promised);
    kv_mp_pack_cstr(&pk, "accepted_ballot");
    s_pack_ballot(&pk, c->accepted_b);
    kv_mp_pack_cstr(&pk, "accepted");
    if (c->accepted_b.round)
        kv_ptable_pack(&c->accepted, &pk);
    else
        msgpack_pack_nil(&pk);
    int rc = s_write_file(c->dir, "cluster.state", sb.data, sb.size);
    if (rc != 0)
        snprintf(why, whylen, "cannot write %s/cluster.state: %s", c->dir, strerror(errno));
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static int s_load(cluster_t *c, char *why, size_t whylen)
{
    static uint8_t buf[STATE_MAX];
    ssize_t n = s_read_file(c->dir, "cluster.state", buf, sizeof buf);
    if (n < 0) {
        snprintf(why, whylen, "cannot read %s/cluster.state: %s", c->dir, strerror(errno));
        return -1;
    }
    if (n == 0)
        return 0;
    kv_mp_t v = kv_mp(buf, (size_t) n);
    uint32_t nk;
    char inner[300] = "not a MessagePack map";
    if (!kv_mp_valid(buf, (size_t) n) || kv_mp_read_map(&v, &nk) != 0)
        goto bad;
    for (uint32_t i = 0; i < nk; i++) {
        const char *k;
        uint32_t kl;
        int64_t x;
        if (kv_mp_read_str(&v, &k, &kl) != 0)
            goto bad;
#define KEY(s) (kl == strlen(s) && memcmp(k, s, kl) == 0)
        if (KEY("table")) {
            if (kv_ptable_unpack(&c->table, &v, inner, sizeof inner) != 0)
                goto bad;
        } else if (KEY("inst")) {
            if (kv_mp_read_int(&v, &x) != 0 || x < 0 || x > UINT32_MAX) {
                snprintf(inner, sizeof inner, "bad 'inst'");
                goto bad;
            }
            c->inst = (uint32_t) x;
        } else if (KEY("promised") || KEY("accepted_ballot")) {
            if (s_read_ballot(&v, KEY("promised") ? &c->promised : &c->accepted_b) != 0) {
                snprintf(inner, sizeof inner, "bad ballot '%.*s'", (int) kl, k);
                goto bad;
            }
        } else if (KEY("removed")) {
            if (kv_mp_read_bool(&v, &c->removed) != 0) {
                snprintf(inner, sizeof inner, "bad 'removed'");
                goto bad;
            }
        } else if (KEY("accepted")) {
            if (kv_mp_type(&v) == KV_MP_NIL)
                kv_mp_read_nil(&v);
            else if (kv_ptable_unpack(&c->accepted, &v, inner, sizeof inner) != 0)
                goto bad;
        } else if (kv_mp_skip(&v) != 0)
            goto bad;
#undef KEY
    }
    return 0;
bad:
    snprintf(why, whylen,
             "%s/cluster.state is damaged (%s); move it away to make this node forget its cluster "
             "(it then joins as a new member only if its node id is changed too)",
             c->dir, inner);
    return -1;
}

/* ---- life cycle -------------------------------------------------------- */

static uint64_t s_new_id(void)
{
    uint64_t id = 0;
    while (id == 0) { /* 63 bits: ids stay exact in JSON and signed MessagePack readers */
        randombytes_buf(&id, sizeof id);
        id &= INT64_MAX;
    }
    return id;
}

static void s_reindex(cluster_t *c)
{
    c->self = kv_ptable_find(&c->table, c->node_id);
    if (c->table.version)
        kv_ptable_rows(&c->table, c->rows);
    for (int k = 0; k < KV_RF_MAX; k++)
        if (c->copies_ok[k])
            memset(c->copies_ok[k], 0, KV_PARTITIONS * sizeof(bool));
}

cluster_t *cluster_new(const char *dir, char *why, size_t whylen)
{
    cluster_t *c = calloc(1, sizeof *c);
    if (c)
        c->rows = calloc(KV_PARTITIONS, sizeof *c->rows);
    if (!c || !c->rows) {
        snprintf(why, whylen, "out of memory");
        free(c);
        return NULL;
    }
    kv_ptable_init(&c->table);
    kv_ptable_init(&c->accepted);
    c->self = -1;
    while (!c->boot) {
        randombytes_buf(&c->boot, sizeof c->boot);
        c->boot &= INT64_MAX;
    }
    if (!dir || !dir[0]) {
        c->node_id = s_new_id();
        return c;
    }
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    uint8_t buf[64];
    ssize_t n = s_read_file(dir, "node.id", buf, sizeof buf);
    if (n < 0) {
        snprintf(why, whylen, "cannot read %s/node.id: %s", dir, strerror(errno));
        goto fail;
    }
    if (n == 0) {
        c->node_id = s_new_id();
        char text[32];
        int len = snprintf(text, sizeof text, "%016" PRIx64 "\n", c->node_id);
        if (s_write_file(dir, "node.id", text, (size_t) len) != 0) {
            snprintf(why, whylen, "cannot write %s/node.id: %s", dir, strerror(errno));
            goto fail;
        }
    } else {
        char text[64];
        memcpy(text, buf, (size_t) n);
        text[n] = '\0';
        char *end;
        errno = 0;
        unsigned long long id = strtoull(text, &end, 16);
        if (errno || end != text + 16 || (*end && strcmp(end, "\n") != 0) || id == 0 || id > INT64_MAX) {
            snprintf(why, whylen, "%s/node.id: expected 16 hex digits (a nonzero 63-bit node id)", dir);
            goto fail;
        }
        c->node_id = id;
    }
    if (s_load(c, why, whylen) != 0)
        goto fail;
    s_reindex(c);
    c->recovering = c->self >= 0 && kv_pn_full(c->table.nodes[c->self].state);
    if (c->recovering)
        kv_warn("table version %u ranks this node: it serves no partition until a router installs a newer table",
                c->table.version);
    return c;
fail:
    cluster_destroy(&c);
    return NULL;
}

void cluster_destroy(cluster_t **self_p)
{
    cluster_t *c = *self_p;
    if (!c)
        return;
    for (int i = 0; i < c->n_routers; i++)
        zmq_close(c->routers[i].sock);
    free(c->rows);
    for (int k = 0; k < KV_RF_MAX; k++) {
        free(c->copies[k]);
        free(c->copies_ok[k]);
    }
    free(c);
    *self_p = NULL;
}

uint64_t cluster_node_id(const cluster_t *c) { return c->node_id; }
const kv_ptable_t *cluster_table(const cluster_t *c) { return &c->table; }

int cluster_self(const cluster_t *c) { return c->self; }

const kv_pcopies_t *cluster_copies(cluster_t *c, uint16_t pid, int rf)
{
    if (c->table.version == 0 || rf < 1 || rf > KV_RF_MAX || pid >= KV_PARTITIONS)
        return NULL;
    int k = rf - 1;
    if (!c->copies[k]) {
        c->copies[k] = malloc(KV_PARTITIONS * sizeof *c->copies[k]);
        c->copies_ok[k] = calloc(KV_PARTITIONS, sizeof(bool));
        if (!c->copies[k] || !c->copies_ok[k]) {
            free(c->copies[k]);
            free(c->copies_ok[k]);
            c->copies[k] = NULL;
            c->copies_ok[k] = NULL;
            return NULL;
        }
    }
    if (!c->copies_ok[k][pid]) {
        kv_ptable_copies(&c->table, pid, rf, &c->copies[k][pid]);
        c->copies_ok[k][pid] = true;
    }
    return &c->copies[k][pid];
}

bool cluster_holds(cluster_t *c, uint16_t pid, int rf)
{
    if (c->table.version == 0)
        return true;
    const kv_pcopies_t *cp = cluster_copies(c, pid, rf);
    if (c->self < 0 || !cp)
        return c->self >= 0; /* out of memory: keep everything */
    for (int k = 0; k < cp->n; k++)
        if (cp->nodes[k] == c->self)
            return true;
    return false;
}

bool cluster_serves(const cluster_t *c, uint16_t pid)
{
    return c->table.version == 0 || (c->self >= 0 && !c->recovering && c->rows[pid][0] == c->self);
}

/* ---- the CLUSTER op ---------------------------------------------------- */

typedef struct {
    const char *cmd;
    uint32_t cmd_len;
    int64_t version, interval_ms;
    bool has_ballot, has_table;
    ballot_t ballot;
    kv_ptable_t *table;
    const char *router;
    uint32_t router_len;
    int removed; /* -1 absent, else 0 or 1 */
} cmd_t;

/* Read the body's fields; unknown ones are skipped (newer routers). */
static int s_parse(server_t *s, req_t *r, cmd_t *c)
{
    kv_mp_t v = kv_mp(r->body, r->len);
    uint32_t n;
    if (kv_mp_read_map(&v, &n) != 0)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "body must be a map");
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (kv_mp_read_str(&v, &k, &kl) != 0)
            return srv_fail(s, KV_ERR_BAD_REQUEST, "body keys must be strings");
#define KEY(x) (kl == strlen(x) && memcmp(k, x, kl) == 0)
        if (KEY("cmd")) {
            if (kv_mp_read_str(&v, &c->cmd, &c->cmd_len) != 0)
                return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'cmd' must be a string");
        } else if (KEY("version")) {
            if (kv_mp_read_int(&v, &c->version) != 0 || c->version < 1 || c->version > UINT32_MAX)
                return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'version' must be an integer in 1..4294967295");
        } else if (KEY("interval_ms")) {
            if (kv_mp_read_int(&v, &c->interval_ms) != 0 || c->interval_ms < 10 || c->interval_ms > 600000)
                return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'interval_ms' must be an integer in 10..600000");
        } else if (KEY("ballot")) {
            if (s_read_ballot(&v, &c->ballot) != 0 || c->ballot.round == 0)
                return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'ballot' must be [round >= 1, proposer >= 0]");
            c->has_ballot = true;
        } else if (KEY("table")) {
            char why[300];
            if (kv_ptable_unpack(c->table, &v, why, sizeof why) != 0)
                return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'table': %s", why);
            c->has_table = true;
        } else if (KEY("removed")) {
            bool b;
            if (kv_mp_read_bool(&v, &b) != 0)
                return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'removed' must be a boolean");
            c->removed = b;
        } else if (KEY("router")) {
            if (kv_mp_read_str(&v, &c->router, &c->router_len) != 0 || c->router_len == 0 ||
                c->router_len > KV_ENDPOINT_MAX || memchr(c->router, '\0', c->router_len))
                return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'router' must be an endpoint of 1..%d bytes",
                                KV_ENDPOINT_MAX);
        } else if (kv_mp_skip(&v) != 0)
            return srv_fail(s, KV_ERR_BAD_REQUEST, "malformed body");
#undef KEY
    }
    return KV_OK;
}

/* What a router needs to know about this node: id, endpoint, namespace
 * configuration and installed table version (heartbeat and state). */
static void s_pack_self(server_t *s, msgpack_packer *pk, int extra)
{
    cluster_t *c = s->cluster;
    msgpack_pack_map(pk, (uint32_t) (8 + extra));
    kv_mp_pack_cstr(pk, "removed");
    kv_mp_pack_bool(pk, c->removed);
    kv_mp_pack_cstr(pk, "boot");
    msgpack_pack_uint64(pk, c->boot);
    kv_mp_pack_cstr(pk, "recovering");
    kv_mp_pack_bool(pk, c->recovering);
    kv_mp_pack_cstr(pk, "node");
    msgpack_pack_uint64(pk, c->node_id);
    kv_mp_pack_cstr(pk, "endpoint");
    kv_mp_pack_cstr(pk, s->endpoint);
    kv_mp_pack_cstr(pk, "cluster");
    msgpack_pack_uint64(pk, c->table.cluster);
    kv_mp_pack_cstr(pk, "version");
    msgpack_pack_uint32(pk, c->table.version);
    kv_mp_pack_cstr(pk, "namespaces");
    msgpack_pack_array(pk, (uint32_t) s->n_ns);
    for (int i = 0; i < s->n_ns; i++) {
        msgpack_pack_array(pk, 3);
        kv_mp_pack_cstr(pk, s->ns[i]->cfg.name);
        msgpack_pack_uint32(pk, s->ns[i]->cfg.rf);
        kv_mp_pack_cstr(pk, "ap");
    }
}

/* Reply of prepare and accept: granted or not, and what this node holds. */
static int s_vote(server_t *s, bool granted, bool with_accepted)
{
    cluster_t *c = s->cluster;
    msgpack_packer *pk = &s->pk;
    msgpack_pack_map(pk, with_accepted ? 5 : 3);
    kv_mp_pack_cstr(pk, "granted");
    kv_mp_pack_bool(pk, granted);
    kv_mp_pack_cstr(pk, "promised");
    s_pack_ballot(pk, c->promised);
    kv_mp_pack_cstr(pk, "table");
    kv_ptable_pack(&c->table, pk);
    if (with_accepted) {
        kv_mp_pack_cstr(pk, "accepted_ballot");
        s_pack_ballot(pk, c->accepted_b);
        kv_mp_pack_cstr(pk, "accepted");
        if (c->accepted_b.round)
            kv_ptable_pack(&c->accepted, pk);
        else
            msgpack_pack_nil(pk);
    }
    return KV_OK;
}

/* Move the acceptor to instance v (forgetting an older instance). */
static void s_instance(cluster_t *c, uint32_t v)
{
    if (v > c->inst) {
        c->inst = v;
        c->promised = (ballot_t){0, 0};
        c->accepted_b = (ballot_t){0, 0};
        kv_ptable_init(&c->accepted);
    }
}

/* Heartbeat to the router at ep (again, if known), every interval_ms.
 * 0, or -1 with a reason. */
static int s_add_router(server_t *s, const char *ep, uint32_t interval_ms, char *why, size_t whylen)
{
    cluster_t *c = s->cluster;
    router_t *rt = NULL;
    for (int i = 0; i < c->n_routers; i++)
        if (strcmp(c->routers[i].endpoint, ep) == 0)
            rt = &c->routers[i];
    if (!rt) {
        if (c->n_routers == ROUTERS_MAX) {
            snprintf(why, whylen, "this node already heartbeats to %d routers", ROUTERS_MAX);
            return -1;
        }
        void *sock = s->ctx ? zmq_socket(s->ctx, ZMQ_DEALER) : NULL;
        int linger = 0, hwm = 16;
        if (sock) {
            zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
            zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
        }
        if (!sock || zmq_connect(sock, ep) != 0) {
            snprintf(why, whylen, "cannot connect to router '%s': %s", ep, sock ? zmq_strerror(errno) : "no context");
            if (sock)
                zmq_close(sock);
            return -1;
        }
        rt = &c->routers[c->n_routers++];
        memset(rt, 0, sizeof *rt);
        snprintf(rt->endpoint, sizeof rt->endpoint, "%s", ep);
        rt->sock = sock;
        kv_warn("heartbeating to router %s every %u ms", ep, interval_ms);
    }
    rt->interval_ms = interval_ms;
    rt->next_ms = 0; /* one now */
    return 0;
}

int cluster_join(server_t *s, const char *router, char *why, size_t whylen)
{
    if (!router[0] || strlen(router) > KV_ENDPOINT_MAX) {
        snprintf(why, whylen, "router endpoint must be 1..%d bytes", KV_ENDPOINT_MAX);
        return -1;
    }
    return s_add_router(s, router, 150, why, whylen);
}

static int s_heartbeat_to(server_t *s, const cmd_t *m)
{
    char ep[KV_ENDPOINT_MAX + 1], why[400];
    memcpy(ep, m->router, m->router_len);
    ep[m->router_len] = '\0';
    if (s_add_router(s, ep, m->interval_ms ? (uint32_t) m->interval_ms : 150, why, sizeof why) != 0)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "%s", why);
    s_pack_self(s, &s->pk, 0);
    return KV_OK;
}

int op_cluster(server_t *s, req_t *r)
{
    cluster_t *c = s->cluster;
    kv_ptable_t *t = malloc(sizeof *t);
    if (!t)
        return srv_fail(s, KV_ERR_SERVER, "out of memory");
    cmd_t m = {.table = t, .removed = -1};
    int rc = s_parse(s, r, &m);
    char why[1400];
#define CMD(x) (m.cmd_len == strlen(x) && memcmp(m.cmd, x, m.cmd_len) == 0)
    if (rc != KV_OK) {
    } else if (!m.cmd) {
        rc = srv_fail(s, KV_ERR_BAD_REQUEST, "missing field 'cmd' (state, prepare, accept, commit, resume, set-removed, heartbeat-to)");
    } else if (CMD("state")) {
        s_pack_self(s, &s->pk, 4);
        kv_mp_pack_cstr(&s->pk, "table");
        kv_ptable_pack(&c->table, &s->pk);
        kv_mp_pack_cstr(&s->pk, "inst");
        msgpack_pack_uint32(&s->pk, c->inst);
        kv_mp_pack_cstr(&s->pk, "promised");
        s_pack_ballot(&s->pk, c->promised);
        kv_mp_pack_cstr(&s->pk, "hash");
        msgpack_pack_uint64(&s->pk, kv_ptable_hash(&c->table) & INT64_MAX);
    } else if (CMD("prepare") || CMD("accept")) {
        bool accept = CMD("accept");
        if (!m.version || !m.has_ballot || (accept && !m.has_table))
            rc = srv_fail(s, KV_ERR_BAD_REQUEST, "%s needs 'version', 'ballot'%s", accept ? "accept" : "prepare",
                          accept ? " and 'table'" : "");
        else if (accept && (t->version != (uint32_t) m.version || t->n == 0))
            rc = srv_fail(s, KV_ERR_BAD_REQUEST, "accept: the table's version %u is not the instance %lld, or it has no nodes",
                          t->version, (long long) m.version);
        else if ((uint32_t) m.version <= c->table.version)
            rc = s_vote(s, false, false); /* decided already: the reply carries the installed table */
        else {
            s_instance(c, (uint32_t) m.version);
            bool granted = (uint32_t) m.version == c->inst && s_cmp(m.ballot, c->promised) >= 0;
            if (granted) {
                ballot_t old_p = c->promised, old_a = c->accepted_b;
                c->promised = m.ballot;
                if (accept) {
                    c->accepted_b = m.ballot;
                    c->accepted = *t;
                }
                if (s_save(c, why, sizeof why) != 0) {
                    c->promised = old_p;
                    c->accepted_b = old_a;
                    kv_warn("%s", why);
                    rc = srv_fail(s, KV_ERR_SERVER, "%s", why);
                }
            }
            if (rc == KV_OK)
                rc = s_vote(s, granted, !accept);
        }
    } else if (CMD("commit")) {
        if (!m.has_table || t->version == 0)
            rc = srv_fail(s, KV_ERR_BAD_REQUEST, "commit needs a 'table' with a version");
        else if (c->table.version && t->cluster != c->table.cluster)
            rc = srv_fail(s, KV_ERR_FORBIDDEN,
                          "this node belongs to cluster %016llx, not %016llx (remove its data directory's "
                          "cluster.state to move it)",
                          (unsigned long long) c->table.cluster, (unsigned long long) t->cluster);
        else if (t->version == c->table.version && !kv_ptable_same(t, &c->table)) {
            kv_warn("refused table version %u (hash %016llx): a different table with this version is installed",
                    t->version, (unsigned long long) kv_ptable_hash(t));
            rc = srv_fail(s, KV_ERR_FORBIDDEN, "a different table with version %u is installed", t->version);
        } else if (t->version > c->table.version) {
            kv_ptable_t old = c->table;
            c->table = *t;
            if (s_save(c, why, sizeof why) != 0) {
                c->table = old;
                kv_warn("%s", why);
                rc = srv_fail(s, KV_ERR_SERVER, "%s", why);
            } else {
                s_reindex(c);
                /* a newer table does not end recovering (it may have been
                 * chosen before this node restarted): only a router's
                 * resume does, or a table that no longer ranks it */
                c->recovering = c->recovering && c->self >= 0 && kv_pn_full(c->table.nodes[c->self].state);
                kv_warn("installed table version %u (cluster %016llx, %d nodes, hash %016llx)%s", t->version,
                        (unsigned long long) t->cluster, t->n, (unsigned long long) kv_ptable_hash(t),
                        c->self < 0 ? "; this node is not in it" : "");
            }
        }
        if (rc == KV_OK)
            rc = s_vote(s, true, false);
    } else if (CMD("resume")) {
        /* the router saw every ranked member restart (a cluster restart):
         * they hold the data, so they serve again */
        if (!m.version)
            rc = srv_fail(s, KV_ERR_BAD_REQUEST, "resume needs 'version'");
        else if ((uint32_t) m.version != c->table.version)
            rc = srv_fail(s, KV_ERR_WRONG_NODE, "resume for table version %lld, this node has version %u",
                          (long long) m.version, c->table.version);
        else if (c->recovering) {
            c->recovering = false;
            kv_warn("serving again (table version %u): the router resumed it after a cluster restart",
                    c->table.version);
        }
        if (rc == KV_OK)
            s_pack_self(s, &s->pk, 0);
    } else if (CMD("set-removed")) {
        if (m.removed < 0)
            rc = srv_fail(s, KV_ERR_BAD_REQUEST, "set-removed needs 'removed' (a boolean)");
        else if (c->removed != (m.removed == 1)) {
            c->removed = m.removed == 1;
            if (s_save(c, why, sizeof why) != 0) {
                c->removed = !c->removed;
                kv_warn("%s", why);
                rc = srv_fail(s, KV_ERR_SERVER, "%s", why);
            } else
                kv_warn("%s the cluster on request", c->removed ? "removed from" : "back in");
        }
        if (rc == KV_OK)
            s_pack_self(s, &s->pk, 0);
    } else if (CMD("heartbeat-to")) {
        if (!m.router)
            rc = srv_fail(s, KV_ERR_BAD_REQUEST, "heartbeat-to needs 'router'");
        else
            rc = s_heartbeat_to(s, &m);
    } else {
        rc = srv_fail(s, KV_ERR_BAD_REQUEST, "unknown cluster command '%.*s' (state, prepare, accept, commit, resume, set-removed, heartbeat-to)",
                      (int) (m.cmd_len > 32 ? 32 : m.cmd_len), m.cmd);
    }
#undef CMD
    free(t);
    return rc;
}

/* ---- heartbeats -------------------------------------------------------- */

long cluster_tick(server_t *s, uint64_t now_ms)
{
    cluster_t *c = s->cluster;
    long wait = 1000;
    for (int i = 0; i < c->n_routers; i++) {
        router_t *rt = &c->routers[i];
        if (now_ms >= rt->next_ms) {
            msgpack_sbuffer body;
            msgpack_sbuffer_init(&body);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
            /* {"cmd":"heartbeat", node...}: the self map with one more key */
            s_pack_self(s, &pk, 1);
            kv_mp_pack_cstr(&pk, "cmd");
            kv_mp_pack_cstr(&pk, "heartbeat");
            kv_hdr_t h = {.op = KV_OP_CLUSTER, .body_len = (uint32_t) body.size};
            uint8_t hdr[KV_HDR_SIZE];
            kv_hdr_encode(&h, hdr);
            zmq_msg_t msg;
            zmq_msg_init_size(&msg, KV_HDR_SIZE + body.size);
            memcpy(zmq_msg_data(&msg), hdr, KV_HDR_SIZE);
            memcpy((uint8_t *) zmq_msg_data(&msg) + KV_HDR_SIZE, body.data, body.size);
            /* a router that is gone just misses them (the queue is short) */
            if (zmq_send(rt->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
                zmq_msg_send(&msg, rt->sock, ZMQ_DONTWAIT) < 0)
                zmq_msg_close(&msg);
            msgpack_sbuffer_destroy(&body);
            rt->next_ms = now_ms + rt->interval_ms;
            /* nothing is read from this socket: drop whatever a router sends back */
            zmq_msg_t in;
            zmq_msg_init(&in);
            while (zmq_msg_recv(&in, rt->sock, ZMQ_DONTWAIT) >= 0)
                ;
            zmq_msg_close(&in);
        }
        long w = (long) (rt->next_ms - now_ms);
        if (w < wait)
            wait = w;
    }
    return wait;
}

void cluster_test(bool verbose)
{
    (void) verbose;
    char dir[] = "/tmp/kvcluster-test.XXXXXX";
    assert(mkdtemp(dir));
    char why[1400];
    cluster_t *c = cluster_new(dir, why, sizeof why);
    assert(c);
    uint64_t id = cluster_node_id(c);
    assert(id != 0 && id <= INT64_MAX);
    assert(cluster_table(c)->version == 0 && cluster_serves(c, 0) && cluster_serves(c, 4095));
    /* promise and acceptance survive a restart */
    c->inst = 3;
    c->promised = (ballot_t){7, 9};
    c->accepted_b = (ballot_t){7, 9};
    kv_ptable_init(&c->accepted);
    c->accepted.cluster = 5;
    c->accepted.version = 3;
    assert(kv_ptable_add(&c->accepted, id, "tcp://127.0.0.1:1") == 0);
    kv_ptable_init(&c->table);
    c->table.cluster = 5;
    c->table.version = 2;
    assert(kv_ptable_add(&c->table, id, "tcp://127.0.0.1:1") == 0);
    assert(kv_ptable_add(&c->table, id + 1 > INT64_MAX ? 1 : id + 1, "tcp://127.0.0.1:2") == 0);
    assert(s_save(c, why, sizeof why) == 0);
    kv_ptable_t saved = c->table;
    cluster_destroy(&c);
    c = cluster_new(dir, why, sizeof why);
    assert(c);
    assert(cluster_node_id(c) == id);
    assert(c->inst == 3 && s_cmp(c->promised, (ballot_t){7, 9}) == 0 && s_cmp(c->accepted_b, (ballot_t){7, 9}) == 0);
    assert(kv_ptable_same(cluster_table(c), &saved) && c->accepted.version == 3);
    /* restarted with a table that ranks it: it serves nothing until a newer table */
    assert(c->recovering);
    for (int p = 0; p < KV_PARTITIONS; p++)
        assert(!cluster_serves(c, (uint16_t) p));
    c->recovering = false; /* as a router's resume does */
    /* with two nodes, this one masters some partitions and not others */
    int mine = 0;
    for (int p = 0; p < KV_PARTITIONS; p++)
        mine += cluster_serves(c, (uint16_t) p);
    assert(mine > 1000 && mine < 3096);
    assert(s_cmp((ballot_t){1, 5}, (ballot_t){2, 0}) < 0 && s_cmp((ballot_t){2, 1}, (ballot_t){2, 0}) > 0);
    cluster_destroy(&c);
    /* damaged files are refused with the file named */
    char path[600];
    snprintf(path, sizeof path, "%s/cluster.state", dir);
    FILE *f = fopen(path, "w");
    fputs("garbage", f);
    fclose(f);
    assert(!cluster_new(dir, why, sizeof why) && strstr(why, "cluster.state is damaged"));
    unlink(path);
    snprintf(path, sizeof path, "%s/node.id", dir);
    f = fopen(path, "w");
    fputs("xyz\n", f);
    fclose(f);
    assert(!cluster_new(dir, why, sizeof why) && strstr(why, "node.id: expected 16 hex digits"));
    unlink(path);
    rmdir(dir);
    /* no directory: a fresh id each time */
    cluster_t *a = cluster_new("", why, sizeof why), *b = cluster_new("", why, sizeof why);
    assert(a && b && cluster_node_id(a) != cluster_node_id(b));
    cluster_destroy(&a);
    cluster_destroy(&b);
}
