/* tests/test_clonecfg.c: a snapshot's config.json rewritten for a clone:
 * every path the two VMs would share moves, runtime-attached devices go,
 * and every other field (memory.shared, hugepages, unknown keys, big
 * numbers) comes back as read. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "backends/clonecfg.h"
#include "http/base.h"

/* Shaped like the config.json Cloud Hypervisor v53 writes. */
static const char cfg_json[] =
    "{\"cpus\":{\"boot_vcpus\":2,\"max_vcpus\":2},"
    "\"memory\":{\"size\":1073741824,\"mergeable\":false,\"hotplug_method\":\"Acpi\","
    "\"shared\":true,\"hugepages\":true,\"hugepage_size\":2097152,\"prefault\":false,"
    "\"thp\":true},"
    "\"payload\":{\"kernel\":\"/img/vmlinux\",\"cmdline\":\"console=ttyS0\"},"
    "\"disks\":[{\"path\":\"/img/root.raw\",\"readonly\":false,\"direct\":false,"
    "\"id\":\"_disk0\"},{\"path\":\"/img/base.iso\",\"readonly\":true,\"id\":\"_disk1\"},"
    "{\"vhost_user\":true,\"vhost_socket\":\"/run/vu.sock\",\"id\":\"_disk2\"}],"
    "\"net\":[{\"tap\":\"tap0\",\"mac\":\"52:54:00:00:00:01\",\"id\":\"_net0\"}],"
    "\"serial\":{\"file\":\"/run/a/serial.log\",\"mode\":\"File\",\"iommu\":false},"
    "\"console\":{\"file\":null,\"mode\":\"Socket\",\"socket\":\"/run/a/con.sock\"},"
    "\"fs\":[{\"tag\":\"data\",\"socket\":\"/run/vfsd.sock\",\"id\":\"cocoon-fs-data\"}],"
    "\"devices\":[{\"path\":\"/sys/bus/pci/devices/0000:01:00.0\",\"id\":\"gpu\"}],"
    "\"pmem\":[{\"file\":\"/img/pm\",\"discard_writes\":false},"
    "{\"file\":\"/img/pm-ro\",\"discard_writes\":true}],"
    "\"vsock\":{\"cid\":3,\"socket\":\"/run/a/vsock.sock\"},"
    "\"future_field\":{\"n\":18446744073709551615,\"f\":1.5e3,\"z\":null}}";

static yajl_val get(yajl_val root, const char *a, const char *b)
{
    const char *path[] = { a, b, NULL };
    return yajl_tree_get(root, path, yajl_t_any);
}

static yajl_val elem(yajl_val root, const char *key, size_t i, const char *field)
{
    yajl_val arr = get(root, key, NULL);
    assert_non_null(arr);
    assert_true(YAJL_IS_ARRAY(arr));
    assert_true(i < arr->u.array.len);
    return get(arr->u.array.values[i], field, NULL);
}

static void test_rewrite_moves_shared_paths(void **state)
{
    (void)state;
    char err[BASE_ERRSTR_MAX];
    clonecfg_result r;

    assert_int_equal(clonecfg_rewrite(cfg_json, sizeof cfg_json - 1, "/run/b", "/var/b",
                                      &r, err, sizeof err), 0);
    assert_int_equal(strlen(r.json), r.len);
    yajl_val root = yajl_tree_parse(r.json, NULL, 0);
    assert_non_null(root);

    assert_string_equal(get(root, "serial", "file")->u.string, "/run/b/serial.log");
    assert_string_equal(get(root, "serial", "mode")->u.string, "File");
    assert_true(YAJL_IS_NULL(get(root, "console", "file")));
    assert_string_equal(get(root, "console", "socket")->u.string, "/run/b/console.sock");
    assert_string_equal(get(root, "vsock", "socket")->u.string, "/run/b/vsock.sock");
    assert_int_equal(YAJL_GET_INTEGER(get(root, "vsock", "cid")), 3);

    /* Writable disk and pmem copied; readonly ones and vhost-user kept. */
    assert_string_equal(elem(root, "disks", 0, "path")->u.string, "/var/b/disk0-root.raw");
    assert_string_equal(elem(root, "disks", 0, "id")->u.string, "_disk0");
    assert_string_equal(elem(root, "disks", 1, "path")->u.string, "/img/base.iso");
    assert_string_equal(elem(root, "disks", 2, "vhost_socket")->u.string, "/run/vu.sock");
    assert_string_equal(elem(root, "pmem", 0, "file")->u.string, "/var/b/pmem0-pm");
    assert_string_equal(elem(root, "pmem", 1, "file")->u.string, "/img/pm-ro");
    assert_int_equal(r.n_copies, 2);
    assert_string_equal(r.copies[0].src, "/img/root.raw");
    assert_string_equal(r.copies[0].dst, "/var/b/disk0-root.raw");
    assert_string_equal(r.copies[1].src, "/img/pm");
    assert_string_equal(r.copies[1].dst, "/var/b/pmem0-pm");

    /* Runtime attaches dropped. */
    assert_null(get(root, "fs", NULL));
    assert_null(get(root, "devices", NULL));
    assert_int_equal(r.n_dropped, 2);

    /* Everything else as read, shared memory and hugepages first. */
    assert_true(YAJL_IS_TRUE(get(root, "memory", "shared")));
    assert_true(YAJL_IS_TRUE(get(root, "memory", "hugepages")));
    assert_int_equal(YAJL_GET_INTEGER(get(root, "memory", "hugepage_size")), 2097152);
    assert_string_equal(get(root, "payload", "kernel")->u.string, "/img/vmlinux");
    assert_string_equal(elem(root, "net", 0, "mac")->u.string, "52:54:00:00:00:01");
    assert_non_null(strstr(r.json, "\"n\":18446744073709551615"));
    assert_non_null(strstr(r.json, "\"f\":1.5e3"));
    assert_true(YAJL_IS_NULL(get(root, "future_field", "z")));
    yajl_tree_free(root);
    clonecfg_result_fini(&r);
    clonecfg_result_fini(&r);
    clonecfg_result_fini(NULL);
}

