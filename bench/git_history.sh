#!/usr/bin/env bash
# Benchmark of `keysentry scan --git` (not a test).
#
# Generates a deterministic repository with 10,000 commits on main (plus
# feature branches merged with --no-ff, tags, and planted Tatum keys that
# later commits delete again) with `git fast-import`, then times, in the
# same run and on the same repository:
#   - keysentry scan --git   (release build)
#   - git log --all -p       (the reference: git printing every diff)
# and checks that every planted key is reported.
#
# Usage: bench/git_history.sh [WORKDIR]     (default: a fresh temp dir)
#   COMMITS=N        commits on main (default 10000)
#   KEYSENTRY=PATH   binary to time (default: cargo build --release)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
commits=${COMMITS:-10000}
work=${1:-$(mktemp -d)}
mkdir -p "$work"
repo="$work/repo"

if [[ -z "${KEYSENTRY:-}" ]]; then
    (cd "$root" && cargo build --release --quiet)
    KEYSENTRY="$root/target/release/keysentry"
fi

# The keys are planted as Tatum keys; this rule finds them whatever the
# built-in rule set holds, so the check below does not depend on it.
mkdir -p "$work/rules"
cat >"$work/rules/bench.yaml" <<'EOF'
rules:
  - id: bench.tatum
    name: Tatum key (benchmark)
    provider: bench
    keywords: ["t-"]
    pattern: '\b(?P<secret>t-[0-9a-f]{24}-[0-9a-f]{24})\b'
    examples: ["t-66a8f1c2e4b0a1d2c3e4f5a6-5f3e9b1c7d2a4e6f8b0c1d3e"]
    negative_examples: ["t-title"]
EOF

# fast-import stream: one commit touches 1-3 files, changing a few lines of
# each (as real edits do); every 1000 commits a feature branch of 4 commits
# adds files and is merged back with a merge commit; every 2500 a tag; a key
# is planted every 997 commits and deleted 3 commits later.
generate() {
    awk -v NCOMMITS="$commits" '
    # A 32-bit LCG whose products stay exact in awk doubles: the same
    # repository on every machine and awk.
    function rnd(n) { seed = (seed * 69069 + 1) % 4294967296; return int(seed / 65536) % n }
    function hex(n,   s, i) { s = ""; for (i = 0; i < n; i++) s = s substr("0123456789abcdef", rnd(16) + 1, 1); return s }
    function line(f, i, st,   e) {
        e = ext[f]
        if (e == ".rs") return sprintf("    let v%d = compute(%d, %d); // step %d of module %d", i, f, st, i, f)
        if (e == ".py") return sprintf("    result_%d = transform(records, limit=%d)  # rev %d", i, st % 977, st)
        if (e == ".yaml") return sprintf("setting_%d: value-%d-%d", i, f, st)
        if (e == ".json") return sprintf("  \"field_%d\": {\"id\": %d, \"rev\": %d},", i, f * 1000 + i, st)
        return sprintf("Paragraph %d of document %d, revised in change %d; see section %d.", i, f, st, i % 7)
    }
    function emit_file(f,   i) {
        printf "M 100644 inline %s\ndata <<EOF_DATA\n", path[f]
        for (i = 1; i <= nl[f]; i++) {
            if (i == 5 && key[f] != "") printf "TATUM_API_KEY=%s\n", key[f]
            print line(f, i, stamp[f, i])
        }
        print "EOF_DATA"
    }
    function emit_feature(b, s,   i) {
        printf "M 100644 inline feature_%d/step_%d.rs\ndata <<EOF_DATA\n", b, s
        for (i = 1; i <= 60; i++) printf "    let f%d = feature(%d, %d, %d);\n", i, b, s, i
        if (s == 2 && fkey[b] != "") printf "const KEY: &str = \"%s\";\n", fkey[b]
        print "EOF_DATA"
    }
    function header(ref, email, msg) {
        t += 60 + rnd(600)
        printf "commit %s\nmark :%d\nauthor Dev <%s> %d +0000\ncommitter Dev <%s> %d +0000\ndata <<EOF_MSG\n%s\nEOF_MSG\n", ref, ++mark, email, t, email, t, msg
    }
    BEGIN {
        seed = 20240601; t = 1500000000; mark = 0
        split(".rs .py .yaml .json .md", exts, " ")
        split("src lib config deploy docs tools api web", dirs, " ")
        NFILES = 600
        for (f = 0; f < NFILES; f++) {
            ext[f] = exts[f % 5 + 1]
            path[f] = dirs[f % 8 + 1] "/part" (f % 13) "/module_" f ext[f]
            nl[f] = 30 + rnd(120)
            for (i = 1; i <= nl[f]; i++) stamp[f, i] = 0
        }
        planted = 0
        for (c = 1; c <= NCOMMITS; c++) {
            header("refs/heads/main", "dev" (c % 17) "@example.com", "change " c)
            if (c > 1) printf "from :%d\n", main
            n = 1 + rnd(3)
            for (k = 0; k < n; k++) {
                f = rnd(NFILES)
                edits = 1 + rnd(4)
                for (e = 0; e < edits; e++) stamp[f, 1 + rnd(nl[f])] = c
                if (c % 997 == 0 && k == 0) { key[f] = "t-" hex(24) "-" hex(24); planted++; unplant[c + 3] = f }
                if ((c in unplant) && k == 0) { key[unplant[c]] = ""; emit_file(unplant[c]) }
                emit_file(f)
            }
            main = mark
            if (c % 2500 == 0) printf "tag v%d\nfrom :%d\ntagger Dev <rel@example.com> %d +0000\ndata <<EOF_MSG\nrelease %d\nEOF_MSG\n", c / 2500, main, t, c / 2500
            if (c % 1000 == 0) {
                b = c / 1000
                fkey[b] = (b % 3 == 0) ? "t-" hex(24) "-" hex(24) : ""
                if (fkey[b] != "") planted++
                for (s = 1; s <= 4; s++) {
                    header("refs/heads/feature-" b, "feature" b "@example.com", "feature " b " step " s)
                    printf "from :%d\n", (s == 1 ? main : mark - 1)
                    emit_feature(b, s)
                }
                header("refs/heads/main", "merger@example.com", "merge feature " b)
                printf "from :%d\nmerge :%d\n", main, mark - 1
                # fast-import starts a merge from the first parent tree;
                # the branch files are listed again (same blobs).
                for (s = 1; s <= 4; s++) emit_feature(b, s)
                main = mark
            }
        }
        print planted > "/dev/stderr"
    }'
}

