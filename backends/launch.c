#include "backends/launch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

#include "backends/gate.h"
#include "backends/safefile.h"
#include "engine/call.h"
#include "base.h"
#include "json/ch.h"

#define MIB (1024ull * 1024ull)
#define LAUNCH_API_DEADLINE_MS 10000u
#define LAUNCH_LOG_TAIL 512

uint64_t launch_memory_mib(uint64_t bytes)
{
    uint64_t mib = bytes / MIB + (bytes % MIB ? 1 : 0);

    return mib ? mib : 1;
}

int launch_parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    uint64_t mult = 1;

    if (!s || !*s || *s == '-' || *s == '+')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': mult = 1024ull; end++; break;
    case 'm': case 'M': mult = MIB; end++; break;
    case 'g': case 'G': mult = MIB * 1024ull; end++; break;
    case 't': case 'T': mult = MIB * MIB; end++; break;
    default: return -EINVAL;
    }
    /* Accept "2Gi"/"2GB" spellings, nothing else after the unit. */
    if (mult > 1 && (*end == 'i' || *end == 'B'))
        end++;
    if (mult > 1 && *end == 'B')
        end++;
    if (*end || v == 0 || v > UINT64_MAX / mult)
        return -EINVAL;
    *out = (uint64_t)v * mult;
    return 0;
}

const char *launch_pick_binary(const char *flag, const char *env, const char *dflt)
{
    const char *e;

    if (flag && *flag)
        return flag;
    e = env ? getenv(env) : NULL;
    if (e && *e)
        return e;
    return dflt;
}

char *launch_which(const char *name)
{
    const char *path, *p;

    if (!name || !*name) {
        errno = EINVAL;
        return NULL;
    }
    if (strchr(name, '/'))
        return realpath(name, NULL);
    path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (p = path;;) {
        const char *colon = strchr(p, ':');
        size_t dl = colon ? (size_t)(colon - p) : strlen(p);
        char cand[PATH_MAX];
        int n = snprintf(cand, sizeof(cand), "%.*s/%s", (int)(dl ? dl : 1),
                         dl ? p : ".", name);

        if (n > 0 && (size_t)n < sizeof(cand) && access(cand, X_OK) == 0) {
            struct stat st;

            if (stat(cand, &st) == 0 && S_ISREG(st.st_mode))
                return realpath(cand, NULL);
        }
        if (!colon)
            break;
        p = colon + 1;
    }
    errno = ENOENT;
    return NULL;
}

/* A growable NULL-terminated argv whose strings are owned. */
typedef struct argv_buf {
    char **v;
    size_t n, cap;
    bool oom;
} argv_buf;

