/* tests/test_http.c: the pure response parser (every fixture whole, split at
 * every point and one byte at a time) and the client connection against a
 * real AF_UNIX server driven by the same libev loop. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "http/base.h"
#include "http/client.h"
#include "http/loop.h"
#include "http/response.h"
#include "tests/support/support.h"

/* calloc wrapped (-Wl,--wrap=calloc): the next calloc_fail calls fail. */
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__real_malloc(size_t size);
void *__wrap_malloc(size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_realloc(void *p, size_t size);
static int calloc_fail;
/* Allocations of a reply body's size (requests and copies are smaller). */
static int g_big_allocs;

void *__wrap_malloc(size_t size)
{
    g_big_allocs += size >= 1024;
    return __real_malloc(size);
}

void *__wrap_realloc(void *p, size_t size)
{
    g_big_allocs += size >= 1024;
    return __real_realloc(p, size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (calloc_fail > 0) {
        calloc_fail--;
        errno = ENOMEM;
        return NULL;
    }
    return __real_calloc(n, size);
}

/* ------------------------------------------------------------------ */
/* Pure parser                                                        */

typedef struct fixture {
    const char *name;
    const char *data;
    size_t len;
    int rc;                 /* HTTPC_RESP_DONE or -errno, after finish */
    bool needs_eof;         /* completes only at finish */
    int status;
    const char *body;       /* expected body when rc is DONE */
    size_t body_len;
    bool keep_alive;
    const char *errstr;     /* exact, when rc < 0 */
} fixture;

typedef struct outcome {
    int rc;
    int status;
    char *body;
    size_t body_len;
    size_t used;
    bool keep_alive;
    char errstr[256];
} outcome;

/* Feeds data in pieces of the sizes in cuts (0-terminated, the last piece
 * repeats), then finishes when the response is still open. */
static void parse_pieces(httpc_resp *r, const char *d, size_t len,
                         const size_t *cuts, outcome *o)
{
    size_t off = 0, used = 0, ci = 0;
    int rc = HTTPC_RESP_MORE;
    bool fed_done = false;

    httpc_resp_reset(r);
    while (off < len) {
        size_t n = cuts[ci];
        if (cuts[ci + 1])
            ci++;
        if (n > len - off)
            n = len - off;
        size_t u = 0;
        rc = httpc_resp_feed(r, d + off, n, &u);
        if (rc == HTTPC_RESP_DONE) {
            used += u;
            fed_done = true;
            break;
        }
        if (rc < 0)
            break;
        assert_int_equal(u, n);
        used += n;
        off += n;
    }
    if (rc == HTTPC_RESP_MORE)
        rc = httpc_resp_finish(r);
    o->rc = rc;
    o->status = httpc_resp_status(r);
    o->body_len = httpc_resp_body_len(r);
    o->body = malloc(o->body_len + 1);
    assert_non_null(o->body);
    memcpy(o->body, httpc_resp_body(r), o->body_len + 1);
    o->used = fed_done ? used : len;
    o->keep_alive = httpc_resp_keep_alive(r);
    snprintf(o->errstr, sizeof o->errstr, "%s", httpc_resp_errstr(r));
}

static void check_outcome(const fixture *f, const outcome *o, const char *how)
{
    if (o->rc != f->rc)
        fail_msg("%s (%s): rc %d, want %d (%s)", f->name, how, o->rc, f->rc,
                 o->errstr);
    assert_int_equal(o->body[o->body_len], '\0');
    if (f->rc == HTTPC_RESP_DONE) {
        assert_int_equal(o->status, f->status);
        assert_int_equal(o->body_len, f->body_len);
        assert_memory_equal(o->body, f->body, f->body_len);
        assert_int_equal(o->body[o->body_len], '\0');
        assert_int_equal(o->keep_alive, f->keep_alive);
        assert_string_equal(o->errstr, "");
    } else if (f->errstr) {
        assert_string_equal(o->errstr, f->errstr);
    }
}

static void run_fixture(const fixture *f)
{
    httpc_resp *r = httpc_resp_new();
    outcome o, whole;
    assert_non_null(r);

    /* Whole. */
    size_t all[] = { f->len ? f->len : 1, 0 };
    parse_pieces(r, f->data, f->len, all, &whole);
    check_outcome(f, &whole, "whole");

    /* One byte at a time. */
    size_t one[] = { 1, 0 };
    parse_pieces(r, f->data, f->len, one, &o);
    check_outcome(f, &o, "bytewise");
    assert_int_equal(o.used, whole.used);
    free(o.body);

    /* Two pieces, split at every point. */
    for (size_t i = 1; i < f->len; i++) {
        size_t two[] = { i, f->len - i, 0 };
        parse_pieces(r, f->data, f->len, two, &o);
        check_outcome(f, &o, "split");
        assert_int_equal(o.used, whole.used);
        free(o.body);
    }
    free(whole.body);
    httpc_resp_free(r);
}

#define FIX(n, s) .name = n, .data = s, .len = sizeof(s) - 1
#define CAP503                                                               \
    "HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: close\r\n"       \
    "Content-Length: 40\r\n\r\n{ \"error\": \"Too many open connections\" }"
#define OK200                                                                \
    "HTTP/1.1 200 \r\nServer: Cloud Hypervisor API\r\nConnection: "          \
    "keep-alive\r\nContent-Type: application/json\r\nContent-Length: 34\r\n" \
    "\r\n{\"id\":\"_fs0\",\"bdf\":\"0000:00:05.0\"}"
#define OK200_BODY "{\"id\":\"_fs0\",\"bdf\":\"0000:00:05.0\"}"
#define NC204                                                                \
    "HTTP/1.1 204 \r\nServer: Cloud Hypervisor API\r\nConnection: "          \
    "keep-alive\r\n\r\n"

static void test_resp_200_body(void **state)
{
    (void)state;
    fixture f = { FIX("200", OK200), .rc = HTTPC_RESP_DONE, .status = 200,
                  .body = OK200_BODY, .body_len = 34, .keep_alive = true };
    run_fixture(&f);
}

static void test_resp_204(void **state)
{
    (void)state;
    fixture f = { FIX("204", NC204), .rc = HTTPC_RESP_DONE, .status = 204,
                  .body = "", .body_len = 0, .keep_alive = true };
    run_fixture(&f);
}

static void test_resp_503_cap(void **state)
{
    (void)state;
    const char *b = "{ \"error\": \"Too many open connections\" }";
    fixture f = { FIX("503", CAP503), .rc = HTTPC_RESP_DONE, .status = 503,
                  .body = b, .body_len = strlen(b), .keep_alive = false };
    run_fixture(&f);
}

static void test_resp_http10_close_delimited(void **state)
{
    (void)state;
    fixture f = { FIX("1.0", "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
                             "\r\nhello world"),
                  .rc = HTTPC_RESP_DONE, .needs_eof = true, .status = 200,
                  .body = "hello world", .body_len = 11, .keep_alive = false };
    run_fixture(&f);

    /* Nothing completes before the EOF. */
    httpc_resp *r = httpc_resp_new();
    assert_int_equal(httpc_resp_feed(r, f.data, f.len, NULL), HTTPC_RESP_MORE);
    assert_int_equal(httpc_resp_finish(r), HTTPC_RESP_DONE);
    httpc_resp_free(r);
}

static void test_resp_chunked(void **state)
{
    (void)state;
    fixture f = { FIX("chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                                 "chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n"
                                 "0\r\n\r\n"),
                  .rc = HTTPC_RESP_DONE, .status = 200, .body = "Wikipedia",
                  .body_len = 9, .keep_alive = true };
    run_fixture(&f);
}

/* A body that starts in the parser's own small buffer and outgrows it
 * (200 bytes, then 100 more) arrives whole, in any split. */
static void test_resp_chunked_grows(void **state)
{
    char data[512], body[301];
    int n;
    (void)state;

    for (int i = 0; i < 300; i++)
        body[i] = (char)('a' + i % 26);
    body[300] = '\0';
    n = snprintf(data, sizeof data,
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "c8\r\n%.200s\r\n64\r\n%s\r\n0\r\n\r\n", body, body + 200);
    assert_true(n > 0 && (size_t)n < sizeof data);
    fixture f = { .name = "chunked-grows", .data = data, .len = (size_t)n,
                  .rc = HTTPC_RESP_DONE, .status = 200, .body = body, .body_len = 300,
                  .keep_alive = true };
    run_fixture(&f);
}

static void test_resp_content_length_zero(void **state)
{
    (void)state;
    fixture f = { FIX("cl0", "HTTP/1.1 200 \r\nServer: Cloud Hypervisor API\r\n"
                             "Connection: keep-alive\r\nContent-Type: "
                             "application/json\r\nContent-Length: 0\r\n\r\n"),
                  .rc = HTTPC_RESP_DONE, .status = 200, .body = "",
                  .body_len = 0, .keep_alive = true };
    run_fixture(&f);
}

static void test_resp_garbage_status(void **state)
{
    (void)state;
    fixture f = { FIX("garbage", "HTPT/1.1 200 OK\r\n\r\n"), .rc = -EPROTO,
                  .errstr = "malformed HTTP response: Expected HTTP/" };
    run_fixture(&f);
    fixture g = { FIX("badcode", "HTTP/1.1 2x0 OK\r\n\r\n"), .rc = -EPROTO };
    run_fixture(&g);
}

static void test_resp_truncated(void **state)
{
    (void)state;
    fixture f = { FIX("midbody", "HTTP/1.1 200 \r\nContent-Length: 5\r\n\r\nab"),
                  .rc = -ECONNRESET, .errstr = "in body after 2 of 5 bytes" };
    run_fixture(&f);
    fixture g = { FIX("midhdr", "HTTP/1.1 200 \r\nContent-Le"),
                  .rc = -ECONNRESET, .errstr = "in headers after 25 bytes" };
    run_fixture(&g);
    fixture nob = { FIX("nobody", "HTTP/1.1 200 \r\nContent-Length: 5\r\n\r\n"),
                    .rc = -ECONNRESET, .errstr = "in body after 0 of 5 bytes" };
    run_fixture(&nob);
    fixture low = { FIX("status099", "HTTP/1.1 099 \r\n\r\n"), .rc = -EPROTO,
                    .errstr = "malformed HTTP response: invalid status code 99" };
    run_fixture(&low);
    fixture h = { .name = "empty", .data = "", .len = 0, .rc = -ECONNRESET,
                  .errstr = "no bytes received" };
    run_fixture(&h);
}

/* Builds "HTTP/1.1 200 \r\nX-Pad: aaa...\r\nContent-Length: 2\r\n\r\nok" with
 * a header block of exactly hdr_bytes bytes.  Owned. */
static char *make_padded(size_t hdr_bytes, size_t *len)
{
    const char *pre = "HTTP/1.1 200 \r\nX-Pad: ";
    const char *post = "\r\nContent-Length: 2\r\n\r\n";
    size_t fixed = strlen(pre) + strlen(post);
    assert_true(hdr_bytes > fixed);
    char *s = malloc(hdr_bytes + 3);
    assert_non_null(s);
    memcpy(s, pre, strlen(pre));
    memset(s + strlen(pre), 'a', hdr_bytes - fixed);
    memcpy(s + hdr_bytes - strlen(post), post, strlen(post));
    memcpy(s + hdr_bytes, "ok", 3);
    *len = hdr_bytes + 2;
    return s;
}

static void test_resp_header_limit(void **state)
{
    (void)state;
    size_t len;
    char *s = make_padded(HTTPC_MAX_HEADER_BYTES, &len);
    fixture ok = { .name = "hdr-at-limit", .data = s, .len = len,
                   .rc = HTTPC_RESP_DONE, .status = 200, .body = "ok",
                   .body_len = 2, .keep_alive = true };
    run_fixture(&ok);
    free(s);

    s = make_padded(HTTPC_MAX_HEADER_BYTES + 1, &len);
    fixture over = { .name = "hdr-over", .data = s, .len = len,
                     .rc = -EMSGSIZE,
                     .errstr = "response header block exceeds 16384 bytes" };
    run_fixture(&over);
    free(s);

    /* An endless header is refused without waiting for its end. */
    size_t big = 100000;
    s = malloc(big);
    assert_non_null(s);
    memcpy(s, "HTTP/1.1 200 \r\nX: ", 18);
    memset(s + 18, 'b', big - 18);
    httpc_resp *r = httpc_resp_new();
    assert_int_equal(httpc_resp_feed(r, s, big, NULL), -EMSGSIZE);
    httpc_resp_free(r);
    free(s);
}

static void test_resp_body_limit_content_length(void **state)
{
    (void)state;
    fixture f = { FIX("cl-over", "HTTP/1.1 200 \r\nContent-Length: 8388609\r\n"
                                 "\r\n{}"),
                  .rc = -EMSGSIZE,
                  .errstr = "response body exceeds 8388608 bytes "
                            "(Content-Length: 8388609)" };
    run_fixture(&f);
}

/* Bodies around 8 MiB cannot be split at all 8 million points: the header
 * and the bytes around the limit go one at a time, the middle in blocks. */
static void body_limit_case(size_t body_len, int want)
{
    const char *hdr = "HTTP/1.0 200 OK\r\n\r\n";
    size_t hl = strlen(hdr), len = hl + body_len;
    char *s = malloc(len);
    assert_non_null(s);
    memcpy(s, hdr, hl);
    memset(s + hl, 'x', body_len);

    httpc_resp *r = httpc_resp_new();
    assert_non_null(r);
    int rc = httpc_resp_feed(r, s, len, NULL);
    if (rc == HTTPC_RESP_MORE)
        rc = httpc_resp_finish(r);
    assert_int_equal(rc, want);
    if (want == HTTPC_RESP_DONE)
        assert_int_equal(httpc_resp_body_len(r), body_len);
    else
        assert_string_equal(httpc_resp_errstr(r),
                            "response body exceeds 8388608 bytes");

    httpc_resp_reset(r);
    size_t off = 0;
    rc = HTTPC_RESP_MORE;
    while (off < len && rc == HTTPC_RESP_MORE) {
        size_t n = 1;
        if (off >= hl + 64 && off + 64 < len)
            n = len - 64 - off < 65536 ? len - 64 - off : 65536;
        rc = httpc_resp_feed(r, s + off, n, NULL);
        off += n;
    }
    if (rc == HTTPC_RESP_MORE)
        rc = httpc_resp_finish(r);
    assert_int_equal(rc, want);
    httpc_resp_free(r);
    free(s);
}

static void test_resp_body_limit_streamed(void **state)
{
    (void)state;
    body_limit_case(HTTPC_MAX_BODY_BYTES, HTTPC_RESP_DONE);
    body_limit_case(HTTPC_MAX_BODY_BYTES + 1, -EMSGSIZE);
}

static void test_resp_trailing_bytes_and_sticky(void **state)
{
    (void)state;
    httpc_resp *r = httpc_resp_new();
    const char *two = NC204 "HTTP/1.1 200 \r\n";
    size_t used = 99;
    assert_int_equal(httpc_resp_feed(r, two, strlen(two), &used),
                     HTTPC_RESP_DONE);
    assert_int_equal(used, strlen(NC204));
    assert_int_equal(httpc_resp_feed(r, "x", 1, &used), HTTPC_RESP_DONE);
    assert_int_equal(used, 0);
    assert_int_equal(httpc_resp_finish(r), HTTPC_RESP_DONE);

    httpc_resp_reset(r);
    assert_int_equal(httpc_resp_status(r), 0);
    assert_string_equal(httpc_resp_body(r), "");
    assert_int_equal(httpc_resp_feed(r, "nope\r\n", 6, NULL), -EPROTO);
    assert_int_equal(httpc_resp_feed(r, NC204, strlen(NC204), NULL), -EPROTO);
    assert_int_equal(httpc_resp_finish(r), -EPROTO);
    httpc_resp_free(r);
    httpc_resp_free(NULL);
}

static void test_resp_interim_100(void **state)
{
    (void)state;
    fixture f = { FIX("100", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 \r\n"
                             "Content-Length: 2\r\n\r\nok"),
                  .rc = HTTPC_RESP_DONE, .status = 200, .body = "ok",
                  .body_len = 2, .keep_alive = true };
    run_fixture(&f);
}

/* ------------------------------------------------------------------ */
/* In-test AF_UNIX server on the test's loop                          */

#define SRV_PEERS 16
#define SRV_KEEP 4

typedef struct srv srv;

typedef struct speer {
    srv *s;
    int fd;
    ev_io rio, wio;
    ev_timer drip;
    char in[8192];
    size_t in_len;
    size_t out_off;
} speer;

struct srv {
    struct ev_loop *loop;
    char *dir;
    char path[108];
    int lfd;
    ev_io lio;
    int accepts, requests, closes_seen;
    char got[SRV_KEEP][4096];
    size_t got_len[SRV_KEEP];
    /* behaviour */
    const char *reply;      /* NULL: never answer */
    size_t reply_len;
    bool close_after;       /* close once the reply (maybe empty) is out */
    bool reply_on_accept;   /* answer without reading (CH's connection cap) */
    double drip;            /* seconds per byte, 0: all at once */
    speer peers[SRV_PEERS];
};

static void speer_close(speer *p)
{
    if (p->fd < 0)
        return;
    ev_io_stop(p->s->loop, &p->rio);
    ev_io_stop(p->s->loop, &p->wio);
    ev_timer_stop(p->s->loop, &p->drip);
    close(p->fd);
    p->fd = -1;
}

static void speer_sent_all(speer *p)
{
    ev_io_stop(p->s->loop, &p->wio);
    ev_timer_stop(p->s->loop, &p->drip);
    if (p->s->close_after)
        speer_close(p);
}

static void speer_wio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    speer *p = w->data;
    srv *s = p->s;
    (void)loop;
    (void)revents;
    while (p->out_off < s->reply_len) {
        ssize_t n = send(p->fd, s->reply + p->out_off,
                         s->reply_len - p->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN)
                return;
            speer_close(p);
            return;
        }
        p->out_off += (size_t)n;
    }
    speer_sent_all(p);
}

