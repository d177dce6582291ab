/* engine/engine.c: the asynchronous operation engine behind cocoon.h.
 *
 * Every operation is a small state machine on the host's loop:
 *   submit -> (kick timer) normalize error / resolve -> per-VM FIFO ->
 *   running gate -> GET vm.info -> prechecks -> PUT -> result
 * with a lost-reply reconcile and the detach --wait poll as extra states.
 * One connection per VM and one operation at a time on it; VMs run
 * concurrently up to max_inflight_vms, the rest wait in FIFO order. */
#include "engine/core.h"
#include "engine/engine_int.h"
#include "http/base.h"
#include "backends/backend.h"
#include "backends/gate.h"
#include "backends/spec.h"
#include "backends/store.h"
#include "http/client.h"
#include "json/ch.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ENG_DEFAULT_TIMEOUT_MS 30000u
#define ENG_DEFAULT_INFLIGHT   256u
#define ENG_WAIT_POLL_S        0.050
#define ENG_RECONCILE_ATTEMPTS 4

static const char *const op_names[] = {
    [OP_FS_ATTACH] = "fs attach", [OP_FS_DETACH] = "fs detach",
    [OP_DEV_ATTACH] = "device attach", [OP_DEV_DETACH] = "device detach",
    [OP_LIST] = "list", [OP_FS_LIST] = "fs list", [OP_DEV_LIST] = "device list",
    [OP_VM_START] = "vm start", [OP_VM_STOP] = "vm stop",
};

static const char *const eng_backends[2] = { STORE_BACKEND_CH, STORE_BACKEND_FC };


static bool op_is_list(const struct eng_op *op)
{
    return op->kind == OP_LIST || op->kind == OP_FS_LIST || op->kind == OP_DEV_LIST;
}

static bool op_is_fs(const struct eng_op *op)
{
    return op->kind == OP_FS_ATTACH || op->kind == OP_FS_DETACH || op->kind == OP_FS_LIST;
}

/* ---------------------------------------------------------------- caches */

static void sidx_fini(struct eng_sidx *x)
{
    free(x->keys);
    free(x->vals);
    memset(x, 0, sizeof(*x));
}

static int sidx_put(struct eng_sidx *x, const char *key, long val)
{
    size_t i = base_hash(key, strlen(key)) & (x->cap - 1);

    while (x->keys[i]) {
        if (strcmp(x->keys[i], key) == 0) {
            x->vals[i] = -1;
            return 0;
        }
        i = (i + 1) & (x->cap - 1);
    }
    x->keys[i] = key;
    x->vals[i] = val;
    return 0;
}

/* -2: absent, -1: duplicated, else the index. */
static long sidx_get(const struct eng_sidx *x, const char *key)
{
    size_t i;

    if (!x->cap)
        return -2;
    i = base_hash(key, strlen(key)) & (x->cap - 1);
    while (x->keys[i]) {
        if (strcmp(x->keys[i], key) == 0)
            return x->vals[i];
        i = (i + 1) & (x->cap - 1);
    }
    return -2;
}

static int sidx_build(struct eng_sidx *x, const store_db *db, bool names)
{
    size_t cap = 16;

    while (cap < db->n * 2 + 2)
        cap *= 2;
    x->keys = calloc(cap, sizeof(*x->keys));
    x->vals = calloc(cap, sizeof(*x->vals));
    x->cap = cap;
    if (!x->keys || !x->vals) {
        sidx_fini(x);
        return -ENOMEM;
    }
    for (size_t i = 0; i < db->n; i++) {
        const char *k = names ? db->vms[i].config.name : db->vms[i].id;

        if (k && *k)
            sidx_put(x, k, (long)i);
    }
    return 0;
}

static void db_cache_drop(cocoon_engine *e)
{
    for (int b = 0; b < 2; b++) {
        store_db_fini(&e->db[b]);
        memset(&e->db[b], 0, sizeof(e->db[b]));
        sidx_fini(&e->by_id[b]);
        sidx_fini(&e->by_name[b]);
    }
    free(e->db_err);
    e->db_err = NULL;
    e->db_rc = 0;
    e->db_valid = false;
}

static void db_cache_load(cocoon_engine *e)
{
    unsigned it = ev_iteration(e->loop);

    if (e->db_valid && e->db_iter == it)
        return;
    db_cache_drop(e);
    e->db_valid = true;
    e->db_iter = it;
    for (int b = 0; b < 2 && !e->db_rc; b++) {
        e->db_rc = store_load(e->root, eng_backends[b], &e->db[b], e->err, sizeof(e->err));
        if (e->db_rc) {
            e->db_err = strdup(e->err);
            break;
        }
        if (sidx_build(&e->by_id[b], &e->db[b], false) ||
            sidx_build(&e->by_name[b], &e->db[b], true)) {
            e->db_rc = -ENOMEM;
            e->db_err = strdup("resolve: out of memory");
        }
    }
}

/* SPEC §1 resolution, tier by tier across both backends, against the
 * iteration's cached stores.  Returns the record (borrowed from the cache)
 * or NULL with e->err set. */
static const store_vm *eng_resolve(cocoon_engine *e, const char *ref, int *rc)
{
    const store_vm *hit[2] = { NULL, NULL };
    size_t count[2] = { 0, 0 };
    size_t rlen = strlen(ref);
    char q[300];

    db_cache_load(e);
    if (e->db_rc) {
        *rc = e->db_rc;
        base_errf(e->err, sizeof(e->err), 0, "%s", e->db_err ? e->db_err : "store load failed");
        return NULL;
    }
    for (int tier = 0; tier < 3 && !count[0] && !count[1]; tier++) {
        for (int b = 0; b < 2; b++) {
            if (tier < 2) {
                long v = sidx_get(tier == 0 ? &e->by_id[b] : &e->by_name[b], ref);

                if (v >= 0) {
                    hit[b] = &e->db[b].vms[v];
                    count[b] = 1;
                } else if (v == -1) {
                    count[b] = 2;
                }
                continue;
            }
            if (rlen < 3)
                continue;
            for (size_t i = 0; i < e->db[b].n; i++) {
                if (strncmp(e->db[b].vms[i].id, ref, rlen) == 0) {
                    hit[b] = &e->db[b].vms[i];
                    count[b]++;
                }
            }
        }
    }
    if (count[0] > 1 || count[1] > 1) {
        base_quote(q, sizeof(q), ref);
        *rc = base_errf(e->err, sizeof(e->err), -EINVAL, "ambiguous ref %s: multiple matches", q);
        return NULL;
    }
    if (count[0] && count[1]) {
        *rc = base_errf(e->err, sizeof(e->err), -EINVAL, "VM ref resolves to multiple backends");
        return NULL;
    }
    if (!count[0] && !count[1]) {
        *rc = base_errf(e->err, sizeof(e->err), -ENOENT, "VM not found");
        return NULL;
    }
    *rc = 0;
    return hit[0] ? hit[0] : hit[1];
}

