"""`VAEConfig`: the shape of the group-causal video VAE, with named presets.

The encoder is a stack of stages; stage `i` runs `blocks[i]` residual blocks at `channels[i]` and then, if asked,
halves space (`spatial_down[i]`) and/or time (`temporal_down[i]`). The decoder mirrors it. Pure Python: importing
this module never imports torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from oniris_env.config_io import dataclass_from_dict


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of `GroupCausalVAE` (saved in every checkpoint; the model is rebuilt from it)."""

    frame_height: int = 64
    """Input frame height H in pixels."""
    frame_width: int = 96
    """Input frame width W in pixels."""
    image_channels: int = 3
    """Colour channels of a frame (RGB)."""
    patch_size: int = 2
    """Pixels per side folded into channels before the first convolution (space-to-depth; the decoder ends
    with the inverse pixel shuffle), so no layer runs at full resolution yet every pixel stays addressable."""
    channels: tuple[int, ...] = (32, 64, 96)
    """Feature channels of each encoder stage, finest first (the decoder uses them in reverse)."""
    blocks: tuple[int, ...] = (1, 1, 1)
    """Residual blocks per encoder stage."""
    decoder_blocks: tuple[int, ...] = (1, 1, 2)
    """Residual blocks per decoder stage, indexed like `channels` (finest first)."""
    spatial_down: tuple[bool, ...] = (True, True, False)
    """Whether the end of encoder stage i halves H and W (the decoder doubles them back)."""
    temporal_down: tuple[bool, ...] = (False, False, False)
    """Whether the end of encoder stage i halves time; the total time compression g = 2 ** sum(temporal_down)."""
    latent_channels: int = 8
    """Channels C of the latent (B, T', C, h, w)."""
    temporal_kernel: int = 2
    """Temporal taps of the first convolution of every residual block (1 = purely per-frame). With g = 1 they
    all look back; inside larger groups (k - 1) // 2 of them look ahead."""
    norm_groups: int = 8
    """GroupNorm groups; normalisation is per frame, so it never mixes time steps."""

    def __post_init__(self) -> None:
        n = len(self.channels)
        if n == 0:
            raise ValueError("channels must name at least one stage")
        for name in ("blocks", "decoder_blocks", "spatial_down", "temporal_down"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} needs one entry per stage ({n}), got {getattr(self, name)!r}")
        if any(c <= 0 or c % self.norm_groups for c in self.channels):
            raise ValueError(f"channels {self.channels} must be positive multiples of norm_groups={self.norm_groups}")
        if any(b < 0 for b in self.blocks + self.decoder_blocks):
            raise ValueError("block counts must be >= 0")
        if self.time_compression not in (1, 2, 4):
            raise ValueError(f"time compression g must be 1, 2 or 4, got {self.time_compression}")
        f = self.spatial_compression
        if self.frame_height % f or self.frame_width % f:
            raise ValueError(
                f"frame {self.frame_height}x{self.frame_width} is not divisible by the spatial compression {f}"
            )
        if self.latent_channels < 1 or self.image_channels < 1:
            raise ValueError("latent_channels and image_channels must be >= 1")
        if self.patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {self.patch_size}")
        if self.temporal_kernel < 1:
            raise ValueError(f"temporal_kernel must be >= 1, got {self.temporal_kernel}")

    @property
    def time_compression(self) -> int:
        """g: input frames per latent frame (the size of a temporal group)."""
        return 2 ** sum(self.temporal_down)

    @property
    def spatial_compression(self) -> int:
        """Downsampling factor from frame to latent in each spatial direction."""
        return self.patch_size * 2 ** sum(self.spatial_down)

    @property
    def latent_height(self) -> int:
        """h: latent height (8 for the default 64x96 frame)."""
        return self.frame_height // self.spatial_compression

    @property
    def latent_width(self) -> int:
        """w: latent width (12 for the default 64x96 frame)."""
        return self.frame_width // self.spatial_compression

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """Shape (C, h, w) of one latent frame."""
        return (self.latent_channels, self.latent_height, self.latent_width)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VAEConfig:
        return dataclass_from_dict(cls, data)


# The shipped LunarLander VAE uses g = 1: one latent frame = one env step, so the world model emits exactly one
# latent per `env.step` and the dream never has to wait for, or guess, the rest of a temporal group (with g = 2 a
# step's frame would depend on an action not yet taken). Spatial compression 2 (patch) x 2 x 2 = 8 gives the
# 8 x 12 latent.
VAE_PRESETS: dict[str, VAEConfig] = {
    "tiny": VAEConfig(
        patch_size=2,
        channels=(8, 16),
        blocks=(1, 1),
        decoder_blocks=(1, 1),
        spatial_down=(True, True),
        temporal_down=(False, False),
        latent_channels=4,
        temporal_kernel=3,
        norm_groups=4,
    ),
    "default": VAEConfig(),
    # For one GPU (not trained here): ~9.8 M parameters (`default`: 1.7 M), 2x the channels, 2x the blocks, same
    # 64x96 frames and (8, 8, 12) latent, so `encode` and every world-model preset work unchanged. A 128x192 variant
    # needs one more spatial down stage (frame_height=128, frame_width=192, spatial_down=(True, True, True)),
    # which keeps the 8x12 latent, plus frames recorded at that size (see README, "Scale out").
    "large": VAEConfig(channels=(64, 128, 192), blocks=(2, 2, 2), decoder_blocks=(2, 2, 3), norm_groups=16),
}
