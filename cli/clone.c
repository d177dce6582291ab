/* cli/clone.c: vm clone SNAP: new VMs restored from a snapshot.  Each
 * clone gets its own id, name, run dir and API socket, a copy of the
 * snapshot's files with config.json rewritten for it (backends/clonecfg;
 * a Firecracker clone has its drives repointed after the load instead)
 * and its own copies of the writable disks, so no file is shared with the
 * source VM or another clone.  The restores run concurrently through one
 * engine; a clone that fails leaves no record and no run dir. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/clonecfg.h"
#include "backends/safefile.h"
#include "backends/snapstore.h"
#include "cli/cli.h"
#include "http/base.h"

#define CLONE_MAX_COUNT 1000
#define CLONE_MAX_CONFIG (16u << 20)

/* Copies src to a new file dst (never over an existing one or through a
 * symlink), mode 0600. */
static int copy_file(const char *src, const char *dst, char *err, size_t errlen)
{
    char buf[1 << 16];
    int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, rc = 0;
    ssize_t n;

    if (in < 0)
        return base_errf(err, errlen, -errno, "open %s: %s", src, strerror(errno));
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        rc = base_errf(err, errlen, -errno, "create %s: %s", dst, strerror(errno));
        close(in);
        return rc;
    }
    while (rc == 0 && (n = read(in, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || write(out, buf, (size_t)n) != n)
            rc = base_errf(err, errlen, -EIO, "copy %s to %s: %s", src, dst, strerror(errno));
    }
    if (close(out) < 0 && rc == 0)
        rc = base_errf(err, errlen, -errno, "close %s: %s", dst, strerror(errno));
    close(in);
    return rc;
}

static int write_file(const char *path, const char *data, size_t len, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600), rc = 0;

    if (fd < 0)
        return base_errf(err, errlen, -errno, "create %s: %s", path, strerror(errno));
    if (write(fd, data, len) != (ssize_t)len)
        rc = base_errf(err, errlen, -EIO, "write %s: %s", path, strerror(errno));
    close(fd);
    return rc;
}

/* The snapshot's files except config.json, copied into dir. */
static int copy_state(const char *from, const char *dir, char *err, size_t errlen)
{
    DIR *d = opendir(from);
    struct dirent *de;
    int rc = 0;

    if (!d)
        return base_errf(err, errlen, -errno, "open %s: %s", from, strerror(errno));
    while (rc == 0 && (de = readdir(d)) != NULL) {
        char *s = NULL, *t = NULL;

        if (de->d_type != DT_REG || strcmp(de->d_name, "config.json") == 0)
            continue;
        if (asprintf(&s, "%s/%s", from, de->d_name) < 0 ||
            asprintf(&t, "%s/%s", dir, de->d_name) < 0)
            rc = base_errf(err, errlen, -ENOMEM, "out of memory");
        else
            rc = copy_file(s, t, err, errlen);
        free(s);
        free(t);
    }
    closedir(d);
    return rc;
}

/* Firecracker's state file is the VMM's own: the clone copies every drive
 * of the record, and the restore points each drive at its copy before the
 * VM runs. */
static int clone_fc_disks(store_vm *vm, const char *disks, char *err, size_t errlen)
{
    for (size_t k = 0; k < vm->config.n_disks; k++) {
        const char *base = strrchr(vm->config.disks[k], '/');
        char *dst = NULL;
        int rc;

        if (asprintf(&dst, "%s/disk%zu-%s", disks, k, base ? base + 1 : vm->config.disks[k]) < 0)
            return base_errf(err, errlen, -ENOMEM, "out of memory");
        rc = copy_file(vm->config.disks[k], dst, err, errlen);
        if (rc) {
            free(dst);
            return rc;
        }
        free(vm->config.disks[k]);
        vm->config.disks[k] = dst;
    }
    return 0;
}

/* The clone's config.json rewritten from the snapshot's, its disks copied,
 * and the record's disks pointed at the copies. */
static int clone_files(const snapstore_rec *snap, store_vm *vm, const char *restore,
                       const char *disks, char *err, size_t errlen)
{
    char *path = NULL, *buf = NULL;
    size_t len = 0;
    clonecfg_result r;
    int fd, rc;

    if (strcmp(vm->backend, STORE_BACKEND_FC) == 0) {
        rc = clone_fc_disks(vm, disks, err, errlen);
        return rc ? rc : copy_state(snap->dir, restore, err, errlen);
    }
    if (asprintf(&path, "%s/config.json", snap->dir) < 0)
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    rc = fd < 0 ? base_errf(err, errlen, -errno, "open %s: %s", path, strerror(errno))
                : safefile_read_fd(fd, path, CLONE_MAX_CONFIG, &buf, &len, err, errlen);
    if (fd >= 0)
        close(fd);
    free(path);
    path = NULL;
    if (rc)
        return rc;
    rc = clonecfg_rewrite(buf, len, vm->run_dir, disks, &r, err, errlen);
    free(buf);
    if (rc)
        return rc;
    if (asprintf(&path, "%s/config.json", restore) < 0)
        rc = base_errf(err, errlen, -ENOMEM, "out of memory");
    else
        rc = write_file(path, r.json, r.len, err, errlen);
    free(path);
    for (size_t i = 0; rc == 0 && i < r.n_copies; i++) {
        rc = copy_file(r.copies[i].src, r.copies[i].dst, err, errlen);
        for (size_t k = 0; rc == 0 && k < vm->config.n_disks; k++) {
            if (strcmp(vm->config.disks[k], r.copies[i].src) == 0) {
                char *d = strdup(r.copies[i].dst);

                if (!d) {
                    rc = base_errf(err, errlen, -ENOMEM, "out of memory");
                    break;
                }
                free(vm->config.disks[k]);
                vm->config.disks[k] = d;
            }
        }
    }
    clonecfg_result_fini(&r);
    return rc ? rc : copy_state(snap->dir, restore, err, errlen);
}

