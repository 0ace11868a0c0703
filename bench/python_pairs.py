#!/usr/bin/python3
"""The acquire+release pair from Python, for the benchmark report (bench/run.sh).

Times, in this one process, with Debian's /usr/bin/python3:
  - PyTorch's FileTimerClient (the reference), against a FIFO served by shmtimerd --fifo:
        client.acquire(scope, time.time() + 60); client.release(scope)
  - shmtimer.ShmTimerClient (the Python module), the same two calls on the table;
  - shmtimer.expires(60, scope) and torch's timer.expires(after=60, scope=...) with
    shmtimer.ShmTimerClient configured: the context managers a training script uses.

Each variant runs --reps repetitions of N pairs. A repetition's mean (total time / N) is
what Google Benchmark would report; p50/p99 come from every pair of every repetition,
timed one at a time for the FIFO client (tens of microseconds a pair) and in batches of 16
for the others (a perf_counter_ns call costs ~100 ns, a pair ~1 us). Standard library
only, besides torch and shmtimer; writes JSON for bench/report.py.
"""
import argparse
import json
import platform
import statistics
import sys
import time

SCOPE = "train.py#forward_backward:1000"  # 30 bytes, as in the C++ benchmarks
assert len(SCOPE) == 30


def quantile(sorted_samples, q):
    """Nearest rank, as bench_support.hpp's quantile()."""
    if not sorted_samples:
        return 0.0
    rank = int(q * (len(sorted_samples) - 1) + 0.5)
    return sorted_samples[min(rank, len(sorted_samples) - 1)]


# The timing loop, compiled with the statement inlined (as timeit does), so that a sample
# is the statement's cost, not also a Python function call per pair. `names` are the
# statement's globals.
LOOP = """
def batches(count, batch, clock, samples):
    for _ in range(count):
        start = clock()
        for _ in range(batch):
            %s
        samples.append((clock() - start) / batch)
"""


def measure(stmt, names, pairs, reps, batch):
    """Runs reps x pairs executions of stmt; returns ns per pair: rep means and samples."""
    namespace = dict(names)
    exec(compile(LOOP % stmt, "<pair>", "exec"), namespace)
    run, clock = namespace["batches"], time.perf_counter_ns
    run(max(100, pairs // 20), 1, clock, [])  # warm-up: caches, slot claim, FIFO server
    rep_means, samples = [], []
    count = pairs // batch
    for _ in range(reps):
        rep_samples = []
        run(count, batch, clock, rep_samples)
        rep_means.append(statistics.fmean(rep_samples))
        samples.extend(rep_samples)
    samples.sort()
    return {
        "reps": reps,
        "pairs_per_rep": count * batch,
        "batch": batch,
        "mean_ns_median": statistics.median(rep_means),
        "mean_ns_reps": rep_means,
        "p50_ns": quantile(samples, 0.50),
        "p99_ns": quantile(samples, 0.99),
        "pairs_per_s": 1e9 / statistics.median(rep_means),
    }


PIPE_FULL = {"count": 0}


def file_timer_pair(fifo):
    """(statement, names) of PyTorch's FileTimerClient pair."""
    from torch.distributed.elastic.timer import FileTimerClient
    client = FileTimerClient(fifo)
    acquire, release, now, sleep = client.acquire, client.release, time.time, time.sleep

    # PyTorch's client writes without blocking: when the server has fallen behind and the
    # pipe is full, the request is lost and BlockingIOError raised. A training script
    # would die of it; here it is counted, and the call retried after 0.5 ms (the wait is
    # part of that pair's time). The function call this costs is nothing at tens of µs.
    def pair():
        while True:
            try:
                acquire(SCOPE, now() + 60)
                break
            except BlockingIOError:
                PIPE_FULL["count"] += 1
                sleep(0.0005)
        while True:
            try:
                release(SCOPE)
                break
            except BlockingIOError:
                PIPE_FULL["count"] += 1
                sleep(0.0005)
    return "pair()", {"pair": pair}


def shm_pair(table):
    import shmtimer
    client = shmtimer.ShmTimerClient(table)
    return "acquire(SCOPE, now() + 60); release(SCOPE)", dict(
        acquire=client.acquire, release=client.release, now=time.time, SCOPE=SCOPE)


def shm_timer_handle(table):
    import shmtimer
    handle = shmtimer.ShmTimerClient(table).timer(SCOPE)
    return "arm_after(60); disarm()", dict(arm_after=handle.arm_after, disarm=handle.disarm)


def shm_expires(table):
    import shmtimer
    return "with expires(60, SCOPE, client): pass", dict(
        expires=shmtimer.expires, client=shmtimer.ShmTimerClient(table), SCOPE=SCOPE)


def torch_expires_with_shm(table):
    import shmtimer
    from torch.distributed.elastic import timer
    timer.configure(shmtimer.ShmTimerClient(table))
    return "with expires(after=60, scope=SCOPE): pass", dict(expires=timer.expires, SCOPE=SCOPE)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fifo", required=True, help="FIFO served by shmtimerd --fifo")
    parser.add_argument("--table", required=True, help="the table shmtimerd serves")
    parser.add_argument("--out", required=True, help="JSON output")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--fifo-pairs", type=int, default=4000, help="pairs per repetition, FIFO client")
    parser.add_argument("--shm-pairs", type=int, default=100000, help="pairs per repetition, table clients")
    args = parser.parse_args()

    results = {"python": platform.python_version(), "executable": sys.executable, "scope_bytes": len(SCOPE),
               "benchmarks": [], "skipped": []}
    try:
        import torch
        results["torch"] = torch.__version__
        have_torch = True
    except ImportError as e:
        results["skipped"].append("torch: " + str(e))
        have_torch = False
    try:
        import shmtimer  # noqa: F401
        have_shmtimer = True
    except ImportError as e:
        results["skipped"].append("shmtimer module: " + str(e))
        have_shmtimer = False

    variants = []
    if have_torch:
        variants.append(("py_file_timer_client", "FileTimerClient pair (PyTorch, FIFO per request)",
                         file_timer_pair(args.fifo), args.fifo_pairs, 1))
    if have_shmtimer:
        variants.append(("py_shm_client", "shmtimer.ShmTimerClient pair", shm_pair(args.table), args.shm_pairs, 16))
        variants.append(("py_shm_timer", "shmtimer Timer handle pair (arm_after, disarm)", shm_timer_handle(args.table),
                         args.shm_pairs, 16))
        variants.append(("py_shm_expires", "with shmtimer.expires(60, scope)", shm_expires(args.table),
                         args.shm_pairs, 16))
        if have_torch:
            variants.append(("py_torch_expires_shm", "with torch timer.expires(after=60, scope=...), shmtimer client",
                             torch_expires_with_shm(args.table), args.shm_pairs // 4, 16))
    for key, label, (stmt, names), pairs, batch in variants:
        PIPE_FULL["count"] = 0
        result = measure(stmt, names, pairs, args.reps, batch)
        result.update(name=key, label=label)
        if key == "py_file_timer_client":
            result["pipe_full_retries"] = PIPE_FULL["count"]
        results["benchmarks"].append(result)
        print("%-70s p50 %10.0f ns  p99 %10.0f ns  mean %10.0f ns" %
              (label, result["p50_ns"], result["p99_ns"], result["mean_ns_median"]), file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
