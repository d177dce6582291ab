/* tests/test_cli.c: the built cocoon binary end to end, in a temp root,
 * against chsim started by `cocoon vm run` and real listening sockets (and
 * the real virtiofsd when installed). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <setjmp.h>
#include <stdbool.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/support/support.h"

#define VIRTIOFSD "/usr/lib/qemu/virtiofsd"
#define MAX_ARGS 64

static char *g_root, *g_cocoon, *g_chsim;

static int setup(void **state)
{
    (void)state;
    g_root = sup_tmpdir();
    return 0;
}

/* Kills every VMM a test left behind (by pidfile), then drops the root. */
static void kill_vmms(const char *backend, const char *pidname)
{
    char dir[512];
    DIR *d;
    struct dirent *de;

    snprintf(dir, sizeof(dir), "%s/run/%s", g_root, backend);
    d = opendir(dir);
    if (!d)
        return;
    while ((de = readdir(d))) {
        char path[1024];
        FILE *f;
        int pid;

        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/%s", dir, de->d_name, pidname);
        f = fopen(path, "r");
        if (!f)
            continue;
        if (fscanf(f, "%d", &pid) == 1 && pid > 1)
            kill(pid, SIGKILL);
        fclose(f);
    }
    closedir(d);
}

static int teardown(void **state)
{
    (void)state;
    kill_vmms("cloudhypervisor", "ch.pid");
    kill_vmms("firecracker", "fc.pid");
    sup_rmrf(g_root);
    free(g_root);
    g_root = NULL;
    return 0;
}

/* Runs cocoon --root-dir <root> args... (NULL-terminated).  out/err owned. */
static int vcli(const char *in, char **out, char **err, va_list ap)
{
    char *argv[MAX_ARGS];
    int n = 0;
    const char *a;
    char *o = NULL, *e = NULL;
    int rc;

    argv[n++] = g_cocoon;
    argv[n++] = (char *)"--root-dir";
    argv[n++] = g_root;
    while ((a = va_arg(ap, const char *)) && n < MAX_ARGS - 1)
        argv[n++] = (char *)a;
    argv[n] = NULL;
    rc = sup_run(argv, in, &o, &e, 30000);
    if (getenv("SUP_VERBOSE"))
        fprintf(stderr, "[cocoon rc=%d]\nstdout: %s\nstderr: %s\n", rc, o ? o : "", e ? e : "");
    if (out)
        *out = o;
    else
        free(o);
    if (err)
        *err = e;
    else
        free(e);
    return rc;
}

static int cli(char **out, char **err, ...)
{
    va_list ap;
    int rc;

    va_start(ap, err);
    rc = vcli(NULL, out, err, ap);
    va_end(ap);
    return rc;
}

static int cli_in(const char *in, char **out, char **err, ...)
{
    va_list ap;
    int rc;

    va_start(ap, err);
    rc = vcli(in, out, err, ap);
    va_end(ap);
    return rc;
}

/* stderr must be exactly "Error: <msg>\n" (plus the usage hint for exit 2). */
static void expect_error(int rc, int want_rc, char *out, char *err, const char *msg)
{
    char want[2048];

    snprintf(want, sizeof(want), "Error: %s\n", msg);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("stderr %s, want %s", err, want);
    assert_int_equal(rc, want_rc);
    free(out);
    free(err);
}

static void vm_run(const char *name)
{
    char *out = NULL, *err = NULL;
    int rc = cli(&out, &err, "vm", "run", "--name", name, "--shared-memory", "--ch-binary",
                 g_chsim, "--kernel", "/dev/null", (char *)NULL);

    if (rc != 0)
        fail_msg("vm run %s: rc %d: %s", name, rc, err);
    assert_non_null(strstr(out, "running"));
    free(out);
    free(err);
}

static char *vm_id(const char *name)
{
    char *out = NULL, *id, *p;

    assert_int_equal(cli(&out, NULL, "-o", "json", "vm", "inspect", name, (char *)NULL), 0);
    p = strstr(out, "\"id\": \"");
    assert_non_null(p);
    id = strndup(p + 7, 26);
    free(out);
    return id;
}

static char *root_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *root_path(const char *fmt, ...)
{
    char rel[512], *p = NULL;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(rel, sizeof(rel), fmt, ap);
    va_end(ap);
    assert_true(asprintf(&p, "%s/%s", g_root, rel) > 0);
    return p;
}

static pid_t read_pid(const char *id, const char *backend, const char *pidname)
{
    char *p = root_path("run/%s/%s/%s", backend, id, pidname);
    FILE *f = fopen(p, "r");
    int pid = -1;

    assert_non_null(f);
    assert_int_equal(fscanf(f, "%d", &pid), 1);
    fclose(f);
    free(p);
    return pid;
}

static size_t count_str(const char *hay, const char *needle)
{
    size_t n = 0;

    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Alive as a VMM: the pid exists and is not a zombie (empty cmdline). */
static bool vmm_alive(pid_t pid)
{
    char path[64], c = 0;
    int fd;
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    fd = open(path, O_RDONLY);
    if (fd < 0)
        return false;
    n = read(fd, &c, 1);
    close(fd);
    return n > 0;
}

/* ---- parsing, help, usage errors ---- */

static void test_help_and_version(void **state)
{
    char *out = NULL, *err = NULL;

    (void)state;
    assert_int_equal(cli(&out, &err, "--help", (char *)NULL), 0);
    assert_non_null(strstr(out, "Usage:"));
    assert_non_null(strstr(out, "vm"));
    assert_non_null(strstr(out, "batch"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "fs", "attach", "-h", (char *)NULL), 0);
    assert_non_null(strstr(out, "cocoon vm fs attach VM... --socket PATH|TEMPLATE --tag TAG"));
    assert_non_null(strstr(out, "--num-queues N"));
    assert_non_null(strstr(out, "(default 1024)"));
    assert_non_null(strstr(out, "Examples:"));
    assert_non_null(strstr(out, "--root-dir DIR"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "create", "--help", (char *)NULL), 0);
    assert_non_null(strstr(out, "--memory SIZE"));
    assert_non_null(strstr(out, "(default 1G)"));
    assert_non_null(strstr(out, "--cpu N "));
    assert_non_null(strstr(out, "(--cpus N is accepted too) (default 2)"));
    free(out);
    free(err);
    /* --wait: no wait unless given; the help says so and shows no default */
    assert_int_equal(cli(&out, &err, "vm", "fs", "detach", "--help", (char *)NULL), 0);
    assert_non_null(strstr(out, "--wait[=SECONDS]           wait until the guest ejects the device, "
                                "at most SECONDS; without --wait, return at once (bare --wait: 30)\n"));
    assert_null(strstr(out, "(default 30)\n      --parallel"));
    free(out);
    free(err);
    {
        char *vout = NULL;

        assert_int_equal(cli(&vout, &err, "--version", (char *)NULL), 0);
        assert_memory_equal(vout, "cocoon version ", 15);
        free(err);
        assert_int_equal(cli(&out, &err, "version", (char *)NULL), 0);
        assert_string_equal(out, vout);
        free(out);
        free(err);
        free(vout);
    }
    /* vm stop shows only the global flags: every flag it has is documented */
    assert_int_equal(cli(&out, &err, "vm", "stop", "--help", (char *)NULL), 0);
    assert_null(strstr(out, "ch-binary"));
    free(out);
    free(err);
}

/* --wait takes its value after '=': "--wait 10" never makes 10 a VM name. */
static void test_wait_value_spelling(void **state)
{
    char *out = NULL, *err = NULL;
    int rc;

    (void)state;
    rc = cli(&out, &err, "vm", "fs", "detach", "--tag", "t", "--wait", "1", (char *)NULL);
    expect_error(rc, 2, out, err, "--wait takes its value after '=': write --wait=1 "
                                  "(or put VM names before --wait)");
    rc = cli(&out, &err, "vm", "device", "detach", "web-1", "--id", "g", "--wait", "30",
             (char *)NULL);
    expect_error(rc, 2, out, err, "--wait takes its value after '=': write --wait=30 "
                                  "(or put VM names before --wait)");
    /* a bare --wait before a VM name that is not a number stays a bare --wait */
    rc = cli(&out, &err, "vm", "fs", "detach", "--tag", "t", "--wait", "nosuchvm", (char *)NULL);
    expect_error(rc, 1, out, err, "fs detach: vm nosuchvm: VM not found");
    rc = cli(&out, &err, "vm", "fs", "detach", "--tag", "t", "--wait=1", "nosuchvm", (char *)NULL);
    expect_error(rc, 1, out, err, "fs detach: vm nosuchvm: VM not found");
}

/* The original tool's spellings and defaults: --cpu (default 2), --memory
 * (default 1G); --cpus still works. */
static void test_original_spellings(void **state)
{
    char *out = NULL, *err = NULL;

    (void)state;
    assert_int_equal(cli(&out, &err, "vm", "create", "--name", "dflt", (char *)NULL), 0);
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "create", "--name", "four", "--cpu", "4", (char *)NULL), 0);
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "create", "--name", "three", "--cpus=3", (char *)NULL), 0);
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "inspect", "dflt", (char *)NULL), 0);
    assert_non_null(strstr(out, "\"cpu\": 2,"));
    assert_non_null(strstr(out, "\"memory\": 1073741824"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "inspect", "four", (char *)NULL), 0);
    assert_non_null(strstr(out, "\"cpu\": 4,"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "inspect", "three", (char *)NULL), 0);
    assert_non_null(strstr(out, "\"cpu\": 3,"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "create", "--cpu", "0", (char *)NULL), 2);
    assert_memory_equal(err, "Error: invalid argument \"0\" for \"--cpu\" flag", 43);
    free(out);
    free(err);
}

/* vm ls is vm list; an empty root says so in text and is [] in JSON. */
static void test_list_alias_and_empty(void **state)
{
    char *out = NULL, *err = NULL, *lout = NULL;

    (void)state;
    assert_int_equal(cli(&out, &err, "vm", "ls", (char *)NULL), 0);
    assert_string_equal(out, "No VMs found.\n");
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "list", (char *)NULL), 0);
    assert_string_equal(out, "No VMs found.\n");
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "-o", "json", "vm", "ls", (char *)NULL), 0);
    assert_string_equal(out, "[]\n");
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "create", "--name", "one", (char *)NULL), 0);
    free(out);
    free(err);
    assert_int_equal(cli(&lout, &err, "vm", "list", (char *)NULL), 0);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "ls", (char *)NULL), 0);
    assert_string_equal(out, lout);
    assert_memory_equal(out, "ID ", 3);
    assert_non_null(strstr(out, " one "));
    free(out);
    free(err);
    free(lout);
    assert_int_equal(cli(&out, &err, "vm", "ls", "--help", (char *)NULL), 0);
    assert_non_null(strstr(out, "Aliases:\n  list, ls\n"));
    free(out);
    free(err);
}

/* vm debug -o json: the argv the start would exec, as an array. */
static void test_debug_json(void **state)
{
    char *out = NULL, *err = NULL, *want = NULL;

    (void)state;
    assert_int_equal(cli(&out, &err, "-o", "json", "vm", "debug", "--cpu", "3", "--memory", "2G",
                         "--shared-memory", "--kernel", "/k", "--ch-binary", "/opt/ch", (char *)NULL), 0);
    assert_true(asprintf(&want, "{\"argv\":[\"/opt/ch\",\"--api-socket\",\"path=%s/run/cloudhypervisor/",
                         g_root) > 0);
    assert_memory_equal(out, want, strlen(want));
    assert_non_null(strstr(out, "/api.sock\",\"--cpus\",\"boot=3\",\"--memory\",\"size=2048M,shared=on\","
                                "\"--kernel\",\"/k\",\"--serial\",\"tty\",\"--console\",\"off\"]}\n"));
    assert_string_equal(err, "");
    free(out);
    free(err);
    free(want);
}

