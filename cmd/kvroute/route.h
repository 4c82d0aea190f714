/* route: kvroute's loop: cluster membership from node heartbeats, the
 * partition table agreed with the nodes by Paxos (kvroute proposes, the
 * nodes accept; see cmd/kvnode/cluster.h), and the admin and info
 * requests of clients.
 *
 * Quorum rules of a proposal for table version v (base = the installed
 * table v-1, which earlier rounds made unique):
 *   v = 1: every node of the proposed table grants (there is no base);
 *   v > 1: a strict majority of the base table's nodes grant.
 * Both phases use the same rule; in phase 2 the proposer sends the value
 * accepted with the highest ballot among the phase-1 replies, if any,
 * else its own.  Two routers with overlapping node sets therefore never
 * get two different tables chosen for one version; two routers with
 * disjoint node sets make two clusters with different cluster ids. */
#ifndef KVROUTE_ROUTE_H
#define KVROUTE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct route route_t;

typedef struct {
    char listen[256];
    const char *nodes[64];   /* endpoints given with --node */
    int n_nodes;
    uint32_t hb_interval_ms; /* heartbeat interval asked of the nodes */
    uint32_t hb_misses;      /* intervals missed before a node is gone */
    char kvrepl[1024];       /* the kvrepl program that carries out migrations */
    int migrate_max;         /* migrations at once per node */
    uint64_t migrate_rate;   /* records per second per migration, 0 = no limit */
} route_config_t;

/* Bind and contact the nodes.  NULL with a reason. */
route_t *route_new(const route_config_t *cfg, char *why, size_t whylen);
void route_destroy(route_t **self_p);
const char *route_endpoint(const route_t *self);
/* Serve until *stop becomes true. */
void route_run(route_t *self, volatile int *stop);

#endif
