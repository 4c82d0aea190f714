/* migrate: fill node DST with partitions that node SRC (their master)
 * holds: a merge-join of the two nodes' raw scans, in partition then
 * digest order, sends each side the better copies, and drops from DST the
 * copies SRC does not have that are older than SRC's scan of their
 * partition (kvrepl(1), MIGRATE).  Each chunk of a run of listed
 * partitions is one scan of each node per pass; once every merge of a
 * pass has been answered, the chunk is joined again while the last pass
 * applied something (at most PASSES passes): a record deleted on SRC after
 * a pass read it, before its copy reached DST, is deleted or dropped
 * there by the next pass.  A partition is done after its chunk's last
 * pass. */
#include "kvrepl.h"
#include "kv_err.h"
#include "kv_util.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WINDOW 128
#define CHUNK 256 /* partitions joined again together */
#define PASSES 3  /* joins of a chunk at most */

typedef struct {
    const kr_opts_t *o;
    kr_end_t src, dst;
    kr_scan_t *src_scan;            /* the pass's scan of SRC (its pages' "now" are the cutoffs) */
    uint64_t copies[KV_PARTITIONS]; /* copies sent for a partition, all passes */
    uint64_t bytes[KV_PARTITIONS];  /* and their bytes */
    int next_done;                  /* the first listed partition not yet printed done */
    int done;                       /* partitions printed done */
    uint64_t sent;                  /* copies sent in all (merges and drops) */
    uint64_t to_dst, to_src, dropped, total_bytes;
    uint64_t later;                 /* copies sent by passes after a chunk's first */
    int pass;                       /* the chunk's pass being run, from 1 */
    kr_progress_t pg;
    bool refused;
    char refusal[600];
} migrate_t;

/* Every answer: a refusal stops the migration. */
static void s_answer(void *arg, uint64_t tag, const uint8_t *digest, int status, const char *detail)
{
    migrate_t *m = arg;
    if (status == KV_OK)
        return;
    char hex[2 * KV_DIGEST_SIZE + 1];
    kv_digest_hex(digest, hex);
    if (!m->refused)
        snprintf(m->refusal, sizeof m->refusal, "partition %llu: the merge of %s was refused: %s%s%s",
                 (unsigned long long) tag, hex, kv_err_name(status), *detail ? ": " : "", detail);
    m->refused = true;
}

/* Print "done" for the listed partitions before upto, in order (their
 * chunk's last pass has been run, every merge answered). */
static void s_done(migrate_t *m, int upto)
{
    const kr_plist_t *pl = &m->o->parts;
    while (!m->refused && m->next_done < upto && m->next_done < KV_PARTITIONS) {
        int p = m->next_done;
        if (pl->in[p]) {
            printf("done %d %llu %llu\n", p, (unsigned long long) m->copies[p], (unsigned long long) m->bytes[p]);
            fflush(stdout);
            m->done++;
        }
        m->next_done++;
    }
}

/* --rate: wait until the next copy may go. */
static void s_pace(migrate_t *m)
{
    if (m->o->rate <= 0)
        return;
    uint64_t due = m->pg.t0_us + m->sent * 1000000u / (uint64_t) m->o->rate, now = kv_mono_us();
    if (due > now) {
        struct timespec ts = {(time_t) ((due - now) / 1000000u), (long) ((due - now) % 1000000u) * 1000};
        nanosleep(&ts, NULL);
    }
}

static int s_send(migrate_t *m, kr_end_t *to, const kr_rec_t *rec, bool drop)
{
    s_pace(m);
    int p = kv_partition(rec->digest);
    kv_req_t req;
    kr_rec_merge_req(&req, m->o->ns, rec, drop);
    uint64_t b0 = kr_sink_stats(to->sink)->bytes;
    if (kr_sink_send(to->sink, &req, (uint64_t) p) != 0) {
        snprintf(m->refusal, sizeof m->refusal, "partition %d: %s %s: %s", p, to->label, to->endpoint,
                 kr_sink_error(to->sink));
        return -1;
    }
    m->sent++;
    m->later += m->pass > 1;
    m->copies[p]++;
    m->bytes[p] += kr_sink_stats(to->sink)->bytes - b0;
    m->total_bytes += kr_sink_stats(to->sink)->bytes - b0;
    return 0;
}

/* One record: SRC's copy a, DST's copy b (either may be missing, or a
 * tombstone). */