/* cocoon completion: a script for each shell, from the command table. */
static void test_completion_scripts(void **state)
{
    char *out = NULL, *err = NULL;
    int rc;

    (void)state;
    assert_int_equal(cli(&out, &err, "completion", "bash", (char *)NULL), 0);
    assert_non_null(strstr(out, "complete -o default -F _cocoon cocoon\n"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "completion", "zsh", (char *)NULL), 0);
    assert_non_null(strstr(out, "bashcompinit"));
    assert_non_null(strstr(out, "complete -o default -F _cocoon cocoon\n"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "completion", "fish", (char *)NULL), 0);
    assert_non_null(strstr(out, "function __cocoon_path\n"));
    assert_non_null(strstr(out, "complete -c cocoon -n '__cocoon_path \" vm fs attach\"' -l socket -r"));
    assert_non_null(strstr(out, "case ' vm list' ' vm ls'\n"));
    free(out);
    free(err);
    rc = cli(&out, &err, "completion", "tcsh", (char *)NULL);
    expect_error(rc, 2, out, err,
                 "invalid argument \"tcsh\" for \"cocoon completion\": expected one of: bash zsh fish");
    rc = cli(&out, &err, "completion", (char *)NULL);
    expect_error(rc, 2, out, err, "accepts 1 arg(s), received 0");
}

static void test_usage_errors(void **state)
{
    char *out = NULL, *err = NULL;
    int rc;

    (void)state;
    rc = cli(&out, &err, "vm", "list", "--foo", (char *)NULL);
    assert_non_null(strstr(err, "Run 'cocoon vm list --help' for usage."));
    expect_error(rc, 2, out, err, "unknown flag: --foo");
    rc = cli(&out, &err, "vm", "fs", "attach", "web-1", (char *)NULL);
    expect_error(rc, 2, out, err, "required flag(s) \"socket\", \"tag\" not set");
    rc = cli(&out, &err, "vm", "fs", "attach", "web-1", "--socket=/x.sock", (char *)NULL);
    expect_error(rc, 2, out, err, "required flag(s) \"tag\" not set");
    rc = cli(&out, &err, "vm", "device", "attach", "web-1", (char *)NULL);
    expect_error(rc, 2, out, err, "required flag(s) \"pci\" not set");
    rc = cli(&out, &err, "vm", "fs", "detach", "web-1", (char *)NULL);
    expect_error(rc, 2, out, err, "required flag(s) \"tag\" not set");
    rc = cli(&out, &err, "vm", "device", "detach", "web-1", (char *)NULL);
    expect_error(rc, 2, out, err, "required flag(s) \"id\" not set");
    rc = cli(&out, &err, "vm", "frobnicate", (char *)NULL);
    expect_error(rc, 2, out, err, "unknown command \"frobnicate\" for \"cocoon vm\"");
    rc = cli(&out, &err, "vm", "fs", "attach", "--socket", "/x", "--tag", "t", (char *)NULL);
    expect_error(rc, 2, out, err, "requires at least 1 arg(s), only received 0");
    rc = cli(&out, &err, "vm", "inspect", "a", "b", (char *)NULL);
    expect_error(rc, 2, out, err, "accepts 1 arg(s), received 2");
    rc = cli(&out, &err, "-o", "xml", "vm", "list", (char *)NULL);
    expect_error(rc, 2, out, err,
                 "invalid argument \"xml\" for \"-o, --output\" flag: must be text or json");
    rc = cli(&out, &err, "vm", "create", "--memory", "lots", (char *)NULL);
    expect_error(rc, 2, out, err, "invalid argument \"lots\" for \"--memory\" flag: "
                                  "expected a size like 512M, 2G or bytes");
    rc = cli(&out, &err, "vm", "list", "--timeout", (char *)NULL);
    expect_error(rc, 2, out, err, "flag needs an argument: --timeout");
    rc = cli(&out, &err, "vm", "fs", "detach", "x", "--tag", "t", "--wait=soon", (char *)NULL);
    expect_error(rc, 2, out, err, "invalid argument \"soon\" for \"--wait\" flag: "
                                  "expected an integer between 0 and 86400");
}

static void test_fc_shared_rejected(void **state)
{
    static const char *const cmds[] = { "create", "run", "debug" };
    const char *msg = "--fc and --shared-memory are mutually exclusive: "
                      "Firecracker does not support vhost-user-fs hot-plug";
    char *out = NULL, *err = NULL, *db;
    struct stat st;

    (void)state;
    for (size_t i = 0; i < 3; i++) {
        /* Even a bad --memory is not looked at first. */
        int rc = cli(&out, &err, "vm", cmds[i], "--fc", "--shared-memory", "--memory", "bogus",
                     "--name", "x", (char *)NULL);

        assert_string_equal(out, "");
        expect_error(rc, 1, out, err, msg);
    }
    db = root_path("firecracker/db/vms.json");
    assert_int_equal(stat(db, &st), -1);
    free(db);
}

static void test_debug_prints_command(void **state)
{
    char *out = NULL, *err = NULL, want[1024];

    (void)state;
    assert_int_equal(cli(&out, &err, "vm", "debug", "--shared-memory", "--cpus", "2", "--memory",
                         "2G", "--kernel", "/boot/vmlinuz-missing", "--disk", "/d/a.img",
                         "--ch-binary", "/opt/ch/cloud-hypervisor", (char *)NULL), 0);
    /* The run dir embeds a fresh id: compare around it. */
    snprintf(want, sizeof(want), "/opt/ch/cloud-hypervisor \\\n  --api-socket path=%s/run/cloudhypervisor/",
             g_root);
    assert_memory_equal(out, want, strlen(want));
    assert_non_null(strstr(out, "/api.sock \\\n"
                                "  --cpus boot=2 \\\n"
                                "  --memory size=2048M,shared=on \\\n"
                                "  --kernel /boot/vmlinuz-missing \\\n"
                                "  --disk path=/d/a.img \\\n"
                                "  --serial tty \\\n"
                                "  --console off\n"));
    free(out);
    free(err);
    /* Nothing was created or started. */
    assert_int_equal(cli(&out, &err, "vm", "list", (char *)NULL), 0);
    assert_string_equal(out, "No VMs found.\n");
    free(out);
    free(err);
    setenv("COCOON_CH_BINARY", "/env/ch", 1);
    assert_int_equal(cli(&out, &err, "vm", "debug", (char *)NULL), 0);
    unsetenv("COCOON_CH_BINARY");
    assert_memory_equal(out, "/env/ch \\\n", 10);
    assert_non_null(strstr(out, "--memory size=1024M \\\n"));
    free(out);
    free(err);
}

/* ---- validation texts: before any VM lookup ---- */

static void test_validation_texts(void **state)
{
    char *out = NULL, *err = NULL;
    int rc;

    (void)state;
    rc = cli(&out, &err, "vm", "fs", "attach", "nosuchvm", "--socket", "rel.sock", "--tag", "t",
             (char *)NULL);
    expect_error(rc, 1, out, err, "socket must be absolute, got \"rel.sock\"");
    rc = cli(&out, &err, "vm", "fs", "attach", "nosuchvm", "--socket", "", "--tag", "t",
             (char *)NULL);
    expect_error(rc, 1, out, err, "socket is required");
    rc = cli(&out, &err, "vm", "fs", "attach", "nosuchvm", "--socket", "/x.sock", "--tag", "a/b",
             (char *)NULL);
    expect_error(rc, 1, out, err,
                 "tag \"a/b\" invalid: must match [A-Za-z0-9][A-Za-z0-9_-]{0,35}");
    rc = cli(&out, &err, "vm", "fs", "attach", "nosuchvm", "--socket", "/x.sock", "--tag", "t",
             "--num-queues", "-1", (char *)NULL);
    expect_error(rc, 1, out, err, "num-queues must be non-negative, got -1");
    rc = cli(&out, &err, "vm", "fs", "attach", "nosuchvm", "--socket", "/x.sock", "--tag", "t",
             "--queue-size", "-5", (char *)NULL);
    expect_error(rc, 1, out, err, "queue-size must be non-negative, got -5");
    rc = cli(&out, &err, "vm", "fs", "detach", "nosuchvm", "--tag", "", (char *)NULL);
    expect_error(rc, 1, out, err, "tag is required");
    rc = cli(&out, &err, "vm", "device", "detach", "nosuchvm", "--id", "", (char *)NULL);
    expect_error(rc, 1, out, err, "id is required");
    rc = cli(&out, &err, "vm", "device", "attach", "nosuchvm", "--pci", "", (char *)NULL);
    expect_error(rc, 1, out, err, "pci is required");
    rc = cli(&out, &err, "vm", "device", "attach", "nosuchvm", "--pci", "/dev/null", (char *)NULL);
    expect_error(rc, 1, out, err,
                 "pci \"/dev/null\" invalid: absolute path must be under /sys/bus/pci/devices/");
    rc = cli(&out, &err, "vm", "device", "attach", "nosuchvm", "--pci", "01:00.8", (char *)NULL);
    expect_error(rc, 1, out, err,
                 "pci \"01:00.8\" invalid: expect BDF (01:00.0 / 0000:01:00.0) or sysfs path");
    rc = cli(&out, &err, "vm", "device", "attach", "nosuchvm", "--pci", "01:00.0", "--id",
             "cocoon-x", (char *)NULL);
    expect_error(rc, 1, out, err, "id \"cocoon-x\" invalid: must match "
                                  "[A-Za-z0-9][A-Za-z0-9_.-]{0,63} and not start with cocoon-");
    /* Valid input reaches the lookup. */
    rc = cli(&out, &err, "vm", "fs", "attach", "nosuchvm", "--socket", "/x.sock", "--tag", "t",
             (char *)NULL);
    expect_error(rc, 1, out, err, "fs attach: vm nosuchvm: VM not found");
    rc = cli(&out, &err, "vm", "device", "list", "nosuchvm", (char *)NULL);
    expect_error(rc, 1, out, err, "device list: vm nosuchvm: VM not found");
}

/* ---- lifecycle and attach against chsim ---- */

