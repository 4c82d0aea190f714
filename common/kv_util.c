/* kv_util: parsing, clocks and messages. */
#include "kv_util.h"
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *kv_progname = "kvstore";

int kv_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    if (!s || !(isdigit((unsigned char) *s) || (*s == '-' && isdigit((unsigned char) s[1]))))
        return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* number followed by an optional one-letter suffix from units/mults */
static int s_parse_suffixed(const char *s, const char *units, const uint64_t *mults, uint64_t *out)
{
    char *end;
    if (!s || !isdigit((unsigned char) *s)) /* strtoull would skip spaces and accept a sign */
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    uint64_t m = 1;
    if (*end) {
        const char *u = strchr(units, *end);
        if (!u || end[1])
            return -1;
        m = mults[u - units];
    }
    if (v > UINT64_MAX / m)
        return -1;
    *out = v * m;
    return 0;
}

int kv_parse_size(const char *s, uint64_t *out)
{
    static const uint64_t mults[] = {1ull << 10, 1ull << 20, 1ull << 30, 1ull << 40,
                                     1ull << 10, 1ull << 20, 1ull << 30, 1ull << 40};
    return s_parse_suffixed(s, "KMGTkmgt", mults, out);
}

int kv_parse_duration(const char *s, int64_t *out)
{
    static const uint64_t mults[] = {1, 60, 3600, 86400};
    uint64_t v;
    if (s_parse_suffixed(s, "smhd", mults, &v) != 0 || v > INT64_MAX)
        return -1;
    *out = (int64_t) v;
    return 0;
}

uint64_t kv_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

uint64_t kv_mono_ms(void)
{
    return kv_mono_us() / 1000;
}

uint64_t kv_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void s_vwarn(const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", kv_progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void kv_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vwarn(fmt, ap);
    va_end(ap);
}

void kv_die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vwarn(fmt, ap);
    va_end(ap);
    exit(code);
}

int kv_write_ready(const char *path, const char *endpoint)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int) sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    if (fprintf(f, "%s\n", endpoint) < 0) {
        int e = errno;
        fclose(f);
        errno = e;
        return -1;
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return -1;
    return 0;
}

int kv_sched_parse(const char *name)
{
    if (strcmp(name, "batch") == 0)
        return SCHED_BATCH;
    if (strcmp(name, "normal") == 0)
        return SCHED_OTHER;
    return -1;
}

const char *kv_sched_name(void)
{
    int policy = sched_getscheduler(0);
    return policy == SCHED_BATCH ? "batch" : policy == SCHED_OTHER ? "normal" : "other";
}

void kv_sched_set(int policy)
{
    struct sched_param sp = {0};
    if (sched_getscheduler(0) != policy && sched_setscheduler(0, policy, &sp) != 0)
        kv_warn("cannot set the scheduling policy to %s: %s; %s runs under its current policy",
                policy == SCHED_BATCH ? "batch" : "normal", strerror(errno), kv_progname);
}

void kv_util_test(bool verbose)
{
    (void) verbose;
    int64_t i;
    uint64_t u;
    assert(kv_parse_int("42", 0, 100, &i) == 0 && i == 42);
    assert(kv_parse_int("-2", -2, 10, &i) == 0 && i == -2);
    assert(kv_parse_int("101", 0, 100, &i) == -1);
    assert(kv_parse_int("4x", 0, 100, &i) == -1);
    assert(kv_parse_int("", 0, 100, &i) == -1);
    assert(kv_sched_parse("batch") == SCHED_BATCH && kv_sched_parse("normal") == SCHED_OTHER);
    assert(kv_sched_parse("Batch") == -1 && kv_sched_parse("") == -1 && kv_sched_parse("fifo") == -1);
    assert(kv_parse_int("99999999999999999999", INT64_MIN, INT64_MAX, &i) == -1);
    assert(kv_parse_size("64M", &u) == 0 && u == 64ull << 20);
    assert(kv_parse_size("1g", &u) == 0 && u == 1ull << 30);
    assert(kv_parse_size("100", &u) == 0 && u == 100);
    assert(kv_parse_size("1MB", &u) == -1);
    assert(kv_parse_size("-1", &u) == -1);
    assert(kv_parse_size(" -5", &u) == -1 && kv_parse_size(" 5", &u) == -1 && kv_parse_size("+5", &u) == -1);
    assert(kv_parse_int(" 5", 0, 10, &i) == -1 && kv_parse_int("+5", 0, 10, &i) == -1);
    assert(kv_parse_size("99999999999T", &u) == -1);
    assert(kv_parse_duration("1h", &i) == 0 && i == 3600);
    assert(kv_parse_duration("30", &i) == 0 && i == 30);
    assert(kv_parse_duration("2d", &i) == 0 && i == 172800);
    assert(kv_parse_duration("1y", &i) == -1);
    assert(kv_wall_ms() > 1600000000000ull);
    uint64_t a = kv_mono_us(), b = kv_mono_us();
    assert(b >= a);
}
