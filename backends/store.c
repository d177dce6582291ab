#include "backends/store.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "base.h"

#define STORE_DB_FILE "vms.json"
#define STORE_LOCK_FILE "vms.lock"
/* Temp files of an interrupted write start with this; loads never look at
 * them and the next update, which holds the exclusive lock and therefore
 * knows no other writer is mid-write, removes them. */
#define STORE_TMP_PREFIX ".vms.json.tmp."
/* Our documents nest five levels deep; the cap keeps yajl_tree_free's
 * recursion bounded on hostile input. */
#define STORE_MAX_DEPTH 32
#define STORE_MAX_FILE (64u << 20)
#define STORE_PIDFILE_MAX 64

static const char store_b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static const char *const store_state_names[] = {
    [STORE_CREATING] = "creating", [STORE_CREATED] = "created",
    [STORE_RUNNING] = "running",   [STORE_STOPPED] = "stopped",
    [STORE_ERROR] = "error",
};

const char *store_state_name(store_state s)
{
    if ((unsigned)s < sizeof store_state_names / sizeof store_state_names[0])
        return store_state_names[s];
    return "unknown";
}

int store_state_parse(const char *s, store_state *out)
{
    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < sizeof store_state_names / sizeof store_state_names[0]; i++) {
        if (strcmp(s, store_state_names[i]) == 0) {
            *out = (store_state)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *store_hypervisor_name(const char *backend)
{
    if (!backend)
        return NULL;
    if (strcmp(backend, STORE_BACKEND_CH) == 0)
        return "cloud-hypervisor";
    if (strcmp(backend, STORE_BACKEND_FC) == 0)
        return "firecracker";
    return NULL;
}

/* Records point at these two literals so that backend comparisons and
 * copies never need an allocation. */
static const char *store_backend_static(const char *backend)
{
    if (!store_hypervisor_name(backend))
        return NULL;
    return strcmp(backend, STORE_BACKEND_CH) == 0 ? STORE_BACKEND_CH : STORE_BACKEND_FC;
}

const char *store_root(const char *root)
{
    if (root && *root)
        return root;
    const char *env = getenv("COCOON_ROOT_DIR");
    if (env && *env)
        return env;
    return "/var/lib/cocoon";
}

int store_new_id(char out[STORE_ID_LEN + 1])
{
    unsigned char rnd[STORE_ID_LEN];
    size_t got = 0;
    while (got < sizeof rnd) {
        ssize_t r = getrandom(rnd + got, sizeof rnd - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)r;
    }
    /* 256 is a multiple of 32, so taking the low five bits is unbiased. */
    for (size_t i = 0; i < STORE_ID_LEN; i++)
        out[i] = store_b32[rnd[i] & 31];
    out[STORE_ID_LEN] = '\0';
    return 0;
}

bool store_id_valid(const char *id)
{
    if (!id || strlen(id) != STORE_ID_LEN)
        return false;
    for (size_t i = 0; i < STORE_ID_LEN; i++) {
        char c = id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7')))
            return false;
    }
    return true;
}

static bool store_name_first(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool store_name_valid(const char *name)
{
    if (!name || !store_name_first(name[0]))
        return false;
    size_t i = 1;
    for (; name[i]; i++) {
        char c = name[i];
        if (i > 62)
            return false;
        if (!(store_name_first(c) || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* ---- records ---------------------------------------------------------- */

void store_vm_fini(store_vm *vm)
{
    if (!vm)
        return;
    free(vm->config.name);
    free(vm->config.kernel);
    free(vm->config.initramfs);
    free(vm->config.cmdline);
    for (size_t i = 0; i < vm->config.n_disks; i++)
        free(vm->config.disks[i]);
    free(vm->config.disks);
    free(vm->run_dir);
    free(vm->log_dir);
    free(vm->binary);
    free(vm->created_at);
    free(vm->updated_at);
    free(vm->started_at);
    memset(vm, 0, sizeof *vm);
}

void store_db_fini(store_db *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < db->n; i++)
        store_vm_fini(&db->vms[i]);
    free(db->vms);
    memset(db, 0, sizeof *db);
}

static int store_dup(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : -ENOMEM;
}

int store_vm_copy(store_vm *dst, const store_vm *src)
{
    memset(dst, 0, sizeof *dst);
    memcpy(dst->id, src->id, sizeof dst->id);
    dst->backend = src->backend;
    dst->state = src->state;
    dst->config.cpu = src->config.cpu;
    dst->config.memory = src->config.memory;
    dst->config.shared_memory = src->config.shared_memory;
    if (store_dup(&dst->config.name, src->config.name) ||
        store_dup(&dst->config.kernel, src->config.kernel) ||
        store_dup(&dst->config.initramfs, src->config.initramfs) ||
        store_dup(&dst->config.cmdline, src->config.cmdline) ||
        store_dup(&dst->run_dir, src->run_dir) ||
        store_dup(&dst->log_dir, src->log_dir) ||
        store_dup(&dst->binary, src->binary) ||
        store_dup(&dst->created_at, src->created_at) ||
        store_dup(&dst->updated_at, src->updated_at) ||
        store_dup(&dst->started_at, src->started_at))
        goto oom;
    if (src->config.n_disks) {
        dst->config.disks = calloc(src->config.n_disks, sizeof *dst->config.disks);
        if (!dst->config.disks)
            goto oom;
        for (size_t i = 0; i < src->config.n_disks; i++) {
            if (store_dup(&dst->config.disks[i], src->config.disks[i]))
                goto oom;
            dst->config.n_disks = i + 1;
        }
    }
    return 0;
oom:
    store_vm_fini(dst);
    return -ENOMEM;
}

store_vm *store_db_find(store_db *db, const char *id)
{
    if (!db || !id)
        return NULL;
    for (size_t i = 0; i < db->n; i++)
        if (strcmp(db->vms[i].id, id) == 0)
            return &db->vms[i];
    return NULL;
}

store_vm *store_db_find_name(store_db *db, const char *name)
{
    if (!db || !name)
        return NULL;
    for (size_t i = 0; i < db->n; i++)
        if (db->vms[i].config.name && strcmp(db->vms[i].config.name, name) == 0)
            return &db->vms[i];
    return NULL;
}

int store_db_add(store_db *db, store_vm *vm, char *err, size_t errlen)
{
    char q[BASE_ERRSTR_MAX / 2];
    if (!store_id_valid(vm->id))
        return base_errf(err, errlen, -EINVAL, "invalid VM id %s",
                         base_quote(q, sizeof q, vm->id));
    if (vm->config.name && !store_name_valid(vm->config.name))
        return base_errf(err, errlen, -EINVAL,
                         "invalid name %s: must match ^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$",
                         base_quote(q, sizeof q, vm->config.name));
    if (store_db_find(db, vm->id))
        return base_errf(err, errlen, -EEXIST, "id %s already in use",
                         base_quote(q, sizeof q, vm->id));
    if (vm->config.name && store_db_find_name(db, vm->config.name))
        return base_errf(err, errlen, -EEXIST, "name %s already in use",
                         base_quote(q, sizeof q, vm->config.name));
    store_vm *grown = realloc(db->vms, (db->n + 1) * sizeof *grown);
    if (!grown)
        return base_errf(err, errlen, -ENOMEM, "add VM: out of memory");
    db->vms = grown;
    db->vms[db->n] = *vm;
    if (!db->vms[db->n].backend)
        db->vms[db->n].backend = db->backend;
    db->n++;
    memset(vm, 0, sizeof *vm);
    return 0;
}

int store_db_remove(store_db *db, const char *id)
{
    store_vm *vm = store_db_find(db, id);
    if (!vm)
        return -ENOENT;
    size_t i = (size_t)(vm - db->vms);
    store_vm_fini(vm);
    memmove(&db->vms[i], &db->vms[i + 1], (db->n - i - 1) * sizeof db->vms[0]);
    db->n--;
    if (db->n == 0) {
        free(db->vms);
        db->vms = NULL;
    }
    return 0;
}

/* ---- parse ------------------------------------------------------------ */

/* yajl_tree_parse wants a C string, accepts comments and recurses when it
 * frees, so the input is vetted first: no NUL bytes, nothing outside
 * strings that is not JSON (this rejects comments) and bounded nesting. */
static int store_prescan(const char *buf, size_t len, char *err, size_t errlen)
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
            if (++depth > STORE_MAX_DEPTH)
                return base_errf(err, errlen, -EBADMSG, "nesting deeper than %d",
                                 STORE_MAX_DEPTH);
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

static yajl_val store_obj_get(yajl_val obj, const char *key)
{
    for (size_t i = 0; i < obj->u.object.len; i++)
        if (strcmp(obj->u.object.keys[i], key) == 0)
            return obj->u.object.values[i];
    return NULL;
}

/* Optional string: absent and null both mean NULL. */
static int store_get_str(yajl_val obj, const char *key, char **out, const char *ctx,
                         char *err, size_t errlen)
{
    yajl_val v = store_obj_get(obj, key);
    *out = NULL;
    if (!v || YAJL_IS_NULL(v))
        return 0;
    if (!YAJL_IS_STRING(v))
        return base_errf(err, errlen, -EBADMSG, "%s: %s is not a string", ctx, key);
    *out = strdup(v->u.string);
    return *out ? 0 : base_errf(err, errlen, -ENOMEM, "out of memory");
}

static int store_parse_config(yajl_val c, store_vm *vm, const char *ctx,
                              char *err, size_t errlen)
{
    int rc;
    if (!YAJL_IS_OBJECT(c))
        return base_errf(err, errlen, -EBADMSG, "%s: config is not an object", ctx);
    if ((rc = store_get_str(c, "name", &vm->config.name, ctx, err, errlen)) ||
        (rc = store_get_str(c, "kernel", &vm->config.kernel, ctx, err, errlen)) ||
        (rc = store_get_str(c, "initramfs", &vm->config.initramfs, ctx, err, errlen)) ||
        (rc = store_get_str(c, "cmdline", &vm->config.cmdline, ctx, err, errlen)))
        return rc;
    yajl_val v = store_obj_get(c, "cpu");
    if (v && !YAJL_IS_NULL(v)) {
        if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < 0 || YAJL_GET_INTEGER(v) > INT_MAX)
            return base_errf(err, errlen, -EBADMSG, "%s: cpu is not a count", ctx);
        vm->config.cpu = (int)YAJL_GET_INTEGER(v);
    }
    v = store_obj_get(c, "memory");
    if (v && !YAJL_IS_NULL(v)) {
        if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < 0)
            return base_errf(err, errlen, -EBADMSG, "%s: memory is not a byte count", ctx);
        vm->config.memory = (uint64_t)YAJL_GET_INTEGER(v);
    }
    v = store_obj_get(c, "shared_memory");
    if (v && !YAJL_IS_NULL(v)) {
        if (!YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v))
            return base_errf(err, errlen, -EBADMSG, "%s: shared_memory is not a bool", ctx);
        vm->config.shared_memory = YAJL_IS_TRUE(v);
    }
    v = store_obj_get(c, "disks");
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

static int store_parse_vm(const char *key, yajl_val r, const char *backend, store_vm *vm,
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
    yajl_val v = store_obj_get(r, "id");
    if (!v || !YAJL_IS_STRING(v) || strcmp(v->u.string, key) != 0)
        return base_errf(err, errlen, -EBADMSG, "%s: id does not match its key", ctx);
    memcpy(vm->id, key, STORE_ID_LEN + 1);
    v = store_obj_get(r, "hypervisor");
    if (v && !YAJL_IS_NULL(v)) {
        if (!YAJL_IS_STRING(v) || strcmp(v->u.string, store_hypervisor_name(backend)) != 0)
            return base_errf(err, errlen, -EBADMSG, "%s: hypervisor is not %s", ctx,
                             store_hypervisor_name(backend));
    }
    v = store_obj_get(r, "state");
    if (!v || !YAJL_IS_STRING(v) || store_state_parse(v->u.string, &vm->state) < 0)
        return base_errf(err, errlen, -EBADMSG, "%s: missing or unknown state", ctx);
    v = store_obj_get(r, "config");
    if (v && !YAJL_IS_NULL(v) && (rc = store_parse_config(v, vm, ctx, err, errlen)))
        return rc;
    if ((rc = store_get_str(r, "run_dir", &vm->run_dir, ctx, err, errlen)) ||
        (rc = store_get_str(r, "log_dir", &vm->log_dir, ctx, err, errlen)) ||
        (rc = store_get_str(r, "binary", &vm->binary, ctx, err, errlen)) ||
        (rc = store_get_str(r, "created_at", &vm->created_at, ctx, err, errlen)) ||
        (rc = store_get_str(r, "updated_at", &vm->updated_at, ctx, err, errlen)) ||
        (rc = store_get_str(r, "started_at", &vm->started_at, ctx, err, errlen)))
        return rc;
    return 0;
}

static int store_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

typedef struct store_pair {
    const char *name, *id;
} store_pair;

static int store_cmp_pair(const void *a, const void *b)
{
    return strcmp(((const store_pair *)a)->name, ((const store_pair *)b)->name);
}

/* The names map is an index of the records; it must be exactly the set of
 * (name, id) pairs of the named records, or the file was edited or damaged.
 * Sorting both sides keeps this O(n log n) for large fleets. */
static int store_check_names(const store_db *db, yajl_val names, char *err, size_t errlen)
{
    size_t nn = names->u.object.len, nr = 0;
    int rc = 0;
    const char **ids = malloc((db->n ? db->n : 1) * sizeof *ids);
    store_pair *rec = malloc((db->n ? db->n : 1) * sizeof *rec);
    store_pair *idx = malloc((nn ? nn : 1) * sizeof *idx);
    if (!ids || !rec || !idx) {
        rc = base_errf(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < db->n; i++) {
        ids[i] = db->vms[i].id;
        if (db->vms[i].config.name)
            rec[nr++] = (store_pair){ db->vms[i].config.name, db->vms[i].id };
    }
    qsort(ids, db->n, sizeof *ids, store_cmp_str);
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
        idx[i] = (store_pair){ names->u.object.keys[i], v->u.string };
    }
    qsort(rec, nr, sizeof *rec, store_cmp_pair);
    qsort(idx, nn, sizeof *idx, store_cmp_pair);
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

int store_db_parse(const char *buf, size_t len, const char *backend, store_db *db,
                   char *err, size_t errlen)
{
    char ebuf[256];
    int rc;
    memset(db, 0, sizeof *db);
    const char *be = store_backend_static(backend);
    if (!be)
        return base_errf(err, errlen, -EINVAL, "unknown backend %s", backend ? backend : "(null)");
    db->backend = be;
    if ((rc = store_prescan(buf, len, err, errlen)))
        return rc;
    char *text = malloc(len + 1);
    if (!text)
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    memcpy(text, buf, len);
    text[len] = '\0';
    ebuf[0] = '\0';
    yajl_val root = yajl_tree_parse(text, ebuf, sizeof ebuf);
    free(text);
    if (!root) {
        /* yajl's message spans lines and echoes input; the first line is
         * the reason. */
        ebuf[strcspn(ebuf, "\n")] = '\0';
        return base_errf(err, errlen, -EBADMSG, "invalid JSON: %s",
                         ebuf[0] ? ebuf : "parse error");
    }
    yajl_val vms = YAJL_IS_OBJECT(root) ? store_obj_get(root, "vms") : NULL;
    yajl_val names = YAJL_IS_OBJECT(root) ? store_obj_get(root, "names") : NULL;
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
        rc = store_parse_vm(vms->u.object.keys[i], vms->u.object.values[i], be,
                            &db->vms[i], err, errlen);
        db->n = i + 1;
        if (rc)
            goto fail;
    }
    if ((rc = store_check_names(db, names, err, errlen)))
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

static const char *store_gen_reason(yajl_gen_status s)
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

typedef struct store_gen {
    yajl_gen g;
    yajl_gen_status st;
} store_gen;

/* Each helper is a no-op once a step failed, so the writer reads as the
 * document it produces and the first failure is the one reported. */
static void sg_str(store_gen *s, const char *str)
{
    if (s->st == yajl_gen_status_ok)
        s->st = yajl_gen_string(s->g, (const unsigned char *)str, strlen(str));
}

static void sg_kv(store_gen *s, const char *key, const char *val)
{
    if (!val)
        return;
    sg_str(s, key);
    sg_str(s, val);
}

static void sg_int(store_gen *s, const char *key, long long v)
{
    sg_str(s, key);
    if (s->st == yajl_gen_status_ok)
        s->st = yajl_gen_integer(s->g, v);
}

static void sg_open(store_gen *s)
{
    if (s->st == yajl_gen_status_ok)
        s->st = yajl_gen_map_open(s->g);
}

static void sg_close(store_gen *s)
{
    if (s->st == yajl_gen_status_ok)
        s->st = yajl_gen_map_close(s->g);
}

yajl_gen_status store_vm_gen(yajl_gen g, const store_vm *vm, const char *state_override)
{
    store_gen st = { g, yajl_gen_status_ok }, *s = &st;

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

int store_db_serialize(const store_db *db, char **out, size_t *out_len, char *err,
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
    store_gen s = { yajl_gen_alloc(NULL), yajl_gen_status_ok };
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
            s.st = store_vm_gen(s.g, &vm, NULL);
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
                       "serialize: %s", store_gen_reason(s.st));
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

/* ---- files ------------------------------------------------------------ */

static char *store_pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *store_pathf(const char *fmt, ...)
{
    va_list ap;
    char *p = NULL;
    va_start(ap, fmt);
    int r = vasprintf(&p, fmt, ap);
    va_end(ap);
    return r < 0 ? NULL : p;
}

/* mkdir -p of every ancestor of path (not path itself).  Ancestors such as
 * <root> and <root>/run are not secret; only the leaf gets 0700. */
static int store_mkparents(const char *path, char *err, size_t errlen)
{
    char *p = strdup(path);
    if (!p)
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST) {
            int e = errno;
            base_errf(err, errlen, -e, "mkdir %s: %s", p, strerror(e));
            free(p);
            return -e;
        }
        *s = '/';
    }
    free(p);
    return 0;
}

int store_make_private_dir(const char *path, char *err, size_t errlen)
{
    int rc;
    if (!path || !*path)
        return base_errf(err, errlen, -EINVAL, "empty directory path");
    if ((rc = store_mkparents(path, err, errlen)))
        return rc;
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        int e = errno;
        return base_errf(err, errlen, -e, "mkdir %s: %s", path, strerror(e));
    }
    /* Whether we just made it or it was there, inspect it through a
     * descriptor opened without following links: a symlink planted at the
     * path is refused, and a mode fix through the fd cannot be redirected. */
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        struct stat lst;
        if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode))
            return base_errf(err, errlen, -ELOOP, "%s is a symlink", path);
        return base_errf(err, errlen, -e, "open %s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return base_errf(err, errlen, -e, "stat %s: %s", path, strerror(e));
    }
    if (st.st_uid != geteuid()) {
        close(fd);
        return base_errf(err, errlen, -EPERM, "%s is owned by uid %u, not %u", path,
                         (unsigned)st.st_uid, (unsigned)geteuid());
    }
    /* A restrictive umask can strip our own bits and a pre-existing dir may
     * be too open; either way the fd is the dir we vetted. */
    if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0) {
        int e = errno;
        close(fd);
        return base_errf(err, errlen, -e, "chmod %s: %s", path, strerror(e));
    }
    close(fd);
    return 0;
}

