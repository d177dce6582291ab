#include "engine/err.h"

#include <stdarg.h>
#include <stdio.h>

int eng_errf(char *buf, size_t n, int err, const char *fmt, ...)
{
    if (buf && n) {
        va_list ap;
        va_start(ap, fmt);
        /* A message longer than the buffer is cut, never overflowed:
         * error text is for humans and is bounded by design. */
        vsnprintf(buf, n, fmt, ap);
        va_end(ap);
    }
    return err;
}
