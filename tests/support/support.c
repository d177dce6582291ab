/* tests/support/support.c: test-only helpers (see support.h).  Failures
 * abort the calling test through the return values; nothing here knows
 * cmocka so every test binary can link it. */
#include "tests/support/support.h"
#include "http/loop.h"
#include <ev.h>
#include "http/base.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

long long sup_now_ms(void)
{
    return (long long)(base_mono_ns() / 1000000);
}

long long sup_now_us(void)
{
    return (long long)(base_mono_ns() / 1000);
}

char *sup_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *p = NULL;
    int r;

    va_start(ap, fmt);
    r = vasprintf(&p, fmt, ap);
    va_end(ap);
    if (r < 0)
        abort();
    return p;
}

int sup_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;

    if (!d)
        return -1;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void sup_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

bool sup_env_on(const char *name)
{
    const char *v = getenv(name);

    return v && *v && strcmp(v, "0") != 0;
}

const char *sup_first_pci(char *buf, size_t n)
{
    DIR *d = opendir("/sys/bus/pci/devices");
    struct dirent *de;
    const char *out = NULL;

    buf[0] = '\0';
    if (!d)
        return NULL;
    while (!out && (de = readdir(d)))
        if (de->d_name[0] != '.') {
            snprintf(buf, n, "/sys/bus/pci/devices/%s", de->d_name);
            out = buf;
        }
    closedir(d);
    return out;
}

char *sup_build_path(const char *name)
{
    const char *d = getenv("COCOON_BUILD_DIR");

    return sup_asprintf("%s/%s", d && *d ? d : "build", name);
}

