/* tests/test_embed.c: a tiny host program that embeds cocoon through the
 * public header alone, on its own libev loop: the example the README shows.
 * The host part (between the markers) uses nothing but <cocoon.h>; the
 * cmocka part only provides the chsim peer and a virtiofsd stand-in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/support.h"

/* ---- README example begins ---- */
#include "engine/cocoon.h"      /* installed as <cocoon.h> */

struct host {
    int pending;
    int failures;
    char last_id[128];
};

static void on_attached(cocoon_engine *e, const cocoon_result *r, void *priv)
{
    struct host *h = priv;

    (void)e;
    if (r->err)
        h->failures++;
    else
        snprintf(h->last_id, sizeof(h->last_id), "%s", r->device_id);
    h->pending--;
}

static void on_listed(cocoon_engine *e, const cocoon_result *r, const cocoon_listing *l,
                      void *priv)
{
    struct host *h = priv;

    (void)e;
    if (r->err || l->n_fs != 1 || strcmp(l->fs[0].tag, "data") != 0)
        h->failures++;
    h->pending--;
}

/* Attaches the share on every VM, then lists the first one. */
static int host_attach_all(const char *const vms[], size_t n, const char *vfs_sock,
                           struct host *h)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    /* size first; fields left out take their defaults */
    cocoon_options opt = { .size = sizeof(opt), .timeout_ms = 5000 };
    cocoon_engine *e = cocoon_engine_new(loop, &opt);
    cocoon_fs_spec fs = { .size = sizeof(fs), .socket = vfs_sock, .tag = "data" };

    for (size_t i = 0; i < n; i++)
        if (cocoon_fs_attach(e, vms[i], &fs, on_attached, h) == 0)
            h->pending++;
    if (n && cocoon_list(e, vms[0], on_listed, h) == 0)
        h->pending++;
    while (h->pending > 0)
        ev_run(loop, EVRUN_ONCE);
    cocoon_engine_free(e);
    ev_loop_destroy(loop);
    return h->failures ? -1 : 0;
}
/* ---- README example ends ---- */

static void test_embed_host(void **state)
{
    char *dir = sup_tmpdir(), api[100], vfs[100];
    static const char *const extra[] = { "--memory", "size=1G,shared=on", NULL };
    struct host h = { 0 };
    const char *vms[1];
    int lfd;
    pid_t pid;

    (void)state;
    assert_non_null(dir);
    snprintf(api, sizeof(api), "%s/api.sock", dir);
    snprintf(vfs, sizeof(vfs), "%s/vfs.sock", dir);
    pid = sup_chsim_start(api, extra);
    assert_true(pid > 0);
    lfd = sup_unix_bind(vfs, true);
    vms[0] = api;
    assert_int_equal(host_attach_all(vms, 1, vfs, &h), 0);
    assert_int_equal(h.pending, 0);
    assert_string_equal(h.last_id, "cocoon-fs-data");
    assert_int_equal(sup_chsim_count(api, "vm.add-fs"), 1);
    close(lfd);
    sup_kill(pid);
    sup_rmrf(dir);
    free(dir);
}

static void test_embed_submit_errors(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    cocoon_engine *e = cocoon_engine_new(loop, NULL);
    struct host h = { 0 };
    cocoon_fs_spec fs = { .size = sizeof(cocoon_fs_spec), .socket = "/x", .tag = "t" };

    (void)state;
    assert_non_null(e);
    assert_null(cocoon_engine_new(NULL, NULL));
    assert_int_equal(cocoon_fs_attach(e, NULL, &fs, on_attached, &h) < 0, 1);
    assert_int_equal(cocoon_fs_attach(e, "/x", NULL, on_attached, &h) < 0, 1);
    assert_int_equal(cocoon_fs_attach(e, "/x", &fs, NULL, &h) < 0, 1);
    assert_int_equal(cocoon_list(e, "/x", NULL, &h) < 0, 1);
    cocoon_engine_free(e);
    cocoon_engine_free(NULL);
    ev_loop_destroy(loop);
    assert_int_equal(h.pending, 0);
}

