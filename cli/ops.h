/* cli/ops.h: the runner behind attach, detach, list and batch (ops.c)
 * and how it reports each operation and the run (report.c). */
#ifndef COCOON_CLI_OPS_H
#define COCOON_CLI_OPS_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/store.h"
#include "cli/cli.h"
#include "cli/plan.h"
#include "engine/cocoon.h"
#include "http/base.h"

typedef struct runner runner;

/* One operation and, once done, its outcome (strings owned). */
typedef struct job {
    cli_op op;
    int line;                   /* batch line, 0 for flag-driven ops */
    char *pre_err;              /* failure known before any I/O */
    bool done, ok, submitted;
    bool canceled;              /* failed with -ECANCELED */
    char *errstr, *dev_id, *bdf;
    char *note;                 /* success with a remark (reply lost, vm.info
                                   showed the outcome) */
    uint64_t latency_us;
    char **rows;                /* list ops: 3 strings per row */
    size_t n_rows;
    runner *r;
    struct job *next;           /* kept for the tables printed at the end,
                                   or a failed clone's job */
    /* A plan's clone line: the new VM (owned), its restore dir, and the
     * fs attaches of the line (jobs of their own, borrowed), which run
     * once it is up; such an attach points back at its clone. */
    store_vm *clone;
    char *clone_dir;
    int pid;
    struct job **subs, *after;
    size_t n_subs;
} job;

/* The store, read once per run for the templates that name records:
 * resolving against one load keeps N refs linear in N. */
typedef struct tmpl_store {
    store_set set;
    int rc;                       /* 0 loaded, <0 the load failed, 1 not yet */
    char err[BASE_ERRSTR_MAX];
} tmpl_store;

/* A run: jobs come from the VM arguments or from a plan read as the window
 * frees up, run through one engine, and are printed and freed as they
 * finish; only list results kept for the text tables outlive their line. */
struct runner {
    cli_ctx *c;
    struct ev_loop *loop;
    cocoon_engine *e;           /* one for the whole run: its connections
                                   are per VM */
    unsigned parallel;
    size_t window;
    job **args;                 /* flag ops: one job per VM argument */
    size_t n_args, next_arg;
    cli_lines *in;              /* batch: the plan */
    const char *path;
    int line;
    bool input_done;
    bool in_ready;              /* the input became readable */
    ev_io in_w;
    size_t n_jobs, inflight, done, ok, failed, unknown, not_run;
    cli_strset vms;             /* the VMs of the run */
    cli_strset sockets;         /* virtiofsd sockets given to an fs attach */
    tmpl_store ts;
    cli_lat lat;
    job *kept, **kept_tail;
    job *failed_clones;         /* their records and files go at the end */
    char **unknown_vms;         /* VMs with an operation of unknown outcome */
    size_t n_unknown_vms;
    cli_strset unknown_set;
    int sig;                    /* the first SIGINT or SIGTERM, 0: none */
    bool aborted;               /* a second one: stopped at once */
    ev_signal sigint, sigterm;
    bool batch;
    double t0;
    bool tty, dirty;
    int drawn;
    ev_timer tick;
};

/* report.c.  Whether a failed job may have changed its VM (its request
 * was sent and nobody could tell the outcome), or never changed anything
 * (not started, or stopped before its request was sent). */
bool ops_job_unknown(const job *j);
bool ops_job_not_run(const job *j);
/* One finished job: a JSON line, or a text line (list results wait for
 * the tables at the end). */
void ops_print_job(runner *r, const job *j);
void ops_print_tables(runner *r);
void ops_print_summary(runner *r, double wall_s);
/* The progress bar on a terminal: cleared before any other output,
 * redrawn by the tick timer. */
void ops_progress_clear(runner *r);
void ops_progress_draw(runner *r);
void ops_tick_cb(struct ev_loop *loop, ev_timer *w, int revents);
const char *ops_sig_name(int sig);

#endif
