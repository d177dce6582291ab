#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/launch.h"
#include "backends/store.h"
#include "cli/cli.h"
#include "engine/cocoon.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Persistent flags: accepted at every level, like cobra's. */
static const cli_flag global_flags[] = {
    { "root-dir", 0, CLI_FLAG_STR, "DIR", NULL,
      "state root (default $COCOON_ROOT_DIR, else /var/lib/cocoon)", false, NULL },
    { "timeout", 0, CLI_FLAG_STR, "SECONDS", "30", "timeout of each VMM API request", false, NULL },
    { "output", 'o', CLI_FLAG_STR, "FORMAT", "text", "output format: text or json", false, NULL },
    { "help", 'h', CLI_FLAG_BOOL, NULL, NULL, "help for this command", false, NULL },
};
enum { G_ROOT, G_TIMEOUT, G_OUTPUT, G_HELP, G_N };

static const cli_flag version_flag[] = {
    { "version", 0, CLI_FLAG_BOOL, NULL, NULL, "print the version and exit", false, NULL },
};

#define CREATE_FLAGS \
    { "name", 0, CLI_FLAG_STR, "NAME", NULL, "VM name (default: derived from the id)", false, \
      NULL }, \
    { "cpu", 0, CLI_FLAG_STR, "N", "2", "boot vCPUs (--cpus N is accepted too)", false, "cpus" }, \
    { "memory", 0, CLI_FLAG_STR, "SIZE", "1G", "guest memory: 512M, 2G or bytes", false, NULL }, \
    { "shared-memory", 0, CLI_FLAG_BOOL, NULL, "false", \
      "back guest memory with shared pages (required for fs attach; fixed for the VM's life)", \
      false, NULL }, \
    { "fc", 0, CLI_FLAG_BOOL, NULL, "false", "use the Firecracker backend", false, NULL }, \
    { "kernel", 0, CLI_FLAG_STR, "PATH", NULL, "guest kernel", false, NULL }, \
    { "initramfs", 0, CLI_FLAG_STR, "PATH", NULL, "guest initramfs", false, NULL }, \
    { "cmdline", 0, CLI_FLAG_STR, "STR", NULL, "kernel command line", false, NULL }, \
    { "disk", 0, CLI_FLAG_LIST, "PATH", NULL, "disk image (repeatable)", false, NULL }

#define BINARY_FLAGS \
    { "ch-binary", 0, CLI_FLAG_STR, "PATH", NULL, \
      "Cloud Hypervisor binary (default: the one the VM last ran, else $COCOON_CH_BINARY, " \
      "else cloud-hypervisor from PATH)", \
      false, NULL }, \
    { "fc-binary", 0, CLI_FLAG_STR, "PATH", NULL, \
      "Firecracker binary (default: the one the VM last ran, else $COCOON_FC_BINARY, else " \
      "firecracker from PATH)", false, NULL }

#define PARALLEL_FLAG \
    { "parallel", 0, CLI_FLAG_STR, "N", "256", "VMs with an operation in flight at once", false, \
      NULL }

#define WAIT_FLAG \
    { "wait", 0, CLI_FLAG_OPTVAL, "SECONDS", "30", \
      "wait until the guest ejects the device, at most SECONDS; without --wait, return at once", \
      false, NULL }

