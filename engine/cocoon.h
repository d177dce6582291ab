/* cocoon.h: embeddable API for hot-attaching virtio-fs shares and VFIO PCI
 * devices to running Cloud Hypervisor VMs.  The engine runs on a small loop
 * of its own that the host's event loop drives (libev here, GLib in
 * cocoon-glib.h, libuv in cocoon-uv.h, anything else through
 * cocoon_engine_fd/timeout_ms/process).  Every accepted operation
 * completes exactly once, through its callback, never inside the submit
 * call.
 *
 * Threads: an engine is not thread-safe.  Every call on one engine, and
 * all of its callbacks, happen in one thread, the one that runs its loop.
 * Different engines in different threads share nothing and need no
 * locking; cocoon_version may be called from any thread. */
#ifndef COCOON_H
#define COCOON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <ev.h>

/* The library's version: the one place it is written (the Makefile reads it
 * from here for cocoon.pc, the CLI prints it). */
#define COCOON_VERSION_MAJOR 0
#define COCOON_VERSION_MINOR 1
#define COCOON_VERSION_PATCH 0
#define COCOON_VERSION_STR_(x) #x
#define COCOON_VERSION_STR(x) COCOON_VERSION_STR_(x)
#define COCOON_VERSION_STRING                                           \
    COCOON_VERSION_STR(COCOON_VERSION_MAJOR) "."                        \
    COCOON_VERSION_STR(COCOON_VERSION_MINOR) "."                        \
    COCOON_VERSION_STR(COCOON_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* The running library's version, "MAJOR.MINOR.PATCH" (static storage);
 * COCOON_VERSION_STRING is the version a caller was compiled against. */
const char *cocoon_version(void);

typedef struct cocoon_engine cocoon_engine;

/* Option and spec structs grow at their end from one version to the next
 * without breaking a compiled caller: each starts with size, which the
 * caller sets to sizeof the struct it was compiled with, through
 * COCOON_<NAME>_INIT or cocoon_<name>_init (both zero every other field,
 * which means its default).  The library reads only the fields that size
 * covers; a field past it (the caller predates the field) takes its
 * default.  A caller newer than the library may pass a bigger size if the
 * fields this library does not know are zero; otherwise the call fails
 * with -E2BIG.  size 0 (a struct never initialised) fails with -EINVAL.
 * A new field is only ever added past the end of the previous sizeof. */
#define COCOON_OPTIONS_INIT { .size = sizeof(cocoon_options) }
#define COCOON_FS_SPEC_INIT { .size = sizeof(cocoon_fs_spec) }
#define COCOON_VFIO_SPEC_INIT { .size = sizeof(cocoon_vfio_spec) }
#define COCOON_VM_OPTS_INIT { .size = sizeof(cocoon_vm_opts) }

/* Zeroed fields mean defaults.  Strings are copied. */
typedef struct cocoon_options {
    size_t size;                /* sizeof(cocoon_options): COCOON_OPTIONS_INIT */
    const char *root_dir;       /* NULL: $COCOON_ROOT_DIR, else /var/lib/cocoon; made
                                 * absolute and canonical once, at engine creation */
    unsigned timeout_ms;        /* per request, connect to last byte; 0: 30000 */
    unsigned max_inflight_vms;  /* VMs with an operation in flight; 0: 256;
                                   capped at what the open-file limit leaves */
    const char *ch_binary;      /* VMM binary the running gate expects when the
                                   record names none; NULL: "cloud-hypervisor" */
    int socket_check;           /* virtiofsd liveness check before add-fs,
                                   for specs that leave it 0:
                                   0 or >0: on, <0: off (--no-socket-check) */
    unsigned detach_wait_ms;    /* cocoon_fs_detach / cocoon_device_detach
                                   wait this long for the guest to eject
                                   (--wait); 0: do not wait */
} cocoon_options;

typedef struct cocoon_fs_spec {
    size_t size;                /* sizeof(cocoon_fs_spec): COCOON_FS_SPEC_INIT */
    const char *socket;         /* absolute path of virtiofsd's socket */
    const char *tag;            /* guest mount tag */
    int num_queues;             /* 0: 1 */
    int queue_size;             /* 0: 1024 */
    int socket_check;           /* virtiofsd liveness check for this attach:
                                   0: the engine's option, >0: on, <0: off */
} cocoon_fs_spec;

typedef struct cocoon_vfio_spec {
    size_t size;                /* sizeof(cocoon_vfio_spec): COCOON_VFIO_SPEC_INIT */
    const char *pci;            /* BDF (01:00.0, 0000:01:00.0) or sysfs path */
    const char *id;             /* optional device id; NULL or "": CH picks */
} cocoon_vfio_spec;

/* The same as the _INIT macros, for a struct already declared. */
static inline void cocoon_options_init(cocoon_options *o)
{
    memset(o, 0, sizeof(*o));
    o->size = sizeof(*o);
}

static inline void cocoon_fs_spec_init(cocoon_fs_spec *s)
{
    memset(s, 0, sizeof(*s));
    s->size = sizeof(*s);
}

static inline void cocoon_vfio_spec_init(cocoon_vfio_spec *s)
{
    memset(s, 0, sizeof(*s));
    s->size = sizeof(*s);
}

/* Everything borrowed, valid only during the callback. */
typedef struct cocoon_result {
    int err;                    /* 0 or -errno (-EINVAL bad input, -ENOENT VM
                                   not found, -EHOSTDOWN VM not running,
                                   -EREMOTEIO CH answered 4xx/5xx, -ETIMEDOUT,
                                   -ECANCELED canceled before its request
                                   was sent (engine freed or drained),
                                   -EINPROGRESS engine freed after a
                                   state-changing request was sent: the
                                   outcome is unknown, ...) */
    const char *errstr;         /* "" on success, else a one-line reason */
    const char *vm;             /* the VM argument as submitted */
    const char *device_id;      /* attach: the id CH reports; detach: the id removed */
    const char *bdf;            /* attach: guest BDF from PciDeviceInfo, or NULL */
    int http_status;            /* status of the last CH reply, 0 if none */
    uint64_t latency_us;        /* submit to callback */
    int pid;                    /* vm start: the VMM's pid; else 0 */
} cocoon_result;

typedef void cocoon_done_fn(cocoon_engine *e, const cocoon_result *r, void *priv);

typedef struct cocoon_fs_entry {
    const char *id, *tag, *socket;
} cocoon_fs_entry;

typedef struct cocoon_device_entry {
    const char *id;
    const char *bdf;            /* host BDF, NULL when the path is not under
                                   /sys/bus/pci/devices/ */
} cocoon_device_entry;

/* Borrowed, valid only during the callback. */
typedef struct cocoon_listing {
    const cocoon_fs_entry *fs;
    size_t n_fs;
    const cocoon_device_entry *devices;
    size_t n_devices;
} cocoon_listing;

/* A VM that is not running lists as empty with r->err == 0. */
typedef void cocoon_list_fn(cocoon_engine *e, const cocoon_result *r,
                            const cocoon_listing *l, void *priv);

/* The engine runs on a loop of its own that the host drives from its
 * loop: one fd to watch for reading (cocoon_engine_fd), one deadline
 * (cocoon_engine_timeout_ms), one call when either comes
 * (cocoon_engine_process).  The adapters below do that for libev, GLib
 * (cocoon-glib.h) and libuv (cocoon-uv.h); any other loop uses the three
 * calls, or hooks.  One engine belongs to one loop and one thread: every
 * cocoon_* call on it, and every callback, happens in that thread.
 * Engines on different threads share nothing.
 *
 * libev: the engine is driven from loop; one engine per loop and thread.
 * Call cocoon_engine_free before ev_loop_destroy.  Should the loop be
 * destroyed first, the engine lets go of it then (an ev_cleanup watcher)
 * and is driven no more: what is pending, or submitted later, ends
 * -ECANCELED in cocoon_engine_free, which stays safe to call and must
 * still be called.  Create the loop with ev_loop_new (ev_default_loop
 * installs libev's own SIGCHLD handler, which takes child reaping away
 * from the host).  While no operation is pending the engine's watchers do
 * not keep ev_run going.  opt NULL: every default.  NULL with errno set
 * on failure (EINVAL, or E2BIG for opt's size; ENOMEM). */
cocoon_engine *cocoon_engine_new(struct ev_loop *loop, const cocoon_options *opt);

/* What an adapter gives the engine.  Set size to sizeof(cocoon_loop_hooks)
 * (later versions may add fields after it). */
typedef struct cocoon_loop_hooks {
    size_t size;
    void *data;                 /* passed to every hook */
    /* The next deadline (timeout_ms from now; 0: at once; -1: none) or
     * whether the engine has work (busy: an operation is pending; while
     * it is false, a loop that runs until nothing is left may stop) may
     * have changed.  Called from submits, from cocoon_engine_process (once,
     * at its end) and from nowhere else.  The host (re)arms one timer that
     * calls cocoon_engine_process. */
    void (*update)(void *data, int timeout_ms, bool busy);
    /* Called once from cocoon_engine_free, after the last operation
     * callback: stop watching the fd, drop the timer, free data.  May be
     * NULL. */
    void (*release)(void *data);
} cocoon_loop_hooks;

/* An engine for any loop.  With hooks NULL the host polls: before each
 * wait it watches cocoon_engine_fd() for reading with a timeout of
 * cocoon_engine_timeout_ms(), and calls cocoon_engine_process() when
 * either fires (a submit makes the fd readable, so a host that polls
 * already is woken).  hooks is copied.  NULL with errno set. */
cocoon_engine *cocoon_engine_new_hooks(const cocoon_loop_hooks *hooks, const cocoon_options *opt);
/* The engine's fd (an epoll fd): readable when cocoon_engine_process has
 * work.  Never closed by the host.  -EINVAL for NULL. */
int cocoon_engine_fd(const cocoon_engine *e);
/* Milliseconds until cocoon_engine_process must run (0: now, -1: no
 * deadline, only the fd). */
int cocoon_engine_timeout_ms(const cocoon_engine *e);
/* True while an operation is pending or a watcher of the engine must keep
 * the host's loop running. */
bool cocoon_engine_busy(const cocoon_engine *e);
/* Handles a bounded batch of ready I/O and the timers that are due, then
 * returns: 1 when it did something, 0 when nothing was ready, -EINVAL for
 * NULL or a freed engine.  Never blocks.  Callbacks run in here; one may
 * iterate the host's loop again (a nested call), and may free the engine
 * (the rest of the batch is then not run). */
int cocoon_engine_process(cocoon_engine *e);
/* Completes every pending operation, inside this call: with -ECANCELED
 * ("operation canceled: engine freed") when it had not sent its
 * state-changing request, else with -EINPROGRESS and "<op>: outcome
 * unknown: the request was already sent when the engine was freed" (the
 * VMM may have executed it; ask it with a list before acting again).  Safe
 * inside a callback (the free is deferred until the callback returns).
 * NULL: no-op. */
void cocoon_engine_free(cocoon_engine *e);
/* Stops starting anything, for a host that was interrupted and wants to
 * report what was done: every operation that has not started completes
 * inside this call with -ECANCELED ("<op>: canceled before it started"); a
 * running attach or detach that has not yet written its state-changing
 * request completes at its next step with -ECANCELED ("vm.add-fs: canceled
 * before the request was sent"); one whose request was written goes on to
 * its real outcome (reply, timeout and the lost-reply vm.info check, the
 * detach --wait poll), and so do list operations and running lifecycle
 * operations.  Submits afterwards return -ECANCELED.  Safe inside a
 * callback.  NULL: no-op. */
void cocoon_engine_drain(cocoon_engine *e);

/* Submits.  vm is a VM ref (id, name, unique id prefix of >= 3 chars) or an
 * absolute path to a CH API socket.  Arguments are copied.  Returns 0 and
 * calls back exactly once, or a negative errno (-EINVAL for NULL arguments,
 * -ENOMEM; -EINVAL or -E2BIG for a spec whose size is wrong) and never
 * calls back.  Spec validation errors arrive through the callback on a
 * later loop iteration. */
int cocoon_fs_attach(cocoon_engine *e, const char *vm, const cocoon_fs_spec *spec,
                     cocoon_done_fn *cb, void *priv);
int cocoon_fs_detach(cocoon_engine *e, const char *vm, const char *tag,
                     cocoon_done_fn *cb, void *priv);
int cocoon_device_attach(cocoon_engine *e, const char *vm,
                         const cocoon_vfio_spec *spec, cocoon_done_fn *cb, void *priv);
int cocoon_device_detach(cocoon_engine *e, const char *vm, const char *id,
                         cocoon_done_fn *cb, void *priv);
/* The same with this operation's own eject wait instead of the engine's
 * detach_wait_ms (0: do not wait), so one engine serves callers that want
 * different waits. */
int cocoon_fs_detach_wait(cocoon_engine *e, const char *vm, const char *tag, unsigned wait_ms,
                          cocoon_done_fn *cb, void *priv);
int cocoon_device_detach_wait(cocoon_engine *e, const char *vm, const char *id,
                              unsigned wait_ms, cocoon_done_fn *cb, void *priv);
/* fs and devices together, from one vm.info round trip. */
int cocoon_list(cocoon_engine *e, const char *vm, cocoon_list_fn *cb, void *priv);
/* One half of the listing (the other half is empty), with errors naming
 * "fs list" / "device list". */
int cocoon_fs_list(cocoon_engine *e, const char *vm, cocoon_list_fn *cb, void *priv);
int cocoon_device_list(cocoon_engine *e, const char *vm, cocoon_list_fn *cb, void *priv);

/* VM lifecycle, for a recorded VM (a ref, not a socket path).  Zeroed
 * fields take the defaults; strings are copied; NULL: every default. */
typedef struct cocoon_vm_opts {
    size_t size;                /* sizeof(cocoon_vm_opts): COCOON_VM_OPTS_INIT */
    const char *binary;         /* start: the VMM to run (absolute, or looked
                                   up in $PATH); stop: the binary the running
                                   gate expects when the record names none.
                                   NULL: the backend's default name */
    unsigned call_ms;           /* stop: each shutdown request, at most
                                   graceful_ms; 0: 2000 */
    unsigned graceful_ms;       /* stop: from the first shutdown request
                                   until SIGTERM; 0: 5000 */
    unsigned term_ms;           /* stop: after SIGTERM; 0: 3000 */
    unsigned kill_ms;           /* stop: after SIGKILL; 0: 2000 */
    bool force;                 /* stop: no shutdown request, SIGTERM at once;
                                   snapshot: even with devices attached */
    const char *dir;            /* snapshot: the existing, empty directory
                                   the VMM writes into (absolute) */
    unsigned snapshot_ms;       /* snapshot: deadline of the snapshot
                                   request alone (a big guest's memory
                                   takes long); 0: 600000 */
    bool paused;                /* restore: leave the restored VM paused
                                   (no resume; vm.info must say Paused) */
} cocoon_vm_opts;

static inline void cocoon_vm_opts_init(cocoon_vm_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->size = sizeof(*o);
}

/* Starts the VMM of a recorded VM in its own session with a pidfile and
 * waits for its API (10 s): Cloud Hypervisor must answer vmm.ping and
 * report a booted VM, state Running (it boots one only when given a
 * payload: without a kernel it has no VM, -EHOSTDOWN with a message
 * saying so); Firecracker is configured and started
 * through its pre-boot calls.  The record ends running (binary,
 * started_at) and r->pid is set; on failure the VMM is killed, the record
 * ends in state error and errstr carries the tail of the VMM log.  The
 * caller decides whether the VM is already running (see the running gate)
 * and serializes start and stop of one VM across processes. */
int cocoon_vm_start(cocoon_engine *e, const char *vm, const cocoon_vm_opts *o,
                    cocoon_done_fn *cb, void *priv);
/* Stops it: when the running gate passes, one shutdown request per step
 * (never repeated: a lost reply is answered by watching the process),
 * then the graceful wait, SIGTERM, SIGKILL; with force, SIGTERM at once.  A pid that fails the gate is
 * never signalled.  The record ends stopped and the pidfile is removed;
 * -ETIMEDOUT when even SIGKILL did not end the process (record untouched).
 * Operations on many VMs run concurrently; on one VM, in submission order
 * together with attaches. */
int cocoon_vm_stop(cocoon_engine *e, const char *vm, const cocoon_vm_opts *o,
                   cocoon_done_fn *cb, void *priv);
/* Pauses or resumes a running VM (o->binary: what the running gate
 * expects when the record names none; may be NULL): one vm.pause or
 * vm.resume (Firecracker: PATCH /vm), never repeated.  A reply lost after
 * the request was written is answered by one vm.info: state Paused (for a
 * resume: Running) completes with err 0 and the note "vm.pause: reply
 * lost; vm.info shows the VM Paused" in errstr; any other state fails
 * with "... shows the VM <state>".  Firecracker's vm.info is GET /, whose
 * "state" answers the same way.  The record is unchanged (paused is not a
 * record state). */
int cocoon_vm_pause(cocoon_engine *e, const char *vm, const cocoon_vm_opts *o,
                    cocoon_done_fn *cb, void *priv);
int cocoon_vm_resume(cocoon_engine *e, const char *vm, const cocoon_vm_opts *o,
                     cocoon_done_fn *cb, void *priv);
/* Snapshots a running VM into o->dir: vm.info first, and
 * with fs shares or VFIO devices attached -EBUSY naming them (they are not
 * captured; o->force snapshots anyway); then vm.pause, vm.snapshot
 * {"destination_url":"file://<dir>"} under o->snapshot_ms, and vm.resume
 * whatever the snapshot's outcome, each sent once (lost pause and resume
 * replies settled by vm.info as above; a lost snapshot reply is a
 * failure).  A failed snapshot says so and whether the VM was resumed; a
 * saved one whose resume failed is err 0 with errstr saying the VM stays
 * paused.  Firecracker: PATCH /vm, PUT /snapshot/create (a full snapshot
 * into <dir>/vmstate and <dir>/memory), PATCH /vm. */
int cocoon_vm_snapshot(cocoon_engine *e, const char *vm, const cocoon_vm_opts *o,
                       cocoon_done_fn *cb, void *priv);
/* Starts a stopped VM from the snapshot in o->dir instead of booting it:
 * a fresh VMM without a payload, one vm.restore {"source_url":
 * "file://<dir>"} (never repeated; CH takes it only while it has no VM; a
 * lost reply settled by vm.info: a Paused or Running VM is the restored
 * one, with the note "vm.restore: reply lost; vm.info shows the VM
 * Paused"), then one vm.resume (a lost reply settled likewise), and state
 * Running.  Firecracker: a process given no boot configuration, one PUT
 * /snapshot/load, PATCH /drives/<id> pointing each drive at the record's
 * file, then the resume.  Ends like cocoon_vm_start (record running,
 * r->pid, notes in r->errstr; on failure the VMM is killed and the record
 * is in state error). */
int cocoon_vm_restore(cocoon_engine *e, const char *vm, const cocoon_vm_opts *o,
                      cocoon_done_fn *cb, void *priv);

/* Error texts (r->errstr) by layer:
 *  - resolution failures carry the operation: "<op>: vm <ref>: VM not found"
 *    (-ENOENT), "<op>: vm <ref>: ambiguous ref ..." (-EINVAL);
 *  - a Firecracker VM: "<op>: backend firecracker: backend does not support
 *    fs attach" (or "device attach"), -EOPNOTSUPP;
 *  - the running gate: "vm <id> is stopped: VM not running",
 *    "vm <id> read pidfile: <reason>: VM not running" or
 *    "vm <id> pid <pid> not cloud-hypervisor: VM not running", -EHOSTDOWN
 *    (the CLI adds "vm is not running: ").  A target whose VMM has no
 *    booted VM (vm.info: no VM, or a state other than Running or Paused)
 *    gives "vm <id or path> is <state>: VM not running" ("is not created"
 *    when there is no VM), -EHOSTDOWN, before any state-changing call;
 *  - a recorded VM's API socket served by another process than the one
 *    the gate verified (the VMM died and something else bound the path):
 *    "query vm.info: connect(<sock>): peer is pid <n>, not the expected
 *    pid <m>" (or "vm.add-fs: ", "vm.pause: "...), -ESRCH, nothing sent
 *    to that process; when it is the vm.info asked after a lost reply,
 *    "<op>: outcome unknown: query vm.info: connect(...)..." with the lost
 *    reply's error;
 *  - spec validation and prechecks: their own text, e.g. "tag is required"
 *    (-EINVAL), "fs tag \"data\" already attached" (-EEXIST),
 *    "fs tag \"data\" not attached" (-ENODEV);
 *  - CH answering an error: "vm.add-fs: PUT http://localhost/api/v1/vm.add-fs
 *    → 409: <CH message>" (likewise "vm.add-device: ", "vm.remove-device
 *    <id>: ", "query vm.info: "), -EREMOTEIO.
 * A lost single-shot reply that vm.info shows succeeded completes with
 * err 0 and errstr carrying the note ("vm.add-fs: reply lost; vm.info shows
 * the device attached (id=...)"); otherwise errstr is "" on success. */

#ifdef __cplusplus
}
#endif
#endif
