/* tests/chsim/fc.c: Firecracker's pre-boot API for one VM: configuration
 * PUTs, InstanceStart / SendCtrlAltDel actions and PATCH /vm pause/resume.
 * Success is 204; bad input is 400 {"fault_message": "..."}. */
#include "tests/chsim/chsim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void fc_exit_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    chsim_request_exit(0);
}

static ev_timer fc_exit_timer;

/* The member named key must be a string; NULL otherwise. */
static const char *fc_str(yajl_val root, const char *key)
{
    const char *path[] = { key, NULL };

    return YAJL_GET_STRING(yajl_tree_get(root, path, yajl_t_string));
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

            if (!YAJL_IS_INTEGER(v) || !YAJL_IS_INTEGER(m) || YAJL_GET_INTEGER(v) < 1 ||
                YAJL_GET_INTEGER(v) > 32 || YAJL_GET_INTEGER(m) < 1) {
                fc_reply(vm, 400, "The vCPU number or memory size is invalid.");
            } else {
                vm->fc_vcpus = (int)YAJL_GET_INTEGER(v);
                vm->fc_mem_mib = (int)YAJL_GET_INTEGER(m);
                fc_reply(vm, 204, NULL);
            }
        } else if (strcmp(p, "/boot-source") == 0) {
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

            if (!*pid || strchr(pid, '/')) {
                fc_reply(vm, 400, "Invalid request method and/or path.");
            } else if (!bid || strcmp(bid, pid) != 0) {
                snprintf(msg, sizeof(msg),
                         "The id from the path [%s] does not match the id from the body [%s]!",
                         pid, bid ? bid : "");
                fc_reply(vm, 400, msg);
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
                ev_timer_init(&fc_exit_timer, fc_exit_cb, 0.05, 0.);
                ev_timer_start(chsim_loop, &fc_exit_timer);
            }
        } else if (a && strcmp(a, "FlushMetrics") == 0) {
            fc_reply(vm, 204, NULL);
        } else {
            fc_reply(vm, 400, "An error occurred when deserializing the json body of a request: "
                              "unknown variant for `action_type`.");
        }
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
