/* tests/test_virtiofsd.c: chsim against Debian's real virtiofsd.  add-fs
 * connects as the vhost-user client, virtiofsd drops its listening socket,
 * and after remove-device plus eject virtiofsd exits, as with CH. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/listening.h"
#include "tests/support/support.h"

#define VIRTIOFSD "/usr/lib/qemu/virtiofsd"

/* True when /proc/net/unix has a listening entry (flags 00010000) for path. */
static bool unix_listening(const char *path)
{
    FILE *f = fopen("/proc/net/unix", "r");
    char line[1024];
    bool found = false;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f)) {
        char flags[16], p[512];
        size_t n = strlen(line);

        if (n && line[n - 1] == '\n')
            line[n - 1] = '\0';
        p[0] = '\0';
        if (sscanf(line, "%*s %*s %*s %15s %*s %*s %*s %511s", flags, p) == 2 &&
            strcmp(flags, "00010000") == 0 && strcmp(p, path) == 0)
            found = true;
    }
    fclose(f);
    return found;
}

/* PUT with a JSON body on a fresh connection; returns the status code and
 * copies the body. */
static int put(const char *sock, const char *path, const char *json, char *body, size_t size)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char rq[4096], resp[8192];
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), code = -1;
    size_t got = 0;
    long long deadline = sup_now_ms() + 10000;

    assert_true(fd >= 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    snprintf(rq, sizeof(rq), "PUT %s HTTP/1.1\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s", path, strlen(json), json);
    assert_int_equal(send(fd, rq, strlen(rq), MSG_NOSIGNAL), (ssize_t)strlen(rq));
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        char *end;
        ssize_t r;

        resp[got] = '\0';
        end = strstr(resp, "\r\n\r\n");
        if (end) {
            const char *cl = strstr(resp, "Content-Length: ");
            size_t blen = cl && cl < end ? strtoul(cl + 16, NULL, 10) : 0;

            if (got >= (size_t)(end - resp) + 4 + blen) {
                sscanf(resp, "HTTP/1.1 %d ", &code);
                snprintf(body, size, "%s", end + 4);
                break;
            }
        }
        if (sup_now_ms() >= deadline || poll(&p, 1, 200) < 0)
            break;
        if (!(p.revents & POLLIN))
            continue;
        r = recv(fd, resp + got, sizeof(resp) - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    return code;
}

static void test_virtiofsd_lifecycle(void **state)
{
    char *dir, *share, vsock[300], api[300], body[4096], json[1024];
    const char *extra[] = { "--memory", "size=1G,shared=on", "--connect-timeout-ms", "5000", NULL };
    pid_t vpid, cpid;
    int st = 0, probe;
    long long deadline;

    (void)state;
    if (access(VIRTIOFSD, X_OK) != 0) {
        printf("skipped: %s is not installed (package qemu-system-common)\n", VIRTIOFSD);
        skip();
    }
    dir = sup_tmpdir();
    assert_non_null(dir);
    share = malloc(strlen(dir) + 8);
    sprintf(share, "%s/share", dir);
    assert_int_equal(mkdir(share, 0755), 0);
    snprintf(vsock, sizeof(vsock), "%s/vfs.sock", dir);
    snprintf(api, sizeof(api), "%s/api.sock", dir);
    {
        char src[400];
        char *argv[] = { (char *)VIRTIOFSD, NULL, (char *)"-o", src, (char *)"-o",
                         (char *)"cache=none", (char *)"-o", (char *)"sandbox=chroot", NULL };
        char sockarg[320];

        snprintf(sockarg, sizeof(sockarg), "--socket-path=%s", vsock);
        snprintf(src, sizeof(src), "source=%s", share);
        argv[1] = sockarg;
        vpid = sup_spawn(argv);
    }
    assert_true(vpid > 0);
    deadline = sup_now_ms() + 5000;
    while (!unix_listening(vsock) && sup_now_ms() < deadline)
        usleep(20 * 1000);
    if (!unix_listening(vsock)) {
        int ws = sup_kill(vpid);

        fprintf(stderr, "virtiofsd did not listen (wait status %d)\n", ws);
        fail();
    }
    cpid = sup_chsim_start(api, extra);
    assert_true(cpid > 0);

    /* cocoon's listener check, asked a hundred times, uses up nothing:
     * the one client virtiofsd takes is still the VMM below. */
    probe = listening_probe_open();
    assert_true(probe >= 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(listening_probe(probe, vsock), 0);

    snprintf(json, sizeof(json), "{\"tag\":\"share\",\"socket\":\"%s\",\"id\":\"vfs0\"}", vsock);
    assert_int_equal(put(api, "/api/v1/vm.add-fs", json, body, sizeof(body)), 200);
    assert_string_equal(body, "{\"id\":\"vfs0\",\"bdf\":\"0000:00:05.0\"}");
    /* virtiofsd serves one client: its listening entry is gone. */
    deadline = sup_now_ms() + 3000;
    while (unix_listening(vsock) && sup_now_ms() < deadline)
        usleep(20 * 1000);
    assert_false(unix_listening(vsock));
    assert_int_equal(listening_probe(probe, vsock), -ECONNREFUSED);
    close(probe);
    assert_int_equal(waitpid(vpid, &st, WNOHANG), 0);

    assert_int_equal(put(api, "/api/v1/vm.remove-device", "{\"id\":\"vfs0\"}", body,
                         sizeof(body)), 204);
    /* The eject closes the vhost-user connection and virtiofsd exits. */
    deadline = sup_now_ms() + 5000;
    while (waitpid(vpid, &st, WNOHANG) == 0 && sup_now_ms() < deadline)
        usleep(20 * 1000);
    assert_true(WIFEXITED(st) || WIFSIGNALED(st));
    assert_int_equal(kill(vpid, 0), -1);

    sup_kill(cpid);
    sup_rmrf(dir);
    free(share);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_virtiofsd_lifecycle),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
