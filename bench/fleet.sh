#!/usr/bin/env bash
# Fleet benchmark (not a test): three daemons on one PostgreSQL store, each
# tailing its own host's logs, under RATE lines/s in total with KPS keys/s,
# every EVERY_NODE-th key written on all three hosts. Counts the keys
# contained and those contained more than once, and the latency from a key's
# line to its freeze call (p50/p99); then the same load on SQLite (one
# daemon tailing all three hosts' directories, its own store) in the same
# run, as the reference. Last, the syslog ingest rate against `logger`
# (bench/syslog.sh).
#
#   bench/fleet.sh [SECONDS]          # default 60 per store
#
# Environment: RATE (10000), KPS (5), EVERY_NODE (5), FILES (4 per host),
# OUTAGE (15: seconds the store is stopped in a third PostgreSQL run, under
# the same load; keys written meanwhile must each be contained once after).
# Builds the release binaries; starts its own PostgreSQL cluster with
# .ci/postgres.sh and a keysentry-sim, all on 127.0.0.1.
set -euo pipefail

SECONDS_PER_RUN=${1:-60}
RATE=${RATE:-10000}
KPS=${KPS:-5}
EVERY_NODE=${EVERY_NODE:-5}
FILES=${FILES:-4}
OUTAGE=${OUTAGE:-15}

root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --workspace --bins --manifest-path "$root/Cargo.toml" >&2
bin=$root/target/release
work=$(mktemp -d)
chmod 755 "$work"
pids=()
pg_dir=""
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "$pg_dir" ] && bash "$root/.ci/postgres.sh" stop "$pg_dir" || true
    rm -rf "$work"
}
trap cleanup EXIT

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

wait_for() { # FILE PATTERN SECONDS
    for _ in $(seq $(($3 * 10))); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "timed out waiting for '$2' in $1" >&2
    cat "$1" >&2
    exit 1
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pg_url=$(bash "$root/.ci/postgres.sh" start "$port")
pg_dir=$(cat "/tmp/keysentry-pg-$port.dir")

"$bin/keysentry-sim" >"$work/sim.out" &
pids+=("$!")
wait_for "$work/sim.out" "listening on" 10
sim=$(head -1 "$work/sim.out" | sed 's/^listening on //')

# One run: the daemons of CONFIGS under the load on DIRS; prints its lines.
run() { # LABEL DIRS CONFIG...
    local label=$1 dirs=$2
    shift 2
    local daemons=() i=0
    for cfg in "$@"; do
        "$bin/keysentry" daemon --config "$cfg" --log-format json 2>"$work/$label-$i.err" &
        daemons+=("$!")
        pids+=("$!")
        i=$((i + 1))
    done
    for j in $(seq 0 $((i - 1))); do wait_for "$work/$label-$j.err" "daemon ready" 60; done
    EVERY_NODE=$EVERY_NODE python3 "$root/bench/daemon_load.py" "$dirs" "$sim" \
        "$SECONDS_PER_RUN" "$RATE" "$FILES" "$KPS" "$work/$label-sent.json" &
    local load=$!
    pids+=("$load")
    if [ "$label" = outage ]; then
        # A third of the way in, the store goes away for OUTAGE seconds
        # under the full load; the daemons' resident memory is sampled.
        sleep $((SECONDS_PER_RUN / 3))
        local before=0 during=0 after=0 r
        for d in "${daemons[@]}"; do r=$(rss_kb "$d"); [ "$r" -gt "$before" ] && before=$r; done
        bash "$root/.ci/postgres.sh" stop "$pg_dir"
        for _ in $(seq "$OUTAGE"); do
            for d in "${daemons[@]}"; do r=$(rss_kb "$d"); [ "$r" -gt "$during" ] && during=$r; done
            sleep 1
        done
        bash "$root/.ci/postgres.sh" resume "$pg_dir" "$port"
        wait "$load"
        for d in "${daemons[@]}"; do r=$(rss_kb "$d"); [ "$r" -gt "$after" ] && after=$r; done
        echo "outage: the store stopped for ${OUTAGE} s under load; largest daemon RSS MiB: before $((before / 1024)), during $((during / 1024)), after $((after / 1024))"
    else
        wait "$load"
    fi
    # The last keys' remediation (after an outage, the retries' backoff).
    if [ "$label" = outage ]; then sleep 60; else sleep 5; fi
    curl -s "$sim/_sim/calls" >"$work/$label-calls.json"
    for d in "${daemons[@]}"; do kill -TERM "$d"; wait "$d" || true; done
    python3 - "$label" "$work/$label-sent.json" "$work/$label-calls.json" "$EVERY_NODE" <<'PY'
import json, sys
label, sent, calls, every = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3])), sys.argv[4]
frozen = {}
for c in calls:
    if c["method"] == "PUT" and c["path"] == "/v3/tatum/freeze" and c.get("key_fingerprint"):
        frozen.setdefault(c["key_fingerprint"], []).append(c["at_unix_ms"])
