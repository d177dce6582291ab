/* backends/gate.h: the PID-reuse-safe running gate.  A recorded VM may be
 * talked to only when its record says running, its pidfile names a live
 * process, and that process's cmdline is the VMM serving
 * <run_dir>/api.sock: a bare "is the pid alive" check is not enough, since
 * pids are reused. */
#ifndef COCOON_BACKENDS_GATE_H
#define COCOON_BACKENDS_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "backends/store.h"

/* default_binary: the VMM binary to expect when vm->binary is NULL
 * (e.g. "cloud-hypervisor").  Returns 0 (and *pid when pid != NULL) or
 * -EHOSTDOWN with one of these texts in err:
 *   "vm <id> is <state>: VM not running"
 *   "vm <id> read pidfile: <reason>: VM not running"
 *   "vm <id> pid <pid> not cloud-hypervisor: VM not running"
 * The pidfile is <run_dir>/ch.pid for cloudhypervisor, fc.pid for
 * firecracker. */
int gate_check(const store_vm *vm, const char *default_binary, pid_t *pid,
               char *err, size_t errlen);

/* The cmdline test alone: argv[0]'s basename equals basename(binary) and
 * some argument contains api_sock.  Reads /proc/<pid>/cmdline. */
bool gate_cmdline_matches(pid_t pid, const char *binary, const char *api_sock);

/* "<run_dir>/api.sock", "<run_dir>/ch.pid" / "fc.pid": owned (free()). */
char *gate_api_sock(const store_vm *vm);
char *gate_pidfile(const store_vm *vm);

#endif
