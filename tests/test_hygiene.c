/* tests/test_hygiene.c: resource and security hygiene beyond test_store.c:
 * the store hammered by several processes with an unlocked raw reader, a
 * corrupted vms.json seen through the engine and the CLI, file modes of a
 * real `vm run` under umask 0, and hostile strings (shell metacharacters,
 * quotes, newlines, over-long socket paths) kept away from any shell and
 * escaped correctly on the wire. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/cocoon.h"
#include "http/base.h"
#include "backends/store.h"
#include "backends/vmsjson.h"
#include "tests/support/support.h"

static void write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static char *read_all(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t cap = 4096, n = 0;
    char *b;
    ssize_t r;

    if (fd < 0)
        return NULL;
    b = malloc(cap);
    assert_non_null(b);
    while ((r = read(fd, b + n, cap - n - 1)) > 0) {
        n += (size_t)r;
        if (cap - n < 2) {
            cap *= 2;
            b = realloc(b, cap);
            assert_non_null(b);
        }
    }
    close(fd);
    b[n] = '\0';
    if (len)
        *len = n;
    return b;
}

static bool file_exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* ---------------------------------------------------------------- store */

#define WRITERS 4

struct hop {
    int writer, i;
    bool remove;
};

static int hop_cb(store_db *db, void *priv, char *err, size_t errlen)
{
    struct hop *op = priv;
    char name[32];
    store_vm vm;
    int rc;

    snprintf(name, sizeof(name), "h%d-%d", op->writer, op->i);
    if (op->remove) {
        store_vm *found = store_db_find_name(db, name);

        if (!found)
            return base_errf(err, errlen, -ENOENT, "record %s lost", name);
        return store_db_remove(db, found->id);
    }
    memset(&vm, 0, sizeof(vm));
    if (store_new_id(vm.id))
        return base_errf(err, errlen, -EIO, "no id");
    vm.state = STORE_CREATED;
    vm.config.name = strdup(name);
    vm.config.cpu = 1;
    vm.config.memory = 1 << 20;
    if (!vm.config.name)
        return base_errf(err, errlen, -ENOMEM, "oom");
    rc = store_db_add(db, &vm, err, errlen);
    store_vm_fini(&vm);
    return rc;
}

/* Creates every record, then removes those with i % 3 != 0, so adds and
 * removes of all writers interleave.  Waits on the start pipe so every
 * writer begins at the same moment. */
static void hammer_writer(const char *root, int w, int per, int start_fd)
{
    char err[BASE_ERRSTR_MAX], c;

    if (read(start_fd, &c, 1) != 1)
        _exit(9);
    for (int i = 0; i < per; i++) {
        struct hop op = { w, i, false };

        if (store_update(root, STORE_BACKEND_CH, hop_cb, &op, err, sizeof(err)))
            _exit(10);
        if (i >= 2 && (i - 2) % 3 != 0) {
            struct hop rm = { w, i - 2, true };

            if (store_update(root, STORE_BACKEND_CH, hop_cb, &rm, err, sizeof(err)))
                _exit(11);
        }
    }
    for (int i = per - 2 < 0 ? 0 : per - 2; i < per; i++) {
        struct hop rm = { w, i, true };

        if (i % 3 != 0 && store_update(root, STORE_BACKEND_CH, hop_cb, &rm, err, sizeof(err)))
            _exit(12);
    }
    _exit(0);
}

/* Reads vms.json raw, without the lock: only an atomic rename makes every
 * read a whole document.  Exits 0 after at least one read once stop
 * exists, 20 on a partial or unparsable file. */
static void raw_reader(const char *root, const char *stop, const char *fail_log)
{
    char *file = sup_asprintf("%s/cloudhypervisor/db/vms.json", root);
    long reads = 0;

    for (;;) {
        bool done = file_exists(stop);
        size_t len = 0;
        char *buf = read_all(file, &len);

        if (buf) {
            char err[BASE_ERRSTR_MAX];
            store_db db;

            if (vmsjson_parse(buf, len, STORE_BACKEND_CH, &db, err, sizeof(err))) {
                write_file(fail_log, err, strlen(err));
                _exit(20);
            }
            store_db_fini(&db);
            reads++;
            free(buf);
        }
        if (done)
            break;
    }
    free(file);
    _exit(reads > 0 ? 0 : 21);
}

