/* kvroute: the kvstore cluster router (see kvroute(1)). */
#include "kv_util.h"
#include "route.h"
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_ENDPOINT "tcp://127.0.0.1:7800"

static volatile int s_stop = 0;
static void s_on_signal(int sig)
{
    (void) sig;
    s_stop = 1;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: kvroute [-hV] [-c file] [-l endpoint] [--node endpoint]... [--hb-interval ms] "
                 "[--hb-misses n] [--kvrepl path] [--migrate-max n] [--migrate-rate n] [--ready-file file]\n");
}

static void help(void)
{
    usage(stdout);
    printf("\n"
           "  -l, --listen ENDPOINT   ZeroMQ endpoint for clients and node heartbeats (default %s)\n"
           "      --node ENDPOINT     a kvnode of the cluster; repeatable\n"
           "      --hb-interval MS    heartbeat interval asked of the nodes (default 150, 10..60000)\n"
           "      --hb-misses N       missed intervals before a node is gone (default 10, 3..1000)\n"
           "      --kvrepl PATH       the kvrepl program migrations run (default: kvrepl beside kvroute)\n"
           "      --migrate-max N     migrations at once per node (default 2, 1..64)\n"
           "      --migrate-rate N    records per second per migration (default 0: no limit)\n"
           "  -c, --config FILE       read options from FILE (lines: listen ENDPOINT, node ENDPOINT,\n"
           "                          hb-interval MS, hb-misses N, kvrepl PATH, migrate-max N,\n"
           "                          migrate-rate N)\n"
           "      --ready-file FILE   write the bound endpoint to FILE once serving\n"
           "  -h, --help              show this help\n"
           "  -V, --version           show the version\n"
           "See kvroute(1).\n",
           DEFAULT_ENDPOINT);
}

static char *s_strdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        kv_die(1, "out of memory");
    return d;
}

/* kvrepl beside this program's own file. */
static void s_default_kvrepl(route_config_t *cfg)
{
    char self[900];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        snprintf(cfg->kvrepl, sizeof cfg->kvrepl, "kvrepl");
        return;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(cfg->kvrepl, sizeof cfg->kvrepl, "%s/kvrepl", slash ? self : ".");
}

/* One option (from the command line or a config line); where names it in errors. */
static void s_option(route_config_t *cfg, const char *name, const char *val, const char *where)
{
    int64_t v;
    if (strcmp(name, "listen") == 0) {
        if (!val[0] || strlen(val) >= sizeof cfg->listen)
            kv_die(2, "%s: listen: expected an endpoint", where);
        snprintf(cfg->listen, sizeof cfg->listen, "%s", val);
    } else if (strcmp(name, "node") == 0) {
        if (!val[0] || strlen(val) > 255)
            kv_die(2, "%s: node: expected an endpoint of 1..255 bytes", where);
        if (cfg->n_nodes == 64)
            kv_die(2, "%s: node: at most 64 nodes", where);
        cfg->nodes[cfg->n_nodes++] = s_strdup(val);
    } else if (strcmp(name, "hb-interval") == 0) {
        if (kv_parse_int(val, 10, 60000, &v) != 0)
            kv_die(2, "%s: hb-interval '%s': expected milliseconds from 10 to 60000", where, val);
        cfg->hb_interval_ms = (uint32_t) v;
    } else if (strcmp(name, "hb-misses") == 0) {
        if (kv_parse_int(val, 3, 1000, &v) != 0)
            kv_die(2, "%s: hb-misses '%s': expected an integer from 3 to 1000", where, val);
        cfg->hb_misses = (uint32_t) v;
    } else if (strcmp(name, "kvrepl") == 0) {
        if (!val[0] || strlen(val) >= sizeof cfg->kvrepl)
            kv_die(2, "%s: kvrepl: expected a path of 1..%zu bytes", where, sizeof cfg->kvrepl - 1);
        snprintf(cfg->kvrepl, sizeof cfg->kvrepl, "%s", val);
    } else if (strcmp(name, "migrate-max") == 0) {
        if (kv_parse_int(val, 1, 64, &v) != 0)
            kv_die(2, "%s: migrate-max '%s': expected an integer from 1 to 64", where, val);
        cfg->migrate_max = (int) v;
    } else if (strcmp(name, "migrate-rate") == 0) {
        if (kv_parse_int(val, 0, 1000000000, &v) != 0)
            kv_die(2, "%s: migrate-rate '%s': expected records per second from 0 (no limit) to 1000000000", where,
                   val);
        cfg->migrate_rate = (uint64_t) v;
    } else
        kv_die(2, "%s: unknown option '%s' (listen, node, hb-interval, hb-misses, kvrepl, migrate-max, migrate-rate)",
               where, name);
}

