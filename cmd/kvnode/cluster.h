/* cluster: this node's part in a cluster: its stable node id, the
 * partition table it has installed, its state as an acceptor of the next
 * table, and the routers it heartbeats to.
 *
 * Table changes are agreed with Paxos, one instance per table version;
 * kvroute proposes, the nodes are the acceptors (kvproto(7), CLUSTER op):
 *
 *   prepare(v, b)   granted unless v <= installed version or b < promised;
 *                   the reply carries what this node accepted for v
 *   accept(v, b, T) granted unless v <= installed version or b < promised
 *   commit(T)       install T if it is newer than the installed table
 *
 * A ballot is (round, proposer id), compared in that order, so two
 * routers never use the same one.  The promise and the accepted value are
 * on disk (DIR/cluster.state, written and synced before the reply) when
 * the node has a data directory; without one the node takes a new id at
 * every start, so a forgotten promise belongs to an acceptor that never
 * comes back.  The quorum rules are the proposer's (kvroute(1)). */
#ifndef KVNODE_CLUSTER_H
#define KVNODE_CLUSTER_H

#include "kv_ptable.h"
#include "request.h"
#include <stdbool.h>
#include <stdint.h>

typedef struct cluster cluster_t;

/* Load or create the node id (DIR/node.id) and the cluster state
 * (DIR/cluster.state); dir "" keeps both in memory.  NULL with a reason. */
cluster_t *cluster_new(const char *dir, char *why, size_t whylen);
void cluster_destroy(cluster_t **self_p);
uint64_t cluster_node_id(const cluster_t *self);
/* The installed table (version 0: none, the node serves every partition). */
const kv_ptable_t *cluster_table(const cluster_t *self);
/* This node's index in the installed table, or -1. */
int cluster_self(const cluster_t *self);
/* The copies of partition pid for replication factor rf in the installed
 * table (kv_ptable_copies), or NULL if there is no table (or no memory). */
const kv_pcopies_t *cluster_copies(cluster_t *self, uint16_t pid, int rf);
/* Is this node one of partition pid's copies (for rf), so it keeps its
 * records?  True without a table. */
bool cluster_holds(cluster_t *self, uint16_t pid, int rf);
/* True if this node may serve requests for partition pid as its master. */
bool cluster_serves(const cluster_t *self, uint16_t pid);
/* The CLUSTER op (state, prepare, accept, commit, heartbeat-to). */
int op_cluster(server_t *s, req_t *r);
/* Heartbeat to a router from the start (--join); the router then admits
 * this node.  0, or -1 with a reason. */
int cluster_join(server_t *s, const char *router, char *why, size_t whylen);
/* Send due heartbeats; milliseconds until the next is due. */
long cluster_tick(server_t *s, uint64_t now_ms);

void cluster_test(bool verbose);

#endif
