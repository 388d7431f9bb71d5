"""Fixed-length windows over recorded episodes (frames or latents), split into train/validation by episode.

A window of L frames starting at step s of an episode holds frames s .. s+L-1 and the L-1 transitions between
them (transition i goes from frame i to frame i+1: `actions[i]`, `rewards[i]`, `terminated[i]`,
`truncated[i]`). Windows may end on the terminal frame, so the models see episodes end.
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from training.episodes import TRANSITION_KEYS, EpisodeFileError, load_episode, manifest_spec, require_manifest

SPLITS = ("train", "val", "all")
_HINTS = {
    "frames": "oniris-env collect --episodes N --out DIR",
    "latents": "oniris-env encode --data FRAMES_DIR --out DIR",
}


def check_edge_fractions(start: float, end: float, names: str = "start_fraction and end_fraction") -> None:
    """Raise `ValueError` unless both episode-edge probabilities are >= 0 with a sum <= 1."""
    if not (0.0 <= start and 0.0 <= end and start + end <= 1.0):
        raise ValueError(f"{names} must be >= 0 with a sum <= 1, got {start}, {end}")


def is_validation(seed: int, val_fraction: float) -> bool:
    """Deterministic split by episode seed; stable when episodes are appended to a folder."""
    return zlib.crc32(str(int(seed)).encode()) % 10_000 < val_fraction * 10_000


class EpisodeWindows:
    """All windows of `window` consecutive frames from one split of a dataset folder, held in memory.

    Args:
        root: a folder written by `oniris-env collect` (key 'frames') or `oniris-env encode` (key 'latents').
        window: frames per window (L >= 1); episodes shorter than L contribute no window.
        split: 'train', 'val' or 'all'; an episode is in 'val' by a hash of its seed (`is_validation`).
        val_fraction: expected fraction of episodes in 'val'.
        key: 'frames' (uint8 (L, H, W, 3)) or 'latents' (float32 (L, C, h, w)).
        skip_bad: report (warn) and skip corrupt episode files instead of raising `EpisodeFileError`.
        shard: `(rank, world_size)`: keep only episodes rank, rank + world_size, ... of the split (in manifest
            order), so each rank of a `torchrun` job loads and samples its own episodes; (0, 1) keeps all.
    """

    def __init__(
        self,
        root: Path | str,
        window: int,
        split: str = "train",
        val_fraction: float = 0.1,
        key: str = "frames",
        skip_bad: bool = False,
        progress: bool = False,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if key not in _HINTS:
            raise ValueError(f"key must be one of {sorted(_HINTS)}, got {key!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        rank, world_size = shard
        if not 0 <= rank < world_size:
            raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}")
        self.root, self.window, self.split, self.key = Path(root), window, split, key
        manifest = require_manifest(self.root, _HINTS[key], kind=key)
        self.manifest = manifest
        self.spec = manifest_spec(manifest)
        entries = [
            e
            for e in manifest["episodes"]
            if split == "all" or is_validation(e["seed"], val_fraction) == (split == "val")
        ][rank::world_size]
        self.shard = (rank, world_size)
        self.episodes: list[int] = []
        self.skipped: list[str] = []
        self._data: list[dict[str, np.ndarray]] = []
        starts = []
        for entry in tqdm(entries, desc=f"load {split}", unit="ep", disable=not progress):
            try:
                arrays = load_episode(self.root / entry["file"], key)
            except EpisodeFileError as e:
                if not skip_bad:
                    raise
                warnings.warn(f"skipping bad episode: {e}", stacklevel=2)
                self.skipped.append(str(e))
                continue
            keep = (key, *TRANSITION_KEYS) + (("states",) if "states" in arrays else ())
            self._data.append({k: arrays[k] for k in keep})
            self.episodes.append(entry["index"])
            n_windows = len(arrays[key]) - window + 1
            starts.extend((len(self._data) - 1, s) for s in range(max(n_windows, 0)))
        self._starts = np.asarray(starts, dtype=np.int64).reshape(-1, 2)  # (num_windows, [episode, start])

    def __len__(self) -> int:
        return len(self._starts)

    @property
    def num_frames(self) -> int:
        """Frames (or latents) held, over all episodes of the split."""
        return sum(len(d[self.key]) for d in self._data)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        ep, s = self._starts[i]
        data, L = self._data[ep], self.window
        item = {self.key: data[self.key][s : s + L]}
        for k in TRANSITION_KEYS:
            item[k] = data[k][s : s + L - 1]
        if "states" in data:
            item["states"] = data["states"][s : s + L]
        return item

    def _edge_windows(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the first and of the last window of every episode that has one (same order)."""
        ep = self._starts[:, 0]
        is_first = np.r_[True, ep[1:] != ep[:-1]]
        is_last = np.r_[ep[1:] != ep[:-1], True]
        return np.flatnonzero(is_first), np.flatnonzero(is_last)

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """The whole i-th episode of this split (arrays as stored)."""
        return self._data[i]

    def sample_batch(
        self, rng: np.random.Generator, batch_size: int, start_fraction: float = 0.0, end_fraction: float = 0.0
    ) -> dict[str, np.ndarray]:
        """`batch_size` windows (with replacement), stacked on a new leading axis.

        Each window is drawn uniformly over all windows, except that with probability `end_fraction` it is the
        last window of a uniformly drawn episode (it ends on the episode's final frame) and with probability
        `start_fraction` its first window. Uniform windows cover an episode's first and last transitions once
        each against up to L - 1 times for a transition in the middle, so the starts every dream begins from and
        the crashes and landings the termination head must detect are rare; these fractions put them back.
        With both fractions 0 the draws are exactly those of uniform sampling.
        """
        check_edge_fractions(start_fraction, end_fraction)
        if len(self) == 0:
            rank, world_size = self.shard
            where = f" (shard {rank} of {world_size})" if world_size > 1 else ""
            raise ValueError(
                f"no window of {self.window} frames in the {self.split!r} split{where} of {self.root} "
                f"({len(self._data)} episodes): collect more episodes or use a shorter window"
            )
        index = rng.integers(len(self), size=batch_size)
        if start_fraction > 0 or end_fraction > 0:
            first, last = self._edge_windows()
            u = rng.random(batch_size)
            episode = rng.integers(len(first), size=batch_size)
            index = np.where(u < start_fraction, first[episode], index)
            index = np.where((u >= start_fraction) & (u < start_fraction + end_fraction), last[episode], index)
        items = [self[int(i)] for i in index]
        return {k: np.stack([it[k] for it in items]) for k in items[0]}
