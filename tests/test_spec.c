/* tests/test_spec.c: the fs and VFIO spec rules, row by row, for
 * spec_fs_normalize, spec_vfio_normalize, spec_pci_path and
 * spec_bdf_from_path, comparing exact error strings. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "backends/spec.h"
#include "http/base.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------ fs rows */

typedef struct fs_row {
    const char *socket;
    const char *tag;
    int nq, qs;
    const char *want_err;   /* NULL: success */
    int want_nq, want_qs;
} fs_row;

static const fs_row fs_rows[] = {
    { "/tmp/x.sock", "share", 0, 0, NULL, 1, 1024 },
    { "/tmp/x.sock", "share", 4, 256, NULL, 4, 256 },
    { "", "share", 0, 0, "socket is required", 0, 0 },
    { NULL, "share", 0, 0, "socket is required", 0, 0 },
    { "rel.sock", "share", 0, 0, "socket must be absolute, got \"rel.sock\"", 0, 0 },
    { "/tmp/x.sock", "", 0, 0, "tag is required", 0, 0 },
    { "/tmp/x.sock", NULL, 0, 0, "tag is required", 0, 0 },
    { "/tmp/x.sock", "a/b", 0, 0,
      "tag \"a/b\" invalid: must match [A-Za-z0-9][A-Za-z0-9_-]{0,35}", 0, 0 },
    { "/tmp/x.sock", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0, 0,
      "tag \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" invalid: must match "
      "[A-Za-z0-9][A-Za-z0-9_-]{0,35}", 0, 0 },
    { "/tmp/x.sock", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0, 0, NULL, 1, 1024 },
    { "/tmp/x.sock", "A1_b-c", 0, 0, NULL, 1, 1024 },
    { "/tmp/x.sock", "_a", 0, 0,
      "tag \"_a\" invalid: must match [A-Za-z0-9][A-Za-z0-9_-]{0,35}", 0, 0 },
    { "/tmp/x.sock", "a.b", 0, 0,
      "tag \"a.b\" invalid: must match [A-Za-z0-9][A-Za-z0-9_-]{0,35}", 0, 0 },
    { "/tmp/x.sock", "share", -1, 0, "num-queues must be non-negative, got -1", 0, 0 },
    { "/tmp/x.sock", "share", 0, -1, "queue-size must be non-negative, got -1", 0, 0 },
    { "/tmp/x.sock", "share", 2, 0, NULL, 2, 1024 },
    { "/tmp/x.sock", "share", 0, 512, NULL, 1, 512 },
    /* Order: each earlier rule wins over every later one. */
    { "rel.sock", "", -1, -1, "socket must be absolute, got \"rel.sock\"", 0, 0 },
    { "/tmp/x.sock", "a/b", -1, -1,
      "tag \"a/b\" invalid: must match [A-Za-z0-9][A-Za-z0-9_-]{0,35}", 0, 0 },
    { "/tmp/x.sock", "share", -3, -1, "num-queues must be non-negative, got -3", 0, 0 },
    /* %q escaping of quotes and backslashes. */
    { "a\"b\\c", "share", 0, 0, "socket must be absolute, got \"a\\\"b\\\\c\"", 0, 0 },
    { "/tmp/x.sock", "t\"g", 0, 0,
      "tag \"t\\\"g\" invalid: must match [A-Za-z0-9][A-Za-z0-9_-]{0,35}", 0, 0 },
};

