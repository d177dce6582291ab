#!/usr/bin/env bash
# tests/test_ansible.sh: the cocoon.fleet Ansible collection against three
# "hosts" (local connections), each with its own cocoon root, its own chsim
# fleet of VMs and a chsim fleet standing in for one virtiofsd per VM (a
# listening socket is all the simulated VMM connects to).  Checks every
# outcome through the playbook's JSON output and chsim's request counters.
#
# Usage: tests/test_ansible.sh      (make test runs it; COCOON_BUILD_DIR=build)
# Env:   COCOON_ANSIBLE_VMS  VMs per host (default 4); the run prints the
#        wall time of the attach and of the no-change run.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(realpath "${COCOON_BUILD_DIR:-build}")
N=${COCOON_ANSIBLE_VMS:-4}
PY=/usr/bin/python3
CTL="$PY $REPO/tests/ansible/fleetctl.py"
PLAYBOOK=$REPO/cli/ansible/examples/fleet.yml
HOSTS=(h1 h2 h3)
T=$(mktemp -d /tmp/cocoon-ansible-XXXXXX)
PIDS=()

cleanup() {
    local rc=$?
    set +e
    [ -z "${NAMED:-}" ] || "$BUILD/cocoon" --root-dir "$T/h1/root" vm rm --force web-1 web-2 \
        >/dev/null 2>&1
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    if [ $rc -eq 0 ]; then rm -rf "$T"; else echo "FAILED: files kept in $T"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for f in /usr/bin/ansible-playbook "$BUILD/cocoon" "$BUILD/chsim"; do
    [ -x "$f" ] || { echo "test_ansible: $f is missing"; exit 1; }
done

export ANSIBLE_COLLECTIONS_PATH=$REPO/cli/ansible
export ANSIBLE_HOME=$T/ansible-home ANSIBLE_LOCAL_TEMP=$T/ansible-tmp
export ANSIBLE_REMOTE_TMP=$T/ansible-remote ANSIBLE_RETRY_FILES_ENABLED=0
# Each host's task result lands as JSON in the run's tree directory.
export ANSIBLE_CALLBACKS_ENABLED=ansible.builtin.tree ANSIBLE_NOCOLOR=1 ANSIBLE_FORKS=3
export ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 ANSIBLE_CONFIG=$T/ansible.cfg

: > "$T/ansible.cfg"
INV=$T/inventory.ini
{
    echo "[fleet]"
    for h in "${HOSTS[@]}"; do
        echo "$h ansible_connection=local cocoon_root=$T/$h/root ch_dir=$T/$h/ch vfs_dir=$T/$h/vfs"
    done
    echo "[fleet:vars]"
    echo "cocoon_bin=$BUILD/cocoon"
} > "$INV"

socks() {                   # dir: the N sockets of a fleet
    local i
    for ((i = 0; i < N; i++)); do echo "$1/vm$i.sock"; done
}

start_chsim() {             # log, args...
    local log=$1
    shift
    "$BUILD/chsim" "$@" >"$log" 2>&1 &
    PIDS+=($!)
}

ALL_CH=()
for h in "${HOSTS[@]}"; do
    mkdir -p "$T/$h/root" "$T/$h/ch" "$T/$h/vfs"
    start_chsim "$T/$h/ch.log" --fleet "$T/$h/ch" --count "$N"
    start_chsim "$T/$h/vfs.log" --fleet "$T/$h/vfs" --count "$N"
    mapfile -t -O ${#ALL_CH[@]} ALL_CH < <(socks "$T/$h/ch")
done
# One more VM on h3, outside its fleet: its chsim dies on vm.add-fs, so the
# attach's reply is lost and no vm.info can settle it.
start_chsim "$T/h3/odd.log" --api-socket "path=$T/h3/odd.sock" \
    --memory size=512M,shared=on --kernel /dev/null --fault vm.add-fs=die
start_chsim "$T/h3/odd-vfs.log" --api-socket "path=$T/h3/vfs/odd.sock"
for h in "${HOSTS[@]}"; do
    $CTL ready $(socks "$T/$h/ch") $(socks "$T/$h/vfs")
done
$CTL ready "$T/h3/odd.sock" "$T/h3/vfs/odd.sock"

RUN=0
play() {                    # name, ansible-playbook args...: runs, sets RC, OUT
    local name=$1
    shift
    RUN=$((RUN + 1))
    OUT=$T/run$RUN-$name
    RC=0
    ANSIBLE_CALLBACK_TREE_DIR=$OUT /usr/bin/ansible-playbook -i "$INV" "$@" "$PLAYBOOK" \
        >"$OUT.log" 2>&1 || RC=$?
    echo "== $name: ansible-playbook exit $RC"
}
want_rc() {
    [ "$RC" -eq "$1" ] || { echo "want exit $1"; head -c 5000 "$OUT.log"; exit 1; }
}
expect_all() {              # ok|failed changed nchanged nfailed [text]
    local h
    for h in "${HOSTS[@]}"; do $CTL expect "$OUT" "$h" "$@"; done
}
counter() {                 # key: summed over every host's fleet
    $CTL stats "$1" "${ALL_CH[@]}"
}
want_counter() {            # key, value
    local got
    got=$(counter "$1")
    [ "$got" -eq "$2" ] || { echo "chsim $1: $got requests, want $2"; exit 1; }
}
now_ms() { date +%s%3N; }

# 1. --check on the fresh fleet: every VM would change, nothing reaches chsim.
play check-attach --check --diff
want_rc 0
for h in "${HOSTS[@]}"; do
    $CTL expect "$OUT" "$h" ok 1 "$N" 0 "\"socket\": \"$T/$h/vfs/vm0.sock\""
    # --diff: the share each VM would get (the default callback prints it).
    grep -qxF -- "-$T/$h/ch/vm0.sock: (none)" "$OUT.log" &&
        grep -qxF -- "+$T/$h/ch/vm0.sock: $T/$h/vfs/vm0.sock" "$OUT.log" ||
        { echo "$h: no diff"; cat "$OUT.log"; exit 1; }
done
want_counter vm.add-fs 0

# 2. Attach: every VM of every host, once.
t0=$(now_ms)
play attach
t1=$(now_ms)
want_rc 0
expect_all ok 1 "$N" 0 '"id": "cocoon-fs-data"'
ATTACH_WALL=$($CTL wall "$OUT" "${HOSTS[@]}")
want_counter vm.add-fs $((3 * N))
"$BUILD/cocoon" --root-dir "$T/h2/root" -o json vm fs list "$T/h2/ch/vm$((N - 1)).sock" |
    grep -qF "\"socket\":\"$T/h2/vfs/vm$((N - 1)).sock\"" || { echo "h2: share not listed"; exit 1; }

# 3. Again: no change, no add-fs.
t2=$(now_ms)
play attach-again
t3=$(now_ms)
want_rc 0
expect_all ok 0 0 0
want_counter vm.add-fs $((3 * N))

# 4. vm0's socket for every VM: one virtiofsd serves one VM, so cocoon
#    refuses it to every VM but vm0 (in place); every VM still reported.
play conflict -e "share_socket={{ vfs_dir }}/vm0.sock"
want_rc 2
expect_all failed 0 0 $((N - 1)) 'one virtiofsd serves one VM'
want_counter vm.add-fs $((3 * N))

# 5. --check of the detach: would change, nothing removed.
play check-detach --check -e share_state=absent
want_rc 0
expect_all ok 1 "$N" 0
want_counter vm.remove-device 0

# 6. Detach, then again: the second changes nothing.
play detach -e share_state=absent
want_rc 0
expect_all ok 1 "$N" 0
want_counter vm.remove-device $((3 * N))
play detach-again -e share_state=absent
want_rc 0
expect_all ok 0 0 0
want_counter vm.remove-device $((3 * N))

# 7. A failing VM on one host fails that host only, with every VM's outcome;
#    a lost reply reads as outcome unknown.
play one-host-fails -e "{\"extra_vms_h3\": [\"$T/h3/odd.sock\"]}" \
    -e "extra_vms={{ extra_vms_h3 if inventory_hostname == 'h3' else [] }}"
want_rc 2
$CTL expect "$OUT" h1 ok 1 "$N" 0
$CTL expect "$OUT" h2 ok 1 "$N" 0
$CTL expect "$OUT" h3 failed 1 "$N" 1 '"outcome_unknown": true' 'outcome unknown' \
    "$T/h3/ch/vm0.sock"
want_counter vm.add-fs $((6 * N))     # the first attach, and this one

# 8. VMs by a pattern over cocoon's vm list, cocoon_batch with a plan from
#    the controller and one on the host, cocoon_device, and every module's
#    documentation.
NAMED=1
for name in web-1 web-2; do
    "$BUILD/cocoon" --root-dir "$T/h1/root" vm run --name "$name" --shared-memory \
        --ch-binary "$BUILD/chsim" --kernel /dev/null >/dev/null
    start_chsim "$T/h1/$name-vfs.log" --api-socket "path=$T/h1/vfs/$name.sock"
done
$CTL ready "$T/h1/vfs/web-1.sock" "$T/h1/vfs/web-2.sock"
echo '{"op":"fs-list","vm":"web-2"}' > "$T/h1/plan.jsonl"
cat > "$T/more.yml" <<EOT
- hosts: h1
  gather_facts: false
  tasks:
    - cocoon.fleet.cocoon_fs:
        cocoon: "{{ cocoon_bin }}"
        root_dir: "{{ cocoon_root }}"
        vms: ["web-*", "nothing-*"]
        socket: "{{ vfs_dir }}/{name}.sock"
        tag: named
      register: p
    - cocoon.fleet.cocoon_batch:
        cocoon: "{{ cocoon_bin }}"
        root_dir: "{{ cocoon_root }}"
        src: "$T/h1/plan.jsonl"
      register: s
    - assert:
        that:
          - p.changed and p.changed_vms == ['web-1', 'web-2']
          - p.vms['web-2'].socket == vfs_dir ~ '/web-2.sock'
          - not s.changed and s.results[0].fs[0].tag == 'named'
    - cocoon.fleet.cocoon_batch:
        cocoon: "{{ cocoon_bin }}"
        root_dir: "{{ cocoon_root }}"
        plan:
          - {op: fs-detach, vm: "{{ ch_dir }}/vm0.sock", tag: data}
          - {op: fs-list, vm: "{{ ch_dir }}/vm0.sock"}
      register: b
    - assert:
        that:
          - b.changed
          - b.summary.ok == 2
          - (b.results | selectattr('op', 'eq', 'fs-list') | first).fs == []
EOT
PCI=$(ls /sys/bus/pci/devices 2>/dev/null | head -n 1 || true)
if [ -n "$PCI" ]; then
    cat >> "$T/more.yml" <<EOT
    - cocoon.fleet.cocoon_device: &dev
        cocoon: "{{ cocoon_bin }}"
        root_dir: "{{ cocoon_root }}"
        vm: "{{ ch_dir }}/vm1.sock"
        pci: "$PCI"
        id: pt0
      register: d1
    - cocoon.fleet.cocoon_device: *dev
      register: d2
    - cocoon.fleet.cocoon_device:
        <<: *dev
        state: absent
      check_mode: true
      register: d3
    - cocoon.fleet.cocoon_device:
        <<: *dev
        state: absent
      register: d4
    - assert:
        that:
          - d1.changed and not d2.changed and d3.changed and d4.changed
          - d2.vms[ch_dir ~ '/vm1.sock'].before == "$PCI"
EOT
else
    echo "test_ansible: no /sys/bus/pci/devices entry here; cocoon_device not run"
fi
OUT=$T/more
RC=0
/usr/bin/ansible-playbook -i "$INV" "$T/more.yml" >"$OUT.log" 2>&1 || RC=$?
echo "== device and batch: ansible-playbook exit $RC"
want_rc 0
for m in cocoon_fs cocoon_device cocoon_batch; do
    /usr/bin/ansible-doc "cocoon.fleet.$m" >"$T/$m.doc" 2>&1 ||
        { cat "$T/$m.doc"; exit 1; }
    for s in OPTIONS EXAMPLES "RETURN VALUES"; do
        grep -q "^$s" "$T/$m.doc" || { echo "ansible-doc $m: no $s"; cat "$T/$m.doc"; exit 1; }
    done
done

echo "test_ansible: 3 hosts x $N VMs: attach run $((t1 - t0)) ms, no-change run $((t3 - t2)) ms"
echo "test_ansible: cocoon batch on each host in the attach run: $ATTACH_WALL"
echo "test_ansible: ok"