static const cli_flag create_flags[] = { CREATE_FLAGS };
static const cli_flag run_flags[] = { CREATE_FLAGS, BINARY_FLAGS };
static const cli_flag start_flags[] = { BINARY_FLAGS };
static const cli_flag stop_flags[] = {
    { "force", 'f', CLI_FLAG_BOOL, NULL, "false",
      "skip the graceful shutdown: SIGTERM at once, then SIGKILL", false, NULL },
    { "grace", 0, CLI_FLAG_STR, "SECONDS", "5",
      "time for the shutdown requests and the VMM's exit before SIGTERM", false, NULL },
};
static const cli_flag rm_flags[] = {
    { "force", 'f', CLI_FLAG_BOOL, NULL, "false", "stop a running VM first", false, NULL },
};
static const cli_flag fs_attach_flags[] = {
    { "socket", 0, CLI_FLAG_STR, "PATH|TEMPLATE", NULL,
      "virtiofsd socket; {name}, {id} and {vm} are replaced per VM", true, NULL },
    { "tag", 0, CLI_FLAG_STR, "TAG", NULL, "guest mount tag", true, NULL },
    { "num-queues", 0, CLI_FLAG_STR, "N", "1", "request queues", false, NULL },
    { "queue-size", 0, CLI_FLAG_STR, "N", "1024", "queue size", false, NULL },
    { "no-socket-check", 0, CLI_FLAG_BOOL, NULL, "false",
      "skip the virtiofsd listener check (socket in another mount namespace)", false, NULL },
    PARALLEL_FLAG,
};
static const cli_flag fs_detach_flags[] = {
    { "tag", 0, CLI_FLAG_STR, "TAG", NULL, "mount tag of the share to detach", true, NULL },
    WAIT_FLAG,
    PARALLEL_FLAG,
};
static const cli_flag list_flags[] = { PARALLEL_FLAG };
static const cli_flag device_attach_flags[] = {
    { "pci", 0, CLI_FLAG_STR, "PCI", NULL,
      "host device: BDF (01:00.0, 0000:01:00.0) or /sys/bus/pci/devices/ path", true, NULL },
    { "id", 0, CLI_FLAG_STR, "ID", NULL, "device id (default: chosen by CH)", false, NULL },
};
static const cli_flag device_detach_flags[] = {
    { "id", 0, CLI_FLAG_STR, "ID", NULL, "device id to detach", true, NULL },
    WAIT_FLAG,
    PARALLEL_FLAG,
};
static const cli_flag batch_flags[] = { PARALLEL_FLAG };

static int cli_version(cli_ctx *c)
{
    (void)c;
    printf("cocoon version %s\n", COCOON_VERSION_STRING);
    return CLI_EXIT_OK;
}

#define LEAF(var, nm, us, sum, ex, fl, fn, mn, mx) \
    static const cli_cmd var = { nm, us, sum, ex, fl, N(fl), NULL, fn, mn, mx, NULL, NULL }
#define LEAF0(var, nm, us, sum, ex, fn, mn, mx) \
    static const cli_cmd var = { nm, us, sum, ex, NULL, 0, NULL, fn, mn, mx, NULL, NULL }

LEAF(cmd_create, "create", "vm create [flags]", "Create a VM record (state created)",
     "cocoon vm create --name web-1 --cpu 4 --memory 2G --shared-memory --kernel vmlinux",
     create_flags, cli_vm_create, 0, 0);
LEAF(cmd_run, "run", "vm run [flags]", "Create a VM and start it",
     "cocoon vm run --name web-1 --shared-memory --kernel vmlinux --disk rootfs.img",
     run_flags, cli_vm_run, 0, 0);
LEAF(cmd_start, "start", "vm start VM... [flags]", "Start created or stopped VMs",
     "cocoon vm start web-1 web-2", start_flags, cli_vm_start, 1, -1);
LEAF(cmd_stop, "stop", "vm stop VM... [flags]", "Stop running VMs (shutdown, then signals)",
     "cocoon vm stop web-1 --grace 30", stop_flags, cli_vm_stop, 1, -1);
LEAF0(cmd_pause, "pause", "vm pause VM...", "Pause running VMs (one vm.pause each, never resent)",
      "cocoon vm pause web-1 web-2", cli_vm_pause, 1, -1);
LEAF0(cmd_resume, "resume", "vm resume VM...", "Resume paused VMs (one vm.resume each, never resent)",
      "cocoon vm resume web-1 web-2", cli_vm_resume, 1, -1);
#define PAUSED_FLAG                                                                        \
    { "paused", 0, CLI_FLAG_BOOL, NULL, NULL,                                              \
      "leave the VM paused after the restore (no vm.resume; resume it with vm resume)",    \
      false, NULL }
static const cli_flag restore_flags[] = { PAUSED_FLAG };
LEAF(cmd_restore, "restore", "vm restore VM SNAP [--paused]",
     "Start a stopped VM from one of its snapshots (vm.restore, then vm.resume)",
     "cocoon vm restore web-1 before-upgrade", restore_flags, cli_vm_restore, 2, 2);
