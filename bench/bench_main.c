/* bench/bench_main.c: the harness.  It isolates itself in a network
 * namespace of its own where it can (the listener check reads the
 * namespace's socket table, which must not depend on what else runs on
 * the host; without the privilege it says so and goes on), starts one chsim fleet per add latency and the recorded VMs,
 * holds a listening "virtiofsd" socket per VM so cocoon's listener check
 * has something real to find, and runs every peer on the same VMs,
 * interleaved repetition by repetition so that load drifting over the run
 * hits every peer alike.  After every run it checks chsim's counters
 * against what the peer had to send.  Library peers and the floor run in
 * a child process of their own (this binary again, `bench peer KIND OP DIR
 * N`), attach and detach in separate processes, so whole-process CPU from
 * wait4 covers one operation for every peer. */
#include "bench/bench.h"
#include "http/base.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
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
    unsigned rec_ns[4], n_rec_ns;   /* N at which the recorded-VM peers run */
    unsigned reps, curl_reps, l1k_reps;
    unsigned target_reps;           /* reps at N=1000, latency 0: the targets'
                                       ratios are medians over these */
    unsigned curl_seq_cap, curl_par_cap;
} bench_plan;

static const bench_plan bench_full = {
    .lats = { 0, 5 }, .n_lats = 2,
    .ns = { 1, 10, 100, 500, 1000, 5000 }, .n_ns = 6,
    .lat5_ns = { 1, 100, 1000, 5000 }, .n_lat5_ns = 4,
    .rec_ns = { 100, 1000 }, .n_rec_ns = 2,
    .reps = 5, .curl_reps = 3, .l1k_reps = 9, .target_reps = 11,
    .curl_seq_cap = 100, .curl_par_cap = 500,
};

static const bench_plan bench_quick = {
    .lats = { 0, 5 }, .n_lats = 2,
    .ns = { 1, 100, 500, 1000, 5000 }, .n_ns = 5,
    .lat5_ns = { 1000 }, .n_lat5_ns = 1,
    .rec_ns = { 1000 }, .n_rec_ns = 1,
    .reps = 3, .curl_reps = 1, .l1k_reps = 5, .target_reps = 5,
    .curl_seq_cap = 1, .curl_par_cap = 100,
};

/* The phase that measures N=1 on a namespace with 1000 listening unix
 * sockets: a fleet of 500 VMs plus their 500 stand-in listeners. */
#define BENCH_L1K_VMS 500

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
    const char *kind, *curl;
    bench_run r;
    unsigned n;
    int rc, detach;

    if (argc < 6)
        return 2;
    kind = argv[2];
    detach = !strcmp(argv[3], "detach");
    n = (unsigned)strtoul(argv[5], NULL, 10);
    curl = argc > 6 ? argv[6] : "/usr/bin/curl";
    if (bench_run_init(&r, n) < 0)
        return 1;
    if (!strcmp(kind, "floor"))
        rc = bench_floor_batch(argv[4], n, detach, &r);
    else if (!strcmp(kind, "cocoon-lib"))
        rc = bench_engine_batch(argv[4], BENCH_SET_FLEET, n, 1, detach, &r);
    else if (!strcmp(kind, "cocoon-lib-nocheck"))
        rc = bench_engine_batch(argv[4], BENCH_SET_FLEET, n, -1, detach, &r);
    else if (!strcmp(kind, "rec-lib"))
        rc = bench_engine_batch(argv[4], BENCH_SET_REC, n, 1, detach, &r);
    else if (!strcmp(kind, "curl-seq"))
        rc = bench_curl_batch(curl, argv[4], n, 1, detach, &r);
    else if (!strcmp(kind, "curl-par8"))
        rc = bench_curl_batch(curl, argv[4], n, BENCH_CURL_PAR, detach, &r);
    else
        return 2;
    if (rc < 0)
        snprintf(r.err, sizeof r.err, "peer %s could not start", kind);
    bench_run_write(stdout, &r);
    bench_run_fini(&r);
    return 0;
}

/* Runs `self peer KIND OP DIR N [CURL]` and reads its result into r;
 * whole-process CPU comes from wait4. */
