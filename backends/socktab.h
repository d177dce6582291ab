/* backends/socktab.h: which AF_UNIX paths have a listening socket, read
 * from the kernel's socket table without connecting to any: a sock_diag
 * netlink dump, or /proc/net/unix where netlink is unavailable.  Linux
 * only; knows nothing of VMMs. */
#ifndef COCOON_BACKENDS_SOCKTAB_H
#define COCOON_BACKENDS_SOCKTAB_H

#include <stdbool.h>
#include <stddef.h>

/* A snapshot of listening paths: a hash set, owned, free with
 * socktab_free (NULL: no-op).  A set restricted to
 * wanted paths finds a listener however its path is spelled (a symlinked
 * directory, "..", "//"); a set of every listening path holds them exactly
 * as bound.  Abstract names never match. */
typedef struct socktab socktab;
/* From the kernel's socket table: a sock_diag dump (NETLINK_SOCK_DIAG) of
 * the listening AF_UNIX sockets, restricted to the n paths in want
 * (borrowed; copied) and matched by inode and device against stat() of
 * each; want NULL: every listening path, by name.  A dump can skip a
 * socket when the table changes while it is read, without the kernel
 * flagging it, so a wanted path that stat() found to be a socket and the
 * dump did not list is looked for in a second dump, which adds to the
 * first (want NULL: a second dump when the kernel flags the first as
 * inconsistent, NLM_F_DUMP_INTR).  When the netlink socket or the dump
 * fails (EPROTONOSUPPORT, EACCES in a sandbox, ...) the set is read from
 * /proc/net/unix instead.  NULL with errno set
 * when neither can be read, or on ENOMEM.  With want non-NULL and n == 0
 * nothing is read.  A snapshot is one moment's view: a caller that needs
 * a later answer takes a new one. */
socktab *socktab_listening(const char *const *want, size_t n);

/* The same snapshot taken in bounded steps, for a caller on an event
 * loop: each socktab_job_step stat()s at most a few hundred wanted paths
 * or reads at most a few parts of the dump, then returns AGAIN (step
 * again soon), WAIT (step again once socktab_job_fd is readable) or DONE.
 * The /proc/net/unix fallback, when netlink fails, is read within one
 * step.  NULL with errno set (ENOMEM). */
typedef struct socktab_job socktab_job;
#define SOCKTAB_JOB_DONE  0
#define SOCKTAB_JOB_AGAIN 1
#define SOCKTAB_JOB_WAIT  2
socktab_job *socktab_job_new(const char *const *want, size_t n);
int socktab_job_step(socktab_job *j);
/* The netlink socket (-1 before the dump is asked for). */
int socktab_job_fd(const socktab_job *j);
/* Once DONE: the snapshot (owned by the caller), or NULL with errno set as
 * socktab_listening sets it. */
socktab *socktab_job_take(socktab_job *j);
/* NULL: no-op; keeps errno. */
void socktab_job_free(socktab_job *j);
/* The /proc/net/unix reader alone (the listening flag 00010000): reads
 * file (NULL: "/proc/net/unix").  NULL with errno set when it cannot be
 * read or on ENOMEM. */
socktab *socktab_load(const char *file);
/* The same, restricted to the n paths in want (borrowed; copied): the set
 * then tells only which of them listen, and the scan skips every other
 * line cheaply.  A wanted path matches a listed one equal to it or to its
 * realpath().  With n == 0 nothing is read. */
socktab *socktab_load_wanted(const char *file, const char *const *want, size_t n);
/* Whether path listens in s; false for s NULL. */
bool socktab_has(const socktab *s, const char *path);
/* What the snapshot's own stat() of path said when it took one (a
 * wanted path of a sock_diag snapshot): 1 with *err 0 or the errno, and
 * *is_sock; 0 when s holds no such answer.  A caller checking a path the
 * snapshot was taken for need not stat it again. */
int socktab_stat(const socktab *s, const char *path, int *err, bool *is_sock);
/* Listening paths in the set. */
size_t socktab_count(const socktab *s);
void socktab_free(socktab *s);

#endif
