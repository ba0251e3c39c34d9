#!/usr/bin/env bash
# Syslog ingest throughput (not a test): LINES lines (1 in 1,000 with a
# distinct Tatum key) sent by util-linux `logger -f` over TCP as fast as it
# can, first into a listener that discards them (the reference: how fast
# logger sends), then into `keysentry daemon`'s `watch.syslog` listener
# (remediation off: framing, parsing, queueing and scanning). Reports both
# rates and their ratio, measured in the same run.
#
#   bench/syslog.sh            # LINES=200000, release build
#   PROFILE=debug bench/syslog.sh   # the dev build already in target/debug
#
# Talks only to 127.0.0.1.
set -euo pipefail

LINES=${LINES:-200000}
PROFILE=${PROFILE:-release}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
if [ "$PROFILE" = release ]; then
    cargo build --release --bin keysentry --manifest-path "$root/Cargo.toml" >&2
fi
bin=$target/$PROFILE
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

python3 - "$LINES" >"$work/lines.txt" <<'PY'
import hashlib, sys
n = int(sys.argv[1])
for i in range(n):
    if i % 1000 == 0:
        h = hashlib.sha256(f"bench {i}".encode()).hexdigest()
        print(f"GET /v3/tatum/version x-api-key: t-{h[:24]}-{h[24:48]} 200 {i}")
    else:
        print(f"GET /api/orders/{i} 200 12ms user=u{i % 97} region=eu-west-1")
PY

now() { date +%s.%N; }

# --- reference: logger into a listener that reads and discards ------------
python3 - "$work/ref.port" <<'PY' &
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
c, _ = s.accept()
while c.recv(1 << 16):
    pass
PY
pids+=("$!")
for _ in $(seq 50); do [ -s "$work/ref.port" ] && break; sleep 0.1; done
t0=$(now)
logger --tcp --rfc5424 -n 127.0.0.1 -P "$(cat "$work/ref.port")" -t bench -f "$work/lines.txt"
t1=$(now)
ref=$(python3 -c "print(round($LINES / ($t1 - $t0)))")

# --- keysentry ---------------------------------------------------------------
cat >"$work/keysentry.yaml" <<YAML
state_dir: $work/state
remediation:
  mode: off
watch:
  syslog:
    - listen: 127.0.0.1:0
http:
  listen: 127.0.0.1:0
YAML
"$bin/keysentry" daemon --config "$work/keysentry.yaml" --log-format json 2>"$work/daemon.err" &
pids+=("$!")
for _ in $(seq 300); do grep -q "daemon ready" "$work/daemon.err" && break; sleep 0.1; done
port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$work/daemon.err" | head -1 | sed 's/.*://')
sport=$(grep -o '"addr":"127.0.0.1:[0-9]*"' "$work/daemon.err" | head -1 | sed 's/.*://; s/"//')
scanned() {
    curl -s "http://127.0.0.1:$port/metrics" 2>/dev/null \
        | awk '/^keysentry_scanned_lines_total\{source="syslog:tcp/ {print $2}' || true
}
rss_idle=$(awk '/^VmRSS/ {print $2}' "/proc/${pids[-1]}/status")
t0=$(now)
logger --tcp --rfc5424 -n 127.0.0.1 -P "$sport" -t bench -f "$work/lines.txt"
t_sent=$(now)
until [ "$(scanned)" = "$LINES" ]; do sleep 0.05; done
t1=$(now)
metrics=$(curl -s "http://127.0.0.1:$port/metrics")
findings=$(echo "$metrics" | awk '/^keysentry_findings_total/ {s += $2} END {print s + 0}')
failures=$(echo "$metrics" | awk '/^keysentry_ingest_parse_failures_total/ {print $2}')
got=$(python3 -c "print(round($LINES / ($t1 - $t0)))")
sender=$(python3 -c "print(round($LINES / ($t_sent - $t0)))")
rss=$(awk '/^VmRSS/ {print $2}' "/proc/${pids[-1]}/status")

echo "lines: $LINES ($PROFILE build), keys found: $findings (expected $((LINES / 1000))), parse failures: $failures"
echo "logger into a discarding listener: $ref lines/s"
echo "logger into keysentry (sent → all scanned): $got lines/s (logger itself: $sender lines/s)"
echo "ratio keysentry / reference: $(python3 -c "print(round($got / $ref, 2))")"
echo "daemon RSS: $((rss_idle / 1024)) MiB ready, $((rss / 1024)) MiB after the run"
