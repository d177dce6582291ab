/* engine/call.c: the retry rule every API call of the engine follows:
 * whether a failed call goes again, after how long, and how a VMM's error
 * reply reads. */
#include "engine/call.h"
#include "http/base.h"
#include "json/ch.h"

#include <errno.h>

/* A failure worth repeating a call after: a connection-level error
 * (err != 0) or, when err == 0, a 5xx or 429 status. */
static bool eng_retry_worthy(int err, int status)
{
    if (err) {
        switch (err) {
        case -ECONNREFUSED: case -ECONNRESET: case -ECONNABORTED: case -ENOENT:
        case -EPIPE: case -EAGAIN: case -ENOTCONN:
            return true;
        default:
            return false;
        }
    }
    return status >= 500 || status == 429;
}

bool eng_retry_again(bool may_retry, int attempts, int err, int status, bool ok)
{
    return may_retry && !ok && attempts < ENG_CALL_ATTEMPTS &&
           eng_retry_worthy(err, err ? 0 : status);
}

unsigned eng_backoff_ms(int attempt)
{
    /* attempt 1 failed -> 100 ms, 2 -> 200 ms, 3 -> 400 ms. */
    return 100u << (attempt > 0 ? attempt - 1 : 0);
}

void eng_status_errf(char *err, size_t errlen, const char *prefix, const char *method,
                     const char *path, int status, const char *body, size_t body_len)
{
    char rendered[1100];

    json_error_render(body, body_len, rendered, sizeof(rendered));
    base_errf(err, errlen, -EREMOTEIO, "%s%s http://localhost%s \xe2\x86\x92 %d: %s",
              prefix, method, path, status, rendered);
}
