/* disk: the file storage engine (log-structured write blocks, index in
 * memory, group commit, defragmentation, tombstones, recovery). */
#include "disk.h"
#include "kv_digest.h"
#include "kv_err.h"
#include "kv_mp.h"
#include "kv_util.h"
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define FILE_HDR 4096u
#define BLOCK_HDR 32u
#define REC_HDR 16u
#define REC_MAGIC 0x3152564bu /* "KVR1" */
#define FILE_VERSION 1u
#define SEQ_HW_OFF 64u /* file header: u64 seq high-water, u32 crc32 of it */
#define SCAN_PAGE_BYTES (1u << 20)
#define NONE UINT32_MAX

static const char s_file_magic[8] = "KVSTORE";
static const char s_block_magic[8] = "KVBLOCK";

/* ---- index ------------------------------------------------------------ */

enum { E_FREE, E_LIVE, E_TOMB, E_GONE };

/* One primary-index entry: 44 bytes.  E_LIVE and E_TOMB entries point at
 * a record whose bytes count as live in its block; an E_GONE entry (an
 * expired record) points at one whose bytes no longer do.  Tombstones and
 * gone entries stay until no older copy can remain in the file. */
typedef struct {
    uint8_t digest[KV_DIGEST_SIZE];
    uint32_t gen;        /* on a free entry: the next free handle */
    uint32_t void_time;
    uint32_t lut_lo;
    uint16_t lut_hi;
    uint8_t state;
    uint8_t pad;
    uint32_t loc_lo, loc_hi; /* block:25 | offset/16:19 | length/16:20 */
} ient_t;
_Static_assert(sizeof(ient_t) == 44, "index entry should stay 44 bytes");

#define CHUNK_BITS 16
#define CHUNK_SIZE (1u << CHUNK_BITS)

typedef struct {
    uint32_t *slots; /* entry handles; 0 = empty */
    uint16_t *tags;  /* low 16 bits of each slot's hash (as store.c) */
    uint32_t cap, count;
} dpart_t;

/* B_PENDING: defragmented, waiting until the copies are flushed;
 * B_ZEROED: header zeroed, waiting until that is flushed. */
enum { B_FREE, B_OPEN, B_USED, B_PENDING, B_ZEROED };

typedef struct {
    uint64_t seq;
    uint64_t free_after; /* B_PENDING: appended bytes that must be flushed first;
                            B_ZEROED: the flush that makes it free */
    uint32_t live;       /* bytes of live records */
    uint32_t used;       /* bytes written, from the block's start */
    uint8_t state;
    uint8_t queued;
} block_t;

struct disk {
    kv_ns_t *ns;
    int fd;
    char path[1100];
    uint32_t wb;          /* write-block size */
    uint32_t nblocks;     /* the disk limit, in blocks */
    uint32_t file_blocks; /* blocks the file has room for now */
    uint32_t nfree;
    uint32_t nfreeing;    /* blocks B_PENDING or B_ZEROED */
    block_t *blocks;
    uint64_t next_seq;
    uint64_t seq_hw;      /* seqs below it may be on disk: the file header says so */
    /* the open block */
    uint32_t cur;
    uint32_t cur_off, flushed_off;
    uint8_t *wbuf;
    uint64_t appended, synced;
    uint64_t last_flush_ms;
    bool sync_due;        /* a block filled: flush at the next tick */
    uint64_t defrag_retry_ms; /* after a failed defragmentation, not before */
    /* the flusher thread runs fdatasync off the request loop; one flush at
     * a time, numbered; the loop learns of its end through efd */
    pthread_t flusher;
    bool flusher_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int efd;
    uint64_t f_req, f_done; /* under mu */
    int f_err;              /* under mu: errno of flush f_done, or 0 */
    uint64_t f_us;          /* under mu: its duration */
    bool f_stop;            /* under mu */
    uint64_t handled;       /* the last finished flush the loop has seen */
    uint64_t inflight_upto; /* appended bytes the running flush covers */
    int failed;             /* errno of a failed flush: writes stop */
    /* index */
    dpart_t parts[KV_PARTITIONS];
    ient_t **chunks;
    uint32_t nchunks, next_handle, free_handle;
    /* buffers */
    uint8_t *rbuf;  /* one record read */
    uint8_t *dbuf;  /* one block read (defrag, start-up) */
    const uint8_t *map; /* the file, mapped read-only up to the disk limit */
    size_t map_len;
    uint8_t *sbuf;  /* a scan page */
    uint32_t sbuf_cap;
    kv_rec_t *hold; /* the last record written, readable until the next */
    /* defrag queue (ring of block ids) */
    uint32_t *queue;
    uint32_t qhead, qlen;
    /* stats */
    uint64_t write_bytes, blocks_written, defrag_blocks, defrag_records, defrag_bytes;
    uint64_t flushes, flush_total_us, flush_max_us, flush_last_us, read_errors;
};

static inline uint32_t s_pad16(uint32_t n) { return (n + 15) & ~15u; }

static inline ient_t *s_ent(const disk_t *d, uint32_t h)
{
    h--;
    return &d->chunks[h >> CHUNK_BITS][h & (CHUNK_SIZE - 1)];
}

static inline uint64_t s_loc(const ient_t *e) { return (uint64_t) e->loc_hi << 32 | e->loc_lo; }
static inline uint32_t s_loc_block(uint64_t l) { return (uint32_t) (l >> 39); }
static inline uint32_t s_loc_off(uint64_t l) { return (uint32_t) ((l >> 20) & 0x7ffff) << 4; }
static inline uint32_t s_loc_len(uint64_t l) { return (uint32_t) (l & 0xfffff) << 4; }

static inline void s_set_loc(ient_t *e, uint32_t block, uint32_t off, uint32_t padded)
{
    uint64_t l = (uint64_t) block << 39 | (uint64_t) (off >> 4) << 20 | (padded >> 4);
    e->loc_lo = (uint32_t) l;
    e->loc_hi = (uint32_t) (l >> 32);
}

static inline uint64_t s_lut(const ient_t *e) { return (uint64_t) e->lut_hi << 32 | e->lut_lo; }

static inline void s_set_meta(ient_t *e, const kv_rec_t *r)
{
    e->gen = r->gen;
    e->void_time = r->void_time;
    e->lut_lo = (uint32_t) r->lut;
    e->lut_hi = (uint16_t) (r->lut >> 32);
}

static inline bool s_expired(uint32_t void_time, uint32_t now)
{
    return void_time != 0 && void_time < now; /* as store.c */
}

/* Slot of digest (hash h), or the empty slot where it would go; an entry
 * is read only when its slot's tag matches. */
static uint32_t s_find_slot(const dpart_t *p, const disk_t *d, const uint8_t *digest, uint32_t h)
{
    uint32_t mask = p->cap - 1, i = h & mask;
    uint16_t tag = (uint16_t) h;
    while (p->slots[i] && (p->tags[i] != tag || memcmp(s_ent(d, p->slots[i])->digest, digest, KV_DIGEST_SIZE) != 0))
        i = (i + 1) & mask;
    return i;
}

/* Handle of digest's entry, or 0. */
static uint32_t s_lookup(const disk_t *d, const uint8_t *digest)
{
    const dpart_t *p = &d->parts[kv_partition(digest)];
    return p->cap ? p->slots[s_find_slot(p, d, digest, store_hash(digest))] : 0;
}

static int s_grow(disk_t *d, dpart_t *p)
{
    uint32_t ncap = p->cap ? p->cap * 2 : 8;
    uint32_t *slots = calloc(ncap, sizeof *slots);
    uint16_t *tags = malloc(ncap * sizeof *tags);
    if (!slots || !tags) {
        free(slots);
        free(tags);
        return -1;
    }
    dpart_t old = *p;
    p->slots = slots;
    p->tags = tags;
    p->cap = ncap;
    for (uint32_t i = 0; i < old.cap; i++)
        if (old.slots[i]) {
            const uint8_t *dg = s_ent(d, old.slots[i])->digest;
            uint32_t h = store_hash(dg), j = s_find_slot(p, d, dg, h);
            p->slots[j] = old.slots[i];
            p->tags[j] = (uint16_t) h;
        }
    free(old.slots);
    free(old.tags);
    d->ns->memory_used += (uint64_t) (ncap - old.cap) * (sizeof(uint32_t) + sizeof(uint16_t));
    return 0;
}

static uint32_t s_alloc_entry(disk_t *d)
{
    if (d->free_handle) {
        uint32_t h = d->free_handle;
        d->free_handle = s_ent(d, h)->gen;
        return h;
    }
    if (d->next_handle >> CHUNK_BITS >= d->nchunks) {
        ient_t **c = realloc(d->chunks, (d->nchunks + 1) * sizeof *c);
        if (!c)
            return 0;
        d->chunks = c;
        if (!(c[d->nchunks] = malloc(CHUNK_SIZE * sizeof(ient_t))))
            return 0;
        d->nchunks++;
    }
    return ++d->next_handle;
}

