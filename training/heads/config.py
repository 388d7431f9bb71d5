"""`HeadRefitConfig`: how the heads are refitted, with named presets ('tiny' for tests, 'default' shipped)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class HeadRefitConfig:
    steps: int = 6000
    """Optimiser steps on the recorded head inputs."""
    batch_size: int = 1024
    """Transitions per step (drawn uniformly from the training split)."""
    lr: float = 1e-3
    """AdamW learning rate, cosine-decayed to 0."""
    weight_decay: float = 0.01
    term_pos_weight: float = 10.0
    """Termination BCE pos_weight (as in `TrainWorldModelConfig`)."""
    reward_weight: float = 1.0
    """Weight of the reward cross-entropy next to the termination BCE."""
    val_fraction: float = 0.1
    """Held-out share of episodes, split by seed as the world model's training split."""
    episode_batch: int = 64
    """Episodes committed side by side when recording head inputs (by length, to waste little padding)."""
    seed: int = 0
    dream_steps: int = 16
    """Transitions per dream (`dreamt_heads`); the evaluation's terminal-anchored replays are 16 long."""
    dream_offsets: tuple[int, ...] = (0, 16)
    """Dreams end this many transitions before each episode's end (0: at the end, where the heads must fire;
    16: the stretch before it, where they must not). Empty: real frames only."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "dream_offsets", tuple(int(o) for o in self.dream_offsets))
        if any(o < 0 for o in self.dream_offsets) or len(set(self.dream_offsets)) != len(self.dream_offsets):
            raise ValueError(f"dream_offsets must be distinct and >= 0, got {self.dream_offsets}")
        for name in ("steps", "batch_size", "episode_batch", "dream_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.lr <= 0 or self.term_pos_weight <= 0 or self.reward_weight < 0:
            raise ValueError("lr and term_pos_weight must be > 0, reward_weight >= 0")

    @classmethod
    def preset(cls, name: str, **overrides) -> HeadRefitConfig:
        if name not in HEAD_REFIT_PRESETS:
            raise ValueError(f"unknown head-refit preset {name!r}; choose one of {', '.join(HEAD_REFIT_PRESETS)}")
        return cls(**{**asdict(HEAD_REFIT_PRESETS[name]), **overrides})


HEAD_REFIT_PRESETS = {
    "tiny": HeadRefitConfig(steps=30, batch_size=64, val_fraction=0.3, episode_batch=4, dream_steps=3),
    "default": HeadRefitConfig(),
}
