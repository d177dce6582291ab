/* bench/bench.h: the attach-latency harness.  Several peers (a minimal
 * epoll "floor" client, the cocoon library, the cocoon CLI at its default
 * flags, curl processes run one after another or 8 at a time, and the
 * library and CLI on recorded VMs) attach one fs share to each of N VMs
 * and detach it again.  Peers are interleaved repetition by repetition;
 * the harness checks chsim's counters after every run, aggregates the
 * repetitions and writes report.json, report.md and latency.svg. */
#ifndef COCOON_BENCH_H
#define COCOON_BENCH_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#define BENCH_TAG "bench"
#define BENCH_DEVICE_ID "cocoon-fs-" BENCH_TAG
#define BENCH_CURL_PAR 8
#define BENCH_ERR_MAX 512
#define BENCH_MAX_REPS 64

typedef enum bench_peer {
    BENCH_FLOOR,
    BENCH_ENGINE,
    BENCH_ENGINE_NOCHECK,
    BENCH_CLI,
    BENCH_CURL_SEQ,
    BENCH_CURL_PAR_PEER,
    BENCH_REC_LIB,         /* library, recorded VMs by name */
    BENCH_REC_CLI_PATH,    /* CLI, recorded VMs by API socket path */
    BENCH_REC_CLI_NAME,    /* CLI, recorded VMs by name, {name} template */
    BENCH_PEER_COUNT
} bench_peer;

/* One repetition of one peer at one N.  Attach and detach each run in a
 * process of their own. */
typedef struct bench_run {
    unsigned n;            /* attaches submitted */
    unsigned ok;           /* attaches that succeeded */
    unsigned detach_ok;    /* detaches that succeeded */
    unsigned inflight;     /* VMs in flight at once */
    double wall_us;        /* attach batch, first submit to last completion
                              (CLI: process start to exit) */
    double cpu_us;         /* in-process client CPU (user+sys) over the
                              attach batch; 0 when the peer cannot measure
                              it (CLI, curl) */
    double proc_cpu_us;    /* whole attach process (wait4: start, setup,
                              batch, exit, and its children) */
    double srv_cpu_us;     /* chsim's CPU while the attach process ran */
    double detach_wall_us;
    double detach_proc_cpu_us;
    long rss0_kb;          /* RSS before the batch (0 when not measured) */
    long hwm_kb;           /* peak RSS of the client process (tree) */
    double *lat_us;        /* n entries, batch start to completion of
                              attach i (0: not measured); owned (free with
                              bench_run_fini) */
    char err[BENCH_ERR_MAX];  /* first failure, "" when none */
} bench_run;

/* Requests counted by chsim, summed over VMs. */
typedef struct bench_counts {
    long info, add_fs, remove, other;
} bench_counts;

/* Which VMs a peer works on: the chsim fleet (vm<i>, API socket
 * DIR/vm<i>.sock, virtiofsd DIR/vfs/vm<i>.sock) or the recorded VMs (one
 * chsim process each, named rec<i>, run directory DIR/rr/rec<i>, API
 * socket <run dir>/api.sock, virtiofsd <run dir>/api.sock.vfs, so that
 * the templates {vm}.vfs and DIR/rr/{name}/api.sock.vfs both reach it). */
typedef enum bench_set { BENCH_SET_FLEET, BENCH_SET_REC } bench_set;

bench_set bench_peer_set(bench_peer p);

/* Paths inside the bench directory, written to out (size n). */
void bench_api_path(char *out, size_t n, const char *dir, bench_set s, unsigned i);
void bench_vfs_path(char *out, size_t n, const char *dir, bench_set s, unsigned i);
void bench_rec_name(char *out, size_t n, unsigned i);
void bench_rec_run_dir(char *out, size_t n, const char *dir, unsigned i);
void bench_root_dir(char *out, size_t n, const char *dir);

double bench_now_us(void);
/* user+sys CPU of the calling process in microseconds. */
double bench_self_cpu_us(void);
/* Current VmRSS and VmHWM of the calling process in KiB (0 if unknown). */
void bench_self_rss(long *rss_kb, long *hwm_kb);
/* CPU time of process pid from /proc/<pid>/schedstat, in microseconds
 * (nanosecond resolution; 0 when unreadable). */
double bench_pid_cpu_us(pid_t pid);

int bench_run_init(bench_run *r, unsigned n);
void bench_run_fini(bench_run *r);
/* Text exchange between a peer process and the harness. */
void bench_run_write(FILE *f, const bench_run *r);
int bench_run_read(FILE *f, bench_run *r);

