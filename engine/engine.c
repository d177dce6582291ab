/* engine/engine.c: the public API of cocoon.h: submitting operations,
 * completing them exactly once with text they own, and the engine's
 * creation and (possibly deferred) destruction. */
#include "engine/core.h"
#include "backends/spec.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define ENG_DEFAULT_TIMEOUT_MS 30000u
#define ENG_DEFAULT_INFLIGHT   256u

const char *const eng_op_names[] = {
    [OP_FS_ATTACH] = "fs attach", [OP_FS_DETACH] = "fs detach",
    [OP_DEV_ATTACH] = "device attach", [OP_DEV_DETACH] = "device detach",
    [OP_LIST] = "list", [OP_FS_LIST] = "fs list", [OP_DEV_LIST] = "device list",
    [OP_VM_START] = "vm start", [OP_VM_STOP] = "vm stop",
    [OP_VM_PAUSE] = "vm pause", [OP_VM_RESUME] = "vm resume",
    [OP_VM_SNAPSHOT] = "snapshot save", [OP_VM_RESTORE] = "vm restore",
};

static void engine_destroy(cocoon_engine *e);

void eng_enter(cocoon_engine *e)
{
    e->depth++;
}

/* Last thing a loop callback of ours does: a free requested inside a user
 * callback happens here, once nothing of ours is on the stack. */
void eng_leave(cocoon_engine *e)
{
    if (--e->depth == 0 && e->free_requested && !e->dying)
        engine_destroy(e);
}

void eng_op_free(struct eng_op *op)
{
    if (op->e && op->e->loop)
        lp_timer_stop(op->e->loop, &op->timer);
    free(op->res_id);
    free(op->res_bdf);
    free(op->msg);
    eng_lc_free(op->lc);
    free(op);
}

/* The text a callback reads must stay put while the callback runs a
 * nested loop iteration that completes other operations, so it lives in
 * the op itself, never in the engine's scratch buffer. */
static const char *op_own_text(struct eng_op *op, const char *text)
{
    char *copy;

    if (!text || !*text)
        return "";
    if (text == op->msg)
        return text;
    copy = strdup(text);
    if (!copy)
        return "out of memory";
    free(op->msg);
    op->msg = copy;
    return copy;
}

/* Calls op back, with an empty listing for a list op that failed, then
 * frees it. */
static void op_callback(struct eng_op *op, int err, const char *errstr, const cocoon_listing *l)
{
    cocoon_engine *e = op->e;
    cocoon_result r = { 0 };
    cocoon_listing empty = { 0 };

    r.err = err;
    r.errstr = op_own_text(op, errstr);
    r.vm = op->vm_arg;
    r.device_id = op->res_id;
    r.bdf = op->res_bdf;
    r.http_status = op->http_status;
    r.latency_us = (base_mono_ns() - op->t0_ns) / 1000;
    r.pid = op->pid;
    e->depth++;
    if (op_is_list(op))
        op->list(e, &r, l ? l : &empty, op->priv);
    else
        op->done(e, &r, op->priv);
    e->depth--;
    eng_op_free(op);
}

void eng_op_complete(struct eng_op *op, int err, const char *errstr)
{
    op_callback(op, err, errstr, NULL);
}

/* Unlinks the running op of vm, calls it back, and lets the VM go on. */
static void op_done_running(struct eng_op *op, int err, const char *errstr,
                            const cocoon_listing *l)
{
    struct eng_vm *vm = op->vm;
    cocoon_engine *e = op->e;

    if (vm) {
        vm->cur = NULL;
        STAILQ_REMOVE_HEAD(&vm->queue, link);
    }
    op_callback(op, err, errstr, l);
    if (vm && !e->free_requested) {
        eng_ready_push(e, vm);
        eng_pump(e);
    }
}

void eng_op_finish(struct eng_op *op, int err, const char *errstr)
{
    op_done_running(op, err, errstr, NULL);
}

