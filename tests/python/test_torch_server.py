"""shmtimer.torch.ShmTimerServer: torch's FileTimerServer interface, with real workers.

Run once per torch (tests/torch_suites.cmake), in a private pid namespace.
"""
import os
import signal
import stat
import subprocess
import tempfile
import textwrap
import time
import unittest

import shmtimer
from shmtimer.torch import FileTimerRequest, ShmTimerServer, table_path_for

from torch_under_test import PY, SUITE
import torch.distributed.elastic.timer as torch_timer


def start_worker(body):
    """A Python worker that reports "ready" on stdout, then runs body (env inherited)."""
    script = "import os, sys, time\n" + textwrap.dedent(body)
    return subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True, env=dict(os.environ))


def wait_ready(proc):
    line = proc.stdout.readline()
    if line.strip() != "ready":
        raise AssertionError("worker did not get ready: %r" % line)


class Hosted(unittest.TestCase):
    """One ShmTimerServer per test, as torch's agent makes it (2.x keyword form)."""

    def setUp(self):
        os.environ.pop("SHMTIMER_TABLE", None)
        self.dir = tempfile.TemporaryDirectory()
        self.fifo = os.path.join(self.dir.name, "watchdog")
        os.environ["FIFO"] = self.fifo  # for the workers
        self.events = []
        self.server = ShmTimerServer(file_path=self.fifo, run_id="test-%d-%s" % (os.getpid(), self.id()[-40:]),
                                     max_interval=0.1, daemon=True,
                                     log_event=lambda name, request: self.events.append((name, request)),
                                     signal_self_after_reap=False)  # torch 2.x's default would kill this test
        self.server.start()

    def tearDown(self):
        self.server.stop()
        os.environ.pop("SHMTIMER_TABLE", None)
        self.dir.cleanup()

    def named(self, name):
        return [request for event, request in self.events if event == name]


class ServesTorchWorkers(Hosted):
    def test_a_hung_file_timer_client_worker_is_killed_and_a_punctual_one_survives(self):
        body = """
            from torch.distributed.elastic import timer
            timer.configure(timer.FileTimerClient(os.environ["FIFO"]))
            print("ready", flush=True)
            with timer.expires(after=0.5, scope="step"):
                time.sleep(float(sys.argv[1]))
            time.sleep(2)  # alive well past the released deadline
        """
        hung = subprocess.Popen([PY, "-c", "import os, sys, time\n" + textwrap.dedent(body), "60"],
                                stdout=subprocess.PIPE, text=True)
        punctual = subprocess.Popen([PY, "-c", "import os, sys, time\n" + textwrap.dedent(body), "0.05"],
                                    stdout=subprocess.PIPE, text=True)
        self.assertEqual(hung.wait(timeout=60), -signal.SIGKILL)
        self.assertEqual(punctual.wait(timeout=60), 0)
        killed = self.named("kill worker process")
        self.assertEqual([r.worker_pid for r in killed], [hung.pid])
        self.assertIsInstance(killed[0], torch_timer.FileTimerRequest)
        self.assertEqual((killed[0].scope_id, killed[0].signal), ("step", signal.SIGKILL))
        self.assertIn(punctual.pid, [r.worker_pid for r in self.named("set timer")])

    def test_a_shm_timer_client_worker_finds_the_table_without_being_told(self):
        self.assertEqual(os.environ["SHMTIMER_TABLE"], self.server.table_path)
        hung = start_worker("""
            import shmtimer
            client = shmtimer.ShmTimerClient()  # $SHMTIMER_TABLE, which the server set
            print("ready", flush=True)
            with shmtimer.expires(0.3, scope="hang", client=client):
                time.sleep(60)
        """)
        wait_ready(hung)
        self.assertEqual(hung.wait(timeout=60), -signal.SIGKILL)
        self.assertEqual([(r.worker_pid, r.scope_id) for r in self.named("kill worker process")], [(hung.pid, "hang")])

    def test_events_are_torch_requests_with_the_request_fields(self):
        deadline = time.time() + 3600
        worker = start_worker("""
            from torch.distributed.elastic import timer
            client = timer.FileTimerClient(os.environ["FIFO"])
            client.acquire("shaped", %r)
            client.release("shaped")
            print("ready", flush=True)
            time.sleep(60)
        """ % deadline)
        self.addCleanup(worker.wait)
        self.addCleanup(worker.kill)
        wait_ready(worker)
        self.wait_for(lambda: self.named("clear timer"))
        (set_request,) = self.named("set timer")
        self.assertIsInstance(set_request, torch_timer.FileTimerRequest)
        self.assertEqual((set_request.worker_pid, set_request.scope_id, set_request.signal),
                         (worker.pid, "shaped", signal.SIGKILL))
        self.assertAlmostEqual(set_request.expiration_time, deadline, delta=0.01)
        self.assertEqual(self.named("clear timer")[0].expiration_time, -1)

    def wait_for(self, predicate, timeout=10):
        until = time.time() + timeout
        while not predicate():
            if time.time() > until:
                self.fail("timed out")
            time.sleep(0.01)


