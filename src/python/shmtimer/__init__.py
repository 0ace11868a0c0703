"""shmtimer for Python: PyTorch's watchdog timer client, on a shared-memory table.

Two lines switch a torch training script from PyTorch's FIFO client to this one::

    from torch.distributed.elastic import timer
    import shmtimer
    timer.configure(shmtimer.ShmTimerClient())      # was: timer.FileTimerClient(path)
    with timer.expires(after=60):
        step()

Without torch, ``shmtimer.expires(after, scope=None)`` is the same context manager.
A running ``shmtimerd`` on the same table does the reaping.
"""
import signal as _signal
import sys as _sys

from . import _shmtimer
from ._shmtimer import (  # noqa: F401  (re-exported)
    NotATableError,
    ScopeTooLongError,
    ShmTimerError,
    TableFullError,
    TableMissingError,
    UnsafeTableError,
    VersionMismatchError,
    default_table_path,
)

__all__ = [
    "ShmTimerClient", "expires", "configure", "timers", "header", "default_table_path",
    "ShmTimerError", "TableMissingError", "NotATableError", "VersionMismatchError",
    "UnsafeTableError", "TableFullError", "ScopeTooLongError",
]

try:  # With torch, the client is a torch TimerClient, so timer.configure() accepts it.
    from torch.distributed.elastic.timer.api import TimerClient as _TimerClientBase
except ImportError:  # pragma: no cover - depends on the environment
    _TimerClientBase = object


class ShmTimerClient(_TimerClientBase):
    """A timer client that writes the shared-memory table directly.

    ``table_path`` defaults to ``$SHMTIMER_TABLE``, then to shmtimerd's default.
    ``signal`` is sent when a timer of this process expires (<= 0: never kill).
    """

    def __init__(self, table_path=None, signal=_signal.SIGKILL):
        if _TimerClientBase is not object:
            super().__init__()
        self._client = _shmtimer.Client(table_path or default_table_path(), int(signal))
        # Bound C++ methods stored on the instance: one call from Python to C++ per
        # acquire or release, with no Python frame in between.
        self.acquire = self._client.acquire
        self.release = self._client.release

    # The class-level methods exist for torch's abstract base class and for help();
    # instances use the bound C++ methods set above.
    def acquire(self, scope_id, expiration_time):  # noqa: F811 (shadowed per instance)
        """Arms (this process, scope_id) to expire at the wall-clock ``expiration_time``."""
        self._client.acquire(scope_id, expiration_time)

    def release(self, scope_id):  # noqa: F811
        """Disarms (this process, scope_id); an unknown scope is a no-op."""
        self._client.release(scope_id)

    @property
    def table_path(self):
        return self._client.table_path

    @property
    def signal(self):
        return self._client.signal


_configured = None


def configure(client):
    """Sets the client that ``expires`` uses when it is given none."""
    global _configured
    _configured = client


def _client_for(client):
    global _configured
    if client is not None:
        return client
    if _configured is None:
        _configured = ShmTimerClient()
    return _configured


class expires:  # noqa: N801 (named like the reference's function)
    """``with expires(after=seconds, scope=None):`` arms a timer for the block.

    The default scope is the caller's ``"<file>#<line>"``, so a recursive use of the same
    line re-acquires the same timer, as in the reference.
    """

    __slots__ = ("_client", "_scope", "_after")

    def __init__(self, after, scope=None, client=None):
        if scope is None:
            frame = _sys._getframe(1)
            scope = "%s#%d" % (frame.f_code.co_filename, frame.f_lineno)
        self._client = _client_for(client)
        self._scope = scope
        self._after = after

    def __enter__(self):
        inner = getattr(self._client, "_client", None)
        if inner is not None:
            inner.acquire_after(self._scope, self._after)
        else:
            import time
            self._client.acquire(self._scope, time.time() + self._after)
        return self

    def __exit__(self, *exc):
        self._client.release(self._scope)
        return False


def timers(table_path=None, all=False):  # noqa: A002 (mirrors timer-dump --all)
    """The table's live timers as dicts, with timer-dump --json's row field names."""
    return _shmtimer.read_timers(table_path or default_table_path(), all)


def header(table_path=None):
    """The table's header: version, capacity, server liveness, counters."""
    return _shmtimer.read_header(table_path or default_table_path())
