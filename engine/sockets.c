/* engine/sockets.c: the listening-socket snapshots behind the virtiofsd
 * liveness check.  The operations submitted in one loop iteration form a
 * generation; a snapshot taken after a generation was submitted serves it
 * and every older one, and a miss is asked once more of a later snapshot
 * before it is reported. */
#include "engine/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t unix_wanted_add(const struct eng_op_q *q, const char **want, size_t n)
{
    const struct eng_op *op;

    STAILQ_FOREACH(op, q, link)
        if (op->kind == OP_FS_ATTACH && op->socket && op->socket_check && !op->pre_err) {
            if (want)
                want[n] = op->socket;
            n++;
        }
    return n;
}

/* Only the sockets of pending fs attaches are looked up, so the snapshot
 * keeps just those (a path left out reads as a miss, which the recheck
 * then asks about by itself). */
static socktab *unix_snapshot_load(cocoon_engine *e)
{
    const char **want;
    size_t n = unix_wanted_add(&e->start, NULL, 0);
    socktab *s;

    for (size_t i = 0; i < e->nbuckets; i++)
        for (struct eng_vm *vm = e->buckets[i]; vm; vm = vm->hnext)
            n = unix_wanted_add(&vm->queue, NULL, n);
    want = malloc((n ? n : 1) * sizeof(*want));
    if (!want)
        return socktab_listening(NULL, 0);
    n = unix_wanted_add(&e->start, want, 0);
    for (size_t i = 0; i < e->nbuckets; i++)
        for (struct eng_vm *vm = e->buckets[i]; vm; vm = vm->hnext)
            n = unix_wanted_add(&vm->queue, want, n);
    s = socktab_listening(want, n);
    free(want);
    return s;
}

static void unix_snapshot_take(cocoon_engine *e)
{
    socktab_free(e->unix_set);
    errno = 0;
    e->unix_set = unix_snapshot_load(e);
    e->unix_errno = e->unix_set ? 0 : errno;
    e->unix_loaded = true;
    e->unix_gen = e->gen;
    e->unix_seq++;
}

void eng_unix_drop(cocoon_engine *e)
{
    socktab_free(e->unix_set);
    e->unix_set = NULL;
    e->unix_loaded = false;
}

/* A snapshot taken after op was submitted.  NULL when the kernel's socket
 * table cannot be read (e->unix_errno says why): the check then fails. */
const socktab *eng_unix_set(cocoon_engine *e, const struct eng_op *op)
{
    if (!e->unix_loaded || (int)(e->unix_gen - op->gen) < 0)
        unix_snapshot_take(e);
    return e->unix_set;
}

/* Called once a kick's requests went out: the snapshot their fs attaches
 * will need is taken now, while the VMMs answer vm.info, rather than when
 * the first reply arrives and waits for it.  One snapshot serves every
 * attach pending at that moment, however many VMs --parallel lets run. */
void eng_unix_prefetch(cocoon_engine *e)
{
    if (!e->gen_any || (e->unix_loaded && e->unix_gen == e->gen))
        return;
    unix_snapshot_take(e);
}

/* The listener was missing from the snapshot: look again in a later one
 * before saying nothing listens.  Misses of one loop iteration share that
 * second read. */
void eng_recheck_defer(struct eng_op *op)
{
    cocoon_engine *e = op->e;

    op->step = ST_RECHECK;
    op->recheck_seq = e->unix_seq;
    STAILQ_INSERT_TAIL(&e->recheck_q, op, recheck_link);
    if (!lp_is_active(&e->recheck)) {
        lp_timer_set(&e->recheck, 0., 0.);
        lp_timer_start(e->loop, &e->recheck);
    }
}

void eng_recheck_cb(lp_loop *loop, lp_timer *w, int revents)
{
    cocoon_engine *e = w->data;
    struct eng_op_q list = STAILQ_HEAD_INITIALIZER(list);

    (void)loop;
    (void)revents;
    STAILQ_CONCAT(&list, &e->recheck_q);
    eng_enter(e);
    while (!STAILQ_EMPTY(&list) && !e->free_requested) {
        struct eng_op *op = STAILQ_FIRST(&list);
        int rc;

        STAILQ_REMOVE_HEAD(&list, recheck_link);
        if (e->unix_seq == op->recheck_seq || !e->unix_loaded)
            unix_snapshot_take(e);
        rc = ch_socket_check(op->socket, e->unix_set, e->unix_errno, e->err, sizeof(e->err));
        if (rc)
            eng_op_fail(op, rc);
        else
            eng_fs_put(op);
    }
    /* Left over after a free request: the destruction cancels them through
     * their VMs' queues. */
    eng_leave(e);
}

/* A snapshot already taken for the current generation predates this
 * submission, so it opens a new generation too. */
void eng_gen_assign(cocoon_engine *e, struct eng_op *op)
{
    unsigned it = lp_iteration(e->loop);

    if (!e->gen_any || e->gen_iter != it || (e->unix_loaded && e->unix_gen == e->gen)) {
        e->gen++;
        e->gen_iter = it;
        e->gen_any = true;
    }
    op->gen = e->gen;
}
