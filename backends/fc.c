/* backends/fc.c: the Firecracker backend.  Firecracker has no virtio-fs and
 * no PCI hot-plug, so every runtime-attach hook is NULL; only its lifecycle
 * calls are described. */
#include "backends/backend.h"

static const backend_call fc_calls[BACKEND_CALL_COUNT] = {
    [BACKEND_CALL_MACHINE_CONFIG] = { "PUT", "/machine-config", NULL, { 204, 200, 0 } },
    [BACKEND_CALL_BOOT_SOURCE]    = { "PUT", "/boot-source", NULL, { 204, 200, 0 } },
    [BACKEND_CALL_DRIVE]          = { "PUT", "/drives/", NULL, { 204, 200, 0 } },
    [BACKEND_CALL_NET_IFACE]      = { "PUT", "/network-interfaces/", NULL, { 204, 200, 0 } },
    [BACKEND_CALL_INSTANCE_START] = { "PUT", "/actions",
                                      "{\"action_type\":\"InstanceStart\"}", { 204, 200, 0 } },
    [BACKEND_CALL_PATCH_VM]       = { "PATCH", "/vm", NULL, { 204, 200, 0 } },
};

const struct backend_ops backend_firecracker = {
    .name = "firecracker",
    .hypervisor = "firecracker",
    .short_name = "firecracker",
    .pidfile = "fc.pid",
    .default_binary = "firecracker",
    .calls = fc_calls,
};
