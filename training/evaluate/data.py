"""Fresh real episodes for evaluation, recorded in memory from seeds that training never used; and, for the
benchmarks that choose settings without touching those, the held-out episodes of a training collection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from oniris_env.spec import DEFAULT_SPEC, GameSpec
from training.collect import episode_seed, run_episode
from training.dataset import is_validation
from training.episodes import load_episode, require_manifest

#: Training collections use base seed 0 (`oniris-env collect --seed 0`); evaluation seeds must avoid the seeds of
#: its first `TRAIN_SEED_RANGE` episodes (the shipped models saw 800).
TRAIN_BASE_SEED = 0
TRAIN_SEED_RANGE = 20_000


@dataclass(frozen=True)
class RealEpisode:
    """One recorded real episode (`training.collect.run_episode`'s arrays)."""

    seed: int
    policy: str
    outcome: str
    """'landed', 'crashed', 'flew_off' or 'timeout'."""
    frames: np.ndarray
    """`(L + 1, H, W, 3)` uint8."""
    actions: np.ndarray
    """`(L,)` int64; `actions[t]` leads from `frames[t]` to `frames[t + 1]`."""
    rewards: np.ndarray
    """`(L,)` float32 reward of each transition."""
    terminated: np.ndarray
    """`(L,)` bool."""

    @property
    def length(self) -> int:
        """L, the number of transitions."""
        return len(self.actions)

    @classmethod
    def from_arrays(cls, seed: int, policy: str, outcome: str, arrays: dict[str, np.ndarray]) -> RealEpisode:
        """From an episode's arrays (`run_episode`'s, or a stored episode file's)."""
        return cls(
            seed=int(seed),
            policy=str(policy),
            outcome=str(outcome),
            frames=arrays["frames"],
            actions=arrays["actions"],
            rewards=arrays["rewards"],
            terminated=arrays["terminated"],
        )


def eval_seeds(base_seed: int, count: int) -> list[int]:
    """The seeds of `count` evaluation episodes, checked to be disjoint from the training seeds."""
    seeds = [episode_seed(base_seed, i) for i in range(count)]
    check_disjoint(seeds)
    return seeds


def check_disjoint(seeds: list[int], train_base: int = TRAIN_BASE_SEED, train_range: int = TRAIN_SEED_RANGE) -> None:
    """Raise `ValueError` if any seed is also one of the first `train_range` training episode seeds."""
    train = {episode_seed(train_base, i) for i in range(train_range)}
    if clash := sorted(set(seeds) & train):
        raise ValueError(
            f"evaluation seeds {clash[:3]} are also training seeds (base {train_base}); choose another --seed"
        )


def record_episodes(seeds: list[int], spec: GameSpec = DEFAULT_SPEC, progress: bool = True) -> list[RealEpisode]:
    """Play one `mix`-policy real episode per seed (deterministic given the seed)."""
    episodes = []
    for seed in tqdm(seeds, desc="real episodes", unit="ep", disable=not progress):
        arrays, _ = run_episode(seed, "mix", spec)
        episodes.append(RealEpisode.from_arrays(seed, arrays["policy"], arrays["outcome"], arrays))
    return episodes


def validation_episodes(root: str | Path, val_fraction: float = 0.1, limit: int | None = None) -> list[RealEpisode]:
    """The held-out episodes (the `val` split of `training.dataset.EpisodeWindows`) of a collection folder, as
    `RealEpisode`s in manifest order; the first `limit` only when given."""
    root = Path(root)
    manifest = require_manifest(root, "oniris-env collect")
    entries = [e for e in manifest["episodes"] if is_validation(e["seed"], val_fraction)][:limit]
    return [
        RealEpisode.from_arrays(e["seed"], e["policy"], e["outcome"], load_episode(root / e["file"])) for e in entries
    ]