void eng_op_fail(struct eng_op *op, int err)
{
    eng_op_finish(op, err, op->e->err);
}

void eng_op_list_done(struct eng_op *op, const cocoon_listing *l)
{
    op_done_running(op, 0, "", l);
}

void eng_op_list_empty(struct eng_op *op)
{
    cocoon_listing empty = { 0 };

    eng_op_list_done(op, &empty);
}

static struct eng_op *op_new(cocoon_engine *e, enum op_kind kind, const char *vm_arg,
                             const char *const strs[], size_t nstrs, const char *out[])
{
    size_t total = strlen(vm_arg) + 1;
    struct eng_op *op;
    char *p;

    for (size_t i = 0; i < nstrs; i++)
        total += strs[i] ? strlen(strs[i]) + 1 : 0;
    op = calloc(1, sizeof(*op) + total);
    if (!op)
        return NULL;
    op->t0_ns = base_mono_ns();
    op->e = e;
    op->kind = (unsigned char)kind;
    /* Each step that arms the timer sets its callback first. */
    lp_init(&op->timer, NULL);
    op->timer.data = op;
    p = op->buf;
    op->vm_arg = p;
    p = stpcpy(p, vm_arg) + 1;
    for (size_t i = 0; i < nstrs; i++) {
        out[i] = NULL;
        if (strs[i]) {
            out[i] = p;
            p = stpcpy(p, strs[i]) + 1;
        }
    }
    return op;
}

static void op_submit(cocoon_engine *e, struct eng_op *op)
{
    STAILQ_INSERT_TAIL(&e->start, op, link);
    if (!lp_is_active(&e->kick)) {
        lp_timer_set(&e->kick, 0., 0.);
        lp_timer_start(e->loop, &e->kick);
    }
}

/* A validation error is kept and reported from the loop, so that the
 * callback never runs inside the submit call. */
static int op_set_pre_err(struct eng_op *op, int rc, const char *text)
{
    op->pre_err = rc;
    op->msg = strdup(text);
    if (!op->msg) {
        eng_op_free(op);
        return -ENOMEM;
    }
    return 0;
}

static int eng_usable(const cocoon_engine *e)
{
    if (!e)
        return -EINVAL;
    if (e->dying || e->free_requested || e->draining)
        return -ECANCELED;
    return 0;
}

static int op_finish_submit(cocoon_engine *e, struct eng_op *op, int vrc,
                            cocoon_done_fn *cb, cocoon_list_fn *lcb, void *priv)
{
    op->done = cb;
    op->list = lcb;
    op->priv = priv;
    if (vrc && op_set_pre_err(op, vrc, e->err))
        return -ENOMEM;
    op_submit(e, op);
    return 0;
}

int cocoon_fs_attach(cocoon_engine *e, const char *vm, const cocoon_fs_spec *spec,
                     cocoon_done_fn *cb, void *priv)
{
    cocoon_fs_spec in;
    spec_fs s;
    struct eng_op *op;
    const char *out[3];
    char idbuf[128], *fs_id = NULL;
    int rc = eng_usable(e), vrc;

    if (rc)
        return rc;
    if (!vm || !spec || !cb)
        return -EINVAL;
    if ((rc = eng_read_struct(&in, spec)))
        return rc;
    s = (spec_fs){ in.socket, in.tag, in.num_queues, in.queue_size };
    vrc = spec_fs_normalize(&s, e->err, sizeof(e->err));
    if (!vrc) {
        size_t tl = strlen(s.tag), n = sizeof("cocoon-fs-") - 1 + tl + 1;

        /* op_new copies it: the stack serves a tag of common length. */
        fs_id = n <= sizeof(idbuf) ? idbuf : malloc(n);
        if (!fs_id)
            return -ENOMEM;
        memcpy(fs_id, "cocoon-fs-", sizeof("cocoon-fs-") - 1);
        memcpy(fs_id + sizeof("cocoon-fs-") - 1, s.tag, tl + 1);
    }
    {
        const char *strs[3] = { vrc ? NULL : s.socket, vrc ? NULL : s.tag, fs_id };

        op = op_new(e, OP_FS_ATTACH, vm, strs, 3, out);
    }
    if (fs_id != idbuf)
        free(fs_id);
    if (!op)
        return -ENOMEM;
    op->socket = out[0];
    op->tag = out[1];
    op->fs_id = out[2];
    op->num_queues = s.num_queues;
    op->queue_size = s.queue_size;
    op->socket_check = (in.socket_check ? in.socket_check : e->socket_check) >= 0;
    return op_finish_submit(e, op, vrc, cb, NULL, priv);
}

