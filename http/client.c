/* http/client.c: the HTTP/1.1 client connection.  A request costs one
 * send() on an open connection and one or two recv(): the request is sent
 * from httpc_conn_send itself when the connection is open (the callback
 * still runs from the loop only), the read watcher stays started while the
 * connection is open, and the write watcher is started only when a send
 * would block. */
#include "http/client.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "http/base.h"
#include "http/response.h"

#define HTTPC_DEFAULT_TIMEOUT_MS 30000u
/* A full listen backlog gives EAGAIN with no readiness event to wait for,
 * so the connect is simply tried again after this delay (seconds). */
#define HTTPC_CONNECT_RETRY 0.005
/* Reads per I/O event, so one fast peer cannot monopolize the host's loop. */
#define HTTPC_READS_PER_EVENT 64
#define HTTPC_REQ_VERSION " HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
#define HTTPC_REQ_CTYPE   "Content-Type: application/json\r\n"
#define HTTPC_REQ_CLEN    "Content-Length: "

enum conn_state { CONN_CLOSED, CONN_CONNECTING, CONN_OPEN };

struct httpc_conn {
    lp_loop *loop;
    int fd;
    enum conn_state state;
    lp_io io;
    lp_timer deadline;      /* connect to last reply byte */
    lp_timer kick;          /* starts a request from the loop; connect retry */
    httpc_resp *resp;       /* from the reply's first byte until its callback
                             * returned; NULL otherwise (conn_begin) */

    bool busy;              /* a request is in flight */
    bool started;           /* the parser has been reset for its reply */
    bool reuse_ok;          /* the connection may carry the next request */
    bool reused;            /* the request went out on an idle connection */
    int events;             /* events c->io is started with, 0: stopped */
    bool unref;             /* idle: c->io does not keep the loop alive */
    char *req;              /* the request until its last byte is sent; then
                             * NULL (req_len and req_off stay) */
    size_t req_len, req_off;
    unsigned timeout_ms;
    pid_t peer;             /* the listener every connect must reach; 0: any */
    int send_err;           /* errno of a failed send(), 0 if none */
    httpc_done_fn *cb;
    void *priv;

    int depth;              /* callbacks currently running */
    bool free_pending;
    char path[];            /* the socket's path, as given */
};

static const char *conn_strerror(int e, char *buf, size_t n)
{
    return strerror_r(e, buf, n);
}

/* An idle connection's read watcher only notices a close by the peer; it
 * must not keep the host's loop running (lp_unref, and lp_ref again
 * before the watcher is stopped or carries a request). */
static void conn_ref(httpc_conn *c)
{
    if (c->unref) {
        lp_ref(c->loop);
        c->unref = false;
    }
}

/* Touches the watcher only when the events change: every restart is an
 * epoll_ctl on the next loop iteration. */
static void conn_watch(httpc_conn *c, int events)
{
    if (c->fd < 0)
        events = 0;
    if (events == c->events)
        return;
    conn_ref(c);
    lp_io_stop(c->loop, &c->io);
    c->events = events;
    if (events) {
        lp_io_set(&c->io, c->fd, events);
        lp_io_start(c->loop, &c->io);
    }
}

static void conn_close(httpc_conn *c)
{
    conn_ref(c);
    lp_io_stop(c->loop, &c->io);
    c->events = 0;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = CONN_CLOSED;
}

/* Every byte a connection holds is held by each of a thousand at once,
 * and each fresh page costs a fault: so a connection keeps no error
 * buffer, holds its request only until it is sent, and its response
 * parser only while a reply is read.  The parser then goes back to the
 * loop's spare slot, where the next reply of any connection takes it with
 * its body buffer, if that is of common size (a vm.info body's). */
#define HTTPC_SPARE_BODY (16u * 1024u)

static void resp_release(void *r)
{
    httpc_resp_free(r);
}

static void conn_resp_release(httpc_conn *c)
{
    if (!c->resp)
        return;
    httpc_resp_trim_body(c->resp, HTTPC_SPARE_BODY);
    httpc_resp_free(lp_spare_put(c->loop, c->resp, resp_release));
    c->resp = NULL;
}

