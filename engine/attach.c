/* engine/attach.c: the operations on a running VM's devices as a state
 * machine on the host's loop:
 *   running gate -> GET vm.info -> prechecks -> PUT -> result
 * with a lost-reply reconcile and the detach --wait poll as extra states,
 * and the listing read from the same vm.info. */
#include "engine/core.h"
#include "engine/call.h"
#include "backends/gate.h"
#include "json/ch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENG_WAIT_POLL_S        0.050

static void op_send_info(struct eng_op *op, enum op_step step)
{
    int rc;

    op->step = (unsigned char)step;
    rc = eng_vm_send(op->vm, BACKEND_EP_INFO, NULL, NULL, 0, 0);
    if (rc) {
        char tmp[BASE_ERRSTR_MAX];

        memcpy(tmp, op->e->err, sizeof(tmp));
        base_errf(op->e->err, sizeof(op->e->err), rc, "query vm.info: %s", tmp);
        eng_op_fail(op, rc);
    }
}

static backend_ep op_put_ep(const struct eng_op *op)
{
    switch (op->kind) {
    case OP_FS_ATTACH: return BACKEND_EP_ADD_FS;
    case OP_DEV_ATTACH: return BACKEND_EP_ADD_DEVICE;
    default: return BACKEND_EP_REMOVE_DEVICE;
    }
}

static const backend_endpoint *op_put_row(const struct eng_op *op)
{
    return backend_endpoint_of(op->vm->ops, op_put_ep(op));
}

/* The endpoint's name as errors show it: the last path segment
 * ("vm.add-fs"). */
static const char *op_endpoint(const struct eng_op *op)
{
    const backend_endpoint *row = op_put_row(op);
    const char *slash = row ? strrchr(row->path, '/') : NULL;

    return slash ? slash + 1 : "?";
}

/* "vm.add-fs: ", "vm.add-device: ", "vm.remove-device <id>: " */
static void op_prefix(const struct eng_op *op, char *out, size_t n)
{
    if (op->kind == OP_FS_ATTACH || op->kind == OP_DEV_ATTACH)
        snprintf(out, n, "%s: ", op_endpoint(op));
    else
        snprintf(out, n, "vm.remove-device %s: ", op->res_id ? op->res_id : "");
}

static void op_send_put(struct eng_op *op, char *body, size_t len)
{
    int rc;

    op->step = ST_PUT;
    rc = eng_vm_send(op->vm, op_put_ep(op), NULL, body, len, 0);
    free(body);
    if (rc) {
        char tmp[BASE_ERRSTR_MAX], pre[128];

        memcpy(tmp, op->e->err, sizeof(tmp));
        op_prefix(op, pre, sizeof(pre));
        base_errf(op->e->err, sizeof(op->e->err), rc, "%s%s", pre, tmp);
        eng_op_fail(op, rc);
    }
}

void eng_fs_put(struct eng_op *op)
{
    cocoon_engine *e = op->e;
    json_fs jf = { (char *)op->fs_id, (char *)op->tag, (char *)op->socket,
                   op->num_queues, op->queue_size };
    char *body = NULL;
    size_t len = 0;
    int rc = json_fs_config_encode(&jf, &body, &len, e->err, sizeof(e->err));

    if (rc) {
        char tmp[BASE_ERRSTR_MAX];

        memcpy(tmp, e->err, sizeof(tmp));
        base_errf(e->err, sizeof(e->err), rc, "vm.add-fs: %s", tmp);
        free(body);
        eng_op_fail(op, rc);
        return;
    }
    op_send_put(op, body, len);
}

void eng_attach_run(struct eng_op *op)
{
    struct eng_vm *vm = op->vm;
    cocoon_engine *e = op->e;

    if (vm->rec) {
        int rc = gate_check(vm->rec, e->ch_binary, &vm->peer, e->err, sizeof(e->err));

        if (rc) {
            if (op_is_list(op))
                eng_op_list_empty(op);
            else
                eng_op_fail(op, rc);
            return;
        }
    }
    op_send_info(op, ST_INFO);
}

