/* tests/test_interrupt.c: the cocoon command interrupted and fed without
 * end.  A batch against a chsim fleet whose add-fs replies never come is
 * sent SIGINT once chsim has received the PUTs in flight: nothing more is
 * sent, each operation is reported with its real outcome, the summary says
 * so and the exit status is 128+signal; a second signal stops at once and
 * names the VMs whose outcome is unknown.  A plan from a pipe is run as it
 * is read, in memory that does not grow with its length. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/support.h"

#define FLEET 24
#define PAR 4
#define WATCHDOG_MS 60000

struct fleet {
    char *dir;
    pid_t pid;
};

static void fleet_start(struct fleet *f, int n, const char *const extra[])
{
    char *bin = sup_build_path("chsim"), count[16], last[300];
    char *argv[16] = { bin, (char *)"--fleet", NULL, (char *)"--count", count,
                       (char *)"--no-connect" };
    int k = 6;

    f->dir = sup_tmpdir();
    argv[2] = f->dir;
    snprintf(count, sizeof(count), "%d", n);
    for (int i = 0; extra && extra[i]; i++)
        argv[k++] = (char *)extra[i];
    argv[k] = NULL;
    f->pid = sup_spawn(argv);
    assert_true(f->pid > 0);
    snprintf(last, sizeof(last), "%s/vm%d.sock", f->dir, n - 1);
    assert_int_equal(sup_wait_socket(last, 60000), 0);
    free(bin);
}

static void fleet_stop(struct fleet *f)
{
    sup_kill(f->pid);
    sup_rmrf(f->dir);
    free(f->dir);
}

static int fleet_count(const struct fleet *f, int n, const char *ep)
{
    int sum = 0;

    for (int i = 0; i < n; i++) {
        char *s = sup_asprintf("%s/vm%d.sock", f->dir, i);
        int c = sup_chsim_count(s, ep);

        free(s);
        assert_true(c >= 0);
        sum += c;
    }
    return sum;
}

/* Polls chsim's counters until the fleet has received want requests of ep:
 * the counter is the event; the watchdog only ends a hung test. */
static void wait_count(const struct fleet *f, int n, const char *ep, int want)
{
    long long deadline = sup_now_ms() + WATCHDOG_MS;

    while (fleet_count(f, n, ep) < want) {
        assert_true(sup_now_ms() < deadline);
        usleep(2000);
    }
}

/* The cocoon command with pipes for stdin (when in >= 0 is wanted), stdout
 * and stderr. */
struct proc {
    pid_t pid;
    int in, out, err;
    char *obuf, *ebuf;
    size_t olen, elen;
    struct rusage ru;
    int status;
};

