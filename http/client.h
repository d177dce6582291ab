/* http/client.h: one HTTP/1.1 client connection to one AF_UNIX socket,
 * driven by a loop of http/loop.h the caller owns.  It serializes requests and parses
 * responses with llhttp; it has no retry logic and no policy. */
#ifndef COCOON_HTTP_CLIENT_H
#define COCOON_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "http/loop.h"

#define HTTPC_MAX_HEADER_BYTES (16u * 1024u)        /* whole header block */
#define HTTPC_MAX_BODY_BYTES   (8u * 1024u * 1024u)
/* The longest message this layer makes, made on the stack when a request
 * completes: it joins a socket path (at most 107 bytes), the parser's
 * own text (under 150) and an errno text, well under 400 bytes.  Not
 * BASE_ERRSTR_MAX (1.5 KiB, room for a CH error body). */
#define HTTPC_ERRSTR_MAX 512

typedef struct httpc_conn httpc_conn;

/* Everything here is borrowed and valid only during the callback. */
typedef struct httpc_response {
    int err;              /* 0 or -errno: -ETIMEDOUT, -ECONNRESET, -EPROTO,
                             -EMSGSIZE, -ECANCELED, -ECONNREFUSED, -ENOENT... */
    const char *errstr;   /* "" when err == 0, else e.g.
                             "connect(/run/x/api.sock): No such file or directory" */
    int status;           /* HTTP status; 0 when none was parsed */
    const char *body;     /* NUL-terminated (never NULL), body_len bytes */
    size_t body_len;
    bool written;         /* the whole request reached the kernel: a failed
                             single-shot call may have been executed by CH */
} httpc_response;

typedef void httpc_done_fn(httpc_conn *c, const httpc_response *r, void *priv);

/* sock_path is copied.  No I/O happens here; the socket is connected on the
 * first send and reconnected by a later send after the peer closed it or an
 * error closed it.  Returns NULL with errno set (ENOMEM, ENAMETOOLONG when
 * the path does not fit sun_path). */
httpc_conn *httpc_conn_new(lp_loop *loop, const char *sock_path);

/* Frees c.  A pending request completes with -ECANCELED (its callback runs
 * inside this call).  Safe inside c's own callback: the free is deferred
 * until the callback returns.  NULL is a no-op. */
void httpc_conn_free(httpc_conn *c);

/* Sends one request: method "GET"/"PUT"/"PATCH", path like
 * "/api/v1/vm.info", body (may be NULL; copied) of body_len bytes.
 * timeout_ms covers connect to last body byte (0 means 30000).
 * Returns 0 and calls cb exactly once, never before this call returns;
 * or returns -EBUSY (a request is in flight), -EINVAL or -ENOMEM and never
 * calls cb. */
int httpc_conn_send(httpc_conn *c, const char *method, const char *path,
                    const char *body, size_t body_len, unsigned timeout_ms,
                    httpc_done_fn *cb, void *priv);

/* The process that must be the peer of every connection c makes from now
 * on; 0 (the default) accepts any.  After each connect completes, the
 * listener's pid is read from the kernel (SO_PEERCRED, taken when the
 * listener called listen()); when it is not pid, or cannot be read, the
 * connection is closed before a byte is sent and the request fails:
 * -ESRCH "connect(<path>): peer is pid <n>, not the expected pid <pid>",
 * or the failed getsockopt's -errno with "connect(<path>): SO_PEERCRED:
 * <reason>".  Such a failure never has .written set.  Changing pid closes
 * an idle open connection, which was checked (if at all) for another
 * process; a request in flight keeps its connection. */
void httpc_conn_expect_peer(httpc_conn *c, pid_t pid);

/* True while a request is in flight. */
bool httpc_conn_busy(const httpc_conn *c);

#endif