char *store_default_run_dir(const char *root, const char *backend, const char *id)
{
    return store_pathf("%s/run/%s/%s", store_root(root), backend, id);
}

static int store_write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Atomically replaces dirfd/name with buf: temp file, fsync, rename, fsync
 * of the directory so the rename itself survives a crash. */
static int store_replace_at(int dirfd, const char *dir, const char *name, const char *tmp_prefix,
                            const char *buf, size_t len, char *err, size_t errlen)
{
    char tmp[256], rnd[9];
    for (int attempt = 0;; attempt++) {
        char id[STORE_ID_LEN + 1];
        int rc = store_new_id(id);
        if (rc)
            return base_errf(err, errlen, rc, "getrandom: %s", strerror(-rc));
        memcpy(rnd, id, 8);
        rnd[8] = '\0';
        snprintf(tmp, sizeof tmp, "%s%s", tmp_prefix, rnd);
        int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            int e = errno;
            if (e == EEXIST && attempt < 8)
                continue;
            return base_errf(err, errlen, -e, "create %s/%s: %s", dir, tmp, strerror(e));
        }
        /* The file is ours and fresh: fixing its mode by fd is race-free
         * and makes the result independent of the umask. */
        const char *step = "chmod";
        int e = 0;
        if (fchmod(fd, 0600) < 0)
            e = errno;
        else if ((e = -store_write_all(fd, buf, len)) != 0)
            step = "write";
        else if (fsync(fd) < 0)
            e = errno, step = "fsync";
        if (close(fd) < 0 && !e)
            e = errno, step = "close";
        if (!e && renameat(dirfd, tmp, dirfd, name) < 0)
            e = errno, step = "rename";
        if (e) {
            unlinkat(dirfd, tmp, 0);
            return base_errf(err, errlen, -e, "%s %s/%s: %s", step, dir, tmp, strerror(e));
        }
        if (fsync(dirfd) < 0) {
            e = errno;
            return base_errf(err, errlen, -e, "fsync %s: %s", dir, strerror(e));
        }
        return 0;
    }
}