static void argv_add(argv_buf *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void argv_add(argv_buf *a, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    if (a->oom)
        return;
    if (a->n + 2 > a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 16;
        char **nv = realloc(a->v, nc * sizeof(*nv));

        if (!nv) {
            a->oom = true;
            return;
        }
        a->v = nv;
        a->cap = nc;
    }
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    if (!s) {
        a->oom = true;
        return;
    }
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

static int argv_finish(argv_buf *a, char ***out, char *err, size_t errlen)
{
    if (a->oom || !a->v) {
        launch_argv_free(a->v);
        return base_errf(err, errlen, -ENOMEM, "build VMM argv: out of memory");
    }
    *out = a->v;
    return 0;
}

void launch_argv_free(char **argv)
{
    if (!argv)
        return;
    for (char **p = argv; *p; p++)
        free(*p);
    free(argv);
}

int launch_ch_argv(const store_vm *vm, const char *binary, char ***argv_out,
                   char *err, size_t errlen)
{
    argv_buf a = { 0 };
    const store_vm_config *c = &vm->config;
    const char *const opt[3][2] = {
        { "--kernel", c->kernel }, { "--initramfs", c->initramfs }, { "--cmdline", c->cmdline } };

    if (!vm->run_dir || !binary)
        return base_errf(err, errlen, -EINVAL, "build VMM argv: no run dir or binary");
    argv_add(&a, "%s", binary);
    argv_add(&a, "--api-socket");
    argv_add(&a, "path=%s/api.sock", vm->run_dir);
    argv_add(&a, "--cpus");
    argv_add(&a, "boot=%d", c->cpu > 0 ? c->cpu : 1);
    argv_add(&a, "--memory");
    argv_add(&a, "size=%" PRIu64 "M%s", launch_memory_mib(c->memory),
             c->shared_memory ? ",shared=on" : "");
    for (size_t i = 0; i < 3; i++)
        if (opt[i][1]) {
            argv_add(&a, "%s", opt[i][0]);
            argv_add(&a, "%s", opt[i][1]);
        }
    for (size_t i = 0; i < c->n_disks; i++) {
        argv_add(&a, "--disk");
        argv_add(&a, "path=%s", c->disks[i]);
    }
    argv_add(&a, "--serial");
    argv_add(&a, "tty");
    argv_add(&a, "--console");
    argv_add(&a, "off");
    return argv_finish(&a, argv_out, err, errlen);
}

int launch_fc_argv(const store_vm *vm, const char *binary, char ***argv_out,
                   char *err, size_t errlen)
{
    argv_buf a = { 0 };

    if (!vm->run_dir || !binary)
        return base_errf(err, errlen, -EINVAL, "build VMM argv: no run dir or binary");
    argv_add(&a, "%s", binary);
    argv_add(&a, "--api-sock");
    argv_add(&a, "%s/api.sock", vm->run_dir);
    return argv_finish(&a, argv_out, err, errlen);
}

/* Values are quoted only when a shell would split or expand them, so the
 * printed command can be pasted. */
static bool needs_quote(const char *s)
{
    if (!*s)
        return true;
    for (; *s; s++)
        if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') ||
              ('0' <= *s && *s <= '9') || strchr("-_./=:,+@%", *s)))
            return true;
    return false;
}

static void fput_word(FILE *f, const char *s)
{
    if (!needs_quote(s)) {
        fputs(s, f);
        return;
    }
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", f);
        else
            fputc(*s, f);
    }
    fputc('\'', f);
}

