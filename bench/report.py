#!/usr/bin/python3
"""Writes docs/benchmarks.md from one run of the suite (bench/run.sh).

Inputs: Google Benchmark's JSON from BUILD/bench/shmtimer_bench (median aggregates of 5
repetitions, or the single run where a benchmark sets Repetitions(1)) and the JSON of
bench/python_pairs.py. Output: the Markdown report (machine, commit, command, date,
tables, targets with met/missed and why) and the data file for bench/chart.gp.
Standard library only.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess

# ---------------------------------------------------------------------------- inputs


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


class Results:
    """Google Benchmark's runs by name: the median aggregate, else the single run."""

    def __init__(self, path):
        with open(path) as f:
            data = json.load(f)
        self.context = data["context"]
        self.runs = {}
        self.cv = {}
        self.errors = {}  # run name: Google Benchmark's error message
        for b in data["benchmarks"]:
            if b.get("error_occurred"):
                self.errors[b["run_name"]] = b.get("error_message", "error")
                continue
            if b["run_type"] == "aggregate" and b.get("aggregate_name") == "cv":
                self.cv[b["run_name"]] = b  # spread of the repetitions: time and counters as fractions
                continue
            if b["run_type"] == "aggregate" and b.get("aggregate_name") != "median":
                continue
            if b["run_type"] == "iteration" and b["run_name"] in self.runs:
                continue  # a median aggregate (or an earlier repetition) is already there
            if b["run_type"] == "aggregate" or b["run_name"] not in self.runs:
                self.runs[b["run_name"]] = b

    def find(self, family, **args):
        """The run of `family` whose name has every `key:value` in args."""
        for name, run in self.runs.items():
            parts = name.split("/")
            if parts[0] != family:
                continue
            if all("%s:%s" % (k, v) in parts for k, v in args.items()):
                return run
        return None

    def find_threads(self, family, threads):
        for name, run in self.runs.items():
            if name.split("/")[0] == family and run.get("threads", 1) == threads:
                return run
        return None


UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def real_ns(run):
    return run["real_time"] * UNIT_NS[run["time_unit"]]


def cpu_ns(run):
    return run["cpu_time"] * UNIT_NS[run["time_unit"]]


# ---------------------------------------------------------------------------- formatting


def fmt_ns(ns):
    if ns is None:
        return "n/a"
    if ns < 100:
        return "%.1f ns" % ns
    if ns < 1e3:
        return "%.0f ns" % ns
    if ns < 1e5:
        return "%.1f µs" % (ns / 1e3)
    if ns < 1e6:
        return "%.0f µs" % (ns / 1e3)
    if ns < 1e9:
        return "%.2f ms" % (ns / 1e6)
    return "%.2f s" % (ns / 1e9)


def fmt_signed_ns(ns):
    """A difference: its sign, then fmt_ns of its size."""
    return ("−" if ns < 0 else "+") + fmt_ns(abs(ns))


def fmt_rate(per_s):
    if per_s >= 1e6:
        return "%.1f M/s" % (per_s / 1e6)
    if per_s >= 1e3:
        return "%.1f k/s" % (per_s / 1e3)
    return "%.0f /s" % per_s


def fmt_ratio(x):
    if x is None:
        return "n/a"
    return "%.0f×" % x if x >= 10 else "%.1f×" % x if x >= 1 else "%.2f×" % x


def fmt_cv(cv):
    return "n/a" if cv is None else "%.0f %%" % (100 * cv)


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


# ---------------------------------------------------------------------------- machine


def machine(args, ctx):
    lscpu = {}
    for line in sh("lscpu").splitlines():
        key, _, value = line.partition(":")
        lscpu[key.strip()] = value.strip()
    cache = {}
    for line in open(os.path.join(args.build, "CMakeCache.txt")):
        m = re.match(r"([A-Za-z_0-9]+):[A-Z]+=(.*)", line.strip())
        if m:
            cache[m.group(1)] = m.group(2)
    compiler = cache.get("CMAKE_CXX_COMPILER", "c++")
    version = sh(compiler, "--version").splitlines()
    with open("/proc/loadavg") as f:
        load_end = f.read().split()[:3]
    return {
        "cpu": lscpu.get("Model name", "?"),
        "cpus": lscpu.get("CPU(s)", "?"),
        "cores": "%s socket(s) × %s core(s) × %s thread(s)" % (
            lscpu.get("Socket(s)", "?"), lscpu.get("Core(s) per socket", "?"), lscpu.get("Thread(s) per core", "?")),
        "hypervisor": lscpu.get("Hypervisor vendor", ""),
        "kernel": "%s %s" % (platform.system(), platform.release()),
        "compiler": version[0] if version else compiler,
        "build_type": cache.get("CMAKE_BUILD_TYPE", "?"),
        "gbench": sh("dpkg-query", "-W", "-f=${Version}", "libbenchmark-dev") or "?",
        "gbench_build": ctx.get("library_build_type", "?"),
        "load_start": ["%.2f" % x for x in ctx.get("load_avg", [])],
        "load_end": load_end,
        "ncpu": int(ctx.get("num_cpus", 1)),
    }


# ---------------------------------------------------------------------------- sections


def pair_rows(cpp, py):
    """[(key, label, chart label, language, p50, p99, mean)] for the main comparison."""
    rows = []
    cpp_pairs = [
        ("table_scope", "BM_Pair_TableScope", "C++ `ShmTimerClient` acquire+release (30-byte scope)", "C++ table\\n(scope API)"),
        ("table_handle", "BM_Pair_TableTimerHandle", "C++ `Timer` handle arm+disarm (table)", "C++ table\\n(Timer handle)"),
        ("fifo_open", "BM_Pair_FifoOpenPerRequest", "C++ `FifoTimerClient`, FIFO opened per request (as PyTorch)",
         "C++ FIFO\\n(open per request)"),
        ("fifo_kept", "BM_Pair_FifoKeepOpen", "C++ `FifoTimerClient`, `keep_open = true`", "C++ FIFO\\n(kept open)"),
    ]
    for key, family, label, short in cpp_pairs:
        run = cpp.find(family)
        if run is None:
            continue
        rows.append(dict(key=key, label=label, short=short, lang=1, p50=run["p50_ns"], p99=run["p99_ns"],
                         mean=real_ns(run), cv=cpp.cv.get(run["run_name"], {}).get("real_time"),
                         p50_cv=cpp.cv.get(run["run_name"], {}).get("p50_ns")))
    shorts = {"py_shm_client": "Python shmtimer\\nShmTimerClient", "py_shm_timer": "Python shmtimer\\nTimer handle", "py_shm_expires": "Python\\nshmtimer.expires",
              "py_torch_expires_shm": "Python torch expires\\n+ shmtimer client",
              "py_file_timer_client": "Python PyTorch\\nFileTimerClient"}
    labels = {"py_shm_client": "Python `shmtimer.ShmTimerClient` acquire+release",
              "py_shm_timer": "Python `shmtimer.Timer` handle `arm_after(60)` + `disarm()`",
              "py_shm_expires": "Python `with shmtimer.expires(60, scope)`",
              "py_torch_expires_shm": "Python `with torch…timer.expires(after=60, scope=…)`, shmtimer client",
              "py_file_timer_client": "Python PyTorch `FileTimerClient` acquire+release (FIFO per request)"}
    for b in py.get("benchmarks", []):
        reps = b.get("mean_ns_reps", [])
        cv = statistics.stdev(reps) / statistics.mean(reps) if len(reps) > 1 else None
        rows.append(dict(key=b["name"], label=labels.get(b["name"], b["label"]), short=shorts.get(b["name"], b["name"]),
                         lang=2, p50=b["p50_ns"], p99=b["p99_ns"], mean=b["mean_ns_median"], cv=cv))
    return rows