static void speer_drip_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    speer *p = w->data;
    (void)loop;
    (void)revents;
    if (p->out_off < p->s->reply_len &&
        send(p->fd, p->s->reply + p->out_off, 1, MSG_NOSIGNAL) == 1)
        p->out_off++;
    if (p->out_off >= p->s->reply_len)
        speer_sent_all(p);
}

static void speer_answer(speer *p)
{
    srv *s = p->s;
    p->out_off = 0;
    if (!s->reply) {
        if (s->close_after)
            speer_close(p);
        return;
    }
    if (s->drip > 0) {
        ev_timer_set(&p->drip, s->drip, s->drip);
        ev_timer_start(s->loop, &p->drip);
    } else {
        ev_io_start(s->loop, &p->wio);
    }
}

/* Length of the first complete request in in[], or 0. */
static size_t speer_request_len(const speer *p)
{
    const char *end = memmem(p->in, p->in_len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t hl = (size_t)(end - p->in) + 4;
    size_t cl = 0;
    char hdr[4096];
    snprintf(hdr, sizeof hdr, "%.*s", (int)hl, p->in);
    const char *v = strstr(hdr, "Content-Length: ");
    if (v)
        cl = strtoul(v + 16, NULL, 10);
    return p->in_len >= hl + cl ? hl + cl : 0;
}

static void speer_rio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    speer *p = w->data;
    srv *s = p->s;
    (void)loop;
    (void)revents;
    ssize_t n = recv(p->fd, p->in + p->in_len, sizeof p->in - p->in_len, 0);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        s->closes_seen++;
        speer_close(p);
        return;
    }
    p->in_len += (size_t)n;
    size_t rl;
    while ((rl = speer_request_len(p)) > 0) {
        if (s->requests < SRV_KEEP) {
            memcpy(s->got[s->requests], p->in, rl < 4096 ? rl : 4096);
            s->got_len[s->requests] = rl;
        }
        s->requests++;
        memmove(p->in, p->in + rl, p->in_len - rl);
        p->in_len -= rl;
        if (!s->reply_on_accept)
            speer_answer(p);
        if (p->fd < 0)
            return;
    }
}

