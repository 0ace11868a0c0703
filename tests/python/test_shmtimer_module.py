"""The Python module against shmtimerd and the real torch, once per torch
(tests/torch_suites.cmake), in a private pid namespace. SHMTIMERD names the daemon.
"""
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

import shmtimer

from torch_under_test import PY, SUITE
SHMTIMERD = os.environ["SHMTIMERD"]
import torch.distributed.elastic.timer as torch_timer


def worker(body, table, wait=True, timeout=60):
    """A Python worker using the module (and torch's expires, when asked)."""
    script = "import sys, time, shmtimer\n" + textwrap.dedent(body)
    proc = subprocess.Popen([PY, "-c", script, table], env=dict(os.environ))
    if wait:
        proc.wait(timeout=timeout)
    return proc


class WithServer(unittest.TestCase):
    capacity = 4096

    def setUp(self):
        self.table = "/dev/shm/shmtimer-py-%s-%s.table" % (SUITE, self.id().split(".")[-1])
        self.server = subprocess.Popen([SHMTIMERD, "--table", self.table, "--capacity", str(self.capacity)],
                                       stderr=subprocess.DEVNULL)
        for _ in range(500):
            try:
                if shmtimer.header(self.table)["server_alive"]:
                    break
            except shmtimer.ShmTimerError:
                pass
            time.sleep(0.01)
        else:
            self.fail("shmtimerd did not start")

    def tearDown(self):
        self.server.send_signal(signal.SIGTERM)
        self.assertEqual(self.server.wait(timeout=30), 0)
        os.remove(self.table)


class TorchDefaultScope(unittest.TestCase):
    def test_torch_names_every_unscoped_block_after_contextlib(self):
        """Why docs/pytorch.md says to pass scope=: torch 1.13's default scope is the
        frame of contextlib's __enter__, the same for every block, and shmtimer's is not."""
        scopes = []

        class Recording(torch_timer.TimerClient):
            def acquire(self, scope_id, expiration_time):
                scopes.append(scope_id)

            def release(self, scope_id):
                pass

        client = Recording()
        with torch_timer.expires(after=60, client=client):
            pass
        with torch_timer.expires(after=60, client=client):
            pass
        self.assertEqual(len(set(scopes)), 1)
        self.assertRegex(scopes[0], r"contextlib\.py#\d+$")
        with shmtimer.expires(60, client=client):
            pass
        self.assertTrue(scopes[-1].endswith("test_shmtimer_module.py#%d" % (sys._getframe().f_lineno - 2)), scopes[-1])


class TorchExpires(WithServer):
    def test_client_is_a_torch_timer_client(self):
        client = shmtimer.ShmTimerClient(self.table)
        self.assertIsInstance(client, torch_timer.TimerClient)

    def test_overrunning_worker_is_reaped(self):
        proc = worker("""
            from torch.distributed.elastic import timer
            timer.configure(shmtimer.ShmTimerClient(sys.argv[1]))
            with timer.expires(after=0.1):
                time.sleep(60)
            """, self.table)
        self.assertEqual(proc.returncode, -signal.SIGKILL)

    def test_worker_that_finishes_in_time_survives(self):
        proc = worker("""
            from torch.distributed.elastic import timer
            timer.configure(shmtimer.ShmTimerClient(sys.argv[1]))
            for _ in range(20):
                with timer.expires(after=5):
                    time.sleep(0.005)
            """, self.table)
        self.assertEqual(proc.returncode, 0)
        self.assertGreaterEqual(shmtimer.header(self.table)["counters"]["acquires"], 20)

    def test_recursion_reacquires_one_timer(self):
        marker = tempfile.mktemp(prefix="shmtimer-deepest-")
        proc = worker("""
            from torch.distributed.elastic import timer
            timer.configure(shmtimer.ShmTimerClient(sys.argv[1]))
            def recurse(n):
                with timer.expires(after=30):
                    if n:
                        recurse(n - 1)
                    else:
                        open(%r, "w").close()
                        time.sleep(1.0)
            recurse(4)
            """ % marker, self.table, wait=False)
        for _ in range(1000):
            if os.path.exists(marker):
                break
            time.sleep(0.01)
        mine = [t for t in shmtimer.timers(self.table) if t["pid"] == proc.pid]
        self.assertEqual(len(mine), 1, mine)
        self.assertEqual(mine[0]["acquires"], 5)
        self.assertEqual(proc.wait(timeout=60), 0)
        os.remove(marker)

    def test_signal_is_the_clients(self):
        proc = worker("""
            from torch.distributed.elastic import timer
            import signal
            timer.configure(shmtimer.ShmTimerClient(sys.argv[1], signal=signal.SIGTERM))
            with timer.expires(after=0.1):
                time.sleep(60)
            """, self.table)
        self.assertEqual(proc.returncode, -signal.SIGTERM)


