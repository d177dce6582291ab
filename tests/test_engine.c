/* tests/test_engine.c: the operation engine (cocoon.h) against chsim over
 * real sockets: resolution, gate, prechecks and CH errors with exact
 * texts, lost replies, per-VM FIFO,
 * the inflight cap, cancellation on free and a 1000-VM batch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "engine/cocoon.h"
#include "tests/support/call.h"
#include "http/base.h"
#include "backends/backend.h"
#include "backends/listening.h"
#include "backends/store.h"
#include "backends/safefile.h"
#include "tests/support/support.h"

#define ARROW "\xe2\x86\x92"

/* ------------------------------------------------------------ fixtures */

struct res {
    int calls;
    int err;
    char errstr[2048];
    char id[128];
    char bdf[64];
    bool has_bdf;
    int status;
    int n_fs, n_dev;
    char list[1024];      /* "fs:id,tag,socket;dev:id,bdf;" */
};

struct env {
    char *dir;
    char sock[256];
    pid_t pid;
    struct ev_loop *loop;
    cocoon_engine *e;
    ev_timer wd;
    int pending;          /* callbacks still expected */
    bool in_submit;
    bool cb_in_submit;
};

static struct env *g_env;

/* Connects to g_connect_path, counted through -Wl,--wrap=connect; the
 * listener check's probes (connects from a connected socket) are counted
 * apart, in g_probes, and one to g_probe_path fails with g_probe_errno. */
static int g_connects;
static const char *g_connect_path;
static int g_probes;
static const char *g_probe_path;
static int g_probe_errno;

int __real_connect(int fd, const struct sockaddr *sa, socklen_t len);
int __wrap_connect(int fd, const struct sockaddr *sa, socklen_t len);

int __wrap_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    struct sockaddr_un peer;
    socklen_t pl = sizeof(peer);
    bool unix_path = sa && sa->sa_family == AF_UNIX;

    if (unix_path && getpeername(fd, (struct sockaddr *)&peer, &pl) == 0) {
        g_probes++;
        if (g_probe_path && strcmp(un->sun_path, g_probe_path) == 0) {
            errno = g_probe_errno;
            return -1;
        }
    } else if (g_connect_path && unix_path && strcmp(un->sun_path, g_connect_path) == 0) {
        g_connects++;
    }
    return __real_connect(fd, sa, len);
}

/* stat() calls on g_stat_path, counted through -Wl,--wrap=stat. */
static int g_stats;
static const char *g_stat_path;

int __real_stat(const char *path, struct stat *st);
int __wrap_stat(const char *path, struct stat *st);

int __wrap_stat(const char *path, struct stat *st)
{
    if (g_stat_path && strcmp(path, g_stat_path) == 0)
        g_stats++;
    return __real_stat(path, st);
}

static void watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
    fail_msg("watchdog fired");
}

static void env_loop(struct env *v, double secs)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);

    assert_non_null(loop);
    v->loop = loop;
    ev_timer_init(&v->wd, watchdog_cb, secs, 0.);
    ev_timer_start(loop, &v->wd);
}

static struct env *env_new(const char *const extra[], const cocoon_options *opt)
{
    struct env *v = calloc(1, sizeof(*v));
    cocoon_options o = COCOON_OPTIONS_INIT;

    assert_non_null(v);
    v->dir = sup_tmpdir();
    assert_non_null(v->dir);
    snprintf(v->sock, sizeof(v->sock), "%s/api.sock", v->dir);
    if (extra) {
        v->pid = sup_chsim_start(v->sock, extra);
        assert_true(v->pid > 0);
    }
    env_loop(v, 20.);
    if (opt)
        o = *opt;
    if (!o.root_dir)
        o.root_dir = v->dir;
    v->e = cocoon_engine_new(v->loop, &o);
    assert_non_null(v->e);
    g_env = v;
    return v;
}

static void env_free(struct env *v)
{
    cocoon_engine_free(v->e);
    ev_timer_stop(v->loop, &v->wd);
    ev_loop_destroy(v->loop);
    if (v->pid > 0)
        sup_kill(v->pid);
    sup_rmrf(v->dir);
    free(v->dir);
    free(v);
}

static void res_fill(struct res *r, const cocoon_result *cr)
{
    r->calls++;
    r->err = cr->err;
    snprintf(r->errstr, sizeof(r->errstr), "%s", cr->errstr ? cr->errstr : "(null)");
    snprintf(r->id, sizeof(r->id), "%s", cr->device_id ? cr->device_id : "");
    r->has_bdf = cr->bdf != NULL;
    snprintf(r->bdf, sizeof(r->bdf), "%s", cr->bdf ? cr->bdf : "");
    r->status = cr->http_status;
}

static void done_cb(cocoon_engine *e, const cocoon_result *cr, void *priv)
{
    struct env *v = g_env;

    (void)e;
    res_fill(priv, cr);
    if (v->in_submit)
        v->cb_in_submit = true;
    if (--v->pending == 0)
        ev_break(v->loop, EVBREAK_ALL);
}

static void list_cb(cocoon_engine *e, const cocoon_result *cr, const cocoon_listing *l,
                    void *priv)
{
    struct res *r = priv;
    size_t o = 0;

    assert_non_null(l);
    r->n_fs = (int)l->n_fs;
    r->n_dev = (int)l->n_devices;
    for (size_t i = 0; i < l->n_fs; i++)
        o += (size_t)snprintf(r->list + o, sizeof(r->list) - o, "fs:%s,%s,%s;", l->fs[i].id,
                              l->fs[i].tag, l->fs[i].socket);
    for (size_t i = 0; i < l->n_devices; i++)
        o += (size_t)snprintf(r->list + o, sizeof(r->list) - o, "dev:%s,%s;",
                              l->devices[i].id,
                              l->devices[i].bdf ? l->devices[i].bdf : "(none)");
    done_cb(e, cr, priv);
}

static void run(struct env *v, int n)
{
    v->pending += n;
    ev_run(v->loop, 0);
    assert_int_equal(v->pending, 0);
}

/* A submission that must be accepted, then its one callback. */
static void run1(struct env *v, int rc)
{
    assert_int_equal(rc, 0);
    run(v, 1);
}

static struct res fs_attach(struct env *v, const char *vm, const char *sock, const char *tag)
{
    struct res r = { 0 };
    cocoon_fs_spec s = { sizeof(cocoon_fs_spec), sock, tag, 0, 0, 0 };

    v->in_submit = true;
    assert_int_equal(cocoon_fs_attach(v->e, vm, &s, done_cb, &r), 0);
    v->in_submit = false;
    assert_int_equal(r.calls, 0);
    run(v, 1);
    assert_int_equal(r.calls, 1);
    assert_false(v->cb_in_submit);
    return r;
}

static struct res fs_detach(struct env *v, const char *vm, const char *tag)
{
    struct res r = { 0 };

    run1(v, cocoon_fs_detach(v->e, vm, tag, done_cb, &r));
    assert_int_equal(r.calls, 1);
    return r;
}

static struct res dev_attach(struct env *v, const char *vm, const char *pci, const char *id)
{
    struct res r = { 0 };
    cocoon_vfio_spec s = { sizeof(cocoon_vfio_spec), pci, id };

    run1(v, cocoon_device_attach(v->e, vm, &s, done_cb, &r));
    assert_int_equal(r.calls, 1);
    return r;
}

static struct res dev_detach(struct env *v, const char *vm, const char *id)
{
    struct res r = { 0 };

    run1(v, cocoon_device_detach(v->e, vm, id, done_cb, &r));
    assert_int_equal(r.calls, 1);
    return r;
}

static struct res list(struct env *v, const char *vm)
{
    struct res r = { 0 };

    run1(v, cocoon_list(v->e, vm, list_cb, &r));
    assert_int_equal(r.calls, 1);
    return r;
}

/* A virtiofsd stand-in: a listening AF_UNIX socket (chsim connects to it). */
static int listener(const char *path, bool do_listen)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    unlink(path);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    if (do_listen)
        assert_int_equal(listen(fd, 16), 0);
    return fd;
}

static char *vfs_path(struct env *v, const char *name)
{
    static char buf[4][300];
    static int k;
    char *p = buf[k++ & 3];

    snprintf(p, 300, "%s/%s", v->dir, name);
    return p;
}

/* A virtiofsd stand-in at a.sock with tag attached through it; returns
 * the listener for the caller to close. */
static int fs_ready(struct env *v, const char *tag)
{
    int lfd = listener(vfs_path(v, "a.sock"), true);

    assert_int_equal(fs_attach(v, v->sock, vfs_path(v, "a.sock"), tag).err, 0);
    return lfd;
}

/* The first and second entries of /sys/bus/pci/devices. */
static void pci_dirs(char a[64], char b[64])
{
    static const char *const cands[] = {
        "0000:00:00.0", "0000:00:01.0", "0000:00:02.0", "0000:00:03.0", "0000:00:04.0",
        "0000:00:05.0", "0000:00:1f.0", "0000:00:1f.2",
    };
    int n = 0;

    for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]) && n < 2; i++) {
        char p[64];
        struct stat st;

        snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s", cands[i]);
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
            snprintf(n++ ? b : a, 64, "%s", cands[i]);
    }
    if (n < 2)
        skip();
}

static const char *const shared_mem[] = { "--memory", "size=1G,shared=on", NULL };

/* --------------------------------------------------------------- fs */

static void test_fs_attach_ok(void **state)
{
    struct env *v = env_new(shared_mem, NULL);
    char *vs = vfs_path(v, "vfs.sock");
    int lfd = listener(vs, true);
    struct res r;

    (void)state;
    r = fs_attach(v, v->sock, vs, "data");
    assert_int_equal(r.err, 0);
    assert_string_equal(r.errstr, "");
    assert_string_equal(r.id, "cocoon-fs-data");
    assert_true(r.has_bdf);
    assert_int_equal(strlen(r.bdf), 12);
    assert_int_equal(r.status, 200);
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-fs"), 1);
    assert_int_equal(sup_chsim_count(v->sock, "vm.info"), 1);
    close(lfd);
    env_free(v);
}