static void wait_ok(pid_t pid, const char *what)
{
    int st;

    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("%s: status %#x", what, st);
}

static void test_store_contention(void **state)
{
    /* Static paths: the forked children _exit without freeing, and must
     * not inherit heap blocks only their parent's frame points to. */
    static char root[256], stop[300], fail_log[300];
    char *tmpdir = sup_tmpdir();
    int per = sup_env_on("COCOON_SOAK") ? 200 : sup_env_on("COCOON_VALGRIND") ? 20 : 50;
    pid_t writers[WRITERS], reader, resolver;
    int start[2];
    char err[BASE_ERRSTR_MAX];
    store_db db;
    size_t want = 0;

    (void)state;
    snprintf(root, sizeof(root), "%s", tmpdir);
    free(tmpdir);
    snprintf(stop, sizeof(stop), "%s/stop", root);
    snprintf(fail_log, sizeof(fail_log), "%s/reader-error", root);
    assert_int_equal(pipe(start), 0);
    reader = fork();
    assert_true(reader >= 0);
    if (reader == 0)
        raw_reader(root, stop, fail_log);
    /* A second reader through the locked path, resolving a name that
     * always exists: it must never see "VM not found" or a parse error. */
    {
        struct hop anchor = { 9, 0, false };

        assert_int_equal(store_update(root, STORE_BACKEND_CH, hop_cb, &anchor, err,
                                      sizeof(err)), 0);
    }
    resolver = fork();
    assert_true(resolver >= 0);
    if (resolver == 0) {
        long n = 0;

        for (;;) {
            bool done = file_exists(stop);
            store_vm vm;

            if (store_resolve(root, "h9-0", &vm, err, sizeof(err)))
                _exit(30);
            store_vm_fini(&vm);
            n++;
            if (done)
                break;
        }
        _exit(n > 0 ? 0 : 31);
    }
    for (int w = 0; w < WRITERS; w++) {
        writers[w] = fork();
        assert_true(writers[w] >= 0);
        if (writers[w] == 0) {
            close(start[1]);
            hammer_writer(root, w, per, start[0]);
        }
    }
    close(start[0]);
    /* One byte per writer releases them together. */
    assert_int_equal(write(start[1], "xxxx", WRITERS), WRITERS);
    close(start[1]);
    for (int w = 0; w < WRITERS; w++)
        wait_ok(writers[w], "writer");
    write_file(stop, "", 0);
    if (file_exists(fail_log)) {
        char *why = read_all(fail_log, NULL);

        fail_msg("raw reader saw a broken vms.json: %s", why);
    }
    wait_ok(reader, "raw reader");
    wait_ok(resolver, "resolver");

    assert_int_equal(store_load(root, STORE_BACKEND_CH, &db, err, sizeof(err)), 0);
    for (int w = 0; w < WRITERS; w++) {
        for (int i = 0; i < per; i++) {
            char name[32];
            bool keep = i % 3 == 0;
            store_vm *vm;

            snprintf(name, sizeof(name), "h%d-%d", w, i);
            vm = store_db_find_name(&db, name);
            if ((vm != NULL) != keep)
                fail_msg("%s: present %d, want %d", name, vm != NULL, keep);
            if (vm)
                assert_ptr_equal(store_db_find(&db, vm->id), vm);
            want += keep;
        }
    }
    assert_int_equal(db.n, want + 1);
    fprintf(stderr, "store contention: %d writers x %d creates, %zu records kept\n", WRITERS,
            per, want);
    store_db_fini(&db);
    sup_rmrf(root);
}

/* ---------------------------------------------------------- crash safety */

/* Adds the record "h7-<i>". */
static void add_rec(const char *root, int i)
{
    struct hop op = { 7, i, false };
    char err[BASE_ERRSTR_MAX];

    if (store_update(root, STORE_BACKEND_CH, hop_cb, &op, err, sizeof(err)))
        fail_msg("add h7-%d: %s", i, err);
}

struct engine_run {
    struct ev_loop *loop;
    int calls;
    int err;
    char errstr[2048];
    size_t n_fs;
    char fs_socket[300];
};

