"""ShmTimerServer: a drop-in for torch's ``FileTimerServer``, backed by shmtimer.

It takes the same arguments and has the same methods, and it serves the same FIFO, so
unchanged ``FileTimerClient`` workers are watched; workers that use
``shmtimer.ShmTimerClient()`` write the shared-memory table it serves, whose path it
puts in ``$SHMTIMER_TABLE`` for the workers it is started for. The watchdog is the C++
one (shmtimerd's), on a thread of its own with the GIL released.

``python -m shmtimer.run`` runs torchrun with this server in place of torch's.
"""
import atexit
import hashlib
import os
import re
import sys
import time
import weakref

from . import _shmtimer

try:
    from torch.distributed.elastic.timer.file_based_local_timer import FileTimerRequest
except ImportError:  # pragma: no cover - shmtimer works without torch too
    class FileTimerRequest:
        """torch's FileTimerRequest: one acquire (or, with expiration_time < 0, release)."""

        def __init__(self, worker_pid, scope_id, expiration_time, signal=0):
            self.worker_pid = worker_pid
            self.scope_id = scope_id
            self.expiration_time = expiration_time
            self.signal = signal

        def __eq__(self, other):
            return isinstance(other, FileTimerRequest) and vars(self) == vars(other)

        def __repr__(self):
            return "FileTimerRequest(%r)" % (vars(self),)



class ReportedRequest(FileTimerRequest):
    """The request of an expiry that has an incident report: ``incident`` is the report's
    directory (docs/diagnosis.md). torch's FileTimerRequest takes no new attribute."""

    def __init__(self, worker_pid, scope_id, expiration_time, signal=0, incident=""):
        super().__init__(worker_pid, scope_id, expiration_time, signal)
        self.incident = incident


__all__ = ["ShmTimerServer", "FileTimerRequest", "ReportedRequest", "table_path_for"]

_DEFAULT_CAPACITY = 4096
_made_up = set()  # table paths that table_path_for() made up in this process


def table_path_for(run_id=None, file_path=None):
    """The table a job's server serves: ``$SHMTIMER_TABLE`` when the user set it, else a
    file named after the job's ``run_id``, its FIFO path and the agent's pid, in the
    user's private directory (``/dev/shm/shmtimer-<uid>``, mode 0700), where no other user
    can take the name first.

    All three name it: torchrun's default run id is the same for every job ("none"), a
    ``$RANDOM`` one has only 32,768 values, and a FIFO path may be chosen by hand; the
    agent's pid makes the name unique per agent on the host, so two jobs, or two
    generations of one job, never share a table. A hash of the raw names keeps two that
    sanitize alike apart."""
    configured = os.environ.get("SHMTIMER_TABLE")
    if configured and configured not in _made_up:
        return configured
    fifo = os.path.abspath(file_path or "default")
    # torch 2.x passes "" when the agent has no workers' environment to take it from.
    label = re.sub(r"[^A-Za-z0-9._-]", "_", run_id or "fifo")[:48]
    raw = "%s\0%s\0%d" % (run_id or "", fifo, os.getpid())
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return os.path.join(_shmtimer.private_directory(), "job-%s-%s.table" % (label, digest))


def torch_server_signals_itself():
    """Whether the installed torch's own FileTimerServer signals its own process after a
    reap (which ends torch's agent). Upstream torch 2.x's does (2.13's does); 1.13's does
    not, nor does Debian 13's 2.6. The version does not tell, so its source is read."""
    try:
        import inspect

        from torch.distributed.elastic.timer.file_based_local_timer import FileTimerServer as Theirs
        return "os.getpid()" in inspect.getsource(Theirs._run_watchdog)
    except (ImportError, AttributeError, OSError, TypeError):  # no torch, or no source to read
        return False


def _signal_self_by_default():
    """As the installed torch does, unless SHMTIMER_SIGNAL_SELF_AFTER_REAP says: "0" keeps
    the agent alive, so that it restarts the workers (--max-restarts) after a reap."""
    chosen = os.environ.get("SHMTIMER_SIGNAL_SELF_AFTER_REAP", "")
    if chosen not in ("", "0", "1"):
        raise ValueError("SHMTIMER_SIGNAL_SELF_AFTER_REAP must be 0 or 1, not %r" % chosen)
    return torch_server_signals_itself() if chosen == "" else chosen == "1"


def _soft_signal(text):
    """"TERM", "SIGTERM", "15", or "timer" (the expired timer's own signal: -1); "" or "0": none."""
    import signal

    text = str(text).strip()
    if text in ("", "0"):
        return 0
    if text == "timer":
        return -1
    if text.isdigit():
        return int(text)
    try:
        return int(signal.Signals[text if text.startswith("SIG") else "SIG" + text])
    except KeyError:
        raise ValueError("not a signal: %r (TERM, SIGTERM, 15, or timer)" % text) from None


