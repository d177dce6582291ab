/* libFuzzer target for the batch plan line parser (cli/plan.c): any bytes
 * must parse or fail cleanly, and a parsed op must carry an op name and a
 * VM ref. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cli/plan.h"
#include "http/base.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[BASE_ERRSTR_MAX];
    cli_op op;
    int rc;

    memset(&op, 0, sizeof(op));
    err[0] = '\0';
    rc = cli_plan_parse_line((const char *)data, size, &op, err, sizeof(err));
    assert(rc == 0 || rc == 1 || rc < 0);
    if (rc == 0) {
        assert(op.vm && op.vm[0]);
        assert(strcmp(cli_op_name(op.kind), "?") != 0);
        assert(op.wait_s >= 0);
        assert((op.kind == CLI_OP_CLONE) == (op.snapshot != NULL));
        for (size_t i = 0; i < op.n_fs; i++)
            assert(op.fs[i].kind == CLI_OP_FS_ATTACH && strcmp(op.fs[i].vm, op.vm) == 0);
    } else if (rc < 0) {
        assert(err[0] != '\0');
    }
    cli_op_fini(&op);
    return 0;
}
