/* tests/test_soak.c: one engine, 100 VMs of one chsim fleet with a real
 * eject delay, many attach/detach cycles (COCOON_SOAK=full: 10,000; the
 * default short form for `make test`: 300).  Open fds and RSS after the
 * first round must equal (RSS: within a small bound) those at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/cocoon.h"
#include "tests/support/support.h"

#define NVMS 100
#define RSS_SLACK_KB 2048

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

struct soak_vm {
    struct soak *s;
    int idx;
    char sock[300];
    char vfs[320];
    int cycles;               /* completed attach/detach pairs */
    bool attached;
    bool device;              /* this cycle uses VFIO rather than fs */
};

struct soak {
    struct ev_loop *loop;
    cocoon_engine *e;
    ev_timer wd;
    struct soak_vm vms[NVMS];
    int target;               /* total cycles */
    int started, done;
    int failures;
    char first_err[1024];
    int fds_first, fds_last;
    long rss_first_kb, rss_last_kb;
    const char *pci;
};

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    assert_true(kb > 0);
    return kb;
}

static void soak_next(struct soak_vm *v);

static void soak_fail(struct soak *s, const char *what, const cocoon_result *r)
{
    if (s->failures++ == 0)
        snprintf(s->first_err, sizeof(s->first_err), "%s on %s: %d %s", what, r->vm, r->err,
                 r->errstr);
}

static void soak_done_cb(cocoon_engine *e, const cocoon_result *r, void *priv)
{
    struct soak_vm *v = priv;
    struct soak *s = v->s;

    (void)e;
    if (r->err != 0 || strcmp(r->errstr, "") != 0) {
        soak_fail(s, v->attached ? "detach" : "attach", r);
        ev_break(s->loop, EVBREAK_ALL);
        return;
    }
    if (!v->attached) {
        v->attached = true;
        soak_next(v);
        return;
    }
    v->attached = false;
    v->cycles++;
    s->done++;
    /* A round ends when every VM has done one more cycle; the next round
     * starts from the loop, so measurements are taken with nothing in
     * flight. */
    if (s->done % NVMS == 0)
        ev_break(s->loop, EVBREAK_ALL);
}

static void soak_next(struct soak_vm *v)
{
    struct soak *s = v->s;
    int rc;

    if (!v->attached) {
        s->started++;
        v->device = s->pci && (v->cycles % 2 == 1);
        if (v->device) {
            cocoon_vfio_spec spec = { sizeof(cocoon_vfio_spec), s->pci, "gpu" };

            rc = cocoon_device_attach(s->e, v->sock, &spec, soak_done_cb, v);
        } else {
            cocoon_fs_spec spec = { sizeof(cocoon_fs_spec), v->vfs, "soak", 0, 0, 0 };

            rc = cocoon_fs_attach(s->e, v->sock, &spec, soak_done_cb, v);
        }
    } else if (v->device) {
        rc = cocoon_device_detach(s->e, v->sock, "gpu", soak_done_cb, v);
    } else {
        rc = cocoon_fs_detach(s->e, v->sock, "soak", soak_done_cb, v);
    }
    if (rc) {
        s->failures++;
        ev_break(s->loop, EVBREAK_ALL);
    }
}