static void conn_destroy(httpc_conn *c)
{
    lp_timer_stop(c->loop, &c->deadline);
    lp_timer_stop(c->loop, &c->kick);
    conn_close(c);
    conn_resp_release(c);
    free(c->req);
    free(c);
}

/* Completes the request in flight exactly once, with err and its message
 * (borrowed for the callback).  c may be freed when this returns (a free
 * requested inside the callback), so callers return at once. */
static void conn_finish(httpc_conn *c, int err, const char *msg)
{
    if (!c->busy)
        return;
    lp_timer_stop(c->loop, &c->deadline);
    lp_timer_stop(c->loop, &c->kick);
    if (err == 0 && c->started && c->reuse_ok && c->state == CONN_OPEN &&
        httpc_resp_keep_alive(c->resp)) {
        conn_watch(c, LP_READ);     /* idle: notice a close by the peer */
        if (c->events && !c->unref) {
            lp_unref(c->loop);
            c->unref = true;
        }
    } else {
        conn_close(c);
    }

    httpc_response r = {
        .err = err,
        .errstr = err ? msg : "",
        .status = c->started ? httpc_resp_status(c->resp) : 0,
        .body = !err && c->started ? httpc_resp_body(c->resp) : "",
        .body_len = !err && c->started ? httpc_resp_body_len(c->resp) : 0,
        .written = c->req_len > 0 && c->req_off == c->req_len,
    };
    httpc_done_fn *cb = c->cb;
    void *priv = c->priv;
    c->busy = false;
    c->started = false;
    c->cb = NULL;
    c->priv = NULL;

    c->depth++;
    cb(c, &r, priv);
    c->depth--;
    if (c->depth == 0 && c->free_pending)
        conn_destroy(c);
    else if (c->depth == 0 && !c->started)
        /* The reply has been read, body and all: held until the next
         * reply, a thousand connections would hold a thousand parsers
         * and vm.info bodies (4 KiB each); released here, one of each
         * goes round. */
        conn_resp_release(c);
}

/* Completes the request in flight with an error whose message is made
 * here, on the stack: a connection keeps no error buffer, since a
 * thousand connections would each hold one for nothing.  The callback may
 * free c, whose -ECANCELED completion then formats its own. */
