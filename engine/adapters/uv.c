/* engine/adapters/uv.c: the libuv adapter.  A uv_poll_t watches the
 * engine's fd, a uv_timer_t its deadline; the engine re-arms the timer
 * through its update hook whenever the deadline moves, submits included,
 * so new work starts on the loop's next turn. */
#include <errno.h>
#include <stdlib.h>

#include "engine/cocoon-uv.h"

typedef struct cocoon_uv {
    uv_poll_t poll;
    uv_timer_t timer;
    cocoon_engine *e;
    int open_handles;
} cocoon_uv;

static void cocoon_uv_poll_cb(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    cocoon_engine_process(((cocoon_uv *)p->data)->e);
}

static void cocoon_uv_timer_cb(uv_timer_t *t)
{
    cocoon_engine_process(((cocoon_uv *)t->data)->e);
}

static void cocoon_uv_update(void *data, int timeout_ms, bool busy)
{
    cocoon_uv *u = data;

    if (timeout_ms >= 0)
        uv_timer_start(&u->timer, cocoon_uv_timer_cb, (uint64_t)timeout_ms, 0);
    else
        uv_timer_stop(&u->timer);
    if (busy) {
        uv_ref((uv_handle_t *)&u->poll);
        uv_ref((uv_handle_t *)&u->timer);
    } else {
        uv_unref((uv_handle_t *)&u->poll);
        uv_unref((uv_handle_t *)&u->timer);
    }
}

static void cocoon_uv_closed(uv_handle_t *h)
{
    cocoon_uv *u = h->data;

    if (--u->open_handles == 0)
        free(u);
}

static void cocoon_uv_release(void *data)
{
    cocoon_uv *u = data;

    if (u->open_handles == 0) {
        free(u);
        return;
    }
    uv_poll_stop(&u->poll);
    uv_close((uv_handle_t *)&u->poll, cocoon_uv_closed);
    if (u->open_handles == 2) {
        uv_timer_stop(&u->timer);
        uv_close((uv_handle_t *)&u->timer, cocoon_uv_closed);
    }
}

cocoon_engine *cocoon_uv_engine_new(uv_loop_t *loop, const cocoon_options *opt)
{
    cocoon_uv *u;
    cocoon_loop_hooks h = { .size = sizeof(h), .update = cocoon_uv_update,
                            .release = cocoon_uv_release };
    int rc;

    if (!loop) {
        errno = EINVAL;
        return NULL;
    }
    u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    h.data = u;
    u->e = cocoon_engine_new_hooks(&h, opt);
    if (!u->e) {
        int err = errno;

        free(u);
        errno = err;
        return NULL;
    }
    /* open_handles counts the handles release must close: the poll
     * handle first, then the timer. */
    rc = uv_poll_init(loop, &u->poll, cocoon_engine_fd(u->e));
    if (rc == 0) {
        u->open_handles++;
        u->poll.data = u;
        rc = uv_timer_init(loop, &u->timer);
    }
    if (rc == 0) {
        u->open_handles++;
        u->timer.data = u;
        rc = uv_poll_start(&u->poll, UV_READABLE, cocoon_uv_poll_cb);
    }
    if (rc) {
        cocoon_engine_free(u->e);
        errno = -rc;
        return NULL;
    }
    cocoon_uv_update(u, cocoon_engine_timeout_ms(u->e), cocoon_engine_busy(u->e));
    return u->e;
}