static void srv_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    srv *s = w->data;
    (void)revents;
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        s->accepts++;
        speer *p = NULL;
        for (int i = 0; i < SRV_PEERS && !p; i++)
            if (s->peers[i].fd < 0)
                p = &s->peers[i];
        if (!p) {
            close(fd);
            continue;
        }
        p->fd = fd;
        p->in_len = 0;
        ev_io_init(&p->rio, speer_rio_cb, fd, EV_READ);
        p->rio.data = p;
        ev_io_init(&p->wio, speer_wio_cb, fd, EV_WRITE);
        p->wio.data = p;
        ev_timer_init(&p->drip, speer_drip_cb, 0., 0.);
        p->drip.data = p;
        ev_io_start(loop, &p->rio);
        if (s->reply_on_accept)
            speer_answer(p);
    }
}

static void srv_init(srv *s, struct ev_loop *loop)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->dir = sup_tmpdir();
    assert_non_null(s->dir);
    snprintf(s->path, sizeof s->path, "%s/api.sock", s->dir);
    for (int i = 0; i < SRV_PEERS; i++) {
        s->peers[i].fd = -1;
        s->peers[i].s = s;
    }
    s->lfd = -1;
}

static void srv_listen(srv *s, int backlog, bool accepting)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", s->path);
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, backlog), 0);
    ev_io_init(&s->lio, srv_accept_cb, s->lfd, EV_READ);
    s->lio.data = s;
    if (accepting)
        ev_io_start(s->loop, &s->lio);
}

