/* backends/safefile.h: file operations that hold up in directories other
 * users may write to: private directories, atomic replacement (temp file,
 * fsync, rename), bounded reads and pidfiles, never through a symlink.
 * Used by the VM store and by VMM start and stop. */
#ifndef COCOON_BACKENDS_SAFEFILE_H
#define COCOON_BACKENDS_SAFEFILE_H

#include <stddef.h>
#include <sys/types.h>

/* Error contract: 0 or -errno with the human text in err (bounded, may be
 * NULL/0). */

/* Writes n random characters of A-Z2-7 (base32, from getrandom) to out,
 * no NUL: unguessable names for temp files and records.  0 or -errno (no
 * err text). */
int safefile_random_name(char *out, size_t n);

/* mkdir -p of the parents (0755), then the dir itself created 0700 (no
 * chmod race); refuses a path that exists as a symlink or belongs to
 * another uid, and tightens a pre-existing dir to 0700. */
int safefile_mkdir_private(const char *path, char *err, size_t errlen);

/* Atomically replaces dirfd/name with len bytes of buf, mode 0600: a temp
 * file "<tmp_prefix><8 random chars>" created O_EXCL|O_NOFOLLOW, written,
 * fsynced and renamed over name, then the directory fsynced so the rename
 * survives a crash.  dir (borrowed) only names the directory in errors. */
int safefile_replace_at(int dirfd, const char *dir, const char *name, const char *tmp_prefix,
                        const char *buf, size_t len, char *err, size_t errlen);

/* Reads fd to EOF into *out (owned, free(); not NUL-terminated) and its
 * length into *out_len.  More than max bytes: -EFBIG.  path only names the
 * file in errors. */
int safefile_read_fd(int fd, const char *path, size_t max, char **out, size_t *out_len,
                     char *err, size_t errlen);

/* Opens a state file (a store, lock, pid or log file) that only this user
 * or root may have written: open(path, flags | O_NOFOLLOW | O_NONBLOCK |
 * O_CLOEXEC, mode), then refuses what is not a regular file (a FIFO would
 * hang every reader: -EINVAL "open <path>: not a regular file"), a file
 * owned by another uid, or one whose directory another user can write
 * (-EPERM "open <path>: owned by uid N, not this user or root",
 * "open <path>: directory writable by other users").  Returns the
 * descriptor, or -errno with err ("open <path>: <strerror>"). */
int safefile_open(const char *path, int flags, mode_t mode, char *err, size_t errlen);

/* Checks the API socket at path before it is connected to: it must be a
 * socket itself (never followed through a symlink), owned by this user or
 * root, in a directory no other user can write.  0, or -errno with err:
 * "socket <path>: <strerror>" (-ENOENT when there is none), "socket <path>:
 * a symlink, not a socket" or "...: not a socket" (-EINVAL), "socket
 * <path>: owned by uid N, not this user or root" or "socket <path>:
 * directory writable by other users" (-EPERM). */
int safefile_check_socket(const char *path, char *err, size_t errlen);

/* Pidfile "<pid>\n", mode 0600, created with O_EXCL|O_NOFOLLOW via a temp
 * file and rename inside the directory opened without following links. */
int safefile_pidfile_write(const char *path, pid_t pid, char *err, size_t errlen);
/* Reads a pidfile written by safefile_pidfile_write or by the VMM itself,
 * refusing a symlink or a non-regular file.  The reasons read
 * "open <path>: No such file or directory" and "parse PID from <path>:
 * empty file | NUL byte in file | file too large | invalid syntax \"x\" |
 * pid N out of range"; surrounding whitespace is ignored. */
int safefile_pidfile_read(const char *path, pid_t *pid, char *err, size_t errlen);

#endif
