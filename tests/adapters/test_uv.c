/* tests/adapters/test_uv.c: the engine on a libuv loop
 * (cocoon_uv_engine_new), through the adapter scenarios against chsim;
 * uv_run returns once the engine is idle, and the loop cannot be closed
 * before the engine is freed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>

#include "tests/support/hostloop.h"
#include "tests/support/support.h"

/* ---- README example begins ---- */
#include <stdio.h>
#include <cocoon-uv.h>

static void on_listed(cocoon_engine *e, const cocoon_result *r, const cocoon_listing *l,
                      void *priv)
{
    (void)e;
    (void)priv;
    if (r->err)
        fprintf(stderr, "%s: %s\n", r->vm, r->errstr);
    else
        printf("%s: %zu shares, %zu devices\n", r->vm, l->n_fs, l->n_devices);
}

static int list_one(const char *vm)
{
    uv_loop_t loop;
    cocoon_engine *e;
    int rc = uv_loop_init(&loop);

    if (rc)
        return rc;
    e = cocoon_uv_engine_new(&loop, NULL);
    rc = e ? cocoon_list(e, vm, on_listed, NULL) : -1;
    uv_run(&loop, UV_RUN_DEFAULT);  /* returns once the engine is idle */
    cocoon_engine_free(e);          /* before uv_loop_close */
    uv_run(&loop, UV_RUN_DEFAULT);  /* lets the engine's handles close */
    return uv_loop_close(&loop) ? -1 : rc;
}
/* ---- README example ends ---- */

struct uv_host {
    uv_loop_t loop;
    uv_prepare_t prep;          /* runs just before the loop waits */
    uv_timer_t tick;
    uint64_t last_ns, last_idle_ns;
};

/* libuv runs I/O callbacks inside its wait, so the time awake in one turn
 * is the turn's length less the time spent blocked in the kernel (the
 * loop's idle-time metric). */
static void uv_host_prep_cb(uv_prepare_t *p)
{
    struct uv_host *h = p->data;
    uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(&h->loop);

    if (h->last_ns)
        hl_busy_add((long long)((now - h->last_ns) - (idle - h->last_idle_ns)) / 1000);
    h->last_ns = now;
    h->last_idle_ns = idle;
}

static void uv_host_tick_cb(uv_timer_t *t)
{
    (void)t;
    hl_tick();
}

static hl_host *uv_host_create(const cocoon_options *opt, cocoon_engine **e)
{
    struct uv_host *h = calloc(1, sizeof(*h));

    assert_non_null(h);
    assert_int_equal(uv_loop_init(&h->loop), 0);
    assert_int_equal(uv_loop_configure(&h->loop, UV_METRICS_IDLE_TIME), 0);
    uv_prepare_init(&h->loop, &h->prep);
    h->prep.data = h;
    uv_prepare_start(&h->prep, uv_host_prep_cb);
    uv_unref((uv_handle_t *)&h->prep);
    uv_timer_init(&h->loop, &h->tick);
    *e = cocoon_uv_engine_new(&h->loop, opt);
    return (hl_host *)h;
}

static void uv_host_tick(hl_host *hh, bool on)
{
    struct uv_host *h = (struct uv_host *)hh;

    if (on)
        uv_timer_start(&h->tick, uv_host_tick_cb, 10, 10);
    else
        uv_timer_stop(&h->tick);
}

static void uv_host_run_once(hl_host *hh)
{
    uv_run(&((struct uv_host *)hh)->loop, UV_RUN_ONCE);
}

static void uv_host_destroy(hl_host *hh)
{
    struct uv_host *h = (struct uv_host *)hh;

    uv_close((uv_handle_t *)&h->prep, NULL);
    uv_close((uv_handle_t *)&h->tick, NULL);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&h->loop), 0);
    free(h);
}

static const hl_ops uv_ops = { "libuv", uv_host_create, uv_host_tick, uv_host_run_once,
                               uv_host_destroy };

static void test_uv_fleet_100(void **state) { (void)state; hl_fleet(&uv_ops, 100); }
static void test_uv_fleet_5000(void **state) { (void)state; hl_fleet(&uv_ops, 5000); }
static void test_uv_idle_timeout(void **state) { (void)state; hl_idle_timeout(&uv_ops); }
static void test_uv_free_in_cb(void **state) { (void)state; hl_free_in_callback(&uv_ops); }

static void count_cb(cocoon_engine *e, const cocoon_result *r, const cocoon_listing *l,
                     void *priv)
{
    (void)e;
    (void)l;
    *(int *)priv = r->err ? -1 : *(int *)priv + 1;
}

/* uv_run(UV_RUN_DEFAULT) returns when the operation is done: the engine's
 * handles hold the loop only while work is pending.  Closing the loop
 * before freeing the engine is refused (UV_EBUSY). */
static void test_uv_run_default(void **state)
{
    char *dir = sup_tmpdir(), api[300];
    uv_loop_t loop;
    cocoon_engine *e;
    int calls = 0;
    pid_t pid;

    (void)state;
    snprintf(api, sizeof(api), "%s/api.sock", dir);
    pid = sup_chsim_start(api, NULL);
    assert_int_equal(uv_loop_init(&loop), 0);
    e = cocoon_uv_engine_new(&loop, NULL);
    assert_non_null(e);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(cocoon_list(e, api, count_cb, &calls), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(calls, 1);
    assert_int_equal(uv_loop_close(&loop), UV_EBUSY);
    cocoon_engine_free(e);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_null(cocoon_uv_engine_new(NULL, NULL));
    assert_int_equal(errno, EINVAL);
    sup_kill(pid);
    sup_rmrf(dir);
    free(dir);
}

static void test_uv_readme_example(void **state)
{
    (void)state;
    hl_list_one(list_one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uv_readme_example),
        cmocka_unit_test(test_uv_fleet_100),
        cmocka_unit_test(test_uv_idle_timeout),
        cmocka_unit_test(test_uv_free_in_cb),
        cmocka_unit_test(test_uv_run_default),
        cmocka_unit_test(test_uv_fleet_5000),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
