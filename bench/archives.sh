#!/usr/bin/env bash
# Archive-scanning benchmark: the same generated corpus scanned unpacked (a
# directory walk) and packed as .tar, .tar.gz and .zip (deflate), in the same
# run; throughput of each and its ratio to the unpacked scan, and a check
# that every form yields the same number of findings.
#
#   bash bench/archives.sh [SIZE_MB]      (default 100)
#
# Environment:
#   BENCH_DIR   where the corpus and archives are kept (default /tmp/keysentry-bench-archives)
#   BENCH_RUNS  rounds, best kept (default 3)
#   BENCH_KS    a keysentry binary to time instead of building the release one
#
# The directory walk runs on every core; one archive is read by one thread
# (a tar.gz is one stream), so on a multi-core machine the ratio shows that
# too. Both wall and CPU time (user + sys) are reported: on a shared machine
# CPU time swings less.
set -euo pipefail

SIZE_MB=${1:-100}
RUNS=${BENCH_RUNS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-/tmp/keysentry-bench-archives}
mkdir -p "$WORK"
[ -x /usr/bin/time ] || apt-get install -y -qq time >/dev/null

if [ -n "${BENCH_KS:-}" ]; then
    KS=$BENCH_KS
else
    echo "== building keysentry (release)" >&2
    (cd "$ROOT" && cargo build --release --quiet)
    KS="$ROOT/target/release/keysentry"
fi

CORPUS="$WORK/corpus-$SIZE_MB"
if [ ! -d "$CORPUS" ]; then
    echo "== generating a $SIZE_MB MB corpus" >&2
    python3 "$ROOT/bench/gen_corpus.py" "$CORPUS" --size-mb "$SIZE_MB" >&2
fi
PACKED="$WORK/packed-$SIZE_MB"
if [ ! -d "$PACKED" ]; then
    echo "== packing it" >&2
    mkdir -p "$PACKED"
    python3 - "$CORPUS" "$PACKED" <<'PY'
import os, sys, tarfile, zipfile
src, out = sys.argv[1], sys.argv[2]
names = sorted(os.path.relpath(os.path.join(d, f), src)
               for d, _, fs in os.walk(src) for f in fs if f != "planted.tsv")
with tarfile.open(os.path.join(out, "corpus.tar"), "w", format=tarfile.GNU_FORMAT) as t:
    for n in names: t.add(os.path.join(src, n), n)
with tarfile.open(os.path.join(out, "corpus.tar.gz"), "w:gz", compresslevel=6) as t:
    for n in names: t.add(os.path.join(src, n), n)
with zipfile.ZipFile(os.path.join(out, "corpus.zip"), "w", zipfile.ZIP_DEFLATED) as z:
    for n in names: z.write(os.path.join(src, n), n)
PY
fi
# The planted list is not part of the archives: the unpacked scan skips it too.
mkdir -p "$WORK/unpacked-$SIZE_MB"
if [ ! -e "$WORK/unpacked-$SIZE_MB/done" ]; then
    cp -r "$CORPUS/." "$WORK/unpacked-$SIZE_MB/"
    rm -f "$WORK/unpacked-$SIZE_MB/planted.tsv"
    touch "$WORK/unpacked-$SIZE_MB/done"
fi

# best wall, its CPU, and the finding count of `keysentry scan TARGET`.
measure() {
    local target=$1 best="" cpu="" count=""
    cat "$target" >/dev/null 2>&1 || find "$target" -type f -exec cat {} + >/dev/null
    for _ in $(seq "$RUNS"); do
        /usr/bin/time -f '%e %U %S' -o "$WORK/time" \
            "$KS" scan "$target" --format jsonl --max-archive-size $((4 << 30)) \
            >"$WORK/out.jsonl" 2>"$WORK/err" || [ $? -eq 1 ]
        # GNU time writes "Command exited with non-zero status 1" first.
        read -r wall user sys < <(tail -n 1 "$WORK/time")
        if [ -z "$best" ] || awk -v a="$wall" -v b="$best" 'BEGIN{exit !(a<b)}'; then
            best=$wall
            cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}')
        fi
        count=$(wc -l <"$WORK/out.jsonl")
    done
    if grep -q INCOMPLETE "$WORK/err"; then
        echo "incomplete scan of $target:" >&2
        cat "$WORK/err" >&2
        exit 1
    fi
    echo "$best $cpu $count"
}

BYTES=$(find "$WORK/unpacked-$SIZE_MB" -type f -printf '%s\n' | awk '{s+=$1} END{print s}')
MB=$(awk -v b="$BYTES" 'BEGIN{printf "%.1f", b/1048576}')
echo "corpus: $MB MiB of text; best of $RUNS; keysentry: $KS"
read -r base_wall base_cpu base_n < <(measure "$WORK/unpacked-$SIZE_MB")
printf '%-14s %9s %9s %9s %10s %10s %10s %9s\n' form size wall cpu MiB/s "wall×" "cpu×" findings
printf '%-14s %9s %8ss %8ss %10s %10s %10s %9s\n' unpacked "$MB"M "$base_wall" "$base_cpu" \
    "$(awk -v m="$MB" -v t="$base_wall" 'BEGIN{printf "%.1f", m/t}')" 1.00 1.00 "$base_n"
status=0
for f in corpus.tar corpus.tar.gz corpus.zip; do
    read -r wall cpu n < <(measure "$PACKED/$f")
    size=$(awk -v b="$(stat -c %s "$PACKED/$f")" 'BEGIN{printf "%.1f", b/1048576}')
    printf '%-14s %9s %8ss %8ss %10s %10s %10s %9s\n' "$f" "$size"M "$wall" "$cpu" \
        "$(awk -v m="$MB" -v t="$wall" 'BEGIN{printf "%.1f", m/t}')" \
        "$(awk -v a="$wall" -v b="$base_wall" 'BEGIN{printf "%.2f", a/b}')" \
        "$(awk -v a="$cpu" -v b="$base_cpu" 'BEGIN{printf "%.2f", (b>0)?a/b:0}')" "$n"
    if [ "$n" != "$base_n" ]; then
        echo "  $f: $n findings, unpacked $base_n" >&2
        status=1
    fi
done
exit $status
