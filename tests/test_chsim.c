/* tests/test_chsim.c: chsim's wire behaviour checked from raw sockets
 * against CH-WIRE.md: framing bytes, connection cap, keep-alive after
 * errors, pipelining, micro_http parse errors, the status table of all
 * three generations, cold/hot add, auto ids, eject window, counters,
 * faults, per-VM serialization and fleet mode. */
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
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/support.h"

struct fx {
    char *dir;
    char sock[256];
    pid_t pid;
};

static int conn_open(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void send_str(int fd, const char *s)
{
    size_t n = strlen(s);

    assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Sends a PUT with a JSON body, Content-Length computed. */
static void send_put(int fd, const char *path, const char *json)
{
    char rq[8192];

    snprintf(rq, sizeof(rq), "PUT %s HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s", path,
             strlen(json), json);
    send_str(fd, rq);
}

/* Reads exactly one response (framed by Content-Length; none for 204).
 * Returns its length, 0 on EOF before any byte, -1 on timeout. */
static ssize_t read_resp(int fd, char *buf, size_t size, int timeout_ms)
{
    size_t got = 0;
    long long deadline = sup_now_ms() + timeout_ms;

    for (;;) {
        char *end;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        ssize_t r;

        buf[got] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end) {
            size_t hlen = (size_t)(end - buf) + 4;
            const char *cl = strstr(buf, "Content-Length: ");
            size_t blen = cl && cl < end ? strtoul(cl + 16, NULL, 10) : 0;

            if (got >= hlen + blen)
                return (ssize_t)got;
        }
        if (got + 1 >= size || sup_now_ms() >= deadline)
            return -1;
        if (poll(&p, 1, (int)(deadline - sup_now_ms())) <= 0)
            return -1;
        r = recv(fd, buf + got, size - 1 - got, 0);
        if (r <= 0)
            return got ? (ssize_t)got : 0;
        got += (size_t)r;
    }
}

/* One request on a fresh connection; returns the status code and copies the
 * body (after the blank line) into body. */
static int req(const char *sock, const char *method, const char *path, const char *json,
               char *body, size_t body_size)
{
    char rq[8192], resp[65536];
    int fd = conn_open(sock), code = -1;
    ssize_t n;

    if (json)
        snprintf(rq, sizeof(rq), "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                 "application/json\r\nContent-Length: %zu\r\n\r\n%s", method, path,
                 strlen(json), json);
    else
        snprintf(rq, sizeof(rq), "%s %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n", method, path,
                 strcmp(method, "GET") ? "Content-Length: 0\r\n" : "");
    send_str(fd, rq);
    n = read_resp(fd, resp, sizeof(resp), 10000);
    close(fd);
    if (n > 0 && sscanf(resp, "HTTP/1.1 %d ", &code) == 1 && body) {
        const char *b = strstr(resp, "\r\n\r\n");

        snprintf(body, body_size, "%s", b ? b + 4 : "");
    }
    return code;
}

/* Waits until chsim has counted n requests to endpoint (a name of
 * GET /chsim/stats), i.e. has parsed them. */
static void wait_count(const char *sock, const char *endpoint, int n)
{
    long long deadline = sup_now_ms() + 10000;

    while (sup_chsim_count(sock, endpoint) < n)
        assert_true(sup_now_ms() < deadline);
}

static void fx_start(struct fx *f, const char *const extra[])
{
    f->dir = sup_tmpdir();
    assert_non_null(f->dir);
    snprintf(f->sock, sizeof(f->sock), "%s/api.sock", f->dir);
    f->pid = sup_chsim_start(f->sock, extra);
    assert_true(f->pid > 0);
}

/* A VMM started without a payload: no VM until vm.create, as in CH. */
static void fx_start_novm(struct fx *f, const char *const extra[])
{
    char *bin = sup_build_path("chsim"), arg[300];
    const char *argv[16] = { bin, "--api-socket", arg };
    size_t n = 3;

    f->dir = sup_tmpdir();
    assert_non_null(f->dir);
    snprintf(f->sock, sizeof(f->sock), "%s/api.sock", f->dir);
    snprintf(arg, sizeof(arg), "path=%s", f->sock);
    for (size_t i = 0; extra && extra[i] && n < 15; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    f->pid = sup_spawn((char **)argv);
    assert_true(f->pid > 0);
    assert_int_equal(sup_wait_socket(f->sock, 60000), 0);
    free(bin);
}

static void fx_stop(struct fx *f)
{
    int st = sup_kill(f->pid);

    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    /* chsim removes its socket on exit. */
    assert_int_not_equal(access(f->sock, F_OK), 0);
    sup_rmrf(f->dir);
    free(f->dir);
}

static const char *const SHARED[] = { "--memory", "size=512M,shared=on", "--no-connect", NULL };

static void test_framing_200_204_404(void **state)
{
    struct fx f;
    char buf[4096], want[512];
    int fd;
    ssize_t n;
    const char *body;

    (void)state;
    fx_start(&f, SHARED);
    fd = conn_open(f.sock);
    send_str(fd, "GET /api/v1/vmm.ping HTTP/1.1\r\nHost: localhost\r\n\r\n");
    n = read_resp(fd, buf, sizeof(buf), 5000);
    assert_true(n > 0);
    body = strstr(buf, "\r\n\r\n") + 4;
    snprintf(want, sizeof(want), "HTTP/1.1 200 \r\nServer: Cloud Hypervisor API\r\n"
             "Connection: keep-alive\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n", strlen(body));
    assert_int_equal(strncmp(buf, want, strlen(want)), 0);
    assert_non_null(strstr(body, "\"features\":[]"));
    assert_non_null(strstr(body, "\"build_version\":"));

    send_str(fd, "PUT /api/v1/vm.pause HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
    n = read_resp(fd, buf, sizeof(buf), 5000);
    assert_string_equal(buf, "HTTP/1.1 204 \r\nServer: Cloud Hypervisor API\r\n"
                             "Connection: keep-alive\r\n\r\n");

    send_str(fd, "GET /api/v1/nope HTTP/1.1\r\n\r\n");
    n = read_resp(fd, buf, sizeof(buf), 5000);
    assert_string_equal(buf, "HTTP/1.1 404 \r\nServer: Cloud Hypervisor API\r\n"
                             "Connection: keep-alive\r\nContent-Type: application/json\r\n"
                             "Content-Length: 13\r\n\r\n[\"Not Found\"]");
    /* Exact match: query string and trailing slash are 404. */
    assert_int_equal(req(f.sock, "GET", "/api/v1/vm.info?x=1", NULL, NULL, 0), 404);
    assert_int_equal(req(f.sock, "GET", "/api/v1/vm.info/", NULL, NULL, 0), 404);
    /* vmm.shutdown: 200 with an explicit zero length. */
    send_str(fd, "PUT /api/v1/vm.resume HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_true(read_resp(fd, buf, sizeof(buf), 5000) > 0);
    close(fd);
    fx_stop(&f);
}

static void test_vmm_shutdown_exits(void **state)
{
    struct fx f;
    char buf[1024];
    int fd, st;

    (void)state;
    fx_start(&f, NULL);
    fd = conn_open(f.sock);
    send_str(fd, "PUT /api/v1/vmm.shutdown HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_true(read_resp(fd, buf, sizeof(buf), 5000) > 0);
    assert_string_equal(buf, "HTTP/1.1 200 \r\nServer: Cloud Hypervisor API\r\n"
                             "Connection: keep-alive\r\nContent-Type: application/json\r\n"
                             "Content-Length: 0\r\n\r\n");
    close(fd);
    assert_int_equal(waitpid(f.pid, &st, 0), f.pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_not_equal(access(f.sock, F_OK), 0);
    sup_rmrf(f.dir);
    free(f.dir);
}

static void test_eleventh_connection(void **state)
{
    struct fx f;
    int fds[10];
    char buf[1024];
    ssize_t n;
    static const char want[] =
        "HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: close\r\n"
        "Content-Length: 40\r\n\r\n{ \"error\": \"Too many open connections\" }";

    (void)state;
    fx_start(&f, NULL);
    for (int i = 0; i < 10; i++) {
        fds[i] = conn_open(f.sock);
        send_str(fds[i], "GET /api/v1/vmm.ping HTTP/1.1\r\n\r\n");
        assert_true(read_resp(fds[i], buf, sizeof(buf), 5000) > 0);
    }
    n = sup_raw_exchange(f.sock, "GET /api/v1/vmm.ping HTTP/1.1\r\n\r\n", 33, buf, sizeof(buf),
                         3000);
    assert_int_equal(n, (ssize_t)strlen(want));
    assert_string_equal(buf, want);
    close(fds[0]);
    /* A slot frees once chsim has seen the close: until then a new
     * connection still gets the 503, afterwards it is served. */
    {
        long long deadline = sup_now_ms() + 10000;
        int code;

        while ((code = req(f.sock, "GET", "/api/v1/vmm.ping", NULL, NULL, 0)) == 503)
            assert_true(sup_now_ms() < deadline);
        assert_int_equal(code, 200);
    }
    for (int i = 1; i < 10; i++)
        close(fds[i]);
    fx_stop(&f);
}

static void test_keepalive_after_errors_and_http10(void **state)
{
    struct fx f;
    char buf[4096];
    int fd;

    (void)state;
    fx_start(&f, NULL);
    fd = conn_open(f.sock);
    send_str(fd, "GET /api/v1/missing HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_true(read_resp(fd, buf, sizeof(buf), 5000) > 0);
    assert_int_equal(strncmp(buf, "HTTP/1.1 404 \r\n", 15), 0);
    send_str(fd, "GET /api/v1/vmm.ping HTTP/1.0\r\n\r\n");
    assert_true(read_resp(fd, buf, sizeof(buf), 5000) > 0);
    assert_int_equal(strncmp(buf, "HTTP/1.1 200 \r\n", 15), 0);
    send_str(fd, "DELETE /api/v1/vmm.ping HTTP/1.1\r\n\r\n");
    assert_true(read_resp(fd, buf, sizeof(buf), 5000) > 0);
    assert_int_equal(strncmp(buf, "HTTP/1.1 400 \r\n", 15), 0);
    send_str(fd, "GET /api/v1/vm.info HTTP/1.1\r\n\r\n");
    assert_true(read_resp(fd, buf, sizeof(buf), 5000) > 0);
    assert_int_equal(strncmp(buf, "HTTP/1.1 200 \r\n", 15), 0);
    close(fd);
    fx_stop(&f);
}

static void test_pipelining(void **state)
{
    struct fx f;
    char buf[8192];
    int fd;
    ssize_t n;
    const char *second;

    (void)state;
    fx_start(&f, NULL);
    fd = conn_open(f.sock);
    send_str(fd, "GET /api/v1/vmm.ping HTTP/1.1\r\n\r\n"
                 "PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
                 "GET /api/v1/vm.info HTTP/1.1\r\n\r\n");
    n = read_resp(fd, buf, sizeof(buf), 5000);
    assert_true(n > 0);
    assert_int_equal(strncmp(buf, "HTTP/1.1 200 \r\n", 15), 0);
    second = strstr(buf + 1, "HTTP/1.1 ");
    if (!second) {
        assert_true(read_resp(fd, buf, sizeof(buf), 5000) > 0);
        second = buf;
    }
    assert_int_equal(strncmp(second, "HTTP/1.1 204 \r\n", 15), 0);
    /* The third reply must show the state the second request set. */
    {
        char b2[8192];
        size_t have = strlen(second);
        const char *third = strstr(second + 1, "HTTP/1.1 ");

        if (!third || have == 0) {
            assert_true(read_resp(fd, b2, sizeof(b2), 5000) > 0);
            third = b2;
        }
        assert_non_null(strstr(third, "\"state\":\"Paused\""));
    }
    close(fd);
    fx_stop(&f);
}

static void test_parse_errors(void **state)
{
    struct fx f;
    char buf[8192], rq[4096], want[512];
    int fd;
    const char *text = "Invalid HTTP Method: Unsupported HTTP method."
                       "\nAll previous unanswered requests will be dropped.";

    (void)state;
    fx_start(&f, NULL);
    fd = conn_open(f.sock);
    send_str(fd, "POST /api/v1/vmm.ping HTTP/1.1\r\n\r\n");
    assert_true(read_resp(fd, buf, sizeof(buf), 5000) > 0);
    snprintf(want, sizeof(want), "HTTP/1.1 400 \r\nServer: Firecracker API\r\nConnection: "
             "keep-alive\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n"
             "{ \"error\": \"%s\" }", strlen(text) + 15, text);
    assert_string_equal(buf, want);
    /* Header line over 1024 bytes. */
    memset(rq, 0, sizeof(rq));
    strcpy(rq, "GET /api/v1/vmm.ping HTTP/1.1\r\nX-Long: ");
    memset(rq + strlen(rq), 'a', 1100);
    strcat(rq, "\r\n\r\n");
    send_str(fd, rq);
    assert_true(read_resp(fd, buf, sizeof(buf), 5000) > 0);
    assert_int_equal(strncmp(buf, "HTTP/1.1 400 \r\nServer: Firecracker API\r\n", 40), 0);
    assert_non_null(strstr(buf, "\nAll previous unanswered requests will be dropped.\" }"));
    /* Exactly 1024 bytes is fine. */
    strcpy(rq, "GET /api/v1/vmm.ping HTTP/1.1\r\nX-Long: ");
    memset(rq + strlen(rq), 'a', 1024 - 8);
    rq[31 + 1024] = '\0';
    strcat(rq, "\r\n\r\n");
    send_str(fd, rq);
    assert_true(read_resp(fd, buf, sizeof(buf), 5000) > 0);
    assert_int_equal(strncmp(buf, "HTTP/1.1 200 \r\n", 15), 0);
    close(fd);
    fx_stop(&f);
}

struct gen_row {
    const char *gen;
    int novm, nodev, dup, shm;
};

static void test_status_table(void **state)
{
    static const struct gen_row rows[] = {
        { "head", 404, 404, 409, 400 },
        { "v53", 404, 500, 500, 500 },
        { "v46", 500, 500, 500, 500 },
    };
    char body[8192];

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct gen_row *r = &rows[i];
        const char *shared[] = { "--api-version", r->gen, "--memory", "size=1G,shared=on",
                                 "--no-connect", NULL };
        const char *plain[] = { "--api-version", r->gen, "--memory", "size=1G", NULL };
        const char *novm[] = { "--api-version", r->gen, NULL };
        bool json = strcmp(r->gen, "v46") != 0;
        struct fx a, b, c;

        fx_start(&a, shared);
        assert_int_equal(req(a.sock, "GET", "/api/v1/bogus", NULL, body, sizeof(body)), 404);
        assert_string_equal(body, json ? "[\"Not Found\"]" : "Not Found");
        assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.add-fs", "{nope", body, sizeof(body)), 400);
        assert_int_equal(strncmp(body, json ? "[\"Failed to deserialize JSON\"," :
                                 "Failed to deserialize JSON: ", json ? 30 : 28), 0);
        assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.add-fs", "{\"tag\":\"x\"}", body,
                             sizeof(body)), 400);
        assert_non_null(strstr(body, "missing field `socket`"));
        assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.add-fs", NULL, body, sizeof(body)), 400);
        assert_string_equal(body, json ? "[\"Bad Request\"]" : "Bad Request");
        assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.pause", "{}", body, sizeof(body)), 400);
        assert_int_equal(req(a.sock, "GET", "/api/v1/vm.pause", NULL, body, sizeof(body)), 400);
        assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.remove-device", "{\"id\":\"zz\"}", body,
                             sizeof(body)), r->nodev);
        assert_string_equal(body, json ?
            "[\"Error from API\",\"The device could not be removed from the VM\","
            "\"Error from device manager\",\"Failed to find device corresponding to the given "
            "identifier: zz\"]" :
            "Error from API: The device could not be removed from the VM: Error from device "
            "manager: Failed to find device corresponding to the given identifier: zz");
        assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.add-fs",
                             "{\"tag\":\"t\",\"socket\":\"/x\",\"id\":\"d1\"}", body,
                             sizeof(body)), 200);
        assert_string_equal(body, "{\"id\":\"d1\",\"bdf\":\"0000:00:05.0\"}");
        assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.add-fs",
                             "{\"tag\":\"t2\",\"socket\":\"/y\",\"id\":\"d1\"}", body,
                             sizeof(body)), r->dup);
        assert_string_equal(body, json ?
            "[\"Error from API\",\"The fs could not be added to the VM\",\"Failed to validate "
            "config\",\"Identifier d1 is not unique\"]" :
            "Error from API: The fs could not be added to the VM: Failed to validate config: "
            "Identifier d1 is not unique");
        assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.add-device",
                             "{\"path\":\"/tmp\",\"id\":\"v\"}", body, sizeof(body)), 200);
        assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.add-device", "{\"path\":\"/tmp\"}",
                             body, sizeof(body)), r->dup);
        assert_non_null(strstr(body, "Duplicated device path: /tmp"));
        assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.add-fs",
                             "{\"tag\":\"t\",\"socket\":\"/x\",\"id\":\"__r\"}", body,
                             sizeof(body)), r->shm);
        assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.add-fs",
                             "{\"tag\":\"t\",\"socket\":\"/x\",\"num_queues\":2}", body,
                             sizeof(body)), r->shm);
        assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.add-fs",
                             "{\"tag\":\"t\",\"socket\":\"/x\",\"queue_size\":1000}", body,
                             sizeof(body)), r->shm);
        assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.add-device",
                             "{\"path\":\"/nonexistent/dev\"}", body, sizeof(body)), 500);
        assert_non_null(strstr(body, "Cannot create a VFIO device"));
        assert_non_null(strstr(body, "invalid file path"));
        assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.snapshot",
                             "{\"destination_url\":\"file:///tmp\"}", body, sizeof(body)), 500);
        fx_stop(&a);

        fx_start(&b, plain);
        assert_int_equal(req(b.sock, "PUT", "/api/v1/vm.add-fs",
                             "{\"tag\":\"t\",\"socket\":\"/x\"}", body, sizeof(body)), r->shm);
        assert_non_null(strstr(body, "Using vhost-user requires using shared memory or huge pages"));
        fx_stop(&b);

        fx_start_novm(&c, novm);
        assert_int_equal(req(c.sock, "GET", "/api/v1/vm.info", NULL, body, sizeof(body)), r->novm);
        assert_non_null(strstr(body, "VM is not created"));
        assert_int_equal(req(c.sock, "GET", "/api/v1/vmm.ping", NULL, body, sizeof(body)), 200);
        fx_stop(&c);
    }
}

