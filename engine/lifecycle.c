/* engine/lifecycle.c: vm start and vm stop as engine operations.  They sit
 * in their VM's queue like attaches and talk over the VM's connection, so
 * one engine starts or stops many VMs at once while each VM's operations
 * keep their order.  backends/launch builds what is sent and spawned; this
 * file decides the order of the steps and what their answers mean.
 *
 * A start or stop is a list of phases; the API calls of a phase are a
 * sequence of endpoint calls (lc_seq) run one after another, each under its
 * endpoint's retry rule.  Pause, resume, snapshot and restore live in
 * engine/lifecycle_state.c; this file routes their replies. */
#include "engine/core.h"
#include "engine/call.h"
#include "backends/gate.h"
#include "backends/launch.h"
#include "backends/safefile.h"
#include "json/ch.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/lifecycle.h"


void eng_lc_free(struct eng_lc *lc)
{
    if (!lc)
        return;
    for (size_t i = 0; i < lc->n_seq; i++) {
        free(lc->seq[i].id);
        free(lc->seq[i].body);
    }
    free(lc->seq);
    free(lc->abs);
    free(lc->sock);
    free(lc->pidfile);
    free(lc->log_path);
    free(lc);
}

const char *eng_lc_binary(const struct eng_op *op)
{
    return op->lc->o.binary ? op->lc->o.binary : op->vm->ops->default_binary;
}

bool eng_lc_is_fc(const struct eng_op *op)
{
    return strcmp(op->vm->rec->backend, STORE_BACKEND_FC) == 0;
}

static void lc_arm(struct eng_op *op, void (*cb)(lp_loop *, lp_timer *, int), double s)
{
    lp_timer_stop(op->e->loop, &op->timer);
    lp_set_cb(&op->timer, cb);
    lp_timer_set(&op->timer, s > 0 ? s : 0., 0.);
    lp_timer_start(op->e->loop, &op->timer);
}

int eng_lc_send(struct eng_op *op, backend_ep ep, const char *id, const char *body,
                   unsigned timeout_ms)
{
    op->step = ST_LIFECYCLE;
    return eng_vm_send(op->vm, ep, id, body, body ? strlen(body) : 0, timeout_ms);
}

/* ------------------------------------------------------------- start */

/* A failed start leaves no VMM behind and says why, with the VMM's own
 * last words from its log; the record keeps state error. */
void eng_lc_start_fail(struct eng_op *op, int rc, const char *why)
{
    struct eng_lc *lc = op->lc;
    store_vm *rec = op->vm->rec;
    cocoon_engine *e = op->e;
    char tail[LC_LOG_TAIL + 1] = "", ignored[BASE_ERRSTR_MAX];
    char *reason = strdup(why);

    if (lc->pid > 0) {
        kill(lc->pid, SIGKILL);
        waitpid(lc->pid, NULL, 0);
        lc->pid = 0;
    }
    if (lc->pidfile)
        unlink(lc->pidfile);
    if (lc->log_path)
        launch_log_tail(lc->log_path, tail, sizeof(tail));
    if (tail[0])
        base_errf(e->err, sizeof(e->err), rc, "start vm %s: %s (VMM log: %s)", rec->id,
                 reason ? reason : "out of memory", tail);
    else
        base_errf(e->err, sizeof(e->err), rc, "start vm %s: %s", rec->id,
                 reason ? reason : "out of memory");
    free(reason);
    rec->state = STORE_ERROR;
    launch_record_save(e->root, rec, ignored, sizeof(ignored));
    eng_op_finish(op, rc, e->err);
}

static void lc_start_done(struct eng_op *op)
{
    store_vm *rec = op->vm->rec;
    cocoon_engine *e = op->e;
    char why[BASE_ERRSTR_MAX];
    int rc;

    rec->state = STORE_RUNNING;
    rc = launch_record_save(e->root, rec, why, sizeof(why));
    if (rc < 0) {
        eng_lc_start_fail(op, rc, why);
        return;
    }
    op->pid = op->lc->pid;
    eng_op_finish(op, 0, op->lc->note);
}