/* New entry for digest (which must not have one); 0 if out of memory. */
static uint32_t s_insert(disk_t *d, const uint8_t *digest)
{
    dpart_t *p = &d->parts[kv_partition(digest)];
    if ((p->count + 1) * 4 > p->cap * 3 && s_grow(d, p) != 0)
        return 0;
    uint32_t h = s_alloc_entry(d);
    if (!h)
        return 0;
    ient_t *e = s_ent(d, h);
    memset(e, 0, sizeof *e);
    memcpy(e->digest, digest, KV_DIGEST_SIZE);
    uint32_t hash = store_hash(digest), i = s_find_slot(p, d, digest, hash);
    p->slots[i] = h;
    p->tags[i] = (uint16_t) hash;
    p->count++;
    d->ns->memory_used += sizeof(ient_t);
    return h;
}

/* Remove digest's entry (backward-shift deletion, as store.c). */
static void s_erase(disk_t *d, const uint8_t *digest)
{
    dpart_t *p = &d->parts[kv_partition(digest)];
    uint32_t mask = p->cap - 1, i = s_find_slot(p, d, digest, store_hash(digest)), j = i;
    uint32_t h = p->slots[i];
    if (!h)
        return;
    ient_t *e = s_ent(d, h);
    e->state = E_FREE;
    e->gen = d->free_handle;
    d->free_handle = h;
    p->slots[i] = 0;
    p->count--;
    d->ns->memory_used -= sizeof(ient_t);
    for (;;) {
        j = (j + 1) & mask;
        if (!p->slots[j])
            break;
        uint32_t home = (p->cap <= 65536 ? p->tags[j] : store_hash(s_ent(d, p->slots[j])->digest)) & mask;
        if (store_shift_back(i, j, home)) {
            p->slots[i] = p->slots[j];
            p->tags[i] = p->tags[j];
            p->slots[j] = 0;
            i = j;
        }
    }
}

/* ---- blocks ----------------------------------------------------------- */

static inline uint64_t s_block_pos(const disk_t *d, uint32_t b) { return FILE_HDR + (uint64_t) b * d->wb; }

static uint32_t s_crc(uint32_t seq_lo, const uint8_t *image, uint32_t len)
{
    uint8_t s[4];
    kv_put32(s, seq_lo);
    uLong c = crc32(0L, s, 4);
    return (uint32_t) crc32(c, image, len);
}

static int s_pwrite_all(int fd, const void *buf, size_t n, uint64_t pos)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t) pos);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t) w;
        pos += (uint64_t) w;
    }
    return 0;
}

/* Bytes read (short at the end of the file), or -1. */
static ssize_t s_pread_all(int fd, void *buf, size_t n, uint64_t pos)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (uint8_t *) buf + got, n - got, (off_t) (pos + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t) r;
    }
    return (ssize_t) got;
}

static void s_block_header(uint8_t *h, uint64_t seq, uint32_t wb)
{
    memset(h, 0, BLOCK_HDR);
    memcpy(h, s_block_magic, 8);
    kv_put64(h + 8, seq);
    kv_put32(h + 16, wb);
    kv_put32(h + 28, (uint32_t) crc32(0L, h, 28));
}

static bool s_block_header_ok(const uint8_t *h, uint32_t wb, uint64_t *seq)
{
    if (memcmp(h, s_block_magic, 8) != 0 || kv_get32(h + 28) != (uint32_t) crc32(0L, h, 28) || kv_get32(h + 16) != wb)
        return false;
    *seq = kv_get64(h + 8);
    return true;
}

static bool s_below_lwm(const disk_t *d, const block_t *b)
{
    return (uint64_t) b->live * 100 < (uint64_t) d->ns->cfg.defrag_lwm * d->wb;
}

static void s_maybe_queue(disk_t *d, uint32_t b)
{
    block_t *bl = &d->blocks[b];
    if (bl->state == B_USED && !bl->queued && s_below_lwm(d, bl)) {
        bl->queued = 1;
        d->queue[(d->qhead + d->qlen++) % d->nblocks] = b;
    }
}

static void s_dec_live(disk_t *d, uint64_t loc)
{
    uint32_t b = s_loc_block(loc);
    d->blocks[b].live -= s_loc_len(loc);
    s_maybe_queue(d, b);
}

/* Write the open block's unwritten bytes to the file. */
static int s_write_out(disk_t *d)
{
    if (d->cur == NONE || d->flushed_off == d->cur_off)
        return 0;
    if (s_pwrite_all(d->fd, d->wbuf + d->flushed_off, d->cur_off - d->flushed_off,
                     s_block_pos(d, d->cur) + d->flushed_off) != 0)
        return -1;
    d->flushed_off = d->cur_off;
    return 0;
}

static int s_seal(disk_t *d)
{
    if (d->cur == NONE)
        return 0;
    if (s_write_out(d) != 0)
        return -1;
    block_t *b = &d->blocks[d->cur];
    b->state = B_USED;
    b->used = d->cur_off;
    d->blocks_written++;
    d->sync_due = true;
    uint32_t id = d->cur;
    d->cur = NONE;
    s_maybe_queue(d, id);
    return 0;
}

static int s_raise_seq_hw(disk_t *d);

/* Open a free block for writing.  The file grows a block at a time (with
 * posix_fallocate, so a full file system shows here and not in a later
 * write).  A user write (keep_spare) also needs one more free block in
 * the file after it, so that when the file system is full, deletes and
 * defragmentation still have a block to write in. */
static int s_open_block(disk_t *d, bool keep_spare)
{
    uint32_t need = keep_spare ? 2 : 1, first = NONE, n = 0;
    for (uint32_t b = 0; b < d->file_blocks; b++)
        if (d->blocks[b].state == B_FREE) {
            if (first == NONE)
                first = b;
            n++;
        }
    int rc = 0;
    while (n < need && d->file_blocks < d->nblocks) {
        if ((rc = posix_fallocate(d->fd, (off_t) s_block_pos(d, d->file_blocks), (off_t) d->wb)) != 0)
            break;
        if (first == NONE)
            first = d->file_blocks;
        d->file_blocks++;
        n++;
    }
    if (n < need) {
        if (rc)
            snprintf(d->ns->why, sizeof d->ns->why, "namespace '%s' is full: cannot grow %s: %s%s", d->ns->cfg.name,
                     d->path, strerror(rc), keep_spare && n ? " (its last free block is kept for deletes)" : "");
        else
            snprintf(d->ns->why, sizeof d->ns->why,
                     "namespace '%s' is full: every write block of its disk limit is used", d->ns->cfg.name);
        return -1;
    }
    uint32_t b = first;
    if (d->next_seq >= d->seq_hw && s_raise_seq_hw(d) != 0)
        return -1;
    if ((rc = posix_fallocate(d->fd, (off_t) s_block_pos(d, b), (off_t) d->wb)) != 0) { /* a cut file */
        snprintf(d->ns->why, sizeof d->ns->why, "namespace '%s' is full: cannot grow %s: %s", d->ns->cfg.name,
                 d->path, strerror(rc));
        return -1;
    }
    block_t *bl = &d->blocks[b];
    memset(bl, 0, sizeof *bl);
    bl->state = B_OPEN;
    bl->seq = d->next_seq++;
    d->nfree--;
    d->cur = b;
    s_block_header(d->wbuf, bl->seq, d->wb);
    d->cur_off = BLOCK_HDR;
    d->flushed_off = 0;
    return 0;
}

/* Free blocks a write may leave behind it: user writes keep a reserve for
 * deletes and defragmentation; deletes and defragmentation keep none. */
static uint32_t s_reserve(const disk_t *d) { return d->nblocks / 20 > 2 ? d->nblocks / 20 : 2; }

/* Room for `bytes` more in the open block, or a free block beyond the
 * reserve.  Blocks waiting for a flush before they are freed are freed
 * first if that is what it takes. */
static int s_room(disk_t *d, uint32_t bytes, uint32_t reserve)
{
    if (d->cur != NONE && d->cur_off + bytes <= d->wb)
        return 0;
    if (d->nfree < reserve + 1 && d->nfreeing) {
        char why[1300];
        if (disk_sync(d, why, sizeof why) != 0)
            kv_warn("namespace '%s': %s", d->ns->cfg.name, why);
    }
    if (d->nfree < reserve + 1) {
        uint64_t used = (uint64_t) (d->nblocks - d->nfree) * d->wb;
        snprintf(d->ns->why, sizeof d->ns->why, "namespace '%s' is at its disk limit (%llu of %llu bytes used)",
                 d->ns->cfg.name, (unsigned long long) used, (unsigned long long) d->ns->cfg.disk_limit);
        return -1;
    }
    return 0;
}

