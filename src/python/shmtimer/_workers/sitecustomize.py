"""Run at the start of every Python worker of a job launched by ``python -m shmtimer.run``
(its directory is put first on the workers' PYTHONPATH): registers the worker's
cooperative stack dump (shmtimer._stacks) for the job's table, so that the watchdog can
ask any worker for its stacks, those on torch's FileTimerClient too. Then the
sitecustomize this one stands in front of (the distribution's, the user's) runs as it
would have."""
import importlib
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
try:
    if os.environ.get("SHMTIMER_TABLE"):
        # _stacks.py alone, by its path: importing the package would import torch (and the
        # extension) into every Python process the workers start.
        import importlib.util

        spec = importlib.util.spec_from_file_location("_shmtimer_stacks", os.path.join(_here, "..", "_stacks.py"))
        _stacks = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_stacks)
        _stacks.register(os.environ["SHMTIMER_TABLE"])
except Exception:  # noqa: BLE001 - a help, never a reason for a worker not to start
    pass
finally:
    # The next sitecustomize on the path, as if this one were not there.
    del sys.modules[__name__]
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    try:
        importlib.import_module("sitecustomize")
    except ImportError:
        pass
    finally:
        sys.path[:] = saved
