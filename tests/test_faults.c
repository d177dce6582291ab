/* tests/test_faults.c: the fault matrix.  Every chsim fault mode, HTTP
 * status class and connection failure, crossed with every operation (fs
 * attach, fs detach, device attach, device detach, list) and every CH
 * generation.  Each cell runs on a fresh engine and checks: one callback,
 * a clear error or a correct success, what chsim really did (a fresh list),
 * no state-changing call sent twice, and no fd left open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/cocoon.h"
#include "tests/support/call.h"
#include "http/base.h"
#include "backends/store.h"
#include "backends/safefile.h"
#include "tests/support/support.h"

#define ARROW "\xe2\x86\x92"
#define FLEET_N 200

/* OP_PAUSE (a lifecycle op on a recorded VM) is outside the matrix loops. */
enum op { OP_FSA, OP_FSD, OP_DEVA, OP_DEVD, OP_LIST, N_OPS, OP_PAUSE = N_OPS };
enum target { T_PUT, T_INFO };
/* What a cell must end in: plain success, success carrying the lost-reply
 * note (CH executed the call, the reply did not arrive intact), an error
 * whose text is known exactly, or an error of a given errno. */
enum outcome { O_OK, O_LOST_OK, O_ERR };

static const char *const op_names[N_OPS + 1] = { "fs attach", "fs detach", "device attach",
                                                 "device detach", "list", "pause" };
static const char *const gens[] = { "head", "v53", "v46" };
#define N_GENS 3

static int g_verbose;
static int g_valgrind;
static unsigned g_timeout_ms;
static int g_cells;
static char g_pci[300];

/* ------------------------------------------------------------ running ops */

struct opres {
    int calls;
    bool cb_in_submit;
    bool watchdog;
    int err;
    char errstr[2048];
    char id[128];
    int status;
    int n_fs, n_dev;
    char list[1024];
};

struct runner {
    struct ev_loop *loop;
    ev_timer wd;
    bool in_submit;
    struct opres *r;
};

static void run_wd_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct runner *run = w->data;

    (void)revents;
    run->r->watchdog = true;
    ev_break(loop, EVBREAK_ALL);
}

static void run_fill(struct runner *run, const cocoon_result *cr)
{
    struct opres *r = run->r;

    r->calls++;
    if (run->in_submit)
        r->cb_in_submit = true;
    r->err = cr->err;
    snprintf(r->errstr, sizeof(r->errstr), "%s", cr->errstr ? cr->errstr : "(null)");
    snprintf(r->id, sizeof(r->id), "%s", cr->device_id ? cr->device_id : "");
    r->status = cr->http_status;
}

static void run_done_cb(cocoon_engine *e, const cocoon_result *cr, void *priv)
{
    struct runner *run = priv;

    (void)e;
    run_fill(run, cr);
    ev_break(run->loop, EVBREAK_ALL);
}

static void run_list_cb(cocoon_engine *e, const cocoon_result *cr, const cocoon_listing *l,
                        void *priv)
{
    struct runner *run = priv;
    struct opres *r = run->r;
    size_t o = 0;

    (void)e;
    r->n_fs = l ? (int)l->n_fs : -1;
    r->n_dev = l ? (int)l->n_devices : -1;
    for (size_t i = 0; l && i < l->n_fs && o < sizeof(r->list); i++)
        o += (size_t)snprintf(r->list + o, sizeof(r->list) - o, "fs:%s,%s;", l->fs[i].id,
                              l->fs[i].tag);
    for (size_t i = 0; l && i < l->n_devices && o < sizeof(r->list); i++)
        o += (size_t)snprintf(r->list + o, sizeof(r->list) - o, "dev:%s,%s;",
                              l->devices[i].id, l->devices[i].bdf ? l->devices[i].bdf : "-");
    run_fill(run, cr);
    ev_break(run->loop, EVBREAK_ALL);
}

struct opargs {
    const char *vfs_sock;
    const char *tag;
    const char *pci;
    const char *dev_id;
    int num_queues;
};

/* Runs one operation on a private loop and engine, both freed before
 * returning, so the caller can compare fd counts around it.  No cmocka
 * assertion here: the permission test calls it in a forked child. */
typedef void run_hook(void *arg);

/* The loop of the operation being run, for a hook that watches it. */
static struct ev_loop *g_hook_loop;

/* run_op for a target resolved under root, with before_run (may be NULL)
 * called between the submit and the loop. */
static int run_op_in(const char *root, const char *sock, enum op op, const struct opargs *a,
                     unsigned timeout_ms, struct opres *r, run_hook *before_run, void *arg)
{
    struct runner run = { 0 };
    cocoon_options o = COCOON_OPTIONS_INIT;
    cocoon_engine *e;
    int rc = -1;

    memset(r, 0, sizeof(*r));
    run.r = r;
    run.loop = ev_loop_new(EVFLAG_AUTO);
    if (!run.loop)
        return -1;
    o.root_dir = root;
    o.timeout_ms = timeout_ms;
    o.socket_check = -1;
    e = cocoon_engine_new(run.loop, &o);
    if (!e) {
        ev_loop_destroy(run.loop);
        return -1;
    }
    ev_timer_init(&run.wd, run_wd_cb, 30. + timeout_ms / 100.0, 0.);
    run.wd.data = &run;
    ev_timer_start(run.loop, &run.wd);
    run.in_submit = true;
    switch (op) {
    case OP_FSA: {
        cocoon_fs_spec s = { sizeof(cocoon_fs_spec), a->vfs_sock, a->tag, a->num_queues, 0, 0 };

        rc = cocoon_fs_attach(e, sock, &s, run_done_cb, &run);
        break;
    }
    case OP_FSD:
        rc = cocoon_fs_detach(e, sock, a->tag, run_done_cb, &run);
        break;
    case OP_DEVA: {
        cocoon_vfio_spec s = { sizeof(cocoon_vfio_spec), a->pci, a->dev_id };

        rc = cocoon_device_attach(e, sock, &s, run_done_cb, &run);
        break;
    }
    case OP_DEVD:
        rc = cocoon_device_detach(e, sock, a->dev_id, run_done_cb, &run);
        break;
    case OP_PAUSE:
        rc = cocoon_vm_pause(e, sock, NULL, run_done_cb, &run);
        break;
    default:
        rc = cocoon_list(e, sock, run_list_cb, &run);
        break;
    }
    run.in_submit = false;
    g_hook_loop = run.loop;
    if (rc == 0 && before_run)
        before_run(arg);
    if (rc == 0)
        ev_run(run.loop, 0);
    /* Drain what a callback may have left: the engine is freed while the
     * loop still exists, as a host would do. */
    cocoon_engine_free(e);
    ev_timer_stop(run.loop, &run.wd);
    ev_loop_destroy(run.loop);
    return rc;
}

static int run_op(const char *sock, enum op op, const struct opargs *a, unsigned timeout_ms,
                  struct opres *r)
{
    return run_op_in("/nonexistent-cocoon-root", sock, op, a, timeout_ms, r, NULL, NULL);
}

/* ------------------------------------------------------------ chsim control */

static void chsim_put(const char *sock, const char *path, const char *body)
{
    char err[BASE_ERRSTR_MAX];
    int rc = sup_call_sync(sock, "PUT", path, body, 5000, NULL, NULL, NULL, err, sizeof(err));

    if (rc)
        fail_msg("%s on %s: %s", path, sock, err);
}

