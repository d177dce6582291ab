/* cli/plan.h: one operation of a batch, and the parser of one JSON Lines
 * plan line into it.  Pure: no I/O, no VM lookup (the fuzz target drives
 * cli_plan_parse_line directly). */
#ifndef COCOON_CLI_PLAN_H
#define COCOON_CLI_PLAN_H

#include <stdbool.h>
#include <stddef.h>

typedef enum cli_op_kind {
    CLI_OP_FS_ATTACH,
    CLI_OP_FS_DETACH,
    CLI_OP_DEVICE_ATTACH,
    CLI_OP_DEVICE_DETACH,
    CLI_OP_FS_LIST,
    CLI_OP_DEVICE_LIST,
    CLI_OP_CLONE,
} cli_op_kind;

/* Every string owned (NULL when absent); free with cli_op_fini. */
typedef struct cli_op {
    cli_op_kind kind;
    char *vm;                   /* clone: the new VM's name */
    char *socket, *tag;
    int num_queues, queue_size;
    bool no_socket_check;
    char *pci, *id;
    int wait_s;                 /* detach: seconds to wait for the eject, 0: none */
    char *snapshot;             /* clone: the snapshot ref */
    struct cli_op *fs;          /* clone: fs-attach ops for the new VM, run
                                   after it is up (vm set to its name) */
    size_t n_fs;
} cli_op;

/* Plan lines describe one small operation; anything bigger is a mistake
 * and is refused before yajl sees it. */
#define PLAN_LINE_MAX 65536

/* "fs-attach", ... (static). */
const char *cli_op_name(cli_op_kind k);

/* Default --wait when given without a value, and the largest accepted,
 * seconds.  The engine takes the wait in milliseconds as an unsigned int,
 * so the bound keeps seconds * 1000 far from overflowing it. */
#define CLI_WAIT_DEFAULT_S 30
#define CLI_WAIT_MAX_S 86400
#define CLI_PLAN_MAX_FS 64

/* Parses one line (need not be NUL-terminated; a trailing "\r" is fine):
 *   {"op":"fs-attach","vm":"web-1","socket":"/run/vfs/web-1.sock","tag":"data"}
 * Fields: op, vm (required strings); socket, tag, pci, id (strings);
 * num_queues, queue_size (integers); no_socket_check (bool); wait (seconds
 * as an integer from 0 to CLI_WAIT_MAX_S, or true for CLI_WAIT_DEFAULT_S,
 * false for none).  A clone line names the new VM in vm and takes
 * snapshot (required) and fs, an array of up to CLI_PLAN_MAX_FS objects
 * with the fs-attach fields (socket, tag, num_queues, queue_size,
 * no_socket_check):
 *   {"op":"clone","vm":"web-1","snapshot":"base",
 *    "fs":[{"socket":"/run/vfs/{name}.sock","tag":"data"}]}
 * Returns 1 for a blank line (op untouched), 0 with *op filled, or -EINVAL
 * with the reason in err (op left zeroed). */
int cli_plan_parse_line(const char *line, size_t len, cli_op *op, char *err, size_t errlen);

void cli_op_fini(cli_op *op);

#endif
