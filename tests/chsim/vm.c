/* tests/chsim/vm.c: Cloud Hypervisor endpoint semantics for one VM: state
 * machine, device config and device tree, PCI slots, auto ids, eject, and
 * the add-fs connect to the vhost-user socket.  Error chains and statuses
 * follow the generation tables of CH-WIRE.md. */
#include "tests/chsim/chsim.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

/* Error kinds and their status per generation (head, v53, v46). */
enum kind { K_NOVM, K_NODEV, K_DUP, K_VALID, K_OTHER, K_BADREQ, K_NOTFOUND };
static const int kind_status[][3] = {
    [K_NOVM] = { 404, 404, 500 },
    [K_NODEV] = { 404, 500, 500 },
    [K_DUP] = { 409, 500, 500 },
    [K_VALID] = { 400, 500, 500 },
    [K_OTHER] = { 500, 500, 500 },
    [K_BADREQ] = { 400, 400, 400 },
    [K_NOTFOUND] = { 404, 404, 404 },
};

struct sb {
    char *p;
    size_t n, cap;
};

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->n + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;

        while (cap < b->n + (size_t)n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) {
            fprintf(stderr, "chsim: out of memory\n");
            exit(1);
        }
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

static void sb_str(struct sb *b, const char *s)
{
    char *q = chsim_json_str(s);

    sb_printf(b, "%s", q);
    free(q);
}

static void reply_sb(struct chsim_vm *vm, int code, struct sb *b)
{
    struct chsim_resp r = { .code = code, .body = b->p, .body_len = b->n };

    chsim_vm_reply(vm, &r);
}

static void reply_empty(struct chsim_vm *vm, int code)
{
    struct chsim_resp r = { .code = code };

    chsim_vm_reply(vm, &r);
}