/* A VMM that died is noticed at the next poll, not at the deadline. */
static bool lc_child_exited(struct eng_op *op)
{
    char why[64];
    int st;

    if (waitpid(op->lc->pid, &st, WNOHANG) != op->lc->pid)
        return false;
    op->lc->pid = 0;
    if (WIFEXITED(st))
        snprintf(why, sizeof(why), "VMM exited with status %d", WEXITSTATUS(st));
    else
        snprintf(why, sizeof(why), "VMM killed by signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    eng_lc_start_fail(op, -ECHILD, why);
    return true;
}

static void lc_ping(struct eng_op *op);

static void lc_ping_cb(lp_loop *loop, lp_timer *w, int revents)
{
    struct eng_op *op = w->data;
    cocoon_engine *e = op->e;

    (void)loop;
    (void)revents;
    eng_enter(e);
    lc_ping(op);
    eng_leave(e);
}

/* The start-up poll runs under its own deadline instead of the ping's
 * retry rule: each probe is one attempt in a short window. */
static void lc_ping(struct eng_op *op)
{
    struct eng_lc *lc = op->lc;
    double left = lc->deadline - eng_mono_s();
    unsigned ms = left * 1000 < LC_PING_WINDOW_MS ? (unsigned)(left > 0 ? left * 1000 : 0) + 1
                                                  : LC_PING_WINDOW_MS;
    int rc;

    if (lc_child_exited(op))
        return;
    lc->phase = LC_PING;
    rc = eng_lc_send(op, BACKEND_EP_PING, NULL, NULL, ms);
    if (rc)
        eng_lc_start_fail(op, rc, op->e->err);
}


static void lc_after_ping(struct eng_op *op, const httpc_response *r)
{
    struct eng_lc *lc = op->lc;
    int rc;

    if (!r->err && backend_endpoint_ok(backend_endpoint_of(op->vm->ops, BACKEND_EP_PING),
                                       r->status)) {
        if (op->kind == OP_VM_RESTORE) {
            eng_lc_restore(op);
            return;
        }
        lc->phase = LC_INFO;
        rc = eng_lc_send(op, BACKEND_EP_INFO, NULL, NULL, 0);
        if (rc)
            eng_lc_start_fail(op, rc, op->e->err);
        return;
    }
    if (r->err)
        base_errf(lc->last, sizeof(lc->last), 0, "%s", r->errstr);
    else
        base_errf(lc->last, sizeof(lc->last), 0, "status %d", r->status);
    if (eng_mono_s() + LC_POLL_S >= lc->deadline) {
        char why[BASE_ERRSTR_MAX + 128];

        snprintf(why, sizeof(why), "vmm.ping %s: no answer within %u ms: %s", lc->sock,
                 (unsigned)(LC_API_DEADLINE_S * 1000), lc->last);
        eng_lc_start_fail(op, -ETIMEDOUT, why);
        return;
    }
    lc_arm(op, lc_ping_cb, LC_POLL_S);
}

/* Once its API is up, CH must report a booted VM: it creates and boots one
 * only when given a payload, and a VMM without one would be recorded as
 * running with nothing to attach to. */
static void lc_after_info(struct eng_op *op, const httpc_response *r)
{
    const backend_endpoint *row = backend_endpoint_of(op->vm->ops, BACKEND_EP_INFO);
    json_vm_info vi;
    char tmp[BASE_ERRSTR_MAX];
    int rc;

    if (r->err) {
        eng_lc_start_fail(op, r->err, r->errstr);
        return;
    }
    if (eng_info_no_vm(r)) {
        eng_lc_start_fail(op, -EHOSTDOWN,
                      op->vm->rec->config.kernel
                          ? "the VMM is up but has no VM (vm.info: VM is not created)"
                          : "the VMM is up but has no VM: Cloud Hypervisor boots one only "
                            "when given a payload; create the VM with --kernel");
        return;
    }
    if (!backend_endpoint_ok(row, r->status)) {
        eng_status_errf(tmp, sizeof(tmp), "", row->method, row->path, r->status, r->body,
                        r->body_len);
        eng_lc_start_fail(op, -EREMOTEIO, tmp);
        return;
    }
    memset(&vi, 0, sizeof(vi));
    rc = json_vm_info_decode(r->body, r->body_len, &vi, tmp, sizeof(tmp));
    if (!rc && op->lc->want_paused && strcmp(vi.state, "Paused") != 0)
        rc = base_errf(tmp, sizeof(tmp), -EHOSTDOWN,
                      "vm.info reports state %s, expected Paused after the restore",
                      vi.state);
    else if (!rc && !op->lc->want_paused && strcmp(vi.state, "Running") != 0)
        rc = base_errf(tmp, sizeof(tmp), -EHOSTDOWN,
                      "vm.info reports state %s, expected Running: the VM did not boot",
                      vi.state);
    json_vm_info_fini(&vi);
    if (rc) {
        eng_lc_start_fail(op, rc, tmp);
        return;
    }
    lc_start_done(op);
}

/* ------------------------------------------------------- call sequences */


static void lc_seq_retry_cb(lp_loop *loop, lp_timer *w, int revents)
{
    struct eng_op *op = w->data;
    cocoon_engine *e = op->e;

    (void)loop;
    (void)revents;
    eng_enter(e);
    eng_lc_seq_next(op);
    eng_leave(e);
}

void eng_lc_seq_next(struct eng_op *op)
{
    struct eng_lc *lc = op->lc;
    const struct lc_call *c;
    int rc;

    if (lc->i_seq == lc->n_seq) {
        lc->seq_done(op);
        return;
    }
    c = &lc->seq[lc->i_seq];
    lc->phase = LC_SEQ;
    lc->attempts++;
    rc = eng_lc_send(op, c->ep, c->id, c->body, 0);
    if (rc)
        eng_lc_start_fail(op, rc, op->e->err);
}

/* A repeatable call is tried again after a connection error, 5xx or 429;
 * a single-shot one fails at once. */
static void lc_after_seq(struct eng_op *op, const httpc_response *r)
{
    struct eng_lc *lc = op->lc;
    const struct lc_call *c = &lc->seq[lc->i_seq];
    const backend_endpoint *row = backend_endpoint_of(op->vm->ops, c->ep);
    bool ok = !r->err && backend_endpoint_ok(row, r->status);
    char tmp[BASE_ERRSTR_MAX], path[512];

    if (eng_retry_again(row->retry, lc->attempts, r->err, r->status, ok)) {
        lc_arm(op, lc_seq_retry_cb, eng_backoff_ms(lc->attempts) / 1000.0);
        return;
    }
    if (r->err) {
        eng_lc_start_fail(op, r->err, r->errstr);
        return;
    }
    if (!ok) {
        snprintf(path, sizeof(path), "%s%s", row->path, c->id ? c->id : "");
        eng_status_errf(tmp, sizeof(tmp), "", row->method, path, r->status, r->body,
                        r->body_len);
        eng_lc_start_fail(op, -EREMOTEIO, tmp);
        return;
    }
    lc->i_seq++;
    lc->attempts = 0;
    eng_lc_seq_next(op);
}

int eng_lc_seq_add(struct eng_lc *lc, backend_ep ep, const char *id, char *body)
{
    struct lc_call *n = realloc(lc->seq, (lc->n_seq + 1) * sizeof(*n));

    if (!n) {
        free(body);
        return -ENOMEM;
    }
    lc->seq = n;
    n[lc->n_seq] = (struct lc_call){ ep, id ? strdup(id) : NULL, body };
    lc->n_seq++;
    if (!body || (id && !n[lc->n_seq - 1].id))
        return -ENOMEM;
    return 0;
}

/* Firecracker is configured before it boots: machine, kernel, drives (the
 * first is the root device), then InstanceStart. */
static int lc_fc_boot_seq(struct eng_lc *lc, const store_vm *vm)
{
    int rc = eng_lc_seq_add(lc, BACKEND_EP_MACHINE_CONFIG, NULL, launch_fc_machine_config(vm));

    if (!rc && vm->config.kernel)
        rc = eng_lc_seq_add(lc, BACKEND_EP_BOOT_SOURCE, NULL, launch_fc_boot_source(vm));
    for (size_t i = 0; !rc && i < vm->config.n_disks; i++) {
        char id[32];

        launch_fc_drive_id(i, id, sizeof(id));
        rc = eng_lc_seq_add(lc, BACKEND_EP_DRIVE, id, launch_fc_drive(id, vm->config.disks[i], i == 0));
    }
    if (!rc)
        rc = eng_lc_seq_add(lc, BACKEND_EP_ACTIONS, NULL,
                        strdup("{\"action_type\":\"InstanceStart\"}"));
    return rc;
}

/* Firecracker's API has no ping: wait until its socket accepts. */
static void lc_connect_cb(lp_loop *loop, lp_timer *w, int revents)
{
    struct eng_op *op = w->data;
    struct eng_lc *lc = op->lc;
    cocoon_engine *e = op->e;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char why[BASE_ERRSTR_MAX];
    int fd, rc = -1;

    (void)loop;
    (void)revents;
    eng_enter(e);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", lc->sock);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
        close(fd);
    }
    if (rc == 0 && op->kind == OP_VM_RESTORE) {
        eng_lc_restore(op);
    } else if (rc == 0) {
        lc->seq_done = lc_start_done;
        eng_lc_seq_next(op);
    } else if (waitpid(lc->pid, NULL, WNOHANG) == lc->pid) {
        lc->pid = 0;
        snprintf(why, sizeof(why), "VMM exited before serving %s", lc->sock);
        eng_lc_start_fail(op, -ECHILD, why);
    } else if (eng_mono_s() >= lc->deadline) {
        snprintf(why, sizeof(why), "%s did not come up within %u ms", lc->sock,
                 (unsigned)(LC_API_DEADLINE_S * 1000));
        eng_lc_start_fail(op, -ETIMEDOUT, why);
    } else {
        lc_arm(op, lc_connect_cb, LC_POLL_S);
    }
    eng_leave(e);
}

