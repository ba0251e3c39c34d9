#!/usr/bin/env bash
# GitHub webhook benchmark: signed, real-shaped push deliveries at RATE/s for
# DURATION s, each pushing a commit (prepared in keysentry-sim) that adds a
# distinct live Tatum key. Prints:
#   - acknowledgement latency p50/p90/p99/max (target: p99 < 50 ms at 200/s
#     on 2 cores), measured by the sender;
#   - delivery -> containment call p50/p99: from sending the delivery to the
#     simulator receiving `PUT /v3/tatum/freeze` with that key.
#
#   bench/webhook.sh                    RATE=400 DURATION=20 bench/webhook.sh
#   PROFILE=debug bench/webhook.sh      MODE=alone bench/webhook.sh
#
# MODE=daemon (default) runs `keysentry daemon` with the webhook, the engine
# (policy tatum: freeze) and the store. MODE=alone runs only the webhook
# router and worker (bench/webhook_serve.rs, a sink that counts), and the
# second figure becomes delivery -> diff fetched from GitHub.
set -euo pipefail

RATE=${RATE:-200}
DURATION=${DURATION:-10}
PROFILE=${PROFILE:-release}
MODE=${MODE:-daemon}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

FLAGS=(--quiet --manifest-path "$ROOT/Cargo.toml" --workspace --bins
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

# Waits until FILE mentions `listening on http://ADDR` and prints ADDR.
address_in() {
    for _ in $(seq 400); do
        if grep -q 'listening on http://' "$1" 2>/dev/null; then break; fi
        sleep 0.05
    done
    grep -o 'listening on http://[0-9.:]*' "$1" | head -1 | sed 's/^listening on //'
}

"$BIN/keysentry-sim" >"$WORK/sim.out" &
PIDS+=($!)
SIM=$(address_in "$WORK/sim.out")

export KEYSENTRY_BENCH_SECRET="bench-secret-$$"
mkdir -p "$WORK/state"
if [ "$MODE" = daemon ]; then
    cat >"$WORK/config.yaml" <<YAML
state_dir: $WORK/state
http:
  listen: 127.0.0.1:0
github:
  api_url: $SIM
  webhook:
    listen: 127.0.0.1:0
    secret_env: KEYSENTRY_BENCH_SECRET
remediation:
  mode: auto
  policy: {tatum: freeze}
  rate_limit: 100000
providers:
  tatum:
    api_url: $SIM
YAML
    KEYSENTRY_LOG=info "$BIN/keysentry" daemon --config "$WORK/config.yaml" \
        >/dev/null 2>"$WORK/server.log" &
    MEASURE=freeze
else
    "$BIN/examples/webhook-serve" --api-url "$SIM" --state-dir "$WORK/state" \
        >"$WORK/server.log" 2>&1 &
    MEASURE=compare
fi
PIDS+=($!)
HOOK=$(address_in "$WORK/server.log")
if [ -z "$HOOK" ]; then
    echo "the webhook did not start:" >&2
    cat "$WORK/server.log" >&2
    exit 1
fi

echo "$MODE: $HOOK/github/webhook, simulator: $SIM, $RATE/s for ${DURATION}s ($PROFILE, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
"$BIN/examples/webhook-load" --url "$HOOK/github/webhook" --sim "$SIM" \
    --secret-env KEYSENTRY_BENCH_SECRET --rate "$RATE" --seconds "$DURATION" \
    --measure "$MEASURE"
