#include "backends/socktab.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "http/base.h"

#define SOCKTAB_IOBUF (64 * 1024)
/* The kernel sizes a dump part to the reader's buffer, up to 32 KiB. */
#define SOCKTAB_DIAG_BUF (32 * 1024)
#define SOCKTAB_DIAG_TRIES 2

/* A fleet host has tens of thousands of sockets, and a batch takes the
 * snapshot at least once.  The sock_diag dump lets the kernel drop every
 * socket that does not listen; /proc/net/unix, the fallback, has the kernel
 * format all of them as text, so its reader uses plain read() in big
 * chunks and looks at nothing but the flags of a non-listening line.
 * Paths live in one arena instead of one allocation each.  A snapshot for
 * a known set of paths holds only those and marks the ones found
 * listening: other sockets cost a length test, most of them not even a
 * hash. */
struct socktab_slot {
    uint32_t off;       /* arena offset + 1; 0: empty */
    uint32_t hash;
    uint32_t want;      /* index + 1 in wants; 0: not a wanted path */
    bool listening;
};

struct socktab {
    char *arena;        /* paths, each NUL-terminated */
    size_t used, size;
    struct socktab_slot *slots;
    size_t cap;         /* power of two */
    size_t n_slots;
    size_t n;           /* listening */
    size_t unlisted;    /* wanted, sock_diag: sockets by stat() that no dump
                           listed */
    bool wanted;        /* only the paths put in before the scan count */
    uint64_t lens[2];   /* wanted: bit L set when a path of length L < 128 is */
    struct socktab_want *wants;  /* wanted: each distinct path asked for */
    size_t n_want;
    struct socktab_id *ids;      /* wanted, sock_diag: hashed by (ino, dev) */
    size_t ids_cap;              /* power of two */
    uint64_t last_path;          /* text table: file offset + 1 of the latest
                                    path start; 0: none yet */
};

/* A listener is one socket however its path is spelled: through a
 * symlinked directory, with ".." or "//".  The dump identifies it by inode
 * and device; the text table only by the path it was bound to, which
 * realpath() of the wanted path names when the spelling differs. */
struct socktab_want {
    uint32_t off, len;           /* the path as asked, in the arena */
    uint32_t real_off, real_len; /* its realpath() when different; len 0: none */
    bool hit;                    /* the dump listed its inode */
    int stat_err;                /* sock_diag: what stat() said, 0 or an errno;
                                    -1: not stat'ed */
    bool is_sock;                /* stat() found a socket */
};

struct socktab_id {
    uint64_t ino;
    uint32_t dev;                /* kernel encoding: major << 20 | minor */
    uint32_t want;               /* index + 1 in wants; 0: empty */
};

static struct socktab_slot *socktab_find(const socktab *s, const char *path,
                                         size_t len, uint32_t h)
{
    size_t i = h & (s->cap - 1);

    for (;; i = (i + 1) & (s->cap - 1)) {
        struct socktab_slot *sl = &s->slots[i];
        const char *q;

        if (!sl->off)
            return sl;
        q = s->arena + sl->off - 1;
        if (sl->hash == h && memcmp(q, path, len) == 0 && q[len] == '\0')
            return sl;
    }
}

/* The slot of path, added when absent; NULL on ENOMEM. */
static struct socktab_slot *socktab_put(socktab *s, const char *path, size_t len)
{
    uint32_t h = (uint32_t)base_hash(path, len);
    struct socktab_slot *sl;

