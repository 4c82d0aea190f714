/* verify: compare two nodes or clusters, or a cluster's masters with
 * their replicas, partition by partition (count of live records and a
 * hash of their copies), and with --repair merge the differing
 * partitions so that both sides hold the newer copy of every record. */
#include "kvrepl.h"
#include "kv_err.h"
#include "kv_mp.h"
#include "kv_util.h"
#include <stdlib.h>
#include <string.h>

#define WINDOW 128

/* One side compared: its endpoint and, per partition, the live records
 * and the sum of their hashes (kr_rec_hash). */
typedef struct {
    kr_end_t e;
    char label[64];
    bool open;
    uint32_t *count;
    uint64_t *hash;
    uint64_t sent;   /* copies repair sent to it */
} side_t;

typedef struct {
    const kr_opts_t *o;
    const char *ns;
    side_t *a, *b;   /* the pair being repaired */
    bool refused;
    kr_progress_t pg;
    uint64_t read;   /* records read, for the progress line */
} verify_t;

static int s_side_open(side_t *s, const char *endpoint, const char *label, int timeout_ms, kv_ptable_t *t, char *why,
                       size_t whylen)
{
    snprintf(s->label, sizeof s->label, "%s", label);
    s->count = calloc(KV_PARTITIONS, sizeof *s->count);
    s->hash = calloc(KV_PARTITIONS, sizeof *s->hash);
    if (!s->count || !s->hash) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    if (kr_end_open(&s->e, endpoint, s->label, timeout_ms, t, why, whylen) != 0)
        return -1;
    s->open = true;
    return 0;
}

static void s_side_close(side_t *s)
{
    if (s->open)
        kr_end_close(&s->e);
    free(s->count);
    free(s->hash);
    s->open = false;
    s->count = NULL;
    s->hash = NULL;
}

/* Count and hash the live records of the listed partitions of s. */
static int s_side_stats(verify_t *v, side_t *s, const kr_plist_t *pl, char *why, size_t whylen)
{
    const char *ns = v->ns;
    int timeout_ms = v->o->timeout_ms;
    int from = 0, to;
    while (kr_plist_next(pl, &from, &to)) {
        memset(s->count + from, 0, (size_t) (to - from) * sizeof *s->count);
        memset(s->hash + from, 0, (size_t) (to - from) * sizeof *s->hash);
        kr_scan_t *sc = kr_end_scan(&s->e, ns, NULL, from, to, false, false, timeout_ms, why, whylen);
        if (!sc)
            return -1;
        kr_rec_t rec;
        int got;
        while ((got = kr_scan_next(sc, &rec)) == 1) {
            uint16_t p = kv_partition(rec.digest);
            s->count[p]++;
            s->hash[p] += kr_rec_hash(&rec);
            v->read++;
            if (kr_progress_due(&v->pg))
                fprintf(stderr, "\rkvrepl: verify: %s: partition %d, %llu records read (%.0f records/s)", s->label, p,
                        (unsigned long long) v->read, (double) v->read / kr_progress_secs(&v->pg));
        }
        if (got < 0)
            snprintf(why, whylen, "%s %s: %s", s->label, s->e.endpoint, kr_scan_error(sc));
        kr_scan_destroy(&sc);
        if (got < 0)
            return -1;
        from = to;
    }
    return 0;
}

static bool s_same(const side_t *a, const side_t *b, int p)
{
    return a->count[p] == b->count[p] && a->hash[p] == b->hash[p];
}

static void s_print_diff(const side_t *a, const side_t *b, int p, const char *role_a, const char *role_b)
{
    printf("partition %d differs: %s%s %u records, %s%s %u records\n", p, role_a, a->label, a->count[p], role_b,
           b->label, b->count[p]);
}

/* An answer to a repair's merge: a refusal is reported, and fails the
 * repair. */
static void s_answer(void *arg, uint64_t tag, const uint8_t *digest, int status, const char *detail)
{
    if (status == KV_OK)
        return;
    verify_t *v = arg;
    char hex[2 * KV_DIGEST_SIZE + 1];
    kv_digest_hex(digest, hex);
    kv_warn("verify: repair of partition %llu: the merge of %s was refused: %s%s%s", (unsigned long long) tag, hex,
            kv_err_name(status), *detail ? ": " : "", detail);
    v->refused = true;
}

