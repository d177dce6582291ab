/* tests/test_call.c: tests/support/call.c against chsim: the retry table, single
 * shot calls sent exactly once even when the reply is lost, retries of a
 * retryable endpoint on 5xx and the async form's callback discipline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/call.h"
#include "http/base.h"
#include "tests/support/support.h"

struct fx {
    char *dir;
    char sock[256];
    pid_t pid;
};

static struct fx *fx_start(const char *const extra[])
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->dir = sup_tmpdir();
    assert_non_null(f->dir);
    snprintf(f->sock, sizeof(f->sock), "%s/api.sock", f->dir);
    f->pid = sup_chsim_start(f->sock, extra);
    assert_true(f->pid > 0);
    return f;
}

static void fx_stop(struct fx *f)
{
    sup_kill(f->pid);
    sup_rmrf(f->dir);
    free(f->dir);
    free(f);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_retry_table(void **state)
{
    (void)state;
    assert_true(sup_call_retryable("GET", "/api/v1/vmm.ping"));
    assert_true(sup_call_retryable("PUT", "/machine-config"));
    assert_true(sup_call_retryable("PUT", "/boot-source"));
    assert_true(sup_call_retryable("PUT", "/drives/rootfs"));
    assert_true(sup_call_retryable("PUT", "/network-interfaces/eth0"));
    assert_false(sup_call_retryable("PUT", "/drives/"));
    assert_false(sup_call_retryable("PUT", "/drives/a/b"));
    assert_false(sup_call_retryable("GET", "/api/v1/vm.info"));
    static const char *const single[] = {
        "vm.add-fs", "vm.add-device", "vm.remove-device", "vm.add-disk", "vm.add-net",
        "vm.shutdown", "vm.pause", "vm.resume", "vm.power-button", "vm.snapshot",
        "vm.restore", "vmm.shutdown",
    };
    for (size_t i = 0; i < sizeof(single) / sizeof(single[0]); i++) {
        char p[64];

        snprintf(p, sizeof(p), "/api/v1/%s", single[i]);
        assert_false(sup_call_retryable("PUT", p));
    }
    assert_false(sup_call_retryable("PUT", "/actions"));
    assert_false(sup_call_retryable("PATCH", "/vm"));
    assert_false(sup_call_retryable("PUT", "/api/v1/vmm.ping"));
    assert_false(sup_call_retryable(NULL, "/api/v1/vmm.ping"));
}

static void test_sync_ok(void **state)
{
    struct fx *f = fx_start(NULL);
    char err[BASE_ERRSTR_MAX], *body = NULL;
    int status = 0;

    (void)state;
    assert_int_equal(sup_call_sync(f->sock, "GET", "/api/v1/vm.info", NULL, 2000, NULL,
                                   &status, &body, err, sizeof(err)), 0);
    assert_int_equal(status, 200);
    assert_non_null(strstr(body, "\"state\":\"Running\""));
    free(body);
    assert_int_equal(sup_chsim_count(f->sock, "vm.info"), 1);
    fx_stop(f);
}

static void test_sync_status_error(void **state)
{
    static const char *const extra[] = { "--api-version", "head", NULL };
    struct fx *f = fx_start(extra);
    char err[BASE_ERRSTR_MAX];
    int status = 0;
    static const int ok204[] = { 204, 0 };

    (void)state;
    assert_int_equal(sup_call_sync(f->sock, "PUT", "/api/v1/vm.remove-device",
                                   "{\"id\":\"nope\"}", 2000, ok204, &status, NULL, err,
                                   sizeof(err)), -EREMOTEIO);
    assert_int_equal(status, 404);
    assert_string_equal(err, "PUT http://localhost/api/v1/vm.remove-device \xe2\x86\x92 404: "
                             "Error from API: The device could not be removed from the VM: "
                             "Error from device manager: Failed to find device "
                             "corresponding to the given identifier: nope");
    fx_stop(f);
}

static void test_single_shot_lost_reply(void **state)
{
    static const char *const extra[] = { "--fault", "vm.pause=close-before-reply", NULL };
    struct fx *f = fx_start(extra);
    char err[BASE_ERRSTR_MAX];
    int rc;

    (void)state;
    rc = sup_call_sync(f->sock, "PUT", "/api/v1/vm.pause", NULL, 2000, NULL, NULL, NULL,
                       err, sizeof(err));
    assert_true(rc < 0);
    assert_int_not_equal(rc, -EREMOTEIO);
    assert_int_equal(sup_chsim_count(f->sock, "vm.pause"), 1);
    fx_stop(f);
}

static void test_single_shot_5xx_not_retried(void **state)
{
    static const char *const extra[] = { "--fault", "vm.resume=plain-text-error", NULL };
    struct fx *f = fx_start(extra);
    char err[BASE_ERRSTR_MAX];
    int status;

    (void)state;
    assert_int_equal(sup_call_sync(f->sock, "PUT", "/api/v1/vm.resume", NULL, 2000, NULL,
                                   &status, NULL, err, sizeof(err)), -EREMOTEIO);
    assert_int_equal(status, 500);
    assert_string_equal(err, "PUT http://localhost/api/v1/vm.resume \xe2\x86\x92 500: "
                             "Error from API: chsim injected plain-text error");
    assert_int_equal(sup_chsim_count(f->sock, "vm.resume"), 1);
    fx_stop(f);
}

static void test_retry_on_5xx(void **state)
{
    static const char *const extra[] = { "--fault", "vmm.ping=plain-text-error:2", NULL };
    struct fx *f = fx_start(extra);
    char err[BASE_ERRSTR_MAX];
    int status;
    double t0 = now_s();

    (void)state;
    assert_int_equal(sup_call_sync(f->sock, "GET", "/api/v1/vmm.ping", NULL, 2000, NULL,
                                   &status, NULL, err, sizeof(err)), 0);
    assert_int_equal(status, 200);
    assert_int_equal(sup_chsim_count(f->sock, "vmm.ping"), 3);
    /* 100 + 200 ms of backoff */
    assert_true(now_s() - t0 >= 0.29);
    fx_stop(f);
}

