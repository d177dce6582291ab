/* cli/snapshot.c: the snapshot commands: save (through the engine) and
 * list, inspect and rm over the snapshot records.  Removing a snapshot removes its record first and
 * then its own data dir, never a file a VM uses. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/snapstore.h"
#include "cli/cli.h"
#include "http/base.h"

static int load(const cli_ctx *c, snapstore_db *db)
{
    char err[BASE_ERRSTR_MAX];

    if (snapstore_load(c->root, db, err, sizeof(err)) < 0)
        return cli_error("%s", err);
    return CLI_EXIT_OK;
}

int cli_snapshot_list(cli_ctx *c)
{
    snapstore_db db;
    int rc = load(c, &db);

    if (rc)
        return rc;
    if (c->json) {
        yajl_gen g = cli_gen_new(db.n > 0);

        if (!g) {
            snapstore_db_fini(&db);
            return cli_error("out of memory");
        }
        yajl_gen_array_open(g);
        for (size_t i = 0; i < db.n; i++)
            snapstore_rec_gen(g, &db.recs[i]);
        yajl_gen_array_close(g);
        if (cli_gen_print(g, stdout) < 0)
            rc = CLI_EXIT_FAIL;
    } else if (db.n == 0) {
        puts("No snapshots found.");
    } else {
        printf("%-26s  %-20s  %-20s  %-6s  %s\n", "ID", "NAME", "SOURCE VM", "SHARED",
               "CREATED");
        for (size_t i = 0; i < db.n; i++) {
            const snapstore_rec *r = &db.recs[i];

            cli_printf(stdout, "%-26s  %-20s  %-20s  %-6s  %s\n", r->id, r->name,
                       r->source.config.name ? r->source.config.name : r->source.id,
                       r->source.config.shared_memory ? "yes" : "no", r->created_at);
        }
    }
    snapstore_db_fini(&db);
    return rc;
}

int cli_snapshot_inspect(cli_ctx *c)
{
    char err[BASE_ERRSTR_MAX];
    const snapstore_rec *r;
    snapstore_db db;
    int rc = load(c, &db);

    if (rc)
        return rc;
    if (snapstore_resolve(&db, c->args[0], &r, err, sizeof(err)) < 0) {
        snapstore_db_fini(&db);
        return cli_error("%s", err);
    }
    /* A record is JSON whatever -o says, like vm inspect. */
    yajl_gen g = cli_gen_new(true);
    if (!g) {
        snapstore_db_fini(&db);
        return cli_error("out of memory");
    }
    snapstore_rec_gen(g, r);
    rc = cli_gen_print(g, stdout) < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
    snapstore_db_fini(&db);
    return rc;
}

typedef struct rm_ctx {
    const char *ref;
    snapstore_rec gone;               /* the removed record, moved out */
} rm_ctx;

static int rm_cb(snapstore_db *db, void *priv, char *err, size_t errlen)
{
    rm_ctx *x = priv;
    const snapstore_rec *r;
    int rc = snapstore_resolve(db, x->ref, &r, err, errlen);

    return rc ? rc : snapstore_remove(db, r->id, &x->gone);
}

/* Each ref on its own: one that fails is reported and the rest still go. */
int cli_snapshot_rm(cli_ctx *c)
{
    int rc = CLI_EXIT_OK;

    for (size_t i = 0; i < c->n_args; i++) {
        char err[BASE_ERRSTR_MAX];
        rm_ctx x;

        memset(&x, 0, sizeof(x));
        x.ref = c->args[i];

        if (snapstore_update(c->root, rm_cb, &x, err, sizeof(err)) < 0) {
            char q[128];

            cli_error("%s: %s", base_quote(q, sizeof(q), c->args[i]), err);
            rc = CLI_EXIT_FAIL;
            continue;
        }
        if (snapstore_data_remove(c->root, x.gone.id, err, sizeof(err)) < 0)
            cli_printf(stderr, "Warning: %s\n", err);
        if (c->json) {
            yajl_gen g = cli_gen_new(false);

            if (g) {
                yajl_gen_map_open(g);
                cli_gen_kv_str(g, "id", x.gone.id);
                cli_gen_kv_str(g, "name", x.gone.name);
                cli_gen_kv_str(g, "state", "removed");
                yajl_gen_map_close(g);
                cli_gen_print(g, stdout);
            }
        } else {
            cli_printf(stdout, "%s: removed (id=%s)\n", x.gone.name, x.gone.id);
        }
        snapstore_rec_fini(&x.gone);
    }
    return rc;
}

