# tests/support/expect.sh: sourced by the shell tests that drive the cocoon
# command.  The caller sets C, an array holding the cocoon command and its
# global flags, before calling expect.
failures=0
ok()   { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# expect WANT_RC WANT_SUBSTRING cocoon-args...: stdout and stderr together
expect() {
    local want_rc=$1 want=$2 out rc=0
    shift 2
    out=$("${C[@]}" "$@" 2>&1) || rc=$?
    if [ "$rc" -ne "$want_rc" ] || [[ "$out" != *"$want"* ]]; then
        fail "cocoon $*: rc $rc, output: $out (want rc $want_rc and \"$want\")"
    else
        ok "cocoon $*"
    fi
}
