#include "backends/snapstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "backends/safefile.h"
#include "backends/vmsjson.h"
#include "http/base.h"

#define SNAP_FILE "snapshots.json"
#define SNAP_LOCK "snapshots.lock"
#define SNAP_TMP_PREFIX ".snapshots.json.tmp."
#define SNAP_MAX_FILE (64u << 20)
/* CH writes a flat directory; the bound only keeps a hostile tree from
 * exhausting descriptors during removal. */
#define SNAP_RM_DEPTH 8

void snapstore_rec_fini(snapstore_rec *r)
{
    if (!r)
        return;
    free(r->name);
    free(r->created_at);
    free(r->dir);
    store_vm_fini(&r->source);
    memset(r, 0, sizeof *r);
}

void snapstore_db_fini(snapstore_db *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < db->n; i++)
        snapstore_rec_fini(&db->recs[i]);
    free(db->recs);
    memset(db, 0, sizeof *db);
}

/* ---- codec ------------------------------------------------------------ */

static int snap_str(yajl_val r, const char *key, char **out, const char *ctx, char *err,
                    size_t errlen)
{
    const char *path[] = { key, NULL };
    yajl_val v = yajl_tree_get(r, path, yajl_t_any);
    if (!v || !YAJL_IS_STRING(v) || !v->u.string[0])
        return base_errf(err, errlen, -EBADMSG, "%s: %s missing or not a string", ctx, key);
    *out = strdup(v->u.string);
    return *out ? 0 : base_errf(err, errlen, -ENOMEM, "out of memory");
}

static int snap_parse_rec(const char *key, yajl_val r, snapstore_rec *rec, char *err,
                          size_t errlen)
{
    char q[128], ctx[160], detail[BASE_ERRSTR_MAX];
    const char *idp[] = { "id", NULL }, *srcp[] = { "source", NULL };
    int rc;

    snprintf(ctx, sizeof ctx, "snapshots[%s]", base_quote(q, sizeof q, key));
    if (!store_id_valid(key) || !YAJL_IS_OBJECT(r))
        return base_errf(err, errlen, -EBADMSG, "%s: not a snapshot id and record", ctx);
    yajl_val v = yajl_tree_get(r, idp, yajl_t_string);
    if (!v || strcmp(v->u.string, key) != 0)
        return base_errf(err, errlen, -EBADMSG, "%s: id does not match its key", ctx);
    memcpy(rec->id, key, STORE_ID_LEN + 1);
    if ((rc = snap_str(r, "name", &rec->name, ctx, err, errlen)) ||
        (rc = snap_str(r, "created_at", &rec->created_at, ctx, err, errlen)) ||
        (rc = snap_str(r, "dir", &rec->dir, ctx, err, errlen)))
        return rc;
    if (!store_name_valid(rec->name))
        return base_errf(err, errlen, -EBADMSG, "%s: invalid name", ctx);
    v = yajl_tree_get(r, srcp, yajl_t_object);
    yajl_val sid = v ? yajl_tree_get(v, idp, yajl_t_string) : NULL;
    const char *hvp[] = { "hypervisor", NULL };
    yajl_val hv = v ? yajl_tree_get(v, hvp, yajl_t_string) : NULL;
    if (!sid || !hv)
        return base_errf(err, errlen, -EBADMSG, "%s: source missing or without id and hypervisor",
                         ctx);
    const char *backend = strcmp(hv->u.string, store_hypervisor_name(STORE_BACKEND_FC)) == 0
                              ? STORE_BACKEND_FC
                              : STORE_BACKEND_CH;
    if ((rc = vmsjson_vm_parse(sid->u.string, v, backend, &rec->source, detail, sizeof detail)))
        return base_errf(err, errlen, rc, "%s: source: %s", ctx, detail);
    return 0;
}

