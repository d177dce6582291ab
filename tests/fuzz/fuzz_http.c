/* tests/fuzz/fuzz_http.c: libFuzzer target for the pure response parser.
 * Each input is parsed whole and again in pieces whose sizes come from the
 * input's first bytes; both runs must agree on the outcome, status, body and
 * error text, and every result must respect the documented limits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/client.h"
#include "http/response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct run {
    int rc;
    int status;
    size_t used;
    bool keep_alive;
    size_t body_len;
    char *body;
    char *errstr;
} run;

/* cuts/ncuts: piece sizes used in turn (cycled); ncuts 0 means whole. */
static void parse(httpc_resp *r, const char *d, size_t len,
                  const uint8_t *cuts, size_t ncuts, run *o)
{
    size_t off = 0, ci = 0, used_total = 0;
    int rc = HTTPC_RESP_MORE;

    httpc_resp_reset(r);
    do {
        size_t n = len - off;
        if (ncuts) {
            size_t want = (size_t)cuts[ci++ % ncuts] % 17 + 1;
            if (n > want)
                n = want;
        }
        size_t u = 0;
        rc = httpc_resp_feed(r, d + off, n, &u);
        if (rc == HTTPC_RESP_DONE) {
            used_total += u;
            break;
        }
        if (rc < 0)
            break;
        if (u != n)
            abort();
        off += n;
        used_total += n;
    } while (off < len);
    if (rc == HTTPC_RESP_MORE)
        rc = httpc_resp_finish(r);

    o->rc = rc;
    o->status = httpc_resp_status(r);
    o->used = used_total;
    o->keep_alive = httpc_resp_keep_alive(r);
    o->body_len = httpc_resp_body_len(r);
    const char *b = httpc_resp_body(r);
    if (!b || b[o->body_len] != '\0' || o->body_len > HTTPC_MAX_BODY_BYTES)
        abort();
    o->body = malloc(o->body_len + 1);
    o->errstr = strdup(httpc_resp_errstr(r));
    if (!o->body || !o->errstr)
        abort();
    memcpy(o->body, b, o->body_len + 1);
    if ((rc < 0) != (o->errstr[0] != '\0'))
        abort();
    if (rc == HTTPC_RESP_DONE && (o->status < 100 || o->status > 999))
        abort();
}

static void run_free(run *o)
{
    free(o->body);
    free(o->errstr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* First byte: how many of the following bytes steer the split. */
    size_t ncuts = size ? (size_t)(data[0] % 8) + 1 : 0;
    if (ncuts + 1 > size)
        ncuts = 0;
    const uint8_t *cuts = data + 1;
    const char *msg = (const char *)data + (ncuts ? ncuts + 1 : 0);
    size_t len = size - (ncuts ? ncuts + 1 : 0);

    httpc_resp *r = httpc_resp_new();
    if (!r)
        return 0;
    run whole, split;
    parse(r, msg, len, NULL, 0, &whole);
    uint8_t one = 0;
    parse(r, msg, len, ncuts ? cuts : &one, ncuts ? ncuts : 1, &split);

    if (whole.rc != split.rc || whole.status != split.status ||
        strcmp(whole.errstr, split.errstr) != 0)
        abort();
    if (whole.rc == HTTPC_RESP_DONE &&
        (whole.used != split.used || whole.keep_alive != split.keep_alive ||
         whole.body_len != split.body_len ||
         memcmp(whole.body, split.body, whole.body_len) != 0))
        abort();
    run_free(&whole);
    run_free(&split);
    httpc_resp_free(r);
    return 0;
}
