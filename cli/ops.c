#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backends/store.h"
#include "cli/cli.h"
#include "cli/plan.h"
#include "engine/cocoon.h"
#include "http/base.h"

#define PROGRESS_INTERVAL 0.05

typedef struct runner runner;

/* One operation and, once done, its outcome (strings owned). */
typedef struct job {
    cli_op op;
    int line;                   /* batch line, 0 for flag-driven ops */
    char *pre_err;              /* failure known before any I/O */
    bool done, ok, submitted;
    char *errstr, *dev_id, *bdf;
    char *note;                 /* success with a remark (reply lost, vm.info
                                   showed the outcome) */
    uint64_t latency_us;
    char **rows;                /* list ops: 3 strings per row */
    size_t n_rows;
    runner *r;
    /* A plan's clone line: the new VM (owned), its restore dir, and the
     * fs attaches of the line (jobs of their own, borrowed), which run
     * once it is up; such an attach points back at its clone. */
    store_vm *clone;
    char *clone_dir;
    int pid;
    struct job **subs, *after;
    size_t n_subs;
} job;

struct runner {
    cli_ctx *c;
    struct ev_loop *loop;
    cocoon_engine *e;           /* one for the whole run: its connections
                                   are per VM */
    unsigned parallel;
    job **jobs;
    size_t n_jobs, done, ok, failed, n_vms;
    bool batch, multi;
    double t0;
    bool progress, dirty;
    int drawn;
    ev_timer tick;
};

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

static void progress_clear(runner *r)
{
    if (r->progress && r->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        r->drawn = 0;
    }
}

static void progress_draw(runner *r)
{
    double el = base_mono_ns() / 1e9 - r->t0;
    size_t width = 30, fill = r->n_jobs ? r->done * width / r->n_jobs : width;
    char bar[32];

    for (size_t i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r\033[K[%s] %zu/%zu  ok %zu  failed %zu  %.0f ops/s", bar, r->done,
            r->n_jobs, r->ok, r->failed, el > 0 ? (double)r->done / el : 0.0);
    fflush(stderr);
    r->drawn = 1;
    r->dirty = false;
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    runner *r = w->data;

    (void)loop;
    (void)revents;
    if (r->dirty)
        progress_draw(r);
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

static void print_job_json(runner *r, const job *j)
{
    yajl_gen g = cli_gen_new(false);

    if (!g)
        return;
    yajl_gen_map_open(g);
    cli_gen_kv_str(g, "vm", j->op.vm);
    if (j->op.vm || j->line == 0)
        cli_gen_kv_str(g, "op", cli_op_name(j->op.kind));
    cli_gen_kv_bool(g, "ok", j->ok);
    cli_gen_kv_str(g, "id", j->dev_id ? j->dev_id : j->op.id);
    cli_gen_kv_str(g, "tag", j->op.tag);
    cli_gen_kv_str(g, "pci", j->op.pci);
    /* The socket as expanded for this VM: an fs-list line that carries
     * one learns what an fs-attach would use, without attaching. */
    if (j->op.kind == CLI_OP_FS_LIST)
        cli_gen_kv_str(g, "socket", j->op.socket);
    cli_gen_kv_str(g, "error", j->ok ? NULL : j->errstr);
    cli_gen_kv_str(g, "note", j->ok ? j->note : NULL);
    if (j->op.kind == CLI_OP_CLONE) {
        cli_gen_kv_str(g, "snapshot", j->op.snapshot);
        if (j->ok)
            cli_gen_kv_int(g, "pid", j->pid);
    }
    if (j->submitted)
        cli_gen_kv_ms(g, "latency_ms", (double)j->latency_us / 1000.0);
    if (j->ok && (j->op.kind == CLI_OP_FS_LIST || j->op.kind == CLI_OP_DEVICE_LIST)) {
        bool fs = j->op.kind == CLI_OP_FS_LIST;

        cli_gen_str(g, fs ? "fs" : "devices");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < j->n_rows; i++) {
            char **row = &j->rows[i * 3];

            yajl_gen_map_open(g);
            cli_gen_kv_str(g, "id", row[0]);
            if (fs) {
                cli_gen_kv_str(g, "tag", row[1]);
                cli_gen_kv_str(g, "socket", row[2]);
            } else {
                cli_gen_kv_str(g, "bdf", row[1]);
            }
            yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
    }
    yajl_gen_map_close(g);
    progress_clear(r);
    cli_gen_print(g, stdout);
}

static void print_job(runner *r, const job *j)
{
    if (r->c->json) {
        print_job_json(r, j);
        return;
    }
    progress_clear(r);
    if (!j->ok) {
        if (j->line && !j->op.vm)
            cli_printf(stderr, "Error: %s\n", j->errstr);
        else if (j->line)
            cli_printf(stderr, "Error: line %d: %s: %s\n", j->line, j->op.vm, j->errstr);
        else if (r->multi)
            cli_printf(stderr, "Error: %s: %s\n", j->op.vm, j->errstr);
        else
            cli_printf(stderr, "Error: %s\n", j->errstr);
        return;
    }
    if (j->note)
        cli_printf(stderr, "Warning: %s: %s\n", j->op.vm, j->note);
    switch (j->op.kind) {
    case CLI_OP_FS_ATTACH:
    case CLI_OP_DEVICE_ATTACH: {
        bool fs = j->op.kind == CLI_OP_FS_ATTACH;

        cli_printf(stdout, "%s: attached %s %s (id=%s%s%s)\n", j->op.vm, fs ? "fs" : "device",
               fs ? j->op.tag : j->op.pci, j->dev_id, j->bdf ? ", bdf=" : "",
               j->bdf ? j->bdf : "");
        break;
    }
    case CLI_OP_FS_DETACH:
        cli_printf(stdout, "%s: detached fs %s (id=%s)\n", j->op.vm, j->op.tag, j->dev_id ? j->dev_id : "?");
        break;
    case CLI_OP_DEVICE_DETACH:
        cli_printf(stdout, "%s: detached device %s\n", j->op.vm, j->dev_id ? j->dev_id : j->op.id);
        break;
    case CLI_OP_FS_LIST:
    case CLI_OP_DEVICE_LIST:
        break;              /* tables are printed at the end */
    case CLI_OP_CLONE:
        cli_printf(stdout, "%s: cloned from %s (id=%s, pid=%d)\n", j->op.vm, j->op.snapshot,
                   j->dev_id, j->pid);
        break;
    }
    cli_out_flush(stdout);
}

/* Records and prints one outcome; the caller decides what runs next. */
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
        r->failed++;
    } else {
        if (errstr && *errstr)
            j->note = strdup(errstr);
        j->dev_id = dev_id ? strdup(dev_id) : NULL;
        j->bdf = bdf ? strdup(bdf) : NULL;
        r->ok++;
    }
    r->done++;
    r->dirty = true;
    print_job(r, j);
}

