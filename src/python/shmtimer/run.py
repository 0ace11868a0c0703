"""``python -m shmtimer.run [torchrun arguments] script.py [script arguments]``

torchrun, with shmtimer's watchdog in place of torch's: the elastic agent hosts a
:class:`shmtimer.torch.ShmTimerServer` where it would host a ``FileTimerServer``. Every
worker gets

- ``TORCHELASTIC_TIMER_FILE``: the FIFO the server reads, so unchanged scripts that use
  torch's ``FileTimerClient`` are watched (through the FIFO shim);
- ``SHMTIMER_TABLE``: the job's table, so ``shmtimer.ShmTimerClient()`` with no argument
  writes where the server looks.

The watchdog is switched on (``TORCHELASTIC_ENABLE_FILE_TIMER=1``). A FIFO path already in
``TORCHELASTIC_TIMER_FILE`` is used, as torchrun does. Everything else is torchrun's own
launcher, arguments and exit status included.
"""
import os
import re
import sys

_SWITCHED_ON = "1"


def _repair_std_from_str():
    """torch 1.13's ``--redirects``/``--tee`` parsing fails on Python 3.11: it looks a
    value up by iterating the ``Std`` flag, and from 3.11 on that iteration skips NONE (0)
    and ALL (3), so every launch dies with "'NoneType' object has no attribute 'get'".
    Replaced here by a lookup by value, only where the bug shows."""
    from torch.distributed.elastic.multiprocessing import api

    if api.Std.from_str("0") is not None:
        return

    def from_str(cls, vm):
        if re.match(api._VALUE_REGEX, vm):
            return cls(int(vm))
        if re.match(api._MAPPING_REGEX, vm):
            return {int(rank): cls(int(value)) for rank, value in (pair.split(":") for pair in vm.split(","))}
        raise ValueError("%s does not match: <%s> or <%s>" % (vm, api._VALUE_REGEX, api._MAPPING_REGEX))

    api.Std.from_str = classmethod(from_str)


def _repair_tcp_store_without_libuv():
    """Debian 13's torch 2.6 is built without libuv, but its rendezvous makes its TCPStore
    with libuv (the default since torch 2.4), so every launch dies with "use_libuv was
    requested but PyTorch was build without libuv support", whatever USE_LIBUV says.
    Where that is so (a probe store on an ephemeral loopback port says), the TCPStore
    that torch's modules use is one that asks for no libuv."""
    import sys

    import torch.distributed as dist

    original = dist.TCPStore
    try:
        del_me = original("127.0.0.1", 0, is_master=True, wait_for_workers=False, use_libuv=True)
        del del_me
        return
    except TypeError:  # torch 1.13: no libuv argument, nothing to repair
        return
    except RuntimeError as e:
        if "libuv" not in str(e):
            return

    class TCPStoreWithoutLibuv(original):
        def __init__(self, *args, **kwargs):
            kwargs["use_libuv"] = False
            super().__init__(*args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.startswith("torch.distributed") and getattr(module, "TCPStore", None) is original:
            module.TCPStore = TCPStoreWithoutLibuv


def repair_torch():
    """The repairs above, each only where its bug shows; nothing else of shmtimer."""
    _repair_std_from_str()
    _repair_tcp_store_without_libuv()


def _use_shmtimer_server():
    """The agent looks ``FileTimerServer`` up in torch's timer package when it starts
    workers, so replacing it there is enough, in 1.13 and 2.x alike."""
    from torch.distributed.elastic import timer

    from .torch import ShmTimerServer

    ShmTimerServer.announce = True  # the launcher's user wants to know where the table is
    timer.FileTimerServer = ShmTimerServer


def _register_workers_stacks():
    """Every worker registers its cooperative stack dump at start, whichever timer client
    it uses (shmtimer/_workers/sitecustomize.py, first on the workers' PYTHONPATH);
    ``SHMTIMER_STACKS=0`` opts out (docs/diagnosis.md)."""
    if os.environ.get("SHMTIMER_STACKS", "1") == "0":
        return
    workers = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_workers")
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = workers + (os.pathsep + path if path else "")


def main(argv=None):
    os.environ["TORCHELASTIC_ENABLE_FILE_TIMER"] = _SWITCHED_ON
    _register_workers_stacks()
    repair_torch()
    _use_shmtimer_server()
    from torch.distributed.run import main as torchrun_main

    torchrun_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