static void test_cold_then_hot_add_and_auto_ids(void **state)
{
    static const char *const extra[] = { "--no-connect", "--cmdline", "console=ttyS0", "-v",
                                         NULL };
    struct fx f;
    char body[16384], buf[1024];
    int fd;

    (void)state;
    fx_start_novm(&f, extra);
    /* No payload on the command line: no VM, as in CH. */
    assert_int_equal(req(f.sock, "GET", "/api/v1/vm.info", NULL, body, sizeof(body)), 404);
    assert_string_equal(body, "[\"Error from API\",\"The VM info is not available\","
                              "\"VM is not created\"]");
    /* vm.create stores its body as the config. */
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.create",
                         "{\"cpus\":{\"boot_vcpus\":2,\"max_vcpus\":2},\"memory\":{\"size\":"
                         "1073741824,\"shared\":true},\"payload\":{\"kernel\":\"/k\"}}",
                         body, sizeof(body)), 204);
    assert_int_equal(req(f.sock, "GET", "/api/v1/vm.info", NULL, body, sizeof(body)), 200);
    assert_non_null(strstr(body, "\"state\":\"Created\""));
    assert_non_null(strstr(body, "\"shared\":true"));
    assert_non_null(strstr(body, "\"payload\":{\"kernel\":\"/k\"}"));
    assert_null(strstr(body, "device_tree"));
    assert_null(strstr(body, "\"fs\""));
    fd = conn_open(f.sock);
    send_put(fd, "/api/v1/vm.add-fs", "{\"tag\":\"c\",\"socket\":\"/cold\"}");
    assert_true(read_resp(fd, buf, sizeof(buf), 5000) > 0);
    assert_string_equal(buf, "HTTP/1.1 204 \r\nServer: Cloud Hypervisor API\r\n"
                             "Connection: keep-alive\r\n\r\n");
    close(fd);
    assert_int_equal(req(f.sock, "GET", "/api/v1/vm.info", NULL, body, sizeof(body)), 200);
    /* Cold: no id until boot. */
    assert_non_null(strstr(body, "\"fs\":[{\"pci_segment\":0,\"tag\":\"c\",\"socket\":\"/cold\""));
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.boot", NULL, body, sizeof(body)), 204);
    assert_int_equal(req(f.sock, "GET", "/api/v1/vm.info", NULL, body, sizeof(body)), 200);
    assert_non_null(strstr(body, "\"state\":\"Running\""));
    /* Boot: console at 1, rng at 2, then the config's fs. */
    assert_non_null(strstr(body, "\"_virtio-pci-_fs0\":{"));
    assert_non_null(strstr(body, "\"fs\":[{\"id\":\"_fs0\",\"pci_segment\":0,\"tag\":\"c\""));
    /* One counter across device types. */
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.add-device", "{\"path\":\"/tmp\"}", body,
                         sizeof(body)), 200);
    assert_string_equal(body, "{\"id\":\"_vfio1\",\"bdf\":\"0000:00:04.0\"}");
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.add-fs", "{\"tag\":\"h\",\"socket\":\"/h\"}",
                         body, sizeof(body)), 200);
    assert_string_equal(body, "{\"id\":\"_fs2\",\"bdf\":\"0000:00:05.0\"}");
    assert_int_equal(req(f.sock, "GET", "/api/v1/vm.info", NULL, body, sizeof(body)), 200);
    assert_non_null(strstr(body, "\"devices\":[{\"id\":\"_vfio1\",\"pci_segment\":0,"
                                 "\"path\":\"/tmp\""));
    /* config.fs keeps the order of addition, as CH's does. */
    assert_true(strstr(body, "\"tag\":\"c\"") < strstr(body, "\"tag\":\"h\""));
    assert_non_null(strstr(body, "\"_vfio1\":{\"id\":\"_vfio1\",\"resources\":[{\"PciBar\":"));
    assert_non_null(strstr(body, "\"children\":[],\"pci_bdf\":\"0000:00:04.0\"}"));
    assert_non_null(strstr(body, "\"_fs2\":{\"id\":\"_fs2\",\"resources\":[],\"parent\":"
                                 "\"_virtio-pci-_fs2\",\"children\":[]}"));
    /* Unset options are left out, never null. */
    assert_null(strstr(body, "null"));
    /* Shutdown drops the VM: Created again, no tree, the config kept. */
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.shutdown", NULL, body, sizeof(body)), 204);
    assert_int_equal(req(f.sock, "GET", "/api/v1/vm.info", NULL, body, sizeof(body)), 200);
    assert_non_null(strstr(body, "\"state\":\"Created\""));
    assert_null(strstr(body, "device_tree"));
    assert_non_null(strstr(body, "\"id\":\"_fs2\""));
    fx_stop(&f);
}

