/* backends/snapstore.h: snapshot records.  A snapshot is a record of its
 * own, not part of any VM: <root>/snapshots/db/snapshots.json holds the
 * records, guarded by the flock <root>/snapshots/db/snapshots.lock, and
 * <root>/snapshots/data/<id>/ holds the files the VMM wrote.  Writes are
 * atomic (temp file, fsync, rename) and done under the lock. */
#ifndef COCOON_BACKENDS_SNAPSTORE_H
#define COCOON_BACKENDS_SNAPSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <yajl/yajl_gen.h>

#include "backends/store.h"

/* One snapshot.  Every pointer owned; free with snapstore_rec_fini. */
typedef struct snapstore_rec {
    char id[STORE_ID_LEN + 1];
    char *name;                       /* unique among snapshots; never NULL in
                                         a parsed or added record */
    char *created_at;                 /* RFC 3339 UTC */
    char *dir;                        /* the directory the VMM wrote */
    store_vm source;                  /* the source VM's record when saved:
                                         its id, backend and config, with
                                         shared_memory */
} snapstore_rec;

typedef struct snapstore_db {
    snapstore_rec *recs;
    size_t n;
} snapstore_db;

/* Error contract: 0 or -errno with the human text in err. */

void snapstore_rec_fini(snapstore_rec *r);
void snapstore_db_fini(snapstore_db *db);

/* The document {"snapshots": {"<id>": record, ...}}, bytes to records and
 * back; no I/O.  parse: -EBADMSG with the reason (NUL bytes, comments,
 * nesting deeper than 32, an id that is not its key, a missing name, dir
 * or source, two records with one name); on failure *db is empty.
 * serialize: *out owned (free()), not NUL-terminated. */
int snapstore_parse(const char *buf, size_t len, snapstore_db *db, char *err, size_t errlen);
int snapstore_serialize(const snapstore_db *db, char **out, size_t *out_len, char *err,
                        size_t errlen);

/* Writes r as its JSON object (the value under its id in the document);
 * the first yajl status that was not ok. */
yajl_gen_status snapstore_rec_gen(yajl_gen g, const snapstore_rec *r);

/* Reads the records under a shared lock; a missing store is empty. */
int snapstore_load(const char *root, snapstore_db *db, char *err, size_t errlen);

/* Read-modify-write under the exclusive lock, as store_update. */
typedef int snapstore_update_fn(snapstore_db *db, void *priv, char *err, size_t errlen);
int snapstore_update(const char *root, snapstore_update_fn *fn, void *priv, char *err,
                     size_t errlen);

/* Takes ownership of *r (leaves it zeroed).  -EEXIST "snapshot name %q
 * already in use", -EINVAL for an invalid id or name. */
int snapstore_add(snapstore_db *db, snapstore_rec *r, char *err, size_t errlen);
/* Takes the record with id out of db, into *out (owned, snapstore_rec_fini)
 * or freed when out is NULL: 0, or -ENOENT. */
int snapstore_remove(snapstore_db *db, const char *id, snapstore_rec *out);

/* A snapshot ref is an exact id, then an exact name, then an id prefix of
 * at least STORE_REF_PREFIX_MIN characters that matches one record only.
 * *out is borrowed from db.  -ENOENT "snapshot not found", -EINVAL
 * "ambiguous ref %q: multiple matches". */
int snapstore_resolve(const snapstore_db *db, const char *ref, const snapstore_rec **out,
                      char *err, size_t errlen);

/* "<root>/snapshots/data/<id>", owned (free()); NULL for an invalid id
 * or no memory. */
char *snapstore_data_dir(const char *root, const char *id);

/* Creates the empty private data dir of a new snapshot id (parents 0755,
 * itself 0700); an existing one is -EEXIST. */
int snapstore_data_create(const char *root, const char *id, char *err, size_t errlen);

/* Removes the data dir of id and everything in it, never following a
 * symlink: only <root>/snapshots/data/<id> is touched, whatever a record
 * says, so removing a snapshot never removes a VM's files.  A missing dir
 * is 0. */
int snapstore_data_remove(const char *root, const char *id, char *err, size_t errlen);

#endif
