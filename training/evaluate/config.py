"""`EvalConfig`: what `oniris-env evaluate` measures and on how much data (saved in report.json)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from oniris_env.sampler import DEFAULT_SAMPLER, SamplerConfig

#: Base seed of the evaluation episodes. Training data used `episode_seed(0, i)`; `data.check_disjoint` guards
#: against collisions with the first `TRAIN_SEED_RANGE` training seeds.
EVAL_BASE_SEED = 1_000_003


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings (defaults: the figures of docs/RESULTS.md)."""

    episodes: int = 16
    """Fresh real episodes recorded with the `mix` policy."""
    base_seed: int = EVAL_BASE_SEED
    """Episode i has seed `episode_seed(base_seed, i)`."""
    horizons: tuple[int, ...] = (1, 8, 32, 128)
    """Open-loop horizons in env steps after the last context frame."""
    max_open_loop_steps: int | None = None
    """Cap on the open-loop replay from the episode start (None: whole episodes)."""
    terminal_steps: int = 16
    """Length of the terminal-anchored replays (the last K steps of every episode)."""
    term_tolerance: int = 2
    """A predicted episode end matches a real one when they are at most this many steps apart."""
    control_steps: int = 16
    """Steps each action is held in a controllability trial."""
    control_offsets: tuple[int, ...] = (0, 24)
    """Controllability trials start after this many real steps of each episode (if it is long enough)."""
    long_steps: int = 1000
    """Length of the free long dreams."""
    long_dreams: int = 4
    """Free long dreams per long-dream policy (all in one batch; figures are their means)."""
    video_steps: int = 128
    """Frames of the side-by-side video (real | dream | difference), per shown episode."""
    video_episodes: int = 2
    """Episodes shown in the side-by-side video."""
    mp4: bool = False
    """Also write side_by_side.mp4 when the `video` extra (imageio-ffmpeg) is installed."""
    cost_steps: int = 20
    """Timed dream steps per speed measurement (after a short warm-up)."""
    seed: int = 0
    """Seed of the dreams' samplers and of the random long-dream policy."""
    sampler: SamplerConfig = DEFAULT_SAMPLER
    """How every dream of the evaluation denoises its frames (the env's default unless told otherwise)."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if not self.horizons or min(self.horizons) < 1 or list(self.horizons) != sorted(set(self.horizons)):
            raise ValueError(f"horizons must be increasing positive ints, got {self.horizons}")
        if self.max_open_loop_steps is not None and self.max_open_loop_steps < 1:
            raise ValueError(f"max_open_loop_steps must be >= 1 or None, got {self.max_open_loop_steps}")
        for name in ("terminal_steps", "control_steps", "long_steps", "long_dreams", "video_steps", "cost_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.term_tolerance < 0 or self.video_episodes < 0:
            raise ValueError("term_tolerance and video_episodes must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
