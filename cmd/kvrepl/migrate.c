/* migrate: fill node DST with partitions that node SRC (their master)
 * holds, partition by partition: a merge-join of the two nodes' raw scans
 * sends each side the newer copies, and drops from DST the copies SRC
 * does not have that are older than SRC's scan (kvrepl(1), MIGRATE). */
#include "kvrepl.h"
#include "kv_err.h"
#include "kv_util.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WINDOW 128

typedef struct {
    const kr_opts_t *o;
    kr_end_t src, dst;
    kr_scan_t *src_scan;  /* the partition's scan of SRC (its "now" is the cutoff) */
    int pid;              /* the partition being migrated */
    uint64_t sent;        /* copies sent in all (merges and drops) */
    uint64_t to_dst, to_src, dropped;
    uint64_t t0_us;
    bool refused;
    char refusal[600];
} migrate_t;

static void s_fail(void *arg, uint64_t tag, const uint8_t *digest, int status, const char *detail)
{
    migrate_t *m = arg;
    char hex[2 * KV_DIGEST_SIZE + 1];
    kv_digest_hex(digest, hex);
    if (!m->refused)
        snprintf(m->refusal, sizeof m->refusal, "the merge of %s (partition %llu) was refused: %s%s%s", hex,
                 (unsigned long long) tag, kv_err_name(status), *detail ? ": " : "", detail);
    m->refused = true;
}

/* --rate: wait until the next copy may go. */
static void s_pace(migrate_t *m)
{
    if (m->o->rate <= 0)
        return;
    uint64_t due = m->t0_us + m->sent * 1000000u / (uint64_t) m->o->rate, now = kv_mono_us();
    if (due > now) {
        struct timespec ts = {(time_t) ((due - now) / 1000000u), (long) ((due - now) % 1000000u) * 1000};
        nanosleep(&ts, NULL);
    }
}

static int s_send(migrate_t *m, kr_end_t *to, const kr_rec_t *rec, bool drop)
{
    s_pace(m);
    kv_req_t req;
    kr_rec_merge_req(&req, m->o->ns, rec, drop);
    if (kr_sink_send(to->sink, &req, (uint64_t) m->pid) != 0) {
        snprintf(m->refusal, sizeof m->refusal, "%s %s: %s", to->label, to->endpoint, kr_sink_error(to->sink));
        return -1;
    }
    m->sent++;
    return 0;
}

/* One digest of the partition: SRC's copy a, DST's copy b (either may be
 * missing, or a tombstone). */
static int s_pair(void *arg, const kr_rec_t *a, const kr_rec_t *b)
{
    migrate_t *m = arg;
    if (m->refused) /* a merge was refused: stop there */
        return -1;
    if (!a) {
        /* only on DST: older than SRC's scan, it is a stale copy (a newer
         * one may be a write that reached DST as a replica after SRC's
         * page was read); a tombstone there holds no data */
        if (b->del || b->lut >= kr_scan_now(m->src_scan))
            return 0;
        m->dropped++;
        return s_send(m, &m->dst, b, true);
    }
    int c = kr_rec_needs(a, b);
    if (c == 0)
        return 0;
    if (c > 0) { /* DST lacks it or holds an older copy */
        m->to_dst++;
        return s_send(m, &m->dst, a, false);
    }
    m->to_src++; /* DST's is newer: to the master, which replicates it */
    return s_send(m, &m->src, b, false);
}

