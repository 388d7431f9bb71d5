"""`AgentConfig`: what an agent is (observation, algorithm, network) and how it is trained (world, budget).

Named presets (`AGENT_PRESETS`): `tiny` (tests, seconds), `dream` (PPO in the dream, the recipe of the shipped agent),
`real-latent` (the model-free baseline at equal real data: PPO on the real game with the dream agent's observation),
`real-state` (the model-free reference: PPO on the real game's true state, RL Baselines3 Zoo's LunarLander recipe).
The resolved config is saved as `config.json` in every run folder and next to every exported agent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from oniris_env.config_io import dataclass_from_dict

ALGOS = ("ppo", "dqn")
OBS_KINDS = ("latent", "state")
WORLDS = ("dream", "real")

#: Base seed of the real episodes that pick checkpoints (counted as real interaction, reported).
SELECTION_SEED = 4_000_000
#: Base seed of the final real evaluation episodes: never used in training or selection.
EVALUATION_SEED = 5_000_000
#: Reward of a dream whose lander left the view: LunarLander's for leaving the screen (`DreamEpisodes`).
LOST_LANDER_REWARD = -100.0


@dataclass(frozen=True)
class AgentConfig:
    """One agent and its training run (see module docstring)."""

    algo: str = "ppo"
    """'ppo' or 'dqn' (Stable-Baselines3)."""
    obs: str = "latent"
    """'latent': the VAE latent of each frame, the same in the dream and the real game; 'state': the true 8-d
    state (real-game baselines only: the dream has no state)."""
    frame_stack: int = 4
    """Observations stacked over the last k env steps (velocity); 1 = no stacking."""
    world: str = "dream"
    """Where the agent learns: 'dream' (`OnirisLunarLander-v0`) or 'real' (the real game, model-free)."""
    total_steps: int = 1_000_000
    """Environment steps to train for (dream steps in the dream, real steps in the real game)."""
    num_envs: int = 32
    """Environments stepped together (B dreams in one forward pass)."""
    horizon: int | None = None
    """Dream episodes are truncated after this many steps and the value bootstrapped (None: the game's time
    limit, 500 steps)."""
    denoise_steps: int = 3
    """Euler steps of the dream's sampler."""
    lost_lander_reward: float | None = LOST_LANDER_REWARD
    """A dream whose lander leaves the view ends with this reward (LunarLander's for leaving the screen), instead
    of going on with the reward head's guesses for an empty sky (`DreamEpisodes`); None: no such rule."""
    net_arch: tuple[int, ...] = (256, 256)
    """Hidden layers of the policy (and value) MLP."""
    learning_rate: float = 3e-4
    n_steps: int = 256
    """PPO: steps per env per rollout."""
    batch_size: int = 256
    n_epochs: int = 4
    gamma: float = 0.999
    gae_lambda: float = 0.98
    ent_coef: float = 0.01
    buffer_size: int = 100_000
    """DQN: replay buffer size."""
    eval_every: int = 100_000
    """Evaluate on the real game every this many training steps and keep the best checkpoint (0: never)."""
    eval_episodes: int = 10
    """Real episodes per selection evaluation (seeds from `SELECTION_SEED`, the same ones every time)."""
    checkpoint_every: int = 50_000
    """Save a resumable checkpoint every this many steps (and on Ctrl-C / SIGTERM)."""
    seed: int = 0
    init_from: str | None = None
    """A saved agent folder (`save_agent`) whose policy weights a fresh run starts from, e.g. the closed loop's
    previous agent continuing in a new dream; it must have this config's observation and network."""

    def __post_init__(self) -> None:
        for name, allowed in (("algo", ALGOS), ("obs", OBS_KINDS), ("world", WORLDS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.world == "dream" and self.obs == "state":
            raise ValueError("obs='state' exists only in the real game (the dream has no true state)")
        for name in ("frame_stack", "total_steps", "num_envs", "n_steps", "batch_size", "n_epochs", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.horizon is not None and self.horizon < 1:
            raise ValueError(f"horizon must be >= 1 or None, got {self.horizon}")
        if self.denoise_steps < 2:
            raise ValueError(f"denoise_steps must be >= 2, got {self.denoise_steps}")
        if self.eval_every < 0 or self.checkpoint_every < 1:
            raise ValueError("eval_every must be >= 0 and checkpoint_every >= 1")
        if not all(w >= 1 for w in self.net_arch):
            raise ValueError(f"net_arch widths must be >= 1, got {self.net_arch}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["net_arch"] = list(self.net_arch)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentConfig:
        return dataclass_from_dict(cls, data)

    def differences(self, other: AgentConfig) -> list[str]:
        """Names of the fields whose values differ."""
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


AGENT_PRESETS: dict[str, AgentConfig] = {
    "tiny": AgentConfig(
        total_steps=64, num_envs=2, n_steps=16, batch_size=16, n_epochs=1, net_arch=(16,), eval_every=32,
        eval_episodes=1, checkpoint_every=32, denoise_steps=2, frame_stack=2, buffer_size=1000,
    ),
    # B = 64 dreams and 2 Euler steps: ~1.5x the dream steps/s of B = 32 with 3 steps on 2 cores (docs/RESULTS.md)
    "dream": AgentConfig(num_envs=64, n_steps=128, denoise_steps=2, eval_every=50_000),
    "real-latent": AgentConfig(world="real", total_steps=300_000, num_envs=16, n_steps=256, eval_every=0),
    "real-state": AgentConfig(
        world="real", obs="state", frame_stack=1, total_steps=1_000_000, num_envs=16, n_steps=1024, batch_size=64,
        net_arch=(64, 64), eval_every=0,
    ),
}


def agent_preset(name: str, **overrides: Any) -> AgentConfig:
    """The preset `name` with `overrides` (None values are ignored)."""
    if name not in AGENT_PRESETS:
        raise ValueError(f"unknown agent preset {name!r}; choose one of {sorted(AGENT_PRESETS)}")
    return replace(AGENT_PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
