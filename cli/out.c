#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

yajl_gen cli_gen_new(bool pretty)
{
    yajl_gen g = yajl_gen_alloc(NULL);

    if (!g)
        return NULL;
    yajl_gen_config(g, yajl_gen_validate_utf8, 1);
    if (pretty) {
        yajl_gen_config(g, yajl_gen_beautify, 1);
        yajl_gen_config(g, yajl_gen_indent_string, "  ");
    }
    return g;
}

int cli_gen_print(yajl_gen g, FILE *f)
{
    const unsigned char *buf;
    size_t len;
    int rc = -1;

    if (!g)
        return -1;
    if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok) {
        /* beautify already ends the document with a newline */
        rc = fwrite(buf, 1, len, f) == len ? 0 : -1;
        if (rc == 0 && (len == 0 || buf[len - 1] != '\n'))
            fputc('\n', f);
        fflush(f);
    }
    yajl_gen_free(g);
    return rc;
}

/* Invalid UTF-8 from a user-typed string must not abort the document:
 * emit a placeholder instead, so the object stays well-formed. */
void cli_gen_str(yajl_gen g, const char *s)
{
    if (yajl_gen_string(g, (const unsigned char *)s, strlen(s)) == yajl_gen_invalid_string)
        yajl_gen_string(g, (const unsigned char *)"<invalid utf-8>", 15);
}

void cli_gen_kv_str(yajl_gen g, const char *k, const char *v)
{
    if (!v)
        return;
    cli_gen_str(g, k);
    cli_gen_str(g, v);
}

void cli_gen_kv_int(yajl_gen g, const char *k, long long v)
{
    cli_gen_str(g, k);
    yajl_gen_integer(g, v);
}

void cli_gen_kv_bool(yajl_gen g, const char *k, bool v)
{
    cli_gen_str(g, k);
    yajl_gen_bool(g, v);
}

void cli_gen_kv_ms(yajl_gen g, const char *k, double ms)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%.3f", ms);

    cli_gen_str(g, k);
    yajl_gen_number(g, num, (size_t)n);
}

void cli_gen_record_open(yajl_gen g, const store_vm *vm, const char *state_override)
{
    const store_vm_config *c = &vm->config;

    yajl_gen_map_open(g);
    cli_gen_kv_str(g, "id", vm->id);
    cli_gen_kv_str(g, "hypervisor", store_hypervisor_name(vm->backend));
    cli_gen_kv_str(g, "state", state_override ? state_override : store_state_name(vm->state));
    cli_gen_str(g, "config");
    yajl_gen_map_open(g);
    cli_gen_kv_str(g, "name", c->name);
    cli_gen_kv_int(g, "cpu", c->cpu);
    cli_gen_kv_int(g, "memory", (long long)c->memory);
    if (c->shared_memory)
        cli_gen_kv_bool(g, "shared_memory", true);
    cli_gen_kv_str(g, "kernel", c->kernel);
    cli_gen_kv_str(g, "initramfs", c->initramfs);
    cli_gen_kv_str(g, "cmdline", c->cmdline);
    if (c->n_disks) {
        cli_gen_str(g, "disks");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < c->n_disks; i++)
            cli_gen_str(g, c->disks[i]);
        yajl_gen_array_close(g);
    }
    yajl_gen_map_close(g);
    cli_gen_kv_str(g, "run_dir", vm->run_dir);
    cli_gen_kv_str(g, "log_dir", vm->log_dir);
    cli_gen_kv_str(g, "binary", vm->binary);
    cli_gen_kv_str(g, "created_at", vm->created_at);
    cli_gen_kv_str(g, "updated_at", vm->updated_at);
    cli_gen_kv_str(g, "started_at", vm->started_at);
}
