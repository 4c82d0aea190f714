/* fuzz_request: libFuzzer target for kvnode's request path.  The input is
 * a request frame (one or more headers, each followed by its body); it
 * goes through server_handle_frame, the function the socket loop calls,
 * so frame splitting, header decoding, body validation and every
 * operation are covered.  The reply frame must always split into whole
 * replies whose bodies are valid MessagePack maps. */
#include "../../cmd/kvnode/server.h"
#include "kv_err.h"
#include "kv_mp.h"
#include "kv_proto.h"
#include <assert.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static server_t *s_server;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!s_server) {
        if (sodium_init() < 0)
            abort();
        kv_ns_config_t cfg = {.name = "test", .max_record_size = 4096, .memory_limit = 8 << 20, .max_bins = 8};
        char why[256];
        s_server = server_new(&cfg, 1, NULL, why, sizeof why);
    }
    server_handle_frame(s_server, data, size);
    size_t len, off = 0;
    const uint8_t *frame = server_reply_frame(s_server, &len), *body;
    kv_hdr_t h;
    char why[256];
    int rc, n = 0;
    while ((rc = kv_frame_next(frame, len, &off, &h, &body, why, sizeof why)) == KV_OK) {
        if (!kv_mp_valid(body, h.body_len))
            abort();
        n++;
    }
    if (rc != -1 || (size > 0 && n == 0))
        abort(); /* a reply frame that does not split, or no reply at all */
    return 0;
}
