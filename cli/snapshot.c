/* cli/snapshot.c: the snapshot commands over the snapshot records:
 * list, inspect and rm.  Removing a snapshot removes its record first and
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
