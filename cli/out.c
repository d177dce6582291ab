#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* The first write error on stdout or stderr, as an errno value. */
static int g_write_errno;

int cli_out_flush(FILE *f)
{
    int e = 0;

    if (fflush(f) != 0 || ferror(f))
        e = errno ? errno : EIO;
    if (e && !g_write_errno)
        g_write_errno = e;
    return e ? -e : 0;
}

int cli_out_errno(void)
{
    return g_write_errno;
}

/* A VMM, a record or a user can put any byte into the strings a text line
 * shows: a newline would forge a result line, an escape sequence would
 * move the cursor or retitle the terminal.  Every control character (C0,
 * DEL, and C1 as UTF-8 encodes it) is spelled \xNN, except the newline
 * that ends the line. */
static void put_escaped(FILE *f, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t plain = 0;       /* start of the run written as it is */

    for (size_t i = 0; i < n; i++) {
        bool c1 = p[i] == 0xc2 && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f;

        if (!c1 && ((p[i] >= 0x20 && p[i] != 0x7f) || (p[i] == '\n' && i + 1 == n)))
            continue;
        fwrite(p + plain, 1, i - plain, f);
        if (c1)
            fprintf(f, "\\xc2\\x%02x", p[++i]);
        else
            fprintf(f, "\\x%02x", p[i]);
        plain = i + 1;
    }
    fwrite(p + plain, 1, n - plain, f);
}

/* A line of common length is formatted on the stack. */
void cli_vprintf(FILE *f, const char *fmt, va_list ap)
{
    char small[512], *s = small;
    va_list again;
    int n;

    va_copy(again, ap);
    n = vsnprintf(small, sizeof small, fmt, ap);
    if (n >= (int)sizeof small && (n = vasprintf(&s, fmt, again)) < 0)
        s = NULL;
    va_end(again);
    if (n < 0) {
        fputs("<out of memory>\n", f);
        return;
    }
    put_escaped(f, s, (size_t)n);
    if (s != small)
        free(s);
}

void cli_printf(FILE *f, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cli_vprintf(f, fmt, ap);
    va_end(ap);
}

yajl_gen cli_gen_new(bool pretty)
{
    yajl_gen g = yajl_gen_alloc(NULL);

    if (!g)
        return NULL;
    yajl_gen_config(g, yajl_gen_validate_utf8, 1);
    if (pretty) {
        yajl_gen_config(g, yajl_gen_beautify, 1);
        yajl_gen_config(g, yajl_gen_indent_string, "  ");
    }
    return g;
}

int cli_gen_write(yajl_gen g, FILE *f)
{
    const unsigned char *buf;
    size_t len;
    int rc = -1;

    if (!g)
        return -1;
    if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok) {
        /* beautify already ends the document with a newline */
        rc = fwrite(buf, 1, len, f) == len ? 0 : -1;
        if (rc == 0 && (len == 0 || buf[len - 1] != '\n'))
            fputc('\n', f);
    }
    yajl_gen_free(g);
    return rc;
}

int cli_gen_print(yajl_gen g, FILE *f)
{
    int rc = cli_gen_write(g, f);

    return cli_out_flush(f) < 0 ? -1 : rc;
}

/* Length of the well-formed UTF-8 sequence at p (at most n bytes), or 0:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
    size_t len;
    unsigned cp;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
        cp = p[0] & 0x1fu;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        cp = p[0] & 0x0fu;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        cp = p[0] & 0x07u;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Invalid UTF-8 from a user-typed string must not abort the document nor
 * hide the message around it: each bad byte is spelled \xNN, as the %q
 * quoting spells control bytes. */
void cli_gen_str(yajl_gen g, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), o = 0;
    char *clean;

    if (yajl_gen_string(g, p, n) != yajl_gen_invalid_string)
        return;
    clean = malloc(n * 4 + 1);
    if (!clean) {
        yajl_gen_string(g, (const unsigned char *)"<invalid utf-8>", 15);
        return;
    }
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq_len(p + i, n - i);

        if (l) {
            memcpy(clean + o, p + i, l);
            o += l;
            i += l;
        } else {
            o += (size_t)snprintf(clean + o, 5, "\\x%02x", p[i++]);
        }
    }
    yajl_gen_string(g, (const unsigned char *)clean, o);
    free(clean);
}

void cli_gen_kv_str(yajl_gen g, const char *k, const char *v)
{
    if (!v)
        return;
    cli_gen_str(g, k);
    cli_gen_str(g, v);
}

void cli_gen_kv_int(yajl_gen g, const char *k, long long v)
{
    cli_gen_str(g, k);
    yajl_gen_integer(g, v);
}

void cli_gen_kv_bool(yajl_gen g, const char *k, bool v)
{
    cli_gen_str(g, k);
    yajl_gen_bool(g, v);
}

void cli_gen_kv_ms(yajl_gen g, const char *k, double ms)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%.3f", ms);

    cli_gen_str(g, k);
    yajl_gen_number(g, num, (size_t)n);
}
