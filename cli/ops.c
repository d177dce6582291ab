/* cli/ops.c: fs and device attach, detach and list over many VMs, and
 * batch plans: jobs fed to one engine through a bounded window, each
 * outcome recorded and printed as it arrives; interrupts stop the feed. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/ops.h"

#define PROGRESS_INTERVAL 0.05

/* Jobs handed to the engine and not yet done, per VM of --parallel: enough
 * to keep every slot busy, few enough that memory does not grow with the
 * length of a plan. */
#define WINDOW_PER_VM 2
#define WINDOW_MIN 64
/* Jobs started per turn of the loop, so that a plan of lines that fail at
 * once still lets signals and replies in. */
#define FEED_BATCH 4096

/* Big batches hold one connection per VM in flight. */
static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* The command words of each op, for messages. */
static const char *const op_text[] = {
    [CLI_OP_FS_ATTACH] = "fs attach",         [CLI_OP_FS_DETACH] = "fs detach",
    [CLI_OP_DEVICE_ATTACH] = "device attach", [CLI_OP_DEVICE_DETACH] = "device detach",
    [CLI_OP_FS_LIST] = "fs list",             [CLI_OP_DEVICE_LIST] = "device list",
    [CLI_OP_CLONE] = "clone",
};

static void job_free(job *j)
{
    if (!j)
        return;
    cli_op_fini(&j->op);
    free(j->pre_err);
    free(j->errstr);
    free(j->dev_id);
    free(j->bdf);
    free(j->note);
    for (size_t i = 0; i < j->n_rows * 3; i++)
        free(j->rows[i]);
    free(j->rows);
    if (j->clone)
        store_vm_fini(j->clone);
    free(j->clone);
    free(j->clone_dir);
    free(j->subs);
    free(j);
}

/* The engine reports why the running gate failed; users are told
 * first that the VM is not running. */
static char *message_for(int err, const char *errstr)
{
    char *m = NULL;
    const char *s = errstr && *errstr ? errstr : strerror(err < 0 ? -err : err);

    if (err == -EHOSTDOWN) {
        if (asprintf(&m, "vm is not running: %s", s) < 0)
            m = NULL;
    } else {
        m = strdup(s);
    }
    return m;
}

/* Remembers a VM whose outcome is unknown, once, for the summary. */
static void note_unknown(runner *r, const char *vm)
{
    char **nv;

    if (!vm || cli_strset_add(&r->unknown_set, vm, NULL, 0) != 1)
        return;
    nv = realloc(r->unknown_vms, (r->n_unknown_vms + 1) * sizeof(*nv));
    if (!nv)
        return;
    r->unknown_vms = nv;
    if ((nv[r->n_unknown_vms] = strdup(vm)))
        r->n_unknown_vms++;
}

/* A printed job is freed, except a list result that a text table at the
 * end still shows, and a clone line, which clone_finish frees once its
 * attaches are on their way. */
static void job_dispose(job *j)
{
    runner *r = j->r;

    if (j->op.kind == CLI_OP_CLONE)
        return;
    if (j->ok && !r->c->json &&
        (j->op.kind == CLI_OP_FS_LIST || j->op.kind == CLI_OP_DEVICE_LIST)) {
        j->next = NULL;
        *r->kept_tail = j;
        r->kept_tail = &j->next;
        return;
    }
    job_free(j);
}

/* A clone line that is done: a clone that did not come up keeps its job
 * until the end of the run, when its record and files are dropped. */
static void clone_finish(job *j)
{
    runner *r = j->r;

    if (j->clone && !j->ok) {
        j->next = r->failed_clones;
        r->failed_clones = j;
        return;
    }
    job_free(j);
}