static void er_done(cocoon_engine *e, const cocoon_result *r, void *priv)
{
    struct engine_run *er = priv;

    (void)e;
    er->calls++;
    er->err = r->err;
    snprintf(er->errstr, sizeof(er->errstr), "%s", r->errstr);
}

static void er_list(cocoon_engine *e, const cocoon_result *r, const cocoon_listing *l,
                    void *priv)
{
    struct engine_run *er = priv;

    er->n_fs = l ? l->n_fs : 0;
    if (er->n_fs)
        snprintf(er->fs_socket, sizeof(er->fs_socket), "%s", l->fs[0].socket);
    er_done(e, r, priv);
}

enum er_op { ER_FSA, ER_DEVA, ER_LIST, ER_FSD };

/* One engine operation on a private loop; the engine is freed before
 * returning. */
static struct engine_run engine_once(const char *root, enum er_op op, const char *vm,
                                     const cocoon_fs_spec *fs, const cocoon_vfio_spec *dev,
                                     int socket_check)
{
    struct engine_run er = { 0 };
    cocoon_options o = COCOON_OPTIONS_INIT;
    cocoon_engine *e;
    int rc;

    er.loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(er.loop);
    o.root_dir = root;
    o.timeout_ms = 5000;
    o.socket_check = socket_check;
    e = cocoon_engine_new(er.loop, &o);
    assert_non_null(e);
    switch (op) {
    case ER_FSA: rc = cocoon_fs_attach(e, vm, fs, er_done, &er); break;
    case ER_DEVA: rc = cocoon_device_attach(e, vm, dev, er_done, &er); break;
    case ER_FSD: rc = cocoon_fs_detach(e, vm, fs->tag, er_done, &er); break;
    default: rc = cocoon_list(e, vm, er_list, &er); break;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(er.calls, 0);
    ev_run(er.loop, 0);
    assert_int_equal(er.calls, 1);
    cocoon_engine_free(e);
    ev_loop_destroy(er.loop);
    return er;
}

static const char *const corruptions[] = {
    "",
    "\n",
    "null",
    "[]",
    "{\"vms\":[],\"names\":{}}",
    "{\"vms\":{\"ABCDEFGHIJKLMNOPQRSTUVWXYZ\":7},\"names\":{}}",
    "{\"vms\":{},\"names\":{},}",
    "\x7f" "ELF\x02\x01\x01\0\0\0\0",
};

static void test_corrupt_db_through_engine_and_cli(void **state)
{
    char *root = sup_tmpdir(), *file, *cocoon = sup_build_path("cocoon"), *orig;
    size_t orig_len;

    (void)state;
    add_rec(root, 0);
    file = sup_asprintf("%s/cloudhypervisor/db/vms.json", root);
    orig = read_all(file, &orig_len);
    assert_non_null(orig);
    /* Byte flips in a real file, plus whole-file garbage. */
    for (size_t k = 0; k < sizeof(corruptions) / sizeof(corruptions[0]) + 3; k++) {
        char *bad;
        size_t bad_len;

        if (k < sizeof(corruptions) / sizeof(corruptions[0])) {
            bad_len = strlen(corruptions[k]);
            if (k == 7)
                bad_len = 11;
            bad = malloc(bad_len + 1);
            memcpy(bad, corruptions[k], bad_len);
            bad[bad_len] = '\0';
        } else {
            size_t at = (k - sizeof(corruptions) / sizeof(corruptions[0]) + 1) * orig_len / 4;

            bad = malloc(orig_len + 1);
            memcpy(bad, orig, orig_len + 1);
            bad_len = orig_len;
            bad[at] = bad[at] == '"' ? '{' : '"';
        }
        write_file(file, bad, bad_len);

        /* The engine: the ref cannot be resolved, and it says why, naming
         * the file, instead of "VM not found". */
        {
            cocoon_fs_spec fs = { sizeof(cocoon_fs_spec), "/tmp/v.sock", "data", 0, 0, 0 };
            struct engine_run er = engine_once(root, ER_FSA, "some-vm", &fs, NULL, 0);
            char *want = sup_asprintf("%s: ", file);

            if (er.err == 0 || !strstr(er.errstr, want) || strstr(er.errstr, "VM not found"))
                fail_msg("corruption %zu: engine said %d \"%s\"", k, er.err, er.errstr);
            free(want);
        }
        /* The CLI: vm list and vm create fail, naming the file, and the
         * file is left exactly as it was. */
        {
            char *argv[] = { cocoon, (char *)"--root-dir", root, (char *)"vm", (char *)"list",
                             NULL };
            char *argv2[] = { cocoon, (char *)"--root-dir", root, (char *)"vm",
                              (char *)"create", (char *)"--name", (char *)"new", NULL };
            char *out = NULL, *err = NULL, *now;
            size_t now_len;

            assert_int_equal(sup_run(argv, NULL, &out, &err, 10000), 1);
            if (!strstr(err, file))
                fail_msg("corruption %zu: vm list stderr %s", k, err);
            free(out);
            free(err);
            assert_int_equal(sup_run(argv2, NULL, &out, &err, 10000), 1);
            if (!strstr(err, file))
                fail_msg("corruption %zu: vm create stderr %s", k, err);
            free(out);
            free(err);
            now = read_all(file, &now_len);
            assert_int_equal(now_len, bad_len);
            assert_memory_equal(now, bad, bad_len);
            free(now);
        }
        free(bad);
    }
    free(orig);
    free(file);
    free(cocoon);
    sup_rmrf(root);
    free(root);
}

/* A writer killed between creating its temp file and renaming it leaves a
 * temp file holding a complete, newer document.  It must not be taken for
 * the db, and the next write removes it. */
static void test_interrupted_write(void **state)
{
    char *root = sup_tmpdir(), *file, *tmp, err[BASE_ERRSTR_MAX];
    char *orig;
    size_t orig_len;
    store_db db;
    pid_t pid;
    int st;

    (void)state;
    add_rec(root, 0);
    file = sup_asprintf("%s/cloudhypervisor/db/vms.json", root);
    orig = read_all(file, &orig_len);
    tmp = sup_asprintf("%s/cloudhypervisor/db/.vms.json.tmp.0BADF00D", root);
    /* Play the dying writer in a child: take the lock like store_update
     * does, write the temp file, and get killed before the rename. */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char lock[512];
        int lfd;

        snprintf(lock, sizeof(lock), "%s/cloudhypervisor/db/vms.lock", root);
        lfd = open(lock, O_RDWR | O_CLOEXEC);
        const char *newer = "{\"vms\":{},\"names\":{}}";
        int fd;

        if (lfd < 0 || flock(lfd, LOCK_EX) < 0)
            _exit(3);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, newer, strlen(newer)) != (ssize_t)strlen(newer))
            _exit(4);
        raise(SIGKILL);
        _exit(5);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_true(file_exists(tmp));
    /* The lock died with the writer; readers see the old, whole db. */
    assert_int_equal(store_load(root, STORE_BACKEND_CH, &db, err, sizeof(err)), 0);
    assert_int_equal(db.n, 1);
    store_db_fini(&db);
    {
        size_t now_len;
        char *now = read_all(file, &now_len);

        assert_int_equal(now_len, orig_len);
        assert_memory_equal(now, orig, orig_len);
        free(now);
    }
    add_rec(root, 1);
    assert_false(file_exists(tmp));
    assert_int_equal(store_load(root, STORE_BACKEND_CH, &db, err, sizeof(err)), 0);
    assert_int_equal(db.n, 2);
    store_db_fini(&db);
    free(orig);
    free(tmp);
    free(file);
    sup_rmrf(root);
    free(root);
}

