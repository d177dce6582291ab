/* backends/ch.c: the Cloud Hypervisor backend.  Prechecks over a decoded
 * vm.info (SPEC §6, §7), the virtiofsd liveness check and the lifecycle call
 * table. */
#include "backends/backend.h"
#include "backends/spec.h"
#include "engine/err.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CH_API "/api/v1/"
#define CH_VIRTIO_PCI "_virtio-pci-"
#define QMAX 300
#define CH_UNIX_IOBUF (64 * 1024)

void ch_quote(const char *s, char *out, size_t outlen)
{
    size_t o = 0;

    if (!outlen)
        return;
    /* Reserve room for the closing quote and NUL up front so a long value
     * is cut cleanly rather than overflowing. */
    if (outlen < 3) {
        out[0] = '\0';
        return;
    }
    out[o++] = '"';
    for (; s && *s && o + 6 < outlen; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (c == '\t') {
            out[o++] = '\\';
            out[o++] = 't';
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
}

int ch_check_not_paused(const json_vm_info *vi, char *err, size_t errlen)
{
    if (vi->state && strcmp(vi->state, "Paused") == 0)
        return eng_errf(err, errlen, -EBUSY,
                        "vm is paused (snapshot or hibernate in flight); "
                        "retry after it completes");
    return 0;
}

bool ch_memory_shareable(const json_vm_info *vi)
{
    if (vi->mem_shared || vi->mem_hugepages)
        return true;
    if (vi->mem_size != 0)
        return false;
    /* With size 0 all guest RAM comes from zones, so each zone decides. */
    for (size_t i = 0; i < vi->n_zones; i++)
        if (!vi->zones[i].shared && !vi->zones[i].hugepages)
            return false;
    return true;
}

bool ch_tree_has(const json_vm_info *vi, const char *id)
{
    size_t plen = sizeof(CH_VIRTIO_PCI) - 1;

    for (size_t i = 0; i < vi->n_tree_ids; i++) {
        const char *t = vi->tree_ids[i];

        if (!t)
            continue;
        if (strcmp(t, id) == 0)
            return true;
        if (strncmp(t, CH_VIRTIO_PCI, plen) == 0 && strcmp(t + plen, id) == 0)
            return true;
    }
    return false;
}

const json_fs *ch_fs_by_id(const json_vm_info *vi, const char *id)
{
    for (size_t i = 0; i < vi->n_fs; i++)
        if (vi->fs[i].id && strcmp(vi->fs[i].id, id) == 0)
            return &vi->fs[i];
    return NULL;
}

const json_device *ch_device_by_id(const json_vm_info *vi, const char *id)
{
    for (size_t i = 0; i < vi->n_devices; i++)
        if (vi->devices[i].id && strcmp(vi->devices[i].id, id) == 0)
            return &vi->devices[i];
    return NULL;
}

const json_device *ch_device_by_path(const json_vm_info *vi, const char *path)
{
    for (size_t i = 0; i < vi->n_devices; i++)
        if (vi->devices[i].path && strcmp(vi->devices[i].path, path) == 0)
            return &vi->devices[i];
    return NULL;
}

static int ch_fs_attach_check(const json_vm_info *vi, const cocoon_fs_spec *spec,
                              const char *id, char *err, size_t errlen)
{
    char q[QMAX];
    int rc = ch_check_not_paused(vi, err, errlen);

    if (rc)
        return rc;
    if (!ch_memory_shareable(vi))
        return eng_errf(err, errlen, -EINVAL,
                        "fs attach requires the VM to be created with "
                        "--shared-memory (current memory shared=off; cannot "
                        "be flipped on a running VM)");
    for (size_t i = 0; i < vi->n_fs; i++) {
        const json_fs *f = &vi->fs[i];

        if (f->tag && strcmp(f->tag, spec->tag) == 0) {
            ch_quote(spec->tag, q, sizeof(q));
            return eng_errf(err, errlen, -EEXIST, "fs tag %s already attached", q);
        }
        if (f->id && strcmp(f->id, id) == 0) {
            ch_quote(id, q, sizeof(q));
            return eng_errf(err, errlen, -EEXIST, "fs id %s already attached", q);
        }
    }
    /* CH deletes the config entry at once but keeps the device_tree nodes
     * until the guest ejects; re-adding the id in that window fails with an
     * opaque 500, so name the real cause. */
    if (ch_tree_has(vi, id)) {
        ch_quote(id, q, sizeof(q));
        return eng_errf(err, errlen, -EBUSY,
                        "fs id %s is still being removed by the guest; "
                        "retry after it is ejected", q);
    }
    return 0;
}

static int ch_fs_detach_find(const json_vm_info *vi, const char *tag,
                             const char **id, char *err, size_t errlen)
{
    char q[QMAX];
    int rc = ch_check_not_paused(vi, err, errlen);

    if (rc)
        return rc;
    for (size_t i = 0; i < vi->n_fs; i++) {
        if (vi->fs[i].tag && strcmp(vi->fs[i].tag, tag) == 0 && vi->fs[i].id) {
            *id = vi->fs[i].id;
            return 0;
        }
    }
    ch_quote(tag, q, sizeof(q));
    return eng_errf(err, errlen, -ENODEV, "fs tag %s not attached", q);
}

static int ch_device_attach_check(const json_vm_info *vi, const char *path,
                                  const char *id, char *err, size_t errlen)
{
    char q[QMAX];
    struct stat st;
    int rc = ch_check_not_paused(vi, err, errlen);

    if (rc)
        return rc;
    if (stat(path, &st) < 0) {
        int e = errno;
        return eng_errf(err, errlen, -e, "pci path %s: %s", path, strerror(e));
    }
    if (!S_ISDIR(st.st_mode))
        return eng_errf(err, errlen, -ENOTDIR, "pci path %s: not a directory", path);
    for (size_t i = 0; i < vi->n_devices; i++) {
        const json_device *d = &vi->devices[i];

        if (d->path && strcmp(d->path, path) == 0)
            return eng_errf(err, errlen, -EEXIST, "device %s already attached (id=%s)",
                            path, d->id ? d->id : "");
        if (id && *id && d->id && strcmp(d->id, id) == 0) {
            ch_quote(id, q, sizeof(q));
            return eng_errf(err, errlen, -EEXIST, "device id %s already in use", q);
        }
    }
    return 0;
}

static int ch_device_detach_check(const json_vm_info *vi, const char *id,
                                  char *err, size_t errlen)
{
    char q[QMAX];
    int rc = ch_check_not_paused(vi, err, errlen);

    if (rc)
        return rc;
    if (ch_device_by_id(vi, id))
        return 0;
    ch_quote(id, q, sizeof(q));
    return eng_errf(err, errlen, -ENODEV, "device id %s not attached", q);
}

/* ---- /proc/net/unix snapshot ---- */

struct ch_unix_set {
    char **slots;       /* open addressing; NULL empty; each owned */
    size_t cap;         /* power of two */
    size_t n;
};

static uint64_t ch_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static int ch_unix_set_add(ch_unix_set *s, const char *path, size_t len)
{
    char *dup;
    size_t i;

    if ((s->n + 1) * 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 64;
        char **ns = calloc(ncap, sizeof(*ns));

        if (!ns)
            return -ENOMEM;
        for (size_t k = 0; k < s->cap; k++) {
            if (!s->slots[k])
                continue;
            i = ch_hash(s->slots[k]) & (ncap - 1);
            while (ns[i])
                i = (i + 1) & (ncap - 1);
            ns[i] = s->slots[k];
        }
        free(s->slots);
        s->slots = ns;
        s->cap = ncap;
    }
    dup = strndup(path, len);
    if (!dup)
        return -ENOMEM;
    i = ch_hash(dup) & (s->cap - 1);
    while (s->slots[i]) {
        if (strcmp(s->slots[i], dup) == 0) {
            free(dup);
            return 0;
        }
        i = (i + 1) & (s->cap - 1);
    }
    s->slots[i] = dup;
    s->n++;
    return 0;
}

/* One line: "Num: RefCount Protocol Flags Type St Inode Path".  The path
 * is everything after the seventh field, so a path with spaces survives. */
static int ch_unix_line(ch_unix_set *s, char *line)
{
    char *p = line, *fields[7];
    size_t len;

    for (int f = 0; f < 7; f++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return 0;
        fields[f] = p;
        while (*p && *p != ' ')
            p++;
        if (*p)
            *p++ = '\0';
    }
    if (strcmp(fields[3], "00010000") != 0)
        return 0;
    while (*p == ' ')
        p++;
    len = strlen(p);
    while (len && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;
    if (!len || p[0] == '@')
        return 0;
    return ch_unix_set_add(s, p, len);
}

ch_unix_set *ch_unix_set_load(const char *file)
{
    FILE *f = fopen(file ? file : "/proc/net/unix", "re");
    ch_unix_set *s;
    char *line = NULL;
    size_t cap = 0;
    char *iobuf;
    bool first = true;
    int rc = 0;

    if (!f)
        return NULL;
    /* A host with thousands of sockets has a large table: read it in big
     * chunks rather than stdio's default 4 KiB. */
    iobuf = malloc(CH_UNIX_IOBUF);
    if (iobuf)
        setvbuf(f, iobuf, _IOFBF, CH_UNIX_IOBUF);
    s = calloc(1, sizeof(*s));
    if (!s) {
        fclose(f);
        free(iobuf);
        errno = ENOMEM;
        return NULL;
    }
    while (getline(&line, &cap, f) >= 0) {
        if (first) {
            first = false;
            continue;
        }
        rc = ch_unix_line(s, line);
        if (rc)
            break;
    }
    free(line);
    fclose(f);
    free(iobuf);
    if (rc) {
        ch_unix_set_free(s);
        errno = -rc;
        return NULL;
    }
    return s;
}

bool ch_unix_set_has(const ch_unix_set *s, const char *path)
{
    size_t i;

    if (!s || !s->cap)
        return false;
    i = ch_hash(path) & (s->cap - 1);
    while (s->slots[i]) {
        if (strcmp(s->slots[i], path) == 0)
            return true;
        i = (i + 1) & (s->cap - 1);
    }
    return false;
}

size_t ch_unix_set_count(const ch_unix_set *s)
{
    return s ? s->n : 0;
}

void ch_unix_set_free(ch_unix_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->cap; i++)
        free(s->slots[i]);
    free(s->slots);
    free(s);
}

int ch_socket_check(const char *path, const ch_unix_set *listeners,
                    char *err, size_t errlen)
{
    struct stat st;

    if (stat(path, &st) < 0) {
        int e = errno;

        if (e == ENOENT)
            return eng_errf(err, errlen, -ENOENT,
                            "virtiofsd socket %s does not exist", path);
        return eng_errf(err, errlen, -e, "virtiofsd socket %s: %s", path, strerror(e));
    }
    if (!S_ISSOCK(st.st_mode))
        return eng_errf(err, errlen, -ENOTSOCK,
                        "virtiofsd socket %s is not a unix socket", path);
    if (listeners && !ch_unix_set_has(listeners, path))
        return eng_errf(err, errlen, -ECONNREFUSED,
                        "nothing is listening on virtiofsd socket %s (virtiofsd "
                        "exited or already serves a VM; start a new virtiofsd)",
                        path);
    return 0;
}

int ch_listing_build(const json_vm_info *vi, cocoon_listing *l)
{
    cocoon_fs_entry *fs = NULL;
    cocoon_device_entry *dev = NULL;

    memset(l, 0, sizeof(*l));
    if (vi->n_fs && !(fs = calloc(vi->n_fs, sizeof(*fs))))
        return -ENOMEM;
    if (vi->n_devices && !(dev = calloc(vi->n_devices, sizeof(*dev)))) {
        free(fs);
        return -ENOMEM;
    }
    for (size_t i = 0; i < vi->n_fs; i++) {
        fs[i].id = vi->fs[i].id;
        fs[i].tag = vi->fs[i].tag;
        fs[i].socket = vi->fs[i].socket;
    }
    for (size_t i = 0; i < vi->n_devices; i++) {
        dev[i].id = vi->devices[i].id;
        /* Never echo a non-PCI path as a BDF. */
        dev[i].bdf = vi->devices[i].path ? spec_bdf_from_path(vi->devices[i].path) : NULL;
    }
    l->fs = fs;
    l->n_fs = vi->n_fs;
    l->devices = dev;
    l->n_devices = vi->n_devices;
    return 0;
}

void ch_listing_fini(cocoon_listing *l)
{
    free((void *)l->fs);
    free((void *)l->devices);
    memset(l, 0, sizeof(*l));
}

static const backend_call ch_calls[BACKEND_CALL_COUNT] = {
    [BACKEND_CALL_PING]         = { "GET", CH_API "vmm.ping", NULL, { 200, 0 } },
    [BACKEND_CALL_INFO]         = { "GET", CH_API "vm.info", NULL, { 200, 0 } },
    [BACKEND_CALL_SHUTDOWN]     = { "PUT", CH_API "vm.shutdown", NULL, { 204, 200, 0 } },
    [BACKEND_CALL_VMM_SHUTDOWN] = { "PUT", CH_API "vmm.shutdown", NULL, { 200, 204, 0 } },
    [BACKEND_CALL_PAUSE]        = { "PUT", CH_API "vm.pause", NULL, { 204, 200, 0 } },
    [BACKEND_CALL_RESUME]       = { "PUT", CH_API "vm.resume", NULL, { 204, 200, 0 } },
    [BACKEND_CALL_POWER_BUTTON] = { "PUT", CH_API "vm.power-button", NULL, { 204, 200, 0 } },
};

const struct backend_ops backend_cloudhypervisor = {
    .name = "cloudhypervisor",
    .hypervisor = "cloud-hypervisor",
    .short_name = "cloud-hypervisor",
    .pidfile = "ch.pid",
    .default_binary = "cloud-hypervisor",
    .calls = ch_calls,
    .fs_attach_check = ch_fs_attach_check,
    .fs_detach_find = ch_fs_detach_find,
    .device_attach_check = ch_device_attach_check,
    .device_detach_check = ch_device_detach_check,
};

const struct backend_ops *backend_by_name(const char *name)
{
    if (!name)
        return NULL;
    if (strcmp(name, backend_cloudhypervisor.name) == 0)
        return &backend_cloudhypervisor;
    if (strcmp(name, backend_firecracker.name) == 0)
        return &backend_firecracker;
    return NULL;
}
