/* tests/support/hostloop.h: the scenarios every loop adapter is tested
 * with, against chsim, written once over a small description of the host
 * loop (libev, GLib, libuv, plain poll).  Test-only code; failures abort
 * the test. */
#ifndef COCOON_TESTS_HOSTLOOP_H
#define COCOON_TESTS_HOSTLOOP_H

#include "engine/cocoon.h"

/* One host loop kind.  The host measures itself: hl_busy_begin when its
 * loop wakes from its wait, hl_busy_end when it goes back to waiting, and
 * its own 10 ms repeating timer calls hl_tick. */
typedef struct hl_host hl_host;
typedef struct hl_ops {
    const char *name;
    /* A new loop with an engine on it (opt copied by the engine). */
    hl_host *(*create)(const cocoon_options *opt, cocoon_engine **e);
    /* Starts (on) or stops the host's own 10 ms repeating timer. */
    void (*tick)(hl_host *h, bool on);
    /* One blocking iteration of the host's loop. */
    void (*run_once)(hl_host *h);
    /* Frees the loop; the engine is gone already. */
    void (*destroy)(hl_host *h);
} hl_ops;

/* Called by the host. */
void hl_busy_begin(void);
void hl_busy_end(void);
/* Or, for a host that measures a turn itself: it was awake us. */
void hl_busy_add(long long us);
void hl_tick(void);
/* True once a scenario freed the engine inside a callback: a host that
 * calls the engine itself (plain poll) must stop. */
bool hl_engine_gone(void);

/* A README example's list_one against one chsim VM: 0, one vm.info. */
void hl_list_one(int (*list_one)(const char *vm));
/* n VMs of a chsim fleet, one fs attach each: every callback comes exactly
 * once and succeeds; prints the worst gap of the host's 10 ms timer and
 * the longest stretch the loop spent awake. */
void hl_fleet(const hl_ops *ops, int n);
/* A request to a socket that never answers times out after timeout_ms
 * on a host with nothing else to do. */
void hl_idle_timeout(const hl_ops *ops);
/* The engine freed inside a callback: the other pending operation ends
 * -ECANCELED, once, and the loop runs on with nothing of the engine. */
void hl_free_in_callback(const hl_ops *ops);

#endif
