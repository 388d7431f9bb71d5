"""Rebuilding frozen config dataclasses from their JSON form (checkpoints, manifests), and the atomic writes of
the files that hold them. Pure Python, no torch."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """`cls(**data)` after refusing unknown fields by name; JSON lists become tuples (tuple-typed fields)."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known fields are {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder and a rename: readers see the old
    content or the new one, never a partial file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """`atomic_write_text` for bytes, e.g. `safetensors.torch.save(...)`. Written through a plain `open()`, so the
    file's mode follows the umask like its neighbours' (safetensors' own `save_file` leaves 0600 files)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def config_changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """`'field: saved -> now'` for every field whose value differs between two configs' dict forms, in order."""
    keys = [*saved, *(k for k in now if k not in saved)]
    return [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]
