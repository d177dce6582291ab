#include "json/ch.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "engine/err.h"

/* Bounds on what a decoder accepts.  vm.info nests about six levels deep
 * (device_tree.<id>.resources[i].<kind>), so 64 leaves ample room while
 * keeping the frame stack a fixed array.  Anything deeper or larger is
 * rejected rather than cut. */
#define JSON_MAX_DEPTH 64
#define JSON_MAX_BODY (16u * 1024u * 1024u)
#define JSON_ERROR_CUT 1024

/* ---------------------------------------------------------------- encoders */

/* The bodies cocoon sends are one flat object of strings and integers, so
 * they are written directly: compact JSON as yajl_gen writes it ('"', '\\'
 * and control characters escaped, everything else as is), into one buffer
 * sized up front, with a strict UTF-8 check on every string. */

typedef struct enc {
    char *buf;          /* owned until enc_end hands it out */
    size_t len, cap;
    char *err;
    size_t errlen;
    int rc;
} enc;

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

static bool enc_room(enc *e, size_t n)
{
    if (e->rc != 0)
        return false;
    if (e->cap - e->len >= n)
        return true;
    size_t ncap = e->cap * 2;
    while (ncap - e->len < n)
        ncap *= 2;
    char *nb = realloc(e->buf, ncap);
    if (!nb) {
        e->rc = eng_errf(e->err, e->errlen, -ENOMEM, "JSON encode: out of memory");
        return false;
    }
    e->buf = nb;
    e->cap = ncap;
    return true;
}

static void enc_raw(enc *e, const char *s, size_t n)
{
    if (enc_room(e, n)) {
        memcpy(e->buf + e->len, s, n);
        e->len += n;
    }
}

static void enc_str(enc *e, const char *s, const char *what)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len;

    if (e->rc != 0)
        return;
    if (!s) {
        e->rc = eng_errf(e->err, e->errlen, -EINVAL, "%s: missing", what);
        return;
    }
    len = strlen(s);
    if (!utf8_valid((const unsigned char *)s, len)) {
        e->rc = eng_errf(e->err, e->errlen, -EINVAL, "%s: invalid UTF-8", what);
        return;
    }
    /* Worst case: every byte a six-byte \u escape, plus the quotes. */
    if (len > ((size_t)-1 - 2) / 6 || !enc_room(e, len * 6 + 2))
        return;
    char *o = e->buf + e->len;
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
            break;
        }
    }
    *o++ = '"';
    e->len = (size_t)(o - e->buf);
}

static void enc_int(enc *e, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        tmp[sizeof tmp - ++n] = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    if (v < 0)
        tmp[sizeof tmp - ++n] = '-';
    enc_raw(e, tmp + sizeof tmp - n, n);
}

/* Writes ',' before every member but the first, then "key": */
static void enc_key(enc *e, const char *key)
{
    if (e->len > 1)
        enc_raw(e, ",", 1);
    enc_str(e, key, key);
    enc_raw(e, ":", 1);
}

static int enc_begin(enc *e, char *err, size_t errlen)
{
    e->err = err;
    e->errlen = errlen;
    e->rc = 0;
    e->len = 0;
    e->cap = 256;
    e->buf = malloc(e->cap);
    if (!e->buf)
        return eng_errf(err, errlen, -ENOMEM, "JSON encode: out of memory");
    enc_raw(e, "{", 1);
    return 0;
}

static int enc_end(enc *e, char **out, size_t *out_len)
{
    enc_raw(e, "}", 1);
    if (enc_room(e, 1))
        e->buf[e->len] = '\0';
    if (e->rc != 0) {
        free(e->buf);
        return e->rc;
    }
    *out = e->buf;
    *out_len = e->len;
    return 0;
}

int json_fs_config_encode(const json_fs *fs, char **out, size_t *out_len,
                          char *err, size_t errlen)
{
    enc e;
    int rc;

    if (!fs || !out || !out_len)
        return eng_errf(err, errlen, -EINVAL, "FsConfig: missing argument");
    rc = enc_begin(&e, err, errlen);
    if (rc < 0)
        return rc;
    if (fs->id) {
        enc_key(&e, "id");
        enc_str(&e, fs->id, "id");
    }
    enc_key(&e, "tag");
    enc_str(&e, fs->tag, "tag");
    enc_key(&e, "socket");
    enc_str(&e, fs->socket, "socket");
    enc_key(&e, "num_queues");
    enc_int(&e, fs->num_queues);
    enc_key(&e, "queue_size");
    enc_int(&e, fs->queue_size);
    return enc_end(&e, out, out_len);
}

int json_device_config_encode(const char *id, const char *path, char **out,
                              size_t *out_len, char *err, size_t errlen)
{
    enc e;
    int rc;

    if (!out || !out_len)
        return eng_errf(err, errlen, -EINVAL, "DeviceConfig: missing argument");
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
        return eng_errf(err, errlen, -EINVAL, "remove-device: missing argument");
    rc = enc_begin(&e, err, errlen);
    if (rc < 0)
        return rc;
    enc_key(&e, "id");
    enc_str(&e, id, "id");
    return enc_end(&e, out, out_len);
}

