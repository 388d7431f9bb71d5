"""`OnirisLunarLander-v0`: LunarLander dreamt by the world model, one generated frame per `step`."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from torch import Tensor

from oniris_env.dream_config import OBS_MODES, DreamConfig
from oniris_env.real_env import PHYSICS_FPS
from oniris_env.sampler import SamplerConfig
from oniris_env.simulator import DEFAULT_TERMINATION_THRESHOLD, latents_to_numpy
from oniris_env.spec import DEFAULT_SPEC


def observation_space_for(obs_mode: str, latent_shape: tuple[int, int, int]) -> spaces.Box:
    """The single-dream observation space of `obs_mode` ('pixels' or 'latent')."""
    if obs_mode == "pixels":
        return spaces.Box(0, 255, DEFAULT_SPEC.frame_shape, dtype=np.uint8)
    if obs_mode == "latent":
        return spaces.Box(-np.inf, np.inf, latent_shape, dtype=np.float32)
    raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {obs_mode!r}")


def open_dreams(num_dreams: int, config: DreamConfig, render: bool) -> tuple[Any, spaces.Box, Any]:
    """Load the weights bundle of `config` and build its simulator for `num_dreams` dreams.

    Returns the `DreamSimulator` (decoding when `config.obs_mode` is 'pixels' or `render`; its cached step
    `torch.compile`d with `config.compile`), the single-dream observation space and the bundle's directory.
    Raises `ValueError` (`TypeError` for a `num_dreams` that is no int) naming a bad argument; `num_dreams` is
    named `num_envs`, as the vector adapters call it.
    """
    from oniris_env.bundle import load_bundle
    from oniris_env.device import resolve_device
    from oniris_env.simulator import DreamSimulator

    if isinstance(num_dreams, bool | np.bool_) or not isinstance(num_dreams, int | np.integer):
        raise TypeError(f"num_envs must be an int >= 1, got {num_dreams!r} ({type(num_dreams).__name__})")
    if num_dreams < 1:
        raise ValueError(f"num_envs must be an int >= 1, got {num_dreams}")
    bundle = load_bundle(config.weights, device=resolve_device(config.device))
    step_fn = None
    if config.compile:
        import torch

        # The ring cache keeps every shape constant, so the compiled step never recompiles (DreamSimulator).
        step_fn = torch.compile(bundle.world_model.step, dynamic=False)
    simulator = DreamSimulator.from_bundle(
        bundle,
        int(num_dreams),
        sampler=config.sampler,
        decode=config.obs_mode == "pixels" or render,
        termination_threshold=config.termination_threshold,
        step_fn=step_fn,
    )
    return simulator, observation_space_for(config.obs_mode, bundle.world_model.config.latent_shape), bundle.path


def context_from_options(options: dict[str, Any] | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """`(frames (1, T, H, W, 3), actions (1, T - 1))` from reset options, or (None, None) to draw from the bank.

    Raises `ValueError` naming the expected shapes (unknown keys included)."""
    if not options:
        return None, None
    unknown = sorted(set(options) - {"context_frames", "context_actions"})
    if unknown:
        raise ValueError(f"unknown reset options {unknown}; supported: 'context_frames', 'context_actions'")
    frames, actions = context_arrays(options.get("context_frames"), options.get("context_actions"))
    return frames[None], actions[None]


def context_arrays(frames: Any, actions: Any, batched: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The reset options `context_frames` uint8 `(T, 64, 96, 3)` and `context_actions` int `(T - 1,)` checked, as
    `(frames, int64 actions)`; a one-frame context needs no actions. With `batched` (the vector env), both carry a
    leading axis N. Raises `ValueError` naming the option and the expected shapes (shared by the single and the
    vector env, so both accept and refuse the same contexts)."""
    from oniris_env.bundle import check_context, check_frames

    lead = "N, " if batched else ""
    if frames is None:
        raise ValueError(f"reset option 'context_actions' needs 'context_frames' (uint8 ({lead}T, 64, 96, 3))")
    check_frames(frames, DEFAULT_SPEC, batched)
    t = frames.shape[-4]
    if actions is None:
        if t > 1:
            shape = f"({lead}{t - 1})" if batched else f"({t - 1},)"
            raise ValueError(f"reset option 'context_actions' (int array of shape {shape}) is required for {t} frames")
        actions = np.zeros((*frames.shape[:-4], 0), np.int64)
    check_context(frames, actions, DEFAULT_SPEC, batched)
    return frames, np.asarray(actions, dtype=np.int64)


