/* ship: ship every change of a namespace on SRC (a kvnode or a cluster)
 * to DST (another), pass after pass, in the spirit of Aerospike's XDR
 * (kvrepl(1), SHIP).
 *
 * A pass is a raw scan of SRC's 4096 partitions (in several streams;
 * through a router, each partition's master) for what was updated after
 * the cursor, records and tombstones, each merged into DST with lww (the
 * later update wins), pipelined.  Once the pass has been read entirely
 * and every merge answered, the cursor moves to the smallest "now" of the
 * pass's pages minus --overlap and is written durably.  Whatever a pass
 * did not return was updated at or before its page's "now" (so this pass
 * or an earlier one shipped it) or will be returned by the next pass,
 * since every later write on a node gets a later last-update time;
 * --overlap covers masters whose clocks are behind (a new master after a
 * failover).  A failed pass leaves the cursor where it was and is run
 * again after a pause, so a change is shipped at least once; re-shipping
 * is harmless, as a merge is idempotent.
 *
 * DST's replicas apply what its masters send them only if it has a
 * higher generation (or the same and a later update), whereas an lww
 * merge can put a copy with a lower generation on a master (a record
 * deleted and created again on SRC, its generations started anew): the
 * replica would refuse it and keep the old copy.  So ship first reads
 * DST's copies of what it is about to send (a batch get, metadata only,
 * per PENDING_MAX copies) and, where DST holds a live record with a higher
 * generation and an earlier update, deletes it first with a tombstone one
 * generation past it, just before the copy's update; a tombstone is sent
 * with a generation past DST's record for the same reason.  A copy DST
 * holds already, or a tombstone of a record DST does not hold, is not
 * sent at all. */
#include "kvrepl.h"
#include "kv_err.h"
#include "kv_util.h"
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETRY_MS 1000      /* the pause after a failed pass, */
#define RETRY_MAX_MS 10000 /* doubled after each one up to this */
#define PENDING_MAX 1000   /* copies read before DST's are asked for, */
#define PENDING_BYTES (16u << 20) /* or fewer once their merges hold this much */

static volatile sig_atomic_t s_stop; /* the signal that asked ship to stop */

static void s_on_signal(int sig)
{
    s_stop = sig;
}

/* What was shipped. */
typedef struct {
    uint64_t records, tombstones; /* read from SRC and shipped */
    uint64_t skipped;             /* records with none of --bins */
    uint64_t applied, not_applied;
    uint64_t held;                /* of the not applied, those not even sent: DST had them */
    uint64_t deleted_first;       /* records DST held with a higher generation, deleted first */
} counts_t;

/* A copy read from SRC, waiting for DST's copy of it to be read. */
typedef struct {
    uint8_t digest[KV_DIGEST_SIZE];
    bool del;       /* a tombstone */
    uint32_t gen;
    uint64_t lut;
    kv_req_t req;   /* a record's merge, built when it was read */
    bool has_req;   /* req is built and not yet the sink's */
} pending_t;

typedef struct {
    const kr_opts_t *o;
    const char *ns;
    kr_end_t src, dst;
    bool open;               /* src and dst are open */
    uint64_t cursor;         /* every change up to it has been shipped (ms) */
    uint64_t shipped_wall;   /* wall clock when the last completed pass began (ms), 0: none yet */
    uint64_t passes, failed; /* passes completed, failed */
    counts_t total, pass;    /* over the run, in the pass */
    msgpack_sbuffer bins;    /* the bins of a record that --bins keeps */
    pending_t *pending;      /* PENDING_MAX copies read, not yet sent */
    int npending;
    size_t pending_bytes;    /* in their merge requests */
    uint64_t tag;            /* merges sent */
    kr_progress_t pg;
    bool refused;
    char refusal[600];       /* the first merge DST refused in the pass */
} ship_t;

