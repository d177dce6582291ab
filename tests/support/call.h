/* tests/support/call.h: one raw call to a VMM socket, asynchronous or
 * blocking, under the engine's retry rule.  Test-only. */
#ifndef COCOON_TESTS_SUPPORT_CALL_H
#define COCOON_TESTS_SUPPORT_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include "http/loop.h"

/* Borrowed, valid only during the callback. */
typedef struct sup_call_result {
    int err;                  /* 0 when status is one of the success codes
                                 the caller passed, else -errno
                                 (-EREMOTEIO for an unexpected status) */
    const char *errstr;       /* "<METHOD> http://localhost<path> → <code>: <body>" etc. */
    int status;
    const char *body;         /* NUL-terminated, never NULL */
    size_t body_len;
} sup_call_result;

typedef void sup_call_fn(const sup_call_result *r, void *priv);

/* True when a backend's endpoint table says repeating (method, path) is
 * harmless (Firecracker's pre-boot PUTs, CH's vmm.ping).  A path no table
 * lists is single-shot. */
bool sup_call_retryable(const char *method, const char *path);

/* Asynchronous call on the caller's loop.  ok_codes: zero-terminated list of
 * success statuses (NULL: 200 and 204).  Retryable endpoints get up to 4
 * attempts with 100/200/400 ms backoff on connection errors, 5xx and 429.
 * Returns 0 and calls cb exactly once (never inside this call), or -errno. */
int sup_call(lp_loop *loop, const char *sock_path, const char *method,
             const char *path, const char *body, unsigned timeout_ms,
             const int *ok_codes, sup_call_fn *cb, void *priv);

/* Blocking form on a private loop.  *body_out (may be NULL) is
 * owned (free()).  Returns r->err with errstr copied to err. */
int sup_call_sync(const char *sock_path, const char *method, const char *path,
                  const char *body, unsigned timeout_ms, const int *ok_codes,
                  int *status, char **body_out, char *err, size_t errlen);

#endif
