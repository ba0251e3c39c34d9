#!/usr/bin/env python3
"""Prints every keyword of the rules in the RULES_DIRs (default: the
repository's rules/), once each (first spelling, case-insensitively), a line
each: what the bench scripts hand ripgrep as the reference keyword search.

    python3 bench/keywords.py [RULES_DIR...]
"""
import glob
import os
import sys

import yaml

roots = sys.argv[1:] or [os.path.join(os.path.dirname(__file__), "..", "rules")]
seen = set()
for root in roots:
    for f in sorted(glob.glob(os.path.join(root, "*.yaml"))):
        for rule in (yaml.safe_load(open(f)) or {}).get("rules", []):
            for k in rule.get("keywords", []):
                if k.lower() not in seen:
                    seen.add(k.lower())
                    print(k)
