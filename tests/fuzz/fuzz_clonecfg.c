/* tests/fuzz/fuzz_clonecfg.c: libFuzzer target for the clone rewrite of a
 * snapshot's config.json.  Any input either fails cleanly or yields a
 * JSON object that rewrites again with nothing left to drop and the same
 * copies, all inside the disk dir. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/clonecfg.h"
#include "http/base.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[BASE_ERRSTR_MAX];
    clonecfg_result r, again;
    err[0] = '\0';
    if (clonecfg_rewrite((const char *)data, size, "/run/c", "/var/c", &r, err, sizeof err)) {
        if (!err[0] || r.json || r.copies)
            abort();
        return 0;
    }
    if (strlen(r.json) != r.len)
        abort();
    int rc = clonecfg_rewrite(r.json, r.len, "/run/c", "/var/c", &again, err, sizeof err);
    if (rc == -ENAMETOOLONG) {   /* the copy names grew past PATH_MAX */
        clonecfg_result_fini(&r);
        return 0;
    }
    if (rc) {
        fprintf(stderr, "rewrite of a rewrite failed: %s\n%s\n", err, r.json);
        abort();
    }
    if (again.n_dropped != 0 || again.n_copies != r.n_copies)
        abort();
    for (size_t i = 0; i < r.n_copies; i++)
        if (strncmp(r.copies[i].dst, "/var/c/", 7) != 0)
            abort();
    clonecfg_result_fini(&r);
    clonecfg_result_fini(&again);
    return 0;
}