/* Decodes a vm.info reply into vi; on failure fails op and returns false. */
static bool op_decode_info(struct eng_op *op, const httpc_response *r, json_vm_info *vi,
                           const char *prefix)
{
    cocoon_engine *e = op->e;
    char tmp[BASE_ERRSTR_MAX];
    int rc;

    if (r->err) {
        base_errf(e->err, sizeof(e->err), r->err, "%squery vm.info: %s", prefix, r->errstr);
        eng_op_fail(op, op->lost_err ? op->lost_err : r->err);
        return false;
    }
    if (!backend_endpoint_ok(backend_endpoint_of(op->vm->ops, BACKEND_EP_INFO), r->status)) {
        const backend_endpoint *row = backend_endpoint_of(op->vm->ops, BACKEND_EP_INFO);

        eng_status_errf(tmp, sizeof(tmp), "", row->method, row->path, r->status, r->body,
                        r->body_len);
        base_errf(e->err, sizeof(e->err), 0, "%squery vm.info: %s", prefix, tmp);
        eng_op_fail(op, op->lost_err ? op->lost_err : -EREMOTEIO);
        return false;
    }
    memset(vi, 0, sizeof(*vi));
    rc = json_vm_info_decode(r->body, r->body_len, vi, tmp, sizeof(tmp));
    if (rc) {
        json_vm_info_fini(vi);
        base_errf(e->err, sizeof(e->err), rc, "%sdecode vm.info: %s", prefix, tmp);
        eng_op_fail(op, op->lost_err ? op->lost_err : rc);
        return false;
    }
    return true;
}

/* CH answers vm.info on a VMM without a VM with 404 (v53 on) or with 500
 * and "VM is not created" in the body (v46). */
bool eng_info_no_vm(const httpc_response *r)
{
    static const char novm[] = "VM is not created";

    if (r->err)
        return false;
    if (r->status == 404)
        return true;
    return r->status == 500 && r->body &&
           memmem(r->body, r->body_len, novm, sizeof(novm) - 1) != NULL;
}

/* Every target, recorded or direct, must have a booted VM: a VMM with no
 * VM, or with one created but not booted (never booted, or after a
 * vm.shutdown), takes an add into its config only and answers 204, so
 * nothing would be live.  So vm.info decides: no VM created, or a state
 * other than Running or Paused, is not running (a list op lists nothing;
 * Paused is refused by the attach checks).  Returns true when op was
 * completed here; vi is then finished. */
static bool op_not_running(struct eng_op *op, const httpc_response *r, json_vm_info *vi)
{
    cocoon_engine *e = op->e;
    char st[32];
    size_t i;

    if (vi) {
        if (strcmp(vi->state, "Running") == 0 || strcmp(vi->state, "Paused") == 0)
            return false;
        for (i = 0; vi->state[i] && i + 1 < sizeof(st); i++)
            st[i] = (char)(vi->state[i] >= 'A' && vi->state[i] <= 'Z' ? vi->state[i] + 32
                                                                      : vi->state[i]);
        st[i] = '\0';
        json_vm_info_fini(vi);
    } else if (eng_info_no_vm(r)) {
        snprintf(st, sizeof(st), "not created");
    } else {
        return false;
    }
    if (op_is_list(op)) {
        eng_op_list_empty(op);
        return true;
    }
    /* A record by its id, a direct target by its socket. */
    base_errf(e->err, sizeof(e->err), 0, "vm %s is %s: VM not running",
              op->vm->rec ? op->vm->rec->id : eng_vm_sock(op->vm), st);
    eng_op_fail(op, -EHOSTDOWN);
    return true;
}

/* The listing of a decoded vm.info: fs entries, and devices with their
 * host BDF (never a non-PCI path echoed as one).  Entries borrow from vi. */
static void op_list_from(struct eng_op *op, json_vm_info *vi)
{
    cocoon_engine *e = op->e;
    size_t n_fs = op->kind == OP_DEV_LIST ? 0 : vi->n_fs;
    size_t n_dev = op->kind == OP_FS_LIST ? 0 : vi->n_devices;
    cocoon_fs_entry *fs = calloc(n_fs + 1, sizeof(*fs));
    cocoon_device_entry *dev = calloc(n_dev + 1, sizeof(*dev));

    if (!fs || !dev) {
        free(fs);
        free(dev);
        json_vm_info_fini(vi);
        base_errf(e->err, sizeof(e->err), -ENOMEM, "list: out of memory");
        eng_op_fail(op, -ENOMEM);
        return;
    }
    for (size_t i = 0; i < n_fs; i++)
        fs[i] = (cocoon_fs_entry){ vi->fs[i].id, vi->fs[i].tag, vi->fs[i].socket };
    for (size_t i = 0; i < n_dev; i++) {
        dev[i].id = vi->devices[i].id;
        dev[i].bdf = vi->devices[i].path ? spec_bdf_from_path(vi->devices[i].path) : NULL;
    }
    eng_op_list_done(op, &(cocoon_listing){ fs, n_fs, dev, n_dev });
    free(fs);
    free(dev);
    json_vm_info_fini(vi);
}

