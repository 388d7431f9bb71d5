"""Frame-pair metrics shared by every part of the evaluation: PSNR, foreground PSNR and the lander locator.

The definitions are those of the VAE evaluation (`training.vae.evaluate`): PSNR from the MSE pooled over all
pixels, foreground PSNR from the MSE over pixels whose brightest channel in the *real* frame exceeds
`FOREGROUND_THRESHOLD`, and the lander-centroid error in pixels where the lander is found in both frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.lander import lander_centroid
from training.vae.evaluate import FOREGROUND_THRESHOLD, psnr


def centroids(frames: np.ndarray) -> np.ndarray:
    """Lander centroids `(N, 2)` float64 (row, col) of `(N, H, W, 3)` uint8 frames; NaN where it is not found."""
    out = np.full((len(frames), 2), np.nan)
    for i, frame in enumerate(frames):
        c = lander_centroid(frame)
        if c is not None:
            out[i] = c
    return out


@dataclass
class PairStats:
    """Sums over frame pairs (real, predicted), from which the pooled metrics follow."""

    se: float = 0.0
    """Sum of squared errors over all pixels and channels (0..255 scale)."""
    n: int = 0
    """Number of values in `se`."""
    fg_se: float = 0.0
    """Sum of squared errors over foreground pixels of the real frames."""
    fg_n: int = 0
    errors: list[float] | None = None
    """Centroid errors (px) of the pairs where the lander is found in both frames."""
    real_found: int = 0
    """Pairs where the lander is found in the real frame."""
    both_found: int = 0
    """... and in the predicted frame."""
    pairs: int = 0

    def add(self, real: np.ndarray, pred: np.ndarray) -> None:
        """Accumulate `(N, H, W, 3)` uint8 real frames and their predictions (same shape)."""
        if real.shape != pred.shape or real.dtype != np.uint8 or pred.dtype != np.uint8:
            raise ValueError(
                f"expected two uint8 arrays of one shape, got {real.shape} {real.dtype}, {pred.shape} {pred.dtype}"
            )
        diff2 = (real.astype(np.float64) - pred.astype(np.float64)) ** 2  # (N, H, W, 3)
        fg = real.max(axis=-1) > FOREGROUND_THRESHOLD  # (N, H, W)
        self.se += float(diff2.sum())
        self.n += diff2.size
        self.fg_se += float(diff2[fg].sum())
        self.fg_n += int(fg.sum()) * 3
        c_real, c_pred = centroids(real), centroids(pred)
        found_real = ~np.isnan(c_real[:, 0])
        both = found_real & ~np.isnan(c_pred[:, 0])
        self.errors = (self.errors or []) + np.hypot(*(c_real[both] - c_pred[both]).T).tolist()
        self.real_found += int(found_real.sum())
        self.both_found += int(both.sum())
        self.pairs += len(real)

    def summary(self) -> dict[str, float | int | None]:
        """psnr, fg_psnr (dB), centroid_err_median / _mean / _p90 (px; None without a pair where both are found),
        found_rate (lander found in the prediction where it is found in the real frame), pairs, and
        centroid_err_median_lost_inf: the median over all pairs whose real frame shows the lander, a lander lost in
        the prediction counting as an infinite error (inf, i.e. None in JSON, when it is lost in half of them or
        more); the targets use it, so that losing the lander can never look better than placing it badly."""
        err = np.asarray(self.errors or [])
        stat = (lambda f: float(f(err))) if len(err) else (lambda f: None)
        with_lost = np.concatenate([err, np.full(self.real_found - self.both_found, np.inf)])
        return {
            "centroid_err_median_lost_inf": float(np.median(with_lost)) if len(with_lost) else None,
            "psnr": psnr(self.se / self.n) if self.n else None,
            "fg_psnr": psnr(self.fg_se / self.fg_n) if self.fg_n else None,
            "centroid_err_median": stat(np.median),
            "centroid_err_mean": stat(np.mean),
            "centroid_err_p90": stat(lambda e: np.percentile(e, 90)),
            "found_rate": self.both_found / self.real_found if self.real_found else None,
            "pairs": self.pairs,
        }


def pair_metrics(real: np.ndarray, pred: np.ndarray) -> dict[str, float | int | None]:
    """`PairStats.summary` of `(N, H, W, 3)` uint8 real frames and their predictions."""
    stats = PairStats()
    stats.add(real, pred)
    return stats.summary()
