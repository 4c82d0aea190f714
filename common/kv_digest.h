/* kv_digest: a record's 20-byte digest and its partition id.
 *
 * digest = BLAKE2b-160( len(set) as 1 byte || set || key type as 1 byte || key )
 * where an integer key is its 8 bytes little-endian and a string or bytes key
 * is its bytes.  partition id = (digest[0] | digest[1] << 8) & 0x0FFF. */
#ifndef KV_DIGEST_H
#define KV_DIGEST_H

#include "kv_proto.h"

typedef struct {
    int type;             /* kv_keytype_t */
    int64_t i;            /* KV_KEY_INT */
    const uint8_t *bytes; /* KV_KEY_STRING / KV_KEY_BYTES, not NUL-terminated */
    size_t len;
} kv_key_t;

/* Returns 0, or -1 if the set or key is too long or the type unknown. */
int kv_digest(const char *set, size_t set_len, const kv_key_t *key, uint8_t out[KV_DIGEST_SIZE]);
uint16_t kv_partition(const uint8_t digest[KV_DIGEST_SIZE]);
/* Lower-case hex of a digest into out (41 bytes). */
void kv_digest_hex(const uint8_t digest[KV_DIGEST_SIZE], char out[2 * KV_DIGEST_SIZE + 1]);
/* Parse 40 hex digits; 0 or -1. */
int kv_digest_parse(const char *hex, uint8_t out[KV_DIGEST_SIZE]);

void kv_digest_test(bool verbose);

#endif
