/* tests/test_gate.c: the running gate against real processes: chsim
 * serving the VM's api.sock passes; a live process of another program, a
 * VMM serving another socket, a dead pid, a missing or garbage pidfile and
 * a non-running record all fail with the exact "...: VM not running"
 * texts.  gate_find finds a VM's VMM when its pidfile lies. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/gate.h"
#include "backends/store.h"
#include "backends/safefile.h"
#include "http/base.h"
#include "tests/support/support.h"

typedef struct fixture {
    char *tmp;
    char *chsim;            /* <build>/chsim */
    store_vm vm;            /* running, run_dir <tmp>/run, binary chsim */
    char *sock, *pidfile;
    pid_t vmm;              /* chsim serving sock, or 0 */
} fixture;

static void fixture_vm(fixture *f, const char *backend)
{
    memset(&f->vm, 0, sizeof f->vm);
    assert_int_equal(store_new_id(f->vm.id), 0);
    f->vm.backend = backend;
    f->vm.state = STORE_RUNNING;
    f->vm.run_dir = sup_asprintf("%s/run", f->tmp);
    f->vm.binary = strdup(f->chsim);
    char err[BASE_ERRSTR_MAX];
    assert_int_equal(safefile_mkdir_private(f->vm.run_dir, err, sizeof err), 0);
    f->sock = gate_api_sock(&f->vm);
    f->pidfile = gate_pidfile(&f->vm);
    assert_non_null(f->sock);
    assert_non_null(f->pidfile);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->tmp = sup_tmpdir();
    f->chsim = sup_build_path("chsim");
    struct stat st;
    if (stat(f->chsim, &st) < 0)
        fail_msg("%s not built (run make chsim first)", f->chsim);
    fixture_vm(f, STORE_BACKEND_CH);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->vmm > 0)
        sup_kill(f->vmm);
    store_vm_fini(&f->vm);
    free(f->sock);
    free(f->pidfile);
    free(f->chsim);
    sup_rmrf(f->tmp);
    free(f->tmp);
    free(f);
    return 0;
}

static void start_chsim(fixture *f)
{
    f->vmm = sup_chsim_start(f->sock, NULL);
    assert_true(f->vmm > 0);
    char err[BASE_ERRSTR_MAX];
    assert_int_equal(safefile_pidfile_write(f->pidfile, f->vmm, err, sizeof err), 0);
}

static pid_t spawn_sleep(void)
{
    char bin[] = "/bin/sleep", arg[] = "30";
    char *argv[] = { bin, arg, NULL };
    pid_t pid = sup_spawn(argv);
    assert_true(pid > 0);
    /* Wait until the exec has happened, so /proc shows sleep, not us. */
    for (int i = 0; i < 500; i++) {
        char path[64], buf[64] = "";
        snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
        FILE *fp = fopen(path, "re");
        if (fp) {
            size_t n = fread(buf, 1, sizeof buf - 1, fp);
            buf[n] = '\0';
            fclose(fp);
        }
        if (strcmp(buf, "/bin/sleep") == 0)
            return pid;
        usleep(10000);
    }
    fail_msg("sleep did not exec");
    return -1;
}

static void expect_gate(fixture *f, const char *default_binary, int want_rc, const char *want)
{
    char err[BASE_ERRSTR_MAX] = "";
    pid_t pid = -1;
    int rc = gate_check(&f->vm, default_binary, &pid, err, sizeof err);
    if (rc != want_rc)
        fail_msg("gate: rc %d (%s), want %d", rc, err, want_rc);
    if (rc == 0) {
        assert_int_equal(pid, f->vmm);
    } else {
        assert_string_equal(err, want);
        assert_int_equal(pid, -1);
    }
}

static void test_paths(void **state)
{
    fixture *f = *state;
    char *want = sup_asprintf("%s/run/api.sock", f->tmp);
    assert_string_equal(f->sock, want);
    free(want);
    want = sup_asprintf("%s/run/ch.pid", f->tmp);
    assert_string_equal(f->pidfile, want);
    free(want);
    f->vm.backend = STORE_BACKEND_FC;
    char *p = gate_pidfile(&f->vm);
    want = sup_asprintf("%s/run/fc.pid", f->tmp);
    assert_string_equal(p, want);
    free(want);
    free(p);
    free(f->vm.run_dir);
    f->vm.run_dir = NULL;
    assert_null(gate_pidfile(&f->vm));
    assert_null(gate_api_sock(&f->vm));
}

