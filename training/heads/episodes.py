"""The encoded real episodes a head refit learns from (latent folders written by `oniris-env encode`), split
by seed as the world model's training split (`training.dataset.is_validation`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from training.dataset import is_validation
from training.episodes import load_episode, require_manifest


@dataclass
class RealLatentEpisode:
    """One encoded real episode (a latent folder's file, with the manifest's seed and outcome)."""

    seed: int
    outcome: str
    latents: Tensor
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray


def load_latent_episodes(roots: list[Path], limit: int | None = None) -> list[RealLatentEpisode]:
    """Every episode of the latent folders `roots` (written by `oniris-env encode`), in folder and index order;
    `limit` keeps the first episodes of each folder."""
    episodes = []
    for root in roots:
        manifest = require_manifest(root, f"oniris-env encode --data data/real --out {root}")
        for entry in manifest["episodes"][:limit]:
            arrays = load_episode(Path(root) / entry["file"], key="latents")
            episodes.append(
                RealLatentEpisode(
                    seed=int(entry["seed"]),
                    outcome=str(entry.get("outcome", "unknown")),
                    latents=torch.as_tensor(arrays["latents"]),
                    actions=arrays["actions"],
                    rewards=arrays["rewards"],
                    terminated=arrays["terminated"],
                )
            )
    return episodes


def split_episodes(episodes: list[RealLatentEpisode], val_fraction: float) -> tuple[list[int], list[int]]:
    """Indices of the training and held-out episodes (by seed, as the world model's training split)."""
    val = [i for i, e in enumerate(episodes) if is_validation(e.seed, val_fraction)]
    held = set(val)
    return [i for i in range(len(episodes)) if i not in held], val


def dream_segment(episode: RealLatentEpisode, steps: int, end_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The real rewards and terminations of the transitions a dream of `dreamt_heads` covers."""
    stop = len(episode.actions) - end_offset
    return episode.rewards[stop - steps : stop], episode.terminated[stop - steps : stop]