static size_t unix_wanted_add(const struct eng_op *op, const char **want, size_t n)
{
    for (; op; op = op->next)
        if (op->kind == OP_FS_ATTACH && op->socket && op->socket_check && !op->pre_err) {
            if (want)
                want[n] = op->socket;
            n++;
        }
    return n;
}

/* Only the sockets of pending fs attaches are looked up, so the snapshot
 * keeps just those (a path left out reads as a miss, which the recheck
 * then asks about by itself). */
static socktab *unix_snapshot_load(cocoon_engine *e)
{
    const char **want;
    size_t n = unix_wanted_add(e->start_head, NULL, 0);
    socktab *s;

    for (size_t i = 0; i < e->nbuckets; i++)
        for (struct eng_vm *vm = e->buckets[i]; vm; vm = vm->hnext)
            n = unix_wanted_add(vm->head, NULL, n);
    want = malloc((n ? n : 1) * sizeof(*want));
    if (!want)
        return socktab_listening(NULL, 0);
    n = unix_wanted_add(e->start_head, want, 0);
    for (size_t i = 0; i < e->nbuckets; i++)
        for (struct eng_vm *vm = e->buckets[i]; vm; vm = vm->hnext)
            n = unix_wanted_add(vm->head, want, n);
    s = socktab_listening(want, n);
    free(want);
    return s;
}

static void unix_snapshot_take(cocoon_engine *e)
{
    socktab_free(e->unix_set);
    e->unix_set = unix_snapshot_load(e);
    e->unix_loaded = true;
    e->unix_gen = e->gen;
    e->unix_seq++;
}

static void unix_snapshot_drop(cocoon_engine *e)
{
    socktab_free(e->unix_set);
    e->unix_set = NULL;
    e->unix_loaded = false;
}

/* A snapshot taken after op was submitted.  NULL when the kernel's socket
 * table cannot be read: the listener part is skipped. */
static const socktab *eng_unix_set(cocoon_engine *e, const struct eng_op *op)
{
    if (!e->unix_loaded || (int)(e->unix_gen - op->gen) < 0)
        unix_snapshot_take(e);
    return e->unix_set;
}

/* ------------------------------------------------------------- lifecycle */

static void engine_destroy(cocoon_engine *e);
static void engine_pump(cocoon_engine *e);

void eng_enter(cocoon_engine *e)
{
    e->depth++;
}

/* Last thing a libev callback of ours does: a free requested inside a user
 * callback happens here, once nothing of ours is on the stack. */
void eng_leave(cocoon_engine *e)
{
    if (--e->depth == 0 && e->free_requested && !e->dying)
        engine_destroy(e);
}

static void op_free(struct eng_op *op)
{
    if (op->e && op->e->loop)
        ev_timer_stop(op->e->loop, &op->timer);
    free(op->res_id);
    free(op->res_bdf);
    free(op->msg);
    eng_lc_free(op->lc);
    free(op);
}

/* The snapshot is dropped once nothing is pending, so an idle engine does
 * not hold a fleet's worth of socket paths. */
static void op_gone(cocoon_engine *e)
{
    if (--e->n_ops == 0 && !e->dying)
        unix_snapshot_drop(e);
}

/* The text a callback reads must stay put while the callback runs a
 * nested loop iteration that completes other operations, so it lives in
 * the op itself, never in the engine's scratch buffer. */
static const char *op_own_text(struct eng_op *op, const char *text)
{
    char *copy;

    if (!text || !*text)
        return "";
    if (text == op->msg)
        return text;
    copy = strdup(text);
    if (!copy)
        return "out of memory";
    free(op->msg);
    op->msg = copy;
    return copy;
}

/* Calls back and frees op.  The caller has already unlinked op. */
static void op_complete(struct eng_op *op, int err, const char *errstr)
{
    cocoon_engine *e = op->e;
    cocoon_result r = { 0 };
    cocoon_listing empty = { 0 };

    r.err = err;
    r.errstr = op_own_text(op, errstr);
    r.vm = op->vm_arg;
    r.device_id = op->res_id;
    r.bdf = op->res_bdf;
    r.http_status = op->http_status;
    r.latency_us = (base_mono_ns() - op->t0_ns) / 1000;
    r.pid = op->pid;
    e->depth++;
    if (op_is_list(op))
        op->list(e, &r, &empty, op->priv);
    else
        op->done(e, &r, op->priv);
    e->depth--;
    op_free(op);
    op_gone(e);
}

static void ready_push(cocoon_engine *e, struct eng_vm *vm)
{
    if (vm->listed)
        return;
    vm->listed = true;
    vm->link = NULL;
    if (e->ready_tail)
        e->ready_tail->link = vm;
    else
        e->ready_head = vm;
    e->ready_tail = vm;
}

void eng_op_finish(struct eng_op *op, int err, const char *errstr)
{
    struct eng_vm *vm = op->vm;
    cocoon_engine *e = op->e;

    if (vm) {
        vm->cur = NULL;
        vm->head = op->next;
        if (!vm->head)
            vm->tail = NULL;
    }
    op_complete(op, err, errstr);
    if (vm && !e->free_requested) {
        ready_push(e, vm);
        engine_pump(e);
    }
}

static void op_fail(struct eng_op *op, int err)
{
    eng_op_finish(op, err, op->e->err);
}

static void op_list_done(struct eng_op *op, const cocoon_listing *l)
{
    struct eng_vm *vm = op->vm;
    cocoon_engine *e = op->e;
    cocoon_result r = { 0 };

    vm->cur = NULL;
    vm->head = op->next;
    if (!vm->head)
        vm->tail = NULL;
    r.errstr = "";
    r.vm = op->vm_arg;
    r.http_status = op->http_status;
    r.latency_us = (base_mono_ns() - op->t0_ns) / 1000;
    e->depth++;
    op->list(e, &r, l, op->priv);
    e->depth--;
    op_free(op);
    op_gone(e);
    if (!e->free_requested) {
        ready_push(e, vm);
        engine_pump(e);
    }
}

