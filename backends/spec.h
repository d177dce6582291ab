/* backends/spec.h: validation and normalization of device specs: a
 * vhost-user-fs share and a VFIO PCI device.  Pure functions: no I/O, no VM
 * lookup; every check runs before any VM is looked up. */
#ifndef COCOON_BACKENDS_SPEC_H
#define COCOON_BACKENDS_SPEC_H

#include <stddef.h>

/* An fs share; strings borrowed. */
typedef struct spec_fs {
    const char *socket;         /* absolute path of virtiofsd's socket */
    const char *tag;            /* guest mount tag */
    int num_queues;             /* 0: 1 */
    int queue_size;             /* 0: 1024 */
} spec_fs;

/* A VFIO device; strings borrowed. */
typedef struct spec_vfio {
    const char *pci;            /* BDF (01:00.0, 0000:01:00.0) or sysfs path */
    const char *id;             /* optional device id; NULL or "" */
} spec_vfio;

/* "/sys/bus/pci/devices/dddd:bb:dd.f" plus NUL */
#define SPEC_PCI_PATH_MAX 64

/* Checks spec, first failure wins, in this order: socket empty ("socket is
 * required") or not absolute ("socket must be absolute, got %q"); tag
 * empty ("tag is required") or not matching [A-Za-z0-9][A-Za-z0-9_-]{0,35}
 * ("tag %q invalid: must match ..."); a negative num_queues or queue_size
 * ("num-queues must be non-negative, got %d"); a socket path of 108 bytes
 * or more, which sun_path cannot hold ("socket path too long (N bytes,
 * max 107)").  Then applies the defaults for 0 (num_queues 1, queue_size
 * 1024) in place.  Strings stay borrowed.  Returns 0 or -EINVAL with the
 * text in err (%q: the value in double quotes, `"` and `\` escaped). */
int spec_fs_normalize(spec_fs *spec, char *err, size_t errlen);

/* pci empty (before trimming): "pci is required".  A non-empty id must
 * match [A-Za-z0-9][A-Za-z0-9_.-]{0,63} and not start with "cocoon-" (the
 * prefix of the ids cocoon derives), else "id %q invalid: ...".  Then
 * spec->pci is normalized by spec_pci_path into out (SPEC_PCI_PATH_MAX
 * bytes).  Returns 0 or -EINVAL with the text in err.  Does not check that
 * the path exists. */
int spec_vfio_normalize(const spec_vfio *spec, char out[SPEC_PCI_PATH_MAX],
                        char *err, size_t errlen);

/* Normalizes a trimmed PCI reference to "/sys/bus/pci/devices/dddd:bb:dd.f",
 * lower case, no trailing slash: the one form CH's raw string comparison
 * of device paths can detect a duplicate by.  Accepted: a full BDF
 * (0000:01:00.0), a short one (01:00.0, domain 0000 added) or an absolute
 * path that, once "//", "." and ".." are resolved textually, is a full BDF
 * directly under /sys/bus/pci/devices/.  Errors: "empty pci path", "pci %q
 * invalid: absolute path must be under /sys/bus/pci/devices/", "pci %q
 * invalid: sysfs BDF suffix must match 0000:xx:yy.z", "pci %q invalid:
 * expect BDF (01:00.0 / 0000:01:00.0) or sysfs path"; %q quotes the input
 * as given. */
int spec_pci_path(const char *pci, char out[SPEC_PCI_PATH_MAX], char *err, size_t errlen);

/* The host BDF of a device path: the part after "/sys/bus/pci/devices/",
 * or NULL when path lacks that prefix.  Borrowed from path. */
const char *spec_bdf_from_path(const char *path);

#endif
