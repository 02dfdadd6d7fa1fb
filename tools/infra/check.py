#!/usr/bin/env python3
"""The project's own infrastructure checks: SPEC 5 properties on template.yaml and terraform/,
and their parity.

    check.py [--root DIR]    exit 0 when every property holds, 1 otherwise (one line per failure)
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import model  # noqa: E402
import parity  # noqa: E402


def run(root: str) -> list[tuple[str, str]]:
    sam = model.sam_model(os.path.join(root, "template.yaml"))
    tf = model.tf_model(os.path.join(root, "terraform"))
    return checks.check(sam, "template.yaml") + checks.check(tf, "terraform/") + parity.compare(sam, tf)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    parser.add_argument("--root", default=default_root, help="directory holding template.yaml and terraform/")
    args = parser.parse_args()

    failures = run(args.root)
    for prop, message in failures:
        print(f"FAIL [{prop}] {message}")
    if failures:
        print(f"infra checks: {len(failures)} failure(s)", file=sys.stderr)
        return 1
    print(f"infra checks OK: {', '.join(checks.PROPERTIES)}, parity (template.yaml = terraform/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