static void op_list_empty(struct eng_op *op)
{
    cocoon_listing empty = { 0 };

    op_list_done(op, &empty);
}

/* ------------------------------------------------------------ VM table */

static void vm_table_remove(cocoon_engine *e, struct eng_vm *vm)
{
    struct eng_vm **pp = &e->buckets[vm->hash & (e->nbuckets - 1)];

    while (*pp && *pp != vm)
        pp = &(*pp)->hnext;
    if (*pp) {
        *pp = vm->hnext;
        e->nvms--;
    }
}

static int vm_table_grow(cocoon_engine *e)
{
    size_t n = e->nbuckets ? e->nbuckets * 2 : 64;
    struct eng_vm **nb = calloc(n, sizeof(*nb));

    if (!nb)
        return -ENOMEM;
    for (size_t i = 0; i < e->nbuckets; i++) {
        struct eng_vm *vm = e->buckets[i], *nx;

        for (; vm; vm = nx) {
            nx = vm->hnext;
            vm->hnext = nb[vm->hash & (n - 1)];
            nb[vm->hash & (n - 1)] = vm;
        }
    }
    free(e->buckets);
    e->buckets = nb;
    e->nbuckets = n;
    return 0;
}

static void vm_free(struct eng_vm *vm)
{
    httpc_conn_free(vm->conn);
    if (vm->rec) {
        store_vm_fini(vm->rec);
        free(vm->rec);
    }
    free(vm);
}

static store_vm *vm_rec_copy(const store_vm *rec)
{
    store_vm *c = calloc(1, sizeof(*c));

    if (c && store_vm_copy(c, rec)) {
        free(c);
        return NULL;
    }
    return c;
}

/* Finds or creates the VM for key; rec is copied on creation, and again
 * when an idle VM is taken up, so the gate never sees an old record. */
static struct eng_vm *vm_get(cocoon_engine *e, const char *key, const store_vm *rec)
{
    size_t klen = strlen(key);
    uint64_t h = base_hash(key, klen);
    struct eng_vm *vm;

    if (e->nbuckets)
        for (vm = e->buckets[h & (e->nbuckets - 1)]; vm; vm = vm->hnext)
            if (vm->hash == h && strcmp(vm->key, key) == 0) {
                if (rec && vm->idle) {
                    store_vm *fresh = vm_rec_copy(rec);

                    if (!fresh)
                        return NULL;
                    if (vm->rec) {
                        store_vm_fini(vm->rec);
                        free(vm->rec);
                    }
                    vm->rec = fresh;
                }
                return vm;
            }
    if (e->nvms + 1 > e->nbuckets && vm_table_grow(e))
        return NULL;
    vm = calloc(1, sizeof(*vm) + klen + 1);
    if (!vm)
        return NULL;
    memcpy(vm->key, key, klen + 1);
    vm->hash = h;
    vm->e = e;
    if (rec && !(vm->rec = vm_rec_copy(rec))) {
        free(vm);
        return NULL;
    }
    vm->hnext = e->buckets[h & (e->nbuckets - 1)];
    e->buckets[h & (e->nbuckets - 1)] = vm;
    e->nvms++;
    return vm;
}

static const char *vm_sock(const struct eng_vm *vm)
{
    return vm->key + 1;
}

/* ------------------------------------------------------------- requests */

static void on_http(httpc_conn *c, const httpc_response *r, void *priv);

int eng_vm_send(struct eng_vm *vm, backend_ep ep, const char *id, const char *body, size_t len,
                unsigned timeout_ms)
{
    cocoon_engine *e = vm->e;
    const backend_endpoint *row = backend_endpoint_of(vm->ops, ep);
    const char *method, *path;
    char full[512];

    if (!row)
        return base_errf(e->err, sizeof(e->err), -EOPNOTSUPP, "backend %s has no such endpoint",
                        vm->ops ? vm->ops->short_name : "?");
    method = row->method;
    path = row->path;
    if (id) {
        int n = snprintf(full, sizeof(full), "%s%s", row->path, id);

        if (n < 0 || (size_t)n >= sizeof(full))
            return base_errf(e->err, sizeof(e->err), -ENAMETOOLONG, "%s %s%s: path too long",
                            method, path, id);
        path = full;
    }

    if (!vm->conn) {
        vm->conn = httpc_conn_new(e->loop, vm_sock(vm));
        if (!vm->conn) {
            int er = errno ? errno : ENOMEM;

            return base_errf(e->err, sizeof(e->err), -er, "connect(%s): %s",
                            vm_sock(vm), strerror(er));
        }
    }
    int rc = httpc_conn_send(vm->conn, method, path, body, len,
                             timeout_ms ? timeout_ms : e->timeout_ms, on_http, vm);
    if (rc)
        base_errf(e->err, sizeof(e->err), rc, "%s %s: %s", method, path, strerror(-rc));
    return rc;
}

static void op_send_info(struct eng_op *op, enum op_step step)
{
    int rc;

    op->step = (unsigned char)step;
    rc = eng_vm_send(op->vm, BACKEND_EP_INFO, NULL, NULL, 0, 0);
    if (rc) {
        char tmp[BASE_ERRSTR_MAX];

        memcpy(tmp, op->e->err, sizeof(tmp));
        base_errf(op->e->err, sizeof(op->e->err), rc, "query vm.info: %s", tmp);
        op_fail(op, rc);
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
        op_fail(op, rc);
    }
}

static void op_fs_put(struct eng_op *op)
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
        op_fail(op, rc);
        return;
    }
    op_send_put(op, body, len);
}

/* The listener was missing from the snapshot: look again in a later one
 * before saying nothing listens.  Misses of one loop iteration share that
 * second read. */
static void op_recheck_defer(struct eng_op *op)
{
    cocoon_engine *e = op->e;

    op->step = ST_RECHECK;
    op->recheck_seq = e->unix_seq;
    op->recheck_next = NULL;
    if (e->recheck_tail)
        e->recheck_tail->recheck_next = op;
    else
        e->recheck_head = op;
    e->recheck_tail = op;
    if (!ev_is_active(&e->recheck)) {
        ev_timer_set(&e->recheck, 0., 0.);
        ev_timer_start(e->loop, &e->recheck);
    }
}

