"""The cached EDM sampler against slow oracles: a fresh cache rebuilt from the whole history at every step, and the
whole-sequence DART forward (no cache at all)."""

from __future__ import annotations

import pytest
import torch

from oniris_env.sampler import SamplerConfig, commit_context, rebuild_cache, sample_next, sigma_schedule
from oniris_env.world_model import WorldModel, WorldModelConfig, frame_actions

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_model(seed: int = 0, **overrides) -> WorldModel:
    """A tiny world model whose zero-initialised output layers are randomised, so outputs depend on inputs."""
    torch.manual_seed(seed)
    model = WorldModel(WorldModelConfig.tiny(**overrides)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0.0, 0.05)
    return model


def test_sigma_schedule_matches_edm_eq5() -> None:
    cfg = SamplerConfig(num_steps=4, sigma_max=5.0, sigma_min=2e-3, rho=7.0)
    s = sigma_schedule(cfg)
    assert s.shape == (5,) and s.dtype == torch.float32
    assert s[0].item() == pytest.approx(5.0) and s[3].item() == pytest.approx(2e-3, rel=1e-5) and s[4].item() == 0
    assert bool((s[1:] < s[:-1]).all())
    ramp = 5.0 ** (1 / 7) + (1 / 3) * (2e-3 ** (1 / 7) - 5.0 ** (1 / 7))
    assert s[1].item() == pytest.approx(ramp**7, rel=1e-5)


@pytest.mark.parametrize("kwargs", [{"num_steps": 1}, {"sigma_min": 6.0}, {"rho": 0.0}, {"method": "ddim"}])
def test_sampler_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SamplerConfig(**kwargs)


def test_model_calls() -> None:
    assert SamplerConfig(num_steps=3).model_calls == 3
    assert SamplerConfig(num_steps=3, method="heun").model_calls == 5


def _rollout(model: WorldModel, cfg: SamplerConfig, steps: int, batch: int = 2, context: int = 2, seed: int = 0):
    """A cached rollout: context frames, then `steps` sampled frames. Returns everything the oracles need."""
    c = model.config
    gen = torch.Generator().manual_seed(seed)
    ctx = torch.randn(batch, context, *c.latent_shape, generator=gen)
    ctx_actions = frame_actions(torch.randint(0, c.num_actions, (batch, context - 1), generator=gen), c.start_action)
    cache, committed = commit_context(model, model.init_cache(batch), ctx, ctx_actions, gen, cfg.sigma_min)
    history, actions = [committed[:, j] for j in range(context)], [ctx_actions[:, j] for j in range(context)]
    records = []
    for _ in range(steps):
        action = torch.randint(0, c.num_actions, (batch,), generator=gen)
        noise = torch.randn(batch, *c.latent_shape, generator=gen)
        out = sample_next(model, cache, action, gen, cfg, noise=noise)
        records.append((torch.stack(history, 1), torch.stack(actions, 1), action, noise, out))
        cache = out.cache
        history.append(out.committed)
        actions.append(action)
    return records


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_cached_sampler_equals_fresh_cache_recompute(method: str) -> None:
    """Oracle 1: at every step, rebuild a fresh cache over the whole history and resample with the same noise.
    The rollout is longer than the window (4), so the sliding window and RoPE positions are exercised."""
    model = tiny_model()
    cfg = SamplerConfig(num_steps=3, method=method)
    for past, past_actions, action, noise, out in _rollout(model, cfg, steps=6):
        cache = rebuild_cache(model, past, past_actions, cfg.sigma_min)
        ref = sample_next(model, cache, action, torch.Generator(), cfg, noise=noise)
        torch.testing.assert_close(out.latent, ref.latent, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out.committed, ref.committed, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out.reward, ref.reward, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out.term_logit, ref.term_logit, rtol=1e-4, atol=1e-5)
        assert out.cache.history().tolist() == [min(past.shape[1] + 1, model.config.window)] * past.shape[0]


