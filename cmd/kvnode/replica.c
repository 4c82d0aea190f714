/* replica: the master's replica writes and the replica's REPLICA op (see replica.h). */
#include "replica.h"
#include "cluster.h"
#include "kv_client.h"
#include "kv_digest.h"
#include "kv_err.h"
#include "kv_util.h"
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_BUCKETS 16384
/* A record image is the record's header and data as kvnode holds it
 * (peers run the same build; the header is checked against the length). */
#define IMAGE_HDR offsetof(kv_rec_t, data)

typedef struct {
    uint64_t id;   /* node id, 0 = free */
    void *sock;    /* DEALER to it */
    char endpoint[KV_ENDPOINT_MAX + 1];
} peer_t;

typedef struct {
    uint16_t remaining; /* answers still expected */
    bool failed;
    uint16_t bucket;    /* key bucket, counted down when done */
    uint64_t sent_ms;
} slot_t;

/* A delete that came as a replica write (kvnode keeps none for a record
 * it does not have, and an in-memory namespace keeps no tombstones): a
 * copy older than it that a migration merges in afterwards, read from the
 * master before the delete, must not bring the record back. */
#define GHOSTS (1u << 18)          /* direct-mapped by digest: a collision forgets the older one */
#define GHOST_MS (3600u * 1000u)   /* longer than any migration pass takes */
typedef struct {
    uint8_t digest[KV_DIGEST_SIZE];
    const kv_ns_t *ns; /* NULL = free */
    uint64_t lut;
    uint64_t at_ms;
} ghost_t;

struct replica {
    ghost_t *ghosts;       /* GHOSTS, made on first use */
    peer_t peers[KV_NODES_MAX];
    slot_t *ring;          /* REPLICA_INFLIGHT slots, by write number */
    uint64_t next;         /* number of the next write (first is 1) */
    uint64_t done;         /* every write up to this is answered or timed out */
    uint16_t *keys;        /* writes in flight per key bucket */
    char why[200];         /* the last failure */
    uint64_t failures;
};

replica_t *replica_new(void)
{
    replica_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->ring = calloc(REPLICA_INFLIGHT, sizeof *p->ring);
    p->keys = calloc(KEY_BUCKETS, sizeof *p->keys);
    if (!p->ring || !p->keys) {
        replica_destroy(&p);
        return NULL;
    }
    p->next = 1;
    return p;
}

void replica_destroy(replica_t **self_p)
{
    replica_t *p = *self_p;
    if (!p)
        return;
    for (int i = 0; i < KV_NODES_MAX; i++)
        if (p->peers[i].sock)
            zmq_close(p->peers[i].sock);
    free(p->ring);
    free(p->keys);
    free(p->ghosts);
    free(p);
    *self_p = NULL;
}

static uint16_t s_bucket(const uint8_t *digest) { return (uint16_t) ((digest[2] | digest[3] << 8) % KEY_BUCKETS); }

static slot_t *s_slot(replica_t *p, uint64_t n) { return &p->ring[n % REPLICA_INFLIGHT]; }

/* Writes answered in order: move done past every finished one. */
static void s_advance(replica_t *p)
{
    while (p->done + 1 < p->next && s_slot(p, p->done + 1)->remaining == 0)
        p->done++;
}

static void s_finish(replica_t *p, slot_t *sl)
{
    sl->remaining = 0;
    if (p->keys[sl->bucket])
        p->keys[sl->bucket]--;
}

int replica_admit(server_t *s, const kv_ns_t *ns, const uint8_t *digest)
{
    replica_t *p = s->replica;
    if (cluster_table(s->cluster)->version == 0)
        return KV_OK;
    /* rf 1 has other copies too while its partition is being filled */
    const kv_pcopies_t *cp = cluster_copies(s->cluster, kv_partition(digest), (int) ns->cfg.rf);
    if (!cp || cp->n < 2)
        return KV_OK;
    if (p->next - p->done > REPLICA_INFLIGHT - 1)
        return srv_fail(s, KV_ERR_KEY_BUSY, "%d replica writes are in flight; try again", REPLICA_INFLIGHT);
    if (p->keys[s_bucket(digest)] >= REPLICA_KEY_MAX)
        return srv_fail(s, KV_ERR_KEY_BUSY, "%d writes to this key are waiting for their replicas; try again",
                        REPLICA_KEY_MAX);
    return KV_OK;
}

