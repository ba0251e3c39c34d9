#!/usr/bin/env python3
"""Writes a deterministic benchmark corpus: source code, config and log text
with keys planted at a low rate, the way they turn up in real trees.

    python3 bench/gen_corpus.py OUT_DIR --size-mb 200 [--seed 7]

The same size and seed always produce the same bytes. The keywords scanners
look for ("token", "secret", "api_key", "aws", "bearer", "t-"...) appear in
ordinary, harmless lines far more often than real keys do, as in real code;
that is what makes a prefilter work for its living. OUT_DIR/planted.tsv lists
every planted key's kind, file and line (the keys themselves are made up here
and protect nothing).
"""

import argparse
import os
import random
import string
import zlib

HEX = "0123456789abcdef"
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
B32 = string.ascii_uppercase + "234567"

WORDS = (
    "account address amount balance block buffer cache chain client config context "
    "count cursor data default delta error event field filter handler header index "
    "input item key label ledger limit list manager message meta network node offset "
    "order output owner page params path payload peer pool price query queue record "
    "request response result retry route schema service session size state status "
    "store stream subscription table target task timeout total transaction user value "
    "version wallet window worker"
).split()


def ident(r, n=2):
    return "_".join(r.choice(WORDS) for _ in range(n))


def camel(r, n=2):
    ws = [r.choice(WORDS) for _ in range(n)]
    return ws[0] + "".join(w.capitalize() for w in ws[1:])


def rand(r, alphabet, n):
    return "".join(r.choice(alphabet) for _ in range(n))