static void srv_fini(srv *s)
{
    for (int i = 0; i < SRV_PEERS; i++)
        speer_close(&s->peers[i]);
    if (s->lfd >= 0) {
        ev_io_stop(s->loop, &s->lio);
        close(s->lfd);
    }
    sup_rmrf(s->dir);
    free(s->dir);
}

static void srv_set_reply(srv *s, const char *reply, bool close_after)
{
    s->reply = reply;
    s->reply_len = reply ? strlen(reply) : 0;
    s->close_after = close_after;
}

/* ------------------------------------------------------------------ */
/* Client test harness                                                */

typedef struct tctx tctx;
typedef void tctx_hook(tctx *t, httpc_conn *c, const httpc_response *r);

struct tctx {
    struct ev_loop *loop;
    lp_loop *lp;            /* the client's loop, driven from loop */
    sup_lpev *lpev;
    ev_timer watchdog;
    bool watchdog_fired;
    srv s;
    httpc_conn *c;
    int calls;
    bool in_send, in_free;
    bool cb_in_send, cb_in_free;
    int err, status;
    bool written;
    char body[256];
    size_t body_len;
    char errstr[BASE_ERRSTR_MAX];
    tctx_hook *hook;
    int hook_rc;
};

static void watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    tctx *t = w->data;
    (void)revents;
    t->watchdog_fired = true;
    ev_break(loop, EVBREAK_ALL);
}

static void tctx_init(tctx *t)
{
    memset(t, 0, sizeof *t);
    t->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(t->loop);
    ev_timer_init(&t->watchdog, watchdog_cb, 10., 0.);
    t->watchdog.data = t;
    ev_timer_start(t->loop, &t->watchdog);
    srv_init(&t->s, t->loop);
    t->lp = lp_new();
    assert_non_null(t->lp);
    t->lpev = sup_lpev_new(t->loop, t->lp);
}

static void tctx_fini(tctx *t)
{
    httpc_conn_free(t->c);
    sup_lpev_free(t->lpev);
    lp_free(t->lp);
    srv_fini(&t->s);
    ev_timer_stop(t->loop, &t->watchdog);
    ev_loop_destroy(t->loop);
    assert_false(t->watchdog_fired);
}

static void done_cb(httpc_conn *c, const httpc_response *r, void *priv)
{
    tctx *t = priv;
    t->calls++;
    t->cb_in_send |= t->in_send;
    t->cb_in_free |= t->in_free;
    t->err = r->err;
    t->status = r->status;
    t->written = r->written;
    assert_non_null(r->body);
    assert_int_equal(r->body[r->body_len], '\0');
    t->body_len = r->body_len;
    snprintf(t->body, sizeof t->body, "%s", r->body);
    assert_non_null(r->errstr);
    snprintf(t->errstr, sizeof t->errstr, "%s", r->errstr);
    if (r->err == 0)
        assert_string_equal(r->errstr, "");
    else
        assert_string_not_equal(r->errstr, "");
    if (t->hook)
        t->hook(t, c, r);
}

static int tsend(tctx *t, const char *method, const char *path,
                 const char *body, unsigned timeout_ms)
{
    t->in_send = true;
    int rc = httpc_conn_send(t->c, method, path, body, body ? strlen(body) : 0,
                             timeout_ms, done_cb, t);
    t->in_send = false;
    return rc;
}

static void run_until_calls(tctx *t, int n)
{
    while (t->calls < n && !t->watchdog_fired)
        ev_run(t->loop, EVRUN_ONCE);
    assert_false(t->watchdog_fired);
}

static void wake_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bool *flag = w->data;
    (void)loop;
    (void)revents;
    *flag = true;
}

static void run_for(tctx *t, double seconds)
{
    bool done = false;
    ev_timer tm;
    ev_timer_init(&tm, wake_cb, seconds, 0.);
    tm.data = &done;
    ev_timer_start(t->loop, &tm);
    while (!done && !t->watchdog_fired)
        ev_run(t->loop, EVRUN_ONCE);
    ev_timer_stop(t->loop, &tm);
}

static void tctx_start(tctx *t, const char *reply, bool close_after)
{
    tctx_init(t);
    srv_set_reply(&t->s, reply, close_after);
    srv_listen(&t->s, 16, true);
    t->c = httpc_conn_new(t->lp, t->s.path);
    assert_non_null(t->c);
}

/* GET vm.info, accepted, then the loop until callback n has come. */
static void get_info(tctx *t, int n)
{
    assert_int_equal(tsend(t, "GET", "/api/v1/vm.info", NULL, 2000), 0);
    run_until_calls(t, n);
}

/* get_info, and callback n reports success. */
static void get_info_ok(tctx *t, int n)
{
    get_info(t, n);
    assert_int_equal(t->err, 0);
}

#define GET_INFO                                                             \
    "GET /api/v1/vm.info HTTP/1.1\r\nHost: localhost\r\n"                    \
    "Accept: application/json\r\n\r\n"

static void test_client_get_ok(void **state)
{
    (void)state;
    tctx t;
    tctx_start(&t, OK200, false);
    assert_false(httpc_conn_busy(t.c));
    assert_int_equal(tsend(&t, "GET", "/api/v1/vm.info", NULL, 2000), 0);
    assert_true(httpc_conn_busy(t.c));
    assert_int_equal(t.calls, 0);
    run_until_calls(&t, 1);
    assert_int_equal(t.calls, 1);
    assert_false(t.cb_in_send);
    assert_int_equal(t.err, 0);
    assert_int_equal(t.status, 200);
    assert_string_equal(t.body, OK200_BODY);
    assert_int_equal(t.body_len, strlen(OK200_BODY));
    assert_true(t.written);
    assert_false(httpc_conn_busy(t.c));
    assert_int_equal(t.s.requests, 1);
    assert_int_equal(t.s.got_len[0], strlen(GET_INFO));
    assert_memory_equal(t.s.got[0], GET_INFO, strlen(GET_INFO));
    run_for(&t, 0.05);
    assert_int_equal(t.calls, 1);
    tctx_fini(&t);
}

/* A connection takes a response parser when its reply begins and gives
 * it back to the loop after the callback: without memory for one, the
 * request fails and the connection carries the next; a parser given back
 * serves the next reply with no allocation. */