static void proc_start(struct proc *p, bool with_stdin, char *const argv[])
{
    int pi[2] = { -1, -1 }, po[2], pe[2];

    memset(p, 0, sizeof(*p));
    if (with_stdin)
        assert_int_equal(pipe2(pi, O_CLOEXEC), 0);
    assert_int_equal(pipe2(po, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pe, O_CLOEXEC), 0);
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        sigset_t none;

        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        if (with_stdin)
            dup2(pi[0], 0);
        else
            dup2(open("/dev/null", O_RDONLY), 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    if (with_stdin)
        close(pi[0]);
    close(po[1]);
    close(pe[1]);
    p->in = pi[1];
    p->out = po[0];
    p->err = pe[0];
    assert_int_equal(fcntl(p->out, F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(fcntl(p->err, F_SETFL, O_NONBLOCK), 0);
}

static void append(int fd, char **buf, size_t *len)
{
    char tmp[65536];
    ssize_t n;

    while ((n = read(fd, tmp, sizeof(tmp))) > 0) {
        *buf = realloc(*buf, *len + (size_t)n + 1);
        assert_non_null(*buf);
        memcpy(*buf + *len, tmp, (size_t)n);
        *len += (size_t)n;
        (*buf)[*len] = '\0';
    }
}

/* Reads what is there; waits (poll, watchdog) until cond holds or both
 * pipes are at their end.  cond may be NULL: read to the end. */
static void proc_read_until(struct proc *p, bool (*cond)(const struct proc *p))
{
    long long deadline = sup_now_ms() + WATCHDOG_MS;

    for (;;) {
        struct pollfd fds[2] = { { p->out, POLLIN, 0 }, { p->err, POLLIN, 0 } };
        int open_fds = (p->out >= 0) + (p->err >= 0);

        if (cond && cond(p))
            return;
        if (!open_fds)
            return;
        assert_true(sup_now_ms() < deadline);
        if (poll(fds, 2, 1000) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            int *fd = i ? &p->err : &p->out;

            if (*fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP)))
                continue;
            append(*fd, i ? &p->ebuf : &p->obuf, i ? &p->elen : &p->olen);
            if (!(fds[i].revents & POLLIN) || (fds[i].revents & POLLHUP)) {
                struct pollfd one = { *fd, POLLIN, 0 };

                if (poll(&one, 1, 0) == 1 && (one.revents & POLLIN)) {
                    append(*fd, i ? &p->ebuf : &p->obuf, i ? &p->elen : &p->olen);
                    continue;
                }
                close(*fd);
                *fd = -1;
            }
        }
    }
}

/* Reads to the end and reaps, with its resource usage. */
static void proc_finish(struct proc *p)
{
    if (p->in >= 0)
        close(p->in);
    p->in = -1;
    proc_read_until(p, NULL);
    assert_int_equal(wait4(p->pid, &p->status, 0, &p->ru), p->pid);
    if (!p->obuf)
        p->obuf = strdup("");
    if (!p->ebuf)
        p->ebuf = strdup("");
}

static void proc_free(struct proc *p)
{
    free(p->obuf);
    free(p->ebuf);
}

static size_t count_str(const char *hay, const char *needle)
{
    size_t n = 0;

    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static char *fs_plan(const struct fleet *f, int n)
{
    size_t cap = 0;
    char *plan = NULL;
    FILE *m = open_memstream(&plan, &cap);

    assert_non_null(m);
    for (int i = 0; i < n; i++)
        fprintf(m, "{\"op\":\"fs-attach\",\"vm\":\"%s/vm%d.sock\",\"socket\":\"%s/v%d.sock\","
                "\"tag\":\"t\",\"no_socket_check\":true}\n", f->dir, i, f->dir, i);
    assert_int_equal(fclose(m), 0);
    return plan;
}

static char *write_plan(const struct fleet *f, int n)
{
    char *path = sup_asprintf("%s/plan.jsonl", f->dir), *plan = fs_plan(f, n);
    FILE *pf = fopen(path, "w");

    assert_non_null(pf);
    fputs(plan, pf);
    assert_int_equal(fclose(pf), 0);
    free(plan);
    return path;
}

static const char *const never_reply[] = { "--fault", "vm.add-fs=never-reply", NULL };

/* First SIGINT with PAR PUTs held by chsim: the other FLEET - PAR attaches
 * are never sent and are reported as not run; the held ones time out, and
 * vm.info shows each attached, so they are reported done. */
static void test_first_signal_drains(void **state)
{
    struct fleet f;
    struct proc p;
    char *cocoon = sup_build_path("cocoon"), *plan, *root;

    (void)state;
    fleet_start(&f, FLEET, never_reply);
    plan = write_plan(&f, FLEET);
    root = sup_asprintf("%s/root", f.dir);
    {
        char *argv[] = { cocoon, (char *)"--root-dir", root, (char *)"--timeout", (char *)"2",
                         (char *)"-o", (char *)"json", (char *)"batch", (char *)"--parallel",
                         (char *)"4", plan, NULL };

        proc_start(&p, false, argv);
    }
    wait_count(&f, FLEET, "vm.add-fs", PAR);
    assert_int_equal(kill(p.pid, SIGINT), 0);
    proc_finish(&p);
    assert_true(WIFEXITED(p.status));
    assert_int_equal(WEXITSTATUS(p.status), 128 + SIGINT);
    assert_non_null(strstr(p.ebuf, "Interrupted (SIGINT): starting nothing more; waiting for "
                                   "the 4 operation(s) in flight"));
    /* One line per operation, then the summary. */
    assert_int_equal(count_str(p.obuf, "\n"), FLEET + 1);
    assert_int_equal(count_str(p.obuf, "\"ok\":true"), PAR);
    assert_int_equal(count_str(p.obuf, "reply lost; vm.info shows the device attached"), PAR);
    assert_int_equal(count_str(p.obuf, "\"error\":\"fs attach: canceled before it started\","
                                       "\"outcome\":\"not-run\""), FLEET - PAR);
    assert_non_null(strstr(p.obuf, "{\"summary\":{\"total\":24,\"ok\":4,\"failed\":20,"));
    assert_non_null(strstr(p.obuf, "\"unknown\":0,\"not_run\":20,\"interrupted\":\"SIGINT\","
                                   "\"stopped_at_once\":false,\"lines_read\":24}}"));
    /* Not one PUT after the signal: only the PAR already in flight. */
    assert_int_equal(fleet_count(&f, FLEET, "vm.add-fs"), PAR);
    proc_free(&p);
    free(plan);
    free(root);
    free(cocoon);
    fleet_stop(&f);
}

static bool saw_interrupted(const struct proc *p)
{
    return p->ebuf && strstr(p->ebuf, "Interrupted (SIGINT)") != NULL;
}

/* A second signal while the held PUTs wait (30 s timeout): cocoon stops at
 * once and says which VMs may have changed; the text summary and the
 * per-VM lines agree, and nothing was sent after the first signal. */
static void test_second_signal_stops(void **state)
{
    struct fleet f;
    struct proc p;
    char *cocoon = sup_build_path("cocoon"), *plan, *root;

    (void)state;
    fleet_start(&f, FLEET, never_reply);
    plan = write_plan(&f, FLEET);
    root = sup_asprintf("%s/root", f.dir);
    {
        char *argv[] = { cocoon, (char *)"--root-dir", root, (char *)"batch",
                         (char *)"--parallel", (char *)"4", plan, NULL };

        proc_start(&p, false, argv);
    }
    wait_count(&f, FLEET, "vm.add-fs", PAR);
    assert_int_equal(kill(p.pid, SIGINT), 0);
    proc_read_until(&p, saw_interrupted);
    assert_int_equal(kill(p.pid, SIGTERM), 0);
    proc_finish(&p);
    assert_true(WIFEXITED(p.status));
    assert_int_equal(WEXITSTATUS(p.status), 128 + SIGINT);
    assert_int_equal(count_str(p.ebuf, "fs attach: outcome unknown: the request was already "
                                       "sent when the engine was freed"), PAR);
    assert_int_equal(count_str(p.ebuf, "fs attach: canceled before it started"), FLEET - PAR);
    assert_non_null(strstr(p.ebuf, "Interrupted (SIGINT, stopped at once, plan read up to "
                                   "line 24): 24 ops on 24 VMs: 0 ok, 24 failed (4 outcome "
                                   "unknown, 20 not run)"));
    assert_non_null(strstr(p.ebuf, "Outcome unknown on 4 VM(s), whose request was sent"));
    /* The unknown ones are the VMs that got a PUT. */
    for (int i = 0; i < FLEET; i++) {
        char *s = sup_asprintf("%s/vm%d.sock", f.dir, i);
        char *line = sup_asprintf("%s: fs attach: outcome unknown", s);
        int got = sup_chsim_count(s, "vm.add-fs");

        assert_true(got == 0 || got == 1);
        assert_int_equal(strstr(p.ebuf, line) != NULL, got == 1);
        free(line);
        free(s);
    }
    assert_int_equal(fleet_count(&f, FLEET, "vm.add-fs"), PAR);
    assert_null(strstr(p.obuf, "attached fs"));
    proc_free(&p);
    free(plan);
    free(root);
    free(cocoon);
    fleet_stop(&f);
}

/* Flag-driven ops: the VMs not yet started are each reported as not run. */
static void test_signal_flag_ops(void **state)
{
    struct fleet f;
    struct proc p;
    char *cocoon = sup_build_path("cocoon"), *root, *sock;
    char *argv[FLEET + 16];
    int k = 0;

    (void)state;
    fleet_start(&f, 8, never_reply);
    root = sup_asprintf("%s/root", f.dir);
    sock = sup_asprintf("%s/v-{name}.sock", f.dir);
    argv[k++] = cocoon;
    argv[k++] = (char *)"--root-dir";
    argv[k++] = root;
    argv[k++] = (char *)"--timeout";
    argv[k++] = (char *)"2";
    argv[k++] = (char *)"vm";
    argv[k++] = (char *)"fs";
    argv[k++] = (char *)"attach";
    for (int i = 0; i < 8; i++)
        argv[k++] = sup_asprintf("%s/vm%d.sock", f.dir, i);
    argv[k++] = (char *)"--socket";
    argv[k++] = sock;
    argv[k++] = (char *)"--tag";
    argv[k++] = (char *)"t";
    argv[k++] = (char *)"--no-socket-check";
    argv[k++] = (char *)"--parallel";
    argv[k++] = (char *)"2";
    argv[k] = NULL;
    proc_start(&p, false, argv);
    wait_count(&f, 8, "vm.add-fs", 2);
    assert_int_equal(kill(p.pid, SIGTERM), 0);
    proc_finish(&p);
    assert_true(WIFEXITED(p.status));
    assert_int_equal(WEXITSTATUS(p.status), 128 + SIGTERM);
    assert_int_equal(count_str(p.obuf, ": attached fs t"), 2);
    assert_int_equal(count_str(p.ebuf, "canceled before it started") +
                         count_str(p.ebuf, "not started: interrupted"), 6);
    assert_non_null(strstr(p.ebuf, "Interrupted (SIGTERM): 8 ops on 8 VMs: 2 ok, 6 failed "
                                   "(0 outcome unknown, 6 not run)"));
    assert_int_equal(fleet_count(&f, 8, "vm.add-fs"), 2);
    for (int i = 8; i < 16; i++)
        free(argv[i]);
    proc_free(&p);
    free(root);
    free(sock);
    free(cocoon);
    fleet_stop(&f);
}

/* ------------------------------------------------------------ streaming */

#define STREAM_VMS 8

static bool has_result(const struct proc *p)
{
    return p->obuf && strchr(p->obuf, '\n') != NULL;
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);

        assert_true(n > 0);
        buf += n;
        len -= (size_t)n;
    }
}

