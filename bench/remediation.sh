#!/usr/bin/env bash
# Remediation engine benchmark: N distinct leaked Tatum keys (default 1000)
# through `keysentry scan --remediate` against keysentry-sim (regenerate
# policy, management templates, no consumers: the new keys go to escrow).
# Prints incidents per second and the p50/p99 time from finding (incident
# recorded) to containment call (freeze journaled), read back from the store.
#
#   bench/remediation.sh [N]        PROFILE=debug bench/remediation.sh
#   CONCURRENCY=32 RATE=1000000 bench/remediation.sh
#   MIX=1 bench/remediation.sh [N]  # a mix of 13 providers (bench/remediation_mix.py)
#
# With MIX=1 the N keys are spread over Tatum (freeze), GitHub, Slack,
# GitLab, npm, SendGrid, Cloudflare, Vercel, Doppler, Buildkite, Heroku,
# DigitalOcean and the Rust registry (revoke), found by the built-in rules;
# containment is a provider's state-changing call (freeze, revoke, or a
# multi-step revoke's delete), and p50/p99 are printed per provider too.
#
# Needs: cargo, curl, sqlite3, python3 (key generation only; MIX=1 also the
# `regex` and `yaml` modules, as bench/recall.sh).
set -euo pipefail

N=${1:-1000}
MIX=${MIX:-0}
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

RULES_ARG=(--rules "$WORK/rules")
if [ "$MIX" = 1 ]; then
    providers=$(python3 "$ROOT/bench/remediation_mix.py" "$N" "$ROOT/rules" "$WORK" "$SIM")
    {
        echo "state_dir: $WORK/state"
        echo "remediation:"
        echo "  mode: auto"
        echo "  policy: {tatum: freeze}"
        echo "  rate_limit: $RATE"
        echo "  concurrency: $CONCURRENCY"
        echo "providers:"
        for p in $providers; do echo "  $p: {api_url: '$SIM'}"; done
    } >"$WORK/config.yaml"
    RULES_ARG=()
fi

if [ "$MIX" != 1 ]; then
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

# No consumer holds the keys: the escrow is where the new keys go (without
# a destination keysentry would not regenerate).
"$BIN/keysentry" config init-escrow --identity-file "$WORK/escrow.key" >/dev/null
cat >"$WORK/config.yaml" <<YAML
state_dir: $WORK/state
remediation:
  mode: auto
  escrow: {identity_file: $WORK/escrow.key}
  policy: {tatum: regenerate}
  rate_limit: $RATE
  concurrency: $CONCURRENCY
providers:
  tatum:
    api_url: $SIM
    management:
      regenerate: {method: POST, url: "$SIM/mgmt/tatum/regenerate", body: '{"apiKey":"{{secret}}"}', ok: [200], new_key_pointer: /apiKey}
YAML
fi

start=$(date +%s.%N)
status=0
"$BIN/keysentry" scan "$WORK/tree" "${RULES_ARG[@]}" --config "$WORK/config.yaml" \
    --remediate --format json --output /dev/null 2>"$WORK/stderr" || status=$?
end=$(date +%s.%N)
if [ "$status" -ne 1 ]; then
    echo "keysentry exited $status (expected 1: findings)" >&2
    tail -20 "$WORK/stderr" >&2
    exit 1
fi

DB="$WORK/state/keysentry.db"
# Containment: the freeze, the revoke, or a multi-step revoke's delete (the
# last journaled step of an incident; reads are not journaled).
CONTAIN="(j.step IN ('freeze', 'revoke') OR j.step LIKE 'revoke:%')"
q() { sqlite3 "$DB" "$1"; }
ms() { echo "(julianday($1) - julianday($2)) * 86400000.0"; }
closed=$(q "SELECT count(*) FROM incidents WHERE state = 'closed'")
total=$(q "SELECT count(*) FROM incidents")
engine_ms=$(q "SELECT $(ms 'max(updated_at)' 'min(created_at)') FROM incidents")
# One row per contained incident: provider | finding -> containment (ms).
q "SELECT i.provider, $(ms 'max(j.started_at)' 'i.created_at') FROM incidents i
   JOIN journal j ON j.incident_id = i.id AND $CONTAIN GROUP BY i.id" >"$WORK/latencies"
calls=$(curl -sf "$SIM/_sim/calls" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
q "SELECT '  waiting: ' || provider || ': ' || substr(reason, 1, 160) FROM incidents WHERE state IN ('waiting-manual', 'failed') GROUP BY provider"
echo "states:                   $(q "SELECT group_concat(state || ' ' || n, ', ') FROM (SELECT state, count(*) AS n FROM incidents GROUP BY state)")"

python3 - "$N" "$total" "$closed" "$engine_ms" "$start" "$end" "$calls" "$PROFILE" "$CONCURRENCY" "$MIX" "$WORK/latencies" <<'PY'
import collections, sys
n, total, closed = map(int, sys.argv[1:4])
engine_ms, start, end = map(float, sys.argv[4:7])
calls, profile, conc, mix = int(sys.argv[7]), sys.argv[8], sys.argv[9], sys.argv[10] == "1"
rows = [l.split("|") for l in open(sys.argv[11]).read().split()]
by = collections.defaultdict(list)
for p, ms in rows:
    by[p].append(float(ms))
every = sorted(ms for v in by.values() for ms in v)

def pct(v, q):
    return v[min(len(v) - 1, int(q * len(v)))]

what = f"{len(by)} providers" if mix else "Tatum"
print(f"findings:                 {n} distinct keys, {what} ({profile} build, concurrency {conc})")
print(f"incidents:                {total} recorded, {closed} closed, {len(every)} contained")
print(f"provider calls:           {calls}")
print(f"engine time:              {engine_ms/1000:.2f} s  ->  {closed/(engine_ms/1000):.0f} incidents/s")
print(f"whole command:            {end-start:.2f} s  ->  {closed/(end-start):.0f} incidents/s (scan + remediation)")
print(f"finding -> containment:   p50 {pct(every, 0.5):.1f} ms, p99 {pct(every, 0.99):.1f} ms")
if mix:
    for p in sorted(by):
        v = sorted(by[p])
        print(f"  {p:<14} {len(v):>5} contained   p50 {pct(v, 0.5):7.1f} ms   p99 {pct(v, 0.99):7.1f} ms")
PY
