/* kvbench: load generator for kvnode (see kvbench(1)).
 *
 * One thread drives every connection: each connection is a DEALER socket
 * with up to IN_FLIGHT requests outstanding.  Requests are built from a
 * prepared header and body (only request id, digest and partition change),
 * digests are computed once up front, and every reply that is ready is
 * handled per wake-up, so the client spends little of the shared CPU. */
#include "hist.h"
#include "kv_client.h"
#include "kv_cmap.h"
#include "kv_digest.h"
#include "kv_err.h"
#include "kv_mp.h"
#include "kv_proto.h"
#include "kv_util.h"
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define DEFAULT_ENDPOINT "tcp://127.0.0.1:7700"

typedef struct {
    uint64_t reqid;
    uint64_t sent_ns; /* intended send time (corrects coordinated omission under --rate) */
    bool write;
} pending_t;

/* A connection: one socket to the endpoint, or with --direct one to each
 * node of the cluster's table (requests go to their partition's master);
 * its in-flight requests are counted across its sockets. */
typedef struct {
    void *socks[KV_NODES_MAX];
    msgpack_sbuffer outs[KV_NODES_MAX]; /* requests to send in one frame, per socket */
    bool ready[KV_NODES_MAX];           /* may have replies although its ZMQ_FD is quiet */
    pending_t *slots;
    int used;
} conn_t;

typedef struct {
    const char *endpoint, *ns, *set;
    int conns, in_flight, value_bytes, timeout_ms;
    int64_t keys, count, rate;
    double seconds;
    int epfd; /* epoll over the sockets' ZMQ_FDs */
    bool direct;
    kv_cmap_t *cmap; /* --direct: the cluster's table */
    int nsocks;      /* sockets per connection: 1, or the table's nodes */
    bool json, progress, progress_set, bytes_values;
    /* prepared request parts */
    uint8_t *digests;
    msgpack_sbuffer get_body, put_body;
    uint64_t next_id;
    uint64_t next_insert;
} bench_t;

typedef struct {
    const char *name;
    int read_pct; /* -1 = insert */
} workload_t;

static const workload_t s_workloads[] = {
    {"insert", -1}, {"read", 100}, {"update", 0}, {"A", 50}, {"B", 95}, {"C", 100},
};

static volatile int s_stop;
static void s_on_signal(int sig)
{
    (void) sig;
    s_stop = 1;
}

static uint64_t s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

/* xorshift64*: cheap uniform keys */
static uint64_t s_rng = 88172645463325252ull;
static inline uint64_t s_rand(void)
{
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return s_rng * 2685821657736338717ull;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: kvbench [-hV] [-e endpoint] [-n ns] [-w workload[,workload...]] [-c connections] "
                 "[-p in-flight] [-k keys] [-s value-bytes] [-d seconds] [--count n] [--rate ops] "
                 "[--set set] [--bytes] [--timeout ms] [--progress | --no-progress] [--json] [--direct] [--sched policy]\n");
}

static void help(void)
{
    usage(stdout);
    printf("\n"
           "  -e, --endpoint ENDPOINT  kvnode to load (default $KV_ENDPOINT, else %s)\n"
           "  -n, --namespace NS       namespace (default test)\n"
           "  -w, --workload LIST      insert, read, update, A (50%% reads), B (95%%), C (100%%);\n"
           "                           a comma list runs them in turn (default read)\n"
           "  -c, --connections N      connections (default 50)\n"
           "  -p, --in-flight N        requests in flight per connection (default 1)\n"
           "  -k, --keys N             key space: integer keys 0..N-1 (default 100000)\n"
           "  -s, --value-size N       value size in bytes (default 100)\n"
           "  -d, --duration SECONDS   run each workload this long (default 10)\n"
           "      --count N            stop each workload after N operations instead\n"
           "      --rate OPS           target total operations per second (default: as fast as possible)\n"
           "      --set SET            set name (default bench)\n"
           "      --bytes              values are bytes instead of strings\n"
           "      --timeout MS         a reply later than this counts as a timeout (default 5000)\n"
           "      --progress           one line per second on stderr (default when stderr is a terminal)\n"
           "      --no-progress        no progress line\n"
           "      --json               one JSON object per workload on stdout\n"
           "      --direct             the endpoint is a kvroute: send each request straight to its\n"
           "                           partition's master (a socket per node on each connection)\n"
           "      --sched POLICY       scheduling of the thread that sends and times the requests:\n"
           "                           batch (default; woken, it does not preempt the running\n"
           "                           thread) or normal\n"
           "  -h, --help               show this help\n"
           "  -V, --version            show the version\n"
           "See kvbench(1).\n",
           DEFAULT_ENDPOINT);
}