static void done_cb(cocoon_engine *e, const cocoon_result *res, void *priv)
{
    job *j = priv;

    (void)e;
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
}

/* key (e.g. "{id}") replaced by val in j's socket template.  A clone's
 * attaches know {name} and {vm} (the new name) from the plan and {id}
 * once the clone has its record. */
static int subst(job *j, const char *key, const char *val)
{
    const char *t = j->op.socket, *p;
    size_t kl = strlen(key);
    char *out = NULL;
    size_t len = 0;
    FILE *f;

    if (!t || !strstr(t, key))
        return 0;
    f = open_memstream(&out, &len);
    if (!f)
        return -ENOMEM;
    while ((p = strstr(t, key)) != NULL) {
        fwrite(t, 1, (size_t)(p - t), f);
        fputs(val, f);
        t = p + kl;
    }
    fputs(t, f);
    if (fclose(f) != 0) {
        free(out);
        return -ENOMEM;
    }
    free(j->op.socket);
    j->op.socket = out;
    return 0;
}

/* The clone is up (or not): its attaches run now, or fail unsent. */
static void clone_done_cb(cocoon_engine *e, const cocoon_result *res, void *priv)
{
    job *j = priv;

    (void)e;
    j->pid = res->pid;
    record(j, res->err, res->errstr, res->err ? NULL : j->clone->id, NULL, res->latency_us);
    for (size_t i = 0; i < j->n_subs; i++) {
        job *s = j->subs[i];

        if (!j->ok)
            record(s, -ECANCELED, "fs attach: not sent: the clone did not come up", NULL,
                   NULL, 0);
        else if (subst(s, "{id}", j->clone->id) < 0)
            record(s, -ENOMEM, "out of memory", NULL, NULL, 0);
        else
            submit_one(s);
    }
}

