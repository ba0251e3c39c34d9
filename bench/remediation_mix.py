#!/usr/bin/env python3
"""Key generation for `MIX=1 bench/remediation.sh N`: N fresh leaked keys
spread round-robin over the providers keysentry contains automatically, each
made from its rule's first example by bench/recall.py's generator (fresh
characters of the same classes, checksums recomputed), one key per env file,
each registered with keysentry-sim as a live key of its provider.

    python3 bench/remediation_mix.py N RULES_DIR WORK_DIR SIM_URL

Writes WORK_DIR/tree/svcNNNNN.env and WORK_DIR/mix.tsv (provider, rule);
prints the providers used. The keys are made up here and never leave the
machine.
"""

import importlib.util
import json
import os
import random
import sys
import urllib.request

import regex

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("recall", os.path.join(HERE, "recall.py"))
recall = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recall)

# (rule id, how the simulator learns the key): "tatum" through its own
# control endpoint, "keys" through /_sim/keys/{provider}, "any" for the
# simulated APIs that take any key not yet revoked (GitHub, Slack, GitLab).
MIX = [
    ("tatum.api-key", "tatum"),
    ("github.personal-access-token", "any"),
    ("slack.bot-token", "any"),
    ("gitlab.personal-access-token", "any"),
    ("npm.access-token", "keys"),
    ("sendgrid.api-key", "keys"),
    ("cloudflare.api-token", "keys"),
    ("vercel.access-token", "keys"),
    ("doppler.service-token", "keys"),
    ("buildkite.api-access-token", "keys"),
    ("heroku.api-key", "keys"),
    ("digitalocean.personal-access-token", "keys"),
    ("cratesio.api-token", "keys"),
]


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return r.status


def main():
    n, rules_dir, work, sim = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    rules = {r["id"]: r for r in recall.load_rules(rules_dir)}
    r = random.Random(20261201)
    os.makedirs(os.path.join(work, "tree"), exist_ok=True)
    seen = set()
    rows = []
    for i in range(n):
        rule_id, kind = MIX[i % len(MIX)]
        rule = rules[rule_id]
        rx = regex.compile(rule["pattern"])
        originals = set(rule.get("examples") or [])
        for _ in range(20):
            text, key, why = recall.fresh_example(r, rule, rx, rule["examples"][0], originals)
            if key is None:
                sys.exit(f"{rule_id}: no fresh key ({why})")
            if key not in seen:
                break
        seen.add(key)
        with open(os.path.join(work, "tree", f"svc{i:05}.env"), "w") as f:
            f.write(text + "\n")
        provider = rule["provider"]
        if kind == "tatum":
            post(f"{sim}/_sim/tatum/keys", {"key": key, "testnet": True})
        elif kind == "keys":
            post(f"{sim}/_sim/keys/{provider}", {"key": key})
        rows.append(f"{provider}\t{rule_id}")
    with open(os.path.join(work, "mix.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    print(" ".join(sorted({rule_id.split(".")[0] for rule_id, _ in MIX})))


if __name__ == "__main__":
    main()
