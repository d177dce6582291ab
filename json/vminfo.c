/* json/vminfo.c: see vminfo.h.  Why not yajl here: vm.info is read before
 * every attach and detach, and Cloud Hypervisor sends several kilobytes
 * of it (a few hundred tokens: cpus, payload, disks, net, the device
 * tree's resources) of which cocoon reads a few dozen bytes.  yajl's lexer
 * runs a state machine per byte and calls back per token, and its handle,
 * lexer and buffers cost a dozen allocations per body.  Measured with
 * callgrind on a 2.7 KB body from the CH simulator: yajl behind a pass
 * that pruned the body for it, 70k instructions and 26 allocations per
 * decode; this reader, which skips what it does not read without building
 * anything and copies the strings it keeps into one block, 38k and two.
 * It decides nothing on its own: whatever it does not handle (any error,
 * an escape in a kept string, a repeated key) goes to yajl, which then
 * gives the exact result or error. */
#include "json/vminfo.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct rd {
    const unsigned char *p, *end;
    unsigned depth, max_depth;
} rd;

/* Plain string bytes: printable ASCII but '"' and '\\'. */
static const unsigned char plain[256] = {
    [0x20] = 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* The first byte from p that is not a plain string byte ('"', '\\', a
 * control or a non-ASCII byte), or end.  Four bytes per test of the
 * bound: CH's strings are short, a word-at-a-time scan measured slower. */
static const unsigned char *plain_end(const unsigned char *p, const unsigned char *end)
{
    while (end - p >= 4) {
        if (!plain[p[0]])
            return p;
        if (!plain[p[1]])
            return p + 1;
        if (!plain[p[2]])
            return p + 2;
        if (!plain[p[3]])
            return p + 3;
        p += 4;
    }
    while (p < end && plain[*p])
        p++;
    return p;
}

static bool is_hex(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* An escape at p ('\\'): the byte after it, or NULL when invalid. */
static const unsigned char *escape_end(const unsigned char *p, const unsigned char *end)
{
    if (end - p < 2)
        return NULL;
    switch (p[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        return p + 2;
    case 'u':
        if (end - p < 6 || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) || !is_hex(p[5]))
            return NULL;
        return p + 6;
    default:
        return NULL;
    }
}

/* A non-ASCII character at p: the byte after it, or NULL.  The rule is
 * yajl's: a lead byte 110xxxxx, 1110xxxx or 11110xxx followed by that
 * many 10xxxxxx bytes. */
static const unsigned char *utf8_end(const unsigned char *p, const unsigned char *end)
{
    unsigned char lead = *p;
    int more = (lead >> 5) == 0x6 ? 1 : (lead >> 4) == 0xe ? 2 : (lead >> 3) == 0x1e ? 3 : -1;

    if (more < 0 || end - p <= more)
        return NULL;
    for (int i = 1; i <= more; i++)
        if ((p[i] >> 6) != 0x2)
            return NULL;
    return p + 1 + more;
}

/* The string at r->p (its opening quote): its raw bytes in *s, *n, *esc
 * when it holds an escape; r->p then past the closing quote. */
static inline bool rd_string(rd *r, const unsigned char **s, size_t *n, bool *esc)
{
    const unsigned char *p = r->p + 1;

    *s = p;
    *esc = false;
    for (;;) {
        p = plain_end(p, r->end);
        if (p >= r->end)
            return false;
        if (*p == '"')
            break;
        if (*p == '\\') {
            *esc = true;
            p = escape_end(p, r->end);
        } else if (*p >= 0x80) {
            p = utf8_end(p, r->end);
        } else {
            return false;   /* a control character */
        }
        if (!p)
            return false;
    }
    *n = (size_t)(p - *s);
    r->p = p + 1;
    return true;
}

static void rd_ws_run(rd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
        r->p++;
}

/* Cloud Hypervisor sends no whitespace: one test in line for that. */
static inline void rd_ws(rd *r)
{
    if (r->p < r->end && *r->p <= ' ')
        rd_ws_run(r);
}

static bool rd_digits(rd *r)
{
    const unsigned char *s = r->p;

    while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
        r->p++;
    return r->p > s;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at r->p, its text in
 * *s, *n. */
static bool rd_number(rd *r, const char **s, size_t *n)
{
    const unsigned char *b = r->p;

    if (*r->p == '-')
        r->p++;
    if (r->p < r->end && *r->p == '0')
        r->p++;
    else if (r->p >= r->end || *r->p < '1' || *r->p > '9' || !rd_digits(r))
        return false;
    if (r->p < r->end && *r->p == '.') {
        r->p++;
        if (!rd_digits(r))
            return false;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        if (!rd_digits(r))
            return false;
    }
    *s = (const char *)b;
    *n = (size_t)(r->p - b);
    return true;
}

static bool rd_word(rd *r, const char *w, size_t n)
{
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n) != 0)
        return false;
    r->p += n;
    return true;
}

/* Consumes a null at r->p; false (nothing consumed) when it is not one. */
static bool rd_null(rd *r)
{
    return *r->p == 'n' && rd_word(r, "null", 4);
}

static bool rd_bool(rd *r, bool *v)
{
    if (*r->p == 't' && rd_word(r, "true", 4))
        return (*v = true);
    if (*r->p == 'f' && rd_word(r, "false", 5))
        return !(*v = false);
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
 * bracket: 1 at the next entry (whitespace skipped, not at the end), 0
 * past the close, -1 on a syntax error. */
static inline int rd_next(rd *r, bool *first, unsigned char close)
{
    rd_ws(r);
    if (r->p >= r->end)
        return -1;
    if (*r->p == close) {
        r->p++;
        r->depth--;
        return 0;
    }
    if (!*first) {
        if (*r->p != ',')
            return -1;
        r->p++;
        rd_ws(r);
        if (r->p >= r->end)
            return -1;
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
    if (*r->p != '"' || !rd_string(r, k, kn, kesc))
        return -1;
    rd_ws(r);
    if (r->p >= r->end || *r->p != ':')
        return -1;
    r->p++;
    rd_ws(r);
    return r->p < r->end ? 1 : -1;
}

/* Skips the value at r->p, checking its syntax. */
static bool rd_skip(rd *r)
{
    const unsigned char *k;
    const char *s;
    size_t n;
    bool esc, first = true, v;
    int m;

    switch (*r->p) {
    case '{':
        if (!rd_open(r, '{'))
            return false;
        while ((m = rd_member(r, &first, &k, &n, &esc)) == 1)
            if (!rd_skip(r))
                return false;
        return m == 0;
    case '[':
        if (!rd_open(r, '['))
            return false;
        while ((m = rd_next(r, &first, ']')) == 1)
            if (!rd_skip(r))
                return false;
        return m == 0;
    case '"':
        return rd_string(r, &k, &n, &esc);
    case 'n':
        return rd_null(r);
    case 't': case 'f':
        return rd_bool(r, &v);
    default:
        return rd_number(r, &s, &n);
    }
}

/* ------------------------------------------------------------ vm.info */

/* Every kept string goes to one block of the body's length: a string of
 * n bytes takes n + 2 in the body (its quotes) and n + 1 here. */
typedef struct vrd {
    rd r;
    json_vm_info *vi;
    size_t used;
    size_t cap_zones, cap_fs, cap_devices, cap_tree;
} vrd;

/* Which of the keys (NULL-terminated) key is: its bit, 0 for none; -1
 * when it holds an escape (it could spell one of them) or repeats one. */
typedef struct rkey {
    const char *s;
    size_t n;
} rkey;

#define K(s) { s, sizeof(s) - 1 }

static int key_bit(const unsigned char *key, size_t n, bool esc, unsigned *seen,
                   const rkey *keys)
{
    if (esc)
        return -1;
    for (unsigned i = 0; keys[i].s; i++) {
        if (keys[i].n == n && memcmp(key, keys[i].s, n) == 0) {
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
    char *d = v->vi->strings + v->used;

    memcpy(d, s, n);
    d[n] = '\0';
    v->used += n + 1;
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
    if (*v->r.p != '"' || !rd_string(&v->r, &s, &n, &esc) || esc)
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

/* The document: one value, whitespace around it. */
static bool rd_doc(rd *r)
{
    rd_ws(r);
    return r->p < r->end;
}

static bool rd_done(rd *r)
{
    rd_ws(r);
    return r->p == r->end;
}

int json_vm_info_read(const char *buf, size_t len, json_vm_info *out, unsigned max_depth)
{
    vrd v = { { (const unsigned char *)buf, (const unsigned char *)buf + len, 0, max_depth },
              out, 0, 0, 0, 0, 0 };

    if (!buf || !len || !(out->strings = malloc(len)))
        return -1;
    return rd_doc(&v.r) && read_root(&v) && rd_done(&v.r) ? 0 : -1;
}

/* ---------------------------------------------------------- PciDeviceInfo */

static bool pci_string(rd *r, char **dst)
{
    const unsigned char *s;
    size_t n;
    bool esc;

    if (*r->p != '"' || !rd_string(r, &s, &n, &esc) || esc || !(*dst = malloc(n + 1)))
        return false;
    memcpy(*dst, s, n);
    (*dst)[n] = '\0';
    return true;
}

int json_pci_info_read(const char *buf, size_t len, json_pci_info *out)
{
    static const rkey keys[] = { K("id"), K("bdf"), { NULL, 0 } };
    rd r = { (const unsigned char *)buf, (const unsigned char *)buf + len, 0, 1 };
    const unsigned char *key;
    size_t n;
    bool esc, first = true, ok;
    unsigned seen = 0;
    int m, bit;

    /* A depth of 1: a nested container goes to yajl. */
    if (!buf || !rd_doc(&r) || !rd_open(&r, '{'))
        return -1;
    while ((m = rd_member(&r, &first, &key, &n, &esc)) == 1) {
        bit = key_bit(key, n, esc, &seen, keys);
        ok = bit == 1 ? pci_string(&r, &out->id)
             : bit == 2 ? pci_string(&r, &out->bdf) : bit == 0 && rd_skip(&r);
        if (!ok)
            return -1;
    }
    return m == 0 && out->id && rd_done(&r) ? 0 : -1;
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
