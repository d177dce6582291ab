/* backends/vmsjson.h: the vms.json document of the VM store, bytes to
 * records and back.  No I/O and no locking: backends/store does those.
 * The document is {"vms": {"<id>": record, ...}, "names": {"<name>":
 * "<id>", ...}}; the names map must mirror the records exactly. */
#ifndef COCOON_BACKENDS_VMSJSON_H
#define COCOON_BACKENDS_VMSJSON_H

#include <stddef.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "backends/store.h"

/* Parses len bytes of buf (need not be NUL-terminated) into *db, whose
 * records belong to backend (STORE_BACKEND_CH or _FC).  Rejects NUL bytes,
 * comments, nesting deeper than 32, duplicate ids, a record whose id is
 * not its key, unknown states and a names map that does not match the
 * records: -EBADMSG with the reason in err.  On success *db is owned
 * (store_db_fini); on failure it is empty. */
int vmsjson_parse(const char *buf, size_t len, const char *backend, store_db *db,
                  char *err, size_t errlen);

/* Serializes db as the vms.json document.  *out is owned (free()), not
 * NUL-terminated.  An invalid record (bad id, no backend, cpu or memory
 * out of range, NULL disk) is -EINVAL/-ERANGE and nothing is written. */
int vmsjson_serialize(const store_db *db, char **out, size_t *out_len, char *err,
                      size_t errlen);

/* yajl_tree_parse of len bytes of buf (need not be NUL-terminated), vetted
 * first: no NUL bytes, nothing outside strings that is not JSON (this
 * rejects comments) and nesting no deeper than 32.  *out owned
 * (yajl_tree_free), NULL on failure: -EBADMSG with the reason. */
int vmsjson_tree(const char *buf, size_t len, yajl_val *out, char *err, size_t errlen);

/* Parses one record r (the value under key in "vms") of backend into *vm,
 * owned (store_vm_fini, also after a failure).  -EBADMSG with the reason. */
int vmsjson_vm_parse(const char *key, yajl_val r, const char *backend, store_vm *vm,
                     char *err, size_t errlen);

/* Writes vm as the record layout of vms.json into g and leaves the map
 * open, so a caller can add keys (inspect's attached_devices) before
 * closing it.  state_override, when non-NULL, is written in place of the
 * record's state.  Returns the first yajl status that was not ok. */
yajl_gen_status vmsjson_vm_gen(yajl_gen g, const store_vm *vm, const char *state_override);

#endif
