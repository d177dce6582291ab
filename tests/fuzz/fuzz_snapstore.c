/* tests/fuzz/fuzz_snapstore.c: libFuzzer target for the snapshots.json
 * parser.  Any input either fails cleanly or parses; a parsed db must
 * serialize, and the serialized text must parse back to the same records. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/snapstore.h"
#include "http/base.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[BASE_ERRSTR_MAX];
    snapstore_db db, back;
    err[0] = '\0';
    if (snapstore_parse((const char *)data, size, &db, err, sizeof err) != 0) {
        if (!err[0] || db.n != 0 || db.recs != NULL)
            abort();
        return 0;
    }
    char *out = NULL;
    size_t len = 0;
    if (snapstore_serialize(&db, &out, &len, err, sizeof err) != 0) {
        fprintf(stderr, "serialize after parse failed: %s\n", err);
        abort();
    }
    if (snapstore_parse(out, len, &back, err, sizeof err) != 0 || back.n != db.n) {
        fprintf(stderr, "reparse failed: %s\n", err);
        abort();
    }
    for (size_t i = 0; i < db.n; i++) {
        const snapstore_rec *a = &db.recs[i], *b = &back.recs[i];
        if (strcmp(a->id, b->id) || strcmp(a->name, b->name) || strcmp(a->dir, b->dir) ||
            strcmp(a->source.id, b->source.id) || a->source.backend != b->source.backend ||
            a->source.config.shared_memory != b->source.config.shared_memory)
            abort();
    }
    free(out);
    snapstore_db_fini(&db);
    snapstore_db_fini(&back);
    return 0;
}