static int store_read_fd(int fd, const char *path, size_t max, char **out, size_t *out_len,
                         char *err, size_t errlen)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return base_errf(err, errlen, -ENOMEM, "read %s: out of memory", path);
    for (;;) {
        if (len == cap) {
            if (cap >= max) {
                free(buf);
                return base_errf(err, errlen, -EFBIG, "%s: larger than %zu bytes", path, max);
            }
            char *g = realloc(buf, cap * 2);
            if (!g) {
                free(buf);
                return base_errf(err, errlen, -ENOMEM, "read %s: out of memory", path);
            }
            buf = g;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            free(buf);
            return base_errf(err, errlen, -e, "read %s: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

typedef struct store_paths {
    char *dir, *lock, *file;
} store_paths;

static void store_paths_fini(store_paths *p)
{
    free(p->dir);
    free(p->lock);
    free(p->file);
}

static int store_paths_init(store_paths *p, const char *root, const char *backend,
                            char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    if (!store_backend_static(backend))
        return base_errf(err, errlen, -EINVAL, "unknown backend %s",
                         backend ? backend : "(null)");
    p->dir = store_pathf("%s/%s/db", store_root(root), backend);
    p->lock = store_pathf("%s/%s/db/" STORE_LOCK_FILE, store_root(root), backend);
    p->file = store_pathf("%s/%s/db/" STORE_DB_FILE, store_root(root), backend);
    if (!p->dir || !p->lock || !p->file) {
        store_paths_fini(p);
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    }
    return 0;
}

static int store_lock(const char *path, int flags, int op, char *err, size_t errlen)
{
    int fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        return base_errf(err, errlen, -e, "open %s: %s", path, strerror(e));
    }
    while (flock(fd, op) < 0) {
        int e = errno;
        if (e == EINTR)
            continue;
        close(fd);
        return base_errf(err, errlen, -e, "flock %s: %s", path, strerror(e));
    }
    return fd;
}

static char *store_vm_lock_path(const char *root, const char *backend, const char *id)
{
    if (!store_backend_static(backend) || !id || !store_id_valid(id)) {
        errno = EINVAL;
        return NULL;
    }
    return store_pathf("%s/%s/db/%s.lock", store_root(root), backend, id);
}

int store_vm_lock(const char *root, const char *backend, const char *id,
                  char *err, size_t errlen)
{
    char *path = store_vm_lock_path(root, backend, id);
    if (!path) {
        int e = errno;
        return base_errf(err, errlen, -e, "lock vm %s: %s", id ? id : "(null)",
                         strerror(e));
    }
    int fd = store_lock(path, O_RDWR | O_CREAT, LOCK_EX, err, errlen);
    free(path);
    return fd;
}

void store_vm_unlock(int fd)
{
    if (fd >= 0)
        close(fd);
}

int store_vm_lock_remove(const char *root, const char *backend, const char *id)
{
    char *path = store_vm_lock_path(root, backend, id);
    if (!path)
        return -errno;
    int rc = unlink(path) < 0 && errno != ENOENT ? -errno : 0;
    free(path);
    return rc;
}

/* Reads and parses the db file; the caller holds the lock.  Every parse
 * failure names the file, so an operator knows what to repair. */
static int store_read_db(const store_paths *p, const char *backend, store_db *db,
                         char *err, size_t errlen)
{
    char detail[BASE_ERRSTR_MAX];
    memset(db, 0, sizeof *db);
    db->backend = store_backend_static(backend);
    int fd = open(p->file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return 0;
        return base_errf(err, errlen, -e, "open %s: %s", p->file, strerror(e));
    }
    char *buf = NULL;
    size_t len = 0;
    int rc = store_read_fd(fd, p->file, STORE_MAX_FILE, &buf, &len, err, errlen);
    close(fd);
    if (rc)
        return rc;
    if (len == 0)
        rc = base_errf(detail, sizeof detail, -EBADMSG, "empty file");
    else
        rc = store_db_parse(buf, len, backend, db, detail, sizeof detail);
    free(buf);
    if (rc)
        return base_errf(err, errlen, rc, "%s: %s", p->file, detail);
    return 0;
}

int store_load(const char *root, const char *backend, store_db *db, char *err, size_t errlen)
{
    store_paths p;
    memset(db, 0, sizeof *db);
    int rc = store_paths_init(&p, root, backend, err, errlen);
    if (rc)
        return rc;
    db->backend = store_backend_static(backend);
    /* A reader never creates the store: a missing db dir is an empty db, so
     * a read-only command works on a fresh or unwritable root. */
    struct stat st;
    if (stat(p.dir, &st) < 0 && errno == ENOENT) {
        store_paths_fini(&p);
        return 0;
    }
    int fd = store_lock(p.lock, O_RDONLY | O_CREAT, LOCK_SH, err, errlen);
    if (fd == -EACCES || fd == -EROFS)
        fd = store_lock(p.lock, O_RDONLY, LOCK_SH, err, errlen);
    if (fd < 0) {
        store_paths_fini(&p);
        return fd;
    }
    rc = store_read_db(&p, backend, db, err, errlen);
    close(fd);
    store_paths_fini(&p);
    return rc;
}

static void store_clean_tmp(int dirfd)
{
    int fd = dup(dirfd);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, STORE_TMP_PREFIX, strlen(STORE_TMP_PREFIX)) == 0)
            unlinkat(dirfd, de->d_name, 0);
    closedir(d);
}

