/* tests/support/call.c: one raw VMM API call, for tests that poke chsim
 * or a VMM directly: retried as the backends' endpoint tables allow, under
 * the engine's retry rule. */
#include "tests/support/call.h"
#include "engine/call.h"
#include "backends/backend.h"
#include "http/base.h"
#include "http/client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The backends' endpoint tables decide: a row that matches method and path
 * (a prefix row matches one id below it) says whether the call may be
 * repeated.  Anything no table lists is single-shot. */
static bool call_row_matches(const backend_endpoint *row, const char *method, const char *path)
{
    size_t n = strlen(row->path);

    if (strcmp(method, row->method) != 0)
        return false;
    if (row->path[n - 1] == '/')
        return strncmp(path, row->path, n) == 0 && path[n] != '\0' && !strchr(path + n, '/');
    return strcmp(path, row->path) == 0;
}

bool sup_call_retryable(const char *method, const char *path)
{
    static const struct backend_ops *const backends[] = { &backend_cloudhypervisor,
                                                          &backend_firecracker };

    if (!method || !path)
        return false;
    for (size_t b = 0; b < sizeof(backends) / sizeof(backends[0]); b++)
        for (int ep = 0; ep < BACKEND_EP_COUNT; ep++) {
            const backend_endpoint *row = backend_endpoint_of(backends[b], (backend_ep)ep);

            if (row && call_row_matches(row, method, path))
                return row->retry;
        }
    return false;
}

struct sup_call {
    lp_loop *loop;
    httpc_conn *conn;
    char *method, *path, *body;
    size_t body_len;
    unsigned timeout_ms;
    int ok[8];
    bool retry;
    int attempts;
    lp_timer backoff;
    sup_call_fn *cb;
    void *priv;
    char err[BASE_ERRSTR_MAX];
};

static bool call_ok(const struct sup_call *c, int status)
{
    for (int i = 0; c->ok[i]; i++)
        if (c->ok[i] == status)
            return true;
    return false;
}

static void call_free(struct sup_call *c)
{
    lp_timer_stop(c->loop, &c->backoff);
    httpc_conn_free(c->conn);
    free(c->method);
    free(c->path);
    free(c->body);
    free(c);
}

static void call_done(httpc_conn *conn, const httpc_response *r, void *priv);

static int call_send(struct sup_call *c)
{
    c->attempts++;
    return httpc_conn_send(c->conn, c->method, c->path, c->body, c->body_len,
                           c->timeout_ms, call_done, c);
}

static void call_backoff_cb(lp_loop *loop, lp_timer *w, int revents)
{
    struct sup_call *c = w->data;
    int rc;

    (void)loop;
    (void)revents;
    rc = call_send(c);
    if (rc) {
        sup_call_result res = { .err = rc, .errstr = c->err, .body = "" };

        base_errf(c->err, sizeof(c->err), rc, "%s %s: %s", c->method, c->path, strerror(-rc));
        c->cb(&res, c->priv);
        call_free(c);
    }
}

static void call_done(httpc_conn *conn, const httpc_response *r, void *priv)
{
    struct sup_call *c = priv;
    sup_call_result res = { 0 };

    (void)conn;
    if (r->err == -ECANCELED && !c->cb)
        return;
    if (eng_retry_again(c->retry, c->attempts, r->err, r->status,
                        r->err == 0 && call_ok(c, r->status))) {
        lp_timer_set(&c->backoff, eng_backoff_ms(c->attempts) / 1000.0, 0.);
        lp_timer_start(c->loop, &c->backoff);
        return;
    }
    res.status = r->status;
    res.body = r->body ? r->body : "";
    res.body_len = r->body ? r->body_len : 0;
    if (r->err) {
        res.err = r->err;
        base_errf(c->err, sizeof(c->err), r->err, "%s", r->errstr);
    } else if (!call_ok(c, r->status)) {
        res.err = -EREMOTEIO;
        eng_status_errf(c->err, sizeof(c->err), "", c->method, c->path, r->status,
                        r->body, r->body_len);
    } else {
        c->err[0] = '\0';
    }
    res.errstr = c->err;
    c->cb(&res, c->priv);
    /* httpc defers the free of conn because we are inside its callback. */
    c->cb = NULL;
    call_free(c);
}

