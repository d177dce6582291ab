#!/usr/bin/env bash
# tests/test_build.sh: the build as a new user meets it.
#
# A throw-away copy of the tree is built with llhttp's directory pointed at
# a place that is empty until the install step runs (a stand-in for apt-get
# copies the sources there), which is what a machine without node-llhttp
# looks like: the first `make` must build everything in one go.  Also: a
# failed install names the package and leaves nothing under the build
# tree; without root it stops with the command to run; each goal installs
# only what it needs; a second make rebuilds nothing; CPPFLAGS is honoured
# and CFLAGS cannot drop the warnings; `make clean` honours BUILD; the
# version has one source; the library exports only cocoon_* symbols.
#
# Usage: tests/test_build.sh   (make test runs it from the top of the tree)
set -euo pipefail

MAKE=${MAKE:-make}
# The copies below are built as a user would: nothing inherited from the
# make that runs this script (BUILD=..., SAN=... would leak in otherwise).
unset MAKEFLAGS MFLAGS MAKEOVERRIDES MAKELEVEL BUILD SAN TEST_WRAP WERROR CPPFLAGS LLHTTP_DIR APT_GET VIRTIOFSD
SRC=$(pwd)
BUILT=${COCOON_BUILD_DIR:-build}
T=$(mktemp -d /tmp/cocoon-build-XXXXXX)
trap 'rm -rf "$T"' EXIT
chmod 755 "$T"
failures=0