/* A clone line: the record and files now, then one restore through the
 * engine like vm clone's. */
static int submit_clone(cocoon_engine *e, job *j)
{
    char err[BASE_ERRSTR_MAX];
    cocoon_vm_opts o = COCOON_VM_OPTS_INIT;
    int rc;

    j->clone = calloc(1, sizeof(*j->clone));
    if (!j->clone)
        return -ENOMEM;
    rc = cli_clone_prepare(j->r->c, j->op.snapshot, j->op.vm, j->clone, &j->clone_dir, err,
                           sizeof(err));
    if (rc < 0) {
        free(j->clone);
        j->clone = NULL;
        j->submitted = false;
        clone_fail(j, rc, err);
        return 0;
    }
    o.dir = j->clone_dir;
    o.binary = j->clone->binary;
    rc = cocoon_vm_restore(e, j->clone->id, &o, clone_done_cb, j);
    if (rc < 0) {
        j->submitted = false;
        clone_fail(j, rc, strerror(-rc));
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

        j->pre_err = NULL;
        record(j, -EINVAL, m, NULL, NULL, 0);
        free(m);
        return;
    }
    e = engine_for(j->r);
    j->submitted = true;
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
            rc = submit_clone(e, j);
            break;
        }
    }
    if (rc < 0) {
        char m[160];

        snprintf(m, sizeof(m), "%s: submit: %s", op_text[j->op.kind], strerror(-rc));
        j->submitted = false;
        record(j, rc, m, NULL, NULL, 0);
    }
}

/* The store, read once per run for the templates that name records:
 * resolving against one load keeps N refs linear in N. */
typedef struct tmpl_store {
    store_set set;
    int rc;                       /* 0 loaded, <0 the load failed, 1 not yet */
    char err[BASE_ERRSTR_MAX];
} tmpl_store;

/* Replaces {name}, {id} and {vm} in a socket template. */
static int expand_template(const cli_ctx *c, tmpl_store *ts, job *j)
{
    const char *t = j->op.socket, *name = NULL, *id = NULL;
    char derived[256], err[BASE_ERRSTR_MAX], *out = NULL;
    size_t len = 0;
    FILE *f;
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
    f = open_memstream(&out, &len);
    if (!f)
        return -ENOMEM;
    while (*t) {
        if (strncmp(t, "{name}", 6) == 0 && name) {
            fputs(name, f);
            t += 6;
        } else if (strncmp(t, "{id}", 4) == 0 && id) {
            fputs(id, f);
            t += 4;
        } else if (strncmp(t, "{vm}", 4) == 0) {
            fputs(j->op.vm, f);
            t += 4;
        } else {
            fputc(*t++, f);
        }
    }
    if (fclose(f) != 0) {
        free(out);
        return -ENOMEM;
    }
    free(j->op.socket);
    j->op.socket = out;
    return 0;
}

/* What names one virtiofsd socket: its inode when it exists (any spelling
 * of the path), else the path as given. */
typedef struct sock_use {
    char *key;
    size_t seq;
    job *j;
} sock_use;

