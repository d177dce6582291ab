/* tests/chsim/main.c: command line, modes (drop-in cloud-hypervisor, fleet,
 * Firecracker), signals and the stats file. */
#include "tests/chsim/chsim.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

struct chsim_opts chsim_opt = {
    .gen = CHSIM_HEAD,
    .cfg = { .cpus = 1, .max_cpus = 1, .mem_size = 512ull << 20, .rng_src = "/dev/urandom" },
    .disk_path = "/var/lib/chsim/disk0.raw",
    .net_tap = "vmtap0",
    .connect_timeout_ms = 60000,
};
struct ev_loop *chsim_loop;

static struct chsim_vm *vms;
static int nvms;
static ev_signal sig_term, sig_int, sig_usr1;

static const char usage[] =
"usage: chsim [cloud-hypervisor flags] [chsim flags]\n"
"       chsim --fleet DIR --count N [flags]\n"
"       chsim --firecracker --api-sock PATH\n"
"\n"
"Simulates Cloud Hypervisor's HTTP API on AF_UNIX sockets (see CH-WIRE.md).\n"
"\n"
"Cloud Hypervisor flags:\n"
"  --api-socket path=P | P   serve the API on socket P (removed on exit)\n"
"  --memory size=S[,shared=on|off][,hugepages=on|off]\n"
"                            guest memory; S in bytes or with K/M/G suffix\n"
"                            (default 512M, not shared; shared in fleet mode)\n"
"  --memory-zone id=Z,size=S[,shared=on][,hugepages=on]   (repeatable)\n"
"  --cpus boot=N[,max=M]     vCPUs (default 1); boot bounds fs num_queues\n"
"  --kernel PATH             as CH: the VM is created and boots (Running);\n"
"                            without it the VMM has no VM until vm.create\n"
"  --cmdline S, --initramfs P   payload, shown in vm.info\n"
"  --disk path=P, --net tap=T   the guest's one disk and one net (a booted\n"
"                            guest always has both, with defaults)\n"
"  --rng src=P               entropy source shown in vm.info\n"
"  --serial --console --log-file -v ... and any other flag are accepted and\n"
"                            ignored with their values\n"
"\n"
"chsim flags:\n"
"  --api-version head|v53|v46   error generation (default head)\n"
"  --fleet DIR --count N     serve N VMs on DIR/vm<i>.sock (i from 0), all\n"
"                            Running; raises RLIMIT_NOFILE to the hard limit\n"
"  --firecracker --api-sock P   Firecracker pre-boot API instead of CH\n"
"  --eject-delay-ms N        guest ejects a removed device after N ms (0 = at once)\n"
"  --no-eject                guest never ejects (no ACPI hot-plug); only\n"
"                            PUT /chsim/eject does\n"
"  --connect-timeout-ms N    add-fs retries the vhost-user connect every\n"
"                            100 ms for N ms (default 60000)\n"
"  --no-connect              add-fs does not connect to the socket\n"
"  --add-latency-ms N        delay every hot add by N ms (timer; the VM's\n"
"                            queue waits, other VMs do not)\n"
"  --fault ENDPOINT=MODE[:COUNT]   inject a fault (repeatable); COUNT uses,\n"
"                            0 or absent = forever.  MODE: none,\n"
"                            close-before-reply, close-mid-headers,\n"
"                            close-mid-body, garbage-status, oversized-headers,\n"
"                            oversized-body, slow-drip, never-reply,\n"
"                            plain-text-error, http10, chunked, die,\n"
"                            die-after-reply (reply in full, then exit 1),\n"
"                            handover (unlink the socket, start a chsim with\n"
"                            this command line on it, wait until it accepts,\n"
"                            then reply in full and exit 1; not with --fleet),\n"
"                            hold (the reply waits for PUT /chsim/release)\n"
"  --stats-file F            fleet-wide request counts as JSON, written on\n"
"                            SIGUSR1 and at exit\n"
"  -h, --help                this text\n"
"\n"
"Control endpoints on every VM socket (not counted, served at once when the\n"
"connection has nothing queued, but they do occupy one of the 10 slots):\n"
"  GET /chsim/stats                 {\"vm.info\":N,\"vm.add-fs\":N,...,\"ejects\":N}\n"
"  PUT /chsim/eject                 the guest acknowledges pending ejects now\n"
"  PUT /chsim/fault                 {\"endpoint\":E,\"mode\":M,\"count\":C}\n"
"  PUT /chsim/vminfo-override       raw vm.info body (empty body clears)\n"
"  PUT /chsim/release               sends the reply a hold fault keeps back\n"
"Exits on SIGTERM, SIGINT and PUT vmm.shutdown.\n";

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "chsim: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'chsim --help'.\n");
    exit(2);
}

