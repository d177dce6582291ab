#!/usr/bin/env bash
# tests/adapters/test_install.sh: the adapters as a host gets them from
# `make install install-adapters` under a fresh prefix: each a shared
# library with its soname that exports only cocoon_* symbols, and a host
# built with `cc host.c $(pkg-config --cflags --libs cocoon-glib)` (and
# cocoon-uv) that links them dynamically and completes one operation.
#
# Usage: tests/adapters/test_install.sh   (make test-adapters runs it from
# the top of the tree)
set -euo pipefail

MAKE=${MAKE:-make}
BUILT=${COCOON_BUILD_DIR:-build}
T=$(mktemp -d /tmp/cocoon-install-XXXXXX)
trap 'rm -rf "$T"' EXIT
P=$T/prefix
failures=0
ok()   { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

if ! "$MAKE" --no-print-directory BUILD="$BUILT" PREFIX="$P" install install-adapters \
        > "$T/out" 2>&1; then
    cat "$T/out"
    echo "FAIL: make install install-adapters PREFIX=$P"
    exit 1
fi
export PKG_CONFIG_PATH=$P/lib/pkgconfig

# One list of a socket nobody serves: the callback comes once, with an
# error, from the host's own loop.
cat > "$T/host-glib.c" <<'C'
#include <stdio.h>
#include <cocoon-glib.h>

static void on_listed(cocoon_engine *e, const cocoon_result *r, const cocoon_listing *l,
                      void *priv)
{
    (void)e;
    (void)l;
    *(int *)priv = r->err;
}

int main(void)
{
    GMainContext *ctx = g_main_context_new();
    cocoon_engine *e = cocoon_glib_engine_new(ctx, NULL);
    int err = 1;

    if (!e || cocoon_list(e, "/nonexistent/api.sock", on_listed, &err) != 0)
        return 2;
    while (err == 1)
        g_main_context_iteration(ctx, TRUE);
    cocoon_engine_free(e);
    g_main_context_unref(ctx);
    printf("%s %d\n", cocoon_version(), err);
    return err < 0 ? 0 : 3;
}
C
cat > "$T/host-uv.c" <<'C'
#include <stdio.h>
#include <cocoon-uv.h>

static void on_listed(cocoon_engine *e, const cocoon_result *r, const cocoon_listing *l,
                      void *priv)
{
    (void)e;
    (void)l;
    *(int *)priv = r->err;
}

int main(void)
{
    uv_loop_t loop;
    cocoon_engine *e;
    int err = 1;

    if (uv_loop_init(&loop) != 0 || !(e = cocoon_uv_engine_new(&loop, NULL)) ||
        cocoon_list(e, "/nonexistent/api.sock", on_listed, &err) != 0)
        return 2;
    uv_run(&loop, UV_RUN_DEFAULT);
    cocoon_engine_free(e);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        return 4;
    printf("%s %d\n", cocoon_version(), err);
    return err < 0 ? 0 : 3;
}
C

others() { awk 'NF == 3 && $2 ~ /^[A-TV-Z]$/ && $3 !~ /^cocoon_/ {print $3}'; }
for a in glib uv; do
    so=$(cd "$P/lib" && ls "libcocoon-$a.so."* 2> /dev/null | head -n 1)
    if [ -n "$so" ] && [ -L "$P/lib/libcocoon-$a.so" ] && [ -f "$P/lib/libcocoon-$a.a" ] &&
            readelf -d "$P/lib/$so" | grep -q "SONAME.*\[$so\]" &&
            [ -z "$(nm -D --defined-only "$P/lib/$so" | others)" ]; then
        ok "installed $so (soname $so, only cocoon_* exported), libcocoon-$a.a"
    else
        fail "libcocoon-$a: shared library ${so:-missing}, soname or exports wrong"
        continue
    fi
    # shellcheck disable=SC2046
    if ! cc -Wall -Werror -o "$T/host-$a" "$T/host-$a.c" \
            $(pkg-config --cflags --libs "cocoon-$a") > "$T/out" 2>&1; then
        cat "$T/out"
        fail "cc host.c \$(pkg-config --cflags --libs cocoon-$a)"
        continue
    fi
    if readelf -d "$T/host-$a" | grep NEEDED | grep -q "\[$so\]" &&
            out=$(LD_LIBRARY_PATH=$P/lib "$T/host-$a") &&
            LD_LIBRARY_PATH=$P/lib ldd "$T/host-$a" | grep -q "$P/lib/libcocoon.so"; then
        ok "cc host.c \$(pkg-config --cflags --libs cocoon-$a): runs on $so ($out)"
    else
        fail "host on cocoon-$a: not linked to $so or failed (${out:-})"
    fi
done
[ "$failures" -eq 0 ]
