#include "backends/clonecfg.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "backends/vmsjson.h"
#include "http/base.h"

typedef struct cc {
    yajl_gen g;
    yajl_gen_status st;
    int rc;                           /* first failure that is not yajl's */
    char *err;
    size_t errlen;
    const char *run_dir, *disk_dir;
    clonecfg_result *out;
} cc;

static void cc_str(cc *c, const char *s)
{
    if (c->st == yajl_gen_status_ok)
        c->st = yajl_gen_string(c->g, (const unsigned char *)s, strlen(s));
}

/* Writes v as read; numbers keep their original digits, so a u64 beyond
 * what a double or long long holds comes out unchanged. */
static void cc_value(cc *c, yajl_val v)
{
    if (c->st != yajl_gen_status_ok)
        return;
    if (YAJL_IS_STRING(v)) {
        cc_str(c, v->u.string);
    } else if (YAJL_IS_NUMBER(v)) {
        c->st = yajl_gen_number(c->g, v->u.number.r, strlen(v->u.number.r));
    } else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        c->st = yajl_gen_bool(c->g, YAJL_IS_TRUE(v));
    } else if (YAJL_IS_OBJECT(v)) {
        c->st = yajl_gen_map_open(c->g);
        for (size_t i = 0; i < v->u.object.len; i++) {
            cc_str(c, v->u.object.keys[i]);
            cc_value(c, v->u.object.values[i]);
        }
        if (c->st == yajl_gen_status_ok)
            c->st = yajl_gen_map_close(c->g);
    } else if (YAJL_IS_ARRAY(v)) {
        c->st = yajl_gen_array_open(c->g);
        for (size_t i = 0; i < v->u.array.len; i++)
            cc_value(c, v->u.array.values[i]);
        if (c->st == yajl_gen_status_ok)
            c->st = yajl_gen_array_close(c->g);
    } else {
        c->st = yajl_gen_null(c->g);
    }
}