static void test_fs_attach_validation_first(void **state)
{
    struct env *v = env_new(NULL, NULL);
    struct res r;
    cocoon_fs_spec s = { sizeof(cocoon_fs_spec), "/tmp/x.sock", "a/b", 0, 0, 0 };
    struct res r2 = { 0 };

    (void)state;
    /* No VM anywhere: the spec error still wins (validation before lookup). */
    r = fs_attach(v, "no-such-vm", "", "data");
    assert_int_equal(r.err, -EINVAL);
    assert_string_equal(r.errstr, "socket is required");
    r = fs_attach(v, "no-such-vm", "/tmp/x.sock", "");
    assert_string_equal(r.errstr, "tag is required");
    run1(v, cocoon_fs_attach(v->e, "no-such-vm", &s, done_cb, &r2));
    assert_string_equal(r2.errstr,
                        "tag \"a/b\" invalid: must match [A-Za-z0-9][A-Za-z0-9_-]{0,35}");
    r = fs_detach(v, "no-such-vm", "");
    assert_string_equal(r.errstr, "tag is required");
    r = dev_detach(v, "no-such-vm", NULL);
    assert_string_equal(r.errstr, "id is required");
    r = dev_attach(v, "no-such-vm", "", NULL);
    assert_string_equal(r.errstr, "pci is required");
    r = fs_attach(v, "no-such-vm", "/tmp/x.sock", "data");
    assert_int_equal(r.err, -ENOENT);
    assert_string_equal(r.errstr, "fs attach: vm no-such-vm: VM not found");
    r = dev_attach(v, "no-such-vm", "01:00.0", NULL);
    assert_string_equal(r.errstr, "device attach: vm no-such-vm: VM not found");
    assert_int_equal(cocoon_fs_attach(v->e, NULL, &s, done_cb, &r2), -EINVAL);
    assert_int_equal(cocoon_fs_attach(NULL, "x", &s, done_cb, &r2), -EINVAL);
    env_free(v);
}

static void test_fs_attach_shared_off(void **state)
{
    static const char *const extra[] = { "--memory", "size=1G", NULL };
    struct env *v = env_new(extra, NULL);
    char *vs = vfs_path(v, "vfs.sock");
    int lfd = listener(vs, true);
    struct res r;

    (void)state;
    r = fs_attach(v, v->sock, vs, "data");
    assert_int_equal(r.err, -EINVAL);
    assert_string_equal(r.errstr, "fs attach requires the VM to be created with "
                                  "--shared-memory (current memory shared=off; cannot be "
                                  "flipped on a running VM)");
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-fs"), 0);
    close(lfd);
    env_free(v);
}

static void test_fs_attach_zones_and_hugepages(void **state)
{
    static const char *const zones[] = { "--memory", "size=0", "--memory-zone",
                                         "id=z0,size=1G,shared=on", NULL };
    static const char *const zones_off[] = { "--memory", "size=0", "--memory-zone",
                                             "id=z0,size=1G,shared=on", "--memory-zone",
                                             "id=z1,size=1G", NULL };
    static const char *const huge[] = { "--memory", "size=1G,hugepages=on", NULL };
    struct env *v;
    struct res r;
    int lfd;

    (void)state;
    v = env_new(zones, NULL);
    lfd = listener(vfs_path(v, "vfs.sock"), true);
    r = fs_attach(v, v->sock, vfs_path(v, "vfs.sock"), "data");
    assert_int_equal(r.err, 0);
    close(lfd);
    env_free(v);

    v = env_new(zones_off, NULL);
    lfd = listener(vfs_path(v, "vfs.sock"), true);
    r = fs_attach(v, v->sock, vfs_path(v, "vfs.sock"), "data");
    assert_int_equal(r.err, -EINVAL);
    assert_non_null(strstr(r.errstr, "requires the VM to be created with --shared-memory"));
    close(lfd);
    env_free(v);

    v = env_new(huge, NULL);
    lfd = listener(vfs_path(v, "vfs.sock"), true);
    r = fs_attach(v, v->sock, vfs_path(v, "vfs.sock"), "data");
    assert_int_equal(r.err, 0);
    close(lfd);
    env_free(v);
}

static void test_paused(void **state)
{
    struct env *v = env_new(shared_mem, NULL);
    char err[BASE_ERRSTR_MAX];
    int lfd = listener(vfs_path(v, "vfs.sock"), true);
    struct res r;
    const char *paused = "vm is paused (snapshot or hibernate in flight); retry after it "
                         "completes";

    (void)state;
    r = fs_attach(v, v->sock, vfs_path(v, "vfs.sock"), "data");
    assert_int_equal(r.err, 0);
    assert_int_equal(sup_call_sync(v->sock, "PUT", "/api/v1/vm.pause", NULL, 2000, NULL, NULL,
                                   NULL, err, sizeof(err)), 0);
    r = fs_attach(v, v->sock, vfs_path(v, "vfs.sock"), "other");
    assert_int_equal(r.err, -EBUSY);
    assert_string_equal(r.errstr, paused);
    r = fs_detach(v, v->sock, "data");
    assert_string_equal(r.errstr, paused);
    r = dev_attach(v, v->sock, "/sys/bus/pci/devices/0000:00:00.0", NULL);
    assert_string_equal(r.errstr, paused);
    /* Listing a paused VM works. */
    r = list(v, v->sock);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.n_fs, 1);
    close(lfd);
    env_free(v);
}

static void test_fs_collisions(void **state)
{
    struct env *v = env_new(shared_mem, NULL);
    int l1 = listener(vfs_path(v, "a.sock"), true);
    int l2 = listener(vfs_path(v, "b.sock"), true);
    struct res r;
    char err[BASE_ERRSTR_MAX];
    const char *override =
        "{\"config\":{\"memory\":{\"size\":1073741824,\"shared\":true},"
        "\"fs\":[{\"id\":\"cocoon-fs-data\",\"tag\":\"other\",\"socket\":\"/x\"}]},"
        "\"state\":\"Running\",\"device_tree\":{}}";

    (void)state;
    r = fs_attach(v, v->sock, vfs_path(v, "a.sock"), "data");
    assert_int_equal(r.err, 0);
    r = fs_attach(v, v->sock, vfs_path(v, "b.sock"), "data");
    assert_int_equal(r.err, -EEXIST);
    assert_string_equal(r.errstr, "fs tag \"data\" already attached");
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-fs"), 1);
    assert_int_equal(sup_call_sync(v->sock, "PUT", "/chsim/vminfo-override", override, 2000,
                                   NULL, NULL, NULL, err, sizeof(err)), 0);
    r = fs_attach(v, v->sock, vfs_path(v, "b.sock"), "data");
    assert_string_equal(r.errstr, "fs id \"cocoon-fs-data\" already attached");
    close(l1);
    close(l2);
    env_free(v);
}

/* A vm.info with no memory object, or an empty config, says nothing about
 * shared memory: size 0 with no zones is not "every zone shared". */
static void test_fs_attach_no_memory_info(void **state)
{
    static const char *const bodies[] = {
        "{\"config\":{},\"state\":\"Running\",\"device_tree\":{}}",
        "{\"config\":{\"fs\":[]},\"state\":\"Running\",\"device_tree\":{}}",
        "{\"config\":{\"memory\":{\"size\":0,\"zones\":[]}},\"state\":\"Running\","
        "\"device_tree\":{}}",
    };
    struct env *v = env_new(shared_mem, NULL);
    int l1 = listener(vfs_path(v, "a.sock"), true);
    char err[BASE_ERRSTR_MAX];

    (void)state;
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct res r;

        assert_int_equal(sup_call_sync(v->sock, "PUT", "/chsim/vminfo-override", bodies[i],
                                       2000, NULL, NULL, NULL, err, sizeof(err)), 0);
        r = fs_attach(v, v->sock, vfs_path(v, "a.sock"), "data");
        assert_int_equal(r.err, -EINVAL);
        assert_string_equal(r.errstr, "fs attach requires the VM to be created with "
                                      "--shared-memory (current memory shared=off; cannot be "
                                      "flipped on a running VM)");
    }
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-fs"), 0);
    close(l1);
    env_free(v);
}

static void test_fs_eject_pending(void **state)
{
    static const char *const extra[] = { "--memory", "size=1G,shared=on", "--no-eject", NULL };
    struct env *v = env_new(extra, NULL);
    int l1 = listener(vfs_path(v, "a.sock"), true);
    int l2 = listener(vfs_path(v, "b.sock"), true);
    struct res r;

    (void)state;
    r = fs_attach(v, v->sock, vfs_path(v, "a.sock"), "data");
    assert_int_equal(r.err, 0);
    r = fs_detach(v, v->sock, "data");
    assert_int_equal(r.err, 0);
    assert_string_equal(r.id, "cocoon-fs-data");
    r = fs_attach(v, v->sock, vfs_path(v, "b.sock"), "data");
    assert_int_equal(r.err, -EBUSY);
    assert_string_equal(r.errstr, "fs id \"cocoon-fs-data\" is still being removed by the "
                                  "guest; retry after it is ejected");
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-fs"), 1);
    close(l1);
    close(l2);
    env_free(v);
}

static void test_fs_socket_liveness(void **state)
{
    static const char *const extra[] = { "--memory", "size=1G,shared=on",
                                         "--connect-timeout-ms", "200", NULL };
    struct env *v = env_new(extra, NULL);
    char *missing = vfs_path(v, "missing.sock");
    char *file = vfs_path(v, "file.sock");
    char *idle = vfs_path(v, "idle.sock");
    char want[600];
    int ifd = listener(idle, false);
    int ffd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    struct res r;

    (void)state;
    assert_true(ffd >= 0);
    close(ffd);
    r = fs_attach(v, v->sock, missing, "data");
    assert_int_equal(r.err, -ENOENT);
    snprintf(want, sizeof(want), "virtiofsd socket %s does not exist", missing);
    assert_string_equal(r.errstr, want);
    r = fs_attach(v, v->sock, file, "data");
    assert_int_equal(r.err, -ENOTSOCK);
    snprintf(want, sizeof(want), "virtiofsd socket %s is not a unix socket", file);
    assert_string_equal(r.errstr, want);
    r = fs_attach(v, v->sock, idle, "data");
    assert_int_equal(r.err, -ECONNREFUSED);
    snprintf(want, sizeof(want),
             "nothing is listening on virtiofsd socket %s (virtiofsd exited or already serves "
             "a VM; start a new virtiofsd)", idle);
    assert_string_equal(r.errstr, want);
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-fs"), 0);
    close(ifd);
    env_free(v);

    /* --no-socket-check: the request goes to CH, which fails to connect. */
    cocoon_options o = { .size = sizeof(cocoon_options), .socket_check = -1 };
    v = env_new(extra, &o);
    r = fs_attach(v, v->sock, vfs_path(v, "missing.sock"), "data");
    assert_int_equal(r.err, -EREMOTEIO);
    assert_non_null(strstr(r.errstr, "vm.add-fs: PUT http://localhost/api/v1/vm.add-fs " ARROW
                                     " 500: Error from API: "));
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-fs"), 1);
    env_free(v);
}

