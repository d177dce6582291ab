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
 *   "vm <id> read pidfile: run_dir <dir> is not absolute: VM not running"
 * or, for a live VMM whose API socket exists but fails
 * safefile_check_socket (a symlink, another owner, a directory others can
 * write), that check's -errno with "vm <id>: <reason>".
 * The pidfile is <run_dir>/ch.pid for cloudhypervisor, fc.pid for
 * firecracker. */
int gate_check(const store_vm *vm, const char *default_binary, pid_t *pid,
               char *err, size_t errlen);

/* The cmdline test alone: argv[0] or the executable (/proc/<pid>/exe) is
 * exactly binary, and the argument after "--api-socket" is exactly
 * "path=<api_sock>" or "<api_sock>" (Cloud Hypervisor), or the one after
 * "--api-sock" is exactly "<api_sock>" (Firecracker).  No basename or
 * substring match: a process whose command line merely mentions the path
 * is not the VMM. */
bool gate_cmdline_matches(pid_t pid, const char *binary, const char *api_sock);

/* The VMM of vm that is alive, whatever its record and pidfile say: the
 * pid in the pidfile when it passes the cmdline test, else the process
 * that listens on <run_dir>/api.sock (its credentials in the kernel's
 * socket), else any process passing the cmdline test.  binary: the
 * expected VMM binary, absolute, when vm->binary is NULL.  The API socket
 * must pass safefile_check_socket when it exists.  0 with *pid; -ESRCH
 * "vm <id>: no VMM serves <sock>" when none is alive; -EBUSY "vm <id>: pid
 * N serves <sock> but is not its VMM <binary>" when something
 * else holds the socket; -EINVAL for a relative run_dir; the socket
 * check's errors. */
int gate_find(const store_vm *vm, const char *binary, pid_t *pid, char *err, size_t errlen);

/* "<run_dir>/api.sock", "<run_dir>/ch.pid" / "fc.pid": owned (free()). */
char *gate_api_sock(const store_vm *vm);
char *gate_pidfile(const store_vm *vm);

#endif
