/* engine/lifecycle_state.c: pause, resume, snapshot and restore as engine
 * operations.  Each request is single-shot: a lost reply is answered by
 * vm.info's state, never by sending again.  A snapshot is pause, snapshot,
 * resume; a restore is vm.restore on a fresh VMM, then resume. */
#include "engine/lifecycle.h"
#include "engine/call.h"
#include "backends/gate.h"
#include "backends/launch.h"
#include "json/ch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------ pause, resume, snapshot */

/* Pause and resume are steps of a snapshot too: each ends in
 * lc->state_next with the outcome in e->err (a note on success). */
static const char *lc_state_ep_name(const struct eng_op *op)
{
    return op->lc->pausing ? "vm.pause" : "vm.resume";
}

static void lc_state_send(struct eng_op *op, bool pause, void (*next)(struct eng_op *, int))
{
    cocoon_engine *e = op->e;
    struct eng_lc *lc = op->lc;
    int rc;

    lc->pausing = pause;
    lc->state_next = next;
    lc->phase = LC_STATE;
    if (eng_lc_is_fc(op))
        rc = eng_lc_send(op, BACKEND_EP_PATCH_VM, NULL,
                     pause ? "{\"state\":\"Paused\"}" : "{\"state\":\"Resumed\"}", 0);
    else
        rc = eng_lc_send(op, pause ? BACKEND_EP_PAUSE : BACKEND_EP_RESUME, NULL, NULL, 0);
    if (rc) {
        char tmp[BASE_ERRSTR_MAX];

        memcpy(tmp, e->err, sizeof(tmp));
        base_errf(e->err, sizeof(e->err), rc, "%s: %s", lc_state_ep_name(op), tmp);
        next(op, rc);
    }
}

/* The request is single-shot: after a reply lost once the request was
 * written, CH may have acted on it, so the answer comes from vm.info. */
void eng_lc_after_state(struct eng_op *op, const httpc_response *r)
{
    cocoon_engine *e = op->e;
    struct eng_lc *lc = op->lc;
    backend_ep ep = eng_lc_is_fc(op) ? BACKEND_EP_PATCH_VM
                    : lc->pausing ? BACKEND_EP_PAUSE : BACKEND_EP_RESUME;
    const backend_endpoint *row = backend_endpoint_of(op->vm->ops, ep);
    const char *name = lc_state_ep_name(op);
    char tmp[BASE_ERRSTR_MAX];

    if (!r->err) {
        if (backend_endpoint_ok(row, r->status)) {
            e->err[0] = '\0';
            lc->state_next(op, 0);
            return;
        }
        eng_status_errf(tmp, sizeof(tmp), "", row->method, row->path, r->status, r->body,
                        r->body_len);
        base_errf(e->err, sizeof(e->err), 0, "%s: %s", name, tmp);
        lc->state_next(op, -EREMOTEIO);
        return;
    }
    if (!r->written || r->err == -ECANCELED || r->err == -ENOMEM) {
        base_errf(e->err, sizeof(e->err), 0, "%s: %s%s", name,
                  r->written ? "outcome unknown: " : "", r->errstr);
        lc->state_next(op, r->err);
        return;
    }
    op->lost_err = r->err;
    lc->phase = LC_STATE_INFO;
    if (eng_lc_send(op, BACKEND_EP_INFO, NULL, NULL, 0) != 0) {
        memcpy(tmp, e->err, sizeof(tmp));
        base_errf(e->err, sizeof(e->err), 0, "%s: outcome unknown: %s", name, tmp);
        lc->state_next(op, op->lost_err);
    }
}

/* Decodes a vm.info reply into vi; on failure the reason is in why. */
static int lc_decode_info(const httpc_response *r, json_vm_info *vi, char *why, size_t n)
{
    memset(vi, 0, sizeof(*vi));
    if (r->err)
        return base_errf(why, n, r->err, "query vm.info: %s", r->errstr);
    if (r->status != 200)
        return base_errf(why, n, -EREMOTEIO, "query vm.info: status %d", r->status);
    return json_vm_info_decode(r->body, r->body_len, vi, why, n);
}

