"""python -m shmtimer.run: real 2-worker torchrun jobs (Debian's torch), watched by shmtimer.

Each job has one worker on torch's FileTimerClient (through the FIFO shim) and one on
shmtimer.ShmTimerClient() (through the table); one of them hangs under timer.expires.
Run in a private pid namespace (tests/CMakeLists.txt), with the build tree's package
first on PYTHONPATH. Skipped (exit 77 from the runner) without torch.
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

from torch_under_test import MAJOR, PY

# Rank 0 uses torch's FileTimerClient on the FIFO the agent was told about, rank 1
# shmtimer's client on the table the agent's server made. The rank named in HANG hangs
# in its second step; every other step takes 50 ms under a 2 s timer. A worker that is
# not killed writes "<rank> done" to its file once it has outlived its last deadline.
WORKER = textwrap.dedent("""
    import os, sys, time
    from torch.distributed.elastic import timer
    import shmtimer

    rank = int(os.environ["RANK"])
    if rank == 0:
        timer.configure(timer.FileTimerClient(os.environ["TORCHELASTIC_TIMER_FILE"]))
    else:
        timer.configure(shmtimer.ShmTimerClient())
    hang = int(os.environ["HANG"])
    for step in range(3):
        with timer.expires(after=2, scope="step"):
            time.sleep(120 if (rank == hang and step == 1) else 0.05)
    time.sleep(3)  # alive well past the released deadline
    with open(os.path.join(os.environ["OUT"], str(rank)), "w") as out:
        out.write("%d done %s %s" % (rank, os.environ.get("SHMTIMER_TABLE"), os.environ.get("TORCHELASTIC_TIMER_FILE")))
""")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Torchrun(unittest.TestCase):
    def run_job(self, hang, extra_args=()):
        """Runs the job; returns (exit status, seconds taken, output, {rank: done line})."""
        with tempfile.TemporaryDirectory() as out:
            script = os.path.join(out, "worker.py")
            with open(script, "w") as f:
                f.write(WORKER)
            env = dict(os.environ, HANG=str(hang), OUT=out)
            env.pop("SHMTIMER_TABLE", None)
            env.pop("TORCHELASTIC_TIMER_FILE", None)
            command = [PY, "-m", "shmtimer.run", "--nnodes", "1", "--nproc_per_node", "2", "--max_restarts", "0",
                       "--master_port", str(free_port()), *extra_args, script]
            started = time.monotonic()
            job = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 timeout=300)
            took = time.monotonic() - started
            done = {}
            for name in os.listdir(out):
                if name.isdigit():
                    with open(os.path.join(out, name)) as f:
                        done[int(name)] = f.read()
            leftovers = [p for p in os.listdir("/dev/shm") if p.startswith("shmtimer-%d-" % os.getuid())]
            return job.returncode, took, job.stdout, done, leftovers

    def assert_hung_rank_killed(self, hang):
        status, took, output, done, leftovers = self.run_job(hang)
        self.assertNotEqual(status, 0, output)  # --max_restarts 0: the job fails, as torch's would
        self.assertLess(took, 100, output)  # the hang was 120 s: the watchdog ended it
        self.assertRegex(output, r"rank\s*:\s*%d[\s\S]*exitcode\s*:\s*-9" % hang, output)
        self.assertNotIn(hang, done)
        self.assertIn("serving the FileTimer protocol on FIFO", output)  # shmtimer's watchdog, not torch's
        self.assertEqual(leftovers, [], "the job's table was left in /dev/shm")

    def test_a_hung_file_timer_client_worker_is_killed_and_the_job_fails(self):
        self.assert_hung_rank_killed(0)

    def test_a_hung_shm_timer_client_worker_is_killed_and_the_job_fails(self):
        self.assert_hung_rank_killed(1)

    def test_a_restarted_job_is_watched_again_and_fails_after_its_last_restart(self):
        # --max_restarts 1: the agent stops the server and hosts a new one for the second
        # generation of workers, whose hung worker is killed too.
        status, took, output, done, leftovers = self.run_job(hang=1, extra_args=("--max_restarts", "1"))
        self.assertNotEqual(status, 0, output)
        self.assertLess(took, 150, output)
        self.assertEqual(len(re.findall(r"signalled pid \d+ with signal 9: timer 'step' expired", output)), 2, output)
        self.assertEqual(leftovers, [], "the job's table was left in /dev/shm")

    def test_a_job_with_no_hang_succeeds_and_both_workers_find_the_watchdog(self):
        status, _, output, done, _ = self.run_job(hang=-1)
        self.assertEqual(status, 0, output)
        self.assertEqual(sorted(done), [0, 1], output)
        for rank in (0, 1):
            _, _, table, fifo = done[rank].split(" ")
            self.assertTrue(table.startswith("/dev/shm/shmtimer-"), done[rank])
            self.assertIn("watchdog_timer_", fifo)

    def test_redirects_and_tee_work_on_python_3_11_with_torch_1_13(self):
        status, _, output, done, _ = self.run_job(hang=-1, extra_args=("--redirects", "3", "--tee", "3"))
        self.assertEqual(status, 0, output)
        self.assertEqual(sorted(done), [0, 1], output)


if __name__ == "__main__":
    unittest.main()