/* The DEALER to node id at endpoint, made on first use; NULL if it cannot be. */
static void *s_peer(server_t *s, uint64_t id, const char *endpoint)
{
    replica_t *p = s->replica;
    peer_t *free_slot = NULL;
    for (int i = 0; i < KV_NODES_MAX; i++) {
        if (p->peers[i].id == id && strcmp(p->peers[i].endpoint, endpoint) == 0)
            return p->peers[i].sock;
        if (p->peers[i].id == id) { /* it moved: connect again */
            zmq_close(p->peers[i].sock);
            memset(&p->peers[i], 0, sizeof p->peers[i]);
        }
        if (!p->peers[i].id && !free_slot)
            free_slot = &p->peers[i];
    }
    if (!free_slot) { /* nodes that left the table: drop one */
        free_slot = &p->peers[0];
        zmq_close(free_slot->sock);
        memset(free_slot, 0, sizeof *free_slot);
    }
    void *sock = s->ctx ? zmq_socket(s->ctx, ZMQ_DEALER) : NULL;
    if (!sock)
        return NULL;
    int linger = 0, hwm = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_connect(sock, endpoint) != 0) {
        kv_warn("cannot connect to peer %016" PRIx64 " at %s: %s", id, endpoint, zmq_strerror(errno));
        zmq_close(sock);
        return NULL;
    }
    free_slot->id = id;
    free_slot->sock = sock;
    snprintf(free_slot->endpoint, sizeof free_slot->endpoint, "%s", endpoint);
    return sock;
}

void replica_send(server_t *s, const kv_ns_t *ns, const kv_rec_t *rec, const uint8_t *digest, uint32_t gen,
                  uint64_t lut, bool lww)
{
    replica_t *p = s->replica;
    const kv_ptable_t *t = cluster_table(s->cluster);
    if (t->version == 0)
        return;
    uint16_t pid = kv_partition(digest);
    const kv_pcopies_t *cp = cluster_copies(s->cluster, pid, (int) ns->cfg.rf);
    if (!cp || cp->n < 2) /* no other copy (rf 1, and its partition not being filled) */
        return;
    /* the request: header, then {"ns": name, "rec": image} or {"ns": name, "del": [gen, lut]} */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    kv_mp_begin_message(&sb, &pk);
    msgpack_pack_map(&pk, lww ? 3 : 2);
    kv_mp_pack_cstr(&pk, "ns");
    kv_mp_pack_cstr(&pk, ns->cfg.name);
    if (lww) {
        kv_mp_pack_cstr(&pk, "lww");
        msgpack_pack_true(&pk);
    }
    if (rec) {
        size_t len = IMAGE_HDR + rec_data_len(rec);
        kv_mp_pack_cstr(&pk, "rec");
        msgpack_pack_bin(&pk, len);
        msgpack_pack_bin_body(&pk, rec, len);
    } else {
        kv_mp_pack_cstr(&pk, "del");
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint32(&pk, gen);
        msgpack_pack_uint64(&pk, lut);
    }
    uint64_t n = p->next;
    kv_hdr_t h = {.op = KV_OP_REPLICA, .reqid = n, .pid = pid, .table_version = t->version,
                  .body_len = (uint32_t) (sb.size - KV_HDR_SIZE)};
    memcpy(h.digest, digest, KV_DIGEST_SIZE);
    kv_hdr_encode(&h, (uint8_t *) sb.data);
    slot_t *sl = s_slot(p, n);
    memset(sl, 0, sizeof *sl);
    sl->bucket = s_bucket(digest);
    sl->sent_ms = kv_mono_ms();
    int self = cluster_self(s->cluster);
    /* every copy: the full ones and the ones being filled (a migration) */
    for (int k = 0; cp && k < cp->n; k++) {
        int idx = cp->nodes[k];
        if (idx == self)
            continue;
        void *sock = s_peer(s, t->nodes[idx].id, t->nodes[idx].endpoint);
        if (sock && zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
            zmq_send(sock, sb.data, sb.size, ZMQ_DONTWAIT) >= 0)
            sl->remaining++;
        else {
            sl->failed = true;
            snprintf(p->why, sizeof p->why, "write in doubt: it could not be sent to replica %016" PRIx64,
                     t->nodes[idx].id);
        }
    }
    msgpack_sbuffer_destroy(&sb);
    p->next++;
    p->keys[sl->bucket]++;
    if (sl->remaining == 0)
        s_finish(p, sl);
    s_advance(p);
    if (!s->repl_from)
        s->repl_from = n;
    s->repl_upto = n;
}

