/* kvquery: the kvstore command-line client (see kvquery(1)). */
#include "kvquery.h"
#include "kv_err.h"
#include "kv_json.h"
#include "kv_mp.h"
#include "kv_record.h"
#include "kv_util.h"
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_ENDPOINT "tcp://127.0.0.1:7700"
#define DEFAULT_TIMEOUT_MS 5000

static const char *s_usage =
    "usage: kvquery [-hV] [-e endpoint] [--direct] [--commit-master] [--format jsonl|table|raw] [--timeout ms] [--int-key] [--no-send-key] command [argument ...]\n"
    "       kvquery put ns set key bin=value ... [--ttl n] [--exists policy] [--gen n --gen-policy eq|gt]\n"
    "       kvquery get ns set key [bin ...]\n"
    "       kvquery exists ns set key\n"
    "       kvquery delete ns set key [--gen n --gen-policy eq|gt]\n"
    "       kvquery touch ns set key [--ttl n] [--gen n --gen-policy eq|gt]\n"
    "       kvquery operate ns set key op ... [--ttl n] [--exists policy] [--gen n --gen-policy eq|gt]\n"
    "       kvquery batch ns set [key ...]\n"
    "       kvquery scan ns [set]\n"
    "       kvquery export ns [set]\n"
    "       kvquery import ns [--strict] [--in-flight n] [--exists policy] [--ttl n]\n"
    "       kvquery info [what]\n"
    "       kvquery cluster add endpoint | cluster remove node\n";

static void help(void)
{
    fputs(s_usage, stdout);
    printf("\n"
           "  -e, --endpoint ENDPOINT  server to use (default $KV_ENDPOINT, else %s)\n"
           "      --format FORMAT      jsonl (default), table or raw\n"
           "      --timeout MS         wait at most MS for each reply (default %d)\n"
           "      --int-key            keys are 64-bit integers, not strings\n"
           "      --no-send-key        do not store the key with the record\n"
           "      --commit-master      writes are answered once the master has them, without\n"
           "                           waiting for the replicas (default: wait for all)\n"
           "      --direct             the endpoint is a kvroute: fetch its partition table and send\n"
           "                           each record request straight to its partition's master\n"
           "  A bin is BIN=VALUE (a string) or BIN:TYPE=VALUE, TYPE one of\n"
           "  str, int, float, bool, bytes (base64), json, nil.\n"
           "  An op is read:BIN, write:BIN=VALUE, add:BIN=N, append:BIN=S,\n"
           "  prepend:BIN=S, delete:BIN or touch.\n"
           "  --exists: update, update-only, create-only, replace, replace-only.\n"
           "  --in-flight N: import requests in flight (default 64, 1 with --strict).\n"
           "Exit status: 0 success, 1 not found / generation mismatch / exists, 2 error.\n"
           "See kvquery(1).\n",
           DEFAULT_ENDPOINT, DEFAULT_TIMEOUT_MS);
}

/* Send req and wait; on success *rep holds an OK reply.  Returns exit code. */
static int s_call(kq_t *q, const char *what, kv_req_t *req, kv_reply_t *rep)
{
    int rc = kq_call(q, what, req, rep);
    kv_req_destroy(req);
    if (rc != EXIT_OK)
        return rc;
    if (rep->hdr.status != KV_OK) {
        rc = kq_report(what, rep);
        kv_reply_close(rep);
        return rc;
    }
    return EXIT_OK;
}

/* A record command: ns set key parsed, request addressed, what filled. */
static int s_record_req(kq_t *q, int op, char **argv, kv_req_t *req, kv_key_t *key, char *what, size_t wl)
{
    char why[512];
    snprintf(what, wl, "%s %s/%s/%s", kv_op_name(op), argv[0], argv[1], argv[2]);
    if (kq_parse_key(q, argv[2], key, why, sizeof why) != 0) {
        kv_warn("%s: %s", what, why);
        return EXIT_ERROR;
    }
    if (strlen(argv[1]) > KV_SET_MAX) {
        kv_warn("%s: set name is longer than %d bytes", what, KV_SET_MAX);
        return EXIT_ERROR;
    }
    kv_req_init(req, op);
    kv_req_record(req, argv[0], argv[1], key, false);
    return EXIT_OK;
}

