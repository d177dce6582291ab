/* engine/adapters/glib.c: the GLib adapter.  One GSource polls the engine's
 * fd; its prepare step asks the engine for its deadline each time the
 * context iterates, so work submitted from any callback in that thread is
 * seen on the next iteration without a wake-up. */
#include <errno.h>

#include "engine/cocoon-glib.h"

typedef struct cocoon_gsource {
    GSource src;
    cocoon_engine *e;
    gpointer tag;
} cocoon_gsource;

static gboolean cocoon_gsource_prepare(GSource *s, gint *timeout)
{
    cocoon_gsource *g = (cocoon_gsource *)s;

    *timeout = cocoon_engine_timeout_ms(g->e);
    return *timeout == 0;
}

static gboolean cocoon_gsource_check(GSource *s)
{
    cocoon_gsource *g = (cocoon_gsource *)s;

    return (g_source_query_unix_fd(s, g->tag) & G_IO_IN) || cocoon_engine_timeout_ms(g->e) == 0;
}

static gboolean cocoon_gsource_dispatch(GSource *s, GSourceFunc cb, gpointer data)
{
    (void)cb;
    (void)data;
    /* The engine may free itself (and destroy s) in here; GLib holds a
     * reference to s until this returns. */
    cocoon_engine_process(((cocoon_gsource *)s)->e);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs cocoon_gsource_funcs = {
    .prepare = cocoon_gsource_prepare,
    .check = cocoon_gsource_check,
    .dispatch = cocoon_gsource_dispatch,
};

static void cocoon_gsource_release(void *data)
{
    GSource *s = data;

    g_source_destroy(s);
    g_source_unref(s);
}

cocoon_engine *cocoon_glib_engine_new(GMainContext *ctx, const cocoon_options *opt)
{
    GSource *s = g_source_new(&cocoon_gsource_funcs, sizeof(cocoon_gsource));
    cocoon_gsource *g = (cocoon_gsource *)s;
    cocoon_loop_hooks h = { .size = sizeof(h), .data = s, .release = cocoon_gsource_release };

    g->e = cocoon_engine_new_hooks(&h, opt);
    if (!g->e) {
        int err = errno;

        g_source_unref(s);
        errno = err;
        return NULL;
    }
    g->tag = g_source_add_unix_fd(s, cocoon_engine_fd(g->e), G_IO_IN);
    g_source_set_name(s, "cocoon");
    g_source_attach(s, ctx);
    return g->e;
}