static void conn_fail(httpc_conn *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_fail(httpc_conn *c, int err, const char *fmt, ...)
{
    char msg[HTTPC_ERRSTR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    conn_finish(c, err, msg);
}

/* An idle connection must carry no data and no EOF; anything else (the
 * peer closed it, or sent bytes nobody asked for) makes it unusable. */
static bool conn_idle_ok(httpc_conn *c)
{
    char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

static void conn_write(httpc_conn *c);

/* The reply to the request in flight begins, at its first byte or EOF:
 * the connection takes a parser for it.  Not earlier, because
 * httpc_conn_send may run inside the previous reply's callback, which
 * still reads that reply's body.  0, or -ENOMEM with the request failed. */
static int conn_begin(httpc_conn *c)
{
    if (c->started)
        return 0;
    if (!c->resp && !(c->resp = lp_spare_take(c->loop)) && !(c->resp = httpc_resp_new())) {
        conn_close(c);
        conn_fail(c, -ENOMEM, "out of memory for the reply from %s", c->path);
        return -ENOMEM;
    }
    httpc_resp_reset(c->resp);
    c->started = true;
    return 0;
}

static void conn_kick_later(httpc_conn *c, double after)
{
    lp_timer_stop(c->loop, &c->kick);
    lp_timer_set(&c->kick, after, 0.);
    lp_timer_start(c->loop, &c->kick);
}

/* The connect completed: the peer must be the expected process before a
 * byte goes out.  The kernel keeps the listener's credentials from its
 * listen() call, so a process that bound the path after the expected one
 * died (or took the path from it) is told apart by its pid.  Called from
 * the loop only, so it may call back. */
static void conn_opened(httpc_conn *c)
{
    struct ucred cr;
    socklen_t crl = sizeof cr;
    char eb[128];

    if (c->peer > 0) {
        int e = getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) < 0 ? errno : 0;

        if (e || crl != sizeof cr || cr.pid != c->peer) {
            conn_close(c);
            if (e || crl != sizeof cr)
                conn_fail(c, e ? -e : -EPROTO, "connect(%s): SO_PEERCRED: %s", c->path,
                          e ? conn_strerror(e, eb, sizeof eb) : "short answer");
            else
                conn_fail(c, -ESRCH,
                          "connect(%s): peer is pid %ld, not the expected pid %ld",
                          c->path, (long)cr.pid, (long)c->peer);
            return;
        }
    }
    c->state = CONN_OPEN;
    c->reuse_ok = true;
    conn_write(c);
}

static void conn_connect(httpc_conn *c)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char eb[128];
    int e;

    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        e = errno;
        conn_fail(c, -e, "socket(AF_UNIX): %s", conn_strerror(e, eb, sizeof eb));
        return;
    }
    c->reused = false;
    memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
    if (connect(c->fd, (const struct sockaddr *)&sa, sizeof sa) == 0) {
        conn_opened(c);
        return;
    }
    e = errno;
    if (e == EINPROGRESS || e == EINTR) {
        c->state = CONN_CONNECTING;
        conn_watch(c, LP_WRITE);
        return;
    }
    conn_close(c);
    if (e == EAGAIN) {
        conn_kick_later(c, HTTPC_CONNECT_RETRY);
        return;
    }
    conn_fail(c, -e, "connect(%s): %s", c->path, conn_strerror(e, eb, sizeof eb));
}

/* Connects (and sends) from the loop, so that a connect failure never
 * calls back inside httpc_conn_send; also the retry after EAGAIN. */
static void conn_kick_cb(lp_loop *loop, lp_timer *w, int revents)
{
    httpc_conn *c = w->data;
    (void)loop;
    (void)revents;

    if (!c->busy)
        return;
    if (c->state == CONN_CLOSED)
        conn_connect(c);
}

static void conn_deadline_cb(lp_loop *loop, lp_timer *w, int revents)
{
    httpc_conn *c = w->data;
    const char *what;
    (void)loop;
    (void)revents;

    if (!c->busy) {
        lp_timer_stop(c->loop, &c->deadline);
        return;
    }
    if (c->state != CONN_OPEN)
        what = "connecting to";
    else if (c->req_off < c->req_len)
        what = "sending request to";
    else
        what = "waiting for reply from";
    conn_close(c);
    conn_fail(c, -ETIMEDOUT, "timeout after %u ms %s %s", c->timeout_ms, what,
              c->path);
}

/* The peer closed the stream: a close-delimited body ends here, anything
 * else is a truncated reply. */
static void conn_eof(httpc_conn *c)
{
    char eb[128];
    int rc;

    if (conn_begin(c) < 0)
        return;
    rc = httpc_resp_finish(c->resp);
    c->reuse_ok = false;
    if (rc == HTTPC_RESP_DONE) {
        conn_finish(c, 0, "");
    } else if (rc == -ECONNRESET && c->send_err) {
        conn_fail(c, -ECONNRESET,
                  "connection closed by peer before complete "
                  "reply from %s (%s; send: %s)",
                  c->path, httpc_resp_errstr(c->resp),
                  conn_strerror(c->send_err, eb, sizeof eb));
    } else if (rc == -ECONNRESET) {
        conn_fail(c, -ECONNRESET,
                  "connection closed by peer before complete "
                  "reply from %s (%s)",
                  c->path, httpc_resp_errstr(c->resp));
    } else {
        conn_fail(c, rc, "%s", httpc_resp_errstr(c->resp));
    }
}

