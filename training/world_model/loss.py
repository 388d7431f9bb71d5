"""DART losses: EDM-weighted denoising loss normalised by a learned uncertainty, plus the heads' losses."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from oniris_env.world_model import DartOutput, WorldModel, frame_actions
from oniris_env.world_model.heads import reward_loss, reward_value
from training.world_model.config import TrainWorldModelConfig


class LossUncertainty(nn.Module):
    """u(sigma): the log of the expected per-frame loss at noise level sigma (EDM2 eq. 21, `logvar`).

    Dividing each frame's loss by exp(u) and adding u balances the noise levels automatically; u is trained
    with the model but is not part of the shipped weights.
    """

    def __init__(self, channels: int = 128) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.register_buffer("freqs", 2 * torch.pi * torch.randn(channels, generator=g))
        self.register_buffer("phases", 2 * torch.pi * torch.rand(channels, generator=g))
        self.linear = nn.Linear(channels, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, sigma: Tensor) -> Tensor:
        c_noise = sigma.float().log() / 4  # EDM c_noise
        features = torch.cos(c_noise[..., None] * self.freqs + self.phases) * 2**0.5  # EDM2 MPFourier
        return self.linear(features)[..., 0]


@dataclass(frozen=True)
class DartBatch:
    """One training batch in tensors."""

    latents: Tensor
    """`(B, N, C, h, w)` float32 clean latents."""
    actions: Tensor
    """`(B, N - 1)` int64 transition actions."""
    rewards: Tensor
    """`(B, N - 1)` float32."""
    terminated: Tensor
    """`(B, N - 1)` bool."""

    @classmethod
    def from_numpy(cls, batch: dict, device: torch.device | str = "cpu") -> DartBatch:
        """From `EpisodeWindows.sample_batch` output (key 'latents')."""
        return cls(
            latents=torch.as_tensor(batch["latents"], dtype=torch.float32, device=device),
            actions=torch.as_tensor(batch["actions"], dtype=torch.long, device=device),
            rewards=torch.as_tensor(batch["rewards"], dtype=torch.float32, device=device),
            terminated=torch.as_tensor(batch["terminated"], dtype=torch.bool, device=device),
        )


def sample_noise(
    batch: DartBatch, cfg: TrainWorldModelConfig, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Context-noised clean copy and noisy copy: (x_clean, sigma_ctx, x_noisy, sigma), sigmas `(B, N)`.

    sigma_ctx ~ U(0, s) (GameNGen, DIAMOND CS), ln sigma ~ N(P_mean, P_std^2) per frame (EDM sec. 5,
    Diffusion Forcing's independent per-frame levels), clipped to [sigma_min, sigma_max].
    """
    x = batch.latents
    b, n = x.shape[:2]
    dev = x.device

    def randn(*shape: int) -> Tensor:
        return torch.randn(shape, generator=generator, device=dev)

    sigma_ctx = torch.rand(b, n, generator=generator, device=dev) * cfg.sigma_ctx_max
    sigma = (randn(b, n) * cfg.P_std + cfg.P_mean).exp().clamp(cfg.sigma_min, cfg.sigma_max)
    x_clean = x + sigma_ctx[..., None, None, None] * randn(*x.shape)
    x_noisy = x + sigma[..., None, None, None] * randn(*x.shape)
    return x_clean, sigma_ctx, x_noisy, sigma


@dataclass(frozen=True)
class DartLosses:
    total: Tensor
    """Scalar to minimise."""
    denoise_raw: Tensor
    """Scalar: mean EDM-weighted per-frame loss lambda(sigma) * ||D - x||^2 (EDM eq. 8)."""
    denoise_normalised: Tensor
    """Scalar: mean of the raw loss / exp(u(sigma)) (EDM2 eq. 21 without the + u term)."""
    reward: Tensor
    """Scalar: two-hot cross-entropy."""
    term: Tensor
    """Scalar: class-balanced BCE."""
    reward_mae: Tensor
    """Scalar: |predicted - true| reward (diagnostic)."""


def dart_losses(
    model: WorldModel,
    uncertainty: LossUncertainty,
    batch: DartBatch,
    cfg: TrainWorldModelConfig,
    generator: torch.Generator,
    autocast: bool = False,
    backend: str = "fast",
) -> DartLosses:
    """One DART forward on a batch and all losses (`autocast`: bf16 on the batch's device; `backend`: the
    attention backend of `WorldModel.forward`, "flex" inside a compiled model on CUDA)."""
    x_clean, sigma_ctx, x_noisy, sigma = sample_noise(batch, cfg, generator)
    actions = frame_actions(batch.actions, model.config.start_action)
    with torch.autocast(batch.latents.device.type, torch.bfloat16, enabled=autocast):
        out: DartOutput = model(x_clean, sigma_ctx, x_noisy, sigma, actions, backend=backend)
    sd = model.config.sigma_data
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2  # EDM eq. 8 lambda(sigma)
    per_frame = weight * (out.denoised.float() - batch.latents).pow(2).mean(dim=(2, 3, 4))  # (B, N)
    u = uncertainty(sigma)
    normalised = per_frame / u.exp()
    denoise = (normalised + u).mean()  # EDM2 eq. 21
    # heads: clean frame i + 1 predicts transition i
    r_logits, t_logits = out.reward_logits[:, 1:], out.term_logits[:, 1:]
    r_loss = reward_loss(r_logits, batch.rewards, model.bins).mean()
    pos_weight = torch.tensor(cfg.term_pos_weight, device=t_logits.device)
    t_loss = F.binary_cross_entropy_with_logits(t_logits, batch.terminated.float(), pos_weight=pos_weight)
    total = denoise + cfg.reward_weight * r_loss + cfg.term_weight * t_loss
    mae = (reward_value(r_logits.detach(), model.bins) - batch.rewards).abs().mean()
    return DartLosses(
        total, per_frame.mean().detach(), normalised.mean().detach(), r_loss.detach(), t_loss.detach(), mae
    )


class DartObjective(nn.Module):
    """The world model and its loss uncertainty as one module whose forward returns the DART losses.

    It is what DDP wraps, so that the gradients of every trained parameter (transformer, heads and the EDM2
    uncertainty MLP) are averaged over the ranks in one backward. Its parameters are the model's, then the
    uncertainty's: the same order (and optimiser state layout) as `[*model.parameters(), *u.parameters()]`.
    """

    def __init__(self, model: WorldModel, uncertainty: LossUncertainty, cfg: TrainWorldModelConfig) -> None:
        super().__init__()
        self.model = model
        self.uncertainty = uncertainty
        self.cfg = cfg

    def forward(
        self, batch: DartBatch, generator: torch.Generator, autocast: bool = False, backend: str = "fast"
    ) -> DartLosses:
        return dart_losses(self.model, self.uncertainty, batch, self.cfg, generator, autocast, backend)
