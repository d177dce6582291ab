/* tests/test_launch.c: VMM argv building, the `vm debug` rendering, size
 * parsing, and real start/stop of chsim as a Cloud Hypervisor stand-in. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "backends/gate.h"
#include "backends/launch.h"
#include "backends/store.h"
#include "backends/safefile.h"
#include "engine/cocoon.h"
#include "http/base.h"
#include "tests/support/support.h"

static void fill_vm(store_vm *vm, const char *run_dir)
{
    memset(vm, 0, sizeof(*vm));
    memcpy(vm->id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", STORE_ID_LEN);
    vm->backend = STORE_BACKEND_CH;
    vm->state = STORE_CREATED;
    vm->config.name = strdup("web-1");
    vm->config.cpu = 1;
    vm->config.memory = 512ull << 20;
    vm->run_dir = strdup(run_dir);
    vm->log_dir = strdup(run_dir);
}

static void assert_argv(char **argv, const char *const *want)
{
    size_t i;

    for (i = 0; want[i]; i++) {
        assert_non_null(argv[i]);
        assert_string_equal(argv[i], want[i]);
    }
    assert_null(argv[i]);
}

static void test_memory_mib(void **state)
{
    (void)state;
    assert_int_equal(launch_memory_mib(512ull << 20), 512);
    assert_int_equal(launch_memory_mib((512ull << 20) + 1), 513);
    assert_int_equal(launch_memory_mib(1), 1);
    assert_int_equal(launch_memory_mib(0), 1);
    assert_int_equal(launch_memory_mib(3ull << 19), 2);   /* 1.5 MiB */
    assert_int_equal(launch_memory_mib(2ull << 30), 2048);
}