int replica_poll_items(server_t *s, zmq_pollitem_t *items, int max)
{
    int n = 0;
    for (int i = 0; i < KV_NODES_MAX && n < max; i++)
        if (s->replica->peers[i].sock)
            items[n++] = (zmq_pollitem_t){s->replica->peers[i].sock, 0, ZMQ_POLLIN, 0};
    return n;
}

void replica_recv(server_t *s, int k)
{
    replica_t *p = s->replica;
    void *sock = NULL;
    for (int i = 0, n = 0; i < KV_NODES_MAX; i++)
        if (p->peers[i].sock && n++ == k)
            sock = p->peers[i].sock;
    if (!sock)
        return;
    for (int budget = 0; budget < 4096; budget++) {
        zmq_msg_t f[2];
        int nf = kv_recv_parts(sock, f, 2);
        if (nf == 0)
            break;
        if (nf == 2) {
            const uint8_t *frame = zmq_msg_data(&f[1]), *body;
            size_t len = zmq_msg_size(&f[1]), off = 0;
            kv_hdr_t h;
            while (kv_frame_next(frame, len, &off, &h, &body, NULL, 0) == KV_OK) {
                if (h.op != KV_OP_REPLICA || h.reqid <= p->done || h.reqid >= p->next ||
                    h.reqid + REPLICA_INFLIGHT <= p->next)
                    continue; /* timed out already, or not ours */
                slot_t *sl = s_slot(p, h.reqid);
                if (!sl->remaining)
                    continue;
                if (h.status != KV_OK) {
                    char e[120];
                    sl->failed = true;
                    snprintf(p->why, sizeof p->why, "write in doubt: a replica refused it: %s: %s",
                             kv_err_name(h.status), kv_body_error(body, h.body_len, e, sizeof e));
                }
                if (--sl->remaining == 0)
                    s_finish(p, sl);
            }
        }
        for (int i = 0; i < nf && i < 2; i++)
            zmq_msg_close(&f[i]);
    }
    s_advance(p);
}

long replica_tick(server_t *s, uint64_t now_ms, bool *expired)
{
    replica_t *p = s->replica;
    *expired = false;
    for (uint64_t n = p->done + 1; n < p->next; n++) {
        slot_t *sl = s_slot(p, n);
        if (!sl->remaining)
            continue;
        if (now_ms < sl->sent_ms + REPLICA_TIMEOUT_MS)
            return (long) (sl->sent_ms + REPLICA_TIMEOUT_MS - now_ms);
        sl->failed = true;
        *expired = true;
        snprintf(p->why, sizeof p->why, "write in doubt: a replica did not answer within %d ms", REPLICA_TIMEOUT_MS);
        if (p->failures++ % 1000 == 0)
            kv_warn("%s (%" PRIu64 " such writes so far)", p->why, p->failures);
        s_finish(p, sl);
    }
    s_advance(p);
    return 1000;
}

bool replica_done(const server_t *s, uint64_t upto) { return upto <= s->replica->done; }