    if ((s->n_slots + 1) * 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 64;
        struct socktab_slot *ns = calloc(ncap, sizeof(*ns));

        if (!ns)
            return NULL;
        for (size_t k = 0; k < s->cap; k++) {
            size_t i;

            if (!s->slots[k].off)
                continue;
            for (i = s->slots[k].hash & (ncap - 1); ns[i].off; i = (i + 1) & (ncap - 1))
                ;
            ns[i] = s->slots[k];
        }
        free(s->slots);
        s->slots = ns;
        s->cap = ncap;
    }
    sl = socktab_find(s, path, len, h);
    if (sl->off)
        return sl;
    if (s->used + len + 1 > s->size) {
        size_t nsize = s->size ? s->size * 2 : 4096;
        char *na;

        while (nsize < s->used + len + 1)
            nsize *= 2;
        if (nsize > UINT32_MAX || !(na = realloc(s->arena, nsize)))
            return NULL;
        s->arena = na;
        s->size = nsize;
    }
    memcpy(s->arena + s->used, path, len);
    s->arena[s->used + len] = '\0';
    sl->off = (uint32_t)s->used + 1;
    sl->hash = h;
    sl->want = 0;
    sl->listening = false;
    s->used += len + 1;
    s->n_slots++;
    return sl;
}

/* Records the len bytes at p as a listening path: in a wanted set only
 * when asked for. */
static int socktab_mark(socktab *s, const char *p, size_t len)
{
    struct socktab_slot *sl;

    if (s->wanted) {
        if (len < 128 && !(s->lens[len >> 6] & (1ull << (len & 63))))
            return 0;
        if (!s->cap)
            return 0;
        sl = socktab_find(s, p, len, (uint32_t)base_hash(p, len));
        if (!sl->off)
            return 0;
    } else if (!(sl = socktab_put(s, p, len))) {
        return -ENOMEM;
    }
    if (!sl->listening) {
        sl->listening = true;
        s->n++;
    }
    return 0;
}

/* Past the token at p and the spaces after it. */
static const char *socktab_skip(const char *p, const char *end)
{
    while (p < end && *p != ' ')
        p++;
    while (p < end && *p == ' ')
        p++;
    return p;
}

/* The longest path a socket can be bound to (sun_path, no NUL). */
#define SOCKTAB_PATH_MAX 108

/* One line: "Num: RefCount Protocol Flags Type St Inode Path".  The kernel
 * prints "%pK: %08X %08X %08X %04X %02X %5lu" and then " <path>", so past
 * the colon the flags sit at a fixed offset; a line of another shape goes
 * through the field-by-field reading.  The path is everything after the
 * seventh field, so a path with spaces survives.
 *
 * The kernel prints a path's bytes raw, newlines included: a socket bound
 * to "x\n<a whole row>" forges a row.  Such a row ends at most
 * SOCKTAB_PATH_MAX bytes after the start of the path it hides in, so a
 * listening row that ends that close to the previous path start is not
 * believed.  off is the file offset of p. */
static int socktab_line(socktab *s, const char *p, const char *end, uint64_t off)
{
    static const char listening[] = "00010000";
    const char *c = memchr(p, ':', (size_t)(end - p) < 40 ? (size_t)(end - p) : 40);
    const char *line = p;
    uint64_t prev = s->last_path;
    bool listen;

    if (c && end - c > 38 && c[1] == ' ' && c[10] == ' ' && c[19] == ' ' &&
        c[28] == ' ' && c[33] == ' ' && c[36] == ' ') {
        listen = memcmp(c + 20, listening, 8) == 0;
        p = c + 37;
        while (p < end && *p == ' ')
            p++;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p < end && *p != ' ')
            return 0;
    } else {
        /* Another shape: its path could start anywhere in it. */
        s->last_path = off + 1;
        while (p < end && *p == ' ')
            p++;
        for (int f = 0; f < 3; f++)
            p = socktab_skip(p, end);
        if (end - p < 9 || memcmp(p, listening, 8) != 0 || p[8] != ' ')
            return 0;
        listen = true;
        for (int f = 3; f < 6; f++)
            p = socktab_skip(p, end);
        while (p < end && *p != ' ')
            p++;
    }
    while (p < end && *p == ' ')
        p++;
    if (p < end)
        s->last_path = off + (uint64_t)(p - line) + 1;
    if (!listen)
        return 0;
    while (end > p && end[-1] == '\r')
        end--;
    if (p == end || *p == '@')
        return 0;
    if (prev && off + (uint64_t)(end - line) + 1 - prev <= SOCKTAB_PATH_MAX)
        return 0;
    return socktab_mark(s, p, (size_t)(end - p));
}

