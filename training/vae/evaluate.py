"""Evaluate a VAE on held-out episodes: PSNR, foreground PSNR, lander-centroid error, lost-lander rate, and a
picture of originals above reconstructions.

Every episode is encoded and decoded as one stream from its first frame (chunked `encode_frames_step` /
`decode_latents_step`), exactly as the dream environment sees it, in constant memory.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from oniris_env.vae import GroupCausalVAE
from training.dataset import EpisodeWindows
from training.lander import centroid_error, lander_centroid

#: A pixel is foreground when its brightest channel in the original exceeds this (not near-black sky).
FOREGROUND_THRESHOLD = 20


def reconstruct_episode(vae: GroupCausalVAE, frames: np.ndarray, chunk: int = 64, bf16: bool = False) -> np.ndarray:
    """Stream one episode through the VAE: uint8 `(T, H, W, 3)` -> reconstruction uint8 `(T, H, W, 3)`."""
    g = vae.config.time_compression
    chunk = max(g, chunk - chunk % g)
    enc_cache = dec_cache = None
    out = []
    for s in range(0, len(frames), chunk):
        z, enc_cache = vae.encode_frames_step(frames[None, s : s + chunk], enc_cache, bf16=bf16)
        x, dec_cache = vae.decode_latents_step(z, dec_cache, bf16=bf16)
        out.append(x[0].cpu().numpy())
    return np.concatenate(out)[: len(frames)]


def psnr(mse: float) -> float:
    """PSNR in dB of a mean squared error on the 0..255 scale."""
    return float("inf") if mse <= 0 else 10.0 * math.log10(255.0**2 / mse)


def evaluate_vae(
    vae: GroupCausalVAE,
    data_dir: str | os.PathLike,
    split: str = "val",
    max_frames: int | None = None,
    val_fraction: float = 0.1,
    bf16: bool = False,
) -> dict[str, float | int]:
    """Reconstruction metrics over the episodes of `split` (all frames, or the first `max_frames`).

    Returns psnr and fg_psnr (dB, from the MSE pooled over all pixels / over foreground pixels of the
    originals), centroid_err_median / centroid_err_p95 / centroid_err_mean (px, frames where the lander is
    found in both), lost_fraction (lander found in the original but not in the reconstruction, over frames where
    it is found in the original), lander_frames, frames and episodes.
    """
    ds = EpisodeWindows(data_dir, window=1, split=split, val_fraction=val_fraction)
    se = fg_se = 0.0
    n_px = n_fg = n_found = n_lost = n_frames = n_eps = 0
    errors: list[float] = []
    for i in range(len(ds.episodes)):
        frames = ds.episode(i)["frames"]
        if max_frames is not None:
            frames = frames[: max_frames - n_frames]
        if len(frames) == 0:
            break
        recon = reconstruct_episode(vae, frames, bf16=bf16)
        diff2 = (recon.astype(np.float64) - frames.astype(np.float64)) ** 2  # (T, H, W, 3)
        fg = frames.max(axis=-1) > FOREGROUND_THRESHOLD  # (T, H, W)
        se += diff2.sum()
        n_px += diff2.size
        fg_se += diff2[fg].sum()
        n_fg += int(fg.sum()) * 3
        for orig, rec in zip(frames, recon, strict=True):
            c_orig = lander_centroid(orig)
            if c_orig is None:
                continue
            n_found += 1
            c_rec = lander_centroid(rec)
            if c_rec is None:
                n_lost += 1
            else:
                errors.append(centroid_error(c_orig, c_rec))
        n_frames += len(frames)
        n_eps += 1
    err = np.asarray(errors) if errors else np.asarray([np.nan])
    return {
        "psnr": psnr(se / max(n_px, 1)),
        "fg_psnr": psnr(fg_se / max(n_fg, 1)),
        "centroid_err_median": float(np.median(err)),
        "centroid_err_p95": float(np.percentile(err, 95)),
        "centroid_err_mean": float(err.mean()),
        "lost_fraction": n_lost / max(n_found, 1),
        "lander_frames": n_found,
        "frames": n_frames,
        "episodes": n_eps,
    }


def showcase_frames(
    data_dir: str | os.PathLike, split: str = "val", count: int = 8
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Pick `count` telling frames from one split: the strongest engine flames and the last frames (landings or
    crashes) of episodes. Returns the frames `(count, H, W, 3)` uint8 and their (episode index, step) pairs."""
    ds = EpisodeWindows(data_dir, window=1, split=split)
    picks: list[tuple[float, int, int]] = []
    for i in range(len(ds.episodes)):
        f = ds.episode(i)["frames"].astype(np.int16)
        flame = np.clip(f[..., 0] - f[..., 2], 0, None).sum(axis=(1, 2))  # red excess: engine particles
        t = int(flame.argmax())
        picks.append((float(flame[t]), i, t))
    picks.sort(reverse=True)
    chosen = [(i, t) for _, i, t in picks[: count // 2]]
    chosen += [(i, len(ds.episode(i)["frames"]) - 1) for i in range(min(len(ds.episodes), count - len(chosen)))]
    return np.stack([ds.episode(i)["frames"][t] for i, t in chosen]), chosen


def save_reconstruction_png(
    vae: GroupCausalVAE,
    data_dir: str | os.PathLike,
    path: str | os.PathLike,
    split: str = "val",
    count: int = 8,
    zoom: int = 3,
) -> Path:
    """Write a PNG: originals (top row) above their reconstructions (bottom row), frames chosen by
    `showcase_frames`, each reconstructed by streaming its episode from the start. Returns the path."""
    from PIL import Image

    ds = EpisodeWindows(data_dir, window=1, split=split)
    _, chosen = showcase_frames(data_dir, split, count)
    top, bottom = [], []
    for i, t in chosen:
        frames = ds.episode(i)["frames"][: t + 1]
        recon = reconstruct_episode(vae, frames)
        top.append(frames[t])
        bottom.append(recon[t])
    grid = np.concatenate([np.concatenate(top, axis=1), np.concatenate(bottom, axis=1)], axis=0)
    img = Image.fromarray(grid).resize((grid.shape[1] * zoom, grid.shape[0] * zoom), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