static int cmp_sock_use(const void *a, const void *b)
{
    const sock_use *x = a, *y = b;
    int c = strcmp(x->key, y->key);

    return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* One virtiofsd serves one VM connection: a socket given to several
 * attaches of one run would pass the liveness check for each, and the
 * second connect would stall CH's API for its whole connect timeout.  The
 * first attach of a socket keeps it; every later one fails before any
 * I/O. */
static int refuse_shared_sockets(job **jobs, size_t n)
{
    sock_use *u = calloc(n + 1, sizeof(*u));
    size_t m = 0;
    int rc = 0;

    if (!u)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        job *j = jobs[i];
        struct stat st;

        if (j->op.kind != CLI_OP_FS_ATTACH || j->pre_err || !j->op.socket)
            continue;
        if ((stat(j->op.socket, &st) == 0
                 ? asprintf(&u[m].key, "i%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino)
                 : asprintf(&u[m].key, "p%s", j->op.socket)) < 0) {
            u[m].key = NULL;
            rc = -ENOMEM;
            break;
        }
        u[m].seq = i;
        u[m++].j = j;
    }
    if (!rc)
        qsort(u, m, sizeof(*u), cmp_sock_use);
    for (size_t i = 1, first = 0; !rc && i < m; i++) {
        if (strcmp(u[i].key, u[first].key) != 0) {
            first = i;
            continue;
        }
        const job *f = u[first].j;

        rc = f->line ? asprintf(&u[i].j->pre_err, "fs attach: virtiofsd socket %s is "
                                    "already given to vm %s on line %d: one virtiofsd "
                                    "serves one VM", u[i].j->op.socket, f->op.vm, f->line)
                         : asprintf(&u[i].j->pre_err, "fs attach: virtiofsd socket %s is "
                                    "already given to vm %s: one virtiofsd serves one VM",
                                    u[i].j->op.socket, f->op.vm);
        if (rc < 0) {
            u[i].j->pre_err = NULL;
            rc = -ENOMEM;
        } else {
            rc = 0;
        }
    }
    for (size_t i = 0; i < m; i++)
        free(u[i].key);
    free(u);
    return rc;
}

static int cmp_job_vm(const void *a, const void *b)
{
    const job *x = *(job *const *)a, *y = *(job *const *)b;
    return strcmp(x->op.vm, y->op.vm);
}

static double percentile(uint64_t *v, size_t n, double p)
{
    size_t idx;

    if (!n)
        return 0;
    idx = (size_t)ceil(p * (double)n);
    if (idx == 0)
        idx = 1;
    if (idx > n)
        idx = n;
    return (double)v[idx - 1] / 1000.0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The fs table, then the device table, each only when some list op of its
 * kind succeeded. */
static void print_tables(runner *r)
{
    bool printed = false;

    for (int dev = 0; dev < 2; dev++) {
        cli_op_kind kind = dev ? CLI_OP_DEVICE_LIST : CLI_OP_FS_LIST;
        bool header = false;

        for (size_t i = 0; i < r->n_jobs; i++) {
            const job *j = r->jobs[i];

            if (!j->ok || j->op.kind != kind)
                continue;
            if (!header) {
                if (printed)
                    putchar('\n');
                if (dev)
                    cli_printf(stdout, "%-20s  %-24s  %s\n", "VM", "ID", "BDF");
                else
                    cli_printf(stdout, "%-20s  %-24s  %-16s  %s\n", "VM", "ID", "TAG", "SOCKET");
                header = printed = true;
            }
            for (size_t k = 0; k < j->n_rows; k++) {
                char **row = &j->rows[k * 3];

                if (dev)
                    cli_printf(stdout, "%-20s  %-24s  %s\n", j->op.vm, row[0], row[1] ? row[1] : "-");
                else
                    cli_printf(stdout, "%-20s  %-24s  %-16s  %s\n", j->op.vm, row[0], row[1], row[2]);
            }
        }
    }
}

static void print_summary(runner *r, double wall_s)
{
    uint64_t *lat = calloc(r->n_jobs + 1, sizeof(*lat));
    size_t n = 0;
    double p50, p99;

    for (size_t i = 0; lat && i < r->n_jobs; i++)
        if (r->jobs[i]->submitted)
            lat[n++] = r->jobs[i]->latency_us;
    if (lat)
        qsort(lat, n, sizeof(*lat), cmp_u64);
    p50 = lat ? percentile(lat, n, 0.50) : 0;
    p99 = lat ? percentile(lat, n, 0.99) : 0;
    free(lat);
    if (r->c->json) {
        yajl_gen g = cli_gen_new(false);

        if (!g)
            return;
        yajl_gen_map_open(g);
        cli_gen_str(g, "summary");
        yajl_gen_map_open(g);
        cli_gen_kv_int(g, "total", (long long)r->n_jobs);
        cli_gen_kv_int(g, "ok", (long long)r->ok);
        cli_gen_kv_int(g, "failed", (long long)r->failed);
        cli_gen_kv_ms(g, "wall_ms", wall_s * 1000.0);
        cli_gen_kv_ms(g, "p50_ms", p50);
        cli_gen_kv_ms(g, "p99_ms", p99);
        yajl_gen_map_close(g);
        yajl_gen_map_close(g);
        cli_gen_print(g, stdout);
    } else {
        fprintf(stderr, "%zu ops on %zu VMs: %zu ok, %zu failed in %.1f ms "
                "(p50 %.2f ms, p99 %.2f ms)\n", r->n_jobs, r->n_vms, r->ok, r->failed,
                wall_s * 1000.0, p50, p99);
    }
}

static void jobs_free(job **jobs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        job_free(jobs[i]);
    free(jobs);
}

/* Runs every job and prints results; jobs and the array are owned by the
 * runner from here on. */
static int run_jobs(cli_ctx *c, job **jobs, size_t n, bool batch, unsigned parallel)
{
    runner r;
    job **order;
    size_t firsts = 0;
    int rc;

    memset(&r, 0, sizeof(r));
    r.c = c;
    r.jobs = jobs;
    r.n_jobs = n;
    r.batch = batch;
    r.multi = batch || n > 1;
    r.parallel = parallel;
    raise_nofile();
    r.loop = ev_loop_new(EVFLAG_AUTO);
    order = calloc(n + 1, sizeof(*order));
    if (!r.loop || !order) {
        free(order);
        if (r.loop)
            ev_loop_destroy(r.loop);
        jobs_free(jobs, n);
        return cli_error("out of memory");
    }
    {
        tmpl_store ts = { .rc = 1 };

        for (size_t i = 0; i < n; i++) {
            jobs[i]->r = &r;
            if (jobs[i]->after) {
                if (subst(jobs[i], "{name}", jobs[i]->op.vm) < 0 ||
                    subst(jobs[i], "{vm}", jobs[i]->op.vm) < 0)
                    jobs[i]->pre_err = strdup("out of memory");
            } else if ((jobs[i]->op.kind == CLI_OP_FS_ATTACH ||
                        jobs[i]->op.kind == CLI_OP_FS_LIST) &&
                       !jobs[i]->pre_err && expand_template(c, &ts, jobs[i]) < 0) {
                jobs[i]->pre_err = strdup("out of memory");
            }
        }
        store_set_fini(&ts.set);
    }
    if (refuse_shared_sockets(jobs, n) < 0) {
        free(order);
        ev_loop_destroy(r.loop);
        jobs_free(jobs, n);
        return cli_error("out of memory");
    }
    /* The VMs of the run, for the summary and the progress bar. */
    {
        size_t m = 0;

        for (size_t i = 0; i < n; i++)
            if (jobs[i]->op.vm)
                order[m++] = jobs[i];
        qsort(order, m, sizeof(*order), cmp_job_vm);
        for (size_t i = 0; i < m; i++)
            if (i == 0 || strcmp(order[i - 1]->op.vm, order[i]->op.vm) != 0)
                firsts++;
        r.n_vms = firsts;
    }
    r.progress = isatty(STDERR_FILENO) && r.n_vms > 1;
    r.t0 = base_mono_ns() / 1e9;
    if (r.progress) {
        ev_timer_init(&r.tick, tick_cb, PROGRESS_INTERVAL, PROGRESS_INTERVAL);
        r.tick.data = &r;
        ev_timer_start(r.loop, &r.tick);
        progress_draw(&r);
    }
    /* Lines that failed to parse have no VM: report them first. */
    for (size_t i = 0; i < n; i++)
        if (!jobs[i]->op.vm)
            submit_one(jobs[i]);
    for (size_t i = 0; i < n; i++)
        if (jobs[i]->op.vm && !jobs[i]->after)
            submit_one(jobs[i]);
    while (r.done < r.n_jobs)
        if (!ev_run(r.loop, EVRUN_ONCE) && r.done < r.n_jobs)
            break;
    if (r.progress) {
        ev_timer_stop(r.loop, &r.tick);
        progress_draw(&r);
        progress_clear(&r);
    }
    cocoon_engine_free(r.e);
    for (size_t i = 0; i < n; i++)
        if (jobs[i]->clone && !jobs[i]->ok)
            cli_clone_drop(c, jobs[i]->clone);
    if (!c->json)
        print_tables(&r);
    if (r.batch || n > 1)
        print_summary(&r, base_mono_ns() / 1e9 - r.t0);
    rc = r.failed || r.done < r.n_jobs ? CLI_EXIT_FAIL : CLI_EXIT_OK;
    ev_loop_destroy(r.loop);
    free(order);
    jobs_free(jobs, n);
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
    unsigned par;
    int nq = 0, qs = 0, wait_s = 0, rc;
    job **jobs;

    rc = parallel_of(c, &par);
    if (!rc)
        rc = parse_int_flag(c, "num-queues", &nq);
    if (!rc)
        rc = parse_int_flag(c, "queue-size", &qs);
    if (!rc)
        rc = wait_of(c, &wait_s);
    if (rc)
        return rc;
    jobs = calloc(c->n_args + 1, sizeof(*jobs));
    if (!jobs)
        return cli_error("out of memory");
    for (size_t i = 0; i < c->n_args; i++) {
        job *j = calloc(1, sizeof(*j));

        if (!j) {
            jobs_free(jobs, i);
            return cli_error("out of memory");
        }
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
        jobs[i] = j;
    }
    return run_jobs(c, jobs, c->n_args, false, par);
}

int cli_fs_attach(cli_ctx *c) { return run_flag_ops(c, CLI_OP_FS_ATTACH); }
int cli_fs_detach(cli_ctx *c) { return run_flag_ops(c, CLI_OP_FS_DETACH); }
int cli_fs_list(cli_ctx *c) { return run_flag_ops(c, CLI_OP_FS_LIST); }
int cli_device_attach(cli_ctx *c) { return run_flag_ops(c, CLI_OP_DEVICE_ATTACH); }
int cli_device_detach(cli_ctx *c) { return run_flag_ops(c, CLI_OP_DEVICE_DETACH); }
int cli_device_list(cli_ctx *c) { return run_flag_ops(c, CLI_OP_DEVICE_LIST); }

static char *read_all(FILE *f, size_t *len)
{
    char *buf = NULL;
    size_t cap = 0, n = 0, r;

    for (;;) {
        if (n + 4096 + 1 > cap) {
            size_t nc = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, nc);

            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap = nc;
        }
        r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* A clone line's shares become fs-attach jobs of their own, on the same
 * line, each waiting for the clone. */
static int clone_subs(job *j, job ***jobs, size_t *n, size_t *cap)
{
    j->subs = calloc(j->op.n_fs, sizeof(*j->subs));
    if (!j->subs)
        return -ENOMEM;
    for (size_t i = 0; i < j->op.n_fs; i++) {
        job *s = calloc(1, sizeof(*s));

        if (!s)
            return -ENOMEM;
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 64;
            job **nj = realloc(*jobs, nc * sizeof(*nj));

            if (!nj) {
                free(s);
                return -ENOMEM;
            }
            *jobs = nj;
            *cap = nc;
        }
        s->op = j->op.fs[i];
        memset(&j->op.fs[i], 0, sizeof(j->op.fs[i]));
        s->line = j->line;
        s->after = j;
        j->subs[j->n_subs++] = s;
        (*jobs)[(*n)++] = s;
    }
    return 0;
}

int cli_batch(cli_ctx *c)
{
    const char *path = c->n_args ? c->args[0] : "-";
    FILE *f;
    char *buf, *p, *end;
    size_t len = 0, n = 0, cap = 0;
    job **jobs = NULL;
    unsigned par;
    int rc, line = 0;
    bool oom = false;

    rc = parallel_of(c, &par);
    if (rc)
        return rc;
    f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
    if (!f)
        return cli_error("open %s: %s", path, strerror(errno));
    buf = read_all(f, &len);
    if (f != stdin)
        fclose(f);
    if (!buf)
        return cli_error("read %s: %s", path, strerror(errno ? errno : EIO));
    for (p = buf, end = buf + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char err[BASE_ERRSTR_MAX];
        job *j;
        int prc;

        line++;
        j = calloc(1, sizeof(*j));
        if (!j) {
            oom = true;
            break;
        }
        prc = cli_plan_parse_line(p, ll, &j->op, err, sizeof(err));
        p += ll + (nl ? 1 : 0);
        if (prc == 1) {
            free(j);
            continue;
        }
        j->line = line;
        if (prc < 0 && asprintf(&j->pre_err, "line %d: %s", line, err) < 0)
            j->pre_err = NULL;
        if (prc < 0 && !j->pre_err) {
            job_free(j);
            oom = true;
            break;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            job **nj = realloc(jobs, nc * sizeof(*nj));

            if (!nj) {
                job_free(j);
                oom = true;
                break;
            }
            jobs = nj;
            cap = nc;
        }
        jobs[n++] = j;
        if (j->op.n_fs && clone_subs(j, &jobs, &n, &cap) < 0) {
            oom = true;
            break;
        }
    }
    free(buf);
    if (oom) {
        jobs_free(jobs, n);
        return cli_error("out of memory");
    }
    if (n == 0) {
        free(jobs);
        return cli_error("batch %s: no operations", path);
    }
    return run_jobs(c, jobs, n, true, par);
}