class WithoutTorch(WithServer):
    def test_expires_context_manager_reaps_and_spares(self):
        hung = worker("""
            shmtimer.configure(shmtimer.ShmTimerClient(sys.argv[1]))
            with shmtimer.expires(0.1):
                time.sleep(60)
            """, self.table)
        self.assertEqual(hung.returncode, -signal.SIGKILL)
        fine = worker("""
            with shmtimer.expires(5, client=shmtimer.ShmTimerClient(sys.argv[1])):
                time.sleep(0.01)
            """, self.table)
        self.assertEqual(fine.returncode, 0)

    def test_default_scope_is_the_callers_line_and_timers_are_readable(self):
        client = shmtimer.ShmTimerClient(self.table)
        with shmtimer.expires(30, client=client):
            rows = [t for t in shmtimer.timers(self.table) if t["pid"] == os.getpid()]
        self.assertEqual(len(rows), 1)
        self.assertTrue(rows[0]["scope"].endswith("test_shmtimer_module.py#%d" % (sys._getframe().f_lineno - 3)),
                        rows[0]["scope"])
        self.assertEqual(rows[0]["origin"], "table")
        self.assertEqual(rows[0]["state"], "armed")
        self.assertGreater(rows[0]["remaining_s"], 25)
        self.assertEqual(shmtimer.timers(self.table), [])  # released
        self.assertEqual(len(shmtimer.timers(self.table, all=True)), 1)  # the idle slot

    def test_an_owner_that_could_not_be_looked_at_reads_as_none_not_as_gone(self):
        # A reader out of descriptors: the one left opens the table, so no look at any
        # process can be made. "Could not tell" is None, as timer-dump's null; never False.
        client = shmtimer.ShmTimerClient(self.table)
        with shmtimer.expires(30, "held", client):
            reader = subprocess.run([PY, "-c", textwrap.dedent("""
                import os, resource, sys, shmtimer
                resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
                print(shmtimer.timers(sys.argv[1])[0]["pid_alive"])
                held = []
                try:
                    while True:
                        held.append(os.open("/dev/null", os.O_RDONLY))
                except OSError:
                    os.close(held.pop())
                print(shmtimer.timers(sys.argv[1])[0]["pid_alive"])
                """), self.table], capture_output=True, text=True, timeout=60)
        self.assertEqual(reader.returncode, 0, reader.stderr)
        self.assertEqual(reader.stdout.split(), ["True", "None"])

    def test_default_table_comes_from_the_environment(self):
        os.environ["SHMTIMER_TABLE"] = self.table
        try:
            self.assertEqual(shmtimer.default_table_path(), self.table)
            self.assertEqual(shmtimer.ShmTimerClient().table_path, self.table)
        finally:
            del os.environ["SHMTIMER_TABLE"]

    def test_many_processes_at_once(self):
        procs = [worker("""
            c = shmtimer.ShmTimerClient(sys.argv[1])
            for i in range(2000):
                c.acquire("s%d" % (i % 4), time.time() + 30)
                c.release("s%d" % (i % 4))
            c.acquire("held", time.time() + 30)
            time.sleep(1.0)
            """, self.table, wait=False) for _ in range(12)]
        time.sleep(0.5)
        for proc in procs:
            self.assertEqual(proc.wait(timeout=120), 0)
        self.assertGreaterEqual(shmtimer.header(self.table)["counters"]["acquires"], 12 * 2001)


