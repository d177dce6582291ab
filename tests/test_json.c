/* tests/test_json.c: json/ch.c encoders, the vm.info and PciDeviceInfo
 * decoders (every field, nulls, absent sections, wrong types, malformed
 * input, limits, allocation failures) and CH error-body rendering for the
 * three CH generations. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "http/base.h"
#include "json/ch.h"
#include "json/vminfo.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* json_fs holds owned, mutable strings; tests point them at literals. */
#define S(x) ((char *)(x))

/* ---------------------------------------------------- allocation faults */

/* Linked with -Wl,--wrap=malloc,--wrap=reallocarray: calls from the library
 * objects and this file come here, so a test can fail the Nth one. */
void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
void *__real_reallocarray(void *p, size_t n, size_t sz);
void *__wrap_reallocarray(void *p, size_t n, size_t sz);

static long fail_countdown = -1;   /* -1: never fail */

static bool should_fail(void)
{
    if (fail_countdown < 0)
        return false;
    return fail_countdown-- == 0;
}

void *__wrap_malloc(size_t n)
{
    return should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_reallocarray(void *p, size_t n, size_t sz)
{
    return should_fail() ? NULL : __real_reallocarray(p, n, sz);
}

/* A realistic vm.info from a booted CH VM: two vCPUs, 1 GiB shared memory
 * in two zones, a kernel payload, a disk, a tap net, rng, two fs shares
 * (one socket path with a quote and a backslash), two VFIO devices, and the
 * device tree with _virtio-pci- nodes and their resources. */
static const char *const full_vm_info_lines[] = {
    "{\n",
    " \"config\": {\n",
    "  \"cpus\": {\n",
    "   \"boot_vcpus\": 2,\n",
    "   \"max_vcpus\": 2,\n",
    "   \"topology\": null,\n",
    "   \"kvm_hyperv\": false,\n",
    "   \"max_phys_bits\": 46,\n",
    "   \"affinity\": null,\n",
    "   \"features\": {\n",
    "    \"amx\": false\n",
    "   }\n",
    "  },\n",
    "  \"memory\": {\n",
    "   \"size\": 1073741824,\n",
    "   \"mergeable\": false,\n",
    "   \"hotplug_method\": \"Acpi\",\n",
    "   \"hotplug_size\": null,\n",
    "   \"hotplugged_size\": null,\n",
    "   \"shared\": true,\n",
    "   \"hugepages\": false,\n",
    "   \"hugepage_size\": null,\n",
    "   \"prefault\": false,\n",
    "   \"zones\": [\n",
    "    {\n",
    "     \"id\": \"mem0\",\n",
    "     \"size\": 536870912,\n",
    "     \"file\": null,\n",
    "     \"shared\": false,\n",
    "     \"hugepages\": true,\n",
    "     \"hugepage_size\": null,\n",
    "     \"host_numa_node\": null,\n",
    "     \"hotplug_size\": null,\n",
    "     \"hotplugged_size\": null,\n",
    "     \"prefault\": false\n",
    "    },\n",
    "    {\n",
    "     \"id\": \"mem1\",\n",
    "     \"size\": 536870912,\n",
    "     \"file\": null,\n",
    "     \"shared\": true,\n",
    "     \"hugepages\": false,\n",
    "     \"hugepage_size\": null,\n",
    "     \"host_numa_node\": 0,\n",
    "     \"hotplug_size\": null,\n",
    "     \"hotplugged_size\": null,\n",
    "     \"prefault\": false\n",
    "    }\n",
    "   ],\n",
    "   \"thp\": true\n",
    "  },\n",
    "  \"payload\": {\n",
    "   \"firmware\": null,\n",
    "   \"kernel\": \"/var/lib/cocoon/vmlinux\",\n",
    "   \"cmdline\": \"console=ttyS0 root=/dev/vda rw\",\n",
    "   \"initramfs\": null,\n",
    "   \"igvm\": null,\n",
    "   \"host_data\": null\n",
    "  },\n",
    "  \"rate_limit_groups\": null,\n",
    "  \"disks\": [\n",
    "   {\n",
    "    \"path\": \"/var/lib/cocoon/cloudhypervisor/disk.img\",\n",
    "    \"readonly\": false,\n",
    "    \"direct\": false,\n",
    "    \"iommu\": false,\n",
    "    \"num_queues\": 1,\n",
    "    \"queue_size\": 128,\n",
    "    \"vhost_user\": false,\n",
    "    \"vhost_socket\": null,\n",
    "    \"rate_limit_group\": null,\n",
    "    \"rate_limiter_config\": null,\n",
    "    \"id\": \"_disk0\",\n",
    "    \"disable_io_uring\": false,\n",
    "    \"disable_aio\": false,\n",
    "    \"pci_segment\": 0,\n",
    "    \"serial\": null,\n",
    "    \"queue_affinity\": null\n",
    "   }\n",
    "  ],\n",
    "  \"net\": [\n",
    "   {\n",
    "    \"tap\": \"tap0\",\n",
    "    \"ip\": \"192.168.249.1\",\n",
    "    \"mask\": \"255.255.255.0\",\n",
    "    \"mac\": \"12:34:56:78:90:ab\",\n",
    "    \"host_mac\": \"aa:bb:cc:dd:ee:ff\",\n",
    "    \"mtu\": 1500,\n",
    "    \"iommu\": false,\n",
    "    \"num_queues\": 2,\n",
    "    \"queue_size\": 256,\n",
    "    \"vhost_user\": false,\n",
    "    \"vhost_socket\": null,\n",
    "    \"vhost_mode\": \"Client\",\n",
    "    \"id\": \"_net1\",\n",
    "    \"fds\": null,\n",
    "    \"rate_limiter_config\": null,\n",
    "    \"pci_segment\": 0,\n",
    "    \"offload_tso\": true,\n",
    "    \"offload_ufo\": true,\n",
    "    \"offload_csum\": true\n",
    "   }\n",
    "  ],\n",
    "  \"rng\": {\n",
    "   \"src\": \"/dev/urandom\",\n",
    "   \"iommu\": false\n",
    "  },\n",
    "  \"balloon\": null,\n",
    "  \"fs\": [\n",
    "   {\n",
    "    \"tag\": \"data\",\n",
    "    \"socket\": \"/run/vfs/web-1.sock\",\n",
    "    \"num_queues\": 1,\n",
    "    \"queue_size\": 1024,\n",
    "    \"id\": \"cocoon-fs-data\",\n",
    "    \"pci_segment\": 0\n",
    "   },\n",
    "   {\n",
    "    \"tag\": \"logs\",\n",
    "    \"socket\": \"/run/vfs/web \\\"1\\\"\\\\logs.sock\",\n",
    "    \"num_queues\": 2,\n",
    "    \"queue_size\": 512,\n",
    "    \"id\": \"_fs2\",\n",
    "    \"pci_segment\": 0\n",
    "   }\n",
    "  ],\n",
    "  \"pmem\": null,\n",
    "  \"serial\": {\n",
    "   \"file\": null,\n",
    "   \"mode\": \"Null\",\n",
    "   \"iommu\": false,\n",
    "   \"socket\": null\n",
    "  },\n",
    "  \"console\": {\n",
    "   \"file\": null,\n",
    "   \"mode\": \"Tty\",\n",
    "   \"iommu\": false,\n",
    "   \"socket\": null\n",
    "  },\n",
    "  \"debug_console\": {\n",
    "   \"file\": null,\n",
    "   \"mode\": \"Off\",\n",
    "   \"iobase\": 233\n",
    "  },\n",
    "  \"devices\": [\n",
    "   {\n",
    "    \"path\": \"/sys/bus/pci/devices/0000:01:00.0\",\n",
    "    \"iommu\": false,\n",
    "    \"id\": \"gpu0\",\n",
    "    \"pci_segment\": 0,\n",
    "    \"x_nv_gpudirect_clique\": null\n",
    "   },\n",
    "   {\n",
    "    \"path\": \"/sys/bus/pci/devices/0000:02:00.0\",\n",
    "    \"iommu\": false,\n",
    "    \"id\": \"_vfio3\",\n",
    "    \"pci_segment\": 0,\n",
    "    \"x_nv_gpudirect_clique\": null\n",
    "   }\n",
    "  ],\n",
    "  \"user_devices\": null,\n",
    "  \"vdpa\": null,\n",
    "  \"vsock\": null,\n",
    "  \"pvpanic\": false,\n",
    "  \"iommu\": false,\n",
    "  \"sgx_epc\": null,\n",
    "  \"numa\": null,\n",
    "  \"watchdog\": false,\n",
    "  \"platform\": {\n",
    "   \"num_pci_segments\": 1,\n",
    "   \"iommu_segments\": null,\n",
    "   \"iommu_address_width_bits\": 48,\n",
    "   \"serial_number\": null,\n",
    "   \"uuid\": null,\n",
    "   \"oem_strings\": null,\n",
    "   \"tdx\": false\n",
    "  },\n",
    "  \"tpm\": null,\n",
    "  \"preserved_fds\": null,\n",
    "  \"landlock_enable\": false,\n",
    "  \"landlock_rules\": null\n",
    " },\n",
    " \"state\": \"Running\",\n",
    " \"memory_actual_size\": 1073741824,\n",
    " \"device_tree\": {\n",
    "  \"_disk0\": {\n",
    "   \"id\": \"_disk0\",\n",
    "   \"resources\": [],\n",
    "   \"parent\": \"_virtio-pci-_disk0\",\n",
    "   \"children\": [],\n",
    "   \"pci_bdf\": null\n",
    "  },\n",
    "  \"_virtio-pci-_disk0\": {\n",
    "   \"id\": \"_virtio-pci-_disk0\",\n",
    "   \"resources\": [\n",
    "    {\n",
    "     \"PciBar\": {\n",
    "      \"index\": 0,\n",
    "      \"base\": 70368475742208,\n",
    "      \"size\": 524288,\n",
    "      \"type_\": \"Mmio64\",\n",
    "      \"prefetchable\": false\n",
    "     }\n",
    "    }\n",
    "   ],\n",
    "   \"parent\": null,\n",
    "   \"children\": [\n",
    "    \"_disk0\"\n",
    "   ],\n",
    "   \"pci_bdf\": \"0000:00:01.0\"\n",
    "  },\n",
    "  \"_net1\": {\n",
    "   \"id\": \"_net1\",\n",
    "   \"resources\": [],\n",
    "   \"parent\": \"_virtio-pci-_net1\",\n",
    "   \"children\": [],\n",
    "   \"pci_bdf\": null\n",
    "  },\n",
    "  \"_virtio-pci-_net1\": {\n",
    "   \"id\": \"_virtio-pci-_net1\",\n",
    "   \"resources\": [\n",
    "    {\n",
    "     \"PciBar\": {\n",
    "      \"index\": 0,\n",
    "      \"base\": 70368475217920,\n",
    "      \"size\": 524288,\n",
    "      \"type_\": \"Mmio64\",\n",
    "      \"prefetchable\": false\n",
    "     }\n",
    "    }\n",
    "   ],\n",
    "   \"parent\": null,\n",
    "   \"children\": [\n",
    "    \"_net1\"\n",
    "   ],\n",
    "   \"pci_bdf\": \"0000:00:02.0\"\n",
    "  },\n",
    "  \"__rng\": {\n",
    "   \"id\": \"__rng\",\n",
    "   \"resources\": [],\n",
    "   \"parent\": \"_virtio-pci-__rng\",\n",
    "   \"children\": [],\n",
    "   \"pci_bdf\": null\n",
    "  },\n",
    "  \"_virtio-pci-__rng\": {\n",
    "   \"id\": \"_virtio-pci-__rng\",\n",
    "   \"resources\": [\n",
    "    {\n",
    "     \"PciBar\": {\n",
    "      \"index\": 0,\n",
    "      \"base\": 70368474693632,\n",
    "      \"size\": 524288,\n",
    "      \"type_\": \"Mmio64\",\n",
    "      \"prefetchable\": false\n",
    "     }\n",
    "    }\n",
    "   ],\n",
    "   \"parent\": null,\n",
    "   \"children\": [\n",
    "    \"__rng\"\n",
    "   ],\n",
    "   \"pci_bdf\": \"0000:00:03.0\"\n",
    "  },\n",
    "  \"cocoon-fs-data\": {\n",
    "   \"id\": \"cocoon-fs-data\",\n",
    "   \"resources\": [],\n",
    "   \"parent\": \"_virtio-pci-cocoon-fs-data\",\n",
    "   \"children\": [],\n",
    "   \"pci_bdf\": null\n",
    "  },\n",
    "  \"_virtio-pci-cocoon-fs-data\": {\n",
    "   \"id\": \"_virtio-pci-cocoon-fs-data\",\n",
    "   \"resources\": [\n",
    "    {\n",
    "     \"PciBar\": {\n",
    "      \"index\": 0,\n",
    "      \"base\": 70368474169344,\n",
    "      \"size\": 524288,\n",
    "      \"type_\": \"Mmio64\",\n",
    "      \"prefetchable\": false\n",
    "     }\n",
    "    }\n",
    "   ],\n",
    "   \"parent\": null,\n",
    "   \"children\": [\n",
    "    \"cocoon-fs-data\"\n",
    "   ],\n",
    "   \"pci_bdf\": \"0000:00:04.0\"\n",
    "  },\n",
    "  \"_fs2\": {\n",
    "   \"id\": \"_fs2\",\n",
    "   \"resources\": [],\n",
    "   \"parent\": \"_virtio-pci-_fs2\",\n",
    "   \"children\": [],\n",
    "   \"pci_bdf\": null\n",
    "  },\n",
    "  \"_virtio-pci-_fs2\": {\n",
    "   \"id\": \"_virtio-pci-_fs2\",\n",
    "   \"resources\": [\n",
    "    {\n",
    "     \"PciBar\": {\n",
    "      \"index\": 0,\n",
    "      \"base\": 70368473645056,\n",
    "      \"size\": 524288,\n",
    "      \"type_\": \"Mmio64\",\n",
    "      \"prefetchable\": false\n",
    "     }\n",
    "    }\n",
    "   ],\n",
    "   \"parent\": null,\n",
    "   \"children\": [\n",
    "    \"_fs2\"\n",
    "   ],\n",
    "   \"pci_bdf\": \"0000:00:05.0\"\n",
    "  },\n",
    "  \"gpu0\": {\n",
    "   \"id\": \"gpu0\",\n",
    "   \"resources\": [\n",
    "    {\n",
    "     \"PciBar\": {\n",
    "      \"index\": 0,\n",
    "      \"base\": 3221225472,\n",
    "      \"size\": 16777216,\n",
    "      \"type_\": \"Mmio32\",\n",
    "      \"prefetchable\": false\n",
    "     }\n",
    "    },\n",
    "    {\n",
    "     \"PciBar\": {\n",
    "      \"index\": 1,\n",
    "      \"base\": 68719476736,\n",
    "      \"size\": 268435456,\n",
    "      \"type_\": \"Mmio64\",\n",
    "      \"prefetchable\": true\n",
    "     }\n",
    "    },\n",
    "    {\n",
    "     \"LegacyIrq\": 5\n",
    "    }\n",
    "   ],\n",
    "   \"parent\": null,\n",
    "   \"children\": [],\n",
    "   \"pci_bdf\": \"0000:00:06.0\"\n",
    "  },\n",
    "  \"_vfio3\": {\n",
    "   \"id\": \"_vfio3\",\n",
    "   \"resources\": [\n",
    "    {\n",
    "     \"PciBar\": {\n",
    "      \"index\": 0,\n",
    "      \"base\": 3238002688,\n",
    "      \"size\": 65536,\n",
    "      \"type_\": \"Mmio32\",\n",
    "      \"prefetchable\": false\n",
    "     }\n",
    "    }\n",
    "   ],\n",
    "   \"parent\": null,\n",
    "   \"children\": [],\n",
    "   \"pci_bdf\": \"0000:00:07.0\"\n",
    "  }\n",
    " }\n",
    "}\n",
};

static char full_vm_info[8192];
static size_t full_vm_info_len;

/* The fixture is kept as lines because C11 compilers need only support
 * string literals of 4095 bytes. */
static int fixture_setup(void **state)
{
    (void)state;
    full_vm_info_len = 0;
    for (size_t i = 0; i < sizeof(full_vm_info_lines) / sizeof(full_vm_info_lines[0]); i++) {
        size_t n = strlen(full_vm_info_lines[i]);
        if (full_vm_info_len + n >= sizeof(full_vm_info))
            return -1;
        memcpy(full_vm_info + full_vm_info_len, full_vm_info_lines[i], n);
        full_vm_info_len += n;
    }
    full_vm_info[full_vm_info_len] = '\0';
    return 0;
}

static bool str_same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* The fast decode and yajl must agree exactly. */
static void assert_vi_same(const json_vm_info *a, const json_vm_info *b)
{
    assert_true(str_same(a->state, b->state));
    assert_true(a->mem_size == b->mem_size && a->mem_shared == b->mem_shared &&
                a->mem_hugepages == b->mem_hugepages);
    assert_int_equal(a->n_zones, b->n_zones);
    for (size_t i = 0; i < a->n_zones; i++)
        assert_true(a->zones[i].shared == b->zones[i].shared &&
                    a->zones[i].hugepages == b->zones[i].hugepages);
    assert_int_equal(a->n_fs, b->n_fs);
    for (size_t i = 0; i < a->n_fs; i++)
        assert_true(str_same(a->fs[i].id, b->fs[i].id) && str_same(a->fs[i].tag, b->fs[i].tag) &&
                    str_same(a->fs[i].socket, b->fs[i].socket) &&
                    a->fs[i].num_queues == b->fs[i].num_queues &&
                    a->fs[i].queue_size == b->fs[i].queue_size);
    assert_int_equal(a->n_devices, b->n_devices);
    for (size_t i = 0; i < a->n_devices; i++)
        assert_true(str_same(a->devices[i].id, b->devices[i].id) &&
                    str_same(a->devices[i].path, b->devices[i].path));
    assert_int_equal(a->n_tree_ids, b->n_tree_ids);
    for (size_t i = 0; i < a->n_tree_ids; i++)
        assert_true(str_same(a->tree_ids[i], b->tree_ids[i]));
}

/* Decodes from an exact-size heap copy so that ASan and valgrind catch any
 * read past the end: the decoder must not need a NUL terminator.  Every
 * decode is also run with yajl over the whole body, which must give the
 * same result or the same error. */
static int decode_exact(const char *s, size_t len, json_vm_info *vi, char *err, size_t errlen)
{
    char *copy = malloc(len ? len : 1), ref_err[BASE_ERRSTR_MAX] = "";
    json_vm_info ref;
    assert_non_null(copy);
    memcpy(copy, s, len);
    int rc = json_vm_info_decode(copy, len, vi, err, errlen);
    int ref_rc = json_vm_info_decode_yajl(copy, len, &ref, ref_err, sizeof(ref_err));
    free(copy);
    if (rc != ref_rc || (err && strcmp(err, ref_err) != 0))
        print_error("fast: %d '%s', yajl: %d '%s'\n", rc, err ? err : "", ref_rc, ref_err);
    assert_int_equal(rc, ref_rc);
    if (err)
        assert_string_equal(err, ref_err);
    assert_vi_same(vi, &ref);
    json_vm_info_fini(&ref);
    return rc;
}

static int decode_str(const char *s, json_vm_info *vi, char *err, size_t errlen)
{
    return decode_exact(s, strlen(s), vi, err, errlen);
}

static void assert_vi_empty(const json_vm_info *vi)
{
    assert_null(vi->state);
    assert_null(vi->zones);
    assert_int_equal(vi->n_zones, 0);
    assert_null(vi->fs);
    assert_int_equal(vi->n_fs, 0);
    assert_null(vi->devices);
    assert_int_equal(vi->n_devices, 0);
    assert_null(vi->tree_ids);
    assert_int_equal(vi->n_tree_ids, 0);
}

/* ------------------------------------------------------------- encoders */

static void test_fs_config_encode(void **state)
{
    char err[BASE_ERRSTR_MAX] = "";
    char *out = NULL;
    size_t len = 0;
    (void)state;

    json_fs fs = { S("cocoon-fs-data"), S("data"), S("/run/vfs/web-1.sock"), 1, 1024 };
    assert_int_equal(json_fs_config_encode(&fs, &out, &len, err, sizeof(err)), 0);
    assert_string_equal(out, "{\"id\":\"cocoon-fs-data\",\"tag\":\"data\","
                             "\"socket\":\"/run/vfs/web-1.sock\",\"num_queues\":1,"
                             "\"queue_size\":1024}");
    assert_int_equal(len, strlen(out));
    free(out);

    fs.id = NULL;
    fs.num_queues = 4;
    fs.queue_size = 256;
    assert_int_equal(json_fs_config_encode(&fs, &out, &len, err, sizeof(err)), 0);
    assert_string_equal(out, "{\"tag\":\"data\",\"socket\":\"/run/vfs/web-1.sock\","
                             "\"num_queues\":4,\"queue_size\":256}");
    assert_int_equal(len, strlen(out));
    free(out);
}

static void test_device_config_encode(void **state)
{
    char err[BASE_ERRSTR_MAX] = "";
    char *out = NULL;
    size_t len = 0;
    (void)state;

    assert_int_equal(json_device_config_encode("gpu0", "/sys/bus/pci/devices/0000:01:00.0",
                                               &out, &len, err, sizeof(err)), 0);
    assert_string_equal(out, "{\"id\":\"gpu0\",\"path\":\"/sys/bus/pci/devices/0000:01:00.0\"}");
    assert_int_equal(len, strlen(out));
    free(out);

    assert_int_equal(json_device_config_encode(NULL, "/sys/bus/pci/devices/0000:01:00.0",
                                               &out, &len, err, sizeof(err)), 0);
    assert_string_equal(out, "{\"path\":\"/sys/bus/pci/devices/0000:01:00.0\"}");
    free(out);

    assert_int_equal(json_device_config_encode("", "/sys/bus/pci/devices/0000:01:00.0",
                                               &out, &len, err, sizeof(err)), 0);
    assert_string_equal(out, "{\"path\":\"/sys/bus/pci/devices/0000:01:00.0\"}");
    free(out);

    out = NULL;
    assert_int_equal(json_device_config_encode("gpu0", NULL, &out, &len, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "path: missing");
    assert_null(out);
}

static void test_remove_device_encode(void **state)
{
    char err[BASE_ERRSTR_MAX] = "";
    char *out = NULL;
    size_t len = 0;
    (void)state;

    assert_int_equal(json_remove_device_encode("cocoon-fs-data", &out, &len, err, sizeof(err)), 0);
    assert_string_equal(out, "{\"id\":\"cocoon-fs-data\"}");
    assert_int_equal(len, strlen(out));
    free(out);

    out = NULL;
    assert_int_equal(json_remove_device_encode(NULL, &out, &len, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "id: missing");
    assert_null(out);
}

/* Every awkward byte in a socket path survives encoding: the output parses
 * back (with an independent parser) to the same string. */
/* FsConfig as yajl_gen writes it: the template encoder must match it byte
 * for byte. */
static char *fs_config_yajl(const json_fs *fs)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *buf;
    size_t len;
    char *copy;

    assert_non_null(g);
    yajl_gen_map_open(g);
    if (fs->id) {
        yajl_gen_string(g, (const unsigned char *)"id", 2);
        yajl_gen_string(g, (const unsigned char *)fs->id, strlen(fs->id));
    }
    yajl_gen_string(g, (const unsigned char *)"tag", 3);
    yajl_gen_string(g, (const unsigned char *)fs->tag, strlen(fs->tag));
    yajl_gen_string(g, (const unsigned char *)"socket", 6);
    yajl_gen_string(g, (const unsigned char *)fs->socket, strlen(fs->socket));
    yajl_gen_string(g, (const unsigned char *)"num_queues", 10);
    yajl_gen_integer(g, fs->num_queues);
    yajl_gen_string(g, (const unsigned char *)"queue_size", 10);
    yajl_gen_integer(g, fs->queue_size);
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &buf, &len);
    copy = strndup((const char *)buf, len);
    yajl_gen_free(g);
    return copy;
}

static void test_encode_escaping_round_trip(void **state)
{
    static const char *const sockets[] = {
        "/run/vfs/a\"b.sock",
        "/run/vfs/back\\slash\\\\.sock",
        "/run/vfs/new\nline\r\t.sock",
        "/run/vfs/\"\\\n\x01\x1f\x7f/x.sock",
        "/run/vfs/\b\f\v\x02\x0e\x10\x19 ~/x.sock",
        "/run/vfs/caf\xc3\xa9/\xe2\x86\x92/\xf0\x9f\x90\x9b.sock",
        "/run/vfs/</script>/x.sock",
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(sockets); i++) {
        char err[BASE_ERRSTR_MAX] = "";
        char ebuf[256];
        char *out = NULL;
        size_t len = 0;
        json_fs fs = { S("cocoon-fs-x\"y"), S("x"), S(sockets[i]), 1, 1024 };

        assert_int_equal(json_fs_config_encode(&fs, &out, &len, err, sizeof(err)), 0);
        assert_null(memchr(out, '\n', len));
        {
            json_fs bare = fs;
            char *want = fs_config_yajl(&fs), *out2 = NULL;

            assert_string_equal(out, want);
            assert_int_equal(len, strlen(want));
            free(want);
            bare.id = NULL;
            bare.num_queues = INT64_MIN;
            bare.queue_size = INT64_MAX;
            want = fs_config_yajl(&bare);
            assert_int_equal(json_fs_config_encode(&bare, &out2, &len, err, sizeof(err)), 0);
            assert_string_equal(out2, want);
            free(want);
            free(out2);
        }
        yajl_val root = yajl_tree_parse(out, ebuf, sizeof(ebuf));
        if (!root)
            print_error("socket %zu: %s: %s\n", i, out, ebuf);
        assert_non_null(root);
        const char *sp[] = { "socket", NULL };
        const char *ip[] = { "id", NULL };
        yajl_val s = yajl_tree_get(root, sp, yajl_t_string);
        yajl_val id = yajl_tree_get(root, ip, yajl_t_string);
        assert_non_null(s);
        assert_non_null(id);
        assert_string_equal(YAJL_GET_STRING(s), sockets[i]);
        assert_string_equal(YAJL_GET_STRING(id), "cocoon-fs-x\"y");
        yajl_tree_free(root);

        /* And the same bytes come back through our own decoder. */
        json_pci_info pi;
        char *dev = NULL;
        assert_int_equal(json_device_config_encode(sockets[i], "/p", &dev, &len, err,
                                                   sizeof(err)), 0);
        assert_int_equal(json_pci_info_decode(dev, len, &pi, err, sizeof(err)), 0);
        assert_string_equal(pi.id, sockets[i]);
        json_pci_info_fini(&pi);
        free(dev);
        free(out);
    }
}

static void test_encode_invalid_utf8(void **state)
{
    char err[BASE_ERRSTR_MAX];
    char *out = NULL;
    size_t len = 0;
    (void)state;

    json_fs fs = { NULL, S("data"), S("/run/vfs/\xff.sock"), 1, 1024 };
    assert_int_equal(json_fs_config_encode(&fs, &out, &len, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "socket: invalid UTF-8");
    assert_null(out);

    fs.socket = S("/run/vfs/\xc3.sock");       /* truncated sequence */
    assert_int_equal(json_fs_config_encode(&fs, &out, &len, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "socket: invalid UTF-8");

    fs.socket = S("/ok");
    fs.tag = S("d\xe2\x82");
    assert_int_equal(json_fs_config_encode(&fs, &out, &len, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "tag: invalid UTF-8");

    fs.tag = S("data");
    fs.id = S("\x80");
    assert_int_equal(json_fs_config_encode(&fs, &out, &len, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "id: invalid UTF-8");

    assert_int_equal(json_device_config_encode("\xfe", "/p", &out, &len, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "id: invalid UTF-8");
    assert_int_equal(json_device_config_encode(NULL, "/sys/\xc0\xaf", &out, &len, err,
                                               sizeof(err)), -EINVAL);
    assert_string_equal(err, "path: invalid UTF-8");
    assert_int_equal(json_remove_device_encode("a\xff", &out, &len, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "id: invalid UTF-8");
    assert_null(out);

    /* Forms yajl's own check lets through: overlong, surrogate, too high. */
    static const char *const strict[] = {
        "/\xc1\xbf", "/\xe0\x80\xaf", "/\xf0\x80\x80\xaf", "/\xed\xa0\x80",
        "/\xed\xbf\xbf", "/\xf4\x90\x80\x80", "/\xf8\x88\x80\x80\x80", "/\xe2\x86",
    };
    for (size_t i = 0; i < ARRAY_LEN(strict); i++) {
        assert_int_equal(json_device_config_encode(NULL, strict[i], &out, &len, err,
                                                   sizeof(err)), -EINVAL);
        assert_string_equal(err, "path: invalid UTF-8");
        assert_null(out);
    }
    /* The edges of the valid ranges pass. */
    assert_int_equal(json_device_config_encode(NULL, "/\xc2\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf"
                                               "\xed\x9f\xbf\xee\x80\x80", &out, &len, err,
                                               sizeof(err)), 0);
    free(out);
    out = NULL;

    /* NULL err buffer is allowed. */
    assert_int_equal(json_remove_device_encode("a\xff", &out, &len, NULL, 0), -EINVAL);
}

static void test_encode_missing_fields(void **state)
{
    char err[BASE_ERRSTR_MAX];
    char *out = NULL;
    size_t len = 0;
    (void)state;

    json_fs fs = { NULL, NULL, S("/s"), 1, 1024 };
    assert_int_equal(json_fs_config_encode(&fs, &out, &len, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "tag: missing");
    fs.tag = S("t");
    fs.socket = NULL;
    assert_int_equal(json_fs_config_encode(&fs, &out, &len, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "socket: missing");
    assert_int_equal(json_fs_config_encode(NULL, &out, &len, err, sizeof(err)), -EINVAL);
    assert_null(out);
}

/* Fails each allocation of the encoders in turn: every failure is -ENOMEM
 * with nothing returned and nothing leaked. */
static void test_encode_enomem(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        char err[BASE_ERRSTR_MAX];
        char *out = NULL;
        size_t len = 0;
        json_fs fs = { S("cocoon-fs-data"), S("data"), S("/s"), 1, 1024 };
        fail_countdown = n;
        int rc = json_fs_config_encode(&fs, &out, &len, err, sizeof(err));
        fail_countdown = -1;
        if (rc == 0) {
            assert_true(n >= 1);
            free(out);
            break;
        }
        assert_int_equal(rc, -ENOMEM);
        assert_null(out);
        assert_true(n < 100);
    }
}

/* -------------------------------------------------------------- vm.info */

static void check_full(const json_vm_info *vi)
{
    assert_string_equal(vi->state, "Running");
    assert_true(vi->mem_size == 1073741824ULL);
    assert_true(vi->mem_shared);
    assert_false(vi->mem_hugepages);
    assert_int_equal(vi->n_zones, 2);
    assert_false(vi->zones[0].shared);
    assert_true(vi->zones[0].hugepages);
    assert_true(vi->zones[1].shared);
    assert_false(vi->zones[1].hugepages);

    assert_int_equal(vi->n_fs, 2);
    assert_string_equal(vi->fs[0].id, "cocoon-fs-data");
    assert_string_equal(vi->fs[0].tag, "data");
    assert_string_equal(vi->fs[0].socket, "/run/vfs/web-1.sock");
    assert_int_equal(vi->fs[0].num_queues, 1);
    assert_int_equal(vi->fs[0].queue_size, 1024);
    assert_string_equal(vi->fs[1].id, "_fs2");
    assert_string_equal(vi->fs[1].tag, "logs");
    assert_string_equal(vi->fs[1].socket, "/run/vfs/web \"1\"\\logs.sock");
    assert_int_equal(vi->fs[1].num_queues, 2);
    assert_int_equal(vi->fs[1].queue_size, 512);

    assert_int_equal(vi->n_devices, 2);
    assert_string_equal(vi->devices[0].id, "gpu0");
    assert_string_equal(vi->devices[0].path, "/sys/bus/pci/devices/0000:01:00.0");
    assert_string_equal(vi->devices[1].id, "_vfio3");
    assert_string_equal(vi->devices[1].path, "/sys/bus/pci/devices/0000:02:00.0");

    static const char *const tree[] = {
        "_disk0", "_virtio-pci-_disk0", "_net1", "_virtio-pci-_net1", "__rng",
        "_virtio-pci-__rng", "cocoon-fs-data", "_virtio-pci-cocoon-fs-data", "_fs2",
        "_virtio-pci-_fs2", "gpu0", "_vfio3",
    };
    assert_int_equal(vi->n_tree_ids, ARRAY_LEN(tree));
    for (size_t i = 0; i < ARRAY_LEN(tree); i++)
        assert_string_equal(vi->tree_ids[i], tree[i]);
}

static void test_vm_info_full_fixture(void **state)
{
    char err[BASE_ERRSTR_MAX] = "";
    json_vm_info vi;
    (void)state;

    int rc = decode_exact(full_vm_info, full_vm_info_len, &vi, err, sizeof(err));
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    check_full(&vi);
    json_vm_info_fini(&vi);
    assert_vi_empty(&vi);
    json_vm_info_fini(&vi);     /* twice is harmless */
    json_vm_info_fini(NULL);
}

/* Every proper prefix of the fixture is incomplete JSON: each must fail
 * cleanly with -EBADMSG and leave nothing allocated. */
static void test_vm_info_every_prefix(void **state)
{
    size_t full = full_vm_info_len;
    (void)state;

    /* The fixture ends in "}\n"; dropping only the newline still parses. */
    for (size_t len = 0; len < full - 1; len++) {
        char err[BASE_ERRSTR_MAX] = "";
        json_vm_info vi;
        int rc = decode_exact(full_vm_info, len, &vi, err, sizeof(err));
        if (rc != -EBADMSG)
            print_error("prefix %zu: rc %d %s\n", len, rc, err);
        assert_int_equal(rc, -EBADMSG);
        assert_vi_empty(&vi);
        assert_true(strlen(err) > 0);
    }
}

static char *nested(size_t depth);

/* The fast reader handles a whole CH body by itself and hands back (-1)
 * what it must not decide: a key with an escape where the key picks what
 * is read, a kept string with an escape, a repeated key it reads,
 * whitespace yajl allows beyond JSON's, nesting past the limit, and every
 * syntax or type error.  Each of those still decodes as yajl says. */
static void test_vm_info_fast(void **state)
{
    static const char *const fallback[] = {
        "{\"st\\u0061te\":\"Running\"}",
        "{\"state\":\"Running\",\"con\\u0066ig\":{\"fs\":[]}}",
        "{\"state\":\"Run\\u006eing\"}",
        "{\"state\":\"Running\",\"device_tree\":{\"a\\u0062\":{}}}",
        "{\"state\":\"Running\",\"state\":\"Paused\"}",
        "{\"state\":\"Running\",\"config\":{\"fs\":[],\"fs\":[]}}",
        "{\"state\":\"Running\",\v\"x\":1}",
        "{\"state\":\"Running\",\"x\":\"\xc3\"}",
        "{\"state\":\"Running\",\"x\":[01]}",
        "{\"state\":\"Running\",\"x\":\"a\nb\"}",
        "{\"state\":\"Running\",\"x\":tru}",
        "{\"state\":\"Running\"} x",
        "{\"state\":1}",
        "{\"config\":{}}",
        "{\"state\":\"Running\",\"x\":[1,2}",
        "{\"state\":\"Running\",\"x\":{\"a\":1,}}",
        "{\"state\":\"Running\",\"x\":[1 2]}",
        "{\"state\":\"Running\",\"x\":{\"a\" 1}}",
        "{\"state\":\"Running\",\"x\":1.}",
        "{\"state\":\"Running\",\"x\":-}",
        "{\"state\":\"Running\",\"x\":[\"\\x\"]}",
        "{\"state\":\"Running\",\"x\":[\"\\u00g0\"]}",
    };
    char err[BASE_ERRSTR_MAX] = "";
    json_vm_info vi;
    (void)state;

    /* The fixture without the escapes of its second fs socket. */
    char *plain = strdup(full_vm_info), *at, *stop;

    assert_non_null(plain);
    assert_non_null(at = strstr(plain, "/run/vfs/web \\\"1"));
    assert_non_null(stop = strstr(at, ".sock"));
    for (; at < stop; at++)
        if (*at == '\\' || *at == '"')
            *at = '_';
    memset(&vi, 0, sizeof(vi));
    assert_int_equal(json_vm_info_read(plain, strlen(plain), &vi, 64), 0);
    json_vm_info_fini(&vi);
    assert_int_equal(decode_str(plain, &vi, err, sizeof(err)), 0);
    assert_string_equal(vi.fs[1].socket, "/run/vfs/web __1____logs.sock");
    json_vm_info_fini(&vi);
    free(plain);
    memset(&vi, 0, sizeof(vi));
    assert_int_equal(json_vm_info_read(full_vm_info, full_vm_info_len, &vi, 64), -1);
    json_vm_info_fini(&vi);
    /* Escapes in what it skips, keys or values, it checks by itself. */
    {
        static const char skipped[] = "{\"x\":{\"a\\n\":\"a\\u00e9\\\"\"},\"state\":\"Running\"}";

        memset(&vi, 0, sizeof(vi));
        assert_int_equal(json_vm_info_read(skipped, strlen(skipped), &vi, 64), 0);
        json_vm_info_fini(&vi);
        decode_str(skipped, &vi, err, sizeof(err));
        json_vm_info_fini(&vi);
    }
    /* Whitespace anywhere JSON allows it, nesting, numbers of every shape
     * and non-ASCII text in skipped values: handled alone too. */
    {
        static const char spaced[] =
            " { \"x\" : [ 1 , -0.5e+3 , 2E-7 , [ ] , { } , [ [ { \"y\" : null } ] ] ,"
            " true , false , \"caf\xc3\xa9 \xe2\x98\x83 \xf0\x9d\x84\x9e\" ] ,\n"
            "\t\"state\" :\r\n\"Running\" , \"device_tree\" : { \"a\" : { } } } ";

        memset(&vi, 0, sizeof(vi));
        assert_int_equal(json_vm_info_read(spaced, strlen(spaced), &vi, 64), 0);
        assert_string_equal(vi.state, "Running");
        assert_int_equal(vi.n_tree_ids, 1);
        assert_string_equal(vi.tree_ids[0], "a");
        json_vm_info_fini(&vi);
        decode_str(spaced, &vi, err, sizeof(err));
        json_vm_info_fini(&vi);
    }
    /* A NUL byte is no JSON, at the end of the body or inside it. */
    {
        static const char nul_end[] = "{\"state\":\"Running\"}";
        static const char nul_in[] = "{\"state\":\"Running\",\"x\":\"a\0b\"}";

        memset(&vi, 0, sizeof(vi));
        assert_int_equal(json_vm_info_read(nul_end, sizeof(nul_end), &vi, 64), -1);
        json_vm_info_fini(&vi);
        memset(&vi, 0, sizeof(vi));
        assert_int_equal(json_vm_info_read(nul_in, sizeof(nul_in) - 1, &vi, 64), -1);
        json_vm_info_fini(&vi);
    }
    for (size_t i = 0; i < ARRAY_LEN(fallback); i++) {
        int rc;

        memset(&vi, 0, sizeof(vi));
        rc = json_vm_info_read(fallback[i], strlen(fallback[i]), &vi, 64);
        json_vm_info_fini(&vi);
        if (rc != -1)
            print_error("case %zu read\n", i);
        assert_int_equal(rc, -1);
        decode_str(fallback[i], &vi, err, sizeof(err));
        json_vm_info_fini(&vi);
    }
    char *deep = nested(64);
    memset(&vi, 0, sizeof(vi));
    assert_int_equal(json_vm_info_read(deep, strlen(deep), &vi, 64), -1);
    json_vm_info_fini(&vi);
    free(deep);
}

static void test_vm_info_minimal(void **state)
{
    char err[BASE_ERRSTR_MAX] = "";
    json_vm_info vi;
    (void)state;

    /* A created, not booted VM: no device_tree, no fs/devices arrays. */
    assert_int_equal(decode_str("{\"state\":\"Created\",\"config\":{\"memory\":{\"size\":536870912}}}",
                                &vi, err, sizeof(err)), 0);
    assert_string_equal(vi.state, "Created");
    assert_true(vi.mem_size == 536870912ULL);
    assert_false(vi.mem_shared);
    assert_false(vi.mem_hugepages);
    assert_null(vi.zones);
    assert_int_equal(vi.n_zones, 0);
    assert_null(vi.fs);
    assert_int_equal(vi.n_fs, 0);
    assert_null(vi.devices);
    assert_int_equal(vi.n_devices, 0);
    assert_null(vi.tree_ids);
    assert_int_equal(vi.n_tree_ids, 0);
    json_vm_info_fini(&vi);

    /* No config at all. */
    assert_int_equal(decode_str(" {\"state\":\"Shutdown\"} ", &vi, err, sizeof(err)), 0);
    assert_string_equal(vi.state, "Shutdown");
    assert_int_equal(vi.mem_size, 0);
    json_vm_info_fini(&vi);

    /* Empty arrays and objects. */
    assert_int_equal(decode_str("{\"state\":\"Running\",\"config\":{\"fs\":[],\"devices\":[],"
                                "\"memory\":{\"zones\":[]}},\"device_tree\":{}}",
                                &vi, err, sizeof(err)), 0);
    assert_int_equal(vi.n_fs, 0);
    assert_int_equal(vi.n_devices, 0);
    assert_int_equal(vi.n_zones, 0);
    assert_int_equal(vi.n_tree_ids, 0);
    json_vm_info_fini(&vi);
}

static void test_vm_info_nulls(void **state)
{
    char err[BASE_ERRSTR_MAX] = "";
    json_vm_info vi;
    (void)state;

    /* Older CH: "id": null in entries; optional sections as null. */
    assert_int_equal(decode_str("{\"state\":\"Running\",\"config\":{"
                                "\"fs\":[{\"tag\":\"a\",\"socket\":\"/a\",\"id\":null,"
                                "\"num_queues\":1,\"queue_size\":1024}],"
                                "\"devices\":[{\"path\":\"/sys/bus/pci/devices/0000:01:00.0\",\"id\":null}],"
                                "\"memory\":{\"size\":1,\"zones\":null}},\"device_tree\":null}",
                                &vi, err, sizeof(err)), 0);
    assert_int_equal(vi.n_fs, 1);
    assert_null(vi.fs[0].id);
    assert_string_equal(vi.fs[0].tag, "a");
    assert_int_equal(vi.n_devices, 1);
    assert_null(vi.devices[0].id);
    assert_int_equal(vi.n_zones, 0);
    assert_int_equal(vi.n_tree_ids, 0);
    json_vm_info_fini(&vi);

    /* An id given then nulled by a repeated key ends NULL, nothing leaks. */
    assert_int_equal(decode_str("{\"state\":\"Running\",\"config\":{\"fs\":[{\"tag\":\"a\","
                                "\"socket\":\"/a\",\"id\":\"x\",\"id\":null}],"
                                "\"devices\":null,\"memory\":null,\"fs\":null},"
                                "\"config\":null}",
                                &vi, err, sizeof(err)), 0);
    assert_int_equal(vi.n_fs, 1);
    assert_null(vi.fs[0].id);
    json_vm_info_fini(&vi);

    /* Absent num_queues/queue_size read as 0. */
    assert_int_equal(decode_str("{\"state\":\"Running\",\"config\":{\"fs\":[{\"tag\":\"a\","
                                "\"socket\":\"/a\"}]}}", &vi, err, sizeof(err)), 0);
    assert_int_equal(vi.fs[0].num_queues, 0);
    assert_int_equal(vi.fs[0].queue_size, 0);
    assert_null(vi.fs[0].id);
    json_vm_info_fini(&vi);
}

/* Bodies as each CH generation's serde writes them.  v53 and later skip
 * unset Option fields (skip_serializing_none); v52 and older wrote them as
 * null.  DeviceConfig.path became an Option in v53: a VFIO device handed
 * over by fd (iommufd) has no path at all. */
static void test_vm_info_generations(void **state)
{
    char err[BASE_ERRSTR_MAX] = "";
    json_vm_info vi;
    (void)state;

    /* head: fd-backed VFIO device beside a path one; tree nodes without
     * parent or pci_bdf where CH has none. */
    int rc = decode_str(
        "{\"config\":{\"cpus\":{\"boot_vcpus\":2,\"max_vcpus\":2,\"kvm_hyperv\":false,"
        "\"max_phys_bits\":46,\"features\":{},\"nested\":true,\"core_scheduling\":\"Vm\","
        "\"profile\":\"Host\"},\"memory\":{\"size\":1073741824,\"mergeable\":false,"
        "\"hotplug_method\":\"Acpi\",\"shared\":true,\"hugepages\":false,\"prefault\":false,"
        "\"reserve\":false,\"thp\":true},\"payload\":{\"kernel\":\"/k\"},"
        "\"devices\":[{\"id\":\"gpu0\",\"pci_segment\":0,\"path\":"
        "\"/sys/bus/pci/devices/0000:01:00.0\",\"x_exclude_mmap_bars\":[]},"
        "{\"id\":\"_vfio1\",\"pci_segment\":0,\"x_exclude_mmap_bars\":[]}],"
        "\"pvpanic\":false,\"iommu\":false,\"watchdog\":false,\"landlock_enable\":false},"
        "\"state\":\"Running\",\"memory_actual_size\":1073741824,\"device_tree\":{"
        "\"gpu0\":{\"id\":\"gpu0\",\"resources\":[{\"PciBar\":{\"index\":0,\"base\":3221225472,"
        "\"size\":16777216,\"type_\":\"Mmio32\",\"prefetchable\":false}}],\"children\":[],"
        "\"pci_bdf\":\"0000:00:05.0\"},\"_vfio1\":{\"id\":\"_vfio1\",\"resources\":[],"
        "\"children\":[],\"pci_bdf\":\"0000:00:06.0\"},\"__rng\":{\"id\":\"__rng\","
        "\"resources\":[],\"parent\":\"_virtio-pci-__rng\",\"children\":[]}}}",
        &vi, err, sizeof(err));
    if (rc)
        print_error("head: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(vi.n_devices, 2);
    assert_string_equal(vi.devices[0].path, "/sys/bus/pci/devices/0000:01:00.0");
    assert_string_equal(vi.devices[1].id, "_vfio1");
    assert_null(vi.devices[1].path);
    assert_int_equal(vi.n_tree_ids, 3);
    json_vm_info_fini(&vi);

    /* v52: every unset Option written as null, including the tree's
     * parent and pci_bdf and memory.zones. */
    rc = decode_str(
        "{\"config\":{\"cpus\":{\"boot_vcpus\":1,\"max_vcpus\":1,\"topology\":null,"
        "\"kvm_hyperv\":false,\"max_phys_bits\":46,\"affinity\":null,\"features\":"
        "{\"amx\":false}},\"memory\":{\"size\":536870912,\"mergeable\":false,"
        "\"hotplug_method\":\"Acpi\",\"hotplug_size\":null,\"hotplugged_size\":null,"
        "\"shared\":true,\"hugepages\":false,\"hugepage_size\":null,\"prefault\":false,"
        "\"zones\":null,\"thp\":true},\"payload\":{\"firmware\":null,\"kernel\":\"/k\","
        "\"cmdline\":null,\"initramfs\":null},\"rate_limit_groups\":null,\"disks\":null,"
        "\"net\":null,\"rng\":{\"src\":\"/dev/urandom\",\"iommu\":false},\"balloon\":null,"
        "\"fs\":[{\"tag\":\"data\",\"socket\":\"/run/fs.sock\",\"num_queues\":1,"
        "\"queue_size\":1024,\"id\":null,\"pci_segment\":0}],\"pmem\":null,"
        "\"devices\":[{\"path\":\"/sys/bus/pci/devices/0000:01:00.0\",\"iommu\":false,"
        "\"id\":null,\"pci_segment\":0,\"x_nv_gpudirect_clique\":null}],"
        "\"user_devices\":null,\"vdpa\":null,\"vsock\":null,\"numa\":null,\"platform\":null,"
        "\"tpm\":null,\"landlock_rules\":null},\"state\":\"Running\","
        "\"memory_actual_size\":536870912,\"device_tree\":{\"_fs0\":{\"id\":\"_fs0\","
        "\"resources\":[],\"parent\":\"_virtio-pci-_fs0\",\"children\":[],\"pci_bdf\":null},"
        "\"_virtio-pci-_fs0\":{\"id\":\"_virtio-pci-_fs0\",\"resources\":[{\"LegacyIrq\":5}],"
        "\"parent\":null,\"children\":[\"_fs0\"],\"pci_bdf\":\"0000:00:05.0\"}}}",
        &vi, err, sizeof(err));
    if (rc)
        print_error("v52: %s\n", err);
    assert_int_equal(rc, 0);
    assert_true(vi.mem_shared);
    assert_int_equal(vi.n_zones, 0);
    assert_int_equal(vi.n_fs, 1);
    assert_null(vi.fs[0].id);
    assert_int_equal(vi.n_devices, 1);
    assert_null(vi.devices[0].id);
    assert_int_equal(vi.n_tree_ids, 2);
    json_vm_info_fini(&vi);

    /* Builds between the two wrote an fd-backed device's path as null; a
     * repeated key that ends null leaves nothing behind. */
    rc = decode_str("{\"state\":\"Created\",\"config\":{\"devices\":[{\"id\":\"_vfio0\","
                    "\"path\":null},{\"path\":\"/p\",\"path\":null}]}}",
                    &vi, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_int_equal(vi.n_devices, 2);
    assert_null(vi.devices[0].path);
    assert_null(vi.devices[1].path);
    json_vm_info_fini(&vi);
}

static void test_vm_info_unknown_keys(void **state)
{
    char err[BASE_ERRSTR_MAX] = "";
    json_vm_info vi;
    (void)state;

    /* Unknown keys of every type at every level, including ones named like
     * fields inside unknown objects, are skipped whole. */
    assert_int_equal(decode_str(
        "{\"x\":{\"state\":1,\"fs\":[1,2,{\"tag\":5}]},\"state\":\"Paused\","
        "\"y\":[[[{\"a\":null}]]],\"z\":1.5e300,\"w\":true,\"v\":null,"
        "\"config\":{\"cpus\":{\"boot_vcpus\":2},\"memory\":{\"size\":2,\"mergeable\":false,"
        "\"zones\":[{\"id\":\"z\",\"size\":1,\"file\":null,\"shared\":true,\"q\":[{}]}],"
        "\"extra\":{\"shared\":\"no\"}},"
        "\"fs\":[{\"tag\":\"t\",\"socket\":\"/s\",\"pci_segment\":0,\"iommu\":false,"
        "\"nested\":{\"tag\":7}}],"
        "\"devices\":[{\"path\":\"/p\",\"x_nv_gpudirect_clique\":null,\"iommu\":false}],"
        "\"disks\":[{\"id\":1,\"path\":2}]},"
        "\"device_tree\":{\"a\":{\"id\":\"a\",\"resources\":[{\"PciBar\":{}}]},\"b\":null,\"c\":3}}",
        &vi, err, sizeof(err)), 0);
    assert_string_equal(vi.state, "Paused");
    assert_int_equal(vi.mem_size, 2);
    assert_int_equal(vi.n_zones, 1);
    assert_true(vi.zones[0].shared);
    assert_int_equal(vi.n_fs, 1);
    assert_string_equal(vi.fs[0].tag, "t");
    assert_int_equal(vi.n_devices, 1);
    assert_string_equal(vi.devices[0].path, "/p");
    assert_int_equal(vi.n_tree_ids, 3);
    assert_string_equal(vi.tree_ids[0], "a");
    assert_string_equal(vi.tree_ids[1], "b");
    assert_string_equal(vi.tree_ids[2], "c");
    json_vm_info_fini(&vi);
}

typedef struct type_row {
    const char *json;
    const char *want;
} type_row;

#define FS1 "{\"state\":\"Running\",\"config\":{\"fs\":[{\"tag\":\"a\",\"socket\":\"/a\"},"
#define DV1 "{\"state\":\"Running\",\"config\":{\"devices\":[{\"path\":\"/a\"},"

static const type_row type_rows[] = {
    { "[]", "top level: expected object" },
    { "\"Running\"", "top level: expected object" },
    { "null", "top level: expected object" },
    { "{\"state\":1}", "state: expected string" },
    { "{\"state\":null}", "state: expected string" },
    { "{\"state\":[\"Running\"]}", "state: expected string" },
    { "{\"state\":\"Running\",\"config\":[]}", "config: expected object" },
    { "{\"state\":\"Running\",\"config\":\"x\"}", "config: expected object" },
    { "{\"state\":\"Running\",\"config\":{\"memory\":1}}", "config.memory: expected object" },
    { "{\"state\":\"Running\",\"config\":{\"memory\":{\"size\":\"1G\"}}}",
      "config.memory.size: expected non-negative integer" },
    { "{\"state\":\"Running\",\"config\":{\"memory\":{\"size\":-1}}}",
      "config.memory.size: expected non-negative integer" },
    { "{\"state\":\"Running\",\"config\":{\"memory\":{\"size\":1.5}}}",
      "config.memory.size: expected non-negative integer" },
    { "{\"state\":\"Running\",\"config\":{\"memory\":{\"size\":18446744073709551616}}}",
      "config.memory.size: expected non-negative integer" },
    { "{\"state\":\"Running\",\"config\":{\"memory\":{\"size\":null}}}",
      "config.memory.size: expected non-negative integer" },
    { "{\"state\":\"Running\",\"config\":{\"memory\":{\"shared\":\"on\"}}}",
      "config.memory.shared: expected boolean" },
    { "{\"state\":\"Running\",\"config\":{\"memory\":{\"shared\":1}}}",
      "config.memory.shared: expected boolean" },
    { "{\"state\":\"Running\",\"config\":{\"memory\":{\"hugepages\":null}}}",
      "config.memory.hugepages: expected boolean" },
    { "{\"state\":\"Running\",\"config\":{\"memory\":{\"zones\":{}}}}",
      "config.memory.zones: expected array" },
    { "{\"state\":\"Running\",\"config\":{\"memory\":{\"zones\":[{},1]}}}",
      "config.memory.zones[1]: expected object" },
    { "{\"state\":\"Running\",\"config\":{\"memory\":{\"zones\":[{},{},{\"shared\":0}]}}}",
      "config.memory.zones[2].shared: expected boolean" },
    { "{\"state\":\"Running\",\"config\":{\"memory\":{\"zones\":[{\"hugepages\":\"yes\"}]}}}",
      "config.memory.zones[0].hugepages: expected boolean" },
    { "{\"state\":\"Running\",\"config\":{\"fs\":{}}}", "config.fs: expected array" },
    { "{\"state\":\"Running\",\"config\":{\"fs\":\"a\"}}", "config.fs: expected array" },
    { "{\"state\":\"Running\",\"config\":{\"fs\":[null]}}", "config.fs[0]: expected object" },
    { "{\"state\":\"Running\",\"config\":{\"fs\":[[]]}}", "config.fs[0]: expected object" },
    { "{\"state\":\"Running\",\"config\":{\"fs\":[{\"tag\":1}]}}",
      "config.fs[0].tag: expected string" },
    { FS1 "{\"tag\":null,\"socket\":\"/b\"}]}}", "config.fs[1].tag: expected string" },
    { FS1 "{\"tag\":\"b\",\"socket\":{}}]}}", "config.fs[1].socket: expected string" },
    { FS1 "{\"tag\":\"b\",\"socket\":\"/b\",\"id\":5}]}}",
      "config.fs[1].id: expected string or null" },
    { FS1 "{\"tag\":\"b\",\"socket\":\"/b\",\"num_queues\":\"1\"}]}}",
      "config.fs[1].num_queues: expected integer" },
    { FS1 "{\"tag\":\"b\",\"socket\":\"/b\",\"num_queues\":1.0}]}}",
      "config.fs[1].num_queues: expected integer" },
    { FS1 "{\"tag\":\"b\",\"socket\":\"/b\",\"num_queues\":null}]}}",
      "config.fs[1].num_queues: expected integer" },
    { FS1 "{\"tag\":\"b\",\"socket\":\"/b\",\"queue_size\":true}]}}",
      "config.fs[1].queue_size: expected integer" },
    { FS1 "{\"tag\":\"b\",\"socket\":\"/b\",\"queue_size\":9223372036854775808}]}}",
      "config.fs[1].queue_size: expected integer" },
    { FS1 "{\"tag\":\"b\",\"socket\":\"/b\",\"queue_size\":1e3}]}}",
      "config.fs[1].queue_size: expected integer" },
    { "{\"state\":\"Running\",\"config\":{\"devices\":{}}}", "config.devices: expected array" },
    { "{\"state\":\"Running\",\"config\":{\"devices\":[\"/p\"]}}",
      "config.devices[0]: expected object" },
    { DV1 "{\"path\":1}]}}", "config.devices[1].path: expected string or null" },
    { DV1 "{\"path\":\"/b\",\"id\":false}]}}", "config.devices[1].id: expected string or null" },
    { "{\"state\":\"Running\",\"device_tree\":[]}", "device_tree: expected object" },
    { "{\"state\":\"Running\",\"device_tree\":\"a\"}", "device_tree: expected object" },
    /* Required fields. */
    { "{}", "state: missing" },
    { "{\"config\":{}}", "state: missing" },
    { "{\"state\":\"Running\",\"config\":{\"fs\":[{\"socket\":\"/a\"}]}}",
      "config.fs[0].tag: missing" },
    { FS1 "{\"tag\":\"b\"}]}}", "config.fs[1].socket: missing" },
    /* Kept strings never hide a NUL. */
    { "{\"state\":\"Run\\u0000ning\"}", "state: string contains a NUL character" },
    { FS1 "{\"tag\":\"b\\u0000\",\"socket\":\"/b\"}]}}",
      "config.fs[1].tag: string contains a NUL character" },
    { "{\"state\":\"Running\",\"device_tree\":{\"a\\u0000b\":{}}}",
      "device_tree: key contains a NUL character" },
};

static void test_vm_info_wrong_types(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(type_rows); i++) {
        char err[BASE_ERRSTR_MAX] = "";
        json_vm_info vi;
        int rc = decode_str(type_rows[i].json, &vi, err, sizeof(err));
        if (rc != -EBADMSG || strcmp(err, type_rows[i].want) != 0)
            print_error("row %zu %s: rc %d err '%s' want '%s'\n", i, type_rows[i].json, rc,
                        err, type_rows[i].want);
        assert_int_equal(rc, -EBADMSG);
        assert_string_equal(err, type_rows[i].want);
        assert_vi_empty(&vi);
    }
}

static void test_vm_info_malformed(void **state)
{
    static const char *const bad[] = {
        "", " ", "{", "{\"state\":", "{\"state\":\"Running\"", "{\"state\":\"Running\"}}",
        "{\"state\":\"Running\"} x", "{\"state\":\"Running\"}{}", "{'state':'Running'}",
        "{\"state\":\"Running\",}", "{\"state\":\"Run\nning\"}",
        "/* c */ {\"state\":\"Running\"}", "{\"state\":\"\xff\"}", "{\"state\":\"\xc3\"}",
        "{state:1}", "{\"state\":\"Running\",\"config\":{\"memory\":{\"size\":01}}}",
        "{\"state\":\"Running\",\"config\":{\"memory\":{\"size\":1.}}}",
        "\x00{}",
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char err[BASE_ERRSTR_MAX] = "";
        json_vm_info vi;
        size_t len = bad[i][0] ? strlen(bad[i]) : (i == ARRAY_LEN(bad) - 1 ? 3 : 0);
        int rc = decode_exact(bad[i], len, &vi, err, sizeof(err));
        if (rc != -EBADMSG || strncmp(err, "malformed JSON: ", 16) != 0)
            print_error("case %zu: rc %d err '%s'\n", i, rc, err);
        assert_int_equal(rc, -EBADMSG);
        assert_true(strncmp(err, "malformed JSON: ", 16) == 0);
        assert_null(strchr(err, '\n'));
        assert_true(strlen(err) > 16);
        assert_vi_empty(&vi);
    }

    char err[BASE_ERRSTR_MAX] = "";
    json_vm_info vi;
    assert_int_equal(decode_str("{\"state\":", &vi, err, sizeof(err)), -EBADMSG);
    assert_string_equal(err, "malformed JSON: parse error: premature EOF");
    assert_int_equal(decode_str("{\"state\":\"Running\"} x", &vi, err, sizeof(err)), -EBADMSG);
    assert_string_equal(err, "malformed JSON: parse error: trailing garbage");
    /* A NULL buffer with length 0 is an empty document. */
    assert_int_equal(json_vm_info_decode(NULL, 0, &vi, err, sizeof(err)), -EBADMSG);
    assert_int_equal(json_vm_info_decode(NULL, 5, &vi, err, sizeof(err)), -EINVAL);
    assert_int_equal(json_vm_info_decode("{}", 2, NULL, err, sizeof(err)), -EINVAL);
    /* err may be NULL. */
    assert_int_equal(json_vm_info_decode("{", 1, &vi, NULL, 0), -EBADMSG);
}

static char *nested(size_t depth)
{
    const char *pre = "{\"state\":\"Running\",\"x\":";
    size_t plen = strlen(pre);
    char *s = malloc(plen + 2 * depth + 2);
    assert_non_null(s);
    memcpy(s, pre, plen);
    memset(s + plen, '[', depth);
    memset(s + plen + depth, ']', depth);
    s[plen + 2 * depth] = '}';
    s[plen + 2 * depth + 1] = '\0';
    return s;
}

static void test_vm_info_depth_limit(void **state)
{
    char err[BASE_ERRSTR_MAX] = "";
    json_vm_info vi;
    (void)state;

    /* The root object is one level: 63 more fit, 64 do not. */
    char *ok = nested(63);
    assert_int_equal(decode_str(ok, &vi, err, sizeof(err)), 0);
    json_vm_info_fini(&vi);
    free(ok);

    char *deep = nested(64);
    assert_int_equal(decode_str(deep, &vi, err, sizeof(err)), -EBADMSG);
    assert_string_equal(err, "JSON nesting deeper than 64 levels");
    assert_vi_empty(&vi);
    free(deep);

    char *huge = nested(100000);
    assert_int_equal(decode_str(huge, &vi, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "nesting deeper than 64 levels"));
    free(huge);
}

static void test_vm_info_numbers(void **state)
{
    char err[BASE_ERRSTR_MAX] = "";
    json_vm_info vi;
    (void)state;

    assert_int_equal(decode_str("{\"state\":\"Running\",\"config\":{\"memory\":{"
                                "\"size\":18446744073709551615},\"fs\":[{\"tag\":\"a\","
                                "\"socket\":\"/a\",\"num_queues\":-9223372036854775808,"
                                "\"queue_size\":9223372036854775807}]}}",
                                &vi, err, sizeof(err)), 0);
    assert_true(vi.mem_size == UINT64_MAX);
    assert_true(vi.fs[0].num_queues == INT64_MIN);
    assert_true(vi.fs[0].queue_size == INT64_MAX);
    json_vm_info_fini(&vi);

    assert_int_equal(decode_str("{\"state\":\"Running\",\"config\":{\"memory\":{\"size\":0},"
                                "\"fs\":[{\"tag\":\"a\",\"socket\":\"/a\",\"num_queues\":-0}]}}",
                                &vi, err, sizeof(err)), 0);
    assert_int_equal(vi.mem_size, 0);
    assert_int_equal(vi.fs[0].num_queues, 0);
    json_vm_info_fini(&vi);
}

/* Many entries exercise array growth; a vm.info of tens of KiB must decode
 * fast since one is read before every attach. */
static void test_vm_info_large(void **state)
{
    const size_t n = 300;
    size_t cap = 256 * 1024, off = 0;
    char *s = malloc(cap);
    (void)state;
    assert_non_null(s);

    off += (size_t)snprintf(s + off, cap - off, "{\"state\":\"Running\",\"config\":{\"fs\":[");
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(s + off, cap - off,
                                "%s{\"tag\":\"t%zu\",\"socket\":\"/run/vfs/vm-%zu.sock\","
                                "\"num_queues\":1,\"queue_size\":1024,\"id\":\"cocoon-fs-t%zu\","
                                "\"pci_segment\":0}", i ? "," : "", i, i, i);
    off += (size_t)snprintf(s + off, cap - off, "],\"memory\":{\"zones\":[");
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(s + off, cap - off, "%s{\"shared\":%s}", i ? "," : "",
                                i % 2 ? "true" : "false");
    off += (size_t)snprintf(s + off, cap - off, "]}},\"device_tree\":{");
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(s + off, cap - off,
                                "%s\"cocoon-fs-t%zu\":{\"id\":\"cocoon-fs-t%zu\",\"resources\":[],"
                                "\"parent\":\"_virtio-pci-cocoon-fs-t%zu\",\"children\":[],"
                                "\"pci_bdf\":null}", i ? "," : "", i, i, i);
    off += (size_t)snprintf(s + off, cap - off, "}}");
    assert_true(off < cap - 1);
    assert_true(off > 64 * 1024);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int iter = 0; iter < 20; iter++) {
        char err[BASE_ERRSTR_MAX] = "";
        json_vm_info vi;
        assert_int_equal(json_vm_info_decode(s, off, &vi, err, sizeof(err)), 0);
        assert_int_equal(vi.n_fs, n);
        assert_int_equal(vi.n_zones, n);
        assert_int_equal(vi.n_tree_ids, n);
        assert_string_equal(vi.fs[n - 1].tag, "t299");
        assert_string_equal(vi.fs[n - 1].socket, "/run/vfs/vm-299.sock");
        assert_true(vi.zones[n - 1].shared);
        assert_string_equal(vi.tree_ids[n - 1], "cocoon-fs-t299");
        json_vm_info_fini(&vi);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    /* A loose bound that still holds under valgrind: 20 decodes of ~90 KiB. */
    assert_true(ms < 5000.0);
    free(s);
}

/* Fails each allocation of a full decode in turn. */
static void test_vm_info_enomem(void **state)
{
    size_t len = full_vm_info_len;
    (void)state;

    /* A failed allocation in the fast reader hands the body to yajl; one
     * in yajl's decode is the error.  Either way nothing leaks. */
    for (long n = 0, enomem = 0;; n++) {
        char err[BASE_ERRSTR_MAX] = "";
        json_vm_info vi;
        fail_countdown = n;
        int rc = json_vm_info_decode(full_vm_info, len, &vi, err, sizeof(err));
        bool failed = fail_countdown < 0;
        fail_countdown = -1;
        if (rc == 0) {
            check_full(&vi);
            json_vm_info_fini(&vi);
            if (failed)
                continue;
            assert_true(n > 3 && enomem > 0);
            break;
        }
        enomem++;
        if (rc != -ENOMEM)
            print_error("n=%ld rc %d %s\n", n, rc, err);
        assert_int_equal(rc, -ENOMEM);
        assert_vi_empty(&vi);
        assert_true(n < 1000);
    }
}

/* -------------------------------------------------------- PciDeviceInfo */

static void test_pci_info(void **state)
{
    char err[BASE_ERRSTR_MAX] = "";
    json_pci_info pi;
    (void)state;

    const char *ok = "{\"id\":\"cocoon-fs-data\",\"bdf\":\"0000:00:05.0\"}";
    assert_int_equal(json_pci_info_decode(ok, strlen(ok), &pi, err, sizeof(err)), 0);
    assert_string_equal(pi.id, "cocoon-fs-data");
    assert_string_equal(pi.bdf, "0000:00:05.0");
    json_pci_info_fini(&pi);
    assert_null(pi.id);
    assert_null(pi.bdf);
    json_pci_info_fini(&pi);
    json_pci_info_fini(NULL);

    const char *nobdf = " {\"id\":\"_vfio3\",\"extra\":[1,{\"bdf\":2}]} ";
    assert_int_equal(json_pci_info_decode(nobdf, strlen(nobdf), &pi, err, sizeof(err)), 0);
    assert_string_equal(pi.id, "_vfio3");
    assert_null(pi.bdf);
    json_pci_info_fini(&pi);

    /* Not NUL-terminated: the closing brace is the last byte. */
    char *exact = malloc(strlen(ok));
    assert_non_null(exact);
    memcpy(exact, ok, strlen(ok));
    assert_int_equal(json_pci_info_decode(exact, strlen(ok), &pi, err, sizeof(err)), 0);
    assert_string_equal(pi.bdf, "0000:00:05.0");
    json_pci_info_fini(&pi);
    free(exact);

    static const type_row bad[] = {
        { "{\"id\":1,\"bdf\":\"0000:00:05.0\"}", "id: expected string" },
        { "{\"id\":null}", "id: expected string" },
        { "{\"id\":\"x\",\"bdf\":5}", "bdf: expected string" },
        { "{\"id\":\"x\",\"bdf\":null}", "bdf: expected string" },
        { "{\"bdf\":\"0000:00:05.0\"}", "id: missing" },
        { "[\"x\"]", "top level: expected object" },
        { "{\"id\":\"a\\u0000\"}", "id: string contains a NUL character" },
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        int rc = json_pci_info_decode(bad[i].json, strlen(bad[i].json), &pi, err, sizeof(err));
        if (rc != -EBADMSG || strcmp(err, bad[i].want) != 0)
            print_error("row %zu: rc %d err '%s'\n", i, rc, err);
        assert_int_equal(rc, -EBADMSG);
        assert_string_equal(err, bad[i].want);
        assert_null(pi.id);
        assert_null(pi.bdf);
    }

    assert_int_equal(json_pci_info_decode("", 0, &pi, err, sizeof(err)), -EBADMSG);
    assert_true(strncmp(err, "malformed JSON: ", 16) == 0);
    assert_int_equal(json_pci_info_decode("{\"id\":\"x\"", 9, &pi, err, sizeof(err)), -EBADMSG);
    assert_string_equal(err, "malformed JSON: parse error: premature EOF");
    assert_null(pi.id);
}

/* A failed allocation in the fast reader hands the body to yajl, so the
 * plain body always decodes; the escaped one goes to yajl, whose
 * allocation failures are the error. */
static void test_pci_info_enomem(void **state)
{
    static const char *const bodies[] = {
        "{\"id\":\"cocoon-fs-data\",\"bdf\":\"0000:00:05.0\"}",
        "{\"id\":\"cocoon-fs-d\\u0061ta\",\"bdf\":\"0000:00:05.0\"}",
    };
    (void)state;

    for (size_t b = 0; b < ARRAY_LEN(bodies); b++) {
        for (long n = 0, enomem = 0;; n++) {
            char err[BASE_ERRSTR_MAX] = "";
            json_pci_info pi;
            fail_countdown = n;
            int rc = json_pci_info_decode(bodies[b], strlen(bodies[b]), &pi, err, sizeof(err));
            bool failed = fail_countdown < 0;
            fail_countdown = -1;
            if (rc == 0) {
                assert_string_equal(pi.id, "cocoon-fs-data");
                assert_string_equal(pi.bdf, "0000:00:05.0");
                json_pci_info_fini(&pi);
                if (failed)
                    continue;
                assert_true(n >= 2 && (enomem > 0) == (b == 1));
                break;
            }
            enomem++;
            assert_int_equal(rc, -ENOMEM);
            assert_null(pi.id);
            assert_null(pi.bdf);
            assert_true(n < 100);
        }
    }
}

/* ---------------------------------------------------------- error bodies */

static void render_exact(const char *body, size_t len, char *out, size_t outlen)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, body, len);
    json_error_render(copy, len, out, outlen);
    free(copy);
}

static void render_str(const char *body, char *out, size_t outlen)
{
    render_exact(body, strlen(body), out, outlen);
}

/* body renders to exactly want; the buffer starts dirty so an unwritten
 * result cannot pass. */
static void render_is(const char *body, const char *want)
{
    char out[BASE_ERRSTR_MAX];

    strcpy(out, "junk");
    render_str(body, out, sizeof(out));
    assert_string_equal(out, want);
}

static void test_error_render_generations(void **state)
{
    (void)state;

    /* head and v53: a JSON array of the error chain. */
    render_is("[\"Error from API\",\"The fs could not be added to the VM\","
              "\"Failed to validate config\",\"Identifier cocoon-fs-data is not unique\"]",
              "Error from API: The fs could not be added to the VM: "
              "Failed to validate config: Identifier cocoon-fs-data is not unique");
    render_is("[\"Not Found\"]", "Not Found");
    render_is("[\"Failed to deserialize JSON\",\"missing field `tag` at line 1 column 2\"]",
              "Failed to deserialize JSON: missing field `tag` at line 1 column 2");
    render_is(" \n[ \"a\\\"b\" , \"c\\\\d\\u00e9\" ]\r\n", "a\"b: c\\d\xc3\xa9");

    /* v46: plain text. */
    render_is("Error from API: The fs could not be added to the VM: Failed to validate "
              "config: Identifier x is not unique\n",
              "Error from API: The fs could not be added to the VM: Failed "
              "to validate config: Identifier x is not unique");
    render_is("Not Found", "Not Found");

    /* micro_http's own parse error: a raw newline in a JSON string. */
    render_is("{ \"error\": \"Invalid HTTP method.\nAll previous unanswered requests will "
              "be dropped.\" }",
              "Invalid HTTP method. All previous unanswered requests will be dropped.");
    /* The connection cap's 503: micro_http's frame around the text. */
    render_is("{ \"error\": \"Too many open connections\" }", "Too many open connections");
    /* Anything else shaped like an object stays raw. */
    render_is("{\"error\":\"x\"}", "{\"error\":\"x\"}");
    render_is("{ \"error\": \"\" }", "{ \"error\": \"\" }");
    render_is("{ \"error\": \"a\nb\"", "{ \"error\": \"a\nb\"");
}

static void test_error_render_fallbacks(void **state)
{
    char out[BASE_ERRSTR_MAX];
    (void)state;

    static const char *const raw[] = {
        "[\"a\",1]", "[\"a\",null]", "[\"a\",[\"b\"]]", "[{\"a\":\"b\"}]", "[\"a\"] x",
        "[\"a\",]", "[\"a\"", "[]", "[true]", "[\"a\\u0000b\"]", "[\"\xff\"]",
        "[\"a\"][\"b\"]", "[/*c*/\"a\"]", "\"just a string\"", "42",
    };
    for (size_t i = 0; i < ARRAY_LEN(raw); i++)
        render_is(raw[i], raw[i]);

    render_is("  \t\r\n padded text \n\n", "padded text");
    render_is("", "");
    render_is(" \r\n\t ", "");
    strcpy(out, "junk");
    json_error_render(NULL, 0, out, sizeof(out));
    assert_string_equal(out, "");
    json_error_render("x", 1, NULL, 0);
    /* An array of empty strings joins to separators only. */
    render_is("[\"\",\"\"]", ": ");
}

static void test_error_render_cut(void **state)
{
    char out[BASE_ERRSTR_MAX];
    char body[4096];
    char want[1025];
    (void)state;

    /* Raw text: trimmed first, then cut at 1024 bytes. */
    body[0] = ' ';
    memset(body + 1, 'x', 3000);
    body[3001] = '\n';
    render_exact(body, 3002, out, sizeof(out));
    memset(want, 'x', 1024);
    want[1024] = '\0';
    assert_string_equal(out, want);

    /* Exactly 1024 bytes is kept whole; 1025 loses one. */
    memset(body, 'y', 1025);
    render_exact(body, 1024, out, sizeof(out));
    assert_int_equal(strlen(out), 1024);
    render_exact(body, 1025, out, sizeof(out));
    assert_int_equal(strlen(out), 1024);

    /* A joined array is cut at 1024 too. */
    size_t o = 0;
    body[o++] = '[';
    for (int i = 0; i < 40; i++) {
        if (i)
            body[o++] = ',';
        body[o++] = '"';
        memset(body + o, (char)('a' + i % 26), 60);
        o += 60;
        body[o++] = '"';
    }
    body[o++] = ']';
    render_exact(body, o, out, sizeof(out));
    assert_int_equal(strlen(out), 1024);
    assert_true(strncmp(out, "aaaaaaaaaa", 10) == 0);
    assert_true(strncmp(out + 60, ": bbbb", 6) == 0);

    /* A cut never splits a UTF-8 sequence. */
    memset(body, 'z', 1023);
    memcpy(body + 1023, "\xc3\xa9zz", 4);
    render_exact(body, 1027, out, sizeof(out));
    assert_int_equal(strlen(out), 1023);
    memset(body, 'z', 1022);
    memcpy(body + 1022, "\xe2\x86\x92zz", 5);
    render_exact(body, 1027, out, sizeof(out));
    assert_int_equal(strlen(out), 1022);
    memset(body, 'z', 1021);
    memcpy(body + 1021, "\xe2\x86\x92zz", 5);
    render_exact(body, 1026, out, sizeof(out));
    assert_int_equal(strlen(out), 1024);

    /* Small output buffers: always NUL-terminated within outlen. */
    char small[8];
    memset(small, 'Q', sizeof(small));
    render_str("[\"Error from API\",\"x\"]", small, sizeof(small));
    assert_string_equal(small, "Error f");
    memset(small, 'Q', sizeof(small));
    render_str("plain text body", small, sizeof(small));
    assert_string_equal(small, "plain t");
    memset(small, 'Q', sizeof(small));
    render_str("plain", small, 1);
    assert_int_equal(small[0], '\0');
    assert_int_equal(small[1], 'Q');
    memset(small, 'Q', sizeof(small));
    render_str("[\"ab\"]", small, 2);
    assert_string_equal(small, "a");
    assert_int_equal(small[2], 'Q');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fs_config_encode),
        cmocka_unit_test(test_device_config_encode),
        cmocka_unit_test(test_remove_device_encode),
        cmocka_unit_test(test_encode_escaping_round_trip),
        cmocka_unit_test(test_encode_invalid_utf8),
        cmocka_unit_test(test_encode_missing_fields),
        cmocka_unit_test(test_encode_enomem),
        cmocka_unit_test(test_vm_info_full_fixture),
        cmocka_unit_test(test_vm_info_every_prefix),
        cmocka_unit_test(test_vm_info_fast),
        cmocka_unit_test(test_vm_info_minimal),
        cmocka_unit_test(test_vm_info_nulls),
        cmocka_unit_test(test_vm_info_generations),
        cmocka_unit_test(test_vm_info_unknown_keys),
        cmocka_unit_test(test_vm_info_wrong_types),
        cmocka_unit_test(test_vm_info_malformed),
        cmocka_unit_test(test_vm_info_depth_limit),
        cmocka_unit_test(test_vm_info_numbers),
        cmocka_unit_test(test_vm_info_large),
        cmocka_unit_test(test_vm_info_enomem),
        cmocka_unit_test(test_pci_info),
        cmocka_unit_test(test_pci_info_enomem),
        cmocka_unit_test(test_error_render_generations),
        cmocka_unit_test(test_error_render_fallbacks),
        cmocka_unit_test(test_error_render_cut),
    };
    return cmocka_run_group_tests(tests, fixture_setup, NULL);
}
