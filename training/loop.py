"""The closed loop: the world model learns from the agent's own flights, the agent from the improved dream.

`run_loop(out, config)` is what `oniris-env train loop --out RUN` calls. Before the first iteration it records the
base data (the mixed-policy collection the world model was trained on, `base_episodes` of it, rebuilt bit for bit
from its seed) and measures the starting point (row 0). Iteration i (folder `RUN/iter{i}`) then

1. `collect`: records `episodes` real episodes flown by the current agent (its actions sampled from its policy:
   exploration around its habits, `agents.collect_policy`),
2. `encode` + `merge`: encodes them with the (frozen) VAE and merges them with the base data and every earlier
   iteration's flights,
3. `world_model`: continues the world model from the previous one (`init_from`) for `world_model.steps` steps
   (its reward / termination heads train with it; the pipeline's separate head refit, ~0.6 core-hours, is not
   run),
4. `bundle`: the new weights beside a start bank that mixes the base episodes' starts with the agent's own,
5. `agent`: continues the agent from the previous one (`AgentConfig.init_from`) in the new dream, with counted
   real selection episodes (the next iteration starts from the selected `best/`),
6. `evaluate`: the agent on `eval_episodes` fixed real episodes (`EVALUATION_SEED`, never used in training or
   selection) and in the dream, and the world model with `oniris-env evaluate` (`model_eval`).

Every stage is skipped when its output is complete and resumed when it is not (the trainers' own checkpoints):
the same command continues an interrupted loop, and a larger `--iterations` extends a finished one. The VAE stays
frozen: the agent reads its latents in the real game, so every iteration's agent and world model share it.
`RUN/loop.json` holds the config and the start; `RUN/rows.json` one row per evaluated iteration (`loop_rows`),
and `RUN/loop.md` is that table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import AGENT_PRESETS, EVALUATION_SEED, AgentConfig
from training.evaluate.config import EvalConfig
from training.world_model.config import TrainWorldModelConfig

#: Model-free PPO on the real game's true state (the `real-state` agent preset, docs/RESULTS.md "Agents"): training
#: return (sampled actions, SB3's episode buffer) after this many real steps, for the loop's plot.
MODEL_FREE_CURVE = ((98_304, -86.0), (196_608, -3.0), (294_912, 59.0), (491_520, 158.0))
SOLVED = 200.0

CONFIG_FILE = "loop.json"
ROW_FILE = "row.json"
#: Seed offsets of the loop's collections: iteration i's agent flights use `seed + FLIGHT_SEED_OFFSET + i`.
FLIGHT_SEED_OFFSET = 100


class LoopMismatchError(ValueError):
    """The run folder was made with another loop config; the message is one line."""


@dataclass(frozen=True)
class LoopConfig:
    """What `oniris-env train loop` runs. The `default` preset continues the shipped world model and agent."""

    name: str = "default"
    """The preset this config came from."""
    episodes: int = 200
    """Real episodes flown by the current agent per iteration."""
    base_episodes: int = 800
    """Mixed-policy episodes of the base data (seed `seed`, policy `mix`): the shipped model's first collection."""
    seed: int = 0
    world_model: TrainWorldModelConfig = field(
        default_factory=lambda: replace(TrainWorldModelConfig.default(), steps=1000, lr_ref=2e-4, lr_warmup=50,
                                        val_every=250)
    )
    """The world model's continuation in each iteration (`init_from` is set by the loop)."""
    agent: AgentConfig = field(default_factory=lambda: replace(AGENT_PRESETS["dream"], total_steps=300_000))
    """The agent's continuation in each iteration (`init_from` is set by the loop)."""
    bank_size: int = 256
    """Start contexts of each iteration's bundle: half from the base data, half (at most) from the agent's
    flights."""
    eval_episodes: int = 100
    """Real episodes of the agent's evaluation (seeds from `EVALUATION_SEED`)."""
    dream_eval_episodes: int = 64
    """Dreams of the agent's evaluation in its iteration's dream."""
    model_eval: EvalConfig | None = field(default_factory=lambda: EvalConfig(episodes=64))
    """The world model's `oniris-env evaluate` (None: skip); 64 episodes: as docs/RESULTS.md's figures."""
    start_real_steps: int = 308_121
    """Real env steps the starting weights already used: the shipped world model's 800 + 3200 training episodes
    (296,089 steps, docs/MODEL_CARD.md) and the shipped agent's selection (12,032 steps)."""

    def __post_init__(self) -> None:
        if min(self.episodes, self.base_episodes, self.bank_size, self.eval_episodes, self.dream_eval_episodes) < 1:
            raise ValueError("episodes, base_episodes, bank_size, eval_episodes and dream_eval_episodes must be >= 1")
        if self.world_model.init_from or self.agent.init_from:
            raise ValueError("world_model.init_from and agent.init_from must be empty: the loop sets them")
        if self.agent.world != "dream" or self.agent.obs != "latent":
            raise ValueError("the loop's agent learns in the dream from latents (agent.world 'dream', obs 'latent')")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


