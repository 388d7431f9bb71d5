"""One episode of an actor, real or dreamt, as a video with the action and the reward burned in."""

from __future__ import annotations

import os
from pathlib import Path

from agents.actors import Actor
from agents.envs import dream_vec_env, real_vec_env
from agents.evaluate import observation_config
from oniris_env.real_env import episode_seed
from oniris_env.rollout_video import annotate
from oniris_env.spec import ACTION_MEANINGS
from oniris_env.video import write_video


def record_episode(
    actor: Actor,
    world: str,
    seed: int,
    out: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    device: str = "auto",
    denoise_steps: int = 3,
    scale: int = 3,
    fps: float = 25.0,
) -> int:
    """Play episode 0 of base seed `seed` in `world` ('real' or 'dream') and write it to `out`; return the number of
    frames written."""
    from dataclasses import replace

    config = replace(observation_config(actor, world), denoise_steps=denoise_steps)
    if world == "real":
        venv = real_vec_env(config, [episode_seed(seed, 0)], weights, 1, render=True)
    else:
        venv = dream_vec_env(config, weights, device, 1, seed, render=True)
    obs = venv.reset()
    frames, total, t = [], 0.0, 0
    while True:
        frame = venv.get_images()[0]
        action = int(actor.act(obs)[0])
        obs, rewards, dones, _ = venv.step([action])
        total += float(rewards[0])
        t += 1
        frames.append(annotate(frame, [f"{world} t={t} {ACTION_MEANINGS[action]}", f"return {total:.0f}"], scale))
        if dones[0]:
            break
    venv.close()
    write_video(Path(out), frames, fps)
    return len(frames)
