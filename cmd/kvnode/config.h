/* config: kvnode's namespace specifications and configuration file.
 *
 * A namespace is "NAME[,key=value...]" on the command line (--ns) and
 * "ns NAME[,key=value...]" in a file; the keys are the same.  A file has
 * one option per line, named like the long option without its dashes
 * ("data DIR", "listen ENDPOINT", "ns SPEC", "sched POLICY"); '#' starts a
 * comment. */
#ifndef KVNODE_CONFIG_H
#define KVNODE_CONFIG_H

#include "server.h"
#include "store.h"

typedef struct {
    char listen[256];
    char data[1024];  /* data directory, or "" */
    kv_ns_config_t ns[KV_MAX_NS];
    char origin[KV_MAX_NS][320]; /* where each was given: "--ns SPEC" or "FILE:LINE" */
    int n_ns;
    int sched;        /* the request loop's and flushers' policy: SCHED_BATCH or SCHED_OTHER */
} node_config_t;

#define KVNODE_DEFAULT_ENDPOINT "tcp://127.0.0.1:7700"

void config_init(node_config_t *cfg);
void config_ns_defaults(kv_ns_config_t *ns, const char *name);
/* Add a namespace from "NAME[,key=value...]".  0, or -1 with a reason. */
int config_add_ns(node_config_t *cfg, const char *spec, char *why, size_t whylen);
/* Set the scheduling policy from "batch" or "normal".  0, or -1. */
int config_set_sched(node_config_t *cfg, const char *val, char *why, size_t whylen);
/* Read a configuration file.  0, or -1 with "FILE:LINE: reason". */
int config_load(node_config_t *cfg, const char *path, char *why, size_t whylen);
/* After every source is read: decide each namespace's storage and check
 * what depends on the data directory and the write block.  0, or -1. */
int config_finish(node_config_t *cfg, char *why, size_t whylen);

void config_test(bool verbose);

#endif
