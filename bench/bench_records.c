/* bench/bench_records.c: recorded VMs for the peers that address VMs the
 * way users do, by name.  Each VM is a chsim process of its own, started
 * with the argv, session and pidfile the library's VM start uses, so the
 * running gate checks a real pidfile and command line as with Cloud
 * Hypervisor; the records are written to the store in one update. */
#include "bench/bench.h"
#include "backends/gate.h"
#include "backends/launch.h"
#include "backends/safefile.h"
#include "backends/store.h"
#include "http/base.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct bench_rec_add {
    store_vm *vms;
    unsigned n;
} bench_rec_add;

static int bench_rec_add_all(store_db *db, void *priv, char *err, size_t errlen)
{
    const bench_rec_add *a = priv;

    for (unsigned i = 0; i < a->n; i++) {
        int rc = store_db_add(db, &a->vms[i], err, errlen);

        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Waits until the API socket accepts a connection (20 s at most). */
static int bench_rec_wait(const char *path)
{
    for (int t = 0; t < 1000; t++) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

        snprintf(sa.sun_path, sizeof sa.sun_path, "%.107s", path);
        ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return 0;
        usleep(20000);
    }
    return -1;
}

static int bench_rec_listen(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    snprintf(sa.sun_path, sizeof sa.sun_path, "%.107s", path);
    if (fd >= 0 && (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 64) < 0)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Each VM is started the way the library's VM start does it (same argv,
 * own session, log file, pidfile), and the records are written running in
 * one store update: a start per VM would rewrite vms.json once per VM. */
int bench_records_start(bench_records *rs, const char *dir, const char *chsim, unsigned n,
                        char *err, size_t errlen)
{
    char root[256], path[256], abs_chsim[4096];
    store_vm *vms = calloc(n, sizeof *vms);
    bench_rec_add add = { vms, n };
    int rc = -1;

    memset(rs, 0, sizeof *rs);
    err[0] = '\0';
    rs->pids = calloc(n, sizeof *rs->pids);
    rs->vfs = malloc(n * sizeof *rs->vfs);
    if (!vms || !rs->pids || !rs->vfs) {
        free(vms);
        return base_errf(err, errlen, -1, "out of memory");
    }
    rs->n = n;
    for (unsigned i = 0; i < n; i++)
        rs->vfs[i] = -1;
    if (!realpath(chsim, abs_chsim)) {
        base_errf(err, errlen, -1, "%s: %s", chsim, strerror(errno));
        goto out;
    }
    bench_root_dir(root, sizeof root, dir);
    snprintf(path, sizeof path, "%s/rr", dir);
    mkdir(path, 0700);
    for (unsigned i = 0; i < n; i++) {
        store_vm *vm = &vms[i];
        char name[32], run[256], log[300], **argv = NULL, *pidfile;

        store_new_id(vm->id);
        bench_rec_name(name, sizeof name, i);
        bench_rec_run_dir(run, sizeof run, dir, i);
        snprintf(log, sizeof log, "%s/ch.log", run);
        vm->backend = STORE_BACKEND_CH;
        vm->state = STORE_RUNNING;
        vm->config.name = strdup(name);
        vm->config.cpu = 1;
        vm->config.memory = 1u << 30;
        vm->config.shared_memory = true;
        vm->config.kernel = strdup("/dev/null");
        vm->run_dir = strdup(run);
        vm->binary = strdup(abs_chsim);
        vm->created_at = store_now();
        vm->started_at = store_now();
        if (mkdir(run, 0700) < 0 || launch_ch_argv(vm, abs_chsim, &argv, err, errlen) < 0 ||
            launch_spawn(argv, log, &rs->pids[i], err, errlen) < 0) {
            launch_argv_free(argv);
            if (!err[0])
                base_errf(err, errlen, -1, "%s: %s", run, strerror(errno));
            goto out;
        }
        launch_argv_free(argv);
        pidfile = gate_pidfile(vm);
        rc = pidfile ? safefile_pidfile_write(pidfile, rs->pids[i], err, errlen) : -1;
        free(pidfile);
        if (rc < 0)
            goto out;
        rc = -1;
    }
    for (unsigned i = 0; i < n; i++) {
        bench_api_path(path, sizeof path, dir, BENCH_SET_REC, i);
        if (bench_rec_wait(path) < 0) {
            base_errf(err, errlen, -1, "%s did not come up", path);
            goto out;
        }
    }
    if (store_update(root, STORE_BACKEND_CH, bench_rec_add_all, &add, err, errlen) < 0)
        goto out;
    for (unsigned i = 0; i < n; i++) {
        bench_vfs_path(path, sizeof path, dir, BENCH_SET_REC, i);
        rs->vfs[i] = bench_rec_listen(path);
        if (rs->vfs[i] < 0) {
            base_errf(err, errlen, -1, "listen %s: %s", path, strerror(errno));
            goto out;
        }
    }
    rc = 0;
out:
    for (unsigned i = 0; i < n; i++)
        store_vm_fini(&vms[i]);
    free(vms);
    return rc;
}

void bench_records_drain(const bench_records *rs)
{
    for (unsigned i = 0; i < rs->n; i++) {
        int fd;

        while (rs->vfs[i] >= 0 && (fd = accept4(rs->vfs[i], NULL, NULL, SOCK_CLOEXEC)) >= 0)
            close(fd);
    }
}

double bench_records_cpu_us(const bench_records *rs)
{
    double t = 0;

    for (unsigned i = 0; i < rs->n; i++)
        if (rs->pids[i] > 0)
            t += bench_pid_cpu_us(rs->pids[i]);
    return t;
}

/* The chsim processes are this process's children, so their pids are ours to signal and reap. */
void bench_records_stop(bench_records *rs)
{
    for (unsigned i = 0; rs->pids && i < rs->n; i++)
        if (rs->pids[i] > 0)
            kill(rs->pids[i], SIGTERM);
    for (unsigned i = 0; rs->pids && i < rs->n; i++)
        if (rs->pids[i] > 0)
            waitpid(rs->pids[i], NULL, 0);
    for (unsigned i = 0; rs->vfs && i < rs->n; i++)
        if (rs->vfs[i] >= 0)
            close(rs->vfs[i]);
    free(rs->pids);
    free(rs->vfs);
    memset(rs, 0, sizeof *rs);
}
