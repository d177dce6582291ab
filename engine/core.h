/* engine/core.h: the engine's private types and the calls its parts make
 * into each other: operations, per-VM queues and the engine itself.  Not
 * installed; only the engine's own files include it. */
#ifndef COCOON_ENGINE_CORE_H
#define COCOON_ENGINE_CORE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <ev.h>

#include "http/base.h"
#include "engine/cocoon.h"
#include "backends/backend.h"
#include "backends/store.h"
#include "http/client.h"

struct eng_lc;

enum op_kind {
    OP_FS_ATTACH, OP_FS_DETACH, OP_DEV_ATTACH, OP_DEV_DETACH,
    OP_LIST, OP_FS_LIST, OP_DEV_LIST, OP_VM_START, OP_VM_STOP
};


enum op_step { ST_NONE, ST_INFO, ST_PUT, ST_RECONCILE, ST_WAIT, ST_RECHECK, ST_LIFECYCLE };

struct eng_vm;

struct eng_op {
    struct eng_op *next;
    struct eng_op *recheck_next;  /* on the engine's recheck list */
    cocoon_engine *e;
    struct eng_vm *vm;
    unsigned char kind, step;
    int attempts;           /* reconcile vm.info attempts */
    int http_status;
    int pre_err;            /* submit-time validation error, reported later */
    int lost_err;           /* transport error of a lost single-shot reply */
    cocoon_done_fn *done;
    cocoon_list_fn *list;
    void *priv;
    uint64_t t0_ns;         /* base_mono_ns() at submit */
    double wait_deadline;
    ev_timer timer;         /* reconcile backoff and detach-wait poll */
    char *res_id, *res_bdf; /* owned */
    char *msg;              /* owned: pre_err text, or a success note */
    struct eng_lc *lc;      /* owned: a lifecycle op's state (free with
                               eng_lc_free) */
    int pid;                /* vm start: the VMM's pid */
    const char *vm_arg;     /* the strings below live in buf */
    const char *socket, *tag, *fs_id, *path, *dev_id;
    const char *binary;     /* vm start: the VMM; vm stop: what the gate
                               expects when the record names none */
    cocoon_vm_opts vm_opts; /* vm start / stop bounds */
    int num_queues, queue_size;
    bool socket_check;      /* fs attach: run the listener check */
    unsigned wait_ms;       /* detach: wait this long for the eject */
    unsigned gen;           /* submission generation (socket snapshot) */
    unsigned recheck_seq;   /* the snapshot that missed the listener */
    char buf[];
};

struct eng_vm {
    struct eng_vm *hnext, *link;    /* hash chain; ready or wait list */
    cocoon_engine *e;
    const struct backend_ops *ops;  /* the VMM behind the socket */
    store_vm *rec;                  /* owned copy; NULL for a direct target */
    httpc_conn *conn;
    struct eng_op *head, *tail;     /* FIFO; head runs when cur is set */
    struct eng_op *cur;
    bool active, listed;            /* holds an inflight slot; on a list */
    bool idle;                      /* no operation; on the idle list */
    struct eng_vm *idle_prev, *idle_next;
    uint64_t hash;
    char key[];                     /* "R<sock>" recorded, "D<sock>" direct */
};

/* Exact-match index over one loaded vms.json (ids or names). */
struct eng_sidx {
    const char **keys;
    long *vals;             /* index into db.vms, or -1 when duplicated */
    size_t cap;
};

struct cocoon_engine {
    struct ev_loop *loop;
    char *root;
    char *ch_binary;
    unsigned timeout_ms, max_inflight, detach_wait_ms;
    int socket_check;

    ev_timer kick;                       /* starts submitted operations */
    struct eng_op *start_head, *start_tail;

    struct eng_vm **buckets;
    size_t nbuckets, nvms;
    struct eng_vm *ready_head, *ready_tail;
    struct eng_vm *wait_head, *wait_tail;
    unsigned n_active;
    /* VMs whose queue ran empty keep their connection open, so the next
     * batch for them (the detach after the attach) skips the connect.
     * Oldest first; idle plus active VMs stay within max_inflight, which
     * bounds the engine's open connections (and CH sees one per engine). */
    struct eng_vm *idle_head, *idle_tail;
    unsigned n_idle;
    bool pumping;

    int depth;                           /* nesting of our libev callbacks */
    bool free_requested, dying;

    /* Per-loop-iteration cache: a batch of thousands of operations reads
     * vms.json once, not once per operation. */
    bool db_valid;
    unsigned db_iter;
    int db_rc;
    char *db_err;
    store_db db[2];
    struct eng_sidx by_id[2], by_name[2];

    /* The listener snapshot belongs to submissions, not to loop
     * iterations: the operations submitted in one loop iteration form a
     * generation, and a snapshot taken after a generation was submitted
     * serves it and every older one.  A miss is checked once more against
     * a later snapshot (ST_RECHECK) before it is reported, since the
     * kernel's listing may skip entries while sockets come and go. */
    unsigned gen, gen_iter;              /* newest generation; its iteration */
    bool gen_any;
    socktab *unix_set;                   /* NULL: no socket table or not taken */
    bool unix_loaded;
    unsigned unix_gen;                   /* newest generation it serves */
    unsigned unix_seq;                   /* counts snapshots taken */
    size_t n_ops;                        /* submitted, not yet completed */
    ev_timer recheck;
    struct eng_op *recheck_head, *recheck_tail;

    char err[BASE_ERRSTR_MAX];            /* scratch for the current step */
};

/* Entered and left around every libev callback of ours: a free requested
 * inside a user callback happens at the outermost leave. */
void eng_enter(cocoon_engine *e);
void eng_leave(cocoon_engine *e);

/* Sends endpoint ep of the VM's backend on its connection, the path with
 * id appended when the row is a prefix (id may be NULL), with timeout_ms
 * (0: the engine's).  The reply goes to the running op's step.  0 or
 * -errno with e->err set. */
int eng_vm_send(struct eng_vm *vm, backend_ep ep, const char *id, const char *body, size_t len,
                unsigned timeout_ms);

/* Completes the running op of its VM (errstr copied) and lets the VM go on. */
void eng_op_finish(struct eng_op *op, int err, const char *errstr);

/* Lifecycle (engine/lifecycle.c): runs op (OP_VM_START / OP_VM_STOP) as
 * the running op of its VM, and takes its HTTP replies. */
void eng_lc_run(struct eng_op *op);
void eng_lc_on_http(struct eng_op *op, const httpc_response *r);
void eng_lc_free(struct eng_lc *lc);

/* Monotonic seconds, for deadlines kept as doubles like libev's. */
static inline double eng_mono_s(void)
{
    return (double)base_mono_ns() / 1e9;
}

#endif