static void test_attach_list_detach(void **state)
{
    char *out = NULL, *err = NULL, *sock = root_path("vfs-web.sock"), *p;
    int lfd, rc;

    (void)state;
    vm_run("web-1");
    lfd = sup_unix_bind(sock, true);
    assert_int_equal(cli(&out, &err, "vm", "fs", "attach", "web-1", "--socket", sock, "--tag",
                         "data", (char *)NULL), 0);
    assert_string_equal(out, "web-1: attached fs data (id=cocoon-fs-data, bdf=0000:00:05.0)\n");
    assert_string_equal(err, "");
    free(out);
    free(err);
    /* Same tag again: the precheck catches it. */
    rc = cli(&out, &err, "vm", "fs", "attach", "web-1", "--socket", sock, "--tag", "data",
             (char *)NULL);
    expect_error(rc, 1, out, err, "fs tag \"data\" already attached");

    assert_int_equal(cli(&out, &err, "vm", "fs", "list", "web-1", (char *)NULL), 0);
    assert_non_null(strstr(out, "cocoon-fs-data"));
    assert_non_null(strstr(out, sock));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "-o", "json", "vm", "fs", "list", "web-1", (char *)NULL), 0);
    p = NULL;
    assert_true(asprintf(&p, "{\"vm\":\"web-1\",\"op\":\"fs-list\",\"ok\":true,\"latency_ms\":") > 0);
    assert_memory_equal(out, p, strlen(p));
    free(p);
    assert_true(asprintf(&p, ",\"fs\":[{\"id\":\"cocoon-fs-data\",\"tag\":\"data\",\"socket\":\"%s\"}]}\n",
                         sock) > 0);
    assert_non_null(strstr(out, p));
    free(p);
    free(out);
    free(err);

    /* inspect: record plus attached_devices with only the fs array */
    assert_int_equal(cli(&out, &err, "vm", "inspect", "web-1", (char *)NULL), 0);
    assert_non_null(strstr(out, "\"attached_devices\": {\n    \"fs\": [\n"));
    assert_non_null(strstr(out, "\"id\": \"cocoon-fs-data\""));
    assert_null(strstr(out, "\"devices\""));
    assert_non_null(strstr(out, "\"shared_memory\": true"));
    assert_string_equal(err, "");
    free(out);
    free(err);

    assert_int_equal(cli(&out, &err, "-o", "json", "vm", "fs", "detach", "web-1", "--tag", "data",
                         "--wait", (char *)NULL), 0);
    assert_memory_equal(out, "{\"vm\":\"web-1\",\"op\":\"fs-detach\",\"ok\":true,"
                             "\"id\":\"cocoon-fs-data\",\"tag\":\"data\",\"latency_ms\":", 86);
    assert_int_equal(count_str(out, "\n"), 1);   /* one op: no summary */
    free(out);
    free(err);
    rc = cli(&out, &err, "vm", "fs", "detach", "web-1", "--tag", "data", (char *)NULL);
    expect_error(rc, 1, out, err, "fs tag \"data\" not attached");
    rc = cli(&out, &err, "vm", "device", "detach", "web-1", "--id", "gpu0", "--wait=2",
             (char *)NULL);
    expect_error(rc, 1, out, err, "device id \"gpu0\" not attached");

    /* After detach, inspect has no attached_devices key at all. */
    assert_int_equal(cli(&out, &err, "vm", "inspect", "web-1", (char *)NULL), 0);
    assert_null(strstr(out, "attached_devices"));
    free(out);
    free(err);
    close(lfd);
    unlink(sock);
    free(sock);

    assert_int_equal(cli(&out, &err, "vm", "rm", "web-1", (char *)NULL), 1);
    assert_string_equal(err, "Error: vm web-1 is running: stop it first or use --force\n");
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "stop", "web-1", (char *)NULL), 0);
    assert_non_null(strstr(out, "web-1: stopped"));
    free(out);
    free(err);
    rc = cli(&out, &err, "vm", "fs", "list", "web-1", (char *)NULL);
    assert_int_equal(rc, 0);     /* a stopped VM lists as empty: header only */
    assert_int_equal(count_str(out, "\n"), 1);
    assert_null(strstr(out, "cocoon-fs"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "rm", "web-1", (char *)NULL), 0);
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "list", (char *)NULL), 0);
    assert_null(strstr(out, "web-1"));
    free(out);
    free(err);
}

static void test_real_virtiofsd(void **state)
{
    char *out = NULL, *err = NULL, *sock = root_path("vfsd.sock"), *share = root_path("share");
    char *src = NULL;
    pid_t vfsd;
    int rc;

    (void)state;
    if (access(VIRTIOFSD, X_OK) != 0) {
        free(sock);
        free(share);
        skip();
    }
    assert_int_equal(mkdir(share, 0700), 0);
    assert_true(asprintf(&src, "source=%s", share) > 0);
    {
        char *argv[] = { (char *)VIRTIOFSD, NULL, (char *)"-o", src, (char *)"-o",
                         (char *)"sandbox=chroot", NULL };
        char *sp = NULL;

        assert_true(asprintf(&sp, "--socket-path=%s", sock) > 0);
        argv[1] = sp;
        vfsd = sup_spawn(argv);
        free(sp);
    }
    assert_int_equal(sup_wait_socket(sock, 60000) == 0 || access(sock, F_OK) == 0, 1);
    vm_run("vfs-vm");
    /* sup_wait_socket connected once: virtiofsd may have served that
     * client and exited, so (re)check the real outcome by what CH says. */
    rc = cli(&out, &err, "vm", "fs", "attach", "vfs-vm", "--socket", sock, "--tag", "share",
             (char *)NULL);
    if (rc == 0) {
        assert_string_equal(out, "vfs-vm: attached fs share (id=cocoon-fs-share, bdf=0000:00:05.0)\n");
    } else {
        /* virtiofsd served sup_wait_socket's probe and is gone: the
         * liveness check says so instead of CH hanging for 60 s. */
        assert_non_null(strstr(err, "virtiofsd socket"));
    }
    free(out);
    free(err);
    sup_kill(vfsd);
    free(src);
    free(sock);
    free(share);
}

static void test_not_running(void **state)
{
    char *out = NULL, *err = NULL, *id, msg[256];
    int rc;

    (void)state;
    assert_int_equal(cli(&out, &err, "vm", "create", "--name", "idle", "--shared-memory",
                         (char *)NULL), 0);
    assert_non_null(strstr(out, "idle: created (id="));
    free(out);
    free(err);
    id = vm_id("idle");
    rc = cli(&out, &err, "vm", "fs", "attach", "idle", "--socket", "/x.sock", "--tag", "t",
             (char *)NULL);
    snprintf(msg, sizeof(msg), "vm is not running: vm %s is created: VM not running", id);
    expect_error(rc, 1, out, err, msg);
    rc = cli(&out, &err, "vm", "device", "attach", "idle", "--pci", "01:00.0", (char *)NULL);
    expect_error(rc, 1, out, err, msg);
    /* inspect of a non-running VM: record, no listing, no warning */
    assert_int_equal(cli(&out, &err, "vm", "inspect", "idle", (char *)NULL), 0);
    assert_non_null(strstr(out, "\"state\": \"created\""));
    assert_null(strstr(out, "attached_devices"));
    assert_string_equal(err, "");
    free(out);
    free(err);
    free(id);
}

/* Like CH, a VMM started without a payload has no VM: vm run must fail
 * with a clear error, not record a running VM.  vm start without
 * --ch-binary runs the binary the record names. */
static void test_run_needs_a_booted_vm(void **state)
{
    char *out = NULL, *err = NULL, *id;
    int rc;

    (void)state;
    rc = cli(&out, &err, "vm", "run", "--name", "bare", "--shared-memory", "--ch-binary",
             g_chsim, (char *)NULL);
    assert_int_equal(rc, 1);
    id = vm_id("bare");
    if (!strstr(err, ": the VMM is up but has no VM: Cloud Hypervisor boots one only when "
                     "given a payload; create the VM with --kernel"))
        fail_msg("stderr %s", err);
    assert_null(strstr(out, "running"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "inspect", "bare", (char *)NULL), 0);
    assert_non_null(strstr(out, "\"state\": \"error\""));
    free(out);
    free(err);
    free(id);

    vm_run("again");
    assert_int_equal(cli(&out, &err, "vm", "stop", "again", (char *)NULL), 0);
    free(out);
    free(err);
    unsetenv("COCOON_CH_BINARY");
    rc = cli(&out, &err, "vm", "start", "again", (char *)NULL);
    if (rc != 0)
        fail_msg("vm start without --ch-binary: %s", err);
    assert_non_null(strstr(out, "again: running"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "stop", "again", (char *)NULL), 0);
    free(out);
    free(err);
}