/* ------------------------------------------------------------- security */

static int cli_run(const char *root, char **out, char **err, const char *const args[])
{
    char *cocoon = sup_build_path("cocoon");
    char *argv[32];
    int n = 0, rc;

    argv[n++] = cocoon;
    argv[n++] = (char *)"--root-dir";
    argv[n++] = (char *)root;
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    rc = sup_run(argv, NULL, out, err, 20000);
    free(cocoon);
    return rc;
}

static mode_t mode_of(const char *path)
{
    struct stat st;

    assert_int_equal(lstat(path, &st), 0);
    return st.st_mode & 07777;
}

static char *id_of(const char *root, const char *name)
{
    char err[BASE_ERRSTR_MAX];
    store_vm vm;
    char *id;

    if (store_resolve(root, name, &vm, err, sizeof(err)))
        fail_msg("resolve %s: %s", name, err);
    id = strdup(vm.id);
    store_vm_fini(&vm);
    return id;
}

/* The real `vm run` path under umask 0: the run dir is 0700 and the
 * pidfile 0600 because they are created so, not chmodded afterwards. */
static void test_vm_run_modes_umask0(void **state)
{
    char *root = sup_tmpdir(), *chsim = sup_build_path("chsim"), *out = NULL, *err = NULL;
    const char *run[] = { "vm", "run", "--name", "m", "--shared-memory", "--ch-binary", chsim,
                          "--kernel", "/dev/null", NULL };
    const char *stop[] = { "vm", "stop", "m", NULL };
    char *id, *rdir, *pidf, *db;
    mode_t old;
    int rc;

    (void)state;
    old = umask(0);
    rc = cli_run(root, &out, &err, run);
    umask(old);
    if (rc != 0)
        fail_msg("vm run: %d %s", rc, err);
    free(out);
    free(err);
    id = id_of(root, "m");
    rdir = sup_asprintf("%s/run/cloudhypervisor/%s", root, id);
    pidf = sup_asprintf("%s/ch.pid", rdir);
    db = sup_asprintf("%s/cloudhypervisor/db/vms.json", root);
    assert_int_equal(mode_of(rdir), 0700);
    assert_int_equal(mode_of(pidf), 0600);
    /* Nothing the store writes is writable by others even under umask 0. */
    assert_int_equal(mode_of(db) & 0022, 0);
    assert_int_equal(cli_run(root, &out, &err, stop), 0);
    free(out);
    free(err);
    free(db);
    free(pidf);
    free(rdir);
    free(id);
    free(chsim);
    sup_rmrf(root);
    free(root);
}

