#!/usr/bin/env bash
# Daemon benchmark (not a test): latency from a log line being appended to
# the containment call, under RATE lines/s spread over FILES files; RSS over
# a soak; sustained tail throughput against `cat` of the same files.
#
#   bench/daemon.sh [SOAK_MINUTES]        # default 5; the issue asks for 30;
#                                         # 0 runs the throughput part only
#
# Environment: RATE (10000 lines/s), FILES (20), KPS (keys per second, 5),
# THROUGHPUT_MB (1024). Builds the release binaries; talks only to a
# keysentry-sim it starts on 127.0.0.1.
set -euo pipefail

SOAK_MINUTES=${1:-5}
RATE=${RATE:-10000}
FILES=${FILES:-20}
KPS=${KPS:-5}
THROUGHPUT_MB=${THROUGHPUT_MB:-1024}

root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --workspace --bins --manifest-path "$root/Cargo.toml" >&2
bin=$root/target/release
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
    cat "$1" >&2
    exit 1
}

start_daemon() { # CONFIG ERRFILE
    "$bin/keysentry" daemon --config "$1" --log-format json 2>"$2" &
    daemon=$!
    pids+=("$daemon")
    wait_for "$2" "daemon ready" 30
    port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$2" | head -1 | sed 's/.*://')
}

stop_daemon() {
    kill -TERM "$daemon"
    wait "$daemon" || true
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# --- simulator -------------------------------------------------------------
"$bin/keysentry-sim" >"$work/sim.out" &
pids+=("$!")
wait_for "$work/sim.out" "listening on" 10
sim=$(head -1 "$work/sim.out" | sed 's/^listening on //')

# --- latency and soak (skipped with SOAK_MINUTES=0) ------------------------
if [ "$SOAK_MINUTES" != 0 ]; then
mkdir -p "$work/logs"
cat >"$work/latency.yaml" <<YAML
state_dir: $work/state
watch:
  logs: ["$work/logs/*.log"]
http:
  listen: 127.0.0.1:0
remediation:
  mode: auto
  policy: {tatum: freeze}
providers:
  tatum:
    api_url: $sim
YAML
start_daemon "$work/latency.yaml" "$work/daemon.err"
soak_s=$((SOAK_MINUTES * 60))
echo "load: $RATE lines/s over $FILES files, $KPS keys/s, for ${SOAK_MINUTES} min" >&2
python3 "$root/bench/daemon_load.py" "$work/logs" "$sim" "$soak_s" "$RATE" "$FILES" "$KPS" \
    "$work/sent.json" &
load=$!
pids+=("$load")
sleep 10
rss_start=$(rss_kb "$daemon")
rss_max=$rss_start
rss_series=""
ticks=0
while kill -0 "$load" 2>/dev/null; do
    r=$(rss_kb "$daemon")
    [ "$r" -gt "$rss_max" ] && rss_max=$r
    # One sample a minute, to show whether memory is flat or climbing.
    [ $((ticks % 12)) -eq 0 ] && rss_series="$rss_series $((r / 1024))"
    ticks=$((ticks + 1))
    sleep 5
done
rss_end=$(rss_kb "$daemon")
wait "$load"
sleep 3 # the last keys' remediation
curl -s "$sim/_sim/calls" >"$work/calls.json"
curl -s "127.0.0.1:$port/metrics" >"$work/metrics.txt"
stop_daemon

python3 - "$work/sent.json" "$work/calls.json" <<'PY'
import json, sys
sent = json.load(open(sys.argv[1]))
calls = json.load(open(sys.argv[2]))
frozen = {}
for c in calls:
    if c["method"] == "PUT" and c["path"] == "/v3/tatum/freeze" and c.get("key_fingerprint"):
        frozen.setdefault(c["key_fingerprint"], []).append(c["at_unix_ms"])
lat = sorted(frozen[fp][0] - t for fp, t in sent["keys"].items() if fp in frozen)
dups = sum(1 for v in frozen.values() if len(v) > 1)
def pct(p):
    return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))] if lat else float("nan")
