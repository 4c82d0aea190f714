/* kv_util: small helpers shared by the programs: number, size and duration
 * parsing with clear errors, clocks, and err(3)-style messages. */
#ifndef KV_UTIL_H
#define KV_UTIL_H

#include <stdbool.h>
#include <stdint.h>

/* Decimal integer in [min, max], whole string.  0 or -1. */
int kv_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);
/* Size with optional suffix K, M, G, T (powers of 1024), e.g. "64M".  0 or -1. */
int kv_parse_size(const char *s, uint64_t *out);
/* Duration in seconds with optional suffix s, m, h, d, e.g. "1h".  0 or -1. */
int kv_parse_duration(const char *s, int64_t *out);

uint64_t kv_wall_ms(void);  /* milliseconds since the Unix epoch */
uint64_t kv_mono_ms(void);  /* monotonic milliseconds */
uint64_t kv_mono_us(void);

/* The program name used in messages (set once by main). */
extern const char *kv_progname;
/* "prog: message" on stderr. */
void kv_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "prog: message" on stderr, then exit(code). */
_Noreturn void kv_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Write "endpoint\n" to path through path.tmp and a rename, so a reader
 * never sees it half written (a server's --ready-file).  0, or -1 with errno. */
int kv_write_ready(const char *path, const char *endpoint);

/* Scheduling policies by name (kvnode(1), THREADS): "batch" is SCHED_BATCH,
 * "normal" SCHED_OTHER; -1 for any other name. */
int kv_sched_parse(const char *name);
/* The calling thread's policy: "batch", "normal", or "other" for any other. */
const char *kv_sched_name(void);
/* Put the calling thread under policy (one of kv_sched_parse's); if it
 * cannot (an unprivileged thread cannot leave SCHED_IDLE), warn and go on
 * under the current one.  Threads started afterwards inherit it. */
void kv_sched_set(int policy);

void kv_util_test(bool verbose);

#endif