int snapstore_parse(const char *buf, size_t len, snapstore_db *db, char *err, size_t errlen)
{
    char ebuf[256];
    const char *path[] = { "snapshots", NULL };
    int rc;

    memset(db, 0, sizeof *db);
    yajl_val root;
    if ((rc = vmsjson_tree(buf, len, &root, err, errlen)))
        return rc;
    yajl_val snaps = yajl_tree_get(root, path, yajl_t_object);
    if (!snaps) {
        rc = base_errf(err, errlen, -EBADMSG, "\"snapshots\" missing or not an object");
        goto out;
    }
    size_t n = snaps->u.object.len;
    if (n && !(db->recs = calloc(n, sizeof *db->recs))) {
        rc = base_errf(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        rc = snap_parse_rec(snaps->u.object.keys[i], snaps->u.object.values[i], &db->recs[i],
                            err, errlen);
        db->n = i + 1;
        for (size_t j = 0; j < i && !rc; j++) {
            if (strcmp(db->recs[j].id, db->recs[i].id) == 0)
                rc = base_errf(err, errlen, -EBADMSG, "duplicate snapshot id %s",
                               db->recs[i].id);
            else if (strcmp(db->recs[j].name, db->recs[i].name) == 0)
                rc = base_errf(err, errlen, -EBADMSG, "two snapshots named %s",
                               base_quote(ebuf, sizeof ebuf, db->recs[i].name));
        }
    }
out:
    yajl_tree_free(root);
    if (rc)
        snapstore_db_fini(db);
    return rc;
}

static void snap_gen_str(yajl_gen g, yajl_gen_status *st, const char *s)
{
    if (*st == yajl_gen_status_ok)
        *st = yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

yajl_gen_status snapstore_rec_gen(yajl_gen g, const snapstore_rec *r)
{
    yajl_gen_status st = yajl_gen_map_open(g);
    snap_gen_str(g, &st, "id");
    snap_gen_str(g, &st, r->id);
    snap_gen_str(g, &st, "name");
    snap_gen_str(g, &st, r->name);
    snap_gen_str(g, &st, "created_at");
    snap_gen_str(g, &st, r->created_at);
    snap_gen_str(g, &st, "dir");
    snap_gen_str(g, &st, r->dir);
    snap_gen_str(g, &st, "source");
    if (st == yajl_gen_status_ok)
        st = vmsjson_vm_gen(g, &r->source, NULL);
    for (int k = 0; k < 2 && st == yajl_gen_status_ok; k++)
        st = yajl_gen_map_close(g);
    return st;
}

int snapstore_serialize(const snapstore_db *db, char **out, size_t *out_len, char *err,
                        size_t errlen)
{
    *out = NULL;
    *out_len = 0;
    for (size_t i = 0; i < db->n; i++) {
        const snapstore_rec *r = &db->recs[i];
        if (!store_id_valid(r->id) || !r->name || !r->created_at || !r->dir ||
            !store_id_valid(r->source.id) || !store_hypervisor_name(r->source.backend))
            return base_errf(err, errlen, -EINVAL, "serialize: incomplete snapshot record");
    }
    yajl_gen g = yajl_gen_alloc(NULL);
    if (!g)
        return base_errf(err, errlen, -ENOMEM, "serialize: out of memory");
    yajl_gen_status st = yajl_gen_status_ok;
    if (!yajl_gen_config(g, yajl_gen_validate_utf8, 1) ||
        !yajl_gen_config(g, yajl_gen_beautify, 1))
        st = yajl_gen_in_error_state;
    if (st == yajl_gen_status_ok)
        st = yajl_gen_map_open(g);
    snap_gen_str(g, &st, "snapshots");
    if (st == yajl_gen_status_ok)
        st = yajl_gen_map_open(g);
    for (size_t i = 0; i < db->n; i++) {
        snap_gen_str(g, &st, db->recs[i].id);
        if (st == yajl_gen_status_ok)
            st = snapstore_rec_gen(g, &db->recs[i]);
    }
    for (int k = 0; k < 2 && st == yajl_gen_status_ok; k++)
        st = yajl_gen_map_close(g);
    const unsigned char *buf;
    size_t len;
    int rc = 0;
    if (st == yajl_gen_status_ok)
        st = yajl_gen_get_buf(g, &buf, &len);
    if (st != yajl_gen_status_ok)
        rc = base_errf(err, errlen, -EINVAL, "serialize: invalid UTF-8 or generator error %d",
                       (int)st);
    else if (!(*out = malloc(len ? len : 1)))
        rc = base_errf(err, errlen, -ENOMEM, "serialize: out of memory");
    else {
        memcpy(*out, buf, len);
        *out_len = len;
    }
    yajl_gen_free(g);
    return rc;
}

/* ---- records ---------------------------------------------------------- */

int snapstore_add(snapstore_db *db, snapstore_rec *r, char *err, size_t errlen)
{
    char q[128];
    if (!store_id_valid(r->id))
        return base_errf(err, errlen, -EINVAL, "invalid snapshot id");
    if (!r->name || !store_name_valid(r->name))
        return base_errf(err, errlen, -EINVAL, "invalid snapshot name %s",
                         base_quote(q, sizeof q, r->name));
    for (size_t i = 0; i < db->n; i++) {
        if (strcmp(db->recs[i].name, r->name) == 0)
            return base_errf(err, errlen, -EEXIST, "snapshot name %s already in use",
                             base_quote(q, sizeof q, r->name));
        if (strcmp(db->recs[i].id, r->id) == 0)
            return base_errf(err, errlen, -EEXIST, "snapshot id %s already in use", r->id);
    }
    snapstore_rec *n = realloc(db->recs, (db->n + 1) * sizeof *n);
    if (!n)
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    db->recs = n;
    db->recs[db->n++] = *r;
    memset(r, 0, sizeof *r);
    return 0;
}

int snapstore_remove(snapstore_db *db, const char *id, snapstore_rec *out)
{
    for (size_t i = 0; i < db->n; i++) {
        if (strcmp(db->recs[i].id, id) == 0) {
            if (out)
                *out = db->recs[i];
            else
                snapstore_rec_fini(&db->recs[i]);
            db->recs[i] = db->recs[--db->n];
            return 0;
        }
    }
    return -ENOENT;
}

int snapstore_resolve(const snapstore_db *db, const char *ref, const snapstore_rec **out,
                      char *err, size_t errlen)
{
    char q[128];
    const snapstore_rec *hit = NULL;
    size_t rl = ref ? strlen(ref) : 0;

    *out = NULL;
    if (!rl)
        return base_errf(err, errlen, -ENOENT, "snapshot not found");
    for (size_t i = 0; i < db->n && !hit; i++)
        if (strcmp(db->recs[i].id, ref) == 0)
            hit = &db->recs[i];
    for (size_t i = 0; i < db->n && !hit; i++)
        if (strcmp(db->recs[i].name, ref) == 0)
            hit = &db->recs[i];
    for (size_t i = 0; i < db->n && !hit && rl >= STORE_REF_PREFIX_MIN; i++) {
        if (strncmp(db->recs[i].id, ref, rl) != 0)
            continue;
        for (size_t j = i + 1; j < db->n; j++)
            if (strncmp(db->recs[j].id, ref, rl) == 0)
                return base_errf(err, errlen, -EINVAL, "ambiguous ref %s: multiple matches",
                                 base_quote(q, sizeof q, ref));
        hit = &db->recs[i];
    }
    if (!hit)
        return base_errf(err, errlen, -ENOENT, "snapshot not found");
    *out = hit;
    return 0;
}

/* ---- files ------------------------------------------------------------ */

static char *snap_path(const char *root, const char *leaf)
{
    char *p = NULL;
    return asprintf(&p, "%s/snapshots/%s", store_root(root), leaf) < 0 ? NULL : p;
}

/* Reads the db file in dir; the caller holds the lock. */
static int snap_read(const char *dir, snapstore_db *db, char *err, size_t errlen)
{
    char detail[BASE_ERRSTR_MAX], *path = NULL, *buf = NULL;
    size_t len = 0;
    int rc;

    memset(db, 0, sizeof *db);
    if (asprintf(&path, "%s/" SNAP_FILE, dir) < 0)
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        rc = e == ENOENT ? 0 : base_errf(err, errlen, -e, "open %s: %s", path, strerror(e));
        free(path);
        return rc;
    }
    rc = safefile_read_fd(fd, path, SNAP_MAX_FILE, &buf, &len, err, errlen);
    close(fd);
    if (rc == 0) {
        rc = len ? snapstore_parse(buf, len, db, detail, sizeof detail)
                 : base_errf(detail, sizeof detail, -EBADMSG, "empty file");
        if (rc)
            base_errf(err, errlen, rc, "%s: %s", path, detail);
    }
    free(buf);
    free(path);
    return rc;
}

int snapstore_load(const char *root, snapstore_db *db, char *err, size_t errlen)
{
    char *dir = snap_path(root, "db"), *lock = snap_path(root, "db/" SNAP_LOCK);
    struct stat st;
    int rc = 0;

    memset(db, 0, sizeof *db);
    if (!dir || !lock) {
        rc = base_errf(err, errlen, -ENOMEM, "out of memory");
    } else if (stat(dir, &st) == 0 || errno != ENOENT) {
        /* A reader never creates the store. */
        int fd = store_flock(lock, O_RDONLY | O_CREAT, LOCK_SH, err, errlen);
        if (fd == -EACCES || fd == -EROFS)
            fd = store_flock(lock, O_RDONLY, LOCK_SH, err, errlen);
        rc = fd < 0 ? fd : snap_read(dir, db, err, errlen);
        if (fd >= 0)
            close(fd);
    }
    free(dir);
    free(lock);
    return rc;
}

int snapstore_update(const char *root, snapstore_update_fn *fn, void *priv, char *err,
                     size_t errlen)
{
    char *dir = snap_path(root, "db"), *lock = snap_path(root, "db/" SNAP_LOCK);
    snapstore_db db;
    int rc, lockfd = -1, dirfd = -1;

    if (!dir || !lock) {
        rc = base_errf(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = safefile_mkdir_private(dir, err, errlen)))
        goto out;
    if ((lockfd = store_flock(lock, O_RDWR | O_CREAT, LOCK_EX, err, errlen)) < 0) {
        rc = lockfd;
        goto out;
    }
    if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        int e = errno;
        rc = base_errf(err, errlen, -e, "open %s: %s", dir, strerror(e));
        goto out;
    }
    /* A corrupt file stays for the operator to repair. */
    if ((rc = snap_read(dir, &db, err, errlen)))
        goto out;
    rc = fn(&db, priv, err, errlen);
    if (rc == 0) {
        char *buf = NULL;
        size_t len = 0;
        rc = snapstore_serialize(&db, &buf, &len, err, errlen);
        if (rc == 0)
            rc = safefile_replace_at(dirfd, dir, SNAP_FILE, SNAP_TMP_PREFIX, buf, len, err,
                                     errlen);
        free(buf);
    }
    snapstore_db_fini(&db);
out:
    if (dirfd >= 0)
        close(dirfd);
    if (lockfd >= 0)
        close(lockfd);
    free(dir);
    free(lock);
    return rc;
}