static int add_cb(store_db *db, void *priv, char *err, size_t errlen)
{
    store_vm copy;

    if (store_vm_copy(&copy, priv) < 0)
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    int rc = store_db_add(db, &copy, err, errlen);
    store_vm_fini(&copy);
    return rc;
}

static int remove_cb(store_db *db, void *priv, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    store_db_remove(db, priv);
    return 0;
}

/* One clone: the record (state created) from the snapshot's source
 * config, its run dir with the restore files.  *restore owned. */
static int clone_prepare(cli_ctx *c, const snapstore_rec *snap, const char *name, store_vm *vm,
                         char **restore, char *err, size_t errlen)
{
    char *disks = NULL;
    int rc;

    *restore = NULL;
    if (store_vm_copy(vm, &snap->source) < 0)
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    free(vm->config.name);
    free(vm->run_dir);
    free(vm->log_dir);
    free(vm->created_at);
    free(vm->updated_at);
    free(vm->started_at);
    vm->started_at = NULL;
    vm->state = STORE_CREATED;
    if ((rc = store_new_id(vm->id)) < 0)
        return base_errf(err, errlen, rc, "generate VM id: %s", strerror(-rc));
    vm->config.name = strdup(name);
    vm->run_dir = store_default_run_dir(c->root, vm->backend, vm->id);
    vm->log_dir = vm->run_dir ? strdup(vm->run_dir) : NULL;
    vm->created_at = store_now();
    vm->updated_at = vm->created_at ? strdup(vm->created_at) : NULL;
    if (!vm->config.name || !vm->log_dir || !vm->updated_at ||
        asprintf(restore, "%s/restore", vm->run_dir) < 0 ||
        asprintf(&disks, "%s/disks", vm->run_dir) < 0) {
        free(disks);
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    }
    rc = safefile_mkdir_private(*restore, err, errlen);
    if (rc == 0)
        rc = safefile_mkdir_private(disks, err, errlen);
    if (rc == 0)
        rc = clone_files(snap, vm, *restore, disks, err, errlen);
    if (rc == 0)
        rc = store_update(c->root, vm->backend, add_cb, vm, err, errlen);
    free(disks);
    return rc;
}

/* Undoes clone_prepare: the record (if added) and the run dir. */
void cli_clone_drop(cli_ctx *c, store_vm *vm)
{
    char err[BASE_ERRSTR_MAX];

    store_update(c->root, vm->backend, remove_cb, vm->id, err, sizeof(err));
    store_vm_lock_remove(c->root, vm->backend, vm->id);
    if (vm->run_dir)
        cli_rm_run_tree(c->root, vm->backend, vm->run_dir);
}

int cli_clone_prepare(cli_ctx *c, const char *snap_ref, const char *name, store_vm *vm,
                      char **restore, char *err, size_t errlen)
{
    const snapstore_rec *snap;
    snapstore_db db;
    char q[128];
    int rc;

    memset(vm, 0, sizeof(*vm));
    *restore = NULL;
    if (!store_name_valid(name))
        return base_errf(err, errlen, -EINVAL, "invalid VM name %s",
                         base_quote(q, sizeof(q), name));
    rc = snapstore_load(c->root, &db, err, errlen);
    if (rc)
        return rc;
    rc = snapstore_resolve(&db, snap_ref, &snap, err, errlen);
    if (rc == 0)
        rc = store_name_taken(c->root, name, err, errlen);
    if (rc == 0 && (rc = clone_prepare(c, snap, name, vm, restore, err, errlen)) < 0) {
        cli_clone_drop(c, vm);
        store_vm_fini(vm);
        free(*restore);
        *restore = NULL;
    }
    snapstore_db_fini(&db);
    return rc;
}

/* The name of clone i (1-based): the --name template with {i} replaced. */
static char *clone_name(const char *tmpl, size_t i)
{
    const char *p = strstr(tmpl, "{i}");
    char *out = NULL;

    if (!p)
        return strdup(tmpl);
    if (asprintf(&out, "%.*s%zu%s", (int)(p - tmpl), tmpl, i, p + 3) < 0)
        return NULL;
    return out;
}

