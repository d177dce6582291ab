/* http/base.h: the few helpers every layer shares (the bounded error
 * setter, %q quoting, a string hash, the monotonic clock).  Header-only and
 * dependent on libc alone.  It sits in http/, the bottom of the layers,
 * so that http/ and json/ (the other bottom folder) use it without
 * reaching up into a layer above them; it belongs to none of them. */
#ifndef COCOON_BASE_H
#define COCOON_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Size of every error buffer in the project: long enough for an endpoint,
 * a status and a 1024-byte CH error body. */
#define BASE_ERRSTR_MAX 1536

/* Formats into buf (size n; buf may be NULL or n 0, then only returns
 * err) and returns err unchanged, so callers `return base_errf(...)`.
 * A message longer than the buffer is cut, never overflowed: error text
 * is for humans and bounded by design. */
static inline int base_errf(char *buf, size_t n, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline int base_errf(char *buf, size_t n, int err, const char *fmt, ...)
{
    if (buf && n) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, n, fmt, ap);
        va_end(ap);
    }
    return err;
}

/* Writes s (NULL reads as "") into buf (size n) as %q: in double quotes,
 * with `"`, `\`, newline, tab and carriage return escaped as \" \\ \n \t
 * \r and every other control byte as \xNN, so a hostile value cannot
 * forge extra lines of output.  Bytes from 0x80 up pass through.  A value
 * that does not fit ends in `..."`, marking the cut.  Returns buf (always
 * NUL-terminated when n > 0; n < 8 yields ""). */
static inline const char *base_quote(char *buf, size_t n, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    static const char esc_in[] = "\"\\\n\t\r", esc_out[] = "\"\\ntr";
    size_t o = 0;

    if (n < 8) {
        if (n)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *e = strchr(esc_in, c);
        char esc[4];
        size_t k = 0;

        if (e) {
            esc[k++] = '\\';
            esc[k++] = esc_out[e - esc_in];
        } else if (c < 0x20 || c == 0x7f) {
            esc[k++] = '\\';
            esc[k++] = 'x';
            esc[k++] = hex[c >> 4];
            esc[k++] = hex[c & 15];
        } else {
            esc[k++] = (char)c;
        }
        /* Keep room for `..."` and the NUL behind every byte written. */
        if (o + k + 5 > n) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(buf + o, esc, k);
        o += k;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

/* A 64-bit hash of len bytes of s.  Eight bytes per multiply: the keys
 * are socket paths and VM ids that share long prefixes and differ in a
 * few characters near the end, and a fleet's socket table hashes ten
 * thousand of them. */
static inline uint64_t base_hash(const char *s, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ len, w;

    for (; len >= 8; s += 8, len -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, s, len);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
}

/* CLOCK_MONOTONIC in nanoseconds: for deadlines and latencies, never for
 * wall-clock time. */
static inline uint64_t base_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