def _forward_denoiser(
    model: WorldModel, past: torch.Tensor, past_actions: torch.Tensor, action: torch.Tensor, sigma_ctx: float
):
    """D(x; sigma) of the new frame from the DART forward over [past | new] (no cache)."""

    def denoise(x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n = past.shape[:2]
        clean = torch.cat([past, x[:, None]], dim=1)  # clean copy of the new frame: unused by the noisy half
        noisy = torch.cat([past, x[:, None]], dim=1)
        sig_ctx = torch.full((b, n + 1), sigma_ctx)
        sig = torch.full((b, n + 1), sigma_ctx)
        sig[:, -1] = sigma
        out = model(clean, sig_ctx, noisy, sig, torch.cat([past_actions, action[:, None]], dim=1), backend="oracle")
        return out.denoised[:, -1], out.reward_logits[:, -1], out.term_logits[:, -1]

    return denoise


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_cached_sampler_equals_full_sequence_forward(method: str) -> None:
    """Oracle 2: the same EDM solver written out with the DART forward (dense-mask attention) as denoiser, while
    the history fits the window; also checks the reward / termination of the committing call."""
    model = tiny_model(window=8)
    cfg = SamplerConfig(num_steps=3, method=method)
    sigmas = sigma_schedule(cfg).tolist()
    for past, past_actions, action, noise, out in _rollout(model, cfg, steps=5):
        denoise = _forward_denoiser(model, past, past_actions, action, cfg.sigma_min)
        x = noise * sigmas[0]
        for i in range(cfg.num_steps):
            d_x, reward_logits, term_logit = denoise(x, sigmas[i])
            if i == cfg.num_steps - 1:
                committed, x = x, d_x
                break
            d = (x - d_x) / sigmas[i]
            x_next = x + (sigmas[i + 1] - sigmas[i]) * d
            if method == "heun":
                d_next = (x_next - denoise(x_next, sigmas[i + 1])[0]) / sigmas[i + 1]
                x_next = x + (sigmas[i + 1] - sigmas[i]) * 0.5 * (d + d_next)
            x = x_next
        torch.testing.assert_close(out.latent, x, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(out.committed, committed, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(out.term_logit, term_logit, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_action_guided_sampler_equals_full_sequence_forward(method: str) -> None:
    """Oracle 3: action guidance written out with the DART forward, one forward per action on the unrepeated
    history: D = D(x; a) + w * (D(x; a) - mean over a' of D(x; a')) on every call but the committing one."""
    model = tiny_model(window=8)
    w, num_a = 1.5, model.config.num_actions
    cfg = SamplerConfig(num_steps=3, method=method, action_guidance=w)
    sigmas = sigma_schedule(cfg).tolist()
    for past, past_actions, action, noise, out in _rollout(model, cfg, steps=4):
        per_action = [
            _forward_denoiser(model, past, past_actions, torch.full_like(action, a), cfg.sigma_min)
            for a in range(num_a)
        ]

        def guided(x: torch.Tensor, sigma: float, per_action=per_action, action=action) -> torch.Tensor:
            all_d = torch.stack([f(x, sigma)[0] for f in per_action], dim=1)  # (B, A, C, h, w)
            taken = all_d[torch.arange(len(action)), action]
            return taken + w * (taken - all_d.mean(dim=1))

        x = noise * sigmas[0]
        for i in range(cfg.num_steps - 1):
            d = (x - guided(x, sigmas[i])) / sigmas[i]
            x_next = x + (sigmas[i + 1] - sigmas[i]) * d
            if method == "heun":
                d_next = (x_next - guided(x_next, sigmas[i + 1])) / sigmas[i + 1]
                x_next = x + (sigmas[i + 1] - sigmas[i]) * 0.5 * (d + d_next)
            x = x_next
        last, _, term_logit = _forward_denoiser(model, past, past_actions, action, cfg.sigma_min)(x, sigmas[-2])
        torch.testing.assert_close(out.committed, x, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(out.latent, last, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(out.term_logit, term_logit, rtol=1e-4, atol=1e-4)
    plain = _rollout(model, SamplerConfig(num_steps=3, method=method), steps=1)[0][-1]
    guided_first = _rollout(model, cfg, steps=1)[0][-1]
    assert (plain.latent - guided_first.latent).abs().max() > 1e-3  # same noise: guidance changes the frame


def test_action_guidance_rejects_the_start_action() -> None:
    model = tiny_model()
    cfg = SamplerConfig(action_guidance=1.0)
    start = torch.full((2,), model.config.start_action)
    with pytest.raises(ValueError, match="action guidance"):
        sample_next(model, model.init_cache(2), start, torch.Generator(), cfg)
    with pytest.raises(ValueError, match="action_guidance"):
        SamplerConfig(action_guidance=-1.0)


def test_sampler_refuses_a_non_finite_latent() -> None:
    """Damaged weights must not dream NaN silently: the sampler raises instead of returning the frame."""
    model = tiny_model()
    with torch.no_grad():
        next(p for p in model.parameters() if p.dim() > 1).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite"):
        sample_next(model, model.init_cache(2), torch.tensor([0, 1]), torch.Generator(), SamplerConfig())


def test_sampler_is_reproducible_from_the_generator() -> None:
    model = tiny_model()
    cfg = SamplerConfig()
    action = torch.tensor([0, 2])

    def run(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        cache = model.init_cache(2)
        frames = []
        for _ in range(5):
            out = sample_next(model, cache, action, gen, cfg)
            cache = out.cache
            frames.append(out.latent)
        return torch.stack(frames)

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_commit_mask_leaves_other_dreams_untouched() -> None:
    """A dream whose frame is not committed continues exactly as if that call had not happened."""
    model = tiny_model()
    cfg = SamplerConfig()
    gen = torch.Generator().manual_seed(0)
    start = model.init_cache(2)
    first = sample_next(model, start, torch.tensor([1, 1]), gen, cfg)
    skipped = sample_next(model, first.cache, torch.tensor([2, 2]), gen, cfg, commit=torch.tensor([True, False]))
    noise = torch.randn(2, *model.config.latent_shape, generator=gen)
    after_skip = sample_next(model, skipped.cache, torch.tensor([3, 3]), gen, cfg, noise=noise)
    direct = sample_next(model, first.cache, torch.tensor([3, 3]), gen, cfg, noise=noise)
    torch.testing.assert_close(after_skip.latent[1], direct.latent[1], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(after_skip.latent[0], direct.latent[0])
