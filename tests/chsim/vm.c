/* tests/chsim/vm.c: Cloud Hypervisor endpoint semantics for one VMM: the
 * VM config (from the command line or vm.create), boot and shutdown, the
 * device config and device tree, PCI slots, auto ids, eject, and the add-fs
 * connect to the vhost-user socket.  Error chains are CH's own texts; their
 * statuses follow the generation tables of CH-WIRE.md. */
#include "tests/chsim/chsim.h"

#include <errno.h>
#include <inttypes.h>
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

/* CH's texts (vmm/src/api, vm.rs, device_manager.rs, config.rs). */
#define E_API "Error from API"
#define E_DM "Error from device manager"
#define E_VALIDATE "Failed to validate config"
#define E_NOVM "VM is not created"
#define E_NOTRUN "VM is not running"

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

/* "<key>":"<escaped s>" with a leading comma unless first. */
static void sb_kstr(struct sb *b, const char *key, const char *s)
{
    char *q = chsim_json_str(s);

    sb_printf(b, "%s\"%s\":%s", b->n && b->p[b->n - 1] != '{' ? "," : "", key, q);
    free(q);
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

static bool booted(const struct chsim_vm *vm)
{
    return vm->state == CHSIM_RUNNING || vm->state == CHSIM_PAUSED;
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

/* CH keeps each config list in the order the devices were added. */
static void dev_append(struct chsim_vm *vm, struct chsim_dev *d)
{
    struct chsim_dev **pp = &vm->devs;

    while (*pp)
        pp = &(*pp)->next;
    d->next = NULL;
    *pp = d;
}

static void dev_free(struct chsim_dev *d)
{
    if (d->vhost_fd >= 0)
        close(d->vhost_fd);
    free(d);
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
    dev_free(d);
}

/* The guest acknowledged the eject: the nodes leave the device tree, the
 * slot frees up and the vhost-user connection closes (virtiofsd exits). */
static void dev_eject_now(struct chsim_dev *d)
{
    d->in_tree = false;
    d->vm->ejects++;
    if (!d->in_config)
        dev_unlink_free(d);
}

static void eject_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    dev_eject_now(w->data);
}

int chsim_vm_eject_pending(struct chsim_vm *vm)
{
    struct chsim_dev *d = vm->devs, *next;
    int n = 0;

    for (; d; d = next) {
        next = d->next;
        if (d->in_tree && d->eject_pending) {
            ev_timer_stop(chsim_loop, &d->eject);
            dev_eject_now(d);
            n++;
        }
    }
    return n;
}

static const char *const auto_prefix[] = {
    [CHSIM_DEV_FS] = "_fs", [CHSIM_DEV_VFIO] = "_vfio",
    [CHSIM_DEV_DISK] = "_disk", [CHSIM_DEV_NET] = "_net",
};

/* One counter for every device type, skipping names in use, as CH does. */
static void assign_auto_id(struct chsim_vm *vm, struct chsim_dev *d)
{
    while (!d->id[0]) {
        snprintf(d->id, sizeof(d->id), "%s%u", auto_prefix[d->type], vm->next_auto++);
        for (struct chsim_dev *o = vm->devs; o; o = o->next)
            if (o != d && strcmp(o->id, d->id) == 0)
                d->id[0] = '\0';
    }
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
    d->slot = -1;
    d->num_queues = 1;
    d->queue_size = type == CHSIM_DEV_NET ? 256 : type == CHSIM_DEV_DISK ? 128 : 1024;
    ev_timer_init(&d->eject, eject_cb, 0., 0.);
    d->eject.data = d;
    return d;
}

/* ---- vm.info ---- */

static const char *state_name(enum chsim_state s)
{
    switch (s) {
    case CHSIM_RUNNING: return "Running";
    case CHSIM_PAUSED: return "Paused";
    default: return "Created";
    }
}

static uint64_t mem_total(const struct chsim_cfg *c)
{
    uint64_t t = c->mem_size;

    for (int i = 0; i < c->nzones; i++)
        t += c->zones[i].size;
    return t;
}

static const char *tf(bool v)
{
    return v ? "true" : "false";
}

/* One entry of config.disks, config.net, config.fs or config.devices,
 * fields in CH's order; unset options are left out (skip_serializing_none)
 * and iommu only appears when true. */
static void info_dev(struct sb *b, const struct chsim_dev *d)
{
    sb_printf(b, "{");
    if (d->id[0])
        sb_kstr(b, "id", d->id);
    sb_printf(b, "%s\"pci_segment\":%d", d->id[0] ? "," : "", d->pci_segment);
    switch (d->type) {
    case CHSIM_DEV_FS:
        sb_kstr(b, "tag", d->tag);
        sb_kstr(b, "socket", d->path);
        sb_printf(b, ",\"num_queues\":%d,\"queue_size\":%d", d->num_queues, d->queue_size);
        break;
    case CHSIM_DEV_VFIO:
        if (d->path[0])
            sb_kstr(b, "path", d->path);
        sb_printf(b, ",\"x_exclude_mmap_bars\":[]");
        break;
    case CHSIM_DEV_DISK:
        sb_kstr(b, "path", d->path);
        sb_printf(b, ",\"readonly\":false,\"direct\":false,\"num_queues\":%d,\"queue_size\":%d,"
                  "\"vhost_user\":false,\"disable_io_uring\":false,\"disable_aio\":false,"
                  "\"backing_files\":false,\"sparse\":true,\"image_type\":\"Raw\","
                  "\"lock_granularity\":\"ByteRange\"", d->num_queues, d->queue_size);
        break;
    case CHSIM_DEV_NET:
        sb_kstr(b, "tap", d->tag);
        sb_printf(b, ",\"ip\":\"192.168.249.1\",\"mask\":\"255.255.255.0\"");
        sb_kstr(b, "mac", d->mac);
        sb_printf(b, ",\"host_mac\":\"fe:54:00:2a:63:01\",\"mtu\":1500,\"num_queues\":2,"
                  "\"queue_size\":%d,\"vhost_user\":false,\"vhost_mode\":\"Client\","
                  "\"offload_tso\":true,\"offload_ufo\":true,\"offload_csum\":true",
                  d->queue_size);
        break;
    }
    sb_printf(b, "}");
}

static void info_devs(struct sb *b, const struct chsim_vm *vm, enum chsim_dev_type type,
                      const char *key)
{
    bool first = true;

    for (const struct chsim_dev *d = vm->devs; d; d = d->next) {
        if (!d->in_config || d->type != type)
            continue;
        sb_printf(b, first ? ",\"%s\":[" : ",", key);
        first = false;
        info_dev(b, d);
    }
    if (!first)
        sb_printf(b, "]");
}

static void info_config(struct sb *b, const struct chsim_vm *vm)
{
    const struct chsim_cfg *c = &vm->cfg;

    sb_printf(b, "{\"cpus\":{\"boot_vcpus\":%d,\"max_vcpus\":%d,\"topology\":{"
              "\"threads_per_core\":1,\"cores_per_die\":%d,\"dies_per_package\":1,"
              "\"packages\":1},\"kvm_hyperv\":false,\"max_phys_bits\":46,\"features\":"
              "{\"amx\":false},\"nested\":true,\"core_scheduling\":\"Vm\",\"profile\":\"Host\"}",
              c->cpus, c->max_cpus, c->max_cpus);
    sb_printf(b, ",\"memory\":{\"size\":%" PRIu64 ",\"mergeable\":false,\"hotplug_method\":"
              "\"Acpi\",\"shared\":%s,\"hugepages\":%s,\"prefault\":false,\"reserve\":false",
              c->mem_size, tf(c->mem_shared), tf(c->mem_hugepages));
    if (c->nzones > 0) {
        sb_printf(b, ",\"zones\":[");
        for (int i = 0; i < c->nzones; i++) {
            sb_printf(b, "%s{", i ? "," : "");
            sb_kstr(b, "id", c->zones[i].id);
            sb_printf(b, ",\"size\":%" PRIu64 ",\"shared\":%s,\"hugepages\":%s,"
                      "\"prefault\":false,\"reserve\":false,\"mergeable\":false}",
                      c->zones[i].size, tf(c->zones[i].shared), tf(c->zones[i].hugepages));
        }
        sb_printf(b, "]");
    }
    sb_printf(b, ",\"thp\":true}");
    if (c->kernel[0] || c->cmdline[0] || c->initramfs[0]) {
        sb_printf(b, ",\"payload\":{");
        if (c->kernel[0])
            sb_kstr(b, "kernel", c->kernel);
        if (c->cmdline[0])
            sb_kstr(b, "cmdline", c->cmdline);
        if (c->initramfs[0])
            sb_kstr(b, "initramfs", c->initramfs);
        sb_printf(b, "}");
    }
    info_devs(b, vm, CHSIM_DEV_DISK, "disks");
    info_devs(b, vm, CHSIM_DEV_NET, "net");
    sb_printf(b, ",\"rng\":{");
    sb_kstr(b, "src", c->rng_src);
    sb_printf(b, ",\"pci_segment\":0}");
    info_devs(b, vm, CHSIM_DEV_FS, "fs");
    sb_printf(b, ",\"serial\":{\"mode\":\"Null\"},\"console\":{\"mode\":\"Tty\","
              "\"pci_segment\":0},\"debug_console\":{\"mode\":\"Off\",\"iobase\":233}");
    info_devs(b, vm, CHSIM_DEV_VFIO, "devices");
    sb_printf(b, ",\"pvpanic\":false,\"iommu\":false,\"watchdog\":false,"
              "\"landlock_enable\":false}");
}

/* Guest addresses CH's allocators would hand out; only their shape matters. */
#define BAR64_BASE 0x3ff000000000ull
#define BAR32_BASE 0xc0000000ull

static void node_open(struct sb *b, bool *first, const char *id)
{
    sb_printf(b, "%s", *first ? "" : ",");
    *first = false;
    sb_str(b, id);
    sb_printf(b, ":{");
    sb_kstr(b, "id", id);
}

/* A virtio device is two nodes: the device, child of its virtio-pci
 * transport, which carries the BAR and the pci_bdf.  Unset parent and
 * pci_bdf are left out, as CH's skip_serializing_none does. */
static void node_virtio(struct sb *b, bool *first, const char *id, int slot)
{
    char pid[300];

    snprintf(pid, sizeof(pid), "_virtio-pci-%s", id);
    node_open(b, first, id);
    sb_printf(b, ",\"resources\":[]");
    sb_kstr(b, "parent", pid);
    sb_printf(b, ",\"children\":[]}");
    node_open(b, first, pid);
    sb_printf(b, ",\"resources\":[{\"PciBar\":{\"index\":0,\"base\":%llu,\"size\":524288,"
              "\"type_\":\"Mmio64\",\"prefetchable\":false}}],\"children\":[",
              BAR64_BASE + (unsigned long long)slot * 0x80000ull);
    sb_str(b, id);
    sb_printf(b, "],\"pci_bdf\":\"0000:00:%02x.0\"}", (unsigned)slot);
}

static void node_vfio(struct sb *b, bool *first, const struct chsim_dev *d)
{
    node_open(b, first, d->id);
    sb_printf(b, ",\"resources\":[{\"PciBar\":{\"index\":0,\"base\":%llu,\"size\":16777216,"
              "\"type_\":\"Mmio32\",\"prefetchable\":false}},{\"PciBar\":{\"index\":1,"
              "\"base\":%llu,\"size\":268435456,\"type_\":\"Mmio64\",\"prefetchable\":true}}],"
              "\"children\":[],\"pci_bdf\":\"%04x:00:%02x.0\"}",
              BAR32_BASE + (unsigned long long)d->slot * 0x1000000ull,
              0x2000000000ull + (unsigned long long)d->slot * 0x10000000ull,
              (unsigned)d->pci_segment, (unsigned)d->slot);
}

static void info_tree(struct sb *b, const struct chsim_vm *vm)
{
    bool first = true;

    sb_printf(b, ",\"device_tree\":{");
    node_open(b, &first, "__ioapic");
    sb_printf(b, ",\"resources\":[{\"MmioAddressRange\":{\"base\":4273995776,\"size\":4096}}],"
              "\"children\":[]}");
    node_open(b, &first, "__serial");
    sb_printf(b, ",\"resources\":[{\"PioAddressRange\":{\"base\":1016,\"size\":8}},"
              "{\"LegacyIrq\":4}],\"children\":[]}");
    node_virtio(b, &first, "__console", vm->console_slot);
    node_virtio(b, &first, "__rng", vm->rng_slot);
    for (const struct chsim_dev *d = vm->devs; d; d = d->next) {
        if (!d->in_tree)
            continue;
        if (d->type == CHSIM_DEV_VFIO)
            node_vfio(b, &first, d);
        else
            node_virtio(b, &first, d->id, d->slot);
    }
    sb_printf(b, "}");
}

static void vm_info(struct chsim_vm *vm)
{
    struct sb b = { 0 };

    if (vm->vminfo_override) {
        sb_printf(&b, "%s", vm->vminfo_override);
        reply_sb(vm, 200, &b);
        return;
    }
    sb_printf(&b, "{\"config\":");
    info_config(&b, vm);
    sb_printf(&b, ",\"state\":\"%s\",\"memory_actual_size\":%" PRIu64, state_name(vm->state),
              mem_total(&vm->cfg));
    if (booted(vm))
        info_tree(&b, vm);
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

static void serde_err(struct chsim_vm *vm, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void serde_err(struct chsim_vm *vm, const char *fmt, ...)
{
    char t[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(t, sizeof(t), fmt, ap);
    va_end(ap);
    reply_err(vm, K_BADREQ, "Failed to deserialize JSON", t, NULL);
}

/* Reads an optional or required string member; replies with the
 * deserialize error on a type mismatch. */
static bool jstr(struct chsim_vm *vm, yajl_val obj, const char *key, bool required,
                 const char **out)
{
    yajl_val v = jget(obj, key);

    *out = NULL;
    if (!v || YAJL_IS_NULL(v)) {
        if (required)
            serde_err(vm, "missing field `%s` at line 1 column 2", key);
        return !required;
    }
    if (!YAJL_IS_STRING(v)) {
        serde_err(vm, "invalid type: expected a string for `%s`", key);
        return false;
    }
    *out = YAJL_GET_STRING(v);
    return true;
}

/* An unsigned integer member of at most max; def when absent. */
static bool jint(struct chsim_vm *vm, yajl_val obj, const char *key, long long def,
                 long long max, long long *out)
{
    yajl_val v = jget(obj, key);

    *out = def;
    if (!v || YAJL_IS_NULL(v))
        return true;
    if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < 0 || YAJL_GET_INTEGER(v) > max) {
        serde_err(vm, "invalid value: expected an unsigned integer for `%s`", key);
        return false;
    }
    *out = YAJL_GET_INTEGER(v);
    return true;
}

static bool jbool(struct chsim_vm *vm, yajl_val obj, const char *key, bool *out)
{
    yajl_val v = jget(obj, key);

    if (!v || YAJL_IS_NULL(v))
        return true;
    if (!YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v)) {
        serde_err(vm, "invalid type: expected a boolean for `%s`", key);
        return false;
    }
    *out = YAJL_IS_TRUE(v);
    return true;
}

/* Copies an optional string member into buf (left as is when absent). */
static bool jcopy(struct chsim_vm *vm, yajl_val obj, const char *key, char *buf, size_t n)
{
    const char *s;

    if (!jstr(vm, obj, key, false, &s))
        return false;
    if (s)
        snprintf(buf, n, "%s", s);
    return true;
}

/* The fields of an FsConfig or DeviceConfig body, into d. */
static bool read_fs(struct chsim_vm *vm, yajl_val o, struct chsim_dev *d, bool *iommu)
{
    const char *tag, *sock;
    long long nq, qs, seg;

    if (!jstr(vm, o, "tag", true, &tag) || !jstr(vm, o, "socket", true, &sock) ||
        !jcopy(vm, o, "id", d->id, sizeof(d->id)) ||
        !jint(vm, o, "num_queues", 1, 0xffffffffLL, &nq) ||
        !jint(vm, o, "queue_size", 1024, 0xffff, &qs) ||
        !jint(vm, o, "pci_segment", 0, 0xffff, &seg) || !jbool(vm, o, "iommu", iommu))
        return false;
    /* CH truncates long tags silently (only its CLI rejects them). */
    snprintf(d->tag, sizeof(d->tag), "%.36s", tag);
    snprintf(d->path, sizeof(d->path), "%s", sock);
    d->num_queues = (int)nq;
    d->queue_size = (int)qs;
    d->pci_segment = (int)seg;
    return true;
}

static bool read_device(struct chsim_vm *vm, yajl_val o, struct chsim_dev *d, bool *iommu)
{
    long long seg;

    if (!jcopy(vm, o, "path", d->path, sizeof(d->path)) ||
        !jcopy(vm, o, "id", d->id, sizeof(d->id)) ||
        !jint(vm, o, "pci_segment", 0, 0xffff, &seg) || !jbool(vm, o, "iommu", iommu))
        return false;
    d->pci_segment = (int)seg;
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

        dev_free(d);
        reply_err(vm, K_OTHER, E_API, top, E_DM, "Failed to find an available PCI device ID",
                  "Could not find an available device slot on the PCI bus", NULL);
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

    if (!vm->add_waited) {
        vm->add_waited = true;
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
                dev_free(d);
                reply_err(vm, K_OTHER, E_API, "The fs could not be added to the VM", E_DM,
                          "Cannot create virtio-fs device",
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

/* Config validation of the VM config with d appended, in CH's order: the
 * checks of the device itself, then its identifier against every id in the
 * config.  Replies and returns false on the first failure. */
static bool validate_id(struct chsim_vm *vm, struct chsim_dev *d)
{
    char t[512];

    if (!d->id[0])
        return true;
    if (strncmp(d->id, "__", 2) == 0) {
        snprintf(t, sizeof(t), "Identifier %s is not valid", d->id);
        reply_err(vm, K_VALID, E_API, add_top(d), E_VALIDATE, t, NULL);
        return false;
    }
    if (dev_find(vm, d->id, true)) {
        snprintf(t, sizeof(t), "Identifier %s is not unique", d->id);
        reply_err(vm, K_DUP, E_API, add_top(d), E_VALIDATE, t, NULL);
        return false;
    }
    return true;
}

static bool validate_segment(struct chsim_vm *vm, struct chsim_dev *d)
{
    char t[128];

    if (d->pci_segment == 0)
        return true;
    snprintf(t, sizeof(t), "Invalid PCI segment id: %d", d->pci_segment);
    reply_err(vm, K_VALID, E_API, add_top(d), E_VALIDATE, t, NULL);
    return false;
}

static bool shared_memory_ok(const struct chsim_cfg *c)
{
    if (c->mem_shared || c->mem_hugepages)
        return true;
    if (c->mem_size != 0 || c->nzones == 0)
        return false;
    for (int i = 0; i < c->nzones; i++)
        if (!c->zones[i].shared && !c->zones[i].hugepages)
            return false;
    return true;
}

static bool validate_fs(struct chsim_vm *vm, struct chsim_dev *d, bool iommu)
{
    char t[256];

    t[0] = '\0';
    if (!shared_memory_ok(&vm->cfg))
        snprintf(t, sizeof(t), "Using vhost-user requires using shared memory or huge pages");
    else if (d->num_queues > vm->cfg.cpus)
        snprintf(t, sizeof(t), "Queue count (%d) must not exceed boot vCPUs (%d)",
                 d->num_queues, vm->cfg.cpus);
    else if (d->queue_size == 0 || (d->queue_size & (d->queue_size - 1)))
        snprintf(t, sizeof(t), "Queue size must be a power of 2 no greater than 32768: %d",
                 d->queue_size);
    else if (iommu)
        snprintf(t, sizeof(t), "Device does not support being placed behind IOMMU");
    if (t[0]) {
        reply_err(vm, K_VALID, E_API, add_top(d), E_VALIDATE, t, NULL);
        return false;
    }
    return validate_segment(vm, d) && validate_id(vm, d);
}

static bool validate_device(struct chsim_vm *vm, struct chsim_dev *d)
{
    char t[4200];

    for (struct chsim_dev *o = vm->devs; d->path[0] && o; o = o->next)
        if (o->in_config && o->type == CHSIM_DEV_VFIO && strcmp(o->path, d->path) == 0) {
            snprintf(t, sizeof(t), "Duplicated device path: %s", d->path);
            reply_err(vm, K_DUP, E_API, add_top(d), E_VALIDATE, t, NULL);
            return false;
        }
    if (!validate_segment(vm, d))
        return false;
    /* A device by fd comes with SCM_RIGHTS, which chsim does not take. */
    if (!d->path[0]) {
        reply_err(vm, K_VALID, E_API, add_top(d), E_VALIDATE,
                  "VFIO device config must specify `path=` or `fd=`", NULL);
        return false;
    }
    return validate_id(vm, d);
}

/* The device manager's own check: an id still in the device tree (its
 * eject pending) cannot be reused. */
static bool check_tree(struct chsim_vm *vm, struct chsim_dev *d)
{
    char t[512];

    if (d->id[0] && dev_find(vm, d->id, false)) {
        snprintf(t, sizeof(t), "Invalid identifier as it is not unique: %s", d->id);
        reply_err(vm, K_OTHER, E_API, add_top(d), E_DM, t, NULL);
        return false;
    }
    return true;
}

static void start_add(struct chsim_vm *vm, struct chsim_dev *d)
{
    if (!booted(vm)) {
        /* Cold add: config only; ids and slots come at boot. */
        d->in_config = true;
        dev_append(vm, d);
        reply_empty(vm, 204);
        return;
    }
    if (!check_tree(vm, d)) {
        dev_free(d);
        return;
    }
    if (d->type == CHSIM_DEV_VFIO) {
        struct stat st;

        if (stat(d->path, &st) < 0 || !S_ISDIR(st.st_mode)) {
            dev_free(d);
            reply_err(vm, K_OTHER, E_API, "The device could not be added to the VM", E_DM,
                      "Cannot create a VFIO device", "invalid file path", NULL);
            return;
        }
    }
    vm->cur_dev = d;
    vm->connect_deadline = 0;
    vm->add_waited = false;
    add_step(vm);
}

static void add_fs(struct chsim_vm *vm, struct chsim_req *req)
{
    yajl_val root;
    struct chsim_dev *d = dev_new(vm, CHSIM_DEV_FS);
    bool iommu = false, ok;

    if (!parse_body(vm, req, &root)) {
        dev_free(d);
        return;
    }
    ok = read_fs(vm, root, d, &iommu) && validate_fs(vm, d, iommu);
    yajl_tree_free(root);
    if (ok)
        start_add(vm, d);
    else
        dev_free(d);
}

static void add_device(struct chsim_vm *vm, struct chsim_req *req)
{
    yajl_val root;
    struct chsim_dev *d = dev_new(vm, CHSIM_DEV_VFIO);
    bool iommu = false, ok;

    if (!parse_body(vm, req, &root)) {
        dev_free(d);
        return;
    }
    ok = read_device(vm, root, d, &iommu) && validate_device(vm, d);
    yajl_tree_free(root);
    if (ok)
        start_add(vm, d);
    else
        dev_free(d);
}

/* Booted, CH looks the id up in the device tree: an id whose eject is
 * pending is still there, so removing it again answers 204.  Not booted,
 * it drops the config entry. */
static void remove_device(struct chsim_vm *vm, struct chsim_req *req)
{
    static const char top[] = "The device could not be removed from the VM";
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
    d = dev_find(vm, id, !booted(vm));
    if (booted(vm) && !d && (strcmp(id, "__console") == 0 || strcmp(id, "__rng") == 0)) {
        snprintf(t, sizeof(t), "Not allowed to remove this type of device from the VM: %s",
                 id + 2);
        yajl_tree_free(root);
        reply_err(vm, K_OTHER, E_API, top, E_DM, t, NULL);
        return;
    }
    if (!d) {
        if (booted(vm)) {
            snprintf(t, sizeof(t),
                     "Failed to find device corresponding to the given identifier: %s", id);
            reply_err(vm, K_NODEV, E_API, top, E_DM, t, NULL);
        } else {
            char *q = chsim_json_str(id);

            snprintf(t, sizeof(t), "No device with id %s to remove", q);
            free(q);
            reply_err(vm, K_NODEV, E_API, top, t, NULL);
        }
        yajl_tree_free(root);
        return;
    }
    yajl_tree_free(root);
    d->in_config = false;
    if (!d->in_tree) {
        dev_unlink_free(d);
    } else if (!d->eject_pending) {
        d->eject_pending = true;
        if (chsim_opt.no_eject) {
            /* The guest never acknowledges; only /chsim/eject does. */
        } else if (chsim_opt.eject_delay_ms <= 0) {
            dev_eject_now(d);
        } else {
            ev_timer_set(&d->eject, chsim_opt.eject_delay_ms / 1000., 0.);
            ev_timer_start(chsim_loop, &d->eject);
        }
    }
    reply_empty(vm, 204);
}

/* Boot creates the devices of the config in CH's order (console, disks,
 * nets, rng, fs, then VFIO), each taking the lowest free PCI slot after the
 * host bridge at 0 and, when it has none, the next auto id. */
static void boot(struct chsim_vm *vm)
{
    static const enum chsim_dev_type before_rng[] = { CHSIM_DEV_DISK, CHSIM_DEV_NET };
    static const enum chsim_dev_type after_rng[] = { CHSIM_DEV_FS, CHSIM_DEV_VFIO };

    vm->slots = 1;
    vm->console_slot = slot_alloc(vm);
    for (int pass = 0; pass < 2; pass++) {
        const enum chsim_dev_type *types = pass ? after_rng : before_rng;

        if (pass)
            vm->rng_slot = slot_alloc(vm);
        for (int t = 0; t < 2; t++)
            for (struct chsim_dev *d = vm->devs; d; d = d->next) {
                if (!d->in_config || d->type != types[t])
                    continue;
                assign_auto_id(vm, d);
                d->slot = slot_alloc(vm);
                d->in_tree = d->slot >= 0;
            }
    }
    vm->state = CHSIM_RUNNING;
}

/* CH drops the VM: every device leaves the tree and its vhost-user
 * connection closes; the config, hot-added devices included, stays. */
static void drop_vm(struct chsim_vm *vm)
{
    struct chsim_dev *d = vm->devs, *next;

    for (; d; d = next) {
        next = d->next;
        ev_timer_stop(chsim_loop, &d->eject);
        if (d->vhost_fd >= 0) {
            close(d->vhost_fd);
            d->vhost_fd = -1;
        }
        d->slot = -1;
        d->in_tree = false;
        d->eject_pending = false;
        if (!d->in_config)
            dev_unlink_free(d);
    }
    vm->slots = 0;
    if (booted(vm))
        vm->state = CHSIM_CREATED;
}

/* ---- vm.create ---- */

static bool read_zone(struct chsim_vm *vm, yajl_val o, struct chsim_zone *z)
{
    long long size;

    if (!jcopy(vm, o, "id", z->id, sizeof(z->id)) ||
        !jint(vm, o, "size", 0, INT64_MAX, &size) || !jbool(vm, o, "shared", &z->shared) ||
        !jbool(vm, o, "hugepages", &z->hugepages))
        return false;
    z->size = (uint64_t)size;
    return true;
}

/* Reads a VmConfig body into vm->cfg and cold devices; false after a reply. */
static bool read_config(struct chsim_vm *vm, yajl_val root)
{
    struct chsim_cfg *c = &vm->cfg;
    yajl_val cpus = jget(root, "cpus"), mem = jget(root, "memory");
    yajl_val payload = jget(root, "payload"), rng = jget(root, "rng");
    static const struct {
        const char *key;
        enum chsim_dev_type type;
    } lists[] = { { "disks", CHSIM_DEV_DISK }, { "net", CHSIM_DEV_NET },
                  { "fs", CHSIM_DEV_FS }, { "devices", CHSIM_DEV_VFIO } };
    long long v;

    memset(c, 0, sizeof(*c));
    c->cpus = c->max_cpus = 1;
    c->mem_size = 512ull << 20;
    snprintf(c->rng_src, sizeof(c->rng_src), "/dev/urandom");
    if (YAJL_IS_OBJECT(cpus)) {
        if (!jint(vm, cpus, "boot_vcpus", 1, 255, &v))
            return false;
        c->cpus = (int)v;
        if (!jint(vm, cpus, "max_vcpus", c->cpus, 255, &v))
            return false;
        c->max_cpus = (int)v;
    }
    if (YAJL_IS_OBJECT(mem)) {
        yajl_val zones = jget(mem, "zones");

        if (!jint(vm, mem, "size", (long long)c->mem_size, INT64_MAX, &v) ||
            !jbool(vm, mem, "shared", &c->mem_shared) ||
            !jbool(vm, mem, "hugepages", &c->mem_hugepages))
            return false;
        c->mem_size = (uint64_t)v;
        for (size_t i = 0; YAJL_IS_ARRAY(zones) && i < zones->u.array.len &&
                           c->nzones < CHSIM_MAX_ZONES; i++)
            if (!read_zone(vm, zones->u.array.values[i], &c->zones[c->nzones++]))
                return false;
    }
    if (YAJL_IS_OBJECT(payload) &&
        (!jcopy(vm, payload, "kernel", c->kernel, sizeof(c->kernel)) ||
         !jcopy(vm, payload, "cmdline", c->cmdline, sizeof(c->cmdline)) ||
         !jcopy(vm, payload, "initramfs", c->initramfs, sizeof(c->initramfs))))
        return false;
    if (YAJL_IS_OBJECT(rng) && !jcopy(vm, rng, "src", c->rng_src, sizeof(c->rng_src)))
        return false;
    for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
        yajl_val arr = jget(root, lists[l].key);

        for (size_t i = 0; YAJL_IS_ARRAY(arr) && i < arr->u.array.len; i++) {
            yajl_val o = arr->u.array.values[i];
            struct chsim_dev *d = dev_new(vm, lists[l].type);
            bool iommu = false, ok = YAJL_IS_OBJECT(o);

            if (!ok)
                serde_err(vm, "invalid type: expected struct %s", lists[l].key);
            else if (d->type == CHSIM_DEV_FS)
                ok = read_fs(vm, o, d, &iommu);
            else if (d->type == CHSIM_DEV_VFIO)
                ok = read_device(vm, o, d, &iommu);
            else if (d->type == CHSIM_DEV_NET)
                ok = jcopy(vm, o, "id", d->id, sizeof(d->id)) &&
                     jcopy(vm, o, "tap", d->tag, sizeof(d->tag)) &&
                     jcopy(vm, o, "mac", d->mac, sizeof(d->mac));
            else
                ok = jcopy(vm, o, "id", d->id, sizeof(d->id)) &&
                     jcopy(vm, o, "path", d->path, sizeof(d->path));
            if (!ok) {
                dev_free(d);
                return false;
            }
            d->in_config = true;
            dev_append(vm, d);
        }
    }
    return true;
}

static void vm_create(struct chsim_vm *vm, struct chsim_req *req)
{
    yajl_val root;

    if (vm->state != CHSIM_NOVM) {
        reply_err(vm, K_OTHER, E_API, "The VM could not be created", "VM is already created",
                  NULL);
        return;
    }
    if (!parse_body(vm, req, &root))
        return;
    if (!read_config(vm, root)) {
        yajl_tree_free(root);
        while (vm->devs)
            dev_unlink_free(vm->devs);
        return;
    }
    yajl_tree_free(root);
    vm->state = CHSIM_CREATED;
    reply_empty(vm, 204);
}

/* The config of a VMM started with a payload on its command line: the
 * flags' memory and cpus, a disk and a net like a typical guest. */
static void config_from_flags(struct chsim_vm *vm)
{
    const struct chsim_opts *o = &chsim_opt;
    struct chsim_dev *disk = dev_new(vm, CHSIM_DEV_DISK), *net = dev_new(vm, CHSIM_DEV_NET);

    vm->cfg = o->cfg;
    snprintf(disk->path, sizeof(disk->path), "%s", o->disk_path);
    snprintf(net->tag, sizeof(net->tag), "%.63s", o->net_tap);
    snprintf(net->mac, sizeof(net->mac), "52:54:00:%02x:%02x:%02x", (vm->index >> 16) & 0xff,
             (vm->index >> 8) & 0xff, vm->index & 0xff);
    disk->in_config = net->in_config = true;
    dev_append(vm, disk);
    dev_append(vm, net);
    vm->state = CHSIM_CREATED;
}

/* ---- vm.snapshot and vm.restore ---- */

/* CH's url_to_path: a file:// URL naming an existing directory.  Its
 * failures are MigrateSend errors on both the snapshot and the restore
 * path.  False after a reply. */
static bool snap_dir(struct chsim_vm *vm, const char *top, const char *what, const char *url,
                     const char **dir)
{
    char why[4200];
    struct stat st;

    if (strncmp(url, "file://", 7) != 0)
        snprintf(why, sizeof(why), "Could not extract path from URL: %s", url);
    else if (stat(url + 7, &st) < 0 || !S_ISDIR(st.st_mode))
        snprintf(why, sizeof(why), "Destination is not a directory: \"%s\"", url + 7);
    else {
        *dir = url + 7;
        return true;
    }
    reply_err(vm, K_OTHER, E_API, top, what, "Failed to send migratable component snapshot",
              why, NULL);
    return false;
}

/* Writes dir/name as CH does: created new, never over an existing file. */
static int snap_write(const char *dir, const char *name, const struct sb *b)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wx");
    if (!f)
        return -errno;
    size_t n = b->n ? fwrite(b->p, 1, b->n, f) : 0;
    int rc = n == b->n ? 0 : -EIO;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

/* config.json is the VmConfig as vm.info shows it, hot-added devices
 * included; state.json and memory-ranges are small stand-ins for the
 * device state and guest memory. */
static void snapshot(struct chsim_vm *vm, const char *top, const char *dir)
{
    static const char *const names[] = { "config.json", "state.json", "memory-ranges" };
    static const char *const ctx[] = { "Error creating VM config snapshot file",
                                       "Error creating VM state snapshot file",
                                       "Error creating memory snapshot file" };
    struct sb b[3] = { { 0 }, { 0 }, { 0 } };

    info_config(&b[0], vm);
    sb_printf(&b[1], "{\"chsim\":{\"index\":%d,\"cpus\":%d}}", vm->index, vm->cfg.cpus);
    sb_printf(&b[2], "chsim guest memory %" PRIu64 "\n", mem_total(&vm->cfg));
    for (int i = 0; i < 3; i++) {
        int rc = snap_write(dir, names[i], &b[i]);
        if (rc) {
            char why[160];
            snprintf(why, sizeof(why), "%s (os error %d)", strerror(-rc), -rc);
            reply_err(vm, K_OTHER, E_API, top, "Cannot send VM snapshot",
                      "Failed to send migratable component snapshot", ctx[i], why, NULL);
            for (int j = 0; j < 3; j++)
                free(b[j].p);
            return;
        }
    }
    for (int j = 0; j < 3; j++)
        free(b[j].p);
    reply_empty(vm, 204);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "re");
    struct sb b = { 0 };
    char buf[4096];
    size_t n;

    if (!f)
        return NULL;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        sb_printf(&b, "%.*s", (int)n, buf);
    fclose(f);
    if (!b.p)
        sb_printf(&b, "%s", "");
    return b.p;
}

/* CH accepts a restore only into a VMM without a VM: it reads config.json
 * and state.json back, and the VM comes up Paused unless "resume" is true. */
static void vm_restore(struct chsim_vm *vm, struct chsim_req *req)
{
    static const char top[] = "The VM could not be restored";
    static const char *const names[] = { "config.json", "state.json" };
    static const char *const what[] = { "config", "state" };
    yajl_val root, cfg = NULL;
    const char *url, *dir;
    bool resume = false;
    char *text[2] = { NULL, NULL };

    if (vm->state != CHSIM_NOVM) {
        reply_err(vm, K_OTHER, E_API, top, "VM is already created", NULL);
        return;
    }
    if (!parse_body(vm, req, &root))
        return;
    if (!jstr(vm, root, "source_url", true, &url) || !jbool(vm, root, "resume", &resume) ||
        !snap_dir(vm, top, "Cannot restore VM", url, &dir)) {
        yajl_tree_free(root);
        return;
    }
    for (int i = 0; i < 2; i++) {
        char path[4200], why[4400];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if ((text[i] = slurp(path)))
            continue;
        snprintf(why, sizeof(why), "Error opening VM %s snapshot file \"%s\"", what[i], path);
        reply_err(vm, K_OTHER, E_API, top, "Cannot restore VM",
                  "Failed to receive migratable component snapshot", why,
                  "No such file or directory (os error 2)", NULL);
        goto out;
    }
    if (!(cfg = yajl_tree_parse(text[0], NULL, 0)) || !YAJL_IS_OBJECT(cfg)) {
        reply_err(vm, K_OTHER, E_API, top, "Cannot restore VM",
                  "Failed to receive migratable component snapshot",
                  "Error deserialising VM config snapshot", NULL);
        goto out;
    }
    if (!read_config(vm, cfg)) {
        while (vm->devs)
            dev_unlink_free(vm->devs);
        goto out;
    }
    boot(vm);
    vm->state = resume ? CHSIM_RUNNING : CHSIM_PAUSED;
    reply_empty(vm, 204);
out:
    yajl_tree_free(cfg);
    yajl_tree_free(root);
    free(text[0]);
    free(text[1]);
}

/* ---- dispatch ---- */

static void exit_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    chsim_request_exit(0);
}

static ev_timer exit_timer;

/* The ApiError text of each action endpoint's failures. */
static const char *action_top(const char *ep)
{
    static const char *const tops[][2] = {
        { "vm.add-fs", "The fs could not be added to the VM" },
        { "vm.add-device", "The device could not be added to the VM" },
        { "vm.remove-device", "The device could not be removed from the VM" },
        { "vm.pause", "The VM could not be paused" },
        { "vm.resume", "The VM could not resume" },
        { "vm.shutdown", "The VM could not shutdown" },
        { "vm.power-button", "Error triggering power button" },
        { "vm.boot", "The VM could not boot" },
        { "vm.snapshot", "The VM could not be snapshotted" },
        { "vm.restore", "The VM could not be restored" },
    };

    for (size_t i = 0; i < sizeof(tops) / sizeof(tops[0]); i++)
        if (strcmp(ep, tops[i][0]) == 0)
            return tops[i][1];
    return "chsim does not simulate this endpoint";
}

static void transition_err(struct chsim_vm *vm, const char *top, const char *what,
                           const char *comp, const char *to)
{
    char t[160];

    snprintf(t, sizeof(t), "Invalid transition: InvalidStateTransition(%s, %s)",
             state_name(vm->state), to);
    reply_err(vm, K_OTHER, E_API, top, what, comp, t, NULL);
}

/* Endpoints that act on the VM; vm->state is not CHSIM_NOVM. */
static void serve_action(struct chsim_vm *vm, const char *ep, struct chsim_req *req)
{
    const char *top = action_top(ep);

    if (strcmp(ep, "vm.add-fs") == 0) {
        add_fs(vm, req);
    } else if (strcmp(ep, "vm.add-device") == 0) {
        add_device(vm, req);
    } else if (strcmp(ep, "vm.remove-device") == 0) {
        remove_device(vm, req);
    } else if (strcmp(ep, "vm.boot") == 0) {
        if (booted(vm)) {
            reply_err(vm, K_OTHER, E_API, top, "VM is already created", NULL);
            return;
        }
        boot(vm);
        reply_empty(vm, 204);
    } else if (!booted(vm)) {
        reply_err(vm, K_OTHER, E_API, top, E_NOTRUN, NULL);
    } else if (strcmp(ep, "vm.pause") == 0) {
        if (vm->state == CHSIM_PAUSED) {
            transition_err(vm, top, "Cannot pause VM", "Failed to pause migratable component",
                           "Paused");
            return;
        }
        vm->state = CHSIM_PAUSED;
        reply_empty(vm, 204);
    } else if (strcmp(ep, "vm.resume") == 0) {
        if (vm->state != CHSIM_PAUSED) {
            transition_err(vm, top, "Cannot resume VM", "Failed to resume migratable component",
                           "Running");
            return;
        }
        vm->state = CHSIM_RUNNING;
        reply_empty(vm, 204);
    } else if (strcmp(ep, "vm.shutdown") == 0) {
        drop_vm(vm);
        reply_empty(vm, 204);
    } else if (strcmp(ep, "vm.power-button") == 0) {
        reply_empty(vm, 204);
    } else if (strcmp(ep, "vm.snapshot") == 0) {
        yajl_val root;
        const char *url, *dir;

        if (!parse_body(vm, req, &root))
            return;
        if (!jstr(vm, root, "destination_url", true, &url)) {
            yajl_tree_free(root);
            return;
        }
        /* CH takes the snapshot (which needs a paused VM) before it looks
         * at the destination. */
        if (vm->state != CHSIM_PAUSED)
            reply_err(vm, K_OTHER, E_API, top, "Cannot snapshot VM",
                      "Failed to snapshot migratable component",
                      "Trying to snapshot while VM is running", NULL);
        else if (snap_dir(vm, top, "Cannot send VM snapshot", url, &dir))
            snapshot(vm, top, dir);
        yajl_tree_free(root);
    }
}

void chsim_vm_serve(struct chsim_vm *vm, struct chsim_req *req)
{
    const char *ep = req->ep >= 0 ? chsim_ep_name(req->ep) : NULL;
    bool get = strcmp(req->method, "GET") == 0, put = strcmp(req->method, "PUT") == 0;
    bool has_body = req->body_len > 0;

    if (!ep) {
        reply_err(vm, K_NOTFOUND, "Not Found", NULL);
        return;
    }
    if (!get && !put) {
        /* micro_http takes PATCH, CH's handlers do not: bare 400. */
        reply_empty(vm, 400);
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
                  "\"features\":[]}", ver[chsim_opt.gen],
                  ver[chsim_opt.gen] + 1, (int)getpid());
        reply_sb(vm, 200, &b);
        return;
    }
    if (strcmp(ep, "vmm.shutdown") == 0) {
        if (!put) {
            reply_err(vm, K_BADREQ, "Bad Request", NULL);
            return;
        }
        drop_vm(vm);
        /* 200 with an empty body, whatever the API document says. */
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
            reply_err(vm, K_NOVM, E_API, "The VM info is not available", E_NOVM, NULL);
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
        vm_create(vm, req);
        return;
    }
    {
        static const char *const need_body[] = { "vm.add-fs", "vm.add-device",
                                                 "vm.remove-device", "vm.snapshot",
                                                 "vm.restore", NULL };
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
            reply_err(vm, K_OTHER, E_API, action_top(ep), NULL);
            return;
        }
    }
    if (strcmp(ep, "vm.restore") == 0) {
        vm_restore(vm, req);
        return;
    }
    if (vm->state == CHSIM_NOVM) {
        if (strcmp(ep, "vm.add-fs") == 0 || strcmp(ep, "vm.add-device") == 0 ||
            strcmp(ep, "vm.remove-device") == 0)
            reply_err(vm, K_NOVM, E_API, action_top(ep), E_NOVM, NULL);
        else if (strcmp(ep, "vm.boot") == 0)
            reply_err(vm, K_NOVM, E_API, action_top(ep), "VM config is missing", NULL);
        else
            reply_err(vm, K_OTHER, E_API, action_top(ep), E_NOTRUN, NULL);
        return;
    }
    serve_action(vm, ep, req);
}

void chsim_vm_init(struct chsim_vm *vm, int index)
{
    memset(vm, 0, sizeof(*vm));
    vm->index = index;
    vm->lfd = -1;
    vm->state = CHSIM_NOVM;
    memcpy(vm->faults, chsim_opt.faults, sizeof(vm->faults));
    ev_timer_init(&vm->work, work_cb, 0., 0.);
    vm->work.data = vm;
    /* Like CH: a payload on the command line creates and boots the VM;
     * without one there is no VM until vm.create. */
    if (chsim_opt.cfg.kernel[0]) {
        config_from_flags(vm);
        boot(vm);
    }
}

void chsim_vm_fini(struct chsim_vm *vm)
{
    ev_timer_stop(chsim_loop, &vm->work);
    if (vm->cur_dev) {
        dev_free(vm->cur_dev);
        vm->cur_dev = NULL;
    }
    while (vm->devs)
        dev_unlink_free(vm->devs);
    free(vm->vminfo_override);
    vm->vminfo_override = NULL;
}
