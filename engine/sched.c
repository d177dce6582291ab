/* engine/sched.c: which operation runs next.  Submitted operations are
 * resolved in order and queued on their VM; one operation at a time runs
 * per VM, VMs run concurrently up to max_inflight_vms and the rest wait in
 * FIFO order; a VM whose queue ran empty keeps its connection as idle. */
#include "engine/core.h"
#include "backends/gate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void eng_ready_push(cocoon_engine *e, struct eng_vm *vm)
{
    if (vm->listed)
        return;
    vm->listed = true;
    STAILQ_INSERT_TAIL(&e->ready, vm, link);
}

static void idle_unlink(cocoon_engine *e, struct eng_vm *vm)
{
    TAILQ_REMOVE(&e->idle, vm, idle_link);
    vm->idle = false;
    e->n_idle--;
}

static void vm_drop(cocoon_engine *e, struct eng_vm *vm)
{
    if (vm->idle)
        idle_unlink(e, vm);
    eng_vm_table_remove(e, vm);
    eng_vm_free(vm);
}

/* Closes the oldest idle connections beyond the inflight budget. */
static void idle_trim(cocoon_engine *e)
{
    while (!TAILQ_EMPTY(&e->idle) && e->n_idle + e->n_active > e->max_inflight)
        vm_drop(e, TAILQ_FIRST(&e->idle));
}

/* The VM's queue ran empty: it keeps its connection as an idle VM (one
 * that never connected is dropped), and its inflight slot goes to the
 * next waiting VM. */
static void vm_release(cocoon_engine *e, struct eng_vm *vm)
{
    if (vm->active)
        e->n_active--;
    vm->active = false;
    if (vm->conn) {
        vm->idle = true;
        TAILQ_INSERT_TAIL(&e->idle, vm, idle_link);
        e->n_idle++;
    } else {
        vm_drop(e, vm);
    }
    while (!STAILQ_EMPTY(&e->waiting) && e->n_active < e->max_inflight) {
        struct eng_vm *w = STAILQ_FIRST(&e->waiting);

        STAILQ_REMOVE_HEAD(&e->waiting, link);
        w->listed = false;
        w->active = true;
        e->n_active++;
        eng_ready_push(e, w);
    }
    idle_trim(e);
}

/* Each op names the VMM it may talk to from its own gate: none until
 * then, so a pid checked for an earlier op is never inherited. */
static void op_run(struct eng_op *op)
{
    op->vm->peer = 0;
    if (op_is_lc(op))
        eng_lc_run(op);
    else
        eng_attach_run(op);
}

/* Starts the next operation of every ready VM.  Iterative, so a chain of
 * operations that fail at once (gate) does not grow the stack. */
void eng_pump(cocoon_engine *e)
{
    if (e->pumping)
        return;
    e->pumping = true;
    while (!STAILQ_EMPTY(&e->ready) && !e->free_requested) {
        struct eng_vm *vm = STAILQ_FIRST(&e->ready);

        STAILQ_REMOVE_HEAD(&e->ready, link);
        vm->listed = false;
        if (vm->cur)
            continue;
        if (!STAILQ_EMPTY(&vm->queue)) {
            vm->cur = STAILQ_FIRST(&vm->queue);
            op_run(vm->cur);
        } else {
            vm_release(e, vm);
        }
    }
    e->pumping = false;
}

static void vm_enqueue(cocoon_engine *e, struct eng_vm *vm, struct eng_op *op)
{
    op->vm = vm;
    if (vm->idle)
        idle_unlink(e, vm);
    STAILQ_INSERT_TAIL(&vm->queue, op, link);
    if (vm->active) {
        if (!vm->cur)
            eng_ready_push(e, vm);
        return;
    }
    if (vm->listed)
        return;             /* already waiting for a slot */
    if (e->n_active < e->max_inflight) {
        vm->active = true;
        e->n_active++;
        eng_ready_push(e, vm);
        idle_trim(e);
        return;
    }
    vm->listed = true;
    STAILQ_INSERT_TAIL(&e->waiting, vm, link);
}

/* "D" + the socket path of a direct target; "R" + the API socket of a
 * recorded VM, whose record and backend are returned.  Owned, or NULL
 * with *rc and e->err. */
