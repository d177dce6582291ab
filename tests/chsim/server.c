/* tests/chsim/server.c: sockets, HTTP framing and the per-VM request queue.
 * Requests are parsed the way micro_http does (request line and header
 * lines at most 1024 bytes, body by Content-Length only, GET/PUT/PATCH) and
 * queued per VM, so one slow request holds every connection of its VM, as
 * CH's single VMM thread does.  Faults change only how a reply is framed or
 * whether the request runs at all. */
#include "tests/chsim/chsim.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#define LINE_MAX_LEN 1024
#define DRIP_MS 200
#define OVERSIZED_BODY (9u * 1024 * 1024)

static const char too_many[] =
    "HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: close\r\n"
    "Content-Length: 40\r\n\r\n{ \"error\": \"Too many open connections\" }";

static const char *const ep_names[] = {
    "vmm.ping", "vm.info", "vm.add-fs", "vm.add-device", "vm.remove-device",
    "vm.pause", "vm.resume", "vm.shutdown", "vm.power-button", "vm.snapshot",
    "vm.restore", "vm.boot", "vm.create", "vm.delete", "vm.reboot",
    "vmm.shutdown", "vm.add-disk", "vm.add-net", "vm.add-pmem", "vm.add-vsock",
    "vm.add-vdpa", "vm.add-user-device", "vm.resize", "vm.resize-zone",
    "vm.counters", "vm.coredump", "vm.send-migration", "vm.receive-migration",
    "vm.nmi",
    /* Firecracker */
    "actions", "machine-config", "boot-source", "drives", "network-interfaces",
    "vm", "instance-info", "snapshot/create", "snapshot/load", "vm/config",
};
#define NEPS ((int)(sizeof(ep_names) / sizeof(ep_names[0])))

static const char *const fault_names[CHSIM_F_COUNT] = {
    "none", "close-before-reply", "close-mid-headers", "close-mid-body",
    "garbage-status", "oversized-headers", "oversized-body", "slow-drip",
    "never-reply", "plain-text-error", "http10", "chunked", "die",
    "die-after-reply", "handover", "hold",
};

struct chsim_conn {
    struct chsim_conn *next;
    struct chsim_vm *vm;
    int fd;
    ev_io rw, ww;
    ev_timer drip, reap;
    char *in;
    size_t in_len, in_cap;
    struct chsim_req *body_req;   /* headers parsed, body still arriving */
    char *out;
    size_t out_len, out_off, out_cap;
    size_t drip_bytes;            /* front bytes of out to send slowly */
    size_t lazy_at;               /* filler goes at this out offset */
    uint64_t lazy_left;
    bool close_after_flush, dead;
    bool exit_after_flush;        /* the VMM dies once this reply is out */
    int npending;
};

const char *chsim_ep_name(int ep)
{
    return ep >= 0 && ep < NEPS ? ep_names[ep] : "?";
}

int chsim_ep_lookup(const char *name)
{
    for (int i = 0; i < NEPS; i++)
        if (strcmp(ep_names[i], name) == 0)
            return i;
    return -1;
}

int chsim_fault_parse(const char *name)
{
    for (int i = 0; i < CHSIM_F_COUNT; i++)
        if (strcmp(fault_names[i], name) == 0)
            return i;
    return -1;
}

/* ---- small buffers ---- */

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);

    if (!q) {
        fprintf(stderr, "chsim: out of memory\n");
        exit(1);
    }
    return q;
}

static void out_append(struct chsim_conn *c, const void *data, size_t n)
{
    if (c->out_off > 0 && c->out_off == c->out_len && c->lazy_left == 0) {
        c->out_off = c->out_len = c->lazy_at = 0;
    }
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 1024;

        while (cap < c->out_len + n)
            cap *= 2;
        c->out = xrealloc(c->out, cap);
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, n);
    c->out_len += n;
}

static void out_printf(struct chsim_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void out_printf(struct chsim_conn *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > 0)
        out_append(c, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

char *chsim_json_str(const char *s)
{
    size_t n = strlen(s);
    char *o = xrealloc(NULL, n * 6 + 3), *p = o;

    *p++ = '"';
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\') {
            *p++ = '\\';
            *p++ = (char)ch;
        } else if (ch == '\n') {
            *p++ = '\\';
            *p++ = 'n';
        } else if (ch < 0x20) {
            p += sprintf(p, "\\u%04x", ch);
        } else {
            *p++ = (char)ch;
        }
    }
    *p++ = '"';
    *p = '\0';
    return o;
}

