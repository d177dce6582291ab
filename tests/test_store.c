/* tests/test_store.c: the VM store and the two modules it is built on
 * (backends/vmsjson, backends/safefile): JSON round trip, corruption
 * handling, ref resolution, locking under concurrent writers, directory
 * and pidfile modes, symlink refusal and exact error texts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/store.h"
#include "backends/safefile.h"
#include "backends/vmsjson.h"
#include "http/base.h"
#include "tests/support/support.h"

static void write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    return st.st_mode & 07777;
}

static void make_vm(store_vm *vm, const char *name, store_state state)
{
    memset(vm, 0, sizeof *vm);
    assert_int_equal(store_new_id(vm->id), 0);
    vm->state = state;
    vm->config.name = name ? strdup(name) : NULL;
    vm->config.cpu = 1;
    vm->config.memory = 256ull << 20;
}

/* An update callback that adds one record with a fixed id and name. */
struct add_req {
    const char *id;
    const char *name;
    store_state state;
    const char *run_dir;
};

static int add_cb(store_db *db, void *priv, char *err, size_t errlen)
{
    struct add_req *r = priv;
    store_vm vm;
    make_vm(&vm, r->name, r->state);
    if (r->id)
        memcpy(vm.id, r->id, STORE_ID_LEN + 1);
    vm.run_dir = r->run_dir ? strdup(r->run_dir) : NULL;
    if ((r->name && !vm.config.name) || (r->run_dir && !vm.run_dir)) {
        store_vm_fini(&vm);
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    }
    int rc = store_db_add(db, &vm, err, errlen);
    store_vm_fini(&vm);
    return rc;
}

static void add_vm(const char *root, const char *backend, const char *id, const char *name)
{
    char err[BASE_ERRSTR_MAX] = "";
    struct add_req r = { id, name, STORE_CREATED, NULL };
    int rc = store_update(root, backend, add_cb, &r, err, sizeof err);
    if (rc)
        fail_msg("store_update: %d %s", rc, err);
}

/* ---- identity --------------------------------------------------------- */

