/* engine/core.h: the engine's private types and the calls its parts make
 * into each other: operations, per-VM queues and the engine itself.  Not
 * installed; only the engine's own files include it. */
#ifndef COCOON_ENGINE_CORE_H
#define COCOON_ENGINE_CORE_H

#include <stdbool.h>
#include <sys/queue.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include "http/loop.h"

#include "http/base.h"
#include "engine/cocoon.h"
#include "backends/backend.h"
#include "backends/store.h"
#include "http/client.h"

struct eng_lc;

enum op_kind {
    OP_FS_ATTACH, OP_FS_DETACH, OP_DEV_ATTACH, OP_DEV_DETACH,
    OP_LIST, OP_FS_LIST, OP_DEV_LIST, OP_VM_START, OP_VM_STOP, OP_VM_PAUSE, OP_VM_RESUME,
    OP_VM_SNAPSHOT, OP_VM_RESTORE
};


enum op_step { ST_NONE, ST_INFO, ST_PUT, ST_RECONCILE, ST_WAIT, ST_LIFECYCLE };

struct eng_vm;

STAILQ_HEAD(eng_op_q, eng_op);
STAILQ_HEAD(eng_vm_q, eng_vm);
TAILQ_HEAD(eng_vm_tq, eng_vm);

struct eng_op {
    STAILQ_ENTRY(eng_op) link;          /* the start list or its VM's queue */
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
    lp_timer timer;         /* reconcile backoff and detach-wait poll */
    char *res_id, *res_bdf; /* owned */
    char *msg;              /* owned: pre_err text, or a success note */
    struct eng_lc *lc;      /* owned: a lifecycle op's options and state,
                               from submit (eng_lc_new, eng_lc_free) */
    int pid;                /* vm start: the VMM's pid */
    const char *vm_arg;     /* the strings below live in buf */
    const char *socket, *tag, *fs_id, *path, *dev_id;
    int num_queues, queue_size;
    bool socket_check;      /* fs attach: run the listener check */
    unsigned wait_ms;       /* detach: wait this long for the eject */
    bool sent;              /* a state-changing request of this op was
                               written: the VMM may have executed it */
    char buf[];
};

struct eng_vm {
    struct eng_vm *hnext;           /* hash chain */
    STAILQ_ENTRY(eng_vm) link;      /* the ready or the wait list */
    cocoon_engine *e;
    const struct backend_ops *ops;  /* the VMM behind the socket */
    store_vm *rec;                  /* owned copy; NULL for a direct target */
    httpc_conn *conn;
    struct eng_op_q queue;          /* FIFO; the first runs when cur is set */
    struct eng_op *cur;
    bool active, listed;            /* holds an inflight slot; on a list */
    bool idle;                      /* no operation; on the idle list */
    bool changing;                  /* the request in flight changes state */
    pid_t peer;                     /* the running op's VMM as its gate found
                                       it: every connect must reach this pid
                                       (0: any; direct targets, vm start) */
    TAILQ_ENTRY(eng_vm) idle_link;
    uint64_t hash;
    char key[];                     /* "R<sock>" recorded, "D<sock>" direct */
};

struct cocoon_engine {
    lp_loop *loop;                       /* owned; the host drives it */
    cocoon_loop_hooks hooks;             /* zeroed: the host polls */
    char *root;
    char *ch_binary;
    unsigned timeout_ms, max_inflight, detach_wait_ms;
    int socket_check;

    lp_timer kick;                       /* starts submitted operations */
    struct eng_op_q start;

    struct eng_vm **buckets;
    size_t nbuckets, nvms;
    struct eng_vm_q ready, waiting;
    unsigned n_active;
    /* VMs whose queue ran empty keep their connection open, so the next
     * batch for them (the detach after the attach) skips the connect.
     * Oldest first; idle plus active VMs stay within max_inflight, which
     * bounds the engine's open connections (and CH sees one per engine). */
    struct eng_vm_tq idle;
    unsigned n_idle;
    bool pumping;

    int depth;                           /* nesting of our loop callbacks */
    bool free_requested, dying;
    bool draining;                       /* cocoon_engine_drain was called */

    /* The store as last read; kept until a vms.json changes, checked once
     * per loop iteration. */
    bool db_valid;
    unsigned db_iter;
    int db_rc;
    char db_err[BASE_ERRSTR_MAX];
    store_set set;

    int probe;                           /* the listener check's probe
                                            socket, -1 until first needed */

    char err[BASE_ERRSTR_MAX];            /* scratch for the current step */
};

extern const char *const eng_op_names[];