class RegisterClearExpired(Hosted):
    """register_timers, get_expired_timers and clear_timers, as torch's tests call them."""

    def setUp(self):
        super().setUp()
        self.sleeper = subprocess.Popen(["sleep", "60"])  # a process of ours, never signalled here

    def tearDown(self):
        self.sleeper.kill()
        self.sleeper.wait()
        super().tearDown()

    def test_registered_timers_are_reported_expired_by_deadline_and_cleared(self):
        later = time.time() + 3600
        self.server.register_timers([FileTimerRequest(self.sleeper.pid, "a", later, 0),
                                     FileTimerRequest(self.sleeper.pid, "b", later + 10, 0)])
        self.assertEqual(self.server.get_expired_timers(later - 1), {})
        expired = self.server.get_expired_timers(later + 1)
        self.assertEqual([(r.worker_pid, r.scope_id, r.signal) for r in expired[self.sleeper.pid]],
                         [(self.sleeper.pid, "a", 0)])
        self.assertAlmostEqual(expired[self.sleeper.pid][0].expiration_time, later, delta=0.01)
        self.assertEqual(len(self.server.get_expired_timers(later + 11)[self.sleeper.pid]), 2)
        self.server.clear_timers({self.sleeper.pid})
        self.assertEqual(self.server.get_expired_timers(later + 11), {})
        self.assertEqual(len(self.named("clear timer")), 2)
        self.assertIsNone(self.sleeper.poll())

    def test_a_negative_expiration_releases(self):
        later = time.time() + 3600
        self.server.register_timers([FileTimerRequest(self.sleeper.pid, "a", later, 0)])
        self.server.register_timers([FileTimerRequest(self.sleeper.pid, "a", -1, 0)])
        self.assertEqual(self.server.get_expired_timers(later + 1), {})
        self.assertEqual(self.server._request_count, 2)

    def test_a_request_for_no_worker_is_refused_and_kills_nothing(self):
        earlier = time.time() - 1
        self.server.register_timers([FileTimerRequest(0, "group", earlier, signal.SIGKILL),
                                     FileTimerRequest(-1, "everyone", earlier, signal.SIGKILL),
                                     FileTimerRequest(1, "init", earlier, signal.SIGKILL)])
        self.server.run_once()
        self.assertEqual(self.server.get_expired_timers(time.time() + 3600), {})
        self.assertEqual(self.named("kill worker process"), [])

    def test_a_scope_with_a_lone_surrogate_is_registered_read_back_and_released(self):
        later = time.time() + 3600
        self.server.register_timers([FileTimerRequest(self.sleeper.pid, "step-\udcff", later, 0)])
        expired = self.server.get_expired_timers(later + 1)
        self.assertEqual([r.scope_id for r in expired[self.sleeper.pid]], ["step-\udcff"])
        self.server.register_timers([FileTimerRequest(self.sleeper.pid, "step-\udcff", -1, 0)])
        self.assertEqual(self.server.get_expired_timers(later + 1), {})


