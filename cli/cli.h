/* cli/cli.h: the cocoon command.  Argument parsing and help live in
 * cli/main.c, VM lifecycle commands in cli/vm.c, attach/detach/list and
 * batch in cli/ops.c, snapshot records in cli/snapshot.c, JSON output
 * helpers in cli/out.c.  Only this part of the project prints or chooses
 * an exit code. */
#ifndef COCOON_CLI_H
#define COCOON_CLI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <yajl/yajl_gen.h>

#include "backends/store.h"
#include "engine/cocoon.h"


enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

typedef enum cli_flag_kind {
    CLI_FLAG_BOOL,              /* --x, --x=true|false */
    CLI_FLAG_STR,               /* --x V, --x=V; last one wins */
    CLI_FLAG_LIST,              /* repeatable --x V */
    CLI_FLAG_OPTVAL,            /* --x (default value) or --x=V only */
} cli_flag_kind;

typedef struct cli_flag {
    const char *name;           /* long name without "--" */
    char short_name;            /* 0: none */
    cli_flag_kind kind;
    const char *value_name;     /* "SECONDS" in help */
    const char *def;            /* default shown in help; OPTVAL: bare value */
    const char *help;
    bool required;
    const char *alias;          /* another accepted long name, or NULL */
} cli_flag;

/* Borrowed from argv. */
typedef struct cli_flagval {
    bool set;
    const char *str;
    const char **list;          /* owned array of borrowed strings */
    size_t n;
} cli_flagval;

typedef struct cli_ctx cli_ctx;
typedef int cli_run_fn(cli_ctx *ctx);

typedef struct cli_cmd {
    const char *name;
    const char *use;            /* usage line after "cocoon ..." */
    const char *summary;
    const char *example;
    const cli_flag *flags;
    size_t n_flags;
    const struct cli_cmd *const *children;   /* NULL-terminated, groups only */
    cli_run_fn *run;            /* leaves only */
    int min_args, max_args;     /* max -1: unlimited */
    const char *alias;          /* another accepted name, or NULL */
    const char *choices;        /* space-separated accepted arguments, or NULL */
} cli_cmd;

struct cli_ctx {
    const char *root;           /* state root, absolute and canonical (borrowed) */
    unsigned timeout_ms;
    bool json;
    const cli_cmd *cmd;
    char path[128];             /* "cocoon vm fs attach" */
    cli_flagval *vals;          /* one per cmd->flags entry */
    const char **args;          /* positionals */
    size_t n_args;
};

/* Flag access by long name; a flag the command lacks reads as not given
 * (NULL, false, no list). */
bool cli_flag_given(const cli_ctx *c, const char *name);
const char *cli_flag_str(const cli_ctx *c, const char *name);  /* value or default */
const char *const *cli_flag_list(const cli_ctx *c, const char *name, size_t *n);
bool cli_flag_bool(const cli_ctx *c, const char *name);

/* Prints "Error: <msg>" and the help hint on stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const cli_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints "Error: <msg>" on stderr; returns CLI_EXIT_FAIL. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Commands. */
int cli_vm_create(cli_ctx *c);
int cli_vm_run(cli_ctx *c);
int cli_vm_start(cli_ctx *c);
int cli_vm_stop(cli_ctx *c);
int cli_vm_pause(cli_ctx *c);
int cli_snapshot_save(cli_ctx *c);
int cli_vm_restore(cli_ctx *c);
int cli_vm_clone(cli_ctx *c);
/* One clone of a batch plan: the record (state created) named name from
 * the snapshot snap_ref and its run dir with the files to restore from
 * (*restore, owned).  On failure nothing is left and err says why. */
int cli_clone_prepare(cli_ctx *c, const char *snap_ref, const char *name, store_vm *vm,
                      char **restore, char *err, size_t errlen);
/* Removes a prepared clone that did not come up: record and run dir. */
void cli_clone_drop(cli_ctx *c, store_vm *vm);
/* Removes path and everything below it when it is strictly inside
 * <root>/run/<backend>/ (canonical paths; a symlink is not followed):
 * 0, also when there is nothing to remove, or -errno (cli/vm.c). */
int cli_rm_run_tree(const char *root, const char *backend, const char *path);
int cli_vm_resume(cli_ctx *c);
int cli_vm_rm(cli_ctx *c);
int cli_vm_list(cli_ctx *c);
int cli_vm_inspect(cli_ctx *c);
int cli_vm_debug(cli_ctx *c);
int cli_fs_attach(cli_ctx *c);
int cli_fs_detach(cli_ctx *c);
int cli_fs_list(cli_ctx *c);
int cli_device_attach(cli_ctx *c);
int cli_device_detach(cli_ctx *c);
int cli_device_list(cli_ctx *c);
int cli_batch(cli_ctx *c);
int cli_snapshot_list(cli_ctx *c);
int cli_snapshot_inspect(cli_ctx *c);
int cli_snapshot_rm(cli_ctx *c);
int cli_completion(cli_ctx *c);

