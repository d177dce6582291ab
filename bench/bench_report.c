/* bench/bench_report.c: aggregation of repetitions and the three report
 * files.  Medians over repetitions are the headline; min and max are the
 * spread.  The SVG is written by hand so the harness needs no plotting
 * package. */
#include "bench/bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const bench_names[BENCH_PEER_COUNT] = {
    "floor", "cocoon-lib", "cocoon-lib-nocheck", "cocoon-cli", "curl-seq", "curl-par8",
    "rec-lib", "rec-cli-path", "rec-cli-name",
};
static const char *const bench_labels[BENCH_PEER_COUNT] = {
    "floor (epoll, no parsing)",
    "cocoon library",
    "cocoon library, no socket check",
    "cocoon CLI, default flags",
    "curl sequential",
    "curl parallel (8)",
    "cocoon library, recorded VMs by name",
    "cocoon CLI, recorded VMs by socket path",
    "cocoon CLI, recorded VMs by name, {name} template",
};
static const char *const bench_colors[BENCH_PEER_COUNT] = {
    "#555555", "#d62728", "#ff9896", "#1f77b4", "#2ca02c", "#9467bd",
    "#8c564b", "#17becf", "#bcbd22",
};

const char *bench_peer_name(bench_peer p)
{
    return bench_names[p];
}

