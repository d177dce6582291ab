/* bench/bench_main.c: the harness.  It starts one chsim fleet per add
 * latency, holds a listening "virtiofsd" socket per VM so cocoon's liveness
 * check has something real to find, runs every peer on the same fleet,
 * checks chsim's counters against what each peer had to send, and writes
 * the reports.  Library peers run in a child process of their own (this
 * binary again, `bench peer KIND DIR N`) so their CPU and RSS figures are
 * not mixed with the harness's. */
#include "bench/bench.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_MAX_CFGS 256

typedef struct bench_plan {
    unsigned lats[2], n_lats;
    unsigned ns[8], n_ns;
    unsigned lat5_ns[8], n_lat5_ns;
    unsigned reps, curl_reps;
    unsigned curl_seq_cap, curl_par_cap;
} bench_plan;

static const bench_plan bench_full = {
    .lats = { 0, 5 }, .n_lats = 2,
    .ns = { 1, 10, 100, 500, 1000, 5000 }, .n_ns = 6,
    .lat5_ns = { 1, 10, 100, 500, 1000, 5000 }, .n_lat5_ns = 6,
    .reps = 5, .curl_reps = 3, .curl_seq_cap = 1000, .curl_par_cap = 1000,
};

static const bench_plan bench_quick = {
    .lats = { 0, 5 }, .n_lats = 2,
    .ns = { 1, 100, 500, 1000, 5000 }, .n_ns = 5,
    .lat5_ns = { 100, 1000 }, .n_lat5_ns = 2,
    .reps = 3, .curl_reps = 1, .curl_seq_cap = 100, .curl_par_cap = 500,
};

static int bench_tty;

static void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void bench_progress(const char *fmt, ...)
{
    char line[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (bench_tty)
        fprintf(stderr, "\r\033[K[bench] %s", line);
    else
        fprintf(stderr, "[bench] %s\n", line);
}

static int bench_peer_main(int argc, char **argv)
{
    bench_run r;
    unsigned n;
    int rc;

    if (argc < 5)
        return 2;
    n = (unsigned)strtoul(argv[4], NULL, 10);
    if (bench_run_init(&r, n) < 0)
        return 1;
    if (!strcmp(argv[2], "floor"))
        rc = bench_floor_batch(argv[3], n, &r);
    else if (!strcmp(argv[2], "engine"))
        rc = bench_engine_batch(argv[3], n, 1, &r);
    else if (!strcmp(argv[2], "engine-nocheck"))
        rc = bench_engine_batch(argv[3], n, -1, &r);
    else if (!strcmp(argv[2], "curl-seq"))
        rc = bench_curl_batch(argc > 5 ? argv[5] : "/usr/bin/curl", argv[3], n, 1, &r);
    else if (!strcmp(argv[2], "curl-par"))
        rc = bench_curl_batch(argc > 5 ? argv[5] : "/usr/bin/curl", argv[3], n,
                              BENCH_CURL_PAR, &r);
    else
        return 2;
    if (rc < 0)
        snprintf(r.err, sizeof r.err, "peer %s could not start", argv[2]);
    bench_run_write(stdout, &r);
    bench_run_fini(&r);
    return 0;
}

/* Runs `self peer KIND DIR N` and reads its result. */
static int bench_spawn_peer(const char *kind, const char *dir, unsigned n,
                            const char *curl, bench_run *r)
{
    char nbuf[16];
    char *argv[] = { (char *)"/proc/self/exe", (char *)"peer", (char *)kind, (char *)dir,
                     nbuf, (char *)curl, NULL };
    int pfd[2], status, rc;
    FILE *f;
    pid_t pid;

    snprintf(nbuf, sizeof nbuf, "%u", n);
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -1;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(pfd[1], 1);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(pfd[1]);
    f = fdopen(pfd[0], "r");
    rc = f ? bench_run_read(f, r) : -1;
    if (f)
        fclose(f);
    else
        close(pfd[0]);
    waitpid(pid, &status, 0);
    if (rc < 0 && bench_run_init(r, n) == 0)
        snprintf(r->err, sizeof r->err, "peer %s died (status %d)", kind, status);
    return 0;
}

static int bench_wait_socket(const char *path, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 20) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof sa.sun_path, "%.107s", path);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(fd);
            return 0;
        }
        if (fd >= 0)
            close(fd);
        usleep(20000);
    }
    return -1;
}

