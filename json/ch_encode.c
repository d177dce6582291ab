/* json/ch_encode.c: request bodies for Cloud Hypervisor (FsConfig,
 * DeviceConfig, the remove-device id, snapshot and restore URLs); the
 * decoders and error bodies of the same module are in json/ch.c. */
#include "json/ch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#include "http/base.h"
/* ---------------------------------------------------------------- encoders */

/* Every yajl_gen status goes through here so that the text for each
 * failure lives in one place. */
static int gen_check(yajl_gen_status st, const char *what, char *err, size_t errlen)
{
    switch (st) {
    case yajl_gen_status_ok:
        return 0;
    case yajl_gen_invalid_string:
        return base_errf(err, errlen, -EINVAL, "%s: invalid UTF-8", what);
    case yajl_gen_keys_must_be_strings:
        return base_errf(err, errlen, -EINVAL, "%s: JSON keys must be strings", what);
    case yajl_max_depth_exceeded:
        return base_errf(err, errlen, -EINVAL, "%s: JSON nesting too deep", what);
    case yajl_gen_in_error_state:
        return base_errf(err, errlen, -EINVAL, "%s: JSON generator in error state", what);
    case yajl_gen_generation_complete:
        return base_errf(err, errlen, -EINVAL, "%s: JSON document already complete", what);
    case yajl_gen_invalid_number:
        return base_errf(err, errlen, -EINVAL, "%s: invalid JSON number", what);
    case yajl_gen_no_buf:
        return base_errf(err, errlen, -EINVAL, "%s: JSON generator has no buffer", what);
    }
    return base_errf(err, errlen, -EINVAL, "%s: JSON generator status %d", what, (int)st);
}

typedef struct enc {
    yajl_gen g;
    char *err;
    size_t errlen;
    int rc;
} enc;

/* The helpers below turn into no-ops once rc is set, so an encoder reads as
 * a straight list of fields and checks the outcome once at the end; the
 * first failure is the one reported. */
static void enc_st(enc *e, yajl_gen_status st, const char *what)
{
    if (e->rc == 0)
        e->rc = gen_check(st, what, e->err, e->errlen);
}

/* yajl's own check lets overlong forms, UTF-16 surrogates and code points
 * above U+10FFFF through; CH's serde rejects them, so check strictly here. */
static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp, min;

        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i - 1 < n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

static void enc_str(enc *e, const char *s, const char *what)
{
    size_t len;

    if (e->rc != 0)
        return;
    if (!s) {
        e->rc = base_errf(e->err, e->errlen, -EINVAL, "%s: missing", what);
        return;
    }
    len = strlen(s);
    if (!utf8_valid((const unsigned char *)s, len)) {
        enc_st(e, yajl_gen_invalid_string, what);
        return;
    }
    enc_st(e, yajl_gen_string(e->g, (const unsigned char *)s, len), what);
}

static void enc_key(enc *e, const char *key)
{
    enc_str(e, key, key);
}

static int enc_begin(enc *e, char *err, size_t errlen)
{
    e->err = err;
    e->errlen = errlen;
    e->rc = 0;
    e->g = yajl_gen_alloc(NULL);
    if (!e->g)
        return base_errf(err, errlen, -ENOMEM, "JSON generator: out of memory");
    /* Socket paths and ids come from users: never emit invalid UTF-8. */
    if (!yajl_gen_config(e->g, yajl_gen_validate_utf8, 1)) {
        yajl_gen_free(e->g);
        return base_errf(err, errlen, -EINVAL, "JSON generator: cannot enable UTF-8 validation");
    }
    enc_st(e, yajl_gen_map_open(e->g), "object");
    return 0;
}

static int enc_end(enc *e, char **out, size_t *out_len)
{
    const unsigned char *buf = NULL;
    size_t len = 0;

    enc_st(e, yajl_gen_map_close(e->g), "object");
    if (e->rc == 0)
        enc_st(e, yajl_gen_get_buf(e->g, &buf, &len), "buffer");
    if (e->rc == 0) {
        char *copy = malloc(len + 1);
        if (!copy) {
            e->rc = base_errf(e->err, e->errlen, -ENOMEM, "JSON encode: out of memory");
        } else {
            memcpy(copy, buf, len);
            copy[len] = '\0';
            *out = copy;
            *out_len = len;
        }
    }
    yajl_gen_free(e->g);
    return e->rc;
}

/* The string s as yajl_gen writes it (quotes, \" \\ \b \f \n \r \t,
 * other controls as \u00XX, every other byte as it is) at p; returns the
 * end.  p has room for 6 bytes per byte of s plus 2.  One table lookup per
 * byte: a socket path is copied at a few instructions a byte. */
