/* kvcrash: a write load that knows which writes were acknowledged, and a
 * verifier for what a kvnode holds after a crash (tests/fault/).
 *
 * Load mode (the default) keeps up to INFLIGHT puts and deletes in flight
 * on one connection (kv_client pipelining), to random integer keys
 * 0..KEYS-1 of one set (with -H HOT, 90% of them to keys 0..HOT-1, so that
 * blocks keep some live records and are defragmented rather than simply
 * emptied), never two at once to the same key.  Every write
 * has a sequence number, BASE + n, unique over a whole test if each run is
 * given a BASE above the last run's.  A put writes, with policy replace,
 * the bins
 *     v = the sequence number, k = the key,
 *     f = FILL(k, v): 0..MAXFILL bytes computed from k and v alone,
 * so a record that is not wholly the one written (torn, mixed with another
 * copy, or misplaced) is detected.  On standard output it writes, in order:
 *     S KEY SEQ p|d     before the write is sent (flushed before sending)
 *     A KEY SEQ MS      when it is acknowledged (MS: wall clock, ms); a
 *                       delete answered "not found" counts as acknowledged
 *     R KEY SEQ         when it is refused with NAMESPACE_FULL (not applied)
 *     U KEY SEQ         (with -T) when it is answered IN_DOUBT or TIMEOUT,
 *                       or not answered in time: it may or may not be applied
 * It stops after COUNT writes have been answered (exit 0), or when the
 * connection is lost or a reply is late (exit 1: the expected end when the
 * test kills kvnode); any other error reply exits 2, as do usage errors.
 * With -T (a cluster under failover) it goes on instead: UNAVAILABLE,
 * WRONG_NODE and KEY_BUSY are R (not applied), IN_DOUBT and TIMEOUT are U,
 * and a reply later than -t makes every write in flight U and reconnects.
 *
 * Verify mode (--verify) reads the log of one load run (files, or standard
 * input) and the state the previous verification saw (--state FILE; none:
 * every key absent), gets every key, and checks that each key holds the
 * effect of the last write that had to survive, or of a write sent after
 * it: never an older one, never a partly written one.  A write had to
 * survive if it was acknowledged, and, with --grace MS --killed-at MS,
 * acknowledged at least MS milliseconds before the kill (for
 * commit-to-device=false).  The state seen is written back to FILE.
 * Prints one "not ok" line per bad key (at most 50) and a summary line;
 * exits 0 if every key is right, 1 if not, 2 on errors.
 *
 * usage: kvcrash [-T] [-e EP] [-n NS] [-s SET] [-k KEYS] [-p INFLIGHT] [-c COUNT]
 *                [-b BASE] [-d DELETE_PCT] [-z MAXFILL] [-H HOT] [-r SEED] [-t MS]
 *        kvcrash --verify [-e EP] [-n NS] [-s SET] [-k KEYS] [-z MAXFILL]
 *                [-t MS] [--state FILE] [--grace MS --killed-at MS] [LOG...] */
#include "kv_client.h"
#include "kv_digest.h"
#include "kv_err.h"
#include "kv_mp.h"
#include "kv_proto.h"
#include "kv_util.h"
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *endpoint, *ns, *set, *state;
    int64_t keys, inflight, count, base, delpct, maxfill, hot, seed, timeout_ms;
    int64_t grace_ms, killed_at_ms;
    bool verify, tolerate;
} opts_t;

static opts_t o = {
    .endpoint = "tcp://127.0.0.1:7700", .ns = "test", .set = "crash", .keys = 1000, .inflight = 32,
    .count = 1000000000, .base = 1, .delpct = 10, .maxfill = 2000, .seed = 1, .timeout_ms = 10000,
    .grace_ms = -1, .killed_at_ms = -1,
};

static uint64_t s_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* FILL(k, v): its length, and its bytes into out (MAXFILL bytes). */
static size_t s_fill(int64_t key, int64_t seq, uint8_t *out)
{
    uint64_t h = s_mix((uint64_t) key * 0x100000001b3ull ^ s_mix((uint64_t) seq));
    size_t n = (size_t) (h % (uint64_t) (o.maxfill + 1));
    uint64_t x = h | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out[i] = (uint8_t) ((x * 2685821657736338717ull) >> 56);
    }
    return n;
}

static uint64_t s_rng;
static uint64_t s_rand(void)
{
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return s_rng * 2685821657736338717ull;
}