static void recheck_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    cocoon_engine *e = w->data;
    struct eng_op *list = e->recheck_head;

    (void)loop;
    (void)revents;
    e->recheck_head = e->recheck_tail = NULL;
    eng_enter(e);
    while (list && !e->free_requested) {
        struct eng_op *op = list;
        int rc;

        list = op->recheck_next;
        if (e->unix_seq == op->recheck_seq || !e->unix_loaded)
            unix_snapshot_take(e);
        rc = ch_socket_check(op->socket, e->unix_set, e->err, sizeof(e->err));
        if (rc)
            op_fail(op, rc);
        else
            op_fs_put(op);
    }
    /* Left over after a free request: engine_destroy cancels them through
     * their VMs' queues. */
    eng_leave(e);
}

static void op_run(struct eng_op *op)
{
    struct eng_vm *vm = op->vm;
    cocoon_engine *e = op->e;

    if (op->kind == OP_VM_START || op->kind == OP_VM_STOP) {
        eng_lc_run(op);
        return;
    }

    if (vm->rec) {
        int rc = gate_check(vm->rec, e->ch_binary, NULL, e->err, sizeof(e->err));

        if (rc) {
            if (op_is_list(op))
                op_list_empty(op);
            else
                op_fail(op, rc);
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
        op_fail(op, op->lost_err ? op->lost_err : r->err);
        return false;
    }
    if (!backend_endpoint_ok(backend_endpoint_of(op->vm->ops, BACKEND_EP_INFO), r->status)) {
        const backend_endpoint *row = backend_endpoint_of(op->vm->ops, BACKEND_EP_INFO);

        eng_status_errf(tmp, sizeof(tmp), "", row->method, row->path, r->status, r->body,
                        r->body_len);
        base_errf(e->err, sizeof(e->err), 0, "%squery vm.info: %s", prefix, tmp);
        op_fail(op, op->lost_err ? op->lost_err : -EREMOTEIO);
        return false;
    }
    memset(vi, 0, sizeof(*vi));
    rc = json_vm_info_decode(r->body, r->body_len, vi, tmp, sizeof(tmp));
    if (rc) {
        json_vm_info_fini(vi);
        base_errf(e->err, sizeof(e->err), rc, "%sdecode vm.info: %s", prefix, tmp);
        op_fail(op, op->lost_err ? op->lost_err : rc);
        return false;
    }
    return true;
}

/* CH answers vm.info on a VMM without a VM with 404 (v53 on) or with 500
 * and "VM is not created" in the body (v46). */
static bool info_no_vm(const httpc_response *r)
{
    static const char novm[] = "VM is not created";

    if (r->err)
        return false;
    if (r->status == 404)
        return true;
    return r->status == 500 && r->body &&
           memmem(r->body, r->body_len, novm, sizeof(novm) - 1) != NULL;
}

static void op_after_info(struct eng_op *op, const httpc_response *r)
{
    cocoon_engine *e = op->e;
    const struct backend_ops *ops = op->vm->ops;
    json_vm_info vi;
    char *body = NULL;
    size_t len = 0;
    int rc = 0;

    if (!op->vm->rec && info_no_vm(r)) {
        /* A direct target whose VMM has no VM created is not running. */
        if (op_is_list(op)) {
            op_list_empty(op);
            return;
        }
        base_errf(e->err, sizeof(e->err), 0, "vm %s is not created: VM not running",
                 vm_sock(op->vm));
        op_fail(op, -EHOSTDOWN);
        return;
    }
    if (!op_decode_info(op, r, &vi, ""))
        return;
    if (!op->vm->rec && strcmp(vi.state, "Running") != 0 && strcmp(vi.state, "Paused") != 0) {
        char st[32];
        size_t i;

        for (i = 0; vi.state[i] && i + 1 < sizeof(st); i++)
            st[i] = (char)(vi.state[i] >= 'A' && vi.state[i] <= 'Z' ? vi.state[i] + 32 : vi.state[i]);
        st[i] = '\0';
        json_vm_info_fini(&vi);
        if (op_is_list(op)) {
            op_list_empty(op);
            return;
        }
        base_errf(e->err, sizeof(e->err), 0, "vm %s is %s: VM not running", vm_sock(op->vm), st);
        op_fail(op, -EHOSTDOWN);
        return;
    }

    switch (op->kind) {
    case OP_LIST: case OP_FS_LIST: case OP_DEV_LIST: {
        cocoon_listing l;

        rc = ch_listing_build(&vi, &l);
        if (rc) {
            json_vm_info_fini(&vi);
            base_errf(e->err, sizeof(e->err), rc, "list: out of memory");
            op_fail(op, rc);
            return;
        }
        if (op->kind == OP_FS_LIST)
            l.n_devices = 0;
        if (op->kind == OP_DEV_LIST)
            l.n_fs = 0;
        op_list_done(op, &l);
        ch_listing_fini(&l);
        json_vm_info_fini(&vi);
        return;
    }
    case OP_FS_ATTACH: {
        cocoon_fs_spec spec = { op->socket, op->tag, op->num_queues, op->queue_size, 0 };

        rc = ops->fs_attach_check(&vi, &spec, op->fs_id, e->err, sizeof(e->err));
        json_vm_info_fini(&vi);
        if (!rc && op->socket_check) {
            const socktab *ls = eng_unix_set(e, op);

            rc = ch_socket_check(op->socket, ls, e->err, sizeof(e->err));
            if (rc == -ECONNREFUSED) {
                op_recheck_defer(op);
                return;
            }
        }
        if (rc)
            break;
        op_fs_put(op);
        return;
    }
    case OP_DEV_ATTACH:
        rc = ops->device_attach_check(&vi, op->path, op->dev_id, e->err, sizeof(e->err));
        json_vm_info_fini(&vi);
        if (!rc && (rc = json_device_config_encode(op->dev_id, op->path, &body, &len,
                                                   e->err, sizeof(e->err)))) {
            char tmp[BASE_ERRSTR_MAX];

            memcpy(tmp, e->err, sizeof(tmp));
            base_errf(e->err, sizeof(e->err), rc, "vm.add-device: %s", tmp);
        }
        break;
    case OP_FS_DETACH: {
        const char *id = NULL;

        rc = ops->fs_detach_find(&vi, op->tag, &id, e->err, sizeof(e->err));
        if (!rc && !(op->res_id = strdup(id)))
            rc = base_errf(e->err, sizeof(e->err), -ENOMEM, "fs detach: out of memory");
        json_vm_info_fini(&vi);
        if (!rc)
            rc = json_remove_device_encode(op->res_id, &body, &len, e->err, sizeof(e->err));
        break;
    }
    case OP_DEV_DETACH:
        rc = ops->device_detach_check(&vi, op->dev_id, e->err, sizeof(e->err));
        json_vm_info_fini(&vi);
        if (!rc && !(op->res_id = strdup(op->dev_id)))
            rc = base_errf(e->err, sizeof(e->err), -ENOMEM, "device detach: out of memory");
        if (!rc)
            rc = json_remove_device_encode(op->res_id, &body, &len, e->err, sizeof(e->err));
        break;
    }
    if (rc) {
        free(body);
        op_fail(op, rc);
        return;
    }
    op_send_put(op, body, len);
}

static void op_wait_poll_cb(struct ev_loop *loop, ev_timer *w, int revents);

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
        op_fail(op, r->err);
        return;
    }
    if (attach && backend_endpoint_ok(op_put_row(op), r->status)) {
        if (r->status == 200 && r->body_len > 0) {
            json_pci_info pi = { 0 };
            char tmp[BASE_ERRSTR_MAX];
            int rc = json_pci_info_decode(r->body, r->body_len, &pi, tmp, sizeof(tmp));

            if (rc) {
                json_pci_info_fini(&pi);
                op_prefix(op, pre, sizeof(pre));
                base_errf(e->err, sizeof(e->err), rc, "%sdecode PciDeviceInfo: %s", pre, tmp);
                op_fail(op, rc);
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
            op_fail(op, -EBADMSG);
            return;
        }
        if (!(op->res_id = strdup(fallback))) {
            op_prefix(op, pre, sizeof(pre));
            base_errf(e->err, sizeof(e->err), 0, "%sout of memory", pre);
            op_fail(op, -ENOMEM);
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
    op_fail(op, -EREMOTEIO);
}

static void op_reconcile_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
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

static void op_after_reconcile(struct eng_op *op, const httpc_response *r)
{
    cocoon_engine *e = op->e;
    json_vm_info vi;
    char pre[128], outcome[160], *note;
    const char *id = NULL;
    bool present;

    /* The reconcile read asks a new question, so unlike the single-shot
     * calls it may be repeated under the retry policy. */
    if (op->attempts < ENG_RECONCILE_ATTEMPTS &&
        eng_retry_worthy(r->err, r->err ? 0 : r->status) &&
        !(r->err == 0 &&
          backend_endpoint_ok(backend_endpoint_of(op->vm->ops, BACKEND_EP_INFO), r->status))) {
        ev_timer_stop(e->loop, &op->timer);
        ev_set_cb(&op->timer, op_reconcile_retry_cb);
        ev_timer_set(&op->timer, eng_backoff_ms(op->attempts) / 1000.0, 0.);
        ev_timer_start(e->loop, &op->timer);
        return;
    }
    op_prefix(op, pre, sizeof(pre));
    snprintf(outcome, sizeof(outcome), "%soutcome unknown: ", pre);
    if (!op_decode_info(op, r, &vi, outcome))
        return;
    switch (op->kind) {
    case OP_FS_ATTACH: {
        const json_fs *f = ch_fs_by_id(&vi, op->fs_id);

        present = f != NULL;
        id = op->fs_id;
        break;
    }
    case OP_DEV_ATTACH: {
        const json_device *d = ch_device_by_path(&vi, op->path);

        present = d && d->id && (!op->dev_id || !*op->dev_id || strcmp(d->id, op->dev_id) == 0);
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
            op_fail(op, -ENOMEM);
            return;
        }
        json_vm_info_fini(&vi);
        if (!present) {
            base_errf(e->err, sizeof(e->err), 0, "%sreply lost; vm.info shows no such device", pre);
            op_fail(op, op->lost_err);
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
        op_fail(op, op->lost_err);
        return;
    }
    base_errf(e->err, sizeof(e->err), 0, "%sreply lost; vm.info shows the device removed", pre);
    note = strdup(e->err);
    op_detached(op, note);
}

static void op_wait_poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
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
        op_fail(op, -ETIMEDOUT);
        return;
    }
    ev_timer_stop(e->loop, &op->timer);
    ev_set_cb(&op->timer, op_wait_poll_cb);
    ev_timer_set(&op->timer, left < ENG_WAIT_POLL_S ? left : ENG_WAIT_POLL_S, 0.);
    ev_timer_start(e->loop, &op->timer);
}

static void on_http(httpc_conn *c, const httpc_response *r, void *priv)
{
    struct eng_vm *vm = priv;
    cocoon_engine *e = vm->e;
    struct eng_op *op = vm->cur;

    (void)c;
    if (e->dying || !op)
        return;
    eng_enter(e);
    if (r->status)
        op->http_status = r->status;
    switch (op->step) {
    case ST_INFO: op_after_info(op, r); break;
    case ST_PUT: op_after_put(op, r); break;
    case ST_RECONCILE: op_after_reconcile(op, r); break;
    case ST_WAIT: op_after_wait(op, r); break;
    case ST_LIFECYCLE: eng_lc_on_http(op, r); break;
    default: break;
    }
    eng_leave(e);
}

/* ------------------------------------------------------------ scheduling */

static void idle_unlink(cocoon_engine *e, struct eng_vm *vm)
{
    if (vm->idle_prev)
        vm->idle_prev->idle_next = vm->idle_next;
    else
        e->idle_head = vm->idle_next;
    if (vm->idle_next)
        vm->idle_next->idle_prev = vm->idle_prev;
    else
        e->idle_tail = vm->idle_prev;
    vm->idle_prev = vm->idle_next = NULL;
    vm->idle = false;
    e->n_idle--;
}

static void vm_drop(cocoon_engine *e, struct eng_vm *vm)
{
    if (vm->idle)
        idle_unlink(e, vm);
    vm_table_remove(e, vm);
    vm_free(vm);
}

/* Closes the oldest idle connections beyond the inflight budget. */
static void idle_trim(cocoon_engine *e)
{
    while (e->idle_head && e->n_idle + e->n_active > e->max_inflight)
        vm_drop(e, e->idle_head);
}

/* The VM's queue ran empty: it keeps its connection as an idle VM (one
 * that never connected is dropped), and its inflight slot goes to the
 * next waiting VM. */
static void vm_release(cocoon_engine *e, struct eng_vm *vm)
{
    if (vm->active)
        e->n_active--;
    vm->active = false;
    if (vm->conn) {
        vm->idle = true;
        vm->idle_prev = e->idle_tail;
        vm->idle_next = NULL;
        if (e->idle_tail)
            e->idle_tail->idle_next = vm;
        else
            e->idle_head = vm;
        e->idle_tail = vm;
        e->n_idle++;
    } else {
        vm_drop(e, vm);
    }
    while (e->wait_head && e->n_active < e->max_inflight) {
        struct eng_vm *w = e->wait_head;

        e->wait_head = w->link;
        if (!e->wait_head)
            e->wait_tail = NULL;
        w->listed = false;
        w->active = true;
        e->n_active++;
        ready_push(e, w);
    }
    idle_trim(e);
}

/* Starts the next operation of every ready VM.  Iterative, so a chain of
 * operations that fail at once (gate) does not grow the stack. */
static void engine_pump(cocoon_engine *e)
{
    if (e->pumping)
        return;
    e->pumping = true;
    while (e->ready_head && !e->free_requested) {
        struct eng_vm *vm = e->ready_head;

        e->ready_head = vm->link;
        if (!e->ready_head)
            e->ready_tail = NULL;
        vm->listed = false;
        if (vm->cur)
            continue;
        if (vm->head) {
            vm->cur = vm->head;
            op_run(vm->cur);
        } else {
            vm_release(e, vm);
        }
    }
    e->pumping = false;
}

static void vm_enqueue(cocoon_engine *e, struct eng_vm *vm, struct eng_op *op)
{
    op->vm = vm;
    op->next = NULL;
    if (vm->idle)
        idle_unlink(e, vm);
    if (vm->tail)
        vm->tail->next = op;
    else
        vm->head = op;
    vm->tail = op;
    if (vm->active) {
        if (!vm->cur)
            ready_push(e, vm);
        return;
    }
    if (vm->listed)
        return;             /* already waiting for a slot */
    if (e->n_active < e->max_inflight) {
        vm->active = true;
        e->n_active++;
        ready_push(e, vm);
        idle_trim(e);
        return;
    }
    vm->listed = true;
    vm->link = NULL;
    if (e->wait_tail)
        e->wait_tail->link = vm;
    else
        e->wait_head = vm;
    e->wait_tail = vm;
}

/* Resolution and routing of one submitted op; completes it on error. */
static void op_begin(cocoon_engine *e, struct eng_op *op)
{
    /* An absolute socket path names a Cloud Hypervisor API socket. */
    const struct backend_ops *ops = &backend_cloudhypervisor;
    const store_vm *rec = NULL;
    struct eng_vm *vm;
    char *key;
    int rc;

    if (op->pre_err) {
        op_complete(op, op->pre_err, op->msg);
        return;
    }
    if (op->vm_arg[0] == '/' && (op->kind == OP_VM_START || op->kind == OP_VM_STOP)) {
        base_errf(e->err, sizeof(e->err), 0, "%s: vm %s: needs a recorded VM, not a socket path",
                 op_names[op->kind], op->vm_arg);
        op_complete(op, -EINVAL, e->err);
        return;
    }
    if (op->vm_arg[0] == '/') {
        size_t n = strlen(op->vm_arg);

        key = malloc(n + 2);
        if (!key) {
            op_complete(op, -ENOMEM, "out of memory");
            return;
        }
        key[0] = 'D';
        memcpy(key + 1, op->vm_arg, n + 1);
    } else {
        char tmp[BASE_ERRSTR_MAX];
        char *sock;
        size_t n;

        rec = eng_resolve(e, op->vm_arg, &rc);
        if (!rec) {
            memcpy(tmp, e->err, sizeof(tmp));
            base_errf(e->err, sizeof(e->err), 0, "%s: vm %s: %s", op_names[op->kind],
                     op->vm_arg, tmp);
            op_complete(op, rc, e->err);
            return;
        }
        ops = backend_by_name(rec->backend);
        if (ops && (op->kind == OP_VM_START || op->kind == OP_VM_STOP)) {
            /* every backend starts and stops */
        } else if (!ops || (op_is_fs(op) ? !ops->fs_attach_check : !ops->device_attach_check) ||
            (op->kind == OP_LIST && (!ops->fs_attach_check || !ops->device_attach_check))) {
            base_errf(e->err, sizeof(e->err), 0,
                     "%s: backend %s: backend does not support %s", op_names[op->kind],
                     ops ? ops->short_name : rec->backend,
                     op_is_fs(op) || op->kind == OP_LIST ? "fs attach" : "device attach");
            op_complete(op, -EOPNOTSUPP, e->err);
            return;
        }
        sock = gate_api_sock(rec);
        if (!sock) {
            op_complete(op, -ENOMEM, "out of memory");
            return;
        }
        n = strlen(sock);
        key = malloc(n + 2);
        if (!key) {
            free(sock);
            op_complete(op, -ENOMEM, "out of memory");
            return;
        }
        key[0] = 'R';
        memcpy(key + 1, sock, n + 1);
        free(sock);
    }
    vm = vm_get(e, key, rec);
    free(key);
    if (!vm) {
        op_complete(op, -ENOMEM, "out of memory");
        return;
    }
    vm->ops = ops;
    vm_enqueue(e, vm, op);
}

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    cocoon_engine *e = w->data;
    struct eng_op *list = e->start_head;

    (void)loop;
    (void)revents;
    e->start_head = e->start_tail = NULL;
    eng_enter(e);
    while (list) {
        struct eng_op *op = list;

        if (e->free_requested) {
            /* Hand the rest back so the deferred free cancels them. */
            struct eng_op *t = list;

            while (t->next)
                t = t->next;
            t->next = e->start_head;
            if (!e->start_head)
                e->start_tail = t;
            e->start_head = list;
            break;
        }
        list = op->next;
        op->next = NULL;
        op_begin(e, op);
    }
    if (!e->free_requested)
        engine_pump(e);
    eng_leave(e);
}