static void reply_err(struct chsim_vm *vm, enum kind k, ...)
{
    const char *chain[16];
    int n = 0;
    va_list ap;
    struct chsim_resp r = { 0 };

    va_start(ap, k);
    while (n < 15) {
        const char *s = va_arg(ap, const char *);

        if (!s)
            break;
        chain[n++] = s;
    }
    va_end(ap);
    chain[n] = NULL;
    chsim_resp_chain(&r, kind_status[k][chsim_opt.gen], chain);
    chsim_vm_reply(vm, &r);
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- devices ---- */

static struct chsim_dev *dev_find(struct chsim_vm *vm, const char *id, bool config)
{
    for (struct chsim_dev *d = vm->devs; d; d = d->next)
        if (d->id[0] && strcmp(d->id, id) == 0 && (config ? d->in_config : d->in_tree))
            return d;
    return NULL;
}

static int slot_alloc(struct chsim_vm *vm)
{
    for (int s = 0; s < 32; s++)
        if (!(vm->slots & (1u << s))) {
            vm->slots |= 1u << s;
            return s;
        }
    return -1;
}

/* CH keeps config.fs and config.devices in the order they were added. */
static void dev_append(struct chsim_vm *vm, struct chsim_dev *d)
{
    struct chsim_dev **pp = &vm->devs;

    while (*pp)
        pp = &(*pp)->next;
    d->next = NULL;
    *pp = d;
}

static void dev_unlink_free(struct chsim_dev *d)
{
    struct chsim_vm *vm = d->vm;

    for (struct chsim_dev **pp = &vm->devs; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    ev_timer_stop(chsim_loop, &d->eject);
    if (d->slot >= 0)
        vm->slots &= ~(1u << d->slot);
    if (d->vhost_fd >= 0)
        close(d->vhost_fd);
    free(d);
}

/* The guest acknowledged the eject: the nodes leave the device tree, the
 * slot frees up and the vhost-user connection closes (virtiofsd exits). */
static void chsim_dev_eject_now(struct chsim_dev *d)
{
    d->in_tree = false;
    if (!d->in_config)
        dev_unlink_free(d);
}

static void eject_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    chsim_dev_eject_now(w->data);
}

static void assign_auto_id(struct chsim_vm *vm, struct chsim_dev *d)
{
    if (!d->id[0])
        snprintf(d->id, sizeof(d->id), "%s%u", d->type == CHSIM_DEV_FS ? "_fs" : "_vfio",
                 vm->next_auto++);
}

/* ---- vm.info ---- */

static const char *state_name(enum chsim_state s)
{
    switch (s) {
    case CHSIM_CREATED: return "Created";
    case CHSIM_RUNNING: return "Running";
    case CHSIM_PAUSED: return "Paused";
    case CHSIM_SHUTDOWN: return "Shutdown";
    default: return "Created";
    }
}

static uint64_t mem_total(void)
{
    uint64_t t = chsim_opt.mem_size;

    for (int i = 0; i < chsim_opt.nzones; i++)
        t += chsim_opt.zones[i].size;
    return t;
}

/* config.fs or config.devices, in the order the devices were added. */
static void info_devs(struct sb *b, const struct chsim_vm *vm, enum chsim_dev_type type,
                      const char *key)
{
    bool first = true;

    for (const struct chsim_dev *d = vm->devs; d; d = d->next) {
        if (!d->in_config || d->type != type)
            continue;
        if (first)
            sb_printf(b, ",\"%s\":[", key);
        else
            sb_printf(b, ",");
        first = false;
        if (type == CHSIM_DEV_FS) {
            sb_printf(b, "{\"tag\":");
            sb_str(b, d->tag);
            sb_printf(b, ",\"socket\":");
            sb_str(b, d->path);
            sb_printf(b, ",\"num_queues\":%d,\"queue_size\":%d", d->num_queues, d->queue_size);
        } else {
            sb_printf(b, "{\"path\":");
            sb_str(b, d->path);
            sb_printf(b, ",\"iommu\":false");
        }
        if (d->id[0]) {
            sb_printf(b, ",\"id\":");
            sb_str(b, d->id);
        }
        sb_printf(b, ",\"pci_segment\":%d}", d->pci_segment);
    }
    if (!first)
        sb_printf(b, "]");
}

static void vm_info(struct chsim_vm *vm)
{
    struct sb b = { 0 };
    bool first;
    const struct chsim_opts *o = &chsim_opt;

    if (vm->vminfo_override) {
        sb_printf(&b, "%s", vm->vminfo_override);
        reply_sb(vm, 200, &b);
        return;
    }
    sb_printf(&b, "{\"config\":{\"cpus\":{\"boot_vcpus\":%d,\"max_vcpus\":%d,"
              "\"kvm_hyperv\":false,\"max_phys_bits\":46},", o->cpus, o->cpus);
    sb_printf(&b, "\"memory\":{\"size\":%llu,\"mergeable\":false,\"hotplug_method\":\"Acpi\","
              "\"shared\":%s,\"hugepages\":%s,\"prefault\":false,\"thp\":true",
              (unsigned long long)o->mem_size, o->mem_shared ? "true" : "false",
              o->mem_hugepages ? "true" : "false");
    if (o->nzones > 0) {
        sb_printf(&b, ",\"zones\":[");
        for (int i = 0; i < o->nzones; i++) {
            sb_printf(&b, "%s{\"id\":", i ? "," : "");
            sb_str(&b, o->zones[i].id);
            sb_printf(&b, ",\"size\":%llu,\"shared\":%s,\"hugepages\":%s}",
                      (unsigned long long)o->zones[i].size,
                      o->zones[i].shared ? "true" : "false",
                      o->zones[i].hugepages ? "true" : "false");
        }
        sb_printf(&b, "]");
    }
    sb_printf(&b, "}");
    if (o->kernel) {
        sb_printf(&b, ",\"payload\":{\"kernel\":");
        sb_str(&b, o->kernel_path);
        sb_printf(&b, "}");
    }
    info_devs(&b, vm, CHSIM_DEV_FS, "fs");
    info_devs(&b, vm, CHSIM_DEV_VFIO, "devices");
    sb_printf(&b, ",\"iommu\":false,\"watchdog\":false,\"pvpanic\":false},\"state\":\"%s\","
              "\"memory_actual_size\":%llu", state_name(vm->state),
              (unsigned long long)mem_total());
    if (vm->state == CHSIM_RUNNING || vm->state == CHSIM_PAUSED) {
        sb_printf(&b, ",\"device_tree\":{");
        first = true;
        for (struct chsim_dev *d = vm->devs; d; d = d->next) {
            char bdf[32];

            if (!d->in_tree)
                continue;
            snprintf(bdf, sizeof(bdf), "\"%04x:00:%02x.0\"", (unsigned)d->pci_segment,
                     (unsigned)d->slot);
            if (!first)
                sb_printf(&b, ",");
            first = false;
            if (d->type == CHSIM_DEV_FS) {
                char pid[300];

                snprintf(pid, sizeof(pid), "_virtio-pci-%s", d->id);
                sb_str(&b, pid);
                sb_printf(&b, ":{\"id\":");
                sb_str(&b, pid);
                sb_printf(&b, ",\"resources\":[],\"parent\":null,\"children\":[");
                sb_str(&b, d->id);
                sb_printf(&b, "],\"pci_bdf\":%s},", bdf);
                sb_str(&b, d->id);
                sb_printf(&b, ":{\"id\":");
                sb_str(&b, d->id);
                sb_printf(&b, ",\"resources\":[],\"parent\":");
                sb_str(&b, pid);
                sb_printf(&b, ",\"children\":[],\"pci_bdf\":null}");
            } else {
                sb_str(&b, d->id);
                sb_printf(&b, ":{\"id\":");
                sb_str(&b, d->id);
                sb_printf(&b, ",\"resources\":[],\"parent\":null,\"children\":[],"
                          "\"pci_bdf\":%s}", bdf);
            }
        }
        sb_printf(&b, "}");
    }
    sb_printf(&b, "}");
    reply_sb(vm, 200, &b);
}

/* ---- JSON bodies ---- */

/* serde_json's wording for the common failures; the client shows it. */
static bool parse_body(struct chsim_vm *vm, struct chsim_req *req, yajl_val *out)
{
    char err[256];
    yajl_val v = yajl_tree_parse(req->body, err, sizeof(err));

    if (!v) {
        reply_err(vm, K_BADREQ, "Failed to deserialize JSON",
                  "expected value at line 1 column 1", NULL);
        return false;
    }
    if (!YAJL_IS_OBJECT(v)) {
        yajl_tree_free(v);
        reply_err(vm, K_BADREQ, "Failed to deserialize JSON",
                  "invalid type: expected struct at line 1 column 1", NULL);
        return false;
    }
    *out = v;
    return true;
}

static yajl_val jget(yajl_val obj, const char *key)
{
    const char *path[] = { key, NULL };

    return yajl_tree_get(obj, path, yajl_t_any);
}

/* Reads an optional string (want_str) or unsigned integer member; replies
 * with the deserialize error on a type mismatch. */
static bool jstr(struct chsim_vm *vm, yajl_val obj, const char *key, bool required,
                 const char **out)
{
    yajl_val v = jget(obj, key);
    char t[128];

    *out = NULL;
    if (!v || YAJL_IS_NULL(v)) {
        if (!required)
            return true;
        snprintf(t, sizeof(t), "missing field `%s` at line 1 column 2", key);
        reply_err(vm, K_BADREQ, "Failed to deserialize JSON", t, NULL);
        return false;
    }
    if (!YAJL_IS_STRING(v)) {
        snprintf(t, sizeof(t), "invalid type: expected a string for `%s`", key);
        reply_err(vm, K_BADREQ, "Failed to deserialize JSON", t, NULL);
        return false;
    }
    *out = YAJL_GET_STRING(v);
    return true;
}

static bool jint(struct chsim_vm *vm, yajl_val obj, const char *key, long long def,
                 long long *out)
{
    yajl_val v = jget(obj, key);
    char t[128];

    *out = def;
    if (!v || YAJL_IS_NULL(v))
        return true;
    if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < 0 || YAJL_GET_INTEGER(v) > 0xffffffffLL) {
        snprintf(t, sizeof(t), "invalid type: expected u32 for `%s`", key);
        reply_err(vm, K_BADREQ, "Failed to deserialize JSON", t, NULL);
        return false;
    }
    *out = YAJL_GET_INTEGER(v);
    return true;
}