static int socktab_scan(socktab *s, int fd)
{
    char *io = malloc(SOCKTAB_IOBUF);
    size_t have = 0;
    uint64_t base = 0;          /* file offset of io[0] */
    bool header = true, skipping = false;
    int rc = 0;

    if (!io)
        return -ENOMEM;
    s->last_path = 0;
    for (;;) {
        ssize_t n = read(fd, io + have, SOCKTAB_IOBUF - have);
        const char *p = io, *end, *nl;

        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        end = io + have + n;
        if (n == 0 && have && !skipping && !header)
            rc = socktab_line(s, io, end, base);        /* no final newline */
        if (n == 0)
            break;
        while (!rc && (nl = memchr(p, '\n', (size_t)(end - p)))) {
            if (header || skipping)
                header = skipping = false;
            else
                rc = socktab_line(s, p, nl, base + (uint64_t)(p - io));
            p = nl + 1;
        }
        if (rc)
            break;
        have = (size_t)(end - p);
        /* No line is this long; should one be, it is dropped whole rather
         * than read as a cut path. */
        if (have == SOCKTAB_IOBUF) {
            have = 0;
            skipping = true;
        }
        base += (uint64_t)(end - io) - have;
        memmove(io, p, have);
    }
    free(io);
    return rc;
}

/* An empty set; wanted: it will tell only about the n_want paths of want. */
static socktab *socktab_new(const char *const *want, size_t n_want, bool wanted)
{
    socktab *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->wanted = wanted;
    if (n_want && !(s->wants = calloc(n_want, sizeof(*s->wants)))) {
        socktab_free(s);
        return NULL;
    }
    for (size_t i = 0; i < n_want; i++) {
        size_t len = strlen(want[i]), before = s->n_slots;
        struct socktab_slot *sl = socktab_put(s, want[i], len);

        if (!sl) {
            socktab_free(s);
            return NULL;
        }
        if (len < 128)
            s->lens[len >> 6] |= 1ull << (len & 63);
        if (s->n_slots != before) {
            s->wants[s->n_want].off = sl->off - 1;
            s->wants[s->n_want].len = (uint32_t)len;
            s->wants[s->n_want].stat_err = -1;
            sl->want = (uint32_t)++s->n_want;
        }
    }
    return s;
}

/* For the text table: the realpath() of each wanted path, where it
 * differs, goes in as a path of its own that socktab_resolve maps back. */
static int socktab_add_real(socktab *s)
{
    for (size_t i = 0; i < s->n_want; i++) {
        struct socktab_want *w = &s->wants[i];
        char *real = realpath(s->arena + w->off, NULL);
        struct socktab_slot *sl;
        size_t len;

        if (!real) {
            if (errno == ENOMEM)
                return -ENOMEM;
            continue;
        }
        len = strlen(real);
        if (len == w->len && memcmp(real, s->arena + w->off, len) == 0) {
            free(real);
            continue;
        }
        sl = socktab_put(s, real, len);
        free(real);
        if (!sl)
            return -ENOMEM;
        if (len < 128)
            s->lens[len >> 6] |= 1ull << (len & 63);
        w->real_off = sl->off - 1;
        w->real_len = (uint32_t)len;
    }
    return 0;
}

static size_t socktab_id_hash(uint64_t ino, uint32_t dev)
{
    uint64_t h = (ino ^ ((uint64_t)dev << 32)) * 0x9e3779b97f4a7c15ull;

    return (size_t)(h >> 32);
}