static void arm_fault(const char *sock, const char *endpoint, const char *mode)
{
    char body[256];

    snprintf(body, sizeof(body), "{\"endpoint\":\"%s\",\"mode\":\"%s\",\"count\":1}", endpoint,
             mode);
    chsim_put(sock, "/chsim/fault", body);
}

static void set_override(const char *sock, const char *body)
{
    chsim_put(sock, "/chsim/vminfo-override", body);
}

struct counts {
    int add_fs, add_dev, remove, info;
};

static struct counts get_counts(const char *sock)
{
    struct counts c = {
        sup_chsim_count(sock, "vm.add-fs"), sup_chsim_count(sock, "vm.add-device"),
        sup_chsim_count(sock, "vm.remove-device"), sup_chsim_count(sock, "vm.info"),
    };

    assert_true(c.add_fs >= 0 && c.add_dev >= 0 && c.remove >= 0 && c.info >= 0);
    return c;
}

struct fleet {
    char *dir;
    pid_t pid;
    int next;
    const char *gen;
};

static void fleet_start(struct fleet *f, const char *gen)
{
    char *bin = sup_build_path("chsim");
    char count[16], last[300];
    char *argv[] = { bin, (char *)"--fleet", NULL, (char *)"--count", count,
                     (char *)"--api-version", (char *)gen, (char *)"--no-connect", NULL };

    memset(f, 0, sizeof(*f));
    f->gen = gen;
    f->dir = sup_tmpdir();
    argv[2] = f->dir;
    snprintf(count, sizeof(count), "%d", FLEET_N);
    f->pid = sup_spawn(argv);
    assert_true(f->pid > 0);
    snprintf(last, sizeof(last), "%s/vm%d.sock", f->dir, FLEET_N - 1);
    assert_int_equal(sup_wait_socket(last, 60000), 0);
    free(bin);
}

static void fleet_stop(struct fleet *f)
{
    sup_kill(f->pid);
    sup_rmrf(f->dir);
    free(f->dir);
}

static void fleet_sock(struct fleet *f, char *out, size_t n)
{
    assert_true(f->next < FLEET_N);
    snprintf(out, n, "%s/vm%d.sock", f->dir, f->next++);
}

/* ------------------------------------------------------------ the cells */

static const char *op_put_endpoint(enum op op)
{
    switch (op) {
    case OP_FSA: return "vm.add-fs";
    case OP_DEVA: return "vm.add-device";
    case OP_FSD: case OP_DEVD: return "vm.remove-device";
    default: return "vm.info";
    }
}

/* "vm.add-fs: ", "vm.remove-device cocoon-fs-t: ", ... */
static void op_prefix(enum op op, char *out, size_t n)
{
    switch (op) {
    case OP_FSA: snprintf(out, n, "vm.add-fs: "); break;
    case OP_DEVA: snprintf(out, n, "vm.add-device: "); break;
    case OP_FSD: snprintf(out, n, "vm.remove-device cocoon-fs-t: "); break;
    case OP_DEVD: snprintf(out, n, "vm.remove-device gpu0: "); break;
    default: out[0] = '\0'; break;
    }
}

static bool op_is_attach(enum op op)
{
    return op == OP_FSA || op == OP_DEVA;
}

static bool op_is_detach(enum op op)
{
    return op == OP_FSD || op == OP_DEVD;
}

static const struct opargs g_args_base = { NULL, "t", NULL, "gpu0", 0 };

static struct opargs cell_args(const char *sock)
{
    static char vfs[400];
    struct opargs a = g_args_base;

    /* Never connected to (--no-connect, socket check off): only carried. */
    snprintf(vfs, sizeof(vfs), "%s.vfs", sock);
    a.vfs_sock = vfs;
    a.pci = g_pci;
    return a;
}

/* Brings a detach cell's VM to "device attached" with a plain attach. */
static void cell_prepare(const char *sock, enum op op, const struct opargs *a)
{
    struct opres r;

    if (!op_is_detach(op))
        return;
    assert_int_equal(run_op(sock, op == OP_FSD ? OP_FSA : OP_DEVA, a, g_timeout_ms, &r), 0);
    if (r.calls != 1 || r.err != 0)
        fail_msg("prepare %s on %s: calls %d err %d %s", op_names[op], sock, r.calls, r.err,
                 r.errstr);
}

/* What chsim holds now, read with a fault-free list: 1 when the cell's
 * device is attached, 0 when not. */
static int cell_present(const char *sock, enum op op)
{
    struct opres r;

    assert_int_equal(run_op(sock, OP_LIST, &g_args_base, g_timeout_ms * 4, &r), 0);
    if (r.calls != 1 || r.err != 0)
        fail_msg("verify list on %s: calls %d err %d %s", sock, r.calls, r.err, r.errstr);
    if (op == OP_FSA || op == OP_FSD)
        return strstr(r.list, "fs:cocoon-fs-t,t;") != NULL;
    if (op == OP_DEVA || op == OP_DEVD)
        return strstr(r.list, "dev:gpu0,") != NULL;
    return -1;
}

struct expect {
    enum outcome out;
    const char *exact;        /* O_ERR: the whole errstr, or NULL */
    const char *prefix;       /* O_ERR: errstr prefix when exact is NULL */
    int err;                  /* O_ERR: the errno, 0: any nonzero */
    int puts;                 /* state-changing calls the cell must send */
    bool check_reality;
};

static void cell_check(const char *what, const char *sock, enum op op, const struct opres *r,
                       const struct expect *x, const struct counts *before, bool alive)
{
    char pre[128], note[512];

    g_cells++;
    if (g_verbose)
        fprintf(stderr, "cell %-58s err %4d status %3d  %s\n", what, r->err, r->status,
                r->errstr);
    if (r->watchdog)
        fail_msg("%s: watchdog fired", what);
    if (r->calls != 1 || r->cb_in_submit)
        fail_msg("%s: %d callbacks (in submit: %d)", what, r->calls, r->cb_in_submit);
    op_prefix(op, pre, sizeof(pre));
    switch (x->out) {
    case O_OK:
        if (r->err != 0 || strcmp(r->errstr, "") != 0)
            fail_msg("%s: want success, got %d \"%s\"", what, r->err, r->errstr);
        break;
    case O_LOST_OK:
        if (op_is_attach(op))
            snprintf(note, sizeof(note), "%sreply lost; vm.info shows the device attached (id=%s)",
                     pre, op == OP_FSA ? "cocoon-fs-t" : "gpu0");
        else
            snprintf(note, sizeof(note), "%sreply lost; vm.info shows the device removed", pre);
        if (r->err != 0 || strcmp(r->errstr, note) != 0)
            fail_msg("%s: want success with \"%s\", got %d \"%s\"", what, note, r->err,
                     r->errstr);
        break;
    case O_ERR:
        if (r->err >= 0)
            fail_msg("%s: want an error, got %d \"%s\"", what, r->err, r->errstr);
        if (x->err && r->err != x->err)
            fail_msg("%s: want err %d, got %d \"%s\"", what, x->err, r->err, r->errstr);
        if (x->exact && strcmp(r->errstr, x->exact) != 0)
            fail_msg("%s: want \"%s\", got \"%s\"", what, x->exact, r->errstr);
        if (x->prefix && strncmp(r->errstr, x->prefix, strlen(x->prefix)) != 0)
            fail_msg("%s: want prefix \"%s\", got \"%s\"", what, x->prefix, r->errstr);
        /* A clear message: one line, more than the prefix. */
        if (strlen(r->errstr) < 20 || strchr(r->errstr, '\n'))
            fail_msg("%s: unclear error \"%s\"", what, r->errstr);
        break;
    }
    if (alive && before) {
        struct counts now = get_counts(sock);
        int d_fs = now.add_fs - before->add_fs, d_dev = now.add_dev - before->add_dev,
            d_rm = now.remove - before->remove;

        if (d_fs > 1 || d_dev > 1 || d_rm > 1 || d_fs + d_dev + d_rm != x->puts)
            fail_msg("%s: state-changing calls add-fs %d add-device %d remove-device %d, "
                     "want %d in all and none twice", what, d_fs, d_dev, d_rm, x->puts);
    }
    if (alive && x->check_reality && op != OP_LIST) {
        int want = op_is_attach(op) ? r->err == 0 : r->err != 0;
        int got = cell_present(sock, op);

        if (got != want)
            fail_msg("%s: reported err %d \"%s\" but the device is %s", what, r->err, r->errstr,
                     got ? "attached" : "not attached");
    }
}