/* ---------------------------------------------------------------- submit */

static struct eng_op *op_new(cocoon_engine *e, enum op_kind kind, const char *vm_arg,
                             const char *const strs[], size_t nstrs, const char *out[])
{
    size_t total = strlen(vm_arg) + 1;
    struct eng_op *op;
    char *p;

    for (size_t i = 0; i < nstrs; i++)
        total += strs[i] ? strlen(strs[i]) + 1 : 0;
    op = calloc(1, sizeof(*op) + total);
    if (!op)
        return NULL;
    op->t0_ns = base_mono_ns();
    op->e = e;
    op->kind = (unsigned char)kind;
    ev_timer_init(&op->timer, op_wait_poll_cb, 0., 0.);
    op->timer.data = op;
    p = op->buf;
    op->vm_arg = p;
    p = stpcpy(p, vm_arg) + 1;
    for (size_t i = 0; i < nstrs; i++) {
        out[i] = NULL;
        if (strs[i]) {
            out[i] = p;
            p = stpcpy(p, strs[i]) + 1;
        }
    }
    return op;
}

static void op_submit(cocoon_engine *e, struct eng_op *op)
{
    unsigned it = ev_iteration(e->loop);

    /* A snapshot already taken for the current generation predates this
     * submission, so it opens a new generation too. */
    if (!e->gen_any || e->gen_iter != it || (e->unix_loaded && e->unix_gen == e->gen)) {
        e->gen++;
        e->gen_iter = it;
        e->gen_any = true;
    }
    op->gen = e->gen;
    e->n_ops++;
    op->next = NULL;
    if (e->start_tail)
        e->start_tail->next = op;
    else
        e->start_head = op;
    e->start_tail = op;
    if (!ev_is_active(&e->kick)) {
        ev_timer_set(&e->kick, 0., 0.);
        ev_timer_start(e->loop, &e->kick);
    }
}

