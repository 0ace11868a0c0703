"""Interop with the real PyTorch, both directions, once per torch (tests/torch_suites.cmake).

Run inside a private pid namespace, so a bug in kill handling can never reach a process
outside the test. Paths come from the environment: SHMTIMERD, TIMER_DUMP, FIFO_WORKER.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

from torch_under_test import PY, SUITE
from shmtimer.torch import torch_server_signals_itself
from torch.distributed.elastic.timer.file_based_local_timer import FileTimerClient

SHMTIMERD = os.environ["SHMTIMERD"]
TIMER_DUMP = os.environ["TIMER_DUMP"]
FIFO_WORKER = os.environ["FIFO_WORKER"]


def run_worker(body, fifo, timeout=60, wait=True):
    """Runs a Python worker that uses PyTorch's unmodified FileTimerClient and expires()."""
    script = "import sys, time\nfrom torch.distributed.elastic import timer\n" \
             "timer.configure(timer.FileTimerClient(sys.argv[1]))\n" + textwrap.dedent(body)
    proc = subprocess.Popen([PY, "-c", script, fifo])
    if not wait:
        return proc
    proc.wait(timeout=timeout)
    return proc


class AgainstShmtimerd(unittest.TestCase):
    """PyTorch's FileTimerClient against shmtimerd --fifo."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shmtimer-interop-")
        self.table = os.path.join("/dev/shm", "shmtimer-interop-%s-%s.table" % (SUITE, self.id().split(".")[-1]))
        self.fifo = os.path.join(self.dir, "watchdog_timer")
        self.server = subprocess.Popen([SHMTIMERD, "--table", self.table, "--fifo", self.fifo, "--capacity", "4096"],
                                       stderr=subprocess.DEVNULL)
        for _ in range(500):
            if os.path.exists(self.fifo) and self.dump()["server"]["alive"]:
                break
            time.sleep(0.01)
        else:
            self.fail("shmtimerd did not start")

    def tearDown(self):
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            self.assertEqual(self.server.wait(timeout=30), 0)
        for path in (self.table,):
            if os.path.exists(path):
                os.remove(path)

    def dump(self):
        try:
            out = subprocess.run([TIMER_DUMP, "--table", self.table, "--json", "--all"], capture_output=True,
                                 check=True, timeout=30).stdout
        except subprocess.CalledProcessError:
            return {"server": {"alive": False}, "counters": {}, "timers": []}
        return json.loads(out)

    def requests(self):
        return self.dump()["counters"]["fifo_requests"]

    def wait_requests(self, n, timeout=30):
        end = time.time() + timeout
        while self.requests() < n and time.time() < end:
            time.sleep(0.01)
        return self.requests()

    def test_worker_that_overruns_is_killed_by_sigkill(self):
        proc = run_worker("""
            with timer.expires(after=0.1):
                time.sleep(60)
            """, self.fifo)
        self.assertEqual(proc.returncode, -signal.SIGKILL)

    def test_worker_whose_scope_holds_a_lone_surrogate_is_killed_by_sigkill(self):
        # torch's default scope is "file#line"; a file name that is not UTF-8 decodes to
        # lone surrogates, which json.dumps writes as "\udcff". torch's server takes it.
        proc = run_worker("""
            with timer.expires(after=0.1, scope="step-\\udcff"):
                time.sleep(60)
            """, self.fifo)
        self.assertEqual(proc.returncode, -signal.SIGKILL)

    def test_worker_that_finishes_in_time_survives(self):
        proc = run_worker("""
            for _ in range(3):
                with timer.expires(after=5):
                    time.sleep(0.05)
            """, self.fifo)
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(self.wait_requests(6), 6)

    def test_recursive_scopes_reacquire_one_timer(self):
        marker = os.path.join(self.dir, "deepest")
        proc = run_worker("""
            import os
            def recurse(n):
                with timer.expires(after=10):  # the same line, so the same scope, at every level
                    if n:
                        recurse(n - 1)
                    else:
                        open(sys.argv[2], "w").close()
                        time.sleep(1.5)
            recurse(3)
            """.replace("sys.argv[2]", repr(marker)), self.fifo, wait=False)
        for _ in range(1000):
            if os.path.exists(marker):
                break
            time.sleep(0.01)
        self.wait_requests(4)
        mine = [t for t in self.dump()["timers"] if t["pid"] == proc.pid and t["state"] == "armed"]
        self.assertEqual(len(mine), 1, mine)
        self.assertEqual(mine[0]["origin"], "fifo")
        # The default scope is the caller's "<file>#<line>"; PyTorch 1.13 computes it
        # inside contextlib, so every level (indeed every default scope) shares one key.
        self.assertEqual(proc.wait(timeout=60), 0)
        self.assertEqual(self.wait_requests(8), 8)

    def test_ten_clients_of_ten_nested_expires_make_two_hundred_requests(self):
        body = """
            def nest(n):
                if n == 0:
                    return
                with timer.expires(after=30, scope="level-%d" % n):
                    nest(n - 1)
            nest(10)
            """
        procs = [run_worker(body, self.fifo, wait=False) for _ in range(10)]
        for proc in procs:
            self.assertEqual(proc.wait(timeout=120), 0)
        self.assertEqual(self.wait_requests(200), 200)

    def test_releasing_an_unknown_scope_does_nothing(self):
        proc = run_worker("""
            timer.FileTimerClient(sys.argv[1]).release("never-acquired")
            """, self.fifo)
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(self.wait_requests(1), 1)
        self.assertEqual([t for t in self.dump()["timers"] if t["state"] == "armed"], [])

    def test_client_with_no_server_gets_broken_pipe_error(self):
        self.server.send_signal(signal.SIGTERM)
        self.assertEqual(self.server.wait(timeout=30), 0)
        self.assertFalse(os.path.exists(self.fifo))  # removed on stop, as the reference does
        with self.assertRaises(BrokenPipeError):
            FileTimerClient(self.fifo).acquire("x", time.time() + 1)


# PyTorch's own server in a process of its own: torch 2.x's signals its own process after a
# reap. It writes its request count and armed timers to a status file every 10 ms.
TORCH_SERVER = textwrap.dedent("""
    import json, os, sys, time
    from torch.distributed.elastic.timer.file_based_local_timer import FileTimerServer
    fifo, status = sys.argv[1], sys.argv[2]
    try:
        server = FileTimerServer(fifo, "interop", max_interval=0.1)  # 2.x: (file_path, run_id, ...)
    except TypeError:
        server = FileTimerServer(fifo, max_interval=0.1)  # 1.13: (file_path, max_interval, ...)
    server.start()
    print("ready", flush=True)
    while True:
        with open(status + ".new", "w") as f:
            json.dump({"requests": server._request_count, "timers": len(server._timers)}, f)
        os.replace(status + ".new", status)
        time.sleep(0.01)
