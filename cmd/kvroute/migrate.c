/* migrate: kvroute's migrations, carried out by kvrepl processes (see
 * migrate.h). */
#include "migrate.h"
#include "kv_proto.h"
#include "kv_util.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define JOBS_MAX 64
#define CHUNK_MAX 512
#define RETRY_MS 1000
#define OUT_MAX 65536

enum { F_PENDING, F_RUNNING, F_DONE };

typedef struct {
    uint16_t pid;
    uint8_t ns;
    uint8_t state;
    uint64_t src, dst; /* node ids: the master, the member being filled */
    uint64_t retry_ms; /* not before (after a failure) */
} fill_t;

typedef struct {
    pid_t pid;         /* 0: a free slot */
    int fd;            /* its standard output */
    uint64_t src, dst;
    int ns, n;
    uint16_t pids[CHUNK_MAX];
    uint64_t start_ms;
    bool stale;        /* one of its nodes restarted meanwhile: what it did does not count */
    char *out;         /* what it printed */
    size_t out_len;
} job_t;

struct migrate {
    migrate_config_t cfg;
    kv_ptable_t t;
    char names[MIGRATE_NS_MAX][32];
    int rf[MIGRATE_NS_MAX], n_ns;
    fill_t *fills;     /* in (ns, pid) order */
    int n_fills;
    job_t jobs[JOBS_MAX];
    migrate_stats_t st;
};

migrate_t *migrate_new(const migrate_config_t *cfg)
{
    migrate_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cfg = *cfg;
    if (m->cfg.chunk < 1 || m->cfg.chunk > CHUNK_MAX)
        m->cfg.chunk = CHUNK_MAX;
    if (m->cfg.per_node < 1)
        m->cfg.per_node = 1;
    kv_ptable_init(&m->t);
    return m;
}

static void s_job_free(job_t *j)
{
    if (j->fd >= 0)
        close(j->fd);
    free(j->out);
    memset(j, 0, sizeof *j);
    j->fd = -1;
}

void migrate_destroy(migrate_t **self_p)
{
    migrate_t *m = *self_p;
    if (!m)
        return;
    for (int i = 0; i < JOBS_MAX; i++)
        if (m->jobs[i].pid > 0) {
            kill(m->jobs[i].pid, SIGTERM);
            waitpid(m->jobs[i].pid, NULL, 0);
            s_job_free(&m->jobs[i]);
        }
    free(m->fills);
    free(m);
    *self_p = NULL;
}

/* The fill of (ns, pid, dst) in list, or NULL: the list is in (ns, pid)
 * order, so a binary search finds the partition's few entries. */
static fill_t *s_find(fill_t *list, int n, int ns, uint16_t pid, uint64_t dst)
{
    int lo = 0, hi = n;
    uint32_t key = (uint32_t) ns << 16 | pid;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (((uint32_t) list[mid].ns << 16 | list[mid].pid) < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < n && list[lo].ns == ns && list[lo].pid == pid; lo++)
        if (list[lo].dst == dst)
            return &list[lo];
    return NULL;
}

int migrate_table(migrate_t *m, const kv_ptable_t *t, char names[][32], const int *rf, int n_ns)
{
    if (n_ns > MIGRATE_NS_MAX)
        n_ns = MIGRATE_NS_MAX;
    int cap = n_ns * KV_PARTITIONS * KV_RF_MAX, n = 0;
    fill_t *fills = cap ? calloc((size_t) cap, sizeof *fills) : NULL;
    if (cap && !fills) {
        kv_warn("migrations: out of memory working out the fills of table version %u", t->version);
        return -1;
    }
    for (int ns = 0; ns < n_ns; ns++)
        for (int p = 0; p < KV_PARTITIONS; p++) {
            kv_pcopies_t c;
            kv_ptable_copies(t, (uint16_t) p, rf[ns], &c);
            for (int k = 0; k < c.n && c.master >= 0; k++) {
                if (c.full[k])
                    continue;
                fill_t *f = &fills[n++];
                f->pid = (uint16_t) p;
                f->ns = (uint8_t) ns;
                f->src = t->nodes[c.master].id;
                f->dst = t->nodes[c.nodes[k]].id;
                /* done under the table just before this one, and the member
                 * stayed in the target (so it got every write meanwhile);
                 * after a version this router did not see, all is done again */
                fill_t *old = m->n_ns == n_ns && t->version == m->t.version + 1
                                  ? s_find(m->fills, m->n_fills, ns, (uint16_t) p, f->dst)
                                  : NULL;
                f->state = old ? old->state : F_PENDING;
                f->retry_ms = old ? old->retry_ms : 0;
            }
        }
    free(m->fills);
    m->fills = fills;
    m->n_fills = n;
    m->t = *t;
    m->n_ns = n_ns;
    for (int i = 0; i < n_ns; i++) {
        snprintf(m->names[i], sizeof m->names[i], "%s", names[i]);
        m->rf[i] = rf[i];
    }
    uint32_t pending = 0;
    for (int i = 0; i < n; i++)
        pending += fills[i].state != F_DONE;
    if (n)
        kv_warn("migrations for table version %u: %d partition fills, %u to do", t->version, n, pending);
    return 0;
}