static int64_t s_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A request for one record: get, put (replace; bins v, k, f) or delete. */
static void s_request(kv_req_t *req, int op, int64_t key, int64_t seq, uint8_t *fill)
{
    kv_req_init(req, op);
    kv_key_t k = {.type = KV_KEY_INT, .i = key};
    if (kv_req_record(req, o.ns, o.set, &k, op == KV_OP_PUT) != 0)
        kv_die(2, "set name '%s' too long", o.set);
    if (op != KV_OP_PUT)
        return;
    kv_req_int(req, "exists", KV_EXISTS_REPLACE);
    msgpack_packer *pk = kv_req_field(req, "bins");
    msgpack_pack_map(pk, 3);
    kv_mp_pack_cstr(pk, "v");
    msgpack_pack_int64(pk, seq);
    kv_mp_pack_cstr(pk, "k");
    msgpack_pack_int64(pk, key);
    kv_mp_pack_cstr(pk, "f");
    size_t n = s_fill(key, seq, fill);
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, fill, n);
}

/* ---- load ---- */

typedef struct {
    uint64_t reqid;
    int64_t key, seq;
    bool del, used;
} slot_t;

static int s_load(void)
{
    char why[512];
    kv_client_t *c = kv_client_new(o.endpoint, why, sizeof why);
    if (!c)
        kv_die(2, "%s", why);
    if (o.keys < 2 * o.inflight)
        kv_die(2, "-k must be at least twice -p (keys %" PRId64 ", in flight %" PRId64 ")", o.keys, o.inflight);
    if (o.hot && (o.hot < 2 * o.inflight || o.hot >= o.keys))
        kv_die(2, "-H must be at least twice -p and less than -k");
    s_rng = s_mix((uint64_t) o.seed) | 1;
    bool *busy = calloc((size_t) o.keys, 1);
    slot_t *slots = calloc((size_t) o.inflight, sizeof *slots);
    uint8_t *fill = malloc((size_t) o.maxfill + 1);
    if (!busy || !slots || !fill)
        kv_die(2, "out of memory");
    int64_t sent = 0, answered = 0, acked = 0, full = 0, doubt = 0, refused = 0;
    int status = 0;
    while (answered < o.count) {
        /* fill the pipeline: log every write, flush the log, then send */
        kv_req_t reqs[64];
        int nreq = 0, idx[64];
        while (sent < o.count && kv_client_inflight(c) + nreq < o.inflight && nreq < 64) {
            int64_t key;
            do
                key = (int64_t) (s_rand() % (uint64_t) (o.hot && s_rand() % 10 ? o.hot : o.keys));
            while (busy[key]);
            int s = 0;
            while (slots[s].used)
                s++;
            bool del = (int64_t) (s_rand() % 100) < o.delpct;
            int64_t seq = o.base + sent++;
            slots[s] = (slot_t){0, key, seq, del, true};
            busy[key] = true;
            s_request(&reqs[nreq], del ? KV_OP_DELETE : KV_OP_PUT, key, seq, fill);
            idx[nreq++] = s;
            printf("S %" PRId64 " %" PRId64 " %c\n", key, seq, del ? 'd' : 'p');
        }
        fflush(stdout);
        for (int i = 0; i < nreq; i++) {
            if (kv_client_send(c, &reqs[i]) != 0)
                kv_die(2, "send: %s", kv_client_error(c));
            slots[idx[i]].reqid = reqs[i].hdr.reqid;
            kv_req_destroy(&reqs[i]);
        }
        kv_reply_t rep;
        if (kv_client_recv(c, &rep, (int) o.timeout_ms) != 0) {
            fprintf(stderr, "kvcrash: %s\n", kv_client_error(c));
            if (!o.tolerate) {
                status = 1;
                break;
            }
            /* every write in flight is in doubt; start again on a new connection */
            for (int i = 0; i < o.inflight; i++)
                if (slots[i].used) {
                    printf("U %" PRId64 " %" PRId64 "\n", slots[i].key, slots[i].seq);
                    busy[slots[i].key] = false;
                    slots[i].used = false;
                    answered++;
                    doubt++;
                }
            fflush(stdout);
            kv_client_destroy(&c);
            if (!(c = kv_client_new(o.endpoint, why, sizeof why)))
                kv_die(2, "%s", why);
            continue;
        }
        int s = 0;
        while (s < o.inflight && !(slots[s].used && slots[s].reqid == rep.hdr.reqid))
            s++;
        if (s == o.inflight)
            kv_die(2, "reply to unknown request %" PRIu64, rep.hdr.reqid);
        slot_t *sl = &slots[s];
        int st = rep.hdr.status;
        if (st == KV_OK || (st == KV_ERR_NOT_FOUND && sl->del)) {
            printf("A %" PRId64 " %" PRId64 " %" PRId64 "\n", sl->key, sl->seq, s_wall_ms());
            acked++;
        } else if (st == KV_ERR_NS_FULL) {
            printf("R %" PRId64 " %" PRId64 "\n", sl->key, sl->seq);
            if (full++ == 0) {
                char e[512];
                fprintf(stderr, "kvcrash: first refusal: %s of key %" PRId64 " (seq %" PRId64 ", %zu bytes of f): %s\n",
                        sl->del ? "delete" : "put", sl->key, sl->seq, sl->del ? 0 : s_fill(sl->key, sl->seq, fill),
                        kv_reply_error(&rep, e, sizeof e));
            }
        } else if (o.tolerate && (st == KV_ERR_UNAVAILABLE || st == KV_ERR_WRONG_NODE || st == KV_ERR_KEY_BUSY)) {
            printf("R %" PRId64 " %" PRId64 "\n", sl->key, sl->seq);
            refused++;
        } else if (o.tolerate && (st == KV_ERR_IN_DOUBT || st == KV_ERR_TIMEOUT)) {
            printf("U %" PRId64 " %" PRId64 "\n", sl->key, sl->seq);
            doubt++;
        } else {
            char e[512];
            fflush(stdout);
            kv_die(2, "%s of key %" PRId64 " (seq %" PRId64 "): %s: %s", sl->del ? "delete" : "put", sl->key,
                   sl->seq, kv_err_name(st), kv_reply_error(&rep, e, sizeof e));
        }
        kv_reply_close(&rep);
        busy[sl->key] = false;
        sl->used = false;
        answered++;
    }
    fflush(stdout);
    fprintf(stderr, "kvcrash: %" PRId64 " writes sent, %" PRId64 " acknowledged, %" PRId64
                    " refused (namespace full), %" PRId64 " refused (cluster), %" PRId64 " in doubt, %d in flight at the end\n",
            sent, acked, full, refused, doubt, kv_client_inflight(c));
    kv_client_destroy(&c);
    free(busy);
    free(slots);
    free(fill);
    return status;
}

