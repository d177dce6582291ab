#include "backends/gate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "backends/safefile.h"
#include "http/base.h"

/* A VMM's command line is a few hundred bytes; the cap only stops a
 * hostile or runaway process from making us buffer without bound. */
#define GATE_CMDLINE_MAX (1u << 20)

char *gate_api_sock(const store_vm *vm)
{
    char *p = NULL;
    if (!vm || !vm->run_dir)
        return NULL;
    return asprintf(&p, "%s/api.sock", vm->run_dir) < 0 ? NULL : p;
}

static bool gate_is_fc(const store_vm *vm)
{
    return vm->backend && strcmp(vm->backend, STORE_BACKEND_FC) == 0;
}

char *gate_pidfile(const store_vm *vm)
{
    char *p = NULL;
    if (!vm || !vm->run_dir)
        return NULL;
    return asprintf(&p, "%s/%s", vm->run_dir, gate_is_fc(vm) ? "fc.pid" : "ch.pid") < 0
               ? NULL
               : p;
}

static char *gate_read_cmdline(pid_t pid, size_t *out_len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        if (len == cap) {
            char *g = cap >= GATE_CMDLINE_MAX ? NULL : realloc(buf, cap * 2 + 1);
            if (!g) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = g;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            buf = NULL;
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        /* procfs fills a read up to the end of the command line: a short
         * read is the end, with no second read(2) to see 0. */
        if (len < cap)
            break;
    }
    close(fd);
    if (buf) {
        buf[len] = '\0';
        *out_len = len;
    }
    return buf;
}

/* Whether val, the argument after flag, names exactly the API socket sock
 * the way a VMM is launched: Cloud Hypervisor's "--api-socket path=<sock>"
 * (or "--api-socket <sock>"), Firecracker's "--api-sock <sock>". */
static bool gate_sock_arg(const char *flag, const char *val, const char *sock)
{
    if (strcmp(flag, "--api-sock") == 0)
        return strcmp(val, sock) == 0;
    if (strcmp(flag, "--api-socket") != 0)
        return false;
    return strcmp(val, sock) == 0 || (strncmp(val, "path=", 5) == 0 && strcmp(val + 5, sock) == 0);
}

/* The executable the kernel ran for pid is exactly binary. */
static bool gate_exe_is(pid_t pid, const char *binary)
{
    char path[64], buf[PATH_MAX];
    ssize_t n;

    snprintf(path, sizeof path, "/proc/%ld/exe", (long)pid);
    n = readlink(path, buf, sizeof buf - 1);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return strcmp(buf, binary) == 0;
}

bool gate_cmdline_matches(pid_t pid, const char *binary, const char *api_sock)
{
    if (pid <= 0 || !binary || !*binary || !api_sock || !*api_sock)
        return false;
    size_t len = 0;
    char *buf = gate_read_cmdline(pid, &len);
    if (!buf)
        return false;
    /* A zombie or kernel thread has an empty cmdline: not our VMM. */
    bool ok = len > 0 && (strcmp(buf, binary) == 0 || gate_exe_is(pid, binary));
    bool sock = false;
    /* Arguments are NUL-separated; the last one may lack its NUL when the
     * process rewrote its title, which the buffer's own NUL covers. */
    const char *prev = buf;
    for (size_t off = strlen(buf) + 1; ok && !sock && off < len; off += strlen(buf + off) + 1) {
        sock = gate_sock_arg(prev, buf + off, api_sock);
        prev = buf + off;
    }
    free(buf);
    return ok && sock;
}

int gate_check(const store_vm *vm, const char *default_binary, pid_t *pid, char *err,
               size_t errlen)
{
    char reason[BASE_ERRSTR_MAX];
    const char *vmm = gate_is_fc(vm) ? "firecracker" : "cloud-hypervisor";
    if (vm->state != STORE_RUNNING)
        return base_errf(err, errlen, -EHOSTDOWN, "vm %s is %s: VM not running", vm->id,
                         store_state_name(vm->state));
    if (vm->run_dir && vm->run_dir[0] != '/')
        return base_errf(err, errlen, -EHOSTDOWN,
                         "vm %s read pidfile: run_dir %s is not absolute: VM not running",
                         vm->id, vm->run_dir);
    char *pidfile = gate_pidfile(vm);
    char *sock = gate_api_sock(vm);
    if (!pidfile || !sock) {
        free(pidfile);
        free(sock);
        if (!vm->run_dir)
            return base_errf(err, errlen, -EHOSTDOWN,
                             "vm %s read pidfile: record has no run_dir: VM not running", vm->id);
        return base_errf(err, errlen, -ENOMEM, "vm %s: out of memory", vm->id);
    }
    pid_t p = 0;
    int rc = safefile_pidfile_read(pidfile, &p, reason, sizeof reason);
    free(pidfile);
    if (rc) {
        free(sock);
        return base_errf(err, errlen, -EHOSTDOWN, "vm %s read pidfile: %s: VM not running",
                         vm->id, reason);
    }
    const char *binary = vm->binary && *vm->binary ? vm->binary : default_binary;
    if (!binary || !*binary)
        binary = vmm;
    bool ok = gate_cmdline_matches(p, binary, sock);
    if (!ok) {
        free(sock);
        return base_errf(err, errlen, -EHOSTDOWN, "vm %s pid %ld not %s: VM not running", vm->id,
                         (long)p, vmm);
    }
    /* No socket file: the connect says so; anything else must be a
     * socket only this user or root could have made. */
    rc = safefile_check_socket(sock, reason, sizeof reason);
    free(sock);
    if (rc && rc != -ENOENT)
        return base_errf(err, errlen, rc, "vm %s: %s", vm->id, reason);
    if (pid)
        *pid = p;
    return 0;
}