/* fs detach by tag, device detach by id: arg is required ("tag is
 * required" / "id is required", reported through the callback). */
static int detach_submit(cocoon_engine *e, enum op_kind kind, const char *vm, const char *arg,
                         unsigned wait_ms, cocoon_done_fn *cb, void *priv)
{
    struct eng_op *op;
    const char *out[1];
    int rc = eng_usable(e), vrc = 0;

    if (rc)
        return rc;
    if (!vm || !cb)
        return -EINVAL;
    if (!arg || !*arg)
        vrc = base_errf(e->err, sizeof(e->err), -EINVAL, "%s is required",
                       kind == OP_FS_DETACH ? "tag" : "id");
    op = op_new(e, kind, vm, (const char *const[]){ vrc ? NULL : arg }, 1, out);
    if (!op)
        return -ENOMEM;
    if (kind == OP_FS_DETACH)
        op->tag = out[0];
    else
        op->dev_id = out[0];
    op->wait_ms = wait_ms;
    return op_finish_submit(e, op, vrc, cb, NULL, priv);
}

int cocoon_fs_detach(cocoon_engine *e, const char *vm, const char *tag,
                     cocoon_done_fn *cb, void *priv)
{
    return detach_submit(e, OP_FS_DETACH, vm, tag, e ? e->detach_wait_ms : 0, cb, priv);
}

int cocoon_fs_detach_wait(cocoon_engine *e, const char *vm, const char *tag, unsigned wait_ms,
                          cocoon_done_fn *cb, void *priv)
{
    return detach_submit(e, OP_FS_DETACH, vm, tag, wait_ms, cb, priv);
}

int cocoon_device_attach(cocoon_engine *e, const char *vm, const cocoon_vfio_spec *spec,
                         cocoon_done_fn *cb, void *priv)
{
    char path[SPEC_PCI_PATH_MAX] = "";
    cocoon_vfio_spec in;
    struct eng_op *op;
    const char *out[2];
    int rc = eng_usable(e), vrc;

    if (rc)
        return rc;
    if (!vm || !spec || !cb)
        return -EINVAL;
    if ((rc = eng_read_struct(&in, spec)))
        return rc;
    vrc = spec_vfio_normalize(&(spec_vfio){ in.pci, in.id }, path, e->err, sizeof(e->err));
    {
        const char *strs[2] = { vrc ? NULL : path, vrc || !in.id || !*in.id ? NULL : in.id };

        op = op_new(e, OP_DEV_ATTACH, vm, strs, 2, out);
    }
    if (!op)
        return -ENOMEM;
    op->path = out[0];
    op->dev_id = out[1];
    return op_finish_submit(e, op, vrc, cb, NULL, priv);
}

int cocoon_device_detach(cocoon_engine *e, const char *vm, const char *id,
                         cocoon_done_fn *cb, void *priv)
{
    return detach_submit(e, OP_DEV_DETACH, vm, id, e ? e->detach_wait_ms : 0, cb, priv);
}

int cocoon_device_detach_wait(cocoon_engine *e, const char *vm, const char *id,
                              unsigned wait_ms, cocoon_done_fn *cb, void *priv)
{
    return detach_submit(e, OP_DEV_DETACH, vm, id, wait_ms, cb, priv);
}