/* An answer: the first refusal of a pass fails it. */
static void s_answer(void *arg, uint64_t tag, const uint8_t *digest, int status, const char *detail)
{
    ship_t *sh = arg;
    if (status == KV_OK || sh->refused)
        return;
    char hex[2 * KV_DIGEST_SIZE + 1];
    kv_digest_hex(digest, hex);
    snprintf(sh->refusal, sizeof sh->refusal, "--to %s refused the merge of %s (partition %u): %s%s%s",
             sh->o->to, hex, kv_partition(digest), kv_err_name(status), *detail ? ": " : "", detail);
    sh->refused = true;
}

/* Connect to SRC and DST (once, and again after a failed pass).  0, or -1
 * with why. */
static int s_open(ship_t *sh, char *why, size_t whylen)
{
    const kr_opts_t *o = sh->o;
    if (sh->open)
        return 0;
    if (kr_end_open(&sh->src, o->from, "--from", o->timeout_ms, NULL, why, whylen) != 0)
        return -1;
    if (kr_end_open(&sh->dst, o->to, "--to", o->timeout_ms, NULL, why, whylen) != 0
        || !kr_end_sink(&sh->dst, o->in_flight, o->timeout_ms, s_answer, sh, why, whylen)) {
        kr_end_close(&sh->src);
        kr_end_close(&sh->dst);
        return -1;
    }
    sh->open = true;
    return 0;
}

/* Drop the connections (what a failed pass left in flight goes too). */
static void s_close(ship_t *sh)
{
    if (!sh->open)
        return;
    kr_end_close(&sh->src);
    kr_end_close(&sh->dst);
    sh->open = false;
}

/* The merge request of a copy (record or tombstone), last writer wins;
 * req is initialised here. */
static void s_merge_req(ship_t *sh, kv_req_t *req, const kr_rec_t *rec)
{
    kr_rec_merge_req(req, sh->ns, rec, false);
    kv_mp_pack_bool(kv_req_field(req, "lww"), true);
}

/* The same for a tombstone of digest: generation gen (at most 2^32-1),
 * last-update time lut. */
static void s_tomb_req(ship_t *sh, kv_req_t *req, const uint8_t *digest, uint64_t gen, uint64_t lut)
{
    kr_rec_t t = {.del = true, .gen = gen > UINT32_MAX ? UINT32_MAX : gen, .lut = lut};
    memcpy(t.digest, digest, KV_DIGEST_SIZE);
    s_merge_req(sh, req, &t);
}

/* Drop the copies waiting (a failed pass). */
static void s_pending_clear(ship_t *sh)
{
    for (int i = 0; i < sh->npending; i++)
        if (sh->pending[i].has_req)
            kv_req_destroy(&sh->pending[i].req);
    sh->npending = 0;
    sh->pending_bytes = 0;
}

/* DST's copy of each waiting copy: its generation and update time into
 * gen and lut (gen 0: DST holds no live record), by batch gets.  0, or -1
 * with why. */
