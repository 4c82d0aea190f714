/* kv_digest: BLAKE2b-160 record digests (libsodium) and partition ids. */
#include "kv_digest.h"
#include <assert.h>
#include <sodium.h>
#include <string.h>

int kv_digest(const char *set, size_t set_len, const kv_key_t *key, uint8_t out[KV_DIGEST_SIZE])
{
    if (set_len > KV_SET_MAX)
        return -1;
    crypto_generichash_state st;
    uint8_t b = (uint8_t) set_len;
    crypto_generichash_init(&st, NULL, 0, KV_DIGEST_SIZE);
    crypto_generichash_update(&st, &b, 1);
    crypto_generichash_update(&st, (const uint8_t *) set, set_len);
    b = (uint8_t) key->type;
    crypto_generichash_update(&st, &b, 1);
    if (key->type == KV_KEY_INT) {
        uint8_t le[8];
        kv_put64(le, (uint64_t) key->i);
        crypto_generichash_update(&st, le, 8);
    } else if (key->type == KV_KEY_STRING || key->type == KV_KEY_BYTES) {
        if (key->len > KV_KEY_MAX)
            return -1;
        crypto_generichash_update(&st, key->bytes, key->len);
    } else
        return -1;
    crypto_generichash_final(&st, out, KV_DIGEST_SIZE);
    return 0;
}

uint16_t kv_partition(const uint8_t digest[KV_DIGEST_SIZE])
{
    return (uint16_t) ((digest[0] | digest[1] << 8) & 0x0FFF);
}

void kv_digest_hex(const uint8_t digest[KV_DIGEST_SIZE], char out[2 * KV_DIGEST_SIZE + 1])
{
    sodium_bin2hex(out, 2 * KV_DIGEST_SIZE + 1, digest, KV_DIGEST_SIZE);
}

int kv_digest_parse(const char *hex, uint8_t out[KV_DIGEST_SIZE])
{
    size_t n = 0;
    const char *end = NULL;
    if (strlen(hex) != 2 * KV_DIGEST_SIZE)
        return -1;
    if (sodium_hex2bin(out, KV_DIGEST_SIZE, hex, strlen(hex), NULL, &n, &end) != 0 || n != KV_DIGEST_SIZE
        || *end != '\0')
        return -1;
    return 0;
}

void kv_digest_test(bool verbose)
{
    (void) verbose;
    assert(sodium_init() >= 0);
    uint8_t d1[20], d2[20], d3[20], d4[20];
    kv_key_t k = {.type = KV_KEY_STRING, .bytes = (const uint8_t *) "alice", .len = 5};
    assert(kv_digest("users", 5, &k, d1) == 0);
    assert(kv_digest("users", 5, &k, d2) == 0 && memcmp(d1, d2, 20) == 0);
    /* set, key type and key all change the digest; no ambiguity between them */
    assert(kv_digest("user", 4, &k, d2) == 0 && memcmp(d1, d2, 20) != 0);
    kv_key_t kb = k;
    kb.type = KV_KEY_BYTES;
    assert(kv_digest("users", 5, &kb, d3) == 0 && memcmp(d1, d3, 20) != 0);
    kv_key_t ki = {.type = KV_KEY_INT, .i = 42};
    assert(kv_digest("users", 5, &ki, d4) == 0 && memcmp(d1, d4, 20) != 0);
    /* known answers (computed independently with Python's hashlib): the
     * digest is part of the wire format and must never change */
    char hex[41];
    kv_digest_hex(d1, hex);
    assert(strcmp(hex, "5c8f120d14688011e188f63e3608cf4c8fd31038") == 0);
    kv_digest_hex(d4, hex);
    assert(strcmp(hex, "eeac15389f12742168febb94cba6920e2ef4b963") == 0);
    kv_digest_hex(d1, hex);
    uint8_t back[20];
    assert(kv_digest_parse(hex, back) == 0 && memcmp(back, d1, 20) == 0);
    assert(kv_digest_parse("zz", back) == -1);
    assert(kv_digest_parse("0123456789abcdef0123456789abcdef0123456g", back) == -1);
    assert(kv_partition(d1) < KV_PARTITIONS);
    uint8_t all[20];
    memset(all, 0xff, sizeof all);
    assert(kv_partition(all) == 4095);
    char longset[70];
    memset(longset, 's', sizeof longset);
    assert(kv_digest(longset, 64, &k, d2) == -1);
    kv_key_t bad = {.type = 9};
    assert(kv_digest("s", 1, &bad, d2) == -1);
}