static int s_pair(void *arg, const kr_rec_t *a, const kr_rec_t *b)
{
    migrate_t *m = arg;
    int p = kv_partition((a ? a : b)->digest), rc = 0;
    if (kr_progress_due(&m->pg))
        fprintf(stderr, "\rkvrepl: migrate: %d of %d partitions, %llu records sent (%.0f records/s)", m->done,
                m->o->parts.count, (unsigned long long) m->sent, (double) m->sent / kr_progress_secs(&m->pg));
    if (m->refused) /* a merge was refused: stop there */
        return -1;
    if (!a) {
        /* only on DST: older than SRC's scan of the partition, a stale
         * copy (a newer one may be a write that reached DST as a replica
         * after SRC's page was read); a tombstone there holds no data */
        if (!b->del && b->lut < kr_scan_pnow(m->src_scan, p)) {
            m->dropped++;
            rc = s_send(m, &m->dst, b, true);
        }
        return rc;
    }
    int c = kr_rec_needs(a, b);
    if (c > 0) { /* DST lacks it or holds a worse copy */
        m->to_dst++;
        rc = s_send(m, &m->dst, a, false);
    } else if (c < 0) { /* DST's is better: to the master, which replicates it */
        m->to_src++;
        rc = s_send(m, &m->src, b, false);
    }
    return rc;
}

/* One pass over partitions [from, to): join, then wait for every merge.
 * 0, or -1 with the reason in m->refusal. */
static int s_pass(migrate_t *m, int from, int to)
{
    char why[1024] = "";
    m->src_scan = kr_end_scan(&m->src, m->o->ns, NULL, from, to, true, true, m->o->timeout_ms, why, sizeof why);
    kr_scan_t *d =
        m->src_scan ? kr_end_scan(&m->dst, m->o->ns, NULL, from, to, true, true, m->o->timeout_ms, why, sizeof why)
                    : NULL;
    int rc = -1;
    if (!m->src_scan || !d || kr_join(m->src_scan, d, s_pair, m, why, sizeof why) != 0)
        ; /* why or m->refusal says what */
    else if (kr_sink_drain(m->src.sink) != 0 || kr_sink_drain(m->dst.sink) != 0)
        snprintf(why, sizeof why, "%s",
                 kr_sink_error(kr_sink_inflight(m->src.sink) ? m->src.sink : m->dst.sink));
    else if (!m->refused)
        rc = 0;
    if (rc != 0 && !m->refusal[0])
        snprintf(m->refusal, sizeof m->refusal, "partitions %d-%d: %s", from, to - 1, why);
    kr_scan_destroy(&m->src_scan);
    kr_scan_destroy(&d);
    return rc;
}

/* Copies applied on either node so far. */
static uint64_t s_applied(const migrate_t *m)
{
    return kr_sink_stats(m->src.sink)->applied + kr_sink_stats(m->dst.sink)->applied;
}

/* Migrate the run of partitions [from, to), chunk by chunk, each joined
 * again while its last pass applied something (a pass that applies
 * nothing cannot have brought a stale copy).  0, or -1 with the reason
 * in m->refusal. */
static int s_run(migrate_t *m, int from, int to)
{
    for (int cfrom = from; cfrom < to; cfrom += CHUNK) {
        int cto = cfrom + CHUNK < to ? cfrom + CHUNK : to;
        uint64_t applied = s_applied(m);
        for (m->pass = 1; m->pass == 1 || (m->pass <= PASSES && s_applied(m) > applied); m->pass++) {
            applied = s_applied(m);
            if (s_pass(m, cfrom, cto) != 0)
                return -1;
        }
        s_done(m, cto);
    }
    return 0;
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
    if (!kr_end_sink(&m->src, WINDOW, o->timeout_ms, s_answer, m, why, sizeof why)
        || !kr_end_sink(&m->dst, WINDOW, o->timeout_ms, s_answer, m, why, sizeof why)) {
        kv_warn("migrate: %s", why);
        goto out;
    }
    kr_progress_init(&m->pg);
    int from = 0, to;
    while (kr_plist_next(&o->parts, &from, &to)) {
        if (s_run(m, from, to) != 0) {
            kv_warn("%smigrate: %s", kr_progress_cr(&m->pg), m->refusal);
            break;
        }
        from = to;
    }
    kr_progress_t pg = m->pg;
    double secs = kr_progress_secs(&pg);
    fprintf(stderr,
            "%skvrepl: migrate: %d of %d partitions done, %llu records sent (%llu to --to, %llu to --from, %llu "
            "dropped from --to; %llu by passes after the first), %llu bytes, in %.3f s (%.0f records/s, %.2f MB/s)\n",
            kr_progress_cr(&pg), m->done, o->parts.count, (unsigned long long) m->sent, (unsigned long long) m->to_dst,
            (unsigned long long) m->to_src, (unsigned long long) m->dropped, (unsigned long long) m->later,
            (unsigned long long) m->total_bytes, secs,
            secs > 0 ? (double) m->sent / secs : 0.0, secs > 0 ? (double) m->total_bytes / secs / 1e6 : 0.0);
    rc = m->done == o->parts.count ? KR_EXIT_OK : KR_EXIT_ERROR;
out:
    kr_end_close(&m->src);
    kr_end_close(&m->dst);
    free(m);
    return rc;
}