static void soak_wd_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void test_soak(void **state)
{
    struct soak *s = calloc(1, sizeof(*s));
    char *dir = sup_tmpdir(), *bin = sup_build_path("chsim"), count[16], last[300], pci[300];
    char *argv[] = { bin, (char *)"--fleet", dir, (char *)"--count", count,
                     (char *)"--no-connect", (char *)"--eject-delay-ms", (char *)"1", NULL };
    cocoon_options o = COCOON_OPTIONS_INIT;
    bool full = sup_env_on("COCOON_SOAK"), vg = sup_env_on("COCOON_VALGRIND");
    struct timespec t0, t1;
    long puts = 0;
    pid_t pid;

    (void)state;
    assert_non_null(s);
    s->target = full ? 10000 : vg ? 200 : 300;
    s->pci = sup_first_pci(pci, sizeof(pci));
    snprintf(count, sizeof(count), "%d", NVMS);
    pid = sup_spawn(argv);
    assert_true(pid > 0);
    snprintf(last, sizeof(last), "%s/vm%d.sock", dir, NVMS - 1);
    assert_int_equal(sup_wait_socket(last, 60000), 0);

    s->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(s->loop);
    o.root_dir = dir;
    o.timeout_ms = vg ? 20000 : 5000;
    o.socket_check = -1;
    /* Long enough for the 1 ms eject and the 50 ms poll, so the next
     * attach of the same tag never meets a device still being removed. */
    o.detach_wait_ms = 5000;
    s->e = cocoon_engine_new(s->loop, &o);
    assert_non_null(s->e);
    ev_timer_init(&s->wd, soak_wd_cb, full ? 900. : 240., 0.);
    ev_timer_start(s->loop, &s->wd);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < NVMS; i++) {
        struct soak_vm *v = &s->vms[i];

        v->s = s;
        v->idx = i;
        snprintf(v->sock, sizeof(v->sock), "%s/vm%d.sock", dir, i);
        snprintf(v->vfs, sizeof(v->vfs), "%s/vfs%d.sock", dir, i);
    }
    for (int round = 0; s->done < s->target; round++) {
        for (int i = 0; i < NVMS; i++)
            soak_next(&s->vms[i]);
        ev_run(s->loop, 0);
        if (s->failures)
            fail_msg("round %d: %d failures, first: %s", round, s->failures, s->first_err);
        if (s->done != (round + 1) * NVMS)
            fail_msg("round %d: %d cycles done (watchdog?)", round, s->done);
        /* After the first round every lazily created buffer, connection
         * and table has its steady size. */
        if (round == 0) {
            s->fds_first = sup_count_fds();
            s->rss_first_kb = rss_kb();
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    s->fds_last = sup_count_fds();
    s->rss_last_kb = rss_kb();
    assert_int_equal(s->started, s->target);
    assert_int_equal(s->done, s->target);
    fprintf(stderr,
            "soak: %d VMs, %d attach/detach cycles (%s) in %.1f s; fds after first round %d, "
            "at end %d; VmRSS after first round %ld kB, at end %ld kB (%+ld kB)\n",
            NVMS, s->done, s->pci ? "fs and VFIO" : "fs only",
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
            s->fds_first, s->fds_last, s->rss_first_kb, s->rss_last_kb,
            s->rss_last_kb - s->rss_first_kb);
    assert_int_equal(s->fds_last, s->fds_first);
    /* ASan's quarantine and valgrind's freed-block list hold memory on
     * purpose; their own leak checks cover those builds. */
    if (!UNDER_ASAN && !vg && s->rss_last_kb > s->rss_first_kb + RSS_SLACK_KB)
        fail_msg("RSS grew from %ld kB to %ld kB", s->rss_first_kb, s->rss_last_kb);

    /* chsim saw every state-changing call exactly once per cycle step. */
    for (int i = 0; i < NVMS; i++) {
        struct soak_vm *v = &s->vms[i];
        int add = sup_chsim_count(v->sock, "vm.add-fs") + sup_chsim_count(v->sock, "vm.add-device");
        int rm = sup_chsim_count(v->sock, "vm.remove-device");

        assert_int_equal(add, v->cycles);
        assert_int_equal(rm, v->cycles);
        puts += add + rm;
    }
    assert_int_equal(puts, 2L * s->target);

    cocoon_engine_free(s->e);
    ev_timer_stop(s->loop, &s->wd);
    ev_loop_destroy(s->loop);
    sup_kill(pid);
    sup_rmrf(dir);
    free(dir);
    free(bin);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_soak),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