class Lifecycle(unittest.TestCase):
    def setUp(self):
        os.environ.pop("SHMTIMER_TABLE", None)
        self.dir = tempfile.TemporaryDirectory()
        self.fifo = os.path.join(self.dir.name, "watchdog")

    def tearDown(self):
        os.environ.pop("SHMTIMER_TABLE", None)
        self.dir.cleanup()

    def test_torch_1_13_positional_order_is_accepted(self):
        events = []
        server = ShmTimerServer(self.fifo, 0.1, True, lambda name, request: events.append(name))
        self.assertEqual(server._max_interval, 0.1)
        server.start()
        server.stop()
        self.assertEqual(events, ["watchdog started", "watchdog stopped"])

    def test_torch_2_positional_order_is_accepted(self):
        server = ShmTimerServer(self.fifo, "job-7", 0.25)
        self.assertEqual(server._max_interval, 0.25)
        self.assertEqual(server.table_path, table_path_for("job-7", self.fifo))
        server.stop()

    def test_the_table_follows_the_run_id_and_the_fifo_so_jobs_and_generations_never_share_one(self):
        # torchrun's default run id is "none" for every job; each agent makes a new FIFO.
        self.assertNotEqual(table_path_for("none", "/tmp/watchdog_timer_a"), table_path_for("none", "/tmp/watchdog_timer_b"))
        self.assertNotEqual(table_path_for("job/a", "/tmp/f"), table_path_for("job_a", "/tmp/f"))
        self.assertIn("-none-", table_path_for("none", "/tmp/f"))
        self.assertIn(str(os.getuid()), table_path_for("x", "/tmp/f"))
        self.assertEqual(table_path_for("", "/tmp/a"), table_path_for(None, "/tmp/a"))  # 2.x's empty run_id
        self.assertNotEqual(table_path_for(None, "/tmp/a"), table_path_for(None, "/tmp/b"))
        made_up = ShmTimerServer(self.fifo, "none", 0.1)  # sets SHMTIMER_TABLE for its workers
        self.assertEqual(os.environ["SHMTIMER_TABLE"], made_up.table_path)
        made_up.stop()
        # The next generation's server does not inherit the table its predecessor made up.
        self.assertNotEqual(table_path_for("none", self.fifo + "-next"), made_up.table_path)
        os.environ["SHMTIMER_TABLE"] = "/dev/shm/chosen.table"  # one the user chose is kept
        self.assertEqual(table_path_for("x", "/tmp/f"), "/dev/shm/chosen.table")

    def test_a_made_up_table_lives_in_the_users_private_directory_where_no_one_else_can_take_its_name(self):
        server = ShmTimerServer(self.fifo, "none", 0.1)
        try:
            directory = os.path.dirname(server.table_path)
            self.assertEqual(directory, shmtimer._shmtimer.private_directory())
            st = os.lstat(directory)
            self.assertEqual((stat.S_ISDIR(st.st_mode), st.st_uid, stat.S_IMODE(st.st_mode)), (True, os.geteuid(), 0o700))
        finally:
            server.stop()

    def test_two_agents_with_the_same_run_id_and_fifo_path_get_tables_of_their_own(self):
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # another agent on this host, as torchrun starts one per node
            os.write(write_end, table_path_for("none", "/tmp/watchdog_timer").encode())
            os._exit(0)
        os.close(write_end)
        theirs = os.read(read_end, 4096).decode()
        os.close(read_end)
        os.waitpid(child, 0)
        self.assertNotEqual(theirs, table_path_for("none", "/tmp/watchdog_timer"))

    def test_stop_removes_the_fifo_and_the_made_up_table(self):
        server = ShmTimerServer(self.fifo, "lifecycle-%d" % os.getpid(), 0.1)
        table = server.table_path
        self.assertTrue(os.path.exists(self.fifo))
        self.assertTrue(os.path.exists(table))
        server.start()
        server.stop()
        server.stop()  # idempotent
        self.assertFalse(os.path.exists(self.fifo))
        self.assertFalse(os.path.exists(table))
        self.assertIsInstance(server.get_last_progress_time(), int)

    def test_progress_time_advances_with_rounds(self):
        server = ShmTimerServer(self.fifo, "progress-%d" % os.getpid(), 0.05)
        before = server.get_last_progress_time()
        server.start()
        time.sleep(1.2)
        self.assertGreater(server.get_last_progress_time(), before)
        server.stop()

    def test_a_second_server_on_the_same_table_is_refused_while_the_first_runs(self):
        table = "/dev/shm/shmtimer-twice-%s.table" % SUITE
        self.addCleanup(lambda: os.path.exists(table) and os.unlink(table))
        first = ShmTimerServer(self.fifo, "twice", 0.1, table_path=table)
        with self.assertRaisesRegex(shmtimer.ShmTimerError, r"is already served by a live server \(pid \d+\)"):
            ShmTimerServer(self.fifo + "2", "twice", 0.1, table_path=table)
        first.stop()
        second = ShmTimerServer(self.fifo, "twice", 0.1, table_path=table)  # taken over once stopped
        second.stop()

    def test_two_jobs_with_the_default_run_id_each_get_a_server(self):
        first = ShmTimerServer(self.fifo, "none", 0.1)
        os.environ.pop("SHMTIMER_TABLE")  # the second agent is another process
        second = ShmTimerServer(self.fifo + "2", "none", 0.1)
        self.assertNotEqual(first.table_path, second.table_path)
        first.stop()
        second.stop()

    def test_a_log_event_that_raises_does_not_stop_the_watchdog(self):
        def broken(name, request):
            raise RuntimeError("callback bug")

        server = ShmTimerServer(self.fifo, "broken-%d" % os.getpid(), 0.05, log_event=broken,
                                signal_self_after_reap=False)
        server.start()
        sleeper = subprocess.Popen(["sleep", "60"])
        try:
            server.register_timers([FileTimerRequest(sleeper.pid, "s", time.time() - 1, signal.SIGKILL)])
            self.assertEqual(sleeper.wait(timeout=30), -signal.SIGKILL)
        finally:
            sleeper.kill()
            server.stop()