static void test_parse_size(void **state)
{
    uint64_t v = 0;

    (void)state;
    assert_int_equal(launch_parse_size("512M", &v), 0);
    assert_int_equal(v, 512ull << 20);
    assert_int_equal(launch_parse_size("2G", &v), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(launch_parse_size("2Gi", &v), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(launch_parse_size("1024k", &v), 0);
    assert_int_equal(v, 1ull << 20);
    assert_int_equal(launch_parse_size("536870912", &v), 0);
    assert_int_equal(v, 536870912ull);
    assert_int_equal(launch_parse_size("", &v), -EINVAL);
    assert_int_equal(launch_parse_size("0", &v), -EINVAL);
    assert_int_equal(launch_parse_size("-1G", &v), -EINVAL);
    assert_int_equal(launch_parse_size("12X", &v), -EINVAL);
    assert_int_equal(launch_parse_size("M", &v), -EINVAL);
    assert_int_equal(launch_parse_size("99999999999999999999", &v), -EINVAL);
    assert_int_equal(launch_parse_size("20000000000T", &v), -EINVAL);
}

static void test_ch_argv_minimal(void **state)
{
    static const char *const want[] = {
        "cloud-hypervisor", "--api-socket", "path=/run/x/api.sock", "--cpus", "boot=1",
        "--memory", "size=512M", "--serial", "tty", "--console", "off", NULL };
    char err[BASE_ERRSTR_MAX], **argv = NULL;
    store_vm vm;

    (void)state;
    fill_vm(&vm, "/run/x");
    assert_int_equal(launch_ch_argv(&vm, "cloud-hypervisor", &argv, err, sizeof(err)), 0);
    assert_argv(argv, want);
    launch_argv_free(argv);
    store_vm_fini(&vm);
}

static void test_ch_argv_full(void **state)
{
    static const char *const want[] = {
        "/usr/bin/cloud-hypervisor", "--api-socket", "path=/r/api.sock", "--cpus", "boot=4",
        "--memory", "size=1025M,shared=on", "--kernel", "/k/vmlinux", "--initramfs", "/k/initrd",
        "--cmdline", "console=ttyS0 root=/dev/vda", "--disk", "path=/d/root.img", "--disk",
        "path=/d/data.img", "--serial", "tty", "--console", "off", NULL };
    char err[BASE_ERRSTR_MAX], **argv = NULL;
    store_vm vm;

    (void)state;
    fill_vm(&vm, "/r");
    vm.config.cpu = 4;
    vm.config.memory = (1ull << 30) + 4096;     /* rounds up to 1025 MiB */
    vm.config.shared_memory = true;
    vm.config.kernel = strdup("/k/vmlinux");
    vm.config.initramfs = strdup("/k/initrd");
    vm.config.cmdline = strdup("console=ttyS0 root=/dev/vda");
    vm.config.disks = calloc(2, sizeof(char *));
    vm.config.disks[0] = strdup("/d/root.img");
    vm.config.disks[1] = strdup("/d/data.img");
    vm.config.n_disks = 2;
    assert_int_equal(launch_ch_argv(&vm, "/usr/bin/cloud-hypervisor", &argv, err, sizeof(err)), 0);
    assert_argv(argv, want);
    launch_argv_free(argv);
    store_vm_fini(&vm);
}

static void test_fc_argv(void **state)
{
    static const char *const want[] = { "firecracker", "--api-sock", "/r/api.sock", NULL };
    char err[BASE_ERRSTR_MAX], **argv = NULL;
    store_vm vm;

    (void)state;
    fill_vm(&vm, "/r");
    vm.backend = STORE_BACKEND_FC;
    assert_int_equal(launch_fc_argv(&vm, "firecracker", &argv, err, sizeof(err)), 0);
    assert_argv(argv, want);
    launch_argv_free(argv);
    free(vm.run_dir);
    vm.run_dir = NULL;
    assert_int_equal(launch_ch_argv(&vm, "x", &argv, err, sizeof(err)), -EINVAL);
    store_vm_fini(&vm);
}

static void test_debug_format(void **state)
{
    static const char *const argv[] = {
        "cloud-hypervisor", "--api-socket", "path=/r/api.sock", "--cpus", "boot=2",
        "--memory", "size=512M,shared=on", "--kernel", "/k/vmlinux", "--cmdline",
        "console=ttyS0 root=/dev/vda", "--disk", "path=/d/a.img", "--disk", "path=/d/it's.img",
        "--serial", "tty", "--console", "off", NULL };
    char *text;

    (void)state;
    text = launch_debug_format((char *const *)argv);
    assert_non_null(text);
    assert_string_equal(text,
        "cloud-hypervisor \\\n"
        "  --api-socket path=/r/api.sock \\\n"
        "  --cpus boot=2 \\\n"
        "  --memory size=512M,shared=on \\\n"
        "  --kernel /k/vmlinux \\\n"
        "  --cmdline 'console=ttyS0 root=/dev/vda' \\\n"
        "  --disk path=/d/a.img \\\n"
        "  --disk 'path=/d/it'\\''s.img' \\\n"
        "  --serial tty \\\n"
        "  --console off\n");
    free(text);
    assert_null(launch_debug_format(NULL));
}

static void test_pick_and_which(void **state)
{
    char *p;

    (void)state;
    setenv("COCOON_TEST_BIN", "/opt/ch", 1);
    assert_string_equal(launch_pick_binary("/x/ch", "COCOON_TEST_BIN", "d"), "/x/ch");
    assert_string_equal(launch_pick_binary(NULL, "COCOON_TEST_BIN", "d"), "/opt/ch");
    assert_string_equal(launch_pick_binary("", "COCOON_TEST_BIN", "d"), "/opt/ch");
    unsetenv("COCOON_TEST_BIN");
    assert_string_equal(launch_pick_binary(NULL, "COCOON_TEST_BIN", "d"), "d");
    p = launch_which("sh");
    assert_non_null(p);
    assert_true(p[0] == '/');
    free(p);
    assert_null(launch_which("cocoon-no-such-binary-xyz"));
}

/* A temp root with one created CH record; the caller frees both. */
static int add_cb(store_db *db, void *priv, char *err, size_t errlen)
{
    return store_db_add(db, priv, err, errlen);
}

static char *make_root_rec(store_vm *vm)
{
    char err[BASE_ERRSTR_MAX], *root = sup_tmpdir();
    store_vm copy;

    memset(vm, 0, sizeof(*vm));
    assert_int_equal(store_new_id(vm->id), 0);
    vm->backend = STORE_BACKEND_CH;
    vm->state = STORE_CREATED;
    vm->config.name = strdup("web-1");
    vm->config.cpu = 1;
    vm->config.memory = 512ull << 20;
    vm->config.shared_memory = true;
    vm->config.kernel = strdup("/dev/null");
    vm->run_dir = store_default_run_dir(root, STORE_BACKEND_CH, vm->id);
    vm->log_dir = strdup(vm->run_dir);
    assert_int_equal(store_vm_copy(&copy, vm), 0);
    assert_int_equal(store_update(root, STORE_BACKEND_CH, add_cb, &copy, err, sizeof(err)), 0);
    store_vm_fini(&copy);
    return root;
}

/* ----------------------------------------- start and stop through the engine */

typedef struct stop_bounds {
    unsigned call_ms, graceful_ms, term_ms, kill_ms;
} stop_bounds;

struct lc_res {
    int calls, err, pid;
    char errstr[BASE_ERRSTR_MAX];
};

static void lc_cb(cocoon_engine *e, const cocoon_result *r, void *priv)
{
    struct lc_res *x = priv;

    (void)e;
    x->calls++;
    x->err = r->err;
    x->pid = r->pid;
    snprintf(x->errstr, sizeof(x->errstr), "%s", r->errstr);
}

/* One vm start or stop of vm through a fresh engine; vm is re-read from
 * the store afterwards. */
static int lc_one(const char *root, store_vm *vm, bool start, const char *binary,
                  unsigned timeout_ms, const stop_bounds *b, pid_t *pid, char *err,
                  size_t errlen)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    cocoon_options opt = { .size = sizeof(cocoon_options), .root_dir = root,
                           .timeout_ms = timeout_ms };
    cocoon_engine *e = cocoon_engine_new(loop, &opt);
    cocoon_vm_opts o = { .size = sizeof(cocoon_vm_opts), .binary = binary };
    struct lc_res x = { 0 };
    char id[STORE_ID_LEN + 1];

    if (b) {
        o.call_ms = b->call_ms;
        o.graceful_ms = b->graceful_ms;
        o.term_ms = b->term_ms;
        o.kill_ms = b->kill_ms;
    }
    assert_non_null(e);
    assert_int_equal(start ? cocoon_vm_start(e, vm->id, &o, lc_cb, &x)
                           : cocoon_vm_stop(e, vm->id, &o, lc_cb, &x), 0);
    while (!x.calls)
        ev_run(loop, EVRUN_ONCE);
    assert_int_equal(x.calls, 1);
    cocoon_engine_free(e);
    ev_loop_destroy(loop);
    memcpy(err, x.errstr, errlen < sizeof(x.errstr) ? errlen : sizeof(x.errstr));
    err[errlen - 1] = '\0';
    if (pid)
        *pid = x.pid;
    memcpy(id, vm->id, sizeof(id));
    store_vm_fini(vm);
    assert_int_equal(store_resolve(root, id, vm, err + strlen(err), 0), 0);
    return x.err;
}

static int launch_start(const char *root, store_vm *vm, const char *binary, unsigned timeout_ms,
                        pid_t *pid, char *err, size_t errlen)
{
    return lc_one(root, vm, true, binary, timeout_ms, NULL, pid, err, errlen);
}

static int launch_stop(const char *root, store_vm *vm, const char *default_binary,
                       const stop_bounds *b, char *err, size_t errlen)
{
    (void)default_binary;
    return lc_one(root, vm, false, NULL, 0, b, NULL, err, errlen);
}

static void assert_stored_state(const char *root, const char *id, store_state want)
{
    char err[BASE_ERRSTR_MAX];
    store_vm got;

    assert_int_equal(store_resolve(root, id, &got, err, sizeof(err)), 0);
    assert_int_equal(got.state, want);
    store_vm_fini(&got);
}

static void test_start_stop_chsim(void **state)
{
    char err[BASE_ERRSTR_MAX], *chsim = sup_build_path("chsim"), *root, *pidfile, *sock;
    store_vm vm;
    pid_t pid = 0, gpid = 0;
    struct stat st;

    (void)state;
    root = make_root_rec(&vm);
    assert_int_equal(launch_start(root, &vm, chsim, 5000, &pid, err, sizeof(err)), 0);
    assert_true(pid > 0);
    assert_int_equal(vm.state, STORE_RUNNING);
    assert_non_null(vm.binary);
    assert_true(vm.binary[0] == '/');
    assert_non_null(vm.started_at);
    assert_stored_state(root, vm.id, STORE_RUNNING);
    pidfile = gate_pidfile(&vm);
    sock = gate_api_sock(&vm);
    assert_int_equal(stat(pidfile, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(gate_check(&vm, "cloud-hypervisor", &gpid, err, sizeof(err)), 0);
    assert_int_equal(gpid, pid);
    /* The VMM runs in its own session. */
    assert_int_equal(getsid(pid), pid);

    assert_int_equal(launch_stop(root, &vm, "cloud-hypervisor", NULL, err, sizeof(err)), 0);
    assert_int_equal(vm.state, STORE_STOPPED);
    assert_stored_state(root, vm.id, STORE_STOPPED);
    assert_int_equal(stat(pidfile, &st), -1);
    assert_int_equal(kill(pid, 0), -1);
    /* Restart after a stop works, then stop once more. */
    assert_int_equal(launch_start(root, &vm, chsim, 5000, &pid, err, sizeof(err)), 0);
    assert_int_equal(sup_wait_socket(sock, 1000), 0);
    assert_int_equal(launch_stop(root, &vm, "cloud-hypervisor", NULL, err, sizeof(err)), 0);
    free(pidfile);
    free(sock);
    store_vm_fini(&vm);
    sup_rmrf(root);
    free(root);
    free(chsim);
}

static void test_stop_ignored_shutdown(void **state)
{
    char err[BASE_ERRSTR_MAX], *chsim = sup_build_path("chsim"), *root, *sock;
    stop_bounds b = { 300, 600, 1500, 1500 };
    store_vm vm;
    pid_t pid = 0;
    long long t0;

    (void)state;
    root = make_root_rec(&vm);
    assert_int_equal(launch_start(root, &vm, chsim, 5000, &pid, err, sizeof(err)), 0);
    sock = gate_api_sock(&vm);
    assert_int_equal(sup_chsim_fault(sock, "vm.shutdown", "never-reply", 0), 0);
    assert_int_equal(sup_chsim_fault(sock, "vmm.shutdown", "never-reply", 0), 0);
    t0 = sup_now_ms();
    assert_int_equal(launch_stop(root, &vm, "cloud-hypervisor", &b, err, sizeof(err)), 0);
    /* The never-answered call costs call_ms, then SIGTERM ends chsim. */
    assert_true(sup_now_ms() - t0 < 300 + 600 + 1500 + 500);
    assert_true(sup_now_ms() - t0 >= 300);
    assert_int_equal(kill(pid, 0), -1);
    assert_stored_state(root, vm.id, STORE_STOPPED);
    free(sock);
    store_vm_fini(&vm);
    sup_rmrf(root);
    free(root);
    free(chsim);
}

static void test_start_failure_records_error(void **state)
{
    char err[BASE_ERRSTR_MAX], *root, script[512], *dir;
    store_vm vm;
    FILE *f;

    (void)state;
    root = make_root_rec(&vm);
    dir = sup_tmpdir();
    snprintf(script, sizeof(script), "%s/fake-ch", dir);
    f = fopen(script, "w");
    assert_non_null(f);
    fputs("#!/bin/sh\necho 'fake-ch: cannot open kernel' >&2\nexit 3\n", f);
    fclose(f);
    chmod(script, 0755);
    assert_int_not_equal(launch_start(root, &vm, script, 2000, NULL, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "exited with status 3"));
    assert_non_null(strstr(err, "fake-ch: cannot open kernel"));
    assert_int_equal(vm.state, STORE_ERROR);
    assert_stored_state(root, vm.id, STORE_ERROR);
    assert_int_not_equal(launch_start(root, &vm, "/nonexistent/ch", 2000, NULL, err,
                                      sizeof(err)), 0);
    assert_non_null(strstr(err, "/nonexistent/ch"));
    store_vm_fini(&vm);
    sup_rmrf(root);
    sup_rmrf(dir);
    free(root);
    free(dir);
}

/* A "VMM" that ignores SIGTERM and has no API: stop must escalate to
 * SIGKILL within its bounds. */
/* Waits until process pid ignores sig, read from the SigIgn mask of
 * /proc/<pid>/status: the moment a shell's trap '' is in place. */
static void wait_ignores(pid_t pid, int sig)
{
    long long deadline = sup_now_ms() + 10000;
    char path[64], line[256];

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    for (;;) {
        FILE *f = fopen(path, "r");
        unsigned long long mask = 0;

        assert_non_null(f);
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "SigIgn: %llx", &mask) == 1)
                break;
        fclose(f);
        if (mask & (1ull << (sig - 1)))
            return;
        assert_true(sup_now_ms() < deadline);
    }
}

static void test_stop_escalates_to_sigkill(void **state)
{
    char err[BASE_ERRSTR_MAX], *root, *pidfile, *arg = NULL;
    stop_bounds b = { 200, 300, 400, 2000 };
    store_vm vm;
    pid_t pid;
    long long t0, el;
    int st;

    (void)state;
    root = make_root_rec(&vm);
    assert_int_equal(safefile_mkdir_private(vm.run_dir, err, sizeof(err)), 0);
    assert_true(asprintf(&arg, "path=%s/api.sock", vm.run_dir) > 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/bash", "/bin/bash", "-c", "trap '' TERM; while :; do sleep 0.05; done",
              "--api-socket", arg, (char *)NULL);
        _exit(127);
    }
    pidfile = gate_pidfile(&vm);
    assert_int_equal(safefile_pidfile_write(pidfile, pid, err, sizeof(err)), 0);
    vm.state = STORE_RUNNING;
    vm.binary = strdup("/bin/bash");
    assert_int_equal(launch_record_save(root, &vm, err, sizeof(err)), 0);
    wait_ignores(pid, SIGTERM);  /* bash has installed its trap */
    assert_int_equal(gate_check(&vm, "cloud-hypervisor", NULL, err, sizeof(err)), 0);
    t0 = sup_now_ms();
    assert_int_equal(launch_stop(root, &vm, "cloud-hypervisor", &b, err, sizeof(err)), 0);
    el = sup_now_ms() - t0;
    assert_true(el >= 300 + 400);
    assert_true(el < 300 + 400 + 10000);
    /* reaped by launch_stop, killed by SIGKILL */
    assert_int_equal(waitpid(pid, &st, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    assert_int_equal(access(pidfile, F_OK), -1);
    assert_stored_state(root, vm.id, STORE_STOPPED);
    free(arg);
    free(pidfile);
    store_vm_fini(&vm);
    sup_rmrf(root);
    free(root);
}

/* A pid that fails the gate (reused by an unrelated process) is never
 * signalled: the record is just marked stopped. */
static void test_stop_never_signals_foreign_pid(void **state)
{
    char err[BASE_ERRSTR_MAX], *root, *pidfile;
    store_vm vm;
    pid_t pid;
    int st;

    (void)state;
    root = make_root_rec(&vm);
    assert_int_equal(safefile_mkdir_private(vm.run_dir, err, sizeof(err)), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/sleep", "sleep", "5", (char *)NULL);
        _exit(127);
    }
    pidfile = gate_pidfile(&vm);
    assert_int_equal(safefile_pidfile_write(pidfile, pid, err, sizeof(err)), 0);
    vm.state = STORE_RUNNING;
    assert_int_equal(launch_record_save(root, &vm, err, sizeof(err)), 0);
    assert_int_equal(launch_stop(root, &vm, "cloud-hypervisor", NULL, err, sizeof(err)), 0);
    assert_int_equal(waitpid(pid, &st, WNOHANG), 0);       /* still running */
    assert_int_equal(vm.state, STORE_STOPPED);
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    free(pidfile);
    store_vm_fini(&vm);
    sup_rmrf(root);
    free(root);
}

/* Many VMs through one engine: every start is under way before any
 * completes, and every stop has its shutdown request at its VMM at the
 * same time.  Both are read from events and chsim's counters, not from
 * timing. */
#define MANY 24

struct many {
    const char *root;
    store_vm vms[MANY];
    struct lc_res res[MANY];
    int done, spawned_at_first;
    char *socks[MANY];
    ev_timer poll;
    bool all_asked;
};

static int count_pidfiles(struct many *m)
{
    int n = 0;

    for (int i = 0; i < MANY; i++) {
        char *p = gate_pidfile(&m->vms[i]);

        n += access(p, F_OK) == 0;
        free(p);
    }
    return n;
}

static struct many *g_many;

static void many_cb(cocoon_engine *e, const cocoon_result *r, void *priv)
{
    struct many *m = g_many;

    if (m->done++ == 0)
        m->spawned_at_first = count_pidfiles(m);
    lc_cb(e, r, priv);
}

/* While every stop waits on a vm.shutdown that chsim never answers, the
 * test reads the counters; once each VMM holds its request, it ends them. */
static void many_poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct many *m = w->data;
    int asked = 0;

    (void)loop;
    (void)revents;
    for (int i = 0; i < MANY; i++)
        asked += sup_chsim_count(m->socks[i], "vm.shutdown") == 1;
    if (asked < MANY)
        return;
    m->all_asked = true;
    ev_timer_stop(loop, w);
    for (int i = 0; i < MANY; i++) {
        char *p = gate_pidfile(&m->vms[i]);
        FILE *f = fopen(p, "r");
        int pid = 0;

        assert_non_null(f);
        assert_int_equal(fscanf(f, "%d", &pid), 1);
        fclose(f);
        kill(pid, SIGTERM);
        free(p);
    }
}

static void test_start_stop_many(void **state)
{
    char err[BASE_ERRSTR_MAX], *chsim = sup_build_path("chsim");
    struct many *m = calloc(1, sizeof(*m));
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    cocoon_options opt = COCOON_OPTIONS_INIT;
    cocoon_vm_opts so = { .size = sizeof(cocoon_vm_opts), .binary = chsim };
    cocoon_vm_opts to = { .size = sizeof(cocoon_vm_opts), .call_ms = 120000,
                          .graceful_ms = 120000 };
    cocoon_engine *e;

    (void)state;
    g_many = m;
    m->root = make_root_rec(&m->vms[0]);
    for (int i = 1; i < MANY; i++) {
        store_vm copy;

        memset(&m->vms[i], 0, sizeof(m->vms[i]));
        assert_int_equal(store_vm_copy(&m->vms[i], &m->vms[0]), 0);
        assert_int_equal(store_new_id(m->vms[i].id), 0);
        free(m->vms[i].config.name);
        m->vms[i].config.name = sup_asprintf("web-%d", i + 1);
        free(m->vms[i].run_dir);
        free(m->vms[i].log_dir);
        m->vms[i].run_dir = store_default_run_dir(m->root, STORE_BACKEND_CH, m->vms[i].id);
        m->vms[i].log_dir = strdup(m->vms[i].run_dir);
        assert_int_equal(store_vm_copy(&copy, &m->vms[i]), 0);
        assert_int_equal(store_update(m->root, STORE_BACKEND_CH, add_cb, &copy, err,
                                      sizeof(err)), 0);
        store_vm_fini(&copy);
    }
    for (int i = 0; i < MANY; i++)
        m->socks[i] = gate_api_sock(&m->vms[i]);
    opt.root_dir = m->root;
    e = cocoon_engine_new(loop, &opt);
    assert_non_null(e);

    for (int i = 0; i < MANY; i++)
        assert_int_equal(cocoon_vm_start(e, m->vms[i].id, &so, many_cb, &m->res[i]), 0);
    while (m->done < MANY)
        ev_run(loop, EVRUN_ONCE);
    assert_int_equal(m->spawned_at_first, MANY);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(m->res[i].calls, 1);
        assert_int_equal(m->res[i].err, 0);
        assert_true(m->res[i].pid > 0);
        assert_stored_state(m->root, m->vms[i].id, STORE_RUNNING);
        assert_int_equal(sup_chsim_count(m->socks[i], "vmm.ping") >= 1, 1);
        assert_int_equal(sup_chsim_fault(m->socks[i], "vm.shutdown", "never-reply", 0), 0);
    }

    memset(m->res, 0, sizeof(m->res));
    m->done = 0;
    ev_timer_init(&m->poll, many_poll_cb, 0.02, 0.02);
    m->poll.data = m;
    ev_timer_start(loop, &m->poll);
    for (int i = 0; i < MANY; i++)
        assert_int_equal(cocoon_vm_stop(e, m->vms[i].id, &to, many_cb, &m->res[i]), 0);
    while (m->done < MANY)
        ev_run(loop, EVRUN_ONCE);
    assert_true(m->all_asked);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(m->res[i].calls, 1);
        assert_int_equal(m->res[i].err, 0);
        assert_stored_state(m->root, m->vms[i].id, STORE_STOPPED);
        free(m->socks[i]);
        store_vm_fini(&m->vms[i]);
    }
    cocoon_engine_free(e);
    ev_loop_destroy(loop);
    sup_rmrf(m->root);
    free((char *)m->root);
    free(m);
    free(chsim);
}

