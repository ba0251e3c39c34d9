#!/usr/bin/env python3
"""Planted-keys benchmark helper for bench/recall.sh.

    python3 bench/recall.py generate RULES_DIR OUT_DIR [--seed 12] [--per-example 1]
    python3 bench/recall.py report OUT_DIR [--unplanted NAME=FINDINGS.json ...]

`generate` makes, for every rule, fresh keys of the rule's shape that are
not its examples: each example is a template whose secret (the `secret` group,
else the whole match) gets fresh random characters of the same class, run by
run, with the literal parts of the pattern (prefixes such as `ghp_`, `xoxb-`,
host names) and the rule's keywords kept. A provider checksum is recomputed
(GitHub/npm CRC32, Base58Check, BIP-39), so checksum rules are measured too.
Each candidate is re-checked the way `keysentry rules check` does: the pattern
must match the new text with exactly the new secret, the entropy floor and the
placeholder filter must pass, a keyword must be present. The keys are planted,
with their example's context, into generated source, env, YAML, JSON and log
files (OUT_DIR/planted), the same files without the keys are written to
OUT_DIR/clean, and every key alone in its own file to OUT_DIR/alone (which
tells a rule that misses the key from a key lost in its surroundings).
OUT_DIR/plants.jsonl lists every plant, OUT_DIR/skipped.tsv every example the
generator could not use and why.

`report` reads the scanners' findings (OUT_DIR/{planted,clean,alone}.json,
written by recall.sh with --show-secrets: the keys are made up here) and prints
providers, rules, recall per provider, the providers under 100 % with why, and
findings on unplanted text per rule. OUT_DIR/unplanted.tsv lists every one.
"""

import argparse
import collections
import glob
import hashlib
import importlib.util
import json
import math
import os
import random
import string
import sys
import zlib

import regex
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("gen_corpus", os.path.join(HERE, "gen_corpus.py"))
gc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gc)

DIGITS = string.digits
LOWER = string.ascii_lowercase
UPPER = string.ascii_uppercase
HEXL = "0123456789abcdef"
HEXU = "0123456789ABCDEF"
B32 = UPPER + "234567"
B62 = string.digits + UPPER + LOWER
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

# The engine's placeholder filter (src/scan/filter.rs), so that a fresh key
# the engine would drop as a placeholder by chance is not planted.
PLACEHOLDER_MARKERS = ["example", "xxxx", "placeholder", "your_", "your-", "<", ">", "${", "{{",
                       "dummy", "redacted", "changeme", "****", "0123456789", "abcdefghij"]


def is_placeholder(secret):
    if len(secret) > 200:
        return any(m in secret for m in ["<", ">", "${", "{{", "..."])
    low = secret.lower()
    return any(m in low for m in PLACEHOLDER_MARKERS) or len(set(low)) <= 3


def entropy(s):
    b = s.encode()
    if not b:
        return 0.0
    n = len(b)
    return -sum(c / n * math.log2(c / n) for c in collections.Counter(b).values())


# --- checksums ----------------------------------------------------------------

def base62_fixed(n, width):
    out = []
    for _ in range(width):
        out.append(B62[n % 62])
        n //= 62
    return "".join(reversed(out))


def fix_crc32(secret):
    """`prefix_` + 30 characters + 6 base62 digits of their CRC32."""
    prefix, _, rest = secret.partition("_")
    body = rest[:30]
    return f"{prefix}_{body}{base62_fixed(zlib.crc32(body.encode()), 6)}"


def b58decode(s):
    n = 0
    for ch in s:
        n = n * 58 + B58.index(ch)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * (len(s) - len(s.lstrip("1"))) + raw


def b58encode(b):
    n = int.from_bytes(b, "big")
    out = ""
    while n:
        n, m = divmod(n, 58)
        out = B58[m] + out
    return "1" * (len(b) - len(b.lstrip(b"\0"))) + out