int store_update(const char *root, const char *backend, store_update_fn *fn, void *priv,
                 char *err, size_t errlen)
{
    store_paths p;
    store_db db;
    int rc = store_paths_init(&p, root, backend, err, errlen);
    if (rc)
        return rc;
    if ((rc = store_make_private_dir(p.dir, err, errlen))) {
        store_paths_fini(&p);
        return rc;
    }
    int lockfd = store_lock(p.lock, O_RDWR | O_CREAT, LOCK_EX, err, errlen);
    if (lockfd < 0) {
        store_paths_fini(&p);
        return lockfd;
    }
    int dirfd = open(p.dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dirfd < 0) {
        int e = errno;
        rc = base_errf(err, errlen, -e, "open %s: %s", p.dir, strerror(e));
        goto out_lock;
    }
    /* A corrupt file is left untouched for the operator: writing fn's
     * result over it would silently drop every record it held. */
    if ((rc = store_read_db(&p, backend, &db, err, errlen)))
        goto out_dir;
    store_clean_tmp(dirfd);
    rc = fn(&db, priv, err, errlen);
    if (rc == 0) {
        char *buf = NULL;
        size_t len = 0;
        rc = store_db_serialize(&db, &buf, &len, err, errlen);
        if (rc == 0)
            rc = store_replace_at(dirfd, p.dir, STORE_DB_FILE, STORE_TMP_PREFIX, buf, len,
                                  err, errlen);
        free(buf);
    }
    store_db_fini(&db);
out_dir:
    close(dirfd);
out_lock:
    close(lockfd);
    store_paths_fini(&p);
    return rc;
}

