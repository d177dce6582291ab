#include "http/response.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "http/base.h"
#include "http/client.h"

struct httpc_resp {
    llhttp_t p;
    int state;              /* HTTPC_RESP_MORE, HTTPC_RESP_DONE or -errno */
    int cb_err;             /* error raised inside a callback (HPE_USER) */
    int status;
    bool headers_done;
    bool complete;
    bool interim;           /* the completed message was a 1xx */
    bool keep_alive;
    size_t hdr_bytes;       /* header block bytes of the current message */
    size_t total;           /* bytes consumed since the last reset */
    char *body;             /* body_cap bytes, always NUL-terminated:
                               body_small, or owned */
    size_t body_len, body_cap;
    /* Its messages: "malformed HTTP response: " and llhttp's reason
     * (under 100 bytes), or a few words and numbers. */
    char errstr[160];
    /* A small body (a PciDeviceInfo, a short error) needs no allocation
     * of its own. */
    char body_small[128];
};

static int resp_on_message_begin(llhttp_t *p);
static int resp_on_headers_complete(llhttp_t *p);
static int resp_on_body(llhttp_t *p, const char *at, size_t len);
static int resp_on_message_complete(llhttp_t *p);

/* Headers are not copied: the client needs only the status and the body, and
 * llhttp itself interprets Content-Length, Transfer-Encoding and
 * Connection.  Both completion callbacks pause the parser so that feed()
 * learns the exact byte offset of the header block end and message end. */
static const llhttp_settings_t resp_settings = {
    .on_message_begin = resp_on_message_begin,
    .on_headers_complete = resp_on_headers_complete,
    .on_body = resp_on_body,
    .on_message_complete = resp_on_message_complete,
};

static char resp_empty[1];

static int resp_on_message_begin(llhttp_t *p)
{
    httpc_resp *r = p->data;
    r->headers_done = false;
    r->complete = false;
    r->interim = false;
    r->status = 0;
    r->body_len = 0;
    if (r->body)
        r->body[0] = '\0';
    return 0;
}

static int resp_on_headers_complete(llhttp_t *p)
{
    httpc_resp *r = p->data;
    r->headers_done = true;
    r->status = p->status_code;
    return HPE_PAUSED;
}

static int resp_grow(httpc_resp *r, size_t need)
{
    if (need <= r->body_cap)
        return 0;
    if (!r->body && need <= sizeof r->body_small) {
        r->body = r->body_small;
        r->body_cap = sizeof r->body_small;
        r->body[r->body_len] = '\0';
        return 0;
    }
    size_t cap = r->body_cap ? r->body_cap : 1024;
    while (cap < need)
        cap *= 2;
    if (cap > HTTPC_MAX_BODY_BYTES + 1)
        cap = HTTPC_MAX_BODY_BYTES + 1;
    bool small = r->body == r->body_small;
    char *nb = small ? malloc(cap) : realloc(r->body, cap);
    if (!nb)
        return -ENOMEM;
    if (small)
        memcpy(nb, r->body_small, r->body_len + 1);
    r->body = nb;
    r->body_cap = cap;
    r->body[r->body_len] = '\0';
    return 0;
}

