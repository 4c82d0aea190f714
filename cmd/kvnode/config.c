/* config: parse --ns specifications and kvnode configuration files. */
#include "config.h"
#include "disk.h"
#include "kv_util.h"
#include <assert.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void config_init(node_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->listen, sizeof cfg->listen, "%s", KVNODE_DEFAULT_ENDPOINT);
    cfg->sched = SCHED_BATCH;
}

int config_set_sched(node_config_t *cfg, const char *val, char *why, size_t whylen)
{
    int policy = kv_sched_parse(val);
    if (policy < 0) {
        snprintf(why, whylen, "sched '%.100s' must be batch or normal", val);
        return -1;
    }
    cfg->sched = policy;
    return 0;
}

void config_ns_defaults(kv_ns_config_t *ns, const char *name)
{
    memset(ns, 0, sizeof *ns);
    snprintf(ns->name, sizeof ns->name, "%s", name);
    ns->default_ttl = 0;
    ns->max_record_size = 1 << 20;
    ns->memory_limit = 4ull << 30;
    ns->max_bins = 256;
    ns->rf = 2;
    ns->storage = KV_STORAGE_UNSET;
    ns->flush_ms = 1000;
    ns->write_block = 8u << 20;
    ns->defrag_lwm = 50;
    ns->disk_limit = 4ull << 30;
}

static int s_set_bool(const char *key, const char *val, bool *out, char *why, size_t whylen)
{
    if (strcmp(val, "true") == 0)
        *out = true;
    else if (strcmp(val, "false") == 0)
        *out = false;
    else {
        snprintf(why, whylen, "%s '%s' must be true or false", key, val);
        return -1;
    }
    return 0;
}

/* The keys that only a namespace stored in a file takes. */
static int s_set_file_key(kv_ns_config_t *ns, const char *key, const char *val, char *why, size_t whylen)
{
    uint64_t u;
    int64_t i;
    if (strcmp(key, "commit-to-device") == 0) {
        if (s_set_bool(key, val, &ns->commit_to_device, why, whylen) != 0)
            return -1;
    } else if (strcmp(key, "flush-ms") == 0) {
        if (kv_parse_int(val, 1, 60000, &i) != 0) {
            snprintf(why, whylen, "flush-ms '%s' must be an integer from 1 to 60000", val);
            return -1;
        }
        ns->flush_ms = (uint32_t) i;
    } else if (strcmp(key, "write-block") == 0) {
        if (kv_parse_size(val, &u) != 0 || u < (64u << 10) || u > (8u << 20) || (u & (u - 1)) != 0) {
            snprintf(why, whylen, "write-block '%s' must be a power of two from 64K to 8M", val);
            return -1;
        }
        ns->write_block = (uint32_t) u;
    } else if (strcmp(key, "defrag-lwm") == 0) {
        if (kv_parse_int(val, 1, 99, &i) != 0) {
            snprintf(why, whylen, "defrag-lwm '%s' must be a percentage from 1 to 99", val);
            return -1;
        }
        ns->defrag_lwm = (uint32_t) i;
    } else if (strcmp(key, "disk") == 0) {
        if (kv_parse_size(val, &u) != 0 || u == 0) {
            snprintf(why, whylen, "disk '%s' must be a size (e.g. 512M, 4G)", val);
            return -1;
        }
        ns->disk_limit = u;
    } else
        return 1;
    if (!ns->file_key[0])
        snprintf(ns->file_key, sizeof ns->file_key, "%s", key);
    return 0;
}

