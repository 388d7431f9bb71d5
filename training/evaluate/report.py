"""The evaluation's outputs: report.json (every number), report.md (tables against the targets), PNG plots and
the side-by-side video (real | dream | absolute difference)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluate.long_dream import POLICIES
from training.evaluate.plots import PALETTE, Series, line_chart

#: Long dreams: the terrain is stable when the bottom rows differ from the episode's first frame by at most this
#: mean absolute value (0..255) on average; the real game's own figure (lander and flames passing) is reported.
TERRAIN_MAX_CHANGE = 5.0
VIDEO_ZOOM = 3
VIDEO_FPS = 25


def targets(report: dict) -> list[dict]:
    """The shipped model's targets (the issue's), each with its value and pass / fail."""
    rows = []

    def add(name: str, value: float | None, target: str, ok: bool | None) -> None:
        rows.append({"name": name, "value": value, "target": target, "pass": bool(ok) if value is not None else False})

    # centroid errors: the median with a lost lander counted as an infinite error (`PairStats.summary`), so that
    # losing the lander never looks better than placing it badly
    horizons = report["open_loop"]["horizons"]
    key = "centroid_err_median_lost_inf"
    for h, m in horizons.items():
        d, b = m["dream"][key], m["baseline"][key]
        add(
            f"open loop h={h}: centroid err median < repeat-last-frame ({_s(b)} px)",
            d,
            "< baseline",
            d is not None and (b is None or d < b),
        )
    for h, limit in (("8", 2.0), ("32", 6.0)):
        if h in horizons:
            d = horizons[h]["dream"][key]
            add(f"open loop h={h}: centroid err median (px)", d, f"<= {limit:g}", d is not None and d <= limit)
    term = report["reward_termination"]["terminal_anchored"]["termination"]
    add("termination recall (terminal-anchored)", term["recall"], ">= 0.9", (term["recall"] or 0) >= 0.9)
    add("termination precision (terminal-anchored)", term["precision"], ">= 0.8", (term["precision"] or 0) >= 0.8)
    for name in POLICIES:
        ld = report["long_dreams"][name]
        add(
            f"long dream ({name}): lander found fraction (real game, same policy: {_s(ld['real_found_fraction'])})",
            ld["found_fraction"],
            ">= 0.95",
            ld["found_fraction"] >= 0.95,
        )
        add(f"long dream ({name}): NaN/Inf steps", ld["nonfinite_steps"], "0", ld["nonfinite_steps"] == 0)
        add(
            f"long dream ({name}): terrain change vs first frame",
            ld["terrain_change_vs_first"],
            f"<= {TERRAIN_MAX_CHANGE:g}",
            ld["terrain_change_vs_first"] <= TERRAIN_MAX_CHANGE,
        )
    ctrl = report["controllability"]
    add("controllability: main engine the right way", ctrl["main_right_rate"], ">= 0.9", ctrl["main_right_rate"] >= 0.9)
    add(
        "controllability: side engines rotate the right way",
        ctrl["side_rotation_right_rate"],
        ">= 0.9",
        ctrl["side_rotation_right_rate"] >= 0.9,
    )
    return rows


def finite_json(value: Any) -> Any:
    """`value` with NaN / Inf floats replaced by None and numpy scalars by Python numbers (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, report: dict) -> Path:
    path.write_text(json.dumps(finite_json(report), indent=2, allow_nan=False) + "\n")
    return path


def side_by_side(pairs: list[tuple[np.ndarray, np.ndarray]], zoom: int = VIDEO_ZOOM) -> np.ndarray:
    """Video frames `(N, zoom H, zoom (3 W + 4), 3)` uint8: real | dream | |real - dream|, episodes one after the
    other, upscaled by nearest neighbour."""
    clips = []
    for real, dream in pairs:
        n = min(len(real), len(dream))
        real, dream = real[:n], dream[:n]
        diff = np.abs(real.astype(np.int16) - dream.astype(np.int16)).astype(np.uint8)
        bar = np.full((n, real.shape[1], 2, 3), 255, np.uint8)
        clips.append(np.concatenate([real, bar, dream, bar, diff], axis=2))
    frames = np.concatenate(clips)
    return frames.repeat(zoom, axis=1).repeat(zoom, axis=2)


