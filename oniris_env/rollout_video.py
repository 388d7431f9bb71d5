"""Headless rollouts to video, with the action and reward burned into every frame (`oniris-env dream`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from oniris_env.spec import ACTION_MEANINGS

LABEL_HEIGHT = 24


def annotate(frame: np.ndarray, lines: list[str], scale: int) -> np.ndarray:
    """Scale `(H, W, 3)` uint8 up (nearest) and add a text band below it; returns a new uint8 image."""
    from PIL import Image, ImageDraw

    h, w, _ = frame.shape
    canvas = Image.new("RGB", (w * scale, h * scale + LABEL_HEIGHT), (25, 25, 35))
    canvas.paste(Image.fromarray(frame).resize((w * scale, h * scale), Image.NEAREST), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((3, h * scale + 1 + 11 * i), line, fill=(230, 230, 230))
    return np.asarray(canvas)


def rollout_video(
    env: Any,
    steps: int,
    policy: Callable[[int], int] | None,
    out: Path | str,
    fps: float,
    seed: int | None = None,
    scale: int = 3,
    pilot: Any = None,
) -> dict[str, Any]:
    """Run `steps` steps of `env` (resetting when an episode ends) and write the annotated frames to `out`.

    `policy(t) -> action` gives the action of step t, or `pilot` (an agent: `reset(env, frame)`,
    `observe(env, frame)`, `act()`, see `agents.pilot`) picks it from what it sees. Returns a summary (steps,
    episodes, returns).
    """
    if (policy is None) == (pilot is None):
        raise ValueError("give exactly one of policy and pilot")
    from oniris_env.video import check_video_path, write_video

    check_video_path(out)
    obs, _ = env.reset(seed=seed)
    if pilot is not None:
        pilot.reset(env, obs)
    frames = [annotate(obs, ["start", ""], scale)]
    returns, episode_return = [], 0.0
    for t in range(steps):
        action = int(pilot.act() if pilot is not None else policy(t))
        obs, reward, terminated, truncated, _ = env.step(action)
        episode_return += reward
        end = " TERMINATED" if terminated else (" TRUNCATED" if truncated else "")
        lines = [f"step {t + 1}  action {action} ({ACTION_MEANINGS[action]})",
                 f"reward {reward:+.2f}  return {episode_return:+.1f}{end}"]
        frames.append(annotate(obs, lines, scale))
        if terminated or truncated:
            returns.append(episode_return)
            episode_return = 0.0
            obs, _ = env.reset()
            frames.append(annotate(obs, ["reset", ""], scale))
            if pilot is not None:
                pilot.reset(env, obs)
        elif pilot is not None:
            pilot.observe(env, obs)
    write_video(out, frames, fps)
    return {"steps": steps, "episodes": len(returns), "returns": returns, "frames": len(frames)}
