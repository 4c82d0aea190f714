/* stream: the binary record stream of kvrepl dump and load (kvrepl(1),
 * FORMAT):
 *
 *   stream   = preamble info-frame *record-frame end-frame
 *   preamble = "KVREPL" version        8 bytes; version u16 LE, 1
 *   frame    = length type crc payload
 *     length   u32 LE, bytes of payload, at most KR_FRAME_MAX
 *     type     1 byte: 'I' info, 'R' record, 'E' end
 *     crc      u32 LE, zlib crc32 of length, type and payload
 *     payload  one MessagePack map:
 *       info   {"program", "source", "ns", "set"?, "partitions", "tombstones", "time"}
 *       record {"ns", "digest", "set"?, "key"?, "gen", "lut", "void", "bins"}
 *              or {"ns", "digest", "gen", "lut", "del": true}
 *       end    {"records": N, "tombstones": M}
 *
 * The reader trusts nothing: every frame is checked (length against the
 * limit, CRC, MessagePack, fields) before it is returned, and every fault
 * is reported with the byte offset of its frame and the record number. */
#include "kvrepl.h"
#include "kv_mp.h"
#include "kv_util.h"
#include <assert.h>
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static uint32_t s_crc(const uint8_t *hdr5, const void *payload, size_t len)
{
    uLong c = crc32(0L, hdr5, 5);
    return (uint32_t) crc32(c, payload, (uInt) len);
}

/* Write one frame.  0, or -1 with errno. */
static int s_write_frame(FILE *f, int type, const void *payload, size_t len)
{
    if (len > KR_FRAME_MAX) {
        errno = EFBIG;
        return -1;
    }
    uint8_t h[KR_FRAME_HDR];
    kv_put32(h, (uint32_t) len);
    h[4] = (uint8_t) type;
    kv_put32(h + 5, s_crc(h, payload, len));
    if (fwrite(h, 1, sizeof h, f) != sizeof h || (len && fwrite(payload, 1, len, f) != len))
        return -1;
    return 0;
}

/* Write w->sb as a frame of this type and clear it. */
static int s_flush_frame(kr_writer_t *w, int type)
{
    int rc = s_write_frame(w->f, type, w->sb.data, w->sb.size);
    if (rc == 0)
        w->off += KR_FRAME_HDR + w->sb.size;
    msgpack_sbuffer_clear(&w->sb);
    return rc;
}

int kr_writer_begin(kr_writer_t *w, FILE *f, const kr_info_t *info)
{
    memset(w, 0, sizeof *w);
    w->f = f;
    msgpack_sbuffer_init(&w->sb);
    msgpack_packer_init(&w->pk, &w->sb, msgpack_sbuffer_write);
    uint8_t pre[KR_PREAMBLE_SIZE];
    memcpy(pre, KR_STREAM_MAGIC, 6);
    kv_put16(pre + 6, KR_STREAM_VERSION);
    if (fwrite(pre, 1, sizeof pre, f) != sizeof pre)
        return -1;
    w->off = sizeof pre;
    msgpack_packer *pk = &w->pk;
    msgpack_pack_map(pk, 6 + (info->set ? 1 : 0));
    kv_mp_pack_cstr(pk, "program");
    kv_mp_pack_cstr(pk, "kvrepl " KV_VERSION);
    kv_mp_pack_cstr(pk, "source");
    kv_mp_pack_cstr(pk, info->source);
    kv_mp_pack_cstr(pk, "ns");
    kv_mp_pack_cstr(pk, info->ns);
    if (info->set) {
        kv_mp_pack_cstr(pk, "set");
        kv_mp_pack_cstr(pk, info->set);
    }
    kv_mp_pack_cstr(pk, "partitions");
    kv_mp_pack_cstr(pk, info->partitions);
    kv_mp_pack_cstr(pk, "tombstones");
    kv_mp_pack_bool(pk, info->tombstones);
    kv_mp_pack_cstr(pk, "time");
    msgpack_pack_uint64(pk, kv_wall_ms());
    return s_flush_frame(w, KR_FRAME_INFO);
}

int kr_writer_record(kr_writer_t *w, const char *ns, size_t ns_len, const kr_rec_t *rec)
{
    kr_rec_pack(&w->pk, ns, ns_len, rec);
    if (s_flush_frame(w, KR_FRAME_RECORD) != 0)
        return -1;
    if (rec->del)
        w->tombstones++;
    else
        w->records++;
    return 0;
}