def write_gif(path: Path, frames: np.ndarray, fps: float, zoom: int = VIDEO_ZOOM) -> Path:
    """Write `(N, H, W, 3)` uint8 frames as a GIF upscaled by `zoom`: one palette (median cut of a sample of
    frames) for the whole clip, quantised at native size and then upscaled, which is ~50x faster than letting
    Pillow quantise every large frame (the frames hold few colours, so nothing visible is lost)."""
    from PIL import Image

    sample = np.concatenate(frames[:: max(len(frames) // 16, 1)], axis=0)  # (k H, W, 3)
    palette = Image.fromarray(sample).quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    images = []
    for f in frames:
        idx = np.asarray(Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE))
        img = Image.fromarray(idx.repeat(zoom, axis=0).repeat(zoom, axis=1), mode="P")
        img.putpalette(palette.getpalette())
        images.append(img)
    duration = max(int(round(1000 / fps)), 20)
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)
    return path


def write_video(out: Path, pairs: list[tuple[np.ndarray, np.ndarray]], mp4: bool = True) -> list[str]:
    """side_by_side.gif, and side_by_side.mp4 when `mp4` and the `video` extra is installed; returns the names."""
    if not pairs:
        return []
    frames = side_by_side(pairs, zoom=1)
    names = [write_gif(out / "side_by_side.gif", frames, VIDEO_FPS).name]
    if not mp4:
        return names
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return names
    from oniris_env.video import write_video as write

    big = frames.repeat(VIDEO_ZOOM, axis=1).repeat(VIDEO_ZOOM, axis=2)
    return names + [write(out / "side_by_side.mp4", big, VIDEO_FPS).name]


def write_plots(out: Path, report: dict, curve: dict, example: dict) -> list[str]:
    """The report's PNG charts; returns the file names."""
    names = []
    steps = curve["step"]
    names.append(
        line_chart(
            out / "open_loop_centroid.png",
            [
                Series("dream", steps, curve["dream_err_median"], PALETTE[0]),
                Series("repeat last frame", steps, curve["baseline_err_median"], PALETTE[1], dashed=True),
            ],
            "Open loop: median lander-centroid error",
            "env steps after the context",
            "px",
        ).name
    )
    hs = report["open_loop"]["horizons"]
    x = [math.log2(int(h)) for h in hs]
    names.append(
        line_chart(
            out / "open_loop_psnr.png",
            [
                Series("dream PSNR", x, [m["dream"]["psnr"] for m in hs.values()], PALETTE[0]),
                Series("baseline PSNR", x, [m["baseline"]["psnr"] for m in hs.values()], PALETTE[0], dashed=True),
                Series("dream fg PSNR", x, [m["dream"]["fg_psnr"] for m in hs.values()], PALETTE[2]),
                Series("baseline fg PSNR", x, [m["baseline"]["fg_psnr"] for m in hs.values()], PALETTE[2], dashed=True),
            ],
            "Open loop: PSNR by horizon",
            "horizon (env steps, log scale)",
            "dB",
            x_ticks=[(math.log2(int(h)), h) for h in hs],
        ).name
    )
    if example:
        series = []
        for a, label in enumerate(("no-op", "left", "main", "right")):
            for kind, dashed in (("dream", False), ("real", True)):
                traj = np.asarray(example[kind][a], dtype=np.float64)
                series.append(Series(f"{kind} {label}", traj[:, 1].tolist(), traj[:, 0].tolist(), PALETTE[a], dashed))
        names.append(
            line_chart(
                out / "controllability.png",
                series,
                f"Lander under each held action (seed {example['seed']})",
                "column (px)",
                "row (px, down)",
                invert_y=True,
            ).name
        )
    ld = report["long_dreams"]
    w = ld["window"]
    series = []
    for i, name in enumerate(POLICIES):
        xs = [w * (j + 0.5) for j in range(len(ld[name]["latent_mean_per_window"]))]
        series.append(Series(f"{name} mean", xs, ld[name]["latent_mean_per_window"], PALETTE[i]))
        series.append(Series(f"{name} std", xs, ld[name]["latent_std_per_window"], PALETTE[i], dashed=True))
    xs = [0, w * len(ld[POLICIES[0]]["latent_mean_per_window"])]
    series.append(Series("real mean", xs, [ld["real_latent_mean"]] * 2, (120, 120, 120)))
    series.append(Series("real std", xs, [ld["real_latent_std"]] * 2, (120, 120, 120), dashed=True))
    names.append(
        line_chart(
            out / "long_dream_latents.png",
            series,
            f"Long dreams: latent statistics per {w} steps",
            "dream step",
            "normalised latent",
        ).name
    )
    return names


def _s(v: float | None, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)
