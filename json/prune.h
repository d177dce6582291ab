/* json/prune.h: a fast first pass over a vm.info body that drops what the
 * decoder never reads, so yajl, which still parses every value cocoon
 * uses, works on a few hundred bytes instead of the whole body.  Bytes in,
 * bytes out: no allocation, no I/O. */
#ifndef COCOON_JSON_PRUNE_H
#define COCOON_JSON_PRUNE_H

#include <stddef.h>

/* Writes to out (room for len bytes) a copy of the JSON document buf
 * without whitespace and without the values the decoder ignores: members
 * of the top-level object other than "config", "state" and "device_tree",
 * members of "config" other than "memory", "fs" and "devices", and
 * members of "memory" other than "size", "shared", "hugepages" and
 * "zones" are left out; every "device_tree" member keeps its key with the
 * value 0.  Everything else is copied token for token.  What is left out
 * is still checked for syntax, with yajl's rules or stricter ones.
 *
 * Returns the length written (never more than len), or -1 when this pass
 * does not handle the body: any syntax error, a key that decides what is
 * kept but contains an escape, nesting deeper than max_depth containers.
 * The caller then parses the original body, which gives the exact error
 * (or result) it would give without this pass. */
long json_prune_vm_info(const char *buf, size_t len, char *out, unsigned max_depth);

#endif