static pid_t bench_fleet_start(const char *chsim, const char *dir, unsigned count,
                               unsigned lat)
{
    char cnt[16], l[16], last[256];
    char *argv[] = { (char *)chsim, (char *)"--fleet", (char *)dir, (char *)"--count", cnt,
                     (char *)"--no-connect", (char *)"--eject-delay-ms", (char *)"0",
                     (char *)"--add-latency-ms", l, NULL };
    pid_t pid;

    snprintf(cnt, sizeof cnt, "%u", count);
    snprintf(l, sizeof l, "%u", lat);
    for (unsigned i = 0; i < count; i++) {
        bench_api_path(last, sizeof last, dir, i);
        unlink(last);
    }
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int dn = open("/dev/null", O_WRONLY);

        if (dn >= 0 && !getenv("BENCH_VERBOSE")) {
            dup2(dn, 1);
            dup2(dn, 2);
        }
        execv(chsim, argv);
        _exit(127);
    }
    bench_api_path(last, sizeof last, dir, count - 1);
    if (bench_wait_socket(last, 20000) < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

static void bench_fleet_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    for (int t = 0; t < 100; t++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* Stand-ins for virtiofsd: listening sockets, never accepted (chsim runs
 * with --no-connect), so cocoon's listener check (sock_diag) sees one. */
static int *bench_vfs_listen(const char *dir, unsigned count)
{
    char path[256];
    int *fds = calloc(count, sizeof *fds);

    snprintf(path, sizeof path, "%s/vfs", dir);
    if (!fds || mkdir(path, 0700) < 0) {
        free(fds);
        return NULL;
    }
    for (unsigned i = 0; i < count; i++) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        bench_vfs_path(sa.sun_path, sizeof sa.sun_path, dir, i);
        fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&sa, sizeof sa) < 0 ||
            listen(fds[i], 1) < 0) {
            fprintf(stderr, "bench: listen %s: %s\n", sa.sun_path, strerror(errno));
            free(fds);
            return NULL;
        }
    }
    return fds;
}

static void bench_expected(bench_peer p, unsigned n, unsigned reps, bench_counts *c)
{
    long info = p == BENCH_ENGINE || p == BENCH_ENGINE_NOCHECK || p == BENCH_CLI ? 2 : 1;

    c->info = info * n * reps;
    c->add_fs = (long)n * reps;
    c->remove = (long)n * reps;
    c->other = 0;
}

static void bench_machine(char *out, size_t n)
{
    char line[256], model[128] = "unknown CPU";
    long mem_kb = 0;
    struct utsname u;
    FILE *f = fopen("/proc/cpuinfo", "r");

    if (f) {
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
                snprintf(model, sizeof model, "%s", strchr(line, ':') + 2);
                model[strcspn(model, "\n")] = '\0';
                break;
            }
        fclose(f);
    }
    f = fopen("/proc/meminfo", "r");
    if (f) {
        if (fgets(line, sizeof line, f))
            mem_kb = strtol(line + 9, NULL, 10);
        fclose(f);
    }
    uname(&u);
    snprintf(out, n, "%s, %ld cores, %.1f GiB RAM, Linux %s", model,
             sysconf(_SC_NPROCESSORS_ONLN), (double)mem_kb / 1048576.0, u.release);
}

static void bench_usage(void)
{
    fprintf(stderr, "usage: bench [--quick] [--keep-going] [--build DIR] [--out DIR] "
                    "[--curl PATH]\n");
}

