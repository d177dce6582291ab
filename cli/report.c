/* cli/report.c: what a run of operations prints: one line per finished
 * operation (text or JSON), the list tables, the progress bar on a
 * terminal and the summary. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/ops.h"

void ops_progress_clear(runner *r)
{
    if (r->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        r->drawn = 0;
    }
}

void ops_progress_draw(runner *r)
{
    double el = base_mono_ns() / 1e9 - r->t0;
    size_t width = 30, fill = r->n_jobs ? r->done * width / r->n_jobs : width;
    char bar[32];

    for (size_t i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r\033[K[%s] %zu/%zu  ok %zu  failed %zu  %.0f ops/s", bar, r->done,
            r->n_jobs, r->ok, r->failed, el > 0 ? (double)r->done / el : 0.0);
    fflush(stderr);
    r->drawn = 1;
    r->dirty = false;
}

/* The bar, on a terminal, once the run has more than one VM. */
void ops_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    runner *r = w->data;

    (void)loop;
    (void)revents;
    if (r->dirty && r->vms.n > 1)
        ops_progress_draw(r);
}

/* Whether a VM may have changed: a failure whose request was sent and
 * whose outcome nobody could tell. */
bool ops_job_unknown(const job *j)
{
    return !j->ok && j->errstr && strstr(j->errstr, "outcome unknown") != NULL;
}

/* Never started, or stopped before its request was sent: nothing changed. */
bool ops_job_not_run(const job *j)
{
    return !j->ok && !ops_job_unknown(j) && j->canceled;
}

/* The JSON "outcome" of a failure that is not a plain one. */
static const char *outcome_of(const job *j)
{
    return ops_job_unknown(j) ? "unknown" : ops_job_not_run(j) ? "not-run" : NULL;
}

static void print_job_json(runner *r, const job *j)
{
    yajl_gen g = cli_gen_new(false);

    if (!g)
        return;
    yajl_gen_map_open(g);
    cli_gen_kv_str(g, "vm", j->op.vm);
    if (j->op.vm || j->line == 0)
        cli_gen_kv_str(g, "op", cli_op_name(j->op.kind));
    cli_gen_kv_bool(g, "ok", j->ok);
    cli_gen_kv_str(g, "id", j->dev_id ? j->dev_id : j->op.id);
    cli_gen_kv_str(g, "tag", j->op.tag);
    cli_gen_kv_str(g, "pci", j->op.pci);
    /* The socket as expanded for this VM: an fs-list line that carries
     * one learns what an fs-attach would use, without attaching. */
    if (j->op.kind == CLI_OP_FS_LIST)
        cli_gen_kv_str(g, "socket", j->op.socket);
    cli_gen_kv_str(g, "error", j->ok ? NULL : j->errstr);
    cli_gen_kv_str(g, "outcome", outcome_of(j));
    cli_gen_kv_str(g, "note", j->ok ? j->note : NULL);
    if (j->op.kind == CLI_OP_CLONE) {
        cli_gen_kv_str(g, "snapshot", j->op.snapshot);
        if (j->ok)
            cli_gen_kv_int(g, "pid", j->pid);
    }
    if (j->submitted)
        cli_gen_kv_ms(g, "latency_ms", (double)j->latency_us / 1000.0);
    if (j->ok && (j->op.kind == CLI_OP_FS_LIST || j->op.kind == CLI_OP_DEVICE_LIST)) {
        bool fs = j->op.kind == CLI_OP_FS_LIST;

        cli_gen_str(g, fs ? "fs" : "devices");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < j->n_rows; i++) {
            char **row = &j->rows[i * 3];

            yajl_gen_map_open(g);
            cli_gen_kv_str(g, "id", row[0]);
            if (fs) {
                cli_gen_kv_str(g, "tag", row[1]);
                cli_gen_kv_str(g, "socket", row[2]);
            } else {
                cli_gen_kv_str(g, "bdf", row[1]);
            }
            yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
    }
    yajl_gen_map_close(g);
    ops_progress_clear(r);
    cli_gen_write(g, stdout);
}

void ops_print_job(runner *r, const job *j)
{
    if (r->c->json) {
        print_job_json(r, j);
        return;
    }
    ops_progress_clear(r);
    if (!j->ok) {
        if (j->line && !j->op.vm)
            cli_printf(stderr, "Error: %s\n", j->errstr);
        else if (j->line)
            cli_printf(stderr, "Error: line %d: %s: %s\n", j->line, j->op.vm, j->errstr);
        else if (r->batch || r->n_args > 1)
            cli_printf(stderr, "Error: %s: %s\n", j->op.vm, j->errstr);
        else
            cli_printf(stderr, "Error: %s\n", j->errstr);
        return;
    }
    if (j->note)
        cli_printf(stderr, "Warning: %s: %s\n", j->op.vm, j->note);
    switch (j->op.kind) {
    case CLI_OP_FS_ATTACH:
    case CLI_OP_DEVICE_ATTACH: {
        bool fs = j->op.kind == CLI_OP_FS_ATTACH;

        cli_printf(stdout, "%s: attached %s %s (id=%s%s%s)\n", j->op.vm, fs ? "fs" : "device",
               fs ? j->op.tag : j->op.pci, j->dev_id, j->bdf ? ", bdf=" : "",
               j->bdf ? j->bdf : "");
        break;
    }
    case CLI_OP_FS_DETACH:
        cli_printf(stdout, "%s: detached fs %s (id=%s)\n", j->op.vm, j->op.tag, j->dev_id ? j->dev_id : "?");
        break;
    case CLI_OP_DEVICE_DETACH:
        cli_printf(stdout, "%s: detached device %s\n", j->op.vm, j->dev_id ? j->dev_id : j->op.id);
        break;
    case CLI_OP_FS_LIST:
    case CLI_OP_DEVICE_LIST:
        break;              /* tables are printed at the end */
    case CLI_OP_CLONE:
        cli_printf(stdout, "%s: cloned from %s (id=%s, pid=%d)\n", j->op.vm, j->op.snapshot,
                   j->dev_id, j->pid);
        break;
    }
}