static void test_client_reply_parser(void **state)
{
    (void)state;
    tctx t;
    char want[256];

    tctx_start(&t, OK200, false);
    assert_int_equal(tsend(&t, "GET", "/api/v1/vm.info", NULL, 2000), 0);
    calloc_fail = 1;
    run_until_calls(&t, 1);
    assert_int_equal(calloc_fail, 0);
    assert_int_equal(t.err, -ENOMEM);
    snprintf(want, sizeof want, "out of memory for the reply from %s", t.s.path);
    assert_string_equal(t.errstr, want);
    assert_true(t.written);

    get_info_ok(&t, 2);
    assert_string_equal(t.body, OK200_BODY);
    calloc_fail = 1;
    get_info_ok(&t, 3);
    assert_int_equal(calloc_fail, 1);   /* the parser given back */
    calloc_fail = 0;
    assert_string_equal(t.body, OK200_BODY);
    tctx_fini(&t);
}

/* A parser given back keeps its body buffer when that is of common size
 * (a vm.info body's): the next reply of that size, on any connection of
 * the loop, is read into it with no allocation. */
static void test_client_spare_keeps_body(void **state)
{
    (void)state;
    char body[2049], reply[2300];
    tctx t;

    memset(body, 'x', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    snprintf(reply, sizeof reply,
             "HTTP/1.1 200 \r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    tctx_start(&t, reply, false);
    g_big_allocs = 0;
    get_info_ok(&t, 1);
    assert_int_equal(g_big_allocs, 1);
    get_info_ok(&t, 2);
    get_info_ok(&t, 3);
    assert_int_equal(g_big_allocs, 1);
    assert_int_equal(t.body_len, strlen(body));
    tctx_fini(&t);
}

static void test_client_request_bytes_put(void **state)
{
    (void)state;
    tctx t;
    tctx_start(&t, NC204, false);
    const char *body = "{\"id\":\"_fs0\"}";
    assert_int_equal(tsend(&t, "PUT", "/api/v1/vm.remove-device", body, 2000), 0);
    run_until_calls(&t, 1);
    assert_int_equal(t.err, 0);
    assert_int_equal(t.status, 204);
    assert_int_equal(t.body_len, 0);
    const char *want1 = "PUT /api/v1/vm.remove-device HTTP/1.1\r\n"
                        "Host: localhost\r\nAccept: application/json\r\n"
                        "Content-Type: application/json\r\n"
                        "Content-Length: 13\r\n\r\n{\"id\":\"_fs0\"}";
    assert_int_equal(t.s.got_len[0], strlen(want1));
    assert_memory_equal(t.s.got[0], want1, strlen(want1));

    assert_int_equal(tsend(&t, "PUT", "/api/v1/vm.pause", NULL, 2000), 0);
    run_until_calls(&t, 2);
    assert_int_equal(t.err, 0);
    const char *want2 = "PUT /api/v1/vm.pause HTTP/1.1\r\n"
                        "Host: localhost\r\nAccept: application/json\r\n"
                        "Content-Length: 0\r\n\r\n";
    assert_int_equal(t.s.got_len[1], strlen(want2));
    assert_memory_equal(t.s.got[1], want2, strlen(want2));

    assert_int_equal(tsend(&t, "PATCH", "/vm", NULL, 2000), 0);
    run_until_calls(&t, 3);
    const char *want3 = "PATCH /vm HTTP/1.1\r\nHost: localhost\r\n"
                        "Accept: application/json\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(t.s.got_len[2], strlen(want3));
    assert_memory_equal(t.s.got[2], want3, strlen(want3));
    assert_int_equal(t.s.accepts, 1);
    tctx_fini(&t);
}

static void send_second_hook(tctx *t, httpc_conn *c, const httpc_response *r)
{
    const char *body = r->body;
    size_t len = r->body_len;
    t->hook = NULL;
    t->hook_rc = httpc_conn_send(c, "GET", "/api/v1/vmm.ping", NULL, 0, 2000,
                                 done_cb, t);
    /* Sending from the callback must not disturb the response being read. */
    assert_int_equal(len, strlen(OK200_BODY));
    assert_memory_equal(body, OK200_BODY, len);
    assert_string_equal(r->errstr, "");
}

static void test_client_keepalive_reuse(void **state)
{
    (void)state;
    tctx t;
    tctx_start(&t, OK200, false);
    t.hook = send_second_hook;
    get_info(&t, 2);
    assert_int_equal(t.hook_rc, 0);
    assert_int_equal(t.err, 0);
    assert_int_equal(t.status, 200);
    assert_int_equal(t.s.requests, 2);
    assert_int_equal(t.s.accepts, 1);
    run_for(&t, 0.05);
    assert_int_equal(t.calls, 2);
    tctx_fini(&t);
}

static void test_client_reconnect_after_idle_close(void **state)
{
    (void)state;
    tctx t;
    /* Keep-alive headers, but the server closes after each reply. */
    tctx_start(&t, OK200, true);
    get_info_ok(&t, 1);
    run_for(&t, 0.05);
    assert_int_equal(t.calls, 1);
    get_info_ok(&t, 2);
    assert_int_equal(t.status, 200);
    assert_int_equal(t.s.accepts, 2);
    assert_int_equal(t.s.requests, 2);

    /* A close not yet seen by the loop is caught before the next write. */
    t.hook = send_second_hook;
    get_info_ok(&t, 4);
    assert_int_equal(t.s.requests, 4);
    tctx_fini(&t);
}

/* The peer check: a connection reaches only the expected listener (this
 * process serves the socket), a wrong one gets no byte and fails with
 * -ESRCH unwritten, and changing the expected pid drops an idle
 * connection checked for another. */
static void test_client_expect_peer(void **state)
{
    (void)state;
    tctx t;
    char want[BASE_ERRSTR_MAX];
    pid_t other = getppid();

    tctx_start(&t, OK200, false);
    httpc_conn_expect_peer(t.c, getpid());
    get_info_ok(&t, 1);
    httpc_conn_expect_peer(t.c, getpid());
    get_info_ok(&t, 2);
    assert_int_equal(t.s.accepts, 1);
    assert_int_equal(t.s.requests, 2);

    httpc_conn_expect_peer(t.c, other);
    get_info(&t, 3);
    snprintf(want, sizeof want, "connect(%s): peer is pid %ld, not the expected pid %ld",
             t.s.path, (long)getpid(), (long)other);
    assert_int_equal(t.err, -ESRCH);
    assert_string_equal(t.errstr, want);
    assert_false(t.written);
    assert_int_equal(t.status, 0);
    /* A new connection was made (the idle one was dropped) and carried
     * nothing: the server sees both end with no request. */
    while (t.s.closes_seen < 2 && !t.watchdog_fired)
        ev_run(t.loop, EVRUN_ONCE);
    assert_false(t.watchdog_fired);
    assert_int_equal(t.s.accepts, 2);
    assert_int_equal(t.s.requests, 2);

    httpc_conn_expect_peer(t.c, 0);
    get_info_ok(&t, 4);
    assert_int_equal(t.s.accepts, 3);
    assert_int_equal(t.s.requests, 3);
    tctx_fini(&t);
}

/* The server side of the (single) accepted connection. */
static int srv_peer_fd(const srv *s)
{
    for (int i = 0; i < SRV_PEERS; i++)
        if (s->peers[i].fd >= 0)
            return s->peers[i].fd;
    return -1;
}

/* On an open connection the request is on the wire when the send returns;
 * the callback still comes from the loop. */
static void test_client_send_direct_on_open(void **state)
{
    (void)state;
    tctx t;
    char buf[512];
    tctx_start(&t, OK200, false);
    get_info_ok(&t, 1);
    int pfd = srv_peer_fd(&t.s);
    assert_true(pfd >= 0);
    assert_int_equal(tsend(&t, "GET", "/api/v1/vm.info", NULL, 2000), 0);
    assert_int_equal(t.calls, 1);
    assert_int_equal(recv(pfd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT),
                     (ssize_t)strlen(GET_INFO));
    run_until_calls(&t, 2);
    assert_false(t.cb_in_send);
    assert_int_equal(t.err, 0);
    assert_int_equal(t.status, 200);
    assert_int_equal(t.s.accepts, 1);
    assert_int_equal(t.s.requests, 2);
    tctx_fini(&t);
}

/* Bytes nobody asked for on an idle connection, not yet seen by the loop:
 * the next request goes out on a new connection and is not answered by
 * them. */
static void test_client_stray_bytes_while_idle(void **state)
{
    (void)state;
    tctx t;
    tctx_start(&t, OK200, false);
    get_info_ok(&t, 1);
    int pfd = srv_peer_fd(&t.s);
    assert_true(pfd >= 0);
    assert_int_equal(send(pfd, "HTTP/1.1 500 X\r\n\r\n", 19, MSG_NOSIGNAL), 19);
    get_info_ok(&t, 2);
    assert_int_equal(t.status, 200);
    assert_int_equal(t.s.accepts, 2);
    tctx_fini(&t);
}

/* The expected errstr is pre, then (when post is not NULL) the socket path
 * and post. */
static void client_error_case(const char *reply, bool close_after, int want,
                              const char *pre, const char *post, bool written)
{
    tctx t;
    char want_errstr[512];
    tctx_start(&t, reply, close_after);
    get_info(&t, 1);
    assert_int_equal(t.err, want);
    assert_int_equal(t.written, written);
    assert_int_equal(t.body_len, 0);
    snprintf(want_errstr, sizeof want_errstr, "%s%s%s", pre,
             post ? t.s.path : "", post ? post : "");
    assert_string_equal(t.errstr, want_errstr);
    run_for(&t, 0.05);
    assert_int_equal(t.calls, 1);
    assert_false(httpc_conn_busy(t.c));

    /* After an error the connection is closed; the next send reconnects. */
    srv_set_reply(&t.s, OK200, false);
    get_info_ok(&t, 2);
    assert_int_equal(t.s.accepts, 2);
    tctx_fini(&t);
}

static void test_client_close_before_reply(void **state)
{
    (void)state;
    client_error_case(NULL, true, -ECONNRESET,
                      "connection closed by peer before complete reply from ",
                      " (no bytes received)", true);
}

static void test_client_close_mid_headers(void **state)
{
    (void)state;
    client_error_case("HTTP/1.1 200 \r\nContent-Le", true, -ECONNRESET,
                      "connection closed by peer before complete reply from ",
                      " (in headers after 25 bytes)", true);
}

static void test_client_close_mid_body(void **state)
{
    (void)state;
    client_error_case("HTTP/1.1 200 \r\nContent-Length: 10\r\n\r\nabc", true,
                      -ECONNRESET,
                      "connection closed by peer before complete reply from ",
                      " (in body after 3 of 10 bytes)", true);
}

static void test_client_garbage(void **state)
{
    (void)state;
    client_error_case("SSH-2.0-OpenSSH_9.2\r\n\r\n", false, -EPROTO,
                      "malformed HTTP response: Expected HTTP/", NULL, true);
}

static void test_client_oversized_headers(void **state)
{
    (void)state;
    size_t len;
    char *s = make_padded(HTTPC_MAX_HEADER_BYTES + 100, &len);
    client_error_case(s, false, -EMSGSIZE,
                      "response header block exceeds 16384 bytes", NULL, true);
    free(s);
}

static void test_client_oversized_body(void **state)
{
    (void)state;
    client_error_case("HTTP/1.1 200 \r\nContent-Length: 9000000\r\n\r\n{}",
                      false, -EMSGSIZE,
                      "response body exceeds 8388608 bytes "
                      "(Content-Length: 9000000)", NULL, true);

    /* A close-delimited body streamed past the limit. */
    size_t n = HTTPC_MAX_BODY_BYTES + 4096;
    const char *hdr = "HTTP/1.0 200 OK\r\n\r\n";
    char *big = malloc(strlen(hdr) + n + 1);
    assert_non_null(big);
    strcpy(big, hdr);
    memset(big + strlen(hdr), 'x', n);
    big[strlen(hdr) + n] = '\0';
    client_error_case(big, true, -EMSGSIZE,
                      "response body exceeds 8388608 bytes", NULL, true);
    free(big);
}

static void test_client_http10_close(void **state)
{
    (void)state;
    tctx t;
    tctx_start(&t, "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"
                   "{\"a\":1}", true);
    get_info_ok(&t, 1);
    assert_int_equal(t.status, 200);
    assert_string_equal(t.body, "{\"a\":1}");
    /* The connection ended with the reply: the next request reconnects. */
    get_info_ok(&t, 2);
    assert_int_equal(t.s.accepts, 2);
    tctx_fini(&t);
}

static void test_client_chunked(void **state)
{
    (void)state;
    tctx t;
    tctx_start(&t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n", false);
    get_info_ok(&t, 1);
    assert_string_equal(t.body, "Wikipedia");
    get_info(&t, 2);
    assert_int_equal(t.s.accepts, 1);
    tctx_fini(&t);
}

static void test_client_503_cap_on_accept(void **state)
{
    (void)state;
    tctx t;
    tctx_init(&t);
    srv_set_reply(&t.s, CAP503, true);
    t.s.reply_on_accept = true;
    srv_listen(&t.s, 16, true);
    t.c = httpc_conn_new(t.lp, t.s.path);
    assert_non_null(t.c);
    get_info_ok(&t, 1);
    assert_int_equal(t.status, 503);
    assert_string_equal(t.body, "{ \"error\": \"Too many open connections\" }");
    tctx_fini(&t);
}

static void timeout_case(double drip)
{
    tctx t;
    char want[512];
    tctx_start(&t, drip > 0 ? OK200 : NULL, false);
    t.s.drip = drip;
    ev_tstamp t0 = ev_time();
    assert_int_equal(tsend(&t, "GET", "/api/v1/vm.info", NULL, 200), 0);
    run_until_calls(&t, 1);
    double took = ev_time() - t0;
    assert_int_equal(t.err, -ETIMEDOUT);
    assert_true(t.written);
    assert_true(took >= 0.19);   /* never early; how late depends on the load */
    snprintf(want, sizeof want,
             "timeout after 200 ms waiting for reply from %s", t.s.path);
    assert_string_equal(t.errstr, want);
    run_for(&t, 0.1);
    assert_int_equal(t.calls, 1);
    tctx_fini(&t);
}

static void test_client_timeout_never_replies(void **state)
{
    (void)state;
    timeout_case(0);
}

static void test_client_timeout_slow_drip(void **state)
{
    (void)state;
    timeout_case(0.02);
}

static void test_client_missing_socket(void **state)
{
    (void)state;
    tctx t;
    char want[512];
    tctx_init(&t);
    t.c = httpc_conn_new(t.lp, t.s.path);
    assert_non_null(t.c);
    assert_int_equal(tsend(&t, "GET", "/api/v1/vm.info", NULL, 2000), 0);
    assert_int_equal(t.calls, 0);
    run_until_calls(&t, 1);
    assert_false(t.cb_in_send);
    assert_int_equal(t.err, -ENOENT);
    assert_false(t.written);
    assert_int_equal(t.status, 0);
    snprintf(want, sizeof want, "connect(%s): No such file or directory",
             t.s.path);
    assert_string_equal(t.errstr, want);
    run_for(&t, 0.05);
    assert_int_equal(t.calls, 1);
    tctx_fini(&t);
}

static void test_client_stale_socket(void **state)
{
    (void)state;
    tctx t;
    char want[512];
    tctx_init(&t);
    /* Bound, never listening: what a dead server leaves behind. */
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", t.s.path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    close(fd);
    t.c = httpc_conn_new(t.lp, t.s.path);
    assert_int_equal(tsend(&t, "PUT", "/api/v1/vm.add-fs", "{}", 2000), 0);
    run_until_calls(&t, 1);
    assert_int_equal(t.err, -ECONNREFUSED);
    assert_false(t.written);
    snprintf(want, sizeof want, "connect(%s): Connection refused", t.s.path);
    assert_string_equal(t.errstr, want);
    tctx_fini(&t);
}

static void test_client_busy_and_invalid(void **state)
{
    (void)state;
    tctx t;
    tctx_start(&t, OK200, false);
    assert_int_equal(tsend(&t, "GET", "/api/v1/vm.info", NULL, 2000), 0);
    assert_int_equal(tsend(&t, "GET", "/api/v1/vm.info", NULL, 2000), -EBUSY);
    run_until_calls(&t, 1);
    assert_int_equal(t.err, 0);
    assert_int_equal(tsend(&t, "GET", "no-slash", NULL, 2000), -EINVAL);
    assert_int_equal(tsend(&t, "GET", "/a b", NULL, 2000), -EINVAL);
    assert_int_equal(tsend(&t, "GET", "/a\r\nX: y", NULL, 2000), -EINVAL);
    assert_int_equal(tsend(&t, "G ET", "/a", NULL, 2000), -EINVAL);
    assert_int_equal(tsend(&t, "", "/a", NULL, 2000), -EINVAL);
    assert_int_equal(httpc_conn_send(t.c, "PUT", "/a", NULL, 3, 0, done_cb, &t),
                     -EINVAL);
    assert_int_equal(httpc_conn_send(t.c, "PUT", "/a", NULL, 0, 0, NULL, &t),
                     -EINVAL);
    assert_int_equal(httpc_conn_send(NULL, "PUT", "/a", NULL, 0, 0, done_cb, &t),
                     -EINVAL);
    assert_false(httpc_conn_busy(t.c));
    assert_false(httpc_conn_busy(NULL));
    run_for(&t, 0.05);
    assert_int_equal(t.calls, 1);
    tctx_fini(&t);

    /* Paths that cannot fit sun_path are refused up front. */
    char longp[200];
    memset(longp, 'p', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    lp_loop *loop = lp_new();
    errno = 0;
    assert_null(httpc_conn_new(loop, longp));
    assert_int_equal(errno, ENAMETOOLONG);
    httpc_conn_free(NULL);
    lp_free(loop);
}

/* Timers fire in deadline order whether the loop keeps them in its queue
 * (deadlines that only grow) or in its heap (due before the queue's
 * last), and one stopped in the middle of the queue never fires: run as
 * each falls due, and all in one lp_process once every one is due. */
static char g_fired[8];
static size_t g_nfired;

static void order_cb(lp_loop *l, lp_timer *w, int revents)
{
    (void)l;
    (void)revents;
    if (g_nfired < sizeof g_fired)
        g_fired[g_nfired++] = *(const char *)w->data;
}

static void timer_order(bool at_once)
{
    static const char names[] = "abcde";
    const double after[5] = { 0.06, 0.07, 0.02, 0, 0.08 };
    lp_loop *l = lp_new();
    lp_timer t[5];
    uint64_t t0 = base_mono_ns();

    assert_non_null(l);
    g_nfired = 0;
    for (int i = 0; i < 5; i++) {
        lp_timer_init(&t[i], order_cb, after[i], 0);
        t[i].data = (void *)&names[i];
        lp_timer_start(l, &t[i]);
    }
    assert_true(t[0].queued && t[1].queued && t[4].queued);
    assert_true(t[2].hidx && t[3].hidx);
    lp_timer_stop(l, &t[1]);
    assert_int_equal(lp_timeout_ms(l), 0);
    if (at_once) {
        while (base_mono_ns() - t0 < 90000000u)
            ;
        assert_int_equal(lp_process(l), 1);
    }
    while (lp_busy(l))
        assert_true(lp_run_once(l, -1) >= 0);
    assert_int_equal(g_nfired, 4);
    assert_memory_equal(g_fired, "dcae", 4);
    assert_int_equal(lp_timeout_ms(l), -1);
    lp_free(l);
}

static void test_loop_timer_order(void **state)
{
    (void)state;
    timer_order(false);
    timer_order(true);
}

static void free_in_cb_hook(tctx *t, httpc_conn *c, const httpc_response *r)
{
    (void)r;
    httpc_conn_free(c);
    t->c = NULL;
    /* Still readable: the free is deferred until this callback returns. */
    assert_false(httpc_conn_busy(c));
}

static void test_client_free_inside_callback(void **state)
{
    (void)state;
    tctx t;
    tctx_start(&t, OK200, false);
    t.hook = free_in_cb_hook;
    get_info_ok(&t, 1);
    assert_null(t.c);
    run_for(&t, 0.05);
    assert_int_equal(t.calls, 1);
    tctx_fini(&t);
}

static void send_then_free_hook(tctx *t, httpc_conn *c, const httpc_response *r)
{
    (void)r;
    t->hook = NULL;
    assert_int_equal(httpc_conn_send(c, "GET", "/x", NULL, 0, 2000, done_cb, t),
                     0);
    t->in_free = true;
    httpc_conn_free(c);
    t->in_free = false;
    t->c = NULL;
}

static void test_client_free_with_pending(void **state)
{
    (void)state;
    tctx t;
    char want[512];

    /* Before the loop ran at all. */
    tctx_start(&t, OK200, false);
    assert_int_equal(tsend(&t, "GET", "/api/v1/vm.info", NULL, 2000), 0);
    t.in_free = true;
    httpc_conn_free(t.c);
    t.in_free = false;
    t.c = NULL;
    assert_int_equal(t.calls, 1);
    assert_true(t.cb_in_free);
    assert_int_equal(t.err, -ECANCELED);
    assert_false(t.written);
    snprintf(want, sizeof want, "request to %s cancelled: connection freed",
             t.s.path);
    assert_string_equal(t.errstr, want);
    run_for(&t, 0.05);
    assert_int_equal(t.calls, 1);
    tctx_fini(&t);

    /* While waiting for a reply that never comes. */
    tctx_start(&t, NULL, false);
    assert_int_equal(tsend(&t, "PUT", "/api/v1/vm.add-fs", "{}", 2000), 0);
    while (t.s.requests < 1 && !t.watchdog_fired)
        ev_run(t.loop, EVRUN_ONCE);
    assert_int_equal(t.calls, 0);
    httpc_conn_free(t.c);
    t.c = NULL;
    assert_int_equal(t.calls, 1);
    assert_int_equal(t.err, -ECANCELED);
    assert_true(t.written);
    run_for(&t, 0.05);
    assert_int_equal(t.calls, 1);
    tctx_fini(&t);

    /* A request sent from a callback, then freed in that same callback. */
    tctx_start(&t, OK200, false);
    t.hook = send_then_free_hook;
    get_info(&t, 2);
    assert_int_equal(t.err, -ECANCELED);
    assert_true(t.cb_in_free);
    run_for(&t, 0.05);
    assert_int_equal(t.calls, 2);
    tctx_fini(&t);
}

/* The outer callback's response must survive the nested -ECANCELED
 * completion that a send-then-free inside it causes. */
static void send_free_keeps_outer_hook(tctx *t, httpc_conn *c,
                                       const httpc_response *r)
{
    char before[BASE_ERRSTR_MAX];
    int err = r->err, status = r->status;

    snprintf(before, sizeof before, "%s", r->errstr);
    send_then_free_hook(t, c, r);
    assert_int_equal(t->calls, 2);
    assert_int_equal(t->err, -ECANCELED);
    assert_int_equal(r->err, err);
    assert_int_equal(r->status, status);
    assert_string_equal(r->errstr, before);
    assert_string_equal(r->body, "");
}

static void test_client_free_with_pending_keeps_outer_errstr(void **state)
{
    (void)state;
    tctx t;
    char want[512];

    tctx_start(&t, NULL, true);
    t.hook = send_free_keeps_outer_hook;
    get_info(&t, 2);
    snprintf(want, sizeof want, "request to %s cancelled: connection freed",
             t.s.path);
    assert_string_equal(t.errstr, want);
    run_for(&t, 0.05);
    assert_int_equal(t.calls, 2);
    tctx_fini(&t);
}

static void accept_later_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    srv *s = w->data;
    (void)revents;
    ev_io_start(loop, &s->lio);
}

/* A full listen backlog makes connect() fail with EAGAIN; the client must
 * try again within its deadline rather than fail. */
static void test_client_backlog_full(void **state)
{
    (void)state;
    tctx t;
    int fill[64];
    int nfill = 0;
    bool saw_eagain = false;

    tctx_init(&t);
    srv_set_reply(&t.s, OK200, false);
    srv_listen(&t.s, 0, false);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", t.s.path);
    while (nfill < 64) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
            saw_eagain = errno == EAGAIN;
            close(fd);
            break;
        }
        fill[nfill++] = fd;
    }
    assert_true(saw_eagain);

    t.c = httpc_conn_new(t.lp, t.s.path);
    ev_timer later;
    ev_timer_init(&later, accept_later_cb, 0.1, 0.);
    later.data = &t.s;
    ev_timer_start(t.loop, &later);
    ev_tstamp t0 = ev_time();
    get_info_ok(&t, 1);
    assert_int_equal(t.status, 200);
    assert_true(ev_time() - t0 >= 0.09);
    ev_timer_stop(t.loop, &later);
    for (int i = 0; i < nfill; i++)
        close(fill[i]);

    /* And when the backlog never drains, the deadline says so. */
    httpc_conn_free(t.c);
    t.c = NULL;
    tctx_fini(&t);

    tctx_init(&t);
    srv_listen(&t.s, 0, false);
    snprintf(a.sun_path, sizeof a.sun_path, "%s", t.s.path);
    nfill = 0;
    saw_eagain = false;
    while (nfill < 64) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
            saw_eagain = errno == EAGAIN;
            close(fd);
            break;
        }
        fill[nfill++] = fd;
    }
    assert_true(saw_eagain);
    t.c = httpc_conn_new(t.lp, t.s.path);
    assert_int_equal(tsend(&t, "GET", "/api/v1/vm.info", NULL, 150), 0);
    run_until_calls(&t, 1);
    assert_int_equal(t.err, -ETIMEDOUT);
    assert_false(t.written);
    char want[512];
    snprintf(want, sizeof want, "timeout after 150 ms connecting to %s",
             t.s.path);
    assert_string_equal(t.errstr, want);
    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    tctx_fini(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resp_200_body),
        cmocka_unit_test(test_resp_204),
        cmocka_unit_test(test_resp_503_cap),
        cmocka_unit_test(test_resp_http10_close_delimited),
        cmocka_unit_test(test_resp_chunked),
        cmocka_unit_test(test_resp_chunked_grows),
        cmocka_unit_test(test_resp_content_length_zero),
        cmocka_unit_test(test_resp_garbage_status),
        cmocka_unit_test(test_resp_truncated),
        cmocka_unit_test(test_resp_header_limit),
        cmocka_unit_test(test_resp_body_limit_content_length),
        cmocka_unit_test(test_resp_body_limit_streamed),
        cmocka_unit_test(test_resp_trailing_bytes_and_sticky),
        cmocka_unit_test(test_resp_interim_100),
        cmocka_unit_test(test_client_get_ok),
        cmocka_unit_test(test_client_reply_parser),
        cmocka_unit_test(test_client_spare_keeps_body),
        cmocka_unit_test(test_client_request_bytes_put),
        cmocka_unit_test(test_client_keepalive_reuse),
        cmocka_unit_test(test_client_expect_peer),
        cmocka_unit_test(test_client_send_direct_on_open),
        cmocka_unit_test(test_client_stray_bytes_while_idle),
        cmocka_unit_test(test_client_reconnect_after_idle_close),
        cmocka_unit_test(test_client_close_before_reply),
        cmocka_unit_test(test_client_close_mid_headers),
        cmocka_unit_test(test_client_close_mid_body),
        cmocka_unit_test(test_client_garbage),
        cmocka_unit_test(test_client_oversized_headers),
        cmocka_unit_test(test_client_oversized_body),
        cmocka_unit_test(test_client_http10_close),
        cmocka_unit_test(test_client_chunked),
        cmocka_unit_test(test_client_503_cap_on_accept),
        cmocka_unit_test(test_client_timeout_never_replies),
        cmocka_unit_test(test_client_timeout_slow_drip),
        cmocka_unit_test(test_client_missing_socket),
        cmocka_unit_test(test_client_stale_socket),
        cmocka_unit_test(test_client_busy_and_invalid),
        cmocka_unit_test(test_client_free_inside_callback),
        cmocka_unit_test(test_client_free_with_pending),
        cmocka_unit_test(test_client_free_with_pending_keeps_outer_errstr),
        cmocka_unit_test(test_client_backlog_full),
        cmocka_unit_test(test_loop_timer_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
