/* engine/lifecycle.c: vm start and vm stop as engine operations.  They sit
 * in their VM's queue like attaches and talk over the VM's connection, so
 * one engine starts or stops many VMs at once while each VM's operations
 * keep their order.  backends/launch builds what is sent and spawned; this
 * file decides the order of the steps and what their answers mean.
 *
 * A start or stop is a list of phases; the API calls of a phase are a
 * sequence of endpoint calls (lc_seq) run one after another, each under its
 * endpoint's retry rule.  Pause and resume are one single-shot call each,
 * with a lost reply answered by vm.info; a snapshot is pause, snapshot,
 * resume. */
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

#define LC_API_DEADLINE_S 10.0
#define LC_POLL_S         0.020
#define LC_PING_WINDOW_MS 200u
#define LC_LOG_TAIL       512

enum lc_phase {
    LC_PING,            /* start, CH: until vmm.ping answers */
    LC_CONNECT,         /* start, FC: until the socket accepts */
    LC_INFO,            /* start, CH: the state after boot */
    LC_SEQ,             /* a sequence of endpoint calls */
    LC_SHUTDOWN,        /* stop: the VM shutdown request */
    LC_VMM_SHUTDOWN,    /* stop, CH: the VMM shutdown request */
    LC_GONE,            /* stop: waiting for the process to end */
    LC_STATE,           /* pause / resume: the request */
    LC_STATE_INFO,      /* pause / resume: vm.info after a lost reply */
    LC_SNAP_INFO,       /* snapshot: what is attached */
    LC_SNAP,            /* snapshot: vm.snapshot */
};

/* One endpoint call of a sequence; id and body owned. */
struct lc_call {
    backend_ep ep;
    char *id, *body;
};

struct eng_lc {
    enum lc_phase phase;
    pid_t pid;
    char *abs, *sock, *pidfile, *log_path;  /* owned */
    const char *gate_binary;                /* stop: borrowed from op or record */
    double deadline, t0;
    int signals;                            /* stop: 0, then SIGTERM, SIGKILL sent */
    struct lc_call *seq;
    size_t n_seq, i_seq;
    int attempts;                           /* of the current call */
    void (*seq_done)(struct eng_op *op);    /* after the last call */
    char last[BASE_ERRSTR_MAX];              /* the last ping failure */
    bool pausing;                           /* LC_STATE: pause, not resume */
    void (*state_next)(struct eng_op *op, int err);  /* after LC_STATE */
    int snap_err;                           /* the snapshot's outcome */
    char snap_msg[BASE_ERRSTR_MAX];         /* its error text or note */
    char pause_note[BASE_ERRSTR_MAX];       /* a lost pause reply's note */
};

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

static bool lc_is_fc(const struct eng_op *op)
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

static int lc_send(struct eng_op *op, backend_ep ep, const char *id, const char *body,
                   unsigned timeout_ms)
{
    op->step = ST_LIFECYCLE;
    return eng_vm_send(op->vm, ep, id, body, body ? strlen(body) : 0, timeout_ms);
}

/* ------------------------------------------------------------- start */

/* A failed start leaves no VMM behind and says why, with the VMM's own
 * last words from its log; the record keeps state error. */
static void lc_start_fail(struct eng_op *op, int rc, const char *why)
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
        lc_start_fail(op, rc, why);
        return;
    }
    op->pid = op->lc->pid;
    eng_op_finish(op, 0, "");
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
    lc_start_fail(op, -ECHILD, why);
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
    rc = lc_send(op, BACKEND_EP_PING, NULL, NULL, ms);
    if (rc)
        lc_start_fail(op, rc, op->e->err);
}

static void lc_restore(struct eng_op *op);