static int list_submit(cocoon_engine *e, enum op_kind kind, const char *vm,
                       cocoon_list_fn *cb, void *priv)
{
    struct eng_op *op;
    int rc = eng_usable(e);

    if (rc)
        return rc;
    if (!vm || !cb)
        return -EINVAL;
    op = op_new(e, kind, vm, NULL, 0, NULL);
    if (!op)
        return -ENOMEM;
    return op_finish_submit(e, op, 0, NULL, cb, priv);
}

int cocoon_list(cocoon_engine *e, const char *vm, cocoon_list_fn *cb, void *priv)
{
    return list_submit(e, OP_LIST, vm, cb, priv);
}

int cocoon_fs_list(cocoon_engine *e, const char *vm, cocoon_list_fn *cb, void *priv)
{
    return list_submit(e, OP_FS_LIST, vm, cb, priv);
}

int cocoon_device_list(cocoon_engine *e, const char *vm, cocoon_list_fn *cb, void *priv)
{
    return list_submit(e, OP_DEV_LIST, vm, cb, priv);
}

/* Snapshot and restore need o->dir, absolute. */
static int vm_lc_submit(cocoon_engine *e, enum op_kind kind, const char *vm,
                        const cocoon_vm_opts *o, cocoon_done_fn *cb, void *priv)
{
    cocoon_vm_opts in;
    struct eng_op *op;
    const char *out[2];
    int rc = eng_read_struct(&in, o);

    if (rc)
        return rc;
    if ((kind == OP_VM_SNAPSHOT || kind == OP_VM_RESTORE) && (!in.dir || in.dir[0] != '/'))
        return -EINVAL;
    if ((rc = eng_usable(e)))
        return rc;
    if (!vm || !cb)
        return -EINVAL;
    op = op_new(e, kind, vm, (const char *const[]){ in.binary, in.dir }, 2, out);
    if (!op)
        return -ENOMEM;
    op->path = out[1];
    in.binary = out[0];
    in.dir = NULL;
    if (!(op->lc = eng_lc_new(&in))) {
        eng_op_free(op);
        return -ENOMEM;
    }
    return op_finish_submit(e, op, 0, cb, NULL, priv);
}

int cocoon_vm_start(cocoon_engine *e, const char *vm, const cocoon_vm_opts *o,
                    cocoon_done_fn *cb, void *priv)
{
    return vm_lc_submit(e, OP_VM_START, vm, o, cb, priv);
}

int cocoon_vm_stop(cocoon_engine *e, const char *vm, const cocoon_vm_opts *o,
                   cocoon_done_fn *cb, void *priv)
{
    return vm_lc_submit(e, OP_VM_STOP, vm, o, cb, priv);
}

int cocoon_vm_pause(cocoon_engine *e, const char *vm, const cocoon_vm_opts *o,
                    cocoon_done_fn *cb, void *priv)
{
    return vm_lc_submit(e, OP_VM_PAUSE, vm, o, cb, priv);
}

int cocoon_vm_resume(cocoon_engine *e, const char *vm, const cocoon_vm_opts *o,
                     cocoon_done_fn *cb, void *priv)
{
    return vm_lc_submit(e, OP_VM_RESUME, vm, o, cb, priv);
}

int cocoon_vm_snapshot(cocoon_engine *e, const char *vm, const cocoon_vm_opts *o,
                       cocoon_done_fn *cb, void *priv)
{
    return vm_lc_submit(e, OP_VM_SNAPSHOT, vm, o, cb, priv);
}

int cocoon_vm_restore(cocoon_engine *e, const char *vm, const cocoon_vm_opts *o,
                      cocoon_done_fn *cb, void *priv)
{
    return vm_lc_submit(e, OP_VM_RESTORE, vm, o, cb, priv);
}

/* Descriptors an operation may need besides its VM's connection, for a
 * moment: the listener check's probe, the store and lock files, a pidfile,
 * /proc/<pid>/cmdline. */