/* Append a record image (header and data) to the open block, opening one
 * if needed (for a user write, keeping a spare; see s_open_block).  The
 * caller has checked the room.  Sets the record's place. */
static int s_append(disk_t *d, const kv_rec_t *img, bool user, uint32_t *block, uint32_t *off, uint32_t *padded)
{
    uint32_t len = (uint32_t) sizeof(kv_rec_t) + rec_data_len(img), total = REC_HDR + len, p = s_pad16(total);
    if (d->cur != NONE && d->cur_off + p > d->wb && s_seal(d) != 0)
        goto io_error;
    if (d->cur == NONE && s_open_block(d, user) != 0)
        return -1;
    uint8_t *h = d->wbuf + d->cur_off;
    uint32_t seq_lo = (uint32_t) d->blocks[d->cur].seq;
    memcpy(h + REC_HDR, img, len);
    memset(h + total, 0, p - total);
    kv_put32(h, REC_MAGIC);
    kv_put32(h + 4, total);
    kv_put32(h + 8, s_crc(seq_lo, h + REC_HDR, len));
    kv_put32(h + 12, seq_lo);
    *block = d->cur;
    *off = d->cur_off;
    *padded = p;
    d->cur_off += p;
    d->blocks[d->cur].live += p;
    d->appended += p;
    return 0;
io_error:
    d->failed = errno;
    d->ns->why_code = KV_ERR_SERVER;
    snprintf(d->ns->why, sizeof d->ns->why, "namespace '%s': cannot write %s: %s; writes to it stop",
             d->ns->cfg.name, d->path, strerror(errno));
    return -1;
}

/* Is there a whole record of block seq_lo at buf+off (lim bytes in the
 * buffer), undamaged if crc (else its header only is checked)?  Its
 * length (without padding) in *len. */
static bool s_valid_at(const uint8_t *buf, uint32_t lim, uint32_t off, uint32_t seq_lo, uint32_t *len, bool crc)
{
    if (off + REC_HDR + sizeof(kv_rec_t) > lim)
        return false;
    const uint8_t *h = buf + off;
    if (kv_get32(h) != REC_MAGIC || kv_get32(h + 12) != seq_lo)
        return false;
    uint32_t total = kv_get32(h + 4);
    if (total < REC_HDR + sizeof(kv_rec_t) || total > lim - off)
        return false;
    kv_rec_t r;
    memcpy(&r, h + REC_HDR, sizeof r);
    if ((uint64_t) r.set_len + r.key_len + r.bins_len != total - REC_HDR - sizeof(kv_rec_t))
        return false;
    if (crc && kv_get32(h + 8) != s_crc(seq_lo, h + REC_HDR, total - REC_HDR))
        return false;
    *len = total;
    return true;
}

/* Damage met while walking a block: offsets and the records it held. */
typedef struct {
    uint32_t from, to, records;
} damage_t;

/* Next whole record of a block at or after *off: its offset (and *len),
 * or NONE at the end.  Damage on the way (bytes that are neither records
 * nor zeros, or a torn record at the end) is put in *dmg (to == 0 if
 * none). */
static uint32_t s_next_record(const uint8_t *buf, uint32_t lim, uint32_t *off, uint32_t seq_lo, uint32_t *len,
                              damage_t *dmg, bool crc)
{
    dmg->to = 0;
    uint32_t o = *off;
    if (o + REC_HDR > lim)
        return NONE;
    if (s_valid_at(buf, lim, o, seq_lo, len, crc)) {
        *off = o + s_pad16(*len);
        return o;
    }
    /* resynchronise: the next whole record of this block after o */
    uint32_t heads = 0;
    for (uint32_t n = o; n + REC_HDR <= lim; n += 16) {
        const uint8_t *h = buf + n;
        if (kv_get32(h) != REC_MAGIC || kv_get32(h + 12) != seq_lo)
            continue;
        if (n > o && s_valid_at(buf, lim, n, seq_lo, len, crc)) {
            bool zero = true;
            for (uint32_t k = o; k < n && zero; k++)
                zero = buf[k] == 0;
            if (!zero)
                *dmg = (damage_t){o, n, heads ? heads : 1};
            *off = n + s_pad16(*len);
            return n;
        }
        heads++;
    }
    /* nothing whole after o: the end of the block's data, torn if a
     * record of this block starts at o */
    if (heads && kv_get32(buf + o) == REC_MAGIC && kv_get32(buf + o + 12) == seq_lo) {
        uint32_t claimed = kv_get32(buf + o + 4), end = lim;
        if (claimed >= REC_HDR && claimed <= lim - o)
            end = o + s_pad16(claimed);
        uint32_t last = o;
        for (uint32_t n = o + 16; n + REC_HDR <= lim; n += 16)
            if (kv_get32(buf + n) == REC_MAGIC && kv_get32(buf + n + 12) == seq_lo)
                last = n;
        if (last > o) /* several torn records: up to the end of the last */
            end = lim - last >= REC_HDR && kv_get32(buf + last + 4) <= lim - last
                      ? last + s_pad16(kv_get32(buf + last + 4) < REC_HDR ? REC_HDR : kv_get32(buf + last + 4))
                      : lim;
        if (end > lim)
            end = lim;
        *dmg = (damage_t){o, end, heads};
        *off = end;
    }
    return NONE;
}

/* ---- reading ---------------------------------------------------------- */

/* Read the record at loc into buf (room for the block's largest record
 * plus header).  Returns the image, or NULL (counted, reported) if it
 * fails its checksum or cannot be read. */
static kv_rec_t *s_read(disk_t *d, uint64_t loc, uint8_t *buf)
{
    uint32_t b = s_loc_block(loc), off = s_loc_off(loc), plen = s_loc_len(loc), len;
    /* a record outside the open block is in the file (written when its
     * block was sealed), so in the page cache the mapping shares */
    memcpy(buf, b == d->cur ? d->wbuf + off : d->map + s_block_pos(d, b) + off, plen);
    if (!s_valid_at(buf, plen, 0, (uint32_t) d->blocks[b].seq, &len, true))
        goto bad;
    return (kv_rec_t *) (buf + REC_HDR);
bad:
    d->read_errors++;
    kv_warn("namespace '%s': the record at block %u offset %u of %s cannot be read or fails its checksum",
            d->ns->cfg.name, b, off, d->path);
    return NULL;
}

kv_rec_t *disk_get(disk_t *d, const uint8_t *digest, uint32_t now)
{
    d->ns->read_error = false;
    uint32_t h = s_lookup(d, digest);
    if (!h)
        return NULL;
    ient_t *e = s_ent(d, h);
    if (e->state != E_LIVE || s_expired(e->void_time, now))
        return NULL;
    kv_rec_t *r = s_read(d, s_loc(e), d->rbuf);
    if (r && memcmp(r->digest, digest, KV_DIGEST_SIZE) != 0) {
        d->read_errors++;
        kv_warn("namespace '%s': the index points at another record's copy (block %u); reported as damaged",
                d->ns->cfg.name, s_loc_block(s_loc(e)));
        r = NULL;
    }
    if (!r) {
        d->ns->read_error = true;
        snprintf(d->ns->why, sizeof d->ns->why,
                 "namespace '%s': the stored record is damaged (it fails its checksum; see the node's log)",
                 d->ns->cfg.name);
    }
    return r;
}

static int s_cmp_handle(const void *a, const void *b, void *arg)
{
    const disk_t *d = arg;
    return memcmp(s_ent(d, *(const uint32_t *) a)->digest, s_ent(d, *(const uint32_t *) b)->digest,
                  KV_DIGEST_SIZE);
}

uint32_t disk_scan_partition(disk_t *d, uint32_t pid, const uint8_t *after, uint32_t now, bool tombs,
                             kv_rec_t **out, uint32_t max, bool *more)
{
    dpart_t *p = &d->parts[pid];
    *more = false;
    if (!p->count || !max)
        return 0;
    uint32_t *all = malloc(p->count * sizeof *all), n = 0;
    if (!all)
        return 0;
    for (uint32_t i = 0; i < p->cap; i++) {
        uint32_t h = p->slots[i];
        if (!h)
            continue;
        const ient_t *e = s_ent(d, h);
        if (((e->state == E_LIVE && !s_expired(e->void_time, now)) || (tombs && e->state == E_TOMB))
            && (!after || memcmp(e->digest, after, KV_DIGEST_SIZE) > 0))
            all[n++] = h;
    }
    qsort_r(all, n, sizeof *all, s_cmp_handle, d);
    uint32_t got = 0, bytes = 0, i = 0;
    for (; i < n && got < max; i++) {
        const ient_t *e = s_ent(d, all[i]);
        uint32_t plen = s_loc_len(s_loc(e));
        if (got > 0 && bytes + plen > d->sbuf_cap)
            break; /* the page is full */
        if (got == 0 && plen > d->sbuf_cap) {
            uint32_t cap = plen > SCAN_PAGE_BYTES ? plen : SCAN_PAGE_BYTES;
            uint8_t *nb = realloc(d->sbuf, cap);
            if (!nb)
                break;
            d->sbuf = nb;
            d->sbuf_cap = cap;
        }
        kv_rec_t *r = s_read(d, s_loc(e), d->sbuf + bytes);
        if (r) {
            out[got++] = r;
            bytes += plen;
        }
    }
    *more = i < n;
    free(all);
    return got;
}