def by_key(rows, key):
    return next((r for r in rows if r["key"] == key), None)


def section_pairs(rows):
    base = by_key(rows, "table_scope")
    out = [table(["client", "p50 / pair", "p99 / pair", "mean / pair", "spread of means (cv)", "pairs/s (1 thread)",
                  "× table pair (p50)"],
                 [[r["label"], fmt_ns(r["p50"]), fmt_ns(r["p99"]), fmt_ns(r["mean"]), fmt_cv(r["cv"]),
                   fmt_rate(1e9 / r["mean"]), fmt_ratio(r["p50"] / base["p50"]) if base else "n/a"] for r in rows])]
    return "\n".join(out)


def section_scaling(cpp):
    rows = []
    one = cpp.find("BM_Scaling", workers=1, processes=0, shared=0)
    for workers, processes, shared in [(1, 0, 0), (2, 0, 0), (4, 0, 0), (2, 1, 0), (2, 0, 1), (4, 0, 1)]:
        run = cpp.find("BM_Scaling", workers=workers, processes=processes, shared=shared)
        if run is None:
            continue
        kind = ("processes" if processes else "threads") if workers > 1 else "thread"
        rows.append(["%d %s" % (workers, kind), "one shared slot" if shared else "own slots",
                     fmt_rate(run["pairs_per_s"]), fmt_rate(run["pairs_per_s"] / workers),
                     fmt_ns(run["p50_ns"]), fmt_ns(run["p99_ns"]),
                     "%.2f×" % (run["pairs_per_s"] / one["pairs_per_s"]) if one else "n/a"])
    return table(["workers", "slots", "aggregate pairs/s", "per worker", "p50 / pair", "p99 / pair",
                  "aggregate vs 1 thread"], rows)


def scaling_vs_headline(cpp, scope):
    """Why the 1-thread row need not equal section 1's table pair, with this run's figures."""
    one = cpp.find("BM_Scaling", workers=1, processes=0, shared=0)
    if one is None or scope is None:
        return ""
    return ("**The 1-thread row and section 1's table pair** time the same code (`acquire` then `release` "
            "through the scope API, a 30-byte scope, batches of 16 timed with `steady_clock`, p50 of the "
            "batches): %s here against %s there. Where and when it runs differs: `BM_Pair_TableScope` "
            "(`bench/pair_bench.cpp`) samples on Google Benchmark's main thread right after its own timed loop "
            "of the same pair; `BM_Scaling` (`bench/scaling_bench.cpp`) starts a new thread for every "
            "repetition, builds a new client and claims its slot there, then times for a fixed 250 ms while the "
            "main thread waits in `join()`; each uses its own table and scope, hence its own slot. On this "
            "2-vCPU VM the same pair costs between about 28 and 50 ns depending on such conditions (compare the "
            "raw pair on one thread and on each of two, section 4), and this run does not tell which difference "
            "costs what. So read each table on its own: the last column compares the scaling rows with this "
            "table's 1-thread row, measured the same way." % (fmt_ns(one["p50_ns"]), fmt_ns(scope["p50"])))


def section_expires(cpp):
    variants = [
        ("BM_Expires_RawPair", 1, "raw pair: `acquire(scope, deadline); release(scope)`"),
        ("BM_Expires_RawPairWithClock", 1, "raw pair, deadline = `now() + 60s`"),
        ("BM_Expires_ExplicitScope", 1, "`Expires g(60s, scope)` (configured client)"),
        ("BM_Expires_DefaultScope", 1, "`Expires g(60s)` (default `<file>#<line>` scope)"),
        ("BM_Expires_ExplicitClient", 1, "`Expires g(60s, scope, client)`"),
        ("BM_Expires_RawPair", 2, "raw pair, 2 threads"),
        ("BM_Expires_ExplicitScope", 2, "`Expires g(60s, scope)`, 2 threads"),
    ]
    raw = {t: cpp.find_threads("BM_Expires_RawPair", t) for t in (1, 2)}
    rows = []
    for family, threads, label in variants:
        run = cpp.find_threads(family, threads)
        if run is None:
            continue
        base = raw[threads]
        over = run["p50_ns"] - base["p50_ns"] if base else None
        rows.append([label, fmt_ns(run["p50_ns"]), fmt_ns(run["p99_ns"]), fmt_ns(real_ns(run)),
                     "—" if family == "BM_Expires_RawPair" else ("+" + fmt_ns(over) if over >= 0 else "−" + fmt_ns(-over))])
    return table(["variant", "p50", "p99", "mean", "overhead vs raw pair (p50)"], rows)


def section_scan(cpp):
    rows = []
    for capacity in (1 << 10, 1 << 16, 1 << 20):
        for percent in (1, 100):
            run = cpp.find("BM_ScanRound", capacity=capacity, percent=percent)
            if run is None:
                continue
            ns = real_ns(run)
            occupied = run.get("occupied", capacity * percent / 100)
            rows.append(["{:,}".format(capacity), "{:,} ({}%)".format(int(occupied), percent), fmt_ns(ns),
                         fmt_ns(ns / occupied) if occupied else "n/a"])
    return table(["capacity (slots)", "occupied", "one round", "per occupied slot"], rows)


EXPIRY_TIMEOUTS_MS = (1, 5, 20, 40, 150, 300)


def expiry_runs(cpp):
    out = []
    for spin, timeout in [(0, t) for t in EXPIRY_TIMEOUTS_MS] + [(1, 150)]:
        run = cpp.find("BM_ExpiryToSignal", spin=spin, timeout_ms=timeout)
        if run is not None:
            out.append((spin, timeout, run))
    return out


def kill_floor(cpp):
    return next((r for n, r in cpp.runs.items() if n.startswith("BM_KillToReap")), None)


