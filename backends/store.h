/* backends/store.h: VM records, their locking and VM-ref resolution.  One
 * vms.json per backend under <root>/<backend>/db/ (its format is
 * backends/vmsjson), guarded by the flock <root>/<backend>/db/vms.lock;
 * writes are atomic (temp file, fsync, rename) and done under the lock. */
#ifndef COCOON_BACKENDS_STORE_H
#define COCOON_BACKENDS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_ID_LEN 26               /* base32 A-Z2-7 */
#define STORE_BACKEND_CH "cloudhypervisor"
#define STORE_BACKEND_FC "firecracker"

typedef enum store_state {
    STORE_CREATING, STORE_CREATED, STORE_RUNNING, STORE_STOPPED, STORE_ERROR
} store_state;

typedef struct store_vm_config {
    char *name;
    int cpu;
    uint64_t memory;                  /* bytes */
    bool shared_memory;               /* omitted from JSON when false */
    char *kernel, *initramfs, *cmdline;   /* NULL when unset */
    char **disks;
    size_t n_disks;
} store_vm_config;

/* Every pointer owned; free with store_vm_fini. */
typedef struct store_vm {
    char id[STORE_ID_LEN + 1];
    const char *backend;              /* STORE_BACKEND_CH or _FC (static) */
    store_state state;
    store_vm_config config;
    char *run_dir, *log_dir;
    char *binary;                     /* VMM binary of the last start, or NULL */
    char *created_at, *updated_at, *started_at;   /* RFC 3339 UTC, or NULL */
} store_vm;

typedef struct store_db {
    store_vm *vms;
    size_t n;
    const char *backend;              /* STORE_BACKEND_CH or _FC (static), set by
                                         store_load/vmsjson_parse; records
                                         added with backend NULL get this one */
} store_db;

/* Error contract: 0 or -errno with the human text in err.  Corrupt or
 * truncated vms.json: -EBADMSG naming the file; never an empty db. */

const char *store_state_name(store_state s);      /* "running", ... */
int store_state_parse(const char *s, store_state *out);
/* "cloud-hypervisor" or "firecracker" for a backend dir name. */
const char *store_hypervisor_name(const char *backend);
/* The literal STORE_BACKEND_CH or STORE_BACKEND_FC equal to backend, or
 * NULL: records point at these two so that backend comparisons and copies
 * never need an allocation. */
const char *store_backend_static(const char *backend);

/* The root: root if non-NULL, else $COCOON_ROOT_DIR, else /var/lib/cocoon.
 * Borrowed (from root, the environment, or a literal). */
const char *store_root(const char *root);
/* store_root(root) as an absolute path without symlinks, ".", ".." or
 * "//": the realpath of its longest existing leading part, then the rest
 * (which does not exist yet).  Every path a record stores derives from it,
 * so a root named relatively, with a trailing slash or through a symlink
 * is one root.  Owned (free()), or NULL with errno set. */
char *store_root_canon(const char *root);

/* 26 random base32 characters from getrandom, NUL-terminated. */
int store_new_id(char out[STORE_ID_LEN + 1]);
/* [A-Za-z0-9][A-Za-z0-9._-]{0,62}. */
bool store_name_valid(const char *name);
/* Exactly STORE_ID_LEN characters of A-Z2-7. */
bool store_id_valid(const char *id);
/* Names are unique per root, across both backends: 0 when name is free,
 * -EEXIST "name %q already in use" when a record in either backend has it.
 * A check only: store_create is the check and the add under one lock. */
int store_name_taken(const char *root, const char *name, char *err, size_t errlen);
/* Adds *vm (its backend's db) as a new record, holding the root-wide name
 * lock <root>/names.lock across the name check in every backend and the
 * add, so two creates of one name never both succeed.  Takes ownership of
 * *vm on success (leaves it zeroed), as store_db_add. */
int store_create(const char *root, store_vm *vm, char *err, size_t errlen);

/* Reads the db under a shared lock.  A missing file is an empty db. */
int store_load(const char *root, const char *backend, store_db *db,
               char *err, size_t errlen);
void store_db_fini(store_db *db);
void store_vm_fini(store_vm *vm);
int store_vm_copy(store_vm *dst, const store_vm *src);

/* Read-modify-write under the exclusive lock: loads, calls fn, and if fn
 * returns 0 writes the result atomically.  fn's nonzero return is passed
 * through (fn fills err). */
