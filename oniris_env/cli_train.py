"""`oniris-env train ...`: the training stages (heavy imports inside the command bodies)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from oniris_env.cli_common import check_dataset, fail

train_app = typer.Typer(
    help="Train the models, stage by stage: `train vae`, then `encode`, then `train world-model`.",
    no_args_is_help=True,
)

Preset = Annotated[str, typer.Option(help="tiny (seconds, for tests) | default (the CPU run that ships)")]


@train_app.command(
    "vae",
    epilog="Examples:\n\n  oniris-env train vae --data data/real --out runs/vae --preset default\n\n"
    "  oniris-env train vae --data data/real --out runs/vae-ft --preset finetune --init-from runs/vae/vae.safetensors"
    "\n\n  oniris-env train vae --data data/real --out runs/vae-tiny --preset tiny   # a few seconds",
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
) -> None:
    """Train the group-causal video VAE on recorded frames (resumable; Ctrl-C saves a checkpoint)."""
    from dataclasses import replace

    from training.vae.config import TRAIN_VAE_PRESETS

    if preset not in TRAIN_VAE_PRESETS:
        fail(f"unknown --preset {preset!r}; choose one of {', '.join(sorted(TRAIN_VAE_PRESETS))}")
    if preset == "finetune" and init_from is None:
        fail("--preset finetune starts from trained weights: add --init-from runs/vae/vae.safetensors")
    if init_from is not None and not init_from.is_file():
        fail(f"no VAE weights at {init_from}; train them with: oniris-env train vae --data {data} --out runs/vae")
    check_dataset(data, f"oniris-env collect --episodes 400 --out {data}")
    from training.vae.train import train_vae

    config = TRAIN_VAE_PRESETS[preset]
    if init_from is not None:
        config = replace(config, init_from=str(init_from))
    typer.echo(f"VAE weights: {train_vae(data, out, resume=resume, config=config, steps=steps)}")


@train_app.command(
    "world-model",
    epilog="Examples:\n\n  oniris-env train world-model --latents data/latents --out runs/wm --preset default\n\n"
    "  oniris-env train world-model --latents data/latents --out runs/wm-tiny --preset tiny   # seconds",
)
def train_world_model_command(
    latents: Annotated[Path, typer.Option(help="Latent folder written by `oniris-env encode`.")],
    out: Annotated[Path, typer.Option(help="Run folder (checkpoint.pt, metrics.jsonl, world_model.safetensors).")],
    preset: Preset = "default",
    steps: Annotated[int | None, typer.Option(min=1, help="Override the preset's number of steps.")] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch threads (1 is faster when other jobs share the cores).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.pt when present.")] = True,
) -> None:
    """Train the autoregressive diffusion world model (DART) on encoded latents (resumable; Ctrl-C saves)."""
    from training.world_model.config import TrainWorldModelConfig

    if preset not in ("tiny", "default"):
        fail(f"unknown --preset {preset!r}; choose one of default, tiny")
    check_dataset(latents, f"oniris-env encode --data data/real --out {latents}")
    overrides: dict[str, Any] = {}
    if steps is not None:
        overrides["steps"] = steps
    if threads is not None:
        overrides["num_threads"] = threads
    from training.world_model.train import train_world_model

    config = TrainWorldModelConfig.preset(preset, **overrides)
    typer.echo(f"world-model weights: {train_world_model(latents, out, preset=preset, resume=resume, config=config)}")