int kr_writer_end(kr_writer_t *w)
{
    msgpack_pack_map(&w->pk, 2);
    kv_mp_pack_cstr(&w->pk, "records");
    msgpack_pack_uint64(&w->pk, w->records);
    kv_mp_pack_cstr(&w->pk, "tombstones");
    msgpack_pack_uint64(&w->pk, w->tombstones);
    int rc = s_flush_frame(w, KR_FRAME_END);
    if (fflush(w->f) != 0)
        rc = -1;
    kr_writer_destroy(w);
    return rc;
}

void kr_writer_destroy(kr_writer_t *w)
{
    msgpack_sbuffer_destroy(&w->sb);
    msgpack_sbuffer_init(&w->sb);
}

/* ---- reader ----------------------------------------------------------- */

/* Read up to n bytes; how many were read (fewer at the end of the stream
 * or on a read error, which ferror tells). */
static size_t s_read(kr_reader_t *r, void *buf, size_t n)
{
    size_t got = n ? fread(buf, 1, n, r->f) : 0;
    r->off += got;
    return got;
}

/* "at byte X (record N): " */
static int s_where(const kr_reader_t *r, char *why, size_t whylen)
{
    return snprintf(why, whylen, "at byte %llu (record %llu): ", (unsigned long long) r->frame_off,
                    (unsigned long long) (r->records + r->tombstones + 1));
}

/* A read that came short: a read error, or the stream cut short. */
static int s_short(kr_reader_t *r, const char *inside, size_t want, size_t got, char *why, size_t whylen)
{
    int n = s_where(r, why, whylen);
    n = n < 0 || (size_t) n >= whylen ? 0 : n;
    if (ferror(r->f))
        snprintf(why + n, whylen - (size_t) n, "read error: %s", strerror(errno));
    else
        snprintf(why + n, whylen - (size_t) n, "the stream ends inside %s (%zu of %zu bytes): it is truncated",
                 inside, got, want);
    return -1;
}

/* Read one whole frame at r->off into r->buf and check its length and
 * CRC: 1 with its type, payload and length, 0 at a clean end of the
 * stream (no byte left), -1 with why. */
static int s_read_frame(kr_reader_t *r, int *type, const uint8_t **payload, size_t *len, char *why, size_t whylen)
{
    r->frame_off = r->off;
    if (r->cap < KR_FRAME_HDR) {
        uint8_t *nb = realloc(r->buf, 4096);
        if (!nb)
            return snprintf(why, whylen, "out of memory"), -1;
        r->buf = nb;
        r->cap = 4096;
    }
    size_t got = s_read(r, r->buf, KR_FRAME_HDR);
    if (got == 0 && !ferror(r->f))
        return 0;
    if (got < KR_FRAME_HDR)
        return s_short(r, "a frame header", KR_FRAME_HDR, got, why, whylen);
    uint32_t n = kv_get32(r->buf);
    *type = r->buf[4];
    if (n > KR_FRAME_MAX) {
        int k = s_where(r, why, whylen);
        snprintf(why + k, whylen - (size_t) k, "a frame of %u bytes, over the limit of %u bytes (a damaged length?)", n,
                 KR_FRAME_MAX);
        return -1;
    }
    if (KR_FRAME_HDR + (size_t) n > r->cap) {
        size_t cap = r->cap;
        while (cap < KR_FRAME_HDR + (size_t) n)
            cap *= 2;
        uint8_t *nb = realloc(r->buf, cap);
        if (!nb)
            return snprintf(why, whylen, "out of memory"), -1;
        r->buf = nb;
        r->cap = cap;
    }
    got = s_read(r, r->buf + KR_FRAME_HDR, n);
    if (got < n)
        return s_short(r, "a frame", n, got, why, whylen);
    uint32_t stored = kv_get32(r->buf + 5), computed = s_crc(r->buf, r->buf + KR_FRAME_HDR, n);
    if (stored != computed) {
        int k = s_where(r, why, whylen);
        snprintf(why + k, whylen - (size_t) k, "bad checksum: the frame of %u bytes has CRC-32 %08x, it holds %08x", n,
                 computed, stored);
        return -1;
    }
    *payload = r->buf + KR_FRAME_HDR;
    *len = n;
    return 1;
}