/* A run dir that is a symlink is refused by `vm start`, and nothing is
 * written through it. */
static void test_vm_start_symlinked_run_dir(void **state)
{
    char *root = sup_tmpdir(), *chsim = sup_build_path("chsim"), *out = NULL, *err = NULL;
    const char *create[] = { "vm", "create", "--name", "s", "--shared-memory", "--kernel",
                             "/dev/null", NULL };
    const char *start[] = { "vm", "start", "--ch-binary", chsim, "s", NULL };
    char *id, *rdir, *elsewhere, *cmd;
    char sh[] = "/bin/sh", dash_c[] = "-c";
    char *argv[] = { sh, dash_c, NULL, NULL };
    int rc;

    (void)state;
    rc = cli_run(root, &out, &err, create);
    if (rc != 0)
        fail_msg("vm create: %d %s", rc, err);
    free(out);
    free(err);
    id = id_of(root, "s");
    rdir = sup_asprintf("%s/run/cloudhypervisor/%s", root, id);
    elsewhere = sup_asprintf("%s/elsewhere", root);
    assert_int_equal(mkdir(elsewhere, 0755), 0);
    cmd = sup_asprintf("mkdir -p '%s/run/cloudhypervisor' && rm -rf '%s' && ln -s '%s' '%s'", root,
                    rdir, elsewhere, rdir);
    argv[2] = cmd;
    assert_int_equal(sup_run(argv, NULL, NULL, NULL, 5000), 0);
    rc = cli_run(root, &out, &err, start);
    if (rc != 1 || !strstr(err, "symlink"))
        fail_msg("vm start through a symlinked run dir: rc %d stderr %s", rc, err);
    free(out);
    free(err);
    free(cmd);
    cmd = sup_asprintf("ls -A '%s'", elsewhere);
    argv[2] = cmd;
    assert_int_equal(sup_run(argv, NULL, &out, &err, 5000), 0);
    assert_string_equal(out, "");
    assert_int_equal(mode_of(elsewhere), 0755);
    free(out);
    free(err);
    free(cmd);
    free(elsewhere);
    free(rdir);
    free(id);
    free(chsim);
    sup_rmrf(root);
    free(root);
}