/* ---- writing ---------------------------------------------------------- */

/* Writes stop after a failed write or flush: what is on the device is
 * then unknown, and acknowledging more would be a lie. */
static int s_check_failed(disk_t *d)
{
    d->ns->why_code = KV_ERR_NS_FULL; /* what a failure below is, unless said otherwise */
    if (!d->failed)
        return 0;
    d->ns->why_code = KV_ERR_SERVER;
    snprintf(d->ns->why, sizeof d->ns->why,
             "namespace '%s': writes stopped after a failed write or flush of %s: %s", d->ns->cfg.name, d->path,
             strerror(d->failed));
    return -1;
}

int disk_put(disk_t *d, kv_rec_t *rec)
{
    if (s_check_failed(d) != 0)
        return -1;
    uint32_t h = s_lookup(d, rec->digest);
    kv_ns_t *ns = d->ns;
    if (!h && ns->memory_used + sizeof(ient_t) + 8 > ns->cfg.memory_limit) {
        snprintf(ns->why, sizeof ns->why, "namespace '%s' is at its memory limit (index: %llu of %llu bytes)",
                 ns->cfg.name, (unsigned long long) ns->memory_used, (unsigned long long) ns->cfg.memory_limit);
        return -1;
    }
    uint32_t need = s_pad16(REC_HDR + (uint32_t) sizeof(kv_rec_t) + rec_data_len(rec));
    uint32_t b, off, plen;
    if (s_room(d, need, s_reserve(d)) != 0 || s_append(d, rec, true, &b, &off, &plen) != 0)
        return -1;
    if (!h && !(h = s_insert(d, rec->digest))) {
        /* the record is in the block but nothing points at it: dead */
        d->blocks[b].live -= plen;
        snprintf(ns->why, sizeof ns->why, "namespace '%s': out of memory for the index", ns->cfg.name);
        return -1;
    }
    ient_t *e = s_ent(d, h);
    if (e->state == E_LIVE || e->state == E_TOMB)
        s_dec_live(d, s_loc(e));
    if (e->state != E_LIVE)
        ns->records++;
    if (e->state == E_TOMB || e->state == E_GONE)
        ns->tombstones--;
    e->state = E_LIVE;
    s_set_meta(e, rec);
    s_set_loc(e, b, off, plen);
    d->write_bytes += plen;
    free(d->hold);
    d->hold = rec;
    return 0;
}

/* Write a tombstone for entry e (gen, lut) and point e at it. */
static int s_write_tombstone(disk_t *d, ient_t *e, uint32_t gen, uint64_t lut, uint32_t reserve, uint64_t *wrote)
{
    kv_rec_t t;
    memset(&t, 0, sizeof t);
    memcpy(t.digest, e->digest, KV_DIGEST_SIZE);
    t.gen = gen;
    t.lut = lut;
    uint32_t b, off, plen;
    if (s_room(d, s_pad16(REC_HDR + sizeof t), reserve) != 0 || s_append(d, &t, false, &b, &off, &plen) != 0)
        return -1;
    if (e->state == E_LIVE || e->state == E_TOMB)
        s_dec_live(d, s_loc(e));
    e->state = E_TOMB;
    s_set_meta(e, &t);
    s_set_loc(e, b, off, plen);
    *wrote += plen;
    return 0;
}

int disk_remove(disk_t *d, const uint8_t *digest, uint32_t gen, uint64_t lut)
{
    if (s_check_failed(d) != 0)
        return -1;
    uint32_t h = s_lookup(d, digest);
    if (!h || s_ent(d, h)->state != E_LIVE)
        return 0;
    /* a delete keeps the last free block for defragmentation, which is
     * what turns deletes into free space */
    if (s_write_tombstone(d, s_ent(d, h), gen, lut, 1, &d->write_bytes) != 0)
        return -1;
    d->ns->records--;
    d->ns->tombstones++;
    return 1;
}

int disk_tomb(const disk_t *d, const uint8_t *digest, uint32_t *gen, uint64_t *lut)
{
    uint32_t h = s_lookup(d, digest);
    if (!h || s_ent(d, h)->state != E_TOMB)
        return 0;
    *gen = s_ent(d, h)->gen;
    *lut = s_lut(s_ent(d, h));
    return 1;
}

/* A live entry's record stops counting as live: the entry is gone. */
static void s_make_gone(disk_t *d, ient_t *e)
{
    s_dec_live(d, s_loc(e));
    e->state = E_GONE;
    d->ns->records--;
    d->ns->tombstones++;
}

/* Forget a live record: its bytes stop counting and its entry goes, with
 * no gone entry (defragmentation would write that forward as a tombstone,
 * which could later delete a live copy elsewhere).  An older copy left in
 * the file comes back at a restart. */
int disk_drop(disk_t *d, const uint8_t *digest)
{
    uint32_t h = s_lookup(d, digest);
    if (!h || s_ent(d, h)->state != E_LIVE)
        return 0;
    s_dec_live(d, s_loc(s_ent(d, h)));
    d->ns->records--;
    s_erase(d, digest);
    return 1;
}

uint32_t disk_drop_partition(disk_t *d, uint32_t pid)
{
    dpart_t *p = &d->parts[pid];
    uint32_t n = 0, k = 0;
    if (!p->count)
        return 0;
    /* erasing moves entries (backward shift): collect first */
    uint8_t (*dg)[KV_DIGEST_SIZE] = malloc(p->count * sizeof *dg);
    if (!dg)
        return 0;
    for (uint32_t i = 0; i < p->cap; i++)
        if (p->slots[i] && s_ent(d, p->slots[i])->state == E_LIVE)
            memcpy(dg[k++], s_ent(d, p->slots[i])->digest, KV_DIGEST_SIZE);
    for (uint32_t i = 0; i < k; i++)
        n += (uint32_t) disk_drop(d, dg[i]);
    free(dg);
    return n;
}

uint32_t disk_sweep(disk_t *d, uint32_t now, uint32_t parts)
{
    uint32_t n = 0;
    kv_ns_t *ns = d->ns;
    for (uint32_t k = 0; k < parts; k++) {
        dpart_t *p = &d->parts[ns->sweep_pid];
        ns->sweep_pid = (ns->sweep_pid + 1) % KV_PARTITIONS;
        for (uint32_t i = 0; i < p->cap; i++) {
            if (!p->slots[i])
                continue;
            ient_t *e = s_ent(d, p->slots[i]);
            if (e->state == E_LIVE && s_expired(e->void_time, now)) {
                s_make_gone(d, e);
                n++;
            }
        }
    }
    ns->expired += n;
    return n;
}

uint64_t disk_appended(const disk_t *d) { return d->appended; }

