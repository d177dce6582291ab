/* tests/test_loop.c: the engine on a libev host (cocoon_engine_new) and on
 * a plain poll(2) host (cocoon_engine_fd/timeout_ms/process), each run
 * through the adapter scenarios against chsim; and the library never
 * waits for the store's lock inside the host's loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/hostloop.h"
#include "tests/support/support.h"

/* ---- README example begins ---- */
#include <poll.h>
#include <stdio.h>
#include <cocoon.h>

static void on_listed(cocoon_engine *e, const cocoon_result *r, const cocoon_listing *l,
                      void *priv)
{
    int *pending = priv;

    (void)e;
    if (r->err)
        fprintf(stderr, "%s: %s\n", r->vm, r->errstr);
    else
        printf("%s: %zu shares, %zu devices\n", r->vm, l->n_fs, l->n_devices);
    (*pending)--;
}

static int list_one(const char *vm)
{
    cocoon_engine *e = cocoon_engine_new_hooks(NULL, NULL);    /* no hooks: poll */
    int pending = 0;

    if (!e)
        return -1;
    if (cocoon_list(e, vm, on_listed, &pending) == 0)
        pending++;
    while (pending > 0) {
        /* A real loop adds its own fds and takes the smaller timeout. */
        struct pollfd p = { .fd = cocoon_engine_fd(e), .events = POLLIN };

        if (poll(&p, 1, cocoon_engine_timeout_ms(e)) < 0)
            break;
        cocoon_engine_process(e);
    }
    cocoon_engine_free(e);
    return pending ? -1 : 0;
}
/* ---- README example ends ---- */

/* ---- libev ---- */

struct ev_host {
    struct ev_loop *loop;
    ev_timer tick;
};

static void ev_host_release(struct ev_loop *loop)
{
    (void)loop;
    hl_busy_end();
}

static void ev_host_acquire(struct ev_loop *loop)
{
    (void)loop;
    hl_busy_begin();
}

static void ev_host_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    hl_tick();
}

static hl_host *ev_host_create(const cocoon_options *opt, cocoon_engine **e)
{
    struct ev_host *h = calloc(1, sizeof(*h));

    assert_non_null(h);
    h->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(h->loop);
    ev_set_loop_release_cb(h->loop, ev_host_release, ev_host_acquire);
    ev_timer_init(&h->tick, ev_host_tick_cb, 0.010, 0.010);
    *e = cocoon_engine_new(h->loop, opt);
    return (hl_host *)h;
}

static void ev_host_tick(hl_host *hh, bool on)
{
    struct ev_host *h = (struct ev_host *)hh;

    if (on)
        ev_timer_start(h->loop, &h->tick);
    else
        ev_timer_stop(h->loop, &h->tick);
}

static void ev_host_run_once(hl_host *hh)
{
    ev_run(((struct ev_host *)hh)->loop, EVRUN_ONCE);
}

static void ev_host_destroy(hl_host *hh)
{
    struct ev_host *h = (struct ev_host *)hh;

    ev_loop_destroy(h->loop);
    free(h);
}

static const hl_ops ev_ops = { "libev", ev_host_create, ev_host_tick, ev_host_run_once,
                               ev_host_destroy };

/* ---- plain poll(2), the way any other loop embeds the engine ---- */

struct poll_host {
    cocoon_engine *e;
    bool ticking;
    long long next_tick_ms;
};

static hl_host *poll_host_create(const cocoon_options *opt, cocoon_engine **e)
{
    struct poll_host *h = calloc(1, sizeof(*h));

    assert_non_null(h);
    h->e = *e = cocoon_engine_new_hooks(NULL, opt);
    return (hl_host *)h;
}

static void poll_host_tick(hl_host *hh, bool on)
{
    struct poll_host *h = (struct poll_host *)hh;

    h->ticking = on;
    h->next_tick_ms = sup_now_ms() + 10;
}

/* The engine may be freed by a callback inside cocoon_engine_process: the
 * host learns it from its own callback (here hl_engine_gone) and stops
 * calling it. */
static void poll_host_run_once(hl_host *hh)
{
    struct poll_host *h = (struct poll_host *)hh;
    struct pollfd p = { .fd = h->e ? cocoon_engine_fd(h->e) : -1, .events = POLLIN };
    int t = h->e ? cocoon_engine_timeout_ms(h->e) : -1;

    if (h->ticking) {
        long long left = h->next_tick_ms - sup_now_ms();

        if (left < 0)
            left = 0;
        if (t < 0 || left < t)
            t = (int)left;
    }
    assert_true(poll(&p, 1, t) >= 0);
    hl_busy_begin();
    if (h->ticking && sup_now_ms() >= h->next_tick_ms) {
        h->next_tick_ms += 10;
        hl_tick();
    }
    if (h->e)
        cocoon_engine_process(h->e);
    if (hl_engine_gone())
        h->e = NULL;
    hl_busy_end();
}