static int add_cb(snapstore_db *db, void *priv, char *err, size_t errlen)
{
    return snapstore_add(db, priv, err, errlen);
}

/* The name is checked before the VM is paused and again when the record
 * is added under the lock; the data dir is removed whenever no record
 * comes to name it. */
static int save_one(cli_ctx *c, store_vm *vm, snapstore_rec *r)
{
    char err[BASE_ERRSTR_MAX];
    cocoon_vm_opts o = COCOON_VM_OPTS_INIT;
    cli_lc_job j = { .vm = vm };
    const snapstore_rec *hit;
    snapstore_db db;
    int rc = load(c, &db);

    if (rc)
        return rc;
    rc = snapstore_resolve(&db, r->name, &hit, err, sizeof(err)) == 0 &&
         strcmp(hit->name, r->name) == 0;
    snapstore_db_fini(&db);
    if (rc) {
        char q[128];
        return cli_error("snapshot name %s already in use", base_quote(q, sizeof(q), r->name));
    }
    if (snapstore_data_create(c->root, r->id, err, sizeof(err)) < 0)
        return cli_error("%s", err);
    o.dir = r->dir;
    o.force = cli_flag_bool(c, "force");
    cli_lc_run(c, &j, 1, cocoon_vm_snapshot, "snapshot save", &o);
    if (j.err) {
        rc = cli_error("%s", j.errstr ? j.errstr : "snapshot failed");
    } else if (snapstore_update(c->root, add_cb, r, err, sizeof(err)) < 0) {
        rc = cli_error("%s", err);
    } else if (j.errstr && j.errstr[0]) {
        cli_printf(stderr, "Note: %s\n", j.errstr);
    }
    if (rc)
        snapstore_data_remove(c->root, r->id, err, sizeof(err));
    free(j.errstr);
    return rc;
}

int cli_snapshot_save(cli_ctx *c)
{
    char err[BASE_ERRSTR_MAX], q[128], id[STORE_ID_LEN + 1] = "", nm[STORE_ID_LEN + 64] = "";
    const char *name = cli_flag_str(c, "name");
    snapstore_rec r;
    store_vm vm;
    int lock, rc;

    memset(&r, 0, sizeof(r));
    if (name && !store_name_valid(name))
        return cli_usage_error(c, "invalid snapshot name %s", base_quote(q, sizeof(q), name));
    if (store_resolve(c->root, c->args[0], &vm, err, sizeof(err)) < 0)
        return cli_error("vm %s: %s", c->args[0], err);
    /* Start, stop and rm of this VM wait until the snapshot is done. */
    lock = store_vm_lock(c->root, vm.backend, vm.id, err, sizeof(err));
    if (lock < 0) {
        store_vm_fini(&vm);
        return cli_error("%s", err);
    }
    if (store_new_id(r.id) < 0 || !(r.name = strdup(name ? name : r.id)) ||
        !(r.created_at = store_now()) || !(r.dir = snapstore_data_dir(c->root, r.id)) ||
        store_vm_copy(&r.source, &vm) < 0) {
        rc = cli_error("out of memory");
    } else {
        memcpy(id, r.id, sizeof(id));
        snprintf(nm, sizeof(nm), "%s", r.name);
        rc = save_one(c, &vm, &r);
    }
    if (rc == CLI_EXIT_OK && c->json) {
        /* r was moved into the store; print what was saved. */
        snapstore_db db;
        const snapstore_rec *hit;

        if (snapstore_load(c->root, &db, err, sizeof(err)) == 0 &&
            snapstore_resolve(&db, id, &hit, err, sizeof(err)) == 0) {
            yajl_gen g = cli_gen_new(false);
            if (g) {
                snapstore_rec_gen(g, hit);
                cli_gen_print(g, stdout);
            }
        }
        snapstore_db_fini(&db);
    } else if (rc == CLI_EXIT_OK) {
        cli_printf(stdout, "%s: saved (id=%s, vm=%s)\n", nm, id,
                   vm.config.name ? vm.config.name : vm.id);
    }
    snapstore_rec_fini(&r);
    store_vm_unlock(lock);
    store_vm_fini(&vm);
    return rc;
}