/* ---- verify ---- */

typedef struct {
    int64_t key, seq, ack_ms; /* ack_ms: -1 not acknowledged */
    bool del, refused;
} op_t;

static int s_by_seq(const void *a, const void *b)
{
    int64_t x = ((const op_t *) a)->seq, y = ((const op_t *) b)->seq;
    return x < y ? -1 : x > y;
}

static int s_by_key_seq(const void *a, const void *b)
{
    const op_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static op_t *s_ops;
static size_t s_nops, s_capops;

static void s_read_log(FILE *f, const char *name)
{
    char line[256];
    size_t lineno = 0;
    size_t first = s_nops;
    /* pass 1: S lines; A and R lines are applied after sorting */
    typedef struct { char t; int64_t key, seq, ms; } ev_t;
    ev_t *ev = NULL;
    size_t nev = 0, capev = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char t, kind = 0;
        int64_t key, seq, ms = 0;
        int n = sscanf(line, "%c %" SCNd64 " %" SCNd64 " %" SCNd64, &t, &key, &seq, &ms);
        if (n >= 3 && t == 'S' && sscanf(line, "S %" SCNd64 " %" SCNd64 " %c", &key, &seq, &kind) == 3
            && (kind == 'p' || kind == 'd')) {
            if (s_nops == s_capops) {
                s_capops = s_capops ? 2 * s_capops : 4096;
                s_ops = realloc(s_ops, s_capops * sizeof *s_ops);
                if (!s_ops)
                    kv_die(2, "out of memory");
            }
            s_ops[s_nops++] = (op_t){key, seq, -1, kind == 'd', false};
        } else if (n >= 3 && t == 'U') {
            /* in doubt: sent, neither acknowledged nor refused */
        } else if ((n == 4 && t == 'A') || (n >= 3 && t == 'R')) {
            if (nev == capev) {
                capev = capev ? 2 * capev : 4096;
                ev = realloc(ev, capev * sizeof *ev);
                if (!ev)
                    kv_die(2, "out of memory");
            }
            ev[nev++] = (ev_t){t, key, seq, ms};
        } else if (line[strspn(line, " \t\r\n")] != '\0' && line[strlen(line) - 1] == '\n') {
            /* a last line without its newline is a run killed mid-write: ignore it */
            kv_die(2, "%s:%zu: bad log line: %s", name, lineno, line);
        }
    }
    if (s_nops > first) /* an empty log leaves s_ops NULL */
        qsort(s_ops + first, s_nops - first, sizeof *s_ops, s_by_seq);
    for (size_t i = 0; i < nev; i++) {
        op_t k = {.seq = ev[i].seq};
        op_t *op = bsearch(&k, s_ops + first, s_nops - first, sizeof *s_ops, s_by_seq);
        if (!op || op->key != ev[i].key)
            kv_die(2, "%s: %c line for key %" PRId64 " seq %" PRId64 " that was never sent", name, ev[i].t,
                   ev[i].key, ev[i].seq);
        if (ev[i].t == 'A')
            op->ack_ms = ev[i].ms;
        else
            op->refused = true;
    }
    free(ev);
}