static int lc_make_dir(const char *path, char *err, size_t errlen)
{
    int rc = safefile_mkdir_private(path, err, errlen);

    return rc == -EEXIST ? 0 : rc;
}

/* Everything up to a running child with its pidfile; -errno with why. */
static int lc_spawn(struct eng_op *op, char *why, size_t n)
{
    struct eng_lc *lc = op->lc;
    store_vm *vm = op->vm->rec;
    bool fc = eng_lc_is_fc(op);
    const char *binary = eng_lc_binary(op);
    char **argv = NULL;
    int rc;

    if (!lc->abs)
        lc->abs = launch_which(binary);
    if (!lc->abs)
        return base_errf(why, n, -ENOENT, "VMM binary %s: %s", binary, strerror(errno));
    rc = lc_make_dir(vm->run_dir, why, n);
    if (rc == 0 && vm->log_dir && strcmp(vm->log_dir, vm->run_dir) != 0)
        rc = lc_make_dir(vm->log_dir, why, n);
    if (rc < 0)
        return rc;
    lc->sock = gate_api_sock(vm);
    lc->pidfile = gate_pidfile(vm);
    if (asprintf(&lc->log_path, "%s/%s.log", vm->log_dir ? vm->log_dir : vm->run_dir,
                 fc ? "fc" : "ch") < 0)
        lc->log_path = NULL;
    if (!lc->sock || !lc->pidfile || !lc->log_path)
        return base_errf(why, n, -ENOMEM, "out of memory");
    /* A stale socket file from an earlier run would make a client connect
     * to nothing (or to the wrong VMM): start from a clean slate. */
    unlink(lc->sock);
    rc = fc                             ? launch_fc_argv(vm, lc->abs, &argv, why, n)
         : op->kind == OP_VM_RESTORE ? launch_ch_restore_argv(vm, lc->abs, &argv, why, n)
                                     : launch_ch_argv(vm, lc->abs, &argv, why, n);
    if (!rc)
        rc = launch_spawn(argv, lc->log_path, &lc->pid, why, n);
    launch_argv_free(argv);
    if (!rc)
        rc = safefile_pidfile_write(lc->pidfile, lc->pid, why, n);
    if (rc)
        return rc;
    free(vm->binary);
    vm->binary = strdup(lc->abs);
    free(vm->started_at);
    vm->started_at = store_now();
    return 0;
}