const char *ops_sig_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "signal";
}

/* The fs table, then the device table, each only when some list op of its
 * kind succeeded. */
void ops_print_tables(runner *r)
{
    bool printed = false;

    for (int dev = 0; dev < 2; dev++) {
        cli_op_kind kind = dev ? CLI_OP_DEVICE_LIST : CLI_OP_FS_LIST;
        bool header = false;

        for (const job *j = r->kept; j; j = j->next) {
            if (j->op.kind != kind)
                continue;
            if (!header) {
                if (printed)
                    putchar('\n');
                if (dev)
                    cli_printf(stdout, "%-20s  %-24s  %s\n", "VM", "ID", "BDF");
                else
                    cli_printf(stdout, "%-20s  %-24s  %-16s  %s\n", "VM", "ID", "TAG", "SOCKET");
                header = printed = true;
            }
            for (size_t k = 0; k < j->n_rows; k++) {
                char **row = &j->rows[k * 3];

                if (dev)
                    cli_printf(stdout, "%-20s  %-24s  %s\n", j->op.vm, row[0], row[1] ? row[1] : "-");
                else
                    cli_printf(stdout, "%-20s  %-24s  %-16s  %s\n", j->op.vm, row[0], row[1], row[2]);
            }
        }
    }
}

static void print_summary_json(runner *r, double wall_s, double p50, double p99)
{
    yajl_gen g = cli_gen_new(false);

    if (!g)
        return;
    yajl_gen_map_open(g);
    cli_gen_str(g, "summary");
    yajl_gen_map_open(g);
    cli_gen_kv_int(g, "total", (long long)r->n_jobs);
    cli_gen_kv_int(g, "ok", (long long)r->ok);
    cli_gen_kv_int(g, "failed", (long long)r->failed);
    cli_gen_kv_ms(g, "wall_ms", wall_s * 1000.0);
    cli_gen_kv_ms(g, "p50_ms", p50);
    cli_gen_kv_ms(g, "p99_ms", p99);
    cli_gen_kv_int(g, "unknown", (long long)r->unknown);
    cli_gen_kv_int(g, "not_run", (long long)r->not_run);
    if (r->sig) {
        cli_gen_kv_str(g, "interrupted", ops_sig_name(r->sig));
        cli_gen_kv_bool(g, "stopped_at_once", r->aborted);
        if (r->in)
            cli_gen_kv_int(g, "lines_read", r->line);
    }
    if (r->n_unknown_vms) {
        cli_gen_str(g, "unknown_vms");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < r->n_unknown_vms; i++)
            cli_gen_str(g, r->unknown_vms[i]);
        yajl_gen_array_close(g);
    }
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    cli_gen_print(g, stdout);
}

void ops_print_summary(runner *r, double wall_s)
{
    double p50 = cli_lat_ms(&r->lat, 0.50), p99 = cli_lat_ms(&r->lat, 0.99);

    if (r->c->json) {
        print_summary_json(r, wall_s, p50, p99);
        return;
    }
    if (r->sig && r->in)
        fprintf(stderr, "Interrupted (%s%s, plan read up to line %d): ", ops_sig_name(r->sig),
                r->aborted ? ", stopped at once" : "", r->line);
    else if (r->sig)
        fprintf(stderr, "Interrupted (%s%s): ", ops_sig_name(r->sig),
                r->aborted ? ", stopped at once" : "");
    fprintf(stderr, "%zu ops on %zu VMs: %zu ok, %zu failed", r->n_jobs, r->vms.n, r->ok,
            r->failed);
    if (r->unknown || r->not_run)
        fprintf(stderr, " (%zu outcome unknown, %zu not run)", r->unknown, r->not_run);
    fprintf(stderr, " in %.1f ms (p50 %.2f ms, p99 %.2f ms)\n", wall_s * 1000.0, p50, p99);
    if (r->n_unknown_vms) {
        cli_printf(stderr, "Outcome unknown on %zu VM(s), whose request was sent (list "
                   "them before acting again):", r->n_unknown_vms);
        for (size_t i = 0; i < r->n_unknown_vms; i++)
            cli_printf(stderr, " %s", r->unknown_vms[i]);
        fputc('\n', stderr);
    }
}