/* A key's state: absent (seq 0) or present holding write seq. */
typedef struct {
    int64_t seq;
    bool present;
} state_t;

static int s_verify(int nlogs, char **logs)
{
    state_t *prev = calloc((size_t) o.keys, sizeof *prev);
    state_t *seen = calloc((size_t) o.keys, sizeof *seen);
    if (!prev || !seen)
        kv_die(2, "out of memory");
    if (o.state) {
        FILE *f = fopen(o.state, "r");
        if (f) {
            int64_t key, seq;
            while (fscanf(f, "%" SCNd64 " %" SCNd64, &key, &seq) == 2)
                if (key >= 0 && key < o.keys)
                    prev[key] = (state_t){seq, seq > 0};
            fclose(f);
        } else if (errno != ENOENT)
            kv_die(2, "%s: %s", o.state, strerror(errno));
    }
    if (nlogs == 0)
        s_read_log(stdin, "stdin");
    for (int i = 0; i < nlogs; i++) {
        FILE *f = fopen(logs[i], "r");
        if (!f)
            kv_die(2, "%s: %s", logs[i], strerror(errno));
        s_read_log(f, logs[i]);
        fclose(f);
    }
    if (s_nops)
        qsort(s_ops, s_nops, sizeof *s_ops, s_by_key_seq);

    /* read every key, pipelined */
    char why[512];
    kv_client_t *c = kv_client_new(o.endpoint, why, sizeof why);
    if (!c)
        kv_die(2, "%s", why);
    uint8_t *fill = malloc((size_t) o.maxfill + 1);
    if (!fill)
        kv_die(2, "out of memory");
    int64_t nextkey = 0, got = 0, bad = 0;
    uint64_t first_id = 0;
    while (got < o.keys) {
        while (nextkey < o.keys && kv_client_inflight(c) < 64) {
            kv_req_t req;
            s_request(&req, KV_OP_GET, nextkey, 0, fill);
            if (kv_client_send(c, &req) != 0)
                kv_die(2, "send: %s", kv_client_error(c));
            if (nextkey == 0)
                first_id = req.hdr.reqid;
            kv_req_destroy(&req);
            nextkey++;
        }
        kv_reply_t rep;
        if (kv_client_recv(c, &rep, (int) o.timeout_ms) != 0)
            kv_die(2, "get: %s", kv_client_error(c));
        int64_t key = (int64_t) (rep.hdr.reqid - first_id); /* ids are consecutive */
        if (key < 0 || key >= o.keys)
            kv_die(2, "reply to unknown request %" PRIu64, rep.hdr.reqid);
        int st = rep.hdr.status;
        if (st == KV_ERR_NOT_FOUND)
            seen[key] = (state_t){0, false};
        else if (st != KV_OK) {
            char e[512];
            printf("not ok key %" PRId64 ": get failed: %s: %s\n", key, kv_err_name(st),
                   kv_reply_error(&rep, e, sizeof e));
            seen[key] = (state_t){-1, true};
            bad++;
        } else {
            /* bins must be exactly v, k, f with f = FILL(k, v) */
            kv_mp_t r;
            uint32_t n = 0;
            int64_t v = -1, k = -1;
            const uint8_t *fb = NULL;
            uint32_t fl = 0;
            int have = 0;
            bool ok = kv_body_get(kv_reply_data(&rep), kv_reply_size(&rep), "bins", &r) == 0
                      && kv_mp_read_map(&r, &n) == 0 && n == 3;
            for (uint32_t i = 0; ok && i < n; i++) {
                const char *name;
                uint32_t nl;
                if (kv_mp_read_str(&r, &name, &nl) != 0 || nl != 1)
                    ok = false;
                else if (name[0] == 'v' && kv_mp_read_int(&r, &v) == 0)
                    have |= 1;
                else if (name[0] == 'k' && kv_mp_read_int(&r, &k) == 0)
                    have |= 2;
                else if (name[0] == 'f' && kv_mp_read_bin(&r, &fb, &fl) == 0)
                    have |= 4;
                else
                    ok = false;
            }
            ok = ok && have == 7 && k == key && v > 0;
            if (ok) {
                size_t want = s_fill(key, v, fill);
                ok = want == fl && memcmp(fill, fb, fl) == 0;
            }
            if (!ok) {
                printf("not ok key %" PRId64 ": the record is not whole (bins k=%" PRId64 " v=%" PRId64
                       ", %u bytes of f)\n",
                       key, k, v, fl);
                seen[key] = (state_t){-1, true};
                bad++;
            } else
                seen[key] = (state_t){v, true};
        }
        kv_reply_close(&rep);
        got++;
    }
    kv_client_destroy(&c);

    /* compare with what the log allows */
    int64_t present = 0, unacked_applied = 0, unacked_lost = 0, must = 0;
    size_t i = 0;
    for (int64_t key = 0; key < o.keys; key++) {
        while (i < s_nops && s_ops[i].key < key)
            i++;
        size_t lo = i;
        while (i < s_nops && s_ops[i].key == key)
            i++;
        size_t hi = i;
        if (seen[key].present && seen[key].seq > 0)
            present++;
        if (seen[key].seq < 0)
            continue; /* already reported */
        /* the last write that had to survive */
        long last = -1;
        for (size_t j = lo; j < hi; j++) {
            const op_t *op = &s_ops[j];
            bool required = op->ack_ms >= 0
                            && (o.grace_ms < 0 || op->ack_ms <= o.killed_at_ms - o.grace_ms);
            if (required)
                last = (long) j;
        }
        /* allowed: that write (or, if none, the previous state), or any
         * later write that was not refused */
        bool ok;
        if (last >= 0) {
            must++;
            const op_t *op = &s_ops[last];
            ok = op->del ? !seen[key].present : seen[key].present && seen[key].seq == op->seq;
        } else
            ok = seen[key].present == prev[key].present && (!prev[key].present || seen[key].seq == prev[key].seq);
        for (size_t j = last >= 0 ? (size_t) last + 1 : lo; !ok && j < hi; j++) {
            const op_t *op = &s_ops[j];
            if (!op->refused && (op->del ? !seen[key].present : seen[key].present && seen[key].seq == op->seq))
                ok = true;
        }
        /* statistics: the write in flight when the node died, if any */
        if (hi > lo && s_ops[hi - 1].ack_ms < 0 && !s_ops[hi - 1].refused) {
            const op_t *op = &s_ops[hi - 1];
            if (op->del ? !seen[key].present : seen[key].present && seen[key].seq == op->seq)
                unacked_applied++;
            else
                unacked_lost++;
        }
        if (!ok) {
            bad++;
            if (bad <= 50) {
                printf("not ok key %" PRId64 ": holds %s", key, seen[key].present ? "write " : "nothing");
                if (seen[key].present)
                    printf("%" PRId64, seen[key].seq);
                if (last >= 0)
                    printf("; last write that had to survive: %s %" PRId64 " (acknowledged at %" PRId64 ")",
                           s_ops[last].del ? "delete" : "put", s_ops[last].seq, s_ops[last].ack_ms);
                else
                    printf("; before this run it held %s %" PRId64, prev[key].present ? "write" : "nothing",
                           prev[key].seq);
                printf("; later writes:");
                for (size_t j = last >= 0 ? (size_t) last + 1 : lo; j < hi; j++)
                    printf(" %s %" PRId64 "%s", s_ops[j].del ? "delete" : "put", s_ops[j].seq,
                           s_ops[j].refused ? " (refused)" : s_ops[j].ack_ms >= 0 ? " (acked)" : "");
                printf("\n");
            }
        }
    }
    printf("kvcrash: verified %" PRId64 " keys (%zu writes in the log): %" PRId64 " present, %" PRId64
           " with a write that had to survive, %" PRId64 " unacknowledged writes found applied, %" PRId64
           " not applied; %" PRId64 " bad\n",
           o.keys, s_nops, present, must, unacked_applied, unacked_lost, bad);
    if (o.state) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", o.state);
        FILE *f = fopen(tmp, "w");
        if (!f)
            kv_die(2, "%s: %s", tmp, strerror(errno));
        for (int64_t key = 0; key < o.keys; key++)
            if (seen[key].present && seen[key].seq > 0)
                fprintf(f, "%" PRId64 " %" PRId64 "\n", key, seen[key].seq);
        if (fclose(f) != 0 || rename(tmp, o.state) != 0)
            kv_die(2, "%s: %s", o.state, strerror(errno));
    }
    free(prev);
    free(seen);
    free(fill);
    free(s_ops);
    return bad ? 1 : 0;
}