static bool jbool(struct chsim_vm *vm, yajl_val obj, const char *key, bool *out)
{
    yajl_val v = jget(obj, key);

    *out = false;
    if (!v || YAJL_IS_NULL(v))
        return true;
    if (!YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v)) {
        char t[128];

        snprintf(t, sizeof(t), "invalid type: expected a boolean for `%s`", key);
        reply_err(vm, K_BADREQ, "Failed to deserialize JSON", t, NULL);
        return false;
    }
    *out = YAJL_IS_TRUE(v);
    return true;
}

/* ---- hot add pipeline: latency, vhost-user connect, commit ---- */

static const char *add_top(const struct chsim_dev *d)
{
    return d->type == CHSIM_DEV_FS ? "The fs could not be added to the VM"
                                   : "The device could not be added to the VM";
}

static void add_commit(struct chsim_vm *vm)
{
    struct chsim_dev *d = vm->cur_dev;
    struct sb b = { 0 };

    vm->cur_dev = NULL;
    d->slot = slot_alloc(vm);
    if (d->slot < 0) {
        const char *top = add_top(d);

        if (d->vhost_fd >= 0)
            close(d->vhost_fd);
        free(d);
        reply_err(vm, K_OTHER, "Error from API", top, "Error from device manager",
                  "Failed to allocate PCI device id", NULL);
        return;
    }
    assign_auto_id(vm, d);
    d->in_config = d->in_tree = true;
    dev_append(vm, d);
    sb_printf(&b, "{\"id\":");
    sb_str(&b, d->id);
    sb_printf(&b, ",\"bdf\":\"%04x:00:%02x.0\"}", (unsigned)d->pci_segment, (unsigned)d->slot);
    reply_sb(vm, 200, &b);
}

