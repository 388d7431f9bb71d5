"""`OnirisLunarLanderVector`: a gymnasium `VectorEnv` of B dreams stepped in one forward pass.

`gym.make_vec("OnirisLunarLander-v0", num_envs=16)` builds it (the id's `vector_entry_point`). Episodes reset
automatically in the same step (`AutoresetMode.SAME_STEP`, as SB3 does): when dream i terminates or truncates,
`step` returns the first observation of its next episode, and the last observation of the finished one in
`info["final_obs"][i]` (with `info["_final_obs"][i] = True`, and `info["final_info"][i]`).

`DreamEpisodes` holds the episode bookkeeping (time limits, observations, same-step autoreset) shared with the
Stable-Baselines3 adapter (`oniris_env.sb3_vec_env`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from torch import Tensor

from oniris_env.dream_config import DreamConfig
from oniris_env.dream_env import context_arrays, open_dreams
from oniris_env.real_env import PHYSICS_FPS
from oniris_env.sampler import SamplerConfig
from oniris_env.simulator import DEFAULT_TERMINATION_THRESHOLD, latents_to_numpy
from oniris_env.spec import DEFAULT_SPEC


@dataclass(frozen=True)
class BatchStep:
    """One autoresetting step of B dreams."""

    obs: np.ndarray
    """`(B, *obs_shape)`: next observations (the first of a new episode where `done`)."""
    rewards: np.ndarray
    """`(B,)` float32."""
    terminated: np.ndarray
    """`(B,)` bool."""
    truncated: np.ndarray
    """`(B,)` bool: the time limit was reached (and the dream did not terminate)."""
    final_obs: np.ndarray
    """`(B, *obs_shape)`: the step's own observations, before any reset (the last of a finished episode)."""
    lost_lander: np.ndarray
    """`(B,)` bool: terminated because the lander left the view (`lost_lander_reward`)."""

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class DreamEpisodes:
    """B dream episodes over one `DreamSimulator`: observations, time limits and same-step autoreset.

    Args mirror `OnirisLunarLanderDream`'s, plus `num_envs`, `max_episode_steps` (None: no time limit) and
    `lost_lander_reward`: None (default) lets a dream go on whatever it draws; a number ends (terminates) a dream
    on the first frame without a visible lander, with that reward instead of the reward head's. The world model
    cannot see a lander that has left the view and never draws it again, so its reward head's guesses there are
    free for an agent to exploit (a dream-trained PPO learned to fly off the top and collect them); the real game
    ends a flight off the side of the screen with -100. Needs decoded frames (the simulator decodes).
    """

    def __init__(
        self,
        num_envs: int,
        config: DreamConfig,
        render: bool = False,
        lost_lander_reward: float | None = None,
    ) -> None:
        self.simulator, self.single_observation_space, _ = open_dreams(
            num_envs, config, render or lost_lander_reward is not None
        )
        self.num_envs, self.obs_mode, self.max_episode_steps = int(num_envs), config.obs_mode, config.max_episode_steps
        self.lost_lander_reward = lost_lander_reward
        self.single_action_space = spaces.Discrete(DEFAULT_SPEC.num_actions)
        self.elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self.rng = np.random.default_rng()
        self._obs: np.ndarray | None = None
        self.closed = False

    def close(self) -> None:
        """After this, `reset` and `step` raise `RuntimeError` (closing twice is allowed)."""
        self.closed = True

    def _check_open(self, method: str) -> None:
        if self.closed:
            raise RuntimeError(f"{method}() called after close(): make a new env")

    def seed(self, seed: int | list[int | None] | None) -> None:
        """Seed the bank draws and the sampler (a list of per-env seeds seeds the whole batch from the list)."""
        if seed is None:
            return
        entropy = [int(s) for s in seed if s is not None] if isinstance(seed, list | tuple) else int(seed)
        self.rng = np.random.default_rng(entropy)
        self.simulator.seed(int(self.rng.integers(2**63 - 1)))

    def _observations(self, frames: np.ndarray | None, latents: Tensor) -> np.ndarray:
        return frames if self.obs_mode == "pixels" else latents_to_numpy(latents)

    def reset(
        self, mask: np.ndarray | None = None, frames: np.ndarray | None = None, actions: np.ndarray | None = None
    ) -> np.ndarray:
        """Reset the dreams in `mask (B,)` (None: all), from the bank or from `frames (n, T, H, W, 3)` +
        `actions (n, T - 1)`; return all B observations (copied)."""
        self._check_open("reset")
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else mask
        frame, latent = self.simulator.reset(mask, self.rng, frames, actions)
        obs = self._observations(frame, latent)
        if self._obs is None:
            self._obs = np.zeros(
                (self.num_envs, *self.single_observation_space.shape), self.single_observation_space.dtype
            )
        self._obs[mask] = obs
        self.elapsed[mask] = 0
        return self._obs.copy()

    def step(self, actions: Any) -> BatchStep:
        """Step all dreams under `actions (B,)` (checked by `DreamSimulator.step`: a `ValueError` steps nothing);
        reset the finished ones in the same call."""
        self._check_open("step")
        if self._obs is None or not self.simulator.started.all():
            raise RuntimeError("step() called before reset(): call reset() first")
        out = self.simulator.step(actions)
        final_obs = self._observations(out.frames, out.latents)
        self.elapsed += 1
        terminated = out.terminated.copy()
        rewards = out.rewards.astype(np.float32)
        lost = np.zeros(self.num_envs, dtype=bool)
        if self.lost_lander_reward is not None:
            from training.lander import landers_visible

            lost = ~terminated & ~landers_visible(out.frames)
            rewards[lost] = self.lost_lander_reward
            terminated |= lost
        truncated = ~terminated
        if self.max_episode_steps is not None:
            truncated &= self.elapsed >= self.max_episode_steps
        else:
            truncated[:] = False
        obs = final_obs.copy()
        done = terminated | truncated
        if done.any():
            obs[done] = self.reset(done)[done]
        self._obs = obs.copy()
        return BatchStep(obs, rewards, terminated, truncated, final_obs, lost)

    def frames(self) -> np.ndarray:
        """`(B, H, W, 3)` uint8 current frames."""
        return self.simulator.render_frames()