/* Feeds n device-list lines through a pipe, one line first, and the rest
 * only after the first result came back: cocoon must run the plan as it
 * reads it (reading all first would wait forever, until the watchdog).
 * Returns the run's peak RSS in KiB. */
static long stream_run(const struct fleet *f, long n)
{
    char *cocoon = sup_build_path("cocoon"), *root = sup_asprintf("%s/root", f->dir);
    char *argv[] = { cocoon, (char *)"--root-dir", root, (char *)"-o", (char *)"json",
                     (char *)"batch", (char *)"-", NULL };
    char line[512], *chunk = NULL;
    size_t clen = 0;
    FILE *m;
    struct proc p;
    long rss;

    proc_start(&p, true, argv);
    snprintf(line, sizeof(line), "{\"op\":\"device-list\",\"vm\":\"%s/vm0.sock\"}\n", f->dir);
    write_all(p.in, line, strlen(line));
    proc_read_until(&p, has_result);
    assert_non_null(strstr(p.obuf, "\"op\":\"device-list\",\"ok\":true"));
    /* Never blocked on a full stdin while cocoon waits for its stdout to
     * be read. */
    assert_int_equal(fcntl(p.in, F_SETFL, O_NONBLOCK), 0);
    /* The rest, in chunks, reading results as they come so neither pipe
     * fills up. */
    for (long i = 1; i < n;) {
        m = open_memstream(&chunk, &clen);
        for (int k = 0; k < 4096 && i < n; k++, i++)
            fprintf(m, "{\"op\":\"device-list\",\"vm\":\"%s/vm%ld.sock\"}\n", f->dir,
                    i % STREAM_VMS);
        fclose(m);
        for (size_t off = 0; off < clen;) {
            struct pollfd fds[2] = { { p.in, POLLOUT, 0 }, { p.out, POLLIN, 0 } };

            assert_true(poll(fds, 2, WATCHDOG_MS) > 0);
            if ((fds[0].revents & POLLERR) || fds[1].revents == POLLHUP)
                fail_msg("cocoon ended before its input did");
            if (fds[1].revents & POLLIN) {
                free(p.obuf);
                p.obuf = NULL;
                p.olen = 0;
                append(p.out, &p.obuf, &p.olen);
            }
            if (fds[0].revents & POLLOUT) {
                ssize_t w = write(p.in, chunk + off, clen - off);

                assert_true(w > 0 || errno == EAGAIN);
                off += w > 0 ? (size_t)w : 0;
            }
        }
        free(chunk);
        chunk = NULL;
    }
    free(p.obuf);
    p.obuf = NULL;
    p.olen = 0;
    proc_finish(&p);
    assert_true(WIFEXITED(p.status));
    assert_int_equal(WEXITSTATUS(p.status), 0);
    {
        char *want = sup_asprintf("{\"summary\":{\"total\":%ld,\"ok\":%ld,\"failed\":0,", n, n);

        assert_non_null(strstr(p.obuf, want));
        free(want);
    }
    rss = p.ru.ru_maxrss;
    proc_free(&p);
    free(root);
    free(cocoon);
    return rss;
}

