/* http/loop.c: one epoll fd for I/O, a queue and a binary heap for timers,
 * an eventfd that makes the epoll fd readable when work is queued from
 * outside. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "http/base.h"
#include "http/loop.h"

/* Ready fds handled per lp_process: the rest stay ready (level-triggered)
 * for the next call, so one call never holds the host for long. */
#define LP_BATCH 64

TAILQ_HEAD(lp_timer_q, lp_timer);

/* One lp_process call's batch of ready fds.  A callback may run a nested
 * lp_process (a host iterating its loop inside a callback), so batches
 * stack. */
struct lp_frame {
    struct epoll_event evs[LP_BATCH];
    int nev, cur;               /* evs[cur+1..nev) are still to run */
    struct lp_frame *up;
};

struct lp_loop {
    int epfd, wakefd;
    bool woken;                 /* wakefd written, not yet drained */
    lp_timer **heap;            /* heap[1..n] */
    size_t n, cap;
    struct lp_timer_q queue;    /* timers in order of their deadlines */
    struct lp_timer_q pending;
    int refs;                   /* active watchers minus unrefs */
    unsigned iter;
    int depth;                  /* nested lp_process calls */
    bool brk;
    struct lp_frame *frames;
    void (*notify)(void *data);
    void *notify_data;
    void *spare;                /* lp_spare_put */
    void (*spare_release)(void *p);
};

static double lp_now(void)
{
    return (double)base_mono_ns() / 1e9;
}

/* Tells the host the deadline or the busy state may have changed.  A host
 * without a notify function re-reads them after each lp_process, so only
 * a change from outside lp_process (a submit) needs the wake fd. */
static void lp_tell(lp_loop *l)
{
    if (l->notify) {
        l->notify(l->notify_data);
    } else if (!l->woken) {
        uint64_t one = 1;

        if (write(l->wakefd, &one, sizeof(one)) == (ssize_t)sizeof(one))
            l->woken = true;
    }
}

/* Inside lp_process the change is told once, at its end. */
static void lp_changed(lp_loop *l)
{
    if (!l->depth)
        lp_tell(l);
}

static void heap_swap(lp_loop *l, size_t a, size_t b)
{
    lp_timer *t = l->heap[a];

    l->heap[a] = l->heap[b];
    l->heap[b] = t;
    l->heap[a]->hidx = (unsigned)a;
    l->heap[b]->hidx = (unsigned)b;
}

static void heap_up(lp_loop *l, size_t i)
{
    while (i > 1 && l->heap[i / 2]->at > l->heap[i]->at) {
        heap_swap(l, i, i / 2);
        i /= 2;
    }
}

static void heap_down(lp_loop *l, size_t i)
{
    for (;;) {
        size_t m = i, c = 2 * i;

        if (c <= l->n && l->heap[c]->at < l->heap[m]->at)
            m = c;
        if (c + 1 <= l->n && l->heap[c + 1]->at < l->heap[m]->at)
            m = c + 1;
        if (m == i)
            return;
        heap_swap(l, i, m);
        i = m;
    }
}

static void heap_remove(lp_loop *l, lp_timer *w)
{
    size_t i = w->hidx;

    w->hidx = 0;
    if (i != l->n) {
        l->heap[i] = l->heap[l->n];
        l->heap[i]->hidx = (unsigned)i;
        l->n--;
        heap_up(l, i);
        heap_down(l, i);
    } else {
        l->n--;
    }
}

static bool heap_insert(lp_loop *l, lp_timer *w)
{
    if (l->n + 1 >= UINT_MAX)
        return false;
    if (l->n + 1 >= l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        lp_timer **h = realloc(l->heap, cap * sizeof(*h));

        if (!h)
            return false;
        l->heap = h;
        l->cap = cap;
    }
    l->heap[++l->n] = w;
    w->hidx = (unsigned)l->n;
    heap_up(l, l->n);
    return true;
}

void lp_timer_init(lp_timer *w, lp_timer_fn *cb, double after, double repeat)
{
    lp_init(w, cb);
    w->hidx = 0;
    w->queued = w->pending = false;
    lp_timer_set(w, after, repeat);
}

void lp_timer_set(lp_timer *w, double after, double repeat)
{
    w->after = after;
    w->repeat = repeat;
}

