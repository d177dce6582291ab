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
#include "http/base.h"

#define MIB (1024ull * 1024ull)
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

int launch_ch_restore_argv(const store_vm *vm, const char *binary, char ***argv_out,
                           char *err, size_t errlen)
{
    argv_buf a = { 0 };

    if (!vm->run_dir || !binary)
        return base_errf(err, errlen, -EINVAL, "build VMM argv: no run dir or binary");
    argv_add(&a, "%s", binary);
    argv_add(&a, "--api-socket");
    argv_add(&a, "path=%s/api.sock", vm->run_dir);
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

/* The last bytes of the VMM log, one line, for error messages. */
void launch_log_tail(const char *path, char *out, size_t outlen)
{
    int fd = safefile_open(path, O_RDONLY, 0, NULL, 0);
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
 * cmdline).  Our own child counts as gone only once reaped: while it exits
 * its cmdline already reads empty, and calling that gone would leave it a
 * zombie nobody waits for. */
bool launch_proc_gone(pid_t pid, const char *binary, const char *api_sock)
{
    pid_t w = waitpid(pid, NULL, WNOHANG);

    if (w == pid)
        return true;
    if (w == 0)
        return false;
    if (kill(pid, 0) < 0 && errno == ESRCH)
        return true;
    return !gate_cmdline_matches(pid, binary, api_sock);
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

char *launch_fc_machine_config(const store_vm *vm)
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

char *launch_fc_boot_source(const store_vm *vm)
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

char *launch_fc_drive(const char *drive_id, const char *path, bool root)
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

void launch_fc_drive_id(size_t i, char *out, size_t n)
{
    if (i == 0)
        snprintf(out, n, "rootfs");
    else
        snprintf(out, n, "disk%zu", i);
}

/* key: "<dir>/<name>" as a string member; rc stays nonzero on failure. */
static int gen_path(yajl_gen g, const char *key, const char *dir, const char *name)
{
    char *p = NULL;
    int rc;

    if (asprintf(&p, "%s/%s", dir, name) < 0)
        return -1;
    rc = gen_str(g, key) | gen_str(g, p);
    free(p);
    return rc;
}

char *launch_fc_snapshot_create(const char *dir)
{
    yajl_gen g = gen_open();
    int rc = 0;

    if (!g)
        return NULL;
    rc |= gen_str(g, "snapshot_type");
    rc |= gen_str(g, "Full");
    rc |= gen_path(g, "snapshot_path", dir, LAUNCH_FC_STATE_FILE);
    rc |= gen_path(g, "mem_file_path", dir, LAUNCH_FC_MEMORY_FILE);
    return gen_close(g, rc);
}

char *launch_fc_snapshot_load(const char *dir)
{
    yajl_gen g = gen_open();
    int rc = 0;

    if (!g)
        return NULL;
    rc |= gen_path(g, "snapshot_path", dir, LAUNCH_FC_STATE_FILE);
    rc |= gen_str(g, "mem_backend");
    rc |= yajl_gen_map_open(g) != yajl_gen_status_ok;
    rc |= gen_str(g, "backend_type");
    rc |= gen_str(g, "File");
    rc |= gen_path(g, "backend_path", dir, LAUNCH_FC_MEMORY_FILE);
    rc |= yajl_gen_map_close(g) != yajl_gen_status_ok;
    rc |= gen_str(g, "resume_vm");
    rc |= yajl_gen_bool(g, 0) != yajl_gen_status_ok;
    return gen_close(g, rc);
}

char *launch_fc_drive_patch(const char *drive_id, const char *path)
{
    yajl_gen g = gen_open();
    int rc = 0;

    if (!g)
        return NULL;
    rc |= gen_str(g, "drive_id");
    rc |= gen_str(g, drive_id);
    rc |= gen_str(g, "path_on_host");
    rc |= gen_str(g, path);
    return gen_close(g, rc);
}

int launch_spawn(char *const *argv, const char *log_path, pid_t *pid_out,
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