print(f"lines written: {sent['lines']} in {sent['seconds']:.0f} s "
      f"({sent['lines'] / sent['seconds']:.0f} lines/s)")
print(f"keys: {len(sent['keys'])} written, {len(lat)} contained, {dups} contained twice")
print(f"append -> freeze call latency ms: p50 {pct(50)}  p90 {pct(90)}  p99 {pct(99)}  max {lat[-1] if lat else 'n/a'}")
PY
echo "RSS KiB: start $rss_start  max $rss_max  end $rss_end (soak ${SOAK_MINUTES} min)"
echo "RSS MiB, one sample a minute:$rss_series"
echo "keys held in memory at the end: $(awk '/^keysentry_remediation_keys_held/ {print $2}' "$work/metrics.txt")" \
    "(open incidents: $(awk '/^keysentry_incidents\{/ && !/closed|not-live/ {s += $2} END {print s + 0}' "$work/metrics.txt"))"
fi

# --- throughput --------------------------------------------------------------
mkdir -p "$work/tp"
python3 - "$work/tp" "$FILES" "$THROUGHPUT_MB" <<'PY'
import os, sys
d, n, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
line = b"2024-05-01T12:00:00Z INFO GET /api/v1/orders/%08d status=200 took_ms=12 user=4711 ua=curl/8\n"
per_file = mb * 1024 * 1024 // n
block = b"".join(line % i for i in range(10000))
# Whole lines only: the daemon leaves a last line without a newline unread.
blocks = max(1, per_file // len(block))
for i in range(n):
    with open(os.path.join(d, f"tp{i:02}.log"), "wb") as f:
        for _ in range(blocks):
            f.write(block)
PY
total=$(cat "$work"/tp/*.log | wc -c)
cat "$work"/tp/*.log >/dev/null # warm the page cache for both readers
t0=$(date +%s.%N)
cat "$work"/tp/*.log >/dev/null
t1=$(date +%s.%N)
cat >"$work/tp.yaml" <<YAML
state_dir: $work/tpstate
watch:
  logs: ["$work/tp/*.log"]
  from: start
http:
  listen: 127.0.0.1:0
remediation: {mode: "off"}
YAML
t2=$(date +%s.%N)
start_daemon "$work/tp.yaml" "$work/tp.err"
for _ in $(seq 12000); do # at most 10 minutes
    scanned=$(curl -s "127.0.0.1:$port/metrics" |
        awk '/^keysentry_scanned_bytes_total/ {s += $2} END {printf "%d", s}')
    [ "$scanned" -ge "$total" ] && break
    sleep 0.05
done
[ "$scanned" -ge "$total" ] || { echo "daemon scanned $scanned of $total bytes" >&2; exit 1; }
t3=$(date +%s.%N)
stop_daemon
# The reference the issue names: ripgrep counting the rules' keywords
# (literal, case-insensitive) in the same files, when it is installed
# (`pip install ripgrep` puts it in Python's scripts directory).
rg_s=0
rg=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/rg
[ -x "$rg" ] || rg=$(command -v rg || true)
if [ -n "$rg" ]; then
    mapfile -t kw < <(python3 "$root/bench/keywords.py" "$root/rules")
    rg_args=(-c -i -F --no-ignore --hidden --no-messages)
    for k in "${kw[@]}"; do rg_args+=(-e "$k"); done
    t4=$(date +%s.%N)
    "$rg" "${rg_args[@]}" "$work"/tp >/dev/null || true
    t5=$(date +%s.%N)
    rg_s=$(python3 -c "print($t5 - $t4)")
fi
python3 -c "
total, cat_s, ks_s, rg_s = $total, $t1 - $t0, $t3 - $t2, $rg_s
line = (f'throughput over {total / 1e6:.0f} MB in $FILES files: cat {total / 1e6 / cat_s:.0f} MB/s, '
        f'keysentry daemon (start to all scanned) {total / 1e6 / ks_s:.0f} MB/s ({ks_s:.2f} s)')
if rg_s:
    line += f', ripgrep keyword count {total / 1e6 / rg_s:.0f} MB/s; daemon/ripgrep {rg_s / ks_s:.2f}'
print(line)
"