struct mode_row {
    const char *mode;
    enum outcome put, info;
    int info_err;             /* errno of an info-target failure, 0: any */
    bool slow;                /* costs a timeout */
};

static const struct mode_row modes[] = {
    { "none", O_OK, O_OK, 0, false },
    { "close-before-reply", O_LOST_OK, O_ERR, -ECONNRESET, false },
    { "close-mid-headers", O_LOST_OK, O_ERR, -ECONNRESET, false },
    { "close-mid-body", O_LOST_OK, O_ERR, -ECONNRESET, false },
    { "garbage-status", O_LOST_OK, O_ERR, -EPROTO, false },
    { "oversized-headers", O_LOST_OK, O_ERR, -EMSGSIZE, false },
    { "oversized-body", O_LOST_OK, O_ERR, -EMSGSIZE, false },
    { "slow-drip", O_LOST_OK, O_ERR, -ETIMEDOUT, true },
    { "never-reply", O_LOST_OK, O_ERR, -ETIMEDOUT, true },
    { "plain-text-error", O_ERR, O_ERR, -EREMOTEIO, false },
    { "http10", O_OK, O_OK, 0, false },
    { "chunked", O_OK, O_OK, 0, false },
};
#define N_MODES (sizeof(modes) / sizeof(modes[0]))

static void run_fault_cell(struct fleet *f, enum op op, const struct mode_row *m,
                           enum target t)
{
    char sock[300], what[200], pre[128], exact[512];
    struct opargs a;
    struct counts before;
    struct expect x = { 0 };
    struct opres r;
    int fd0;
    const char *ep = t == T_PUT ? op_put_endpoint(op) : "vm.info";

    fleet_sock(f, sock, sizeof(sock));
    a = cell_args(sock);
    snprintf(what, sizeof(what), "%s/%s/%s@%s", f->gen, op_names[op], m->mode, ep);
    cell_prepare(sock, op, &a);
    if (strcmp(m->mode, "none") != 0)
        arm_fault(sock, ep, m->mode);
    before = get_counts(sock);
    fd0 = sup_count_fds();
    assert_int_equal(run_op(sock, op, &a, g_timeout_ms, &r), 0);
    if (sup_count_fds() != fd0)
        fail_msg("%s: fds %d before, %d after", what, fd0, sup_count_fds());

    op_prefix(op, pre, sizeof(pre));
    x.out = t == T_PUT ? m->put : m->info;
    x.check_reality = true;
    x.puts = op == OP_LIST || (t == T_INFO && x.out == O_ERR) ? 0 : 1;
    if (x.out == O_ERR && strcmp(m->mode, "plain-text-error") == 0) {
        x.err = -EREMOTEIO;
        if (t == T_PUT)
            snprintf(exact, sizeof(exact), "%sPUT http://localhost/api/v1/%s " ARROW
                     " 500: Error from API: chsim injected plain-text error", pre, ep);
        else
            snprintf(exact, sizeof(exact), "query vm.info: GET http://localhost/api/v1/vm.info "
                     ARROW " 500: Error from API: chsim injected plain-text error");
        x.exact = exact;
    } else if (x.out == O_ERR) {
        x.prefix = "query vm.info: ";
        x.err = m->info_err;
    }
    cell_check(what, sock, op, &r, &x, &before, true);
}

/* Device cells need a real PCI device in /sys/bus/pci/devices.  Without
 * one they are not run, and a test that had some ends as skipped (after
 * its fs cells ran) rather than as passed. */
static void devices_cells_done(void)
{
    if (!g_pci[0])
        skip();
}

static void test_fault_modes(void **state)
{
    (void)state;
    for (int g = 0; g < N_GENS; g++) {
        struct fleet f;

        fleet_start(&f, gens[g]);
        for (size_t i = 0; i < N_MODES; i++) {
            /* Under valgrind the timeout cells run for one generation. */
            if (modes[i].slow && g_valgrind && g > 0)
                continue;
            for (int op = 0; op < N_OPS; op++) {
                if ((op == OP_DEVA || op == OP_DEVD) && !g_pci[0])
                    continue;
                if (op != OP_LIST)
                    run_fault_cell(&f, (enum op)op, &modes[i], T_PUT);
                run_fault_cell(&f, (enum op)op, &modes[i], T_INFO);
            }
        }
        fleet_stop(&f);
    }
    devices_cells_done();
}

/* A VMM that exits mid-operation: chsim _exits on the faulted request, so
 * every cell needs a chsim of its own. */
static void run_die_cell(const char *gen, enum op op, enum target t)
{
    static const char *const base[] = { "--memory", "size=512M,shared=on", "--no-connect",
                                        "--api-version", NULL, NULL };
    const char *extra[6];
    char *dir = sup_tmpdir(), sock[300], what[200], pre[128], prefix[1024];
    struct opargs a;
    struct opres r;
    struct expect x = { 0 };
    const char *ep = t == T_PUT ? op_put_endpoint(op) : "vm.info";
    pid_t pid;
    int fd0, st;

    memcpy(extra, base, sizeof(base));
    extra[4] = gen;
    snprintf(sock, sizeof(sock), "%s/api.sock", dir);
    pid = sup_chsim_start(sock, extra);
    assert_true(pid > 0);
    a = cell_args(sock);
    snprintf(what, sizeof(what), "%s/%s/die@%s", gen, op_names[op], ep);
    cell_prepare(sock, op, &a);
    arm_fault(sock, ep, "die");
    fd0 = sup_count_fds();
    assert_int_equal(run_op(sock, op, &a, g_timeout_ms, &r), 0);
    if (sup_count_fds() != fd0)
        fail_msg("%s: fds %d before, %d after", what, fd0, sup_count_fds());
    /* The VMM really is gone. */
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);

    op_prefix(op, pre, sizeof(pre));
    x.out = O_ERR;
    x.err = -ECONNRESET;
    if (t == T_PUT)
        snprintf(prefix, sizeof(prefix), "%soutcome unknown: query vm.info: connect(%s): "
                 "Connection refused", pre, sock);
    else
        snprintf(prefix, sizeof(prefix), "query vm.info: connection closed by peer before "
                 "complete reply from %s", sock);
    x.prefix = prefix;
    cell_check(what, sock, op, &r, &x, NULL, false);
    sup_rmrf(dir);
    free(dir);
}