static void clone_print(const cli_ctx *c, const store_vm *vm, const cli_lc_job *j,
                        const snapstore_rec *snap)
{
    if (c->json) {
        yajl_gen g = cli_gen_new(false);

        if (!g)
            return;
        yajl_gen_map_open(g);
        cli_gen_kv_str(g, "id", vm->id);
        cli_gen_kv_str(g, "name", vm->config.name);
        cli_gen_kv_str(g, "state", cli_flag_bool(c, "paused") ? "paused" : "running");
        cli_gen_kv_int(g, "pid", j->pid);
        cli_gen_kv_str(g, "snapshot", snap->id);
        cli_gen_kv_bool(g, "shared_memory", vm->config.shared_memory);
        cli_gen_kv_str(g, "note", j->errstr && j->errstr[0] ? j->errstr : NULL);
        yajl_gen_map_close(g);
        cli_gen_print(g, stdout);
        return;
    }
    cli_printf(stdout, "%s: cloned from %s (id=%s, pid=%d%s)\n", vm->config.name, snap->name,
               vm->id, j->pid, cli_flag_bool(c, "paused") ? ", paused" : "");
    if (j->errstr && j->errstr[0])
        cli_printf(stderr, "Note: %s: %s\n", vm->config.name, j->errstr);
}

static int clone_count(cli_ctx *c, size_t *n)
{
    const char *s = cli_flag_str(c, "count"), *tmpl = cli_flag_str(c, "name");
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > CLONE_MAX_COUNT)
        return cli_usage_error(c, "invalid argument \"%s\" for \"--count\" flag: expected 1 to %d",
                               s, CLONE_MAX_COUNT);
    if (v > 1 && tmpl && !strstr(tmpl, "{i}"))
        return cli_usage_error(c, "--count %ld needs a --name template with {i}, e.g. 'web-{i}'",
                               v);
    *n = (size_t)v;
    return 0;
}

int cli_vm_clone(cli_ctx *c)
{
    char err[BASE_ERRSTR_MAX], q[128];
    const char *tmpl = cli_flag_str(c, "name");
    const snapstore_rec *snap;
    snapstore_db db;
    size_t n = 0, ok = 0, next = 1;
    int rc = clone_count(c, &n);

    if (rc)
        return rc;
    if (snapstore_load(c->root, &db, err, sizeof(err)) < 0)
        return cli_error("%s", err);
    if (snapstore_resolve(&db, c->args[0], &snap, err, sizeof(err)) < 0) {
        snapstore_db_fini(&db);
        return cli_error("%s", err);
    }
    store_vm *vms = calloc(n, sizeof(*vms));
    cli_lc_job *jobs = calloc(n, sizeof(*jobs));
    char **dirs = calloc(n, sizeof(*dirs));
    if (!vms || !jobs || !dirs)
        n = 0, rc = cli_error("out of memory");
    for (size_t i = 0; i < n; i++) {
        char dflt[64], *name;

        snprintf(dflt, sizeof(dflt), "%.40s-clone-{i}", snap->name);
        /* A given template numbers from 1 and a taken name fails; the
         * default takes the first free numbers, so cloning twice works. */
        if (tmpl) {
            name = clone_name(tmpl, i + 1);
        } else {
            while ((name = clone_name(dflt, next++)) && store_name_valid(name) &&
                   store_name_taken(c->root, name, err, sizeof(err)) == -EEXIST)
                free(name);
        }
        if (!name || !store_name_valid(name)) {
            rc = cli_error("invalid VM name %s", base_quote(q, sizeof(q), name));
        } else if (store_name_taken(c->root, name, err, sizeof(err)) < 0 ||
                   clone_prepare(c, snap, name, &vms[ok], &dirs[ok], err, sizeof(err)) < 0) {
            rc = cli_error("clone %s: %s", name, err);
            cli_clone_drop(c, &vms[ok]);
            store_vm_fini(&vms[ok]);
            free(dirs[ok]);
            dirs[ok] = NULL;
        } else {
            jobs[ok].vm = &vms[ok];
            jobs[ok].dir = dirs[ok];
            ok++;
        }
        free(name);
    }
    cocoon_vm_opts o = COCOON_VM_OPTS_INIT;

    o.paused = cli_flag_bool(c, "paused");
    cli_lc_run(c, jobs, ok, cocoon_vm_restore, "clone", &o);
    for (size_t i = 0; i < ok; i++) {
        if (jobs[i].err) {
            rc = cli_error("%s", jobs[i].errstr ? jobs[i].errstr : "clone failed");
            cli_clone_drop(c, &vms[i]);
        } else {
            vms[i].state = STORE_RUNNING;
            clone_print(c, &vms[i], &jobs[i], snap);
        }
        free(jobs[i].errstr);
        free(dirs[i]);
        store_vm_fini(&vms[i]);
    }
    free(vms);
    free(jobs);
    free(dirs);
    snapstore_db_fini(&db);
    return rc;
}
