/* backends/backend.h: what each VMM backend supports and what its API calls
 * look like.  A backend is a const table: lifecycle calls as data, runtime
 * attach as hooks over a decoded vm.info.  A NULL hook means "not supported",
 * which is how Firecracker opts out of fs and device attach.  No I/O except
 * the host checks named below (stat of a sysfs path or a socket). */
#ifndef COCOON_BACKENDS_BACKEND_H
#define COCOON_BACKENDS_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include "backends/spec.h"
#include "json/ch.h"

/* Every API call cocoon makes, by meaning.  A backend's endpoint table has
 * one row per id; adding an endpoint is one enum value and one row. */
typedef enum backend_ep {
    BACKEND_EP_PING,             /* liveness of the API server */
    BACKEND_EP_INFO,             /* the VM's config, state and device tree */
    BACKEND_EP_ADD_FS,           /* hot-add a vhost-user-fs device */
    BACKEND_EP_ADD_DEVICE,       /* hot-add a VFIO device */
    BACKEND_EP_REMOVE_DEVICE,    /* hot-remove by device id */
    BACKEND_EP_SHUTDOWN,         /* shut the VM down, VMM keeps running */
    BACKEND_EP_VMM_SHUTDOWN,     /* end the VMM process */
    BACKEND_EP_PAUSE,
    BACKEND_EP_RESUME,
    BACKEND_EP_POWER_BUTTON,
    BACKEND_EP_MACHINE_CONFIG,   /* pre-boot vCPUs and memory */
    BACKEND_EP_BOOT_SOURCE,      /* pre-boot kernel, initrd, cmdline */
    BACKEND_EP_DRIVE,            /* pre-boot drive; path prefix + drive id */
    BACKEND_EP_NET_IFACE,        /* pre-boot NIC; path prefix + iface id */
    BACKEND_EP_ACTIONS,          /* InstanceStart, SendCtrlAltDel */
    BACKEND_EP_PATCH_VM,         /* {"state":"Paused"|"Resumed"} */
    BACKEND_EP_SNAPSHOT,         /* write the paused VM's state into a dir */
    BACKEND_EP_RESTORE,          /* a VMM without a VM takes one from a dir */
    BACKEND_EP_DRIVE_UPDATE,     /* a booted VM's drive gets a new file; + id */
    BACKEND_EP_COUNT
} backend_ep;

/* One row of an endpoint table. */
typedef struct backend_endpoint {
    const char *method;   /* NULL: the backend has no such endpoint */
    const char *path;     /* request path; a path ending in "/" is a prefix
                             to which the caller appends one id */
    int ok[3];            /* zero-terminated success statuses */
    bool retry;           /* repeating it is harmless by construction, so a
                             connection error, 5xx or 429 may be retried;
                             false: single-shot, a lost reply is never
                             answered by sending again */
} backend_endpoint;

struct backend_ops {
    const char *name;          /* store directory: "cloudhypervisor" */
    const char *hypervisor;    /* record value: "cloud-hypervisor" */
    const char *short_name;    /* in error texts: "cloud-hypervisor", "firecracker" */
    const char *pidfile;       /* "ch.pid" */
    const char *default_binary;
    const backend_endpoint *endpoints; /* BACKEND_EP_COUNT rows */

    /* Runtime attach over a decoded vm.info.  Each returns 0 or -errno with
     * the user-facing reason in err.  NULL: not supported. */

    /* Before add-fs, in this order: the VM is not paused, its memory is
     * shareable (vhost-user needs it), neither the tag nor the id is in
     * use, and no device with the id is still waiting for the guest to
     * eject it.  id is the device id to be used ("cocoon-fs-<tag>"). */
    int (*fs_attach_check)(const json_vm_info *vi, const spec_fs *spec,
                           const char *id, char *err, size_t errlen);
    /* fs detach: the VM is not paused, then the id of the first fs entry
     * with tag, borrowed from vi. */
    int (*fs_detach_find)(const json_vm_info *vi, const char *tag,
                          const char **id, char *err, size_t errlen);
    /* Before add-device: not paused, the path exists, neither path nor id
     * is in use, then no device with the id still waiting for the guest
     * to eject it (in device_tree, no longer in config.devices): -EBUSY.
     * id may be NULL or "". */
    int (*device_attach_check)(const json_vm_info *vi, const char *path,
                               const char *id, char *err, size_t errlen);
    /* device detach: not paused, then id must be in config.devices. */
    int (*device_detach_check)(const json_vm_info *vi, const char *id,
                               char *err, size_t errlen);
} ;

extern const struct backend_ops backend_cloudhypervisor;
extern const struct backend_ops backend_firecracker;

/* By store directory name ("cloudhypervisor", "firecracker"); NULL if none. */
const struct backend_ops *backend_by_name(const char *name);

/* ops's row for ep, or NULL when the backend has no such endpoint. */
const backend_endpoint *backend_endpoint_of(const struct backend_ops *ops, backend_ep ep);
/* True when status is one of ep's success statuses. */
bool backend_endpoint_ok(const backend_endpoint *ep, int status);

/* Pure queries over a decoded CH vm.info, shared by the hooks above, the
 * lost-reply reconcile and detach --wait. */

/* "vm is paused (...)" when state is Paused: -EBUSY. */
int ch_check_not_paused(const json_vm_info *vi, char *err, size_t errlen);
/* vhost-user needs shared or hugepage memory (zones rule: size
 * 0 and at least one zone, every zone shared or hugepage-backed). */
bool ch_memory_shareable(const json_vm_info *vi);
/* device_tree holds <id> or _virtio-pci-<id>. */
bool ch_tree_has(const json_vm_info *vi, const char *id);
/* The config.fs entry with this id, or NULL. */
const json_fs *ch_fs_by_id(const json_vm_info *vi, const char *id);
/* The config.devices entry with this id / this path, or NULL. */
const json_device *ch_device_by_id(const json_vm_info *vi, const char *id);
const json_device *ch_device_by_path(const json_vm_info *vi, const char *path);

/* virtiofsd liveness without connecting to it (a connect would take the
 * one client slot virtiofsd has): the path exists, is a socket, and a
 * stream socket listens on it, asked with listening_probe() on the fd
 * probe.  probe < 0 is the -errno of a probe that could not be opened:
 * the check then fails closed, as it does when the kernel gives no
 * answer, and never reads as passed.  0, or -ENOENT / -ENOTSOCK /
 * -ECONNREFUSED (or the path's errno) with the user-facing reason in
 * err. */
int ch_socket_check(const char *path, int probe, char *err, size_t errlen);


#endif
