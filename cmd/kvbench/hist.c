/* hist: log-linear latency histogram. */
#include "hist.h"
#include <assert.h>
#include <string.h>

static inline int s_index(uint64_t v)
{
    if (v < 2 * HIST_SUB) /* exact */
        return (int) v;
    int e = 63 - __builtin_clzll(v) - HIST_SUB_BITS; /* v >> e is in [HIST_SUB, 2*HIST_SUB) */
    if (e > HIST_MAX_EXP)
        return HIST_BUCKETS - 1;
    return (e + 1) * HIST_SUB + (int) (v >> e) - HIST_SUB;
}

/* largest value that maps to bucket i */
static inline uint64_t s_upper(int i)
{
    if (i < 2 * HIST_SUB)
        return (uint64_t) i;
    int e = i / HIST_SUB - 1;
    uint64_t mant = (uint64_t) (i % HIST_SUB) + HIST_SUB;
    return ((mant + 1) << e) - 1;
}

void hist_reset(hist_t *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void hist_record(hist_t *h, uint64_t v)
{
    h->counts[s_index(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
    if (v < h->min)
        h->min = v;
}

void hist_merge(hist_t *dst, const hist_t *src)
{
    for (int i = 0; i < HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    if (src->max > dst->max)
        dst->max = src->max;
    if (src->min < dst->min)
        dst->min = src->min;
}

uint64_t hist_percentile(const hist_t *h, double p)
{
    if (!h->total)
        return 0;
    uint64_t rank = (uint64_t) ((p / 100.0) * (double) h->total + 0.5);
    if (rank < 1)
        rank = 1;
    if (rank > h->total)
        rank = h->total;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t u = s_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}

void hist_test(bool verbose)
{
    (void) verbose;
    static hist_t h;
    hist_reset(&h);
    assert(hist_percentile(&h, 50) == 0);
    /* every value maps to a bucket whose upper edge is within 1/128 above it */
    for (uint64_t v = 1; v < (1ull << 41); v = v * 3 / 2 + 1) {
        int i = s_index(v);
        assert(s_upper(i) >= v);
        assert(s_upper(i) - v <= v / HIST_SUB + 1);
        if (i > 0)
            assert(s_upper(i - 1) < v);
    }
    /* 1..10000 us uniformly: percentiles within 1% */
    for (uint64_t v = 1; v <= 10000; v++)
        hist_record(&h, v * 1000);
    assert(h.total == 10000 && h.max == 10000000 && h.min == 1000);
    double ps[] = {50, 90, 99, 99.9};
    for (int k = 0; k < 4; k++) {
        double want = ps[k] * 100 * 1000;
        double got = (double) hist_percentile(&h, ps[k]);
        assert(got >= want && got <= want * 1.01);
    }
    assert(hist_percentile(&h, 100) == 10000000);
    /* a single outlier shows at the tail, not in the median */
    static hist_t t;
    hist_reset(&t);
    for (int i = 0; i < 999; i++)
        hist_record(&t, 50000);
    hist_record(&t, 5000000);
    assert(hist_percentile(&t, 50) <= 50500 && hist_percentile(&t, 99.9) <= 50500);
    assert(hist_percentile(&t, 100) == 5000000);
    static hist_t m;
    hist_reset(&m);
    hist_merge(&m, &h);
    hist_merge(&m, &t);
    assert(m.total == 11000 && m.max == 10000000 && m.min == 1000);
}
