"""Cached EDM sampler: the next latent frame of B dreams from the world model's cache, in a few denoising calls.

Pure functions of (model, cache, actions, generator): the cache is a `WorldModelCache` value passed in and
returned, and every random number comes from the caller's `torch.Generator`, so a dream is reproducible from its
seed and its actions.

Schedule (Karras et al. 2022, "EDM", eq. 5), as in DIAMOND: `num_steps` noise levels from `sigma_max` (~5: the
next frame is close to the last one, so starting at EDM's 80 wastes steps) down to `sigma_min` with rho = 7, then
0. Euler (EDM Algorithm 1 without its second-order correction) or Heun (with it, except on the last step).

Context noise. In training the clean copy of every frame carries a small context noise sigma_ctx, labelled to the
model (DIAMOND, GameNGen). At inference the new frame is committed to the KV and conv caches during the LAST
denoising call (`WorldModel.step(..., commit=True)`), whose input is the frame at noise level `sigma_min`: so the
cache holds every generated frame at context noise `sigma_min`, added once when the frame enters the cache (never
re-noised, which would break the cache; Diffusion Forcing / Oasis). Real context frames are committed the same
way: x + sigma_min * n, labelled sigma_min (`commit_context`). Hence `sigma_min` IS the inference context noise
and must lie inside the training range of sigma_ctx.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from oniris_env.world_model import StepOutput, WorldModel, WorldModelCache

METHODS = ("euler", "heun")

#: `WorldModel.step`'s signature: (x, sigma, action, cache, commit) -> StepOutput.
StepFn = Callable[..., StepOutput]


@dataclass(frozen=True)
class SamplerConfig:
    """How each new frame is denoised (the dream's speed / quality trade-off)."""

    num_steps: int = 3
    """Denoising steps N >= 2 (DIAMOND: 3). Euler costs N model calls, Heun 2N - 1."""
    sigma_max: float = 5.0
    """First noise level (DIAMOND: 5)."""
    sigma_min: float = 2e-3
    """Last non-zero noise level, and therefore the context noise of every committed frame (DIAMOND: 2e-3)."""
    rho: float = 7.0
    """EDM schedule curvature (eq. 5): larger spends more steps at low noise."""
    method: str = "euler"
    """'euler' or 'heun' (EDM Algorithm 1, no stochastic churn)."""
    action_guidance: float = 0.0
    """Action guidance weight w >= 0: every call before the last uses D(x; a) + w * (D(x; a) - mean over all
    actions a' of D(x; a')), which strengthens what the taken action changes (classifier-free guidance with the
    action-averaged prediction standing in for an unconditional one). 0 = plain sampling. Each guided call runs the
    network on all actions at once (batch B * num_actions)."""

    def __post_init__(self) -> None:
        if self.num_steps < 2:
            raise ValueError(
                f"num_steps must be >= 2, got {self.num_steps}: the last call (at sigma_min) commits the frame, "
                "so at least one call must come before it"
            )
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.rho <= 0:
            raise ValueError(f"rho must be > 0, got {self.rho}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.action_guidance < 0:
            raise ValueError(f"action_guidance must be >= 0, got {self.action_guidance}")

    @property
    def model_calls(self) -> int:
        """Network calls per frame (NFE); with `action_guidance` every call but the last runs num_actions rows
        per dream."""
        return self.num_steps if self.method == "euler" else 2 * self.num_steps - 1


DEFAULT_SAMPLER = SamplerConfig()
"""3 Euler steps from sigma 5 to 2e-3, rho 7 (DIAMOND's sampler; see docs/RESULTS.md)."""


@dataclass(frozen=True)
class SampleOutput:
    """One generated frame per dream."""

    latent: Tensor
    """`(B, C, h, w)` float32 the new frame (D at sigma_min: the sampler's output)."""
    committed: Tensor
    """`(B, C, h, w)` what entered the cache: the frame at noise level sigma_min (the last call's input)."""
    reward: Tensor
    """`(B,)` predicted reward of the transition into the new frame."""
    term_logit: Tensor
    """`(B,)` termination logit of that transition."""
    cache: WorldModelCache
    """The cache with the new frame committed (where `commit` is True)."""


def sigma_schedule(config: SamplerConfig, device: torch.device | str = "cpu") -> Tensor:
    """`(N + 1,)` float32 noise levels sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min > sigma_N = 0 (EDM eq. 5)."""
    i = torch.arange(config.num_steps, dtype=torch.float64)
    inv_rho = 1.0 / config.rho
    lo, hi = config.sigma_min**inv_rho, config.sigma_max**inv_rho
    sigmas = (hi + i / (config.num_steps - 1) * (lo - hi)) ** config.rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(device=device, dtype=torch.float32)


def _randn(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)


@torch.no_grad()
def sample_next(
    model: WorldModel,
    cache: WorldModelCache,
    action: Tensor,
    generator: torch.Generator,
    config: SamplerConfig = DEFAULT_SAMPLER,
    commit: bool | Tensor = True,
    noise: Tensor | None = None,
    step_fn: StepFn | None = None,
    in_place: bool = False,
) -> SampleOutput:
    """Generate the next latent frame of B dreams and commit it to the cache during the last denoising call.

    Args:
        model: the world model (eval mode).
        cache: the dreams' past (not modified, unless `in_place`).
        action: `(B,)` int64 the action taken from the last frame (what leads to the new frame).
        generator: source of the initial noise `(B, C, h, w)` (one draw per call, whatever `commit` says).
        config: schedule and solver.
        commit: True, or a `(B,)` bool mask of the dreams whose new frame enters the cache.
        noise: optional unit-variance initial noise `(B, C, h, w)` used instead of drawing from `generator`
            (for oracles that replay the same noise).
        step_fn: replaces `model.step` (same signature), e.g. a `torch.compile`d version of it.
        in_place: commit by writing into `cache` (consumed; no copy of the window): for callers owning it.

    Raises `FloatingPointError` when the new frame, its reward or its termination logit is not finite (NaN or
    inf: damaged or diverged weights), instead of returning a frame every later one would inherit.
    """
    step = step_fn or model.step
    b = action.shape[0]
    device = cache.valid.device
    if noise is None:
        noise = _randn((b, *model.config.latent_shape), generator)
    sigmas = sigma_schedule(config, device)
    x = noise.to(device) * sigmas[0]
    n = config.num_steps
    denoise = _guided_denoiser(model, step, cache, action, config.action_guidance)
    out = None
    for i in range(n):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        last = i == n - 1
        if last:  # sigma_next = 0: the Euler step lands exactly on D(x; sigma_min)
            out = step(x, sigma.expand(b), action, cache, commit=commit, in_place=in_place)
            committed, x = x, out.denoised
            break
        d = (x - denoise(x, sigma.expand(b))) / sigma  # EDM eq. 3: dx/dsigma = (x - D(x; sigma)) / sigma
        x_next = x + (sigma_next - sigma) * d
        if config.method == "heun":  # EDM Algorithm 1, lines 9-11
            d_next = (x_next - denoise(x_next, sigma_next.expand(b))) / sigma_next
            x_next = x + (sigma_next - sigma) * 0.5 * (d + d_next)
        x = x_next
    assert out is not None
    if not (torch.isfinite(x).all() and torch.isfinite(out.reward).all() and torch.isfinite(out.term_logit).all()):
        raise FloatingPointError(
            "the world model produced a non-finite latent, reward or termination logit (NaN or inf): its weights "
            "are likely damaged or diverged (check the file against its sha256, or retrain)"
        )
    return SampleOutput(x, committed, out.reward, out.term_logit, out.cache)


def _guided_denoiser(
    model: WorldModel, step: StepFn, cache: WorldModelCache, action: Tensor, weight: float
) -> Callable[[Tensor, Tensor], Tensor]:
    """D(x; sigma) for the sampler's calls before the last (which never commit): plain, or action-guided
    (`SamplerConfig.action_guidance`), evaluating all actions of every dream as one batch on a repeated cache."""
    if weight == 0:
        return lambda x, sigma: step(x, sigma, action, cache).denoised
    num_a = model.config.num_actions
    if action.min() < 0 or action.max() >= num_a:
        raise ValueError(f"action guidance needs actions in [0, {num_a}), got {action.tolist()}")
    b = action.shape[0]
    wide = cache.repeat_dreams(num_a)
    every = torch.arange(num_a, device=action.device).repeat(b)  # row b * A + a holds action a

    def denoise(x: Tensor, sigma: Tensor) -> Tensor:
        all_d = step(x.repeat_interleave(num_a, 0), sigma.repeat_interleave(num_a, 0), every, wide).denoised
        all_d = all_d.view(b, num_a, *x.shape[1:])
        taken = all_d[torch.arange(b, device=action.device), action]
        return taken + weight * (taken - all_d.mean(dim=1))

    return denoise


@torch.no_grad()
def commit_context(
    model: WorldModel,
    cache: WorldModelCache,
    latents: Tensor,
    actions: Tensor,
    generator: torch.Generator,
    sigma: float,
    mask: Tensor | None = None,
    step_fn: StepFn | None = None,
    in_place: bool = False,
) -> tuple[WorldModelCache, Tensor]:
    """Feed real (clean) latent frames into the cache, one call per frame, each with context noise `sigma`.

    Args:
        latents: `(B, T, C, h, w)` clean normalised latents, oldest first.
        actions: `(B, T)` int64 per-frame conditioning actions (`frame_actions`: the first is `start_action`
            when the frames start a sequence).
        sigma: the context noise added and labelled (the sampler's `sigma_min`).
        mask: optional `(B,)` bool: only these dreams receive the frames (the others' caches are unchanged).
        in_place: commit into `cache`'s buffers (consumed), as in `sample_next`.
    Returns:
        the new cache and the committed noisy frames `(B, T, C, h, w)`.
    """
    step = step_fn or model.step
    b, t = latents.shape[:2]
    if actions.shape != (b, t):
        raise ValueError(f"expected actions {(b, t)} for latents {tuple(latents.shape)}, got {tuple(actions.shape)}")
    commit: bool | Tensor = True if mask is None else mask
    sig = torch.full((b,), sigma, device=latents.device)
    committed = []
    for j in range(t):
        x = latents[:, j] + sigma * _randn(tuple(latents[:, j].shape), generator).to(latents.device)
        cache = step(x, sig, actions[:, j], cache, commit=commit, in_place=in_place).cache
        committed.append(x)
    return cache, torch.stack(committed, dim=1)


@torch.no_grad()
def rebuild_cache(model: WorldModel, committed: Tensor, actions: Tensor, sigma: float) -> WorldModelCache:
    """The slow path: a fresh cache from a history of already-noised context frames, one step per frame.

    `committed (B, T, C, h, w)` frames exactly as they entered a cache (`SampleOutput.committed` or
    `commit_context`'s), `actions (B, T)` their per-frame actions. Used as the oracle of the cached sampler and as
    the "recompute the window every step" baseline of the benchmark.
    """
    b, t = committed.shape[:2]
    cache = model.init_cache(b, device=committed.device)
    sig = torch.full((b,), sigma, device=committed.device)
    for j in range(t):
        cache = model.step(committed[:, j], sig, actions[:, j], cache, commit=True).cache
    return cache