static const cli_flag clone_flags[] = {
    { "name", 0, CLI_FLAG_STR, "NAME", NULL,
      "name of the new VM; with --count, a template where {i} is 1..N "
      "(default: <snapshot>-clone-{i}, the first free numbers)", false, NULL },
    { "count", 0, CLI_FLAG_STR, "N", "1", "clones to bring up at once", false, NULL },
    PAUSED_FLAG,
    BINARY_FLAGS,
};
LEAF(cmd_clone, "clone", "vm clone SNAP [--name NAME] [--count N] [--paused]",
     "New running VMs from a snapshot, each with its own id, run dir, socket and disk copies",
     "cocoon vm clone before-upgrade --count 10 --name 'web-{i}'", clone_flags, cli_vm_clone, 1,
     1);
LEAF(cmd_rm, "rm", "vm rm VM... [flags]", "Remove VMs and their run directories",
     "cocoon vm rm --force web-1", rm_flags, cli_vm_rm, 1, -1);
static const cli_cmd cmd_list = { "list", "vm list",
    "List VMs (state checked against the live process)",
    "cocoon vm ls -o json", NULL, 0, NULL, cli_vm_list, 0, 0, "ls", NULL };
LEAF0(cmd_inspect, "inspect", "vm inspect VM|API-SOCKET",
      "Print a VM record as JSON, with pid, socket_path and live attached devices when running",
      "cocoon vm inspect web-1", cli_vm_inspect, 1, 1);
LEAF(cmd_debug, "debug", "vm debug [flags]",
     "Print the VMM command line that start would run, without running it (-o json: an argv array)",
     "cocoon vm debug --shared-memory --memory 2G --kernel vmlinux", run_flags,
     cli_vm_debug, 0, 0);
LEAF(cmd_fs_attach, "attach", "vm fs attach VM... --socket PATH|TEMPLATE --tag TAG [flags]",
     "Hot-attach a virtio-fs share served by virtiofsd",
     "cocoon vm fs attach web-1 web-2 --socket /run/vfs/{name}.sock --tag data",
     fs_attach_flags, cli_fs_attach, 1, -1);
LEAF(cmd_fs_detach, "detach", "vm fs detach VM... --tag TAG [--wait[=S]]",
     "Detach a virtio-fs share", "cocoon vm fs detach web-1 --tag data --wait=10",
     fs_detach_flags, cli_fs_detach, 1, -1);
LEAF(cmd_fs_list, "list", "vm fs list VM...", "List attached virtio-fs shares",
     "cocoon vm fs list web-1", list_flags, cli_fs_list, 1, -1);
LEAF(cmd_dev_attach, "attach", "vm device attach VM --pci PCI [--id ID]",
     "Hot-attach a VFIO PCI device bound to vfio-pci",
     "cocoon vm device attach web-1 --pci 01:00.0 --id gpu0", device_attach_flags,
     cli_device_attach, 1, 1);
LEAF(cmd_dev_detach, "detach", "vm device detach VM... --id ID [--wait[=S]]",
     "Detach a VFIO PCI device", "cocoon vm device detach web-1 --id gpu0 --wait=10",
     device_detach_flags, cli_device_detach, 1, -1);
LEAF(cmd_dev_list, "list", "vm device list VM...", "List attached VFIO PCI devices",
     "cocoon vm device list web-1", list_flags, cli_device_list, 1, -1);