/* Send the newer copy to the side that lacks it or holds an older one. */
static int s_send(verify_t *v, side_t *to, const kr_rec_t *rec)
{
    char why[512];
    kr_sink_t *sink = kr_end_sink(&to->e, WINDOW, v->o->timeout_ms, s_answer, v, why, sizeof why);
    if (!sink) {
        kv_warn("verify: %s", why);
        return -1;
    }
    kv_req_t req;
    kr_rec_merge_req(&req, v->ns, rec, false);
    if (kr_sink_send(sink, &req, kv_partition(rec->digest)) != 0) {
        kv_warn("verify: %s %s: %s", to->label, to->e.endpoint, kr_sink_error(sink));
        return -1;
    }
    to->sent++;
    return 0;
}

static int s_repair_pair(void *arg, const kr_rec_t *a, const kr_rec_t *b)
{
    verify_t *v = arg;
    int c = kr_rec_needs(a, b);
    return c == 0 ? 0 : s_send(v, c > 0 ? v->b : v->a, c > 0 ? a : b);
}

/* Merge-join partition p of a and b: each gets the newer copies. */
static int s_repair(verify_t *v, side_t *a, side_t *b, int p)
{
    char why[1024] = "";
    v->a = a;
    v->b = b;
    kr_scan_t *sa = kr_end_scan(&a->e, v->ns, NULL, p, p + 1, true, true, v->o->timeout_ms, why, sizeof why);
    kr_scan_t *sb = sa ? kr_end_scan(&b->e, v->ns, NULL, p, p + 1, true, true, v->o->timeout_ms, why, sizeof why) : NULL;
    int rc = 0;
    if (!sa || !sb || kr_join(sa, sb, s_repair_pair, v, why, sizeof why) != 0) {
        if (*why) /* a scan failed (a failed send has been reported) */
            kv_warn("verify: repair of partition %d: %s", p, why);
        rc = -1;
    }
    kr_scan_destroy(&sa);
    kr_scan_destroy(&sb);
    return rc;
}

/* Wait for the merges sent to s. */
static int s_drain(side_t *s)
{
    if (s->e.sink && kr_sink_drain(s->e.sink) != 0) {
        kv_warn("verify: %s %s: %s", s->label, s->e.endpoint, kr_sink_error(s->e.sink));
        return -1;
    }
    return 0;
}

/* verify A B: compare, repair, compare the repaired partitions again. */
static int s_verify_two(verify_t *v)
{
    const kr_opts_t *o = v->o;
    side_t sd[2] = {0};
    char why[1024];
    int rc = KR_EXIT_ERROR;
    kr_plist_t *diff = calloc(1, sizeof *diff);
    if (!diff || s_side_open(&sd[0], o->args[0], "A", o->timeout_ms, NULL, why, sizeof why) != 0
        || s_side_open(&sd[1], o->args[1], "B", o->timeout_ms, NULL, why, sizeof why) != 0
        || s_side_stats(v, &sd[0], &o->parts, why, sizeof why) != 0
        || s_side_stats(v, &sd[1], &o->parts, why, sizeof why) != 0) {
        kv_warn("verify: %s", diff ? why : "out of memory");
        goto out;
    }
    uint64_t ra = 0, rb = 0;
    for (int p = 0; p < KV_PARTITIONS; p++) {
        if (!o->parts.in[p])
            continue;
        ra += sd[0].count[p];
        rb += sd[1].count[p];
        if (s_same(&sd[0], &sd[1], p))
            continue;
        s_print_diff(&sd[0], &sd[1], p, "", "");
        diff->in[p] = true;
        diff->count++;
    }
    fprintf(stderr,
            "%skvrepl: verify: %d partitions compared, %d differ (A %s: %llu records, B %s: %llu records) in %.3f s\n",
            kr_progress_cr(&v->pg), o->parts.count, diff->count, o->args[0], (unsigned long long) ra, o->args[1],
            (unsigned long long) rb, kr_progress_secs(&v->pg));
    rc = diff->count ? KR_EXIT_DIFFER : KR_EXIT_OK;
    if (!o->repair || !diff->count)
        goto out;
    rc = KR_EXIT_ERROR;
    for (int p = 0; p < KV_PARTITIONS; p++)
        if (diff->in[p] && s_repair(v, &sd[0], &sd[1], p) != 0)
            goto out;
    if (s_drain(&sd[0]) != 0 || s_drain(&sd[1]) != 0 || v->refused)
        goto out;
    /* compare the repaired partitions again */
    if (s_side_stats(v, &sd[0], diff, why, sizeof why) != 0
        || s_side_stats(v, &sd[1], diff, why, sizeof why) != 0) {
        kv_warn("verify: %s", why);
        goto out;
    }
    int still = 0;
    for (int p = 0; p < KV_PARTITIONS; p++)
        if (diff->in[p] && !s_same(&sd[0], &sd[1], p)) {
            printf("after repair: ");
            s_print_diff(&sd[0], &sd[1], p, "", "");
            still++;
        }
    fprintf(stderr, "kvrepl: verify: repaired %d partitions: %llu copies sent to A, %llu to B; %d still differ\n",
            diff->count, (unsigned long long) sd[0].sent, (unsigned long long) sd[1].sent, still);
    rc = still ? KR_EXIT_DIFFER : KR_EXIT_OK;
out:
    s_side_close(&sd[0]);
    s_side_close(&sd[1]);
    free(diff);
    return rc;
}