const char *replica_failed(const server_t *s, uint64_t from, uint64_t upto)
{
    replica_t *p = s->replica;
    /* slots reused since (the reply was held long, by a flush): what they
     * said is gone, so the write is in doubt */
    if (from + REPLICA_INFLIGHT <= p->next)
        return "write in doubt: its replica answers are no longer known (held too long)";
    for (uint64_t n = from; n && n <= upto; n++)
        if (s_slot(p, n)->failed)
            return p->why;
    return NULL;
}

/* ---- on a replica ------------------------------------------------------ */

static ghost_t *s_ghost_slot(replica_t *p, const uint8_t *digest)
{
    return &p->ghosts[(digest[4] | digest[5] << 8 | (uint32_t) digest[6] << 16) % GHOSTS];
}

static void s_ghost_add(replica_t *p, const kv_ns_t *ns, const uint8_t *digest, uint64_t lut)
{
    if (!p->ghosts && !(p->ghosts = calloc(GHOSTS, sizeof *p->ghosts)))
        return;
    ghost_t *g = s_ghost_slot(p, digest);
    memcpy(g->digest, digest, KV_DIGEST_SIZE);
    g->ns = ns;
    g->lut = lut;
    g->at_ms = kv_mono_ms();
}

bool replica_deleted_after(server_t *s, const kv_ns_t *ns, const uint8_t *digest, uint64_t lut)
{
    replica_t *p = s->replica;
    if (!p->ghosts)
        return false;
    const ghost_t *g = s_ghost_slot(p, digest);
    return g->ns == ns && memcmp(g->digest, digest, KV_DIGEST_SIZE) == 0 && g->lut >= lut &&
           kv_mono_ms() < g->at_ms + GHOST_MS;
}

/* Is img (len bytes) a whole record image of this digest that a put could
 * have stored in ns?  NULL, or why not. */
static const char *s_bad_image(server_t *s, const kv_ns_t *ns, const uint8_t *digest, const uint8_t *img,
                               uint32_t len, kv_rec_t *hdr)
{
    if (len < IMAGE_HDR)
        return "shorter than a record header";
    memcpy(hdr, img, IMAGE_HDR);
    if ((uint64_t) hdr->set_len + hdr->key_len + hdr->bins_len != len - IMAGE_HDR)
        return "its lengths do not add up to its size";
    if (memcmp(hdr->digest, digest, KV_DIGEST_SIZE) != 0)
        return "its digest is not the request's";
    if (hdr->set_len > KV_SET_MAX || memchr(img + IMAGE_HDR, '\0', hdr->set_len))
        return "bad set name";
    bool key_ok = (hdr->key_type == KV_KEY_NONE && hdr->key_len == 0) ||
                  (hdr->key_type == KV_KEY_INT && hdr->key_len == 8) ||
                  ((hdr->key_type == KV_KEY_STRING || hdr->key_type == KV_KEY_BYTES) && hdr->key_len >= 1 &&
                   hdr->key_len <= KV_KEY_MAX);
    if (!key_ok)
        return "bad key type or length";
    if ((uint64_t) len - IMAGE_HDR > ns->cfg.max_record_size)
        return "larger than this namespace's max-record-size";
    uint32_t n;
    char why[200];
    if (kv_bins_parse(img + IMAGE_HDR + hdr->set_len + hdr->key_len, hdr->bins_len, s->bins_old, ns->cfg.max_bins, &n,
                      why, sizeof why) != KV_OK ||
        n != hdr->nbins || n == 0)
        return "its bins are not a map of 1 to max-bins bins";
    return NULL;
}

