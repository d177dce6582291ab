/* json/prune.h: a fast first pass over a vm.info body that drops what the
 * decoder never reads, so yajl, which still parses every value cocoon
 * uses, works on a few hundred bytes instead of the whole body.  Bytes in,
 * bytes out: no allocation, no I/O. */
#ifndef COCOON_JSON_PRUNE_H
#define COCOON_JSON_PRUNE_H

#include <stddef.h>

/* Writes to out (room for len bytes) a copy of the JSON document buf
 * without whitespace, in which these values are replaced by 0: members of
 * the top-level object other than "config", "state" and "device_tree";
 * members of "config" other than "memory", "fs" and "devices"; and the
 * value of every "device_tree" member (its key stays).  Everything else is
 * copied token for token.  The dropped values are checked for syntax, with
 * yajl's rules or stricter ones, and so is the rest.
 *
 * Returns the length written (never more than len), or -1 when this pass
 * does not handle the body: any syntax error, a key that decides what is
 * kept but contains an escape, nesting deeper than max_depth containers.
 * The caller then parses the original body, which gives the exact error
 * (or result) it would give without this pass. */
long json_prune_vm_info(const char *buf, size_t len, char *out, unsigned max_depth);

#endif