/* A VM started from the command line looks like a typical guest: full
 * config, and a device tree with resources. */
static void test_realistic_vm_info(void **state)
{
    static const char *const extra[] = { "--memory", "size=1G,shared=on", "--cpus", "boot=2",
                                         "--no-connect", "--cmdline",
                                         "console=hvc0 root=/dev/vda1 rw", NULL };
    struct fx f;
    char body[16384];
    size_t base;

    (void)state;
    fx_start(&f, extra);
    assert_int_equal(req(f.sock, "GET", "/api/v1/vm.info", NULL, body, sizeof(body)), 200);
    base = strlen(body);
    for (const char *k = "\"topology\":\0\"payload\":{\"kernel\":\"/dev/null\",\"cmdline\":\0"
                         "\"disks\":[\0\"net\":[\0\"rng\":{\0\"serial\":{\0\"console\":{\0"
                         "\"__serial\":{\0\"_virtio-pci-_disk0\":{\0\"PciBar\":\0";
         *k; k += strlen(k) + 1)
        if (!strstr(body, k))
            fail_msg("vm.info lacks %s: %s", k, body);
    for (int i = 0; i < 3; i++) {
        char add[128];

        snprintf(add, sizeof(add), "{\"tag\":\"t%d\",\"socket\":\"/s%d\",\"id\":\"share%d\"}",
                 i, i, i);
        assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.add-fs", add, NULL, 0), 200);
    }
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.add-device", "{\"path\":\"/tmp\"}", NULL, 0),
                     200);
    assert_int_equal(req(f.sock, "GET", "/api/v1/vm.info", NULL, body, sizeof(body)), 200);
    print_message("vm.info: %zu bytes booted, %zu with 3 fs and 1 vfio\n", base, strlen(body));
    /* About 5 KiB, like CH's for a VM with a few devices. */
    assert_true(strlen(body) > 4096 && strlen(body) < 8192);
    fx_stop(&f);
}

