#!/bin/sh
# bench/bench_profile.sh: profile one peer of the benchmark on its own.
# Starts a chsim fleet of N VMs plus N stand-in virtiofsd listeners (the
# same setup cocoon-bench uses, in a network namespace of its own when
# unshare allows), then runs `cocoon-bench peer KIND attach DIR N` under
# perf record (default), callgrind, perf stat or strace -c.
#   bench/bench_profile.sh [-b BUILD] [-n N]
#                          [-k cocoon-lib|cocoon-lib-nocheck|floor]
#                          [-l ADD_LATENCY_MS] [-t perf|callgrind|stat|strace|none]
set -eu
if [ -z "${BENCH_NETNS:-}" ] && unshare -n true 2>/dev/null; then
    BENCH_NETNS=1 exec unshare -n "$0" "$@"
fi
build=build n=1000 kind=cocoon-lib lat=0 tool=perf
while getopts b:n:k:l:t: o; do
    case $o in
    b) build=$OPTARG ;; n) n=$OPTARG ;; k) kind=$OPTARG ;;
    l) lat=$OPTARG ;; t) tool=$OPTARG ;; *) exit 2 ;;
    esac
done
dir=$(mktemp -d /tmp/cocoon-prof-XXXXXX)
mkdir "$dir/vfs" "$dir/root"
cleanup() {
    [ -n "${fleet:-}" ] && kill "$fleet" 2>/dev/null || true
    [ -n "${holder:-}" ] && kill "$holder" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM
# python3 keeps the listeners open; nothing ever accepts on them.
python3 -c '
import socket, sys, time
d, n = sys.argv[1], int(sys.argv[2])
keep = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.bind("%s/vfs/vm%d.sock" % (d, i))
    s.listen(1)
    keep.append(s)
time.sleep(3600)
' "$dir" "$n" &
holder=$!
"$build/chsim" --fleet "$dir" --count "$n" --no-connect --eject-delay-ms 0 \
    --add-latency-ms "$lat" >/dev/null 2>&1 &
fleet=$!
i=0
while [ ! -S "$dir/vm$((n - 1)).sock" ] || [ ! -S "$dir/vfs/vm$((n - 1)).sock" ]; do
    i=$((i + 1)); [ $i -gt 200 ] && { echo "fleet did not come up" >&2; exit 1; }
    sleep 0.05
done
peer="$build/cocoon-bench peer $kind attach $dir $n"
case $tool in
perf)
    perf record -F 4999 -g -o "$dir/perf.data" $peer | sed -n 1p
    perf report -i "$dir/perf.data" --no-children -g none --sort dso,sym --percent-limit 0.8 --stdio 2>/dev/null |
        grep -v '^$' | head -80 ;;
callgrind)
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" $peer | sed -n 1p
    callgrind_annotate --inclusive=no "$dir/cg.out" 2>/dev/null | head -45
    [ -n "${BENCH_CG_KEEP:-}" ] && cp "$dir/cg.out" "$BENCH_CG_KEEP" ;;
stat)
    perf stat -o "$dir/stat.txt" -e task-clock,page-faults,context-switches $peer | sed -n 1p
    grep -v '^$' "$dir/stat.txt" ;;
strace)
    strace -f -c -o "$dir/strace.txt" $peer | sed -n 1p
    cat "$dir/strace.txt" ;;
none)
    $peer | sed -n 1p ;;
esac
