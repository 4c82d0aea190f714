/* kvrepl: moves partition data between kvnodes and clusters (see kvrepl(1)).
 *
 * The parts, one job each:
 *   rec.c      a record copy (record or tombstone): parsing a record map,
 *              which copy is newer, the merge and drop requests
 *   stream.c   the binary record stream: writer and checking reader
 *   scan.c     raw scans of one endpoint, page by page; merge-joins of two
 *   sink.c     merge requests to one endpoint, pipelined, bounded in flight
 *   endpoint.c what is at an endpoint, and its connections, scans, merges
 *   plist.c    partition lists
 *   progress.c progress lines and the clock of the summaries
 *   cursor.c   ship's cursor file
 *   dump.c load.c verify.c migrate.c ship.c   the subcommands
 *   main.c     options and the command table */
#ifndef KVREPL_H
#define KVREPL_H

#include "kv_client.h"
#include "kv_proto.h"
#include "kv_ptable.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes (kvrepl(1) EXIT STATUS). */
enum { KR_EXIT_OK = 0, KR_EXIT_DIFFER = 1, KR_EXIT_ERROR = 2 };

/* ---- rec.c ---------------------------------------------------------- */

/* A copy of one record, or its tombstone (del), as a raw scan returns it
 * and as the stream holds it.  The pointers go into the buffer the map
 * was parsed from (a scan page, a stream frame), valid as long as it is. */
typedef struct {
    const char *ns;           /* namespace (stream frames; NULL from a scan) */
    uint32_t ns_len;
    uint8_t digest[KV_DIGEST_SIZE];
    bool del;                 /* a tombstone: only digest, gen and lut */
    uint64_t gen;             /* generation, 1 to 2^32-1 */
    uint64_t lut;             /* last-update time, ms */
    uint64_t voidt;           /* absolute expiry, Unix seconds, 0 = never */
    const char *set;          /* set name, set_len bytes (NULL if none) */
    uint32_t set_len;
    const uint8_t *key;       /* the user key as one MessagePack value, or NULL */
    uint32_t key_len;
    const uint8_t *bins;      /* the bins, one MessagePack map */
    uint32_t bins_len;
    const uint8_t *map;       /* the whole record map parsed */
    size_t map_len;
} kr_rec_t;

/* What kr_rec_parse requires besides digest, gen and lut. */
#define KR_NEED_NS 1   /* "ns" (a stream frame) */
#define KR_NEED_VOID 2 /* "void" in a record (a raw scan, a stream frame) */

/* Parse and check a record map (a raw scan's record or tombstone, or a
 * stream frame): types, ranges, a key that gives the digest, bins one
 * valid map.  Unknown fields are skipped.  0, or -1 with what is wrong
 * in why. */
int kr_rec_parse(kr_rec_t *rec, const uint8_t *map, size_t len, unsigned need, char *why, size_t whylen);
/* Which copy of one record is better, by the merge op's rule (kvproto(7)):
 * > 0 if a, < 0 if b, 0 if neither.  Between two records the higher
 * generation, then the later lut; when either is a tombstone the later
 * lut, and the tombstone on a tie (a record created again after a delete
 * starts its generations anew). */
int kr_rec_cmp(const kr_rec_t *a, const kr_rec_t *b);
/* Two sides' copies of one record (either may be NULL, not both): > 0 if
 * b's side needs a (it lacks it or holds a worse copy), < 0 if a's side
 * needs b, 0 if neither (the same copy; or the better is a tombstone and
 * the other side holds no record for it to delete). */
int kr_rec_needs(const kr_rec_t *a, const kr_rec_t *b);
/* Build the merge request (op 13) that applies rec (a record or a
 * tombstone) in namespace ns; with drop, the request that removes a copy
 * with exactly rec's generation and lut.  req is initialised here. */
void kr_rec_merge_req(kv_req_t *req, const char *ns, const kr_rec_t *rec, bool drop);
/* Pack rec as a stream record map with namespace ns. */
void kr_rec_pack(msgpack_packer *pk, const char *ns, size_t ns_len, const kr_rec_t *rec);
/* Hash of a live record's digest, gen, lut, void and bins (verify). */
uint64_t kr_rec_hash(const kr_rec_t *rec);

