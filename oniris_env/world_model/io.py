"""Save and load world-model weights as plain data: `world_model.safetensors` with JSON metadata.

The metadata holds the resolved `WorldModelConfig`, the `GameSpec` the model was trained for and the latent
shape; the model is rebuilt from them (nothing is unpickled, nothing is patched after loading).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from oniris_env.bundle import WORLD_MODEL_FILE, shipped_weights_dir
from oniris_env.checksums import verify_checksum
from oniris_env.config_io import atomic_write_bytes
from oniris_env.spec import DEFAULT_SPEC, GameSpec, SpecMismatchError
from oniris_env.world_model.config import WorldModelConfig
from oniris_env.world_model.model import WorldModel

FORMAT = "oniris-env/world_model/1"

__all__ = ["SpecMismatchError", "load_world_model", "read_metadata", "save_world_model"]


def save_world_model(
    model: WorldModel, path: Path | str, spec: GameSpec, notes: dict[str, Any] | None = None
) -> Path:
    """Write `model`'s weights and config to `path` atomically (temp file, then rename).

    `notes`: JSON-serialisable facts to keep with the weights (e.g. training step, validation loss), under the
    metadata key `notes` as in VAE checkpoints and agents.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    metadata = {
        "format": FORMAT,
        "config": json.dumps(cfg.to_dict()),
        "spec": json.dumps(spec.to_dict()),
        "latent_shape": json.dumps(list(cfg.latent_shape)),
        "notes": json.dumps(notes or {}),
    }
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    return atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))  # mode from the umask, not 0600


def read_metadata(path: Path | str) -> dict[str, Any]:
    """Decoded metadata of a weights file: config, spec, latent_shape, notes. Raises ValueError naming the file.

    Files written before the key was named `notes` (the shipped weights among them) keep it as `extra`: it is read
    from there and returned as `notes`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"world-model weights not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            raw = f.metadata() or {}
        if raw.get("format") != FORMAT:
            raise ValueError(f"format is {raw.get('format')!r}, expected {FORMAT!r}")
        return {
            "config": WorldModelConfig.from_dict(json.loads(raw["config"])),
            "spec": GameSpec.from_dict(json.loads(raw["spec"])),
            "latent_shape": tuple(json.loads(raw["latent_shape"])),
            "notes": json.loads(raw.get("notes", raw.get("extra", "{}"))),
        }
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{path} is not a valid world-model weights file: {e}") from e


def load_world_model(
    path: Path | str | None = None,
    spec: GameSpec | None = DEFAULT_SPEC,
    device: torch.device | str = "cpu",
) -> WorldModel:
    """Rebuild a `WorldModel` (eval mode) from `path` (None: the weights shipped in the package).

    Raises `SpecMismatchError` naming both specs when the file was trained for another `GameSpec` than `spec`
    (pass `spec=None` to skip the check), `FileNotFoundError` when missing, `ValueError` naming the file when
    it is corrupt, not world-model weights, or differs from the sha256 recorded beside it (`oniris_env.checksums`).
    """
    path = shipped_weights_dir() / WORLD_MODEL_FILE if path is None else Path(path)
    meta = read_metadata(path)
    verify_checksum(path)
    if spec is not None:
        spec.check_matches(meta["spec"], f"world-model weights {path}")
    model = WorldModel(meta["config"])
    try:
        state = load_file(path)
        model.load_state_dict(state, strict=True)
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"{path} is not a valid world-model weights file: {e}") from e
    return model.to(device).eval()