static void test_firecracker_unsupported(void **state)
{
    char *out = NULL, *err = NULL, *wrap = root_path("bin/firecracker"), *bindir = root_path("bin");
    FILE *f;
    int rc;

    (void)state;
    assert_int_equal(mkdir(bindir, 0700), 0);
    f = fopen(wrap, "w");
    assert_non_null(f);
    /* exec -a keeps argv[0] the wrapper's own path, the binary the record
     * names, so the gate recognizes it. */
    fprintf(f, "#!/bin/bash\nexec -a \"$0\" %s --firecracker \"$@\"\n", g_chsim);
    fclose(f);
    chmod(wrap, 0755);
    assert_int_equal(cli(&out, &err, "vm", "create", "--fc", "--name", "fc-1", "--kernel",
                         "/dev/null", "--disk", "/dev/null", "--disk", "/dev/zero", (char *)NULL), 0);
    free(out);
    free(err);
    rc = cli(&out, &err, "vm", "start", "fc-1", "--fc-binary", wrap, (char *)NULL);
    if (rc != 0)
        fail_msg("start fc-1: %s", err);
    assert_non_null(strstr(out, "fc-1: running"));
    free(out);
    free(err);
    rc = cli(&out, &err, "vm", "fs", "attach", "fc-1", "--socket", "/x.sock", "--tag", "t",
             (char *)NULL);
    expect_error(rc, 1, out, err,
                 "fs attach: backend firecracker: backend does not support fs attach");
    rc = cli(&out, &err, "vm", "fs", "detach", "fc-1", "--tag", "t", (char *)NULL);
    expect_error(rc, 1, out, err,
                 "fs detach: backend firecracker: backend does not support fs attach");
    rc = cli(&out, &err, "vm", "fs", "list", "fc-1", (char *)NULL);
    expect_error(rc, 1, out, err,
                 "fs list: backend firecracker: backend does not support fs attach");
    rc = cli(&out, &err, "vm", "device", "attach", "fc-1", "--pci", "01:00.0", (char *)NULL);
    expect_error(rc, 1, out, err,
                 "device attach: backend firecracker: backend does not support device attach");
    rc = cli(&out, &err, "vm", "device", "detach", "fc-1", "--id", "x", (char *)NULL);
    expect_error(rc, 1, out, err,
                 "device detach: backend firecracker: backend does not support device attach");
    rc = cli(&out, &err, "vm", "device", "list", "fc-1", (char *)NULL);
    expect_error(rc, 1, out, err,
                 "device list: backend firecracker: backend does not support device attach");
    assert_int_equal(cli(&out, &err, "vm", "list", (char *)NULL), 0);
    assert_non_null(strstr(out, "firecracker"));
    assert_null(strstr(out, "stale"));
    free(out);
    free(err);
    /* configured and booted through the pre-boot API */
    {
        char *id = vm_id("fc-1"), *sock = root_path("run/firecracker/%s/api.sock", id);
        char resp[1024];
        static const char get[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        long long t0;

        assert_true(sup_raw_exchange(sock, get, strlen(get), resp, sizeof(resp), 300) > 0);
        assert_non_null(strstr(resp, "\"state\":\"Running\""));
        /* SendCtrlAltDel ends it: no signal needed */
        t0 = sup_now_ms();
        assert_int_equal(cli(&out, &err, "vm", "stop", "fc-1", (char *)NULL), 0);
        assert_non_null(strstr(out, "fc-1: stopped"));
        assert_true(sup_now_ms() - t0 < 2000);
        free(out);
        free(err);
        free(id);
        free(sock);
    }
    assert_int_equal(cli(&out, &err, "vm", "rm", "fc-1", (char *)NULL), 0);
    free(out);
    free(err);
    free(wrap);
    free(bindir);
}

/* ---- output shapes, batch, templates ---- */

static void test_batch_partial_failure(void **state)
{
    char *out = NULL, *err = NULL, *plan = NULL, *s1 = root_path("a.sock"), *s2 = root_path("b.sock");
    int l1, l2, rc;

    (void)state;
    vm_run("web-a");
    vm_run("web-b");
    l1 = sup_unix_bind(s1, true);
    l2 = sup_unix_bind(s2, true);
    assert_true(asprintf(&plan,
        "{\"op\":\"fs-attach\",\"vm\":\"web-a\",\"socket\":\"%s\",\"tag\":\"data\"}\n"
        "{\"op\":\"fs-attach\",\"vm\":\"web-b\",\"socket\":\"%s\",\"tag\":\"data\"}\n"
        "{\"op\":\"fs-attach\",\"vm\":\"web-a\",\"socket\":\"%s\"\n"
        "\n"
        "{\"op\":\"fs-attach\",\"vm\":\"ghost\",\"socket\":\"/x.sock\",\"tag\":\"data\"}\n"
        "{\"op\":\"fs-list\",\"vm\":\"web-a\"}\n"
        "{\"op\":\"fs-detach\",\"vm\":\"web-b\",\"tag\":\"data\",\"wait\":5}\n"
        "{\"op\":\"explode\",\"vm\":\"web-b\"}\n",
        s1, s2, s1) > 0);
    rc = cli_in(plan, &out, &err, "-o", "json", "batch", "-", (char *)NULL);
    assert_int_equal(rc, 1);
    assert_int_equal(count_str(out, "\n"), 8);          /* 7 ops + summary */
    assert_int_equal(count_str(out, "\"ok\":true"), 4);
    assert_int_equal(count_str(out, "\"ok\":false"), 3);
    assert_non_null(strstr(out, "{\"ok\":false,\"error\":\"line 3: invalid JSON: "));
    assert_non_null(strstr(out, "{\"ok\":false,\"error\":\"line 8: unknown op \\\"explode\\\""));
    assert_non_null(strstr(out, "{\"vm\":\"ghost\",\"op\":\"fs-attach\",\"ok\":false,\"tag\":\"data\","
                                "\"error\":\"fs attach: vm ghost: VM not found\",\"latency_ms\":"));
    assert_non_null(strstr(out, "{\"vm\":\"web-b\",\"op\":\"fs-detach\",\"ok\":true,"
                                "\"id\":\"cocoon-fs-data\""));
    assert_non_null(strstr(out, "\"fs\":[{\"id\":\"cocoon-fs-data\""));
    assert_non_null(strstr(out, "{\"summary\":{\"total\":7,\"ok\":4,\"failed\":3,\"wall_ms\":"));
    assert_non_null(strstr(out, ",\"p50_ms\":"));
    assert_non_null(strstr(out, ",\"p99_ms\":"));
    /* per-VM order: web-b's detach came after its attach */
    assert_true(strstr(out, "\"vm\":\"web-b\",\"op\":\"fs-attach\"") <
                strstr(out, "\"vm\":\"web-b\",\"op\":\"fs-detach\""));
    assert_null(strchr(err, '\r'));
    free(out);
    free(err);

    /* The same plan from a file, text output: bad lines by number. */
    {
        char *pf = root_path("plan.jsonl");
        FILE *f = fopen(pf, "w");

        assert_non_null(f);
        fputs("{\"op\":\"fs-list\",\"vm\":\"web-a\"}\nnot json\n", f);
        fclose(f);
        rc = cli(&out, &err, "batch", pf, (char *)NULL);
        assert_int_equal(rc, 1);
        assert_non_null(strstr(err, "Error: line 2: invalid JSON: "));
        assert_non_null(strstr(out, "web-a"));
        free(out);
        free(err);
        free(pf);
    }
    rc = cli(&out, &err, "batch", "/nonexistent/plan", (char *)NULL);
    expect_error(rc, 1, out, err, "open /nonexistent/plan: No such file or directory");
    close(l1);
    close(l2);
    free(plan);
    free(s1);
    free(s2);
}

static void test_templates_and_multi(void **state)
{
    char *out = NULL, *err = NULL, *tmpl = root_path("vfs-{name}.sock");
    char *sa = root_path("vfs-t-a.sock"), *sb = root_path("vfs-t-b.sock");
    char *id, *sid, *tid = NULL, *sock_vm = root_path("by-vm-t-a.sock");
    char *sock_x = root_path("{x}-t-a-t-a{");
    int la, lb, lc, ld, le, rc;

    (void)state;
    vm_run("t-a");
    vm_run("t-b");
    la = sup_unix_bind(sa, true);
    lb = sup_unix_bind(sb, true);
    rc = cli(&out, &err, "vm", "fs", "attach", "t-a", "t-b", "--socket", tmpl, "--tag", "data",
             "--parallel", "2", (char *)NULL);
    if (rc)
        fail_msg("%s", err);
    assert_non_null(strstr(out, "t-a: attached fs data (id=cocoon-fs-data, bdf=0000:00:05.0)\n"));
    assert_non_null(strstr(out, "t-b: attached fs data (id=cocoon-fs-data, bdf=0000:00:05.0)\n"));
    /* more than one op: a summary (text on stderr), no progress bar off a tty */
    assert_non_null(strstr(err, "2 ops on 2 VMs: 2 ok, 0 failed"));
    assert_null(strchr(err, '\r'));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "-o", "json", "vm", "fs", "list", "t-a", "t-b", (char *)NULL), 0);
    assert_non_null(strstr(out, sa));
    assert_non_null(strstr(out, sb));
    assert_non_null(strstr(out, "{\"summary\":{\"total\":2,\"ok\":2,\"failed\":0,"));
    free(out);
    free(err);

    /* {id} and {vm} */
    id = vm_id("t-a");
    assert_true(asprintf(&sid, "%s/id-%s.sock", g_root, id) > 0);
    lc = sup_unix_bind(sid, true);
    assert_true(asprintf(&tid, "%s/id-{id}.sock", g_root) > 0);
    assert_int_equal(cli(&out, &err, "vm", "fs", "attach", "t-a", "--socket", tid, "--tag",
                         "byid", (char *)NULL), 0);
    free(out);
    free(err);
    ld = sup_unix_bind(sock_vm, true);
    free(tid);
    assert_true(asprintf(&tid, "%s/by-vm-{vm}.sock", g_root) > 0);
    assert_int_equal(cli(&out, &err, "vm", "fs", "attach", "t-a", "--socket", tid, "--tag",
                         "byvm", (char *)NULL), 0);
    free(out);
    free(err);
    /* a brace that names no key stays; a key given twice is replaced twice */
    free(tid);
    assert_true(asprintf(&tid, "%s/{x}-{vm}-{vm}{", g_root) > 0);
    le = sup_unix_bind(sock_x, true);
    assert_int_equal(cli(&out, &err, "vm", "fs", "attach", "t-a", "--socket", tid, "--tag",
                         "byx", (char *)NULL), 0);
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "fs", "list", "t-a", (char *)NULL), 0);
    assert_non_null(strstr(out, sid));
    assert_non_null(strstr(out, sock_vm));
    assert_non_null(strstr(out, sock_x));
    free(out);
    free(err);
    /* a template on an unknown VM fails for that VM only */
    rc = cli(&out, &err, "vm", "fs", "attach", "t-b", "nope", "--socket", tmpl, "--tag", "x2",
             (char *)NULL);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "Error: nope: fs attach: vm nope: VM not found\n"));
    free(out);
    free(err);
    close(la);
    close(lb);
    close(lc);
    close(ld);
    close(le);
    free(id);
    free(sid);
    free(tid);
    free(tmpl);
    free(sa);
    free(sb);
    free(sock_vm);
    free(sock_x);
}

static void test_direct_target_template(void **state)
{
    char *out = NULL, *err = NULL, *api = root_path("direct-vm7.sock");
    char *vfs = root_path("vfs-direct-vm7.sock"), *tmpl = root_path("vfs-{name}.sock");
    const char *extra[] = { "--memory", "size=512M,shared=on", NULL };
    pid_t ch;
    int lfd;

    (void)state;
    ch = sup_chsim_start(api, extra);
    lfd = sup_unix_bind(vfs, true);
    assert_int_equal(cli(&out, &err, "vm", "fs", "attach", api, "--socket", tmpl, "--tag", "d",
                         (char *)NULL), 0);
    assert_non_null(strstr(out, ": attached fs d (id=cocoon-fs-d"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "fs", "list", api, (char *)NULL), 0);
    assert_non_null(strstr(out, vfs));
    free(out);
    free(err);
    close(lfd);
    sup_kill(ch);
    free(api);
    free(vfs);
    free(tmpl);
}

/* Runs cocoon with stdout a pipe and stderr a pty; returns what the pty saw. */
static char *run_on_pty(char *const argv[], int *status)
{
    int master, pout[2];
    pid_t pid;
    char *buf = calloc(1, 65536), tmp[4096];
    size_t len = 0;
    long long deadline = sup_now_ms() + 20000;

    assert_int_equal(pipe(pout), 0);
    pid = forkpty(&master, NULL, NULL, NULL);
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pout[1], 1);
        close(pout[0]);
        close(pout[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(pout[1]);
    for (;;) {
        struct pollfd pfd[2] = { { master, POLLIN, 0 }, { pout[0], POLLIN, 0 } };
        ssize_t n;

        if (poll(pfd, 2, 200) < 0 || sup_now_ms() > deadline)
            break;
        if (pfd[1].revents) {
            n = read(pout[0], tmp, sizeof(tmp));
            if (n <= 0) {
                close(pout[0]);
                pout[0] = -1;
            }
        }
        if (pfd[0].revents) {
            n = read(master, tmp, sizeof(tmp));
            if (n <= 0)
                break;              /* EIO once the child is gone */
            if (len + (size_t)n < 65535) {
                memcpy(buf + len, tmp, (size_t)n);
                len += (size_t)n;
            }
        }
        if (pout[0] < 0 && waitpid(pid, status, WNOHANG) == pid) {
            pid = 0;
            break;
        }
    }
    if (pid > 0)
        waitpid(pid, status, 0);
    if (pout[0] >= 0)
        close(pout[0]);
    close(master);
    return buf;
}

static void test_progress_bar_on_tty(void **state)
{
    char *sa = root_path("p-a.sock"), *sb = root_path("p-b.sock"), *tmpl = root_path("p-{vm}.sock");
    char *tty, *out = NULL, *err = NULL;
    int la, lb, status = -1;

    (void)state;
    vm_run("a");
    vm_run("b");
    la = sup_unix_bind(sa, true);
    lb = sup_unix_bind(sb, true);
    {
        char *argv[] = { g_cocoon, (char *)"--root-dir", g_root, (char *)"vm", (char *)"fs",
                         (char *)"attach", (char *)"a", (char *)"b", (char *)"--socket", tmpl,
                         (char *)"--tag", (char *)"p", NULL };

        tty = run_on_pty(argv, &status);
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_non_null(strstr(tty, "2/2"));
    assert_non_null(strstr(tty, "ok 2"));
    assert_non_null(strstr(tty, "\r\033[K"));
    free(tty);
    /* The same kind of run with stderr a pipe: no bar at all. */
    assert_int_equal(cli(&out, &err, "vm", "fs", "list", "a", "b", (char *)NULL), 0);
    assert_null(strchr(err, '\r'));
    assert_null(strstr(err, "\033["));
    free(out);
    free(err);
    /* One VM on a tty: no bar either. */
    {
        char *argv[] = { g_cocoon, (char *)"--root-dir", g_root, (char *)"vm", (char *)"fs",
                         (char *)"list", (char *)"a", NULL };

        tty = run_on_pty(argv, &status);
    }
    assert_null(strstr(tty, "ok 1"));
    free(tty);
    close(la);
    close(lb);
    free(sa);
    free(sb);
    free(tmpl);
}

/* ---- reconciliation, stop fallbacks, inspect warnings ---- */

static void test_stale_pid_in_list(void **state)
{
    char *out = NULL, *err = NULL, *id;
    pid_t pid;
    int i;

    (void)state;
    vm_run("doomed");
    id = vm_id("doomed");
    assert_int_equal(cli(&out, &err, "vm", "list", (char *)NULL), 0);
    assert_non_null(strstr(out, "running"));
    assert_null(strstr(out, "stale"));
    free(out);
    free(err);
    pid = read_pid(id, "cloudhypervisor", "ch.pid");
    assert_int_equal(kill(pid, SIGKILL), 0);
    /* A zombie (no reaper here) has an empty cmdline: that counts as gone. */
    for (i = 0; i < 100 && vmm_alive(pid); i++)
        usleep(20000);
    assert_int_equal(cli(&out, &err, "vm", "list", (char *)NULL), 0);
    assert_non_null(strstr(out, "stopped (stale)"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "-o", "json", "vm", "list", (char *)NULL), 0);
    assert_non_null(strstr(out, "\"state\": \"stopped\""));
    assert_non_null(strstr(out, "\"stale\": true"));
    free(out);
    free(err);
    /* inspect agrees with list: stopped, stale, no pid or socket_path */
    assert_int_equal(cli(&out, &err, "vm", "inspect", "doomed", (char *)NULL), 0);
    assert_non_null(strstr(out, "\"state\": \"stopped\""));
    assert_non_null(strstr(out, "\"stale\": true"));
    assert_null(strstr(out, "\"pid\""));
    assert_null(strstr(out, "socket_path"));
    free(out);
    free(err);
    /* attach says why, with the gate's text */
    {
        char msg[256];
        int rc = cli(&out, &err, "vm", "fs", "list", "doomed", (char *)NULL);

        assert_int_equal(rc, 0);           /* listing a dead VM is empty */
        free(out);
        free(err);
        rc = cli(&out, &err, "vm", "fs", "attach", "doomed", "--socket", "/x.sock", "--tag", "t",
                 (char *)NULL);
        snprintf(msg, sizeof(msg), "vm is not running: vm %s ", id);
        assert_int_equal(rc, 1);
        assert_memory_equal(err + 7, msg, strlen(msg));
        assert_non_null(strstr(err, ": VM not running\n"));
        free(out);
        free(err);
    }
    /* stop cleans the stale record without signalling anything */
    assert_int_equal(cli(&out, &err, "vm", "stop", "doomed", (char *)NULL), 0);
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "list", (char *)NULL), 0);
    assert_null(strstr(out, "stale"));
    assert_non_null(strstr(out, "stopped"));
    free(out);
    free(err);
    free(id);
}