/* For the dump: inode and device of wanted paths from..to-1 that exist,
 * in an open-addressing table (a path spelled two ways is one inode
 * twice), sized when from is 0.  The kernel reports the device as the
 * superblock's dev_t in its own encoding (major << 20 | minor), not the
 * one stat() hands out.  What stat() said is kept, so the caller's check
 * need not ask again. */
static int socktab_add_ids(socktab *s, size_t from, size_t to)
{
    size_t cap = 16;

    if (from == 0) {
        while (cap < s->n_want * 2)
            cap *= 2;
        if (!(s->ids = calloc(cap, sizeof(*s->ids))))
            return -ENOMEM;
        s->ids_cap = cap;
    }
    cap = s->ids_cap;
    for (size_t i = from; i < to; i++) {
        struct socktab_want *w = &s->wants[i];
        struct stat st;
        uint32_t dev;
        size_t k;

        if (stat(s->arena + w->off, &st) < 0) {
            w->stat_err = errno;
            continue;
        }
        w->stat_err = 0;
        w->is_sock = S_ISSOCK(st.st_mode);
        dev = ((uint32_t)major(st.st_dev) << 20) | (uint32_t)minor(st.st_dev);
        for (k = socktab_id_hash((uint64_t)st.st_ino, dev) & (cap - 1); s->ids[k].want;
             k = (k + 1) & (cap - 1))
            ;
        s->ids[k] = (struct socktab_id){ (uint64_t)st.st_ino, dev, (uint32_t)i + 1 };
    }
    return 0;
}

/* Marks the wanted paths whose inode the dump listed. */
static void socktab_hit(socktab *s, uint64_t ino, uint32_t dev)
{
    size_t m = s->ids_cap - 1;

    if (!s->ids_cap)
        return;
    for (size_t k = socktab_id_hash(ino, dev) & m; s->ids[k].want; k = (k + 1) & m)
        if (s->ids[k].ino == ino && s->ids[k].dev == dev)
            s->wants[s->ids[k].want - 1].hit = true;
}

static struct socktab_slot *socktab_at(const socktab *s, uint32_t off, uint32_t len)
{
    const char *p = s->arena + off;

    return socktab_find(s, p, len, (uint32_t)base_hash(p, len));
}

/* A wanted set after a scan: a wanted path listens when the dump listed
 * its inode or the text table listed it or its realpath; n counts those,
 * unlisted the others that stat() found to be sockets. */
static void socktab_resolve(socktab *s)
{
    s->n = s->unlisted = 0;
    for (size_t i = 0; i < s->n_want; i++) {
        const struct socktab_want *w = &s->wants[i];
        struct socktab_slot *sl = socktab_at(s, w->off, w->len);

        if (w->hit || (w->real_len && socktab_at(s, w->real_off, w->real_len)->listening))
            sl->listening = true;
        if (sl->listening)
            s->n++;
        else if (w->stat_err == 0 && w->is_sock)
            s->unlisted++;
    }
}

static socktab *socktab_read(const char *file, const char *const *want, size_t n_want,
                             bool wanted)
{
    socktab *s = socktab_new(want, n_want, wanted);
    int fd, rc;

    if (!s) {
        errno = ENOMEM;
        return NULL;
    }
    /* Nothing asked for: nothing to read. */
    if (wanted && !s->n_slots)
        return s;
    rc = wanted ? socktab_add_real(s) : 0;
    if (!rc && (fd = open(file ? file : "/proc/net/unix", O_RDONLY | O_CLOEXEC)) < 0) {
        rc = -errno;
    } else if (!rc) {
        rc = socktab_scan(s, fd);
        close(fd);
    }
    if (!rc && wanted)
        socktab_resolve(s);
    if (rc) {
        socktab_free(s);
        errno = -rc;
        return NULL;
    }
    return s;
}

socktab *socktab_load(const char *file)
{
    return socktab_read(file, NULL, 0, false);
}

socktab *socktab_load_wanted(const char *file, const char *const *want, size_t n)
{
    return socktab_read(file, want, n, true);
}