static void s_prepare(bench_t *b)
{
    b->digests = malloc((size_t) b->keys * KV_DIGEST_SIZE);
    if (!b->digests)
        kv_die(2, "out of memory for %lld digests", (long long) b->keys);
    for (int64_t i = 0; i < b->keys; i++) {
        kv_key_t k = {.type = KV_KEY_INT, .i = i};
        kv_digest(b->set, strlen(b->set), &k, b->digests + i * KV_DIGEST_SIZE);
    }
    msgpack_packer pk;
    msgpack_sbuffer_init(&b->get_body);
    msgpack_packer_init(&pk, &b->get_body, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    kv_mp_pack_cstr(&pk, "ns");
    kv_mp_pack_cstr(&pk, b->ns);
    kv_mp_pack_cstr(&pk, "set");
    kv_mp_pack_cstr(&pk, b->set);
    msgpack_sbuffer_init(&b->put_body);
    msgpack_packer_init(&pk, &b->put_body, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    kv_mp_pack_cstr(&pk, "ns");
    kv_mp_pack_cstr(&pk, b->ns);
    kv_mp_pack_cstr(&pk, "set");
    kv_mp_pack_cstr(&pk, b->set);
    kv_mp_pack_cstr(&pk, "bins");
    msgpack_pack_map(&pk, 1);
    kv_mp_pack_cstr(&pk, "v");
    char *val = malloc((size_t) b->value_bytes + 1);
    for (int i = 0; i < b->value_bytes; i++)
        val[i] = (char) ('a' + i % 26);
    if (b->bytes_values) {
        msgpack_pack_bin(&pk, (size_t) b->value_bytes);
        msgpack_pack_bin_body(&pk, val, (size_t) b->value_bytes);
    } else
        kv_mp_pack_strn(&pk, val, (size_t) b->value_bytes);
    free(val);
}

/* Send one request on c; returns 0, or -1 when an insert workload has no keys left. */
static int s_send(bench_t *b, conn_t *c, const workload_t *w, uint64_t when_ns)
{
    int64_t key;
    bool write;
    if (w->read_pct < 0) {
        if (b->next_insert >= (uint64_t) b->keys)
            return -1;
        key = (int64_t) b->next_insert++;
        write = true;
    } else {
        key = (int64_t) (s_rand() % (uint64_t) b->keys);
        write = (int) (s_rand() % 100) >= w->read_pct;
    }
    kv_hdr_t h = {.op = write ? KV_OP_PUT : KV_OP_GET, .reqid = ++b->next_id};
    memcpy(h.digest, b->digests + key * KV_DIGEST_SIZE, KV_DIGEST_SIZE);
    h.pid = kv_partition(h.digest);
    uint8_t hdr[KV_HDR_SIZE];
    msgpack_sbuffer *body = write ? &b->put_body : &b->get_body;
    h.body_len = (uint32_t) body->size;
    kv_hdr_encode(&h, hdr);
    int to = 0;
    if (b->direct && (to = kv_cmap_master(b->cmap, h.pid)) < 0)
        kv_die(2, "partition %u has no master in table version %u", h.pid, kv_cmap_table(b->cmap)->version);
    msgpack_sbuffer_write(&c->outs[to], (const char *) hdr, sizeof hdr);
    msgpack_sbuffer_write(&c->outs[to], body->data, body->size);
    c->slots[c->used++] = (pending_t){h.reqid, when_ns, write};
    return 0;
}

/* Send the requests queued on c as one frame (as a client library that
 * pipelines does; kvproto(7)). */
static void s_flush_one(bench_t *b, conn_t *c, int k)
{
    msgpack_sbuffer *out = &c->outs[k];
    void *sock = c->socks[k];
    if (!out->size)
        return;
    if (zmq_send(sock, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(sock, out->data, out->size, 0) < 0)
        kv_die(2, "send to %s: %s", b->endpoint, zmq_strerror(errno));
    msgpack_sbuffer_clear(out);
    /* a send can take the socket's ZMQ_FD signal for replies that
     * arrived meanwhile: ask the socket itself */
    int ev = 0;
    size_t sz = sizeof ev;
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &sz) == 0 && (ev & ZMQ_POLLIN))
        c->ready[k] = true;
}

static void s_flush(bench_t *b, conn_t *c)
{
    for (int k = 0; k < b->nsocks; k++)
        s_flush_one(b, c, k);
}

typedef struct {
    hist_t hist;
    uint64_t ops;
    uint64_t errors[256];
    uint64_t timeouts;
} result_t;

/* Read every reply that is ready on c.  Returns how many arrived. */
static int s_drain(bench_t *b, conn_t *c, void *sock, result_t *r, hist_t *interval)
{
    int n = 0;
    for (;;) {
        zmq_msg_t f[2];
        int nf = 0, more = 1;
        bool extra = false;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, sock, nf == 0 ? ZMQ_DONTWAIT : 0) < 0) {
                zmq_msg_close(&m);
                return n;
            }
            more = zmq_msg_more(&m);
            if (nf < 2) {
                zmq_msg_init(&f[nf]);
                zmq_msg_move(&f[nf++], &m);
            } else
                extra = true;
            zmq_msg_close(&m);
        }
        uint64_t now = s_now_ns();
        if (nf != 2 || extra)
            kv_die(2, "malformed reply from %s: expected a delimiter and one frame", b->endpoint);
        const uint8_t *frame = zmq_msg_data(&f[1]), *body;
        size_t len = zmq_msg_size(&f[1]), off = 0;
        kv_hdr_t h;
        char why[128];
        int rc;
        while ((rc = kv_frame_next(frame, len, &off, &h, &body, why, sizeof why)) == KV_OK) {
            int k = 0;
            while (k < c->used && c->slots[k].reqid != h.reqid)
                k++;
            if (k == c->used)
                continue; /* reply to a request already counted as timed out */
            uint64_t lat = now - c->slots[k].sent_ns;
            c->slots[k] = c->slots[--c->used];
            r->ops++;
            if (h.status != KV_OK)
                r->errors[h.status & 0xff]++;
            hist_record(&r->hist, lat);
            hist_record(interval, lat);
            n++;
        }
        for (int i = 0; i < nf; i++)
            zmq_msg_close(&f[i]);
        if (rc != -1 || len == 0)
            kv_die(2, "malformed reply from %s: %s", b->endpoint, len ? why : "empty frame");
    }
}

