"""Helpers shared by the `oniris-env` command modules (no torch import)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

TORCHRUN_COMMANDS = ("train vae", "train world-model")
"""The commands that run as DDP ranks under `torchrun` (`training.distributed`); every other one is one process."""


def fail(message: str, code: int = 2) -> None:
    """Print a one-line reason to stderr and exit with `code` (2 = bad usage or input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def check_output(path: Path, folder: bool = False) -> None:
    """Exit with code 2 and one line naming `path` unless a file (with `folder`, a folder) can be written there:
    it is not of the other type, and its nearest existing ancestor is a writable folder (not a file)."""
    what = "folder" if folder else "file"
    if path.exists() and path.is_dir() != folder:
        fail(f"{path} is {'a file' if folder else 'a directory'}; give a path for a {what}")
    ancestor = path if path.exists() else path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        fail(f"cannot write the {what} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        fail(f"cannot write the {what} {path}: {ancestor} is not writable")


def check_dataset(path: Path, make: str, kind: str | None = "frames") -> None:
    """Exit with code 2 and one line unless `path` holds a readable dataset of `kind` ('frames', 'latents' or
    None: either), naming `path` and the command `make` that creates it, or the kind it holds instead."""
    from training.episodes import EpisodeFileError, require_manifest

    try:
        require_manifest(path, make, kind)
    except (FileNotFoundError, EpisodeFileError) as e:
        fail(str(e))


def refuse_under_torchrun(command: str) -> None:
    """Exit with code 2 and one line, before any work, when `command` (e.g. 'collect', 'train heads') runs under
    `torchrun` (`WORLD_SIZE` > 1) but is not one of `TORCHRUN_COMMANDS`: every rank would otherwise run the whole
    command, racing on the same files. Each rank prints the line; torchrun then reports that its ranks failed."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        world_size = 1
    if world_size <= 1 or command in TORCHRUN_COMMANDS:
        return
    allowed = " and ".join(f"`{c}`" for c in TORCHRUN_COMMANDS)
    fail(
        f"`oniris-env {command}` cannot run under torchrun (WORLD_SIZE={world_size}): only {allowed} run as DDP "
        f"ranks; run this one as one process, without torchrun: oniris-env {command} ..."
    )
