#!/usr/bin/env bash
# File-scanning benchmark: keysentry against a plain literal search (ripgrep
# counting the rules' keywords) and Kingfisher, on the same generated corpus,
# in the same run; then keysentry's peak memory at two corpus sizes.
#
#   bash bench/scan.sh [SIZE_MB] [SMALL_MB]     (defaults: 200 and 50)
#
# Environment:
#   BENCH_DIR   where corpora are generated and kept (default /tmp/keysentry-bench)
#   BENCH_RULES extra rule directory passed as --rules (e.g. when the checkout
#               has no rules/ yet); the built-in rules are always used
#   BENCH_RUNS  interleaved rounds, best kept (default 3)
#
# Every tool reads the same files: all of them, hidden and ignored ones too
# (keysentry's default), binary files skipped. The page cache is warmed first
# so the figures are CPU throughput, not disk speed. On a machine shared with
# other work, wall time swings with the load; CPU time (user + sys) much less,
# so both are reported.
set -euo pipefail

SIZE_MB=${1:-200}
SMALL_MB=${2:-50}
RUNS=${BENCH_RUNS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-/tmp/keysentry-bench}
mkdir -p "$WORK"

# The real binaries, not pyenv-style shims (a shell script in front of each
# run would be timed too).
SCRIPTS=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
tool() {
    if [ -x "$SCRIPTS/$1" ]; then echo "$SCRIPTS/$1"; else command -v "$1" || true; fi
}
[ -n "$(tool rg)" ] || python3 -m pip install --quiet ripgrep
[ -n "$(tool kingfisher)" ] || python3 -m pip install --quiet kingfisher-bin
RG=$(tool rg)
KF=$(tool kingfisher)
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml
[ -x /usr/bin/time ] || apt-get install -y -qq time >/dev/null

echo "== building keysentry (release)" >&2
(cd "$ROOT" && cargo build --release --quiet)
KS="$ROOT/target/release/keysentry"
RULE_ARGS=()
RULE_DIRS=("$ROOT/rules")
if [ -n "${BENCH_RULES:-}" ]; then
    RULE_ARGS=(--rules "$BENCH_RULES")
    RULE_DIRS+=("$BENCH_RULES")
fi

corpus() {
    local mb=$1 dir="$WORK/corpus-$1mb"
    if [ ! -f "$dir.done" ]; then
        rm -rf "$dir"
        python3 "$ROOT/bench/gen_corpus.py" "$dir" --size-mb "$mb" >&2
        touch "$dir.done"
    fi
    echo "$dir"
}

# The keyword set of every rule in use, one a line.
keywords() {
    python3 "$ROOT/bench/keywords.py" "${RULE_DIRS[@]}"
}

# One run of "$@" under /usr/bin/time: prints "wall_s cpu_s max_rss_kb".
timed() {
    /usr/bin/time -v -o "$WORK/time.log" "$@" >/dev/null 2>"$WORK/stderr.log" || true
    awk -F': ' '
        /Elapsed \(wall clock\)/ { n = split($2, p, ":"); w = 0; for (i = 1; i <= n; i++) w = w * 60 + p[i] }
        /User time/ { u = $2 }
        /System time/ { s = $2 }
        /Maximum resident set size/ { m = $2 }
        END { print w, u + s, m }' "$WORK/time.log"
}

# Folds a "wall cpu rss" line into BEST[name]: best wall, best CPU, largest RSS.
declare -A BEST
keep_best() {
    local name=$1 w c m pw pc pm
    read -r w c m
    if [ -z "${BEST[$name]:-}" ]; then
        BEST[$name]="$w $c $m"
        return
    fi
    read -r pw pc pm <<<"${BEST[$name]}"
    BEST[$name]=$(awk -v w="$w" -v c="$c" -v m="$m" -v pw="$pw" -v pc="$pc" -v pm="$pm" \
        'BEGIN { print (w < pw ? w : pw), (c < pc ? c : pc), (m > pm ? m : pm) }')
}