static uint64_t parse_size(const char *s)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        die_usage("bad size '%s'", s);
    switch (*end) {
    case 'K': case 'k': v <<= 10; end++; break;
    case 'M': case 'm': v <<= 20; end++; break;
    case 'G': case 'g': v <<= 30; end++; break;
    case 'T': case 't': v <<= 40; end++; break;
    default: break;
    }
    if (*end)
        die_usage("bad size '%s'", s);
    return v;
}

static bool parse_onoff(const char *v)
{
    if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0)
        return true;
    if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0)
        return false;
    die_usage("expected on|off, got '%s'", v);
}

static int parse_int(const char *s)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 1000000000)
        die_usage("bad number '%s'", s);
    return (int)v;
}

/* Calls fn(key, value) for each k=v item of a CH-style option list. */
static void each_kv(const char *list, void (*fn)(const char *, const char *, void *), void *ctx)
{
    char *copy = strdup(list), *save = NULL;

    if (!copy)
        exit(1);
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');

        if (!eq)
            die_usage("expected key=value in '%s'", tok);
        *eq = '\0';
        fn(tok, eq + 1, ctx);
    }
    free(copy);
}

static void memory_kv(const char *k, const char *v, void *ctx)
{
    (void)ctx;
    if (strcmp(k, "size") == 0)
        chsim_opt.cfg.mem_size = parse_size(v);
    else if (strcmp(k, "shared") == 0)
        chsim_opt.cfg.mem_shared = parse_onoff(v);
    else if (strcmp(k, "hugepages") == 0)
        chsim_opt.cfg.mem_hugepages = parse_onoff(v);
}

static void zone_kv(const char *k, const char *v, void *ctx)
{
    struct chsim_zone *z = ctx;

    if (strcmp(k, "id") == 0)
        snprintf(z->id, sizeof(z->id), "%s", v);
    else if (strcmp(k, "size") == 0)
        z->size = parse_size(v);
    else if (strcmp(k, "shared") == 0)
        z->shared = parse_onoff(v);
    else if (strcmp(k, "hugepages") == 0)
        z->hugepages = parse_onoff(v);
}

static void cpus_kv(const char *k, const char *v, void *ctx)
{
    (void)ctx;
    if (strcmp(k, "boot") == 0)
        chsim_opt.cfg.cpus = parse_int(v);
    else if (strcmp(k, "max") == 0)
        chsim_opt.cfg.max_cpus = parse_int(v);
}

struct pick {
    const char *key;
    char *buf;
    size_t n;
};

static void pick_kv(const char *k, const char *v, void *ctx)
{
    const struct pick *p = ctx;

    if (strcmp(k, p->key) == 0)
        snprintf(p->buf, p->n, "%s", v);
}

/* --disk path=P, --net tap=T, --rng src=P: the one key chsim shows; the
 * other keys (readonly=on, mac=...) are accepted and ignored. */
static void pick(const char *list, const char *key, char *buf, size_t n)
{
    struct pick p = { key, buf, n };

    if (strchr(list, '='))
        each_kv(list, pick_kv, &p);
}

static void write_stats(void)
{
    unsigned long total[CHSIM_MAX_EP] = { 0 }, ejects = 0;
    char *text, tmp[4200];
    FILE *f;

    if (!chsim_opt.stats_file)
        return;
    for (int i = 0; i < nvms; i++) {
        for (int e = 0; e < CHSIM_MAX_EP; e++)
            total[e] += vms[i].counts[e];
        ejects += vms[i].ejects;
    }
    text = chsim_stats_text(total, ejects);
    snprintf(tmp, sizeof(tmp), "%s.tmp", chsim_opt.stats_file);
    f = fopen(tmp, "w");
    if (f) {
        fprintf(f, "%s\n", text);
        if (fclose(f) == 0)
            rename(tmp, chsim_opt.stats_file);
    }
    free(text);
}

void chsim_request_exit(int status)
{
    write_stats();
    for (int i = 0; i < nvms; i++) {
        chsim_vm_close(&vms[i]);
        chsim_vm_fini(&vms[i]);
    }
    free(vms);
    ev_signal_stop(chsim_loop, &sig_term);
    ev_signal_stop(chsim_loop, &sig_int);
    ev_signal_stop(chsim_loop, &sig_usr1);
    ev_loop_destroy(chsim_loop);
    exit(status);
}

