"""The `oniris-env` command line (Typer). The only module that wires oniris_env, training and agents.

Every heavy import (torch, Box2D, the training code) happens inside a command body, so `oniris-env --help`
stays fast and never imports torch. Bad arguments exit with code 2 and a one-line reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="oniris-env",
    help="LunarLander as a learned world: record real episodes, train the VAE and the diffusion world model, "
    "play and evaluate the dream.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """LunarLander as a learned world. Run `oniris-env COMMAND --help` for a command's options and examples."""


def fail(message: str, code: int = 2) -> None:
    """Print a one-line reason to stderr and exit with `code` (2 = bad usage or input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command(
    epilog="Examples:\n\n  oniris-env collect --episodes 20 --out data/real\n\n"
    "  oniris-env collect --episodes 400 --out data/real --seed 0 --workers 2"
)
def collect(
    out: Annotated[Path, typer.Option(help="Dataset folder (created; re-runs append new episodes).")],
    episodes: Annotated[int, typer.Option(min=1, help="Number of episodes to add.")] = 20,
    seed: Annotated[int, typer.Option(help="Base seed; episode i gets a seed derived from (seed, i).")] = 0,
    policy: Annotated[str, typer.Option(help="mix | random | heuristic | noisy")] = "mix",
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    action_repeat: Annotated[int, typer.Option(min=1, help="Physics steps per env step.")] = 2,
    preview: Annotated[bool, typer.Option(help="Write preview.png (frame strips of a few episodes).")] = True,
) -> None:
    """Record real LunarLander episodes (64x96 frames, actions, rewards, states) into a dataset folder."""
    from oniris_env.spec import GameSpec, SpecMismatchError
    from training.collect import collect_episodes
    from training.policies import POLICY_NAMES

    if policy not in POLICY_NAMES:
        fail(f"unknown --policy {policy!r}; choose one of {', '.join(POLICY_NAMES)}")
    try:
        added = collect_episodes(out, episodes, seed, policy, workers, GameSpec(action_repeat=action_repeat))
    except SpecMismatchError as e:
        fail(str(e).splitlines()[0])
    outcomes: dict[str, int] = {}
    for entry in added:
        outcomes[entry["outcome"]] = outcomes.get(entry["outcome"], 0) + 1
    frames = sum(e["length"] + 1 for e in added)
    returns = [e["return"] for e in added]
    typer.echo(
        f"wrote {len(added)} episodes ({frames} frames) to {out}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        + f"; returns {min(returns):.0f} .. {max(returns):.0f}"
    )
    if preview:
        from training.preview import write_dataset_preview

        typer.echo(f"preview: {write_dataset_preview(out)}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
