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
};
static const char *const bench_labels[BENCH_PEER_COUNT] = {
    "floor (epoll, no parsing)",
    "cocoon library",
    "cocoon library, no socket check",
    "cocoon CLI (process start included)",
    "curl sequential",
    "curl parallel (8)",
};
static const char *const bench_colors[BENCH_PEER_COUNT] = {
    "#555555", "#d62728", "#ff9896", "#1f77b4", "#2ca02c", "#9467bd",
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
    double wall[64], p50[64], p90[64], p99[64], pmax[64], cpu[64], dw[64], rpv[64];
    unsigned reps = c->reps < 64 ? c->reps : 64;

    c->wall_min = INFINITY;
    c->wall_max = 0;
    c->hwm_kb = 0;
    for (unsigned k = 0; k < reps; k++) {
        bench_run *r = &c->runs[k];
        double *s = malloc((r->n ? r->n : 1) * sizeof *s);

        memcpy(s, r->lat_us, r->n * sizeof *s);
        qsort(s, r->n, sizeof *s, bench_cmp_double);
        p50[k] = bench_percentile(s, r->n, 0.50);
        p90[k] = bench_percentile(s, r->n, 0.90);
        p99[k] = bench_percentile(s, r->n, 0.99);
        pmax[k] = r->n ? s[r->n - 1] : 0;
        free(s);
        wall[k] = r->wall_us;
        cpu[k] = r->n ? r->cpu_us / r->n : 0;
        dw[k] = r->detach_wall_us;
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
    c->detach_wall_med = bench_median(dw, reps);
    c->rss_per_vm_kb = bench_median(rpv, reps);
    c->best_rep = 0;
    for (unsigned k = 0; k < reps; k++)
        if (fabs(c->runs[k].wall_us - c->wall_med) <
            fabs(c->runs[c->best_rep].wall_us - c->wall_med))
            c->best_rep = (int)k;
}

static const bench_cfg *bench_find(const bench_cfg *cfgs, size_t n, unsigned lat,
                                   unsigned vms, bench_peer p)
{
    for (size_t i = 0; i < n; i++)
        if (cfgs[i].ran && cfgs[i].latency_ms == lat && cfgs[i].n == vms &&
            cfgs[i].peer == p)
            return &cfgs[i];
    return NULL;
}

static double bench_ratio(const bench_cfg *a, const bench_cfg *b)
{
    return a && b && b->wall_med > 0 ? a->wall_med / b->wall_med : 0;
}

/* c's wall time over that of peer p at the same latency and N, 0 when p
 * did not run there. */
static double bench_ratio_to(const bench_cfg *cfgs, size_t n, const bench_cfg *c, bench_peer p)
{
    return bench_ratio(c, bench_find(cfgs, n, c->latency_ms, c->n, p));
}

/* The targets of the benchmark issue, evaluated and reported, not asserted. */
typedef struct bench_target {
    const char *what;
    char value[160];
    int measured, met;
} bench_target;

static size_t bench_targets(const bench_cfg *cfgs, size_t n, bench_target *t)
{
    const bench_cfg *eng = bench_find(cfgs, n, 0, 1000, BENCH_ENGINE);
    const bench_cfg *flo = bench_find(cfgs, n, 0, 1000, BENCH_FLOOR);
    const bench_cfg *cli = bench_find(cfgs, n, 0, 500, BENCH_CLI);
    const bench_cfg *cpar = bench_find(cfgs, n, 0, 500, BENCH_CURL_PAR_PEER);
    const bench_cfg *big = bench_find(cfgs, n, 0, 5000, BENCH_ENGINE);
    const bench_cfg *slow = bench_find(cfgs, n, 5, 1000, BENCH_ENGINE);
    size_t k = 0;

    t[k] = (bench_target){ .what = "engine wall <= 2x floor at N=1000, latency 0" };
    if (eng && flo) {
        double q = bench_ratio(eng, flo);

        t[k].measured = 1;
        t[k].met = q <= 2.0;
        snprintf(t[k].value, sizeof t[k].value, "%.2fx (%.1f ms vs %.1f ms)", q,
                 eng->wall_med / 1e3, flo->wall_med / 1e3);
    }
    k++;
    t[k] = (bench_target){ .what = "CLI at N=500 >= 50x faster than curl parallel" };
    if (cli && cpar) {
        double q = bench_ratio(cpar, cli);

        t[k].measured = 1;
        t[k].met = q >= 50.0;
        snprintf(t[k].value, sizeof t[k].value, "%.1fx (%.1f ms vs %.1f ms)", q,
                 cli->wall_med / 1e3, cpar->wall_med / 1e3);
    }
    k++;
    t[k] = (bench_target){ .what = "client CPU <= 25 us per attach at N=1000" };
    if (eng) {
        t[k].measured = 1;
        t[k].met = eng->cpu_per_attach_us <= 25.0;
        snprintf(t[k].value, sizeof t[k].value, "%.1f us", eng->cpu_per_attach_us);
    }
    k++;
    t[k] = (bench_target){ .what = "N=5000 all succeed, RSS <= 16 KiB per in-flight VM" };
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
    t[k] = (bench_target){ .what = "latency 5 ms, N=1000 under 100 ms wall" };
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
    bench_target t[8];
    size_t nt = bench_targets(cfgs, n, t);
    int first = 1;

    if (!f)
        return -1;
    fprintf(f, "{\n  \"date\": ");
    bench_json_str(f, m->date);
    fprintf(f, ",\n  \"machine\": ");
    bench_json_str(f, m->machine);
    fprintf(f, ",\n  \"mode\": ");
    bench_json_str(f, m->mode);
    fprintf(f, ",\n  \"curl_seq_cap\": %u,\n  \"curl_par_cap\": %u,\n", m->curl_seq_cap,
            m->curl_par_cap);
    fprintf(f, "  \"latency_definition\": \"batch start to completion of each attach; "
               "CLI: its own latency_ms\",\n");
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
        fprintf(f, "%s    {\"peer\": \"%s\", \"add_latency_ms\": %u, \"n\": %u, "
                   "\"reps\": %u, \"inflight\": %u,\n",
                first ? "" : ",\n", bench_peer_name(c->peer), c->latency_ms, c->n, c->reps,
                c->inflight);
        first = 0;
        fprintf(f, "     \"wall_ms\": {\"median\": %.3f, \"min\": %.3f, \"max\": %.3f},\n",
                c->wall_med / 1e3, c->wall_min / 1e3, c->wall_max / 1e3);
        fprintf(f, "     \"latency_ms\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, "
                   "\"max\": %.3f},\n",
                c->p50 / 1e3, c->p90 / 1e3, c->p99 / 1e3, c->pmax / 1e3);
        fprintf(f, "     \"cpu_us_per_attach\": %.2f, \"detach_wall_ms\": %.3f, "
                   "\"peak_rss_kib\": %ld, \"rss_kib_per_inflight_vm\": %.2f,\n",
                c->cpu_per_attach_us, c->detach_wall_med / 1e3, c->hwm_kb, c->rss_per_vm_kb);
        fprintf(f, "     \"ratio_to_floor\": %.3f, \"ratio_to_cocoon_lib\": %.3f,\n",
                bench_ratio_to(cfgs, n, c, BENCH_FLOOR),
                bench_ratio_to(cfgs, n, c, BENCH_ENGINE));
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
                       "\"cpu_us\": %.0f, \"peak_rss_kib\": %ld, \"rss0_kib\": %ld, "
                       "\"error\": ",
                    k ? ", " : "", r->wall_us / 1e3, r->ok, r->detach_ok, r->cpu_us, r->hwm_kb,
                    r->rss0_kb);
            bench_json_str(f, r->err);
            fputc('}', f);
        }
        fprintf(f, "]}");
    }
    fprintf(f, "\n  ]\n}\n");
    return fclose(f) == 0 ? 0 : -1;
}

