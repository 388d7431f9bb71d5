"""Actors: what picks the actions in an evaluation, and agents saved as plain data.

An actor maps a batch of observations (the output of `agents.envs.observe`) to actions; it names the observation it
reads (`obs`, `frame_stack`). Baselines: `RandomActor` (uniform), `HeuristicActor` (Gymnasium's pilot on the true
state, real game only). A trained agent is an SB3 policy (`PolicyActor`).

Saved agents are a folder with `agent.safetensors` (the policy's state dict) and `agent.json` (the `AgentConfig`,
the policy class and the observation shape): `load_agent` rebuilds the SB3 policy from the JSON and loads the
tensors, with no pickle on the way (SB3's `.zip` files, which pickle, stay in run folders).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from gymnasium import spaces

from agents.config import AgentConfig
from oniris_env.real_env import heuristic_action

AGENT_WEIGHTS = "agent.safetensors"
AGENT_CONFIG = "agent.json"
BASELINES = ("random", "heuristic")


class Actor(Protocol):
    obs: str
    frame_stack: int

    def act(self, obs: np.ndarray) -> np.ndarray:
        """`(B, ...)` observations -> `(B,)` int actions."""
        ...


@dataclass
class RandomActor:
    """Uniform random actions from a seeded generator (reads no observation: 'any' world)."""

    seed: int = 0
    obs: str = "any"
    frame_stack: int = 1

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.integers(4, size=len(obs))


@dataclass
class HeuristicActor:
    """Gymnasium's LunarLander heuristic pilot; reads the true 8-d state, so it exists in the real game only."""

    obs: str = "state"
    frame_stack: int = 1

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.array([heuristic_action(s) for s in obs], dtype=np.int64)


@dataclass
class PolicyActor:
    """An SB3 policy (`ActorCriticPolicy` or `DQNPolicy`), greedy unless `deterministic=False`."""

    policy: Any
    config: AgentConfig
    deterministic: bool = True

    @property
    def obs(self) -> str:
        return self.config.obs

    @property
    def frame_stack(self) -> int:
        return self.config.frame_stack

    def act(self, obs: np.ndarray) -> np.ndarray:
        actions, _ = self.policy.predict(obs, deterministic=self.deterministic)
        return np.asarray(actions, dtype=np.int64).reshape(len(obs))


def policy_kwargs(config: AgentConfig) -> dict[str, Any]:
    """The SB3 `policy_kwargs` of `config` (PPO: separate policy and value MLPs; DQN: the Q-network's MLP)."""
    arch = list(config.net_arch)
    return {"net_arch": {"pi": arch, "vf": arch}} if config.algo == "ppo" else {"net_arch": arch}


def _build_policy(config: AgentConfig, observation_space: spaces.Box) -> Any:
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.dqn.policies import DQNPolicy

    cls = ActorCriticPolicy if config.algo == "ppo" else DQNPolicy
    return cls(observation_space, spaces.Discrete(4), lambda _: 0.0, **policy_kwargs(config))


def save_agent(policy: Any, config: AgentConfig, observation_space: spaces.Box, out: str | os.PathLike,
               notes: dict[str, Any] | None = None) -> Path:
    """Write `policy`'s weights and config into the folder `out` (created); return it."""
    from safetensors.torch import save as safetensors_bytes

    from oniris_env.checksums import write_checksums
    from oniris_env.config_io import atomic_write_bytes, atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    atomic_write_bytes(out / AGENT_WEIGHTS, safetensors_bytes(state))  # mode from the umask, not 0600
    meta = {
        "config": config.to_dict(),
        "observation_shape": list(observation_space.shape),
        "policy": type(policy).__name__,
        "notes": notes or {},
    }
    atomic_write_text(out / AGENT_CONFIG, json.dumps(meta, indent=2) + "\n")
    write_checksums(out, [AGENT_WEIGHTS, AGENT_CONFIG])
    return out


def shipped_agent_dir() -> Path:
    """The agent shipped inside the package."""
    from oniris_env.bundle import shipped_weights_dir

    return shipped_weights_dir() / "agent"


def load_agent(path: str | os.PathLike) -> PolicyActor:
    """Rebuild a saved agent (folder with `agent.json` + `agent.safetensors`) as a greedy `PolicyActor`."""
    from safetensors.torch import load_file

    from oniris_env.checksums import verify_checksum

    path = Path(path)
    if not (path / AGENT_CONFIG).is_file() or not (path / AGENT_WEIGHTS).is_file():
        raise FileNotFoundError(f"no saved agent at {path} (expected {AGENT_CONFIG} and {AGENT_WEIGHTS})")
    for name in (AGENT_WEIGHTS, AGENT_CONFIG):
        verify_checksum(path / name)  # ValueError naming a damaged file
    meta = json.loads((path / AGENT_CONFIG).read_text())
    config = AgentConfig.from_dict(meta["config"])
    space = spaces.Box(-np.inf, np.inf, tuple(meta["observation_shape"]), dtype=np.float32)
    policy = _build_policy(config, space)
    policy.load_state_dict(load_file(str(path / AGENT_WEIGHTS)))
    policy.set_training_mode(False)
    return PolicyActor(policy.to(torch.device("cpu")), config)


def make_actor(name: str, seed: int = 0) -> Actor:
    """`random`, `heuristic`, `shipped`, or a path: a saved agent folder or an SB3 `.zip` of a run."""
    if name == "random":
        return RandomActor(seed)
    if name == "heuristic":
        return HeuristicActor()
    if name == "shipped":
        return load_agent(shipped_agent_dir())
    path = Path(name)
    if path.suffix == ".zip":
        return load_run_checkpoint(path)
    return load_agent(path)


def load_run_checkpoint(path: Path) -> PolicyActor:
    """A greedy actor from an SB3 `.zip` of a training run (its `config.json` sits in the same folder)."""
    from agents.train import algo_class

    config_file = path.parent / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path}: no config.json beside it (is it from `oniris-env agent train`?)")
    config = AgentConfig.from_dict(json.loads(config_file.read_text()))
    model = algo_class(config.algo).load(path, device="cpu")
    return PolicyActor(model.policy, config)
