"""The environments agents learn and are judged in, all ending in the same observation pipeline.

`observe(venv, frame_stack)` is the one pipeline: SB3's `VecMonitor` (episode returns in `infos[i]["episode"]`)
then `VecFrameStack` over the last k observations. The dream (`dream_vec_env`, latents from the sampler) and the
real game (`real_vec_env`, latents from streaming-encoding each real frame with the dream's own VAE) hand it the
same `(C, h, w)` latents, so an agent sees the two worlds through the same code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecMonitor

from agents.config import AgentConfig
from agents.real_vec_env import RealVecEnv
from oniris_env.simulator import DEFAULT_TERMINATION_THRESHOLD
from oniris_env.spec import DEFAULT_SPEC


def observe(venv: VecEnv, frame_stack: int) -> VecEnv:
    """Episode statistics, then the last `frame_stack` observations stacked on the last axis."""
    venv = VecMonitor(venv)
    return VecFrameStack(venv, frame_stack) if frame_stack > 1 else venv


def dream_vec_env(
    config: AgentConfig,
    weights: str | os.PathLike | None = None,
    device: str = "auto",
    num_envs: int | None = None,
    seed: int | None = None,
    render: bool = False,
    termination_threshold: float = DEFAULT_TERMINATION_THRESHOLD,
    compile: bool = False,
) -> VecEnv:
    """`num_envs` (default `config.num_envs`) dreams in latent mode, truncated at `config.horizon`; `render` also
    decodes frames for `get_images()`; `compile`: `torch.compile` the dream's cached step (`DreamConfig`)."""
    from oniris_env.sampler import SamplerConfig
    from oniris_env.sb3_vec_env import OnirisSB3VecEnv

    if config.obs != "latent":
        raise ValueError(f"the dream gives latent observations, not {config.obs!r}")
    venv = OnirisSB3VecEnv(
        num_envs=num_envs or config.num_envs,
        max_episode_steps=config.horizon or DEFAULT_SPEC.max_episode_steps,
        weights=weights,
        obs_mode="latent",
        device=device,
        sampler=SamplerConfig(num_steps=config.denoise_steps),
        render_mode="rgb_array" if render else None,
        termination_threshold=termination_threshold,
        lost_lander_reward=config.lost_lander_reward,
        compile=compile,
    )
    venv.seed(config.seed if seed is None else seed)
    return observe(venv, config.frame_stack)


def real_vec_env(
    config: AgentConfig,
    seeds: Iterable[int],
    weights: str | os.PathLike | None = None,
    num_envs: int | None = None,
    vae=None,
    render: bool = False,
) -> VecEnv:
    """`num_envs` real games playing `seeds` in order, observed as `config.obs` (latents from the VAE of the
    bundle `weights`, or the given `vae`)."""
    if config.obs == "latent" and vae is None:
        from oniris_env.bundle import load_bundle

        vae = load_bundle(weights).vae
    venv = RealVecEnv(num_envs or config.num_envs, config.obs, vae, seeds, render=render)
    return observe(venv, config.frame_stack)
