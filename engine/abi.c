/* engine/abi.c: the caller's option and spec structs, read by the size
 * the caller was compiled with.  Every such struct starts with its size;
 * a field the caller's struct does not hold (it was compiled against an
 * older cocoon.h) takes its default, and a newer caller's fields that
 * this library does not know must be zero (their default) or the call
 * fails, rather than be silently ignored. */
#include "engine/core.h"

#include <errno.h>
#include <string.h>

/* Whether a caller's struct of n bytes holds all of field. */
#define ABI_HAS(type, n, field) (offsetof(type, field) + sizeof(((type *)0)->field) <= (n))
#define ABI_GET(dst, src, n, type, field)                                         \
    do {                                                                          \
        if (ABI_HAS(type, n, field))                                              \
            (dst)->field = (src)->field;                                          \
    } while (0)

/* The caller's size: 0 (never initialised) and sizes that do not even
 * hold the size are -EINVAL; bytes past what this library knows must be
 * zero (-E2BIG). */
static int abi_size(const void *src, size_t known, size_t *n)
{
    const unsigned char *p = src;

    memcpy(n, src, sizeof(*n));
    if (*n < sizeof(size_t))
        return -EINVAL;
    for (size_t i = known; i < *n; i++)
        if (p[i])
            return -E2BIG;
    return 0;
}

int eng_read_options(cocoon_options *o, const cocoon_options *in)
{
    size_t n;
    int rc;

    memset(o, 0, sizeof(*o));
    o->size = sizeof(*o);
    if (!in)
        return 0;
    if ((rc = abi_size(in, sizeof(*in), &n)))
        return rc;
    ABI_GET(o, in, n, cocoon_options, root_dir);
    ABI_GET(o, in, n, cocoon_options, timeout_ms);
    ABI_GET(o, in, n, cocoon_options, max_inflight_vms);
    ABI_GET(o, in, n, cocoon_options, ch_binary);
    ABI_GET(o, in, n, cocoon_options, socket_check);
    ABI_GET(o, in, n, cocoon_options, detach_wait_ms);
    return 0;
}

int eng_read_fs_spec(cocoon_fs_spec *s, const cocoon_fs_spec *in)
{
    size_t n;
    int rc;

    memset(s, 0, sizeof(*s));
    s->size = sizeof(*s);
    if ((rc = abi_size(in, sizeof(*in), &n)))
        return rc;
    ABI_GET(s, in, n, cocoon_fs_spec, socket);
    ABI_GET(s, in, n, cocoon_fs_spec, tag);
    ABI_GET(s, in, n, cocoon_fs_spec, num_queues);
    ABI_GET(s, in, n, cocoon_fs_spec, queue_size);
    ABI_GET(s, in, n, cocoon_fs_spec, socket_check);
    return 0;
}

int eng_read_vfio_spec(cocoon_vfio_spec *s, const cocoon_vfio_spec *in)
{
    size_t n;
    int rc;

    memset(s, 0, sizeof(*s));
    s->size = sizeof(*s);
    if ((rc = abi_size(in, sizeof(*in), &n)))
        return rc;
    ABI_GET(s, in, n, cocoon_vfio_spec, pci);
    ABI_GET(s, in, n, cocoon_vfio_spec, id);
    return 0;
}

int eng_read_vm_opts(cocoon_vm_opts *o, const cocoon_vm_opts *in)
{
    size_t n;
    int rc;

    memset(o, 0, sizeof(*o));
    o->size = sizeof(*o);
    if (!in)
        return 0;
    if ((rc = abi_size(in, sizeof(*in), &n)))
        return rc;
    ABI_GET(o, in, n, cocoon_vm_opts, binary);
    ABI_GET(o, in, n, cocoon_vm_opts, call_ms);
    ABI_GET(o, in, n, cocoon_vm_opts, graceful_ms);
    ABI_GET(o, in, n, cocoon_vm_opts, term_ms);
    ABI_GET(o, in, n, cocoon_vm_opts, kill_ms);
    ABI_GET(o, in, n, cocoon_vm_opts, force);
    ABI_GET(o, in, n, cocoon_vm_opts, dir);
    ABI_GET(o, in, n, cocoon_vm_opts, snapshot_ms);
    return 0;
}
