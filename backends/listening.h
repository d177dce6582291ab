/* backends/listening.h: whether a listening AF_UNIX stream socket is
 * bound at a path, asked of the kernel without connecting to it.
 *
 * The question is a connect() from a socket that is connected already.
 * The kernel first resolves the path, finds the socket bound to that file
 * and checks that it listens with room in its backlog; only then does it
 * look at the asking socket, and refuse it with EISCONN.  So EISCONN means
 * "a stream socket listens there", and nothing reaches that listener: no
 * connection is queued, it is not woken, and virtiofsd's one client slot
 * stays free.  The answer is for the file the path names at that moment,
 * resolved as Cloud Hypervisor's own connect resolves it, in any network
 * namespace, at one system call.  Linux only; knows nothing of VMMs. */
#ifndef COCOON_BACKENDS_LISTENING_H
#define COCOON_BACKENDS_LISTENING_H

/* A probe socket: one end of a connected pair, non-blocking (a listener
 * whose backlog is full answers EAGAIN rather than making the probe
 * wait), close-on-exec.  Before it is handed out it asks about a path
 * that cannot exist: a kernel that refused a connected socket before
 * looking the path up would say EISCONN for every path, and is not
 * believed (-EPROTO).  Returns the fd or -errno. */
int listening_probe_open(void);

/* Asks about path with the probe fd: 0 when a stream socket listens
 * there (its backlog may be full); -ECONNREFUSED when the file is no
 * socket or no socket listens on it (bound, shut down, or its owner
 * gone), -EPROTOTYPE when a socket of another type is bound there;
 * -ENOENT, -ENOTDIR, -EACCES, -ELOOP, -ENAMETOOLONG for the path itself;
 * any other -errno means no answer. */
int listening_probe(int fd, const char *path);

#endif
