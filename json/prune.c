/* json/prune.c: see prune.h.  Why it exists: yajl's lexer reads a byte at
 * a time through a state machine, about 25 instructions per byte, and
 * Cloud Hypervisor's vm.info is several kilobytes of which cocoon reads a
 * few hundred bytes (state, memory, fs, devices, the device_tree keys).
 * This pass walks the body with a table-driven scan (a few instructions
 * per byte), so the attach hot path pays yajl only for what it decodes.
 * It never decides anything on its own: any body it is unsure of goes to
 * yajl unchanged. */
#include "json/prune.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef enum pmode { P_KEEP, P_ROOT, P_CONFIG, P_MEMORY, P_TREE, P_SKIP, P_DROP } pmode;

typedef struct pcur {
    const unsigned char *p, *end;
    char *o;                /* NULL while skipping */
    unsigned depth, max_depth;
} pcur;

/* A byte of a run of plain string bytes: printable ASCII but '"' and
 * '\\' (controls are invalid, non-ASCII is checked as UTF-8). */
static bool str_plain(unsigned char ch)
{
    return ch >= 0x20 && ch < 0x80 && ch != '"' && ch != '\\';
}

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Nonzero when a byte of w is zero (exact: a borrow only ever follows a
 * zero byte). */
static uint64_t has_zero(uint64_t w)
{
    return (w - ONES) & ~w & HIGHS;
}

/* The end of the run of plain bytes from p, eight bytes at a time. */
static const unsigned char *plain_run(const unsigned char *p, const unsigned char *end)
{
    while (end - p >= 8) {
        uint64_t w;

        memcpy(&w, p, 8);
        if ((w & HIGHS) | ((w - 0x20 * ONES) & ~w & HIGHS) | has_zero(w ^ ('"' * ONES)) |
            has_zero(w ^ ('\\' * ONES)))
            break;
        p += 8;
    }
    while (p < end && str_plain(*p))
        p++;
    return p;
}

static void put(pcur *c, const unsigned char *from, size_t n)
{
    if (c->o) {
        memcpy(c->o, from, n);
        c->o += n;
    }
}

static void put1(pcur *c, char ch)
{
    if (c->o)
        *c->o++ = ch;
}

