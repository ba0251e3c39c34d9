#!/usr/bin/env bash
# One large log file (default 500 MiB) named on the command line: it is read
# in 8 MiB pieces that overlap, never whole, and the pieces are scanned on
# every core. The reference is the same binary on one core (`taskset -c 0`:
# it sees one CPU and scans the pieces on one thread), in the same run.
# Prints wall time, CPU time, peak RSS and throughput for each, the ratio,
# and whether both found the same keys.
#
#   bench/bigfile.sh [MIB]          # default 500
#
# Needs: cargo, python3, taskset (util-linux), GNU time (its last line:
# "Command exited with non-zero status 1" comes first, as findings mean 1).
set -euo pipefail

MIB=${1:-500}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cargo build --quiet --release --manifest-path "$ROOT/Cargo.toml" --bin keysentry
BIN="$ROOT/target/release/keysentry"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Application log lines with a made-up key every ~8 MiB (fresh Tatum-shaped
# keys: "t-" + 24 hex + "-" + 24 hex), deterministic.
python3 - "$WORK/app.log" "$MIB" <<'PY'
import hashlib, sys
path, mib = sys.argv[1], int(sys.argv[2])
target = mib << 20
paths = ["/api/v1/items", "/api/v1/orders", "/healthz", "/api/v3/blockchain/fee", "/login"]
with open(path, "w") as f:
    n = written = 0
    block = []
    while written < target:
        h = hashlib.sha256(str(n).encode()).hexdigest()
        line = f"2026-12-01T10:{n % 60:02d}:{n % 59:02d}Z INFO req={h[:16]} path={paths[n % 5]} status=200 ms={n % 97} ua=\"Mozilla/5.0 (X11; Linux x86_64)\"\n"
        if n % 100000 == 99999:
            k = hashlib.sha256(f"key-{n}".encode()).hexdigest()
            line = f"2026-12-01T10:00:00Z DEBUG outgoing x-api-key: t-{k[:24]}-{k[24:48]}\n"
        block.append(line)
        written += len(line)
        n += 1
        if len(block) == 10000:
            f.write("".join(block))
            block = []
    f.write("".join(block))
PY
size=$(stat -c %s "$WORK/app.log")

run() { # LABEL CMD...
    local label=$1
    shift
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/$label.time" "$@" scan "$WORK/app.log" \
        --format json --output "$WORK/$label.json" >/dev/null 2>&1 || [ $? -eq 1 ]
}
# ripgrep counting the rules' keywords (literal, case-insensitive) in the
# same file, when installed (`pip install ripgrep`): the issue's reference.
RG=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/rg
[ -x "$RG" ] || RG=$(command -v rg || true)
mapfile -t KW < <(python3 "$ROOT/bench/keywords.py" "$ROOT/rules")
RG_ARGS=(-c -i -F --no-messages)
for k in "${KW[@]}"; do RG_ARGS+=(-e "$k"); done
cat "$WORK/app.log" >/dev/null # warm the page cache
for round in 1 2 3; do
    run one taskset -c 0 "$BIN"
    run all "$BIN"
    tail -1 "$WORK/one.time" >>"$WORK/one.times"
    tail -1 "$WORK/all.time" >>"$WORK/all.times"
    if [ -n "$RG" ]; then
        /usr/bin/time -f "%e %U %S %M" -o "$WORK/rg.time" "$RG" "${RG_ARGS[@]}" "$WORK/app.log" >/dev/null || true
        tail -1 "$WORK/rg.time" >>"$WORK/rg.times"
    fi
done

python3 - "$WORK" "$size" <<'PY'
import json, statistics, sys
work, size = sys.argv[1], int(sys.argv[2])
def load(label):
    rows = [list(map(float, l.split())) for l in open(f"{work}/{label}.times")]
    wall = statistics.median(r[0] for r in rows)
    cpu = statistics.median(r[1] + r[2] for r in rows)
    rss = max(r[3] for r in rows) / 1024
    keys = sorted((f["fingerprint"], f["line"], f["column"]) for f in json.load(open(f"{work}/{label}.json")))
    return wall, cpu, rss, keys
one, every = load("one"), load("all")
print(f"file: {size / 2**20:.0f} MiB, median of 3 runs")
print(f"{'':<22}{'wall s':>8}{'CPU s':>8}{'peak RSS MiB':>14}{'MiB/s':>8}{'findings':>10}")
for name, r in (("one core (reference)", one), ("every core", every)):
    print(f"{name:<22}{r[0]:>8.2f}{r[1]:>8.2f}{r[2]:>14.0f}{size / 2**20 / r[0]:>8.0f}{len(r[3]):>10}")
print(f"speed-up: {one[0] / every[0]:.2f}x; same findings: {one[3] == every[3]}")
try:
    rows = [list(map(float, l.split())) for l in open(f"{work}/rg.times")]
except FileNotFoundError:
    rows = []
if rows:
    rg_wall = statistics.median(r[0] for r in rows)
    rg_cpu = statistics.median(r[1] + r[2] for r in rows)
    print(f"{'ripgrep keywords':<22}{rg_wall:>8.2f}{rg_cpu:>8.2f}{max(r[3] for r in rows) / 1024:>14.0f}{size / 2**20 / rg_wall:>8.0f}{'—':>10}")
    print(f"keysentry every core / ripgrep: {rg_wall / every[0]:.2f}x (wall), one core / ripgrep: {rg_wall / one[0]:.2f}x")
PY