/* ---------------------------------------------------------------- decoders */

/* The decoders use yajl's event parser instead of yajl_tree: vm.info is
 * read before every attach and is mostly fields cocoon ignores (cpus,
 * payload, disks, device_tree resources), so walking events and keeping
 * only the wanted values avoids building and freeing a node per value.
 * It also takes a length, so the input needs no NUL-terminated copy.
 *
 * Each open container is a frame whose kind says what it is in the schema;
 * a key in a known object selects a slot that says what value is expected
 * there.  Values under unknown keys get the IGNORE slot and are skipped
 * whole, whatever their type. */

typedef enum node {
    N_IGNORE,
    /* containers */
    N_VM_ROOT, N_CONFIG, N_MEMORY, N_ZONES, N_ZONE, N_FS_ARR, N_FS,
    N_DEV_ARR, N_DEV, N_TREE, N_PCI_ROOT,
    /* scalars */
    S_STATE, S_MEM_SIZE, S_MEM_SHARED, S_MEM_HUGE, S_ZONE_SHARED,
    S_ZONE_HUGE, S_FS_ID, S_FS_TAG, S_FS_SOCKET, S_FS_NQ, S_FS_QS,
    S_DEV_ID, S_DEV_PATH, S_PCI_ID, S_PCI_BDF,
} node;

typedef struct field {
    node parent;
    const char *key;
    size_t len;
    node slot;
} field;

#define F(parent, key, slot) { parent, key, sizeof(key) - 1, slot }

static const field fields[] = {
    F(N_VM_ROOT, "state", S_STATE),
    F(N_VM_ROOT, "config", N_CONFIG),
    F(N_VM_ROOT, "device_tree", N_TREE),
    F(N_CONFIG, "memory", N_MEMORY),
    F(N_CONFIG, "fs", N_FS_ARR),
    F(N_CONFIG, "devices", N_DEV_ARR),
    F(N_MEMORY, "size", S_MEM_SIZE),
    F(N_MEMORY, "shared", S_MEM_SHARED),
    F(N_MEMORY, "hugepages", S_MEM_HUGE),
    F(N_MEMORY, "zones", N_ZONES),
    F(N_ZONE, "shared", S_ZONE_SHARED),
    F(N_ZONE, "hugepages", S_ZONE_HUGE),
    F(N_FS, "id", S_FS_ID),
    F(N_FS, "tag", S_FS_TAG),
    F(N_FS, "socket", S_FS_SOCKET),
    F(N_FS, "num_queues", S_FS_NQ),
    F(N_FS, "queue_size", S_FS_QS),
    F(N_DEV, "id", S_DEV_ID),
    F(N_DEV, "path", S_DEV_PATH),
    F(N_PCI_ROOT, "id", S_PCI_ID),
    F(N_PCI_ROOT, "bdf", S_PCI_BDF),
};

#undef F

/* Where each object kind's keys start in fields[] (grouped by parent), so a
 * key is compared only with its own object's few names. */
static const unsigned char field_first[] = {
    [N_VM_ROOT] = 0, [N_CONFIG] = 3, [N_MEMORY] = 6, [N_ZONE] = 10,
    [N_FS] = 12, [N_DEV] = 17, [N_PCI_ROOT] = 19,
};

typedef struct frame {
    node kind;
    bool is_array;
    node slot;          /* what the next value in this container is */
    const char *key;    /* static name of the current key, for error paths */
    size_t count;       /* array elements started so far */
} frame;

typedef struct dec {
    frame stack[JSON_MAX_DEPTH];
    size_t depth;
    node top;           /* what the document itself must be */
    json_vm_info *vi;
    json_pci_info *pi;
    size_t cap_zones, cap_fs, cap_devices, cap_tree;
    int rc;
    char *err;
    size_t errlen;
} dec;

/* Writes the dotted path of the value being parsed, e.g. config.fs[0].tag.
 * Only called on error, so it may be slow. */
static void dec_path(const dec *d, char *buf, size_t n)
{
    size_t off = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < d->depth && off < n; i++) {
        const frame *f = &d->stack[i];
        int w;
        if (f->is_array)
            w = snprintf(buf + off, n - off, "[%zu]", f->count ? f->count - 1 : 0);
        else if (f->key)
            w = snprintf(buf + off, n - off, "%s%s", off ? "." : "", f->key);
        else
            w = 0;
        if (w < 0)
            break;
        off += (size_t)w;
    }
    if (buf[0] == '\0')
        snprintf(buf, n, "top level");
}

static int dec_fail(dec *d, int rc, const char *what)
{
    char path[256];

    if (d->rc == 0) {
        dec_path(d, path, sizeof(path));
        d->rc = eng_errf(d->err, d->errlen, rc, "%s: %s", path, what);
    }
    return 0;
}