/* fs attach after its prechecks: the liveness check, then the PUT. */
static void op_fs_attach_from(struct eng_op *op, json_vm_info *vi)
{
    cocoon_engine *e = op->e;
    spec_fs spec = { op->socket, op->tag, op->num_queues, op->queue_size };
    int rc = op->vm->ops->fs_attach_check(vi, &spec, op->fs_id, e->err, sizeof(e->err));

    json_vm_info_fini(vi);
    if (!rc && op->socket_check) {
        eng_unix_check(op);
        return;
    }
    if (rc)
        eng_op_fail(op, rc);
    else
        eng_fs_put(op);
}

/* The prechecks of a device attach or a detach, and the PUT body they
 * lead to (owned by the caller).  vi is finished here. */
static int op_put_body(struct eng_op *op, json_vm_info *vi, char **body, size_t *len)
{
    cocoon_engine *e = op->e;
    const struct backend_ops *ops = op->vm->ops;
    const char *id = NULL;
    char tmp[BASE_ERRSTR_MAX];
    int rc;

    switch (op->kind) {
    case OP_DEV_ATTACH:
        rc = ops->device_attach_check(vi, op->path, op->dev_id, e->err, sizeof(e->err));
        json_vm_info_fini(vi);
        if (!rc && (rc = json_device_config_encode(op->dev_id, op->path, body, len, e->err,
                                                   sizeof(e->err)))) {
            memcpy(tmp, e->err, sizeof(tmp));
            base_errf(e->err, sizeof(e->err), rc, "vm.add-device: %s", tmp);
        }
        return rc;
    case OP_FS_DETACH:
        rc = ops->fs_detach_find(vi, op->tag, &id, e->err, sizeof(e->err));
        if (!rc && !(op->res_id = strdup(id)))
            rc = base_errf(e->err, sizeof(e->err), -ENOMEM, "fs detach: out of memory");
        break;
    default:
        rc = ops->device_detach_check(vi, op->dev_id, e->err, sizeof(e->err));
        if (!rc && !(op->res_id = strdup(op->dev_id)))
            rc = base_errf(e->err, sizeof(e->err), -ENOMEM, "device detach: out of memory");
        break;
    }
    json_vm_info_fini(vi);
    if (!rc)
        rc = json_remove_device_encode(op->res_id, body, len, e->err, sizeof(e->err));
    return rc;
}

static void op_after_info(struct eng_op *op, const httpc_response *r)
{
    json_vm_info vi;
    char *body = NULL;
    size_t len = 0;
    int rc;

    if (op_not_running(op, r, NULL) || !op_decode_info(op, r, &vi, "") ||
        op_not_running(op, r, &vi))
        return;
    if (op_is_list(op)) {
        op_list_from(op, &vi);
        return;
    }
    if (op->kind == OP_FS_ATTACH) {
        op_fs_attach_from(op, &vi);
        return;
    }
    rc = op_put_body(op, &vi, &body, &len);
    if (rc) {
        free(body);
        eng_op_fail(op, rc);
        return;
    }
    op_send_put(op, body, len);
}

static void op_wait_poll_cb(lp_loop *loop, lp_timer *w, int revents);

static void op_detached(struct eng_op *op, char *note)
{
    if (note) {
        free(op->msg);
        op->msg = note;
    }
    if (!op->wait_ms) {
        eng_op_finish(op, 0, op->msg ? op->msg : "");
        return;
    }
    op->wait_deadline = eng_mono_s() + op->wait_ms / 1000.0;
    op_send_info(op, ST_WAIT);
}