void chsim_resp_set(struct chsim_resp *r, int code, const char *fmt, ...)
{
    va_list ap;
    int n;

    free(r->body);
    r->body = NULL;
    r->body_len = 0;
    r->code = code;
    if (!fmt)
        return;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    r->body = xrealloc(NULL, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(r->body, (size_t)n + 1, fmt, ap);
    va_end(ap);
    r->body_len = (size_t)n;
}

void chsim_resp_chain(struct chsim_resp *r, int code, const char *const chain[])
{
    size_t cap = 64, len = 0;
    char *b = xrealloc(NULL, cap);
    bool json = chsim_opt.gen != CHSIM_V46;

    b[0] = '\0';
    if (json)
        b[len++] = '[';
    for (int i = 0; chain[i]; i++) {
        char *q = json ? chsim_json_str(chain[i]) : NULL;
        const char *piece = json ? q : chain[i];
        size_t need = strlen(piece) + 4;

        if (len + need + 2 > cap) {
            while (len + need + 2 > cap)
                cap *= 2;
            b = xrealloc(b, cap);
        }
        if (i > 0) {
            if (json) {
                b[len++] = ',';
            } else {
                b[len++] = ':';
                b[len++] = ' ';
            }
        }
        memcpy(b + len, piece, strlen(piece));
        len += strlen(piece);
        free(q);
    }
    if (json)
        b[len++] = ']';
    b[len] = '\0';
    free(r->body);
    r->code = code;
    r->body = b;
    r->body_len = len;
}

/* ---- connection lifetime ---- */

static void conn_reap_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void vm_pump(struct chsim_vm *vm);

static void req_free(struct chsim_req *r)
{
    if (!r)
        return;
    free(r->path);
    free(r->body);
    free(r->canned);
    free(r);
}

/* A VMM that crashes right after answering: everything it sent is in the
 * client's socket, and nothing it would do next happens. */
static void die_now(const char *why)
{
    fprintf(stderr, "chsim: fault %s: exiting\n", why);
    _exit(1);
}

/* Never frees at once: the caller may be deep inside this connection's own
 * callbacks.  The reap timer does it on the next loop iteration. */
static void conn_kill(struct chsim_conn *c)
{
    if (c->exit_after_flush)
        die_now("die-after-reply (connection lost)");
    if (c->dead)
        return;
    c->dead = true;
    ev_io_stop(chsim_loop, &c->rw);
    ev_io_stop(chsim_loop, &c->ww);
    ev_timer_stop(chsim_loop, &c->drip);
    shutdown(c->fd, SHUT_RDWR);
    ev_timer_init(&c->reap, conn_reap_cb, 0., 0.);
    c->reap.data = c;
    ev_timer_start(chsim_loop, &c->reap);
}

static void conn_free(struct chsim_conn *c)
{
    struct chsim_vm *vm = c->vm;

    ev_io_stop(chsim_loop, &c->rw);
    ev_io_stop(chsim_loop, &c->ww);
    ev_timer_stop(chsim_loop, &c->drip);
    ev_timer_stop(chsim_loop, &c->reap);
    close(c->fd);
    for (struct chsim_conn **pp = &vm->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    vm->nconns--;
    /* Requests already parsed still run, as in CH; only the reply is lost. */
    for (struct chsim_req *r = vm->qhead; r; r = r->next)
        if (r->conn == c)
            r->conn = NULL;
    if (vm->cur && vm->cur->conn == c)
        vm->cur->conn = NULL;
    req_free(c->body_req);
    free(c->in);
    free(c->out);
    free(c);
}

static void conn_reap_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_free(w->data);
}

static char filler[65536];

static void conn_flush(struct chsim_conn *c)
{
    if (c->dead)
        return;
    if (c->drip_bytes > 0) {
        if (!ev_is_active(&c->drip)) {
            ev_timer_set(&c->drip, DRIP_MS / 1000., DRIP_MS / 1000.);
            ev_timer_start(chsim_loop, &c->drip);
        }
        ev_io_stop(chsim_loop, &c->ww);
        return;
    }
    for (;;) {
        const char *p;
        size_t n;
        ssize_t w;
        bool is_filler = false;

        if (c->lazy_left > 0 && c->out_off == c->lazy_at) {
            p = filler;
            n = c->lazy_left < sizeof(filler) ? (size_t)c->lazy_left : sizeof(filler);
            is_filler = true;
        } else {
            size_t end = c->lazy_left > 0 ? c->lazy_at : c->out_len;

            p = c->out + c->out_off;
            n = end - c->out_off;
        }
        if (n == 0)
            break;
        w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ev_io_start(chsim_loop, &c->ww);
                return;
            }
            conn_kill(c);
            return;
        }
        if (is_filler)
            c->lazy_left -= (uint64_t)w;
        else
            c->out_off += (size_t)w;
    }
    ev_io_stop(chsim_loop, &c->ww);
    if (c->exit_after_flush)
        die_now("die-after-reply");
    if (c->close_after_flush)
        conn_kill(c);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_flush(w->data);
}

