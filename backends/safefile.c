#include "backends/safefile.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http/base.h"

#define SAFEFILE_PIDFILE_MAX 64

int safefile_random_name(char *out, size_t n)
{
    static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    unsigned char *rnd = (unsigned char *)out;
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(rnd + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)r;
    }
    /* 256 is a multiple of 32, so taking the low five bits is unbiased. */
    for (size_t i = 0; i < n; i++)
        out[i] = b32[rnd[i] & 31];
    return 0;
}

/* mkdir -p of every ancestor of path (not path itself).  Ancestors such as
 * <root> and <root>/run are not secret; only the leaf gets 0700. */
static int safefile_mkparents(const char *path, char *err, size_t errlen)
{
    char *p = strdup(path);
    if (!p)
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST) {
            int e = errno;
            base_errf(err, errlen, -e, "mkdir %s: %s", p, strerror(e));
            free(p);
            return -e;
        }
        *s = '/';
    }
    free(p);
    return 0;
}

int safefile_mkdir_private(const char *path, char *err, size_t errlen)
{
    int rc;
    if (!path || !*path)
        return base_errf(err, errlen, -EINVAL, "empty directory path");
    if ((rc = safefile_mkparents(path, err, errlen)))
        return rc;
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        int e = errno;
        return base_errf(err, errlen, -e, "mkdir %s: %s", path, strerror(e));
    }
    /* Whether we just made it or it was there, inspect it through a
     * descriptor opened without following links: a symlink planted at the
     * path is refused, and a mode fix through the fd cannot be redirected. */
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        struct stat lst;
        if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode))
            return base_errf(err, errlen, -ELOOP, "%s is a symlink", path);
        return base_errf(err, errlen, -e, "open %s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return base_errf(err, errlen, -e, "stat %s: %s", path, strerror(e));
    }
    if (st.st_uid != geteuid()) {
        close(fd);
        return base_errf(err, errlen, -EPERM, "%s is owned by uid %u, not %u", path,
                         (unsigned)st.st_uid, (unsigned)geteuid());
    }
    /* A restrictive umask can strip our own bits and a pre-existing dir may
     * be too open; either way the fd is the dir we vetted. */
    if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0) {
        int e = errno;
        close(fd);
        return base_errf(err, errlen, -e, "chmod %s: %s", path, strerror(e));
    }
    close(fd);
    return 0;
}

static int safefile_write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Atomically replaces dirfd/name with buf: temp file, fsync, rename, fsync
 * of the directory so the rename itself survives a crash. */
int safefile_replace_at(int dirfd, const char *dir, const char *name, const char *tmp_prefix,
                        const char *buf, size_t len, char *err, size_t errlen)
{
    char tmp[256], rnd[9];
    for (int attempt = 0;; attempt++) {
        int rc = safefile_random_name(rnd, 8);
        if (rc)
            return base_errf(err, errlen, rc, "getrandom: %s", strerror(-rc));
        rnd[8] = '\0';
        snprintf(tmp, sizeof tmp, "%s%s", tmp_prefix, rnd);
        int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            int e = errno;
            if (e == EEXIST && attempt < 8)
                continue;
            return base_errf(err, errlen, -e, "create %s/%s: %s", dir, tmp, strerror(e));
        }
        /* The file is ours and fresh: fixing its mode by fd is race-free
         * and makes the result independent of the umask. */
        const char *step = "chmod";
        int e = 0;
        if (fchmod(fd, 0600) < 0)
            e = errno;
        else if ((e = -safefile_write_all(fd, buf, len)) != 0)
            step = "write";
        else if (fsync(fd) < 0)
            e = errno, step = "fsync";
        if (close(fd) < 0 && !e)
            e = errno, step = "close";
        if (!e && renameat(dirfd, tmp, dirfd, name) < 0)
            e = errno, step = "rename";
        if (e) {
            unlinkat(dirfd, tmp, 0);
            return base_errf(err, errlen, -e, "%s %s/%s: %s", step, dir, tmp, strerror(e));
        }
        if (fsync(dirfd) < 0) {
            e = errno;
            return base_errf(err, errlen, -e, "fsync %s: %s", dir, strerror(e));
        }
        return 0;
    }
}

