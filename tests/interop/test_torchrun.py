"""python -m shmtimer.run: real 2-worker torchrun jobs watched by shmtimer, once per torch
(tests/torch_suites.cmake), in a private pid namespace.

Each job has one worker on torch's FileTimerClient (through the FIFO shim) and one on
shmtimer.ShmTimerClient() (through the table). Where torch itself decides the outcome
(torch 2.x's agent signals its own process after a reap, 1.13's restarts or fails the
job), the same job is also run under plain torchrun with torch's own FileTimerServer and
the two outcomes must agree.
"""
import json
import os
import re
import socket
import subprocess
import tempfile
import textwrap
import time
import unittest

from torch_under_test import MAJOR, PY
from shmtimer.torch import torch_server_signals_itself

# Rank 0 uses torch's FileTimerClient on the FIFO the agent was told about, rank 1
# shmtimer's client on the table the agent's server made. Each worker records itself in
# OUT/<generation>-<rank>.json first. The rank named in HANG hangs in its second step of
# generation HANG_GEN (every generation when it is "any"); FAIL_GEN0 makes rank 0 of the
# first generation fail at once; ALL_FIFO puts every rank on torch's client. Every other step takes 50 ms under a 2 s timer; a worker
# that is not killed records "done" once it has outlived its last released deadline.
WORKER = textwrap.dedent("""
    import json, os, sys, time

    rank = int(os.environ["RANK"])
    generation = os.environ["TORCHELASTIC_RESTART_COUNT"]
    me = {"pid": os.getpid(), "table": os.environ.get("SHMTIMER_TABLE"), "run_id": os.environ["TORCHELASTIC_RUN_ID"],
          "fifo": os.environ.get("TORCHELASTIC_TIMER_FILE")}
    record = os.path.join(os.environ["OUT"], "%s-%d.json" % (generation, rank))
    with open(record, "w") as f:
        json.dump(me, f)
    if os.environ.get("FAIL_GEN0") and generation == "0" and rank == 0:
        sys.exit(1)
    from torch.distributed.elastic import timer  # after the record: importing torch takes seconds
    import shmtimer
    if rank == 0 or os.environ.get("ALL_FIFO"):
        timer.configure(timer.FileTimerClient(os.environ["TORCHELASTIC_TIMER_FILE"]))
    else:
        timer.configure(shmtimer.ShmTimerClient())
    hangs = rank == int(os.environ["HANG"]) and os.environ.get("HANG_GEN", "any") in ("any", generation)
    for step in range(3):
        with timer.expires(after=2, scope="step"):
            time.sleep(120 if (hangs and step == 1) else 0.05)
    time.sleep(3)  # alive well past the released deadline
    with open(record, "w") as f:
        json.dump(dict(me, done=True), f)
""")

# The launcher with the agent's health-check server replaced by one that records which
# callback it was given and what that returned, every 0.2 s, in OUT/health.json.
HEALTH_LAUNCHER = textwrap.dedent("""
    import json, os, sys, threading, time
    from torch.distributed.elastic.agent.server import local_elastic_agent as agent
    import shmtimer.run

    class Recording:
        def __init__(self, alive_callback, port, timeout):
            self.callback, self.seen, self.running = alive_callback, [], True
        def start(self):
            def poll():
                while self.running:
                    self.seen.append(self.callback())
                    owner = type(getattr(self.callback, "__self__", None)).__name__
                    with open(os.path.join(os.environ["OUT"], "health.json"), "w") as f:
                        json.dump({"owner": owner, "method": self.callback.__name__, "seen": self.seen}, f)
                    time.sleep(0.2)
            threading.Thread(target=poll, daemon=True).start()
        def stop(self):
            self.running = False

    agent.create_healthcheck_server = Recording
    shmtimer.run.main(sys.argv[1:])
""")


