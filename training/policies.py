"""Data-collection policies: uniform random, the gymnasium heuristic pilot, an epsilon-noisy heuristic, and
sticky random actions.

A policy is a callable `(state (8,) float32) -> action int`, built from a numpy Generator so every episode is
reproducible from its seed. `mix` draws one policy per episode so that flights, landings, crashes and fly-offs
all appear in the data. None of the `mix` holds an action for long (random switches every step, the noisy
heuristic holds for at most `MAX_NOISE_HOLD` steps), yet a player holds a key, and the controllability check holds
an action for 16 steps: `sticky` holds each uniform random action for 1 to `MAX_STICKY_HOLD` steps, so a side
engine turns the lander a long way and the main engine lifts it (`oniris-env collect --policy sticky` appends such
episodes to a collection; the shipped models were not trained on any, docs/RESULTS.md says why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from oniris_env.real_env import heuristic_action

Policy = Callable[[np.ndarray], int]

#: Epsilons of the noisy heuristic in the `mix`; noisy actions are held for 1-4 steps so the lander really
#: drifts (single-step noise averages out and the pilot still lands).
MIX_EPSILONS = (0.05, 0.15, 0.3)
#: Longest hold of a noisy action, in env steps.
MAX_NOISE_HOLD = 4
#: (policy, epsilon, probability) of the `mix`.
MIX = (("random", 0.0, 0.2), ("heuristic", 0.0, 0.2)) + tuple(("noisy", eps, 0.2) for eps in MIX_EPSILONS)

#: Longest hold of a sticky random action, in env steps (holds are uniform in 1..this).
MAX_STICKY_HOLD = 24

POLICY_NAMES = ("mix", "random", "heuristic", "noisy", "sticky")


@dataclass(frozen=True)
class PolicyChoice:
    """Which policy an episode uses (stored in the manifest)."""

    name: str
    """'random', 'heuristic', 'noisy' or 'sticky'."""
    epsilon: float = 0.0
    """For 'noisy': probability per step of starting a held random action."""

    def label(self) -> str:
        return f"{self.name}(eps={self.epsilon:g})" if self.name == "noisy" else self.name


def choose_policy(name: str, rng: np.random.Generator, epsilon: float = 0.25) -> PolicyChoice:
    """Resolve a policy name (`mix` draws from `MIX`) to the concrete choice for one episode."""
    if name == "mix":
        probs = np.array([p for _, _, p in MIX])
        kind, eps, _ = MIX[int(rng.choice(len(MIX), p=probs / probs.sum()))]
        return PolicyChoice(kind, eps)
    if name == "noisy":
        return PolicyChoice("noisy", epsilon)
    if name in ("random", "heuristic", "sticky"):
        return PolicyChoice(name)
    raise ValueError(f"unknown policy {name!r}; choose one of {POLICY_NAMES}")


def make_policy(choice: PolicyChoice, rng: np.random.Generator, num_actions: int = 4) -> Policy:
    """Build the callable for `choice`, drawing all randomness from `rng`."""
    if choice.name == "random":
        return lambda state: int(rng.integers(num_actions))
    if choice.name == "heuristic":
        return heuristic_action
    held = {"action": 0, "left": 0}
    if choice.name == "sticky":

        def sticky(state: np.ndarray) -> int:
            if held["left"] == 0:
                held["action"], held["left"] = int(rng.integers(num_actions)), int(rng.integers(1, MAX_STICKY_HOLD + 1))
            held["left"] -= 1
            return held["action"]

        return sticky
    if choice.name != "noisy":
        raise ValueError(f"unknown policy {choice.name!r}")

    def noisy(state: np.ndarray) -> int:
        if held["left"] == 0 and rng.random() < choice.epsilon:
            held["action"], held["left"] = int(rng.integers(num_actions)), int(rng.integers(1, MAX_NOISE_HOLD + 1))
        if held["left"] > 0:
            held["left"] -= 1
            return held["action"]
        return heuristic_action(state)

    return noisy