static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void sun_set(struct sockaddr_un *a, const char *path)
{
    size_t n = strlen(path);

    assert_true(n < sizeof(a->sun_path));
    memcpy(a->sun_path, path, n + 1);
}

/* The probe's answers, straight from the kernel: a listener however its
 * path is spelled, one whose backlog is full, and one in another network
 * namespace; every kind of non-listener; and the listener never sees a
 * probe (nothing queued, and the next real client is the first it
 * accepts). */
static void test_probe_answers(void **state)
{
    char *dir = sup_tmpdir(), real[200], p[8][300];
    int probe = listening_probe_open(), lfd, bfd, dfd, sfd, full, cfd, q, qfd[2];
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    pid_t pid;
    int pfd[2];
    char c;

    (void)state;
    assert_true(probe >= 0);
    snprintf(real, sizeof(real), "%s/real", dir);
    assert_int_equal(mkdir(real, 0700), 0);
    snprintf(p[0], sizeof(p[0]), "%s/link", dir);
    assert_int_equal(symlink(real, p[0]), 0);
    snprintf(p[0], sizeof(p[0]), "%s/v.sock", real);
    lfd = listener(p[0], true);
    snprintf(p[1], sizeof(p[1]), "%s/link/v.sock", dir);
    snprintf(p[2], sizeof(p[2]), "%s/real/../real/v.sock", dir);
    snprintf(p[3], sizeof(p[3]), "%s//real/v.sock", dir);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 3; k++)
            assert_int_equal(listening_probe(probe, p[i]), 0);
    assert_int_equal(fcntl(lfd, F_SETFL, O_NONBLOCK), 0);
    errno = 0;
    assert_true(accept(lfd, NULL, NULL) < 0);   /* nothing queued */
    assert_int_equal(errno, EAGAIN);
    cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sun_set(&a, p[0]);
    assert_int_equal(connect(cfd, (struct sockaddr *)&a, sizeof(a)), 0);
    q = accept(lfd, NULL, NULL);
    assert_true(q >= 0);
    close(q);
    close(cfd);

    snprintf(p[4], sizeof(p[4]), "%s/bound.sock", dir);
    bfd = listener(p[4], false);
    assert_int_equal(listening_probe(probe, p[4]), -ECONNREFUSED);
    snprintf(p[5], sizeof(p[5]), "%s/gone.sock", dir);
    close(listener(p[5], true));                /* the file stays behind */
    assert_int_equal(listening_probe(probe, p[5]), -ECONNREFUSED);
    snprintf(p[6], sizeof(p[6]), "%s/file", dir);
    close(open(p[6], O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    assert_int_equal(listening_probe(probe, p[6]), -ECONNREFUSED);
    snprintf(p[7], sizeof(p[7]), "%s/dgram.sock", dir);
    dfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sun_set(&a, p[7]);
    assert_int_equal(bind(dfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listening_probe(probe, p[7]), -EPROTOTYPE);
    assert_int_equal(listening_probe(probe, "/nonexistent/dir/v.sock"), -ENOENT);
    assert_int_equal(listening_probe(probe, ""), -ENOENT);
    snprintf(p[7], sizeof(p[7]), "%s/file/v.sock", dir);
    assert_int_equal(listening_probe(probe, p[7]), -ENOTDIR);

    /* Listening with a full backlog: still a listener. */
    snprintf(p[7], sizeof(p[7]), "%s/full.sock", dir);
    full = listener(p[7], false);
    assert_int_equal(listen(full, 0), 0);
    sun_set(&a, p[7]);
    for (int i = 0; i < 2; i++)
        qfd[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(qfd[0], (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(connect(qfd[1], (struct sockaddr *)&a, sizeof(a)), -1);
    assert_int_equal(errno, EAGAIN);            /* the backlog is full */
    assert_int_equal(listening_probe(probe, p[7]), 0);
    close(qfd[0]);
    close(qfd[1]);
    close(full);

    /* A listener in another network namespace, as virtiofsd in a
     * container: its file is what a connect finds. */
    snprintf(p[7], sizeof(p[7]), "%s/netns.sock", dir);
    sun_set(&a, p[7]);
    assert_int_equal(pipe(pfd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        c = unshare(CLONE_NEWNET) == 0 ? 'y' : 'n';
        sfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c == 'y' && (bind(sfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(sfd, 1) < 0))
            c = 'e';
        if (write(pfd[1], &c, 1) != 1)
            _exit(1);
        pause();                                /* killed once probed */
        _exit(0);
    }
    close(pfd[1]);
    assert_int_equal(read(pfd[0], &c, 1), 1);
    if (c == 'y')
        assert_int_equal(listening_probe(probe, p[7]), 0);
    else
        assert_int_equal(c, 'n');               /* no CLONE_NEWNET here: skipped */
    close(pfd[0]);
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, NULL, 0), pid);

    close(bfd);
    close(dfd);
    close(lfd);
    close(probe);
    sup_rmrf(dir);
    free(dir);
}

/* A kernel that refused a connected socket before looking the path up
 * would call every path listening: the probe asks about a path that
 * cannot exist first, and such a kernel fails the check closed.  So does
 * a probe whose connect gets no answer. */
static void test_probe_not_believed(void **state)
{
    struct env *v = env_new(shared_mem, NULL);
    char *sock = vfs_path(v, "a.sock"), want[700];
    int lfd = listener(sock, true);
    struct res r;

    (void)state;
    g_probe_errno = EISCONN;
    g_probe_path = "/proc/self/cocoon-listening-probe";
    assert_int_equal(listening_probe_open(), -EPROTO);
    r = fs_attach(v, v->sock, sock, "a");
    assert_int_equal(r.err, -EPROTO);
    snprintf(want, sizeof(want), "cannot tell whether virtiofsd listens on %s: %s "
             "(--no-socket-check attaches without the check)", sock, strerror(EPROTO));
    assert_string_equal(r.errstr, want);

    g_probe_errno = ENOMEM;
    g_probe_path = sock;
    r = fs_attach(v, v->sock, sock, "a");
    assert_int_equal(r.err, -ENOMEM);
    snprintf(want, sizeof(want), "cannot tell whether virtiofsd listens on %s: %s "
             "(--no-socket-check attaches without the check)", sock, strerror(ENOMEM));
    assert_string_equal(r.errstr, want);
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-fs"), 0);

    /* The same engine checks again once the kernel answers. */
    g_probe_path = NULL;
    assert_int_equal(fs_attach(v, v->sock, sock, "a").err, 0);
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-fs"), 1);
    close(lfd);
    env_free(v);
}

struct late {
    int fd;                 /* bound, listens once op 0 is done */
    struct res r[2];
};

static struct late *g_late;

static void late_first_cb(cocoon_engine *e, const cocoon_result *cr, void *priv)
{
    assert_int_equal(listen(g_late->fd, 16), 0);
    done_cb(e, cr, priv);
}

/* Two attaches to one VM submitted together: the second socket starts
 * listening only when the first attach completes, which is before the
 * second is checked (a VM runs one operation at a time), so the check
 * sees it: each attach is asked about when its own turn comes, one probe
 * apiece, with no stat() of either socket. */
static void test_fs_socket_listens_after_first(void **state)
{
    struct env *v = env_new(shared_mem, NULL);
    int a = listener(vfs_path(v, "a.sock"), true);
    struct late l = { .fd = listener(vfs_path(v, "b.sock"), false) };
    cocoon_fs_spec sa = { sizeof(cocoon_fs_spec), vfs_path(v, "a.sock"), "a", 0, 0, 0 };
    cocoon_fs_spec sb = { sizeof(cocoon_fs_spec), vfs_path(v, "b.sock"), "b", 0, 0, 0 };

    (void)state;
    g_late = &l;
    g_probes = 0;
    g_stats = 0;
    g_stat_path = vfs_path(v, "b.sock");
    assert_int_equal(cocoon_fs_attach(v->e, v->sock, &sa, late_first_cb, &l.r[0]), 0);
    assert_int_equal(cocoon_fs_attach(v->e, v->sock, &sb, done_cb, &l.r[1]), 0);
    run(v, 2);
    assert_int_equal(l.r[0].calls, 1);
    assert_int_equal(l.r[0].err, 0);
    assert_int_equal(l.r[1].calls, 1);
    assert_string_equal(l.r[1].errstr, "");
    assert_int_equal(l.r[1].err, 0);
    assert_string_equal(l.r[1].id, "cocoon-fs-b");
    assert_int_equal(g_probes, 3);     /* the probe's own first, then one each */
    assert_int_equal(g_stats, 0);
    g_stat_path = NULL;
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-fs"), 2);
    close(a);
    close(l.fd);
    env_free(v);
}

static void test_fs_detach_and_list(void **state)
{
    struct env *v = env_new(shared_mem, NULL);
    int l1 = listener(vfs_path(v, "a.sock"), true);
    int l2 = listener(vfs_path(v, "b.sock"), true);
    char want[1024];
    struct res r;

    (void)state;
    r = list(v, v->sock);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.n_fs + r.n_dev, 0);
    assert_int_equal(fs_attach(v, v->sock, vfs_path(v, "a.sock"), "a").err, 0);
    assert_int_equal(fs_attach(v, v->sock, vfs_path(v, "b.sock"), "b").err, 0);
    r = list(v, v->sock);
    /* Order is chsim's (it lists newest first; CH appends). */
    assert_int_equal(r.n_fs, 2);
    snprintf(want, sizeof(want), "fs:cocoon-fs-a,a,%s;", vfs_path(v, "a.sock"));
    assert_non_null(strstr(r.list, want));
    snprintf(want, sizeof(want), "fs:cocoon-fs-b,b,%s;", vfs_path(v, "b.sock"));
    assert_non_null(strstr(r.list, want));
    r = fs_detach(v, v->sock, "nope");
    assert_int_equal(r.err, -ENODEV);
    assert_string_equal(r.errstr, "fs tag \"nope\" not attached");
    r = fs_detach(v, v->sock, "a");
    assert_int_equal(r.err, 0);
    assert_string_equal(r.id, "cocoon-fs-a");
    assert_int_equal(sup_chsim_count(v->sock, "vm.remove-device"), 1);
    close(l1);
    close(l2);
    env_free(v);
}

/* A VM started with args: tag attached, then detached, which must end in
 * err and errstr after exactly one vm.remove-device. */
static void detach_fresh(const char *const args[], const cocoon_options *o, const char *tag,
                         int err, const char *errstr)
{
    struct env *v = env_new(args, o);
    int lfd = fs_ready(v, tag);
    struct res r = fs_detach(v, v->sock, tag);

    assert_int_equal(r.err, err);
    assert_string_equal(r.errstr, errstr);
    assert_int_equal(sup_chsim_count(v->sock, "vm.remove-device"), 1);
    close(lfd);
    env_free(v);
}

static void test_detach_wait(void **state)
{
    static const char *const slow[] = { "--memory", "size=1G,shared=on", "--eject-delay-ms",
                                        "150", NULL };
    static const char *const never[] = { "--memory", "size=1G,shared=on", "--no-eject", NULL };
    cocoon_options o = { .size = sizeof(cocoon_options), .detach_wait_ms = 3000 };
    struct env *v = env_new(slow, &o);
    int lfd = listener(vfs_path(v, "a.sock"), true);
    struct res r;

    (void)state;
    assert_int_equal(fs_attach(v, v->sock, vfs_path(v, "a.sock"), "a").err, 0);
    r = fs_detach(v, v->sock, "a");
    assert_int_equal(r.err, 0);
    assert_string_equal(r.errstr, "");
    /* at least one poll saw the nodes, then they went away */
    assert_true(sup_chsim_count(v->sock, "vm.info") >= 4);
    close(lfd);
    env_free(v);

    o.detach_wait_ms = 300;
    detach_fresh(never, &o, "a", -ETIMEDOUT,
                 "device cocoon-fs-a removal requested but not yet ejected by the guest after 1s");
}

/* Per-operation settings on one engine: the spec's socket_check overrides
 * the engine option either way, and the _wait detaches use their own
 * wait whatever detach_wait_ms says. */
static void test_per_op_settings(void **state)
{
    static const char *const never[] = { "--memory", "size=1G,shared=on", "--no-eject",
                                         "--connect-timeout-ms", "200", NULL };
    cocoon_options o = { .size = sizeof(cocoon_options), .socket_check = -1,
                         .detach_wait_ms = 60000 };
    struct env *v = env_new(never, &o);
    char *idle = vfs_path(v, "idle.sock"), want[600];
    int ifd = listener(idle, false), lfd;
    cocoon_fs_spec on = { sizeof(cocoon_fs_spec), idle, "data", 0, 0, 1 };
    cocoon_fs_spec off = { sizeof(cocoon_fs_spec), idle, "data", 0, 0, -1 };
    struct res r = { 0 }, r2 = { 0 };
    struct stat st;

    (void)state;
    /* engine off, spec on: refused before the PUT */
    run1(v, cocoon_fs_attach(v->e, v->sock, &on, done_cb, &r));
    assert_int_equal(r.err, -ECONNREFUSED);
    snprintf(want, sizeof(want),
             "nothing is listening on virtiofsd socket %s (virtiofsd exited or already serves "
             "a VM; start a new virtiofsd)", idle);
    assert_string_equal(r.errstr, want);
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-fs"), 0);
    close(ifd);
    env_free(v);

    o.socket_check = 0;
    v = env_new(never, &o);
    idle = vfs_path(v, "idle.sock");
    ifd = listener(idle, false);
    off.socket = idle;
    /* engine on, spec off: the PUT goes out */
    memset(&r, 0, sizeof(r));
    run1(v, cocoon_fs_attach(v->e, v->sock, &off, done_cb, &r));
    assert_int_equal(r.err, -EREMOTEIO);
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-fs"), 1);
    close(ifd);

    /* detach_wait_ms is 60 s, yet a wait of 0 returns at once and one of
     * 300 ms times out after it */
    lfd = fs_ready(v, "a");
    memset(&r, 0, sizeof(r));
    run1(v, cocoon_fs_detach_wait(v->e, v->sock, "a", 0, done_cb, &r));
    assert_int_equal(r.err, 0);
    assert_int_equal(sup_chsim_count(v->sock, "vm.remove-device"), 1);
    assert_int_equal(fs_attach(v, v->sock, vfs_path(v, "a.sock"), "b").err, 0);
    run1(v, cocoon_fs_detach_wait(v->e, v->sock, "b", 300, done_cb, &r2));
    assert_int_equal(r2.err, -ETIMEDOUT);
    assert_string_equal(r2.errstr, "device cocoon-fs-b removal requested but not yet ejected "
                                   "by the guest after 1s");
    if (stat("/sys/bus/pci/devices/0000:00:00.0", &st) == 0) {
        assert_int_equal(dev_attach(v, v->sock, "0000:00:00.0", "g").err, 0);
        memset(&r2, 0, sizeof(r2));
        run1(v, cocoon_device_detach_wait(v->e, v->sock, "g", 300, done_cb, &r2));
        assert_int_equal(r2.err, -ETIMEDOUT);
        assert_string_equal(r2.errstr, "device g removal requested but not yet ejected by the "
                                       "guest after 1s");
        memset(&r2, 0, sizeof(r2));
    }
    close(lfd);
    env_free(v);
}

/* The eject-pending rule of fs attach, for VFIO: re-adding an id whose eject is still
 * pending (gone from config.devices, still in device_tree) is refused
 * before the PUT. */
static void test_device_eject_pending(void **state)
{
    static const char *const never[] = { "--memory", "size=1G,shared=on", "--no-eject", NULL };
    struct env *v;
    char a[64], b[64];
    struct res r;

    (void)state;
    pci_dirs(a, b);
    v = env_new(never, NULL);
    assert_int_equal(dev_attach(v, v->sock, a, "gpu0").err, 0);
    assert_int_equal(dev_detach(v, v->sock, "gpu0").err, 0);
    r = dev_attach(v, v->sock, b, "gpu0");
    assert_int_equal(r.err, -EBUSY);
    assert_string_equal(r.errstr, "device id \"gpu0\" is still being removed by the guest; "
                                  "retry after it is ejected");
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-device"), 1);
    env_free(v);
}

static void test_lost_reply(void **state)
{
    static const char *const extra[] = { "--memory", "size=1G,shared=on", "--fault",
                                         "vm.add-fs=close-before-reply", NULL };
    static const char *const extra2[] = { "--memory", "size=1G,shared=on", "--fault",
                                          "vm.remove-device=close-before-reply", NULL };
    struct env *v = env_new(extra, NULL);
    int lfd = listener(vfs_path(v, "a.sock"), true);
    struct res r;

    (void)state;
    r = fs_attach(v, v->sock, vfs_path(v, "a.sock"), "x");
    assert_int_equal(r.err, 0);
    assert_string_equal(r.errstr,
                        "vm.add-fs: reply lost; vm.info shows the device attached "
                        "(id=cocoon-fs-x)");
    assert_string_equal(r.id, "cocoon-fs-x");
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-fs"), 1);
    assert_int_equal(sup_chsim_count(v->sock, "vm.info"), 2);
    close(lfd);
    env_free(v);

    detach_fresh(extra2, NULL, "x", 0,
                 "vm.remove-device cocoon-fs-x: reply lost; vm.info shows the device removed");
}

static void test_lost_reply_not_executed(void **state)
{
    /* close-mid-headers after a failed add: the add did not happen (the
     * socket check is off and nothing listens, so CH's add fails). */
    static const char *const extra[] = { "--memory", "size=1G,shared=on", "--connect-timeout-ms",
                                         "100", "--fault", "vm.add-fs=close-mid-headers", NULL };
    cocoon_options o = { .size = sizeof(cocoon_options), .socket_check = -1 };
    struct env *v = env_new(extra, &o);
    struct res r;

    (void)state;
    r = fs_attach(v, v->sock, vfs_path(v, "none.sock"), "x");
    assert_true(r.err < 0);
    assert_string_equal(r.errstr, "vm.add-fs: reply lost; vm.info shows no such device");
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-fs"), 1);
    env_free(v);
}

static void test_outcome_unknown(void **state)
{
    static const char *const extra[] = { "--memory", "size=1G,shared=on", "--fault",
                                         "vm.add-fs=close-before-reply", "--fault",
                                         "vm.info=plain-text-error", NULL };
    struct env *v;
    int lfd;
    struct res r;

    (void)state;
    v = env_new(extra, NULL);
    lfd = listener(vfs_path(v, "a.sock"), true);
    /* Every vm.info fails, so the prechecks fail first: arm the add fault
     * only after a good vm.info is impossible here; use a runtime fault. */
    r = fs_attach(v, v->sock, vfs_path(v, "a.sock"), "x");
    assert_int_equal(r.err, -EREMOTEIO);
    assert_string_equal(r.errstr, "query vm.info: GET http://localhost/api/v1/vm.info " ARROW
                                  " 500: Error from API: chsim injected plain-text error");
    close(lfd);
    env_free(v);
}

static void test_outcome_unknown_runtime_fault(void **state)
{
    static const char *const extra[] = { "--memory", "size=1G,shared=on", "--fault",
                                         "vm.add-fs=die", NULL };
    struct env *v = env_new(extra, NULL);
    int lfd = listener(vfs_path(v, "a.sock"), true);
    struct res r;

    (void)state;
    r = fs_attach(v, v->sock, vfs_path(v, "a.sock"), "x");
    assert_true(r.err < 0);
    assert_non_null(strstr(r.errstr, "vm.add-fs: outcome unknown: query vm.info: "));
    close(lfd);
    env_free(v);
}

/* ------------------------------------------------------------- devices */

static void test_device_attach_detach(void **state)
{
    struct env *v = env_new(shared_mem, NULL);
    char a[64], b[64], pa[128], pb[128], want[512];
    struct res r;

    (void)state;
    pci_dirs(a, b);
    snprintf(pa, sizeof(pa), "/sys/bus/pci/devices/%s", a);
    snprintf(pb, sizeof(pb), "/sys/bus/pci/devices/%s", b);
    r = dev_attach(v, v->sock, a + 5, NULL);     /* short BDF form */
    assert_int_equal(r.err, 0);
    assert_true(strncmp(r.id, "_vfio", 5) == 0);
    assert_true(r.has_bdf);
    r = dev_attach(v, v->sock, pa, NULL);
    assert_int_equal(r.err, -EEXIST);
    snprintf(want, sizeof(want), "device %s already attached (id=", pa);
    assert_true(strncmp(r.errstr, want, strlen(want)) == 0);
    r = dev_attach(v, v->sock, pb, "gpu0");
    assert_int_equal(r.err, 0);
    assert_string_equal(r.id, "gpu0");
    r = dev_detach(v, v->sock, "gpu0");
    assert_int_equal(r.err, 0);
    assert_string_equal(r.id, "gpu0");
    r = dev_attach(v, v->sock, pb, "gpu0");
    assert_int_equal(r.err, 0);
    r = list(v, v->sock);
    assert_int_equal(r.n_dev, 2);
    snprintf(want, sizeof(want), ",%s;", a);
    assert_non_null(strstr(r.list, want));
    snprintf(want, sizeof(want), "dev:gpu0,%s;", b);
    assert_non_null(strstr(r.list, want));
    r = dev_detach(v, v->sock, "nope");
    assert_int_equal(r.err, -ENODEV);
    assert_string_equal(r.errstr, "device id \"nope\" not attached");
    r = dev_attach(v, v->sock, "0000:7f:1f.7", NULL);
    assert_int_equal(r.err, -ENOENT);
    assert_string_equal(r.errstr, "pci path /sys/bus/pci/devices/0000:7f:1f.7: No such file "
                                  "or directory");
    r = dev_attach(v, v->sock, "/sys/bus/pci/devices/0000:7f:1f.7", "gpu0");
    assert_int_equal(r.err, -ENOENT);
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-device"), 3);
    env_free(v);
}

static void test_device_id_in_use(void **state)
{
    struct env *v = env_new(shared_mem, NULL);
    char a[64], b[64];
    struct res r;

    (void)state;
    pci_dirs(a, b);
    assert_int_equal(dev_attach(v, v->sock, a, "gpu0").err, 0);
    r = dev_attach(v, v->sock, b, "gpu0");
    assert_int_equal(r.err, -EEXIST);
    assert_string_equal(r.errstr, "device id \"gpu0\" already in use");
    r = dev_attach(v, v->sock, "/sys/bus/pci/devices/0000:00:00.0/uevent", NULL);
    assert_int_equal(r.err, -EINVAL);
    env_free(v);
}

static void test_list_non_pci(void **state)
{
    struct env *v = env_new(shared_mem, NULL);
    char err[BASE_ERRSTR_MAX];
    const char *override =
        "{\"config\":{\"memory\":{\"size\":1073741824,\"shared\":true},"
        "\"devices\":[{\"id\":\"odd\",\"path\":\"/dev/vfio/12\"},"
        "{\"id\":\"nic\",\"path\":\"/sys/bus/pci/devices/0000:3b:00.1\"}]},"
        "\"state\":\"Running\",\"device_tree\":{}}";
    struct res r;

    (void)state;
    assert_int_equal(sup_call_sync(v->sock, "PUT", "/chsim/vminfo-override", override, 2000,
                                   NULL, NULL, NULL, err, sizeof(err)), 0);
    r = list(v, v->sock);
    assert_string_equal(r.list, "dev:odd,(none);dev:nic,0000:3b:00.1;");
    {
        struct res r2 = { 0 };

        run1(v, cocoon_fs_list(v->e, v->sock, list_cb, &r2));
        assert_string_equal(r2.list, "");
        run1(v, cocoon_device_list(v->e, v->sock, list_cb, &r2));
        assert_int_equal(r2.n_dev, 2);
    }
    env_free(v);
}

/* ------------------------------------------------------ error rendering */

static void render_case(const char *ver, int code, const char *body)
{
    const char *const extra[] = { "--memory", "size=1G,shared=on", "--api-version", ver, NULL };
    struct env *v = env_new(extra, NULL);
    int lfd = listener(vfs_path(v, "a.sock"), true);
    struct res r = { 0 };
    cocoon_fs_spec s = { sizeof(cocoon_fs_spec), vfs_path(v, "a.sock"), "q", 1, 1000, 0 };
    char want[1024];

    run1(v, cocoon_fs_attach(v->e, v->sock, &s, done_cb, &r));
    assert_int_equal(r.err, -EREMOTEIO);
    assert_int_equal(r.status, code);
    snprintf(want, sizeof(want), "vm.add-fs: PUT http://localhost/api/v1/vm.add-fs " ARROW
             " %d: %s", code, body);
    assert_string_equal(r.errstr, want);
    close(lfd);
    env_free(v);
}

static void test_error_rendering(void **state)
{
    const char *msg = "Error from API: The fs could not be added to the VM: Failed to "
                      "validate config: Queue size must be a power of 2 no greater than 32768: "
                      "1000";

    (void)state;
    render_case("head", 400, msg);
    render_case("v53", 500, msg);
    render_case("v46", 500, msg);
}

/* ------------------------------------------------------- recorded VMs */

struct rec_args {
    const char *backend;
    const char *name;
    store_state state;
    const char *run_dir;
    const char *binary;
    char id[STORE_ID_LEN + 1];
};

static int rec_add(store_db *db, void *priv, char *err, size_t errlen)
{
    struct rec_args *a = priv;
    store_vm vm;

    memset(&vm, 0, sizeof(vm));
    store_new_id(vm.id);
    memcpy(a->id, vm.id, sizeof(a->id));
    vm.backend = a->backend;
    vm.state = a->state;
    vm.config.name = strdup(a->name);
    vm.config.cpu = 1;
    vm.config.memory = 1u << 30;
    vm.config.shared_memory = true;
    vm.run_dir = strdup(a->run_dir);
    vm.binary = a->binary ? strdup(a->binary) : NULL;
    return store_db_add(db, &vm, err, errlen);
}

static void add_record(struct env *v, struct rec_args *a)
{
    char err[BASE_ERRSTR_MAX];

    assert_int_equal(store_update(v->dir, a->backend, rec_add, a, err, sizeof(err)), 0);
}

/* chsim as a recorded VM: <dir>/run/<name>/api.sock, ch.pid, binary. */
static pid_t start_recorded(struct env *v, const char *name, bool kernel, struct rec_args *a,
                            char run_dir[300])
{
    char sock[400], pidf[400], err[BASE_ERRSTR_MAX], sockarg[420];
    char *bin = sup_build_path("chsim");
    char *argv[] = { bin, (char *)"--api-socket", sockarg, (char *)"--memory",
                     (char *)"size=1G,shared=on", kernel ? (char *)"--kernel" : NULL,
                     (char *)"/dev/null", NULL };
    pid_t pid;

    snprintf(run_dir, 300, "%s/run/%s", v->dir, name);
    assert_int_equal(safefile_mkdir_private(run_dir, err, sizeof(err)), 0);
    snprintf(sock, sizeof(sock), "%s/api.sock", run_dir);
    snprintf(sockarg, sizeof(sockarg), "path=%s", sock);
    snprintf(pidf, sizeof(pidf), "%s/ch.pid", run_dir);
    pid = sup_spawn(argv);
    assert_true(pid > 0);
    assert_int_equal(sup_wait_socket(sock, 60000), 0);
    /* Without a payload CH has no VM; vm.create gives it a config. */
    if (!kernel)
        assert_int_equal(sup_call_sync(sock, "PUT", "/api/v1/vm.create",
                                       "{\"memory\":{\"size\":1073741824,\"shared\":true}}",
                                       2000, NULL, NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(safefile_pidfile_write(pidf, pid, err, sizeof(err)), 0);
    a->backend = STORE_BACKEND_CH;
    a->name = name;
    a->state = STORE_RUNNING;
    a->run_dir = run_dir;
    a->binary = bin;
    add_record(v, a);
    free(bin);
    a->binary = NULL;
    return pid;
}

/* A recorded VM whose VMM has a config but no booted VM (never booted, or
 * after a vm.shutdown sent by someone else): CH would take an add into the
 * config only and answer 204, so the attach is refused before any PUT. */
static void test_recorded_not_booted(void **state)
{
    static const char running[] = "{\"config\":{\"memory\":{\"size\":1073741824,"
                                  "\"shared\":true}},\"state\":\"Running\"}";
    struct env *v = env_new(NULL, NULL);
    char run_dir[300], sock[400], want[300], err[BASE_ERRSTR_MAX];
    struct rec_args a = { 0 }, b = { 0 };
    pid_t pid = start_recorded(v, "web-1", false, &a, run_dir);
    pid_t pid2;
    int lfd = listener(vfs_path(v, "a.sock"), true);
    char b1[64], b2[64], pfx[8];
    struct res r;

    (void)state;
    pci_dirs(b1, b2);
    snprintf(sock, sizeof(sock), "%s/api.sock", run_dir);
    snprintf(want, sizeof(want), "vm %s is created: VM not running", a.id);
    r = fs_attach(v, "web-1", vfs_path(v, "a.sock"), "data");
    assert_int_equal(r.err, -EHOSTDOWN);
    assert_string_equal(r.errstr, want);
    r = dev_attach(v, "web-1", b1, "nic0");
    assert_int_equal(r.err, -EHOSTDOWN);
    assert_string_equal(r.errstr, want);
    assert_int_equal(sup_chsim_count(sock, "vm.add-fs"), 0);
    assert_int_equal(sup_chsim_count(sock, "vm.add-device"), 0);
    r = list(v, "web-1");
    assert_int_equal(r.err, 0);
    assert_int_equal(r.n_fs + r.n_dev, 0);

    /* The VM shut down between vm.info and the add: CH's 204 is taken as
     * attached, with the id cocoon chose (none for a device: an error). */
    assert_int_equal(sup_call_sync(sock, "PUT", "/chsim/vminfo-override", running, 2000, NULL,
                                   NULL, NULL, err, sizeof(err)), 0);
    r = fs_attach(v, "web-1", vfs_path(v, "a.sock"), "data");
    assert_int_equal(r.err, 0);
    assert_string_equal(r.id, "cocoon-fs-data");
    assert_false(r.has_bdf);
    assert_int_equal(r.status, 204);
    memcpy(pfx, a.id, 5);
    pfx[5] = '\0';
    r = dev_attach(v, pfx, b1, NULL);
    assert_int_equal(r.err, -EBADMSG);
    assert_string_equal(r.errstr, "vm.add-device: empty response body and no fallback id "
                                  "(CH returned no PciDeviceInfo)");
    r = dev_attach(v, pfx, b2, "nic0");
    assert_int_equal(r.err, 0);
    assert_string_equal(r.id, "nic0");

    /* A booted VM shut down by someone else is refused the same way. */
    pid2 = start_recorded(v, "web-2", true, &b, run_dir);
    snprintf(sock, sizeof(sock), "%s/api.sock", run_dir);
    assert_int_equal(sup_call_sync(sock, "PUT", "/api/v1/vm.shutdown", NULL, 2000, NULL, NULL,
                                   NULL, err, sizeof(err)), 0);
    r = fs_attach(v, "web-2", vfs_path(v, "a.sock"), "data");
    assert_int_equal(r.err, -EHOSTDOWN);
    snprintf(want, sizeof(want), "vm %s is created: VM not running", b.id);
    assert_string_equal(r.errstr, want);
    assert_int_equal(sup_chsim_count(sock, "vm.add-fs"), 0);
    close(lfd);
    sup_kill(pid);
    sup_kill(pid2);
    env_free(v);
}

static void test_recorded_gate(void **state)
{
    struct env *v = env_new(NULL, NULL);
    char run_dir[300], want[1024];
    struct rec_args a = { 0 }, b = { 0 }, f = { 0 };
    pid_t pid = start_recorded(v, "web-1", true, &a, run_dir);
    int lfd = listener(vfs_path(v, "a.sock"), true);
    struct res r;

    (void)state;
    r = fs_attach(v, "web-1", vfs_path(v, "a.sock"), "data");
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    r = list(v, "web-1");
    assert_int_equal(r.n_fs, 1);

    /* stopped record */
    b.backend = STORE_BACKEND_CH;
    b.name = "web-2";
    b.state = STORE_STOPPED;
    b.run_dir = vfs_path(v, "run/none");
    add_record(v, &b);
    r = fs_attach(v, "web-2", vfs_path(v, "a.sock"), "data");
    assert_int_equal(r.err, -EHOSTDOWN);
    snprintf(want, sizeof(want), "vm %s is stopped: VM not running", b.id);
    assert_string_equal(r.errstr, want);
    r = list(v, "web-2");
    assert_int_equal(r.err, 0);
    assert_int_equal(r.n_fs + r.n_dev, 0);

    /* running record without a pidfile */
    memset(&b, 0, sizeof(b));
    b.backend = STORE_BACKEND_CH;
    b.name = "web-3";
    b.state = STORE_RUNNING;
    b.run_dir = vfs_path(v, "run/none");
    add_record(v, &b);
    r = dev_detach(v, "web-3", "x");
    assert_int_equal(r.err, -EHOSTDOWN);
    snprintf(want, sizeof(want), "vm %s read pidfile: open %s/ch.pid: No such file or "
             "directory: VM not running", b.id, vfs_path(v, "run/none"));
    assert_string_equal(r.errstr, want);

    /* Firecracker record */
    f.backend = STORE_BACKEND_FC;
    f.name = "fc-1";
    f.state = STORE_RUNNING;
    f.run_dir = vfs_path(v, "run/fc");
    add_record(v, &f);
    r = fs_attach(v, "fc-1", vfs_path(v, "a.sock"), "data");
    assert_int_equal(r.err, -EOPNOTSUPP);
    assert_string_equal(r.errstr, "fs attach: backend firecracker: backend does not support "
                                  "fs attach");
    r = fs_detach(v, "fc-1", "data");
    assert_string_equal(r.errstr, "fs detach: backend firecracker: backend does not support "
                                  "fs attach");
    r = dev_attach(v, "fc-1", "01:00.0", NULL);
    assert_string_equal(r.errstr, "device attach: backend firecracker: backend does not "
                                  "support device attach");
    r = dev_detach(v, "fc-1", "x");
    assert_string_equal(r.errstr, "device detach: backend firecracker: backend does not "
                                  "support device attach");
    {
        struct res r2 = { 0 };

        run1(v, cocoon_device_list(v->e, "fc-1", list_cb, &r2));
        assert_string_equal(r2.errstr, "device list: backend firecracker: backend does not "
                                       "support device attach");
        run1(v, cocoon_fs_list(v->e, "fc-1", list_cb, &r2));
        assert_string_equal(r2.errstr, "fs list: backend firecracker: backend does not "
                                       "support fs attach");
    }
    close(lfd);
    sup_kill(pid);
    env_free(v);
}

static void test_direct_not_running(void **state)
{
    struct env *v = env_new(NULL, NULL);
    char *bin = sup_build_path("chsim"), sockarg[300], want[600], errbuf[256];
    char *argv[] = { bin, (char *)"--api-socket", sockarg, NULL };
    struct res r;
    pid_t pid;

    (void)state;
    snprintf(sockarg, sizeof(sockarg), "path=%s", v->sock);
    pid = sup_spawn(argv);
    assert_int_equal(sup_wait_socket(v->sock, 60000), 0);
    /* A config but no booted VM, as after vm.create (or a vm.shutdown). */
    assert_int_equal(sup_call_sync(v->sock, "PUT", "/api/v1/vm.create",
                                   "{\"payload\":{\"kernel\":\"/k\"}}", 2000, NULL, NULL, NULL,
                                   errbuf, sizeof(errbuf)), 0);
    r = fs_attach(v, v->sock, "/tmp/x.sock", "data");
    assert_int_equal(r.err, -EHOSTDOWN);
    snprintf(want, sizeof(want), "vm %s is created: VM not running", v->sock);
    assert_string_equal(r.errstr, want);
    r = list(v, v->sock);
    assert_int_equal(r.err, 0);
    sup_kill(pid);
    free(bin);
    /* nothing serves the socket */
    r = list(v, v->sock);
    assert_true(r.err < 0);
    assert_true(strncmp(r.errstr, "query vm.info: ", 15) == 0);
    env_free(v);
}

/* A direct target whose VMM has no VM created is not running.
 * vm.info says so with 404 (head, v53) or with 500 and "VM is not created"
 * in the body (v46): list is empty and succeeds, attach and detach fail
 * with -EHOSTDOWN before any PUT. */
static void test_direct_no_vm(void **state)
{
    static const char *const gens[] = { "head", "v53", "v46" };

    (void)state;
    for (size_t g = 0; g < sizeof(gens) / sizeof(gens[0]); g++) {
        struct env *v = env_new(NULL, NULL);
        char *bin = sup_build_path("chsim"), sockarg[300], want[600];
        char *argv[] = { bin, (char *)"--api-socket", sockarg, (char *)"--api-version",
                         (char *)gens[g], NULL };
        struct res r;
        pid_t pid;

        snprintf(sockarg, sizeof(sockarg), "path=%s", v->sock);
        pid = sup_spawn(argv);
        assert_int_equal(sup_wait_socket(v->sock, 60000), 0);
        snprintf(want, sizeof(want), "vm %s is not created: VM not running", v->sock);
        r = list(v, v->sock);
        assert_int_equal(r.err, 0);
        assert_string_equal(r.errstr, "");
        assert_int_equal(r.n_fs + r.n_dev, 0);
        r = fs_attach(v, v->sock, "/tmp/x.sock", "data");
        assert_int_equal(r.err, -EHOSTDOWN);
        assert_string_equal(r.errstr, want);
        r = fs_detach(v, v->sock, "data");
        assert_int_equal(r.err, -EHOSTDOWN);
        assert_string_equal(r.errstr, want);
        r = dev_attach(v, v->sock, "0000:00:00.0", "d1");
        assert_int_equal(r.err, -EHOSTDOWN);
        assert_string_equal(r.errstr, want);
        r = dev_detach(v, v->sock, "d1");
        assert_int_equal(r.err, -EHOSTDOWN);
        assert_string_equal(r.errstr, want);
        sup_kill(pid);
        free(bin);
        env_free(v);
    }
}

/* ---------------------------------------------------- scheduling rules */

struct ord {
    int seq[8];
    int n;
    struct env *v;
};

struct ord_item {
    struct ord *o;
    int tag;
};

static void ord_cb(cocoon_engine *e, const cocoon_result *cr, void *priv)
{
    struct ord_item *it = priv;

    (void)e;
    assert_int_equal(cr->err, 0);
    it->o->seq[it->o->n++] = it->tag;
    if (--it->o->v->pending == 0)
        ev_break(it->o->v->loop, EVBREAK_ALL);
}

static void ord_list_cb(cocoon_engine *e, const cocoon_result *cr, const cocoon_listing *l,
                        void *priv)
{
    assert_int_equal(l->n_fs, 2);
    ord_cb(e, cr, priv);
}

static void test_fifo_per_vm(void **state)
{
    static const char *const extra[] = { "--memory", "size=1G,shared=on", "--add-latency-ms",
                                         "50", NULL };
    struct env *v = env_new(extra, NULL);
    int l1 = listener(vfs_path(v, "a.sock"), true);
    int l2 = listener(vfs_path(v, "b.sock"), true);
    struct ord o = { .v = v };
    struct ord_item it[4] = { { &o, 1 }, { &o, 2 }, { &o, 3 }, { &o, 4 } };
    cocoon_fs_spec s1 = { sizeof(cocoon_fs_spec), vfs_path(v, "a.sock"), "a", 0, 0, 0 };
    cocoon_fs_spec s2 = { sizeof(cocoon_fs_spec), vfs_path(v, "b.sock"), "b", 0, 0, 0 };

    (void)state;
    assert_int_equal(cocoon_fs_attach(v->e, v->sock, &s1, ord_cb, &it[0]), 0);
    assert_int_equal(cocoon_fs_attach(v->e, v->sock, &s2, ord_cb, &it[1]), 0);
    assert_int_equal(cocoon_list(v->e, v->sock, ord_list_cb, &it[2]), 0);
    assert_int_equal(cocoon_fs_detach(v->e, v->sock, "a", ord_cb, &it[3]), 0);
    run(v, 4);
    assert_int_equal(o.n, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(o.seq[i], i + 1);
    close(l1);
    close(l2);
    env_free(v);
}

static double mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct fleet {
    char *dir;
    pid_t pid;
    int n;
    int *lfds;
};

static void fleet_start(struct fleet *f, int n, const char *latency)
{
    char *bin = sup_build_path("chsim"), cnt[16], sock[300];
    char *argv[] = { bin, (char *)"--fleet", NULL, (char *)"--count", cnt,
                     latency ? (char *)"--add-latency-ms" : NULL, (char *)latency, NULL };

    raise_nofile();
    f->dir = sup_tmpdir();
    f->n = n;
    argv[2] = f->dir;
    snprintf(cnt, sizeof(cnt), "%d", n);
    f->pid = sup_spawn(argv);
    assert_true(f->pid > 0);
    snprintf(sock, sizeof(sock), "%s/vm%d.sock", f->dir, n - 1);
    assert_int_equal(sup_wait_socket(sock, 20000), 0);
    f->lfds = calloc((size_t)n, sizeof(int));
    for (int i = 0; i < n; i++) {
        snprintf(sock, sizeof(sock), "%s/vfs%d.sock", f->dir, i);
        f->lfds[i] = listener(sock, true);
    }
    free(bin);
}

static void fleet_stop(struct fleet *f)
{
    for (int i = 0; i < f->n; i++)
        close(f->lfds[i]);
    free(f->lfds);
    sup_kill(f->pid);
    sup_rmrf(f->dir);
    free(f->dir);
}

static struct res *fleet_attach_all(struct env *v, struct fleet *f)
{
    struct res *rs = calloc((size_t)f->n, sizeof(*rs));

    for (int i = 0; i < f->n; i++) {
        char sock[300], vs[300];
        cocoon_fs_spec s = { sizeof(cocoon_fs_spec), vs, "data", 0, 0, 0 };

        snprintf(sock, sizeof(sock), "%s/vm%d.sock", f->dir, i);
        snprintf(vs, sizeof(vs), "%s/vfs%d.sock", f->dir, i);
        assert_int_equal(cocoon_fs_attach(v->e, sock, &s, done_cb, &rs[i]), 0);
    }
    run(v, f->n);
    return rs;
}

static void test_inflight_cap(void **state)
{
    struct fleet f;
    cocoon_options o = { .size = sizeof(cocoon_options), .max_inflight_vms = 1 };
    struct env *v;
    struct res *rs;
    double t0, t;

    (void)state;
    fleet_start(&f, 4, "150");
    v = env_new(NULL, &o);
    t0 = mono();
    rs = fleet_attach_all(v, &f);
    t = mono() - t0;
    for (int i = 0; i < 4; i++)
        assert_int_equal(rs[i].err, 0);
    assert_true(t >= 0.6);
    free(rs);
    env_free(v);
    fleet_stop(&f);

    fleet_start(&f, 4, "150");
    o.max_inflight_vms = 0;
    v = env_new(NULL, &o);
    t0 = mono();
    rs = fleet_attach_all(v, &f);
    t = mono() - t0;
    for (int i = 0; i < 4; i++)
        assert_int_equal(rs[i].err, 0);
    assert_true(t < 0.55);
    free(rs);
    env_free(v);
    fleet_stop(&f);
}

static void test_fleet_1000(void **state)
{
    struct fleet f;
    struct env *v;
    struct res *rs;
    int ok = 0;

    (void)state;
    fleet_start(&f, 1000, NULL);
    v = env_new(NULL, NULL);
    rs = fleet_attach_all(v, &f);
    for (int i = 0; i < 1000; i++) {
        ok += rs[i].err == 0;
        if (rs[i].err)
            print_message("vm%d: %s\n", i, rs[i].errstr);
        assert_int_equal(rs[i].calls, 1);
    }
    assert_int_equal(ok, 1000);
    free(rs);
    env_free(v);
    fleet_stop(&f);
}

/* One probe socket serves the engine: a batch costs one probe per attach
 * (and the probe's own first question), a later batch one more each, and
 * a socket nothing listens on costs one probe and one stat(). */
static void test_probe_per_attach(void **state)
{
    struct fleet f;
    struct env *v;
    struct res *rs, rm = { 0 };
    char dead[300], want[800];
    int dfd;

    (void)state;
    fleet_start(&f, 6, NULL);
    v = env_new(NULL, NULL);
    g_probes = 0;
    rs = fleet_attach_all(v, &f);
    for (int i = 0; i < f.n; i++)
        assert_int_equal(rs[i].err, 0);
    assert_int_equal(g_probes, f.n + 1);
    free(rs);

    snprintf(dead, sizeof(dead), "%s/dead.sock", f.dir);
    dfd = listener(dead, false);
    snprintf(v->sock, sizeof(v->sock), "%s/vm0.sock", f.dir);
    g_stats = 0;
    g_stat_path = dead;
    rm = fs_attach(v, v->sock, dead, "dead");
    assert_int_equal(rm.err, -ECONNREFUSED);
    snprintf(want, sizeof(want),
             "nothing is listening on virtiofsd socket %s (virtiofsd exited or already "
             "serves a VM; start a new virtiofsd)", dead);
    assert_string_equal(rm.errstr, want);
    assert_int_equal(g_probes, f.n + 2);
    assert_int_equal(g_stats, 1);
    g_stat_path = NULL;
    close(dfd);
    env_free(v);
    fleet_stop(&f);
}

static void nobreak_cb(cocoon_engine *e, const cocoon_result *cr, void *priv)
{
    (void)e;
    res_fill(priv, cr);
}

/* A VM whose queue ran empty keeps its connection: the detach after the
 * attach, and a listing after that, go over the one connect.  The idle
 * connection does not keep the host's loop running. */
static void test_connection_linger(void **state)
{
    struct env *v = env_new(shared_mem, NULL);
    int a = listener(vfs_path(v, "a.sock"), true);
    cocoon_fs_spec s = { sizeof(cocoon_fs_spec), vfs_path(v, "a.sock"), "a", 0, 0, 0 };
    struct res r = { 0 };
    int fds0 = sup_count_fds();

    (void)state;
    g_connects = 0;
    g_connect_path = v->sock;
    /* No break from the callback and an unreferenced watchdog: ev_run
     * returns only when nothing of the engine holds the loop. */
    ev_unref(v->loop);
    assert_int_equal(cocoon_fs_attach(v->e, v->sock, &s, nobreak_cb, &r), 0);
    ev_run(v->loop, 0);
    ev_ref(v->loop);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, 0);
    assert_int_equal(g_connects, 1);
    /* The connection, and the listener check's probe socket. */
    assert_int_equal(sup_count_fds(), fds0 + 2);
    r = fs_detach(v, v->sock, "a");
    assert_int_equal(r.err, 0);
    r = list(v, v->sock);
    assert_int_equal(r.err, 0);
    assert_int_equal(g_connects, 1);
    g_connect_path = NULL;
    cocoon_engine_free(v->e);
    v->e = NULL;
    /* The engine's own loop (epoll fd and wake fd) goes with it, and
     * its probe. */
    assert_int_equal(sup_count_fds(), fds0 - 2);
    close(a);
    env_free(v);
}

/* Idle connections and VMs in flight stay within max_inflight_vms. */
static void test_connection_linger_bounded(void **state)
{
    struct fleet f;
    cocoon_options o = { .size = sizeof(cocoon_options), .max_inflight_vms = 2 };
    struct env *v;
    struct res *rs;
    int fds0;

    (void)state;
    fleet_start(&f, 5, NULL);
    v = env_new(NULL, &o);
    fds0 = sup_count_fds();
    rs = fleet_attach_all(v, &f);
    for (int i = 0; i < f.n; i++)
        assert_int_equal(rs[i].err, 0);
    free(rs);
    assert_int_equal(sup_count_fds(), fds0 + 2 + 1);   /* and the probe */
    env_free(v);
    fleet_stop(&f);
}

/* ------------------------------------------------------ cancel and free */

struct cancel {
    int calls[8];
    int errs[8];
    char texts[8][256];
    struct env *v;
    bool free_in_cb;
};

struct cancel_item {
    struct cancel *c;
    int i;
};

static void cancel_cb(cocoon_engine *e, const cocoon_result *cr, void *priv)
{
    struct cancel_item *it = priv;

    it->c->calls[it->i]++;
    it->c->errs[it->i] = cr->err;
    snprintf(it->c->texts[it->i], sizeof(it->c->texts[it->i]), "%s", cr->errstr);
    if (it->c->free_in_cb && it->i == 0) {
        cocoon_engine_free(e);
        it->c->v->e = NULL;
        /* Submitting into a dying engine fails synchronously. */
        cocoon_fs_spec s = { sizeof(cocoon_fs_spec), "/x", "y", 0, 0, 0 };
        assert_int_equal(cocoon_fs_attach(e, "/x", &s, cancel_cb, priv), -ECANCELED);
    }
}

static void stop_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* Runs v's loop until chsim has received n requests of endpoint: the
 * counter is the event, polled between loop turns (watchdog 10 s). */
static void run_until_count(struct env *v, const char *endpoint, int n)
{
    long long deadline = sup_now_ms() + 10000;

    while (sup_chsim_count(v->sock, endpoint) < n) {
        assert_true(sup_now_ms() < deadline);
        ev_run(v->loop, EVRUN_NOWAIT);
        usleep(1000);
    }
}

static void test_free_cancels(void **state)
{
    static const char *const extra[] = { "--memory", "size=1G,shared=on", NULL };
    struct env *v = env_new(extra, NULL);
    int lfd = listener(vfs_path(v, "a.sock"), true);
    struct cancel c = { .v = v };
    struct cancel_item it[4] = { { &c, 0 }, { &c, 1 }, { &c, 2 }, { &c, 3 } };
    cocoon_fs_spec s = { sizeof(cocoon_fs_spec), vfs_path(v, "a.sock"), "a", 0, 0, 0 };

    (void)state;
    /* Never started: freed before the loop runs. */
    assert_int_equal(cocoon_fs_attach(v->e, v->sock, &s, cancel_cb, &it[0]), 0);
    assert_int_equal(cocoon_fs_detach(v->e, "nope", "a", cancel_cb, &it[1]), 0);
    cocoon_engine_free(v->e);
    assert_int_equal(c.calls[0], 1);
    assert_int_equal(c.calls[1], 1);
    assert_int_equal(c.errs[0], -ECANCELED);
    assert_int_equal(c.errs[1], -ECANCELED);

    /* In flight: chsim has the PUT and never answers it when the engine
     * is freed, so the attach may have happened: outcome unknown, never
     * "canceled".  The detach queued behind it was never sent. */
    assert_int_equal(sup_chsim_fault(v->sock, "vm.add-fs", "never-reply", 1), 0);
    v->e = cocoon_engine_new(v->loop, &(cocoon_options){ .size = sizeof(cocoon_options),
                                                         .root_dir = v->dir });
    memset(c.calls, 0, sizeof(c.calls));
    assert_int_equal(cocoon_fs_attach(v->e, v->sock, &s, cancel_cb, &it[0]), 0);
    assert_int_equal(cocoon_fs_detach(v->e, v->sock, "a", cancel_cb, &it[1]), 0);
    run_until_count(v, "vm.add-fs", 1);
    assert_int_equal(c.calls[0], 0);
    cocoon_engine_free(v->e);
    v->e = NULL;
    assert_int_equal(c.calls[0], 1);
    assert_int_equal(c.calls[1], 1);
    assert_int_equal(c.errs[0], -EINPROGRESS);
    assert_string_equal(c.texts[0], "fs attach: outcome unknown: the request was already sent "
                                    "when the engine was freed");
    assert_int_equal(c.errs[1], -ECANCELED);
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-fs"), 1);
    assert_int_equal(sup_chsim_count(v->sock, "vm.remove-device"), 0);
    close(lfd);
    env_free(v);
}

/* A drained engine starts nothing new: the queued detach completes at once
 * as never started, later submits are refused, and the PUT already sent
 * still gets its real outcome. */
static void test_drain(void **state)
{
    struct env *v = env_new(shared_mem, &(cocoon_options){ .size = sizeof(cocoon_options),
                                                           .timeout_ms = 1000 });
    int lfd = listener(vfs_path(v, "a.sock"), true);
    struct cancel c = { .v = v };
    struct cancel_item it[4] = { { &c, 0 }, { &c, 1 }, { &c, 2 }, { &c, 3 } };
    cocoon_fs_spec s = { sizeof(cocoon_fs_spec), vfs_path(v, "a.sock"), "a", 0, 0, 0 };
    long long deadline = sup_now_ms() + 10000;

    (void)state;
    assert_int_equal(sup_chsim_fault(v->sock, "vm.add-fs", "never-reply", 1), 0);
    assert_int_equal(cocoon_fs_attach(v->e, v->sock, &s, cancel_cb, &it[0]), 0);
    assert_int_equal(cocoon_fs_detach(v->e, v->sock, "a", cancel_cb, &it[1]), 0);
    run_until_count(v, "vm.add-fs", 1);
    cocoon_engine_drain(v->e);
    assert_int_equal(c.calls[1], 1);
    assert_int_equal(c.errs[1], -ECANCELED);
    assert_string_equal(c.texts[1], "fs detach: canceled before it started");
    assert_int_equal(c.calls[0], 0);
    assert_int_equal(cocoon_fs_list(v->e, v->sock, NULL, NULL), -ECANCELED);
    assert_int_equal(cocoon_fs_detach(v->e, v->sock, "a", cancel_cb, &it[2]), -ECANCELED);
    /* The held PUT times out on the engine's clock; its reply is lost, so
     * vm.info settles it: the share is attached. */
    while (c.calls[0] == 0) {
        assert_true(sup_now_ms() < deadline);
        ev_run(v->loop, EVRUN_ONCE);
    }
    assert_int_equal(c.errs[0], 0);
    assert_non_null(strstr(c.texts[0], "reply lost; vm.info shows the device attached"));
    assert_int_equal(sup_chsim_count(v->sock, "vm.add-fs"), 1);
    assert_int_equal(sup_chsim_count(v->sock, "vm.remove-device"), 0);
    close(lfd);
    env_free(v);
}

static void test_free_inside_callback(void **state)
{
    struct env *v = env_new(shared_mem, NULL);
    int lfd = listener(vfs_path(v, "a.sock"), true);
    struct cancel c = { .v = v, .free_in_cb = true };
    struct cancel_item it[4] = { { &c, 0 }, { &c, 1 }, { &c, 2 }, { &c, 3 } };
    ev_timer stop;
    struct res r = { 0 };

    (void)state;
    /* Op 0 fails validation at once; its callback frees the engine while
     * ops 1-3 (other VMs and the same VM) are pending. */
    assert_int_equal(cocoon_fs_detach(v->e, v->sock, "", cancel_cb, &it[0]), 0);
    assert_int_equal(cocoon_fs_detach(v->e, v->sock, "a", cancel_cb, &it[1]), 0);
    assert_int_equal(cocoon_fs_detach(v->e, "/nonexistent/api.sock", "a", cancel_cb, &it[2]), 0);
    assert_int_equal(cocoon_device_detach(v->e, v->sock, "x", cancel_cb, &it[3]), 0);
    ev_timer_init(&stop, stop_cb, 0.3, 0.);
    ev_timer_start(v->loop, &stop);
    ev_run(v->loop, 0);
    assert_null(v->e);
    for (int i = 0; i < 4; i++)
        assert_int_equal(c.calls[i], 1);
    assert_int_equal(c.errs[0], -EINVAL);
    for (int i = 1; i < 4; i++)
        assert_int_equal(c.errs[i], -ECANCELED);
    (void)r;
    close(lfd);
    env_free(v);
}

/* A host may run a nested loop iteration inside a callback (GLib code
 * does); another operation completing in it must not change the text the
 * outer callback is reading. */
struct nested {
    struct env *v;
    struct res *inner;
    char seen[2048];
    const char *errstr;
    int calls;
};

static void nested_cb(cocoon_engine *e, const cocoon_result *cr, void *priv)
{
    struct nested *n = priv;

    (void)e;
    n->calls++;
    snprintf(n->seen, sizeof(n->seen), "%s", cr->errstr);
    while (n->inner->calls == 0)
        ev_run(n->v->loop, EVRUN_ONCE);
    assert_string_equal(cr->errstr, n->seen);
    if (--n->v->pending == 0)
        ev_break(n->v->loop, EVBREAK_ALL);
}

static void test_errstr_nested_loop(void **state)
{
    struct env *v = env_new(shared_mem, NULL);
    struct res inner = { 0 };
    struct nested n = { .v = v, .inner = &inner };

    (void)state;
    /* The inner op is under way (its vm.info sent) before the outer one
     * fails resolution; the inner one then fails its precheck while the
     * outer callback runs the loop. */
    assert_int_equal(cocoon_device_detach(v->e, v->sock, "nope", done_cb, &inner), 0);
    v->pending++;
    ev_run(v->loop, EVRUN_ONCE);
    assert_int_equal(inner.calls, 0);
    assert_int_equal(cocoon_device_detach(v->e, "no-such-vm", "x", nested_cb, &n), 0);
    run(v, 1);
    assert_int_equal(n.calls, 1);
    assert_int_equal(inner.calls, 1);
    assert_int_not_equal(inner.err, 0);
    assert_non_null(strstr(n.seen, "VM not found"));
    env_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fs_attach_ok),
        cmocka_unit_test(test_fs_attach_validation_first),
        cmocka_unit_test(test_fs_attach_shared_off),
        cmocka_unit_test(test_fs_attach_zones_and_hugepages),
        cmocka_unit_test(test_paused),
        cmocka_unit_test(test_fs_collisions),
        cmocka_unit_test(test_fs_attach_no_memory_info),
        cmocka_unit_test(test_fs_eject_pending),
        cmocka_unit_test(test_fs_socket_liveness),
        cmocka_unit_test(test_probe_answers),
        cmocka_unit_test(test_probe_not_believed),
        cmocka_unit_test(test_fs_socket_listens_after_first),
        cmocka_unit_test(test_probe_per_attach),
        cmocka_unit_test(test_connection_linger),
        cmocka_unit_test(test_connection_linger_bounded),
        cmocka_unit_test(test_fs_detach_and_list),
        cmocka_unit_test(test_detach_wait),
        cmocka_unit_test(test_per_op_settings),
        cmocka_unit_test(test_lost_reply),
        cmocka_unit_test(test_lost_reply_not_executed),
        cmocka_unit_test(test_outcome_unknown),
        cmocka_unit_test(test_outcome_unknown_runtime_fault),
        cmocka_unit_test(test_device_attach_detach),
        cmocka_unit_test(test_device_id_in_use),
        cmocka_unit_test(test_device_eject_pending),
        cmocka_unit_test(test_list_non_pci),
        cmocka_unit_test(test_error_rendering),
        cmocka_unit_test(test_recorded_not_booted),
        cmocka_unit_test(test_recorded_gate),
        cmocka_unit_test(test_direct_not_running),
        cmocka_unit_test(test_direct_no_vm),
        cmocka_unit_test(test_fifo_per_vm),
        cmocka_unit_test(test_inflight_cap),
        cmocka_unit_test(test_free_cancels),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_free_inside_callback),
        cmocka_unit_test(test_errstr_nested_loop),
        cmocka_unit_test(test_fleet_1000),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
