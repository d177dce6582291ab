/* backends/spec.h: validation and normalization of device specs (SPEC §3,
 * §4).  Pure functions: no I/O, no VM lookup. */
#ifndef COCOON_BACKENDS_SPEC_H
#define COCOON_BACKENDS_SPEC_H

#include <stddef.h>
#include "engine/cocoon.h"

/* "/sys/bus/pci/devices/dddd:bb:dd.f" plus NUL */
#define SPEC_PCI_PATH_MAX 64

/* Checks spec in SPEC §3 order and applies defaults (num_queues 1,
 * queue_size 1024) in place.  Strings stay borrowed.  Returns 0 or -EINVAL
 * with the exact SPEC text in err. */
int spec_fs_normalize(cocoon_fs_spec *spec, char *err, size_t errlen);

/* Checks the id rule, then normalizes spec->pci to the canonical sysfs path
 * written to out (SPEC_PCI_PATH_MAX bytes).  Returns 0 or -EINVAL with the
 * exact SPEC text in err.  Does not check that the path exists. */
int spec_vfio_normalize(const cocoon_vfio_spec *spec, char out[SPEC_PCI_PATH_MAX],
                        char *err, size_t errlen);

/* Path normalization alone (SPEC §4 rules after "pci is required"). */
int spec_pci_path(const char *pci, char out[SPEC_PCI_PATH_MAX], char *err, size_t errlen);

/* The host BDF of a device path: the part after "/sys/bus/pci/devices/",
 * or NULL when path lacks that prefix.  Borrowed from path. */
const char *spec_bdf_from_path(const char *path);

#endif