static void test_vmm_dies(void **state)
{
    (void)state;
    for (int g = 0; g < N_GENS; g++) {
        if (g_valgrind && g > 0)
            continue;
        for (int op = 0; op < N_OPS; op++) {
            if ((op == OP_DEVA || op == OP_DEVD) && !g_pci[0])
                continue;
            if (op != OP_LIST)
                run_die_cell(gens[g], (enum op)op, T_PUT);
            run_die_cell(gens[g], (enum op)op, T_INFO);
        }
    }
    devices_cells_done();
}

/* ------------------------------------------------------------ status codes */

#define INFO_BARE "{\"config\":{\"cpus\":{\"boot_vcpus\":1},\"memory\":{\"size\":536870912," \
                  "\"shared\":true}},\"state\":\"Running\"}"

/* CH's answer class for a condition, by generation (CH-WIRE.md table). */
enum klass { K_DUP, K_NODEV, K_VALID };

static int klass_status(enum klass k, int gen)
{
    static const int tab[3][N_GENS] = {
        [K_DUP] = { 409, 500, 500 },
        [K_NODEV] = { 404, 500, 500 },
        [K_VALID] = { 400, 500, 500 },
    };

    return tab[k][gen];
}

/* One cell where CH itself refuses the state-changing call: the engine's
 * prechecks are blinded with a vm.info override (or, for the queue count,
 * pass by design) so the call reaches chsim. */
static void run_status_cell(struct fleet *f, int gen, enum op op, const char *override,
                            bool prep, int num_queues, enum klass k, const char *chain)
{
    char sock[300], what[200], pre[128], exact[1024];
    struct opargs a;
    struct counts before;
    struct expect x = { 0 };
    struct opres r;
    int fd0, code = klass_status(k, gen);

    fleet_sock(f, sock, sizeof(sock));
    a = cell_args(sock);
    a.num_queues = num_queues;
    snprintf(what, sizeof(what), "%s/%s/status-%d", f->gen, op_names[op], code);
    if (prep) {
        struct opres p;
        struct opargs pa = a;

        pa.num_queues = 0;
        assert_int_equal(run_op(sock, op == OP_FSA ? OP_FSA : OP_DEVA, &pa, g_timeout_ms, &p), 0);
        assert_int_equal(p.err, 0);
    }
    if (override)
        set_override(sock, override);
    before = get_counts(sock);
    fd0 = sup_count_fds();
    assert_int_equal(run_op(sock, op, &a, g_timeout_ms, &r), 0);
    if (sup_count_fds() != fd0)
        fail_msg("%s: fds %d before, %d after", what, fd0, sup_count_fds());
    if (override)
        set_override(sock, "");
    op_prefix(op, pre, sizeof(pre));
    snprintf(exact, sizeof(exact), "%sPUT http://localhost/api/v1/%s " ARROW " %d: %s", pre,
             op_put_endpoint(op), code, chain);
    x.out = O_ERR;
    x.exact = exact;
    x.err = -EREMOTEIO;
    x.puts = 1;
    cell_check(what, sock, op, &r, &x, &before, true);
    assert_int_equal(r.status, code);
    /* The refused call changed nothing: a prepared device is still there,
     * an unprepared one never appeared. */
    if (op != OP_LIST)
        assert_int_equal(cell_present(sock, op), prep ? 1 : 0);
}

static void test_status_bodies(void **state)
{
    char fs_info[1024], dev_info[1024];

    (void)state;
    snprintf(fs_info, sizeof(fs_info),
             "{\"config\":{\"cpus\":{\"boot_vcpus\":1},\"memory\":{\"size\":536870912,"
             "\"shared\":true},\"fs\":[{\"tag\":\"t\",\"socket\":\"/x.sock\",\"num_queues\":1,"
             "\"queue_size\":1024,\"id\":\"cocoon-fs-t\"}]},\"state\":\"Running\"}");
    snprintf(dev_info, sizeof(dev_info),
             "{\"config\":{\"cpus\":{\"boot_vcpus\":1},\"memory\":{\"size\":536870912,"
             "\"shared\":true},\"devices\":[{\"path\":\"%s\",\"id\":\"gpu0\"}]},"
             "\"state\":\"Running\"}", g_pci[0] ? g_pci : "/sys/bus/pci/devices/0000:00:00.0");
    for (int g = 0; g < N_GENS; g++) {
        struct fleet f;

        fleet_start(&f, gens[g]);
        run_status_cell(&f, g, OP_FSA, INFO_BARE, true, 0, K_DUP,
                        "Error from API: The fs could not be added to the VM: Failed to "
                        "validate config: Identifier cocoon-fs-t is not unique");
        run_status_cell(&f, g, OP_FSA, NULL, false, 2, K_VALID,
                        "Error from API: The fs could not be added to the VM: Failed to "
                        "validate config: Queue count (2) must not exceed boot vCPUs (1)");
        run_status_cell(&f, g, OP_FSD, fs_info, false, 0, K_NODEV,
                        "Error from API: The device could not be removed from the VM: Error "
                        "from device manager: Failed to find device corresponding to the "
                        "given identifier: cocoon-fs-t");
        if (g_pci[0]) {
            char dup[512];

            /* CH checks each config entry's path before its id, so the
             * same device again is a duplicate path. */
            snprintf(dup, sizeof(dup), "Error from API: The device could not be added to the "
                     "VM: Failed to validate config: Duplicated device path: %s", g_pci);
            run_status_cell(&f, g, OP_DEVA, INFO_BARE, true, 0, K_DUP, dup);
            run_status_cell(&f, g, OP_DEVD, dev_info, false, 0, K_NODEV,
                            "Error from API: The device could not be removed from the VM: "
                            "Error from device manager: Failed to find device corresponding "
                            "to the given identifier: gpu0");
        }
        fleet_stop(&f);
    }
    devices_cells_done();
}

/* ------------------------------------------------------------ vm.info types */

static const char *const bad_infos[] = {
    "[]",
    "{\"config\":{},\"state\":7}",
    "{\"config\":{\"fs\":{\"tag\":\"t\"}},\"state\":\"Running\"}",
    "{\"config\":{\"devices\":[{\"id\":5,\"path\":\"/sys/bus/pci/devices/0000:00:00.0\"}]},"
    "\"state\":\"Running\"}",
    "{\"config\":{\"fs\":[{\"tag\":[\"t\"],\"socket\":\"/x\",\"id\":\"cocoon-fs-t\"}]},"
    "\"state\":\"Running\"}",
    "{\"config\":\"x\",\"state\":\"Running\"}",
    "{\"config\":{\"memory\":{\"shared\":\"yes\"}},\"state\":\"Running\"}",
    "{\"config\":{\"memory\":{\"size\":536870912,\"shared\":true}},\"state\":\"Running\","
    "\"device_tree\":[1,2]}",
    "{\"config\":{\"fs\":[{\"tag\":\"t\",\"socket\":\"/x\",\"id\":\"cocoon-fs-t\","
    "\"num_queues\":\"1\"}]},\"state\":\"Running\"}",
};
#define N_BAD_INFOS (sizeof(bad_infos) / sizeof(bad_infos[0]))