static void s_report(const bench_t *b, const workload_t *w, const result_t *r, double secs)
{
    double ops_s = secs > 0 ? (double) r->ops / secs : 0;
    double us[5] = {hist_percentile(&r->hist, 50) / 1e3, hist_percentile(&r->hist, 90) / 1e3,
                    hist_percentile(&r->hist, 99) / 1e3, hist_percentile(&r->hist, 99.9) / 1e3,
                    r->hist.max / 1e3};
    if (b->json) {
        printf("{\"workload\":\"%s\",\"ops\":%llu,\"seconds\":%.3f,\"ops_per_sec\":%.0f,"
               "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
               "\"connections\":%d,\"in_flight\":%d,\"keys\":%lld,\"value_bytes\":%d,\"errors\":{",
               w->name, (unsigned long long) r->ops, secs, ops_s, us[0], us[1], us[2], us[3], us[4], b->conns,
               b->in_flight, (long long) b->keys, b->value_bytes);
        bool first = true;
        for (int i = 1; i < 256; i++)
            if (r->errors[i]) {
                const char *sym = kv_err_symbol(i);
                printf("%s\"%s\":%llu", first ? "" : ",", sym ? sym : "UNKNOWN", (unsigned long long) r->errors[i]);
                first = false;
            }
        if (r->timeouts)
            printf("%s\"TIMEOUT\":%llu", first ? "" : ",", (unsigned long long) r->timeouts);
        printf("}}\n");
    } else {
        printf("%-7s %10.0f ops/s  %9llu ops in %6.2f s  latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
               w->name, ops_s, (unsigned long long) r->ops, secs, us[0], us[1], us[2], us[3], us[4]);
        for (int i = 1; i < 256; i++)
            if (r->errors[i])
                printf("        errors: %llu %s\n", (unsigned long long) r->errors[i], kv_err_name(i));
        if (r->timeouts)
            printf("        errors: %llu timeout\n", (unsigned long long) r->timeouts);
    }
    fflush(stdout);
}