/* A list of bin names (ship --bins). */
#define KR_BINS_MAX 256
typedef struct {
    int n;
    char name[KR_BINS_MAX][KV_BIN_NAME_MAX + 1];
} kr_bins_t;
/* Parse "a,b,c" (names of 1 to 15 bytes, at most KR_BINS_MAX, none
 * twice).  0, or -1 with why. */
int kr_bins_parse(kr_bins_t *bl, const char *s, char *why, size_t whylen);
/* The bins of the record rec (not a tombstone) whose names are in bl, as
 * one map into sb (cleared first).  How many: 0 if it has none of them. */
uint32_t kr_rec_keep_bins(const kr_rec_t *rec, const kr_bins_t *bl, msgpack_sbuffer *sb);

void kr_rec_test(bool verbose);

/* ---- stream.c ------------------------------------------------------- */

#define KR_STREAM_MAGIC "KVREPL"
#define KR_STREAM_VERSION 1
#define KR_PREAMBLE_SIZE 8
#define KR_FRAME_HDR 9               /* length (4), type (1), crc32 (4) */
#define KR_FRAME_MAX (16u << 20)     /* payload bytes in one frame */
enum { KR_FRAME_INFO = 'I', KR_FRAME_RECORD = 'R', KR_FRAME_END = 'E' };

/* What the info frame says about a stream. */
typedef struct {
    const char *source;     /* endpoint dumped */
    const char *ns;
    const char *set;        /* NULL: every set */
    const char *partitions; /* the partition list, e.g. "0-4095" */
    bool tombstones;
} kr_info_t;

typedef struct {
    FILE *f;
    uint64_t off;           /* bytes written */
    uint64_t records;       /* record frames written, tombstones not counted */
    uint64_t tombstones;
    msgpack_sbuffer sb;     /* the frame being built */
    msgpack_packer pk;
} kr_writer_t;

/* Write the preamble and the info frame.  0, or -1 with errno. */
int kr_writer_begin(kr_writer_t *w, FILE *f, const kr_info_t *info);
/* Write one record frame.  0, or -1 with errno. */
int kr_writer_record(kr_writer_t *w, const char *ns, size_t ns_len, const kr_rec_t *rec);
/* Write the end frame and flush; releases w.  0, or -1 with errno. */
int kr_writer_end(kr_writer_t *w);
void kr_writer_destroy(kr_writer_t *w);

typedef struct {
    FILE *f;
    uint64_t off;           /* bytes read */
    uint64_t frame_off;     /* offset of the frame last read or being read */
    uint64_t records;       /* record frames read and checked (tombstones included) */
    uint64_t tombstones;
    uint8_t *buf;           /* the frame last read (header and payload) */
    size_t cap;
    bool ended;
} kr_reader_t;

/* Read and check the preamble and the info frame.  0, or -1 with the
 * reason in why. */
int kr_reader_begin(kr_reader_t *r, FILE *f, char *why, size_t whylen);
/* Next record frame, checked (CRC, MessagePack, fields): 1 with *rec
 * (valid until the next call), 0 after a good end frame at the end of the
 * stream, -1 with why naming the byte offset, the record number and what
 * is wrong. */
int kr_reader_next(kr_reader_t *r, kr_rec_t *rec, char *why, size_t whylen);
void kr_reader_destroy(kr_reader_t *r);

void kr_stream_test(bool verbose);

/* ---- scan.c --------------------------------------------------------- */

typedef struct {
    const char *ns;
    const char *set;  /* NULL: every set */
    int pfrom, pto;   /* partitions [pfrom, pto) */
    bool raw;         /* raw scan: void and lut, tombstones, the node's "now" */
    bool any;         /* a kvnode answers from its own copies (never through a kvroute) */
    bool tombstones;  /* return tombstones too (raw) */
    int timeout_ms;   /* for each page */
    int streams;      /* pages asked for at once, each for its part of the range (1: records in order) */
    uint64_t since;   /* only what was updated after this last-update time (ms; 0: all) */
} kr_scan_opts_t;

typedef struct kr_scan kr_scan_t;

/* Start a scan on c (borrowed: it must outlive the scan, which ignores
 * replies to other requests); the strings of o must too.  NULL if the
 * first request cannot be sent (see kv_client_error). */