void eng_lc_after_state_info(struct eng_op *op, const httpc_response *r)
{
    cocoon_engine *e = op->e;
    struct eng_lc *lc = op->lc;
    const char *name = lc_state_ep_name(op);
    const char *want = lc->pausing ? "Paused" : "Running";
    char tmp[BASE_ERRSTR_MAX] = "";
    json_vm_info vi;
    int rc = lc_decode_info(r, &vi, tmp, sizeof(tmp));

    if (rc) {
        base_errf(e->err, sizeof(e->err), 0, "%s: outcome unknown: %s", name, tmp);
        json_vm_info_fini(&vi);
        lc->state_next(op, op->lost_err);
        return;
    }
    base_errf(e->err, sizeof(e->err), 0, "%s: reply lost; vm.info shows the VM %s", name,
              vi.state);
    rc = strcmp(vi.state, want) == 0 ? 0 : op->lost_err;
    op->lost_err = 0;
    json_vm_info_fini(&vi);
    lc->state_next(op, rc);
}

static void lc_state_done(struct eng_op *op, int err)
{
    eng_op_fail(op, err);
}

static bool lc_gate(struct eng_op *op)
{
    char why[BASE_ERRSTR_MAX];
    pid_t pid;

    if (gate_check(op->vm->rec, eng_lc_binary(op), &pid, why, sizeof(why)) != 0) {
        eng_op_finish(op, -EHOSTDOWN, why);
        return false;
    }
    op->vm->peer = pid;
    return true;
}

void eng_lc_state(struct eng_op *op)
{
    if (lc_gate(op))
        lc_state_send(op, op->kind == OP_VM_PAUSE, lc_state_done);
}

/* A snapshot: vm.info (nothing attached unless forced), vm.pause,
 * vm.snapshot under its own deadline, vm.resume whatever the snapshot's
 * outcome; each request sent once. */
static void lc_snap_resumed(struct eng_op *op, int err)
{
    struct eng_lc *lc = op->lc;
    cocoon_engine *e = op->e;
    char tmp[BASE_ERRSTR_MAX];

    memcpy(tmp, e->err, sizeof(tmp));
    if (lc->snap_err)
        base_errf(e->err, sizeof(e->err), 0, "%s; %s%s", lc->snap_msg,
                  err ? "the VM stays paused: " : "the VM was resumed",
                  err ? tmp : "");
    else if (err)
        base_errf(e->err, sizeof(e->err), 0, "snapshot saved, but the VM stays paused: %s", tmp);
    else
        base_errf(e->err, sizeof(e->err), 0, "%s%s%s", lc->snap_msg,
                  lc->snap_msg[0] && tmp[0] ? "; " : "", tmp);
    /* A saved snapshot is a success even when the resume failed: the
     * files are whole, and the note says the VM is paused. */
    eng_op_fail(op, lc->snap_err);
}

void eng_lc_after_snap(struct eng_op *op, const httpc_response *r)
{
    struct eng_lc *lc = op->lc;
    const backend_endpoint *row = backend_endpoint_of(op->vm->ops, BACKEND_EP_SNAPSHOT);
    char tmp[BASE_ERRSTR_MAX];

    lc->snap_err = 0;
    lc->snap_msg[0] = '\0';
    if (r->err) {
        /* vm.info cannot tell whether the files were written: a lost
         * reply is a failed snapshot, never a second request. */
        lc->snap_err = r->err;
        base_errf(lc->snap_msg, sizeof(lc->snap_msg), 0, "vm.snapshot: %s%s",
                  r->written ? "outcome unknown: " : "", r->errstr);
    } else if (!backend_endpoint_ok(row, r->status)) {
        lc->snap_err = -EREMOTEIO;
        eng_status_errf(tmp, sizeof(tmp), "", row->method, row->path, r->status, r->body,
                        r->body_len);
        base_errf(lc->snap_msg, sizeof(lc->snap_msg), 0, "vm.snapshot: %s", tmp);
    } else if (lc->pause_note[0]) {
        snprintf(lc->snap_msg, sizeof(lc->snap_msg), "%s", lc->pause_note);
    }
    lc_state_send(op, false, lc_snap_resumed);
}

static void lc_snap_paused(struct eng_op *op, int err)
{
    struct eng_lc *lc = op->lc;
    cocoon_engine *e = op->e;
    char *body = NULL;
    size_t len;

    if (err) {
        eng_op_fail(op, err);
        return;
    }
    snprintf(lc->pause_note, sizeof(lc->pause_note), "%s", e->err);
    lc->phase = LC_SNAP;
    if (eng_lc_is_fc(op))
        err = (body = launch_fc_snapshot_create(op->path)) ? 0
              : base_errf(e->err, sizeof(e->err), -ENOMEM, "out of memory");
    else
        err = json_file_url_encode("destination_url", op->path, &body, &len, e->err,
                                   sizeof(e->err));
    if (err == 0)
        err = eng_lc_send(op, BACKEND_EP_SNAPSHOT, NULL, body, op->lc->o.snapshot_ms);
    free(body);
    if (err) {
        lc->snap_err = err;
        base_errf(lc->snap_msg, sizeof(lc->snap_msg), 0, "vm.snapshot: %s", e->err);
        lc_state_send(op, false, lc_snap_resumed);
    }
}

