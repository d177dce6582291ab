/* tests/chsim/chsim.h: the Cloud Hypervisor API simulator.  One process
 * serves one VM (drop-in cloud-hypervisor), a fleet of VMs, or one
 * Firecracker VM, reproducing the wire behaviour of CH-WIRE.md.  server.c
 * owns sockets, HTTP framing, the per-VM request queue and fault injection;
 * vm.c answers CH endpoints; fc.c answers Firecracker endpoints; main.c
 * parses flags and runs the loop. */
#ifndef COCOON_CHSIM_H
#define COCOON_CHSIM_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum chsim_gen { CHSIM_HEAD, CHSIM_V53, CHSIM_V46 };
/* CHSIM_NOVM: the VMM has no VM config; CHSIM_CREATED: a config, no VM
 * (CH drops the VM on shutdown and is back here); CHSIM_SHUTDOWN is
 * Firecracker's only. */
enum chsim_state { CHSIM_NOVM, CHSIM_CREATED, CHSIM_RUNNING, CHSIM_PAUSED, CHSIM_SHUTDOWN };

enum chsim_fault_mode {
    CHSIM_F_NONE,
    CHSIM_F_CLOSE_BEFORE_REPLY,
    CHSIM_F_CLOSE_MID_HEADERS,
    CHSIM_F_CLOSE_MID_BODY,
    CHSIM_F_GARBAGE_STATUS,
    CHSIM_F_OVERSIZED_HEADERS,
    CHSIM_F_OVERSIZED_BODY,
    CHSIM_F_SLOW_DRIP,
    CHSIM_F_NEVER_REPLY,
    CHSIM_F_PLAIN_TEXT_ERROR,
    CHSIM_F_HTTP10,
    CHSIM_F_CHUNKED,
    CHSIM_F_DIE,
    CHSIM_F_DIE_AFTER_REPLY,    /* reply in full, then _exit(1) */
    CHSIM_F_HANDOVER,           /* another chsim takes the socket, then as above */
    CHSIM_F_HOLD,               /* the reply waits for PUT /chsim/release */
    CHSIM_F_COUNT
};

/* Endpoint index for counters and faults.  Names are the path below
 * /api/v1/ ("vm.add-fs"), or Firecracker's path without the id
 * ("actions", "machine-config", "drives", "vm", "" for GET /). */
#define CHSIM_MAX_EP 48
#define CHSIM_MAX_CONNS 10
#define CHSIM_MAX_ZONES 8
#define CHSIM_FC_DRIVES 8

struct chsim_fault {
    int mode;
    int count;          /* remaining uses; 0 = forever */
};

struct chsim_zone {
    char id[64];
    uint64_t size;
    bool shared, hugepages;
};

/* The parts of CH's VmConfig that chsim models beyond the device lists. */
struct chsim_cfg {
    int cpus, max_cpus;
    uint64_t mem_size;
    bool mem_shared, mem_hugepages;
    struct chsim_zone zones[CHSIM_MAX_ZONES];
    int nzones;
    char kernel[512], cmdline[512], initramfs[512];   /* "" = absent */
    char rng_src[256];
};

struct chsim_opts {
    enum chsim_gen gen;
    bool firecracker;
    struct chsim_cfg cfg;          /* from the flags; a kernel boots the VM */
    char disk_path[512], net_tap[64];
    int eject_delay_ms;
    bool no_eject;
    int connect_timeout_ms;
    bool no_connect;
    int add_latency_ms;
    struct chsim_fault faults[CHSIM_MAX_EP];
    const char *stats_file;
    char **argv;                   /* main's: a handover's successor runs it */
};

extern struct chsim_opts chsim_opt;
extern struct ev_loop *chsim_loop;

enum chsim_dev_type { CHSIM_DEV_FS, CHSIM_DEV_VFIO, CHSIM_DEV_DISK, CHSIM_DEV_NET };

