"""`WorldModel`: EDM-preconditioned latent video transformer that denoises the next frame and predicts reward
and termination.

Sequence semantics: frame i is conditioned on the action a_{i-1} that led to it (frame 0 of a sequence on the
extra "start" action, `config.start_action`). The reward / termination heads read the clean features of frame
i + 1 (which has seen frame i and a_i) and predict r_i and terminated_i.

Clean and noisy frames go through the same function of (input, sigma, action) and see the same keys (their
past W clean frames and themselves, `dart_frame_rule`), so the clean copy at context noise sigma_ctx is exactly
what inference computes when it denoises at sigma = sigma_ctx. Hence `step(..., commit=True)` on the last
denoising call commits the new frame (at that call's sigma, its context noise) with no extra pass, and returns
the reward / termination of the transition that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from oniris_env.world_model.attention import rope_tables_at
from oniris_env.world_model.block import Block
from oniris_env.world_model.cache import WorldModelCache
from oniris_env.world_model.config import WorldModelConfig
from oniris_env.world_model.heads import reward_bins, reward_value

#: sigma below which c_noise stops decreasing (context frames may be exactly clean, ln 0 = -inf).
SIGMA_FLOOR = 1e-3


@dataclass(frozen=True)
class DartOutput:
    """Outputs of one DART forward over a clip of N frames."""

    denoised: Tensor
    """`(B, N, C, h, w)` D(x_noisy; sigma) for the noisy copy."""
    reward_logits: Tensor
    """`(B, N, K)` reward-bin logits from clean frame i (predicts r_{i-1}; entry 0 is unused)."""
    term_logits: Tensor
    """`(B, N)` termination logits from clean frame i (predicts terminated_{i-1}; entry 0 is unused)."""


@dataclass(frozen=True)
class StepOutput:
    """Outputs of one cached inference call on the new frame."""

    denoised: Tensor
    """`(B, C, h, w)` D(x; sigma)."""
    reward: Tensor
    """`(B,)` predicted reward of the transition into this frame (meaningful on the committing call)."""
    reward_logits: Tensor
    """`(B, K)`."""
    term_logit: Tensor
    """`(B,)` termination logit of that transition."""
    head_input: Tensor
    """`(B, D)` what the heads read (`WorldModel.head_input`): lets the heads be refitted on a frozen trunk."""
    cache: WorldModelCache
    """The cache with this frame committed (when `commit`), else the input cache unchanged."""


def frame_actions(actions: Tensor, start_action: int) -> Tensor:
    """Per-frame conditioning actions `(B, N)` from transition actions `(B, N - 1)`: [start, a_0, ..., a_{N-2}]."""
    start = actions.new_full((actions.shape[0], 1), start_action)
    return torch.cat([start, actions], dim=1)


class WorldModel(nn.Module):
    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.width
        self.patch_in = nn.Linear(config.patch_dim, d)
        self.pos = nn.Parameter(torch.randn(config.tokens_per_frame, d) * 0.02)
        dc = config.cond_width
        freqs = torch.randn(dc // 2, generator=torch.Generator().manual_seed(0))
        self.register_buffer("noise_freqs", freqs, persistent=False)  # EDM2 MPFourier-style random features
        self.noise_mlp = nn.Sequential(nn.Linear(dc, dc), nn.SiLU(), nn.Linear(dc, dc))
        self.action_emb = nn.Embedding(config.num_actions + 1, dc)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(dc, 2 * d)
        self.final_out = nn.Linear(d, config.patch_dim)
        self.head = nn.Sequential(
            nn.LayerNorm(d),
            nn.Linear(d, config.head_width),
            nn.SiLU(),
            nn.Linear(config.head_width, config.reward_bins + 1),
        )
        self.register_buffer("bins", reward_bins(config.reward_bins, config.reward_symlog_max), persistent=False)
        for layer in (self.final_ada, self.final_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    # -- EDM preconditioning (Karras et al. 2022, Table 1 / eq. 7) --------------------------------------------

    def precondition(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """c_skip, c_out, c_in, c_noise for sigma (any shape, float32)."""
        sd = self.config.sigma_data
        sigma = sigma.float()
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sigma**2 + sd**2).sqrt()
        c_noise = sigma.clamp_min(SIGMA_FLOOR).log() / 4
        return c_skip, c_out, c_in, c_noise

    # -- shared pieces ----------------------------------------------------------------------------------------

    def _embed(self, x: Tensor, sigma: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """x `(B, F, C, h, w)`, sigma `(B, F)`, actions `(B, F)` -> tokens `(B, F, T, D)`, cond `(B, F, Dc)`."""
        cfg = self.config
        if tuple(x.shape[2:]) != cfg.latent_shape:
            raise ValueError(f"expected latent frames of shape {cfg.latent_shape}, got {tuple(x.shape[2:])}")
        _, _, c_in, c_noise = self.precondition(sigma)
        p = cfg.patch_size
        patches = rearrange(
            x.float() * c_in[..., None, None, None], "b f c (gh p) (gw q) -> b f (gh gw) (p q c)", p=p, q=p
        )
        tokens = self.patch_in(patches) + self.pos
        angles = 2 * torch.pi * c_noise[..., None] * self.noise_freqs
        fourier = torch.cat([angles.cos(), angles.sin()], dim=-1) * 2**0.5
        cond = self.noise_mlp(fourier) + self.action_emb(actions)
        return tokens, cond

    def _denoised(self, h: Tensor, cond: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
        """D(x; sigma) = c_skip x + c_out F(...) (EDM eq. 7). h `(B, F, T, D)`, x `(B, F, C, h, w)`."""
        cfg = self.config
        gh, gw = cfg.grid
        shift, scale = self.final_ada(F.silu(cond)).chunk(2, dim=-1)
        out = self.final_out(self.final_norm(h) * (1 + scale.unsqueeze(2)) + shift.unsqueeze(2))
        p = cfg.patch_size
        f_x = rearrange(out.float(), "b f (gh gw) (p q c) -> b f c (gh p) (gw q)", gh=gh, gw=gw, p=p, q=p)
        c_skip, c_out, _, _ = self.precondition(sigma)
        return c_skip[..., None, None, None] * x.float() + c_out[..., None, None, None] * f_x

    @staticmethod
    def head_input(h: Tensor) -> Tensor:
        """Token features h `(B, F, T, D)` -> what the heads read `(B, F, D)` (token mean-pool)."""
        return h.mean(dim=2)

    def heads(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        """`head_input` `(..., D)` -> reward logits `(..., K)` and termination logits `(...)`, float32."""
        out = self.head(pooled).float()
        return out[..., :-1], out[..., -1]

    # -- training: DART forward -------------------------------------------------------------------------------

    def forward(
        self,
        x_clean: Tensor,
        sigma_ctx: Tensor,
        x_noisy: Tensor,
        sigma: Tensor,
        actions: Tensor,
        backend: str = "fast",
    ) -> DartOutput:
        """One DART pass over a clip of N frames: supervises all N noisy frames at once.

        Args:
            x_clean: `(B, N, C, h, w)` clean frames with context noise already added (x + sigma_ctx * n).
            sigma_ctx: `(B, N)` their context-noise levels (>= 0), given to the model.
            x_noisy: `(B, N, C, h, w)` = x + sigma * n.
            sigma: `(B, N)` per-frame noise levels (> 0).
            actions: `(B, N)` int64 conditioning action of each frame (`frame_actions`).
            backend: "fast" (exact, autograd, CPU), "oracle" (dense mask) or "flex" (FlexAttention).
        """
        b, n = x_clean.shape[:2]
        if actions.shape != (b, n) or actions.min() < 0 or actions.max() > self.config.num_actions:
            raise ValueError(
                f"actions must be (B, N) = {(b, n)} in [0, {self.config.num_actions}] (last = start action)"
            )
        if x_noisy.shape != x_clean.shape or sigma.shape != (b, n) or sigma_ctx.shape != (b, n):
            raise ValueError(
                f"expected x_noisy {tuple(x_clean.shape)} and sigmas {(b, n)}, got {tuple(x_noisy.shape)}, "
                f"{tuple(sigma.shape)}, {tuple(sigma_ctx.shape)}"
            )
        x = torch.cat([x_clean, x_noisy], dim=1)  # (B, 2N, C, h, w)
        sig = torch.cat([sigma_ctx, sigma], dim=1)  # (B, 2N)
        h, cond = self._embed(x, sig, actions.repeat(1, 2))
        for block in self.blocks:
            h = block(h, cond, backend)
        denoised = self._denoised(h[:, n:], cond[:, n:], x_noisy, sigma)
        reward_logits, term_logits = self.heads(self.head_input(h[:, :n]))
        return DartOutput(denoised, reward_logits, term_logits)

    # -- inference: one new frame against the cache -----------------------------------------------------------

    def init_cache(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
    ) -> WorldModelCache:
        """An empty cache for `batch_size` dreams (the next frame starts a sequence): W empty slots per layer."""
        cfg = self.config
        t, k, depth = cfg.tokens_per_frame, cfg.conv_kernel, cfg.depth

        def zeros(*shape: int) -> tuple[Tensor, ...]:  # one tensor per block: in-place commits write them
            return tuple(torch.zeros(*shape, device=device, dtype=dtype) for _ in range(depth))

        kv_shape = (batch_size * t, cfg.heads, cfg.window, cfg.head_dim)
        valid = torch.zeros(batch_size, cfg.window, dtype=torch.bool, device=device)
        position = torch.zeros(batch_size, dtype=torch.long, device=device)
        return WorldModelCache(
            zeros(*kv_shape), zeros(*kv_shape), zeros(batch_size, k - 1, t, cfg.width), valid, position
        )

    def step(
        self,
        x: Tensor,
        sigma: Tensor,
        action: Tensor,
        cache: WorldModelCache,
        commit: bool | Tensor = False,
        in_place: bool = False,
    ) -> StepOutput:
        """Denoise the new frame given the cached past; optionally commit it.

        Args:
            x: `(B, C, h, w)` the new frame at noise level sigma.
            sigma: `(B,)` its noise level.
            action: `(B,)` int64, the action that led to this frame (`start_action` for a sequence's first).
            cache: the past (not modified, unless `in_place` and `commit`).
            commit: True, or a `(B,)` bool mask, to append this frame to the cache as a context frame with
                context noise sigma: use it on the last denoising call (or to feed real context frames with
                their context noise). Reward / termination outputs are those of the transition into x.
            in_place: commit by writing into `cache`'s buffers (no copy of the window); `cache` is then consumed
                and only the returned cache is valid (`WorldModelCache.append`).
        """
        if x.dim() != 4 or sigma.shape != x.shape[:1] or action.shape != x.shape[:1]:
            raise ValueError(
                f"expected x (B, C, h, w), sigma (B,), action (B,); got {tuple(x.shape)}, "
                f"{tuple(sigma.shape)}, {tuple(action.shape)}"
            )
        h, cond = self._embed(x[:, None], sigma[:, None], action[:, None])
        pad = cache.padding_mask()
        rope = rope_tables_at(cache.position, self.config.head_dim, self.config.rope_theta)
        entries = []
        for i, block in enumerate(self.blocks):
            h, entry = block.step(h, cond, cache.keys[i], cache.values[i], pad, rope, cache.conv[i])
            entries.append(entry)
        denoised = self._denoised(h, cond, x[:, None], sigma[:, None])[:, 0]
        pooled = self.head_input(h)
        reward_logits, term_logits = self.heads(pooled)
        if isinstance(commit, Tensor):
            new_cache = cache.append(entries, commit, in_place=in_place)
        else:
            new_cache = cache.append(entries, in_place=in_place) if commit else cache
        return StepOutput(
            denoised=denoised,
            reward=reward_value(reward_logits[:, 0], self.bins),
            reward_logits=reward_logits[:, 0],
            term_logit=term_logits[:, 0],
            head_input=pooled[:, 0],
            cache=new_cache,
        )