static void s_write_fields(kq_t *q, kv_req_t *req)
{
    if (q->commit_master)
        req->hdr.flags |= KV_F_COMMIT_MASTER;
    if (q->ttl_set)
        kv_req_int(req, "ttl", q->ttl);
    if (q->exists_set)
        kv_req_int(req, "exists", q->exists);
    if (q->gen_set) {
        kv_req_int(req, "gen", q->gen);
        kv_req_int(req, "genpol", q->genpol_set ? q->genpol : KV_GEN_EQ);
    }
}

/* Print the metadata a write returns: {"ns","set","key","gen","ttl"}. */
static void s_print_meta(kq_t *q, char **argv, const kv_key_t *key, kv_reply_t *rep)
{
    if (q->format == FMT_RAW)
        return;
    json_t *o = kv_record_json(argv[0], argv[1], key, kv_reply_data(rep), kv_reply_size(rep));
    kq_print_json(q, o);
    json_decref(o);
}

static void s_set_key(kv_req_t *req, const kq_t *q, const kv_key_t *key)
{
    if (q->no_send_key)
        return;
    req->hdr.flags |= KV_F_SENDKEY;
    msgpack_packer *pk = kv_req_field(req, "key");
    if (key->type == KV_KEY_INT)
        msgpack_pack_int64(pk, key->i);
    else
        kv_mp_pack_strn(pk, (const char *) key->bytes, key->len);
}

/* put and operate: a record request whose key is sent and stored, with
 * the write options and the arguments after the key parsed into a bins map
 * (put) or an ops array (operate). */
static int s_write_args_generic(kq_t *q, int op, int argc, char **argv)
{
    kv_req_t req;
    kv_key_t key;
    char what[512], why[512];
    int rc = s_record_req(q, op, argv, &req, &key, what, sizeof what);
    if (rc != EXIT_OK)
        return rc;
    s_set_key(&req, q, &key);
    s_write_fields(q, &req);
    bool put = op == KV_OP_PUT;
    msgpack_packer *pk = kv_req_field(&req, put ? "bins" : "ops");
    if (put)
        msgpack_pack_map(pk, (uint32_t) (argc - 3));
    else
        msgpack_pack_array(pk, (uint32_t) (argc - 3));
    for (int i = 3; i < argc; i++) {
        char name[KV_BIN_NAME_MAX + 1];
        if ((put ? kq_parse_bin(argv[i], name, sizeof name, pk, why, sizeof why)
                 : kq_parse_op(argv[i], pk, why, sizeof why)) != 0) {
            kv_warn("%s: %s", what, why);
            kv_req_destroy(&req);
            return EXIT_ERROR;
        }
    }
    kv_reply_t rep;
    if ((rc = s_call(q, what, &req, &rep)) != EXIT_OK)
        return rc;
    if (put)
        s_print_meta(q, argv, &key, &rep);
    else
        kq_print_record(q, argv[0], argv[1], &key, kv_reply_data(&rep), kv_reply_size(&rep));
    kv_reply_close(&rep);
    return EXIT_OK;
}

static int cmd_put(kq_t *q, int argc, char **argv)
{
    return s_write_args_generic(q, KV_OP_PUT, argc, argv);
}

static int cmd_get(kq_t *q, int argc, char **argv)
{
    kv_req_t req;
    kv_key_t key;
    char what[512];
    int rc = s_record_req(q, KV_OP_GET, argv, &req, &key, what, sizeof what);
    if (rc != EXIT_OK)
        return rc;
    if (argc > 3) {
        msgpack_packer *pk = kv_req_field(&req, "bins");
        msgpack_pack_array(pk, (uint32_t) (argc - 3));
        for (int i = 3; i < argc; i++) {
            if (!*argv[i] || strlen(argv[i]) > KV_BIN_NAME_MAX) {
                kv_warn("%s: bin name '%s' must be 1 to %d bytes", what, argv[i], KV_BIN_NAME_MAX);
                kv_req_destroy(&req);
                return EXIT_ERROR;
            }
            kv_mp_pack_cstr(pk, argv[i]);
        }
    }
    kv_reply_t rep;
    if ((rc = s_call(q, what, &req, &rep)) != EXIT_OK)
        return rc;
    kq_print_record(q, argv[0], argv[1], &key, kv_reply_data(&rep), kv_reply_size(&rep));
    kv_reply_close(&rep);
    return EXIT_OK;
}

