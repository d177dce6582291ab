/* bench/bench_util.c: clocks, resource usage, the peer result exchange and
 * chsim's counters. */
#include "bench/bench.h"
#include "http/base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

bench_set bench_peer_set(bench_peer p)
{
    return p >= BENCH_REC_LIB ? BENCH_SET_REC : BENCH_SET_FLEET;
}

void bench_rec_name(char *out, size_t n, unsigned i)
{
    snprintf(out, n, "rec%u", i);
}

void bench_rec_run_dir(char *out, size_t n, const char *dir, unsigned i)
{
    snprintf(out, n, "%s/rr/rec%u", dir, i);
}

void bench_root_dir(char *out, size_t n, const char *dir)
{
    snprintf(out, n, "%s/root", dir);
}

void bench_api_path(char *out, size_t n, const char *dir, bench_set s, unsigned i)
{
    if (s == BENCH_SET_REC)
        snprintf(out, n, "%s/rr/rec%u/api.sock", dir, i);
    else
        snprintf(out, n, "%s/vm%u.sock", dir, i);
}

void bench_vfs_path(char *out, size_t n, const char *dir, bench_set s, unsigned i)
{
    if (s == BENCH_SET_REC)
        snprintf(out, n, "%s/rr/rec%u/api.sock.vfs", dir, i);
    else
        snprintf(out, n, "%s/vfs/vm%u.sock", dir, i);
}

double bench_now_us(void)
{
    return base_mono_ns() / 1e3;
}

double bench_self_cpu_us(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

void bench_self_rss(long *rss_kb, long *hwm_kb)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");

    *rss_kb = 0;
    *hwm_kb = 0;
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6))
            *rss_kb = strtol(line + 6, NULL, 10);
        else if (!strncmp(line, "VmHWM:", 6))
            *hwm_kb = strtol(line + 6, NULL, 10);
    }
    fclose(f);
}

double bench_pid_cpu_us(pid_t pid)
{
    char path[64];
    unsigned long long ns = 0;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%ld/schedstat", (long)pid);
    f = fopen(path, "r");
    if (!f)
        return 0;
    if (fscanf(f, "%llu", &ns) != 1)
        ns = 0;
    fclose(f);
    return (double)ns / 1e3;
}

int bench_run_init(bench_run *r, unsigned n)
{
    memset(r, 0, sizeof *r);
    r->n = n;
    r->lat_us = calloc(n ? n : 1, sizeof *r->lat_us);
    return r->lat_us ? 0 : -1;
}

void bench_run_fini(bench_run *r)
{
    free(r->lat_us);
    r->lat_us = NULL;
}

void bench_run_write(FILE *f, const bench_run *r)
{
    fprintf(f, "run %u %u %u %u %.1f %.1f %.1f %ld %ld\n", r->n, r->ok, r->detach_ok,
            r->inflight, r->wall_us, r->cpu_us, r->detach_wall_us, r->rss0_kb, r->hwm_kb);
    fprintf(f, "err %s\n", r->err);
    for (unsigned i = 0; i < r->n; i++)
        fprintf(f, "%.1f\n", r->lat_us[i]);
    fflush(f);
}

int bench_run_read(FILE *f, bench_run *r)
{
    unsigned n, ok, dok, inflight;
    double wall, cpu, dwall;
    long rss0, hwm;
    char line[BENCH_ERR_MAX + 16];

    if (fscanf(f, "run %u %u %u %u %lf %lf %lf %ld %ld\n", &n, &ok, &dok, &inflight,
               &wall, &cpu, &dwall, &rss0, &hwm) != 9)
        return -1;
    if (bench_run_init(r, n) < 0)
        return -1;
    r->ok = ok;
    r->detach_ok = dok;
    r->inflight = inflight;
    r->wall_us = wall;
    r->cpu_us = cpu;
    r->detach_wall_us = dwall;
    r->rss0_kb = rss0;
    r->hwm_kb = hwm;
    if (!fgets(line, sizeof line, f) || strncmp(line, "err ", 4))
        return -1;
    line[strcspn(line, "\n")] = '\0';
    snprintf(r->err, sizeof r->err, "%.500s", line + 4);
    for (unsigned i = 0; i < n; i++)
        if (fscanf(f, "%lf", &r->lat_us[i]) != 1)
            return -1;
    return 0;
}

int bench_req_info(char *buf, size_t n)
{
    return snprintf(buf, n, "GET /api/v1/vm.info HTTP/1.1\r\nHost: localhost\r\n"
                            "Accept: application/json\r\n\r\n");
}

static int bench_req_put(char *buf, size_t n, const char *endpoint, const char *body)
{
    return snprintf(buf, n,
                    "PUT /api/v1/%s HTTP/1.1\r\nHost: localhost\r\n"
                    "Accept: application/json\r\nContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\n\r\n%s",
                    endpoint, strlen(body), body);
}

