/* kvrepl: moves partition data between kvnodes and clusters (see kvrepl(1)):
 * options, the command table, usage. */
#include "kvrepl.h"
#include "kv_util.h"
#include <getopt.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_IN_FLIGHT 128
#define DEFAULT_INTERVAL_MS 200
#define DEFAULT_OVERLAP_MS 1000

/* The options, as bits: which a command takes, which were given. */
enum {
    O_FROM = 1 << 0, O_TO = 1 << 1, O_NS = 1 << 2, O_SET = 1 << 3, O_PARTS = 1 << 4, O_TOMBS = 1 << 5,
    O_FORMAT = 1 << 6, O_INFLIGHT = 1 << 7, O_REPLICAS = 1 << 8, O_REPAIR = 1 << 9, O_RATE = 1 << 10,
    O_TIMEOUT = 1 << 11, O_CURSOR = 1 << 12, O_INTERVAL = 1 << 13, O_ONCE = 1 << 14, O_OVERLAP = 1 << 15,
    O_BINS = 1 << 16, O_VERBOSE = 1 << 17,
    O_LAST = O_VERBOSE,
};

static const struct {
    int bit;
    const char *name;
} s_opt_names[] = {
    {O_FROM, "--from"},         {O_TO, "--to"},         {O_NS, "--ns"},         {O_SET, "--set"},
    {O_PARTS, "--partitions"},  {O_TOMBS, "--tombstones"}, {O_FORMAT, "--format"}, {O_INFLIGHT, "--in-flight"},
    {O_REPLICAS, "--replicas"}, {O_REPAIR, "--repair"}, {O_RATE, "--rate"},     {O_TIMEOUT, "--timeout"},
    {O_CURSOR, "--cursor"},     {O_INTERVAL, "--interval"}, {O_ONCE, "--once"}, {O_OVERLAP, "--overlap"},
    {O_BINS, "--bins"},         {O_VERBOSE, "--verbose"},
};

/* One row per command: its usage lines, its options, the ones it needs,
 * its positional arguments, and its handler. */
static const struct {
    const char *name;
    const char *usage;
    int opts, required;
    int min, max;
    int (*fn)(kr_opts_t *);
} s_cmds[] = {
    {"dump",
     "kvrepl dump --from endpoint [--ns ns] [--set set] [--partitions list] [--tombstones] [--format binary|jsonl] "
     "[-t ms]\n",
     O_FROM | O_NS | O_SET | O_PARTS | O_TOMBS | O_FORMAT | O_TIMEOUT, O_FROM, 0, 0, kr_cmd_dump},
    {"load", "kvrepl load --to endpoint [--ns ns] [--format binary|jsonl] [--in-flight n] [-t ms]\n",
     O_TO | O_NS | O_FORMAT | O_INFLIGHT | O_TIMEOUT, O_TO, 0, 0, kr_cmd_load},
    {"verify",
     "kvrepl verify a b [--ns ns] [--partitions list] [--repair] [-t ms]\n"
     "kvrepl verify --replicas router [--ns ns] [--partitions list] [--repair] [-t ms]\n",
     O_NS | O_PARTS | O_REPAIR | O_REPLICAS | O_TIMEOUT, 0, 0, 2, kr_cmd_verify},
    {"migrate", "kvrepl migrate --from src --to dst --ns ns --partitions list [--rate n] [-t ms]\n",
     O_FROM | O_TO | O_NS | O_PARTS | O_RATE | O_TIMEOUT, O_FROM | O_TO | O_NS | O_PARTS, 0, 0, kr_cmd_migrate},
    {"ship",
     "kvrepl ship --from src --to dst [--ns ns] [--set set] [--bins list] --cursor file [--interval ms] [--once] "
     "[--overlap ms] [--in-flight n] [-v] [-t ms]\n",
     O_FROM | O_TO | O_NS | O_SET | O_BINS | O_CURSOR | O_INTERVAL | O_ONCE | O_OVERLAP | O_INFLIGHT | O_VERBOSE
         | O_TIMEOUT,
     O_FROM | O_TO | O_CURSOR, 0, 0, kr_cmd_ship},
};
#define NCMDS ((int) (sizeof s_cmds / sizeof s_cmds[0]))

