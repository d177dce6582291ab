/* tests/chsim/fc.c: Firecracker's API for one VM: configuration PUTs,
 * InstanceStart / SendCtrlAltDel actions, PATCH /vm pause/resume, PATCH
 * /drives after boot, GET /vm/config, and PUT /snapshot/create and
 * /snapshot/load.  Success is 204; bad input is 400 {"fault_message":
 * "..."}.  A snapshot is two files: the microVM state (here JSON with the
 * machine and its drives) and the guest memory (a small stand-in). */
#include "tests/chsim/chsim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

static void fc_reply(struct chsim_vm *vm, int code, const char *fault)
{
    struct chsim_resp r = { .code = code, .server = "Firecracker API" };

    if (fault) {
        char *q = chsim_json_str(fault);

        chsim_resp_set(&r, code, "{\"fault_message\":%s}", q);
        free(q);
        r.server = "Firecracker API";
    }
    chsim_vm_reply(vm, &r);
}

static const char *fc_state(const struct chsim_vm *vm)
{
    return vm->state == CHSIM_RUNNING ? "Running" : vm->state == CHSIM_PAUSED ? "Paused"
                                                                              : "Not started";
}

static const char after_boot[] =
    "The requested operation is not supported after starting the microVM.";
static const char before_boot[] =
    "The requested operation is not supported before starting the microVM.";

static ev_timer fc_exit_timer;
static int fc_exit_status;

static void fc_exit_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    chsim_request_exit(fc_exit_status);
}

/* The process ends once the reply is out: after a guest reboot, and after
 * a failed snapshot load, which leaves Firecracker unusable. */
static void fc_exit_soon(int status)
{
    fc_exit_status = status;
    ev_timer_init(&fc_exit_timer, fc_exit_cb, 0.05, 0.);
    ev_timer_start(chsim_loop, &fc_exit_timer);
}

static const char deser[] = "An error occurred when deserializing the json body of a request: ";

/* The member named key must be a string; NULL otherwise. */
static const char *fc_str(yajl_val root, const char *key)
{
    const char *path[] = { key, NULL };

    return YAJL_GET_STRING(yajl_tree_get(root, path, yajl_t_string));
}

/* A pre-boot drive, kept by id (a PUT of a known id replaces it), as
 * Firecracker opens its file; false when the file cannot be opened. */
static bool fc_drive_put(struct chsim_vm *vm, const char *id, yajl_val root)
{
    const char *path = fc_str(root, "path_on_host");
    const char *kr[] = { "is_root_device", NULL };
    struct chsim_fc_drive *d = NULL;

    if (!path || access(path, F_OK) != 0)
        return false;
    for (int i = 0; i < vm->fc_ndrives && !d; i++)
        if (strcmp(vm->fc_drives[i].id, id) == 0)
            d = &vm->fc_drives[i];
    if (!d && vm->fc_ndrives < CHSIM_FC_DRIVES)
        d = &vm->fc_drives[vm->fc_ndrives++];
    if (d) {
        snprintf(d->id, sizeof(d->id), "%s", id);
        snprintf(d->path, sizeof(d->path), "%s", path);
        d->root = YAJL_IS_TRUE(yajl_tree_get(root, kr, yajl_t_any));
    }
    return true;
}

/* PATCH /drives/ID after boot: the drive gets a new backing file. */
static void fc_drive_patch(struct chsim_vm *vm, const char *id, yajl_val root)
{
    const char *bid = fc_str(root, "drive_id"), *path = fc_str(root, "path_on_host");
    char msg[1024];

    if (vm->state != CHSIM_RUNNING && vm->state != CHSIM_PAUSED) {
        fc_reply(vm, 400, before_boot);
        return;
    }
    if (!bid || strcmp(bid, id) != 0) {
        fc_reply(vm, 400, "The id from the path does not match the id from the body!");
        return;
    }
    for (int i = 0; i < vm->fc_ndrives; i++) {
        if (strcmp(vm->fc_drives[i].id, id) != 0)
            continue;
        if (path && access(path, F_OK) != 0) {
            snprintf(msg, sizeof(msg), "Drive config error: Unable to patch the block device: "
                     "%s (os error %d) Please verify the request arguments.",
                     strerror(errno), errno);
            fc_reply(vm, 400, msg);
            return;
        }
        if (path)
            snprintf(vm->fc_drives[i].path, sizeof(vm->fc_drives[i].path), "%s", path);
        fc_reply(vm, 204, NULL);
        return;
    }
    fc_reply(vm, 400, "Drive config error: Unable to patch the block device: Device manager "
                      "error: Device not found Please verify the request arguments.");
}

