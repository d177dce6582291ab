#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/gate.h"
#include "backends/launch.h"
#include "backends/store.h"
#include "backends/vmsjson.h"
#include "cli/cli.h"
#include "engine/cocoon.h"
#include "http/base.h"

static char *abs_or_copy(const char *p)
{
    char *r;

    if (!p)
        return NULL;
    r = realpath(p, NULL);
    return r ? r : strdup(p);
}

/* Fills vm from the create flags.  Usage errors return CLI_EXIT_USAGE after
 * printing; others CLI_EXIT_FAIL.  --fc with --shared-memory is
 * refused before anything else happens. */
static int vm_from_flags(const cli_ctx *c, store_vm *vm)
{
    const char *name = cli_flag_str(c, "name");
    const char *cpus = cli_flag_str(c, "cpu");
    const char *mem = cli_flag_str(c, "memory");
    const char *const *disks;
    size_t nd;
    char *end;
    long cpu;
    int rc;

    if (cli_flag_bool(c, "fc") && cli_flag_bool(c, "shared-memory"))
        return cli_error("--fc and --shared-memory are mutually exclusive: "
                         "Firecracker does not support vhost-user-fs hot-plug");
    memset(vm, 0, sizeof(*vm));
    errno = 0;
    cpu = strtol(cpus, &end, 10);
    if (errno || end == cpus || *end || cpu < 1 || cpu > 512)
        return cli_usage_error(c, "invalid argument \"%s\" for \"--cpu\" flag: "
                                  "expected an integer between 1 and 512", cpus);
    if (launch_parse_size(mem, &vm->config.memory) < 0)
        return cli_usage_error(c, "invalid argument \"%s\" for \"--memory\" flag: "
                                  "expected a size like 512M, 2G or bytes", mem);
    if (name && !store_name_valid(name))
        return cli_error("invalid name \"%s\": must match ^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$",
                         name);
    rc = store_new_id(vm->id);
    if (rc < 0)
        return cli_error("generate VM id: %s", strerror(-rc));
    vm->backend = cli_flag_bool(c, "fc") ? STORE_BACKEND_FC : STORE_BACKEND_CH;
    vm->state = STORE_CREATED;
    vm->config.cpu = (int)cpu;
    vm->config.shared_memory = cli_flag_bool(c, "shared-memory");
    if (name) {
        vm->config.name = strdup(name);
    } else {
        char buf[16];

        snprintf(buf, sizeof(buf), "vm-%.8s", vm->id);
        for (char *p = buf; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        vm->config.name = strdup(buf);
    }
    vm->config.kernel = abs_or_copy(cli_flag_str(c, "kernel"));
    vm->config.initramfs = abs_or_copy(cli_flag_str(c, "initramfs"));
    if (cli_flag_str(c, "cmdline"))
        vm->config.cmdline = strdup(cli_flag_str(c, "cmdline"));
    disks = cli_flag_list(c, "disk", &nd);
    if (nd) {
        vm->config.disks = calloc(nd, sizeof(char *));
        if (vm->config.disks)
            for (size_t i = 0; i < nd; i++)
                vm->config.disks[vm->config.n_disks++] = abs_or_copy(disks[i]);
    }
    vm->run_dir = store_default_run_dir(c->root, vm->backend, vm->id);
    vm->log_dir = vm->run_dir ? strdup(vm->run_dir) : NULL;
    vm->created_at = store_now();
    vm->updated_at = vm->created_at ? strdup(vm->created_at) : NULL;
    if (!vm->config.name || !vm->run_dir || !vm->log_dir || !vm->created_at ||
        (nd && vm->config.n_disks != nd)) {
        store_vm_fini(vm);
        return cli_error("out of memory");
    }
    return 0;
}

static int create_record(const cli_ctx *c, store_vm *vm)
{
    char err[BASE_ERRSTR_MAX];
    store_vm copy;
    int rc;

    rc = vm_from_flags(c, vm);
    if (rc)
        return rc;
    if (store_vm_copy(&copy, vm) < 0) {
        store_vm_fini(vm);
        return cli_error("out of memory");
    }
    rc = store_create(c->root, &copy, err, sizeof(err));
    store_vm_fini(&copy);
    if (rc < 0) {
        store_vm_fini(vm);
        return cli_error("%s", err);
    }
    return 0;
}

static void print_vm_line(const cli_ctx *c, const store_vm *vm, const char *what, pid_t pid)
{
    if (c->json) {
        yajl_gen g = cli_gen_new(false);

        if (!g)
            return;
        yajl_gen_map_open(g);
        cli_gen_kv_str(g, "id", vm->id);
        cli_gen_kv_str(g, "name", vm->config.name);
        cli_gen_kv_str(g, "state", store_state_name(vm->state));
        if (pid > 0)
            cli_gen_kv_int(g, "pid", pid);
        yajl_gen_map_close(g);
        cli_gen_print(g, stdout);
        return;
    }
    /* Records written by other tools or older versions may have no name. */
    const char *name = vm->config.name ? vm->config.name : vm->id;

    if (pid > 0)
        cli_printf(stdout, "%s: %s (id=%s, pid=%d)\n", name, what, vm->id, (int)pid);
    else
        cli_printf(stdout, "%s: %s (id=%s)\n", name, what, vm->id);
}

int cli_vm_create(cli_ctx *c)
{
    store_vm vm;
    int rc = create_record(c, &vm);

    if (rc)
        return rc;
    print_vm_line(c, &vm, "created", 0);
    store_vm_fini(&vm);
    return CLI_EXIT_OK;
}

/* The --ch-binary/--fc-binary flag of vm's backend, else the binary the
 * record names (the one it was last started with), else the backend's
 * environment variable, else the default name; commands without the flag
 * read it as not given. */
static const char *vmm_binary(const cli_ctx *c, const store_vm *vm)
{
    bool fc = strcmp(vm->backend, STORE_BACKEND_FC) == 0;
    const char *flag = cli_flag_str(c, fc ? "fc-binary" : "ch-binary");

    if ((!flag || !*flag) && vm->binary && *vm->binary)
        return vm->binary;
    return fc ? launch_pick_binary(flag, "COCOON_FC_BINARY", LAUNCH_DEFAULT_FC)
              : launch_pick_binary(flag, "COCOON_CH_BINARY", LAUNCH_DEFAULT_CH);
}

/* Whether a VMM of vm may be alive whatever its record says: found by its
 * pidfile, its socket's listener or its command line, or its socket held
 * by something that cannot be told apart (the stop then says why). */
static bool vmm_alive(const cli_ctx *c, const store_vm *vm)
{
    char err[BASE_ERRSTR_MAX], *abs = launch_which(vmm_binary(c, vm));
    pid_t pid = 0;
    int rc = gate_find(vm, abs ? abs : vmm_binary(c, vm), &pid, err, sizeof(err));

    free(abs);
    return rc != -ESRCH && rc != -EINVAL;
}

/* A stop has nothing to do: the record says the VM is not running and no
 * VMM of it is alive. */
static bool stop_needless(const cli_ctx *c, const store_vm *vm)
{
    return vm->state != STORE_RUNNING && vm->state != STORE_ERROR && !vmm_alive(c, vm);
}

/* A signal that ends cocoon between a VMM's launch and its record would
 * leave a VMM no record names: SIGINT, SIGTERM and SIGHUP wait while VMMs
 * start, until each is recorded or stopped and the results are written. */
static void signals_hold(sigset_t *old)
{
    sigset_t s;

    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGHUP);
    sigprocmask(SIG_BLOCK, &s, old);
}

