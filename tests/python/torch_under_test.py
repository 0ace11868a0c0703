"""The Python and the torch that a suite runs against, as tests/CMakeLists.txt asked.

SHMTIMER_EXPECT_TORCH is "debian" (Debian's python3-torch, under /usr/bin/python3) or a
release ("2.13.0", from the Python Package Index, in the venv that test pip_install made).
A suite that finds no torch, or another one, fails as it imports this: it never skips.
Workers run with the suite's own interpreter (PY), so they see the same torch.
"""
import os
import sys
import uuid

PY = sys.executable
# Names this suite's files with: every suite runs as pid 1 of its own pid namespace, and
# two suites (one module under two torches) may run at once on one /dev/shm.
SUITE = uuid.uuid4().hex[:12]

_expected = os.environ.get("SHMTIMER_EXPECT_TORCH")
if not _expected:
    sys.exit("SHMTIMER_EXPECT_TORCH is not set: run this suite through ctest (tests/CMakeLists.txt)")
try:
    import torch
except ImportError as e:
    sys.exit("this suite runs against torch %s, but %s cannot import torch: %s" % (_expected, PY, e))

VERSION = torch.__version__.split("+")[0]
MAJOR = int(VERSION.split(".")[0])
_from_debian = torch.__file__.startswith("/usr/lib/python3/dist-packages/")
if (_expected == "debian") != _from_debian or (_expected != "debian" and VERSION != _expected):
    sys.exit("this suite runs against torch %s, but %s imports torch %s from %s" %
             (_expected, PY, torch.__version__, torch.__file__))
print("torch under test: %s from %s, Python %s (%s)" % (torch.__version__, os.path.dirname(torch.__file__),
                                                       sys.version.split()[0], PY), file=sys.stderr)
