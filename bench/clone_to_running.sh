#!/usr/bin/env bash
# bench/clone_to_running.sh: wall time of `cocoon vm clone SNAP --count N`
# from the command's start until every clone is running (its VMM restored
# and resumed, the record written), against chsim, for N = 1, 10, 100 (or
# the counts given as arguments).  Each clone copies a 1 MiB disk and the
# snapshot files.  chsim restores at once, so the figure is cocoon's own
# cost: record writes, file copies, VMM spawns, the API calls.
#
# Usage: bench/clone_to_running.sh [N...]      (after make; BUILD=build)
set -euo pipefail

BUILD=$(realpath "${BUILD:-build}")
COUNTS=("${@:-1}")
[ $# -gt 0 ] || COUNTS=(1 10 100)
T=$(mktemp -d /tmp/cocoon-clonebench-XXXXXX)
C=("$BUILD/cocoon" --root-dir "$T/root")
cleanup() {
    "${C[@]}" -o json vm list 2>/dev/null |
        /usr/bin/python3 -c 'import json,sys; print(" ".join(v["id"] for v in json.load(sys.stdin)))' |
        xargs -r "${C[@]}" vm rm --force >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap cleanup EXIT

head -c 1048576 /dev/zero > "$T/disk.img"
"${C[@]}" vm run --name src --shared-memory --ch-binary "$BUILD/chsim" --kernel /dev/null \
    --disk "$T/disk.img" >/dev/null
"${C[@]}" snapshot save src --name base >/dev/null
printf '%6s  %10s  %12s\n' N wall_ms ms_per_clone
for n in "${COUNTS[@]}"; do
    t0=$(date +%s%N)
    "${C[@]}" vm clone base --count "$n" --name "n$n-{i}" >/dev/null
    t1=$(date +%s%N)
    ms=$(( (t1 - t0) / 1000000 ))
    printf '%6d  %10d  %12.1f\n' "$n" "$ms" "$(echo "$ms / $n" | bc -l)"
    "${C[@]}" -o json vm list | /usr/bin/python3 -c '
import json, sys
print(" ".join(v["id"] for v in json.load(sys.stdin) if v["config"]["name"].startswith("n'"$n"'-")))' |
        xargs -r "${C[@]}" vm rm --force >/dev/null
done