keys = sent["keys"]
lat = sorted(min(frozen[fp]) - t for fp, t in keys.items() if fp in frozen)
twice = sum(1 for fp in keys if len(frozen.get(fp, [])) > 1)
def pct(p):
    return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))] if lat else float("nan")
print(f"{label}: {sent['lines'] / sent['seconds']:.0f} lines/s, keys {len(keys)} written "
      f"(every {every}th on every host), {len(lat)} contained, {twice} contained more than once; "
      f"line -> freeze ms p50 {pct(50)} p99 {pct(99)} max {lat[-1] if lat else 'n/a'}")
PY
}

config() { # NAME DIRS_GLOBS STORE_YAML
    cat >"$work/$1.yaml" <<YAML
$3
watch:
  logs: [$2]
  poll: 200ms
http:
  listen: 127.0.0.1:0
remediation:
  mode: auto
  policy: {tatum: freeze}
providers:
  tatum:
    api_url: $sim
YAML
    echo "$work/$1.yaml"
}

echo "load: $RATE lines/s in total over 3 hosts x $FILES files, $KPS keys/s, every ${EVERY_NODE}th key on all hosts, ${SECONDS_PER_RUN} s per store" >&2

# Three hosts (PREFIX-host1..3) on one new PostgreSQL database DB: sets
# host_dirs (their log directories) and host_cfgs (their configs).
fleet() { # PREFIX DB
    psql -q "$pg_url" -c "CREATE DATABASE $2" >/dev/null
    local url n
    url=$(echo "$pg_url" | sed "s#/postgres?#/$2?#")
    host_cfgs=()
    host_dirs=()
    for n in 1 2 3; do
        mkdir -p "$work/$1-host$n/logs"
        host_dirs+=("$work/$1-host$n/logs")
        host_cfgs+=("$(config "$1-node$n" "\"$work/$1-host$n/logs/*.log\"" "node: host-$n
state_dir: $work/$1-host$n/state
store:
  url: '$url'")")
    done
}

# PostgreSQL: three daemons, one store.
fleet pg keysentry_fleet
run postgresql "$(IFS=,; echo "${host_dirs[*]}")" "${host_cfgs[@]}"

# PostgreSQL again, the store stopped and restarted under the load.
fleet out keysentry_outage
run outage "$(IFS=,; echo "${host_dirs[*]}")" "${host_cfgs[@]}"

# SQLite: one daemon, one store, the same three hosts' lines.
sq_dirs=()
globs=()
for n in 1 2 3; do
    mkdir -p "$work/sq-host$n/logs"
    sq_dirs+=("$work/sq-host$n/logs")
    globs+=("\"$work/sq-host$n/logs/*.log\"")
done
sq_cfg=$(config sqlite "$(IFS=,; echo "${globs[*]}")" "state_dir: $work/sq-state")
run sqlite "$(IFS=,; echo "${sq_dirs[*]}")" "$sq_cfg"

echo "syslog ingest (bench/syslog.sh, release):"
LINES=${SYSLOG_LINES:-200000} bash "$root/bench/syslog.sh" | tail -n 4
