/* bench/bench_curl.c: what a shell script does today.  Every HTTP request
 * is one `curl --unix-socket` process; a VM's vm.info and vm.add-fs (or
 * vm.remove-device) run one after the other, and up to `par` VMs are
 * worked on at once (1: a shell loop, 8: xargs -P 8).  `-f` makes curl exit
 * non-zero on an HTTP error, so a failed attach is counted as failed. */
#include "bench/bench.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

typedef struct bench_cslot {
    pid_t pid;
    unsigned vm;
    int step;
} bench_cslot;

typedef struct bench_curl {
    const char *curl, *dir;
    posix_spawn_file_actions_t fa;
    bench_run *r;
    int detach;
    double t0;
} bench_curl;

static pid_t bench_curl_spawn(bench_curl *b, unsigned vm, int step)
{
    char api[256], vfs[256], body[512];
    char *argv[16];
    int k = 0;
    pid_t pid;

    bench_api_path(api, sizeof api, b->dir, BENCH_SET_FLEET, vm);
    argv[k++] = (char *)"curl";
    argv[k++] = (char *)"-sf";
    argv[k++] = (char *)"-o";
    argv[k++] = (char *)"/dev/null";
    argv[k++] = (char *)"--unix-socket";
    argv[k++] = api;
    if (step == 1) {
        if (b->detach) {
            snprintf(body, sizeof body, "{\"id\":\"%s\"}", BENCH_DEVICE_ID);
        } else {
            bench_vfs_path(vfs, sizeof vfs, b->dir, BENCH_SET_FLEET, vm);
            snprintf(body, sizeof body,
                     "{\"id\":\"%s\",\"tag\":\"%s\",\"socket\":\"%s\","
                     "\"num_queues\":1,\"queue_size\":1024}",
                     BENCH_DEVICE_ID, BENCH_TAG, vfs);
        }
        argv[k++] = (char *)"-X";
        argv[k++] = (char *)"PUT";
        argv[k++] = (char *)"-H";
        argv[k++] = (char *)"Content-Type: application/json";
        argv[k++] = (char *)"-d";
        argv[k++] = body;
        argv[k++] = b->detach ? (char *)"http://localhost/api/v1/vm.remove-device"
                              : (char *)"http://localhost/api/v1/vm.add-fs";
    } else {
        argv[k++] = (char *)"http://localhost/api/v1/vm.info";
    }
    argv[k] = NULL;
    if (posix_spawn(&pid, b->curl, &b->fa, NULL, argv, environ) != 0)
        return -1;
    return pid;
}

static void bench_curl_phase(bench_curl *b, unsigned n, unsigned par)
{
    bench_cslot *slots = calloc(par, sizeof *slots);
    unsigned next = 0, running = 0, steps = 2;

    if (!slots)
        return;
    b->t0 = bench_now_us();
    for (;;) {
        int status;
        pid_t pid;

        for (unsigned s = 0; s < par && next < n; s++) {
            if (slots[s].pid > 0)
                continue;
            slots[s] = (bench_cslot){ bench_curl_spawn(b, next, 0), next, 0 };
            next++;
            if (slots[s].pid > 0)
                running++;
            else if (!b->r->err[0])
                snprintf(b->r->err, sizeof b->r->err, "spawn %s failed", b->curl);
        }
        if (running == 0)
            break;
        pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (unsigned s = 0; s < par; s++) {
            bench_cslot *c = &slots[s];

            if (c->pid != pid)
                continue;
            running--;
            c->pid = 0;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                if (!b->r->err[0])
                    snprintf(b->r->err, sizeof b->r->err,
                             "curl step %d on vm%u exited with status %d", c->step, c->vm,
                             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
                break;
            }
            if (++c->step < (int)steps) {
                c->pid = bench_curl_spawn(b, c->vm, c->step);
                if (c->pid > 0)
                    running++;
                break;
            }
            if (b->detach) {
                b->r->detach_ok++;
            } else {
                b->r->lat_us[c->vm] = bench_now_us() - b->t0;
                b->r->ok++;
            }
            break;
        }
    }
    free(slots);
}

int bench_curl_batch(const char *curl, const char *dir, unsigned n, unsigned par, int detach,
                     bench_run *r)
{
    bench_curl b = { .curl = curl, .dir = dir, .r = r, .detach = detach };
    struct rusage ru;

    posix_spawn_file_actions_init(&b.fa);
    posix_spawn_file_actions_addopen(&b.fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&b.fa, 2, "/dev/null", O_WRONLY, 0);
    r->inflight = par < n ? par : n;
    bench_curl_phase(&b, n, par);
    if (detach)
        r->detach_wall_us = bench_now_us() - b.t0;
    else
        r->wall_us = bench_now_us() - b.t0;
    posix_spawn_file_actions_destroy(&b.fa);
    /* Peak RSS of the largest curl process: each runs on its own. */
    getrusage(RUSAGE_CHILDREN, &ru);
    r->hwm_kb = ru.ru_maxrss;
    return 0;
}