static int dec_nomem(dec *d)
{
    if (d->rc == 0)
        d->rc = eng_errf(d->err, d->errlen, -ENOMEM, "decode: out of memory");
    return 0;
}

/* The slot the next value fills: the top frame's slot, or the document. */
static node dec_slot(const dec *d)
{
    return d->depth ? d->stack[d->depth - 1].slot : d->top;
}

/* Called for every value: counts array elements so error paths carry the
 * right index. */
static void dec_value_start(dec *d)
{
    if (d->depth && d->stack[d->depth - 1].is_array)
        d->stack[d->depth - 1].count++;
}

static const char *expected_text(node slot)
{
    switch (slot) {
    case N_VM_ROOT: case N_CONFIG: case N_MEMORY: case N_ZONE: case N_FS:
    case N_DEV: case N_TREE: case N_PCI_ROOT:
        return "expected object";
    case N_ZONES: case N_FS_ARR: case N_DEV_ARR:
        return "expected array";
    case S_MEM_SHARED: case S_MEM_HUGE: case S_ZONE_SHARED: case S_ZONE_HUGE:
        return "expected boolean";
    case S_FS_NQ: case S_FS_QS:
        return "expected integer";
    case S_MEM_SIZE:
        return "expected non-negative integer";
    case S_FS_ID: case S_DEV_ID:
        return "expected string or null";
    default:
        return "expected string";
    }
}

static int dec_wrong(dec *d, node slot)
{
    return dec_fail(d, -EBADMSG, expected_text(slot));
}

/* Grows *arr (elements of size sz) to hold one more than *n. */
static int grow(void **arr, size_t *cap, size_t n, size_t sz)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 4;
    void *p = reallocarray(*arr, ncap, sz);
    if (!p)
        return -ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

static char **str_target(dec *d, node slot)
{
    json_vm_info *vi = d->vi;

    switch (slot) {
    case S_STATE: return &vi->state;
    case S_FS_ID: return &vi->fs[vi->n_fs - 1].id;
    case S_FS_TAG: return &vi->fs[vi->n_fs - 1].tag;
    case S_FS_SOCKET: return &vi->fs[vi->n_fs - 1].socket;
    case S_DEV_ID: return &vi->devices[vi->n_devices - 1].id;
    case S_DEV_PATH: return &vi->devices[vi->n_devices - 1].path;
    case S_PCI_ID: return &d->pi->id;
    case S_PCI_BDF: return &d->pi->bdf;
    default: return NULL;
    }
}

static int cb_null(void *ctx)
{
    dec *d = ctx;
    node slot = dec_slot(d);
    char **t;

    dec_value_start(d);
    switch (slot) {
    case N_IGNORE:
        return 1;
    /* Older CH serialises absent optional sections as null. */
    case N_CONFIG: case N_MEMORY: case N_ZONES: case N_FS_ARR:
    case N_DEV_ARR: case N_TREE:
        return 1;
    case S_FS_ID: case S_DEV_ID:
        t = str_target(d, slot);
        free(*t);
        *t = NULL;
        return 1;
    default:
        return dec_wrong(d, slot);
    }
}

static int cb_boolean(void *ctx, int val)
{
    dec *d = ctx;
    node slot = dec_slot(d);
    json_vm_info *vi = d->vi;

    dec_value_start(d);
    switch (slot) {
    case N_IGNORE: return 1;
    case S_MEM_SHARED: vi->mem_shared = val; return 1;
    case S_MEM_HUGE: vi->mem_hugepages = val; return 1;
    case S_ZONE_SHARED: vi->zones[vi->n_zones - 1].shared = val; return 1;
    case S_ZONE_HUGE: vi->zones[vi->n_zones - 1].hugepages = val; return 1;
    default: return dec_wrong(d, slot);
    }
}

/* Accepts only plain JSON integers ("-12", "0"), no fraction or exponent:
 * a queue count of 1.5 is a wrong type, not something to round. */
static bool parse_int(const char *s, size_t len, bool allow_neg, uint64_t *mag, bool *neg)
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