static int s_dst_copies(ship_t *sh, uint32_t *gen, uint64_t *lut, char *why, size_t whylen)
{
    kv_client_t *c = sh->dst.scan_c;
    for (int i = 0; i < sh->npending;) {
        kv_req_t req;
        kv_req_init(&req, KV_OP_BATCH);
        kv_req_str(&req, "ns", sh->ns, strlen(sh->ns));
        kv_mp_pack_bool(kv_req_field(&req, "nobins"), true);
        msgpack_packer *pk = kv_req_field(&req, "keys");
        msgpack_pack_array(pk, (uint32_t) (sh->npending - i));
        for (int k = i; k < sh->npending; k++) {
            msgpack_pack_bin(pk, KV_DIGEST_SIZE);
            msgpack_pack_bin_body(pk, sh->pending[k].digest, KV_DIGEST_SIZE);
        }
        kv_reply_t rep;
        int rc = kv_client_call(c, &req, &rep, sh->o->timeout_ms);
        kv_req_destroy(&req);
        if (rc != 0) {
            snprintf(why, whylen, "--to %s: reading its copies: %s", sh->o->to, kv_client_error(c));
            return -1;
        }
        char err[300] = "malformed reply", detail[256];
        const uint8_t *body = kv_reply_data(&rep);
        size_t blen = kv_reply_size(&rep);
        kv_mp_t v;
        int64_t done = 0, st = KV_OK;
        uint32_t count = 0;
        bool ok = rep.hdr.status == KV_OK && kv_body_get(body, blen, "done", &v) == 0 && kv_mp_read_int(&v, &done) == 0
                  && done >= 1 && done <= sh->npending - i && kv_body_get(body, blen, "records", &v) == 0
                  && kv_mp_read_array(&v, &count) == 0 && count == (uint32_t) done;
        if (rep.hdr.status != KV_OK)
            snprintf(err, sizeof err, "%s: %s", kv_err_name(rep.hdr.status), kv_reply_error(&rep, detail, sizeof detail));
        for (uint32_t k = 0; ok && k < count; k++, i++) {
            const uint8_t *rs = v.p;
            kv_mp_t f;
            int64_t g = 0, l = 0;
            ok = kv_mp_skip(&v) == 0 && kv_body_get(rs, (size_t) (v.p - rs), "status", &f) == 0
                 && kv_mp_read_int(&f, &st) == 0;
            if (ok && st == KV_OK)
                ok = kv_body_get(rs, (size_t) (v.p - rs), "gen", &f) == 0 && kv_mp_read_int(&f, &g) == 0 && g >= 1
                     && kv_body_get(rs, (size_t) (v.p - rs), "lut", &f) == 0 && kv_mp_read_int(&f, &l) == 0;
            else if (ok && st != KV_ERR_NOT_FOUND) {
                snprintf(err, sizeof err, "%s", kv_err_name((int) st));
                ok = false;
            }
            gen[i] = (uint32_t) g;
            lut[i] = (uint64_t) l;
        }
        kv_reply_close(&rep);
        if (!ok) {
            snprintf(why, whylen, "--to %s: reading its copies: %s", sh->o->to, err);
            return -1;
        }
    }
    return 0;
}

/* Delete DST's record (generation dgen) just before a copy that replaces
 * it (update time lut), and wait for the answer.  0, or -1 with why. */
static int s_delete_first(ship_t *sh, const pending_t *p, uint32_t dgen, char *why, size_t whylen)
{
    kv_req_t req;
    kv_reply_t rep;
    s_tomb_req(sh, &req, p->digest, (uint64_t) dgen + 1, p->lut - 1);
    int rc = kv_client_call(sh->dst.scan_c, &req, &rep, sh->o->timeout_ms);
    kv_req_destroy(&req);
    if (rc != 0) {
        snprintf(why, whylen, "--to %s: %s", sh->o->to, kv_client_error(sh->dst.scan_c));
        return -1;
    }
    char err[300];
    if (rep.hdr.status != KV_OK) {
        char hex[2 * KV_DIGEST_SIZE + 1];
        kv_digest_hex(p->digest, hex);
        snprintf(why, whylen, "--to %s refused the delete of %s (its copy has a higher generation): %s: %s",
                 sh->o->to, hex, kv_err_name(rep.hdr.status), kv_reply_error(&rep, err, sizeof err));
    }
    kv_reply_close(&rep);
    if (rep.hdr.status != KV_OK)
        return -1;
    sh->pass.deleted_first++;
    return 0;
}

/* Send the waiting copies to DST, each against DST's copy of it (see
 * the top of the file).  0, or -1 with why. */
