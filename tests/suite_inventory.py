#!/usr/bin/env python3
"""Fails when a suite the README names for this build is not registered with CTest.

  suite_inventory.py BUILD_DIR README KIND

KIND is "release" (every suite) or "sanitized" (the suites marked "all builds"). A suite
is a CTest label: each GoogleTest binary labels its discovered tests with its own name,
and each other test is labelled with its test name (tests/CMakeLists.txt). The README's
table between <!-- suites:begin --> and <!-- suites:end --> is the one list.
"""
import json
import re
import subprocess
import sys


def readme_suites(readme):
    """{suite: builds} from the README's table."""
    text = open(readme, encoding="utf-8").read()
    block = text.split("<!-- suites:begin -->", 1)[1].split("<!-- suites:end -->", 1)[0]
    rows = re.findall(r"^\|\s*`([^`]+)`\s*\|\s*([^|]+?)\s*\|$", block, re.MULTILINE)
    if not rows:
        sys.exit(f"{readme}: no suite table between the suites markers")
    return dict(rows)


def registered_suites(build_dir):
    out = subprocess.run(["ctest", "--test-dir", build_dir, "-N", "--show-only=json-v1"], check=True,
                         capture_output=True, text=True).stdout
    labels = {}
    for test in json.loads(out)["tests"]:
        for prop in test.get("properties", []):
            if prop["name"] == "LABELS":
                for label in prop["value"]:
                    labels[label] = labels.get(label, 0) + 1
    return labels


def main():
    build_dir, readme, kind = sys.argv[1:4]
    listed = readme_suites(readme)
    expected = {name for name, builds in listed.items() if kind == "release" or builds == "all builds"}
    registered = registered_suites(build_dir)
    missing = sorted(expected - set(registered))
    unlisted = sorted(set(registered) - set(listed) - {"suite_inventory"})
    print(f"{len(expected)} suites expected in a {kind} build; {len(registered)} registered")
    for name in sorted(registered):
        print(f"  {name}: {registered[name]} test(s)")
    if unlisted:
        print("registered but not in the README's table (add them):", ", ".join(unlisted))
    if missing:
        print("MISSING (the README says this build runs them):", ", ".join(missing))
    return 1 if missing or unlisted else 0


if __name__ == "__main__":
    sys.exit(main())
