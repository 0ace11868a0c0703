"""The user-facing cases of PyTorch's own tests of its FileTimer (file_based_local_timer_test.py
in pytorch/pytorch), each against shmtimer's ShmTimerServer, in this project's words.

Where torch's test reaches into its server with mocks (os.kill, is_process_running,
_reap_worker, pids such as -3), the case here uses real processes and asserts what a user
sees: who was signalled, with what, and which timers remain. Each test names the torch
case it stands for. Run once per torch (tests/torch_suites.cmake), in a private pid namespace.
"""
import os
import signal
import subprocess
import tempfile
import textwrap
import time
import unittest
import unittest.mock as mock

from torch_under_test import PY
import torch.distributed.elastic.timer as timer

import shmtimer
from shmtimer.torch import ShmTimerServer

MAX_INTERVAL = 0.01  # as torch's tests


def worker(body, *args):
    """A Python worker on torch's FileTimerClient for $FIFO; it prints "ready" first."""
    script = "import os, sys, time\nfrom torch.distributed.elastic import timer\n" + textwrap.dedent(body)
    return subprocess.Popen([PY, "-c", script, *map(str, args)], stdout=subprocess.PIPE, text=True)


def wait_ready(proc):
    line = proc.stdout.readline()
    if line.strip() != "ready":
        raise AssertionError("worker did not get ready: %r" % line)


class Served(unittest.TestCase):
    """A ShmTimerServer made as torch's tests make FileTimerServer(path, "test", 0.01)."""

    start_server = True

    def setUp(self):
        os.environ.pop("SHMTIMER_TABLE", None)
        self.dir = tempfile.TemporaryDirectory()
        self.file_path = os.path.join(self.dir.name, "test_file_path")
        os.environ["FIFO"] = self.file_path  # for the workers
        self.events = []
        self.server = ShmTimerServer(self.file_path, "test-%d" % os.getpid(), MAX_INTERVAL,
                                     log_event=lambda name, request: self.events.append((name, request)),
                                     signal_self_after_reap=False)  # torch 2.x's default would kill this test
        if self.start_server:
            self.server.start()
        self.sleepers = []

    def tearDown(self):
        for proc in self.sleepers:
            proc.kill()
            proc.wait()
        self.server.stop()
        os.environ.pop("SHMTIMER_TABLE", None)
        timer.configure(None)
        self.dir.cleanup()

    def killed(self):
        return [(r.worker_pid, r.scope_id, r.signal) for name, r in self.events if name == "kill worker process"]

    def sleeper(self):
        """A live process of ours that no timer of these tests may kill unless it expires."""
        proc = subprocess.Popen(["sleep", "120"])
        self.sleepers.append(proc)
        return proc.pid

    def send(self, pid, scope, expiration_time, sig=signal.SIGKILL):
        """One raw request through the FIFO, as torch's tests send them with _send_request."""
        timer.FileTimerClient(self.file_path)._send_request(timer.FileTimerRequest(pid, scope, expiration_time, sig))

    def drain(self):
        self.server.run_once()  # as torch's tests: every request sent so far is applied