static void poll_host_destroy(hl_host *hh)
{
    free(hh);
}

static const hl_ops poll_ops = { "poll", poll_host_create, poll_host_tick, poll_host_run_once,
                                 poll_host_destroy };

static void test_ev_fleet_100(void **state) { (void)state; hl_fleet(&ev_ops, 100); }
static void test_ev_fleet_5000(void **state) { (void)state; hl_fleet(&ev_ops, 5000); }
static void test_ev_idle_timeout(void **state) { (void)state; hl_idle_timeout(&ev_ops); }
static void test_ev_free_in_cb(void **state) { (void)state; hl_free_in_callback(&ev_ops); }
static void test_poll_fleet_100(void **state) { (void)state; hl_fleet(&poll_ops, 100); }
static void test_poll_fleet_5000(void **state) { (void)state; hl_fleet(&poll_ops, 5000); }
static void test_poll_idle_timeout(void **state) { (void)state; hl_idle_timeout(&poll_ops); }
static void test_poll_free_in_cb(void **state) { (void)state; hl_free_in_callback(&poll_ops); }

static void test_poll_readme_example(void **state)
{
    (void)state;
    hl_list_one(list_one);
}

/* A submit made outside cocoon_engine_process makes the fd readable, so a
 * host already asleep in poll with the old timeout is woken. */
static void test_poll_submit_wakes(void **state)
{
    cocoon_engine *e = cocoon_engine_new_hooks(NULL, NULL);
    struct pollfd p = { .events = POLLIN };
    int pending = 0;

    (void)state;
    assert_non_null(e);
    p.fd = cocoon_engine_fd(e);
    assert_int_equal(cocoon_engine_timeout_ms(e), -1);
    assert_false(cocoon_engine_busy(e));
    assert_int_equal(poll(&p, 1, 0), 0);
    assert_int_equal(cocoon_list(e, "/nonexistent/api.sock", on_listed, &pending), 0);
    pending++;
    assert_true(cocoon_engine_busy(e));
    assert_int_equal(poll(&p, 1, 0), 1);
    while (pending > 0) {
        assert_true(poll(&p, 1, cocoon_engine_timeout_ms(e)) >= 0);
        assert_true(cocoon_engine_process(e) >= 0);
    }
    /* Drained: nothing left to wake for. */
    assert_int_equal(poll(&p, 1, 0), 0);
    assert_false(cocoon_engine_busy(e));
    cocoon_engine_free(e);
    assert_int_equal(cocoon_engine_fd(NULL), -EINVAL);
    assert_int_equal(cocoon_engine_process(NULL), -EINVAL);
    assert_string_equal(cocoon_version(), COCOON_VERSION_STRING);
}

/* The engine never waits for the store's lock: another process holding
 * it exclusively does not stall the loop, and a change to vms.json is
 * seen at the next operation. */
static void test_store_lock_never_waited(void **state)
{
    char *root = sup_tmpdir(), *dir = sup_asprintf("%s/cloudhypervisor/db", root);
    char *lock = sup_asprintf("%s/vms.lock", dir), *json = sup_asprintf("%s/vms.json", dir);
    cocoon_options opt = { .size = sizeof(cocoon_options), .root_dir = root };
    struct ev_host *h;
    cocoon_engine *e;
    int pending = 0, fd;

    (void)state;
    *strrchr(dir, '/') = '\0';
    assert_int_equal(mkdir(dir, 0700), 0);
    dir[strlen(dir)] = '/';
    assert_int_equal(mkdir(dir, 0700), 0);
    fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0);
    h = (struct ev_host *)ev_host_create(&opt, &e);
    /* A wait for the lock would never end: fail instead of hanging. */
    alarm(60);
    /* No such VM: answered from the store without the lock. */
    assert_int_equal(cocoon_list(e, "nosuchvm", on_listed, &pending), 0);
    pending++;
    while (pending > 0)
        ev_run(h->loop, EVRUN_ONCE);
    alarm(0);
    cocoon_engine_free(e);
    ev_host_destroy((hl_host *)h);
    close(fd);
    free(json);
    free(lock);
    free(dir);
    sup_rmrf(root);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_poll_readme_example),
        cmocka_unit_test(test_poll_submit_wakes),
        cmocka_unit_test(test_store_lock_never_waited),
        cmocka_unit_test(test_ev_fleet_100),
        cmocka_unit_test(test_ev_idle_timeout),
        cmocka_unit_test(test_ev_free_in_cb),
        cmocka_unit_test(test_ev_fleet_5000),
        cmocka_unit_test(test_poll_fleet_100),
        cmocka_unit_test(test_poll_idle_timeout),
        cmocka_unit_test(test_poll_free_in_cb),
        cmocka_unit_test(test_poll_fleet_5000),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