char *launch_debug_format(char *const *argv)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f;

    if (!argv || !argv[0])
        return NULL;
    f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    fput_word(f, argv[0]);
    for (size_t i = 1; argv[i];) {
        fputs(" \\\n  ", f);
        fput_word(f, argv[i++]);
        while (argv[i] && strncmp(argv[i], "--", 2) != 0) {
            fputc(' ', f);
            fput_word(f, argv[i++]);
        }
    }
    fputc('\n', f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

typedef struct save_ctx {
    store_vm *vm;
} save_ctx;

static int save_cb(store_db *db, void *priv, char *err, size_t errlen)
{
    save_ctx *s = priv;
    store_vm *cur = store_db_find(db, s->vm->id);
    store_vm copy;

    if (!cur)
        return base_errf(err, errlen, -ENOENT, "vm %s: VM not found", s->vm->id);
    if (store_vm_copy(&copy, s->vm) < 0)
        return base_errf(err, errlen, -ENOMEM, "save vm %s: out of memory", s->vm->id);
    store_vm_fini(cur);
    *cur = copy;
    return 0;
}

int launch_record_save(const char *root, store_vm *vm, char *err, size_t errlen)
{
    save_ctx s = { vm };
    char *now = store_now();

    if (now) {
        free(vm->updated_at);
        vm->updated_at = now;
    }
    return store_update(root, vm->backend, save_cb, &s, err, errlen);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* The last bytes of the VMM log, one line, for error messages. */
static void log_tail(const char *path, char *out, size_t outlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    off_t end;
    ssize_t n;
    size_t want = outlen - 1 < LAUNCH_LOG_TAIL ? outlen - 1 : LAUNCH_LOG_TAIL;

    out[0] = '\0';
    if (fd < 0)
        return;
    end = lseek(fd, 0, SEEK_END);
    if (end > (off_t)want)
        lseek(fd, end - (off_t)want, SEEK_SET);
    else
        lseek(fd, 0, SEEK_SET);
    n = read(fd, out, want);
    close(fd);
    if (n <= 0) {
        out[0] = '\0';
        return;
    }
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    for (ssize_t i = 0; i < n; i++)
        if (out[i] == '\n' || out[i] == '\r')
            out[i] = ' ';
        else if ((unsigned char)out[i] < 0x20)
            out[i] = '?';
}

/* Gone means: reaped as our child, no such pid, or the pid no longer runs
 * the VMM serving api_sock (exited and reused, or a zombie with an empty
 * cmdline). */
static bool proc_gone(pid_t pid, const char *binary, const char *api_sock)
{
    pid_t w = waitpid(pid, NULL, WNOHANG);

    if (w == pid)
        return true;
    if (kill(pid, 0) < 0 && errno == ESRCH)
        return true;
    return !gate_cmdline_matches(pid, binary, api_sock);
}

static bool wait_gone(pid_t pid, const char *binary, const char *api_sock,
                      unsigned ms)
{
    long long deadline = (long long)(base_mono_ns() / 1000000) + ms;

    for (;;) {
        if (proc_gone(pid, binary, api_sock))
            return true;
        if ((long long)(base_mono_ns() / 1000000) >= deadline)
            return false;
        sleep_ms(20);
    }
}

static int gen_str(yajl_gen g, const char *s)
{
    return yajl_gen_string(g, (const unsigned char *)s, strlen(s)) == yajl_gen_status_ok ? 0 : -1;
}

/* A fresh generator with its top-level map open, or NULL. */
static yajl_gen gen_open(void)
{
    yajl_gen g = yajl_gen_alloc(NULL);

    if (g && (!yajl_gen_config(g, yajl_gen_validate_utf8, 1) ||
              yajl_gen_map_open(g) != yajl_gen_status_ok)) {
        yajl_gen_free(g);
        return NULL;
    }
    return g;
}

/* Closes the map and frees g; the document (owned), or NULL when rc or
 * any step failed. */
static char *gen_close(yajl_gen g, int rc)
{
    const unsigned char *b;
    size_t l;
    char *out = NULL;

    if (!rc && yajl_gen_map_close(g) == yajl_gen_status_ok &&
        yajl_gen_get_buf(g, &b, &l) == yajl_gen_status_ok) {
        out = malloc(l + 1);
        if (out) {
            memcpy(out, b, l);
            out[l] = '\0';
        }
    }
    yajl_gen_free(g);
    return out;
}

static char *fc_machine_config(const store_vm *vm)
{
    yajl_gen g = gen_open();
    int rc = 0;

    if (!g)
        return NULL;
    rc |= gen_str(g, "vcpu_count");
    rc |= yajl_gen_integer(g, vm->config.cpu > 0 ? vm->config.cpu : 1);
    rc |= gen_str(g, "mem_size_mib");
    rc |= yajl_gen_integer(g, (long long)launch_memory_mib(vm->config.memory));
    return gen_close(g, rc);
}

static char *fc_boot_source(const store_vm *vm)
{
    yajl_gen g = gen_open();
    int rc = 0;

    if (!g)
        return NULL;
    rc |= gen_str(g, "kernel_image_path");
    rc |= gen_str(g, vm->config.kernel ? vm->config.kernel : "");
    if (vm->config.initramfs) {
        rc |= gen_str(g, "initrd_path");
        rc |= gen_str(g, vm->config.initramfs);
    }
    if (vm->config.cmdline) {
        rc |= gen_str(g, "boot_args");
        rc |= gen_str(g, vm->config.cmdline);
    }
    return gen_close(g, rc);
}

static char *fc_drive(const char *drive_id, const char *path, bool root)
{
    yajl_gen g = gen_open();
    int rc = 0;

    if (!g)
        return NULL;
    rc |= gen_str(g, "drive_id");
    rc |= gen_str(g, drive_id);
    rc |= gen_str(g, "path_on_host");
    rc |= gen_str(g, path);
    rc |= gen_str(g, "is_root_device");
    rc |= yajl_gen_bool(g, root);
    rc |= gen_str(g, "is_read_only");
    rc |= yajl_gen_bool(g, 0);
    return gen_close(g, rc);
}

static int fc_put(const char *sock, const char *path, char *body, unsigned timeout_ms,
                  char *err, size_t errlen)
{
    int rc;

    if (!body)
        return base_errf(err, errlen, -ENOMEM, "PUT %s: cannot encode body", path);
    rc = eng_call_sync(sock, "PUT", path, body, timeout_ms, NULL, NULL, NULL, err, errlen);
    free(body);
    return rc;
}

/* Firecracker's API has no vmm.ping: wait until its socket accepts. */
static int wait_connectable(const char *sock, pid_t pid, unsigned ms, char *err, size_t errlen)
{
    long long deadline = (long long)(base_mono_ns() / 1000000) + ms;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };

    if (strlen(sock) >= sizeof(sa.sun_path))
        return base_errf(err, errlen, -ENAMETOOLONG, "socket path too long: %s", sock);
    strcpy(sa.sun_path, sock);
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
            return base_errf(err, errlen, -errno, "socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            close(fd);
            return 0;
        }
        close(fd);
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return base_errf(err, errlen, -ECHILD, "VMM exited before serving %s", sock);
        if ((long long)(base_mono_ns() / 1000000) >= deadline)
            return base_errf(err, errlen, -ETIMEDOUT, "%s did not come up within %u ms",
                             sock, ms);
        sleep_ms(20);
    }
}

