"""What every trainer's loop shares: random streams per rank, atomic resume state, the metrics log, and a step
loop that saves on Ctrl-C and SIGTERM.

A trainer keeps its own setup, its step and its validation; `TrainingRun.loop` calls them and owns the rest:

- `RandomStreams`: a rank's batch-sampling (numpy) and noise (torch) streams. A checkpoint holds the streams as
  they were after its last finished step, for every rank (`rank_states`), so a resumed run draws the next step's
  batch and noise exactly as the uninterrupted run would; `restore` also covers a resume under another world size.
- `save_state` / `load_state`: the resume file, written atomically (`torch.save` of plain tensors and primitives,
  loaded with `weights_only=True`).
- `MetricsLog`: `metrics.jsonl`, one JSON object per line, written by rank 0; on resume the lines logged after the
  checkpoint are dropped (the resumed run logs them again).
- `TrainingRun`: the loop. SIGTERM (`training.interrupt`) ends it after the current step on every rank, with a
  checkpoint; Ctrl-C in one process saves the finished steps (under DDP none: a rank may already be gone, a
  restarted job resumes from the last periodic checkpoint).
- `check_same_checkpoint`, `ddp_fields`, `check_sync`: the DDP checks and record fields.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from oniris_env.config_io import atomic_write_bytes, atomic_write_text
from training.distributed import DistributedContext, sync_record
from training.interrupt import StopOnSigterm, report_stop

T = TypeVar("T")


@dataclass(frozen=True)
class StreamState:
    """A snapshot of one rank's `RandomStreams`."""

    data: dict[str, Any]
    """The numpy generator's `bit_generator.state` (JSON-serialisable: PCG64's 128-bit ints stay ints)."""
    noise: Tensor
    """The torch generator's state (uint8)."""


class RandomStreams:
    """One rank's random streams: `data` (numpy: which windows a batch holds) and `noise` (a torch generator; None
    means torch's global CPU generator, which the VAE's `randn_like` draws from)."""

    def __init__(self, data: np.random.Generator, noise: torch.Generator | None = None) -> None:
        self.data = data
        self.noise = noise

    def state(self) -> StreamState:
        noise = self.noise.get_state() if self.noise is not None else torch.get_rng_state()
        return StreamState(self.data.bit_generator.state, noise)

    def set_state(self, state: StreamState, seed: int | None = None) -> None:
        """Continue from `state`. A noise state saved on another device type (CPU <-> CUDA checkpoints) cannot be
        loaded: with a `seed` the noise stream then restarts from it (the run continues, not bit-exactly)."""
        bit_generator = getattr(np.random, state.data["bit_generator"])()
        bit_generator.state = state.data
        self.data = np.random.Generator(bit_generator)
        try:
            self._set_noise(state.noise)
        except RuntimeError:
            if seed is None:
                raise
            warnings.warn("noise RNG state saved on another device type: restarting the noise stream", stacklevel=3)
            self._seed_noise(seed)

    def reseed(self, seed: int, step: int) -> None:
        """Fresh streams, distinct per seed and per step (a resume under another world size)."""
        self._seed_noise(seed + step)
        self.data = np.random.default_rng([seed, step])

    def restore(
        self, ctx: DistributedContext, seed: int, step: int, main: StreamState, ranks: list[StreamState] | None
    ) -> None:
        """Continue a checkpoint of `step` steps: under the world size that wrote `ranks` every rank continues its
        own streams; otherwise rank 0 (or the one process) continues `main`, rank 0's, and the other ranks start
        fresh streams. `seed` is this rank's (`ctx.rank_seed`)."""
        if ranks is not None and len(ranks) == ctx.world_size:
            self.set_state(ranks[ctx.rank], seed + step)
        elif ctx.is_main:
            self.set_state(main, seed + step)
        else:
            self.reseed(seed, step)

    def _set_noise(self, state: Tensor) -> None:
        if self.noise is None:
            torch.set_rng_state(state)
        else:
            self.noise.set_state(state)

    def _seed_noise(self, seed: int) -> None:
        if self.noise is None:
            torch.manual_seed(seed)
        else:
            self.noise.manual_seed(seed)


def save_state(payload: dict[str, Any], path: Path) -> Path:
    """Write `payload` (tensors, numbers, strings; no classes) to `path` atomically: an interruption never leaves
    half a file."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path) -> dict[str, Any]:
    """The resume state at `path` (`weights_only=True`), or a ValueError naming the file when it is unreadable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (truncated, foreign or corrupt: any failure means the file is unusable)
        raise ValueError(f"cannot resume from {path}: {e}; delete it (or pass --no-resume) to start over") from e