# Plain torchrun, with torch's own FileTimerServer. torch 1.13's torchrun cannot start on
# Python 3.11 at all (it fails parsing its own defaults), nor can Debian 13's torch 2.6
# (built without libuv); shmtimer.run's repairs of those, and nothing else of shmtimer,
# are applied first (each only where its bug shows).
TORCHS_OWN_LAUNCHER = textwrap.dedent("""
    import sys
    from shmtimer.run import repair_torch
    from torch.distributed.run import main
    repair_torch()
    main(sys.argv[1:])
""")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Job:
    """A finished job: exit status, output, and what each worker recorded."""

    def __init__(self, status, output, out_dir):
        self.status, self.output = status, output
        self.workers = {}
        for name in os.listdir(out_dir):
            if name.endswith(".json") and name != "health.json":
                generation, rank = name[:-5].split("-")
                with open(os.path.join(out_dir, name)) as f:
                    self.workers[(int(generation), int(rank))] = json.load(f)

    @property
    def leftovers(self):
        """The tables this job's workers were given that still exist."""
        return sorted({w["table"] for w in self.workers.values() if w["table"] and os.path.exists(w["table"])})

    def signalled(self):
        """Pids that shmtimer's watchdog killed (its log lines, which name the rank and the lateness)."""
        return [int(pid) for pid in re.findall(
            r"signalled pid (\d+) \(rank \d+, [^)]+\) with signal 9: timer 'step' expired "
            r"\(\d+\.\d{3} ms after its deadline\)", self.output)]

    def done(self):
        return sorted(key for key, worker in self.workers.items() if worker.get("done"))