static void s_load(route_config_t *cfg, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        kv_die(2, "cannot read %s: %s", path, strerror(errno));
    char line[1024], where[1100];
    for (int no = 1; fgets(line, sizeof line, f); no++) {
        snprintf(where, sizeof where, "%s:%d", path, no);
        if (!strchr(line, '\n') && !feof(f))
            kv_die(2, "%s: line too long", where);
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *name = strtok(line, " \t\r\n"), *val = name ? strtok(NULL, " \t\r\n") : NULL;
        if (!name)
            continue;
        if (!val || strtok(NULL, " \t\r\n"))
            kv_die(2, "%s: expected 'NAME VALUE'", where);
        s_option(cfg, name, val, where);
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    kv_progname = "kvroute";
    argv[0] = (char *) kv_progname;
    enum { OPT_NODE = 256, OPT_HBI, OPT_HBM, OPT_READY, OPT_KVREPL, OPT_MMAX, OPT_MRATE };
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},   {"node", required_argument, NULL, OPT_NODE},
        {"config", required_argument, NULL, 'c'},   {"hb-interval", required_argument, NULL, OPT_HBI},
        {"hb-misses", required_argument, NULL, OPT_HBM}, {"ready-file", required_argument, NULL, OPT_READY},
        {"kvrepl", required_argument, NULL, OPT_KVREPL}, {"migrate-max", required_argument, NULL, OPT_MMAX},
        {"migrate-rate", required_argument, NULL, OPT_MRATE},
        {"help", no_argument, NULL, 'h'},           {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    route_config_t cfg = {.hb_interval_ms = 150, .hb_misses = 10, .migrate_max = 2};
    snprintf(cfg.listen, sizeof cfg.listen, "%s", DEFAULT_ENDPOINT);
    s_default_kvrepl(&cfg);
    const char *ready = NULL, *config = NULL;
    int c;
    /* the config file first, then the command line over it */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            config = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            config = argv[i] + 9;
        else if (strncmp(argv[i], "-c", 2) == 0 && argv[i][2])
            config = argv[i] + 2;
        else if (strcmp(argv[i], "-l") == 0)
            i++; /* -l's value is not an option */
        else if (strcmp(argv[i], "--listen") == 0 || strcmp(argv[i], "--node") == 0 ||
                 strcmp(argv[i], "--hb-interval") == 0 || strcmp(argv[i], "--hb-misses") == 0 ||
                 strcmp(argv[i], "--ready-file") == 0 || strcmp(argv[i], "--kvrepl") == 0 ||
                 strcmp(argv[i], "--migrate-max") == 0 || strcmp(argv[i], "--migrate-rate") == 0)
            i++; /* nor is a long option's */
    }
    if (config)
        s_load(&cfg, config);
    while ((c = getopt_long(argc, argv, "hVl:c:", longopts, NULL)) != -1) {
        switch (c) {
        case 'l': s_option(&cfg, "listen", optarg, "-l"); break;
        case OPT_NODE: s_option(&cfg, "node", optarg, "--node"); break;
        case OPT_HBI: s_option(&cfg, "hb-interval", optarg, "--hb-interval"); break;
        case OPT_HBM: s_option(&cfg, "hb-misses", optarg, "--hb-misses"); break;
        case OPT_KVREPL: s_option(&cfg, "kvrepl", optarg, "--kvrepl"); break;
        case OPT_MMAX: s_option(&cfg, "migrate-max", optarg, "--migrate-max"); break;
        case OPT_MRATE: s_option(&cfg, "migrate-rate", optarg, "--migrate-rate"); break;
        case 'c': break;
        case OPT_READY: ready = optarg; break;
        case 'h': help(); return 0;
        case 'V': printf("kvroute %s\n", KV_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        kv_warn("unexpected argument '%s'", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (sodium_init() < 0)
        kv_die(1, "cannot initialise libsodium");
    if (strchr(cfg.kvrepl, '/') && access(cfg.kvrepl, X_OK) != 0) /* a bare name is looked up in PATH */
        kv_warn("%s: %s: migrations cannot run until it is there (--kvrepl)", cfg.kvrepl, strerror(errno));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    char why[1024];
    route_t *r = route_new(&cfg, why, sizeof why);
    if (!r)
        kv_die(1, "%s", why);
    if (ready)
        if (kv_write_ready(ready, route_endpoint(r)) != 0)
            kv_die(1, "cannot write ready file %s: %s", ready, strerror(errno));
    printf("kvroute: ready on %s (%d node(s) given)\n", route_endpoint(r), cfg.n_nodes);
    fflush(stdout);
    route_run(r, &s_stop);
    fprintf(stderr, "kvroute: shutting down\n");
    route_destroy(&r);
    if (ready)
        unlink(ready);
    for (int i = 0; i < cfg.n_nodes; i++)
        free((char *) cfg.nodes[i]);
    return 0;
}
