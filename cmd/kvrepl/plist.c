/* plist: sets of partitions, parsed from and written as lists like
 * "0-1023" or "5,7,100-200". */
#include "kvrepl.h"
#include <assert.h>
#include <ctype.h>
#include <string.h>

/* A partition id at *p (decimal, 0 to 4095); moves *p past it. */
static int s_pid(const char **p, int *out)
{
    if (!isdigit((unsigned char) **p))
        return -1;
    long v = 0;
    while (isdigit((unsigned char) **p)) {
        v = v * 10 + (**p - '0');
        if (v >= KV_PARTITIONS)
            return -1;
        (*p)++;
    }
    *out = (int) v;
    return 0;
}

int kr_plist_parse(kr_plist_t *pl, const char *s, char *why, size_t whylen)
{
    memset(pl, 0, sizeof *pl);
    const char *p = s;
    if (!*s) {
        snprintf(why, whylen, "an empty list (expected partition ids 0 to %d, e.g. 0-1023 or 5,7,100-200)",
                 KV_PARTITIONS - 1);
        return -1;
    }
    for (;;) {
        const char *item = p;
        int a, b;
        if (s_pid(&p, &a) != 0)
            goto bad;
        b = a;
        if (*p == '-') {
            p++;
            if (s_pid(&p, &b) != 0)
                goto bad;
            if (b < a) {
                snprintf(why, whylen, "'%.*s' is an empty range (its end is before its start)", (int) (p - item), item);
                return -1;
            }
        }
        if (*p && *p != ',')
            goto bad;
        for (int i = a; i <= b; i++) {
            pl->count += !pl->in[i];
            pl->in[i] = true;
        }
        if (!*p)
            return 0;
        p++;
        continue;
    bad:;
        size_t n = strcspn(item, ",");
        snprintf(why, whylen, "'%.*s' is not a partition id (0 to %d) or a range of them (A-B)", (int) n, item,
                 KV_PARTITIONS - 1);
        return -1;
    }
}

void kr_plist_all(kr_plist_t *pl)
{
    for (int i = 0; i < KV_PARTITIONS; i++)
        pl->in[i] = true;
    pl->count = KV_PARTITIONS;
}

bool kr_plist_next(const kr_plist_t *pl, int *from, int *to)
{
    int a = *from;
    while (a < KV_PARTITIONS && !pl->in[a])
        a++;
    if (a >= KV_PARTITIONS)
        return false;
    int b = a;
    while (b < KV_PARTITIONS && pl->in[b])
        b++;
    *from = a;
    *to = b;
    return true;
}

void kr_plist_format(const kr_plist_t *pl, char *out, size_t len)
{
    size_t n = 0;
    out[0] = '\0';
    int a = 0, b;
    while (kr_plist_next(pl, &a, &b) && n < len) {
        int k = b - a == 1 ? snprintf(out + n, len - n, "%s%d", n ? "," : "", a)
                           : snprintf(out + n, len - n, "%s%d-%d", n ? "," : "", a, b - 1);
        n += k > 0 ? (size_t) k : 0;
        a = b;
    }
}

void kr_plist_test(bool verbose)
{
    (void) verbose;
    kr_plist_t pl;
    char why[256], out[256];
    assert(kr_plist_parse(&pl, "0-1023", why, sizeof why) == 0 && pl.count == 1024 && pl.in[1023] && !pl.in[1024]);
    assert(kr_plist_parse(&pl, "5,7,100-200,7,4095", why, sizeof why) == 0 && pl.count == 104);
    kr_plist_format(&pl, out, sizeof out);
    assert(strcmp(out, "5,7,100-200,4095") == 0);
    int a = 0, b;
    assert(kr_plist_next(&pl, &a, &b) && a == 5 && b == 6);
    a = 8;
    assert(kr_plist_next(&pl, &a, &b) && a == 100 && b == 201);
    a = 4095;
    assert(kr_plist_next(&pl, &a, &b) && a == 4095 && b == 4096);
    a = 4096;
    assert(!kr_plist_next(&pl, &a, &b));
    static const struct {
        const char *in, *why;
    } bad[] = {
        {"", "empty list"},           {"4096", "'4096' is not a partition id"}, {"5-3", "'5-3' is an empty range"},
        {"1,,2", "'' is not"},        {"x", "'x' is not"},                      {"1-", "'1-' is not"},
        {"-1", "'-1' is not"},        {"1 2", "'1 2' is not"},                  {"0-4096", "'0-4096' is not"},
        {"3,", "'' is not"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        assert(kr_plist_parse(&pl, bad[i].in, why, sizeof why) == -1);
        assert(strstr(why, bad[i].why));
    }
    kr_plist_all(&pl);
    kr_plist_format(&pl, out, sizeof out);
    assert(strcmp(out, "0-4095") == 0 && pl.count == KV_PARTITIONS);
}