class Torchrun(unittest.TestCase):
    def start_job(self, out, hang, extra_args=(), launcher=("-m", "shmtimer.run"), **env):
        script = os.path.join(out, "worker.py")
        with open(script, "w") as f:
            f.write(WORKER)
        job_env = dict(os.environ, HANG=str(hang), OUT=out, **env)
        for name in ("SHMTIMER_TABLE", "TORCHELASTIC_TIMER_FILE", "SHMTIMER_SIGNAL_SELF_AFTER_REAP"):
            if name not in env:
                job_env.pop(name, None)
        rendezvous = ("--master_port", str(free_port()))
        if "--standalone" in extra_args or "--rdzv_backend" in extra_args:
            rendezvous = ()
        command = [PY, *launcher, "--nnodes", "1", "--nproc_per_node", "2", *rendezvous, *extra_args, script]
        return subprocess.Popen(command, env=job_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def run_job(self, hang, extra_args=("--max_restarts", "0"), **kwargs):
        with tempfile.TemporaryDirectory() as out:
            proc = self.start_job(out, hang, extra_args, **kwargs)
            output = self.finish(proc)
            return Job(proc.returncode, output, out)

    def finish(self, proc):
        """The job's output once it ends; a job still running after 300 s is killed, and
        the test fails with what it printed."""
        try:
            return proc.communicate(timeout=300)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            self.fail("the job did not end within 300 s:\n" + proc.communicate()[0])

    def assert_hung_rank_killed(self, job, hang, generation=0):
        hung = job.workers[(generation, hang)]
        self.assertIn(hung["pid"], job.signalled(), job.output)
        self.assertNotIn((generation, hang), job.done(), job.output)
        self.assertIn("serving the FileTimer protocol on FIFO", job.output)  # shmtimer's watchdog, not torch's

    def assert_ends_as_torch_ends(self, job):
        """An agent whose torch's server signals itself (upstream 2.x) dies of the reap's
        signal; otherwise (1.13, Debian 13's 2.6) it fails the job."""
        if torch_server_signals_itself():
            self.assertEqual(job.status, -9, job.output)
        else:
            self.assertEqual(job.status, 1, job.output)
            self.assertRegex(job.output, r"exitcode\s*:\s*-9", job.output)
        self.assertEqual(job.leftovers, [], "the job's table was left in /dev/shm")

    def test_a_hung_file_timer_client_worker_is_killed_and_the_agent_ends_as_torchs(self):
        job = self.run_job(hang=0)
        self.assert_hung_rank_killed(job, 0)
        self.assert_ends_as_torch_ends(job)

    def test_a_hung_shm_timer_client_worker_is_killed_and_the_agent_ends_as_torchs(self):
        job = self.run_job(hang=1)
        self.assert_hung_rank_killed(job, 1)
        self.assert_ends_as_torch_ends(job)

    def test_the_job_ends_exactly_as_under_torchs_own_watchdog(self):
        ours = self.run_job(hang=0, extra_args=("--max_restarts", "1"), ALL_FIFO="1")
        theirs = self.run_job(hang=0, extra_args=("--max_restarts", "1"), ALL_FIFO="1",
                              launcher=("-c", TORCHS_OWN_LAUNCHER), TORCHELASTIC_ENABLE_FILE_TIMER="1")
        self.assertNotIn("serving the FileTimer protocol", theirs.output)
        self.assertEqual(ours.status, theirs.status, ours.output + theirs.output)
        # The same generations ran, and in each the same ranks finished.
        self.assertEqual(sorted(ours.workers), sorted(theirs.workers), ours.output + theirs.output)
        self.assertEqual(ours.done(), theirs.done(), ours.output + theirs.output)
        self.assertNotIn((0, 0), ours.done())

    def test_a_generation_restarted_after_a_failure_is_watched(self):
        # Generation 0 fails (rank 0 exits 1); the agent restarts the workers under a new
        # server, and generation 1's hung rank is killed by it.
        job = self.run_job(hang=1, extra_args=("--max_restarts", "1"), FAIL_GEN0="1", HANG_GEN="1")
        self.assertIn((1, 1), job.workers, job.output)
        self.assert_hung_rank_killed(job, 1, generation=1)
        self.assertNotEqual(job.workers[(0, 1)]["fifo"], job.workers[(1, 1)]["fifo"])
        self.assertNotEqual(job.workers[(0, 1)]["table"], job.workers[(1, 1)]["table"])
        self.assert_ends_as_torch_ends(job)

    def test_with_the_self_signal_off_every_generation_is_watched_and_the_job_fails_after_its_last_restart(self):
        # torch 1.13's behaviour, and on 2.x SHMTIMER_SIGNAL_SELF_AFTER_REAP=0: the agent
        # survives each reap and restarts the workers.
        job = self.run_job(hang=1, extra_args=("--max_restarts", "1"), SHMTIMER_SIGNAL_SELF_AFTER_REAP="0")
        self.assertEqual(job.status, 1, job.output)
        for generation in (0, 1):
            self.assert_hung_rank_killed(job, 1, generation)
        self.assertEqual(len(job.signalled()), 2, job.output)
        self.assertEqual(job.leftovers, [], "the job's table was left in /dev/shm")

    def test_a_job_with_no_hang_succeeds_and_both_workers_find_the_watchdog(self):
        job = self.run_job(hang=-1)
        self.assertEqual(job.status, 0, job.output)
        self.assertEqual(job.done(), [(0, 0), (0, 1)], job.output)
        for rank in (0, 1):
            worker = job.workers[(0, rank)]
            self.assertTrue(worker["table"].startswith("/dev/shm/shmtimer-"), worker)
            self.assertIn("watchdog_timer_", worker["fifo"])
            # the launcher says where the table is, for timer-dump
            self.assertIn("shmtimer: watching this job's workers; table %s " % worker["table"], job.output)

    def test_two_jobs_with_the_default_run_id_run_side_by_side(self):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            jobs = [self.start_job(out, hang=-1, extra_args=("--max_restarts", "0")) for out in (a, b)]
            outputs = [self.finish(proc) for proc in jobs]
            finished = [Job(proc.returncode, output, out) for proc, output, out in zip(jobs, outputs, (a, b))]
        for job in finished:
            self.assertEqual(job.status, 0, job.output)
            self.assertEqual(job.done(), [(0, 0), (0, 1)], job.output)
            self.assertEqual(job.workers[(0, 0)]["run_id"], "none")
        self.assertNotEqual(finished[0].workers[(0, 1)]["table"], finished[1].workers[(0, 1)]["table"])

    def test_a_standalone_job_is_watched(self):
        job = self.run_job(hang=1, extra_args=("--standalone", "--max_restarts", "0"))
        self.assertNotEqual(job.workers[(0, 1)]["run_id"], "none")  # --standalone makes one up
        self.assert_hung_rank_killed(job, 1)
        self.assert_ends_as_torch_ends(job)

    def test_a_job_with_the_c10d_rendezvous_is_watched(self):
        job = self.run_job(hang=0, extra_args=("--rdzv_backend", "c10d", "--rdzv_endpoint",
                                               "127.0.0.1:%d" % free_port(), "--rdzv_id", "c10d-job",
                                               "--max_restarts", "0"))
        self.assertEqual(job.workers[(0, 0)]["run_id"], "c10d-job")
        if MAJOR >= 2:  # torch 1.13's agent gives its server no run id
            self.assertIn("c10d-job", job.workers[(0, 1)]["table"])
        self.assert_hung_rank_killed(job, 0)
        self.assert_ends_as_torch_ends(job)

    def test_the_agents_health_check_reads_the_watchdogs_progress_time(self):
        from torch.distributed.elastic.agent.server import local_elastic_agent as agent
        if MAJOR < 2:  # torch 1.13's agent has no health check to feed
            self.assertFalse(hasattr(agent, "create_healthcheck_server"))
            return
        with tempfile.TemporaryDirectory() as out:
            proc = self.start_job(out, hang=-1, extra_args=("--max_restarts", "0"),
                                  launcher=("-c", HEALTH_LAUNCHER), TORCHELASTIC_HEALTH_CHECK_PORT=str(free_port()))
            output = self.finish(proc)
            self.assertEqual(proc.returncode, 0, output)
            with open(os.path.join(out, "health.json")) as f:
                health = json.load(f)
        self.assertEqual((health["owner"], health["method"]), ("ShmTimerServer", "get_last_progress_time"), health)
        seen = health["seen"]
        self.assertTrue(all(isinstance(t, int) for t in seen), seen)
        self.assertGreater(max(seen), min(seen), seen)  # it advanced while the job ran (over 3 s)
        self.assertLessEqual(max(seen), time.time())

    def test_redirects_and_tee_work(self):
        # torch 1.13 on Python 3.11 needs shmtimer.run's repair of Std.from_str.
        job = self.run_job(hang=-1, extra_args=("--redirects", "3", "--tee", "3"))
        self.assertEqual(job.status, 0, job.output)
        self.assertEqual(job.done(), [(0, 0), (0, 1)], job.output)



# A collective hang: rank 0 enters an all_reduce that rank 1 never joins (it is busy
# elsewhere), so both hang, and both timers expire.
COLLECTIVE_WORKER = textwrap.dedent("""
    import os, time
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    if os.environ.get("FIFO_CLIENT"):  # torch's own client: the script never uses shmtimer
        from torch.distributed.elastic import timer
        client = timer.FileTimerClient(os.environ["TORCHELASTIC_TIMER_FILE"])
    else:
        import shmtimer
        client = shmtimer.ShmTimerClient()

    def other_work():
        time.sleep(300)

    client.acquire("step", time.time() + 3)
    if dist.get_rank() == 0:
        dist.all_reduce(torch.ones(4))
    else:
        other_work()
""")


class TorchrunIncident(unittest.TestCase):
    """Before the kill, shmtimerd captures every rank of the hung job into one incident
    report, whose summary shows rank 0 in all_reduce and names rank 1 as the rank that
    differs (docs/diagnosis.md shows this test's report)."""

    def test_a_collective_hang_gives_one_report_that_names_the_rank_that_skipped_it(self):
        with tempfile.TemporaryDirectory() as work:
            table, incidents = os.path.join(work, "table"), os.path.join(work, "incidents")
            server = subprocess.Popen(
                [os.environ["SHMTIMERD"], "--table", table, "--capture-bound-ms", "30000", "--incident-dir", incidents,
                 "--py-spy", os.environ["SHMTIMER_TEST_PY_SPY"]],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                deadline = time.time() + 30
                while not os.path.exists(table) and time.time() < deadline:
                    time.sleep(0.05)
                script = os.path.join(work, "worker.py")
                with open(script, "w") as f:
                    f.write(COLLECTIVE_WORKER)
                env = dict(os.environ, SHMTIMER_TABLE=table)
                env.pop("TORCHELASTIC_TIMER_FILE", None)
                env.pop("TORCHELASTIC_ENABLE_FILE_TIMER", None)
                job = subprocess.run(
                    [PY, "-c", TORCHS_OWN_LAUNCHER, "--nnodes", "1", "--nproc_per_node", "2", "--master_port",
                     str(free_port()), "--max_restarts", "0", script],
                    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
            finally:
                server.terminate()
                log = server.communicate(timeout=30)[0]
            self.assertNotEqual(job.returncode, 0, job.stdout)
            reports = sorted(os.listdir(incidents)) if os.path.isdir(incidents) else []
            self.assertEqual(len(reports), 1, log + job.stdout)
            with open(os.path.join(incidents, reports[0], "summary.txt")) as f:
                summary = f.read()
            print(summary)
            with open(os.path.join(incidents, reports[0], "event.json")) as f:
                event = json.load(f)
            self.assertEqual(sorted(e["labels"].get("rank") for e in event["expired"]), ["0", "1"], log + summary)
            self.assertRegex(summary, r"(?m)^rank 0 .* all_reduce \(", log + summary)
            self.assertRegex(summary, r"(?m)^rank 1 .* other_work \(.*<- differs$", log + summary)
            self.assertRegex(summary, r"(?m)^differs: rank 1 \(pid \d+\)", log + summary)
            self.assertIn("incident=", log)  # the kill's event names the report

    def test_under_shmtimer_run_fifo_workers_dump_their_own_stacks(self):
        """python -m shmtimer.run with capture switched on by its environment: workers on
        torch's FileTimerClient, whose script never uses shmtimer, registered their
        faulthandler dumps at start, and with py-spy off the report has their frames."""
        with tempfile.TemporaryDirectory() as work:
            incidents = os.path.join(work, "incidents")
            script = os.path.join(work, "worker.py")
            with open(script, "w") as f:
                f.write(COLLECTIVE_WORKER)
            env = dict(os.environ, SHMTIMER_CAPTURE_BOUND_MS="30000", SHMTIMER_INCIDENT_DIR=incidents, SHMTIMER_PY_SPY="",
                       FIFO_CLIENT="1")
            for name in ("SHMTIMER_TABLE", "TORCHELASTIC_TIMER_FILE"):
                env.pop(name, None)
            job = subprocess.run(
                [PY, "-m", "shmtimer.run", "--nnodes", "1", "--nproc_per_node", "2", "--master_port", str(free_port()),
                 "--max_restarts", "0", script],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
            reports = sorted(os.listdir(incidents)) if os.path.isdir(incidents) else []
            self.assertEqual(len(reports), 1, job.stdout)
            report = os.path.join(incidents, reports[0])
            with open(os.path.join(report, "summary.txt")) as f:
                summary = f.read()
            dumps = [name for name in os.listdir(report) if name.endswith(".faulthandler.txt")]
            self.assertEqual(len(dumps), 2, job.stdout + summary)
            self.assertRegex(summary, r"(?m)^rank 0 .* all_reduce \(", job.stdout + summary)
            self.assertRegex(summary, r"(?m)^rank 1 .* other_work \(.*<- differs$", job.stdout + summary)


if __name__ == "__main__":
    unittest.main()
