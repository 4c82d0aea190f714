/* server: kvnode's request loop and its table of operations.
 *
 * One thread owns the ROUTER socket and the store.  Each wake-up drains
 * every message that is ready, so a burst of pipelined requests costs one
 * poll, and a frame of many requests costs one message. */
#ifndef KVNODE_SERVER_H
#define KVNODE_SERVER_H

#include "store.h"
#include <msgpack.h>

#define KV_MAX_NS 32

typedef struct server server_t;

/* Takes copies of the namespace configurations; namespaces stored in
 * files are opened in dir (their indexes rebuilt).  NULL with a reason. */
server_t *server_new(const kv_ns_config_t *cfgs, int n, const char *dir, char *why, size_t whylen);
void server_destroy(server_t **self_p);
/* Bind the ROUTER socket; the actual endpoint (port chosen for '*') is
 * returned by server_endpoint.  0, or -1 with a reason in why. */
int server_bind(server_t *self, const char *endpoint, char *why, size_t whylen);
const char *server_endpoint(const server_t *self);
uint64_t server_node_id(const server_t *self);
/* Heartbeat to the kvroute at router (after server_bind).  0 or -1. */
int server_join(server_t *self, const char *router, char *why, size_t whylen);
/* Serve until *stop becomes true (set from a signal handler).  A write
 * to a namespace with commit-to-device is answered after the batch of
 * requests it arrived with is written and flushed (group commit). */
void server_run(server_t *self, volatile int *stop);

/* Answer a request frame (one or more requests; see kv_proto.h); the
 * reply frame is then at server_reply_frame.  Also the entry point of the
 * fuzz target. */
void server_handle_frame(server_t *self, const uint8_t *frame, size_t len);
const uint8_t *server_reply_frame(const server_t *self, size_t *len);
/* Read the wall clock that requests see (the loop does it once per batch;
 * direct callers of server_handle call it when time should move). */
void server_tick(server_t *self);

void server_test(bool verbose);

#endif
