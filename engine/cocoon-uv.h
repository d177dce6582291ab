/* cocoon-uv.h: a cocoon engine driven by a libuv loop.  Build a host with
 * `cc host.c $(pkg-config --cflags --libs cocoon-uv)`. */
#ifndef COCOON_UV_H
#define COCOON_UV_H

#include <uv.h>

#include "cocoon.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An engine whose work runs from a uv_poll_t on its fd and a uv_timer_t
 * for its deadline, both on loop.  Every cocoon_* call on it, and every
 * callback, happens in the thread that runs loop.  The handles are
 * referenced only while an operation is pending, so uv_run(UV_RUN_DEFAULT)
 * returns once the engine has nothing left to do.  Free the engine with
 * cocoon_engine_free (inside one of its callbacks is allowed) before
 * uv_loop_close: its handles close on the loop's next turn, and until
 * then uv_loop_close answers UV_EBUSY.  NULL with errno set on failure. */
cocoon_engine *cocoon_uv_engine_new(uv_loop_t *loop, const cocoon_options *opt);

#ifdef __cplusplus
}
#endif
#endif