static void test_shell_metacharacters(void **state)
{
    char *dir = sup_tmpdir(), *pwned = sup_asprintf("%s/pwned", dir);
    char *tag = sup_asprintf("$(touch %s)", pwned), *tag2 = sup_asprintf("a;touch %s", pwned),
         *ref = sup_asprintf("`touch %s`", pwned), *want;
    struct engine_run er;
    cocoon_fs_spec fs = { sizeof(cocoon_fs_spec), "/tmp/v.sock", tag, 0, 0, 0 };
    cocoon_vfio_spec dev = { sizeof(cocoon_vfio_spec), "01:00.0", tag };

    (void)state;
    er = engine_once(dir, ER_FSA, "vm", &fs, NULL, 0);
    want = sup_asprintf("tag \"%s\" invalid: must match [A-Za-z0-9][A-Za-z0-9_-]{0,35}", tag);
    assert_int_equal(er.err, -EINVAL);
    assert_string_equal(er.errstr, want);
    free(want);
    fs.tag = tag2;
    er = engine_once(dir, ER_FSA, "vm", &fs, NULL, 0);
    assert_int_equal(er.err, -EINVAL);
    er = engine_once(dir, ER_DEVA, "vm", NULL, &dev, 0);
    want = sup_asprintf("id \"%s\" invalid: must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63} and not "
                     "start with cocoon-", tag);
    assert_int_equal(er.err, -EINVAL);
    assert_string_equal(er.errstr, want);
    free(want);
    fs.tag = "data";
    er = engine_once(dir, ER_FSA, ref, &fs, NULL, 0);
    want = sup_asprintf("fs attach: vm %s: VM not found", ref);
    assert_int_equal(er.err, -ENOENT);
    assert_string_equal(er.errstr, want);
    free(want);
    /* The CLI: a hostile VM name, tag and ref are refused without any
     * shell seeing them. */
    {
        const char *c1[] = { "vm", "create", "--name", tag2, NULL };
        const char *c2[] = { "vm", "create", "--name", tag, NULL };
        const char *c3[] = { "vm", "fs", "attach", ref, "--socket", "/tmp/v.sock", "--tag", tag,
                             NULL };
        const char *c4[] = { "vm", "fs", "attach", ref, "--socket", "/tmp/v.sock", "--tag",
                             "data", NULL };
        const char *const *cmds[] = { c1, c2, c3, c4 };
        char *out, *err;

        for (size_t i = 0; i < 4; i++) {
            int rc = cli_run(dir, &out, &err, cmds[i]);

            if (rc != 1 || strncmp(err, "Error: ", 7) != 0)
                fail_msg("cli case %zu: rc %d stderr %s", i, rc, err);
            free(out);
            free(err);
        }
    }
    assert_false(file_exists(pwned));
    free(tag);
    free(tag2);
    free(ref);
    free(pwned);
    sup_rmrf(dir);
    free(dir);
}

/* Neither the library nor the CLI links a function that runs a shell. */
static void test_no_shell_functions_linked(void **state)
{
    char *lib = sup_build_path("libcocoon.a"), *cli = sup_build_path("cocoon");
    char nm[] = "/usr/bin/nm", u[] = "--undefined-only", d[] = "-D";
    char *a1[] = { nm, u, lib, NULL }, *a2[] = { nm, d, u, cli, NULL };
    char *const *argvs[] = { a1, a2 };
    static const char *const banned[] = { " system", " popen", " wordexp", " execl", " execle",
                                          " execlp", " posix_spawnp" };

    (void)state;
    if (access(nm, X_OK) != 0)
        skip();
    for (size_t k = 0; k < 2; k++) {
        char *out = NULL, *err = NULL;

        assert_int_equal(sup_run(argvs[k], NULL, &out, &err, 20000), 0);
        for (size_t i = 0; i < sizeof(banned) / sizeof(banned[0]); i++) {
            const char *p = out;
            size_t bl = strlen(banned[i]);

            while ((p = strstr(p, banned[i]))) {
                char next = p[bl];

                if (next == '\n' || next == '@' || next == '\0')
                    fail_msg("%s references %s", argvs[k][k == 0 ? 2 : 3], banned[i] + 1);
                p += bl;
            }
        }
        free(out);
        free(err);
    }
    free(lib);
    free(cli);
}

