/* engine/vm.c: the VMs the engine talks to: resolving a ref against the
 * store, the table of VMs by socket, and each VM's one connection with
 * the dispatch of its replies. */
#include "engine/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The store is parsed once and kept until a vms.json changes: a batch of
 * thousands of operations checks that once per loop iteration (a stat
 * per backend), and the store's own resolver answers against the copy.
 * It is read without the store's lock, so a process holding the lock
 * never stalls the host's loop. */
const store_vm *eng_resolve(cocoon_engine *e, const char *ref, int *rc)
{
    unsigned it = lp_iteration(e->loop);
    const store_vm *out = NULL;

    if (!e->db_valid || e->db_iter != it) {
        e->db_valid = true;
        e->db_iter = it;
        e->db_rc = store_set_refresh(&e->set, e->root, e->db_err, sizeof(e->db_err));
    }
    if (e->db_rc) {
        *rc = e->db_rc;
        base_errf(e->err, sizeof(e->err), 0, "%s", e->db_err);
        return NULL;
    }
    *rc = store_set_resolve(&e->set, ref, &out, e->err, sizeof(e->err));
    return *rc ? NULL : out;
}

void eng_resolve_fini(cocoon_engine *e)
{
    store_set_fini(&e->set);
    e->db_valid = false;
}

void eng_vm_table_remove(cocoon_engine *e, struct eng_vm *vm)
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

void eng_vm_free(struct eng_vm *vm)
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
struct eng_vm *eng_vm_get(cocoon_engine *e, const char *key, const store_vm *rec)
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
    STAILQ_INIT(&vm->queue);
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

const char *eng_vm_sock(const struct eng_vm *vm)
{
    return vm->key + 1;
}

/* Replies go to the step of the VM's running op; none come while the
 * engine is being destroyed (cancelled requests are ignored then). */
static void on_http(httpc_conn *c, const httpc_response *r, void *priv)
{
    struct eng_vm *vm = priv;
    cocoon_engine *e = vm->e;
    struct eng_op *op = vm->cur;

    (void)c;
    /* Counted before anything else, so that a request cancelled by the
     * engine's free still says it reached the VMM. */
    if (op && vm->changing && r->written)
        op->sent = true;
    if (e->dying || !op)
        return;
    eng_enter(e);
    if (r->status)
        op->http_status = r->status;
    if (op->step == ST_LIFECYCLE)
        eng_lc_on_http(op, r);
    else
        eng_attach_on_http(op, r);
    eng_leave(e);
}

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
    /* A drained engine sends no new state-changing request for an attach
     * or detach; reads, and the steps of a lifecycle op already running,
     * go on. */
    if (e->draining && strcmp(method, "GET") != 0 && vm->cur && !op_is_lc(vm->cur))
        return base_errf(e->err, sizeof(e->err), -ECANCELED,
                         "canceled before the request was sent");
    if (id) {
        int n = snprintf(full, sizeof(full), "%s%s", row->path, id);

        if (n < 0 || (size_t)n >= sizeof(full))
            return base_errf(e->err, sizeof(e->err), -ENAMETOOLONG, "%s %s%s: path too long",
                            method, path, id);
        path = full;
    }
    if (!vm->conn) {
        vm->conn = httpc_conn_new(e->loop, eng_vm_sock(vm));
        if (!vm->conn) {
            int er = errno ? errno : ENOMEM;

            return base_errf(e->err, sizeof(e->err), -er, "connect(%s): %s",
                            eng_vm_sock(vm), strerror(er));
        }
    }
    vm->changing = strcmp(method, "GET") != 0;
    /* A recorded VM's requests go only to the pid its running gate
     * verified: a process that took the socket path since (the VMM died
     * after vm.info and something else bound api.sock) gets no byte. */
    httpc_conn_expect_peer(vm->conn, vm->peer);
    int rc = httpc_conn_send(vm->conn, method, path, body, len,
                             timeout_ms ? timeout_ms : e->timeout_ms, on_http, vm);
    if (rc)
        base_errf(e->err, sizeof(e->err), rc, "%s %s: %s", method, path, strerror(-rc));
    return rc;
}