/* A VM never gets a second VMM: one of its VMMs alive already (found by
 * its pidfile, its API socket's listener or its command line) is adopted
 * when the record says running (the pidfile rewritten to name it) and
 * refused, naming its pid, otherwise; so is a socket held by anything
 * else.  True when op is finished. */
static bool lc_start_found(struct eng_op *op)
{
    struct eng_lc *lc = op->lc;
    store_vm *rec = op->vm->rec;
    cocoon_engine *e = op->e;
    const char *binary = eng_lc_binary(op);
    char why[BASE_ERRSTR_MAX], *pidfile;
    pid_t pid = 0;
    int rc;

    lc->abs = launch_which(binary);
    rc = gate_find(rec, lc->abs ? lc->abs : binary, &pid, why, sizeof(why));
    if (rc == -ESRCH)
        return false;
    if (rc == 0 && rec->state == STORE_RUNNING && op->kind == OP_VM_START) {
        pidfile = gate_pidfile(rec);
        rc = pidfile ? safefile_pidfile_write(pidfile, pid, why, sizeof(why))
                     : base_errf(why, sizeof(why), -ENOMEM, "out of memory");
        free(pidfile);
        if (rc == 0) {
            op->pid = pid;
            eng_op_finish(op, 0, "");
            return true;
        }
    } else if (rc == 0) {
        rc = base_errf(why, sizeof(why), -EBUSY,
                       "its VMM (pid %ld) is already running and the record says %s: "
                       "stop it first",
                       (long)pid, store_state_name(rec->state));
    }
    base_errf(e->err, sizeof(e->err), rc, "start vm %s: %s", rec->id, why);
    eng_op_finish(op, rc, e->err);
    return true;
}

