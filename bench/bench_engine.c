/* bench/bench_engine.c: the cocoon library peer.  All N operations are
 * submitted before the loop runs, so every latency is measured from the
 * batch start.  On the fleet a VM is addressed by its API socket path; on
 * the recorded VMs by name, which adds the store and the running gate. */
#include "bench/bench.h"
#include "engine/cocoon.h"

#include <stdlib.h>
#include <string.h>

typedef struct bench_eng {
    struct ev_loop *loop;
    bench_run *r;
    unsigned pending;
    int detach;
    double t0;
} bench_eng;

typedef struct bench_eslot {
    bench_eng *b;
    unsigned i;
} bench_eslot;

static void bench_engine_done(cocoon_engine *e, const cocoon_result *res, void *priv)
{
    bench_eslot *s = priv;
    bench_eng *b = s->b;

    (void)e;
    if (res->err == 0) {
        if (b->detach) {
            b->r->detach_ok++;
        } else {
            b->r->lat_us[s->i] = bench_now_us() - b->t0;
            b->r->ok++;
        }
    } else if (!b->r->err[0]) {
        snprintf(b->r->err, sizeof b->r->err, "cocoon %s %s: %s",
                 b->detach ? "detach" : "attach", res->vm, res->errstr);
    }
    if (--b->pending == 0)
        ev_break(b->loop, EVBREAK_ONE);
}

static int bench_engine_phase(bench_eng *b, cocoon_engine *e, const char *dir, bench_set set,
                              unsigned n, bench_eslot *slots)
{
    char api[256], vfs[256];

    b->t0 = bench_now_us();
    for (unsigned i = 0; i < n; i++) {
        cocoon_fs_spec spec = { .size = sizeof(cocoon_fs_spec), .socket = vfs, .tag = BENCH_TAG };
        int rc;

        if (set == BENCH_SET_REC)
            bench_rec_name(api, sizeof api, i);
        else
            bench_api_path(api, sizeof api, dir, set, i);
        bench_vfs_path(vfs, sizeof vfs, dir, set, i);
        rc = b->detach ? cocoon_fs_detach(e, api, BENCH_TAG, bench_engine_done, &slots[i])
                       : cocoon_fs_attach(e, api, &spec, bench_engine_done, &slots[i]);
        if (rc < 0) {
            snprintf(b->r->err, sizeof b->r->err, "cocoon submit %s: %s", api, strerror(-rc));
            continue;
        }
        b->pending++;
    }
    if (b->pending > 0)
        ev_run(b->loop, 0);
    return 0;
}

int bench_engine_batch(const char *dir, bench_set set, unsigned n, int socket_check,
                       int detach, bench_run *r)
{
    char root[256];
    cocoon_options opt = { .size = sizeof(cocoon_options), .max_inflight_vms = n,
                           .socket_check = socket_check };
    bench_eng b = { .r = r, .detach = detach };
    bench_eslot *slots = calloc(n, sizeof *slots);
    cocoon_engine *e;
    double cpu0, t1;
    long hwm;

    bench_root_dir(root, sizeof root, dir);
    opt.root_dir = root;
    b.loop = ev_loop_new(EVFLAG_AUTO);
    e = b.loop && slots ? cocoon_engine_new(b.loop, &opt) : NULL;
    if (!e) {
        free(slots);
        if (b.loop)
            ev_loop_destroy(b.loop);
        return -1;
    }
    for (unsigned i = 0; i < n; i++)
        slots[i] = (bench_eslot){ &b, i };
    r->inflight = n;
    bench_self_rss(&r->rss0_kb, &hwm);
    cpu0 = bench_self_cpu_us();
    bench_engine_phase(&b, e, dir, set, n, slots);
    t1 = bench_now_us();
    if (detach) {
        r->detach_wall_us = t1 - b.t0;
    } else {
        r->wall_us = t1 - b.t0;
        r->cpu_us = bench_self_cpu_us() - cpu0;
    }
    bench_self_rss(&hwm, &r->hwm_kb);
    cocoon_engine_free(e);
    ev_loop_destroy(b.loop);
    free(slots);
    return 0;
}