static int call_start(lp_loop *loop, const char *sock_path, const char *method,
                      const char *path, const char *body, unsigned timeout_ms,
                      const int *ok_codes, bool allow_retry, sup_call_fn *cb, void *priv)
{
    struct sup_call *c;
    int rc, n = 0;

    if (!loop || !sock_path || !method || !path || !cb)
        return -EINVAL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->loop = loop;
    c->method = strdup(method);
    c->path = strdup(path);
    c->body_len = body ? strlen(body) : 0;
    c->body = body ? strdup(body) : NULL;
    if (!c->method || !c->path || (body && !c->body)) {
        call_free(c);
        return -ENOMEM;
    }
    if (ok_codes) {
        while (ok_codes[n] && n < 7) {
            c->ok[n] = ok_codes[n];
            n++;
        }
    } else {
        c->ok[0] = 200;
        c->ok[1] = 204;
    }
    c->timeout_ms = timeout_ms;
    c->retry = allow_retry && sup_call_retryable(method, path);
    c->cb = cb;
    c->priv = priv;
    lp_timer_init(&c->backoff, call_backoff_cb, 0., 0.);
    c->backoff.data = c;
    c->conn = httpc_conn_new(loop, sock_path);
    if (!c->conn) {
        rc = errno ? -errno : -ENOMEM;
        call_free(c);
        return rc;
    }
    rc = call_send(c);
    if (rc) {
        c->cb = NULL;
        call_free(c);
        return rc;
    }
    return 0;
}

int sup_call(lp_loop *loop, const char *sock_path, const char *method,
             const char *path, const char *body, unsigned timeout_ms,
             const int *ok_codes, sup_call_fn *cb, void *priv)
{
    return call_start(loop, sock_path, method, path, body, timeout_ms, ok_codes,
                      true, cb, priv);
}

struct call_sync {
    bool done;
    int err;
    int status;
    char *body;
    char *errbuf;
    size_t errlen;
};

static void call_sync_cb(const sup_call_result *r, void *priv)
{
    struct call_sync *s = priv;

    s->done = true;
    s->err = r->err;
    s->status = r->status;
    s->body = malloc(r->body_len + 1);
    if (s->body) {
        memcpy(s->body, r->body, r->body_len);
        s->body[r->body_len] = '\0';
    }
    base_errf(s->errbuf, s->errlen, 0, "%s", r->errstr ? r->errstr : "");
}

static int call_sync_run(const char *sock_path, const char *method, const char *path,
                         const char *body, unsigned timeout_ms, const int *ok_codes,
                         bool allow_retry, int *status, char **body_out,
                         char *err, size_t errlen)
{
    lp_loop *loop = lp_new();
    struct call_sync s = { .errbuf = err, .errlen = errlen };
    int rc;

    if (body_out)
        *body_out = NULL;
    if (status)
        *status = 0;
    if (!loop)
        return base_errf(err, errlen, -ENOMEM, "%s %s: cannot create event loop",
                         method, path);
    rc = call_start(loop, sock_path, method, path, body, timeout_ms, ok_codes,
                    allow_retry, call_sync_cb, &s);
    if (rc) {
        lp_free(loop);
        return base_errf(err, errlen, rc, "%s %s: %s", method, path, strerror(-rc));
    }
    while (!s.done)
        lp_run_once(loop, -1);
    lp_free(loop);
    if (status)
        *status = s.status;
    if (body_out)
        *body_out = s.body;
    else
        free(s.body);
    return s.err;
}

int sup_call_sync(const char *sock_path, const char *method, const char *path,
                  const char *body, unsigned timeout_ms, const int *ok_codes,
                  int *status, char **body_out, char *err, size_t errlen)
{
    return call_sync_run(sock_path, method, path, body, timeout_ms, ok_codes, true,
                         status, body_out, err, errlen);
}
