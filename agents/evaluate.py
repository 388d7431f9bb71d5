"""Judge an actor on N episodes of the real game or of the dream: returns, outcomes, and the episodes it used.

Real episodes have fixed seeds: episode i of an evaluation with base seed S is `episode_seed(S, i)`, the same for
every actor, so every row of a comparison is played on the same 100 landers. B games play them in parallel (a
game that finishes takes the next seed, and idles when none is left: not one real step beyond the N episodes).
Dream episodes start from the bank of real start contexts, drawn by a generator seeded with S; each of the B
dreams plays the same number of episodes, so short episodes are not favoured.

Outcomes: the real game says 'landed', 'crashed', 'flew_off' or 'timeout'; a dream only knows that the termination
head fired, so its terminal reward's sign (the game pays +100 for a landing, -100 for a crash) stands for the
outcome: 'landed' (> 0), 'crashed' (<= 0) or 'timeout'.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agents.actors import Actor
from agents.config import LOST_LANDER_REWARD, AgentConfig
from agents.envs import dream_vec_env, real_vec_env
from oniris_env.real_env import episode_seed

SOLVED = 200.0
"""LunarLander counts as solved at a mean return of 200."""
OUTCOMES = ("landed", "crashed", "flew_off", "lost", "timeout")  # lost: a dream whose lander left the view


@dataclass(frozen=True)
class EvalResult:
    """N finished episodes of one actor in one world."""

    world: str
    seed: int
    returns: list[float]
    lengths: list[int]
    outcomes: list[str]
    seconds: float

    @property
    def episodes(self) -> int:
        return len(self.returns)

    def summary(self) -> dict[str, Any]:
        r = np.asarray(self.returns)
        counts = {o: self.outcomes.count(o) for o in OUTCOMES}
        return {
            "world": self.world,
            "episodes": self.episodes,
            "seed": self.seed,
            "mean_return": float(r.mean()),
            "std_return": float(r.std()),
            "solved_fraction": float((r >= SOLVED).mean()),
            "outcomes": counts,
            "steps": int(sum(self.lengths)),
            "seconds": round(self.seconds, 1),
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), **{k: v for k, v in asdict(self).items() if k in ("returns", "lengths")},
                "episode_outcomes": self.outcomes}


def observation_config(actor: Actor, world: str) -> AgentConfig:
    """The observation pipeline `actor` reads in `world` (a random actor reads nothing: the cheapest one)."""
    obs = actor.obs
    if obs == "any":
        obs = "state" if world == "real" else "latent"
    if world == "dream" and obs == "state":
        raise ValueError("this actor reads the true state, which the dream does not have: evaluate it with --env real")
    return AgentConfig(obs=obs, frame_stack=actor.frame_stack, world=world)


def evaluate_real(
    actor: Actor,
    episodes: int,
    seed: int,
    num_envs: int = 8,
    weights: str | os.PathLike | None = None,
    vae: Any = None,
    progress: bool = False,
) -> EvalResult:
    """`actor` on the real episodes `episode_seed(seed, i)`, i < `episodes`."""
    config = observation_config(actor, "real")
    wanted = [episode_seed(seed, i) for i in range(episodes)]
    if len(set(wanted)) != episodes:
        raise ValueError(f"episode seeds of base {seed} repeat within {episodes} episodes")
    num_envs = min(num_envs, episodes)
    venv = real_vec_env(config, wanted, weights, num_envs, vae)
    results: dict[int, tuple[float, int, str]] = {}
    start = time.perf_counter()
    obs = venv.reset()
    with tqdm(total=episodes, desc="real episodes", disable=not progress, leave=False) as bar:
        while len(results) < episodes:
            obs, _, dones, infos = venv.step(actor.act(obs))
            for i in np.flatnonzero(dones):
                s = infos[i]["episode_seed"]
                if s not in results:
                    ep = infos[i]["episode"]
                    results[s] = (float(ep["r"]), int(ep["l"]), infos[i]["outcome"])
                    bar.update(1)
    venv.close()
    rows = [results[s] for s in wanted]
    return EvalResult("real", seed, [r for r, _, _ in rows], [n for _, n, _ in rows], [o for *_, o in rows],
                      time.perf_counter() - start)


def evaluate_dream(
    actor: Actor,
    episodes: int,
    seed: int,
    num_envs: int = 8,
    weights: str | os.PathLike | None = None,
    device: str = "auto",
    denoise_steps: int = 3,
    progress: bool = False,
    lost_lander_reward: float | None = LOST_LANDER_REWARD,
) -> EvalResult:
    """`actor` on `episodes` full-length dreams started from the bank (draws and sampler noise seeded by `seed`);
    a dream whose lander leaves the view ends with `lost_lander_reward` (outcome 'lost'; None: no such rule)."""
    config = replace(
        observation_config(actor, "dream"), denoise_steps=denoise_steps, lost_lander_reward=lost_lander_reward
    )
    num_envs = min(num_envs, episodes)
    quota = -(-episodes // num_envs)
    venv = dream_vec_env(config, weights, device, num_envs, seed)
    done_per_env: list[list[tuple[float, int, str]]] = [[] for _ in range(num_envs)]
    start = time.perf_counter()
    obs = venv.reset()
    with tqdm(total=quota * num_envs, desc="dream episodes", disable=not progress, leave=False) as bar:
        while any(len(d) < quota for d in done_per_env):
            obs, rewards, dones, infos = venv.step(actor.act(obs))
            for i in np.flatnonzero(dones):
                if len(done_per_env[i]) < quota:
                    info = infos[i]
                    if info.get("TimeLimit.truncated"):
                        outcome = "timeout"
                    elif info.get("lost_lander"):
                        outcome = "lost"
                    else:
                        outcome = "landed" if rewards[i] > 0 else "crashed"
                    done_per_env[i].append((float(info["episode"]["r"]), int(info["episode"]["l"]), outcome))
                    bar.update(1)
    venv.close()
    rows = [row for k in range(quota) for d in done_per_env for row in d[k : k + 1]][:episodes]
    return EvalResult("dream", seed, [r for r, _, _ in rows], [n for _, n, _ in rows], [o for *_, o in rows],
                      time.perf_counter() - start)


def format_summary(s: dict[str, Any]) -> str:
    """One line: mean +- std, solved fraction, outcome counts."""
    outcomes = ", ".join(f"{k} {v}" for k, v in s["outcomes"].items() if v)
    return (f"{s['world']}: {s['episodes']} episodes (seed {s['seed']}): return {s['mean_return']:.1f} +- "
            f"{s['std_return']:.1f}, {100 * s['solved_fraction']:.0f}% >= {SOLVED:.0f}; {outcomes}; "
            f"{s['steps']} steps in {s['seconds']:.0f} s")