int main(int argc, char **argv)
{
    const char *build = "build", *outdir = "bench/out", *curl = "/usr/bin/curl";
    const bench_plan *plan = &bench_full;
    int keep_going = 0, honest = 1, stop = 0;
    char dir[] = "/tmp/cocoon-bench-XXXXXX", chsim[512], cocoon[512], path[640];
    char date[64], machine[256];
    static bench_cfg cfgs[BENCH_MAX_CFGS];
    size_t ncfg = 0;
    unsigned maxn = 0;
    struct rlimit rl;
    double t_start = bench_now_us();
    time_t now = time(NULL);
    int *vfs;

    if (argc > 1 && !strcmp(argv[1], "peer"))
        return bench_peer_main(argc, argv);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            plan = &bench_quick;
        else if (!strcmp(argv[i], "--keep-going"))
            keep_going = 1;
        else if (!strcmp(argv[i], "--build") && i + 1 < argc)
            build = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            outdir = argv[++i];
        else if (!strcmp(argv[i], "--curl") && i + 1 < argc)
            curl = argv[++i];
        else {
            bench_usage();
            return 2;
        }
    }
    bench_tty = isatty(2);
    snprintf(chsim, sizeof chsim, "%s/chsim", build);
    snprintf(cocoon, sizeof cocoon, "%s/cocoon", build);
    if (access(chsim, X_OK) || access(cocoon, X_OK) || access(curl, X_OK)) {
        fprintf(stderr, "bench: need %s, %s and %s\n", chsim, cocoon, curl);
        return 2;
    }
    /* Thousands of VMs mean thousands of sockets in chsim, the client and
     * the stand-in listeners; children inherit the raised limit. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (unsigned i = 0; i < plan->n_ns; i++)
        if (plan->ns[i] > maxn)
            maxn = plan->ns[i];
    if (rl.rlim_cur < (rlim_t)maxn * 2 + 64) {
        fprintf(stderr, "bench: RLIMIT_NOFILE %lu too low for N=%u\n",
                (unsigned long)rl.rlim_cur, maxn);
        return 2;
    }
    if (!mkdtemp(dir)) {
        perror("bench: mkdtemp");
        return 2;
    }
    snprintf(path, sizeof path, "%s/root", dir);
    mkdir(path, 0700);
    vfs = bench_vfs_listen(dir, maxn);
    if (!vfs)
        return 2;
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    bench_machine(machine, sizeof machine);

    for (unsigned li = 0; li < plan->n_lats && !stop; li++) {
        unsigned lat = plan->lats[li];
        const unsigned *ns = lat ? plan->lat5_ns : plan->ns;
        unsigned nn = lat ? plan->n_lat5_ns : plan->n_ns;
        pid_t fleet;

        bench_progress("starting chsim fleet of %u VMs, add latency %u ms", maxn, lat);
        fleet = bench_fleet_start(chsim, dir, maxn, lat);
        if (fleet < 0) {
            fprintf(stderr, "\nbench: chsim fleet did not come up\n");
            honest = 0;
            break;
        }
        for (unsigned ni = 0; ni < nn && !stop; ni++) {
            for (int p = 0; p < BENCH_PEER_COUNT && !stop; p++) {
                unsigned n = ns[ni];
                bench_cfg *c = &cfgs[ncfg];
                char err[256];
                bench_counts before;

                if ((p == BENCH_CURL_SEQ && n > plan->curl_seq_cap) ||
                    (p == BENCH_CURL_PAR_PEER && n > plan->curl_par_cap))
                    continue;
                if (ncfg + 1 >= BENCH_MAX_CFGS)
                    break;
                ncfg++;
                c->latency_ms = lat;
                c->n = n;
                c->peer = (bench_peer)p;
                c->reps = p == BENCH_CURL_SEQ || p == BENCH_CURL_PAR_PEER ? plan->curl_reps
                                                                          : plan->reps;
                c->runs = calloc(c->reps, sizeof *c->runs);
                if (bench_fleet_counts(dir, n, &before, err, sizeof err) < 0) {
                    fprintf(stderr, "\nbench: %s\n", err);
                    honest = 0;
                    stop = 1;
                    break;
                }
                for (unsigned k = 0; k < c->reps; k++) {
                    bench_run *r = &c->runs[k];

                    bench_progress("add latency %u ms  N=%-5u %-19s rep %u/%u  (%.0f s)", lat,
                                   n, bench_peer_name(c->peer), k + 1, c->reps,
                                   (bench_now_us() - t_start) / 1e6);
                    if (p == BENCH_CLI) {
                        if (bench_run_init(r, n) == 0 && bench_cli_batch(cocoon, dir, n, r) < 0)
                            snprintf(r->err, sizeof r->err, "could not run %.400s", cocoon);
                    } else if (p == BENCH_CURL_SEQ || p == BENCH_CURL_PAR_PEER) {
                        bench_spawn_peer(p == BENCH_CURL_SEQ ? "curl-seq" : "curl-par", dir, n,
                                         curl, r);
                    } else {
                        bench_spawn_peer(p == BENCH_FLOOR    ? "floor"
                                         : p == BENCH_ENGINE ? "engine"
                                                             : "engine-nocheck",
                                         dir, n, curl, r);
                    }
                    if (r->ok != n || r->detach_ok != n || r->err[0]) {
                        fprintf(stderr, "\nbench: %s N=%u rep %u: %u/%u attached, %u/%u "
                                        "detached: %s\n",
                                bench_peer_name(c->peer), n, k + 1, r->ok, n, r->detach_ok, n,
                                r->err);
                        honest = 0;
                        if (!keep_going)
                            stop = 1;
                    }
                }
                c->ran = 1;
                bench_cfg_summarize(c);
                bench_expected(c->peer, n, c->reps, &c->expected);
                if (bench_fleet_counts(dir, n, &c->seen, err, sizeof err) < 0) {
                    fprintf(stderr, "\nbench: %s\n", err);
                    honest = 0;
                    stop = 1;
                    break;
                }
                c->seen.info -= before.info;
                c->seen.add_fs -= before.add_fs;
                c->seen.remove -= before.remove;
                c->seen.other -= before.other;
                if (memcmp(&c->seen, &c->expected, sizeof c->seen)) {
                    fprintf(stderr, "\nbench: %s N=%u: chsim counted vm.info %ld, add-fs %ld, "
                                    "remove-device %ld, other %ld; expected %ld, %ld, %ld, 0\n",
                            bench_peer_name(c->peer), n, c->seen.info, c->seen.add_fs,
                            c->seen.remove, c->seen.other, c->expected.info,
                            c->expected.add_fs, c->expected.remove);
                    honest = 0;
                    if (!keep_going)
                        stop = 1;
                }
            }
        }
        bench_fleet_stop(fleet);
    }
    if (bench_tty)
        fputc('\n', stderr);

    {
        bench_meta m = { .date = date, .machine = machine,
                         .mode = plan == &bench_quick ? "quick" : "full",
                         .curl_seq_cap = plan->curl_seq_cap,
                         .curl_par_cap = plan->curl_par_cap,
                         .total_s = (bench_now_us() - t_start) / 1e6, .honest = honest };

        mkdir(outdir, 0755);
        snprintf(path, sizeof path, "%s/report.json", outdir);
        if (bench_report_json(path, &m, cfgs, ncfg) < 0)
            honest = 0;
        snprintf(path, sizeof path, "%s/report.md", outdir);
        if (bench_report_md(path, &m, cfgs, ncfg) < 0)
            honest = 0;
        snprintf(path, sizeof path, "%s/latency.svg", outdir);
        if (bench_report_svg(path, cfgs, ncfg, 1000) < 0)
            honest = 0;
        fprintf(stderr, "[bench] %s in %.0f s; reports in %s/\n",
                honest ? "done" : "FAILED", m.total_s, outdir);
    }
    for (unsigned i = 0; i < maxn; i++)
        close(vfs[i]);
    free(vfs);
    for (size_t i = 0; i < ncfg; i++) {
        for (unsigned k = 0; k < cfgs[i].reps && cfgs[i].runs; k++)
            bench_run_fini(&cfgs[i].runs[k]);
        free(cfgs[i].runs);
    }
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    if (system(path) != 0)
        fprintf(stderr, "bench: could not remove %s\n", dir);
    return honest ? 0 : 1;
}
