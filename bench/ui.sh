#!/usr/bin/env bash
# Dashboard benchmark (not a test): how long the incident list and an
# incident page take with N incidents (default 10,000) in the store, against
# `/healthz` on the same daemon in the same run as the reference.
#
#   bench/ui.sh [N]            PROFILE=debug bench/ui.sh     REQUESTS=200 bench/ui.sh
#   CHROMIUM=0 bench/ui.sh     # skip the browser load (needs tests/browser's npm ci)
#
# The store is seeded through the product, not SQL: N distinct Tatum keys,
# one per file, through `keysentry scan --remediate` against keysentry-sim
# (freeze policy; 70 % of the keys live at the simulator, so contained, the
# rest not-live). Then `keysentry daemon` serves /ui on that store
# (remediation off, so nothing moves while measuring) and curl fetches each
# page REQUESTS times (default 50) with `Authorization: Bearer`, one at a
# time; median and p99 of curl's time_total. With chromium and
# tests/browser/node_modules present, tests/browser/load.mjs also signs in
# and loads the list in chromium (navigation timing, median of 10).
#
# Needs: cargo, curl, python3 (key generation and figures only). Talks only
# to 127.0.0.1.
set -euo pipefail

N=${1:-10000}
PROFILE=${PROFILE:-release}
REQUESTS=${REQUESTS:-50}
CHROMIUM=${CHROMIUM:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TOKEN=bench-ui-token-$(date +%s%N)

if [ "$PROFILE" = release ]; then
    cargo build --quiet --release --manifest-path "$ROOT/Cargo.toml" --workspace --bins
else
    cargo build --quiet --manifest-path "$ROOT/Cargo.toml" --workspace --bins
fi
BIN="$TARGET/$PROFILE"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
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

# --- seed the store ---------------------------------------------------------
"$BIN/keysentry-sim" >"$WORK/sim.out" &
PIDS+=("$!")
wait_for "$WORK/sim.out" "listening on" 10
SIM=$(head -1 "$WORK/sim.out" | sed 's/^listening on //')

mkdir -p "$WORK/rules" "$WORK/tree" "$WORK/logs"
cat >"$WORK/rules/tatum.yaml" <<'YAML'
rules:
  - id: tatum.bench-key
    name: Tatum API key (bench)
    provider: tatum
    keywords: ["t-"]
    pattern: '\b(?P<secret>t-[0-9a-f]{24}-[0-9a-f]{24})\b'
YAML
python3 - "$N" "$WORK" <<'PY'
import hashlib, json, os, sys
n, work = int(sys.argv[1]), sys.argv[2]
keys = []
for i in range(n):
    h = hashlib.sha256(f"bench-ui-{i}".encode()).hexdigest()
    keys.append(f"t-{h[:24]}-{h[24:48]}")
# 100 files a directory, as services lay out their env files.
for i, k in enumerate(keys):
    d = os.path.join(work, "tree", f"team{i // 100:03}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"svc{i:05}.env"), "w") as f:
        f.write(f"TATUM_API_KEY={k}\n")
live = [{"key": k, "testnet": True, "subscriptions": 0} for i, k in enumerate(keys) if i % 10 < 7]
with open(os.path.join(work, "keys.json"), "w") as f:
    json.dump(live, f)
PY
curl -sf -X POST "$SIM/_sim/tatum/keys" -H 'content-type: application/json' \
    --data-binary @"$WORK/keys.json" >/dev/null

cat >"$WORK/seed.yaml" <<YAML
state_dir: $WORK/state
remediation:
  mode: auto
  policy: {tatum: freeze}
  rate_limit: 1000000
  concurrency: 16
providers:
  tatum:
    api_url: $SIM
YAML
seed_start=$(date +%s.%N)
status=0
"$BIN/keysentry" scan "$WORK/tree" --rules "$WORK/rules" --config "$WORK/seed.yaml" \
    --remediate --format json --output /dev/null 2>"$WORK/seed.err" || status=$?
if [ "$status" -ne 1 ]; then
    echo "seeding: keysentry scan exited $status (expected 1: findings)" >&2
    tail -20 "$WORK/seed.err" >&2
    exit 1
fi
seed_s=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$seed_start" "$(date +%s.%N)")

# --- serve it ---------------------------------------------------------------
cat >"$WORK/ui.yaml" <<YAML
state_dir: $WORK/state
remediation:
  mode: off
watch:
  logs: ["$WORK/logs/*.log"]
http:
  listen: 127.0.0.1:0
  ui:
    token_env: KEYSENTRY_UI_TOKEN
YAML
KEYSENTRY_UI_TOKEN=$TOKEN "$BIN/keysentry" daemon --config "$WORK/ui.yaml" --log-format json \
    2>"$WORK/daemon.err" &
PIDS+=("$!")
wait_for "$WORK/daemon.err" "daemon ready" 60
URL=http://$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$WORK/daemon.err" | head -1 | sed 's|.*http://||')
counts=$(curl -sf "$URL/metrics" | awk '/^keysentry_incidents\{/ {s += $2} END {print s + 0}')
[ "$counts" -eq "$N" ] || { echo "the store holds $counts incidents, not $N" >&2; exit 1; }
# The newest incident: a page that exists whatever the ids.
ID=$(curl -sf -H "Authorization: Bearer $TOKEN" "$URL/ui/?sort=age" \
    | grep -o 'href="/ui/incidents/[0-9]*"' | head -1 | grep -o '[0-9]*' || true)
[ -n "$ID" ] || { echo "the list at $URL/ui/ links to no incident" >&2; exit 1; }

# --- measure ----------------------------------------------------------------
measure() { # NAME PATH [AUTH]
    local out="$WORK/times-$1"
    : >"$out"
    local auth=()
    [ "${3:-}" = auth ] && auth=(-H "Authorization: Bearer $TOKEN")
    for _ in $(seq "$REQUESTS"); do
        curl -s -o "$WORK/body" -w '%{http_code} %{time_total} %{size_download}\n' "${auth[@]}" "$URL$2" >>"$out"
    done
    if awk '$1 != 200 { bad = 1 } END { exit !bad }' "$out"; then
        echo "GET $2 answered $(awk '$1 != 200 {print $1; exit}' "$out")" >&2
        exit 1
    fi
    echo "$1 $2"
}
: >"$WORK/names"
measure healthz /healthz >>"$WORK/names"
measure list /ui/ auth >>"$WORK/names"
measure list-contained '/ui/?state=contained' auth >>"$WORK/names"
measure list-last-page "/ui/?sort=-age&page=$((N / 100))" auth >>"$WORK/names"
measure incident "/ui/incidents/$ID" auth >>"$WORK/names"
measure api-list /ui/api/incidents auth >>"$WORK/names"

browser=""
if [ "$CHROMIUM" = 1 ] && [ -x /usr/bin/chromium ] && [ -d "$ROOT/tests/browser/node_modules" ]; then
    browser=$(KS_UI_URL=$URL KS_UI_TOKEN=$TOKEN KS_PROFILE_DIR="$WORK/profile" \
        KS_PATHS="/ui/ /ui/incidents/$ID" node "$ROOT/tests/browser/load.mjs")
fi

python3 - "$WORK" "$N" "$PROFILE" "$REQUESTS" "$seed_s" "$browser" <<'PY'
import os, statistics, sys
work, n, profile, requests, seed_s, browser = sys.argv[1:7]
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
print(f"store: {n} incidents (seeded in {seed_s} s), {profile} build, {requests} requests a page, one at a time")
ref = None
for line in open(os.path.join(work, "names")):
    name, path = line.split(maxsplit=1)
    rows = [l.split() for l in open(os.path.join(work, f"times-{name}"))]
    ms = [float(r[1]) * 1000 for r in rows]
    med, p99 = statistics.median(ms), pct(ms, 99)
    ref = ref or med
    size = int(rows[-1][2])
    print(f"{name:15} GET {path.strip():28} median {med:7.2f} ms  p99 {p99:7.2f} ms  "
          f"{med / ref:6.1f}x /healthz  {size / 1024:6.1f} KiB")
if browser:
    print(browser)
PY
