#include "cli/plan.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "http/base.h"


static const char *const op_names[] = {
    [CLI_OP_FS_ATTACH] = "fs-attach",
    [CLI_OP_FS_DETACH] = "fs-detach",
    [CLI_OP_DEVICE_ATTACH] = "device-attach",
    [CLI_OP_DEVICE_DETACH] = "device-detach",
    [CLI_OP_FS_LIST] = "fs-list",
    [CLI_OP_DEVICE_LIST] = "device-list",
    [CLI_OP_CLONE] = "clone",
};

const char *cli_op_name(cli_op_kind k)
{
    if ((size_t)k < sizeof(op_names) / sizeof(op_names[0]))
        return op_names[k];
    return "?";
}

static int cli_op_parse_name(const char *s, cli_op_kind *k)
{
    for (size_t i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
        if (strcmp(s, op_names[i]) == 0) {
            *k = (cli_op_kind)i;
            return 0;
        }
    return -EINVAL;
}

void cli_op_fini(cli_op *op)
{
    if (!op)
        return;
    free(op->vm);
    free(op->socket);
    free(op->tag);
    free(op->pci);
    free(op->id);
    free(op->snapshot);
    for (size_t i = 0; i < op->n_fs; i++)
        cli_op_fini(&op->fs[i]);
    free(op->fs);
    memset(op, 0, sizeof(*op));
}

static int take_string(yajl_val v, const char *key, char **dst, char *err, size_t errlen)
{
    const char *s;

    if (!YAJL_IS_STRING(v))
        return base_errf(err, errlen, -EINVAL, "field \"%s\": expected string", key);
    s = YAJL_GET_STRING(v);
    free(*dst);
    *dst = strdup(s ? s : "");
    if (!*dst)
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    return 0;
}

static int take_int(yajl_val v, const char *key, int *dst, char *err, size_t errlen)
{
    long long x;

    if (!YAJL_IS_INTEGER(v))
        return base_errf(err, errlen, -EINVAL, "field \"%s\": expected integer", key);
    x = YAJL_GET_INTEGER(v);
    if (x < INT_MIN || x > INT_MAX)
        return base_errf(err, errlen, -EINVAL, "field \"%s\": out of range", key);
    *dst = (int)x;
    return 0;
}

static int set_field(cli_op *op, const char *key, yajl_val v, char *err, size_t errlen);

/* A clone's "fs": each entry an object of fs-attach fields only. */
static int take_fs(cli_op *op, yajl_val v, char *err, size_t errlen)
{
    static const char *const allowed[] = { "socket", "tag", "num_queues", "queue_size",
                                           "no_socket_check", NULL };

    if (!YAJL_IS_ARRAY(v))
        return base_errf(err, errlen, -EINVAL, "field \"fs\": expected an array of objects");
    if (v->u.array.len > CLI_PLAN_MAX_FS)
        return base_errf(err, errlen, -EINVAL, "field \"fs\": more than %d shares",
                         CLI_PLAN_MAX_FS);
    if (op->fs)
        return base_errf(err, errlen, -EINVAL, "field \"fs\" given twice");
    op->fs = calloc(v->u.array.len + 1, sizeof(*op->fs));
    if (!op->fs)
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    for (size_t i = 0; i < v->u.array.len; i++) {
        yajl_val o = v->u.array.values[i];
        cli_op *f = &op->fs[op->n_fs++];

        f->kind = CLI_OP_FS_ATTACH;
        if (!YAJL_IS_OBJECT(o))
            return base_errf(err, errlen, -EINVAL, "field \"fs\": entry %zu: expected an object",
                             i + 1);
        for (size_t k = 0; k < o->u.object.len; k++) {
            const char *key = o->u.object.keys[k];
            size_t a = 0;
            int rc;

            while (allowed[a] && strcmp(allowed[a], key) != 0)
                a++;
            if (!allowed[a])
                return base_errf(err, errlen, -EINVAL, "field \"fs\": entry %zu: unknown "
                                 "field \"%.64s\"", i + 1, key);
            rc = set_field(f, key, o->u.object.values[k], err, errlen);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* The fields that belong to a clone line, and only to one. */
static int check_clone(cli_op *op, char *err, size_t errlen)
{
    bool clone = op->kind == CLI_OP_CLONE;

    if (!clone && (op->snapshot || op->fs))
        return base_errf(err, errlen, -EINVAL, "fields \"snapshot\" and \"fs\" belong to "
                         "op \"clone\"");
    if (clone && (!op->snapshot || !*op->snapshot))
        return base_errf(err, errlen, -EINVAL, "missing field \"snapshot\"");
    if (clone && (op->socket || op->tag || op->pci || op->id || op->num_queues ||
                  op->queue_size || op->no_socket_check || op->wait_s))
        return base_errf(err, errlen, -EINVAL, "op \"clone\" takes vm, snapshot and fs; "
                         "share fields go in \"fs\"");
    for (size_t i = 0; i < op->n_fs; i++) {
        op->fs[i].vm = strdup(op->vm);
        if (!op->fs[i].vm)
            return base_errf(err, errlen, -ENOMEM, "out of memory");
    }
    return 0;
}

static int set_field(cli_op *op, const char *key, yajl_val v, char *err, size_t errlen)
{
    if (strcmp(key, "op") == 0) {
        const char *name = YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : NULL;

        if (!name)
            return base_errf(err, errlen, -EINVAL, "field \"op\": expected string");
        if (cli_op_parse_name(name, &op->kind) < 0)
            return base_errf(err, errlen, -EINVAL,
                             "unknown op \"%.64s\" (want fs-attach, fs-detach, "
                             "device-attach, device-detach, fs-list, device-list or clone)",
                             name);
        return 0;
    }
    if (strcmp(key, "vm") == 0)
        return take_string(v, key, &op->vm, err, errlen);
    if (strcmp(key, "socket") == 0)
        return take_string(v, key, &op->socket, err, errlen);
    if (strcmp(key, "tag") == 0)
        return take_string(v, key, &op->tag, err, errlen);
    if (strcmp(key, "pci") == 0)
        return take_string(v, key, &op->pci, err, errlen);
    if (strcmp(key, "id") == 0)
        return take_string(v, key, &op->id, err, errlen);
    if (strcmp(key, "snapshot") == 0)
        return take_string(v, key, &op->snapshot, err, errlen);
    if (strcmp(key, "fs") == 0)
        return take_fs(op, v, err, errlen);
    if (strcmp(key, "num_queues") == 0)
        return take_int(v, key, &op->num_queues, err, errlen);
    if (strcmp(key, "queue_size") == 0)
        return take_int(v, key, &op->queue_size, err, errlen);
    if (strcmp(key, "no_socket_check") == 0) {
        if (!YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v))
            return base_errf(err, errlen, -EINVAL,
                             "field \"no_socket_check\": expected boolean");
        op->no_socket_check = YAJL_IS_TRUE(v);
        return 0;
    }
    if (strcmp(key, "wait") == 0) {
        if (YAJL_IS_TRUE(v)) {
            op->wait_s = CLI_WAIT_DEFAULT_S;
            return 0;
        }
        if (YAJL_IS_FALSE(v)) {
            op->wait_s = 0;
            return 0;
        }
        if (take_int(v, key, &op->wait_s, err, errlen) < 0)
            return base_errf(err, errlen, -EINVAL,
                             "field \"wait\": expected seconds or boolean");
        if (op->wait_s < 0 || op->wait_s > CLI_WAIT_MAX_S)
            return base_errf(err, errlen, -EINVAL,
                             "field \"wait\": expected 0 to %d seconds", CLI_WAIT_MAX_S);
        return 0;
    }
    return base_errf(err, errlen, -EINVAL, "unknown field \"%.64s\"", key);
}

int cli_plan_parse_line(const char *line, size_t len, cli_op *op, char *err, size_t errlen)
{
    char ebuf[256], *buf;
    yajl_val root;
    bool have_op = false;
    cli_op tmp;
    size_t i;
    int rc = 0;

    for (i = 0; i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' ||
                            line[i] == '\n'); i++)
        ;
    if (i == len)
        return 1;
    if (len > PLAN_LINE_MAX)
        return base_errf(err, errlen, -EINVAL, "line longer than %d bytes", PLAN_LINE_MAX);
    if (memchr(line, '\0', len))
        return base_errf(err, errlen, -EINVAL, "NUL byte in line");
    buf = malloc(len + 1);
    if (!buf)
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    memcpy(buf, line, len);
    buf[len] = '\0';
    ebuf[0] = '\0';
    root = yajl_tree_parse(buf, ebuf, sizeof(ebuf));
    free(buf);
    if (!root) {
        /* yajl's message spans lines; the first one is the reason. */
        char *nl = strchr(ebuf, '\n');

        if (nl)
            *nl = '\0';
        return base_errf(err, errlen, -EINVAL, "invalid JSON: %s",
                         ebuf[0] ? ebuf : "parse error");
    }
    if (!YAJL_IS_OBJECT(root)) {
        yajl_tree_free(root);
        return base_errf(err, errlen, -EINVAL, "expected a JSON object");
    }
    memset(&tmp, 0, sizeof(tmp));
    for (i = 0; rc == 0 && i < root->u.object.len; i++) {
        const char *key = root->u.object.keys[i];

        if (strcmp(key, "op") == 0)
            have_op = true;
        rc = set_field(&tmp, key, root->u.object.values[i], err, errlen);
    }
    yajl_tree_free(root);
    if (rc == 0 && !have_op)
        rc = base_errf(err, errlen, -EINVAL, "missing field \"op\"");
    if (rc == 0 && (!tmp.vm || !*tmp.vm))
        rc = base_errf(err, errlen, -EINVAL, "missing field \"vm\"");
    if (rc == 0)
        rc = check_clone(&tmp, err, errlen);
    if (rc < 0) {
        cli_op_fini(&tmp);
        return rc == -ENOMEM ? rc : -EINVAL;
    }
    *op = tmp;
    return 0;
}