static char *enc_quoted(char *p, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    /* The escape letter of a byte, 'u' for \u00XX, 0 for as it is. */
    static const char esc[256] = {
        'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
        'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
        ['"'] = '"', ['\\'] = '\\',
    };

    *p++ = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char e = esc[c];

        if (!e) {
            *p++ = (char)c;
        } else if (e != 'u') {
            *p++ = '\\';
            *p++ = e;
        } else {
            memcpy(p, "\\u00", 4);
            p[4] = hex[c >> 4];
            p[5] = hex[c & 15];
            p += 6;
        }
    }
    *p++ = '"';
    return p;
}

/* v in decimal at p, as yajl_gen_integer writes it; returns the end. */
static char *enc_int(char *p, int64_t v)
{
    char tmp[24];
    int n = 0;
    uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        tmp[n++] = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    if (v < 0)
        *p++ = '-';
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* The one body written on every attach, so it is filled into a fixed
 * template instead of going through yajl_gen (a generator, its buffer and
 * a copy per attach): the bytes are the ones yajl_gen writes, with the
 * same strict UTF-8 check first and the same error texts. */
int json_fs_config_encode(const json_fs *fs, char **out, size_t *out_len,
                          char *err, size_t errlen)
{
    const char *names[3] = { "id", "tag", "socket" };
    const char *vals[3];
    size_t need = 128;      /* the template and two 20-digit integers */
    char *buf, *p;

    if (!fs || !out || !out_len)
        return base_errf(err, errlen, -EINVAL, "FsConfig: missing argument");
    vals[0] = fs->id;
    vals[1] = fs->tag;
    vals[2] = fs->socket;
    for (int i = fs->id ? 0 : 1; i < 3; i++) {
        size_t len;

        if (!vals[i])
            return base_errf(err, errlen, -EINVAL, "%s: missing", names[i]);
        len = strlen(vals[i]);
        if (!utf8_valid((const unsigned char *)vals[i], len))
            return gen_check(yajl_gen_invalid_string, names[i], err, errlen);
        need += 6 * len;
    }
    buf = malloc(need);
    if (!buf)
        return base_errf(err, errlen, -ENOMEM, "JSON encode: out of memory");
    p = buf;
    *p++ = '{';
    if (fs->id) {
        memcpy(p, "\"id\":", 5);
        p = enc_quoted(p + 5, fs->id);
        *p++ = ',';
    }
    memcpy(p, "\"tag\":", 6);
    p = enc_quoted(p + 6, fs->tag);
    memcpy(p, ",\"socket\":", 10);
    p = enc_quoted(p + 10, fs->socket);
    memcpy(p, ",\"num_queues\":", 14);
    p = enc_int(p + 14, fs->num_queues);
    memcpy(p, ",\"queue_size\":", 14);
    p = enc_int(p + 14, fs->queue_size);
    *p++ = '}';
    *p = '\0';
    *out = buf;
    *out_len = (size_t)(p - buf);
    return 0;
}

int json_device_config_encode(const char *id, const char *path, char **out,
                              size_t *out_len, char *err, size_t errlen)
{
    enc e;
    int rc;

    if (!out || !out_len)
        return base_errf(err, errlen, -EINVAL, "DeviceConfig: missing argument");
    rc = enc_begin(&e, err, errlen);
    if (rc < 0)
        return rc;
    if (id && *id) {
        enc_key(&e, "id");
        enc_str(&e, id, "id");
    }
    enc_key(&e, "path");
    enc_str(&e, path, "path");
    return enc_end(&e, out, out_len);
}

int json_remove_device_encode(const char *id, char **out, size_t *out_len,
                              char *err, size_t errlen)
{
    enc e;
    int rc;

    if (!out || !out_len)
        return base_errf(err, errlen, -EINVAL, "remove-device: missing argument");
    rc = enc_begin(&e, err, errlen);
    if (rc < 0)
        return rc;
    enc_key(&e, "id");
    enc_str(&e, id, "id");
    return enc_end(&e, out, out_len);
}

int json_file_url_encode(const char *key, const char *dir, char **out, size_t *out_len,
                         char *err, size_t errlen)
{
    char *url = NULL;
    enc e;
    int rc;

    if (!key || !dir || !out || !out_len)
        return base_errf(err, errlen, -EINVAL, "%s: missing argument", key ? key : "url");
    if (asprintf(&url, "file://%s", dir) < 0)
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    rc = enc_begin(&e, err, errlen);
    if (rc == 0) {
        enc_key(&e, key);
        enc_str(&e, url, key);
        rc = enc_end(&e, out, out_len);
    }
    free(url);
    return rc;
}