/* The microVM state as chsim writes it: the machine and its drives. */
static char *fc_state_text(const struct chsim_vm *vm)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);

    if (!f)
        return NULL;
    fprintf(f, "{\"chsim_fc\":{\"vcpus\":%d,\"mem_mib\":%d,\"drives\":[", vm->fc_vcpus,
            vm->fc_mem_mib);
    for (int i = 0; i < vm->fc_ndrives; i++) {
        char *qi = chsim_json_str(vm->fc_drives[i].id), *qp = chsim_json_str(vm->fc_drives[i].path);

        fprintf(f, "%s{\"id\":%s,\"path\":%s,\"root\":%s}", i ? "," : "", qi, qp,
                vm->fc_drives[i].root ? "true" : "false");
        free(qi);
        free(qp);
    }
    fputs("]}}\n", f);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static int fc_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "we");
    int rc = 0;

    if (!f)
        return -errno;
    if (fputs(text, f) == EOF)
        rc = -EIO;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

/* PUT /snapshot/create: only a paused microVM (its vCPUs refuse to save
 * while running); the state file, then the memory file. */
static void fc_snap_create(struct chsim_vm *vm, yajl_val root)
{
    const char *snap = fc_str(root, "snapshot_path"), *mem = fc_str(root, "mem_file_path");
    const char *type = fc_str(root, "snapshot_type");
    char msg[1024], memtext[128], *state;
    int rc;

    if (!snap || !mem) {
        snprintf(msg, sizeof(msg), "%smissing field `%s`.", deser,
                 !mem ? "mem_file_path" : "snapshot_path");
        fc_reply(vm, 400, msg);
        return;
    }
    if (type && strcmp(type, "Full") != 0 && strcmp(type, "Diff") != 0) {
        snprintf(msg, sizeof(msg), "%sunknown variant `%.64s`, expected `Full` or `Diff`.",
                 deser, type);
        fc_reply(vm, 400, msg);
        return;
    }
    if (vm->state != CHSIM_PAUSED) {
        fc_reply(vm, 400, "Create snapshot error: Cannot save the microVM state: Operation "
                          "not allowed: save/restore unavailable while running");
        return;
    }
    state = fc_state_text(vm);
    rc = state ? fc_write(snap, state) : -ENOMEM;
    free(state);
    if (rc) {
        snprintf(msg, sizeof(msg), "Create snapshot error: Cannot perform open on the snapshot "
                 "backing file: %s (os error %d)", strerror(-rc), -rc);
        fc_reply(vm, 400, msg);
        return;
    }
    snprintf(memtext, sizeof(memtext), "chsim firecracker guest memory %d MiB\n",
             vm->fc_mem_mib);
    rc = fc_write(mem, memtext);
    if (rc) {
        snprintf(msg, sizeof(msg), "Create snapshot error: Cannot perform open on the memory "
                 "backing file: %s (os error %d)", strerror(-rc), -rc);
        fc_reply(vm, 400, msg);
        return;
    }
    fc_reply(vm, 204, NULL);
}

