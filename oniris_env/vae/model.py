"""`GroupCausalVAE`: frames `(B, T, 3, H, W)` in [-1, 1] <-> latents `(B, T / g, C, H / f, W / f)`.

Convolutional only (no attention), so it runs on clips of any length; group-causal in time (see `layers.py`),
so latent j depends only on frames < (j + 1) g and decoded frames of group j only on latents <= j. Whole-clip
`encode`/`decode` and streaming `encode_step`/`decode_step` run the same layers; the streaming calls take and
return an explicit `StreamCache`, so a sequence of any length runs in constant memory.

Public helpers speak uint8 frames `(B, T, H, W, 3)` and *normalised* latents
`(z - latent_shift) / latent_scale`, with per-channel shift/scale measured on training data by the trainer and
stored as buffers in the checkpoint.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from oniris_env.vae.config import VAEConfig
from oniris_env.vae.layers import Down, FrameHead, GroupCausalConv, ResBlock, Up, count_caches, run_layers

LOGVAR_RANGE = (-30.0, 20.0)


@dataclass(frozen=True)
class StreamCache:
    """State carried between streaming calls: per layer, the last input frames it needs (None before the first)."""

    tensors: tuple[Tensor | None, ...]
    """Flat tuple, one entry per group-causal convolution with look-back, in layer order."""
    closed: bool = False
    """Encoder only: the last call held a partial group (padded), so the stream has ended."""


class GroupCausalVAE(nn.Module):
    """Group-causal convolutional video VAE (see module docstring); rebuilt from its `VAEConfig`."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        cfg, g, kt, ng = config, config.time_compression, config.temporal_kernel, config.norm_groups
        n_stages = len(cfg.channels)

        # Encoder. A layer running after a time compression c has g / c of its time steps per latent frame.
        c = 1
        p2 = cfg.patch_size**2
        enc: list[nn.Module] = [GroupCausalConv(cfg.image_channels * p2, cfg.channels[0], 3, 1, g)]
        for i, ch in enumerate(cfg.channels):
            enc += [ResBlock(ch, ch, kt, g // c, ng) for _ in range(cfg.blocks[i])]
            if cfg.spatial_down[i] or cfg.temporal_down[i]:
                nxt = cfg.channels[min(i + 1, n_stages - 1)]
                enc.append(Down(ch, nxt, cfg.spatial_down[i], cfg.temporal_down[i]))
                c *= 2 if cfg.temporal_down[i] else 1
        assert c == g
        top = cfg.channels[-1]
        enc += [ResBlock(top, top, kt, 1, ng), FrameHead(top, 2 * cfg.latent_channels, ng)]
        self.encoder = nn.ModuleList(enc)

        # Decoder: the mirror image; group sizes again from the compression still applied at each depth.
        dec: list[nn.Module] = [GroupCausalConv(cfg.latent_channels, top, 3, 1, 1), ResBlock(top, top, kt, 1, ng)]
        cur = top
        for i in reversed(range(n_stages)):
            if cfg.spatial_down[i] or cfg.temporal_down[i]:
                dec.append(Up(cur, cfg.channels[i], cfg.spatial_down[i], cfg.temporal_down[i]))
                c //= 2 if cfg.temporal_down[i] else 1
                cur = cfg.channels[i]
            dec += [ResBlock(cur, cur, kt, g // c, ng) for _ in range(cfg.decoder_blocks[i])]
        assert c == 1 and cur == cfg.channels[0]
        dec.append(FrameHead(cur, cfg.image_channels * p2, ng))
        self.decoder = nn.ModuleList(dec)

        self.register_buffer("latent_shift", torch.zeros(cfg.latent_channels))
        self.register_buffer("latent_scale", torch.ones(cfg.latent_channels))

    # ---- float API: frames (B, T, 3, H, W) in [-1, 1] -------------------------------------------------------

    def encode_step(self, x: Tensor, cache: StreamCache | None = None) -> tuple[Tensor, Tensor, StreamCache]:
        """Encode the next chunk of a stream: x `(B, T, 3, H, W)` -> posterior mean, log-variance
        `(B, ceil(T / g), C, h, w)` and the new cache. T should be a multiple of g; otherwise the last group is
        padded by repeating the last frame and the stream is closed (no further calls).
        """
        self._check_float(x, "frames", (self.config.image_channels, self.config.frame_height, self.config.frame_width))
        if cache is not None and cache.closed:
            raise ValueError("this encode stream ended with a partial group; start a new stream (cache=None)")
        g, T = self.config.time_compression, x.shape[1]
        closed = T % g != 0
        if closed:
            x = torch.cat([x, x[:, -1:].expand(-1, g - T % g, -1, -1, -1)], dim=1)
        tensors = cache.tensors if cache is not None else (None,) * count_caches(self.encoder)
        B, Tp = x.shape[:2]
        x = nn.functional.pixel_unshuffle(x.flatten(0, 1), self.config.patch_size)  # (B T', 3 p p, H / p, W / p)
        h, tensors = run_layers(self.encoder, x.reshape(B, Tp, *x.shape[1:]), tensors)
        mean, logvar = h.chunk(2, dim=2)
        return mean, logvar.clamp(*LOGVAR_RANGE), StreamCache(tensors, closed)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Whole clip: x `(B, T, 3, H, W)` in [-1, 1] -> posterior mean, log-variance `(B, ceil(T/g), C, h, w)`."""
        mean, logvar, _ = self.encode_step(x, None)
        return mean, logvar

    def decode_step(self, z: Tensor, cache: StreamCache | None = None) -> tuple[Tensor, StreamCache]:
        """Decode the next latents of a stream: z `(B, T', C, h, w)` -> frames `(B, T' g, 3, H, W)`, new cache."""
        self._check_float(z, "latents", self.config.latent_shape)
        tensors = cache.tensors if cache is not None else (None,) * count_caches(self.decoder)
        x, tensors = run_layers(self.decoder, z, tensors)  # (B, T' g, 3 p p, H / p, W / p)
        B, T = x.shape[:2]
        x = nn.functional.pixel_shuffle(x.flatten(0, 1), self.config.patch_size)
        return x.reshape(B, T, *x.shape[1:]), StreamCache(tensors)

    def decode(self, z: Tensor) -> Tensor:
        """Whole clip: latents `(B, T', C, h, w)` -> frames `(B, T' g, 3, H, W)`, ~[-1, 1] (not clamped)."""
        return self.decode_step(z, None)[0]

    # ---- uint8 / normalised-latent API -----------------------------------------------------------------------

    @torch.no_grad()
    def encode_frames_step(
        self, frames_u8: Tensor | np.ndarray, cache: StreamCache | None = None, bf16: bool = False
    ) -> tuple[Tensor, StreamCache]:
        """uint8 frames `(B, T, H, W, 3)` -> normalised latents `(B, ceil(T/g), C, h, w)` float32 (posterior
        mean), streaming (see `encode_step`)."""
        x = self._frames_to_float(frames_u8)
        with self._autocast(bf16):
            mean, _, cache = self.encode_step(x, cache)
        return ((mean.float() - self.latent_shift.view(1, 1, -1, 1, 1)) / self.latent_scale.view(1, 1, -1, 1, 1)), cache

    def encode_frames(self, frames_u8: Tensor | np.ndarray, bf16: bool = False) -> Tensor:
        """uint8 frames `(B, T, H, W, 3)` -> normalised latents `(B, ceil(T/g), C, h, w)` float32."""
        return self.encode_frames_step(frames_u8, None, bf16)[0]

    @torch.no_grad()
    def decode_latents_step(
        self, latents: Tensor, cache: StreamCache | None = None, bf16: bool = False
    ) -> tuple[Tensor, StreamCache]:
        """Normalised latents `(B, T', C, h, w)` -> uint8 frames `(B, T' g, H, W, 3)`, streaming."""
        self._check_float(latents, "latents", self.config.latent_shape)
        p = next(self.parameters())
        z = latents.to(p.device, torch.float32)
        z = z * self.latent_scale.view(1, 1, -1, 1, 1) + self.latent_shift.view(1, 1, -1, 1, 1)
        with self._autocast(bf16):
            x, cache = self.decode_step(z, cache)
        frames = ((x.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round_().to(torch.uint8)
        return frames.permute(0, 1, 3, 4, 2).contiguous(), cache  # (B, T, H, W, 3)

    def decode_latents(self, latents: Tensor, bf16: bool = False) -> Tensor:
        """Normalised latents `(B, T', C, h, w)` -> uint8 frames `(B, T' g, H, W, 3)`."""
        return self.decode_latents_step(latents, None, bf16)[0]

    # ---- checks and conversions -------------------------------------------------------------------------------

    def _frames_to_float(self, frames_u8: Tensor | np.ndarray) -> Tensor:
        cfg = self.config
        expected = (cfg.frame_height, cfg.frame_width, cfg.image_channels)
        if isinstance(frames_u8, np.ndarray):
            if frames_u8.dtype != np.uint8:
                raise ValueError(f"frames: expected dtype uint8, got {frames_u8.dtype}")
            frames_u8 = torch.from_numpy(np.ascontiguousarray(frames_u8))
        if not isinstance(frames_u8, Tensor):
            raise ValueError(f"frames: expected a uint8 tensor or ndarray, got {type(frames_u8).__name__}")
        if frames_u8.dtype != torch.uint8:
            raise ValueError(f"frames: expected dtype uint8, got {frames_u8.dtype}")
        if frames_u8.ndim != 5 or tuple(frames_u8.shape[2:]) != expected or frames_u8.shape[1] == 0:
            dims = ", ".join(map(str, expected))
            raise ValueError(f"frames: expected shape (B, T, {dims}), got {tuple(frames_u8.shape)}")
        p = next(self.parameters())
        x = frames_u8.to(p.device).permute(0, 1, 4, 2, 3).float()  # (B, T, 3, H, W)
        return x / 127.5 - 1.0

    @staticmethod
    def _check_float(x: Tensor, name: str, tail: tuple[int, ...]) -> None:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: expected a floating-point tensor, got {got}")
        if x.ndim != 5 or tuple(x.shape[2:]) != tuple(tail) or x.shape[1] == 0:
            raise ValueError(f"{name}: expected shape (B, T, {', '.join(map(str, tail))}), got {tuple(x.shape)}")

    def _autocast(self, bf16: bool):
        device_type = next(self.parameters()).device.type
        return torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else nullcontext()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