static int cmd_exists(kq_t *q, int argc, char **argv)
{
    (void) argc;
    kv_req_t req;
    kv_key_t key;
    char what[512];
    int rc = s_record_req(q, KV_OP_EXISTS, argv, &req, &key, what, sizeof what);
    if (rc != EXIT_OK)
        return rc;
    kv_reply_t rep;
    rc = kq_call(q, what, &req, &rep);
    kv_req_destroy(&req);
    if (rc != EXIT_OK)
        return rc;
    if (rep.hdr.status != KV_OK && rep.hdr.status != KV_ERR_NOT_FOUND) {
        rc = kq_report(what, &rep);
        kv_reply_close(&rep);
        return rc;
    }
    bool found = rep.hdr.status == KV_OK;
    json_t *o = found ? kv_record_json(argv[0], argv[1], &key, kv_reply_data(&rep), kv_reply_size(&rep))
                      : json_pack("{s:s,s:s,s:o}", "ns", argv[0], "set", argv[1], "key", kv_key_json(&key));
    json_object_set_new(o, "exists", json_boolean(found));
    if (q->format == FMT_RAW)
        printf("%s\n", found ? "true" : "false");
    else
        kq_print_json(q, o);
    json_decref(o);
    kv_reply_close(&rep);
    return found ? EXIT_OK : EXIT_NEGATIVE;
}

/* delete and touch: a record request with the write options; touch
 * prints the new metadata. */
static int s_simple_write_generic(kq_t *q, int op, char **argv, bool print)
{
    kv_req_t req;
    kv_key_t key;
    char what[512];
    int rc = s_record_req(q, op, argv, &req, &key, what, sizeof what);
    if (rc != EXIT_OK)
        return rc;
    s_write_fields(q, &req);
    kv_reply_t rep;
    if ((rc = s_call(q, what, &req, &rep)) != EXIT_OK)
        return rc;
    if (print)
        s_print_meta(q, argv, &key, &rep);
    kv_reply_close(&rep);
    return EXIT_OK;
}

static int cmd_delete(kq_t *q, int argc, char **argv)
{
    (void) argc;
    return s_simple_write_generic(q, KV_OP_DELETE, argv, false);
}

static int cmd_touch(kq_t *q, int argc, char **argv)
{
    (void) argc;
    return s_simple_write_generic(q, KV_OP_TOUCH, argv, true);
}

static int cmd_operate(kq_t *q, int argc, char **argv)
{
    return s_write_args_generic(q, KV_OP_OPERATE, argc, argv);
}

/* Send req, print its reply body as JSON. */
static int s_call_print(kq_t *q, const char *what, kv_req_t *req)
{
    kv_reply_t rep;
    int rc = s_call(q, what, req, &rep);
    if (rc != EXIT_OK)
        return rc;
    json_t *o = kv_json_from_mp(kv_reply_data(&rep), kv_reply_size(&rep));
    kv_reply_close(&rep);
    if (!o) {
        kv_warn("%s: malformed reply from %s", what, q->endpoint);
        return EXIT_ERROR;
    }
    kq_print_json(q, o);
    json_decref(o);
    return EXIT_OK;
}

static int cmd_info(kq_t *q, int argc, char **argv)
{
    kv_req_t req;
    kv_req_init(&req, KV_OP_INFO);
    if (argc > 0)
        kv_req_str(&req, "what", argv[0], strlen(argv[0]));
    char what[300];
    snprintf(what, sizeof what, "info%s%s", argc ? " " : "", argc ? argv[0] : "");
    return s_call_print(q, what, &req);
}

static int cmd_cluster(kq_t *q, int argc, char **argv)
{
    (void) argc;
    if (strcmp(argv[0], "add") != 0 && strcmp(argv[0], "remove") != 0) {
        kv_warn("cluster: unknown action '%s' (add ENDPOINT or remove NODE)", argv[0]);
        return EXIT_ERROR;
    }
    kv_req_t req;
    kv_req_init(&req, KV_OP_CLUSTER);
    kv_req_str(&req, "cmd", argv[0], strlen(argv[0]));
    kv_req_str(&req, "arg", argv[1], strlen(argv[1]));
    char what[600];
    snprintf(what, sizeof what, "cluster %s %s", argv[0], argv[1]);
    return s_call_print(q, what, &req);
}

