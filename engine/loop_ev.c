/* engine/loop_ev.c: the libev adapter behind cocoon_engine_new.  One
 * ev_io on the engine's fd, one ev_timer for its deadline; both are
 * unreferenced while the engine has no work, so ev_run returns once every
 * operation has completed, as it would with no engine at all.  An
 * ev_cleanup watcher learns when the loop is destroyed: the adapter then
 * lets go of it, and the engine, no longer driven, waits for
 * cocoon_engine_free. */
#include <errno.h>
#include <stdlib.h>

#include "engine/cocoon.h"

struct loop_ev {
    struct ev_loop *loop;       /* NULL once the loop was destroyed */
    cocoon_engine *e;
    ev_io io;
    ev_timer tm;
    ev_cleanup gone;
    bool io_unref, tm_unref;
};

static void loop_ev_cb(struct loop_ev *a)
{
    /* a may be freed in here (the engine freed by a callback). */
    cocoon_engine_process(a->e);
}

static void loop_ev_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    loop_ev_cb(w->data);
}

static void loop_ev_tm_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    loop_ev_cb(w->data);
}

/* Referenced watchers before stopping them, as libev requires. */
static void loop_ev_ref(struct loop_ev *a)
{
    if (a->io_unref)
        ev_ref(a->loop);
    if (a->tm_unref)
        ev_ref(a->loop);
    a->io_unref = a->tm_unref = false;
}

static void loop_ev_update(void *data, int timeout_ms, bool busy)
{
    struct loop_ev *a = data;

    if (!a->loop)
        return;
    loop_ev_ref(a);
    ev_timer_stop(a->loop, &a->tm);
    if (timeout_ms >= 0) {
        ev_timer_set(&a->tm, timeout_ms / 1000., 0.);
        ev_timer_start(a->loop, &a->tm);
        if (!busy) {
            ev_unref(a->loop);
            a->tm_unref = true;
        }
    }
    if (!busy) {
        ev_unref(a->loop);
        a->io_unref = true;
    }
}

/* Stops watching the loop, which stays usable until this returns. */
static void loop_ev_detach(struct loop_ev *a)
{
    loop_ev_ref(a);
    ev_timer_stop(a->loop, &a->tm);
    ev_io_stop(a->loop, &a->io);
    a->loop = NULL;
}

/* ev_loop_destroy with the engine still alive: its watchers leave the
 * loop before the loop's memory goes, and the operations still pending
 * end -ECANCELED in cocoon_engine_free. */
static void loop_ev_gone_cb(struct ev_loop *loop, ev_cleanup *w, int revents)
{
    (void)loop;
    (void)revents;
    loop_ev_detach(w->data);
}

static void loop_ev_release(void *data)
{
    struct loop_ev *a = data;

    if (a->loop) {
        ev_cleanup_stop(a->loop, &a->gone);
        loop_ev_detach(a);
    }
    free(a);
}

cocoon_engine *cocoon_engine_new(struct ev_loop *loop, const cocoon_options *opt)
{
    struct loop_ev *a;
    cocoon_loop_hooks h = { .size = sizeof(h), .update = loop_ev_update,
                            .release = loop_ev_release };

    if (!loop) {
        errno = EINVAL;
        return NULL;
    }
    a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->loop = loop;
    h.data = a;
    ev_io_init(&a->io, loop_ev_io_cb, -1, EV_READ);
    ev_timer_init(&a->tm, loop_ev_tm_cb, 0., 0.);
    ev_cleanup_init(&a->gone, loop_ev_gone_cb);
    a->io.data = a->tm.data = a->gone.data = a;
    a->e = cocoon_engine_new_hooks(&h, opt);
    if (!a->e) {
        free(a);
        return NULL;
    }
    ev_io_set(&a->io, cocoon_engine_fd(a->e), EV_READ);
    ev_io_start(loop, &a->io);
    /* A cleanup watcher never keeps the loop running. */
    ev_cleanup_start(loop, &a->gone);
    loop_ev_update(a, cocoon_engine_timeout_ms(a->e), cocoon_engine_busy(a->e));
    return a->e;
}
