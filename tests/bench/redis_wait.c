/* redis_wait: Redis's closest thing to synchronous RF=2, for
 * tests/bench/cluster.py: each write is SET followed by WAIT 1 0 (return
 * once one replica has it, waiting at most 5 s), as one pipelined pair; a
 * write counts when both replies are in; one WAIT did not see confirmed
 * by the replica counts as an error.  A connection silent for 10 s ends
 * the run with an error instead of hanging.  redis-benchmark cannot send
 * a command pair, hence this tool.
 *
 * usage: redis_wait HOST PORT CONNECTIONS IN_FLIGHT KEYS VALUE_BYTES SECONDS
 * prints one JSON object: ops_per_sec, p50_us, p99_us, errors (WAIT < 1). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd, in_flight, id;
    long keys, value_bytes;
    double seconds;
    uint64_t ops, errors;
    int broken; /* the connection failed or went silent */
    uint32_t *lat; /* microseconds, one per write (capped) */
    size_t nlat, cap;
} worker_t;

static const char *s_host;
static int s_port;

static uint64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000;
}

static uint64_t s_rng(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Read until n whole replies (lines starting + - :) are in; counts WAIT
 * replies below 1 as errors.  Returns the number of replies read, or -1. */
static int s_read_replies(worker_t *w, char *buf, size_t cap, size_t *have, int want_pairs, uint64_t *sent_at,
                          int *head)
{
    int pairs = 0;
    while (pairs < want_pairs) {
        char *nl;
        while (!(nl = memchr(buf, '\n', *have))) {
            ssize_t n = read(w->fd, buf + *have, cap - *have);
            if (n <= 0)
                return -1;
            *have += (size_t) n;
        }
        /* a pair is two lines: +OK and :N */
        char *nl2 = memchr(nl + 1, '\n', *have - (size_t) (nl + 1 - buf));
        if (!nl2) {
            ssize_t n = read(w->fd, buf + *have, cap - *have);
            if (n <= 0)
                return -1;
            *have += (size_t) n;
            continue;
        }
        if (buf[0] != '+' || nl[1] != ':' || atol(nl + 2) < 1)
            w->errors++;
        uint64_t lat = s_now_us() - sent_at[*head];
        *head = (*head + 1) % w->in_flight;
        if (w->nlat < w->cap)
            w->lat[w->nlat++] = (uint32_t) (lat > UINT32_MAX ? UINT32_MAX : lat);
        size_t used = (size_t) (nl2 + 1 - buf);
        memmove(buf, nl2 + 1, *have - used);
        *have -= used;
        pairs++;
    }
    return pairs;
}

static int s_send_pair(worker_t *w, uint64_t *rng, const char *value)
{
    char cmd[8192];
    char key[32];
    int kl = snprintf(key, sizeof key, "key:%012lu", (unsigned long) (s_rng(rng) % (uint64_t) w->keys));
    int n = snprintf(cmd, sizeof cmd, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%ld\r\n%s\r\n*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$4\r\n5000\r\n",
                     kl, key, w->value_bytes, value);
    for (int off = 0; off < n;) {
        ssize_t k = write(w->fd, cmd + off, (size_t) (n - off));
        if (k <= 0)
            return -1;
        off += (int) k;
    }
    return 0;
}

static void *s_work(void *arg)
{
    worker_t *w = arg;
    uint64_t rng = 88172645463325252ull + (uint64_t) w->id * 7919;
    char *value = malloc((size_t) w->value_bytes + 1);
    memset(value, 'x', (size_t) w->value_bytes);
    value[w->value_bytes] = '\0';
    static __thread char buf[1 << 16];
    size_t have = 0;
    uint64_t *sent_at = calloc((size_t) w->in_flight, sizeof *sent_at);
    int head = 0, tail = 0, out = 0;
    uint64_t end = s_now_us() + (uint64_t) (w->seconds * 1e6);
    while (s_now_us() < end || out > 0) {
        while (out < w->in_flight && s_now_us() < end) {
            sent_at[tail] = s_now_us();
            tail = (tail + 1) % w->in_flight;
            if (s_send_pair(w, &rng, value) != 0)
                goto done;
            out++;
        }
        int got = s_read_replies(w, buf, sizeof buf, &have, 1, sent_at, &head);
        if (got < 0)
            goto done;
        out -= got;
        w->ops += (uint64_t) got;
    }
    free(value);
    free(sent_at);
    return NULL;
done:
    w->broken = 1;
    free(value);
    free(sent_at);
    return NULL;
}

static int s_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: redis_wait HOST PORT CONNECTIONS IN_FLIGHT KEYS VALUE_BYTES SECONDS\n");
        return 2;
    }
    s_host = argv[1];
    s_port = atoi(argv[2]);
    int conns = atoi(argv[3]), in_flight = atoi(argv[4]);
    long keys = atol(argv[5]), vb = atol(argv[6]);
    double secs = atof(argv[7]);
    if (conns < 1 || conns > 1000 || in_flight < 1 || in_flight > 1000 || keys < 1 || vb < 1 || vb > 4000 ||
        !(secs > 0)) {
        fprintf(stderr, "redis_wait: bad arguments\n");
        return 2;
    }
    worker_t *w = calloc((size_t) conns, sizeof *w);
    pthread_t *th = calloc((size_t) conns, sizeof *th);
    for (int i = 0; i < conns; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) s_port)};
        inet_pton(AF_INET, s_host, &sa.sin_addr);
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) != 0) {
            fprintf(stderr, "redis_wait: cannot connect to %s:%d: %s\n", s_host, s_port, strerror(errno));
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct timeval tv = {.tv_sec = 10};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        w[i] = (worker_t){.fd = fd, .in_flight = in_flight, .id = i, .keys = keys, .value_bytes = vb,
                          .seconds = secs, .cap = 2000000 / (size_t) conns};
        w[i].lat = malloc(w[i].cap * sizeof *w[i].lat);
    }
    uint64_t t0 = s_now_us();
    for (int i = 0; i < conns; i++)
        pthread_create(&th[i], NULL, s_work, &w[i]);
    uint64_t ops = 0, errors = 0;
    int broken = 0;
    size_t nlat = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(th[i], NULL);
        broken += w[i].broken;
        ops += w[i].ops;
        errors += w[i].errors;
        nlat += w[i].nlat;
    }
    double el = (double) (s_now_us() - t0) / 1e6;
    uint32_t *all = malloc((nlat ? nlat : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < conns; i++) {
        memcpy(all + k, w[i].lat, w[i].nlat * sizeof *all);
        k += w[i].nlat;
        close(w[i].fd);
        free(w[i].lat);
    }
    qsort(all, nlat, sizeof *all, s_cmp);
    printf("{\"ops_per_sec\":%.0f,\"p50_us\":%u,\"p99_us\":%u,\"errors\":%llu}\n", (double) ops / el,
           nlat ? all[nlat / 2] : 0, nlat ? all[(size_t) ((double) nlat * 0.99)] : 0, (unsigned long long) errors);
    free(all);
    free(w);
    free(th);
    if (broken)
        fprintf(stderr, "redis_wait: %d connection(s) failed or were silent for 10 s\n", broken);
    return broken ? 1 : 0;
}