int bench_report_md(const char *path, const bench_meta *m, bench_cfg *cfgs, size_t n)
{
    FILE *f = fopen(path, "w");
    bench_target t[8];
    size_t nt = bench_targets(cfgs, n, t);

    if (!f)
        return -1;
    fprintf(f, "# cocoon attach benchmark\n\n");
    fprintf(f, "%s, %s, mode %s, total %.0f s, honesty checks %s.\n\n", m->date, m->machine,
            m->mode, m->total_s, m->honest ? "passed" : "FAILED");
    fprintf(f, "Every peer attaches one virtio-fs share to each of N VMs of one chsim "
               "fleet (`--no-connect --eject-delay-ms 0`) and detaches it again. "
               "Wall = attach batch (median of reps, [min-max]); latency = batch start "
               "to each attach's completion (CLI: its own latency_ms); CPU = client "
               "user+sys per attach (library peers: in-process getrusage over the batch; "
               "CLI and curl: wait4/RUSAGE_CHILDREN, process start included). curl "
               "peers are capped at N<=%u (sequential) and N<=%u (parallel).\n\n",
               m->curl_seq_cap, m->curl_par_cap);
    fprintf(f, "| add lat | N | peer | reps | wall ms (min-max) | p50 ms | p90 ms | p99 ms "
               "| max ms | CPU us/attach | peak RSS KiB | KiB/VM | x floor | x cocoon-lib |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < n; i++) {
        const bench_cfg *c = &cfgs[i];

        if (!c->ran)
            continue;
        fprintf(f, "| %u ms | %u | %s | %u | %.2f (%.2f-%.2f) | %.2f | %.2f | %.2f | %.2f "
                   "| %.1f | %ld | ",
                c->latency_ms, c->n, bench_peer_name(c->peer), c->reps, c->wall_med / 1e3,
                c->wall_min / 1e3, c->wall_max / 1e3, c->p50 / 1e3, c->p90 / 1e3,
                c->p99 / 1e3, c->pmax / 1e3, c->cpu_per_attach_us, c->hwm_kb);
        if (c->rss_per_vm_kb > 0)
            fprintf(f, "%.1f | ", c->rss_per_vm_kb);
        else
            fprintf(f, "- | ");
        fprintf(f, "%.2f | %.2f |\n", bench_ratio_to(cfgs, n, c, BENCH_FLOOR),
                bench_ratio_to(cfgs, n, c, BENCH_ENGINE));
    }
    fprintf(f, "\n## Targets\n\n| target | measured | met |\n|---|---|---|\n");
    for (size_t i = 0; i < nt; i++)
        fprintf(f, "| %s | %s | %s |\n", t[i].what, t[i].measured ? t[i].value : "not run",
                !t[i].measured ? "-" : t[i].met ? "yes" : "**no**");
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

            if (!c->ran || c->n != at_n || c->latency_ms != lats[panel])
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

            if (!c->ran || c->n != at_n || c->latency_ms != lats[panel])
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