static void *s_flusher(void *arg)
{
    disk_t *d = arg;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (d->f_req == d->f_done && !d->f_stop)
            pthread_cond_wait(&d->cv, &d->mu);
        if (d->f_req == d->f_done)
            break; /* stopping, nothing asked */
        uint64_t id = d->f_req;
        pthread_mutex_unlock(&d->mu);
        uint64_t t0 = kv_mono_us();
        int err = fdatasync(d->fd) == 0 ? 0 : errno;
        uint64_t us = kv_mono_us() - t0;
        pthread_mutex_lock(&d->mu);
        d->f_done = id;
        d->f_err = err;
        d->f_us = us;
        pthread_cond_broadcast(&d->cv);
        uint64_t one = 1;
        if (write(d->efd, &one, sizeof one) < 0) { /* the counter cannot overflow in practice */
        }
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

static bool s_flushing(const disk_t *d) { return d->f_req != d->handled; }

/* Write out the open block and start a flush of everything appended, if
 * none is running. */
static void s_kick(disk_t *d)
{
    if (s_flushing(d) || d->failed)
        return;
    if (s_write_out(d) != 0) {
        d->failed = errno;
        kv_warn("namespace '%s': cannot write %s: %s; writes to it stop", d->ns->cfg.name, d->path,
                strerror(errno));
        return;
    }
    d->inflight_upto = d->appended;
    d->sync_due = false; /* this flush covers the blocks filled so far */
    pthread_mutex_lock(&d->mu);
    d->f_req++;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* Take in a finished flush: what it made durable, and the blocks it lets
 * go one step further towards free. */
static void s_complete(disk_t *d)
{
    pthread_mutex_lock(&d->mu);
    uint64_t done = d->f_done, us = d->f_us;
    int err = d->f_err;
    pthread_mutex_unlock(&d->mu);
    if (done == d->handled)
        return;
    d->handled = done;
    if (err) {
        d->failed = err;
        kv_warn("namespace '%s': fdatasync of %s failed: %s; writes to it stop", d->ns->cfg.name, d->path,
                strerror(err));
        return;
    }
    d->synced = d->inflight_upto;
    d->flushes++;
    d->flush_total_us += us;
    d->flush_last_us = us;
    if (us > d->flush_max_us)
        d->flush_max_us = us;
    d->last_flush_ms = kv_mono_ms();
    uint8_t zero[BLOCK_HDR] = {0};
    for (uint32_t i = 0; d->nfreeing && i < d->nblocks; i++) {
        block_t *b = &d->blocks[i];
        if (b->state == B_ZEROED && b->free_after <= done) {
            memset(b, 0, sizeof *b);
            d->nfree++;
            d->nfreeing--;
        } else if (b->state == B_PENDING && b->free_after <= d->synced) {
            /* its live records are copied and flushed: zero the header */
            if (s_pwrite_all(d->fd, zero, BLOCK_HDR, s_block_pos(d, i)) != 0) {
                d->failed = errno;
                kv_warn("namespace '%s': cannot write %s: %s; writes to it stop", d->ns->cfg.name, d->path,
                        strerror(errno));
                return;
            }
            b->state = B_ZEROED;
            b->free_after = done + 1;
        }
    }
}

static bool s_dirty(const disk_t *d)
{
    return d->appended != d->synced || d->nfreeing;
}

static void s_wait_flush(disk_t *d)
{
    pthread_mutex_lock(&d->mu);
    while (d->f_done != d->f_req)
        pthread_cond_wait(&d->cv, &d->mu);
    pthread_mutex_unlock(&d->mu);
    s_complete(d);
}

int disk_sync(disk_t *d, char *why, size_t whylen)
{
    s_wait_flush(d);
    /* twice more at most: data, then the headers of freed blocks */
    for (int round = 0; round < 3 && !d->failed && s_dirty(d); round++) {
        s_kick(d);
        s_wait_flush(d);
    }
    if (d->failed) {
        snprintf(why, whylen, "writes stopped after a failed write or flush of %s: %s", d->path,
                 strerror(d->failed));
        return -1;
    }
    return 0;
}

void disk_flush(disk_t *d)
{
    if (d->appended != d->synced)
        s_kick(d);
}

int disk_flush_done(disk_t *d)
{
    uint64_t n;
    if (read(d->efd, &n, sizeof n) < 0 && errno != EAGAIN)
        return -1;
    s_complete(d);
    if (d->sync_due)
        disk_flush(d);
    return 0;
}

uint64_t disk_synced(const disk_t *d) { return d->synced; }
int disk_failed(const disk_t *d) { return d->failed; }
int disk_event_fd(const disk_t *d) { return d->efd; }

/* ---- defragmentation -------------------------------------------------- */

/* Read a block's written bytes into d->dbuf; returns how many, or -1. */
static ssize_t s_read_block(disk_t *d, uint32_t b, uint32_t upto)
{
    if (!d->dbuf && !(d->dbuf = malloc(d->wb)))
        return -1;
    return s_pread_all(d->fd, d->dbuf, upto, s_block_pos(d, b));
}

/* Copy block b's live records forward, then mark it to be freed once the
 * copies are on the device.  A tombstone (or expired record) is dropped
 * instead if no block older than b is left, since then no older copy of
 * its record can be either. */
static int s_defrag(disk_t *d, uint32_t b)
{
    block_t *bl = &d->blocks[b];
    ssize_t got = s_read_block(d, b, bl->used);
    if (got < 0)
        return -1;
    bool older = false;
    for (uint32_t i = 0; i < d->nblocks && !older; i++)
        older = i != b && d->blocks[i].state != B_FREE && d->blocks[i].seq < bl->seq;
    uint32_t seq_lo = (uint32_t) bl->seq, off = BLOCK_HDR, len, o;
    damage_t dmg;
    uint32_t now = (uint32_t) (kv_wall_ms() / 1000);
    /* the walk checks headers only: a dead record's checksum does not
     * matter, a live one's is checked before it is copied */
    while ((o = s_next_record(d->dbuf, (uint32_t) got, &off, seq_lo, &len, &dmg, false)) != NONE) {
        const kv_rec_t *img = (const kv_rec_t *) (d->dbuf + o + REC_HDR);
        uint32_t h = s_lookup(d, img->digest);
        if (!h)
            continue;
        ient_t *e = s_ent(d, h);
        uint64_t loc = s_loc(e);
        if (s_loc_block(loc) != b || s_loc_off(loc) != o)
            continue; /* an older copy: dead */
        uint32_t ok_len;
        if (!s_valid_at(d->dbuf, (uint32_t) got, o, seq_lo, &ok_len, true)) {
            /* the only copy is damaged: say so, and forget it rather than
             * copy damage forward under a fresh checksum */
            d->read_errors++;
            kv_warn("namespace '%s': a record in block %u at offset %u of %s fails its checksum; it is lost",
                    d->ns->cfg.name, b, o, d->path);
            if (e->state == E_LIVE)
                d->ns->records--;
            else
                d->ns->tombstones--;
            if (e->state != E_GONE)
                s_dec_live(d, loc);
            s_erase(d, img->digest);
            continue;
        }
        if (e->state == E_LIVE && s_expired(e->void_time, now)) {
            s_dec_live(d, loc);
            e->state = E_GONE;
            d->ns->records--;
            d->ns->tombstones++;
            d->ns->expired++;
        }
        if (e->state != E_LIVE && !older) {
            if (e->state == E_TOMB)
                s_dec_live(d, loc);
            d->ns->tombstones--;
            s_erase(d, img->digest);
            continue;
        }
        if (e->state == E_GONE) {
            if (s_write_tombstone(d, e, e->gen, s_lut(e), 0, &d->defrag_bytes) != 0)
                return -1;
        } else {
            uint32_t nb, noff, plen;
            if (s_room(d, s_pad16(len), 0) != 0 || s_append(d, img, false, &nb, &noff, &plen) != 0)
                return -1;
            s_dec_live(d, loc);
            s_set_loc(e, nb, noff, plen);
            d->defrag_bytes += plen;
        }
        d->defrag_records++;
    }
    if (bl->live != 0) { /* a live record the walk did not find: keep the block */
        kv_warn("namespace '%s': block %u still holds %u live bytes after defragmentation; it is kept",
                d->ns->cfg.name, b, bl->live);
        bl->state = B_USED;
        return 0;
    }
    bl->state = B_PENDING;
    d->nfreeing++;
    bl->free_after = d->appended;
    d->defrag_blocks++;
    return 0;
}

uint32_t disk_tick(disk_t *d, uint64_t mono_ms)
{
    /* defragment: one block a tick, more when free blocks run short */
    uint32_t budget = d->nfree < 2 * s_reserve(d) + 2 ? 8 : 1;
    if (mono_ms < d->defrag_retry_ms)
        budget = 0;
    while (budget-- && d->qlen) {
        uint32_t b = d->queue[d->qhead];
        block_t *bl = &d->blocks[b];
        if (bl->state != B_USED || !s_below_lwm(d, bl)) { /* changed since it was queued */
            bl->queued = 0;
            d->qhead = (d->qhead + 1) % d->nblocks;
            d->qlen--;
            continue;
        }
        if (s_defrag(d, b) != 0) {
            /* no room to copy into (or an I/O error): say so once, retry
             * in a second, and do not spin meanwhile */
            if (!d->defrag_retry_ms)
                kv_warn("namespace '%s': defragmentation of block %u stopped: %s", d->ns->cfg.name, b,
                        d->ns->why);
            d->defrag_retry_ms = mono_ms + 1000;
            break;
        }
        d->defrag_retry_ms = 0;
        bl->queued = 0;
        d->qhead = (d->qhead + 1) % d->nblocks;
        d->qlen--;
    }
    uint32_t every = d->ns->cfg.commit_to_device ? 10 : d->ns->cfg.flush_ms;
    if (s_dirty(d) && !s_flushing(d) && (d->sync_due || mono_ms >= d->last_flush_ms + every))
        s_kick(d);
    if (d->qlen && mono_ms >= d->defrag_retry_ms)
        return 0;
    if (d->qlen)
        return (uint32_t) (d->defrag_retry_ms - mono_ms);
    if (!s_dirty(d) || s_flushing(d) || d->failed)
        return 1000; /* a flush in progress wakes the loop through efd */
    uint64_t next = d->last_flush_ms + every;
    return next > mono_ms ? (uint32_t) (next - mono_ms) : 0;
}

/* ---- start-up --------------------------------------------------------- */

uint64_t disk_max_record(uint32_t write_block) { return write_block - BLOCK_HDR - REC_HDR - 15; }

int disk_lock_dir(const char *dir, char *why, size_t whylen)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(why, whylen, "cannot create data directory %s: %s", dir, strerror(errno));
        return -1;
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/kvnode.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(why, whylen, "cannot use data directory %s: %s: %s", dir, path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        snprintf(why, whylen, "data directory %s is in use by another kvnode%s%s%s", dir, pid[0] ? " (pid " : "",
                 pid, pid[0] ? ")" : "");
        close(fd);
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long) getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t) n, 0) != n) {
        snprintf(why, whylen, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return 0; /* fd stays open: the lock lasts as long as the process */
}

static int s_file_header(disk_t *d, uint64_t size, char *why, size_t whylen)
{
    uint8_t h[FILE_HDR];
    if (size == 0) {
        memset(h, 0, sizeof h);
        memcpy(h, s_file_magic, 8);
        kv_put32(h + 8, FILE_VERSION);
        kv_put32(h + 12, d->wb);
        memcpy(h + 16, d->ns->cfg.name, strlen(d->ns->cfg.name));
        kv_put32(h + 48, (uint32_t) crc32(0L, h, 48));
        if (s_pwrite_all(d->fd, h, sizeof h, 0) != 0 || fdatasync(d->fd) != 0) {
            snprintf(why, whylen, "cannot write %s: %s", d->path, strerror(errno));
            return -1;
        }
        return 0;
    }
    if (s_pread_all(d->fd, h, sizeof h, 0) != (ssize_t) sizeof h || memcmp(h, s_file_magic, 8) != 0
        || kv_get32(h + 48) != (uint32_t) crc32(0L, h, 48)) {
        snprintf(why, whylen, "%s is not a kvstore data file (bad or short header)", d->path);
        return -1;
    }
    if (kv_get32(h + 8) != FILE_VERSION) {
        snprintf(why, whylen, "%s has format version %u; this kvnode reads version %u", d->path, kv_get32(h + 8),
                 FILE_VERSION);
        return -1;
    }
    if (kv_get32(h + 12) != d->wb) {
        snprintf(why, whylen, "%s was written with write-block=%u; start with that write-block or move the file away",
                 d->path, kv_get32(h + 12));
        return -1;
    }
    if (kv_get32(h + SEQ_HW_OFF + 8) == (uint32_t) crc32(0L, h + SEQ_HW_OFF, 8))
        d->seq_hw = kv_get64(h + SEQ_HW_OFF);
    return 0;
}

/* Raise the seq high-water mark in the file header, durably, before a
 * block gets a seq at or past it.  A block's seq must never repeat: the
 * records of its previous use carry it, and a block whose header is lost
 * or freed would otherwise be reused under the same seq and its stale
 * records read as new.  Raised 1024 seqs at a time. */
static int s_raise_seq_hw(disk_t *d)
{
    uint8_t h[12];
    uint64_t hw = d->next_seq + 1024;
    kv_put64(h, hw);
    kv_put32(h + 8, (uint32_t) crc32(0L, h, 8));
    if (s_pwrite_all(d->fd, h, sizeof h, SEQ_HW_OFF) != 0 || fdatasync(d->fd) != 0) {
        d->failed = errno;
        d->ns->why_code = KV_ERR_SERVER;
        snprintf(d->ns->why, sizeof d->ns->why, "namespace '%s': cannot write %s: %s; writes to it stop",
                 d->ns->cfg.name, d->path, strerror(errno));
        return -1;
    }
    d->seq_hw = hw;
    return 0;
}

static int s_cmp_seq(const void *a, const void *b, void *arg)
{
    const block_t *bl = arg;
    uint64_t x = bl[*(const uint32_t *) a].seq, y = bl[*(const uint32_t *) b].seq;
    return x < y ? -1 : x > y;
}

/* Put a record found at start-up in the index: later ones win. */
static int s_load_record(disk_t *d, const kv_rec_t *img, uint32_t b, uint32_t off, uint32_t len, uint32_t now)
{
    uint32_t h = s_lookup(d, img->digest);
    if (!h && !(h = s_insert(d, img->digest)))
        return -1;
    ient_t *e = s_ent(d, h);
    if (e->state == E_LIVE || e->state == E_TOMB)
        d->blocks[s_loc_block(s_loc(e))].live -= s_loc_len(s_loc(e));
    s_set_meta(e, img);
    s_set_loc(e, b, off, s_pad16(len));
    if (img->nbins == 0)
        e->state = E_TOMB;
    else if (s_expired(img->void_time, now))
        e->state = E_GONE;
    else
        e->state = E_LIVE;
    if (e->state != E_GONE)
        d->blocks[b].live += s_pad16(len);
    return 0;
}

/* Read every block in write order and rebuild the index; zero damage. */
static int s_recover(disk_t *d, uint64_t size, char *why, size_t whylen)
{
    uint64_t t0 = kv_mono_us();
    uint32_t *order = malloc((d->file_blocks + 1) * sizeof *order), n = 0;
    if (!order || !(d->dbuf = malloc(d->wb))) {
        free(order);
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    for (uint32_t b = 0; b < d->file_blocks; b++) {
        uint8_t h[BLOCK_HDR];
        uint64_t seq;
        ssize_t got = s_pread_all(d->fd, h, BLOCK_HDR, s_block_pos(d, b));
        if (got == BLOCK_HDR && s_block_header_ok(h, d->wb, &seq)) {
            d->blocks[b].state = B_USED;
            d->blocks[b].seq = seq;
            if (seq >= d->next_seq)
                d->next_seq = seq + 1;
            order[n++] = b;
            d->nfree--;
            continue;
        }
        bool zero = true; /* a free block's header is zero; anything else is damage */
        for (ssize_t k = 0; k < got && zero; k++)
            zero = h[k] == 0;
        if (!zero)
            kv_warn("namespace '%s': the header of block %u is damaged; the records in it are not loaded",
                    d->ns->cfg.name, b);
    }
    if (d->seq_hw > d->next_seq)
        d->next_seq = d->seq_hw; /* seqs below may be in freed or damaged blocks */
    qsort_r(order, n, sizeof *order, s_cmp_seq, d->blocks);
    uint32_t now = (uint32_t) (kv_wall_ms() / 1000);
    uint64_t bad_records = 0, bad_bytes = 0;
    int rc = 0;
    for (uint32_t k = 0; k < n && rc == 0; k++) {
        uint32_t b = order[k];
        uint64_t pos = s_block_pos(d, b);
        uint32_t want = pos + d->wb <= size ? d->wb : (uint32_t) (size - pos);
        ssize_t got = s_pread_all(d->fd, d->dbuf, want, pos);
        if (got < 0) {
            snprintf(why, whylen, "cannot read %s: %s", d->path, strerror(errno));
            rc = -1;
            break;
        }
        uint32_t seq_lo = (uint32_t) d->blocks[b].seq, off = BLOCK_HDR, len, o, end = BLOCK_HDR;
        uint32_t blk_records = 0, blk_bytes = 0;
        damage_t dmg;
        for (;;) {
            o = s_next_record(d->dbuf, (uint32_t) got, &off, seq_lo, &len, &dmg, true);
            if (dmg.to) {
                static const uint8_t zeros[4096];
                blk_records += dmg.records;
                blk_bytes += dmg.to - dmg.from;
                for (uint32_t z = dmg.from; z < dmg.to; z += sizeof zeros) {
                    uint32_t c = dmg.to - z < sizeof zeros ? dmg.to - z : (uint32_t) sizeof zeros;
                    if (s_pwrite_all(d->fd, zeros, c, pos + z) != 0) {
                        snprintf(why, whylen, "cannot write %s: %s", d->path, strerror(errno));
                        rc = -1;
                    }
                }
                if (dmg.to > end)
                    end = dmg.to;
            }
            if (o == NONE || rc != 0)
                break;
            if (s_load_record(d, (const kv_rec_t *) (d->dbuf + o + REC_HDR), b, o, len, now) != 0) {
                snprintf(why, whylen, "out of memory for the index");
                rc = -1;
                break;
            }
            end = off;
        }
        d->blocks[b].used = end;
        if (blk_records) {
            kv_warn("namespace '%s': %u damaged record%s (%u bytes) in block %u discarded", d->ns->cfg.name,
                    blk_records, blk_records == 1 ? "" : "s", blk_bytes, b);
            bad_records += blk_records;
            bad_bytes += blk_bytes;
        }
    }
    free(order);
    if (rc != 0)
        return rc;
    if (bad_records && fdatasync(d->fd) != 0) {
        snprintf(why, whylen, "cannot write %s: %s", d->path, strerror(errno));
        return -1;
    }
    /* count, and queue the sparse blocks */
    for (uint32_t p = 0; p < KV_PARTITIONS; p++)
        for (uint32_t i = 0; i < d->parts[p].cap; i++)
            if (d->parts[p].slots[i]) {
                uint8_t st = s_ent(d, d->parts[p].slots[i])->state;
                if (st == E_LIVE)
                    d->ns->records++;
                else
                    d->ns->tombstones++;
            }
    for (uint32_t b = 0; b < d->nblocks; b++)
        s_maybe_queue(d, b);
    double secs = (double) (kv_mono_us() - t0) / 1e6;
    kv_warn("namespace '%s': loaded %llu records, %llu tombstones from %u block%s in %.2f s", d->ns->cfg.name,
            (unsigned long long) d->ns->records, (unsigned long long) d->ns->tombstones, n, n == 1 ? "" : "s",
            secs);
    return 0;
}

disk_t *disk_open(kv_ns_t *ns, const char *dir, char *why, size_t whylen)
{
    disk_t *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    d->ns = ns;
    d->fd = -1;
    d->efd = -1;
    d->cur = NONE;
    d->wb = ns->cfg.write_block;
    d->nblocks = (uint32_t) (ns->cfg.disk_limit / d->wb);
    d->nfree = d->nblocks;
    d->next_seq = 1;
    d->last_flush_ms = kv_mono_ms();
    snprintf(d->path, sizeof d->path, "%s/%s.dat", dir, ns->cfg.name);
    d->blocks = calloc(d->nblocks, sizeof *d->blocks);
    d->queue = calloc(d->nblocks, sizeof *d->queue);
    d->rbuf = malloc(d->wb);
    if (posix_memalign((void **) &d->wbuf, 4096, d->wb) != 0)
        d->wbuf = NULL;
    if (!d->blocks || !d->queue || !d->rbuf || !d->wbuf) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->efd < 0) {
        snprintf(why, whylen, "cannot create an eventfd: %s", strerror(errno));
        goto fail;
    }
    d->fd = open(d->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    struct stat st;
    if (d->fd < 0 || fstat(d->fd, &st) != 0) {
        snprintf(why, whylen, "cannot open %s: %s", d->path, strerror(errno));
        goto fail;
    }
    uint64_t size = (uint64_t) st.st_size;
    if (s_file_header(d, size, why, whylen) != 0)
        goto fail;
    d->map_len = FILE_HDR + (size_t) d->nblocks * d->wb;
    void *map = mmap(NULL, d->map_len, PROT_READ, MAP_SHARED, d->fd, 0);
    if (map == MAP_FAILED) {
        snprintf(why, whylen, "cannot map %s: %s", d->path, strerror(errno));
        goto fail;
    }
    d->map = map;
    if (size == 0) { /* make the new file's name durable too */
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    d->file_blocks = size > FILE_HDR ? (uint32_t) ((size - FILE_HDR + d->wb - 1) / d->wb) : 0;
    if (d->file_blocks > d->nblocks) {
        snprintf(why, whylen, "%s holds %u write blocks, more than disk=%llu allows (%u)", d->path, d->file_blocks,
                 (unsigned long long) ns->cfg.disk_limit, d->nblocks);
        goto fail;
    }
    if (s_recover(d, size, why, whylen) != 0)
        goto fail;
    /* the flusher takes no signals: SIGTERM must reach the request loop */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&d->flusher, NULL, s_flusher, d);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(why, whylen, "cannot start the flusher thread: %s", strerror(rc));
        goto fail;
    }
    d->flusher_started = true;
    return d;
fail:
    disk_close(&d);
    return NULL;
}

void disk_close(disk_t **self_p)
{
    disk_t *d = *self_p;
    if (!d)
        return;
    if (d->flusher_started) {
        char why[1300];
        if (disk_sync(d, why, sizeof why) != 0)
            kv_warn("namespace '%s': %s", d->ns->cfg.name, why);
        pthread_mutex_lock(&d->mu);
        d->f_stop = true;
        pthread_cond_signal(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->flusher, NULL);
    }
    if (d->map)
        munmap((void *) d->map, d->map_len);
    if (d->fd >= 0)
        close(d->fd);
    if (d->efd >= 0)
        close(d->efd);
    for (int p = 0; p < KV_PARTITIONS; p++) {
        free(d->parts[p].slots);
        free(d->parts[p].tags);
    }
    for (uint32_t c = 0; c < d->nchunks; c++)
        free(d->chunks[c]);
    free(d->chunks);
    free(d->blocks);
    free(d->queue);
    free(d->rbuf);
    free(d->dbuf);
    free(d->sbuf);
    free(d->wbuf);
    free(d->hold);
    free(d);
    *self_p = NULL;
}

/* ---- statistics ------------------------------------------------------- */

int disk_stats_count(void) { return 22; }

static void s_kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    kv_mp_pack_cstr(pk, k);
    msgpack_pack_uint64(pk, v);
}

