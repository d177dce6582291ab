/* backends/launch.h: starting and stopping the VMM process of a recorded VM
 * (SPEC §9): argv building for Cloud Hypervisor and Firecracker, the
 * `vm debug` rendering, spawning in its own session with a pidfile, and a
 * bounded shutdown that falls back to signals.  Never prints. */
#ifndef COCOON_BACKENDS_LAUNCH_H
#define COCOON_BACKENDS_LAUNCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "backends/store.h"

#define LAUNCH_DEFAULT_CH "cloud-hypervisor"
#define LAUNCH_DEFAULT_FC "firecracker"

/* Memory size in MiB as CH takes it: bytes rounded up to whole MiB, at
 * least 1. */
uint64_t launch_memory_mib(uint64_t bytes);

/* Parses "512M", "2G", "1024K", "1T", "536870912" (bytes) into bytes.
 * Returns 0 or -EINVAL. */
int launch_parse_size(const char *s, uint64_t *out);

/* The binary to use: flag if non-empty, else getenv(env) if non-empty, else
 * dflt.  Borrowed. */
const char *launch_pick_binary(const char *flag, const char *env, const char *dflt);

/* Absolute path of name: realpath() when it contains '/', else the first
 * executable match in $PATH.  Owned (free()), or NULL with errno set. */
char *launch_which(const char *name);

/* CH argv for vm (run_dir set):
 *   <binary> --api-socket path=<run_dir>/api.sock --cpus boot=N
 *   --memory size=<MiB>M[,shared=on] [--kernel K] [--initramfs I]
 *   [--cmdline C] [--disk path=D]... --serial tty --console off
 * NULL-terminated, owned: free with launch_argv_free. */
int launch_ch_argv(const store_vm *vm, const char *binary, char ***argv_out,
                   char *err, size_t errlen);
/* Firecracker argv: <binary> --api-sock <run_dir>/api.sock */
int launch_fc_argv(const store_vm *vm, const char *binary, char ***argv_out,
                   char *err, size_t errlen);
void launch_argv_free(char **argv);

/* The `vm debug` text: argv[0] on the first line, then one argument group
 * (a flag and its values) per line indented by two spaces; every line but
 * the last ends in " \".  Ends with a newline.  Owned (free()). */
char *launch_debug_format(char *const *argv);

/* Replaces the record with vm->id in vm's backend db by a copy of *vm
 * (updated_at refreshed in both). */
int launch_record_save(const char *root, store_vm *vm, char *err, size_t errlen);

/* Starts vm's VMM (binary as given, resolved to an absolute path) and
 * records the outcome in the store: state running, binary, started_at; on
 * failure the child is killed, the pidfile removed and the record set to
 * state error with the reason and the tail of the VMM log in err.  vm is
 * updated in place.  timeout_ms bounds each API request; the API must come
 * up within 10 s.  Returns 0 (and *pid_out when non-NULL) or -errno. */
int launch_start(const char *root, store_vm *vm, const char *binary,
                 unsigned timeout_ms, pid_t *pid_out, char *err, size_t errlen);

/* Bounds of a stop, in ms; zero fields take the defaults (2000 per
 * shutdown request, 5000 for a graceful exit, 3000 after SIGTERM, 2000
 * after SIGKILL). */
typedef struct launch_stop_bounds {
    unsigned call_ms, graceful_ms, term_ms, kill_ms;
} launch_stop_bounds;

/* Stops vm: when the running gate passes, one vm.shutdown and one
 * vmm.shutdown (CH) or one SendCtrlAltDel (Firecracker), then waits, then
 * SIGTERM, then SIGKILL, each bounded.  A pid that fails the gate is never
 * signalled.  The record ends stopped and the pidfile is removed.
 * default_binary is the gate's expectation when the record names none.
 * bounds may be NULL.  Returns 0, or -ETIMEDOUT when even SIGKILL did not
 * end the process (record untouched then), or another -errno. */
int launch_stop(const char *root, store_vm *vm, const char *default_binary,
                const launch_stop_bounds *bounds, char *err, size_t errlen);

#endif