LEAF(cmd_batch, "batch", "batch [FILE|-] [flags]",
     "Run a JSON Lines plan of attach/detach/list/clone operations concurrently",
     "cocoon batch plan.jsonl -o json\n\n"
     "  One JSON object per line (blank lines are skipped):\n"
     "    {\"op\":\"fs-attach\",\"vm\":\"web-1\",\"socket\":\"/run/vfs/{name}.sock\",\"tag\":\"data\"}\n"
     "    {\"op\":\"fs-detach\",\"vm\":\"web-1\",\"tag\":\"data\",\"wait\":10}\n"
     "    {\"op\":\"device-attach\",\"vm\":\"gpu-1\",\"pci\":\"01:00.0\",\"id\":\"gpu0\"}\n"
     "    {\"op\":\"clone\",\"vm\":\"web-2\",\"snapshot\":\"base\",\"fs\":[{\"socket\":\"/run/vfs/{name}.sock\",\"tag\":\"data\"}]}\n"
     "  ops: fs-attach fs-detach device-attach device-detach fs-list device-list clone\n"
     "  fields: socket tag num_queues queue_size no_socket_check pci id wait (seconds or true);\n"
     "  clone: vm (the new name), snapshot, fs (shares attached once the clone runs)\n"
     "  Ops on one VM run in order; VMs run concurrently.  A bad line is reported\n"
     "  as \"line N: ...\" and the rest still runs (exit status 1).  The plan is\n"
     "  read as ops finish, so a pipe may feed any number of lines.\n"
     "  Ctrl-C (SIGINT, SIGTERM) starts nothing more and waits for the requests in\n"
     "  flight; a second one stops at once, naming the VMs whose outcome is\n"
     "  unknown (exit status 128+signal).",
     batch_flags, cli_batch, 0, 1);

static const cli_cmd *const fs_children[] = { &cmd_fs_attach, &cmd_fs_detach, &cmd_fs_list, NULL };
static const cli_cmd *const dev_children[] = { &cmd_dev_attach, &cmd_dev_detach, &cmd_dev_list, NULL };
static const cli_cmd cmd_fs = { "fs", "vm fs COMMAND", "Runtime virtio-fs shares (vhost-user-fs)",
    "cocoon vm fs attach web-1 --socket /run/vfs/web-1.sock --tag data",
    NULL, 0, fs_children, NULL, 0, 0, NULL, NULL };
static const cli_cmd cmd_dev = { "device", "vm device COMMAND", "Runtime VFIO PCI devices",
    "cocoon vm device attach web-1 --pci 0000:01:00.0", NULL, 0, dev_children, NULL, 0, 0, NULL,
    NULL };
static const cli_cmd *const vm_children[] = {
    &cmd_create, &cmd_run, &cmd_start, &cmd_stop, &cmd_pause, &cmd_resume, &cmd_restore, &cmd_clone, &cmd_rm, &cmd_list, &cmd_inspect,
    &cmd_debug, &cmd_fs, &cmd_dev, NULL };
static const cli_cmd cmd_vm = { "vm", "vm COMMAND", "Manage VMs and their runtime devices",
    "cocoon vm list", NULL, 0, vm_children, NULL, 0, 0, NULL, NULL };
static const cli_cmd cmd_snap_list = { "list", "snapshot list", "List snapshots",
    "cocoon snapshot ls -o json", NULL, 0, NULL, cli_snapshot_list, 0, 0, "ls", NULL };
LEAF0(cmd_snap_inspect, "inspect", "snapshot inspect SNAP",
      "Print a snapshot record as JSON (source VM, its config, snapshot dir)",
      "cocoon snapshot inspect before-upgrade", cli_snapshot_inspect, 1, 1);
LEAF0(cmd_snap_rm, "rm", "snapshot rm SNAP...",
      "Remove snapshots: the record, then its own data dir (never a VM's files)",
      "cocoon snapshot rm before-upgrade", cli_snapshot_rm, 1, -1);
static const cli_flag snap_save_flags[] = {
    { "name", 0, CLI_FLAG_STR, "NAME", NULL, "snapshot name (default: its id)", false, NULL },
    { "force", 'f', CLI_FLAG_BOOL, NULL, "false",
      "snapshot even with fs shares or VFIO devices attached (they are not captured)", false,
      NULL },
};
LEAF(cmd_snap_save, "save", "snapshot save VM [--name NAME] [--force]",
     "Snapshot a running VM: pause, snapshot, resume (each request sent once)",
     "cocoon snapshot save web-1 --name before-upgrade", snap_save_flags, cli_snapshot_save, 1,
     1);
static const cli_cmd *const snap_children[] = { &cmd_snap_save, &cmd_snap_list, &cmd_snap_inspect,
                                                &cmd_snap_rm, NULL };
static const cli_cmd cmd_snapshot = { "snapshot", "snapshot COMMAND",
    "Snapshots of running VMs: save, list, inspect, remove",
    "cocoon snapshot save web-1 --name before-upgrade", NULL, 0, snap_children,
    NULL, 0, 0, NULL, NULL };