/* The replication factor of ns, from the router's info NS. */
static int s_rf(kr_end_t *r, const char *ns, int timeout_ms, char *why, size_t whylen)
{
    kv_req_t req;
    kv_req_init(&req, KV_OP_INFO);
    kv_req_str(&req, "what", ns, strlen(ns));
    kv_reply_t rep;
    int rc = kv_client_call(r->scan_c, &req, &rep, timeout_ms);
    kv_req_destroy(&req);
    if (rc != 0) {
        snprintf(why, whylen, "info %s: %s", ns, kv_client_error(r->scan_c));
        return -1;
    }
    kv_mp_t v;
    int64_t rf = -1;
    char err[256];
    if (rep.hdr.status != KV_OK)
        snprintf(why, whylen, "info %s: %s: %s", ns, kv_err_name(rep.hdr.status), kv_reply_error(&rep, err, sizeof err));
    else if (kv_body_get(kv_reply_data(&rep), kv_reply_size(&rep), "rf", &v) != 0 || kv_mp_read_int(&v, &rf) != 0
             || rf < 1)
        snprintf(why, whylen, "info %s: no \"rf\" in the router's answer", ns);
    kv_reply_close(&rep);
    return (int) (rf < 1 ? -1 : rf > KV_RF_MAX ? KV_RF_MAX : rf);
}

/* The copies of partition p that hold full data (kv_ptable_copies):
 * node indexes into out, the master first; how many (0: no master). */
static int s_full_copies(const kv_ptable_t *t, int p, int rf, int *out)
{
    kv_pcopies_t c;
    kv_ptable_copies(t, (uint16_t) p, rf, &c);
    if (c.master < 0)
        return 0;
    int n = 0;
    out[n++] = c.master;
    for (int k = 0; k < c.n; k++)
        if (c.full[k] && c.nodes[k] != c.master)
            out[n++] = c.nodes[k];
    return n;
}

/* Compare each listed partition's master with its replicas; print and
 * list in diff those that differ (with repair, send the newer copies).
 * The number of replica copies compared, or -1 if a repair failed. */
static int64_t s_replica_diffs(verify_t *v, const kv_ptable_t *t, int rf, side_t *sd, const kr_plist_t *pl,
                               bool repair, const char *when, kr_plist_t *diff)
{
    int64_t copies = 0;
    int row[2 * KV_RF_MAX];
    memset(diff, 0, sizeof *diff);
    for (int p = 0; p < KV_PARTITIONS; p++) {
        if (!pl->in[p])
            continue;
        int n = s_full_copies(t, p, rf, row);
        for (int k = 1; k < n; k++) {
            copies++;
            if (s_same(&sd[row[0]], &sd[row[k]], p))
                continue;
            printf("%s", when);
            s_print_diff(&sd[row[0]], &sd[row[k]], p, "master ", "replica ");
            diff->count += !diff->in[p];
            diff->in[p] = true;
            if (repair && s_repair(v, &sd[row[0]], &sd[row[k]], p) != 0)
                return -1;
        }
    }
    return copies;
}