void migrate_restarted(migrate_t *m, uint64_t id)
{
    for (int i = 0; i < JOBS_MAX; i++)
        if (m->jobs[i].pid > 0 && (m->jobs[i].src == id || m->jobs[i].dst == id))
            m->jobs[i].stale = true;
    for (int i = 0; i < m->n_fills; i++)
        if (m->fills[i].dst == id && m->fills[i].state == F_DONE)
            m->fills[i].state = F_PENDING;
}

static const char *s_endpoint(const migrate_t *m, uint64_t id)
{
    int at = kv_ptable_find(&m->t, id);
    return at >= 0 ? m->t.nodes[at].endpoint : NULL;
}

static int s_busy(const migrate_t *m, uint64_t id)
{
    int n = 0;
    for (int i = 0; i < JOBS_MAX; i++)
        n += m->jobs[i].pid > 0 && (m->jobs[i].src == id || m->jobs[i].dst == id);
    return n;
}

/* Read what a job printed so far (its pipe is non-blocking). */
static void s_drain(job_t *j)
{
    for (;;) {
        if (!j->out && !(j->out = malloc(OUT_MAX)))
            return;
        char buf[4096];
        ssize_t got = read(j->fd, buf, sizeof buf);
        if (got <= 0)
            return;
        size_t keep = (size_t) got < OUT_MAX - 1 - j->out_len ? (size_t) got : OUT_MAX - 1 - j->out_len;
        memcpy(j->out + j->out_len, buf, keep);
        j->out_len += keep;
        j->out[j->out_len] = '\0';
    }
}

/* "3-5,9": the partitions of a job, as kvrepl reads them. */
static void s_list(const job_t *j, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < j->n && len + 16 < cap;) {
        int e = i;
        while (e + 1 < j->n && j->pids[e + 1] == j->pids[e] + 1)
            e++;
        len += (size_t) (e > i ? snprintf(out + len, cap - len, "%s%u-%u", len ? "," : "", j->pids[i], j->pids[e])
                               : snprintf(out + len, cap - len, "%s%u", len ? "," : "", j->pids[i]));
        i = e + 1;
    }
}

static bool s_start(migrate_t *m, job_t *j)
{
    int fds[2];
    const char *from = s_endpoint(m, j->src), *to = s_endpoint(m, j->dst);
    if (!from || !to || pipe2(fds, O_CLOEXEC) != 0)
        return false;
    char list[CHUNK_MAX * 12], rate[32];
    s_list(j, list, sizeof list);
    snprintf(rate, sizeof rate, "%" PRIu64, m->cfg.rate);
    char *argv[] = {(char *) m->cfg.kvrepl, "migrate", "--from", (char *) from, "--to", (char *) to, "--ns",
                    m->names[j->ns], "--partitions", list, "--rate", rate, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, m->cfg.kvrepl, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        kv_warn("migrations: cannot start %s: %s", m->cfg.kvrepl, strerror(rc));
        return false;
    }
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    j->pid = pid;
    j->fd = fds[0];
    j->start_ms = kv_mono_ms();
    kv_warn("migration started (pid %d): namespace '%s', %d partition%s (%.60s%s) from %016" PRIx64 " to %016" PRIx64,
            (int) pid, m->names[j->ns], j->n, j->n == 1 ? "" : "s", list, strlen(list) > 60 ? "..." : "", j->src,
            j->dst);
    return true;
}