struct chsim_dev {
    struct chsim_dev *next;
    struct chsim_vm *vm;
    enum chsim_dev_type type;
    char id[256];
    char tag[256];       /* fs tag, net tap */
    char path[4096];     /* fs socket, vfio sysfs path ("" = by fd), disk path */
    char mac[24];        /* net */
    int num_queues, queue_size, pci_segment;
    int slot;            /* -1 while not in the tree */
    bool in_config, in_tree, eject_pending;
    int vhost_fd;
    ev_timer eject;
};

struct chsim_conn;

/* One parsed request (or a canned parse-error answer) waiting in its VM's
 * FIFO.  conn turns NULL when the client goes away first. */
struct chsim_req {
    struct chsim_req *next;
    struct chsim_conn *conn;
    char method[8];
    char *path;
    char *body;
    size_t body_len;
    bool has_cl;
    int ep;               /* endpoint index or -1 */
    char *canned;         /* pre-built raw answer, sent as is */
    size_t canned_len;
};

/* A reply under construction. */
struct chsim_resp {
    int code;
    const char *server;   /* NULL = "Cloud Hypervisor API" */
    char *body;           /* owned, may be NULL */
    size_t body_len;
};

struct chsim_vm {
    int index;
    char sock[108];
    int lfd;
    ev_io lw;
    enum chsim_state state;
    struct chsim_cfg cfg;         /* valid unless state is CHSIM_NOVM */
    int console_slot, rng_slot;
    int nconns;
    struct chsim_conn *conns;
    struct chsim_req *qhead, *qtail;
    struct chsim_req *cur;        /* being served */
    ev_timer work;                /* latency and connect retries */
    int cur_fault;                /* fault mode applied to cur */
    bool pumping;
    bool add_waited;              /* cur_dev has had its add latency */
    long long connect_deadline;
    struct chsim_dev *cur_dev;    /* add-fs waiting for its socket */
    struct chsim_dev *devs;
    unsigned next_auto;
    uint32_t slots;               /* bitmap of used PCI slots */
    unsigned long counts[CHSIM_MAX_EP];
    unsigned long ejects;         /* devices the guest has ejected */
    struct chsim_fault faults[CHSIM_MAX_EP];
    char *vminfo_override;
    bool holding;                 /* cur's reply waits in held (CHSIM_F_HOLD) */
    struct chsim_resp held;
    /* Firecracker */
    bool fc_kernel_set;
    bool fc_boot_path;            /* a boot resource was configured */
    int fc_vcpus, fc_mem_mib;
    struct chsim_fc_drive {
        char id[64], path[512];
        bool root;
    } fc_drives[CHSIM_FC_DRIVES];
    int fc_ndrives;
};

/* server.c */
const char *chsim_ep_name(int ep);
int chsim_ep_lookup(const char *name);
int chsim_fault_parse(const char *name);
int chsim_vm_listen(struct chsim_vm *vm);
void chsim_vm_close(struct chsim_vm *vm);
/* Finishes vm->cur with resp (consumed) and serves the next request. */
void chsim_vm_reply(struct chsim_vm *vm, struct chsim_resp *resp);
void chsim_resp_set(struct chsim_resp *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* CH error of this generation: the chain (NULL-terminated) as a JSON
 * array (head, v53) or joined with ": " (v46). */
void chsim_resp_chain(struct chsim_resp *r, int code, const char *const chain[]);
char *chsim_json_str(const char *s);   /* quoted, escaped, malloc'd */

/* vm.c: answers vm->cur; either calls chsim_vm_reply now or later. */
void chsim_vm_init(struct chsim_vm *vm, int index);
void chsim_vm_fini(struct chsim_vm *vm);
void chsim_vm_serve(struct chsim_vm *vm, struct chsim_req *req);
/* The guest acknowledges every pending eject now; returns how many. */
int chsim_vm_eject_pending(struct chsim_vm *vm);

/* fc.c */
void chsim_fc_serve(struct chsim_vm *vm, struct chsim_req *req);

/* main.c */
void chsim_request_exit(int status);

/* server.c: fleet-wide counters as JSON, malloc'd. */
char *chsim_stats_text(const unsigned long *counts, unsigned long ejects);

#endif
