"""`oniris-env agent train`: an SB3 agent learns in the batched dream (or, for baselines, in the real game).

The loop is SB3's own (`learn`); this module adds what a long run needs around it, through callbacks:
- **selection in the real game**: every `eval_every` steps the greedy policy plays the same `eval_episodes` real
  episodes (seeds from `SELECTION_SEED`, never the final evaluation's); the best one is kept as `best.zip` and
  exported as `best/` (safetensors + JSON). Every selection episode and its real steps are counted in
  `selection.json`: they are real interaction, and reported as such;
- **checkpoints**: `checkpoint.zip` every `checkpoint_every` steps, and on Ctrl-C or SIGTERM; the same command
  resumes from it (a changed config is refused, naming the fields; only `total_steps` may change);
- **metrics**: `metrics.jsonl` (one line per rollout: steps, dream return, seconds in the env vs. in the update),
  TensorBoard scalars in `tb/` when tensorboard is installed, SB3's progress bar.

Run folder: `config.json`, `checkpoint.zip`, `best.zip` + `best/`, `final/`, `selection.json`, `metrics.jsonl`.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from agents.actors import PolicyActor, policy_kwargs, save_agent
from agents.config import SELECTION_SEED, AgentConfig
from agents.envs import dream_vec_env, real_vec_env
from agents.evaluate import evaluate_real
from agents.real_vec_env import seed_stream
from oniris_env.config_io import atomic_write_text


class ConfigChangedError(ValueError):
    """A run folder holds a checkpoint made with another config."""


def algo_class(name: str) -> Any:
    from stable_baselines3 import DQN, PPO

    return {"ppo": PPO, "dqn": DQN}[name]


def make_model(config: AgentConfig, venv: Any, tensorboard_log: str | None) -> Any:
    """A fresh SB3 model of `config` on `venv` (policy on the CPU: a small MLP)."""
    common = {"policy_kwargs": policy_kwargs(config), "learning_rate": config.learning_rate, "gamma": config.gamma,
              "seed": config.seed, "device": "cpu", "tensorboard_log": tensorboard_log, "verbose": 0}
    if config.algo == "ppo":
        return algo_class("ppo")(
            "MlpPolicy", venv, n_steps=config.n_steps, batch_size=config.batch_size, n_epochs=config.n_epochs,
            gae_lambda=config.gae_lambda, ent_coef=config.ent_coef, **common,
        )
    return algo_class("dqn")(
        "MlpPolicy", venv, buffer_size=config.buffer_size, batch_size=config.batch_size, learning_starts=0,
        target_update_interval=250, train_freq=4, gradient_steps=-1, exploration_fraction=0.12,
        exploration_final_eps=0.1, **common,
    )


def _save_zip(model: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.zip")
    model.save(tmp)
    tmp.replace(path)


class RunCallback(BaseCallback):
    """Checkpoints, real-game selection and per-rollout metrics of one run (see module docstring)."""

    def __init__(self, config: AgentConfig, out: Path, selection: dict[str, Any], vae: Any) -> None:
        super().__init__()
        self.config, self.out, self.selection, self.vae = config, out, selection, vae
        self.next_checkpoint = self.next_eval = 0
        self.rollout_start = self.rollout_end = time.perf_counter()
        self.rollout_seconds = 0.0

    def _on_training_start(self) -> None:
        n, c = self.model.num_timesteps, self.config
        self.next_checkpoint = (n // c.checkpoint_every + 1) * c.checkpoint_every
        self.next_eval = (n // c.eval_every + 1) * c.eval_every if c.eval_every else None

    def _on_rollout_start(self) -> None:
        now = time.perf_counter()
        self._log_rollout(update_seconds=now - self.rollout_end)
        self.rollout_start = now

    def _on_rollout_end(self) -> None:
        self.rollout_end = time.perf_counter()
        self.rollout_seconds = self.rollout_end - self.rollout_start

    def _log_rollout(self, update_seconds: float) -> None:
        if self.rollout_seconds == 0.0:
            return
        buf = self.model.ep_info_buffer
        row = {
            "steps": self.model.num_timesteps,
            "train_return": float(np.mean([e["r"] for e in buf])) if buf else None,
            "train_length": float(np.mean([e["l"] for e in buf])) if buf else None,
            "rollout_seconds": round(self.rollout_seconds, 3),
            "update_seconds": round(update_seconds, 3),
            "time": time.time(),
        }
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def _on_step(self) -> bool:
        n = self.model.num_timesteps
        if n >= self.next_checkpoint:
            self.save_checkpoint()
            self.next_checkpoint = (n // self.config.checkpoint_every + 1) * self.config.checkpoint_every
        if self.next_eval is not None and n >= self.next_eval:
            self.select()
            self.next_eval = (n // self.config.eval_every + 1) * self.config.eval_every
        return True

    def save_checkpoint(self) -> None:
        _save_zip(self.model, self.out / "checkpoint.zip")
        write_selection(self.out, self.selection)

    def select(self) -> None:
        """Play the selection episodes in the real game; keep the best policy so far."""
        c = self.config
        result = evaluate_real(PolicyActor(self.model.policy, c), c.eval_episodes, SELECTION_SEED,
                               num_envs=min(8, c.eval_episodes), vae=self.vae)
        s = result.summary()
        row = {"steps": self.model.num_timesteps, "mean_return": s["mean_return"], "std_return": s["std_return"],
               "episodes": s["episodes"], "real_steps": s["steps"]}
        self.selection["evaluations"].append(row)
        self.selection["episodes_used"] += s["episodes"]
        self.selection["real_steps_used"] += s["steps"]
        self.logger.record("real/selection_return", s["mean_return"])
        best = self.selection.get("best")
        if best is None or s["mean_return"] > best["mean_return"]:
            self.selection["best"] = row
            _save_zip(self.model, self.out / "best.zip")
            save_agent(self.model.policy, c, self.model.observation_space, self.out / "best",
                       notes={"selection": row})
        write_selection(self.out, self.selection)


def write_selection(out: Path, selection: dict[str, Any]) -> None:
    atomic_write_text(out / "selection.json", json.dumps(selection, indent=2) + "\n")


def _load_vae(config: AgentConfig, weights: str | os.PathLike | None) -> Any:
    if config.obs != "latent":
        return None
    from oniris_env.bundle import load_bundle

    return load_bundle(weights).vae


def prepare_run(config: AgentConfig, out: Path) -> tuple[bool, dict[str, Any]]:
    """Create or check the run folder: (resuming, selection record). Refuses another config's checkpoint."""
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.json"
    resuming = (out / "checkpoint.zip").is_file()
    if saved.is_file():
        old = AgentConfig.from_dict(json.loads(saved.read_text()))
        changed = [name for name in old.differences(config) if name != "total_steps"]  # a longer run is safe
        if changed and resuming:
            raise ConfigChangedError(
                f"{out} holds a run made with another config (differs in {', '.join(changed)}); "
                "use the same options to resume, or another --out to start fresh"
            )
    atomic_write_text(saved, json.dumps(config.to_dict(), indent=2) + "\n")
    selection = {"selection_seed": SELECTION_SEED, "episodes_used": 0, "real_steps_used": 0, "evaluations": [],
                 "best": None}
    if resuming and (out / "selection.json").is_file():
        selection = json.loads((out / "selection.json").read_text())
    return resuming, selection


