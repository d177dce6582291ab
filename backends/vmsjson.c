#include "backends/vmsjson.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "http/base.h"

/* Our documents nest five levels deep; the cap keeps yajl_tree_free's
 * recursion bounded on hostile input. */
#define VMSJSON_MAX_DEPTH 32

/* ---- parse ------------------------------------------------------------ */

/* yajl_tree_parse wants a C string, accepts comments and recurses when it
 * frees, so the input is vetted first. */
static int vmsjson_prescan(const char *buf, size_t len, char *err, size_t errlen)
{
    int depth = 0;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (c == '\0')
            return base_errf(err, errlen, -EBADMSG, "NUL byte at offset %zu", i);
        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"')
                in_str = false;
            continue;
        }
        switch (c) {
        case '"':
            in_str = true;
            break;
        case '[':
        case '{':
            if (++depth > VMSJSON_MAX_DEPTH)
                return base_errf(err, errlen, -EBADMSG, "nesting deeper than %d",
                                 VMSJSON_MAX_DEPTH);
            break;
        case ']':
        case '}':
            depth--;
            break;
        case '/':
            return base_errf(err, errlen, -EBADMSG, "unexpected '/' at offset %zu", i);
        default:
            break;
        }
    }
    return 0;
}

static yajl_val vmsjson_obj_get(yajl_val obj, const char *key)
{
    for (size_t i = 0; i < obj->u.object.len; i++)
        if (strcmp(obj->u.object.keys[i], key) == 0)
            return obj->u.object.values[i];
    return NULL;
}

/* Optional string: absent and null both mean NULL. */
static int vmsjson_get_str(yajl_val obj, const char *key, char **out, const char *ctx,
                           char *err, size_t errlen)
{
    yajl_val v = vmsjson_obj_get(obj, key);
    *out = NULL;
    if (!v || YAJL_IS_NULL(v))
        return 0;
    if (!YAJL_IS_STRING(v))
        return base_errf(err, errlen, -EBADMSG, "%s: %s is not a string", ctx, key);
    *out = strdup(v->u.string);
    return *out ? 0 : base_errf(err, errlen, -ENOMEM, "out of memory");
}

static int vmsjson_parse_config(yajl_val c, store_vm *vm, const char *ctx,
                                char *err, size_t errlen)
{
    int rc;
    if (!YAJL_IS_OBJECT(c))
        return base_errf(err, errlen, -EBADMSG, "%s: config is not an object", ctx);
    if ((rc = vmsjson_get_str(c, "name", &vm->config.name, ctx, err, errlen)) ||
        (rc = vmsjson_get_str(c, "kernel", &vm->config.kernel, ctx, err, errlen)) ||
        (rc = vmsjson_get_str(c, "initramfs", &vm->config.initramfs, ctx, err, errlen)) ||
        (rc = vmsjson_get_str(c, "cmdline", &vm->config.cmdline, ctx, err, errlen)))
        return rc;
    yajl_val v = vmsjson_obj_get(c, "cpu");
    if (v && !YAJL_IS_NULL(v)) {
        if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < 0 || YAJL_GET_INTEGER(v) > INT_MAX)
            return base_errf(err, errlen, -EBADMSG, "%s: cpu is not a count", ctx);
        vm->config.cpu = (int)YAJL_GET_INTEGER(v);
    }
    v = vmsjson_obj_get(c, "memory");
    if (v && !YAJL_IS_NULL(v)) {
        if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < 0)
            return base_errf(err, errlen, -EBADMSG, "%s: memory is not a byte count", ctx);
        vm->config.memory = (uint64_t)YAJL_GET_INTEGER(v);
    }
    v = vmsjson_obj_get(c, "shared_memory");
    if (v && !YAJL_IS_NULL(v)) {
        if (!YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v))
            return base_errf(err, errlen, -EBADMSG, "%s: shared_memory is not a bool", ctx);
        vm->config.shared_memory = YAJL_IS_TRUE(v);
    }
    v = vmsjson_obj_get(c, "disks");
    if (v && !YAJL_IS_NULL(v)) {
        if (!YAJL_IS_ARRAY(v))
            return base_errf(err, errlen, -EBADMSG, "%s: disks is not an array", ctx);
        size_t n = v->u.array.len;
        if (n) {
            vm->config.disks = calloc(n, sizeof *vm->config.disks);
            if (!vm->config.disks)
                return base_errf(err, errlen, -ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++) {
            yajl_val d = v->u.array.values[i];
            if (!YAJL_IS_STRING(d))
                return base_errf(err, errlen, -EBADMSG, "%s: disks[%zu] is not a string",
                                 ctx, i);
            vm->config.disks[i] = strdup(d->u.string);
            if (!vm->config.disks[i])
                return base_errf(err, errlen, -ENOMEM, "out of memory");
            vm->config.n_disks = i + 1;
        }
    }
    return 0;
}