static int s_set(kv_ns_config_t *ns, const char *key, const char *val, char *why, size_t whylen)
{
    uint64_t u;
    int64_t i;
    if (strcmp(key, "default-ttl") == 0) {
        if (kv_parse_duration(val, &i) != 0 || i > KV_TTL_MAX) {
            snprintf(why, whylen, "default-ttl '%s' is not a duration up to 10 years (e.g. 0, 3600, 1h, 30d)", val);
            return -1;
        }
        ns->default_ttl = i;
    } else if (strcmp(key, "max-record-size") == 0) {
        if (kv_parse_size(val, &u) != 0 || u < 64 || u > (8u << 20)) {
            snprintf(why, whylen, "max-record-size '%s' must be a size from 64 to 8M", val);
            return -1;
        }
        ns->max_record_size = u;
        ns->max_record_size_set = true;
    } else if (strcmp(key, "memory") == 0) {
        if (kv_parse_size(val, &u) != 0 || u < (1u << 20)) {
            snprintf(why, whylen, "memory '%s' must be a size of at least 1M (e.g. 512M, 4G)", val);
            return -1;
        }
        ns->memory_limit = u;
    } else if (strcmp(key, "max-bins") == 0) {
        if (kv_parse_int(val, 1, 32767, &i) != 0) {
            snprintf(why, whylen, "max-bins '%s' must be an integer from 1 to 32767", val);
            return -1;
        }
        ns->max_bins = (uint32_t) i;
    } else if (strcmp(key, "rf") == 0) {
        if (kv_parse_int(val, 1, 8, &i) != 0) {
            snprintf(why, whylen, "rf '%s' must be an integer from 1 to 8 (copies of each record in a cluster)", val);
            return -1;
        }
        ns->rf = (uint32_t) i;
    } else if (strcmp(key, "mode") == 0) {
        if (strcmp(val, "sc") == 0) {
            snprintf(why, whylen, "mode 'sc' (strong consistency) is not supported yet; use mode=ap");
            return -1;
        }
        if (strcmp(val, "ap") != 0) {
            snprintf(why, whylen, "mode '%s' must be ap (sc is not supported yet)", val);
            return -1;
        }
    } else if (strcmp(key, "storage") == 0) {
        if (strcmp(val, "memory") == 0)
            ns->storage = KV_STORAGE_MEMORY;
        else if (strcmp(val, "file") == 0)
            ns->storage = KV_STORAGE_FILE;
        else {
            snprintf(why, whylen, "storage '%s' must be memory or file", val);
            return -1;
        }
    } else {
        int rc = s_set_file_key(ns, key, val, why, whylen);
        if (rc > 0)
            snprintf(why, whylen,
                     "unknown namespace key '%s' (keys: default-ttl, max-record-size, memory, max-bins, rf, mode, storage, "
                     "commit-to-device, flush-ms, write-block, defrag-lwm, disk)",
                     key);
        return rc == 0 ? 0 : -1;
    }
    return 0;
}

static bool s_valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > KV_NS_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!(c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return false;
    }
    return true;
}

int config_add_ns(node_config_t *cfg, const char *spec, char *why, size_t whylen)
{
    char *copy = strdup(spec), *save = NULL;
    char *name = strtok_r(copy, ",", &save);
    int rc = -1;
    if (!name || !s_valid_name(name)) {
        snprintf(why, whylen, "namespace name '%s' must be 1 to %d letters, digits, '-' or '_'",
                 name ? name : "", KV_NS_MAX);
        goto done;
    }
    for (int i = 0; i < cfg->n_ns; i++)
        if (strcmp(cfg->ns[i].name, name) == 0) {
            snprintf(why, whylen, "namespace '%s' is defined twice", name);
            goto done;
        }
    if (cfg->n_ns >= KV_MAX_NS) {
        snprintf(why, whylen, "too many namespaces (limit %d)", KV_MAX_NS);
        goto done;
    }
    kv_ns_config_t ns;
    config_ns_defaults(&ns, name);
    for (char *kv = strtok_r(NULL, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            snprintf(why, whylen, "namespace '%s': '%s' is not key=value", name, kv);
            goto done;
        }
        *eq = '\0';
        char inner[400];
        if (s_set(&ns, kv, eq + 1, inner, sizeof inner) != 0) {
            snprintf(why, whylen, "namespace '%s': %s", name, inner);
            goto done;
        }
    }
    snprintf(cfg->origin[cfg->n_ns], sizeof cfg->origin[0], "--ns %.300s", spec);
    cfg->ns[cfg->n_ns++] = ns;
    rc = 0;
done:
    free(copy);
    return rc;
}