LEAF0(cmd_version, "version", "version", "Print the version", "cocoon version", cli_version, 0, 0);
static const cli_cmd cmd_completion = { "completion", "completion bash|zsh|fish",
    "Print a shell completion script",
    "source <(cocoon completion bash)      # bash, e.g. in ~/.bashrc\n"
    "  source <(cocoon completion zsh)       # zsh, in ~/.zshrc\n"
    "  cocoon completion fish > ~/.config/fish/completions/cocoon.fish",
    NULL, 0, NULL, cli_completion, 1, 1, NULL, "bash zsh fish" };
static const cli_cmd *const root_children[] = { &cmd_vm, &cmd_snapshot, &cmd_batch, &cmd_version,
                                                &cmd_completion, NULL };
static const cli_cmd cmd_root = { "cocoon", "[--root-dir DIR] [--timeout SECONDS] [-o text|json] COMMAND",
    "Hot-attach virtio-fs shares and VFIO devices to running Cloud Hypervisor VMs",
    "cocoon vm fs attach web-1 --socket /run/vfs/web-1.sock --tag data",
    version_flag, N(version_flag), root_children, NULL, 0, 0, NULL, NULL };

static cli_flagval g_vals[G_N];

const cli_cmd *cli_root_cmd(void)
{
    return &cmd_root;
}

const cli_flag *cli_global_flags(size_t *n)
{
    *n = N(global_flags);
    return global_flags;
}

const char *cli_default_ch_binary(void)
{
    return launch_pick_binary(NULL, "COCOON_CH_BINARY", LAUNCH_DEFAULT_CH);
}

static int flag_index(const cli_ctx *c, const char *name)
{
    for (size_t i = 0; i < c->cmd->n_flags; i++)
        if (strcmp(c->cmd->flags[i].name, name) == 0)
            return (int)i;
    return -1;
}

bool cli_flag_given(const cli_ctx *c, const char *name)
{
    int i = flag_index(c, name);

    return i >= 0 && c->vals[i].set;
}

const char *cli_flag_str(const cli_ctx *c, const char *name)
{
    int i = flag_index(c, name);

    if (i < 0)
        return NULL;
    if (c->vals[i].set)
        return c->vals[i].str;
    return c->cmd->flags[i].def;
}

const char *const *cli_flag_list(const cli_ctx *c, const char *name, size_t *n)
{
    int i = flag_index(c, name);

    *n = i >= 0 ? c->vals[i].n : 0;
    return i >= 0 ? c->vals[i].list : NULL;
}

bool cli_flag_bool(const cli_ctx *c, const char *name)
{
    int i = flag_index(c, name);

    return i >= 0 && c->vals[i].set && strcmp(c->vals[i].str, "true") == 0;
}

