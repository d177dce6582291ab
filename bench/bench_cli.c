/* bench/bench_cli.c: the cocoon CLI peers, as a user types them: one
 * `cocoon vm fs attach VM... --socket TEMPLATE --tag bench` process for
 * the batch at the default flags (text output, --parallel 256), and one
 * `detach` process to reset.  The wall time includes process start and
 * exit; CPU and peak RSS come from wait4.  Text output carries no
 * per-attach latency, so none is reported.
 *
 * The VMs and templates per peer:
 *   cocoon-cli       fleet sockets DIR/vm<i>.sock, DIR/vfs/{name}.sock
 *   rec-cli-path     recorded VMs by API socket path, {vm}.vfs
 *   rec-cli-name     recorded VMs by name, DIR/rr/{name}/api.sock.vfs */
#include "bench/bench.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* What to quote of a failed run: its first Error, Warning or Interrupted
 * line (the success lines before it say nothing), else the start. */
static const char *cli_failure(const char *out)
{
    static const char *const marks[] = { "Error: ", "Warning: ", "Interrupted" };

    for (const char *l = out; l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
        for (size_t i = 0; i < sizeof marks / sizeof *marks; i++)
            if (!strncmp(l, marks[i], strlen(marks[i])))
                return l;
    return out;
}

int bench_cli_batch(const char *cocoon, const char *dir, bench_peer p, unsigned n, int detach,
                    bench_run *r)
{
    char root[256], tmpl[256];
    char **argv = calloc((size_t)n + 16, sizeof *argv);
    char *refs = malloc((size_t)n * 256);
    bench_proc pr;
    int k = 0;

    if (!argv || !refs) {
        free(argv);
        free(refs);
        return -1;
    }
    bench_root_dir(root, sizeof root, dir);
    if (p == BENCH_REC_CLI_NAME)
        snprintf(tmpl, sizeof tmpl, "%s/rr/{name}/api.sock.vfs", dir);
    else if (p == BENCH_REC_CLI_PATH)
        snprintf(tmpl, sizeof tmpl, "{vm}.vfs");
    else
        snprintf(tmpl, sizeof tmpl, "%s/vfs/{name}.sock", dir);
    argv[k++] = (char *)cocoon;
    argv[k++] = (char *)"--root-dir";
    argv[k++] = root;
    argv[k++] = (char *)"vm";
    argv[k++] = (char *)"fs";
    argv[k++] = detach ? (char *)"detach" : (char *)"attach";
    for (unsigned i = 0; i < n; i++) {
        char *ref = refs + (size_t)i * 256;

        if (p == BENCH_REC_CLI_NAME)
            bench_rec_name(ref, 256, i);
        else
            bench_api_path(ref, 256, dir, bench_peer_set(p), i);
        argv[k++] = ref;
    }
    if (!detach) {
        argv[k++] = (char *)"--socket";
        argv[k++] = tmpl;
    }
    argv[k++] = (char *)"--tag";
    argv[k++] = (char *)BENCH_TAG;
    argv[k] = NULL;

    r->inflight = n < 256 ? n : 256;
    if (bench_proc_run(argv, &pr) < 0) {
        free(pr.out);
        free(argv);
        free(refs);
        return -1;
    }
    /* Exit 0 means every VM's operation succeeded; otherwise the
     * operations cannot be told apart in text output, and none counts. */
    if (WIFEXITED(pr.status) && WEXITSTATUS(pr.status) == 0) {
        if (detach)
            r->detach_ok = n;
        else
            r->ok = n;
    } else if (!r->err[0]) {
        snprintf(r->err, sizeof r->err, "cocoon %s exited with status %d: %.400s",
                 detach ? "detach" : "attach",
                 WIFEXITED(pr.status) ? WEXITSTATUS(pr.status) : -1, cli_failure(pr.out));
    }
    if (detach) {
        r->detach_wall_us = pr.wall_us;
        r->detach_proc_cpu_us = pr.cpu_us;
    } else {
        r->wall_us = pr.wall_us;
        r->proc_cpu_us = pr.cpu_us;
        r->hwm_kb = pr.maxrss_kb;
    }
    free(pr.out);
    free(argv);
    free(refs);
    return 0;
}
