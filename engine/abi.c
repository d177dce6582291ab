/* engine/abi.c: the caller's option and spec structs, read by the size
 * the caller was compiled with.  Every such struct starts with its size
 * and only ever grows at its end, so a caller compiled against an older
 * cocoon.h passes a prefix: the fields it holds are copied, the rest take
 * their default (zero).  A newer caller's bytes past what this library
 * knows must be zero (their default) or the call fails, rather than be
 * silently ignored. */
#include "engine/core.h"

#include <errno.h>
#include <string.h>

int eng_read_abi(void *dst, size_t known, const void *in)
{
    const unsigned char *p = in;
    size_t n;

    memset(dst, 0, known);
    memcpy(dst, &known, sizeof(known));
    if (!in)
        return 0;
    memcpy(&n, in, sizeof(n));
    if (n < sizeof(size_t))             /* 0: never initialised */
        return -EINVAL;
    for (size_t i = known; i < n; i++)
        if (p[i])
            return -E2BIG;
    memcpy((unsigned char *)dst + sizeof(n), p + sizeof(n), (n < known ? n : known) - sizeof(n));
    return 0;
}