def section_expiry(cpp):
    rows = []
    for spin, timeout, run in expiry_runs(cpp):
        rows.append(["pure spin" if spin else "default (spin 50 µs, max interval 100 ms, wake lead ≤ 5 ms)", "%d ms" % timeout,
                     "%d" % run.get("samples", 100), fmt_ns(run["p50_us"] * 1e3), fmt_ns(run["p99_us"] * 1e3),
                     fmt_ns(run["max_us"] * 1e3), fmt_ns(run["reaped_p50_us"] * 1e3),
                     fmt_ns(run["reaped_p99_us"] * 1e3), "%d" % run.get("wake_requests", 0),
                     "%.0f ms" % run["stolen_ms"] if "stolen_ms" in run else "—"])
    wake = cpp.find("BM_TimedWakeLateness")
    if wake:
        rows.append(["*floor: no server, a bare thread's timed futex wait, how late it wakes*", "1–21 ms",
                     "%d" % wake.get("samples", 100), fmt_ns(wake["p50_us"] * 1e3), fmt_ns(wake["p99_us"] * 1e3),
                     fmt_ns(wake["max_us"] * 1e3), "—", "—", "—", "—"])
    floor = kill_floor(cpp)
    if floor:
        rows.append(["*floor: no server, the benchmark sends SIGKILL itself*", "—", "%d" % floor.get("samples", 100),
                     "—", "—", "—",
                     fmt_ns(floor["p50_us"] * 1e3), fmt_ns(floor["p99_us"] * 1e3), "—", "—"])
    return table(["scan policy", "timeout", "samples", "lateness p50", "p99", "max", "deadline → waitpid p50", "p99",
                  "wake-up calls", "vCPU time stolen"], rows)


def run_with_arg(cpp, family, arg):
    """The run named FAMILY/ARG/..., or None."""
    prefix = "%s/%d/" % (family, arg)
    return next((run for name, run in cpp.runs.items() if name.startswith(prefix)), None)


def section_incidents(cpp):
    rows = []
    for arg, method in enumerate(("eu-stack", "gdb", "py-spy")):
        run = run_with_arg(cpp, "BM_CaptureMethod", arg)
        error = next((e for n, e in cpp.errors.items() if n.startswith("BM_CaptureMethod/%d/" % arg)), None)
        if run is None:
            rows.append([method, "—", "not measured: %s" % (error or "no run"), "—", "—"])
            continue
        target = "python3 in `time.sleep`" if method == "py-spy" else "a C++ process in `pause()`"
        rows.append([method, target, "%d" % run.get("samples", 0), fmt_ns(run["p50_us"] * 1e3),
                     fmt_ns(run["p99_us"] * 1e3)])
    capture = table(["method", "target", "samples", "p50", "p99"], rows)
    rows = []
    for arg in (0, 1):
        run = run_with_arg(cpp, "BM_KillLatenessWithCapture", arg)
        if run is None:
            continue
        rows.append([run.get("label", ""), "%d" % run.get("samples", 0), fmt_ns(run["p50_us"] * 1e3),
                     fmt_ns(run["p99_us"] * 1e3), fmt_ns(run["max_us"] * 1e3), fmt_ns(run["reaped_p50_us"] * 1e3),
                     fmt_ns(run["reaped_p99_us"] * 1e3)])
    lateness = table(["server", "samples", "lateness p50", "p99", "max", "deadline → waitpid p50", "p99"], rows)
    return capture, lateness


def section_signal_path(cpp):
    rows = []
    for prepared, label in [(0, "cold: pidfd, identity, uid, maps, liveness, signal"),
                            (1, "prepared 5 ms ahead: uid, the open maps file, liveness, signal")]:
        run = cpp.find("BM_SignalPath", prepared=prepared)
        if run is not None:
            rows.append([label, "%d" % run.get("samples", 100), fmt_ns(run["p50_us"] * 1e3),
                         fmt_ns(run["p99_us"] * 1e3), fmt_ns(run["max_us"] * 1e3)])
    return table(["`send()` to a hung child", "samples", "p50", "p99", "max"], rows) if rows else ""


def idle_runs(cpp):
    out = []
    for timers in (0, 100, 10000):
        run = next((r for n, r in cpp.runs.items() if n.startswith("BM_IdleCpu/%d/" % timers)), None)
        if run is not None:
            out.append((timers, run))
    return out


def section_idle(cpp):
    rows = [["{:,}".format(t), "%.3f %%" % run["cpu_percent"]] for t, run in idle_runs(cpp)]
    floor = cpp.find("BM_IdleFloor")
    if floor:
        rows.append(["*floor: no server, a thread that only sleeps in 100 ms futex waits*",
                     "%.3f %%" % floor["cpu_percent"]])
    return table(["live timers (an hour out)", "CPU, % of one core"], rows)


def flood_runs(cpp):
    names = {0: "FIFO idle (server running, no requests)", 1: "FIFO flood: 100k requests from another process",
             2: "control: another process burns a core, no FIFO traffic"}
    return [(load, names[load], run) for load in (0, 1, 2)
            for run in [cpp.find("BM_TablePairDuringFifoFlood", load=load)] if run is not None]


def section_flood(cpp):
    rows = []
    for load, name, run in flood_runs(cpp):
        rows.append([name, fmt_ns(run["p50_ns"]), fmt_ns(run["p99_ns"]), fmt_ns(run["p999_ns"]),
                     fmt_rate(run["items_per_second"]),
                     fmt_rate(run["fifo_requests_per_s"]) if load == 1 else "—",
                     "%.1f %%" % run.get("server_cpu_percent", 0),
                     fmt_ns(run["server_cpu_us_per_request"] * 1e3) if load == 1 else "—",
                     fmt_ns(real_ns(run))])
    return table(["load", "table pair p50", "p99", "p99.9", "table pairs/s", "FIFO requests served/s",
                  "server CPU", "server CPU per request", "window"], rows)


# ---------------------------------------------------------------------------- targets


