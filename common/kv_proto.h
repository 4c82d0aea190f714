/* kv_proto: the kvstore wire protocol (see kvproto(7)).
 *
 * Grammar (ZeroMQ multipart messages; servers bind ROUTER, clients DEALER):
 *
 *   request-message = *envelope-frame empty-frame request-frame
 *   reply-message   = *envelope-frame empty-frame reply-frame
 *   request-frame   = 1*(header body)      one or more requests
 *   reply-frame     = 1*(header body)      one or more replies
 *
 *   The empty delimiter frame ends the envelope (the routing identities a
 *   ROUTER adds); a server copies the envelope, delimiter included, onto
 *   its replies unchanged, so a router in the middle needs no state.
 *   Replies come back in any order and grouping (a frame of several
 *   requests may be answered by several reply frames); the request id
 *   matches them.  Putting many requests in one frame is how a client
 *   pipelines cheaply: libzmq's cost is per frame.
 *
 *   header = exactly KV_HDR_SIZE (52) bytes, integers little-endian:
 *     off len field
 *       0   2 magic "KV" (0x4B 0x56)
 *       2   1 version (KV_PROTO_VERSION = 2)
 *       3   1 op (kv_op_t); a reply carries the op of its request
 *       4   2 flags (KV_F_*)
 *       6   2 status: 0 in requests, a kv_status_t in replies
 *       8   8 request id, chosen by the client, echoed in the reply
 *      16   2 partition id (0..4095); 0 for ops without a record
 *      18   2 reserved, must be 0
 *      20   4 partition table version (0 on a single node)
 *      24   4 timeout in milliseconds (0 = none); advisory
 *      28  20 digest of the record (zeros for ops without a record)
 *      48   4 length of the body that follows the header
 *
 *   body = one MessagePack map with string keys (may be empty: 0x80); its
 *          keys per op are listed in kvproto(7).
 *
 * Decoders never trust a frame: every length is checked against the frame
 * that holds it, and anything malformed gets a BAD_REQUEST reply. */
#ifndef KV_PROTO_H
#define KV_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_HDR_SIZE 52
#define KV_PROTO_VERSION 2
#define KV_DIGEST_SIZE 20
#define KV_PARTITIONS 4096
#define KV_NS_MAX 31          /* bytes in a namespace name */
#define KV_SET_MAX 63         /* bytes in a set name */
#define KV_BIN_NAME_MAX 15    /* bytes in a bin name */
#define KV_KEY_MAX 1024       /* bytes in a string or bytes key */
#define KV_TTL_MAX 315360000  /* ten years, in seconds */
#define KV_BATCH_MAX 5000     /* keys in one batch request */
#define KV_SCAN_PAGE_MAX 10000
#define KV_FRAME_MAX (9 << 20) /* largest frame a server accepts */
#define KV_FRAME_REQS_MAX 4096 /* requests in one frame */

typedef enum {
    KV_OP_GET = 1,
    KV_OP_EXISTS = 2,
    KV_OP_PUT = 3,
    KV_OP_DELETE = 4,
    KV_OP_TOUCH = 5,
    KV_OP_OPERATE = 6,
    KV_OP_BATCH = 7,
    KV_OP_SCAN = 8,
    KV_OP_INFO = 9,
    KV_OP_PING = 10,
    KV_OP_CLUSTER = 11, /* membership and partition table (kvroute <-> kvnode) */
    KV_OP_REPLICA = 12, /* a master's write to a replica (kvnode <-> kvnode) */
    KV_OP_MERGE = 13,   /* apply a record copy if it is better (kvrepl -> kvnode) */
    KV_OP_MAX_ = 14
} kv_op_t;

/* Header flags. */
#define KV_F_SENDKEY 0x0001   /* store the user key with the record */
#define KV_F_COMMIT_MASTER 0x0002 /* a write: answer once the master has it, not waiting for replicas */
#define KV_F_ALL (KV_F_SENDKEY | KV_F_COMMIT_MASTER)

/* Record-exists policy of a put (body key "exists"). */
typedef enum {
    KV_EXISTS_UPDATE = 0,       /* create or merge bins */
    KV_EXISTS_UPDATE_ONLY = 1,  /* merge bins; record must exist */
    KV_EXISTS_CREATE_ONLY = 2,  /* record must not exist */
    KV_EXISTS_REPLACE = 3,      /* create or replace all bins */
    KV_EXISTS_REPLACE_ONLY = 4  /* replace all bins; record must exist */
} kv_exists_t;

/* Generation policy (body keys "gen" and "genpol"). */
typedef enum { KV_GEN_NONE = 0, KV_GEN_EQ = 1, KV_GEN_GT = 2 } kv_genpol_t;

/* Operate op codes (body key "ops": array of [code, bin, value?]). */
typedef enum {
    KV_OPR_READ = 1,
    KV_OPR_WRITE = 2,
    KV_OPR_ADD = 3,
    KV_OPR_APPEND = 4,
    KV_OPR_PREPEND = 5,
    KV_OPR_DELETE = 6,
    KV_OPR_TOUCH = 7
} kv_opr_t;

/* Key types, also the key-type byte of the digest. */
typedef enum { KV_KEY_NONE = 0, KV_KEY_STRING = 1, KV_KEY_INT = 2, KV_KEY_BYTES = 3 } kv_keytype_t;

typedef struct {
    uint8_t op;
    uint16_t flags;
    uint16_t status;
    uint64_t reqid;
    uint16_t pid;
    uint32_t table_version;
    uint32_t timeout_ms;
    uint8_t digest[KV_DIGEST_SIZE];
    uint32_t body_len;
} kv_hdr_t;

/* Encode into exactly KV_HDR_SIZE bytes. */
void kv_hdr_encode(const kv_hdr_t *h, uint8_t *out);
/* Decode and validate; on failure returns the kv_status_t to answer with
 * (BAD_REQUEST or VERSION) and writes a reason into why. */
int kv_hdr_decode(kv_hdr_t *h, const uint8_t *buf, size_t len, char *why, size_t whylen);

/* Next request (or reply) of a frame, from *off: its header in *h and
 * its body in *body (h->body_len bytes); *off moves past it.  Returns
 * KV_OK, -1 at the end of the frame, or the kv_status_t to answer with
 * (the rest of the frame cannot be read then; h has what could be read
 * of the request id and op). */
int kv_frame_next(const uint8_t *frame, size_t len, size_t *off, kv_hdr_t *h, const uint8_t **body, char *why,
                  size_t whylen);

/* Name of an op ("get"); NULL if unknown. */
const char *kv_op_name(int op);

/* Little-endian helpers. */
static inline void kv_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t) v; p[1] = (uint8_t) (v >> 8); }
static inline void kv_put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t) (v >> (8 * i)); }
static inline void kv_put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t) (v >> (8 * i)); }
static inline uint16_t kv_get16(const uint8_t *p) { return (uint16_t) (p[0] | p[1] << 8); }
static inline uint32_t kv_get32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static inline uint64_t kv_get64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

void kv_proto_test(bool verbose);

#endif
