/* json/ch.h: yajl encode/decode of the Cloud Hypervisor bodies cocoon uses
 * (FsConfig, DeviceConfig, remove-device, PciDeviceInfo, VmInfo) and the
 * rendering of CH error bodies.  Bytes in, structs out: no I/O. */
#ifndef COCOON_JSON_CH_H
#define COCOON_JSON_CH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Error contract for every function here: 0 on success, else -EBADMSG
 * (malformed JSON, wrong type: err names the field, e.g.
 * "vm.info: config.fs[0].tag: expected string"), -EINVAL (bad input to an
 * encoder, e.g. invalid UTF-8), or -ENOMEM.  err/errlen may be NULL/0. */

typedef struct json_fs {
    char *id;                 /* NULL when absent or JSON null (older CH) */
    char *tag;
    char *socket;
    int64_t num_queues;       /* 0 when absent */
    int64_t queue_size;
} json_fs;

typedef struct json_device {
    char *id;                 /* NULL when absent or null */
    char *path;               /* NULL when absent or null: a VFIO device
                               * given to CH by fd has no path */
} json_device;

typedef struct json_mem_zone {
    bool shared;
    bool hugepages;
} json_mem_zone;

/* The part of CH's VmInfo that cocoon needs; every pointer owned,
 * free with json_vm_info_fini.  The strings all live in one block. */
typedef struct json_vm_info {
    char *strings;            /* the block holding every string below */
    char *state;              /* "Created", "Running", "Paused", ...; never NULL after decode */
    uint64_t mem_size;
    bool mem_shared;
    bool mem_hugepages;
    json_mem_zone *zones;
    size_t n_zones;
    json_fs *fs;              /* absent array: NULL, 0 */
    size_t n_fs;
    json_device *devices;
    size_t n_devices;
    char **tree_ids;          /* keys of device_tree; absent: NULL, 0 */
    size_t n_tree_ids;
} json_vm_info;

typedef struct json_pci_info {
    char *id;                 /* owned */
    char *bdf;                /* owned; NULL when absent */
} json_pci_info;

/* Encoders: *out is owned (free with free()), NUL-terminated, *out_len
 * bytes.  Strings go through yajl with UTF-8 validation. */

/* {"id":..,"tag":..,"socket":..,"num_queues":N,"queue_size":Q}; id omitted when NULL. */
int json_fs_config_encode(const json_fs *fs, char **out, size_t *out_len,
                          char *err, size_t errlen);
/* {"id":..,"path":..}; id omitted when NULL or "". */
int json_device_config_encode(const char *id, const char *path, char **out,
                              size_t *out_len, char *err, size_t errlen);
/* {"id":..} */
int json_remove_device_encode(const char *id, char **out, size_t *out_len,
                              char *err, size_t errlen);

/* {"<key>":"file://<dir>"}: vm.snapshot's destination_url, vm.restore's
 * source_url. */
int json_file_url_encode(const char *key, const char *dir, char **out, size_t *out_len,
                         char *err, size_t errlen);

/* Decoders: buf need not be NUL-terminated. */
int json_vm_info_decode(const char *buf, size_t len, json_vm_info *out,
                        char *err, size_t errlen);
/* json_vm_info_decode first tries the reader of json/vminfo.h and falls
 * back to yajl for a body that reader does not handle;
 * json_vm_info_decode_yajl is the decode with yajl alone, the reference
 * the tests and the fuzz target hold the other to (same result, same
 * error).  json_pci_info_decode takes the same two steps. */
int json_vm_info_decode_yajl(const char *buf, size_t len, json_vm_info *out,
                             char *err, size_t errlen);
void json_vm_info_fini(json_vm_info *vi);

int json_pci_info_decode(const char *buf, size_t len, json_pci_info *out,
                         char *err, size_t errlen);
int json_pci_info_decode_yajl(const char *buf, size_t len, json_pci_info *out,
                              char *err, size_t errlen);
void json_pci_info_fini(json_pci_info *pi);

/* Renders a CH error body into out (always NUL-terminated): a JSON array of
 * strings (v47 and later) becomes the strings joined by ": "; micro_http's
 * own { "error": "<text>" } (parse errors, the 503 of the connection cap)
 * becomes <text> with newlines as spaces; anything else (plain text up to
 * v46) is the raw text.  Whitespace around is trimmed, the result cut at
 * 1024 bytes.  An empty body renders as "". */
void json_error_render(const char *body, size_t len, char *out, size_t outlen);

#endif