class FileTimerCases(Served):
    """torch's FileTimerTest: a started server and the expires() API."""

    def test_exception_propagation__an_error_raised_in_the_block_leaves_expires_unchanged(self):
        timer.configure(timer.FileTimerClient(self.file_path))
        with self.assertRaisesRegex(RuntimeError, "foobar"):
            with timer.expires(after=1):
                raise RuntimeError("foobar")

    def test_no_client__expires_without_a_configured_client_is_a_runtime_error(self):
        timer.configure(None)
        with self.assertRaises(RuntimeError):
            with timer.expires(after=1):
                pass
        with self.assertRaises(RuntimeError):  # shmtimer's own expires, the same way
            with shmtimer.expires(1):
                pass

    def test_client_interaction__an_explicit_client_gets_one_acquire_and_one_release_of_the_scope(self):
        for client in (timer.FileTimerClient(self.file_path), shmtimer.ShmTimerClient(self.server.table_path)):
            client.acquire = mock.MagicMock(wraps=client.acquire)
            client.release = mock.MagicMock(wraps=client.release)
            with timer.expires(after=1, scope="test", client=client):
                pass
            client.acquire.assert_called_once_with("test", mock.ANY)
            client.release.assert_called_once_with("test")

    def test_happy_path__a_block_that_ends_in_time_is_never_killed(self):
        # In a worker that outlives the released deadline, so that a release that did
        # nothing would show as a kill.
        proc = worker("""
            timer.configure(timer.FileTimerClient(os.environ["FIFO"]))
            print("ready", flush=True)
            with timer.expires(after=0.5):
                time.sleep(0.1)
            time.sleep(1.5)
        """)
        wait_ready(proc)
        self.assertEqual(proc.wait(timeout=60), 0)
        self.assertEqual(self.killed(), [])

    def test_get_timer_recursive__recursion_reacquires_one_timer_and_only_an_overrun_is_killed(self):
        body = """
            timer.configure(timer.FileTimerClient(os.environ["FIFO"]))
            def func(n, pause):
                if n > 0:
                    with timer.expires(after=0.3):  # one default scope: this line
                        func(n - 1, pause)
                        time.sleep(pause)
            print("ready", flush=True)
            func(int(sys.argv[1]), float(sys.argv[2]))
            time.sleep(1)
        """
        # torch's case, with wider margins for a loaded machine: 4 levels of 0.1 s outlast
        # one 0.3 s timer, so only one timer, re-acquired by each level, lets this live.
        punctual = worker(body, 4, 0.1)
        wait_ready(punctual)
        self.assertEqual(punctual.wait(timeout=60), 0)
        overrun = worker(body, 2, 0.6)
        wait_ready(overrun)
        self.assertEqual(overrun.wait(timeout=60), -signal.SIGKILL)
        self.assertEqual([pid for pid, _, _ in self.killed()], [overrun.pid])

    def test_multiple_clients_interaction__ten_clients_of_ten_nested_blocks_make_200_requests(self):
        body = """
            timer.configure(timer.FileTimerClient(os.environ["FIFO"]))
            def func(n):
                if n > 0:
                    with timer.expires(after=100):
                        func(n - 1)
                        time.sleep(0.01)
            print("ready", flush=True)
            func(10)
        """
        procs = [worker(body) for _ in range(10)]
        for proc in procs:
            wait_ready(proc)
        for proc in procs:
            self.assertEqual(proc.wait(timeout=120), 0)
        self.drain()
        self.assertEqual(self.server._request_count, 2 * 10 * 10)
        self.assertEqual(self.server._timers, {})

    def test_exit_before_release__a_worker_gone_before_its_deadline_is_dropped_unsignalled(self):
        proc = worker("""
            client = timer.FileTimerClient(os.environ["FIFO"])
            deadline = time.time() + 2
            client.acquire("test_scope", deadline)
            print("ready", deadline, flush=True)
            time.sleep(0.2)
            os._exit(0)  # at once: a loaded machine may take a second to unload torch
        """)
        deadline = float(proc.stdout.readline().split()[1])
        self.assertEqual(proc.wait(timeout=60), 0)
        time.sleep(max(0.0, deadline - time.time()) + 0.2)  # past its deadline
        self.drain()
        self.assertEqual(self.killed(), [])
        self.assertEqual(self.server._timers, {})

    def test_exit_before_release_reap__an_expired_timer_of_a_running_worker_reaps_it_and_clears_it(self):
        proc = worker("""
            client = timer.FileTimerClient(os.environ["FIFO"])
            client.acquire("test_scope", time.time() + 0.3)
            print("ready", flush=True)
            time.sleep(60)
        """)
        wait_ready(proc)
        self.assertEqual(proc.wait(timeout=60), -signal.SIGKILL)
        self.drain()
        self.assertEqual(self.killed(), [(proc.pid, "test_scope", signal.SIGKILL)])
        self.assertEqual(self.server._timers, {})

    def test_timer__a_worker_that_sleeps_past_its_timeout_is_killed_with_sigkill(self):
        proc = worker("""
            timer.configure(timer.FileTimerClient(os.environ["FIFO"]))
            print("ready", flush=True)
            with timer.expires(after=0.1):
                time.sleep(1)
            time.sleep(5)
        """)
        wait_ready(proc)
        self.assertEqual(proc.wait(timeout=60), -signal.SIGKILL)