/* One lifecycle operation through the engine, and its outcome (cli/vm.c):
 * vm borrowed, errstr owned (free()). */
typedef struct cli_lc_job {
    store_vm *vm;
    const char *dir;            /* snapshot, restore: this job's dir, or NULL */
    bool submitted, done;
    int err, pid;
    char *errstr;
} cli_lc_job;
/* One of cocoon_vm_start, _stop, _pause, _resume, _snapshot. */
typedef int cli_lc_submit_fn(cocoon_engine *e, const char *vm, const cocoon_vm_opts *o,
                             cocoon_done_fn *cb, void *priv);
/* Runs submit ("start", "stop", ...: what) on the n VMs of jobs through one
 * engine: concurrently, each VM's steps in order.  tmpl: the options of
 * every job (the VMM binary is filled in per VM), NULL for the defaults.
 * A job that cannot be submitted is done with its error. */
void cli_lc_run(const cli_ctx *c, cli_lc_job *jobs, size_t n, cli_lc_submit_fn *submit,
                const char *what, const cocoon_vm_opts *tmpl);

/* Plan lines read as a run needs them (cli/feed.c).  Memory stays within
 * one chunk past the longest accepted line, whatever the input's size. */
typedef struct cli_lines {
    int fd;
    bool regular, eof;
    bool skipping;              /* dropping the rest of an over-long line */
    int err;                    /* errno of a failed read, 0 at a clean end */
    char *buf;
    size_t off, len, cap;
} cli_lines;
void cli_lines_init(cli_lines *r, int fd);
void cli_lines_fini(cli_lines *r);
/* 1 with the next line (without its newline; valid until the next call),
 * 0 when reading on would block (the fd is not readable yet: a pipe or a
 * terminal), -1 at the end of the input (err says whether a read failed).
 * Never blocks on anything but a regular file. */
int cli_lines_next(cli_lines *r, const char **line, size_t *len);

/* A set of strings, each with an optional string and a number (cli/feed.c). */
typedef struct cli_strent {
    struct cli_strent *next;
    const char *val;
    int num;
    char key[];
} cli_strent;
typedef struct cli_strset {
    cli_strent **b;
    size_t nb, n;
} cli_strset;
const cli_strent *cli_strset_get(const cli_strset *s, const char *key);
/* 1 when added (key and val copied), 0 when key was there, -ENOMEM. */
int cli_strset_add(cli_strset *s, const char *key, const char *val, int num);
void cli_strset_fini(cli_strset *s);

/* Latency percentiles in fixed memory (cli/feed.c). */
#define CLI_LAT_BUCKETS 3776
typedef struct cli_lat {
    uint64_t counts[CLI_LAT_BUCKETS];
    uint64_t n;
} cli_lat;
void cli_lat_add(cli_lat *h, uint64_t us);
/* The p-th percentile (0 < p <= 1) in milliseconds, 0 when empty. */
double cli_lat_ms(const cli_lat *h, double p);

/* The command table the parser walks (cli/main.c), for the completion
 * scripts (cli/complete.c).  Static, borrowed. */
const cli_cmd *cli_root_cmd(void);
const cli_flag *cli_global_flags(size_t *n);

/* The gate's expected CH binary when a record names none:
 * $COCOON_CH_BINARY, else "cloud-hypervisor".  Borrowed. */
const char *cli_default_ch_binary(void);

/* Text output (cli/out.c): printf into f with every control character of
 * the result spelled \xNN, except a newline that ends it.  Every text line
 * that shows a string from a VMM, a record or a user goes through these. */
void cli_printf(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_vprintf(FILE *f, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* fflush(f) and its error state: 0, or -errno when f failed to write now
 * or earlier.  The first failure is kept for cli_out_errno. */
int cli_out_flush(FILE *f);
/* The errno of the first failed write cli_out_flush saw, or 0: the run then
 * lost results and must not exit 0. */
int cli_out_errno(void);

/* JSON output (cli/out.c).  All generators validate UTF-8. */
yajl_gen cli_gen_new(bool pretty);
/* Writes the generator's buffer and a newline to f, frees g.  0 or -1.
 * cli_gen_print flushes f too; cli_gen_write leaves it buffered. */
int cli_gen_print(yajl_gen g, FILE *f);
int cli_gen_write(yajl_gen g, FILE *f);
void cli_gen_str(yajl_gen g, const char *s);
void cli_gen_kv_str(yajl_gen g, const char *k, const char *v);   /* skipped when v NULL */
void cli_gen_kv_int(yajl_gen g, const char *k, long long v);
void cli_gen_kv_bool(yajl_gen g, const char *k, bool v);
void cli_gen_kv_ms(yajl_gen g, const char *k, double ms);          /* 3 decimals */

#endif