class OnirisLunarLanderVector(gym.vector.VectorEnv):
    """`num_envs` dreams of `OnirisLunarLander-v0` in one batch (see module docstring and the env's docstring).

    Args: `num_envs`, `max_episode_steps` (default 500, `DEFAULT_SPEC.max_episode_steps`; None disables it),
    `weights`, `obs_mode`, `render_mode` (None or 'rgb_array': a tuple of frames), `device`, `sampler`,
    `termination_threshold` (as `OnirisLunarLanderDream`).

    `reset(seed=..., options=...)`: `seed` an int (or a list, which seeds the batch as a whole); `options` may hold
    `reset_mask` (bool `(num_envs,)`: reset only those), and `context_frames` uint8 `(n, T, 64, 96, 3)` +
    `context_actions` int `(n, T - 1)` for the n dreams reset (checked as the single env's: a one-frame context
    needs no actions; actions without frames are refused). After `close()`, `reset` and `step` raise
    `RuntimeError`.
    """

    metadata = {
        "render_modes": ["rgb_array"],
        "render_fps": PHYSICS_FPS // DEFAULT_SPEC.action_repeat,
        "autoreset_mode": AutoresetMode.SAME_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int | None = DEFAULT_SPEC.max_episode_steps,
        weights: str | os.PathLike | None = None,
        obs_mode: str = "pixels",
        render_mode: str | None = None,
        device: str = "auto",
        sampler: SamplerConfig | None = None,
        termination_threshold: float = DEFAULT_TERMINATION_THRESHOLD,
        compile: bool = False,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        config = DreamConfig(weights, obs_mode, device, sampler, termination_threshold,
                             max_episode_steps, compile)
        self.episodes = DreamEpisodes(num_envs, config, render_mode is not None)
        self.num_envs = self.episodes.num_envs
        self.single_observation_space = self.episodes.single_observation_space
        self.single_action_space = self.episodes.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed if isinstance(seed, int | None) else None)
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_ or not mask.any():
                raise ValueError(
                    f"options['reset_mask'] must be a bool array of shape ({self.num_envs},) with at "
                    f"least one True, got {mask.dtype} {mask.shape}"
                )
        frames, actions = options.pop("context_frames", None), options.pop("context_actions", None)
        if options:
            raise ValueError(
                f"unknown reset options {sorted(options)}; supported: 'reset_mask', 'context_frames', 'context_actions'"
            )
        if frames is not None or actions is not None:  # checked as the single env checks them
            frames, actions = context_arrays(frames, actions, batched=True)
        self.episodes.seed(seed)
        return self.episodes.reset(mask, frames, actions), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        out = self.episodes.step(actions)
        infos: dict[str, Any] = {}
        for i in np.flatnonzero(out.done):
            infos = self._add_info(infos, {"final_obs": out.final_obs[i], "final_info": {}}, int(i))
        return out.obs, out.rewards.astype(np.float64), out.terminated, out.truncated, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode is None or self.episodes._obs is None:
            return None
        return tuple(self.episodes.frames())

    def close_extras(self, **kwargs: Any) -> None:
        self.episodes.close()