static int cb_number(void *ctx, const char *s, size_t len)
{
    dec *d = ctx;
    node slot = dec_slot(d);
    json_vm_info *vi = d->vi;
    uint64_t mag;
    bool neg;

    dec_value_start(d);
    switch (slot) {
    case N_IGNORE:
        return 1;
    case S_MEM_SIZE:
        if (!parse_int(s, len, false, &mag, &neg))
            return dec_wrong(d, slot);
        vi->mem_size = mag;
        return 1;
    case S_FS_NQ: case S_FS_QS: {
        if (!parse_int(s, len, true, &mag, &neg) ||
            mag > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
            return dec_wrong(d, slot);
        int64_t v = neg ? (int64_t)(0 - mag) : (int64_t)mag;
        json_fs *f = &vi->fs[vi->n_fs - 1];
        if (slot == S_FS_NQ)
            f->num_queues = v;
        else
            f->queue_size = v;
        return 1;
    }
    default:
        return dec_wrong(d, slot);
    }
}

static int cb_string(void *ctx, const unsigned char *s, size_t len)
{
    dec *d = ctx;
    node slot = dec_slot(d);
    char **t;
    char *copy;

    dec_value_start(d);
    if (slot == N_IGNORE)
        return 1;
    t = str_target(d, slot);
    if (!t)
        return dec_wrong(d, slot);
    /* A "\u0000" inside a kept string would silently shorten it as a C
     * string; reject instead of truncating. */
    if (memchr(s, '\0', len))
        return dec_fail(d, -EBADMSG, "string contains a NUL character");
    copy = malloc(len + 1);
    if (!copy)
        return dec_nomem(d);
    memcpy(copy, s, len);
    copy[len] = '\0';
    free(*t);           /* a repeated key: the last value wins */
    *t = copy;
    return 1;
}

static int dec_push(dec *d, node kind, bool is_array)
{
    frame *f;

    if (d->depth == JSON_MAX_DEPTH) {
        /* The path would be as deep as the nesting: say only what broke. */
        if (d->rc == 0)
            d->rc = eng_errf(d->err, d->errlen, -EBADMSG,
                             "JSON nesting deeper than %d levels", JSON_MAX_DEPTH);
        return 0;
    }
    f = &d->stack[d->depth++];
    f->kind = kind;
    f->is_array = is_array;
    f->key = NULL;
    f->count = 0;
    f->slot = N_IGNORE;
    if (is_array) {
        switch (kind) {
        case N_ZONES: f->slot = N_ZONE; break;
        case N_FS_ARR: f->slot = N_FS; break;
        case N_DEV_ARR: f->slot = N_DEV; break;
        default: break;
        }
    }
    return 1;
}

static int cb_start_map(void *ctx)
{
    dec *d = ctx;
    node slot = dec_slot(d);
    json_vm_info *vi = d->vi;

    dec_value_start(d);
    switch (slot) {
    case N_IGNORE: case N_VM_ROOT: case N_CONFIG: case N_MEMORY:
    case N_TREE: case N_PCI_ROOT:
        break;
    case N_ZONE:
        if (grow((void **)&vi->zones, &d->cap_zones, vi->n_zones, sizeof(*vi->zones)) < 0)
            return dec_nomem(d);
        memset(&vi->zones[vi->n_zones++], 0, sizeof(*vi->zones));
        break;
    case N_FS:
        if (grow((void **)&vi->fs, &d->cap_fs, vi->n_fs, sizeof(*vi->fs)) < 0)
            return dec_nomem(d);
        memset(&vi->fs[vi->n_fs++], 0, sizeof(*vi->fs));
        break;
    case N_DEV:
        if (grow((void **)&vi->devices, &d->cap_devices, vi->n_devices,
                 sizeof(*vi->devices)) < 0)
            return dec_nomem(d);
        memset(&vi->devices[vi->n_devices++], 0, sizeof(*vi->devices));
        break;
    default:
        return dec_wrong(d, slot);
    }
    return dec_push(d, slot, false);
}

static int cb_map_key(void *ctx, const unsigned char *key, size_t len)
{
    dec *d = ctx;
    frame *f = &d->stack[d->depth - 1];

    f->slot = N_IGNORE;
    f->key = NULL;
    if (f->kind == N_IGNORE)
        return 1;
    if (f->kind == N_TREE) {
        json_vm_info *vi = d->vi;
        char *copy;
        if (memchr(key, '\0', len))
            return dec_fail(d, -EBADMSG, "key contains a NUL character");
        if (grow((void **)&vi->tree_ids, &d->cap_tree, vi->n_tree_ids,
                 sizeof(*vi->tree_ids)) < 0)
            return dec_nomem(d);
        copy = malloc(len + 1);
        if (!copy)
            return dec_nomem(d);
        memcpy(copy, key, len);
        copy[len] = '\0';
        vi->tree_ids[vi->n_tree_ids++] = copy;
        return 1;
    }
    if ((size_t)f->kind >= sizeof(field_first))
        return 1;
    for (size_t i = field_first[f->kind];
         i < sizeof(fields) / sizeof(fields[0]) && fields[i].parent == f->kind; i++) {
        if (fields[i].len == len && memcmp(fields[i].key, key, len) == 0) {
            f->slot = fields[i].slot;
            f->key = fields[i].key;
            break;
        }
    }
    return 1;
}

static int cb_end_map(void *ctx)
{
    dec *d = ctx;
    frame *f = &d->stack[d->depth - 1];
    const char *missing = NULL;

    /* Fields the callers compare against must exist; reporting them here
     * keeps NULL checks out of every caller. */
    switch (f->kind) {
    case N_VM_ROOT:
        if (!d->vi->state)
            missing = "state";
        break;
    case N_FS: {
        const json_fs *fs = &d->vi->fs[d->vi->n_fs - 1];
        if (!fs->tag)
            missing = "tag";
        else if (!fs->socket)
            missing = "socket";
        break;
    }
    case N_DEV:
        if (!d->vi->devices[d->vi->n_devices - 1].path)
            missing = "path";
        break;
    case N_PCI_ROOT:
        if (!d->pi->id)
            missing = "id";
        break;
    default:
        break;
    }
    if (missing) {
        f->key = missing;
        return dec_fail(d, -EBADMSG, "missing");
    }
    d->depth--;
    return 1;
}

static int cb_start_array(void *ctx)
{
    dec *d = ctx;
    node slot = dec_slot(d);

    dec_value_start(d);
    switch (slot) {
    case N_IGNORE: case N_ZONES: case N_FS_ARR: case N_DEV_ARR:
        return dec_push(d, slot, true);
    default:
        return dec_wrong(d, slot);
    }
}

static int cb_end_array(void *ctx)
{
    dec *d = ctx;

    d->depth--;
    return 1;
}

/* ------------------------------------------------------------- the lexer */

/* The decoders' own strict JSON reader (RFC 8259: no comments, no trailing
 * commas, UTF-8 strings).  vm.info is read before every attach, and yajl's
 * byte-at-a-time lexer was most of a client's CPU per attach; this one
 * scans runs of plain string bytes at once, hands unescaped strings to the
 * callbacks without copying them, and walks the subtrees cocoon ignores
 * (cpus, payload, disks, device_tree resources, ...) without any callback,
 * checking only their syntax. */

typedef struct jp {
    const unsigned char *p, *end;
    unsigned char open[JSON_MAX_DEPTH];   /* '{' or '[' per level */
    size_t depth;
    size_t skip_from;       /* depth at which an ignored container began, 0: none */
    char *scratch;          /* unescaped strings; owned */
    size_t scratch_cap;
    const char *why;        /* syntax error text */
} jp;

/* yajl's whitespace set, \v and \f included, so that what the old decoder
 * accepted still decodes. */
static void jp_ws(jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || (*j->p >= '\t' && *j->p <= '\r')))
        j->p++;
}

