/* tests/test_hostile.c: the built cocoon binary against hostile peers and
 * hostile state: a fake VMM that answers with control characters, result
 * streams that cannot be written, plans that abuse their limits, state
 * files replaced by FIFOs, forged socket-table rows.  Each test names the
 * rule it holds. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "backends/listening.h"
#include "tests/support/support.h"

#define MAX_ARGS 64

static char *g_root, *g_cocoon;
/* cli_fds runs cocoon with this open-file limit (soft and hard); 0: as is. */
static rlim_t g_nofile;
/* Peers a test started: a failed assertion skips the test's own cleanup,
 * so teardown ends them. */
static pid_t g_peers[16];
static size_t g_n_peers;

static pid_t track(pid_t pid)
{
    assert_true(pid > 0 && g_n_peers < sizeof(g_peers) / sizeof(g_peers[0]));
    g_peers[g_n_peers++] = pid;
    return pid;
}

static pid_t start_sim(const char *sock)
{
    return track(sup_chsim_start(sock, (const char *const[]){ "--memory", "size=1G,shared=on",
                                                               NULL }));
}

/* Ends a tracked peer now. */
static void stop_peer(pid_t pid)
{
    for (size_t i = 0; i < g_n_peers; i++)
        if (g_peers[i] == pid) {
            g_peers[i] = g_peers[--g_n_peers];
            sup_kill(pid);
            return;
        }
}

static int setup(void **state)
{
    (void)state;
    g_root = sup_tmpdir();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    while (g_n_peers)
        sup_kill(g_peers[--g_n_peers]);
    sup_rmrf(g_root);
    free(g_root);
    g_root = NULL;
    return 0;
}

/* argv for cocoon --root-dir <root> args... (NULL-terminated). */
static void build_argv(char **argv, va_list ap)
{
    const char *a;
    int n = 0;

    argv[n++] = g_cocoon;
    argv[n++] = (char *)"--root-dir";
    argv[n++] = g_root;
    while ((a = va_arg(ap, const char *)) && n < MAX_ARGS - 1)
        argv[n++] = (char *)a;
    argv[n] = NULL;
}

/* Runs cocoon with stdin from in; out/err owned. */
static int cli_in(const char *in, char **out, char **err, ...)
{
    char *argv[MAX_ARGS];
    va_list ap;
    int rc;

    va_start(ap, err);
    build_argv(argv, ap);
    va_end(ap);
    rc = sup_run(argv, in, out, err, 60000);
    if (getenv("SUP_VERBOSE"))
        fprintf(stderr, "[cocoon rc=%d]\nstdout: %s\nstderr: %s\n", rc, *out, *err);
    return rc;
}

/* Runs cocoon with stdin from the file in_path and stdout to out_fd;
 * stderr captured into *err (owned).  Returns the exit status. */
static int cli_fds(const char *in_path, int out_fd, char **err, ...)
{
    char *argv[MAX_ARGS];
    char *epath = sup_asprintf("%s/stderr.txt", g_root);
    va_list ap;
    int status = -1;
    pid_t pid;

    va_start(ap, err);
    build_argv(argv, ap);
    va_end(ap);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int in = open(in_path, O_RDONLY), e = open(epath, O_WRONLY | O_CREAT | O_TRUNC, 0600);

        if (in < 0 || e < 0)
            _exit(126);
        if (g_nofile) {
            struct rlimit rl = { g_nofile, g_nofile };

            for (int fd = 3; fd < 1024; fd++)
                if (fd != in && fd != e && fd != out_fd)
                    close(fd);
            if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                _exit(125);
        }
        dup2(in, 0);
        dup2(out_fd, 1);
        dup2(e, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    {
        FILE *f = fopen(epath, "r");
        size_t n;

        assert_non_null(f);
        *err = calloc(1, 65536);
        n = fread(*err, 1, 65535, f);
        (*err)[n] = '\0';
        fclose(f);
    }
    free(epath);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static size_t count_str(const char *hay, const char *needle)
{
    size_t n = 0;

    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static char *root_path(const char *name)
{
    return sup_asprintf("%s/%s", g_root, name);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

/* ---- plans that abuse their limits ---- */

/* A wait in seconds is turned into milliseconds in an unsigned int:
 * 4294968 s would wrap to 0.7 s.  The plan refuses what the flag refuses. */
static void test_plan_wait_bound(void **state)
{
    char *out = NULL, *err = NULL;
    int rc;

    (void)state;
    rc = cli_in("{\"op\":\"fs-detach\",\"vm\":\"/nonexistent.sock\",\"tag\":\"t\","
                "\"wait\":4294968}\n", &out, &err, "-o", "json", "batch", "-", (char *)NULL);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "\"error\":\"line 1: field \\\"wait\\\": expected 0 to 86400 "
                                "seconds\""));
    free(out);
    free(err);
    rc = cli_in("{\"op\":\"fs-detach\",\"vm\":\"/nonexistent.sock\",\"tag\":\"t\","
                "\"wait\":86401}\n", &out, &err, "-o", "json", "batch", "-", (char *)NULL);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "expected 0 to 86400 seconds"));
    free(out);
    free(err);
}