/* The eject window, driven by the test: the guest acknowledges only when
 * told to (PUT /chsim/eject). */
static void test_eject_window(void **state)
{
    const char *extra[] = { "--memory", "size=1G,shared=on", "--no-connect", "--no-eject", NULL };
    const char *add = "{\"tag\":\"t\",\"socket\":\"/s\",\"id\":\"e1\"}";
    struct fx f;
    char body[16384];

    (void)state;
    fx_start(&f, extra);
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.add-fs", add, body, sizeof(body)), 200);
    assert_string_equal(body, "{\"id\":\"e1\",\"bdf\":\"0000:00:05.0\"}");
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.remove-device", "{\"id\":\"e1\"}", body,
                         sizeof(body)), 204);
    assert_int_equal(req(f.sock, "GET", "/api/v1/vm.info", NULL, body, sizeof(body)), 200);
    assert_null(strstr(body, "\"fs\":"));
    assert_non_null(strstr(body, "\"_virtio-pci-e1\""));
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.add-fs", add, body, sizeof(body)), 500);
    assert_string_equal(body, "[\"Error from API\",\"The fs could not be added to the VM\","
                              "\"Error from device manager\",\"Invalid identifier as it is not "
                              "unique: e1\"]");
    /* Removing again during the window: the node is still in the device
     * tree, where CH looks, so it is accepted again. */
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.remove-device", "{\"id\":\"e1\"}", body,
                         sizeof(body)), 204);
    assert_int_equal(sup_chsim_count(f.sock, "ejects"), 0);
    assert_int_equal(req(f.sock, "PUT", "/chsim/eject", "", body, sizeof(body)), 200);
    assert_string_equal(body, "{\"ejected\":1}");
    assert_int_equal(sup_chsim_count(f.sock, "ejects"), 1);
    assert_int_equal(req(f.sock, "GET", "/api/v1/vm.info", NULL, body, sizeof(body)), 200);
    assert_null(strstr(body, "e1"));
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.remove-device", "{\"id\":\"e1\"}", body,
                         sizeof(body)), 404);
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.add-fs", add, body, sizeof(body)), 200);
    assert_string_equal(body, "{\"id\":\"e1\",\"bdf\":\"0000:00:05.0\"}");
    fx_stop(&f);
}

/* --eject-delay-ms: the guest acknowledges on its own; wait for it on
 * chsim's counter. */
static void test_eject_delay(void **state)
{
    const char *extra[] = { "--memory", "size=1G,shared=on", "--no-connect", "--eject-delay-ms",
                            "50", NULL };
    struct fx f;
    char body[16384];

    (void)state;
    fx_start(&f, extra);
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.add-fs",
                         "{\"tag\":\"t\",\"socket\":\"/s\",\"id\":\"d\"}", body, sizeof(body)), 200);
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.remove-device", "{\"id\":\"d\"}", body,
                         sizeof(body)), 204);
    wait_count(f.sock, "ejects", 1);
    assert_int_equal(req(f.sock, "GET", "/api/v1/vm.info", NULL, body, sizeof(body)), 200);
    assert_null(strstr(body, "\"_virtio-pci-d\""));
    fx_stop(&f);
}