/* The pid that listens on sock, by the credentials the kernel keeps for
 * the listening socket: 0 when nothing listens (no socket file, or a stale
 * one), -EBUSY when something listens but cannot be named (a full
 * backlog), or -errno.  The connection sends nothing. */
static pid_t gate_listener_pid(const char *sock)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct ucred cr;
    socklen_t crl = sizeof cr;
    int fd, rc, e;

    if (strlen(sock) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    e = rc < 0 ? errno : 0;
    if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) < 0)
        e = errno;
    close(fd);
    if (e == ECONNREFUSED || e == ENOENT)
        return 0;
    if (e == EAGAIN)
        return -EBUSY;
    if (e)
        return -e;
    return cr.pid > 0 ? cr.pid : -EBUSY;
}

/* A process other than this one running exactly binary with the API
 * socket sock, found by reading every /proc/<pid>/cmdline: 0 when none. */
static pid_t gate_scan_proc(const char *binary, const char *sock)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    pid_t found = 0, self = getpid();

    if (!d)
        return -errno;
    while (!found && (de = readdir(d))) {
        char *end;
        long p = strtol(de->d_name, &end, 10);

        if (*end || p <= 0 || p == self || p > INT_MAX)
            continue;
        if (gate_cmdline_matches((pid_t)p, binary, sock))
            found = (pid_t)p;
    }
    closedir(d);
    return found;
}

int gate_find(const store_vm *vm, const char *binary, pid_t *pid, char *err, size_t errlen)
{
    char reason[BASE_ERRSTR_MAX];
    pid_t p = 0;
    int rc;

    if (!vm->run_dir || vm->run_dir[0] != '/')
        return base_errf(err, errlen, -EINVAL, "vm %s: run_dir %s is not an absolute path",
                         vm->id, vm->run_dir ? vm->run_dir : "(none)");
    if (vm->binary && *vm->binary)
        binary = vm->binary;
    char *sock = gate_api_sock(vm), *pidfile = gate_pidfile(vm);
    if (!sock || !pidfile) {
        free(sock);
        free(pidfile);
        return base_errf(err, errlen, -ENOMEM, "vm %s: out of memory", vm->id);
    }
    rc = safefile_check_socket(sock, reason, sizeof reason);
    if (rc && rc != -ENOENT) {
        base_errf(err, errlen, rc, "vm %s: %s", vm->id, reason);
        goto out;
    }
    if (safefile_pidfile_read(pidfile, &p, reason, sizeof reason) == 0 &&
        gate_cmdline_matches(p, binary, sock))
        goto found;
    p = rc ? 0 : gate_listener_pid(sock);
    if (p > 0 && gate_cmdline_matches(p, binary, sock))
        goto found;
    if (p != 0) {
        rc = p < 0 ? (int)p : -EBUSY;
        if (p > 0)
            base_errf(err, errlen, rc, "vm %s: pid %ld serves %s but is not its VMM %s",
                      vm->id, (long)p, sock, binary ? binary : "(no binary)");
        else
            base_errf(err, errlen, rc, "vm %s: %s has a listener that cannot be identified: %s",
                      vm->id, sock, strerror(-rc));
        goto out;
    }
    p = binary ? gate_scan_proc(binary, sock) : 0;
    if (p > 0)
        goto found;
    rc = base_errf(err, errlen, p < 0 ? (int)p : -ESRCH, "vm %s: no VMM serves %s", vm->id, sock);
    goto out;
found:
    rc = 0;
    *pid = p;
out:
    free(sock);
    free(pidfile);
    return rc;
}