static void test_stop_ignored_shutdown(void **state)
{
    char *out = NULL, *err = NULL, *id, *sock;
    long long t0, el;
    pid_t pid;

    (void)state;
    vm_run("stubborn");
    id = vm_id("stubborn");
    sock = root_path("run/cloudhypervisor/%s/api.sock", id);
    pid = read_pid(id, "cloudhypervisor", "ch.pid");
    assert_int_equal(sup_chsim_fault(sock, "vm.shutdown", "never-reply", 0), 0);
    assert_int_equal(sup_chsim_fault(sock, "vmm.shutdown", "never-reply", 0), 0);
    t0 = sup_now_ms();
    assert_int_equal(cli(&out, &err, "vm", "stop", "stubborn", (char *)NULL), 0);
    el = sup_now_ms() - t0;
    assert_non_null(strstr(out, "stubborn: stopped"));
    /* one 2 s shutdown call, then the graceful window, then SIGTERM */
    assert_true(el >= 1900);
    assert_true(el < 12000);
    assert_false(vmm_alive(pid));
    {
        char *pf = root_path("run/cloudhypervisor/%s/ch.pid", id);

        assert_int_equal(access(pf, F_OK), -1);
        free(pf);
    }
    free(out);
    free(err);
    free(id);
    free(sock);
}

/* Request counts of a VMM that has exited: chsim writes them at exit to
 * <root>/stats-<pid> when started through <root>/bin/chsim (see
 * chsim_wrapper). */
static char *exit_stats(pid_t pid)
{
    char *p = root_path("stats-%d", (int)pid), buf[4096];
    FILE *f = fopen(p, "r");
    size_t n;

    if (!f)
        fail_msg("no stats at %s", p);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    free(p);
    return strdup(buf);
}

/* <root>/bin/chsim: chsim with --stats-file <root>/stats-<its pid>; exec
 * keeps the pid, and exec -a argv[0] the wrapper's path (the binary the
 * record names), so the running gate still knows it. */
static char *chsim_wrapper(void)
{
    char *dir = root_path("bin"), *w = root_path("bin/chsim");
    FILE *f;

    assert_int_equal(mkdir(dir, 0700), 0);
    f = fopen(w, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/bash\nexec -a \"$0\" '%s' --stats-file '%s/stats-'$$ \"$@\"\n", g_chsim,
            g_root);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(w, 0755), 0);
    free(dir);
    return w;
}

static pid_t vm_run_with(const char *name, const char *binary)
{
    char *out = NULL, *err = NULL, *id;
    pid_t pid;

    if (cli(&out, &err, "vm", "run", "--name", name, "--ch-binary", binary, "--kernel",
            "/dev/null", (char *)NULL) != 0)
        fail_msg("vm run %s: %s", name, err);
    free(out);
    free(err);
    id = vm_id(name);
    pid = read_pid(id, "cloudhypervisor", "ch.pid");
    free(id);
    return pid;
}

/* vm stop --force sends no shutdown request and signals at once; a plain
 * stop asks first.  --grace bounds the graceful window (shutdown requests
 * and the exit) before SIGTERM. */
static void test_stop_force_and_grace(void **state)
{
    char *out = NULL, *err = NULL, *w, *st, *id, *sock;
    pid_t hard, soft, stuck;
    long long t0, el;
    int rc;

    (void)state;
    w = chsim_wrapper();
    hard = vm_run_with("hard", w);
    soft = vm_run_with("soft", w);
    assert_int_equal(cli(&out, &err, "vm", "stop", "--force", "hard", (char *)NULL), 0);
    assert_memory_equal(out, "hard: stopped (id=", 18);
    free(out);
    free(err);
    assert_false(vmm_alive(hard));
    st = exit_stats(hard);
    assert_non_null(strstr(st, "\"vm.shutdown\":0,"));
    assert_non_null(strstr(st, "\"vmm.shutdown\":0,"));
    free(st);
    assert_int_equal(cli(&out, &err, "vm", "stop", "soft", (char *)NULL), 0);
    free(out);
    free(err);
    st = exit_stats(soft);
    assert_non_null(strstr(st, "\"vm.shutdown\":1,"));
    free(st);
    assert_int_equal(cli(&out, &err, "-o", "json", "vm", "list", (char *)NULL), 0);
    assert_int_equal(count_str(out, "\"state\": \"stopped\""), 2);
    free(out);
    free(err);

    /* a VMM that never answers its shutdown requests: SIGTERM once the
     * grace is over (the default window alone is 5 s) */
    stuck = vm_run_with("stuck", w);
    id = vm_id("stuck");
    sock = root_path("run/cloudhypervisor/%s/api.sock", id);
    assert_int_equal(sup_chsim_fault(sock, "vm.shutdown", "never-reply", 0), 0);
    assert_int_equal(sup_chsim_fault(sock, "vmm.shutdown", "never-reply", 0), 0);
    t0 = sup_now_ms();
    assert_int_equal(cli(&out, &err, "vm", "stop", "--grace", "1", "stuck", (char *)NULL), 0);
    el = sup_now_ms() - t0;
    assert_false(vmm_alive(stuck));
    assert_true(el >= 900);
    assert_true(el < 4500);
    free(out);
    free(err);

    rc = cli(&out, &err, "vm", "stop", "--grace=0", "stuck", (char *)NULL);
    expect_error(rc, 2, out, err, "invalid argument \"0\" for \"--grace\" flag: expected 1 to "
                                  "3600 seconds (--force skips the graceful shutdown)");
    rc = cli(&out, &err, "vm", "stop", "-f", "--grace=3", "stuck", (char *)NULL);
    expect_error(rc, 2, out, err, "--force and --grace cannot be used together: "
                                  "--force skips the graceful shutdown");
    free(id);
    free(sock);
    free(w);
}

static void test_inspect_list_fails(void **state)
{
    char *out = NULL, *err = NULL, *id, *sock;
    int before;

    (void)state;
    vm_run("flaky");
    id = vm_id("flaky");
    sock = root_path("run/cloudhypervisor/%s/api.sock", id);
    assert_int_equal(sup_chsim_fault(sock, "vm.info", "garbage-status", 0), 0);
    before = sup_chsim_count(sock, "vm.info");
    assert_int_equal(cli(&out, &err, "vm", "inspect", "flaky", (char *)NULL), 0);
    assert_non_null(strstr(out, "\"name\": \"flaky\""));
    assert_non_null(strstr(out, "\"state\": \"running\""));
    assert_null(strstr(out, "attached_devices"));
    assert_memory_equal(err, "Warning: list attached devices of vm ", 37);
    free(out);
    free(err);
    /* one round trip, no retry */
    assert_int_equal(sup_chsim_count(sock, "vm.info") - before, 1);
    free(id);
    free(sock);
}

static void test_inspect_with_devices(void **state)
{
    char *out = NULL, *err = NULL, *id, *sock, *vs = root_path("insp.sock");
    char body[1024], req[1400], resp[512];
    int bl, rl, lfd, before;

    (void)state;
    vm_run("rich");
    id = vm_id("rich");
    sock = root_path("run/cloudhypervisor/%s/api.sock", id);
    lfd = sup_unix_bind(vs, true);
    assert_int_equal(cli(&out, &err, "vm", "fs", "attach", "rich", "--socket", vs, "--tag", "t1",
                         (char *)NULL), 0);
    free(out);
    free(err);
    /* chsim cannot pass a real VFIO device through: show one in vm.info. */
    bl = snprintf(body, sizeof(body),
                  "{\"config\":{\"memory\":{\"size\":536870912,\"shared\":true},"
                  "\"fs\":[{\"id\":\"cocoon-fs-t1\",\"tag\":\"t1\",\"socket\":\"%s\"}],"
                  "\"devices\":[{\"id\":\"gpu0\",\"path\":\"/sys/bus/pci/devices/0000:01:00.0\"},"
                  "{\"id\":\"odd\",\"path\":\"/dev/vfio/odd\"}]},"
                  "\"state\":\"Running\",\"device_tree\":{}}", vs);
    rl = snprintf(req, sizeof(req), "PUT /chsim/vminfo-override HTTP/1.1\r\nHost: localhost\r\n"
                  "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", bl, body);
    assert_true(sup_raw_exchange(sock, req, (size_t)rl, resp, sizeof(resp), 300) > 0);
    before = sup_chsim_count(sock, "vm.info");
    assert_int_equal(cli(&out, &err, "vm", "inspect", "rich", (char *)NULL), 0);
    assert_non_null(strstr(out, "\"attached_devices\": {"));
    assert_non_null(strstr(out, "\"tag\": \"t1\""));
    assert_non_null(strstr(out, "\"devices\": [\n      {\n        \"id\": \"gpu0\",\n"
                                "        \"bdf\": \"0000:01:00.0\"\n      },\n"
                                "      {\n        \"id\": \"odd\"\n      }\n    ]"));
    assert_string_equal(err, "");
    free(out);
    free(err);
    assert_int_equal(sup_chsim_count(sock, "vm.info") - before, 1);  /* ONE vm.info */
    close(lfd);
    free(vs);
    free(id);
    free(sock);
}

/* inspect: pid and socket_path for a running VM (from the pidfile and
 * <run_dir>/api.sock), none for a stopped one; a direct API-socket target
 * as fs attach and fs list take it. */