static void test_counters(void **state)
{
    struct fx f;

    (void)state;
    fx_start(&f, SHARED);
    assert_int_equal(sup_chsim_count(f.sock, "vm.info"), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(req(f.sock, "GET", "/api/v1/vm.info", NULL, NULL, 0), 200);
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.add-fs", "{bad", NULL, 0), 400);
    assert_int_equal(sup_chsim_count(f.sock, "vm.info"), 3);
    assert_int_equal(sup_chsim_count(f.sock, "vm.add-fs"), 1);
    assert_int_equal(sup_chsim_count(f.sock, "vmm.ping"), 0);
    fx_stop(&f);
}

static void test_fault_close_before_reply(void **state)
{
    struct fx f;
    char buf[4096], body[8192];
    int fd;

    (void)state;
    fx_start(&f, SHARED);
    assert_int_equal(req(f.sock, "PUT", "/chsim/fault",
                         "{\"endpoint\":\"vm.add-fs\",\"mode\":\"close-before-reply\",\"count\":1}",
                         NULL, 0), 204);
    fd = conn_open(f.sock);
    send_put(fd, "/api/v1/vm.add-fs", "{\"tag\":\"t\",\"socket\":\"/s\",\"id\":\"lost\"}");
    assert_int_equal(read_resp(fd, buf, sizeof(buf), 5000), 0);
    close(fd);
    /* The request ran: the reply was lost, not the attach. */
    assert_int_equal(req(f.sock, "GET", "/api/v1/vm.info", NULL, body, sizeof(body)), 200);
    assert_non_null(strstr(body, "\"id\":\"lost\""));
    assert_int_equal(sup_chsim_count(f.sock, "vm.add-fs"), 1);
    /* count 1: the next add is answered normally. */
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.add-fs",
                         "{\"tag\":\"t\",\"socket\":\"/s\",\"id\":\"ok\"}", NULL, 0), 200);
    fx_stop(&f);
}

static void test_fault_cli_http10_and_plain(void **state)
{
    const char *extra[] = { "--fault", "vm.info=http10:1", "--fault", "vmm.ping=plain-text-error",
                            NULL };
    struct fx f;
    char buf[8192];
    ssize_t n;

    (void)state;
    fx_start(&f, extra);
    n = sup_raw_exchange(f.sock, "GET /api/v1/vm.info HTTP/1.1\r\n\r\n", 32, buf, sizeof(buf), 3000);
    assert_true(n > 0);
    assert_int_equal(strncmp(buf, "HTTP/1.0 200 \r\n", 15), 0);
    assert_null(strstr(buf, "Content-Length"));
    assert_non_null(strstr(buf, "\"state\":\"Running\""));
    assert_int_equal(buf[n - 1], '}');
    assert_int_equal(req(f.sock, "GET", "/api/v1/vmm.ping", NULL, buf, sizeof(buf)), 500);
    assert_string_equal(buf, "Error from API: chsim injected plain-text error");
    assert_int_equal(req(f.sock, "PUT", "/chsim/fault",
                         "{\"endpoint\":\"vm.info\",\"mode\":\"chunked\",\"count\":1}", NULL, 0),
                     204);
    {
        int fd = conn_open(f.sock);
        char b2[8192];
        size_t got = 0;
        long long deadline = sup_now_ms() + 3000;

        send_str(fd, "GET /api/v1/vm.info HTTP/1.1\r\n\r\n");
        while (sup_now_ms() < deadline && (got < 5 || strcmp(b2 + got - 5, "0\r\n\r\n") != 0)) {
            ssize_t r = recv(fd, b2 + got, sizeof(b2) - 1 - got, MSG_DONTWAIT);

            if (r > 0)
                got += (size_t)r;
            else
                usleep(10000);
            b2[got] = '\0';
        }
        assert_non_null(strstr(b2, "\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert_null(strstr(b2, "Content-Length"));
        assert_int_equal(strcmp(b2 + got - 5, "0\r\n\r\n"), 0);
        /* count was 1: the same connection then gets a normal reply. */
        send_str(fd, "GET /api/v1/vm.info HTTP/1.1\r\n\r\n");
        assert_true(read_resp(fd, b2, sizeof(b2), 3000) > 0);
        assert_non_null(strstr(b2, "Content-Length: "));
        close(fd);
    }
    assert_int_equal(sup_chsim_count(f.sock, "vm.info"), 3);
    fx_stop(&f);
}

/* hold: the request runs, its reply waits for PUT /chsim/release (the
 * VM's queue with it); a release with nothing held is refused. */
static void test_fault_hold(void **state)
{
    struct fx f;
    char buf[8192];
    struct pollfd p;
    int fd;

    (void)state;
    fx_start(&f, SHARED);
    assert_int_equal(req(f.sock, "PUT", "/chsim/release", NULL, buf, sizeof(buf)), 409);
    assert_int_equal(req(f.sock, "PUT", "/chsim/fault",
                         "{\"endpoint\":\"vm.add-fs\",\"mode\":\"hold\",\"count\":1}",
                         NULL, 0), 204);
    fd = conn_open(f.sock);
    send_put(fd, "/api/v1/vm.add-fs", "{\"tag\":\"t\",\"socket\":\"/s\",\"id\":\"held\"}");
    wait_count(f.sock, "vm.add-fs", 1);
    p = (struct pollfd){ .fd = fd, .events = POLLIN };
    assert_int_equal(poll(&p, 1, 0), 0);
    assert_int_equal(req(f.sock, "PUT", "/chsim/release", NULL, buf, sizeof(buf)), 204);
    assert_true(read_resp(fd, buf, sizeof(buf), 5000) > 0);
    assert_int_equal(strncmp(buf, "HTTP/1.1 200 \r\n", 15), 0);
    assert_non_null(strstr(buf, "\"id\":\"held\""));
    close(fd);
    assert_int_equal(req(f.sock, "PUT", "/chsim/release", NULL, buf, sizeof(buf)), 409);
    fx_stop(&f);
}

/* die-after-reply: the whole reply, then exit 1 with the socket file left
 * behind.  handover: by the time the reply arrives, a successor with the
 * same command line (fresh state) already serves the path. */
static void test_fault_die_after_reply_and_handover(void **state)
{
    struct fx f;
    char buf[8192];
    int fd, st;
    pid_t succ;

    (void)state;
    for (int handover = 0; handover < 2; handover++) {
        fx_start(&f, SHARED);
        assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.add-fs",
                             "{\"tag\":\"t\",\"socket\":\"/s\",\"id\":\"old\"}", NULL, 0),
                         200);
        assert_int_equal(req(f.sock, "PUT", "/chsim/fault",
                             handover ? "{\"endpoint\":\"vm.info\",\"mode\":\"handover\"}"
                                      : "{\"endpoint\":\"vm.info\",\"mode\":\"die-after-reply\"}",
                             NULL, 0), 204);
        fd = conn_open(f.sock);
        send_str(fd, "GET /api/v1/vm.info HTTP/1.1\r\n\r\n");
        assert_true(read_resp(fd, buf, sizeof(buf), 10000) > 0);
        assert_non_null(strstr(buf, "\"id\":\"old\""));
        close(fd);
        assert_int_equal(waitpid(f.pid, &st, 0), f.pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 1);
        succ = sup_listener_pid(f.sock);
        if (!handover) {
            assert_int_equal(succ, 0);
            assert_int_equal(access(f.sock, F_OK), 0);
            sup_rmrf(f.dir);
            free(f.dir);
            continue;
        }
        assert_true(succ > 0 && succ != f.pid);
        assert_int_equal(req(f.sock, "GET", "/api/v1/vm.info", NULL, buf, sizeof(buf)), 200);
        assert_null(strstr(buf, "\"id\":\"old\""));
        assert_int_equal(sup_chsim_count(f.sock, "vm.info"), 1);
        /* Orphaned by its parent's exit: this process's child (subreaper). */
        f.pid = succ;
        fx_stop(&f);
    }
}

