#!/usr/bin/env bash
# tests/test_snapshot.sh: the snapshot commands.  save against a chsim VM:
# one vm.pause, vm.snapshot and vm.resume each (chsim's counters), also
# when a reply is lost; a failed snapshot resumes the VM and leaves no
# record; attached devices refused unless --force.  Over records on disk:
# list and inspect in text and JSON (shared_memory of the source VM shown),
# the ref rules and their errors, and rm, which removes the record and the
# snapshot's own data dir but nothing a link in it points at.
#
# Usage: tests/test_snapshot.sh      (make test runs it; COCOON_BUILD_DIR=build)
set -euo pipefail

BUILD=$(realpath "${COCOON_BUILD_DIR:-build}")
PY=/usr/bin/python3
T=$(mktemp -d /tmp/cocoon-snapshot-XXXXXX)
LPIDS=()
cleanup() {
    [ ${#LPIDS[@]} -eq 0 ] || kill "${LPIDS[@]}" 2>/dev/null || true
    "$BUILD/cocoon" --root-dir "$T/live" vm rm --force s1 s2 d1 web-1 web-2 web-3 \
        dsnap-clone-1 dsnap-clone-2 pz r1 rclone pc-1 pc-2 app-1 app-2 >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap cleanup EXIT
R=$T/root
C=("$BUILD/cocoon" --root-dir "$R")
# shellcheck source=tests/support/expect.sh
. "$(dirname "$0")/support/expect.sh"

expect 0 "No snapshots found." snapshot list
[ "$("${C[@]}" -o json snapshot ls)" = "[]" ] && ok "empty JSON list" || fail "empty JSON list"
for cmd in "snapshot" "snapshot list" "snapshot inspect" "snapshot rm"; do
    # shellcheck disable=SC2086
    expect 0 "Usage:" $cmd --help
done
expect 2 "accepts" snapshot inspect
expect 2 "" snapshot rm

# Two records as cocoon writes them; the first snapshot's data dir holds
# CH's files and links to a VM's disk and run dir.
A=AAAAAAAAAAAAAAAAAAAAAAAAAA
B=AAABBBBBBBBBBBBBBBBBBBBBBB
V=VVVVVVVVVVVVVVVVVVVVVVVVVV
mkdir -p "$R/snapshots/db" "$R/snapshots/data/$A" "$R/snapshots/data/$B" "$T/vm/run"
echo disk > "$T/vm/disk.raw"
echo '{}' > "$R/snapshots/data/$A/config.json"
ln -s "$T/vm/disk.raw" "$R/snapshots/data/$A/disk-link"
ln -s "$T/vm/run" "$R/snapshots/data/$A/run-link"
rec() { # id name shared
    printf '"%s":{"id":"%s","name":"%s","created_at":"2026-12-01T08:00:00Z",' "$1" "$1" "$2"
    printf '"dir":"%s","source":{"id":"%s","hypervisor":"cloud-hypervisor",' \
        "$R/snapshots/data/$1" "$V"
    printf '"state":"running","config":{"name":"web-1","cpu":2,"memory":1073741824%s}}}' "$3"
}
{ printf '{"snapshots":{'; rec $A before-upgrade ',"shared_memory":true'; printf ','
  rec $B plain ''; printf '}}'; } > "$R/snapshots/db/snapshots.json"

out=$("${C[@]}" snapshot list)
if [[ "$out" == *"ID"*"NAME"*"SOURCE VM"*"SHARED"* && "$out" == *"$A  before-upgrade"*"web-1"*"yes"* &&
      "$out" == *"$B  plain"*"no"* ]]; then ok "text list"; else fail "text list: $out"; fi
"${C[@]}" -o json snapshot list | $PY -c '
import json, sys
l = json.load(sys.stdin)
assert [s["name"] for s in l] == ["before-upgrade", "plain"], l
assert l[0]["source"]["config"]["shared_memory"] is True
assert "shared_memory" not in l[1]["source"]["config"]
assert l[0]["source"]["id"] == "'$V'" and l[0]["dir"].endswith("'$A'")
' && ok "JSON list" || fail "JSON list"

expect 0 "\"name\": \"before-upgrade\"" snapshot inspect before-upgrade
expect 0 "\"shared_memory\": true" snapshot inspect AAAA
expect 0 "\"id\": \"$B\"" -o json snapshot inspect AAAB
expect 1 "Error: ambiguous ref \"AAA\": multiple matches" snapshot inspect AAA
expect 1 "Error: snapshot not found" snapshot inspect AA
expect 1 "Error: snapshot not found" snapshot inspect nope

out=$("${C[@]}" -o json snapshot rm AAAA)
[ "$out" = "{\"id\":\"$A\",\"name\":\"before-upgrade\",\"state\":\"removed\"}" ] &&
    ok "rm JSON" || fail "rm JSON: $out"
[ ! -e "$R/snapshots/data/$A" ] && ok "data dir removed" || fail "data dir still there"
[ -f "$T/vm/disk.raw" ] && [ -d "$T/vm/run" ] && ok "VM files kept" || fail "VM files removed"

# One bad ref fails the run; the good one is still removed.
out=$("${C[@]}" snapshot rm nope plain 2>&1) && rc=0 || rc=$?
[ $rc -eq 1 ] && [[ "$out" == *'Error: "nope": snapshot not found'* ]] &&
    [[ "$out" == *"plain: removed (id=$B)"* ]] && ok "rm partial" || fail "rm partial: $rc $out"
expect 0 "No snapshots found." snapshot list

# ---- snapshot save against a running chsim VM, in its own root
C=("$BUILD/cocoon" --root-dir "$T/live")
L=$T/live
count() { curl -s --unix-socket "$S" http://localhost/chsim/stats |
    $PY -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(str(d[k]) for k in sys.argv[1:]))' "$@"; }
lose_next() { curl -s --unix-socket "$S" -X PUT \
    -d '{"endpoint":"'"$1"'","mode":"close-before-reply","count":1}' http://localhost/chsim/fault; }
state() { curl -s --unix-socket "$S" http://localhost/api/v1/vm.info |
    $PY -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }
expect 0 "s1: running" vm run --name s1 --shared-memory --ch-binary "$BUILD/chsim" --kernel /dev/null
S=$(ls "$L"/run/cloudhypervisor/*/api.sock)
expect 0 "first: saved (id=" snapshot save s1 --name first
[ "$(count vm.pause vm.snapshot vm.resume)" = "1 1 1" ] && ok "one request each" ||
    fail "counts after save: $(count vm.pause vm.snapshot vm.resume)"
"${C[@]}" -o json snapshot save s1 --name second | $PY -c '
import json, os, sys
r = json.load(sys.stdin)
assert r["name"] == "second" and r["source"]["config"]["shared_memory"] is True, r
cfg = json.load(open(os.path.join(r["dir"], "config.json")))
assert cfg["memory"]["shared"] is True, cfg
' && ok "save JSON, shared memory in record and config.json" || fail "save JSON"
expect 1 'Error: snapshot name "first" already in use' snapshot save s1 --name first
[ "$(count vm.pause)" = 2 ] && ok "a taken name pauses nothing" || fail "paused for a taken name"

lose_next vm.pause
expect 0 "Note: vm.pause: reply lost; vm.info shows the VM Paused" snapshot save s1 --name third
[ "$(count vm.pause vm.snapshot vm.resume)" = "3 3 3" ] && ok "lost pause reply: no resend" ||
    fail "counts after lost pause: $(count vm.pause vm.snapshot vm.resume)"
lose_next vm.snapshot
expect 1 "Error: vm.snapshot: outcome unknown: " snapshot save s1 --name fourth
[ "$(count vm.snapshot vm.resume)" = "4 4" ] && [ "$(state)" = Running ] &&
    ok "lost snapshot reply: no resend, VM resumed" || fail "after lost snapshot: $(count vm.snapshot vm.resume) $(state)"
"${C[@]}" snapshot inspect fourth >/dev/null 2>&1 && fail "record of a failed save" || ok "no record of a failed save"
[ "$(ls "$L/snapshots/data" | wc -l)" = 3 ] && ok "no data dir of a failed save" || fail "data dirs: $(ls "$L/snapshots/data")"
lose_next vm.resume
expect 0 "vm.resume: reply lost; vm.info shows the VM Running" snapshot save s1 --name fifth

# Attached devices (vm.info as CH shows them) are refused unless --force.
INFO=$(curl -s --unix-socket "$S" http://localhost/api/v1/vm.info | $PY -c '
import json, sys
i = json.load(sys.stdin)
i["config"]["fs"] = [{"tag": "data", "socket": "/run/v.sock", "id": "cocoon-fs-data",
                      "num_queues": 1, "queue_size": 1024}]
i["config"]["devices"] = [{"path": "/sys/bus/pci/devices/0000:01:00.0", "id": "gpu0"}]
print(json.dumps(i))')
curl -s --unix-socket "$S" -X PUT --data-binary "$INFO" http://localhost/chsim/vminfo-override
expect 1 "has runtime-attached devices (fs tag data, device gpu0), which a snapshot does not capture; detach them first, or use --force" snapshot save s1 --name sixth
[ "$(count vm.pause)" = 5 ] && ok "refusal pauses nothing" || fail "paused despite devices"
expect 0 "sixth: saved" snapshot save s1 --name sixth --force
curl -s --unix-socket "$S" -X PUT http://localhost/chsim/vminfo-override
expect 0 "s1: stopped" vm stop s1
expect 1 "is stopped: VM not running" snapshot save s1

# vm restore: a fresh VMM without a payload, one vm.restore, one vm.resume;
# shared memory comes back in the new VMM's vm.info and in the record.
expect 0 "s1: restored from first (id=" vm restore s1 first
S=$(ls "$L"/run/cloudhypervisor/*/api.sock)
[ "$(count vm.restore vm.resume vm.boot)" = "1 1 0" ] && ok "one restore, one resume, no boot" ||
    fail "counts after restore: $(count vm.restore vm.resume vm.boot)"
curl -s --unix-socket "$S" http://localhost/api/v1/vm.info | $PY -c '
import json, sys
i = json.load(sys.stdin)
assert i["state"] == "Running" and i["config"]["memory"]["shared"] is True, i
' && ok "restored VM running with shared memory" || fail "vm.info after restore"
"${C[@]}" -o json vm inspect s1 | $PY -c '
import json, sys
r = json.load(sys.stdin)
assert r["state"] == "running" and r["config"]["shared_memory"] is True, r
' && ok "record after restore" || fail "record after restore"
expect 1 "is running: stop it first" vm restore s1 first
expect 0 "s2" vm create --name s2 --kernel /dev/null
expect 1 "was taken of VM" vm restore s2 first
expect 1 "Error: snapshot not found" vm restore s2 nope
# --paused: no vm.resume; vm.info must say Paused; vm resume runs it.
expect 0 "s1: stopped" vm stop s1
expect 0 ", paused)" vm restore s1 first --paused
S=$("${C[@]}" -o json vm inspect s1 | $PY -c 'import json,sys; print(json.load(sys.stdin)["socket_path"])')
[ "$(count vm.restore vm.resume)" = "1 0" ] && [ "$(state)" = Paused ] &&
    ok "restore --paused: one restore, no resume, Paused" ||
    fail "restore --paused: $(count vm.restore vm.resume) $(state)"
expect 0 "s1: resumed" vm resume s1
[ "$(state)" = Running ] && ok "resumed after restore --paused" || fail "state $(state)"

# vm clone: new VMs, each with its own VMM (one vm.restore, one vm.resume),
# shared memory kept, and its own copy of the writable disk.
echo source-disk > "$T/d1.img"
expect 0 "d1: running" vm run --name d1 --shared-memory --ch-binary "$BUILD/chsim" \
    --kernel /dev/null --disk "$T/d1.img"
expect 0 "dsnap: saved" snapshot save d1 --name dsnap
expect 2 "needs a --name template with {i}" vm clone dsnap --count 2 --name web
out=$("${C[@]}" -o json vm clone dsnap --count 3 --name 'web-{i}')
echo "$out" | $PY -c '
import json, sys
l = [json.loads(x) for x in sys.stdin.read().splitlines()]
assert [c["name"] for c in l] == ["web-1", "web-2", "web-3"], l
assert all(c["state"] == "running" and c["shared_memory"] is True for c in l), l
assert len({c["id"] for c in l}) == 3 and len({c["pid"] for c in l}) == 3, l
' && ok "three clones, JSON" || fail "clone JSON: $out"
for w in web-1 web-2 web-3; do
    id=$("${C[@]}" -o json vm inspect $w | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    S="$L/run/cloudhypervisor/$id/api.sock"
    [ "$(count vm.restore vm.resume vm.boot)" = "1 1 0" ] && [ "$(state)" = Running ] &&
        ok "$w: one restore, one resume, running" || fail "$w: $(count vm.restore vm.resume vm.boot)"
    curl -s --unix-socket "$S" http://localhost/api/v1/vm.info | $PY -c '
import json, sys
i = json.load(sys.stdin)
assert i["config"]["memory"]["shared"] is True, i
assert i["config"]["disks"][0]["path"].startswith("'"$L/run/cloudhypervisor/$id/disks/"'"), i
' && ok "$w: shared memory and its own disk in vm.info" || fail "$w: vm.info"
    echo "$w-writes" >> "$L/run/cloudhypervisor/$id/disks/disk0-d1.img"
done
[ "$(cat "$T/d1.img")" = source-disk ] && ok "source disk untouched by clones" ||
    fail "source disk changed: $(cat "$T/d1.img")"
id=$("${C[@]}" -o json vm inspect web-2 | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
[ "$(cat "$L/run/cloudhypervisor/$id/disks/disk0-d1.img")" = "$(printf 'source-disk\nweb-2-writes')" ] &&
    ok "clone disks independent" || fail "web-2 disk: $(cat "$L/run/cloudhypervisor/$id/disks/disk0-d1.img")"
expect 0 "dsnap-clone-1: cloned from dsnap" vm clone dsnap
expect 0 "dsnap-clone-2: cloned from dsnap" vm clone dsnap
expect 1 'clone web-1: name "web-1" already in use' vm clone dsnap --name 'web-{i}'
out=$("${C[@]}" -o json vm clone dsnap --paused --name pz)
S=$(echo "$out" | $PY -c 'import json,sys; r=json.load(sys.stdin); assert r["state"] == "paused", r; print(r["id"])')
S="$L/run/cloudhypervisor/$S/api.sock"
[ "$(count vm.restore vm.resume)" = "1 0" ] && [ "$(state)" = Paused ] &&
    ok "clone --paused: one restore, no resume, Paused" ||
    fail "clone --paused: $out $(count vm.restore vm.resume) $(state)"

# Removing the snapshot leaves running clones alone.
expect 0 "dsnap: removed" snapshot rm dsnap
S="$L/run/cloudhypervisor/$id/api.sock"
[ "$(state)" = Running ] && [ -f "$L/run/cloudhypervisor/$id/restore/config.json" ] &&
    ok "clone runs on after snapshot rm" || fail "clone after snapshot rm"

# A clone whose VMM cannot start leaves no record and no run dir.
expect 0 "saved" snapshot save d1 --name dsnap2
before=$(ls "$L/run/cloudhypervisor" | wc -l)
expect 1 "Error: " vm clone dsnap2 --name broken --ch-binary /bin/false
expect 1 "VM not found" vm inspect broken
[ "$(ls "$L/run/cloudhypervisor" | wc -l)" = "$before" ] && ok "no run dir left" ||
    fail "run dirs: $(ls "$L/run/cloudhypervisor")"

# Lost replies on the way up: a VM whose VMM is a wrapper that passes
# $FAULTS to chsim.  The lost vm.restore reply is settled by vm.info (the
# VM is there, Paused), the restore goes on without a second vm.restore;
# a clone's lost vm.resume reply likewise.
mkdir -p "$T/bin"
printf '#!/bin/bash\nexec -a "$0" %s ${FAULTS:-} "$@"\n' "$BUILD/chsim" > "$T/bin/chsim-faults"
chmod +x "$T/bin/chsim-faults"
echo r1-disk > "$T/r1.img"
expect 0 "r1: running" vm run --name r1 --shared-memory --ch-binary "$T/bin/chsim-faults" \
    --kernel /dev/null --disk "$T/r1.img"
expect 0 "rsnap: saved" snapshot save r1 --name rsnap
expect 0 "r1: stopped" vm stop r1
out=$(FAULTS="--fault vm.restore=close-before-reply:1" "${C[@]}" -o json vm restore r1 rsnap 2>&1) ||
    fail "restore with a lost reply: $out"
id=$("${C[@]}" -o json vm inspect r1 | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
S="$L/run/cloudhypervisor/$id/api.sock"
[[ "$out" == *'"note":"vm.restore: reply lost; vm.info shows the VM Paused"'* ]] &&
    [ "$(count vm.restore vm.resume)" = "1 1" ] && [ "$(state)" = Running ] &&
    ok "lost vm.restore reply: one restore, settled by vm.info, running" ||
    fail "lost restore: $out $(count vm.restore vm.resume) $(state)"
out=$(FAULTS="--fault vm.resume=close-before-reply:1" "${C[@]}" -o json vm clone rsnap \
    --name rclone 2>&1) || fail "clone with a lost resume reply: $out"
id=$("${C[@]}" -o json vm inspect rclone | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
S="$L/run/cloudhypervisor/$id/api.sock"
[[ "$out" == *'"note":"vm.resume: reply lost; vm.info shows the VM Running"'* ]] &&
    [ "$(count vm.restore vm.resume)" = "1 1" ] && [ "$(state)" = Running ] &&
    ok "clone: lost vm.resume reply, one resume, settled by vm.info" ||
    fail "clone lost resume: $out $(count vm.restore vm.resume) $(state)"

# vm fs attach on the restored VM and on the clone: shared memory came
# through, so CH takes the share.  A listening socket stands in for
# virtiofsd (the simulated VMM only connects).
listen_on() {
    local fd line
    exec {fd}< <(exec $PY -c '
import signal, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(16)
print("ready", flush=True)
signal.pause()' "$1" 2>/dev/null)
    LPIDS+=($!)
    read -r -u "$fd" line
}
listen_on "$T/vfs-r1.sock"
listen_on "$T/vfs-rclone.sock"
expect 0 "r1: attached fs data (id=" vm fs attach r1 --socket "$T/vfs-r1.sock" --tag data
expect 0 "rclone: attached fs data (id=" vm fs attach rclone --socket "$T/vfs-rclone.sock" --tag data
curl -s --unix-socket "$S" http://localhost/api/v1/vm.info | $PY -c '
import json, sys
i = json.load(sys.stdin)
assert [f["tag"] for f in i["config"]["fs"]] == ["data"], i
' && ok "the clone's VMM has the share" || fail "clone vm.info after attach"

# A plan clones and then attaches to each clone: {name} and {vm} are the
# clone's name, {id} its id.  A clone that fails sends none of its
# attaches; a clone line's fields are checked like any other.
listen_on "$T/vfs-pc-1.sock"
listen_on "$T/vfs-pc-2.sock"
cat > "$T/plan.jsonl" <<EOF
{"op":"clone","vm":"pc-1","snapshot":"rsnap","fs":[{"socket":"$T/vfs-{name}.sock","tag":"data"}]}
{"op":"clone","vm":"pc-2","snapshot":"rsnap","fs":[{"socket":"$T/vfs-{vm}.sock","tag":"data"},{"socket":"$T/vfs-{id}.sock","tag":"logs","num_queues":1}]}
{"op":"clone","vm":"pc-3","snapshot":"nope","fs":[{"socket":"$T/vfs-{name}.sock","tag":"data"}]}
{"op":"clone","vm":"pc-4","fs":[{"tag":"data"}]}
{"op":"clone","vm":"pc-5","snapshot":"rsnap","tag":"data"}
{"op":"fs-attach","vm":"r1","snapshot":"rsnap","tag":"x"}
EOF
out=$("${C[@]}" -o json batch "$T/plan.jsonl" 2>&1) && rc=0 || rc=$?
echo "$out" | T="$T" $PY -c '
import json, os, sys
rows = [json.loads(x) for x in sys.stdin.read().splitlines() if x.startswith("{")]
by, s = {}, None
for r in rows:
    if "summary" in r:
        s = r["summary"]
        continue
    by.setdefault((r.get("vm"), r.get("op")), []).append(r)
for vm in ("pc-1", "pc-2"):
    c = by[(vm, "clone")][0]
    assert c["ok"] and c["snapshot"] == "rsnap" and c["pid"] > 0 and len(c["id"]) == 26, c
a = by[("pc-1", "fs-attach")]
assert len(a) == 1 and a[0]["ok"] and a[0]["tag"] == "data", a
a = by[("pc-2", "fs-attach")]
ok = {x["tag"]: x for x in a}
assert ok["data"]["ok"], a
# {id} became the clone id: nobody listens there, refused before CH.
assert not ok["logs"]["ok"] and by[("pc-2", "clone")][0]["id"] in ok["logs"]["error"], a
c = by[("pc-3", "clone")][0]
assert not c["ok"] and "snapshot not found" in c["error"], c
a = by[("pc-3", "fs-attach")][0]
assert not a["ok"] and "not sent: the clone did not come up" in a["error"], a
errs = [r["error"] for r in rows if not r.get("vm") and "error" in r]
assert any("line 4: missing field \"snapshot\"" in e for e in errs), errs
assert any("line 5: op \"clone\" takes vm, snapshot and fs" in e for e in errs), errs
assert any("line 6: fields \"snapshot\" and \"fs\" belong to op \"clone\"" in e for e in errs), errs
assert s["total"] == 10 and s["ok"] == 4 and s["failed"] == 6, s
' && [ $rc -eq 1 ] && ok "plan: clone then attach" || fail "plan clone: rc $rc: $out"
for vm in pc-1 pc-2; do
    id=$("${C[@]}" -o json vm inspect $vm | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    S="$L/run/cloudhypervisor/$id/api.sock"
    [ "$(count vm.restore vm.resume)" = "1 1" ] && [ "$(state)" = Running ] &&
        ok "$vm: one restore, one resume, running" || fail "$vm: $(count vm.restore vm.resume)"
done
expect 1 "VM not found" vm inspect pc-3

# The README's plan, with its socket dir moved under $T.
mkdir -p "$T/vfs"
listen_on "$T/vfs/app-1.sock"
listen_on "$T/vfs/app-2.sock"
expect 0 "base: saved" snapshot save d1 --name base
cat > "$T/readme-plan.jsonl" <<'EOF'
{"op":"clone","vm":"app-1","snapshot":"base","fs":[{"socket":"/run/vfs/{name}.sock","tag":"data"}]}
{"op":"clone","vm":"app-2","snapshot":"base","fs":[{"socket":"/run/vfs/{name}.sock","tag":"data"}]}
EOF
sed -i "s|/run/vfs/|$T/vfs/|" "$T/readme-plan.jsonl"
out=$("${C[@]}" batch "$T/readme-plan.jsonl" 2>&1) && rc=0 || rc=$?
[ $rc -eq 0 ] && [[ "$out" == *"app-1: cloned from base (id="* && "$out" == *"app-2: attached fs data (id="* &&
    "$out" == *"4 ops on 2 VMs: 4 ok, 0 failed"* ]] && ok "README plan, text output" ||
    fail "README plan: rc $rc: $out"
kill "${LPIDS[@]}" 2>/dev/null || true

[ $failures -eq 0 ] || { echo "test_snapshot: $failures failures"; exit 1; }
echo "test_snapshot: all passed"
