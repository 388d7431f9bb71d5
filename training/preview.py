"""Pictures of a dataset: strips of frames from a few episodes, one row each, labelled with policy and outcome."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from training.episodes import load_episode, require_manifest


def frame_strip(frames: np.ndarray, columns: int = 8) -> np.ndarray:
    """`columns` evenly spaced frames of `(T, H, W, 3)` uint8 side by side, always ending on the last frame."""
    picks = np.unique(np.linspace(0, len(frames) - 1, min(columns, len(frames))).round().astype(int))
    return np.concatenate([frames[i] for i in picks], axis=1)


def write_dataset_preview(root: Path | str, rows: int = 6, columns: int = 8, scale: int = 2) -> Path:
    """Write `root/preview.png`: one strip per episode, picking episodes with different outcomes first."""
    root = Path(root)
    entries = require_manifest(root, "oniris-env collect --out DIR")["episodes"]
    chosen, seen = [], set()
    for entry in entries:  # one of each outcome first, then the rest in order
        if entry["outcome"] not in seen:
            seen.add(entry["outcome"])
            chosen.append(entry)
    chosen += [e for e in entries if e not in chosen]
    strips, labels = [], []
    for entry in chosen[:rows]:
        strip = frame_strip(load_episode(root / entry["file"])["frames"], columns)
        strips.append(strip)
        labels.append(f"#{entry['index']} {entry['policy']}: {entry['outcome']}, return {entry['return']:.0f}")
    width = max(s.shape[1] for s in strips) * scale
    label_h = 12
    canvas = Image.new("RGB", (width, len(strips) * (strips[0].shape[0] * scale + label_h)), (40, 40, 40))
    draw = ImageDraw.Draw(canvas)
    y = 0
    for strip, label in zip(strips, labels, strict=True):
        draw.text((2, y), label, fill=(230, 230, 230))
        img = Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale), Image.NEAREST)
        canvas.paste(img, (0, y + label_h))
        y += label_h + img.height
    out = root / "preview.png"
    canvas.save(out)
    return out