/* ---- results that cannot be written ---- */

/* stdout to /dev/full, or a pipe whose reader is gone: the batch still
 * runs every operation (chsim counts each add-fs), and the exit is not 0
 * with the reason on stderr. */
static void test_result_write_errors(void **state)
{
    enum { N = 6 };
    char *socks[N], *plan, *pf = root_path("plan.jsonl"), *err = NULL;
    pid_t sims[N];
    int lfd[N], rc, pfd[2], full;

    (void)state;
    for (int i = 0; i < N; i++) {
        char name[32];

        snprintf(name, sizeof(name), "vm%d.sock", i);
        socks[i] = root_path(name);
        sims[i] = start_sim(socks[i]);
    }
    /* One virtiofsd socket per VM. */
    plan = strdup("");
    for (int i = 0; i < N; i++) {
        char *vfs = sup_asprintf("%s/vfs%d.sock", g_root, i), *p;

        lfd[i] = sup_unix_bind(vfs, true);
        p = sup_asprintf("%s{\"op\":\"fs-attach\",\"vm\":\"%s\",\"socket\":\"%s\","
                         "\"tag\":\"a\"}\n{\"op\":\"fs-detach\",\"vm\":\"%s\",\"tag\":\"a\"}\n",
                         plan, socks[i], vfs, socks[i]);
        free(plan);
        plan = p;
        free(vfs);
    }
    write_file(pf, plan);

    full = open("/dev/full", O_WRONLY);
    assert_true(full >= 0);
    rc = cli_fds(pf, full, &err, "batch", pf, (char *)NULL);
    close(full);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "Error: write results: No space left on device\n"));
    free(err);
    for (int i = 0; i < N; i++) {
        assert_int_equal(sup_chsim_count(socks[i], "vm.add-fs"), 1);
        assert_int_equal(sup_chsim_count(socks[i], "vm.remove-device"), 1);
    }

    /* `| head -1` that already exited: the reader end is closed. */
    assert_int_equal(pipe(pfd), 0);
    close(pfd[0]);
    rc = cli_fds(pf, pfd[1], &err, "-o", "json", "batch", pf, (char *)NULL);
    close(pfd[1]);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "Error: write results: Broken pipe\n"));
    free(err);
    for (int i = 0; i < N; i++) {
        assert_int_equal(sup_chsim_count(socks[i], "vm.add-fs"), 2);
        assert_int_equal(sup_chsim_count(socks[i], "vm.remove-device"), 2);
        stop_peer(sims[i]);
        close(lfd[i]);
        free(socks[i]);
    }
    free(plan);
    free(pf);
}

/* ---- a VMM's strings reach the terminal escaped ---- */

/* A fake VMM on sock: serves each connection one canned answer chosen by
 * the request line, until killed.  Answers come with Connection: close. */
static pid_t fake_vmm2(const char *sock, const char *info, const char *info_after,
                       const char *put_status, const char *put_body, const char *put_extra);

static pid_t fake_vmm(const char *sock, const char *info, const char *put_status,
                      const char *put_body)
{
    return fake_vmm2(sock, info, info, put_status, put_body, NULL);
}

/* The same, with vm.info answering info_after once a PUT came in, a PUT
 * answered by closing the connection when put_status is NULL, and
 * put_extra (raw bytes) sent right after the PUT's answer. */
