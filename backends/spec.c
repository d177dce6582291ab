#include "backends/spec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "http/base.h"

#define PCI_PREFIX "/sys/bus/pci/devices/"
#define PCI_PREFIX_LEN (sizeof(PCI_PREFIX) - 1)
/* sizeof(((struct sockaddr_un *)0)->sun_path) on Linux; a path needs room
 * for its NUL there. */
#define SUN_PATH_MAX 108

/* Room for a quoted value inside an error message; longer values are cut
 * (error text is bounded by design). */
#define QUOTE_MAX 512

/* Character classes are spelled out instead of using <ctype.h>: the
 * patterns are ASCII and must not change with the locale. */
static bool is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_hex_lower(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static char to_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* ^[A-Za-z0-9][A-Za-z0-9<extra>]{0,max-1}$: tags take "_-" up to 36, ids
 * "_.-" up to 64. */
static bool word_valid(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);

    if (n < 1 || n > max || !is_alnum(s[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!is_alnum(s[i]) && !strchr(extra, s[i]))
            return false;
    return true;
}

/* Matches ^[0-9a-f]{n}$ over s[0..n). */
static bool hex_run(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_hex_lower(s[i]))
            return false;
    return true;
}

/* ^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$ over exactly len bytes. */
static bool bdf_short(const char *s, size_t len)
{
    return len == 7 && hex_run(s, 2) && s[2] == ':' && hex_run(s + 3, 2) &&
           s[5] == '.' && s[6] >= '0' && s[6] <= '7';
}

/* ^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$ over exactly len bytes. */
static bool bdf_full(const char *s, size_t len)
{
    return len == 12 && hex_run(s, 4) && s[4] == ':' && bdf_short(s + 5, 7);
}

int spec_fs_normalize(spec_fs *spec, char *err, size_t errlen)
{
    char q[QUOTE_MAX];
    size_t socklen;

    if (!spec)
        return base_errf(err, errlen, -EINVAL, "socket is required");
    if (!spec->socket || !*spec->socket)
        return base_errf(err, errlen, -EINVAL, "socket is required");
    if (spec->socket[0] != '/')
        return base_errf(err, errlen, -EINVAL, "socket must be absolute, got %s",
                         base_quote(q, sizeof(q), spec->socket));
    if (!spec->tag || !*spec->tag)
        return base_errf(err, errlen, -EINVAL, "tag is required");
    if (!word_valid(spec->tag, 36, "_-"))
        return base_errf(err, errlen, -EINVAL,
                         "tag %s invalid: must match [A-Za-z0-9][A-Za-z0-9_-]{0,35}",
                         base_quote(q, sizeof(q), spec->tag));
    if (spec->num_queues < 0)
        return base_errf(err, errlen, -EINVAL, "num-queues must be non-negative, got %d",
                         spec->num_queues);
    if (spec->queue_size < 0)
        return base_errf(err, errlen, -EINVAL, "queue-size must be non-negative, got %d",
                         spec->queue_size);
    /* Checked before the defaults are applied so that a rejected spec is
     * left as the caller passed it. */
    socklen = strlen(spec->socket);
    if (socklen >= SUN_PATH_MAX)
        return base_errf(err, errlen, -EINVAL, "socket path too long (%zu bytes, max %d)",
                         socklen, SUN_PATH_MAX - 1);
    if (spec->num_queues == 0)
        spec->num_queues = 1;
    if (spec->queue_size == 0)
        spec->queue_size = 1024;
    return 0;
}

int spec_vfio_normalize(const spec_vfio *spec, char out[SPEC_PCI_PATH_MAX],
                        char *err, size_t errlen)
{
    char q[QUOTE_MAX];

    if (!spec || !spec->pci || !*spec->pci)
        return base_errf(err, errlen, -EINVAL, "pci is required");
    if (spec->id && *spec->id &&
        (strncmp(spec->id, "cocoon-", 7) == 0 || !word_valid(spec->id, 64, "_.-")))
        return base_errf(err, errlen, -EINVAL,
                         "id %s invalid: must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63} "
                         "and not start with cocoon-",
                         base_quote(q, sizeof(q), spec->id));
    return spec_pci_path(spec->pci, out, err, errlen);
}

/* Lexical cleaning of an absolute path, as Go's filepath.Clean does it:
 * repeated slashes collapse, "." goes, ".." removes the previous component
 * (and stays at "/" at the root), no trailing slash.  dst has room for
 * strlen(src) + 1 bytes; the result is never longer than the input. */
static void clean_abs(const char *src, char *dst)
{
    size_t o = 1;
    const char *p = src;

    dst[0] = '/';
    while (*p) {
        const char *seg;
        size_t n;

        while (*p == '/')
            p++;
        seg = p;
        while (*p && *p != '/')
            p++;
        n = (size_t)(p - seg);
        if (n == 0 || (n == 1 && seg[0] == '.'))
            continue;
        if (n == 2 && seg[0] == '.' && seg[1] == '.') {
            while (o > 1 && dst[o - 1] != '/')
                o--;
            if (o > 1)
                o--;
            continue;
        }
        if (o > 1)
            dst[o++] = '/';
        memmove(dst + o, seg, n);
        o += n;
    }
    dst[o] = '\0';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int spec_pci_path(const char *pci, char out[SPEC_PCI_PATH_MAX], char *err, size_t errlen)
{
    char q[QUOTE_MAX];
    char bdf[13];
    const char *start, *end;
    size_t len;

    if (!pci)
        return base_errf(err, errlen, -EINVAL, "empty pci path");
    start = pci;
    end = pci + strlen(pci);
    while (start < end && is_space(*start))
        start++;
    while (end > start && is_space(end[-1]))
        end--;
    len = (size_t)(end - start);
    if (len == 0)
        return base_errf(err, errlen, -EINVAL, "empty pci path");

    if (start[0] == '/') {
        char *path = malloc(len + 1);
        const char *rest;
        size_t rlen;

        if (!path)
            return base_errf(err, errlen, -ENOMEM, "pci path: out of memory");
        memcpy(path, start, len);
        path[len] = '\0';
        /* Cleaning in place is safe: the write position never passes the
         * read position. */
        clean_abs(path, path);
        if (strncmp(path, PCI_PREFIX, PCI_PREFIX_LEN) != 0 || path[PCI_PREFIX_LEN] == '\0') {
            free(path);
            return base_errf(err, errlen, -EINVAL,
                             "pci %s invalid: absolute path must be under /sys/bus/pci/devices/",
                             base_quote(q, sizeof(q), pci));
        }
        rest = path + PCI_PREFIX_LEN;
        rlen = strlen(rest);
        if (rlen != 12) {
            free(path);
            return base_errf(err, errlen, -EINVAL,
                             "pci %s invalid: sysfs BDF suffix must match 0000:xx:yy.z",
                             base_quote(q, sizeof(q), pci));
        }
        for (size_t i = 0; i < 12; i++)
            bdf[i] = to_lower(rest[i]);
        free(path);
        if (!bdf_full(bdf, 12))
            return base_errf(err, errlen, -EINVAL,
                             "pci %s invalid: sysfs BDF suffix must match 0000:xx:yy.z",
                             base_quote(q, sizeof(q), pci));
        bdf[12] = '\0';
    } else {
        if (len == 12 || len == 7) {
            for (size_t i = 0; i < len; i++)
                bdf[i] = to_lower(start[i]);
        }
        if (len == 12 && bdf_full(bdf, 12)) {
            bdf[12] = '\0';
        } else if (len == 7 && bdf_short(bdf, 7)) {
            memmove(bdf + 5, bdf, 7);
            memcpy(bdf, "0000:", 5);
            bdf[12] = '\0';
        } else {
            return base_errf(err, errlen, -EINVAL,
                             "pci %s invalid: expect BDF (01:00.0 / 0000:01:00.0) or sysfs path",
                             base_quote(q, sizeof(q), pci));
        }
    }
    if (out) {
        memcpy(out, PCI_PREFIX, PCI_PREFIX_LEN);
        memcpy(out + PCI_PREFIX_LEN, bdf, 13);
    }
    return 0;
}

const char *spec_bdf_from_path(const char *path)
{
    /* The bare prefix names no device: an empty BDF is omitted like a
     * missing one. */
    if (!path || strncmp(path, PCI_PREFIX, PCI_PREFIX_LEN) != 0 || path[PCI_PREFIX_LEN] == '\0')
        return NULL;
    return path + PCI_PREFIX_LEN;
}