void disk_pack_stats(const disk_t *d, msgpack_packer *pk)
{
    uint64_t used_blocks = 0, written = 0, live = 0;
    for (uint32_t i = 0; i < d->nblocks; i++)
        if (d->blocks[i].state != B_FREE) {
            used_blocks++;
            written += i == d->cur ? d->cur_off : d->blocks[i].used;
            live += d->blocks[i].live;
        }
    kv_mp_pack_cstr(pk, "commit_to_device");
    kv_mp_pack_bool(pk, d->ns->cfg.commit_to_device);
    s_kv_u64(pk, "flush_ms", d->ns->cfg.flush_ms);
    s_kv_u64(pk, "tombstones", d->ns->tombstones);
    s_kv_u64(pk, "disk_used", used_blocks * d->wb);
    s_kv_u64(pk, "disk_limit", d->ns->cfg.disk_limit);
    kv_mp_pack_cstr(pk, "live_fraction");
    msgpack_pack_double(pk, written ? (double) live / (double) written : 1.0);
    s_kv_u64(pk, "write_block", d->wb);
    s_kv_u64(pk, "blocks_total", d->nblocks);
    s_kv_u64(pk, "blocks_used", used_blocks);
    s_kv_u64(pk, "blocks_free", d->nfree);
    s_kv_u64(pk, "blocks_written", d->blocks_written);
    s_kv_u64(pk, "defrag_lwm", d->ns->cfg.defrag_lwm);
    s_kv_u64(pk, "defrag_queue", d->qlen);
    s_kv_u64(pk, "defrag_blocks", d->defrag_blocks);
    s_kv_u64(pk, "defrag_records", d->defrag_records);
    s_kv_u64(pk, "defrag_bytes", d->defrag_bytes);
    s_kv_u64(pk, "write_bytes", d->write_bytes);
    s_kv_u64(pk, "flushes", d->flushes);
    s_kv_u64(pk, "flush_last_us", d->flush_last_us);
    s_kv_u64(pk, "flush_avg_us", d->flushes ? d->flush_total_us / d->flushes : 0);
    s_kv_u64(pk, "flush_max_us", d->flush_max_us);
    s_kv_u64(pk, "read_errors", d->read_errors);
}

