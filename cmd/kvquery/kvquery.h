/* kvquery: shared state and helpers of the command-line client. */
#ifndef KVQUERY_H
#define KVQUERY_H

#include "kv_client.h"
#include "kv_cmap.h"
#include "kv_digest.h"
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum { FMT_JSONL, FMT_TABLE, FMT_RAW };

/* Exit codes (kvquery(1) EXIT STATUS). */
enum { EXIT_OK = 0, EXIT_NEGATIVE = 1, EXIT_ERROR = 2 };

typedef struct {
    kv_client_t *client;
    bool direct;        /* --direct: requests go to partition masters (cmap) */
    bool commit_master; /* --commit-master: writes do not wait for replicas */
    kv_cmap_t *cmap;
    const char *endpoint;
    int format;
    int timeout_ms;
    bool int_key;
    bool no_send_key;
    int64_t ttl;
    bool ttl_set;
    int exists;
    bool exists_set;
    int64_t gen;
    bool gen_set;
    int genpol;
    bool genpol_set;
    bool strict;
    int64_t in_flight;
    bool header_done;   /* table header printed */
} kq_t;

/* args.c: parse command-line values */
/* Parse "BIN=VALUE" or "BIN:TYPE=VALUE"; packs the name and the value (one map entry). */
int kq_parse_bin(const char *arg, char *name, size_t name_size, msgpack_packer *pk, char *why, size_t whylen);
/* Parse one operate op "read:BIN", "write:BIN=VALUE", ..., "touch"; packs [code, bin, value]. */
int kq_parse_op(const char *arg, msgpack_packer *pk, char *why, size_t whylen);
/* Parse a key argument (string, or integer with --int-key). */
int kq_parse_key(const kq_t *q, const char *arg, kv_key_t *key, char *why, size_t whylen);

/* output.c: print records and objects */
/* Print a record reply map.  ns/set/key are used when the reply lacks them. */
void kq_print_record(kq_t *q, const char *ns, const char *set, const kv_key_t *key, const uint8_t *map, size_t len);
void kq_print_json(kq_t *q, json_t *obj);

/* stream.c: commands that move many records */
int kq_cmd_batch(kq_t *q, int argc, char **argv);
int kq_cmd_scan(kq_t *q, int argc, char **argv);
int kq_cmd_export(kq_t *q, int argc, char **argv);
int kq_cmd_import(kq_t *q, int argc, char **argv);

/* main.c */
/* Report a failed request: "kvquery: WHAT: reason"; returns the exit code. */
int kq_report(const char *what, kv_reply_t *rep);
int kq_connect(kq_t *q);
/* Send req and wait for its reply: to the endpoint, or with --direct to
 * its partition's master.  A WRONG_NODE reply (a table change) is tried
 * again a few times, with --direct after refreshing the table.  EXIT_OK
 * with *rep (any status), or EXIT_ERROR after reporting what failed. */
int kq_call(kq_t *q, const char *what, kv_req_t *req, kv_reply_t *rep);

void kq_args_test(bool verbose);

#endif
