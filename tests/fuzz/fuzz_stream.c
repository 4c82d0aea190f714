/* fuzz_stream: libFuzzer target for kvrepl's stream reader, the decoder
 * of what `kvrepl load` reads from standard input.  The input is a whole
 * stream; the reader must end every one with a good end frame or an
 * error that names what is wrong, and every record it returns must be
 * whole (its fields inside the frame). */
#include "../../cmd/kvrepl/kvrepl.h"
#include "kv_mp.h"
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init && sodium_init() < 0)
        abort();
    init = true;
    if (size == 0)
        return 0;
    FILE *f = fmemopen((void *) data, size, "r");
    if (!f)
        abort();
    kr_reader_t r;
    kr_rec_t rec;
    char why[512] = "";
    int rc = kr_reader_begin(&r, f, why, sizeof why);
    while (rc == 0 && (rc = kr_reader_next(&r, &rec, why, sizeof why)) == 1) {
        if (!kv_mp_valid(rec.map, rec.map_len) || (!rec.del && !kv_mp_valid(rec.bins, rec.bins_len))
            || (rec.key && !kv_mp_valid(rec.key, rec.key_len)) || rec.gen == 0)
            abort();
        rc = 0;
    }
    if ((rc == 0 && !r.ended) || (rc < 0 && !why[0]))
        abort(); /* an end without the end frame, or an error without a reason */
    kr_reader_destroy(&r);
    fclose(f);
    return 0;
}