static int s_flush(ship_t *sh, char *why, size_t whylen)
{
    uint32_t gen[PENDING_MAX];
    uint64_t lut[PENDING_MAX];
    int rc = sh->npending ? s_dst_copies(sh, gen, lut, why, whylen) : 0;
    for (int i = 0; rc == 0 && i < sh->npending; i++) {
        pending_t *p = &sh->pending[i];
        kv_req_t req;
        if (p->del ? !gen[i] : gen[i] == p->gen && lut[i] == p->lut) {
            sh->pass.held++; /* nothing to delete, or the very copy */
            continue;
        }
        if (p->del) /* one past DST's record, which its replicas then delete */
            s_tomb_req(sh, &req, p->digest, p->gen > gen[i] ? p->gen : (uint64_t) gen[i] + 1, p->lut);
        else if (gen[i] > p->gen && lut[i] < p->lut && (rc = s_delete_first(sh, p, gen[i], why, whylen)) != 0)
            break;
        p->has_req = false; /* the sink's now */
        if (kr_sink_send(sh->dst.sink, p->del ? &req : &p->req, ++sh->tag) != 0) {
            snprintf(why, whylen, "--to %s: %s", sh->o->to, kr_sink_error(sh->dst.sink));
            rc = -1;
        }
    }
    s_pending_clear(sh);
    return rc;
}

/* Take one record or tombstone read from SRC (a record with none of
 * --bins is skipped); send the copies waiting once there are
 * PENDING_MAX, or PENDING_BYTES of them.  0, or -1 with why. */
static int s_ship(ship_t *sh, const kr_rec_t *rec, char *why, size_t whylen)
{
    kr_rec_t copy = *rec;
    if (!rec->del && sh->o->bins.n) {
        if (kr_rec_keep_bins(rec, &sh->o->bins, &sh->bins) == 0) {
            sh->pass.skipped++;
            return 0;
        }
        copy.bins = (const uint8_t *) sh->bins.data;
        copy.bins_len = (uint32_t) sh->bins.size;
    }
    pending_t *p = &sh->pending[sh->npending++];
    memcpy(p->digest, rec->digest, KV_DIGEST_SIZE);
    p->del = rec->del;
    p->gen = (uint32_t) rec->gen;
    p->lut = rec->lut;
    if (rec->del)
        sh->pass.tombstones++;
    else {
        s_merge_req(sh, &p->req, &copy);
        sh->pending_bytes += p->req.body.size;
        sh->pass.records++;
    }
    p->has_req = !rec->del;
    return sh->npending < PENDING_MAX && sh->pending_bytes < PENDING_BYTES ? 0 : s_flush(sh, why, whylen);
}

/* The lag: seconds since the last completed pass began (every change
 * made on SRC before then is on DST). */
static double s_lag(const ship_t *sh)
{
    return (double) ((int64_t) kv_wall_ms() - (int64_t) sh->shipped_wall) / 1000.0;
}

/* One pass.  0 once SRC has been read entirely, every merge answered and
 * the new cursor written; -1 with why (empty if a signal stopped it). */
