/* bench/bench_floor.c: the practical lower bound.  One process, one epoll,
 * one connection per VM, all VMs at once; it sends the same request bytes
 * an attach needs (vm.info, then vm.add-fs; a detach: vm.info, then
 * vm.remove-device, the same work cocoon does) and reads each reply only
 * far enough to know where it ends.  The one check it makes is the status
 * digit, so that a failed operation cannot pass as a fast one. */
#include "bench/bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

typedef struct bench_fconn {
    int fd;
    int step;              /* requests answered so far in this phase */
    int in_body;
    long body_left;
    int status;
    size_t hlen;
    char hdr[512];
} bench_fconn;

typedef struct bench_floor {
    const char *dir;
    int ep;
    bench_fconn *c;
    unsigned n, pending;
    int detach;            /* 0 attach, 1 detach */
    double t0;
    bench_run *r;
    char info_req[256], rm_req[256];
    size_t info_len, rm_len;
} bench_floor;

static void bench_floor_fail(bench_floor *f, unsigned i, const char *what)
{
    if (!f->r->err[0])
        snprintf(f->r->err, sizeof f->r->err, "floor vm%u: %s", i, what);
    if (f->c[i].fd >= 0) {
        epoll_ctl(f->ep, EPOLL_CTL_DEL, f->c[i].fd, NULL);
        close(f->c[i].fd);
        f->c[i].fd = -1;
    }
    f->pending--;
}

static int bench_floor_send(bench_floor *f, unsigned i)
{
    bench_fconn *c = &f->c[i];
    char buf[768], vfs[256];
    const char *p;
    size_t len;

    if (c->step == 0) {
        p = f->info_req;
        len = f->info_len;
    } else if (f->detach) {
        p = f->rm_req;
        len = f->rm_len;
    } else {
        bench_vfs_path(vfs, sizeof vfs, f->dir, BENCH_SET_FLEET, i);
        len = (size_t)bench_req_add_fs(buf, sizeof buf, vfs);
        p = buf;
    }
    c->in_body = 0;
    c->hlen = 0;
    /* A fresh AF_UNIX socket buffer holds far more than one request. */
    if (send(c->fd, p, len, MSG_NOSIGNAL) != (ssize_t)len)
        return -1;
    return 0;
}

/* Returns 1 when a whole reply has arrived, 0 for more, -1 on garbage. */
static int bench_floor_feed(bench_fconn *c, const char *p, size_t n)
{
    while (n > 0) {
        if (!c->in_body) {
            size_t old = c->hlen, take = sizeof c->hdr - 1 - c->hlen, from, hend;
            char *e, *cl;

            if (take == 0)
                return -1;
            if (take > n)
                take = n;
            memcpy(c->hdr + c->hlen, p, take);
            c->hlen += take;
            c->hdr[c->hlen] = '\0';
            from = old > 3 ? old - 3 : 0;
            e = strstr(c->hdr + from, "\r\n\r\n");
            if (!e) {
                p += take;
                n -= take;
                continue;
            }
            hend = (size_t)(e - c->hdr) + 4;
            p += hend - old;
            n -= hend - old;
            c->status = atoi(c->hdr + 9);
            cl = strcasestr(c->hdr, "\r\nContent-Length:");
            c->body_left = cl ? strtol(cl + 17, NULL, 10) : 0;
            c->in_body = 1;
        }
        if (c->body_left > 0) {
            size_t k = (size_t)c->body_left < n ? (size_t)c->body_left : n;

            c->body_left -= (long)k;
            p += k;
            n -= k;
        }
        if (c->body_left == 0)
            return n == 0 ? 1 : -1;
    }
    return c->in_body && c->body_left == 0 ? 1 : 0;
}

static void bench_floor_readable(bench_floor *f, unsigned i)
{
    static char buf[65536];
    bench_fconn *c = &f->c[i];

    for (;;) {
        ssize_t k = recv(c->fd, buf, sizeof buf, 0);
        int st;

        if (k < 0 && errno == EAGAIN)
            return;
        if (k <= 0) {
            bench_floor_fail(f, i, "connection closed");
            return;
        }
        st = bench_floor_feed(c, buf, (size_t)k);
        if (st < 0) {
            bench_floor_fail(f, i, "unparsable reply");
            return;
        }
        if (st == 0)
            continue;
        if (c->status < 200 || c->status > 299) {
            char what[64];

            snprintf(what, sizeof what, "status %d", c->status);
            bench_floor_fail(f, i, what);
            return;
        }
        c->step++;
        if (c->step == 2) {
            if (f->detach) {
                f->r->detach_ok++;
            } else {
                f->r->lat_us[i] = bench_now_us() - f->t0;
                f->r->ok++;
            }
            f->pending--;
            return;
        }
        if (bench_floor_send(f, i) < 0) {
            bench_floor_fail(f, i, "send failed");
            return;
        }
    }
}

static void bench_floor_loop(bench_floor *f)
{
    struct epoll_event ev[256];

    while (f->pending > 0) {
        int k = epoll_wait(f->ep, ev, 256, 30000);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            snprintf(f->r->err, sizeof f->r->err, "floor: timed out with %u pending",
                     f->pending);
            return;
        }
        for (int j = 0; j < k; j++)
            bench_floor_readable(f, ev[j].data.u32);
    }
}

int bench_floor_batch(const char *dir, unsigned n, int detach, bench_run *r)
{
    bench_floor f = { .dir = dir, .n = n, .r = r, .detach = detach };
    double cpu0, t1;
    long hwm;

    f.c = calloc(n, sizeof *f.c);
    f.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!f.c || f.ep < 0) {
        free(f.c);
        return -1;
    }
    f.info_len = (size_t)bench_req_info(f.info_req, sizeof f.info_req);
    f.rm_len = (size_t)bench_req_remove(f.rm_req, sizeof f.rm_req);
    bench_self_rss(&r->rss0_kb, &hwm);
    r->inflight = n;
    cpu0 = bench_self_cpu_us();
    f.t0 = bench_now_us();
    f.pending = n;
    for (unsigned i = 0; i < n; i++) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
        bench_fconn *c = &f.c[i];

        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            bench_floor_fail(&f, i, "socket failed");
            continue;
        }
        bench_api_path(sa.sun_path, sizeof sa.sun_path, dir, BENCH_SET_FLEET, i);
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
            epoll_ctl(f.ep, EPOLL_CTL_ADD, c->fd, &ev) < 0 || bench_floor_send(&f, i) < 0)
            bench_floor_fail(&f, i, "connect or send failed");
    }
    bench_floor_loop(&f);
    t1 = bench_now_us();
    if (detach) {
        r->detach_wall_us = t1 - f.t0;
    } else {
        r->wall_us = t1 - f.t0;
        r->cpu_us = bench_self_cpu_us() - cpu0;
    }
    bench_self_rss(&hwm, &r->hwm_kb);
    for (unsigned i = 0; i < n; i++)
        if (f.c[i].fd >= 0)
            close(f.c[i].fd);
    close(f.ep);
    free(f.c);
    return 0;
}