BIG=$(corpus "$SIZE_MB")
SMALL=$(corpus "$SMALL_MB")
BYTES=$(find "$BIG" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
FILES=$(find "$BIG" -type f | wc -l)
PLANTED=$(wc -l <"$BIG/planted.tsv")
mapfile -t KW < <(keywords)
RG_ARGS=(-c -i -F --no-ignore --hidden --no-messages)
for k in "${KW[@]}"; do RG_ARGS+=(-e "$k"); done

find "$BIG" "$SMALL" -type f -print0 | xargs -0 cat >/dev/null # warm the page cache
echo "== corpus: $BIG, $FILES files, $BYTES bytes, $PLANTED planted keys, ${#KW[@]} keywords" >&2

# Rounds interleave the tools so that load from other processes falls on
# all of them alike.
for round in $(seq "$RUNS"); do
    echo "== round $round/$RUNS" >&2
    keep_best ks < <(timed "$KS" scan "$BIG" "${RULE_ARGS[@]}" --format json --output "$WORK/keysentry.json")
    keep_best rg < <(timed "$RG" "${RG_ARGS[@]}" "$BIG")
    keep_best kf < <(timed "$KF" scan "$BIG" --no-validate --no-update-check --quiet \
        --git-history none --format json --output "$WORK/kingfisher.json")
done
keep_best small < <(timed "$KS" scan "$SMALL" "${RULE_ARGS[@]}" --format json --output /dev/null)
read -r ks_s ks_cpu ks_rss <<<"${BEST[ks]}"
read -r rg_s rg_cpu _ <<<"${BEST[rg]}"
read -r kf_s kf_cpu kf_rss <<<"${BEST[kf]}"
read -r _ _ small_rss <<<"${BEST[small]}"

FOUND=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$WORK/keysentry.json")
mbps() { awk -v b="$BYTES" -v s="$1" 'BEGIN { printf "%7.1f", b / 1e6 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
row() { printf '%-12s %s MB/s %s MB/CPU-s  %6.2fs wall %6.2fs CPU  %s\n' "$1" "$(mbps "$2")" "$(mbps "$3")" "$2" "$3" "$4"; }

echo
echo "corpus: ${SIZE_MB} MB generated ($BYTES bytes, $FILES files, $PLANTED planted keys)"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); best of $RUNS interleaved rounds"
row keysentry "$ks_s" "$ks_cpu" "peak RSS $((ks_rss / 1024)) MB, $FOUND findings"
row "ripgrep -c" "$rg_s" "$rg_cpu" "${#KW[@]} keywords, -i -F"
row kingfisher "$kf_s" "$kf_cpu" "peak RSS $((kf_rss / 1024)) MB, --no-validate"
echo "keysentry/ripgrep     $(ratio "$ks_s" "$rg_s") wall, $(ratio "$ks_cpu" "$rg_cpu") CPU   (target >= 0.50)"
echo "keysentry/kingfisher  $(ratio "$ks_s" "$kf_s") wall, $(ratio "$ks_cpu" "$kf_cpu") CPU   (target > 1)"
echo "keysentry peak RSS    $((small_rss / 1024)) MB at ${SMALL_MB} MB, $((ks_rss / 1024)) MB at ${SIZE_MB} MB"

# Recall: which planted keys each tool reported (a finding on the planted
# line; an AWS pair is two lines, either counts).
python3 - "$BIG" "$WORK/keysentry.json" "$WORK/kingfisher.json" <<'PY'
import collections, json, os, sys
big, ks_path, kf_path = sys.argv[1:]
planted = [l.rstrip("\n").split("\t") for l in open(os.path.join(big, "planted.tsv"))]
ks = {(f["path"], f["line"]) for f in json.load(open(ks_path))}
kf = {(os.path.relpath(f["finding"]["path"], big), f["finding"]["line"])
      for f in json.load(open(kf_path)).get("findings", [])}
for name, found in (("keysentry", ks), ("kingfisher", kf)):
    hit, total = collections.Counter(), collections.Counter()
    for kind, path, line in planted:
        total[kind] += 1
        line = int(line)
        if (path, line) in found or (kind == "aws" and (path, line + 1) in found):
            hit[kind] += 1
    parts = ", ".join(f"{k} {hit[k]}/{total[k]}" for k in sorted(total))
    print(f"planted keys found by {name}: {sum(hit.values())}/{len(planted)} ({parts})")
PY