static void signals_release(const sigset_t *old)
{
    cli_out_flush(stdout);
    cli_out_flush(stderr);
    sigprocmask(SIG_SETMASK, old, NULL);
}

typedef int vm_fn(const cli_ctx *c, store_vm *vm);

/* A VM argument resolved and locked: another start/stop/rm of the VM
 * waits until this command is done with it. */
typedef struct vm_arg {
    store_vm vm;
    int lock;
} vm_arg;

/* Resolves ref, takes the VM's lock and re-reads the record: another
 * start/stop/rm of this VM may have changed or removed it while this one
 * waited.  0, or an exit code after printing the error. */
static int vm_arg_lock(const cli_ctx *c, const char *ref, vm_arg *a)
{
    char err[BASE_ERRSTR_MAX], id[STORE_ID_LEN + 1];

    a->lock = -1;
    if (store_resolve(c->root, ref, &a->vm, err, sizeof(err)) < 0)
        return cli_error("vm %s: %s", ref, err);
    a->lock = store_vm_lock(c->root, a->vm.backend, a->vm.id, err, sizeof(err));
    if (a->lock < 0) {
        store_vm_fini(&a->vm);
        return cli_error("vm %s: %s", ref, err);
    }
    memcpy(id, a->vm.id, sizeof(id));
    store_vm_fini(&a->vm);
    if (store_resolve(c->root, id, &a->vm, err, sizeof(err)) < 0) {
        store_vm_unlock(a->lock);
        a->lock = -1;
        return cli_error("vm %s: %s", ref, err);
    }
    return 0;
}