static void test_inspect_pid_and_direct(void **state)
{
    char *out = NULL, *err = NULL, *id, *sock, *want = NULL;
    char *api = root_path("direct-insp.sock"), *vfs = root_path("vfs-insp.sock");
    const char *extra[] = { "--memory", "size=512M,shared=on", NULL };
    pid_t pid, ch;
    int lfd, rc;

    (void)state;
    vm_run("live");
    id = vm_id("live");
    pid = read_pid(id, "cloudhypervisor", "ch.pid");
    sock = root_path("run/cloudhypervisor/%s/api.sock", id);
    assert_int_equal(cli(&out, &err, "vm", "inspect", "live", (char *)NULL), 0);
    assert_true(asprintf(&want, "\"pid\": %d,\n  \"socket_path\": \"%s\"", (int)pid, sock) > 0);
    assert_non_null(strstr(out, want));
    free(want);
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "create", "--name", "idle", (char *)NULL), 0);
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "inspect", "idle", (char *)NULL), 0);
    assert_null(strstr(out, "\"pid\""));
    assert_null(strstr(out, "socket_path"));
    free(out);
    free(err);

    ch = sup_chsim_start(api, extra);
    lfd = sup_unix_bind(vfs, true);
    assert_int_equal(cli(&out, &err, "vm", "fs", "attach", api, "--socket", vfs, "--tag", "d",
                         (char *)NULL), 0);
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "inspect", api, (char *)NULL), 0);
    assert_true(asprintf(&want, "{\n  \"socket_path\": \"%s\",\n  \"hypervisor\": \"cloud-hypervisor\",\n"
                                "  \"attached_devices\": {\n    \"fs\": [\n      {\n"
                                "        \"id\": \"cocoon-fs-d\",\n        \"tag\": \"d\",\n"
                                "        \"socket\": \"%s\"\n      }\n    ]\n  }\n}\n", api, vfs) > 0);
    assert_string_equal(out, want);
    assert_string_equal(err, "");
    free(want);
    free(out);
    free(err);
    close(lfd);
    sup_kill(ch);
    /* nothing listens there any more: an error, nothing on stdout */
    rc = cli(&out, &err, "vm", "inspect", api, (char *)NULL);
    assert_int_equal(rc, 1);
    assert_string_equal(out, "");
    assert_memory_equal(err, "Error: ", 7);
    assert_non_null(strstr(err, api));
    free(out);
    free(err);
    free(api);
    free(vfs);
    free(sock);
    free(id);
}

static void test_lost_reply_note(void **state)
{
    char *out = NULL, *err = NULL, *id, *sock, *vs = root_path("lost.sock");
    int lfd;

    (void)state;
    vm_run("lossy");
    id = vm_id("lossy");
    sock = root_path("run/cloudhypervisor/%s/api.sock", id);
    lfd = sup_unix_bind(vs, true);
    assert_int_equal(sup_chsim_fault(sock, "vm.add-fs", "close-before-reply", 0), 0);
    assert_int_equal(cli(&out, &err, "vm", "fs", "attach", "lossy", "--socket", vs, "--tag", "d",
                         (char *)NULL), 0);
    assert_string_equal(out, "lossy: attached fs d (id=cocoon-fs-d)\n");
    assert_string_equal(err, "Warning: lossy: vm.add-fs: reply lost; vm.info shows the device "
                             "attached (id=cocoon-fs-d)\n");
    free(out);
    free(err);
    assert_int_equal(sup_chsim_count(sock, "vm.add-fs"), 1);     /* never resent */
    close(lfd);
    free(vs);
    free(id);
    free(sock);
}

static void test_create_defaults_and_rm(void **state)
{
    char *out = NULL, *err = NULL, *id, *run, *name = NULL;
    pid_t pid;
    struct stat st;

    (void)state;
    assert_int_equal(cli(&out, &err, "-o", "json", "vm", "list", (char *)NULL), 0);
    assert_string_equal(out, "[]\n");
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "-o", "json", "vm", "create", (char *)NULL), 0);
    /* {"id":"<26>","name":"vm-<8 lower-case id chars>","state":"created"} */
    assert_memory_equal(out, "{\"id\":\"", 7);
    id = strndup(out + 7, 26);
    assert_true(asprintf(&name, "vm-%.8s", id) > 0);
    for (char *p = name; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    assert_non_null(strstr(out, name));
    assert_non_null(strstr(out, "\"state\":\"created\"}"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "inspect", id, (char *)NULL), 0);
    assert_non_null(strstr(out, "\"cpu\": 2,"));
    assert_non_null(strstr(out, "\"memory\": 1073741824"));
    assert_null(strstr(out, "shared_memory"));
    free(out);
    free(err);
    /* the same name twice is refused */
    assert_int_equal(cli(&out, &err, "vm", "create", "--name", name, (char *)NULL), 1);
    assert_non_null(strstr(err, "already in use"));
    free(out);
    free(err);
    /* like pflag, a flag's value may start with '-' */
    assert_int_equal(cli(&out, &err, "vm", "create", "--name", "-bad", (char *)NULL), 1);
    assert_memory_equal(err, "Error: invalid name \"-bad\"", 26);
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "create", "--name", "bad/name", (char *)NULL), 1);
    assert_memory_equal(err, "Error: invalid name \"bad/name\"", 30);
    free(out);
    free(err);

    /* A VM whose VMM died is not running: rm needs no --force and removes
     * the run dir. */
    vm_run("gone");
    free(id);
    id = vm_id("gone");
    run = root_path("run/cloudhypervisor/%s", id);
    assert_int_equal(stat(run, &st), 0);
    pid = read_pid(id, "cloudhypervisor", "ch.pid");
    kill(pid, SIGKILL);
    for (int i = 0; i < 100 && vmm_alive(pid); i++)
        usleep(20000);
    assert_int_equal(cli(&out, &err, "vm", "rm", "gone", (char *)NULL), 0);
    assert_non_null(strstr(out, "gone: removed"));
    assert_int_equal(stat(run, &st), -1);
    free(out);
    free(err);
    free(run);
    free(name);
    free(id);
}

/* Drops the "name" of record id from the CH vms.json, as a record written
 * by another tool or an older version may lack one. */
static void drop_name(const char *name, const char *id)
{
    char *path = root_path("cloudhypervisor/db/vms.json");
    char *field = NULL, *entry = NULL, buf[8192], *p;
    FILE *f = fopen(path, "r");
    size_t n;

    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_true(asprintf(&field, "\"name\": \"%s\",", name) > 0);
    assert_true(asprintf(&entry, "\"%s\": \"%s\"", name, id) > 0);
    p = strstr(buf, field);
    assert_non_null(p);
    memmove(p, p + strlen(field), strlen(p + strlen(field)) + 1);
    p = strstr(buf, entry);
    assert_non_null(p);
    memmove(p, p + strlen(entry), strlen(p + strlen(entry)) + 1);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(buf, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    free(field);
    free(entry);
    free(path);
}

/* A record without a name is shown by its id, never as "(null)". */
static void test_record_without_name(void **state)
{
    char *out = NULL, *err = NULL, *id, *want = NULL;
    pid_t pid;

    (void)state;
    assert_int_equal(cli(&out, &err, "vm", "create", "--name", "anon", "--kernel", "/dev/null",
                         (char *)NULL),
                     0);
    free(out);
    free(err);
    id = vm_id("anon");
    drop_name("anon", id);
    assert_int_equal(cli(&out, &err, "-o", "json", "vm", "inspect", id, (char *)NULL), 0);
    assert_null(strstr(out, "anon"));
    free(out);
    free(err);

    assert_int_equal(cli(&out, &err, "vm", "start", id, "--ch-binary", g_chsim, (char *)NULL), 0);
    pid = read_pid(id, "cloudhypervisor", "ch.pid");
    assert_true(asprintf(&want, "%s: running (id=%s, pid=%d)\n", id, id, (int)pid) > 0);
    assert_string_equal(out, want);
    free(want);
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "start", id, "--ch-binary", g_chsim, (char *)NULL), 0);
    assert_true(asprintf(&want, "%s: already running (id=%s, pid=%d)\n", id, id, (int)pid) > 0);
    assert_string_equal(out, want);
    free(want);
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "list", (char *)NULL), 0);
    assert_null(strstr(out, "(null)"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "stop", id, (char *)NULL), 0);
    assert_true(asprintf(&want, "%s: stopped (id=%s)\n", id, id) > 0);
    assert_string_equal(out, want);
    free(want);
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "stop", id, (char *)NULL), 0);
    assert_true(asprintf(&want, "%s: not running (id=%s)\n", id, id) > 0);
    assert_string_equal(out, want);
    free(want);
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "rm", id, (char *)NULL), 0);
    assert_true(asprintf(&want, "%s: removed (id=%s)\n", id, id) > 0);
    assert_string_equal(out, want);
    free(want);
    free(out);
    free(err);
    free(id);
}

/* Names are unique across both backends even when a name equals another
 * record's id: a firecracker record named like a cloud-hypervisor id
 * keeps that name taken. */
static void test_name_taken_across_backends(void **state)
{
    static const char fc_id[] = "FCFCFCFCFCFCFCFCFCFCFCFCFC";
    char *out = NULL, *err = NULL, *id, *dir, *path, *msg = NULL;
    FILE *f;
    int rc;

    (void)state;
    assert_int_equal(cli(&out, &err, "vm", "create", "--name", "first", (char *)NULL), 0);
    free(out);
    free(err);
    id = vm_id("first");
    dir = root_path("firecracker");
    mkdir(dir, 0700);
    free(dir);
    dir = root_path("firecracker/db");
    mkdir(dir, 0700);
    path = root_path("firecracker/db/vms.json");
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"vms\": {\"%s\": {\"id\": \"%s\", \"hypervisor\": \"firecracker\", "
            "\"state\": \"created\", \"config\": {\"name\": \"%s\", \"cpu\": 1, "
            "\"memory\": 536870912, \"disks\": []}, "
            "\"run_dir\": \"%s/run/firecracker/%s\", \"log_dir\": \"%s/run/firecracker/%s\", "
            "\"created_at\": \"2026-01-01T00:00:00Z\", \"updated_at\": \"2026-01-01T00:00:00Z\"}}, "
            "\"names\": {\"%s\": \"%s\"}}\n",
            fc_id, fc_id, id, g_root, fc_id, g_root, fc_id, id, fc_id);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(cli(&out, &err, "vm", "inspect", fc_id, (char *)NULL), 0);
    free(out);
    free(err);

    assert_true(asprintf(&msg, "name \"%s\" already in use", id) > 0);
    rc = cli(&out, &err, "vm", "create", "--name", id, (char *)NULL);
    expect_error(rc, 1, out, err, msg);
    free(msg);
    free(path);
    free(dir);
    free(id);
}

/* Live processes whose command line contains needle; their pids in pids
 * (up to max). */
static int procs_with(const char *needle, pid_t *pids, int max)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d))) {
        char path[300], buf[4096];
        ssize_t len;
        int fd;

        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
        fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0)
            continue;
        for (ssize_t i = 0; i < len; i++)
            if (buf[i] == '\0')
                buf[i] = ' ';
        buf[len] = '\0';
        if (strstr(buf, needle) && n < max)
            pids[n++] = (pid_t)atoi(de->d_name);
    }
    closedir(d);
    return n;
}

/* Runs cocoon --root-dir <root> vm <verb> <ref> [--ch-binary chsim] in a
 * child; returns its pid. */
