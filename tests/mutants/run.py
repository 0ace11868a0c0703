#!/usr/bin/env python3
"""The mutation gate: applies each mutant in mutants.py alone, rebuilds, runs the tests,
and prints which test caught it. Exits 0 only when every mutant is caught.

  tests/mutants/run.py [BUILD_DIR] [--only NAME ...] [--repeat N]
  tests/mutants/run.py [BUILD_DIR] --check

`--check` builds nothing: it fails on any mutant that would be stale, and (given a
configured BUILD_DIR) on an `expect` that selects no registered test. CTest runs it
(`mutants_apply`), so a change that makes a mutant stale fails the ordinary suite.

A mutant is caught only when some test fails on the mutated tree twice (two separate ctest
runs of that test, both failing) and that same test passes on the unmutated tree in the
same gate run. In order:
  1. apply the mutant, build, run the mutant's `expect` tests; if none of them fails, run
     the whole suite instead. The tests that failed are the candidates;
  2. run exactly the candidates again on the mutated tree; keep those that fail again;
  3. restore the source, rebuild, run the kept tests on the unmutated tree; keep those
     that pass there. What a test did on the unmutated tree is remembered for the rest of
     the run: a test that did not pass there (failed, timed out, skipped, not found) is
     reported as broken or flaky and never counts as a catch.
The mutant is caught iff a test is left after step 3; otherwise the table says why not.
A mutant that does not build is not caught. `--repeat N` runs the whole list N times and
requires every mutant caught in every pass.

The gate's build has no Python module (relinking it costs every mutant half a minute, and
the Python suites take minutes). A mutant marked `python=True` is judged in a second build
tree, BUILD_DIR-python, with the module and its suites; it is configured only when such a
mutant is selected.

Before any mutant the unmutated tree must build, or the gate fails at once. The source tree
is edited in place and always restored (also on Ctrl-C); a mutant whose text is not found
exactly once is reported as stale, which fails the gate.
"""
import argparse
import contextlib
import json
import pathlib
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from mutants import MUTANTS  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
NAMES_PER_CTEST_RUN = 50  # keeps each -R regex far below what ctest's regex engine compiles


def mutated_text(mutant, original):
    text = original
    for find, replace in mutant["edits"]:
        if text.count(find) != 1:
            raise LookupError(f"{mutant['file']}: expected exactly one {find[:60]!r}")
        text = text.replace(find, replace)
    return text


def restore(path, original):
    # A second Ctrl-C must not cut the restore short and leave half a file behind.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        path.write_text(original)
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def applied(mutant):
    """The mutant is in the source tree inside the with-block, and never after it."""
    path = ROOT / mutant["file"]
    original = path.read_text()
    mutated = mutated_text(mutant, original)  # LookupError (stale) before the file is touched
    try:
        path.write_text(mutated)
        yield
    finally:
        restore(path, original)


def build(build_dir):
    run = subprocess.run(["cmake", "--build", build_dir, "-j2"], cwd=ROOT, capture_output=True, text=True)
    return run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def run_tests(build_dir, regex=None):
    """One ctest run: (names that passed, names that failed)."""
    cmd = ["ctest", "--test-dir", build_dir, "-j2", "--timeout", "300"]
    if regex:
        cmd += ["-R", regex]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True).stdout
    # ctest pads each status line's name with dots to the longest name, so it is never cut.
    passed = set(re.findall(r"^\s*\d+/\d+ Test\s+#\d+: (\S+) \.+\s+Passed\b", out, re.MULTILINE))
    # Only the FAILED list: the "did not run" list before it (skipped, disabled) has the same form.
    failed_list = out.partition("The following tests FAILED:")[2]
    failed = set(re.findall(r"^\s*\d+ - (\S+) \(", failed_list, re.MULTILINE))
    return passed, failed


def run_named(build_dir, names):
    """Runs exactly these tests (anchored, escaped names, in batches): (passed, failed)."""
    names, passed, failed = sorted(names), set(), set()
    for i in range(0, len(names), NAMES_PER_CTEST_RUN):
        batch = names[i:i + NAMES_PER_CTEST_RUN]
        p, f = run_tests(build_dir, "^(" + "|".join(re.escape(n) for n in batch) + ")$")
        passed |= p
        failed |= f
    return passed, failed


def fail_on_mutant(mutant, build_dir):
    """(tests that failed in two runs on the mutated tree, tests that failed in the first only)."""
    _, first = run_tests(build_dir, mutant["expect"])
    if not first:
        _, first = run_tests(build_dir)  # not by the tests meant for it: by any?
    if not first:
        return set(), set()
    _, second = run_named(build_dir, first)
    return first & second, first - second


class UnmutatedBroken(Exception):
    pass


def pass_on_unmutated(names, build_dir, unmutated):
    """The names that pass on the unmutated tree. `unmutated` maps a test name to whether it
    passed there; it is kept for the whole gate run, since that tree does not change."""
    todo = [n for n in names if n not in unmutated]
    if todo:
        ok, log = build(build_dir)  # the source was restored: incremental
        if not ok:
            raise UnmutatedBroken(log)
        passed, _ = run_named(build_dir, todo)
        for name in todo:
            unmutated[name] = name in passed
            if not unmutated[name]:
                print(f"  ! {name} does not pass on the unmutated tree: never counts as a catch", flush=True)
    return {n for n in names if unmutated[n]}


def listed(names):
    names = sorted(names)
    return ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")