static void bench_spawn_peer(bench_peer p, int detach, const char *dir, unsigned n,
                             const char *curl, bench_run *r, double *proc_cpu_us)
{
    char nbuf[16];
    char *argv[] = { (char *)"/proc/self/exe", (char *)"peer", (char *)bench_peer_name(p),
                     detach ? (char *)"detach" : (char *)"attach", (char *)dir, nbuf,
                     (char *)curl, NULL };
    struct rusage ru;
    int pfd[2], status = 0, rc = -1;
    FILE *f;
    pid_t pid;

    snprintf(nbuf, sizeof nbuf, "%u", n);
    *proc_cpu_us = 0;
    if (pipe2(pfd, O_CLOEXEC) < 0)
        goto fail;
    pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        goto fail;
    }
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
    while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
        ;
    *proc_cpu_us = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
                   (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
fail:
    if (rc < 0 && bench_run_init(r, n) == 0)
        snprintf(r->err, sizeof r->err, "peer %s died (status %d)", bench_peer_name(p),
                 status);
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
        bench_api_path(last, sizeof last, dir, BENCH_SET_FLEET, i);
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
    bench_api_path(last, sizeof last, dir, BENCH_SET_FLEET, count - 1);
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

/* Stand-ins for virtiofsd: listening sockets, never accepted (chsim's
 * fleet runs with --no-connect), so cocoon's listener check finds one.
 * Grows the set to count listeners. */
static int bench_vfs_grow(const char *dir, int **fds, unsigned *have, unsigned count)
{
    char path[256];
    int *n;

    if (count <= *have)
        return 0;
    n = realloc(*fds, count * sizeof *n);
    if (!n)
        return -1;
    *fds = n;
    snprintf(path, sizeof path, "%s/vfs", dir);
    mkdir(path, 0700);
    for (; *have < count; (*have)++) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        bench_vfs_path(sa.sun_path, sizeof sa.sun_path, dir, BENCH_SET_FLEET, *have);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1) < 0) {
            fprintf(stderr, "bench: listen %s: %s\n", sa.sun_path, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -1;
        }
        n[*have] = fd;
    }
    return 0;
}

/* Listening unix sockets in this network namespace, from /proc/net/unix
 * (flag __SO_ACCEPTCON, 0x10000); -1 when unreadable. */
static long bench_count_listeners(void)
{
    char line[512];
    long count = 0;
    FILE *f = fopen("/proc/net/unix", "r");

    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long flags;

        if (sscanf(line, "%*s %*s %*s %lx", &flags) == 1 && (flags & 0x10000))
            count++;
    }
    fclose(f);
    return count;
}

/* A network namespace of our own: the bench's unix sockets then share the
 * kernel's per-namespace tables with nothing of the host's.  Root can
 * unshare one directly; others try a user namespace first.  Returns a
 * description for the report. */