static int wait_api(const char *sock, pid_t pid, char *err, size_t errlen)
{
    long long deadline = (long long)(base_mono_ns() / 1000000) + LAUNCH_API_DEADLINE_MS;
    int rc;

    /* Short ping windows so a VMM that dies at once is noticed at once
     * instead of after the whole deadline. */
    for (;;) {
        int st;

        if (waitpid(pid, &st, WNOHANG) == pid) {
            if (WIFEXITED(st))
                return base_errf(err, errlen, -ECHILD, "VMM exited with status %d",
                                 WEXITSTATUS(st));
            return base_errf(err, errlen, -ECHILD, "VMM killed by signal %d",
                             WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        }
        rc = eng_ping_wait(sock, 200, err, errlen);
        if (rc == 0)
            return 0;
        if ((long long)(base_mono_ns() / 1000000) >= deadline)
            return rc;
    }
}

static int spawn(char *const *argv, const char *log_path, pid_t *pid_out,
                 char *err, size_t errlen)
{
    int pfd[2], child_errno = 0;
    pid_t pid;
    ssize_t n;

    if (pipe2(pfd, O_CLOEXEC) < 0)
        return base_errf(err, errlen, -errno, "pipe: %s", strerror(errno));
    pid = fork();
    if (pid < 0) {
        int e = errno;

        close(pfd[0]);
        close(pfd[1]);
        return base_errf(err, errlen, -e, "fork: %s", strerror(e));
    }
    if (pid == 0) {
        int fd, e;
        sigset_t none;

        close(pfd[0]);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        setsid();
        fd = open("/dev/null", O_RDONLY);
        if (fd >= 0 && fd != 0) {
            dup2(fd, 0);
            close(fd);
        }
        fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            if (fd > 2)
                close(fd);
        }
        execv(argv[0], argv);
        e = errno;
        if (write(pfd[1], &e, sizeof(e)) < 0)
            _exit(126);
        _exit(127);
    }
    close(pfd[1]);
    /* The pipe is close-on-exec: EOF means the exec happened. */
    do
        n = read(pfd[0], &child_errno, sizeof(child_errno));
    while (n < 0 && errno == EINTR);
    close(pfd[0]);
    if (n == (ssize_t)sizeof(child_errno)) {
        waitpid(pid, NULL, 0);
        return base_errf(err, errlen, -child_errno, "exec %s: %s", argv[0],
                         strerror(child_errno));
    }
    *pid_out = pid;
    return 0;
}

static int check_running(const char *sock, const store_vm *vm, unsigned timeout_ms,
                         char *err, size_t errlen)
{
    static const int ok[] = { 200, 0 };
    char *body = NULL;
    json_vm_info vi;
    int rc;

    rc = eng_call_sync(sock, "GET", "/api/v1/vm.info", NULL, timeout_ms, ok, NULL,
                       &body, err, errlen);
    if (rc < 0) {
        free(body);
        return rc;
    }
    memset(&vi, 0, sizeof(vi));
    rc = json_vm_info_decode(body ? body : "", body ? strlen(body) : 0, &vi, err, errlen);
    free(body);
    if (rc < 0)
        return rc;
    if (vm->config.kernel && strcmp(vi.state, "Running") != 0)
        rc = base_errf(err, errlen, -EPROTO, "vm.info reports state %s, expected Running",
                       vi.state);
    json_vm_info_fini(&vi);
    return rc;
}