static int s_run(bench_t *b, conn_t *conns, const workload_t *w)
{
    static result_t r;
    static hist_t interval;
    memset(&r, 0, sizeof r);
    hist_reset(&r.hist);
    hist_reset(&interval);
    b->next_insert = 0;
    int nev = b->conns * b->nsocks;
    struct epoll_event *evs = calloc((size_t) nev, sizeof *evs);
    uint64_t start = s_now_ns(), deadline = b->count ? UINT64_MAX : start + (uint64_t) (b->seconds * 1e9);
    uint64_t interval_ns = b->rate ? (uint64_t) (1e9 / (double) b->rate) : 0, next_slot = start;
    uint64_t sent = 0, next_progress = start + 1000000000ull, last_ops = 0, last_t = start;
    uint64_t timeout_ns = (uint64_t) b->timeout_ms * 1000000ull, next_expiry = start;
    bool sending = true;
    int outstanding = 0;
    for (;;) {
        uint64_t now = s_now_ns();
        if (s_stop || now >= deadline || (b->count && sent >= (uint64_t) b->count))
            sending = false;
        /* top up every connection */
        for (int i = 0; sending && i < b->conns; i++) {
            while (conns[i].used < b->in_flight) {
                if (b->rate) {
                    if (next_slot > now)
                        break;
                }
                if (b->count && sent >= (uint64_t) b->count)
                    break;
                if (s_send(b, &conns[i], w, b->rate ? next_slot : now) != 0) {
                    sending = false; /* insert: every key written */
                    break;
                }
                sent++;
                outstanding++;
                next_slot += interval_ns;
            }
            s_flush(b, &conns[i]);
        }
        if (!sending && outstanding == 0)
            break;
        long wait = 100;
        if (b->rate && sending) {
            now = s_now_ns();
            wait = next_slot > now ? (long) ((next_slot - now) / 1000000) : 0;
        }
        if (!sending)
            wait = 10;
        /* epoll over the sockets' ZMQ_FDs, not zmq_poll: zmq_poll asks
         * every connection on every wake-up, a quarter of kvbench's CPU
         * at 50 connections (perf).  ZMQ_FD only says that a socket's
         * state may have changed: a woken socket is read until EAGAIN,
         * and one that a send found ready is read without waiting. */
        bool any_ready = false;
        for (int i = 0; i < b->conns && !any_ready; i++)
            for (int k = 0; k < b->nsocks; k++)
                any_ready |= conns[i].ready[k];
        int rc = epoll_wait(b->epfd, evs, nev, any_ready ? 0 : (int) wait);
        if (rc < 0 && errno != EINTR)
            kv_die(2, "epoll_wait: %s", strerror(errno));
        for (int k = 0; k < rc; k++)
            conns[evs[k].data.u32 / KV_NODES_MAX].ready[evs[k].data.u32 % KV_NODES_MAX] = true;
        for (int i = 0; i < b->conns; i++)
            for (int k = 0; k < b->nsocks; k++)
                if (conns[i].ready[k]) {
                    conns[i].ready[k] = false;
                    outstanding -= s_drain(b, &conns[i], conns[i].socks[k], &r, &interval);
                }
        now = s_now_ns();
        /* expire requests older than the timeout (checked every 100 ms) */
        if (now >= next_expiry) {
            next_expiry = now + 100000000ull;
            for (int i = 0; i < b->conns; i++)
                for (int k = 0; k < conns[i].used;)
                    if (now - conns[i].slots[k].sent_ns > timeout_ns) {
                        conns[i].slots[k] = conns[i].slots[--conns[i].used];
                        r.timeouts++;
                        outstanding--;
                    } else
                        k++;
        }
        if (b->progress && now >= next_progress) {
            double dt = (double) (now - last_t) / 1e9;
            fprintf(stderr, "kvbench: %-6s %5.0f s %10.0f ops/s  p99 %8.1f us  errors %llu\n", w->name,
                    (double) (now - start) / 1e9, (double) (r.ops - last_ops) / dt,
                    hist_percentile(&interval, 99) / 1e3, (unsigned long long) r.timeouts);
            hist_reset(&interval);
            last_ops = r.ops;
            last_t = now;
            next_progress += 1000000000ull;
        }
    }
    double secs = (double) (s_now_ns() - start) / 1e9;
    free(evs);
    s_report(b, w, &r, secs);
    return 0;
}