class Incidents(unittest.TestCase):
    """The hosted server's incident reports and observe-only mode (docs/diagnosis.md),
    switched on by arguments or, for python -m shmtimer.run, by SHMTIMER_* variables."""

    def setUp(self):
        os.environ.pop("SHMTIMER_TABLE", None)
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.reports = os.path.join(self.dir.name, "incidents")
        self.events = []

    def serve(self, **settings):
        server = ShmTimerServer(file_path=os.path.join(self.dir.name, "watchdog"), run_id="incidents-%d" % os.getpid(),
                                max_interval=0.1, log_event=lambda name, request: self.events.append((name, request)),
                                signal_self_after_reap=False, **settings)
        self.addCleanup(server.stop)
        server.start()
        return server

    def hung_worker(self, hang_s=60):
        worker = start_worker("""
            import shmtimer
            client = shmtimer.ShmTimerClient()
            print("ready", flush=True)
            with shmtimer.expires(0.3, scope="hang", client=client):
                time.sleep(%r)
        """ % hang_s)
        wait_ready(worker)
        return worker

    def test_the_kill_event_names_the_incident_report_written_before_it(self):
        self.serve(capture_bound_ms=20000, incident_dir=self.reports)
        worker = self.hung_worker()
        self.assertEqual(worker.wait(timeout=60), -signal.SIGKILL)
        killed = [r for name, r in self.events if name == "kill worker process"]
        self.assertEqual(len(killed), 1)
        self.assertTrue(os.path.isfile(os.path.join(killed[0].incident, "summary.txt")), killed[0].incident)
        with open(os.path.join(killed[0].incident, "summary.txt")) as f:
            self.assertIn("pid %d" % worker.pid, f.read())

    def test_observe_only_from_the_environment_signals_nothing_and_reports_once(self):
        os.environ.update(SHMTIMER_OBSERVE_ONLY="1", SHMTIMER_INCIDENT_DIR=self.reports)
        try:
            self.serve()
        finally:
            del os.environ["SHMTIMER_OBSERVE_ONLY"], os.environ["SHMTIMER_INCIDENT_DIR"]
        worker = self.hung_worker(hang_s=1.5)
        self.assertEqual(worker.wait(timeout=60), 0)
        self.assertEqual([name for name, _ in self.events if name == "kill worker process"], [])
        expired = [r for name, r in self.events if name == "timer expired"]
        self.assertEqual(len(expired), 1)
        self.assertEqual(os.path.dirname(expired[0].incident), self.reports)
        self.assertEqual(len(os.listdir(self.reports)), 1)

    def test_a_bad_soft_signal_is_refused_with_a_clear_error(self):
        with self.assertRaisesRegex(ValueError, "not a signal"):
            self.serve(soft_signal="NOPE")

    def test_realtime_priority_from_the_environment_runs_the_watchdog_thread_sched_fifo(self):
        os.environ["SHMTIMER_REALTIME_PRIORITY"] = "5"
        try:
            self.serve()
        finally:
            del os.environ["SHMTIMER_REALTIME_PRIORITY"]
        deadline = time.monotonic() + 5
        found = None
        while found is None and time.monotonic() < deadline:
            for tid in os.listdir("/proc/self/task"):
                with open("/proc/self/task/%s/comm" % tid) as f:
                    if f.read().strip() != "shmtimer-watch":
                        continue
                with open("/proc/self/task/%s/stat" % tid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()  # from field 3
                found = (int(fields[41 - 3]), int(fields[40 - 3]))  # policy, rt_priority
                if found != (1, 5):
                    found = None  # it may not have taken it yet
            time.sleep(0.01)
        # CI runs as root; without CAP_SYS_NICE the watchdog runs at a normal priority, and
        # this test says so.
        self.assertEqual(found, (1, 5), "the watchdog thread is not SCHED_FIFO 5 (needs CAP_SYS_NICE)")

    def test_a_bad_realtime_priority_is_refused_with_a_clear_error(self):
        for bad in (100, -1, "high"):
            with self.assertRaisesRegex(ValueError, "SHMTIMER_REALTIME_PRIORITY must be 0..99"):
                self.serve(realtime_priority=bad)


if __name__ == "__main__":
    unittest.main()