class ConfiguredClient(WithServer):
    def test_expires_without_any_client_raises_as_torch_does(self):
        proc = subprocess.run([PY, "-c", textwrap.dedent("""
            import shmtimer
            try:
                with shmtimer.expires(1):
                    pass
            except RuntimeError as e:
                assert "Configure timer client" in str(e), e
                raise SystemExit(3)
            """)], env=dict(os.environ))
        self.assertEqual(proc.returncode, 3)

    def test_expires_uses_the_client_configured_in_torch(self):
        hung = worker("""
            from torch.distributed.elastic import timer
            timer.configure(shmtimer.ShmTimerClient(sys.argv[1]))
            with shmtimer.expires(0.1, "torch-configured"):
                time.sleep(60)
            """, self.table)
        self.assertEqual(hung.returncode, -signal.SIGKILL)


class DroppedClient(WithServer):
    def test_a_worker_that_dropped_its_client_is_still_reaped(self):
        # The client is a temporary: gone before the deadline, and with it (but for the
        # module's keep-alive) the table mapping the server checks before signalling.
        hung = worker("""
            import gc
            shmtimer.ShmTimerClient(sys.argv[1]).acquire("dropped-client", time.time() + 0.2)
            gc.collect()
            time.sleep(60)
            """, self.table)
        self.assertEqual(hung.returncode, -signal.SIGKILL)


class TimerHandle(WithServer):
    def test_a_hung_handle_is_reaped_and_a_disarmed_one_survives(self):
        hung = worker("""
            t = shmtimer.ShmTimerClient(sys.argv[1]).timer("handle-hung")
            t.arm_after(0.1)
            time.sleep(60)
            """, self.table)
        self.assertEqual(hung.returncode, -signal.SIGKILL)
        # Disarmed, then alive well past the deadline it had: a disarm that did nothing
        # would get this worker killed.
        fine = worker("""
            t = shmtimer.ShmTimerClient(sys.argv[1]).timer("handle-fine")
            for _ in range(3):
                t.arm(time.time() + 0.2)
                t.disarm()
            time.sleep(0.6)
            """, self.table)
        self.assertEqual(fine.returncode, 0)

    def test_handle_arms_its_scopes_slot(self):
        client = shmtimer.ShmTimerClient(self.table)
        handle = client.timer("mine")
        self.assertEqual(handle.scope, "mine")
        handle.arm_after(30)
        rows = {t["scope"]: t for t in shmtimer.timers(self.table) if t["pid"] == os.getpid()}
        self.assertGreater(rows["mine"]["remaining_s"], 25)
        handle.disarm()
        self.assertEqual(shmtimer.timers(self.table), [])
        client.release("mine")  # the same slot as the scope API's
        self.assertTrue(client.forget("mine"))

    def test_fast_calls_check_their_arguments(self):
        client = shmtimer.ShmTimerClient(self.table)
        client.acquire(scope_id="kw", expiration_time=time.time() + 30)  # keywords, as torch's API allows
        client.release(scope_id="kw")
        client.acquire(b"bytes-scope", int(time.time()) + 30)  # bytes and an int time
        client.release(b"bytes-scope")
        for bad in [lambda: client.acquire("x"), lambda: client.acquire("x", 1.0, 2.0),
                    lambda: client.acquire(7, time.time()), lambda: client.acquire("x", "soon"),
                    lambda: client.release(), lambda: client.release(scope="x"),
                    lambda: client.timer("h").arm_after(), lambda: client.timer("h").disarm(1)]:
            with self.assertRaises(TypeError):
                bad()
        with self.assertRaises(shmtimer.ScopeTooLongError):
            client.acquire("y" * 257, time.time() + 30)
        with self.assertRaises(shmtimer.ScopeTooLongError):
            client.timer("y" * 257)


