#include "backends/listening.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* procfs makes no files under /proc/self on request, so this path never
 * exists. */
#define LISTENING_NOWHERE "/proc/self/cocoon-listening-probe"

int listening_probe_open(void)
{
    int sv[2], rc;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    /* The peer's close leaves this end connected, and one fd is all a
     * probe needs. */
    close(sv[1]);
    rc = listening_probe(sv[0], LISTENING_NOWHERE);
    if (rc != -ENOENT) {
        close(sv[0]);
        return rc == 0 ? -EPROTO : rc;
    }
    return sv[0];
}

int listening_probe(int fd, const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t len = strlen(path);

    if (len == 0)
        return -ENOENT;
    if (len >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, len + 1);
    for (;;) {
        if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) == 0)
            return -EPROTO;     /* a connected socket cannot connect again */
        if (errno == EISCONN || errno == EAGAIN)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}
