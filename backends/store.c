#include "backends/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backends/safefile.h"
#include "backends/vmsjson.h"
#include "http/base.h"

#define STORE_DB_FILE "vms.json"
#define STORE_NAMES_LOCK "names.lock"
#define STORE_LOCK_FILE "vms.lock"
/* Temp files of an interrupted write start with this; loads never look at
 * them and the next update, which holds the exclusive lock and therefore
 * knows no other writer is mid-write, removes them. */
#define STORE_TMP_PREFIX ".vms.json.tmp."
#define STORE_MAX_FILE (64u << 20)

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

const char *store_backend_static(const char *backend)
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

char *store_root_canon(const char *root)
{
    const char *r = store_root(root);
    char *path, *rest = NULL, *base = NULL, *out = NULL;
    size_t cap, n;

    /* The longest leading part that exists is resolved (symlinks, "..",
     * "//", relative to the working directory); the rest does not exist
     * yet, so it is joined component by component, "." dropped and ".."
     * taking one back. */
    if (asprintf(&path, "%s%s", r[0] == '/' ? "" : "./", r) < 0)
        return NULL;
    for (size_t i = strlen(path) + 1; !base && i-- > 0;) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        base = realpath(i == 0 ? "/" : path, NULL);
        path[i] = saved;
        rest = path + i;
    }
    if (!base) {
        free(path);
        return NULL;
    }
    cap = strlen(base) + strlen(rest) + 2;
    out = malloc(cap);
    if (out) {
        snprintf(out, cap, "%s", base);
        for (char *tok = strtok(rest, "/"); tok; tok = strtok(NULL, "/")) {
            if (strcmp(tok, "..") == 0) {
                char *sl = strrchr(out, '/');
                *(sl == out ? sl + 1 : sl) = '\0';
            } else if (strcmp(tok, ".") != 0) {
                n = strlen(out);
                snprintf(out + n, cap - n, "%s%s", out[n - 1] == '/' ? "" : "/", tok);
            }
        }
    }
    free(base);
    free(path);
    return out;
}

