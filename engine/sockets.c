/* engine/sockets.c: the listening-socket snapshots behind the virtiofsd
 * liveness check.  The operations submitted in one loop iteration form a
 * generation; a snapshot started after a generation was submitted serves
 * it and every older one, and a miss is asked once more of a later
 * snapshot before it is reported.  A snapshot is taken in bounded steps on
 * the engine's loop (socktab_job), so thousands of paths never hold the
 * host's loop in one callback; the operations that need it wait for it,
 * and are served a bounded batch per callback. */
#include "engine/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Waiting operations checked per callback once their snapshot is in. */
#define ENG_UNIX_SERVE_BATCH 256

static void unix_job_start(cocoon_engine *e);

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
static socktab_job *unix_job_new(cocoon_engine *e)
{
    const char **want;
    size_t n = unix_wanted_add(&e->start, NULL, 0);
    socktab_job *j;

    for (size_t i = 0; i < e->nbuckets; i++)
        for (struct eng_vm *vm = e->buckets[i]; vm; vm = vm->hnext)
            n = unix_wanted_add(&vm->queue, NULL, n);
    want = malloc((n ? n : 1) * sizeof(*want));
    if (!want)
        return NULL;
    n = unix_wanted_add(&e->start, want, 0);
    for (size_t i = 0; i < e->nbuckets; i++)
        for (struct eng_vm *vm = e->buckets[i]; vm; vm = vm->hnext)
            n = unix_wanted_add(&vm->queue, want, n);
    j = socktab_job_new(want, n);
    free(want);
    return j;
}

static void unix_job_stop(cocoon_engine *e)
{
    lp_io_stop(e->loop, &e->unix_io);
    lp_timer_stop(e->loop, &e->unix_step);
    socktab_job_free(e->unix_job);
    e->unix_job = NULL;
}

static void unix_serve_arm(cocoon_engine *e)
{
    if (!lp_is_active(&e->unix_serve)) {
        lp_timer_set(&e->unix_serve, 0., 0.);
        lp_timer_start(e->loop, &e->unix_serve);
    }
}

static void unix_snapshot_set(cocoon_engine *e, socktab *s, int err)
{
    socktab_free(e->unix_set);
    e->unix_set = s;
    e->unix_errno = s ? 0 : err;
    e->unix_loaded = true;
    e->unix_gen = e->unix_job_gen;
    e->unix_seq++;
}

/* One bounded step of the snapshot under way. */
static void unix_job_step(cocoon_engine *e)
{
    int rc = socktab_job_step(e->unix_job);
    socktab *s;

    lp_io_stop(e->loop, &e->unix_io);
    if (rc == SOCKTAB_JOB_AGAIN) {
        lp_timer_set(&e->unix_step, 0., 0.);
        lp_timer_start(e->loop, &e->unix_step);
        return;
    }
    if (rc == SOCKTAB_JOB_WAIT) {
        lp_io_set(&e->unix_io, socktab_job_fd(e->unix_job), LP_READ);
        if (lp_io_start(e->loop, &e->unix_io) == 0)
            return;
        /* Not watchable: step again at once, which reads or fails. */
        lp_timer_set(&e->unix_step, 0., 0.);
        lp_timer_start(e->loop, &e->unix_step);
        return;
    }
    errno = 0;
    s = socktab_job_take(e->unix_job);
    unix_snapshot_set(e, s, errno ? errno : EIO);
    unix_job_stop(e);
    unix_serve_arm(e);
}

static void unix_step_cb(lp_loop *loop, lp_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    unix_job_step(w->data);
}

static void unix_io_cb(lp_loop *loop, lp_io *w, int revents)
{
    (void)loop;
    (void)revents;
    unix_job_step(w->data);
}

/* Starts a snapshot for every generation submitted so far, unless one is
 * under way.  Out of memory: the snapshot is "not readable" at once. */
static void unix_job_start(cocoon_engine *e)
{
    if (e->unix_job)
        return;
    e->unix_job_gen = e->gen;
    e->unix_job_any = true;
    e->unix_job = unix_job_new(e);
    if (!e->unix_job) {
        unix_snapshot_set(e, NULL, ENOMEM);
        unix_serve_arm(e);
        return;
    }
    unix_job_step(e);
}

void eng_unix_init(cocoon_engine *e)
{
    lp_timer_init(&e->unix_step, unix_step_cb, 0., 0.);
    e->unix_step.data = e;
    lp_io_init(&e->unix_io, unix_io_cb, -1, LP_READ);
    e->unix_io.data = e;
    lp_timer_init(&e->unix_serve, eng_unix_serve_cb, 0., 0.);
    e->unix_serve.data = e;
    STAILQ_INIT(&e->unix_wait);
}