LOOP_PRESETS: dict[str, LoopConfig] = {
    "default": LoopConfig(),
    # Seconds on 2 cores with a random tiny bundle: every stage exercised (a test).
    "tiny": LoopConfig(
        name="tiny", episodes=2, base_episodes=2,
        world_model=replace(TrainWorldModelConfig.tiny(), steps=2),
        agent=replace(AGENT_PRESETS["tiny"], total_steps=32, eval_every=32),
        bank_size=4, eval_episodes=2, dream_eval_episodes=2, start_real_steps=0,
        model_eval=EvalConfig(episodes=1, max_open_loop_steps=40, long_steps=12, long_dreams=1, video_steps=8,
                              video_episodes=1, cost_steps=2),
    ),
}


@dataclass(frozen=True)
class Start:
    """What iteration 0 starts from: a weights bundle and a saved agent folder."""

    weights: Path
    agent: Path


def run_loop(
    out: Path | str,
    config: LoopConfig,
    iterations: int,
    start: Start,
    workers: int = 1,
    device: str = "cpu",
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run (or continue) `iterations` iterations of the loop in `out`; return the rows of `loop_rows(out)`.

    Raises `LoopMismatchError` when `out` was made with another config or another start.
    """
    out = Path(out).resolve()
    _prepare(out, config, start)
    base = _base_stage(out, config, start, workers, progress, echo)
    _evaluate_stage("iter0", out / "iter0", start.weights, start.agent, config, device, progress, echo)
    weights, agent = start.weights, start.agent
    for i in range(1, iterations + 1):
        weights, agent = _iteration(out, i, config, start, base, weights, agent, workers, device, progress, echo)
    rows = loop_rows(out, config)
    _write_table(out, rows)
    return rows


def _prepare(out: Path, config: LoopConfig, start: Start) -> None:
    from oniris_env.config_io import atomic_write_text

    wanted = {"config": config.to_dict(), "start": {"weights": str(start.weights), "agent": str(start.agent)}}
    path = out / CONFIG_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved != wanted:
            fields = [k for k in wanted["config"] if saved["config"].get(k) != wanted["config"][k]]
            fields += [f"start.{k}" for k in wanted["start"] if saved["start"].get(k) != wanted["start"][k]]
            raise LoopMismatchError(
                f"{out} holds a loop made with another config or start ({', '.join(fields)}); "
                "use the same options, or another --out"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise LoopMismatchError(f"{out} is not empty and holds no {CONFIG_FILE}; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(wanted, indent=1) + "\n")


@dataclass(frozen=True)
class Base:
    """The base data: frames and their latents."""

    frames: Path
    latents: Path
    vae: Path


def _base_stage(
    out: Path, config: LoopConfig, start: Start, workers: int, progress: bool, echo: Callable[[str], None]
) -> Base:
    from oniris_env.bundle import VAE_FILE
    from training.pipeline import _collect_stage, _encode_stage

    base = Base(out / "base" / "data", out / "base" / "latents", start.weights / VAE_FILE)
    _collect_stage("base collect", base.frames, config.base_episodes, config.seed, "mix", workers, progress, echo)
    _encode_stage("base encode", base.frames, base.latents, base.vae, progress, echo)
    return base


def _iteration(
    out: Path, i: int, config: LoopConfig, start: Start, base: Base, weights: Path, agent: Path, workers: int,
    device: str, progress: bool, echo: Callable[[str], None],
) -> tuple[Path, Path]:
    """One iteration in `out/iter{i}` from the previous (weights, agent); returns the new ones."""
    from oniris_env.bundle import WORLD_MODEL_FILE
    from training.collect import AGENT_POLICY_PREFIX
    from training.merge import merge_datasets
    from training.pipeline import _collect_stage, _encode_stage
    from training.world_model.train import train_world_model

    it = out / f"iter{i}"
    name = f"iter{i}"
    flights = it / "data"
    _timed(it, "collect", lambda: _collect_stage(
        f"{name} collect", flights, config.episodes, config.seed + FLIGHT_SEED_OFFSET + i,
        AGENT_POLICY_PREFIX + str(agent), workers, progress, echo, weights))
    _timed(it, "encode", lambda: _encode_stage(f"{name} encode", flights, it / "latents", base.vae, progress, echo))
    earlier = [out / f"iter{k}" for k in range(1, i + 1)]
    echo(f"{name} merge: {len(earlier)} collection(s) of flights with the base data")
    merge_datasets([base.latents] + [e / "latents" for e in earlier], it / "latents_all", progress=False)

    wm_config = replace(config.world_model, init_from=str(weights / WORLD_MODEL_FILE), seed=config.seed + i)
    wm_weights = it / "wm" / "world_model.safetensors"
    if _world_model_done(wm_weights, wm_config.steps):
        echo(f"{name} world_model: skip (complete)")
    else:
        echo(f"{name} world_model: run (resumes from its checkpoint when there is one)")
        _timed(it, "world_model", lambda: train_world_model(it / "latents_all", it / "wm", config=wm_config,
                                                              progress=progress, device=device))
    bundle = _bundle_stage(it, base, flights, wm_weights, config, echo)

    agent_config = replace(config.agent, init_from=str(agent), seed=config.agent.seed + i)
    run = it / "agent"
    if (run / "summary.json").is_file():
        echo(f"{name} agent: skip (complete)")
    else:
        from agents.train import train_agent

        echo(f"{name} agent: " + ("resume" if (run / "checkpoint.zip").is_file() else "run"))
        _timed(it, "agent", lambda: train_agent(agent_config, run, weights=bundle, device=device,
                                                progress=progress))
    new_agent = run / "best" if (run / "best").is_dir() else run / "final"
    _evaluate_stage(name, it, bundle, new_agent, config, device, progress, echo)
    return bundle, new_agent


def _world_model_done(path: Path, steps: int) -> bool:
    from training.pipeline import _world_model_step

    try:
        return _world_model_step(path) >= steps
    except (FileNotFoundError, ValueError):
        return False


def _timed(it: Path, stage: str, fn: Callable[[], Any]) -> Any:
    """Run `fn` and add its wall-clock seconds to `it/timings.json` (the table's CPU hours)."""
    from oniris_env.config_io import atomic_write_text

    t0 = time.perf_counter()
    result = fn()
    path = it / "timings.json"
    timings = json.loads(path.read_text()) if path.is_file() else {}
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0
    atomic_write_text(path, json.dumps(timings, indent=1) + "\n")
    return result


def _bundle_stage(
    it: Path, base: Base, flights: Path, wm_weights: Path, config: LoopConfig, echo: Callable[[str], None]
) -> Path:
    """`it/bundle`: the frozen VAE, the continued world model, and a start bank of base and agent starts."""
    from oniris_env.bundle import CONTEXTS_FILE, VAE_FILE, WORLD_MODEL_FILE, StartContexts, save_start_contexts
    from training.bank import DEFAULT_CONTEXT_LENGTH, build_start_contexts
    from training.pipeline import bundle_is_current, copy_weights

    bundle = it / "bundle"
    sources = {VAE_FILE: base.vae, WORLD_MODEL_FILE: wm_weights}
    if bundle_is_current(bundle, sources):
        echo(f"{it.name} bundle: skip (complete)")
        return bundle
    echo(f"{it.name} bundle: run")
    copy_weights(bundle, sources)
    half = max(config.bank_size // 2, 1)
    try:  # the agent's starts: its first frames show what its first actions do (all splits: they are few)
        own, _ = build_start_contexts(flights, DEFAULT_CONTEXT_LENGTH, "all", half)
    except ValueError:  # no flight long enough and with the lander in view: the base starts only
        own = None
    rest = config.bank_size - (len(own) if own is not None else 0)
    starts, spec = build_start_contexts(base.frames, DEFAULT_CONTEXT_LENGTH, "train", rest)
    if own is not None:
        starts = StartContexts(np.concatenate([starts.frames, own.frames]),
                               np.concatenate([starts.actions, own.actions]))
    save_start_contexts(bundle / CONTEXTS_FILE, starts, spec)
    return bundle


def _evaluate_stage(
    name: str, it: Path, weights: Path, agent: Path, config: LoopConfig, device: str, progress: bool,
    echo: Callable[[str], None],
) -> None:
    """`it/row.json`: the agent in the real game and in the dream, the world model's evaluation."""
    from agents.actors import load_agent
    from agents.evaluate import evaluate_dream, evaluate_real
    from oniris_env.config_io import atomic_write_text

    if (it / ROW_FILE).is_file():
        echo(f"{name} evaluate: skip (complete)")
        return
    echo(f"{name} evaluate: run")
    it.mkdir(parents=True, exist_ok=True)
    actor = load_agent(agent)
    real = _timed(it, "evaluate", lambda: evaluate_real(actor, config.eval_episodes, EVALUATION_SEED,
                                                        weights=weights, progress=progress))
    dream = _timed(it, "evaluate", lambda: evaluate_dream(
        actor, config.dream_eval_episodes, config.seed, weights=weights, device=device,
        denoise_steps=config.agent.denoise_steps, progress=progress,
        lost_lander_reward=config.agent.lost_lander_reward))
    row: dict[str, Any] = {"iteration": int(name.removeprefix("iter")), "weights": str(weights),
                           "agent": str(agent), "real": real.summary(), "dream": dream.summary()}
    if config.model_eval is not None:
        from training.evaluate.run import evaluate_bundle

        report = _timed(it, "evaluate", lambda: evaluate_bundle(
            weights, it / "evaluate", config.model_eval, device=device, progress=progress))
        row["model"] = model_summary(report)
    atomic_write_text(it / ROW_FILE, json.dumps(row, indent=1) + "\n")


def model_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The loop table's world-model columns from an `oniris-env evaluate` report: targets met, centroid error at
    h = 8 / 32, controllability (rates, and the dreamt-to-real rotation ratio of held side engines), termination."""
    key = "centroid_err_median_lost_inf"
    horizons = report["open_loop"]["horizons"]
    ctrl = report["controllability"]
    term = report["reward_termination"]["terminal_anchored"]["termination"]
    ratios = [
        ctrl["dream_signature_mean"][k] / ctrl["real_signature_mean"][k]
        for k in ("left_rot", "right_rot")
        if ctrl["dream_signature_mean"].get(k) is not None and ctrl["real_signature_mean"].get(k)
    ]
    return {
        "targets_met": sum(t["pass"] for t in report["targets"]),
        "targets": len(report["targets"]),
        "met": [t["name"] for t in report["targets"] if t["pass"]],
        "centroid_h8": horizons.get("8", {}).get("dream", {}).get(key),
        "centroid_h32": horizons.get("32", {}).get("dream", {}).get(key),
        "main_right": ctrl["main_right_rate"],
        "side_right": ctrl["side_rotation_right_rate"],
        "rotation_ratio": float(np.mean(ratios)) if ratios else None,
        "term_recall": term["recall"],
        "term_precision": term["precision"],
    }


def loop_rows(out: Path | str, config: LoopConfig) -> list[dict[str, Any]]:
    """One row per evaluated iteration (0 = the start), with the real steps used so far and the CPU hours."""
    from training.episodes import read_manifest

    out = Path(out)
    rows, real_steps, seconds = [], config.start_real_steps, 0.0
    base = read_manifest(out / "base" / "data")
    if base is not None and config.start_real_steps == 0:  # a loop started from scratch counts its base data
        real_steps += sum(e["length"] for e in base["episodes"])
    i = 0
    while (out / f"iter{i}" / ROW_FILE).is_file():
        it = out / f"iter{i}"
        if i > 0:
            flights = read_manifest(it / "data") or {"episodes": []}
            real_steps += sum(e["length"] for e in flights["episodes"])
            selection = it / "agent" / "selection.json"
            if selection.is_file():
                real_steps += json.loads(selection.read_text())["real_steps_used"]
        timings = json.loads((it / "timings.json").read_text()) if (it / "timings.json").is_file() else {}
        seconds += sum(timings.values())
        row = json.loads((it / ROW_FILE).read_text())
        row["real_steps_used"], row["wall_hours"] = real_steps, round(seconds / 3600, 3)
        rows.append(row)
        i += 1
    return rows


def _write_table(out: Path, rows: list[dict[str, Any]]) -> None:
    from oniris_env.config_io import atomic_write_text

    lines = [
        "| iteration | real return (mean +- std) | dream return | gap | model targets met | main / side right | "
        "rotation dream/real | centroid h=8 / 32 (px) | termination recall / precision | real steps used | "
        "wall hours |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        real, dream, m = r["real"], r["dream"], r.get("model")
        model = (
            f"{m['targets_met']}/{m['targets']} | {_f(m['main_right'])} / {_f(m['side_right'])} | "
            f"{_f(m['rotation_ratio'])} | {_f(m['centroid_h8'], 1)} / {_f(m['centroid_h32'], 1)} | "
            f"{_f(m['term_recall'])} / {_f(m['term_precision'])}"
            if m else "- | - | - | - | -"
        )
        lines.append(
            f"| {r['iteration']} | {real['mean_return']:.1f} +- {real['std_return']:.1f} | "
            f"{dream['mean_return']:.1f} | {dream['mean_return'] - real['mean_return']:.1f} | {model} | "
            f"{r['real_steps_used']:,} | {r['wall_hours']:.2f} |"
        )
    atomic_write_text(out / "loop.md", "\n".join(lines) + "\n")
    atomic_write_text(out / "rows.json", json.dumps(rows, indent=1) + "\n")
    plot_rows(out / "return_vs_real_steps.png", rows)


def plot_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Real return against real steps used: the loop's agent (greedy, 100 evaluation episodes) per iteration, next
    to model-free PPO's learning curve on the true state (`MODEL_FREE_CURVE`) and the 'solved' line."""
    from training.evaluate.plots import PALETTE, Series, line_chart

    steps = [r["real_steps_used"] for r in rows]
    xs = steps + [x for x, _ in MODEL_FREE_CURVE]
    series = [
        Series("dream-trained agent (loop iterations)", steps, [r["real"]["mean_return"] for r in rows], PALETTE[0]),
        Series("model-free PPO, true state (training return)", [x for x, _ in MODEL_FREE_CURVE],
               [y for _, y in MODEL_FREE_CURVE], PALETTE[1]),
        Series("solved (200)", [min(xs), max(xs)], [SOLVED, SOLVED], PALETTE[2], dashed=True),
    ]
    return line_chart(path, series, "Real return against real environment steps", "real env steps used",
                      "mean real return")


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