int vmsjson_tree(const char *buf, size_t len, yajl_val *out, char *err, size_t errlen)
{
    char ebuf[256];
    int rc;

    *out = NULL;
    if ((rc = vmsjson_prescan(buf, len, err, errlen)))
        return rc;
    char *text = malloc(len + 1);
    if (!text)
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    memcpy(text, buf, len);
    text[len] = '\0';
    ebuf[0] = '\0';
    *out = yajl_tree_parse(text, ebuf, sizeof ebuf);
    free(text);
    if (!*out) {
        /* yajl's message spans lines and echoes input; the first line is
         * the reason. */
        ebuf[strcspn(ebuf, "\n")] = '\0';
        return base_errf(err, errlen, -EBADMSG, "invalid JSON: %s",
                         ebuf[0] ? ebuf : "parse error");
    }
    return 0;
}

int vmsjson_vm_parse(const char *key, yajl_val r, const char *backend, store_vm *vm,
                            char *err, size_t errlen)
{
    char q[128], ctx[160];
    int rc;
    memset(vm, 0, sizeof *vm);
    vm->backend = backend;
    snprintf(ctx, sizeof ctx, "vms[%s]", base_quote(q, sizeof q, key));
    if (!store_id_valid(key))
        return base_errf(err, errlen, -EBADMSG, "%s: not a VM id", ctx);
    if (!YAJL_IS_OBJECT(r))
        return base_errf(err, errlen, -EBADMSG, "%s: record is not an object", ctx);
    yajl_val v = vmsjson_obj_get(r, "id");
    if (!v || !YAJL_IS_STRING(v) || strcmp(v->u.string, key) != 0)
        return base_errf(err, errlen, -EBADMSG, "%s: id does not match its key", ctx);
    memcpy(vm->id, key, STORE_ID_LEN + 1);
    v = vmsjson_obj_get(r, "hypervisor");
    if (v && !YAJL_IS_NULL(v)) {
        if (!YAJL_IS_STRING(v) || strcmp(v->u.string, store_hypervisor_name(backend)) != 0)
            return base_errf(err, errlen, -EBADMSG, "%s: hypervisor is not %s", ctx,
                             store_hypervisor_name(backend));
    }
    v = vmsjson_obj_get(r, "state");
    if (!v || !YAJL_IS_STRING(v) || store_state_parse(v->u.string, &vm->state) < 0)
        return base_errf(err, errlen, -EBADMSG, "%s: missing or unknown state", ctx);
    v = vmsjson_obj_get(r, "config");
    if (v && !YAJL_IS_NULL(v) && (rc = vmsjson_parse_config(v, vm, ctx, err, errlen)))
        return rc;
    if ((rc = vmsjson_get_str(r, "run_dir", &vm->run_dir, ctx, err, errlen)) ||
        (rc = vmsjson_get_str(r, "log_dir", &vm->log_dir, ctx, err, errlen)) ||
        (rc = vmsjson_get_str(r, "binary", &vm->binary, ctx, err, errlen)) ||
        (rc = vmsjson_get_str(r, "created_at", &vm->created_at, ctx, err, errlen)) ||
        (rc = vmsjson_get_str(r, "updated_at", &vm->updated_at, ctx, err, errlen)) ||
        (rc = vmsjson_get_str(r, "started_at", &vm->started_at, ctx, err, errlen)))
        return rc;
    return 0;
}