static void op_after_put(struct eng_op *op, const httpc_response *r)
{
    cocoon_engine *e = op->e;
    char pre[128];
    bool attach = op->kind == OP_FS_ATTACH || op->kind == OP_DEV_ATTACH;

    if (r->err) {
        if (r->written && r->err != -ECANCELED && r->err != -ENOMEM) {
            /* The request reached CH, which may have executed it: never
             * resend; ask vm.info what happened instead. */
            op->lost_err = r->err;
            op->attempts = 1;
            op_send_info(op, ST_RECONCILE);
            return;
        }
        op_prefix(op, pre, sizeof(pre));
        base_errf(e->err, sizeof(e->err), r->err, "%s%s", pre, r->errstr);
        eng_op_fail(op, r->err);
        return;
    }
    if (attach && backend_endpoint_ok(op_put_row(op), r->status)) {
        if (r->status == 200 && r->body_len > 0) {
            json_pci_info pi = { 0 };
            char tmp[BASE_ERRSTR_MAX];
            int rc = json_pci_info_decode(r->body, r->body_len, &pi, tmp, sizeof(tmp));

            if (rc) {
                /* CH executed the call but its answer is unreadable: what
                 * happened is known only from vm.info, as for a lost reply. */
                json_pci_info_fini(&pi);
                op->lost_err = rc;
                op->attempts = 1;
                op_send_info(op, ST_RECONCILE);
                return;
            }
            op->res_id = pi.id;
            op->res_bdf = pi.bdf;
            eng_op_finish(op, 0, "");
            return;
        }
        /* Cold add: CH answers without PciDeviceInfo. */
        const char *fallback = op->kind == OP_FS_ATTACH ? op->fs_id
                               : (op->dev_id && *op->dev_id ? op->dev_id : NULL);
        if (!fallback) {
            base_errf(e->err, sizeof(e->err), 0,
                     "%s: empty response body and no fallback id (CH returned no "
                     "PciDeviceInfo)", op_endpoint(op));
            eng_op_fail(op, -EBADMSG);
            return;
        }
        if (!(op->res_id = strdup(fallback))) {
            op_prefix(op, pre, sizeof(pre));
            base_errf(e->err, sizeof(e->err), 0, "%sout of memory", pre);
            eng_op_fail(op, -ENOMEM);
            return;
        }
        eng_op_finish(op, 0, "");
        return;
    }
    if (!attach && backend_endpoint_ok(op_put_row(op), r->status)) {
        op_detached(op, NULL);
        return;
    }
    op_prefix(op, pre, sizeof(pre));
    eng_status_errf(e->err, sizeof(e->err), pre, op_put_row(op)->method, op_put_row(op)->path,
                    r->status, r->body, r->body_len);
    eng_op_fail(op, -EREMOTEIO);
}

static void op_reconcile_retry_cb(lp_loop *loop, lp_timer *w, int revents)
{
    struct eng_op *op = w->data;
    cocoon_engine *e = op->e;

    (void)loop;
    (void)revents;
    eng_enter(e);
    op->attempts++;
    op_send_info(op, ST_RECONCILE);
    eng_leave(e);
}

/* Every outcome of a lost reply is settled here, in one place, so the rule
 * "what the caller asked for is present, absent, or in another shape" reads
 * as one decision table for attach and detach alike; that is why it runs
 * past the usual length. */