static int try_connect(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;

        close(fd);
        return -e;
    }
    return fd;
}

static void add_step(struct chsim_vm *vm);

static void work_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    add_step(w->data);
}

/* Stage 0: latency; stage 1: connect (retried every 100 ms on a timer so
 * other VMs keep being served); then commit. */
static void add_step(struct chsim_vm *vm)
{
    struct chsim_dev *d = vm->cur_dev;

    if (d->slot == -2) {
        d->slot = -1;
        if (chsim_opt.add_latency_ms > 0) {
            ev_timer_set(&vm->work, chsim_opt.add_latency_ms / 1000., 0.);
            ev_timer_start(chsim_loop, &vm->work);
            return;
        }
    }
    if (d->type == CHSIM_DEV_FS && !chsim_opt.no_connect) {
        int fd = try_connect(d->path);

        if (fd < 0) {
            if (vm->connect_deadline == 0)
                vm->connect_deadline = now_ms() + chsim_opt.connect_timeout_ms;
            if (now_ms() >= vm->connect_deadline || fd == -ENAMETOOLONG) {
                vm->cur_dev = NULL;
                free(d);
                reply_err(vm, K_OTHER, "Error from API", "The fs could not be added to the VM",
                          "Error from device manager", "Cannot create virtio-fs device",
                          "Failed to connect to vhost-user backend",
                          chsim_opt.gen == CHSIM_HEAD ? "Timed out waiting for vhost-user connection"
                                                      : "Connection to socket failed", NULL);
                return;
            }
            ev_timer_set(&vm->work, 0.1, 0.);
            ev_timer_start(chsim_loop, &vm->work);
            return;
        }
        d->vhost_fd = fd;
    }
    add_commit(vm);
}

/* Checks shared by both device types, in CH's order: config validation
 * (reserved prefix, duplicate id), then the device manager's tree check. */