/* Count and hash the partitions pl of every node open in sd. */
static int s_nodes_stats(verify_t *v, const kv_ptable_t *t, side_t *sd, const kr_plist_t *pl)
{
    char why[1024];
    for (int i = 0; i < t->n; i++)
        if (sd[i].open && s_side_stats(v, &sd[i], pl, why, sizeof why) != 0) {
            kv_warn("verify: node %s", why);
            return -1;
        }
    return 0;
}

/* verify --replicas ROUTER: each partition's master against its replicas. */
static int s_verify_replicas(verify_t *v)
{
    const kr_opts_t *o = v->o;
    char why[1024];
    kr_end_t router;
    kv_ptable_t *t = malloc(sizeof *t);
    side_t *sd = calloc(KV_NODES_MAX, sizeof *sd);
    kr_plist_t *diff = malloc(sizeof *diff), *again = malloc(sizeof *again);
    int rc = KR_EXIT_ERROR, rf = -1;
    if (!t || !sd || !diff || !again) {
        kv_warn("verify: out of memory");
        goto out;
    }
    if (kr_end_open(&router, o->replicas, "--replicas", o->timeout_ms, t, why, sizeof why) != 0) {
        kv_warn("verify: %s", why);
        goto out;
    }
    if (router.kind != KR_ROUTER)
        kv_warn("verify: --replicas %s is a kvnode; it needs a kvroute", o->replicas);
    else if (t->version == 0)
        kv_warn("verify: --replicas %s: the cluster has no partition table yet", o->replicas);
    else if ((rf = s_rf(&router, v->ns, o->timeout_ms, why, sizeof why)) < 0)
        kv_warn("verify: --replicas %s: %s", o->replicas, why);
    kr_end_close(&router);
    if (router.kind != KR_ROUTER || t->version == 0 || rf < 0)
        goto out;
    /* the nodes that hold a copy of a listed partition, each scanned once */
    int row[2 * KV_RF_MAX];
    bool holds[KV_NODES_MAX] = {false};
    for (int p = 0; p < KV_PARTITIONS; p++)
        if (o->parts.in[p])
            for (int k = 0, n = s_full_copies(t, p, rf, row); k < n; k++)
                holds[row[k]] = true;
    for (int i = 0; i < t->n; i++) {
        char label[64];
        snprintf(label, sizeof label, "%016llx", (unsigned long long) t->nodes[i].id);
        if (holds[i] && s_side_open(&sd[i], t->nodes[i].endpoint, label, o->timeout_ms, NULL, why, sizeof why) != 0) {
            kv_warn("verify: node %s", why);
            goto out;
        }
    }
    if (s_nodes_stats(v, t, sd, &o->parts) != 0)
        goto out;
    int64_t copies = s_replica_diffs(v, t, rf, sd, &o->parts, o->repair, "", diff);
    if (copies < 0)
        goto out;
    for (int i = 0; i < t->n; i++)
        if (sd[i].open && s_drain(&sd[i]) != 0)
            goto out;
    fprintf(stderr,
            "%skvrepl: verify: %d partitions of table version %u (rf %d): %lld replica copies compared, %d partitions "
            "differ, in %.3f s\n",
            kr_progress_cr(&v->pg), o->parts.count, t->version, rf, (long long) copies, diff->count,
            kr_progress_secs(&v->pg));
    rc = diff->count ? KR_EXIT_DIFFER : KR_EXIT_OK;
    if (!o->repair || !diff->count)
        goto out;
    rc = KR_EXIT_ERROR;
    if (v->refused || s_nodes_stats(v, t, sd, diff) != 0)
        goto out;
    s_replica_diffs(v, t, rf, sd, diff, false, "after repair: ", again);
    fprintf(stderr, "kvrepl: verify: repaired %d partitions; %d still differ\n", diff->count, again->count);
    rc = again->count ? KR_EXIT_DIFFER : KR_EXIT_OK;
out:
    for (int i = 0; sd && i < KV_NODES_MAX; i++)
        s_side_close(&sd[i]);
    free(sd);
    free(t);
    free(diff);
    free(again);
    return rc;
}

int kr_cmd_verify(kr_opts_t *o)
{
    verify_t v = {.o = o, .ns = o->ns ? o->ns : KR_DEFAULT_NS};
    kr_progress_init(&v.pg);
    return o->replicas ? s_verify_replicas(&v) : s_verify_two(&v);
}
