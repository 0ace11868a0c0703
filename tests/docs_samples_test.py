"""The documentation's samples match what the programs print today, and
docs/table-format.md's layout tables match the code's offset asserts.

Runs the demo (as `./dev.sh demo` does: shmtimerd on a fresh table, then shmtimer-demo)
and timer-dump on a served table with three timers, and compares each with the README's
sample line by line, after reducing both to their shape: paths, numbers and runs of
spaces are what may differ between runs, so they are replaced with placeholders; every
word, label, column title and line must be the same. Environment: SHMTIMERD, DEMO,
TIMER_DUMP, WORKER (built from tests/interop/fifo_worker.cpp), README.
"""
import os
import re
import signal
import subprocess
import tempfile
import time
import unittest

SHMTIMERD, DEMO, TIMER_DUMP, WORKER, README = (
    os.environ[k] for k in ("SHMTIMERD", "DEMO", "TIMER_DUMP", "WORKER", "README"))
SERVER_MD = os.path.join(os.path.dirname(README), "docs", "server.md")


def shape(line):
    line = re.sub(r"/\S+", "PATH", line)
    line = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", "TIME", line)
    # A duration as the formats print it: 249.3ms, 1.196s, 4m09s, 2h05m, -250.0ms.
    line = re.sub(r"-?(\d+(\.\d+)?(ms|s)|\d+m\d\ds|\d+h\d\dm|\d+d\d\dh)\b", "DURATION", line)
    line = re.sub(r"\d+(\.\d+)?", "N", line)
    return re.sub(r"\s+", " ", line).strip()


def readme_block(after, path=README):
    """The first fenced block after the line that contains `after`."""
    with open(path) as f:
        text = f.read()
    start = text.index("```", text.index(after)) + 3
    start = text.index("\n", start) + 1
    return text[start:text.index("```", start)].rstrip("\n").split("\n")


class Server:
    def __init__(self, table):
        # No dead-owner sweep during a test: the samples show the slots of workers that exited.
        self.proc = subprocess.Popen([SHMTIMERD, "--table", table, "--capacity", "4096", "--sweep-interval-ms",
                                      "3600000"], stderr=subprocess.DEVNULL)
        for _ in range(200):
            if os.path.exists(table) and subprocess.run([TIMER_DUMP, "--table", table, "--check"],
                                                        stdout=subprocess.DEVNULL).returncode == 0:
                return
            time.sleep(0.05)
        raise AssertionError("shmtimerd did not come up")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)


class ServerUsage(unittest.TestCase):
    def test_server_md_usage_names_every_flag(self):
        usage = " ".join(readme_block("## shmtimerd", SERVER_MD))
        help_text = subprocess.run([SHMTIMERD, "--help"], capture_output=True, text=True).stdout
        flags = sorted(set(re.findall(r"^\s+(?:-\w,)?(--[a-z-]+)", help_text, re.M)))
        self.assertGreater(len(flags), 10, help_text)
        missing = [f for f in flags if f"[{f}" not in usage and f"{f}]" not in usage and f"{f} " not in usage]
        self.assertEqual(missing, [], "docs/server.md's usage line lacks these flags")


class ReadmeSamples(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="shmtimer-readme-", dir="/dev/shm")
        self.table = os.path.join(self.dir.name, "table")
        self.server = Server(self.table)

    def tearDown(self):
        self.server.stop()
        self.dir.cleanup()

    def test_demo_output_matches_the_readme_sample(self):
        out = subprocess.run([DEMO, "--table", self.table], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertEqual([shape(l) for l in readme_block("Sample demo output")],
                         [shape(l) for l in out.stdout.rstrip("\n").split("\n")])

    def test_timer_dump_output_matches_the_readme_sample(self):
        # The README's three timers: two SIGKILL, one SIGTERM, all armed by table clients.
        sample = readme_block("## Inspecting a table: timer-dump")
        self.assertEqual(sample[0], "$ timer-dump")
        workers = [subprocess.Popen([WORKER, "--table", self.table, "--scope", scope, "--timeout", str(seconds),
                                     "--signal", str(sig), "--work", "600"])
                   for scope, seconds, sig in (("ckpt/save", 20, 9), ("train/step-4812", 30, 9),
                                               ("data/loader#3", 250, 15))]
        try:
            for _ in range(200):
                out = subprocess.run([TIMER_DUMP, "--table", self.table], capture_output=True, text=True)
                if "3 live" in out.stdout:
                    break
                time.sleep(0.05)
            self.assertEqual([shape(l) for l in sample[1:]], [shape(l) for l in out.stdout.rstrip("\n").split("\n")])
        finally:
            for w in workers:
                w.kill()
                w.wait()


class TableFormatPage(unittest.TestCase):
    """docs/table-format.md's offset tables and version are a second copy of the layout:
    they must say what include/shmtimer/table_layout.hpp's static_asserts say."""
    ROOT = os.path.dirname(README)

    def read(self, path):
        with open(os.path.join(self.ROOT, path), encoding="utf-8") as f:
            return f.read()

    def code_offsets(self, struct):
        layout = self.read("include/shmtimer/table_layout.hpp")
        return {field: int(offset) for field, offset in
                re.findall(rf"static_assert\(offsetof\({struct}, (\w+)\) == (\d+)\);", layout)}

    def page_offsets(self, heading):
        page = self.read("docs/table-format.md")
        section = page[page.index(heading):]
        section = section[:section.index("\n## ", 1)] if "\n## " in section[1:] else section
        rows = re.findall(r"^\| (\d+) \| \d+ \| `?(\w+)(?:\[\d+\])?`? \|", section, re.M)
        return {field: int(offset) for offset, field in rows}

    def check(self, struct, heading):
        code, page = self.code_offsets(struct), self.page_offsets(heading)
        self.assertGreater(len(code), 8, f"no offsetof asserts found for {struct}")
        if "reserved" not in code:
            page.pop("reserved", None)  # padding the struct does not name
        self.assertEqual(page, code, f"docs/table-format.md's '{heading}' table disagrees with table_layout.hpp")

    def test_the_header_table_gives_every_field_at_its_asserted_offset(self):
        self.check("TableHeader", "## Header")

    def test_the_slot_table_gives_every_field_at_its_asserted_offset(self):
        self.check("Slot", "## Slot")

    def test_the_page_states_the_version_the_code_writes(self):
        layout = self.read("include/shmtimer/table_layout.hpp")
        major, minor = (re.search(rf"kVersion{part} = (\d+);", layout).group(1) for part in ("Major", "Minor"))
        page = self.read("docs/table-format.md")
        self.assertIn(f"# Table format, version {major}.{minor}\n", page)
        self.assertRegex(page, rf"\| 8 \| 2 \| `version_major` \| creator \| {major}\b")
        self.assertRegex(page, rf"\| 10 \| 2 \| `version_minor` \| creator \| {minor}\b")


if __name__ == "__main__":
    unittest.main()