/* One row per command: name, argument counts, handler, which of the
 * per-command options it takes. */
enum { O_TTL = 1, O_EXISTS = 2, O_GEN = 4, O_IMPORT = 8 };
static const struct {
    const char *name;
    int min, max; /* arguments after the command; max -1 = any */
    int (*fn)(kq_t *, int, char **);
    int opts;
} s_cmds[] = {
    {"put", 4, -1, cmd_put, O_TTL | O_EXISTS | O_GEN},
    {"get", 3, -1, cmd_get, 0},
    {"exists", 3, 3, cmd_exists, 0},
    {"delete", 3, 3, cmd_delete, O_GEN},
    {"touch", 3, 3, cmd_touch, O_TTL | O_GEN},
    {"operate", 4, -1, cmd_operate, O_TTL | O_EXISTS | O_GEN},
    {"batch", 2, -1, kq_cmd_batch, 0},
    {"scan", 1, 2, kq_cmd_scan, 0},
    {"export", 1, 2, kq_cmd_export, 0},
    {"import", 1, 1, kq_cmd_import, O_IMPORT | O_EXISTS | O_TTL},
    {"info", 0, 1, cmd_info, 0},
    {"cluster", 2, 2, cmd_cluster, 0},
};

static int s_bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int s_bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kvquery: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", s_usage);
    return EXIT_ERROR;
}

