/* kv_err: table of error codes, names and symbols. */
#include "kv_err.h"
#include <assert.h>
#include <stddef.h>
#include <string.h>

static const struct {
    int code;
    const char *symbol;
    const char *name;
} s_errors[] = {
    {KV_OK, "OK", "ok"},
    {KV_ERR_SERVER, "SERVER", "server error"},
    {KV_ERR_NOT_FOUND, "NOT_FOUND", "not found"},
    {KV_ERR_GENERATION, "GENERATION", "generation mismatch"},
    {KV_ERR_BAD_REQUEST, "BAD_REQUEST", "bad request"},
    {KV_ERR_EXISTS, "EXISTS", "record exists"},
    {KV_ERR_NS_FULL, "NAMESPACE_FULL", "namespace full"},
    {KV_ERR_TIMEOUT, "TIMEOUT", "timeout"},
    {KV_ERR_UNAVAILABLE, "UNAVAILABLE", "partition unavailable"},
    {KV_ERR_BIN_TYPE, "BIN_TYPE", "incompatible bin type"},
    {KV_ERR_TOO_BIG, "RECORD_TOO_BIG", "record too big"},
    {KV_ERR_KEY_BUSY, "KEY_BUSY", "key busy"},
    {KV_ERR_UNSUPPORTED, "UNSUPPORTED", "unsupported operation"},
    {KV_ERR_NAMESPACE, "NAMESPACE", "no such namespace"},
    {KV_ERR_BIN_NAME, "BIN_NAME", "bin name too long"},
    {KV_ERR_FORBIDDEN, "FORBIDDEN", "forbidden"},
    {KV_ERR_WRONG_NODE, "WRONG_NODE", "wrong node"},
    {KV_ERR_IN_DOUBT, "IN_DOUBT", "in doubt"},
    {KV_ERR_TOO_MANY_BINS, "TOO_MANY_BINS", "too many bins"},
    {KV_ERR_VERSION, "VERSION", "unsupported protocol version"},
};
#define N_ERRORS (sizeof s_errors / sizeof s_errors[0])

const char *kv_err_name(int code)
{
    for (size_t i = 0; i < N_ERRORS; i++)
        if (s_errors[i].code == code)
            return s_errors[i].name;
    return "unknown error";
}

const char *kv_err_symbol(int code)
{
    for (size_t i = 0; i < N_ERRORS; i++)
        if (s_errors[i].code == code)
            return s_errors[i].symbol;
    return NULL;
}

bool kv_err_is_negative(int code)
{
    return code == KV_ERR_NOT_FOUND || code == KV_ERR_GENERATION || code == KV_ERR_EXISTS;
}

int kv_err_at(int i)
{
    return i >= 0 && (size_t) i < N_ERRORS ? s_errors[i].code : -1;
}

void kv_err_test(bool verbose)
{
    (void) verbose;
    assert(strcmp(kv_err_name(KV_ERR_NOT_FOUND), "not found") == 0);
    assert(strcmp(kv_err_symbol(KV_ERR_TOO_BIG), "RECORD_TOO_BIG") == 0);
    assert(kv_err_symbol(999) == NULL);
    assert(strcmp(kv_err_name(999), "unknown error") == 0);
    assert(kv_err_is_negative(KV_ERR_GENERATION));
    assert(!kv_err_is_negative(KV_ERR_TIMEOUT));
    /* codes are unique and the table is iterable */
    int n = 0;
    for (int i = 0; kv_err_at(i) >= 0; i++, n++)
        for (int j = i + 1; kv_err_at(j) >= 0; j++)
            assert(kv_err_at(i) != kv_err_at(j));
    assert(n == (int) N_ERRORS);
}