class OnirisLunarLanderDream(gym.Env):
    """LunarLander dreamt by a diffusion world model: each `step` generates the next frame.

    ## Description
    The same game as `OnirisLunarLanderReal-v0` (Gymnasium's `LunarLander-v3` seen as 64 x 96 frames, one env
    step per `action_repeat` = 2 physics steps), except that no physics engine runs: a group-causal video VAE
    and an autoregressive diffusion world model generate every frame, reward and termination from the previous
    frames and the action. Each step runs a cached EDM sampler (`oniris_env.sampler`): a few denoising calls of
    the world model against a sliding window of the last W frames, so a step costs the same at step 10 and at
    step 10 000. The env is a batch of one over `oniris_env.simulator.DreamSimulator`; the vector adapters
    (`gym.make_vec`, `oniris_env.sb3_vec_env.OnirisSB3VecEnv`) batch many dreams in one forward pass.

    ## Action space
    `Discrete(4)`, LunarLander's meaning: 0 no-op, 1 left orientation engine, 2 main engine, 3 right engine.
    A Python or numpy integer; a bool (`True`) is refused rather than read as 1.

    ## Observation space
    `obs_mode="pixels"` (default): `Box(0, 255, (64, 96, 3), uint8)`, the decoded frame.
    `obs_mode="latent"`: `Box(-inf, inf, (C, h, w), float32)`, the world model's normalised latent frame (8 x 12
    x C for the shipped models); no decoding, so faster for agents.

    ## Rewards
    The reward head's prediction of LunarLander's reward summed over the action repeat (symlog two-hot bins,
    shaping and the +-100 terminal rewards included), as a Python float.

    ## Episode end
    `terminated` when the termination head's probability exceeds `termination_threshold` (crash, leaving the
    screen, coming to rest, as learned). `truncated` after `max_episode_steps` steps: registered as
    `DEFAULT_SPEC.max_episode_steps` = 500 (the same physical time as LunarLander-v3's 1000 physics steps, through
    gymnasium's `TimeLimit`); the env itself truncates only when built with `max_episode_steps`.

    ## Starting state
    `reset(seed=..., options=None)` draws a real episode start (the first T frames and T - 1 actions of a
    recorded episode) from the start-context bank shipped with the weights, feeds it to the models, and returns
    its last frame. `options={"context_frames": uint8 (T, 64, 96, 3), "context_actions": int (T - 1,)}` starts
    from given real frames instead (`context_actions[i]` was taken between frames i and i + 1; T >= 1; only the
    last W frames are kept). The sampler's torch generator and the bank draw are seeded from `self.np_random`:
    the same seed and actions give identical observations.

    ## Info
    `reset`: `info["context_length"]`, the number of context frames used. `step`: `info["latent"]`, the new
    latent frame `(C, h, w)` float32 in pixel mode (in latent mode it is the observation itself).

    ## Arguments
    - `weights`: a bundle directory (`vae.safetensors`, `world_model.safetensors`, `start_contexts.npz`, see
      `oniris_env.bundle`); default: the weights shipped in the package.
    - `obs_mode`: 'pixels' or 'latent'. `render_mode`: None, 'rgb_array' or 'human' (a pygame window).
    - `device`: 'auto' (CUDA when present), 'cpu' or 'cuda[:N]'.
    - `sampler`: an `oniris_env.sampler.SamplerConfig` (default: 3 Euler steps from sigma 5 to 2e-3, rho 7).
    - `termination_threshold` (default `oniris_env.simulator.DEFAULT_TERMINATION_THRESHOLD` = 0.5);
      `max_episode_steps` (default None: left to `TimeLimit`).

    ## Differences from LunarLander-v3
    Pixel (or latent) observations; action repeat 2; the dynamics, reward and termination are a learned model's
    dreams, so they are approximate, and the episode starts from a few real frames instead of a reset of the
    physics. No state vector in `info`.

    ## Version history
    v0: first version.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": PHYSICS_FPS // DEFAULT_SPEC.action_repeat}

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        obs_mode: str = "pixels",
        render_mode: str | None = None,
        device: str = "auto",
        sampler: SamplerConfig | None = None,
        termination_threshold: float = DEFAULT_TERMINATION_THRESHOLD,
        max_episode_steps: int | None = None,
        compile: bool = False,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        config = DreamConfig(weights, obs_mode, device, sampler, termination_threshold,
                             max_episode_steps, compile)
        self.simulator, self.observation_space, self.weights_dir = open_dreams(1, config, render_mode is not None)
        self.render_mode, self.obs_mode, self.max_episode_steps = render_mode, obs_mode, max_episode_steps
        self.action_space = spaces.Discrete(DEFAULT_SPEC.num_actions)
        self._elapsed: int | None = None  # None until the first reset
        self._viewer: Any = None
        self._closed = False

    def _observation(self, frame: np.ndarray, latent: Tensor) -> np.ndarray:
        return frame if self.obs_mode == "pixels" else latents_to_numpy(latent)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if self._closed:
            raise RuntimeError("reset() called after close(): make a new env")
        super().reset(seed=seed)
        frames, actions = context_from_options(options)
        self.simulator.seed(int(self.np_random.integers(2**63 - 1)))
        frame, latent = self.simulator.reset(None, self.np_random, frames, actions)
        self._elapsed = 0
        if self.render_mode == "human":
            self.render()
        context = self.simulator.bank_context_length if frames is None else frames.shape[1]
        return self._observation(frame[0], latent[0]), {"context_length": min(context, self.simulator.window)}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._closed:
            raise RuntimeError("step() called after close(): make a new env")
        if self._elapsed is None:
            raise RuntimeError("step() called before reset(): call env.reset() first")
        # the env's own contract is a scalar (the simulator then checks the batch of one it is given): a bool is
        # refused, not read as action 1
        if isinstance(action, bool | np.bool_) or not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {self.action_space.n}), got {action!r}")
        out = self.simulator.step(np.array([int(action)], dtype=np.int64))
        self._elapsed += 1
        truncated = self.max_episode_steps is not None and self._elapsed >= self.max_episode_steps
        latent = latents_to_numpy(out.latents[0])
        info: dict[str, Any] = {}
        if self.obs_mode == "pixels":
            obs, info["latent"] = out.frames[0], latent
        else:
            obs = latent
        if self.render_mode == "human":
            self.render()
        return obs, float(out.rewards[0]), bool(out.terminated[0]), bool(truncated), info

    def render(self) -> np.ndarray | None:
        if self._elapsed is None:
            return None
        frame = self.simulator.frames[0]
        if self.render_mode == "rgb_array":
            return frame.copy()
        if self.render_mode == "human":
            from oniris_env.viewer import FrameViewer

            if self._viewer is None:
                self._viewer = FrameViewer("OnirisLunarLander-v0", fps=self.metadata["render_fps"])
            self._viewer.show(frame)
        return None

    def close(self) -> None:
        """Close the window; `step` and `reset` then raise `RuntimeError` (closing twice is allowed)."""
        self._closed = True
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