static int vmsjson_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

typedef struct vmsjson_pair {
    const char *name, *id;
} vmsjson_pair;

static int vmsjson_cmp_pair(const void *a, const void *b)
{
    return strcmp(((const vmsjson_pair *)a)->name, ((const vmsjson_pair *)b)->name);
}

/* The names map is an index of the records; it must be exactly the set of
 * (name, id) pairs of the named records, or the file was edited or damaged.
 * Sorting both sides keeps this O(n log n) for large fleets. */
static int vmsjson_check_names(const store_db *db, yajl_val names, char *err, size_t errlen)
{
    size_t nn = names->u.object.len, nr = 0;
    int rc = 0;
    const char **ids = malloc((db->n ? db->n : 1) * sizeof *ids);
    vmsjson_pair *rec = malloc((db->n ? db->n : 1) * sizeof *rec);
    vmsjson_pair *idx = malloc((nn ? nn : 1) * sizeof *idx);
    if (!ids || !rec || !idx) {
        rc = base_errf(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < db->n; i++) {
        ids[i] = db->vms[i].id;
        if (db->vms[i].config.name)
            rec[nr++] = (vmsjson_pair){ db->vms[i].config.name, db->vms[i].id };
    }
    qsort(ids, db->n, sizeof *ids, vmsjson_cmp_str);
    for (size_t i = 1; i < db->n; i++) {
        if (strcmp(ids[i - 1], ids[i]) == 0) {
            rc = base_errf(err, errlen, -EBADMSG, "duplicate VM id %s", ids[i]);
            goto out;
        }
    }
    for (size_t i = 0; i < nn; i++) {
        yajl_val v = names->u.object.values[i];
        if (!YAJL_IS_STRING(v)) {
            rc = base_errf(err, errlen, -EBADMSG, "names: value is not a string");
            goto out;
        }
        idx[i] = (vmsjson_pair){ names->u.object.keys[i], v->u.string };
    }
    qsort(rec, nr, sizeof *rec, vmsjson_cmp_pair);
    qsort(idx, nn, sizeof *idx, vmsjson_cmp_pair);
    if (nr != nn) {
        rc = base_errf(err, errlen, -EBADMSG,
                       "names map has %zu entries for %zu named VMs", nn, nr);
        goto out;
    }
    for (size_t i = 0; i < nr; i++) {
        char q[128];
        if (strcmp(rec[i].name, idx[i].name) != 0 || strcmp(rec[i].id, idx[i].id) != 0 ||
            (i > 0 && strcmp(rec[i - 1].name, rec[i].name) == 0)) {
            rc = base_errf(err, errlen, -EBADMSG, "names map does not match VM %s (name %s)",
                           rec[i].id, base_quote(q, sizeof q, rec[i].name));
            goto out;
        }
    }
out:
    free(ids);
    free(rec);
    free(idx);
    return rc;
}

int vmsjson_parse(const char *buf, size_t len, const char *backend, store_db *db,
                  char *err, size_t errlen)
{
    int rc;
    memset(db, 0, sizeof *db);
    const char *be = store_backend_static(backend);
    if (!be)
        return base_errf(err, errlen, -EINVAL, "unknown backend %s", backend ? backend : "(null)");
    db->backend = be;
    yajl_val root;
    if ((rc = vmsjson_tree(buf, len, &root, err, errlen)))
        return rc;
    yajl_val vms = YAJL_IS_OBJECT(root) ? vmsjson_obj_get(root, "vms") : NULL;
    yajl_val names = YAJL_IS_OBJECT(root) ? vmsjson_obj_get(root, "names") : NULL;
    if (!YAJL_IS_OBJECT(root)) {
        rc = base_errf(err, errlen, -EBADMSG, "top level is not an object");
        goto fail;
    }
    if (!vms || !YAJL_IS_OBJECT(vms)) {
        rc = base_errf(err, errlen, -EBADMSG, "\"vms\" missing or not an object");
        goto fail;
    }
    if (!names || !YAJL_IS_OBJECT(names)) {
        rc = base_errf(err, errlen, -EBADMSG, "\"names\" missing or not an object");
        goto fail;
    }
    if (vms->u.object.len) {
        db->vms = calloc(vms->u.object.len, sizeof *db->vms);
        if (!db->vms) {
            rc = base_errf(err, errlen, -ENOMEM, "out of memory");
            goto fail;
        }
    }
    for (size_t i = 0; i < vms->u.object.len; i++) {
        rc = vmsjson_vm_parse(vms->u.object.keys[i], vms->u.object.values[i], be,
                              &db->vms[i], err, errlen);
        db->n = i + 1;
        if (rc)
            goto fail;
    }
    if ((rc = vmsjson_check_names(db, names, err, errlen)))
        goto fail;
    yajl_tree_free(root);
    return 0;
fail:
    yajl_tree_free(root);
    store_db_fini(db);
    db->backend = be;
    return rc;
}

/* ---- serialize -------------------------------------------------------- */

static const char *vmsjson_gen_reason(yajl_gen_status s)
{
    switch (s) {
    case yajl_gen_status_ok: return "ok";
    case yajl_gen_keys_must_be_strings: return "keys must be strings";
    case yajl_max_depth_exceeded: return "max depth exceeded";
    case yajl_gen_in_error_state: return "generator in error state";
    case yajl_gen_generation_complete: return "generation already complete";
    case yajl_gen_invalid_number: return "invalid number";
    case yajl_gen_no_buf: return "no buffer";
    case yajl_gen_invalid_string: return "invalid UTF-8 in string";
    }
    return "unknown generator error";
}

typedef struct vmsjson_gen {
    yajl_gen g;
    yajl_gen_status st;
} vmsjson_gen;

/* Each helper is a no-op once a step failed, so the writer reads as the
 * document it produces and the first failure is the one reported. */
static void sg_str(vmsjson_gen *s, const char *str)
{
    if (s->st == yajl_gen_status_ok)
        s->st = yajl_gen_string(s->g, (const unsigned char *)str, strlen(str));
}

static void sg_kv(vmsjson_gen *s, const char *key, const char *val)
{
    if (!val)
        return;
    sg_str(s, key);
    sg_str(s, val);
}

static void sg_int(vmsjson_gen *s, const char *key, long long v)
{
    sg_str(s, key);
    if (s->st == yajl_gen_status_ok)
        s->st = yajl_gen_integer(s->g, v);
}

static void sg_open(vmsjson_gen *s)
{
    if (s->st == yajl_gen_status_ok)
        s->st = yajl_gen_map_open(s->g);
}

static void sg_close(vmsjson_gen *s)
{
    if (s->st == yajl_gen_status_ok)
        s->st = yajl_gen_map_close(s->g);
}

yajl_gen_status vmsjson_vm_gen(yajl_gen g, const store_vm *vm, const char *state_override)
{
    vmsjson_gen st = { g, yajl_gen_status_ok }, *s = &st;

    sg_open(s);
    sg_kv(s, "id", vm->id);
    sg_kv(s, "hypervisor", store_hypervisor_name(vm->backend));
    sg_kv(s, "state", state_override ? state_override : store_state_name(vm->state));
    sg_str(s, "config");
    sg_open(s);
    sg_kv(s, "name", vm->config.name);
    sg_int(s, "cpu", vm->config.cpu);
    sg_int(s, "memory", (long long)vm->config.memory);
    if (vm->config.shared_memory) {
        sg_str(s, "shared_memory");
        if (s->st == yajl_gen_status_ok)
            s->st = yajl_gen_bool(s->g, 1);
    }
    sg_kv(s, "kernel", vm->config.kernel);
    sg_kv(s, "initramfs", vm->config.initramfs);
    sg_kv(s, "cmdline", vm->config.cmdline);
    if (vm->config.n_disks) {
        sg_str(s, "disks");
        if (s->st == yajl_gen_status_ok)
            s->st = yajl_gen_array_open(s->g);
        for (size_t i = 0; i < vm->config.n_disks; i++)
            sg_str(s, vm->config.disks[i]);
        if (s->st == yajl_gen_status_ok)
            s->st = yajl_gen_array_close(s->g);
    }
    sg_close(s);
    sg_kv(s, "run_dir", vm->run_dir);
    sg_kv(s, "log_dir", vm->log_dir);
    sg_kv(s, "binary", vm->binary);
    sg_kv(s, "created_at", vm->created_at);
    sg_kv(s, "updated_at", vm->updated_at);
    sg_kv(s, "started_at", vm->started_at);
    return s->st;
}

int vmsjson_serialize(const store_db *db, char **out, size_t *out_len, char *err,
                      size_t errlen)
{
    *out = NULL;
    if (out_len)
        *out_len = 0;
    for (size_t i = 0; i < db->n; i++) {
        const store_vm *vm = &db->vms[i];
        const char *be = vm->backend ? vm->backend : db->backend;
        if (!store_id_valid(vm->id))
            return base_errf(err, errlen, -EINVAL, "serialize: invalid VM id");
        if (!store_hypervisor_name(be))
            return base_errf(err, errlen, -EINVAL, "serialize: VM %s has no backend", vm->id);
        if (vm->config.memory > (uint64_t)LLONG_MAX || vm->config.cpu < 0)
            return base_errf(err, errlen, -ERANGE, "serialize: VM %s: cpu or memory out of range",
                             vm->id);
        if (vm->config.n_disks && !vm->config.disks)
            return base_errf(err, errlen, -EINVAL, "serialize: VM %s: disks missing", vm->id);
        for (size_t j = 0; j < vm->config.n_disks; j++)
            if (!vm->config.disks[j])
                return base_errf(err, errlen, -EINVAL, "serialize: VM %s: NULL disk", vm->id);
    }
    vmsjson_gen s = { yajl_gen_alloc(NULL), yajl_gen_status_ok };
    if (!s.g)
        return base_errf(err, errlen, -ENOMEM, "serialize: out of memory");
    if (!yajl_gen_config(s.g, yajl_gen_validate_utf8, 1) ||
        !yajl_gen_config(s.g, yajl_gen_beautify, 1)) {
        yajl_gen_free(s.g);
        return base_errf(err, errlen, -EINVAL, "serialize: yajl_gen_config failed");
    }
    sg_open(&s);
    sg_str(&s, "vms");
    sg_open(&s);
    for (size_t i = 0; i < db->n; i++) {
        store_vm vm = db->vms[i];   /* shallow: only backend may change */
        if (!vm.backend)
            vm.backend = db->backend;
        sg_str(&s, vm.id);
        if (s.st == yajl_gen_status_ok)
            s.st = vmsjson_vm_gen(s.g, &vm, NULL);
        sg_close(&s);
    }
    sg_close(&s);
    sg_str(&s, "names");
    sg_open(&s);
    for (size_t i = 0; i < db->n; i++)
        if (db->vms[i].config.name)
            sg_kv(&s, db->vms[i].config.name, db->vms[i].id);
    sg_close(&s);
    sg_close(&s);
    int rc = 0;
    const unsigned char *buf = NULL;
    size_t len = 0;
    if (s.st == yajl_gen_status_ok)
        s.st = yajl_gen_get_buf(s.g, &buf, &len);
    if (s.st != yajl_gen_status_ok) {
        rc = base_errf(err, errlen, s.st == yajl_gen_invalid_string ? -EINVAL : -EPROTO,
                       "serialize: %s", vmsjson_gen_reason(s.st));
    } else if (!(*out = malloc(len + 1))) {
        rc = base_errf(err, errlen, -ENOMEM, "serialize: out of memory");
    } else {
        memcpy(*out, buf, len);
        (*out)[len] = '\0';
        if (out_len)
            *out_len = len;
    }
    yajl_gen_free(s.g);
    return rc;
}