class AsTorchUsersExpect(WithServer):
    def test_a_scope_with_a_lone_surrogate_is_armed_read_back_and_released(self):
        # torch's default scope "<file>#<line>" holds one when the file name is not UTF-8.
        client = shmtimer.ShmTimerClient(self.table)
        scope = "/data/caf\udce9.py#12"
        client.acquire(scope, time.time() + 30)
        self.assertEqual([t["scope"] for t in shmtimer.timers(self.table)], [scope])
        client.release(scope)
        self.assertEqual(shmtimer.timers(self.table), [])
        with shmtimer.expires(30, scope, client):
            self.assertEqual([t["scope"] for t in shmtimer.timers(self.table)], [scope])
        with client.timer(scope + "-handle", after=30):
            self.assertEqual(len(shmtimer.timers(self.table)), 1)
        self.assertEqual(shmtimer.timers(self.table), [])

    def test_a_hung_worker_with_a_surrogate_scope_is_reaped(self):
        hung = worker("""
            client = shmtimer.ShmTimerClient(sys.argv[1])
            with shmtimer.expires(0.1, "\\udcff#1", client):
                time.sleep(60)
            """, self.table)
        self.assertEqual(hung.returncode, -signal.SIGKILL)

    def test_a_timer_used_as_a_context_manager_arms_for_its_after_and_disarms_however_the_block_ends(self):
        client = shmtimer.ShmTimerClient(self.table)
        handle = client.timer("ctx", after=30)
        with handle as entered:
            self.assertIs(entered, handle)
            (row,) = shmtimer.timers(self.table)
            self.assertGreater(row["remaining_s"], 25)
        self.assertEqual(shmtimer.timers(self.table), [])
        with self.assertRaisesRegex(KeyError, "inside"):
            with handle:
                raise KeyError("inside")
        self.assertEqual(shmtimer.timers(self.table), [])
        bare = client.timer("ctx-bare")  # no after: the block arms it itself
        with bare:
            self.assertEqual(shmtimer.timers(self.table), [])
            bare.arm_after(30)
            self.assertEqual(len(shmtimer.timers(self.table)), 1)
        self.assertEqual(shmtimer.timers(self.table), [])

    def test_a_hung_block_under_a_timer_context_is_reaped_and_a_punctual_one_outlives_its_deadline(self):
        body = """
            handle = shmtimer.ShmTimerClient(sys.argv[1]).timer("ctx-step", after=0.3)
            for _ in range(3):
                with handle:
                    time.sleep(%s)
            time.sleep(1)  # alive well past the last released deadline
            """
        hung = worker(body % 60, self.table, wait=False)
        punctual = worker(body % 0.05, self.table, wait=False)
        self.assertEqual(hung.wait(timeout=60), -signal.SIGKILL)
        self.assertEqual(punctual.wait(timeout=60), 0)


class SmallTable(WithServer):
    capacity = 2

    def test_table_full(self):
        client = shmtimer.ShmTimerClient(self.table)
        client.acquire("a", time.time() + 30)
        client.acquire("b", time.time() + 30)
        with self.assertRaisesRegex(shmtimer.TableFullError, "all 2 slots"):
            client.acquire("c", time.time() + 30)
        client.release("a")
        client.release("b")


class ReleaseFrees(WithServer):
    """Released slots are recycled (torch's server forgets a released timer), so a new
    scope per step never fills the table, and armed timers are never given back."""
    capacity = 64

    def my_slots(self):
        return [t for t in shmtimer.timers(self.table, all=True) if t["pid"] == os.getpid()]

    def test_a_new_scope_every_step_never_fills_the_table(self):
        client = shmtimer.ShmTimerClient(self.table, recycle_idle_slots=16)
        client.acquire("held", time.time() + 3600)
        most = 0
        for i in range(3000):  # 3000 scopes through a 64-slot table
            with shmtimer.expires(60, scope="step-%d" % i, client=client):
                pass
            if i % 101 == 0:
                most = max(most, len(self.my_slots()))
        self.assertLessEqual(most, 17)
        held = [t for t in self.my_slots() if t["scope"] == "held"]
        self.assertEqual(len(held), 1)
        self.assertEqual(held[0]["state"], "armed")
        client.release("held")

    def test_the_default_client_recycles_before_it_reports_a_full_table(self):
        client = shmtimer.ShmTimerClient(self.table)  # default keep (128) above this table's 64 slots
        for i in range(1000):
            client.acquire("step-%d" % i, time.time() + 60)
            client.release("step-%d" % i)
        client.acquire("x", time.time() + 60)
        client.release("x")

    def test_a_hung_worker_is_killed_while_its_other_scopes_are_recycled(self):
        hung = worker("""
            client = shmtimer.ShmTimerClient(sys.argv[1], recycle_idle_slots=8)
            client.acquire("hang", time.time() + 1.0)
            for i in range(500):
                client.acquire("step-%d" % i, time.time() + 60)
                client.release("step-%d" % i)
            time.sleep(60)
            """, self.table)
        self.assertEqual(hung.returncode, -signal.SIGKILL)