/* One sock_diag message: a listening socket and its attributes.  A bound
 * path comes with its terminating NUL; an abstract name starts with one.
 * A wanted set asks for the inode instead (UDIAG_SHOW_VFS), which only a
 * socket bound to a path has. */
static int socktab_diag_msg(socktab *s, const struct nlmsghdr *h)
{
    const struct unix_diag_msg *m = NLMSG_DATA(h);
    const char *a, *end = (const char *)h + h->nlmsg_len;

    if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
        return -EPROTO;
    if (m->udiag_family != AF_UNIX || m->udiag_state != TCP_LISTEN)
        return 0;
    for (a = (const char *)(m + 1); end - a >= (ptrdiff_t)NLA_HDRLEN;) {
        const struct nlattr *at = (const struct nlattr *)(const void *)a;

        if (at->nla_len < NLA_HDRLEN || at->nla_len > end - a)
            return -EPROTO;
        if (s->wanted && (at->nla_type & NLA_TYPE_MASK) == UNIX_DIAG_VFS) {
            struct unix_diag_vfs v;

            if (at->nla_len < NLA_HDRLEN + sizeof(v))
                return -EPROTO;
            memcpy(&v, a + NLA_HDRLEN, sizeof(v));
            socktab_hit(s, v.udiag_vfs_ino, v.udiag_vfs_dev);
            return 0;
        }
        if (!s->wanted && (at->nla_type & NLA_TYPE_MASK) == UNIX_DIAG_NAME) {
            const char *p = a + NLA_HDRLEN;
            size_t len = strnlen(p, at->nla_len - NLA_HDRLEN);

            return len ? socktab_mark(s, p, len) : 0;
        }
        a += NLA_ALIGN(at->nla_len);
    }
    return 0;
}

/* Asks the kernel for one dump over fd: every listening AF_UNIX socket,
 * with its inode (a wanted set) or its name. */
static int socktab_diag_send(const socktab *s, int fd, uint32_t seq)
{
    struct {
        struct nlmsghdr h;
        struct unix_diag_req r;
    } req;
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };

    memset(&req, 0, sizeof(req));
    req.h.nlmsg_len = sizeof(req);
    req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.h.nlmsg_seq = seq;
    req.r.sdiag_family = AF_UNIX;
    req.r.udiag_states = 1u << TCP_LISTEN;
    req.r.udiag_show = s->wanted ? UDIAG_SHOW_VFS : UDIAG_SHOW_NAME;
    if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
        return -errno;
    return 0;
}

#define SOCKTAB_RECV_DONE 1
#define SOCKTAB_RECV_MORE 0
#define SOCKTAB_RECV_WAIT 2

/* At most parts parts of the dump into s (fd is non-blocking): DONE at
 * its end, MORE when parts ran out first, WAIT when the kernel has
 * nothing yet, or -errno.  *intr: the kernel flagged the dump as
 * inconsistent (the table changed while it was walked). */
static int socktab_diag_recv(socktab *s, int fd, char *buf, uint32_t seq, bool *intr,
                             int parts)
{
    for (int part = 0; part < parts; part++) {
        struct iovec iov = { buf, SOCKTAB_DIAG_BUF };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n = recvmsg(fd, &mh, 0);
        size_t left;

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return SOCKTAB_RECV_WAIT;
        if (n < 0)
            return -errno;
        /* A cut part would silently lose sockets. */
        if (n == 0 || (mh.msg_flags & MSG_TRUNC))
            return -EPROTO;
        left = (size_t)n;
        for (struct nlmsghdr *h = (struct nlmsghdr *)(void *)buf; NLMSG_OK(h, left);
             h = NLMSG_NEXT(h, left)) {
            int rc;

            if (h->nlmsg_seq != seq)
                continue;
            if (h->nlmsg_flags & NLM_F_DUMP_INTR)
                *intr = true;
            if (h->nlmsg_type == NLMSG_DONE)
                return SOCKTAB_RECV_DONE;
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);

                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
                    return -EPROTO;
                return e->error ? e->error : -EPROTO;
            }
            if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY && (rc = socktab_diag_msg(s, h)))
                return rc;
        }
    }
    return SOCKTAB_RECV_MORE;
}