int op_replica(server_t *s, req_t *r)
{
    kv_mp_t v;
    const uint8_t *img;
    uint32_t len;
    /* from a master of an older table (one that was paused, say): refused,
     * so it cannot overwrite what the current master acknowledged */
    uint32_t mine = cluster_table(s->cluster)->version;
    if (r->h->table_version < mine)
        return srv_fail(s, KV_ERR_WRONG_NODE, "a replica write of table version %u, this node has version %u",
                        r->h->table_version, mine);
    kv_rec_t *old = store_get(r->ns, r->h->digest, r->now);
    if (!old && r->ns->read_error)
        return srv_fail(s, KV_ERR_SERVER, "%s", r->ns->why);
    bool lww = false; /* a master's merge by last writer: the same rule here */
    if (kv_body_get(r->body, r->len, "lww", &v) == 0 && kv_mp_read_bool(&v, &lww) != 0)
        return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'lww' must be a boolean");
    if (kv_body_get(r->body, r->len, "rec", &v) == 0) {
        kv_rec_t hdr;
        const char *bad;
        if (kv_mp_read_bin(&v, &img, &len) != 0)
            return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'rec' must be a record image (bytes)");
        if ((bad = s_bad_image(s, r->ns, r->h->digest, img, len, &hdr)))
            return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'rec' is not a record this namespace can hold: %s", bad);
        if (old && old->gen == hdr.gen && old->lut == hdr.lut)
            return KV_OK; /* this very write, again */
        if (hdr.lut > s->last_lut) /* this node's later writes come after it */
            s->last_lut = hdr.lut;
        if (old && (lww ? old->lut > hdr.lut || (old->lut == hdr.lut && old->gen > hdr.gen)
                        : old->gen > hdr.gen || (old->gen == hdr.gen && old->lut > hdr.lut)))
            return srv_fail(s, KV_ERR_GENERATION, "this replica holds a newer copy (generation %u, the write's %u)",
                            old->gen, hdr.gen);
        uint32_t data = len - (uint32_t) IMAGE_HDR;
        if (!r->ns->disk &&
            r->ns->memory_used + store_rec_cost(data) - (old ? store_rec_cost(rec_data_len(old)) : 0) >
                r->ns->cfg.memory_limit)
            return srv_fail(s, KV_ERR_NS_FULL, "namespace '%s' is at its memory limit (%llu of %llu bytes)",
                            r->ns->cfg.name, (unsigned long long) r->ns->memory_used,
                            (unsigned long long) r->ns->cfg.memory_limit);
        kv_rec_t *rec = store_rec_alloc(data);
        if (!rec)
            return srv_fail(s, KV_ERR_SERVER, "out of memory");
        memcpy(rec, img, len);
        if (store_put(r->ns, rec) != 0) {
            free(rec);
            return srv_fail(s, r->ns->why_code ? r->ns->why_code : KV_ERR_NS_FULL, "%s", r->ns->why);
        }
        return KV_OK;
    }
    if (kv_body_get(r->body, r->len, "del", &v) == 0) {
        uint32_t n;
        int64_t gen, lut;
        if (kv_mp_read_array(&v, &n) != 0 || n != 2 || kv_mp_read_int(&v, &gen) != 0 || kv_mp_read_int(&v, &lut) != 0 ||
            gen < 0 || gen > UINT32_MAX || lut < 0)
            return srv_fail(s, KV_ERR_BAD_REQUEST, "field 'del' must be [generation, last-update time]");
        /* the tombstone's generation is one past the deleted record's: the
         * same order as for records, generation then last-update time */
        if ((uint64_t) lut > s->last_lut)
            s->last_lut = (uint64_t) lut;
        if (old && (lww ? old->lut > (uint64_t) lut
                        : old->gen > (uint32_t) gen || (old->gen == (uint32_t) gen && old->lut > (uint64_t) lut)))
            return srv_fail(s, KV_ERR_GENERATION, "this replica holds a copy newer than the delete (generation %u)",
                            old->gen);
        s_ghost_add(s->replica, r->ns, r->h->digest, (uint64_t) lut);
        if (store_remove(r->ns, r->h->digest, (uint32_t) gen, (uint64_t) lut) < 0)
            return srv_fail(s, r->ns->why_code ? r->ns->why_code : KV_ERR_NS_FULL, "%s", r->ns->why);
        return KV_OK;
    }
    return srv_fail(s, KV_ERR_BAD_REQUEST, "a replica write needs 'rec' or 'del'");
}