/* ---- self-test -------------------------------------------------------- */

static kv_rec_t *s_test_rec(int key, uint32_t value, uint32_t gen, uint32_t void_time)
{
    kv_key_t k = {.type = KV_KEY_INT, .i = key};
    kv_rec_t *r = calloc(1, sizeof *r + 1 + 12);
    kv_digest("s", 1, &k, r->digest);
    r->set_len = 1;
    r->data[0] = 's';
    /* bins: {"v": value}, as MessagePack: map1, fixstr "v", uint32 */
    uint8_t *b = r->data + 1;
    b[0] = 0x81;
    b[1] = 0xa1;
    b[2] = 'v';
    b[3] = 0xce;
    b[4] = (uint8_t) (value >> 24);
    b[5] = (uint8_t) (value >> 16);
    b[6] = (uint8_t) (value >> 8);
    b[7] = (uint8_t) value;
    r->bins_len = 8;
    r->nbins = 1;
    r->gen = gen;
    r->lut = gen;
    r->void_time = void_time;
    return r;
}

static uint32_t s_test_value(const kv_rec_t *r)
{
    const uint8_t *b = rec_bins(r);
    return (uint32_t) b[4] << 24 | (uint32_t) b[5] << 16 | (uint32_t) b[6] << 8 | b[7];
}

static const uint8_t *s_test_digest(int key)
{
    static uint8_t d[KV_DIGEST_SIZE];
    kv_key_t k = {.type = KV_KEY_INT, .i = key};
    kv_digest("s", 1, &k, d);
    return d;
}

/* The namespace as the model says it should be: model[k] = value, 0 if
 * deleted or never written. */
static void s_test_check(kv_ns_t *ns, const uint32_t *model, int n, uint32_t now)
{
    uint64_t live = 0;
    for (int k = 0; k < n; k++) {
        kv_rec_t *r = store_get(ns, s_test_digest(k), now);
        if (model[k]) {
            assert(r && s_test_value(r) == model[k]);
            live++;
        } else
            assert(!r);
    }
    assert(ns->records == live);
}