static void test_vminfo_wrong_types(void **state)
{
    (void)state;
    for (int g = 0; g < N_GENS; g++) {
        struct fleet f;

        if (g_valgrind && g > 0)
            continue;
        fleet_start(&f, gens[g]);
        for (size_t i = 0; i < N_BAD_INFOS; i++) {
            for (int op = 0; op < N_OPS; op++) {
                char sock[300], what[200];
                struct opargs a;
                struct counts before;
                struct expect x = { 0 };
                struct opres r;
                int fd0;

                if ((op == OP_DEVA || op == OP_DEVD) && !g_pci[0])
                    continue;
                fleet_sock(&f, sock, sizeof(sock));
                a = cell_args(sock);
                snprintf(what, sizeof(what), "%s/%s/vminfo-type-%zu", f.gen, op_names[op], i);
                cell_prepare(sock, (enum op)op, &a);
                set_override(sock, bad_infos[i]);
                before = get_counts(sock);
                fd0 = sup_count_fds();
                assert_int_equal(run_op(sock, (enum op)op, &a, g_timeout_ms, &r), 0);
                if (sup_count_fds() != fd0)
                    fail_msg("%s: fds %d before, %d after", what, fd0, sup_count_fds());
                set_override(sock, "");
                x.out = O_ERR;
                x.prefix = "decode vm.info: ";
                x.puts = 0;
                x.check_reality = true;
                cell_check(what, sock, (enum op)op, &r, &x, &before, true);
            }
        }
        fleet_stop(&f);
    }
    devices_cells_done();
}

/* ------------------------------------------------------------ connections */

static void run_conn_cell(const char *kind, const char *sock, enum op op, int want_err,
                          const char *want_exact)
{
    char what[200];
    struct opargs a = cell_args(sock);
    struct expect x = { 0 };
    struct opres r;
    int fd0 = sup_count_fds();

    snprintf(what, sizeof(what), "-/%s/%s", op_names[op], kind);
    assert_int_equal(run_op(sock, op, &a, g_timeout_ms, &r), 0);
    if (sup_count_fds() != fd0)
        fail_msg("%s: fds %d before, %d after", what, fd0, sup_count_fds());
    x.out = O_ERR;
    x.err = want_err;
    x.exact = want_exact;
    cell_check(what, sock, op, &r, &x, NULL, false);
}

static void test_socket_missing_and_refused(void **state)
{
    char *dir = sup_tmpdir(), missing[300], stale[300], exact[600];

    (void)state;
    snprintf(missing, sizeof(missing), "%s/missing.sock", dir);
    snprintf(stale, sizeof(stale), "%s/stale.sock", dir);
    /* A socket file nobody listens on, as a dead VMM leaves behind. */
    close(sup_unix_bind(stale, false));
    for (int op = 0; op < N_OPS; op++) {
        snprintf(exact, sizeof(exact), "query vm.info: connect(%s): No such file or directory",
                 missing);
        run_conn_cell("socket-missing", missing, (enum op)op, -ENOENT, exact);
        snprintf(exact, sizeof(exact), "query vm.info: connect(%s): Connection refused", stale);
        run_conn_cell("connect-refused", stale, (enum op)op, -ECONNREFUSED, exact);
    }
    sup_rmrf(dir);
    free(dir);
}

/* Root passes every permission check, so the denied cells run the engine
 * in a child that dropped to nobody (65534); the child reports through a
 * pipe and the parent asserts. */
static void perm_cell(const char *kind, const char *sock, enum op op)
{
    int p[2], st, fd0 = sup_count_fds();
    pid_t pid;
    struct opres r;
    ssize_t n;
    char what[200], exact[600];

    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct opargs a = cell_args(sock);

        close(p[0]);
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(3);
        memset(&r, 0, sizeof(r));
        if (run_op(sock, op, &a, g_timeout_ms, &r) != 0)
            r.calls = -1;
        n = write(p[1], &r, sizeof(r));
        _exit(n == (ssize_t)sizeof(r) ? 0 : 4);
    }
    close(p[1]);
    memset(&r, 0, sizeof(r));
    n = read(p[0], &r, sizeof(r));
    close(p[0]);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(n, (ssize_t)sizeof(r));
    assert_int_equal(sup_count_fds(), fd0);
    snprintf(what, sizeof(what), "-/%s/%s", op_names[op], kind);
    snprintf(exact, sizeof(exact), "query vm.info: connect(%s): Permission denied", sock);
    {
        struct expect x = { O_ERR, exact, NULL, -EACCES, 0, false };

        cell_check(what, sock, op, &r, &x, NULL, false);
    }
}