static inline bool op_is_list(const struct eng_op *op)
{
    return op->kind == OP_LIST || op->kind == OP_FS_LIST || op->kind == OP_DEV_LIST;
}

/* Lifecycle ops run in lifecycle.c and need a recorded VM. */
static inline bool op_is_lc(const struct eng_op *op)
{
    return op->kind >= OP_VM_START;
}

static inline bool op_is_fs(const struct eng_op *op)
{
    return op->kind == OP_FS_ATTACH || op->kind == OP_FS_DETACH || op->kind == OP_FS_LIST;
}

/* Monotonic seconds, for deadlines kept as doubles like the loop's. */
static inline double eng_mono_s(void)
{
    return (double)base_mono_ns() / 1e9;
}

/* abi.c: the caller's struct in (its size first) read into *dst, a full
 * struct of known bytes; in NULL gives every default, where NULL is
 * allowed.  0, -EINVAL (size 0 or too small) or -E2BIG (non-zero bytes
 * this library does not know). */
int eng_read_abi(void *dst, size_t known, const void *in);
#define eng_read_struct(dst, in) \
    ((void)sizeof((dst) == (in)), eng_read_abi((dst), sizeof(*(dst)), (in)))

/* engine.c: entered and left around every loop callback of ours; a free
 * requested inside a user callback happens at the outermost leave. */
void eng_enter(cocoon_engine *e);
void eng_leave(cocoon_engine *e);
/* Calls op back with errstr (copied into op) and frees it; the caller
 * has unlinked it. */
void eng_op_complete(struct eng_op *op, int err, const char *errstr);
/* Completes the running op of its VM and lets the VM go on. */
void eng_op_finish(struct eng_op *op, int err, const char *errstr);
/* eng_op_finish with e->err. */
void eng_op_fail(struct eng_op *op, int err);
/* A list op's success with l (borrowed), or with an empty listing. */
void eng_op_list_done(struct eng_op *op, const cocoon_listing *l);
void eng_op_list_empty(struct eng_op *op);
void eng_op_free(struct eng_op *op);

/* vm.c: the record ref names, borrowed from this loop iteration's read of
 * the store, or NULL with *rc and e->err. */
const store_vm *eng_resolve(cocoon_engine *e, const char *ref, int *rc);
void eng_resolve_fini(cocoon_engine *e);
/* The VM for key ("R<sock>" recorded, "D<sock>" direct), created on first
 * use; rec (may be NULL) is copied on creation and when an idle VM is
 * taken up again.  NULL when out of memory. */
struct eng_vm *eng_vm_get(cocoon_engine *e, const char *key, const store_vm *rec);
void eng_vm_table_remove(cocoon_engine *e, struct eng_vm *vm);
void eng_vm_free(struct eng_vm *vm);
const char *eng_vm_sock(const struct eng_vm *vm);
/* True when a vm.info reply says the VMM has no VM at all. */
bool eng_info_no_vm(const httpc_response *r);
/* Sends endpoint ep of the VM's backend on its connection, the path with
 * id appended when the row is a prefix (id may be NULL), with timeout_ms
 * (0: the engine's).  The reply goes to the running op's step.  0 or
 * -errno with e->err set. */
int eng_vm_send(struct eng_vm *vm, backend_ep ep, const char *id, const char *body, size_t len,
                unsigned timeout_ms);

/* sched.c: queues and the pump. */
void eng_ready_push(cocoon_engine *e, struct eng_vm *vm);
void eng_pump(cocoon_engine *e);
void eng_op_begin(cocoon_engine *e, struct eng_op *op);
void eng_kick_cb(lp_loop *loop, lp_timer *w, int revents);

/* attach.c: runs an attach, detach or list op (running gate, vm.info,
 * prechecks, PUT) and takes its replies. */
void eng_attach_run(struct eng_op *op);
void eng_attach_on_http(struct eng_op *op, const httpc_response *r);
void eng_fs_put(struct eng_op *op);

/* sockets.c: the listener check of an fs attach whose prechecks passed
 * (then the PUT, or the failure); closing the engine's probe socket. */
void eng_unix_check(struct eng_op *op);
void eng_unix_fini(cocoon_engine *e);

/* lifecycle.c: runs a lifecycle op (start, stop, pause, resume) as the running op of
 * its VM, and takes its replies. */
void eng_lc_run(struct eng_op *op);
void eng_lc_on_http(struct eng_op *op, const httpc_response *r);
struct eng_lc *eng_lc_new(const cocoon_vm_opts *o);
void eng_lc_free(struct eng_lc *lc);

#endif