def dsha(b):
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def fresh_base58check(r, secret):
    """A new Base58Check string of the template's kind: WIF keeps its version
    and compression flag, an extended key its version, depth, parent and child
    number and the 0x00 before the key; the rest is random."""
    try:
        raw = b58decode(secret)
    except ValueError:
        return None
    payload, check = raw[:-4], raw[-4:]
    if dsha(payload)[:4] != check:
        return None
    p = bytearray(payload)
    if len(p) in (33, 34):
        keep = {0, 33}
    elif len(p) == 78:
        keep = set(range(13)) | {45}
    else:
        return None
    for i in range(len(p)):
        if i not in keep:
            p[i] = r.randrange(256)
    p = bytes(p)
    return b58encode(p + dsha(p)[:4])


_WORDS = None


def bip39_words():
    """The English list, read from the bip39 crate's source in the cargo
    registry (the crate keysentry itself uses)."""
    global _WORDS
    if _WORDS is None:
        paths = glob.glob(os.path.expanduser("~/.cargo/registry/src/*/bip39-*/src/language/english.rs"))
        if not paths:
            _WORDS = []
        else:
            _WORDS = regex.findall(r'"([a-z]+)"', open(paths[0], encoding="utf-8").read())
    return _WORDS


def fresh_mnemonic(r, secret):
    words = bip39_words()
    spans = [m.span() for m in regex.finditer(r"[a-z]+", secret) if m.group() in words]
    # Labels the pattern lets in ("phrase") can be list words: the phrase
    # is the last 12-24 of them, as the engine trims the run.
    n = max((k for k in (24, 21, 18, 15, 12) if k <= len(spans)), default=0)
    spans = spans[len(spans) - n:]
    if len(words) != 2048 or n == 0:
        return None
    ent_bits = n * 11 * 32 // 33
    ent = bytes(r.randrange(256) for _ in range(ent_bits // 8))
    cs = hashlib.sha256(ent).digest()
    bits = bin(int.from_bytes(ent, "big"))[2:].zfill(ent_bits) + \
        bin(int.from_bytes(cs, "big"))[2:].zfill(256)[: ent_bits // 32]
    new = [words[int(bits[i * 11:(i + 1) * 11], 2)] for i in range(n)]
    out, at = [], 0
    for (s, e), w in zip(spans, new):
        out.append(secret[at:s])
        out.append(w)
        at = e
    out.append(secret[at:])
    return "".join(out)


# --- the generic generator -----------------------------------------------------

def literal_text(pattern):
    return regex.sub(r"\\(.)", r"\1", pattern).lower()


def protected(secret, pattern, keywords, minlen):
    """Positions to keep: the rule's keywords and every run of at least
    `minlen` characters that the pattern spells out literally."""
    lit = literal_text(pattern)
    low = secret.lower()
    keep = [False] * len(secret)
    for kw in keywords:
        k = kw.lower()
        at = low.find(k)
        while k and at >= 0:
            for i in range(at, at + len(k)):
                keep[i] = True
            at = low.find(k, at + 1)
    i = 0
    while i < len(secret):
        end = 0
        for j in range(min(len(secret), i + 40), i + minlen - 1, -1):
            if low[i:j] in lit:
                end = j
                break
        if end:
            for k in range(i, end):
                keep[k] = True
            i = end
        else:
            i += 1
    return keep


def seg_alphabet(seg, whole=""):
    """The alphabet of a run: hex when the whole secret is hex (UUIDs have
    runs of 4 that could pass for digits), else the classes the run uses."""
    s = set(seg)
    if len(whole) >= 12 and set(whole) <= set(HEXL):
        return HEXL
    if len(whole) >= 12 and set(whole) <= set(HEXU):
        return HEXU
    if s <= set(DIGITS):
        return DIGITS
    if len(seg) >= 6 and s <= set(HEXL):
        return HEXL
    if len(seg) >= 6 and s <= set(HEXU):
        return HEXU
    has_l = any(c in LOWER for c in seg)
    has_u = any(c in UPPER for c in seg)
    has_d = any(c in DIGITS for c in seg)
    if has_u and not has_l and len(seg) >= 10 and s <= set(B32):
        return B32
    return (DIGITS if has_d else "") + (UPPER if has_u else "") + (LOWER if has_l else "")


def char_class(c, alpha):
    """Mode B: a character's own class, narrowed to the segment's alphabet."""
    for cls in (DIGITS, LOWER, UPPER):
        if c in cls:
            narrowed = "".join(x for x in cls if x in alpha)
            return narrowed or cls
    return c


def mutate(r, secret, keep, per_char, seen=None):
    """Fresh characters for every unkept run; `per_char` keeps each
    character's own class; `seen` narrows alphabets to the characters the
    rule's examples use (bech32, Crockford base32 and other cut alphabets)."""
    out = list(secret)
    whole = "".join(c for c, k in zip(secret, keep) if not k and c.isascii() and c.isalnum())
    i = 0
    while i < len(secret):
        if keep[i] or not secret[i].isascii() or not secret[i].isalnum():
            i += 1
            continue
        j = i
        while j < len(secret) and not keep[j] and secret[j].isascii() and secret[j].isalnum():
            j += 1
        seg = secret[i:j]
        alpha = seg_alphabet(seg, whole)
        if seen:
            alpha = "".join(c for c in alpha if c in seen) or alpha
        for k in range(i, j):
            cls = char_class(secret[k], alpha) if per_char else alpha
            out[k] = r.choice(cls)
        i = j
    return "".join(out)


def mutate_numbers(r, secret):
    """Solana-style byte arrays: every number becomes a fresh byte."""
    return regex.sub(r"\d+", lambda m: str(r.randrange(256)), secret)


def secret_span(rx, text):
    m = rx.search(text)
    if not m:
        return None
    if "secret" in rx.groupindex and m.group("secret") is not None:
        return m.span("secret")
    return m.span()


def accepts(rule, rx, text, secret, start, originals):
    """The re-check: the pattern finds exactly this secret at this place and
    the engine's filters would keep it."""
    if secret in originals:
        return "same as an example"
    ok = False
    for m in rx.finditer(text, overlapped=True):
        span = m.span("secret") if "secret" in rx.groupindex and m.group("secret") is not None else m.span()
        if span == (start, start + len(secret)):
            ok = True
            break
    if not ok:
        return "pattern does not match the fresh key"
    checksum = rule.get("checksum")
    if checksum != "bip39":
        if rule.get("min_entropy") and entropy(secret) < float(rule["min_entropy"]):
            return "below min_entropy"
        if is_placeholder(secret):
            return "placeholder by chance"
    kws = [k.lower() for k in rule.get("keywords") or []]
    if kws and not any(k in text.lower() for k in kws):
        return "no keyword left"
    return None


def fresh_example(r, rule, rx, example, originals, tries=30):
    """(new text, new secret, None) or (None, None, why)."""
    span = secret_span(rx, example)
    if span is None:
        return None, None, "the pattern does not match the example as written (encoded form?)"
    s, e = span
    secret = example[s:e]
    checksum = rule.get("checksum")
    kws = rule.get("keywords") or []
    why = "no candidate"
    if checksum == "bip39":
        makers = [lambda: fresh_mnemonic(r, secret)]
    elif checksum == "base58check":
        makers = [lambda: fresh_base58check(r, secret)]
    elif regex.fullmatch(r"\[[\d\s,]+\]", secret):
        makers = [lambda: mutate_numbers(r, secret)]
    else:
        makers = []
        seen = set("".join(originals))
        for minlen, per_char, narrow in ((3, False, False), (2, False, False), (2, True, False),
                                         (3, False, True), (2, False, True), (2, True, True)):
            keep = protected(secret, rule["pattern"], kws, minlen)
            makers.append(lambda keep=keep, per_char=per_char, narrow=narrow:
                          mutate(r, secret, keep, per_char, seen if narrow else None))
    for make in makers:
        for _ in range(tries):
            new = make()
            if new is None:
                why = "checksum template not understood"
                break
            if checksum in ("github-crc32", "npm-crc32"):
                new = fix_crc32(new)
            text = example[:s] + new + example[e:]
            why = accepts(rule, rx, text, new, s, originals) or None
            if why is None:
                return text, new, None
    return None, None, why


# --- files -------------------------------------------------------------------

ENV_NAMES = ["LOG_LEVEL=info", "PORT=8080", "DATABASE_HOST=db.internal", "REGION=eu-west-1",
             "WORKERS=4", "FEATURE_FLAGS=search,export", "NODE_ENV=production", "TZ=UTC"]


def filler(r, kind, n):
    fns = {"py": gc.py_line, "ts": gc.js_line, "go": gc.go_line, "log": gc.log_line,
           "json": gc.json_line, "md": gc.md_line, "yaml": gc.yaml_block,
           "env": lambda r: r.choice(ENV_NAMES)}
    return [fns[kind](r) for _ in range(n)]


def kind_for(r, text):
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    if first.startswith(("{", "[")):
        return "json"
    if regex.match(r"(export\s+)?[A-Z][A-Z0-9_]*=", first):
        return "env"
    if regex.match(r"\d{4}-\d\d-\d\d", first):
        return "log"
    if "\n" in text.strip() and regex.match(r"[\w.-]+:(\s|$)", first):
        return "yaml"
    return r.choice(["py", "ts", "go", "log", "yaml", "md"])


SPECIAL_NAMES = ["seed-phrase.txt", "recovery-phrase.txt", "id.json", "wallet-keypair.json",
                 "deployer.json", "mnemonic.txt"]


def special_name(rule, text):
    """A file name the rule's `files` patterns accept, for a key without a
    keyword (a seed backup or a Solana id.json holds nothing else)."""
    kws = [k.lower() for k in rule.get("keywords") or []]
    if not rule.get("files") or any(k in text.lower() for k in kws):
        return None
    for name in SPECIAL_NAMES:
        if any(regex.search(p, "wallet/" + name) for p in rule["files"]):
            return name
    return None


def load_rules(rules_dir):
    out = []
    for f in sorted(glob.glob(os.path.join(rules_dir, "*.yaml"))):
        for rule in (yaml.safe_load(open(f, encoding="utf-8")) or {}).get("rules", []):
            rule["_file"] = os.path.basename(f)
            out.append(rule)
    return out


def write(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def generate(args):
    r = random.Random(args.seed)
    out = args.out
    if os.path.exists(out) and os.listdir(out):
        raise SystemExit(f"{out} exists and is not empty; remove it or pick another directory")
    rules = load_rules(args.rules)
    plants, skipped = [], []
    for rule in rules:
        rx = regex.compile(rule["pattern"])
        originals = set()
        for ex in rule.get("examples") or []:
            sp = secret_span(rx, ex)
            if sp:
                originals.add(ex[sp[0]:sp[1]])
        for idx, ex in enumerate(rule.get("examples") or []):
            for _ in range(args.per_example):
                text, secret, why = fresh_example(r, rule, rx, ex, originals)
                if text is None:
                    skipped.append((rule["id"], rule["provider"], idx, why))
                    continue
                plants.append({"rule": rule["id"], "provider": rule["provider"], "example": idx,
                               "text": text, "secret": secret, "special": special_name(rule, text)})
    r.shuffle(plants)
    # Planted and clean trees: 1-3 keys per file among 10-150 ordinary lines;
    # the clean tree has the same files without the key lines.
    i, n = 0, 0
    while i < len(plants):
        p = plants[i]
        if p["special"]:
            rel = os.path.join(f"wallets{n % 7}", f"w{n}", p["special"])
            write(os.path.join(out, "planted", rel), [p["text"]])
            p.update(path=rel, line=1, end=p["text"].count("\n") + 1)
            i += 1
            n += 1
            continue
        group = [p]
        while len(group) < r.randint(1, 3) and i + len(group) < len(plants) \
                and not plants[i + len(group)]["special"]:
            group.append(plants[i + len(group)])
        kind = kind_for(r, p["text"])
        name = ".env" if kind == "env" else f"{gc.ident(r, 1)}_{n}.{kind}"
        rel = os.path.join(f"app{n % 23:02d}", f"m{n // 23 % 11}", name) if kind != "env" \
            else os.path.join(f"app{n % 23:02d}", f"svc{n}", name)
        lines = filler(r, kind, r.randint(10, 150 if kind != "yaml" else 12))
        spots = sorted(r.randrange(len(lines) + 1) for _ in group)
        merged, clean, line_no, gi = [], [], 1, 0
        for li in range(len(lines) + 1):
            while gi < len(spots) and spots[gi] == li:
                g = group[gi]
                g.update(path=rel, line=line_no, end=line_no + g["text"].count("\n"))
                merged.append(g["text"])
                line_no += g["text"].count("\n") + 1
                gi += 1
            if li < len(lines):
                merged.append(lines[li])
                clean.append(lines[li])
                line_no += lines[li].count("\n") + 1
        write(os.path.join(out, "planted", rel), merged)
        write(os.path.join(out, "clean", rel), clean)
        i += len(group)
        n += 1
    for k, p in enumerate(plants):
        name = p["special"] or f"key.{kind_for(r, p['text'])}".replace("key.env", ".env")
        p["alone"] = os.path.join(f"a{k:05d}", name)
        write(os.path.join(out, "alone", p["alone"]), [p["text"]])
    with open(os.path.join(out, "plants.jsonl"), "w", encoding="utf-8") as f:
        for p in plants:
            f.write(json.dumps(p) + "\n")
    with open(os.path.join(out, "skipped.tsv"), "w", encoding="utf-8") as f:
        for s in skipped:
            f.write("\t".join(map(str, s)) + "\n")
    providers = {x["provider"] for x in rules}
    print(f"{out}: {len(rules)} rules, {len(providers)} providers, {len(plants)} keys planted "
          f"in {n} files, {len(skipped)} examples skipped", file=sys.stderr)


# --- report --------------------------------------------------------------------

def same_key(planted, found, words=False):
    """The finding's secret is the planted one, separators aside; a BIP-39
    finding is the normalized phrase (numbering and labels trimmed)."""
    if not found:
        return False
    keep = str.isalpha if words else str.isalnum
    a = "".join(c for c in planted if keep(c))
    b = "".join(c for c in found if keep(c))
    if len(b) < 6:
        return False
    return a == b or a in b or b in a


def report(args):
    out = args.out
    plants = [json.loads(l) for l in open(os.path.join(out, "plants.jsonl"), encoding="utf-8")]
    rules = load_rules(args.rules)
    providers = sorted({x["provider"] for x in rules})
    skipped = [l.rstrip("\n").split("\t") for l in open(os.path.join(out, "skipped.tsv"), encoding="utf-8")]

    def findings(name):
        return json.load(open(os.path.join(out, f"{name}.json"), encoding="utf-8"))

    by_path = collections.defaultdict(list)
    for f in findings("planted"):
        by_path[f["path"]].append(f)
    alone = collections.defaultdict(list)
    for f in findings("alone"):
        alone[f["path"]].append(f)

    planted, found, misses = collections.Counter(), collections.Counter(), collections.defaultdict(list)
    used = set()
    other_rule = 0
    for p in plants:
        planted[p["provider"]] += 1
        hits = [f for f in by_path[p["path"]]
                if p["line"] <= f["line"] <= p["end"] and same_key(p["secret"], f.get("secret"), p["provider"] == "bip39")]
        for f in hits:
            used.add(id(f))
        mine = [f for f in hits if f["provider"] == p["provider"]]
        if mine:
            found[p["provider"]] += 1
            if not any(f["rule_id"] == p["rule"] for f in mine):
                other_rule += 1
            continue
        if hits:
            why = "reported as " + ", ".join(sorted({f["rule_id"] for f in hits}))
        elif any(same_key(p["secret"], f.get("secret"), p["provider"] == "bip39")
                 and f["provider"] == p["provider"]
                 for f in alone[p["alone"]]):
            why = "found alone, lost among the file's other lines"
        elif alone[p["alone"]]:
            why = "alone: reported as " + ", ".join(sorted({f["rule_id"] for f in alone[p["alone"]]}))
        else:
            why = "not found even alone"
        misses[p["provider"]].append((p["rule"], p["example"], why))

    total_p, total_f = sum(planted.values()), sum(found.values())
    print(f"rules: {len(rules)}   providers: {len(providers)}   "
          f"providers with planted keys: {len(planted)}")
    print(f"planted keys: {total_p}   found: {total_f}   overall recall: {100 * total_f / max(total_p, 1):.1f} %"
          f"   (found by another rule of the same provider: {other_rule})")
    print(f"examples the generator could not use: {len(skipped)}")
    for rid, prov, idx, why in skipped:
        print(f"  skipped {rid} example #{idx}: {why}")
    under = [pv for pv in sorted(planted) if found[pv] < planted[pv]]
    print(f"\nproviders under 100 % recall: {len(under)} of {len(planted)}")
    print(f"{'provider':<22} {'planted':>7} {'found':>6} {'recall':>7}  why")
    for pv in under:
        whys = collections.Counter(f"{rid}#{idx}: {why}" for rid, idx, why in misses[pv])
        first = True
        for w, c in sorted(whys.items()):
            head = f"{pv:<22} {planted[pv]:>7} {found[pv]:>6} {100 * found[pv] / planted[pv]:>6.1f}%" \
                if first else " " * 45
            print(f"{head}  {w}" + (f" (x{c})" if c > 1 else ""))
            first = False
    if args.full:
        print(f"\n{'provider':<22} {'planted':>7} {'found':>6} {'recall':>7}")
        for pv in sorted(planted):
            print(f"{pv:<22} {planted[pv]:>7} {found[pv]:>6} {100 * found[pv] / planted[pv]:>6.1f}%")

    # Findings on text that holds no planted key.
    rows = []
    # A finding inside a plant's lines that is not the planted key is a key
    # of the example's context (the AWS key id next to a planted secret);
    # one outside every plant is a finding on unplanted text.
    spans = collections.defaultdict(list)
    for p in plants:
        spans[p["path"]].append((p["line"], p["end"]))
    extra = [f for fs in by_path.values() for f in fs if id(f) not in used]
    context = [f for f in extra if any(a <= f["line"] <= b for a, b in spans[f["path"]])]
    outside = [f for f in extra if not any(a <= f["line"] <= b for a, b in spans[f["path"]])]
    print(f"\nother keys found in the examples' context (not the planted key): {len(context)} "
          f"({', '.join(f'{k} {v}' for k, v in collections.Counter(f['rule_id'] for f in context).most_common())})")
    sources = [("planted tree outside the keys", outside), ("clean tree", findings("clean"))]
    for spec in args.unplanted:
        name, _, path = spec.partition("=")
        fs = json.load(open(path, encoding="utf-8"))
        skip = set()
        if args.corpus_planted and name == "corpus":
            for line in open(args.corpus_planted, encoding="utf-8"):
                kind, rel, ln = line.rstrip("\n").split("\t")
                skip.add((rel, int(ln)))
                if kind == "aws":
                    skip.add((rel, int(ln) + 1))
            fs = [f for f in fs if (f["path"], f["line"]) not in skip]
        sources.append((name, fs))
    per_rule = collections.defaultdict(collections.Counter)
    print("\nfindings on unplanted text:")
    for name, fs in sources:
        print(f"  {name}: {len(fs)}")
        for f in fs:
            per_rule[f["rule_id"]][name] += 1
            rows.append((name, f["rule_id"], f["path"], f["line"], f.get("redacted", "")))
    if per_rule:
        print(f"\n{'rule':<40} " + " ".join(f"{n[:14]:>14}" for n, _ in sources))
        for rid in sorted(per_rule):
            print(f"{rid:<40} " + " ".join(f"{per_rule[rid][n]:>14}" for n, _ in sources))
    with open(os.path.join(out, "unplanted.tsv"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write("\t".join(map(str, row)) + "\n")
    print(f"\nevery unplanted finding (source, rule, path, line, redacted): {os.path.join(out, 'unplanted.tsv')}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("rules")
    g.add_argument("out")
    g.add_argument("--seed", type=int, default=12)
    g.add_argument("--per-example", type=int, default=1)
    rp = sub.add_parser("report")
    rp.add_argument("rules")
    rp.add_argument("out")
    rp.add_argument("--unplanted", action="append", default=[], metavar="NAME=FINDINGS.json")
    rp.add_argument("--corpus-planted", help="gen_corpus.py's planted.tsv for the `corpus` findings")
    rp.add_argument("--full", action="store_true", help="every provider's recall, not only those under 100 %%")
    args = ap.parse_args()
    generate(args) if args.cmd == "generate" else report(args)


if __name__ == "__main__":
    main()