def targets(rows, cpp, m):
    scope, handle = by_key(rows, "table_scope"), by_key(rows, "table_handle")
    fifo, torch_py, shm_py = by_key(rows, "fifo_open"), by_key(rows, "py_file_timer_client"), by_key(rows, "py_shm_client")
    loaded = m["load_start"] and float(m["load_start"][0]) > 0.5 * m["ncpu"]
    load_note = (" The machine was loaded during this run (load average %s at the start on %d CPUs), which "
                 "inflates every figure that includes scheduling." % (m["load_start"][0], m["ncpu"])) if loaded else ""
    lookup_why = ("The scope API finds the slot from the scope string on both calls (the per-thread cache: hash the "
                  "scope's first and last 8 bytes, compare the table, the caller's identity and the 30 bytes, as two "
                  "16-byte halves; the arm's own ownership check then validates the entry) and counts each call in "
                  "the slot; the `Timer` handle skips the lookup.")
    if scope and (scope.get("p50_cv") or 0) > 0.10:
        lookup_why += (" The table pair's p50 also varied between repetitions (cv %.0f %%): part of the figure is the "
                       "machine, not the code." % (100 * scope["p50_cv"]))
    out = []

    def verdict(ok):
        return "**met**" if ok else "**missed**"

    def ratio_target(name, need, other, other_name):
        if not (scope and other):
            out.append([name, "not measured", "**not measured**", "%s missing from this run" % other_name])
            return
        r_scope, r_handle = other["p50"] / scope["p50"], other["p50"] / handle["p50"] if handle else None
        why = ""
        if r_scope < need:
            why = ("%s p50 %s ÷ table pair p50 %s = %s; %s× needs a table pair of %s or less. %s" % (
                other_name[0].upper() + other_name[1:], fmt_ns(other["p50"]), fmt_ns(scope["p50"]), fmt_ratio(r_scope), need,
                fmt_ns(other["p50"] / need), lookup_why))
            if r_handle and r_handle >= need:
                why += " Through the `Timer` handle the ratio is %s: met that way." % fmt_ratio(r_handle)
            elif r_handle:
                why += " Through the `Timer` handle it is %s: missed too." % fmt_ratio(r_handle)
        measured = "%s (scope API); %s (`Timer` handle)" % (fmt_ratio(r_scope), fmt_ratio(r_handle))
        out.append([name, measured, verdict(r_scope >= need), why or "—"])

    ratio_target("table pair ≥ 300× faster than the C++ FIFO pair (FIFO opened per request)", 300, fifo,
                 "the C++ FIFO pair")
    ratio_target("table pair ≥ 3000× faster than PyTorch's `FileTimerClient`", 3000, torch_py,
                 "PyTorch's FileTimerClient pair")

    if scope:
        ok = scope["p50"] < 20
        why = "—"
        if not ok:
            why = "%s %s" % (lookup_why, ("The `Timer` handle pair is %s (p50): under 20 ns." % fmt_ns(handle["p50"]))
                             if handle and handle["p50"] < 20 else
                             ("The `Timer` handle pair is %s (p50): over 20 ns as well." % fmt_ns(handle["p50"])
                              if handle else ""))
            why += " (Each p50 sample carries 1/16 of a clock read, about %s.)" % fmt_ns(clock_ns(cpp) / 16)
        out.append(["table pair < 20 ns median, one thread",
                    "%s (scope API); %s (`Timer` handle)" % (fmt_ns(scope["p50"]), fmt_ns(handle["p50"]) if handle else "n/a"),
                    verdict(ok), why])

    idle = idle_runs(cpp)
    if idle:
        worst_t, worst = max(idle, key=lambda x: x[1]["cpu_percent"])
        ok = worst["cpu_percent"] < 0.5
        floor = cpp.find("BM_IdleFloor")
        floor_note = (" Of that, %.3f %% is the sleeping itself (section 3's floor row: a bare thread's 100 ms "
                      "futex waits on this VM)." % floor["cpu_percent"]) if floor else ""
        why = "—" if ok else (
            "The default policy wakes at least every 100 ms (`max_interval`) for a round: heartbeat, bitmap scan, "
            "one line of each live timer's slot (mostly cache and TLB misses after 100 ms away), and once a second "
            "the dead-owner sweep in that same pass; with %s live timers that costs %.3f %% of a core here.%s%s"
            % ("{:,}".format(worst_t), worst["cpu_percent"], floor_note, load_note))
        out.append(["idle server < 0.5 % of a core (0 to 10,000 live timers)",
                    ", ".join("%.3f %% (%s)" % (r["cpu_percent"], "{:,}".format(t)) for t, r in idle),
                    verdict(ok), why])

    if shm_py and torch_py:
        r = torch_py["p50"] / shm_py["p50"]
        ok = r >= 50
        why = "—" if ok else (
            "The Python pair is two calls from Python into C++ through pybind11 plus `time.time()`; at %s a pair "
            "that overhead, not the table, is the cost, and the FileTimerClient pair took only %s here." % (
                fmt_ns(shm_py["p50"]), fmt_ns(torch_py["p50"])))
        out.append(["Python `shmtimer.ShmTimerClient` pair ≥ 50× faster than `FileTimerClient` (issue 7)",
                    "%s (%s vs %s, p50)" % (fmt_ratio(r), fmt_ns(shm_py["p50"]), fmt_ns(torch_py["p50"])),
                    verdict(ok), why])
    return table(["target", "measured in this run", "verdict", "why, when missed"], out)


# The figures issue 15 started from: docs/benchmarks.md of commit 4f77a61 (2026-11-26, this
# same 2-vCPU VM), and the issue's own text for what that run did not measure.
BEFORE_15 = {
    "handle": "10.6 ns", "scope": "37.6 ns", "guard": "82.7 ns (raw pair 36.3 ns + 46.4 ns)",
    "python": "596 ns, 71× `FileTimerClient`", "fifo": "25k requests/s, 37.4 µs CPU each (59k, 13.7 µs in the issue)",
    "lateness": "20–40 ms timeouts: p50 70.3 ms, p99 80.1 ms late; 150–300 ms: p99 2.87 ms to waitpid",
    "idle": "0.092 % (0), 0.103 % (100), 0.488 % (10,000)",
}


def targets_15(rows, cpp):
    scope, handle = by_key(rows, "table_scope"), by_key(rows, "table_handle")
    torch_py, shm_py, timer_py = (by_key(rows, k) for k in ("py_file_timer_client", "py_shm_client", "py_shm_timer"))
    out = []

    def verdict(ok):
        return "**met**" if ok else "**missed**"

    for spin, timeout, run in expiry_runs(cpp):
        if spin:
            continue
        p99 = run["p99_us"] * 1e3
        out.append(["lateness p99 < 1 ms, default policy, %d ms timeouts" % timeout,
                    BEFORE_15["lateness"] if timeout == 20 else "",
                    "p99 %s (p50 %s, %d samples)" % (fmt_ns(p99), fmt_ns(run["p50_us"] * 1e3), run.get("samples", 100)),
                    verdict(p99 < 1e6)])
    if handle:
        out.append(["`Timer` handle pair < 10 ns (p50, one thread)", BEFORE_15["handle"], fmt_ns(handle["p50"]),
                    verdict(handle["p50"] < 10)])
    if scope:
        out.append(["scope-API pair < 20 ns (p50, one thread); does not regress", BEFORE_15["scope"],
                    fmt_ns(scope["p50"]), verdict(scope["p50"] < 20)])
    idle = idle_runs(cpp)
    if idle:
        worst = max(r["cpu_percent"] for _, r in idle)
        out.append(["idle server < 0.5 % of a core", BEFORE_15["idle"],
                    ", ".join("%.3f %% (%s)" % (r["cpu_percent"], "{:,}".format(t)) for t, r in idle), verdict(worst < 0.5)])
    wakes = cpp.find("BM_WakeCallsInASteadyLoop")
    if wakes:
        out.append(["wake-up system calls per million pairs of a steady arm/disarm loop ≈ 0", "— (no wake-up)",
                    "%.2f (%s pairs, server running)" % (wakes["wakes_per_million_pairs"], "{:,}".format(int(wakes["pairs"]))),
                    verdict(wakes["wakes_per_million_pairs"] < 1)])
    flood = cpp.find("BM_TablePairDuringFifoFlood", load=1)
    if flood:
        one_core = 1e6 / flood["server_cpu_us_per_request"] if flood["server_cpu_us_per_request"] > 0 else 0
        out.append(["FIFO shim ≥ 200k requests/s on one core, identity checked", BEFORE_15["fifo"],
                    "%s served (the writer's pace); %s CPU each, so one core serves %s" % (
                        fmt_rate(flood["fifo_requests_per_s"]), fmt_ns(flood["server_cpu_us_per_request"] * 1e3),
                        fmt_rate(one_core)), verdict(one_core >= 200e3)])
    raw, guard = cpp.find_threads("BM_Expires_RawPair", 1), cpp.find_threads("BM_Expires_ExplicitScope", 1)
    clock = clock_ns(cpp)
    if raw and guard and clock:
        budget = raw["p50_ns"] + clock + 15
        out.append(["`Expires` guard ≤ raw pair + clock read + 15 ns (p50)", BEFORE_15["guard"],
                    "%s; budget %s (raw pair %s + clock read %s + 15 ns)" % (
                        fmt_ns(guard["p50_ns"]), fmt_ns(budget), fmt_ns(raw["p50_ns"]), fmt_ns(clock)),
                    verdict(guard["p50_ns"] <= budget)])
    if shm_py and torch_py:
        r = torch_py["p50"] / shm_py["p50"]
        out.append(["Python pair ≤ 300 ns and ≥ 100× `FileTimerClient` (p50)", BEFORE_15["python"],
                    "%s, %s" % (fmt_ns(shm_py["p50"]), fmt_ratio(r)), verdict(shm_py["p50"] <= 300 and r >= 100)])
    if timer_py and shm_py:
        out.append(["Python `Timer` handle pair ≈ one bound C++ call each way", "— (no handle)",
                    "%s (scope pair %s)" % (fmt_ns(timer_py["p50"]), fmt_ns(shm_py["p50"])), "see section 1"])
    return table(["target", "before", "measured in this run", "verdict"], out)