static const struct {
    int bit;
    const char *text;
} s_opt_help[] = {
    {O_FROM, "      --from ENDPOINT    dump, ship: the kvnode or kvroute to read (ship: SRC); migrate:\n"
             "                         the kvnode that masters the partitions (SRC)\n"},
    {O_TO, "      --to ENDPOINT      load, ship: the kvnode or kvroute to merge into (ship: DST);\n"
           "                         migrate: the kvnode to fill (DST)\n"},
    {O_NS, "      --ns NS            the namespace (default " KR_DEFAULT_NS "; load: the stream's own)\n"},
    {O_SET, "      --set SET          only the records of this set (ship: no deletes then)\n"},
    {O_BINS, "      --bins LIST        ship only these bins, e.g. name,age; records with none are skipped\n"},
    {O_CURSOR, "      --cursor FILE      ship: where the last completed pass is kept (missing: ship all)\n"},
    {O_INTERVAL, "      --interval MS      pause between passes (0 to 3600000, default 200)\n"},
    {O_ONCE, "      --once             one pass, then exit\n"},
    {O_OVERLAP, "      --overlap MS       ship again what changed this long before a pass began (clock\n"
                "                         skew between masters; 0 to 3600000, default 1000)\n"},
    {O_PARTS, "      --partitions LIST  partitions, e.g. 0-1023 or 5,7,100-200 (default: all 4096)\n"},
    {O_TOMBS, "      --tombstones       dump the tombstones of deleted records too (binary only)\n"},
    {O_FORMAT, "      --format FORMAT    binary (the default) or jsonl (kvquery export's JSON Lines)\n"},
    {O_INFLIGHT, "      --in-flight N      merges in flight (1 to 10000, default 128)\n"},
    {O_REPLICAS, "      --replicas ROUTER  compare each partition's master with its replicas\n"},
    {O_REPAIR, "      --repair           send the newer copy of each record of a differing\n"
               "                         partition to the side that lacks it or holds an older one\n"},
    {O_RATE, "      --rate N           send at most N records a second (default 0: no limit)\n"},
    {O_VERBOSE, "  -v, --verbose          a line for every pass, even one that shipped nothing\n"},
    {O_TIMEOUT, "  -t, --timeout MS       wait at most MS for each reply (1 to 3600000, default 5000)\n"},
};

/* The usage of one command (cmd >= 0) or of all. */
static void s_usage(FILE *f, int cmd)
{
    bool first = true;
    if (cmd < 0) {
        fputs("usage: kvrepl [-hV] command [argument ...]\n", f);
        first = false;
    }
    for (int i = 0; i < NCMDS; i++) {
        if (cmd >= 0 && i != cmd)
            continue;
        for (const char *l = s_cmds[i].usage; *l;) {
            const char *nl = strchr(l, '\n');
            fprintf(f, "%s%.*s\n", first ? "usage: " : "       ", (int) (nl - l), l);
            first = false;
            l = nl + 1;
        }
    }
}

static void s_help(int cmd)
{
    s_usage(stdout, cmd);
    putchar('\n');
    for (size_t i = 0; i < sizeof s_opt_help / sizeof s_opt_help[0]; i++)
        if (cmd < 0 || (s_cmds[cmd].opts & s_opt_help[i].bit))
            fputs(s_opt_help[i].text, stdout);
    fputs("  -h, --help             print this help and exit\n", stdout);
    if (cmd < 0)
        fputs("  -V, --version          print the version and exit\n", stdout);
    fputs("Exit status: 0 success (verify: the same; ship: stopped by a signal), 1 verify: partitions\n"
          "differ, 2 error.\n"
          "See kvrepl(1).\n",
          stdout);
}