def uuid(r):
    h = rand(r, HEX, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{r.choice('89ab')}{h[17:20]}-{h[20:]}"


def base62_fixed(n, width):
    out = []
    for _ in range(width):
        out.append(B62[n % 62])
        n //= 62
    return "".join(reversed(out))


# --- planted keys -----------------------------------------------------------

def key_tatum(r):
    v = f"t-{rand(r, HEX, 24)}-{rand(r, HEX, 24)}"
    return r.choice([
        f"TATUM_API_KEY={v}",
        f'    "apiKey": "{v}",',
        f"  x-api-key: {v}",
        f'RPC_URL="https://x-api-key:{v}@ethereum-mainnet.gateway.tatum.io/"',
    ])


def key_tatum_legacy(r):
    return f'export TATUM_API_KEY="{uuid(r)}"'


def key_github(r):
    body = rand(r, B62, 30)
    tok = "ghp_" + body + base62_fixed(zlib.crc32(body.encode()), 6)
    return f'GITHUB_TOKEN="{tok}"'


def key_aws(r):
    kid = "AKIA" + rand(r, B32, 16)
    sec = rand(r, B62 + "/+", 40)
    return f"aws_access_key_id = {kid}\naws_secret_access_key = {sec}"


def key_stripe(r):
    return f'STRIPE_SECRET_KEY = "sk_live_{rand(r, B62, 24)}"'


def key_slack(r):
    return (f'slack_token: "xoxb-{rand(r, string.digits, 12)}-{rand(r, string.digits, 12)}-'
            f'{rand(r, B62, 24)}"')


def key_generic(r):
    return f'api_key = "{rand(r, B62, 32)}"'


PLANTERS = [
    ("tatum", key_tatum), ("tatum-legacy", key_tatum_legacy), ("github", key_github),
    ("aws", key_aws), ("stripe", key_stripe), ("slack", key_slack), ("generic", key_generic),
]

# --- ordinary lines, by file kind -------------------------------------------


# Keyword-bearing but harmless lines (the words scanners key on, in code
# that holds no key) make up KEYWORD_RATE of ordinary lines: about three
# times the rate measured in a real tree of Rust crates (1.4% of lines hit one
# of the built-in rules' keywords), so the prefilter and the regexes behind it
# get more work than usual, not less.
KEYWORD_RATE = 0.04


def py_line(r):
    if r.random() < KEYWORD_RATE:
        return r.choice([
            "    token = request.headers.get(\"Authorization\", \"\").removeprefix(\"Bearer \")",
            "    secret_key = settings.SECRET_KEY  # loaded from the vault at start-up",
            f"    api_key = os.environ[\"{ident(r, 1).upper()}_API_KEY\"]",
            f"    # TODO: retry the {ident(r, 1)} call when the token has expired",
        ])
    k = r.randrange(8)
    if k == 0:
        return f"def {ident(r)}(self, {ident(r, 1)}, {ident(r, 1)}=None):"
    if k == 1:
        return f"    {ident(r)} = self.{ident(r)}.get({ident(r, 1)!r}, {r.randrange(1000)})"
    if k == 2:
        return f"    if not {ident(r)}:\n        raise ValueError(\"missing {ident(r, 1)}\")"
    if k == 3:
        return f"    logger.debug(\"%s took %.2fms\", {ident(r, 1)!r}, elapsed * 1000)"
    if k == 4:
        return f"from .{ident(r, 1)} import {camel(r)}, {camel(r)}"
    if k == 5:
        return f"    return {{\"{ident(r, 1)}\": {ident(r)}, \"count\": len({ident(r, 1)})}}"
    if k == 6:
        return f"    for {ident(r, 1)} in self.{ident(r)}:"
    return f"        {ident(r)} += {ident(r, 1)}.{ident(r, 1)}({r.randrange(100)})"


def js_line(r):
    if r.random() < KEYWORD_RATE:
        return r.choice([
            f"  const apiKey = process.env.{ident(r, 1).upper()}_API_KEY;",
            "  headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },",
            f"  // refresh the access token before it expires ({r.randrange(60)}s margin)",
            f"  <div className=\"font-bold text-{r.choice(['sm', 'lg'])} mt-{r.randrange(8)}\">"
            f"{{t('{ident(r, 1)}.title')}}</div>",
        ])
    k = r.randrange(6)
    if k == 0:
        return f"export async function {camel(r, 3)}({camel(r)}, {camel(r)}) {{"
    if k == 1:
        return f"  const {camel(r)} = await this.{camel(r)}.{camel(r)}({camel(r)});"
    if k == 2:
        return f"  if (!{camel(r)}) throw new Error('{camel(r)} is required');"
    if k == 3:
        return f"import {{ {camel(r)}, {camel(r)} }} from './{ident(r, 1)}';"
    return f"  {camel(r)}.{camel(r)} = {camel(r)}[{r.randrange(10)}] ?? null;"


def go_line(r):
    if r.random() < KEYWORD_RATE:
        return "\treq.Header.Set(\"x-api-key\", cfg.APIKey)"
    k = r.randrange(5)
    if k == 0:
        return f"func (s *{camel(r).capitalize()}) {camel(r).capitalize()}(ctx context.Context, id string) error {{"
    if k == 1:
        return f"\tif err != nil {{\n\t\treturn fmt.Errorf(\"{ident(r, 1)}: %w\", err)\n\t}}"
    if k == 2:
        return f"\t{camel(r)} := s.{camel(r)}[{camel(r)}]"
    return f"\t{camel(r)}, err := s.store.{camel(r).capitalize()}(ctx, {camel(r)})"


def yaml_block(r):
    name = ident(r, 1)
    env = [f"            - name: LOG_LEVEL\n              value: {r.choice(['info', 'debug'])}"]
    if r.random() < 0.3:
        env.append(f"            - name: {name.upper()}_TOKEN\n              valueFrom:\n"
                   f"                secretKeyRef: {{name: {name}-secret, key: token}}")
    return "\n".join([
        "apiVersion: apps/v1",
        "kind: Deployment",
        f"metadata:\n  name: {name}-{r.randrange(100)}",
        "spec:",
        f"  replicas: {r.randrange(1, 6)}",
        "  template:\n    spec:\n      containers:",
        f"        - name: {name}\n          image: registry.local/{name}:{r.randrange(1, 9)}.{r.randrange(20)}",
        "          env:",
        *env,
        "---",
    ])


def json_line(r):
    extra = ', "token_type": "bearer"' if r.random() < KEYWORD_RATE else ""
    return (f'  "{camel(r)}": {{"id": "{uuid(r)}", "{camel(r)}": {r.randrange(10**6)}, '
            f'"scope": "{ident(r, 1)}:read"{extra}}},')


def log_line(r):
    ts = f"2024-{r.randrange(1, 13):02d}-{r.randrange(1, 29):02d}T{r.randrange(24):02d}:{r.randrange(60):02d}:{r.randrange(60):02d}Z"
    if r.random() < KEYWORD_RATE:
        return r.choice([
            f"{ts} DEBUG aws sdk: signed request for {ident(r, 1)} in {r.choice(['eu-west-1', 'us-east-1'])}",
            f'{{"ts":"{ts}","level":"warn","msg":"token refresh failed","retry_in":{r.randrange(60)}}}',
        ])
    k = r.randrange(3)
    if k == 0:
        return (f'{{"ts":"{ts}","level":"info","msg":"request done","method":"GET",'
                f'"path":"/v3/{ident(r, 1)}/{r.randrange(10**6)}","status":200,'
                f'"trace_id":"{uuid(r)}"}}')
    if k == 1:
        return (f'10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(256)} - - [{ts}] '
                f'"POST /api/{ident(r, 1)} HTTP/1.1" {r.choice([200, 201, 401, 500])} {r.randrange(9999)}')
    return f"{ts} WARN {camel(r)}: retrying after {r.randrange(1000)}ms (attempt {r.randrange(5)})"


def md_line(r):
    return " ".join(r.choice(WORDS) for _ in range(r.randrange(6, 18))).capitalize() + "."


KINDS = [
    ("py", py_line, 30), ("ts", js_line, 25), ("go", go_line, 15),
    ("log", log_line, 15), ("json", json_line, 5), ("md", md_line, 5), ("yaml", None, 5),
]


def make_file(r, kind, line_fn, target):
    out, size = [], 0
    while size < target:
        s = yaml_block(r) if kind == "yaml" else line_fn(r)
        out.append(s)
        size += len(s) + 1
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--size-mb", type=float, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--plant-every-kb", type=int, default=64,
                    help="one planted key per this many KB on average")
    args = ap.parse_args()
    r = random.Random(args.seed)
    total = int(args.size_mb * 1_000_000)
    weights = [w for _, _, w in KINDS]
    written, n = 0, 0
    planted = []
    if os.path.exists(args.out) and os.listdir(args.out):
        raise SystemExit(f"{args.out} exists and is not empty; remove it or pick another directory")
    os.makedirs(args.out, exist_ok=True)
    while written < total:
        kind, fn, _ = r.choices(KINDS, weights)[0]
        # Mostly small files, a few large ones: the shape of a real tree.
        target = int(r.lognormvariate(9.5, 1.0))
        target = max(200, min(target, 2_000_000, total - written))
        lines = make_file(r, kind, fn, target)
        rel = os.path.join(f"pkg{n % 97:02d}", f"mod{n // 97 % 31:02d}", f"{ident(r, 1)}_{n}.{kind}")
        if kind in ("py", "ts", "go", "yaml") and r.random() < 0.02:
            rel = os.path.join(os.path.dirname(rel), f"svc{n}", ".env")
        expect = target / (args.plant_every_kb * 1000)
        count = int(expect) + (1 if r.random() < expect - int(expect) else 0)
        spots = sorted(r.randrange(len(lines) + 1) for _ in range(count))
        merged, line_no, si = [], 1, 0
        for i in range(len(lines) + 1):
            while si < len(spots) and spots[si] == i:
                name, planter = r.choice(PLANTERS)
                s = planter(r)
                planted.append((name, rel, line_no))
                merged.append(s)
                line_no += s.count("\n") + 1
                si += 1
            if i < len(lines):
                merged.append(lines[i])
                line_no += lines[i].count("\n") + 1
        lines = merged
        text = "\n".join(lines) + "\n"
        path = os.path.join(args.out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        written += len(text)
        n += 1
    with open(os.path.join(args.out, "planted.tsv"), "w", encoding="utf-8") as f:
        for p in planted:
            f.write("\t".join(map(str, p)) + "\n")
    print(f"{args.out}: {n} files, {written / 1e6:.1f} MB, {len(planted)} planted keys")


if __name__ == "__main__":
    main()