/* Records, prints and disposes of one outcome. */
static void record(job *j, int err, const char *errstr, const char *dev_id, const char *bdf,
                   uint64_t latency_us)
{
    runner *r = j->r;

    j->done = true;
    j->ok = err == 0;
    j->latency_us = latency_us;
    if (err) {
        free(j->errstr);
        j->errstr = message_for(err, errstr);
        j->canceled = err == -ECANCELED;
        r->failed++;
        if (ops_job_unknown(j)) {
            r->unknown++;
            note_unknown(r, j->op.vm);
        } else if (ops_job_not_run(j)) {
            r->not_run++;
        }
    } else {
        if (errstr && *errstr)
            j->note = strdup(errstr);
        j->dev_id = dev_id ? strdup(dev_id) : NULL;
        j->bdf = bdf ? strdup(bdf) : NULL;
        r->ok++;
    }
    r->done++;
    r->dirty = true;
    if (j->submitted)
        cli_lat_add(&r->lat, latency_us);
    ops_print_job(r, j);
    job_dispose(j);
}

static void done_cb(cocoon_engine *e, const cocoon_result *res, void *priv)
{
    job *j = priv;

    (void)e;
    j->r->inflight--;
    record(j, res->err, res->errstr, res->device_id, res->bdf, res->latency_us);
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

static void list_cb(cocoon_engine *e, const cocoon_result *res, const cocoon_listing *l,
                    void *priv)
{
    job *j = priv;
    bool fs = j->op.kind == CLI_OP_FS_LIST;

    (void)e;
    j->r->inflight--;
    if (res->err == 0 && l) {
        size_t n = fs ? l->n_fs : l->n_devices;

        j->rows = calloc(n * 3 + 1, sizeof(char *));
        if (j->rows) {
            for (size_t i = 0; i < n; i++) {
                char **row = &j->rows[i * 3];

                if (fs) {
                    row[0] = dup_or_empty(l->fs[i].id);
                    row[1] = dup_or_empty(l->fs[i].tag);
                    row[2] = dup_or_empty(l->fs[i].socket);
                } else {
                    row[0] = dup_or_empty(l->devices[i].id);
                    row[1] = l->devices[i].bdf ? strdup(l->devices[i].bdf) : NULL;
                    row[2] = NULL;
                }
            }
            j->n_rows = n;
        }
    }
    record(j, res->err, res->errstr, NULL, NULL, res->latency_us);
}

/* The run's engine, made on first use.  Wait and socket check go with
 * each operation, so every op of a VM shares its connection. */
static cocoon_engine *engine_for(runner *r)
{
    cocoon_options opt;

    if (r->e)
        return r->e;
    cocoon_options_init(&opt);
    opt.root_dir = r->c->root;
    opt.timeout_ms = r->c->timeout_ms;
    opt.max_inflight_vms = r->parallel;
    opt.ch_binary = cli_default_ch_binary();
    r->e = cocoon_engine_new(r->loop, &opt);
    return r->e;
}

static void submit_one(job *j);

/* A clone that failed before the engine saw it, and its attaches. */
static void clone_fail(job *j, int rc, const char *why)
{
    char m[BASE_ERRSTR_MAX + 32];

    snprintf(m, sizeof(m), "clone: %s", why);
    record(j, rc, m, NULL, NULL, 0);
    for (size_t i = 0; i < j->n_subs; i++)
        record(j->subs[i], -ECANCELED, "fs attach: not sent: the clone did not come up", NULL,
               NULL, 0);
    clone_finish(j);
}

/* t with each of the n keys (each "{...}") replaced by its value; a key
 * whose value is NULL stays as it is.  NULL when out of memory. */
static char *fill_template(const char *t, const char *const keys[], const char *const vals[],
                           size_t n)
{
    char *out = NULL, *p = NULL;
    size_t len = 0;

    /* The first pass measures, the second writes. */
    for (int pass = 0; pass < 2; pass++) {
        for (const char *s = t; *s;) {
            const char *brace = strchr(s, '{'), *v = "{";
            size_t run = brace ? (size_t)(brace - s) : strlen(s), skip = 1;

            if (pass)
                p = mempcpy(p, s, run);
            len += run;
            if (!brace)
                break;
            s = brace;
            for (size_t i = 0; i < n; i++) {
                size_t kl = strlen(keys[i]);

                if (vals[i] && strncmp(s, keys[i], kl) == 0) {
                    v = vals[i];
                    skip = kl;
                    break;
                }
            }
            if (pass)
                p = stpcpy(p, v);
            len += strlen(v);
            s += skip;
        }
        if (!pass && !(out = p = malloc(len + 1)))
            return NULL;
        len = 0;
    }
    *p = '\0';
    return out;
}

/* j's socket template, if it has one with a brace, with the keys
 * replaced.  A clone's attaches know {name} and {vm} (the new name) from
 * the plan and {id} once the clone has its record. */
static int socket_fill(job *j, const char *const keys[], const char *const vals[], size_t n)
{
    char *out;

    if (!j->op.socket || !strchr(j->op.socket, '{'))
        return 0;
    if (!(out = fill_template(j->op.socket, keys, vals, n)))
        return -ENOMEM;
    free(j->op.socket);
    j->op.socket = out;
    return 0;
}

/* The clone is up (or not): its attaches run now, or fail unsent. */
static void clone_done_cb(cocoon_engine *e, const cocoon_result *res, void *priv)
{
    job *j = priv;

    (void)e;
    j->r->inflight--;
    j->pid = res->pid;
    record(j, res->err, res->errstr, res->err ? NULL : j->clone->id, NULL, res->latency_us);
    for (size_t i = 0; i < j->n_subs; i++) {
        job *s = j->subs[i];

        if (!j->ok)
            record(s, -ECANCELED, "fs attach: not sent: the clone did not come up", NULL,
                   NULL, 0);
        else if (socket_fill(s, (const char *const[]){ "{id}" },
                             (const char *const[]){ j->clone->id }, 1) < 0)
            record(s, -ENOMEM, "out of memory", NULL, NULL, 0);
        else
            submit_one(s);
    }
    clone_finish(j);
}

/* A clone line: the record and files now, then one restore through the
 * engine like vm clone's.  0 when the engine has it, 1 when it failed
 * here (and was recorded). */
static int submit_clone(cocoon_engine *e, job *j)
{
    char err[BASE_ERRSTR_MAX];
    cocoon_vm_opts o = COCOON_VM_OPTS_INIT;
    int rc;

    j->clone = e ? calloc(1, sizeof(*j->clone)) : NULL;
    if (!j->clone) {
        j->submitted = false;
        clone_fail(j, -ENOMEM, "out of memory");
        return 1;
    }
    rc = cli_clone_prepare(j->r->c, j->op.snapshot, j->op.vm, j->clone, &j->clone_dir, err,
                           sizeof(err));
    if (rc < 0) {
        free(j->clone);
        j->clone = NULL;
        j->submitted = false;
        clone_fail(j, rc, err);
        return 1;
    }
    o.dir = j->clone_dir;
    o.binary = j->clone->binary;
    rc = cocoon_vm_restore(e, j->clone->id, &o, clone_done_cb, j);
    if (rc < 0) {
        j->submitted = false;
        clone_fail(j, rc, strerror(-rc));
        return 1;
    }
    return 0;
}

/* Hands j to the engine, which keeps each VM's operations in plan order
 * and runs at most --parallel VMs at once; an op that fails here is
 * recorded at once. */
static void submit_one(job *j)
{
    cocoon_engine *e;
    int rc = -ENOMEM;

    if (j->pre_err) {
        char *m = j->pre_err;
        bool clone = j->op.kind == CLI_OP_CLONE;   /* record() frees any other job */

        j->pre_err = NULL;
        record(j, -EINVAL, m, NULL, NULL, 0);
        free(m);
        if (clone) {
            for (size_t i = 0; i < j->n_subs; i++)
                record(j->subs[i], -ECANCELED, "fs attach: not sent: the clone did not come up",
                       NULL, NULL, 0);
            clone_finish(j);
        }
        return;
    }
    e = engine_for(j->r);
    j->submitted = true;
    if (j->op.kind == CLI_OP_CLONE) {
        if (submit_clone(e, j) == 0)
            j->r->inflight++;
        return;
    }
    if (e) {
        cocoon_fs_spec fs = { sizeof(cocoon_fs_spec), j->op.socket, j->op.tag,
                              j->op.num_queues, j->op.queue_size,
                              j->op.no_socket_check ? -1 : 1 };
        cocoon_vfio_spec vf = { sizeof(cocoon_vfio_spec), j->op.pci, j->op.id };
        unsigned wait_ms = (unsigned)j->op.wait_s * 1000u;

        switch (j->op.kind) {
        case CLI_OP_FS_ATTACH:
            rc = cocoon_fs_attach(e, j->op.vm, &fs, done_cb, j);
            break;
        case CLI_OP_FS_DETACH:
            rc = cocoon_fs_detach_wait(e, j->op.vm, j->op.tag ? j->op.tag : "", wait_ms,
                                       done_cb, j);
            break;
        case CLI_OP_DEVICE_ATTACH:
            rc = cocoon_device_attach(e, j->op.vm, &vf, done_cb, j);
            break;
        case CLI_OP_DEVICE_DETACH:
            rc = cocoon_device_detach_wait(e, j->op.vm, j->op.id ? j->op.id : "", wait_ms,
                                           done_cb, j);
            break;
        case CLI_OP_FS_LIST:
            rc = cocoon_fs_list(e, j->op.vm, list_cb, j);
            break;
        case CLI_OP_DEVICE_LIST:
            rc = cocoon_device_list(e, j->op.vm, list_cb, j);
            break;
        case CLI_OP_CLONE:
            break;
        }
    }
    if (rc < 0) {
        char m[160];

        snprintf(m, sizeof(m), "%s: submit: %s", op_text[j->op.kind], strerror(-rc));
        j->submitted = false;
        record(j, rc, m, NULL, NULL, 0);
        return;
    }
    j->r->inflight++;
}

/* Replaces {name}, {id} and {vm} in a socket template. */
static int expand_template(const cli_ctx *c, tmpl_store *ts, job *j)
{
    const char *t = j->op.socket, *name = NULL, *id = NULL;
    char derived[256], err[BASE_ERRSTR_MAX];
    const store_vm *vm = NULL;

    if (!t || !strchr(t, '{'))
        return 0;
    if (strstr(t, "{name}") || strstr(t, "{id}")) {
        if (j->op.vm[0] == '/') {
            /* A direct target has no record: its socket names it. */
            const char *base = strrchr(j->op.vm, '/') + 1;
            size_t bl = strlen(base);

            if (bl > 5 && strcmp(base + bl - 5, ".sock") == 0)
                bl -= 5;
            snprintf(derived, sizeof(derived), "%.*s", (int)bl, base);
            name = id = derived;
        } else {
            if (ts->rc == 1)
                ts->rc = store_set_load(&ts->set, c->root, ts->err, sizeof(ts->err));
            if (ts->rc == 0 &&
                store_set_resolve(&ts->set, j->op.vm, &vm, err, sizeof(err)) == 0) {
                name = vm->config.name ? vm->config.name : vm->id;
                id = vm->id;
            }
        }
        if (!name) {
            char m[BASE_ERRSTR_MAX + 64];

            snprintf(m, sizeof(m), "%s: vm %s: %s", op_text[j->op.kind], j->op.vm,
                     ts->rc < 0 ? ts->err : err);
            j->pre_err = strdup(m);
            return 0;
        }
    }
    return socket_fill(j, (const char *const[]){ "{name}", "{id}", "{vm}" },
                       (const char *const[]){ name, id, j->op.vm }, 3);
}

/* One virtiofsd serves one VM connection: a socket given to several
 * attaches of one run would pass the liveness check for each, and the
 * second connect would stall CH's API for its whole connect timeout.  The
 * first attach of a socket keeps it; every later one fails before any
 * I/O.  A socket is named by its inode when it exists (any spelling of
 * the path), else by the path as given.  The run remembers one entry per
 * socket given to an fs attach. */
static int refuse_shared_socket(runner *r, job *j)
{
    struct stat st;
    char *key = NULL;
    const cli_strent *first;
    int rc;

    if (j->op.kind != CLI_OP_FS_ATTACH || j->pre_err || !j->op.socket)
        return 0;
    if ((stat(j->op.socket, &st) == 0
             ? asprintf(&key, "i%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino)
             : asprintf(&key, "p%s", j->op.socket)) < 0)
        return -ENOMEM;
    first = cli_strset_get(&r->sockets, key);
    if (!first) {
        rc = cli_strset_add(&r->sockets, key, j->op.vm, j->line);
        free(key);
        return rc < 0 ? rc : 0;
    }
    free(key);
    rc = first->num ? asprintf(&j->pre_err, "fs attach: virtiofsd socket %s is already given "
                               "to vm %s on line %d: one virtiofsd serves one VM",
                               j->op.socket, first->val, first->num)
                    : asprintf(&j->pre_err, "fs attach: virtiofsd socket %s is already given "
                               "to vm %s: one virtiofsd serves one VM", j->op.socket,
                               first->val);
    if (rc < 0) {
        j->pre_err = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* A clone line's shares become fs-attach jobs of their own, on the same
 * line, each waiting for the clone; {name} and {vm} in their sockets are
 * the clone's name now, {id} once it has its record. */
static int clone_subs(runner *r, job *j)
{
    j->subs = calloc(j->op.n_fs + 1, sizeof(*j->subs));
    if (!j->subs)
        return -ENOMEM;
    for (size_t i = 0; i < j->op.n_fs; i++) {
        job *s = calloc(1, sizeof(*s));

        if (!s)
            return -ENOMEM;
        s->op = j->op.fs[i];
        memset(&j->op.fs[i], 0, sizeof(j->op.fs[i]));
        s->line = j->line;
        s->after = j;
        s->r = r;
        j->subs[j->n_subs++] = s;
        r->n_jobs++;
        if (socket_fill(s, (const char *const[]){ "{name}", "{vm}" },
                        (const char *const[]){ s->op.vm, s->op.vm }, 2) < 0 ||
            refuse_shared_socket(r, s) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* Expands the job's template, checks its socket against the run's, counts
 * its VM and hands it to the engine. */
static void start_job(runner *r, job *j)
{
    j->r = r;
    r->n_jobs++;
    if ((j->op.kind == CLI_OP_FS_ATTACH || j->op.kind == CLI_OP_FS_LIST) && !j->pre_err &&
        expand_template(r->c, &r->ts, j) < 0)
        j->pre_err = strdup("out of memory");
    if (j->op.kind == CLI_OP_CLONE && !j->pre_err && j->op.n_fs && clone_subs(r, j) < 0)
        j->pre_err = strdup("out of memory");
    if (refuse_shared_socket(r, j) < 0 && !j->pre_err)
        j->pre_err = strdup("out of memory");
    if (j->op.vm)
        (void)cli_strset_add(&r->vms, j->op.vm, NULL, 0);
    if (!j->pre_err && !j->op.vm)
        j->pre_err = strdup("out of memory");
    submit_one(j);
}

/* The next plan line as a job: 1, 0 when the input has nothing ready yet,
 * -1 at its end. */
static int next_line_job(runner *r, job **out)
{
    for (;;) {
        const char *l;
        size_t ll;
        char err[BASE_ERRSTR_MAX];
        job *j;
        int rc = cli_lines_next(r->in, &l, &ll), prc;

        if (rc <= 0)
            return rc;
        r->line++;
        j = calloc(1, sizeof(*j));
        if (!j)
            return -ENOMEM;
        prc = cli_plan_parse_line(l, ll, &j->op, err, sizeof(err));
        if (prc == 1) {
            free(j);
            continue;
        }
        j->line = r->line;
        if (prc < 0 && asprintf(&j->pre_err, "line %d: %s", r->line, err) < 0) {
            j->pre_err = NULL;
            job_free(j);
            return -ENOMEM;
        }
        *out = j;
        return 1;
    }
}

static void input_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    runner *r = w->data;

    (void)revents;
    ev_io_stop(loop, w);        /* the main loop reads, as the window allows */
    r->in_ready = true;
}

/* Starts jobs while the window has room and the input has them ready.
 * Returns true when it stopped with more ready to start. */
static bool feed(runner *r)
{
    for (unsigned n = 0; !r->input_done && r->inflight < r->window; n++) {
        job *j = NULL;
        int rc;

        if (n == FEED_BATCH)
            return true;
        if (r->in) {
            rc = next_line_job(r, &j);
        } else {
            rc = r->next_arg < r->n_args ? 1 : -1;
            if (rc == 1) {
                j = r->args[r->next_arg];
                r->args[r->next_arg++] = NULL;
            }
        }
        if (rc == 0) {
            if (!ev_is_active(&r->in_w)) {
                ev_io_set(&r->in_w, r->in->fd, EV_READ);
                ev_io_start(r->loop, &r->in_w);
            }
            return false;
        }
        if (rc < 0) {
            r->input_done = true;
            if (rc == -ENOMEM && r->in && !r->in->err)
                r->in->err = ENOMEM;
            break;
        }
        start_job(r, j);
    }
    return false;
}

/* The first SIGINT or SIGTERM stops the run from starting anything: what
 * has not started is reported as not run, what is in flight ends with its
 * real outcome.  A second one stops at once: what was still in flight is
 * reported as canceled, or as of unknown outcome when its request had been
 * sent. */
static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    runner *r = w->data;

    (void)revents;
    ops_progress_clear(r);
    if (!r->sig) {
        r->sig = w->signum;
        r->input_done = true;
        ev_io_stop(loop, &r->in_w);
        cocoon_engine_drain(r->e);
        cli_printf(stderr, "Interrupted (%s): starting nothing more; waiting for the %zu "
                   "operation(s) in flight; interrupt again to stop at once\n",
                   ops_sig_name(w->signum), r->inflight);
        cli_out_flush(stderr);
        return;
    }
    r->aborted = true;
    cocoon_engine_free(r->e);
    r->e = NULL;
    ev_break(loop, EVBREAK_ALL);
}

/* Flag ops not started when the run was interrupted: each is reported. */
static void report_unstarted(runner *r)
{
    while (r->next_arg < r->n_args) {
        job *j = r->args[r->next_arg];
        char m[160];

        r->args[r->next_arg++] = NULL;
        j->r = r;
        r->n_jobs++;
        snprintf(m, sizeof(m), "%s: not started: interrupted", op_text[j->op.kind]);
        record(j, -ECANCELED, m, NULL, NULL, 0);
    }
}

static void runner_fini(runner *r)
{
    for (size_t i = 0; i < r->n_args; i++)
        job_free(r->args[i]);
    free(r->args);
    while (r->kept) {
        job *j = r->kept;

        r->kept = j->next;
        job_free(j);
    }
    while (r->failed_clones) {
        job *j = r->failed_clones;

        r->failed_clones = j->next;
        job_free(j);
    }
    for (size_t i = 0; i < r->n_unknown_vms; i++)
        free(r->unknown_vms[i]);
    free(r->unknown_vms);
    cli_strset_fini(&r->unknown_set);
    cli_strset_fini(&r->vms);
    cli_strset_fini(&r->sockets);
    store_set_fini(&r->ts.set);
}

/* Runs the jobs of r's source and prints their results; returns the exit
 * status. */
static int run(runner *r)
{
    int rc;

    r->kept_tail = &r->kept;
    r->ts.rc = 1;
    r->window = (size_t)r->parallel * WINDOW_PER_VM;
    if (r->window < WINDOW_MIN)
        r->window = WINDOW_MIN;
    raise_nofile();
    r->loop = ev_loop_new(EVFLAG_AUTO);
    if (!r->loop) {
        runner_fini(r);
        return cli_error("out of memory");
    }
    ev_io_init(&r->in_w, input_cb, -1, EV_READ);
    r->in_w.data = r;
    /* Signals come through the loop (libev's own pipe), never from
     * inside an engine callback; they do not keep the loop running. */
    ev_signal_init(&r->sigint, signal_cb, SIGINT);
    ev_signal_init(&r->sigterm, signal_cb, SIGTERM);
    r->sigint.data = r->sigterm.data = r;
    ev_set_priority(&r->sigint, EV_MAXPRI);
    ev_set_priority(&r->sigterm, EV_MAXPRI);
    ev_signal_start(r->loop, &r->sigint);
    ev_signal_start(r->loop, &r->sigterm);
    ev_unref(r->loop);
    ev_unref(r->loop);
    r->tty = isatty(STDERR_FILENO);
    r->t0 = base_mono_ns() / 1e9;
    if (r->tty) {
        ev_timer_init(&r->tick, ops_tick_cb, PROGRESS_INTERVAL, PROGRESS_INTERVAL);
        r->tick.data = r;
        ev_timer_start(r->loop, &r->tick);
        ev_unref(r->loop);
    }
    while (!r->aborted) {
        bool more = feed(r);

        if (r->input_done && r->inflight == 0)
            break;
        r->in_ready = false;
        /* Result lines reach stdout before the loop waits: one write per
         * loop iteration, not one per line. */
        cli_out_flush(stdout);
        /* Nothing left that could call back: a safety net, never the
         * normal way out. */
        if (!ev_run(r->loop, more ? EVRUN_NOWAIT : EVRUN_ONCE) && !more && !r->in_ready &&
            r->inflight == 0 && !ev_is_active(&r->in_w))
            break;
    }
    if (r->sig && !r->in)
        report_unstarted(r);
    if (r->tty) {
        ev_ref(r->loop);
        ev_timer_stop(r->loop, &r->tick);
        if (r->vms.n > 1)
            ops_progress_draw(r);
        ops_progress_clear(r);
    }
    ev_io_stop(r->loop, &r->in_w);
    cocoon_engine_free(r->e);
    for (job *j = r->failed_clones; j; j = j->next)
        cli_clone_drop(r->c, j->clone);
    ev_ref(r->loop);
    ev_ref(r->loop);
    ev_signal_stop(r->loop, &r->sigint);
    ev_signal_stop(r->loop, &r->sigterm);
    if (r->in && r->n_jobs == 0 && !r->sig && !r->in->err) {
        ev_loop_destroy(r->loop);
        runner_fini(r);
        return cli_error("batch %s: no operations", r->path);
    }
    if (!r->c->json)
        ops_print_tables(r);
    if (r->batch || r->n_args > 1 || r->sig)
        ops_print_summary(r, base_mono_ns() / 1e9 - r->t0);
    rc = r->failed || r->done < r->n_jobs ? CLI_EXIT_FAIL : CLI_EXIT_OK;
    if (r->in && r->in->err) {
        /* The lines read before the failure ran and were reported. */
        cli_printf(stderr, "Error: read %s: %s (after line %d)\n", r->path,
                   strerror(r->in->err), r->line);
        rc = CLI_EXIT_FAIL;
    }
    if (r->sig)
        rc = 128 + r->sig;
    ev_loop_destroy(r->loop);
    runner_fini(r);
    return rc;
}

static int parse_uint_flag(const cli_ctx *c, const char *name, unsigned max, unsigned *out)
{
    const char *s = cli_flag_str(c, name);
    char *end;
    long v;

    if (!s)
        return 0;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || (unsigned long)v > max)
        return cli_usage_error(c, "invalid argument \"%s\" for \"--%s\" flag: "
                                  "expected an integer between 0 and %u", s, name, max);
    *out = (unsigned)v;
    return 0;
}

/* num-queues/queue-size keep their sign: the spec check owns the message
 * for negative values. */
static int parse_int_flag(const cli_ctx *c, const char *name, int *out)
{
    const char *s = cli_flag_given(c, name) ? cli_flag_str(c, name) : NULL;
    char *end;
    long v;

    *out = 0;
    if (!s)
        return 0;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < -1000000 || v > 1000000)
        return cli_usage_error(c, "invalid argument \"%s\" for \"--%s\" flag: "
                                  "expected an integer", s, name);
    *out = (int)v;
    return 0;
}

static int parallel_of(const cli_ctx *c, unsigned *par)
{
    int rc;

    *par = 256;
    rc = parse_uint_flag(c, "parallel", 1000000, par);
    if (rc)
        return rc;
    if (*par == 0)
        return cli_usage_error(c, "invalid argument \"0\" for \"--parallel\" flag: "
                                  "must be at least 1");
    return 0;
}

static int wait_of(const cli_ctx *c, int *wait_s)
{
    unsigned w = 0;
    int rc;

    *wait_s = 0;
    if (!cli_flag_given(c, "wait"))
        return 0;
    rc = parse_uint_flag(c, "wait", CLI_WAIT_MAX_S, &w);
    *wait_s = (int)w;
    return rc;
}

static char *dup_opt(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* One job per VM argument, all with the same flags.  A flag the command
 * does not have reads as not given, so every kind takes the same path. */
static int run_flag_ops(cli_ctx *c, cli_op_kind kind)
{
    runner r;
    int nq = 0, qs = 0, wait_s = 0, rc;

    memset(&r, 0, sizeof(r));
    r.c = c;
    rc = parallel_of(c, &r.parallel);
    if (!rc)
        rc = parse_int_flag(c, "num-queues", &nq);
    if (!rc)
        rc = parse_int_flag(c, "queue-size", &qs);
    if (!rc)
        rc = wait_of(c, &wait_s);
    if (rc)
        return rc;
    r.args = calloc(c->n_args + 1, sizeof(*r.args));
    if (!r.args)
        return cli_error("out of memory");
    r.n_args = c->n_args;
    for (size_t i = 0; i < c->n_args; i++) {
        job *j = calloc(1, sizeof(*j));

        if (!j) {
            runner_fini(&r);
            return cli_error("out of memory");
        }
        r.args[i] = j;
        j->op.kind = kind;
        j->op.vm = strdup(c->args[i]);
        j->op.socket = dup_opt(cli_flag_str(c, "socket"));
        j->op.tag = dup_opt(cli_flag_str(c, "tag"));
        j->op.pci = dup_opt(cli_flag_str(c, "pci"));
        j->op.id = dup_opt(cli_flag_str(c, "id"));
        j->op.num_queues = nq;
        j->op.queue_size = qs;
        j->op.no_socket_check = cli_flag_bool(c, "no-socket-check");
        j->op.wait_s = wait_s;
    }
    return run(&r);
}

int cli_fs_attach(cli_ctx *c) { return run_flag_ops(c, CLI_OP_FS_ATTACH); }
int cli_fs_detach(cli_ctx *c) { return run_flag_ops(c, CLI_OP_FS_DETACH); }
int cli_fs_list(cli_ctx *c) { return run_flag_ops(c, CLI_OP_FS_LIST); }
int cli_device_attach(cli_ctx *c) { return run_flag_ops(c, CLI_OP_DEVICE_ATTACH); }
int cli_device_detach(cli_ctx *c) { return run_flag_ops(c, CLI_OP_DEVICE_DETACH); }
int cli_device_list(cli_ctx *c) { return run_flag_ops(c, CLI_OP_DEVICE_LIST); }

/* The plan is read as the window frees up, so a generator can feed any
 * number of lines in bounded memory, and results stream out meanwhile. */
int cli_batch(cli_ctx *c)
{
    runner r;
    cli_lines in;
    int fd, rc;

    memset(&r, 0, sizeof(r));
    r.c = c;
    r.batch = true;
    r.path = c->n_args ? c->args[0] : "-";
    rc = parallel_of(c, &r.parallel);
    if (rc)
        return rc;
    fd = strcmp(r.path, "-") == 0 ? STDIN_FILENO : open(r.path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_error("open %s: %s", r.path, strerror(errno));
    cli_lines_init(&in, fd);
    r.in = &in;
    rc = run(&r);
    cli_lines_fini(&in);
    if (fd != STDIN_FILENO)
        close(fd);
    return rc;
}
