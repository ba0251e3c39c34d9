#!/usr/bin/env bash
# Decoy-flood benchmark (not a test): how long the real key takes to be
# frozen when DECOYS made-up Tatum keys (each verified, each dead) arrive
# just before it, in the same run:
#
#   none   the real key alone in app.log
#   other  DECOYS decoys in access.log, then the real key in app.log
#   same   DECOYS decoys, then the real key, all in access.log
#
# Containment time = the simulator's freeze call for the real key − the
# moment its line was written. Provider calls are rate-limited as a daemon
# with the default config is (RATE, default 50 calls/s per provider), which
# is what makes a flood expensive.
#
#   bench/decoys.sh                 # DECOYS=1500 RATE=50 RUNS=1
#   PROFILE=dev bench/decoys.sh     # debug build (no release build needed)
#   BIN_DIR=DIR bench/decoys.sh     # keysentry and keysentry-sim from DIR
#
# Talks only to a keysentry-sim it starts on 127.0.0.1.
set -euo pipefail

DECOYS=${DECOYS:-1500}
RATE=${RATE:-50}
RUNS=${RUNS:-1}
PROFILE=${PROFILE:-release}

root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${BIN_DIR:-}" ]; then
    # Binaries built elsewhere, e.g. from an older commit for comparison.
    bin=$BIN_DIR
elif [ "$PROFILE" = release ]; then
    cargo build --release --bins --manifest-path "$root/Cargo.toml" >&2
    bin=${CARGO_TARGET_DIR:-$root/target}/release
else
    cargo build --bins --manifest-path "$root/Cargo.toml" >&2
    bin=${CARGO_TARGET_DIR:-$root/target}/debug
fi
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # FILE PATTERN SECONDS
    for _ in $(seq $(($3 * 10))); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "timed out waiting for '$2' in $1" >&2
    tail -20 "$1" >&2
    exit 1
}

"$bin/keysentry-sim" >"$work/sim.out" &
pids+=("$!")
wait_for "$work/sim.out" "listening on" 10
sim=$(head -1 "$work/sim.out" | sed 's/^listening on //')

# KIND RUN: one daemon, one scenario; prints the containment time in ms.
scenario() {
    local kind=$1 run=$2 dir="$work/$1-$2"
    mkdir -p "$dir/logs"
    : >"$dir/logs/access.log"
    : >"$dir/logs/app.log"
    cat >"$dir/keysentry.yaml" <<YAML
state_dir: $dir/state
watch:
  logs: ["$dir/logs/*.log"]
  poll: 200ms
http:
  listen: 127.0.0.1:0
remediation:
  mode: auto
  rate_limit: $RATE
  policy: {tatum: freeze}
providers:
  tatum:
    api_url: $sim
YAML
    "$bin/keysentry" daemon --config "$dir/keysentry.yaml" --log-format json 2>"$dir/daemon.err" &
    local daemon=$!
    pids+=("$daemon")
    wait_for "$dir/daemon.err" "daemon ready" 30
    python3 - "$kind" "$dir" "$sim" "$DECOYS" "$run" <<'PY'
import hashlib, json, sys, time, urllib.request
kind, d, sim, n, run = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
def key(seed):
    h = hashlib.sha256(seed.encode()).hexdigest()
    return f"t-{h[:24]}-{h[24:48]}"
real = key(f"real {kind} {run} {time.time()}")
req = urllib.request.Request(sim + "/_sim/tatum/keys", data=json.dumps({"key": real}).encode(),
                             headers={"content-type": "application/json"}, method="POST")
urllib.request.urlopen(req).read()
flood = "".join(f"GET /login x-api-key: {key(f'decoy {kind} {run} {i}')} 401\n" for i in range(n))
line = f"POST /pay x-api-key: {real} 200\n"
written = time.time() * 1000
if kind == "none":
    open(f"{d}/logs/app.log", "a").write(line)
elif kind == "other":
    open(f"{d}/logs/access.log", "a").write(flood)
    open(f"{d}/logs/app.log", "a").write(line)
else:
    open(f"{d}/logs/access.log", "a").write(flood + line)
fp = hashlib.sha256(real.encode()).hexdigest()
deadline = time.time() + 600
while time.time() < deadline:
    calls = json.load(urllib.request.urlopen(sim + "/_sim/calls"))
    t = [c["at_unix_ms"] for c in calls
         if c["path"] == "/v3/tatum/freeze" and c.get("key_fingerprint") == fp]
    if t:
        print(f"{t[0] - written:.0f}")
        break
    time.sleep(0.05)
else:
    print("timeout")
PY
    kill -TERM "$daemon"
    wait "$daemon" || true
}

echo "decoys: $DECOYS, rate limit: $RATE calls/s, binaries: $bin, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for run in $(seq "$RUNS"); do
    for kind in none other same; do
        ms=$(scenario "$kind" "$run")
        echo "run $run: $kind: real key frozen $ms ms after its line was written"
    done
done
