/* kv_ptable: the cluster partition table.
 *
 * The table is only the cluster's membership and a version: a cluster id,
 * a version number and the nodes (id and endpoint), sorted by id.  The rows
 * (which node is master and which are replicas of each of the 4096
 * partitions) are not stored: they are computed by rendezvous hashing per
 * partition, so every node, router and client derives the same rows from
 * the same table.  For partition pid every node gets a weight,
 *
 *     weight = SipHash-2-4(key, id as 8 bytes LE || pid as 2 bytes LE)
 *
 * (libsodium crypto_shorthash, the 8-byte result read as a little-endian
 * uint64, key the 16 bytes "kvstore ptable\0\0"), and the nodes ranked by
 * weight, highest first, ties by smaller id, give the row: master first,
 * then the replicas.  A node's weight does not depend on the other nodes,
 * so adding or removing a node moves only the partitions where it ranks in
 * the top RF.  The weights are part of the protocol and must never change.
 *
 * Each member has a state.  A ranked member holds full data of the
 * partitions where it ranks in the top RF.  A member that changes state
 * keeps its place in the rankings, so the table says which copies hold
 * full data while migrations move partitions (kvroute(1) MIGRATIONS):
 *
 *   ranked   full data, alive
 *   filling  alive, joined a running cluster: holds nothing yet
 *   gone     was ranked, is dead (or removed): its place is kept until the
 *            partitions it held are copied elsewhere
 *   back     a gone member that is alive again: its copies may be stale
 *   leaving  full data, alive, removed by an operator: it keeps serving
 *            until the partitions it holds are copied elsewhere
 *
 * For a partition and a replication factor rf:
 *   row       the top of the ranking of ranked and leaving members: the
 *             first is the master (kv_ptable_row);
 *   reference the top rf of ranked, leaving, gone and back members: where
 *             the data was when the table was last settled; its ranked and
 *             leaving members hold full copies;
 *   target    the top rf of ranked, filling and back members: where the
 *             data belongs;
 *   copies    the full copies and the target: a master sends its writes to
 *             all of them; a target member without a full copy is filled
 *             by a migration (kv_ptable_copies).
 * A table with only ranked members is settled: reference = target = the
 * first rf of the row.
 *
 * MessagePack form:
 *
 *     {"cluster": uint, "version": uint, "nodes": [[id, "endpoint"], ...]}
 *
 * where a member that is not ranked has a third element, its state (1
 * filling, 2 gone, 3 back, 4 leaving; true is read as filling).
 *
 * Weights and kv_ptable_hash use libsodium: call sodium_init() first. */
#ifndef KV_PTABLE_H
#define KV_PTABLE_H

#include "kv_mp.h"
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_NODES_MAX 64     /* nodes in a cluster */
#define KV_RF_MAX 8         /* copies of a partition at most */
#define KV_ENDPOINT_MAX 255 /* bytes in a node endpoint */

typedef enum { KV_PN_RANKED, KV_PN_FILLING, KV_PN_GONE, KV_PN_BACK, KV_PN_LEAVING, KV_PN_STATES_ } kv_pnstate_t;

typedef struct {
    uint64_t id;                        /* node id, never 0 */
    char endpoint[KV_ENDPOINT_MAX + 1]; /* where clients and peers reach it, NUL-terminated */
    uint8_t state;                      /* kv_pnstate_t */
} kv_pnode_t;

/* Name of a member state ("ranked", ...). */
const char *kv_pnstate_name(int state);
/* Does a member in this state hold full data (ranked, leaving)? */
static inline bool kv_pn_full(int state) { return state == KV_PN_RANKED || state == KV_PN_LEAVING; }
/* Is it alive and meant to hold data (ranked, filling, back)? */
static inline bool kv_pn_target(int state)
{
    return state == KV_PN_RANKED || state == KV_PN_FILLING || state == KV_PN_BACK;
}

