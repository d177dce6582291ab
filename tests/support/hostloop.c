/* tests/support/hostloop.c: see hostloop.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/hostloop.h"
#include "tests/support/support.h"

static struct {
    long long busy_t0, busy_max, tick_last, tick_gap_max;
    bool in_busy, gone;
} hl;

bool hl_engine_gone(void)
{
    return hl.gone;
}

void hl_busy_begin(void)
{
    hl.busy_t0 = sup_now_us();
    hl.in_busy = true;
}

void hl_busy_end(void)
{
    if (hl.in_busy && sup_now_us() - hl.busy_t0 > hl.busy_max)
        hl.busy_max = sup_now_us() - hl.busy_t0;
    hl.in_busy = false;
}

void hl_busy_add(long long us)
{
    if (us > hl.busy_max)
        hl.busy_max = us;
}

void hl_tick(void)
{
    long long now = sup_now_us();

    if (hl.tick_last && now - hl.tick_last > hl.tick_gap_max)
        hl.tick_gap_max = now - hl.tick_last;
    hl.tick_last = now;
}

static void hl_reset(void)
{
    memset(&hl, 0, sizeof(hl));
}

struct hl_res {
    int calls, err;
    int *pending;
    cocoon_engine *free_me;
};

static void hl_done(cocoon_engine *e, const cocoon_result *r, void *priv)
{
    struct hl_res *res = priv;

    (void)e;
    res->calls++;
    res->err = r->err;
    if (res->calls == 1)
        (*res->pending)--;
    if (r->err && r->err != -ECANCELED && r->err != -ETIMEDOUT)
        print_message("%s: %s\n", r->vm, r->errstr);
    if (res->free_me) {
        cocoon_engine_free(res->free_me);
        hl.gone = true;
    }
}

static void hl_list_done(cocoon_engine *e, const cocoon_result *r, const cocoon_listing *l,
                         void *priv)
{
    (void)l;
    hl_done(e, r, priv);
}

static int hl_listener(const char *path)
{
    return sup_unix_bind(path, true);
}

void hl_list_one(int (*list_one)(const char *vm))
{
    char *dir = sup_tmpdir(), api[300];
    pid_t pid;

    snprintf(api, sizeof(api), "%s/api.sock", dir);
    pid = sup_chsim_start(api, NULL);
    assert_int_equal(list_one(api), 0);
    assert_int_equal(sup_chsim_count(api, "vm.info"), 1);
    sup_kill(pid);
    sup_rmrf(dir);
    free(dir);
}

void hl_fleet(const hl_ops *ops, int n)
{
    char *bin = sup_build_path("chsim"), *dir = sup_tmpdir(), cnt[16], sock[300], vs[300];
    char *argv[] = { bin, (char *)"--fleet", dir, (char *)"--count", cnt, NULL };
    cocoon_options opt = { .size = sizeof(cocoon_options), .timeout_ms = 60000 };
    struct hl_res *rs = calloc((size_t)n, sizeof(*rs));
    int *lfds = calloc((size_t)n, sizeof(int)), pending = 0;
    struct rlimit rl;
    cocoon_engine *e;
    hl_host *h;
    long long t0;
    pid_t pid;

    assert_non_null(rs);
    assert_non_null(lfds);
    if (n > 500 && sup_env_on("COCOON_VALGRIND")) {
        /* Under valgrind the test binary runs some 50 times slower: the
         * big fleet is for the plain and the sanitizer runs. */
        printf("%s: %d VMs under valgrind: running 500\n", ops->name, n);
        n = 500;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    snprintf(cnt, sizeof(cnt), "%d", n);
    pid = sup_spawn(argv);
    snprintf(sock, sizeof(sock), "%s/vm%d.sock", dir, n - 1);
    assert_int_equal(sup_wait_socket(sock, 60000), 0);
    for (int i = 0; i < n; i++) {
        snprintf(vs, sizeof(vs), "%s/vfs%d.sock", dir, i);
        lfds[i] = hl_listener(vs);
    }
    hl_reset();
    h = ops->create(&opt, &e);
    assert_non_null(h);
    assert_non_null(e);
    ops->tick(h, true);
    t0 = sup_now_us();
    for (int i = 0; i < n; i++) {
        cocoon_fs_spec s = { .size = sizeof(cocoon_fs_spec), .socket = vs, .tag = "data" };

        snprintf(sock, sizeof(sock), "%s/vm%d.sock", dir, i);
        snprintf(vs, sizeof(vs), "%s/vfs%d.sock", dir, i);
        rs[i].pending = &pending;
        assert_int_equal(cocoon_fs_attach(e, sock, &s, hl_done, &rs[i]), 0);
        pending++;
    }
    /* Nothing completes inside a submit. */
    for (int i = 0; i < n; i++)
        assert_int_equal(rs[i].calls, 0);
    while (pending > 0)
        ops->run_once(h);
    printf("%s, %d VMs: all done in %lld ms; host 10 ms timer worst gap %.1f ms; "
           "longest loop wake-up %.1f ms\n", ops->name, n, (sup_now_us() - t0) / 1000,
           hl.tick_gap_max / 1000.0, hl.busy_max / 1000.0);
    /* Run a little longer: no callback comes twice. */
    for (int i = 0; i < 5; i++)
        ops->run_once(h);
    for (int i = 0; i < n; i++) {
        assert_int_equal(rs[i].calls, 1);
        assert_int_equal(rs[i].err, 0);
    }
    /* A very generous bound only: the loop was never held for seconds. */
    assert_true(hl.tick_gap_max < 5 * 1000 * 1000);
    ops->tick(h, false);
    cocoon_engine_free(e);
    ops->destroy(h);
    snprintf(sock, sizeof(sock), "%s/vm0.sock", dir);
    assert_int_equal(sup_chsim_count(sock, "vm.add-fs"), 1);
    for (int i = 0; i < n; i++)
        close(lfds[i]);
    sup_kill(pid);
    sup_rmrf(dir);
    free(dir);
    free(bin);
    free(lfds);
    free(rs);
}

