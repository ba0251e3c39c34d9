#!/usr/bin/env bash
# Remediation engine benchmark: N distinct leaked Tatum keys (default 1000)
# through `keysentry scan --remediate` against keysentry-sim (regenerate
# policy, management templates, no consumers). Prints incidents per second
# and the p50/p99 time from finding (incident recorded) to containment call
# (freeze journaled), read back from the store.
#
#   bench/remediation.sh [N]        PROFILE=debug bench/remediation.sh
#   CONCURRENCY=32 RATE=1000000 bench/remediation.sh
#
# Needs: cargo, curl, sqlite3, python3 (key generation only).
set -euo pipefail

N=${1:-1000}
PROFILE=${PROFILE:-release}
CONCURRENCY=${CONCURRENCY:-16}
RATE=${RATE:-1000000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

if [ "$PROFILE" = release ]; then
    cargo build --quiet --release --manifest-path "$ROOT/Cargo.toml" --workspace --bins
else
    cargo build --quiet --manifest-path "$ROOT/Cargo.toml" --workspace --bins
fi
BIN="$ROOT/target/$PROFILE"

WORK=$(mktemp -d)
SIM_PID=
cleanup() {
    if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/keysentry-sim" >"$WORK/sim.out" &
SIM_PID=$!
for _ in $(seq 100); do
    [ -s "$WORK/sim.out" ] && break
    sleep 0.05
done
SIM=$(head -1 "$WORK/sim.out" | sed 's/^listening on //')

mkdir -p "$WORK/rules" "$WORK/tree"
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
    h = hashlib.sha256(f"bench-{i}".encode()).hexdigest()
    keys.append(f"t-{h[:24]}-{h[24:48]}")
for i, k in enumerate(keys):
    with open(os.path.join(work, "tree", f"svc{i:05}.env"), "w") as f:
        f.write(f"TATUM_API_KEY={k}\n")
with open(os.path.join(work, "keys.json"), "w") as f:
    json.dump([{"key": k, "testnet": True, "subscriptions": i % 3} for i, k in enumerate(keys)], f)
PY
curl -sf -X POST "$SIM/_sim/tatum/keys" -H 'content-type: application/json' \
    --data-binary @"$WORK/keys.json"

cat >"$WORK/config.yaml" <<YAML
state_dir: $WORK/state
remediation:
  mode: auto
  policy: {tatum: regenerate}
  rate_limit: $RATE
  concurrency: $CONCURRENCY
providers:
  tatum:
    api_url: $SIM
    management:
      regenerate: {method: POST, url: "$SIM/mgmt/tatum/regenerate", body: '{"apiKey":"{{secret}}"}', ok: [200], new_key_pointer: /apiKey}
YAML

start=$(date +%s.%N)
status=0
"$BIN/keysentry" scan "$WORK/tree" --rules "$WORK/rules" --config "$WORK/config.yaml" \
    --remediate --format json --output /dev/null 2>"$WORK/stderr" || status=$?
end=$(date +%s.%N)
if [ "$status" -ne 1 ]; then
    echo "keysentry exited $status (expected 1: findings)" >&2
    tail -20 "$WORK/stderr" >&2
    exit 1
fi

DB="$WORK/state/keysentry.db"
q() { sqlite3 "$DB" "$1"; }
ms() { echo "(julianday($1) - julianday($2)) * 86400000.0"; }
closed=$(q "SELECT count(*) FROM incidents WHERE state = 'closed'")
total=$(q "SELECT count(*) FROM incidents")
engine_ms=$(q "SELECT $(ms 'max(updated_at)' 'min(created_at)') FROM incidents")
latencies="SELECT $(ms 'min(j.started_at)' 'i.created_at') AS l FROM incidents i
           JOIN journal j ON j.incident_id = i.id AND j.step = 'freeze' GROUP BY i.id ORDER BY l"
contained=$(q "SELECT count(*) FROM ($latencies)")
pct() { q "SELECT round(l, 1) FROM ($latencies) LIMIT 1 OFFSET (SELECT CAST(($1 * count(*)) AS INT) FROM ($latencies))"; }
calls=$(curl -sf "$SIM/_sim/calls" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')

python3 - "$N" "$total" "$closed" "$contained" "$engine_ms" "$start" "$end" "$(pct 0.50)" "$(pct 0.99)" "$calls" "$PROFILE" "$CONCURRENCY" <<'PY'
import sys
n, total, closed, contained = map(int, sys.argv[1:5])
engine_ms, start, end, p50, p99 = map(float, sys.argv[5:10])
calls, profile, conc = int(sys.argv[10]), sys.argv[11], sys.argv[12]
print(f"findings:                 {n} distinct Tatum keys ({profile} build, concurrency {conc})")
print(f"incidents:                {total} recorded, {closed} closed, {contained} contained")
print(f"provider calls:           {calls}")
print(f"engine time:              {engine_ms/1000:.2f} s  ->  {closed/(engine_ms/1000):.0f} incidents/s")
print(f"whole command:            {end-start:.2f} s  ->  {closed/(end-start):.0f} incidents/s (scan + remediation)")
print(f"finding -> containment:   p50 {p50:.1f} ms, p99 {p99:.1f} ms")
PY