static pid_t fake_vmm2(const char *sock, const char *info, const char *info_after,
                       const char *put_status, const char *put_body, const char *put_extra)
{
    bool put_seen = false;
    int lfd = sup_unix_bind(sock, true);
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid > 0) {
        close(lfd);
        return track(pid);
    }
    /* A failed assertion skips the test's kill: die with the test. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (;;) {
        char req[8192], resp[16384];
        size_t have = 0;
        const char *body, *status;
        int c = accept(lfd, NULL, NULL);

        if (c < 0)
            continue;
        for (;;) {
            ssize_t r = read(c, req + have, sizeof(req) - 1 - have);
            char *hend, *cl;

            if (r <= 0)
                break;
            have += (size_t)r;
            req[have] = '\0';
            hend = strstr(req, "\r\n\r\n");
            if (!hend)
                continue;
            cl = strcasestr(req, "content-length:");
            if (!cl || cl > hend || (size_t)(hend + 4 - req) + (size_t)atoi(cl + 15) <= have)
                break;
        }
        if (strncmp(req, "GET ", 4) == 0) {
            status = "200 OK";
            body = put_seen ? info_after : info;
        } else {
            put_seen = true;
            status = put_status;
            body = put_body;
        }
        if (!status) {
            close(c);
            continue;
        }
        snprintf(resp, sizeof(resp), "HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s%s", status, strlen(body), body,
                 body == put_body && put_extra ? put_extra : "");
        if (write(c, resp, strlen(resp)) < 0)
            _exit(1);
        close(c);
    }
}

static const char vm_info_running[] =
    "{\"config\":{\"memory\":{\"size\":1073741824,\"shared\":true}},\"state\":\"Running\"}";

/* No byte below 0x20 (but the newlines ending lines), no DEL, no escape. */
static void assert_no_controls(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p < 0x20 && *p != '\n') || *p == 0x7f)
            fail_msg("control byte 0x%02x at offset %td in %s", *p, (const char *)p - s, s);
}

static void test_vmm_strings_escaped(void **state)
{
    char *sock = root_path("evil.sock"), *vfs = root_path("vfs.sock");
    char *out = NULL, *err = NULL;
    pid_t fake;
    int lfd, rc;

    (void)state;
    lfd = sup_unix_bind(vfs, true);
    /* The attach reply: an id and a BDF that would forge a line and clear
     * the screen. */
    fake = fake_vmm(sock, vm_info_running, "200 OK",
                    "{\"id\":\"x\\nvm9: attached fs evil (id=y)\\u001b[2J\","
                    "\"bdf\":\"0000:00:05.0\\r\\u001b]0;pwned\\u0007\"}");
    rc = cli_in(NULL, &out, &err, "vm", "fs", "attach", sock, "--socket", vfs, "--tag", "t",
                (char *)NULL);
    assert_int_equal(rc, 0);
    assert_no_controls(out);
    assert_int_equal(count_str(out, "\n"), 1);
    assert_non_null(strstr(out, "(id=x\\x0avm9: attached fs evil (id=y)\\x1b[2J, "
                                "bdf=0000:00:05.0\\x0d\\x1b]0;pwned\\x07)\n"));
    free(out);
    free(err);
    stop_peer(fake);

    /* An error body with a newline and a C1 control (U+009B, CSI). */
    fake = fake_vmm(sock, vm_info_running, "500 Internal Server Error",
                    "bad\nError: forged line \xc2\x9b" "2J\x1b[1A");
    rc = cli_in(NULL, &out, &err, "vm", "fs", "attach", sock, "--socket", vfs, "--tag", "t",
                (char *)NULL);
    assert_int_equal(rc, 1);
    assert_no_controls(err);
    assert_int_equal(count_str(err, "\n"), 1);
    assert_null(strstr(err, "\xc2\x9b"));
    assert_non_null(strstr(err, "bad\\x0aError: forged line \\xc2\\x9b2J\\x1b[1A"));
    free(out);
    free(err);
    stop_peer(fake);
    close(lfd);
    free(sock);
    free(vfs);
}

/* ---- the lost-reply reconcile matches what was asked ---- */