static void sig_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    if (w->signum == SIGUSR1)
        write_stats();
    else
        chsim_request_exit(0);
}

static void add_fault(const char *spec)
{
    char buf[128], *eq, *colon;
    int ep, mode;

    snprintf(buf, sizeof(buf), "%s", spec);
    eq = strchr(buf, '=');
    if (!eq)
        die_usage("--fault wants ENDPOINT=MODE, got '%s'", spec);
    *eq = '\0';
    colon = strchr(eq + 1, ':');
    if (colon)
        *colon = '\0';
    ep = chsim_ep_lookup(buf);
    mode = chsim_fault_parse(eq + 1);
    if (ep < 0)
        die_usage("unknown endpoint '%s'", buf);
    if (mode < 0)
        die_usage("unknown fault mode '%s'", eq + 1);
    chsim_opt.faults[ep].mode = mode;
    chsim_opt.faults[ep].count = colon ? parse_int(colon + 1) : 0;
}

int main(int argc, char **argv)
{
    const char *sock = NULL, *fleet = NULL;
    int count = 1;
    bool memory_given = false;

    chsim_opt.argv = argv;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;

#define NEED() do { if (!val) die_usage("%s needs a value", a); i++; } while (0)
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "--api-socket") == 0 || strcmp(a, "--api-sock") == 0) {
            NEED();
            sock = strncmp(val, "path=", 5) == 0 ? val + 5 : val;
            if (strchr(sock, ','))
                die_usage("unsupported --api-socket '%s'", val);
        } else if (strcmp(a, "--memory") == 0) {
            NEED();
            memory_given = true;
            each_kv(val, memory_kv, NULL);
        } else if (strcmp(a, "--memory-zone") == 0) {
            NEED();
            if (chsim_opt.cfg.nzones >= CHSIM_MAX_ZONES)
                die_usage("too many zones at '%s'", val);
            each_kv(val, zone_kv, &chsim_opt.cfg.zones[chsim_opt.cfg.nzones++]);
        } else if (strcmp(a, "--cpus") == 0) {
            bool max_given = val && strstr(val, "max=");

            NEED();
            each_kv(val, cpus_kv, NULL);
            if (!max_given)
                chsim_opt.cfg.max_cpus = chsim_opt.cfg.cpus;
            if (chsim_opt.cfg.cpus < 1 || chsim_opt.cfg.max_cpus < chsim_opt.cfg.cpus)
                die_usage("bad --cpus '%s'", val);
        } else if (strcmp(a, "--kernel") == 0) {
            NEED();
            snprintf(chsim_opt.cfg.kernel, sizeof(chsim_opt.cfg.kernel), "%s", val);
        } else if (strcmp(a, "--cmdline") == 0) {
            NEED();
            snprintf(chsim_opt.cfg.cmdline, sizeof(chsim_opt.cfg.cmdline), "%s", val);
        } else if (strcmp(a, "--initramfs") == 0) {
            NEED();
            snprintf(chsim_opt.cfg.initramfs, sizeof(chsim_opt.cfg.initramfs), "%s", val);
        } else if (strcmp(a, "--disk") == 0) {
            NEED();
            pick(val, "path", chsim_opt.disk_path, sizeof(chsim_opt.disk_path));
        } else if (strcmp(a, "--net") == 0) {
            NEED();
            pick(val, "tap", chsim_opt.net_tap, sizeof(chsim_opt.net_tap));
        } else if (strcmp(a, "--rng") == 0) {
            NEED();
            pick(val, "src", chsim_opt.cfg.rng_src, sizeof(chsim_opt.cfg.rng_src));
        } else if (strcmp(a, "--api-version") == 0) {
            NEED();
            if (strcmp(val, "head") == 0)
                chsim_opt.gen = CHSIM_HEAD;
            else if (strcmp(val, "v53") == 0)
                chsim_opt.gen = CHSIM_V53;
            else if (strcmp(val, "v46") == 0)
                chsim_opt.gen = CHSIM_V46;
            else
                die_usage("unknown --api-version '%s'", val);
        } else if (strcmp(a, "--fleet") == 0) {
            NEED();
            fleet = val;
        } else if (strcmp(a, "--count") == 0) {
            NEED();
            count = parse_int(val);
        } else if (strcmp(a, "--firecracker") == 0) {
            chsim_opt.firecracker = true;
        } else if (strcmp(a, "--eject-delay-ms") == 0) {
            NEED();
            chsim_opt.eject_delay_ms = parse_int(val);
        } else if (strcmp(a, "--no-eject") == 0) {
            chsim_opt.no_eject = true;
        } else if (strcmp(a, "--connect-timeout-ms") == 0) {
            NEED();
            chsim_opt.connect_timeout_ms = parse_int(val);
        } else if (strcmp(a, "--no-connect") == 0) {
            chsim_opt.no_connect = true;
        } else if (strcmp(a, "--add-latency-ms") == 0) {
            NEED();
            chsim_opt.add_latency_ms = parse_int(val);
        } else if (strcmp(a, "--fault") == 0) {
            NEED();
            add_fault(val);
        } else if (strcmp(a, "--stats-file") == 0) {
            NEED();
            chsim_opt.stats_file = val;
        } else if (a[0] == '-') {
            /* Other CH flags (--disk, --net, -v ...): skip their values. */
            while (i + 1 < argc && argv[i + 1][0] != '-')
                i++;
        } else {
            die_usage("unexpected argument '%s'", a);
        }
