#include "backends/gate.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static const char *gate_basename(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
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

bool gate_cmdline_matches(pid_t pid, const char *binary, const char *api_sock)
{
    if (pid <= 0 || !binary || !*binary || !api_sock || !*api_sock)
        return false;
    size_t len = 0;
    char *buf = gate_read_cmdline(pid, &len);
    if (!buf)
        return false;
    /* A zombie or kernel thread has an empty cmdline: not our VMM. */
    bool ok = len > 0 && strcmp(gate_basename(buf), gate_basename(binary)) == 0;
    bool sock = false;
    /* Arguments are NUL-separated; the last one may lack its NUL when the
     * process rewrote its title, which the buffer's own NUL covers. */
    for (size_t off = strlen(buf) + 1; ok && !sock && off < len; off += strlen(buf + off) + 1)
        sock = strstr(buf + off, api_sock) != NULL;
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
    free(sock);
    if (!ok)
        return base_errf(err, errlen, -EHOSTDOWN, "vm %s pid %ld not %s: VM not running", vm->id,
                         (long)p, vmm);
    if (pid)
        *pid = p;
    return 0;
}