static void vm_arg_release(vm_arg *a)
{
    store_vm_unlock(a->lock);
    store_vm_fini(&a->vm);
}

/* Runs fn on every VM argument; one failure does not stop the others. */
static int each_vm(const cli_ctx *c, vm_fn *fn)
{
    int rc = CLI_EXIT_OK;

    for (size_t i = 0; i < c->n_args; i++) {
        vm_arg a;

        if (vm_arg_lock(c, c->args[i], &a)) {
            rc = CLI_EXIT_FAIL;
            continue;
        }
        if (fn(c, &a.vm) != CLI_EXIT_OK)
            rc = CLI_EXIT_FAIL;
        vm_arg_release(&a);
    }
    return rc;
}

static void lc_done_cb(cocoon_engine *e, const cocoon_result *r, void *priv)
{
    cli_lc_job *j = priv;

    (void)e;
    j->done = true;
    j->err = r->err;
    j->pid = r->pid;
    j->errstr = strdup(r->errstr ? r->errstr : "");
}

void cli_lc_run(const cli_ctx *c, cli_lc_job *jobs, size_t n, cli_lc_submit_fn *submit,
                const char *what, const cocoon_vm_opts *tmpl)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    cocoon_options opt = { .size = sizeof(cocoon_options), .root_dir = c->root,
                           .timeout_ms = c->timeout_ms, .ch_binary = cli_default_ch_binary() };
    cocoon_engine *e = loop ? cocoon_engine_new(loop, &opt) : NULL;
    size_t pending = 0;
    bool launches = submit == cocoon_vm_start || submit == cocoon_vm_restore;
    sigset_t old;

    if (launches)
        signals_hold(&old);
    for (size_t i = 0; i < n; i++) {
        cocoon_vm_opts o = COCOON_VM_OPTS_INIT;
        int rc;

        if (tmpl)
            o = *tmpl;
        if (jobs[i].dir)
            o.dir = jobs[i].dir;
        o.binary = vmm_binary(c, jobs[i].vm);
        rc = !e ? -ENOMEM : submit(e, jobs[i].vm->id, &o, lc_done_cb, &jobs[i]);
        if (rc < 0) {
            jobs[i].done = true;
            jobs[i].err = rc;
            if (asprintf(&jobs[i].errstr, "%s vm %s: %s", what, jobs[i].vm->id,
                         strerror(-rc)) < 0)
                jobs[i].errstr = NULL;
            continue;
        }
        jobs[i].submitted = true;
        pending++;
    }
    while (pending) {
        size_t left = 0;

        if (!ev_run(loop, EVRUN_ONCE))
            break;
        for (size_t i = 0; i < n; i++)
            left += jobs[i].submitted && !jobs[i].done;
        pending = left;
    }
    cocoon_engine_free(e);
    if (loop)
        ev_loop_destroy(loop);
    if (launches)
        signals_release(&old);
}

static int start_report(const cli_ctx *c, store_vm *vm, const cli_lc_job *j)
{
    if (j->err)
        return cli_error("%s", j->errstr ? j->errstr : "start failed");
    vm->state = STORE_RUNNING;
    print_vm_line(c, vm, "running", j->pid);
    return CLI_EXIT_OK;
}

/* True when vm runs already (printed so). */
static bool start_needless(const cli_ctx *c, const store_vm *vm)
{
    char err[BASE_ERRSTR_MAX];
    pid_t pid = 0;

    if (vm->state == STORE_RUNNING &&
        gate_check(vm, cli_default_ch_binary(), &pid, err, sizeof(err)) == 0) {
        print_vm_line(c, vm, "already running", pid);
        return true;
    }
    return false;
}

static int start_one(const cli_ctx *c, store_vm *vm)
{
    cli_lc_job j = { .vm = vm };
    int rc;

    if (start_needless(c, vm))
        return CLI_EXIT_OK;
    cli_lc_run(c, &j, 1, cocoon_vm_start, "start", NULL);
    rc = start_report(c, vm, &j);
    free(j.errstr);
    return rc;
}

int cli_vm_run(cli_ctx *c)
{
    store_vm vm;
    char err[BASE_ERRSTR_MAX];
    int lock;
    int rc = create_record(c, &vm);

    if (rc)
        return rc;
    sigset_t old;

    lock = store_vm_lock(c->root, vm.backend, vm.id, err, sizeof(err));
    if (lock < 0) {
        store_vm_fini(&vm);
        return cli_error("%s", err);
    }
    signals_hold(&old);
    rc = start_one(c, &vm);
    signals_release(&old);
    store_vm_unlock(lock);
    store_vm_fini(&vm);
    return rc;
}