static void lc_after_ping(struct eng_op *op, const httpc_response *r)
{
    struct eng_lc *lc = op->lc;
    int rc;

    if (!r->err && backend_endpoint_ok(backend_endpoint_of(op->vm->ops, BACKEND_EP_PING),
                                       r->status)) {
        if (op->kind == OP_VM_RESTORE) {
            lc_restore(op);
            return;
        }
        lc->phase = LC_INFO;
        rc = lc_send(op, BACKEND_EP_INFO, NULL, NULL, 0);
        if (rc)
            lc_start_fail(op, rc, op->e->err);
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
        lc_start_fail(op, -ETIMEDOUT, why);
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
        lc_start_fail(op, r->err, r->errstr);
        return;
    }
    if (eng_info_no_vm(r)) {
        lc_start_fail(op, -EHOSTDOWN,
                      op->vm->rec->config.kernel
                          ? "the VMM is up but has no VM (vm.info: VM is not created)"
                          : "the VMM is up but has no VM: Cloud Hypervisor boots one only "
                            "when given a payload; create the VM with --kernel");
        return;
    }
    if (!backend_endpoint_ok(row, r->status)) {
        eng_status_errf(tmp, sizeof(tmp), "", row->method, row->path, r->status, r->body,
                        r->body_len);
        lc_start_fail(op, -EREMOTEIO, tmp);
        return;
    }
    memset(&vi, 0, sizeof(vi));
    rc = json_vm_info_decode(r->body, r->body_len, &vi, tmp, sizeof(tmp));
    if (!rc && strcmp(vi.state, "Running") != 0)
        rc = base_errf(tmp, sizeof(tmp), -EHOSTDOWN,
                      "vm.info reports state %s, expected Running: the VM did not boot",
                      vi.state);
    json_vm_info_fini(&vi);
    if (rc) {
        lc_start_fail(op, rc, tmp);
        return;
    }
    lc_start_done(op);
}

/* ------------------------------------------------------- call sequences */

static void lc_seq_next(struct eng_op *op);

static void lc_seq_retry_cb(lp_loop *loop, lp_timer *w, int revents)
{
    struct eng_op *op = w->data;
    cocoon_engine *e = op->e;

    (void)loop;
    (void)revents;
    eng_enter(e);
    lc_seq_next(op);
    eng_leave(e);
}

static void lc_seq_next(struct eng_op *op)
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
    rc = lc_send(op, c->ep, c->id, c->body, 0);
    if (rc)
        lc_start_fail(op, rc, op->e->err);
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
        lc_start_fail(op, r->err, r->errstr);
        return;
    }
    if (!ok) {
        snprintf(path, sizeof(path), "%s%s", row->path, c->id ? c->id : "");
        eng_status_errf(tmp, sizeof(tmp), "", row->method, path, r->status, r->body,
                        r->body_len);
        lc_start_fail(op, -EREMOTEIO, tmp);
        return;
    }
    lc->i_seq++;
    lc->attempts = 0;
    lc_seq_next(op);
}

