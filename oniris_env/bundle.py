"""The weights bundle of a dream: one directory holding everything `OnirisLunarLander-v0` needs.

    vae.safetensors           the VAE (`oniris_env.vae.save_vae`)
    world_model.safetensors   the world model (`oniris_env.world_model.save_world_model`)
    start_contexts.npz        real episode starts: frames (N, T, H, W, 3) uint8, actions (N, T - 1) int64,
                              spec (the GameSpec as a JSON string)

The default bundle is the package's own `oniris_env/weights/` directory. Everything is plain data: loading
rebuilds the models from their configs, reads `.npz` with `allow_pickle=False`, and never unpickles anything.
Every problem names the file: a missing file -> `FileNotFoundError` with the command that produces it, a corrupt
one, or one whose sha256 differs from the `SHA256SUMS` record beside it (`oniris_env.checksums`; the shipped
bundle has one) -> `ValueError`, another game spec -> `SpecMismatchError` naming both specs.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from oniris_env.checksums import verify_checksum
from oniris_env.spec import DEFAULT_SPEC, GameSpec

if TYPE_CHECKING:
    from oniris_env.vae import GroupCausalVAE
    from oniris_env.world_model import WorldModel

VAE_FILE = "vae.safetensors"
WORLD_MODEL_FILE = "world_model.safetensors"
CONTEXTS_FILE = "start_contexts.npz"
BUNDLE_FILES = (VAE_FILE, WORLD_MODEL_FILE, CONTEXTS_FILE)

#: What produces a bundle (in OUT/bundle; the stages are `train vae`, `encode`, `train world-model`, and
#: `training.bank.build_start_contexts` for the start contexts).
MAKE_COMMAND = "oniris-env train --preset default --out runs/default"


def shipped_weights_dir() -> Path:
    """The package's own bundle directory, `oniris_env/weights/`."""
    return Path(str(resources.files("oniris_env").joinpath("weights")))


@dataclass(frozen=True)
class StartContexts:
    """Real episode starts a dream is reset from."""

    frames: np.ndarray
    """`(N, T, H, W, 3)` uint8: the first T frames of N real episodes."""
    actions: np.ndarray
    """`(N, T - 1)` int64: `actions[n, i]` was taken between frames i and i + 1."""

    def __len__(self) -> int:
        return len(self.frames)


def check_frames(frames: Any, spec: GameSpec = DEFAULT_SPEC, batched: bool = False) -> None:
    """Raise `ValueError` naming the expected shape unless `frames` is uint8 `(T, H, W, 3)` with T >= 1 (with
    `batched`, `(N, T, H, W, 3)`)."""
    lead = "N, " if batched else ""
    expected = f"({lead}T, {', '.join(map(str, spec.frame_shape))})"
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        got = frames.dtype if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"context frames must be a uint8 numpy array of shape {expected}, got {got}")
    nd = 5 if batched else 4
    if frames.ndim != nd or frames.shape[nd - 3 :] != spec.frame_shape or frames.shape[nd - 4] < 1:
        raise ValueError(f"context frames must have shape {expected} with T >= 1, got {frames.shape}")


def check_context(frames: Any, actions: Any, spec: GameSpec = DEFAULT_SPEC, batched: bool = False) -> None:
    """Raise `ValueError` naming the expected shape/dtype unless `frames` is uint8 `(T, H, W, 3)` (T >= 1) and
    `actions` an integer `(T - 1,)` array of valid actions; with `batched`, both carry a leading N axis."""
    check_frames(frames, spec, batched)
    nd = 5 if batched else 4
    t = frames.shape[nd - 4]
    want = (*frames.shape[: nd - 4], t - 1)
    actions = np.asarray(actions)
    if actions.shape != want or (actions.size and not np.issubdtype(actions.dtype, np.integer)):
        raise ValueError(f"context actions must be an integer array of shape {want} (T - 1 for T = {t} frames), "
                         f"got {actions.dtype} {actions.shape}")
    if actions.size and (actions.min() < 0 or actions.max() >= spec.num_actions):
        raise ValueError(f"context actions must be in [0, {spec.num_actions}), got {actions.min()}..{actions.max()}")


def save_start_contexts(path: str | os.PathLike, contexts: StartContexts, spec: GameSpec = DEFAULT_SPEC) -> Path:
    """Write the bank to `path` (.npz, compressed) atomically."""
    check_context(contexts.frames, contexts.actions, spec, batched=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, frames=contexts.frames, actions=contexts.actions.astype(np.int64),
                            spec=np.array(json.dumps(spec.to_dict())))
    os.replace(tmp, path)
    return path


