/* json/vminfo.h: the fast path of the vm.info and PciDeviceInfo decoders
 * of json/ch.h: a reader that walks the body in place and fills the
 * decoded struct directly.  It handles what Cloud Hypervisor sends; on
 * anything else it gives up and the caller runs the yajl decoder, whose
 * result or error is then the answer.  Bytes in, structs out: no I/O. */
#ifndef COCOON_JSON_VMINFO_H
#define COCOON_JSON_VMINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json/ch.h"

/* Decodes the len bytes of buf into out (zeroed by the caller) and
 * returns 0, with exactly the fields json_vm_info_decode_yajl gives for
 * the same body.  Returns -1 when it does not handle the body: a syntax
 * error, a value of a type the decoder refuses, a missing field, a key
 * it reads given twice, an escape in a key it reads or a string it keeps,
 * nesting deeper than max_depth, no memory.  out may then hold part of a
 * result: finish it with json_vm_info_fini.  Everything it skips is still
 * checked for syntax, with yajl's rules or stricter ones. */
int json_vm_info_read(const char *buf, size_t len, json_vm_info *out, unsigned max_depth);
/* The same for a PciDeviceInfo body and json_pci_info_decode; out
 * may hold part of a result after -1: finish it with json_pci_info_fini. */
int json_pci_info_read(const char *buf, size_t len, json_pci_info *out);

/* Shared by both decoders.  A plain JSON integer ("-12", "0"), no
 * fraction or exponent, into magnitude and sign; false when s is not one
 * or does not fit 64 bits. */
bool json_int_parse(const char *s, size_t len, bool allow_neg, uint64_t *mag, bool *neg);
/* Grows *arr (elements of size sz) to hold one more than n: first to
 * first elements.  -ENOMEM on failure, *arr untouched. */
int json_grow(void **arr, size_t *cap, size_t n, size_t sz, size_t first);

#endif