const char *bench_peer_label(bench_peer p)
{
    return bench_labels[p];
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

double bench_percentile(const double *sorted, size_t n, double q)
{
    size_t k;

    if (n == 0)
        return 0;
    /* Nearest rank: the smallest value with at least q of the samples at
     * or below it. */
    k = (size_t)ceil(q * (double)n);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return sorted[k - 1];
}

static double bench_median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void bench_cfg_summarize(bench_cfg *c)
{
    double wall[BENCH_MAX_REPS], p50[BENCH_MAX_REPS], p90[BENCH_MAX_REPS],
        p99[BENCH_MAX_REPS], pmax[BENCH_MAX_REPS], cpu[BENCH_MAX_REPS], pcpu[BENCH_MAX_REPS],
        scpu[BENCH_MAX_REPS], dw[BENCH_MAX_REPS], dcpu[BENCH_MAX_REPS], rpv[BENCH_MAX_REPS];
    unsigned reps = c->reps < BENCH_MAX_REPS ? c->reps : BENCH_MAX_REPS;

    c->wall_min = INFINITY;
    c->wall_max = 0;
    c->hwm_kb = 0;
    c->have_lat = 0;
    for (unsigned k = 0; k < reps; k++) {
        bench_run *r = &c->runs[k];
        double *s = malloc((r->n ? r->n : 1) * sizeof *s);
        double per = r->n ? 1.0 / r->n : 0;

        if (s && r->lat_us) {
            memcpy(s, r->lat_us, r->n * sizeof *s);
            qsort(s, r->n, sizeof *s, bench_cmp_double);
        } else if (s) {
            memset(s, 0, (r->n ? r->n : 1) * sizeof *s);
        }
        p50[k] = s ? bench_percentile(s, r->n, 0.50) : 0;
        p90[k] = s ? bench_percentile(s, r->n, 0.90) : 0;
        p99[k] = s ? bench_percentile(s, r->n, 0.99) : 0;
        pmax[k] = s && r->n ? s[r->n - 1] : 0;
        if (pmax[k] > 0)
            c->have_lat = 1;
        free(s);
        wall[k] = r->wall_us;
        cpu[k] = r->cpu_us * per;
        pcpu[k] = r->proc_cpu_us * per;
        scpu[k] = r->srv_cpu_us * per;
        dw[k] = r->detach_wall_us;
        dcpu[k] = r->detach_proc_cpu_us * per;
        rpv[k] = r->inflight && r->rss0_kb ? (double)(r->hwm_kb - r->rss0_kb) / r->inflight : 0;
        if (r->wall_us < c->wall_min)
            c->wall_min = r->wall_us;
        if (r->wall_us > c->wall_max)
            c->wall_max = r->wall_us;
        if (r->hwm_kb > c->hwm_kb)
            c->hwm_kb = r->hwm_kb;
        c->inflight = r->inflight;
    }
    c->wall_med = bench_median(wall, reps);
    c->p50 = bench_median(p50, reps);
    c->p90 = bench_median(p90, reps);
    c->p99 = bench_median(p99, reps);
    c->pmax = bench_median(pmax, reps);
    c->cpu_per_attach_us = bench_median(cpu, reps);
    c->proc_cpu_per_attach_us = bench_median(pcpu, reps);
    c->srv_cpu_per_attach_us = bench_median(scpu, reps);
    c->detach_wall_med = bench_median(dw, reps);
    c->detach_proc_cpu_per_op_us = bench_median(dcpu, reps);
    c->rss_per_vm_kb = bench_median(rpv, reps);
    c->best_rep = 0;
    for (unsigned k = 0; k < reps; k++)
        if (fabs(c->runs[k].wall_us - c->wall_med) <
            fabs(c->runs[c->best_rep].wall_us - c->wall_med))
            c->best_rep = (int)k;
}

static const bench_cfg *bench_find(const bench_cfg *cfgs, size_t n, const char *phase,
                                   unsigned lat, unsigned vms, bench_peer p)
{
    for (size_t i = 0; i < n; i++)
        if (cfgs[i].ran && !strcmp(cfgs[i].phase, phase) && cfgs[i].latency_ms == lat &&
            cfgs[i].n == vms && cfgs[i].peer == p)
            return &cfgs[i];
    return NULL;
}

static double bench_ratio(double a, double b)
{
    return b > 0 ? a / b : 0;
}

/* c's figure over that of peer p in the same phase, latency and N; 0 when
 * p did not run there. */
typedef double bench_metric(const bench_cfg *c);

static double bench_m_wall(const bench_cfg *c)
{
    return c->wall_med;
}

static double bench_m_cpu(const bench_cfg *c)
{
    return c->cpu_per_attach_us;
}

static double bench_m_pcpu(const bench_cfg *c)
{
    return c->proc_cpu_per_attach_us;
}

static double bench_ratio_to(const bench_cfg *cfgs, size_t n, const bench_cfg *c, bench_peer p,
                             bench_metric *m)
{
    const bench_cfg *o = bench_find(cfgs, n, c->phase, c->latency_ms, c->n, p);

    return o ? bench_ratio(m(c), m(o)) : 0;
}

/* Median over repetitions of a's figure over b's in the same repetition:
 * the peers ran interleaved, so each pair saw the same load. */
typedef double bench_run_metric(const bench_run *r);

static double bench_r_wall(const bench_run *r)
{
    return r->wall_us;
}

static double bench_r_cpu(const bench_run *r)
{
    return r->cpu_us;
}

static double bench_paired(const bench_cfg *a, const bench_cfg *b, bench_run_metric *m)
{
    double q[BENCH_MAX_REPS];
    unsigned k = 0;

    for (; k < a->reps && k < b->reps && k < BENCH_MAX_REPS; k++)
        q[k] = bench_ratio(m(&a->runs[k]), m(&b->runs[k]));
    return bench_median(q, k);
}

/* The targets, evaluated from this run and reported, not asserted. */
typedef struct bench_target {
    const char *what;
    char value[200];
    int measured, met;
} bench_target;

#define BENCH_TARGETS_MAX 12

static size_t bench_targets(const bench_cfg *cfgs, size_t n, const bench_meta *m,
                            bench_target *t)
{
    const bench_cfg *eng = bench_find(cfgs, n, "main", 0, 1000, BENCH_ENGINE);
    const bench_cfg *noc = bench_find(cfgs, n, "main", 0, 1000, BENCH_ENGINE_NOCHECK);
    const bench_cfg *flo = bench_find(cfgs, n, "main", 0, 1000, BENCH_FLOOR);
    const bench_cfg *rname = bench_find(cfgs, n, "main", 0, 1000, BENCH_REC_CLI_NAME);
    const bench_cfg *rpath = bench_find(cfgs, n, "main", 0, 1000, BENCH_REC_CLI_PATH);
    const bench_cfg *one = bench_find(cfgs, n, "listeners-1000", 0, 1, BENCH_ENGINE);
    const bench_cfg *cli = bench_find(cfgs, n, "main", 0, 500, BENCH_CLI);
    const bench_cfg *cpar = bench_find(cfgs, n, "main", 0, 500, BENCH_CURL_PAR_PEER);
    const bench_cfg *big = bench_find(cfgs, n, "main", 0, 5000, BENCH_ENGINE);
    const bench_cfg *slow = bench_find(cfgs, n, "main", 5, 1000, BENCH_ENGINE);
    size_t k = 0;

    t[k] = (bench_target){ .what = "client CPU per attach at N=1000 with the listener check "
                                   "<= 1.2x the floor (in-process, median of per-rep ratios)" };
    if (eng && flo) {
        double q = bench_paired(eng, flo, bench_r_cpu);

        t[k].measured = 1;
        t[k].met = q <= 1.2;
        snprintf(t[k].value, sizeof t[k].value, "%.2fx (%.1f us vs %.1f us)", q,
                 eng->cpu_per_attach_us, flo->cpu_per_attach_us);
    }
    k++;
    t[k] = (bench_target){ .what = "client CPU per attach at N=1000 without the check "
                                   "<= 1.1x the floor (in-process, median of per-rep ratios)" };
    if (noc && flo) {
        double q = bench_paired(noc, flo, bench_r_cpu);

        t[k].measured = 1;
        t[k].met = q <= 1.1;
        snprintf(t[k].value, sizeof t[k].value, "%.2fx (%.1f us vs %.1f us)", q,
                 noc->cpu_per_attach_us, flo->cpu_per_attach_us);
    }
    k++;
    t[k] = (bench_target){ .what = "recorded VMs by name with a {name} template at N=1000 "
                                   "<= 1.3x the same VMs by socket path (CLI wall, median of "
                                   "per-rep ratios)" };
    if (rname && rpath) {
        double q = bench_paired(rname, rpath, bench_r_wall);

        t[k].measured = 1;
        t[k].met = q <= 1.3;
        snprintf(t[k].value, sizeof t[k].value, "%.2fx (%.1f ms vs %.1f ms)", q,
                 rname->wall_med / 1e3, rpath->wall_med / 1e3);
    }
    k++;
    t[k] = (bench_target){ .what = "N=1 with the check, 1000 listening unix sockets: client "
                                   "CPU < 1 ms (in-process)" };
    if (one) {
        t[k].measured = 1;
        t[k].met = one->cpu_per_attach_us < 1000.0;
        snprintf(t[k].value, sizeof t[k].value, "%.0f us (%ld listening sockets counted)",
                 one->cpu_per_attach_us, m->listeners_1000);
    }
    k++;
    t[k] = (bench_target){ .what = "(earlier) engine wall <= 2x floor at N=1000, latency 0" };
    if (eng && flo) {
        double q = bench_ratio(eng->wall_med, flo->wall_med);

        t[k].measured = 1;
        t[k].met = q <= 2.0;
        snprintf(t[k].value, sizeof t[k].value, "%.2fx (%.1f ms vs %.1f ms)", q,
                 eng->wall_med / 1e3, flo->wall_med / 1e3);
    }
    k++;
    t[k] = (bench_target){ .what = "(earlier) CLI at N=500 >= 50x faster than curl parallel" };
    if (cli && cpar) {
        double q = bench_ratio(cpar->wall_med, cli->wall_med);

        t[k].measured = 1;
        t[k].met = q >= 50.0;
        snprintf(t[k].value, sizeof t[k].value, "%.1fx (%.1f ms vs %.1f ms)", q,
                 cli->wall_med / 1e3, cpar->wall_med / 1e3);
    }
    k++;
    t[k] = (bench_target){ .what = "(earlier) client CPU <= 25 us per attach at N=1000" };
    if (eng) {
        t[k].measured = 1;
        t[k].met = eng->cpu_per_attach_us <= 25.0;
        snprintf(t[k].value, sizeof t[k].value, "%.1f us", eng->cpu_per_attach_us);
    }
    k++;
    t[k] = (bench_target){ .what = "(earlier) N=5000 all succeed, RSS <= 16 KiB per in-flight "
                                   "VM" };
    if (big) {
        unsigned ok = 1;

        for (unsigned r = 0; r < big->reps; r++)
            ok &= big->runs[r].ok == big->n;
        t[k].measured = 1;
        t[k].met = ok && big->rss_per_vm_kb <= 16.0;
        snprintf(t[k].value, sizeof t[k].value, "%s, %.1f KiB per VM (peak %ld KiB)",
                 ok ? "all succeeded" : "FAILURES", big->rss_per_vm_kb, big->hwm_kb);
    }
    k++;
    t[k] = (bench_target){ .what = "(earlier) latency 5 ms, N=1000 under 100 ms wall" };
    if (slow) {
        t[k].measured = 1;
        t[k].met = slow->wall_med < 100e3;
        snprintf(t[k].value, sizeof t[k].value, "%.1f ms", slow->wall_med / 1e3);
    }
    k++;
    return k;
}

static void bench_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

int bench_report_json(const char *path, const bench_meta *m, bench_cfg *cfgs, size_t n)
{
    FILE *f = fopen(path, "w");
    bench_target t[BENCH_TARGETS_MAX];
    size_t nt = bench_targets(cfgs, n, m, t);
    int first = 1;

    if (!f)
        return -1;
    fprintf(f, "{\n  \"date\": ");
    bench_json_str(f, m->date);
    fprintf(f, ",\n  \"machine\": ");
    bench_json_str(f, m->machine);
    fprintf(f, ",\n  \"mode\": ");
    bench_json_str(f, m->mode);
    fprintf(f, ",\n  \"network_namespace\": ");
    bench_json_str(f, m->netns);
    fprintf(f, ",\n  \"listening_sockets\": {\"listeners-1000\": %ld, \"main\": %ld},\n",
            m->listeners_1000, m->listeners_main);
    fprintf(f, "  \"curl_seq_cap\": %u,\n  \"curl_par_cap\": %u,\n", m->curl_seq_cap,
            m->curl_par_cap);
    fprintf(f, "  \"latency_definition\": \"batch start to completion of each attach; "
               "not measured for the CLI peers (text output)\",\n");
    fprintf(f, "  \"cpu_definition\": \"cpu_us_per_attach: in-process getrusage over the "
               "attach batch (floor and library peers only); proc_cpu_us_per_attach: the "
               "whole attach process from wait4 (every peer); chsim_cpu_us_per_attach: the "
               "simulator's CPU while the attach process ran\",\n");
    fprintf(f, "  \"honest\": %s,\n  \"total_s\": %.1f,\n  \"targets\": [\n",
            m->honest ? "true" : "false", m->total_s);
    for (size_t i = 0; i < nt; i++) {
        fprintf(f, "    {\"target\": ");
        bench_json_str(f, t[i].what);
        fprintf(f, ", \"measured\": %s, \"met\": %s, \"value\": ",
                t[i].measured ? "true" : "false", t[i].met ? "true" : "false");
        bench_json_str(f, t[i].value);
        fprintf(f, "}%s\n", i + 1 < nt ? "," : "");
    }
    fprintf(f, "  ],\n  \"configs\": [\n");
    for (size_t i = 0; i < n; i++) {
        const bench_cfg *c = &cfgs[i];

        if (!c->ran)
            continue;
        fprintf(f, "%s    {\"phase\": \"%s\", \"peer\": \"%s\", \"add_latency_ms\": %u, "
                   "\"n\": %u, \"reps\": %u, \"inflight\": %u,\n",
                first ? "" : ",\n", c->phase, bench_peer_name(c->peer), c->latency_ms, c->n,
                c->reps, c->inflight);
        first = 0;
        fprintf(f, "     \"wall_ms\": {\"median\": %.3f, \"min\": %.3f, \"max\": %.3f},\n",
                c->wall_med / 1e3, c->wall_min / 1e3, c->wall_max / 1e3);
        if (c->have_lat)
            fprintf(f, "     \"latency_ms\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, "
                       "\"max\": %.3f},\n",
                    c->p50 / 1e3, c->p90 / 1e3, c->p99 / 1e3, c->pmax / 1e3);
        else
            fprintf(f, "     \"latency_ms\": null,\n");
        fprintf(f, "     \"cpu_us_per_attach\": %.2f, \"proc_cpu_us_per_attach\": %.2f, "
                   "\"chsim_cpu_us_per_attach\": %.2f,\n",
                c->cpu_per_attach_us, c->proc_cpu_per_attach_us, c->srv_cpu_per_attach_us);
        fprintf(f, "     \"detach_wall_ms\": %.3f, \"detach_proc_cpu_us_per_op\": %.2f, "
                   "\"peak_rss_kib\": %ld, \"rss_kib_per_inflight_vm\": %.2f,\n",
                c->detach_wall_med / 1e3, c->detach_proc_cpu_per_op_us, c->hwm_kb,
                c->rss_per_vm_kb);
        fprintf(f, "     \"wall_x_floor\": %.3f, \"cpu_x_floor\": %.3f, "
                   "\"proc_cpu_x_floor\": %.3f,\n",
                bench_ratio_to(cfgs, n, c, BENCH_FLOOR, bench_m_wall),
                bench_ratio_to(cfgs, n, c, BENCH_FLOOR, bench_m_cpu),
                bench_ratio_to(cfgs, n, c, BENCH_FLOOR, bench_m_pcpu));
        fprintf(f, "     \"requests_expected\": {\"vm.info\": %ld, \"vm.add-fs\": %ld, "
                   "\"vm.remove-device\": %ld, \"other\": 0},\n",
                c->expected.info, c->expected.add_fs, c->expected.remove);
        fprintf(f, "     \"requests_seen\": {\"vm.info\": %ld, \"vm.add-fs\": %ld, "
                   "\"vm.remove-device\": %ld, \"other\": %ld},\n",
                c->seen.info, c->seen.add_fs, c->seen.remove, c->seen.other);
        fprintf(f, "     \"runs\": [");
        for (unsigned k = 0; k < c->reps; k++) {
            const bench_run *r = &c->runs[k];

            fprintf(f, "%s{\"wall_ms\": %.3f, \"ok\": %u, \"detach_ok\": %u, "
                       "\"cpu_us\": %.0f, \"proc_cpu_us\": %.0f, \"chsim_cpu_us\": %.0f, "
                       "\"peak_rss_kib\": %ld, \"rss0_kib\": %ld, \"error\": ",
                    k ? ", " : "", r->wall_us / 1e3, r->ok, r->detach_ok, r->cpu_us,
                    r->proc_cpu_us, r->srv_cpu_us, r->hwm_kb, r->rss0_kb);
            bench_json_str(f, r->err);
            fputc('}', f);
        }
        fprintf(f, "]}");
    }
    fprintf(f, "\n  ]\n}\n");
    return fclose(f) == 0 ? 0 : -1;
}

static void bench_md_ms(FILE *f, int have, double us)
{
    if (have)
        fprintf(f, " %.2f |", us / 1e3);
    else
        fprintf(f, " - |");
}

/* v with one decimal (two when ratio), "-" when not measured. */
static void bench_md_num(FILE *f, int ratio, double v)
{
    if (v <= 0)
        fprintf(f, " - |");
    else if (ratio)
        fprintf(f, " %.2f |", v);
    else
        fprintf(f, " %.1f |", v);
}

static void bench_md_table(FILE *f, const char *phase, bench_cfg *cfgs, size_t n)
{
    fprintf(f, "| add lat | N | peer | reps | wall ms (min-max) | p50 ms | p99 ms "
               "| CPU us/attach in-proc | CPU us/attach process | chsim CPU us/attach "
               "| detach ms | detach CPU us/op process | peak RSS KiB | KiB/VM "
               "| wall x floor | CPU x floor in-proc | CPU x floor process |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < n; i++) {
        const bench_cfg *c = &cfgs[i];

        if (!c->ran || strcmp(c->phase, phase))
            continue;
        fprintf(f, "| %u ms | %u | %s | %u | %.2f (%.2f-%.2f) |", c->latency_ms, c->n,
                bench_peer_name(c->peer), c->reps, c->wall_med / 1e3, c->wall_min / 1e3,
                c->wall_max / 1e3);
        bench_md_ms(f, c->have_lat, c->p50);
        bench_md_ms(f, c->have_lat, c->p99);
        bench_md_num(f, 0, c->cpu_per_attach_us);
        bench_md_num(f, 0, c->proc_cpu_per_attach_us);
        bench_md_num(f, 0, c->srv_cpu_per_attach_us);
        fprintf(f, " %.2f |", c->detach_wall_med / 1e3);
        bench_md_num(f, 0, c->detach_proc_cpu_per_op_us);
        fprintf(f, " %ld |", c->hwm_kb);
        bench_md_num(f, 0, c->rss_per_vm_kb);
        bench_md_num(f, 1, bench_ratio_to(cfgs, n, c, BENCH_FLOOR, bench_m_wall));
        bench_md_num(f, 1, bench_ratio_to(cfgs, n, c, BENCH_FLOOR, bench_m_cpu));
        bench_md_num(f, 1, bench_ratio_to(cfgs, n, c, BENCH_FLOOR, bench_m_pcpu));
        fputc('\n', f);
    }
}

int bench_report_md(const char *path, const bench_meta *m, bench_cfg *cfgs, size_t n)
{
    FILE *f = fopen(path, "w");
    bench_target t[BENCH_TARGETS_MAX];
    size_t nt = bench_targets(cfgs, n, m, t);

    if (!f)
        return -1;
    fprintf(f, "# cocoon attach benchmark\n\n");
    fprintf(f, "%s, %s, mode %s, total %.0f s, %s, honesty checks %s.\n\n", m->date,
            m->machine, m->mode, m->total_s, m->netns, m->honest ? "passed" : "FAILED");
    fprintf(f, "## Targets\n\n| target | measured | met |\n|---|---|---|\n");
    for (size_t i = 0; i < nt; i++)
        fprintf(f, "| %s | %s | %s |\n", t[i].what, t[i].measured ? t[i].value : "not run",
                !t[i].measured ? "-" : t[i].met ? "yes" : "**no**");
    fprintf(f, "\n## How it is measured\n\n"
               "Every peer attaches one virtio-fs share to each of N VMs and detaches it "
               "again; attach and detach are one process each. Peers run interleaved: "
               "repetition k runs every peer once before repetition k+1 starts. Every "
               "peer does the same work, checked against chsim's counters after every "
               "run: vm.info and vm.add-fs per attach, vm.info and vm.remove-device per "
               "detach. The fleet peers use one `chsim --fleet` (`--no-connect "
               "--eject-delay-ms 0`); the rec-* peers use recorded VMs, one chsim "
               "process each started through the library (store, pidfile, running "
               "gate), whose add-fs connects to the stand-in virtiofsd as CH does.\n\n"
               "Wall = attach batch (median of reps, min-max); latency = batch start to "
               "each attach's completion (not measured for the CLI, whose default text "
               "output has none). CPU in-proc = getrusage over the attach batch inside "
               "the peer (floor and library peers); CPU process = the whole attach "
               "process from wait4, start and exit included (every peer); ratios divide "
               "like by like. chsim CPU = the simulator's CPU while the attach process "
               "ran: the server-side limit no client can go below. curl peers are capped "
               "at N<=%u (sequential) and N<=%u (parallel).\n\n",
            m->curl_seq_cap, m->curl_par_cap);
    fprintf(f, "## N=1 on 1000 listening sockets\n\n%ld listening unix sockets in the "
               "namespace (a 500-VM fleet and 500 stand-in virtiofsd listeners).\n\n",
            m->listeners_1000);
    bench_md_table(f, "listeners-1000", cfgs, n);
    fprintf(f, "\n## Main\n\n%ld listening unix sockets in the namespace at add latency "
               "0.\n\n",
            m->listeners_main);
    bench_md_table(f, "main", cfgs, n);
    return fclose(f) == 0 ? 0 : -1;
}

/* Hand-written SVG: one panel per add latency, empirical CDF of the
 * median-wall repetition of each peer, log-scale x in milliseconds. */
int bench_report_svg(const char *path, bench_cfg *cfgs, size_t n, unsigned at_n)
{
    const unsigned lats[2] = { 0, 5 };
    const double pw = 520, ph = 360, ml = 70, mt = 50, gap = 40, plw = 420, plh = 260;
    FILE *f = fopen(path, "w");

    if (!f)
        return -1;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n",
            2 * pw + gap, ph + 130);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    for (int panel = 0; panel < 2; panel++) {
        double ox = panel * (pw + gap) + ml, oy = mt;
        double lo = INFINITY, hi = 0, llo, lhi;
        int any = 0, legend = 0;

        for (size_t i = 0; i < n; i++) {
            bench_cfg *c = &cfgs[i];
            bench_run *r;

            if (!c->ran || !c->have_lat || strcmp(c->phase, "main") || c->n != at_n ||
                c->latency_ms != lats[panel])
                continue;
            r = &c->runs[c->best_rep];
            for (unsigned k = 0; k < r->n; k++) {
                double v = r->lat_us[k] / 1e3;

                if (v > 0 && v < lo)
                    lo = v;
                if (v > hi)
                    hi = v;
            }
            any = 1;
        }
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"14\" text-anchor=\"middle\">"
                   "Attach latency CDF, N=%u, add latency %u ms</text>\n",
                ox + plw / 2, oy - 20, at_n, lats[panel]);
        if (!any) {
            fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">not run</text>\n",
                    ox + plw / 2, oy + plh / 2);
            continue;
        }
        llo = floor(log10(lo));
        lhi = ceil(log10(hi));
        if (lhi <= llo)
            lhi = llo + 1;
        fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
                   "stroke=\"black\"/>\n",
                ox, oy, plw, plh);
        for (double d = llo; d <= lhi + 1e-9; d += 1) {
            double x = ox + (d - llo) / (lhi - llo) * plw;

            fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#ddd\"/>\n",
                    x, oy, x, oy + plh);
            fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%g</text>\n", x,
                    oy + plh + 16, pow(10, d));
        }
        for (int q = 0; q <= 4; q++) {
            double y = oy + plh - q * plh / 4;

            fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
                    ox, y, ox + plw, y);
            fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n", ox - 6,
                    y + 4, q / 4.0);
        }
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">latency, ms "
                   "(log scale, batch start to completion)</text>\n",
                ox + plw / 2, oy + plh + 36);
        fprintf(f, "<text transform=\"translate(%.0f,%.0f) rotate(-90)\" "
                   "text-anchor=\"middle\">fraction of attaches completed</text>\n",
                ox - 48, oy + plh / 2);
        for (size_t i = 0; i < n; i++) {
            bench_cfg *c = &cfgs[i];
            bench_run *r;
            double *s;

            if (!c->ran || !c->have_lat || strcmp(c->phase, "main") || c->n != at_n ||
                c->latency_ms != lats[panel])
                continue;
            r = &c->runs[c->best_rep];
            s = malloc((r->n ? r->n : 1) * sizeof *s);
            if (!s)
                continue;
            memcpy(s, r->lat_us, r->n * sizeof *s);
            qsort(s, r->n, sizeof *s, bench_cmp_double);
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" points=\"",
                    bench_colors[c->peer]);
            for (unsigned k = 0; k < r->n; k++) {
                double v = s[k] / 1e3 > lo ? s[k] / 1e3 : lo;
                double x = ox + (log10(v) - llo) / (lhi - llo) * plw;
                double y = oy + plh - (double)(k + 1) / r->n * plh;

                fprintf(f, "%.1f,%.1f ", x, y);
            }
            fprintf(f, "\"/>\n");
            free(s);
            fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" "
                       "stroke-width=\"3\"/>\n",
                    ox, oy + plh + 56 + legend * 16, ox + 24, oy + plh + 56 + legend * 16,
                    bench_colors[c->peer]);
            fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">%s</text>\n", ox + 30,
                    oy + plh + 60 + legend * 16, bench_peer_label(c->peer));
            legend++;
        }
    }
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? 0 : -1;
}
