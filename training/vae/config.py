"""`TrainVAEConfig`: how the VAE is trained (saved as `train_config.json` in every run folder), with presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from oniris_env.config_io import dataclass_from_dict
from oniris_env.vae import VAE_PRESETS

RECON_LOSSES = ("l2", "fg_l1", "color_l1", "worst_k_l1")


@dataclass(frozen=True)
class TrainVAEConfig:
    """Hyper-parameters of `train_vae`."""

    model: str = "default"
    """Name of the `VAE_PRESETS` architecture to train."""
    steps: int = 4000
    """Optimizer steps in total (a resumed run continues up to this number)."""
    batch_size: int = 8
    """Clips per batch."""
    clip_length: int = 2
    """Frames per training clip (a multiple of g); > 1 so the temporal taps learn to use the past."""
    lr: float = 2e-3
    """Peak AdamW learning rate (after warmup, cosine-decayed to `lr * min_lr_fraction`)."""
    min_lr_fraction: float = 0.05
    """Final learning rate as a fraction of `lr`."""
    warmup_steps: int = 100
    """Linear warmup steps."""
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value."""
    recon_loss: str = "color_l1"
    """Reconstruction loss, one of `RECON_LOSSES` (see `training/vae/losses.py` and docs/results_vae.md)."""
    fg_weight: float = 20.0
    """Extra weight of foreground pixels in the weighted losses."""
    worst_k_fraction: float = 0.02
    """Fraction of pixels per frame averaged by the worst-k term of `worst_k_l1`."""
    excess_weight: float = 0.0
    """Weight of `excess_loss`: L1 on the lander's colour signature, so no purple tint appears off the lander."""
    init_from: str = ""
    """A vae.safetensors whose weights start a fresh run (fine-tuning); "" = random init. Must match `model`."""
    kl_weight: float = 1e-3
    """Weight of the group-wise KL (nats per pixel value)."""
    bf16: bool = False
    """bf16 autocast for forward/backward; off by default: on this 2-core CPU it measured slower than fp32
    for these small convolutions (17 vs 26 frames/s, benchmarks/bench_vae.py)."""
    channels_last: bool = True
    """Use channels_last memory format for the convolutions."""
    log_every: int = 25
    """Steps between metrics lines in `metrics.jsonl`."""
    val_every: int = 500
    """Steps between validations on held-out episodes (0 = only at the end)."""
    val_frames: int = 512
    """Validation frames used by the periodic validation (the final evaluation uses all)."""
    eval_frames: int = 0
    """Validation frames of the final evaluation written to eval.json (0 = every frame of the val split)."""
    checkpoint_every: int = 100
    """Steps between resume checkpoints."""
    stats_frames: int = 4096
    """Training frames encoded at the end to measure the per-channel latent shift and scale."""
    val_fraction: float = 0.1
    """Fraction of episodes held out for validation (by episode seed, see `training.dataset`)."""
    seed: int = 0
    """Seed of the model init, batch sampling and posterior noise."""

    def __post_init__(self) -> None:
        if self.model not in VAE_PRESETS:
            raise ValueError(f"model must be one of {sorted(VAE_PRESETS)}, got {self.model!r}")
        if self.recon_loss not in RECON_LOSSES:
            raise ValueError(f"recon_loss must be one of {RECON_LOSSES}, got {self.recon_loss!r}")
        g = VAE_PRESETS[self.model].time_compression
        if self.clip_length < 1 or self.clip_length % g:
            raise ValueError(f"clip_length must be a positive multiple of g = {g}, got {self.clip_length}")
        if self.eval_frames < 0:
            raise ValueError(f"eval_frames must be >= 0, got {self.eval_frames}")
        for name in ("steps", "batch_size", "log_every", "checkpoint_every", "val_frames", "stats_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.lr or not 0 <= self.min_lr_fraction <= 1:
            raise ValueError("lr must be > 0 and min_lr_fraction in [0, 1]")
        if not 0 < self.worst_k_fraction <= 1:
            raise ValueError(f"worst_k_fraction must be in (0, 1], got {self.worst_k_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainVAEConfig:
        return dataclass_from_dict(cls, data)


TRAIN_VAE_PRESETS: dict[str, TrainVAEConfig] = {
    "tiny": TrainVAEConfig(
        model="tiny",
        steps=30,
        batch_size=4,
        clip_length=2,
        lr=3e-3,
        warmup_steps=5,
        log_every=5,
        val_every=0,
        val_frames=64,
        checkpoint_every=10,
        stats_frames=64,
        bf16=False,
    ),
    "default": TrainVAEConfig(),
    # Second stage of the shipped VAE: start from a `default` run (`init_from`, CLI `--init-from`) and add the
    # lander colour-signature loss, which removes the faint purple tint L1 leaves on white terrain edges.
    "finetune": TrainVAEConfig(excess_weight=50.0, steps=1000, lr=5e-4, warmup_steps=50, val_every=250),
    # One modern GPU (documented, not trained here): the `large` VAE, bf16, 32 clips of 4 frames per rank (under
    # DDP the batch is per rank), the colour-signature term from the start, 20 k steps.
    "large": TrainVAEConfig(
        model="large",
        steps=20_000,
        batch_size=32,
        clip_length=4,
        lr=1e-3,
        warmup_steps=500,
        bf16=True,
        excess_weight=50.0,
        log_every=100,
        val_every=2000,
        checkpoint_every=500,
        eval_frames=4096,
    ),
}