static void test_chsim_passes(void **state)
{
    fixture *f = *state;
    start_chsim(f);
    expect_gate(f, "cloud-hypervisor", 0, NULL);
    /* pid may be NULL. */
    char err[BASE_ERRSTR_MAX];
    assert_int_equal(gate_check(&f->vm, NULL, NULL, err, sizeof err), 0);
    assert_true(gate_cmdline_matches(f->vmm, f->chsim, f->sock));
    /* The binary is matched exactly, never by basename: argv[0] as
     * launched, or the executable's canonical path. */
    assert_false(gate_cmdline_matches(f->vmm, "/elsewhere/chsim", f->sock));
    assert_false(gate_cmdline_matches(f->vmm, "chsim", f->sock));
    char *exe = realpath(f->chsim, NULL);
    assert_non_null(exe);
    assert_true(gate_cmdline_matches(f->vmm, exe, f->sock));
    free(exe);
    assert_false(gate_cmdline_matches(f->vmm, "cloud-hypervisor", f->sock));
    assert_false(gate_cmdline_matches(f->vmm, f->chsim, "/nope/api.sock"));
    assert_false(gate_cmdline_matches(f->vmm, "", f->sock));
    assert_false(gate_cmdline_matches(0, f->chsim, f->sock));
}

/* read(2) calls while g_count_reads, through -Wl,--wrap=read. */
static bool g_count_reads;
static int g_reads;

ssize_t __real_read(int fd, void *buf, size_t n);
ssize_t __wrap_read(int fd, void *buf, size_t n);

ssize_t __wrap_read(int fd, void *buf, size_t n)
{
    if (g_count_reads)
        g_reads++;
    return __real_read(fd, buf, n);
}

/* A command line shorter than the first read takes that one read: procfs
 * fills a read to the end, so no second read looks for the end. */
static void test_cmdline_one_read(void **state)
{
    fixture *f = *state;
    bool ok;

    start_chsim(f);
    g_reads = 0;
    g_count_reads = true;
    ok = gate_cmdline_matches(f->vmm, f->chsim, f->sock);
    g_count_reads = false;
    assert_true(ok);
    assert_int_equal(g_reads, 1);
}

static void test_reused_pid_of_other_program(void **state)
{
    fixture *f = *state;
    pid_t sleeper = spawn_sleep();
    char err[BASE_ERRSTR_MAX];
    assert_int_equal(safefile_pidfile_write(f->pidfile, sleeper, err, sizeof err), 0);
    char *want = sup_asprintf("vm %s pid %ld not cloud-hypervisor: VM not running", f->vm.id,
                           (long)sleeper);
    expect_gate(f, "cloud-hypervisor", -EHOSTDOWN, want);
    free(want);
    /* Even when the expected binary is sleep itself, the socket is missing. */
    free(f->vm.binary);
    f->vm.binary = strdup("/bin/sleep");
    assert_false(gate_cmdline_matches(sleeper, "/bin/sleep", f->sock));
    /* An argument equal to the path is not an --api-socket argument. */
    assert_false(gate_cmdline_matches(sleeper, "/bin/sleep", "30"));
    sup_kill(sleeper);
}

static void test_firecracker_text(void **state)
{
    fixture *f = *state;
    f->vm.backend = STORE_BACKEND_FC;
    char *fcpid = gate_pidfile(&f->vm);
    pid_t sleeper = spawn_sleep();
    char err[BASE_ERRSTR_MAX];
    assert_int_equal(safefile_pidfile_write(fcpid, sleeper, err, sizeof err), 0);
    char *want = sup_asprintf("vm %s pid %ld not firecracker: VM not running", f->vm.id,
                           (long)sleeper);
    expect_gate(f, "firecracker", -EHOSTDOWN, want);
    free(want);
    sup_kill(sleeper);
    /* ch.pid is not consulted for a firecracker VM. */
    unlink(fcpid);
    assert_int_equal(safefile_pidfile_write(f->pidfile, sleeper, err, sizeof err), 0);
    want = sup_asprintf("vm %s read pidfile: open %s: No such file or directory: VM not running",
                     f->vm.id, fcpid);
    expect_gate(f, "firecracker", -EHOSTDOWN, want);
    free(want);
    free(fcpid);
}