def clock_ns(cpp):
    run = cpp.find("BM_SteadyClockNow")
    return real_ns(run) if run else 0.0


# ---------------------------------------------------------------------------- issue 28

# The figures issue 28 started from: the report at commit d3c1d87 on this machine.
BEFORE_28 = {"scope": 12.5, "handle": 7.5, "guard": 46.3, "python": 116.0, "idle": 0.438}
# Pair costs are the clients' own, which issue 28 did not change: a figure within this
# much above its before is the run's noise, and is said so.
NOISE_28 = 0.05


def burst_run(cpp, realtime):
    return cpp.find("BM_Burst", workers=1000, realtime=realtime)


def burst_rows(run, who_label):
    rows = []
    for who, prefix in (("server", "server_"), ("floor: `kill()` loop at the deadline", "floor_")):
        if prefix + "signalled_max_ms" not in run:
            continue
        ms = lambda key: fmt_ns(run[prefix + key] * 1e6)
        rows.append(["%s, %s" % (who, who_label), "%d" % run.get(prefix + "bursts", 0), ms("signalled_p50_ms"),
                     ms("signalled_p99_ms"), ms("signalled_max_ms"), ms("reaped_p50_ms"), ms("reaped_p99_ms"),
                     ms("reaped_max_ms"), ms("burst_reaped_max_p50_ms")])
    return rows


BURST_HEADER = ["who kills", "bursts", "signalled p50", "p99", "max", "reaped p50", "p99", "max",
                "median burst's last reap"]


def section_bursts(cpp):
    rows = []
    for realtime, label in ((1, "SCHED_FIFO 10"), (0, "normal priority")):
        run = burst_run(cpp, realtime)
        if run is not None:
            rows += burst_rows(run, label)
    return table(BURST_HEADER, rows) if rows else ""


def section_mixed(cpp):
    run = cpp.find("BM_BurstMixedLoad")
    if run is None:
        return "", ""
    bursts = table(BURST_HEADER, burst_rows(run, "SCHED_FIFO 10"))
    pairs = table(["punctual workers' pair (scope API)", "samples", "p50", "p99"], [
        ["idle: the 500 ms before the burst's workers arm", "{:,}".format(int(run["idle_pair_samples"])),
         fmt_ns(run["idle_pair_p50_ns"]), fmt_ns(run["idle_pair_p99_ns"])],
        ["during the burst: from its arming to the last reap", "{:,}".format(int(run["burst_pair_samples"])),
         fmt_ns(run["burst_pair_p50_ns"]), fmt_ns(run["burst_pair_p99_ns"])]])
    return bursts, pairs


def end_to_end_rows(cpp):
    """(timeout, run) for each default-policy BM_ExpiryToSignal row with its floor."""
    return [(t, run) for spin, t, run in expiry_runs(cpp) if not spin and "floor_reaped_p50_us" in run]


def section_end_to_end(cpp):
    rows = []
    for timeout, run in end_to_end_rows(cpp):
        us = lambda key: fmt_ns(run[key] * 1e3)
        rows.append(["%d ms" % timeout, us("reaped_p50_us"), us("reaped_p99_us"), us("floor_reaped_p50_us"),
                     us("floor_reaped_p99_us"),
                     fmt_signed_ns((run["reaped_p50_us"] - run["floor_reaped_p50_us"]) * 1e3),
                     fmt_signed_ns((run["reaped_p99_us"] - run["floor_reaped_p99_us"]) * 1e3)])
    return table(["timeout", "server p50", "p99", "floor p50", "p99", "server − floor, p50", "p99"],
                 rows) if rows else ""


def targets_28(rows, cpp):
    out = []

    def verdict(ok):
        return "**met**" if ok else "**missed**"

    def burst_targets(run, what):
        signalled, reaped, floor = run["server_signalled_max_ms"], run["server_reaped_max_ms"], run["floor_reaped_max_ms"]
        out.append(["%s: every worker signalled within 20 ms of the deadline (p100)" % what,
                    "last signal %s after it (p50 %s)" % (fmt_ns(signalled * 1e6), fmt_ns(run["server_signalled_p50_ms"] * 1e6)),
                    verdict(signalled <= 20)])
        # Per burst, its last reap (p100); the bursts' median against the floor's bursts'
        # median, as the two take turns in one row; the worst of each beside them.
        median, floor_median = run["server_burst_reaped_max_p50_ms"], run["floor_burst_reaped_max_p50_ms"]
        out.append(["%s: every worker reaped within the floor's last reap + 20 ms (a burst's last reap, "
                    "median of %d bursts each)" % (what, run.get("server_bursts", 0)),
                    "last reap %s; floor's %s (%s); worst burst %s, floor's %s" % (
                        fmt_ns(median * 1e6), fmt_ns(floor_median * 1e6), fmt_signed_ns((median - floor_median) * 1e6),
                        fmt_ns(reaped * 1e6), fmt_ns(floor * 1e6)),
                    verdict(median <= floor_median + 20)])

    burst = burst_run(cpp, 1)
    if burst is not None:
        burst_targets(burst, "burst of 1,000, SCHED_FIFO (shmtimerd's default)")
    mixed = cpp.find("BM_BurstMixedLoad")
    if mixed is not None:
        burst_targets(mixed, "burst of 500 among 200 punctual workers")
        ratio = mixed["burst_pair_p50_ns"] / mixed["idle_pair_p50_ns"] if mixed["idle_pair_p50_ns"] else 0
        out.append(["punctual workers' pair during the burst within 2× their idle cost (p50)",
                    "%s during, %s idle (%.2f×)" % (fmt_ns(mixed["burst_pair_p50_ns"]), fmt_ns(mixed["idle_pair_p50_ns"]),
                                                   ratio), verdict(0 < ratio <= 2)])
    for timeout, run in end_to_end_rows(cpp):
        d50 = run["reaped_p50_us"] - run["floor_reaped_p50_us"]
        d99 = run["reaped_p99_us"] - run["floor_reaped_p99_us"]
        out.append(["deadline → waitpid, %d ms timeouts: p50 ≤ floor + 1 ms, p99 ≤ floor + 2 ms" % timeout,
                    "p50 %s (floor %s), p99 %s (floor %s)" % (
                        fmt_ns(run["reaped_p50_us"] * 1e3), fmt_ns(run["floor_reaped_p50_us"] * 1e3),
                        fmt_ns(run["reaped_p99_us"] * 1e3), fmt_ns(run["floor_reaped_p99_us"] * 1e3)),
                    verdict(d50 <= 1000 and d99 <= 2000)])

    def no_loss(label, now, before):
        if now is None:
            return
        ok = now <= before
        within = now <= before * (1 + NOISE_28)
        out.append([label + " at or below its figure before (%s)" % fmt_ns(before), fmt_ns(now),
                    "**met**" if ok else ("**met within noise** (+%.1f %%; client code unchanged)" % (
                        100 * (now / before - 1)) if within else "**missed**")])

    scope, handle = by_key(rows, "table_scope"), by_key(rows, "table_handle")
    no_loss("`Timer` handle pair (p50)", handle and handle["p50"], BEFORE_28["handle"])
    no_loss("scope-API pair (p50)", scope and scope["p50"], BEFORE_28["scope"])
    guard = cpp.find_threads("BM_Expires_ExplicitScope", 1)
    no_loss("`Expires` guard (p50)", guard and guard["p50_ns"], BEFORE_28["guard"])
    shm_py = by_key(rows, "py_shm_client")
    no_loss("Python pair (p50)", shm_py and shm_py["p50"], BEFORE_28["python"])
    idle = dict(idle_runs(cpp))
    if 10000 in idle:
        cpu = idle[10000]["cpu_percent"]
        out.append(["idle server with 10,000 timers ≤ 0.5 % of a core", "%.3f %% (before: %.3f %%)" % (cpu, BEFORE_28["idle"]),
                    verdict(cpu <= 0.5)])
    return table(["target", "measured in this run", "verdict"], out)


