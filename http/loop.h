/* http/loop.h: the library's own event loop, which every part of it runs
 * on and which no host needs to know about.  Its I/O watchers live in one
 * epoll fd and its timers in a queue and a heap, so a host of any kind drives it
 * with one fd to watch for reading, one deadline and one call
 * (lp_process).  The calls mirror libev's (start, stop, set, again, ref,
 * unref) so the code on top reads the same.  One thread only. */
#ifndef COCOON_HTTP_LOOP_H
#define COCOON_HTTP_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/queue.h>

typedef struct lp_loop lp_loop;

#define LP_READ  0x01
#define LP_WRITE 0x02

/* active last, so that a watcher's own small fields fill the padding
 * after it: a thousand connections hold three watchers each. */
#define LP_WATCHER_HEAD(type)                                                     \
    void *data;                                                                   \
    void (*cb)(lp_loop *l, struct type *w, int revents);                          \
    bool active

typedef struct lp_timer {
    LP_WATCHER_HEAD(lp_timer);
    bool queued;                /* in the loop's deadline-ordered queue */
    bool pending;               /* expired, callback not yet run */
    unsigned hidx;              /* 1-based heap slot; 0 when not in the heap */
    double at, after, repeat;   /* at: monotonic seconds */
    TAILQ_ENTRY(lp_timer) plink;    /* the queue or the pending list */
} lp_timer;

typedef struct lp_io {
    LP_WATCHER_HEAD(lp_io);
    unsigned char events;       /* LP_READ | LP_WRITE */
    int fd;
} lp_io;

typedef void lp_timer_fn(lp_loop *l, lp_timer *w, int revents);
typedef void lp_io_fn(lp_loop *l, lp_io *w, int revents);

#define lp_is_active(w) ((w)->active)
#define lp_set_cb(w, fn) ((w)->cb = (fn))
#define lp_init(w, fn)                                                            \
    do {                                                                          \
        (w)->active = false;                                                      \
        (w)->cb = (fn);                                                           \
    } while (0)

void lp_timer_init(lp_timer *w, lp_timer_fn *cb, double after, double repeat);
void lp_timer_set(lp_timer *w, double after, double repeat);
void lp_timer_start(lp_loop *l, lp_timer *w);
void lp_timer_stop(lp_loop *l, lp_timer *w);
/* Restarts w to fire after its repeat value (stops it when that is 0). */
void lp_timer_again(lp_loop *l, lp_timer *w);

void lp_io_init(lp_io *w, lp_io_fn *cb, int fd, int events);
void lp_io_set(lp_io *w, int fd, int events);
/* -errno from epoll_ctl, which the callers treat like a failed socket. */
int lp_io_start(lp_loop *l, lp_io *w);
void lp_io_stop(lp_loop *l, lp_io *w);

/* An active watcher keeps the loop busy unless unref'd (an idle
 * connection that only listens for the peer's close); lp_ref undoes one
 * lp_unref, as in libev. */
void lp_ref(lp_loop *l);
void lp_unref(lp_loop *l);

/* NULL with errno set. */
lp_loop *lp_new(void);
/* Every watcher must be stopped. */
void lp_free(lp_loop *l);
/* One block the loop's users may park between uses, so that memory needed
 * only while something is under way (a reply being read) is not held by
 * each of a thousand idle owners nor allocated anew each time.  take
 * returns the parked block (NULL if none); put parks p and returns NULL,
 * or returns p when a block is parked already (the caller frees it).
 * lp_free releases a parked block with the release function given when
 * it was parked. */
void *lp_spare_take(lp_loop *l);
void *lp_spare_put(lp_loop *l, void *p, void (*release)(void *p));

/* Readable when lp_process has I/O to handle. */
int lp_fd(const lp_loop *l);
/* Milliseconds until the next timer (0: now, -1: none). */
int lp_timeout_ms(const lp_loop *l);
/* True while a referenced watcher is active. */
bool lp_busy(const lp_loop *l);
/* Counts lp_process calls. */
unsigned lp_iteration(const lp_loop *l);

/* Handles at most a bounded batch of ready I/O and the timers due now,
 * never blocking; returns 1 when work was done, 0 when none was.  A
 * callback may stop or free any watcher, and may call lp_process again (a
 * nested iteration); lp_break makes every running lp_process return after
 * the current callback. */
int lp_process(lp_loop *l);
void lp_break(lp_loop *l);
/* Waits at most timeout_ms (-1: until something is due) for the fd or the
 * next timer, then lp_process.  For the library's blocking helpers. */
int lp_run_once(lp_loop *l, int timeout_ms);

/* fn is called whenever the next deadline or the busy state may have
 * changed: at once when that happens outside lp_process, once at its end
 * otherwise.  Without fn, a change outside lp_process makes the fd
 * readable, so a host that polls it wakes up. */
void lp_set_notify(lp_loop *l, void (*fn)(void *data), void *data);

#endif