/* One VM argument of a start or stop. */
typedef struct lc_slot {
    char id[STORE_ID_LEN + 1];
    long first;             /* an earlier argument naming the same VM, or -1 */
    bool ok;                /* resolved and locked */
    bool skip;              /* nothing to do (printed) */
    vm_arg a;
    cli_lc_job job;
} lc_slot;

static int cmp_slot_id(const void *x, const void *y, void *slots)
{
    const size_t *a = x, *b = y;
    const lc_slot *sl = slots;

    return strcmp(sl[*a].id, sl[*b].id);
}

/* Prints the outcome of the VM of slot job_of: its own result, or for a
 * later mention of the same VM what a second start or stop would find. */
static int lc_report(const cli_ctx *c, lc_slot *job_of, bool start, bool dup)
{
    const cli_lc_job *j = &job_of->job;

    if (job_of->skip) {
        if (dup)
            print_vm_line(c, &job_of->a.vm, start ? "already running" : "not running", 0);
        return CLI_EXIT_OK;
    }
    if (j->err)
        return cli_error("%s", j->errstr ? j->errstr : "failed");
    if (dup) {
        print_vm_line(c, &job_of->a.vm, start ? "already running" : "not running",
                      start ? j->pid : 0);
        return CLI_EXIT_OK;
    }
    if (start)
        return start_report(c, &job_of->a.vm, j);
    job_of->a.vm.state = STORE_STOPPED;
    print_vm_line(c, &job_of->a.vm, "stopped", 0);
    return CLI_EXIT_OK;
}

/* start and stop over every VM argument through one engine, so many VMs
 * start or stop at once.  Each VM is locked once, and the locks are taken
 * in id order, so two commands naming the same VMs in another order cannot
 * wait on each other; results print in argument order. */
static int lc_each(cli_ctx *c, bool start, const cocoon_vm_opts *stop)
{
    lc_slot *sl = calloc(c->n_args + 1, sizeof(*sl));
    size_t *order = calloc(c->n_args + 1, sizeof(*order));
    cli_lc_job *jobs = calloc(c->n_args + 1, sizeof(*jobs));
    size_t n_order = 0, n = 0;
    int rc = CLI_EXIT_OK;

    if (!sl || !order || !jobs) {
        free(sl);
        free(order);
        free(jobs);
        return cli_error("out of memory");
    }
    for (size_t i = 0; i < c->n_args; i++) {
        char err[BASE_ERRSTR_MAX];
        store_vm vm;

        sl[i].first = -1;
        if (store_resolve(c->root, c->args[i], &vm, err, sizeof(err)) < 0) {
            rc = cli_error("vm %s: %s", c->args[i], err);
            continue;
        }
        memcpy(sl[i].id, vm.id, sizeof(sl[i].id));
        store_vm_fini(&vm);
        for (size_t k = 0; k < i && sl[i].first < 0; k++)
            if (sl[k].id[0] && sl[k].first < 0 && strcmp(sl[k].id, sl[i].id) == 0)
                sl[i].first = (long)k;
        if (sl[i].first < 0)
            order[n_order++] = i;
    }
    qsort_r(order, n_order, sizeof(*order), cmp_slot_id, sl);
    for (size_t k = 0; k < n_order; k++) {
        lc_slot *s = &sl[order[k]];

        s->ok = vm_arg_lock(c, s->id, &s->a) == 0;
        if (!s->ok) {
            rc = CLI_EXIT_FAIL;
            continue;
        }
        if (start) {
            s->skip = start_needless(c, &s->a.vm);
        } else {
            s->skip = stop_needless(c, &s->a.vm);
            if (s->skip)
                print_vm_line(c, &s->a.vm, "not running", 0);
        }
    }
    for (size_t i = 0; i < c->n_args; i++)
        if (sl[i].ok && !sl[i].skip)
            jobs[n++].vm = &sl[i].a.vm;
    cli_lc_run(c, jobs, n, start ? cocoon_vm_start : cocoon_vm_stop, start ? "start" : "stop", stop);
    for (size_t i = 0, k = 0; i < c->n_args; i++)
        if (sl[i].ok && !sl[i].skip)
            sl[i].job = jobs[k++];
    for (size_t i = 0; i < c->n_args; i++) {
        lc_slot *first = sl[i].first >= 0 ? &sl[sl[i].first] : &sl[i];

        if (first->ok && (!first->skip || sl[i].first >= 0) &&
            lc_report(c, first, start, sl[i].first >= 0) != CLI_EXIT_OK)
            rc = CLI_EXIT_FAIL;
    }
    for (size_t i = 0; i < c->n_args; i++) {
        free(sl[i].job.errstr);
        if (sl[i].ok)
            vm_arg_release(&sl[i].a);
    }
    free(sl);
    free(order);
    free(jobs);
    return rc;
}