static bool check_id(struct chsim_vm *vm, struct chsim_dev *d)
{
    char t[512];

    if (!d->id[0])
        return true;
    if (strncmp(d->id, "__", 2) == 0) {
        snprintf(t, sizeof(t), "Identifier %s uses reserved \"__\" prefix", d->id);
        reply_err(vm, K_VALID, "Error from API", add_top(d), "Failed to validate config", t, NULL);
        return false;
    }
    if (dev_find(vm, d->id, true)) {
        snprintf(t, sizeof(t), "Identifier %s is not unique", d->id);
        reply_err(vm, K_DUP, "Error from API", add_top(d), "Failed to validate config", t, NULL);
        return false;
    }
    return true;
}

static bool check_tree(struct chsim_vm *vm, struct chsim_dev *d)
{
    char t[512];

    if (d->id[0] && dev_find(vm, d->id, false)) {
        snprintf(t, sizeof(t), "Invalid identifier as it is not unique: %s", d->id);
        reply_err(vm, K_OTHER, "Error from API", add_top(d), "Error from device manager", t, NULL);
        return false;
    }
    return true;
}

static bool shared_memory_ok(void)
{
    if (chsim_opt.mem_shared || chsim_opt.mem_hugepages)
        return true;
    if (chsim_opt.mem_size != 0 || chsim_opt.nzones == 0)
        return false;
    for (int i = 0; i < chsim_opt.nzones; i++)
        if (!chsim_opt.zones[i].shared && !chsim_opt.zones[i].hugepages)
            return false;
    return true;
}

static struct chsim_dev *dev_new(struct chsim_vm *vm, enum chsim_dev_type type)
{
    struct chsim_dev *d = calloc(1, sizeof(*d));

    if (!d) {
        fprintf(stderr, "chsim: out of memory\n");
        exit(1);
    }
    d->vm = vm;
    d->type = type;
    d->vhost_fd = -1;
    d->slot = -2;
    ev_timer_init(&d->eject, eject_cb, 0., 0.);
    d->eject.data = d;
    return d;
}

static void start_add(struct chsim_vm *vm, struct chsim_dev *d)
{
    if (!check_tree(vm, d)) {
        free(d);
        return;
    }
    if (vm->state != CHSIM_RUNNING && vm->state != CHSIM_PAUSED) {
        /* Cold add: config only; ids and slots come at boot. */
        d->slot = -1;
        d->in_config = true;
        dev_append(vm, d);
        reply_empty(vm, 204);
        return;
    }
    vm->cur_dev = d;
    vm->connect_deadline = 0;
    add_step(vm);
}

static void add_fs(struct chsim_vm *vm, struct chsim_req *req)
{
    yajl_val root;
    const char *tag, *sock, *id;
    long long nq, qs, seg;
    bool iommu;
    struct chsim_dev *d;
    char t[256];

    if (!parse_body(vm, req, &root))
        return;
    if (!jstr(vm, root, "tag", true, &tag) || !jstr(vm, root, "socket", true, &sock) ||
        !jstr(vm, root, "id", false, &id) || !jint(vm, root, "num_queues", 1, &nq) ||
        !jint(vm, root, "queue_size", 1024, &qs) || !jint(vm, root, "pci_segment", 0, &seg) ||
        !jbool(vm, root, "iommu", &iommu)) {
        yajl_tree_free(root);
        return;
    }
    d = dev_new(vm, CHSIM_DEV_FS);
    /* CH truncates long tags silently (only its CLI rejects them). */
    snprintf(d->tag, sizeof(d->tag), "%.36s", tag);
    snprintf(d->path, sizeof(d->path), "%s", sock);
    snprintf(d->id, sizeof(d->id), "%s", id ? id : "");
    d->num_queues = (int)nq;
    d->queue_size = (int)qs;
    d->pci_segment = (int)seg;
    yajl_tree_free(root);

    if (!check_id(vm, d)) {
        free(d);
        return;
    }
    t[0] = '\0';
    if (!shared_memory_ok())
        snprintf(t, sizeof(t), "Using vhost-user requires using shared memory or huge pages");
    else if (nq == 0 || nq > chsim_opt.cpus)
        snprintf(t, sizeof(t), "Number of queues to virtio_fs (%lld) exceeds the number of vCPUs (%d)",
                 nq, chsim_opt.cpus);
    else if (qs == 0 || (qs & (qs - 1)) || qs > 32768)
        snprintf(t, sizeof(t), "Queue size %lld is not a power of two or exceeds 32768", qs);
    else if (iommu)
        snprintf(t, sizeof(t), "Device is not allowed to use IOMMU");
    if (t[0]) {
        free(d);
        reply_err(vm, K_VALID, "Error from API", "The fs could not be added to the VM",
                  "Failed to validate config", t, NULL);
        return;
    }
    start_add(vm, d);
}

