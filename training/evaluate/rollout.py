"""Replay real actions in the dream from real context frames (the building block of every dream measurement)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from oniris_env.bundle import Bundle
from oniris_env.sampler import DEFAULT_SAMPLER, SamplerConfig
from oniris_env.simulator import DreamSimulator, DreamStep
from training.evaluate.data import RealEpisode


def context_at(episode: RealEpisode, last: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The real context ending at frame `last`: frames `(length, H, W, 3)` uint8 = frames[last - length + 1 ..
    last] and the `(length - 1,)` actions between them."""
    first = last - length + 1
    if first < 0 or last > episode.length:
        raise ValueError(
            f"a context of {length} frames ending at frame {last} does not fit an episode of "
            f"{episode.length + 1} frames"
        )
    return episode.frames[first : last + 1], episode.actions[first:last]


def replay(
    bundle: Bundle,
    frames: np.ndarray,
    context_actions: np.ndarray,
    actions: np.ndarray,
    seed: int,
    decode: bool = True,
    sampler: SamplerConfig = DEFAULT_SAMPLER,
) -> Iterator[DreamStep]:
    """Start n dreams from real contexts and step them through given actions, one batched step at a time.

    Args:
        frames: `(n, T, H, W, 3)` uint8 real context frames; `context_actions (n, T - 1)` int64 between them.
        actions: `(n, S)` int64: dream i takes `actions[i, s]` at step s (pad finished replays with any action).
        seed: seeds the dream sampler, so a replay is reproducible.
    Yields:
        S `DreamStep`s; step s holds the frame reached after `actions[:, s]` (frames only with `decode`).
    """
    n = len(frames)
    if actions.ndim != 2 or len(actions) != n:
        raise ValueError(f"actions must be (n, S) with n = {n} contexts, got {actions.shape}")
    sim = DreamSimulator.from_bundle(bundle, n, sampler=sampler, decode=decode)
    sim.seed(seed)
    sim.reset(None, np.random.default_rng(seed), frames, context_actions.astype(np.int64))
    for s in range(actions.shape[1]):
        yield sim.step(actions[:, s].astype(np.int64))