def _incident_settings(capture_bound_ms, incident_dir, observe_only, soft_signal, grace_ms):
    """Incident reports and the escalation ladder (docs/diagnosis.md): each argument, else
    its environment variable (``SHMTIMER_CAPTURE_BOUND_MS``, ``SHMTIMER_INCIDENT_DIR``,
    ``SHMTIMER_OBSERVE_ONLY``, ``SHMTIMER_SOFT_SIGNAL``, ``SHMTIMER_GRACE_MS``, and
    ``SHMTIMER_PY_SPY`` for the py-spy program), else off."""
    env = os.environ.get
    observe = env("SHMTIMER_OBSERVE_ONLY", "0") if observe_only is None else observe_only
    if str(observe) not in ("0", "1", "False", "True"):
        raise ValueError("SHMTIMER_OBSERVE_ONLY must be 0 or 1, not %r" % observe)
    return {
        "capture_bound_ms": float(env("SHMTIMER_CAPTURE_BOUND_MS", "0") if capture_bound_ms is None else capture_bound_ms),
        "incident_dir": str(env("SHMTIMER_INCIDENT_DIR", "") if incident_dir is None else incident_dir),
        "observe_only": str(observe) in ("1", "True"),
        "py_spy": env("SHMTIMER_PY_SPY", "py-spy"),
        "soft_signal": _soft_signal(env("SHMTIMER_SOFT_SIGNAL", "") if soft_signal is None else soft_signal),
        "grace_ms": float(env("SHMTIMER_GRACE_MS", "5000") if grace_ms is None else grace_ms),
    }


def _realtime_priority(priority):
    """The watchdog thread's SCHED_FIFO priority (docs/server.md, "Priority"): the argument,
    else ``SHMTIMER_REALTIME_PRIORITY``, else 0 (a normal priority: the agent's process
    decides its own scheduling)."""
    value = os.environ.get("SHMTIMER_REALTIME_PRIORITY", "0") if priority is None else priority
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError("SHMTIMER_REALTIME_PRIORITY must be 0..99, not %r" % value) from None
    if not 0 <= number <= 99:
        raise ValueError("SHMTIMER_REALTIME_PRIORITY must be 0..99, not %r" % value)
    return number


# Old (torch 1.13) and new (2.x) positional orders after file_path.
_ORDER_1_13 = ("max_interval", "daemon", "log_event")
_ORDER_2_X = ("run_id",) + _ORDER_1_13