static int s_pass(ship_t *sh, char *why, size_t whylen)
{
    const kr_opts_t *o = sh->o;
    memset(&sh->pass, 0, sizeof sh->pass);
    sh->refused = false;
    why[0] = '\0';
    if (s_open(sh, why, whylen) != 0)
        return -1;
    kr_sink_t *sink = sh->dst.sink;
    kr_sink_stats_t st0 = *kr_sink_stats(sink);
    kr_scan_opts_t so = {.ns = sh->ns, .set = o->set, .pfrom = 0, .pto = KV_PARTITIONS, .raw = true,
                         .any = sh->src.kind == KR_NODE, .tombstones = true, .timeout_ms = o->timeout_ms,
                         .streams = kr_end_streams(&sh->src), .since = sh->cursor};
    kr_scan_t *s = kr_scan_new(sh->src.scan_c, &so);
    kr_rec_t rec;
    int got = -1, rc = -1;
    uint64_t t0 = kv_mono_us(), began = kv_wall_ms();
    if (!s)
        snprintf(why, whylen, "--from %s: %s", o->from, kv_client_error(sh->src.scan_c));
    while (s && !s_stop && !sh->refused && (got = kr_scan_next(s, &rec)) == 1) {
        if (s_ship(sh, &rec, why, whylen) != 0)
            break;
        if (kr_progress_due(&sh->pg))
            fprintf(stderr, "\rkvrepl: ship: pass %llu: %llu records, %llu tombstones (%.0f records/s)",
                    (unsigned long long) (sh->passes + sh->failed + 1), (unsigned long long) sh->pass.records,
                    (unsigned long long) sh->pass.tombstones,
                    (double) (sh->pass.records + sh->pass.tombstones) * 1e6 / (double) (kv_mono_us() - t0));
    }
    if (why[0] || s_stop)
        ; /* DST failed, or a signal came */
    else if (got < 0)
        snprintf(why, whylen, "--from %s: %s", o->from, kr_scan_error(s));
    else if (!sh->refused && s_flush(sh, why, whylen) != 0)
        ; /* why says what */
    else if (!sh->refused && kr_sink_drain(sink) != 0)
        snprintf(why, whylen, "--to %s: %s", o->to, kr_sink_error(sink));
    else if (sh->refused)
        snprintf(why, whylen, "%s", sh->refusal);
    else {
        /* every page's "now" is past what it did not return */
        uint64_t now = kr_scan_minnow(s), next = now > (uint64_t) o->overlap_ms ? now - (uint64_t) o->overlap_ms : 0;
        if (kr_cursor_write(o->cursor, next, why, whylen) == 0) {
            sh->cursor = next;
            sh->shipped_wall = began;
            rc = 0;
        }
    }
    if (s_stop) {
        why[0] = '\0';
        rc = -1;
    }
    s_pending_clear(sh);
    kr_scan_destroy(&s);
    const kr_sink_stats_t *st = kr_sink_stats(sink);
    sh->pass.applied = st->applied - st0.applied;
    sh->pass.not_applied = st->not_applied - st0.not_applied + sh->pass.held;
    counts_t *t = &sh->total, *p = &sh->pass;
    t->records += p->records;
    t->tombstones += p->tombstones;
    t->skipped += p->skipped;
    t->applied += p->applied;
    t->not_applied += p->not_applied;
    t->held += p->held;
    t->deleted_first += p->deleted_first;
    if (rc != 0)
        return -1;
    sh->passes++;
    if (o->verbose || p->records || p->tombstones || p->skipped) {
        fprintf(stderr, "%skvrepl: ship: pass %llu: %llu records, %llu tombstones (%llu applied, %llu not applied)",
                kr_progress_cr(&sh->pg), (unsigned long long) (sh->passes + sh->failed),
                (unsigned long long) p->records, (unsigned long long) p->tombstones, (unsigned long long) p->applied,
                (unsigned long long) p->not_applied);
        if (o->bins.n)
            fprintf(stderr, ", %llu skipped (none of --bins)", (unsigned long long) p->skipped);
        if (p->deleted_first)
            fprintf(stderr, ", %llu over a record of a higher generation (deleted first)",
                    (unsigned long long) p->deleted_first);
        fprintf(stderr, " in %.3f s; cursor %llu, lag %.3f s\n", (double) (kv_mono_us() - t0) / 1e6,
                (unsigned long long) sh->cursor, s_lag(sh));
    }
    return 0;
}