/* ---- resolution ------------------------------------------------------- */

static const char *const store_backends[2] = { STORE_BACKEND_CH, STORE_BACKEND_FC };

int store_resolve(const char *root, const char *ref, store_vm *out, char *err, size_t errlen)
{
    store_db dbs[2];
    char q[BASE_ERRSTR_MAX / 2];
    int rc;
    memset(out, 0, sizeof *out);
    memset(dbs, 0, sizeof dbs);
    if (!ref || !*ref)
        return base_errf(err, errlen, -ENOENT, "VM not found");
    for (int b = 0; b < 2; b++) {
        if ((rc = store_load(root, store_backends[b], &dbs[b], err, errlen))) {
            store_db_fini(&dbs[0]);
            return rc;
        }
    }
    /* The SPEC order is applied across both backends tier by tier, so an
     * exact id or name in one backend wins over a mere prefix in the other. */
    const store_vm *hit[2] = { NULL, NULL };
    size_t count[2] = { 0, 0 };
    for (int tier = 0; tier < 3; tier++) {
        for (int b = 0; b < 2; b++) {
            hit[b] = NULL;
            count[b] = 0;
            for (size_t i = 0; i < dbs[b].n; i++) {
                const store_vm *vm = &dbs[b].vms[i];
                bool m;
                if (tier == 0)
                    m = strcmp(vm->id, ref) == 0;
                else if (tier == 1)
                    m = vm->config.name && strcmp(vm->config.name, ref) == 0;
                else
                    m = strlen(ref) >= 3 && strncmp(vm->id, ref, strlen(ref)) == 0;
                if (m) {
                    hit[b] = vm;
                    count[b]++;
                }
            }
        }
        if (count[0] + count[1] > 0)
            break;
    }
    if (count[0] > 1 || count[1] > 1)
        rc = base_errf(err, errlen, -EINVAL, "ambiguous ref %s: multiple matches",
                       base_quote(q, sizeof q, ref));
    else if (count[0] && count[1])
        rc = base_errf(err, errlen, -EINVAL, "VM ref resolves to multiple backends");
    else if (!count[0] && !count[1])
        rc = base_errf(err, errlen, -ENOENT, "VM not found");
    else if ((rc = store_vm_copy(out, hit[0] ? hit[0] : hit[1])))
        rc = base_errf(err, errlen, rc, "resolve: out of memory");
    store_db_fini(&dbs[0]);
    store_db_fini(&dbs[1]);
    return rc;
}

