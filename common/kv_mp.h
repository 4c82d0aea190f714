/* kv_mp: a bounds-checked MessagePack cursor over a byte buffer.
 *
 * msgpack-c's unpacker builds a whole object tree and cannot say where a
 * value's bytes are; the server needs both zero-copy access to a value's
 * raw bytes (bins are stored as the client sent them) and validation that
 * never allocates from a count read off the wire.  Writing is done with
 * msgpack-c's packer.  Every read checks the remaining length first; a
 * failed read leaves the cursor where it was and returns -1. */
#ifndef KV_MP_H
#define KV_MP_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_MP_MAX_DEPTH 32
/* Lists and maps nested in a bin value: fewer, so a record wrapped in a
 * reply (body map, records array, record map, bins map) stays within
 * KV_MP_MAX_DEPTH. */
#define KV_VALUE_MAX_DEPTH 24

typedef enum {
    KV_MP_BAD = -1, KV_MP_NIL = 0, KV_MP_BOOL, KV_MP_INT, KV_MP_FLOAT,
    KV_MP_STR, KV_MP_BIN, KV_MP_ARRAY, KV_MP_MAP
} kv_mp_type_t;

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} kv_mp_t;

static inline kv_mp_t kv_mp(const void *buf, size_t len)
{
    kv_mp_t r = {(const uint8_t *) buf, (const uint8_t *) buf + len};
    return r;
}
static inline bool kv_mp_eof(const kv_mp_t *r) { return r->p >= r->end; }

/* Type of the next value (KV_MP_BAD at end of buffer or for ext types). */
kv_mp_type_t kv_mp_type(const kv_mp_t *r);
int kv_mp_read_nil(kv_mp_t *r);
int kv_mp_read_bool(kv_mp_t *r, bool *v);
/* Any integer encoding; unsigned values above INT64_MAX are refused. */
int kv_mp_read_int(kv_mp_t *r, int64_t *v);
int kv_mp_read_float(kv_mp_t *r, double *v);
int kv_mp_read_str(kv_mp_t *r, const char **s, uint32_t *len);
int kv_mp_read_bin(kv_mp_t *r, const uint8_t **b, uint32_t *len);
int kv_mp_read_array(kv_mp_t *r, uint32_t *n);
int kv_mp_read_map(kv_mp_t *r, uint32_t *n);
/* Validate and skip one whole value (nesting at most KV_MP_MAX_DEPTH). */
int kv_mp_skip(kv_mp_t *r);
/* The same for a bin value (nesting at most KV_VALUE_MAX_DEPTH). */
int kv_mp_skip_value(kv_mp_t *r);
/* True if buf holds exactly one valid value. */
bool kv_mp_valid(const void *buf, size_t len);

/* One bin of a record: name and raw MessagePack value, pointing into a
 * buffer owned by the caller. */
typedef struct {
    const char *name;
    uint32_t name_len;
    const uint8_t *val;
    uint32_t val_len;
} kv_bin_t;

/* Parse a bins map (string keys of 1..15 bytes, no duplicates, at most max
 * bins).  Returns 0, or a kv_status_t with a reason in why. */
int kv_bins_parse(const uint8_t *buf, size_t len, kv_bin_t *bins, uint32_t max, uint32_t *n,
                  char *why, size_t whylen);
/* Find a bin by name; index or -1. */
int kv_bins_find(const kv_bin_t *bins, uint32_t n, const char *name, uint32_t name_len);
/* Pack bins as a map into pk. */
void kv_bins_pack(msgpack_packer *pk, const kv_bin_t *bins, uint32_t n);
/* Exact size of that map, and writing it into a buffer of that size (bin
 * names are at most 15 bytes, so each name has a one-byte header). */
size_t kv_bins_size(const kv_bin_t *bins, uint32_t n);
void kv_bins_write(uint8_t *out, const kv_bin_t *bins, uint32_t n);

/* A msgpack_packer writing into a fixed buffer (no allocation). */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} kv_fixbuf_t;
int kv_fixbuf_write(void *data, const char *buf, size_t len);

/* Pack helpers for string keys and values. */
void kv_mp_pack_cstr(msgpack_packer *pk, const char *s);
/* true or false. */
void kv_mp_pack_bool(msgpack_packer *pk, bool v);
void kv_mp_pack_strn(msgpack_packer *pk, const char *s, size_t n);

/* Start a request or reply in sb: room for its header (KV_HDR_SIZE bytes,
 * encoded over them once the body is packed), and pk packing after it. */
void kv_mp_begin_message(msgpack_sbuffer *sb, msgpack_packer *pk);

void kv_mp_test(bool verbose);

#endif