#undef NEED
    }
    if (fleet && !memory_given)
        chsim_opt.cfg.mem_shared = true;
    if (!fleet && !sock)
        die_usage("%s", "--api-socket (or --fleet DIR) is required");
    if (fleet && chsim_opt.firecracker)
        die_usage("%s", "--fleet and --firecracker do not combine");
    if (count < 1)
        die_usage("%s", "--count must be at least 1");
    if (chsim_opt.firecracker)
        chsim_opt.cfg.kernel[0] = '\0';
    if (fleet) {
        struct rlimit rl;

        /* Fleet VMs look like typical guests booted from the CLI. */
        if (!chsim_opt.cfg.kernel[0])
            snprintf(chsim_opt.cfg.kernel, sizeof(chsim_opt.cfg.kernel), "/dev/null");
        if (!chsim_opt.cfg.cmdline[0])
            snprintf(chsim_opt.cfg.cmdline, sizeof(chsim_opt.cfg.cmdline),
                     "console=hvc0 root=/dev/vda1 rw");
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        mkdir(fleet, 0700);
    } else {
        count = 1;
    }
    signal(SIGPIPE, SIG_IGN);
    chsim_loop = ev_default_loop(EVFLAG_AUTO);
    nvms = count;
    vms = calloc((size_t)count, sizeof(*vms));
    if (!vms) {
        fprintf(stderr, "chsim: out of memory\n");
        return 1;
    }
    for (int i = 0; i < count; i++) {
        int rc;

        int n;

        chsim_vm_init(&vms[i], i);
        if (fleet)
            n = snprintf(vms[i].sock, sizeof(vms[i].sock), "%s/vm%d.sock", fleet, i);
        else
            n = snprintf(vms[i].sock, sizeof(vms[i].sock), "%s", sock);
        /* A cut path would serve the API somewhere nobody looks; CH fails
         * to start instead, and so do we. */
        rc = n < 0 || (size_t)n >= sizeof(vms[i].sock) ? -ENAMETOOLONG
                                                         : chsim_vm_listen(&vms[i]);
        if (rc < 0) {
            if (fleet)
                fprintf(stderr, "chsim: listen on %s/vm%d.sock: %s\n", fleet, i, strerror(-rc));
            else
                fprintf(stderr, "chsim: listen on %s: %s\n", sock, strerror(-rc));
            nvms = i;
            for (int j = 0; j <= i; j++)
                chsim_vm_fini(&vms[j]);
            for (int j = 0; j < i; j++)
                chsim_vm_close(&vms[j]);
            free(vms);
            return 1;
        }
    }
    /* A chsim started by another's handover says when it listens. */
    if (getenv("CHSIM_READY_FD")) {
        int fd = atoi(getenv("CHSIM_READY_FD"));
        char one = 1;

        unsetenv("CHSIM_READY_FD");
        if (fd > 2) {
            if (write(fd, &one, 1) != 1)
                fprintf(stderr, "chsim: ready fd %d: %s\n", fd, strerror(errno));
            close(fd);
        }
    }
    ev_signal_init(&sig_term, sig_cb, SIGTERM);
    ev_signal_init(&sig_int, sig_cb, SIGINT);
    ev_signal_init(&sig_usr1, sig_cb, SIGUSR1);
    ev_signal_start(chsim_loop, &sig_term);
    ev_signal_start(chsim_loop, &sig_int);
    ev_signal_start(chsim_loop, &sig_usr1);
    ev_run(chsim_loop, 0);
    chsim_request_exit(0);
    return 0;
}