class ShmTimerServer:
    """torch's ``FileTimerServer(file_path, [run_id,] max_interval=10, daemon=True,
    log_event=None)``, plus keyword-only ``table_path`` (default: :func:`table_path_for`),
    ``capacity`` of a table it creates, and ``signal_self_after_reap`` (default: as the
    installed torch does: torch_server_signals_itself()), and the incident and ladder
    settings ``capture_bound_ms``, ``incident_dir``, ``observe_only``, ``soft_signal``,
    ``grace_ms`` (default: their ``SHMTIMER_*`` environment variables, else off; see
    docs/diagnosis.md), and ``realtime_priority``, the watchdog thread's SCHED_FIFO
    priority (default: ``SHMTIMER_REALTIME_PRIORITY``, else 0; docs/server.md). The events of an expiry with a report carry ``request.incident``,
    the report's directory.

    Like torch's, the constructor makes the FIFO, ``start()`` starts the watchdog and
    ``stop()`` stops it and removes the FIFO (and the table, when its path was made up
    here). Differences: the watchdog never keeps the interpreter alive (``daemon`` is
    accepted and ignored; it is stopped at exit), and it also enforces the table's timers.
    """

    def __init__(self, file_path, *args, table_path=None, capacity=_DEFAULT_CAPACITY, signal_self_after_reap=None,
                 capture_bound_ms=None, incident_dir=None, observe_only=None, soft_signal=None, grace_ms=None,
                 realtime_priority=None, **kwargs):
        order = _ORDER_2_X if args and (args[0] is None or isinstance(args[0], str)) else _ORDER_1_13
        if len(args) > len(order):
            raise TypeError("ShmTimerServer takes at most %d positional arguments after file_path" % len(order))
        params = {"run_id": None, "max_interval": 10, "daemon": True, "log_event": None}
        for name, value in zip(order, args):
            params[name] = value
        for name, value in kwargs.items():
            if name not in params:
                raise TypeError("ShmTimerServer got an unexpected keyword argument %r" % name)
            params[name] = value
        self._file_path = str(file_path)
        self._run_id = params["run_id"]
        self._max_interval = float(params["max_interval"])
        self._daemon = params["daemon"]
        self._log_event = params["log_event"] or (lambda name, request: None)
        # A path made up here (by this server or an earlier one of this process, as after
        # a restart of the workers) is this job's alone: stop() removes it.
        self._owns_table_path = table_path is None and os.environ.get("SHMTIMER_TABLE", "") in _made_up | {""}
        self._table_path = str(table_path) if table_path is not None else table_path_for(self._run_id, self._file_path)
        if signal_self_after_reap is None:
            signal_self_after_reap = _signal_self_by_default()
        self._last_progress = None
        removable = [self._file_path] + ([self._table_path] if self._owns_table_path else [])
        incidents = _incident_settings(capture_bound_ms, incident_dir, observe_only, soft_signal, grace_ms)
        if not incidents["incident_dir"] and (incidents["capture_bound_ms"] > 0 or incidents["observe_only"]):
            incidents["incident_dir"] = os.path.join(os.path.dirname(self._table_path), "incidents")
        self._server = _shmtimer.Server(self._table_path, self._file_path, self._max_interval, int(capacity),
                                        self._on_event, bool(signal_self_after_reap), removable, **incidents,
                                        realtime_priority=_realtime_priority(realtime_priority))
        # Workers this process starts from now on find the table without being told.
        os.environ["SHMTIMER_TABLE"] = self._table_path
        if self._owns_table_path:
            _made_up.add(self._table_path)
        # At exit the watchdog thread must be stopped while Python can still run its
        # log_event; a weak reference, so that this does not keep the server alive.
        me = weakref.ref(self)
        atexit.register(lambda: me() is not None and me().stop())

    def _on_event(self, name, request):
        if request is None:
            self._log_event(name, None)
            return
        # A plain FileTimerRequest without a report, so that requests compare as torch's do.
        self._log_event(name, ReportedRequest(*request) if request[4] else FileTimerRequest(*request[:4]))

    @property
    def table_path(self):
        return self._table_path

    @property
    def file_path(self):
        return self._file_path

    # Set by ``python -m shmtimer.run``: start() then says on stderr where the job's table
    # is, for timer-dump.
    announce = False

    def start(self):
        """Starts the watchdog thread."""
        self._require_open().start()
        if self.announce:
            print("shmtimer: watching this job's workers; table %s (timer-dump --table %s), FIFO %s"
                  % (self._table_path, self._table_path, self._file_path), file=sys.stderr, flush=True)

    def stop(self):
        """Stops the watchdog and removes the FIFO (and a made-up table); idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stop()
        self._last_progress = server.get_last_progress_time()
        if self._owns_table_path:  # while this server still holds the table's lock
            try:
                os.unlink(self._table_path)
            except FileNotFoundError:
                pass
        del server  # closes and removes the FIFO, releases the table

    def run_once(self):
        """One round now: drain the FIFO, then scan and reap (torch's test hook)."""
        self._require_open().run_once()

    def get_last_progress_time(self):
        """Epoch seconds of the last completed watchdog round (now, if none has run)."""
        if self._server is not None:
            return self._server.get_last_progress_time()
        return self._last_progress if self._last_progress is not None else int(time.time())

    def register_timers(self, timer_requests):
        """Applies requests as if each had come through the FIFO: an acquire per request
        with expiration_time >= 0, a release per negative one."""
        # "surrogatepass": a lone surrogate is taken as torch's FIFO takes it, as its
        # 3 bytes, which the table client stores for the same scope (docs/pytorch.md).
        self._require_open().register([(int(r.worker_pid), str(r.scope_id).encode("utf-8", "surrogatepass"),
                                        float(r.expiration_time), int(r.signal)) for r in timer_requests])

    def clear_timers(self, worker_pids):
        """Disarms every timer of these processes."""
        self._require_open().clear({int(pid) for pid in worker_pids})

    def get_expired_timers(self, deadline):
        """``{worker_pid: [FileTimerRequest, ...]}`` of the armed timers whose
        expiration_time (epoch seconds) is at or before ``deadline``."""
        expired = {}
        for row in _shmtimer.read_timers(self._table_path, False):
            when = row["deadline_unix_s"]
            if when is not None and when <= deadline:
                expired.setdefault(row["pid"], []).append(
                    FileTimerRequest(row["pid"], row["scope"], when, row["signal"]))
        return expired

    @staticmethod
    def is_process_running(pid):
        """Whether a process with this pid exists, as torch's static method answers, with
        two differences: a process this user may not signal still runs (True; torch's
        answers False), and a pid <= 0 names no one process (False; torch's
        ``os.kill(0, 0)`` signals the caller's process group and answers True)."""
        if int(pid) <= 0:
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    @property
    def _timers(self):
        """torch's ``{(worker_pid, scope_id): FileTimerRequest}`` of the armed timers, read
        from the table now (a copy: changing it changes nothing), which torch's tests read."""
        return {(r.worker_pid, r.scope_id): r for rs in self.get_expired_timers(float("inf")).values() for r in rs}

    @property
    def _request_count(self):  # torch's counter of applied requests, which its tests read
        return self._server.request_count if self._server is not None else 0

    def _require_open(self):
        if self._server is None:
            raise RuntimeError("this ShmTimerServer was stopped; make a new one")
        return self._server