static void conn_drip_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct chsim_conn *c = w->data;
    ssize_t n;

    (void)revents;
    if (c->drip_bytes == 0 || c->out_off >= c->out_len) {
        c->drip_bytes = 0;
        ev_timer_stop(loop, w);
        conn_flush(c);
        return;
    }
    n = send(c->fd, c->out + c->out_off, 1, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        conn_kill(c);
        return;
    }
    if (n == 1) {
        c->out_off++;
        c->drip_bytes--;
    }
    if (c->drip_bytes == 0) {
        ev_timer_stop(loop, w);
        conn_flush(c);
    }
}

/* ---- replies ---- */

static void emit_normal(struct chsim_conn *c, const struct chsim_resp *r)
{
    out_printf(c, "HTTP/1.1 %d \r\nServer: %s\r\nConnection: keep-alive\r\n", r->code,
               r->server ? r->server : "Cloud Hypervisor API");
    if (r->code != 204)
        out_printf(c, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                   r->body_len);
    out_append(c, "\r\n", 2);
    if (r->code != 204 && r->body_len)
        out_append(c, r->body, r->body_len);
}

static void emit(struct chsim_conn *c, const struct chsim_resp *r, int fault)
{
    const char *server = r->server ? r->server : "Cloud Hypervisor API";
    size_t start = c->out_len;

    switch (fault) {
    case CHSIM_F_CLOSE_BEFORE_REPLY:
        conn_kill(c);
        return;
    case CHSIM_F_NEVER_REPLY:
        return;
    case CHSIM_F_CLOSE_MID_HEADERS:
        out_printf(c, "HTTP/1.1 %d \r\nServer: %s\r\nConnec", r->code, server);
        c->close_after_flush = true;
        break;
    case CHSIM_F_CLOSE_MID_BODY: {
        size_t declared = r->body_len < 32 ? 64 : r->body_len;
        size_t half = r->body_len / 2;

        out_printf(c, "HTTP/1.1 %d \r\nServer: %s\r\nConnection: keep-alive\r\n"
                   "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                   r->code == 204 ? 200 : r->code, server, declared);
        if (half)
            out_append(c, r->body, half);
        else
            out_append(c, "{\"id\":", 6);
        c->close_after_flush = true;
        break;
    }
    case CHSIM_F_GARBAGE_STATUS:
        out_append(c, "XTTP/9.9 abc garbage\r\n", 22);
        out_printf(c, "Server: %s\r\nConnection: keep-alive\r\nContent-Type: "
                   "application/json\r\nContent-Length: %zu\r\n\r\n", server, r->body_len);
        out_append(c, r->body ? r->body : "", r->body_len);
        break;
    case CHSIM_F_OVERSIZED_HEADERS: {
        static char pad[17 * 1024];

        memset(pad, 'a', sizeof(pad));
        out_printf(c, "HTTP/1.1 %d \r\nServer: %s\r\nX-Chsim-Pad: ", r->code, server);
        out_append(c, pad, sizeof(pad));
        out_printf(c, "\r\nConnection: keep-alive\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\n\r\n", r->body_len);
        out_append(c, r->body ? r->body : "", r->body_len);
        break;
    }
    case CHSIM_F_OVERSIZED_BODY:
        out_printf(c, "HTTP/1.1 %d \r\nServer: %s\r\nConnection: keep-alive\r\n"
                   "Content-Type: application/json\r\nContent-Length: %u\r\n\r\n",
                   r->code == 204 ? 200 : r->code, server, OVERSIZED_BODY);
        memset(filler, ' ', sizeof(filler));
        c->lazy_at = c->out_len;
        c->lazy_left = OVERSIZED_BODY;
        break;
    case CHSIM_F_HTTP10:
        out_printf(c, "HTTP/1.0 %d \r\nServer: %s\r\nContent-Type: application/json\r\n\r\n",
                   r->code, server);
        out_append(c, r->body ? r->body : "", r->body_len);
        c->close_after_flush = true;
        break;
    case CHSIM_F_CHUNKED:
        if (r->code == 204) {
            emit_normal(c, r);
            break;
        }
        out_printf(c, "HTTP/1.1 %d \r\nServer: %s\r\nConnection: keep-alive\r\n"
                   "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                   r->code, server);
        if (r->body_len) {
            size_t half = r->body_len / 2 ? r->body_len / 2 : r->body_len;

            out_printf(c, "%zx\r\n", half);
            out_append(c, r->body, half);
            out_append(c, "\r\n", 2);
            if (r->body_len > half) {
                out_printf(c, "%zx\r\n", r->body_len - half);
                out_append(c, r->body + half, r->body_len - half);
                out_append(c, "\r\n", 2);
            }
        }
        out_append(c, "0\r\n\r\n", 5);
        break;
    case CHSIM_F_SLOW_DRIP:
        emit_normal(c, r);
        c->drip_bytes += c->out_len - start;
        break;
    case CHSIM_F_DIE_AFTER_REPLY:
    case CHSIM_F_HANDOVER:
        emit_normal(c, r);
        c->exit_after_flush = true;
        break;
    default:
        emit_normal(c, r);
        break;
    }
    conn_flush(c);
}

/* ---- the per-VM queue ---- */

/* Another VMM takes this one's socket path while a request is being
 * served: the listener goes (the path with it), a chsim with this command
 * line binds the path, and only once that one listens (it says so on the
 * pipe named by CHSIM_READY_FD) does the request go on.  So whatever the
 * client sends next reaches the successor, by construction.  Connections
 * already accepted stay. */
static void vm_handover(struct chsim_vm *vm)
{
    char fdnum[16], ok = 0;
    int p[2];
    pid_t pid = -1;

    if (vm->lfd >= 0) {
        ev_io_stop(chsim_loop, &vm->lw);
        close(vm->lfd);
        vm->lfd = -1;
    }
    unlink(vm->sock);
    if (pipe(p) == 0) {
        pid = fork();
        if (pid == 0) {
            close(p[0]);
            snprintf(fdnum, sizeof(fdnum), "%d", p[1]);
            setenv("CHSIM_READY_FD", fdnum, 1);
            execv("/proc/self/exe", chsim_opt.argv);
            _exit(127);
        }
        close(p[1]);
        /* One byte once it listens; EOF when it failed to start. */
        while (pid > 0 && read(p[0], &ok, 1) < 0 && errno == EINTR)
            ;
        close(p[0]);
    }
    if (ok == 1)
        fprintf(stderr, "chsim: handover of %s to pid %ld\n", vm->sock, (long)pid);
    else
        fprintf(stderr, "chsim: handover of %s: no successor listening\n", vm->sock);
}

static int take_fault(struct chsim_vm *vm, int ep)
{
    struct chsim_fault *f;
    int mode;

    if (ep < 0)
        return CHSIM_F_NONE;
    f = &vm->faults[ep];
    mode = f->mode;
    if (mode != CHSIM_F_NONE && f->count > 0 && --f->count == 0)
        f->mode = CHSIM_F_NONE;
    return mode;
}

static void serve_ctl(struct chsim_vm *vm, struct chsim_req *req, struct chsim_resp *r);

void chsim_vm_reply(struct chsim_vm *vm, struct chsim_resp *resp)
{
    struct chsim_req *req = vm->cur;
    int fault = vm->cur_fault;

    if (fault == CHSIM_F_HOLD) {
        /* The request ran; its answer waits, and so does the VM's queue,
         * as behind a slow request. */
        vm->cur_fault = CHSIM_F_NONE;
        vm->holding = true;
        vm->held = *resp;
        resp->body = NULL;
        return;
    }
    if ((fault == CHSIM_F_DIE_AFTER_REPLY || fault == CHSIM_F_HANDOVER) &&
        (!req || !req->conn || req->conn->dead))
        die_now("die-after-reply (no client)");
    vm->cur = NULL;
    if (req && req->conn && !req->conn->dead) {
        req->conn->npending--;
        emit(req->conn, resp, fault);
    } else if (req && req->conn) {
        req->conn->npending--;
    }
    free(resp->body);
    resp->body = NULL;
    req_free(req);
    vm_pump(vm);
}

/* Replies given synchronously from inside serve land back here through
 * chsim_vm_reply; the pumping flag turns that into one more turn of this
 * loop instead of a recursion per pipelined request. */
static void vm_pump(struct chsim_vm *vm)
{
    if (vm->pumping)
        return;
    vm->pumping = true;
    while (!vm->cur && vm->qhead) {
        struct chsim_req *req = vm->qhead;
        int fault;

        vm->qhead = req->next;
        if (!vm->qhead)
            vm->qtail = NULL;
        req->next = NULL;
        if (req->canned) {
            if (req->conn && !req->conn->dead) {
                req->conn->npending--;
                out_append(req->conn, req->canned, req->canned_len);
                conn_flush(req->conn);
            } else if (req->conn) {
                req->conn->npending--;
            }
            req_free(req);
            continue;
        }
        vm->cur = req;
        vm->cur_fault = CHSIM_F_NONE;
        if (strncmp(req->path, "/chsim/", 7) == 0) {
            struct chsim_resp r = { 0 };

            serve_ctl(vm, req, &r);
            chsim_vm_reply(vm, &r);
            continue;
        }
        fault = take_fault(vm, req->ep);
        vm->cur_fault = fault;
        if (fault == CHSIM_F_HANDOVER)
            vm_handover(vm);
        if (fault == CHSIM_F_DIE) {
            fprintf(stderr, "chsim: fault die on %s\n", req->path);
            _exit(1);
        }
        if (fault == CHSIM_F_PLAIN_TEXT_ERROR) {
            struct chsim_resp r = { 0 };

            vm->cur_fault = CHSIM_F_NONE;
            chsim_resp_set(&r, 500, "Error from API: chsim injected plain-text error");
            chsim_vm_reply(vm, &r);
            continue;
        }
        if (chsim_opt.firecracker)
            chsim_fc_serve(vm, req);
        else
            chsim_vm_serve(vm, req);
    }
    vm->pumping = false;
}

static void vm_enqueue(struct chsim_vm *vm, struct chsim_req *req)
{
    if (req->conn)
        req->conn->npending++;
    if (vm->qtail)
        vm->qtail->next = req;
    else
        vm->qhead = req;
    vm->qtail = req;
    vm_pump(vm);
}

/* ---- /chsim/ control endpoints ---- */

static void stats_json(struct chsim_resp *r, const unsigned long *counts, unsigned long ejects)
{
    size_t cap = 4096, len = 0;
    char *b = xrealloc(NULL, cap);

    b[len++] = '{';
    for (int i = 0; i < NEPS; i++) {
        len += (size_t)snprintf(b + len, cap - len, "%s\"%s\":%lu", len > 1 ? "," : "",
                                ep_names[i], counts[i]);
    }
    len += (size_t)snprintf(b + len, cap - len, ",\"ejects\":%lu}", ejects);
    free(r->body);
    r->code = 200;
    r->body = b;
    r->body_len = len;
}

char *chsim_stats_text(const unsigned long *counts, unsigned long ejects)
{
    struct chsim_resp r = { 0 };

    stats_json(&r, counts, ejects);
    return r.body;
}

static void serve_ctl(struct chsim_vm *vm, struct chsim_req *req, struct chsim_resp *r)
{
    if (strcmp(req->path, "/chsim/stats") == 0 && strcmp(req->method, "GET") == 0) {
        stats_json(r, vm->counts, vm->ejects);
        return;
    }
    if (strcmp(req->path, "/chsim/release") == 0 && strcmp(req->method, "PUT") == 0) {
        struct chsim_resp held = vm->held;

        if (!vm->holding) {
            chsim_resp_set(r, 409, "[\"chsim: no reply is held\"]");
            return;
        }
        vm->holding = false;
        vm->held.body = NULL;
        chsim_resp_set(r, 204, NULL);
        chsim_vm_reply(vm, &held);
        return;
    }
    if (strcmp(req->path, "/chsim/eject") == 0 && strcmp(req->method, "PUT") == 0) {
        chsim_resp_set(r, 200, "{\"ejected\":%d}", chsim_vm_eject_pending(vm));
        return;
    }
    if (strcmp(req->path, "/chsim/vminfo-override") == 0 && strcmp(req->method, "PUT") == 0) {
        free(vm->vminfo_override);
        vm->vminfo_override = NULL;
        if (req->body_len > 0) {
            vm->vminfo_override = xrealloc(NULL, req->body_len + 1);
            memcpy(vm->vminfo_override, req->body, req->body_len);
            vm->vminfo_override[req->body_len] = '\0';
        }
        chsim_resp_set(r, 204, NULL);
        return;
    }
    if (strcmp(req->path, "/chsim/fault") == 0 && strcmp(req->method, "PUT") == 0) {
        char err[256];
        yajl_val root = req->body ? yajl_tree_parse(req->body, err, sizeof(err)) : NULL;
        const char *kep[] = { "endpoint", NULL }, *kmode[] = { "mode", NULL },
                   *kcount[] = { "count", NULL };
        yajl_val vep = yajl_tree_get(root, kep, yajl_t_string);
        yajl_val vmode = yajl_tree_get(root, kmode, yajl_t_string);
        yajl_val vcount = yajl_tree_get(root, kcount, yajl_t_number);
        int ep = vep ? chsim_ep_lookup(YAJL_GET_STRING(vep)) : -1;
        int mode = vmode ? chsim_fault_parse(YAJL_GET_STRING(vmode)) : -1;

        if (ep < 0 || mode < 0 || (vcount && !YAJL_IS_INTEGER(vcount))) {
            chsim_resp_set(r, 400, "[\"chsim: bad fault request\"]");
        } else {
            vm->faults[ep].mode = mode;
            vm->faults[ep].count = vcount ? (int)YAJL_GET_INTEGER(vcount) : 0;
            chsim_resp_set(r, 204, NULL);
        }
        yajl_tree_free(root);
        return;
    }
    chsim_resp_set(r, 404, "[\"Not Found\"]");
}

/* ---- request parsing ---- */

static void parse_error(struct chsim_conn *c, const char *text)
{
    struct chsim_vm *vm = c->vm;
    struct chsim_req *req = xrealloc(NULL, sizeof(*req)), **pp;
    char body[2048];
    int blen;

    /* micro_http drops the requests it parsed in the same batch. */
    for (pp = &vm->qhead; *pp;) {
        struct chsim_req *r = *pp;

        if (r->conn == c) {
            *pp = r->next;
            c->npending--;
            req_free(r);
        } else {
            pp = &r->next;
        }
    }
    vm->qtail = NULL;
    for (struct chsim_req *r = vm->qhead; r; r = r->next)
        vm->qtail = r;
    req_free(c->body_req);
    c->body_req = NULL;

    memset(req, 0, sizeof(*req));
    req->conn = c;
    req->ep = -1;
    blen = snprintf(body, sizeof(body),
                    "{ \"error\": \"%s\nAll previous unanswered requests will be dropped.\" }",
                    text);
    req->canned = xrealloc(NULL, (size_t)blen + 256);
    req->canned_len = (size_t)snprintf(req->canned, (size_t)blen + 256,
                                       "HTTP/1.1 400 \r\nServer: Firecracker API\r\n"
                                       "Connection: keep-alive\r\nContent-Type: application/json\r\n"
                                       "Content-Length: %d\r\n\r\n%s", blen, body);
    vm_enqueue(vm, req);
}

static int endpoint_of(const char *method, const char *path)
{
    if (chsim_opt.firecracker) {
        char name[64];
        const char *p = path + 1;
        size_t n = strcspn(p, "/");

        if (strcmp(path, "/") == 0)
            return strcmp(method, "GET") == 0 ? chsim_ep_lookup("instance-info") : -1;
        if (chsim_ep_lookup(p) >= 0)
            return chsim_ep_lookup(p);
        if (n >= sizeof(name))
            return -1;
        memcpy(name, p, n);
        name[n] = '\0';
        return chsim_ep_lookup(name);
    }
    if (strncmp(path, "/api/v1/", 8) != 0)
        return -1;
    return chsim_ep_lookup(path + 8);
}

static void finish_request(struct chsim_conn *c, struct chsim_req *req)
{
    struct chsim_vm *vm = c->vm;

    if (req->ep >= 0)
        vm->counts[req->ep]++;
    /* Control requests on an idle connection skip the VM queue so a test
     * can read counters or arm faults while a slow request holds the VM. */
    if (strncmp(req->path, "/chsim/", 7) == 0 && c->npending == 0) {
        struct chsim_resp r = { 0 };

        serve_ctl(vm, req, &r);
        emit(c, &r, CHSIM_F_NONE);
        free(r.body);
        req_free(req);
        return;
    }
    vm_enqueue(vm, req);
}

/* Parses one header block at buf.  Returns 1 with *consumed set and
 * c->body_req filled, 0 when more bytes are needed, -1 after a parse error
 * was answered (the caller drops its buffer). */
static int parse_head(struct chsim_conn *c, const char *buf, size_t len, size_t *consumed)
{
    size_t pos = 0, line_no = 0;
    char method[16] = "", uri[LINE_MAX_LEN + 1] = "", version[16] = "";
    long long clen = -1;
    bool cl_bad = false;
    size_t limit = chsim_opt.gen == CHSIM_HEAD ? 4u * 1024 * 1024 : 51200;
    const char *err = NULL;
    char errbuf[256];

    for (;;) {
        const char *eol = memchr(buf + pos, '\n', len - pos);
        size_t ll;
        char line[LINE_MAX_LEN + 2];

        if (!eol) {
            if (len - pos > LINE_MAX_LEN + 1) {
                err = line_no == 0 ? "Invalid request." :
                      "Invalid header. Reason: Header line exceeds 1024 bytes.";
                goto fail;
            }
            return 0;
        }
        ll = (size_t)(eol - (buf + pos));
        if (ll > 0 && buf[pos + ll - 1] == '\r')
            ll--;
        if (ll > LINE_MAX_LEN) {
            err = line_no == 0 ? "Invalid request." :
                  "Invalid header. Reason: Header line exceeds 1024 bytes.";
            goto fail;
        }
        memcpy(line, buf + pos, ll);
        line[ll] = '\0';
        pos = (size_t)(eol - buf) + 1;
        if (line_no == 0) {
            char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;

            if (ll == 0) {
                /* A stray CRLF between requests is skipped. */
                *consumed = pos;
                c->body_req = NULL;
                return 2;
            }
            line_no++;
            if (!sp1 || !sp2 || strchr(sp2 + 1, ' ')) {
                err = "Invalid request.";
                goto fail;
            }
            *sp1 = *sp2 = '\0';
            snprintf(method, sizeof(method), "%.15s", line);
            snprintf(uri, sizeof(uri), "%s", sp1 + 1);
            snprintf(version, sizeof(version), "%.15s", sp2 + 1);
            if (strcmp(method, "GET") && strcmp(method, "PUT") && strcmp(method, "PATCH")) {
                err = "Invalid HTTP Method: Unsupported HTTP method.";
                goto fail;
            }
            if (strcmp(version, "HTTP/1.1") && strcmp(version, "HTTP/1.0")) {
                err = "Invalid HTTP Version: Unsupported HTTP version.";
                goto fail;
            }
            if (uri[0] != '/' && strncmp(uri, "http://", 7) != 0) {
                err = "Invalid URI.";
                goto fail;
            }
            continue;
        }
        line_no++;
        if (ll == 0)
            break;
        {
            char *colon = strchr(line, ':');
            char *val;

            if (!colon) {
                err = "Invalid header. Reason: Invalid header.";
                goto fail;
            }
            *colon = '\0';
            val = colon + 1;
            while (*val == ' ' || *val == '\t')
                val++;
            if (strcasecmp(line, "Content-Length") == 0) {
                char *end;

                errno = 0;
                clen = strtoll(val, &end, 10);
                while (*end == ' ' || *end == '\t')
                    end++;
                if (!*val || *end || errno || clen < 0 || *val == '-' || *val == '+')
                    cl_bad = true;
            }
        }
    }
    if (cl_bad) {
        err = "Invalid header. Reason: Invalid value. Key:Content-Length";
        goto fail;
    }
    if (clen > (long long)limit) {
        snprintf(errbuf, sizeof(errbuf),
                 "Request payload with size %lld is larger than the limit of %zu allowed by server.",
                 clen, limit);
        err = errbuf;
        goto fail;
    }
    {
        struct chsim_req *req = xrealloc(NULL, sizeof(*req));
        const char *path = uri;

        memset(req, 0, sizeof(*req));
        /* micro_http accepts an absolute URI and keeps only its path. */
        if (strncmp(path, "http://", 7) == 0) {
            path = strchr(path + 7, '/');
            if (!path)
                path = "/";
        }
        req->conn = c;
        snprintf(req->method, sizeof(req->method), "%.7s", method);
        req->path = strdup(path);
        if (!req->path) {
            fprintf(stderr, "chsim: out of memory\n");
            exit(1);
        }
        req->has_cl = clen >= 0;
        req->body_len = clen > 0 ? (size_t)clen : 0;
        req->ep = endpoint_of(method, req->path);
        c->body_req = req;
    }
    *consumed = pos;
    return 1;
fail:
    parse_error(c, err);
    return -1;
}

static void conn_process(struct chsim_conn *c)
{
    size_t off = 0;

    while (!c->dead) {
        size_t avail = c->in_len - off;
        size_t consumed = 0;
        int rc;

        if (c->body_req) {
            struct chsim_req *req = c->body_req;

            if (avail < req->body_len)
                break;
            if (req->body_len) {
                req->body = xrealloc(NULL, req->body_len + 1);
                memcpy(req->body, c->in + off, req->body_len);
                req->body[req->body_len] = '\0';
            }
            off += req->body_len;
            c->body_req = NULL;
            finish_request(c, req);
            continue;
        }
        if (avail == 0)
            break;
        rc = parse_head(c, c->in + off, avail, &consumed);
        if (rc == 0)
            break;
        if (rc < 0) {
            /* micro_http discards what it had buffered on this connection. */
            c->in_len = 0;
            return;
        }
        off += consumed;
    }
    if (off > 0) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct chsim_conn *c = w->data;

    (void)loop;
    (void)revents;
    for (;;) {
        ssize_t n;

        if (c->in_cap - c->in_len < 16384) {
            c->in_cap = c->in_cap ? c->in_cap * 2 : 32768;
            c->in = xrealloc(c->in, c->in_cap);
        }
        n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            conn_kill(c);
            return;
        }
        c->in_len += (size_t)n;
        conn_process(c);
        if (c->dead)
            return;
        if ((size_t)n < 16384)
            break;
    }
}

static void vm_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct chsim_vm *vm = w->data;

    (void)loop;
    (void)revents;
    for (;;) {
        int fd = accept4(vm->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct chsim_conn *c;

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return;
        }
        if (vm->nconns >= CHSIM_MAX_CONNS) {
            (void)!send(fd, too_many, sizeof(too_many) - 1, MSG_NOSIGNAL);
            close(fd);
            continue;
        }
        c = xrealloc(NULL, sizeof(*c));
        memset(c, 0, sizeof(*c));
        c->vm = vm;
        c->fd = fd;
        ev_io_init(&c->rw, conn_read_cb, fd, EV_READ);
        ev_io_init(&c->ww, conn_write_cb, fd, EV_WRITE);
        ev_timer_init(&c->drip, conn_drip_cb, DRIP_MS / 1000., DRIP_MS / 1000.);
        c->rw.data = c->ww.data = c->drip.data = c;
        ev_io_start(chsim_loop, &c->rw);
        c->next = vm->conns;
        vm->conns = c;
        vm->nconns++;
    }
}

int chsim_vm_listen(struct chsim_vm *vm)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(vm->sock) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, vm->sock);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    unlink(vm->sock);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
        int e = errno;

        close(fd);
        return -e;
    }
    vm->lfd = fd;
    ev_io_init(&vm->lw, vm_accept_cb, fd, EV_READ);
    vm->lw.data = vm;
    ev_io_start(chsim_loop, &vm->lw);
    return 0;
}

void chsim_vm_close(struct chsim_vm *vm)
{
    if (vm->lfd >= 0) {
        ev_io_stop(chsim_loop, &vm->lw);
        close(vm->lfd);
        unlink(vm->sock);
        vm->lfd = -1;
    }
    while (vm->conns)
        conn_free(vm->conns);
    while (vm->qhead) {
        struct chsim_req *r = vm->qhead;

        vm->qhead = r->next;
        req_free(r);
    }
    vm->qtail = NULL;
    req_free(vm->cur);
    vm->cur = NULL;
    free(vm->held.body);
    vm->held.body = NULL;
    vm->holding = false;
}
