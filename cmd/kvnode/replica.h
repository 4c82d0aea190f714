/* replica: synchronous replication of a master's writes (AP mode,
 * commit-all).
 *
 * After a write is applied on the master of a partition, the whole record
 * (or the delete) goes to each replica of the partition in the installed
 * table, as a REPLICA request on a DEALER per peer node; the client's reply
 * is held (with the rest of its reply frame) until every replica answers.
 * A replica applies a record only if it is newer than its own copy
 * (generation, then last-update time).  A replica that does not answer
 * within REPLICA_TIMEOUT_MS makes the write IN_DOUBT for the client: it is
 * applied on the master and may or may not be on the replica.
 *
 * Writes are numbered in the order they are sent; a held reply waits for
 * every write numbered up to its own (one slow replica holds up the
 * replies of every later write on this master, up to the timeout).  At most
 * REPLICA_INFLIGHT writes are in flight, and at most REPLICA_KEY_MAX per
 * key (counted per bucket of 1/16384 of the digests); past either the
 * write is refused KEY_BUSY before it is applied. */
#ifndef KVNODE_REPLICA_H
#define KVNODE_REPLICA_H

#include "request.h"
#include <stdbool.h>
#include <stdint.h>
#include <zmq.h>

#define REPLICA_TIMEOUT_MS 1000
#define REPLICA_INFLIGHT 65536
#define REPLICA_KEY_MAX 64

typedef struct replica replica_t;

replica_t *replica_new(void);
void replica_destroy(replica_t **self_p);
/* Before a write op on a record of ns: KV_OK, or KEY_BUSY (with s->why)
 * if it could not be replicated now. */
int replica_admit(server_t *s, const kv_ns_t *ns, const uint8_t *digest);
/* After a write was applied here: send rec (NULL: a delete of digest,
 * whose tombstone has gen and lut) to the partition's replicas (with lww,
 * a merge by last writer: the replicas apply it by the same rule), and make
 * the request's reply wait for them (s->repl_seq).  Nothing to do when
 * there is no table or rf is 1. */
void replica_send(server_t *s, const kv_ns_t *ns, const kv_rec_t *rec, const uint8_t *digest, uint32_t gen,
                  uint64_t lut, bool lww);
/* The peer sockets to poll for answers: fills items, returns how many. */
int replica_poll_items(server_t *s, zmq_pollitem_t *items, int max);
/* Read the answers waiting on the peer socket of poll item k. */
void replica_recv(server_t *s, int k);
/* Time out writes not answered in time (*expired: some were); ms until
 * the next check. */
long replica_tick(server_t *s, uint64_t now_ms, bool *expired);
/* Every write numbered up to upto is answered (or timed out). */
bool replica_done(const server_t *s, uint64_t upto);
/* Some write numbered from..upto timed out or was refused: why, or NULL. */
const char *replica_failed(const server_t *s, uint64_t from, uint64_t upto);
/* Did a replica write delete digest at or after last-update time lut (in
 * the last hour)?  A merged copy that old must not bring the record back. */
bool replica_deleted_after(server_t *s, const kv_ns_t *ns, const uint8_t *digest, uint64_t lut);
/* The REPLICA op, on a replica. */
int op_replica(server_t *s, req_t *r);

#endif
