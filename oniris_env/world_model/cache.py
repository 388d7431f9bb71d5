"""`WorldModelCache`: the explicit inference state of the world model (per-layer KV window + conv inputs).

A cache is a value: `WorldModel.step` returns a new one when it commits a frame and leaves its input intact,
unless the caller, owning the cache, asks for an in-place commit (`in_place=True`: no copy of the window).
Batched over B dreams; dreams may hold different history lengths (empty slots marked by `valid`).
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
    """Sliding-window state for autoregressive generation, stored as a ring buffer of W slots.

    The frame at absolute position p of a dream lives in slot p mod W of every layer: committing a frame writes
    one slot (in place when asked: no copy of the window) and overwrites the frame that leaves the window.
    Slot order does not matter to attention: keys are RoPE-rotated at their absolute positions and the softmax
    over slots is permutation invariant, so a ring equals the oldest-first window up to float summation order.
    """

    keys: tuple[Tensor, ...]
    """Per block `(B*T, H, W, hd)`: keys of the cached frames, RoPE-rotated at their absolute positions."""
    values: tuple[Tensor, ...]
    """Per block `(B*T, H, W, hd)`."""
    conv: tuple[Tensor, ...]
    """Per block `(B, k - 1, T, D)`: conv-path inputs of the last k - 1 committed frames, oldest first (zeros
    before the first frame, exactly like the zero padding in training)."""
    valid: Tensor
    """`(B, W)` bool: True on the slots that hold one of the dream's last W frames."""
    position: Tensor
    """`(B,)` int64 absolute frame index of each dream's next frame (its RoPE position; its slot is `% W`)."""

    @property
    def batch_size(self) -> int:
        return self.valid.shape[0]

    @property
    def window(self) -> int:
        """Number of slots W (the model's window)."""
        return self.valid.shape[1]

    def history(self) -> Tensor:
        """`(B,)` int64 number of frames each dream attends to (at most W)."""
        return self.valid.sum(dim=1)

    def padding_mask(self) -> Tensor:
        """`(B*T, 1, 1, W)` bool, True on empty slots (one row per attention batch row). No data-dependent
        branch, so that `torch.compile` captures `WorldModel.step` whole."""
        tokens = self.keys[0].shape[0] // self.batch_size
        return (~self.valid).repeat_interleave(tokens, dim=0)[:, None, None, :]

    def append(self, entries: list[LayerEntry], mask: Tensor | None = None, in_place: bool = False) -> WorldModelCache:
        """Commit one frame per dream (only where `mask (B,)` is True) into slot `position % W`.

        Args:
            entries: one `LayerEntry` per block (the new frame's keys, values and conv inputs).
            mask: optional `(B,)` bool; dreams where it is False keep their state exactly.
            in_place: write the K/V slot into this cache's tensors instead of copying every layer's window
                (the copy cost ~10 ms at B = 16 on one core). The input cache is then CONSUMED: only the
                returned cache is valid. Use it when the caller owns the cache (the simulator, the sampler's
                commit call); the default keeps caches immutable values.
        """
        b = self.batch_size
        keep = torch.ones(b, dtype=torch.bool, device=self.valid.device) if mask is None else mask.to(torch.bool)
        slot = self.position % self.window  # (B,)
        dreams = torch.arange(b, device=slot.device)

        def write(old: Tensor, new: Tensor) -> Tensor:
            # old (B*T, H, W, hd) seen as (B, T, H, W, hd); new (B, T, H, hd) goes to slot[b] of dream b
            out = old if in_place else old.clone()
            ring = out.view(b, -1, *old.shape[1:])
            if mask is not None:
                new = torch.where(keep.view(-1, 1, 1, 1), new, ring[dreams, :, :, slot])
            ring[dreams, :, :, slot] = new.to(old.dtype)
            return out

        def shift(old: Tensor, new: Tensor) -> Tensor:
            shifted = torch.cat([old, new.unsqueeze(1)], dim=1)[:, 1:]  # keep the last k - 1 frames
            return shifted if mask is None else torch.where(keep.view(-1, 1, 1, 1), shifted, old)

        keys = tuple(write(k, e.key) for k, e in zip(self.keys, entries, strict=True))
        values = tuple(write(v, e.value) for v, e in zip(self.values, entries, strict=True))
        filled = self.valid.gather(1, slot[:, None]) | keep[:, None]
        valid = self.valid.scatter(1, slot[:, None], filled)
        conv = tuple(shift(c, e.conv_input) for c, e in zip(self.conv, entries, strict=True))
        return WorldModelCache(keys, values, conv, valid, self.position + keep.long())

    def reset_where(self, mask: Tensor) -> WorldModelCache:
        """Forget the history of the dreams where `mask (B,)` is True (their next frame starts a sequence)."""
        keep = ~mask.to(torch.bool)
        conv = tuple(c * keep.view(-1, 1, 1, 1).to(c.dtype) for c in self.conv)
        return WorldModelCache(self.keys, self.values, conv, self.valid & keep[:, None], self.position * keep.long())

    def repeat_dreams(self, k: int) -> WorldModelCache:
        """A cache of B * k dreams where dream b's state is copied to rows b * k ... b * k + k - 1."""

        def rep(t: Tensor) -> Tensor:  # per-dream leading dim (B * X, ...)
            x = t.shape[0] // self.batch_size
            return t.reshape(self.batch_size, x, *t.shape[1:]).repeat_interleave(k, dim=0).reshape(-1, *t.shape[1:])

        return WorldModelCache(
            tuple(rep(t) for t in self.keys),
            tuple(rep(t) for t in self.values),
            tuple(rep(t) for t in self.conv),
            rep(self.valid),
            rep(self.position),
        )

    def splice(self, rows: Tensor, other: WorldModelCache, in_place: bool = False) -> WorldModelCache:
        """This cache with dreams `rows (n,)` replaced by the n dreams of `other` (same model), e.g. dreams
        restarted from fresh contexts in a cache of n rather than B dreams. Returns a new cache; with `in_place`
        the rows are written into this cache's tensors (consumed, as in `append`): no copy of the B-dream window
        (the copy cost ~30 ms per reset at B = 64 on one core, whatever n)."""
        n, b = other.batch_size, self.batch_size
        if rows.shape != (n,):
            raise ValueError(f"expected {n} rows for a cache of {n} dreams, got shape {tuple(rows.shape)}")

        def put(big: Tensor, small: Tensor) -> Tensor:  # per-dream leading dim (B * X, ...) <- (n * X, ...)
            x = big.shape[0] // b
            small = small.reshape(n, x, *small.shape[1:])
            if in_place:
                big.view(b, x, *big.shape[1:]).index_copy_(0, rows, small)
                return big
            return big.reshape(b, x, *big.shape[1:]).index_copy(0, rows, small).reshape(big.shape)

        keys = tuple(put(a, s) for a, s in zip(self.keys, other.keys, strict=True))
        values = tuple(put(a, s) for a, s in zip(self.values, other.values, strict=True))
        conv = tuple(put(a, s) for a, s in zip(self.conv, other.conv, strict=True))
        return WorldModelCache(keys, values, conv, put(self.valid, other.valid), put(self.position, other.position))