int store_name_taken(const char *root, const char *name, char *err, size_t errlen)
{
    char q[BASE_ERRSTR_MAX / 2];
    for (int b = 0; b < 2; b++) {
        store_db db;
        int rc = store_load(root, store_backends[b], &db, err, errlen);
        if (rc)
            return rc;
        bool taken = store_db_find_name(&db, name) != NULL;
        store_db_fini(&db);
        if (taken)
            return base_errf(err, errlen, -EEXIST, "name %s already in use",
                             base_quote(q, sizeof q, name));
    }
    return 0;
}

/* ---- pidfiles --------------------------------------------------------- */

static int store_split_path(const char *path, char **dir, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        *dir = strdup(".");
        *base = path;
    } else {
        *dir = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
        *base = slash + 1;
    }
    return *dir ? 0 : -ENOMEM;
}

int store_write_pidfile(const char *path, pid_t pid, char *err, size_t errlen)
{
    char *dir;
    const char *base;
    char body[32], prefix[128];
    if (pid <= 0)
        return base_errf(err, errlen, -EINVAL, "write pidfile %s: invalid pid %ld", path,
                         (long)pid);
    if (store_split_path(path, &dir, &base))
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    if (!*base || strlen(base) > 64) {
        free(dir);
        return base_errf(err, errlen, -EINVAL, "write pidfile %s: bad file name", path);
    }
    /* The run dir must be the real directory, not a link planted in its
     * place: the temp file and the rename go through this fd. */
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dirfd < 0) {
        int e = errno;
        base_errf(err, errlen, -e, "open %s: %s", dir, strerror(e));
        free(dir);
        return -e;
    }
    int n = snprintf(body, sizeof body, "%ld\n", (long)pid);
    snprintf(prefix, sizeof prefix, ".%s.tmp.", base);
    int rc = store_replace_at(dirfd, dir, base, prefix, body, (size_t)n, err, errlen);
    close(dirfd);
    free(dir);
    return rc;
}

