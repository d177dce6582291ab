/* tests/support/support.h: helpers shared by the test binaries: temporary
 * directories, starting chsim and other programs, raw socket exchanges and
 * chsim's request counters.  Test-only code; failures abort the test. */
#ifndef COCOON_TESTS_SUPPORT_H
#define COCOON_TESTS_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* base_mono_ns in milliseconds. */
long long sup_now_ms(void);
/* base_mono_ns in microseconds. */
long long sup_now_us(void);

/* vasprintf that never returns NULL: aborts the test when out of memory.
 * Owned (free()). */
char *sup_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Open descriptors of this process (entries of /proc/self/fd, including
 * the one used to list them), or -1. */
int sup_count_fds(void);

/* True when $name is set, non-empty and not "0". */
bool sup_env_on(const char *name);

/* "/sys/bus/pci/devices/<first entry>" in buf, returned; NULL (buf empty)
 * when the host lists no PCI device. */
const char *sup_first_pci(char *buf, size_t n);

/* "<build>/<name>" where build is $COCOON_BUILD_DIR, else "build"; owned
 * (free()), never NULL. */
char *sup_build_path(const char *name);

/* mkdtemp("/tmp/cocoon-test-XXXXXX"), owned; sup_rmrf removes the tree. */
char *sup_tmpdir(void);
void sup_rmrf(const char *path);

/* fork+execv argv (argv[0] is the path); stdout/stderr to /dev/null unless
 * $SUP_VERBOSE is set.  Returns the pid. */
pid_t sup_spawn(char *const argv[]);
/* SIGTERM, then SIGKILL after 2 s; reaps.  Returns the wait status. */
int sup_kill(pid_t pid);

/* A fresh AF_UNIX stream socket bound at path (an old file there is
 * removed first), listening when do_listen.  Aborts the test on failure. */
int sup_unix_bind(const char *path, bool do_listen);
/* The pid listening on the unix socket at path (the kernel's credentials
 * of the listener, through a connection that sends nothing); 0 when
 * nothing listens, -1 when the check cannot be made. */
pid_t sup_listener_pid(const char *path);

/* Polls until a connect() to path succeeds or timeout_ms passes: 0 / -1. */
int sup_wait_socket(const char *path, int timeout_ms);

/* Starts build/chsim serving sock ("--api-socket path=<sock>", plus
 * "--kernel /dev/null" so the VM is Running, plus extra, NULL-terminated,
 * may be NULL) and waits for the socket.  Returns the pid. */
pid_t sup_chsim_start(const char *sock, const char *const extra[]);

/* Sends req (raw bytes) on a fresh connection and reads until the peer
 * closes, resp is full or timeout_ms passes.  Returns bytes read (resp is
 * NUL-terminated) or -1. */
ssize_t sup_raw_exchange(const char *sock, const char *req, size_t req_len,
                         char *resp, size_t resp_size, int timeout_ms);

/* chsim's counter for endpoint (e.g. "vm.add-fs") from GET /chsim/stats on
 * sock; -1 on error. */
int sup_chsim_count(const char *sock, const char *endpoint);

/* Sets a fault on chsim's endpoint through PUT /chsim/fault (count 0:
 * every request).  0 when chsim answered 2xx, else -1. */
int sup_chsim_fault(const char *sock, const char *endpoint, const char *mode, int count);

/* Runs argv to completion with a timeout, capturing stdout and stderr
 * (owned, NUL-terminated).  Returns the exit status (0-255), 128+sig when
 * killed, or -1. */
int sup_run(char *const argv[], const char *stdin_data, char **out, char **err,
            int timeout_ms);

/* Drives the library's own loop l from the libev loop ev (an ev_io on
 * its fd, an ev_timer for its deadline, re-armed before every libev
 * wait), for tests that run a libev server next to a client on l.  The
 * watchers are referenced; free before either loop. */
struct ev_loop;
typedef struct lp_loop lp_loop;
typedef struct sup_lpev sup_lpev;
sup_lpev *sup_lpev_new(struct ev_loop *ev, lp_loop *l);
void sup_lpev_free(sup_lpev *b);

#endif