static int fc_configure(const char *sock, const store_vm *vm, unsigned timeout_ms,
                        char *err, size_t errlen)
{
    int rc;

    rc = fc_put(sock, "/machine-config", fc_machine_config(vm), timeout_ms, err, errlen);
    if (rc == 0 && vm->config.kernel)
        rc = fc_put(sock, "/boot-source", fc_boot_source(vm), timeout_ms, err, errlen);
    for (size_t i = 0; rc == 0 && i < vm->config.n_disks; i++) {
        char id[32], path[48];

        if (i == 0)
            snprintf(id, sizeof(id), "rootfs");
        else
            snprintf(id, sizeof(id), "disk%zu", i);
        snprintf(path, sizeof(path), "/drives/%s", id);
        rc = fc_put(sock, path, fc_drive(id, vm->config.disks[i], i == 0), timeout_ms,
                    err, errlen);
    }
    if (rc == 0)
        rc = eng_call_sync(sock, "PUT", "/actions", "{\"action_type\":\"InstanceStart\"}",
                           timeout_ms, NULL, NULL, NULL, err, errlen);
    return rc;
}

static int make_dir(const char *path, char *err, size_t errlen)
{
    int rc = safefile_mkdir_private(path, err, errlen);

    return rc == -EEXIST ? 0 : rc;
}

int launch_start(const char *root, store_vm *vm, const char *binary,
                 unsigned timeout_ms, pid_t *pid_out, char *err, size_t errlen)
{
    bool fc = strcmp(vm->backend, STORE_BACKEND_FC) == 0;
    char *abs = NULL, *sock = NULL, *pidfile = NULL, *log_path = NULL, **argv = NULL;
    char why[BASE_ERRSTR_MAX], tail[LAUNCH_LOG_TAIL + 1];
    pid_t pid = -1;
    int rc;

    why[0] = '\0';
    if (!vm->run_dir)
        return base_errf(err, errlen, -EINVAL, "vm %s has no run dir", vm->id);
    abs = launch_which(binary);
    if (!abs) {
        rc = base_errf(why, sizeof(why), -ENOENT, "VMM binary %s: %s", binary,
                       strerror(errno));
        goto fail;
    }
    rc = make_dir(vm->run_dir, why, sizeof(why));
    if (rc == 0 && vm->log_dir && strcmp(vm->log_dir, vm->run_dir) != 0)
        rc = make_dir(vm->log_dir, why, sizeof(why));
    if (rc < 0)
        goto fail;
    sock = gate_api_sock(vm);
    pidfile = gate_pidfile(vm);
    if (asprintf(&log_path, "%s/%s.log", vm->log_dir ? vm->log_dir : vm->run_dir,
                 fc ? "fc" : "ch") < 0)
        log_path = NULL;
    if (!sock || !pidfile || !log_path) {
        rc = base_errf(why, sizeof(why), -ENOMEM, "out of memory");
        goto fail;
    }
    /* A stale socket file from an earlier run would make a client connect
     * to nothing (or to the wrong VMM): start from a clean slate. */
    unlink(sock);
    rc = fc ? launch_fc_argv(vm, abs, &argv, why, sizeof(why))
            : launch_ch_argv(vm, abs, &argv, why, sizeof(why));
    if (rc < 0)
        goto fail;
    rc = spawn(argv, log_path, &pid, why, sizeof(why));
    if (rc < 0)
        goto fail;
    rc = safefile_pidfile_write(pidfile, pid, why, sizeof(why));
    if (rc < 0)
        goto fail;
    free(vm->binary);
    vm->binary = strdup(abs);
    free(vm->started_at);
    vm->started_at = store_now();
    if (fc) {
        rc = wait_connectable(sock, pid, LAUNCH_API_DEADLINE_MS, why, sizeof(why));
        if (rc == 0)
            rc = fc_configure(sock, vm, timeout_ms, why, sizeof(why));
    } else {
        rc = wait_api(sock, pid, why, sizeof(why));
        if (rc == 0)
            rc = check_running(sock, vm, timeout_ms, why, sizeof(why));
    }
    if (rc < 0)
        goto fail;
    vm->state = STORE_RUNNING;
    rc = launch_record_save(root, vm, why, sizeof(why));
    if (rc < 0)
        goto fail;
    if (pid_out)
        *pid_out = pid;
    goto out;

fail:
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (pidfile)
        unlink(pidfile);
    tail[0] = '\0';
    if (log_path)
        log_tail(log_path, tail, sizeof(tail));
    if (tail[0])
        base_errf(err, errlen, rc, "start vm %s: %s (VMM log: %s)", vm->id, why, tail);
    else
        base_errf(err, errlen, rc, "start vm %s: %s", vm->id, why);
    vm->state = STORE_ERROR;
    {
        char ignored[BASE_ERRSTR_MAX];

        launch_record_save(root, vm, ignored, sizeof(ignored));
    }
out:
    launch_argv_free(argv);
    free(abs);
    free(sock);
    free(pidfile);
    free(log_path);
    return rc;
}