/* Returns true when the request completed (c may be gone). */
static bool conn_read(httpc_conn *c)
{
    char buf[16384];
    char eb[128];

    for (int i = 0; i < HTTPC_READS_PER_EVENT; i++) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n > 0) {
            size_t used = 0;
            int rc;

            if (conn_begin(c) < 0)
                return true;
            rc = httpc_resp_feed(c->resp, buf, (size_t)n, &used);
            if (rc == HTTPC_RESP_MORE)
                continue;
            if (rc == HTTPC_RESP_DONE && used < (size_t)n) {
                /* Nothing was pipelined: bytes after the reply are a second
                 * answer to one request, so neither can be trusted (and the
                 * second must never answer the next request). */
                c->reuse_ok = false;
                conn_close(c);
                conn_fail(c, -EPROTO,
                          "protocol error: %zu bytes after the reply from %s "
                          "(a second response to one request)",
                          (size_t)n - used, c->path);
            } else if (rc == HTTPC_RESP_DONE) {
                conn_finish(c, 0, "");
            } else {
                conn_fail(c, rc, "%s", httpc_resp_errstr(c->resp));
            }
            return true;
        }
        if (n == 0) {
            conn_eof(c);
            return true;
        }
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == EAGAIN || e == EWOULDBLOCK)
            return false;
        if (e == ECONNRESET || e == EPIPE) {
            conn_eof(c);
            return true;
        }
        conn_fail(c, -e, "recv(%s): %s", c->path, conn_strerror(e, eb, sizeof eb));
        return true;
    }
    return false;
}

/* Sends what is left of the request; never calls back, so it is safe
 * inside httpc_conn_send. */
static void conn_write(httpc_conn *c)
{
    while (c->req_off < c->req_len) {
        ssize_t n = send(c->fd, c->req + c->req_off, c->req_len - c->req_off,
                         MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                conn_watch(c, LP_READ | LP_WRITE);
                return;
            }
            if (c->reused && c->req_off == 0) {
                /* The peer closed the idle connection before a byte of
                 * this request went out: nothing reached it, so connect
                 * again and send it there. */
                conn_close(c);
                conn_kick_later(c, 0.);
                return;
            }
            /* The peer may already have answered (CH's connection cap
             * replies 503 and closes without reading): keep reading and
             * let the reply or the EOF decide. */
            c->send_err = errno;
            c->reuse_ok = false;
            conn_watch(c, LP_READ);
            return;
        }
        c->req_off += (size_t)n;
    }
    /* Never sent again: a call that changes state is not repeated. */
    free(c->req);
    c->req = NULL;
    conn_watch(c, LP_READ);
}

static void conn_io_cb(lp_loop *loop, lp_io *w, int revents)
{
    httpc_conn *c = w->data;
    char eb[128];
    (void)loop;

    if (!c->busy) {
        if (!conn_idle_ok(c))
            conn_close(c);
        return;
    }
    if (c->state == CONN_CONNECTING) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            soerr = errno;
        if (soerr) {
            conn_close(c);
            conn_fail(c, -soerr, "connect(%s): %s", c->path,
                      conn_strerror(soerr, eb, sizeof eb));
            return;
        }
        conn_opened(c);
        return;
    }
    if ((revents & LP_READ) && conn_read(c))
        return;
    if ((revents & LP_WRITE) && c->req_off < c->req_len && !c->send_err)
        conn_write(c);
}

httpc_conn *httpc_conn_new(lp_loop *loop, const char *sock_path)
{
    if (!loop || !sock_path || !*sock_path) {
        errno = EINVAL;
        return NULL;
    }
    size_t len = strlen(sock_path);
    if (len >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    httpc_conn *c = calloc(1, sizeof *c + len + 1);
    if (!c)
        return NULL;
    memcpy(c->path, sock_path, len + 1);
    c->loop = loop;
    c->fd = -1;
    c->state = CONN_CLOSED;
    lp_io_init(&c->io, conn_io_cb, -1, 0);
    c->io.data = c;
    lp_timer_init(&c->deadline, conn_deadline_cb, 0., 0.);
    c->deadline.data = c;
    lp_timer_init(&c->kick, conn_kick_cb, 0., 0.);
    c->kick.data = c;
    return c;
}

void httpc_conn_free(httpc_conn *c)
{
    if (!c || c->free_pending)
        return;
    c->free_pending = true;
    if (c->busy) {
        conn_close(c);
        /* conn_finish destroys c once no callback is running. */
        conn_fail(c, -ECANCELED, "request to %s cancelled: connection freed",
                  c->path);
        return;
    }
    if (c->depth == 0)
        conn_destroy(c);
}

static bool token_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < 'A' || *s > 'Z')
            return false;
    return true;
}