/* A caller compiled against an older cocoon.h passes a smaller size: the
 * fields past it are read as their defaults, whatever the bytes there
 * hold.  Here the options end before socket_check (the default checks
 * the listener) and the spec before queue_size (garbage there would fail
 * validation, and a socket_check of -1 would skip the check). */
struct one {
    int calls, err;
    char errstr[512];
};

static void on_one(cocoon_engine *e, const cocoon_result *r, void *priv)
{
    struct one *o = priv;

    (void)e;
    o->calls++;
    o->err = r->err;
    snprintf(o->errstr, sizeof(o->errstr), "%s", r->errstr);
}

static void test_older_caller_struct(void **state)
{
    static const char *const extra[] = { "--memory", "size=1G,shared=on", NULL };
    char *dir = sup_tmpdir(), api[100], vfs[100];
    union { cocoon_options o; unsigned char raw[sizeof(cocoon_options) + 16]; } uo;
    union { cocoon_fs_spec s; unsigned char raw[sizeof(cocoon_fs_spec) + 16]; } us;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct one refused = { 0 }, done = { 0 };
    cocoon_engine *e;
    int lfd;
    pid_t pid;

    (void)state;
    snprintf(api, sizeof(api), "%s/api.sock", dir);
    snprintf(vfs, sizeof(vfs), "%s/vfs.sock", dir);
    pid = sup_chsim_start(api, extra);
    assert_true(pid > 0);
    memset(&uo, 0xff, sizeof(uo));
    uo.o.size = offsetof(cocoon_options, ch_binary) + sizeof(uo.o.ch_binary);
    uo.o.root_dir = dir;
    uo.o.timeout_ms = 60000;
    uo.o.max_inflight_vms = 0;
    uo.o.ch_binary = NULL;
    e = cocoon_engine_new(loop, &uo.o);
    assert_non_null(e);
    memset(&us, 0xff, sizeof(us));
    us.s.size = offsetof(cocoon_fs_spec, num_queues) + sizeof(us.s.num_queues);
    us.s.socket = vfs;
    us.s.tag = "data";
    us.s.num_queues = 1;
    /* nothing listens on vfs: the default check refuses before vm.add-fs */
    assert_int_equal(cocoon_fs_attach(e, api, &us.s, on_one, &refused), 0);
    while (refused.calls == 0)
        ev_run(loop, EVRUN_ONCE);
    assert_int_equal(refused.err, -ENOENT);
    assert_int_equal(sup_chsim_count(api, "vm.add-fs"), 0);
    /* with a listener the same spec attaches, queue_size at its default */
    lfd = sup_unix_bind(vfs, true);
    assert_int_equal(cocoon_fs_attach(e, api, &us.s, on_one, &done), 0);
    while (done.calls == 0)
        ev_run(loop, EVRUN_ONCE);
    assert_string_equal(done.errstr, "");
    assert_int_equal(done.err, 0);
    assert_int_equal(sup_chsim_count(api, "vm.add-fs"), 1);
    cocoon_engine_free(e);
    ev_loop_destroy(loop);
    close(lfd);
    sup_kill(pid);
    sup_rmrf(dir);
    free(dir);
}

/* size 0 is a struct never initialised; a newer caller's bigger struct
 * passes when the fields this library does not know are zero. */