/* vm.info of a running VM with fs tag "d" (id cocoon-fs-d) on sock. */
static char *info_with_fs(const char *sock)
{
    return sup_asprintf("{\"config\":{\"memory\":{\"size\":1073741824,\"shared\":true},"
                        "\"fs\":[{\"tag\":\"d\",\"socket\":\"%s\",\"id\":\"cocoon-fs-d\"}]},"
                        "\"state\":\"Running\",\"device_tree\":{\"cocoon-fs-d\":"
                        "{\"id\":\"cocoon-fs-d\",\"children\":[]}}}", sock);
}

/* The reconcile after a lost or unreadable reply counts the attach as done
 * only when vm.info shows the share this request asked for. */
static void test_reconcile_matches_request(void **state)
{
    char *sock = root_path("r.sock"), *mine = root_path("mine.sock");
    char *other = root_path("other.sock"), *out = NULL, *err = NULL;
    char *info_mine = info_with_fs(mine), *info_other = info_with_fs(other);
    int lfd = sup_unix_bind(mine, true), lfd2 = sup_unix_bind(other, true), rc;
    pid_t fake;

    (void)state;
    /* Reply lost; vm.info shows the id, but with another attach's socket. */
    fake = fake_vmm2(sock, vm_info_running, info_other, NULL, "", NULL);
    rc = cli_in(NULL, &out, &err, "vm", "fs", "attach", sock, "--socket", mine, "--tag", "d",
                (char *)NULL);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "reply lost; vm.info shows that id or path attached with "
                                "other settings"));
    free(out);
    free(err);
    stop_peer(fake);

    /* A 200 whose body cannot be decoded: vm.info tells the outcome. */
    fake = fake_vmm2(sock, vm_info_running, info_mine, "200 OK", "{\"id\":", NULL);
    rc = cli_in(NULL, &out, &err, "vm", "fs", "attach", sock, "--socket", mine, "--tag", "d",
                (char *)NULL);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "attached fs d (id=cocoon-fs-d)"));
    assert_non_null(strstr(err, "vm.info shows the device attached"));
    free(out);
    free(err);
    stop_peer(fake);

    /* Two responses to one PUT: a protocol error, settled by vm.info. */
    fake = fake_vmm2(sock, vm_info_running, info_mine, "200 OK",
                     "{\"id\":\"cocoon-fs-d\",\"bdf\":\"0000:00:05.0\"}",
                     "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
    rc = cli_in(NULL, &out, &err, "vm", "fs", "attach", sock, "--socket", mine, "--tag", "d",
                (char *)NULL);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(err, "vm.info shows the device attached"));
    free(out);
    free(err);
    stop_peer(fake);
    close(lfd);
    close(lfd2);
    free(info_mine);
    free(info_other);
    free(mine);
    free(other);
    free(sock);
}

/* ---- descriptors run short ---- */

/* At `ulimit -n 64` a batch over 100 VMs runs as many VMs at once as the
 * descriptors allow instead of failing most of them with EMFILE; and the
 * virtiofsd check never passes for want of a descriptor to look with. */
