"""`AgentPilot`: a trained agent flying one env step by step (keyboard play, videos), through the agent pipeline.

The agent reads what it read in training: the latent of each frame, stacked over its last k steps the way SB3's
`VecFrameStack` stacks them (zeros before the first frame of an episode, newest last on the last axis). The latent
comes from the dream's sampler when the env is a dream, and from streaming-encoding the real frame with the VAE
when it is the real game (`agents.real_vec_env.LatentEncoder`), as in evaluation. Tested against `VecFrameStack`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.actors import Actor
from agents.real_vec_env import LatentEncoder


class FrameStack:
    """One stream of observations stacked like `VecFrameStack` on the last axis (k copies, newest last)."""

    def __init__(self, frame_stack: int, shape: tuple[int, ...]) -> None:
        self.k, self.shape = frame_stack, shape
        self.stacked = np.zeros((*shape[:-1], shape[-1] * frame_stack), dtype=np.float32)

    def reset(self, obs: np.ndarray) -> np.ndarray:
        self.stacked[:] = 0.0
        return self.push(obs)

    def push(self, obs: np.ndarray) -> np.ndarray:
        w = self.shape[-1]
        self.stacked = np.concatenate([self.stacked[..., w:], obs.astype(np.float32)], axis=-1)
        return self.stacked.copy()


class AgentPilot:
    """Picks each action of `env` (a dream or the real game, pixel observations) with `actor`."""

    def __init__(self, actor: Actor, vae: Any) -> None:
        if actor.obs != "latent":
            raise ValueError(f"the pilot flies agents that read latents, not {actor.obs!r}")
        self.actor, self.vae = actor, vae
        self.encoder: LatentEncoder | None = None
        self.stack: FrameStack | None = None
        self.obs: np.ndarray | None = None

    def _latent(self, env: Any, frame: np.ndarray, first: bool) -> np.ndarray:
        simulator = getattr(env.unwrapped, "simulator", None)
        if simulator is not None:  # a dream: the latent the sampler committed
            return simulator.latents[0].float().cpu().numpy()
        if first or self.encoder is None:
            self.encoder = LatentEncoder(self.vae)
            return self.encoder.start(np.ones(1, dtype=bool), frame[None])[0]
        return self.encoder.encode(frame[None])[0]

    def reset(self, env: Any, frame: np.ndarray) -> None:
        """A new episode of `env` starts with `frame` `(H, W, 3)` uint8."""
        latent = self._latent(env, frame, first=True)
        self.stack = FrameStack(self.actor.frame_stack, latent.shape)
        self.obs = self.stack.reset(latent)

    def observe(self, env: Any, frame: np.ndarray) -> None:
        """`env` stepped to `frame`."""
        if self.stack is None:
            raise RuntimeError("observe() before reset()")
        self.obs = self.stack.push(self._latent(env, frame, first=False))

    def act(self) -> int:
        if self.obs is None:
            raise RuntimeError("act() before reset()")
        return int(self.actor.act(self.obs[None])[0])