/* A timer due no earlier than the queue's last joins the queue: request
 * timeouts, all of one length and started as the requests go out, arrive
 * in deadline order, so each of a thousand in flight costs a constant
 * time to start and to stop where the heap would sift it through its
 * levels.  The rest (a zero delay behind a timeout, a retry backoff) go
 * to the heap. */
static void timer_arm(lp_loop *l, lp_timer *w, double after)
{
    lp_timer *last = TAILQ_LAST(&l->queue, lp_timer_q);

    w->at = lp_now() + (after > 0 ? after : 0.);
    if (!last || last->at <= w->at) {
        w->queued = true;
        TAILQ_INSERT_TAIL(&l->queue, w, plink);
    } else if (!heap_insert(l, w)) {
        /* Out of memory for the heap: run it as soon as possible from the
         * pending list instead of losing it. */
        w->pending = true;
        TAILQ_INSERT_TAIL(&l->pending, w, plink);
    }
}

/* Takes w out of the heap or the queue. */
static void timer_unarm(lp_loop *l, lp_timer *w)
{
    if (w->hidx)
        heap_remove(l, w);
    if (w->queued) {
        TAILQ_REMOVE(&l->queue, w, plink);
        w->queued = false;
    }
}

/* The armed timer due first, or NULL. */
static lp_timer *timer_first(const lp_loop *l)
{
    lp_timer *q = TAILQ_FIRST(&l->queue);

    if (l->n && (!q || l->heap[1]->at < q->at))
        return l->heap[1];
    return q;
}

void lp_timer_start(lp_loop *l, lp_timer *w)
{
    if (w->active)
        return;
    w->active = true;
    l->refs++;
    timer_arm(l, w, w->after);
    lp_changed(l);
}

void lp_timer_stop(lp_loop *l, lp_timer *w)
{
    if (!w->active)
        return;
    timer_unarm(l, w);
    if (w->pending) {
        TAILQ_REMOVE(&l->pending, w, plink);
        w->pending = false;
    }
    w->active = false;
    l->refs--;
    lp_changed(l);
}

void lp_timer_again(lp_loop *l, lp_timer *w)
{
    lp_timer_stop(l, w);
    if (w->repeat > 0) {
        w->after = w->repeat;
        lp_timer_start(l, w);
    }
}

void lp_io_init(lp_io *w, lp_io_fn *cb, int fd, int events)
{
    lp_init(w, cb);
    lp_io_set(w, fd, events);
}

void lp_io_set(lp_io *w, int fd, int events)
{
    w->fd = fd;
    w->events = (unsigned char)events;
}

int lp_io_start(lp_loop *l, lp_io *w)
{
    struct epoll_event ev = { .data.ptr = w };

    if (w->active)
        return 0;
    ev.events = ((w->events & LP_READ) ? EPOLLIN : 0u) | ((w->events & LP_WRITE) ? EPOLLOUT : 0u);
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, w->fd, &ev) < 0)
        return -errno;
    w->active = true;
    l->refs++;
    lp_changed(l);
    return 0;
}

void lp_io_stop(lp_loop *l, lp_io *w)
{
    if (!w->active)
        return;
    (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    for (struct lp_frame *f = l->frames; f; f = f->up)
        for (int i = f->cur + 1; i < f->nev; i++)
            if (f->evs[i].data.ptr == w)
                f->evs[i].data.ptr = NULL;
    w->active = false;
    l->refs--;
    lp_changed(l);
}

void lp_ref(lp_loop *l)
{
    l->refs++;
    lp_changed(l);
}

void lp_unref(lp_loop *l)
{
    l->refs--;
    lp_changed(l);
}

lp_loop *lp_new(void)
{
    lp_loop *l = calloc(1, sizeof(*l));
    struct epoll_event ev = { .events = EPOLLIN };

    if (!l)
        return NULL;
    TAILQ_INIT(&l->queue);
    TAILQ_INIT(&l->pending);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ev.data.ptr = l;    /* the wake fd's mark; NULL marks a stopped watcher */
    if (l->epfd < 0 || l->wakefd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) < 0) {
        int err = errno;

        if (l->epfd >= 0)
            close(l->epfd);
        if (l->wakefd >= 0)
            close(l->wakefd);
        free(l);
        errno = err;
        return NULL;
    }
    return l;
}

