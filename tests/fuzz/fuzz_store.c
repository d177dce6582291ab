/* tests/fuzz/fuzz_store.c: libFuzzer target for the vms.json parser.  Any
 * input either fails cleanly or parses; a parsed db must serialize, and
 * the serialized text must parse back to the same records. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/store.h"
#include "backends/vmsjson.h"
#include "http/base.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[BASE_ERRSTR_MAX];
    store_db db, back;
    /* Inputs that mention firecracker are read as that backend's db, so
     * both hypervisor checks get exercised. */
    const char *backend =
        memmem(data, size, "firecracker", 11) ? STORE_BACKEND_FC : STORE_BACKEND_CH;
    err[0] = '\0';
    if (vmsjson_parse((const char *)data, size, backend, &db, err, sizeof err) != 0) {
        if (!err[0] || db.n != 0 || db.vms != NULL)
            abort();
        return 0;
    }
    char *out = NULL;
    size_t len = 0;
    if (vmsjson_serialize(&db, &out, &len, err, sizeof err) != 0) {
        fprintf(stderr, "serialize after parse failed: %s\n", err);
        abort();
    }
    if (vmsjson_parse(out, len, backend, &back, err, sizeof err) != 0) {
        fprintf(stderr, "reparse failed: %s\n%s\n", err, out);
        abort();
    }
    if (back.n != db.n)
        abort();
    for (size_t i = 0; i < db.n; i++) {
        const store_vm *a = &db.vms[i], *b = &back.vms[i];
        if (strcmp(a->id, b->id) != 0 || a->state != b->state ||
            !str_eq(a->config.name, b->config.name) ||
            a->config.n_disks != b->config.n_disks || a->config.memory != b->config.memory ||
            a->config.cpu != b->config.cpu || !str_eq(a->run_dir, b->run_dir) ||
            !str_eq(a->binary, b->binary))
            abort();
    }
    free(out);
    store_db_fini(&db);
    store_db_fini(&back);
    return 0;
}