void hl_idle_timeout(const hl_ops *ops)
{
    char *dir = sup_tmpdir(), sock[300];
    cocoon_options opt = { .size = sizeof(cocoon_options), .timeout_ms = 300 };
    int pending = 0, lfd;
    struct hl_res r = { .pending = &pending };
    cocoon_engine *e;
    long long t0, ms;
    hl_host *h;

    /* Listens and never accepts: the connect succeeds, no reply comes. */
    snprintf(sock, sizeof(sock), "%s/mute.sock", dir);
    lfd = hl_listener(sock);
    h = ops->create(&opt, &e);
    assert_non_null(h);
    t0 = sup_now_us();
    assert_int_equal(cocoon_list(e, sock, hl_list_done, &r), 0);
    pending++;
    while (pending > 0)
        ops->run_once(h);
    ms = (sup_now_us() - t0) / 1000;
    printf("%s: request timeout 300 ms fired after %lld ms on an idle host\n", ops->name, ms);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, -ETIMEDOUT);
    assert_true(ms >= 300);
    cocoon_engine_free(e);
    ops->destroy(h);
    close(lfd);
    sup_rmrf(dir);
    free(dir);
}

void hl_free_in_callback(const hl_ops *ops)
{
    char *dir = sup_tmpdir(), api[300];
    int pending = 0;
    struct hl_res a = { .pending = &pending }, b = { .pending = &pending };
    cocoon_engine *e;
    hl_host *h;
    pid_t pid;

    snprintf(api, sizeof(api), "%s/api.sock", dir);
    pid = sup_chsim_start(api, NULL);
    hl_reset();
    h = ops->create(NULL, &e);
    assert_non_null(h);
    ops->tick(h, true);
    a.free_me = e;
    /* Two VMs' worth of work: a completes first (same socket, in order),
     * frees the engine, and b is cancelled. */
    assert_int_equal(cocoon_list(e, api, hl_list_done, &a), 0);
    assert_int_equal(cocoon_list(e, api, hl_list_done, &b), 0);
    pending = 2;
    while (pending > 0)
        ops->run_once(h);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.err, 0);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.err, -ECANCELED);
    /* The host's loop goes on without the engine. */
    hl.tick_last = 0;
    for (int i = 0; i < 3; i++)
        ops->run_once(h);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    ops->tick(h, false);
    ops->destroy(h);
    sup_kill(pid);
    sup_rmrf(dir);
    free(dir);
}