def _load_policy_weights(model: Any, config: AgentConfig) -> None:
    """Start `model` from the saved agent `config.init_from`; ValueError when it does not fit."""
    from agents.actors import load_agent

    start = load_agent(config.init_from)
    mismatch = [name for name in ("algo", "obs", "frame_stack", "net_arch")
                if getattr(start.config, name) != getattr(config, name)]
    if mismatch:
        raise ValueError(f"init_from {config.init_from}: its {', '.join(mismatch)} differ from this run's config")
    model.policy.load_state_dict(start.policy.state_dict())


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def train_agent(
    config: AgentConfig,
    out: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    device: str = "auto",
    progress: bool = True,
    compile: bool = False,
) -> dict[str, Any]:
    """Train (or resume) the run in `out`; return its summary. Ctrl-C / SIGTERM save a checkpoint and re-raise
    `KeyboardInterrupt`. `compile`: `torch.compile` the dream's cached step (same dreams, faster after minutes of
    compilation; not part of the config, so a run may resume with or without it)."""
    out = Path(out)
    resuming, selection = prepare_run(config, out)
    if config.world == "dream":
        venv = dream_vec_env(config, weights, device, compile=compile)
    else:
        venv = real_vec_env(config, seed_stream(config.seed), weights)
    try:
        import tensorboard  # noqa: F401

        tb = str(out / "tb")
    except ImportError:
        tb = None
    if resuming:
        model = algo_class(config.algo).load(out / "checkpoint.zip", env=venv, device="cpu", tensorboard_log=tb)
    else:
        model = make_model(config, venv, tb)
        if config.init_from:
            _load_policy_weights(model, config)
    callback = RunCallback(config, out, selection, _load_vae(config, weights))
    remaining = config.total_steps - model.num_timesteps
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    start = time.perf_counter()
    try:
        if remaining > 0:
            model.learn(remaining, callback=callback, reset_num_timesteps=not resuming,
                        progress_bar=progress, tb_log_name="run")
    except KeyboardInterrupt:
        callback.save_checkpoint()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        venv.close()
    seconds = time.perf_counter() - start
    callback.save_checkpoint()
    if config.eval_every and (not selection["evaluations"] or selection["evaluations"][-1]["steps"] !=
                              model.num_timesteps):
        callback.select()
    save_agent(model.policy, config, model.observation_space, out / "final", notes={"steps": model.num_timesteps})
    summary = {"steps": model.num_timesteps, "seconds": round(seconds, 1),
               "steps_per_second": round(max(remaining, 0) / seconds, 1) if seconds > 0 else None,
               "selection": selection, "threads": torch.get_num_threads()}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
