"""The console scripts `shmtimerd` and `timer-dump` of a pip-installed shmtimer: each
runs the program of that name built with the package (shmtimer/bin)."""
import os
import sys
from pathlib import Path

_BIN = Path(__file__).resolve().parent / "bin"


def _run(name):
    program = _BIN / name
    if not program.exists():
        sys.exit("%s: not installed with this shmtimer package (%s is missing); build the project with CMake "
                 "instead" % (name, program))
    os.execv(program, [name] + sys.argv[1:])


def shmtimerd():
    _run("shmtimerd")


def timer_dump():
    _run("timer-dump")