static pid_t cli_bg(const char *verb, const char *ref)
{
    char *argv[] = {g_cocoon, (char *)"--root-dir", g_root, (char *)"vm", (char *)verb,
                    (char *)ref, (char *)"--ch-binary", g_chsim, NULL};

    if (strcmp(verb, "rm") == 0) {
        argv[6] = (char *)"--force";
        argv[7] = NULL;
    } else if (strcmp(verb, "start") != 0)
        argv[6] = NULL;
    return sup_spawn(argv);
}

static int wait_exit(pid_t pid)
{
    int st = 0;

    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* Two `vm start` of one VM at once spawn exactly one VMM; both succeed. */
static void test_concurrent_start(void **state)
{
    char *out = NULL, *err = NULL, *id, *run, *lock;
    pid_t pids[8], a, b;
    struct stat st;
    int n;

    (void)state;
    assert_int_equal(cli(&out, &err, "vm", "create", "--name", "twice", "--kernel", "/dev/null",
                         (char *)NULL),
                     0);
    free(out);
    free(err);
    id = vm_id("twice");
    run = root_path("run/cloudhypervisor/%s/", id);
    for (int round = 0; round < 3; round++) {
        a = cli_bg("start", id);
        b = cli_bg("start", id);
        assert_int_equal(wait_exit(a), 0);
        assert_int_equal(wait_exit(b), 0);
        n = procs_with(run, pids, 8);
        for (int i = 0; i < n; i++)
            if (n != 1)
                kill(pids[i], SIGKILL);
        assert_int_equal(n, 1);
        assert_int_equal(read_pid(id, "cloudhypervisor", "ch.pid"), pids[0]);

        /* and two stops at once: both succeed, nothing is left */
        a = cli_bg("stop", id);
        b = cli_bg("stop", id);
        assert_int_equal(wait_exit(a), 0);
        assert_int_equal(wait_exit(b), 0);
        for (int i = 0; i < 100 && vmm_alive(pids[0]); i++)
            usleep(20000);
        assert_int_equal(procs_with(run, pids, 8), 0);
    }
    lock = root_path("cloudhypervisor/db/%s.lock", id);
    assert_int_equal(lstat(lock, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);

    /* a start racing an rm --force: whichever wins, no VMM outlives the
     * record */
    a = cli_bg("start", id);
    b = cli_bg("rm", id);
    wait_exit(a);
    assert_int_equal(wait_exit(b), 0);
    n = procs_with(run, pids, 8);
    for (int i = 0; i < 100 && n > 0; i++) {
        usleep(20000);
        n = procs_with(run, pids, 8);
    }
    for (int i = 0; i < n; i++)
        kill(pids[i], SIGKILL);
    assert_int_equal(n, 0);
    assert_int_equal(cli(&out, &err, "vm", "inspect", id, (char *)NULL), 1);
    free(out);
    free(err);
    assert_int_equal(lstat(lock, &st), -1);
    free(lock);
    free(run);
    free(id);
}

static void test_batch_plan_template(void **state)
{
    char *out = NULL, *err = NULL, *plan = NULL, *s1 = root_path("plan-p1.sock");
    char *s2 = root_path("plan-p2.sock");
    int l1, l2;

    (void)state;
    vm_run("p1");
    vm_run("p2");
    l1 = sup_unix_bind(s1, true);
    l2 = sup_unix_bind(s2, true);
    assert_true(asprintf(&plan,
        "{\"op\":\"fs-attach\",\"vm\":\"p1\",\"socket\":\"%s/plan-{name}.sock\",\"tag\":\"t\"}\n"
        "{\"op\":\"fs-attach\",\"vm\":\"p2\",\"socket\":\"%s/plan-{vm}.sock\",\"tag\":\"t\","
        "\"num_queues\":1,\"queue_size\":256}\n"
        "{\"op\":\"fs-list\",\"vm\":\"p2\"}\n"
        "{\"op\":\"fs-list\",\"vm\":\"p1\",\"socket\":\"%s/plan-{name}.sock\"}\n",
        g_root, g_root, g_root) > 0);
    assert_int_equal(cli_in(plan, &out, &err, "-o", "json", "batch", "--parallel", "1",
                            (char *)NULL), 0);
    assert_int_equal(count_str(out, "\"ok\":true"), 4);
    assert_non_null(strstr(out, s2));
    assert_non_null(strstr(out, "{\"summary\":{\"total\":4,\"ok\":4,\"failed\":0,"));
    /* An fs-list line with a socket echoes it expanded for its VM. */
    free(plan);
    assert_true(asprintf(&plan, "\"op\":\"fs-list\",\"ok\":true,\"socket\":\"%s\"", s1) > 0);
    assert_non_null(strstr(out, plan));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "fs", "list", "p1", (char *)NULL), 0);
    assert_non_null(strstr(out, s1));
    free(out);
    free(err);
    close(l1);
    close(l2);
    free(plan);
    free(s1);
    free(s2);
}

/* Many VMs, an attach then a detach each: order within a VM must hold no
 * matter how the ops are laid out in memory. */
static void test_batch_fleet_order(void **state)
{
    enum { NVM = 1000 };
    char *fleet = root_path("fleet"), *last = NULL, *out = NULL, *err = NULL, *plan;
    char cnt[16], *argv[] = { g_chsim, (char *)"--fleet", fleet, (char *)"--count", cnt,
                              (char *)"--no-connect", NULL };
    size_t cap = (size_t)NVM * 600, len = 0;
    pid_t pid;

    (void)state;
    assert_int_equal(mkdir(fleet, 0700), 0);
    snprintf(cnt, sizeof(cnt), "%d", NVM);
    pid = sup_spawn(argv);
    assert_true(asprintf(&last, "%s/vm%d.sock", fleet, NVM - 1) > 0);
    assert_int_equal(sup_wait_socket(last, 60000), 0);
    plan = malloc(cap);
    assert_non_null(plan);
    for (int i = 0; i < NVM; i++)
        len += (size_t)snprintf(plan + len, cap - len,
            "{\"op\":\"fs-attach\",\"vm\":\"%s/vm%d.sock\",\"socket\":\"/run/x/{name}.sock\","
            "\"tag\":\"d\",\"no_socket_check\":true}\n"
            "{\"op\":\"fs-detach\",\"vm\":\"%s/vm%d.sock\",\"tag\":\"d\"}\n",
            fleet, i, fleet, i);
    assert_int_equal(cli_in(plan, &out, &err, "-o", "json", "batch", "--parallel", "64",
                            (char *)NULL), 0);
    assert_int_equal(count_str(out, "\"ok\":true"), 2 * NVM);
    free(out);
    free(err);
    free(plan);
    sup_kill(pid);
    free(last);
    free(fleet);
}

/* --parallel caps VMs in flight for the whole run, also when the ops need
 * different engine settings (socket check on and off). */
static void test_parallel_cap_across_settings(void **state)
{
    enum { NVM = 4, LAT_MS = 300 };
    char *fleet = root_path("pfleet"), *lsock = root_path("plisten.sock"), *last = NULL;
    char *out = NULL, *err = NULL, *plan = NULL, *p;
    char cnt[16], lat[16], *argv[] = { g_chsim, (char *)"--fleet", fleet, (char *)"--count",
                                       cnt, (char *)"--no-connect", (char *)"--add-latency-ms",
                                       lat, NULL };
    size_t len = 0;
    long long t0, wall;
    int lfd[NVM];
    pid_t pid;

    (void)state;
    assert_int_equal(mkdir(fleet, 0700), 0);
    snprintf(cnt, sizeof(cnt), "%d", NVM);
    snprintf(lat, sizeof(lat), "%d", LAT_MS);
    pid = sup_spawn(argv);
    assert_true(asprintf(&last, "%s/vm%d.sock", fleet, NVM - 1) > 0);
    assert_int_equal(sup_wait_socket(last, 60000), 0);
    plan = malloc(4096);
    assert_non_null(plan);
    /* One virtiofsd socket per VM: a run refuses to give one to two. */
    for (int i = 0; i < NVM; i++) {
        char *ls = sup_asprintf("%s%d", lsock, i);

        lfd[i] = sup_unix_bind(ls, true);
        len += (size_t)snprintf(plan + len, 4096 - len,
            "{\"op\":\"fs-attach\",\"vm\":\"%s/vm%d.sock\",\"socket\":\"%s\","
            "\"tag\":\"d\",\"no_socket_check\":%s}\n",
            fleet, i, ls, i % 2 ? "true" : "false");
        free(ls);
    }
    t0 = sup_now_ms();
    assert_int_equal(cli_in(plan, &out, &err, "-o", "json", "batch", "--parallel", "1",
                            (char *)NULL), 0);
    wall = sup_now_ms() - t0;
    assert_int_equal(count_str(out, "\"ok\":true"), NVM);
    /* one VM at a time: the adds cannot overlap */
    if (wall < (long long)NVM * LAT_MS - 50)
        fail_msg("%d adds of %d ms took %lld ms with --parallel 1", NVM, LAT_MS, wall);
    p = strstr(out, "\"wall_ms\":");
    assert_non_null(p);
    free(out);
    free(err);
    free(plan);
    for (int i = 0; i < NVM; i++)
        close(lfd[i]);
    sup_kill(pid);
    free(last);
    free(lsock);
    free(fleet);
}

/* Detach waits and socket checks go with each operation: twelve fs
 * detaches on one VM, each with its own wait, run over the VM's one
 * connection instead of one per setting (CH serves at most ten). */
static void test_batch_many_settings_one_vm(void **state)
{
    enum { N = 12 };
    char *out = NULL, *err = NULL, *plan, *socks[N];
    int lfd[N];
    size_t len = 0, cap = 16384;

    (void)state;
    vm_run("many");
    plan = malloc(cap);
    assert_non_null(plan);
    for (int i = 0; i < N; i++) {
        socks[i] = root_path("many%d.sock", i);
        lfd[i] = sup_unix_bind(socks[i], true);
        len += (size_t)snprintf(plan + len, cap - len,
            "{\"op\":\"fs-attach\",\"vm\":\"many\",\"socket\":\"%s\",\"tag\":\"t%d\","
            "\"no_socket_check\":%s}\n", socks[i], i, i % 2 ? "true" : "false");
    }
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(plan + len, cap - len,
            "{\"op\":\"fs-detach\",\"vm\":\"many\",\"tag\":\"t%d\",\"wait\":%d}\n",
            i, i + 1);
    assert_true(len < cap);
    if (cli_in(plan, &out, &err, "-o", "json", "batch", (char *)NULL) != 0)
        fail_msg("batch failed: %s%s", out, err);
    assert_int_equal(count_str(out, "\"ok\":true"), 2 * N);
    assert_null(strstr(out, "Too many open connections"));
    assert_non_null(strstr(out, "{\"summary\":{\"total\":24,\"ok\":24,\"failed\":0,"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "fs", "list", "many", (char *)NULL), 0);
    assert_null(strstr(out, "cocoon-fs-t"));
    free(out);
    free(err);
    for (int i = 0; i < N; i++) {
        close(lfd[i]);
        free(socks[i]);
    }
    free(plan);
}

/* A message quoting invalid UTF-8 survives in -o json: the bad byte is
 * spelled \xNN, the rest of the text is kept. */
static void test_json_invalid_utf8_kept(void **state)
{
    char *out = NULL, *err = NULL;

    (void)state;
    assert_int_equal(cli(&out, &err, "-o", "json", "vm", "fs", "attach", "x", "--socket", "/s",
                         "--tag", "a\xff" "b\xc3\xa9", (char *)NULL), 1);
    if (!strstr(out, "\"error\":\"tag \\\"a\\\\xffb\xc3\xa9\\\" invalid: must match "
                     "[A-Za-z0-9][A-Za-z0-9_-]{0,35}\""))
        fail_msg("stdout %s", out);
    assert_non_null(strstr(out, "\"tag\":\"a\\\\xffb\xc3\xa9\""));
    free(out);
    free(err);
}