/* A validation error is kept and reported from the loop, so that the
 * callback never runs inside the submit call. */
static int op_set_pre_err(struct eng_op *op, int rc, const char *text)
{
    op->pre_err = rc;
    op->msg = strdup(text);
    if (!op->msg) {
        op_free(op);
        return -ENOMEM;
    }
    return 0;
}

static int eng_usable(const cocoon_engine *e)
{
    if (!e)
        return -EINVAL;
    if (e->dying || e->free_requested)
        return -ECANCELED;
    return 0;
}

static int op_finish_submit(cocoon_engine *e, struct eng_op *op, int vrc,
                            cocoon_done_fn *cb, cocoon_list_fn *lcb, void *priv)
{
    op->done = cb;
    op->list = lcb;
    op->priv = priv;
    if (vrc && op_set_pre_err(op, vrc, e->err))
        return -ENOMEM;
    op_submit(e, op);
    return 0;
}

int cocoon_fs_attach(cocoon_engine *e, const char *vm, const cocoon_fs_spec *spec,
                     cocoon_done_fn *cb, void *priv)
{
    cocoon_fs_spec s;
    struct eng_op *op;
    const char *out[3];
    char *fs_id = NULL;
    int rc = eng_usable(e), vrc;

    if (rc)
        return rc;
    if (!vm || !spec || !cb)
        return -EINVAL;
    s = *spec;
    vrc = spec_fs_normalize(&s, e->err, sizeof(e->err));
    if (!vrc) {
        size_t tl = strlen(s.tag);

        fs_id = malloc(sizeof("cocoon-fs-") - 1 + tl + 1);
        if (!fs_id)
            return -ENOMEM;
        memcpy(fs_id, "cocoon-fs-", sizeof("cocoon-fs-") - 1);
        memcpy(fs_id + sizeof("cocoon-fs-") - 1, s.tag, tl + 1);
    }
    {
        const char *strs[3] = { vrc ? NULL : s.socket, vrc ? NULL : s.tag, fs_id };

        op = op_new(e, OP_FS_ATTACH, vm, strs, 3, out);
    }
    free(fs_id);
    if (!op)
        return -ENOMEM;
    op->socket = out[0];
    op->tag = out[1];
    op->fs_id = out[2];
    op->num_queues = s.num_queues;
    op->queue_size = s.queue_size;
    op->socket_check = (spec->socket_check ? spec->socket_check : e->socket_check) >= 0;
    return op_finish_submit(e, op, vrc, cb, NULL, priv);
}