void eng_unix_fini(cocoon_engine *e)
{
    unix_job_stop(e);
    lp_timer_stop(e->loop, &e->unix_serve);
    STAILQ_INIT(&e->unix_wait);
    eng_unix_drop(e);
}

void eng_unix_drop(cocoon_engine *e)
{
    unix_job_stop(e);
    socktab_free(e->unix_set);
    e->unix_set = NULL;
    e->unix_loaded = false;
}

/* Whether the snapshot in hand may answer op: one started after op was
 * submitted (ST_SNAP), or, for a second look, a later one than the
 * snapshot that missed (ST_RECHECK). */
static bool unix_serves(const cocoon_engine *e, const struct eng_op *op)
{
    if (!e->unix_loaded)
        return false;
    if (op->step == ST_RECHECK)
        return e->unix_seq != op->recheck_seq;
    return (int)(e->unix_gen - op->gen) >= 0;
}

/* The check against the snapshot in hand: a miss is asked once more of a
 * later snapshot before it counts; then the PUT. */
static void unix_check(struct eng_op *op)
{
    cocoon_engine *e = op->e;
    int rc = ch_socket_check(op->socket, e->unix_set, e->unix_errno, e->err, sizeof(e->err));

    if (rc == -ECONNREFUSED && op->step != ST_RECHECK) {
        op->step = ST_RECHECK;
        op->recheck_seq = e->unix_seq;
        STAILQ_INSERT_TAIL(&e->unix_wait, op, recheck_link);
        unix_serve_arm(e);
        return;
    }
    if (rc)
        eng_op_fail(op, rc);
    else
        eng_fs_put(op);
}

/* The listener check of an fs attach whose prechecks passed: now when the
 * snapshot in hand serves it, else once one does. */
void eng_unix_check(struct eng_op *op)
{
    cocoon_engine *e = op->e;

    op->step = ST_SNAP;
    if (unix_serves(e, op)) {
        unix_check(op);
        return;
    }
    STAILQ_INSERT_TAIL(&e->unix_wait, op, recheck_link);
    unix_job_start(e);
}

/* Checks up to a batch of the waiting operations the snapshot in hand
 * serves; the rest wait for a new one, started here. */
void eng_unix_serve_cb(lp_loop *loop, lp_timer *w, int revents)
{
    cocoon_engine *e = w->data;
    struct eng_op_q list = STAILQ_HEAD_INITIALIZER(list), later = STAILQ_HEAD_INITIALIZER(later);
    unsigned n = 0;

    (void)loop;
    (void)revents;
    STAILQ_CONCAT(&list, &e->unix_wait);
    eng_enter(e);
    while (!STAILQ_EMPTY(&list) && !e->free_requested) {
        struct eng_op *op = STAILQ_FIRST(&list);

        STAILQ_REMOVE_HEAD(&list, recheck_link);
        if (!unix_serves(e, op) || n >= ENG_UNIX_SERVE_BATCH) {
            STAILQ_INSERT_TAIL(&later, op, recheck_link);
            continue;
        }
        n++;
        unix_check(op);
    }
    /* Left over after a free request: the destruction cancels them through
     * their VMs' queues. */
    if (!e->free_requested) {
        bool more = false, stale = false;
        struct eng_op *op;

        STAILQ_CONCAT(&later, &e->unix_wait);
        STAILQ_CONCAT(&e->unix_wait, &later);
        STAILQ_FOREACH(op, &e->unix_wait, recheck_link) {
            if (unix_serves(e, op))
                more = true;
            else
                stale = true;
        }
        if (more)
            unix_serve_arm(e);
        if (stale)
            unix_job_start(e);
    }
    eng_leave(e);
}

/* Called once a kick's requests went out: the snapshot their fs attaches
 * will need is started now, while the VMMs answer vm.info, rather than
 * when the first reply arrives.  One snapshot serves every attach pending
 * at that moment, however many VMs --parallel lets run. */
void eng_unix_prefetch(cocoon_engine *e)
{
    if (!e->gen_any || (e->unix_job_any && e->unix_job_gen == e->gen))
        return;
    unix_job_start(e);
}

/* A snapshot already started for the current generation predates this
 * submission, so it opens a new generation too. */
void eng_gen_assign(cocoon_engine *e, struct eng_op *op)
{
    unsigned it = lp_iteration(e->loop);

    if (!e->gen_any || e->gen_iter != it || (e->unix_job_any && e->unix_job_gen == e->gen)) {
        e->gen++;
        e->gen_iter = it;
        e->gen_any = true;
    }
    op->gen = e->gen;
}
