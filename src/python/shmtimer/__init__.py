"""shmtimer for Python: PyTorch's watchdog timer client, on a shared-memory table.

Two lines switch a torch training script from PyTorch's FIFO client to this one::

    from torch.distributed.elastic import timer
    import shmtimer
    timer.configure(shmtimer.ShmTimerClient())      # was: timer.FileTimerClient(path)
    with timer.expires(after=60):
        step()

``shmtimer.expires(after, scope=None, client=None)`` is the same context manager, with or
without torch: it uses ``client``, else the one given to ``shmtimer.configure()``, else the
one given to torch's ``timer.configure()``, and raises RuntimeError when there is none.
A running ``shmtimerd`` on the same table does the reaping.
"""
import signal as _signal
import sys as _sys

from . import _shmtimer, _stacks
from ._shmtimer import (  # noqa: F401  (re-exported)
    NoServerError,
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
    "ShmTimerClient", "Timer", "expires", "configure", "timers", "header", "default_table_path",
    "ShmTimerError", "TableMissingError", "NotATableError", "VersionMismatchError",
    "UnsafeTableError", "TableFullError", "ScopeTooLongError", "NoServerError",
]

try:  # With torch, the client is a torch TimerClient, so timer.configure() accepts it.
    from torch.distributed.elastic.timer.api import TimerClient as _TimerClientBase
except ImportError:  # pragma: no cover - depends on the environment
    _TimerClientBase = object


_keep_mapped = {}  # table path -> the first _shmtimer.Client of it, never released


class ShmTimerClient(_TimerClientBase):
    """A timer client that writes the shared-memory table directly.

    ``table_path`` defaults to ``$SHMTIMER_TABLE``, then to shmtimerd's default.
    ``signal`` is sent when a timer of this process expires (<= 0: never kill).
    ``require_server``: an acquire raises :class:`NoServerError` while no live server
    holds the table, rather than arm a timer nobody enforces; ``False`` arms regardless.
    ``recycle_idle_slots``: a released scope keeps its slot (so acquiring it again costs
    no claim) until the process holds this many; then its idle slots are given back,
    oldest first, so a script that makes a new scope every step (``f"step-{i}"``) holds
    a bounded number, as torch's server forgets released timers. 0: never.

    As with torch's ``FileTimerClient``, making the client never fails for want of a
    server: a table that cannot be opened yet is opened at the first use, and until it
    can be (missing, not a table, another version, unsafe, no live server) every use raises a
    :class:`ShmTimerError` that is also a ``BrokenPipeError``, the error torch's client
    raises, with what to run in its message.
    """

    def __init__(self, table_path=None, signal=_signal.SIGKILL, require_server=True, recycle_idle_slots=128):
        if _TimerClientBase is not object:
            super().__init__()
        if int(signal) > _signal.SIGRTMAX:
            raise ValueError("signal %d is not a signal (the largest is %d)" % (signal, _signal.SIGRTMAX))
        self._table_path = table_path or default_table_path()
        self._signal = int(signal)
        self._options = (bool(require_server), int(recycle_idle_slots))
        self._client = None
        self._calls = None
        try:  # now if it can, so that the per-step calls are the builtins from the start
            self._open()
        except BrokenPipeError:
            pass  # raised again at the first use, as torch's client fails at its first request

    def _open(self):
        """The table's client, opened now if it is not open yet; from then on the per-step calls
        are the C++ builtins, stored on the instance (one call from Python to C++ per
        acquire or release, with no Python frame and no pybind11 dispatch in between)."""
        if self._client is None:
            try:
                client = _shmtimer.Client(self._table_path, self._signal, *self._options)
            except BrokenPipeError as e:
                raise type(e)("%s. %s" % (e, _how_to_serve(self._table_path))) from None
            # The server signals a table timer's process only if it has the table mapped
            # (so a forged slot cannot get a bystander killed). A script that drops its
            # client while a timer is armed (`ShmTimerClient(p).acquire(...)`) must stay
            # killable: the first client of each table is kept, mapped, until exit.
            _keep_mapped.setdefault(client.table_path, client)
            _stacks.register(client.table_path)  # the server may ask for this process's stacks
            self._calls = client.fast_calls()
            # The builtins shadow the methods below, unless the caller put something of
            # its own there (a mock that wraps them, as torch's tests do).
            for name, call in zip(("acquire", "release", "_acquire_after"), self._calls):
                vars(self).setdefault(name, call)
            self._client = client
        return self._client

    # Used until the first use has opened the table; then the instance's C++ builtins
    # shadow them. They also serve torch's abstract base class and help().
    def acquire(self, scope_id, expiration_time):  # noqa: F811 (shadowed per instance)
        """Arms (this process, scope_id) to expire at the wall-clock ``expiration_time``."""
        self._open()
        self._calls[0](scope_id, expiration_time)

    def release(self, scope_id):  # noqa: F811
        """Disarms (this process, scope_id); an unknown scope is a no-op."""
        self._open()
        self._calls[1](scope_id)

    def timer(self, scope_id, after=None):
        """A :class:`Timer` bound to this process's slot for ``scope_id`` (claimed now);
        ``after``: the seconds ``with timer:`` arms it for."""
        return Timer(scope_id, self._open().timer_calls(scope_id), after)

    def forget(self, scope_id):
        """Gives the scope's slot back to the table (no Timer of it may be in use)."""
        return self._open().forget(scope_id)

    @property
    def table_path(self):
        return self._table_path

    @property
    def signal(self):
        return self._signal


