#!/usr/bin/env bash
# Two keysentry release binaries (e.g. today's main and the commit before the
# rules grew) in one run: rule count and providers, `rules check` wall time
# (every example and negative example of the built-in rules), and scan
# throughput (MB/s wall, MB per CPU-second) on the same gen_corpus.py corpus;
# best of N interleaved rounds, then new/old ratios.
#
#   bash bench/rules.sh OLD_BINARY NEW_BINARY [SIZE_MB]     (default 100)
#
# Environment: BENCH_DIR (default /tmp/keysentry-bench), BENCH_RUNS (3).
# On a shared machine wall time moves with the load; CPU time (user + sys)
# much less, so both are printed.
set -euo pipefail

OLD=$1
NEW=$2
SIZE_MB=${3:-100}
RUNS=${BENCH_RUNS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-/tmp/keysentry-bench}
mkdir -p "$WORK"
DIR="$WORK/corpus-${SIZE_MB}mb"
if [ ! -f "$DIR.done" ]; then
    rm -rf "$DIR"
    python3 "$ROOT/bench/gen_corpus.py" "$DIR" --size-mb "$SIZE_MB" >&2
    touch "$DIR.done"
fi
BYTES=$(find "$DIR" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
find "$DIR" -type f -print0 | xargs -0 cat >/dev/null # warm the page cache

# timed CMD...: "wall_s cpu_s" of one run; stdout to $WORK/out.
timed() {
    /usr/bin/time -f '%e %U %S' -o "$WORK/t.log" "$@" >"$WORK/out" 2>/dev/null || true
    tail -1 "$WORK/t.log" | awk '{ print $1, $2 + $3 }'
}
declare -A BEST
keep() { # NAME "wall cpu": keeps the lowest of each
    local w c pw pc
    read -r w c <<<"$2"
    if [ -z "${BEST[$1]:-}" ]; then BEST[$1]="$w $c"; return; fi
    read -r pw pc <<<"${BEST[$1]}"
    BEST[$1]=$(awk -v w="$w" -v c="$c" -v pw="$pw" -v pc="$pc" \
        'BEGIN { print (w < pw ? w : pw), (c < pc ? c : pc) }')
}
findings() { python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$WORK/out"; }

declare -A FOUND RULES PROVIDERS CHECK
for side in old new; do
    bin=$OLD
    [ "$side" = new ] && bin=$NEW
    # `rules list`: one rule a line, the provider in the second column.
    "$bin" rules list >"$WORK/list" 2>/dev/null
    RULES[$side]=$(wc -l <"$WORK/list")
    PROVIDERS[$side]=$(awk '{ print $2 }' "$WORK/list" | sort -u | wc -l)
    CHECK[$side]=$("$bin" rules check 2>&1 | tail -1)
done
for round in $(seq "$RUNS"); do
    echo "== round $round/$RUNS" >&2
    for side in old new; do
        bin=$OLD
        [ "$side" = new ] && bin=$NEW
        keep "check-$side" "$(timed "$bin" rules check)"
        keep "scan-$side" "$(timed "$bin" scan "$DIR" --format json)"
        FOUND[$side]=$(findings)
    done
done

mbps() { awk -v b="$BYTES" -v s="$1" 'BEGIN { printf "%.1f", b / 1e6 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
echo "corpus: $DIR ($BYTES bytes); machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); best of $RUNS interleaved rounds"
printf '%-4s %6s %10s %16s %16s %12s %12s %10s\n' "" rules providers "rules check" "scan wall" "scan MB/s" "MB/CPU-s" findings
for side in old new; do
    read -r cw _ <<<"${BEST[check-$side]}"
    read -r sw sc <<<"${BEST[scan-$side]}"
    printf '%-4s %6s %10s %15ss %15ss %12s %12s %10s\n' "$side" "${RULES[$side]}" "${PROVIDERS[$side]}" \
        "$cw" "$sw" "$(mbps "$sw")" "$(mbps "$sc")" "${FOUND[$side]}"
done
read -r ocw _ <<<"${BEST[check-old]}"
read -r ncw _ <<<"${BEST[check-new]}"
read -r osw osc <<<"${BEST[scan-old]}"
read -r nsw nsc <<<"${BEST[scan-new]}"
echo "new/old: rules $(ratio "${RULES[old]}" "${RULES[new]}"), rules check wall $(ratio "$ocw" "$ncw"), scan wall $(ratio "$osw" "$nsw"), scan CPU $(ratio "$osc" "$nsc") (throughput new/old: wall $(ratio "$nsw" "$osw"), CPU $(ratio "$nsc" "$osc"))"
echo "old rules check: ${CHECK[old]}"
echo "new rules check: ${CHECK[new]}"