static kv_ns_t *s_test_open(const char *dir)
{
    kv_ns_config_t cfg = {.name = "t", .max_record_size = 1024, .memory_limit = 64 << 20, .max_bins = 4,
                          .storage = KV_STORAGE_FILE, .flush_ms = 1000, .write_block = 64 << 10,
                          .defrag_lwm = 50, .disk_limit = 2 << 20};
    char why[1300];
    kv_ns_t *ns = store_ns_new(&cfg, dir, why, sizeof why);
    if (!ns)
        fprintf(stderr, "disk_test: %s\n", why);
    assert(ns);
    return ns;
}

void disk_test(bool verbose)
{
    (void) verbose;
    char dir[] = "/tmp/kvnode-disk-test-XXXXXX";
    assert(mkdtemp(dir));
    enum { N = 3000 };
    static uint32_t model[N];
    uint32_t now = (uint32_t) (kv_wall_ms() / 1000);
    kv_ns_t *ns = s_test_open(dir);
    /* write, overwrite many times (several times the disk limit), delete
     * some; defragmentation must keep up and lose nothing */
    uint32_t v = 1;
    for (int round = 0; round < 20; round++)
        for (int k = 0; k < N; k++) {
            model[k] = v++;
            assert(store_put(ns, s_test_rec(k, model[k], (uint32_t) round + 1, 0)) == 0);
            if (k % 64 == 0)
                disk_tick(ns->disk, kv_mono_ms());
        }
    for (int k = 0; k < N; k += 7) {
        assert(store_remove(ns, s_test_digest(k), 99, 99) == 1);
        model[k] = 0;
    }
    assert(store_remove(ns, s_test_digest(0), 99, 99) == 0); /* already gone */
    for (int i = 0; i < 2000; i++)
        disk_tick(ns->disk, kv_mono_ms());
    assert(ns->disk->defrag_blocks > 0);
    assert((uint64_t) (ns->disk->nblocks - ns->disk->nfree) * ns->disk->wb <= ns->cfg.disk_limit);
    s_test_check(ns, model, N, now);
    /* an expired record is invisible, swept, and stays gone */
    assert(store_put(ns, s_test_rec(N + 1, 5, 1, now - 10)) == 0);
    assert(!store_get(ns, s_test_digest(N + 1), now));
    uint32_t swept = 0;
    for (int i = 0; i < KV_PARTITIONS / 128; i++)
        swept += store_sweep(ns, now, 128);
    assert(swept == 1);
    /* a tombstone shows its generation and last-update time, and in a scan
     * with tombstones (records without bins); a dropped record leaves none */
    uint32_t tg;
    uint64_t tl;
    assert(store_tomb(ns, s_test_digest(7), &tg, &tl) == 1 && tg == 99 && tl == 99);
    assert(store_tomb(ns, s_test_digest(8), &tg, &tl) == 0);
    {
        uint32_t pid = kv_partition(s_test_digest(7)), got, tombs = 0, live = 0;
        bool more = true;
        const uint8_t *after = NULL;
        uint8_t last_d[KV_DIGEST_SIZE];
        kv_rec_t *page[16];
        while (more && (got = store_scan_partition(ns, pid, after, now, true, page, 16, &more)) > 0) {
            for (uint32_t i = 0; i < got; i++) {
                tombs += page[i]->nbins == 0;
                live += page[i]->nbins != 0;
            }
            memcpy(last_d, page[got - 1]->digest, KV_DIGEST_SIZE);
            after = last_d;
        }
        assert(tombs >= 1 && live == ns->disk->parts[pid].count - tombs);
    }
    assert(store_drop(ns, s_test_digest(8)) == 1 && !store_get(ns, s_test_digest(8), now));
    assert(store_tomb(ns, s_test_digest(8), &tg, &tl) == 0 && store_drop(ns, s_test_digest(8)) == 0);
    uint32_t dropped = model[8];
    model[8] = 0;
    s_test_check(ns, model, N, now);
    /* a clean restart keeps everything (and no deleted record returns) */
    store_ns_destroy(&ns);
    ns = s_test_open(dir);
    model[8] = dropped; /* a dropped record's copy is still in the file (by design) */
    s_test_check(ns, model, N, now);
    assert(!store_get(ns, s_test_digest(N + 1), now));
    /* more defragmentation after the restart, then another restart */
    for (int k = 1; k < N; k += 2)
        if (model[k]) {
            model[k] = v++;
            assert(store_put(ns, s_test_rec(k, model[k], 50, 0)) == 0);
        }
    for (int i = 0; i < 2000; i++)
        disk_tick(ns->disk, kv_mono_ms());
    store_ns_destroy(&ns);
    ns = s_test_open(dir);
    s_test_check(ns, model, N, now);
    /* a torn tail: the last record written (a new key) loses its end;
     * start-up drops it alone */
    int last = N + 5;
    assert(store_put(ns, s_test_rec(last, 77, 1, 0)) == 0);
    uint32_t h = s_lookup(ns->disk, s_test_digest(last));
    uint64_t loc = s_loc(s_ent(ns->disk, h));
    uint64_t pos = s_block_pos(ns->disk, s_loc_block(loc)) + s_loc_off(loc);
    char path[1200];
    snprintf(path, sizeof path, "%s", ns->disk->path);
    store_ns_destroy(&ns);
    int fd = open(path, O_WRONLY);
    assert(fd >= 0);
    uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert(pwrite(fd, junk, sizeof junk, (off_t) pos + REC_HDR + 40) == (ssize_t) sizeof junk);
    close(fd);
    ns = s_test_open(dir);
    assert(!store_get(ns, s_test_digest(last), now));
    s_test_check(ns, model, N, now);
    store_ns_destroy(&ns);
    /* the newest block loses its header (a torn first page): its records
     * are not loaded, and the block, reused, never takes its old seq
     * again, so its stale records cannot come back over newer writes */
    ns = s_test_open(dir);
    uint32_t newest = 0;
    for (uint32_t b = 0; b < ns->disk->nblocks; b++)
        if (ns->disk->blocks[b].state == B_USED && ns->disk->blocks[b].seq > ns->disk->blocks[newest].seq)
            newest = b;
    uint64_t newest_seq = ns->disk->blocks[newest].seq;
    store_ns_destroy(&ns);
    fd = open(path, O_WRONLY);
    assert(fd >= 0);
    uint8_t zero[BLOCK_HDR] = {0};
    assert(pwrite(fd, zero, sizeof zero, (off_t) (FILE_HDR + (uint64_t) newest * (64 << 10))) == BLOCK_HDR);
    close(fd);
    ns = s_test_open(dir);
    assert(ns->disk->next_seq > newest_seq);
    uint64_t before = ns->records;
    for (int k = 1; k < 200; k += 2) /* enough to reuse the freed block */
        assert(store_put(ns, s_test_rec(k, v++, 70, 0)) == 0);
    for (int i = 0; i < 2000; i++)
        disk_tick(ns->disk, kv_mono_ms());
    uint32_t fresh[200];
    for (int k = 1; k < 200; k += 2)
        fresh[k] = s_test_value(store_get(ns, s_test_digest(k), now));
    store_ns_destroy(&ns);
    ns = s_test_open(dir);
    for (int k = 1; k < 200; k += 2)
        assert(s_test_value(store_get(ns, s_test_digest(k), now)) == fresh[k]);
    assert(ns->records <= before + 100);
    store_ns_destroy(&ns);
    /* full, then two records in three deleted with no defragmentation in
     * between: the deletes leave defragmentation a block, so it frees
     * space and writes resume (deletes taking every block locked the
     * namespace for good) */
    unlink(path);
    ns = s_test_open(dir);
    int filled = 0;
    while (store_put(ns, s_test_rec(filled, 1, 1, 0)) == 0)
        filled++;
    assert(filled > 1000);
    int deleted = 0;
    for (int k = 0; k < filled; k++) /* until deletes stop: one block is left */
        if (k % 3 && store_remove(ns, s_test_digest(k), 2, 2) == 1)
            deleted++;
    assert(deleted >= 100);
    for (int i = 0; i < 4000 && store_put(ns, s_test_rec(N + 9, 1, 1, 0)) != 0; i++)
        disk_tick(ns->disk, kv_mono_ms() + (uint64_t) i * 2000); /* past any retry back-off */
    assert(store_get(ns, s_test_digest(N + 9), now) != NULL);
    store_ns_destroy(&ns);
    /* a second namespace on the same file with another block size: refused */
    kv_ns_config_t cfg = {.name = "t", .max_record_size = 1024, .memory_limit = 64 << 20, .max_bins = 4,
                          .storage = KV_STORAGE_FILE, .flush_ms = 1000, .write_block = 128 << 10,
                          .defrag_lwm = 50, .disk_limit = 4 << 20};
    char why[1300];
    assert(!store_ns_new(&cfg, dir, why, sizeof why) && strstr(why, "write-block=65536"));
    unlink(path);
    rmdir(dir);
}