/* A snapshot in slices: the wanted paths stat()ed SOCKTAB_STAT_BATCH at a
 * time, then the dump read SOCKTAB_RECV_PARTS parts (up to 32 KiB each) at
 * a time, so no step holds its caller long whatever the number of paths
 * or sockets. */
#define SOCKTAB_STAT_BATCH 256
#define SOCKTAB_RECV_PARTS 2

struct socktab_job {
    socktab *s;             /* NULL once taken or failed */
    int fd;                 /* the netlink socket; -1: none yet */
    char *buf;
    size_t next_stat;       /* wanted: the next path to stat() */
    uint32_t seq;           /* the dump under way, 1..SOCKTAB_DIAG_TRIES */
    bool sent, intr, done;
    int err;                /* why it failed (done with s NULL) */
};

socktab_job *socktab_job_new(const char *const *want, size_t n)
{
    socktab_job *j = calloc(1, sizeof(*j));

    if (!j)
        return NULL;
    j->fd = -1;
    j->seq = 1;
    j->s = socktab_new(want, n, want != NULL);
    if (!j->s) {
        free(j);
        errno = ENOMEM;
        return NULL;
    }
    /* Nothing asked for: nothing to read. */
    j->done = want && !n;
    return j;
}

int socktab_job_fd(const socktab_job *j)
{
    return j->fd;
}

/* No netlink here (an old kernel, a sandbox that forbids it): the text
 * table tells the same, read at once. */
static void socktab_job_fallback(socktab_job *j)
{
    socktab *s = j->s;
    const char **want = NULL;

    if (s->wanted && s->n_want && !(want = malloc(s->n_want * sizeof(*want)))) {
        j->err = ENOMEM;
    } else {
        for (size_t i = 0; s->wanted && i < s->n_want; i++)
            want[i] = s->arena + s->wants[i].off;
        j->s = socktab_read(NULL, want, s->wanted ? s->n_want : 0, s->wanted);
        j->err = j->s ? 0 : errno;
        socktab_free(s);
        s = NULL;
    }
    free(want);
    socktab_free(s);
    if (j->err)
        j->s = NULL;
    j->done = true;
}

static void socktab_job_fail(socktab_job *j, int rc)
{
    if (rc != -ENOMEM) {
        socktab_job_fallback(j);
        return;
    }
    socktab_free(j->s);
    j->s = NULL;
    j->err = ENOMEM;
    j->done = true;
}

/* Asks for a dump: the first one, or another one over the same socket
 * that adds to what the earlier ones listed. */
static int socktab_job_send(socktab_job *j)
{
    if (j->fd < 0) {
        j->fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                       NETLINK_SOCK_DIAG);
        if (j->fd < 0)
            return -errno;
        if (!(j->buf = malloc(SOCKTAB_DIAG_BUF)))
            return -ENOMEM;
    }
    j->intr = false;
    j->sent = true;
    return socktab_diag_send(j->s, j->fd, j->seq);
}

/* Whether a complete dump may have left out a listener that matters.  The
 * kernel sends a unix dump in parts and starts each part at an index
 * within a hash chain; a socket closed between two parts ahead of that
 * index (any socket: bound, unbound or connected share the chains) makes
 * the next part start past one never sent, and the kernel does not flag
 * that dump as interrupted.  So a wanted path that stat() found to be a
 * socket and no dump listed is looked for in another dump: over the same
 * netlink socket its parts are sized differently (the kernel sizes all
 * but a first dump's first part to the reader's buffer), so they end
 * elsewhere, and a listener either dump listed did listen.  Without
 * wanted paths, only a dump the kernel flagged is taken again. */