int kr_reader_begin(kr_reader_t *r, FILE *f, char *why, size_t whylen)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    uint8_t pre[KR_PREAMBLE_SIZE];
    size_t got = s_read(r, pre, sizeof pre);
    if (got < sizeof pre) {
        if (ferror(f))
            snprintf(why, whylen, "at byte %zu: read error: %s", got, strerror(errno));
        else if (got == 0)
            snprintf(why, whylen, "the stream is empty (no header)");
        else
            snprintf(why, whylen, "the stream ends inside its %d-byte header, after %zu bytes", KR_PREAMBLE_SIZE, got);
        return -1;
    }
    if (memcmp(pre, KR_STREAM_MAGIC, 6) != 0) {
        snprintf(why, whylen, "at byte 0: not a kvrepl stream (it does not start with \"%s\"; a JSON Lines stream "
                 "needs --format jsonl)", KR_STREAM_MAGIC);
        return -1;
    }
    if (kv_get16(pre + 6) != KR_STREAM_VERSION) {
        snprintf(why, whylen, "at byte 6: stream format version %u is not supported (this kvrepl reads version %d)",
                 kv_get16(pre + 6), KR_STREAM_VERSION);
        return -1;
    }
    int type;
    const uint8_t *p;
    size_t n;
    int rc = s_read_frame(r, &type, &p, &n, why, whylen);
    if (rc == 0)
        snprintf(why, whylen, "at byte %llu: the stream ends after its header, with no info frame: it is truncated",
                 (unsigned long long) r->off);
    if (rc <= 0)
        return -1;
    if (type != KR_FRAME_INFO || !kv_mp_valid(p, n) || kv_mp_type(&(kv_mp_t){p, p + n}) != KV_MP_MAP) {
        snprintf(why, whylen, "at byte %d: the first frame is not a valid info frame", KR_PREAMBLE_SIZE);
        return -1;
    }
    return 0;
}

/* Check the end frame's counts against the frames read, and that nothing
 * follows it.  0 or -1 with why. */
static int s_end(kr_reader_t *r, const uint8_t *p, size_t n, char *why, size_t whylen)
{
    kv_mp_t v;
    int64_t recs = -1, tombs = -1;
    if (!kv_mp_valid(p, n) || kv_body_get(p, n, "records", &v) != 0 || kv_mp_read_int(&v, &recs) != 0
        || kv_body_get(p, n, "tombstones", &v) != 0 || kv_mp_read_int(&v, &tombs) != 0) {
        snprintf(why, whylen, "at byte %llu: the end frame is malformed (it needs \"records\" and \"tombstones\")",
                 (unsigned long long) r->frame_off);
        return -1;
    }
    if ((uint64_t) recs != r->records || (uint64_t) tombs != r->tombstones) {
        snprintf(why, whylen,
                 "at byte %llu: the end frame counts %lld records and %lld tombstones, but the stream holds %llu and "
                 "%llu: frames are missing or were added",
                 (unsigned long long) r->frame_off, (long long) recs, (long long) tombs,
                 (unsigned long long) r->records, (unsigned long long) r->tombstones);
        return -1;
    }
    uint8_t extra;
    if (s_read(r, &extra, 1) != 0) {
        snprintf(why, whylen, "at byte %llu: data after the end frame", (unsigned long long) (r->off - 1));
        return -1;
    }
    r->ended = true;
    return 0;
}

int kr_reader_next(kr_reader_t *r, kr_rec_t *rec, char *why, size_t whylen)
{
    if (r->ended)
        return 0;
    int type;
    const uint8_t *p;
    size_t n;
    int rc = s_read_frame(r, &type, &p, &n, why, whylen);
    if (rc == 0) {
        snprintf(why, whylen, "at byte %llu: the stream ends after record %llu without its end frame: it is truncated",
                 (unsigned long long) r->off, (unsigned long long) (r->records + r->tombstones));
        return -1;
    }
    if (rc < 0)
        return -1;
    if (type == KR_FRAME_END)
        return s_end(r, p, n, why, whylen) == 0 ? 0 : -1;
    int k = s_where(r, why, whylen);
    if (type != KR_FRAME_RECORD) {
        snprintf(why + k, whylen - (size_t) k, "a frame of unknown type 0x%02x", type);
        return -1;
    }
    char inner[256];
    if (kr_rec_parse(rec, p, n, KR_NEED_NS | KR_NEED_VOID, inner, sizeof inner) != 0) {
        snprintf(why + k, whylen - (size_t) k, "bad record: %s", inner);
        return -1;
    }
    if (rec->del)
        r->tombstones++;
    else
        r->records++;
    return 1;
}