passes=0
ok()   { echo "ok: $*"; passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
has()  { grep -q -- "$2" "$1" || { echo "--- $1:"; cat "$1"; return 1; }; }

# The tree without build products or history (git may not be installed).
mkdir "$T/src"
tar -C "$SRC" --exclude=./build --exclude="./$BUILT" --exclude=./.git \
    --exclude=./bench/out -cf - . | tar -C "$T/src" -xf -
chmod -R a+rX "$T/src"

# apt-get stand-ins: one that fails as with no mirror, one that "installs"
# node-llhttp by copying its sources into the directory the build reads.
mkdir "$T/bin"
cat > "$T/bin/apt-fail" <<'EOF'
#!/bin/sh
echo "E: Failed to fetch (no route to the package mirror)" >&2
exit 100
EOF
cat > "$T/bin/apt-ok" <<EOF
#!/bin/sh
echo "\$*" >> "$T/apt.log"
[ "\$1" = update ] && exit 0
for a; do
    case \$a in
    node-llhttp) mkdir -p "$T/llhttp" && cp /usr/share/llhttp/*.c "$T/llhttp/" ;;
    qemu-system-common) mkdir -p "$T/none" && touch "$T/none/virtiofsd" ;;
    esac
done
exit 0
EOF
chmod 755 "$T/bin/"*

m() { "$MAKE" --no-print-directory -C "$T/src" LLHTTP_DIR="$T/llhttp" CFLAGS=-O0 "$@"; }

# 1. No mirror: a clear error naming the package, and no build tree.
if m APT_GET="$T/bin/apt-fail" all > "$T/out" 2>&1; then
    fail "make succeeded although the install failed"
elif has "$T/out" "could not install node-llhttp" && [ ! -e "$T/src/build" ]; then
    ok "failed install names node-llhttp and leaves no build tree"
else
    fail "failed install: wrong message or a build tree left behind"
fi

# 2. Not root and no sudo: stop before building, name the command.
if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null; then
    asuser=(setpriv --reuid=65534 --regid=65534 --clear-groups)
else
    asuser=()
fi
if [ "$(id -u)" != 0 ] && [ ${#asuser[@]} -eq 0 ] && sudo -n true 2> /dev/null; then
    ok "not-root case skipped: password-less sudo is available"
elif env HOME="$T" "${asuser[@]}" "$MAKE" --no-print-directory -C "$T/src" \
        LLHTTP_DIR="$T/llhttp" all > "$T/out" 2>&1; then
    fail "make without root succeeded although node-llhttp is missing"
elif has "$T/out" "as root, run: apt-get install -y --no-install-recommends node-llhttp" &&
        [ ! -e "$T/src/build" ]; then
    ok "without root: one message with the apt-get command, nothing built"
else
    fail "without root: wrong message or a build tree left behind"
fi

# 3. The first make on a machine without node-llhttp builds everything in
#    one go, installing only the build's packages (virtiofsd is "missing"
#    too, and is not the build's).
if m APT_GET="$T/bin/apt-ok" VIRTIOFSD="$T/none/virtiofsd" all > "$T/out" 2>&1 &&
        [ -x "$T/src/build/cocoon" ] && [ -x "$T/src/build/chsim" ]; then
    ok "first make builds library, CLI and simulator in one go"
else
    cat "$T/out"; fail "first make on a machine without node-llhttp"
fi
if grep -q "install.*node-llhttp" "$T/apt.log" 2> /dev/null &&
        ! grep -q "qemu-system-common" "$T/apt.log"; then
    ok "the build installed node-llhttp and no test package"
else
    fail "the build installed the wrong packages: $(cat "$T/apt.log" 2> /dev/null)"
fi
: > "$T/apt.log"
if m APT_GET="$T/bin/apt-ok" VIRTIOFSD="$T/none/virtiofsd" build/tests/test_spec > "$T/out" 2>&1 &&
        grep -q "install.*qemu-system-common" "$T/apt.log"; then
    ok "a test binary's goal installs the test packages"
else
    cat "$T/out"; fail "a test goal did not install the test packages"
fi

# 4. A second make finds everything up to date, test binaries included.
tests=$(cd "$SRC" && ls tests/test_*.c | sed "s|^tests/\(.*\)\.c$|$BUILT/tests/\1|")
# `deps` is phony, so `make -q` always answers "out of date": ask make what
# it would run instead, and look for a compile or a link.
# shellcheck disable=SC2086
"$MAKE" --no-print-directory -C "$SRC" -n BUILD="$BUILT" \
    "$BUILT/libcocoon.a" "$BUILT/cocoon" "$BUILT/chsim" $tests > "$T/out" 2>&1 || true
if ! grep -E -- "(^| )-o [^ ]*$BUILT/" "$T/out"; then
    ok "after make test, nothing is rebuilt"
else
    fail "a second make would rebuild the above (objects deleted or out of date)"
fi

# 5. CPPFLAGS reaches the compiler, and a user CFLAGS keeps the warnings.
m -n -B CPPFLAGS=-DCOCOON_CPP_PROBE CFLAGS=-O0 build/http/client.o > "$T/out" 2>&1 || true
line=$(grep -- "-c -o build/http/client.o" "$T/out" || true)
case $line in
*-DCOCOON_CPP_PROBE*-O0*-Wall*-Werror*) ok "CPPFLAGS honoured, warnings after CFLAGS" ;;
*) fail "compile line: $line" ;;
esac

# 6. make clean removes BUILD and nothing else, and refuses "/".
mkdir -p "$T/other/obj" && touch "$T/other/obj/x.o"
m BUILD="$T/other/obj" clean > /dev/null 2>&1
if [ ! -e "$T/other/obj" ] && [ -x "$T/src/build/cocoon" ]; then
    ok "make clean honours BUILD"
else
    fail "make clean BUILD=... removed the wrong tree"
fi
if m BUILD=/ clean > "$T/out" 2>&1; then fail "make clean BUILD=/ ran"
else ok "make clean refuses BUILD=/"; fi

# 7. One version: the CLI and cocoon.pc say what cocoon.h says.
want=$(awk '/^#define COCOON_VERSION_(MAJOR|MINOR|PATCH) /{v=v s $3; s="."} END{print v}' \
       "$SRC/engine/cocoon.h")
m build/cocoon.pc > /dev/null 2>&1 || true
if "$T/src/build/cocoon" --version | grep -qx "cocoon version $want" &&
        grep -qx "Version: $want" "$T/src/build/cocoon.pc"; then
    ok "version $want from engine/cocoon.h in the CLI and cocoon.pc"
else
    fail "version differs from cocoon.h ($want)"
fi

# 8. The installed library exports cocoon_* alone: a host with its own
#    store_load and llhttp_init links against the archive without a clash,
#    and the shared library carries a soname.
others() { awk 'NF == 3 && $2 ~ /^[A-TV-Z]$/ && $3 !~ /^cocoon_/ {print $3}'; }
a_extra=$(nm -g --defined-only "$BUILT/libcocoon.a" | others)
so=$(cd "$BUILT" && ls libcocoon.so.* 2> /dev/null | head -n 1)
so_extra=$([ -n "$so" ] && nm -D --defined-only "$BUILT/$so" | others)
if [ -z "$a_extra" ] && [ -n "$so" ] && [ -z "$so_extra" ] &&
        readelf -d "$BUILT/$so" | grep -q "SONAME.*\[$so\]"; then
    ok "libcocoon.a and $so export only cocoon_* symbols; soname $so"
else
    fail "exported beyond cocoon_*: ${a_extra:-} ${so_extra:-} (shared library: ${so:-none})"
fi
cat > "$T/host.c" <<'EOF'
#include <cocoon.h>
int store_load(void);
int store_load(void) { return 7; }
void llhttp_init(void);
void llhttp_init(void) {}
int main(void)
{
    struct ev_loop *loop = ev_loop_new(0);
    cocoon_engine *e = cocoon_engine_new(loop, NULL);

    cocoon_engine_free(e);
    ev_loop_destroy(loop);
    return store_load() == 7 ? 0 : 1;
}
EOF
if cc -I"$SRC/engine" -o "$T/host" "$T/host.c" "$BUILT/libcocoon.a" -lev -lyajl -lm \
        > "$T/out" 2>&1 && "$T/host"; then
    ok "a host with its own store_load and llhttp_init links against libcocoon.a"
else
    cat "$T/out"; fail "a host's own store_load or llhttp_init clashes with the archive"
fi

echo "build checks: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