static void vusage(const char *path, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void vusage(const char *path, const char *fmt, va_list ap)
{
    fputs("Error: ", stderr);
    cli_vprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    cli_printf(stderr, "Run '%s --help' for usage.\n", path);
}

int cli_usage_error(const cli_ctx *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vusage(c->path, fmt, ap);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int cli_error(const char *fmt, ...)
{
    va_list ap;

    fputs("Error: ", stderr);
    va_start(ap, fmt);
    cli_vprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_EXIT_FAIL;
}

static void print_flags(FILE *f, const cli_flag *fl, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char left[64];
        const char *vn = fl[i].value_name;

        char sh[8] = "    ";

        if (fl[i].short_name)
            snprintf(sh, sizeof(sh), "-%c, ", fl[i].short_name);
        if (fl[i].kind == CLI_FLAG_OPTVAL)
            snprintf(left, sizeof(left), "%s--%s[=%s]", sh, fl[i].name, vn);
        else
            snprintf(left, sizeof(left), "%s--%s%s%s", sh, fl[i].name, vn ? " " : "",
                     vn ? vn : "");
        fprintf(f, "  %-30s %s", left, fl[i].help);
        if (fl[i].required)
            fputs(" (required)", f);
        else if (fl[i].kind == CLI_FLAG_OPTVAL)
            fprintf(f, " (bare --%s: %s)", fl[i].name, fl[i].def);
        else if (fl[i].def && fl[i].kind != CLI_FLAG_BOOL)
            fprintf(f, " (default %s)", fl[i].def);
        fputc('\n', f);
    }
}

static void print_help(FILE *f, const cli_cmd *cmd, const char *path)
{
    fprintf(f, "%s\n\nUsage:\n  cocoon %s\n", cmd->summary, cmd->use);
    if (cmd->alias)
        fprintf(f, "\nAliases:\n  %s, %s\n", cmd->name, cmd->alias);
    if (cmd->children) {
        fputs("\nAvailable Commands:\n", f);
        for (const cli_cmd *const *ch = cmd->children; *ch; ch++)
            fprintf(f, "  %-11s %s\n", (*ch)->name, (*ch)->summary);
    }
    if (cmd->example)
        fprintf(f, "\nExamples:\n  %s\n", cmd->example);
    if (cmd->n_flags) {
        fputs("\nFlags:\n", f);
        print_flags(f, cmd->flags, cmd->n_flags);
    }
    fputs("\nGlobal Flags:\n", f);
    print_flags(f, global_flags, N(global_flags));
    if (cmd->children)
        fprintf(f, "\nUse \"%s COMMAND --help\" for more information about a command.\n", path);
}

/* One parsed flag token: where its value is and which table it is in. */
static int apply_flag(cli_ctx *c, const cli_flag *fl, cli_flagval *v, const char *shown,
                      const char *inline_val, int *i, int argc, char **argv)
{
    const char *val = inline_val;

    switch (fl->kind) {
    case CLI_FLAG_BOOL:
        if (val && strcmp(val, "true") != 0 && strcmp(val, "false") != 0)
            return cli_usage_error(c, "invalid argument \"%s\" for \"%s\" flag: "
                                      "expected true or false", val, shown);
        v->set = true;
        v->str = val ? val : "true";
        return 0;
    case CLI_FLAG_OPTVAL:
        /* "--wait 10" would silently make 10 a VM name. */
        if (!val && *i + 1 < argc && argv[*i + 1][0] >= '0' && argv[*i + 1][0] <= '9' &&
            strspn(argv[*i + 1], "0123456789") == strlen(argv[*i + 1]))
            return cli_usage_error(c, "%s takes its value after '=': write %s=%s "
                                      "(or put VM names before %s)",
                                   shown, shown, argv[*i + 1], shown);
        v->set = true;
        v->str = val ? val : fl->def;
        return 0;
    case CLI_FLAG_STR:
    case CLI_FLAG_LIST:
        if (!val) {
            if (*i + 1 >= argc)
                return cli_usage_error(c, "flag needs an argument: %s", shown);
            val = argv[++*i];
        }
        v->set = true;
        v->str = val;
        if (fl->kind == CLI_FLAG_LIST) {
            const char **nl = realloc(v->list, (v->n + 1) * sizeof(*nl));

            if (!nl)
                return cli_error("out of memory");
            nl[v->n++] = val;
            v->list = nl;
        }
        return 0;
    }
    return 0;
}

/* The command's own flags first, then the global ones; by long name, or by
 * short name when name is NULL.  *v is the matching value slot. */
static const cli_flag *find_flag(cli_ctx *c, const char *name, char sh, cli_flagval **v)
{
    const cli_flag *tabs[] = { c->cmd->flags, global_flags };
    size_t lens[] = { c->cmd->n_flags, G_N };
    cli_flagval *vals[] = { c->vals, g_vals };

    for (size_t t = 0; t < 2; t++)
        for (size_t i = 0; i < lens[t]; i++)
            if (name ? strcmp(tabs[t][i].name, name) == 0 ||
                           (tabs[t][i].alias && strcmp(tabs[t][i].alias, name) == 0)
                     : sh && tabs[t][i].short_name == sh) {
                *v = &vals[t][i];
                return &tabs[t][i];
            }
    return NULL;
}

static int parse_flag(cli_ctx *c, int *i, int argc, char **argv)
{
    const char *tok = argv[*i];
    char name[64], shown[72];
    const char *inline_val = NULL, *eq;
    const cli_flag *fl;
    cli_flagval *v;

    if (tok[1] == '-') {
        size_t nl;

        eq = strchr(tok + 2, '=');
        nl = eq ? (size_t)(eq - tok - 2) : strlen(tok + 2);
        if (nl == 0 || nl >= sizeof(name))
            return cli_usage_error(c, "unknown flag: %s", tok);
        memcpy(name, tok + 2, nl);
        name[nl] = '\0';
        inline_val = eq ? eq + 1 : NULL;
        snprintf(shown, sizeof(shown), "--%s", name);
        fl = find_flag(c, name, 0, &v);
        if (!fl)
            return cli_usage_error(c, "unknown flag: --%s", name);
        return apply_flag(c, fl, v, shown, inline_val, i, argc, argv);
    }
    /* Short flags: one letter, value attached (-ojson), after '=' or next. */
    if (tok[2] == '=')
        inline_val = tok + 3;
    else if (tok[2])
        inline_val = tok + 2;
    snprintf(shown, sizeof(shown), "-%c", tok[1]);
    fl = find_flag(c, NULL, tok[1], &v);
    if (!fl)
        return cli_usage_error(c, "unknown shorthand flag: '%c' in %s", tok[1], tok);
    if (fl->kind == CLI_FLAG_BOOL && inline_val && tok[2] != '=')
        return cli_usage_error(c, "unknown shorthand flag: '%c' in %s", tok[2], tok);
    return apply_flag(c, fl, v, shown, inline_val, i, argc, argv);
}

static void free_vals(cli_ctx *c)
{
    if (c->vals)
        for (size_t i = 0; i < c->cmd->n_flags; i++)
            free(c->vals[i].list);
    free(c->vals);
    c->vals = NULL;
}

static int enter(cli_ctx *c, const cli_cmd *cmd)
{
    size_t l = strlen(c->path);

    free_vals(c);
    c->cmd = cmd;
    c->vals = calloc(cmd->n_flags ? cmd->n_flags : 1, sizeof(*c->vals));
    if (cmd != &cmd_root)
        snprintf(c->path + l, sizeof(c->path) - l, " %s", cmd->name);
    return c->vals ? 0 : cli_error("out of memory");
}

static int parse_and_run(int argc, char **argv)
{
    cli_ctx c;
    char *root = NULL;
    bool dashdash = false;
    int rc;

    memset(&c, 0, sizeof(c));
    snprintf(c.path, sizeof(c.path), "cocoon");
    c.args = calloc((size_t)argc + 1, sizeof(*c.args));
    if (!c.args || enter(&c, &cmd_root) != 0) {
        free(c.args);
        return cli_error("out of memory");
    }
    for (int i = 1; i < argc; i++) {
        const char *tok = argv[i];

        if (!dashdash && strcmp(tok, "--") == 0) {
            dashdash = true;
            continue;
        }
        if (!dashdash && tok[0] == '-' && tok[1]) {
            rc = parse_flag(&c, &i, argc, argv);
            if (rc)
                goto out;
            continue;
        }
        if (c.cmd->children) {
            const cli_cmd *next = NULL;

            for (const cli_cmd *const *ch = c.cmd->children; *ch; ch++)
                if (strcmp((*ch)->name, tok) == 0 ||
                    ((*ch)->alias && strcmp((*ch)->alias, tok) == 0))
                    next = *ch;
            if (!next) {
                rc = cli_usage_error(&c, "unknown command \"%s\" for \"%s\"", tok, c.path);
                goto out;
            }
            rc = enter(&c, next);
            if (rc)
                goto out;
            continue;
        }
        c.args[c.n_args++] = tok;
    }
    if (g_vals[G_HELP].set && strcmp(g_vals[G_HELP].str, "true") == 0) {
        print_help(stdout, c.cmd, c.path);
        rc = CLI_EXIT_OK;
        goto out;
    }
    if (c.cmd == &cmd_root && c.vals[0].set) {
        rc = cli_version(&c);
        goto out;
    }
    if (!c.cmd->run) {
        print_help(stderr, c.cmd, c.path);
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    {
        char missing[512];
        size_t ml = 0;

        missing[0] = '\0';
        for (size_t k = 0; k < c.cmd->n_flags; k++)
            if (c.cmd->flags[k].required && !c.vals[k].set)
                ml += (size_t)snprintf(missing + ml, ml < sizeof(missing) ? sizeof(missing) - ml : 0,
                                       "%s\"%s\"", ml ? ", " : "", c.cmd->flags[k].name);
        if (missing[0]) {
            rc = cli_usage_error(&c, "required flag(s) %s not set", missing);
            goto out;
        }
    }
    if ((int)c.n_args < c.cmd->min_args || (c.cmd->max_args >= 0 && (int)c.n_args > c.cmd->max_args)) {
        if (c.cmd->max_args == 0)
            rc = cli_usage_error(&c, "unknown command \"%s\" for \"%s\"", c.args[0], c.path);
        else if (c.cmd->min_args == c.cmd->max_args)
            rc = cli_usage_error(&c, "accepts %d arg(s), received %zu", c.cmd->min_args, c.n_args);
        else if ((int)c.n_args < c.cmd->min_args)
            rc = cli_usage_error(&c, "requires at least %d arg(s), only received %zu",
                                 c.cmd->min_args, c.n_args);
        else
            rc = cli_usage_error(&c, "accepts at most %d arg(s), received %zu",
                                 c.cmd->max_args, c.n_args);
        goto out;
    }
    if (c.cmd->choices) {
        const char *ch = c.cmd->choices;
        size_t al = strlen(c.args[0]), wl;

        for (; *ch; ch += wl + (ch[wl] == ' ')) {
            wl = strcspn(ch, " ");
            if (wl == al && memcmp(ch, c.args[0], al) == 0)
                break;
        }
        if (!*ch) {
            rc = cli_usage_error(&c, "invalid argument \"%s\" for \"%s\": expected one of: %s",
                                 c.args[0], c.path, c.cmd->choices);
            goto out;
        }
    }
    {
        const char *o = g_vals[G_OUTPUT].set ? g_vals[G_OUTPUT].str : "text";
        const char *t = g_vals[G_TIMEOUT].set ? g_vals[G_TIMEOUT].str : NULL;

        if (strcmp(o, "json") == 0)
            c.json = true;
        else if (strcmp(o, "text") != 0) {
            rc = cli_usage_error(&c, "invalid argument \"%s\" for \"-o, --output\" flag: "
                                     "must be text or json", o);
            goto out;
        }
        c.timeout_ms = 30000;
        if (t) {
            char *end;
            double s;

            errno = 0;
            s = strtod(t, &end);
            if (errno || end == t || *end || !(s > 0) || s > 86400) {
                rc = cli_usage_error(&c, "invalid argument \"%s\" for \"--timeout\" flag: "
                                         "expected seconds", t);
                goto out;
            }
            c.timeout_ms = (unsigned)(s * 1000.0 + 0.5);
            if (!c.timeout_ms)
                c.timeout_ms = 1;
        }
        c.root = root = store_root_canon(g_vals[G_ROOT].set ? g_vals[G_ROOT].str : NULL);
        if (!root) {
            rc = cli_error("root dir %s: %s",
                           store_root(g_vals[G_ROOT].set ? g_vals[G_ROOT].str : NULL),
                           strerror(errno));
            goto out;
        }
    }
    rc = c.cmd->run(&c);
out:
    /* Results that could not be written are lost: never exit 0 then.  The
     * operations themselves all ran; only their report is missing. */
    if (cli_out_flush(stdout) < 0 || cli_out_errno()) {
        cli_printf(stderr, "Error: write results: %s\n", strerror(cli_out_errno()));
        if (rc == CLI_EXIT_OK)
            rc = CLI_EXIT_FAIL;
    }
    if (cli_out_flush(stderr) < 0 && rc == CLI_EXIT_OK)
        rc = CLI_EXIT_FAIL;
    free_vals(&c);
    free(root);
    for (size_t k = 0; k < G_N; k++)
        free(g_vals[k].list);
    free(c.args);
    return rc;
}

int main(int argc, char **argv)
{
    /* A closed stdout pipe must fail a write, not kill the process halfway
     * through a batch. */
    signal(SIGPIPE, SIG_IGN);
    return parse_and_run(argc, argv);
}
