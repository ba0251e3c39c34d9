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
#   BENCH_RUNS  timed runs per tool, best kept (default 3)
#
# Every tool reads the same files: all of them, hidden and ignored ones too
# (keysentry's default), binary files skipped. The page cache is warmed first
# so the figures are CPU throughput, not disk speed.
set -euo pipefail

SIZE_MB=${1:-200}
SMALL_MB=${2:-50}
RUNS=${BENCH_RUNS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-/tmp/keysentry-bench}
mkdir -p "$WORK"

need() { command -v "$1" >/dev/null 2>&1; }
need rg || python3 -m pip install --quiet ripgrep
need kingfisher || python3 -m pip install --quiet kingfisher-bin
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

# The keyword set of every rule in use, as ripgrep -e arguments.
keywords() {
    python3 - "${RULE_DIRS[@]}" <<'EOF'
import glob, os, sys, yaml
seen = set()
for d in sys.argv[1:]:
    for f in sorted(glob.glob(os.path.join(d, "*.yaml"))):
        for rule in (yaml.safe_load(open(f)) or {}).get("rules", []):
            for k in rule.get("keywords", []):
                if k.lower() not in seen:
                    seen.add(k.lower())
                    print(k)
EOF
}

# Runs "$@" RUNS times under /usr/bin/time; prints "best_seconds max_rss_kb".
measure() {
    local best="" rss=0 log="$WORK/time.log"
    for _ in $(seq "$RUNS"); do
        /usr/bin/time -v -o "$log" "$@" >/dev/null 2>"$WORK/stderr.log" || true
        local wall kb
        wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$log")
        kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
        if [ -z "$best" ] || awk "BEGIN{exit !($wall < $best)}"; then best=$wall; fi
        [ "$kb" -gt "$rss" ] && rss=$kb
    done
    echo "$best $rss"
}

BIG=$(corpus "$SIZE_MB")
SMALL=$(corpus "$SMALL_MB")
BYTES=$(find "$BIG" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
FILES=$(find "$BIG" -type f | wc -l)
PLANTED=$(wc -l < "$BIG/planted.tsv")
mapfile -t KW < <(keywords)
RG_ARGS=(-c -i -F --no-ignore --hidden --no-messages)
for k in "${KW[@]}"; do RG_ARGS+=(-e "$k"); done

find "$BIG" -type f -print0 | xargs -0 cat >/dev/null   # warm the page cache

echo "== corpus: $BIG, $FILES files, $BYTES bytes, $PLANTED planted keys, ${#KW[@]} keywords" >&2
read -r ks_s ks_rss < <(measure "$KS" scan "$BIG" "${RULE_ARGS[@]}" --format json --output "$WORK/keysentry.json")
read -r rg_s _ < <(measure rg "${RG_ARGS[@]}" "$BIG")
read -r kf_s kf_rss < <(measure kingfisher scan "$BIG" --no-validate --no-update-check --quiet \
    --git-history none --format json --output "$WORK/kingfisher.json")
read -r _ ks_small_rss < <(RUNS=1 measure "$KS" scan "$SMALL" "${RULE_ARGS[@]}" --format json --output /dev/null)

FOUND=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$WORK/keysentry.json")
mbps() { awk "BEGIN{printf \"%.1f\", $BYTES/1e6/$1}"; }
ratio() { awk "BEGIN{printf \"%.2f\", $2/$1}"; }

cat <<EOF

corpus          ${SIZE_MB} MB generated ($BYTES bytes, $FILES files, $PLANTED planted keys), $(nproc) cores, best of $RUNS
keysentry       $(mbps "$ks_s") MB/s  (${ks_s}s, peak RSS $((ks_rss / 1024)) MB, $FOUND findings)
ripgrep -c      $(mbps "$rg_s") MB/s  (${rg_s}s, ${#KW[@]} keywords, -i -F)
kingfisher      $(mbps "$kf_s") MB/s  (${kf_s}s, peak RSS $((kf_rss / 1024)) MB, --no-validate)
keysentry/rg          $(ratio "$ks_s" "$rg_s")   (throughput ratio; target >= 0.50)
keysentry/kingfisher  $(ratio "$ks_s" "$kf_s")   (throughput ratio; target > 1)
keysentry peak RSS    $((ks_small_rss / 1024)) MB at ${SMALL_MB} MB, $((ks_rss / 1024)) MB at ${SIZE_MB} MB
EOF
