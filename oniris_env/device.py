"""Device selection shared by every command and env: `"auto"` picks CUDA when present."""

from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    """Map `auto` to `cuda` when available, else `cpu`; check the others (`cuda:1` is allowed)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.split(":")[0] not in DEVICES[1:]:
        raise ValueError(f"device must be one of {DEVICES} (or cuda:N), got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
    return device
