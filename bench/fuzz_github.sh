#!/usr/bin/env bash
# A long property-test campaign over the GitHub side (src/github/fuzz.rs):
# the webhook endpoint, the payload parsers, the signature and the API
# answers, CASES (default 100,000) cases each, release build.
#
#   bench/fuzz_github.sh            CASES=1000000 bench/fuzz_github.sh
set -euo pipefail
CASES=${CASES:-100000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
start=$(date +%s)
out=$(PROPTEST_CASES=$CASES cargo test --quiet --release --manifest-path "$ROOT/Cargo.toml" \
    --lib github::fuzz 2>&1) || { echo "$out"; exit 1; }
passed=$(grep -o '[0-9]* passed' <<<"$out" | head -1 | cut -d' ' -f1)
echo "$passed properties x $CASES cases = $((passed * CASES)) cases, no failure, $(( $(date +%s) - start )) s"
