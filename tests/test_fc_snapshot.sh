#!/usr/bin/env bash
# tests/test_fc_snapshot.sh: snapshots of Firecracker VMs against chsim
# --firecracker.  save is PATCH /vm Paused, PUT /snapshot/create, PATCH
# /vm Resumed, each sent once (chsim's counters), also when a reply is
# lost (GET / tells the outcome); vm restore and vm clone start a fresh
# Firecracker that gets one PUT /snapshot/load and no boot configuration,
# each clone's drive is pointed at its own copy before the one resume.
#
# Usage: tests/test_fc_snapshot.sh      (make test runs it; COCOON_BUILD_DIR=build)
set -euo pipefail

BUILD=$(realpath "${COCOON_BUILD_DIR:-build}")
PY=/usr/bin/python3
T=$(mktemp -d /tmp/cocoon-fcsnap-XXXXXX)
C=("$BUILD/cocoon" --root-dir "$T/root")
cleanup() {
    "${C[@]}" vm rm --force f1 fcw-1 fcw-2 lostres >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap cleanup EXIT
# shellcheck source=tests/support/expect.sh
. "$(dirname "$0")/support/expect.sh"

# chsim as "firecracker", argv[0] the wrapper's own path (the running gate
# checks the exact binary); FAULTS adds chsim flags to the next VMM cocoon
# starts.
mkdir -p "$T/bin"
printf '#!/bin/bash\nexec -a "$0" %s --firecracker ${FAULTS:-} "$@"\n' "$BUILD/chsim" \
    > "$T/bin/firecracker"
chmod +x "$T/bin/firecracker"
FC=(--fc-binary "$T/bin/firecracker")
sock() { echo "$T/root/run/firecracker/$("${C[@]}" -o json vm inspect "$1" |
    $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')/api.sock"; }
count() { local s=$1; shift; curl -s --unix-socket "$s" http://localhost/chsim/stats |
    $PY -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(str(d[k]) for k in sys.argv[1:]))' "$@"; }
state() { curl -s --unix-socket "$1" http://localhost/ |
    $PY -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }
lose_next() { curl -s --unix-socket "$1" -X PUT \
    -d '{"endpoint":"'"$2"'","mode":"close-before-reply","count":1}' http://localhost/chsim/fault; }

echo source-disk > "$T/f1.img"
expect 0 "f1: running" vm run --fc --name f1 --kernel /dev/null --disk "$T/f1.img" "${FC[@]}"
S=$(sock f1)
expect 0 "fs1: saved (id=" snapshot save f1 --name fs1
[ "$(count "$S" vm snapshot/create instance-info)" = "2 1 1" ] && [ "$(state "$S")" = Running ] &&
    ok "save: one pause, one create, one resume" || fail "save counts: $(count "$S" vm snapshot/create)"
"${C[@]}" -o json snapshot inspect fs1 | $PY -c '
import json, os, sys
r = json.load(sys.stdin)
assert r["source"]["hypervisor"] == "firecracker", r
assert sorted(os.listdir(r["dir"])) == ["memory", "vmstate"], os.listdir(r["dir"])
' && ok "record and the two files" || fail "record or files"

# Lost replies: never resent, settled by GET /.
lose_next "$S" vm
expect 0 "Note: vm.pause: reply lost; vm.info shows the VM Paused" snapshot save f1 --name fs2
[ "$(count "$S" vm snapshot/create)" = "4 2" ] && ok "lost pause reply: no resend" ||
    fail "after lost pause: $(count "$S" vm snapshot/create)"
lose_next "$S" snapshot/create
expect 1 "Error: vm.snapshot: outcome unknown: " snapshot save f1 --name fs3
[ "$(count "$S" vm snapshot/create)" = "6 3" ] && [ "$(state "$S")" = Running ] &&
    ok "lost create reply: no resend, VM resumed" || fail "after lost create: $(count "$S" vm snapshot/create)"
expect 1 "snapshot not found" snapshot inspect fs3
lose_next "$S" vm
expect 0 "Note: vm.pause: reply lost; vm.info shows the VM Paused" vm pause f1
lose_next "$S" vm
expect 0 "\"note\":\"vm.resume: reply lost; vm.info shows the VM Running\"" -o json vm resume f1
[ "$(count "$S" vm)" = 8 ] && ok "pause and resume: one PATCH each" || fail "PATCH /vm: $(count "$S" vm)"

# vm restore: a fresh Firecracker, one load, no boot configuration.
expect 1 "is running: stop it first" vm restore f1 fs1
expect 0 "f1: stopped" vm stop f1
expect 0 "f1: restored from fs1 (id=" vm restore f1 fs1
S=$(sock f1)
[ "$(count "$S" snapshot/load machine-config boot-source actions vm)" = "1 0 0 0 1" ] &&
    [ "$(state "$S")" = Running ] && ok "restore: one load, one resume, no boot" ||
    fail "restore counts: $(count "$S" snapshot/load machine-config boot-source actions vm)"
expect 0 "f1: stopped" vm stop f1

# A lost load reply: GET / shows the VM loaded (Paused), the restore goes
# on without a second load.
FAULTS="--fault snapshot/load=close-before-reply:1" expect 0 \
    "Note: vm.restore: reply lost; vm.info shows the VM Paused" vm restore f1 fs1
S=$(sock f1)
[ "$(count "$S" snapshot/load vm)" = "1 1" ] && [ "$(state "$S")" = Running ] &&
    ok "lost load reply: one load, running" || fail "lost load: $(count "$S" snapshot/load vm)"

# vm clone: each clone loads the snapshot, gets its drive pointed at its
# own copy, then one resume; the source disk is never written.
out=$("${C[@]}" -o json vm clone fs1 --count 2 --name 'fcw-{i}' "${FC[@]}")
[ "$(grep -c '"state":"running"' <<<"$out")" = 2 ] && ok "two clones" || fail "clone: $out"
for w in fcw-1 fcw-2; do
    s=$(sock $w)
    id=$(basename "$(dirname "$s")")
    [ "$(count "$s" snapshot/load drives vm actions)" = "1 1 1 0" ] && [ "$(state "$s")" = Running ] &&
        ok "$w: one load, one drive patch, one resume" || fail "$w: $(count "$s" snapshot/load drives vm actions)"
    curl -s --unix-socket "$s" http://localhost/vm/config | $PY -c '
import json, sys
c = json.load(sys.stdin)
assert c["drives"][0]["path_on_host"] == "'"$T/root/run/firecracker/$id/disks/disk0-f1.img"'", c
' && ok "$w: its own drive" || fail "$w: drive"
    echo "$w-writes" >> "$T/root/run/firecracker/$id/disks/disk0-f1.img"
done
[ "$(cat "$T/f1.img")" = source-disk ] && ok "source disk untouched" || fail "source disk changed"

# A clone whose resume reply is lost: one resume, settled by GET /.
out=$(FAULTS="--fault vm=close-before-reply:1" "${C[@]}" -o json vm clone fs1 --name lostres "${FC[@]}")
s=$(sock lostres)
[[ "$out" == *'"note":"vm.resume: reply lost; vm.info shows the VM Running"'* ]] &&
    [ "$(count "$s" snapshot/load vm)" = "1 1" ] && ok "clone: lost resume reply, one resume" ||
    fail "clone lost resume: $out $(count "$s" snapshot/load vm)"

# Firecracker has no virtio-fs: nothing to attach, said by name.
expect 1 "backend firecracker: backend does not support fs attach" vm fs attach fcw-1 \
    --socket "$T/none.sock" --tag data

[ $failures -eq 0 ] || { echo "test_fc_snapshot: $failures failures"; exit 1; }
echo "test_fc_snapshot: all passed"