class NoServer(unittest.TestCase):
    """A table whose server has stopped: acquiring fails as PyTorch's client does."""

    def setUp(self):
        self.table = "/dev/shm/shmtimer-py-noserver-%s.table" % SUITE
        server = subprocess.Popen([SHMTIMERD, "--table", self.table, "--capacity", "64"], stderr=subprocess.DEVNULL)
        for _ in range(500):
            if os.path.exists(self.table) and shmtimer.header(self.table)["server_alive"]:
                break
            time.sleep(0.01)
        server.send_signal(signal.SIGTERM)
        self.assertEqual(server.wait(timeout=30), 0)

    def tearDown(self):
        os.remove(self.table)

    def test_acquire_without_a_live_server_raises_and_arms_nothing(self):
        client = shmtimer.ShmTimerClient(self.table)
        with self.assertRaisesRegex(shmtimer.NoServerError, "no live server holds timer table"):
            client.acquire("unserved", time.time() + 30)
        with self.assertRaises(BrokenPipeError):  # what torch's FileTimerClient raises
            client.acquire("unserved", time.time() + 30)
        with self.assertRaises(shmtimer.NoServerError):
            client.timer("unserved-handle").arm_after(30)
        with self.assertRaises(shmtimer.NoServerError):
            with shmtimer.expires(30, "unserved-block", client):
                pass
        self.assertEqual(shmtimer.timers(self.table), [])

    def test_require_server_false_arms_regardless(self):
        client = shmtimer.ShmTimerClient(self.table, require_server=False)
        client.acquire("opted-out", time.time() + 30)
        self.assertEqual([t["scope"] for t in shmtimer.timers(self.table)], ["opted-out"])
        client.release("opted-out")


class Errors(unittest.TestCase):
    """A table that cannot be used fails at the first use, as torch's client fails when
    its FIFO has no server: a BrokenPipeError, whose message says what to run."""

    def assert_unusable(self, path, error, detail):
        client = shmtimer.ShmTimerClient(path)  # no error yet, as torch's FileTimerClient(path)
        for use in (lambda: client.acquire("x", time.time() + 1), lambda: client.release("x"),
                    lambda: client.timer("x"), lambda: shmtimer.expires(1, "x", client).__enter__()):
            with self.assertRaisesRegex(error, detail + r"[\s\S]*shmtimerd --table " + path):
                use()
            with self.assertRaises(BrokenPipeError):
                use()

    def test_table_missing(self):
        self.assert_unusable("/dev/shm/shmtimer-no-such-table", shmtimer.TableMissingError, "No such file")

    def test_not_a_table(self):
        with tempfile.NamedTemporaryFile(dir="/dev/shm") as f:
            f.write(b"x" * 8192)
            f.flush()
            self.assert_unusable(f.name, shmtimer.NotATableError, "magic")

    def test_scope_too_long_and_other_version(self):
        path = "/dev/shm/shmtimer-py-errors-%s.table" % SUITE
        server = subprocess.Popen([SHMTIMERD, "--table", path, "--capacity", "8"], stderr=subprocess.DEVNULL)
        try:
            for _ in range(500):
                if os.path.exists(path):
                    break
                time.sleep(0.01)
            time.sleep(0.2)
            client = shmtimer.ShmTimerClient(path)
            with self.assertRaisesRegex(shmtimer.ScopeTooLongError, "300 bytes; the limit is 256"):
                client.acquire("x" * 300, time.time() + 1)
            with self.assertRaises(ValueError):
                shmtimer.ShmTimerClient(path, signal=999)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        # version_major is the u16 at offset 8 (docs/table-format.md).
        with open(path, "r+b") as f:
            f.seek(8)
            f.write((4).to_bytes(2, "little"))
        try:
            self.assert_unusable(path, shmtimer.VersionMismatchError, r"version 4\.\d+, this build reads 3\.x")
        finally:
            os.remove(path)


if __name__ == "__main__":
    unittest.main(verbosity=2)
