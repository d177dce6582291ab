#include "json/ch.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "http/base.h"
#include "json/vminfo.h"

/* Bounds on what a decoder accepts.  vm.info nests about six levels deep
 * (device_tree.<id>.resources[i].<kind>), so 64 leaves ample room while
 * keeping the frame stack a fixed array.  Anything deeper or larger is
 * rejected rather than cut. */
#define JSON_MAX_DEPTH 64
#define JSON_MAX_BODY (16u * 1024u * 1024u)
#define JSON_ERROR_CUT 1024

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
    node slot;
} field;

static const field fields[] = {
    { N_VM_ROOT, "state", S_STATE },
    { N_VM_ROOT, "config", N_CONFIG },
    { N_VM_ROOT, "device_tree", N_TREE },
    { N_CONFIG, "memory", N_MEMORY },
    { N_CONFIG, "fs", N_FS_ARR },
    { N_CONFIG, "devices", N_DEV_ARR },
    { N_MEMORY, "size", S_MEM_SIZE },
    { N_MEMORY, "shared", S_MEM_SHARED },
    { N_MEMORY, "hugepages", S_MEM_HUGE },
    { N_MEMORY, "zones", N_ZONES },
    { N_ZONE, "shared", S_ZONE_SHARED },
    { N_ZONE, "hugepages", S_ZONE_HUGE },
    { N_FS, "id", S_FS_ID },
    { N_FS, "tag", S_FS_TAG },
    { N_FS, "socket", S_FS_SOCKET },
    { N_FS, "num_queues", S_FS_NQ },
    { N_FS, "queue_size", S_FS_QS },
    { N_DEV, "id", S_DEV_ID },
    { N_DEV, "path", S_DEV_PATH },
    { N_PCI_ROOT, "id", S_PCI_ID },
    { N_PCI_ROOT, "bdf", S_PCI_BDF },
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
    size_t used;        /* of vi->strings */
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
        d->rc = base_errf(d->err, d->errlen, rc, "%s: %s", path, what);
    }
    return 0;
}

static int dec_nomem(dec *d)
{
    if (d->rc == 0)
        d->rc = base_errf(d->err, d->errlen, -ENOMEM, "decode: out of memory");
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
    case S_FS_ID: case S_DEV_ID: case S_DEV_PATH:
        return "expected string or null";
    default:
        return "expected string";
    }
}

static int dec_wrong(dec *d, node slot)
{
    return dec_fail(d, -EBADMSG, expected_text(slot));
}

/* Room for a kept vm.info string of len bytes in vi->strings, which the
 * caller sized to the body: unescaping never lengthens a string, and each
 * takes its two quotes in the body against one NUL here. */