static void test_struct_size_checked(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    union { cocoon_options o; unsigned char raw[sizeof(cocoon_options) + 8]; } big;
    union { cocoon_fs_spec s; unsigned char raw[sizeof(cocoon_fs_spec) + 8]; } bigs;
    cocoon_options zero = { 0 };
    cocoon_fs_spec fs0 = { 0 };
    cocoon_vfio_spec dev0 = { 0 }, dev = COCOON_VFIO_SPEC_INIT;
    cocoon_vm_opts vo0 = { 0 }, vo;
    struct host h = { 0 };
    cocoon_engine *e;

    (void)state;
    errno = 0;
    assert_null(cocoon_engine_new(loop, &zero));
    assert_int_equal(errno, EINVAL);
    memset(&big, 0, sizeof(big));
    big.o.size = sizeof(big.raw);
    big.raw[sizeof(cocoon_options) + 3] = 1;
    errno = 0;
    assert_null(cocoon_engine_new_hooks(NULL, &big.o));
    assert_int_equal(errno, E2BIG);
    big.raw[sizeof(cocoon_options) + 3] = 0;
    big.o.timeout_ms = 1000;
    e = cocoon_engine_new(loop, &big.o);
    assert_non_null(e);

    assert_int_equal(cocoon_fs_attach(e, "/x", &fs0, on_attached, &h), -EINVAL);
    memset(&bigs, 0, sizeof(bigs));
    cocoon_fs_spec_init(&bigs.s);
    bigs.s.size = sizeof(bigs.raw);
    bigs.s.socket = "/x";
    bigs.s.tag = "t";
    bigs.raw[sizeof(bigs.raw) - 1] = 7;
    assert_int_equal(cocoon_fs_attach(e, "/x", &bigs.s, on_attached, &h), -E2BIG);
    assert_int_equal(cocoon_device_attach(e, "/x", &dev0, on_attached, &h), -EINVAL);
    assert_int_equal(cocoon_vm_start(e, "vm", &vo0, on_attached, &h), -EINVAL);
    cocoon_vm_opts_init(&vo);
    assert_int_equal(vo.size, sizeof(vo));
    assert_int_equal(cocoon_vm_snapshot(e, "vm", &vo, on_attached, &h), -EINVAL);
    assert_int_equal(dev.size, sizeof(dev));
    assert_int_equal(h.pending, 0);
    cocoon_engine_free(e);
    ev_loop_destroy(loop);
}

struct late {
    int calls, err;
};

static void on_late(cocoon_engine *e, const cocoon_result *r, const cocoon_listing *l, void *priv)
{
    struct late *c = priv;

    (void)e;
    (void)l;
    c->calls++;
    c->err = r->err;
}

/* ev_loop_destroy before cocoon_engine_free: the engine lets go of the
 * loop as it is destroyed (nothing of it touches the freed loop, which
 * ASan and valgrind would report), and the later free completes what is
 * still pending with -ECANCELED, once.  keep_idle: the first listing
 * completes, so the engine holds an idle kept-alive connection; else one
 * is still in flight. */
static void loop_destroyed_first(bool keep_idle)
{
    char *dir = sup_tmpdir(), api[100];
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    cocoon_engine *e = cocoon_engine_new(loop, NULL);
    struct late done = { 0 }, cut = { 0 };
    pid_t pid;

    snprintf(api, sizeof(api), "%s/api.sock", dir);
    pid = sup_chsim_start(api, NULL);
    assert_true(pid > 0);
    assert_non_null(e);
    assert_int_equal(cocoon_list(e, api, on_late, &done), 0);
    while (done.calls == 0)
        ev_run(loop, EVRUN_ONCE);
    assert_int_equal(done.err, 0);
    if (!keep_idle) {
        assert_int_equal(cocoon_list(e, api, on_late, &cut), 0);
        ev_run(loop, EVRUN_NOWAIT);
    }
    ev_loop_destroy(loop);
    assert_int_equal(cut.calls, 0);
    cocoon_engine_free(e);
    assert_int_equal(done.calls, 1);
    assert_int_equal(cut.calls, keep_idle ? 0 : 1);
    if (!keep_idle)
        assert_int_equal(cut.err, -ECANCELED);
    sup_kill(pid);
    sup_rmrf(dir);
    free(dir);
}

static void test_loop_destroyed_first_idle(void **state)
{
    (void)state;
    loop_destroyed_first(true);
}

static void test_loop_destroyed_first_pending(void **state)
{
    (void)state;
    loop_destroyed_first(false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embed_host),
        cmocka_unit_test(test_embed_submit_errors),
        cmocka_unit_test(test_older_caller_struct),
        cmocka_unit_test(test_struct_size_checked),
        cmocka_unit_test(test_loop_destroyed_first_idle),
        cmocka_unit_test(test_loop_destroyed_first_pending),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