""")


class AgainstPyTorchServer(unittest.TestCase):
    """Our C++ FifoTimerClient against PyTorch's own FileTimerServer."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shmtimer-interop-")
        self.fifo = os.path.join(self.dir, "watchdog_timer")
        self.status = os.path.join(self.dir, "status")
        self.server = subprocess.Popen([PY, "-c", TORCH_SERVER, self.fifo, self.status], stdout=subprocess.PIPE,
                                       text=True)
        self.assertEqual(self.server.stdout.readline().strip(), "ready")

    def tearDown(self):
        self.server.kill()
        self.server.wait()

    def server_status(self):
        with open(self.status) as f:
            return json.load(f)

    def test_cpp_worker_that_overruns_is_killed(self):
        proc = subprocess.run([FIFO_WORKER, "--fifo", self.fifo, "--timeout", "0.2", "--work", "30"], timeout=60)
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        # Upstream torch 2.x's server then signals its own process, with the same signal;
        # 1.13's and Debian 13's 2.6 do not. What shmtimer.torch reads from torch's source
        # must be what torch does.
        if torch_server_signals_itself():
            self.assertEqual(self.server.wait(timeout=30), -signal.SIGKILL)
        else:
            time.sleep(1)  # ten of its rounds
            self.assertIsNone(self.server.poll())

    def test_cpp_worker_that_releases_in_time_survives(self):
        proc = subprocess.run([FIFO_WORKER, "--fifo", self.fifo, "--timeout", "5", "--work", "0.05"], timeout=60)
        self.assertEqual(proc.returncode, 0)
        end = time.time() + 30  # the reference reads the FIFO every max_interval (0.1 s)
        while self.server_status()["requests"] < 2 and time.time() < end:
            time.sleep(0.01)
        self.assertEqual(self.server_status(), {"requests": 2, "timers": 0})
        self.assertIsNone(self.server.poll())


if __name__ == "__main__":
    unittest.main(verbosity=2)