char *sup_tmpdir(void)
{
    char *p = strdup("/tmp/cocoon-test-XXXXXX");

    if (p && !mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

static int sup_rm_one(const char *path, const struct stat *st, int flag,
                      struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

void sup_rmrf(const char *path)
{
    if (path)
        nftw(path, sup_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

pid_t sup_spawn(char *const argv[])
{
    pid_t pid = fork();

    if (pid == 0) {
        if (!getenv("SUP_VERBOSE")) {
            int fd = open("/dev/null", O_RDWR);

            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                if (fd > 2)
                    close(fd);
            }
        }
        /* A test runner may have blocked or ignored signals; the child
         * must die on SIGTERM like a normal process. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

int sup_kill(pid_t pid)
{
    int status = 0;
    long long deadline;

    if (pid <= 0)
        return -1;
    kill(pid, SIGTERM);
    deadline = sup_now_ms() + 2000;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);

        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -1;
        if (sup_now_ms() >= deadline)
            break;
        sup_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return status;
}

static int sup_connect(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -1;
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

pid_t sup_listener_pid(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct ucred cr;
    socklen_t crl = sizeof(cr);
    pid_t pid = 0;
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path) ||
        (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return -1;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) == 0)
        pid = cr.pid;
    close(fd);
    return pid;
}

int sup_unix_bind(const char *path, bool do_listen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || strlen(path) >= sizeof(sa.sun_path))
        abort();
    strcpy(sa.sun_path, path);
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || (do_listen && listen(fd, 16) < 0))
        abort();
    return fd;
}

int sup_wait_socket(const char *path, int timeout_ms)
{
    long long deadline = sup_now_ms() + timeout_ms;

    for (;;) {
        int fd = sup_connect(path);

        if (fd >= 0) {
            close(fd);
            return 0;
        }
        if (sup_now_ms() >= deadline)
            return -1;
        sup_sleep_ms(10);
    }
}

pid_t sup_chsim_start(const char *sock, const char *const extra[])
{
    char *bin = sup_build_path("chsim");
    size_t nextra = 0, n = 0;
    char **argv;
    char *sockarg;
    pid_t pid;

    if (!bin)
        return -1;
    while (extra && extra[nextra])
        nextra++;
    argv = calloc(nextra + 6, sizeof(*argv));
    sockarg = malloc(strlen(sock) + 6);
    if (!argv || !sockarg) {
        free(argv);
        free(sockarg);
        free(bin);
        return -1;
    }
    sprintf(sockarg, "path=%s", sock);
    argv[n++] = bin;
    argv[n++] = (char *)"--api-socket";
    argv[n++] = sockarg;
    argv[n++] = (char *)"--kernel";
    argv[n++] = (char *)"/dev/null";
    for (size_t i = 0; i < nextra; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    unlink(sock);
    pid = sup_spawn(argv);
    free(argv);
    free(sockarg);
    free(bin);
    if (pid < 0)
        return -1;
    if (sup_wait_socket(sock, 5000) < 0) {
        sup_kill(pid);
        return -1;
    }
    return pid;
}

static int sup_send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

ssize_t sup_raw_exchange(const char *sock, const char *req, size_t req_len,
                         char *resp, size_t resp_size, int timeout_ms)
{
    long long deadline = sup_now_ms() + timeout_ms;
    size_t got = 0;
    int fd;

    if (!resp || resp_size == 0)
        return -1;
    resp[0] = '\0';
    fd = sup_connect(sock);
    if (fd < 0)
        return -1;
    /* A peer that answers at accept and closes (the 503 of the connection
     * cap) makes the send fail with EPIPE; its reply is still readable. */
    if (sup_send_all(fd, req, req_len) < 0 && errno != EPIPE && errno != ECONNRESET) {
        close(fd);
        return -1;
    }
    while (got + 1 < resp_size) {
        long long left = deadline - sup_now_ms();
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int pr;
        ssize_t r;

        if (left <= 0)
            break;
        pr = poll(&pfd, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        r = recv(fd, resp + got, resp_size - 1 - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    resp[got] = '\0';
    close(fd);
    return (ssize_t)got;
}

/* The stats reply is one HTTP response on a kept-alive connection, so read
 * until Content-Length bytes of body are in rather than waiting for EOF. */
int sup_chsim_count(const char *sock, const char *endpoint)
{
    static const char req[] = "GET /chsim/stats HTTP/1.1\r\nHost: localhost\r\n\r\n";
    char buf[8192], key[256];
    size_t got = 0;
    long long deadline = sup_now_ms() + 5000;
    const char *body = NULL, *p;
    long clen = -1;
    int fd = sup_connect(sock);

    if (fd < 0)
        return -1;
    if (sup_send_all(fd, req, sizeof(req) - 1) < 0) {
        close(fd);
        return -1;
    }
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        long long left = deadline - sup_now_ms();
        ssize_t r;

        buf[got] = '\0';
        if (!body && (p = strstr(buf, "\r\n\r\n"))) {
            const char *cl = strstr(buf, "Content-Length: ");

            body = p + 4;
            if (cl && cl < p)
                clen = strtol(cl + 16, NULL, 10);
        }
        if (body && clen >= 0 && (size_t)(buf + got - body) >= (size_t)clen)
            break;
        if (left <= 0 || got + 1 >= sizeof(buf))
            break;
        if (poll(&pfd, 1, (int)left) <= 0)
            break;
        r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!body || strncmp(buf, "HTTP/1.1 200 ", 13) != 0)
        return -1;
    snprintf(key, sizeof(key), "\"%s\":", endpoint);
    p = strstr(body, key);
    if (!p)
        return 0;
    return (int)strtol(p + strlen(key), NULL, 10);
}

/* chsim keeps the connection open, so the exchange ends at its timeout. */
int sup_chsim_fault(const char *sock, const char *endpoint, const char *mode, int count)
{
    char body[256], req[512], resp[1024];
    int bl = snprintf(body, sizeof(body), "{\"endpoint\":\"%s\",\"mode\":\"%s\",\"count\":%d}",
                      endpoint, mode, count);
    int rl = snprintf(req, sizeof(req),
                      "PUT /chsim/fault HTTP/1.1\r\nHost: localhost\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                      bl, body);

    if (sup_raw_exchange(sock, req, (size_t)rl, resp, sizeof(resp), 300) <= 0)
        return -1;
    return strstr(resp, "HTTP/1.1 20") ? 0 : -1;
}

/* One captured output stream of sup_run. */
struct sup_sink {
    int fd;
    char *buf;                  /* NULL once an allocation failed */
    size_t len, cap;
};

/* Reads what is there; closes the stream at EOF or on an error. */
static void sup_sink_read(struct sup_sink *k)
{
    char tmp[4096];
    ssize_t r = read(k->fd, tmp, sizeof(tmp));

    if (r <= 0) {
        if (r == 0 || errno != EINTR) {
            close(k->fd);
            k->fd = -1;
        }
        return;
    }
    if (!k->buf)
        return;
    if (k->len + (size_t)r + 1 > k->cap) {
        size_t nc = k->cap;
        char *nb;

        while (k->len + (size_t)r + 1 > nc)
            nc *= 2;
        nb = realloc(k->buf, nc);
        if (!nb) {
            free(k->buf);
            k->buf = NULL;
            return;
        }
        k->buf = nb;
        k->cap = nc;
    }
    memcpy(k->buf + k->len, tmp, (size_t)r);
    k->len += (size_t)r;
    k->buf[k->len] = '\0';
}

int sup_run(char *const argv[], const char *stdin_data, char **out, char **err,
            int timeout_ms)
{
    int pfds[3][2] = { { -1, -1 }, { -1, -1 }, { -1, -1 } };    /* stdin, stdout, stderr */
    struct sup_sink sink[2] = { { -1, calloc(1, 256), 0, 256 }, { -1, calloc(1, 256), 0, 256 } };
    size_t in_len = stdin_data ? strlen(stdin_data) : 0, in_off = 0;
    long long deadline = sup_now_ms() + timeout_ms;
    int status = 0, killed = 0, in_fd;
    pid_t pid = -1;

    if (out)
        *out = NULL;
    if (err)
        *err = NULL;
    for (int k = 0; k < 3; k++)
        if (pipe2(pfds[k], O_CLOEXEC) < 0)
            goto fail;
    if (!sink[0].buf || !sink[1].buf || (pid = fork()) < 0)
        goto fail;
    if (pid == 0) {
        sigset_t none;

        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        dup2(pfds[0][0], 0);
        dup2(pfds[1][1], 1);
        dup2(pfds[2][1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(pfds[0][0]);
    close(pfds[1][1]);
    close(pfds[2][1]);
    in_fd = pfds[0][1];
    sink[0].fd = pfds[1][0];
    sink[1].fd = pfds[2][0];
    if (in_len == 0) {
        close(in_fd);
        in_fd = -1;
    } else {
        fcntl(in_fd, F_SETFL, O_NONBLOCK);
    }
    while (sink[0].fd >= 0 || sink[1].fd >= 0) {
        struct pollfd pfd[3];
        int nfd = 0, who[3];    /* sink index, or 2 for stdin */
        long long left = deadline - sup_now_ms();

        if (left <= 0) {
            kill(pid, SIGKILL);
            killed = 1;
            break;
        }
        for (int k = 0; k < 2; k++)
            if (sink[k].fd >= 0) {
                who[nfd] = k;
                pfd[nfd++] = (struct pollfd){ .fd = sink[k].fd, .events = POLLIN };
            }
        if (in_fd >= 0) {
            who[nfd] = 2;
            pfd[nfd++] = (struct pollfd){ .fd = in_fd, .events = POLLOUT };
        }
        if (poll(pfd, (nfds_t)nfd, (int)left) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < nfd; i++) {
            ssize_t w;

            if (!pfd[i].revents)
                continue;
            if (who[i] < 2) {
                sup_sink_read(&sink[who[i]]);
                continue;
            }
            w = write(in_fd, stdin_data + in_off, in_len - in_off);
            if (w > 0)
                in_off += (size_t)w;
            if ((w < 0 && errno != EAGAIN && errno != EINTR) || in_off == in_len) {
                close(in_fd);
                in_fd = -1;
            }
        }
    }
    if (in_fd >= 0)
        close(in_fd);
    for (int k = 0; k < 2; k++)
        if (sink[k].fd >= 0)
            close(sink[k].fd);
    if (!killed) {
        /* Output closed; give the child until the deadline to exit. */
        for (;;) {
            pid_t r = waitpid(pid, &status, WNOHANG);

            if (r == pid)
                break;
            if (r < 0 && errno != EINTR) {
                free(sink[0].buf);
                free(sink[1].buf);
                return -1;
            }
            if (sup_now_ms() >= deadline) {
                kill(pid, SIGKILL);
                killed = 1;
                break;
            }
            sup_sleep_ms(5);
        }
    }
    if (killed)
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    if (out)
        *out = sink[0].buf;
    else
        free(sink[0].buf);
    if (err)
        *err = sink[1].buf;
    else
        free(sink[1].buf);
    if (!sink[0].buf && out)
        return -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;

fail:
    for (int k = 0; k < 3; k++)
        for (int e = 0; e < 2; e++)
            if (pfds[k][e] >= 0)
                close(pfds[k][e]);
    free(sink[0].buf);
    free(sink[1].buf);
    return -1;
}

struct sup_lpev {
    struct ev_loop *ev;
    lp_loop *l;
    ev_io io;
    ev_timer tm;
    ev_prepare prep;
};

static void sup_lpev_io_cb(struct ev_loop *ev, ev_io *w, int revents)
{
    sup_lpev *b = w->data;

    (void)ev;
    (void)revents;
    lp_process(b->l);
}

static void sup_lpev_tm_cb(struct ev_loop *ev, ev_timer *w, int revents)
{
    sup_lpev *b = w->data;

    (void)ev;
    (void)revents;
    lp_process(b->l);
}

static void sup_lpev_prep_cb(struct ev_loop *ev, ev_prepare *w, int revents)
{
    sup_lpev *b = w->data;
    int t = lp_timeout_ms(b->l);

    (void)revents;
    ev_timer_stop(ev, &b->tm);
    if (t >= 0) {
        ev_timer_set(&b->tm, t / 1000., 0.);
        ev_timer_start(ev, &b->tm);
    }
}

sup_lpev *sup_lpev_new(struct ev_loop *ev, lp_loop *l)
{
    sup_lpev *b = calloc(1, sizeof(*b));

    if (!b)
        abort();
    b->ev = ev;
    b->l = l;
    ev_io_init(&b->io, sup_lpev_io_cb, lp_fd(l), EV_READ);
    ev_timer_init(&b->tm, sup_lpev_tm_cb, 0., 0.);
    ev_prepare_init(&b->prep, sup_lpev_prep_cb);
    b->io.data = b->tm.data = b->prep.data = b;
    ev_io_start(ev, &b->io);
    ev_prepare_start(ev, &b->prep);
    /* The prepare watcher alone must not keep the loop running. */
    ev_unref(ev);
    return b;
}

void sup_lpev_free(sup_lpev *b)
{
    if (!b)
        return;
    ev_ref(b->ev);
    ev_prepare_stop(b->ev, &b->prep);
    ev_timer_stop(b->ev, &b->tm);
    ev_io_stop(b->ev, &b->io);
    free(b);
}
