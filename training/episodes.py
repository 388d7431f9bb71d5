"""Episodes on disk: one `np.savez_compressed` file per episode plus a `manifest.json` per folder.

An episode of T steps holds
    frames      (T+1, H, W, 3) uint8    observations, frames[0] after reset, frames[t+1] after action t
    actions     (T,) int64              action t, taken between frames t and t+1
    rewards     (T,) float32            reward of step t (summed over the action repeat)
    terminated  (T,) bool               true only at the terminal step (kept, never dropped)
    truncated   (T,) bool               true only at a time-limit step
    states      (T+1, 8) float32        true LunarLander state of each frame
    seed        () int64                the episode's seed (the file is reproducible from it)
A latent folder (made by `oniris-env encode`) stores `latents (T+1, C, h, w)` instead of frames and states.
Files are written to a temporary name and renamed, so a file that exists is complete; they are read with
`allow_pickle=False`, and every problem is reported as `EpisodeFileError` naming the file.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from oniris_env.spec import GameSpec

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TRANSITION_KEYS = ("actions", "rewards", "terminated", "truncated")
_DTYPES = {"actions": np.int64, "rewards": np.float32, "terminated": np.bool_, "truncated": np.bool_}


class EpisodeFileError(ValueError):
    """An episode file or manifest is missing, corrupt, truncated or inconsistent; the message names the file."""


def episode_filename(index: int) -> str:
    return f"ep_{index:06d}.npz"


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_episode(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Validate `arrays` and write them compressed to `path` atomically (temp name, then rename)."""
    path = Path(path)
    validate_episode(arrays, path)
    _atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def validate_episode(arrays: dict[str, np.ndarray], path: Path | str, key: str | None = None) -> int:
    """Check keys, dtypes and aligned lengths of one episode; return its number of steps T."""
    key = key or ("frames" if "frames" in arrays else "latents")
    missing = [k for k in (key, *TRANSITION_KEYS) if k not in arrays]
    if missing:
        raise EpisodeFileError(f"{path}: missing arrays {missing} (has {sorted(arrays)})")
    steps = len(arrays["actions"])
    if len(arrays[key]) != steps + 1:
        raise EpisodeFileError(f"{path}: {key} has {len(arrays[key])} entries, expected T+1 = {steps + 1}")
    for k in TRANSITION_KEYS:
        if arrays[k].shape != (steps,):
            raise EpisodeFileError(f"{path}: {k} has shape {arrays[k].shape}, expected ({steps},)")
    if key == "frames" and (arrays["frames"].dtype != np.uint8 or arrays["frames"].ndim != 4):
        raise EpisodeFileError(f"{path}: frames must be (T+1, H, W, 3) uint8, got {arrays['frames'].shape} "
                               f"{arrays['frames'].dtype}")
    ends = arrays["terminated"] | arrays["truncated"]
    if ends[:-1].any():
        raise EpisodeFileError(f"{path}: the episode ends before its last step (step {int(np.argmax(ends))})")
    return steps


def load_episode(path: Path | str, key: str = "frames") -> dict[str, np.ndarray]:
    """Load and check one episode file. Raises `EpisodeFileError` naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise EpisodeFileError(f"{path}: episode file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise EpisodeFileError(f"{path}: corrupt or truncated episode file ({type(e).__name__}: {e})") from e
    validate_episode(arrays, path, key)
    for k, dtype in _DTYPES.items():
        arrays[k] = arrays[k].astype(dtype, copy=False)
    return arrays


def check_episode_file(path: Path | str, entry: dict[str, Any], key: str = "frames") -> None:
    """Check that `path` is a complete episode file and is the manifest's `entry` (same length and seed) without
    decompressing its frames: the small arrays are read, the frames' (or latents') shape and dtype from their
    header. Raises `EpisodeFileError` naming the file (a truncated copy, a damaged or swapped file)."""
    path = Path(path)
    if not path.is_file():
        raise EpisodeFileError(f"{path}: episode file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in (*TRANSITION_KEYS, "seed") if k in data.files}
            if key in data.files:
                with data.zip.open(f"{key}.npy") as f:
                    version = np.lib.format.read_magic(f)
                    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else (
                        np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(f)
                arrays[key] = np.broadcast_to(np.zeros((), dtype), shape)  # the shape and dtype, no data
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise EpisodeFileError(f"{path}: corrupt or truncated episode file ({type(e).__name__}: {e})") from e
    steps = validate_episode(arrays, path, key)
    if steps != entry["length"]:
        raise EpisodeFileError(f"{path}: {steps} steps, but the manifest lists {entry['length']}")
    if "seed" in arrays and int(arrays["seed"]) != int(entry["seed"]):
        raise EpisodeFileError(f"{path}: seed {int(arrays['seed'])}, but the manifest lists {entry['seed']}")


def read_manifest(root: Path | str) -> dict[str, Any] | None:
    """The folder's manifest, or None when the folder has none yet."""
    path = Path(root) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EpisodeFileError(f"{path}: unreadable manifest ({e})") from e
    if manifest.get("format_version") != FORMAT_VERSION:
        raise EpisodeFileError(f"{path}: format_version {manifest.get('format_version')!r}, "
                               f"this code reads {FORMAT_VERSION}")
    for field in ("spec", "episodes"):
        if field not in manifest:
            raise EpisodeFileError(f"{path}: manifest has no {field!r}")
    return manifest


def write_manifest(root: Path | str, manifest: dict[str, Any]) -> None:
    """Write `manifest.json` atomically."""
    text = json.dumps(manifest, indent=1).encode()
    _atomic_write(Path(root) / MANIFEST, lambda f: f.write(text))


def new_manifest(spec: GameSpec, kind: str = "frames", **extra: Any) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "kind": kind, "spec": spec.to_dict(), **extra, "episodes": []}


def manifest_spec(manifest: dict[str, Any]) -> GameSpec:
    return GameSpec.from_dict(manifest["spec"])


KINDS = {
    "frames": "an episode folder (recorded frames, made by `oniris-env collect`)",
    "latents": "a latent folder (made by `oniris-env encode`)",
}
"""What each folder kind (`manifest["kind"]`) holds, as the messages name it."""


def check_kind(manifest: dict[str, Any], kind: str, root: Path | str) -> None:
    """Raise `EpisodeFileError` naming the folder and both kinds unless `manifest` is of `kind` (a manifest
    without a kind holds frames)."""
    found = manifest.get("kind", "frames")
    if found != kind:
        raise EpisodeFileError(f"{root} is {KINDS.get(found, repr(found))}, but this needs {KINDS[kind]}")


def require_manifest(root: Path | str, hint: str, kind: str | None = None) -> dict[str, Any]:
    """The manifest of `root`, or a FileNotFoundError naming the path and `hint` (the command that makes it);
    with `kind`, an `EpisodeFileError` when the folder is of another kind (`check_kind`)."""
    manifest = read_manifest(root)
    if manifest is None:
        raise FileNotFoundError(f"no dataset at {Path(root)} (missing {MANIFEST}); create it with: {hint}")
    if kind is not None:
        check_kind(manifest, kind, root)
    return manifest
