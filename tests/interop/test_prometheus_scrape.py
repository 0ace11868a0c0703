"""shmtimerd's /metrics scraped by a real Prometheus server (Debian's `prometheus`).

The test starts shmtimerd with --metrics-address on loopback and a Prometheus whose only
scrape target it is, makes state through the FIFO protocol (three armed timers, then a
hung process reaped), and asks Prometheus's HTTP API for it. It runs in a private pid
namespace (see tests/CMakeLists.txt). Paths come from the environment: SHMTIMERD and
PROMETHEUS. Without a prometheus binary it fails (./dev.sh installs Debian's).
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

SHMTIMERD = os.environ["SHMTIMERD"]
PROMETHEUS = os.environ.get("PROMETHEUS", "")
if not PROMETHEUS or not os.access(PROMETHEUS, os.X_OK):
    sys.exit("no prometheus binary (PROMETHEUS=%r): install Debian's prometheus" % PROMETHEUS)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def acquire_line(pid, scope, after_s):
    return json.dumps({"version": 1, "pid": pid, "scope_id": scope,
                       "expiration_time": time.time() + after_s, "signal": 9}) + "\n"


class PrometheusScrapesShmtimerd(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="shmtimer-prom-")
        self.table = os.path.join(self.dir.name, "table")
        self.fifo = os.path.join(self.dir.name, "fifo")
        self.procs = []
        self.daemon_log = open(os.path.join(self.dir.name, "shmtimerd.log"), "w+")
        daemon = subprocess.Popen([SHMTIMERD, "--table", self.table, "--fifo", self.fifo,
                                   "--metrics-address", "127.0.0.1:0"], stderr=self.daemon_log)
        self.procs.append(daemon)
        self.metrics_port = int(wait_for(self.metrics_port_in_log, 20, "shmtimerd's metrics address"))

        self.prom_port = free_port()
        config = os.path.join(self.dir.name, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: shmtimerd\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{self.metrics_port}']\n")
        self.prom_log = open(os.path.join(self.dir.name, "prometheus.log"), "w+")
        self.procs.append(subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={self.dir.name}/data",
             f"--web.listen-address=127.0.0.1:{self.prom_port}", "--log.level=warn"],
            stdout=self.prom_log, stderr=self.prom_log))

    def tearDown(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.daemon_log.close()
        self.prom_log.close()
        self.dir.cleanup()

    def metrics_port_in_log(self):
        self.daemon_log.seek(0)
        match = re.search(r"serving metrics on http://127\.0\.0\.1:(\d+)/metrics", self.daemon_log.read())
        return match and match.group(1)

    def query(self, promql):
        """The value of an instant query's single sample, or None (no data yet, or not up)."""
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.load(response)
        except OSError:
            return None
        result = body.get("data", {}).get("result", [])
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def sleeper(self):
        proc = subprocess.Popen(["sleep", "120"])
        self.procs.append(proc)
        return proc

    def write_fifo(self, text):
        fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def test_prometheus_sees_three_armed_timers_then_one_reap(self):
        wait_for(lambda: self.query('up{job="shmtimerd"}') == 1, 60, "Prometheus to scrape shmtimerd")
        sleepers = [self.sleeper() for _ in range(3)]
        self.write_fifo("".join(acquire_line(p.pid, f"step-{i}", 600) for i, p in enumerate(sleepers)))
        wait_for(lambda: self.query("shmtimer_live_timers") == 3, 30, "shmtimer_live_timers == 3 in Prometheus")
        self.assertEqual(self.query("shmtimer_reaps_total"), 0)

        hung = self.sleeper()
        self.write_fifo(acquire_line(hung.pid, "hung", 0.2))
        self.assertEqual(hung.wait(timeout=30), -signal.SIGKILL)
        wait_for(lambda: self.query("shmtimer_reaps_total") == 1, 30, "shmtimer_reaps_total == 1 in Prometheus")
        self.assertEqual(self.query("shmtimer_kill_lateness_seconds_count"), 1)
        self.assertEqual(self.query("shmtimer_live_timers"), 3)
        # A histogram Prometheus can compute with: the kill's lateness is under 10 s.
        self.assertIsNotNone(self.query("histogram_quantile(0.5, shmtimer_kill_lateness_seconds_bucket)"))
        self.assertEqual(self.query('shmtimer_kill_lateness_seconds_bucket{le="10"}'), 1)


if __name__ == "__main__":
    unittest.main()