/* Runtime-attached devices are not restored with a snapshot, and a
 * restored VM would reconnect to a virtiofsd that served another client:
 * they are refused unless forced, by name. */
void eng_lc_after_snap_info(struct eng_op *op, const httpc_response *r)
{
    cocoon_engine *e = op->e;
    char tmp[BASE_ERRSTR_MAX] = "", list[BASE_ERRSTR_MAX] = "";
    json_vm_info vi;
    int rc = lc_decode_info(r, &vi, tmp, sizeof(tmp));
    size_t o = 0;

    if (rc) {
        json_vm_info_fini(&vi);
        base_errf(e->err, sizeof(e->err), 0, "snapshot save: %s", tmp);
        eng_op_fail(op, rc);
        return;
    }
    if (strcmp(vi.state, "Running") != 0) {
        base_errf(e->err, sizeof(e->err), 0, "snapshot save: vm %s is %s, not Running",
                  op->vm->rec->id, vi.state);
        json_vm_info_fini(&vi);
        eng_op_fail(op, -EBUSY);
        return;
    }
    for (size_t i = 0; i < vi.n_fs && o < sizeof(list); i++)
        o += (size_t)snprintf(list + o, sizeof(list) - o, "%sfs tag %s", o ? ", " : "",
                              vi.fs[i].tag ? vi.fs[i].tag : "?");
    for (size_t i = 0; i < vi.n_devices && o < sizeof(list); i++)
        o += (size_t)snprintf(list + o, sizeof(list) - o, "%sdevice %s", o ? ", " : "",
                              vi.devices[i].id ? vi.devices[i].id : "?");
    json_vm_info_fini(&vi);
    if (o && !op->lc->o.force) {
        base_errf(e->err, sizeof(e->err), 0,
                  "snapshot save: vm %s has runtime-attached devices (%s), which a snapshot "
                  "does not capture; detach them first, or use --force",
                  op->vm->rec->id, list);
        eng_op_fail(op, -EBUSY);
        return;
    }
    lc_state_send(op, true, lc_snap_paused);
}

void eng_lc_snapshot(struct eng_op *op)
{
    cocoon_engine *e = op->e;
    int rc;

    if (!backend_endpoint_of(op->vm->ops, BACKEND_EP_SNAPSHOT)) {
        base_errf(e->err, sizeof(e->err), 0, "snapshot save: backend %s: not supported",
                  op->vm->ops->short_name);
        eng_op_fail(op, -EOPNOTSUPP);
        return;
    }
    if (!op->lc->o.snapshot_ms)
        op->lc->o.snapshot_ms = 600000;
    if (!lc_gate(op))
        return;
    op->lc->phase = LC_SNAP_INFO;
    rc = eng_lc_send(op, BACKEND_EP_INFO, NULL, NULL, 0);
    if (rc)
        eng_op_fail(op, rc);
}

/* ----------------------------------------------------------- restore */

/* After the resume, the start's own check: vm.info must say Running. */
static void lc_restore_resumed(struct eng_op *op, int err)
{
    struct eng_lc *lc = op->lc;
    size_t o = strlen(lc->note);
    int rc;

    if (err) {
        eng_lc_start_fail(op, err, op->e->err);
        return;
    }
    if (op->e->err[0])
        snprintf(lc->note + o, sizeof(lc->note) - o, "%s%s", o ? "; " : "", op->e->err);
    lc->phase = LC_INFO;
    rc = eng_lc_send(op, BACKEND_EP_INFO, NULL, NULL, 0);
    if (rc)
        eng_lc_start_fail(op, rc, op->e->err);
}

/* Resumed, or left paused when the caller asked: either way vm.info has
 * the last word on the state. */
static void lc_restore_done(struct eng_op *op)
{
    if (op->lc->o.paused) {
        op->lc->want_paused = true;
        op->e->err[0] = '\0';
        lc_restore_resumed(op, 0);
        return;
    }
    lc_state_send(op, false, lc_restore_resumed);
}

/* The VM is loaded and paused.  A Firecracker snapshot names the drive
 * files of the VM it was taken of: each drive is pointed at the record's
 * own file (a clone's copy) before the VM runs. */