static void test_minimal_config(void **state)
{
    (void)state;
    char err[BASE_ERRSTR_MAX];
    clonecfg_result r;
    static const char in[] = "{\"memory\":{\"size\":0,\"shared\":false}}";

    assert_int_equal(clonecfg_rewrite(in, sizeof in - 1, "/r", "/d", &r, err, sizeof err), 0);
    assert_string_equal(r.json, in);
    assert_int_equal(r.n_copies, 0);
    assert_int_equal(r.n_dropped, 0);
    clonecfg_result_fini(&r);
}

static void test_rejects_bad_input(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *run, *disk;
        int rc;
        const char *text;
    } cases[] = {
        { "[]", 2, "/r", "/d", -EBADMSG, "not a JSON object" },
        { "{\"a\":1", 6, "/r", "/d", -EBADMSG, "config: " },
        { "{/*c*/}", 7, "/r", "/d", -EBADMSG, "unexpected '/'" },
        { "{\"a\":\"\0\"}", 9, "/r", "/d", -EBADMSG, "NUL byte" },
        { "{\"disks\":[{\"path\":7}]}", 22, "/r", "/d", -EBADMSG, "disk[0].path is not a string" },
        { "{\"disks\":[{\"path\":\"/x/\"}]}", 26, "/r", "/d", -EBADMSG, "names no file" },
        { "{}", 2, "rel", "/d", -EINVAL, "absolute" },
        { "{}", 2, "/r", NULL, -EINVAL, "absolute" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[BASE_ERRSTR_MAX] = "";
        clonecfg_result r;
        assert_int_equal(clonecfg_rewrite(cases[i].in, cases[i].len, cases[i].run,
                                          cases[i].disk, &r, err, sizeof err), cases[i].rc);
        if (!strstr(err, cases[i].text))
            fail_msg("case %zu: %s", i, err);
        assert_null(r.json);
        assert_null(r.copies);
    }
    char deep[80];
    memset(deep, '[', sizeof deep);
    deep[0] = '{';
    char err[BASE_ERRSTR_MAX];
    clonecfg_result r;
    assert_int_equal(clonecfg_rewrite(deep, sizeof deep, "/r", "/d", &r, err, sizeof err),
                     -EBADMSG);
    assert_non_null(strstr(err, "nesting"));
}

static void test_path_too_long(void **state)
{
    (void)state;
    char err[BASE_ERRSTR_MAX];
    clonecfg_result r;
    size_t n = 5000;
    char *in = malloc(n + 64);
    assert_non_null(in);
    int off = snprintf(in, n + 64, "{\"disks\":[{\"path\":\"/");
    memset(in + off, 'a', n);
    snprintf(in + off + n, 64, "\"}]}");
    assert_int_equal(clonecfg_rewrite(in, strlen(in), "/r", "/d", &r, err, sizeof err),
                     -ENAMETOOLONG);
    assert_null(r.copies);
    free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rewrite_moves_shared_paths),
        cmocka_unit_test(test_minimal_config),
        cmocka_unit_test(test_rejects_bad_input),
        cmocka_unit_test(test_path_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