class MetricsLog:
    """`metrics.jsonl` of a run: appended to by rank 0 only (a no-op on the other ranks)."""

    def __init__(self, path: Path, ctx: DistributedContext) -> None:
        self.path = path
        self.enabled = ctx.is_main

    def start(self, resumed_step: int | None) -> list[dict[str, Any]]:
        """A fresh run deletes the old log; a resumed one drops the records logged after `resumed_step` (steps it
        will redo) and returns those it keeps."""
        if not self.enabled:
            return []
        if resumed_step is None:
            self.path.unlink(missing_ok=True)
            return []
        if not self.path.is_file():
            return []
        lines = [line for line in self.path.read_text().splitlines() if line]
        kept = [line for line in lines if json.loads(line).get("step", 0) <= resumed_step]
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        return [json.loads(line) for line in kept]

    def append(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


class Throughput:
    """Frames per second since the last `take()` (or `restart()`)."""

    def __init__(self) -> None:
        self.start, self.frames = time.perf_counter(), 0

    def add(self, frames: int) -> None:
        self.frames += frames

    def restart(self) -> None:
        """Restart the clock, keeping the frames (time spent outside training, e.g. validation, is not counted)."""
        self.start = time.perf_counter()

    def take(self) -> float:
        now = time.perf_counter()
        rate = self.frames / max(now - self.start, 1e-9)
        self.start, self.frames = now, 0
        return rate


class RunningMean:
    """Means of named values over the steps since the last `take()` (the training record's losses)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1

    def take(self) -> dict[str, float]:
        means = {name: total / self.count for name, total in self.sums.items()}
        self.sums, self.count = dict.fromkeys(self.sums, 0.0), 0
        return means


def check_same_checkpoint(ctx: DistributedContext, step: int | None, out: Path) -> None:
    """Raise ValueError unless every rank found the same checkpoint (`step`, None: none) in `out`."""
    if len(set(ctx.all_gather(-1 if step is None else step))) > 1:
        raise ValueError(f"the ranks see different checkpoints in {out}: put --out on a filesystem all nodes share")


def ddp_fields(ctx: DistributedContext, batch_size: int, frames_per_s: float) -> dict[str, Any]:
    """The fields a training record adds under DDP (none in one process): `frames_per_s` is rank 0's."""
    if not ctx.distributed:
        return {}
    return {
        "world_size": ctx.world_size,
        "global_batch": batch_size * ctx.world_size,
        "global_frames_per_s": frames_per_s * ctx.world_size,
    }


def check_sync(
    ctx: DistributedContext, step: int, metrics: MetricsLog, *states: dict[str, Tensor], **fields: Any
) -> None:
    """Collective under DDP: log every rank's weight digest (`training.distributed.sync_record`, plus `fields`)
    and raise RuntimeError unless the ranks hold bit-identical weights; a no-op in one process."""
    sync = sync_record(ctx, step, *states)
    if sync is None:
        return
    metrics.append({**sync, **fields})
    if not sync["ranks_in_sync"]:
        raise RuntimeError(f"DDP ranks hold different weights at step {step}: {sync['rank_digests']}")


class TrainingRun:
    """The step loop of one rank, with its progress bar, checkpoints and stop handling.

    `write(step, main, ranks, note)` is the trainer's checkpoint writer, called on rank 0 only: `main` is rank 0's
    streams after `step` finished steps, `ranks` every rank's (None in one process), `note` what `save` was given.
    """

    def __init__(
        self,
        ctx: DistributedContext,
        out: Path,
        streams: RandomStreams,
        write: Callable[[int, StreamState, list[StreamState] | None, Any], None],
        bar: tqdm,
    ) -> None:
        self.ctx, self.out, self.streams, self.write, self.bar = ctx, out, streams, write, bar
        self.saved_step: int | None = None

    def save(self, step: int, note: Any = None) -> None:
        """Collective: write the checkpoint of `step` finished steps with every rank's streams."""
        main = self.streams.state()
        ranks = self.ctx.all_gather(main) if self.ctx.distributed else None
        if self.ctx.is_main:
            self.write(step, main, ranks, note)
        self.saved_step = step
        self.ctx.barrier()

    def loop(self, step: int, end: int, train_step: Callable[[int], T], after_step: Callable[[int, T], None]) -> int:
        """Run steps `step, ..., end - 1`; return the number of finished steps.

        `train_step(i)` does step i (0-based) and returns what `after_step(i + 1, result)` logs; `after_step` also
        validates and saves periodic checkpoints (`save`). On SIGTERM the loop ends after the current step on every
        rank, saves (unless that step was just saved) and raises `training.interrupt.Terminated`. On Ctrl-C one
        process saves the finished steps, with the streams as they were after the last of them (a step cut short
        is redone on resume with the same batch and noise), and re-raises.
        """
        stop, self.saved_step = StopOnSigterm().install(), step
        finished = self.streams.state()  # the streams at the start of the next step
        try:
            while step < end and not stop.requested(self.ctx):  # every rank stops after the same step
                result = train_step(step)
                step += 1
                finished = self.streams.state()
                self.bar.update(1)
                after_step(step, result)
            if step < end and stop.requested(self.ctx):
                self.bar.close()
                if self.saved_step != step:
                    self.save(step)
                raise report_stop(step, self.out, self.ctx)
        except KeyboardInterrupt:
            self.bar.close()
            if not self.ctx.distributed:
                self.streams.set_state(finished)
                self.save(step)
            raise
        finally:
            stop.restore()
        self.bar.close()
        return step
