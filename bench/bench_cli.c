/* bench/bench_cli.c: the cocoon CLI peer.  One `cocoon -o json vm fs
 * attach` process for the whole batch and one `detach` process to reset;
 * the wall time includes process start and exit, CPU and peak RSS come
 * from wait4.  Per-attach latency is the CLI's own latency_ms (submit to
 * callback inside the process). */
#include "bench/bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct bench_proc {
    double wall_us, cpu_us;
    long maxrss_kb;
    int status;
    char *out;
    size_t out_len;
} bench_proc;

static int bench_proc_run(char **argv, bench_proc *p)
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
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int dn = open("/dev/null", O_WRONLY);

        dup2(pfd[1], 1);
        if (dn >= 0)
            dup2(dn, 2);
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

/* Counts "ok":true per VM from the JSON lines and picks up latency_ms.
 * Returns the number of successful operations. */
static unsigned bench_cli_scan(const char *out, unsigned n, bench_run *r, int detach)
{
    unsigned ok = 0;
    const char *line = out;

    while (line && *line) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char buf[2048];
        const char *vm, *lat;

        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        line = nl ? nl + 1 : NULL;
        vm = strstr(buf, "\"vm\":\"");
        if (!vm || !strstr(buf, "\"op\":"))
            continue;
        if (!strstr(buf, "\"ok\":true")) {
            if (!r->err[0])
                snprintf(r->err, sizeof r->err, "cocoon %s: %.400s",
                         detach ? "detach" : "attach", buf);
            continue;
        }
        ok++;
        if (detach)
            continue;
        vm = strstr(vm, "/vm");
        while (vm && strstr(vm + 1, "/vm"))
            vm = strstr(vm + 1, "/vm");
        lat = strstr(buf, "\"latency_ms\":");
        if (vm && lat) {
            unsigned i = (unsigned)strtoul(vm + 3, NULL, 10);

            if (i < n)
                r->lat_us[i] = strtod(lat + 13, NULL) * 1000.0;
        }
    }
    return ok;
}

int bench_cli_batch(const char *cocoon, const char *dir, unsigned n, bench_run *r)
{
    char root[256], tmpl[256], par[16];
    char **argv = calloc((size_t)n + 20, sizeof *argv);
    char *paths = malloc((size_t)n * 256);
    bench_proc p;
    int k = 0, fixed;

    if (!argv || !paths) {
        free(argv);
        free(paths);
        return -1;
    }
    snprintf(root, sizeof root, "%s/root", dir);
    snprintf(tmpl, sizeof tmpl, "%s/vfs/{name}.sock", dir);
    snprintf(par, sizeof par, "%u", n);
    argv[k++] = (char *)cocoon;
    argv[k++] = (char *)"--root-dir";
    argv[k++] = root;
    argv[k++] = (char *)"-o";
    argv[k++] = (char *)"json";
    argv[k++] = (char *)"vm";
    argv[k++] = (char *)"fs";
    fixed = k;
    argv[k++] = (char *)"attach";
    for (unsigned i = 0; i < n; i++) {
        bench_api_path(paths + (size_t)i * 256, 256, dir, i);
        argv[k++] = paths + (size_t)i * 256;
    }
    argv[k++] = (char *)"--socket";
    argv[k++] = tmpl;
    argv[k++] = (char *)"--tag";
    argv[k++] = (char *)BENCH_TAG;
    argv[k++] = (char *)"--parallel";
    argv[k++] = par;
    argv[k] = NULL;

    r->inflight = n;
    if (bench_proc_run(argv, &p) < 0) {
        free(p.out);
        free(argv);
        free(paths);
        return -1;
    }
    r->wall_us = p.wall_us;
    r->cpu_us = p.cpu_us;
    r->hwm_kb = p.maxrss_kb;
    r->ok = bench_cli_scan(p.out, n, r, 0);
    if (p.status != 0 && !r->err[0])
        snprintf(r->err, sizeof r->err, "cocoon attach exited with status %d",
                 WIFEXITED(p.status) ? WEXITSTATUS(p.status) : -1);
    free(p.out);

    k = fixed;
    argv[k++] = (char *)"detach";
    k += (int)n;
    argv[k++] = (char *)"--tag";
    argv[k++] = (char *)BENCH_TAG;
    argv[k++] = (char *)"--parallel";
    argv[k++] = par;
    argv[k] = NULL;
    if (bench_proc_run(argv, &p) == 0) {
        r->detach_wall_us = p.wall_us;
        r->detach_ok = bench_cli_scan(p.out, n, r, 1);
    }
    free(p.out);
    free(argv);
    free(paths);
    return 0;
}
