/* backends/fc.c: the Firecracker backend.  Firecracker has no virtio-fs and
 * no PCI hot-plug, so every runtime-attach hook is NULL; only its lifecycle
 * endpoints are described: boot, pause and resume, snapshot create and
 * load, and GET / whose "state" answers a lost reply. */
#include "backends/backend.h"

/* The pre-boot PUTs and a drive PATCH set configuration to a value, so
 * repeating one is harmless; an action, a state change, a snapshot and a
 * load are single-shot. */
static const backend_endpoint fc_endpoints[BACKEND_EP_COUNT] = {
    [BACKEND_EP_INFO]           = { "GET", "/", { 200, 0 }, false },
    [BACKEND_EP_MACHINE_CONFIG] = { "PUT", "/machine-config", { 204, 200, 0 }, true },
    [BACKEND_EP_BOOT_SOURCE]    = { "PUT", "/boot-source", { 204, 200, 0 }, true },
    [BACKEND_EP_DRIVE]          = { "PUT", "/drives/", { 204, 200, 0 }, true },
    [BACKEND_EP_NET_IFACE]      = { "PUT", "/network-interfaces/", { 204, 200, 0 }, true },
    [BACKEND_EP_ACTIONS]        = { "PUT", "/actions", { 204, 200, 0 }, false },
    [BACKEND_EP_PATCH_VM]       = { "PATCH", "/vm", { 204, 200, 0 }, false },
    [BACKEND_EP_DRIVE_UPDATE]   = { "PATCH", "/drives/", { 204, 200, 0 }, true },
    [BACKEND_EP_SNAPSHOT]       = { "PUT", "/snapshot/create", { 204, 200, 0 }, false },
    [BACKEND_EP_RESTORE]        = { "PUT", "/snapshot/load", { 204, 200, 0 }, false },
};

const struct backend_ops backend_firecracker = {
    .name = "firecracker",
    .hypervisor = "firecracker",
    .short_name = "firecracker",
    .pidfile = "fc.pid",
    .default_binary = "firecracker",
    .endpoints = fc_endpoints,
};
