/* engine/err.h: the one printf-checked setter for bounded error strings.
 * Every module writes its human-readable detail through eng_errf so that
 * messages are formatted, truncated-with-NUL and checked in one place. */
#ifndef COCOON_ENGINE_ERR_H
#define COCOON_ENGINE_ERR_H

#include <stddef.h>

/* Size of every error buffer in the project: long enough for an endpoint,
 * a status and a 1024-byte CH error body. */
#define ENG_ERRSTR_MAX 1536

/* Format into buf (size n, may be NULL/0: then only returns err).
 * Returns err unchanged so callers can `return eng_errf(...)`. */
int eng_errf(char *buf, size_t n, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