static void test_fs_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(fs_rows); i++) {
        const fs_row *r = &fs_rows[i];
        spec_fs s = { r->socket, r->tag, r->nq, r->qs };
        char err[BASE_ERRSTR_MAX] = "unset";
        int rc = spec_fs_normalize(&s, err, sizeof(err));
        if (r->want_err) {
            if (rc != -EINVAL || strcmp(err, r->want_err) != 0)
                print_error("row %zu: rc %d err '%s' want '%s'\n", i, rc, err, r->want_err);
            assert_int_equal(rc, -EINVAL);
            assert_string_equal(err, r->want_err);
            /* A rejected spec is left as passed. */
            assert_int_equal(s.num_queues, r->nq);
            assert_int_equal(s.queue_size, r->qs);
        } else {
            if (rc != 0)
                print_error("row %zu: rc %d err '%s'\n", i, rc, err);
            assert_int_equal(rc, 0);
            assert_int_equal(s.num_queues, r->want_nq);
            assert_int_equal(s.queue_size, r->want_qs);
            assert_ptr_equal(s.socket, r->socket);
            assert_ptr_equal(s.tag, r->tag);
        }
    }
}

static char *path_of_len(size_t n)
{
    char *p = malloc(n + 1);
    assert_non_null(p);
    memset(p, 'a', n);
    p[0] = '/';
    p[n] = '\0';
    return p;
}

