/* engine/engine_int.h: helpers shared by engine/engine.c and
 * engine/call.c; not installed, not part of the public API. */
#ifndef COCOON_ENGINE_INT_H
#define COCOON_ENGINE_INT_H

#include <stdbool.h>
#include <stddef.h>

/* A failure a retryable endpoint may repeat after: a connection-level error
 * (err != 0) or, when err == 0, a 5xx or 429 status. */
bool eng_retry_worthy(int err, int status);

/* Backoff before the next attempt after `attempt` failed ones: 100, 200,
 * 400 ms. */
unsigned eng_backoff_ms(int attempt);

/* "<prefix><METHOD> http://localhost<path> → <code>: <rendered body>" into
 * err, the body rendered by json_error_render. */
void eng_status_errf(char *err, size_t errlen, const char *prefix, const char *method,
                     const char *path, int status, const char *body, size_t body_len);

#endif