int config_load(node_config_t *cfg, const char *path, char *why, size_t whylen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(why, whylen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    char line[4096], inner[512];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(why, whylen, "%s:%d: line longer than %zu bytes", path, lineno, sizeof line - 2);
            rc = -1;
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *key = strtok(line, " \t\r\n");
        if (!key)
            continue;
        char *val = strtok(NULL, " \t\r\n");
        char *extra = val ? strtok(NULL, " \t\r\n") : NULL;
        if (!val || extra) {
            snprintf(why, whylen, "%s:%d: expected '%s VALUE'", path, lineno, key);
            rc = -1;
        } else if (strcmp(key, "listen") == 0) {
            if (strlen(val) >= sizeof cfg->listen) {
                snprintf(why, whylen, "%s:%d: endpoint too long", path, lineno);
                rc = -1;
            } else
                snprintf(cfg->listen, sizeof cfg->listen, "%s", val);
        } else if (strcmp(key, "data") == 0) {
            if (strlen(val) >= sizeof cfg->data) {
                snprintf(why, whylen, "%s:%d: data directory name too long", path, lineno);
                rc = -1;
            } else
                snprintf(cfg->data, sizeof cfg->data, "%s", val);
        } else if (strcmp(key, "sched") == 0) {
            if (config_set_sched(cfg, val, inner, sizeof inner) != 0) {
                snprintf(why, whylen, "%s:%d: %s", path, lineno, inner);
                rc = -1;
            }
        } else if (strcmp(key, "ns") == 0) {
            if (config_add_ns(cfg, val, inner, sizeof inner) != 0) {
                snprintf(why, whylen, "%s:%d: %s", path, lineno, inner);
                rc = -1;
            } else
                snprintf(cfg->origin[cfg->n_ns - 1], sizeof cfg->origin[0], "%.300s:%d", path, lineno);
        } else {
            snprintf(why, whylen, "%s:%d: unknown option '%s' (options: data, listen, ns, sched)", path, lineno, key);
            rc = -1;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
        rc = -1;
    }
    fclose(f);
    return rc;
}

int config_finish(node_config_t *cfg, char *why, size_t whylen)
{
    for (int i = 0; i < cfg->n_ns; i++) {
        kv_ns_config_t *ns = &cfg->ns[i];
        if (ns->storage == KV_STORAGE_UNSET)
            ns->storage = cfg->data[0] ? KV_STORAGE_FILE : KV_STORAGE_MEMORY;
        if (ns->storage == KV_STORAGE_FILE && !cfg->data[0]) {
            snprintf(why, whylen, "%s: namespace '%s': storage=file needs a data directory (-d DIR)", cfg->origin[i], ns->name);
            return -1;
        }
        if (ns->storage == KV_STORAGE_MEMORY && ns->file_key[0]) {
            snprintf(why, whylen, "%s: namespace '%s': %s applies only to storage=file", cfg->origin[i], ns->name,
                     ns->file_key);
            return -1;
        }
        if (ns->storage != KV_STORAGE_FILE)
            continue;
        uint64_t fit = disk_max_record(ns->write_block);
        if (ns->max_record_size > fit) {
            if (ns->max_record_size_set) {
                snprintf(why, whylen,
                         "%s: namespace '%s': max-record-size %llu does not fit in write-block %u (at most %llu)",
                         cfg->origin[i], ns->name, (unsigned long long) ns->max_record_size, ns->write_block,
                         (unsigned long long) fit);
                return -1;
            }
            ns->max_record_size = fit;
        }
        if (ns->disk_limit / ns->write_block > (1u << 25)) { /* the index holds 25 bits of block number */
            snprintf(why, whylen, "%s: namespace '%s': disk %llu is more than 2^25 write blocks of %u bytes",
                     cfg->origin[i], ns->name, (unsigned long long) ns->disk_limit, ns->write_block);
            return -1;
        }
        if (ns->disk_limit < 16ull * ns->write_block) {
            snprintf(why, whylen, "%s: namespace '%s': disk %llu is less than 16 write blocks of %u bytes", cfg->origin[i], ns->name,
                     (unsigned long long) ns->disk_limit, ns->write_block);
            return -1;
        }
    }
    return 0;
}

void config_test(bool verbose)
{
    (void) verbose;
    node_config_t cfg;
    char why[512];
    config_init(&cfg);
    assert(strcmp(cfg.listen, KVNODE_DEFAULT_ENDPOINT) == 0);
    assert(cfg.sched == SCHED_BATCH);
    assert(config_set_sched(&cfg, "normal", why, sizeof why) == 0 && cfg.sched == SCHED_OTHER);
    assert(config_set_sched(&cfg, "Batch", why, sizeof why) == -1 && strstr(why, "must be batch or normal"));
    assert(cfg.sched == SCHED_OTHER);
    assert(config_set_sched(&cfg, "batch", why, sizeof why) == 0 && cfg.sched == SCHED_BATCH);
    assert(config_add_ns(&cfg, "test", why, sizeof why) == 0);
    assert(cfg.ns[0].max_record_size == 1 << 20 && cfg.ns[0].default_ttl == 0);
    assert(config_add_ns(&cfg, "cache,default-ttl=1h,memory=64M,max-record-size=128K,max-bins=10", why,
                         sizeof why) == 0);
    assert(cfg.ns[1].default_ttl == 3600 && cfg.ns[1].memory_limit == 64 << 20);
    assert(cfg.ns[1].max_record_size == 128 << 10 && cfg.ns[1].max_bins == 10);
    assert(config_add_ns(&cfg, "test", why, sizeof why) == -1 && strstr(why, "twice"));
    assert(config_add_ns(&cfg, "x,colour=red", why, sizeof why) == -1 && strstr(why, "unknown namespace key"));
    assert(config_add_ns(&cfg, "x,max-record-size=9M", why, sizeof why) == -1 && strstr(why, "8M"));
    assert(config_add_ns(&cfg, "x,memory", why, sizeof why) == -1 && strstr(why, "key=value"));
    assert(config_add_ns(&cfg, "x,memory= -5", why, sizeof why) == -1 && strstr(why, "memory ' -5'"));
    assert(config_add_ns(&cfg, "bad name", why, sizeof why) == -1);
    assert(config_add_ns(&cfg, "x,storage=disk", why, sizeof why) == -1 && strstr(why, "memory or file"));
    assert(config_add_ns(&cfg, "x,write-block=96K", why, sizeof why) == -1 && strstr(why, "power of two"));
    assert(config_add_ns(&cfg, "x,defrag-lwm=100", why, sizeof why) == -1 && strstr(why, "1 to 99"));
    assert(config_add_ns(&cfg, "x,commit-to-device=yes", why, sizeof why) == -1 && strstr(why, "true or false"));
    /* storage follows the data directory unless given; file keys need a file */
    config_init(&cfg);
    assert(config_add_ns(&cfg, "f,storage=file,write-block=64K,disk=1M", why, sizeof why) == 0);
    assert(config_finish(&cfg, why, sizeof why) == -1 && strstr(why, "needs a data directory"));
    snprintf(cfg.data, sizeof cfg.data, "/tmp");
    assert(config_finish(&cfg, why, sizeof why) == 0 && cfg.ns[0].storage == KV_STORAGE_FILE);
    assert(cfg.ns[0].max_record_size == disk_max_record(64 << 10));
    config_init(&cfg);
    assert(config_add_ns(&cfg, "m,storage=memory,flush-ms=5", why, sizeof why) == 0);
    assert(config_finish(&cfg, why, sizeof why) == -1 && strstr(why, "flush-ms applies only to storage=file"));
    config_init(&cfg);
    snprintf(cfg.data, sizeof cfg.data, "/tmp");
    assert(config_add_ns(&cfg, "f,write-block=64K,max-record-size=64K", why, sizeof why) == 0);
    assert(config_finish(&cfg, why, sizeof why) == -1 && strstr(why, "does not fit"));
    config_init(&cfg);
    snprintf(cfg.data, sizeof cfg.data, "/tmp");
    assert(config_add_ns(&cfg, "f,write-block=1M,disk=8M", why, sizeof why) == 0);
    assert(config_finish(&cfg, why, sizeof why) == -1 && strstr(why, "16 write blocks"));
    config_init(&cfg);
    snprintf(cfg.data, sizeof cfg.data, "/tmp");
    assert(config_add_ns(&cfg, "f,write-block=64K,disk=4T", why, sizeof why) == 0);
    assert(config_finish(&cfg, why, sizeof why) == -1 && strstr(why, "2^25"));
    config_init(&cfg);
    assert(config_add_ns(&cfg, "", why, sizeof why) == -1);
    /* file: a good one, then errors name the file and line */
    char path[] = "/tmp/kvnode-config-test-XXXXXX";
    int fd = mkstemp(path);
    assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("# test\nlisten tcp://127.0.0.1:9999\n\nns a,memory=2M  # comment\n", f);
    fclose(f);
    config_init(&cfg);
    assert(config_load(&cfg, path, why, sizeof why) == 0);
    assert(strcmp(cfg.listen, "tcp://127.0.0.1:9999") == 0 && cfg.n_ns == 1 && cfg.ns[0].memory_limit == 2 << 20);
    f = fopen(path, "w");
    fputs("listen tcp://127.0.0.1:1\nns b,ttl=5\n", f);
    fclose(f);
    config_init(&cfg);
    assert(config_load(&cfg, path, why, sizeof why) == -1 && strstr(why, ":2: namespace 'b': unknown"));
    f = fopen(path, "w");
    fputs("colour red\n", f);
    fclose(f);
    assert(config_load(&cfg, path, why, sizeof why) == -1 && strstr(why, ":1: unknown option 'colour'"));
    unlink(path);
    assert(config_load(&cfg, path, why, sizeof why) == -1 && strstr(why, "cannot open"));
}