int cli_vm_start(cli_ctx *c)
{
    sigset_t old;
    int rc;

    signals_hold(&old);
    rc = lc_each(c, true, NULL);
    signals_release(&old);
    return rc;
}

static int stop_one(const cli_ctx *c, store_vm *vm, bool quiet)
{
    cli_lc_job j = { .vm = vm };
    int rc = CLI_EXIT_OK;

    if (stop_needless(c, vm)) {
        if (!quiet)
            print_vm_line(c, vm, "not running", 0);
        return CLI_EXIT_OK;
    }
    cli_lc_run(c, &j, 1, cocoon_vm_stop, "stop", NULL);
    if (j.err)
        rc = cli_error("%s", j.errstr ? j.errstr : "stop failed");
    else if (!quiet)
        print_vm_line(c, vm, "stopped", 0);
    free(j.errstr);
    return rc;
}

/* --force: no shutdown request; --grace: the graceful window. */
int cli_vm_stop(cli_ctx *c)
{
    cocoon_vm_opts o = COCOON_VM_OPTS_INIT;
    const char *g = cli_flag_str(c, "grace");
    char *end;
    long s;

    if (cli_flag_bool(c, "force") && cli_flag_given(c, "grace"))
        return cli_usage_error(c, "--force and --grace cannot be used together: "
                                  "--force skips the graceful shutdown");
    errno = 0;
    s = strtol(g, &end, 10);
    if (errno || end == g || *end || s < 1 || s > 3600)
        return cli_usage_error(c, "invalid argument \"%s\" for \"--grace\" flag: expected "
                                  "1 to 3600 seconds (--force skips the graceful shutdown)", g);
    o.graceful_ms = (unsigned)s * 1000u;
    o.force = cli_flag_bool(c, "force");
    return lc_each(c, false, &o);
}

/* vm pause / vm resume: every VM argument through one engine, results in
 * argument order.  A lost reply that vm.info shows succeeded prints its
 * note on stderr (JSON: "note"). */
static int pause_each(cli_ctx *c, bool pause)
{
    store_vm *vms = calloc(c->n_args + 1, sizeof(*vms));
    cli_lc_job *jobs = calloc(c->n_args + 1, sizeof(*jobs));
    size_t n = 0;
    int rc = CLI_EXIT_OK;

    if (!vms || !jobs) {
        free(vms);
        free(jobs);
        return cli_error("out of memory");
    }
    for (size_t i = 0; i < c->n_args; i++) {
        char err[BASE_ERRSTR_MAX];

        if (store_resolve(c->root, c->args[i], &vms[n], err, sizeof(err)) < 0) {
            rc = cli_error("vm %s: %s", c->args[i], err);
            continue;
        }
        jobs[n].vm = &vms[n];
        n++;
    }
    cli_lc_run(c, jobs, n, pause ? cocoon_vm_pause : cocoon_vm_resume, pause ? "pause" : "resume",
           NULL);
    for (size_t i = 0; i < n; i++) {
        const char *what = pause ? "paused" : "resumed";
        const char *note = jobs[i].errstr && jobs[i].errstr[0] ? jobs[i].errstr : NULL;

        if (jobs[i].err) {
            rc = cli_error("%s", note ? note : "failed");
        } else if (c->json) {
            yajl_gen g = cli_gen_new(false);

            if (g) {
                yajl_gen_map_open(g);
                cli_gen_kv_str(g, "id", vms[i].id);
                cli_gen_kv_str(g, "name", vms[i].config.name);
                cli_gen_kv_str(g, "state", what);
                cli_gen_kv_str(g, "note", note);
                yajl_gen_map_close(g);
                cli_gen_print(g, stdout);
            }
        } else {
            cli_printf(stdout, "%s: %s (id=%s)\n",
                       vms[i].config.name ? vms[i].config.name : vms[i].id, what, vms[i].id);
            if (note)
                cli_printf(stderr, "Note: %s\n", note);
        }
        free(jobs[i].errstr);
        store_vm_fini(&vms[i]);
    }
    free(vms);
    free(jobs);
    return rc;
}