static void lc_start(struct eng_op *op)
{
    struct eng_lc *lc = op->lc;
    char why[BASE_ERRSTR_MAX] = "";
    int rc;

    if (!op->vm->rec->run_dir) {
        base_errf(op->e->err, sizeof(op->e->err), 0, "vm %s has no run dir", op->vm->rec->id);
        eng_op_finish(op, -EINVAL, op->e->err);
        return;
    }
    if (lc_start_found(op))
        return;
    rc = lc_spawn(op, why, sizeof(why));
    if (rc) {
        eng_lc_start_fail(op, rc, why);
        return;
    }
    lc->deadline = eng_mono_s() + LC_API_DEADLINE_S;
    if (eng_lc_is_fc(op)) {
        /* A snapshot load is accepted only by a Firecracker that was
         * given no boot configuration. */
        rc = op->kind == OP_VM_RESTORE ? 0 : lc_fc_boot_seq(lc, op->vm->rec);
        if (rc) {
            eng_lc_start_fail(op, rc, "out of memory");
            return;
        }
        lc->phase = LC_CONNECT;
        lc_arm(op, lc_connect_cb, 0);
        return;
    }
    lc_ping(op);
}

/* -------------------------------------------------------------- stop */

static void lc_stop_done(struct eng_op *op)
{
    struct eng_lc *lc = op->lc;
    store_vm *rec = op->vm->rec;
    cocoon_engine *e = op->e;
    char why[BASE_ERRSTR_MAX];
    int rc;

    /* A VMM this process started is its child: reap it if it exited. */
    if (lc->pid > 0)
        waitpid(lc->pid, NULL, WNOHANG);
    unlink(lc->pidfile);
    unlink(lc->sock);
    rec->state = STORE_STOPPED;
    rc = launch_record_save(e->root, rec, why, sizeof(why));
    if (rc < 0) {
        base_errf(e->err, sizeof(e->err), rc, "stop vm %s: %s", rec->id, why);
        eng_op_finish(op, rc, e->err);
        return;
    }
    eng_op_finish(op, 0, "");
}