/* sun_path holds 107 bytes and a NUL: longer paths are refused, never cut
 * short (a cut path could name another VM's socket). */
static void test_socket_path_limits(void **state)
{
    char *dir = sup_tmpdir(), p107[200], p108[200], cut[200];
    struct engine_run er;
    cocoon_fs_spec fs = { sizeof(cocoon_fs_spec), p107, "data", 0, 0, 0 };
    size_t dl = strlen(dir);
    int lfd;
    struct pollfd pfd;

    (void)state;
    snprintf(p107, sizeof(p107), "%s/%0*d", dir, (int)(107 - dl - 1), 0);
    snprintf(p108, sizeof(p108), "%s/%0*d", dir, (int)(108 - dl - 1), 0);
    assert_int_equal(strlen(p107), 107);
    assert_int_equal(strlen(p108), 108);
    er = engine_once(dir, ER_FSA, "nope", &fs, NULL, 0);
    assert_string_equal(er.errstr, "fs attach: vm nope: VM not found");
    fs.socket = p108;
    er = engine_once(dir, ER_FSA, "nope", &fs, NULL, 0);
    assert_int_equal(er.err, -EINVAL);
    assert_string_equal(er.errstr, "socket path too long (108 bytes, max 107)");

    /* A VM API socket path of 108 bytes whose first 107 bytes name a live
     * listener: the engine must fail without connecting to it. */
    memcpy(cut, p108, 107);
    cut[107] = '\0';
    lfd = sup_unix_bind(cut, true);
    er = engine_once(dir, ER_LIST, p108, NULL, NULL, 0);
    if (er.err == 0 || !strstr(er.errstr, p108))
        fail_msg("108-byte API socket: %d \"%s\"", er.err, er.errstr);
    pfd.fd = lfd;
    pfd.events = POLLIN;
    assert_int_equal(poll(&pfd, 1, 0), 0);
    close(lfd);
    sup_rmrf(dir);
    free(dir);
}

/* A socket path with quotes, backslashes, a newline, a tab and a control
 * byte reaches chsim intact: chsim parses the add-fs body with yajl and
 * echoes the path back through vm.info. */
static void test_socket_path_json_escaping(void **state)
{
    static const char *const extra[] = { "--memory", "size=512M,shared=on", "--no-connect",
                                         NULL };
    char *dir = sup_tmpdir(), *api = sup_asprintf("%s/api.sock", dir),
         *vfs = sup_asprintf("%s/q\"b\\s\nn\tt\x01.sock", dir);
    pid_t pid = sup_chsim_start(api, extra);
    cocoon_fs_spec fs = { sizeof(cocoon_fs_spec), vfs, "t", 0, 0, 0 };
    struct engine_run er;
    int lfd = sup_unix_bind(vfs, true);

    (void)state;
    assert_true(pid > 0);
    er = engine_once(dir, ER_FSA, api, &fs, NULL, -1);
    if (er.err != 0)
        fail_msg("attach with an odd socket path: %d %s", er.err, er.errstr);
    assert_int_equal(sup_chsim_count(api, "vm.add-fs"), 1);

    er = engine_once(dir, ER_LIST, api, NULL, NULL, -1);
    assert_int_equal(er.err, 0);
    assert_int_equal(er.n_fs, 1);
    assert_string_equal(er.fs_socket, vfs);
    er = engine_once(dir, ER_FSD, api, &fs, NULL, -1);
    assert_int_equal(er.err, 0);
    assert_int_equal(sup_chsim_count(api, "vm.remove-device"), 1);
    close(lfd);
    sup_kill(pid);
    free(vfs);
    free(api);
    sup_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_contention),
        cmocka_unit_test(test_corrupt_db_through_engine_and_cli),
        cmocka_unit_test(test_interrupted_write),
        cmocka_unit_test(test_vm_run_modes_umask0),
        cmocka_unit_test(test_vm_start_symlinked_run_dir),
        cmocka_unit_test(test_shell_metacharacters),
        cmocka_unit_test(test_no_shell_functions_linked),
        cmocka_unit_test(test_socket_path_limits),
        cmocka_unit_test(test_socket_path_json_escaping),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
