"""Rebuilding frozen config dataclasses from their JSON form (checkpoints, manifests). Pure Python, no torch."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """`cls(**data)` after refusing unknown fields by name; JSON lists become tuples (tuple-typed fields)."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known fields are {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def config_changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """`'field: saved -> now'` for every field whose value differs between two configs' dict forms, in order."""
    keys = [*saved, *(k for k in now if k not in saved)]
    return [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]
