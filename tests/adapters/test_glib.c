/* tests/adapters/test_glib.c: the engine on a GLib main context
 * (cocoon_glib_engine_new), through the adapter scenarios against chsim;
 * and a context freed before the engine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>

#include "tests/support/hostloop.h"
#include "tests/support/support.h"

/* ---- README example begins ---- */
#include <stdio.h>
#include <cocoon-glib.h>

static void on_listed(cocoon_engine *e, const cocoon_result *r, const cocoon_listing *l,
                      void *priv)
{
    GMainLoop *ml = priv;

    (void)e;
    if (r->err)
        fprintf(stderr, "%s: %s\n", r->vm, r->errstr);
    else
        printf("%s: %zu shares, %zu devices\n", r->vm, l->n_fs, l->n_devices);
    g_main_loop_quit(ml);
}

static int list_one(const char *vm)
{
    GMainContext *ctx = g_main_context_new();
    GMainLoop *ml = g_main_loop_new(ctx, FALSE);
    cocoon_engine *e = cocoon_glib_engine_new(ctx, NULL);
    int rc = e ? cocoon_list(e, vm, on_listed, ml) : -1;

    if (rc == 0)
        g_main_loop_run(ml);
    cocoon_engine_free(e);          /* before the context goes */
    g_main_loop_unref(ml);
    g_main_context_unref(ctx);
    return rc;
}
/* ---- README example ends ---- */

struct glib_host {
    GMainContext *ctx;
    GSource *tick;
};

/* Wraps the context's poll to see when the loop sleeps and wakes. */
static GPollFunc glib_host_poll_orig;

static gint glib_host_poll(GPollFD *fds, guint n, gint timeout)
{
    gint rc;

    hl_busy_end();
    rc = glib_host_poll_orig(fds, n, timeout);
    hl_busy_begin();
    return rc;
}

static gboolean glib_host_tick_cb(gpointer data)
{
    (void)data;
    hl_tick();
    return G_SOURCE_CONTINUE;
}

static hl_host *glib_host_create(const cocoon_options *opt, cocoon_engine **e)
{
    struct glib_host *h = calloc(1, sizeof(*h));

    assert_non_null(h);
    h->ctx = g_main_context_new();
    glib_host_poll_orig = g_main_context_get_poll_func(h->ctx);
    g_main_context_set_poll_func(h->ctx, glib_host_poll);
    *e = cocoon_glib_engine_new(h->ctx, opt);
    return (hl_host *)h;
}

static void glib_host_tick(hl_host *hh, bool on)
{
    struct glib_host *h = (struct glib_host *)hh;

    if (on && !h->tick) {
        h->tick = g_timeout_source_new(10);
        g_source_set_callback(h->tick, glib_host_tick_cb, NULL, NULL);
        g_source_attach(h->tick, h->ctx);
    } else if (!on && h->tick) {
        g_source_destroy(h->tick);
        g_source_unref(h->tick);
        h->tick = NULL;
    }
}

static void glib_host_run_once(hl_host *hh)
{
    g_main_context_iteration(((struct glib_host *)hh)->ctx, TRUE);
}

static void glib_host_destroy(hl_host *hh)
{
    struct glib_host *h = (struct glib_host *)hh;

    g_main_context_unref(h->ctx);
    free(h);
}

static const hl_ops glib_ops = { "glib", glib_host_create, glib_host_tick,
                                 glib_host_run_once, glib_host_destroy };

static void test_glib_fleet_100(void **state) { (void)state; hl_fleet(&glib_ops, 100); }
static void test_glib_fleet_5000(void **state) { (void)state; hl_fleet(&glib_ops, 5000); }
static void test_glib_idle_timeout(void **state) { (void)state; hl_idle_timeout(&glib_ops); }
static void test_glib_free_in_cb(void **state) { (void)state; hl_free_in_callback(&glib_ops); }

/* The context goes first: the engine is no longer driven, and freeing it
 * afterwards is still safe. */
static void test_glib_context_first(void **state)
{
    GMainContext *ctx = g_main_context_new();
    cocoon_engine *e = cocoon_glib_engine_new(ctx, NULL);

    (void)state;
    assert_non_null(e);
    g_main_context_unref(ctx);
    cocoon_engine_free(e);
}

static void test_glib_readme_example(void **state)
{
    (void)state;
    hl_list_one(list_one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glib_readme_example),
        cmocka_unit_test(test_glib_fleet_100),
        cmocka_unit_test(test_glib_idle_timeout),
        cmocka_unit_test(test_glib_free_in_cb),
        cmocka_unit_test(test_glib_context_first),
        cmocka_unit_test(test_glib_fleet_5000),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