static void test_vmm_serving_another_socket(void **state)
{
    fixture *f = *state;
    char *other_dir = sup_asprintf("%s/other", f->tmp);
    assert_int_equal(mkdir(other_dir, 0700), 0);
    char *other = sup_asprintf("%s/api.sock", other_dir);
    f->vmm = sup_chsim_start(other, NULL);
    assert_true(f->vmm > 0);
    char err[BASE_ERRSTR_MAX];
    assert_int_equal(safefile_pidfile_write(f->pidfile, f->vmm, err, sizeof err), 0);
    char *want = sup_asprintf("vm %s pid %ld not cloud-hypervisor: VM not running", f->vm.id,
                           (long)f->vmm);
    expect_gate(f, NULL, -EHOSTDOWN, want);
    free(want);
    free(other);
    free(other_dir);
}

static void test_dead_pid(void **state)
{
    fixture *f = *state;
    start_chsim(f);
    pid_t dead = f->vmm;
    sup_kill(dead);
    f->vmm = 0;
    char *want = sup_asprintf("vm %s pid %ld not cloud-hypervisor: VM not running", f->vm.id,
                           (long)dead);
    expect_gate(f, NULL, -EHOSTDOWN, want);
    free(want);
}

static void test_missing_pidfile(void **state)
{
    fixture *f = *state;
    char *want = sup_asprintf("vm %s read pidfile: open %s: No such file or directory: "
                           "VM not running",
                           f->vm.id, f->pidfile);
    expect_gate(f, NULL, -EHOSTDOWN, want);
    free(want);
}

static void test_garbage_pidfile(void **state)
{
    fixture *f = *state;
    int fd = open(f->pidfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "garbage\n", 8), 8);
    close(fd);
    char *want = sup_asprintf("vm %s read pidfile: parse PID from %s: invalid syntax "
                           "\"garbage\": VM not running",
                           f->vm.id, f->pidfile);
    expect_gate(f, NULL, -EHOSTDOWN, want);
    free(want);
}

static void test_state_not_running(void **state)
{
    fixture *f = *state;
    /* Even with a healthy VMM, the record's state decides first. */
    start_chsim(f);
    static const struct {
        store_state st;
        const char *name;
    } rows[] = {
        { STORE_STOPPED, "stopped" },
        { STORE_CREATED, "created" },
        { STORE_CREATING, "creating" },
        { STORE_ERROR, "error" },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        f->vm.state = rows[i].st;
        char *want = sup_asprintf("vm %s is %s: VM not running", f->vm.id, rows[i].name);
        expect_gate(f, NULL, -EHOSTDOWN, want);
        free(want);
    }
}

static void test_null_binary_uses_default(void **state)
{
    fixture *f = *state;
    start_chsim(f);
    free(f->vm.binary);
    f->vm.binary = NULL;
    expect_gate(f, f->chsim, 0, NULL);
    char *want = sup_asprintf("vm %s pid %ld not cloud-hypervisor: VM not running", f->vm.id,
                           (long)f->vmm);
    /* A binary of the same name elsewhere is another program. */
    expect_gate(f, "chsim", -EHOSTDOWN, want);
    expect_gate(f, "cloud-hypervisor", -EHOSTDOWN, want);
    /* No default either: the backend's own program name is expected. */
    expect_gate(f, NULL, -EHOSTDOWN, want);
    /* The recorded binary wins over the default. */
    f->vm.binary = strdup("/opt/ch/chsim");
    expect_gate(f, f->chsim, -EHOSTDOWN, want);
    free(want);
    free(f->vm.binary);
    f->vm.binary = strdup(f->chsim);
    expect_gate(f, "cloud-hypervisor", 0, NULL);
}

static void test_no_run_dir(void **state)
{
    fixture *f = *state;
    free(f->vm.run_dir);
    f->vm.run_dir = NULL;
    char *want = sup_asprintf("vm %s read pidfile: record has no run_dir: VM not running",
                           f->vm.id);
    expect_gate(f, NULL, -EHOSTDOWN, want);
    free(want);
}

/* The --api-socket argument must name the socket exactly: a VMM serving
 * "<sock>2", or one that has the path as another argument, is not the
 * VMM of this VM. */
