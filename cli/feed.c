/* cli/feed.c: what lets a run of many operations stream in bounded
 * memory: plan lines read as they are needed, a set of strings for what a
 * run must remember per VM or per socket, and latency percentiles from a
 * histogram instead of a list of every latency. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/plan.h"

#define LINES_CHUNK 65536

void cli_lines_init(cli_lines *r, int fd)
{
    struct stat st;

    memset(r, 0, sizeof(*r));
    r->fd = fd;
    r->regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

void cli_lines_fini(cli_lines *r)
{
    free(r->buf);
    r->buf = NULL;
}

/* Reads once: a regular file always, anything else only when poll says a
 * read will not block.  0 after a read or at the end, 1 when it would
 * block. */
static int lines_fill(cli_lines *r)
{
    struct pollfd p = { .fd = r->fd, .events = POLLIN };
    ssize_t n;

    if (r->off) {
        memmove(r->buf, r->buf + r->off, r->len - r->off);
        r->len -= r->off;
        r->off = 0;
    }
    if (r->cap - r->len < LINES_CHUNK) {
        char *nb = realloc(r->buf, r->len + LINES_CHUNK);

        if (!nb) {
            r->err = ENOMEM;
            r->eof = true;
            return 0;
        }
        r->buf = nb;
        r->cap = r->len + LINES_CHUNK;
    }
    if (!r->regular && poll(&p, 1, 0) <= 0)
        return 1;
    n = read(r->fd, r->buf + r->len, r->cap - r->len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 1;
    if (n <= 0) {
        r->err = n < 0 ? errno : 0;
        r->eof = true;
        return 0;
    }
    r->len += (size_t)n;
    return 0;
}

int cli_lines_next(cli_lines *r, const char **line, size_t *len)
{
    for (;;) {
        char *p = r->buf + r->off, *nl = r->len > r->off ? memchr(p, '\n', r->len - r->off)
                                                         : NULL;
        size_t have = r->len - r->off;

        if (nl || (r->eof && have && !r->skipping)) {
            size_t ll = nl ? (size_t)(nl - p) : have;
            bool skip = r->skipping;

            r->off += ll + (nl ? 1 : 0);
            r->skipping = false;
            if (skip)
                continue;
            *line = p;
            *len = ll;
            return 1;
        }
        if (r->eof)
            return -1;
        /* A line longer than any plan line is handed over once, long
         * enough for the parser to refuse it, and the rest of it is
         * dropped as it arrives: the buffer never grows past that. */
        if (have > PLAN_LINE_MAX) {
            r->off = r->len;
            if (!r->skipping) {
                r->skipping = true;
                *line = p;
                *len = have;
                return 1;
            }
        }
        if (lines_fill(r))
            return 0;
    }
}

/* ---------------------------------------------------------- string set */

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int set_grow(cli_strset *s)
{
    size_t nb = s->nb ? s->nb * 2 : 64;
    cli_strent **b = calloc(nb, sizeof(*b));

    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i < s->nb; i++) {
        for (cli_strent *e = s->b[i], *next; e; e = next) {
            next = e->next;
            e->next = b[str_hash(e->key) & (nb - 1)];
            b[str_hash(e->key) & (nb - 1)] = e;
        }
    }
    free(s->b);
    s->b = b;
    s->nb = nb;
    return 0;
}

const cli_strent *cli_strset_get(const cli_strset *s, const char *key)
{
    if (!s->nb)
        return NULL;
    for (const cli_strent *e = s->b[str_hash(key) & (s->nb - 1)]; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

int cli_strset_add(cli_strset *s, const char *key, const char *val, int num)
{
    size_t kl = strlen(key) + 1, vl = val ? strlen(val) + 1 : 0;
    cli_strent *e;

    if (cli_strset_get(s, key))
        return 0;
    if (s->n + 1 > s->nb && set_grow(s))
        return -ENOMEM;
    e = malloc(sizeof(*e) + kl + vl);
    if (!e)
        return -ENOMEM;
    memcpy(e->key, key, kl);
    e->val = val ? memcpy(e->key + kl, val, vl) : NULL;
    e->num = num;
    e->next = s->b[str_hash(key) & (s->nb - 1)];
    s->b[str_hash(key) & (s->nb - 1)] = e;
    s->n++;
    return 1;
}

void cli_strset_fini(cli_strset *s)
{
    for (size_t i = 0; i < s->nb; i++)
        for (cli_strent *e = s->b[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(s->b);
    memset(s, 0, sizeof(*s));
}

/* ---------------------------------------------------- latency histogram */

/* Values below 64 us have a bucket each; above, every power of two is cut
 * into 64 buckets, so a percentile is off by less than 1.6 %. */
static size_t lat_bucket(uint64_t us)
{
    int e;

    if (us < 64)
        return (size_t)us;
    e = 63 - __builtin_clzll(us);
    return (size_t)(e - 5) * 64 + (size_t)((us >> (e - 6)) & 63);
}

static uint64_t lat_value(size_t b)
{
    if (b < 64)
        return b;
    return (uint64_t)(64 + b % 64) << (b / 64 + 5 - 6);
}

void cli_lat_add(cli_lat *h, uint64_t us)
{
    h->counts[lat_bucket(us)]++;
    h->n++;
}

double cli_lat_ms(const cli_lat *h, double p)
{
    uint64_t want, seen = 0;

    if (!h->n)
        return 0;
    want = (uint64_t)(p * (double)h->n + 0.999999);
    if (want == 0)
        want = 1;
    for (size_t b = 0; b < CLI_LAT_BUCKETS; b++) {
        seen += h->counts[b];
        if (seen >= want)
            return (double)lat_value(b) / 1000.0;
    }
    return 0;
}