int main(int argc, char **argv)
{
    kv_progname = "kvbench";
    argv[0] = (char *) kv_progname; /* getopt names the program from argv[0] */
    bench_t b = {.ns = "test", .set = "bench", .conns = 50, .in_flight = 1, .value_bytes = 100, .keys = 100000,
                 .seconds = 10, .timeout_ms = 5000};
    b.endpoint = getenv("KV_ENDPOINT") && *getenv("KV_ENDPOINT") ? getenv("KV_ENDPOINT") : DEFAULT_ENDPOINT;
    const char *wl = "read";
    enum { OPT_COUNT = 256, OPT_RATE, OPT_SET, OPT_BYTES, OPT_TIMEOUT, OPT_PROGRESS, OPT_NOPROGRESS, OPT_JSON,
           OPT_DIRECT, OPT_SCHED };
    static const struct option longopts[] = {
        {"endpoint", required_argument, NULL, 'e'}, {"namespace", required_argument, NULL, 'n'},
        {"workload", required_argument, NULL, 'w'}, {"connections", required_argument, NULL, 'c'},
        {"in-flight", required_argument, NULL, 'p'}, {"keys", required_argument, NULL, 'k'},
        {"value-size", required_argument, NULL, 's'}, {"duration", required_argument, NULL, 'd'},
        {"count", required_argument, NULL, OPT_COUNT}, {"rate", required_argument, NULL, OPT_RATE},
        {"set", required_argument, NULL, OPT_SET}, {"bytes", no_argument, NULL, OPT_BYTES},
        {"timeout", required_argument, NULL, OPT_TIMEOUT}, {"progress", no_argument, NULL, OPT_PROGRESS},
        {"no-progress", no_argument, NULL, OPT_NOPROGRESS}, {"json", no_argument, NULL, OPT_JSON},
        {"direct", no_argument, NULL, OPT_DIRECT}, {"sched", required_argument, NULL, OPT_SCHED},
        {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {NULL, 0, NULL, 0},
    };
    int c, sched = SCHED_BATCH;
    int64_t v;
#define NUM(flag, lo, hi, dst)                                                                       \
    do {                                                                                             \
        if (kv_parse_int(optarg, lo, hi, &v) != 0)                                                   \
            kv_die(2, "%s '%s': expected an integer from %lld to %lld", flag, optarg, (long long) (lo), \
                   (long long) (hi));                                                                \
        dst = v;                                                                                     \
    } while (0)
    while ((c = getopt_long(argc, argv, "hVe:n:w:c:p:k:s:d:", longopts, NULL)) != -1) {
        switch (c) {
        case 'e': b.endpoint = optarg; break;
        case 'n': b.ns = optarg; break;
        case 'w': wl = optarg; break;
        case 'c': NUM("-c", 1, 1000, b.conns); break;
        case 'p': NUM("-p", 1, 10000, b.in_flight); break;
        case 'k': NUM("-k", 1, 100000000, b.keys); break;
        case 's': NUM("-s", 0, 8 << 20, b.value_bytes); break;
        case 'd': {
            char *end;
            errno = 0;
            b.seconds = strtod(optarg, &end);
            if (errno || *end || !(b.seconds > 0) || b.seconds > 86400)
                kv_die(2, "-d '%s': expected seconds, more than 0 and at most 86400", optarg);
            break;
        }
        case OPT_COUNT: NUM("--count", 1, INT64_MAX, b.count); break;
        case OPT_RATE: NUM("--rate", 1, 100000000, b.rate); break;
        case OPT_SET: b.set = optarg; break;
        case OPT_BYTES: b.bytes_values = true; break;
        case OPT_TIMEOUT: NUM("--timeout", 1, 3600000, b.timeout_ms); break;
        case OPT_PROGRESS: b.progress = b.progress_set = true; break;
        case OPT_NOPROGRESS: b.progress = false; b.progress_set = true; break;
        case OPT_JSON: b.json = true; break;
        case OPT_DIRECT: b.direct = true; break;
        case OPT_SCHED:
            if ((sched = kv_sched_parse(optarg)) < 0)
                kv_die(2, "--sched '%s': expected batch or normal", optarg);
            break;
        case 'h': help(); return 0;
        case 'V': printf("kvbench %s\n", KV_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        kv_warn("unexpected argument '%s'", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (strlen(b.set) > KV_SET_MAX)
        kv_die(2, "--set: set name is longer than %d bytes", KV_SET_MAX);
    if (!b.progress_set)
        b.progress = isatty(STDERR_FILENO);
    /* workloads */
    const workload_t *run[16];
    int nrun = 0;
    char *list = strdup(wl), *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        const workload_t *found = NULL;
        for (size_t i = 0; i < sizeof s_workloads / sizeof s_workloads[0]; i++)
            if (strcmp(t, s_workloads[i].name) == 0)
                found = &s_workloads[i];
        if (!found)
            kv_die(2, "-w '%s': unknown workload (insert, read, update, A, B, C)", t);
        if (nrun == 16)
            kv_die(2, "-w: at most 16 workloads");
        run[nrun++] = found;
    }
    if (nrun == 0)
        kv_die(2, "-w: no workload given");
    if (sodium_init() < 0)
        kv_die(2, "cannot initialise libsodium");
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* check the server answers before loading it */
    char why[512];
    kv_client_t *probe = kv_client_new(b.endpoint, why, sizeof why);
    if (!probe)
        kv_die(2, "%s", why);
    kv_req_t req;
    kv_req_init(&req, KV_OP_INFO);
    kv_req_str(&req, "what", b.ns, strlen(b.ns));
    kv_reply_t rep;
    if (kv_client_call(probe, &req, &rep, b.timeout_ms) != 0)
        kv_die(2, "%s", kv_client_error(probe));
    kv_req_destroy(&req);
    if (rep.hdr.status != KV_OK) {
        char detail[256];
        if (rep.hdr.status == KV_ERR_BAD_REQUEST) /* info answers this for a name it does not know */
            kv_die(2, "no namespace '%s' on %s (%s)", b.ns, b.endpoint, kv_reply_error(&rep, detail, sizeof detail));
        kv_die(2, "%s: %s: %s", b.endpoint, kv_err_name(rep.hdr.status), kv_reply_error(&rep, detail, sizeof detail));
    }
    kv_reply_close(&rep);
    kv_client_destroy(&probe);
    b.nsocks = 1;
    if (b.direct) {
        if (!(b.cmap = kv_cmap_new(b.endpoint, b.timeout_ms, why, sizeof why)))
            kv_die(2, "--direct: %s", why);
        b.nsocks = kv_cmap_table(b.cmap)->n;
    }

    s_prepare(&b);
    /* as kvnode's loop (kvnode(1), THREADS): woken by libzmq's I/O thread
     * with a reply, this thread does not preempt it, and then takes every
     * reply that came meanwhile in one go; the I/O thread stays normal, so
     * a request goes out as soon as it is handed over */
    kv_sched_set(sched);
    void *ctx = zmq_ctx_new();
    if (sched_getscheduler(0) == SCHED_BATCH) /* else libzmq's threads keep this one's, as in kvnode */
        zmq_ctx_set(ctx, ZMQ_THREAD_SCHED_POLICY, SCHED_OTHER);
    if ((b.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        kv_die(2, "epoll_create1: %s", strerror(errno));
    conn_t *conns = calloc((size_t) b.conns, sizeof *conns);
    for (int i = 0; i < b.conns; i++) {
        conns[i].slots = calloc((size_t) b.in_flight, sizeof(pending_t));
        for (int k = 0; k < b.nsocks; k++) {
            const char *ep = b.direct ? kv_cmap_table(b.cmap)->nodes[k].endpoint : b.endpoint;
            void *sock = conns[i].socks[k] = zmq_socket(ctx, ZMQ_DEALER);
            int linger = 0, hwm = 0;
            zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
            zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
            zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
            if (zmq_connect(sock, ep) != 0)
                kv_die(2, "cannot connect to %s: %s", ep, zmq_strerror(errno));
            msgpack_sbuffer_init(&conns[i].outs[k]);
            int fd;
            size_t fdlen = sizeof fd;
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t) (i * KV_NODES_MAX + k)};
            if (zmq_getsockopt(sock, ZMQ_FD, &fd, &fdlen) != 0 || epoll_ctl(b.epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
                kv_die(2, "cannot watch connection %d: %s", i, strerror(errno));
        }
    }
    for (int i = 0; i < nrun && !s_stop; i++)
        s_run(&b, conns, run[i]);
    for (int i = 0; i < b.conns; i++) {
        for (int k = 0; k < b.nsocks; k++) {
            zmq_close(conns[i].socks[k]);
            msgpack_sbuffer_destroy(&conns[i].outs[k]);
        }
        free(conns[i].slots);
    }
    free(conns);
    close(b.epfd);
    zmq_ctx_term(ctx);
    free(b.digests);
    free(list);
    msgpack_sbuffer_destroy(&b.get_body);
    msgpack_sbuffer_destroy(&b.put_body);
    kv_cmap_destroy(&b.cmap);
    return s_stop ? 130 : 0;
}
