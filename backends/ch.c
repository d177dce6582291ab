/* backends/ch.c: the Cloud Hypervisor backend.  Prechecks over a decoded
 * vm.info, the virtiofsd liveness check and the endpoint
 * table. */
#include "backends/backend.h"
#include "backends/listening.h"
#include "backends/spec.h"
#include "http/base.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CH_API "/api/v1/"
#define CH_VIRTIO_PCI "_virtio-pci-"
#define QMAX 300

int ch_check_not_paused(const json_vm_info *vi, char *err, size_t errlen)
{
    if (vi->state && strcmp(vi->state, "Paused") == 0)
        return base_errf(err, errlen, -EBUSY,
                         "vm is paused (snapshot or hibernate in flight); "
                         "retry after it completes");
    return 0;
}

bool ch_memory_shareable(const json_vm_info *vi)
{
    if (vi->mem_shared || vi->mem_hugepages)
        return true;
    /* With size 0 all guest RAM comes from zones, so each zone decides;
     * without zones either, vm.info had no memory to speak of (a "{}"
     * config, no memory object), which proves nothing is shared. */
    if (vi->mem_size != 0 || vi->n_zones == 0)
        return false;
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

static int ch_fs_attach_check(const json_vm_info *vi, const spec_fs *spec,
                              const char *id, char *err, size_t errlen)
{
    char q[QMAX];
    int rc = ch_check_not_paused(vi, err, errlen);

    if (rc)
        return rc;
    if (!ch_memory_shareable(vi))
        return base_errf(err, errlen, -EINVAL,
                         "fs attach requires the VM to be created with "
                         "--shared-memory (current memory shared=off; cannot "
                         "be flipped on a running VM)");
    for (size_t i = 0; i < vi->n_fs; i++) {
        const json_fs *f = &vi->fs[i];

        if (f->tag && strcmp(f->tag, spec->tag) == 0) {
            base_quote(q, sizeof(q), spec->tag);
            return base_errf(err, errlen, -EEXIST, "fs tag %s already attached", q);
        }
        if (f->id && strcmp(f->id, id) == 0) {
            base_quote(q, sizeof(q), id);
            return base_errf(err, errlen, -EEXIST, "fs id %s already attached", q);
        }
        /* Its virtiofsd already serves this VM's other share: a second
         * connect would stall CH's API for the connect timeout. */
        if (f->socket && spec->socket && strcmp(f->socket, spec->socket) == 0) {
            base_quote(q, sizeof(q), f->tag);
            return base_errf(err, errlen, -EEXIST,
                             "virtiofsd socket %s already serves fs tag %s of this VM",
                             spec->socket, q);
        }
    }
    /* CH deletes the config entry at once but keeps the device_tree nodes
     * until the guest ejects; re-adding the id in that window fails with an
     * opaque 500, so name the real cause. */
    if (ch_tree_has(vi, id)) {
        base_quote(q, sizeof(q), id);
        return base_errf(err, errlen, -EBUSY,
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
    base_quote(q, sizeof(q), tag);
    return base_errf(err, errlen, -ENODEV, "fs tag %s not attached", q);
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
        return base_errf(err, errlen, -e, "pci path %s: %s", path, strerror(e));
    }
    if (!S_ISDIR(st.st_mode))
        return base_errf(err, errlen, -ENOTDIR, "pci path %s: not a directory", path);
    for (size_t i = 0; i < vi->n_devices; i++) {
        const json_device *d = &vi->devices[i];

        if (d->path && strcmp(d->path, path) == 0)
            return base_errf(err, errlen, -EEXIST, "device %s already attached (id=%s)",
                             path, d->id ? d->id : "");
        if (id && *id && d->id && strcmp(d->id, id) == 0) {
            base_quote(q, sizeof(q), id);
            return base_errf(err, errlen, -EEXIST, "device id %s already in use", q);
        }
    }
    /* As for fs: the config entry goes at once, the device_tree node only
     * when the guest ejects, and CH fails a re-add in between opaquely. */
    if (id && *id && ch_tree_has(vi, id)) {
        base_quote(q, sizeof(q), id);
        return base_errf(err, errlen, -EBUSY,
                         "device id %s is still being removed by the guest; "
                         "retry after it is ejected", q);
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
    base_quote(q, sizeof(q), id);
    return base_errf(err, errlen, -ENODEV, "device id %s not attached", q);
}

int ch_socket_check(const char *path, int probe, char *err, size_t errlen)
{
    struct stat st;
    int rc = probe < 0 ? probe : listening_probe(probe, path);

    if (probe < 0)
        goto no_answer;
    switch (rc) {
    case 0:
        return 0;
    case -ECONNREFUSED:
    case -EPROTOTYPE:
        /* Only a refusal costs a stat(), to say which it was. */
        if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
            return base_errf(err, errlen, -ENOTSOCK,
                             "virtiofsd socket %s is not a unix socket", path);
        return base_errf(err, errlen, -ECONNREFUSED,
                         "nothing is listening on virtiofsd socket %s (virtiofsd "
                         "exited or already serves a VM; start a new virtiofsd)",
                         path);
    case -ENOENT:
        return base_errf(err, errlen, -ENOENT, "virtiofsd socket %s does not exist", path);
    case -ENOTDIR:
    case -EACCES:
    case -ELOOP:
    case -ENAMETOOLONG:
        return base_errf(err, errlen, rc, "virtiofsd socket %s: %s", path, strerror(-rc));
    default:
        break;
    }
no_answer:
    return base_errf(err, errlen, rc,
                     "cannot tell whether virtiofsd listens on %s: %s "
                     "(--no-socket-check attaches without the check)",
                     path, strerror(-rc));
}

/* Only the pings may be repeated: every other call changes the VM, and
 * repeating it would hide a success behind "duplicate id" or "already
 * paused".  vm.info is single-shot too: a failed read is reported rather
 * than hidden behind retries. */
static const backend_endpoint ch_endpoints[BACKEND_EP_COUNT] = {
    [BACKEND_EP_PING]          = { "GET", CH_API "vmm.ping", { 200, 0 }, true },
    [BACKEND_EP_INFO]          = { "GET", CH_API "vm.info", { 200, 0 }, false },
    [BACKEND_EP_ADD_FS]        = { "PUT", CH_API "vm.add-fs", { 200, 204, 0 }, false },
    [BACKEND_EP_ADD_DEVICE]    = { "PUT", CH_API "vm.add-device", { 200, 204, 0 }, false },
    [BACKEND_EP_REMOVE_DEVICE] = { "PUT", CH_API "vm.remove-device", { 204, 0 }, false },
    [BACKEND_EP_SHUTDOWN]      = { "PUT", CH_API "vm.shutdown", { 204, 200, 0 }, false },
    [BACKEND_EP_VMM_SHUTDOWN]  = { "PUT", CH_API "vmm.shutdown", { 200, 204, 0 }, false },
    [BACKEND_EP_PAUSE]         = { "PUT", CH_API "vm.pause", { 204, 200, 0 }, false },
    [BACKEND_EP_RESUME]        = { "PUT", CH_API "vm.resume", { 204, 200, 0 }, false },
    [BACKEND_EP_SNAPSHOT]      = { "PUT", CH_API "vm.snapshot", { 204, 200, 0 }, false },
    [BACKEND_EP_RESTORE]       = { "PUT", CH_API "vm.restore", { 204, 200, 0 }, false },
    [BACKEND_EP_POWER_BUTTON]  = { "PUT", CH_API "vm.power-button", { 204, 200, 0 }, false },
};

const struct backend_ops backend_cloudhypervisor = {
    .name = "cloudhypervisor",
    .hypervisor = "cloud-hypervisor",
    .short_name = "cloud-hypervisor",
    .pidfile = "ch.pid",
    .default_binary = "cloud-hypervisor",
    .endpoints = ch_endpoints,
    .fs_attach_check = ch_fs_attach_check,
    .fs_detach_find = ch_fs_detach_find,
    .device_attach_check = ch_device_attach_check,
    .device_detach_check = ch_device_detach_check,
};
