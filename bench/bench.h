/* bench/bench.h: the attach-latency harness.  Several peers (a minimal
 * epoll "floor" client, the cocoon library, the cocoon CLI, curl processes
 * run one after another or 8 at a time) attach one fs share to each of N VMs
 * of one chsim fleet; the harness checks chsim's counters, aggregates the
 * repetitions and writes report.json, report.md and latency.svg. */
#ifndef COCOON_BENCH_H
#define COCOON_BENCH_H

#include <stddef.h>
#include <stdio.h>

#define BENCH_TAG "bench"
#define BENCH_DEVICE_ID "cocoon-fs-" BENCH_TAG
#define BENCH_CURL_PAR 8
#define BENCH_ERR_MAX 512

typedef enum bench_peer {
    BENCH_FLOOR,
    BENCH_ENGINE,
    BENCH_ENGINE_NOCHECK,
    BENCH_CLI,
    BENCH_CURL_SEQ,
    BENCH_CURL_PAR_PEER,
    BENCH_PEER_COUNT
} bench_peer;

/* One repetition of one peer at one N. */
typedef struct bench_run {
    unsigned n;            /* attaches submitted */
    unsigned ok;           /* attaches that succeeded */
    unsigned detach_ok;    /* detaches that succeeded */
    unsigned inflight;     /* VMs in flight at once */
    double wall_us;        /* attach batch, first submit to last completion */
    double cpu_us;         /* client CPU (user+sys) for the attach batch */
    double detach_wall_us;
    long rss0_kb;          /* RSS before the batch (0 when not measured) */
    long hwm_kb;           /* peak RSS of the client process (tree) */
    double *lat_us;        /* n entries, batch start to completion of
                              attach i; owned (free with bench_run_fini) */
    char err[BENCH_ERR_MAX];  /* first failure, "" when none */
} bench_run;

/* Requests counted by chsim, summed over VMs. */
typedef struct bench_counts {
    long info, add_fs, remove, other;
} bench_counts;

/* Paths inside a fleet directory, written to out (size n). */
void bench_api_path(char *out, size_t n, const char *dir, unsigned i);
void bench_vfs_path(char *out, size_t n, const char *dir, unsigned i);

double bench_now_us(void);
/* user+sys CPU of the calling process in microseconds. */
double bench_self_cpu_us(void);
/* Current VmRSS and VmHWM of the calling process in KiB (0 if unknown). */
void bench_self_rss(long *rss_kb, long *hwm_kb);

int bench_run_init(bench_run *r, unsigned n);
void bench_run_fini(bench_run *r);
/* Text exchange between a peer process and the harness. */
void bench_run_write(FILE *f, const bench_run *r);
int bench_run_read(FILE *f, bench_run *r);

/* Peers that run inside a child process (bench peer ...).  Each attaches one
 * share on vm0..vm(n-1) of the fleet in dir, all in flight at once, then
 * detaches them again.  Return 0 when the peer could run (failures of
 * single attaches are counted in r), -1 when it could not start. */
int bench_floor_batch(const char *dir, unsigned n, bench_run *r);
int bench_engine_batch(const char *dir, unsigned n, int socket_check, bench_run *r);
int bench_curl_batch(const char *curl, const char *dir, unsigned n, unsigned par,
                     bench_run *r);

/* The CLI peer runs in the harness process: attach and detach are one
 * cocoon process each, measured with wait4. */
int bench_cli_batch(const char *cocoon, const char *dir, unsigned n, bench_run *r);

/* GET /chsim/stats on vm0..vm(n-1), summed into c.  0 or -1 (err set). */
int bench_fleet_counts(const char *dir, unsigned n, bench_counts *c,
                       char *err, size_t errlen);

/* Request bytes shared by the floor client (built into buf, size n). */
int bench_req_info(char *buf, size_t n);
int bench_req_add_fs(char *buf, size_t n, const char *vfs_sock);
int bench_req_remove(char *buf, size_t n);

/* Aggregated results of one (latency, N, peer) configuration. */
typedef struct bench_cfg {
    unsigned latency_ms, n, reps;
    bench_peer peer;
    int ran;
    bench_run *runs;       /* reps entries, owned */
    bench_counts expected, seen;
    /* medians over reps, and min/max spread */
    double wall_med, wall_min, wall_max;
    double p50, p90, p99, pmax;        /* median over reps of each rep's value */
    double cpu_per_attach_us;          /* median */
    double detach_wall_med;
    long hwm_kb;                       /* max over reps */
    double rss_per_vm_kb;              /* median of (hwm-rss0)/inflight */
    unsigned inflight;
    int best_rep;                      /* rep with the median wall, for the CDF */
} bench_cfg;

const char *bench_peer_name(bench_peer p);
const char *bench_peer_label(bench_peer p);
void bench_cfg_summarize(bench_cfg *c);
double bench_percentile(const double *sorted, size_t n, double q);

typedef struct bench_meta {
    const char *date, *machine, *mode;
    unsigned curl_seq_cap, curl_par_cap;
    double total_s;
    int honest;            /* 1 when every check passed */
} bench_meta;

int bench_report_json(const char *path, const bench_meta *m, bench_cfg *cfgs, size_t n);
int bench_report_md(const char *path, const bench_meta *m, bench_cfg *cfgs, size_t n);
int bench_report_svg(const char *path, bench_cfg *cfgs, size_t n, unsigned at_n);

#endif