static void op_after_reconcile(struct eng_op *op, const httpc_response *r)
{
    cocoon_engine *e = op->e;
    json_vm_info vi;
    char pre[128], outcome[160], *note;
    const char *id = NULL;
    bool present, other = false;

    /* The reconcile read asks a new question, so unlike the single-shot
     * calls it may be repeated under the retry policy. */
    if (eng_retry_again(true, op->attempts, r->err, r->status,
                        r->err == 0 && backend_endpoint_ok(backend_endpoint_of(
                                           op->vm->ops, BACKEND_EP_INFO), r->status))) {
        lp_timer_stop(e->loop, &op->timer);
        lp_set_cb(&op->timer, op_reconcile_retry_cb);
        lp_timer_set(&op->timer, eng_backoff_ms(op->attempts) / 1000.0, 0.);
        lp_timer_start(e->loop, &op->timer);
        return;
    }
    op_prefix(op, pre, sizeof(pre));
    snprintf(outcome, sizeof(outcome), "%soutcome unknown: ", pre);
    if (!op_decode_info(op, r, &vi, outcome))
        return;
    switch (op->kind) {
    case OP_FS_ATTACH: {
        /* The id alone would also match a concurrent attach of the same
         * tag with another socket: only the share this op asked for counts. */
        const json_fs *f = ch_fs_by_id(&vi, op->fs_id);

        present = f && f->tag && strcmp(f->tag, op->tag) == 0 && f->socket &&
                  strcmp(f->socket, op->socket) == 0;
        other = f && !present;
        id = op->fs_id;
        break;
    }
    case OP_DEV_ATTACH: {
        const json_device *d = ch_device_by_path(&vi, op->path);

        present = d && d->id && (!op->dev_id || !*op->dev_id || strcmp(d->id, op->dev_id) == 0);
        other = !present && ((d && d->id) ||
                             (op->dev_id && *op->dev_id && ch_device_by_id(&vi, op->dev_id)));
        id = present ? d->id : NULL;
        break;
    }
    default:
        present = ch_fs_by_id(&vi, op->res_id) || ch_device_by_id(&vi, op->res_id);
        break;
    }
    if (op->kind == OP_FS_ATTACH || op->kind == OP_DEV_ATTACH) {
        if (present && !(op->res_id = strdup(id))) {
            json_vm_info_fini(&vi);
            base_errf(e->err, sizeof(e->err), 0, "%sout of memory", pre);
            eng_op_fail(op, -ENOMEM);
            return;
        }
        json_vm_info_fini(&vi);
        if (other) {
            base_errf(e->err, sizeof(e->err), 0, "%sreply lost; vm.info shows that id or path "
                      "attached with other settings than this request's", pre);
            eng_op_fail(op, op->lost_err);
            return;
        }
        if (!present) {
            base_errf(e->err, sizeof(e->err), 0, "%sreply lost; vm.info shows no such device", pre);
            eng_op_fail(op, op->lost_err);
            return;
        }
        base_errf(e->err, sizeof(e->err), 0, "%sreply lost; vm.info shows the device attached (id=%s)",
                 pre, op->res_id);
        eng_op_finish(op, 0, e->err);
        return;
    }
    json_vm_info_fini(&vi);
    if (present) {
        base_errf(e->err, sizeof(e->err), 0, "%sreply lost; vm.info shows the device still attached",
                 pre);
        eng_op_fail(op, op->lost_err);
        return;
    }
    base_errf(e->err, sizeof(e->err), 0, "%sreply lost; vm.info shows the device removed", pre);
    note = strdup(e->err);
    op_detached(op, note);
}

static void op_wait_poll_cb(lp_loop *loop, lp_timer *w, int revents)
{
    struct eng_op *op = w->data;
    cocoon_engine *e = op->e;

    (void)loop;
    (void)revents;
    eng_enter(e);
    op_send_info(op, ST_WAIT);
    eng_leave(e);
}

static void op_after_wait(struct eng_op *op, const httpc_response *r)
{
    cocoon_engine *e = op->e;
    json_vm_info vi;
    bool gone;
    double now, left;

    if (!op_decode_info(op, r, &vi, ""))
        return;
    gone = !ch_tree_has(&vi, op->res_id);
    json_vm_info_fini(&vi);
    if (gone) {
        eng_op_finish(op, 0, op->msg ? op->msg : "");
        return;
    }
    now = eng_mono_s();
    left = op->wait_deadline - now;
    if (left <= 0) {
        base_errf(e->err, sizeof(e->err), 0,
                 "device %s removal requested but not yet ejected by the guest after %ds",
                 op->res_id, (int)((op->wait_ms + 999) / 1000));
        eng_op_fail(op, -ETIMEDOUT);
        return;
    }
    lp_timer_stop(e->loop, &op->timer);
    lp_set_cb(&op->timer, op_wait_poll_cb);
    lp_timer_set(&op->timer, left < ENG_WAIT_POLL_S ? left : ENG_WAIT_POLL_S, 0.);
    lp_timer_start(e->loop, &op->timer);
}

void eng_attach_on_http(struct eng_op *op, const httpc_response *r)
{
    switch (op->step) {
    case ST_INFO: op_after_info(op, r); break;
    case ST_PUT: op_after_put(op, r); break;
    case ST_RECONCILE: op_after_reconcile(op, r); break;
    case ST_WAIT: op_after_wait(op, r); break;
    default: break;
    }
}
