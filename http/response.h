/* http/response.h: the pure HTTP/1.1 response parser behind http/client.c.
 * Bytes in (in any split, down to one byte at a time), status and body out;
 * no I/O, so it can be fed by tests and fuzzers directly.  Built on llhttp in
 * HTTP_RESPONSE mode; enforces HTTPC_MAX_HEADER_BYTES / HTTPC_MAX_BODY_BYTES
 * from http/client.h as errors, never as silent cuts. */
#ifndef COCOON_HTTP_RESPONSE_H
#define COCOON_HTTP_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct httpc_resp httpc_resp;

/* Return values of httpc_resp_feed / httpc_resp_finish besides -errno. */
#define HTTPC_RESP_MORE 0   /* response incomplete: feed more bytes */
#define HTTPC_RESP_DONE 1   /* one whole response parsed */

/* Owned (free with httpc_resp_free).  NULL with errno ENOMEM. */
httpc_resp *httpc_resp_new(void);
/* NULL is a no-op. */
void httpc_resp_free(httpc_resp *r);

/* Forgets the previous response (status, body, error) and expects a new one.
 * Keeps the body buffer for reuse. */
void httpc_resp_reset(httpc_resp *r);
/* Frees the body buffer when it can hold more than keep bytes, so a parser
 * set aside for reuse keeps a buffer of common size and no more; the body
 * then reads "" until the next one either way. */
void httpc_resp_trim_body(httpc_resp *r, size_t keep);

/* Parses len bytes of data (borrowed).  Returns HTTPC_RESP_MORE,
 * HTTPC_RESP_DONE (*used, may be NULL, says how many bytes of data belong to
 * this response; the rest belongs to whatever follows), or a negative errno:
 * -EPROTO (malformed; errstr "malformed HTTP response: <llhttp reason>"),
 * -EMSGSIZE (header block or body over its limit), -ENOMEM.  Once DONE or an
 * error has been returned, further calls return the same value with
 * *used = 0 until httpc_resp_reset. */
int httpc_resp_feed(httpc_resp *r, const char *data, size_t len, size_t *used);

/* The peer closed the stream.  Returns HTTPC_RESP_DONE when the response is
 * complete (a body delimited by the close completes here), the sticky error
 * of an earlier feed, or -ECONNRESET when the reply was cut short; errstr
 * then says where, without a prefix: "no bytes received",
 * "in headers after 12 bytes", "in body after 2 of 5 bytes",
 * "in chunked body after 7 bytes". */
int httpc_resp_finish(httpc_resp *r);

/* Status code; 0 until the status line has been parsed. */
int httpc_resp_status(const httpc_resp *r);
/* Borrowed until the next reset/feed/free; NUL-terminated, never NULL. */
const char *httpc_resp_body(const httpc_resp *r);
size_t httpc_resp_body_len(const httpc_resp *r);
/* After DONE: true when the peer keeps the connection open for another
 * request (HTTP/1.1 without "Connection: close" and not close-delimited). */
bool httpc_resp_keep_alive(const httpc_resp *r);
/* Borrowed; "" when there is no error. */
const char *httpc_resp_errstr(const httpc_resp *r);

#endif