int store_read_pidfile(const char *path, pid_t *pid, char *err, size_t errlen)
{
    char buf[STORE_PIDFILE_MAX + 1];
    char q[2 * STORE_PIDFILE_MAX + 8];
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        return base_errf(err, errlen, -e, "open %s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return base_errf(err, errlen, -EINVAL, "open %s: not a regular file", path);
    }
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof buf - len);
        if (r < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            close(fd);
            return base_errf(err, errlen, -e, "read %s: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == sizeof buf) {
            close(fd);
            return base_errf(err, errlen, -EINVAL, "parse PID from %s: file too large", path);
        }
    }
    close(fd);
    buf[len] = '\0';
    if (memchr(buf, '\0', len))
        return base_errf(err, errlen, -EINVAL, "parse PID from %s: NUL byte in file", path);
    char *s = buf;
    while (*s && isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    if (!*s)
        return base_errf(err, errlen, -EINVAL, "parse PID from %s: empty file", path);
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    bool digits = *p != '\0';
    for (; *p; p++)
        if (*p < '0' || *p > '9')
            digits = false;
    if (!digits)
        return base_errf(err, errlen, -EINVAL, "parse PID from %s: invalid syntax %s", path,
                         base_quote(q, sizeof q, s));
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE || v <= 0 || v > INT_MAX)
        return base_errf(err, errlen, -ERANGE, "parse PID from %s: pid %s out of range", path,
                         s);
    *pid = (pid_t)v;
    return 0;
}

char *store_now(void)
{
    struct timespec ts;
    struct tm tm;
    char buf[32];
    if (clock_gettime(CLOCK_REALTIME, &ts) < 0 || !gmtime_r(&ts.tv_sec, &tm))
        return NULL;
    if (strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return NULL;
    return strdup(buf);
}
