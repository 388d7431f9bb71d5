"""Write frame sequences to .gif (Pillow, always available) or .mp4 (needs the `video` extra: imageio-ffmpeg)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = (".gif", ".mp4")


MP4_EXTRA = 'writing .mp4 needs imageio-ffmpeg: pip install "oniris-env[video]" (or write a .gif)'


def check_video_path(path: Path | str) -> Path:
    """Return `path` as a Path if its suffix is a video format that can be written here, else raise ValueError
    (an .mp4 needs the `video` extra)."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"video file must end with {' or '.join(VIDEO_SUFFIXES)}, got {path.name!r}")
    if path.suffix.lower() == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise ValueError(MP4_EXTRA)
    return path


def write_video(path: Path | str, frames: np.ndarray | list[np.ndarray], fps: float) -> Path:
    """Write `(T, H, W, 3)` uint8 frames to `path` (.gif or .mp4) at `fps`; returns the path."""
    path = check_video_path(path)
    frames = [np.asarray(f) for f in frames]
    if not frames:
        raise ValueError("no frames to write")
    shape = frames[0].shape
    if len(shape) != 3 or shape[2] != 3 or any(f.shape != shape or f.dtype != np.uint8 for f in frames):
        raise ValueError(f"frames must all be (H, W, 3) uint8 of one size; first is {shape} {frames[0].dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        duration = max(int(round(1000 / fps)), 20)  # GIF delays are in 10 ms units; browsers clamp below 20 ms
        images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0, optimize=False)
        return path
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise ImportError(MP4_EXTRA) from e
    h, w, _ = shape
    pad_h, pad_w = h % 2, w % 2  # yuv420p needs even sizes
    writer = imageio_ffmpeg.write_frames(
        str(path), (w + pad_w, h + pad_h), fps=fps, codec="libx264", pix_fmt_out="yuv420p", macro_block_size=1,
        output_params=["-crf", "18"],
    )
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(np.pad(f, ((0, pad_h), (0, pad_w), (0, 0)))))
    writer.close()
    return path
