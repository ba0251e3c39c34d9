#!/usr/bin/env bash
# Planted-keys benchmark: recall per provider of the built-in rules on fresh
# keys of each rule's shape (not its examples), and findings on text that
# holds no planted key. See bench/recall.py for how the keys are made.
#
#   bash bench/recall.sh                      # release build of this checkout
#   KS=target/debug/keysentry bash bench/recall.sh
#
# Environment:
#   KS          keysentry binary (default: target/release/keysentry, built here)
#   RECALL_DIR  work directory (default /tmp/keysentry-recall; wiped)
#   CORPUS_MB   size of the gen_corpus.py corpus scanned as unplanted text
#               (default 30; its planted keys are excluded by planted.tsv)
#   REAL_TREES  real code scanned as unplanted text (default: the cargo
#               registry sources, /usr/share/doc, /usr/lib/python3)
#   SEED        generator seed (default 12)
#   FULL=1      print every provider's recall, not only those under 100 %
#
# The generated trees are scanned with --show-secrets (to match findings to
# the planted keys, which are made up); corpora and real trees without it.
# The report prints only redacted forms.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${RECALL_DIR:-/tmp/keysentry-recall}
CORPUS_MB=${CORPUS_MB:-30}
SEED=${SEED:-12}
if [ -z "${REAL_TREES+x}" ]; then
    REAL_TREES="$HOME/.cargo/registry/src /usr/share/doc /usr/lib/python3"
fi
python3 -c 'import yaml, regex' 2>/dev/null || python3 -m pip install --quiet pyyaml regex

if [ -z "${KS:-}" ]; then
    echo "== building keysentry (release)" >&2
    (cd "$ROOT" && cargo build --release --quiet --bin keysentry)
    KS=${CARGO_TARGET_DIR:-$ROOT/target}/release/keysentry
fi
rm -rf "$OUT"
mkdir -p "$OUT"
GEN="$OUT/gen"
python3 "$ROOT/bench/recall.py" generate "$ROOT/rules" "$GEN" --seed "$SEED"

# scan DIR JSON [--show-secrets]: every finding in DIR.
scan() {
    local status=0
    "$KS" scan "$1" "${@:3}" --format json --output "$2" 2>"$2.stderr" || status=$?
    # 0 = nothing found, 1 = findings; anything else is a failed scan.
    if [ "$status" -gt 1 ] || [ ! -s "$2" ]; then
        echo "scan of $1 failed (exit $status):" >&2
        tail -5 "$2.stderr" >&2
        exit 1
    fi
}

echo "== scanning the planted, clean and one-key-a-file trees" >&2
for t in planted clean alone; do scan "$GEN/$t" "$GEN/$t.json" --show-secrets; done

UNPLANTED=()
CORPUS="${BENCH_DIR:-/tmp/keysentry-bench}/corpus-${CORPUS_MB}mb"
if [ ! -f "$CORPUS.done" ]; then
    rm -rf "$CORPUS"
    mkdir -p "$(dirname "$CORPUS")"
    python3 "$ROOT/bench/gen_corpus.py" "$CORPUS" --size-mb "$CORPUS_MB" >&2
    touch "$CORPUS.done"
fi
echo "== scanning $CORPUS" >&2
scan "$CORPUS" "$OUT/corpus.json"
UNPLANTED+=(--unplanted "corpus=$OUT/corpus.json" --corpus-planted "$CORPUS/planted.tsv")
i=0
for tree in $REAL_TREES; do
    [ -d "$tree" ] || continue
    i=$((i + 1))
    echo "== scanning $tree ($(du -sh "$tree" | cut -f1))" >&2
    scan "$tree" "$OUT/real$i.json"
    UNPLANTED+=(--unplanted "$tree=$OUT/real$i.json")
done

echo "keysentry: $KS ($("$KS" --version))"
echo "rules: $("$KS" rules list 2>&1 >/dev/null | tail -1)"
python3 "$ROOT/bench/recall.py" report "$ROOT/rules" "$GEN" "${UNPLANTED[@]}" ${FULL:+--full}
