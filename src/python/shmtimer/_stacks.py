"""Cooperative stack dumps: a watched Python worker lets the server ask it for the stacks
of all its threads before a kill (docs/diagnosis.md).

The worker registers the standard library's ``faulthandler`` on ``SIGURG``, writing into
a file of its own, ``stacks/<pid>-<start time>.stacks`` beside its table (a directory of
the user's, mode 0700). faulthandler's handler is C: it writes every thread's frames even
while another thread holds the GIL or the main thread is stuck in a C call. SIGURG is
used by no part of torch (its elastic agent handles SIGTERM, SIGINT, SIGHUP and SIGQUIT;
SLURM and Lightning use SIGUSR1 and SIGUSR2), and its default action is to ignore it, so
a process that never registered is not harmed by one. ``SHMTIMER_STACKS=0`` opts out.
"""
import atexit
import faulthandler
import os
import signal
import stat
import threading

SIGNAL = signal.SIGURG
_registered = {}  # pid -> the open file faulthandler writes (kept open for it)


def start_time(pid):
    """The process's start time in clock ticks (/proc/<pid>/stat, field 22): with the
    pid, a name no later process shares."""
    with open("/proc/%d/stat" % pid) as f:
        text = f.read()
    return int(text[text.rindex(")") + 2:].split()[19])


def _private_directory(path):
    """Makes `path` (0700) if missing; True when it is a directory of this user's alone."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _forget_stale(directory):
    """Removes the files of processes that are gone (killed workers leave theirs)."""
    for name in os.listdir(directory):
        stem, dot, ext = name.partition(".")
        pid, dash, started = stem.partition("-")
        if ext != "stacks" or not (pid.isdigit() and started.isdigit()):
            continue
        try:
            alive = start_time(int(pid)) == int(started)
        except (OSError, ValueError, IndexError):
            alive = False
        if not alive:
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def register(table_path):
    """Registers this process's dump file for the table's server; once per process (a
    forked child registers its own). Never raises: the dumps are a help, not a need."""
    pid = os.getpid()
    if pid in _registered or os.environ.get("SHMTIMER_STACKS", "1") == "0":
        return
    try:
        directory = os.path.join(os.path.dirname(os.path.abspath(table_path)), "stacks")
        if not _private_directory(directory):
            return
        _forget_stale(directory)
        path = os.path.join(directory, "%d-%d.stacks" % (pid, start_time(pid)))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        dump = os.fdopen(fd, "w")
        # faulthandler names threads by ident only: this says which one is the main one.
        dump.write("shmtimer: main thread 0x%016x\n" % threading.main_thread().ident)
        dump.flush()
        faulthandler.register(SIGNAL, file=dump, all_threads=True, chain=True)
    except (OSError, ValueError, RuntimeError):
        return
    _registered[pid] = dump
    atexit.register(_unregister, pid, path)


def _unregister(pid, path):
    if os.getpid() != pid:
        return
    try:
        faulthandler.unregister(SIGNAL)
        os.unlink(path)
    except OSError:
        pass