static int lc_seq_add(struct eng_lc *lc, backend_ep ep, const char *id, char *body)
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
    int rc = lc_seq_add(lc, BACKEND_EP_MACHINE_CONFIG, NULL, launch_fc_machine_config(vm));

    if (!rc && vm->config.kernel)
        rc = lc_seq_add(lc, BACKEND_EP_BOOT_SOURCE, NULL, launch_fc_boot_source(vm));
    for (size_t i = 0; !rc && i < vm->config.n_disks; i++) {
        char id[32];

        if (i == 0)
            snprintf(id, sizeof(id), "rootfs");
        else
            snprintf(id, sizeof(id), "disk%zu", i);
        rc = lc_seq_add(lc, BACKEND_EP_DRIVE, id, launch_fc_drive(id, vm->config.disks[i], i == 0));
    }
    if (!rc)
        rc = lc_seq_add(lc, BACKEND_EP_ACTIONS, NULL,
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
    if (rc == 0) {
        lc->seq_done = lc_start_done;
        lc_seq_next(op);
    } else if (waitpid(lc->pid, NULL, WNOHANG) == lc->pid) {
        lc->pid = 0;
        snprintf(why, sizeof(why), "VMM exited before serving %s", lc->sock);
        lc_start_fail(op, -ECHILD, why);
    } else if (eng_mono_s() >= lc->deadline) {
        snprintf(why, sizeof(why), "%s did not come up within %u ms", lc->sock,
                 (unsigned)(LC_API_DEADLINE_S * 1000));
        lc_start_fail(op, -ETIMEDOUT, why);
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
    bool fc = lc_is_fc(op);
    const char *binary = op->binary ? op->binary : op->vm->ops->default_binary;
    char **argv = NULL;
    int rc;

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
    rc = lc_spawn(op, why, sizeof(why));
    if (rc) {
        lc_start_fail(op, rc, why);
        return;
    }
    lc->deadline = eng_mono_s() + LC_API_DEADLINE_S;
    if (lc_is_fc(op)) {
        rc = lc_fc_boot_seq(lc, op->vm->rec);
        if (rc) {
            lc_start_fail(op, rc, "out of memory");
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
    const cocoon_vm_opts *o = &op->vm_opts;

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
    lc->deadline = lc->t0 + op->vm_opts.graceful_ms / 1000.0;
    lc_arm(op, lc_gone_cb, 0);
}

/* Single-shot: a lost reply is answered by watching the process, never by
 * resending.  After a timeout the API thread is wedged, so a second call
 * would only wait again. */
static void lc_after_shutdown(struct eng_op *op, const httpc_response *r)
{
    struct eng_lc *lc = op->lc;

    if (lc->phase == LC_SHUTDOWN && !lc_is_fc(op) && r->err != -ETIMEDOUT &&
        !launch_proc_gone(lc->pid, lc->gate_binary, lc->sock)) {
        lc->phase = LC_VMM_SHUTDOWN;
        if (lc_send(op, BACKEND_EP_VMM_SHUTDOWN, NULL, NULL, op->vm_opts.call_ms) == 0)
            return;
    }
    lc_wait_gone(op);
}

static void lc_stop(struct eng_op *op)
{
    struct eng_lc *lc = op->lc;
    cocoon_engine *e = op->e;
    cocoon_vm_opts *o = &op->vm_opts;
    store_vm *rec = op->vm->rec;
    const char *dflt = op->binary ? op->binary : op->vm->ops->default_binary;
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
    lc->gate_binary = rec->binary ? rec->binary : dflt;
    /* A pid that fails the gate is not our VMM: nothing is signalled. */
    if (gate_check(rec, dflt, &lc->pid, why, sizeof(why)) != 0) {
        lc->pid = 0;
        lc_stop_done(op);
        return;
    }
    lc->t0 = eng_mono_s();
    if (o->force) {             /* the graceful window is already over */
        o->graceful_ms = 0;
        lc_wait_gone(op);
        return;
    }
    lc->phase = LC_SHUTDOWN;
    if (lc_is_fc(op))
        rc = lc_send(op, BACKEND_EP_ACTIONS, NULL, "{\"action_type\":\"SendCtrlAltDel\"}",
                     o->call_ms);
    else
        rc = lc_send(op, BACKEND_EP_SHUTDOWN, NULL, NULL, o->call_ms);
    if (rc)
        lc_wait_gone(op);
}

/* ------------------------------------------------ pause, resume, snapshot */

/* Pause and resume are steps of a snapshot too: each ends in
 * lc->state_next with the outcome in e->err (a note on success). */
static const char *lc_state_ep_name(const struct eng_op *op)
{
    return op->lc->pausing ? "vm.pause" : "vm.resume";
}

static void lc_state_send(struct eng_op *op, bool pause, void (*next)(struct eng_op *, int))
{
    cocoon_engine *e = op->e;
    struct eng_lc *lc = op->lc;
    int rc;

    lc->pausing = pause;
    lc->state_next = next;
    lc->phase = LC_STATE;
    if (lc_is_fc(op))
        rc = lc_send(op, BACKEND_EP_PATCH_VM, NULL,
                     pause ? "{\"state\":\"Paused\"}" : "{\"state\":\"Resumed\"}", 0);
    else
        rc = lc_send(op, pause ? BACKEND_EP_PAUSE : BACKEND_EP_RESUME, NULL, NULL, 0);
    if (rc) {
        char tmp[BASE_ERRSTR_MAX];

        memcpy(tmp, e->err, sizeof(tmp));
        base_errf(e->err, sizeof(e->err), rc, "%s: %s", lc_state_ep_name(op), tmp);
        next(op, rc);
    }
}

/* The request is single-shot: after a reply lost once the request was
 * written, CH may have acted on it, so the answer comes from vm.info. */
static void lc_after_state(struct eng_op *op, const httpc_response *r)
{
    cocoon_engine *e = op->e;
    struct eng_lc *lc = op->lc;
    backend_ep ep = lc_is_fc(op) ? BACKEND_EP_PATCH_VM
                    : lc->pausing ? BACKEND_EP_PAUSE : BACKEND_EP_RESUME;
    const backend_endpoint *row = backend_endpoint_of(op->vm->ops, ep);
    const char *name = lc_state_ep_name(op);
    char tmp[BASE_ERRSTR_MAX];

    if (!r->err) {
        if (backend_endpoint_ok(row, r->status)) {
            e->err[0] = '\0';
            lc->state_next(op, 0);
            return;
        }
        eng_status_errf(tmp, sizeof(tmp), "", row->method, row->path, r->status, r->body,
                        r->body_len);
        base_errf(e->err, sizeof(e->err), 0, "%s: %s", name, tmp);
        lc->state_next(op, -EREMOTEIO);
        return;
    }
    if (!r->written || r->err == -ECANCELED || r->err == -ENOMEM || lc_is_fc(op)) {
        /* Firecracker has no state query to settle a lost reply. */
        base_errf(e->err, sizeof(e->err), 0, "%s: %s%s", name,
                  r->written ? "outcome unknown: " : "", r->errstr);
        lc->state_next(op, r->err);
        return;
    }
    op->lost_err = r->err;
    lc->phase = LC_STATE_INFO;
    if (lc_send(op, BACKEND_EP_INFO, NULL, NULL, 0) != 0) {
        memcpy(tmp, e->err, sizeof(tmp));
        base_errf(e->err, sizeof(e->err), 0, "%s: outcome unknown: %s", name, tmp);
        lc->state_next(op, op->lost_err);
    }
}

/* Decodes a vm.info reply into vi; on failure the reason is in why. */
static int lc_decode_info(const httpc_response *r, json_vm_info *vi, char *why, size_t n)
{
    memset(vi, 0, sizeof(*vi));
    if (r->err)
        return base_errf(why, n, r->err, "query vm.info: %s", r->errstr);
    if (r->status != 200)
        return base_errf(why, n, -EREMOTEIO, "query vm.info: status %d", r->status);
    return json_vm_info_decode(r->body, r->body_len, vi, why, n);
}

static void lc_after_state_info(struct eng_op *op, const httpc_response *r)
{
    cocoon_engine *e = op->e;
    struct eng_lc *lc = op->lc;
    const char *name = lc_state_ep_name(op);
    const char *want = lc->pausing ? "Paused" : "Running";
    char tmp[BASE_ERRSTR_MAX] = "";
    json_vm_info vi;
    int rc = lc_decode_info(r, &vi, tmp, sizeof(tmp));

    if (rc) {
        base_errf(e->err, sizeof(e->err), 0, "%s: outcome unknown: %s", name, tmp);
        json_vm_info_fini(&vi);
        lc->state_next(op, op->lost_err);
        return;
    }
    base_errf(e->err, sizeof(e->err), 0, "%s: reply lost; vm.info shows the VM %s", name,
              vi.state);
    rc = strcmp(vi.state, want) == 0 ? 0 : op->lost_err;
    op->lost_err = 0;
    json_vm_info_fini(&vi);
    lc->state_next(op, rc);
}

static void lc_state_done(struct eng_op *op, int err)
{
    eng_op_fail(op, err);
}

static bool lc_gate(struct eng_op *op)
{
    char why[BASE_ERRSTR_MAX];
    pid_t pid;

    if (gate_check(op->vm->rec, op->binary ? op->binary : op->vm->ops->default_binary, &pid,
                   why, sizeof(why)) != 0) {
        eng_op_finish(op, -EHOSTDOWN, why);
        return false;
    }
    return true;
}

static void lc_state(struct eng_op *op)
{
    if (lc_gate(op))
        lc_state_send(op, op->kind == OP_VM_PAUSE, lc_state_done);
}

/* A snapshot: vm.info (nothing attached unless forced), vm.pause,
 * vm.snapshot under its own deadline, vm.resume whatever the snapshot's
 * outcome; each request sent once. */
static void lc_snap_resumed(struct eng_op *op, int err)
{
    struct eng_lc *lc = op->lc;
    cocoon_engine *e = op->e;
    char tmp[BASE_ERRSTR_MAX];

    memcpy(tmp, e->err, sizeof(tmp));
    if (lc->snap_err)
        base_errf(e->err, sizeof(e->err), 0, "%s; %s%s", lc->snap_msg,
                  err ? "the VM stays paused: " : "the VM was resumed",
                  err ? tmp : "");
    else if (err)
        base_errf(e->err, sizeof(e->err), 0, "snapshot saved, but the VM stays paused: %s", tmp);
    else
        base_errf(e->err, sizeof(e->err), 0, "%s%s%s", lc->snap_msg,
                  lc->snap_msg[0] && tmp[0] ? "; " : "", tmp);
    /* A saved snapshot is a success even when the resume failed: the
     * files are whole, and the note says the VM is paused. */
    eng_op_fail(op, lc->snap_err);
}

static void lc_after_snap(struct eng_op *op, const httpc_response *r)
{
    struct eng_lc *lc = op->lc;
    const backend_endpoint *row = backend_endpoint_of(op->vm->ops, BACKEND_EP_SNAPSHOT);
    char tmp[BASE_ERRSTR_MAX];

    lc->snap_err = 0;
    lc->snap_msg[0] = '\0';
    if (r->err) {
        /* vm.info cannot tell whether the files were written: a lost
         * reply is a failed snapshot, never a second request. */
        lc->snap_err = r->err;
        base_errf(lc->snap_msg, sizeof(lc->snap_msg), 0, "vm.snapshot: %s%s",
                  r->written ? "outcome unknown: " : "", r->errstr);
    } else if (!backend_endpoint_ok(row, r->status)) {
        lc->snap_err = -EREMOTEIO;
        eng_status_errf(tmp, sizeof(tmp), "", row->method, row->path, r->status, r->body,
                        r->body_len);
        base_errf(lc->snap_msg, sizeof(lc->snap_msg), 0, "vm.snapshot: %s", tmp);
    } else if (lc->pause_note[0]) {
        snprintf(lc->snap_msg, sizeof(lc->snap_msg), "%s", lc->pause_note);
    }
    lc_state_send(op, false, lc_snap_resumed);
}

static void lc_snap_paused(struct eng_op *op, int err)
{
    struct eng_lc *lc = op->lc;
    cocoon_engine *e = op->e;
    char *body = NULL;
    size_t len;

    if (err) {
        eng_op_fail(op, err);
        return;
    }
    snprintf(lc->pause_note, sizeof(lc->pause_note), "%s", e->err);
    lc->phase = LC_SNAP;
    err = json_file_url_encode("destination_url", op->path, &body, &len, e->err, sizeof(e->err));
    if (err == 0)
        err = lc_send(op, BACKEND_EP_SNAPSHOT, NULL, body, op->vm_opts.snapshot_ms);
    free(body);
    if (err) {
        lc->snap_err = err;
        base_errf(lc->snap_msg, sizeof(lc->snap_msg), 0, "vm.snapshot: %s", e->err);
        lc_state_send(op, false, lc_snap_resumed);
    }
}

/* Runtime-attached devices are not restored with a snapshot, and a
 * restored VM would reconnect to a virtiofsd that served another client:
 * they are refused unless forced, by name. */
static void lc_after_snap_info(struct eng_op *op, const httpc_response *r)
{
    cocoon_engine *e = op->e;
    char tmp[BASE_ERRSTR_MAX] = "", list[BASE_ERRSTR_MAX] = "";
    json_vm_info vi;
    int rc = lc_decode_info(r, &vi, tmp, sizeof(tmp));
    size_t o = 0;

    if (rc) {
        json_vm_info_fini(&vi);
        base_errf(e->err, sizeof(e->err), 0, "snapshot save: %s", tmp);
        eng_op_fail(op, rc);
        return;
    }
    if (strcmp(vi.state, "Running") != 0) {
        base_errf(e->err, sizeof(e->err), 0, "snapshot save: vm %s is %s, not Running",
                  op->vm->rec->id, vi.state);
        json_vm_info_fini(&vi);
        eng_op_fail(op, -EBUSY);
        return;
    }
    for (size_t i = 0; i < vi.n_fs && o < sizeof(list); i++)
        o += (size_t)snprintf(list + o, sizeof(list) - o, "%sfs tag %s", o ? ", " : "",
                              vi.fs[i].tag ? vi.fs[i].tag : "?");
    for (size_t i = 0; i < vi.n_devices && o < sizeof(list); i++)
        o += (size_t)snprintf(list + o, sizeof(list) - o, "%sdevice %s", o ? ", " : "",
                              vi.devices[i].id ? vi.devices[i].id : "?");
    json_vm_info_fini(&vi);
    if (o && !op->vm_opts.force) {
        base_errf(e->err, sizeof(e->err), 0,
                  "snapshot save: vm %s has runtime-attached devices (%s), which a snapshot "
                  "does not capture; detach them first, or use --force",
                  op->vm->rec->id, list);
        eng_op_fail(op, -EBUSY);
        return;
    }
    lc_state_send(op, true, lc_snap_paused);
}

static void lc_snapshot(struct eng_op *op)
{
    cocoon_engine *e = op->e;
    int rc;

    if (!backend_endpoint_of(op->vm->ops, BACKEND_EP_SNAPSHOT)) {
        base_errf(e->err, sizeof(e->err), 0, "snapshot save: backend %s: not supported",
                  op->vm->ops->short_name);
        eng_op_fail(op, -EOPNOTSUPP);
        return;
    }
    if (!op->vm_opts.snapshot_ms)
        op->vm_opts.snapshot_ms = 600000;
    if (!lc_gate(op))
        return;
    op->lc->phase = LC_SNAP_INFO;
    rc = lc_send(op, BACKEND_EP_INFO, NULL, NULL, 0);
    if (rc)
        eng_op_fail(op, rc);
}

/* ----------------------------------------------------------- restore */

/* After the resume, the start's own check: vm.info must say Running. */
static void lc_restore_resumed(struct eng_op *op, int err)
{
    int rc;

    if (err) {
        lc_start_fail(op, err, op->e->err);
        return;
    }
    op->lc->phase = LC_INFO;
    rc = lc_send(op, BACKEND_EP_INFO, NULL, NULL, 0);
    if (rc)
        lc_start_fail(op, rc, op->e->err);
}

static void lc_restore_done(struct eng_op *op)
{
    lc_state_send(op, false, lc_restore_resumed);
}

/* The VMM is up without a VM: one vm.restore (a single-shot call of the
 * sequence: a lost reply fails the restore), then the resume. */
static void lc_restore(struct eng_op *op)
{
    struct eng_lc *lc = op->lc;
    char *body = NULL;
    size_t len;
    int rc = json_file_url_encode("source_url", op->path, &body, &len, op->e->err,
                                  sizeof(op->e->err));

    if (rc) {
        lc_start_fail(op, rc, op->e->err);
        return;
    }
    rc = lc_seq_add(lc, BACKEND_EP_RESTORE, NULL, body);
    if (rc) {
        lc_start_fail(op, rc, "out of memory");
        return;
    }
    lc->seq_done = lc_restore_done;
    lc_seq_next(op);
}

/* ------------------------------------------------------------ dispatch */

void eng_lc_run(struct eng_op *op)
{
    op->lc = calloc(1, sizeof(*op->lc));
    if (!op->lc) {
        eng_op_finish(op, -ENOMEM, "out of memory");
        return;
    }
    if (op->kind == OP_VM_RESTORE && lc_is_fc(op)) {
        base_errf(op->e->err, sizeof(op->e->err), 0, "vm restore: backend firecracker: "
                  "not supported");
        eng_op_finish(op, -EOPNOTSUPP, op->e->err);
    } else if (op->kind == OP_VM_START || op->kind == OP_VM_RESTORE)
        lc_start(op);
    else if (op->kind == OP_VM_STOP)
        lc_stop(op);
    else if (op->kind == OP_VM_SNAPSHOT)
        lc_snapshot(op);
    else
        lc_state(op);
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
        lc_after_state(op, r);
        break;
    case LC_STATE_INFO:
        lc_after_state_info(op, r);
        break;
    case LC_SNAP_INFO:
        lc_after_snap_info(op, r);
        break;
    case LC_SNAP:
        lc_after_snap(op, r);
        break;
    default:
        break;
    }
}
