"""The game specification shared by every stage: frame size, action repeat, actions, time limit.

One `GameSpec` is stored in every dataset manifest and every checkpoint. Loading compares the stored spec with
the expected one and refuses a mismatch with a message that names both values (`SpecMismatchError`).
This module is pure Python: importing it never imports torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from oniris_env.config_io import dataclass_from_dict

#: LunarLander-v3's time limit, in physics steps (its registered `max_episode_steps`).
LUNAR_LANDER_MAX_PHYSICS_STEPS = 1000

#: LunarLander's discrete actions, by index.
ACTION_MEANINGS = ("noop", "left engine", "main engine", "right engine")


class SpecMismatchError(ValueError):
    """Raised when data or weights were made with another `GameSpec` than the one expected."""


@dataclass(frozen=True)
class GameSpec:
    """How the real game is turned into frames and steps. Every dataset and checkpoint carries one."""

    game: str = "LunarLander-v3"
    """The Gymnasium game the frames come from."""
    frame_height: int = 64
    """Observation height in pixels (H)."""
    frame_width: int = 96
    """Observation width in pixels (W); 64 x 96 keeps the 400 x 600 render's 3:2 aspect."""
    action_repeat: int = 2
    """Physics steps per env step, all with the same action (see docs/RESULTS.md for the measurement)."""
    num_actions: int = 4
    """Size of the Discrete action space (LunarLander's meaning, `ACTION_MEANINGS`)."""
    max_physics_steps: int = LUNAR_LANDER_MAX_PHYSICS_STEPS
    """Time limit in physics steps; the env-step limit is derived from it (`max_episode_steps`)."""

    def __post_init__(self) -> None:
        if self.frame_height <= 0 or self.frame_width <= 0:
            raise ValueError(f"frame size must be positive, got {self.frame_height} x {self.frame_width}")
        if self.action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {self.action_repeat}")
        if self.num_actions < 1:
            raise ValueError(f"num_actions must be >= 1, got {self.num_actions}")
        if self.max_physics_steps < 1:
            raise ValueError(f"max_physics_steps must be >= 1, got {self.max_physics_steps}")

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """Observation shape `(H, W, 3)`."""
        return (self.frame_height, self.frame_width, 3)

    @property
    def max_episode_steps(self) -> int:
        """Env steps covering the same physical time as LunarLander-v3's 1000 physics steps."""
        return math.ceil(self.max_physics_steps / self.action_repeat)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GameSpec:
        return dataclass_from_dict(cls, data)

    def check_matches(self, other: GameSpec, where: str) -> None:
        """Raise `SpecMismatchError` naming both specs when `other` (found in `where`) differs from self."""
        if other != self:
            diff = {
                f.name: (getattr(self, f.name), getattr(other, f.name))
                for f in fields(self)
                if getattr(self, f.name) != getattr(other, f.name)
            }
            details = ", ".join(f"{k}: expected {a!r}, found {b!r}" for k, (a, b) in diff.items())
            raise SpecMismatchError(
                f"{where} was made with another game spec ({details}).\n"
                f"  expected: {self.to_dict()}\n  found:    {other.to_dict()}"
            )


DEFAULT_SPEC = GameSpec()
