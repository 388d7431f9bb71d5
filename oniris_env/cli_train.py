"""`oniris-env train ...`: the training stages (heavy imports inside the command bodies)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from oniris_env.cli_common import check_dataset, fail, refuse_under_torchrun

train_app = typer.Typer(no_args_is_help=True)

PIPELINE_PRESETS = ("tiny", "default")  # training.pipeline.PIPELINE_PRESETS (named here so --help needs no torch)


@train_app.callback(
    invoke_without_command=True,
    epilog="Examples:\n\n  oniris-env train --preset tiny --out runs/tiny         # seconds: the test\n\n"
    "  oniris-env train --preset default --out runs/default   # the shipped recipe\n\n"
    "  oniris-env train vae --help                            # one stage at a time",
)
def train_pipeline_command(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run folder: data/real, vae, vae_ft, latents, wm, bundle, data/heads, latents_heads, heads, "
            "pipeline.json."
        ),
    ] = None,
    preset: Annotated[
        str, typer.Option(help="tiny (~20 s on 2 cores, a test) | default (how the shipped weights were made)")
    ] = "default",
    seed: Annotated[
        int | None,
        typer.Option(
            min=0, help="Seed of the collection and of every training (preset: 0; the heads' episodes: seed + 7)."
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Collection processes (the episodes do not depend on it).")] = 2,
    threads: Annotated[
        int,
        typer.Option(
            min=1,
            help="torch threads of the trainings (1: how the shipped weights were made; more "
            "threads were slower on a shared 2-core CPU).",
        ),
    ] = 1,
) -> None:
    """Train everything with one command: collect -> VAE (-> fine-tune) -> encode -> world model -> bundle ->
    more episodes for the heads -> heads refitted on the frozen world model.

    Each stage is skipped when its output is complete and resumed from its checkpoint when it is not:
    the same command continues an interrupted run.

    The final weights directory, OUT/heads/bundle, is OUT/bundle (the world model as trained) with refitted
    reward / termination heads: gym.make("OnirisLunarLander-v0", weights="OUT/heads/bundle").

    The sub-commands below run one stage each; under `torchrun` only `train vae` and `train world-model` run.
    """
    refuse_under_torchrun("train" if ctx.invoked_subcommand is None else f"train {ctx.invoked_subcommand}")
    if ctx.invoked_subcommand is not None:
        if out is not None:
            fail(f"--out before `{ctx.invoked_subcommand}` belongs to the whole pipeline; put it after the sub-command")
        return
    if preset not in PIPELINE_PRESETS:
        fail(f"unknown --preset {preset!r}; choose one of {', '.join(PIPELINE_PRESETS)}")
    if out is None:
        fail(f"the pipeline needs a run folder: oniris-env train --preset {preset} --out runs/{preset}")
    from training.pipeline import PIPELINE_PRESETS as CONFIGS
    from training.pipeline import run_pipeline

    config = CONFIGS[preset] if seed is None else CONFIGS[preset].with_seed(seed)
    try:
        bundle = run_pipeline(out, config, workers=workers, threads=threads, echo=typer.echo)
    except (ValueError, FileNotFoundError) as e:  # another config in OUT, a foreign or corrupt file in a stage
        fail(str(e).splitlines()[0])
    typer.echo(f"weights bundle: {bundle}  (oniris-env check --weights {bundle})")


Preset = Annotated[str, typer.Option(help="tiny (seconds, for tests) | default (the CPU run that ships)")]


@train_app.command(
    "vae",
    epilog="Examples:\n\n  oniris-env train vae --data data/real --out runs/vae --preset default\n\n"
    "  oniris-env train vae --data data/real --out runs/vae-ft --preset finetune --init-from runs/vae/vae.safetensors"
    "\n\n  oniris-env train vae --data data/real --out runs/vae-tiny --preset tiny   # a few seconds"
    "\n\n  torchrun --standalone --nproc_per_node=2 -m oniris_env train vae --data data/real --out runs/vae"
    "   # 2 DDP ranks",
)
def train_vae_command(
    data: Annotated[Path, typer.Option(help="Episode folder written by `oniris-env collect`.")],
    out: Annotated[Path, typer.Option(help="Run folder (checkpoints, metrics.jsonl, vae.safetensors).")],
    preset: Annotated[
        str, typer.Option(help="tiny (seconds) | default (main run) | finetune (second stage, with --init-from)")
    ] = "default",
    steps: Annotated[int | None, typer.Option(min=1, help="Override the preset's number of steps.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.pt when present.")] = True,
    init_from: Annotated[
        Path | None, typer.Option(help="Start from these VAE weights (needed by --preset finetune).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present) | cpu | cuda.")] = "auto",
    compile_model: Annotated[
        bool, typer.Option("--compile/--no-compile", help="torch.compile the training forward.")
    ] = False,
) -> None:
    """Train the group-causal video VAE on recorded frames (resumable; Ctrl-C and SIGTERM save a checkpoint).

    Under `torchrun` each process is one DDP rank (gloo on CPU, NCCL on CUDA); the preset's batch is per rank.
    """
    from dataclasses import replace

    from training.vae.config import TRAIN_VAE_PRESETS

    if preset not in TRAIN_VAE_PRESETS:
        fail(f"unknown --preset {preset!r}; choose one of {', '.join(sorted(TRAIN_VAE_PRESETS))}")
    if preset == "finetune" and init_from is None:
        fail("--preset finetune starts from trained weights: add --init-from runs/vae/vae.safetensors")
    if init_from is not None and not init_from.is_file():
        fail(f"no VAE weights at {init_from}; train them with: oniris-env train vae --data {data} --out runs/vae")
    check_dataset(data, f"oniris-env collect --episodes 400 --out {data}")
    _check_device(device)
    from training.vae.train import train_vae

    config = TRAIN_VAE_PRESETS[preset]
    if init_from is not None:
        config = replace(config, init_from=str(init_from))
    try:
        path = train_vae(
            data, out, resume=resume, config=config, steps=steps, device=device, compile_model=compile_model
        )
    except ValueError as e:  # a run folder made with another config, an unreadable checkpoint, another spec
        fail(str(e).splitlines()[0])
    if _is_main_rank():
        typer.echo(f"VAE weights: {path}")


@train_app.command(
    "world-model",
    epilog="Examples:\n\n  oniris-env train world-model --latents data/latents --out runs/wm --preset default\n\n"
    "  oniris-env train world-model --latents data/latents --out runs/wm-tiny --preset tiny   # seconds\n\n"
    "  torchrun --standalone --nproc_per_node=8 -m oniris_env train world-model --latents data/latents "
    "--out runs/wm-large --preset large   # 8 GPUs",
)
def train_world_model_command(
    latents: Annotated[Path, typer.Option(help="Latent folder written by `oniris-env encode`.")],
    out: Annotated[Path, typer.Option(help="Run folder (checkpoint.pt, metrics.jsonl, world_model.safetensors).")],
    preset: Annotated[
        str, typer.Option(help="tiny (seconds, for tests) | default (the CPU run that ships) | large (one GPU)")
    ] = "default",
    steps: Annotated[int | None, typer.Option(min=1, help="Override the preset's number of steps.")] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch threads (1 is faster when other jobs share the cores).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.pt when present.")] = True,
    device: Annotated[str, typer.Option(help="auto (CUDA when present) | cpu | cuda.")] = "auto",
    compile_model: Annotated[
        bool | None,
        typer.Option("--compile/--no-compile", help="torch.compile the model (FlexAttention); default: on CUDA only."),
    ] = None,
    init_from: Annotated[
        Path | None,
        typer.Option(help="Start a new run from these world-model weights (e.g. the shipped ones) instead of noise."),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(min=0.0, help="Override the preset's peak learning rate (lr_ref), e.g. lower to continue."),
    ] = None,
    window: Annotated[
        int | None,
        typer.Option(min=1, help="Override the model's attention window W (also of --init-from weights)."),
    ] = None,
    clip_frames: Annotated[
        int | None, typer.Option(min=2, help="Override the preset's frames per training clip (best >= W + 1).")
    ] = None,
) -> None:
    """Train the autoregressive diffusion world model (DART) on encoded latents (resumable; Ctrl-C and SIGTERM save).

    Under `torchrun` each process is one DDP rank (gloo on CPU, NCCL on CUDA); the preset's batch is per rank.
    There SIGTERM (which torchrun forwards) saves on every rank; Ctrl-C saves nothing: the job resumes from the last
    periodic checkpoint (every val_every steps).
    """
    from training.world_model.config import TRAIN_WORLD_MODEL_PRESETS, TrainWorldModelConfig

    if preset not in TRAIN_WORLD_MODEL_PRESETS:
        fail(f"unknown --preset {preset!r}; choose one of {', '.join(TRAIN_WORLD_MODEL_PRESETS)}")
    check_dataset(latents, f"oniris-env encode --data data/real --out {latents}", kind="latents")
    overrides: dict[str, Any] = {}
    if steps is not None:
        overrides["steps"] = steps
    if threads is not None:
        overrides["num_threads"] = threads
    if lr is not None:
        overrides["lr_ref"] = lr
    if window is not None:
        overrides["window"] = window
    if clip_frames is not None:
        overrides["clip_frames"] = clip_frames
    if init_from is not None:
        if not init_from.is_file():
            fail(f"no world-model weights at {init_from}; train them with: oniris-env train world-model --out runs/wm")
        overrides["init_from"] = str(init_from)
    from training.world_model.train import train_world_model

    _check_device(device)
    config = TrainWorldModelConfig.preset(preset, **overrides)
    try:
        path = train_world_model(
            latents, out, preset=preset, resume=resume, config=config, device=device, compile_model=compile_model
        )
    except ValueError as e:  # a run folder made with another config, an unreadable checkpoint, another spec
        fail(str(e).splitlines()[0])
    if _is_main_rank():
        typer.echo(f"world-model weights: {path}")


@train_app.command(
    "heads",
    epilog="Examples:\n\n  oniris-env train heads --latents data/latents --latents data/term_latents --out runs/heads"
    "   # the shipped bundle's heads\n\n"
    "  oniris-env train heads --weights runs/default/bundle --latents runs/default/latents --out runs/heads-tiny "
    "--preset tiny",
)
def train_heads_command(
    latents: Annotated[
        list[Path], typer.Option(help="Latent folder(s) written by `oniris-env encode` with the bundle's VAE.")
    ],
    out: Annotated[Path, typer.Option(help="Run folder: bundle/ (the refitted weights) and head_refit.json.")],
    weights: Annotated[
        Path | None, typer.Option(help="Weights bundle whose heads are refitted (default: the shipped one).")
    ] = None,
    preset: Annotated[
        str, typer.Option(help="tiny (seconds, for tests) | default (how the shipped heads were made)")
    ] = "default",
    steps: Annotated[int | None, typer.Option(min=1, help="Override the preset's optimiser steps.")] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch threads.")] = 2,
) -> None:
    """Refit the reward / termination heads on the frozen world model, from as many real episodes as you record.

    The heads learn from every real frame and from two short dreams per episode:
    its last 16 transitions (where they must fire) and the 16 before (where they
    must not), since in the env they read dreamt frames. The trunk, and so every
    dreamt frame, stays as it is; OUT/bundle gets new head weights.

    Held-out episodes (by seed) score the termination before and after, as
    `oniris-env evaluate` does (OUT/head_refit.json). The recorded head inputs
    are kept in OUT: a re-run with other fit settings starts at the fit.
    """
    import torch

    from oniris_env.sampler import DEFAULT_SAMPLER
    from training.evaluate.markdown import fmt
    from training.world_model.head_refit import HEAD_REFIT_PRESETS, HeadRefitConfig, refit_bundle

    if preset not in HEAD_REFIT_PRESETS:
        fail(f"unknown --preset {preset!r}; choose one of {', '.join(HEAD_REFIT_PRESETS)}")
    for root in latents:
        check_dataset(root, f"oniris-env encode --data data/real --out {root}", kind="latents")
    torch.set_num_threads(threads)
    config = HeadRefitConfig.preset(preset, **({} if steps is None else {"steps": steps}))
    try:
        bundle, report = refit_bundle(weights, latents, out, config, DEFAULT_SAMPLER)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e).splitlines()[0])
    typer.echo(f"held-out episodes: {report['episodes']['held_out']}; termination precision / recall, before -> after:")
    for where, scores in report["held_out"].items():
        if where.startswith("reward"):
            typer.echo(f"  {where}: {scores['before']:.2f} -> {scores['after']:.2f}")
            continue
        b, a = scores["before"]["events"], scores["after"]["events"]
        typer.echo(
            f"  {where}: {fmt(b['precision'])} / {fmt(b['recall'])} -> {fmt(a['precision'])} / {fmt(a['recall'])}"
        )
    typer.echo(f"weights bundle: {bundle}  (oniris-env evaluate --weights {bundle})")


def _is_main_rank() -> bool:
    """False on the ranks > 0 of a `torchrun` job (only rank 0 reports)."""
    import os

    return os.environ.get("RANK", "0") == "0"


def _check_device(device: str) -> None:
    """Exit with a one-line reason when `--device` is unknown or CUDA is asked for but absent."""
    from oniris_env.device import resolve_device

    try:
        resolve_device(device)
    except ValueError as e:
        fail(str(e))


LOOP_PRESETS = ("tiny", "default")  # training.loop.LOOP_PRESETS (named here so --help needs no torch)


@train_app.command(
    "loop",
    epilog="Example:\n\n  oniris-env train loop --iterations 1 --episodes 200 --out runs/loop   # continues the "
    "shipped world model and agent",
)
def train_loop_command(
    out: Annotated[Path, typer.Option(help="Run folder: base/, iter0 (the start, evaluated), iter1, ..., loop.md.")],
    iterations: Annotated[int, typer.Option(min=1, help="Iterations to have done (a larger number extends a run).")],
    episodes: Annotated[
        int | None, typer.Option(min=1, help="Real episodes flown by the current agent per iteration (preset: 200).")
    ] = None,
    preset: Annotated[str, typer.Option(help="tiny (a test) | default (continues the shipped weights)")] = "default",
    world_model_steps: Annotated[
        int | None, typer.Option(min=1, help="World-model steps per iteration (preset: 1000).")
    ] = None,
    agent_steps: Annotated[int | None, typer.Option(min=1, help="Dream steps per iteration (preset: 300,000).")] = None,
    model_eval_episodes: Annotated[
        int | None, typer.Option(min=0, help="Episodes of the world model's evaluation (preset: 64; 0: skip it).")
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="Weights bundle the loop starts from (default: the shipped one).")
    ] = None,
    agent: Annotated[
        str, typer.Option(help="Agent the loop starts from: shipped | PATH (a saved agent folder).")
    ] = "shipped",
    workers: Annotated[int, typer.Option(min=1, help="Collection processes (the episodes do not depend on it).")] = 2,
    threads: Annotated[int, typer.Option(min=1, help="torch threads.")] = 2,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda: the trainings', dreams' and evaluation's device")] = (
        "auto"
    ),
) -> None:
    """Close the loop: the agent flies the real game, the world model learns from its flights, the agent learns
    again in the improved dream.

    Each iteration: collect the agent's flights (its actions sampled) -> encode and merge with the data so far ->
    continue the world model -> a bundle whose start bank also holds the agent's starts -> continue the agent in
    the new dream (real selection episodes counted) -> evaluate the agent on 100 fixed real episodes and in the
    dream, and the world model with `oniris-env evaluate`. Every stage is skipped when complete and resumed when
    not: the same command continues an interrupted loop. OUT/loop.md is the per-iteration table.
    """
    from dataclasses import replace

    import torch

    from agents.actors import shipped_agent_dir
    from oniris_env.bundle import shipped_weights_dir
    from oniris_env.device import resolve_device
    from training.evaluate.config import EvalConfig
    from training.loop import LOOP_PRESETS as CONFIGS
    from training.loop import LoopMismatchError, Start, run_loop

    refuse_under_torchrun("train loop")
    _check_device(device)
    if preset not in CONFIGS:
        fail(f"unknown --preset {preset!r}; choose one of {', '.join(CONFIGS)}")
    config = CONFIGS[preset]
    if episodes is not None:
        config = replace(config, episodes=episodes)
    if world_model_steps is not None:
        config = replace(config, world_model=replace(config.world_model, steps=world_model_steps))
    if agent_steps is not None:
        config = replace(config, agent=replace(config.agent, total_steps=agent_steps))
    if model_eval_episodes is not None:
        evaluation = config.model_eval or EvalConfig()
        config = replace(config, model_eval=replace(evaluation, episodes=model_eval_episodes) if model_eval_episodes
                         else None)
    start_weights = (weights or shipped_weights_dir()).resolve()
    start_agent = (shipped_agent_dir() if agent == "shipped" else Path(agent)).resolve()
    needed = ((start_weights / "world_model.safetensors", "--weights"), (start_agent / "agent.json", "--agent"))
    for path, what in needed:
        if not path.is_file():
            fail(f"{what}: {path} not found")
    torch.set_num_threads(threads)
    try:
        rows = run_loop(out, config, iterations, Start(start_weights, start_agent), workers,
                        device=resolve_device(device), echo=typer.echo)
    except (LoopMismatchError, ValueError, FileNotFoundError) as e:
        fail(str(e).splitlines()[0])
    for row in rows:
        typer.echo(
            f"iteration {row['iteration']}: real return {row['real']['mean_return']:.1f}, dream "
            f"{row['dream']['mean_return']:.1f}, real steps used {row['real_steps_used']:,}"
        )
    typer.echo(f"table: {Path(out) / 'loop.md'}")
