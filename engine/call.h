/* engine/call.h: the retry rule every API call of the engine follows, and
 * one raw call to a VMM socket under it.  Whether an endpoint may be
 * repeated is its backend's endpoint table's say; when and how often is
 * decided here and nowhere else. */
#ifndef COCOON_ENGINE_CALL_H
#define COCOON_ENGINE_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include "http/loop.h"

/* Attempts a repeatable call gets in all. */
#define ENG_CALL_ATTEMPTS 4

/* The one retry rule: a call that may be repeated (may_retry, from its
 * endpoint's row, or a read that asks a fresh question), has had fewer
 * than ENG_CALL_ATTEMPTS attempts, did not succeed (ok false) and failed
 * in a way worth repeating goes again after eng_backoff_ms(attempts). */
bool eng_retry_again(bool may_retry, int attempts, int err, int status, bool ok);

/* Backoff before the next attempt after `attempt` failed ones: 100, 200,
 * 400 ms. */
unsigned eng_backoff_ms(int attempt);

/* "<prefix><METHOD> http://localhost<path> → <code>: <rendered body>" into
 * err, the body rendered by json_error_render. */
void eng_status_errf(char *err, size_t errlen, const char *prefix, const char *method,
                     const char *path, int status, const char *body, size_t body_len);

/* Borrowed, valid only during the callback. */
typedef struct eng_call_result {
    int err;                  /* 0 when status is one of the success codes
                                 the caller passed, else -errno
                                 (-EREMOTEIO for an unexpected status) */
    const char *errstr;       /* "<METHOD> http://localhost<path> → <code>: <body>" etc. */
    int status;
    const char *body;         /* NUL-terminated, never NULL */
    size_t body_len;
} eng_call_result;

typedef void eng_call_fn(const eng_call_result *r, void *priv);

/* True when a backend's endpoint table says repeating (method, path) is
 * harmless (Firecracker's pre-boot PUTs, CH's vmm.ping).  A path no table
 * lists is single-shot. */
bool eng_call_retryable(const char *method, const char *path);

/* Asynchronous call on the caller's loop.  ok_codes: zero-terminated list of
 * success statuses (NULL: 200 and 204).  Retryable endpoints get up to 4
 * attempts with 100/200/400 ms backoff on connection errors, 5xx and 429.
 * Returns 0 and calls cb exactly once (never inside this call), or -errno. */
int eng_call(lp_loop *loop, const char *sock_path, const char *method,
             const char *path, const char *body, unsigned timeout_ms,
             const int *ok_codes, eng_call_fn *cb, void *priv);

/* Blocking form on a private loop, for the CLI.  *body_out (may be NULL) is
 * owned (free()).  Returns r->err with errstr copied to err. */
int eng_call_sync(const char *sock_path, const char *method, const char *path,
                  const char *body, unsigned timeout_ms, const int *ok_codes,
                  int *status, char **body_out, char *err, size_t errlen);

#endif