static void test_fd_exhaustion_throttles(void **state)
{
    enum { N = 100 };
    char *dir = root_path("fleet"), *bin = sup_build_path("chsim"), *plan = strdup("");
    char *pf = root_path("plan.jsonl"), *out_path = root_path("out.jsonl"), *err = NULL;
    char count[16], *last;
    int lfd[N], rc, out;

    (void)state;
    /* Valgrind keeps descriptors of its own above the limit: it cannot run
     * a program at `ulimit -n 64`. */
    if (sup_env_on("COCOON_VALGRIND")) {
        free(dir);
        free(bin);
        free(plan);
        free(pf);
        free(out_path);
        skip();
    }
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(count, sizeof(count), "%d", N);
    track(sup_spawn((char *const[]){ bin, (char *)"--fleet", dir, (char *)"--count", count,
                                     NULL }));
    last = sup_asprintf("%s/vm%d.sock", dir, N - 1);
    assert_int_equal(sup_wait_socket(last, 60000), 0);
    for (int i = 0; i < N; i++) {
        char *vfs = sup_asprintf("%s/vfs%d.sock", g_root, i), *p;

        lfd[i] = sup_unix_bind(vfs, true);
        p = sup_asprintf("%s{\"op\":\"fs-attach\",\"vm\":\"%s/vm%d.sock\",\"socket\":"
                         "\"%s\",\"tag\":\"t\"}\n", plan, dir, i, vfs);
        free(plan);
        plan = p;
        free(vfs);
    }
    write_file(pf, plan);
    out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(out >= 0);
    g_nofile = 64;
    rc = cli_fds(pf, out, &err, "-o", "json", "batch", pf, (char *)NULL);
    g_nofile = 0;
    close(out);
    if (rc != 0) {
        char *o = NULL;
        FILE *f = fopen(out_path, "r");
        size_t n;

        o = calloc(1, 1 << 20);
        n = fread(o, 1, (1 << 20) - 1, f);
        fclose(f);
        o[n] = '\0';
        fail_msg("rc %d: %s\n%.2000s", rc, err, o);
    }
    free(err);
    for (int i = 0; i < N; i++)
        close(lfd[i]);
    free(dir);
    free(bin);
    free(plan);
    free(pf);
    free(out_path);
    free(last);
}

/* ---- one virtiofsd, one VM ---- */

/* One socket given to two VMs of a batch (spelled two ways), and to two
 * tags of one VM: only the first attach may use it, and the others never
 * reach a VMM. */
static void test_socket_used_twice(void **state)
{
    char *a = root_path("a.sock"), *b = root_path("b.sock"), *vfs = root_path("vfs.sock");
    char *vfs2 = root_path("vfs2.sock");
    char *alias = sup_asprintf("%s//./vfs.sock", g_root), *plan, *out = NULL, *err = NULL;
    pid_t sa = start_sim(a), sb = start_sim(b);
    int lfd = sup_unix_bind(vfs, true), lfd2 = sup_unix_bind(vfs2, true), rc;

    (void)state;
    plan = sup_asprintf("{\"op\":\"fs-attach\",\"vm\":\"%s\",\"socket\":\"%s\",\"tag\":\"x\"}\n"
                        "{\"op\":\"fs-attach\",\"vm\":\"%s\",\"socket\":\"%s\",\"tag\":\"x\"}\n",
                        a, vfs, b, alias);
    rc = cli_in(plan, &out, &err, "-o", "json", "batch", "-", (char *)NULL);
    assert_int_equal(rc, 1);
    assert_int_equal(count_str(out, "\"ok\":true"), 1);
    assert_non_null(strstr(out, "is already given to vm "));
    assert_int_equal(sup_chsim_count(a, "vm.add-fs") + sup_chsim_count(b, "vm.add-fs"), 1);
    free(out);
    free(err);
    /* The flag form: two VMs, one --socket. */
    rc = cli_in(NULL, &out, &err, "vm", "fs", "attach", a, b, "--socket", vfs2, "--tag", "y",
                (char *)NULL);
    assert_int_equal(rc, 1);
    assert_int_equal(count_str(out, "attached fs y"), 1);
    assert_int_equal(count_str(err, "one virtiofsd serves one VM"), 1);
    free(out);
    free(err);
    /* Already attached to this VM under another tag (vm.info shows it). */
    rc = cli_in(NULL, &out, &err, "vm", "fs", "attach", a, "--socket", vfs, "--tag", "z",
                (char *)NULL);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "already serves fs tag \"x\" of this VM"));
    free(out);
    free(err);
    assert_int_equal(sup_chsim_count(a, "vm.add-fs") + sup_chsim_count(b, "vm.add-fs"), 2);
    stop_peer(sa);
    stop_peer(sb);
    close(lfd);
    close(lfd2);
    free(a);
    free(b);
    free(vfs);
    free(vfs2);
    free(alias);
    free(plan);
}

/* ---- state files that are not what they claim ---- */

/* A short-lived cocoon for commands that must not hang: 20 s. */
static int cli_quick(char **out, char **err, ...)
{
    char *argv[MAX_ARGS];
    va_list ap;
    int rc;

    va_start(ap, err);
    build_argv(argv, ap);
    va_end(ap);
    rc = sup_run(argv, NULL, out, err, 20000);
    if (getenv("SUP_VERBOSE"))
        fprintf(stderr, "[cocoon rc=%d]\nstdout: %s\nstderr: %s\n", rc, *out, *err);
    return rc;
}