static void test_permission_denied(void **state)
{
    char *dir = sup_tmpdir(), sub[300], closed[300], s1[400], s2[400];
    int l1, l2;

    (void)state;
    /* The tmp dir is 0700; nobody must be able to reach the open parts. */
    assert_int_equal(chmod(dir, 0755), 0);
    snprintf(sub, sizeof(sub), "%s/open", dir);
    snprintf(closed, sizeof(closed), "%s/closed", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(mkdir(closed, 0700), 0);
    snprintf(s1, sizeof(s1), "%s/api.sock", sub);
    snprintf(s2, sizeof(s2), "%s/api.sock", closed);
    l1 = sup_unix_bind(s1, true);
    l2 = sup_unix_bind(s2, true);
    /* A socket without write permission, and one in a dir without search
     * permission: both are EACCES for connect. */
    assert_int_equal(chmod(s1, 0), 0);
    for (int op = 0; op < N_OPS; op++) {
        perm_cell("socket-mode-000", s1, (enum op)op);
        perm_cell("dir-without-x", s2, (enum op)op);
    }
    close(l1);
    close(l2);
    sup_rmrf(dir);
    free(dir);
}

static int raw_connect(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Every held connection has had one reply, so chsim has accepted (and
 * counted) all of them before the engine connects. */
static void hold_round_trip(int fd)
{
    static const char req[] = "GET /api/v1/vmm.ping HTTP/1.1\r\nHost: localhost\r\n\r\n";
    char buf[1024];
    struct pollfd pfd = { .fd = fd, .events = POLLIN };

    assert_int_equal(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(req) - 1);
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    assert_true(recv(fd, buf, sizeof(buf), 0) > 0);
}

static struct counts counts_when_free(const char *sock)
{
    for (int i = 0; i < 200; i++) {
        if (sup_chsim_count(sock, "vm.info") >= 0)
            break;
        usleep(10000);
    }
    return get_counts(sock);
}

static void test_connection_cap(void **state)
{
    (void)state;
    for (int g = 0; g < N_GENS; g++) {
        struct fleet f;

        fleet_start(&f, gens[g]);
        for (int op = 0; op < N_OPS; op++) {
            char sock[300], what[200];
            struct opargs a;
            struct counts before;
            struct opres r;
            int held[10], fd0;
            struct expect x = { O_ERR,
                                "query vm.info: GET http://localhost/api/v1/vm.info " ARROW
                                " 503: Too many open connections",
                                NULL, -EREMOTEIO, 0, true };

            if ((op == OP_DEVA || op == OP_DEVD) && !g_pci[0])
                continue;
            fleet_sock(&f, sock, sizeof(sock));
            a = cell_args(sock);
            snprintf(what, sizeof(what), "%s/%s/10-connection-cap", f.gen, op_names[op]);
            cell_prepare(sock, (enum op)op, &a);
            before = get_counts(sock);
            for (int i = 0; i < 10; i++) {
                held[i] = raw_connect(sock);
                hold_round_trip(held[i]);
            }
            fd0 = sup_count_fds();
            assert_int_equal(run_op(sock, (enum op)op, &a, g_timeout_ms, &r), 0);
            if (sup_count_fds() != fd0)
                fail_msg("%s: fds %d before, %d after", what, fd0, sup_count_fds());
            for (int i = 0; i < 10; i++)
                close(held[i]);
            (void)counts_when_free(sock);
            cell_check(what, sock, (enum op)op, &r, &x, &before, true);
        }
        fleet_stop(&f);
    }
    devices_cells_done();
}

/* ------------------------------------------------------------ recorded VMs */

/* A VM recorded in a temp root's store (state running, binary chsim),
 * served by a chsim started with the record's api.sock and pidfile, so
 * operations go through resolution and the running gate. */
struct recvm {
    char *root, *run_dir, *sock, *pidfile;
    char id[STORE_ID_LEN + 1];
    pid_t pid;
};

static int recvm_add_cb(store_db *db, void *priv, char *err, size_t errlen)
{
    return store_db_add(db, priv, err, errlen);
}

static void recvm_start(struct recvm *v, const char *name)
{
    static const char *const extra[] = { "--memory", "size=512M,shared=on", "--no-connect",
                                         NULL };
    char err[BASE_ERRSTR_MAX];
    store_vm vm;

    memset(v, 0, sizeof(*v));
    v->root = sup_tmpdir();
    assert_int_equal(store_new_id(v->id), 0);
    v->run_dir = store_default_run_dir(v->root, STORE_BACKEND_CH, v->id);
    assert_non_null(v->run_dir);
    if (safefile_mkdir_private(v->run_dir, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    v->sock = sup_asprintf("%s/api.sock", v->run_dir);
    v->pidfile = sup_asprintf("%s/ch.pid", v->run_dir);
    v->pid = sup_chsim_start(v->sock, extra);
    assert_true(v->pid > 0);
    if (safefile_pidfile_write(v->pidfile, v->pid, err, sizeof(err)) < 0)
        fail_msg("%s", err);

    memset(&vm, 0, sizeof(vm));
    memcpy(vm.id, v->id, sizeof(vm.id));
    vm.backend = STORE_BACKEND_CH;
    vm.state = STORE_RUNNING;
    vm.config.name = strdup(name);
    vm.config.cpu = 1;
    vm.config.memory = 512ull << 20;
    vm.config.shared_memory = true;
    vm.run_dir = strdup(v->run_dir);
    vm.log_dir = strdup(v->run_dir);
    vm.binary = sup_build_path("chsim");
    vm.created_at = store_now();
    vm.updated_at = store_now();
    vm.started_at = store_now();
    if (store_update(v->root, STORE_BACKEND_CH, recvm_add_cb, &vm, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    store_vm_fini(&vm);
}

static void recvm_kill(void *arg)
{
    struct recvm *v = arg;
    int st;

    if (v->pid <= 0)
        return;
    kill(v->pid, SIGKILL);
    assert_int_equal(waitpid(v->pid, &st, 0), v->pid);
    v->pid = 0;
}

static void recvm_stop(struct recvm *v)
{
    if (v->pid > 0)
        sup_kill(v->pid);
    sup_rmrf(v->root);
    free(v->root);
    free(v->run_dir);
    free(v->sock);
    free(v->pidfile);
}

/* One cell on a recorded VM: op on the ref "rec" with a fault on ep. */
static void run_rec_cell(const char *mode, const char *ep, enum op op, struct expect *x,
                         unsigned timeout_ms)
{
    struct recvm v;
    struct opargs a;
    struct counts before;
    struct opres r;
    char what[200];
    int fd0;

    recvm_start(&v, "rec");
    a = cell_args(v.sock);
    snprintf(what, sizeof(what), "recorded/%s/%s@%s", op_names[op], mode, ep);
    cell_prepare(v.sock, op, &a);
    arm_fault(v.sock, ep, mode);
    before = get_counts(v.sock);
    fd0 = sup_count_fds();
    assert_int_equal(run_op_in(v.root, "rec", op, &a, timeout_ms, &r, NULL, NULL), 0);
    if (sup_count_fds() != fd0)
        fail_msg("%s: fds %d before, %d after", what, fd0, sup_count_fds());
    cell_check(what, v.sock, op, &r, x, &before, true);
    recvm_stop(&v);
}

static void test_recorded_vm(void **state)
{
    struct expect lost = { O_LOST_OK, NULL, NULL, 0, 1, true };
    struct expect info_timeout = { O_ERR, NULL, "query vm.info: timeout after ", -ETIMEDOUT, 0,
                                   true };
    struct expect lost_detach = { O_LOST_OK, NULL, NULL, 0, 1, true };

    (void)state;
    /* A lost reply through the running gate: vm.info shows the share. */
    run_rec_cell("close-before-reply", "vm.add-fs", OP_FSA, &lost, g_timeout_ms);
    run_rec_cell("close-before-reply", "vm.remove-device", OP_FSD, &lost_detach, g_timeout_ms);
    /* Never a reply, with a short timeout. */
    run_rec_cell("never-reply", "vm.add-fs", OP_FSA, &lost, g_timeout_ms);
    run_rec_cell("never-reply", "vm.info", OP_FSA, &info_timeout, g_timeout_ms);
    run_rec_cell("never-reply", "vm.info", OP_LIST, &info_timeout, g_timeout_ms);
}

/* The VMM is SIGKILLed after the submit, before the loop runs: the gate
 * (when it runs from the loop) no longer passes, or the connect fails.  A
 * list of a VM that is not running is empty, not an error. */
static void test_recorded_vm_killed(void **state)
{
    static const enum op ops[] = { OP_FSA, OP_FSD, OP_LIST };

    (void)state;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        enum op op = ops[i];
        struct recvm v;
        struct opargs a;
        struct opres r;
        struct expect x = { O_ERR, NULL, NULL, 0, 0, false };
        char what[200], gate_pid[200], gate_pidfile[200], conn[400];
        int fd0;

        recvm_start(&v, "rec");
        a = cell_args(v.sock);
        snprintf(what, sizeof(what), "recorded/%s/sigkill-after-submit", op_names[op]);
        /* The list cell's VM holds a share, so an empty listing is news. */
        cell_prepare(v.sock, op == OP_LIST ? OP_FSD : op, &a);
        snprintf(gate_pid, sizeof(gate_pid), "vm %s pid %d ", v.id, (int)v.pid);
        snprintf(gate_pidfile, sizeof(gate_pidfile), "vm %s read pidfile: ", v.id);
        snprintf(conn, sizeof(conn), "connect(%s): ", v.sock);
        fd0 = sup_count_fds();
        assert_int_equal(run_op_in(v.root, "rec", op, &a, g_timeout_ms, &r, recvm_kill, &v), 0);
        if (sup_count_fds() != fd0)
            fail_msg("%s: fds %d before, %d after", what, fd0, sup_count_fds());
        if (op == OP_LIST) {
            x.out = O_OK;
            cell_check(what, v.sock, op, &r, &x, NULL, false);
            if (r.n_fs != 0 || r.n_dev != 0)
                fail_msg("%s: listing of a dead VM: %s", what, r.list);
            recvm_stop(&v);
            continue;
        }
        cell_check(what, v.sock, op, &r, &x, NULL, false);
        if (strncmp(r.errstr, gate_pid, strlen(gate_pid)) == 0 ||
            strncmp(r.errstr, gate_pidfile, strlen(gate_pidfile)) == 0) {
            if (r.err != -EHOSTDOWN || !strstr(r.errstr, ": VM not running"))
                fail_msg("%s: gate error %d \"%s\"", what, r.err, r.errstr);
        } else if (!strstr(r.errstr, conn) || r.err != -ECONNREFUSED) {
            fail_msg("%s: want the gate's text or a connect error, got %d \"%s\"", what,
                     r.err, r.errstr);
        }
        recvm_stop(&v);
    }
}

/* ------------------------------------------------------------ process faults */

/* Process-level faults on a recorded VM: the VMM killed, or another process
 * serving its api.sock, between the running gate and the requests.  The
 * gate checks the pidfile's process once per operation; every connection
 * the operation makes must then reach that very process (its pid, as the
 * kernel recorded it for the listening socket), so a request never goes
 * to a process that took the path since. */

static const char *const g_rec_extra[] = { "--memory", "size=512M,shared=on", "--no-connect",
                                           NULL };

/* How the racy cells came out: the PUT written before the VMM's exit
 * showed, or refused before a byte went out. */
static int g_race_written, g_race_unsent;

/* The process now serving sock was sent no request at all. */
static void assert_untouched(const char *what, const char *sock)
{
    struct counts c = get_counts(sock);
    int pause = sup_chsim_count(sock, "vm.pause");

    if (c.info || c.add_fs || c.add_dev || c.remove || pause)
        fail_msg("%s: the process now on %s got requests: vm.info %d, vm.add-fs %d, "
                 "vm.add-device %d, vm.remove-device %d, vm.pause %d", what, sock, c.info,
                 c.add_fs, c.add_dev, c.remove, pause);
}

/* A chsim with the very command line of the recorded one (so the cmdline
 * test cannot tell them apart) takes its api.sock after the submit, before
 * the loop runs; the recorded one is SIGKILLed first, or stays alive. */
struct replace {
    struct recvm *v;
    bool kill_vmm;
    pid_t impostor;
};

static void replace_hook(void *arg)
{
    struct replace *rp = arg;

    if (rp->kill_vmm)
        recvm_kill(rp->v);
    rp->impostor = sup_chsim_start(rp->v->sock, g_rec_extra);
}

static void run_replaced_cell(enum op op, bool kill_vmm)
{
    struct recvm v;
    struct replace rp = { &v, kill_vmm, 0 };
    struct opargs a;
    struct opres r;
    struct expect x = { O_ERR, NULL, NULL, 0, 0, false };
    char what[200], exact[600];
    pid_t vmm;
    int fd0;

    recvm_start(&v, "rec");
    vmm = v.pid;
    a = cell_args(v.sock);
    snprintf(what, sizeof(what), "recorded/%s/%s", op_names[op],
             kill_vmm ? "sigkill-then-socket-taken" : "socket-taken-vmm-alive");
    /* The list cell's VM holds a share, so a listing of it would be news. */
    cell_prepare(v.sock, op == OP_LIST ? OP_FSD : op, &a);
    fd0 = sup_count_fds();
    assert_int_equal(run_op_in(v.root, "rec", op, &a, g_timeout_ms, &r, replace_hook, &rp), 0);
    if (sup_count_fds() != fd0)
        fail_msg("%s: fds %d before, %d after", what, fd0, sup_count_fds());
    assert_true(rp.impostor > 0);
    assert_int_equal(sup_listener_pid(v.sock), rp.impostor);
    if (kill_vmm && op == OP_LIST) {
        /* The gate fails: a VM that is not running lists nothing. */
        x.out = O_OK;
    } else if (kill_vmm) {
        snprintf(exact, sizeof(exact), "vm %s pid %d not cloud-hypervisor: VM not running",
                 v.id, (int)vmm);
        x.exact = exact;
        x.err = -EHOSTDOWN;
    } else {
        /* The gate passed (the VMM lives); the connect reaches another
         * process and is closed before a byte is sent. */
        snprintf(exact, sizeof(exact), "%s: connect(%s): peer is pid %d, not the expected pid %d",
                 op == OP_PAUSE ? "vm.pause" : "query vm.info", v.sock, (int)rp.impostor,
                 (int)vmm);
        x.exact = exact;
        x.err = -ESRCH;
    }
    cell_check(what, v.sock, op, &r, &x, NULL, false);
    if (op == OP_LIST && (r.n_fs > 0 || r.n_dev > 0))
        fail_msg("%s: listing %s", what, r.list);
    assert_untouched(what, v.sock);
    sup_kill(rp.impostor);
    recvm_stop(&v);
}

/* Another process on the api.sock before the first connect. */
static void test_recorded_vm_replaced(void **state)
{
    static const enum op ops[] = { OP_FSA, OP_FSD, OP_DEVA, OP_DEVD, OP_LIST, OP_PAUSE };

    (void)state;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if ((ops[i] == OP_DEVA || ops[i] == OP_DEVD) && !g_pci[0])
            continue;
        run_replaced_cell(ops[i], false);
        run_replaced_cell(ops[i], true);
    }
    devices_cells_done();
}

/* The VMM answers vm.info in full and exits ("die-after-reply"), or first
 * hands its api.sock to a fresh chsim that already accepts connections
 * ("handover"): either way the engine's PUT follows a reply from a VMM
 * that is gone.  The PUT goes out on the kept-alive connection, so it
 * races the exit: written into the dying socket (the reply is lost and the
 * reconcile vm.info must not be answered by another process), or refused
 * at once (a reconnect, which must not reach another process either). */
static void run_gone_before_put_cell(enum op op, bool handover)
{
    struct recvm v;
    struct opargs a;
    struct opres r;
    struct expect x = { O_ERR, NULL, NULL, 0, 0, false };
    char what[200], pre[128], refused[600], lost[800], unsent[800];
    pid_t vmm, succ = 0;
    int fd0, st;

    recvm_start(&v, "rec");
    vmm = v.pid;
    a = cell_args(v.sock);
    snprintf(what, sizeof(what), "recorded/%s/%s@vm.info", op_names[op],
             handover ? "handover" : "die-after-reply");
    cell_prepare(v.sock, op, &a);
    arm_fault(v.sock, "vm.info", handover ? "handover" : "die-after-reply");
    fd0 = sup_count_fds();
    assert_int_equal(run_op_in(v.root, "rec", op, &a, g_timeout_ms, &r, NULL, NULL), 0);
    if (sup_count_fds() != fd0)
        fail_msg("%s: fds %d before, %d after", what, fd0, sup_count_fds());
    assert_int_equal(waitpid(vmm, &st, 0), vmm);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    v.pid = 0;

    op_prefix(op, pre, sizeof(pre));
    if (handover) {
        succ = sup_listener_pid(v.sock);
        assert_true(succ > 0 && succ != vmm);
        snprintf(refused, sizeof(refused), "connect(%s): peer is pid %d, not the expected pid %d",
                 v.sock, (int)succ, (int)vmm);
    } else {
        snprintf(refused, sizeof(refused), "connect(%s): Connection refused", v.sock);
    }
    snprintf(lost, sizeof(lost), "%soutcome unknown: query vm.info: %s", pre, refused);
    snprintf(unsent, sizeof(unsent), "%s%s", pre, refused);
    cell_check(what, v.sock, op, &r, &x, NULL, false);
    if (r.err == -ECONNRESET && strcmp(r.errstr, lost) == 0)
        g_race_written++;
    else if (r.err == (handover ? -ESRCH : -ECONNREFUSED) && strcmp(r.errstr, unsent) == 0)
        g_race_unsent++;
    else
        fail_msg("%s: want %d \"%s\" or %d \"%s\", got %d \"%s\"", what, -ECONNRESET, lost,
                 handover ? -ESRCH : -ECONNREFUSED, unsent, r.err, r.errstr);
    if (handover) {
        /* Neither the PUT nor the reconcile reached the successor, so no
         * state-changing call went anywhere but (at most once) into the
         * dead VMM's socket. */
        assert_untouched(what, v.sock);
        /* Orphaned by its parent's exit, it is this process's child. */
        kill(succ, SIGKILL);
        assert_int_equal(waitpid(succ, &st, 0), succ);
    }
    recvm_stop(&v);
}

static void test_recorded_vm_gone_before_put(void **state)
{
    static const enum op ops[] = { OP_FSA, OP_FSD, OP_DEVA, OP_DEVD };

    (void)state;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if ((ops[i] == OP_DEVA || ops[i] == OP_DEVD) && !g_pci[0])
            continue;
        run_gone_before_put_cell(ops[i], false);
        run_gone_before_put_cell(ops[i], true);
    }
    fprintf(stderr, "process faults: PUT written before the exit showed %d, refused unsent %d\n",
            g_race_written, g_race_unsent);
    devices_cells_done();
}

/* The pidfile is rewritten to name another live process while an
 * operation that passed the gate waits for its vm.info reply (held by
 * chsim until the rewrite is done).  That operation goes on with the VMM
 * its gate verified, over the connection checked against it: exactly one
 * PUT, to the real VMM.  The next operation reads the pidfile again and is
 * refused by the gate before any request. */
struct rewrite {
    struct recvm *v;
    pid_t other;
    int info0;
    ev_timer poll;
    int done;                 /* 1 rewritten and released, -1 failed */
    char err[BASE_ERRSTR_MAX];
};

static void rewrite_poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct rewrite *rw = w->data;
    char err[BASE_ERRSTR_MAX];
    int n = sup_chsim_count(rw->v->sock, "vm.info");

    (void)revents;
    /* chsim counts a request as it parses it and holds the reply in the
     * same turn: once counted, the gate has passed and the reply waits. */
    if (n >= 0 && n <= rw->info0)
        return;
    ev_timer_stop(loop, w);
    rw->done = -1;
    if (n < 0)
        snprintf(rw->err, sizeof(rw->err), "stats of %s unreadable", rw->v->sock);
    else if (safefile_pidfile_write(rw->v->pidfile, rw->other, err, sizeof(err)) < 0)
        snprintf(rw->err, sizeof(rw->err), "%s", err);
    else if (sup_call_sync(rw->v->sock, "PUT", "/chsim/release", "", 5000, NULL, NULL, NULL, err,
                           sizeof(err)) != 0)
        snprintf(rw->err, sizeof(rw->err), "release: %.1400s", err);
    else
        rw->done = 1;
}

static void rewrite_hook(void *arg)
{
    struct rewrite *rw = arg;

    ev_timer_init(&rw->poll, rewrite_poll_cb, 0.002, 0.002);
    rw->poll.data = rw;
    ev_timer_start(g_hook_loop, &rw->poll);
}

static enum op op_inverse(enum op op)
{
    switch (op) {
    case OP_FSA: return OP_FSD;
    case OP_FSD: return OP_FSA;
    case OP_DEVA: return OP_DEVD;
    default: return OP_DEVA;
    }
}

static void run_pidfile_rewritten_cell(enum op op)
{
    static char *const sleeper_argv[] = { (char *)"/bin/sleep", (char *)"600", NULL };
    struct recvm v;
    struct rewrite rw = { 0 };
    struct opargs a;
    struct opres r;
    struct counts before;
    struct expect ok = { O_OK, NULL, NULL, 0, 1, true };
    struct expect refused = { O_ERR, NULL, NULL, -EHOSTDOWN, 0, true };
    char what[200], exact[600];
    enum op next = op_inverse(op);
    int fd0;

    recvm_start(&v, "rec");
    a = cell_args(v.sock);
    rw.v = &v;
    rw.other = sup_spawn(sleeper_argv);
    assert_true(rw.other > 0);
    snprintf(what, sizeof(what), "recorded/%s/pidfile-rewritten-after-gate", op_names[op]);
    cell_prepare(v.sock, op, &a);
    arm_fault(v.sock, "vm.info", "hold");
    before = get_counts(v.sock);
    rw.info0 = before.info;
    fd0 = sup_count_fds();
    assert_int_equal(run_op_in(v.root, "rec", op, &a, g_timeout_ms, &r, rewrite_hook, &rw), 0);
    if (sup_count_fds() != fd0)
        fail_msg("%s: fds %d before, %d after", what, fd0, sup_count_fds());
    if (rw.done != 1)
        fail_msg("%s: the pidfile was not rewritten in time (%d): %s", what, rw.done, rw.err);
    cell_check(what, v.sock, op, &r, &ok, &before, true);

    /* The next operation meets the rewritten pidfile. */
    snprintf(what, sizeof(what), "recorded/%s/after-pidfile-rewritten", op_names[next]);
    snprintf(exact, sizeof(exact), "vm %s pid %d not cloud-hypervisor: VM not running", v.id,
             (int)rw.other);
    refused.exact = exact;
    before = get_counts(v.sock);
    assert_int_equal(run_op_in(v.root, "rec", next, &a, g_timeout_ms, &r, NULL, NULL), 0);
    if (get_counts(v.sock).info != before.info)
        fail_msg("%s: vm.info sent past a failed gate", what);
    cell_check(what, v.sock, next, &r, &refused, &before, true);
    sup_kill(rw.other);
    recvm_stop(&v);
}

static void test_recorded_vm_pidfile_rewritten(void **state)
{
    static const enum op ops[] = { OP_FSA, OP_FSD, OP_DEVA, OP_DEVD };

    (void)state;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if ((ops[i] == OP_DEVA || ops[i] == OP_DEVD) && !g_pci[0])
            continue;
        run_pidfile_rewritten_cell(ops[i]);
    }
    devices_cells_done();
}

/* ------------------------------------------------------------ main */

static int report(void **state)
{
    (void)state;
    fprintf(stderr, "fault matrix: %d cells checked so far\n", g_cells);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_socket_missing_and_refused, report),
        cmocka_unit_test_teardown(test_permission_denied, report),
        cmocka_unit_test_teardown(test_connection_cap, report),
        cmocka_unit_test_teardown(test_fault_modes, report),
        cmocka_unit_test_teardown(test_vmm_dies, report),
        cmocka_unit_test_teardown(test_status_bodies, report),
        cmocka_unit_test_teardown(test_vminfo_wrong_types, report),
        cmocka_unit_test_teardown(test_recorded_vm, report),
        cmocka_unit_test_teardown(test_recorded_vm_killed, report),
        cmocka_unit_test_teardown(test_recorded_vm_replaced, report),
        cmocka_unit_test_teardown(test_recorded_vm_gone_before_put, report),
        cmocka_unit_test_teardown(test_recorded_vm_pidfile_rewritten, report),
    };
    const char *vg = getenv("COCOON_VALGRIND");

    g_verbose = getenv("COCOON_FAULTS_VERBOSE") != NULL;
    g_valgrind = vg && *vg && strcmp(vg, "0") != 0;
    g_timeout_ms = g_valgrind ? 1500 : 300;
    /* A handover's successor outlives its parent chsim: it must become
     * this process's child, to be killed and reaped. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
        perror("prctl(PR_SET_CHILD_SUBREAPER)");
        return 1;
    }
    sup_first_pci(g_pci, sizeof(g_pci));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
