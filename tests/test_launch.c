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
#include "base.h"
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
    launch_stop_bounds b = { 300, 600, 1500, 1500 };
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
    launch_stop_bounds b = { 200, 300, 400, 2000 };
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
              arg, (char *)NULL);
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
    assert_true(el < 300 + 400 + 2000);
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
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
