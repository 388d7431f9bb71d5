"""SIGTERM stops a training run the way Ctrl-C does: with a checkpoint, on every rank.

SIGTERM is what `kill`, `timeout` and job schedulers (at a time limit or preemption) send, and what `torchrun`
forwards to every rank when it receives one (then it waits 30 s before SIGKILL). While `StopOnSigterm` is
installed the signal only sets a flag; the trainer asks `stop.requested(ctx)` after every step (under DDP a
collective, so every rank stops after the same step), writes its checkpoint and raises `Terminated`: the process
exits with code 143, as SIGTERM's default action reports it, and the same command resumes with no step lost or
repeated. A second SIGTERM raises KeyboardInterrupt at once (what Ctrl-C does). SIGKILL cannot be caught: it loses
the steps since the last periodic checkpoint.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any, Protocol


class _Context(Protocol):
    is_main: bool

    def any(self, flag: bool) -> bool: ...

    def barrier(self) -> None: ...


class Terminated(SystemExit):
    """Raised by a trainer after it saved its checkpoint on SIGTERM; exits with code 143 (128 + SIGTERM)."""

    def __init__(self, step: int) -> None:
        super().__init__(128 + signal.SIGTERM)
        self.step = step
        """The number of finished steps, all of them in the checkpoint."""


class StopOnSigterm:
    """From `install()` to `restore()`, SIGTERM requests a stop instead of killing the process.

    Installed only from the main thread (Python delivers signals there); `restore()` puts the previous handler back.
    """

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None

    def install(self) -> StopOnSigterm:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received:  # a second SIGTERM: stop now
            raise KeyboardInterrupt
        self.received = True

    def requested(self, ctx: _Context) -> bool:
        """True on every rank once any rank received SIGTERM (a collective under DDP: call it on every rank)."""
        return ctx.any(self.received)


def report_stop(step: int, out: object, ctx: _Context) -> Terminated:
    """Wait until every rank has written its part of the checkpoint, say on stderr (rank 0) where the run stopped
    and how it resumes; return the exception for the trainer to raise.

    The barrier keeps a rank from leaving the process group (and exiting) while another is still saving: a rank
    torn down in the middle of the other's last collectives or of torchrun's shutdown was seen to abort in C++
    ("terminate called without an active exception", exit -6) once, on a loaded machine (issue 23 item 7).
    """
    ctx.barrier()
    if ctx.is_main:
        print(f"stopped by SIGTERM after step {step}, checkpoint saved in {out}: run again to resume", file=sys.stderr)
    return Terminated(step)
