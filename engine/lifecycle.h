/* engine/lifecycle.h: private to the lifecycle operations, shared by
 * engine/lifecycle.c (start, stop, call sequences, dispatch) and
 * engine/lifecycle_state.c (pause, resume, snapshot, restore): a lifecycle
 * op's state and the steps each file hands to the other. */
#ifndef COCOON_ENGINE_LIFECYCLE_H
#define COCOON_ENGINE_LIFECYCLE_H

#include <stdbool.h>
#include <sys/types.h>

#include "engine/core.h"

#define LC_API_DEADLINE_S 10.0
#define LC_POLL_S         0.020
#define LC_PING_WINDOW_MS 200u
#define LC_LOG_TAIL       512

enum lc_phase {
    LC_PING,            /* start, CH: until vmm.ping answers */
    LC_CONNECT,         /* start, FC: until the socket accepts */
    LC_INFO,            /* start, CH: the state after boot */
    LC_SEQ,             /* a sequence of endpoint calls */
    LC_SHUTDOWN,        /* stop: the VM shutdown request */
    LC_VMM_SHUTDOWN,    /* stop, CH: the VMM shutdown request */
    LC_GONE,            /* stop: waiting for the process to end */
    LC_STATE,           /* pause / resume: the request */
    LC_STATE_INFO,      /* pause / resume: vm.info after a lost reply */
    LC_SNAP_INFO,       /* snapshot: what is attached */
    LC_SNAP,            /* snapshot: vm.snapshot */
    LC_RESTORE,         /* restore: vm.restore (Firecracker: snapshot load) */
    LC_RESTORE_INFO,    /* restore: vm.info after a lost reply */
};

/* One endpoint call of a sequence; id and body owned. */
struct lc_call {
    backend_ep ep;
    char *id, *body;
};

struct eng_lc {
    cocoon_vm_opts o;                       /* as submitted; o.binary in the op's
                                               strings, o.dir NULL (op->path) */
    enum lc_phase phase;
    pid_t pid;
    char *abs, *sock, *pidfile, *log_path;  /* owned */
    const char *gate_binary;                /* stop: the record's, abs or op's binary */
    double deadline, t0;
    int signals;                            /* stop: 0, then SIGTERM, SIGKILL sent */
    struct lc_call *seq;
    size_t n_seq, i_seq;
    int attempts;                           /* of the current call */
    void (*seq_done)(struct eng_op *op);    /* after the last call */
    char last[BASE_ERRSTR_MAX];              /* the last ping failure */
    bool pausing;                           /* LC_STATE: pause, not resume */
    void (*state_next)(struct eng_op *op, int err);  /* after LC_STATE */
    int snap_err;                           /* the snapshot's outcome */
    char snap_msg[BASE_ERRSTR_MAX];         /* its error text or note */
    char pause_note[BASE_ERRSTR_MAX];       /* a lost pause reply's note */
    char note[BASE_ERRSTR_MAX];             /* restore: lost replies settled
                                               by vm.info, told on success */
    bool want_paused;                       /* LC_INFO: the VM must be Paused,
                                               not Running (restore --paused) */
};

/* Steps of lifecycle.c that lifecycle_state.c uses. */
bool eng_lc_is_fc(const struct eng_op *op);
/* The VMM binary: the op's own, else the backend's default name. */
const char *eng_lc_binary(const struct eng_op *op);
int eng_lc_send(struct eng_op *op, backend_ep ep, const char *id, const char *body,
                unsigned timeout_ms);
int eng_lc_seq_add(struct eng_lc *lc, backend_ep ep, const char *id, char *body);
void eng_lc_seq_next(struct eng_op *op);
void eng_lc_start_fail(struct eng_op *op, int rc, const char *why);

/* Pause, resume, snapshot and restore (lifecycle_state.c): the entry
 * points the dispatch calls and the reply handlers it routes to. */
void eng_lc_state(struct eng_op *op);
void eng_lc_snapshot(struct eng_op *op);
void eng_lc_restore(struct eng_op *op);
void eng_lc_after_state(struct eng_op *op, const httpc_response *r);
void eng_lc_after_state_info(struct eng_op *op, const httpc_response *r);
void eng_lc_after_snap(struct eng_op *op, const httpc_response *r);
void eng_lc_after_snap_info(struct eng_op *op, const httpc_response *r);
void eng_lc_after_restore(struct eng_op *op, const httpc_response *r);
void eng_lc_after_restore_info(struct eng_op *op, const httpc_response *r);

#endif