def judge(mutant, build_dir, unmutated):
    """(caught, verdict) for one mutant; the source is restored before this returns."""
    with applied(mutant):
        ok, log = build(build_dir)
        twice, once = fail_on_mutant(mutant, build_dir) if ok else (set(), set())
    if not ok:
        print(log, file=sys.stderr)
        return False, "NOT CAUGHT: does not build"
    catchers = pass_on_unmutated(twice, build_dir, unmutated)
    if catchers:
        return True, listed(catchers)
    why = []
    if once:
        why.append(f"failed once only: {listed(once)}")
    if twice:
        why.append(f"fails on unmutated tree too: {listed(twice)}")
    return False, "NOT CAUGHT: " + ("; ".join(why) or "no test failed")


def configure(build_dir, python):
    subprocess.run(["cmake", "-S", ".", "-B", build_dir, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                    "-DSHMTIMER_BUILD_BENCH=OFF", f"-DSHMTIMER_BUILD_PYTHON={'ON' if python else 'OFF'}",
                    "-DPython3_EXECUTABLE=/usr/bin/python3"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    ok, log = build(build_dir)
    if not ok:
        sys.exit("the unmutated tree does not build; fix that first\n" + log)


def registered_tests(build_dir):
    out = subprocess.run(["ctest", "--test-dir", build_dir, "-N", "--show-only=json-v1"], check=True,
                         capture_output=True, text=True).stdout
    return [test["name"] for test in json.loads(out)["tests"]]


def check(build_dir):
    """What the gate would find wrong before building anything: a mutant whose text is not in
    its file exactly once (stale) or changes nothing, a name used twice, and (with a configured
    BUILD_DIR) an `expect` that selects no registered test, which would send the gate to the
    whole suite for that mutant. Python-lane mutants' tests exist only in builds with the
    module, so their `expect` is not checked here."""
    problems, names = [], set()
    tests = registered_tests(build_dir) if build_dir else None
    for mutant in MUTANTS:
        name = mutant["name"]
        if name in names:
            problems.append(f"{name}: the name is used twice")
        names.add(name)
        try:
            original = (ROOT / mutant["file"]).read_text()
            if mutated_text(mutant, original) == original:
                problems.append(f"{name}: its edits change nothing")
        except (LookupError, OSError) as e:
            problems.append(f"{name}: STALE: {e}")
        if tests is not None and not mutant.get("python") and \
                not any(re.search(mutant["expect"], test) for test in tests):
            problems.append(f"{name}: expect {mutant['expect']!r} selects no test registered in {build_dir}")
    for problem in problems:
        print(problem)
    print(f"{len(MUTANTS)} mutants, {len(problems)} problems")
    sys.exit(1 if problems else 0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build_dir", nargs="?", default="build-mutants")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run the whole list N times; a mutant must be caught in every pass")
    parser.add_argument("--check", action="store_true",
                        help="build nothing: check that every mutant applies (and, given a configured "
                             "BUILD_DIR, that its expect selects a registered test)")
    args = parser.parse_args()
    if args.check:
        build_dir = pathlib.Path(args.build_dir)
        check(build_dir if (build_dir / "CTestTestfile.cmake").exists() else None)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    unknown = set(args.only or ()) - {m["name"] for m in MUTANTS}
    if unknown:
        parser.error(f"no such mutant: {', '.join(sorted(unknown))}")
    mutants = [m for m in MUTANTS if not args.only or m["name"] in args.only]
    build_dirs = {python: args.build_dir + ("-python" if python else "")
                  for python in sorted({bool(m.get("python")) for m in mutants})}
    for python, build_dir in build_dirs.items():
        configure(build_dir, python)
    verdicts = {m["name"]: [] for m in mutants}  # name -> [(caught, verdict)] one per pass
    # test name -> passed on the unmutated tree, per build tree
    unmutated, started = {build_dir: {} for build_dir in build_dirs.values()}, time.monotonic()
    try:
        for n in range(1, args.repeat + 1):
            for mutant in mutants:
                t0 = time.monotonic()
                try:
                    build_dir = build_dirs[bool(mutant.get("python"))]
                    caught, verdict = judge(mutant, build_dir, unmutated[build_dir])
                except LookupError as e:
                    caught, verdict = False, f"STALE: {e}"
                verdicts[mutant["name"]].append((caught, verdict))
                label = f"[pass {n}/{args.repeat}] " if args.repeat > 1 else ""
                print(f"  {label}{mutant['name']}: {verdict} ({time.monotonic() - t0:.0f} s)", flush=True)
    except UnmutatedBroken as e:
        sys.exit("the unmutated tree no longer builds (was it edited meanwhile?)\n" + str(e))
    for build_dir in build_dirs.values():
        build(build_dir)  # leave the build matching the tree
    rows = []
    for name, passes in verdicts.items():
        missed = [(i, v) for i, (c, v) in enumerate(passes, 1) if not c]
        if missed:
            i, verdict = missed[0]
            rows.append((name, False, f"pass {i}/{args.repeat}: {verdict}" if args.repeat > 1 else verdict))
        else:
            rows.append((name, True, " / ".join(dict.fromkeys(v for _, v in passes))))  # each distinct once
    width = max([len("mutant")] + [len(r[0]) for r in rows])
    print(f"\n| {'mutant'.ljust(width)} | caught by |\n|{'-' * (width + 2)}|---|")
    for name, _, verdict in rows:
        print(f"| {name.ljust(width)} | {verdict} |")
    broken = sorted({name for tree in unmutated.values() for name, passed in tree.items() if not passed})
    if broken:
        print(f"\ntests that did not pass on the unmutated tree (never counted): {', '.join(broken)}")
    every_pass = f" in each of {args.repeat} passes" if args.repeat > 1 else ""
    print(f"\n{sum(1 for r in rows if r[1])} of {len(rows)} mutants caught{every_pass} "
          f"in {time.monotonic() - started:.0f} s")
    sys.exit(0 if rows and all(r[1] for r in rows) else 1)


if __name__ == "__main__":
    main()