static void test_serialization(void **state)
{
    const char *extra[] = { "--memory", "size=1G,shared=on", "--no-connect", "--add-latency-ms",
                            "500", NULL };
    struct fx f;
    char buf[8192];
    int a, b;
    struct pollfd pa;

    (void)state;
    fx_start(&f, extra);
    a = conn_open(f.sock);
    b = conn_open(f.sock);
    send_put(a, "/api/v1/vm.add-fs", "{\"tag\":\"t\",\"socket\":\"/s\"}");
    /* The add is in chsim's hands once counted. */
    wait_count(f.sock, "vm.add-fs", 1);
    send_str(b, "GET /api/v1/vmm.ping HTTP/1.1\r\n\r\n");
    assert_true(read_resp(b, buf, sizeof(buf), 10000) > 0);
    /* One VMM thread: the ping was answered after the add, so the add's
     * reply is already waiting on a. */
    pa = (struct pollfd){ .fd = a, .events = POLLIN };
    assert_int_equal(poll(&pa, 1, 0), 1);
    assert_true(read_resp(a, buf, sizeof(buf), 5000) > 0);
    assert_int_equal(strncmp(buf, "HTTP/1.1 200 \r\n", 15), 0);
    close(a);
    close(b);
    fx_stop(&f);
}

static void test_connect_timeout(void **state)
{
    const char *head[] = { "--memory", "size=1G,shared=on", "--connect-timeout-ms", "300", NULL };
    const char *v53[] = { "--api-version", "v53", "--memory", "size=1G,shared=on",
                          "--connect-timeout-ms", "300", NULL };
    struct fx f;
    char body[8192];
    long long t0;

    (void)state;
    fx_start(&f, head);
    t0 = sup_now_ms();
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.add-fs",
                         "{\"tag\":\"t\",\"socket\":\"/nonexistent.sock\"}", body, sizeof(body)), 500);
    assert_true(sup_now_ms() - t0 >= 250);
    assert_non_null(strstr(body, "\"Timed out waiting for vhost-user connection\"]"));
    fx_stop(&f);
    fx_start(&f, v53);
    assert_int_equal(req(f.sock, "PUT", "/api/v1/vm.add-fs",
                         "{\"tag\":\"t\",\"socket\":\"/nonexistent.sock\"}", body, sizeof(body)), 500);
    assert_non_null(strstr(body, "\"Connection to socket failed\"]"));
    fx_stop(&f);
}

static void test_fleet(void **state)
{
    char *dir = sup_tmpdir(), *bin = sup_build_path("chsim");
    char fleet[256], last[300], sock[300], buf[16384], stats[300];
    char *argv[] = { bin, (char *)"--fleet", fleet, (char *)"--count", (char *)"100",
                     (char *)"--no-connect", (char *)"--add-latency-ms", (char *)"600000",
                     (char *)"--stats-file", stats, NULL };
    pid_t pid;
    FILE *fp;

    (void)state;
    snprintf(fleet, sizeof(fleet), "%s/fleet", dir);
    snprintf(last, sizeof(last), "%s/vm99.sock", fleet);
    snprintf(stats, sizeof(stats), "%s/stats.json", dir);
    pid = sup_spawn(argv);
    assert_int_equal(sup_wait_socket(last, 60000), 0);
    for (int i = 0; i < 100; i++) {
        snprintf(sock, sizeof(sock), "%s/vm%d.sock", fleet, i);
        assert_int_equal(req(sock, "GET", "/api/v1/vm.info", NULL, buf, sizeof(buf)), 200);
        /* Fleet VMs have shared memory by default. */
        assert_non_null(strstr(buf, "\"shared\":true"));
    }
    /* A slow add on vm0 does not hold vm1. */
    {
        int fd;

        snprintf(sock, sizeof(sock), "%s/vm0.sock", fleet);
        struct pollfd p;

        fd = conn_open(sock);
        send_put(fd, "/api/v1/vm.add-fs", "{\"tag\":\"t\",\"socket\":\"/s\"}");
        wait_count(sock, "vm.add-fs", 1);
        snprintf(sock, sizeof(sock), "%s/vm1.sock", fleet);
        assert_int_equal(req(sock, "GET", "/api/v1/vmm.ping", NULL, NULL, 0), 200);
        /* vm0's add (ten minutes of latency) is still pending. */
        p = (struct pollfd){ .fd = fd, .events = POLLIN };
        assert_int_equal(poll(&p, 1, 0), 0);
        close(fd);
    }
    sup_kill(pid);
    fp = fopen(stats, "r");
    assert_non_null(fp);
    assert_non_null(fgets(buf, sizeof(buf), fp));
    fclose(fp);
    assert_non_null(strstr(buf, "\"vm.info\":100,"));
    assert_non_null(strstr(buf, "\"vm.add-fs\":1,"));
    assert_int_not_equal(access(last, F_OK), 0);
    sup_rmrf(dir);
    free(dir);
    free(bin);
}

