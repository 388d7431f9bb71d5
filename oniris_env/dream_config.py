"""`DreamConfig`: what every dream adapter is built from (the single env, the vector env, the SB3 VecEnv and the
`DreamEpisodes` they share), so the arguments are checked in one place and passed as one value."""

from __future__ import annotations

import os
from dataclasses import dataclass

from oniris_env.sampler import DEFAULT_SAMPLER, SamplerConfig
from oniris_env.simulator import DEFAULT_TERMINATION_THRESHOLD

OBS_MODES = ("pixels", "latent")


@dataclass(frozen=True)
class DreamConfig:
    """The weights, observation, device, sampler and episode rules of a dream."""

    weights: str | os.PathLike | None = None
    """Weights bundle directory (None: the shipped one)."""
    obs_mode: str = "pixels"
    """'pixels' (uint8 frames) or 'latent' (the VAE latents the world model dreams in; no decode, faster)."""
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'."""
    sampler: SamplerConfig | None = DEFAULT_SAMPLER
    """Denoising schedule and solver of every generated frame (None: `DEFAULT_SAMPLER`)."""
    termination_threshold: float = DEFAULT_TERMINATION_THRESHOLD
    """A transition terminates when the termination head's probability exceeds this."""
    max_episode_steps: int | None = None
    """Truncate a dream after this many steps (None: never)."""
    compile: bool = False
    """`torch.compile` the world model's cached step: faster per step after a one-off compilation of minutes
    (torch's compile cache shortens it for later runs of the same shapes); for long runs, e.g. agent training."""

    def __post_init__(self) -> None:
        if self.sampler is None:  # the adapters' `sampler=None` keyword
            object.__setattr__(self, "sampler", DEFAULT_SAMPLER)
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {self.obs_mode!r}")
        if self.max_episode_steps is not None and (
            isinstance(self.max_episode_steps, bool) or self.max_episode_steps < 1
        ):
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {self.max_episode_steps}")
        if not 0.0 < self.termination_threshold < 1.0:
            raise ValueError(f"termination_threshold must be in (0, 1), got {self.termination_threshold}")
        if not isinstance(self.sampler, SamplerConfig):
            raise TypeError(f"sampler must be a SamplerConfig, got {type(self.sampler).__name__}")
