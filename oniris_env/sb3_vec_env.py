"""`OnirisSB3VecEnv`: a Stable-Baselines3 `VecEnv` of B dreams stepped in one forward pass.

SB3 refuses gymnasium VectorEnvs, and its `DummyVecEnv` would call the world model once per env; this adapter
steps all dreams together through `DreamEpisodes` (`oniris_env.vector`). SB3 conventions: same-step autoreset;
for a finished env i, `infos[i]["terminal_observation"]` is the last observation of the finished episode and
`infos[i]["TimeLimit.truncated"]` says whether it ended by the time limit rather than by termination, and
`infos[i]["lost_lander"]` is True when it ended because the lander left the view (`lost_lander_reward`).

    from stable_baselines3 import PPO
    env = OnirisSB3VecEnv(num_envs=16, obs_mode="latent")
    PPO("MlpPolicy", env).learn(100_000)

SB3 is imported when this module is imported (not by `import oniris_env`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from oniris_env.dream_config import DreamConfig
from oniris_env.sampler import SamplerConfig
from oniris_env.simulator import DEFAULT_TERMINATION_THRESHOLD
from oniris_env.spec import DEFAULT_SPEC
from oniris_env.vector import DreamEpisodes

try:
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv
except ImportError as e:  # optional at runtime, listed in the package dependencies
    raise ImportError(f"OnirisSB3VecEnv needs stable-baselines3: pip install stable-baselines3 ({e})") from e


class OnirisSB3VecEnv(VecEnv):
    """`num_envs` dreams of `OnirisLunarLander-v0` as an SB3 `VecEnv`.

    Args: `num_envs`, `max_episode_steps` (default 500; None disables it), `weights`, `obs_mode`, `render_mode`
    (None or 'rgb_array'), `device`, `sampler`, `termination_threshold` (as `OnirisLunarLanderDream`),
    `lost_lander_reward` (as `DreamEpisodes`: end a dream whose lander left the view, with this reward).
    `seed(s)` seeds the next `reset()` (SB3 semantics); `reset()` draws all start contexts from the bank.
    """

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
        lost_lander_reward: float | None = None,
        compile: bool = False,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        config = DreamConfig(weights, obs_mode, device, sampler, termination_threshold,
                             max_episode_steps, compile)
        self.episodes = DreamEpisodes(num_envs, config, render_mode is not None, lost_lander_reward)
        self._actions: np.ndarray | None = None
        episodes = self.episodes
        super().__init__(episodes.num_envs, episodes.single_observation_space, episodes.single_action_space)

    def reset(self) -> np.ndarray:
        seeds = [s for s in self._seeds if s is not None]
        if seeds:
            self.episodes.seed(seeds)
        self._reset_seeds()
        self._reset_options()
        obs = self.episodes.reset()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Keep `actions (num_envs,)`; `step_wait` steps them (the simulator checks them there)."""
        self._actions = np.asarray(actions).reshape(-1)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions)")
        actions, self._actions = self._actions, None
        out = self.episodes.step(actions)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(out.done):
            infos[i]["terminal_observation"] = out.final_obs[i]
            infos[i]["TimeLimit.truncated"] = bool(out.truncated[i] and not out.terminated[i])
            if out.lost_lander[i]:
                infos[i]["lost_lander"] = True
        return out.obs, out.rewards.astype(np.float32), out.done, infos

    def close(self) -> None:
        self.episodes.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.render_mode != "rgb_array":
            return [None] * self.num_envs
        return list(self.episodes.frames())

    def _indices(self, indices: None | int | Iterable[int]) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)

    def get_attr(self, attr_name: str, indices: None | int | Iterable[int] = None) -> list[Any]:
        """The dreams share one configuration: every env reports this adapter's attribute."""
        return [getattr(self, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: None | int | Iterable[int] = None) -> None:
        raise AttributeError(f"the dreams of OnirisSB3VecEnv share one configuration; cannot set {attr_name!r}")

    def env_method(
        self, method_name: str, *method_args: Any, indices: None | int | Iterable[int] = None, **method_kwargs: Any
    ) -> list[Any]:
        raise AttributeError(f"OnirisSB3VecEnv has no per-env objects to call {method_name!r} on")

    def env_is_wrapped(self, wrapper_class: type, indices: None | int | Iterable[int] = None) -> list[bool]:
        return [False for _ in self._indices(indices)]