static void test_batch_streams(void **state)
{
    struct fleet f;
    long small, big;

    (void)state;
    fleet_start(&f, STREAM_VMS, NULL);
    small = stream_run(&f, 20000);
    big = stream_run(&f, 200000);
    /* Ten times the lines in about the same memory: reading the plan whole
     * (some 20 MB of lines and jobs) would show. */
    print_message("peak RSS: %ld KiB for 20000 lines, %ld KiB for 200000\n", small, big);
    /* AddressSanitizer's allocator holds freed memory back, which reads as
     * growth; under valgrind the child's peak RSS is that of the growing
     * test process it was forked from (the high-water mark outlives
     * execve).  There (make asan sets ASAN_OPTIONS, make valgrind
     * COCOON_VALGRIND) only streaming counts. */
    if (getenv("ASAN_OPTIONS") || getenv("COCOON_VALGRIND"))
        print_message("under a sanitizer or valgrind: RSS not compared\n");
    else if (big > small + 4096)
        fail_msg("peak RSS %ld KiB for 200000 lines, %ld KiB for 20000", big, small);
    fleet_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_signal_drains),
        cmocka_unit_test(test_second_signal_stops),
        cmocka_unit_test(test_signal_flag_ops),
        cmocka_unit_test(test_batch_streams),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
