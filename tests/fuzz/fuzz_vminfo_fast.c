/* tests/fuzz/fuzz_vminfo_fast.c: libFuzzer target for json/vminfo, the
 * fast vm.info reader.  Differential: on arbitrary bytes the decode must
 * give exactly what yajl alone gives (same return, same error text, same
 * fields), and whatever the reader accepts by itself yajl accepts with
 * the same fields. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/base.h"
#include "json/ch.h"
#include "json/vminfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool vi_same(const json_vm_info *a, const json_vm_info *b)
{
    if (!same(a->state, b->state) || a->mem_size != b->mem_size ||
        a->mem_shared != b->mem_shared || a->mem_hugepages != b->mem_hugepages ||
        a->n_zones != b->n_zones || a->n_fs != b->n_fs || a->n_devices != b->n_devices ||
        a->n_tree_ids != b->n_tree_ids)
        return false;
    for (size_t i = 0; i < a->n_zones; i++)
        if (a->zones[i].shared != b->zones[i].shared ||
            a->zones[i].hugepages != b->zones[i].hugepages)
            return false;
    for (size_t i = 0; i < a->n_fs; i++)
        if (!same(a->fs[i].id, b->fs[i].id) || !same(a->fs[i].tag, b->fs[i].tag) ||
            !same(a->fs[i].socket, b->fs[i].socket) ||
            a->fs[i].num_queues != b->fs[i].num_queues ||
            a->fs[i].queue_size != b->fs[i].queue_size)
            return false;
    for (size_t i = 0; i < a->n_devices; i++)
        if (!same(a->devices[i].id, b->devices[i].id) ||
            !same(a->devices[i].path, b->devices[i].path))
            return false;
    for (size_t i = 0; i < a->n_tree_ids; i++)
        if (!same(a->tree_ids[i], b->tree_ids[i]))
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[BASE_ERRSTR_MAX] = "", ref_err[BASE_ERRSTR_MAX] = "";
    json_vm_info vi, ref;
    int rc, ref_rc;

    memset(&vi, 0, sizeof(vi));
    if (json_vm_info_read((const char *)data, size, &vi, 64) == 0) {
        if (json_vm_info_decode_yajl((const char *)data, size, &ref, ref_err,
                                     sizeof(ref_err)) == 0 && !vi_same(&vi, &ref))
            abort();
        json_vm_info_fini(&ref);
    }
    json_vm_info_fini(&vi);
    rc = json_vm_info_decode((const char *)data, size, &vi, err, sizeof(err));
    ref_rc = json_vm_info_decode_yajl((const char *)data, size, &ref, ref_err, sizeof(ref_err));
    if (rc == -ENOMEM || ref_rc == -ENOMEM) {
        json_vm_info_fini(&vi);
        json_vm_info_fini(&ref);
        return 0;
    }
    if (rc != ref_rc || strcmp(err, ref_err) != 0 || !vi_same(&vi, &ref))
        abort();
    json_vm_info_fini(&vi);
    json_vm_info_fini(&ref);
    return 0;
}
