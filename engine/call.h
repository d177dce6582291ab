/* engine/call.h: the retry rule every API call of the engine follows.
 * Whether an endpoint may be repeated is its backend's endpoint table's
 * say; when and how often is decided here and nowhere else. */
#ifndef COCOON_ENGINE_CALL_H
#define COCOON_ENGINE_CALL_H

#include <stdbool.h>
#include <stddef.h>

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

#endif
