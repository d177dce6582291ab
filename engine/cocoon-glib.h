/* cocoon-glib.h: a cocoon engine driven by a GLib main context.  Build a
 * host with `cc host.c $(pkg-config --cflags --libs cocoon-glib)`. */
#ifndef COCOON_GLIB_H
#define COCOON_GLIB_H

#include <glib.h>

#include "cocoon.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An engine whose work runs from a GSource attached to ctx (NULL: the
 * global default context), at G_PRIORITY_DEFAULT.  Every cocoon_* call
 * on it, and every callback, happens in the thread that iterates ctx.
 * Each dispatch handles a bounded batch, so the context's other sources
 * keep running during large batches.  Free the engine with
 * cocoon_engine_free (which removes the source); freeing it inside one of
 * its callbacks is allowed.  If ctx is freed first the engine stops being
 * driven, and must still be freed.  NULL with errno set on failure. */
cocoon_engine *cocoon_glib_engine_new(GMainContext *ctx, const cocoon_options *opt);

#ifdef __cplusplus
}
#endif
#endif
