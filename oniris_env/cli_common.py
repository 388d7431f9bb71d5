"""Helpers shared by the `oniris-env` command modules (no torch import)."""

from __future__ import annotations

from pathlib import Path

import typer


def fail(message: str, code: int = 2) -> None:
    """Print a one-line reason to stderr and exit with `code` (2 = bad usage or input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def check_dataset(path: Path, make: str, kind: str | None = "frames") -> None:
    """Exit with code 2 and one line unless `path` holds a readable dataset of `kind` ('frames', 'latents' or
    None: either), naming `path` and the command `make` that creates it, or the kind it holds instead."""
    from training.episodes import EpisodeFileError, require_manifest

    try:
        require_manifest(path, make, kind)
    except (FileNotFoundError, EpisodeFileError) as e:
        fail(str(e))