/* Waits for the process to end within each bound: the graceful exit,
 * then after SIGTERM, then after SIGKILL. */
static void lc_gone_cb(lp_loop *loop, lp_timer *w, int revents)
{
    struct eng_op *op = w->data;
    struct eng_lc *lc = op->lc;
    cocoon_engine *e = op->e;
    const cocoon_vm_opts *o = &op->lc->o;

    (void)loop;
    (void)revents;
    eng_enter(e);
    if (launch_proc_gone(lc->pid, lc->gate_binary, lc->sock)) {
        lc_stop_done(op);
    } else if (eng_mono_s() < lc->deadline) {
        double left = lc->deadline - eng_mono_s();

        lc_arm(op, lc_gone_cb, left < LC_POLL_S ? left : LC_POLL_S);
    } else if (lc->signals == 0) {
        kill(lc->pid, SIGTERM);
        lc->signals = SIGTERM;
        lc->deadline = eng_mono_s() + o->term_ms / 1000.0;
        lc_arm(op, lc_gone_cb, 0);
    } else if (lc->signals == SIGTERM) {
        kill(lc->pid, SIGKILL);
        lc->signals = SIGKILL;
        lc->deadline = eng_mono_s() + o->kill_ms / 1000.0;
        lc_arm(op, lc_gone_cb, 0);
    } else {
        base_errf(e->err, sizeof(e->err), 0, "stop vm %s: pid %d survived SIGKILL",
                 op->vm->rec->id, (int)lc->pid);
        eng_op_finish(op, -ETIMEDOUT, e->err);
    }
    eng_leave(e);
}

static void lc_wait_gone(struct eng_op *op)
{
    struct eng_lc *lc = op->lc;

    lc->phase = LC_GONE;
    lc->deadline = lc->t0 + lc->o.graceful_ms / 1000.0;
    lc_arm(op, lc_gone_cb, 0);
}

/* Single-shot: a lost reply is answered by watching the process, never by
 * resending.  After a timeout the API thread is wedged, so a second call
 * would only wait again. */
static void lc_after_shutdown(struct eng_op *op, const httpc_response *r)
{
    struct eng_lc *lc = op->lc;

    if (lc->phase == LC_SHUTDOWN && !eng_lc_is_fc(op) && r->err != -ETIMEDOUT &&
        !launch_proc_gone(lc->pid, lc->gate_binary, lc->sock)) {
        lc->phase = LC_VMM_SHUTDOWN;
        if (eng_lc_send(op, BACKEND_EP_VMM_SHUTDOWN, NULL, NULL, lc->o.call_ms) == 0)
            return;
    }
    lc_wait_gone(op);
}

