"""Line charts drawn with Pillow (matplotlib is not a dependency): axes, ticks, grid, legend, gaps for None."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Colours of successive series (colour-blind friendly, Okabe-Ito).
PALETTE = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233))
_MARGIN = (64, 34, 20, 46)  # left, top, right, bottom (px)


@dataclass(frozen=True)
class Series:
    """One line: `y[i]` at `x[i]`; None or NaN leaves a gap."""

    label: str
    x: Sequence[float]
    y: Sequence[float | None]
    color: tuple[int, int, int] = PALETTE[0]
    dashed: bool = False


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"tick range must be finite, got {lo}, {hi}")
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / target
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    return [first + i * step for i in range(int(math.ceil((hi - first) / step + 1e-9)) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.2g}"


def line_chart(
    path: str | os.PathLike,
    series: Sequence[Series],
    title: str,
    x_label: str,
    y_label: str,
    size: tuple[int, int] = (640, 400),
    invert_y: bool = False,
    x_ticks: Sequence[tuple[float, str]] | None = None,
) -> Path:
    """Write a PNG line chart of `series` of `size` (width, height) pixels; returns the path.

    `x_ticks`: optional (value, label) pairs replacing the automatic x ticks (e.g. horizons on a log axis)."""
    from PIL import Image, ImageDraw, ImageFont

    points = [(x, y) for s in series for x, y in zip(s.x, s.y, strict=True) if _ok(y)]
    if not points:
        points = [(0.0, 0.0), (1.0, 1.0)]  # nothing measurable: draw empty axes
    x_labels = dict(x_ticks) if x_ticks else None
    x_ticks = sorted(x_labels) if x_labels else nice_ticks(min(p[0] for p in points), max(p[0] for p in points))
    y_ticks = nice_ticks(min(p[1] for p in points), max(p[1] for p in points))
    width, height = size
    left, top, right, bottom = _MARGIN[0], _MARGIN[1], width - _MARGIN[2], height - _MARGIN[3]
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def px(x: float, y: float) -> tuple[float, float]:
        fy = (y - y0) / (y1 - y0)
        return left + (x - x0) / (x1 - x0) * (right - left), (top + fy * (bottom - top)) if invert_y else (
            bottom - fy * (bottom - top)
        )

    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for x in x_ticks:
        gx = px(x, y0)[0]
        draw.line([(gx, top), (gx, bottom)], fill=(228, 228, 228))
        draw.text((gx, bottom + 4), x_labels[x] if x_labels else _fmt(x), fill="black", font=font, anchor="mt")
    for y in y_ticks:
        gy = px(x0, y)[1]
        draw.line([(left, gy), (right, gy)], fill=(228, 228, 228))
        draw.text((left - 5, gy), _fmt(y), fill="black", font=font, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text((width / 2, 8), title, fill="black", font=font, anchor="mt")
    draw.text(((left + right) / 2, height - 6), x_label, fill="black", font=font, anchor="mb")
    draw.text((4, top - 6), y_label, fill="black", font=font, anchor="lb")
    for s in series:
        pts = [px(x, y) if _ok(y) else None for x, y in zip(s.x, s.y, strict=True)]
        run: list[tuple[float, float]] = []
        for p in [*pts, None]:  # draw each unbroken run as one polyline
            if p is not None:
                run.append(p)
            elif run:
                _polyline(draw, run, s.color, s.dashed)
                run = []
        if len(pts) == 1 and pts[0] is not None:
            draw.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=s.color)
    _legend(draw, font, series, right - 8, top + 8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _ok(y: float | None) -> bool:
    return y is not None and math.isfinite(y)


def _polyline(draw, pts: list[tuple[float, float]], color: tuple, dashed: bool, dash: float = 6.0) -> None:
    """A 2 px polyline; dashed ones alternate `dash` px on and off along the whole line (the phase carries over
    from one segment to the next, so short segments still look dashed)."""
    if not dashed:
        if len(pts) > 1:
            draw.line(pts, fill=color, width=2, joint="curve")
        return
    travelled = 0.0  # length drawn so far
    for a, b in zip(pts, pts[1:], strict=False):
        length = math.hypot(b[0] - a[0], b[1] - a[1])
        pos = 0.0
        while pos < length:
            phase = (travelled + pos) % (2 * dash)
            piece = min((dash if phase < dash else 2 * dash) - phase, length - pos)
            if phase < dash:
                t0, t1 = pos / length, (pos + piece) / length
                draw.line(
                    [
                        (a[0] + t0 * (b[0] - a[0]), a[1] + t0 * (b[1] - a[1])),
                        (a[0] + t1 * (b[0] - a[0]), a[1] + t1 * (b[1] - a[1])),
                    ],
                    fill=color,
                    width=2,
                )
            pos += piece
        travelled += length


def _legend(draw, font, series: Sequence[Series], right: float, top: float) -> None:
    """Legend box in the top-right corner of the plot area."""
    if not series:
        return
    row, swatch = 14, 18
    text_w = max(draw.textlength(s.label, font=font) for s in series)
    box_left = right - text_w - swatch - 14
    draw.rectangle([box_left, top, right, top + row * len(series) + 6], fill="white", outline=(160, 160, 160))
    for i, s in enumerate(series):
        y = top + 4 + i * row + row / 2
        _polyline(draw, [(box_left + 4, y), (box_left + 4 + swatch, y)], s.color, s.dashed, dash=4.0)
        draw.text((box_left + swatch + 8, y), s.label, fill="black", font=font, anchor="lm")
