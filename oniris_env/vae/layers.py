"""Group-causal building blocks of the video VAE, all on `(B, T, C, H, W)` tensors.

Group-causal convolution (simplified from "Improved Video VAE for Latent Video Diffusion Model", Wu et al. 2024):
time is cut into groups of `group_size` frames; a frame sees the frames of its own group (ordinary convolution)
and the frames of earlier groups, never a later group. The group size of a layer is the number of its time steps
that make one latent frame, i.e. g / (time compression accumulated before the layer) - `GroupCausalVAE` derives
it per layer, so encoder and decoder stacks need not be palindromic.

Streaming: every layer is `forward(x, caches) -> (y, caches)`. `caches` is a tuple with `num_caches` entries
(the last input frames a layer needs from earlier calls, or None before the first call); nothing is stored on
the module. Calls must start on a group boundary and carry whole groups, so chunked calls reproduce the
whole-clip call exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

Caches = tuple[Tensor | None, ...]


def run_layers(layers: Sequence[nn.Module], x: Tensor, caches: Caches) -> tuple[Tensor, Caches]:
    """Apply `layers` in order, handing each its slice of the flat `caches` tuple; return the new flat tuple."""
    out: list[Tensor | None] = []
    i = 0
    for layer in layers:
        n = layer.num_caches
        x, new = layer(x, caches[i : i + n])
        out.extend(new)
        i += n
    if i != len(caches):
        raise ValueError(f"expected {i} cache entries, got {len(caches)}")
    return x, tuple(out)


def count_caches(layers: Sequence[nn.Module]) -> int:
    return sum(layer.num_caches for layer in layers)


class GroupCausalConv(nn.Module):
    """A k x k spatial convolution with `temporal_kernel` taps in time, group-causal.

    Output frame t reads input frames t - past ... t + future, where future taps are used only inside t's own
    group (zeros beyond it) and frames before the stream start are zeros. With group_size 1 there is nothing to
    see ahead, so all taps look back (a plain causal convolution). Implemented as one 2D convolution over the
    time taps stacked on channels: `(B, T, Cin, H, W) -> (B, T, Cout, H / stride, W / stride)`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        temporal_kernel: int = 1,
        group_size: int = 1,
        stride: int = 1,
    ) -> None:
        super().__init__()
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.group_size = group_size
        self.temporal_kernel = temporal_kernel
        self.future = 0 if group_size == 1 else min((temporal_kernel - 1) // 2, group_size - 1)
        self.past = temporal_kernel - 1 - self.future
        self.num_caches = 1 if self.past > 0 else 0
        self.conv = nn.Conv2d(in_channels * temporal_kernel, out_channels, kernel_size, stride, kernel_size // 2)

    def forward(self, x: Tensor, caches: Caches = ()) -> tuple[Tensor, Caches]:
        B, T, C, H, W = x.shape
        if T % self.group_size:
            raise ValueError(f"a chunk must hold whole groups of {self.group_size} frames, got {T} frames")
        taps: list[Tensor] = []
        new_caches: Caches = ()
        if self.past > 0:
            prev = caches[0] if caches and caches[0] is not None else x.new_zeros(B, self.past, C, H, W)
            xp = torch.cat([prev.to(x.dtype), x], dim=1)  # (B, past + T, C, H, W)
            new_caches = (xp[:, -self.past :],)
            taps += [xp[:, self.past + d : self.past + d + T] for d in range(-self.past, 1)]
        else:
            taps.append(x)
        pos = torch.arange(T, device=x.device) % self.group_size
        for d in range(1, self.future + 1):
            shifted = torch.cat([x[:, d:], x.new_zeros(B, d, C, H, W)], dim=1)
            inside = (pos + d < self.group_size).to(x.dtype).view(1, T, 1, 1, 1)
            taps.append(shifted * inside)
        h = torch.cat(taps, dim=2).reshape(B * T, C * len(taps), H, W)
        y = self.conv(h)
        return y.reshape(B, T, *y.shape[1:]), new_caches


class FrameNorm(nn.Module):
    """GroupNorm applied to each frame on its own (normalising over time would leak the future)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.flatten(0, 1)).reshape(x.shape)


class ResBlock(nn.Module):
    """norm -> SiLU -> group-causal conv (temporal taps) -> norm -> SiLU -> 3x3 conv, plus a skip.

    `(B, T, Cin, H, W) -> (B, T, Cout, H, W)`.
    """

    def __init__(self, cin: int, cout: int, temporal_kernel: int, group_size: int, groups: int) -> None:
        super().__init__()
        self.norm1 = FrameNorm(cin, groups)
        self.conv1 = GroupCausalConv(cin, cout, 3, temporal_kernel, group_size)
        self.norm2 = FrameNorm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.num_caches = self.conv1.num_caches

    def forward(self, x: Tensor, caches: Caches = ()) -> tuple[Tensor, Caches]:
        h, new = self.conv1(nn.functional.silu(self.norm1(x)), caches)
        B, T = h.shape[:2]
        h = self.conv2(nn.functional.silu(self.norm2(h)).flatten(0, 1))  # (B * T, Cout, H, W)
        return (self.skip(x.flatten(0, 1)) + h).reshape(B, T, *h.shape[1:]), new


class Down(nn.Module):
    """Halve time (pairs of frames stacked on channels: a pair never straddles a group) and/or space.

    `(B, T, Cin, H, W) -> (B, T / 2 or T, Cout, H / 2 or H, W / 2 or W)`.
    """

    num_caches = 0

    def __init__(self, cin: int, cout: int, spatial: bool, temporal: bool) -> None:
        super().__init__()
        self.temporal = temporal
        self.conv = nn.Conv2d(cin * (2 if temporal else 1), cout, 3, 2 if spatial else 1, 1)

    def forward(self, x: Tensor, caches: Caches = ()) -> tuple[Tensor, Caches]:
        B, T, C, H, W = x.shape
        if self.temporal:
            x = x.reshape(B, T // 2, 2 * C, H, W)  # frames 2t and 2t+1 side by side in channels
        y = self.conv(x.flatten(0, 1))
        return y.reshape(B, x.shape[1], *y.shape[1:]), ()


class Up(nn.Module):
    """Double space (nearest, then 3x3 conv) and/or time (the conv emits two frames' channels per step).

    `(B, T, Cin, H, W) -> (B, 2T or T, Cout, 2H or H, 2W or W)`.
    """

    num_caches = 0

    def __init__(self, cin: int, cout: int, spatial: bool, temporal: bool) -> None:
        super().__init__()
        self.spatial, self.temporal, self.cout = spatial, temporal, cout
        self.conv = nn.Conv2d(cin, cout * (2 if temporal else 1), 3, 1, 1)

    def forward(self, x: Tensor, caches: Caches = ()) -> tuple[Tensor, Caches]:
        B, T = x.shape[:2]
        h = x.flatten(0, 1)
        if self.spatial:
            h = nn.functional.interpolate(h, scale_factor=2.0, mode="nearest")
        h = self.conv(h)  # (B * T, Cout * (1 or 2), H', W')
        if self.temporal:
            return h.reshape(B, 2 * T, self.cout, *h.shape[2:]), ()
        return h.reshape(B, T, *h.shape[1:]), ()


class FrameHead(nn.Module):
    """norm -> SiLU -> 3x3 conv on each frame: `(B, T, Cin, H, W) -> (B, T, Cout, H, W)`."""

    num_caches = 0

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.norm = FrameNorm(cin, groups)
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1)

    def forward(self, x: Tensor, caches: Caches = ()) -> tuple[Tensor, Caches]:
        y = self.conv(nn.functional.silu(self.norm(x)).flatten(0, 1))
        return y.reshape(*x.shape[:2], *y.shape[1:]), ()
