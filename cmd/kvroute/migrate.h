/* migrate: the migrations kvroute orders when its installed table is not
 * settled (kv_ptable.h): for every namespace and partition, each target
 * member without a full copy is filled from the partition's master by a
 * `kvrepl migrate` process.  The master sends its writes to the member
 * being filled from the moment the table is installed, so once a fill is
 * done the member holds every write; when every fill of the table is done,
 * kvroute proposes the settled table (kvroute(1) MIGRATIONS).
 *
 * A fill is done for (namespace, partition, member) and stays done into
 * the next table version while the member stays in the partition's target
 * and does not restart (a process that ran while its source or member
 * restarted counts for nothing); after a jump of more than one version,
 * every fill is done again.  At most per_node processes run with a given node as their
 * source or destination; a failed one is retried after a pause. */
#ifndef KVROUTE_MIGRATE_H
#define KVROUTE_MIGRATE_H

#include "kv_ptable.h"
#include <stdbool.h>
#include <stdint.h>

#define MIGRATE_NS_MAX 32

typedef struct migrate migrate_t;

typedef struct {
    const char *kvrepl; /* path of the kvrepl program */
    int per_node;       /* processes per node at once (source or destination) */
    uint64_t rate;      /* records per second per process, 0 = no limit */
    int chunk;          /* partitions per process */
} migrate_config_t;

typedef struct {
    uint32_t remaining;  /* fills not done yet */
    uint32_t active;     /* kvrepl processes running */
    uint64_t done;       /* fills done since kvroute started */
    uint64_t failed;     /* kvrepl processes that failed */
    uint64_t records;    /* records copied by the processes that finished */
} migrate_stats_t;

migrate_t *migrate_new(const migrate_config_t *cfg);
/* Stops the running processes (SIGTERM, then waits for them). */
void migrate_destroy(migrate_t **self_p);
/* The installed table, and the namespaces with their replication factors:
 * the fills it needs are worked out again.  0, or -1 (out of memory: the
 * fills are not known, so nothing may be taken as done). */
int migrate_table(migrate_t *m, const kv_ptable_t *t, char names[][32], const int *rf, int n_ns);
/* Node id restarted: its fills are to be done again. */
void migrate_restarted(migrate_t *m, uint64_t id);
/* Reap finished processes and start the ones now allowed; up(arg, id)
 * says whether a node is up. */
void migrate_tick(migrate_t *m, bool (*up)(void *arg, uint64_t id), void *arg);
/* Every fill the table needs is done and no process runs. */
bool migrate_done(const migrate_t *m);
void migrate_stats(const migrate_t *m, migrate_stats_t *st);

#endif