# ---------------------------------------------------------------------------- report


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", required=True)
    p.add_argument("--cpp", required=True)
    p.add_argument("--python", required=True)
    p.add_argument("--commit", required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--markdown", required=True)
    p.add_argument("--chart-data", required=True)
    args = p.parse_args()

    cpp = Results(args.cpp)
    with open(args.python) as f:
        py = json.load(f)
    m = machine(args, cpp.context)
    rows = pair_rows(cpp, py)
    scope = by_key(rows, "table_scope")
    errors = ["`%s`: %s" % (n, message) for n, message in cpp.errors.items()]

    with open(args.chart_data, "w") as f:
        for r in rows:
            f.write("%s\t%.3f\t%.3f\t%d\n" % (r["short"], r["p50"], r["p99"], r["lang"]))

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    clock = clock_ns(cpp)
    pair_cpu_share = ""
    scope_run = cpp.find("BM_Pair_TableScope")
    if scope_run:
        pair_cpu_share = " (the single-thread table pair got %.0f %% of a core: CPU time ÷ real time)" % (
            100 * cpu_ns(scope_run) / real_ns(scope_run))
    md = []
    w = md.append
    w("# Benchmarks")
    w("")
    w("Generated by `bench/report.py` from one run of `bench/run.sh`; do not edit by hand. Regenerate with "
      "`./dev.sh bench` (Release build in `build/`) or `./bench/run.sh BUILD_DIR`.")
    w("")
    w(table(["", ""], [
        ["command", "`%s`" % args.command],
        ["date", date],
        ["commit", "`%s`" % args.commit],
        ["CPU", "%s, %s CPUs (%s)%s" % (m["cpu"], m["cpus"], m["cores"],
                                          ", %s guest" % m["hypervisor"] if m["hypervisor"] else "")],
        ["kernel", m["kernel"]],
        ["compiler", "%s, `CMAKE_BUILD_TYPE=%s`" % (m["compiler"], m["build_type"])],
        ["Google Benchmark", "%s (Debian's library reports itself as a `%s` build)" % (m["gbench"], m["gbench_build"])],
        ["Python", "%s %s, torch %s" % (py.get("executable", "?"), py.get("python", "?"), py.get("torch", "not installed"))],
        ["load average", "%s at the start, %s at the end%s" % (" ".join(m["load_start"]), " ".join(m["load_end"]),
                                                            pair_cpu_share)],
    ]))
    w("")
    if m["load_start"] and float(m["load_start"][0]) > 0.5 * m["ncpu"]:
        w("**This run shared a loaded machine** (load average %s at the start, on %d CPUs): figures that include "
          "scheduling (means, tails, scaling, expiry latency) are inflated, and ratios are less certain than they "
          "look. Regenerate on a quiet machine before quoting them." % (m["load_start"][0], m["ncpu"]))
        w("")
    if errors or py.get("skipped"):
        w("**Not measured in this run:** " + "; ".join(errors + py.get("skipped", [])))
        w("")
    w("## Targets (issue 6, and issue 7 point 6)")
    w("")
    w("Each verdict compares figures from this one run. Times are medians (p50) of per-pair samples; "
      "\"table pair\" is the C++ `ShmTimerClient` acquire+release through the scope API, the like-for-like "
      "counterpart of the FIFO clients, which also take a scope on every call; the `Timer` handle figure is given "
      "beside it.")
    w("")
    w(targets(rows, cpp, m))
    w("")
    w("## Targets (issue 15)")
    w("")
    w("*Before* is the figure this work started from: the previous report on this machine (commit `4f77a61`), or "
      "the issue's text where that report did not measure it. Lateness is from a timer's deadline to the server "
      "sending the signal, as the server records it (section 3); the kernel's kill-to-reap time is apart.")
    w("")
    w(targets_15(rows, cpp))
    w("")
    w("## Targets (issue 28)")
    w("")
    w("Bursts and end-to-end kills, each beside its floor measured in the same run (section 6): the same processes "
      "killed by a plain loop of `kill()` from a thread that sleeps until the deadline as the watchdog does. "
      "*Reaped* is from the deadline to `waitpid()` returning in the workers' parent, what a user sees. The "
      "hot-path figures before are the report at commit `d3c1d87` on this machine.")
    w("")
    w(targets_28(rows, cpp))
    w("")
    w("## 1. The acquire+release pair, per client")
    w("")
    w("![acquire+release pair time per client, log scale](benchmarks.png)")
    w("")
    w(section_pairs(rows))
    w("")
    w("- C++ rows: `bench/pair_bench.cpp`. The FIFO clients write to a FIFO drained by a `TimerServer` with a "
      "`FifoShim` in the benchmark process, so every request is read, parsed and applied to the table (FIFO mode end "
      "to end). Their *mean* is the sustained rate of back-to-back pairs, which the server's pace bounds once the "
      "pipe is full; their p50 is the client's own cost when the pipe has room.")
    w("- Python rows: `bench/python_pairs.py`, run by `/usr/bin/python3` in the same run. `FileTimerClient` "
      "(PyTorch %s) writes to a FIFO served by `shmtimerd --fifo`; each pair is `acquire(scope, time.time() + 60)` "
      "then `release(scope)`, the same calls for `shmtimer.ShmTimerClient`. The context-manager rows show what a "
      "training script pays per `with` block." % py.get("torch", "?"))
    ftc = next((b for b in py.get("benchmarks", []) if b["name"] == "py_file_timer_client"), None)
    if ftc is not None:
        full, pairs = ftc.get("pipe_full_retries", 0), ftc["reps"] * ftc["pairs_per_rep"]
        w("- PyTorch's `FileTimerClient` writes without blocking, so when the server falls behind and the pipe is "
          "full the request is lost and `BlockingIOError` raised (a training script would die of it). " +
          ("This run hit that %d times in %d pairs (plus warm-up); each was retried after 0.5 ms, and the wait "
           "counts in that pair's time." % (full, pairs) if full else
           "It did not happen in this run's %d pairs (the benchmark would count it and retry after 0.5 ms)." % pairs))
    w("- p50/p99: C++ table pairs are timed in batches of 16 with `steady_clock` (a read costs %s here, so each "
      "sample carries about %s of it), FIFO pairs one at a time; Python pairs likewise with `perf_counter_ns`. "
      "*mean* is Google Benchmark's time per pair, median of 5 repetitions (Python: of 5 repetitions of the same "
      "loop). Ratios are p50 over the C++ table pair's p50%s." % (
          fmt_ns(clock), fmt_ns(clock / 16), " (%s)" % fmt_ns(scope["p50"]) if scope else ""))
    w("")
    w("## 2. Scaling of the table client")
    w("")
    w("Each worker does acquire+release pairs through the scope API (30-byte scope) for 250 ms; threads in one "
      "process, or forked processes (`bench/scaling_bench.cpp`). *Own slots*: every worker has its scope, hence its "
      "slot and cache lines; *one shared slot*: all threads use one scope, so one slot's cache line moves between "
      "cores on every call (processes cannot share a slot). Aggregate pairs/s is the sum over workers; latencies are "
      "per pair from batches of 16, over all workers. Medians of 5 repetitions. This machine has %s CPUs, so 4 "
      "workers time-share them." % m["cpus"])
    w("")
    w(section_scaling(cpp))
    w("")
    w(scaling_vs_headline(cpp, scope))
    w("")
    w("## 3. The server")
    w("")
    w("### Scan time against capacity and occupancy")
    w("")
    w("One round (`run_once_at`: heartbeat, bitmap scan, two words per occupied slot, nothing due), with the timers "
      "spread over the table (`BM_ScanRound`, median of 5 repetitions).")
    w("")
    w(section_scan(cpp))
    w("")
    w("### Expiry-to-signal latency")
    w("")
    w("A forked child arms a timer and hangs, after a random delay of up to 20 ms so the server is at a random "
      "phase (`BM_ExpiryToSignal`; one repetition of 100 children per row); each child sets its deadline "
      "`timeout` after its own clock read, right before it arms, as `expires(after=...)` does. *Lateness* runs "
      "from the deadline to the server sending the signal, from the server's own \"kill worker process\" event; "
      "*deadline → waitpid* adds the kernel tearing the child down and the benchmark's wake-up. With 100 samples, "
      "p99 is the second largest; the largest is *max*. Timers "
      "shorter than the server's sleep wake it through the table's futex (docs/server.md, \"Early wake-up\"): "
      "*wake-up calls* counts those `FUTEX_WAKE`s. *vCPU time stolen* is how much CPU time the host gave "
      "to others while this VM's vCPUs wanted to run, during the row (`steal` in `/proc/stat`, both vCPUs): "
      "a sample whose kill path is hit by a steal of a few milliseconds is that much late, whatever the policy. The last two rows are floors: under the lateness, how late "
      "a bare thread wakes from a timed `FUTEX_WAIT` of 1 to 21 ms with the server's 1 µs timer slack "
      "(`BM_TimedWakeLateness`; on this VM that includes the host waking the idle vCPU, which the server's "
      "50 µs spin before a deadline does not cover); under the reaping time, the same kind of child killed by "
      "the benchmark itself, timed from `kill()` to `waitpid()` (`BM_KillToReap`).")
    w("")
    w(section_expiry(cpp))
    w("")
    w("### The kill path")
    w("")
    w("What follows the round that finds a timer due: `LinuxProcessControl::send()` to a hung child that has "
      "the table mapped, with every check a table timer's kill makes (`BM_SignalPath`, 100 children a row, each "
      "new to the server, as every hung worker is, and alive 5 ms before it is prepared or not, then 5 ms more). The server prepares a process once its timer falls due "
      "within two `max_interval`s (docs/server.md, \"Never the wrong process\"), so the second row is what "
      "stands between a deadline and the signal whenever the timer was armed more than one round ahead.")
    w("")
    w(section_signal_path(cpp))
    w("")
    w("### CPU use when idle")
    w("")
    w("A started `TimerServer` with the default policy over 4 s of wall time: the CPU time of its watchdog "
      "thread, its only thread when idle (`/proc/self/task/<tid>/schedstat`, in ns; the process's `getrusage` "
      "also counted what earlier rows left running in the benchmark process, up to 0.2 % of a core more) "
      "(`BM_IdleCpu`, one repetition). The timers are spread over a 65,536-slot table, one slot in six, as "
      "hashing spreads them; each round reads one line of each of their slots, and every second that same "
      "pass also judges each slot's owner for the dead-owner sweep. With 10,000 timers a round is mostly "
      "cache and TLB misses on lines the server has not touched for 100 ms. The last row is the floor under "
      "all of them (`BM_IdleFloor`): no server, a thread that only sleeps as an idle server does between rounds.")
    w("")
    w(section_idle(cpp))
    w("")
    w("### Table clients during a FIFO flood (issue 8)")
    w("")
    w("A table client (scope API) in the server's process times its pairs in batches of 16 while the server (a "
      "`TimerServer` + `FifoShim`) serves 100,000 FIFO requests that another process writes as fast as the pipe "
      "takes them, until all are applied; against the same with the FIFO idle, and against a control in which the "
      "other process only burns a core. The control separates what the flood costs through the CPU it takes from "
      "what it would cost through shared state (`bench/flood_bench.cpp`; medians of 3 repetitions).")
    w("")
    w(section_flood(cpp))
    w("")
    floods = {load: run for load, _, run in flood_runs(cpp)}
    if 0 in floods and 1 in floods:
        f = floods[1]
        w("Under the flood the table pair's p50 is %.2f× its value with the FIFO idle, and its p99 %.2f×. The "
          "server applied FIFO requests at %s, spending %s of CPU on each (%.0f %% of a core)%s" % (
              f["p50_ns"] / floods[0]["p50_ns"], f["p99_ns"] / floods[0]["p99_ns"], fmt_rate(f["fifo_requests_per_s"]),
              fmt_ns(f["server_cpu_us_per_request"] * 1e3), f.get("server_cpu_percent", 0),
              (": the server thread was busy for less than half the window, so the rate was set by when the writer "
               "and the server thread got a CPU (the pipe holds about 650 requests), not by the server's work (at "
               "that cost one core would serve %s)." % fmt_rate(1e6 / f["server_cpu_us_per_request"])
               if f.get("server_cpu_percent", 100) < 50 and f["server_cpu_us_per_request"] > 0 else ".")))
        w("")
    w("## 4. The C++ `Expires` guard")
    w("")
    w("`bench/expires_bench.cpp`: the guard against a raw pair on the same `ShmTimerClient`, 30-byte scope. A guard "
      "reads the clock for its deadline, holds the configured client by pointer (configure() keeps every client "
      "alive) unless given one, and copies its scope into an inline buffer; the default scope is built once per "
      "call site and kept. "
      "p50/p99 from batches of 16 (2 threads: the mean of each thread's percentiles); mean: Google Benchmark, median "
      "of 5 repetitions.")
    w("")
    w(section_expires(cpp))
    w("")
    w("## 5. Incident capture (issue 27)")
    w("")
    w("`bench/incident_bench.cpp`. Each capture method's time on one hung process, through the server's own "
      "capture code (`StackCapture`: spawn, run, reap, the output to a file), 20 captures each; then a hung C++ "
      "worker (20 ms timer) killed by a server with capture off and on (eu-stack only, 10 s bound), 20 workers "
      "each, in the same run. With capture on, the kill waits for the capture: the lateness is the capture's "
      "time plus at most one look (1 ms) after it ends. docs/diagnosis.md explains the bound.")
    w("")
    capture, lateness = section_incidents(cpp)
    w(capture)
    w("")
    w(lateness)
    w("")
    w("## 6. Bursts and end to end (issue 28)")
    w("")
    w("`bench/burst_bench.cpp`. **Burst:** 1,000 forked workers, each armed with one table timer at a shared "
      "deadline 500 ms ahead, hang in `pause()`; the benchmark's main thread reaps them in `waitpid(-1)`, as their "
      "parent. The server is an in-process `TimerServer` (its kill events give when each signal was queued); the "
      "floor is a thread that sleeps until the deadline (`clock_nanosleep`, 1 µs timer slack, as the watchdog) and "
      "loops `kill(SIGKILL)` over the same workers. Server and floor bursts take turns, %d of each per row (which "
      "goes first alternates), so drift hits both alike. The rows at a normal priority show why shmtimerd runs its "
      "watchdog thread SCHED_FIFO (`--realtime-priority`, docs/server.md): each killed worker preempts a "
      "normal-priority killer to die on its CPU, the floor's plain loop as much as the server." % 4)
    w("")
    w(section_bursts(cpp))
    w("")
    rt = burst_run(cpp, 1)
    if rt is not None:
        w("At SCHED_FIFO the server's last signal comes %s after the deadline, the floor's %s: per worker the server "
          "checks before it signals (the uid, the table still mapped, the pidfd's process still running: section 3's "
          "`BM_SignalPath`), where the floor only calls `kill()`, and the dying workers wait for that CPU: "
          "the server's last reap trails the floor's by %s on the median burst here, %s on the worst. When the reaping "
          "target is missed, this is the gap: the price of checking each worker before it is signalled, which no "
          "target here may buy back." % (
              fmt_ns(rt["server_signalled_max_ms"] * 1e6), fmt_ns(rt["floor_signalled_max_ms"] * 1e6),
              fmt_signed_ns((rt["server_burst_reaped_max_p50_ms"] - rt["floor_burst_reaped_max_p50_ms"]) * 1e6),
              fmt_signed_ns((rt["server_reaped_max_ms"] - rt["floor_reaped_max_ms"]) * 1e6)))
        w("")
    w("**Mixed load:** the same, with 500 hung workers, while 200 more processes arm and disarm through the "
      "scope API at full speed (timers 10 s ahead, never due), 100 times as many runnable processes as CPUs. The "
      "deadline is 1 s ahead (arming 500 workers among 200 busy ones took up to 350 ms). The reaping thread runs "
      "SCHED_FIFO in these rows, for the floor and the server alike: at a normal priority among 200 busy "
      "processes its own wake-ups took hundreds of milliseconds and hid both. Pair samples are batches of 16 "
      "pairs, each timed from its own start and chosen before it runs (at most one per 50 µs per worker), so a "
      "preempted batch is no likelier to be sampled than any other; their p99 is the preemption itself.")
    w("")
    bursts, pairs = section_mixed(cpp)
    w(bursts)
    w("")
    w(pairs)
    w("")
    w("**End to end, one timer:** from the deadline to `waitpid()` in the worker's parent, `BM_ExpiryToSignal` "
      "(section 3, default policy, normal priority, 100 children a row). After each child, its floor in the same "
      "row: a hung child of the same benchmark killed by a plain `kill()` from a thread that sleeps until a "
      "deadline of the same timeout, at a random phase, so that server and floor alternate.")
    w("")
    w(section_end_to_end(cpp))
    w("")
    w("## Method")
    w("")
    w("- One command runs everything: `bench/run.sh` runs `shmtimer_bench` with `--benchmark_repetitions=5 "
      "--benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true "
      "--benchmark_out_format=json` (benchmarks that fork children or sleep set their own repetitions), then "
      "`python_pairs.py` against `shmtimerd --fifo`, then this report and `bench/chart.gp`. Raw JSON: "
      "`BUILD_DIR/bench-results/`.")
    w("- Repetitions run in random interleaved order, so a slow phase of a shared machine is spread over all "
      "benchmarks instead of landing on one of them; each figure is then the median of its 5 repetitions.")
    w("- Nothing in `bench/` is a test, and no unit test asserts a speed: no test measures what an acquire, a "
      "release, a scan or a kill costs, so the verdicts above are the report's alone. Some tests bound behaviour in "
      "time, generously, so that a loaded 2-core CI machine (and the sanitizer builds, several times slower) still "
      "passes: the chaos soak counts a hang not signalled within `--kill-bound-ms 500` of its deadline (15000 under "
      "sanitizers) as missed or late, and fails when the hangs' median signal latency passes 5 ms, about 30 times "
      "what it measures (not judged under sanitizers; docs/reliability.md); `FifoShim.AFloodOnAFullTableDoesNotStallTheWatchdog` allows 1 s (15 s under "
      "sanitizers); `TimerServer.PunctualWorkerSurvives` keeps its worker alive 400 ms past its last released "
      "deadline; `SystemdNotify.ReadyOnceThenWatchdogWellWithinHalfTheTimeoutFromTheLoopAndSilenceWhenItStalls` checks "
      "the protocol's own bound, pings at most `WATCHDOG_USEC/2` apart (1 s timeout, 4 s under sanitizers, "
      "pinged every quarter); tests waiting for a hung worker to be reaped give up after 5 to 60 s.")
    w("- Medians and tails, not means, decide: on a shared or virtual machine a mean absorbs every time the "
      "benchmark was descheduled.")
    w("")
    with open(args.markdown, "w") as f:
        f.write("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