int safefile_read_fd(int fd, const char *path, size_t max, char **out, size_t *out_len,
                     char *err, size_t errlen)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return base_errf(err, errlen, -ENOMEM, "read %s: out of memory", path);
    for (;;) {
        if (len == cap) {
            if (cap >= max) {
                free(buf);
                return base_errf(err, errlen, -EFBIG, "%s: larger than %zu bytes", path, max);
            }
            char *g = realloc(buf, cap * 2);
            if (!g) {
                free(buf);
                return base_errf(err, errlen, -ENOMEM, "read %s: out of memory", path);
            }
            buf = g;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            free(buf);
            return base_errf(err, errlen, -e, "read %s: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

/* ---- pidfiles --------------------------------------------------------- */

static int safefile_split_path(const char *path, char **dir, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        *dir = strdup(".");
        *base = path;
    } else {
        *dir = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
        *base = slash + 1;
    }
    return *dir ? 0 : -ENOMEM;
}

int safefile_pidfile_write(const char *path, pid_t pid, char *err, size_t errlen)
{
    char *dir;
    const char *base;
    char body[32], prefix[128];
    if (pid <= 0)
        return base_errf(err, errlen, -EINVAL, "write pidfile %s: invalid pid %ld", path,
                         (long)pid);
    if (safefile_split_path(path, &dir, &base))
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    if (!*base || strlen(base) > 64) {
        free(dir);
        return base_errf(err, errlen, -EINVAL, "write pidfile %s: bad file name", path);
    }
    /* The run dir must be the real directory, not a link planted in its
     * place: the temp file and the rename go through this fd. */
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dirfd < 0) {
        int e = errno;
        base_errf(err, errlen, -e, "open %s: %s", dir, strerror(e));
        free(dir);
        return -e;
    }
    int n = snprintf(body, sizeof body, "%ld\n", (long)pid);
    snprintf(prefix, sizeof prefix, ".%s.tmp.", base);
    int rc = safefile_replace_at(dirfd, dir, base, prefix, body, (size_t)n, err, errlen);
    close(dirfd);
    free(dir);
    return rc;
}

/* Who may have written what st describes: root or this user (asked
 * second: for a tool run as root, root owns what it checks, and the
 * question costs a system call each time). */
static bool safefile_trusted_owner(const struct stat *st)
{
    return st->st_uid == 0 || st->st_uid == geteuid();
}

/* What st (of path) describes belongs to this user or root, and so does
 * its directory, which no other user can write: another user who can
 * write the directory can swap the file for one of their own between two
 * uses.  A sticky directory (like /tmp) lets nobody replace another's
 * file.  what names the operation in errors. */
static int safefile_trusted_place(const char *what, const char *path, const struct stat *st,
                                  char *err, size_t errlen)
{
    struct stat dst;
    char *dir;

    if (!safefile_trusted_owner(st))
        return base_errf(err, errlen, -EPERM, "%s %s: owned by uid %u, not this user or root",
                         what, path, (unsigned)st->st_uid);
    dir = strdup(path);
    if (!dir)
        return base_errf(err, errlen, -ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    int rc = stat(slash ? dir : ".", &dst);
    free(dir);
    if (rc < 0 || !safefile_trusted_owner(&dst) ||
        ((dst.st_mode & (S_IWGRP | S_IWOTH)) && !(dst.st_mode & S_ISVTX)))
        return base_errf(err, errlen, -EPERM, "%s %s: directory writable by other users", what,
                         path);
    return 0;
}

int safefile_open(const char *path, int flags, mode_t mode, char *err, size_t errlen)
{
    struct stat st;
    int fd = open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode);
    if (fd < 0) {
        int e = errno;
        return base_errf(err, errlen, -e, "open %s: %s", path, strerror(e));
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return base_errf(err, errlen, -EINVAL, "open %s: not a regular file", path);
    }
    int rc = safefile_trusted_place("open", path, &st, err, errlen);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int safefile_check_socket(const char *path, char *err, size_t errlen)
{
    struct stat st;

    if (lstat(path, &st) < 0) {
        int e = errno;
        return base_errf(err, errlen, -e, "socket %s: %s", path, strerror(e));
    }
    if (!S_ISSOCK(st.st_mode))
        return base_errf(err, errlen, -EINVAL, "socket %s: %s", path,
                         S_ISLNK(st.st_mode) ? "a symlink, not a socket" : "not a socket");
    return safefile_trusted_place("socket", path, &st, err, errlen);
}

int safefile_pidfile_read(const char *path, pid_t *pid, char *err, size_t errlen)
{
    char buf[SAFEFILE_PIDFILE_MAX + 1];
    char q[2 * SAFEFILE_PIDFILE_MAX + 8];
    size_t len = 0;
    int fd = safefile_open(path, O_RDONLY, 0, err, errlen);
    if (fd < 0)
        return fd;
    /* A regular file (safefile_open checked) reads short only at its end,
     * so a short read needs no second read to see the end. */
    for (;;) {
        size_t want = sizeof buf - len;
        ssize_t r = read(fd, buf + len, want);
        if (r < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            close(fd);
            return base_errf(err, errlen, -e, "read %s: %s", path, strerror(e));
        }
        len += (size_t)r;
        if (len == sizeof buf) {
            close(fd);
            return base_errf(err, errlen, -EINVAL, "parse PID from %s: file too large", path);
        }
        if ((size_t)r < want)
            break;
    }
    close(fd);
    buf[len] = '\0';
    if (memchr(buf, '\0', len))
        return base_errf(err, errlen, -EINVAL, "parse PID from %s: NUL byte in file", path);
    char *s = buf;
    while (*s && isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    if (!*s)
        return base_errf(err, errlen, -EINVAL, "parse PID from %s: empty file", path);
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    bool digits = *p != '\0';
    for (; *p; p++)
        if (*p < '0' || *p > '9')
            digits = false;
    if (!digits)
        return base_errf(err, errlen, -EINVAL, "parse PID from %s: invalid syntax %s", path,
                         base_quote(q, sizeof q, s));
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE || v <= 0 || v > INT_MAX)
        return base_errf(err, errlen, -ERANGE, "parse PID from %s: pid %s out of range", path,
                         s);
    *pid = (pid_t)v;
    return 0;
}
