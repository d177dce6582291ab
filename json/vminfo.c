/* json/vminfo.c: see vminfo.h.  Why not yajl here: vm.info is read before
 * every attach and detach, and Cloud Hypervisor sends several kilobytes
 * of it (a few hundred tokens: cpus, payload, disks, net, the device
 * tree's resources) of which cocoon reads a few dozen bytes.  yajl's lexer
 * runs a state machine per byte and calls back per token, and its handle,
 * lexer and buffers cost a dozen allocations per body.  Measured with
 * callgrind on a 2.7 KB body from the CH simulator: yajl behind a pass
 * that pruned the body for it, 70k instructions and 26 allocations per
 * decode; a reader calling a function per token, 38k and two; this one,
 * 19k (the copy's malloc and memcpy included) and two.
 *
 * Where the instructions went in the per-token reader: bounds tests on
 * every byte and a call or two per token (member, string, skip).  So the
 * body is copied once into a block that ends in a NUL and a few zero
 * bytes: the NUL stops every scan (JSON allows no raw NUL anywhere, so a
 * NUL before the end is a syntax error like any other), and no scan tests
 * the bound.  What the reader skips, it skips in one loop with the open
 * containers as a bit stack, checking the syntax as it goes; strings are
 * scanned 16 bytes at a time where SSE2 is there.  The strings it keeps
 * stay in that block, cut in place by a NUL over their closing quote.
 *
 * It decides nothing on its own: whatever it does not handle (any error,
 * an escape in a kept string, a repeated key) goes to yajl, which then
 * gives the exact result or error. */
#include "json/vminfo.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Zero bytes after the body in the reader's copy: the NUL that ends it and
 * room for the widest read past a position at or before it (a 16-byte
 * load, a 5-byte word). */
#define RD_PAD 32

/* Open containers one value skip tracks on its bit stack. */
#define RD_SKIP_DEPTH 63

typedef struct rd {
    const unsigned char *p, *end;   /* *end is the NUL after the body */
    unsigned depth, max_depth;
} rd;

#ifndef __SSE2__
/* Plain string bytes: printable ASCII but '"' and '\\'. */
static const unsigned char plain[256] = {
    [0x20] = 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};
#endif

/* The first byte from p that is not a plain string byte ('"', '\\', a
 * control, the final NUL or a non-ASCII byte).  p is at most the end, so
 * the 16 bytes read from it are inside the copy. */
static inline const unsigned char *plain_end(const unsigned char *p)
{
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(' ');

    for (;;) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* Signed: bytes from 0x80 are negative, so below ' ' too. */
        __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote),
                                                 _mm_cmpeq_epi8(v, bslash)),
                                    _mm_cmplt_epi8(v, space));
        unsigned m = (unsigned)_mm_movemask_epi8(stop);

        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
#else
    while (plain[p[0]] && plain[p[1]] && plain[p[2]] && plain[p[3]])
        p += 4;
    while (plain[*p])
        p++;
    return p;
#endif
}

