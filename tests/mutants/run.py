#!/usr/bin/env python3
"""The mutation gate: applies each mutant in mutants.py alone, rebuilds, runs the tests,
and prints which test caught it. Exits 0 only when every mutant is caught.

  tests/mutants/run.py [BUILD_DIR] [--only NAME ...]

The source tree is edited in place and restored after each mutant (also on Ctrl-C); a
mutant whose text is not found exactly once is reported as stale, which fails the gate.
"""
import argparse
import pathlib
import re
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from mutants import MUTANTS  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def apply(mutant):
    path = ROOT / mutant["file"]
    original = path.read_text()
    text = original
    for find, replace in mutant["edits"]:
        if text.count(find) != 1:
            raise LookupError(f"{mutant['file']}: expected exactly one {find[:60]!r}")
        text = text.replace(find, replace)
    path.write_text(text)
    return path, original


def build(build_dir):
    run = subprocess.run(["cmake", "--build", build_dir, "-j2"], cwd=ROOT, capture_output=True, text=True)
    return run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def failed_tests(build_dir, regex=None):
    cmd = ["ctest", "--test-dir", build_dir, "-j2", "--timeout", "300"]
    if regex:
        cmd += ["-R", regex]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return re.findall(r"^\s*\d+ - (\S+) \(", run.stdout, re.MULTILINE)


def judge(mutant, build_dir):
    caught = failed_tests(build_dir, mutant["expect"])
    if caught:
        return caught
    return failed_tests(build_dir)  # not by the tests meant for it: by any?


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build_dir", nargs="?", default="build-mutants")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    subprocess.run(["cmake", "-S", ".", "-B", args.build_dir, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                    "-DSHMTIMER_BUILD_BENCH=OFF", "-DSHMTIMER_BUILD_PYTHON=OFF"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    ok, log = build(args.build_dir)
    if not ok or failed_tests(args.build_dir, "Liveness|StaleWriters|Occupancy|pid_namespace"):
        sys.exit("the unmutated tree does not build or pass; fix that first\n" + log)
    rows, all_caught, started = [], True, time.monotonic()
    for mutant in MUTANTS:
        if args.only and mutant["name"] not in args.only:
            continue
        t0 = time.monotonic()
        try:
            path, original = apply(mutant)
        except LookupError as e:
            rows.append((mutant["name"], f"STALE: {e}", 0))
            all_caught = False
            continue
        try:
            ok, log = build(args.build_dir)
            caught = judge(mutant, args.build_dir) if ok else ["(does not build)"]
        finally:
            path.write_text(original)
        if not ok:
            print(log, file=sys.stderr)
        verdict = ", ".join(caught[:3]) + (f" (+{len(caught) - 3})" if len(caught) > 3 else "") if caught else "NOT CAUGHT"
        all_caught &= bool(caught) and ok
        rows.append((mutant["name"], verdict, time.monotonic() - t0))
        print(f"  {mutant['name']}: {verdict} ({time.monotonic() - t0:.0f} s)", flush=True)
    build(args.build_dir)  # leave the build matching the tree
    width = max(len(r[0]) for r in rows)
    print(f"\n| {'mutant'.ljust(width)} | caught by |\n|{'-' * (width + 2)}|---|")
    for name, verdict, _ in rows:
        print(f"| {name.ljust(width)} | {verdict} |")
    print(f"\n{sum(1 for r in rows if not r[1].startswith(('NOT', 'STALE', '(does')))} of {len(rows)} mutants caught "
          f"in {time.monotonic() - started:.0f} s")
    sys.exit(0 if all_caught else 1)


if __name__ == "__main__":
    main()