static void lc_restore_loaded(struct eng_op *op)
{
    struct eng_lc *lc = op->lc;
    const store_vm *vm = op->vm->rec;
    int rc = 0;

    for (size_t i = 0; eng_lc_is_fc(op) && rc == 0 && i < vm->config.n_disks; i++) {
        char id[32];

        launch_fc_drive_id(i, id, sizeof(id));
        rc = eng_lc_seq_add(lc, BACKEND_EP_DRIVE_UPDATE, id,
                            launch_fc_drive_patch(id, vm->config.disks[i]));
    }
    if (rc) {
        eng_lc_start_fail(op, rc, "out of memory");
        return;
    }
    lc->seq_done = lc_restore_done;
    eng_lc_seq_next(op);
}

/* The VMM is up without a VM: one vm.restore (Firecracker: one PUT
 * /snapshot/load, left paused), then the resume unless opts.paused. */
void eng_lc_restore(struct eng_op *op)
{
    char *body = NULL;
    size_t len;
    int rc = 0;

    if (eng_lc_is_fc(op))
        rc = (body = launch_fc_snapshot_load(op->path)) ? 0
             : base_errf(op->e->err, sizeof(op->e->err), -ENOMEM, "out of memory");
    else
        rc = json_file_url_encode("source_url", op->path, &body, &len, op->e->err,
                                  sizeof(op->e->err));
    if (rc == 0) {
        op->lc->phase = LC_RESTORE;
        rc = eng_lc_send(op, BACKEND_EP_RESTORE, NULL, body, 0);
    }
    free(body);
    if (rc)
        eng_lc_start_fail(op, rc, op->e->err);
}

/* Single-shot: once the request was written, a lost reply is answered by
 * vm.info (a VM there, paused or running, is the restored one), never by
 * sending the restore again. */
void eng_lc_after_restore(struct eng_op *op, const httpc_response *r)
{
    const backend_endpoint *row = backend_endpoint_of(op->vm->ops, BACKEND_EP_RESTORE);
    char tmp[BASE_ERRSTR_MAX];

    if (!r->err && backend_endpoint_ok(row, r->status)) {
        lc_restore_loaded(op);
        return;
    }
    if (!r->err) {
        eng_status_errf(tmp, sizeof(tmp), "", row->method, row->path, r->status, r->body,
                        r->body_len);
        eng_lc_start_fail(op, -EREMOTEIO, tmp);
        return;
    }
    if (!r->written || r->err == -ECANCELED || r->err == -ENOMEM) {
        eng_lc_start_fail(op, r->err, r->errstr);
        return;
    }
    op->lost_err = r->err;
    snprintf(op->lc->last, sizeof(op->lc->last), "%s", r->errstr);
    op->lc->phase = LC_RESTORE_INFO;
    if (eng_lc_send(op, BACKEND_EP_INFO, NULL, NULL, 0) != 0) {
        snprintf(tmp, sizeof(tmp), "vm.restore: outcome unknown: %.900s", op->e->err);
        eng_lc_start_fail(op, op->lost_err, tmp);
    }
}

void eng_lc_after_restore_info(struct eng_op *op, const httpc_response *r)
{
    struct eng_lc *lc = op->lc;
    char tmp[BASE_ERRSTR_MAX] = "", why[BASE_ERRSTR_MAX];
    json_vm_info vi;
    bool novm = eng_info_no_vm(r);
    int rc = novm ? 0 : lc_decode_info(r, &vi, tmp, sizeof(tmp));
    const char *st = novm || rc ? "" : vi.state;

    if (!novm && rc == 0 && (strcmp(st, "Paused") == 0 || strcmp(st, "Running") == 0)) {
        snprintf(lc->note, sizeof(lc->note), "vm.restore: reply lost; vm.info shows the VM %.32s",
                 st);
        json_vm_info_fini(&vi);
        op->lost_err = 0;
        lc_restore_loaded(op);
        return;
    }
    if (rc)
        snprintf(why, sizeof(why), "vm.restore: outcome unknown: %.900s", tmp);
    else
        snprintf(why, sizeof(why), "vm.restore: %.900s; vm.info shows no restored VM%s%.32s%s",
                 lc->last, novm ? "" : " (state ", st, novm ? "" : ")");
    if (!novm && rc == 0)
        json_vm_info_fini(&vi);
    rc = op->lost_err;
    op->lost_err = 0;
    eng_lc_start_fail(op, rc, why);
}