int main(int argc, char **argv)
{
    kv_progname = "kvquery";
    argv[0] = (char *) kv_progname; /* getopt names the program from argv[0] */
    kq_t q = {.format = FMT_JSONL, .timeout_ms = DEFAULT_TIMEOUT_MS, .in_flight = 64};
    q.endpoint = getenv("KV_ENDPOINT") && *getenv("KV_ENDPOINT") ? getenv("KV_ENDPOINT") : DEFAULT_ENDPOINT;
    enum { OPT_FORMAT = 256, OPT_TIMEOUT, OPT_INTKEY, OPT_TTL, OPT_EXISTS, OPT_GEN, OPT_GENPOL, OPT_STRICT,
           OPT_INFLIGHT, OPT_NOSENDKEY, OPT_DIRECT, OPT_COMMIT_MASTER };
    static const struct option longopts[] = {
        {"endpoint", required_argument, NULL, 'e'},   {"format", required_argument, NULL, OPT_FORMAT},
        {"timeout", required_argument, NULL, OPT_TIMEOUT}, {"int-key", no_argument, NULL, OPT_INTKEY},
        {"ttl", required_argument, NULL, OPT_TTL},    {"exists", required_argument, NULL, OPT_EXISTS},
        {"gen", required_argument, NULL, OPT_GEN},    {"gen-policy", required_argument, NULL, OPT_GENPOL},
        {"strict", no_argument, NULL, OPT_STRICT},    {"in-flight", required_argument, NULL, OPT_INFLIGHT},
        {"no-send-key", no_argument, NULL, OPT_NOSENDKEY}, {"direct", no_argument, NULL, OPT_DIRECT},
        {"commit-master", no_argument, NULL, OPT_COMMIT_MASTER},
        {"help", no_argument, NULL, 'h'},             {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    static const char *exists_names[] = {"update", "update-only", "create-only", "replace", "replace-only"};
    int c, used = 0;
    int64_t v;
    bool in_flight_set = false;
    /* Command words and their arguments, in order, gathered into argv[1..]:
     * a word is only ever written over a slot getopt has already passed, and
     * argv[0] stays, since getopt names the program from it. */
    char **words = argv + 1;
    while ((c = getopt_long(argc, argv, "+e:hV", longopts, NULL)) != -1 || optind < argc) {
        if (c == -1) {
            if (strcmp(argv[optind - 1], "--") == 0 && optind > 1)
                break; /* everything after "--" is an argument */
            /* a command word or argument: keep scanning options after it */
            words[used++] = argv[optind++];
            continue;
        }
        switch (c) {
        case 'e': q.endpoint = optarg; break;
        case OPT_FORMAT:
            if (strcmp(optarg, "jsonl") == 0) q.format = FMT_JSONL;
            else if (strcmp(optarg, "table") == 0) q.format = FMT_TABLE;
            else if (strcmp(optarg, "raw") == 0) q.format = FMT_RAW;
            else return s_bad_usage("--format '%s': expected jsonl, table or raw", optarg);
            break;
        case OPT_TIMEOUT:
            if (kv_parse_int(optarg, 1, 3600000, &v) != 0)
                return s_bad_usage("--timeout '%s': expected milliseconds from 1 to 3600000", optarg);
            q.timeout_ms = (int) v;
            break;
        case OPT_INTKEY: q.int_key = true; break;
        case OPT_NOSENDKEY: q.no_send_key = true; break;
        case OPT_DIRECT: q.direct = true; break;
        case OPT_COMMIT_MASTER: q.commit_master = true; break;
        case OPT_TTL:
            if (kv_parse_int(optarg, -2, KV_TTL_MAX, &q.ttl) != 0)
                return s_bad_usage("--ttl '%s': expected seconds, 0 (namespace default), -1 (never) or -2 (keep)", optarg);
            q.ttl_set = true;
            break;
        case OPT_EXISTS:
            q.exists = -1;
            for (int i = 0; i < 5; i++)
                if (strcmp(optarg, exists_names[i]) == 0)
                    q.exists = i;
            if (q.exists < 0)
                return s_bad_usage("--exists '%s': expected update, update-only, create-only, replace or replace-only", optarg);
            q.exists_set = true;
            break;
        case OPT_GEN:
            if (kv_parse_int(optarg, 0, UINT32_MAX, &q.gen) != 0)
                return s_bad_usage("--gen '%s': expected a generation from 0 to 4294967295", optarg);
            q.gen_set = true;
            break;
        case OPT_GENPOL:
            if (strcmp(optarg, "eq") == 0) q.genpol = KV_GEN_EQ;
            else if (strcmp(optarg, "gt") == 0) q.genpol = KV_GEN_GT;
            else return s_bad_usage("--gen-policy '%s': expected eq or gt", optarg);
            q.genpol_set = true;
            break;
        case OPT_STRICT: q.strict = true; break;
        case OPT_INFLIGHT:
            if (kv_parse_int(optarg, 1, 10000, &q.in_flight) != 0)
                return s_bad_usage("--in-flight '%s': expected 1 to 10000", optarg);
            in_flight_set = true;
            break;
        case 'h': help(); return EXIT_OK;
        case 'V': printf("kvquery %s\n", KV_VERSION); return EXIT_OK;
        default: fputs(s_usage, stderr); return EXIT_ERROR;
        }
    }
    /* words[0..used) holds the command and its arguments (after "--" too) */
    while (optind < argc)
        words[used++] = argv[optind++];
    if (used == 0)
        return s_bad_usage("no command given");
    const char *cmd = words[0];
    for (size_t i = 0; i < sizeof s_cmds / sizeof s_cmds[0]; i++) {
        if (strcmp(s_cmds[i].name, cmd) != 0)
            continue;
        int nargs = used - 1;
        if (nargs < s_cmds[i].min || (s_cmds[i].max >= 0 && nargs > s_cmds[i].max))
            return s_bad_usage("%s: wrong number of arguments", cmd);
        int o = s_cmds[i].opts;
        if ((q.ttl_set && !(o & O_TTL)) || (q.exists_set && !(o & O_EXISTS))
            || ((q.gen_set || q.genpol_set) && !(o & O_GEN)) || ((q.strict || in_flight_set) && !(o & O_IMPORT)))
            return s_bad_usage("%s: an option given does not apply to this command", cmd);
        if (q.genpol_set && !q.gen_set)
            return s_bad_usage("%s: --gen-policy needs --gen", cmd);
        if (sodium_init() < 0)
            kv_die(EXIT_ERROR, "cannot initialise libsodium");
        if (q.strict && !in_flight_set)
            q.in_flight = 1; /* --strict: nothing after the first failing line is sent */
        int rc = s_cmds[i].fn(&q, nargs, words + 1);
        if ((fflush(stdout) != 0 || ferror(stdout)) && rc == EXIT_OK) {
            kv_warn("cannot write standard output: %s", strerror(errno));
            rc = EXIT_ERROR;
        }
        kv_client_destroy(&q.client);
        kv_cmap_destroy(&q.cmap);
        return rc;
    }
    return s_bad_usage("unknown command '%s'", cmd);
}