static void s_usage(void)
{
    fprintf(stderr, "usage: kvcrash [-T] [-e EP] [-n NS] [-s SET] [-k KEYS] [-p INFLIGHT] [-c COUNT] [-b BASE]\n"
                    "               [-d DELETE_PCT] [-z MAXFILL] [-H HOT] [-r SEED] [-t MS]\n"
                    "       kvcrash --verify [-e EP] [-n NS] [-s SET] [-k KEYS] [-z MAXFILL] [-t MS]\n"
                    "               [--state FILE] [--grace MS --killed-at MS] [LOG...]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    kv_progname = "kvcrash";
    enum { OPT_VERIFY = 256, OPT_STATE, OPT_GRACE, OPT_KILLED };
    static const struct option longopts[] = {
        {"verify", no_argument, NULL, OPT_VERIFY}, {"state", required_argument, NULL, OPT_STATE},
        {"grace", required_argument, NULL, OPT_GRACE}, {"killed-at", required_argument, NULL, OPT_KILLED},
        {NULL, 0, NULL, 0},
    };
    const char *env = getenv("KV_ENDPOINT");
    if (env && *env)
        o.endpoint = env;
    int c;
#define NUM(lo, hi, dst)                                                            \
    do {                                                                            \
        if (kv_parse_int(optarg, lo, hi, &dst) != 0)                                \
            kv_die(2, "-%c '%s': expected an integer from %lld to %lld", c, optarg, \
                   (long long) (lo), (long long) (hi));                            \
    } while (0)
    while ((c = getopt_long(argc, argv, "e:n:s:k:p:c:b:d:z:H:r:t:T", longopts, NULL)) != -1) {
        switch (c) {
        case 'T': o.tolerate = true; break;
        case 'e': o.endpoint = optarg; break;
        case 'n': o.ns = optarg; break;
        case 's': o.set = optarg; break;
        case 'k': NUM(1, 10000000, o.keys); break;
        case 'p': NUM(1, 1000, o.inflight); break;
        case 'c': NUM(1, INT64_MAX / 4, o.count); break;
        case 'b': NUM(1, INT64_MAX / 4, o.base); break;
        case 'd': NUM(0, 100, o.delpct); break;
        case 'z': NUM(0, 1 << 20, o.maxfill); break;
        case 'H': NUM(0, 10000000, o.hot); break;
        case 'r': NUM(0, INT64_MAX, o.seed); break;
        case 't': NUM(1, 3600000, o.timeout_ms); break;
        case OPT_VERIFY: o.verify = true; break;
        case OPT_STATE: o.state = optarg; break;
        case OPT_GRACE: NUM(0, 3600000, o.grace_ms); break;
        case OPT_KILLED: NUM(0, INT64_MAX, o.killed_at_ms); break;
        default: s_usage();
        }
    }
    if ((o.grace_ms < 0) != (o.killed_at_ms < 0))
        kv_die(2, "--grace and --killed-at go together");
    if (!o.verify && optind < argc)
        s_usage();
    return o.verify ? s_verify(argc - optind, argv + optind) : s_load();
}