/* Migrate partition p.  0, or -1 with the reason in m->refusal. */
static int s_partition(migrate_t *m, int p)
{
    char why[1024] = "";
    m->pid = p;
    m->src_scan = kr_end_scan(&m->src, m->o->ns, NULL, p, p + 1, true, true, m->o->timeout_ms, why, sizeof why);
    kr_scan_t *d = m->src_scan ? kr_end_scan(&m->dst, m->o->ns, NULL, p, p + 1, true, true, m->o->timeout_ms, why, sizeof why)
                               : NULL;
    int rc = -1;
    m->refusal[0] = '\0';
    if (!m->src_scan || !d || kr_join(m->src_scan, d, s_pair, m, why, sizeof why) != 0)
        ; /* why or m->refusal says what */
    else if (kr_sink_drain(m->src.sink) != 0 || kr_sink_drain(m->dst.sink) != 0)
        snprintf(why, sizeof why, "%s", kr_sink_error(kr_sink_inflight(m->src.sink) ? m->src.sink : m->dst.sink));
    else if (!m->refused)
        rc = 0;
    if (rc != 0 && !m->refusal[0])
        snprintf(m->refusal, sizeof m->refusal, "%s", why);
    kr_scan_destroy(&m->src_scan);
    kr_scan_destroy(&d);
    return rc;
}

int kr_cmd_migrate(kr_opts_t *o)
{
    migrate_t *m = calloc(1, sizeof *m);
    char why[1024];
    if (!m) {
        kv_warn("migrate: out of memory");
        return KR_EXIT_ERROR;
    }
    m->o = o;
    int rc = KR_EXIT_ERROR;
    if (kr_end_open(&m->src, o->from, "--from", o->timeout_ms, NULL, why, sizeof why) != 0
        || kr_end_open(&m->dst, o->to, "--to", o->timeout_ms, NULL, why, sizeof why) != 0) {
        kv_warn("migrate: %s", why);
        goto out;
    }
    if (m->src.kind != KR_NODE || m->dst.kind != KR_NODE) {
        kv_warn("migrate: %s %s is a kvroute; migrate moves partitions between two kvnodes",
                m->src.kind != KR_NODE ? "--from" : "--to", m->src.kind != KR_NODE ? o->from : o->to);
        goto out;
    }
    if (!kr_end_sink(&m->src, WINDOW, o->timeout_ms, s_fail, m, why, sizeof why)
        || !kr_end_sink(&m->dst, WINDOW, o->timeout_ms, s_fail, m, why, sizeof why)) {
        kv_warn("migrate: %s", why);
        goto out;
    }
    kr_progress_t pg;
    kr_progress_init(&pg);
    m->t0_us = pg.t0_us;
    int done = 0;
    uint64_t bytes = 0;
    for (int p = 0; p < KV_PARTITIONS; p++) {
        if (!o->parts.in[p])
            continue;
        uint64_t sent0 = m->sent, bytes0 = kr_sink_stats(m->src.sink)->bytes + kr_sink_stats(m->dst.sink)->bytes;
        if (s_partition(m, p) != 0) {
            kv_warn("%smigrate: partition %d: %s", kr_progress_cr(&pg), p, m->refusal);
            break;
        }
        bytes = kr_sink_stats(m->src.sink)->bytes + kr_sink_stats(m->dst.sink)->bytes;
        printf("done %d %llu %llu\n", p, (unsigned long long) (m->sent - sent0), (unsigned long long) (bytes - bytes0));
        fflush(stdout);
        done++;
        if (kr_progress_due(&pg))
            fprintf(stderr, "\rkvrepl: migrate: %d of %d partitions, %llu records (%.0f records/s)", done,
                    o->parts.count, (unsigned long long) m->sent, (double) m->sent / kr_progress_secs(&pg));
    }
    double secs = kr_progress_secs(&pg);
    fprintf(stderr,
            "%skvrepl: migrate: %d of %d partitions done, %llu records sent (%llu to --to, %llu to --from, %llu "
            "dropped from --to), %llu bytes, in %.3f s (%.0f records/s, %.2f MB/s)\n",
            kr_progress_cr(&pg), done, o->parts.count, (unsigned long long) m->sent, (unsigned long long) m->to_dst,
            (unsigned long long) m->to_src, (unsigned long long) m->dropped, (unsigned long long) bytes, secs,
            secs > 0 ? (double) m->sent / secs : 0.0, secs > 0 ? (double) bytes / secs / 1e6 : 0.0);
    rc = done == o->parts.count ? KR_EXIT_OK : KR_EXIT_ERROR;
out:
    kr_end_close(&m->src);
    kr_end_close(&m->dst);
    free(m);
    return rc;
}