static int resp_on_body(llhttp_t *p, const char *at, size_t len)
{
    httpc_resp *r = p->data;
    if (len > HTTPC_MAX_BODY_BYTES - r->body_len) {
        r->cb_err = base_errf(r->errstr, sizeof r->errstr, -EMSGSIZE,
                              "response body exceeds %u bytes",
                              HTTPC_MAX_BODY_BYTES);
        return HPE_USER;
    }
    if (resp_grow(r, r->body_len + len + 1) < 0) {
        r->cb_err = base_errf(r->errstr, sizeof r->errstr, -ENOMEM,
                              "out of memory for a %zu-byte response body",
                              r->body_len + len);
        return HPE_USER;
    }
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

static int resp_on_message_complete(llhttp_t *p)
{
    httpc_resp *r = p->data;
    r->complete = true;
    /* 1xx answers are interim: the real response follows on the stream. */
    r->interim = p->status_code >= 100 && p->status_code < 200;
    r->keep_alive = llhttp_should_keep_alive(p) != 0;
    return HPE_PAUSED;
}

/* The one place where llhttp results become errno values and text. */
static int resp_fail(httpc_resp *r, llhttp_errno_t e)
{
    if (e == HPE_USER && r->cb_err < 0) {
        r->state = r->cb_err;
        return r->state;
    }
    const char *why;
    if (e == HPE_PAUSED_UPGRADE)
        why = "unexpected protocol upgrade";
    else
        why = llhttp_get_error_reason(&r->p);
    if (!why || !*why)
        why = llhttp_errno_name(e);
    r->state = base_errf(r->errstr, sizeof r->errstr, -EPROTO,
                         "malformed HTTP response: %s", why);
    return r->state;
}

httpc_resp *httpc_resp_new(void)
{
    httpc_resp *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    httpc_resp_reset(r);
    return r;
}

/* The body's own allocation, NULL when it is body_small or none. */
static char *resp_body_buf(httpc_resp *r)
{
    return r->body == r->body_small ? NULL : r->body;
}

void httpc_resp_free(httpc_resp *r)
{
    if (!r)
        return;
    free(resp_body_buf(r));
    free(r);
}

void httpc_resp_reset(httpc_resp *r)
{
    llhttp_init(&r->p, HTTP_RESPONSE, &resp_settings);
    r->p.data = r;
    r->state = HTTPC_RESP_MORE;
    r->cb_err = 0;
    r->status = 0;
    r->headers_done = false;
    r->complete = false;
    r->interim = false;
    r->keep_alive = false;
    r->hdr_bytes = 0;
    r->total = 0;
    r->body_len = 0;
    if (r->body)
        r->body[0] = '\0';
    r->errstr[0] = '\0';
}

void httpc_resp_trim_body(httpc_resp *r, size_t keep)
{
    if (r->body_cap > keep) {
        free(resp_body_buf(r));
        r->body = NULL;
        r->body_cap = 0;
    }
    r->body_len = 0;
    if (r->body)
        r->body[0] = '\0';
}

static int resp_header_limit(httpc_resp *r)
{
    return r->state = base_errf(r->errstr, sizeof r->errstr, -EMSGSIZE,
                                "response header block exceeds %u bytes",
                                HTTPC_MAX_HEADER_BYTES);
}

/* Called when the parser paused at the end of the header block. */
static int resp_headers_done(httpc_resp *r)
{
    if (r->hdr_bytes > HTTPC_MAX_HEADER_BYTES)
        return resp_header_limit(r);
    /* llhttp takes any three digits; below 100 there is no HTTP status. */
    if (r->status < 100)
        return r->state = base_errf(r->errstr, sizeof r->errstr, -EPROTO,
                                    "malformed HTTP response: invalid status "
                                    "code %d", r->status);
    if ((r->p.flags & F_CONTENT_LENGTH) &&
        r->p.content_length > HTTPC_MAX_BODY_BYTES)
        return r->state = base_errf(r->errstr, sizeof r->errstr, -EMSGSIZE,
                                    "response body exceeds %u bytes "
                                    "(Content-Length: %" PRIu64 ")",
                                    HTTPC_MAX_BODY_BYTES,
                                    (uint64_t)r->p.content_length);
    /* Reserve the announced size once instead of growing by doubling. */
    if ((r->p.flags & F_CONTENT_LENGTH) && r->p.content_length > 0 &&
        resp_grow(r, (size_t)r->p.content_length + 1) < 0)
        return r->state = base_errf(r->errstr, sizeof r->errstr, -ENOMEM,
                                    "out of memory for a %" PRIu64
                                    "-byte response body",
                                    (uint64_t)r->p.content_length);
    return HTTPC_RESP_MORE;
}

int httpc_resp_feed(httpc_resp *r, const char *data, size_t len, size_t *used)
{
    size_t off = 0;
    bool resumed = false;

    if (used)
        *used = 0;
    if (r->state != HTTPC_RESP_MORE)
        return r->state;
    /* After a pause llhttp may still owe steps that need no input (a
     * body-less message completes right after its headers), so a resumed
     * parser runs once more even when no bytes are left. */
    while (off < len || resumed) {
        const char *chunk = data + off;
        size_t n = len - off;
        bool in_headers = !r->headers_done;

        /* Never hand llhttp more header bytes than the limit allows, so a
         * huge block is refused after at most limit+1 bytes. */
        if (in_headers && n > HTTPC_MAX_HEADER_BYTES + 1 - r->hdr_bytes)
            n = HTTPC_MAX_HEADER_BYTES + 1 - r->hdr_bytes;

        llhttp_errno_t e = llhttp_execute(&r->p, chunk, n);
        size_t consumed = n;
        resumed = false;
        if (e == HPE_PAUSED) {
            consumed = (size_t)(llhttp_get_error_pos(&r->p) - chunk);
            llhttp_resume(&r->p);
            resumed = true;
        } else if (e != HPE_OK) {
            return resp_fail(r, e);
        }
        off += consumed;
        r->total += consumed;
        if (in_headers) {
            r->hdr_bytes += consumed;
            if (r->headers_done) {
                if (resp_headers_done(r) < 0)
                    return r->state;
            } else if (r->hdr_bytes > HTTPC_MAX_HEADER_BYTES) {
                return resp_header_limit(r);
            }
        }
        if (r->complete) {
            if (r->interim) {
                resp_on_message_begin(&r->p);
                r->hdr_bytes = 0;
                continue;
            }
            r->state = HTTPC_RESP_DONE;
            if (used)
                *used = off;
            return r->state;
        }
    }
    if (used)
        *used = off;
    return HTTPC_RESP_MORE;
}

int httpc_resp_finish(httpc_resp *r)
{
    if (r->state != HTTPC_RESP_MORE)
        return r->state;
    if (r->total == 0)
        return r->state = base_errf(r->errstr, sizeof r->errstr, -ECONNRESET,
                                    "no bytes received");
    /* A close-delimited body completes here; anything else still open is a
     * truncated reply whatever llhttp_finish returns. */
    (void)llhttp_finish(&r->p);
    if (r->complete && !r->interim) {
        r->state = HTTPC_RESP_DONE;
        return r->state;
    }
    if (!r->headers_done)
        return r->state = base_errf(r->errstr, sizeof r->errstr, -ECONNRESET,
                                    "in headers after %zu bytes", r->hdr_bytes);
    if (r->p.flags & F_CHUNKED)
        return r->state = base_errf(r->errstr, sizeof r->errstr, -ECONNRESET,
                                    "in chunked body after %zu bytes",
                                    r->body_len);
    return r->state = base_errf(r->errstr, sizeof r->errstr, -ECONNRESET,
                                "in body after %zu of %zu bytes", r->body_len,
                                r->body_len + (size_t)r->p.content_length);
}

int httpc_resp_status(const httpc_resp *r)
{
    return r->status;
}

const char *httpc_resp_body(const httpc_resp *r)
{
    return r->body ? r->body : resp_empty;
}

size_t httpc_resp_body_len(const httpc_resp *r)
{
    return r->body_len;
}

bool httpc_resp_keep_alive(const httpc_resp *r)
{
    return r->state == HTTPC_RESP_DONE && r->keep_alive;
}

const char *httpc_resp_errstr(const httpc_resp *r)
{
    return r->errstr;
}