/* The copies of one partition for a replication factor (kv_ptable_copies):
 * node indexes, the full copies first, then the target members that are
 * being filled. */
typedef struct {
    int master;                  /* node index, or -1 if no member holds full data */
    bool lost;                   /* no member of the reference holds full data (more than rf-1 of its
                                    copies are gone): the master's copy is not the data */
    int n;                       /* copies */
    int nodes[2 * KV_RF_MAX];
    bool full[2 * KV_RF_MAX];    /* this copy holds full data */
    bool target[2 * KV_RF_MAX];  /* and belongs to the partition's target */
} kv_pcopies_t;

typedef struct {
    uint64_t cluster;               /* cluster id, never 0 once version >= 1 */
    uint32_t version;               /* 0 = no table yet */
    int n;                          /* number of nodes */
    kv_pnode_t nodes[KV_NODES_MAX]; /* sorted by id ascending, ids unique */
} kv_ptable_t;

/* Make t the empty table: cluster 0, version 0, no nodes. */
void kv_ptable_init(kv_ptable_t *t);
/* Insert a node, keeping nodes sorted (cluster and version are the caller's
 * to set); 0, or -1 with t unchanged if the table is full, id is 0 or
 * already present, or endpoint is NULL, empty or longer than KV_ENDPOINT_MAX. */
int kv_ptable_add(kv_ptable_t *t, uint64_t id, const char *endpoint);
/* Remove the node with this id; 0, or -1 if there is none. */
int kv_ptable_remove(kv_ptable_t *t, uint64_t id);
/* Index in t->nodes of the node with this id, or -1. */
int kv_ptable_find(const kv_ptable_t *t, uint64_t id);
/* Rendezvous order of the members holding full data (ranked, leaving)
 * for partition pid: writes the first min(count, max) node indexes into
 * out (out[0] the master, then the replicas) and returns that count (0
 * if max <= 0). */
int kv_ptable_row(const kv_ptable_t *t, uint16_t pid, int *out, int max);
/* The copies of partition pid for replication factor rf (1..KV_RF_MAX). */
void kv_ptable_copies(const kv_ptable_t *t, uint16_t pid, int rf, kv_pcopies_t *c);
/* True if every member is ranked. */
bool kv_ptable_settled(const kv_ptable_t *t);
/* Rows of all KV_PARTITIONS partitions: rows[p][k] is the node index of the
 * k-th copy of partition p, in kv_ptable_row's order, for k < min(n,
 * KV_RF_MAX); the other entries are set to UINT8_MAX.  4096 * n hashes:
 * cheap enough for every table change. */
void kv_ptable_rows(const kv_ptable_t *t, uint8_t rows[][KV_RF_MAX]);
/* True if a and b have the same cluster, version, node ids, endpoints
 * and states. */
bool kv_ptable_same(const kv_ptable_t *a, const kv_ptable_t *b);
/* Fingerprint of cluster, version, node ids and endpoints: the first 8
 * bytes (little-endian) of BLAKE2b-128 over cluster (8 bytes LE), version
 * (4 LE), n (4 LE) and per node its id (8 LE), endpoint length (1) and
 * endpoint.  Tables that are kv_ptable_same have equal hashes. */
uint64_t kv_ptable_hash(const kv_ptable_t *t);
/* Pack t in its MessagePack form (ids as unsigned 64-bit); 0, or -1 if the
 * packer fails or t->n is out of range. */
int kv_ptable_pack(const kv_ptable_t *t, msgpack_packer *pk);
/* Decode and validate the table at the cursor v, like the kv_mp_read_*
 * functions: 0 with t filled and v moved past the table (unknown keys are
 * skipped), or -1 with t and v unchanged and a reason saying what and where
 * in why (may be NULL if whylen is 0).  Input is untrusted: every length and
 * count is checked against the buffer and the limits before use. */
int kv_ptable_unpack(kv_ptable_t *t, kv_mp_t *v, char *why, size_t whylen);

void kv_ptable_test(bool verbose);

#endif
