/* tests/fuzz/fuzz_pci_info.c: libFuzzer target for json_pci_info_decode:
 * no crash or leak; success means an id; failure leaves nothing behind. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "http/base.h"
#include "json/ch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[BASE_ERRSTR_MAX] = "";
    json_pci_info pi;
    int rc = json_pci_info_decode((const char *)data, size, &pi, err, sizeof(err));

    if (rc == 0) {
        if (!pi.id)
            abort();
        json_pci_info_fini(&pi);
    } else if ((rc != -EBADMSG && rc != -ENOMEM) || pi.id || pi.bdf || err[0] == '\0') {
        abort();
    }
    return 0;
}
