/* tests/fuzz/fuzz_error_body.c: libFuzzer target for json_error_render.
 * The output must be NUL-terminated inside the buffer for every outlen,
 * never longer than 1024 bytes, and never write past outlen. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json/ch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t outlens[] = { 1, 2, 7, 64, 1025, 1536 };

    for (size_t i = 0; i < sizeof(outlens) / sizeof(outlens[0]); i++) {
        size_t n = outlens[i];
        /* Exactly n bytes on the heap so ASan flags any write past outlen. */
        char *out = malloc(n);
        if (!out)
            return 0;
        json_error_render((const char *)data, size, out, n);
        size_t len = strnlen(out, n);
        if (len == n || len > 1024)
            abort();
        free(out);
    }
    return 0;
}
