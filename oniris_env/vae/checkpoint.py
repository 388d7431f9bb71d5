"""VAE checkpoints as plain data: one `.safetensors` file holding the weights (latent shift/scale included, as
buffers) and JSON metadata (format, `VAEConfig`, `GameSpec`, free-form training notes). Loading rebuilds the
model from the config and never unpickles anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from oniris_env.bundle import VAE_FILE, shipped_weights_dir
from oniris_env.checksums import verify_checksum
from oniris_env.config_io import atomic_write_bytes
from oniris_env.spec import DEFAULT_SPEC, GameSpec
from oniris_env.vae.config import VAEConfig
from oniris_env.vae.model import GroupCausalVAE

FORMAT = "oniris-env/vae/1"
TRAIN_COMMAND = "oniris-env train vae --data DIR --out RUN --preset default"


def shipped_vae_path() -> Path:
    """Where the package's own VAE weights live (`oniris_env/weights/vae.safetensors`)."""
    return shipped_weights_dir() / VAE_FILE


def save_vae(
    model: GroupCausalVAE, path: str | os.PathLike, spec: GameSpec = DEFAULT_SPEC, notes: dict[str, Any] | None = None
) -> Path:
    """Write `model` to `path` (.safetensors) atomically (temp file, then rename). Returns the path."""
    from safetensors.torch import save as safetensors_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "config": json.dumps(model.config.to_dict()),
        "spec": json.dumps(spec.to_dict()),
        "latent_shift": json.dumps(model.latent_shift.tolist()),
        "latent_scale": json.dumps(model.latent_scale.tolist()),
        "notes": json.dumps(notes or {}),
    }
    return atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))  # mode from the umask, not 0600


def read_vae_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The decoded JSON metadata of a VAE checkpoint (config, spec, latent stats, notes)."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as err:  # safetensors raises several types for truncated or foreign files
        raise ValueError(f"{path} is not a readable .safetensors VAE checkpoint: {err}") from err
    if raw.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not an oniris-env VAE checkpoint (format {raw.get('format')!r}, expected {FORMAT!r})"
        )
    try:
        return {k: json.loads(v) for k, v in raw.items() if k != "format"} | {"format": raw["format"]}
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} has corrupt JSON metadata: {err}") from err


def load_vae(
    path: str | os.PathLike | None = None, device: str | torch.device = "cpu", spec: GameSpec = DEFAULT_SPEC
) -> GroupCausalVAE:
    """Load a VAE in eval mode. `path=None` loads the weights shipped in the package.

    Raises `FileNotFoundError` (missing file, with the command that trains one), `ValueError` (corrupt or
    foreign file, or one whose sha256 differs from the one recorded beside it, naming it) or
    `oniris_env.spec.SpecMismatchError` (made for another game spec).
    """
    from safetensors.torch import load_file

    if path is None:
        path = shipped_vae_path()
        if not path.is_file():
            raise FileNotFoundError(
                f"no VAE weights shipped at {path}; train them with `{TRAIN_COMMAND}` "
                "and copy RUN/vae.safetensors there"
            )
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no VAE checkpoint at {path}; train one with `{TRAIN_COMMAND}`")
    verify_checksum(path)
    meta = read_vae_metadata(path)
    spec.check_matches(GameSpec.from_dict(meta["spec"]), str(path))
    model = GroupCausalVAE(VAEConfig.from_dict(meta["config"]))
    try:
        tensors = load_file(str(path))
    except Exception as err:
        raise ValueError(f"{path}: cannot read tensors: {err}") from err
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not match its config: {err}") from err
    return model.to(device).eval()