static void test_fs_socket_length(void **state)
{
    char err[BASE_ERRSTR_MAX];
    (void)state;

    char *ok = path_of_len(107);
    spec_fs s = { ok, "share", 0, 0 };
    assert_int_equal(spec_fs_normalize(&s, err, sizeof(err)), 0);
    free(ok);

    char *too = path_of_len(108);
    spec_fs t = { too, "share", 0, 0 };
    assert_int_equal(spec_fs_normalize(&t, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "socket path too long (108 bytes, max 107)");
    assert_int_equal(t.num_queues, 0);
    free(too);

    char *big = path_of_len(4000);
    spec_fs u = { big, "share", 0, 0 };
    assert_int_equal(spec_fs_normalize(&u, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "socket path too long (4000 bytes, max 107)");
    /* Earlier rules come first even for a long path. */
    u.tag = "a/b";
    assert_int_equal(spec_fs_normalize(&u, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "tag \"a/b\" invalid: must match [A-Za-z0-9][A-Za-z0-9_-]{0,35}");
    u.tag = "share";
    u.num_queues = -1;
    assert_int_equal(spec_fs_normalize(&u, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "num-queues must be non-negative, got -1");
    free(big);
}

static void test_fs_null_err_buffer(void **state)
{
    spec_fs s = { "rel", "share", 0, 0 };
    (void)state;
    assert_int_equal(spec_fs_normalize(&s, NULL, 0), -EINVAL);
    assert_int_equal(spec_fs_normalize(NULL, NULL, 0), -EINVAL);
}

/* A very long relative socket quotes a bounded prefix, never overflows. */
static void test_fs_long_quote_bounded(void **state)
{
    char err[BASE_ERRSTR_MAX];
    char *p = malloc(5001);
    (void)state;
    assert_non_null(p);
    memset(p, '"', 5000);
    p[5000] = '\0';
    spec_fs s = { p, "share", 0, 0 };
    assert_int_equal(spec_fs_normalize(&s, err, sizeof(err)), -EINVAL);
    assert_true(strncmp(err, "socket must be absolute, got \"\\\"\\\"", 34) == 0);
    assert_true(strlen(err) < sizeof(err));
    assert_non_null(strstr(err, "...\""));
    free(p);
}

/* ------------------------------------------------------------ pci rows */

#define UNDER_MSG "invalid: absolute path must be under /sys/bus/pci/devices/"
#define SUFFIX_MSG "invalid: sysfs BDF suffix must match 0000:xx:yy.z"
#define BDF_MSG "invalid: expect BDF (01:00.0 / 0000:01:00.0) or sysfs path"

typedef struct pci_row {
    const char *in;
    const char *want;       /* output path, or NULL */
    const char *want_err;   /* full error text, or NULL */
} pci_row;

static const pci_row pci_rows[] = {
    /* Short and full BDFs, case, a trailing slash, cleaned sysfs paths */
    { "01:00.0", "/sys/bus/pci/devices/0000:01:00.0", NULL },
    { "0000:01:00.0", "/sys/bus/pci/devices/0000:01:00.0", NULL },
    { "00:1F.7", "/sys/bus/pci/devices/0000:00:1f.7", NULL },
    { "/sys/bus/pci/devices/0000:01:00.0/", "/sys/bus/pci/devices/0000:01:00.0", NULL },
    { "/sys/bus/pci/devices/0000:0A:00.0", "/sys/bus/pci/devices/0000:0a:00.0", NULL },
    { "/dev/null", NULL, "pci \"/dev/null\" " UNDER_MSG },
    { "/sys/bus/pci/devices/garbage", NULL, "pci \"/sys/bus/pci/devices/garbage\" " SUFFIX_MSG },
    { "/sys/bus/pci/devices/01:00.0", NULL, "pci \"/sys/bus/pci/devices/01:00.0\" " SUFFIX_MSG },
    { "", NULL, "empty pci path" },
    { "not-a-bdf", NULL, "pci \"not-a-bdf\" " BDF_MSG },
    { "01:00.8", NULL, "pci \"01:00.8\" " BDF_MSG },
    { "/sys/bus/pci/devices/../../../dev/null", NULL,
      "pci \"/sys/bus/pci/devices/../../../dev/null\" " UNDER_MSG },
    { "/sys/bus/pci/devices/0000:01:00.0/../0000:02:00.0",
      "/sys/bus/pci/devices/0000:02:00.0", NULL },
    /* trimming, case, the bare prefix */
    { "  01:00.0\n", "/sys/bus/pci/devices/0000:01:00.0", NULL },
    { " \t ", NULL, "empty pci path" },
    { "/sys/bus/pci/devices/", NULL, "pci \"/sys/bus/pci/devices/\" " UNDER_MSG },
    { "/sys/bus/pci/devices", NULL, "pci \"/sys/bus/pci/devices\" " UNDER_MSG },
    { "/sys/bus/pci/devices/.", NULL, "pci \"/sys/bus/pci/devices/.\" " UNDER_MSG },
    { "ABCD:EF:1F.0", "/sys/bus/pci/devices/abcd:ef:1f.0", NULL },
    { "0000:01:00", NULL, "pci \"0000:01:00\" " BDF_MSG },
    { "01:00.0 x", NULL, "pci \"01:00.0 x\" " BDF_MSG },
    { "0000:01:00.0/", NULL, "pci \"0000:01:00.0/\" " BDF_MSG },
    { "sys/bus/pci/devices/0000:01:00.0", NULL,
      "pci \"sys/bus/pci/devices/0000:01:00.0\" " BDF_MSG },
    { "0g:00.0", NULL, "pci \"0g:00.0\" " BDF_MSG },
    { "01-00.0", NULL, "pci \"01-00.0\" " BDF_MSG },
    /* traversal and cleaning */
    { "//sys//bus/pci/./devices///0000:01:00.0//", "/sys/bus/pci/devices/0000:01:00.0", NULL },
    { "/../../sys/bus/pci/devices/0000:01:00.1", "/sys/bus/pci/devices/0000:01:00.1", NULL },
    { "/sys/bus/pci/devices/x/../0000:03:00.2", "/sys/bus/pci/devices/0000:03:00.2", NULL },
    { "/sys/bus/pci/devices/0000:01:00.0/..", NULL,
      "pci \"/sys/bus/pci/devices/0000:01:00.0/..\" " UNDER_MSG },
    { "/sys/bus/pci/devices/0000:01:00.0/driver", NULL,
      "pci \"/sys/bus/pci/devices/0000:01:00.0/driver\" " SUFFIX_MSG },
    { "/sys/bus/pci/devices/../devices/0000:01:00.0", "/sys/bus/pci/devices/0000:01:00.0", NULL },
    { "/sys/bus/pci/devices/../../pci/devices/0000:01:00.0",
      "/sys/bus/pci/devices/0000:01:00.0", NULL },
    { "/sys/bus/pci/devicesX/0000:01:00.0", NULL,
      "pci \"/sys/bus/pci/devicesX/0000:01:00.0\" " UNDER_MSG },
    { "/sys/bus/pci/devices/...", NULL, "pci \"/sys/bus/pci/devices/...\" " SUFFIX_MSG },
    { "/sys/bus/pci/devices/0000:01:00.8", NULL,
      "pci \"/sys/bus/pci/devices/0000:01:00.8\" " SUFFIX_MSG },
    /* the error quotes the input as given, before trimming */
    { " /dev/null ", NULL, "pci \" /dev/null \" " UNDER_MSG },
};

static void check_pci_row(size_t i, const pci_row *r, int rc, const char *out, const char *err)
{
    if (r->want) {
        if (rc != 0 || strcmp(out, r->want) != 0)
            print_error("row %zu '%s': rc %d out '%s' err '%s'\n", i, r->in, rc, out, err);
        assert_int_equal(rc, 0);
        assert_string_equal(out, r->want);
    } else {
        if (rc != -EINVAL || strcmp(err, r->want_err) != 0)
            print_error("row %zu '%s': rc %d err '%s' want '%s'\n", i, r->in, rc, err,
                        r->want_err);
        assert_int_equal(rc, -EINVAL);
        assert_string_equal(err, r->want_err);
    }
}

static void test_pci_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(pci_rows); i++) {
        char out[SPEC_PCI_PATH_MAX] = "";
        char err[BASE_ERRSTR_MAX] = "";
        int rc = spec_pci_path(pci_rows[i].in, out, err, sizeof(err));
        check_pci_row(i, &pci_rows[i], rc, out, err);
    }
}

/* The same rows through spec_vfio_normalize with no id. */
static void test_vfio_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(pci_rows); i++) {
        const pci_row *r = &pci_rows[i];
        spec_vfio s = { r->in, NULL };
        char out[SPEC_PCI_PATH_MAX] = "";
        char err[BASE_ERRSTR_MAX] = "";
        int rc = spec_vfio_normalize(&s, out, err, sizeof(err));
        if (r->in[0] == '\0') {
            /* An empty pci is caught before path normalization. */
            assert_int_equal(rc, -EINVAL);
            assert_string_equal(err, "pci is required");
            continue;
        }
        check_pci_row(i, r, rc, out, err);
    }
}