/* fs detach by tag, device detach by id: arg is required ("tag is
 * required" / "id is required", reported through the callback). */
static int detach_submit(cocoon_engine *e, enum op_kind kind, const char *vm, const char *arg,
                         unsigned wait_ms, cocoon_done_fn *cb, void *priv)
{
    struct eng_op *op;
    const char *out[1];
    int rc = eng_usable(e), vrc = 0;

    if (rc)
        return rc;
    if (!vm || !cb)
        return -EINVAL;
    if (!arg || !*arg)
        vrc = base_errf(e->err, sizeof(e->err), -EINVAL, "%s is required",
                       kind == OP_FS_DETACH ? "tag" : "id");
    op = op_new(e, kind, vm, (const char *const[]){ vrc ? NULL : arg }, 1, out);
    if (!op)
        return -ENOMEM;
    if (kind == OP_FS_DETACH)
        op->tag = out[0];
    else
        op->dev_id = out[0];
    op->wait_ms = wait_ms;
    return op_finish_submit(e, op, vrc, cb, NULL, priv);
}

int cocoon_fs_detach(cocoon_engine *e, const char *vm, const char *tag,
                     cocoon_done_fn *cb, void *priv)
{
    return detach_submit(e, OP_FS_DETACH, vm, tag, e ? e->detach_wait_ms : 0, cb, priv);
}

int cocoon_fs_detach_wait(cocoon_engine *e, const char *vm, const char *tag, unsigned wait_ms,
                          cocoon_done_fn *cb, void *priv)
{
    return detach_submit(e, OP_FS_DETACH, vm, tag, wait_ms, cb, priv);
}

int cocoon_device_attach(cocoon_engine *e, const char *vm, const cocoon_vfio_spec *spec,
                         cocoon_done_fn *cb, void *priv)
{
    char path[SPEC_PCI_PATH_MAX] = "";
    struct eng_op *op;
    const char *out[2];
    int rc = eng_usable(e), vrc;

    if (rc)
        return rc;
    if (!vm || !spec || !cb)
        return -EINVAL;
    vrc = spec_vfio_normalize(spec, path, e->err, sizeof(e->err));
    {
        const char *strs[2] = { vrc ? NULL : path,
                                vrc || !spec->id || !*spec->id ? NULL : spec->id };

        op = op_new(e, OP_DEV_ATTACH, vm, strs, 2, out);
    }
    if (!op)
        return -ENOMEM;
    op->path = out[0];
    op->dev_id = out[1];
    return op_finish_submit(e, op, vrc, cb, NULL, priv);
}