/* Reads the state file back into vm; the reason in msg on failure. */
static bool fc_state_read(struct chsim_vm *vm, const char *path, char *msg, size_t n)
{
    static const char pre[] = "Load snapshot error: Failed to restore from snapshot: ";
    char buf[16384], err[128];
    FILE *f = fopen(path, "re");
    size_t len;
    yajl_val root, drives;
    const char *kv[] = { "chsim_fc", "vcpus", NULL }, *km[] = { "chsim_fc", "mem_mib", NULL };
    const char *kd[] = { "chsim_fc", "drives", NULL };

    if (!f) {
        snprintf(msg, n, "%sFailed to get snapshot state from file: Failed to open snapshot "
                 "file: %s (os error %d)", pre, strerror(errno), errno);
        return false;
    }
    len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    root = yajl_tree_parse(buf, err, sizeof(err));
    drives = yajl_tree_get(root, kd, yajl_t_array);
    if (!YAJL_IS_INTEGER(yajl_tree_get(root, kv, yajl_t_number)) || !drives) {
        yajl_tree_free(root);
        snprintf(msg, n, "%sFailed to get snapshot state from file: Failed to load snapshot "
                 "state from file: Invalid data", pre);
        return false;
    }
    vm->fc_vcpus = (int)YAJL_GET_INTEGER(yajl_tree_get(root, kv, yajl_t_number));
    vm->fc_mem_mib = (int)YAJL_GET_INTEGER(yajl_tree_get(root, km, yajl_t_number));
    vm->fc_ndrives = 0;
    for (size_t i = 0; i < drives->u.array.len && i < CHSIM_FC_DRIVES; i++) {
        yajl_val d = drives->u.array.values[i];
        const char *id = fc_str(d, "id"), *p = fc_str(d, "path");
        struct chsim_fc_drive *dr = &vm->fc_drives[vm->fc_ndrives++];

        snprintf(dr->id, sizeof(dr->id), "%s", id ? id : "");
        snprintf(dr->path, sizeof(dr->path), "%s", p ? p : "");
        dr->root = YAJL_IS_TRUE(yajl_tree_get(d, (const char *[]){ "root", NULL }, yajl_t_any));
        if (access(dr->path, F_OK) != 0) {
            snprintf(msg, n, "%sFailed to build microVM from snapshot: Cannot restore devices: "
                     "Block: Virtio backend error: %s (os error %d)", pre, strerror(errno),
                     errno);
            yajl_tree_free(root);
            return false;
        }
    }
    yajl_tree_free(root);
    return true;
}

/* PUT /snapshot/load on a fresh process: the state and memory files are
 * read back and the microVM is Paused, or Running with resume_vm.  A load
 * that fails leaves Firecracker unusable: it exits after the reply. */
static void fc_snap_load(struct chsim_vm *vm, yajl_val root)
{
    const char *kb[] = { "mem_backend", NULL }, *kr[] = { "resume_vm", NULL };
    yajl_val be = yajl_tree_get(root, kb, yajl_t_any), resume = yajl_tree_get(root, kr, yajl_t_any);
    const char *snap = fc_str(root, "snapshot_path"), *memf = fc_str(root, "mem_file_path");
    const char *type = be ? fc_str(be, "backend_type") : NULL;
    const char *mem = be ? fc_str(be, "backend_path") : memf;
    char msg[1024];

    if (!snap) {
        snprintf(msg, sizeof(msg), "%smissing field `snapshot_path`.", deser);
        fc_reply(vm, 400, msg);
        return;
    }
    if (be && memf) {
        snprintf(msg, sizeof(msg), "%stoo many fields: either `mem_backend` or `mem_file_path` "
                 "exclusively is required", deser);
        fc_reply(vm, 400, msg);
        return;
    }
    if (!be && !memf) {
        snprintf(msg, sizeof(msg), "%smissing field: either `mem_backend` or `mem_file_path` "
                 "is required", deser);
        fc_reply(vm, 400, msg);
        return;
    }
    if (be && (!YAJL_IS_OBJECT(be) || !mem || !type ||
               (strcmp(type, "File") != 0 && strcmp(type, "Uffd") != 0))) {
        snprintf(msg, sizeof(msg), "%smem_backend: expected backend_type `File` or `Uffd` and "
                 "backend_path.", deser);
        fc_reply(vm, 400, msg);
        return;
    }
    if (resume && !YAJL_IS_TRUE(resume) && !YAJL_IS_FALSE(resume)) {
        snprintf(msg, sizeof(msg), "%sinvalid type for `resume_vm`, expected a boolean.", deser);
        fc_reply(vm, 400, msg);
        return;
    }
    if (!fc_state_read(vm, snap, msg, sizeof(msg))) {
        fc_reply(vm, 400, msg);
        fc_exit_soon(1);
        return;
    }
    if (access(mem, R_OK) != 0) {
        snprintf(msg, sizeof(msg), "Load snapshot error: Failed to restore from snapshot: "
                 "Failed to load guest memory: Error creating guest memory from file: %s "
                 "(os error %d)", strerror(errno), errno);
        fc_reply(vm, 400, msg);
        fc_exit_soon(1);
        return;
    }
    vm->state = YAJL_IS_TRUE(resume) ? CHSIM_RUNNING : CHSIM_PAUSED;
    fc_reply(vm, 204, NULL);
}