static void ws(pcur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

static bool is_hex(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* A string at c->p (its opening quote); copied when not skipping.  Sets
 * *escaped when it holds an escape.  The UTF-8 rule is yajl's: a lead byte
 * 110xxxxx, 1110xxxx or 11110xxx followed by that many 10xxxxxx bytes. */
static bool string(pcur *c, bool *escaped)
{
    const unsigned char *s = c->p++;

    *escaped = false;
    for (;;) {
        c->p = plain_run(c->p, c->end);
        if (c->p >= c->end)
            return false;
        if (*c->p == '"')
            break;
        if (*c->p == '\\') {
            *escaped = true;
            if (c->end - c->p < 2)
                return false;
            switch (c->p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                c->p += 2;
                continue;
            case 'u':
                if (c->end - c->p < 6 || !is_hex(c->p[2]) || !is_hex(c->p[3]) ||
                    !is_hex(c->p[4]) || !is_hex(c->p[5]))
                    return false;
                c->p += 6;
                continue;
            default:
                return false;
            }
        }
        if (*c->p < 0x80)
            return false;   /* a control character */
        {
            unsigned char lead = *c->p;
            int more = (lead >> 5) == 0x6 ? 1 : (lead >> 4) == 0xe ? 2 : (lead >> 3) == 0x1e ? 3 : -1;

            if (more < 0 || c->end - c->p <= more)
                return false;
            for (int i = 1; i <= more; i++)
                if ((c->p[i] >> 6) != 0x2)
                    return false;
            c->p += 1 + more;
        }
    }
    c->p++;
    put(c, s, (size_t)(c->p - s));
    return true;
}

static bool digits(pcur *c)
{
    const unsigned char *s = c->p;

    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        c->p++;
    return c->p > s;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool number(pcur *c)
{
    const unsigned char *s = c->p;

    if (*c->p == '-')
        c->p++;
    if (c->p < c->end && *c->p == '0')
        c->p++;
    else if (c->p >= c->end || *c->p < '1' || *c->p > '9' || !digits(c))
        return false;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!digits(c))
            return false;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (!digits(c))
            return false;
    }
    put(c, s, (size_t)(c->p - s));
    return true;
}

static bool literal(pcur *c, const char *word, size_t n)
{
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return false;
    put(c, c->p, n);
    c->p += n;
    return true;
}

static bool value(pcur *c, pmode mode);

/* What a member's value becomes, from its parent's mode and its key:
 * P_DROP leaves the member out, P_SKIP keeps the key with the value 0
 * (device_tree, whose keys the decoder reads). */
static pmode member_mode(pmode parent, const unsigned char *key, size_t n)
{
#define KEY_IS(k) (n == sizeof(k) - 1 && memcmp(key, k, n) == 0)
    switch (parent) {
    case P_ROOT:
        return KEY_IS("config") ? P_CONFIG : KEY_IS("device_tree") ? P_TREE
               : KEY_IS("state") ? P_KEEP : P_DROP;
    case P_CONFIG:
        return KEY_IS("memory") ? P_MEMORY : KEY_IS("fs") || KEY_IS("devices") ? P_KEEP : P_DROP;
    case P_MEMORY:
        return KEY_IS("size") || KEY_IS("shared") || KEY_IS("hugepages") || KEY_IS("zones")
                   ? P_KEEP
                   : P_DROP;
    case P_TREE:
        return P_SKIP;
    default:
        return parent;
    }
#undef KEY_IS
}

/* An object or array at c->p.  A member left out takes its comma with
 * it: the copy is rewound to where the member began. */
static bool container(pcur *c, pmode mode, bool object)
{
    char close = object ? '}' : ']';
    bool first = true;      /* nothing written inside yet */

    if (++c->depth > c->max_depth)
        return false;
    put1(c, object ? '{' : '[');
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        put1(c, close);
        c->depth--;
        return true;
    }
    for (;;) {
        pmode child = mode == P_SKIP ? P_SKIP : P_KEEP;
        char *begin = c->o, *val;

        if (!first)
            put1(c, ',');
        if (object) {
            const unsigned char *key;
            bool escaped;

            ws(c);
            if (c->p >= c->end || *c->p != '"')
                return false;
            key = c->p + 1;
            if (!string(c, &escaped))
                return false;
            if (mode != P_KEEP && mode != P_SKIP) {
                child = member_mode(mode, key, (size_t)(c->p - 1 - key));
                if (escaped && mode != P_TREE)
                    return false;
            }
            ws(c);
            if (c->p >= c->end || *c->p != ':')
                return false;
            c->p++;
            put1(c, ':');
        }
        val = c->o;
        if (mode != P_SKIP && (child == P_SKIP || child == P_DROP)) {
            c->o = NULL;
            if (!value(c, P_SKIP))
                return false;
            if (child == P_DROP) {
                c->o = begin;
            } else {
                c->o = val;
                put1(c, '0');
                first = false;
            }
        } else {
            if (!value(c, child))
                return false;
            first = false;
        }
        ws(c);
        if (c->p >= c->end || (*c->p != ',' && *c->p != close))
            return false;
        if (*c->p++ == ',')
            continue;
        put1(c, close);
        c->depth--;
        return true;
    }
}

static bool value(pcur *c, pmode mode)
{
    bool escaped;

    ws(c);
    if (c->p >= c->end)
        return false;
    switch (*c->p) {
    case '{':
        return container(c, mode, true);
    case '[':
        return container(c, mode == P_SKIP ? P_SKIP : P_KEEP, false);
    case '"':
        return string(c, &escaped);
    case 't':
        return literal(c, "true", 4);
    case 'f':
        return literal(c, "false", 5);
    case 'n':
        return literal(c, "null", 4);
    default:
        return (*c->p == '-' || (*c->p >= '0' && *c->p <= '9')) && number(c);
    }
}

long json_prune_vm_info(const char *buf, size_t len, char *out, unsigned max_depth)
{
    pcur c = { (const unsigned char *)buf, (const unsigned char *)buf + len, out, 0, max_depth };

    if (!buf || !out || !value(&c, P_ROOT))
        return -1;
    ws(&c);
    if (c.p != c.end)
        return -1;
    return (long)(c.o - out);
}