static bool path_ok(const char *s)
{
    if (s[0] != '/')
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return false;
    return true;
}

/* Decimal digits of v at p; returns the end. */
static char *fmt_size(char *p, size_t v)
{
    char tmp[24];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

int httpc_conn_send(httpc_conn *c, const char *method, const char *path,
                    const char *body, size_t body_len, unsigned timeout_ms,
                    httpc_done_fn *cb, void *priv)
{
    if (!c || !method || !path || !cb || (!body && body_len) ||
        c->free_pending)
        return -EINVAL;
    if (c->busy)
        return -EBUSY;
    if (!token_ok(method) || !path_ok(path))
        return -EINVAL;

    /* CH frames request bodies by Content-Length only and rejects a PUT
     * without one, hence "Content-Length: 0" for body-less non-GETs. */
    size_t mlen = strlen(method), plen = strlen(path);
    bool clen = body_len > 0 || strcmp(method, "GET") != 0;
    if (body_len > (size_t)-1 / 2 || plen > (size_t)-1 / 4)
        return -EINVAL;
    size_t need = mlen + 1 + plen + sizeof HTTPC_REQ_VERSION - 1 +
                  (body_len ? sizeof HTTPC_REQ_CTYPE - 1 : 0) +
                  (clen ? sizeof HTTPC_REQ_CLEN - 1 + 20 + 2 : 0) + 2 + body_len;
    char *p = malloc(need);
    if (!p)
        return -ENOMEM;
    free(c->req);
    c->req = p;
    p = put(p, method, mlen);
    *p++ = ' ';
    p = put(p, path, plen);
    p = put(p, HTTPC_REQ_VERSION, sizeof HTTPC_REQ_VERSION - 1);
    if (body_len)
        p = put(p, HTTPC_REQ_CTYPE, sizeof HTTPC_REQ_CTYPE - 1);
    if (clen) {
        p = put(p, HTTPC_REQ_CLEN, sizeof HTTPC_REQ_CLEN - 1);
        p = fmt_size(p, body_len);
        p = put(p, "\r\n", 2);
    }
    p = put(p, "\r\n", 2);
    if (body_len)
        p = put(p, body, body_len);

    c->req_len = (size_t)(p - c->req);
    c->req_off = 0;
    c->send_err = 0;
    c->cb = cb;
    c->priv = priv;
    c->busy = true;
    c->started = false;
    c->timeout_ms = timeout_ms ? timeout_ms : HTTPC_DEFAULT_TIMEOUT_MS;

    c->deadline.repeat = c->timeout_ms / 1000.;
    lp_timer_again(c->loop, &c->deadline);
    /* An idle connection must show no EOF and no bytes nobody asked for.
     * Inside this connection's own callback the reply has just been read
     * to its end, so the check is skipped there: that is the hot path of
     * a request that follows another (vm.info, then the PUT). */
    if (c->state == CONN_OPEN && c->depth == 0 && !conn_idle_ok(c))
        conn_close(c);
    if (c->state == CONN_OPEN) {
        c->reused = true;
        conn_ref(c);
        conn_write(c);
    } else {
        conn_kick_later(c, 0.);
    }
    return 0;
}

void httpc_conn_expect_peer(httpc_conn *c, pid_t pid)
{
    if (!c || c->peer == pid)
        return;
    c->peer = pid;
    if (!c->busy && c->state != CONN_CLOSED)
        conn_close(c);
}

bool httpc_conn_busy(const httpc_conn *c)
{
    return c && c->busy;
}
