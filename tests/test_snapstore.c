/* tests/test_snapstore.c: snapshot records: JSON round trip with the
 * source VM's config (shared_memory included), refusal of damaged
 * documents, the ref rules, updates under the lock, and removal of a data
 * dir that never reaches a file outside it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/snapstore.h"
#include "http/base.h"
#include "tests/support/support.h"

static void make_rec(snapstore_rec *r, const char *name, bool shared)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(store_new_id(r->id), 0);
    r->name = strdup(name);
    r->created_at = strdup("2026-12-01T08:00:00Z");
    r->dir = strdup("/var/lib/cocoon/snapshots/data/x");
    assert_int_equal(store_new_id(r->source.id), 0);
    r->source.backend = STORE_BACKEND_CH;
    r->source.state = STORE_RUNNING;
    r->source.config.name = strdup("web");
    r->source.config.cpu = 2;
    r->source.config.memory = 1u << 30;
    r->source.config.shared_memory = shared;
    r->source.config.kernel = strdup("/img/vmlinux");
}

static void test_roundtrip(void **state)
{
    (void)state;
    char err[BASE_ERRSTR_MAX];
    snapstore_db db = { 0 }, back;
    snapstore_rec r;

    make_rec(&r, "before-upgrade", true);
    assert_int_equal(snapstore_add(&db, &r, err, sizeof err), 0);
    assert_null(r.name);
    make_rec(&r, "plain", false);
    r.source.backend = STORE_BACKEND_FC;
    assert_int_equal(snapstore_add(&db, &r, err, sizeof err), 0);

    char *out;
    size_t len;
    assert_int_equal(snapstore_serialize(&db, &out, &len, err, sizeof err), 0);
    assert_int_equal(snapstore_parse(out, len, &back, err, sizeof err), 0);
    assert_int_equal(back.n, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(back.recs[i].id, db.recs[i].id);
        assert_string_equal(back.recs[i].name, db.recs[i].name);
        assert_string_equal(back.recs[i].dir, db.recs[i].dir);
        assert_string_equal(back.recs[i].source.id, db.recs[i].source.id);
        assert_string_equal(back.recs[i].source.backend, db.recs[i].source.backend);
        assert_int_equal(back.recs[i].source.config.memory, 1u << 30);
    }
    assert_true(back.recs[0].source.config.shared_memory);
    assert_false(back.recs[1].source.config.shared_memory);
    assert_non_null(strstr(out, "\"shared_memory\": true"));
    free(out);
    snapstore_db_fini(&back);
    snapstore_db_fini(&db);
    snapstore_db_fini(NULL);
}

#define ID1 "AAAAAAAAAAAAAAAAAAAAAAAAAA"
#define ID2 "BBBBBBBBBBBBBBBBBBBBBBBBBB"
#define SRC "\"source\":{\"id\":\"" ID2 "\",\"hypervisor\":\"cloud-hypervisor\"," \
            "\"state\":\"running\"}"
#define REC(key, id, name) "\"" key "\":{\"id\":\"" id "\",\"name\":\"" name "\"," \
                           "\"created_at\":\"t\",\"dir\":\"/d\"," SRC "}"

static void test_parse_rejects(void **state)
{
    (void)state;
    static const struct {
        const char *doc;
        const char *text;
    } cases[] = {
        { "[]", "\"snapshots\" missing" },
        { "{\"snapshots\":{\"" ID1 "\":{\"id\":\"" ID1 "\",\"name\":\"a\",\"dir\":\"/d\","
          SRC "}}}", "created_at missing" },
        { "{\"snapshots\":{\"" ID1 "\":{\"id\":\"" ID1 "\",\"name\":\"a\",\"created_at\":"
          "\"t\",\"dir\":\"/d\"}}}", "source missing" },
        { "{\"snapshots\":{" REC(ID1, ID2, "a") "}}", "id does not match" },
        { "{\"snapshots\":{" REC(ID1, ID1, "-bad") "}}", "invalid name" },
        { "{\"snapshots\":{" REC(ID1, ID1, "a") "," REC(ID2, ID2, "a") "}}",
          "two snapshots named \"a\"" },
        { "{\"snapshots\":{" REC(ID1, ID1, "a") "," REC(ID1, ID1, "b") "}}",
          "duplicate snapshot id" },
        { "{/**/}", "unexpected '/'" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[BASE_ERRSTR_MAX] = "";
        snapstore_db db;
        assert_int_equal(snapstore_parse(cases[i].doc, strlen(cases[i].doc), &db, err,
                                         sizeof err), -EBADMSG);
        if (!strstr(err, cases[i].text))
            fail_msg("case %zu: %s", i, err);
        assert_int_equal(db.n, 0);
    }
}

