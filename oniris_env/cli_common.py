"""Helpers shared by the `oniris-env` command modules (no torch import)."""

from __future__ import annotations

from pathlib import Path

import typer


def fail(message: str, code: int = 2) -> None:
    """Print a one-line reason to stderr and exit with `code` (2 = bad usage or input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def check_dataset(path: Path, make: str) -> None:
    """Exit with code 2 naming `path` and the command `make` that creates it when it holds no dataset."""
    if not (path / "manifest.json").is_file():
        fail(f"no dataset at {path} (missing manifest.json); create it with: {make}")