int store_new_id(char out[STORE_ID_LEN + 1])
{
    int rc = safefile_random_name(out, STORE_ID_LEN);
    out[STORE_ID_LEN] = '\0';
    return rc;
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

/* ---- files and locks -------------------------------------------------- */

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

char *store_default_run_dir(const char *root, const char *backend, const char *id)
{
    return store_pathf("%s/run/%s/%s", store_root(root), backend, id);
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

int store_flock(const char *path, int flags, int op, char *err, size_t errlen)
{
    int fd = safefile_open(path, flags, 0600, err, errlen);
    if (fd < 0)
        return fd;
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
    int fd = store_flock(path, O_RDWR | O_CREAT, LOCK_EX, err, errlen);
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
    int fd = safefile_open(p->file, O_RDONLY, 0, err, errlen);
    if (fd == -ENOENT)
        return 0;
    if (fd < 0)
        return fd;
    char *buf = NULL;
    size_t len = 0;
    int rc = safefile_read_fd(fd, p->file, STORE_MAX_FILE, &buf, &len, err, errlen);
    close(fd);
    if (rc)
        return rc;
    if (len == 0)
        rc = base_errf(detail, sizeof detail, -EBADMSG, "empty file");
    else
        rc = vmsjson_parse(buf, len, backend, db, detail, sizeof detail);
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
    int fd = store_flock(p.lock, O_RDONLY | O_CREAT, LOCK_SH, err, errlen);
    if (fd == -EACCES || fd == -EROFS)
        fd = store_flock(p.lock, O_RDONLY, LOCK_SH, err, errlen);
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
    if ((rc = safefile_mkdir_private(p.dir, err, errlen))) {
        store_paths_fini(&p);
        return rc;
    }
    int lockfd = store_flock(p.lock, O_RDWR | O_CREAT, LOCK_EX, err, errlen);
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
        rc = vmsjson_serialize(&db, &buf, &len, err, errlen);
        if (rc == 0)
            rc = safefile_replace_at(dirfd, p.dir, STORE_DB_FILE, STORE_TMP_PREFIX, buf, len,
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

/* Open addressing over keys borrowed from one db; cap is a power of two
 * at least twice the record count, so a probe always ends at a hole. */
static void store_tab_put(store_tab *t, const char *key, long val)
{
    size_t i = base_hash(key, strlen(key)) & (t->cap - 1);
    while (t->keys[i]) {
        if (strcmp(t->keys[i], key) == 0) {
            t->vals[i] = -1;
            return;
        }
        i = (i + 1) & (t->cap - 1);
    }
    t->keys[i] = key;
    t->vals[i] = val;
}

/* -2: absent, -1: held by several records, else the record's index. */
static long store_tab_get(const store_tab *t, const char *key)
{
    if (!t->cap)
        return -2;
    size_t i = base_hash(key, strlen(key)) & (t->cap - 1);
    while (t->keys[i]) {
        if (strcmp(t->keys[i], key) == 0)
            return t->vals[i];
        i = (i + 1) & (t->cap - 1);
    }
    return -2;
}

static void store_tab_fini(store_tab *t)
{
    free(t->keys);
    free(t->vals);
    memset(t, 0, sizeof *t);
}

static int store_tab_build(store_tab *t, const store_db *db, bool names)
{
    size_t cap = 16;
    while (cap < db->n * 2 + 2)
        cap *= 2;
    t->keys = calloc(cap, sizeof *t->keys);
    t->vals = calloc(cap, sizeof *t->vals);
    t->cap = cap;
    if (!t->keys || !t->vals) {
        store_tab_fini(t);
        return -ENOMEM;
    }
    for (size_t i = 0; i < db->n; i++) {
        const char *k = names ? db->vms[i].config.name : db->vms[i].id;
        if (k && *k)
            store_tab_put(t, k, (long)i);
    }
    return 0;
}

void store_set_fini(store_set *s)
{
    if (!s)
        return;
    for (int b = 0; b < 2; b++) {
        store_db_fini(&s->db[b]);
        store_tab_fini(&s->by_id[b]);
        store_tab_fini(&s->by_name[b]);
    }
    memset(s, 0, sizeof *s);
}

int store_set_load(store_set *s, const char *root, char *err, size_t errlen)
{
    int rc;
    memset(s, 0, sizeof *s);
    for (int b = 0; b < 2; b++) {
        if ((rc = store_load(root, store_backends[b], &s->db[b], err, errlen))) {
            store_set_fini(s);
            return rc;
        }
        if (store_tab_build(&s->by_id[b], &s->db[b], false) ||
            store_tab_build(&s->by_name[b], &s->db[b], true)) {
            store_set_fini(s);
            return base_errf(err, errlen, -ENOMEM, "resolve: out of memory");
        }
    }
    return 0;
}

static int store_stamp_get(const char *root, const char *backend, store_stamp *st,
                           char *err, size_t errlen)
{
    store_paths p;
    struct stat sb;
    int rc = store_paths_init(&p, root, backend, err, errlen);

    memset(st, 0, sizeof *st);
    if (rc)
        return rc;
    if (stat(p.file, &sb) == 0) {
        st->present = true;
        st->dev = (uint64_t)sb.st_dev;
        st->ino = (uint64_t)sb.st_ino;
        st->size = (uint64_t)sb.st_size;
        st->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
        st->ctime_ns = (int64_t)sb.st_ctim.tv_sec * 1000000000 + sb.st_ctim.tv_nsec;
    } else if (errno != ENOENT && errno != ENOTDIR) {
        rc = base_errf(err, errlen, -errno, "stat %s: %s", p.file, strerror(errno));
    }
    store_paths_fini(&p);
    return rc;
}

int store_set_refresh(store_set *s, const char *root, char *err, size_t errlen)
{
    store_stamp now[2];
    int rc;

    for (int b = 0; b < 2; b++) {
        if ((rc = store_stamp_get(root, store_backends[b], &now[b], err, errlen))) {
            store_set_fini(s);
            return rc;
        }
    }
    if (s->loaded && memcmp(now, s->stamp, sizeof now) == 0)
        return 0;
    store_set_fini(s);
    for (int b = 0; b < 2; b++) {
        store_paths p;

        /* The stamp was taken first: a file replaced since is read in its
         * newer version and read again at the next call. */
        if ((rc = store_paths_init(&p, root, store_backends[b], err, errlen)))
            break;
        rc = store_read_db(&p, store_backends[b], &s->db[b], err, errlen);
        store_paths_fini(&p);
        if (rc)
            break;
        if (store_tab_build(&s->by_id[b], &s->db[b], false) ||
            store_tab_build(&s->by_name[b], &s->db[b], true)) {
            rc = base_errf(err, errlen, -ENOMEM, "resolve: out of memory");
            break;
        }
    }
    if (rc) {
        store_set_fini(s);
        return rc;
    }
    memcpy(s->stamp, now, sizeof now);
    s->loaded = true;
    return 0;
}

int store_set_resolve(const store_set *s, const char *ref, const store_vm **out, char *err,
                      size_t errlen)
{
    const store_vm *hit[2] = { NULL, NULL };
    size_t count[2] = { 0, 0 }, rlen = ref ? strlen(ref) : 0;
    char q[BASE_ERRSTR_MAX / 2];
    *out = NULL;
    if (!rlen)
        return base_errf(err, errlen, -ENOENT, "VM not found");
    /* The tiers are applied across both backends one at a time, so an exact
     * id or name in one backend wins over a mere prefix in the other. */
    for (int tier = 0; tier < 3 && !count[0] && !count[1]; tier++) {
        for (int b = 0; b < 2; b++) {
            if (tier < 2) {
                long v = store_tab_get(tier == 0 ? &s->by_id[b] : &s->by_name[b], ref);
                if (v >= 0) {
                    hit[b] = &s->db[b].vms[v];
                    count[b] = 1;
                } else if (v == -1) {
                    count[b] = 2;
                }
                continue;
            }
            if (rlen < STORE_REF_PREFIX_MIN)
                continue;
            for (size_t i = 0; i < s->db[b].n; i++) {
                if (strncmp(s->db[b].vms[i].id, ref, rlen) == 0) {
                    hit[b] = &s->db[b].vms[i];
                    count[b]++;
                }
            }
        }
    }
    if (count[0] > 1 || count[1] > 1)
        return base_errf(err, errlen, -EINVAL, "ambiguous ref %s: multiple matches",
                         base_quote(q, sizeof q, ref));
    if (count[0] && count[1])
        return base_errf(err, errlen, -EINVAL, "VM ref resolves to multiple backends");
    if (!count[0] && !count[1])
        return base_errf(err, errlen, -ENOENT, "VM not found");
    *out = hit[0] ? hit[0] : hit[1];
    return 0;
}

int store_resolve(const char *root, const char *ref, store_vm *out, char *err, size_t errlen)
{
    store_set s;
    const store_vm *hit;
    int rc;
    memset(out, 0, sizeof *out);
    if (!ref || !*ref)
        return base_errf(err, errlen, -ENOENT, "VM not found");
    if ((rc = store_set_load(&s, root, err, errlen)))
        return rc;
    if ((rc = store_set_resolve(&s, ref, &hit, err, errlen)) == 0 &&
        (rc = store_vm_copy(out, hit)))
        rc = base_errf(err, errlen, rc, "resolve: out of memory");
    store_set_fini(&s);
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

static int store_add_cb(store_db *db, void *priv, char *err, size_t errlen)
{
    return store_db_add(db, priv, err, errlen);
}

int store_create(const char *root, store_vm *vm, char *err, size_t errlen)
{
    store_paths p;
    int rc = store_paths_init(&p, root, vm->backend, err, errlen);
    if (rc)
        return rc;
    /* The db dir first: it makes the root, where the name lock lives. */
    rc = safefile_mkdir_private(p.dir, err, errlen);
    store_paths_fini(&p);
    if (rc)
        return rc;
    char *lock = store_pathf("%s/" STORE_NAMES_LOCK, store_root(root));
    if (!lock)
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    /* Names are unique across backends, whose records live in two files
     * under two locks: the check and the add happen under one lock over
     * the root's whole name space, or two creates of one name in two
     * backends can both pass the check. */
    int fd = store_flock(lock, O_RDWR | O_CREAT, LOCK_EX, err, errlen);
    free(lock);
    if (fd < 0)
        return fd;
    rc = vm->config.name ? store_name_taken(root, vm->config.name, err, errlen) : 0;
    if (!rc)
        rc = store_update(root, vm->backend, store_add_cb, vm, err, errlen);
    close(fd);
    return rc;
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