#define ID_MSG "invalid: must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63} and not start with cocoon-"

typedef struct id_row {
    const char *pci;
    const char *id;
    const char *want_err;
} id_row;

static const id_row id_rows[] = {
    { "01:00.0", NULL, NULL },
    { "01:00.0", "", NULL },
    { "01:00.0", "gpu0", NULL },
    { "01:00.0", "My_gpu.0-a", NULL },
    { "01:00.0", "cocoon-gpu", "id \"cocoon-gpu\" " ID_MSG },
    { "01:00.0", "cocoon-", "id \"cocoon-\" " ID_MSG },
    { "01:00.0", "cocoon", NULL },
    { "01:00.0", "Cocoon-x", NULL },
    { "01:00.0", "_vfio0", "id \"_vfio0\" " ID_MSG },
    { "01:00.0", "-a", "id \"-a\" " ID_MSG },
    { "01:00.0", "a b", "id \"a b\" " ID_MSG },
    { "01:00.0", "a/b", "id \"a/b\" " ID_MSG },
    { "01:00.0",
      "a123456789012345678901234567890123456789012345678901234567890123", NULL },
    { "01:00.0",
      "a1234567890123456789012345678901234567890123456789012345678901234",
      "id \"a1234567890123456789012345678901234567890123456789012345678901234\" " ID_MSG },
    { "01:00.0", "q\"x", "id \"q\\\"x\" " ID_MSG },
    /* Order: pci is required, then id, then the path. */
    { "", "cocoon-x", "pci is required" },
    { NULL, "gpu", "pci is required" },
    { "not-a-bdf", "cocoon-x", "id \"cocoon-x\" " ID_MSG },
    { "not-a-bdf", "gpu", "pci \"not-a-bdf\" " BDF_MSG },
    { "   ", "gpu", "empty pci path" },
};

