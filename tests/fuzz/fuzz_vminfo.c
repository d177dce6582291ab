/* tests/fuzz/fuzz_vminfo.c: libFuzzer target for json_vm_info_decode.
 * Checks the decoder's promises on arbitrary bytes: no crash or leak, a
 * success yields a non-NULL state and consistent arrays, a failure leaves
 * the struct empty and an error text. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/base.h"
#include "json/ch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[BASE_ERRSTR_MAX] = "";
    json_vm_info vi;
    int rc = json_vm_info_decode((const char *)data, size, &vi, err, sizeof(err));

    if (rc == 0) {
        if (!vi.state)
            abort();
        if ((vi.n_fs == 0) != (vi.fs == NULL) || (vi.n_devices == 0) != (vi.devices == NULL) ||
            (vi.n_zones == 0) != (vi.zones == NULL) ||
            (vi.n_tree_ids == 0) != (vi.tree_ids == NULL))
            abort();
        for (size_t i = 0; i < vi.n_fs; i++)
            if (!vi.fs[i].tag || !vi.fs[i].socket)
                abort();
        for (size_t i = 0; i < vi.n_tree_ids; i++)
            if (!vi.tree_ids[i])
                abort();
        json_vm_info_fini(&vi);
    } else {
        if (rc != -EBADMSG && rc != -ENOMEM)
            abort();
        if (vi.state || vi.fs || vi.devices || vi.zones || vi.tree_ids || err[0] == '\0')
            abort();
    }
    return 0;
}
