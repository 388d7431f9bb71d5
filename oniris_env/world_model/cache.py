"""`WorldModelCache`: the explicit inference state of the world model (per-layer KV window + conv inputs).

A cache is an immutable value: `WorldModel.step` returns a new one when it commits a frame and never mutates
its input. Batched over B dreams; dreams may hold different history lengths (left padding marked by `valid`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LayerEntry:
    """What one block contributes to the cache when its current frame is committed."""

    key: Tensor
    """`(B, T, H, hd)` temporal-attention key of the frame, rotated at its absolute frame position."""
    value: Tensor
    """`(B, T, H, hd)` temporal-attention value."""
    conv_input: Tensor
    """`(B, T, D)` input of the causal conv path (its past taps read it for the next k - 1 frames)."""


@dataclass(frozen=True)
class WorldModelCache:
    """Sliding-window state for autoregressive generation.

    Slot s of every layer holds the same clean frame; slots are oldest first and the newest is the last frame
    committed. At most `window` slots are kept (the W frames a new frame attends to, as in training).
    """

    keys: tuple[Tensor, ...]
    """Per block `(B*T, H, n, hd)`: keys of the n cached frames, RoPE-rotated at their absolute positions."""
    values: tuple[Tensor, ...]
    """Per block `(B*T, H, n, hd)`."""
    conv: tuple[Tensor, ...]
    """Per block `(B, k - 1, T, D)`: conv-path inputs of the last k - 1 committed frames (zeros before the
    first frame, exactly like the zero padding in training)."""
    valid: Tensor
    """`(B, n)` bool: False for left-padding slots of dreams with fewer than n frames."""
    position: Tensor
    """`(B,)` int64 absolute frame index of each dream's next frame (its RoPE position)."""
    window: int
    """Maximum number of slots n (the model's W)."""

    @property
    def batch_size(self) -> int:
        return self.valid.shape[0]

    @property
    def length(self) -> int:
        """Number of slots n (the longest history in the batch, at most `window`)."""
        return self.valid.shape[1]

    def padding_mask(self) -> Tensor:
        """`(B*T, 1, 1, n)` bool, True on padding slots (one row per attention batch row). No data-dependent
        branch, so that `torch.compile` captures `WorldModel.step` whole."""
        tokens = self.keys[0].shape[0] // self.batch_size
        return (~self.valid).repeat_interleave(tokens, dim=0)[:, None, None, :]

    def append(self, entries: list[LayerEntry], mask: Tensor | None = None) -> WorldModelCache:
        """Commit one frame per dream (only where `mask (B,)` is True) and drop slots beyond the window.

        Dreams not committing keep their history: a padding slot is inserted on their left instead (or, once the
        window is full, they keep all their slots), so every dream's slots stay contiguous and end at its newest
        frame. Cost: one copy of every layer's K/V window (~10 ms at B = 16 on one core); a ring buffer written in
        place would avoid it, at the price of consuming the input cache.
        """
        keep = None if mask is None else mask.to(torch.bool)
        tokens = self.keys[0].shape[0] // self.batch_size if self.keys else 1
        keep_rows = None if keep is None else keep.repeat_interleave(tokens)  # per (dream, token) row

        full = self.length >= self.window  # then the oldest slot leaves as the new one enters

        def push(old: Tensor, new: Tensor, rows: Tensor | None, dim: int) -> Tensor:
            # one cat into a fresh contiguous tensor (a cat of a sliced view was 2.4x slower)
            base = old.narrow(dim, 1, old.shape[dim] - 1) if full else old
            appended = torch.cat([base, new.unsqueeze(dim)], dim=dim)
            if rows is None:
                return appended
            other = old if full else torch.cat([torch.zeros_like(new).unsqueeze(dim), old], dim=dim)
            return torch.where(rows.view([-1] + [1] * (old.dim() - 1)), appended, other)

        def shift(old: Tensor, new: Tensor) -> Tensor:
            shifted = torch.cat([old, new.unsqueeze(1)], dim=1)[:, 1:]  # keep the last k - 1 frames
            return shifted if keep is None else torch.where(keep.view(-1, 1, 1, 1), shifted, old)

        def rows(x: Tensor) -> Tensor:
            return x.reshape(-1, *x.shape[2:])  # (B, T, H, hd) -> (B*T, H, hd)

        keys = tuple(push(k, rows(e.key), keep_rows, 2) for k, e in zip(self.keys, entries, strict=True))
        values = tuple(push(v, rows(e.value), keep_rows, 2) for v, e in zip(self.values, entries, strict=True))
        valid = push(self.valid, self.valid.new_ones(self.batch_size), keep, 1)
        conv = tuple(shift(c, e.conv_input) for c, e in zip(self.conv, entries, strict=True))
        position = self.position + (1 if keep is None else keep.long())
        return WorldModelCache(keys, values, conv, valid, position, self.window)

    def reset_where(self, mask: Tensor) -> WorldModelCache:
        """Forget the history of the dreams where `mask (B,)` is True (their next frame starts a sequence)."""
        keep = ~mask.to(torch.bool)
        conv = tuple(c * keep.view(-1, 1, 1, 1).to(c.dtype) for c in self.conv)
        position = self.position * keep.long()
        return WorldModelCache(self.keys, self.values, conv, self.valid & keep[:, None], position, self.window)
