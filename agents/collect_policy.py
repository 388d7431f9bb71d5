"""An agent as a data-collection policy: `oniris-env collect --policy agent --agent PATH` records real episodes
flown by a trained agent, for the world model to learn where the agent goes (the closed loop).

The agent reads what it reads everywhere (the shipped VAE's streaming latents of each real frame, stacked over its
`frame_stack` steps) and its action is *sampled* from its policy with the episode's own numpy generator: the
recording explores around the agent's habits, and episode i of a folder stays determined by its seed.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from agents.actors import PolicyActor, make_actor
from agents.pilot import FrameStack
from agents.real_vec_env import LatentEncoder


@lru_cache(maxsize=2)
def _load(agent: str, weights: str | None) -> tuple[PolicyActor, Any]:
    """The agent and the VAE it reads through, loaded once per process (collect's workers play many episodes)."""
    from oniris_env.bundle import load_bundle

    actor = make_actor(agent)
    if not isinstance(actor, PolicyActor) or actor.config.algo != "ppo" or actor.obs != "latent":
        raise ValueError(f"collecting with an agent needs a PPO agent that reads latents; {agent!r} is not one")
    return actor, load_bundle(weights).vae


def check_agent(agent: str, weights: str | os.PathLike | None = None) -> None:
    """Load `agent` (and the VAE) once: a `FileNotFoundError` / `ValueError` names what is wrong before any work."""
    _load(agent, None if weights is None else str(weights))


class AgentPolicy:
    """`(state, frame) -> action` for one episode: the agent's sampled action on the frames seen so far."""

    def __init__(self, agent: str, rng: np.random.Generator, weights: str | os.PathLike | None = None) -> None:
        self.actor, vae = _load(agent, None if weights is None else str(weights))
        self.rng = rng
        self.encoder = LatentEncoder(vae)
        self.stack: FrameStack | None = None
        self.obs: np.ndarray | None = None

    def __call__(self, state: np.ndarray, frame: np.ndarray) -> int:
        if self.stack is None:  # the episode's first frame
            latent = self.encoder.start(np.ones(1, dtype=bool), frame[None])[0]
            self.stack = FrameStack(self.actor.frame_stack, latent.shape)
            obs = self.stack.reset(latent)
        else:
            obs = self.stack.push(self.encoder.encode(frame[None])[0])
        with torch.no_grad():
            dist = self.actor.policy.get_distribution(torch.as_tensor(obs[None]))
            probs = dist.distribution.probs[0].double().numpy()
        return int(self.rng.choice(len(probs), p=probs / probs.sum()))
