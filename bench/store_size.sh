#!/usr/bin/env bash
# Store size benchmark (not a test): how large the SQLite store is with N
# incidents (default 10,000), for the README's "Run a fleet" sizing.
#
#   bench/store_size.sh [N]        PROFILE=debug bench/store_size.sh
#
# Seeded as bench/ui.sh seeds it, through the product: N distinct Tatum keys,
# one per file, through `keysentry scan --remediate` against keysentry-sim
# (freeze policy; 70 % of the keys live, so verified and frozen — a journal
# entry per provider call — the rest recorded not-live). Then the store's
# files are measured: keysentry.db (and its -wal/-shm if left), as `du`
# counts them and as `VACUUM INTO` compacts them (python3's sqlite3).
#
# Needs: cargo, curl, python3. Talks only to 127.0.0.1.
set -euo pipefail

N=${1:-10000}
PROFILE=${PROFILE:-release}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

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

"$BIN/keysentry-sim" >"$WORK/sim.out" &
PIDS+=("$!")
for _ in $(seq 100); do grep -q "listening on" "$WORK/sim.out" && break; sleep 0.1; done
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
    h = hashlib.sha256(f"bench-store-{i}".encode()).hexdigest()
    keys.append(f"t-{h[:24]}-{h[24:48]}")
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
status=0
"$BIN/keysentry" scan "$WORK/tree" --rules "$WORK/rules" --config "$WORK/seed.yaml" \
    --remediate --format json --output /dev/null 2>"$WORK/seed.err" || status=$?
if [ "$status" -ne 1 ]; then
    echo "seeding: keysentry scan exited $status (expected 1: findings)" >&2
    tail -20 "$WORK/seed.err" >&2
    exit 1
fi

python3 - "$WORK/state" "$N" "$PROFILE" <<'PY'
import os, sqlite3, sys
state, n, profile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
db = os.path.join(state, "keysentry.db")
files = {f: os.path.getsize(os.path.join(state, f)) for f in sorted(os.listdir(state))}
con = sqlite3.connect(db)
incidents = con.execute("select count(*) from incidents").fetchone()[0]
states = con.execute("select state, count(*) from incidents group by state order by 2 desc").fetchall()
tables = [r[0] for r in con.execute("select name from sqlite_master where type = 'table' order by name")]
rows = {t: con.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables}
compact = os.path.join(state, "compact.db")
con.execute(f"vacuum into '{compact}'")
con.close()
mib = lambda b: f"{b / 1048576:.1f} MiB"
print(f"{profile} build, {incidents} incidents (of {n} keys): {dict(states)}")
print("  rows: " + ", ".join(f"{t} {c}" for t, c in rows.items() if c))
for f, b in files.items():
    print(f"  {f}: {mib(b)}")
total = sum(files.values())
print(f"  on disk: {mib(total)} = {total / max(incidents, 1) / 1024:.2f} KiB per incident")
c = os.path.getsize(compact)
print(f"  after VACUUM INTO: {mib(c)} = {c / max(incidents, 1) / 1024:.2f} KiB per incident")
PY