static void test_vfio_id_rule(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(id_rows); i++) {
        const id_row *r = &id_rows[i];
        spec_vfio s = { r->pci, r->id };
        char out[SPEC_PCI_PATH_MAX] = "";
        char err[BASE_ERRSTR_MAX] = "";
        int rc = spec_vfio_normalize(&s, out, err, sizeof(err));
        if (r->want_err) {
            if (rc != -EINVAL || strcmp(err, r->want_err) != 0)
                print_error("row %zu: rc %d err '%s' want '%s'\n", i, rc, err, r->want_err);
            assert_int_equal(rc, -EINVAL);
            assert_string_equal(err, r->want_err);
        } else {
            if (rc != 0)
                print_error("row %zu: rc %d err '%s'\n", i, rc, err);
            assert_int_equal(rc, 0);
            assert_string_equal(out, "/sys/bus/pci/devices/0000:01:00.0");
        }
    }
}

static void test_pci_long_input(void **state)
{
    char out[SPEC_PCI_PATH_MAX];
    char err[BASE_ERRSTR_MAX];
    size_t n = 100000;
    char *p = malloc(n + 1);
    (void)state;
    assert_non_null(p);
    /* /sys/bus/pci/devices/ followed by many "a/../" and then the BDF. */
    strcpy(p, "/sys/bus/pci/devices/");
    size_t o = strlen(p);
    while (o + 5 + 12 < n) {
        memcpy(p + o, "a/../", 5);
        o += 5;
    }
    strcpy(p + o, "0000:01:00.0");
    assert_int_equal(spec_pci_path(p, out, err, sizeof(err)), 0);
    assert_string_equal(out, "/sys/bus/pci/devices/0000:01:00.0");
    /* And a long garbage path is rejected with a bounded message. */
    memset(p, 'x', n);
    p[0] = '/';
    p[n] = '\0';
    assert_int_equal(spec_pci_path(p, out, err, sizeof(err)), -EINVAL);
    assert_true(strncmp(err, "pci \"/xxx", 9) == 0);
    assert_non_null(strstr(err, "\" " UNDER_MSG));
    free(p);
}

static void test_bdf_from_path(void **state)
{
    static const char dev[] = "/sys/bus/pci/devices/0000:01:00.0";
    (void)state;
    assert_string_equal(spec_bdf_from_path(dev), "0000:01:00.0");
    assert_ptr_equal(spec_bdf_from_path(dev), dev + strlen("/sys/bus/pci/devices/"));
    assert_null(spec_bdf_from_path("/dev/null"));
    assert_null(spec_bdf_from_path("/sys/bus/pci/devices"));
    assert_null(spec_bdf_from_path("/sys/bus/pci/devices/"));
    assert_null(spec_bdf_from_path("sys/bus/pci/devices/0000:01:00.0"));
    assert_null(spec_bdf_from_path("/sys/bus/pci/devicesX/0000:01:00.0"));
    assert_null(spec_bdf_from_path(""));
    assert_null(spec_bdf_from_path(NULL));
    /* Not validated: whatever follows the prefix is the BDF as CH stores it. */
    assert_string_equal(spec_bdf_from_path("/sys/bus/pci/devices/0000:0A:00.0/"),
                        "0000:0A:00.0/");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fs_rows),
        cmocka_unit_test(test_fs_socket_length),
        cmocka_unit_test(test_fs_null_err_buffer),
        cmocka_unit_test(test_fs_long_quote_bounded),
        cmocka_unit_test(test_pci_rows),
        cmocka_unit_test(test_vfio_rows),
        cmocka_unit_test(test_vfio_id_rule),
        cmocka_unit_test(test_pci_long_input),
        cmocka_unit_test(test_bdf_from_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