static int s_bad_usage(int cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int s_bad_usage(int cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kvrepl: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    s_usage(stderr, cmd);
    return KR_EXIT_ERROR;
}

static const char *s_opt_name(int bit)
{
    for (size_t i = 0; i < sizeof s_opt_names / sizeof s_opt_names[0]; i++)
        if (s_opt_names[i].bit == bit)
            return s_opt_names[i].name;
    return "?";
}

/* Checks that need the command: what it takes, needs, and their fit. */
static int s_check(int cmd, int given, kr_opts_t *o)
{
    const char *name = s_cmds[cmd].name;
    for (int bit = 1; bit <= O_LAST; bit <<= 1) {
        if ((given & bit) && !(s_cmds[cmd].opts & bit))
            return s_bad_usage(cmd, "%s: %s does not apply to %s", name, s_opt_name(bit), name);
        if ((s_cmds[cmd].required & bit) && !(given & bit))
            return s_bad_usage(cmd, "%s: %s is required", name, s_opt_name(bit));
    }
    if (o->nargs < s_cmds[cmd].min || o->nargs > s_cmds[cmd].max)
        return s_bad_usage(cmd, "%s: unexpected argument '%s'", name, o->args[s_cmds[cmd].max]);
    if (strcmp(name, "verify") == 0 && (o->replicas ? o->nargs != 0 : o->nargs != 2))
        return s_bad_usage(cmd, "verify: expected two endpoints A and B, or --replicas ROUTER and no endpoint");
    if (o->tombstones && o->format != KR_FMT_BINARY)
        return s_bad_usage(cmd, "dump: --tombstones needs --format binary (JSON Lines hold no tombstones)");
    if (o->tombstones && o->set)
        return s_bad_usage(cmd, "dump: --tombstones cannot go with --set (a tombstone has no set)");
    if (strcmp(name, "dump") == 0 && o->format == KR_FMT_BINARY && isatty(STDOUT_FILENO))
        return s_bad_usage(cmd, "dump: standard output is a terminal; redirect the binary stream, or use --format jsonl");
    if (strcmp(name, "load") == 0 && isatty(STDIN_FILENO))
        return s_bad_usage(cmd, "load: standard input is a terminal; pipe a stream into it");
    return KR_EXIT_OK;
}

int main(int argc, char **argv)
{
    kv_progname = "kvrepl";
    argv[0] = (char *) kv_progname; /* getopt names the program from argv[0] */
    kr_opts_t o = {.timeout_ms = DEFAULT_TIMEOUT_MS, .in_flight = DEFAULT_IN_FLIGHT,
                   .interval_ms = DEFAULT_INTERVAL_MS, .overlap_ms = DEFAULT_OVERLAP_MS};
    kr_plist_all(&o.parts);
    enum { OPT_FROM = 256, OPT_TO, OPT_NS, OPT_SET, OPT_PARTS, OPT_TOMBS, OPT_FORMAT, OPT_INFLIGHT, OPT_REPLICAS,
           OPT_REPAIR, OPT_RATE, OPT_CURSOR, OPT_INTERVAL, OPT_ONCE, OPT_OVERLAP, OPT_BINS };
    static const struct option longopts[] = {
        {"from", required_argument, NULL, OPT_FROM},       {"to", required_argument, NULL, OPT_TO},
        {"ns", required_argument, NULL, OPT_NS},           {"set", required_argument, NULL, OPT_SET},
        {"partitions", required_argument, NULL, OPT_PARTS}, {"tombstones", no_argument, NULL, OPT_TOMBS},
        {"format", required_argument, NULL, OPT_FORMAT},   {"in-flight", required_argument, NULL, OPT_INFLIGHT},
        {"replicas", required_argument, NULL, OPT_REPLICAS}, {"repair", no_argument, NULL, OPT_REPAIR},
        {"rate", required_argument, NULL, OPT_RATE},       {"timeout", required_argument, NULL, 't'},
        {"cursor", required_argument, NULL, OPT_CURSOR},   {"interval", required_argument, NULL, OPT_INTERVAL},
        {"once", no_argument, NULL, OPT_ONCE},             {"overlap", required_argument, NULL, OPT_OVERLAP},
        {"bins", required_argument, NULL, OPT_BINS},       {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},                  {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c, used = 0, given = 0;
    bool help = false;
    int64_t v;
    char why[512];
    /* the command word and its arguments, in order, gathered into argv[1..]
     * (a slot is only reused once getopt has passed it) */
    char **words = argv + 1;
    while ((c = getopt_long(argc, argv, "+t:vhV", longopts, NULL)) != -1 || optind < argc) {
        if (c == -1) {
            if (strcmp(argv[optind - 1], "--") == 0 && optind > 1)
                break;
            words[used++] = argv[optind++];
            continue;
        }
        switch (c) {
        case OPT_FROM: o.from = optarg; given |= O_FROM; break;
        case OPT_TO: o.to = optarg; given |= O_TO; break;
        case OPT_NS:
            if (!*optarg || strlen(optarg) > KV_NS_MAX)
                return s_bad_usage(-1, "--ns '%s': a namespace name is 1 to %d bytes", optarg, KV_NS_MAX);
            o.ns = optarg;
            given |= O_NS;
            break;
        case OPT_SET:
            if (strlen(optarg) > KV_SET_MAX)
                return s_bad_usage(-1, "--set '%s': a set name is at most %d bytes", optarg, KV_SET_MAX);
            o.set = optarg;
            given |= O_SET;
            break;
        case OPT_PARTS:
            if (kr_plist_parse(&o.parts, optarg, why, sizeof why) != 0)
                return s_bad_usage(-1, "--partitions '%s': %s", optarg, why);
            o.parts_arg = optarg;
            given |= O_PARTS;
            break;
        case OPT_TOMBS: o.tombstones = true; given |= O_TOMBS; break;
        case OPT_FORMAT:
            if (strcmp(optarg, "binary") == 0)
                o.format = KR_FMT_BINARY;
            else if (strcmp(optarg, "jsonl") == 0)
                o.format = KR_FMT_JSONL;
            else
                return s_bad_usage(-1, "--format '%s': expected binary or jsonl", optarg);
            given |= O_FORMAT;
            break;
        case OPT_INFLIGHT:
            if (kv_parse_int(optarg, 1, 10000, &v) != 0)
                return s_bad_usage(-1, "--in-flight '%s': expected 1 to 10000 requests", optarg);
            o.in_flight = (int) v;
            given |= O_INFLIGHT;
            break;
        case OPT_REPLICAS: o.replicas = optarg; given |= O_REPLICAS; break;
        case OPT_REPAIR: o.repair = true; given |= O_REPAIR; break;
        case OPT_RATE:
            if (kv_parse_int(optarg, 0, 100000000, &o.rate) != 0)
                return s_bad_usage(-1, "--rate '%s': expected records per second, 0 (no limit) to 100000000", optarg);
            given |= O_RATE;
            break;
        case 't':
            if (kv_parse_int(optarg, 1, 3600000, &v) != 0)
                return s_bad_usage(-1, "--timeout '%s': expected milliseconds from 1 to 3600000", optarg);
            o.timeout_ms = (int) v;
            given |= O_TIMEOUT;
            break;
        case OPT_CURSOR:
            if (!*optarg)
                return s_bad_usage(-1, "--cursor '': expected a file name");
            o.cursor = optarg;
            given |= O_CURSOR;
            break;
        case OPT_INTERVAL:
        case OPT_OVERLAP:
            if (kv_parse_int(optarg, 0, 3600000, &v) != 0)
                return s_bad_usage(-1, "--%s '%s': expected milliseconds from 0 to 3600000",
                                   c == OPT_INTERVAL ? "interval" : "overlap", optarg);
            *(c == OPT_INTERVAL ? &o.interval_ms : &o.overlap_ms) = (int) v;
            given |= c == OPT_INTERVAL ? O_INTERVAL : O_OVERLAP;
            break;
        case OPT_ONCE: o.once = true; given |= O_ONCE; break;
        case OPT_BINS:
            if (kr_bins_parse(&o.bins, optarg, why, sizeof why) != 0)
                return s_bad_usage(-1, "--bins '%s': %s", optarg, why);
            given |= O_BINS;
            break;
        case 'v': o.verbose = true; given |= O_VERBOSE; break;
        case 'h': help = true; break;
        case 'V': printf("kvrepl %s\n", KV_VERSION); return KR_EXIT_OK;
        default: s_usage(stderr, -1); return KR_EXIT_ERROR;
        }
    }
    while (optind < argc)
        words[used++] = argv[optind++];
    int cmd = -1;
    for (int i = 0; used > 0 && i < NCMDS; i++)
        if (strcmp(s_cmds[i].name, words[0]) == 0)
            cmd = i;
    if (help) {
        s_help(cmd);
        return KR_EXIT_OK;
    }
    if (used == 0)
        return s_bad_usage(-1, "no command given");
    if (cmd < 0)
        return s_bad_usage(-1, "unknown command '%s' (dump, load, verify, migrate or ship)", words[0]);
    o.nargs = used - 1;
    o.args = words + 1;
    int rc = s_check(cmd, given, &o);
    if (rc != KR_EXIT_OK)
        return rc;
    if (sodium_init() < 0)
        kv_die(KR_EXIT_ERROR, "cannot initialise libsodium");
    return s_cmds[cmd].fn(&o);
}
