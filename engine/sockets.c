/* engine/sockets.c: the virtiofsd liveness check of an fs attach.  The
 * engine opens one probe socket (backends/listening.h) the first time an
 * attach needs it and keeps it until the engine is freed; each check is
 * one connect() that reaches no listener, made once the attach's
 * prechecks passed, right before its PUT, so the answer is as fresh as it
 * can be.  Its cost is the kernel's lookup of the socket bound to the
 * path's file, the same lookup the VMM's own connect makes; it does not
 * depend on how many sockets listen in the namespace. */
#include "engine/core.h"

#include <unistd.h>

#include "backends/listening.h"

void eng_unix_check(struct eng_op *op)
{
    cocoon_engine *e = op->e;
    int probe = e->probe >= 0 ? e->probe : listening_probe_open();
    int rc;

    /* A probe that could not be opened is tried again by the next check. */
    if (probe >= 0)
        e->probe = probe;
    rc = ch_socket_check(op->socket, probe, e->err, sizeof(e->err));
    if (rc)
        eng_op_fail(op, rc);
    else
        eng_fs_put(op);
}

void eng_unix_fini(cocoon_engine *e)
{
    if (e->probe >= 0)
        close(e->probe);
    e->probe = -1;
}
