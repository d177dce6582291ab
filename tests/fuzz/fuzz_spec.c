/* tests/fuzz/fuzz_spec.c: libFuzzer target for spec normalization.  The
 * input is split on NUL bytes into socket, tag, pci and id; two more bytes
 * give num_queues and queue_size.  Checks: no crash, errors are -EINVAL
 * with text, a normalized PCI path is canonical and normalizing it again is
 * a fixed point. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/spec.h"
#include "http/base.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_canonical(const char *p)
{
    static const char prefix[] = "/sys/bus/pci/devices/";
    const char *b = p + sizeof(prefix) - 1;

    if (strncmp(p, prefix, sizeof(prefix) - 1) != 0 || strlen(b) != 12 || b[4] != ':' ||
        b[7] != ':' || b[10] != '.' || b[11] < '0' || b[11] > '7')
        abort();
    for (size_t i = 0; i < 10; i++) {
        if (i == 4 || i == 7)
            continue;
        if (!((b[i] >= '0' && b[i] <= '9') || (b[i] >= 'a' && b[i] <= 'f')))
            abort();
    }
    if (spec_bdf_from_path(p) != b)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 5);
    char *parts[4];
    char err[BASE_ERRSTR_MAX];
    char out[SPEC_PCI_PATH_MAX], again[SPEC_PCI_PATH_MAX];
    size_t o = 0;
    int nq = 0, qs = 0;

    if (!buf)
        return 0;
    if (size >= 2) {
        nq = (int8_t)data[0];
        qs = (int8_t)data[1] * 64;
        data += 2;
        size -= 2;
    }
    memcpy(buf, data, size);
    memset(buf + size, 0, 5);
    for (int i = 0; i < 4; i++) {
        parts[i] = buf + o;
        o += strlen(buf + o);
        if (o < size)
            o++;
    }

    spec_fs fs = { parts[0], parts[1], nq, qs };
    int rc = spec_fs_normalize(&fs, err, sizeof(err));
    if (rc == 0) {
        if (fs.num_queues < 1 || fs.queue_size < 1 || fs.socket[0] != '/' ||
            strlen(fs.socket) > 107)
            abort();
    } else if (rc != -EINVAL || err[0] == '\0') {
        abort();
    }

    spec_vfio vs = { parts[2], parts[3] };
    rc = spec_vfio_normalize(&vs, out, err, sizeof(err));
    if (rc == 0) {
        check_canonical(out);
        if (spec_pci_path(out, again, err, sizeof(err)) != 0 || strcmp(out, again) != 0)
            abort();
    } else if ((rc != -EINVAL && rc != -ENOMEM) || err[0] == '\0') {
        abort();
    }

    rc = spec_pci_path(parts[0], out, err, sizeof(err));
    if (rc == 0)
        check_canonical(out);
    else if ((rc != -EINVAL && rc != -ENOMEM) || err[0] == '\0')
        abort();

    spec_bdf_from_path(parts[1]);
    free(buf);
    return 0;
}
