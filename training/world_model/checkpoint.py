"""Resumable training state: one atomic `checkpoint.pt` of plain tensors and primitives.

Loaded with `torch.load(weights_only=True)` (no code is unpickled). Holds everything needed to continue exactly
where the run stopped: model, EMA, loss uncertainty, optimiser, step, and all three random streams.

Under DDP (`training.distributed`) rank 0 writes the same file with the unwrapped model's weights (no `module.`
prefix), its own random streams in `data_rng` / `noise_rng`, and every rank's streams in `rank_rngs`, so one
file resumes a run in one process or under `torchrun` alike (`load_checkpoint` also strips wrapper prefixes).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from training.distributed import strip_wrapper_prefixes

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainState:
    step: int
    model: dict[str, Tensor]
    ema: dict[str, Tensor]
    uncertainty: dict[str, Tensor]
    optimizer: dict[str, Any]
    noise_rng: Tensor
    data_rng: dict[str, Any]
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    spec: dict[str, Any]
    rank_rngs: list[dict[str, Any]] | None = None
    """Under DDP: each rank's `{"data_rng": ..., "noise_rng": ...}` in rank order (absent in one process)."""


def save_checkpoint(state: TrainState, out_dir: Path) -> Path:
    """Write `out_dir/checkpoint.pt` atomically (temp file + rename: an interruption never leaves half a file)."""
    path = Path(out_dir) / CHECKPOINT_NAME
    payload = {
        "step": state.step,
        "model": state.model,
        "ema": state.ema,
        "uncertainty": state.uncertainty,
        "optimizer": state.optimizer,
        "noise_rng": state.noise_rng,
        "data_rng": json.dumps(state.data_rng),
        "model_config": json.dumps(state.model_config),
        "train_config": json.dumps(state.train_config),
        "spec": json.dumps(state.spec),
    }
    if state.rank_rngs is not None:
        payload["rank_data_rng"] = json.dumps([r["data_rng"] for r in state.rank_rngs])
        payload["rank_noise_rng"] = [r["noise_rng"] for r in state.rank_rngs]
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(out_dir: Path) -> TrainState | None:
    """The run's last checkpoint, or None when there is none."""
    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        rank_rngs = None
        if "rank_data_rng" in raw:
            data_rngs = json.loads(raw["rank_data_rng"])
            rank_rngs = [{"data_rng": d, "noise_rng": n} for d, n in zip(data_rngs, raw["rank_noise_rng"], strict=True)]
        return TrainState(
            step=int(raw["step"]),
            model=strip_wrapper_prefixes(raw["model"]),
            ema=strip_wrapper_prefixes(raw["ema"]),
            uncertainty=strip_wrapper_prefixes(raw["uncertainty"]),
            optimizer=raw["optimizer"],
            noise_rng=raw["noise_rng"],
            data_rng=json.loads(raw["data_rng"]),
            model_config=json.loads(raw["model_config"]),
            train_config=json.loads(raw["train_config"]),
            spec=json.loads(raw["spec"]),
            rank_rngs=rank_rngs,
        )
    except Exception as e:  # noqa: BLE001 (any failure means the file is unusable: say which file)
        raise ValueError(f"cannot resume from {path}: {e}; delete it to start over") from e


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """JSON-serialisable state of a numpy Generator (PCG64 state holds 128-bit ints: keep them as ints)."""
    return rng.bit_generator.state


def restore_rng(state: dict[str, Any]) -> np.random.Generator:
    bit_gen = getattr(np.random, state["bit_generator"])()
    bit_gen.state = state
    return np.random.Generator(bit_gen)
