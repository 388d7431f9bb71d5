"""Resumable training state: one atomic `checkpoint.pt` of plain tensors and primitives.

Loaded with `torch.load(weights_only=True)` (no code is unpickled). Holds everything needed to continue exactly
where the run stopped: model, EMA, loss uncertainty, optimiser, step, and all three random streams.

Under DDP (`training.distributed`) rank 0 writes the same file with the unwrapped model's weights (no `module.`
prefix), its own random streams in `data_rng` / `noise_rng`, and every rank's streams in `rank_rngs`, so one
file resumes a run in one process or under `torchrun` alike (`load_checkpoint` also strips wrapper prefixes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from training.distributed import strip_wrapper_prefixes
from training.harness import StreamState, load_state, save_state

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainState:
    step: int
    model: dict[str, Tensor]
    ema: dict[str, Tensor]
    uncertainty: dict[str, Tensor]
    optimizer: dict[str, Any]
    streams: StreamState
    """Rank 0's random streams after `step` steps (on disk: `data_rng`, `noise_rng`)."""
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    spec: dict[str, Any]
    rank_rngs: list[StreamState] | None = None
    """Under DDP: each rank's streams in rank order (absent in one process)."""


def save_checkpoint(state: TrainState, out_dir: Path) -> Path:
    """Write `out_dir/checkpoint.pt` atomically (temp file + rename: an interruption never leaves half a file)."""
    path = Path(out_dir) / CHECKPOINT_NAME
    payload = {
        "step": state.step,
        "model": state.model,
        "ema": state.ema,
        "uncertainty": state.uncertainty,
        "optimizer": state.optimizer,
        "noise_rng": state.streams.noise,
        "data_rng": json.dumps(state.streams.data),
        "model_config": json.dumps(state.model_config),
        "train_config": json.dumps(state.train_config),
        "spec": json.dumps(state.spec),
    }
    if state.rank_rngs is not None:
        payload["rank_data_rng"] = json.dumps([r.data for r in state.rank_rngs])
        payload["rank_noise_rng"] = [r.noise for r in state.rank_rngs]
    return save_state(payload, path)


def load_checkpoint(out_dir: Path) -> TrainState | None:
    """The run's last checkpoint, or None when there is none."""
    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    raw = load_state(path)
    try:
        rank_rngs = None
        if "rank_data_rng" in raw:
            data_rngs = json.loads(raw["rank_data_rng"])
            rank_rngs = [StreamState(d, n) for d, n in zip(data_rngs, raw["rank_noise_rng"], strict=True)]
        return TrainState(
            step=int(raw["step"]),
            model=strip_wrapper_prefixes(raw["model"]),
            ema=strip_wrapper_prefixes(raw["ema"]),
            uncertainty=strip_wrapper_prefixes(raw["uncertainty"]),
            optimizer=raw["optimizer"],
            streams=StreamState(json.loads(raw["data_rng"]), raw["noise_rng"]),
            model_config=json.loads(raw["model_config"]),
            train_config=json.loads(raw["train_config"]),
            spec=json.loads(raw["spec"]),
            rank_rngs=rank_rngs,
        )
    except Exception as e:  # noqa: BLE001 (any failure means the file is unusable: say which file)
        raise ValueError(f"cannot resume from {path}: {e}; delete it to start over") from e