static void test_firecracker(void **state)
{
    char *dir = sup_tmpdir(), *bin = sup_build_path("chsim");
    char sock[256], body[4096];
    char *argv[] = { bin, (char *)"--firecracker", (char *)"--api-sock", sock, NULL };
    pid_t pid;
    int st;

    (void)state;
    snprintf(sock, sizeof(sock), "%s/fc.sock", dir);
    pid = sup_spawn(argv);
    assert_int_equal(sup_wait_socket(sock, 60000), 0);
    assert_int_equal(req(sock, "GET", "/", NULL, body, sizeof(body)), 200);
    assert_non_null(strstr(body, "\"state\":\"Not started\""));
    assert_int_equal(req(sock, "PUT", "/actions", "{\"action_type\":\"InstanceStart\"}", body,
                         sizeof(body)), 400);
    assert_non_null(strstr(body, "\"fault_message\":"));
    assert_int_equal(req(sock, "PUT", "/machine-config", "{\"vcpu_count\":2,\"mem_size_mib\":256}",
                         NULL, 0), 204);
    assert_int_equal(req(sock, "PUT", "/boot-source", "{\"kernel_image_path\":\"/dev/null\"}",
                         NULL, 0), 204);
    assert_int_equal(req(sock, "PUT", "/drives/root", "{\"drive_id\":\"other\"}", NULL, 0), 400);
    assert_int_equal(req(sock, "PUT", "/drives/root",
                         "{\"drive_id\":\"root\",\"path_on_host\":\"/dev/null\","
                         "\"is_root_device\":true,\"is_read_only\":true}", NULL, 0), 204);
    assert_int_equal(req(sock, "PUT", "/actions", "{\"action_type\":\"InstanceStart\"}", NULL, 0),
                     204);
    assert_int_equal(req(sock, "PATCH", "/vm", "{\"state\":\"Paused\"}", NULL, 0), 204);
    assert_int_equal(req(sock, "GET", "/", NULL, body, sizeof(body)), 200);
    assert_non_null(strstr(body, "\"state\":\"Paused\""));
    assert_int_equal(req(sock, "PATCH", "/vm", "{\"state\":\"Resumed\"}", NULL, 0), 204);
    assert_int_equal(req(sock, "PUT", "/machine-config", "{\"vcpu_count\":2,\"mem_size_mib\":256}",
                         NULL, 0), 400);
    assert_int_equal(req(sock, "PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}", NULL, 0),
                     204);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    sup_rmrf(dir);
    free(dir);
    free(bin);
}

/* One Firecracker process under test: spawned, its API up. */
static pid_t fc_spawn(const char *bin, char *sock)
{
    char *argv[] = { (char *)bin, (char *)"--firecracker", (char *)"--api-sock", sock, NULL };
    pid_t pid = sup_spawn(argv);

    assert_int_equal(sup_wait_socket(sock, 60000), 0);
    return pid;
}

static void expect_fault(const char *sock, const char *method, const char *path,
                         const char *json, const char *want)
{
    char body[4096];

    assert_int_equal(req(sock, method, path, json, body, sizeof(body)), 400);
    if (!strstr(body, want))
        fail_msg("%s %s: %s (want %s)", method, path, body, want);
}

/* Firecracker's snapshot rules: create only after boot and only while
 * paused; load only on a fresh process given no boot configuration, with
 * exactly one of mem_backend and mem_file_path; a failed load ends the
 * process; a loaded VM is Paused, its drives patchable. */
static void test_firecracker_snapshot(void **state)
{
    char *dir = sup_tmpdir(), *bin = sup_build_path("chsim");
    char sock[256], disk[256], copy[256], snap[256], mem[256], body[4096], js[2048];
    pid_t pid;
    int st;

    (void)state;
    snprintf(sock, sizeof(sock), "%s/fc.sock", dir);
    snprintf(disk, sizeof(disk), "%s/disk.img", dir);
    snprintf(copy, sizeof(copy), "%s/copy.img", dir);
    snprintf(snap, sizeof(snap), "%s/vmstate", dir);
    snprintf(mem, sizeof(mem), "%s/memory", dir);
    fclose(fopen(disk, "w"));
    fclose(fopen(copy, "w"));
    pid = fc_spawn(bin, sock);
    snprintf(js, sizeof(js), "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\"}", snap, mem);
    expect_fault(sock, "PUT", "/snapshot/create", js, "not supported before starting");
    assert_int_equal(req(sock, "PUT", "/boot-source", "{\"kernel_image_path\":\"/dev/null\"}",
                         NULL, 0), 204);
    snprintf(body, sizeof(body), "{\"drive_id\":\"rootfs\",\"path_on_host\":\"%s\","
             "\"is_root_device\":true,\"is_read_only\":false}", disk);
    assert_int_equal(req(sock, "PUT", "/drives/rootfs", body, NULL, 0), 204);
    expect_fault(sock, "PATCH", "/drives/rootfs", "{\"drive_id\":\"rootfs\"}",
                 "not supported before starting");
    assert_int_equal(req(sock, "PUT", "/actions", "{\"action_type\":\"InstanceStart\"}", NULL, 0),
                     204);
    expect_fault(sock, "PUT", "/snapshot/load", js, "not supported after starting");
    expect_fault(sock, "PUT", "/snapshot/create", js, "save/restore unavailable while running");
    assert_int_equal(req(sock, "PATCH", "/vm", "{\"state\":\"Paused\"}", NULL, 0), 204);
    expect_fault(sock, "PUT", "/snapshot/create", "{\"snapshot_path\":\"/x\"}",
                 "missing field `mem_file_path`");
    expect_fault(sock, "PUT", "/snapshot/create",
                 "{\"snapshot_path\":\"/nonexistent/dir/s\",\"mem_file_path\":\"/nonexistent/m\"}",
                 "Cannot perform open on the snapshot backing file: No such file or directory");
    assert_int_equal(req(sock, "PUT", "/snapshot/create", js, NULL, 0), 204);
    assert_int_equal(access(snap, F_OK), 0);
    assert_int_equal(access(mem, F_OK), 0);
    assert_int_equal(req(sock, "PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}", NULL, 0),
                     204);
    assert_int_equal(waitpid(pid, &st, 0), pid);

    /* Boot configuration first: no load. */
    pid = fc_spawn(bin, sock);
    assert_int_equal(req(sock, "PUT", "/machine-config", "{\"vcpu_count\":1,\"mem_size_mib\":128}",
                         NULL, 0), 204);
    expect_fault(sock, "PUT", "/snapshot/load", js, "not allowed after configuring boot-specific");
    sup_kill(pid);

    pid = fc_spawn(bin, sock);
    snprintf(js, sizeof(js), "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\","
             "\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"%s\"}}", snap, mem, mem);
    expect_fault(sock, "PUT", "/snapshot/load", js, "too many fields");
    snprintf(js, sizeof(js), "{\"snapshot_path\":\"%s\"}", snap);
    expect_fault(sock, "PUT", "/snapshot/load", js, "either `mem_backend` or `mem_file_path`");
    snprintf(js, sizeof(js), "{\"snapshot_path\":\"%s\",\"mem_backend\":{\"backend_type\":"
             "\"File\",\"backend_path\":\"%s\"},\"resume_vm\":false}", snap, mem);
    assert_int_equal(req(sock, "PUT", "/snapshot/load", js, NULL, 0), 204);
    assert_int_equal(req(sock, "GET", "/", NULL, body, sizeof(body)), 200);
    assert_non_null(strstr(body, "\"state\":\"Paused\""));
    snprintf(js, sizeof(js), "{\"drive_id\":\"rootfs\",\"path_on_host\":\"%s\"}", copy);
    assert_int_equal(req(sock, "PATCH", "/drives/rootfs", js, NULL, 0), 204);
    expect_fault(sock, "PATCH", "/drives/other", "{\"drive_id\":\"other\"}", "Device not found");
    assert_int_equal(req(sock, "GET", "/vm/config", NULL, body, sizeof(body)), 200);
    assert_non_null(strstr(body, copy));
    sup_kill(pid);

    /* A load that fails leaves Firecracker unusable: it exits. */
    pid = fc_spawn(bin, sock);
    snprintf(js, sizeof(js), "{\"snapshot_path\":\"%s/none\",\"mem_backend\":{\"backend_type\":"
             "\"File\",\"backend_path\":\"%s\"}}", dir, mem);
    expect_fault(sock, "PUT", "/snapshot/load", js, "Failed to open snapshot file");
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    sup_rmrf(dir);
    free(dir);
    free(bin);
}

