/* tests/fuzz/fuzz_pci_info.c: libFuzzer target for json_pci_info_decode:
 * no crash or leak; success means an id; failure leaves nothing behind;
 * the same return, error text and fields as yajl alone. */
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
    json_pci_info pi;
    char ref_err[BASE_ERRSTR_MAX] = "";
    json_pci_info ref;
    int rc = json_pci_info_decode((const char *)data, size, &pi, err, sizeof(err));
    int ref_rc = json_pci_info_decode_yajl((const char *)data, size, &ref, ref_err,
                                           sizeof(ref_err));

    if (rc != -ENOMEM && ref_rc != -ENOMEM &&
        (rc != ref_rc || strcmp(err, ref_err) != 0 ||
         (rc == 0 && (strcmp(pi.id, ref.id) != 0 || (!pi.bdf != !ref.bdf) ||
                      (pi.bdf && strcmp(pi.bdf, ref.bdf) != 0)))))
        abort();
    json_pci_info_fini(&ref);

    if (rc == 0) {
        if (!pi.id)
            abort();
        json_pci_info_fini(&pi);
    } else if ((rc != -EBADMSG && rc != -ENOMEM) || pi.id || pi.bdf || err[0] == '\0') {
        abort();
    }
    return 0;
}
