"""Recorded head inputs (the slow part of a refit) kept on disk with the key they were recorded from, so a second
refit of the same bundle on the same episodes reuses them."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from training.harness import save_state
from training.heads.record import HeadTrace


def save_traces(path: Path, key: dict, traces: list[HeadTrace | None]) -> None:
    """Keep recorded head inputs (the slow part of a refit) with what they were recorded from, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = [i for i, t in enumerate(traces) if t is not None]
    payload = {
        "key": json.dumps(key, sort_keys=True),
        "count": len(traces),
        "index": torch.as_tensor(kept, dtype=torch.long),
        "inputs": [traces[i].head_inputs for i in kept],
        "rewards": [traces[i].rewards for i in kept],
        "logits": [traces[i].term_logits for i in kept],
    }
    save_state(payload, path)


def read_traces(path: Path) -> tuple[dict, list[HeadTrace | None]]:
    """What `save_traces` wrote: the key the head inputs were recorded from, and the traces."""
    saved = torch.load(path, weights_only=True)
    traces: list[HeadTrace | None] = [None] * saved["count"]
    for j, i in enumerate(saved["index"].tolist()):
        traces[i] = HeadTrace(saved["inputs"][j], saved["rewards"][j], saved["logits"][j])
    return json.loads(saved["key"]), traces


def cached_traces(path: Path, key: dict) -> list[HeadTrace | None] | None:
    """The head inputs `save_traces` kept at `path` if they were recorded from `key`, else None."""
    if not path.is_file():
        return None
    saved_key, traces = read_traces(path)
    return traces if json.dumps(saved_key, sort_keys=True) == json.dumps(key, sort_keys=True) else None
