"""`TrainWorldModelConfig`: how the world model is trained (DART), with named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from training.dataset import check_edge_fractions


@dataclass(frozen=True)
class TrainWorldModelConfig:
    """DART training of the world model (the run: `training.world_model.train`; the losses:
    `training.world_model.loss`; the shipped run's settings and curves: docs/MODEL_CARD.md, "Training")."""

    model_preset: str = "default"
    """`WorldModelConfig` preset; the latent shape and action count come from the dataset."""
    clip_frames: int = 20
    """N: frames per training clip (each pass supervises all N); at least the model's window + 1 is best."""
    window: int | None = None
    """Attention window W of the model (`WorldModelConfig.window`); None keeps the model preset's, or that of
    the `init_from` weights (no weight depends on W, so a run may start from weights trained with another W)."""
    batch_size: int = 8
    """Clips per optimiser step."""
    steps: int = 20_000
    """Total optimiser steps."""
    lr_ref: float = 5e-4
    """Adam learning rate before decay (EDM2 eq. 67: lr = lr_ref / sqrt(max(t / t_ref, 1)))."""
    lr_t_ref: int = 2_000
    """t_ref of the inverse-sqrt decay, in steps."""
    lr_warmup: int = 200
    """Linear warm-up steps."""
    adam_betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas (EDM2)."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (0 disables)."""
    P_mean: float = 0.3
    """Mean of ln sigma for the noisy copy (EDM eq. for p_train; DIAMOND's -0.4 at sigma_data 0.5 ~ 0.3 at 1)."""
    P_std: float = 1.2
    """Std of ln sigma for the noisy copy."""
    sigma_min: float = 2e-3
    """Noisy-copy sigmas are clipped to [sigma_min, sigma_max] (DIAMOND)."""
    sigma_max: float = 20.0
    """Upper clip of the noisy-copy sigmas."""
    sigma_ctx_max: float = 0.3
    """Context noise of the clean copy: sigma_ctx ~ U(0, s), labelled to the model. Inference commits frames
    at the sampler's last sigma, which must lie in [0, s]."""
    sigma_data: float | None = None
    """EDM sigma_data; None measures the std of the training latents (they should be ~1 when normalised)."""
    start_clip_fraction: float = 0.0
    """Probability that a training clip is the first window of an episode (`EpisodeWindows.sample_batch`):
    uniform windows see an episode's first transitions once, while every dream starts from real episode starts."""
    end_clip_fraction: float = 0.0
    """Probability that a training clip ends on an episode's final frame: uniform windows hold the terminal
    transition once per episode (about 1 clip in 60), too rarely for the termination head and the crash and
    landing dynamics."""
    reward_weight: float = 1.0
    """Weight of the two-hot reward cross-entropy."""
    term_weight: float = 1.0
    """Weight of the termination BCE."""
    term_pos_weight: float = 10.0
    """BCE pos_weight for terminated transitions (rare: about one per episode)."""
    ema_std: float = 0.05
    """sigma_rel of the EDM2 power-function EMA (EDM2 sec. 3.1); the EMA weights are evaluated and shipped."""
    bf16: bool | None = None
    """bf16 autocast on CPU; None measures a training-sized linear layer both ways at start and picks the faster
    (bf16 was 1.6-2x faster in an early design measurement on another CPU, but slower than fp32 on this VM on
    2026-11-23; docs/MODEL_CARD.md says which the shipped run chose). The
    resolved value is saved with the run."""
    log_every: int = 25
    """Steps between JSONL metric records."""
    val_every: int = 500
    """Steps between validation passes (EMA weights) and checkpoints."""
    val_batches: int = 8
    """Fixed held-out batches per validation pass."""
    seed: int = 0
    """Seed of the data sampler, the noise generator and the initialisation."""
    num_threads: int | None = None
    """torch intra-op threads (None: leave torch's default)."""
    init_from: str = ""
    """`world_model.safetensors` to start a fresh run from (its config becomes the model's; the EMA starts from
    it, the optimiser, the loss-uncertainty MLP and the schedule start fresh). Empty: random initialisation.
    Ignored when resuming from a checkpoint."""

    def __post_init__(self) -> None:
        if self.clip_frames < 2:
            raise ValueError(f"clip_frames must be >= 2 (heads need a transition), got {self.clip_frames}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be >= 1 or None, got {self.window}")
        if self.batch_size < 1 or self.steps < 1 or self.val_every < 1 or self.log_every < 1:
            raise ValueError("batch_size, steps, val_every and log_every must be >= 1")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.sigma_ctx_max < 0:
            raise ValueError(f"sigma_ctx_max must be >= 0, got {self.sigma_ctx_max}")
        check_edge_fractions(
            self.start_clip_fraction, self.end_clip_fraction, "start_clip_fraction and end_clip_fraction"
        )
        if not 0 < self.ema_std < 0.28:
            raise ValueError(f"ema_std must be in (0, 0.28) (EDM2 sigma_rel), got {self.ema_std}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def tiny(cls, **overrides: Any) -> TrainWorldModelConfig:
        """Seconds on CPU: the tiny model, short clips, a few steps (tests and CI)."""
        base = cls(
            model_preset="tiny",
            clip_frames=6,
            batch_size=4,
            steps=30,
            lr_ref=2e-3,
            lr_t_ref=1000,
            lr_warmup=0,
            log_every=5,
            val_every=10,
            val_batches=2,
            bf16=False,
        )
        return replace(base, **overrides)

    @classmethod
    def default(cls, **overrides: Any) -> TrainWorldModelConfig:
        """The CPU run that ships (a few CPU-hours)."""
        return replace(cls(start_clip_fraction=0.1, end_clip_fraction=0.2), **overrides)

    @classmethod
    def large(cls, **overrides: Any) -> TrainWorldModelConfig:
        """One modern GPU (documented, not trained here): the `large` model, 48-frame clips (window 32 + 16),
        32 clips per rank, bf16, a lower peak learning rate for the wider model and 100 k steps. Under DDP the
        batch is per rank: 8 GPUs train on 256 clips per step."""
        base = cls(
            model_preset="large",
            clip_frames=48,
            batch_size=32,
            steps=100_000,
            lr_ref=3e-4,
            lr_t_ref=10_000,
            lr_warmup=1_000,
            bf16=True,
            log_every=100,
            val_every=2_000,
            val_batches=16,
            start_clip_fraction=0.1,
            end_clip_fraction=0.2,
        )
        return replace(base, **overrides)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TrainWorldModelConfig:
        if name not in TRAIN_WORLD_MODEL_PRESETS:
            raise ValueError(f"unknown training preset {name!r}; choose one of {', '.join(TRAIN_WORLD_MODEL_PRESETS)}")
        return getattr(cls, name)(**overrides)


TRAIN_WORLD_MODEL_PRESETS = ("tiny", "default", "large")
"""Names accepted by `TrainWorldModelConfig.preset` (and `oniris-env train world-model --preset`)."""
