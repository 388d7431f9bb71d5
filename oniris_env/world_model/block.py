"""One transformer block: spatial attention, DART temporal attention, causal temporal conv, MLP.

Every sub-block is modulated per frame by the conditioning vector (DiT adaLN-Zero, Peebles & Xie 2023, sec.
3.2): shift and scale after a LayerNorm, and a gate on the residual branch, all regressed from the frame's
conditioning (sigma and action). The gates start at zero, so a fresh block is the identity.

Two entry points compute the same function: `forward` on a whole DART clip and `step` on one new frame
against a `WorldModelCache` layer (tests check they agree).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from oniris_env.world_model.attention import spatial_attention, temporal_attention, temporal_step
from oniris_env.world_model.cache import LayerEntry
from oniris_env.world_model.config import WorldModelConfig

NUM_SUBBLOCKS = 4  # spatial attention, temporal attention, causal conv, MLP


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """DiT adaLN: x `(B, F, T, D)`, shift/scale `(B, F, D)` per frame."""
    return x * (1 + scale.unsqueeze(2)) + shift.unsqueeze(2)


class Block(nn.Module):
    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        d, k = config.width, config.conv_kernel
        self.config = config
        self.norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Linear(config.cond_width, 3 * NUM_SUBBLOCKS * d)
        self.spatial_qkv = nn.Linear(d, 3 * d)
        self.spatial_out = nn.Linear(d, d)
        self.temporal_qkv = nn.Linear(d, 3 * d)
        self.temporal_out = nn.Linear(d, d)
        # Causal conv path ("implicit frame stacking"): depthwise 3x3 on the current frame + depthwise 3x3 taps
        # on the k - 1 previous clean frames, then a pointwise mix.
        self.conv_current = nn.Conv2d(d, d, 3, padding=1, groups=d)
        # one depthwise filter per (channel, tap), summed over taps: oneDNN is fast for depthwise convs only
        taps = d * (k - 1)
        self.conv_past = nn.Conv2d(taps, taps, 3, padding=1, groups=taps, bias=False) if k > 1 else None
        self.conv_out = nn.Linear(d, d)
        hidden = int(config.mlp_ratio * d)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    # -- shared pieces ----------------------------------------------------------------------------------------

    def _modulation(self, cond: Tensor) -> list[Tensor]:
        """12 tensors `(B, F, D)`: (shift, scale, gate) for each sub-block."""
        return list(self.ada(F.silu(cond)).chunk(3 * NUM_SUBBLOCKS, dim=-1))

    def _heads(self, x: Tensor) -> Tensor:
        """`(B, F, T, D) -> (B, F, T, H, hd)`."""
        return x.unflatten(-1, (self.config.heads, self.config.head_dim))

    def _spatial(self, x: Tensor, backend: str) -> Tensor:
        q, k, v = self.spatial_qkv(x).chunk(3, dim=-1)
        out = spatial_attention(self._heads(q), self._heads(k), self._heads(v), backend)
        return self.spatial_out(out.flatten(-2))

    def _to_grid(self, x: Tensor) -> Tensor:
        """`(B, F, T, C) -> (B*F, C, gh, gw)` as a channels-last view (oneDNN's fast depthwise layout)."""
        gh, gw = self.config.grid
        b, f, _, c = x.shape
        grid = x.reshape(b * f, gh, gw, c).permute(0, 3, 1, 2)
        return grid.contiguous(memory_format=torch.channels_last)

    def _from_grid(self, y: Tensor, b: int) -> Tensor:
        """`(B*F, D, gh, gw) -> (B, F, T, D)`."""
        bf, d = y.shape[:2]
        return y.permute(0, 2, 3, 1).reshape(b, bf // b, -1, d)

    def _conv_current(self, x: Tensor) -> Tensor:
        return self._from_grid(self.conv_current(self._to_grid(x)), x.shape[0])

    def _conv_past(self, padded: Tensor, frames: int) -> Tensor:
        """Past taps for `frames` frames from `padded (B, k - 1 + frames, T, D)`: clean conv inputs, oldest
        first, with the k - 1 frames before the first one in front (zeros at a sequence start)."""
        k = self.config.conv_kernel
        # tap d (1..k-1) of frame i reads clean frame i - d, i.e. padded index i - d + k - 1
        taps = torch.stack([padded[:, k - 1 - d : k - 1 - d + frames] for d in range(1, k)], dim=-1)
        grid = self._to_grid(taps.flatten(-2))  # (B*F, D*(k-1), gh, gw), channels ordered (D, k-1)
        out = self._from_grid(self.conv_past(grid), padded.shape[0])  # (B, F, T, D*(k-1))
        return out.unflatten(-1, (-1, k - 1)).sum(-1)

    def _conv_finish(self, u: Tensor) -> Tensor:
        return self.conv_out(F.gelu(u))  # exact GELU: 4x faster than tanh on this CPU

    # -- entry points -----------------------------------------------------------------------------------------

    def forward(self, h: Tensor, cond: Tensor, backend: str = "fast") -> Tensor:
        """DART clip: h `(B, 2N, T, D)` = [clean 0..N-1 | noisy 0..N-1], cond `(B, 2N, Dc)` -> `(B, 2N, T, D)`."""
        cfg = self.config
        n = h.shape[1] // 2
        m = self._modulation(cond)
        h = h + m[2].unsqueeze(2) * self._spatial(modulate(self.norm(h), m[0], m[1]), backend)

        x = modulate(self.norm(h), m[3], m[4])
        q, k, v = self.temporal_qkv(x).chunk(3, dim=-1)
        out = temporal_attention(
            self._heads(q), self._heads(k), self._heads(v), cfg.window, cfg.rope_theta, backend
        )
        h = h + m[5].unsqueeze(2) * self.temporal_out(out.flatten(-2))

        x = modulate(self.norm(h), m[6], m[7])
        u = self._conv_current(x)
        if self.conv_past is not None:
            # the past is computed once from the clean half and added to both halves
            clean = x[:, :n]
            pad = clean.new_zeros(clean.shape[0], cfg.conv_kernel - 1, *clean.shape[2:])
            past = self._conv_past(torch.cat([pad, clean], dim=1), n)
            u = u + past.repeat(1, 2, 1, 1)
        h = h + m[8].unsqueeze(2) * self._conv_finish(u)

        return h + m[11].unsqueeze(2) * self.mlp(modulate(self.norm(h), m[9], m[10]))

    def step(
        self,
        h: Tensor,
        cond: Tensor,
        cache_k: Tensor,
        cache_v: Tensor,
        pad: Tensor | None,
        rope: tuple[Tensor, Tensor],
        conv: Tensor,
    ) -> tuple[Tensor, LayerEntry]:
        """One new frame against this block's cache.

        Args:
            h: `(B, 1, T, D)`; cond: `(B, 1, Dc)`.
            cache_k, cache_v: `(B*T, H, n, hd)`; pad: None or `(B*T, 1, 1, n)` bool, True on left-padding
                slots (`padding_mask`); rope: cos, sin `(B, hd / 2)` at the frame's position;
                conv: `(B, k - 1, T, D)` (see `WorldModelCache`).
        Returns:
            the new h `(B, 1, T, D)` and the frame's `LayerEntry` (to commit it to the cache).
        """
        m = self._modulation(cond)
        h = h + m[2].unsqueeze(2) * self._spatial(modulate(self.norm(h), m[0], m[1]), "fast")

        x = modulate(self.norm(h), m[3], m[4])
        q, k, v = (self._heads(t)[:, 0] for t in self.temporal_qkv(x).chunk(3, dim=-1))  # (B, T, H, hd)
        out, k = temporal_step(q, k, v, cache_k, cache_v, pad, rope)
        h = h + m[5].unsqueeze(2) * self.temporal_out(out.flatten(-2).unsqueeze(1))

        x_conv = modulate(self.norm(h), m[6], m[7])
        u = self._conv_current(x_conv)
        if self.conv_past is not None:
            u = u + self._conv_past(torch.cat([conv, x_conv], dim=1), 1)
        h = h + m[8].unsqueeze(2) * self._conv_finish(u)

        h = h + m[11].unsqueeze(2) * self.mlp(modulate(self.norm(h), m[9], m[10]))
        return h, LayerEntry(key=k, value=v, conv_input=x_conv[:, 0])
