"""`oniris-env evaluate`: measure a dream bundle against fresh real episodes (heavy imports inside the body)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from oniris_env.cli_common import check_output, fail

EPILOG = (
    "Examples:\n\n  oniris-env evaluate --out runs/eval                       # shipped weights, 16 episodes\n\n"
    "  oniris-env evaluate --weights runs/bundle --episodes 32 --out runs/eval-bundle\n\n"
    "  oniris-env evaluate --episodes 2 --long-steps 50 --max-open-loop-steps 64 --out /tmp/eval   # a quick look\n\n"
    "  oniris-env evaluate --denoise-steps 2 --out runs/eval-2steps   # the same figures with another sampler"
)


def evaluate(
    out: Annotated[Path, typer.Option(help="Report folder: report.json, report.md, PNG plots, side_by_side.gif.")],
    weights: Annotated[Path | None, typer.Option(help="Weights directory (default: shipped).")] = None,
    episodes: Annotated[int, typer.Option(min=1, help="Fresh real episodes (mix policy, unseen seeds).")] = 16,
    seed: Annotated[
        int, typer.Option(min=0, help="Base seed of the evaluation episodes (kept apart from training).")
    ] = 1_000_003,
    long_steps: Annotated[int, typer.Option(min=1, help="Steps of each long free dream.")] = 1000,
    long_dreams: Annotated[int, typer.Option(min=1, help="Long free dreams per policy (one batch).")] = 4,
    max_open_loop_steps: Annotated[
        int | None, typer.Option(min=1, help="Cap on the open-loop replay of each episode (default: whole).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads (default: torch's choice).")] = None,
    denoise_steps: Annotated[
        int | None, typer.Option(min=2, help="Denoising steps per frame (default: the env's sampler, 3).")
    ] = None,
    sampler: Annotated[str | None, typer.Option(help="euler | heun (default: the env's, euler).")] = None,
    sigma_min: Annotated[
        float | None,
        typer.Option(min=0.0, help="Last noise level = context noise of committed frames (default: 2e-3)."),
    ] = None,
    rho: Annotated[
        float | None, typer.Option(min=0.0, help="Schedule curvature of the sampler (default: the env's, 7).")
    ] = None,
    action_guidance: Annotated[
        float | None,
        typer.Option(min=0.0, help="Action guidance weight of the sampler (default: the env's, 0 = none)."),
    ] = None,
    mp4: Annotated[bool, typer.Option("--mp4", help="Also write side_by_side.mp4 (needs the video extra).")] = False,
    progress: Annotated[bool, typer.Option(help="Progress bars.")] = True,
) -> None:
    """Evaluate the dream against fresh real episodes: VAE, open loop vs repeat-last-frame, controllability,
    reward and termination, 1000-step dreams, cost; writes a JSON and a Markdown report with plots and a
    real | dream | difference video."""
    from oniris_env.bundle import resolve_bundle_dir

    check_output(out, folder=True)
    try:
        resolve_bundle_dir(weights)
    except FileNotFoundError as e:
        fail(str(e).splitlines()[0])
    import torch

    from oniris_env.device import resolve_device
    from oniris_env.sampler import DEFAULT_SAMPLER
    from training.evaluate.config import EvalConfig
    from training.evaluate.run import evaluate_bundle

    if threads is not None:
        torch.set_num_threads(threads)
    try:
        chosen = {
            "num_steps": denoise_steps,
            "method": sampler,
            "sigma_min": sigma_min,
            "rho": rho,
            "action_guidance": action_guidance,
        }
        sampler_config = replace(DEFAULT_SAMPLER, **{k: v for k, v in chosen.items() if v is not None})
        config = EvalConfig(
            episodes=episodes,
            base_seed=seed,
            long_steps=long_steps,
            long_dreams=long_dreams,
            max_open_loop_steps=max_open_loop_steps,
            mp4=mp4,
            sampler=sampler_config,
        )
        report = evaluate_bundle(weights, out, config, resolve_device(device), progress)
    except ValueError as e:  # bad device, seeds that clash with training, a bundle that does not fit
        fail(str(e).splitlines()[0])
    passed = sum(t["pass"] for t in report["targets"])
    typer.echo(
        f"{passed} / {len(report['targets'])} targets met; report in {out / 'report.md'} "
        f"({report['wall_clock_s']:.0f} s)"
    )