static char *cc_path(cc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *cc_path(cc *c, const char *fmt, ...)
{
    char *p = NULL;
    va_list ap;
    if (c->rc)
        return NULL;
    va_start(ap, fmt);
    int r = vasprintf(&p, fmt, ap);
    va_end(ap);
    if (r < 0) {
        c->rc = base_errf(c->err, c->errlen, -ENOMEM, "out of memory");
        return NULL;
    }
    if ((size_t)r >= PATH_MAX) {
        c->rc = base_errf(c->err, c->errlen, -ENAMETOOLONG, "path too long: %.64s...", p);
        free(p);
        return NULL;
    }
    return p;
}

/* Writes object v with the string values of keys[k] replaced by vals[k]
 * (a key that is absent or not a string is written as read). */
static void cc_object(cc *c, yajl_val v, const char *const *keys, char *const *vals, size_t n)
{
    if (!YAJL_IS_OBJECT(v) || c->rc) {
        cc_value(c, v);
        return;
    }
    if (c->st == yajl_gen_status_ok)
        c->st = yajl_gen_map_open(c->g);
    for (size_t i = 0; i < v->u.object.len; i++) {
        const char *k = v->u.object.keys[i];
        yajl_val val = v->u.object.values[i];
        size_t j = 0;
        while (j < n && !(strcmp(k, keys[j]) == 0 && YAJL_IS_STRING(val) && vals[j]))
            j++;
        cc_str(c, k);
        if (j < n)
            cc_str(c, vals[j]);
        else
            cc_value(c, val);
    }
    if (c->st == yajl_gen_status_ok)
        c->st = yajl_gen_map_close(c->g);
}

/* serial / console: file and socket move into the run dir. */
static void cc_port(cc *c, yajl_val v, const char *name)
{
    static const char *const keys[] = { "file", "socket" };
    char *vals[2] = { cc_path(c, "%s/%s.log", c->run_dir, name),
                      cc_path(c, "%s/%s.sock", c->run_dir, name) };
    cc_object(c, v, keys, vals, 2);
    free(vals[0]);
    free(vals[1]);
}

/* disks / pmem: a writable file gets its own copy. */
static void cc_files(cc *c, yajl_val arr, const char *key, const char *ro_key,
                     const char *prefix)
{
    if (!YAJL_IS_ARRAY(arr)) {
        cc_value(c, arr);
        return;
    }
    if (c->st == yajl_gen_status_ok)
        c->st = yajl_gen_array_open(c->g);
    for (size_t i = 0; i < arr->u.array.len && !c->rc; i++) {
        yajl_val d = arr->u.array.values[i];
        const char *kp[] = { key, NULL }, *rp[] = { ro_key, NULL };
        yajl_val path = YAJL_IS_OBJECT(d) ? yajl_tree_get(d, kp, yajl_t_any) : NULL;
        yajl_val ro = YAJL_IS_OBJECT(d) ? yajl_tree_get(d, rp, yajl_t_any) : NULL;
        char *dst = NULL;
        if (path && !YAJL_IS_NULL(path) && !YAJL_IS_STRING(path))
            c->rc = base_errf(c->err, c->errlen, -EBADMSG, "%s[%zu].%s is not a string",
                              prefix, i, key);
        if (path && YAJL_IS_STRING(path) && !(ro && YAJL_IS_TRUE(ro)) && !c->rc) {
            const char *base = strrchr(path->u.string, '/');
            base = base ? base + 1 : path->u.string;
            if (!base[0])
                c->rc = base_errf(c->err, c->errlen, -EBADMSG, "%s[%zu].%s names no file",
                                  prefix, i, key);
            dst = cc_path(c, "%s/%s%zu-%s", c->disk_dir, prefix, i, base);
        }
        if (dst) {
            clonecfg_result *o = c->out;
            clonecfg_copy *n = realloc(o->copies, (o->n_copies + 1) * sizeof *n);
            char *src = strdup(path->u.string);
            if (!n || !src) {
                free(src);
                free(dst);
                if (n)
                    o->copies = n;
                c->rc = base_errf(c->err, c->errlen, -ENOMEM, "out of memory");
                break;
            }
            o->copies = n;
            o->copies[o->n_copies++] = (clonecfg_copy){ src, dst };
        }
        const char *const keys[] = { key };
        char *const vals[] = { dst };
        cc_object(c, d, keys, vals, 1);
    }
    if (c->st == yajl_gen_status_ok)
        c->st = yajl_gen_array_close(c->g);
}

void clonecfg_result_fini(clonecfg_result *r)
{
    if (!r)
        return;
    free(r->json);
    for (size_t i = 0; i < r->n_copies; i++) {
        free(r->copies[i].src);
        free(r->copies[i].dst);
    }
    free(r->copies);
    memset(r, 0, sizeof *r);
}

int clonecfg_rewrite(const char *buf, size_t len, const char *run_dir, const char *disk_dir,
                     clonecfg_result *out, char *err, size_t errlen)
{
    char ebuf[BASE_ERRSTR_MAX];
    int rc;

    memset(out, 0, sizeof *out);
    if (!run_dir || run_dir[0] != '/' || !disk_dir || disk_dir[0] != '/')
        return base_errf(err, errlen, -EINVAL, "run and disk dirs must be absolute paths");
    yajl_val root;
    if ((rc = vmsjson_tree(buf, len, &root, ebuf, sizeof ebuf)))
        return base_errf(err, errlen, rc, "config: %s", ebuf);
    if (!YAJL_IS_OBJECT(root)) {
        yajl_tree_free(root);
        return base_errf(err, errlen, -EBADMSG, "config: not a JSON object");
    }
    cc c = { yajl_gen_alloc(NULL), yajl_gen_status_ok, 0, err, errlen, run_dir, disk_dir, out };
    if (!c.g) {
        yajl_tree_free(root);
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    }
    c.st = yajl_gen_map_open(c.g);
    for (size_t i = 0; i < root->u.object.len && !c.rc; i++) {
        const char *k = root->u.object.keys[i];
        yajl_val v = root->u.object.values[i];
        if (strcmp(k, "fs") == 0 || strcmp(k, "devices") == 0) {
            out->n_dropped += YAJL_IS_ARRAY(v) ? v->u.array.len : 0;
            continue;
        }
        cc_str(&c, k);
        if (strcmp(k, "serial") == 0 || strcmp(k, "console") == 0) {
            cc_port(&c, v, k);
        } else if (strcmp(k, "vsock") == 0) {
            static const char *const keys[] = { "socket" };
            char *vals[] = { cc_path(&c, "%s/vsock.sock", run_dir) };
            cc_object(&c, v, keys, vals, 1);
            free(vals[0]);
        } else if (strcmp(k, "disks") == 0) {
            cc_files(&c, v, "path", "readonly", "disk");
        } else if (strcmp(k, "pmem") == 0) {
            cc_files(&c, v, "file", "discard_writes", "pmem");
        } else {
            cc_value(&c, v);
        }
    }
    if (c.st == yajl_gen_status_ok)
        c.st = yajl_gen_map_close(c.g);
    const unsigned char *gbuf;
    size_t glen;
    rc = c.rc;
    if (!rc && c.st == yajl_gen_status_ok)
        c.st = yajl_gen_get_buf(c.g, &gbuf, &glen);
    if (!rc && c.st != yajl_gen_status_ok)
        rc = base_errf(err, errlen, -EBADMSG, "config: cannot write it back (yajl status %d)",
                       (int)c.st);
    if (!rc && !(out->json = strndup((const char *)gbuf, glen)))
        rc = base_errf(err, errlen, -ENOMEM, "out of memory");
    if (!rc)
        out->len = glen;
    yajl_gen_free(c.g);
    yajl_tree_free(root);
    if (rc)
        clonecfg_result_fini(out);
    return rc;
}
