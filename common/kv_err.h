/* kv_err: the error codes of kvstore, numbered as on the wire.
 *
 * Codes follow Aerospike's result codes where the meaning is the same;
 * codes from 40 up are kvstore's own.  The numbers are stable: they appear
 * on the wire, in kvquery's messages and in kvproto(7). */
#ifndef KV_ERR_H
#define KV_ERR_H

#include <stdbool.h>

typedef enum {
    KV_OK = 0,
    KV_ERR_SERVER = 1,          /* internal server error */
    KV_ERR_NOT_FOUND = 2,       /* record not found */
    KV_ERR_GENERATION = 3,      /* generation check failed */
    KV_ERR_BAD_REQUEST = 4,     /* malformed or invalid request */
    KV_ERR_EXISTS = 5,          /* record already exists */
    KV_ERR_NS_FULL = 8,         /* namespace full (memory or disk limit) */
    KV_ERR_TIMEOUT = 9,         /* no answer in time */
    KV_ERR_UNAVAILABLE = 11,    /* partition unavailable */
    KV_ERR_BIN_TYPE = 12,       /* operation does not fit the bin's type */
    KV_ERR_TOO_BIG = 13,        /* record too big */
    KV_ERR_KEY_BUSY = 14,       /* too many writes queued on one key */
    KV_ERR_UNSUPPORTED = 16,    /* operation not supported */
    KV_ERR_NAMESPACE = 20,      /* no such namespace */
    KV_ERR_BIN_NAME = 21,       /* bin name too long */
    KV_ERR_FORBIDDEN = 22,      /* operation forbidden */
    KV_ERR_WRONG_NODE = 40,     /* node does not own the partition */
    KV_ERR_IN_DOUBT = 41,       /* write may or may not have happened */
    KV_ERR_TOO_MANY_BINS = 42,  /* record has more bins than allowed */
    KV_ERR_VERSION = 43,        /* unsupported protocol version */
} kv_status_t;

/* Short stable name ("not found"); "unknown error" for unknown codes. */
const char *kv_err_name(int code);
/* Symbolic name ("NOT_FOUND"); NULL for unknown codes. */
const char *kv_err_symbol(int code);
/* True for codes that are a negative answer rather than a failure
 * (not found, generation mismatch, record exists). */
bool kv_err_is_negative(int code);
/* Iterate the table: returns the i-th code, or -1 past the end. */
int kv_err_at(int i);

void kv_err_test(bool verbose);

#endif
