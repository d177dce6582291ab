#!/usr/bin/env bash
# tests/test_chsim_schema.sh: chsim held to Cloud Hypervisor's own API
# definition.  Runs tests/chsim/schema_check.py (Debian's python3-yaml and
# python3-jsonschema, hence /usr/bin/python3) on the built chsim with CH's
# OpenAPI document and error texts: shared/ch-openapi beside the checkout,
# beside the directory holding a worktree, or $CH_OPENAPI.
#
# Usage: tests/test_chsim_schema.sh   (make test runs it from the top of the tree)
set -euo pipefail

BUILT=${COCOON_BUILD_DIR:-build}
dir=${CH_OPENAPI:-}
if [ -z "$dir" ]; then
    for d in ../shared/ch-openapi ../../shared/ch-openapi; do
        if [ -f "$d/cloud-hypervisor.yaml" ]; then dir=$d; break; fi
    done
fi
# The document is Cloud Hypervisor's, not part of this tree: without it
# the check cannot run, which is a skip (exit 77), never a pass.
if [ -z "$dir" ]; then
    echo "SKIP: Cloud Hypervisor's API document not found: set CH_OPENAPI to the" \
         "directory holding cloud-hypervisor.yaml and rust-facts.json" >&2
    exit 77
fi
exec /usr/bin/python3 tests/chsim/schema_check.py "$BUILT/chsim" \
    "$dir/cloud-hypervisor.yaml" "$dir/rust-facts.json"
