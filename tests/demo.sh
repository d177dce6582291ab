#!/usr/bin/env bash
# tests/demo.sh: the main job, end to end in a few seconds.  Starts a fleet
# of simulated Cloud Hypervisor VMs through `cocoon vm run`, one virtiofsd per
# VM, batch-attaches a share to all of them with a socket template, inspects
# one, detaches with --wait, prints a latency table, and cleans up every
# process it started.  Every line it prints after "$ " is a command that is
# run exactly as printed (eval), so a user can copy it into a shell.
#
# Usage: tests/demo.sh [BUILD_DIR]     (make demo runs it with build/)
# Env:   DEMO_VMS (default 8)
set -euo pipefail

BUILD=${1:-${COCOON_BUILD_DIR:-build}}
COCOON=$(realpath "$BUILD/cocoon")
CHSIM=$(realpath "$BUILD/chsim")
VIRTIOFSD=${VIRTIOFSD:-/usr/lib/qemu/virtiofsd}
N=${DEMO_VMS:-8}
ROOT=$(mktemp -d /tmp/cocoon-demo-XXXXXX)
BACKEND_PIDS=()
NAMES=()
for i in $(seq 1 "$N"); do NAMES+=("web-$i"); done

if [ -t 1 ]; then B=$'\e[1m'; G=$'\e[32m'; R=$'\e[31m'; D=$'\e[2m'; N0=$'\e[0m'
else B=; G=; R=; D=; N0=; fi

c() { "$COCOON" --root-dir "$ROOT" "$@"; }
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N0"; }
# Prints a command line, then runs exactly that line.
run() { printf '%s$ %s%s\n' "$D" "$1" "$N0"; eval "$1"; }

cleanup() {
    local rc=$?
    set +e
    # rm --force stops what still runs (shutdown, then signals, bounded).
    if [ ${#NAMES[@]} -gt 0 ] && [ -f "$ROOT/cloudhypervisor/db/vms.json" ]; then
        c vm rm --force "${NAMES[@]}" >/dev/null 2>&1
    fi
    for p in "${BACKEND_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${BACKEND_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$ROOT"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for_socket() {        # path, tries of 20 ms
    local n=0
    while [ ! -S "$1" ] && [ $n -lt "$2" ]; do sleep 0.02; n=$((n + 1)); done
    [ -S "$1" ]
}

step "The cocoon and chsim just built, on a state root of its own"
run "export PATH=$(dirname "$COCOON"):\$PATH COCOON_ROOT_DIR=$ROOT"

step "Starting $N simulated Cloud Hypervisor VMs (shared memory on)"
run "for i in \$(seq 1 $N); do cocoon vm run --name web-\$i --shared-memory --ch-binary chsim --kernel /dev/null; done"
run "cocoon vm ls"

step "Starting one virtiofsd per VM"
mkdir -p "$ROOT/vfs"
backend=virtiofsd
[ -x "$VIRTIOFSD" ] || backend=listener
for name in "${NAMES[@]}"; do
    share="$ROOT/share/$name"
    sock="$ROOT/vfs/$name.sock"
    mkdir -p "$share"
    echo "hello from the host, $name" > "$share/README"
    if [ "$backend" = virtiofsd ]; then
        "$VIRTIOFSD" --socket-path="$sock" -o source="$share" -o sandbox=chroot \
            -o log_level=err >"$ROOT/vfs/$name.log" 2>&1 &
        BACKEND_PIDS+=($!)
        if ! wait_for_socket "$sock" 150; then
            echo "virtiofsd did not come up (see below); using a plain listener instead"
            tail -n 3 "$ROOT/vfs/$name.log" || true
            backend=listener
        fi
    fi
    if [ "$backend" = listener ]; then
        # No virtiofsd here: a chsim serving the path is a listening unix
        # socket, which is all the simulated VMM connects to.
        "$CHSIM" --api-socket "path=$sock" >/dev/null 2>&1 &
        BACKEND_PIDS+=($!)
        wait_for_socket "$sock" 150
    fi
done
echo "$N backends ($backend) listening in $ROOT/vfs/"

step "Batch attach: one command, all VMs concurrently, socket template {name}"
attach_rc=0
run "cocoon vm fs attach ${NAMES[*]} --socket $ROOT/vfs/{name}.sock --tag share -o json > $ROOT/attach.json" ||
    attach_rc=$?
echo "  (one JSON object per VM in $ROOT/attach.json, shown here as a table)"
while IFS= read -r line; do
    case $line in
    *'"summary"'*) ;;
    *'"ok":true'*)
        vm=$(sed -n 's/.*"vm":"\([^"]*\)".*/\1/p' <<<"$line")
        id=$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p' <<<"$line")
        ms=$(sed -n 's/.*"latency_ms":\([0-9.]*\).*/\1/p' <<<"$line")
        printf '  %s%-8s%s attached  id=%s  %8s ms\n' "$G" "$vm" "$N0" "$id" "$ms" ;;
    *)
        printf '  %s%s%s\n' "$R" "$line" "$N0" ;;
    esac
done < "$ROOT/attach.json"

step "vm inspect web-1 (attached devices are read live from the VMM)"
run "cocoon vm inspect web-1"

run "cocoon vm fs list ${NAMES[*]:0:3}"

step "Batch detach with --wait (until the guest ejects the device)"
detach_rc=0
run "cocoon vm fs detach ${NAMES[*]} --tag share --wait=5 -o json > $ROOT/detach.json" || detach_rc=$?
grep -c '"ok":true' "$ROOT/detach.json" | sed 's/^/  detached: /'

summary_field() {      # file, field
    sed -n "s/.*\"summary\".*\"$2\":\([0-9.]*\).*/\1/p" "$1"
}
step "Result"
printf '  %-8s %-10s %-10s %-12s %-12s %-10s\n' VMs attached detached "p50 attach" "p99 attach" "wall"
printf '  %-8s %-10s %-10s %-12s %-12s %-10s\n' "$N" \
    "$(summary_field "$ROOT/attach.json" ok)/$N" "$(summary_field "$ROOT/detach.json" ok)/$N" \
    "$(summary_field "$ROOT/attach.json" p50_ms) ms" "$(summary_field "$ROOT/attach.json" p99_ms) ms" \
    "$(summary_field "$ROOT/attach.json" wall_ms) ms"

step "Stopping and removing the VMs"
run "cocoon vm stop ${NAMES[*]}"
run "cocoon vm rm ${NAMES[*]}"
NAMES=()

if [ $attach_rc -ne 0 ] || [ $detach_rc -ne 0 ]; then
    echo "${R}demo: some operations failed${N0}"
    exit 1
fi
echo
echo "${G}demo: $N VMs attached and detached, everything cleaned up${N0}"