/* vm restore VM SNAP: a stopped VM back to one of its own snapshots.  The
 * VM's start/stop lock is held throughout, so no start, stop or rm of it
 * runs meanwhile. */
int cli_vm_restore(cli_ctx *c)
{
    char err[BASE_ERRSTR_MAX];
    const snapstore_rec *r;
    cocoon_vm_opts o = COCOON_VM_OPTS_INIT;
    snapstore_db db;
    store_vm vm;
    int lock, rc;

    if (store_resolve(c->root, c->args[0], &vm, err, sizeof(err)) < 0)
        return cli_error("vm %s: %s", c->args[0], err);
    lock = store_vm_lock(c->root, vm.backend, vm.id, err, sizeof(err));
    if (lock < 0) {
        store_vm_fini(&vm);
        return cli_error("%s", err);
    }
    store_vm_fini(&vm);
    rc = store_resolve(c->root, c->args[0], &vm, err, sizeof(err)) < 0
             ? cli_error("vm %s: %s", c->args[0], err)
             : load(c, &db);
    if (rc) {
        store_vm_unlock(lock);
        return rc;
    }
    if (snapstore_resolve(&db, c->args[1], &r, err, sizeof(err)) < 0) {
        rc = cli_error("%s", err);
    } else if (strcmp(r->source.id, vm.id) != 0) {
        rc = cli_error("snapshot %s was taken of VM %s, not of %s: a VM is restored only "
                       "from its own snapshots", r->name, r->source.id, vm.id);
    } else if (vm.state == STORE_RUNNING) {
        rc = cli_error("vm %s is running: stop it first", vm.id);
    } else {
        cli_lc_job j = { .vm = &vm };

        o.dir = r->dir;
        o.paused = cli_flag_bool(c, "paused");
        cli_lc_run(c, &j, 1, cocoon_vm_restore, "restore", &o);
        if (j.err) {
            rc = cli_error("%s", j.errstr ? j.errstr : "restore failed");
        } else if (c->json) {
            yajl_gen g = cli_gen_new(false);

            if (g) {
                yajl_gen_map_open(g);
                cli_gen_kv_str(g, "id", vm.id);
                cli_gen_kv_str(g, "name", vm.config.name);
                cli_gen_kv_str(g, "state", o.paused ? "paused" : "running");
                cli_gen_kv_int(g, "pid", j.pid);
                cli_gen_kv_str(g, "snapshot", r->id);
                cli_gen_kv_str(g, "note", j.errstr && j.errstr[0] ? j.errstr : NULL);
                yajl_gen_map_close(g);
                cli_gen_print(g, stdout);
            }
        } else {
            cli_printf(stdout, "%s: restored from %s (id=%s, pid=%d%s)\n",
                       vm.config.name ? vm.config.name : vm.id, r->name, vm.id, j.pid,
                       o.paused ? ", paused" : "");
            if (j.errstr && j.errstr[0])
                cli_printf(stderr, "Note: %s\n", j.errstr);
        }
        free(j.errstr);
    }
    snapstore_db_fini(&db);
    store_vm_unlock(lock);
    store_vm_fini(&vm);
    return rc;
}