static void test_retry_gives_up_after_4(void **state)
{
    static const char *const extra[] = { "--fault", "vmm.ping=plain-text-error", NULL };
    struct fx *f = fx_start(extra);
    char err[BASE_ERRSTR_MAX];
    int status;

    (void)state;
    assert_int_equal(sup_call_sync(f->sock, "GET", "/api/v1/vmm.ping", NULL, 2000, NULL,
                                   &status, NULL, err, sizeof(err)), -EREMOTEIO);
    assert_int_equal(status, 500);
    assert_int_equal(sup_chsim_count(f->sock, "vmm.ping"), 4);
    fx_stop(f);
}

struct acb {
    int calls;
    int err;
    int status;
    bool in_submit;
    bool called_in_submit;
};

static void acb_fn(const sup_call_result *r, void *priv)
{
    struct acb *a = priv;

    a->calls++;
    a->err = r->err;
    a->status = r->status;
    if (a->in_submit)
        a->called_in_submit = true;
}

/* Runs l until nothing is pending, failing the test after 5 s. */
static void run_idle(lp_loop *l)
{
    long long end = sup_now_ms() + 5000;

    while (lp_busy(l)) {
        if (sup_now_ms() > end)
            fail_msg("watchdog fired");
        assert_true(lp_run_once(l, 100) >= 0);
    }
}

static void test_async_once(void **state)
{
    struct fx *f = fx_start(NULL);
    lp_loop *loop = lp_new();
    struct acb a = { 0 };

    (void)state;
    assert_non_null(loop);
    a.in_submit = true;
    assert_int_equal(sup_call(loop, f->sock, "GET", "/api/v1/vmm.ping", NULL, 2000, NULL,
                              acb_fn, &a), 0);
    a.in_submit = false;
    assert_int_equal(a.calls, 0);
    run_idle(loop);
    assert_int_equal(a.calls, 1);
    assert_false(a.called_in_submit);
    assert_int_equal(a.err, 0);
    assert_int_equal(a.status, 200);
    lp_free(loop);
    assert_int_equal(sup_call(NULL, f->sock, "GET", "/x", NULL, 0, NULL, acb_fn, &a), -EINVAL);
    fx_stop(f);
}

static void test_async_connect_error_no_socket(void **state)
{
    lp_loop *loop = lp_new();
    struct acb a = { 0 };
    char *dir = sup_tmpdir(), sock[256];

    (void)state;
    snprintf(sock, sizeof(sock), "%s/none.sock", dir);
    /* Single-shot: one attempt, an error, no retries. */
    assert_int_equal(sup_call(loop, sock, "PUT", "/api/v1/vm.shutdown", NULL, 1000, NULL,
                              acb_fn, &a), 0);
    run_idle(loop);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.err, -ENOENT);
    lp_free(loop);
    sup_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_table),
        cmocka_unit_test(test_sync_ok),
        cmocka_unit_test(test_sync_status_error),
        cmocka_unit_test(test_single_shot_lost_reply),
        cmocka_unit_test(test_single_shot_5xx_not_retried),
        cmocka_unit_test(test_retry_on_5xx),
        cmocka_unit_test(test_retry_gives_up_after_4),
        cmocka_unit_test(test_async_once),
        cmocka_unit_test(test_async_connect_error_no_socket),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