int cli_vm_pause(cli_ctx *c)
{
    return pause_each(c, true);
}

int cli_vm_resume(cli_ctx *c)
{
    return pause_each(c, false);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP)
        return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
    return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* Only trees strictly inside <root>/run/<backend>/ are ours to delete: a
 * hand-edited record must not turn `vm rm` into a recursive delete of
 * anything else.  The test is on canonical paths, so "..", "//" and
 * symlinks cannot walk a path out of the run tree (nor name the tree
 * itself).  Returns 0 (also when there is nothing to delete) or -errno. */
int cli_rm_run_tree(const char *root, const char *backend, const char *path)
{
    char tree[PATH_MAX], rtree[PATH_MAX], rpath[PATH_MAX];
    size_t n;

    if (!path || snprintf(tree, sizeof(tree), "%s/run/%s", root, backend) >= (int)sizeof(tree) ||
        !realpath(tree, rtree) || !realpath(path, rpath))
        return 0;
    n = strlen(rtree);
    if (strncmp(rpath, rtree, n) != 0 || rpath[n] != '/' || !rpath[n + 1])
        return 0;
    if (nftw(rpath, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

static int remove_cb(store_db *db, void *priv, char *err, size_t errlen)
{
    const char *id = priv;

    if (store_db_remove(db, id) < 0)
        return base_errf(err, errlen, -ENOENT, "vm %s: VM not found", id);
    return 0;
}

static int rm_one(const cli_ctx *c, store_vm *vm)
{
    char err[BASE_ERRSTR_MAX];
    int rc;

    if (vmm_alive(c, vm)) {
        if (!cli_flag_bool(c, "force"))
            return cli_error("vm %s is running: stop it first or use --force",
                             vm->config.name ? vm->config.name : vm->id);
        if (stop_one(c, vm, true) != CLI_EXIT_OK)
            return CLI_EXIT_FAIL;
    }
    if (store_update(c->root, vm->backend, remove_cb, vm->id, err, sizeof(err)) < 0)
        return cli_error("%s", err);
    store_vm_lock_remove(c->root, vm->backend, vm->id);
    if (vm->log_dir && (!vm->run_dir || strcmp(vm->log_dir, vm->run_dir) != 0))
        cli_rm_run_tree(c->root, vm->backend, vm->log_dir);
    rc = cli_rm_run_tree(c->root, vm->backend, vm->run_dir);
    if (rc < 0)
        cli_printf(stderr, "Warning: remove %s: %s\n", vm->run_dir, strerror(-rc));
    if (c->json) {
        yajl_gen g = cli_gen_new(false);

        if (g) {
            yajl_gen_map_open(g);
            cli_gen_kv_str(g, "id", vm->id);
            cli_gen_kv_str(g, "name", vm->config.name);
            cli_gen_kv_str(g, "state", "removed");
            yajl_gen_map_close(g);
            cli_gen_print(g, stdout);
        }
    } else {
        cli_printf(stdout, "%s: removed (id=%s)\n", vm->config.name ? vm->config.name : vm->id, vm->id);
    }
    return CLI_EXIT_OK;
}

int cli_vm_rm(cli_ctx *c)
{
    return each_vm(c, rm_one);
}

/* The state a user should see: a running record whose process fails the
 * gate is really stopped (stale).  *pid: the VMM's pid when running. */
static const char *shown_state(const cli_ctx *c, const store_vm *vm, bool *stale, pid_t *pid)
{
    char err[BASE_ERRSTR_MAX];

    *stale = false;
    *pid = 0;
    if (vm->state == STORE_RUNNING && gate_check(vm, vmm_binary(c, vm), pid, err, sizeof(err)) < 0) {
        *stale = true;
        *pid = 0;
        return "stopped";
    }
    return store_state_name(vm->state);
}

static void fmt_mem(uint64_t b, char *out, size_t n)
{
    if (b && b % (1024ull * 1024 * 1024) == 0)
        snprintf(out, n, "%" PRIu64 "G", (uint64_t)(b / (1024ull * 1024 * 1024)));
    else if (b && b % (1024ull * 1024) == 0)
        snprintf(out, n, "%" PRIu64 "M", (uint64_t)(b / (1024ull * 1024)));
    else
        snprintf(out, n, "%" PRIu64, b);
}

int cli_vm_list(cli_ctx *c)
{
    static const char *const backends[] = { STORE_BACKEND_CH, STORE_BACKEND_FC };
    store_db dbs[2];
    char err[BASE_ERRSTR_MAX];
    yajl_gen g = NULL;
    int rc = CLI_EXIT_OK;

    memset(dbs, 0, sizeof(dbs));
    for (size_t b = 0; b < 2; b++)
        if (store_load(c->root, backends[b], &dbs[b], err, sizeof(err)) < 0) {
            store_db_fini(&dbs[0]);
            return cli_error("%s", err);
        }
    if (c->json) {
        /* yajl renders an empty beautified array over three lines */
        g = cli_gen_new(dbs[0].n + dbs[1].n > 0);
        if (!g) {
            store_db_fini(&dbs[0]);
            store_db_fini(&dbs[1]);
            return cli_error("out of memory");
        }
        yajl_gen_array_open(g);
    } else if (dbs[0].n + dbs[1].n > 0) {
        printf("%-26s  %-20s  %-16s  %-16s  %4s  %7s  %s\n", "ID", "NAME", "HYPERVISOR",
               "STATE", "CPU", "MEMORY", "CREATED");
    }
    for (size_t b = 0; b < 2; b++)
        for (size_t i = 0; i < dbs[b].n; i++) {
            const store_vm *vm = &dbs[b].vms[i];
            bool stale;
            pid_t pid;
            const char *st = shown_state(c, vm, &stale, &pid);

            if (g) {
                vmsjson_vm_gen(g, vm, st);
                if (stale)
                    cli_gen_kv_bool(g, "stale", true);
                yajl_gen_map_close(g);
            } else {
                char mem[32], state[32];

                fmt_mem(vm->config.memory, mem, sizeof(mem));
                snprintf(state, sizeof(state), "%s%s", st, stale ? " (stale)" : "");
                cli_printf(stdout, "%-26s  %-20s  %-16s  %-16s  %4d  %7s  %s\n", vm->id,
                       vm->config.name ? vm->config.name : "-",
                       store_hypervisor_name(vm->backend), state, vm->config.cpu, mem,
                       vm->created_at ? vm->created_at : "-");
            }
        }
    if (g) {
        yajl_gen_array_close(g);
        if (cli_gen_print(g, stdout) < 0)
            rc = CLI_EXIT_FAIL;
    } else if (dbs[0].n + dbs[1].n == 0) {
        puts("No VMs found.");
    }
    store_db_fini(&dbs[0]);
    store_db_fini(&dbs[1]);
    return rc;
}

typedef struct inspect_ctx {
    yajl_gen g;
    bool done;
    char warn[BASE_ERRSTR_MAX];
} inspect_ctx;

static void inspect_list_cb(cocoon_engine *e, const cocoon_result *r, const cocoon_listing *l,
                            void *priv)
{
    inspect_ctx *ic = priv;

    (void)e;
    ic->done = true;
    if (r->err) {
        snprintf(ic->warn, sizeof(ic->warn), "%s", r->errstr ? r->errstr : "list failed");
        return;
    }
    if (!l || (l->n_fs == 0 && l->n_devices == 0))
        return;
    cli_gen_str(ic->g, "attached_devices");
    yajl_gen_map_open(ic->g);
    if (l->n_fs) {
        cli_gen_str(ic->g, "fs");
        yajl_gen_array_open(ic->g);
        for (size_t i = 0; i < l->n_fs; i++) {
            yajl_gen_map_open(ic->g);
            cli_gen_kv_str(ic->g, "id", l->fs[i].id);
            cli_gen_kv_str(ic->g, "tag", l->fs[i].tag);
            cli_gen_kv_str(ic->g, "socket", l->fs[i].socket);
            yajl_gen_map_close(ic->g);
        }
        yajl_gen_array_close(ic->g);
    }
    if (l->n_devices) {
        cli_gen_str(ic->g, "devices");
        yajl_gen_array_open(ic->g);
        for (size_t i = 0; i < l->n_devices; i++) {
            yajl_gen_map_open(ic->g);
            cli_gen_kv_str(ic->g, "id", l->devices[i].id);
            cli_gen_kv_str(ic->g, "bdf", l->devices[i].bdf);
            yajl_gen_map_close(ic->g);
        }
        yajl_gen_array_close(ic->g);
    }
    yajl_gen_map_close(ic->g);
}

/* One cocoon_list round trip for ref into ic (attached_devices or ic->warn). */
static void inspect_listing(const cli_ctx *c, const char *ref, inspect_ctx *ic)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    cocoon_options opt = { .size = sizeof(cocoon_options), .root_dir = c->root,
                           .timeout_ms = c->timeout_ms, .ch_binary = cli_default_ch_binary() };
    cocoon_engine *e = loop ? cocoon_engine_new(loop, &opt) : NULL;

    if (!e || cocoon_list(e, ref, inspect_list_cb, ic) < 0)
        snprintf(ic->warn, sizeof(ic->warn), "cannot start the listing");
    else
        while (!ic->done && ev_run(loop, EVRUN_ONCE))
            ;
    cocoon_engine_free(e);
    if (loop)
        ev_loop_destroy(loop);
}

/* A direct target (the API socket of a VM cocoon did not create) has no
 * record: its socket_path, and what is attached when it runs. */
static int inspect_direct(const cli_ctx *c, const char *sock)
{
    inspect_ctx ic;

    memset(&ic, 0, sizeof(ic));
    ic.g = cli_gen_new(true);
    if (!ic.g)
        return cli_error("out of memory");
    yajl_gen_map_open(ic.g);
    cli_gen_kv_str(ic.g, "socket_path", sock);
    cli_gen_kv_str(ic.g, "hypervisor", store_hypervisor_name(STORE_BACKEND_CH));
    inspect_listing(c, sock, &ic);
    if (ic.warn[0]) {
        yajl_gen_free(ic.g);
        return cli_error("%s", ic.warn);
    }
    yajl_gen_map_close(ic.g);
    return cli_gen_print(ic.g, stdout) < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

int cli_vm_inspect(cli_ctx *c)
{
    char err[BASE_ERRSTR_MAX];
    inspect_ctx ic;
    store_vm vm;
    bool stale;
    pid_t pid;
    const char *st;
    int rc = CLI_EXIT_OK;

    if (c->args[0][0] == '/')
        return inspect_direct(c, c->args[0]);
    if (store_resolve(c->root, c->args[0], &vm, err, sizeof(err)) < 0)
        return cli_error("vm %s: %s", c->args[0], err);
    memset(&ic, 0, sizeof(ic));
    ic.g = cli_gen_new(true);
    if (!ic.g) {
        store_vm_fini(&vm);
        return cli_error("out of memory");
    }
    st = shown_state(c, &vm, &stale, &pid);
    vmsjson_vm_gen(ic.g, &vm, st);
    if (stale)
        cli_gen_kv_bool(ic.g, "stale", true);
    if (pid > 0) {
        char *sock = gate_api_sock(&vm);

        cli_gen_kv_int(ic.g, "pid", pid);
        cli_gen_kv_str(ic.g, "socket_path", sock);
        free(sock);
    }
    if (pid > 0 && strcmp(vm.backend, STORE_BACKEND_CH) == 0) {
        inspect_listing(c, vm.id, &ic);
        if (ic.warn[0])
            cli_printf(stderr, "Warning: list attached devices of vm %s: %s\n", vm.id, ic.warn);
    }
    yajl_gen_map_close(ic.g);
    if (cli_gen_print(ic.g, stdout) < 0)
        rc = CLI_EXIT_FAIL;
    store_vm_fini(&vm);
    return rc;
}

int cli_vm_debug(cli_ctx *c)
{
    char err[BASE_ERRSTR_MAX], **argv = NULL, *text;
    store_vm vm;
    int rc = vm_from_flags(c, &vm);

    if (rc)
        return rc;
    rc = strcmp(vm.backend, STORE_BACKEND_FC) == 0
        ? launch_fc_argv(&vm, vmm_binary(c, &vm), &argv, err, sizeof(err))
        : launch_ch_argv(&vm, vmm_binary(c, &vm), &argv, err, sizeof(err));
    store_vm_fini(&vm);
    if (rc < 0)
        return cli_error("%s", err);
    if (c->json) {
        yajl_gen g = cli_gen_new(false);

        if (g) {
            yajl_gen_map_open(g);
            cli_gen_str(g, "argv");
            yajl_gen_array_open(g);
            for (char **a = argv; *a; a++)
                cli_gen_str(g, *a);
            yajl_gen_array_close(g);
            yajl_gen_map_close(g);
        }
        launch_argv_free(argv);
        return cli_gen_print(g, stdout) < 0 ? cli_error("out of memory") : CLI_EXIT_OK;
    }
    text = launch_debug_format(argv);
    launch_argv_free(argv);
    if (!text)
        return cli_error("out of memory");
    fputs(text, stdout);
    free(text);
    return CLI_EXIT_OK;
}