/* Peers that run inside a child process (bench peer KIND OP DIR N): each
 * attaches (detach == 0) or detaches one share on the first n VMs of its
 * set, all in flight at once.  Return 0 when the peer could run (failures
 * of single operations are counted in r), -1 when it could not start. */
int bench_floor_batch(const char *dir, unsigned n, int detach, bench_run *r);
int bench_engine_batch(const char *dir, bench_set s, unsigned n, int socket_check,
                       int detach, bench_run *r);
int bench_curl_batch(const char *curl, const char *dir, unsigned n, unsigned par,
                     int detach, bench_run *r);

/* The CLI peers run `cocoon vm fs attach|detach` at its default flags
 * (text output, --parallel 256) as one process per batch, from the
 * harness; wall, CPU and peak RSS come from wait4. */
int bench_cli_batch(const char *cocoon, const char *dir, bench_peer p, unsigned n,
                    int detach, bench_run *r);

/* Runs argv with stdout and stderr into *out (owned, NUL-terminated),
 * measured with wait4.  0 or -1. */
typedef struct bench_proc {
    double wall_us, cpu_us;
    long maxrss_kb;
    int status;
    char *out;
    size_t out_len;
} bench_proc;
int bench_proc_run(char *const *argv, bench_proc *p);

/* GET /chsim/stats on the first n VMs of set s, summed into c.  0 or -1
 * (err set). */
int bench_counts_get(const char *dir, bench_set s, unsigned n, bench_counts *c, char *err,
                     size_t errlen);

/* Request bytes shared by the floor client (built into buf, size n). */
int bench_req_info(char *buf, size_t n);
int bench_req_add_fs(char *buf, size_t n, const char *vfs_sock);
int bench_req_remove(char *buf, size_t n);

/* The recorded VMs: records rec0..rec(n-1) under DIR/root, each started
 * (one chsim process per VM, through the library's VM start), plus a
 * listening stand-in virtiofsd socket per VM.  bench_records_drain
 * accepts and closes what chsim connected to those listeners (chsim
 * connects on every add-fs, as CH does).  0 or -1 (err set). */
typedef struct bench_records {
    unsigned n;
    pid_t *pids;
    int *vfs;
} bench_records;
int bench_records_start(bench_records *rs, const char *dir, const char *chsim, unsigned n,
                        char *err, size_t errlen);
void bench_records_drain(const bench_records *rs);
double bench_records_cpu_us(const bench_records *rs);
void bench_records_stop(bench_records *rs);

/* Aggregated results of one (phase, latency, N, peer) configuration. */
typedef struct bench_cfg {
    const char *phase;     /* "main", or "listeners-1000" */
    unsigned latency_ms, n, reps;
    bench_peer peer;
    int ran;
    bench_run *runs;       /* reps entries, owned */
    bench_counts expected, seen;
    /* medians over reps, and min/max spread */
    double wall_med, wall_min, wall_max;
    double p50, p90, p99, pmax;        /* median over reps of each rep's value */
    double cpu_per_attach_us;          /* in-process, median (0: not measured) */
    double proc_cpu_per_attach_us;     /* whole process, median */
    double srv_cpu_per_attach_us;      /* chsim, median */
    double detach_wall_med;
    double detach_proc_cpu_per_op_us;
    long hwm_kb;                       /* max over reps */
    double rss_per_vm_kb;              /* median of (hwm-rss0)/inflight */
    unsigned inflight;
    int have_lat;                      /* per-attach latencies measured */
    int best_rep;                      /* rep with the median wall, for the CDF */
} bench_cfg;

const char *bench_peer_name(bench_peer p);
const char *bench_peer_label(bench_peer p);
void bench_cfg_summarize(bench_cfg *c);
double bench_percentile(const double *sorted, size_t n, double q);

typedef struct bench_meta {
    const char *date, *machine, *mode;
    const char *netns;     /* how the listener table was isolated */
    unsigned curl_seq_cap, curl_par_cap;
    long listeners_1000;   /* listening unix sockets in the namespace during
                              the listeners-1000 phase (-1: not counted) */
    long listeners_main;   /* ... during the main phase at latency 0 */
    double total_s;
    int honest;            /* 1 when every check passed */
} bench_meta;

int bench_report_json(const char *path, const bench_meta *m, bench_cfg *cfgs, size_t n);
int bench_report_md(const char *path, const bench_meta *m, bench_cfg *cfgs, size_t n);
int bench_report_svg(const char *path, bench_cfg *cfgs, size_t n, unsigned at_n);

#endif