int cocoon_device_detach(cocoon_engine *e, const char *vm, const char *id,
                         cocoon_done_fn *cb, void *priv)
{
    return detach_submit(e, OP_DEV_DETACH, vm, id, e ? e->detach_wait_ms : 0, cb, priv);
}

int cocoon_device_detach_wait(cocoon_engine *e, const char *vm, const char *id,
                              unsigned wait_ms, cocoon_done_fn *cb, void *priv)
{
    return detach_submit(e, OP_DEV_DETACH, vm, id, wait_ms, cb, priv);
}

static int list_submit(cocoon_engine *e, enum op_kind kind, const char *vm,
                       cocoon_list_fn *cb, void *priv)
{
    struct eng_op *op;
    int rc = eng_usable(e);

    if (rc)
        return rc;
    if (!vm || !cb)
        return -EINVAL;
    op = op_new(e, kind, vm, NULL, 0, NULL);
    if (!op)
        return -ENOMEM;
    return op_finish_submit(e, op, 0, NULL, cb, priv);
}

int cocoon_list(cocoon_engine *e, const char *vm, cocoon_list_fn *cb, void *priv)
{
    return list_submit(e, OP_LIST, vm, cb, priv);
}

int cocoon_fs_list(cocoon_engine *e, const char *vm, cocoon_list_fn *cb, void *priv)
{
    return list_submit(e, OP_FS_LIST, vm, cb, priv);
}

int cocoon_device_list(cocoon_engine *e, const char *vm, cocoon_list_fn *cb, void *priv)
{
    return list_submit(e, OP_DEV_LIST, vm, cb, priv);
}

static int vm_lc_submit(cocoon_engine *e, enum op_kind kind, const char *vm,
                        const cocoon_vm_opts *o, cocoon_done_fn *cb, void *priv)
{
    struct eng_op *op;
    const char *out[1];
    int rc = eng_usable(e);

    if (rc)
        return rc;
    if (!vm || !cb)
        return -EINVAL;
    op = op_new(e, kind, vm, (const char *const[]){ o ? o->binary : NULL }, 1, out);
    if (!op)
        return -ENOMEM;
    if (o)
        op->vm_opts = *o;
    op->binary = out[0];
    op->vm_opts.binary = NULL;
    return op_finish_submit(e, op, 0, cb, NULL, priv);
}

int cocoon_vm_start(cocoon_engine *e, const char *vm, const cocoon_vm_opts *o,
                    cocoon_done_fn *cb, void *priv)
{
    return vm_lc_submit(e, OP_VM_START, vm, o, cb, priv);
}

int cocoon_vm_stop(cocoon_engine *e, const char *vm, const cocoon_vm_opts *o,
                   cocoon_done_fn *cb, void *priv)
{
    return vm_lc_submit(e, OP_VM_STOP, vm, o, cb, priv);
}

/* ------------------------------------------------------------ new / free */

cocoon_engine *cocoon_engine_new(struct ev_loop *loop, const cocoon_options *opt)
{
    cocoon_options o = { 0 };
    cocoon_engine *e;

    if (!loop) {
        errno = EINVAL;
        return NULL;
    }
    if (opt)
        o = *opt;
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->loop = loop;
    e->root = strdup(store_root(o.root_dir));
    e->ch_binary = strdup(o.ch_binary && *o.ch_binary ? o.ch_binary : "cloud-hypervisor");
    if (!e->root || !e->ch_binary) {
        free(e->root);
        free(e->ch_binary);
        free(e);
        errno = ENOMEM;
        return NULL;
    }
    e->timeout_ms = o.timeout_ms ? o.timeout_ms : ENG_DEFAULT_TIMEOUT_MS;
    e->max_inflight = o.max_inflight_vms ? o.max_inflight_vms : ENG_DEFAULT_INFLIGHT;
    e->detach_wait_ms = o.detach_wait_ms;
    e->socket_check = o.socket_check;
    ev_timer_init(&e->kick, kick_cb, 0., 0.);
    e->kick.data = e;
    ev_timer_init(&e->recheck, recheck_cb, 0., 0.);
    e->recheck.data = e;
    return e;
}

static void op_cancel(struct eng_op *op)
{
    op_complete(op, -ECANCELED, "operation canceled: engine freed");
}

static void engine_destroy(cocoon_engine *e)
{
    struct eng_op *op;

    e->dying = true;
    ev_timer_stop(e->loop, &e->kick);
    ev_timer_stop(e->loop, &e->recheck);
    e->recheck_head = e->recheck_tail = NULL;
    /* Connections first: their pending requests complete with -ECANCELED
     * into on_http, which ignores them while dying. */
    for (size_t i = 0; i < e->nbuckets; i++) {
        for (struct eng_vm *vm = e->buckets[i]; vm; vm = vm->hnext) {
            httpc_conn_free(vm->conn);
            vm->conn = NULL;
            for (op = vm->head; op; op = op->next)
                ev_timer_stop(e->loop, &op->timer);
        }
    }
    while ((op = e->start_head)) {
        e->start_head = op->next;
        op_cancel(op);
    }
    /* Waiting VMs in FIFO order first would be nicer, but every op gets
     * exactly one -ECANCELED either way. */
    for (size_t i = 0; i < e->nbuckets; i++) {
        struct eng_vm *vm;

        while ((vm = e->buckets[i])) {
            e->buckets[i] = vm->hnext;
            while ((op = vm->head)) {
                vm->head = op->next;
                op_cancel(op);
            }
            vm_free(vm);
        }
    }
    free(e->buckets);
    db_cache_drop(e);
    socktab_free(e->unix_set);
    free(e->root);
    free(e->ch_binary);
    free(e);
}

void cocoon_engine_free(cocoon_engine *e)
{
    if (!e || e->dying)
        return;
    if (e->depth > 0) {
        e->free_requested = true;
        return;
    }
    e->free_requested = true;
    engine_destroy(e);
}