static char *db_path(const char *file)
{
    return sup_asprintf("%s/cloudhypervisor/db/%s", g_root, file);
}

static void create_vm(const char *name)
{
    char *out = NULL, *err = NULL;

    assert_int_equal(cli_quick(&out, &err, "vm", "create", "--name", name, (char *)NULL), 0);
    free(out);
    free(err);
}

/* A FIFO at vms.json or at the lock file would block every reader in
 * open() or read(): state files are opened non-blocking and must be
 * regular files. */
static void test_fifo_state_files(void **state)
{
    const char *files[] = { "vms.json", "vms.lock" };
    char *out = NULL, *err = NULL;

    (void)state;
    create_vm("f1");
    for (size_t i = 0; i < 2; i++) {
        char *p = db_path(files[i]), *want = sup_asprintf("open %s: not a regular file", p);
        char *saved = sup_asprintf("%s.saved", p);

        assert_int_equal(rename(p, saved), 0);
        assert_int_equal(mkfifo(p, 0600), 0);
        assert_int_equal(cli_quick(&out, &err, "vm", "list", (char *)NULL), 1);
        assert_non_null(strstr(err, want));
        free(out);
        free(err);
        unlink(p);
        assert_int_equal(rename(saved, p), 0);
        free(p);
        free(want);
        free(saved);
    }
}

/* Root trusts no state another user could have written: a vms.json owned
 * by another uid, or in a directory others can write, is refused. */
static void test_foreign_state_refused(void **state)
{
    char *out = NULL, *err = NULL, *p = db_path("vms.json"), *dir = db_path("");

    (void)state;
    if (geteuid() != 0)
        skip();
    create_vm("f2");
    assert_int_equal(chown(p, 65534, 65534), 0);
    assert_int_equal(cli_quick(&out, &err, "vm", "list", (char *)NULL), 1);
    assert_non_null(strstr(err, "owned by uid 65534, not this user or root"));
    free(out);
    free(err);
    assert_int_equal(chown(p, 0, 0), 0);
    assert_int_equal(chmod(dir, 0777), 0);
    assert_int_equal(cli_quick(&out, &err, "vm", "inspect", "f2", (char *)NULL), 1);
    assert_non_null(strstr(err, "directory writable by other users"));
    free(out);
    free(err);
    assert_int_equal(chmod(dir, 0700), 0);
    assert_int_equal(cli_quick(&out, &err, "vm", "inspect", "f2", (char *)NULL), 0);
    free(out);
    free(err);
    free(p);
    free(dir);
}

/* Starts cocoon --root-dir <root> args... with no output; returns its pid. */
static pid_t cli_spawn(const char *const *args)
{
    char *argv[MAX_ARGS];
    int n = 0;

    argv[n++] = g_cocoon;
    argv[n++] = (char *)"--root-dir";
    argv[n++] = g_root;
    while (*args && n < MAX_ARGS - 1)
        argv[n++] = (char *)*args++;
    argv[n] = NULL;
    return sup_spawn(argv);
}

/* `vm create --name X` and `vm create --fc --name X` at the same moment:
 * the name check and the add run under one lock over the root's name
 * space, so exactly one of each pair succeeds. */
static void test_name_race_across_backends(void **state)
{
    enum { ROUNDS = 40 };

    (void)state;
    for (int i = 0; i < ROUNDS; i++) {
        char name[32];
        const char *ch[] = { "vm", "create", "--name", name, NULL };
        const char *fc[] = { "vm", "create", "--fc", "--name", name, NULL };
        pid_t a, b;
        int sa, sb;

        snprintf(name, sizeof(name), "race-%d", i);
        a = cli_spawn(ch);
        b = cli_spawn(fc);
        assert_true(a > 0 && b > 0);
        assert_int_equal(waitpid(a, &sa, 0), a);
        assert_int_equal(waitpid(b, &sb, 0), b);
        assert_true(WIFEXITED(sa) && WIFEXITED(sb));
        if ((WEXITSTATUS(sa) == 0) == (WEXITSTATUS(sb) == 0))
            fail_msg("round %d: exits %d and %d, want one success", i, WEXITSTATUS(sa),
                     WEXITSTATUS(sb));
    }
}