#define ENG_FD_RESERVE 16

/* How many VMs can hold a connection at once with the descriptors this
 * process has left: every VM in flight or idle keeps one.  Beyond that a
 * batch would fail most of its operations with EMFILE, so the engine
 * queues them instead.  0 when it cannot tell. */
static unsigned eng_fd_budget(void)
{
    struct rlimit rl;
    unsigned open_fds = 0;
    DIR *d;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
        !(d = opendir("/proc/self/fd")))
        return 0;
    while (readdir(d))
        open_fds++;
    closedir(d);
    if (rl.rlim_cur <= (rlim_t)open_fds + ENG_FD_RESERVE + 1)
        return 1;
    return rl.rlim_cur - open_fds - ENG_FD_RESERVE > 0x7fffffff
               ? 0x7fffffffu : (unsigned)(rl.rlim_cur - open_fds - ENG_FD_RESERVE);
}

const char *cocoon_version(void)
{
    return COCOON_VERSION_STRING;
}

/* The loop's deadline or busy state changed: tell the host's adapter. */
static void engine_notify(void *data)
{
    cocoon_engine *e = data;

    if (!e->dying)
        e->hooks.update(e->hooks.data, lp_timeout_ms(e->loop), lp_busy(e->loop));
}

cocoon_engine *cocoon_engine_new_hooks(const cocoon_loop_hooks *h, const cocoon_options *opt)
{
    cocoon_options o;
    cocoon_engine *e;
    int rc = eng_read_struct(&o, opt);

    if (!rc && h && h->size < offsetof(cocoon_loop_hooks, release) + sizeof(h->release))
        rc = -EINVAL;
    if (rc) {
        errno = -rc;
        return NULL;
    }
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->loop = lp_new();
    e->root = store_root_canon(o.root_dir);
    e->ch_binary = strdup(o.ch_binary && *o.ch_binary ? o.ch_binary : "cloud-hypervisor");
    if (!e->loop || !e->root || !e->ch_binary) {
        lp_free(e->loop);
        free(e->root);
        free(e->ch_binary);
        free(e);
        errno = ENOMEM;
        return NULL;
    }
    if (h)
        e->hooks = *h;
    /* Without an update hook the loop's wake fd tells the host. */
    if (e->hooks.update)
        lp_set_notify(e->loop, engine_notify, e);
    e->timeout_ms = o.timeout_ms ? o.timeout_ms : ENG_DEFAULT_TIMEOUT_MS;
    e->max_inflight = o.max_inflight_vms ? o.max_inflight_vms : ENG_DEFAULT_INFLIGHT;
    {
        unsigned budget = eng_fd_budget();

        if (budget && budget < e->max_inflight)
            e->max_inflight = budget;
    }
    e->detach_wait_ms = o.detach_wait_ms;
    e->socket_check = o.socket_check;
    STAILQ_INIT(&e->start);
    STAILQ_INIT(&e->ready);
    STAILQ_INIT(&e->waiting);
    TAILQ_INIT(&e->idle);
    lp_timer_init(&e->kick, eng_kick_cb, 0., 0.);
    e->kick.data = e;
    e->probe = -1;
    return e;
}

int cocoon_engine_fd(const cocoon_engine *e)
{
    return e ? lp_fd(e->loop) : -EINVAL;
}

int cocoon_engine_timeout_ms(const cocoon_engine *e)
{
    return e && !e->dying ? lp_timeout_ms(e->loop) : -1;
}

bool cocoon_engine_busy(const cocoon_engine *e)
{
    return e && !e->dying && lp_busy(e->loop);
}

int cocoon_engine_process(cocoon_engine *e)
{
    int rc;

    if (!e || e->dying)
        return -EINVAL;
    if (e->free_requested)
        return 0;
    eng_enter(e);
    rc = lp_process(e->loop);
    /* A free requested by a callback in there happens in eng_leave. */
    eng_leave(e);
    return rc;
}