static void s_finished(migrate_t *m, job_t *j, int status)
{
    s_drain(j);
    double secs = (double) (kv_mono_ms() - j->start_ms) / 1000.0;
    uint64_t records = 0, bytes = 0;
    for (const char *p = j->out; p && (p = strstr(p, "done ")); p += 5) {
        unsigned pid;
        unsigned long long rec, by;
        if (sscanf(p, "done %u %llu %llu", &pid, &rec, &by) == 3) {
            records += rec;
            bytes += by;
        }
    }
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && !j->stale;
    if (j->stale)
        kv_warn("migration (pid %d): a node it copied from or to restarted while it ran: its partitions are done again",
                (int) j->pid);
    for (int k = 0; k < j->n; k++) {
        fill_t *f = s_find(m->fills, m->n_fills, j->ns, j->pids[k], j->dst);
        if (f && f->state == F_RUNNING) {
            f->state = ok ? F_DONE : F_PENDING;
            f->retry_ms = ok ? 0 : kv_mono_ms() + RETRY_MS;
            m->st.done += ok;
        }
    }
    if (ok)
        m->st.records += records;
    if (ok)
        kv_warn("migration done (pid %d): namespace '%s', %d partitions from %016" PRIx64 " to %016" PRIx64
                " in %.2f s: %" PRIu64 " records, %.1f MB (%.0f records/s, %.1f MB/s)",
                (int) j->pid, m->names[j->ns], j->n, j->src, j->dst, secs, records, (double) bytes / 1e6,
                secs > 0 ? (double) records / secs : 0.0, secs > 0 ? (double) bytes / 1e6 / secs : 0.0);
    else {
        m->st.failed++;
        kv_warn("migration FAILED (pid %d, %s %d): namespace '%s', %d partitions from %016" PRIx64 " to %016" PRIx64
                " after %.2f s; retried in %d ms",
                (int) j->pid, WIFEXITED(status) ? "exit status" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), m->names[j->ns], j->n, j->src, j->dst,
                secs, RETRY_MS);
    }
    s_job_free(j);
}

void migrate_tick(migrate_t *m, bool (*up)(void *arg, uint64_t id), void *arg)
{
    for (int i = 0; i < JOBS_MAX; i++) {
        job_t *j = &m->jobs[i];
        int status;
        if (j->pid <= 0)
            continue;
        s_drain(j);
        if (waitpid(j->pid, &status, WNOHANG) == j->pid)
            s_finished(m, j, status);
    }
    uint64_t now = kv_mono_ms();
    for (int i = 0; i < m->n_fills; i++) {
        fill_t *f = &m->fills[i];
        if (f->state != F_PENDING || f->retry_ms > now || s_busy(m, f->src) >= m->cfg.per_node ||
            s_busy(m, f->dst) >= m->cfg.per_node || !up(arg, f->src) || !up(arg, f->dst))
            continue;
        job_t *j = NULL;
        for (int k = 0; k < JOBS_MAX && !j; k++)
            if (m->jobs[k].pid == 0)
                j = &m->jobs[k];
        if (!j)
            return;
        memset(j, 0, sizeof *j);
        j->fd = -1;
        j->src = f->src;
        j->dst = f->dst;
        j->ns = f->ns;
        for (int k = i; k < m->n_fills && j->n < m->cfg.chunk; k++) {
            fill_t *g = &m->fills[k];
            if (g->state == F_PENDING && g->retry_ms <= now && g->ns == f->ns && g->src == f->src && g->dst == f->dst)
                j->pids[j->n++] = g->pid;
        }
        if (!s_start(m, j)) { /* the whole chunk waits, so a missing kvrepl is one warning a second */
            for (int k = 0; k < j->n; k++)
                s_find(m->fills, m->n_fills, j->ns, j->pids[k], j->dst)->retry_ms = now + RETRY_MS;
            s_job_free(j);
            continue;
        }
        for (int k = 0; k < j->n; k++)
            s_find(m->fills, m->n_fills, j->ns, j->pids[k], j->dst)->state = F_RUNNING;
    }
}

bool migrate_done(const migrate_t *m)
{
    for (int i = 0; i < JOBS_MAX; i++)
        if (m->jobs[i].pid > 0)
            return false;
    for (int i = 0; i < m->n_fills; i++)
        if (m->fills[i].state != F_DONE)
            return false;
    return true;
}

void migrate_stats(const migrate_t *m, migrate_stats_t *st)
{
    *st = m->st;
    st->remaining = st->active = 0;
    for (int i = 0; i < m->n_fills; i++)
        st->remaining += m->fills[i].state != F_DONE;
    for (int i = 0; i < JOBS_MAX; i++)
        st->active += m->jobs[i].pid > 0;
}
