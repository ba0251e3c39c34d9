#!/usr/bin/env bash
# GitHub webhook benchmark: signed push deliveries at RATE/s for DURATION s
# (each adds a distinct Tatum key in a commit prepared in keysentry-sim).
# Prints acknowledgement latency p50/p90/p99 (target: p99 < 50 ms at 200/s on
# 2 cores) and delivery -> processing p50/p99.
#
#   bench/webhook.sh                    RATE=400 DURATION=20 bench/webhook.sh
#   PROFILE=debug bench/webhook.sh
#
# The webhook runs alone (bench/webhook_serve.rs: router + worker, a sink that
# only counts), so the second figure is delivery -> diff fetched from GitHub.
set -euo pipefail

RATE=${RATE:-200}
DURATION=${DURATION:-10}
PROFILE=${PROFILE:-release}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

FLAGS=(--quiet --manifest-path "$ROOT/Cargo.toml" --bin keysentry-sim
       --example webhook-serve --example webhook-load)
if [ "$PROFILE" = release ]; then FLAGS+=(--release); fi
cargo build "${FLAGS[@]}"
BIN="$ROOT/target/$PROFILE"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Waits for a process's first stdout line and prints the address in it.
address_of() {
    for _ in $(seq 200); do
        [ -s "$1" ] && break
        sleep 0.05
    done
    head -1 "$1" | sed 's/^listening on //'
}

"$BIN/keysentry-sim" >"$WORK/sim.out" &
PIDS+=($!)
SIM=$(address_of "$WORK/sim.out")

export KEYSENTRY_BENCH_SECRET="bench-secret-$$"
mkdir -p "$WORK/state"
"$BIN/examples/webhook-serve" --api-url "$SIM" --state-dir "$WORK/state" \
    >"$WORK/serve.out" 2>"$WORK/serve.err" &
PIDS+=($!)
HOOK=$(address_of "$WORK/serve.out")

echo "webhook: $HOOK/github/webhook, simulator: $SIM, $RATE/s for ${DURATION}s ($PROFILE, $(nproc) cores)"
"$BIN/examples/webhook-load" --url "$HOOK/github/webhook" --sim "$SIM" \
    --secret-env KEYSENTRY_BENCH_SECRET --rate "$RATE" --seconds "$DURATION" \
    --measure compare