typedef int store_update_fn(store_db *db, void *priv, char *err, size_t errlen);
int store_update(const char *root, const char *backend, store_update_fn *fn,
                 void *priv, char *err, size_t errlen);

/* Helpers for update callbacks. */
store_vm *store_db_find(store_db *db, const char *id);
store_vm *store_db_find_name(store_db *db, const char *name);
/* Takes ownership of *vm (leaves it zeroed). -EEXIST "name %q already in use". */
int store_db_add(store_db *db, store_vm *vm, char *err, size_t errlen);
int store_db_remove(store_db *db, const char *id);

/* A VM ref is resolved across both backends, tier by tier: an exact id,
 * then an exact name, then an id prefix of at least STORE_REF_PREFIX_MIN
 * characters that matches one record only.  A tier that matches in one
 * backend wins over later tiers in the other.  Errors: -ENOENT "VM not
 * found" (also for an empty ref), -EINVAL "ambiguous ref \"x\": multiple
 * matches" (two records of one backend) or "VM ref resolves to multiple
 * backends". */
#define STORE_REF_PREFIX_MIN 3

/* Both backends' records read once and indexed by id and name, so many
 * refs resolve against one read of the store (the engine resolves a
 * batch of operations against one load per loop iteration).  Every
 * pointer owned; free with store_set_fini. */
typedef struct store_tab {            /* private: exact-match index */
    const char **keys;                /* borrowed from the db's records */
    long *vals;                       /* record index, -1 when shared */
    size_t cap;
} store_tab;

/* Which version of a backend's vms.json a store_set holds. */
typedef struct store_stamp {
    bool present;
    uint64_t dev, ino, size;
    int64_t mtime_ns, ctime_ns;
} store_stamp;

typedef struct store_set {
    store_db db[2];                   /* [0] STORE_BACKEND_CH, [1] _FC */
    store_tab by_id[2], by_name[2];
    bool loaded;                      /* by store_set_refresh */
    store_stamp stamp[2];
} store_set;

/* Loads both backends under their shared locks.  On failure *s is empty
 * (store_set_fini is still safe). */
int store_set_load(store_set *s, const char *root, char *err, size_t errlen);
/* Resolves ref in s.  *out is borrowed from s (valid until
 * store_set_fini), NULL on error. */
int store_set_resolve(const store_set *s, const char *ref, const store_vm **out,
                      char *err, size_t errlen);
/* Keeps s as it is when neither backend's vms.json changed since s was
 * read (one stat each), else reloads it.  Takes no lock and never waits
 * for one: every writer replaces the file whole by a rename under the
 * lock, so a reader without it still reads one consistent version.  For
 * readers inside an event loop.  On failure *s is empty. */
int store_set_refresh(store_set *s, const char *root, char *err, size_t errlen);
/* store_set_fini(NULL) is a no-op; leaves *s empty. */
void store_set_fini(store_set *s);

/* Loads the store and resolves ref once.  On success *out is a deep copy
 * (store_vm_fini it); on failure it is zeroed. */
int store_resolve(const char *root, const char *ref, store_vm *out,
                  char *err, size_t errlen);

/* "<root>/run/<backend>/<id>", owned (free()). */
char *store_default_run_dir(const char *root, const char *backend, const char *id);
/* Serializes start/stop/rm of one VM across processes: an exclusive flock
 * on <root>/<backend>/db/<id>.lock (created 0600, never through a symlink),
 * waited for.  The caller re-reads the record once it holds the lock.
 * Returns the lock descriptor (>= 0) or -errno with err. */
int store_vm_lock(const char *root, const char *backend, const char *id,
                  char *err, size_t errlen);
/* Releases a store_vm_lock descriptor; a negative fd is a no-op. */
void store_vm_unlock(int fd);
/* Unlinks the lock file of a removed record; call it while holding the
 * lock.  Returns 0 or -errno (a missing file is 0). */
int store_vm_lock_remove(const char *root, const char *backend, const char *id);

/* Opens path (flags | O_NOFOLLOW | O_CLOEXEC, created 0600) and waits for
 * flock op on it: the descriptor (>= 0, close() releases) or -errno with
 * "open <path>: ..." / "flock <path>: ..." in err. */
int store_flock(const char *path, int flags, int op, char *err, size_t errlen);

/* Current time, RFC 3339 UTC with seconds, owned. */
char *store_now(void);

#endif