/* ---- one VMM per VM ---- */

/* The file at path (owned). */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 1 << 20);
    size_t n;

    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Replaces the first from by to in the file at path. */
static void edit_text(const char *path, const char *from, const char *to)
{
    char *buf = read_text(path), *hit = strstr(buf, from), *next;
    FILE *f;

    assert_non_null(hit);
    *hit = '\0';
    next = hit + strlen(from);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s%s%s", buf, to, next);
    assert_int_equal(fclose(f), 0);
    free(buf);
}

/* A process is gone, or a zombie (its cmdline reads empty). */
static bool proc_gone(pid_t pid)
{
    char path[64], c;
    int fd;
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    fd = open(path, O_RDONLY);
    if (fd < 0)
        return true;
    n = read(fd, &c, 1);
    close(fd);
    return n <= 0;
}

static void put_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* /bin/sleep 60, exec done: an unrelated live process. */
static pid_t unrelated_process(void)
{
    char *argv[] = { (char *)"/bin/sleep", (char *)"60", NULL };
    pid_t pid = sup_spawn(argv);
    long long deadline = sup_now_ms() + 10000;

    assert_true(pid > 0);
    for (;;) {
        char path[64], buf[32] = "";
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        f = fopen(path, "r");
        if (f) {
            buf[fread(buf, 1, sizeof(buf) - 1, f)] = '\0';
            fclose(f);
        }
        if (strcmp(buf, "/bin/sleep") == 0)
            return pid;
        assert_true(sup_now_ms() < deadline);
    }
}

/* Whatever the pidfile or the record say, a live VMM of a VM is found by
 * its API socket: start never launches a second one (it adopts it when
 * the record says running, refuses naming its pid otherwise), and stop
 * never says "stopped" while it lives. */
static void test_one_vmm_per_vm(void **state)
{
    char *out = NULL, *err = NULL, *id, *pidfile, *db, msg[256];
    pid_t vmm, other, sleeper;

    (void)state;
    vm_run("one");
    id = vm_id("one");
    vmm = read_pid(id, "cloudhypervisor", "ch.pid");
    pidfile = root_path("run/cloudhypervisor/%s/ch.pid", id);
    db = root_path("cloudhypervisor/db/vms.json");

    /* ch.pid deleted: start adopts the VMM serving the socket. */
    assert_int_equal(unlink(pidfile), 0);
    assert_int_equal(cli(&out, &err, "vm", "start", "one", (char *)NULL), 0);
    snprintf(msg, sizeof(msg), "one: running (id=%s, pid=%d)\n", id, (int)vmm);
    assert_string_equal(out, msg);
    free(out);
    free(err);
    assert_int_equal(read_pid(id, "cloudhypervisor", "ch.pid"), vmm);

    /* ch.pid damaged: stop finds the VMM by its socket and stops it. */
    put_text(pidfile, "garbage\n");
    assert_int_equal(cli(&out, &err, "vm", "stop", "one", (char *)NULL), 0);
    assert_non_null(strstr(out, "one: stopped"));
    free(out);
    free(err);
    assert_true(proc_gone(vmm));

    /* ch.pid naming an unrelated process: that process is left alone. */
    assert_int_equal(cli(&out, &err, "vm", "start", "one", (char *)NULL), 0);
    free(out);
    free(err);
    other = read_pid(id, "cloudhypervisor", "ch.pid");
    sleeper = unrelated_process();
    snprintf(msg, sizeof(msg), "%d\n", (int)sleeper);
    put_text(pidfile, msg);
    assert_int_equal(cli(&out, &err, "vm", "stop", "one", (char *)NULL), 0);
    free(out);
    free(err);
    assert_true(proc_gone(other));
    assert_false(proc_gone(sleeper));
    sup_kill(sleeper);

    /* A VMM the record does not know of (an interrupted start): start
     * refuses, naming it; stop stops it. */
    assert_int_equal(cli(&out, &err, "vm", "start", "one", (char *)NULL), 0);
    free(out);
    free(err);
    other = read_pid(id, "cloudhypervisor", "ch.pid");
    edit_text(db, "\"state\": \"running\"", "\"state\": \"created\"");
    assert_int_equal(unlink(pidfile), 0);
    assert_int_equal(cli(&out, &err, "vm", "start", "one", (char *)NULL), 1);
    snprintf(msg, sizeof(msg), "its VMM (pid %d) is already running and the record says created",
             (int)other);
    assert_non_null(strstr(err, msg));
    free(out);
    free(err);
    assert_false(proc_gone(other));
    assert_int_equal(cli(&out, &err, "vm", "rm", "one", (char *)NULL), 1);
    assert_non_null(strstr(err, "is running: stop it first or use --force"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "vm", "stop", "one", (char *)NULL), 0);
    assert_non_null(strstr(out, "one: stopped"));
    free(out);
    free(err);
    assert_true(proc_gone(other));
    free(id);
    free(pidfile);
    free(db);
}

/* The root is canonical before any path is stored: a relative --root-dir
 * with "./", "//" and a trailing slash still records an absolute run_dir
 * without them, the one an absolute spelling of the root gives. */
static void test_root_canonical(void **state)
{
    char *out = NULL, *err = NULL, cwd[4096], *real, *rel, *db, *want, *base;
    char *argv[] = { realpath(g_cocoon, NULL), (char *)"--root-dir", NULL, (char *)"vm",
                     (char *)"create", (char *)"--name", (char *)"canon", NULL };
    int rc;

    (void)state;
    assert_non_null(argv[0]);
    real = realpath(g_root, NULL);
    assert_non_null(real);
    base = strrchr(real, '/');
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    *base = '\0';
    assert_int_equal(chdir(real[0] ? real : "/"), 0);
    *base = '/';
    rel = sup_asprintf("./%s//sub/", base + 1);
    argv[2] = rel;
    rc = sup_run(argv, NULL, &out, &err, 30000);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, 0);
    free(argv[0]);
    free(out);
    free(err);
    db = root_path("sub/cloudhypervisor/db/vms.json");
    want = sup_asprintf("\"run_dir\": \"%s/sub/run/cloudhypervisor/", real);
    out = read_text(db);
    if (!strstr(out, want))
        fail_msg("vms.json lacks %s:\n%s", want, out);
    free(out);
    free(want);
    free(db);
    free(rel);
    free(real);
}

/* <root>/bin/chsim-slow: chsim whose vmm.ping never answers until the
 * fault is cleared, argv[0] the wrapper's own path. */
static char *chsim_slow(void)
{
    char *dir = root_path("bin"), *w = root_path("bin/chsim-slow");
    FILE *f;

    assert_true(mkdir(dir, 0700) == 0 || errno == EEXIST);
    f = fopen(w, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/bash\nexec -a \"$0\" '%s' --fault vmm.ping=never-reply \"$@\"\n", g_chsim);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(w, 0755), 0);
    free(dir);
    return w;
}

/* The run dir of the only VM of the root that has a pidfile, waited for. */
static char *wait_run_dir_with_pid(void)
{
    char *dir = root_path("run/cloudhypervisor");
    long long deadline = sup_now_ms() + 20000;

    for (;;) {
        DIR *d = opendir(dir);
        struct dirent *de;

        while (d && (de = readdir(d))) {
            char *rd, *pf;
            struct stat st;

            if (de->d_name[0] == '.')
                continue;
            rd = sup_asprintf("%s/%s", dir, de->d_name);
            pf = sup_asprintf("%s/ch.pid", rd);
            if (stat(pf, &st) == 0 && st.st_size > 0) {
                free(pf);
                closedir(d);
                free(dir);
                return rd;
            }
            free(pf);
            free(rd);
        }
        if (d)
            closedir(d);
        assert_true(sup_now_ms() < deadline);
    }
}

/* SIGTERM between the VMM's launch and its record: the start still ends
 * with the VMM recorded as running (or stopped), never a live VMM that
 * the record calls created. */
static void test_interrupted_start(void **state)
{
    char *w = chsim_slow(), *rd, *sock, *db, *text;
    char *argv[] = { g_cocoon, (char *)"--root-dir", g_root, (char *)"vm", (char *)"run",
                     (char *)"--name", (char *)"intr", (char *)"--shared-memory",
                     (char *)"--kernel", (char *)"/dev/null", (char *)"--ch-binary", w, NULL };
    pid_t cocoon, vmm;
    int st;

    (void)state;
    cocoon = sup_spawn(argv);
    assert_true(cocoon > 0);
    rd = wait_run_dir_with_pid();
    sock = sup_asprintf("%s/api.sock", rd);
    assert_int_equal(sup_wait_socket(sock, 20000), 0);
    /* The start is polling vmm.ping, which does not answer. */
    assert_int_equal(kill(cocoon, SIGTERM), 0);
    assert_int_equal(sup_chsim_fault(sock, "vmm.ping", "none", 0), 0);
    assert_int_equal(waitpid(cocoon, &st, 0), cocoon);
    vmm = read_pid(strrchr(rd, '/') + 1, "cloudhypervisor", "ch.pid");
    db = root_path("cloudhypervisor/db/vms.json");
    text = read_text(db);
    if (!proc_gone(vmm) && !strstr(text, "\"state\": \"running\""))
        fail_msg("VMM %d alive but the record says:\n%s", (int)vmm, text);
    free(text);
    free(db);
    free(sock);
    free(rd);
    free(w);
}

/* The API socket is checked before it is connected to: one swapped for a
 * symlink is refused, and nothing reaches the VMM through it. */
static void test_api_sock_symlink_refused(void **state)
{
    char *out = NULL, *err = NULL, *id, *sock, *real, *vfs = root_path("vfs-s.sock");
    int lfd;

    (void)state;
    vm_run("lnk");
    id = vm_id("lnk");
    sock = root_path("run/cloudhypervisor/%s/api.sock", id);
    real = root_path("real-api.sock");
    assert_int_equal(rename(sock, real), 0);
    assert_int_equal(symlink(real, sock), 0);
    lfd = sup_unix_bind(vfs, true);
    assert_int_equal(cli(&out, &err, "vm", "fs", "attach", "lnk", "--socket", vfs, "--tag", "d",
                         (char *)NULL), 1);
    assert_non_null(strstr(err, "a symlink, not a socket"));
    free(out);
    free(err);
    assert_int_equal(sup_chsim_count(real, "vm.add-fs"), 0);
    close(lfd);
    free(id);
    free(sock);
    free(real);
    free(vfs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_help_and_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fc_shared_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_debug_prints_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation_texts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_list_detach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_virtiofsd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_needs_a_booted_vm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_firecracker_unsupported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_partial_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_templates_and_multi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_target_template, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress_bar_on_tty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_pid_in_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_ignored_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inspect_list_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inspect_with_devices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_reply_note, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_defaults_and_rm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_plan_template, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_fleet_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_many_settings_one_vm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parallel_cap_across_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_invalid_utf8_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_without_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_taken_across_backends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_value_spelling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_original_spellings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_alias_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_debug_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_completion_scripts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inspect_pid_and_direct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_force_and_grace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_vmm_per_vm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_canonical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupted_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_sock_symlink_refused, setup, teardown),
    };
    int rc;

    signal(SIGPIPE, SIG_IGN);
    g_cocoon = sup_build_path("cocoon");
    g_chsim = sup_build_path("chsim");
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(g_cocoon);
    free(g_chsim);
    return rc;
}