static bool is_hex(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

static bool is_digit(unsigned char ch)
{
    return ch >= '0' && ch <= '9';
}

/* An escape at p ('\\'): the byte after it, or NULL when invalid.  The
 * tests stop at the first byte that fails, the final NUL at the latest. */
static const unsigned char *escape_end(const unsigned char *p)
{
    switch (p[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        return p + 2;
    case 'u':
        if (!is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) || !is_hex(p[5]))
            return NULL;
        return p + 6;
    default:
        return NULL;
    }
}

/* A non-ASCII character at p: the byte after it, or NULL.  The rule is
 * yajl's: a lead byte 110xxxxx, 1110xxxx or 11110xxx followed by that
 * many 10xxxxxx bytes. */
static const unsigned char *utf8_end(const unsigned char *p)
{
    unsigned char lead = *p;
    int more = (lead >> 5) == 0x6 ? 1 : (lead >> 4) == 0xe ? 2 : (lead >> 3) == 0x1e ? 3 : -1;

    if (more < 0)
        return NULL;
    for (int i = 1; i <= more; i++)
        if ((p[i] >> 6) != 0x2)
            return NULL;
    return p + 1 + more;
}

/* The rest of a string from a byte plain_end stopped at: its closing
 * quote, or NULL.  *esc is set when it holds an escape. */
static const unsigned char *str_rest(const unsigned char *p, bool *esc)
{
    for (;;) {
        if (*p == '"')
            return p;
        if (*p == '\\') {
            *esc = true;
            p = escape_end(p);
        } else if (*p >= 0x80) {
            p = utf8_end(p);
        } else {
            return NULL;    /* a control character or the end */
        }
        if (!p)
            return NULL;
        p = plain_end(p);
    }
}

/* The string whose first byte (past the opening quote) is at p: its
 * closing quote, or NULL.  The common case, no escape and no non-ASCII
 * byte, stays in line. */
static inline const unsigned char *str_end(const unsigned char *p, bool *esc)
{
    p = plain_end(p);
    return *p == '"' ? p : str_rest(p, esc);
}

/* The string at r->p (its opening quote): its raw bytes in *s, *n, *esc
 * when it holds an escape; r->p then past the closing quote. */
static inline bool rd_string(rd *r, const unsigned char **s, size_t *n, bool *esc)
{
    const unsigned char *q;

    *esc = false;
    if (*r->p != '"' || !(q = str_end(r->p + 1, esc)))
        return false;
    *s = r->p + 1;
    *n = (size_t)(q - *s);
    r->p = q + 1;
    return true;
}

static const unsigned char *ws_run(const unsigned char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
        p++;
    return p;
}

/* Cloud Hypervisor sends no whitespace: one test in line for that. */
static inline const unsigned char *ws(const unsigned char *p)
{
    return *p > ' ' ? p : ws_run(p);
}

static inline void rd_ws(rd *r)
{
    r->p = ws(r->p);
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at p: the byte after it,
 * or NULL.  In line, as is key_bit: as calls, the two cost a twentieth
 * of the reader. */
static inline const unsigned char *number_end(const unsigned char *p)
{
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (is_digit(*++p))
            ;
    else
        return NULL;
    if (*p == '.') {
        if (!is_digit(*++p))
            return NULL;
        while (is_digit(*++p))
            ;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!is_digit(*p))
            return NULL;
        while (is_digit(*++p))
            ;
    }
    return p;
}

/* The number at r->p, its text in *s, *n. */
static bool rd_number(rd *r, const char **s, size_t *n)
{
    const unsigned char *q = number_end(r->p);

    if (!q)
        return false;
    *s = (const char *)r->p;
    *n = (size_t)(q - r->p);
    r->p = q;
    return true;
}

/* Consumes a null at r->p; false (nothing consumed) when it is not one.
 * Comparing five bytes is safe: the copy has zero bytes past its end. */
static bool rd_null(rd *r)
{
    if (memcmp(r->p, "null", 4) != 0)
        return false;
    r->p += 4;
    return true;
}

static bool rd_bool(rd *r, bool *v)
{
    if (memcmp(r->p, "true", 4) == 0) {
        r->p += 4;
        return (*v = true);
    }
    if (memcmp(r->p, "false", 5) == 0) {
        r->p += 5;
        return !(*v = false);
    }
    return false;
}

/* Enters the object or array at r->p (its opening bracket). */
static bool rd_open(rd *r, unsigned char open)
{
    if (*r->p != open || ++r->depth > r->max_depth)
        return false;
    r->p++;
    return true;
}

/* Past the comma before the next entry of a container, or its closing
 * bracket: 1 at the next entry (whitespace skipped), 0 past the close, -1
 * on a syntax error. */
static inline int rd_next(rd *r, bool *first, unsigned char close)
{
    rd_ws(r);
    if (*r->p == close) {
        r->p++;
        r->depth--;
        return 0;
    }
    if (!*first) {
        if (*r->p != ',')
            return -1;
        r->p = ws(r->p + 1);
    }
    *first = false;
    return 1;
}

/* The next member of an object: 1 with its key in *k, *kn (*kesc: it
 * holds an escape) and r->p at its value, 0 past the closing brace, -1 on
 * a syntax error. */
static inline int rd_member(rd *r, bool *first, const unsigned char **k, size_t *kn, bool *kesc)
{
    int m = rd_next(r, first, '}');

    if (m <= 0)
        return m;
    if (!rd_string(r, k, kn, kesc))
        return -1;
    rd_ws(r);
    if (*r->p != ':')
        return -1;
    r->p = ws(r->p + 1);
    return 1;
}

static bool is_ws(unsigned char ch)
{
    return ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t';
}

/* Skips the value at r->p, checking its syntax: one loop for any nesting,
 * no call per token, and whitespace (CH sends none) looked for only where
 * the expected byte is not there.  Bit 0 of objs tells whether the
 * innermost open container is an object, bit 1 the one around it, ... */
static bool rd_skip(rd *r)
{
    const unsigned char *p = r->p;
    uint64_t objs = 0;
    unsigned open = 0, room = r->depth < r->max_depth ? r->max_depth - r->depth : 0;
    bool esc;

    if (room > RD_SKIP_DEPTH)
        room = RD_SKIP_DEPTH;
value:
    switch (*p) {
    case '{':
        if (open == room)
            return false;
        open++;
        objs = objs << 1 | 1;
        p++;
        goto obj_first;
    case '[':
        if (open == room)
            return false;
        open++;
        objs <<= 1;
        p++;
        goto arr_first;
    case '"':
        if (!(p = str_end(p + 1, &esc)))
            return false;
        p++;
        goto after;
    case 't':
        if (memcmp(p, "true", 4) != 0)
            return false;
        p += 4;
        goto after;
    case 'f':
        if (memcmp(p, "false", 5) != 0)
            return false;
        p += 5;
        goto after;
    case 'n':
        if (memcmp(p, "null", 4) != 0)
            return false;
        p += 4;
        goto after;
    case ' ': case '\n': case '\r': case '\t':
        p = ws_run(p);
        goto value;
    default:
        if (!(p = number_end(p)))
            return false;
        goto after;
    }
obj_first:
    if (*p == '}')
        goto close;
    if (is_ws(*p)) {
        p = ws_run(p);
        goto obj_first;
    }
key:
    if (*p == '"') {
        if (!(p = str_end(p + 1, &esc)))
            return false;
        p++;
        goto colon;
    }
    if (!is_ws(*p))
        return false;
    p = ws_run(p);
    goto key;
colon:
    if (*p == ':') {
        p++;
        goto value;
    }
    if (!is_ws(*p))
        return false;
    p = ws_run(p);
    goto colon;
arr_first:
    if (*p == ']')
        goto close;
    if (!is_ws(*p))
        goto value;
    p = ws_run(p);
    goto arr_first;
close:
    p++;
    open--;
    objs >>= 1;
after:
    if (open == 0) {
        r->p = p;
        return true;
    }
    if (*p == ',') {
        p++;
        if (objs & 1)
            goto key;
        goto value;
    }
    if (*p == ((objs & 1) ? '}' : ']'))
        goto close;
    if (!is_ws(*p))
        return false;
    p = ws_run(p);
    goto after;
}

/* ------------------------------------------------------------ vm.info */

/* The reader walks vi->strings, its copy of the body; a kept string is
 * ended in place by a NUL over its closing quote, which the reader has
 * already passed. */
typedef struct vrd {
    rd r;
    json_vm_info *vi;
    const unsigned char *base;      /* == vi->strings */
    size_t cap_zones, cap_fs, cap_devices, cap_tree;
} vrd;

/* Which of the keys (NULL-terminated) key is: its bit, 0 for none; -1
 * when it holds an escape (it could spell one of them) or repeats one. */
typedef struct rkey {
    const char *s;
    size_t n;
} rkey;

#define K(s) { s, sizeof(s) - 1 }

static inline int key_bit(const unsigned char *key, size_t n, bool esc, unsigned *seen,
                   const rkey *keys)
{
    if (esc)
        return -1;
    for (unsigned i = 0; keys[i].s; i++) {
        if (keys[i].n == n && key[0] == (unsigned char)keys[i].s[0] &&
            memcmp(key, keys[i].s, n) == 0) {
            if (*seen & (1u << i))
                return -1;
            *seen |= 1u << i;
            return (int)(1u << i);
        }
    }
    return 0;
}

static char *keep_bytes(vrd *v, const unsigned char *s, size_t n)
{
    char *d = v->vi->strings + (s - v->base);

    d[n] = '\0';
    return d;
}

/* A string without escapes (null too when nullable) into *dst. */
static bool keep_string(vrd *v, char **dst, bool nullable)
{
    const unsigned char *s;
    size_t n;
    bool esc;

    if (nullable && rd_null(&v->r)) {
        *dst = NULL;
        return true;
    }
    if (!rd_string(&v->r, &s, &n, &esc) || esc)
        return false;
    *dst = keep_bytes(v, s, n);
    return true;
}

static bool read_int(rd *r, bool allow_neg, uint64_t *mag, bool *neg)
{
    const char *s;
    size_t n;

    return rd_number(r, &s, &n) && json_int_parse(s, n, allow_neg, mag, neg);
}

static bool read_i64(rd *r, int64_t *v)
{
    uint64_t mag;
    bool neg;

    if (!read_int(r, true, &mag, &neg) ||
        mag > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
        return false;
    *v = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return true;
}

/* An array of objects (or null), each read by one(). */
static bool read_objects(vrd *v, bool (*one)(vrd *v))
{
    bool first = true;
    int m;

    if (rd_null(&v->r))
        return true;
    if (!rd_open(&v->r, '['))
        return false;
    while ((m = rd_next(&v->r, &first, ']')) == 1)
        if (*v->r.p != '{' || !one(v))
            return false;
    return m == 0;
}

static bool read_zone(vrd *v)
{
    static const rkey keys[] = { K("shared"), K("hugepages"), { NULL, 0 } };
    json_vm_info *vi = v->vi;
    const unsigned char *key;
    size_t n;
    bool esc, first = true, ok;
    unsigned seen = 0;
    int m, bit;

    if (json_grow((void **)&vi->zones, &v->cap_zones, vi->n_zones, sizeof(*vi->zones), 4) < 0)
        return false;
    json_mem_zone *z = &vi->zones[vi->n_zones++];
    *z = (json_mem_zone){ 0 };
    if (!rd_open(&v->r, '{'))
        return false;
    while ((m = rd_member(&v->r, &first, &key, &n, &esc)) == 1) {
        if ((bit = key_bit(key, n, esc, &seen, keys)) < 0)
            return false;
        ok = bit == 1 ? rd_bool(&v->r, &z->shared)
             : bit == 2 ? rd_bool(&v->r, &z->hugepages) : rd_skip(&v->r);
        if (!ok)
            return false;
    }
    return m == 0;
}

static bool read_memory(vrd *v)
{
    static const rkey keys[] = { K("size"), K("shared"), K("hugepages"), K("zones"), { NULL, 0 } };
    json_vm_info *vi = v->vi;
    const unsigned char *key;
    size_t n;
    bool esc, neg, first = true, ok;
    unsigned seen = 0;
    int m, bit;

    if (rd_null(&v->r))
        return true;
    if (!rd_open(&v->r, '{'))
        return false;
    while ((m = rd_member(&v->r, &first, &key, &n, &esc)) == 1) {
        switch ((bit = key_bit(key, n, esc, &seen, keys))) {
        case 1: ok = read_int(&v->r, false, &vi->mem_size, &neg); break;
        case 2: ok = rd_bool(&v->r, &vi->mem_shared); break;
        case 4: ok = rd_bool(&v->r, &vi->mem_hugepages); break;
        case 8: ok = read_objects(v, read_zone); break;
        default: ok = bit == 0 && rd_skip(&v->r); break;
        }
        if (!ok)
            return false;
    }
    return m == 0;
}

static bool read_fs(vrd *v)
{
    static const rkey keys[] = { K("id"), K("tag"), K("socket"), K("num_queues"), K("queue_size"), { NULL, 0 } };
    json_vm_info *vi = v->vi;
    const unsigned char *key;
    size_t n;
    bool esc, first = true, ok;
    unsigned seen = 0;
    int m, bit;

    if (json_grow((void **)&vi->fs, &v->cap_fs, vi->n_fs, sizeof(*vi->fs), 4) < 0)
        return false;
    json_fs *f = &vi->fs[vi->n_fs++];
    *f = (json_fs){ 0 };
    if (!rd_open(&v->r, '{'))
        return false;
    while ((m = rd_member(&v->r, &first, &key, &n, &esc)) == 1) {
        switch ((bit = key_bit(key, n, esc, &seen, keys))) {
        case 1: ok = keep_string(v, &f->id, true); break;
        case 2: ok = keep_string(v, &f->tag, false); break;
        case 4: ok = keep_string(v, &f->socket, false); break;
        case 8: ok = read_i64(&v->r, &f->num_queues); break;
        case 16: ok = read_i64(&v->r, &f->queue_size); break;
        default: ok = bit == 0 && rd_skip(&v->r); break;
        }
        if (!ok)
            return false;
    }
    return m == 0 && f->tag && f->socket;
}

static bool read_device(vrd *v)
{
    static const rkey keys[] = { K("id"), K("path"), { NULL, 0 } };
    json_vm_info *vi = v->vi;
    const unsigned char *key;
    size_t n;
    bool esc, first = true, ok;
    unsigned seen = 0;
    int m, bit;

    if (json_grow((void **)&vi->devices, &v->cap_devices, vi->n_devices,
                  sizeof(*vi->devices), 4) < 0)
        return false;
    json_device *d = &vi->devices[vi->n_devices++];
    *d = (json_device){ 0 };
    if (!rd_open(&v->r, '{'))
        return false;
    while ((m = rd_member(&v->r, &first, &key, &n, &esc)) == 1) {
        bit = key_bit(key, n, esc, &seen, keys);
        ok = bit == 1 ? keep_string(v, &d->id, true)
             : bit == 2 ? keep_string(v, &d->path, true) : bit == 0 && rd_skip(&v->r);
        if (!ok)
            return false;
    }
    return m == 0;
}

static bool read_config(vrd *v)
{
    static const rkey keys[] = { K("memory"), K("fs"), K("devices"), { NULL, 0 } };
    const unsigned char *key;
    size_t n;
    bool esc, first = true, ok;
    unsigned seen = 0;
    int m, bit;

    if (rd_null(&v->r))
        return true;
    if (!rd_open(&v->r, '{'))
        return false;
    while ((m = rd_member(&v->r, &first, &key, &n, &esc)) == 1) {
        switch ((bit = key_bit(key, n, esc, &seen, keys))) {
        case 1: ok = read_memory(v); break;
        case 2: ok = read_objects(v, read_fs); break;
        case 4: ok = read_objects(v, read_device); break;
        default: ok = bit == 0 && rd_skip(&v->r); break;
        }
        if (!ok)
            return false;
    }
    return m == 0;
}

/* device_tree: its keys are kept, its values skipped. */
static bool read_tree(vrd *v)
{
    json_vm_info *vi = v->vi;
    const unsigned char *key;
    size_t n;
    bool esc, first = true;
    int m;

    if (rd_null(&v->r))
        return true;
    if (!rd_open(&v->r, '{'))
        return false;
    while ((m = rd_member(&v->r, &first, &key, &n, &esc)) == 1) {
        if (esc || json_grow((void **)&vi->tree_ids, &v->cap_tree, vi->n_tree_ids,
                             sizeof(*vi->tree_ids), 16) < 0)
            return false;
        vi->tree_ids[vi->n_tree_ids++] = keep_bytes(v, key, n);
        if (!rd_skip(&v->r))
            return false;
    }
    return m == 0;
}

static bool read_root(vrd *v)
{
    static const rkey keys[] = { K("state"), K("config"), K("device_tree"), { NULL, 0 } };
    const unsigned char *key;
    size_t n;
    bool esc, first = true, ok;
    unsigned seen = 0;
    int m, bit;

    if (!rd_open(&v->r, '{'))
        return false;
    while ((m = rd_member(&v->r, &first, &key, &n, &esc)) == 1) {
        switch ((bit = key_bit(key, n, esc, &seen, keys))) {
        case 1: ok = keep_string(v, &v->vi->state, false); break;
        case 2: ok = read_config(v); break;
        case 4: ok = read_tree(v); break;
        default: ok = bit == 0 && rd_skip(&v->r); break;
        }
        if (!ok)
            return false;
    }
    return m == 0 && v->vi->state;
}

/* The copy of the len bytes at buf the reader walks: a NUL after them,
 * then zeros to RD_PAD.  Into small (RD_SMALL + RD_PAD bytes) when it
 * fits, else allocated; NULL on ENOMEM. */
#define RD_SMALL 256
static char *rd_copy(const char *buf, size_t len, char *small)
{
    char *c = small && len <= RD_SMALL ? small : malloc(len + RD_PAD);

    if (c) {
        memcpy(c, buf, len);
        memset(c + len, 0, RD_PAD);
    }
    return c;
}

static void rd_init(rd *r, const char *copy, size_t len, unsigned max_depth)
{
    r->p = (const unsigned char *)copy;
    r->end = r->p + len;
    r->depth = 0;
    r->max_depth = max_depth;
    rd_ws(r);
}

/* Only whitespace left: a NUL before the end is not the end. */
static bool rd_done(rd *r)
{
    rd_ws(r);
    return r->p == r->end;
}

int json_vm_info_read(const char *buf, size_t len, json_vm_info *out, unsigned max_depth)
{
    vrd v = { .vi = out };

    if (!buf || !len || !(out->strings = rd_copy(buf, len, NULL)))
        return -1;
    v.base = (const unsigned char *)out->strings;
    rd_init(&v.r, out->strings, len, max_depth);
    return read_root(&v) && rd_done(&v.r) ? 0 : -1;
}

/* ---------------------------------------------------------- PciDeviceInfo */

static bool pci_string(rd *r, char **dst)
{
    const unsigned char *s;
    size_t n;
    bool esc;

    if (!rd_string(r, &s, &n, &esc) || esc || !(*dst = malloc(n + 1)))
        return false;
    memcpy(*dst, s, n);
    (*dst)[n] = '\0';
    return true;
}

int json_pci_info_read(const char *buf, size_t len, json_pci_info *out)
{
    static const rkey keys[] = { K("id"), K("bdf"), { NULL, 0 } };
    char small[RD_SMALL + RD_PAD], *copy;
    rd r;
    const unsigned char *key;
    size_t n;
    bool esc, first = true, ok = true;
    unsigned seen = 0;
    int m = -1, bit;

    if (!buf || !(copy = rd_copy(buf, len, small)))
        return -1;
    /* A depth of 1: a nested container goes to yajl. */
    rd_init(&r, copy, len, 1);
    if (!rd_open(&r, '{'))
        ok = false;
    while (ok && (m = rd_member(&r, &first, &key, &n, &esc)) == 1) {
        bit = key_bit(key, n, esc, &seen, keys);
        ok = bit == 1 ? pci_string(&r, &out->id)
             : bit == 2 ? pci_string(&r, &out->bdf) : bit == 0 && rd_skip(&r);
    }
    ok = ok && m == 0 && out->id && rd_done(&r);
    if (copy != small)
        free(copy);
    return ok ? 0 : -1;
}

/* ------------------------------------------------------------- shared */

bool json_int_parse(const char *s, size_t len, bool allow_neg, uint64_t *mag, bool *neg)
{
    size_t i = 0;
    uint64_t v = 0;

    *neg = false;
    if (len && s[0] == '-') {
        if (!allow_neg)
            return false;
        *neg = true;
        i = 1;
    }
    if (i == len)
        return false;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned dgt = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - dgt) / 10)
            return false;
        v = v * 10 + dgt;
    }
    *mag = v;
    return true;
}

int json_grow(void **arr, size_t *cap, size_t n, size_t sz, size_t first)
{
    void *p;
    size_t ncap;

    if (n < *cap)
        return 0;
    ncap = *cap ? *cap * 2 : first;
    if (!(p = reallocarray(*arr, ncap, sz)))
        return -ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}
