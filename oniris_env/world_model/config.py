"""`WorldModelConfig`: the shape of the autoregressive diffusion world model, with named presets.

The resolved config is stored in every checkpoint (`world_model.safetensors` metadata) and the model is rebuilt
from it; nothing is patched after loading. Importing this module never imports torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from oniris_env.config_io import dataclass_from_dict


@dataclass(frozen=True)
class WorldModelConfig:
    """Latent video transformer with factorized space/time attention and a causal temporal conv path."""

    latent_channels: int = 8
    """Channels C of one latent frame `(C, h, w)` (from the VAE)."""
    latent_height: int = 8
    """Latent height h."""
    latent_width: int = 12
    """Latent width w."""
    patch_size: int = 2
    """Square patch size p on the latent grid; tokens per frame = (h / p) * (w / p)."""
    width: int = 160
    """Transformer width D (token channels)."""
    depth: int = 6
    """Number of blocks."""
    heads: int = 4
    """Attention heads; head_dim = width / heads must be even (RoPE)."""
    cond_width: int = 64
    """Width of the per-frame conditioning vector (sigma + action) that every block's adaLN reads; small,
    since it carries little information and adaLN weights (12 x width per block) dominate batch-1 inference."""
    mlp_ratio: float = 3.0
    """Hidden width of each block's MLP, as a multiple of `width`."""
    window: int = 16
    """W: how many previous frames a frame attends to (training mask and inference KV cache alike). Train on
    clips longer than W so that the full window (all distances up to W) is seen in training. 16 covers the
    11-14 still frames between a landing's last visible motion and its end (benchmarks/bench_landing_end.py)."""
    conv_kernel: int = 3
    """Temporal kernel k of the causal conv path: the current frame plus k - 1 previous clean frames."""
    num_actions: int = 4
    """Discrete actions (from `GameSpec.num_actions`); index `num_actions` is the extra "start" embedding."""
    sigma_data: float = 1.0
    """EDM sigma_data: std of the (normalised) latents."""
    rope_theta: float = 100.0
    """RoPE base for the frame index in temporal attention (relative distances are at most `window`)."""
    reward_bins: int = 41
    """Bins of the two-hot reward head, evenly spaced in symlog space (DreamerV3)."""
    reward_symlog_max: float = 5.0
    """Bins span symlog(r) in [-max, max]; symexp(5) ~ 147 covers LunarLander's +-100 terminal rewards."""
    head_width: int = 128
    """Hidden width of the reward / termination MLP heads."""

    def __post_init__(self) -> None:
        positive = (
            "latent_channels", "latent_height", "latent_width", "patch_size", "width", "depth", "heads", "cond_width"
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.latent_height % self.patch_size or self.latent_width % self.patch_size:
            raise ValueError(
                f"patch_size {self.patch_size} must divide the latent grid "
                f"{self.latent_height} x {self.latent_width}"
            )
        if self.cond_width % 2:
            raise ValueError(f"cond_width must be even (Fourier features), got {self.cond_width}")
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"width {self.width} / heads {self.heads} must be an even integer (RoPE pairs)")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if not 1 <= self.conv_kernel <= self.window + 1:
            raise ValueError(f"conv_kernel must be in [1, window + 1 = {self.window + 1}], got {self.conv_kernel}")
        if self.num_actions < 1:
            raise ValueError(f"num_actions must be >= 1, got {self.num_actions}")
        if self.sigma_data <= 0:
            raise ValueError(f"sigma_data must be > 0, got {self.sigma_data}")
        if self.reward_bins < 3 or self.reward_bins % 2 == 0:
            raise ValueError(f"reward_bins must be odd and >= 3 (a bin at 0), got {self.reward_bins}")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """`(C, h, w)` of one latent frame."""
        return (self.latent_channels, self.latent_height, self.latent_width)

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid `(h / p, w / p)` of one frame."""
        return (self.latent_height // self.patch_size, self.latent_width // self.patch_size)

    @property
    def tokens_per_frame(self) -> int:
        """T = (h / p) * (w / p)."""
        gh, gw = self.grid
        return gh * gw

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def patch_dim(self) -> int:
        """Features of one token before the input projection: p * p * C."""
        return self.patch_size * self.patch_size * self.latent_channels

    @property
    def start_action(self) -> int:
        """Action index that conditions the first frame of a sequence (no previous action)."""
        return self.num_actions

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldModelConfig:
        return dataclass_from_dict(cls, data)

    @classmethod
    def tiny(cls, **overrides: Any) -> WorldModelConfig:
        """For tests and CI: a few thousand parameters on a (4, 4, 6) latent, 24 tokens per frame."""
        base = cls(
            latent_channels=4, latent_height=4, latent_width=6, patch_size=1, width=32, depth=2, heads=2, cond_width=16,
            mlp_ratio=2.0, window=4, conv_kernel=3, reward_bins=21, head_width=32,
        )
        return replace(base, **overrides)

    @classmethod
    def default(cls, **overrides: Any) -> WorldModelConfig:
        """The CPU model that ships: ~3.2 M parameters, 24 tokens per frame (patch 2 on an 8 x 12 latent), a
        16-frame window; sized by benchmarks/bench_world_model.py (docs/RESULTS.md)."""
        return replace(cls(), **overrides)

    @classmethod
    def large(cls, **overrides: Any) -> WorldModelConfig:
        """For one modern GPU (not trained here): ~73 M parameters (`default`: 3.2 M), 3.2x wider, 2x deeper,
        a 32-frame window (~5 s of game at action repeat 2), on the same 8 x 12 latent (24 tokens per frame)."""
        base = cls(
            width=512, depth=12, heads=8, cond_width=256, mlp_ratio=4.0, window=32, conv_kernel=4, head_width=256
        )
        return replace(base, **overrides)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> WorldModelConfig:
        """`tiny`, `default` or `large`, with field overrides (e.g. the latent shape of a dataset)."""
        if name not in WORLD_MODEL_PRESETS:
            raise ValueError(f"unknown world-model preset {name!r}; choose one of {sorted(WORLD_MODEL_PRESETS)}")
        return getattr(cls, name)(**overrides)


WORLD_MODEL_PRESETS = ("tiny", "default", "large")
"""Architecture presets accepted by `WorldModelConfig.preset` (the training presets are
`training.world_model.config.TRAIN_WORLD_MODEL_PRESETS`)."""
