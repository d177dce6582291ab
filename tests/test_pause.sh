#!/usr/bin/env bash
# tests/test_pause.sh: vm pause and vm resume against chsim VMs: text and
# JSON output, CH's own error for a repeated pause, and the single-shot
# rule: with the reply lost, chsim's counter shows one vm.pause (one
# vm.resume) per command and the outcome comes from vm.info.
#
# Usage: tests/test_pause.sh      (make test runs it; COCOON_BUILD_DIR=build)
set -euo pipefail

BUILD=$(realpath "${COCOON_BUILD_DIR:-build}")
T=$(mktemp -d /tmp/cocoon-pause-XXXXXX)
C=("$BUILD/cocoon" --root-dir "$T/root")
cleanup() {
    "${C[@]}" vm rm --force p1 p2 >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap cleanup EXIT
# shellcheck source=tests/support/expect.sh
. "$(dirname "$0")/support/expect.sh"
sock() { echo "$T/root/run/cloudhypervisor/$("${C[@]}" -o json vm inspect "$1" |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')/api.sock"; }
count() { curl -s --unix-socket "$1" http://localhost/chsim/stats |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["'"$2"'"])'; }
lose_next() { curl -s --unix-socket "$1" -X PUT \
    -d '{"endpoint":"'"$2"'","mode":"close-before-reply","count":1}' http://localhost/chsim/fault; }

expect 0 "Usage:" vm pause --help
expect 0 "Usage:" vm resume --help
expect 2 "requires at least 1 arg" vm pause
for v in p1 p2; do
    expect 0 "$v: running" vm run --name "$v" --ch-binary "$BUILD/chsim" --kernel /dev/null
done
S1=$(sock p1)

expect 0 "p1: paused (id=" vm pause p1
expect 1 "Error: vm.pause: PUT http://localhost/api/v1/vm.pause → 500: " vm pause p1
expect 0 "{\"id\":" -o json vm resume p1
out=$("${C[@]}" -o json vm pause p1 p2)
[ "$(grep -c '"state":"paused"' <<<"$out")" = 2 ] && ok "two VMs paused" || fail "pause p1 p2: $out"
expect 0 "p2: resumed" vm resume p1 p2

# Lost replies: one request each, the outcome read from vm.info.
before=$(count "$S1" vm.pause)
lose_next "$S1" vm.pause
expect 0 "Note: vm.pause: reply lost; vm.info shows the VM Paused" vm pause p1
[ "$(count "$S1" vm.pause)" = $((before + 1)) ] && ok "one vm.pause" || fail "vm.pause resent"
before=$(count "$S1" vm.resume)
lose_next "$S1" vm.resume
expect 0 "\"note\":\"vm.resume: reply lost; vm.info shows the VM Running\"" -o json vm resume p1
[ "$(count "$S1" vm.resume)" = $((before + 1)) ] && ok "one vm.resume" || fail "vm.resume resent"
expect 0 "p1: stopped" vm stop p1
expect 1 "is stopped: VM not running" vm pause p1
expect 1 "Error: vm nope: VM not found" vm resume nope

[ $failures -eq 0 ] || { echo "test_pause: $failures failures"; exit 1; }
echo "test_pause: all passed"