/* GET /vm/config: the machine and the drives as configured or restored. */
static void fc_vm_config(struct chsim_vm *vm)
{
    struct chsim_resp r = { .server = "Firecracker API" };
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);

    if (!f) {
        fc_reply(vm, 500, "out of memory");
        return;
    }
    fprintf(f, "{\"machine-config\":{\"vcpu_count\":%d,\"mem_size_mib\":%d},\"drives\":[",
            vm->fc_vcpus, vm->fc_mem_mib);
    for (int i = 0; i < vm->fc_ndrives; i++) {
        char *qi = chsim_json_str(vm->fc_drives[i].id), *qp = chsim_json_str(vm->fc_drives[i].path);

        fprintf(f, "%s{\"drive_id\":%s,\"path_on_host\":%s,\"is_root_device\":%s}", i ? "," : "",
                qi, qp, vm->fc_drives[i].root ? "true" : "false");
        free(qi);
        free(qp);
    }
    fputs("]}", f);
    fclose(f);
    chsim_resp_set(&r, 200, "%s", out ? out : "{}");
    free(out);
    chsim_vm_reply(vm, &r);
}

void chsim_fc_serve(struct chsim_vm *vm, struct chsim_req *req)
{
    const char *p = req->path;
    char err[256], msg[512];
    yajl_val root = NULL;
    bool booted = vm->state == CHSIM_RUNNING || vm->state == CHSIM_PAUSED;

    if (strcmp(p, "/") == 0 && strcmp(req->method, "GET") == 0) {
        struct chsim_resp r = { .server = "Firecracker API" };

        chsim_resp_set(&r, 200, "{\"id\":\"anonymous-instance\",\"state\":\"%s\","
                       "\"vmm_version\":\"1.7.0\",\"app_name\":\"Firecracker\"}", fc_state(vm));
        chsim_vm_reply(vm, &r);
        return;
    }
    if (req->body_len > 0) {
        root = yajl_tree_parse(req->body, err, sizeof(err));
        if (!YAJL_IS_OBJECT(root)) {
            yajl_tree_free(root);
            fc_reply(vm, 400, "An error occurred when deserializing the json body of a request: "
                              "expected value at line 1 column 1.");
            return;
        }
    }
    if (strcmp(req->method, "PUT") == 0 && !root) {
        fc_reply(vm, 400, "Empty PUT request.");
        return;
    }
    if (strcmp(req->method, "PUT") == 0 &&
        (strcmp(p, "/machine-config") == 0 || strcmp(p, "/boot-source") == 0 ||
         strncmp(p, "/drives/", 8) == 0 || strncmp(p, "/network-interfaces/", 20) == 0)) {
        if (booted) {
            fc_reply(vm, 400, after_boot);
        } else if (strcmp(p, "/machine-config") == 0) {
            const char *kv[] = { "vcpu_count", NULL }, *km[] = { "mem_size_mib", NULL };
            yajl_val v = yajl_tree_get(root, kv, yajl_t_number);
            yajl_val m = yajl_tree_get(root, km, yajl_t_number);

            vm->fc_boot_path = true;
            if (!YAJL_IS_INTEGER(v) || !YAJL_IS_INTEGER(m) || YAJL_GET_INTEGER(v) < 1 ||
                YAJL_GET_INTEGER(v) > 32 || YAJL_GET_INTEGER(m) < 1) {
                fc_reply(vm, 400, "The vCPU number or memory size is invalid.");
            } else {
                vm->fc_vcpus = (int)YAJL_GET_INTEGER(v);
                vm->fc_mem_mib = (int)YAJL_GET_INTEGER(m);
                fc_reply(vm, 204, NULL);
            }
        } else if (strcmp(p, "/boot-source") == 0) {
            vm->fc_boot_path = true;
            if (!fc_str(root, "kernel_image_path")) {
                fc_reply(vm, 400, "An error occurred when deserializing the json body of a "
                                  "request: missing field `kernel_image_path`.");
            } else {
                vm->fc_kernel_set = true;
                fc_reply(vm, 204, NULL);
            }
        } else {
            bool drive = strncmp(p, "/drives/", 8) == 0;
            const char *pid = p + (drive ? 8 : 20);
            const char *bid = fc_str(root, drive ? "drive_id" : "iface_id");

            vm->fc_boot_path = true;
            if (!*pid || strchr(pid, '/')) {
                fc_reply(vm, 400, "Invalid request method and/or path.");
            } else if (!bid || strcmp(bid, pid) != 0) {
                snprintf(msg, sizeof(msg),
                         "The id from the path [%s] does not match the id from the body [%s]!",
                         pid, bid ? bid : "");
                fc_reply(vm, 400, msg);
            } else if (drive && !fc_drive_put(vm, pid, root)) {
                fc_reply(vm, 400, "Drive config error: Unable to create the virtio block "
                                  "device: Virtio backend error: No such file or directory "
                                  "(os error 2)");
            } else {
                fc_reply(vm, 204, NULL);
            }
        }
    } else if (strcmp(req->method, "PUT") == 0 && strcmp(p, "/actions") == 0) {
        const char *a = fc_str(root, "action_type");

        if (a && strcmp(a, "InstanceStart") == 0) {
            if (booted)
                fc_reply(vm, 400, after_boot);
            else if (!vm->fc_kernel_set)
                fc_reply(vm, 400, "Cannot start microvm without kernel configuration.");
            else {
                vm->state = CHSIM_RUNNING;
                fc_reply(vm, 204, NULL);
            }
        } else if (a && strcmp(a, "SendCtrlAltDel") == 0) {
            if (!booted) {
                fc_reply(vm, 400, before_boot);
            } else {
                /* The guest reboots, which ends a Firecracker process. */
                vm->state = CHSIM_SHUTDOWN;
                fc_reply(vm, 204, NULL);
                fc_exit_soon(0);
            }
        } else if (a && strcmp(a, "FlushMetrics") == 0) {
            fc_reply(vm, 204, NULL);
        } else {
            fc_reply(vm, 400, "An error occurred when deserializing the json body of a request: "
                              "unknown variant for `action_type`.");
        }
    } else if (strcmp(req->method, "PATCH") == 0 && strncmp(p, "/drives/", 8) == 0 && root) {
        fc_drive_patch(vm, p + 8, root);
    } else if (strcmp(req->method, "PUT") == 0 && strcmp(p, "/snapshot/create") == 0) {
        if (!booted)
            fc_reply(vm, 400, before_boot);
        else
            fc_snap_create(vm, root);
    } else if (strcmp(req->method, "PUT") == 0 && strcmp(p, "/snapshot/load") == 0) {
        if (booted)
            fc_reply(vm, 400, after_boot);
        else if (vm->fc_boot_path)
            fc_reply(vm, 400, "Load snapshot error: Loading a microVM snapshot not allowed "
                              "after configuring boot-specific resources.");
        else
            fc_snap_load(vm, root);
    } else if (strcmp(req->method, "GET") == 0 && strcmp(p, "/vm/config") == 0) {
        fc_vm_config(vm);
    } else if (strcmp(req->method, "PATCH") == 0 && strcmp(p, "/vm") == 0 && root) {
        const char *s = fc_str(root, "state");

        if (!s || (strcmp(s, "Paused") && strcmp(s, "Resumed"))) {
            fc_reply(vm, 400, "An error occurred when deserializing the json body of a request: "
                              "unknown variant for `state`.");
        } else if (!booted) {
            fc_reply(vm, 400, before_boot);
        } else {
            vm->state = strcmp(s, "Paused") == 0 ? CHSIM_PAUSED : CHSIM_RUNNING;
            fc_reply(vm, 204, NULL);
        }
    } else {
        snprintf(msg, sizeof(msg), "Invalid request method and/or path: %s %s.", req->method, p);
        fc_reply(vm, 400, msg);
    }
    yajl_tree_free(root);
}