def load_start_contexts(path: str | os.PathLike, spec: GameSpec = DEFAULT_SPEC) -> StartContexts:
    """Read and check a start-context bank (`allow_pickle=False`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no start contexts at {path}; build them with `{MAKE_COMMAND}` "
                                "(or training.bank.build_start_contexts)")
    verify_checksum(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        found = GameSpec.from_dict(json.loads(str(arrays["spec"])))
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, TypeError) as e:
        raise ValueError(f"{path}: corrupt start-context bank ({type(e).__name__}: {e})") from e
    spec.check_matches(found, str(path))
    if "frames" not in arrays or "actions" not in arrays:
        raise ValueError(f"{path}: start-context bank needs arrays 'frames' and 'actions', has {sorted(arrays)}")
    try:
        check_context(arrays["frames"], arrays["actions"], spec, batched=True)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    if len(arrays["frames"]) == 0:
        raise ValueError(f"{path}: the start-context bank is empty")
    return StartContexts(arrays["frames"], arrays["actions"].astype(np.int64))


@dataclass
class Bundle:
    """A loaded weights bundle."""

    vae: GroupCausalVAE
    world_model: WorldModel
    contexts: StartContexts
    path: Path
    spec: GameSpec


def resolve_bundle_dir(weights: str | os.PathLike | None) -> Path:
    """`weights` as a directory holding all `BUNDLE_FILES`, or a `FileNotFoundError` naming what is missing.

    An empty path is refused (`ValueError`): `Path("")` is the current folder, never what was meant; anything but a
    path or None is a `TypeError`."""
    if weights is not None and not isinstance(weights, str | os.PathLike):
        raise TypeError(f"weights must be a directory path (str or os.PathLike) or None, got {type(weights).__name__}")
    if weights is not None and not os.fspath(weights):
        raise ValueError("weights is an empty path; pass a weights directory, or None for the shipped weights")
    shipped = weights is None
    path = shipped_weights_dir() if shipped else Path(weights)
    missing = [name for name in BUNDLE_FILES if not (path / name).is_file()]
    if missing:
        what = "the package ships no trained weights yet" if shipped else "not a complete weights bundle"
        raise FileNotFoundError(
            f"{path}: {what} (missing {', '.join(missing)}). Produce them with `{MAKE_COMMAND}` and copy the "
            f"files there, or pass weights=DIR (a directory with {', '.join(BUNDLE_FILES)})"
        )
    return path


def load_bundle(weights: str | os.PathLike | None = None, device: str = "cpu", spec: GameSpec = DEFAULT_SPEC) -> Bundle:
    """Load and cross-check a bundle (`weights=None`: the package's own). The VAE's latent shape must be the
    world model's, one latent per env step (time compression 1)."""
    from oniris_env.vae import load_vae
    from oniris_env.world_model import load_world_model

    path = resolve_bundle_dir(weights)
    vae = load_vae(path / VAE_FILE, device=device, spec=spec)
    world_model = load_world_model(path / WORLD_MODEL_FILE, spec=spec, device=device)
    contexts = load_start_contexts(path / CONTEXTS_FILE, spec)
    check_models(vae, world_model, path)
    return Bundle(vae, world_model, contexts, path, spec)


def check_models(vae: GroupCausalVAE, world_model: WorldModel, where: Path | str) -> None:
    """Raise `ValueError` unless the two models fit together (latent shape, one latent per frame)."""
    if vae.config.time_compression != 1:
        raise ValueError(f"{where}: the dream needs one latent per env step, but the VAE compresses time by "
                         f"{vae.config.time_compression}")
    if tuple(vae.config.latent_shape) != tuple(world_model.config.latent_shape):
        raise ValueError(f"{where}: VAE latent shape {vae.config.latent_shape} != world model latent shape "
                         f"{world_model.config.latent_shape}")


def save_bundle(
    path: str | os.PathLike, vae: GroupCausalVAE, world_model: WorldModel, contexts: StartContexts,
    spec: GameSpec = DEFAULT_SPEC,
) -> Path:
    """Write a complete bundle directory (for training runs, tests and benchmarks)."""
    from oniris_env.vae import save_vae
    from oniris_env.world_model import save_world_model

    path = Path(path)
    check_models(vae, world_model, path)
    save_vae(vae, path / VAE_FILE, spec=spec)
    save_world_model(world_model, path / WORLD_MODEL_FILE, spec)
    save_start_contexts(path / CONTEXTS_FILE, contexts, spec)
    return path


def synthetic_contexts(num: int, length: int, seed: int = 0, spec: GameSpec = DEFAULT_SPEC) -> StartContexts:
    """`num` fake start contexts of `length` frames: black sky, a grey ground strip and a bright square that
    falls one pixel per frame (for tests and benchmarks that must not depend on recorded data)."""
    rng = np.random.default_rng(seed)
    h, w, _ = spec.frame_shape
    frames = np.zeros((num, length, h, w, 3), dtype=np.uint8)
    frames[:, :, h - 8 :] = 90
    for n in range(num):
        x, y = int(rng.integers(8, w - 8)), int(rng.integers(2, 12))
        for t in range(length):
            frames[n, t, y + t : y + t + 4, x : x + 4] = (130, 100, 230)
    actions = rng.integers(spec.num_actions, size=(num, length - 1)).astype(np.int64)
    return StartContexts(frames, actions)


def save_random_bundle(
    path: str | os.PathLike,
    vae_preset: str = "tiny",
    world_model_preset: str = "tiny",
    contexts: StartContexts | None = None,
    seed: int = 0,
    spec: GameSpec = DEFAULT_SPEC,
    **world_model_overrides: Any,
) -> Path:
    """A bundle of randomly initialised models (tests, and benchmarks: speed does not depend on training).

    The world model's latent shape is taken from the VAE preset; its final layers are re-initialised with small
    random weights (they start at zero), so that outputs depend on the inputs as in a trained model.
    """
    import torch

    from oniris_env.vae import VAE_PRESETS, GroupCausalVAE
    from oniris_env.world_model import WorldModel, WorldModelConfig

    torch.manual_seed(seed)
    vae = GroupCausalVAE(VAE_PRESETS[vae_preset]).eval()
    c, h, w = vae.config.latent_shape
    config = WorldModelConfig.preset(
        world_model_preset, latent_channels=c, latent_height=h, latent_width=w,
        num_actions=spec.num_actions, **world_model_overrides,
    )
    world_model = WorldModel(config).eval()
    with torch.no_grad():
        for p in world_model.parameters():
            if p.dim() > 1 and not p.any():  # zero-initialised output layers (adaLN-Zero, final_out)
                p.normal_(0.0, 0.02)
    contexts = contexts if contexts is not None else synthetic_contexts(4, 4, seed, spec)
    return save_bundle(path, vae, world_model, contexts, spec)