/* One VM's operations keep their order in one engine: start, stop, start. */
static void test_per_vm_order(void **state)
{
    char *chsim = sup_build_path("chsim"), *root;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    cocoon_options opt = COCOON_OPTIONS_INIT;
    cocoon_vm_opts so = { .size = sizeof(cocoon_vm_opts), .binary = chsim };
    struct lc_res r[3] = { 0 };
    cocoon_engine *e;
    store_vm vm;

    (void)state;
    root = make_root_rec(&vm);
    opt.root_dir = root;
    e = cocoon_engine_new(loop, &opt);
    assert_int_equal(cocoon_vm_start(e, vm.id, &so, lc_cb, &r[0]), 0);
    assert_int_equal(cocoon_vm_stop(e, vm.id, NULL, lc_cb, &r[1]), 0);
    assert_int_equal(cocoon_vm_start(e, vm.id, &so, lc_cb, &r[2]), 0);
    while (!r[2].calls)
        ev_run(loop, EVRUN_ONCE);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].err, 0);
    }
    assert_true(r[0].pid > 0 && r[2].pid > 0 && r[0].pid != r[2].pid);
    /* The first VMM has exited: reaped already, or a zombie reaped now. */
    assert_int_not_equal(waitpid(r[0].pid, NULL, WNOHANG), 0);
    assert_stored_state(root, vm.id, STORE_RUNNING);
    assert_int_equal(cocoon_vm_stop(e, vm.id, NULL, lc_cb, &r[1]), 0);
    while (r[1].calls < 2)
        ev_run(loop, EVRUN_ONCE);
    assert_int_equal(r[1].err, 0);
    assert_stored_state(root, vm.id, STORE_STOPPED);
    cocoon_engine_free(e);
    ev_loop_destroy(loop);
    store_vm_fini(&vm);
    sup_rmrf(root);
    free(root);
    free(chsim);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_mib),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_ch_argv_minimal),
        cmocka_unit_test(test_ch_argv_full),
        cmocka_unit_test(test_fc_argv),
        cmocka_unit_test(test_debug_format),
        cmocka_unit_test(test_pick_and_which),
        cmocka_unit_test(test_start_stop_chsim),
        cmocka_unit_test(test_stop_ignored_shutdown),
        cmocka_unit_test(test_start_failure_records_error),
        cmocka_unit_test(test_stop_escalates_to_sigkill),
        cmocka_unit_test(test_stop_never_signals_foreign_pid),
        cmocka_unit_test(test_start_stop_many),
        cmocka_unit_test(test_per_vm_order),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
