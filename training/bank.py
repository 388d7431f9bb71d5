"""Build the start-context bank of a weights bundle from a recorded dataset folder.

A start context is the first `length` frames of a real episode and the `length - 1` actions between them: what
`OnirisLunarLander-v0` feeds the models on `reset` (a few frames give the lander's position and velocity).
Episodes shorter than `length` frames are skipped, and so, by default, are the episodes whose lander is not found
in every context frame: in 16% of the `mix` policy's episodes the lander has already flown above the top of the
screen by the 4th frame, and a dream that starts without a lander never draws one (the world model has never
seen where it went), whereas the real game's reset always shows it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from oniris_env.bundle import CONTEXTS_FILE, StartContexts, save_start_contexts
from oniris_env.spec import GameSpec
from training.dataset import EpisodeWindows
from training.lander import lander_centroid

DEFAULT_CONTEXT_LENGTH = 4


def build_start_contexts(
    data_dir: str | os.PathLike,
    length: int = DEFAULT_CONTEXT_LENGTH,
    split: str = "all",
    max_contexts: int | None = None,
    require_lander: bool = True,
) -> tuple[StartContexts, GameSpec]:
    """Collect the starts of the episodes of `split` in `data_dir`, in dataset order, at most `max_contexts`
    (`require_lander`: only starts whose every frame shows the lander, see the module docstring).

    Returns the contexts (frames (N, length, H, W, 3) uint8, actions (N, length - 1) int64) and the dataset's
    `GameSpec` (stored with the bank).
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    windows = EpisodeWindows(data_dir, window=length, split=split)
    frames, actions = [], []
    for i in range(len(windows.episodes)):
        episode = windows.episode(i)
        if len(episode["frames"]) < length:
            continue
        start = episode["frames"][:length]
        if require_lander and any(lander_centroid(f) is None for f in start):
            continue
        frames.append(start)
        actions.append(episode["actions"][: length - 1].astype(np.int64))
        if max_contexts is not None and len(frames) >= max_contexts:
            break
    if not frames:
        lander = " and shows the lander in all of them" if require_lander else ""
        raise ValueError(
            f"no episode of the {split!r} split of {data_dir} has {length} frames{lander}: nothing to start from"
        )
    return StartContexts(np.stack(frames), np.stack(actions)), windows.spec


def write_start_contexts(
    data_dir: str | os.PathLike,
    bundle_dir: str | os.PathLike,
    length: int = DEFAULT_CONTEXT_LENGTH,
    split: str = "all",
    max_contexts: int | None = None,
    require_lander: bool = True,
) -> Path:
    """`build_start_contexts` and write them to `bundle_dir/start_contexts.npz`."""
    contexts, spec = build_start_contexts(data_dir, length, split, max_contexts, require_lander)
    return save_start_contexts(Path(bundle_dir) / CONTEXTS_FILE, contexts, spec)
