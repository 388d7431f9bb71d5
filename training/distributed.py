"""Scale-out with PyTorch's own engine: `torchrun` + `DistributedDataParallel`, or one plain process.

`torchrun` (`python -m torch.distributed.run`) starts one process per device and sets `RANK`, `LOCAL_RANK`,
`WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT`; `DistributedContext.from_env` reads them and joins the process
group (gloo on CPU, NCCL on CUDA, one GPU per process: `cuda:{LOCAL_RANK}`). Without `WORLD_SIZE` (or with
`WORLD_SIZE=1`) it is a no-op context: no process group, no DDP wrapper, and the trainers run exactly the
single-process code path (same numbers, same files).

The trainers use it for the few things that differ under DDP:
- `wrap`: the module whose forward computes the loss, in DDP (gradients averaged over ranks in backward);
- `rank_seed`: distinct data / noise streams per rank (rank 0 keeps the configured seed);
- `shard`: which episodes a rank samples from (episode i of a split goes to rank i % world_size);
- `barrier`, `all_gather`, `broadcast`, `mean`, `any`: the collectives around checkpoints, logging, sync checks
  and stop requests.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from oniris_env.device import resolve_device

T = TypeVar("T")

RANK_SEED_STRIDE = 1_000_003
"""Rank r draws data and noise from seed + r * stride (a prime, far from the small offsets the trainers add)."""

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""Key prefixes that DDP (`module.`) and `torch.compile` (`_orig_mod.`) add to a wrapped model's state_dict."""


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a `torchrun` job (rank 0 of 1 when launched as a plain process)."""

    rank: int = 0
    """Global rank in [0, world_size)."""
    local_rank: int = 0
    """Rank on this node: the GPU index on CUDA."""
    world_size: int = 1
    """Number of processes (ranks) in the job."""
    device: str = "cpu"
    """Torch device of this rank: 'cpu' or 'cuda:{local_rank}' under torchrun."""
    owns_group: bool = False
    """True when `from_env` created the process group (so `destroy` tears it down)."""

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise ValueError(f"need 0 <= rank < world_size, got rank {self.rank} of {self.world_size}")

    @classmethod
    def from_env(cls, device: str = "cpu") -> DistributedContext:
        """Join the `torchrun` job described by the environment, or a one-process context without `WORLD_SIZE`.

        Args:
            device: 'auto' | 'cpu' | 'cuda' (`oniris_env.device.resolve_device`); under torchrun on CUDA each
                rank takes `cuda:{LOCAL_RANK}`.
        """
        dev = resolve_device(device)
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls(device=dev)
        import torch.distributed as dist

        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if dev.startswith("cuda"):
            dev = f"cuda:{local_rank}"
            torch.cuda.set_device(local_rank)
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if dev.startswith("cuda") else "gloo", rank=rank, world_size=world_size)
        return cls(rank=rank, local_rank=local_rank, world_size=world_size, device=dev, owns_group=owns)

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that logs, validates and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one rank (a process group exists and models are wrapped in DDP)."""
        return self.world_size > 1

    @property
    def shard(self) -> tuple[int, int]:
        """`(rank, world_size)`: this rank samples episodes `rank, rank + world_size, ...` of a split."""
        return (self.rank, self.world_size)

    def rank_seed(self, seed: int) -> int:
        """The seed of this rank's data and noise streams: `seed` on rank 0, distinct on every other rank."""
        return seed + self.rank * RANK_SEED_STRIDE

    def wrap(self, module: nn.Module) -> nn.Module:
        """`module` in `DistributedDataParallel` (gradients all-reduced and averaged in backward); `module`
        itself in one process. Call the returned module's forward for every training step."""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.local_rank] if self.device.startswith("cuda") else None
        # Depthwise conv weights `(C, 1, k, k)` get gradients whose size-1 dim has another stride than DDP's
        # bucket view: harmless (one small copy), but DDP warns at the first backward.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        # The trained modules' buffers are constants (Fourier tables, latent stats): no per-step buffer broadcast.
        return DistributedDataParallel(module, device_ids=device_ids, forward_sync_buffers=False)

    def barrier(self) -> None:
        """Wait for every rank (no-op in one process)."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's `obj` (picklable), in rank order; `[obj]` in one process."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: T) -> T:
        """Rank 0's `obj` on every rank (for values measured once, e.g. sigma_data, bf16 speed)."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each value over the ranks (for logging losses of the global batch)."""
        if not self.distributed or not values:
            return values
        import torch.distributed as dist

        t = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world_size).tolist(), strict=True))

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is True on any rank (e.g. a SIGTERM one rank received); `flag` itself
        in one process."""
        if not self.distributed:
            return flag
        import torch.distributed as dist

        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def destroy(self) -> None:
        """Leave the process group if `from_env` created it; safe on every exit path, and a no-op the second time.

        The trainers call it in a `finally` (normal end, exception, Ctrl-C, SIGTERM), so the gloo / NCCL threads
        are stopped before the interpreter exits instead of being torn down during its shutdown, where they can
        abort the process (C++ "terminate called ...", exit code -6) after the weights were written. No barrier:
        after an error the other ranks may be gone or stuck in a collective. An error while leaving only warns,
        so it never hides the exception that ended the run.
        """
        if not self.owns_group:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            return
        try:
            dist.destroy_process_group()
        except Exception as e:  # noqa: BLE001 (leaving is best effort: the run's own outcome decides the exit)
            warnings.warn(f"rank {self.rank}: leaving the process group failed: {e}", stacklevel=2)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain model inside DDP (`.module`) and `torch.compile` (`._orig_mod`) wrappers."""
    while True:
        inner = getattr(module, "module", None) or getattr(module, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return module
        module = inner


def strip_wrapper_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A state_dict with DDP's `module.` and torch.compile's `_orig_mod.` key prefixes removed.

    The trainers always save the unwrapped model's state_dict; this also accepts checkpoints written by code
    that saved the wrapper, so DDP and single-process checkpoints load in either setting.
    """
    out = {}
    for key, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix) :], True
        out[key] = value
    return out


def param_digest(*states: dict[str, Tensor]) -> str:
    """SHA-256 of the exact bytes of state dicts (key names, dtypes, shapes and values): equal on every rank
    when the ranks hold bit-identical weights."""
    h = hashlib.sha256()
    for state in states:
        for key in sorted(state):
            t = state[key].detach().cpu().contiguous()
            h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def sync_record(ctx: DistributedContext, step: int, *states: dict[str, Tensor]) -> dict[str, Any] | None:
    """Collective: every rank's `param_digest`; on rank 0 a metrics record `{"step", "ranks_in_sync",
    "param_digest", "rank_digests", "world_size"}`; None on other ranks and in one process. DDP must keep the
    ranks bit-identical: the trainers log this record, then raise if `ranks_in_sync` is false."""
    if not ctx.distributed:
        return None
    digests = ctx.all_gather(param_digest(*states))
    if not ctx.is_main:
        return None
    return {
        "step": step,
        "ranks_in_sync": len(set(digests)) == 1,
        "param_digest": digests[0],
        "rank_digests": digests,
        "world_size": ctx.world_size,
    }
