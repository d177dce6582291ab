/* backends/launch.h: what starting a VMM takes, without any API call:
 * argv building for Cloud Hypervisor and Firecracker, Firecracker's
 * pre-boot bodies, the `vm debug` rendering, spawning in its own session,
 * the log tail and the process-gone check.  The engine's lifecycle
 * operations drive these.  Never prints. */
#ifndef COCOON_BACKENDS_LAUNCH_H
#define COCOON_BACKENDS_LAUNCH_H

#include <stdbool.h>
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
/* Cloud Hypervisor for a restore: the API socket only, no payload, so the
 * VMM has no VM until vm.restore gives it one. */
int launch_ch_restore_argv(const store_vm *vm, const char *binary, char ***argv_out,
                           char *err, size_t errlen);
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

/* Bodies of Firecracker's pre-boot calls for vm: machine-config (vCPUs,
 * MiB), boot-source (kernel, initrd, cmdline) and one drive.  Owned
 * (free()), or NULL when out of memory. */
char *launch_fc_machine_config(const store_vm *vm);
char *launch_fc_boot_source(const store_vm *vm);
char *launch_fc_drive(const char *drive_id, const char *path, bool root);
/* The id of drive i: the first is the root device. */
void launch_fc_drive_id(size_t i, char *out, size_t n);

/* A Firecracker snapshot is two files in its dir: the microVM state and
 * the guest memory. */
#define LAUNCH_FC_STATE_FILE "vmstate"
#define LAUNCH_FC_MEMORY_FILE "memory"
/* Bodies of PUT /snapshot/create (a full snapshot into dir), PUT
 * /snapshot/load (from dir, memory from a file, left paused) and PATCH
 * /drives/ID (a new backing file).  Owned, or NULL when out of memory. */
char *launch_fc_snapshot_create(const char *dir);
char *launch_fc_snapshot_load(const char *dir);
char *launch_fc_drive_patch(const char *drive_id, const char *path);

/* Runs argv (argv[0] absolute) in its own session with stdin from
 * /dev/null and stdout and stderr appended to log_path, and reports
 * whether the exec happened.  0 with *pid_out, or -errno with err. */
int launch_spawn(char *const *argv, const char *log_path, pid_t *pid_out,
                 char *err, size_t errlen);

/* The last bytes of the VMM log at path as one printable line in out
 * ("" when there is none). */
void launch_log_tail(const char *path, char *out, size_t outlen);

/* True when pid is gone: reaped as our child (a child of ours is gone only
 * then), no such process, or it no longer runs binary serving api_sock
 * (exited and reused, or a zombie). */
bool launch_proc_gone(pid_t pid, const char *binary, const char *api_sock);

#endif