char *snapstore_data_dir(const char *root, const char *id)
{
    char *p = NULL;
    if (!id || !store_id_valid(id))
        return NULL;
    return asprintf(&p, "%s/snapshots/data/%s", store_root(root), id) < 0 ? NULL : p;
}

int snapstore_data_create(const char *root, const char *id, char *err, size_t errlen)
{
    char *dir = snapstore_data_dir(root, id);
    struct stat st;
    int rc;

    if (!dir)
        return base_errf(err, errlen, -EINVAL, "invalid snapshot id");
    if (lstat(dir, &st) == 0)
        rc = base_errf(err, errlen, -EEXIST, "%s: already exists", dir);
    else
        rc = safefile_mkdir_private(dir, err, errlen);
    free(dir);
    return rc;
}

/* Removes name in dirfd and, for a directory, everything below it.
 * O_NOFOLLOW makes a symlink fail the open, and a symlink is then
 * unlinked itself, never its target. */
static int snap_rm_at(int parent, const char *name, int depth)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOTDIR && errno != ELOOP)
            return errno == ENOENT ? 0 : -errno;
        return unlinkat(parent, name, 0) < 0 && errno != ENOENT ? -errno : 0;
    }
    if (depth >= SNAP_RM_DEPTH) {
        close(fd);
        return -ELOOP;
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return -e;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            rc = snap_rm_at(dirfd(d), de->d_name, depth + 1);
    closedir(d);
    if (rc == 0 && unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        rc = -errno;
    return rc;
}

int snapstore_data_remove(const char *root, const char *id, char *err, size_t errlen)
{
    char *data = snap_path(root, "data");
    int rc = 0;

    if (!id || !store_id_valid(id)) {
        free(data);
        return base_errf(err, errlen, -EINVAL, "invalid snapshot id");
    }
    if (!data)
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    int fd = open(data, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e != ENOENT)
            rc = base_errf(err, errlen, -e, "open %s: %s", data, strerror(e));
    } else {
        if ((rc = snap_rm_at(fd, id, 0)))
            base_errf(err, errlen, rc, "remove %s/%s: %s", data, id, strerror(-rc));
        close(fd);
    }
    free(data);
    return rc;
}