/* A socket path that does not fit sun_path: CH fails to start, so chsim
 * must exit with an error too, not serve at a cut path. */
static void test_socket_path_too_long(void **state)
{
    char *dir = sup_tmpdir(), *bin = sup_build_path("chsim"), *sock, *arg, *out = NULL,
         *err = NULL;
    char long_name[121];
    int rc;

    (void)state;
    memset(long_name, 'l', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    sock = sup_asprintf("%s/%s.sock", dir, long_name);
    arg = sup_asprintf("path=%s", sock);
    {
        char *argv[] = { bin, (char *)"--api-socket", arg, (char *)"--kernel",
                         (char *)"/dev/null", NULL };

        rc = sup_run(argv, NULL, &out, &err, 3000);
    }
    assert_int_equal(rc, 1);
    if (!strstr(err, ": File name too long"))
        fail_msg("stderr %s", err);
    free(out);
    free(err);
    free(arg);
    free(sock);
    sup_rmrf(dir);
    free(dir);
    free(bin);
}

/* vm.snapshot writes CH's three files into an existing directory of a
 * paused VM, never over an earlier snapshot; vm.restore reads them back in
 * a VMM without a VM, which comes up Paused with the same config (shared
 * memory, hot-added devices) unless the body asks to resume. */
static void test_snapshot_restore(void **state)
{
    static const char *const mem[] = { "--memory", "size=1G,shared=on,hugepages=on", NULL };
    char body[16384], json[600], *snap, *p;
    struct fx a, b;
    struct stat st;

    (void)state;
    fx_start(&a, mem);
    snap = sup_asprintf("%s/snap", a.dir);
    assert_int_equal(mkdir(snap, 0700), 0);
    snprintf(json, sizeof(json), "{\"destination_url\":\"file://%s\"}", snap);
    assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.snapshot", json, body, sizeof(body)), 500);
    assert_string_equal(body, "[\"Error from API\",\"The VM could not be snapshotted\","
                        "\"Cannot snapshot VM\",\"Failed to snapshot migratable component\","
                        "\"Trying to snapshot while VM is running\"]");
    assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.pause", NULL, body, sizeof(body)), 204);
    snprintf(json, sizeof(json), "{\"destination_url\":\"file://%s/nope\"}", snap);
    assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.snapshot", json, body, sizeof(body)), 500);
    p = sup_asprintf("[\"Error from API\",\"The VM could not be snapshotted\",\"Cannot send VM "
                     "snapshot\",\"Failed to send migratable component snapshot\",\"Destination "
                     "is not a directory: \\\"%s/nope\\\"\"]", snap);
    assert_string_equal(body, p);
    free(p);
    snprintf(json, sizeof(json), "{\"destination_url\":\"file://%s\"}", snap);
    assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.snapshot", json, body, sizeof(body)), 204);
    for (int i = 0; i < 3; i++) {
        static const char *const files[] = { "config.json", "state.json", "memory-ranges" };
        p = sup_asprintf("%s/%s", snap, files[i]);
        assert_int_equal(stat(p, &st), 0);
        assert_true(st.st_size > 0);
        free(p);
    }
    assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.snapshot", json, body, sizeof(body)), 500);
    assert_non_null(strstr(body, "\"Error creating VM config snapshot file\",\"File exists"));
    /* A VMM with a VM refuses a restore. */
    snprintf(json, sizeof(json), "{\"source_url\":\"file://%s\"}", snap);
    assert_int_equal(req(a.sock, "PUT", "/api/v1/vm.restore", json, body, sizeof(body)), 500);
    assert_string_equal(body, "[\"Error from API\",\"The VM could not be restored\","
                        "\"VM is already created\"]");

    fx_start_novm(&b, NULL);
    assert_int_equal(req(b.sock, "PUT", "/api/v1/vm.restore", "{}", body, sizeof(body)), 400);
    assert_non_null(strstr(body, "missing field `source_url`"));
    snprintf(json, sizeof(json), "{\"source_url\":\"file://%s\"}", b.dir);
    assert_int_equal(req(b.sock, "PUT", "/api/v1/vm.restore", json, body, sizeof(body)), 500);
    assert_non_null(strstr(body, "\"Failed to receive migratable component snapshot\","
                           "\"Error opening VM config snapshot file"));
    snprintf(json, sizeof(json), "{\"source_url\":\"file://%s\"}", snap);
    assert_int_equal(req(b.sock, "PUT", "/api/v1/vm.restore", json, body, sizeof(body)), 204);
    assert_int_equal(req(b.sock, "GET", "/api/v1/vm.info", NULL, body, sizeof(body)), 200);
    assert_non_null(strstr(body, "\"state\":\"Paused\""));
    assert_non_null(strstr(body, "\"shared\":true,\"hugepages\":true"));
    assert_int_equal(req(b.sock, "PUT", "/api/v1/vm.resume", NULL, body, sizeof(body)), 204);
    assert_int_equal(req(b.sock, "GET", "/api/v1/vm.info", NULL, body, sizeof(body)), 200);
    assert_non_null(strstr(body, "\"state\":\"Running\""));
    assert_int_equal(req(b.sock, "PUT", "/api/v1/vm.restore", json, body, sizeof(body)), 500);
    fx_stop(&b);
    free(snap);
    fx_stop(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing_200_204_404),
        cmocka_unit_test(test_vmm_shutdown_exits),
        cmocka_unit_test(test_eleventh_connection),
        cmocka_unit_test(test_keepalive_after_errors_and_http10),
        cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_status_table),
        cmocka_unit_test(test_cold_then_hot_add_and_auto_ids),
        cmocka_unit_test(test_realistic_vm_info),
        cmocka_unit_test(test_eject_window),
        cmocka_unit_test(test_eject_delay),
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_fault_close_before_reply),
        cmocka_unit_test(test_fault_cli_http10_and_plain),
        cmocka_unit_test(test_serialization),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_fault_hold),
        cmocka_unit_test(test_fault_die_after_reply_and_handover),
        cmocka_unit_test(test_fleet),
        cmocka_unit_test(test_firecracker),
        cmocka_unit_test(test_firecracker_snapshot),
        cmocka_unit_test(test_socket_path_too_long),
        cmocka_unit_test(test_snapshot_restore),
    };

    signal(SIGPIPE, SIG_IGN);
    /* A handover's successor outlives its parent chsim: it must become
     * this process's child, to be stopped and reaped. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
        perror("prctl(PR_SET_CHILD_SUBREAPER)");
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