static bool socktab_job_again(const socktab_job *j)
{
    const socktab *s = j->s;

    if (j->seq >= SOCKTAB_DIAG_TRIES)
        return false;
    return s->wanted ? s->unlisted > 0 : j->intr;
}

int socktab_job_step(socktab_job *j)
{
    socktab *s = j->s;
    int rc;

    if (j->done)
        return SOCKTAB_JOB_DONE;
    if (s->wanted && j->next_stat < s->n_want) {
        size_t to = j->next_stat + SOCKTAB_STAT_BATCH;

        if (to > s->n_want)
            to = s->n_want;
        if ((rc = socktab_add_ids(s, j->next_stat, to))) {
            socktab_job_fail(j, rc);
            return SOCKTAB_JOB_DONE;
        }
        j->next_stat = to;
        return SOCKTAB_JOB_AGAIN;
    }
    if (!j->sent && (rc = socktab_job_send(j))) {
        socktab_job_fail(j, rc);
        return SOCKTAB_JOB_DONE;
    }
    rc = socktab_diag_recv(s, j->fd, j->buf, j->seq, &j->intr, SOCKTAB_RECV_PARTS);
    if (rc == SOCKTAB_RECV_WAIT)
        return SOCKTAB_JOB_WAIT;
    if (rc == SOCKTAB_RECV_MORE)
        return SOCKTAB_JOB_AGAIN;
    if (rc < 0) {
        socktab_job_fail(j, rc);
        return SOCKTAB_JOB_DONE;
    }
    if (s->wanted)
        socktab_resolve(s);
    if (socktab_job_again(j)) {
        j->seq++;
        j->sent = false;
        return SOCKTAB_JOB_AGAIN;
    }
    j->done = true;
    return SOCKTAB_JOB_DONE;
}

socktab *socktab_job_take(socktab_job *j)
{
    socktab *s = j->s;

    if (!j->done) {
        errno = EINPROGRESS;
        return NULL;
    }
    j->s = NULL;
    if (!s)
        errno = j->err ? j->err : EIO;
    return s;
}

void socktab_job_free(socktab_job *j)
{
    int saved = errno;

    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    free(j->buf);
    socktab_free(j->s);
    free(j);
    errno = saved;
}

socktab *socktab_listening(const char *const *want, size_t n)
{
    socktab_job *j = socktab_job_new(want, n);
    socktab *s;
    int rc;

    if (!j)
        return NULL;
    while ((rc = socktab_job_step(j)) != SOCKTAB_JOB_DONE) {
        struct pollfd p = { .fd = socktab_job_fd(j), .events = POLLIN };

        if (rc == SOCKTAB_JOB_WAIT && poll(&p, 1, -1) < 0 && errno != EINTR)
            break;
    }
    s = socktab_job_take(j);
    socktab_job_free(j);
    return s;
}

bool socktab_has(const socktab *s, const char *path)
{
    size_t len;

    if (!s || !s->cap)
        return false;
    len = strlen(path);
    return socktab_find(s, path, len, (uint32_t)base_hash(path, len))->listening;
}

int socktab_stat(const socktab *s, const char *path, int *err, bool *is_sock)
{
    const struct socktab_slot *sl;
    const struct socktab_want *w;
    size_t len;

    if (!s || !s->cap)
        return 0;
    len = strlen(path);
    sl = socktab_find(s, path, len, (uint32_t)base_hash(path, len));
    if (!sl->off || !sl->want || (w = &s->wants[sl->want - 1])->stat_err < 0)
        return 0;
    *err = w->stat_err;
    *is_sock = w->is_sock;
    return 1;
}

size_t socktab_count(const socktab *s)
{
    return s ? s->n : 0;
}

void socktab_free(socktab *s)
{
    if (!s)
        return;
    free(s->arena);
    free(s->slots);
    free(s->wants);
    free(s->ids);
    free(s);
}