/* The key of op's VM: in buf (n bytes) when it fits, else owned. */
static char *op_vm_key(cocoon_engine *e, struct eng_op *op, const store_vm **rec,
                       const struct backend_ops **ops, int *rc, char *buf, size_t bufn)
{
    const char *sock = op->vm_arg;
    char *owned = NULL, *key;
    size_t n;

    /* An absolute socket path names a Cloud Hypervisor API socket. */
    *ops = &backend_cloudhypervisor;
    if (op->vm_arg[0] != '/') {
        char tmp[BASE_ERRSTR_MAX];

        *rec = eng_resolve(e, op->vm_arg, rc);
        if (!*rec) {
            memcpy(tmp, e->err, sizeof(tmp));
            base_errf(e->err, sizeof(e->err), 0, "%s: vm %s: %s", eng_op_names[op->kind],
                      op->vm_arg, tmp);
            return NULL;
        }
        *ops = backend_by_name((*rec)->backend);
        sock = owned = gate_api_sock(*rec);
    }
    n = sock ? strlen(sock) : 0;
    key = !sock ? NULL : n + 2 <= bufn ? buf : malloc(n + 2);
    if (!key) {
        free(owned);
        *rc = base_errf(e->err, sizeof(e->err), -ENOMEM, "out of memory");
        return NULL;
    }
    key[0] = *rec ? 'R' : 'D';
    memcpy(key + 1, sock, n + 1);
    free(owned);
    return key;
}

/* Whether the backend can run op: every backend starts and stops; fs and
 * device operations need the backend's hooks. */
static bool op_supported(const struct eng_op *op, const struct backend_ops *ops)
{
    if (!ops)
        return false;
    if (op_is_lc(op))
        return true;
    if (op->kind == OP_LIST)
        return ops->fs_attach_check && ops->device_attach_check;
    return op_is_fs(op) ? ops->fs_attach_check != NULL : ops->device_attach_check != NULL;
}

/* Resolution and routing of one submitted op; completes it on error. */
void eng_op_begin(cocoon_engine *e, struct eng_op *op)
{
    const struct backend_ops *ops = NULL;
    const store_vm *rec = NULL;
    struct eng_vm *vm;
    char keybuf[256], *key;
    int rc = 0;

    if (op->pre_err) {
        eng_op_complete(op, op->pre_err, op->msg);
        return;
    }
    if (op->vm_arg[0] == '/' && op_is_lc(op)) {
        base_errf(e->err, sizeof(e->err), 0, "%s: vm %s: needs a recorded VM, not a socket path",
                  eng_op_names[op->kind], op->vm_arg);
        eng_op_complete(op, -EINVAL, e->err);
        return;
    }
    key = op_vm_key(e, op, &rec, &ops, &rc, keybuf, sizeof(keybuf));
    if (!key) {
        eng_op_complete(op, rc, e->err);
        return;
    }
    if (!op_supported(op, ops)) {
        if (key != keybuf)
            free(key);
        base_errf(e->err, sizeof(e->err), 0, "%s: backend %s: backend does not support %s",
                  eng_op_names[op->kind], ops ? ops->short_name : rec->backend,
                  op_is_fs(op) || op->kind == OP_LIST ? "fs attach" : "device attach");
        eng_op_complete(op, -EOPNOTSUPP, e->err);
        return;
    }
    vm = eng_vm_get(e, key, rec);
    if (key != keybuf)
        free(key);
    if (!vm) {
        eng_op_complete(op, -ENOMEM, "out of memory");
        return;
    }
    vm->ops = ops;
    vm_enqueue(e, vm, op);
}

/* Submitted operations started per callback: a batch of thousands is
 * started over several turns of the host's loop, never in one long
 * callback. */
#define ENG_KICK_BATCH 256

void eng_kick_cb(lp_loop *loop, lp_timer *w, int revents)
{
    cocoon_engine *e = w->data;
    struct eng_op_q list = STAILQ_HEAD_INITIALIZER(list);
    unsigned n = 0;

    (void)revents;

    /* The first ENG_KICK_BATCH, in submission order; the rest stay first
     * in e->start, before anything submitted by the callbacks below. */
    while (n < ENG_KICK_BATCH && !STAILQ_EMPTY(&e->start)) {
        struct eng_op *op = STAILQ_FIRST(&e->start);

        STAILQ_REMOVE_HEAD(&e->start, link);
        STAILQ_INSERT_TAIL(&list, op, link);
        n++;
    }
    if (!STAILQ_EMPTY(&e->start))
        lp_timer_start(loop, &e->kick);
    eng_enter(e);
    while (!STAILQ_EMPTY(&list)) {
        struct eng_op *op = STAILQ_FIRST(&list);

        if (e->free_requested) {
            /* Hand the rest back, first, so the deferred free cancels them. */
            STAILQ_CONCAT(&list, &e->start);
            STAILQ_CONCAT(&e->start, &list);
            break;
        }
        STAILQ_REMOVE_HEAD(&list, link);
        eng_op_begin(e, op);
    }
    if (!e->free_requested)
        eng_pump(e);
    eng_leave(e);
}