def _how_to_serve(table_path):
    return ("Start a watchdog on this table first (shmtimerd --table %s), or run the job under "
            "`python -m shmtimer.run` (torchrun with shmtimer's watchdog), which serves a table and passes it to its "
            "workers in SHMTIMER_TABLE; `timer-dump --table %s` shows what is there" % (table_path, table_path))


class Timer:
    """A handle on one scope's slot, for hot loops: ``arm_after(seconds)``,
    ``arm(expiration_time)`` (wall-clock epoch seconds) and ``disarm()`` skip the scope
    lookup, each one call into C++. Get one with ``ShmTimerClient.timer(scope_id)``.

    It is also a context manager: ``with timer:`` arms it for ``after`` seconds (when the
    handle was made with one) and disarms it when the block ends, however it ends."""

    __slots__ = ("scope", "after", "arm", "arm_after", "disarm")

    def __init__(self, scope, calls, after=None):
        self.scope = scope
        self.after = after
        self.arm, self.arm_after, self.disarm = calls

    def __enter__(self):
        if self.after is not None:
            self.arm_after(self.after)
        return self

    def __exit__(self, *exc):
        self.disarm()
        return False

    def __repr__(self):
        return "shmtimer.Timer(%r)" % (self.scope,)


_configured = None


def configure(client):
    """Sets the client that ``expires`` uses when it is given none."""
    global _configured
    _configured = client


def _torch_configured_client():
    """The client given to torch's ``timer.configure()``, if torch is loaded and has one.

    Looked up in ``sys.modules``: a script that never imported torch does not pay for
    importing it here."""
    api = _sys.modules.get("torch.distributed.elastic.timer.api")
    return getattr(api, "_timer_client", None) if api is not None else None


def _client_for(client):
    """``client``, else shmtimer's configured one, else torch's; as torch does, a
    RuntimeError when there is none (never a silent default table)."""
    for candidate in (client, _configured, _torch_configured_client()):
        if candidate is not None:
            return candidate
    raise RuntimeError("Configure timer client before using countdown timers: call shmtimer.configure(client) "
                       "or torch.distributed.elastic.timer.configure(client), or pass client=")


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
        acquire_after = getattr(self._client, "_acquire_after", None)
        if acquire_after is not None:
            acquire_after(self._scope, self._after)
        else:
            import time
            self._client.acquire(self._scope, time.time() + self._after)
        return self

    def __exit__(self, *exc):
        self._client.release(self._scope)
        return False


def timers(table_path=None, all=False):  # noqa: A002 (mirrors timer-dump --all)
    """The table's live timers as dicts, with timer-dump --json's row fields: pid_alive is
    None where the owner could not be looked at (timer-dump's null), never False then."""
    return _shmtimer.read_timers(table_path or default_table_path(), all)


def header(table_path=None):
    """The table's header: version, capacity, server liveness, counters."""
    return _shmtimer.read_header(table_path or default_table_path())