void kr_reader_destroy(kr_reader_t *r)
{
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
}

/* ---- self-test --------------------------------------------------------- */

/* Read a whole stream from buf: the records read before it ended or
 * failed in *nrec; the result of the last call (0 a good end, -1). */
static int s_read_all(const uint8_t *buf, size_t len, int *nrec, char *why, size_t whylen)
{
    FILE *f = fmemopen((void *) buf, len ? len : 1, "r");
    assert(f);
    if (!len)
        fgetc(f); /* fmemopen needs a size of 1 or more: read past it */
    kr_reader_t r;
    kr_rec_t rec;
    int rc = kr_reader_begin(&r, f, why, whylen);
    *nrec = 0;
    while (rc == 0 && kr_reader_next(&r, &rec, why, whylen) == 1)
        (*nrec)++;
    if (rc == 0)
        rc = r.ended ? 0 : -1;
    kr_reader_destroy(&r);
    fclose(f);
    return rc;
}

void kr_stream_test(bool verbose)
{
    (void) verbose;
    assert(sodium_init() >= 0);
    char *data = NULL, why[512];
    size_t len = 0;
    FILE *f = open_memstream(&data, &len);
    kr_writer_t w;
    kr_info_t info = {.source = "tcp://127.0.0.1:7700", .ns = "test", .partitions = "0-4095", .tombstones = true};
    assert(kr_writer_begin(&w, f, &info) == 0);
    static const uint8_t bins[] = {0x82, 0xa1, 'n', 0x01, 0xa1, 's', 0xa3, 'a', 'b', 'c'};
    kr_rec_t recs[4];
    for (int i = 0; i < 4; i++) {
        recs[i] = (kr_rec_t){.gen = (uint64_t) i + 1, .lut = 1700000000000ull + (uint64_t) i, .voidt = (uint64_t) i * 7,
                             .bins = bins, .bins_len = sizeof bins, .del = i == 2};
        memset(recs[i].digest, i + 1, KV_DIGEST_SIZE);
        assert(kr_writer_record(&w, "test", 4, &recs[i]) == 0);
    }
    uint64_t before_end = w.off;
    assert(kr_writer_end(&w) == 0);
    fclose(f);
    const uint8_t *s = (const uint8_t *) data;
    assert(len > before_end && memcmp(s, "KVREPL\x01\x00", 8) == 0);

    /* read back: every field, in order, then a clean end */
    f = fmemopen(data, len, "r");
    kr_reader_t r;
    kr_rec_t rec;
    assert(kr_reader_begin(&r, f, why, sizeof why) == 0);
    for (int i = 0; i < 4; i++) {
        assert(kr_reader_next(&r, &rec, why, sizeof why) == 1);
        assert(rec.gen == recs[i].gen && rec.lut == recs[i].lut && rec.del == recs[i].del);
        assert(memcmp(rec.digest, recs[i].digest, KV_DIGEST_SIZE) == 0 && rec.ns_len == 4);
        assert(rec.del || (rec.voidt == recs[i].voidt && rec.bins_len == sizeof bins));
    }
    assert(kr_reader_next(&r, &rec, why, sizeof why) == 0 && r.records == 3 && r.tombstones == 1);
    kr_reader_destroy(&r);
    fclose(f);

    /* cut short anywhere: an error, never a clean end or a crash; past the
     * preamble it names a byte offset */
    int n;
    for (size_t cut = 0; cut < len; cut++) {
        why[0] = '\0';
        assert(s_read_all(s, cut, &n, why, sizeof why) == -1);
        assert(cut < KR_PREAMBLE_SIZE || strstr(why, "at byte ") || strstr(why, "header"));
        assert(strstr(why, "truncated") || strstr(why, "empty") || strstr(why, "header"));
    }
    /* any byte damaged: an error (the CRC, the length limit, the magic or
     * the version), and only the records before the damaged frame come out */
    size_t ends[8], nf = 0; /* where each frame ends: info, 4 records, end */
    for (size_t at = KR_PREAMBLE_SIZE; at < len; at += KR_FRAME_HDR + kv_get32(s + at))
        ends[nf++] = at + KR_FRAME_HDR + kv_get32(s + at);
    assert(nf == 6 && ends[5] == len);
    uint8_t *bad = malloc(len);
    for (size_t at = 0; at < len; at++) {
        memcpy(bad, s, len);
        bad[at] ^= 0x20;
        why[0] = '\0';
        assert(s_read_all(bad, len, &n, why, sizeof why) == -1 && why[0]);
        int whole = 0; /* record frames that end before the damaged byte */
        for (size_t k = 1; k < 5; k++)
            whole += ends[k] <= at;
        assert(n <= whole);
    }
    /* a damaged byte in the third record frame: two records read, and the
     * message names that frame's offset and record 3 */
    size_t third = KR_PREAMBLE_SIZE, fl;
    for (int k = 0; k < 3; k++) { /* skip the info frame and two records */
        fl = KR_FRAME_HDR + kv_get32(s + third);
        third += fl;
    }
    memcpy(bad, s, len);
    bad[third + KR_FRAME_HDR + 3] ^= 0xff;
    assert(s_read_all(bad, len, &n, why, sizeof why) == -1 && n == 2);
    char want[64];
    snprintf(want, sizeof want, "at byte %zu (record 3): bad checksum", third);
    assert(strstr(why, want));
    /* the header: another magic, another version */
    memcpy(bad, s, len);
    bad[7] = 1;
    assert(s_read_all(bad, len, &n, why, sizeof why) == -1 && strstr(why, "version 257 is not supported"));
    assert(s_read_all((const uint8_t *) "{\"ns\":\"test\"}\n", 14, &n, why, sizeof why) == -1
           && strstr(why, "not a kvrepl stream"));
    assert(s_read_all(s, 0, &n, why, sizeof why) == -1 && strstr(why, "empty"));
    free(bad);

    /* well-checksummed frames that are wrong inside */
    static const struct {
        int type;
        const char *hex, *why;
    } frames[] = {
        {'R', "c1", "not a MessagePack map"},
        {'R', "81a36e73", "malformed MessagePack"},
        {'R', "82a26e73a474657374a6646967657374c4140101010101010101010101010101010101010101", "missing field 'gen'"},
        {'X', "80", "unknown type 0x58"},
        {'I', "80", "unknown type 0x49"},
        {'E', "82a77265636f72647303aa746f6d6273746f6e657301", "counts 3 records and 1 tombstones, but the stream holds 0 and 0"},
        {'E', "80", "end frame is malformed"},
    };
    for (size_t i = 0; i < sizeof frames / sizeof frames[0]; i++) {
        char *d2 = NULL;
        size_t l2 = 0;
        uint8_t payload[128];
        size_t pl;
        assert(sodium_hex2bin(payload, sizeof payload, frames[i].hex, strlen(frames[i].hex), NULL, &pl, NULL) == 0);
        FILE *g = open_memstream(&d2, &l2);
        /* the preamble and info frame of the good stream, then this frame */
        size_t head = KR_PREAMBLE_SIZE + KR_FRAME_HDR + kv_get32(s + KR_PREAMBLE_SIZE);
        fwrite(s, 1, head, g);
        assert(s_write_frame(g, frames[i].type, payload, pl) == 0);
        fclose(g);
        why[0] = '\0';
        assert(s_read_all((const uint8_t *) d2, l2, &n, why, sizeof why) == -1 && n == 0);
        assert(strstr(why, frames[i].why));
        free(d2);
    }
    /* a frame longer than the limit, and bytes after the end frame */
    memcpy(data + len - (len - before_end), "\xff\xff\xff\x7f", 4);
    assert(s_read_all(s, len, &n, why, sizeof why) == -1 && strstr(why, "over the limit") && n == 4);
    free(data);
    data = NULL;
    f = open_memstream(&data, &len);
    assert(kr_writer_begin(&w, f, &info) == 0 && kr_writer_end(&w) == 0);
    fputc('x', f);
    fclose(f);
    assert(s_read_all((const uint8_t *) data, len, &n, why, sizeof why) == -1 && strstr(why, "data after the end frame"));
    free(data);
}