static void test_socket_argument_exact(void **state)
{
    fixture *f = *state;
    char *longer = sup_asprintf("%s2", f->sock);
    char err[BASE_ERRSTR_MAX];

    f->vmm = sup_chsim_start(longer, (const char *const[]){ "--cmdline", f->sock, NULL });
    assert_true(f->vmm > 0);
    assert_int_equal(safefile_pidfile_write(f->pidfile, f->vmm, err, sizeof err), 0);
    assert_false(gate_cmdline_matches(f->vmm, f->chsim, f->sock));
    assert_true(gate_cmdline_matches(f->vmm, f->chsim, longer));
    char *want = sup_asprintf("vm %s pid %ld not cloud-hypervisor: VM not running", f->vm.id,
                              (long)f->vmm);
    expect_gate(f, NULL, -EHOSTDOWN, want);
    free(want);
    free(longer);
}

/* A pid that passes is still refused when its api.sock is not a socket
 * this user or root made in a directory only they write. */
static void test_gate_checks_socket(void **state)
{
    fixture *f = *state;
    char err[BASE_ERRSTR_MAX] = "";
    char *real = sup_asprintf("%s/real.sock", f->tmp);

    start_chsim(f);
    assert_int_equal(rename(f->sock, real), 0);
    assert_int_equal(symlink(real, f->sock), 0);
    assert_int_equal(gate_check(&f->vm, NULL, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "a symlink, not a socket"));
    assert_int_equal(unlink(f->sock), 0);
    assert_int_equal(rename(real, f->sock), 0);
    assert_int_equal(gate_check(&f->vm, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(chmod(f->vm.run_dir, 0777), 0);
    assert_true(gate_check(&f->vm, NULL, NULL, err, sizeof err) < 0);
    assert_non_null(strstr(err, "directory writable by other users"));
    assert_int_equal(chmod(f->vm.run_dir, 0700), 0);
    if (geteuid() == 0) {
        assert_int_equal(lchown(f->sock, 65534, 65534), 0);
        assert_int_equal(gate_check(&f->vm, NULL, NULL, err, sizeof err), -EPERM);
        assert_non_null(strstr(err, "owned by uid 65534, not this user or root"));
    }
    free(real);
}

static void expect_find(fixture *f, int want_rc, pid_t want_pid, const char *want_text)
{
    char err[BASE_ERRSTR_MAX] = "";
    pid_t pid = -1;
    int rc = gate_find(&f->vm, NULL, &pid, err, sizeof err);

    if (rc != want_rc)
        fail_msg("gate_find: rc %d (%s), want %d", rc, err, want_rc);
    if (rc == 0)
        assert_int_equal(pid, want_pid);
    else if (want_text && !strstr(err, want_text))
        fail_msg("gate_find: \"%s\" lacks \"%s\"", err, want_text);
}

/* The VMM of a VM is found whatever its pidfile says and whatever the
 * record's state: through the pidfile, through the socket's listener, or
 * by its exact command line when the socket file is gone. */
static void test_find_vmm(void **state)
{
    fixture *f = *state;
    char err[BASE_ERRSTR_MAX];
    pid_t sleeper;

    expect_find(f, -ESRCH, 0, "no VMM serves");
    start_chsim(f);
    f->vm.state = STORE_CREATED;
    expect_find(f, 0, f->vmm, NULL);
    unlink(f->pidfile);
    expect_find(f, 0, f->vmm, NULL);
    sleeper = spawn_sleep();
    assert_int_equal(safefile_pidfile_write(f->pidfile, sleeper, err, sizeof err), 0);
    expect_find(f, 0, f->vmm, NULL);
    sup_kill(sleeper);
    /* The socket file unlinked: only the command line is left. */
    assert_int_equal(unlink(f->sock), 0);
    expect_find(f, 0, f->vmm, NULL);
    sup_kill(f->vmm);
    f->vmm = 0;
    expect_find(f, -ESRCH, 0, "no VMM serves");
    /* Another program listening on the socket is named, not taken. */
    int fd = sup_unix_bind(f->sock, true);
    char *want = sup_asprintf("pid %ld serves %s but is not", (long)getpid(), f->sock);
    expect_find(f, -EBUSY, 0, want);
    free(want);
    close(fd);
    /* A stale socket file: nothing listens. */
    expect_find(f, -ESRCH, 0, "no VMM serves");
    free(f->vm.run_dir);
    f->vm.run_dir = strdup("run/x");
    expect_find(f, -EINVAL, 0, "run_dir run/x is not an absolute path");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chsim_passes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmdline_one_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reused_pid_of_other_program, setup, teardown),
        cmocka_unit_test_setup_teardown(test_firecracker_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vmm_serving_another_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_pid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_pidfile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_pidfile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_not_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_binary_uses_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_run_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_argument_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gate_checks_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_vmm, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