kr_scan_t *kr_scan_new(kv_client_t *c, const kr_scan_opts_t *o);
void kr_scan_destroy(kr_scan_t **self_p);
/* Next record: 1 with *rec (valid until the next call), 0 at the end of
 * the range, -1 with kr_scan_error.  With one stream, records come in
 * partition order and in digest order within a partition; with more,
 * each stream's in that order, the streams' mixed.  Pages answered WRONG_NODE or
 * UNAVAILABLE (a table change, through a router) are asked again a few
 * times. */
int kr_scan_next(kr_scan_t *s, kr_rec_t *rec);
const char *kr_scan_error(const kr_scan_t *s);
/* A raw scan's "now": the node's clock (ms) when it built the first page;
 * 0 before it came. */
uint64_t kr_scan_now(const kr_scan_t *s);
/* The smallest "now" of the raw scan's pages so far: whatever it did not
 * return was updated at or before it, or later than it (ship's cursor);
 * 0 before a page came. */
uint64_t kr_scan_minnow(const kr_scan_t *s);
/* A raw scan's "now" of the first page that covered partition pid,
 * wholly or in part; 0 if none has yet. */
uint64_t kr_scan_pnow(const kr_scan_t *s, int pid);

/* Merge-join two ordered scans (one stream each): fn is called once per
 * record, in partition then digest order, with the copy of each side, a
 * or b NULL where a side has none; when fn is called for a partition,
 * a's pages that covered it have come.  fn returns 0 to go on.  0, or -1
 * with why (or with why empty if fn returned -1). */
typedef int(kr_join_fn)(void *arg, const kr_rec_t *a, const kr_rec_t *b);
int kr_join(kr_scan_t *a, kr_scan_t *b, kr_join_fn *fn, void *arg, char *why, size_t whylen);

/* ---- sink.c --------------------------------------------------------- */

typedef struct kr_sink kr_sink_t;

/* Called for each answered merge: the tag given with it, the record's
 * digest, the status (KV_OK: applied or not; else refused) and the node's
 * reason. */
typedef void(kr_sink_answer_fn)(void *arg, uint64_t tag, const uint8_t *digest, int status, const char *detail);

typedef struct {
    uint64_t sent;        /* requests answered or in flight */
    uint64_t applied;     /* answered {"applied": true} */
    uint64_t not_applied; /* answered {"applied": false} */
    uint64_t failed;      /* refused */
    uint64_t bytes;       /* bytes of the requests sent */
} kr_sink_stats_t;

/* Merge requests to c (borrowed), at most window in flight. */
kr_sink_t *kr_sink_new(kv_client_t *c, int window, int timeout_ms, kr_sink_answer_fn *answer, void *arg);
void kr_sink_destroy(kr_sink_t **self_p);
/* Send req (taken: its body is released once it is answered), waiting
 * for answers while the window is full (answer is called for each).  A
 * refusal counts in failed; KEY_BUSY, WRONG_NODE and UNAVAILABLE are tried again a few
 * times.  0, or -1 if the endpoint cannot be reached or answered in time,
 * or does not know the merge op (kr_sink_error). */
int kr_sink_send(kr_sink_t *s, kv_req_t *req, uint64_t tag);
/* Wait for every answer.  0 or -1, as kr_sink_send. */
int kr_sink_drain(kr_sink_t *s);
const kr_sink_stats_t *kr_sink_stats(const kr_sink_t *s);
const char *kr_sink_error(const kr_sink_t *s);
int kr_sink_inflight(const kr_sink_t *s);

/* ---- plist.c -------------------------------------------------------- */

/* A set of partitions. */
typedef struct {
    bool in[KV_PARTITIONS];
    int count;
} kr_plist_t;

/* Parse "0-1023" or "5,7,100-200" (ids 0 to 4095).  0, or -1 with why. */
int kr_plist_parse(kr_plist_t *pl, const char *s, char *why, size_t whylen);
void kr_plist_all(kr_plist_t *pl);
/* The next run of listed partitions at or after *from: [*from, *to);
 * false when there is none. */
bool kr_plist_next(const kr_plist_t *pl, int *from, int *to);
/* The list in canonical form ("0-1023,2000") into out. */
void kr_plist_format(const kr_plist_t *pl, char *out, size_t len);

void kr_plist_test(bool verbose);

/* ---- endpoint.c ------------------------------------------------------ */

/* What is at an endpoint. */
enum { KR_NODE = 1, KR_ROUTER = 2 };
/* Ask c's endpoint for its partition table (info table): a kvroute gives
 * it (into *t if t is not NULL), a kvnode refuses.  KR_NODE, KR_ROUTER, or
 * -1 with why. */
