#!/usr/bin/env bash
# Long property-test campaign: every `proptest_*` test in the suite (the
# config and rule loaders and the scanner in tests/proptests.rs; the webhook
# endpoint, payload and signature path and the GitHub API answers in the
# library's github::fuzz), each for CASES generated inputs, then the number
# of cases tried.
#
#   bash bench/fuzz.sh [CASES]        (default 100000 per test)
#
# Environment:
#   FUZZ_PROFILE  cargo profile (default release; `dev` skips the release build)
#   CARGO_TARGET_DIR as usual
#
# A failure prints proptest's minimal failing input and exits 1. In the
# normal test suite the same tests run 32 cases each.
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=${1:-${PROPTEST_CASES:-100000}}
PROFILE=${FUZZ_PROFILE:-release}
start=$(date +%s)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
{
    PROPTEST_CASES=$CASES cargo test --profile "$PROFILE" --test tests proptest_ \
        -- --test-threads=2 &&
    PROPTEST_CASES=$CASES cargo test --profile "$PROFILE" --lib proptest_ \
        -- --test-threads=2
} >"$log" 2>&1 || status=$?
grep -E '^test |minimal failing input|Test failed' "$log" || true
if [ "$status" -ne 0 ]; then
    tail -n 40 "$log"
    echo "fuzz campaign FAILED after $(( $(date +%s) - start ))s"
    exit 1
fi
# proptest runs exactly CASES passing cases per test (no filters are used).
passed=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$log" | awk '{ n += $1 } END { print n + 0 }')
echo "cases tried: $(( passed * CASES )) ($passed proptest_ tests x $CASES cases) in $(( $(date +%s) - start ))s, no failure"