static int jp_hex(const unsigned char *h)
{
    int v = 0;

    for (int i = 0; i < 4; i++) {
        int c = h[i], x;

        if (c >= '0' && c <= '9')
            x = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            x = (c | 0x20) - 'a' + 10;
        else
            return -1;
        v = v * 16 + x;
    }
    return v;
}

static size_t jp_utf8_put(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A string starting at the opening quote.  The result points into the
 * input when there is no escape, else into the scratch buffer.  0, or -EBADMSG
 * (why set) or -ENOMEM. */
/* Byte classes inside a string: 0 plain ASCII, 1 ends the plain run ('"',
 * '\\', a control character), 2 part of a multi-byte UTF-8 sequence. */
static const unsigned char jp_str_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

static int jp_string(jp *j, const char **out, size_t *len)
{
    const unsigned char *start = ++j->p, *q = start;
    bool high = false;
    size_t o;

    for (;;) {
        unsigned char c = 0;

        while (q < j->end && (c = jp_str_class[*q]) == 0)
            q++;
        if (c != 2 || q == j->end)
            break;
        high = true;
        q++;
    }
    if (q == j->end) {
        j->why = "parse error: premature EOF";
        return -EBADMSG;
    }
    if (*q < 0x20) {
        j->why = "lexical error: control character in string";
        return -EBADMSG;
    }
    if (*q == '"') {
        if (high && !utf8_valid(start, (size_t)(q - start))) {
            j->why = "lexical error: invalid UTF-8 in string";
            return -EBADMSG;
        }
        *out = (const char *)start;
        *len = (size_t)(q - start);
        j->p = q + 1;
        return 0;
    }
    /* Escapes: decode into scratch.  Unescaping never lengthens the text. */
    if (j->scratch_cap < (size_t)(j->end - start)) {
        size_t cap = (size_t)(j->end - start);
        char *ns = malloc(cap);

        if (!ns)
            return -ENOMEM;
        free(j->scratch);
        j->scratch = ns;
        j->scratch_cap = cap;
    }
    o = (size_t)(q - start);
    memcpy(j->scratch, start, o);
    while (q < j->end && *q != '"') {
        if (*q < 0x20) {
            j->why = "lexical error: control character in string";
            return -EBADMSG;
        }
        if (*q != '\\') {
            high |= *q >= 0x80;
            j->scratch[o++] = (char)*q++;
            continue;
        }
        if (j->end - q < 2)
            break;
        switch (q[1]) {
        case '"': case '\\': case '/':
            j->scratch[o++] = (char)q[1];
            q += 2;
            continue;
        case 'b': j->scratch[o++] = '\b'; q += 2; continue;
        case 'f': j->scratch[o++] = '\f'; q += 2; continue;
        case 'n': j->scratch[o++] = '\n'; q += 2; continue;
        case 'r': j->scratch[o++] = '\r'; q += 2; continue;
        case 't': j->scratch[o++] = '\t'; q += 2; continue;
        case 'u': {
            int hi = j->end - q >= 6 ? jp_hex(q + 2) : -2;
            uint32_t cp;

            if (hi == -2)
                break;
            if (hi < 0) {
                j->why = "lexical error: invalid \\u escape in string";
                return -EBADMSG;
            }
            q += 6;
            cp = (uint32_t)hi;
            if (cp >= 0xD800 && cp <= 0xDFFF) {
                int lo = cp <= 0xDBFF && j->end - q >= 6 && q[0] == '\\' && q[1] == 'u'
                             ? jp_hex(q + 2) : -1;

                /* Like yajl, a surrogate without its pair reads as '?'
                 * rather than failing the whole document. */
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    cp = '?';
                } else {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                    q += 6;
                }
            }
            o += jp_utf8_put(j->scratch + o, cp);
            continue;
        }
        default:
            j->why = "lexical error: invalid escape in string";
            return -EBADMSG;
        }
        break;      /* an escape cut by the end of input */
    }
    if (q >= j->end || *q != '"') {
        j->why = "parse error: premature EOF";
        return -EBADMSG;
    }
    if (high && !utf8_valid((const unsigned char *)j->scratch, o)) {
        j->why = "lexical error: invalid UTF-8 in string";
        return -EBADMSG;
    }
    *out = j->scratch;
    *len = o;
    j->p = q + 1;
    return 0;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int jp_number(jp *j, const char **out, size_t *len)
{
    const unsigned char *q = j->p;

    if (q < j->end && *q == '-')
        q++;
    if (q == j->end)
        goto eof;
    if (*q == '0') {
        q++;
    } else if (*q >= '1' && *q <= '9') {
        while (q < j->end && *q >= '0' && *q <= '9')
            q++;
    } else {
        goto bad;
    }
    if (q < j->end && *q == '.') {
        if (++q == j->end)
            goto eof;
        if (*q < '0' || *q > '9')
            goto bad;
        while (q < j->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < j->end && (*q == 'e' || *q == 'E')) {
        if (++q < j->end && (*q == '+' || *q == '-'))
            q++;
        if (q == j->end)
            goto eof;
        if (*q < '0' || *q > '9')
            goto bad;
        while (q < j->end && *q >= '0' && *q <= '9')
            q++;
    }
    *out = (const char *)j->p;
    *len = (size_t)(q - j->p);
    j->p = q;
    return 0;
eof:
    j->why = "parse error: premature EOF";
    return -EBADMSG;
bad:
    j->why = "lexical error: malformed number";
    return -EBADMSG;
}

static bool jp_word(jp *j, const char *w, size_t n)
{
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
        return false;
    j->p += n;
    return true;
}

/* Callbacks run unless inside an ignored container.  A callback returning 0
 * has set d->rc. */
#define JP_CB(call)                                   \
    do {                                              \
        if (!j->skip_from && !(call))                 \
            return d->rc ? d->rc : -ECANCELED;        \
    } while (0)

static int jp_open(jp *j, dec *d, unsigned char kind)
{
    if (j->depth == JSON_MAX_DEPTH) {
        if (d->rc == 0)
            d->rc = eng_errf(d->err, d->errlen, -EBADMSG,
                             "JSON nesting deeper than %d levels", JSON_MAX_DEPTH);
        return d->rc;
    }
    /* A container under an ignored key: no callbacks until it closes. */
    if (!j->skip_from && dec_slot(d) == N_IGNORE) {
        dec_value_start(d);
        j->skip_from = j->depth + 1;
    }
    JP_CB(kind == '{' ? cb_start_map(d) : cb_start_array(d));
    j->open[j->depth++] = kind;
    j->p++;
    return 0;
}

static int jp_close(jp *j, dec *d)
{
    unsigned char kind = j->open[--j->depth];

    j->p++;
    JP_CB(kind == '{' ? cb_end_map(d) : cb_end_array(d));
    if (j->skip_from == j->depth + 1)
        j->skip_from = 0;
    return 0;
}

static int jp_run(jp *j, dec *d)
{
    const char *s;
    size_t n;
    int rc;

value:
    jp_ws(j);
    if (j->p == j->end)
        goto eof;
    switch (*j->p) {
    case '{':
        if ((rc = jp_open(j, d, '{')))
            return rc;
        jp_ws(j);
        if (j->p < j->end && *j->p == '}') {
            if ((rc = jp_close(j, d)))
                return rc;
            goto after;
        }
        goto key;
    case '[':
        if ((rc = jp_open(j, d, '[')))
            return rc;
        jp_ws(j);
        if (j->p < j->end && *j->p == ']') {
            if ((rc = jp_close(j, d)))
                return rc;
            goto after;
        }
        goto value;
    case '"':
        if ((rc = jp_string(j, &s, &n)))
            return rc;
        JP_CB(cb_string(d, (const unsigned char *)s, n));
        goto after;
    case 't':
        if (!jp_word(j, "true", 4))
            goto bad;
        JP_CB(cb_boolean(d, 1));
        goto after;
    case 'f':
        if (!jp_word(j, "false", 5))
            goto bad;
        JP_CB(cb_boolean(d, 0));
        goto after;
    case 'n':
        if (!jp_word(j, "null", 4))
            goto bad;
        JP_CB(cb_null(d));
        goto after;
    default:
        if (*j->p != '-' && (*j->p < '0' || *j->p > '9'))
            goto bad;
        if ((rc = jp_number(j, &s, &n)))
            return rc;
        JP_CB(cb_number(d, s, n));
        goto after;
    }

key:
    jp_ws(j);
    if (j->p == j->end)
        goto eof;
    if (*j->p != '"') {
        j->why = "parse error: invalid object key (must be a string)";
        return -EBADMSG;
    }
    if ((rc = jp_string(j, &s, &n)))
        return rc;
    JP_CB(cb_map_key(d, (const unsigned char *)s, n));
    jp_ws(j);
    if (j->p == j->end)
        goto eof;
    if (*j->p != ':') {
        j->why = "parse error: object key and value must be separated by a colon (':')";
        return -EBADMSG;
    }
    j->p++;
    goto value;

after:
    jp_ws(j);
    if (j->depth == 0) {
        if (j->p != j->end) {
            j->why = "parse error: trailing garbage";
            return -EBADMSG;
        }
        return 0;
    }
    if (j->p == j->end)
        goto eof;
    if (*j->p == ',') {
        j->p++;
        if (j->open[j->depth - 1] == '{')
            goto key;
        goto value;
    }
    if (*j->p == (j->open[j->depth - 1] == '{' ? '}' : ']')) {
        if ((rc = jp_close(j, d)))
            return rc;
        goto after;
    }
    j->why = j->open[j->depth - 1] == '{'
                 ? "parse error: after key and value, inside map, I expect ',' or '}'"
                 : "parse error: after array element, I expect ',' or ']'";
    return -EBADMSG;

eof:
    j->why = "parse error: premature EOF";
    return -EBADMSG;
bad:
    j->why = "lexical error: invalid char in JSON text";
    return -EBADMSG;
}

#undef JP_CB

/* Runs the reader over buf with the decoder's callbacks. */
static int dec_run(dec *d, const char *buf, size_t len)
{
    jp j;
    int rc;

    if (len > JSON_MAX_BODY)
        return eng_errf(d->err, d->errlen, -EBADMSG,
                        "body of %zu bytes exceeds the %u-byte limit", len, JSON_MAX_BODY);
    j.p = (const unsigned char *)buf;
    j.end = j.p + len;
    j.depth = 0;
    j.skip_from = 0;
    j.scratch = NULL;
    j.scratch_cap = 0;
    j.why = NULL;
    rc = jp_run(&j, d);
    free(j.scratch);
    if (rc == -ENOMEM && d->rc == 0) {
        dec_nomem(d);
        return d->rc;
    }
    if (rc && j.why)
        return d->rc = eng_errf(d->err, d->errlen, -EBADMSG, "malformed JSON: %s", j.why);
    if (rc && d->rc == 0)
        d->rc = eng_errf(d->err, d->errlen, -EBADMSG, "decode canceled");
    return d->rc;
}

int json_vm_info_decode(const char *buf, size_t len, json_vm_info *out,
                        char *err, size_t errlen)
{
    dec d;
    int rc;

    if (!out)
        return eng_errf(err, errlen, -EINVAL, "vm.info: missing argument");
    memset(out, 0, sizeof(*out));
    if (!buf && len)
        return eng_errf(err, errlen, -EINVAL, "vm.info: missing argument");
    memset(&d, 0, sizeof(d));
    d.top = N_VM_ROOT;
    d.vi = out;
    d.err = err;
    d.errlen = errlen;
    rc = dec_run(&d, buf ? buf : "", len);
    if (rc == 0 && !out->state)
        rc = eng_errf(err, errlen, -EBADMSG, "state: missing");
    if (rc < 0)
        json_vm_info_fini(out);
    return rc;
}

void json_vm_info_fini(json_vm_info *vi)
{
    if (!vi)
        return;
    free(vi->state);
    free(vi->zones);
    for (size_t i = 0; i < vi->n_fs; i++) {
        free(vi->fs[i].id);
        free(vi->fs[i].tag);
        free(vi->fs[i].socket);
    }
    free(vi->fs);
    for (size_t i = 0; i < vi->n_devices; i++) {
        free(vi->devices[i].id);
        free(vi->devices[i].path);
    }
    free(vi->devices);
    for (size_t i = 0; i < vi->n_tree_ids; i++)
        free(vi->tree_ids[i]);
    free(vi->tree_ids);
    memset(vi, 0, sizeof(*vi));
}

int json_pci_info_decode(const char *buf, size_t len, json_pci_info *out,
                         char *err, size_t errlen)
{
    json_vm_info unused;
    dec d;
    int rc;

    if (!out)
        return eng_errf(err, errlen, -EINVAL, "PciDeviceInfo: missing argument");
    memset(out, 0, sizeof(*out));
    if (!buf && len)
        return eng_errf(err, errlen, -EINVAL, "PciDeviceInfo: missing argument");
    memset(&unused, 0, sizeof(unused));
    memset(&d, 0, sizeof(d));
    d.top = N_PCI_ROOT;
    d.vi = &unused;
    d.pi = out;
    d.err = err;
    d.errlen = errlen;
    rc = dec_run(&d, buf ? buf : "", len);
    if (rc == 0 && !out->id)
        rc = eng_errf(err, errlen, -EBADMSG, "id: missing");
    if (rc < 0)
        json_pci_info_fini(out);
    return rc;
}

void json_pci_info_fini(json_pci_info *pi)
{
    if (!pi)
        return;
    free(pi->id);
    free(pi->bdf);
    pi->id = NULL;
    pi->bdf = NULL;
}

/* ---------------------------------------------------------- error bodies */

typedef struct render {
    char *out;
    size_t cap;         /* bytes usable before the NUL */
    size_t len;
    size_t depth;
    size_t n;           /* strings seen */
} render;

static int r_reject(void *ctx)
{
    (void)ctx;
    return 0;
}

static int r_reject_bool(void *ctx, int v)
{
    (void)v;
    return r_reject(ctx);
}

static int r_reject_num(void *ctx, const char *s, size_t l)
{
    (void)s;
    (void)l;
    return r_reject(ctx);
}

static void r_append(render *r, const char *s, size_t len)
{
    size_t room = r->cap - r->len;

    if (len > room)
        len = room;
    memcpy(r->out + r->len, s, len);
    r->len += len;
}

static int r_string(void *ctx, const unsigned char *s, size_t len)
{
    render *r = ctx;

    if (r->depth != 1 || memchr(s, '\0', len))
        return 0;
    if (r->n++)
        r_append(r, ": ", 2);
    r_append(r, (const char *)s, len);
    return 1;
}

static int r_start_array(void *ctx)
{
    render *r = ctx;

    if (r->depth++ != 0)
        return 0;
    return 1;
}

static int r_end_array(void *ctx)
{
    render *r = ctx;

    r->depth--;
    return 1;
}

static const yajl_callbacks render_callbacks = {
    .yajl_null = r_reject,
    .yajl_boolean = r_reject_bool,
    .yajl_number = r_reject_num,
    .yajl_string = r_string,
    .yajl_start_map = r_reject,
    .yajl_start_array = r_start_array,
    .yajl_end_array = r_end_array,
};

/* A cut that lands inside a multi-byte UTF-8 sequence would leave the
 * message invalid UTF-8, which breaks the CLI's JSON output; step back to
 * the start of that sequence. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    size_t cut;

    if (len <= max)
        return len;
    cut = max;
    for (int i = 0; i < 3 && cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80; i++)
        cut--;
    if (((unsigned char)s[cut] & 0xC0) == 0x80)
        cut = max;
    return cut;
}

static size_t render_limit(size_t outlen)
{
    return outlen - 1 < JSON_ERROR_CUT ? outlen - 1 : JSON_ERROR_CUT;
}

static bool render_array(const char *body, size_t len, char *out, size_t outlen)
{
    render r;
    yajl_handle h;
    yajl_status st;
    size_t limit = render_limit(outlen);
    size_t cut;

    /* A few bytes beyond the limit let utf8_cut see whether the cut lands
     * inside a multi-byte sequence. */
    r.out = malloc(limit + 4);
    if (!r.out)
        return false;
    r.cap = limit + 4;
    r.len = 0;
    r.depth = 0;
    r.n = 0;
    h = yajl_alloc(&render_callbacks, NULL, &r);
    if (!h) {
        free(r.out);
        return false;
    }
    st = yajl_parse(h, (const unsigned char *)body, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    yajl_free(h);
    /* An empty array says nothing; the raw "[]" is more useful. */
    if (st != yajl_status_ok || r.n == 0) {
        free(r.out);
        return false;
    }
    cut = utf8_cut(r.out, r.len, limit);
    memcpy(out, r.out, cut);
    out[cut] = '\0';
    free(r.out);
    return true;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

void json_error_render(const char *body, size_t len, char *out, size_t outlen)
{
    size_t start = 0, end = len, cut;

    if (!out || outlen == 0)
        return;
    out[0] = '\0';
    if (!body || len == 0)
        return;
    while (start < end && is_space(body[start]))
        start++;
    while (end > start && is_space(body[end - 1]))
        end--;
    if (start == end)
        return;
    if (body[start] == '[' && len <= JSON_MAX_BODY &&
        render_array(body + start, end - start, out, outlen))
        return;
    cut = utf8_cut(body + start, end - start, render_limit(outlen));
    memcpy(out, body + start, cut);
    out[cut] = '\0';
}