static void test_id_alphabet_and_length(void **state)
{
    (void)state;
    char seen[256] = { 0 };
    char first[STORE_ID_LEN + 1];
    assert_int_equal(store_new_id(first), 0);
    bool differs = false;
    for (int i = 0; i < 2000; i++) {
        char id[STORE_ID_LEN + 2];
        memset(id, 'x', sizeof id);
        assert_int_equal(store_new_id(id), 0);
        assert_int_equal(strlen(id), STORE_ID_LEN);
        assert_true(store_id_valid(id));
        for (size_t j = 0; j < STORE_ID_LEN; j++) {
            unsigned char c = (unsigned char)id[j];
            assert_true((c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7'));
            seen[c] = 1;
        }
        if (strcmp(id, first) != 0)
            differs = true;
    }
    assert_true(differs);
    /* 52000 draws over 32 symbols: every symbol shows up. */
    int distinct = 0;
    for (int c = 0; c < 256; c++)
        distinct += seen[c];
    assert_int_equal(distinct, 32);
    assert_false(store_id_valid("ABC"));
    assert_false(store_id_valid("AAAAAAAAAAAAAAAAAAAAAAAAA1"));
    assert_false(store_id_valid("aAAAAAAAAAAAAAAAAAAAAAAAAA"));
    assert_true(store_id_valid("AAAAAAAAAAAAAAAAAAAAAAAAA7"));
}

static void test_name_validation_table(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        bool ok;
    } rows[] = {
        { "a", true },
        { "web-1", true },
        { "Web_1.prod", true },
        { "0", true },
        { "9abc", true },
        { "a.b-c_d", true },
        { "", false },
        { "-a", false },
        { ".a", false },
        { "_a", false },
        { "a b", false },
        { "a/b", false },
        { "a:b", false },
        { "a\nb", false },
        { "caf\xc3\xa9", false },
        { "a+b", false },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (store_name_valid(rows[i].name) != rows[i].ok)
            fail_msg("name %s: expected %d", rows[i].name, rows[i].ok);
    }
    char name[80];
    memset(name, 'a', sizeof name);
    name[63] = '\0';
    assert_true(store_name_valid(name)); /* 63 chars: 1 + 62 */
    name[63] = 'a';
    name[64] = '\0';
    assert_false(store_name_valid(name)); /* 64 chars */
    assert_false(store_name_valid(NULL));
}

static void test_state_and_hypervisor_names(void **state)
{
    (void)state;
    static const char *const names[] = { "creating", "created", "running", "stopped", "error" };
    for (int i = 0; i < 5; i++) {
        store_state s;
        assert_string_equal(store_state_name((store_state)i), names[i]);
        assert_int_equal(store_state_parse(names[i], &s), 0);
        assert_int_equal(s, i);
    }
    store_state s;
    assert_int_equal(store_state_parse("Running", &s), -EINVAL);
    assert_int_equal(store_state_parse("", &s), -EINVAL);
    assert_string_equal(store_hypervisor_name(STORE_BACKEND_CH), "cloud-hypervisor");
    assert_string_equal(store_hypervisor_name(STORE_BACKEND_FC), "firecracker");
    assert_null(store_hypervisor_name("qemu"));
}

static void test_root_and_now(void **state)
{
    (void)state;
    setenv("COCOON_ROOT_DIR", "/tmp/env-root", 1);
    assert_string_equal(store_root("/x"), "/x");
    assert_string_equal(store_root(NULL), "/tmp/env-root");
    unsetenv("COCOON_ROOT_DIR");
    assert_string_equal(store_root(NULL), "/var/lib/cocoon");
    char *rd = store_default_run_dir("/r", STORE_BACKEND_CH, "ABC");
    assert_string_equal(rd, "/r/run/cloudhypervisor/ABC");
    free(rd);
    char *now = store_now();
    assert_non_null(now);
    assert_int_equal(strlen(now), 20);
    assert_int_equal(now[4], '-');
    assert_int_equal(now[10], 'T');
    assert_int_equal(now[19], 'Z');
    free(now);
}

/* ---- JSON ------------------------------------------------------------- */

static void fill_full(store_vm *vm)
{
    memset(vm, 0, sizeof *vm);
    memcpy(vm->id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", STORE_ID_LEN + 1);
    vm->backend = STORE_BACKEND_CH;
    vm->state = STORE_RUNNING;
    vm->config.name = strdup("web-1");
    vm->config.cpu = 4;
    vm->config.memory = 8589934592ull;
    vm->config.shared_memory = true;
    vm->config.kernel = strdup("/boot/vmlinux");
    vm->config.initramfs = strdup("/boot/initrd \"q\" \\ \xc3\xa9");
    vm->config.cmdline = strdup("console=ttyS0 root=/dev/vda\n");
    vm->config.n_disks = 2;
    vm->config.disks = calloc(2, sizeof(char *));
    vm->config.disks[0] = strdup("/img/a.raw");
    vm->config.disks[1] = strdup("/img/b.raw");
    vm->run_dir = strdup("/run/cocoon/x");
    vm->log_dir = strdup("/var/log/cocoon/x");
    vm->binary = strdup("/usr/bin/cloud-hypervisor");
    vm->created_at = strdup("2024-01-02T03:04:05Z");
    vm->updated_at = strdup("2024-01-02T03:04:06Z");
    vm->started_at = strdup("2024-01-02T03:04:07Z");
}

static void assert_vm_equal(const store_vm *a, const store_vm *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->backend, b->backend);
    assert_int_equal(a->state, b->state);
    assert_string_equal(a->config.name, b->config.name);
    assert_int_equal(a->config.cpu, b->config.cpu);
    assert_true(a->config.memory == b->config.memory);
    assert_int_equal(a->config.shared_memory, b->config.shared_memory);
    assert_string_equal(a->config.kernel, b->config.kernel);
    assert_string_equal(a->config.initramfs, b->config.initramfs);
    assert_string_equal(a->config.cmdline, b->config.cmdline);
    assert_int_equal(a->config.n_disks, b->config.n_disks);
    for (size_t i = 0; i < a->config.n_disks; i++)
        assert_string_equal(a->config.disks[i], b->config.disks[i]);
    assert_string_equal(a->run_dir, b->run_dir);
    assert_string_equal(a->log_dir, b->log_dir);
    assert_string_equal(a->binary, b->binary);
    assert_string_equal(a->created_at, b->created_at);
    assert_string_equal(a->updated_at, b->updated_at);
    assert_string_equal(a->started_at, b->started_at);
}

static void test_roundtrip_full_record(void **state)
{
    (void)state;
    char err[BASE_ERRSTR_MAX] = "";
    store_db db = { .backend = STORE_BACKEND_CH };
    store_vm vm, copy;
    fill_full(&vm);
    assert_int_equal(store_vm_copy(&copy, &vm), 0);
    assert_int_equal(store_db_add(&db, &vm, err, sizeof err), 0);
    assert_null(vm.config.name); /* ownership moved */

    char *json = NULL;
    size_t len = 0;
    assert_int_equal(vmsjson_serialize(&db, &json, &len, err, sizeof err), 0);
    assert_int_equal(strlen(json), len);
    assert_non_null(strstr(json, "\"hypervisor\": \"cloud-hypervisor\""));
    assert_non_null(strstr(json, "\"state\": \"running\""));
    assert_non_null(strstr(json, "\"memory\": 8589934592"));
    assert_non_null(strstr(json, "\"shared_memory\": true"));
    assert_non_null(strstr(json, "\"names\""));

    store_db back;
    int rc = vmsjson_parse(json, len, STORE_BACKEND_CH, &back, err, sizeof err);
    if (rc)
        fail_msg("parse: %s\n%s", err, json);
    assert_int_equal(back.n, 1);
    assert_vm_equal(&back.vms[0], &copy);
    assert_ptr_equal(store_db_find_name(&back, "web-1"), &back.vms[0]);
    assert_ptr_equal(store_db_find(&back, copy.id), &back.vms[0]);

    /* Serializing the parsed db gives the same bytes. */
    char *json2 = NULL;
    size_t len2 = 0;
    assert_int_equal(vmsjson_serialize(&back, &json2, &len2, err, sizeof err), 0);
    assert_int_equal(len, len2);
    assert_string_equal(json, json2);

    /* shared_memory false and NULL strings are omitted, not written. */
    free(back.vms[0].config.kernel);
    back.vms[0].config.kernel = NULL;
    free(back.vms[0].started_at);
    back.vms[0].started_at = NULL;
    back.vms[0].config.shared_memory = false;
    char *json3 = NULL;
    assert_int_equal(vmsjson_serialize(&back, &json3, NULL, err, sizeof err), 0);
    assert_null(strstr(json3, "shared_memory"));
    assert_null(strstr(json3, "kernel"));
    assert_null(strstr(json3, "started_at"));
    assert_null(strstr(json3, "null"));

    free(json);
    free(json2);
    free(json3);
    store_vm_fini(&copy);
    store_db_fini(&back);
    store_db_fini(&db);
}

static void test_parse_ignores_unknown_keys(void **state)
{
    (void)state;
    static const char doc[] =
        "{\"vms\":{\"AAAAAAAAAAAAAAAAAAAAAAAAAA\":{\"id\":\"AAAAAAAAAAAAAAAAAAAAAAAAAA\","
        "\"state\":\"stopped\",\"future\":{\"x\":[1,2,{\"y\":null}]},"
        "\"config\":{\"name\":\"a\",\"cpu\":2,\"memory\":1024,\"balloon\":true,"
        "\"disks\":[\"/d\"]},\"run_dir\":null}},"
        "\"names\":{\"a\":\"AAAAAAAAAAAAAAAAAAAAAAAAAA\"},\"version\":3}";
    char err[BASE_ERRSTR_MAX] = "";
    store_db db;
    int rc = vmsjson_parse(doc, strlen(doc), STORE_BACKEND_FC, &db, err, sizeof err);
    if (rc)
        fail_msg("parse: %s", err);
    assert_int_equal(db.n, 1);
    assert_string_equal(db.vms[0].backend, STORE_BACKEND_FC);
    assert_int_equal(db.vms[0].state, STORE_STOPPED);
    assert_int_equal(db.vms[0].config.cpu, 2);
    assert_int_equal(db.vms[0].config.n_disks, 1);
    assert_null(db.vms[0].run_dir);
    assert_false(db.vms[0].config.shared_memory);
    store_db_fini(&db);
}

static void test_parse_rejects_bad_documents(void **state)
{
    (void)state;
#define ID "AAAAAAAAAAAAAAAAAAAAAAAAAA"
#define ID2 "BBBBBBBBBBBBBBBBBBBBBBBBBB"
#define REC(id, name) "\"" id "\":{\"id\":\"" id "\",\"state\":\"created\",\"config\":{\"name\":\"" name "\"}}"
    static const struct {
        const char *doc;
        const char *detail;
    } rows[] = {
        { "", "invalid JSON" },
        { "{\"vms\":{", "invalid JSON" },
        { "{\"vms\":{" REC(ID, "a") "},\"names\":{\"a\":\"" ID "\"}", "invalid JSON" },
        { "[]", "top level is not an object" },
        { "null", "top level is not an object" },
        { "{}", "\"vms\" missing" },
        { "{\"vms\":[],\"names\":{}}", "\"vms\" missing" },
        { "{\"vms\":{}}", "\"names\" missing" },
        { "{\"vms\":{}, \"names\":{}} /* c */", "unexpected '/'" },
        { "{\"vms\":{\"x\":{}},\"names\":{}}", "not a VM id" },
        { "{\"vms\":{\"" ID "\":[]},\"names\":{}}", "record is not an object" },
        { "{\"vms\":{\"" ID "\":{\"id\":\"" ID2 "\",\"state\":\"created\"}},\"names\":{}}",
          "id does not match" },
        { "{\"vms\":{\"" ID "\":{\"id\":\"" ID "\",\"state\":\"bogus\"}},\"names\":{}}",
          "unknown state" },
        { "{\"vms\":{\"" ID "\":{\"id\":\"" ID "\"}},\"names\":{}}", "unknown state" },
        { "{\"vms\":{\"" ID "\":{\"id\":\"" ID "\",\"state\":\"created\","
          "\"hypervisor\":\"firecracker\"}},\"names\":{}}", "hypervisor is not" },
        { "{\"vms\":{\"" ID "\":{\"id\":\"" ID "\",\"state\":\"created\","
          "\"config\":{\"cpu\":\"2\"}}},\"names\":{}}", "cpu" },
        { "{\"vms\":{\"" ID "\":{\"id\":\"" ID "\",\"state\":\"created\","
          "\"config\":{\"memory\":-1}}},\"names\":{}}", "memory" },
        { "{\"vms\":{\"" ID "\":{\"id\":\"" ID "\",\"state\":\"created\","
          "\"config\":{\"memory\":1.5}}},\"names\":{}}", "memory" },
        { "{\"vms\":{\"" ID "\":{\"id\":\"" ID "\",\"state\":\"created\","
          "\"config\":{\"disks\":[1]}}},\"names\":{}}", "disks[0]" },
        { "{\"vms\":{\"" ID "\":{\"id\":\"" ID "\",\"state\":\"created\","
          "\"run_dir\":5}},\"names\":{}}", "run_dir is not a string" },
        /* names map inconsistent with the records */
        { "{\"vms\":{" REC(ID, "a") "},\"names\":{}}", "names map has 0 entries" },
        { "{\"vms\":{" REC(ID, "a") "},\"names\":{\"a\":\"" ID2 "\"}}", "names map does not match" },
        { "{\"vms\":{" REC(ID, "a") "},\"names\":{\"b\":\"" ID "\"}}", "names map does not match" },
        { "{\"vms\":{},\"names\":{\"a\":\"" ID "\"}}", "names map has 1 entries" },
        { "{\"vms\":{" REC(ID, "a") "," REC(ID2, "a") "},\"names\":{\"a\":\"" ID "\",\"a\":\"" ID2 "\"}}",
          "names map does not match" },
        { "{\"vms\":{" REC(ID, "a") "," REC(ID, "a") "},\"names\":{\"a\":\"" ID "\"}}",
          "duplicate VM id" },
        { "{\"vms\":{" REC(ID, "a") "},\"names\":{\"a\":1}}", "not a string" },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char err[BASE_ERRSTR_MAX] = "";
        store_db db;
        int rc = vmsjson_parse(rows[i].doc, strlen(rows[i].doc), STORE_BACKEND_CH, &db, err,
                               sizeof err);
        if (rc != -EBADMSG || !strstr(err, rows[i].detail))
            fail_msg("row %zu: rc %d err %s (want %s)", i, rc, err, rows[i].detail);
        assert_int_equal(db.n, 0);
        assert_null(db.vms);
    }
    /* Embedded NUL and deep nesting are rejected before yajl sees them. */
    char err[BASE_ERRSTR_MAX];
    store_db db;
    assert_int_equal(vmsjson_parse("{\"vms\":{}\0}", 11, STORE_BACKEND_CH, &db, err, sizeof err),
                     -EBADMSG);
    char deep[400];
    memset(deep, '[', sizeof deep);
    assert_int_equal(vmsjson_parse(deep, sizeof deep, STORE_BACKEND_CH, &db, err, sizeof err),
                     -EBADMSG);
    assert_non_null(strstr(err, "nesting"));
    assert_int_equal(vmsjson_parse("{}", 2, "qemu", &db, err, sizeof err), -EINVAL);
#undef REC
#undef ID
#undef ID2
}

static void test_serialize_rejects_bad_utf8(void **state)
{
    (void)state;
    char err[BASE_ERRSTR_MAX] = "";
    store_db db = { .backend = STORE_BACKEND_CH };
    store_vm vm;
    make_vm(&vm, "a", STORE_CREATED);
    vm.config.cmdline = strdup("bad \xff\xfe");
    assert_int_equal(store_db_add(&db, &vm, err, sizeof err), 0);
    char *out = (char *)1;
    assert_int_equal(vmsjson_serialize(&db, &out, NULL, err, sizeof err), -EINVAL);
    assert_null(out);
    assert_non_null(strstr(err, "UTF-8"));
    store_db_fini(&db);
}

static void test_db_add_remove(void **state)
{
    (void)state;
    char err[BASE_ERRSTR_MAX] = "";
    store_db db = { .backend = STORE_BACKEND_FC };
    store_vm a, b, c;
    make_vm(&a, "web", STORE_CREATED);
    make_vm(&b, "web", STORE_CREATED);
    make_vm(&c, "bad name", STORE_CREATED);
    char id_a[STORE_ID_LEN + 1];
    memcpy(id_a, a.id, sizeof id_a);
    assert_int_equal(store_db_add(&db, &a, err, sizeof err), 0);
    assert_string_equal(db.vms[0].backend, STORE_BACKEND_FC);
    assert_int_equal(store_db_add(&db, &b, err, sizeof err), -EEXIST);
    assert_string_equal(err, "name \"web\" already in use");
    assert_int_equal(store_db_add(&db, &c, err, sizeof err), -EINVAL);
    assert_int_equal(db.n, 1);
    assert_int_equal(store_db_remove(&db, "NOPE"), -ENOENT);
    assert_int_equal(store_db_remove(&db, id_a), 0);
    assert_int_equal(db.n, 0);
    store_vm_fini(&b);
    store_vm_fini(&c);
    store_db_fini(&db);
}

/* ---- files ------------------------------------------------------------ */

static void test_update_load_and_modes(void **state)
{
    (void)state;
    char *root = sup_tmpdir();
    char err[BASE_ERRSTR_MAX] = "";
    store_db db;
    /* A fresh root loads as empty and is not created by the read. */
    assert_int_equal(store_load(root, STORE_BACKEND_CH, &db, err, sizeof err), 0);
    assert_int_equal(db.n, 0);
    char *dbdir = sup_asprintf("%s/cloudhypervisor/db", root);
    struct stat st;
    assert_int_equal(stat(dbdir, &st), -1);

    mode_t old = umask(0);
    add_vm(root, STORE_BACKEND_CH, NULL, "one");
    umask(old);
    add_vm(root, STORE_BACKEND_CH, NULL, "two");
    char *file = sup_asprintf("%s/vms.json", dbdir);
    assert_int_equal(mode_of(dbdir), 0700);
    assert_int_equal(mode_of(file), 0600);
    assert_int_equal(store_load(root, STORE_BACKEND_CH, &db, err, sizeof err), 0);
    assert_int_equal(db.n, 2);
    assert_non_null(store_db_find_name(&db, "one"));
    assert_non_null(store_db_find_name(&db, "two"));
    assert_string_equal(db.backend, STORE_BACKEND_CH);
    store_db_fini(&db);

    /* A failing callback writes nothing and passes its error through. */
    struct add_req dup = { NULL, "one", STORE_CREATED, NULL };
    char *before = read_file(file);
    assert_int_equal(store_update(root, STORE_BACKEND_CH, add_cb, &dup, err, sizeof err),
                     -EEXIST);
    assert_string_equal(err, "name \"one\" already in use");
    char *after = read_file(file);
    assert_string_equal(before, after);

    assert_int_equal(store_name_taken(root, "one", err, sizeof err), -EEXIST);
    assert_string_equal(err, "name \"one\" already in use");
    assert_int_equal(store_name_taken(root, "three", err, sizeof err), 0);

    free(before);
    free(after);
    free(file);
    free(dbdir);
    sup_rmrf(root);
    free(root);
}

static int never_cb(store_db *db, void *priv, char *err, size_t errlen)
{
    (void)db;
    (void)err;
    (void)errlen;
    (*(int *)priv)++;
    return 0;
}

static void test_corrupt_file_refused(void **state)
{
    (void)state;
    char *root = sup_tmpdir();
    char err[BASE_ERRSTR_MAX] = "";
    add_vm(root, STORE_BACKEND_CH, NULL, "keep");
    char *file = sup_asprintf("%s/cloudhypervisor/db/vms.json", root);
    char *full = read_file(file);
    size_t full_len = strlen(full);
    /* yajl's pretty printer ends with a newline, which is not content. */
    while (full_len && full[full_len - 1] == '\n')
        full_len--;
    /* Every truncation point of a real file is an error, never an empty db. */
    for (size_t cut = 0; cut < full_len; cut++) {
        write_file(file, full, cut);
        store_db db;
        int rc = store_load(root, STORE_BACKEND_CH, &db, err, sizeof err);
        if (rc != -EBADMSG)
            fail_msg("cut %zu: rc %d", cut, rc);
        char *want = sup_asprintf("%s: ", file);
        assert_memory_equal(err, want, strlen(want));
        free(want);
        assert_int_equal(db.n, 0);
    }
    /* store_update refuses to write over it and never calls fn. */
    write_file(file, full, full_len / 2);
    int calls = 0;
    assert_int_equal(store_update(root, STORE_BACKEND_CH, never_cb, &calls, err, sizeof err),
                     -EBADMSG);
    assert_int_equal(calls, 0);
    assert_non_null(strstr(err, file));
    char *now = read_file(file);
    assert_int_equal(strlen(now), full_len / 2);
    assert_memory_equal(now, full, full_len / 2);
    /* The resolver surfaces the corruption rather than "VM not found". */
    store_vm vm;
    assert_int_equal(store_resolve(root, "keep", &vm, err, sizeof err), -EBADMSG);
    free(now);
    free(full);
    free(file);
    sup_rmrf(root);
    free(root);
}

static void test_leftover_temp_file(void **state)
{
    (void)state;
    char *root = sup_tmpdir();
    char err[BASE_ERRSTR_MAX] = "";
    add_vm(root, STORE_BACKEND_FC, NULL, "a");
    char *tmp = sup_asprintf("%s/firecracker/db/.vms.json.tmp.DEADBEEF", root);
    write_file(tmp, "{\"vms\":{", 8);
    store_db db;
    assert_int_equal(store_load(root, STORE_BACKEND_FC, &db, err, sizeof err), 0);
    assert_int_equal(db.n, 1);
    store_db_fini(&db);
    struct stat st;
    assert_int_equal(stat(tmp, &st), 0);
    add_vm(root, STORE_BACKEND_FC, NULL, "b");
    assert_int_equal(stat(tmp, &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(store_load(root, STORE_BACKEND_FC, &db, err, sizeof err), 0);
    assert_int_equal(db.n, 2);
    store_db_fini(&db);
    /* No temp file of our own is left behind either. */
    char *dir = sup_asprintf("%s/firecracker/db", root);
    char sh[] = "/bin/sh", dash_c[] = "-c";
    char *argv[] = { sh, dash_c, NULL, NULL };
    char *cmd = sup_asprintf("ls -A '%s'", dir);
    argv[2] = cmd;
    char *out = NULL, *errout = NULL;
    assert_int_equal(sup_run(argv, NULL, &out, &errout, 5000), 0);
    assert_string_equal(out, "vms.json\nvms.lock\n");
    free(out);
    free(errout);
    free(cmd);
    free(dir);
    free(tmp);
    sup_rmrf(root);
    free(root);
}

/* ---- resolution ------------------------------------------------------- */

/* Resolves ref both ways, once with store_resolve and once against a
 * store_set loaded beforehand, and expects the same answer from both. */
static void expect_resolve(const char *root, const char *ref, int want_rc, const char *want)
{
    char err[BASE_ERRSTR_MAX] = "";
    store_vm vm;
    store_set set;
    const store_vm *hit;
    int rc = store_resolve(root, ref, &vm, err, sizeof err);
    if (rc != want_rc)
        fail_msg("ref %s: rc %d (%s), want %d", ref, rc, err, want_rc);
    if (rc == 0) {
        assert_string_equal(vm.id, want);
        store_vm_fini(&vm);
    } else {
        assert_string_equal(err, want);
    }
    assert_int_equal(store_set_load(&set, root, err, sizeof err), 0);
    err[0] = '\0';
    rc = store_set_resolve(&set, ref, &hit, err, sizeof err);
    if (rc != want_rc)
        fail_msg("set ref %s: rc %d (%s), want %d", ref, rc, err, want_rc);
    if (rc == 0) {
        assert_string_equal(hit->id, want);
    } else {
        assert_null(hit);
        assert_string_equal(err, want);
    }
    store_set_fini(&set);
}

/* A loaded set answers from what it read: records added to the files
 * afterwards are not seen until the next load, and the records it hands
 * out stay valid until store_set_fini. */
static void test_resolve_loaded_set(void **state)
{
    (void)state;
    char *root = sup_tmpdir(), err[BASE_ERRSTR_MAX];
    store_set set;
    const store_vm *hit;
    add_vm(root, STORE_BACKEND_CH, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "alpha");
    assert_int_equal(store_set_load(&set, root, err, sizeof err), 0);
    add_vm(root, STORE_BACKEND_FC, "FCFCFCFCFCFCFCFCFCFCFCFCFC", "gamma");
    assert_int_equal(store_set_resolve(&set, "gamma", &hit, err, sizeof err), -ENOENT);
    assert_int_equal(store_set_resolve(&set, "alpha", &hit, err, sizeof err), 0);
    assert_string_equal(hit->backend, STORE_BACKEND_CH);
    assert_int_equal(store_set_resolve(&set, "ABCDE", &hit, err, sizeof err), 0);
    assert_string_equal(hit->config.name, "alpha");
    store_set_fini(&set);
    store_set_fini(&set);
    store_set_fini(NULL);
    sup_rmrf(root);
    free(root);
}

static void test_resolve(void **state)
{
    (void)state;
    char *root = sup_tmpdir();
    add_vm(root, STORE_BACKEND_CH, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "alpha");
    add_vm(root, STORE_BACKEND_CH, "ABCQQQQQQQQQQQQQQQQQQQQQQQ", "beta");
    add_vm(root, STORE_BACKEND_CH, "XYZAAAAAAAAAAAAAAAAAAAAAAA", NULL);
    add_vm(root, STORE_BACKEND_FC, "FCFCFCFCFCFCFCFCFCFCFCFCFC", "gamma");
    add_vm(root, STORE_BACKEND_FC, "XYZBBBBBBBBBBBBBBBBBBBBBBB", "delta");
    /* A name that is also a prefix of an id elsewhere: the name wins. */
    add_vm(root, STORE_BACKEND_FC, "MMMMMMMMMMMMMMMMMMMMMMMMMM", "ABCQ");

    expect_resolve(root, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", 0, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    expect_resolve(root, "alpha", 0, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    expect_resolve(root, "gamma", 0, "FCFCFCFCFCFCFCFCFCFCFCFCFC");
    expect_resolve(root, "ABCD", 0, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    expect_resolve(root, "FCF", 0, "FCFCFCFCFCFCFCFCFCFCFCFCFC");
    expect_resolve(root, "ABCQ", 0, "MMMMMMMMMMMMMMMMMMMMMMMMMM");
    expect_resolve(root, "ABCQQ", 0, "ABCQQQQQQQQQQQQQQQQQQQQQQQ");
    expect_resolve(root, "ABC", -EINVAL, "ambiguous ref \"ABC\": multiple matches");
    expect_resolve(root, "AB", -ENOENT, "VM not found");
    expect_resolve(root, "FC", -ENOENT, "VM not found");
    expect_resolve(root, "nope", -ENOENT, "VM not found");
    expect_resolve(root, "", -ENOENT, "VM not found");
    expect_resolve(root, "abcd", -ENOENT, "VM not found");
    expect_resolve(root, "XYZ", -EINVAL, "VM ref resolves to multiple backends");
    expect_resolve(root, "XYZA", 0, "XYZAAAAAAAAAAAAAAAAAAAAAAA");
    expect_resolve(root, "a\"b\\", -ENOENT, "VM not found");

    /* The copy carries the backend and is independent of the store. */
    char err[BASE_ERRSTR_MAX];
    store_vm vm;
    assert_int_equal(store_resolve(root, "delta", &vm, err, sizeof err), 0);
    assert_string_equal(vm.backend, STORE_BACKEND_FC);
    assert_string_equal(vm.config.name, "delta");
    store_vm_fini(&vm);

    /* Same id in both backends (a damaged root). */
    add_vm(root, STORE_BACKEND_FC, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "alpha2");
    expect_resolve(root, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", -EINVAL,
                   "VM ref resolves to multiple backends");
    add_vm(root, STORE_BACKEND_FC, "ABCZZZZZZZZZZZZZZZZZZZZZZZ", NULL);
    expect_resolve(root, "ABC\"x", -ENOENT, "VM not found");
    sup_rmrf(root);
    free(root);
}

static void test_ambiguous_quoting(void **state)
{
    (void)state;
    char *root = sup_tmpdir();
    add_vm(root, STORE_BACKEND_CH, "QQQAAAAAAAAAAAAAAAAAAAAAAA", NULL);
    add_vm(root, STORE_BACKEND_CH, "QQQBBBBBBBBBBBBBBBBBBBBBBB", NULL);
    expect_resolve(root, "QQQ", -EINVAL, "ambiguous ref \"QQQ\": multiple matches");
    sup_rmrf(root);
    free(root);
}

/* ---- concurrency ------------------------------------------------------ */

#define CONC_WRITERS 4
#define CONC_PER 50

struct conc_op {
    int writer, i;
    bool remove;
};

static int conc_cb(store_db *db, void *priv, char *err, size_t errlen)
{
    struct conc_op *op = priv;
    char name[32];
    snprintf(name, sizeof name, "w%d-%d", op->writer, op->i);
    if (op->remove) {
        store_vm *vm = store_db_find_name(db, name);
        if (!vm)
            return base_errf(err, errlen, -ENOENT, "lost %s", name);
        return store_db_remove(db, vm->id);
    }
    store_vm vm;
    make_vm(&vm, name, STORE_CREATED);
    int rc = store_db_add(db, &vm, err, errlen);
    store_vm_fini(&vm);
    return rc;
}

static void conc_writer(const char *root, int w)
{
    char err[BASE_ERRSTR_MAX];
    for (int i = 0; i < CONC_PER; i++) {
        struct conc_op op = { w, i, false };
        if (store_update(root, STORE_BACKEND_CH, conc_cb, &op, err, sizeof err))
            _exit(10);
        /* Remove every odd one right after the next is made, so removals
         * interleave with other writers' adds. */
        if (i % 2 == 0 && i > 0) {
            struct conc_op rm = { w, i - 1, true };
            if (store_update(root, STORE_BACKEND_CH, conc_cb, &rm, err, sizeof err))
                _exit(11);
        }
    }
    struct conc_op rm = { w, CONC_PER - 1, true };
    if (store_update(root, STORE_BACKEND_CH, conc_cb, &rm, err, sizeof err))
        _exit(12);
    _exit(0);
}

static void conc_reader(const char *root, const char *stop)
{
    char err[BASE_ERRSTR_MAX];
    long loads = 0;
    for (;;) {
        struct stat st;
        bool done = stat(stop, &st) == 0;
        store_db db;
        if (store_load(root, STORE_BACKEND_CH, &db, err, sizeof err))
            _exit(20);
        loads++;
        store_db_fini(&db);
        if (done)
            break;
    }
    _exit(loads > 0 ? 0 : 21);
}

static void test_concurrent_writers(void **state)
{
    (void)state;
    /* Stack copies: the forked children exit holding no heap block of the
     * parent, so valgrind's leak check in each child stays clean. */
    char root[PATH_MAX], stop[PATH_MAX + 8];
    char *tmp = sup_tmpdir();
    snprintf(root, sizeof root, "%s", tmp);
    free(tmp);
    snprintf(stop, sizeof stop, "%s/stop", root);
    pid_t writers[CONC_WRITERS], reader;
    /* The reader starts first so it overlaps the whole write phase. */
    reader = fork();
    assert_true(reader >= 0);
    if (reader == 0)
        conc_reader(root, stop);
    for (int w = 0; w < CONC_WRITERS; w++) {
        writers[w] = fork();
        assert_true(writers[w] >= 0);
        if (writers[w] == 0)
            conc_writer(root, w);
    }
    /* Every child is reaped before any verdict, so a failing run leaves no
     * reader spinning behind it. */
    int wst[CONC_WRITERS], rst;
    for (int w = 0; w < CONC_WRITERS; w++)
        assert_int_equal(waitpid(writers[w], &wst[w], 0), writers[w]);
    write_file(stop, "", 0);
    assert_int_equal(waitpid(reader, &rst, 0), reader);
    for (int w = 0; w < CONC_WRITERS; w++)
        if (!WIFEXITED(wst[w]) || WEXITSTATUS(wst[w]) != 0)
            fail_msg("writer %d: status %#x", w, wst[w]);
    if (!WIFEXITED(rst) || WEXITSTATUS(rst) != 0)
        fail_msg("reader: status %#x", rst);

    char err[BASE_ERRSTR_MAX];
    store_db db;
    assert_int_equal(store_load(root, STORE_BACKEND_CH, &db, err, sizeof err), 0);
    assert_int_equal(db.n, CONC_WRITERS * CONC_PER / 2);
    for (int w = 0; w < CONC_WRITERS; w++) {
        for (int i = 0; i < CONC_PER; i++) {
            char name[32];
            snprintf(name, sizeof name, "w%d-%d", w, i);
            bool want = i % 2 == 0;
            if ((store_db_find_name(&db, name) != NULL) != want)
                fail_msg("%s: present=%d", name, !want);
        }
    }
    store_db_fini(&db);
    sup_rmrf(root);
}

/* ---- run dirs and pidfiles ------------------------------------------- */

static void test_private_dir_modes(void **state)
{
    (void)state;
    char *root = sup_tmpdir();
    char err[BASE_ERRSTR_MAX] = "";
    char *dir = sup_asprintf("%s/run/cloudhypervisor/ABC", root);
    mode_t old = umask(0);
    int rc = safefile_mkdir_private(dir, err, sizeof err);
    umask(old);
    if (rc)
        fail_msg("%s", err);
    assert_int_equal(mode_of(dir), 0700);
    char *pidf = sup_asprintf("%s/ch.pid", dir);
    old = umask(0);
    rc = safefile_pidfile_write(pidf, 4242, err, sizeof err);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(mode_of(pidf), 0600);
    char *body = read_file(pidf);
    assert_string_equal(body, "4242\n");
    free(body);
    pid_t pid = 0;
    assert_int_equal(safefile_pidfile_read(pidf, &pid, err, sizeof err), 0);
    assert_int_equal(pid, 4242);
    /* Overwrite is atomic and leaves no temp file. */
    assert_int_equal(safefile_pidfile_write(pidf, 77, err, sizeof err), 0);
    assert_int_equal(safefile_pidfile_read(pidf, &pid, err, sizeof err), 0);
    assert_int_equal(pid, 77);
    char sh[] = "/bin/sh", dash_c[] = "-c";
    char *argv[] = { sh, dash_c, NULL, NULL };
    argv[2] = sup_asprintf("ls -A '%s'", dir);
    char *out = NULL, *eout = NULL;
    assert_int_equal(sup_run(argv, NULL, &out, &eout, 5000), 0);
    assert_string_equal(out, "ch.pid\n");
    free(argv[2]);
    free(out);
    free(eout);

    /* A restrictive umask does not leave the dir unusable. */
    char *dir2 = sup_asprintf("%s/run/cloudhypervisor/DEF", root);
    old = umask(0777);
    rc = safefile_mkdir_private(dir2, err, sizeof err);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(mode_of(dir2), 0700);
    /* A pre-existing, too open dir is tightened. */
    char *dir3 = sup_asprintf("%s/run/cloudhypervisor/GHI", root);
    assert_int_equal(mkdir(dir3, 0777), 0);
    assert_int_equal(chmod(dir3, 0777), 0);
    assert_int_equal(safefile_mkdir_private(dir3, err, sizeof err), 0);
    assert_int_equal(mode_of(dir3), 0700);
    /* A plain file in the way is an error. */
    char *file = sup_asprintf("%s/plain", root);
    write_file(file, "x", 1);
    assert_int_equal(safefile_mkdir_private(file, err, sizeof err), -ENOTDIR);

    free(file);
    free(dir3);
    free(dir2);
    free(pidf);
    free(dir);
    sup_rmrf(root);
    free(root);
}

static void test_symlinks_refused(void **state)
{
    (void)state;
    char *root = sup_tmpdir();
    char err[BASE_ERRSTR_MAX] = "";
    char *target = sup_asprintf("%s/elsewhere", root);
    assert_int_equal(mkdir(target, 0755), 0);
    char *link = sup_asprintf("%s/run", root);
    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(safefile_mkdir_private(link, err, sizeof err), -ELOOP);
    char *want = sup_asprintf("%s is a symlink", link);
    assert_string_equal(err, want);
    free(want);
    assert_int_equal(mode_of(target), 0755); /* not chmodded through the link */

    /* Writing a pidfile into a symlinked run dir is refused. */
    char *via = sup_asprintf("%s/ch.pid", link);
    assert_true(safefile_pidfile_write(via, 1, err, sizeof err) < 0);
    struct stat st;
    char *real = sup_asprintf("%s/ch.pid", target);
    assert_int_equal(stat(real, &st), -1);

    /* Reading a pidfile that is a symlink is refused. */
    char *dir = sup_asprintf("%s/rd", root);
    assert_int_equal(safefile_mkdir_private(dir, err, sizeof err), 0);
    char *good = sup_asprintf("%s/good.pid", dir);
    assert_int_equal(safefile_pidfile_write(good, 123, err, sizeof err), 0);
    char *bad = sup_asprintf("%s/ch.pid", dir);
    assert_int_equal(symlink(good, bad), 0);
    pid_t pid = 0;
    assert_int_equal(safefile_pidfile_read(bad, &pid, err, sizeof err), -ELOOP);
    want = sup_asprintf("open %s: Too many levels of symbolic links", bad);
    assert_string_equal(err, want);
    free(want);
    assert_int_equal(pid, 0);
    /* Writing replaces the link itself, never its target. */
    assert_int_equal(safefile_pidfile_write(bad, 456, err, sizeof err), 0);
    assert_int_equal(lstat(bad, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(safefile_pidfile_read(good, &pid, err, sizeof err), 0);
    assert_int_equal(pid, 123);

    free(bad);
    free(good);
    free(dir);
    free(real);
    free(via);
    free(link);
    free(target);
    sup_rmrf(root);
    free(root);
}

static void test_pidfile_read_errors(void **state)
{
    (void)state;
    char *root = sup_tmpdir();
    char err[BASE_ERRSTR_MAX] = "";
    char *path = sup_asprintf("%s/ch.pid", root);
    pid_t pid = -5;
    char *want = sup_asprintf("open %s: No such file or directory", path);
    assert_int_equal(safefile_pidfile_read(path, &pid, err, sizeof err), -ENOENT);
    assert_string_equal(err, want);
    free(want);
    assert_int_equal(pid, -5);

    static const struct {
        const char *body;
        const char *detail; /* NULL: parses to pid */
        pid_t pid;
    } rows[] = {
        { "garbage\n", "invalid syntax \"garbage\"", 0 },
        { "", "empty file", 0 },
        { " \n\t", "empty file", 0 },
        { "12 34\n", "invalid syntax \"12 34\"", 0 },
        { "0\n", "pid 0 out of range", 0 },
        { "-3\n", "pid -3 out of range", 0 },
        { "99999999999999999999\n", "pid 99999999999999999999 out of range", 0 },
        { "1x", "invalid syntax \"1x\"", 0 },
        { "  321  \n", NULL, 321 },
        { "7", NULL, 7 },
        { "+8\n", NULL, 8 },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        write_file(path, rows[i].body, strlen(rows[i].body));
        pid = 0;
        int rc = safefile_pidfile_read(path, &pid, err, sizeof err);
        if (!rows[i].detail) {
            if (rc)
                fail_msg("row %zu: %s", i, err);
            assert_int_equal(pid, rows[i].pid);
            continue;
        }
        want = sup_asprintf("parse PID from %s: %s", path, rows[i].detail);
        if (rc >= 0 || strcmp(err, want) != 0)
            fail_msg("row %zu: rc %d err '%s' want '%s'", i, rc, err, want);
        free(want);
    }
    write_file(path, "12\0", 3);
    assert_true(safefile_pidfile_read(path, &pid, err, sizeof err) < 0);
    assert_non_null(strstr(err, "parse PID from"));
    char big[200];
    memset(big, '1', sizeof big);
    write_file(path, big, sizeof big);
    assert_true(safefile_pidfile_read(path, &pid, err, sizeof err) < 0);
    assert_non_null(strstr(err, "file too large"));
    /* A directory is not a pidfile. */
    assert_true(safefile_pidfile_read(root, &pid, err, sizeof err) < 0);
    free(path);
    sup_rmrf(root);
    free(root);
}

/* ---- allocation failures ---------------------------------------------- */

/* Linked with -Wl,--wrap for these (Makefile TEST_LDFLAGS_test_store): when
 * armed, the fail_at-th allocation made by our own code fails.  yajl's
 * internal allocations are in the shared library and are not affected. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

static long alloc_fail_at = -1, alloc_seen;

static bool alloc_should_fail(void)
{
    return alloc_fail_at >= 0 && alloc_seen++ == alloc_fail_at;
}

void *__wrap_malloc(size_t n)
{
    return alloc_should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    return alloc_should_fail() ? NULL : __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
    return alloc_should_fail() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return alloc_should_fail() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    return alloc_should_fail() ? NULL : __real_strndup(s, n);
}

static void alloc_arm(long n)
{
    alloc_seen = 0;
    alloc_fail_at = n;
}

static bool alloc_disarm(void)
{
    bool fired = alloc_seen > alloc_fail_at;
    alloc_fail_at = -1;
    return fired;
}

static void test_alloc_failures_leak_nothing(void **state)
{
    (void)state;
    char err[BASE_ERRSTR_MAX];
    store_db src = { .backend = STORE_BACKEND_CH };
    store_vm vm;
    fill_full(&vm);
    assert_int_equal(store_db_add(&src, &vm, err, sizeof err), 0);
    char *json = NULL;
    size_t len = 0;
    assert_int_equal(vmsjson_serialize(&src, &json, &len, err, sizeof err), 0);

    /* Parse: fail each allocation in turn until the parse succeeds. */
    long n;
    for (n = 0;; n++) {
        store_db db;
        alloc_arm(n);
        int rc = vmsjson_parse(json, len, STORE_BACKEND_CH, &db, err, sizeof err);
        bool fired = alloc_disarm();
        if (!fired) {
            assert_int_equal(rc, 0);
            assert_int_equal(db.n, 1);
            store_db_fini(&db);
            break;
        }
        if (rc != -ENOMEM)
            fail_msg("parse, allocation %ld: rc %d %s", n, rc, err);
        assert_int_equal(db.n, 0);
    }
    assert_true(n > 10);

    /* Serialize. */
    for (n = 0;; n++) {
        char *out = NULL;
        alloc_arm(n);
        int rc = vmsjson_serialize(&src, &out, NULL, err, sizeof err);
        bool fired = alloc_disarm();
        if (!fired) {
            assert_int_equal(rc, 0);
            assert_string_equal(out, json);
            free(out);
            break;
        }
        assert_int_equal(rc, -ENOMEM);
        assert_null(out);
    }

    /* Deep copy. */
    for (n = 0;; n++) {
        store_vm copy;
        alloc_arm(n);
        int rc = store_vm_copy(&copy, &src.vms[0]);
        bool fired = alloc_disarm();
        if (!fired) {
            assert_int_equal(rc, 0);
            assert_vm_equal(&copy, &src.vms[0]);
            store_vm_fini(&copy);
            break;
        }
        assert_int_equal(rc, -ENOMEM);
        assert_null(copy.config.name);
    }

    /* Add: a failed grow leaves the db and the record as they were. */
    store_vm extra;
    make_vm(&extra, "extra", STORE_CREATED);
    alloc_arm(0);
    int rc = store_db_add(&src, &extra, err, sizeof err);
    assert_true(alloc_disarm());
    assert_int_equal(rc, -ENOMEM);
    assert_int_equal(src.n, 1);
    assert_string_equal(extra.config.name, "extra");
    assert_int_equal(store_db_add(&src, &extra, err, sizeof err), 0);
    assert_int_equal(src.n, 2);

    /* Whole update and resolve through the file system. */
    char *root = sup_tmpdir();
    for (n = 0;; n++) {
        struct add_req r = { "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "oom", STORE_CREATED, NULL };
        alloc_arm(n);
        rc = store_update(root, STORE_BACKEND_CH, add_cb, &r, err, sizeof err);
        bool fired = alloc_disarm();
        if (!fired) {
            if (rc)
                fail_msg("update: %s", err);
            break;
        }
        assert_int_equal(rc, -ENOMEM);
    }
    for (n = 0;; n++) {
        store_vm got;
        alloc_arm(n);
        rc = store_resolve(root, "oom", &got, err, sizeof err);
        bool fired = alloc_disarm();
        if (!fired) {
            assert_int_equal(rc, 0);
            assert_string_equal(got.id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
            store_vm_fini(&got);
            break;
        }
        assert_int_equal(rc, -ENOMEM);
    }
    sup_rmrf(root);
    free(root);
    free(json);
    store_db_fini(&src);
}

/* store_root_canon: one root, however it is spelled.  The existing part
 * is resolved (symlinks too); the part that does not exist yet is joined
 * without ".", ".." or "//". */
static void test_root_canon(void **state)
{
    char *tmp = sup_tmpdir(), *real, *link, *p, *want, cwd[4096];
    static const char *const spell[] = { "/a/b", "/a/b/", "//a/./b", "/a/x/../b", "/link/b",
                                         "/a/b/c/.." };

    (void)state;
    real = realpath(tmp, NULL);
    assert_non_null(real);
    p = sup_asprintf("%s/a", tmp);
    assert_int_equal(mkdir(p, 0700), 0);
    free(p);
    link = sup_asprintf("%s/link", tmp);
    assert_int_equal(symlink("a", link), 0);
    want = sup_asprintf("%s/a/b", real);
    for (size_t i = 0; i < sizeof(spell) / sizeof(spell[0]); i++) {
        char *in = sup_asprintf("%s%s", tmp, spell[i]), *out = store_root_canon(in);

        assert_non_null(out);
        if (strcmp(out, want) != 0)
            fail_msg("%s: %s, want %s", in, out, want);
        free(in);
        free(out);
    }
    /* Relative: against the working directory. */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(tmp), 0);
    p = store_root_canon("./a/b/");
    assert_int_equal(chdir(cwd), 0);
    assert_non_null(p);
    assert_string_equal(p, want);
    free(p);
    p = store_root_canon("/");
    assert_string_equal(p, "/");
    free(p);
    free(want);
    free(link);
    free(real);
    sup_rmrf(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_alphabet_and_length),
        cmocka_unit_test(test_name_validation_table),
        cmocka_unit_test(test_state_and_hypervisor_names),
        cmocka_unit_test(test_root_and_now),
        cmocka_unit_test(test_root_canon),
        cmocka_unit_test(test_roundtrip_full_record),
        cmocka_unit_test(test_parse_ignores_unknown_keys),
        cmocka_unit_test(test_parse_rejects_bad_documents),
        cmocka_unit_test(test_serialize_rejects_bad_utf8),
        cmocka_unit_test(test_db_add_remove),
        cmocka_unit_test(test_update_load_and_modes),
        cmocka_unit_test(test_corrupt_file_refused),
        cmocka_unit_test(test_leftover_temp_file),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_resolve_loaded_set),
        cmocka_unit_test(test_ambiguous_quoting),
        cmocka_unit_test(test_concurrent_writers),
        cmocka_unit_test(test_private_dir_modes),
        cmocka_unit_test(test_symlinks_refused),
        cmocka_unit_test(test_pidfile_read_errors),
        cmocka_unit_test(test_alloc_failures_leak_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