static const char *bench_netns(void)
{
    if (unshare(CLONE_NEWNET) == 0)
        return "own network namespace (unshare CLONE_NEWNET)";
    fprintf(stderr, "[bench] note: no network namespace of its own (unshare: %s); the "
                    "host's other sockets share the kernel's tables with the bench's\n",
            strerror(errno));
    return "host network namespace (unshare failed: figures depend on the host)";
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

typedef struct bench_ctx {
    const char *dir, *cocoon, *curl;
    int keep_going, honest, stop;
    pid_t fleet;                       /* the running chsim fleet */
    bench_records rec;                 /* the recorded VMs (rec.n 0: none) */
    bench_counts last[2];              /* chsim's counters after the last run */
    unsigned last_n[2];                /* ... summed over this many VMs (0: none) */
    bench_cfg *cfgs;
    size_t ncfg;
} bench_ctx;

static void bench_fail(bench_ctx *x)
{
    x->honest = 0;
    if (!x->keep_going)
        x->stop = 1;
}

static double bench_srv_cpu(const bench_ctx *x, bench_set s)
{
    return s == BENCH_SET_REC ? bench_records_cpu_us(&x->rec) : bench_pid_cpu_us(x->fleet);
}

static int bench_is_cli(bench_peer p)
{
    return p == BENCH_CLI || p == BENCH_REC_CLI_PATH || p == BENCH_REC_CLI_NAME;
}

/* One repetition of one peer: the attach process, then the detach
 * process, then chsim's counters for exactly this run. */
static void bench_rep(bench_ctx *x, bench_cfg *c, unsigned k)
{
    bench_run *r = &c->runs[k], d;
    bench_set set = bench_peer_set(c->peer);
    bench_counts now, *last = &x->last[set];
    unsigned n = c->n;
    char err[256];
    double srv0;

    if (x->last_n[set] != n) {
        if (bench_counts_get(x->dir, set, n, last, err, sizeof err) < 0) {
            fprintf(stderr, "\nbench: %s\n", err);
            x->honest = 0;
            x->stop = 1;
            return;
        }
        x->last_n[set] = n;
    }
    srv0 = bench_srv_cpu(x, set);
    if (bench_is_cli(c->peer)) {
        if (bench_run_init(r, n) == 0 && bench_cli_batch(x->cocoon, x->dir, c->peer, n, 0, r) < 0)
            snprintf(r->err, sizeof r->err, "could not run %.400s", x->cocoon);
    } else {
        bench_spawn_peer(c->peer, 0, x->dir, n, x->curl, r, &r->proc_cpu_us);
    }
    r->srv_cpu_us = bench_srv_cpu(x, set) - srv0;
    if (bench_is_cli(c->peer)) {
        if (bench_run_init(&d, n) == 0 && bench_cli_batch(x->cocoon, x->dir, c->peer, n, 1, &d) < 0)
            snprintf(d.err, sizeof d.err, "could not run %.400s", x->cocoon);
    } else {
        bench_spawn_peer(c->peer, 1, x->dir, n, x->curl, &d, &d.detach_proc_cpu_us);
    }
    r->detach_ok = d.detach_ok;
    r->detach_wall_us = d.detach_wall_us;
    r->detach_proc_cpu_us = d.detach_proc_cpu_us;
    if (!r->err[0] && d.err[0])
        memcpy(r->err, d.err, sizeof r->err);
    bench_run_fini(&d);
    if (set == BENCH_SET_REC)
        bench_records_drain(&x->rec);
    if (r->ok != n || r->detach_ok != n || r->err[0]) {
        fprintf(stderr, "\nbench: %s N=%u rep %u: %u/%u attached, %u/%u detached: %s\n",
                bench_peer_name(c->peer), n, k + 1, r->ok, n, r->detach_ok, n, r->err);
        bench_fail(x);
    }
    if (bench_counts_get(x->dir, set, n, &now, err, sizeof err) < 0) {
        fprintf(stderr, "\nbench: %s\n", err);
        x->honest = 0;
        x->stop = 1;
        return;
    }
    /* Every peer does the same work: vm.info and vm.add-fs per attach,
     * vm.info and vm.remove-device per detach. */
    {
        bench_counts want = { 2L * n, n, n, 0 };
        bench_counts got = { now.info - last->info, now.add_fs - last->add_fs,
                             now.remove - last->remove, now.other - last->other };

        c->expected.info += want.info;
        c->expected.add_fs += want.add_fs;
        c->expected.remove += want.remove;
        c->seen.info += got.info;
        c->seen.add_fs += got.add_fs;
        c->seen.remove += got.remove;
        c->seen.other += got.other;
        *last = now;
        if (memcmp(&got, &want, sizeof got)) {
            fprintf(stderr, "\nbench: %s N=%u rep %u: chsim counted vm.info %ld, add-fs %ld, "
                            "remove-device %ld, other %ld; expected %ld, %ld, %ld, 0\n",
                    bench_peer_name(c->peer), n, k + 1, got.info, got.add_fs, got.remove,
                    got.other, want.info, want.add_fs, want.remove);
            bench_fail(x);
        }
    }
}

/* Runs reps repetitions of every peer at one N, interleaved: repetition k
 * runs each peer once, starting from a different peer each time. */
static void bench_block(bench_ctx *x, const char *phase, unsigned lat, unsigned n,
                        const bench_peer *peers, size_t np, unsigned reps, unsigned curl_reps,
                        double t_start)
{
    bench_cfg *c0 = &x->cfgs[x->ncfg];
    unsigned done[BENCH_PEER_COUNT] = { 0 };

    if (x->ncfg + np > BENCH_MAX_CFGS || reps > BENCH_MAX_REPS)
        return;
    x->ncfg += np;
    for (size_t j = 0; j < np; j++) {
        bench_cfg *c = &c0[j];

        c->phase = phase;
        c->latency_ms = lat;
        c->n = n;
        c->peer = peers[j];
        c->reps = peers[j] == BENCH_CURL_SEQ || peers[j] == BENCH_CURL_PAR_PEER ? curl_reps
                                                                                : reps;
        c->runs = calloc(c->reps, sizeof *c->runs);
    }
    for (unsigned k = 0; k < reps && !x->stop; k++)
        for (size_t j = 0; j < np && !x->stop; j++) {
            bench_cfg *c = &c0[(j + k) % np];

            if (k >= c->reps || !c->runs)
                continue;
            bench_progress("%s, add latency %u ms  N=%-5u rep %u/%u %-19s (%.0f s)", phase, lat,
                           n, k + 1, reps, bench_peer_name(c->peer),
                           (bench_now_us() - t_start) / 1e6);
            bench_rep(x, c, k);
            done[(j + k) % np] = k + 1;
        }
    for (size_t j = 0; j < np; j++) {
        c0[j].reps = done[j];
        c0[j].ran = done[j] > 0;
        if (c0[j].ran)
            bench_cfg_summarize(&c0[j]);
    }
}

static int bench_in(unsigned v, const unsigned *set, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (set[i] == v)
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *build = "build", *outdir = "bench/out";
    const bench_plan *plan = &bench_full;
    char dir[] = "/tmp/cocoon-bench-XXXXXX", chsim[512], cocoon[512], path[640];
    char date[64], machine[256], err[BASE_ERRSTR_MAX];
    static bench_cfg cfgs[BENCH_MAX_CFGS];
    bench_ctx x = { .curl = "/usr/bin/curl", .honest = 1, .cfgs = cfgs };
    bench_meta m = { .listeners_1000 = -1, .listeners_main = -1 };
    unsigned maxn = 0, rec_max = 0, nvfs = 0;
    struct rlimit rl;
    double t_start = bench_now_us();
    time_t now = time(NULL);
    int *vfs = NULL;

    if (argc > 1 && !strcmp(argv[1], "peer"))
        return bench_peer_main(argc, argv);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            plan = &bench_quick;
        else if (!strcmp(argv[i], "--keep-going"))
            x.keep_going = 1;
        else if (!strcmp(argv[i], "--build") && i + 1 < argc)
            build = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            outdir = argv[++i];
        else if (!strcmp(argv[i], "--curl") && i + 1 < argc)
            x.curl = argv[++i];
        else {
            bench_usage();
            return 2;
        }
    }
    bench_tty = isatty(2);
    snprintf(chsim, sizeof chsim, "%s/chsim", build);
    snprintf(cocoon, sizeof cocoon, "%s/cocoon", build);
    x.cocoon = cocoon;
    if (access(chsim, X_OK) || access(cocoon, X_OK) || access(x.curl, X_OK)) {
        fprintf(stderr, "bench: need %s, %s and %s\n", chsim, cocoon, x.curl);
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
    for (unsigned i = 0; i < plan->n_rec_ns; i++)
        if (plan->rec_ns[i] > rec_max)
            rec_max = plan->rec_ns[i];
    if (rl.rlim_cur < (rlim_t)maxn * 2 + rec_max * 2 + 64) {
        fprintf(stderr, "bench: RLIMIT_NOFILE %lu too low for N=%u\n",
                (unsigned long)rl.rlim_cur, maxn);
        return 2;
    }
    m.netns = bench_netns();
    if (!mkdtemp(dir)) {
        perror("bench: mkdtemp");
        return 2;
    }
    x.dir = dir;
    bench_root_dir(path, sizeof path, dir);
    mkdir(path, 0700);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    bench_machine(machine, sizeof machine);

    /* N=1 with 1000 listening sockets in the namespace. */
    bench_progress("starting chsim fleet of %u VMs for the listeners-1000 phase", BENCH_L1K_VMS);
    if (bench_vfs_grow(dir, &vfs, &nvfs, BENCH_L1K_VMS) < 0 ||
        (x.fleet = bench_fleet_start(chsim, dir, BENCH_L1K_VMS, 0)) < 0) {
        fprintf(stderr, "\nbench: could not set up the listeners-1000 phase\n");
        x.honest = 0;
        x.stop = 1;
    } else {
        static const bench_peer l1k[] = { BENCH_FLOOR, BENCH_ENGINE, BENCH_ENGINE_NOCHECK,
                                          BENCH_CLI };

        m.listeners_1000 = bench_count_listeners();
        bench_block(&x, "listeners-1000", 0, 1, l1k, sizeof l1k / sizeof *l1k, plan->l1k_reps,
                    0, t_start);
        bench_fleet_stop(x.fleet);
    }
    x.last_n[BENCH_SET_FLEET] = 0;

    if (!x.stop && rec_max > 0) {
        bench_progress("starting %u recorded VMs (one chsim each)", rec_max);
        if (bench_records_start(&x.rec, dir, chsim, rec_max, err, sizeof err) < 0) {
            fprintf(stderr, "\nbench: recorded VMs: %s\n", err);
            bench_records_stop(&x.rec);
            bench_fail(&x);
        }
    }
    if (!x.stop && bench_vfs_grow(dir, &vfs, &nvfs, maxn) < 0) {
        x.honest = 0;
        x.stop = 1;
    }
    for (unsigned li = 0; li < plan->n_lats && !x.stop; li++) {
        unsigned lat = plan->lats[li];
        const unsigned *ns = lat ? plan->lat5_ns : plan->ns;
        unsigned nn = lat ? plan->n_lat5_ns : plan->n_ns;

        bench_progress("starting chsim fleet of %u VMs, add latency %u ms", maxn, lat);
        x.fleet = bench_fleet_start(chsim, dir, maxn, lat);
        x.last_n[BENCH_SET_FLEET] = 0;
        if (x.fleet < 0) {
            fprintf(stderr, "\nbench: chsim fleet did not come up\n");
            x.honest = 0;
            break;
        }
        if (lat == 0)
            m.listeners_main = bench_count_listeners();
        for (unsigned ni = 0; ni < nn && !x.stop; ni++) {
            bench_peer peers[BENCH_PEER_COUNT];
            size_t np = 0;
            unsigned n = ns[ni];

            for (int p = 0; p < BENCH_PEER_COUNT; p++) {
                if ((p == BENCH_CURL_SEQ && n > plan->curl_seq_cap) ||
                    (p == BENCH_CURL_PAR_PEER && n > plan->curl_par_cap))
                    continue;
                if (bench_peer_set((bench_peer)p) == BENCH_SET_REC &&
                    (lat != 0 || n > x.rec.n || !bench_in(n, plan->rec_ns, plan->n_rec_ns)))
                    continue;
                peers[np++] = (bench_peer)p;
            }
            bench_block(&x, "main", lat, n, peers, np,
                        lat == 0 && n == 1000 ? plan->target_reps : plan->reps, plan->curl_reps,
                        t_start);
        }
        bench_fleet_stop(x.fleet);
    }
    bench_records_stop(&x.rec);
    if (bench_tty)
        fputc('\n', stderr);

    m.date = date;
    m.machine = machine;
    m.mode = plan == &bench_quick ? "quick" : "full";
    m.curl_seq_cap = plan->curl_seq_cap;
    m.curl_par_cap = plan->curl_par_cap;
    m.total_s = (bench_now_us() - t_start) / 1e6;
    m.honest = x.honest;
    mkdir(outdir, 0755);
    snprintf(path, sizeof path, "%s/report.json", outdir);
    if (bench_report_json(path, &m, cfgs, x.ncfg) < 0)
        x.honest = 0;
    snprintf(path, sizeof path, "%s/report.md", outdir);
    if (bench_report_md(path, &m, cfgs, x.ncfg) < 0)
        x.honest = 0;
    snprintf(path, sizeof path, "%s/latency.svg", outdir);
    if (bench_report_svg(path, cfgs, x.ncfg, 1000) < 0)
        x.honest = 0;
    fprintf(stderr, "[bench] %s in %.0f s (%s); reports in %s/\n",
            x.honest ? "done" : "FAILED", m.total_s, m.netns, outdir);
    for (unsigned i = 0; i < nvfs; i++)
        close(vfs[i]);
    free(vfs);
    for (size_t i = 0; i < x.ncfg; i++) {
        for (unsigned k = 0; k < cfgs[i].reps && cfgs[i].runs; k++)
            bench_run_fini(&cfgs[i].runs[k]);
        free(cfgs[i].runs);
    }
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    if (system(path) != 0)
        fprintf(stderr, "bench: could not remove %s\n", dir);
    return x.honest ? 0 : 1;
}
