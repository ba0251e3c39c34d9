#!/usr/bin/env bash
# Unauthenticated clients against `keysentry daemon` (issue 9.4): /healthz
# latency and the daemon's RSS with no load, then while SLOW (300)
# slow-header connections and BODIES (40) clients posting BODY_MIB (20) MiB
# webhook bodies are open, in the same run (bench/http_abuse.py). Both with
# unsigned bodies and with wrongly signed ones (read whole before the MAC
# fails, within http.max_inflight_body_bytes). Default limits.
#
#   bench/http_abuse.sh          PROFILE=debug SECONDS_EACH=10 bench/http_abuse.sh
set -euo pipefail

PROFILE=${PROFILE:-release}
SECONDS_EACH=${SECONDS_EACH:-20}
SLOW=${SLOW:-300}
BODIES=${BODIES:-40}
BODY_MIB=${BODY_MIB:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

FLAGS=(--quiet --manifest-path "$ROOT/Cargo.toml" --bin keysentry)
if [ "$PROFILE" = release ]; then FLAGS+=(--release); fi
cargo build "${FLAGS[@]}"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"

WORK=$(mktemp -d)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/config.yaml" <<YAML
state_dir: $WORK/state
http:
  listen: 127.0.0.1:0
github:
  api_url: http://127.0.0.1:9
  webhook:
    listen: 127.0.0.1:0
    secret_env: KEYSENTRY_BENCH_SECRET
YAML

for mode in unsigned forged; do
    KEYSENTRY_BENCH_SECRET="bench-secret-$$" "$BIN/keysentry" daemon --config "$WORK/config.yaml" \
        2>"$WORK/daemon.log" &
    PID=$!
    for _ in $(seq 400); do
        if grep -q 'listening on http://' "$WORK/daemon.log" 2>/dev/null; then break; fi
        sleep 0.05
    done
    ADDR=$(grep -o 'listening on http://[0-9.:]*' "$WORK/daemon.log" | head -1 | sed 's|^listening on http://||')
    echo "== $mode bodies ($PROFILE build, open-file limit $(ulimit -n))"
    EXTRA=()
    if [ "$mode" = forged ]; then EXTRA=(--forged); fi
    python3 "$ROOT/bench/http_abuse.py" "$ADDR" "$PID" --slow "$SLOW" --bodies "$BODIES" \
        --body-mib "$BODY_MIB" --seconds "$SECONDS_EACH" "${EXTRA[@]}"
    curl -s "http://$ADDR/metrics" | grep -E '^keysentry_http_(connections_refused|body_budget_refused|body_bytes_inflight_peak|timeouts)' || true
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
    rm -rf "$WORK/state"
done