class FileTimerClientCases(unittest.TestCase):
    """torch's FileTimerClientTest."""

    def tearDown(self):
        timer.configure(None)

    def test_send_request_without_server__both_clients_raise_broken_pipe_error_at_first_use(self):
        with tempfile.TemporaryDirectory() as d:
            timer.configure(timer.FileTimerClient(os.path.join(d, "test_file")))
            with self.assertRaises(BrokenPipeError):
                with timer.expires(after=0.1):
                    time.sleep(0.1)
            table = os.path.join(d, "no-table")
            client = shmtimer.ShmTimerClient(table)  # made without a server, as torch's is
            timer.configure(client)
            for _ in range(2):  # each use tries again, as torch's client reopens its FIFO
                with self.assertRaisesRegex(BrokenPipeError, r"shmtimerd --table %s.*python -m shmtimer.run" % table):
                    with timer.expires(after=0.1):
                        time.sleep(0.1)
            self.assertIsInstance(BrokenPipeError(), OSError)


class FileTimerServerCases(Served):
    """torch's FileTimerServerTest: the server's own methods."""

    start_server = False

    def _expired(self, pid, scope):
        self.send(pid, scope, time.time() - 60)

    def _valid(self, pid, scope):
        self.send(pid, scope, time.time() + 60)

    def _release(self, pid, scope):
        self.send(pid, scope, -1, 0)

    def test_watchdog_call_count__the_watchdog_makes_progress_while_it_runs(self):
        # torch counts calls of its loop's private step; what a user (and torch's agent,
        # as its health check) sees of that is get_last_progress_time.
        self.server.start()
        started = int(time.time())
        self._valid(self.sleeper(), "test0")
        time.sleep(1.1)
        self.assertGreater(self.server.get_last_progress_time(), started)
        self.server.stop()
        stopped = self.server.get_last_progress_time()
        time.sleep(1.1)
        self.assertEqual(self.server.get_last_progress_time(), stopped)

    def test_watchdog_empty_queue__the_watchdog_runs_and_stops_on_an_empty_fifo(self):
        self.server.start()
        self.drain()
        self.assertEqual(self.server._timers, {})
        self.server.stop()  # joins the watchdog thread, which says it started
        self.assertEqual([name for name, _ in self.events], ["watchdog started", "watchdog stopped"])

    def test_expired_timers__one_expired_timer_signals_its_process_once_and_clears_all_of_its_timers(self):
        pid = self.sleeper()
        self._expired(pid, "test1")  # both queued before the watchdog starts, so that one
        self._valid(pid, "test2")    # round applies both, as torch's test has its one read
        self.server.start()
        self.drain()
        self.assertEqual(self.server._timers, {})
        self.assertEqual(self.killed(), [(pid, "test1", signal.SIGKILL)])
        self.assertEqual(self.sleepers[0].wait(timeout=30), -signal.SIGKILL)
        self.assertIn("timer expired", [name for name, _ in self.events])

    def test_send_request_release__an_acquired_then_released_timer_and_a_vacuous_release_kill_nobody(self):
        self.server.start()
        pid = self.sleeper()
        self._valid(pid, "test1")
        self._release(pid, "test1")
        self._release(pid, "test2")
        self.drain()
        self.assertEqual(self.server._timers, {})
        self.assertEqual(self.killed(), [])
        self.assertIsNone(self.sleepers[0].poll())

    def test_valid_timers__timers_not_yet_due_stay_and_their_processes_live(self):
        self.server.start()
        first, second = self.sleeper(), self.sleeper()
        for pid in (first, second):
            for scope in ("test1", "test2"):
                self._valid(pid, scope)
        self.drain()
        self.assertEqual(sorted(self.server._timers), [(p, s) for p in sorted((first, second)) for s in ("test1", "test2")])
        self.assertEqual(self.killed(), [])
        self.assertEqual([proc.poll() for proc in self.sleepers], [None, None])

    def test_is_process_running__answers_for_live_and_gone_processes_as_a_static_method(self):
        pid = self.sleeper()
        self.assertTrue(ShmTimerServer.is_process_running(pid))
        self.assertTrue(ShmTimerServer.is_process_running(os.getpid()))
        gone = subprocess.Popen(["true"])
        gone.wait()
        self.assertFalse(ShmTimerServer.is_process_running(gone.pid))
        for nobody in (0, -3):  # torch's os.kill(0, 0) would answer for the process group
            self.assertFalse(ShmTimerServer.is_process_running(nobody))


if __name__ == "__main__":
    unittest.main(verbosity=2)
