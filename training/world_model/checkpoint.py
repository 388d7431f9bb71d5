"""Resumable training state: one atomic `checkpoint.pt` of plain tensors and primitives.

Loaded with `torch.load(weights_only=True)` (no code is unpickled). Holds everything needed to continue exactly
where the run stopped: model, EMA, loss uncertainty, optimiser, step, and all three random streams.
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
        return TrainState(
            step=int(raw["step"]),
            model=raw["model"],
            ema=raw["ema"],
            uncertainty=raw["uncertainty"],
            optimizer=raw["optimizer"],
            noise_rng=raw["noise_rng"],
            data_rng=json.loads(raw["data_rng"]),
            model_config=json.loads(raw["model_config"]),
            train_config=json.loads(raw["train_config"]),
            spec=json.loads(raw["spec"]),
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