/* Replaces the first occurrence of from by to in the file at path. */
static void edit_file(const char *path, const char *from, const char *to)
{
    FILE *f = fopen(path, "r");
    char buf[65536], *hit, *out;
    size_t n;

    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    hit = strstr(buf, from);
    assert_non_null(hit);
    *hit = '\0';
    out = sup_asprintf("%s%s%s", buf, to, hit + strlen(from));
    write_file(path, out);
    free(out);
}

/* vm rm deletes a record's run dir only when its canonical path is
 * strictly inside <root>/run/<backend>/: "<root>/run/.." is the root. */
static void test_rm_run_dir_guard(void **state)
{
    static const char *const evil[] = { "/run/..", "/run/cloudhypervisor/.", "//run/",
                                        "/run/cloudhypervisor/x/../.." };
    char *out = NULL, *err = NULL, *p = db_path("vms.json"), *keep = root_path("keep");
    struct stat st;

    (void)state;
    write_file(keep, "precious\n");
    /* The run tree as a started VM leaves it. */
    for (const char *d = "run"; d; d = strcmp(d, "run") == 0 ? "run/cloudhypervisor" :
                                   strcmp(d, "run/cloudhypervisor") == 0 ?
                                   "run/cloudhypervisor/x" : NULL) {
        char *dp = root_path(d);

        assert_int_equal(mkdir(dp, 0700), 0);
        free(dp);
    }
    for (size_t i = 0; i < sizeof(evil) / sizeof(evil[0]); i++) {
        char *rd, *from, *to;

        create_vm("r1");
        rd = sup_asprintf("%s%s", g_root, evil[i]);
        from = sup_asprintf("\"run_dir\": \"%s/run/cloudhypervisor/", g_root);
        to = sup_asprintf("\"run_dir\": \"%s\", \"x\": \"", rd);
        edit_file(p, from, to);
        assert_int_equal(cli_quick(&out, &err, "vm", "rm", "r1", (char *)NULL), 0);
        free(out);
        free(err);
        assert_int_equal(stat(keep, &st), 0);
        assert_int_equal(stat(p, &st), 0);
        free(rd);
        free(from);
        free(to);
    }
    free(p);
    free(keep);
}

/* A socket bound to "f\n<row>" makes /proc/net/unix show a row of its
 * choosing: here, that an unrelated socket file listens.  The check reads
 * no such table: it asks the kernel about the file itself. */
static void test_forged_socket_row(void **state)
{
    char *victim = root_path("v"), *row, cwd[4096];
    int vfd, ffd, probe = listening_probe_open();

    (void)state;
    vfd = sup_unix_bind(victim, false);         /* a socket file, not listening */
    row = sup_asprintf("f\n0000000000000000: 00000002 00000000 00010000 0001 01 99999 %s", victim);
    assert_true(strlen(row) < 108);
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(g_root), 0);
    /* The row names an absolute path: its slashes are directories the
     * forger makes under its own. */
    for (char *sl = strchr(row, '/'); sl; sl = strchr(sl + 1, '/')) {
        *sl = '\0';
        assert_true(mkdir(row, 0700) == 0 || errno == EEXIST);
        *sl = '/';
    }
    ffd = sup_unix_bind(row, true);
    assert_int_equal(chdir(cwd), 0);
    assert_true(probe >= 0);
    assert_int_equal(listening_probe(probe, victim), -ECONNREFUSED);
    /* A real listener is still seen. */
    assert_int_equal(listen(vfd, 1), 0);
    assert_int_equal(listening_probe(probe, victim), 0);
    close(vfd);
    close(ffd);
    close(probe);
    free(victim);
    free(row);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plan_wait_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_result_write_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vmm_strings_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconcile_matches_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fd_exhaustion_throttles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_used_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo_state_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_state_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rm_run_dir_guard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_race_across_backends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forged_socket_row, setup, teardown),
    };
    int rc;

    g_cocoon = sup_build_path("cocoon");
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(g_cocoon);
    return rc;
}
