/* selftest: runs every class self-test, each in its own process, and
 * prints TAP.  Usage: kvselftest [-v] [NAME...] */
#include "../../cmd/kvbench/hist.h"
#include "../../cmd/kvnode/cluster.h"
#include "../../cmd/kvnode/config.h"
#include "../../cmd/kvnode/disk.h"
#include "../../cmd/kvnode/server.h"
#include "../../cmd/kvnode/store.h"
#include "../../cmd/kvquery/kvquery.h"
#include "../../cmd/kvrepl/kvrepl.h"
#include "kv_client.h"
#include "kv_cmap.h"
#include "kv_digest.h"
#include "kv_err.h"
#include "kv_json.h"
#include "kv_mp.h"
#include "kv_proto.h"
#include "kv_ptable.h"
#include "kv_record.h"
#include "kv_util.h"
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const struct {
    const char *name;
    void (*fn)(bool);
} s_tests[] = {
    {"kv_err", kv_err_test},       {"kv_proto", kv_proto_test}, {"kv_digest", kv_digest_test},
    {"kv_mp", kv_mp_test},         {"kv_json", kv_json_test}, {"kv_record", kv_record_test},   {"kv_util", kv_util_test},
    {"kv_client", kv_client_test}, {"store", store_test},       {"disk", disk_test},         {"config", config_test},
    {"kv_ptable", kv_ptable_test}, {"cluster", cluster_test}, {"kv_cmap", kv_cmap_test},
    {"server", server_test},   {"kvquery_args", kq_args_test}, {"kvbench_hist", hist_test},
    {"kvrepl_rec", kr_rec_test},   {"kvrepl_stream", kr_stream_test}, {"kvrepl_plist", kr_plist_test},
    {"kvrepl_cursor", kr_cursor_test},
};

int main(int argc, char **argv)
{
    bool verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    int first = verbose ? 2 : 1, n = (int) (sizeof s_tests / sizeof s_tests[0]), run = 0, failed = 0;
    if (sodium_init() < 0)
        return 1;
    bool want[sizeof s_tests / sizeof s_tests[0]];
    for (int i = 0; i < n; i++) {
        want[i] = argc <= first;
        for (int a = first; a < argc; a++)
            want[i] |= strcmp(argv[a], s_tests[i].name) == 0;
        run += want[i];
    }
    printf("1..%d\n", run);
    fflush(stdout);
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!want[i])
            continue;
        k++;
        pid_t pid = fork();
        if (pid == 0) {
            s_tests[i].fn(verbose);
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        failed += !ok;
        printf("%s %d - selftest %s\n", ok ? "ok" : "not ok", k, s_tests[i].name);
        fflush(stdout);
    }
    return failed ? 1 : 0;
}
