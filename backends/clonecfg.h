/* backends/clonecfg.h: the config.json of a Cloud Hypervisor snapshot,
 * rewritten for a clone, a new VM restored from it.  Bytes in, bytes out,
 * no I/O: the caller copies the files listed and starts the VMM.
 *
 * The clone must share no writable file with the source VM, so:
 *  - serial and console files or sockets move into the clone's run dir
 *    (serial.log / serial.sock, console.log / console.sock), as does the
 *    vsock socket (vsock.sock);
 *  - every disk that is not readonly, and every pmem file that does not
 *    discard its writes, points at a copy in the clone's disk dir, named
 *    "disk<i>-<basename>" / "pmem<i>-<basename>"; the caller makes the
 *    copies;
 *  - runtime-attached devices (the "fs" and "devices" lists) are dropped:
 *    a virtiofsd socket serves one client and a VFIO device one VM.
 * Every other field is written back as read, numbers digit for digit, so
 * memory.shared, memory.hugepages and settings cocoon does not know
 * survive. */
#ifndef COCOON_BACKENDS_CLONECFG_H
#define COCOON_BACKENDS_CLONECFG_H

#include <stddef.h>

typedef struct clonecfg_copy {
    char *src, *dst;                  /* owned */
} clonecfg_copy;

/* Every pointer owned; free with clonecfg_result_fini. */
typedef struct clonecfg_result {
    char *json;                       /* NUL-terminated */
    size_t len;
    clonecfg_copy *copies;            /* files to copy before the restore */
    size_t n_copies;
    size_t n_dropped;                 /* fs and devices entries left out */
} clonecfg_result;

/* Rewrites len bytes of buf (need not be NUL-terminated).  run_dir and
 * disk_dir are absolute directory paths (borrowed).  0, or -EBADMSG for a
 * document that is not a JSON object (NUL bytes, comments, nesting deeper
 * than 32, a disk path that is not a string), -ENAMETOOLONG for a path
 * over PATH_MAX, -EINVAL for bad dirs, -ENOMEM; the reason in err.  On
 * failure *out is empty. */
int clonecfg_rewrite(const char *buf, size_t len, const char *run_dir, const char *disk_dir,
                     clonecfg_result *out, char *err, size_t errlen);
/* clonecfg_result_fini(NULL) is a no-op; leaves *r empty. */
void clonecfg_result_fini(clonecfg_result *r);

#endif
