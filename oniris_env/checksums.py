"""Checksums of weights files: a `SHA256SUMS` record beside them (the format of `sha256sum`), checked on load.

A weights file with flipped bytes inside its tensors still has a valid header, loads, and dreams NaN; only a
recorded checksum tells it apart. A directory without a record, or a file the record does not list, is not
checked (training runs write no record: their files change at every checkpoint). The package's own
`oniris_env/weights/` ships one, so every load of the shipped weights is verified.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

RECORD = "SHA256SUMS"


def sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of the file at `path` (read in 1 MiB blocks; ~20 ms for the shipped world model)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_record(directory: str | os.PathLike) -> dict[str, str]:
    """`{file name: hex sha256}` from `directory/SHA256SUMS` (empty when there is no record)."""
    record = Path(directory) / RECORD
    if not record.is_file():
        return {}
    sums = {}
    for line in record.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if name:
            sums[name.lstrip("*")] = digest.lower()
    return sums


def write_checksums(directory: str | os.PathLike, names: Iterable[str]) -> Path:
    """Record the sha256 of `names` (files in `directory`) in `directory/SHA256SUMS`; `sha256sum -c` reads it."""
    directory = Path(directory)
    record = directory / RECORD
    record.write_text("".join(f"{sha256(directory / name)}  {name}\n" for name in names))
    return record


def verify_checksum(path: str | os.PathLike) -> None:
    """Raise `ValueError` naming `path` when its sha256 differs from the one recorded beside it."""
    path = Path(path)
    expected = read_record(path.parent).get(path.name)
    if expected is None:
        return
    found = sha256(path)
    if found != expected:
        raise ValueError(
            f"{path} is damaged: its sha256 {found[:12]}... differs from {expected[:12]}... recorded in "
            f"{path.parent / RECORD}; reinstall oniris-env (pip install --force-reinstall oniris-env), or, if you "
            f"replaced the file on purpose, delete its line from {RECORD}"
        )
