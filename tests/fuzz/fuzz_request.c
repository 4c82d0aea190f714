/* fuzz_request: libFuzzer target for kvnode's request path.  The input is
 * a header frame (first 48 bytes) followed by a body frame (the rest); it
 * goes through server_handle, the same function the socket loop calls, so
 * header decoding, body validation and every operation are covered.  The
 * reply must always be a valid MessagePack map. */
#include "../../cmd/kvnode/server.h"
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
    size_t hlen = size < KV_HDR_SIZE ? size : KV_HDR_SIZE;
    kv_hdr_t rh;
    server_handle(s_server, data, hlen, data + hlen, size - hlen, &rh);
    size_t len;
    const uint8_t *body = server_reply_body(s_server, &len);
    if (!kv_mp_valid(body, len))
        abort();
    return 0;
}
