/* kv_cmap: a smart client's map of a cluster: the partition table fetched
 * from a kvroute (info table), the rows computed from it, and a client
 * connection per node, so each request goes straight to its partition's
 * master.  A WRONG_NODE reply means the map is stale: refresh it and try
 * again (the callers bound the tries). */
#ifndef KV_CMAP_H
#define KV_CMAP_H

#include "kv_client.h"
#include "kv_ptable.h"

typedef struct kv_cmap kv_cmap_t;

/* Fetch the table from the router at endpoint.  NULL with a reason. */
kv_cmap_t *kv_cmap_new(const char *router, int timeout_ms, char *why, size_t whylen);
void kv_cmap_destroy(kv_cmap_t **self_p);
/* Fetch the table again.  0, or -1 with a reason. */
int kv_cmap_refresh(kv_cmap_t *self, char *why, size_t whylen);
const kv_ptable_t *kv_cmap_table(const kv_cmap_t *self);
/* Node index (into the table) of partition pid's master, or -1 if none. */
int kv_cmap_master(const kv_cmap_t *self, uint16_t pid);
/* The client connected to node idx (made on first use; owned by the map),
 * or NULL with a reason. */
kv_client_t *kv_cmap_client(kv_cmap_t *self, int idx, char *why, size_t whylen);

void kv_cmap_test(bool verbose);

#endif