static void add_device(struct chsim_vm *vm, struct chsim_req *req)
{
    yajl_val root;
    const char *path, *id;
    long long seg;
    bool iommu;
    struct chsim_dev *d;
    struct stat st;
    char t[4200];

    if (!parse_body(vm, req, &root))
        return;
    if (!jstr(vm, root, "path", true, &path) || !jstr(vm, root, "id", false, &id) ||
        !jint(vm, root, "pci_segment", 0, &seg) || !jbool(vm, root, "iommu", &iommu)) {
        yajl_tree_free(root);
        return;
    }
    d = dev_new(vm, CHSIM_DEV_VFIO);
    snprintf(d->path, sizeof(d->path), "%s", path);
    snprintf(d->id, sizeof(d->id), "%s", id ? id : "");
    d->pci_segment = (int)seg;
    yajl_tree_free(root);
    if (!check_id(vm, d)) {
        free(d);
        return;
    }
    for (struct chsim_dev *o = vm->devs; o; o = o->next)
        if (o->in_config && o->type == CHSIM_DEV_VFIO && strcmp(o->path, d->path) == 0) {
            snprintf(t, sizeof(t), "Duplicated device path: %s", d->path);
            free(d);
            reply_err(vm, K_DUP, "Error from API", "The device could not be added to the VM",
                      "Failed to validate config", t, NULL);
            return;
        }
    if ((vm->state == CHSIM_RUNNING || vm->state == CHSIM_PAUSED) &&
        (stat(d->path, &st) < 0 || !S_ISDIR(st.st_mode))) {
        if (!check_tree(vm, d)) {
            free(d);
            return;
        }
        free(d);
        reply_err(vm, K_OTHER, "Error from API", "The device could not be added to the VM",
                  "Error from device manager", "Cannot create a VFIO device",
                  "invalid file path", NULL);
        return;
    }
    start_add(vm, d);
}

static void remove_device(struct chsim_vm *vm, struct chsim_req *req)
{
    yajl_val root;
    const char *id;
    struct chsim_dev *d;
    char t[512];

    if (!parse_body(vm, req, &root))
        return;
    if (!jstr(vm, root, "id", true, &id)) {
        yajl_tree_free(root);
        return;
    }
    d = dev_find(vm, id, true);
    if (!d) {
        snprintf(t, sizeof(t), "Failed to find device corresponding to the given identifier: %s", id);
        yajl_tree_free(root);
        reply_err(vm, K_NODEV, "Error from API", "The device could not be removed from the VM",
                  "Error from device manager", t, NULL);
        return;
    }
    yajl_tree_free(root);
    d->in_config = false;
    if (!d->in_tree) {
        dev_unlink_free(d);
    } else if (!chsim_opt.no_eject) {
        if (chsim_opt.eject_delay_ms <= 0) {
            chsim_dev_eject_now(d);
        } else {
            ev_timer_set(&d->eject, chsim_opt.eject_delay_ms / 1000., 0.);
            ev_timer_start(chsim_loop, &d->eject);
        }
    }
    reply_empty(vm, 204);
}

/* Boot gives cold-added devices their ids and slots, in config order. */
static void boot(struct chsim_vm *vm)
{
    for (struct chsim_dev *d = vm->devs; d; d = d->next) {
        if (!d->in_config || d->in_tree)
            continue;
        assign_auto_id(vm, d);
        d->slot = slot_alloc(vm);
        d->in_tree = d->slot >= 0;
    }
    vm->state = CHSIM_RUNNING;
}