static void lc_stop(struct eng_op *op)
{
    struct eng_lc *lc = op->lc;
    cocoon_engine *e = op->e;
    cocoon_vm_opts *o = &op->lc->o;
    store_vm *rec = op->vm->rec;
    const char *dflt = eng_lc_binary(op);
    char why[BASE_ERRSTR_MAX];
    int rc;

    if (!o->call_ms) o->call_ms = 2000;
    if (!o->graceful_ms) o->graceful_ms = 5000;
    if (!o->term_ms) o->term_ms = 3000;
    if (!o->kill_ms) o->kill_ms = 2000;
    if (o->call_ms > o->graceful_ms)
        o->call_ms = o->graceful_ms;
    lc->sock = gate_api_sock(rec);
    lc->pidfile = gate_pidfile(rec);
    if (!lc->sock || !lc->pidfile) {
        base_errf(e->err, sizeof(e->err), 0, "stop vm %s: out of memory", rec->id);
        eng_op_finish(op, -ENOMEM, e->err);
        return;
    }
    lc->abs = rec->binary ? NULL : launch_which(dflt);
    lc->gate_binary = rec->binary ? rec->binary : lc->abs ? lc->abs : dflt;
    /* The VMM is found whatever the pidfile and the record's state say; a
     * process that fails the gate is not our VMM and is never signalled,
     * and one holding the VM's socket that is not its VMM means the stop
     * cannot be done. */
    rc = gate_find(rec, lc->gate_binary, &lc->pid, why, sizeof(why));
    if (rc == -ESRCH) {
        lc->pid = 0;
        lc_stop_done(op);
        return;
    }
    if (rc) {
        base_errf(e->err, sizeof(e->err), rc, "stop %s: not stopped", why);
        eng_op_finish(op, rc, e->err);
        return;
    }
    /* The shutdown requests go to the process this stop signals, only. */
    op->vm->peer = lc->pid;
    lc->t0 = eng_mono_s();
    if (o->force) {             /* the graceful window is already over */
        o->graceful_ms = 0;
        lc_wait_gone(op);
        return;
    }
    lc->phase = LC_SHUTDOWN;
    if (eng_lc_is_fc(op))
        rc = eng_lc_send(op, BACKEND_EP_ACTIONS, NULL, "{\"action_type\":\"SendCtrlAltDel\"}",
                     o->call_ms);
    else
        rc = eng_lc_send(op, BACKEND_EP_SHUTDOWN, NULL, NULL, o->call_ms);
    if (rc)
        lc_wait_gone(op);
}

/* ------------------------------------------------------------ dispatch */

struct eng_lc *eng_lc_new(const cocoon_vm_opts *o)
{
    struct eng_lc *lc = calloc(1, sizeof(*lc));

    if (lc)
        lc->o = *o;
    return lc;
}

void eng_lc_run(struct eng_op *op)
{
    if (op->kind == OP_VM_START || op->kind == OP_VM_RESTORE)
        lc_start(op);
    else if (op->kind == OP_VM_STOP)
        lc_stop(op);
    else if (op->kind == OP_VM_SNAPSHOT)
        eng_lc_snapshot(op);
    else
        eng_lc_state(op);
}

void eng_lc_on_http(struct eng_op *op, const httpc_response *r)
{
    struct eng_lc *lc = op->lc;

    switch (lc->phase) {
    case LC_PING:
        lc_after_ping(op, r);
        break;
    case LC_INFO:
        lc_after_info(op, r);
        break;
    case LC_SEQ:
        lc_after_seq(op, r);
        break;
    case LC_SHUTDOWN:
    case LC_VMM_SHUTDOWN:
        lc_after_shutdown(op, r);
        break;
    case LC_STATE:
        eng_lc_after_state(op, r);
        break;
    case LC_STATE_INFO:
        eng_lc_after_state_info(op, r);
        break;
    case LC_SNAP_INFO:
        eng_lc_after_snap_info(op, r);
        break;
    case LC_SNAP:
        eng_lc_after_snap(op, r);
        break;
    case LC_RESTORE:
        eng_lc_after_restore(op, r);
        break;
    case LC_RESTORE_INFO:
        eng_lc_after_restore_info(op, r);
        break;
    default:
        break;
    }
}