echo "generating $commits commits in $repo ..." >&2
rm -rf "$repo"
git init -q --bare "$repo"
generate 2>"$work/planted" | git -C "$repo" fast-import --quiet
planted=$(cat "$work/planted")
echo "repository: $(git -C "$repo" rev-list --all --count) commits, $(git -C "$repo" count-objects -vH | awk '/size-pack/ {print $2 $3}') packed, $planted keys planted" >&2

runs=${RUNS:-3}
# Best of $runs wall-clock seconds and the peak RSS (KiB, the largest of the
# process and the git processes it waited for) of that run.
measure() {
    local best="" rss="" i t m
    for ((i = 0; i < runs; i++)); do
        /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || true
        read -r t m < <(tail -n 1 "$work/time")
        if [[ -z "$best" ]] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then
            best=$t rss=$m
            cp "$work/stderr" "$work/best.stderr"
        fi
    done
    echo "$best $rss"
}

git -C "$repo" log --all -p >/dev/null # warm the page cache
read -r ref_s ref_kb < <(measure git -C "$repo" log --all -p)
read -r ks_s ks_kb < <(measure "$KEYSENTRY" scan "$repo" --git --rules "$work/rules" --format json --output "$work/report.json")
summary=$(grep '^scanned' "$work/best.stderr" || true)
found=$(grep -c '"rule_id": "bench.tatum"' "$work/report.json" || true)

echo
echo "keysentry scan --git     ${ks_s}s  peak ${ks_kb} KiB   ($summary)"
echo "git log --all -p (ref)   ${ref_s}s  peak ${ref_kb} KiB"
awk -v a="$ks_s" -v b="$ref_s" 'BEGIN { printf "ratio keysentry / git log -p: %.2f\n", a / b }'
echo "planted keys found: $found of $planted"
[[ "$found" == "$planted" ]] || { echo "MISSED PLANTED KEYS" >&2; exit 1; }
