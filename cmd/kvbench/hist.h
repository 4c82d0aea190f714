/* hist: a latency histogram that stays precise at the tail, in the
 * spirit of HdrHistogram.  Values (nanoseconds) fall into log-linear
 * buckets: 128 linear sub-buckets per power of two, so any recorded value
 * is reported within 1/128 (< 0.8%) of itself, from 1 ns up to 2^42 ns
 * (73 minutes).  The exact maximum is kept too. */
#ifndef KVBENCH_HIST_H
#define KVBENCH_HIST_H

#include <stdbool.h>
#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_MAX_EXP 34
#define HIST_BUCKETS (HIST_SUB * (HIST_MAX_EXP + 2))

typedef struct {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    uint64_t max;
    uint64_t min;
} hist_t;

void hist_reset(hist_t *h);
void hist_record(hist_t *h, uint64_t value);
/* Add every count of src into dst. */
void hist_merge(hist_t *dst, const hist_t *src);
/* Value at percentile p (0..100): the upper edge of the bucket holding
 * that rank, capped at the exact maximum.  0 if empty. */
uint64_t hist_percentile(const hist_t *h, double p);

void hist_test(bool verbose);

#endif
