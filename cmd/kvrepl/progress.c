/* progress: a progress line on standard error, at most once a second,
 * while it is a terminal, and the clock of a command's summary. */
#include "kvrepl.h"
#include "kv_util.h"
#include <unistd.h>

void kr_progress_init(kr_progress_t *p)
{
    p->tty = isatty(STDERR_FILENO);
    p->t0_us = kv_mono_us();
    p->last_ms = kv_mono_ms();
}

bool kr_progress_due(kr_progress_t *p)
{
    if (!p->tty || kv_mono_ms() - p->last_ms < 1000)
        return false;
    p->last_ms = kv_mono_ms();
    return true;
}

double kr_progress_secs(const kr_progress_t *p)
{
    return (double) (kv_mono_us() - p->t0_us) / 1e6;
}

const char *kr_progress_cr(const kr_progress_t *p)
{
    return p->tty ? "\r" : "";
}
