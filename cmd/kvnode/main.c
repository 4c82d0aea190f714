/* kvnode: the kvstore storage node (see kvnode(1)). */
#include "config.h"
#include "disk.h"
#include "kv_util.h"
#include "server.h"
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile int s_stop = 0;

static void s_on_signal(int sig)
{
    (void) sig;
    s_stop = 1;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: kvnode [-hV] [-c file] [-d dir] [-l endpoint] [--ns name[,key=value...]] [--join router] [--ready-file file] [--sched policy]\n");
}

static void help(void)
{
    usage(stdout);
    printf("\n"
           "  -l, --listen ENDPOINT   ZeroMQ endpoint to serve (default %s)\n"
           "  -d, --data DIR          keep namespaces in files in DIR (locked; created if missing)\n"
           "      --ns SPEC           serve namespace NAME[,key=value...]; repeatable\n"
           "                          keys: default-ttl, max-record-size, memory, max-bins, rf, mode,\n"
           "                          storage, commit-to-device, flush-ms, write-block, defrag-lwm, disk\n"
           "  -c, --config FILE       read options from FILE (lines: data DIR, listen ENDPOINT, ns SPEC,\n"
           "                          sched POLICY)\n"
           "      --join ROUTER       heartbeat to the kvroute at ROUTER, which adds this node\n"
           "      --ready-file FILE   write the bound endpoint to FILE once serving\n"
           "      --sched POLICY      scheduling of the request loop and flushers: batch (default;\n"
           "                          woken, they do not preempt the running thread) or normal\n"
           "  -h, --help              show this help\n"
           "  -V, --version           show the version\n"
           "With no namespace given, kvnode serves one namespace 'test', in DIR if -d is given,\n"
           "in memory otherwise.\n"
           "See kvnode(1).\n",
           KVNODE_DEFAULT_ENDPOINT);
}

int main(int argc, char **argv)
{
    kv_progname = "kvnode";
    argv[0] = (char *) kv_progname; /* getopt names the program from argv[0] */
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"data", required_argument, NULL, 'd'},
        {"ns", required_argument, NULL, 'n'},
        {"config", required_argument, NULL, 'c'},
        {"ready-file", required_argument, NULL, 'r'},
        {"join", required_argument, NULL, 'j'},
        {"sched", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *listen = NULL, *config = NULL, *ready = NULL, *data = NULL, *join = NULL, *sched = NULL;
    const char *specs[argc];
    int nspecs = 0, c;
    while ((c = getopt_long(argc, argv, "hVl:c:d:", longopts, NULL)) != -1) {
        switch (c) {
        case 'l': listen = optarg; break;
        case 'd': data = optarg; break;
        case 'n': specs[nspecs++] = optarg; break;
        case 'c': config = optarg; break;
        case 'r': ready = optarg; break;
        case 'j': join = optarg; break;
        case 's': sched = optarg; break;
        case 'h': help(); return 0;
        case 'V': printf("kvnode %s\n", KV_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        kv_warn("unexpected argument '%s'", argv[optind]);
        usage(stderr);
        return 2;
    }
    node_config_t cfg;
    char why[1024];
    config_init(&cfg);
    if (config && config_load(&cfg, config, why, sizeof why) != 0)
        kv_die(2, "%s", why);
    for (int i = 0; i < nspecs; i++)
        if (config_add_ns(&cfg, specs[i], why, sizeof why) != 0)
            kv_die(2, "--ns %s: %s", specs[i], why);
    if (sched && config_set_sched(&cfg, sched, why, sizeof why) != 0)
        kv_die(2, "--sched '%s': expected batch or normal", sched);
    if (listen)
        snprintf(cfg.listen, sizeof cfg.listen, "%s", listen);
    if (data) {
        if (!data[0] || strlen(data) >= sizeof cfg.data)
            kv_die(2, "-d '%s': expected a directory name", data);
        snprintf(cfg.data, sizeof cfg.data, "%s", data);
    }
    if (cfg.n_ns == 0) {
        config_ns_defaults(&cfg.ns[0], "test");
        snprintf(cfg.origin[0], sizeof cfg.origin[0], "the default namespace");
        cfg.n_ns = 1;
    }
    if (config_finish(&cfg, why, sizeof why) != 0)
        kv_die(2, "%s", why);
    bool files = false;
    for (int i = 0; i < cfg.n_ns; i++)
        files |= cfg.ns[i].storage == KV_STORAGE_FILE;
    (void) files;
    if (cfg.data[0] && disk_lock_dir(cfg.data, why, sizeof why) != 0)
        kv_die(1, "%s", why);
    if (sodium_init() < 0)
        kv_die(1, "cannot initialise libsodium");

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal; /* no SA_RESTART: poll returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Under SCHED_BATCH a woken thread does not preempt the running one.  The
     * I/O thread hands each request to the request loop; on one CPU, with
     * preemption, every request is a context switch, and without it the I/O
     * thread reads what has come before the loop runs and takes it all.  The
     * flushers inherit the policy; libzmq's threads are kept to the normal one
     * (server_bind), so that a reply goes out as soon as the loop hands it
     * over (kvnode(1), THREADS).  Set before any thread starts. */
    kv_sched_set(cfg.sched);
    server_t *srv = server_new(cfg.ns, cfg.n_ns, cfg.data, why, sizeof why);
    if (!srv)
        kv_die(1, "%s", why);
    if (server_bind(srv, cfg.listen, why, sizeof why) != 0) {
        server_destroy(&srv);
        kv_die(1, "%s", why);
    }
    if (join && server_join(srv, join, why, sizeof why) != 0) {
        server_destroy(&srv);
        kv_die(2, "--join %s: %s", join, why);
    }
    char names[KV_MAX_NS * (KV_NS_MAX + 2)] = "";
    for (int i = 0; i < cfg.n_ns; i++) {
        strcat(names, i ? "," : "");
        strcat(names, cfg.ns[i].name);
    }
    if (ready)
        if (kv_write_ready(ready, server_endpoint(srv)) != 0)
            kv_die(1, "cannot write ready file %s: %s", ready, strerror(errno));
    printf("kvnode: ready on %s (node %016llx, namespaces: %s)\n", server_endpoint(srv),
           (unsigned long long) server_node_id(srv), names);
    fflush(stdout);
    server_run(srv, &s_stop);
    fprintf(stderr, "kvnode: shutting down\n");
    server_destroy(&srv);
    if (ready)
        unlink(ready);
    return 0;
}