int kr_probe(kv_client_t *c, int timeout_ms, kv_ptable_t *t, char *why, size_t whylen);

/* One endpoint kvrepl reads from and writes to: a connection for scans,
 * another for merges (so their answers never mix), and what it is. */
typedef struct {
    const char *endpoint;
    const char *label;    /* how messages name it ("A", "--from", a node id) */
    int kind;             /* KR_NODE or KR_ROUTER */
    kv_client_t *scan_c;
    kv_client_t *merge_c;
    kr_sink_t *sink;      /* merges to it (kr_end_sink) */
} kr_end_t;

/* Connect to endpoint and find out what it is (the table into *t if t is
 * not NULL and it is a kvroute).  0, or -1 with why. */
int kr_end_open(kr_end_t *e, const char *endpoint, const char *label, int timeout_ms, kv_ptable_t *t, char *why,
                size_t whylen);
/* The sink for merges to e, made on first use; NULL with why. */
kr_sink_t *kr_end_sink(kr_end_t *e, int window, int timeout_ms, kr_sink_answer_fn *answer, void *arg, char *why,
                       size_t whylen);
void kr_end_close(kr_end_t *e);
/* Start a scan of [pfrom, pto) of e: raw, and from its own copies if it
 * is a kvnode; in order if ordered, else in as many streams as suit e.
 * NULL with why. */
kr_scan_t *kr_end_scan(kr_end_t *e, const char *ns, const char *set, int pfrom, int pto, bool tombstones,
                       bool ordered, int timeout_ms, char *why, size_t whylen);
/* Streams for a scan of e whose order does not matter: many through a
 * router (a page stops at each change of master), a few on a node. */
int kr_end_streams(const kr_end_t *e);

/* ---- cursor.c -------------------------------------------------------- */

/* ship's cursor file (kvrepl(1), SHIP).  Read it into *ms: 1, 0 if there
 * is no such file, -1 with why if it cannot be read or is damaged (never
 * taken for 0). */
int kr_cursor_read(const char *path, uint64_t *ms, char *why, size_t whylen);
/* Write ms to path durably: path.tmp written and fsynced, renamed over
 * path, the directory fsynced.  0, or -1 with why. */
int kr_cursor_write(const char *path, uint64_t ms, char *why, size_t whylen);

void kr_cursor_test(bool verbose);

/* ---- progress.c ------------------------------------------------------ */

/* Progress on stderr, at most once a second, when it is a terminal. */
typedef struct {
    bool tty;
    uint64_t t0_us, last_ms;
} kr_progress_t;
void kr_progress_init(kr_progress_t *p);
/* True (and the clock reset) if a progress line is due. */
bool kr_progress_due(kr_progress_t *p);
double kr_progress_secs(const kr_progress_t *p);
/* "\r" before the summary when a progress line may be on the terminal. */
const char *kr_progress_cr(const kr_progress_t *p);

/* ---- the subcommands -------------------------------------------------- */

enum { KR_FMT_BINARY, KR_FMT_JSONL };

/* The options of every subcommand, as main parsed them. */
typedef struct {
    const char *from, *to;  /* --from, --to */
    const char *ns;         /* --ns (NULL: the command's default) */
    const char *set;        /* --set */
    const char *replicas;   /* --replicas ROUTER */
    kr_plist_t parts;       /* --partitions, or all */
    const char *parts_arg;
    bool tombstones;        /* --tombstones */
    bool repair;            /* --repair */
    int format;             /* --format */
    int timeout_ms;         /* -t */
    int in_flight;          /* --in-flight */
    int64_t rate;           /* --rate, records per second, 0 = no limit */
    const char *cursor;     /* --cursor FILE */
    int interval_ms;        /* --interval */
    int overlap_ms;         /* --overlap */
    bool once;              /* --once */
    kr_bins_t bins;         /* --bins (bins.n 0: every bin) */
    bool verbose;           /* -v */
    int nargs;              /* the arguments after the command */
    char **args;
} kr_opts_t;

#define KR_DEFAULT_NS "test"

int kr_cmd_dump(kr_opts_t *o);
int kr_cmd_load(kr_opts_t *o);
int kr_cmd_verify(kr_opts_t *o);
int kr_cmd_migrate(kr_opts_t *o);
int kr_cmd_ship(kr_opts_t *o);

#endif