/* An op whose state-changing request was written may have been executed:
 * "canceled" would read as "nothing happened", so it says it does not
 * know. */
static void op_cancel(struct eng_op *op)
{
    char m[160];

    if (!op->sent) {
        eng_op_complete(op, -ECANCELED, "operation canceled: engine freed");
        return;
    }
    snprintf(m, sizeof(m), "%s: outcome unknown: the request was already sent when the "
             "engine was freed", eng_op_names[op->kind]);
    eng_op_complete(op, -EINPROGRESS, m);
}

static void op_cancel_unstarted(struct eng_op *op)
{
    char m[160];

    snprintf(m, sizeof(m), "%s: canceled before it started", eng_op_names[op->kind]);
    eng_op_complete(op, -ECANCELED, m);
}

void cocoon_engine_drain(cocoon_engine *e)
{
    struct eng_op *op;

    if (!e || e->dying || e->draining)
        return;
    e->draining = true;
    eng_enter(e);
    while (!e->free_requested && (op = STAILQ_FIRST(&e->start))) {
        STAILQ_REMOVE_HEAD(&e->start, link);
        op_cancel_unstarted(op);
    }
    /* Callbacks cannot submit from here on, and a free they ask for waits
     * for eng_leave, so the table stays as it is while it is walked. */
    for (size_t i = 0; i < e->nbuckets && !e->free_requested; i++) {
        for (struct eng_vm *vm = e->buckets[i]; vm; vm = vm->hnext) {
            struct eng_op *head = vm->cur;

            while (!e->free_requested &&
                   (op = head ? STAILQ_NEXT(head, link) : STAILQ_FIRST(&vm->queue))) {
                STAILQ_REMOVE(&vm->queue, op, eng_op, link);
                op_cancel_unstarted(op);
            }
        }
    }
    eng_leave(e);
}

static void engine_destroy(cocoon_engine *e)
{
    struct eng_op *op;

    e->dying = true;
    lp_timer_stop(e->loop, &e->kick);
    eng_unix_fini(e);
    /* Connections first: their pending requests complete with -ECANCELED
     * into on_http, which ignores them while dying. */
    for (size_t i = 0; i < e->nbuckets; i++) {
        for (struct eng_vm *vm = e->buckets[i]; vm; vm = vm->hnext) {
            httpc_conn_free(vm->conn);
            vm->conn = NULL;
            STAILQ_FOREACH(op, &vm->queue, link)
                lp_timer_stop(e->loop, &op->timer);
        }
    }
    while ((op = STAILQ_FIRST(&e->start))) {
        STAILQ_REMOVE_HEAD(&e->start, link);
        op_cancel(op);
    }
    /* Waiting VMs in FIFO order first would be nicer, but every op gets
     * exactly one -ECANCELED either way. */
    for (size_t i = 0; i < e->nbuckets; i++) {
        struct eng_vm *vm;

        while ((vm = e->buckets[i])) {
            e->buckets[i] = vm->hnext;
            while ((op = STAILQ_FIRST(&vm->queue))) {
                STAILQ_REMOVE_HEAD(&vm->queue, link);
                op_cancel(op);
            }
            eng_vm_free(vm);
        }
    }
    free(e->buckets);
    eng_resolve_fini(e);
    free(e->root);
    free(e->ch_binary);
    if (e->hooks.release)
        e->hooks.release(e->hooks.data);
    lp_free(e->loop);
    free(e);
}

void cocoon_engine_free(cocoon_engine *e)
{
    if (!e || e->dying)
        return;
    if (e->depth > 0) {
        /* Inside one of our callbacks: the rest of this lp_process batch
         * is not run, and the engine goes at the outermost eng_leave. */
        e->free_requested = true;
        lp_break(e->loop);
        return;
    }
    e->free_requested = true;
    engine_destroy(e);
}
