/* backends/backend.c: finding a backend and reading its endpoint table. */
#include "backends/backend.h"

#include <string.h>

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

const backend_endpoint *backend_endpoint_of(const struct backend_ops *ops, backend_ep ep)
{
    const backend_endpoint *row;

    if (!ops || (unsigned)ep >= BACKEND_EP_COUNT)
        return NULL;
    row = &ops->endpoints[ep];
    return row->method ? row : NULL;
}

bool backend_endpoint_ok(const backend_endpoint *ep, int status)
{
    for (size_t i = 0; ep && i < sizeof(ep->ok) / sizeof(ep->ok[0]) && ep->ok[i]; i++)
        if (ep->ok[i] == status)
            return true;
    return false;
}