static void test_resolve_and_names(void **state)
{
    (void)state;
    char err[BASE_ERRSTR_MAX];
    snapstore_db db = { 0 };
    snapstore_rec r;
    const snapstore_rec *hit;

    make_rec(&r, "one", false);
    memcpy(r.id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", STORE_ID_LEN);
    assert_int_equal(snapstore_add(&db, &r, err, sizeof err), 0);
    make_rec(&r, "two", false);
    memcpy(r.id, "ABCZZZZZZZZZZZZZZZZZZZZZZZ", STORE_ID_LEN);
    assert_int_equal(snapstore_add(&db, &r, err, sizeof err), 0);
    make_rec(&r, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", false);
    assert_int_equal(snapstore_add(&db, &r, err, sizeof err), 0);
    make_rec(&r, "one", false);
    assert_int_equal(snapstore_add(&db, &r, err, sizeof err), -EEXIST);
    assert_string_equal(err, "snapshot name \"one\" already in use");
    snapstore_rec_fini(&r);

    /* An exact id wins over a name equal to it. */
    assert_int_equal(snapstore_resolve(&db, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", &hit, err, sizeof err), 0);
    assert_string_equal(hit->name, "one");
    assert_int_equal(snapstore_resolve(&db, "two", &hit, err, sizeof err), 0);
    assert_string_equal(hit->id, "ABCZZZZZZZZZZZZZZZZZZZZZZZ");
    assert_int_equal(snapstore_resolve(&db, "ABCD", &hit, err, sizeof err), 0);
    assert_string_equal(hit->name, "one");
    assert_int_equal(snapstore_resolve(&db, "ABC", &hit, err, sizeof err), -EINVAL);
    assert_string_equal(err, "ambiguous ref \"ABC\": multiple matches");
    assert_int_equal(snapstore_resolve(&db, "AB", &hit, err, sizeof err), -ENOENT);
    assert_string_equal(err, "snapshot not found");
    assert_null(hit);
    assert_int_equal(snapstore_resolve(&db, "", &hit, err, sizeof err), -ENOENT);
    assert_int_equal(snapstore_remove(&db, "ABCZZZZZZZZZZZZZZZZZZZZZZZ", &r), 0);
    assert_string_equal(r.name, "two");
    snapstore_rec_fini(&r);
    assert_int_equal(snapstore_remove(&db, "ABCZZZZZZZZZZZZZZZZZZZZZZZ", NULL), -ENOENT);
    assert_int_equal(snapstore_resolve(&db, "ABC", &hit, err, sizeof err), 0);
    snapstore_db_fini(&db);
}

static int add_cb(snapstore_db *db, void *priv, char *err, size_t errlen)
{
    return snapstore_add(db, priv, err, errlen);
}

static void test_update_load_files(void **state)
{
    (void)state;
    char err[BASE_ERRSTR_MAX];
    char *root = sup_tmpdir();
    snapstore_db db;
    snapstore_rec r;

    /* Nothing saved yet: empty, and a load creates nothing. */
    assert_int_equal(snapstore_load(root, &db, err, sizeof err), 0);
    assert_int_equal(db.n, 0);
    char *dbdir = sup_asprintf("%s/snapshots/db", root);
    struct stat st;
    assert_int_equal(stat(dbdir, &st), -1);

    make_rec(&r, "s1", true);
    char id[STORE_ID_LEN + 1];
    memcpy(id, r.id, sizeof id);
    assert_int_equal(snapstore_update(root, add_cb, &r, err, sizeof err), 0);
    snapstore_rec_fini(&r);
    assert_int_equal(stat(dbdir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(snapstore_load(root, &db, err, sizeof err), 0);
    assert_int_equal(db.n, 1);
    assert_true(db.recs[0].source.config.shared_memory);
    snapstore_db_fini(&db);

    /* A damaged file is refused by name and left as it is. */
    char *file = sup_asprintf("%s/snapshots.json", dbdir);
    int fd = open(file, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{\"snap", 6), 6);
    close(fd);
    make_rec(&r, "s2", false);
    assert_int_equal(snapstore_update(root, add_cb, &r, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, file));
    snapstore_rec_fini(&r);
    assert_int_equal(snapstore_load(root, &db, err, sizeof err), -EBADMSG);

    /* Data dirs: private, created once. */
    assert_int_equal(snapstore_data_create(root, id, err, sizeof err), 0);
    char *data = snapstore_data_dir(root, id);
    assert_int_equal(stat(data, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(snapstore_data_create(root, id, err, sizeof err), -EEXIST);
    assert_null(snapstore_data_dir(root, "../x"));
    assert_int_equal(snapstore_data_create(root, "../../etc", err, sizeof err), -EINVAL);
    free(data);
    free(file);
    free(dbdir);
    sup_rmrf(root);
    free(root);
}

/* The data dir holds links to a VM's files (a disk, its run dir): removal
 * takes the links, never what they point at. */
static void test_data_remove_stays_inside(void **state)
{
    (void)state;
    char err[BASE_ERRSTR_MAX];
    char *root = sup_tmpdir(), id[STORE_ID_LEN + 1];

    assert_int_equal(store_new_id(id), 0);
    assert_int_equal(snapstore_data_create(root, id, err, sizeof err), 0);
    char *data = snapstore_data_dir(root, id);
    char *vmdir = sup_asprintf("%s/vm", root), *disk = sup_asprintf("%s/vm/disk.raw", root);
    assert_int_equal(mkdir(vmdir, 0700), 0);
    int fd = open(disk, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    char *p = sup_asprintf("%s/memory-ranges", data);
    fd = open(p, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    free(p);
    p = sup_asprintf("%s/sub", data);
    assert_int_equal(mkdir(p, 0700), 0);
    free(p);
    p = sup_asprintf("%s/sub/disk-link", data);
    assert_int_equal(symlink(disk, p), 0);
    free(p);
    p = sup_asprintf("%s/run-link", data);
    assert_int_equal(symlink(vmdir, p), 0);
    free(p);

    assert_int_equal(snapstore_data_remove(root, id, err, sizeof err), 0);
    struct stat st;
    assert_int_equal(lstat(data, &st), -1);
    assert_int_equal(stat(disk, &st), 0);
    assert_int_equal(stat(vmdir, &st), 0);
    /* Already gone: nothing to do. */
    assert_int_equal(snapstore_data_remove(root, id, err, sizeof err), 0);

    /* A data dir that is itself a symlink is unlinked, not followed. */
    assert_int_equal(symlink(vmdir, data), 0);
    assert_int_equal(snapstore_data_remove(root, id, err, sizeof err), 0);
    assert_int_equal(lstat(data, &st), -1);
    assert_int_equal(stat(disk, &st), 0);
    assert_int_equal(snapstore_data_remove(root, "nope", err, sizeof err), -EINVAL);
    free(data);
    free(vmdir);
    free(disk);
    sup_rmrf(root);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_resolve_and_names),
        cmocka_unit_test(test_update_load_files),
        cmocka_unit_test(test_data_remove_stays_inside),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
