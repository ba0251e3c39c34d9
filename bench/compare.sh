#!/usr/bin/env bash
# Two keysentry binaries (e.g. main's and a branch's) on the same corpus as
# bench/scan.sh generates, interleaved with ripgrep counting the rules'
# keywords as the reference measured in the same run; best of N rounds.
#
#   bash bench/compare.sh OLD_BINARY NEW_BINARY [SIZE_MB]    (default 30)
#
# Environment: BENCH_DIR (default /tmp/keysentry-bench), BENCH_RUNS (3).
# Prints CPU seconds (user + sys, steadier than wall time on a shared
# machine) per tool, each keysentry's ratio to ripgrep, new/old, and the
# finding counts.
set -euo pipefail

OLD=$1
NEW=$2
SIZE_MB=${3:-30}
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
SCRIPTS=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
RG=$SCRIPTS/rg
[ -x "$RG" ] || RG=$(command -v rg)
mapfile -t KW < <(python3 "$ROOT/bench/keywords.py" "$ROOT/rules")
RG_ARGS=(-c -i -F --no-ignore --hidden --no-messages)
for k in "${KW[@]}"; do RG_ARGS+=(-e "$k"); done
find "$DIR" -type f -print0 | xargs -0 cat >/dev/null

cpu() {
    /usr/bin/time -f '%U %S' -o "$WORK/t.log" "$@" >"$WORK/out.json" 2>/dev/null || true
    tail -1 "$WORK/t.log" | awk '{ print $1 + $2 }'
}
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b < a) ? b : a }'; }
o="" n="" r=""
for round in $(seq "$RUNS"); do
    echo "== round $round/$RUNS" >&2
    o=$(best "$o" "$(cpu "$OLD" scan "$DIR" --format json)")
    old_found=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$WORK/out.json")
    n=$(best "$n" "$(cpu "$NEW" scan "$DIR" --format json)")
    new_found=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$WORK/out.json")
    r=$(best "$r" "$(cpu "$RG" "${RG_ARGS[@]}" "$DIR")")
done
echo "corpus: $DIR; machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); best of $RUNS"
echo "ripgrep -c (${#KW[@]} keywords): ${r}s CPU"
echo "old: ${o}s CPU, $old_found findings, ripgrep/old $(awk -v a="$o" -v b="$r" 'BEGIN { printf "%.2f", b / a }')"
echo "new: ${n}s CPU, $new_found findings, ripgrep/new $(awk -v a="$n" -v b="$r" 'BEGIN { printf "%.2f", b / a }')"
echo "new/old CPU: $(awk -v a="$o" -v b="$n" 'BEGIN { printf "%.2f", b / a }')"