int bench_req_add_fs(char *buf, size_t n, const char *vfs_sock)
{
    char body[512];

    snprintf(body, sizeof body,
             "{\"id\":\"%s\",\"tag\":\"%s\",\"socket\":\"%s\","
             "\"num_queues\":1,\"queue_size\":1024}",
             BENCH_DEVICE_ID, BENCH_TAG, vfs_sock);
    return bench_req_put(buf, n, "vm.add-fs", body);
}

int bench_req_remove(char *buf, size_t n)
{
    return bench_req_put(buf, n, "vm.remove-device", "{\"id\":\"" BENCH_DEVICE_ID "\"}");
}

int bench_proc_run(char *const *argv, bench_proc *p)
{
    int pfd[2];
    size_t cap = 65536;
    struct rusage ru;
    double t0;
    pid_t pid;

    memset(p, 0, sizeof *p);
    p->out = malloc(cap);
    if (!p->out || pipe2(pfd, O_CLOEXEC) < 0)
        return -1;
    t0 = bench_now_us();
    pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(pfd[1]);
    for (;;) {
        ssize_t k;

        if (p->out_len + 4096 > cap) {
            char *n = realloc(p->out, cap * 2);

            if (!n)
                break;
            p->out = n;
            cap *= 2;
        }
        k = read(pfd[0], p->out + p->out_len, cap - p->out_len - 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        p->out_len += (size_t)k;
    }
    p->out[p->out_len] = '\0';
    close(pfd[0]);
    while (wait4(pid, &p->status, 0, &ru) < 0 && errno == EINTR)
        ;
    p->wall_us = bench_now_us() - t0;
    p->cpu_us = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
                (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    p->maxrss_kb = ru.ru_maxrss;
    return 0;
}

/* One blocking round trip; the reply is read until Content-Length is
 * satisfied because chsim, like CH, keeps the connection open. */
static int bench_get(const char *sock, const char *req, char *resp, size_t size)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t len = 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%.107s", sock);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        send(fd, req, strlen(req), MSG_NOSIGNAL) < 0) {
        close(fd);
        return -1;
    }
    for (;;) {
        ssize_t k = recv(fd, resp + len, size - 1 - len, 0);
        char *end;

        if (k <= 0)
            break;
        len += (size_t)k;
        resp[len] = '\0';
        end = strstr(resp, "\r\n\r\n");
        if (end) {
            char *cl = strcasestr(resp, "\r\nContent-Length:");
            size_t want = (size_t)(end + 4 - resp) + (cl ? strtoul(cl + 17, NULL, 10) : 0);

            if (len >= want)
                break;
        }
        if (len + 1 >= size)
            break;
    }
    close(fd);
    return (int)len;
}

/* The stats body is a flat object of endpoint name to count; a scan for
 * "name":number pairs is enough and keeps this free of a JSON dependency. */
static void bench_counts_add(bench_counts *c, const char *body)
{
    const char *p = body;

    while ((p = strchr(p, '"'))) {
        const char *q = strchr(p + 1, '"');
        char key[64];
        long v;

        if (!q)
            break;
        snprintf(key, sizeof key, "%.*s", (int)(q - p - 1), p + 1);
        p = q + 1;
        while (*p == ' ' || *p == ':')
            p++;
        if (*p < '0' || *p > '9')
            continue;
        v = strtol(p, (char **)&p, 10);
        if (!strcmp(key, "vm.info"))
            c->info += v;
        else if (!strcmp(key, "vm.add-fs"))
            c->add_fs += v;
        else if (!strcmp(key, "vm.remove-device"))
            c->remove += v;
        else if (strncmp(key, "chsim", 5) && strcmp(key, "ejects"))
            c->other += v;   /* "ejects" counts guest acknowledgements */
    }
}

int bench_counts_get(const char *dir, bench_set s, unsigned n, bench_counts *c, char *err,
                     size_t errlen)
{
    static const char req[] = "GET /chsim/stats HTTP/1.1\r\nHost: localhost\r\n\r\n";
    char sock[256], resp[8192];

    memset(c, 0, sizeof *c);
    for (unsigned i = 0; i < n; i++) {
        char *body;
        int k;

        bench_api_path(sock, sizeof sock, dir, s, i);
        k = bench_get(sock, req, resp, sizeof resp);
        body = k > 0 ? strstr(resp, "\r\n\r\n") : NULL;
        if (!body || strncmp(resp, "HTTP/1.1 200", 12)) {
            snprintf(err, errlen, "GET /chsim/stats on %s failed", sock);
            return -1;
        }
        bench_counts_add(c, body + 4);
    }
    return 0;
}