/* Sleep ms milliseconds, or until a signal asks to stop. */
static void s_sleep(int ms)
{
    uint64_t end = kv_mono_ms() + (uint64_t) ms, now;
    while (!s_stop && (now = kv_mono_ms()) < end) {
        struct timespec ts = {(time_t) ((end - now) / 1000), (long) ((end - now) % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* "cursor C (lag L s)", without the lag before a pass has completed. */
static const char *s_cursor_text(const ship_t *sh, char *buf, size_t len)
{
    if (sh->shipped_wall)
        snprintf(buf, len, "cursor %llu (lag %.3f s)", (unsigned long long) sh->cursor, s_lag(sh));
    else
        snprintf(buf, len, "cursor %llu", (unsigned long long) sh->cursor);
    return buf;
}

int kr_cmd_ship(kr_opts_t *o)
{
    ship_t *sh = calloc(1, sizeof *sh);
    char why[1024], cur[128];
    if (!sh) {
        kv_warn("ship: out of memory");
        return KR_EXIT_ERROR;
    }
    sh->o = o;
    sh->ns = o->ns ? o->ns : KR_DEFAULT_NS;
    msgpack_sbuffer_init(&sh->bins);
    if (!(sh->pending = calloc(PENDING_MAX, sizeof *sh->pending))) {
        kv_warn("ship: out of memory");
        free(sh);
        return KR_EXIT_ERROR;
    }
    int rc = KR_EXIT_ERROR, found = kr_cursor_read(o->cursor, &sh->cursor, why, sizeof why);
    if (found < 0) {
        kv_warn("ship: --cursor %s; not starting (remove the file to ship everything again)", why);
        goto out;
    }
    if (!found && kr_cursor_write(o->cursor, 0, why, sizeof why) != 0) { /* can it be written at all? */
        kv_warn("ship: --cursor: %s", why);
        goto out;
    }
    struct sigaction sa = {.sa_handler = s_on_signal}; /* no SA_RESTART: a wait returns at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    kv_warn("ship: namespace '%s'%s%s from %s to %s, from %s", sh->ns, o->set ? ", set " : "", o->set ? o->set : "",
            o->from, o->to, found ? s_cursor_text(sh, cur, sizeof cur) : "the start (no cursor file)");
    kr_progress_init(&sh->pg);
    int pause = RETRY_MS;
    rc = KR_EXIT_OK;
    while (!s_stop) {
        if (s_pass(sh, why, sizeof why) == 0) {
            pause = RETRY_MS;
            if (o->once)
                break;
            s_sleep(o->interval_ms);
            continue;
        }
        if (s_stop)
            break;
        sh->failed++;
        s_close(sh);
        if (o->once) {
            kv_warn("%sship: the pass failed: %s; the %s stays", kr_progress_cr(&sh->pg), why,
                    s_cursor_text(sh, cur, sizeof cur));
            rc = KR_EXIT_ERROR;
            break;
        }
        kv_warn("%sship: pass %llu failed: %s; the %s stays; trying again in %.0f s", kr_progress_cr(&sh->pg),
                (unsigned long long) (sh->passes + sh->failed), why, s_cursor_text(sh, cur, sizeof cur),
                pause / 1000.0);
        s_sleep(pause);
        pause = pause * 2 < RETRY_MAX_MS ? pause * 2 : RETRY_MAX_MS;
    }
    const counts_t *t = &sh->total;
    fprintf(stderr,
            "%skvrepl: ship: %s%llu pass%s (%llu failed) in %.3f s: %llu records, %llu tombstones shipped (%llu "
            "applied, %llu not applied)",
            kr_progress_cr(&sh->pg), s_stop ? (s_stop == SIGINT ? "stopped by SIGINT after " : "stopped by SIGTERM after ")
                                            : "",
            (unsigned long long) sh->passes, sh->passes == 1 ? "" : "es", (unsigned long long) sh->failed,
            kr_progress_secs(&sh->pg),
            (unsigned long long) t->records, (unsigned long long) t->tombstones, (unsigned long long) t->applied,
            (unsigned long long) t->not_applied);
    if (o->bins.n)
        fprintf(stderr, ", %llu skipped (none of --bins)", (unsigned long long) t->skipped);
    fprintf(stderr, "; %s\n", s_cursor_text(sh, cur, sizeof cur));
out:
    s_close(sh);
    msgpack_sbuffer_destroy(&sh->bins);
    free(sh->pending);
    free(sh);
    return rc;
}