void lp_free(lp_loop *l)
{
    if (!l)
        return;
    close(l->epfd);
    close(l->wakefd);
    free(l->heap);
    if (l->spare)
        l->spare_release(l->spare);
    free(l);
}

void *lp_spare_take(lp_loop *l)
{
    void *p = l->spare;

    l->spare = NULL;
    return p;
}

void *lp_spare_put(lp_loop *l, void *p, void (*release)(void *p))
{
    if (l->spare)
        return p;
    l->spare = p;
    l->spare_release = release;
    return NULL;
}

int lp_fd(const lp_loop *l)
{
    return l->epfd;
}

int lp_timeout_ms(const lp_loop *l)
{
    const lp_timer *first = timer_first(l);
    double left;

    if (!TAILQ_EMPTY(&l->pending) || l->woken)
        return 0;
    if (!first)
        return -1;
    left = first->at - lp_now();
    if (left <= 0)
        return 0;
    /* Rounded up: waking a little late is harmless, early means a
     * wake-up with nothing to do. */
    return left * 1000.0 > (double)(INT32_MAX - 1) ? INT32_MAX : (int)(left * 1000.0) + 1;
}

bool lp_busy(const lp_loop *l)
{
    return l->refs > 0;
}

unsigned lp_iteration(const lp_loop *l)
{
    return l->iter;
}

void lp_break(lp_loop *l)
{
    l->brk = true;
}

static void lp_drain_wake(lp_loop *l)
{
    uint64_t v;

    if (read(l->wakefd, &v, sizeof(v)) < 0) {
        /* EAGAIN: nothing was written; nothing else can fail here. */
    }
    l->woken = false;
}

static bool lp_run_io(lp_loop *l)
{
    struct lp_frame f = { .up = l->frames };
    int n = epoll_wait(l->epfd, f.evs, LP_BATCH, 0);

    if (n <= 0)
        return false;
    f.nev = n;
    l->frames = &f;
    for (f.cur = 0; f.cur < f.nev && !l->brk; f.cur++) {
        struct epoll_event *ev = &f.evs[f.cur];
        lp_io *w = ev->data.ptr;
        int revents = 0;

        if ((void *)w == (void *)l) {
            lp_drain_wake(l);
            continue;
        }
        if (!w)
            continue;
        if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            revents |= LP_READ;
        if (ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            revents |= LP_WRITE;
        revents &= w->events;
        if (revents)
            w->cb(l, w, revents);
    }
    l->frames = f.up;
    return true;
}

static bool lp_run_timers(lp_loop *l)
{
    double now = lp_now();
    bool any = false;
    lp_timer *w;

    while ((w = timer_first(l)) && w->at <= now) {
        timer_unarm(l, w);
        w->pending = true;
        TAILQ_INSERT_TAIL(&l->pending, w, plink);
    }
    /* Timers started by these callbacks are armed, not pending, so a zero-delay
     * timer restarted by its own callback runs on the next call. */
    while (!l->brk && (w = TAILQ_FIRST(&l->pending))) {
        TAILQ_REMOVE(&l->pending, w, plink);
        w->pending = false;
        w->active = false;
        l->refs--;
        if (w->repeat > 0) {
            w->after = w->repeat;
            lp_timer_start(l, w);
        }
        any = true;
        w->cb(l, w, 0);
    }
    return any;
}

int lp_process(lp_loop *l)
{
    bool any;

    if (l->depth++ == 0)
        l->brk = false;
    l->iter++;
    any = lp_run_io(l);
    if (!l->brk)
        any |= lp_run_timers(l);
    l->depth--;
    if (l->depth == 0)
        l->brk = false;
    /* Expired timers alone change the deadline and the busy state, so
     * the host hears about it after every call. */
    if (l->notify)
        l->notify(l->notify_data);
    return any ? 1 : 0;
}

int lp_run_once(lp_loop *l, int timeout_ms)
{
    struct epoll_event ev;
    int t = lp_timeout_ms(l);

    if (t < 0 || (timeout_ms >= 0 && timeout_ms < t))
        t = timeout_ms;
    if (t != 0 && epoll_wait(l->epfd, &ev, 1, t) < 0 && errno != EINTR)
        return -errno;
    return lp_process(l);
}

void lp_set_notify(lp_loop *l, void (*fn)(void *data), void *data)
{
    l->notify = fn;
    l->notify_data = data;
}