int launch_stop(const char *root, store_vm *vm, const char *default_binary,
                const launch_stop_bounds *bounds, char *err, size_t errlen)
{
    launch_stop_bounds b = bounds ? *bounds : (launch_stop_bounds){ 0 };
    bool fc = strcmp(vm->backend, STORE_BACKEND_FC) == 0;
    const char *binary = vm->binary ? vm->binary : default_binary;
    char why[BASE_ERRSTR_MAX], *sock, *pidfile;
    pid_t pid = 0;
    int rc;

    if (!b.call_ms) b.call_ms = 2000;
    if (!b.graceful_ms) b.graceful_ms = 5000;
    if (!b.term_ms) b.term_ms = 3000;
    if (!b.kill_ms) b.kill_ms = 2000;
    sock = gate_api_sock(vm);
    pidfile = gate_pidfile(vm);
    if (!sock || !pidfile) {
        free(sock);
        free(pidfile);
        return base_errf(err, errlen, -ENOMEM, "stop vm %s: out of memory", vm->id);
    }
    if (gate_check(vm, default_binary, &pid, why, sizeof(why)) == 0) {
        long long t0 = (long long)(base_mono_ns() / 1000000);
        int crc;

        /* Single-shot: a lost reply is answered by watching the process,
         * never by resending. */
        if (fc) {
            crc = eng_call_sync(sock, "PUT", "/actions",
                                "{\"action_type\":\"SendCtrlAltDel\"}", b.call_ms, NULL,
                                NULL, NULL, why, sizeof(why));
        } else {
            crc = eng_call_sync(sock, "PUT", "/api/v1/vm.shutdown", NULL, b.call_ms, NULL,
                                NULL, NULL, why, sizeof(why));
            /* After a timeout the API thread is wedged: a second call
             * would only wait again. */
            if (crc != -ETIMEDOUT && !proc_gone(pid, binary, sock))
                eng_call_sync(sock, "PUT", "/api/v1/vmm.shutdown", NULL, b.call_ms, NULL,
                              NULL, NULL, why, sizeof(why));
        }
        {
            long long spent = (long long)(base_mono_ns() / 1000000) - t0;
            unsigned left = spent >= b.graceful_ms ? 0 : b.graceful_ms - (unsigned)spent;

            if (!wait_gone(pid, binary, sock, left)) {
                kill(pid, SIGTERM);
                if (!wait_gone(pid, binary, sock, b.term_ms)) {
                    kill(pid, SIGKILL);
                    if (!wait_gone(pid, binary, sock, b.kill_ms)) {
                        free(sock);
                        free(pidfile);
                        return base_errf(err, errlen, -ETIMEDOUT,
                                         "stop vm %s: pid %d survived SIGKILL", vm->id,
                                         (int)pid);
                    }
                }
            }
        }
    }
    unlink(pidfile);
    unlink(sock);
    vm->state = STORE_STOPPED;
    rc = launch_record_save(root, vm, why, sizeof(why));
    free(sock);
    free(pidfile);
    if (rc < 0)
        return base_errf(err, errlen, rc, "stop vm %s: %s", vm->id, why);
    return 0;
}