static char *dec_keep(dec *d, size_t len)
{
    char *p = d->vi->strings + d->used;

    d->used += len + 1;
    return p;
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

    dec_value_start(d);
    switch (slot) {
    case N_IGNORE:
        return 1;
    /* Older CH serialises absent optional sections as null. */
    case N_CONFIG: case N_MEMORY: case N_ZONES: case N_FS_ARR:
    case N_DEV_ARR: case N_TREE:
        return 1;
    /* Option<...> fields: CH up to v52 wrote null where v53 omits. */
    case S_FS_ID: case S_DEV_ID: case S_DEV_PATH:
        *str_target(d, slot) = NULL;
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

/* Numbers: only plain JSON integers ("-12", "0"), no fraction or
 * exponent: a queue count of 1.5 is a wrong type, not something to round. */
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
        if (!json_int_parse(s, len, false, &mag, &neg))
            return dec_wrong(d, slot);
        vi->mem_size = mag;
        return 1;
    case S_FS_NQ: case S_FS_QS: {
        if (!json_int_parse(s, len, true, &mag, &neg) ||
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
    if (slot == S_PCI_ID || slot == S_PCI_BDF) {
        if (!(copy = malloc(len + 1)))
            return dec_nomem(d);
        free(*t);       /* a repeated key: the last value wins */
    } else {
        copy = dec_keep(d, len);
    }
    memcpy(copy, s, len);
    copy[len] = '\0';
    *t = copy;
    return 1;
}

static int dec_push(dec *d, node kind, bool is_array)
{
    frame *f;

    if (d->depth == JSON_MAX_DEPTH) {
        /* The path would be as deep as the nesting: say only what broke. */
        if (d->rc == 0)
            d->rc = base_errf(d->err, d->errlen, -EBADMSG,
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
        if (json_grow((void **)&vi->zones, &d->cap_zones, vi->n_zones, sizeof(*vi->zones), 4) < 0)
            return dec_nomem(d);
        memset(&vi->zones[vi->n_zones++], 0, sizeof(*vi->zones));
        break;
    case N_FS:
        if (json_grow((void **)&vi->fs, &d->cap_fs, vi->n_fs, sizeof(*vi->fs), 4) < 0)
            return dec_nomem(d);
        memset(&vi->fs[vi->n_fs++], 0, sizeof(*vi->fs));
        break;
    case N_DEV:
        if (json_grow((void **)&vi->devices, &d->cap_devices, vi->n_devices,
                      sizeof(*vi->devices), 4) < 0)
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
        if (json_grow((void **)&vi->tree_ids, &d->cap_tree, vi->n_tree_ids,
                      sizeof(*vi->tree_ids), 16) < 0)
            return dec_nomem(d);
        copy = dec_keep(d, len);
        memcpy(copy, key, len);
        copy[len] = '\0';
        vi->tree_ids[vi->n_tree_ids++] = copy;
        return 1;
    }
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (fields[i].parent == f->kind && strlen(fields[i].key) == len &&
            memcmp(fields[i].key, key, len) == 0) {
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

    /* Fields CH always writes must exist; reporting them here keeps NULL
     * checks out of every caller.  DeviceConfig.path is not one of them: a
     * VFIO device handed over by fd (iommufd) has none. */
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

static const yajl_callbacks dec_callbacks = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_boolean,
    .yajl_number = cb_number,
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_map_key,
    .yajl_end_map = cb_end_map,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = cb_end_array,
};

/* Runs the event parser over buf; on a syntax error the message is yajl's
 * own reason, without its trailing newline. */
static int dec_run(dec *d, const char *buf, size_t len)
{
    yajl_handle h;
    yajl_status st;

    if (len > JSON_MAX_BODY)
        return base_errf(d->err, d->errlen, -EBADMSG,
                         "body of %zu bytes exceeds the %u-byte limit", len, JSON_MAX_BODY);
    h = yajl_alloc(&dec_callbacks, NULL, d);
    if (!h)
        return base_errf(d->err, d->errlen, -ENOMEM, "JSON parser: out of memory");
    st = yajl_parse(h, (const unsigned char *)buf, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    if (st == yajl_status_error) {
        unsigned char *msg = yajl_get_error(h, 0, (const unsigned char *)buf, len);
        if (msg) {
            size_t n = strlen((char *)msg);
            while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
                msg[--n] = '\0';
            base_errf(d->err, d->errlen, -EBADMSG, "malformed JSON: %s", (char *)msg);
            yajl_free_error(h, msg);
        } else {
            base_errf(d->err, d->errlen, -EBADMSG, "malformed JSON");
        }
        d->rc = -EBADMSG;
    } else if (st == yajl_status_client_canceled && d->rc == 0) {
        d->rc = base_errf(d->err, d->errlen, -EBADMSG, "decode canceled");
    }
    yajl_free(h);
    return d->rc;
}

static int vm_info_decode(const char *buf, size_t len, json_vm_info *out, char *err,
                          size_t errlen, bool fast)
{
    dec d;
    int rc;

    if (!out)
        return base_errf(err, errlen, -EINVAL, "vm.info: missing argument");
    memset(out, 0, sizeof(*out));
    if (!buf && len)
        return base_errf(err, errlen, -EINVAL, "vm.info: missing argument");
    if (fast && len <= JSON_MAX_BODY && json_vm_info_read(buf, len, out, JSON_MAX_DEPTH) == 0)
        return 0;
    json_vm_info_fini(out);
    memset(&d, 0, sizeof(d));
    d.top = N_VM_ROOT;
    d.vi = out;
    d.err = err;
    d.errlen = errlen;
    if (len <= JSON_MAX_BODY && !(out->strings = malloc(len + 1)))
        return base_errf(err, errlen, -ENOMEM, "vm.info: out of memory");
    rc = dec_run(&d, buf ? buf : "", len);
    if (rc == 0 && !out->state)
        rc = base_errf(err, errlen, -EBADMSG, "state: missing");
    if (rc < 0)
        json_vm_info_fini(out);
    return rc;
}

int json_vm_info_decode(const char *buf, size_t len, json_vm_info *out, char *err,
                        size_t errlen)
{
    return vm_info_decode(buf, len, out, err, errlen, true);
}

int json_vm_info_decode_yajl(const char *buf, size_t len, json_vm_info *out, char *err,
                             size_t errlen)
{
    return vm_info_decode(buf, len, out, err, errlen, false);
}

void json_vm_info_fini(json_vm_info *vi)
{
    if (!vi)
        return;
    free(vi->strings);
    free(vi->zones);
    free(vi->fs);
    free(vi->devices);
    free(vi->tree_ids);
    memset(vi, 0, sizeof(*vi));
}

static int pci_info_decode(const char *buf, size_t len, json_pci_info *out, char *err,
                           size_t errlen, bool fast)
{
    json_vm_info unused;
    dec d;
    int rc;

    if (!out)
        return base_errf(err, errlen, -EINVAL, "PciDeviceInfo: missing argument");
    memset(out, 0, sizeof(*out));
    if (!buf && len)
        return base_errf(err, errlen, -EINVAL, "PciDeviceInfo: missing argument");
    if (fast && json_pci_info_read(buf, len, out) == 0)
        return 0;
    json_pci_info_fini(out);
    memset(&unused, 0, sizeof(unused));
    memset(&d, 0, sizeof(d));
    d.top = N_PCI_ROOT;
    d.vi = &unused;
    d.pi = out;
    d.err = err;
    d.errlen = errlen;
    rc = dec_run(&d, buf ? buf : "", len);
    if (rc == 0 && !out->id)
        rc = base_errf(err, errlen, -EBADMSG, "id: missing");
    if (rc < 0)
        json_pci_info_fini(out);
    return rc;
}

int json_pci_info_decode(const char *buf, size_t len, json_pci_info *out, char *err,
                         size_t errlen)
{
    return pci_info_decode(buf, len, out, err, errlen, true);
}

int json_pci_info_decode_yajl(const char *buf, size_t len, json_pci_info *out, char *err,
                              size_t errlen)
{
    return pci_info_decode(buf, len, out, err, errlen, false);
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

#define MH_OPEN "{ \"error\": \""
#define MH_OPEN_LEN (sizeof(MH_OPEN) - 1)
#define MH_CLOSE "\" }"
#define MH_CLOSE_LEN (sizeof(MH_CLOSE) - 1)

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

void json_error_render(const char *body, size_t len, char *out, size_t outlen)
{
    size_t start = 0, end = len, cut;
    bool unwrapped = false;

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
    /* micro_http, the HTTP layer under CH's API, answers its own errors
     * (parse errors, the 503 of the connection cap) with the text pasted
     * unescaped into { "error": "..." }; a raw newline inside makes that
     * invalid JSON, so it is unwrapped by its fixed frame instead. */
    if (end - start > MH_OPEN_LEN + MH_CLOSE_LEN &&
        memcmp(body + start, MH_OPEN, MH_OPEN_LEN) == 0 &&
        memcmp(body + end - MH_CLOSE_LEN, MH_CLOSE, MH_CLOSE_LEN) == 0) {
        start += MH_OPEN_LEN;
        end -= MH_CLOSE_LEN;
        unwrapped = true;
    }
    cut = utf8_cut(body + start, end - start, render_limit(outlen));
    memcpy(out, body + start, cut);
    out[cut] = '\0';
    for (size_t i = 0; unwrapped && i < cut; i++)
        if (out[i] == '\n')
            out[i] = ' ';
}