/* Stopping the VM drops every device from the tree, closing the vhost-user
 * connections like CH does when its VM goes away. */
static void stop_devices(struct chsim_vm *vm)
{
    struct chsim_dev *d = vm->devs, *next;

    for (; d; d = next) {
        next = d->next;
        ev_timer_stop(chsim_loop, &d->eject);
        if (d->vhost_fd >= 0) {
            close(d->vhost_fd);
            d->vhost_fd = -1;
        }
        if (d->slot >= 0)
            vm->slots &= ~(1u << d->slot);
        d->slot = -1;
        d->in_tree = false;
        if (!d->in_config)
            dev_unlink_free(d);
    }
}

static void exit_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    chsim_request_exit(0);
}

static ev_timer exit_timer;

void chsim_vm_serve(struct chsim_vm *vm, struct chsim_req *req)
{
    const char *ep = req->ep >= 0 ? chsim_ep_name(req->ep) : NULL;
    bool get = strcmp(req->method, "GET") == 0, put = strcmp(req->method, "PUT") == 0;
    bool has_body = req->body_len > 0;

    if (!ep) {
        reply_err(vm, K_NOTFOUND, "Not Found", NULL);
        return;
    }
    if (strcmp(ep, "vmm.ping") == 0) {
        struct sb b = { 0 };
        static const char *const ver[] = { "v54.0-dev", "v53.0", "v46.0" };

        if (!get) {
            reply_err(vm, K_BADREQ, "Bad Request", NULL);
            return;
        }
        sb_printf(&b, "{\"build_version\":\"%s-chsim\",\"version\":\"%s\",\"pid\":%d,"
                  "\"features\":[]}", ver[chsim_opt.gen], ver[chsim_opt.gen] + 1, (int)getpid());
        reply_sb(vm, 200, &b);
        return;
    }
    if (strcmp(ep, "vmm.shutdown") == 0) {
        if (!put || has_body) {
            reply_err(vm, K_BADREQ, "Bad Request", NULL);
            return;
        }
        stop_devices(vm);
        reply_empty(vm, 200);
        /* Let the reply reach the client before the process goes. */
        ev_timer_init(&exit_timer, exit_cb, 0.05, 0.);
        ev_timer_start(chsim_loop, &exit_timer);
        return;
    }
    if (strcmp(ep, "vm.info") == 0) {
        if (!get) {
            reply_err(vm, K_BADREQ, "Bad Request", NULL);
            return;
        }
        if (vm->state == CHSIM_NOVM) {
            reply_err(vm, K_NOVM, "Error from API", "The VM info is not available",
                      "VM is not created", NULL);
            return;
        }
        vm_info(vm);
        return;
    }
    if (!put) {
        reply_err(vm, K_BADREQ, "Bad Request", NULL);
        return;
    }
    if (strcmp(ep, "vm.create") == 0) {
        if (!has_body) {
            reply_err(vm, K_BADREQ, "Bad Request", NULL);
            return;
        }
        if (vm->state != CHSIM_NOVM) {
            reply_err(vm, K_OTHER, "Error from API", "The VM could not be created",
                      "VM is already created", NULL);
            return;
        }
        vm->state = CHSIM_CREATED;
        reply_empty(vm, 204);
        return;
    }
    {
        static const char *const need_body[] = { "vm.add-fs", "vm.add-device",
                                                 "vm.remove-device", "vm.snapshot", NULL };
        static const char *const no_body[] = { "vm.pause", "vm.resume", "vm.shutdown",
                                               "vm.power-button", "vm.boot", NULL };
        bool needs = false, forbids = false;

        for (int i = 0; need_body[i]; i++)
            needs |= strcmp(ep, need_body[i]) == 0;
        for (int i = 0; no_body[i]; i++)
            forbids |= strcmp(ep, no_body[i]) == 0;
        if ((needs && !has_body) || (forbids && has_body)) {
            reply_err(vm, K_BADREQ, "Bad Request", NULL);
            return;
        }
        if (!needs && !forbids) {
            reply_err(vm, K_OTHER, "Error from API", "chsim does not simulate this endpoint", NULL);
            return;
        }
    }
    if (vm->state == CHSIM_NOVM) {
        reply_err(vm, K_NOVM, "Error from API", "The VM could not be handled", "VM is not created",
                  NULL);
        return;
    }
    if (strcmp(ep, "vm.add-fs") == 0) {
        add_fs(vm, req);
    } else if (strcmp(ep, "vm.add-device") == 0) {
        add_device(vm, req);
    } else if (strcmp(ep, "vm.remove-device") == 0) {
        remove_device(vm, req);
    } else if (strcmp(ep, "vm.pause") == 0) {
        if (vm->state != CHSIM_RUNNING) {
            reply_err(vm, K_OTHER, "Error from API", "The VM could not be paused",
                      "VM is not running", NULL);
            return;
        }
        vm->state = CHSIM_PAUSED;
        reply_empty(vm, 204);
    } else if (strcmp(ep, "vm.resume") == 0) {
        if (vm->state != CHSIM_PAUSED) {
            reply_err(vm, K_OTHER, "Error from API", "The VM could not be resumed",
                      "VM is not paused", NULL);
            return;
        }
        vm->state = CHSIM_RUNNING;
        reply_empty(vm, 204);
    } else if (strcmp(ep, "vm.shutdown") == 0) {
        if (vm->state != CHSIM_RUNNING && vm->state != CHSIM_PAUSED) {
            reply_err(vm, K_OTHER, "Error from API", "The VM could not shut down",
                      "VM is not running", NULL);
            return;
        }
        stop_devices(vm);
        vm->state = CHSIM_SHUTDOWN;
        reply_empty(vm, 204);
    } else if (strcmp(ep, "vm.power-button") == 0) {
        if (vm->state != CHSIM_RUNNING) {
            reply_err(vm, K_OTHER, "Error from API", "The VM could not be powered off",
                      "VM is not running", NULL);
            return;
        }
        reply_empty(vm, 204);
    } else if (strcmp(ep, "vm.boot") == 0) {
        if (vm->state == CHSIM_RUNNING || vm->state == CHSIM_PAUSED) {
            reply_err(vm, K_OTHER, "Error from API", "The VM could not boot",
                      "VM is already running", NULL);
            return;
        }
        boot(vm);
        reply_empty(vm, 204);
    } else if (strcmp(ep, "vm.snapshot") == 0) {
        yajl_val root;
        const char *url;

        if (!parse_body(vm, req, &root))
            return;
        if (!jstr(vm, root, "destination_url", true, &url)) {
            yajl_tree_free(root);
            return;
        }
        yajl_tree_free(root);
        if (vm->state != CHSIM_PAUSED) {
            reply_err(vm, K_OTHER, "Error from API", "The VM could not be snapshotted",
                      "VM is not paused", NULL);
            return;
        }
        reply_empty(vm, 204);
    }
}

void chsim_vm_init(struct chsim_vm *vm, int index)
{
    memset(vm, 0, sizeof(*vm));
    vm->index = index;
    vm->lfd = -1;
    vm->state = chsim_opt.no_vm ? CHSIM_NOVM : chsim_opt.kernel ? CHSIM_RUNNING : CHSIM_CREATED;
    vm->slots = chsim_reserved_slots;
    memcpy(vm->faults, chsim_opt.faults, sizeof(vm->faults));
    ev_timer_init(&vm->work, work_cb, 0., 0.);
    vm->work.data = vm;
}

void chsim_vm_fini(struct chsim_vm *vm)
{
    ev_timer_stop(chsim_loop, &vm->work);
    if (vm->cur_dev) {
        if (vm->cur_dev->vhost_fd >= 0)
            close(vm->cur_dev->vhost_fd);
        free(vm->cur_dev);
        vm->cur_dev = NULL;
    }
    while (vm->devs) {
        vm->devs->in_config = false;
        dev_unlink_free(vm->devs);
    }
    free(vm->vminfo_override);
    vm->vminfo_override = NULL;
}
